#!/usr/bin/env bash
# The README's test command: set up, build, run the whole suite (GPU tests skip without a GPU;
# D2R_EXPECT_GPU=1 makes them fail instead), then the CPU tests again under ASan+UBSan.
# Every configure names the options it needs: build/ is shared with tools/main.sh, whose cache
# has the tests off, and CMake keeps cached options unless told otherwise. ctest runs with
# --no-tests=error, so a build without its tests fails instead of passing with nothing run.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/setup-python.sh  # .venv: nanobind, numpy, pytest, JAX, CPU-usable torch (the python_tests ctest)
tools/build.sh -DD2R_BUILD_TESTS=ON -DD2R_BUILD_BENCH=ON -DD2R_BUILD_CLI=ON -DD2R_SANITIZE=OFF -DD2R_BUILD_PYTHON=ON
(cd build && ctest --no-tests=error --output-on-failure --timeout 900 -j "${D2R_JOBS:-$(nproc)}")
if [ "${D2R_SKIP_SANITIZERS:-0}" != "1" ]; then
  echo "== CPU tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  # This pass runs the CPU tests only: it builds without CUDA (-DD2R_ENABLE_CUDA=OFF, no nvcc),
  # which also checks that the cpu-only build compiles and passes. MPI is left out here (Open MPI's
  # own allocations are reported by LeakSanitizer); the main build above runs the MPI tests.
  D2R_BUILD_DIR=build-sanitize tools/build.sh -DD2R_SANITIZE=ON -DD2R_BUILD_TESTS=ON -DD2R_BUILD_CLI=ON \
    -DD2R_BUILD_BENCH=OFF -DD2R_ENABLE_CUDA=OFF -DD2R_WITH_MPI=OFF
  (cd build-sanitize && ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=1 \
     ctest --no-tests=error --output-on-failure --timeout 900 -L cpu -E install_consumer -j "${D2R_JOBS:-$(nproc)}")
fi
# libFuzzer run of the CSV reader and dataset builders (clang++; D2R_FUZZ_SECONDS, D2R_SKIP_FUZZ=1).
tools/fuzz.sh
