#!/usr/bin/env bash
# d2r's GPU run in ONE command on a machine with a GPU, from binaries built elsewhere
# (tools/gpu-bundle.sh -> .gpu/). In the d2r checkout there, with .gpu/ carried along:
#
#   tools/gpu-run.sh [--budget SECONDS] [--out DIR] [--phases LIST] [--resume DIR] [--compile]
#                    [--bundle DIR | --bin BUILD_DIR] [--dry] [--jobs N] [--suites REGEX]
#
#   --budget S     wall-clock seconds for the whole run (default 330). Every phase runs under
#                  `timeout` with its own cap, clipped to what is left of the budget less a 15 s
#                  reserve for the summary; a phase that would get less than its minimum is skipped
#                  ("no time") and left for a second call.
#   --out DIR      results (default $OUT, the device tool's folder, else ./gpu-run-out). Written as the
#                  run goes (after each phase and every 30 s), so a call cut short still returns them:
#                  summary.md (the verdict is in its last lines), state.json (every phase's status and
#                  results), logs.tgz (all logs, XML, JSON), and at the end <device>-<date>.json and .md
#                  for bench/results/.
#   --resume DIR   the files an earlier call returned (its state.json): phases that finished there
#                  (pass or fail) are not run again; their results are kept in the new summary. Refused
#                  (exit 2) when that call ran other binaries (BUILD_INFO) or on another kind of GPU.
#   --phases LIST  comma-separated phases or groups to run (default: all but compile):
#                    smoke      the binaries load, d2r --version, the GPU test list (no GPU needed)
#                    tests      gpu_kernels_test with D2R_EXPECT_GPU=1, one process per suite,
#                               --jobs at a time (--suites REGEX picks suites)        } run
#                    validate   d2r validate --device cuda --sizes medium             } side by
#                    memcheck   compute-sanitizer memcheck on d2r validate --sizes small } side
#                    peercheck  the peers' float64 cross-check (peer_check_export, check_against_d2r.py) }
#                    clibench   d2r bench --device cuda --sizes large (the registry's cases, timed)
#                    bench      Google Benchmark, the /gpu/ rows only, min time 0.05 s (one phase a binary;
#                               cases_bench: the registry's cases)
#                    peers      bench/peer/*.py --no-compile (one phase a peer)
#                    sanitize   racecheck, initcheck, synccheck on d2r validate --sizes small
#                    e2e        d2r reproduce implicit and synthetic --quick --device cuda
#                    compile    the peers with torch.compile (opt-in: --compile or --phases compile)
#   --bundle DIR   the bundle (default .gpu): bin.tar.xz and BUILD_INFO from tools/gpu-bundle.sh.
#   --bin DIR      use the executables of a d2r build tree instead of a bundle (a build made on the
#                  GPU machine, tools/gpu-check.sh; or CI's dry run).
#   D2R_COMPUTE_SANITIZER=PATH  the compute-sanitizer to use (default: on PATH, else looked for in
#                  /usr/local/cuda*/ and /opt/nvidia/; none: the sanitizer phases are "unavailable").
#   --dry          act as if there were no GPU: every phase but smoke reports "no GPU" (CI runs this).
#                  Without --dry, "no GPU" is also what a machine where `nvidia-smi -L` lists none gets.
#                  (D2R_GPU_RUN_ASSUME_GPU=1 does the opposite, to test this script without a GPU: every
#                  phase runs, and fails.)
#
# Exit status (the summary's last line says the same):
#   0 PASS        every requested phase ran on a GPU and passed
#   1 FAIL        a phase failed (a test, a validate check, a sanitizer error, a crash, a peer), or the
#                 smoke phase did (the binaries do not load here)
#   2             bad usage, or no bundle/build to run (nothing was run)
#   3 NO GPU      no GPU (or --dry): nothing ran on a GPU; smoke passed
#   4 INCOMPLETE  nothing failed, but some phases timed out, were left for lack of time, or lacked a
#                 tool (compute-sanitizer, python3 with torch): call again with --resume
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
budget=330 out=${OUT:-$PWD/gpu-run-out} resume="" phases="" compile=0 bundle=$root/.gpu bin="" dry=0 jobs=8 suites=.
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
  case $1 in
    --budget) budget=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    --resume) resume=${2:-}; shift 2 ;;
    --phases) phases=${2:-}; shift 2 ;;
    --compile) compile=1; shift ;;
    --bundle) bundle=${2:-}; shift 2 ;;
    --bin) bin=${2:-}; shift 2 ;;
    --dry) dry=1; shift ;;
    --jobs) jobs=${2:-}; shift 2 ;;
    --suites) suites=${2:-}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "gpu-run.sh: unknown argument '$1' (--help lists them)" >&2; exit 2 ;;
  esac
done
[[ $budget =~ ^[0-9]+$ ]] && ((budget >= 30)) || { echo "gpu-run.sh: --budget: '$budget' is not a number of seconds >= 30" >&2; exit 2; }
[[ $jobs =~ ^[0-9]+$ ]] && ((jobs >= 1)) || { echo "gpu-run.sh: --jobs: '$jobs' is not a positive integer" >&2; exit 2; }
[ -n "$out" ] || { echo "gpu-run.sh: --out: empty" >&2; exit 2; }
[ -z "$resume" ] || [ -f "$resume/state.json" ] || { echo "gpu-run.sh: --resume: no state.json in '$resume'" >&2; exit 2; }
all=smoke,tests,validate,memcheck,peercheck,clibench,bench,peers,sanitize,e2e
phases=",${phases:-$all}$([ $compile = 1 ] && echo ,compile),"
for p in ${phases//,/ }; do
  [[ ",$all,compile," == *",$p,"* ]] || { echo "gpu-run.sh: --phases: unknown phase '$p' (one of $all,compile)" >&2; exit 2; }
done
phases=${phases/,smoke,/,}; phases=",smoke$phases"   # smoke always runs first: it finds the binaries

S=$root/tools/gpu_summary.py
PY=$(command -v python3) || { echo "gpu-run.sh: python3 is needed (tar, summary)" >&2; exit 2; }
W=$(mktemp -d /tmp/d2r-gpu-run.XXXXXX) || exit 2
trap 'rm -rf "$W"' EXIT
B=$W/bin   # the executables, flat; their shared libraries in $W/lib
mkdir -p "$W/tests" "$B" "$W/lib" || exit 2
if [ -n "$bin" ]; then  # a build tree: link its executables into the flat layout of a bundle
  [ -x "$bin/tests/gpu_kernels_test" ] || { echo "gpu-run.sh: --bin: no tests/gpu_kernels_test in '$bin'" >&2; exit 2; }
  bin=$(cd "$bin" && pwd)
  for exe in tests/gpu_kernels_test host/cli/d2r bench/objectives_bench bench/cases_bench \
             bench/curvature_bench bench/outer_step_bench bench/peer_check_export; do
    [ -e "$bin/$exe" ] && ln -s "$bin/$exe" "$B/${exe##*/}"
  done
  echo "build tree $bin ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), not a bundle)" >"$W/BUILD_INFO"
else
  [ -f "$bundle/bin.tar.xz" ] || { echo "gpu-run.sh: no bundle: '$bundle/bin.tar.xz' is missing (tools/gpu-bundle.sh makes it)" >&2; exit 2; }
  tar -C "$W" -xJf "$bundle/bin.tar.xz" 2>/dev/null ||   # no xz program there: Python's lzma
    "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle/bin.tar.xz" "$W" ||
    { echo "gpu-run.sh: cannot unpack '$bundle/bin.tar.xz'" >&2; exit 2; }
  cp "$bundle/BUILD_INFO" "$W/BUILD_INFO" 2>/dev/null || echo "unknown (no BUILD_INFO)" >"$W/BUILD_INFO"
fi
mkdir -p "$out" || { echo "gpu-run.sh: --out: cannot create '$out'" >&2; exit 2; }
out=$(cd "$out" && pwd)
# /usr/local/nvidia/bin: the driver's folder on the device machines (nvidia-smi), in case PATH lacks it.
export LD_LIBRARY_PATH="$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PATH="$PATH:/usr/local/cuda/bin:/usr/local/nvidia/bin" PYTHONUNBUFFERED=1
# compute-sanitizer: D2R_COMPUTE_SANITIZER, else on PATH, else where toolkits put it outside bin/
# (CUDA's compute-sanitizer/ folder, a versioned /usr/local/cuda-*, NVIDIA's tools under /opt/nvidia).
sanitizer=${D2R_COMPUTE_SANITIZER:-$(command -v compute-sanitizer ||
  ls -1d /usr/local/cuda/compute-sanitizer/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer \
    /usr/local/cuda-*/compute-sanitizer/compute-sanitizer /opt/nvidia/compute-sanitizer*/compute-sanitizer \
    /opt/nvidia/*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)}
[ -n "$sanitizer" ] && [ -x "$sanitizer" ] || sanitizer=""

t0=$(date +%s)
reserve=15
left() { echo $((budget - reserve - $(date +%s) + t0)); }
: >"$W/phases.tsv"
# record NAME STATUS RC SECONDS LIMIT NOTE: one line of phases.tsv (what the summary reads).
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$W/phases.tsv"; }
gpu=0
if ((dry == 0)) && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then gpu=1; fi
# For testing this script on a machine without a GPU: run every phase as if there were one (they fail).
[ "${D2R_GPU_RUN_ASSUME_GPU:-0}" = 1 ] && ((dry == 0)) && gpu=1
device=$( ((gpu)) && nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9._\n-' '-')
[ -z "$device" ] && ((gpu)) && device=assumed-gpu   # D2R_GPU_RUN_ASSUME_GPU=1 without nvidia-smi
device=${device:-no-gpu}
echo "$device" >"$W/DEVICE"
done_before=""
if [ -n "$resume" ]; then  # only onto the same binaries on the same kind of GPU
  done_before=$("$PY" "$S" finished "$resume/state.json" --build "$W/BUILD_INFO" --device "$device") || exit 2
  done_before=",$(echo "$done_before" | paste -sd, -),"
fi
# want NAME GROUP MIN: the phase is asked for, not finished in the earlier call, there is a GPU, and
# at least MIN seconds are left; otherwise its reason is recorded and it is not run.
want() {
  [[ $phases == *",$2,"* ]] || return 1
  [[ $done_before == *",$1,"* ]] && return 1
  ((gpu)) || { record "$1" no-gpu - 0 0 "no GPU$( ((dry)) && echo ' (--dry)')"; return 1; }
  (($(left) >= $3)) || { record "$1" no-time - 0 0 "$(left) s left of the budget, needs $3"; return 1; }
}
cap() { local l; l=$(left); ((l < $1)) && echo "$l" || echo "$1"; }   # a phase's time limit
status_of() {  # exit code -> status
  case $1 in 0) echo pass ;; 124|137) echo timeout ;; 126|127) echo unavailable ;; *) echo fail ;; esac
}
# timed NAME CAP LOG CMD...: runs CMD under timeout (output to LOG), records status, code, seconds.
timed() {
  local name=$1 c s rc; c=$(cap "$2"); s=$(date +%s); shift 2
  local log=$1; shift
  record "$name" running - 0 "$c" "started"   # what a call cut short leaves (a later line replaces it)
  timeout -k 5 "$c" "$@" >"$log" 2>&1; rc=$?
  record "$name" "$(status_of $rc)" "$rc" $(($(date +%s) - s)) "$c" "${log##*/}"
  return $rc
}
snapshot() {  # summary.md, state.json and logs.tgz in --out, after every step and every 30 s
  "$PY" "$S" summarize "$W" "$out" --budget "$budget" ${resume:+--resume "$resume/state.json"} "$@" \
    >/dev/null 2>>"$W/summary.err"
  local rc=$?
  tar czf "$out/.logs.$BASHPID.tgz" -C "$W" --exclude=./bin --exclude=./lib . 2>/dev/null &&
    mv -f "$out/.logs.$BASHPID.tgz" "$out/logs.tgz"
  return $rc
}

# ------------------------------------------------------------------ smoke (no GPU needed)
{
  echo "host: $(uname -srm), $(nproc) cores"
  if ((gpu)); then nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
  else echo "GPU: none$( ((dry)) && echo ' (--dry)')"; fi
  if [ -n "$sanitizer" ]; then echo "compute-sanitizer $sanitizer: $("$sanitizer" --version 2>&1 | grep -i version | head -1)"
  else echo "compute-sanitizer: not found"; fi
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>/dev/null ||
    echo "torch: not importable"
} >"$W/probe.txt" 2>&1
# CUDA's own libraries (cudart, cuBLAS) are not in the bundle: the machine's toolkit, else the pip
# wheels beside torch (nvidia/*/lib).
for lib in $(ldd "$B"/* 2>/dev/null | awk '/not found/ {print $1}' | sort -u); do
  d=$("$PY" - "$lib" <<'PY'
import glob, site, sys
roots = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
roots += [p + "/nvidia/**" for p in site.getsitepackages()]
hits = [h for r in roots for h in glob.glob(r + "/" + sys.argv[1], recursive=True)]
print(hits[0].rsplit("/", 1)[0] if hits else "")
PY
)
  [ -n "$d" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
done
smoke() {
  local missing
  missing=$(ldd "$B"/* 2>&1 | grep 'not found' | sort -u)
  [ -z "$missing" ] || { echo "libraries not found:"; echo "$missing"; return 1; }
  for exe in gpu_kernels_test d2r objectives_bench cases_bench curvature_bench outer_step_bench peer_check_export; do
    [ -x "$B/$exe" ] || { echo "missing executable: $exe"; return 1; }
  done
  "$B/d2r" --version || return 1
  "$B/gpu_kernels_test" --gtest_list_tests >"$W/tests/list.txt" || return 1
  echo "GPU tests: $(grep -c '^  ' "$W/tests/list.txt") cases in $(grep -c -E '^[A-Za-z0-9_/]+\.( |$)' "$W/tests/list.txt") suites"
}
s=$(date +%s); smoke >"$W/smoke.txt" 2>&1; rc=$?
record smoke "$(status_of $rc)" "$rc" $(($(date +%s) - s)) - "$(tail -1 "$W/smoke.txt")"
if ((rc != 0)); then  # nothing else can run
  snapshot; tail -n 4 "$out/summary.md"; exit 1
fi
snapshot
# Every 30 s a snapshot, so that a call cut short (the device tool's timeout) still returns where it was.
( while :; do for _ in $(seq 30); do sleep 1; [ -e "$W/stop" ] && exit 0; done; snapshot; done ) &
ticker=$!

# ------------------------------------------------------------------ correctness, side by side
run_suite() {  # one gtest suite in its own process: a crash or a sticky CUDA error stays in it
  local f=${1//\//_} c=$((END - $(date +%s))); f=${f%.}
  ((c > 5)) || { echo "125 $1" >>"$W/tests/exit-codes.txt"; return; }
  timeout -k 5 "$c" "$B/gpu_kernels_test" --gtest_filter="$1*" --gtest_output="xml:$W/tests/$f.xml" >"$W/tests/$f.log" 2>&1
  echo "$? $1" >>"$W/tests/exit-codes.txt"
}
export -f run_suite; export B W
export D2R_EXPECT_GPU=1
pids=()   # the side-by-side phases
if want tests tests 60; then
  c=$(cap 200); export END=$(($(date +%s) + c))
  # Suites with the most cases first (they set the wall time); --suites REGEX picks some.
  awk '/^[A-Za-z0-9_\/]+\.( |$)/ {s = $1} /^  / {n[s]++} END {for (s in n) print n[s], s}' "$W/tests/list.txt" |
    sort -rn | cut -d' ' -f2 | grep -E -- "$suites" >"$W/tests/suites.txt"
  if [ -n "$resume" ]; then  # the suites the earlier call ran to the end are not run again
    "$PY" "$S" suites-done "$resume/state.json" | grep -vxF -f - "$W/tests/suites.txt" >"$W/tests/todo.txt"
    mv "$W/tests/todo.txt" "$W/tests/suites.txt"
  fi
  : >"$W/tests/exit-codes.txt"
  record tests running - 0 "$c" "started"
  ( s=$(date +%s); xargs -a "$W/tests/suites.txt" -P "$jobs" -I{} bash -c 'run_suite "$1"' _ {}
    # The status comes from the XML and the exit codes (gpu_summary.py); here only the time.
    record tests pending - $(($(date +%s) - s)) "$c" "$(wc -l <"$W/tests/suites.txt") suites" ) &
  pids+=($!)
fi
if want validate validate 30; then
  ( timed validate 120 "$W/validate.txt" "$B/d2r" validate --device cuda --sizes medium --out "$W/validate" ) &
  pids+=($!)
fi
if want memcheck memcheck 30; then
  if [ -n "$sanitizer" ]; then
    ( timed memcheck 150 "$W/memcheck.txt" "$sanitizer" --tool memcheck --error-exitcode 99 --print-limit 30 \
        "$B/d2r" validate --device cuda --sizes small --out "$W/memcheck" ) &
    pids+=($!)
  else record memcheck unavailable - 0 0 "compute-sanitizer not found"; fi
fi
torch=0; grep -q '^torch [0-9]' "$W/probe.txt" && torch=1   # the probe imported it
if want peercheck peercheck 30; then
  if ((torch == 0)); then record peercheck unavailable - 0 0 "python3 cannot import torch"
  elif "$B/peer_check_export" "$W/d2r-check.json" >"$W/peercheck-export.txt" 2>&1; then
    ( cd "$root/bench/peer" && timed peercheck 90 "$W/peercheck.txt" "$PY" check_against_d2r.py "$W/d2r-check.json" ) &
    pids+=($!)
  else record peercheck fail 1 0 0 "peer_check_export failed (peercheck-export.txt)"; fi
fi
((${#pids[@]} == 0)) || wait "${pids[@]}"
snapshot

# ------------------------------------------------------------------ timings: the GPU alone
# d2r bench times the registry's cases (host/checks/) at --sizes large, plus its two composite rows.
want clibench clibench 30 && timed clibench 60 "$W/clibench.txt" "$B/d2r" bench --device cuda --sizes large --out "$W/clibench"
for b in objectives curvature outer_step cases; do
  cap=60; [ "$b" = cases ] && cap=90   # cases_bench: one benchmark per timed registry case (--sizes large)
  want "bench-$b" bench 20 && timed "bench-$b" "$cap" "$W/bench-$b.txt" "$B/${b}_bench" --benchmark_filter=/gpu/ \
    --benchmark_min_time=0.05 --benchmark_out="$W/bench-$b.json" --benchmark_out_format=json
  snapshot
done
peer() {  # peer GROUP NAME CAP [ARGS]: bench/peer/NAME_peer.py -> peer-NAME[-eager].json
  local group=$1 n=$2 c=$3 j; shift 3
  j="peer-${n//_/-}$([ "$group" = peers ] && echo -eager)"
  want "$j" "$group" 30 || return
  ((torch)) || { record "$j" unavailable - 0 0 "python3 cannot import torch"; return; }
  (cd "$root/bench/peer" && timed "$j" "$c" "$W/$j.txt" "$PY" "${n}_peer.py" --out "$W/$j.json" "$@") || rm -f "$W/$j.json"
  snapshot
}
for n in pg_head categorical hvp outer_step; do peer peers "$n" 60 --no-compile; done

# ------------------------------------------------------------------ extras while time is left
for tool in racecheck initcheck synccheck; do
  if want "$tool" sanitize 40; then
    if [ -n "$sanitizer" ]; then
      timed "$tool" 90 "$W/$tool.txt" "$sanitizer" --tool "$tool" --error-exitcode 99 --print-limit 30 \
        "$B/d2r" validate --device cuda --sizes small --out "$W/$tool"
    else record "$tool" unavailable - 0 0 "compute-sanitizer not found"; fi
    snapshot
  fi
done
for e in implicit synthetic; do
  want "reproduce-$e" e2e 30 && timed "reproduce-$e" 60 "$W/reproduce-$e.txt" "$B/d2r" reproduce "$e" --quick \
    --device cuda --seed 1 -q --out "$W/reproduce-$e"
done
for n in pg_head hvp outer_step categorical; do peer compile "$n" 150; done

# ------------------------------------------------------------------ results
touch "$W/stop"; wait "$ticker"   # no snapshot in flight may overwrite the final one
snapshot --final "$device" "$(date -u +%Y-%m-%d)"
verdict=$?
tail -n 6 "$out/summary.md"
exit $verdict
