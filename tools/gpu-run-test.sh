#!/usr/bin/env bash
# CI test of tools/gpu-run.sh on a build tree, without a GPU (ctest gpu_run_dry, label tools):
#   tools/gpu-run-test.sh BUILD_DIR WORK_DIR
# 1. --dry: exit 3, every phase but smoke reports "no GPU", smoke finds the GPU tests, summary.md
#    ends with the verdict, state.json and logs.tgz are written, no bench/results files;
#    --resume of it reports the same.
# 2. D2R_GPU_RUN_ASSUME_GPU=1 (phases run as if there were a GPU, and fail): exit 1, the failures are
#    named, the <device>-<date>.{json,md} results are written; --resume of it does not rerun the
#    phases that finished (failed) and keeps them in its summary; a resume onto another GPU is refused.
# 3. A budget too small for a phase: the phase is left ("no-time"), exit 4.
#    A compute-sanitizer named by D2R_COMPUTE_SANITIZER is the one the sanitizer phases run.
# 4. Bad usage exits 2 before anything runs.
# 5. The summary of a passing run (synthetic logs): verdict PASS, exit 0, the bench/results files
#    with the benchmark/peer table of tools/bench_report.py.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?BUILD_DIR}" && pwd)
work=${2:?WORK_DIR}
rm -rf "$work" && mkdir -p "$work" && work=$(cd "$work" && pwd)
failures=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; failures=$((failures + 1)); }
expect() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }   # expect DESCRIPTION BASH-CONDITION
run() {  # run NAME ARGS...: gpu-run.sh's exit status in $rc, its output in $work/NAME.txt
  local name=$1; shift
  "$root/tools/gpu-run.sh" "$@" >"$work/$name.txt" 2>&1; rc=$?
}
phase() { grep -E "^$2 " "$work/$1/summary.md" | awk '{print $2}' | head -1; }   # phase DIR NAME -> status
last() { tail -n 1 "$work/$1/summary.md"; }

# ------------------------------------------------------------------ 1. dry
run dry --bin "$build" --dry --budget 60 --out "$work/dry"
expect "dry: exit 3 (no GPU) [got $rc]" '((rc == 3))'
expect "dry: the summary's last line is the verdict" '[[ $(last dry) == "Verdict: NO GPU (exit 3)"* ]]'
expect "dry: smoke passed and found GPU tests" \
  '[ "$(phase dry smoke)" = pass ] && grep -qE "^smoke .*GPU tests: [1-9][0-9]* cases" "$work/dry/summary.md"'
for p in tests validate memcheck peercheck clibench bench-objectives bench-curvature bench-outer_step \
         bench-cases peer-pg-head-eager peer-hvp-eager racecheck initcheck synccheck reproduce-implicit; do
  expect "dry: $p reports no GPU" '[ "$(phase dry "$p")" = no-gpu ]'
done
expect "dry: state.json and logs.tgz written" '[ -s "$work/dry/state.json" ] && tar tzf "$work/dry/logs.tgz" >/dev/null'
expect "dry: no bench/results files without a GPU" '! ls "$work"/dry/*-20*.json >/dev/null 2>&1'
run dry-resume --bin "$build" --dry --budget 60 --out "$work/dry2" --resume "$work/dry"
expect "dry --resume: exit 3 again, nothing carried over [got $rc]" \
  '((rc == 3)) && [ "$(phase dry2 tests)" = no-gpu ] && ! grep -q "\[earlier\]" "$work/dry2/summary.md"'

# ------------------------------------------------------------------ 2. every phase fails without a GPU
export D2R_GPU_RUN_ASSUME_GPU=1
run fail --bin "$build" --phases tests,validate,bench --suites '^GpuContext\.$' --jobs 2 --budget 120 --out "$work/fail"
expect "assumed GPU: exit 1 (FAIL) [got $rc]" '((rc == 1))'
expect "assumed GPU: verdict FAIL names tests and validate" \
  '[[ $(last fail) == "Verdict: FAIL (exit 1)"*tests* ]] && [[ $(last fail) == *validate* ]]'
expect "assumed GPU: the test failures say why" 'grep -q "^- FAIL GpuContext\..*D2R_EXPECT_GPU=1 but no CUDA device" "$work/fail/summary.md"'
expect "assumed GPU: benchmark rows that skip fail the phase" '[ "$(phase fail bench-objectives)" = fail ]'
expect "assumed GPU: phases not asked for are not run" '[ -z "$(phase fail memcheck)" ] && [ -z "$(phase fail peer-hvp-eager)" ]'
expect "assumed GPU: results for bench/results written" \
  'ls "$work"/fail/assumed-gpu-20??-??-??.md >/dev/null && python3 -c "import json, sys; d = json.load(open(sys.argv[1])); assert d[\"verdict\"] == \"FAIL\" and d[\"tests\"][\"failed\"] > 0" "$work"/fail/assumed-gpu-20??-??-??.json'
run fail-resume --bin "$build" --phases tests,validate,bench --suites '^GpuContext\.$' --jobs 2 --budget 120 \
  --out "$work/fail2" --resume "$work/fail"
expect "resume: finished phases are not run again but kept [got $rc]" \
  '((rc == 1)) && grep -qE "^tests .*\[earlier\]" "$work/fail2/summary.md" && grep -qE "^validate .*\[earlier\]" "$work/fail2/summary.md" && ! tar tzf "$work/fail2/logs.tgz" | grep -q "tests/.*\.xml"'
run resume-other --bin "$build" --dry --budget 60 --out "$work/other" --resume "$work/fail"
expect "resume: refused onto another GPU (exit 2, nothing written) [got $rc]" \
  '((rc == 2)) && grep -q "not merged" "$work/resume-other.txt" && [ ! -e "$work/other/summary.md" ]'

# ------------------------------------------------------------------ 3. too little time
run short --bin "$build" --phases tests --budget 30 --out "$work/short"
expect "short budget: tests left for lack of time, exit 4 (INCOMPLETE) [got $rc]" \
  '((rc == 4)) && [ "$(phase short tests)" = no-time ] && [[ $(last short) == "Verdict: INCOMPLETE (exit 4)"* ]]'
# The sanitizer phases run the compute-sanitizer D2R_COMPUTE_SANITIZER names (one not on PATH).
mkdir -p "$work/fake" && printf '#!/bin/sh\necho "fake compute-sanitizer $*"\n' >"$work/fake/cs" && chmod +x "$work/fake/cs"
export D2R_COMPUTE_SANITIZER=$work/fake/cs
run san --bin "$build" --phases memcheck --budget 60 --out "$work/san"
unset D2R_COMPUTE_SANITIZER
expect "D2R_COMPUTE_SANITIZER: memcheck ran that sanitizer on d2r validate [got $rc]" \
  '[ "$(phase san memcheck)" = pass ] && tar xzf "$work/san/logs.tgz" -O ./memcheck.txt | grep -q "^fake compute-sanitizer --tool memcheck .*/d2r validate"'
unset D2R_GPU_RUN_ASSUME_GPU

# ------------------------------------------------------------------ 4. bad usage
for args in "--budget abc" "--budget 5" "--phases tests,nope" "--bundle $work/none" "--resume $work/none" "--frobnicate"; do
  # shellcheck disable=SC2086
  run usage --out "$work/usage" $args
  expect "usage: '$args' exits 2 with a message [got $rc]" '((rc == 2)) && [ -s "$work/usage.txt" ] && [ ! -e "$work/usage" ]'
done

# ------------------------------------------------------------------ 5. the summary of a passing run
# (synthetic logs in the layout gpu-run.sh writes: what a GPU run would leave)
syn=$work/synthetic && mkdir -p "$syn/tests" "$syn/validate" "$work/pass"
echo "abc1234 clean 2026-01-01T00:00:00Z" >"$syn/BUILD_INFO"; echo "Test-GPU" >"$syn/DEVICE"; echo "GPU: Test-GPU" >"$syn/probe.txt"
printf 'smoke\tpass\t0\t1\t-\tGPU tests: 2 cases in 1 suites\nvalidate\tpass\t0\t9\t120\tvalidate.txt\n' >"$syn/phases.tsv"
printf 'bench-objectives\tpass\t0\t5\t60\tx\npeer-pg-head-eager\tpass\t0\t7\t60\tx\ntests\tpending\t-\t3\t200\t1 suites\n' >>"$syn/phases.tsv"
echo "0 GpuContext." >"$syn/tests/exit-codes.txt"
cat >"$syn/tests/GpuContext.xml" <<'XML'
<testsuites><testsuite name="GpuContext"><testcase name="A" classname="GpuContext" result="completed"/>
<testcase name="B" classname="GpuContext" result="completed"/></testsuite></testsuites>
XML
echo '{"summary": {"checks": 3, "passed": 3, "failed": 0, "skipped": 0}, "rows": []}' >"$syn/validate/validate.json"
echo '3 checks: 3 passed, 0 failed, 0 skipped (0.10 s) — all pass' >"$syn/validate.txt"
echo '{"benchmarks": [{"name": "fused_scalar/gpu/65536/17/5/manual_time", "run_type": "iteration", "real_time": 12.5, "time_unit": "us", "GB/s": 1500.0}]}' \
  >"$syn/bench-objectives.json"
echo '{"benchmarks": [{"name": "peer_pg_head_eager/65536/17/5", "real_time": 40.0, "time_unit": "us"}]}' >"$syn/peer-pg-head-eager.json"
python3 "$root/tools/gpu_summary.py" summarize "$syn" "$work/pass" --budget 330 --final Test-GPU 2026-01-01; rc=$?
expect "synthetic pass: exit 0, verdict PASS [got $rc]" '((rc == 0)) && [[ $(last pass) == "Verdict: PASS (exit 0)"* ]]'
expect "synthetic pass: the tests phase passes from its XML (2 cases)" \
  '[ "$(phase pass tests)" = pass ] && grep -q "2 cases in 1 suites, 0 failed" "$work/pass/summary.md"'
expect "synthetic pass: results JSON holds the runs, tests and validate" \
  'python3 -c "import json, sys; d = json.load(open(sys.argv[1])); assert d[\"verdict\"] == \"PASS\" and d[\"tests\"][\"tests\"] == 2 and d[\"validate\"][\"passed\"] == 3 and len(d[\"runs\"]) == 2" "$work/pass/Test-GPU-2026-01-01.json"'
expect "synthetic pass: the results .md has the bench_report table with the peer speed-up" \
  'grep -q "^# GPU run: Test-GPU, 2026-01-01, commit abc1234" "$work/pass/Test-GPU-2026-01-01.md" && grep -q "fused_scalar/gpu/65536/17/5.*| 3.20×" "$work/pass/Test-GPU-2026-01-01.md"'
cp -r "$syn" "$work/cut" && printf 'memcheck\trunning\t-\t0\t150\tstarted\n' >>"$work/cut/phases.tsv" && mkdir -p "$work/cutout"
python3 "$root/tools/gpu_summary.py" summarize "$work/cut" "$work/cutout" --budget 330; rc=$?
expect "a phase left running (a call cut short): INCOMPLETE, exit 4 [got $rc]" \
  '((rc == 4)) && [[ $(last cutout) == "Verdict: INCOMPLETE (exit 4): still running, or the call was cut short: memcheck"* ]]'

cp -r "$syn" "$work/lack" && printf 'memcheck\tunavailable\t-\t0\t0\tcompute-sanitizer not found\n' >>"$work/lack/phases.tsv" && mkdir -p "$work/lackout"
python3 "$root/tools/gpu_summary.py" summarize "$work/lack" "$work/lackout" --budget 330; rc=$?
expect "a phase without its tool: INCOMPLETE, exit 4, not sent to --resume [got $rc]" \
  '((rc == 4)) && [[ $(last lackout) == "Verdict: INCOMPLETE (exit 4): no tool for: memcheck on this machine (a resume cannot run them)"* ]]'

echo "$failures failed"
((failures == 0))
