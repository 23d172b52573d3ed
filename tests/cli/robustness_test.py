#!/usr/bin/env python3
"""The d2r program driven like a careless or hostile user (issue 14): the real program, real files,
exit codes and what is left in --out. One group of checks per ctest test (label `cli`):

    robustness_test.py D2R WORK_DIR GROUP

Exit codes of the program (README): 0 success, 1 internal error, 2 bad input (nothing written),
3 diverged / non-finite final metrics (results.json written with the reason), 4 step_limited.
Every run is tiny (a few rows, a 4-unit layer, a handful of outer steps) so that the whole suite
stays within a few CPU-minutes.
"""
import csv
import io
import json
import math
import os
import re
import random
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

D2R, WORK, GROUP = sys.argv[1], sys.argv[2], sys.argv[3]
FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("FAIL: " + msg, flush=True)


def run(args, timeout=120, stdout=subprocess.PIPE, **kw):
    """Runs d2r with `args` (list of str/bytes); returns (exit code, stdout + stderr as text)."""
    p = subprocess.run([D2R] + list(args), stdout=stdout, stderr=subprocess.PIPE, timeout=timeout, **kw)
    out = (p.stdout or b"") + p.stderr
    return p.returncode, out.decode("utf-8", "replace")


def expect(code, args, pattern=None, label=None, **kw):
    rc, out = run(args, **kw)
    import re
    name = label or " ".join(a if isinstance(a, str) else repr(a) for a in args)
    if rc != code:
        fail(f"{name}: expected exit {code}, got {rc}:\n{out}")
    elif code == 2 and "d2r::" in out:
        fail(f"{name}: the refusal names a library function instead of the user's option or file:\n{out}")
    elif pattern is not None and not re.search(pattern, out, re.S):
        fail(f"{name}: exit {rc} as expected but the message does not match {pattern!r}:\n{out}")
    return rc, out


def listing(d):
    """{name: (size, mtime_ns)} of everything in d (hidden files too); {} when d does not exist."""
    if not os.path.isdir(d):
        return {}
    out = {}
    for n in os.listdir(d):
        st = os.lstat(os.path.join(d, n))
        out[n] = (st.st_size, st.st_mtime_ns)
    return out


def temporaries(d):
    return sorted(n for n in os.listdir(d) if ".tmp" in n or n.startswith(".d2r-probe"))


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return path


def regression_csv(path, rows=40, seed=5, change=None):
    rng = random.Random(seed)
    lines = ["x0,x1,y0"]
    for i in range(rows):
        x0, x1 = rng.uniform(-2, 2), rng.uniform(-2, 2)
        y = x0 - 0.5 * x1 + 1 + rng.uniform(-0.3, 0.3)
        if change is not None and i == change:
            y += 1
        lines.append(f"{x0:.4f},{x1:.4f},{y:.4f}")
    return write(path, "\n".join(lines) + "\n")


def classification_csv(path, rows=60, seed=6):
    rng = random.Random(seed)
    centres = {"a": (2, 0), "b": (0, 2), "c": (-2, -2)}
    lines = ["f0,f1,label"]
    for i in range(rows):
        name = "abc"[i % 3]
        cx, cy = centres[name]
        lines.append(f"{cx + rng.uniform(-1.5, 1.5):.4f},{cy + rng.uniform(-1.5, 1.5):.4f},{name}")
    return write(path, "\n".join(lines) + "\n")


os.makedirs(WORK, exist_ok=True)
W = os.path.join(WORK, GROUP)
shutil.rmtree(W, ignore_errors=True)
os.makedirs(W)
REG = regression_csv(os.path.join(W, "a.csv"))
CLS = classification_csv(os.path.join(W, "c.csv"))
CPU = ["--device", "cpu", "-q"]
REG_BL = [REG, "--targets", "y0", "--hidden", "4", "--method", "bilevel", "--outer-steps", "6", "--inner-steps", "3",
          "--checkpoint-every", "1"] + CPU
CLS_BL = [CLS, "--task", "classification", "--label", "label", "--method", "bilevel", "--outer-steps", "4",
          "--inner-steps", "3", "--checkpoint-every", "1"] + CPU
# (No -G: the default preset draws nothing, and refuses it.) These short bilevel runs end step_limited (issue 13: the verdict is in the exit code, 4).
BL_DONE = 4


def with_option(args, option, value):
    """args with the value after `option` replaced."""
    out = list(args)
    out[out.index(option) + 1] = value
    return out


def out_dir(name):
    return os.path.join(W, name)


# ------------------------------------------------------------------------------------------ groups
def group_resume_identity():
    """Finding 1: a checkpoint resumes only onto its own data and settings, even copied alone."""
    b_csv = regression_csv(os.path.join(W, "b.csv"), change=7)  # one target value differs
    d = out_dir("d")
    expect(BL_DONE, ["fit"] + REG_BL + ["--out", d])
    before = listing(d)
    # B into A's folder: refused (reused folder), and with --resume refused naming the data.
    b_args = ["fit", b_csv] + REG_BL[1:] + ["--out", d]
    a_ckpt = shutil.copy(os.path.join(d, "checkpoint.ckpt"), os.path.join(W, "a.ckpt"))
    expect(2, b_args, r"--out: .*holds the files of an earlier run")
    expect(2, b_args + ["--resume"], r"--resume: .*other settings \(data\)")
    if listing(d) != before:
        fail("a refused resume changed the folder")
    # Only checkpoint.ckpt copied into a new folder: the checkpoint's own fingerprint decides.
    cases = [
        (["fit", b_csv] + REG_BL[1:], r"data\.hash: saved [0-9a-f]+, now [0-9a-f]+"),
        (["fit"] + REG_BL + ["--u", "2"], r"reward\.init: saved \[1\], now \[2\]"),
        (["fit"] + REG_BL + ["--standardize"], r"identity\.data\.standardize: saved false, now true"),
        (["fit"] + REG_BL + ["--lr", "0.02"], r"options\.inner\.adam\.learning_rate: saved 0\.01, now 0\.02"),
        (["fit"] + REG_BL + ["--seed", "9"], r"context\.seed: saved 0, now 9"),
    ]
    for i, (args, pattern) in enumerate(cases):
        e = out_dir(f"copy{i}")
        os.makedirs(e)
        shutil.copy(a_ckpt, os.path.join(e, "checkpoint.ckpt"))
        before = listing(e)
        expect(2, args + ["--resume", "--out", e], r"--resume: .*another configuration or other data.*" + pattern)
        if listing(e) != before:
            fail(f"a refused resume changed {e}")
    # Positive control: the same data and settings resume from the copy (nothing left to do: the
    # checkpoint holds every outer step) and give the same results.
    e = out_dir("copy_ok")
    os.makedirs(e)
    shutil.copy(a_ckpt, os.path.join(e, "checkpoint.ckpt"))
    expect(BL_DONE, ["fit"] + REG_BL + ["--resume", "--out", e])
    a, b = masked_results(d), masked_results(e)
    if a != b:
        fail("resuming a finished run from a copied checkpoint changed the results")
    # The sequence: B with --overwrite into A's folder, killed early (as soon as it starts
    # removing A's files), then B --resume: it finds no checkpoint, refuses what is left of A's, or
    # resumes B's own and ends as the uninterrupted B run; never A's state on B's data.
    b_whole = out_dir("b_whole")
    expect(BL_DONE, ["fit", b_csv] + REG_BL[1:] + ["--out", b_whole])
    p = subprocess.Popen([D2R] + b_args + ["--overwrite"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while os.path.exists(os.path.join(d, "results.json")) and time.time() - t0 < 20:
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL)
    p.wait()
    rc, out = run(b_args + ["--resume"])
    if rc in (0, BL_DONE):
        compare_runs(b_whole, d, "B killed and resumed in A's folder")
    elif rc != 2 or not any(m in out for m in ("no checkpoint", "other settings (data)", "other data")):
        fail(f"B --resume after B --overwrite was killed: expected exit 0 (B's own checkpoint) or 2 (none, or A's "
             f"refused), got {rc}:\n{out}")
    else:
        print("B was killed before its first checkpoint: --resume refused: " + out.strip().splitlines()[-1], flush=True)


def group_class_resume_metrics():
    """Finding 3: classification records restored from a checkpoint keep their accuracies."""
    whole, part = out_dir("whole"), out_dir("part")
    expect(BL_DONE, ["fit"] + CLS_BL + ["--out", whole])
    expect(BL_DONE, ["fit"] + with_option(CLS_BL, "--outer-steps", "2") + ["--out", part])
    expect(BL_DONE, ["fit"] + CLS_BL + ["--resume", "--out", part], r"resuming from the checkpoint after outer step 2")
    j = json.load(open(os.path.join(part, "results.json")))
    for r in j["outer_records"]:
        for part_name in ("train", "validation"):
            if r[part_name]["accuracy"] is None:
                fail(f"outer step {r['step']}: {part_name} accuracy is null after a resume")
    rows = list(csv.reader(open(os.path.join(part, "outer_curves.csv"))))
    if len(rows) != 1 + 4:
        fail(f"outer_curves.csv has {len(rows) - 1} rows after a resume, expected 4")
    compare_runs(whole, part, "classification resume")


def group_divergence():
    """Finding 4: non-finite final metrics are exit 3 with the reason in results.json."""
    big = os.path.join(W, "big.csv")
    rows = ["x0,y0"] + [f"{(i % 7) * 1e37:.6g},{i % 5}" for i in range(30)]
    write(big, "\n".join(rows) + "\n")
    for name, args in (("lr", ["fit", REG, "--targets", "y0", "--hidden", "4", "--lr", "1e10", "--steps", "30"]),
                       ("big", ["fit", big, "--targets", "y0", "--hidden", "4", "--steps", "30"])):
        d = out_dir("div_" + name)
        expect(3, args + CPU + ["--out", d], r"error: d2r fit: the run diverged: .*not? ?(nan|inf|-nan)|diverged")
        j = json.load(open(os.path.join(d, "results.json")))
        if j.get("verdict") != "diverged" or "non-finite" not in j.get("reason", ""):
            fail(f"{name}: results.json has verdict {j.get('verdict')!r}, reason {j.get('reason')!r}")
    # A sweep whose every grid value diverged has no best: exit 3 too, results.json saying so.
    d = out_dir("div_sweep")
    expect(3, ["sweep", REG, "--targets", "y0", "--hidden", "4", "--lr", "1e10", "--steps", "30", "--values", "1,2",
               "--out", d] + CPU, r"error: d2r sweep: no value of the grid trained to a finite validation loss")
    j = json.load(open(os.path.join(d, "results.json")))
    if j.get("status") != "diverged" or "no value of the grid" not in j.get("reason", ""):
        fail(f"sweep: results.json has status {j.get('status')!r}, reason {j.get('reason')!r}")
    d = out_dir("ok_sweep")
    expect(0, ["sweep", REG, "--targets", "y0", "--hidden", "4", "--steps", "5", "--values", "1,2", "--out", d] + CPU)
    if json.load(open(os.path.join(d, "results.json"))).get("status") != "ok":
        fail("a finite sweep is not status ok")


def group_nonregular():
    """Finding 5: a FIFO or a device as the data file is refused at once."""
    fifo = os.path.join(W, "fifo.csv")
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        t0 = time.time()
        expect(2, ["fit", path, "--targets", "y0", "--out", out_dir("nr")] + CPU, r"not a regular file", timeout=20)
        if time.time() - t0 > 10:
            fail(f"{path}: the refusal took {time.time() - t0:.0f} s")
    if os.path.exists(out_dir("nr")):
        fail("a refused data file created --out")


def group_memory():
    """Finding 6: a network too large for the machine is refused with the figure, before allocating."""
    # Enough 65536-wide layers that their parameters alone (4 copies of 4 bytes each: θ, gradient,
    # Adam's moments) are twice this machine's memory: 65536,65536 (64 GiB) on a small machine.
    mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    layers = 2
    while (layers - 1) * 65536 * 65536 * 16 < 2 * mem:
        layers += 1
    expect(2, ["fit", REG, "--targets", "y0", "--hidden", ",".join(["65536"] * layers), "--out", out_dir("m")] + CPU,
           r"--hidden: .*needs at least [0-9.]+ GiB, more than the [0-9.]+ GiB")
    if os.path.exists(out_dir("m")):
        fail("a refused run created --out")
    # Bilevel holds about 20 vectors of the parameters' size, not 4: a network whose 4 copies would
    # fit (mem / 36 parameters: 4 copies are 0.44 of the memory) is refused for bilevel, before
    # allocating.
    width, layers = 65537, 1
    while width > 65536:
        layers += 1
        width = int(math.sqrt(mem / 36 / (layers - 1)))
    expect(2, ["fit", REG, "--targets", "y0", "--method", "bilevel", "--outer-steps", "1", "--inner-steps", "1",
               "--hidden", ",".join([str(width)] * layers), "--out", out_dir("m")] + CPU,
           r"--hidden: .*needs at least [0-9.]+ GiB, more than the [0-9.]+ GiB")
    if os.path.exists(out_dir("m")):
        fail("a refused bilevel run created --out")


def group_unused_options():
    """Finding 7: an option the chosen method does not use is refused, naming it."""
    reg = ["fit", REG, "--targets", "y0"] + CPU
    cls = ["fit", CLS, "--task", "classification", "--label", "label"] + CPU
    cases = [(reg + ["--method", "nll", opt, val], opt) for opt, val in (
        ("--outer-steps", "3"), ("--solver", "cg"), ("--curvature", "surrogate"), ("-G", "3"), ("--lambda", "2"),
        ("--reward", "diagonal"), ("--outer-lr", "0.1"), ("--checkpoint-every", "2"), ("--inner-start", "fresh"))]
    cases += [(reg + ["--method", "bilevel", "--steps", "5"], "--steps"),
              (reg + ["--method", "bilevel", "--eval-every", "2"], "--eval-every"),
              (reg + ["--method", "pg", "--inner-steps", "2"], "--inner-steps"),
              (cls + ["--method", "nll", "--outer-data", "train"], "--outer-data"),
              (cls + ["--method", "nll", "--lambda", "2"], "--lambda"),
              (cls + ["--method", "pg", "--outer-steps", "2"], "--outer-steps")]
    for args, opt in cases:
        name = "--generations" if opt == "-G" else opt
        expect(2, args + ["--out", out_dir("u")], r"error: d2r fit: " + name + r": not used by --method")
    # Options of another outer optimiser or solver than the settings use (d2r::inert_fields).
    inert = [(reg + ["--method", "bilevel", "--outer-lr", "0.1"], "--outer-lr", "the Rprop outer optimiser of --preset recommended"),
             (cls + ["--method", "bilevel", "--preset", "stationary", "--outer-lr", "0.1"], "--outer-lr",
              "the Rprop outer optimiser of --preset stationary"),
             (reg + ["--method", "bilevel", "--preset", "paper", "--outer-step", "0.2"], "--outer-step",
              "the Adam outer optimiser of --preset paper"),
             (cls + ["--method", "bilevel", "--preset", "paper", "--flat-tolerance", "0.1"], "--flat-tolerance",
              "the Adam outer optimiser of --preset paper"),
             (cls + ["--method", "bilevel", "--solver", "neumann", "--solver-iterations", "5"], "--solver-iterations",
              "--solver neumann"),
             # The recommended and stationary presets draw nothing: G is unread (and so for --final-model pg,
             # whose epochs take the same exact objective).
             (reg + ["--method", "bilevel", "-G", "8"], "--generations", "--inner-objective exact with --curvature exact"),
             (cls + ["--method", "bilevel", "--preset", "stationary", "--final-model", "pg", "--generations", "8"],
              "--generations", "--inner-objective exact with --curvature exact")]
    for args, opt, why in inert:
        expect(2, args + ["--out", out_dir("u")], r"error: d2r fit: " + opt + r": not used by " + re.escape(why))
    # --flat-tolerance sets Rprop's flat test (the library option the Python keyword flat_tolerance sets).
    expect(BL_DONE, cls + ["--method", "bilevel", "--outer-steps", "2", "--flat-tolerance", "0.05", "--out", out_dir("ft")])
    with open(os.path.join(out_dir("ft"), "results.json")) as f:
        if json.load(f)["config"]["library_options"]["bilevel"]["rprop"]["flat_tolerance"] != 0.05:
            fail("--flat-tolerance 0.05 is not the run's rprop.flat_tolerance")
    # ... while G is taken where something is sampled: REINFORCE inner steps, the surrogate's curvature.
    for i, extra in enumerate((["--preset", "paper"], ["--inner-objective", "reinforce"], ["--curvature", "surrogate"])):
        expect(BL_DONE, reg + ["--method", "bilevel", "--hidden", "4", "--outer-steps", "2", "--inner-steps", "2", "-G", "3"] +
               extra + ["--out", out_dir(f"g{i}")])
        with open(os.path.join(out_dir(f"g{i}"), "results.json")) as f:
            if json.load(f)["config"]["generations"] != 3:
                fail(f"-G 3 with {extra} is not the run's G")
    # sweep: the grid options beside --values would do nothing.
    for opt, val in (("--points", "5"), ("--grid-min", "0.5")):
        expect(2, ["sweep", REG, "--targets", "y0", "--values", "1,2", opt, val, "--out", out_dir("u")] + CPU,
               r"error: d2r sweep: " + opt + r": not used with --values")
    if os.path.exists(out_dir("u")):
        fail("a refused option created --out")


def group_sweep():
    """d2r sweep: the options it refuses and what it checks before judging a learned reward
    (tests/cli/robustness_sweep.py, kept beside this file for its length)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import robustness_sweep

    robustness_sweep.run(sys.modules[__name__])


def group_utf8():
    """Finding 2: invalid UTF-8 in the data is refused at read time with file, line and column; a
    file name that is not UTF-8 is only a name and is written escaped."""
    bad_header = os.path.join(W, "bad_header.csv")
    write(bad_header, b"x0,y\xff\n1,2\n2,3\n3,4\n4,5\n", "wb")
    expect(2, ["fit", bad_header, "--targets", "x0", "--out", out_dir("u1")] + CPU,
           r"bad_header\.csv line 1, column 2: invalid UTF-8: byte 0xff")
    bad_label = os.path.join(W, "bad_label.csv")
    rows = [b"f0,label"] + [b"%d,%s" % (i, b"a" if i % 2 else b"b\xe9") for i in range(20)]
    write(bad_label, b"\n".join(rows) + b"\n", "wb")
    expect(2, ["fit", bad_label, "--task", "classification", "--label", "label", "--out", out_dir("u2")] + CPU,
           r"bad_label\.csv line 2, column 2 'label': invalid UTF-8: byte 0xe9")
    for d in ("u1", "u2"):
        if os.path.exists(out_dir(d)):
            fail("refused invalid UTF-8 created --out")
    latin1 = os.path.join(W.encode(), b"donn\xe9es.csv")
    shutil.copy(REG, latin1)
    d = out_dir("u3")
    rc, out = run([b"fit", latin1, b"--targets", b"y0", b"--hidden", b"4", b"--steps", b"3", b"--out", d.encode()] +
                  [a.encode() for a in CPU])
    if rc != 0:
        fail(f"a Latin-1 file name: exit {rc}:\n{out}")
    else:
        with open(os.path.join(d, "results.json"), "rb") as f:
            j = json.loads(f.read().decode("utf-8"))  # strict UTF-8
        if "\ufffd" not in j["config"]["data"]["path"]:
            fail(f"the Latin-1 file name is not escaped in results.json: {j['config']['data']['path']!r}")


def group_small():
    """Finding 8, the option checks: NaN, wrapped integers, empty list items, quoted names."""
    reg = ["fit", REG, "--targets", "y0"] + CPU + ["--out", out_dir("s")]
    expect(2, reg + ["--val-fraction", "nan"], r"error: .*--val-fraction.*finite number")
    expect(2, reg + ["--seed", "-1"], r"error: .*--seed.*whole number")
    expect(2, reg + ["--seed", "18446744073709551616"], r"error: .*--seed.*whole number")
    expect(2, reg + ["--hidden", "8,"], r"error: .*--hidden.*empty item")
    expect(2, reg + ["--hidden", "4,,4"], r"error: .*--hidden.*empty item")
    expect(2, ["fit", REG, "--targets", "y0,,x1"] + CPU + ["--out", out_dir("s")], r"error: .*--targets.*empty item")
    expect(2, reg + ["--bogus"], r"^error: The following argument")
    expect(0, ["--help"], r"Exit codes: 0 success .*2 bad input .*3 the run diverged")
    expect(2, ["sample", "--step=-1"], r"error: .*--step.*whole number")
    expect(2, ["sample", "--mean", "0", "--std", "1e-300"], r"--std: entry 0 is 1e-300")
    expect(2, ["sample", "--mean", "1e300", "--std", "1"], r"--mean: entry 0 is 1e\+300; the draws are in float")
    expect(2, ["sample", "--head", "categorical", "--logits", "1e300,0"], r"--logits: entry 0 is 1e\+300")
    if os.path.exists(out_dir("s")):
        fail("refused options created --out")
    # The largest seed is a seed; a column whose name holds a comma is selected by quoting it.
    comma = os.path.join(W, "comma.csv")
    src = open(REG).read().splitlines()
    write(comma, "\n".join(['x0,x1,"y,0"'] + src[1:]) + "\n")
    expect(0, ["fit", comma, "--targets", '"y,0"', "--hidden", "4", "--steps", "2", "--seed", "18446744073709551615",
               "--out", out_dir("s_ok")] + CPU)
    j = json.load(open(os.path.join(out_dir("s_ok"), "results.json")))
    if j["config"]["data"]["targets"] != ["y,0"] or j["config"]["seed"] != 18446744073709551615:
        fail(f"quoted target / largest seed: {j['config']['data']['targets']}, {j['config']['seed']}")
    # A value a float cannot hold is named by file, line and column.
    huge = os.path.join(W, "huge.csv")
    write(huge, "x0,y0\n1,2\n2,3\n1e39,4\n3,5\n4,6\n")
    expect(2, ["fit", huge, "--targets", "y0", "--out", out_dir("s")] + CPU,
           r"huge\.csv line 4, column 1 'x0': 1e\+39 is outside the range of --precision float")
    # The options named, not the library's arguments (target_columns, feature_columns).
    expect(2, ["fit", REG, "--targets", "y0", "--features", "y0", "--out", out_dir("s")] + CPU,
           r"error: d2r fit: --features: .*'y0': the column is named both as a target and as a feature")
    expect(2, ["fit", REG, "--targets", "x0,x0", "--out", out_dir("s")] + CPU,
           r"error: d2r fit: --targets: .*'x0': the column is named twice")
    # Messages in the user's words: a 2-row file names --val-fraction (not the library's
    # test_fraction); an --out under /proc says the folder takes no files.
    two = write(os.path.join(W, "two.csv"), "x0,y0\n1,2\n2,3\n")
    expect(2, ["fit", two, "--targets", "y0", "--out", out_dir("s")] + CPU,
           r"--val-fraction: 0\.2 of the 2 rows of .*two\.csv leaves no training or no validation rows")
    # Target scaling refuses what it cannot scale, before anything is written: one training row (no
    # standard deviation), and constant targets whose mean rounds (ten rows of 0.1: a variance of
    # 2e-34 that is not zero, which used to train on targets scaled by 1e-17 and exit 0).
    one = write(os.path.join(W, "one.csv"), "x0,y0\n1,2\n")
    expect(2, ["fit", one, "--targets", "y0", "--val-fraction", "0", "--out", out_dir("s")] + CPU,
           r"--standardize-targets: 1 training row\(s\).*--no-standardize-targets")
    tenths = write(os.path.join(W, "tenths.csv"), "x0,y0\n" + "".join(f"{i},0.1\n" for i in range(10)))
    expect(2, ["fit", tenths, "--targets", "y0", "--val-fraction", "0", "--out", out_dir("s")] + CPU,
           r"--standardize-targets: the training targets are constant")
    expect(2, ["fit", REG, "--targets", "y0", "--out", "/proc/d2r-x"] + CPU,
           r"--out: '/proc/d2r-x' cannot be created: directory '/proc' is not writable \(it does not take new files\)")
    # Categorical logits from a file: 2^18 classes.
    logits = os.path.join(W, "logits.txt")
    write(logits, "\n".join(f"{(i % 13) * 0.1:.1f}" for i in range(1 << 18)) + "\n")
    expect(0, ["sample", "--head", "categorical", "--logits-file", logits, "-G", "2000", "--device", "cpu"],
           r"entropy [0-9.]+")
    bad_logits = write(os.path.join(W, "bad_logits.txt"), "0.5, 1\n2 x\n")
    expect(2, ["sample", "--head", "categorical", "--logits-file", bad_logits, "--device", "cpu"],
           r"bad_logits\.txt line 2, column 3: expected a finite logit")


def group_out_folder():
    """Finding 8, --out: reuse policy, --overwrite, stale temporaries, the lock, bad output paths."""
    d = out_dir("o")
    expect(BL_DONE, ["fit"] + REG_BL + ["--out", d])
    before = listing(d)
    expect(2, ["fit", REG, "--targets", "y0", "--hidden", "4", "--steps", "2", "--out", d] + CPU,
           r"--out: .*holds the files of an earlier run \(results\.json, curves\.csv, checkpoint\.ckpt, "
           r"checkpoint\.json\); pass --overwrite")
    if listing(d) != before:
        fail("a refused reuse changed the folder")
    expect(2, ["fit"] + REG_BL + ["--out", d, "--resume", "--overwrite"], r"error: .*excludes")
    # Leftovers of a killed run, and a file of the user's.
    # The user's files are kept, also those whose names merely look temporary.
    mine = ["notes.txt", "notes.tmp.txt", ".draft.tmp-1-2", "results.json.bak"]
    for n in [".results.json.tmp-99999-0", "checkpoint.ckpt.tmp.AbC123", ".d2r-probe-99999-1",
              ".curves.csv.tmp-99999-3"] + mine:
        write(os.path.join(d, n), "x")
    expect(0, ["fit", REG, "--targets", "y0", "--hidden", "4", "--steps", "2", "--overwrite", "--out", d] + CPU)
    left = sorted(os.listdir(d))
    if left != sorted(["curves.csv", "results.json"] + mine):
        fail(f"--overwrite left {left}, expected curves.csv, results.json and the user's {mine}")
    # results.json a directory: refused before training.
    e = out_dir("o_dir")
    os.makedirs(os.path.join(e, "results.json"))
    expect(2, ["fit", REG, "--targets", "y0", "--out", e] + CPU, r"results\.json' exists and is not a regular file")
    # Standard output that takes nothing: /dev/full, a closed pipe. Refused before training.
    f = out_dir("o_full")
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            rc, out = run(["fit"] + REG_BL + ["--out", f], stdout=full)
        if rc != 2 or "standard output" not in out or os.path.exists(os.path.join(f, "checkpoint.json")):
            fail(f">/dev/full: expected exit 2 before any file, got {rc}:\n{out}")
    else:
        print("no /dev/full on this machine: that case is not run", flush=True)
    r_fd, w_fd = os.pipe()
    os.close(r_fd)
    g = out_dir("o_pipe")
    rc, out = run(["fit"] + REG_BL + ["--out", g], stdout=w_fd)
    os.close(w_fd)
    if rc != 2 or "standard output" not in out or os.path.exists(os.path.join(g, "checkpoint.json")):
        fail(f"closed stdout pipe: expected exit 2 before any file, got {rc}:\n{out}")
    # A pipe closed while the run goes on (the reader stops after a few bytes): never killed by
    # SIGPIPE, never exit 0; exit 2 when the header could not be written (nothing in --out), else 1
    # after the results are written.
    g2 = out_dir("o_head")
    p = subprocess.Popen([D2R, "fit"] + REG_BL[:] + ["--out", g2], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode("utf-8", "replace")
    rc = p.wait()
    if rc not in (1, 2) or "standard output" not in err:
        fail(f"stdout closed mid-run: expected exit 1 or 2 naming standard output, got {rc}:\n{err}")
    elif rc == 1 and not os.path.exists(os.path.join(g2, "results.json")):
        fail("stdout closed mid-run: exit 1 but no results.json")
    # The lock: a second run into a folder a run is writing to is refused, saying so.
    h = out_dir("o_lock")
    # The paper preset: it never stops before its budget (the recommended one stops when converged).
    long_run = ["fit"] + with_option(REG_BL, "--outer-steps", "400") + ["--preset", "paper", "--out", h]
    p = subprocess.Popen([D2R] + long_run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while not os.path.exists(os.path.join(h, "checkpoint.json")) and time.time() - t0 < 30:
            time.sleep(0.05)
        expect(2, ["fit"] + REG_BL + ["--out", h, "--overwrite"], r"--out: .* is busy: another d2r run is writing")
    finally:
        p.kill()
        p.wait()


def held_lock(d):
    """Takes the lock a d2r run takes on its --out (flock on the directory); the fd, or None when
    the folder is locked already."""
    import fcntl
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def group_out_lock():
    """reproduce, validate and bench lock their --out like fit (issue 14): bad input creates
    nothing (the lock comes after every check), a folder another run holds is refused naming --out
    and left as it was, and a running reproduce holds its folder."""
    quick_runs = {
        "reproduce": ["reproduce", "synthetic", "--quick", "--device", "cpu", "-q"],
        "validate": ["validate", "--device", "cpu", "--sizes", "small", "--filter", "adam"],
        "bench": ["bench", "--device", "cpu", "--quick"],
    }
    bad_runs = {
        "reproduce tabular --datasets": (["reproduce", "tabular", "--datasets", "no_such_set", "--device", "cpu"],
                                         r"--datasets: no data set 'no_such_set'"),
        "reproduce mbrl --data-dir": (["reproduce", "mbrl", "--data-dir", os.path.join(W, "nowhere"), "--device",
                                       "cpu"], r"--data-dir: no halfcheetah/random\.csv"),
        "reproduce --lambda": (["reproduce", "synthetic", "--lambda", "2", "--device", "cpu"], r"--lambda: is an option"),
        "validate --filter": (["validate", "--device", "cpu", "--sizes", "small", "--filter", "zz_no_such_check"],
                              r"--filter: 'zz_no_such_check' matches none"),
        "validate --sizes": (["validate", "--device", "cpu", "--sizes", "huge"], r"--sizes"),
        "bench --device": (["bench", "--device", "tpu"], r"--device"),
    }
    for i, (label, (args, pattern)) in enumerate(bad_runs.items()):
        d = out_dir(f"bad{i}")
        expect(2, args + ["--out", d], pattern, label=label)
        if os.path.exists(d):
            fail(f"{label}: refused input created --out {d}")
    for name, args in quick_runs.items():
        d = out_dir(f"busy_{name}")
        os.makedirs(d)
        write(os.path.join(d, "mine.txt"), "x")
        before = listing(d)
        fd = held_lock(d)
        if fd is None:
            fail(f"{name}: could not take the lock of a fresh folder")
            continue
        try:
            expect(2, args + ["--out", d], r"--out: .* is busy: another d2r run is writing", label=f"{name} busy")
        finally:
            os.close(fd)
        if listing(d) != before:
            fail(f"{name}: a refused run changed the busy folder: {sorted(listing(d))}")
    # A real run holds its folder while it trains: the lock cannot be taken and a second run is refused.
    d = out_dir("running")
    p = subprocess.Popen([D2R, "reproduce", "implicit", "--quick", "--device", "cpu", "-q", "--out", d],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        held = False
        t0 = time.time()
        while p.poll() is None and time.time() - t0 < 60:
            if os.path.isdir(d):
                fd = held_lock(d)
                if fd is None:
                    held = True
                    break
                os.close(fd)
            time.sleep(0.02)
        if not held:
            fail(f"reproduce implicit never held its --out while running (exit {p.poll()})")
        else:
            expect(2, ["reproduce", "synthetic", "--quick", "--device", "cpu", "-q", "--out", d],
                   r"--out: .* is busy", label="second reproduce into a running one's --out")
    finally:
        p.kill()
        p.wait()


def ckpt_sections(data):
    """The sections of a d2r checkpoint container (host/src/checkpoint.hpp): {name: [type, count, payload]}."""
    assert data[:8] == b"D2RCKPT\x01"
    (count,) = struct.unpack_from("<Q", data, 8)
    at, out = 16, {}
    for _ in range(count):
        (n,) = struct.unpack_from("<I", data, at)
        name = data[at + 4:at + 4 + n].decode()
        at += 4 + n
        t, c = struct.unpack_from("<IQ", data, at)
        at += 12
        width = {0: 4, 1: 8, 2: 8, 3: 1}[t]
        out[name] = [t, c, bytearray(data[at:at + c * width])]
        at += c * width
    return out


def ckpt_bytes(sections):
    body = b"D2RCKPT\x01" + struct.pack("<Q", len(sections))
    for name, (t, c, payload) in sections.items():
        body += struct.pack("<I", len(name)) + name.encode() + struct.pack("<IQ", t, c) + bytes(payload)
    h = 1469598103934665603
    for b in body:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return body + struct.pack("<Q", h)


def group_checkpoint_corruption():
    """Finding 8: broken or forged checkpoints are a clear exit 2."""
    d = out_dir("k")
    expect(BL_DONE, ["fit"] + REG_BL + ["--out", d])
    ckpt = os.path.join(d, "checkpoint.ckpt")
    good = open(ckpt, "rb").read()
    sections = ckpt_sections(good)
    if ckpt_bytes(sections) != good:
        fail("the test's checkpoint writer does not reproduce the file (format changed?)")
    resume = ["fit"] + REG_BL + ["--resume", "--out", d]

    def forged(name, index, value):
        s = ckpt_sections(good)
        t = s[name][0]
        struct.pack_into("<f" if t == 0 else "<d", s[name][2], index * (4 if t == 0 else 8), value)
        return ckpt_bytes(s)

    for label, content, pattern in (
            ("theta NaN", forged("theta", 0, float("nan")), r"non-finite policy or optimiser values"),
            ("u = -1", forged("phi", 0, -1.0), r"reward parameter 0 = -1, below the floor"),
            ("flipped byte", good[:100] + bytes([good[100] ^ 1]) + good[101:], r"checksum mismatch")):
        open(ckpt, "wb").write(content)
        expect(2, resume, r"error: d2r fit: --resume: .*" + pattern, label=label)
    open(ckpt, "wb").write(good)
    # A checkpoint past the requested --outer-steps: named once (no doubled "d2r fit: --resume:").
    expect(2, ["fit"] + with_option(REG_BL, "--outer-steps", "3") + ["--resume", "--out", d],
           r"error: d2r fit: --resume: the checkpoint '.*' holds 6 outer steps, more than --outer-steps 3")
    cfg = os.path.join(d, "checkpoint.json")
    saved_cfg = open(cfg).read()
    write(cfg, "[1,2,3]")
    expect(2, resume, r"--resume: .*checkpoint\.json' is not the settings file d2r writes \(expected a JSON object\)")
    write(cfg, saved_cfg)
    os.remove(ckpt)
    os.makedirs(ckpt)
    expect(2, resume, r"--out: .*checkpoint\.ckpt' exists and is not a regular file \(a directory\)")


def group_scripts():
    """Finding 9: tools/test.sh names the options it needs on every configure (build/ is shared with
    tools/main.sh, whose cache turns the tests off) and every ctest refuses to pass with no tests."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    test_sh = open(os.path.join(root, "tools", "test.sh")).read()
    main_sh = open(os.path.join(root, "tools", "main.sh")).read()
    import re
    builds = [l for l in test_sh.splitlines() if "tools/build.sh" in l and not l.lstrip().startswith("#")]
    if len(builds) < 2 or not all("-DD2R_BUILD_TESTS=ON" in l for l in builds):
        fail(f"tools/test.sh: every tools/build.sh call must pass -DD2R_BUILD_TESTS=ON: {builds}")
    # Commands only: whole-line and trailing comments (" # ... ctest") dropped.
    code = "\n".join(re.sub(r"\s#\s.*$", "", l) for l in test_sh.splitlines() if not l.lstrip().startswith("#"))
    ctests = re.findall(r"\bctest\b[^\n]*", code)
    ctests = [c for c in ctests if not c.startswith("ctest -L") or "--" in c]
    if not ctests or not all("--no-tests=error" in c for c in ctests):
        fail(f"tools/test.sh: every ctest needs --no-tests=error: {ctests}")
    if "-DD2R_BUILD_TESTS=OFF" not in main_sh or "-DD2R_BUILD_CLI=ON" not in main_sh:
        fail("tools/main.sh: its configure must name its options")


MASK = ("wall_seconds", "date", "resumed_from_step")


def masked(value):
    if isinstance(value, dict):
        return {k: ("<masked>" if k in MASK else masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def masked_results(d):
    return masked(json.load(open(os.path.join(d, "results.json"))))


def masked_csv(path):
    rows = list(csv.reader(open(path)))
    cols = [i for i, h in enumerate(rows[0]) if h == "wall_seconds"]
    return [[("<masked>" if i in cols and r is not rows[0] else v) for i, v in enumerate(r)] for r in rows]


def compare_runs(a, b, label):
    if masked_results(a) != masked_results(b):
        ja, jb = masked_results(a), masked_results(b)
        diff = [k for k in set(ja) | set(jb) if ja.get(k) != jb.get(k)]
        fail(f"{label}: results.json differs from the uninterrupted run in {diff}")
    for name in ("curves.csv", "outer_curves.csv"):
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if os.path.exists(pa) != os.path.exists(pb):
            fail(f"{label}: {name} exists in only one of the runs")
        elif os.path.exists(pa) and masked_csv(pa) != masked_csv(pb):
            fail(f"{label}: {name} differs from the uninterrupted run")
    left = temporaries(b)
    if left:
        fail(f"{label}: temporary files left in --out: {left}")


def wait_for_saves(p, ckpt, saves, extra):
    """Waits (while `p` runs) until `ckpt` has been written `saves` more times (each save renames a
    new file over it: a new inode), then `extra` seconds: a kill point in the run's own progress,
    so a busier or quieter machine moves it in time, not in the run."""
    def state():
        try:
            st = os.stat(ckpt)
            return (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            return None
    last, seen, t0 = state(), 0, time.time()
    while p.poll() is None and seen < saves and time.time() - t0 < 60:
        now = state()
        if now is not None and now != last:
            seen, last = seen + 1, now
        time.sleep(0.0005)
    time.sleep(extra)


def group_fault_injection():
    """kill -9 at seeded random points of small bilevel runs (regression and classification: after a
    random number 0..10 of checkpoint saves, plus up to 30 ms), then --resume (or, before the first
    checkpoint, --overwrite) until the run ends: the results, every record and every CSV equal the
    uninterrupted run's (wall times masked), no temporaries left. Trials go on (alternating the
    tasks, at most 60) until each task has had at least 6 runs killed mid-run and 3 resumes from a
    mid-run checkpoint."""
    rng = random.Random(20241206)
    tasks = {}
    for label, args in (("regression", REG_BL), ("classification", CLS_BL)):
        args = with_option(args, "--outer-steps", "10")
        whole = out_dir(f"{label}_whole")
        expect(BL_DONE, ["fit"] + args + ["--out", whole])
        tasks[label] = {"args": args, "whole": whole, "kills": 0, "resumes": 0}
    trial = 0
    while trial < 60 and any(t["kills"] < 6 or t["resumes"] < 3 for t in tasks.values()):
        label = ("regression", "classification")[trial % 2]
        task = tasks[label]
        args, d = task["args"], out_dir(f"{label}_{trial}")
        attempt = ["fit"] + args + ["--out", d]
        for k in range(1 + (trial // 2) % 2):  # every other trial of a task is killed twice
            p = subprocess.Popen([D2R] + attempt, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for_saves(p, os.path.join(d, "checkpoint.ckpt"), rng.randint(0, 10), rng.uniform(0, 0.03))
            killed = p.poll() is None
            if killed:
                p.send_signal(signal.SIGKILL)
                task["kills"] += 1
            p.wait()
            has_ckpt = os.path.exists(os.path.join(d, "checkpoint.ckpt"))
            task["resumes"] += killed and has_ckpt
            attempt = ["fit"] + args + ["--out", d, "--resume" if has_ckpt else "--overwrite"]
        rc, out = run(attempt)
        if rc not in (0, BL_DONE):
            fail(f"{label} trial {trial}: the final {attempt[-1]} run failed ({rc}):\n{out}")
        else:
            compare_runs(task["whole"], d, f"{label} trial {trial}")
        shutil.rmtree(d, ignore_errors=True)
        trial += 1
    for label, t in tasks.items():
        print(f"{label}: {t['kills']} runs killed mid-run, {t['resumes']} resumed from a mid-run checkpoint "
              f"({trial} trials in all)", flush=True)
        if t["kills"] < 6 or t["resumes"] < 3:
            fail(f"{label}: after {trial} trials only {t['kills']} kills and {t['resumes']} resumes (the runs end "
                 f"before the delays)")
    if sum(t["kills"] for t in tasks.values()) < 10:
        fail("fewer than 10 runs were killed")


GROUPS = {name[len("group_"):]: f for name, f in globals().items() if name.startswith("group_")}
if GROUP not in GROUPS:
    print(f"unknown group {GROUP}; groups: {', '.join(GROUPS)}")
    sys.exit(2)
GROUPS[GROUP]()
if FAILURES:
    print(f"{len(FAILURES)} failure(s) in group {GROUP}")
    sys.exit(1)
shutil.rmtree(W, ignore_errors=True)
print(f"group {GROUP}: ok")
