#!/usr/bin/env bash
# Builds, on a machine WITHOUT a GPU, everything one GPU run needs and packs it into .gpu/
# (ignored by git), for tools/gpu-run.sh on the GPU machine:
#   tools/gpu-bundle.sh            (in the checkout that travels to the GPU machine)
# - builds gpu_kernels_test, d2r, the four benchmark binaries and peer_check_export into
#   ${D2R_GPU_BUILD_DIR:-build-gpu}: Release, sm_90 machine code + compute_90 PTX
#   (CMAKE_CUDA_ARCHITECTURES=90; the H100/H200 run the machine code, a newer GPU JITs the PTX),
#   OpenBLAS off (the GPU machine has none; the cuda backend does not use it), ccache when present;
# - strips them and packs them, with the shared libraries they need that the GPU machine lacks
#   (Debian's fmt and Google Benchmark), into one xz stream .gpu/bin.tar.xz: the executables share
#   most of their bytes (the static libd2r.a and its fatbin), so one stream with a large window packs
#   them into a few MB. Not packed: the C/C++ runtime, and CUDA's libcudart and libcublas, which the
#   GPU machine has (its CUDA 13 toolkit, or the nvidia-* wheels beside torch; gpu-run.sh finds
#   them) and which would not fit (libcublasLt alone is ~540 MB);
# - writes .gpu/BUILD_INFO (commit, clean/dirty, date, nvcc, architectures, build CPU-seconds);
# - smoke-tests the packed binaries here: unpacks the bundle and runs `tools/gpu-run.sh --dry` on
#   it (they load, d2r --version, the GPU test list), plus `d2r validate --device cpu --sizes small`;
# - checks that the tree that travels (tracked + untracked-not-ignored files) plus .gpu/ stays under
#   the device tool's 64 MiB.
# D2R_JOBS: build jobs (default 2). Exit 0: the bundle is ready; 1: a step failed (said which).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="/usr/local/cuda/bin:$PATH"
build=${D2R_GPU_BUILD_DIR:-build-gpu}   # ignored by the /build*/ rule
fail() { echo "gpu-bundle.sh: $*" >&2; exit 1; }
for tool in cmake ninja nvcc strip xz ldd python3; do command -v "$tool" >/dev/null || fail "'$tool' not found"; done

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DD2R_WITH_OPENBLAS=OFF \
  -DD2R_BUILD_TESTS=ON -DD2R_BUILD_BENCH=ON -DD2R_BUILD_CLI=ON -DD2R_SANITIZE=OFF "${launcher[@]}" >/dev/null
targets=(gpu_kernels_test d2r_cli objectives_bench cases_bench curvature_bench outer_step_bench peer_check_export)
exes=(tests/gpu_kernels_test host/cli/d2r bench/objectives_bench bench/cases_bench bench/curvature_bench
      bench/outer_step_bench bench/peer_check_export)
# CPU-seconds of the build (user + system of every process it ran): the figure the README quotes.
cpu=$(python3 - "$build" "${D2R_JOBS:-2}" "${targets[@]}" <<'PY'
import resource, subprocess, sys
build, jobs, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
rc = subprocess.run(["cmake", "--build", build, "-j", jobs, "--target", *targets], stdout=sys.stderr).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{usage.ru_utime + usage.ru_stime:.0f}" if rc == 0 else "failed")
PY
)
[ "$cpu" != failed ] || fail "the build failed"

stage=$(mktemp -d /tmp/d2r-gpu-stage.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
for exe in "${exes[@]}"; do strip --strip-unneeded -o "$stage/bin/${exe##*/}" "$build/$exe"; done
# The shared libraries ldd resolves, less the C/C++ runtime and CUDA's own (libcu*, libnv*).
ldd "$stage"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  grep -v -E '^(ld-linux[^ ]*|libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libcu[A-Za-z]*|libnv[A-Za-z]*)\.so' |
  while read -r name path; do cp -L "$path" "$stage/lib/$name"; done
rm -rf .gpu && mkdir .gpu
# One xz stream with a 64 MiB window (-9): the executables' shared bytes compress once.
tar -C "$stage" --sort=name --owner=0 --group=0 -cf - bin lib | xz -9 -T1 >.gpu/bin.tar.xz
{
  echo "$(git rev-parse --short HEAD) $(git diff --quiet HEAD -- && echo clean || echo dirty)"
  date -u +%FT%TZ
  nvcc --version | grep -o 'release [0-9.]*' | sed 's/^/nvcc /'
  echo "sm_90 + compute_90 PTX, OpenBLAS off"
  echo "build ${cpu} CPU-seconds (ccache: $([ ${#launcher[@]} -gt 0 ] && echo on || echo off))"
  echo "libraries: $(cd "$stage/lib" && ls | paste -sd' ' -)"
} >.gpu/BUILD_INFO
grep -qx '/.gpu/' .gitignore 2>/dev/null || fail ".gitignore lacks /.gpu/ (the bundle must not be committed)"

# Smoke test here, no GPU: the packed binaries load and run.
smoke=$(mktemp -d /tmp/d2r-gpu-smoke.XXXXXX)
trap 'rm -rf "$stage" "$smoke"' EXIT
set +e
tools/gpu-run.sh --bundle .gpu --dry --budget 60 --out "$smoke/out" >"$smoke/run.txt" 2>&1
rc=$?
set -e
((rc == 3)) || { cat "$smoke/run.txt" >&2; fail "the dry run of the bundle exited $rc (expected 3: no GPU, binaries load)"; }
tar -C "$smoke" -xJf .gpu/bin.tar.xz
LD_LIBRARY_PATH="$smoke/lib" "$smoke/bin/d2r" validate --device cpu --sizes small >"$smoke/validate.txt" 2>&1 ||
  { tail -20 "$smoke/validate.txt" >&2; fail "the packed d2r failed its cpu self-check"; }

# What the device tool carries: tracked + untracked-not-ignored files (+ shared/ if the checkout has
# one) + .gpu. Limit 64 MiB; keep 4 MiB of slack.
sum() { xargs -0 -r du -cb 2>/dev/null | awk '/\ttotal$/ {s += $1} END {print s + 0}'; }
tree=$(( $(git ls-files -z | sum) + $(git ls-files -z -o --exclude-standard | sum) ))
bundle=$(du -sb .gpu | cut -f1)
awk -v b="$bundle" -v x="$(du -b .gpu/bin.tar.xz | cut -f1)" -v t="$tree" -v p="$root/.gpu" 'BEGIN {
  printf "bundle %s: %.1f MiB (bin.tar.xz %d bytes); the tree that travels %.1f MiB; together %.1f MiB of 64\n",
         p, b / 1048576, x, t / 1048576, (t + b) / 1048576 }'
echo "build: $cpu CPU-seconds; smoke: dry run and cpu self-check passed"
((tree + bundle < 60 * 1048576)) || fail "too large for the device tool (64 MiB with the source tree)"
echo 'next, on the GPU machine (device tool): run(command="tools/gpu-run.sh --budget 360", carry=[".gpu"], timeout_s=420)'
