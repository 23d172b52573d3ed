"""The fused policy-gradient head of d2r, written as a PyTorch user would: torch.distributions
sampling and log_prob, rewards, advantages, entropy bonus, autograd for the gradient with respect
to the head outputs. Eager and torch.compile, on the sizes of bench/objectives_bench.cpp.

Work stated as in d2r's benchmark: head outputs (2·B·n) and targets (B·n) read once, gradients
(2·B·n) and per-row losses (B) written once, float32.

    python3 bench/peer/pg_head_peer.py --out peer-pg-head.json
"""

import argparse
import itertools

import torch

from common import time_cuda, write_results


def pg_loss(mean, log_std, y, u, G, lam):
    dist = torch.distributions.Normal(mean, log_std.exp())
    y_hat = dist.sample((G,))                                  # G x B x n, no gradient through it
    log_p = dist.log_prob(y_hat).sum(-1)                       # G x B
    r = -u * (y_hat - y).pow(2).sum(-1)                        # scalar Mahalanobis reward
    advantage = r.detach()                                     # transform none
    return -(log_p * advantage).mean() - lam * dist.entropy().sum(-1).mean()


def step(mean, log_std, y, u, G, lam):
    loss = pg_loss(mean, log_std, y, u, G, lam)
    return torch.autograd.grad(loss, (mean, log_std))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="peer-pg-head.json")
    parser.add_argument("--rows", type=int, nargs="+", default=[1 << 10, 1 << 16, 1 << 20])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 17, 64])
    parser.add_argument("--generations", type=int, nargs="+", default=[5, 16, 50])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    device = "cuda"
    compiled = None if args.no_compile else torch.compile(step)
    rows = []
    for B, n, G in itertools.product(args.rows, args.dims, args.generations):
        if B * G * n * 4 * 6 > torch.cuda.get_device_properties(device).total_memory * 0.6:
            print(f"skip B={B} n={n} G={G}: the eager graph would not fit")
            continue
        gen = torch.Generator(device=device).manual_seed(1)
        mean = (torch.rand(B, n, device=device, generator=gen) * 2 - 1).requires_grad_()
        log_std = (torch.rand(B, n, device=device, generator=gen) - 1).requires_grad_()
        y = torch.rand(B, n, device=device, generator=gen) * 2 - 1
        u = torch.tensor(0.2, device=device)
        bytes_moved = 4.0 * (5 * B * n + B)
        for name, fn in (("eager", step), ("compile", compiled)):
            if fn is None:
                continue
            mean_ms, min_ms = time_cuda(lambda: fn(mean, log_std, y, u, G, 1.0), iterations=args.iterations)
            rows.append({"name": f"peer_pg_head_{name}/{B}/{n}/{G}", "real_time": mean_ms * 1e3,
                         "min_time": min_ms * 1e3, "iterations": args.iterations, "bytes": bytes_moved,
                         "GB/s": bytes_moved / (mean_ms * 1e-3) * 1e-9})
            print(rows[-1]["name"], f"{mean_ms:.3f} ms", f"{rows[-1]['GB/s']:.1f} GB/s", flush=True)
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
