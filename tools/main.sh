#!/usr/bin/env bash
# The README's main-job command: set up, build, and run the d2r program.
# Today the program's job is `d2r sample`; arguments replace the demonstration below.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh >&2
D2R_BUILD_DIR=build tools/build.sh -DD2R_BUILD_TESTS=OFF -DD2R_BUILD_BENCH=OFF >&2
if (($#)); then
  exec build/host/cli/d2r "$@"
fi
build/host/cli/d2r sample --head diag --mean 0,1,-2 --std 1,0.5,2 -G 100000 --seed 1
build/host/cli/d2r sample --head cholesky --mean 1,2 --tril 1,0.6,0.8 -G 100000 --seed 2
build/host/cli/d2r sample --head categorical --logits 0,1,2,-inf,0.5 -G 100000 --seed 3
