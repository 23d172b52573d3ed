"""data/SHA256SUMS: the SHA-256 of every CSV file below a data folder, one `hash  path` line each
(sha256sum's format, paths relative to the folder, sorted), shared by the scripts that write data
(extract_tabular.py, make_halfcheetah.py)."""
import hashlib
import os


def write_sha256sums(data_dir):
    entries = []
    for dirpath, dirnames, filenames in os.walk(data_dir):
        dirnames.sort()
        for fn in filenames:
            if fn.endswith(".csv"):
                p = os.path.join(dirpath, fn)
                rel = os.path.relpath(p, data_dir).replace(os.sep, "/")
                with open(p, "rb") as f:
                    entries.append((rel, hashlib.sha256(f.read()).hexdigest()))
    entries.sort()
    with open(os.path.join(data_dir, "SHA256SUMS"), "w", newline="\n") as f:
        for rel, h in entries:
            f.write("%s  %s\n" % (h, rel))
