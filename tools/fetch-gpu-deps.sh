#!/usr/bin/env bash
# Prepares .deps/ (git-ignored) for a GPU machine that cannot install packages: downloads the
# Debian packages d2r builds against and unpacks them into .deps/root. Carry .deps to that
# machine (device tool: carry [".deps"]) and run tools/gpu-check.sh there: the fallback that builds
# on the GPU machine when the bundle of tools/gpu-bundle.sh does not load there.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .deps && mkdir -p .deps/debs .deps/root
(cd .deps/debs && apt-get download libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian libcli11-dev \
   libfmt-dev libfmt9 nlohmann-json3-dev >/dev/null)
for deb in .deps/debs/*.deb; do dpkg-deb -x "$deb" .deps/root; done
rm -rf .deps/debs
du -sh .deps
