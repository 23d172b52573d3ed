#!/usr/bin/env python3
"""Joins d2r's Google Benchmark JSON with the PyTorch peer JSON (bench/peer/*.py) into markdown:

  1. every GPU row of ours: time, GB/s, GFLOP/s, % of measured peak bandwidth, and the
     speed-up over each peer variant (eager, torch.compile) doing the same work at the same size;
  2. the HVP / gradient cost ratio of the policy curvature (ours: DiagGaussianPolicyCurvature
     apply / prepare; the peer: torch.func jvp-of-grad / grad), per size;
  3. the bilevel outer step (BilevelTrainer<float>::step vs the torch.func peer): ms per step,
     steps/s, GFLOP/s and the speed-ups;
  4. what did not run: our skipped or failed rows, the peer variants that failed (with the
     reason the peer recorded, e.g. a torch.compile failure) and whole peer scripts that
     failed (--failures).

    tools/bench_report.py --ours bench-objectives.json bench-curvature.json bench-outer-step.json \
                          --peer peer-pg-head.json peer-hvp.json peer-outer-step.json \
                          [--failures peer-failures.txt] > report.md
"""

import argparse
import json
import re
import sys

# Our benchmark family -> the peer family doing the same work.
PEERS = {
    "fused_scalar": "peer_pg_head",
    "categorical_sample": "peer_categorical",
    "gradient": "peer_policy_grad",
    "hvp": "peer_policy_hvp",
    "outer_step": "peer_outer_step",
}
MODES = ("eager", "compile")


def load(paths, problems):
    """Rows of every readable file; an unreadable one is noted in `problems` and skipped."""
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                rows += json.load(f)["benchmarks"]
        except (OSError, ValueError, KeyError) as error:
            problems.append(f"{path}: not read ({type(error).__name__}: {error})")
    return rows


def to_us(row):
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[row.get("time_unit", "us")]
    return row["real_time"] * scale


def rate(row, key):
    """A rate counter in giga-units/s (older runs wrote some in units/s)."""
    value = row.get(key, 0)
    return value / 1e9 if value > 1e6 else value


def ours_key(name):
    """(family, sizes) of one of our GPU rows, e.g. hvp/gpu/70000/64/manual_time -> (hvp, 70000/64)."""
    m = re.match(r"([a-z_]+)/gpu/([\d/]+?)(/manual_time)?$", name)
    return (m.group(1), m.group(2)) if m else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ours", nargs="+", required=True)
    parser.add_argument("--peer", nargs="*", default=[])
    parser.add_argument("--failures", nargs="*", default=[], help="files of 'peer script: reason' lines")
    args = parser.parse_args()
    problems = []
    all_ours = [r for r in load(args.ours, problems) if r.get("run_type", "iteration") == "iteration"]
    ours = [r for r in all_ours if not r.get("error_occurred")]
    skipped = [r for r in all_ours if r.get("error_occurred")]
    peers, peer_errors = {}, []
    for r in load(args.peer, problems):
        family, _, sizes = r["name"].partition("/")
        base, _, mode = family.rpartition("_")
        if r.get("error_occurred"):
            peer_errors.append(f"`{r['name']}`: {r.get('error_message', 'failed (no reason recorded)')}")
            cell = "failed"
        else:
            cell = to_us(r)
        peers[(base, sizes)] = peers.get((base, sizes), {}) | {mode: cell}

    def peer_cells(family, sizes, t):
        peer = peers.get((PEERS.get(family, ""), sizes), {})
        cells = []
        for mode in MODES:
            value = peer.get(mode)
            if value is None:
                cells += ["–", "–"]
            elif value == "failed":
                cells += ["failed", "–"]
            else:
                cells += [f"{value:.1f}", f"{value / t:.2f}×"]
        return cells

    print("| benchmark | time (µs) | GB/s | GFLOP/s | % of peak bw | PyTorch eager (µs) | speed-up "
          "| torch.compile (µs) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    by_key = {}
    for r in ours:
        key = ours_key(r["name"])
        t = to_us(r)
        if key:
            by_key[key] = r
        gflops = rate(r, "GFLOP/s")
        cells = [r["name"], f"{t:.1f}", f"{rate(r, 'GB/s'):.1f}", f"{gflops:.0f}" if gflops else "–",
                 f"{r['%peak_bw']:.0f}" if "%peak_bw" in r else "–"]
        cells += peer_cells(*key, t) if key else ["–"] * 4
        print("| " + " | ".join(cells) + " |")

    # HVP / gradient: ours (apply / prepare) and the peer's (jvp of grad / grad), per size.
    sizes = sorted({s for (f, s) in by_key if f == "hvp" and ("gradient", s) in by_key})
    if sizes:
        print("\n### Policy curvature: HVP / gradient cost ratio (DESIGN.md §6 target ≤ 3)\n")
        print("| size (B/width) | d2r HVP (µs) | d2r gradient (µs) | d2r ratio | eager ratio | torch.compile ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        for s in sizes:
            h, g = to_us(by_key[("hvp", s)]), to_us(by_key[("gradient", s)])
            cells = [s, f"{h:.1f}", f"{g:.1f}", f"{h / g:.2f}"]
            for mode in MODES:
                ph = peers.get((PEERS["hvp"], s), {}).get(mode)
                pg = peers.get((PEERS["gradient"], s), {}).get(mode)
                ok = isinstance(ph, float) and isinstance(pg, float)
                cells.append(f"{ph / pg:.2f}" if ok else "–")
            print("| " + " | ".join(cells) + " |")

    # The bilevel outer step.
    steps = sorted(s for (f, s) in by_key if f == "outer_step")
    if steps:
        print("\n### Bilevel outer step (BilevelTrainer<float>::step vs torch.func)\n")
        print("| B | d2r ms/step | d2r steps/s | d2r GFLOP/s | eager ms/step | speed-up | torch.compile ms/step "
              "| speed-up |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for s in steps:
            r = by_key[("outer_step", s)]
            t = to_us(r)
            cells = [s, f"{t / 1e3:.2f}", f"{1e6 / t:.1f}", f"{rate(r, 'GFLOP/s'):.0f}"]
            peer = peers.get((PEERS["outer_step"], s), {})
            for mode in MODES:
                value = peer.get(mode)
                if isinstance(value, float):
                    cells += [f"{value / 1e3:.2f}", f"{value / t:.2f}×"]
                else:
                    cells += [value or "–", "–"]
            print("| " + " | ".join(cells) + " |")

    notes = [f"`{r['name']}`: {r.get('error_message', 'skipped')}" for r in skipped] + peer_errors + problems
    for path in args.failures:
        try:
            with open(path) as f:
                notes += [line.strip() for line in f if line.strip()]
        except OSError:
            pass
    if notes:
        print("\n### Not run or failed\n")
        for note in notes:
            print(f"- {note}")


if __name__ == "__main__":
    sys.exit(main())
