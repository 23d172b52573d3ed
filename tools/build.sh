#!/usr/bin/env bash
# Configures and builds d2r into ${D2R_BUILD_DIR:-build} (Release, ccache when present).
# Extra arguments go to the CMake configure step, e.g. -DD2R_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
build_dir="${D2R_BUILD_DIR:-build}"
launcher=()
if command -v ccache >/dev/null 2>&1; then
  # Paths under the checkout are hashed relative to it, so a fresh clone in another folder (CI) reuses
  # the objects a previous build left in the cache.
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-20G}"
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "$@"
cmake --build "$build_dir" -j "${D2R_JOBS:-$(nproc)}"
