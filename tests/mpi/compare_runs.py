#!/usr/bin/env python3
"""Compares the outputs of two `d2r fit` runs (--out directories): every CSV file and results.json.

Usage: compare_runs.py A B [--rtol R] [--skip NAME,NAME]   (R = 0: bit-identical)

Wall-clock columns and fields (wall_seconds, date, command, device) are left out; every other
number must be equal (rtol 0) or within |a - b| <= rtol * max(1, |a|, |b|). NaN equals NaN.
Exit 0 when they match; 1 with the first differences printed otherwise; 2 when a file is missing.
"""
import csv
import json
import math
import os
import sys

SKIP = {"wall_seconds", "date", "command", "device", "elapsed_seconds", "seconds"}


def close(a, b, rtol):
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        if rtol == 0:
            return a == b
        return abs(a - b) <= rtol * max(1.0, abs(a), abs(b))
    return a == b


def number(s):
    try:
        return float(s)
    except ValueError:
        return s


def walk(a, b, path, rtol, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in SKIP or "seconds" in k:
                continue
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in one run")
                continue
            walk(a[k], b[k], f"{path}/{k}", rtol, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} vs {len(b)} entries")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", rtol, out)
    else:
        x = float(a) if isinstance(a, (int, float)) and not isinstance(a, bool) else a
        y = float(b) if isinstance(b, (int, float)) and not isinstance(b, bool) else b
        if not close(x, y, rtol):
            out.append(f"{path}: {a!r} vs {b!r}")


def main():
    args = sys.argv[1:]
    rtol = 0.0
    if "--rtol" in args:
        i = args.index("--rtol")
        rtol = float(args[i + 1])
        del args[i:i + 2]
    if "--skip" in args:
        i = args.index("--skip")
        SKIP.update(args[i + 1].split(","))
        del args[i:i + 2]
    a_dir, b_dir = args
    files = sorted(f for f in os.listdir(a_dir) if f.endswith(".csv") or f == "results.json")
    if "results.json" not in files:
        print(f"no results.json in {a_dir}")
        return 2
    diffs = []
    compared = 0
    for f in files:
        pa, pb = os.path.join(a_dir, f), os.path.join(b_dir, f)
        if not os.path.exists(pb):
            print(f"{f}: missing in {b_dir}")
            return 2
        if f.endswith(".json"):
            with open(pa) as fa, open(pb) as fb:
                walk(json.load(fa), json.load(fb), f, rtol, diffs)
            compared += 1
            continue
        with open(pa) as fa, open(pb) as fb:
            da, db = csv.DictReader(fa), csv.DictReader(fb)
            ra, rb = list(da), list(db)
            heads = (da.fieldnames, db.fieldnames)
        if len(ra) != len(rb) or heads[0] != heads[1]:
            diffs.append(f"{f}: {len(ra)} vs {len(rb)} rows, columns {heads[0]} vs {heads[1]}")
            continue
        # A table of no rows in both (say curves.csv of a run that trained no epochs): only its
        # columns are compared; results.json keeps the comparison from being empty.
        for i, (x, y) in enumerate(zip(ra, rb)):
            for k in x:
                if "seconds" in k or k in SKIP:
                    continue
                compared += 1
                if not close(number(x[k]), number(y.get(k, "")), rtol):
                    diffs.append(f"{f} row {i + 1} {k}: {x[k]} vs {y.get(k)}")
    if compared == 0:
        print("nothing compared")
        return 2
    if diffs:
        print(f"{len(diffs)} differences (rtol {rtol}) between {a_dir} and {b_dir}, first ones:")
        for d in diffs[:10]:
            print("  " + d)
        return 1
    print(f"{a_dir} and {b_dir} match ({len(files)} files, rtol {rtol})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
