"""Shared fixtures of the Python tests (run by ctest's python_tests: PYTHONPATH=<build>/python).

GPU variants take the `device` fixture: without a usable CUDA device they skip, saying why, unless
D2R_EXPECT_GPU=1, where they fail instead (the GPU lease runs them that way)."""

import os

import pytest

import d2r

EXPECT_GPU = os.environ.get("D2R_EXPECT_GPU") == "1"


def _gpu_or_skip():
    if "cuda" in d2r.backends():
        return
    if EXPECT_GPU:
        pytest.fail("D2R_EXPECT_GPU=1 but d2r.backends() has no 'cuda' (no usable CUDA device)")
    pytest.skip("no CUDA device here: d2r.backends() == ['cpu'] (D2R_EXPECT_GPU=1 makes this a failure)")


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda":
        _gpu_or_skip()
    return request.param


@pytest.fixture
def gpu():
    _gpu_or_skip()
    return "cuda"
