"""The policy-curvature Hessian-vector product of d2r (DiagGaussianPolicyCurvature::apply, timed
by bench/curvature_bench.cpp) written as a PyTorch user would with torch.func: the REINFORCE
surrogate through an MLP + diagonal-Gaussian head with the samples and advantages held fixed,
its gradient torch.func.grad, and the HVP forward-over-reverse, torch.func.jvp of
torch.func.grad. Eager and torch.compile.

Also timed: the gradient alone, as d2r's `gradient` row times prepare() (forward, G samples per
row, rewards, advantages, backward), so that the HVP / gradient cost ratio is reported for the
peer too (DESIGN.md §6: target <= 3 for d2r).

Sizes (the rows of curvature_bench.cpp): the paper's MBRL size, MLP 23 -> [64, 64] -> 2·17 with
B = 70,000 and G = 5, and a wide MLP 23 -> [1024, 1024] -> 2·17 with B = 65,536. Work stated as
in d2r's benchmark: GEMM FLOPs, gradient = 3 forward passes, HVP = 5 forward passes.

    python3 bench/peer/hvp_peer.py --out peer-hvp.json
    python3 bench/peer/hvp_peer.py --device cpu --quick --out /tmp/peer-hvp.json   # seconds, CPU
"""

import argparse

import torch

import policy
from common import dynamo_stats, failure_reason, time_work, write_results

# name -> (inputs, hidden, n, B, G); the names of the rows are <family>/<B>/<hidden width>.
CONFIGS = {
    "mbrl": (23, [64, 64], 17, 70000, 5),
    "wide": (23, [1024, 1024], 17, 65536, 5),
}
QUICK = {"quick": (23, [16, 16], 17, 512, 5)}


def gradient_fn(shapes, G, lam):
    """∇θ of the sampled surrogate (what d2r's prepare() computes)."""
    grad = torch.func.grad(policy.surrogate_sampled, has_aux=True)

    def gradient(theta, x, y, u):
        return grad(theta, x, y, u, G, lam, shapes)[0]
    return gradient


def hvp_fn(shapes, lam):
    """v ↦ ∇²θ L · v with samples and advantages fixed: jvp of grad (forward-over-reverse)."""
    grad = torch.func.grad(policy.surrogate_fixed)

    def hvp(theta, v, x, samples, advantages):
        return torch.func.jvp(lambda t: grad(t, x, samples, advantages, lam, shapes), (theta,), (v,))[1]
    return hvp


def make_problem(inputs, hidden, n, B, G, device, dtype=torch.float32, seed=1):
    """θ (nn.Linear init), x, y, u and the fixed samples/advantages of a prepare() at θ."""
    shapes = policy.layer_shapes(inputs, hidden, 2 * n)
    gen = torch.Generator(device=device).manual_seed(seed)
    theta = policy.init_params(shapes, gen, device, dtype)
    x = torch.rand(B, inputs, generator=gen, device=device, dtype=dtype) * 2 - 1
    y = torch.rand(B, n, generator=gen, device=device, dtype=dtype) * 2 - 1
    u = torch.tensor(0.08, device=device, dtype=dtype)
    with torch.no_grad():
        samples = policy.policy(theta, x, shapes).sample((G,))
        advantages = policy.reward(samples, y, u)
    v = torch.rand(theta.numel(), generator=gen, device=device, dtype=dtype) * 2 - 1
    return shapes, theta, x, y, u, samples, advantages, v


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="peer-hvp.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="a tiny size, a few iterations (a smoke test)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads with --device cpu (0: torch's default)")
    args = parser.parse_args()
    if torch.device(args.device).type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)  # a shared CPU: OpenMP spinning on busy cores costs 100x
    configs = QUICK if args.quick else {k: CONFIGS[k] for k in args.configs}
    iterations = 3 if args.quick else args.iterations
    lam = 1.0
    rows = []
    for label, (inputs, hidden, n, B, G) in configs.items():
        shapes, theta, x, y, u, samples, advantages, v = make_problem(inputs, hidden, n, B, G, args.device)
        size = f"{B}/{hidden[0]}"
        fwd = policy.forward_flops(shapes, B)
        gradient, hvp = gradient_fn(shapes, G, lam), hvp_fn(shapes, lam)
        variants = [("eager", gradient, hvp)]
        if not args.no_compile:
            variants.append(("compile", torch.compile(gradient), torch.compile(hvp)))
        for mode, grad_f, hvp_f in variants:
            times = {}
            for kind, work, flops in (("grad", lambda: grad_f(theta, x, y, u), 3 * fwd),
                                      ("hvp", lambda: hvp_f(theta, v, x, samples, advantages), 5 * fwd)):
                name = f"peer_policy_{kind}_{mode}/{size}"
                try:
                    mean_ms, min_ms = time_work(work, args.device, iterations=iterations)
                except Exception as error:  # torch.compile of torch.func code may fail: record why
                    rows.append({"name": name, "error_occurred": True, "error_message": failure_reason(error),
                                 "config": label})
                    print(name, "FAILED:", rows[-1]["error_message"][:300], flush=True)
                    continue
                times[kind] = mean_ms
                rows.append({"name": name, "real_time": mean_ms * 1e3, "min_time": min_ms * 1e3,
                             "iterations": iterations, "flops": flops, "GFLOP/s": flops / (mean_ms * 1e-3) * 1e-9,
                             "config": label, "parameters": theta.numel()})
                if mode == "compile" and dynamo_stats() is not None:
                    rows[-1]["dynamo_cumulative"] = dynamo_stats()
                print(name, f"{mean_ms:.3f} ms", f"{rows[-1]['GFLOP/s']:.1f} GFLOP/s", flush=True)
            if "grad" in times and "hvp" in times:
                rows[-1]["hvp_over_gradient"] = times["hvp"] / times["grad"]
                print(f"  HVP / gradient ({mode}): {rows[-1]['hvp_over_gradient']:.2f}", flush=True)
        del theta, x, y, samples, advantages, v
    write_results(args.out, rows, device=args.device)


if __name__ == "__main__":
    main()
