"""d2r.jax: XLA FFI calls with custom_vjp, against jax.scipy and d2r._core (same Philox draws)."""

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="jax is not installed (tools/setup-python.sh installs it)")
import jax.numpy as jnp  # noqa: E402
import jax.scipy.stats as st  # noqa: E402

jax.config.update("jax_enable_x64", True)

import d2r  # noqa: E402

dj = pytest.importorskip("d2r.jax", reason="this build of d2r._core has no XLA FFI handlers")


def head(seed=0, B=3, n=2):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(B, n))), jnp.asarray(0.2 * rng.normal(size=(B, n)))


def test_diag_log_prob_entropy_and_gradients_match_jax_scipy():
    mu, ls = head()
    s = dj.sample("diag", mu, ls, generations=4, seed=1, step=2)
    ref = lambda m, l: st.norm.logpdf(s, jnp.repeat(m, 4, 0), jnp.exp(jnp.repeat(l, 4, 0))).sum(1).reshape(3, 4)
    np.testing.assert_allclose(dj.log_prob("diag", mu, ls, s), ref(mu, ls), rtol=1e-12)
    np.testing.assert_allclose(dj.entropy("diag", mu, ls), ls.sum(1) + np.log(2 * np.pi * np.e), rtol=1e-12)
    w = jnp.asarray(np.random.default_rng(5).normal(size=(3, 4)))
    f = lambda m, l: (dj.log_prob("diag", m, l, s) * w).sum() + 0.3 * dj.entropy("diag", m, l).sum()
    g = lambda m, l: (ref(m, l) * w).sum() + 0.3 * (l.sum() + 3 * np.log(2 * np.pi * np.e))
    for got, want in zip(jax.jit(jax.grad(f, argnums=(0, 1)))(mu, ls), jax.grad(g, argnums=(0, 1))(mu, ls)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_categorical_and_cholesky_heads():
    logits = jnp.asarray(np.random.default_rng(2).normal(size=(2, 5)))
    k = dj.sample("categorical", logits, generations=3, seed=0)
    assert k.dtype == jnp.int32 and k.shape == (2, 3)
    logp = jax.nn.log_softmax(logits)
    np.testing.assert_allclose(dj.log_prob("categorical", logits, None, k), jnp.take_along_axis(logp, k, 1), rtol=1e-12)
    g = jax.grad(lambda z: dj.entropy("categorical", z).sum())(logits)
    g_ref = jax.grad(lambda z: -(jax.nn.softmax(z) * jax.nn.log_softmax(z)).sum())(logits)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)
    mu, _ = head()
    tril = jnp.asarray(0.3 * np.random.default_rng(3).normal(size=(3, 3)))
    s = dj.sample("cholesky", mu, tril, generations=2, seed=4)
    out = np.empty((3, 2))
    d2r.log_prob(d2r.Context("cpu"), "cholesky", np.asarray(s), out, mean=np.asarray(mu), tril=np.asarray(tril))
    np.testing.assert_allclose(dj.log_prob("cholesky", mu, tril, s), out, rtol=1e-12)


def test_same_draws_as_core_and_inputs_untouched():
    mu, ls = head(seed=7)
    before = np.array(mu)
    s = dj.sample("diag", mu, ls, generations=5, seed=9, step=3)
    ref = np.empty((15, 2))
    d2r.sample(d2r.Context("cpu", seed=9), "diag", ref, 5, step=3, mean=np.asarray(mu), log_std=np.asarray(ls))
    np.testing.assert_array_equal(np.asarray(s), ref)
    np.testing.assert_array_equal(np.array(mu), before)


def test_bad_input_carries_the_argument_name():
    mu, ls = head()
    with pytest.raises(Exception, match="log_std"):
        dj.entropy("diag", mu, ls[:, :1]).block_until_ready()
