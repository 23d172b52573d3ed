#!/usr/bin/env bash
# One command for a machine with a GPU: configure and build (sm_90), run the whole suite with
# D2R_EXPECT_GPU=1, run the GPU tests under compute-sanitizer (memcheck, racecheck, initcheck),
# run the benchmarks, and write the results to bench/results/<device>-<date>.{json,md}
# (plus a tarball of the logs in $OUT when it is set). Needs the packages from tools/fetch-gpu-deps.sh in .deps/ when
# the machine has no GoogleTest/Google Benchmark/CLI11/fmt of its own.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
deps="$PWD/.deps/root/usr"
prefix_args=()
if [ -d "$deps" ]; then
  prefix_args=(-DCMAKE_PREFIX_PATH="$deps" -DCMAKE_INCLUDE_PATH="$deps/include")
  export LD_LIBRARY_PATH="$deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
out="${GPU_CHECK_DIR:-/tmp/d2r-gpu-check}"  # logs; $OUT (device tool) gets a tarball of it
mkdir -p "$out" bench/results
device=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')
stamp=$(date -u +%Y-%m-%d)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
log="$out/gpu-check.log"
status=0
step() { echo "== $*" | tee -a "$log"; }

step "configure + build ($device, commit $commit)"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 "${prefix_args[@]}" \
  >>"$log" 2>&1 && cmake --build build-gpu -j "$(nproc)" >>"$log" 2>&1 || { echo "build failed"; tail -50 "$log"; exit 1; }

step "ctest with D2R_EXPECT_GPU=1"
(cd build-gpu && D2R_EXPECT_GPU=1 ctest --output-on-failure -j 4 --timeout 900) >"$out/ctest.log" 2>&1 || status=1
tail -25 "$out/ctest.log"

for tool in memcheck racecheck initcheck; do
  step "compute-sanitizer --tool $tool"
  compute-sanitizer --tool "$tool" --error-exitcode 99 build-gpu/tests/gpu_kernels_test \
    --gtest_filter='-*Stats*' >"$out/sanitizer-$tool.log" 2>&1 || status=1
  tail -3 "$out/sanitizer-$tool.log"
done

step "benchmarks"
for b in distributions objectives curvature; do
  build-gpu/bench/${b}_bench --benchmark_out="$out/bench-$b.json" --benchmark_out_format=json \
    --benchmark_min_time=0.2 >"$out/bench-$b.txt" 2>&1 || status=1
done
step "PyTorch peers"
(cd bench/peer && PYTHONUNBUFFERED=1 python3 pg_head_peer.py --out "$out/peer-pg-head.json" \
   && PYTHONUNBUFFERED=1 python3 categorical_peer.py --out "$out/peer-categorical.json") >"$out/peer.txt" 2>&1 || status=1
tools/bench_report.py --ours "$out"/bench-*.json --peer "$out"/peer-*.json >"$out/report.md" 2>>"$log" || status=1
python3 - "$out" "bench/results/$device-$stamp.json" "$device" "$stamp" "$commit" <<'PY'
import glob, json, sys
out, target, device, stamp, commit = sys.argv[1:]
merged = {"device": device, "date": stamp, "commit": commit, "runs": {}}
for path in sorted(glob.glob(out + "/bench-*.json") + glob.glob(out + "/peer-*.json")):
    with open(path) as f:
        merged["runs"][path.rsplit("/", 1)[1]] = json.load(f)
with open(target, "w") as f:
    json.dump(merged, f, indent=1)
PY
{
  echo "# GPU check: $device, $stamp, commit $commit"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
  echo '```'
  echo "## Tests"; echo '```'; tail -15 "$out/ctest.log"; echo '```'
  for tool in memcheck racecheck initcheck; do echo "## compute-sanitizer $tool"; echo '```'; tail -3 "$out/sanitizer-$tool.log"; echo '```'; done
  echo "## Benchmarks (ours vs PyTorch on this GPU)"; cat "$out/report.md"
  echo; echo "Raw numbers: bench/results/$device-$stamp.json"
} >"bench/results/$device-$stamp.md"
if [ -n "${OUT:-}" ]; then  # the device tool returns at most 8 files: one tarball + the two results
  tar czf "$OUT/gpu-check-logs.tgz" -C "$out" .
  cp "bench/results/$device-$stamp.md" "bench/results/$device-$stamp.json" "$OUT/" 2>/dev/null
fi
exit $status
