"""d2r's primitives as PyTorch operators (DESIGN.md §11).

Each primitive is a ``torch.library.custom_op`` in the ``d2r`` namespace (``torch.ops.d2r.*``) with a
fake (meta) implementation and, where it has a gradient, ``register_autograd``; they run in eager
mode and under ``torch.compile(fullgraph=True)``. The functions below are the user-facing wrappers:

- :func:`sample`, :func:`log_prob`, :func:`entropy` for the heads ``"diag"`` (a = mean, b = log_std),
  ``"cholesky"`` (a = mean, b = raw packed tril) and ``"categorical"`` (a = logits, b = None);
- :func:`reward` (Mahalanobis reward; differentiable in the reward parameters);
- :func:`pg_surrogate` (the fused REINFORCE head: loss and head gradient in one kernel),
  :func:`pg_pathwise`, :func:`exact_objective`: each returns ``(loss, row_reward)`` with the loss
  differentiable in the head outputs (the gradient was computed by the fused kernel);
- :func:`policy_hvp`, :func:`policy_mixed_product`, :func:`policy_solve`: the exact curvature of an
  MLP policy (forward-over-reverse inside d2r) — HVPs are ops of their own because torch.compile has
  no double backward through custom ops.

Tensors are passed to d2r without copies: inputs must be float32 (or float64 on CPU) with unit inner
stride, class indices int32; a mismatch raises d2r.ArgumentError (a ValueError) naming the argument.
CUDA tensors run on PyTorch's current stream. Sampling is keyed by (seed, step, row, generation,
dimension) in Philox, so the same seed and step give the same draws as the C++ API and the CLI.

:mod:`d2r.torch.func` (the ``func`` namespace below) holds ``autograd.Function`` variants of the
differentiable ops for ``torch.func.grad``/``vjp`` users.
"""

from __future__ import annotations

import threading
import types
from typing import Optional, Sequence

import torch

from . import _core

__all__ = ["sample", "log_prob", "entropy", "reward", "pg_surrogate", "pg_pathwise", "exact_objective",
           "policy_hvp", "policy_mixed_product", "policy_solve", "context_for", "func"]

_local = threading.local()


def context_for(t: torch.Tensor, seed: int = 0) -> _core.Context:
    """The d2r context of this thread for t's device and PyTorch's current stream (cached), with `seed`."""
    cache = getattr(_local, "contexts", None)
    if cache is None:
        cache = _local.contexts = {}
    if t.device.type == "cuda":
        dev = t.device.index if t.device.index is not None else torch.cuda.current_device()
        stream = torch.cuda.current_stream(dev).cuda_stream
        key = ("cuda", dev, stream)
        ctx = cache.get(key)
        if ctx is None:
            ctx = cache[key] = _core.Context("cuda", device=dev, stream=stream)
    elif t.device.type == "cpu":
        ctx = cache.get("cpu")
        if ctx is None:
            ctx = cache["cpu"] = _core.Context("cpu")
    else:
        raise _core.ArgumentError(f"d2r.torch: tensors on '{t.device.type}' are not supported (cpu or cuda)")
    ctx.seed = seed
    return ctx


def _head_kw(head: str, a: torch.Tensor, b: Optional[torch.Tensor], jitter: float, prefix: str = "") -> dict:
    if head == "diag":
        return {prefix + "mean": a, prefix + "log_std": b, **({} if prefix else {"jitter": jitter})}
    if head == "cholesky":
        return {prefix + "mean": a, prefix + "tril": b, **({} if prefix else {"jitter": jitter})}
    if head == "categorical":
        return {prefix + "logits": a}
    raise _core.ArgumentError(f"d2r.torch: argument 'head': expected 'diag', 'cholesky' or 'categorical', got '{head}'")


def _d(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The plain tensor d2r reads (same memory): detached, and unwrapped from torch.func's wrappers
    (the autograd.Function variants run inside torch.func transforms)."""
    if t is None:
        return None
    t = t.detach()  # first: inside a transform, detach() itself returns a wrapped tensor
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t


def _data_kw(head: str, targets: torch.Tensor) -> dict:
    return {"labels": _d(targets)} if head == "categorical" else {"targets": _d(targets)}


def _pg(entropy_weight: float, transform: str, rbf_gamma: float, standardize_epsilon: float, log_prob_clip: float,
        per_dimension_mean: bool, normaliser_rows: int) -> _core.PgOptions:
    return _core.PgOptions(entropy_weight=entropy_weight, transform=transform, rbf_gamma=rbf_gamma,
                           standardize_epsilon=standardize_epsilon, log_prob_clip=log_prob_clip,
                           per_dimension_mean=per_dimension_mean, normaliser_rows=normaliser_rows)


def _empty_b(a: torch.Tensor) -> torch.Tensor:
    return a.new_empty((0,))


# ---------------------------------------------------------------- distributions
@torch.library.custom_op("d2r::sample", mutates_args=())
def _sample(head: str, a: torch.Tensor, b: Optional[torch.Tensor], generations: int, seed: int, step: int,
            jitter: float) -> torch.Tensor:
    B = a.shape[0]
    if head == "categorical":
        out = torch.empty((B, generations), dtype=torch.int32, device=a.device)
    else:
        out = torch.empty((B * generations, a.shape[1]), dtype=a.dtype, device=a.device)
    _core.sample(context_for(a, seed), head, _d(out), generations, step=step, **_head_kw(head, _d(a), _d(b), jitter))
    return out


@_sample.register_fake
def _(head, a, b, generations, seed, step, jitter):
    if head == "categorical":
        return a.new_empty((a.shape[0], generations), dtype=torch.int32)
    return a.new_empty((a.shape[0] * generations, a.shape[1]))


def _head_backward_impl(head, a, b, samples, d_log_prob, d_entropy, jitter):
    a, b, samples, d_log_prob, d_entropy = _d(a), _d(b), _d(samples), _d(d_log_prob), _d(d_entropy)
    ga = torch.empty_like(a)
    gb = torch.empty_like(b) if b is not None else _empty_b(a)
    grads = _head_kw(head, _d(ga), _d(gb) if b is not None else None, jitter, prefix="grad_")
    _core.backward(context_for(a), head, _d(samples), _d(d_log_prob), _d(d_entropy),
                   **_head_kw(head, _d(a), _d(b), jitter), **grads)
    return ga, gb


@torch.library.custom_op("d2r::head_backward", mutates_args=())
def _head_backward(head: str, a: torch.Tensor, b: Optional[torch.Tensor], samples: Optional[torch.Tensor],
                   d_log_prob: Optional[torch.Tensor], d_entropy: Optional[torch.Tensor],
                   jitter: float) -> tuple[torch.Tensor, torch.Tensor]:
    return _head_backward_impl(head, a, b, samples, d_log_prob, d_entropy, jitter)


@_head_backward.register_fake
def _(head, a, b, samples, d_log_prob, d_entropy, jitter):
    return torch.empty_like(a), (torch.empty_like(b) if b is not None else a.new_empty((0,)))


def _log_prob_impl(head, a, b, samples, jitter):
    a, b, samples = _d(a), _d(b), _d(samples)
    B = a.shape[0]
    G = samples.shape[1] if head == "categorical" else samples.shape[0] // max(B, 1)
    out = torch.empty((B, G), dtype=a.dtype, device=a.device)
    _core.log_prob(context_for(a), head, samples, _d(out), **_head_kw(head, _d(a), _d(b), jitter))
    return out


@torch.library.custom_op("d2r::log_prob", mutates_args=())
def _log_prob(head: str, a: torch.Tensor, b: Optional[torch.Tensor], samples: torch.Tensor,
              jitter: float) -> torch.Tensor:
    return _log_prob_impl(head, a, b, samples, jitter)


@_log_prob.register_fake
def _(head, a, b, samples, jitter):
    B = a.shape[0]
    G = samples.shape[1] if head == "categorical" else samples.shape[0] // max(B, 1)
    return a.new_empty((B, G))


def _log_prob_setup(ctx, inputs, output):
    head, a, b, samples, jitter = inputs
    ctx.head, ctx.jitter, ctx.has_b = head, jitter, b is not None
    ctx.save_for_backward(a, b, samples)


def _log_prob_backward(ctx, g, backward_op=None):
    a, b, samples = ctx.saved_tensors
    ga, gb = (backward_op or _head_backward)(ctx.head, a, b, samples, g.contiguous(), None, ctx.jitter)
    return None, ga, (gb if ctx.has_b else None), None, None


_log_prob.register_autograd(_log_prob_backward, setup_context=_log_prob_setup)


def _entropy_impl(head, a, b, jitter):
    a, b = _d(a), _d(b)
    out = torch.empty((a.shape[0],), dtype=a.dtype, device=a.device)
    _core.entropy(context_for(a), head, _d(out), **_head_kw(head, _d(a), _d(b), jitter))
    return out


@torch.library.custom_op("d2r::entropy", mutates_args=())
def _entropy(head: str, a: torch.Tensor, b: Optional[torch.Tensor], jitter: float) -> torch.Tensor:
    return _entropy_impl(head, a, b, jitter)


@_entropy.register_fake
def _(head, a, b, jitter):
    return a.new_empty((a.shape[0],))


def _entropy_setup(ctx, inputs, output):
    head, a, b, jitter = inputs
    ctx.head, ctx.jitter, ctx.has_b = head, jitter, b is not None
    ctx.save_for_backward(a, b)


def _entropy_backward(ctx, g, backward_op=None):
    a, b = ctx.saved_tensors
    ga, gb = (backward_op or _head_backward)(ctx.head, a, b, None, None, g.contiguous(), ctx.jitter)
    return None, ga, (gb if ctx.has_b else None), None


_entropy.register_autograd(_entropy_backward, setup_context=_entropy_setup)


# ---------------------------------------------------------------- rewards
def _reward_impl(reward_form, params, samples, targets, classes):
    params, samples, targets = _d(params), _d(samples), _d(targets)
    if samples.dtype == torch.int32:
        out = torch.empty(tuple(samples.shape), dtype=params.dtype, device=params.device)
        _core.reward(context_for(params), reward_form, params, samples, _d(out),
                     labels=_d(targets), classes=classes)
    else:
        B = targets.shape[0]
        out = torch.empty((B, samples.shape[0] // max(B, 1)), dtype=params.dtype, device=params.device)
        _core.reward(context_for(params), reward_form, params, samples, _d(out), targets=_d(targets))
    return out


@torch.library.custom_op("d2r::reward", mutates_args=())
def _reward(reward_form: str, params: torch.Tensor, samples: torch.Tensor, targets: torch.Tensor,
            classes: int) -> torch.Tensor:
    return _reward_impl(reward_form, params, samples, targets, classes)


@_reward.register_fake
def _(reward_form, params, samples, targets, classes):
    if samples.dtype == torch.int32:
        return params.new_empty(tuple(samples.shape))
    B = targets.shape[0]
    return params.new_empty((B, samples.shape[0] // max(B, 1)))


def _reward_backward_impl(reward_form, params, samples, targets, d_reward, classes):
    params, samples, targets, d_reward = _d(params), _d(samples), _d(targets), _d(d_reward)
    g = torch.empty_like(params)
    if samples.dtype == torch.int32:
        _core.reward_backward(context_for(params), reward_form, _d(params), _d(samples), d_reward,
                              _d(g), labels=_d(targets), classes=classes)
    else:
        _core.reward_backward(context_for(params), reward_form, _d(params), _d(samples), d_reward,
                              _d(g), targets=_d(targets))
    return g


@torch.library.custom_op("d2r::reward_backward", mutates_args=())
def _reward_backward(reward_form: str, params: torch.Tensor, samples: torch.Tensor, targets: torch.Tensor,
                     d_reward: torch.Tensor, classes: int) -> torch.Tensor:
    return _reward_backward_impl(reward_form, params, samples, targets, d_reward, classes)


@_reward_backward.register_fake
def _(reward_form, params, samples, targets, d_reward, classes):
    return torch.empty_like(params)


def _reward_setup(ctx, inputs, output):
    reward_form, params, samples, targets, classes = inputs
    ctx.form, ctx.classes = reward_form, classes
    ctx.save_for_backward(params, samples, targets)


def _reward_bwd(ctx, g, backward_op=None):
    params, samples, targets = ctx.saved_tensors
    return None, (backward_op or _reward_backward)(ctx.form, params, samples, targets, g.contiguous(), ctx.classes), None, None, None


_reward.register_autograd(_reward_bwd, setup_context=_reward_setup)


# ---------------------------------------------------------------- objectives (fused: loss and head gradient)
def _objective_impl(kind: str, head, a, b, targets, reward_form, reward_params, generations, seed, step,
                    entropy_weight, transform, rbf_gamma, standardize_epsilon, log_prob_clip, per_dimension_mean,
                    normaliser_rows, jitter):
    a, b, targets, reward_params = _d(a), _d(b), _d(targets), _d(reward_params)
    B = a.shape[0]
    row_loss = torch.empty((B,), dtype=a.dtype, device=a.device)
    row_reward = torch.empty((B,), dtype=a.dtype, device=a.device)
    ga = torch.empty_like(a)
    gb = torch.empty_like(b) if b is not None else _empty_b(a)
    opts = _pg(entropy_weight, transform, rbf_gamma, standardize_epsilon, log_prob_clip, per_dimension_mean,
               normaliser_rows)
    ctx = context_for(a, seed)
    kw = dict(**_head_kw(head, _d(a), _d(b), jitter), **_head_kw(head, _d(ga), _d(gb) if b is not None else None,
                                                                     jitter, prefix="grad_"))
    row_loss_, row_reward_ = _d(row_loss), _d(row_reward)
    if kind == "exact":
        _core.exact_objective(ctx, head, reward_form, _d(reward_params), opts, row_loss_, row_reward_,
                              **_data_kw(head, targets), **kw)
    elif kind == "pathwise":
        _core.pg_pathwise(ctx, head, reward_form, _d(reward_params), generations, opts, row_loss_, row_reward_,
                          targets=_d(targets), step=step, **kw)
    else:
        _core.pg_surrogate(ctx, head, reward_form, _d(reward_params), generations, opts, row_loss_, row_reward_,
                           step=step, **_data_kw(head, targets), **kw)
    return row_loss.sum(), row_reward, ga, gb


def _objective_fake(head, a, b, *rest):
    return (a.new_empty(()), a.new_empty((a.shape[0],)), torch.empty_like(a),
            torch.empty_like(b) if b is not None else a.new_empty((0,)))


def _objective_setup(ctx, inputs, output):
    ctx.has_b = inputs[2] is not None
    ctx.n_inputs = len(inputs)
    ctx.save_for_backward(output[2], output[3])


def _objective_backward(ctx, g_loss, g_row_reward, g_ga, g_gb):
    ga, gb = ctx.saved_tensors
    grads = [None] * ctx.n_inputs
    grads[1] = ga * g_loss
    grads[2] = gb * g_loss if ctx.has_b else None
    return tuple(grads)


@torch.library.custom_op("d2r::pg_surrogate", mutates_args=())
def _pg_surrogate(head: str, a: torch.Tensor, b: Optional[torch.Tensor], targets: torch.Tensor, reward_form: str,
                  reward_params: torch.Tensor, generations: int, seed: int, step: int, entropy_weight: float,
                  transform: str, rbf_gamma: float, standardize_epsilon: float, log_prob_clip: float,
                  per_dimension_mean: bool, normaliser_rows: int,
                  jitter: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _objective_impl("surrogate", head, a, b, targets, reward_form, reward_params, generations, seed, step,
                           entropy_weight, transform, rbf_gamma, standardize_epsilon, log_prob_clip,
                           per_dimension_mean, normaliser_rows, jitter)


@torch.library.custom_op("d2r::pg_pathwise", mutates_args=())
def _pg_pathwise(head: str, a: torch.Tensor, b: Optional[torch.Tensor], targets: torch.Tensor, reward_form: str,
                 reward_params: torch.Tensor, generations: int, seed: int, step: int, entropy_weight: float,
                 transform: str, rbf_gamma: float, standardize_epsilon: float, log_prob_clip: float,
                 per_dimension_mean: bool, normaliser_rows: int,
                 jitter: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _objective_impl("pathwise", head, a, b, targets, reward_form, reward_params, generations, seed, step,
                           entropy_weight, transform, rbf_gamma, standardize_epsilon, log_prob_clip,
                           per_dimension_mean, normaliser_rows, jitter)


@torch.library.custom_op("d2r::exact_objective", mutates_args=())
def _exact_objective(head: str, a: torch.Tensor, b: Optional[torch.Tensor], targets: torch.Tensor, reward_form: str,
                     reward_params: torch.Tensor, entropy_weight: float, per_dimension_mean: bool,
                     normaliser_rows: int, jitter: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _objective_impl("exact", head, a, b, targets, reward_form, reward_params, 0, 0, 0, entropy_weight, "none",
                           1.0, 1e-6, 0.0, per_dimension_mean, normaliser_rows, jitter)


for _op in (_pg_surrogate, _pg_pathwise, _exact_objective):
    _op.register_fake(_objective_fake)
    _op.register_autograd(_objective_backward, setup_context=_objective_setup)


# ---------------------------------------------------------------- policy curvature (exact HVPs through an MLP)
def _curvature(head: str, hidden: Sequence[int], activation: str, layer_norm: bool, params: torch.Tensor,
               x: torch.Tensor, targets: torch.Tensor, reward_form: str, reward_params: torch.Tensor, exact: bool,
               generations: int, seed: int, step: int, entropy_weight: float, transform: str, jitter: float,
               dims: int):
    outputs = {"diag": 2 * dims, "cholesky": dims + dims * (dims + 1) // 2, "categorical": dims}[head]
    net = _core.Mlp(int(x.shape[1]), list(hidden), outputs, activation=activation, layer_norm=layer_norm)
    ctx = context_for(params, seed)
    dtype = "float64" if params.dtype == torch.float64 else "float32"
    cls = {"diag": _core.DiagGaussianPolicyCurvature, "cholesky": _core.CholeskyPolicyCurvature,
           "categorical": _core.CategoricalPolicyCurvature}[head]
    curv = cls(ctx, net, int(x.shape[0]), dtype=dtype, **({"jitter": jitter} if head == "cholesky" else {}))
    grad = torch.empty_like(params)
    opts = _core.PgOptions(entropy_weight=entropy_weight, transform=transform)
    data = _data_kw(head, targets)
    if exact:
        curv.prepare_exact(_d(params), _d(x), grad, reward_form, _d(reward_params), opts, **data)
    else:
        curv.prepare(_d(params), _d(x), grad, reward_form, _d(reward_params), generations, opts,
                     step=step, **data)
    return ctx, curv


@torch.library.custom_op("d2r::policy_hvp", mutates_args=())
def _policy_hvp(head: str, hidden: list[int], activation: str, layer_norm: bool, params: torch.Tensor,
                x: torch.Tensor, targets: torch.Tensor, reward_form: str, reward_params: torch.Tensor, exact: bool,
                generations: int, seed: int, step: int, entropy_weight: float, transform: str, jitter: float,
                dims: int, v: torch.Tensor) -> torch.Tensor:
    _, curv = _curvature(head, hidden, activation, layer_norm, params, x, targets, reward_form, reward_params, exact,
                         generations, seed, step, entropy_weight, transform, jitter, dims)
    hv = torch.empty_like(params)
    curv.apply(_d(v), hv)
    return hv


@_policy_hvp.register_fake
def _(head, hidden, activation, layer_norm, params, *rest):
    return torch.empty_like(params)


@torch.library.custom_op("d2r::policy_mixed_product", mutates_args=())
def _policy_mixed_product(head: str, hidden: list[int], activation: str, layer_norm: bool, params: torch.Tensor,
                          x: torch.Tensor, targets: torch.Tensor, reward_form: str, reward_params: torch.Tensor,
                          exact: bool, generations: int, seed: int, step: int, entropy_weight: float, transform: str,
                          jitter: float, dims: int, w: torch.Tensor) -> torch.Tensor:
    _, curv = _curvature(head, hidden, activation, layer_norm, params, x, targets, reward_form, reward_params, exact,
                         generations, seed, step, entropy_weight, transform, jitter, dims)
    g = torch.empty_like(reward_params)
    curv.mixed_product(_d(w), g)
    return g


@_policy_mixed_product.register_fake
def _(head, hidden, activation, layer_norm, params, x, targets, reward_form, reward_params, *rest):
    return torch.empty_like(reward_params)


@torch.library.custom_op("d2r::policy_solve", mutates_args=())
def _policy_solve(head: str, hidden: list[int], activation: str, layer_norm: bool, params: torch.Tensor,
                  x: torch.Tensor, targets: torch.Tensor, reward_form: str, reward_params: torch.Tensor, exact: bool,
                  generations: int, seed: int, step: int, entropy_weight: float, transform: str, jitter: float,
                  dims: int, rhs: torch.Tensor, solver: str, damping: float, tolerance: float,
                  max_iterations: int) -> torch.Tensor:
    ctx, curv = _curvature(head, hidden, activation, layer_norm, params, x, targets, reward_form, reward_params, exact,
                           generations, seed, step, entropy_weight, transform, jitter, dims)
    w = torch.zeros_like(params)
    if solver == "neumann":
        rep = _core.neumann_series(ctx, curv, _d(rhs), w, alpha=tolerance, iterations=max_iterations,
                                   damping=damping)
    else:
        fn = _core.conjugate_gradient if solver == "cg" else _core.conjugate_gradient_normal
        rep = fn(ctx, curv, _d(rhs), w, damping=damping, tolerance=tolerance, max_iterations=max_iterations)
    _solve_reports.last = rep
    return w


_solve_reports = threading.local()


@_policy_solve.register_fake
def _(head, hidden, activation, layer_norm, params, *rest):
    return torch.empty_like(params)


# ---------------------------------------------------------------- the user-facing functions
def _dims(head: str, a: torch.Tensor) -> int:
    return int(a.shape[1])


def sample(head: str, a: torch.Tensor, b: Optional[torch.Tensor] = None, *, generations: int, seed: int = 0,
           step: int = 0, jitter: float = 1e-5) -> torch.Tensor:
    """G draws per row: a (B*G) x n float tensor (Gaussian heads) or a B x G int32 tensor (categorical).
    The draws are constants for autograd (REINFORCE): the head is read detached."""
    return torch.ops.d2r.sample(head, a.detach(), None if b is None else b.detach(), generations, seed, step, jitter)


def log_prob(head: str, a: torch.Tensor, b: Optional[torch.Tensor], samples: torch.Tensor, *,
             jitter: float = 1e-5) -> torch.Tensor:
    """log p(sample_bg | head_b), B x G; differentiable in a and b (samples are constants)."""
    return torch.ops.d2r.log_prob(head, a, b, samples, jitter)


def entropy(head: str, a: torch.Tensor, b: Optional[torch.Tensor] = None, *, jitter: float = 1e-5) -> torch.Tensor:
    """Entropy of each row (B); differentiable in a and b."""
    return torch.ops.d2r.entropy(head, a, b, jitter)


def reward(reward_form: str, reward_params: torch.Tensor, samples: torch.Tensor, targets: torch.Tensor, *,
           classes: int = 0) -> torch.Tensor:
    """Mahalanobis rewards B x G of (B*G) x n samples against B x n targets, or of B x G int32 class samples
    against B int32 labels (classes=C); differentiable in reward_params."""
    return torch.ops.d2r.reward(reward_form, reward_params, samples, targets, classes)


_PG_DEFAULTS = dict(entropy_weight=0.0, transform="none", rbf_gamma=1.0, standardize_epsilon=1e-6, log_prob_clip=0.0,
                    per_dimension_mean=False, normaliser_rows=0)


def _pg_args(options: Optional[_core.PgOptions], kw: dict) -> tuple:
    """The PG options as plain values (pure Python, so that torch.compile traces it without a break):
    from a d2r.PgOptions, or from keywords named as its fields."""
    if options is not None:
        if kw:
            raise _core.ArgumentError(f"d2r.torch: argument '{next(iter(kw))}': give options= or keywords, not both")
        return (options.entropy_weight, options.transform, options.rbf_gamma, options.standardize_epsilon,
                options.log_prob_clip, options.per_dimension_mean, options.normaliser_rows)
    for k in kw:
        if k not in _PG_DEFAULTS:
            raise _core.ArgumentError(f"d2r.torch: argument '{k}': unknown option (expected one of "
                                      f"{', '.join(_PG_DEFAULTS)})")
    o = {**_PG_DEFAULTS, **kw}
    return (float(o["entropy_weight"]), str(o["transform"]), float(o["rbf_gamma"]), float(o["standardize_epsilon"]),
            float(o["log_prob_clip"]), bool(o["per_dimension_mean"]), int(o["normaliser_rows"]))


def pg_surrogate(head: str, a: torch.Tensor, b: Optional[torch.Tensor], targets: torch.Tensor, reward_form: str,
                 reward_params: torch.Tensor, *, generations: int, seed: int = 0, step: int = 0,
                 options: Optional[_core.PgOptions] = None, jitter: float = 1e-5, **option_kw):
    """The fused REINFORCE head: (loss, row_reward). loss = Σ_b row_loss_b (the mean over rows) is
    differentiable in a and b (one kernel drew, scored and differentiated; nothing B·G·n was stored)."""
    loss, row_reward, _, _ = torch.ops.d2r.pg_surrogate(head, a, b, targets, reward_form, reward_params, generations,
                                                         seed, step, *_pg_args(options, option_kw), jitter)
    return loss, row_reward


def pg_pathwise(head: str, a: torch.Tensor, b: Optional[torch.Tensor], targets: torch.Tensor, reward_form: str,
                reward_params: torch.Tensor, *, generations: int, seed: int = 0, step: int = 0,
                options: Optional[_core.PgOptions] = None, jitter: float = 1e-5, **option_kw):
    """The pathwise objective of a Gaussian head: (loss, row_reward), loss differentiable in a and b."""
    loss, row_reward, _, _ = torch.ops.d2r.pg_pathwise(head, a, b, targets, reward_form, reward_params, generations,
                                                        seed, step, *_pg_args(options, option_kw), jitter)
    return loss, row_reward


def exact_objective(head: str, a: torch.Tensor, b: Optional[torch.Tensor], targets: torch.Tensor, reward_form: str,
                    reward_params: torch.Tensor, *, entropy_weight: float = 0.0, per_dimension_mean: bool = False,
                    normaliser_rows: int = 0, jitter: float = 1e-5):
    """The exact-expectation objective: (loss, row_reward = E[r]), loss differentiable in a and b."""
    loss, row_reward, _, _ = torch.ops.d2r.exact_objective(head, a, b, targets, reward_form, reward_params,
                                                            entropy_weight, per_dimension_mean, normaliser_rows, jitter)
    return loss, row_reward


def _curv_args(head, net, params, x, targets, reward_form, reward_params, exact, generations, seed, step,
               entropy_weight, transform, jitter, dims):
    hidden, activation, layer_norm = net
    return (head, list(hidden), activation, layer_norm, params, x, targets, reward_form, reward_params, exact,
            generations, seed, step, entropy_weight, transform, jitter, dims)


def policy_hvp(head: str, net: tuple, params: torch.Tensor, x: torch.Tensor, targets: torch.Tensor, reward_form: str,
               reward_params: torch.Tensor, v: torch.Tensor, *, dims: int, exact: bool = True, generations: int = 5,
               seed: int = 0, step: int = 0, entropy_weight: float = 0.0, transform: str = "none",
               jitter: float = 1e-5) -> torch.Tensor:
    """H v, H = ∇²θ L_in of an MLP policy (net = (hidden, activation, layer_norm); flat params in d2r.Mlp's
    layout) feeding `head` with `dims` = n (Gaussian) or C (categorical): the exact objective's curvature
    (exact=True) or the surrogate's with the samples of (seed, step)."""
    return torch.ops.d2r.policy_hvp(*_curv_args(head, net, params, x, targets, reward_form, reward_params, exact,
                                                generations, seed, step, entropy_weight, transform, jitter, dims), v)


def policy_mixed_product(head: str, net: tuple, params: torch.Tensor, x: torch.Tensor, targets: torch.Tensor,
                         reward_form: str, reward_params: torch.Tensor, w: torch.Tensor, *, dims: int,
                         exact: bool = True, generations: int = 5, seed: int = 0, step: int = 0,
                         entropy_weight: float = 0.0, transform: str = "none", jitter: float = 1e-5) -> torch.Tensor:
    """∇_φ(∇θ L_in · w): the mixed second derivative (reward parameters' layout)."""
    return torch.ops.d2r.policy_mixed_product(*_curv_args(head, net, params, x, targets, reward_form, reward_params,
                                                          exact, generations, seed, step, entropy_weight, transform,
                                                          jitter, dims), w)


def policy_solve(head: str, net: tuple, params: torch.Tensor, x: torch.Tensor, targets: torch.Tensor,
                 reward_form: str, reward_params: torch.Tensor, rhs: torch.Tensor, *, dims: int, exact: bool = True,
                 solver: str = "cg", damping: float = 0.0, tolerance: float = 1e-6, max_iterations: int = 100,
                 alpha: float = 0.1, generations: int = 5, seed: int = 0, step: int = 0,
                 entropy_weight: float = 0.0, transform: str = "none", jitter: float = 1e-5) -> torch.Tensor:
    """w = (H + δI)⁻¹ rhs by 'cg', 'normal_cg' or 'neumann' (alpha, max_iterations terms) on the policy
    curvature; the solve report of the last call is in d2r.torch.last_solve_report()."""
    return torch.ops.d2r.policy_solve(*_curv_args(head, net, params, x, targets, reward_form, reward_params, exact,
                                                  generations, seed, step, entropy_weight, transform, jitter, dims),
                                      rhs, solver, damping, alpha if solver == "neumann" else tolerance,
                                      max_iterations)


def last_solve_report() -> Optional[dict]:
    """The report (status, iterations, residuals) of this thread's last policy_solve, or None."""
    return getattr(_solve_reports, "last", None)


# ---------------------------------------------------------------- autograd.Function variants (torch.func)
def _autograd_function(name, impl, setup, backward, backward_impl):
    """A torch.autograd.Function in the torch.func style (forward without ctx, then setup_context):
    forward(*inputs) = impl(*inputs), backward(ctx, g) = backward(ctx, g, backward_impl)."""
    def forward(*inputs):
        return impl(*inputs)

    def setup_context(ctx, inputs, output):
        setup(ctx, inputs, output)

    def run_backward(ctx, g):
        return backward(ctx, g, backward_impl)

    return type(name, (torch.autograd.Function,), {"forward": staticmethod(forward),
                                                   "setup_context": staticmethod(setup_context),
                                                   "backward": staticmethod(run_backward)})


# forward(head, a, b, samples, jitter); forward(head, a, b, jitter);
# forward(reward_form, params, samples, targets, classes).
_LogProbFn = _autograd_function("_LogProbFn", _log_prob_impl, _log_prob_setup, _log_prob_backward,
                                _head_backward_impl)
_EntropyFn = _autograd_function("_EntropyFn", _entropy_impl, _entropy_setup, _entropy_backward, _head_backward_impl)
_RewardFn = _autograd_function("_RewardFn", _reward_impl, _reward_setup, _reward_bwd, _reward_backward_impl)


class _ObjectiveFn(torch.autograd.Function):
    @staticmethod
    def forward(kind, head, a, b, targets, reward_form, reward_params, generations, seed, step, *pg_and_jitter):
        loss, row_reward, ga, gb = _objective_impl(kind, head, a, b, targets, reward_form, reward_params, generations,
                                                   seed, step, *pg_and_jitter)
        return loss, row_reward, ga, gb

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.has_b = inputs[3] is not None
        ctx.n_inputs = len(inputs)
        ctx.mark_non_differentiable(output[1], output[2], output[3])
        ctx.save_for_backward(output[2], output[3])

    @staticmethod
    def backward(ctx, g_loss, *_):
        ga, gb = ctx.saved_tensors
        grads = [None] * ctx.n_inputs
        grads[2] = ga * g_loss
        grads[3] = gb * g_loss if ctx.has_b else None
        return tuple(grads)


def _func_log_prob(head, a, b, samples, *, jitter=1e-5):
    return _LogProbFn.apply(head, a, b, samples, jitter)


def _func_entropy(head, a, b=None, *, jitter=1e-5):
    return _EntropyFn.apply(head, a, b, jitter)


def _func_reward(reward_form, reward_params, samples, targets, *, classes=0):
    return _RewardFn.apply(reward_form, reward_params, samples, targets, classes)


def _func_pg_surrogate(head, a, b, targets, reward_form, reward_params, *, generations, seed=0, step=0, options=None,
                       jitter=1e-5, **option_kw):
    loss, row_reward, _, _ = _ObjectiveFn.apply("surrogate", head, a, b, targets, reward_form, reward_params,
                                                generations, seed, step, *_pg_args(options, option_kw), jitter)
    return loss, row_reward


def _func_exact_objective(head, a, b, targets, reward_form, reward_params, *, entropy_weight=0.0,
                          per_dimension_mean=False, normaliser_rows=0, jitter=1e-5):
    loss, row_reward, _, _ = _ObjectiveFn.apply("exact", head, a, b, targets, reward_form, reward_params, 0, 0, 0,
                                                entropy_weight, "none", 1.0, 1e-6, 0.0, per_dimension_mean,
                                                normaliser_rows, jitter)
    return loss, row_reward


func = types.SimpleNamespace(log_prob=_func_log_prob, entropy=_func_entropy, reward=_func_reward,
                             pg_surrogate=_func_pg_surrogate, exact_objective=_func_exact_objective)
func.__doc__ = "autograd.Function variants of the differentiable ops, for torch.func.grad / vjp (no vmap rule)."
