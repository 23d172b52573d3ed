#!/usr/bin/env bash
# Fallback for a GPU machine where the carried bundle does not load (tools/gpu-run.sh's smoke phase
# fails): build there, then run the same phases from the build tree.
#   tools/gpu-check.sh [gpu-run.sh options]      e.g. tools/gpu-check.sh --budget 240
# Builds what tools/gpu-run.sh needs into build-gpu (sm_90 + PTX, OpenBLAS off) with that machine's
# compilers; when it has no GoogleTest/Google Benchmark/CLI11/fmt, carry .deps/ from
# tools/fetch-gpu-deps.sh (device tool: carry [".deps"]). The build's time counts against the lease
# (about 1-2 minutes on 16 cores): the normal path is tools/gpu-bundle.sh here, tools/gpu-run.sh there.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
export PATH="/usr/local/cuda/bin:$PATH"
deps="$PWD/.deps/root/usr"
prefix_args=()
if [ -d "$deps" ]; then
  prefix_args=(-DCMAKE_PREFIX_PATH="$deps" -DCMAKE_INCLUDE_PATH="$deps/include")
  export LD_LIBRARY_PATH="$deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
log=$(mktemp /tmp/d2r-gpu-check-build.XXXXXX.log)
if ! { cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DD2R_WITH_OPENBLAS=OFF \
         -DD2R_BUILD_TESTS=ON -DD2R_BUILD_BENCH=ON -DD2R_BUILD_CLI=ON -DD2R_SANITIZE=OFF \
         "${prefix_args[@]}" && cmake --build build-gpu -j "$(nproc)" --target gpu_kernels_test d2r_cli objectives_bench \
         cases_bench curvature_bench outer_step_bench peer_check_export; } >"$log" 2>&1; then
  tail -40 "$log"
  echo "gpu-check.sh: the build failed (log: $log)" >&2
  exit 2
fi
exec tools/gpu-run.sh --bin build-gpu "$@"
