"""d2r's head primitives for JAX: XLA FFI calls (``jax.ffi.ffi_call``) with ``jax.custom_vjp`` rules.

CPU only for now (the cpu platform's handlers of the extension; a CUDA handler would take XLA's
stream as the context's borrowed stream). Covered: :func:`sample`, :func:`log_prob` and
:func:`entropy` for the heads ``"diag"`` (a = mean, b = log_std), ``"cholesky"`` (a = mean,
b = raw packed tril) and ``"categorical"`` (a = logits, b = None), differentiable in a and b
(samples are constants), under ``jax.jit``, ``jax.grad`` and ``jax.vjp``. Not yet: the objectives,
HVPs, solvers (use d2r.torch or d2r._core). A bad argument raises JAX's runtime error carrying
d2r's message naming the argument. The draws are d2r's Philox stream: the same seed and step give
the same samples as the C++ API, d2r._core and d2r.torch.
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import _core

if not hasattr(_core, "_jax_targets"):
    raise ImportError("d2r.jax: this build of d2r._core has no XLA FFI handlers (jax was not installed when it "
                      "was built)")

for _name, _capsule in _core._jax_targets().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")

__all__ = ["sample", "log_prob", "entropy"]


def _b(a, b):
    return jnp.zeros((0, 1), a.dtype) if b is None else b


def sample(head: str, a, b=None, *, generations: int, seed: int = 0, step: int = 0, jitter: float = 1e-5):
    """G draws per row: (B*G) x n (Gaussian heads) or B x G int32 (categorical)."""
    B = a.shape[0]
    shape = (jax.ShapeDtypeStruct((B, generations), jnp.int32) if head == "categorical"
             else jax.ShapeDtypeStruct((B * generations, a.shape[1]), a.dtype))
    return jax.ffi.ffi_call("d2r_sample", shape)(a, _b(a, b), head=head, jitter=np.float64(jitter),
                                                 generations=np.int64(generations), seed=np.int64(seed),
                                                 step=np.int64(step))


def _log_prob_call(head, jitter, a, b, samples):
    B = a.shape[0]
    G = samples.shape[1] if head == "categorical" else samples.shape[0] // max(B, 1)
    return jax.ffi.ffi_call("d2r_log_prob", jax.ShapeDtypeStruct((B, G), a.dtype))(
        a, b, samples, head=head, jitter=np.float64(jitter))


def _backward_call(head, jitter, a, b, samples, cot):
    return jax.ffi.ffi_call("d2r_head_backward", (jax.ShapeDtypeStruct(a.shape, a.dtype),
                                                  jax.ShapeDtypeStruct(b.shape, b.dtype)))(
        a, b, samples, cot, head=head, jitter=np.float64(jitter))


def _zero_cotangent(x):
    if jnp.issubdtype(x.dtype, jnp.integer):
        return np.zeros(x.shape, dtype=jax.dtypes.float0)
    return jnp.zeros_like(x)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _log_prob(head, jitter, a, b, samples):
    return _log_prob_call(head, jitter, a, b, samples)


def _log_prob_fwd(head, jitter, a, b, samples):
    return _log_prob_call(head, jitter, a, b, samples), (a, b, samples)


def _log_prob_bwd(head, jitter, res, g):
    a, b, samples = res
    ga, gb = _backward_call(head, jitter, a, b, samples, g)
    return ga, gb, _zero_cotangent(samples)


_log_prob.defvjp(_log_prob_fwd, _log_prob_bwd)


def _entropy_call(head, jitter, a, b):
    return jax.ffi.ffi_call("d2r_entropy", jax.ShapeDtypeStruct((a.shape[0],), a.dtype))(
        a, b, head=head, jitter=np.float64(jitter))


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _entropy(head, jitter, a, b):
    return _entropy_call(head, jitter, a, b)


def _entropy_fwd(head, jitter, a, b):
    return _entropy_call(head, jitter, a, b), (a, b)


def _entropy_bwd(head, jitter, res, g):
    a, b = res
    none = jnp.zeros((0, 1), jnp.int32 if head == "categorical" else a.dtype)
    return _backward_call(head, jitter, a, b, none, g)


_entropy.defvjp(_entropy_fwd, _entropy_bwd)


def log_prob(head: str, a, b=None, samples=None, *, jitter: float = 1e-5):
    """log p(sample_bg | head_b), B x G; differentiable in a and b."""
    return _log_prob(head, float(jitter), a, _b(a, b), samples)


def entropy(head: str, a, b=None, *, jitter: float = 1e-5):
    """Entropy of each row (B); differentiable in a and b."""
    return _entropy(head, float(jitter), a, _b(a, b))
