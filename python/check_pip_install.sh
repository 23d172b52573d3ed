#!/usr/bin/env bash
# ctest python_pip_install: `pip install .` of this source tree into a fresh virtual environment
# (PyPI's scikit-build-core and nanobind in pip's isolated build environment), then import d2r
# from it, outside the source tree, and run one primitive. The wheel is built in build-pip/ with
# ccache when present; CCACHE_BASEDIR at the source tree lets ccache serve the library objects a
# build of the same tree compiled with the same base directory.
# Usage: check_pip_install.sh SOURCE_DIR WORK_DIR PYTHON
set -euo pipefail
src="$1" work="$2" python="$3"
rm -rf "$work"
mkdir -p "$work"
"$python" -m venv "$work/venv"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$src}" PATH="/usr/local/cuda/bin:$PATH"
if command -v ccache >/dev/null 2>&1; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache
fi
start=$(date +%s)
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$src"
cd "$work"
"$work/venv/bin/python" - <<'PY'
import numpy as np
import d2r
assert d2r.__file__.endswith("site-packages/d2r/__init__.py"), d2r.__file__
assert d2r.backends()[0] == "cpu", d2r.backends()
out = np.empty(2, np.float32)
d2r.entropy(d2r.Context("cpu"), "diag", out, mean=np.zeros((2, 3), np.float32), log_std=np.zeros((2, 3), np.float32))
np.testing.assert_allclose(out, 1.5 * np.log(2 * np.pi * np.e), rtol=1e-6)
print("installed d2r", d2r.__version__, "backends", d2r.backends())
PY
echo "check_pip_install: pip install . and import in $(( $(date +%s) - start )) s"
