#!/usr/bin/env bash
# The README's main-job command: set up, build, and run the d2r program.
# Without arguments it reproduces two of the paper's experiments at their --quick size (a minute
# or so each on a small CPU; no GPU needed): Fig. 1 (`reproduce synthetic`) and Fig. 3
# (`reproduce implicit`), writing results.json and CSVs under out/. Arguments replace this
# demonstration: `tools/main.sh ARGS...` runs `d2r ARGS...`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh >&2
# Explicit options (tools/test.sh names its own on the same build/, so either order works).
D2R_BUILD_DIR=build tools/build.sh -DD2R_BUILD_TESTS=OFF -DD2R_BUILD_BENCH=OFF -DD2R_BUILD_CLI=ON -DD2R_SANITIZE=OFF -DD2R_BUILD_PYTHON=OFF >&2
if (($#)); then
  exec build/host/cli/d2r "$@"
fi
build/host/cli/d2r reproduce synthetic --quick --out out/reproduce-synthetic
echo
build/host/cli/d2r reproduce implicit --quick --out out/reproduce-implicit
