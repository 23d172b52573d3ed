#!/usr/bin/env bash
# Builds the libFuzzer targets with clang++ (fuzz/ configured as a project of its own, since the
# main build uses g++) and runs fuzz_csv for a bounded time over the seed corpus fuzz/corpus/csv.
# Fails on any crash, sanitizer report or broken invariant; the reproducer is written to
# ${D2R_FUZZ_BUILD_DIR}/artifacts/ (replay it with: build-fuzz/fuzz_csv <file>).
#
# Environment: D2R_FUZZ_SECONDS (default 60), D2R_FUZZ_BUILD_DIR (default build-fuzz),
# D2R_FUZZ_CXX (default clang++-14, else clang++), D2R_SKIP_FUZZ=1 to skip. Without clang++ (or
# libFuzzer) the run is skipped with a notice, unless D2R_FUZZ_REQUIRED=1 makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${D2R_SKIP_FUZZ:-0}" = "1" ]; then
  echo "== fuzz: skipped (D2R_SKIP_FUZZ=1)"
  exit 0
fi
seconds="${D2R_FUZZ_SECONDS:-60}"
build_dir="${D2R_FUZZ_BUILD_DIR:-build-fuzz}"
cxx="${D2R_FUZZ_CXX:-}"
if [ -z "$cxx" ]; then
  for candidate in clang++-14 clang++; do
    if command -v "$candidate" >/dev/null 2>&1; then cxx="$candidate"; break; fi
  done
fi
unavailable() {
  if [ "${D2R_FUZZ_REQUIRED:-0}" = "1" ]; then
    echo "fuzz: $1" >&2
    exit 1
  fi
  echo "== fuzz: SKIPPED: $1 (install clang and libclang-rt-dev; D2R_FUZZ_REQUIRED=1 makes this fail)"
  exit 0
}
[ -n "$cxx" ] || unavailable "no clang++ found"
# libFuzzer ships in libclang-rt-<version>-dev: check that clang can link a fuzzer.
probe_dir="$(mktemp -d)"
trap 'rm -rf "$probe_dir"' EXIT
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' > "$probe_dir/p.cpp"
"$cxx" -fsanitize=fuzzer "$probe_dir/p.cpp" -o "$probe_dir/p" >/dev/null 2>&1 || unavailable "$cxx cannot link libFuzzer"

echo "== fuzz: building fuzz_csv with $cxx in $build_dir"
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
cmake -S fuzz -B "$build_dir" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" "${launcher[@]}" >/dev/null
cmake --build "$build_dir" --target fuzz_csv -j "${D2R_JOBS:-$(nproc)}"

# New inputs go to the first (scratch) corpus directory; the committed seeds stay as they are.
mkdir -p "$build_dir/corpus/csv" "$build_dir/artifacts"
echo "== fuzz: running fuzz_csv for ${seconds} s"
ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
  "$build_dir/fuzz_csv" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build_dir/artifacts/" "$build_dir/corpus/csv" fuzz/corpus/csv
echo "== fuzz: fuzz_csv ran ${seconds} s without a crash"
