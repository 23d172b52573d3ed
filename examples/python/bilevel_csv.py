"""Learn the reward of a classifier from a shipped CSV with d2r.BilevelRewardLearner.

    PYTHONPATH=build/python .venv/bin/python examples/python/bilevel_csv.py [data/tabular/wine.csv]

Reads the CSV (last column: the class label), standardises the features, holds out a fifth of the
rows, and learns β of the one-hot reward r(k, y) = −2β·[k ≠ y] by bilevel optimisation of a
logistic-regression policy (the paper's tabular setting) under the recommended preset, `d2r fit`'s
default: the outer loss is the held-out rows' cross-entropy, and the run stops at a verdict. It
reports the verdict, the learned β and the held-out accuracy of the policy the run returns (the
best-judged outer step's).
"""

import csv
import pathlib
import sys

import numpy as np

import d2r

path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parents[2] / "data/tabular/wine.csv")
with open(path) as f:
    rows = list(csv.reader(f))
header, body = rows[0], rows[1:]
X = np.array([[float(v) for v in r[:-1]] for r in body])
names = sorted({r[-1] for r in body})
labels = np.array([names.index(r[-1]) for r in body], np.int32)

rng = np.random.default_rng(0)
order = rng.permutation(len(X))
val, train = order[: len(X) // 5], order[len(X) // 5 :]
mean, scale = X[train].mean(0), X[train].std(0) + 1e-12
Xs = ((X - mean) / scale).astype(np.float32)

learner = d2r.BilevelRewardLearner(outer_steps=50, seed=0, device="cpu")
result = learner.fit(np.ascontiguousarray(Xs[train]), labels=labels[train], classes=len(names),
                     val_X=np.ascontiguousarray(Xs[val]), val_labels=labels[val])
model = result.records[learner.model_step_ - 1]  # the returned policy's outer step
print(f"{path.name}: {len(train)} train / {len(val)} held-out rows, {X.shape[1]} features, {len(names)} classes")
print(f"verdict: {result.verdict} ({result.reason})")
print(f"learned beta = {result.reward_params[0]:.4f} (from 1.0; the policy of outer step {learner.model_step_} "
      f"of {len(result.records)})")
print(f"returned policy: train accuracy {model['train']['accuracy']:.3f}, held-out accuracy "
      f"{model['validation']['accuracy']:.3f}, held-out NLL {model['validation']['nll_per_dim']:.4f}")
