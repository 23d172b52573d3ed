"""d2r.sweep: policy gradient at a grid of fixed rewards on arrays (`d2r sweep` without files), the
brute-force answer a bilevel fit must match (DESIGN.md §7), and whether learned rewards match it."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import warnings
from typing import Any, Optional, Sequence

from . import _core
from ._learn import (_CUDA, BilevelRewardLearner, FitDivergedError, _check_data, _device_of, _hidden_arg, _int_arg,
                     _keyword_error, _numbers_arg, _standardize_flag, _TargetScaling)


class SweepWarning(UserWarning):
    """Grid values of a d2r.sweep whose learner diverged (non-finite validation loss): the best is
    among the others (`d2r sweep` prints the same warning)."""


@dataclasses.dataclass
class SweepJudgement:
    """A learned reward run with a sweep's learner and seeds: ``point`` (its losses, mean and sd), whether
    its mean is ``within`` the ``tolerance`` of the group's best grid value, the bilevel run's own
    ``outer_loss`` (its returned model's) and whether that is within too (``returned_within``), its
    ``inner_steps`` (up to the returned policy) and their ``share`` of the group's inner steps."""

    learner: Any
    value: float
    point: dict
    within: bool
    best_value: float
    best_loss: float
    tolerance: float
    outer_loss: float
    returned_within: bool
    inner_steps: int
    share: float


@dataclasses.dataclass
class SweepGroup:
    """One grid at one learner budget (d2r::runs::SweepResult): ``grid`` (points: value, the runs'
    validation_loss, train_loss, validation_accuracy and steps, their mean and sd), the ``best`` index,
    ``noise`` (median sd over seeds), ``tolerance`` (2 · noise · sqrt(2 / seeds)), the compute, and
    the learned rewards judged with it."""

    budget: Any  # 0: the pg protocol; n: n full-batch exact-gradient steps; "stationary": to the tolerance
    grid: list[dict]
    best: int
    noise: float
    tolerance: float
    seeds: int
    steps_per_run: int
    rows_per_step: int
    inner_steps: int
    judged: list[SweepJudgement]

    @property
    def best_value(self) -> float:
        return self.grid[self.best]["value"]

    @property
    def best_loss(self) -> float:
        return self.grid[self.best]["mean"]


@dataclasses.dataclass
class SweepResult:
    """What d2r.sweep returns: ``groups`` (one per learner budget: one unless the judged bilevel runs'
    step counts differ) and, from the first, ``grid``, ``best_value``, ``best_loss``, ``noise`` and
    ``tolerance``; ``judged`` the learned rewards of every group. Rewards are u of U = u·I on the
    standardised targets (regression; ``target_scale`` converts: u / s² in the original units) or β;
    losses are validation NLL per dimension in the original units or cross-entropy."""

    learner: str
    groups: list[SweepGroup]
    target_scale: float = 1.0
    warnings: list[str] = dataclasses.field(default_factory=list)  # grid values whose learner diverged

    @property
    def grid(self) -> list[dict]:
        return self.groups[0].grid

    @property
    def best_value(self) -> float:
        return self.groups[0].best_value

    @property
    def best_loss(self) -> float:
        return self.groups[0].best_loss

    @property
    def noise(self) -> float:
        return self.groups[0].noise

    @property
    def tolerance(self) -> float:
        return self.groups[0].tolerance

    @property
    def judged(self) -> list[SweepJudgement]:
        return [j for g in self.groups for j in g.judged]


# The library's names of the sweep's settings and configuration (d2r::runs::check) -> the keywords.
_SWEEP_KEYWORDS = {"settings.values": "values", "settings.seeds": "seeds", "settings.judged": "judge",
                   "config.plain.steps": "steps", "config.plain.epochs": "steps", "config.plain.batch_size": "batch_size",
                   "config.plain.adam.learning_rate": "lr", "config.learning_rate": "lr",
                   "config.bilevel.inner.adam.learning_rate": "lr", "config.lambda": "entropy_weight",
                   "config.generations": "generations", "config.hidden": "hidden", "config.double_precision": "X",
                   "config.target_scale": "Y", "train": "X", "held_out": "val_X", "test": "val_X",
                   "validation": "val_X", "backend": "device"}
_LIBRARY_ARGUMENT = re.compile(r"^d2r::(?:\w+::)*\w+: argument '([A-Za-z_.]+)'")


def _sweep_error(e: _core.ArgumentError, learner: str) -> Exception:
    """An ArgumentError of d2r::runs::sweep in d2r.sweep's words (its keywords; epochs are steps=
    only for learner='bilevel', whose budget the library counts in epochs of every row)."""
    names = dict(_SWEEP_KEYWORDS, **({} if learner == "bilevel" else {"config.plain.epochs": "epochs"}))
    text = _LIBRARY_ARGUMENT.sub(lambda m: f"d2r.sweep: argument '{names.get(m.group(1), m.group(1))}'", str(e))
    return _keyword_error(_core.ArgumentError(text)) if text != str(e) else _keyword_error(e)


def _host64(a: Any) -> Any:
    """A contiguous float64 (int32 for labels) NumPy copy of an array of any framework, on the host."""
    import numpy as np

    mod = type(a).__module__.split(".")[0]
    if mod == "torch":
        a = a.detach().cpu().numpy()
    elif mod == "cupy":
        a = a.get()
    a = np.asarray(a)
    return np.ascontiguousarray(a, dtype=np.int32 if a.dtype.kind in "iu" else np.float64)


def _returned_step(learner: BilevelRewardLearner) -> int:
    """The outer step whose policy the learner returned (the last for final_model='pg')."""
    return learner.model_step_ if learner.model_step_ is not None else learner.trainer_.steps_done


def _learned_reward(learner: BilevelRewardLearner, classes: int) -> list[float]:
    """The reward a sweep judges: on the targets the trainer saw (regression), or β."""
    return learner.reward_params_ if classes else learner.reward_params_standardized_


def _budget(fn: str, k: int, learner: BilevelRewardLearner) -> Any:
    """The learner='bilevel' budget that judges a fitted learner's reward (as `d2r sweep --learner
    bilevel --bilevel DIR`): the stationary learner of a fixed start trained to a tolerance, K_in for
    a fixed start with a fixed budget, else the inner steps of every outer step up to the returned
    policy's (all of them for final_model='pg')."""
    s = learner.trainer_.inner_settings
    if s["inner_start"] == "fixed":
        if s["inner_tolerance"] > 0:
            return ("stationary", s["inner_tolerance"], s["inner_max_steps"], s["inner_steps"])
        return s["inner_steps"]
    n = sum(r["inner_steps"] for r in learner.history_[:_returned_step(learner)])
    if n < 1:
        raise _core.ArgumentError(f"d2r.{fn}: argument 'judge': learner {k} took no inner steps; give steps=")
    return n


def sweep(X: Any, Y: Any = None, *, labels: Any = None, classes: int = 0, val_X: Any = None, val_Y: Any = None,
          val_labels: Any = None, values: Optional[Sequence[float]] = None, grid_min: Optional[float] = None,
          grid_max: Optional[float] = None, points: Optional[int] = None, seeds: int = 2, seed: int = 0, learner: str = "pg",
          judge: Sequence[BilevelRewardLearner] = (), steps: Optional[int] = None, device: str = "auto",
          threads: int = 1, progress: Optional[bool] = None,
          standardize_targets: Optional[bool] = None, **options: Any) -> SweepResult:
    """Trains at every reward of a log-spaced grid (``grid_min``, ``grid_max``, ``points``, or
    ``values``), ``seeds`` seeds each (seed, seed + 1, ...), and reports the validation loss per
    reward, the best one, the seed noise and the tolerance (d2r::runs::sweep, as `d2r sweep` on the
    same rows, options and seed). Regression: X, Y, val_X, val_Y (u of U = u·I on the targets
    standardised with the training rows, as d2r.fit, unless standardize_targets=False);
    classification: labels, val_labels, classes (β).

    learner='pg' (default): `d2r fit --method pg`'s protocol (regression: ``steps`` (400) full-batch
    Adam steps of ``lr`` (0.01); classification: ``epochs`` (30) of ``batch_size`` (128) rows, lr 0.05;
    REINFORCE with ``generations`` samples unless ``objective='exact'``). learner='bilevel': the
    bilevel inner learner (the exact gradient, full batch, a fresh start) for ``steps``, or for each
    judged learner as many steps as its returned policy took (one grid per distinct count), or the
    stationary learner of a preset='stationary' fit. Options: hidden, activation, entropy_weight,
    generations, lr, steps, epochs, batch_size, objective; an unknown one is an ArgumentError naming it.

    judge: fitted d2r.BilevelRewardLearner runs (scalar reward) on the same data: each learned reward
    is run like a grid value and judged within or not within the tolerance of its group's best
    (``SweepResult.judged``). progress: a line per run on stderr (default: when stderr is a TTY).
    """
    fn = "sweep"
    classes = _int_arg(fn, "classes", classes, 0)
    if classes == 1:
        raise _core.ArgumentError("d2r.sweep: argument 'classes': expected 0 (regression) or at least 2, got 1")
    _check_data(fn, X, Y, labels, classes, val_X, val_Y, val_labels)
    if val_X is None:
        raise _core.ArgumentError("d2r.sweep: argument 'val_X': the sweep measures the validation loss: pass val_X "
                                  f"and {'val_labels' if classes else 'val_Y'}")
    seeds = _int_arg(fn, "seeds", seeds, 1)
    seed = _int_arg(fn, "seed", seed, 0)
    threads = _int_arg(fn, "threads", threads, 1)
    if learner not in ("pg", "bilevel"):
        raise _core.ArgumentError(f"d2r.sweep: argument 'learner': expected 'pg' or 'bilevel', got {learner!r}")
    if values is not None:
        for name, v in (("grid_min", grid_min), ("grid_max", grid_max), ("points", points)):
            if v is not None:
                raise _core.ArgumentError(f"d2r.sweep: argument '{name}': not used with values= (the grid is "
                                          "the values given); drop one")
    if values is None:
        grid_min = 0.1 if grid_min is None else grid_min  # `d2r sweep`'s grid: 0.1 to 100, 13 values
        grid_max = 100.0 if grid_max is None else grid_max
        points = 13 if points is None else points
        for name, v in (("grid_min", grid_min), ("grid_max", grid_max)):
            _numbers_arg(fn, name, [v])
            if not (math.isfinite(v) and v > 0):
                raise _core.ArgumentError(f"d2r.sweep: argument '{name}': expected a finite reward > 0, got {v}")
        if not grid_max > grid_min:
            raise _core.ArgumentError(f"d2r.sweep: argument 'grid_max': expected > grid_min {grid_min}, got {grid_max}")
        grid = list(_core.log_grid(float(grid_min), float(grid_max), _int_arg(fn, "points", points, 2)))
    else:
        grid = _numbers_arg(fn, "values", values)
    if device not in ("auto", "cpu", "cuda"):
        raise _core.ArgumentError(f"d2r.sweep: argument 'device': expected 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":  # as d2r.fit: where the data is
        device = "cuda" if _device_of(X)[0] == _CUDA else "cpu"
    # The arrays as they are given: float32 or float64 features, int32 labels (d2r never converts them).
    for name, a in (("X", X), ("labels", labels), ("val_labels", val_labels)):
        want = ("int32",) if name != "X" else ("float32", "float64")
        if a is not None and str(a.dtype).removeprefix("torch.") not in want:
            raise _core.ArgumentError(f"d2r.sweep: argument '{name}': expected dtype {' or '.join(want)}, got "
                                      f"{str(a.dtype).removeprefix('torch.')} (d2r never converts)")
    options = dict(options)
    _hidden_arg(fn, options)
    for key in ("inner_tolerance", "inner_max_steps", "inner_steps"):  # the judged stationary runs' own
        if key in options:
            raise _core.ArgumentError(f"d2r.sweep: argument '{key}': unknown option (the stationary learner takes "
                                      "it from the judged run)")
    if learner == "bilevel":
        if options.get("objective", "exact") != "exact":
            raise _core.ArgumentError("d2r.sweep: argument 'objective': learner='bilevel' trains on the exact "
                                      "gradient (the bilevel presets' inner learner); use learner='pg' for REINFORCE")
        for key in ("epochs", "batch_size", "steps"):
            if key in options:
                raise _core.ArgumentError(f"d2r.sweep: argument '{key}': learner='bilevel' trains full batch for "
                                          "steps= (or the judged runs' inner steps)")
        options["objective"] = "exact"
    elif steps is not None:
        options["steps"] = steps  # pg: fit's --steps
    if options.get("objective") == "exact" and "generations" in options:  # the exact expectation draws nothing
        raise _core.ArgumentError("d2r.sweep: argument 'generations': not used by the exact gradient "
                                  f"({'learner=' + repr(learner) if learner == 'bilevel' else 'objective=' + repr('exact')}: "
                                  "nothing is sampled); drop it")
    scale_targets = _standardize_flag(standardize_targets, classes, fn)
    if isinstance(judge, BilevelRewardLearner) or not hasattr(judge, "__iter__"):
        raise _core.ArgumentError(f"d2r.sweep: argument 'judge': expected a list of fitted d2r.BilevelRewardLearner, "
                                  f"got {type(judge).__name__}")
    judge = list(judge)
    if judge and seeds < 2:  # the tolerance is 2 · noise · sqrt(2 / seeds): one seed has no noise
        raise _core.ArgumentError("d2r.sweep: argument 'seeds': judging a learned reward needs the seed noise: "
                                  "expected 2 or more")
    task = f"{classes} classes" if classes else f"{int(Y.shape[1])} targets"
    for k, j in enumerate(judge):
        if not isinstance(j, BilevelRewardLearner) or getattr(j, "trainer_", None) is None:
            raise _core.ArgumentError(f"d2r.sweep: argument 'judge': entry {k} is not a fitted "
                                      "d2r.BilevelRewardLearner")
        mine = f"{j.classes_} classes" if j.classes_ else f"{j.n_targets_} targets"
        if mine != task or j.n_features_in_ != int(X.shape[1]):
            raise _core.ArgumentError(f"d2r.sweep: argument 'judge': entry {k} was fit on {j.n_features_in_} features "
                                      f"and {mine}; this sweep has {int(X.shape[1])} features and {task}")
        if j.reward_form != "scalar":
            raise _core.ArgumentError(f"d2r.sweep: argument 'judge': entry {k} learned a {j.reward_form} reward; the "
                                      "sweep's rewards are scalar (U = u·I, or β)")
        reward = _learned_reward(j, classes)
        if len(reward) != 1 or not (math.isfinite(reward[0]) and reward[0] > 0):
            raise _core.ArgumentError(f"d2r.sweep: argument 'judge': entry {k} has the reward {list(reward)}; "
                                      "expected one scalar reward > 0")
    # The policy and objective the judged rewards were learned for: the same network, λ and precision
    # (and for learner='bilevel' the exact, full-batch inner learner); another would judge another learner.
    mine = dict(hidden=list(options.get("hidden", [] if classes else [64, 64])),
                activation=options.get("activation", "relu"), entropy_weight=float(options.get("entropy_weight", 1.0)))
    for k, j in enumerate(judge):
        theirs = dict(hidden=list(j.options_.get("hidden", [])), activation=j.options_.get("activation", "relu"),
                      entropy_weight=float(j.options_.get("entropy_weight", 1.0)))
        for key in mine:
            if mine[key] != theirs[key]:
                raise _core.ArgumentError(f"d2r.sweep: argument '{key}': judge entry {k} learned its reward for "
                                          f"{key}={theirs[key]!r}, this sweep trains {mine[key]!r}: give {key}="
                                          f"{theirs[key]!r}")
        if j.dtype_ != str(X.dtype).removeprefix("torch."):
            raise _core.ArgumentError(f"d2r.sweep: argument 'X': judge entry {k} was fit on {j.dtype_} arrays, X is "
                                      f"{str(X.dtype).removeprefix('torch.')}")
        if learner == "bilevel" and (j.options_.get("inner_batch_size", 0) or j.trainer_.inner_objective != "exact"):
            raise _core.ArgumentError(f"d2r.sweep: argument 'judge': entry {k} trained its inner policy on "
                                      f"{'minibatches' if j.options_.get('inner_batch_size', 0) else 'REINFORCE samples'}; "
                                      "learner='bilevel' is the exact-gradient, full-batch learner (use learner='pg')")
    if learner == "bilevel" and judge:  # the inner learner's rate is the judged runs' (fit's --lr)
        rates = {j.trainer_.inner_settings["inner_lr"] for j in judge}
        if "lr" not in options and len(rates) == 1:
            options["lr"] = rates.pop()
        elif any(abs(r - float(options.get("lr", math.nan))) > 1e-7 * r for r in rates):
            raise _core.ArgumentError(f"d2r.sweep: argument 'lr': the judged runs' inner learning rates are "
                                      f"{sorted(rates)}; learner='bilevel' trains at theirs (give that lr=, or sweep "
                                      "them separately)")
    # One grid per learner budget (learner='bilevel' without steps=: each judged run's own).
    budgets: list[Any] = []
    budget_of: list[int] = []
    for k, j in enumerate(judge):
        b = _budget(fn, k, j) if learner == "bilevel" and steps is None else None
        if b not in budgets:
            budgets.append(b)
        budget_of.append(budgets.index(b))
    if not budgets:
        budgets = [None]
    stationary = [b for b in budgets if isinstance(b, tuple)]
    if len(stationary) > 1:
        raise _core.ArgumentError("d2r.sweep: argument 'judge': the stationary runs were trained with different "
                                  "tolerances, caps or K_in; sweep them separately")
    if learner == "bilevel" and steps is not None:
        budgets = [_int_arg(fn, "steps", steps, 1)]
        budget_of = [0] * len(judge)
    if learner == "bilevel" and budgets == [None]:
        raise _core.ArgumentError("d2r.sweep: argument 'steps': learner='bilevel' needs steps= or judged runs")

    ctx = _core.Context("cpu", seed=seed)  # the target scaling on host copies (the runs have their own contexts)
    x64, vx64 = _host64(X), _host64(val_X)
    double = str(X.dtype).removeprefix("torch.") == "float64"
    scaling = _TargetScaling()
    y64 = vy64 = l32 = vl32 = None
    if classes:
        l32, vl32 = _host64(labels), _host64(val_labels)
        for name, a in (("labels", l32), ("val_labels", vl32)):
            if a.min() < 0 or a.max() >= classes:
                raise _core.ArgumentError(f"d2r.sweep: argument '{name}': labels in [0, {classes}) expected, got "
                                          f"{int(a.min())}..{int(a.max())}")
        if len(set(l32.tolist())) < 2:
            raise _core.ArgumentError("d2r.sweep: argument 'labels': every training row has the same class")
    else:
        y, vy = _host64(Y), _host64(val_Y)
        scaling, y, vy = _TargetScaling.of(ctx, fn, y, vy, scale_targets)
        y64, vy64 = y, vy
    for k, j in enumerate(judge):
        if not classes and abs(j.target_scale_ - scaling.scale) > 1e-12 * scaling.scale:
            raise _core.ArgumentError(f"d2r.sweep: argument 'judge': entry {k} was trained on targets scaled by "
                                      f"{j.target_scale_}, the sweep's by {scaling.scale} (the same data and "
                                      "standardize_targets, please)")
    _core.set_cpu_threads(threads)
    if progress is None:
        progress = sys.stderr.isatty()
    total = sum(len(grid) + sum(1 for k in range(len(judge)) if budget_of[k] == g) for g in range(len(budgets)))
    done = [0]

    def show(value: float, k: int, loss: float) -> None:
        done[0] += 1
        print(f"\rsweep run {done[0]}/{total * seeds}: {'β' if classes else 'u'} = {value:.4g}, seed {seed + k}: "
              f"validation loss {loss:.4f}", end="\n" if done[0] == total * seeds else "", file=sys.stderr,
              flush=True)

    groups = []
    for g, b in enumerate(budgets):
        mine = [k for k in range(len(judge)) if budget_of[k] == g]
        judged_values = [_learned_reward(judge[k], classes)[0] for k in mine]
        judged_losses = [judge[k].history_[_returned_step(judge[k]) - 1]["outer_loss"] for k in mine]
        opts = dict(options)
        if isinstance(b, tuple):
            _, tol, cap, k_in = b
            opts.update(inner_tolerance=tol, inner_max_steps=cap, inner_steps=k_in)
        budget = b if isinstance(b, int) else 0
        try:
            r = _core.sweep(x64, y64, l32, classes, vx64, vy64, vl32, values=grid, judged=judged_values, seeds=seeds,
                            seed=seed, budget=budget, stationary=isinstance(b, tuple), double_precision=double,
                            device=device, target_scale=scaling.scale, options=opts, on_run=show if progress else None,
                            judged_losses=judged_losses)
        except _core.ArgumentError as e:
            raise _sweep_error(e, learner) from None
        best = r["grid"][r["best"]]
        verdicts = []
        for k, point in zip(mine, r["judged"]):
            j = judge[k]
            step = _returned_step(j)
            n = sum(rec["inner_steps"] for rec in j.history_[:step])
            verdicts.append(SweepJudgement(
                learner=j, value=point["value"], point=point,
                within=point["within_noise_of_best"],
                best_value=best["value"], best_loss=best["mean"], tolerance=r["tolerance"],
                outer_loss=j.history_[step - 1]["outer_loss"],
                returned_within=point["returned_model_within_noise_of_best"], inner_steps=n,
                share=n / r["inner_steps"] if r["inner_steps"] else math.nan))
        groups.append(SweepGroup(budget=("stationary" if isinstance(b, tuple) else budget), grid=r["grid"],
                                 best=r["best"], noise=r["noise"], tolerance=r["tolerance"], seeds=r["seeds"],
                                 steps_per_run=r["steps_per_run"], rows_per_step=r["rows_per_step"],
                                 inner_steps=r["inner_steps"], judged=verdicts))
    result = SweepResult(learner, groups, scaling.scale)
    # As `d2r sweep` (exit 3): a grid without one finite mean has no best; some non-finite ones warn.
    for g in groups:
        bad = sum(1 for p in g.grid if not math.isfinite(p["mean"]))
        if bad == len(g.grid):
            reason = f"no value of the grid trained to a finite validation loss (all {bad} diverged)"
            raise FitDivergedError(f"d2r.sweep: {reason}; the SweepResult is in .result", reason, result)
        if bad:
            result.warnings.append(f"{bad} of the {len(g.grid)} grid values gave a non-finite validation loss (the "
                                   "learner diverged there); the best is among the others")
    for w in result.warnings:
        warnings.warn(w, SweepWarning, stacklevel=2)
    return result
