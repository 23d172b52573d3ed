#!/usr/bin/env python3
"""Plots of a d2r run directory (what `d2r fit` or `d2r reproduce` wrote into --out).

    tools/plot_results.py DIR [--out PLOTS_DIR]

Reads DIR/results.json and DIR/curves.csv and writes PNG files (default: DIR/plots/):
  fit:        learning curves (NLL per dimension, RMSE, mean predicted std; train and validation),
              and for the bilevel method the reward parameters over the outer steps;
  reproduce:  one line per run of the reproduction for each metric (per task for `synthetic`),
              and u over the outer steps for the bilevel runs (`implicit`, `mbrl`), with the
              paper's value where it has one;
  sweep:      (DIR written by `d2r sweep`, reads DIR/results.json only) the validation outer loss
              against the fixed reward (log axis; every seed and their mean), the best value, and
              for every `--bilevel` run its path of rewards and outer losses over the outer steps
              drawn over it, ending at PG at its learned reward.
Needs matplotlib (Debian: python3-matplotlib, installed by tools/setup.sh).
"""
import argparse
import csv
import json
import math
import os
import sys


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read_curves(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


def finite(values):
    return any(math.isfinite(v) for v in values)


def save(fig, out_dir, name, written):
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    written.append(path)


def plot_classification_fit(plt, results, rows, out_dir, written):
    """`d2r fit --task classification`: cross-entropy and accuracy per epoch (train and test)."""
    epochs = [number(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (key, label) in zip(axes, [("nll", "cross-entropy"), ("accuracy", "accuracy")]):
        for split in ("train", "test", "val"):
            values = [number(r.get(f"{split}_{key}")) for r in rows]
            if finite(values):
                ax.plot(epochs, values, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.legend()
    fig.suptitle(f"d2r fit --task classification --method {results.get('config', {}).get('method', '?')}")
    save(fig, out_dir, "learning_curves.png", written)
    plt.close(fig)


def plot_tabular(plt, rows, out_dir, written):
    """`d2r reproduce tabular`: held-out accuracy per epoch of every method, one figure per data set
    (first seed), and β over the outer steps of the bilevel runs."""
    groups = {}
    for r in rows:
        dataset, seed, method = (r["run"].split("/") + ["", ""])[:3]
        if seed.endswith("0"):
            groups.setdefault(dataset, {}).setdefault((method, r.get("phase", "")), []).append(r)
    for dataset, runs in groups.items():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for (method, phase), rs in runs.items():
            steps = [number(r["step"]) for r in rs]
            if phase == "epoch":
                axes[0].plot(steps, [number(r["held_out_accuracy"]) for r in rs], label=method)
            elif finite([number(r.get("beta")) for r in rs]):
                axes[1].plot(steps, [number(r["beta"]) for r in rs], label=method)
        axes[0].set_xlabel("epoch")
        axes[0].set_title("held-out accuracy")
        axes[0].legend(fontsize=7)
        axes[1].set_xlabel("outer step")
        axes[1].set_title("β (bilevel)")
        fig.suptitle(f"reproduce tabular: {dataset}")
        save(fig, out_dir, f"tabular_{dataset}.png", written)
        plt.close(fig)


def plot_fit(plt, results, rows, out_dir, written):
    if rows and "epoch" in rows[0]:
        plot_classification_fit(plt, results, rows, out_dir, written)
        return
    steps = [number(r["step"]) for r in rows]
    held = "val" if rows and "val_nll_per_dim" in rows[0] else None
    metrics = [("nll_per_dim", "NLL per dimension"), ("rmse", "RMSE of the mean"), ("mean_std", "mean predicted std")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    method = results.get("config", {}).get("method", "?")
    for ax, (key, label) in zip(axes, metrics):
        train = [number(r["train_" + key]) for r in rows]
        ax.plot(steps, train, label="train")
        if held:
            val = [number(r[held + "_" + key]) for r in rows]
            if finite(val):
                ax.plot(steps, val, label="validation")
        ax.set_xlabel("outer step" if method == "bilevel" else "step")
        ax.set_title(label)
        ax.legend()
    fig.suptitle(f"d2r fit --method {method}")
    save(fig, out_dir, "learning_curves.png", written)
    plt.close(fig)
    reward_cols = [c for c in (rows[0].keys() if rows else []) if c.startswith("reward_")]
    if method == "bilevel" and reward_cols:
        fig, ax = plt.subplots(figsize=(6, 4))
        for c in reward_cols:
            ax.plot(steps, [number(r[c]) for r in rows], label=c)
        ax.set_xlabel("outer step")
        ax.set_ylabel("reward parameter")
        ax.set_title(f"learned reward ({results.get('config', {}).get('reward', '?')})")
        ax.legend()
        save(fig, out_dir, "reward.png", written)
        plt.close(fig)


def plot_reproduce(plt, results, rows, out_dir, written):
    experiment = results.get("experiment", "?")
    if experiment == "tabular":
        plot_tabular(plt, rows, out_dir, written)
        return
    runs = {}
    for r in rows:
        runs.setdefault(r["run"], []).append(r)
    # u over the outer steps of the bilevel runs.
    bilevel = {name: rs for name, rs in runs.items() if finite([number(r["u"]) for r in rs])}
    if bilevel:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name, rs in bilevel.items():
            ax.plot([number(r["step"]) for r in rs], [number(r["u"]) for r in rs], label=name)
        if experiment == "implicit":
            ax.axhline(0.32, color="k", linestyle="--", linewidth=1, label="paper: u* ≈ 0.32")
        elif experiment == "mbrl":
            ax.axhline(0.08, color="k", linestyle="--", linewidth=1, label="paper (D4RL medium): u = 0.08")
        ax.set_xlabel("outer step")
        ax.set_ylabel("u")
        ax.set_title(f"reproduce {experiment}: u over the outer steps")
        ax.legend(fontsize=8)
        save(fig, out_dir, "u.png", written)
        plt.close(fig)
    # Learning curves, one figure per group of runs (per task for synthetic, per file for mbrl).
    groups = {}
    for name in runs:
        if name in bilevel and experiment == "implicit":
            continue
        group = name.split("/")[0] if "/" in name else "all"
        groups.setdefault(group, []).append(name)
    metrics = [("test_nll_per_dim", "held-out NLL per dimension"), ("test_rmse", "held-out RMSE"),
               ("train_nll_per_dim", "train NLL per dimension")]
    if experiment == "implicit":
        metrics = [("train_nll_per_dim", "NLL per dimension"), ("train_mean_std", "mean predicted std")]
    for group, names in groups.items():
        shown = [(k, l) for k, l in metrics if any(finite([number(r[k]) for r in runs[n]]) for n in names)]
        if not shown:
            continue
        fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 4), squeeze=False)
        for ax, (key, label) in zip(axes[0], shown):
            for n in names:
                values = [number(r[key]) for r in runs[n]]
                if finite(values):
                    ax.plot([number(r["step"]) for r in runs[n]], values, label=n.split("/", 1)[-1])
            ax.set_xlabel("step")
            ax.set_title(label)
            if key.endswith("nll_per_dim"):
                ax.set_yscale("symlog")
        axes[0][-1].legend(fontsize=7)
        fig.suptitle(f"reproduce {experiment}: {group}")
        save(fig, out_dir, f"curves_{group}.png".replace("=", "_"), written)
        plt.close(fig)


def plot_sweep(plt, results, out_dir, written):
    """`d2r sweep`: outer loss against the reward, the bilevel paths over it."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    # One grid per step budget with `--learner bilevel` and bilevel runs of different step counts.
    groups = results.get("groups") or [{"grid": results.get("grid", []), "steps_per_run": None}]
    what = "the bilevel learner" if results.get("learner") == "bilevel" else "PG"
    means = []
    for k, grp in enumerate(groups):
        grid = grp.get("grid", [])
        xs = [g["value"] for g in grid]
        ms = [number(g.get("mean")) for g in grid]
        means += ms
        for g in grid:
            ax.scatter([g["value"]] * len(g["validation_loss"]), [number(v) for v in g["validation_loss"]], s=8,
                       color="0.6", zorder=1)
        steps = f", {grp['steps_per_run']} steps" if len(groups) > 1 else ""
        ax.plot(xs, ms, "o-", color="k", alpha=1.0 if k == 0 else 0.5,
                label=f"{what} at a fixed reward (mean of seeds{steps})", zorder=2)
    best = results.get("best", {})
    if "value" in best:
        ax.axvline(best["value"], color="k", ls=":", lw=1, label=f"sweep's best {best['value']:.3g}")
    for i, b in enumerate(results.get("bilevel", [])):
        path = os.path.join(b.get("path", ""), "results.json")
        color = f"C{i}"
        try:
            with open(path) as f:
                run = json.load(f)
            recs = run.get("records") or run.get("outer_records") or []
            key = "reward_params" if recs and "reward_params" in recs[0] else "beta"
            values = [r[key][0] if key == "reward_params" else r[key] for r in recs]
            losses = [number(r.get("outer_loss")) for r in recs]
            ax.plot(values, losses, ".-", color=color, alpha=0.6, lw=1,
                    label=f"bilevel path ({os.path.basename(os.path.normpath(b.get('path', '')))})")
        except (OSError, ValueError, KeyError, IndexError):
            pass
        ax.scatter([b["value"]], [number(b.get("mean"))], marker="*", s=140, color=color, zorder=3,
                   label=f"{what} at the learned {b['value']:.3g}")
    finite_means = [m for m in means if math.isfinite(m)]
    if finite_means:
        lo, hi = min(finite_means), sorted(finite_means)[len(finite_means) // 2]
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9) - 0.05, hi + 0.5 * (hi - lo + 1e-9) + 0.05)
    ax.set_xscale("log")
    ax.set_xlabel(results.get("reward", "reward"))
    ax.set_ylabel("validation outer loss")
    ax.legend(fontsize=7)
    ax.set_title(f"d2r sweep: {os.path.basename(results.get('data', {}).get('path', ''))}")
    save(fig, out_dir, "sweep.png", written)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="directory written by d2r fit, d2r reproduce or d2r sweep (--out)")
    parser.add_argument("--out", help="where to write the PNG files (default: RUN_DIR/plots)")
    args = parser.parse_args()
    results_path = os.path.join(args.run_dir, "results.json")
    curves_path = os.path.join(args.run_dir, "curves.csv")
    is_sweep = os.path.isfile(os.path.join(args.run_dir, "sweep.csv"))
    for p in (results_path,) if is_sweep else (results_path, curves_path):
        if not os.path.isfile(p):
            sys.exit(f"plot_results: {p} not found (give a directory written by d2r fit or d2r reproduce)")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_results: matplotlib is missing (Debian: apt-get install python3-matplotlib, then run this "
                 "script with the system python, /usr/bin/python3)")
    with open(results_path) as f:
        results = json.load(f)
    out_dir = args.out or os.path.join(args.run_dir, "plots")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    if results.get("command") == "sweep":
        plot_sweep(plt, results, out_dir, written)
        for p in written:
            print(p)
        return
    rows = read_curves(curves_path)
    if results.get("command") == "reproduce":
        plot_reproduce(plt, results, rows, out_dir, written)
    else:
        plot_fit(plt, results, rows, out_dir, written)
    for p in written:
        print(p)


if __name__ == "__main__":
    main()
