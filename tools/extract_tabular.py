#!/usr/bin/env python3
"""Write the tabular classification datasets to data/tabular/<name>.csv.

Sources
  * scikit-learn's bundled datasets: iris, wine, breast_cancer, digits
    (needs the `scikit-learn` Python package; pip or Debian's python3-sklearn).
  * R package kernlab: spambase (the `spam` data frame)
    (needs `Rscript` and r-cran-kernlab).
  * R package mlbench: sonar, ionosphere, pima_diabetes2, glass, vehicle,
    satellite, letter (needs `Rscript` and r-cran-mlbench).

Each CSV has a header row, numeric feature columns whose names use only
letters, digits and underscore, then one column `label` (class name as a
string).  Rows keep the source order.  Rows with a missing value are dropped
and constant feature columns are dropped (both are reported on stdout and in
data/README.md).  Integral values are written as integers ("0", "61"), other
values as the shortest decimal string that round-trips to the same float64
(Python's repr), so output is byte-identical on every re-run.

After writing, data/SHA256SUMS is regenerated over every CSV under data/.

Usage:  python3 tools/extract_tabular.py [--out-dir data/tabular] [--only NAME ...]
"""
import argparse
import csv
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

from sha256sums import write_sha256sums  # tools/sha256sums.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")

SKLEARN = ["iris", "wine", "breast_cancer", "digits"]

# name in data/tabular -> (R package, R data set, label column in R)
R_SETS = {
    "spambase": ("kernlab", "spam", "type"),
    "sonar": ("mlbench", "Sonar", "Class"),
    "ionosphere": ("mlbench", "Ionosphere", "Class"),
    "pima_diabetes2": ("mlbench", "PimaIndiansDiabetes2", "diabetes"),
    "glass": ("mlbench", "Glass", "Type"),
    "vehicle": ("mlbench", "Vehicle", "Class"),
    "satellite": ("mlbench", "Satellite", "classes"),
    "letter": ("mlbench", "LetterRecognition", "lettr"),
}

ALL = SKLEARN + list(R_SETS)


def clean_name(name):
    """Letters, digits and underscore only; no leading digit."""
    s = re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_")
    if not s:
        s = "x"
    if s[0].isdigit():
        s = "f_" + s
    return s


def fmt_number(v):
    """Integral values as integers ("0", "61"), others as the shortest string
    that round-trips to the same float64 (Python's repr: "0.778")."""
    v = float(v)
    if v.is_integer() and abs(v) < 2 ** 53:
        return str(int(v))
    return repr(v)


def fmt_column(values):
    return [fmt_number(v) for v in values]


def write_table(path, names, columns, labels):
    """names: feature names; columns: list of float lists; labels: strings."""
    n = len(labels)
    # drop rows with a missing value
    keep = [i for i in range(n)
            if all(not math.isnan(col[i]) for col in columns) and labels[i] != ""]
    dropped_rows = n - len(keep)
    columns = [[col[i] for i in keep] for col in columns]
    labels = [labels[i] for i in keep]
    # drop constant columns
    kept_names, kept_cols, dropped_cols = [], [], []
    for name, col in zip(names, columns):
        if len(set(col)) <= 1:
            dropped_cols.append(name)
        else:
            kept_names.append(name)
            kept_cols.append(col)
    header = [clean_name(c) for c in kept_names] + ["label"]
    if len(set(header)) != len(header):
        raise SystemExit("duplicate column names after cleaning in %s: %s" % (path, header))
    text_cols = [fmt_column(c) for c in kept_cols]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for i in range(len(labels)):
            w.writerow([c[i] for c in text_cols] + [labels[i]])
    os.replace(tmp, path)
    print("%-16s rows=%-6d cols=%-3d (features=%d) dropped_rows=%d dropped_cols=%s classes=%d"
          % (os.path.basename(path), len(labels), len(header), len(header) - 1,
             dropped_rows, dropped_cols or "-", len(set(labels))))


def do_sklearn(name, out_dir):
    from sklearn import datasets
    loader = getattr(datasets, "load_" + name)
    b = loader()
    names = [str(x) for x in b.feature_names]
    columns = [[float(v) for v in b.data[:, j]] for j in range(b.data.shape[1])]
    target_names = [str(x) for x in b.target_names]
    labels = [target_names[int(t)] for t in b.target]
    write_table(os.path.join(out_dir, name + ".csv"), names, columns, labels)


R_EXPORT = r"""
args <- commandArgs(trailingOnly = TRUE)
pkg <- args[1]; set <- args[2]; lab <- args[3]; out <- args[4]
suppressMessages(library(pkg, character.only = TRUE))
e <- new.env()
data(list = set, package = pkg, envir = e)
d <- get(set, envir = e)
for (n in names(d)) {
  if (n == lab) {
    d[[n]] <- as.character(d[[n]])
  } else if (is.factor(d[[n]])) {
    # factor-coded numeric features (e.g. Ionosphere V1) -> numbers
    d[[n]] <- as.numeric(as.character(d[[n]]))
  }
}
d <- d[, c(setdiff(names(d), lab), lab)]
write.csv(d, out, row.names = FALSE, na = "NA")
"""


def do_r(name, out_dir):
    pkg, rset, lab = R_SETS[name]
    rscript = shutil.which("Rscript")
    if rscript is None:
        raise SystemExit("Rscript not found: apt-get install r-cran-kernlab r-cran-mlbench")
    with tempfile.TemporaryDirectory() as td:
        script = os.path.join(td, "export.R")
        raw = os.path.join(td, "raw.csv")
        with open(script, "w") as f:
            f.write(R_EXPORT)
        subprocess.run([rscript, "--vanilla", script, pkg, rset, lab, raw], check=True)
        with open(raw, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header[-1] == lab, header
    names = header[:-1]
    columns = [[float("nan") if r[j] == "NA" else float(r[j]) for r in body]
               for j in range(len(names))]
    labels = ["" if r[-1] == "NA" else r[-1] for r in body]
    write_table(os.path.join(out_dir, name + ".csv"), names, columns, labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=os.path.join(DATA, "tabular"))
    ap.add_argument("--only", nargs="*", choices=ALL, help="subset of datasets")
    args = ap.parse_args()
    for name in args.only or ALL:
        if name in SKLEARN:
            do_sklearn(name, args.out_dir)
        else:
            do_r(name, args.out_dir)
    if os.path.abspath(args.out_dir).startswith(os.path.abspath(DATA) + os.sep):
        write_sha256sums(DATA)


if __name__ == "__main__":
    sys.exit(main())
