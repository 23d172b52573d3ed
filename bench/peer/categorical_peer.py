"""Categorical sampling as PyTorch users do it: torch.multinomial(torch.softmax(logits), G,
replacement=True), eager and torch.compile, on the sizes of bench/cases_bench.cpp (categorical_sample).
Work stated as in d2r's benchmark: one read of the B x C logits and the B x G indices written.

    python3 bench/peer/categorical_peer.py --out peer-categorical.json
"""

import argparse

import torch

from common import time_cuda, write_results


def draw(logits, G):
    return torch.multinomial(torch.softmax(logits, dim=-1), G, replacement=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="peer-categorical.json")
    parser.add_argument("--classes", type=int, nargs="+", default=[2, 10, 1 << 10, 32000, 1 << 17, 1 << 18])
    parser.add_argument("--generations", type=int, nargs="+", default=[1, 5, 50])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    device = "cuda"
    compiled = None if args.no_compile else torch.compile(draw)
    rows = []
    for C in args.classes:
        B = min(max(64, (1 << 28) // (4 * C) // 4), 1 << 20)  # the same rule as cat_gpu_args
        logits = torch.rand(B, C, device=device, generator=torch.Generator(device=device).manual_seed(5)) * 8 - 4
        for G in args.generations:
            bytes_moved = 4.0 * (B * C + B * G)
            for name, fn in (("eager", draw), ("compile", compiled)):
                if fn is None:
                    continue
                mean_ms, min_ms = time_cuda(lambda: fn(logits, G), iterations=args.iterations)
                rows.append({"name": f"peer_categorical_{name}/{B}/{C}/{G}", "real_time": mean_ms * 1e3,
                             "min_time": min_ms * 1e3, "iterations": args.iterations, "bytes": bytes_moved,
                             "GB/s": bytes_moved / (mean_ms * 1e-3) * 1e-9})
                print(rows[-1]["name"], f"{mean_ms:.3f} ms", f"{rows[-1]['GB/s']:.1f} GB/s", flush=True)
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
