"""The Python examples run and print what they claim (they are part of the documentation)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run(script):
    env = dict(os.environ)
    return subprocess.run([sys.executable, str(ROOT / "examples/python" / script)], check=True, capture_output=True,
                          text=True, env=env, timeout=600).stdout


def test_bilevel_csv_example():
    out = run("bilevel_csv.py")
    beta = float(re.search(r"learned beta = ([0-9.]+)", out).group(1))
    acc = float(re.search(r"held-out accuracy ([0-9.]+)", out).group(1))
    assert beta != 1.0 and 0.0 < beta and 0.8 < acc <= 1.0
    assert re.search(r"verdict: (converged|step_limited) \(.+\)", out)


def test_pg_head_torch_example():
    pytest.importorskip("torch")
    out = run("pg_head_torch.py")
    rewards = [float(v) for v in re.findall(r"mean reward ([-+0-9.]+)", out)]
    assert len(rewards) == 4 and rewards[-1] > rewards[0]  # the fused head trained the policy
    assert re.search(r"hypergradient dNLL/du = [-+0-9.]+", out)
