#!/usr/bin/env python3
"""Joins d2r's Google Benchmark JSON with the PyTorch peer JSON (bench/peer/*.py) into one
markdown table: time, GB/s, % of measured peak bandwidth, and the speed-up over each peer.

    tools/bench_report.py --ours bench-objectives.json bench-distributions.json \
                          --peer peer-pg-head.json peer-categorical.json > report.md
"""

import argparse
import json
import re

# Our benchmark family -> the peer family doing the same work.
PEERS = {
    "fused_scalar": "peer_pg_head",
    "categorical_sample": "peer_categorical",
}


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            rows += json.load(f)["benchmarks"]
    return rows


def to_us(row):
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[row.get("time_unit", "us")]
    return row["real_time"] * scale


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ours", nargs="+", required=True)
    parser.add_argument("--peer", nargs="*", default=[])
    args = parser.parse_args()
    ours = [r for r in load(args.ours) if "error_occurred" not in r and r.get("run_type", "iteration") == "iteration"]
    peers = {}
    for r in load(args.peer):
        family, _, sizes = r["name"].partition("/")
        base, _, mode = family.rpartition("_")
        peers[(base, sizes)] = peers.get((base, sizes), {}) | {mode: to_us(r)}
    print("| benchmark | time (µs) | GB/s | % of peak | PyTorch eager (µs) | speed-up | torch.compile (µs) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in ours:
        name = r["name"]
        m = re.match(r"([a-z_]+)/gpu/([\d/]+?)(/manual_time)?$", name)
        t = to_us(r)
        gbs = r.get("GB/s", 0) / 1e9 if r.get("GB/s", 0) > 1e6 else r.get("GB/s", 0)
        cells = [name, f"{t:.1f}", f"{gbs:.1f}", f"{r['%peak_bw']:.0f}" if "%peak_bw" in r else "–"]
        peer = peers.get((PEERS.get(m.group(1), ""), m.group(2)), {}) if m else {}
        for mode in ("eager", "compile"):
            if mode in peer:
                cells += [f"{peer[mode]:.1f}", f"{peer[mode] / t:.1f}×"]
            else:
                cells += ["–", "–"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
