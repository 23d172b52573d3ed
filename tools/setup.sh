#!/usr/bin/env bash
# Installs what d2r needs to build (Debian packages) when it is missing. Idempotent.
# The CUDA toolkit (nvcc, cuBLAS, CUB/Thrust) is expected to be installed already.
set -euo pipefail

packages=(cmake ninja-build g++ ccache libgtest-dev libbenchmark-dev libcli11-dev libfmt-dev nlohmann-json3-dev libopenblas-dev libopenmpi-dev openmpi-bin clang libclang-rt-14-dev python3-matplotlib)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "d2r setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v nvcc >/dev/null 2>&1; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then
    echo "d2r setup: add /usr/local/cuda/bin to PATH" >&2
  else
    echo "d2r setup: nvcc (CUDA toolkit 12.x/13.x) not found" >&2
    exit 1
  fi
fi
