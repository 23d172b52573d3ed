#!/usr/bin/env bash
# Creates the ignored virtual environment .venv/ (or $D2R_VENV) with what the Python bindings
# and their tests need: nanobind (to build d2r._core in the CMake build: -DD2R_BUILD_PYTHON=ON),
# numpy, pytest, JAX (CPU) and a CPU-capable PyTorch. Idempotent: a .venv whose stamp matches is reused.
#
# PyTorch. PyPI's torch for Linux x86_64 is the CUDA build: with all its nvidia-* dependencies a
# 2.8 GB download. This machine's CUDA toolkit already holds most of those libraries (cuBLAS, cuDNN,
# cuFFT, ...), so the script installs the torch wheel without dependencies, its pure-Python
# dependencies, and only the four nvidia wheels whose libraries the toolkit lacks or has too old
# (cuFile, cuSPARSELt, NVSHMEM, NCCL): about 1.1 GB. If `import torch` then fails (another
# toolkit), it falls back to the complete `pip install torch`. Either way torch runs on the CPU
# here; for CUDA work with torch use an ordinary `pip install torch`.
# D2R_TORCH=0 skips torch (the torch tests then skip, saying so).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${D2R_VENV:-.venv}"
python="${PYTHON:-python3}"

# Pinned versions (pyproject.toml pins the same build requirements).
nanobind_v="2.9.2"
numpy_v="2.3.5"
pytest_v="9.0.2"
jax_v="0.10.2"  # jax + jaxlib (CPU): about 125 MB with scipy; for the JAX zero-copy tests
torch_v="2.15.0"
torch_pure_deps=(filelock "typing-extensions>=4.13.0" "setuptools>=77.0.3" "sympy>=1.13.3" "networkx>=2.5.1"
                 jinja2 "fsspec>=0.8.5")
# The nvidia wheels torch 2.15.0 pins that this toolkit's libraries do not replace.
torch_nvidia=("nvidia-cufile==1.17.1.22.*" "nvidia-cusparselt-cu13==0.8.1" "nvidia-nvshmem-cu13==3.7.2"
              "nvidia-nccl-cu13==2.30.7")

want_torch="${D2R_TORCH:-1}"
stamp="nanobind=$nanobind_v numpy=$numpy_v pytest=$pytest_v jax=$jax_v torch=$([ "$want_torch" = 1 ] && echo "$torch_v" || echo none)"
if [ -f "$venv/.d2r-stamp" ] && [ "$(cat "$venv/.d2r-stamp")" = "$stamp" ]; then
  echo "d2r setup-python: $venv is up to date ($stamp)"
  exit 0
fi

start=$(date +%s)
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "nanobind==$nanobind_v" "numpy==$numpy_v" "pytest==$pytest_v" "jax==$jax_v" "jaxlib==$jax_v"
if [ "$want_torch" = 1 ]; then
  "${pip[@]}" "${torch_pure_deps[@]}"
  "${pip[@]}" --no-deps "torch==$torch_v" "${torch_nvidia[@]}"
  if ! "$venv/bin/python" -c "import torch; torch.ones(1).sum()" 2>/dev/null; then
    echo "d2r setup-python: torch without its CUDA dependencies does not import here; installing them all" >&2
    "${pip[@]}" "torch==$torch_v"
    "$venv/bin/python" -c "import torch; torch.ones(1).sum()"
  fi
fi
echo "$stamp" > "$venv/.d2r-stamp"
echo "d2r setup-python: $venv ready in $(( $(date +%s) - start )) s ($stamp)"
