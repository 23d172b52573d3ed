#!/usr/bin/env bash
# One command for a machine with a GPU: configure and build (sm_90), run the whole suite with
# D2R_EXPECT_GPU=1, run the GPU tests under compute-sanitizer (memcheck, racecheck, initcheck, synccheck),
# run the benchmarks and the PyTorch peers (bench/peer/*.py, each on its own, at most PEER_TIMEOUT
# seconds each, default 900; a failing peer is recorded and the rest goes on), cross-check the
# peers' gradients, HVPs and hypergradient against d2r in float64 (bench/peer/check_against_d2r.py),
# and write the results to bench/results/<device>-<date>.{json,md}
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
out=$(cd "$out" && pwd)  # absolute: the peers run from bench/peer
device=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')
stamp=$(date -u +%Y-%m-%d)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
log="$out/gpu-check.log"
status=0
step() { echo "== $*" | tee -a "$log"; }

step "configure + build ($device, commit $commit)"
# The GPU machine has no OpenBLAS (nothing installable there): the cpu backend's GEMMs fall back to
# plain loops; the cuda backend, which this script measures, does not use them.
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DD2R_WITH_OPENBLAS=OFF \
  -DD2R_BUILD_TESTS=ON -DD2R_BUILD_BENCH=ON -DD2R_BUILD_CLI=ON -DD2R_SANITIZE=OFF \
  "${prefix_args[@]}" \
  >>"$log" 2>&1 && cmake --build build-gpu -j "$(nproc)" >>"$log" 2>&1 || { echo "build failed"; tail -50 "$log"; exit 1; }

step "ctest with D2R_EXPECT_GPU=1"
(cd build-gpu && D2R_EXPECT_GPU=1 ctest --no-tests=error --output-on-failure -j 4 --timeout 900) >"$out/ctest.log" 2>&1 || status=1
tail -25 "$out/ctest.log"

for tool in memcheck racecheck initcheck synccheck; do
  step "compute-sanitizer --tool $tool"
  compute-sanitizer --tool "$tool" --error-exitcode 99 build-gpu/tests/gpu_kernels_test \
    --gtest_filter='-*Stats*' >"$out/sanitizer-$tool.log" 2>&1 || status=1
  tail -3 "$out/sanitizer-$tool.log"
done

step "benchmarks"
for b in distributions objectives curvature outer_step; do
  build-gpu/bench/${b}_bench --benchmark_out="$out/bench-$b.json" --benchmark_out_format=json \
    --benchmark_min_time=0.2 >"$out/bench-$b.txt" 2>&1 || status=1
done

# Each peer on its own: a peer that fails (no torch, out of memory, a crash, past PEER_TIMEOUT
# seconds) is recorded in peer-failures.txt, shown in the report, and the others still run. A
# variant that fails inside a peer (e.g. torch.compile of torch.func code) is recorded in its JSON.
: >"$out/peer-failures.txt"
run_peer() {  # run_peer <script> <json> [args...]
  local script=$1 json=$2 rc reason
  shift 2
  (cd bench/peer && PYTHONUNBUFFERED=1 timeout "${PEER_TIMEOUT:-900}" python3 "$script" --out "$out/$json" "$@") \
    >"$out/${json%.json}.txt" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    status=1
    # The reason: the last line naming an error, else the last line printed.
    reason=$(grep -E '^[A-Za-z_.]*(Error|Exception)\b|out of memory|Killed' "$out/${json%.json}.txt" | tail -1)
    [ -n "$reason" ] || reason=$(grep -v '^[[:space:]]*$' "$out/${json%.json}.txt" | tail -1)
    echo "$script: exit $rc$([ $rc -eq 124 ] && echo " (timed out after ${PEER_TIMEOUT:-900} s)"): ${reason:0:300}" \
      >>"$out/peer-failures.txt"
    rm -f "$out/$json"  # a partial file would be joined as if complete
  fi
  tail -3 "$out/${json%.json}.txt"
}
step "PyTorch peers"
run_peer pg_head_peer.py peer-pg-head.json
run_peer categorical_peer.py peer-categorical.json
run_peer hvp_peer.py peer-hvp.json
run_peer outer_step_peer.py peer-outer-step.json

step "peer cross-check (float64, CPU): the peers' gradients, HVPs, hypergradient vs d2r's"
if build-gpu/bench/peer_check_export "$out/d2r-check.json" >"$out/peer-check.txt" 2>&1 \
   && (cd bench/peer && python3 check_against_d2r.py "$out/d2r-check.json" --compile) >>"$out/peer-check.txt" 2>&1; then
  tail -1 "$out/peer-check.txt"
else
  status=1
  echo "check_against_d2r.py: failed: $(grep -E 'FAIL|Error' "$out/peer-check.txt" | head -3 | tr '\n' ' ' | cut -c1-300)" \
    >>"$out/peer-failures.txt"
  tail -5 "$out/peer-check.txt"
fi
tools/bench_report.py --ours "$out"/bench-*.json --peer "$out"/peer-*.json --failures "$out/peer-failures.txt" \
  >"$out/report.md" 2>>"$log" || status=1
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
  for tool in memcheck racecheck initcheck synccheck; do echo "## compute-sanitizer $tool"; echo '```'; tail -3 "$out/sanitizer-$tool.log"; echo '```'; done
  echo "## Benchmarks (ours vs PyTorch on this GPU)"; cat "$out/report.md"
  echo; echo "## Peer cross-check (float64, CPU)"; echo '```'; grep -E '^(ok|FAIL)|passed|failed' "$out/peer-check.txt"; echo '```'
  echo; echo "Raw numbers: bench/results/$device-$stamp.json"
} >"bench/results/$device-$stamp.md"
if [ -n "${OUT:-}" ]; then  # the device tool returns at most 8 files: one tarball + the two results
  tar czf "$OUT/gpu-check-logs.tgz" -C "$out" .
  cp "bench/results/$device-$stamp.md" "bench/results/$device-$stamp.json" "$OUT/" 2>/dev/null
fi
exit $status
