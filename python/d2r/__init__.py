"""d2r from Python: learn rewards from data by bilevel optimisation; policy-gradient primitives.

Layers (DESIGN.md §11):

- ``d2r._core`` (re-exported here): framework-neutral bindings over DLPack arrays (NumPy, PyTorch,
  JAX, CuPy). Every primitive takes a :class:`Context` first, reads its inputs as read-only views
  and writes into output arrays the caller passes; nothing is copied or converted (a float64 array
  for a float32 argument is an error), the GIL is released while the primitive runs, and a bad
  argument raises :class:`ArgumentError` (a ``ValueError``) naming it before any output is touched.
  Heads are chosen by name: ``head="diag"`` (``mean=``, ``log_std=``), ``"cholesky"`` (``mean=``,
  ``tril=``, ``jitter=``) or ``"categorical"`` (``logits=``); gradients by ``grad_*=``, tangents by
  ``tangent_*=``.
- ``d2r.torch``: the primitives as ``torch.library`` custom ops with autograd (eager and
  ``torch.compile(fullgraph=True)``), and ``autograd.Function`` variants for ``torch.func``.
- ``d2r.fit`` and ``d2r.BilevelRewardLearner``: the trainers on arrays; ``d2r.sweep``: the
  brute-force answer over a grid of fixed rewards that a learned reward must match.

>>> import numpy as np, d2r
>>> ctx = d2r.Context("cpu", seed=7)
>>> mean = np.zeros((4, 2), np.float32); log_std = np.zeros((4, 2), np.float32)
>>> samples = np.empty((4 * 8, 2), np.float32)
>>> d2r.sample(ctx, "diag", samples, 8, step=0, mean=mean, log_std=log_std)
"""

from __future__ import annotations

from . import _core
from ._core import (  # noqa: F401  (the public primitives)
    ArgumentError,
    BilevelTrainer,
    CategoricalPolicyCurvature,
    CholeskyPolicyCurvature,
    Context,
    DiagGaussianPolicyCurvature,
    Mlp,
    PgOptions,
    adam_reset,
    adam_step,
    advance_counter,
    backward,
    backward_tangent,
    clamp_values,
    clip_global_norm,
    conjugate_gradient,
    conjugate_gradient_normal,
    cuda_device_available,
    set_cpu_threads,
    entropy,
    exact_backward_tangent,
    exact_mixed_product,
    exact_objective,
    fit_classifier,
    fit_policy,
    log_grid,
    log_prob,
    log_prob_jvp,
    mixed_product,
    neumann_series,
    parameter_count,
    pg_pathwise,
    pg_surrogate,
    pg_surrogate_unfused,
    random_permutation,
    reward,
    reward_backward,
    reward_param_count,
    sample,
    sgd_step,
    transform_rewards,
    transform_rewards_backward,
)
from ._learn import (  # noqa: F401
    BilevelDivergedError,
    FitDivergedError,
    BilevelRewardLearner,
    BilevelWarning,
    FitResult,
    fit,
)
from ._parallel import TorchCommunicator  # noqa: F401
from ._sweep import SweepGroup, SweepJudgement, SweepResult, SweepWarning, sweep  # noqa: F401

__version__ = _core.__version__


def backends() -> list[str]:
    """The backends usable in this process: always ``"cpu"``; ``"cuda"`` when this build has the CUDA
    kernels (every build does: the library compiles them) and the CUDA runtime sees a device."""
    return ["cpu", "cuda"] if _core.cuda_device_available() else ["cpu"]
