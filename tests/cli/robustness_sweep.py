"""The `d2r sweep` group of tests/cli/robustness_test.py (run through its `group_sweep`): the options
sweep refuses, and what it checks before judging a learned reward (the same task, form, rows and learner,
seed noise), its --out, and a diverged learner at a learned reward. `t` is robustness_test's module: its
helpers (expect, out_dir, with_option, fail) and data (REG, CLS, CPU, BL_DONE)."""
import json
import os
import re


def run(t):
    """d2r sweep: options it would not use are refused, and a learned reward is judged only against a
    sweep of the same task, reward form and rows, with the seed noise to judge it by."""
    reg = ["sweep", t.REG, "--targets", "y0", "--hidden", "4", "--steps", "5", "--values", "1,2"] + t.CPU
    cls = ["sweep", t.CLS, "--task", "classification", "--label", "label", "--values", "1,2", "--epochs", "1"] + t.CPU
    for args, opt, why in [(reg + ["--final-model", "pg"], "--final-model", "not an option of sweep"),
                           (reg + ["--eval-every", "3"], "--eval-every", "final metrics only"),
                           (reg + ["--epochs", "3"], "--epochs", "only for --task classification"),
                           (cls + ["--standardize-targets"], "--standardize-targets", "only for --task regression"),
                           (cls + ["--steps", "3"], "--steps", "--learner pg trains a classifier for --epochs"),
                           (["sweep", t.REG, "--targets", "y0", "--values", "1,2", "--learner", "bilevel", "--steps", "5",
                             "-G", "7"] + t.CPU, "--generations", "not used by the exact gradient")]:
        t.expect(2, args + ["--out", t.out_dir("s")], r"error: d2r sweep: " + opt + r": .*" + re.escape(why))
    # Judged runs: a scalar-reward regression fit, a full-reward one, then sweeps of other rows or tasks.
    fit = ["fit", t.REG, "--targets", "y0", "--hidden", "4", "--method", "bilevel", "--outer-steps", "1"] + t.CPU
    t.expect(t.BL_DONE, fit + ["--out", t.out_dir("fs")])
    t.expect(t.BL_DONE, fit + ["--reward", "full", "--out", t.out_dir("ff")])
    t.expect(t.BL_DONE, fit + ["--preset", "paper", "--val-fraction", "0", "--out", t.out_dir("f0")])
    for args, pattern in [(reg + ["--bilevel", t.out_dir("fs"), "--seed", "1"],
                           r"was fit on other rows than this sweep's .*: the fit had --seed 0 \(here 1\)"),
                          (reg + ["--bilevel", t.out_dir("fs"), "--val-fraction", "0.3"], r"the fit had --val-fraction 0.2"),
                          (reg + ["--bilevel", t.out_dir("ff")], r"learned a full reward \(U = R Rᵀ\)"),
                          (reg + ["--bilevel", t.out_dir("f0")], r"was fit without validation rows"),
                          (cls + ["--bilevel", t.out_dir("fs")], r"is a regression fit; this sweep is --task classification"),
                          (reg + ["--bilevel", t.out_dir("fs"), "--seeds", "1"], r"--seeds: judging a learned reward"),
                          # the learner the reward was learned for: the same network, λ and precision
                          (t.with_option(reg, "--hidden", "8") + ["--bilevel", t.out_dir("fs")], r"--hidden: .* learned its reward for --hidden \[4\]"),
                          (reg + ["--lambda", "0.5", "--bilevel", t.out_dir("fs")], r"--lambda: .* for --lambda 1"),
                          (reg + ["--activation", "tanh", "--bilevel", t.out_dir("fs")], r"--activation: "),
                          (reg + ["--bilevel", t.out_dir("fs"), "--out", t.out_dir("fs")], r"--out: .* is the folder of a --bilevel fit")]:
        out = [] if "--out" in args else ["--out", t.out_dir("s")]
        t.expect(2, args + out, r"error: d2r sweep: .*" + pattern)
    if os.path.exists(t.out_dir("s")):
        t.fail("a refused sweep created --out")
    t.expect(2, ["sweep", t.REG, "--targets", "y0", "--hidden", "4", "--values", "1,2", "--learner", "bilevel", "--lr", "0.02",
               "--bilevel", t.out_dir("fs"), "--out", t.out_dir("s")] + t.CPU, r"--lr: .* trained its inner policy at --lr 0.01")
    t.expect(0, reg + ["--bilevel", t.out_dir("fs"), "--out", t.out_dir("s_ok")])  # the same rows: judged
    with open(os.path.join(t.out_dir("s_ok"), "results.json")) as f:
        if len(json.load(f)["bilevel"]) != 1:
            t.fail("the judged run is not in the sweep's results.json")
    # An earlier sweep's folder is replaced only with --overwrite.
    t.expect(2, reg + ["--out", t.out_dir("s_ok")], r"--out: .* holds the files of an earlier run \(results.json, sweep.csv\)")
    t.expect(0, reg + ["--out", t.out_dir("s_ok"), "--overwrite"])
    # A one-target diagonal reward is U = u·I: judged.
    t.expect(t.BL_DONE, fit + ["--reward", "diagonal", "--out", t.out_dir("fd")])
    t.expect(0, reg + ["--bilevel", t.out_dir("fd"), "--out", t.out_dir("s_fd")])
    # A learned reward whose learner diverges is said so (here every run diverges: exit 3).
    t.expect(3, reg + ["--lr", "1e10", "--bilevel", t.out_dir("fs"), "--out", t.out_dir("s_div")])
    with open(os.path.join(t.out_dir("s_div"), "results.json")) as f:
        if not any("the learner at the reward learned by" in w for w in json.load(f)["warnings"]):
            t.fail("the diverged learner at the learned reward is not warned about")
    # fit: a bilevel classifier trains epochs only for --final-model pg.
    cfit = ["fit", t.CLS, "--task", "classification", "--label", "label", "--method", "bilevel", "--outer-steps", "1"] + t.CPU
    t.expect(2, cfit + ["--epochs", "3", "--out", t.out_dir("s")], r"--epochs: a bilevel fit trains epochs only for --final-model pg")
    t.expect(t.BL_DONE, cfit + ["--epochs", "1", "--final-model", "pg", "--out", t.out_dir("cf")])
