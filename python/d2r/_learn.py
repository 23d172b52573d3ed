"""The trainers on arrays: d2r.fit and d2r.BilevelRewardLearner (the CLI's `d2r fit` without files).

Arrays stay where they are (zero copy): NumPy or CPU tensors run the cpu backend, CUDA tensors the
cuda backend (float32). The policy parameters are allocated in the caller's framework.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
import sys
import warnings
from typing import Any, Callable, Optional, Sequence

from . import _core
from ._parallel import TorchCommunicator, _parallel  # noqa: F401  (TorchCommunicator: d2r's API)

_CPU, _CUDA = 1, 2  # DLPack device types


def _device_of(a: Any) -> tuple[int, int]:
    if hasattr(a, "__dlpack_device__"):
        t, i = a.__dlpack_device__()
        return int(t), int(i)
    return _CPU, 0


def _context(x: Any, device: str, seed: int) -> _core.Context:
    t, i = _device_of(x)
    if device == "auto":
        device = "cuda" if t == _CUDA else "cpu"
    if device == "cuda":
        stream = None
        try:  # run on PyTorch's current stream when the arrays are PyTorch's
            import torch

            if isinstance(x, torch.Tensor) and x.is_cuda:
                stream = torch.cuda.current_stream(x.device).cuda_stream
        except ImportError:
            pass
        return _core.Context("cuda", seed=seed, device=i, stream=stream)
    return _core.Context(device, seed=seed)


def _empty_like(x: Any, n: int, dtype_of: Any) -> Any:
    """An uninitialised length-n vector in x's framework and memory, with dtype_of's dtype."""
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        import torch

        return torch.empty(n, dtype=dtype_of.dtype, device=x.device)
    if mod == "cupy":
        import cupy

        return cupy.empty(n, dtype=dtype_of.dtype)
    import numpy as np

    return np.empty(n, dtype=np.dtype(str(dtype_of.dtype)) if mod != "numpy" else dtype_of.dtype)


def _require_array(a: Any, fn: str, name: str) -> None:
    if not (hasattr(a, "shape") and hasattr(a, "dtype")):
        raise _core.ArgumentError(f"d2r.{fn}: argument '{name}': expected an array (NumPy, PyTorch, JAX, CuPy), "
                                  f"got {type(a).__name__}")


def _array_like(a: Any, fn: str, name: str) -> Any:
    """An uninitialised contiguous array of a's shape and dtype in a's framework and memory (NumPy
    for frameworks whose arrays cannot be written, such as JAX)."""
    _require_array(a, fn, name)
    shape = tuple(int(d) for d in a.shape)
    mod = type(a).__module__.split(".")[0]
    if mod == "torch":
        import torch

        return torch.empty(shape, dtype=a.dtype, device=a.device)
    if mod == "cupy":
        import cupy

        return cupy.empty(shape, dtype=a.dtype)
    import numpy as np

    return np.empty(shape, dtype=a.dtype if mod == "numpy" else np.dtype(str(a.dtype)))


@dataclasses.dataclass
class _TargetScaling:
    """`d2r fit --standardize-targets`: the trainer saw (y − mean) / scale (one scale for every
    dimension); metrics and outer losses convert back exactly (NLL per dim + log scale, RMSE and
    mean std × scale), the reward U by U / scale² (R / scale for the full form)."""

    mean: Optional[list[float]] = None  # None: the targets as given
    scale: float = 1.0

    @staticmethod
    def of(ctx: _core.Context, fn: str, Y: Any, val_Y: Any, enabled: bool) -> tuple["_TargetScaling", Any, Any]:
        """The scaling of the training targets Y (d2r::standardize_targets, bound) and standardised
        copies of Y and val_Y in their framework and memory; the caller's arrays are only read."""
        if not enabled:
            return _TargetScaling(), Y, val_Y
        out = _array_like(Y, fn, "Y")
        mean, scale = _core.standardize_targets(ctx, Y, out, fn=fn, name="Y")
        val_out = None
        if val_Y is not None:
            val_out = _array_like(val_Y, fn, "val_Y")
            _core.standardize_targets(ctx, val_Y, val_out, mean=mean, scale=scale, fn=fn, name="val_Y")
        return _TargetScaling(list(mean), float(scale)), out, val_out

    def metrics(self, m: dict) -> dict:
        if self.mean is None:
            return m
        m = dict(m)  # as d2r::runs::RegressionRun::to_original
        m["nll_per_dim"] += math.log(self.scale)
        m["rmse"] *= self.scale
        m["mean_std"] *= self.scale
        return m

    def record(self, r: dict) -> dict:
        """A trainer's record with its metrics and outer loss in the original units (the reward and
        the hypergradient stay on the standardised targets, as in `d2r fit`'s results.json)."""
        if self.mean is None:
            return r
        r = dict(r, train=self.metrics(r["train"]), validation=self.metrics(r["validation"]))
        if "outer_loss" in r:
            r["outer_loss"] += math.log(self.scale)
        return r

    def reward(self, form: str, params: list[float]) -> list[float]:
        """A reward on the standardised targets in the original units (d2r::runs::reward_in_scale)."""
        return list(params) if self.mean is None else list(_core.reward_in_scale(form, list(params), self.scale))


def _standardize_flag(value: Any, classes: int, fn: str) -> bool:
    """standardize_targets=: None (the default) is on for regression; True for classification is an error."""
    if value is not None and not isinstance(value, bool):
        raise _core.ArgumentError(f"d2r.{fn}: argument 'standardize_targets': expected True or False, got {value!r}")
    if classes and value:
        raise _core.ArgumentError(f"d2r.{fn}: argument 'standardize_targets': only for regression targets "
                                  "(classification has labels, not targets)")
    return not classes and value is not False


def _int_arg(fn: str, name: str, value: Any, low: int) -> int:
    """An integer keyword (a bool, a float or a string is not one), at least `low`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _core.ArgumentError(f"d2r.{fn}: argument '{name}': expected an integer, got {value!r}")
    if value < low:
        raise _core.ArgumentError(f"d2r.{fn}: argument '{name}': expected an integer >= {low}, got {value}")
    return int(value)


def _hidden_arg(fn: str, options: dict) -> None:
    """The hidden= option, when given: positive integer layer widths."""
    if "hidden" in options:
        _numbers_arg(fn, "hidden", options["hidden"])
        if any(isinstance(h, float) or h < 1 for h in options["hidden"]):
            raise _core.ArgumentError(f"d2r.{fn}: argument 'hidden': expected positive integers, got {options['hidden']!r}")


def _numbers_arg(fn: str, name: str, value: Any) -> list[float]:
    """A sequence of real numbers (not a string, no bools)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise _core.ArgumentError(f"d2r.{fn}: argument '{name}': expected a sequence of numbers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise _core.ArgumentError(f"d2r.{fn}: argument '{name}': expected numbers, got {v!r}")
        out.append(float(v))
    return out


def _check_data(fn: str, X: Any, Y: Any, labels: Any, classes: int, val_X: Any, val_Y: Any, val_labels: Any) -> None:
    """The data keywords of a fit, before anything runs: the task's keywords present and the other
    task's absent, arrays of the right dimensions, the same row counts, X's float dtype throughout."""
    given = dict(X=X, Y=Y, labels=labels, val_X=val_X, val_Y=val_Y, val_labels=val_labels)
    wrong = ("Y", "val_Y") if classes else ("labels", "val_labels")
    for name in wrong:
        if given[name] is not None:
            raise _core.ArgumentError(
                f"d2r.{fn}: argument '{name}': not used by " +
                ("classification (classes=): pass labels= and val_labels=" if classes else
                 "regression: pass Y and val_Y (or classes= for classification)"))
    needed = ("X", "labels") if classes else ("X", "Y")
    for name in needed:
        if given[name] is None:
            raise _core.ArgumentError(f"d2r.{fn}: argument '{name}': " +
                                      ("classification needs labels (int32 class indices)" if classes else
                                       "regression needs targets (or labels= and classes= for classification)"))
    held = "val_labels" if classes else "val_Y"
    if (val_X is None) != (given[held] is None):
        missing = held if val_X is not None else "val_X"
        raise _core.ArgumentError(f"d2r.{fn}: argument '{missing}': val_X and {held} go together")
    dims = {"X": 2, "Y": 2, "labels": 1, "val_X": 2, "val_Y": 2, "val_labels": 1}
    for name, a in given.items():
        if a is None:
            continue
        _require_array(a, fn, name)
        if len(a.shape) != dims[name]:
            raise _core.ArgumentError(f"d2r.{fn}: argument '{name}': expected {dims[name]} dimensions "
                                      f"({'rows x columns' if dims[name] == 2 else 'one value a row'}), "
                                      f"got shape {tuple(int(d) for d in a.shape)}")
        if int(a.shape[0]) == 0:
            raise _core.ArgumentError(f"d2r.{fn}: argument '{name}': no rows")
    def dtype(a: Any) -> str:  # "float32" for NumPy, PyTorch ("torch.float32"), JAX and CuPy alike
        return str(a.dtype).removeprefix("torch.")

    for name in ("Y", "val_X", "val_Y"):
        a = given[name]
        if a is not None and dtype(a) != dtype(X):
            raise _core.ArgumentError(f"d2r.{fn}: argument '{name}': dtype {dtype(a)} differs from X's {dtype(X)}")
    for rows, other in (("X", "labels" if classes else "Y"), ("val_X", held)):
        a, b = given[rows], given[other]
        if a is not None and b is not None and int(a.shape[0]) != int(b.shape[0]):
            raise _core.ArgumentError(f"d2r.{fn}: argument '{other}': {int(b.shape[0])} rows, {rows} has "
                                      f"{int(a.shape[0])}")
    if given["val_X"] is not None and int(val_X.shape[1]) != int(X.shape[1]):
        raise _core.ArgumentError(f"d2r.{fn}: argument 'val_X': expected {int(X.shape[1])} columns (as X), got "
                                  f"{int(val_X.shape[1])}")
    if not classes and val_Y is not None and int(val_Y.shape[1]) != int(Y.shape[1]):
        raise _core.ArgumentError(f"d2r.{fn}: argument 'val_Y': expected {int(Y.shape[1])} columns (as Y), got "
                                  f"{int(val_Y.shape[1])}")


# The library's names of the data (d2r::RegressionData, the trainers' arguments) -> the keywords.
_DATA_KEYWORDS = {"train.x": "X", "train.y": "Y", "train.labels": "labels", "validation.x": "val_X",
                  "validation.y": "val_Y", "validation.labels": "val_labels", "x": "X", "y": "Y",
                  "labels": "labels", "val_x": "val_X", "val_y": "val_Y", "spec.outputs": "classes"}
_ARGUMENT = re.compile(r"argument '([A-Za-z_.]+)'")


def _keyword_error(e: _core.ArgumentError) -> Exception:
    """An ArgumentError of the extension with the library's data names replaced by the keywords."""
    text = _ARGUMENT.sub(lambda m: f"argument '{_DATA_KEYWORDS.get(m.group(1), m.group(1))}'", str(e))
    return e if text == str(e) else _core.ArgumentError(text)


def _all_finite(a: Any) -> bool:
    """Whether every value of an array (NumPy, PyTorch, CuPy, JAX) is finite."""
    mod = type(a).__module__.split(".")[0]
    if mod == "torch":
        import torch

        return bool(torch.isfinite(a).all())
    if mod == "cupy":
        import cupy

        return bool(cupy.isfinite(a).all())
    import numpy as np

    return bool(np.isfinite(np.asarray(a)).all())


class FitDivergedError(RuntimeError):
    """A fit ended with non-finite results (`d2r fit` exits 3): ``reason`` says which; ``result`` is
    the FitResult (records and parameters as they came out), kept for inspection."""

    def __init__(self, message: str, reason: str, result: Any = None):
        super().__init__(message)
        self.reason = reason
        self.result = result


@dataclasses.dataclass
class FitResult:
    """What a fit returns: the learned (bilevel) or fixed reward parameters (None for mse/nll), the
    policy's flat parameters (the network layout of d2r.Mlp), and the per-step records (dicts).
    Bilevel also: the verdict ('converged', 'step_limited'; a 'diverged' run raises
    BilevelDivergedError), its reason, and the run's warnings (also issued as BilevelWarning).

    Regression targets standardised (standardize_targets, the default, as `d2r fit`): the trainer
    saw (Y − target_mean) / target_scale; reward_params is the reward in the original units of the
    targets (U / target_scale² for the scalar and diagonal forms, R / target_scale for the full
    form), reward_params_standardized the reward on the standardised targets (the trainer's, as
    results.json's final.reward params and params_standardized); the records' metrics (train and
    validation nll_per_dim, rmse, mean_std) and outer_loss are in the original units, their
    reward_params and hypergradient on the standardised targets. Not standardised: target_mean is
    None, target_scale 1 and reward_params_standardized equals reward_params (None for
    classification)."""

    method: str
    reward_params: Optional[list[float]]
    policy_params: Any
    records: list[dict]
    verdict: Optional[str] = None
    reason: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)
    reward_params_standardized: Optional[list[float]] = None
    target_mean: Optional[list[float]] = None
    target_scale: float = 1.0
    pg_records: Optional[list[dict]] = None  # bilevel final_model='pg': the epochs of PG at the learned β


class BilevelWarning(UserWarning):
    """A diagnostic of a bilevel run (`d2r fit`'s warnings): the hypergradient at its clamp, solves
    that missed their tolerance, inner policies short of stationarity, the reward moved by the
    maximum step at every step, training and validation losses parting ways, a best-judged step
    that is the first."""


class BilevelDivergedError(FitDivergedError):
    """A bilevel run diverged (`d2r fit` exits 3): a non-finite hypergradient or outer loss, a
    reward parameter at its floor or ceiling, or a non-finite returned reward or policy. ``reason``
    says which; ``learner`` is the BilevelRewardLearner, whose trainer_ and history_ hold the run."""

    def __init__(self, message: str, reason: str, learner: Any):
        super().__init__(message, reason)
        self.learner = learner


_FLAG = re.compile(r"--([a-z][a-z-]*)(?: (best|last|fixed|warm|fresh))?")


def _python_words(message: str) -> str:
    """A `d2r fit` diagnostic in the words of the Python front end: --inner-max-steps is the keyword
    inner_max_steps=, --final-model last is final_model='last', results.json final.last_step the
    trainer's last reward."""
    message = message.replace("results.json final.last_step has the outer loop's final reward",
                              "trainer_.reward_params has the outer loop's final reward")
    return _FLAG.sub(lambda m: m.group(1).replace("-", "_") + ("='" + m.group(2) + "'" if m.group(2) else "="),
                     message)


def _progress_printer(enabled: Optional[bool], total: int, what: str) -> Optional[Callable[[dict], None]]:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None

    def show(r: dict) -> None:
        msg = f"\r{what} {r['step']}/{total}"
        if "reward_params" in r:
            phi = ", ".join(f"{v:.4g}" for v in r["reward_params"][:4])
            msg += f"  reward [{phi}{', …' if len(r['reward_params']) > 4 else ''}]"
        msg += f"  NLL/dim {r['train']['nll_per_dim']:.4f}"
        print(msg, end="", file=sys.stderr, flush=True)
        if r["step"] >= total:
            print(file=sys.stderr)

    return show


class BilevelRewardLearner:
    """Learns the reward r_U(ŷ, y) = −(ŷ−y)ᵀU(ŷ−y) of a policy by bilevel optimisation
    (d2r::BilevelTrainer). Regression: ``fit(X, Y)``; classification: ``fit(X, labels=..., classes=C)``.

    preset: 'recommended' (the default, as `d2r fit`: the outer loss on the validation rows, which
    fit() then needs, log-space Rprop with persistent state, a warm inner policy trained on the exact
    gradient until stationary, a damped solve to a relative residual of 0.25, and a stop at a
    verdict), 'stationary' (`d2r fit --preset stationary`: every outer step retrains the inner
    policy from one start to stationarity, an accurate solve: the outer loss is a function of the
    reward alone, at many more inner steps) or 'paper' (`d2r fit --preset paper --inner-start warm`:
    training rows, outer Adam re-created every step, one CG iteration, REINFORCE inner steps). The
    README's "Bilevel: outer loop, verdicts, sweep" says why and what each costs.

    Options (keywords, overriding the preset; the rest of the defaults are `d2r fit`'s, for
    regression or, with classes, for classification): hidden, activation, layer_norm,
    reward_form ('scalar', 'diagonal', 'full'), reward_init (default U = I, β = 1; regression: on
    the standardised targets when they are, as `d2r fit --u`), outer_steps (the budget;
    default `d2r fit`'s: 100 for regression, 50 for classification), inner_steps, inner_tolerance (stationarity: ‖∇θ L_in‖ relative to its untrained value),
    inner_max_steps, inner_lr, outer_lr (adam/sgd), outer_step (Rprop's Δ₀ in log space),
    flat_tolerance, window, reward_tolerance, loss_tolerance, patience (the verdict; patience: an early
    stop that many outer steps after the best-judged one, 0 off), entropy_weight (λ),
    generations (G), inner_start ('warm', 'fresh' or 'fixed'), outer_data ('validation' or
    'train'), outer_optimizer ('rprop', 'adam', 'sgd'), log_space, curvature ('exact' or
    'surrogate'), solver ('normal_cg', 'cg', 'neumann', 'cg_or_normal_cg'), solver_iterations,
    solver_tolerance, damping, inner_batch_size, inner_objective ('exact' or 'reinforce'), transform,
    head, hypergradient_clamp, inner_gradient_clamp, reward_floor, reward_ceiling, seed, device
    ('auto', 'cpu', 'cuda'), threads (cpu GEMM threads, default 1 as the CLI). An unknown option or
    value is an ArgumentError naming it.

    standardize_targets (regression; on by default, as `d2r fit --standardize-targets`): the
    trainer learns on copies of the targets Y ← (Y − mean) / s, with the column means and one scale
    s for every dimension (the RMS of the columns' standard deviations, divisor N − 1) of the
    training rows, applied to val_Y too (d2r::standardize_targets, bound: the same bits as `d2r
    fit` on the same values); the caller's arrays are only read and the copies stay in their
    framework and memory. Results come in the original units: ``reward_params_`` (U / s², R / s
    for the full form; ``reward_params_standardized_`` is the trainer's), the records' metrics and
    outer loss; the verdict and warnings are the trainer's, on the standardised targets. Constant
    targets (or fewer than 2 rows) are an ArgumentError naming 'Y' (pass standardize_targets=False,
    and targets of a sensible scale: raw targets far from 0 or with a std far from 1 can leave the
    NLL short of the mean, the policy gradient collapsing the std and the hypergradient at its
    clamp, without an error). True with classification is an ArgumentError.

    The run stops at a verdict (``verdict_``, ``reason_``; the FitResult has them too):
    'converged', or 'step_limited' when outer_steps ran out first (both return normally); a
    'diverged' run (non-finite hypergradient or outer loss, a reward at its floor or ceiling)
    raises BilevelDivergedError. ``warnings_`` has the run's diagnostics, each also issued as a
    BilevelWarning.

    Data parallel: ``group=`` a ``torch.distributed`` process group (Gloo on the cpu backend; NCCL or Gloo
    on cuda; or a d2r.TorchCommunicator): every rank passes the same data and options, each computes on its shard of the rows and
    the sums are all-reduced (d2r::BilevelTrainer::set_data_parallel); ``deterministic_reduction=True``
    (blocks of ``reduction_block_rows`` rows) gives the same bits for any number of ranks. Rank 0 alone
    writes the checkpoint and shows progress; every rank gets the same results.

    final_model: 'best' (the default of the recommended and stationary presets, as `d2r fit`) returns
    the inner policy of the best-judged step (lowest outer loss among steps with a stationary inner
    policy) and the reward it was trained at (the last step's when there is none); 'last' (the paper
    preset's default for regression) the last outer step's inner policy and reward; 'pg'
    (classification only; the paper preset's default there, as `d2r fit --final-model pg`, the
    paper's tabular protocol) trains PG afresh at the learned β (the paper preset: the mean of the
    last 10 outer steps' β; the others: the last step's) for ``epochs`` (30) of ``batch_size`` (128)
    rows with the inner steps' learning rate, G, λ and objective, and returns that policy; its
    per-epoch records are ``pg_records_`` (FitResult.pg_records). ``epochs`` and ``batch_size``
    are keywords of 'pg' only.

    After fit(): ``reward_params_`` (list, in the targets' original units),
    ``reward_params_standardized_`` (on the targets the trainer saw; classification: None),
    ``target_mean_`` (None: not standardised), ``target_scale_`` (1: not standardised),
    ``policy_params_`` (array in the data's framework for NumPy/PyTorch inputs: a NumPy copy),
    ``model_step_`` (the outer step whose policy that is; None for 'pg'), ``final_model_`` (the model
    returned: final_model or the preset's), ``options_`` (every setting the trainer ran with, defaults
    included), ``classes_``, ``n_features_in_``, ``n_targets_`` and ``dtype_`` (what d2r.sweep checks
    before judging the reward), ``best_step_``, ``history_`` (records:
    metrics and outer loss in the original units), ``verdict_``, ``reason_``, ``warnings_``,
    ``trainer_`` (the d2r.BilevelTrainer, on the standardised targets), ``communicator_`` (the
    d2r._core.Communicator of group=, with its payload ``stats``; else None).
    """

    _PRESETS = ("recommended", "stationary", "paper")
    # `d2r fit --method bilevel`'s settings outside the preset (regression: the MLP policy of the
    # paper's Fig. 3 setting; classification: the paper's tabular setting, logistic regression).
    _CLI_DEFAULTS = dict(hidden=[64, 64], inner_lr=0.01, outer_lr=0.01, entropy_weight=1.0, generations=5)
    _CLI_CLASS_DEFAULTS = dict(hidden=[], inner_lr=0.05, outer_lr=0.1, entropy_weight=1.0, generations=50)
    # preset='paper' is `d2r fit --preset paper --inner-start warm` (BilevelOptions::paper(): K_in = 50,
    # one CG iteration; the CLI's preset starts each outer step fresh, d2r::runs::apply_bilevel_preset).
    _CLI_PAPER = dict(inner_start="warm")

    def __init__(self, *, preset: str = "recommended", reward_form: str = "scalar",
                 reward_init: Optional[Sequence[float]] = None, outer_steps: Optional[int] = None, seed: int = 0,
                 device: str = "auto", threads: int = 1, group: Any = None, deterministic_reduction: bool = False,
                 reduction_block_rows: int = 256, final_model: Optional[str] = None,
                 standardize_targets: Optional[bool] = None, **options: Any):
        if preset not in self._PRESETS:
            raise _core.ArgumentError(f"d2r.BilevelRewardLearner: argument 'preset': expected 'recommended', "
                                      f"'stationary' or 'paper', got {preset!r}")
        if final_model not in (None, "best", "last", "pg"):  # None: the preset's, once the task is known (fit)
            raise _core.ArgumentError(f"d2r.BilevelRewardLearner: argument 'final_model': expected 'best', 'last' or "
                                      f"'pg', got {final_model!r}")
        _standardize_flag(standardize_targets, 0, "BilevelRewardLearner")
        fn = "BilevelRewardLearner"
        if options.get("head", "diagonal") != "diagonal":
            raise _core.ArgumentError(f"d2r.{fn}: argument 'head': the bilevel method trains a diagonal Gaussian "
                                      f"head only, got {options['head']!r}")
        self.preset = preset
        self.final_model = final_model
        self.reward_form = reward_form
        self.reward_init = None if reward_init is None else _numbers_arg(fn, "reward_init", reward_init)
        # None: `d2r fit`'s budget, 100 outer steps for regression and 50 for classification.
        self.outer_steps = None if outer_steps is None else _int_arg(fn, "outer_steps", outer_steps, 1)
        self.seed = _int_arg(fn, "seed", seed, 0)
        self.device = device
        self.threads = _int_arg(fn, "threads", threads, 1)
        self.group = group
        self.deterministic_reduction = bool(deterministic_reduction)
        self.reduction_block_rows = _int_arg(fn, "reduction_block_rows", reduction_block_rows, 1)
        self.standardize_targets = standardize_targets  # None: on for regression
        self.options = dict(options)  # the defaults (regression or classification) are added by fit()
        self.trainer_: Optional[_core.BilevelTrainer] = None

    def _initial_reward(self, dims: int) -> list[float]:
        if self.reward_init is not None:
            return self.reward_init
        if self.reward_form == "full":  # R = I packed row-major lower triangle
            return [1.0 if j == i else 0.0 for i in range(dims) for j in range(i + 1)]
        return [1.0] * _core.reward_param_count(self.reward_form, dims)

    # Keywords of the PG epochs of final_model='pg' (`d2r fit --epochs`, `--batch-size`), not of the trainer.
    _PG_KEYS = ("epochs", "batch_size")

    def _final_model(self, classes: int) -> str:
        """final_model, or the preset's (`d2r fit`'s): paper 'last' (classification 'pg'), else 'best'."""
        fm = self.final_model or ("best" if self.preset != "paper" else "pg" if classes else "last")
        if fm == "pg" and not classes:
            raise _core.ArgumentError("d2r.BilevelRewardLearner.fit: argument 'final_model': 'pg' retrains a "
                                      "classifier at the learned β (classification only); expected 'best' or 'last'")
        for key in self._PG_KEYS:
            if key in self.options and fm != "pg":
                raise _core.ArgumentError(f"d2r.BilevelRewardLearner.fit: argument '{key}': used by the PG epochs of "
                                          f"final_model='pg' only (final_model is {fm!r}); drop it")
        return fm

    def _options(self, classes: int, has_validation: bool) -> dict:
        defaults = dict(self._CLI_CLASS_DEFAULTS if classes else self._CLI_DEFAULTS)
        if self.preset == "paper":
            defaults.update(self._CLI_PAPER)  # the training rows for both tasks, as `d2r fit --preset paper`
        # _given: the user's keys; the CLI's defaults above (outer_lr under Rprop) are not refused as unused.
        mine = {k: v for k, v in self.options.items() if k not in self._PG_KEYS}
        opts = {**defaults, **mine, "seed": self.seed, "preset": self.preset, "_given": sorted(mine)}
        outer_data = opts.get("outer_data", "train" if self.preset == "paper" else "validation")
        if outer_data == "validation" and not has_validation:
            which = "val_labels" if classes else "val_Y"
            raise _core.ArgumentError(
                f"d2r.BilevelRewardLearner.fit: argument 'val_X': the outer loss of the {self.preset!r} preset is "
                f"measured on held-out rows: pass val_X and {which} (or outer_data='train', which over-fits: the "
                f"outer loss then keeps asking for a sharper reward)")
        return opts

    def fit(self, X: Any, Y: Any = None, *, labels: Any = None, classes: int = 0, val_X: Any = None,
            val_Y: Any = None, val_labels: Any = None, checkpoint: Optional[str | os.PathLike] = None,
            checkpoint_every: int = 0, resume: bool = False, overwrite: bool = False,
            progress: Optional[bool] = None) -> FitResult:
        """Runs outer steps until a verdict or outer_steps (continuing a checkpoint with resume=True);
        returns a FitResult. checkpoint: a file written every checkpoint_every outer steps and at the
        end (atomically); an existing one is continued with resume=True, replaced with
        overwrite=True, and otherwise refused. Every argument is checked before anything runs, and a
        refused call leaves the learner as it was. Raises BilevelDivergedError when the run diverged."""
        fn = "BilevelRewardLearner.fit"
        classes = _int_arg(fn, "classes", classes, 0)
        if classes == 1:
            raise _core.ArgumentError(f"d2r.{fn}: argument 'classes': expected 0 (regression) or at least 2, got 1")
        _check_data(fn, X, Y, labels, classes, val_X, val_Y, val_labels)
        checkpoint_every = _int_arg(fn, "checkpoint_every", checkpoint_every, 0)
        if checkpoint is None and (checkpoint_every > 0 or resume or overwrite):
            name = "checkpoint_every" if checkpoint_every > 0 else "resume" if resume else "overwrite"
            raise _core.ArgumentError(f"d2r.{fn}: argument '{name}': needs checkpoint= (the file)")
        if checkpoint is not None:
            path = os.fspath(checkpoint)
            folder = os.path.dirname(os.path.abspath(path))
            if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
                raise _core.ArgumentError(f"d2r.{fn}: argument 'checkpoint': '{path}' is not a file in a writable "
                                          "folder")
            if resume and not os.path.exists(path):
                raise _core.ArgumentError(f"d2r.{fn}: argument 'resume': no checkpoint '{path}' to resume from")
            if os.path.exists(path) and not (resume or overwrite):
                raise _core.ArgumentError(f"d2r.{fn}: argument 'checkpoint': '{path}' exists: resume=True continues "
                                          "it, overwrite=True replaces it")
        outer_steps = self.outer_steps if self.outer_steps is not None else 50 if classes else 100
        final_model = self._final_model(classes)
        opts = self._options(classes, val_X is not None)
        # epochs >= 1; batch_size 0 is every row (as `d2r fit --batch-size 0`)
        pg_keys = {k: _int_arg(fn, k, self.options[k], 1 if k == "epochs" else 0) for k in self._PG_KEYS
                   if k in self.options}
        ctx = _context(X, self.device, self.seed)
        scale_targets = _standardize_flag(self.standardize_targets, classes, fn)
        dims = classes if classes else int(Y.shape[1])
        communicator = _parallel(self.group, ctx, "d2r.BilevelRewardLearner")  # checked first
        _core.set_cpu_threads(self.threads)
        # d2r fit --standardize-targets: the trainer keeps (views of) these copies.
        scaling, Y, val_Y = _TargetScaling.of(ctx, fn, Y, val_Y, scale_targets)
        reward_init = self._initial_reward(dims)
        try:
            trainer = _core.BilevelTrainer(ctx, X, Y, labels=labels, classes=classes, val_x=val_X, val_y=val_Y,
                                           val_labels=val_labels, reward_form=self.reward_form,
                                           reward_init=reward_init, options=opts)
            if communicator is not None:
                trainer.set_data_parallel(communicator, deterministic_reduction=self.deterministic_reduction,
                                          reduction_block_rows=self.reduction_block_rows)
            if resume:
                trainer.load(os.fspath(checkpoint))
        except _core.ArgumentError as e:
            raise _keyword_error(e) from None
        # Everything checked: from here on the learner holds this run.
        self.trainer_, self.communicator_, self._ctx = trainer, communicator, ctx
        # The task the learner was fit on (d2r.sweep judges its reward only against the same).
        self.classes_, self.n_features_in_, self.n_targets_ = classes, int(X.shape[1]), 0 if classes else dims
        self.options_ = {k: v for k, v in opts.items() if k != "_given"}  # the settings it ran with, defaults included
        self.dtype_ = str(X.dtype).removeprefix("torch.")
        self.final_model_ = final_model  # the preset's when final_model is None
        self.target_mean_, self.target_scale_ = scaling.mean, scaling.scale
        writer = self.communicator_ is None or self.communicator_.rank == 0
        show = _progress_printer(progress, outer_steps, "outer step") if writer else None
        if not writer:
            checkpoint = None  # rank 0 alone writes
        # As `d2r fit`: step until a verdict (converged, diverged) or the budget, then judge.
        status, reason = self.trainer_.verdict(False)
        while self.trainer_.steps_done < outer_steps and status == "running":
            r = self.trainer_.step()
            status, reason = self.trainer_.verdict(self.trainer_.steps_done == outer_steps)
            if show:
                show(scaling.record(r))
            if checkpoint is not None and checkpoint_every > 0 and r["step"] % checkpoint_every == 0:
                self.trainer_.save(os.fspath(checkpoint))
        if status == "running":
            status, reason = self.trainer_.verdict(True)
        if checkpoint is not None:
            self.trainer_.save(os.fspath(checkpoint))
        self.history_ = [scaling.record(r) for r in self.trainer_.history]
        self.verdict_, self.reason_ = status, reason
        # final_model='best': the best-judged step's policy and the reward it was trained at (the last
        # step's when no step had a stationary inner policy, as `d2r fit --final-model best`).
        self.best_step_ = self.trainer_.best_step
        self.pg_records_ = None
        if final_model == "pg":
            # As `d2r fit --final-model pg`: the paper preset's β oscillates about its fixed point
            # (the mean of the last 10 steps'); the others stopped where β settled (the last).
            history = self.trainer_.history
            tail = min(10, len(history)) if self.preset == "paper" else 1
            beta = 0.0
            for r in history[len(history) - tail:]:
                beta += r["reward_params"][0]
            reward = [beta / tail]
            self.model_step_ = None
            self.policy_params_ = self.trainer_.policy_params()  # until the epochs have run
        elif final_model == "best" and self.best_step_ > 0:
            self.model_step_ = self.best_step_
            reward = list(self.trainer_.best_reward_params)
            self.policy_params_ = self.trainer_.best_policy_params()
        else:
            self.model_step_ = self.trainer_.steps_done
            reward = list(self.trainer_.reward_params)
            self.policy_params_ = self.trainer_.policy_params()
        self.reward_params_standardized_ = None if classes else reward
        self.reward_params_ = scaling.reward(self.reward_form, reward)
        self.warnings_ = [_python_words(w) for w in self.trainer_.warnings(final_model, reward_init)]
        if status != "diverged" and not all(math.isfinite(v) for v in reward):
            status, reason = self.verdict_, self.reason_ = "diverged", "the reward returned is not finite"
        if status != "diverged" and final_model == "pg":
            self.policy_params_, self.pg_records_ = self._pg_epochs(X, labels, classes, val_X, val_labels, opts,
                                                                    pg_keys, reward, progress, writer)
            last = self.pg_records_[-1] if self.pg_records_ else {}
            parts = ["train"] + (["validation"] if val_X is not None and "validation" in last else [])
            bad = [f"{p} {k}" for p in parts for k in ("nll_per_dim", "accuracy")
                   if not math.isfinite((last.get(p) or {}).get(k, 0.0))]
            if bad:
                status, reason = self.verdict_, self.reason_ = "diverged", ("non-finite final figures of the PG "
                                                                            "epochs at the learned β: " + ", ".join(bad))
        if status != "diverged" and not _all_finite(self.policy_params_):
            status, reason = self.verdict_, self.reason_ = "diverged", "the policy returned has non-finite parameters"
        if writer:
            for w in self.warnings_:
                warnings.warn(w, BilevelWarning, stacklevel=2)
        if status == "diverged":
            raise BilevelDivergedError(f"d2r.BilevelRewardLearner.fit: the bilevel run diverged: {reason}", reason,
                                       self)
        return FitResult("bilevel", self.reward_params_, self.policy_params_, self.history_, status, reason,
                         list(self.warnings_), self.reward_params_standardized_, self.target_mean_,
                         self.target_scale_, self.pg_records_)

    def _pg_epochs(self, X: Any, labels: Any, classes: int, val_X: Any, val_labels: Any, opts: dict, pg_keys: dict,
                   reward: list[float], progress: Optional[bool], writer: bool) -> tuple[Any, list[dict]]:
        """final_model='pg': `d2r fit --final-model pg`'s epochs (d2r::runs fit_options of the
        configuration): PG from a fresh policy at β = reward[0], with the inner steps' learning
        rate, G, λ, objective and network, the run's seed."""
        options = dict(loss="pg", reward_form="scalar", reward_params=list(reward), seed=self.seed,
                       lr=opts["inner_lr"], generations=opts["generations"], entropy_weight=opts["entropy_weight"],
                       objective=self.trainer_.inner_objective, hidden=list(opts["hidden"]), **pg_keys)
        for key in ("activation", "layer_norm", "transform"):
            if key in opts:
                options[key] = opts[key]
        n = _core.parameter_count(int(X.shape[1]), options["hidden"], classes, bool(options.get("layer_norm", False)))
        params = _empty_like(X, n, X)
        show = _progress_printer(progress, int(options.get("epochs", 30)), "PG epoch") if writer else None
        c = self.communicator_
        records = _core.fit_classifier(self._ctx, X, labels, classes, params, val_x=val_X, val_labels=val_labels,
                                       options=options, on_record=show, communicator=c,
                                       deterministic_reduction=self.deterministic_reduction,
                                       reduction_block_rows=self.reduction_block_rows)
        return params, records


def fit(X: Any, Y: Any = None, *, method: str = "nll", labels: Any = None, classes: int = 0, val_X: Any = None,
        val_Y: Any = None, val_labels: Any = None, seed: int = 0, device: str = "auto", threads: int = 1,
        progress: Optional[bool] = None, group: Any = None, deterministic_reduction: bool = False,
        reduction_block_rows: int = 256, standardize_targets: Optional[bool] = None, **options: Any) -> FitResult:
    """Trains a policy on arrays, as `d2r fit` does on a CSV file.

    Regression (X: N x p, Y: N x n float arrays): method 'mse', 'nll', 'pg' (a fixed reward:
    reward_form=, reward_params=) or 'bilevel' (the reward learned: see BilevelRewardLearner).
    Classification (labels: N int32 class indices, classes=C): 'nll' (cross-entropy) or 'pg', by
    minibatch Adam (epochs=, batch_size=), or 'bilevel'. Options are the trainers' (steps, lr,
    hidden, activation, head, generations, entropy_weight, evaluate_every, ...); unknown ones are an
    error naming them. Returns a FitResult; the policy parameters are allocated in X's framework.
    standardize_targets (regression; on by default, as `d2r fit`): the policy is trained on copies
    of the targets standardised with the training rows' column means and one scale s (see
    BilevelRewardLearner), val_Y with the same; reward_params (pg: given on the standardised
    targets, as `d2r fit --u`) come back in the original units too, and the records' metrics are
    in the original units (FitResult). Constant targets are an ArgumentError naming 'Y'.
    Data parallel: group= a torch.distributed process group, deterministic_reduction=,
    reduction_block_rows= (see BilevelRewardLearner); rank 0 alone shows progress.

    Every argument is checked before anything runs (an ArgumentError names the keyword): the
    task's data keywords (X, Y, val_X with val_Y; or labels, val_labels with classes) and no
    others, their dimensions, rows and dtype (X's), integers that are integers, and no option the
    method does not use (as `d2r fit`: reward_form, reward_params, entropy_weight, generations and
    transform are pg's and bilevel's). A fit whose final figures (the training metrics, and the
    held-out ones when given) or policy parameters are not finite raises FitDivergedError (`d2r
    fit` exits 3), which keeps the FitResult in ``.result``.
    """
    if method == "bilevel":
        learner = BilevelRewardLearner(seed=seed, device=device, threads=threads, group=group,
                                       deterministic_reduction=deterministic_reduction,
                                       reduction_block_rows=reduction_block_rows,
                                       standardize_targets=standardize_targets, **options)
        return learner.fit(X, Y, labels=labels, classes=classes, val_X=val_X, val_Y=val_Y, val_labels=val_labels,
                           progress=progress)
    if method not in ("mse", "nll", "pg"):
        raise _core.ArgumentError(f"d2r.fit: argument 'method': expected 'mse', 'nll', 'pg' or 'bilevel', got '{method}'")
    classes = _int_arg("fit", "classes", classes, 0)
    if classes == 1:
        raise _core.ArgumentError("d2r.fit: argument 'classes': expected 0 (regression) or at least 2, got 1")
    _check_data("fit", X, Y, labels, classes, val_X, val_Y, val_labels)
    seed = _int_arg("fit", "seed", seed, 0)
    threads = _int_arg("fit", "threads", threads, 1)
    if method != "pg":  # as `d2r fit`: an option the method does not use is refused, not ignored
        for key in ("reward_form", "reward_params", "entropy_weight", "generations", "transform", "objective"):
            if key in options:
                raise _core.ArgumentError(f"d2r.fit: argument '{key}': not used by method='{method}' (an option of "
                                          "method='pg' and 'bilevel'); drop it")
    if options.get("objective") == "exact":  # the exact expectation draws nothing
        for key in ("generations", "transform"):
            if key in options:
                raise _core.ArgumentError(f"d2r.fit: argument '{key}': not used with objective='exact' (nothing is "
                                          "sampled); drop it")
    _hidden_arg("fit", options)
    scale_targets = _standardize_flag(standardize_targets, classes, "fit")
    ctx = _context(X, device, seed)
    comm = _parallel(group, ctx, "d2r.fit")
    _core.set_cpu_threads(threads)
    par = dict(communicator=comm, deterministic_reduction=bool(deterministic_reduction),
               reduction_block_rows=int(reduction_block_rows))
    if comm is not None and comm.rank != 0:
        progress = False
    options = dict(options, loss=method, seed=seed)
    try:
        if classes:
            hidden = list(options.get("hidden", []))
            n = _core.parameter_count(int(X.shape[1]), hidden, classes, bool(options.get("layer_norm", False)))
            params = _empty_like(X, n, X)
            show = _progress_printer(progress, int(options.get("epochs", 30)), "epoch")
            records = _core.fit_classifier(ctx, X, labels, classes, params, val_x=val_X, val_labels=val_labels,
                                           options=options, on_record=show, **par)
            reward = list(options.get("reward_params", [1.0])) if method == "pg" else None
            result = FitResult(method, reward, params, records)
        else:
            for k, v in dict(hidden=[64, 64], evaluate_every=1, lr=0.01, steps=400).items():  # the CLI's defaults
                options.setdefault(k, v)
            scaling, Y, val_Y = _TargetScaling.of(ctx, "fit", Y, val_Y, scale_targets)
            dims = int(Y.shape[1])
            outputs = 2 * dims if options.get("head", "diagonal") == "diagonal" else dims + dims * (dims + 1) // 2
            n = _core.parameter_count(int(X.shape[1]), list(options["hidden"]), outputs,
                                      bool(options.get("layer_norm", False)))
            params = _empty_like(X, n, X)
            show = _progress_printer(progress, int(options["steps"]), "step")
            records = _core.fit_policy(ctx, X, Y, params, val_x=val_X, val_y=val_Y, options=options,
                                       on_record=None if show is None else (lambda r: show(scaling.record(r))), **par)
            records = [scaling.record(r) for r in records]
            reward = list(options.get("reward_params", [1.0])) if method == "pg" else None
            original = None if reward is None else scaling.reward(str(options.get("reward_form", "scalar")), reward)
            result = FitResult(method, original, params, records, reward_params_standardized=reward,
                               target_mean=scaling.mean, target_scale=scaling.scale)
    except _core.ArgumentError as e:
        raise _keyword_error(e) from None
    # As `d2r fit` (exit 3): a run whose final figures are not finite does not end as a success.
    last = result.records[-1] if result.records else {}
    held_out = [part for part in ("validation", "test") if part in last] if val_X is not None else []
    figures = ("nll_per_dim", "accuracy") if classes else ("nll_per_dim", "rmse", "mean_std")  # the others are NaN
    bad = [f"{part} {k}" for part in ["train"] + held_out for k in figures
           if not math.isfinite((last.get(part) or {}).get(k, 0.0))]
    if not _all_finite(result.policy_params):
        bad.insert(0, "the policy's parameters")
    if bad:
        reason = "non-finite final figures: " + ", ".join(bad)
        raise FitDivergedError(f"d2r.fit: the {method} fit diverged ({reason}); the FitResult is in .result", reason,
                               result)
    return result
