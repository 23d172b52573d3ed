"""d2r._core over NumPy arrays: zero copy, argument errors, read-only inputs, the Philox stream."""

import os
import re
import subprocess

import numpy as np
import pytest

import d2r


def diag_head(B=4, n=3, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, n)).astype(dtype), (0.2 * rng.normal(size=(B, n))).astype(dtype)


def test_backends_and_version():
    assert d2r.backends()[0] == "cpu"
    assert set(d2r.backends()) <= {"cpu", "cuda"}
    assert d2r.backends() == (["cpu", "cuda"] if d2r.cuda_device_available() else ["cpu"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", d2r.__version__)


def test_output_is_the_callers_array_and_inputs_are_read_in_place():
    ctx = d2r.Context("cpu", seed=1)
    mean, log_std = diag_head()
    out = np.full((4, 5), np.nan, np.float32)
    samples = np.empty((4 * 5, 3), np.float32)
    d2r.sample(ctx, "diag", samples, 5, mean=mean, log_std=log_std)
    before = out.__array_interface__["data"][0]
    assert d2r.log_prob(ctx, "diag", samples, out, mean=mean, log_std=log_std) is None
    assert out.__array_interface__["data"][0] == before
    assert np.isfinite(out).all()
    # The kernel read the caller's input memory: changing it in place changes the result.
    mean[0, 0] += 1.0
    out2 = np.empty_like(out)
    d2r.log_prob(ctx, "diag", samples, out2, mean=mean, log_std=log_std)
    assert not np.array_equal(out[0], out2[0]) and np.array_equal(out[1:], out2[1:])


def test_strided_rows_are_views_not_copies():
    ctx = d2r.Context("cpu", seed=2)
    mean, log_std = diag_head(B=4, n=3)
    wide = np.zeros((4, 8), np.float32)
    wide[:, 2:5] = mean  # rows with a row stride of 8: a view, passed as is
    out_a, out_b = np.empty((4,), np.float32), np.empty((4,), np.float32)
    d2r.entropy(ctx, "diag", out_a, mean=wide[:, 2:5], log_std=log_std)
    d2r.entropy(ctx, "diag", out_b, mean=mean, log_std=log_std)
    np.testing.assert_array_equal(out_a, out_b)
    big = np.full((4, 6), -7.0, np.float32)
    d2r.entropy(ctx, "diag", out_a, mean=mean, log_std=log_std)
    grad_mean = big[:, 1:4]  # an output view with row stride 6
    d2r.backward(ctx, "diag", None, None, np.ones(4, np.float32), mean=mean, log_std=log_std,
                 grad_mean=grad_mean, grad_log_std=np.empty_like(log_std))
    assert (big[:, 0] == -7).all() and (big[:, 4:] == -7).all()  # only the view was written
    np.testing.assert_array_equal(big[:, 1:4], 0)  # the entropy does not depend on the mean


@pytest.mark.parametrize(
    "change, argument, message",
    [
        (lambda a: a.update(samples=a["samples"].astype(np.float64)), "samples", "float32"),
        (lambda a: a.update(out=np.empty((5, 4), np.float32).T), "out", "not contiguous"),
        (lambda a: a.update(log_std=np.zeros((4, 2), np.float32)), "log_std", "4 x 3"),
        (lambda a: a.update(out=np.empty((4, 5), np.int32)), "out", "float32"),
        (lambda a: a.update(mean=[[0.0] * 3] * 4), "mean", "expected an array"),
        (lambda a: a.update(mean=np.zeros((4, 3, 1), np.float32)), "mean", "2-D"),
    ],
)
def test_bad_input_names_the_argument_and_leaves_outputs_untouched(change, argument, message):
    ctx = d2r.Context("cpu", seed=1)
    mean, log_std = diag_head()
    samples = np.empty((20, 3), np.float32)
    d2r.sample(ctx, "diag", samples, 5, mean=mean, log_std=log_std)
    args = dict(samples=samples, out=np.full((4, 5), 123.0, np.float32), mean=mean, log_std=log_std)
    change(args)
    out_before = np.array(args["out"], copy=True)
    with pytest.raises(ValueError, match=message) as e:
        d2r.log_prob(ctx, "diag", args["samples"], args["out"], mean=args["mean"], log_std=args["log_std"])
    assert isinstance(e.value, d2r.ArgumentError)
    assert argument in str(e.value) and argument in e.value.argument
    np.testing.assert_array_equal(np.asarray(args["out"]), out_before)


def test_read_only_inputs_are_accepted_and_read_only_outputs_rejected():
    ctx = d2r.Context("cpu")
    mean, log_std = diag_head()
    mean.setflags(write=False)
    log_std.setflags(write=False)
    out = np.empty(4, np.float32)
    d2r.entropy(ctx, "diag", out, mean=mean, log_std=log_std)
    np.testing.assert_allclose(out, log_std.sum(1) + 1.5 * np.log(2 * np.pi * np.e), rtol=1e-6)
    ro = np.zeros(4, np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="'out'.*read-only"):
        d2r.entropy(ctx, "diag", ro, mean=mean, log_std=log_std)
    assert (ro == 0).all()


def test_float64_on_cpu_and_mixed_dtypes_rejected():
    ctx = d2r.Context("cpu")
    mean, log_std = diag_head(dtype=np.float64)
    out = np.empty(4, np.float64)
    d2r.entropy(ctx, "diag", out, mean=mean, log_std=log_std)
    with pytest.raises(ValueError, match="'log_std'.*float64"):
        d2r.entropy(ctx, "diag", out, mean=mean.astype(np.float32), log_std=log_std)


def test_policy_curvature_refuses_bad_arrays_naming_them():
    # prepare / prepare_exact / apply / mixed_product share their argument checks (vector_product,
    # prepare_with, data_of in python/src): each refusal names the method and the argument and
    # leaves the output untouched; a valid call then writes it.
    ctx = d2r.Context("cpu")
    net = d2r.Mlp(2, [3], 4)
    P = net.parameter_count
    curv = d2r.DiagGaussianPolicyCurvature(ctx, net, 5)
    cat = d2r.CategoricalPolicyCurvature(ctx, d2r.Mlp(2, [3], 3), 5)
    x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(5, 2)
    y = np.linspace(0, 2, 10, dtype=np.float32).reshape(5, 2)
    theta = np.full(P, 0.1, np.float32)
    grad = np.full(P, 7.0, np.float32)
    u = np.ones(1, np.float32)
    opt = d2r.PgOptions()
    with pytest.raises(ValueError, match=r"PolicyCurvature\.prepare_exact: argument 'params': dtype differs"):
        curv.prepare_exact(theta.astype(np.float64), x, grad, "scalar", u, opt, targets=y)
    with pytest.raises(ValueError, match=r"PolicyCurvature\.prepare: argument 'labels': a Gaussian head takes"):
        curv.prepare(theta, x, grad, "scalar", u, 2, opt, targets=y, labels=np.zeros(5, np.int32))
    Pc = d2r.Mlp(2, [3], 3).parameter_count
    gc = np.full(Pc, 7.0, np.float32)
    with pytest.raises(ValueError, match=r"PolicyCurvature\.prepare_exact: argument 'targets': the categorical"):
        cat.prepare_exact(np.zeros(Pc, np.float32), x, gc, "scalar", u, opt, targets=y)
    assert (grad == 7.0).all() and (gc == 7.0).all()
    curv.prepare_exact(theta, x, grad, "scalar", u, opt, targets=y)
    assert np.isfinite(grad).all() and (grad != 7.0).any()
    hv = np.full(P, 7.0, np.float32)
    with pytest.raises(ValueError, match=r"PolicyCurvature\.apply: argument 'v': dtype differs"):
        curv.apply(np.ones(P, np.float64), hv)
    with pytest.raises(ValueError, match=r"PolicyCurvature\.apply: argument 'hv'"):
        curv.apply(np.ones(P, np.float32), np.zeros(P, np.float64))
    mixed = np.full(1, 7.0, np.float32)
    with pytest.raises(ValueError, match=r"PolicyCurvature\.mixed_product: argument 'w': dtype differs"):
        curv.mixed_product(np.ones(P, np.float64), mixed)
    assert (hv == 7.0).all() and (mixed == 7.0).all()
    curv.apply(np.ones(P, np.float32), hv)
    curv.mixed_product(np.ones(P, np.float32), mixed)
    assert np.isfinite(hv).all() and (hv != 7.0).any() and np.isfinite(mixed).all() and mixed[0] != 7.0

def test_unknown_head_transform_and_options():
    ctx = d2r.Context("cpu")
    with pytest.raises(ValueError, match="'head'"):
        d2r.entropy(ctx, "gauss", np.empty(2, np.float32), mean=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="'transform'"):
        d2r.PgOptions(transform="bogus")
    with pytest.raises(ValueError, match="'backend'"):
        d2r.Context("tpu")
    with pytest.raises(ValueError, match="'logits'.*not used"):
        d2r.entropy(ctx, "diag", np.empty(2, np.float32), mean=np.zeros((2, 2), np.float32),
                    log_std=np.zeros((2, 2), np.float32), logits=np.zeros((2, 2), np.float32))


def test_cuda_backend_rejects_host_arrays(gpu):
    ctx = d2r.Context("cuda")
    mean, log_std = diag_head()
    with pytest.raises(ValueError, match="'mean'.*CUDA array"):
        d2r.entropy(ctx, "diag", np.empty(4, np.float32), mean=mean, log_std=log_std)


def _cli():
    path = os.environ.get("D2R_CLI")
    if not path or not os.path.exists(path):
        pytest.skip("the d2r program is not built (D2R_CLI unset): configure with D2R_BUILD_CLI=ON")
    return path


def test_same_philox_draws_as_the_cpp_api():
    """`d2r sample` (the C++ API) prints the sample mean and std of its draws to 4 decimals: the same
    seed and step through Python give the same numbers (different draws would not)."""
    cli = _cli()
    G, seed, step = 1000, 5, 3
    mean = np.array([[0.5, -1.0]], np.float32)
    std = np.array([1.5, 0.25])
    out = subprocess.run([cli, "sample", "--head", "diag", "--mean", "0.5,-1", "--std", "1.5,0.25", "-G", str(G),
                          "--seed", str(seed), "--step", str(step), "--device", "cpu"],
                         check=True, capture_output=True, text=True).stdout
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d\s", line)]
    assert len(rows) == 2
    samples = np.empty((G, 2), np.float32)
    d2r.sample(d2r.Context("cpu", seed=seed), "diag", samples, G, step=step, mean=mean,
               log_std=np.log(std).astype(np.float32)[None, :])
    for d in range(2):
        assert float(rows[d][2]) == pytest.approx(float(f"{samples[:, d].astype(np.float64).mean():.4f}"), abs=1e-4)
        assert float(rows[d][4]) == pytest.approx(
            float(f"{samples[:, d].astype(np.float64).std(ddof=1):.4f}"), abs=2e-4)
    other = np.empty_like(samples)
    d2r.sample(d2r.Context("cpu", seed=seed), "diag", other, G, step=step + 1, mean=mean,
               log_std=np.log(std).astype(np.float32)[None, :])
    assert not np.array_equal(samples, other)


def test_fused_and_unfused_surrogate_draw_the_same_samples():
    ctx = d2r.Context("cpu", seed=11)
    B, n, G = 5, 2, 4
    mean, log_std = diag_head(B, n, np.float64, seed=3)
    y = np.zeros((B, n))
    samples = np.empty((B * G, n))
    d2r.sample(ctx, "diag", samples, G, step=7, mean=mean, log_std=log_std)
    opts = d2r.PgOptions(entropy_weight=0.5)
    inter = dict(samples=np.empty((B * G, n)), log_prob=np.empty((B, G)), rewards=np.empty((B, G)),
                 advantages=np.empty((B, G)))
    rl, gm, gs = np.empty(B), np.empty((B, n)), np.empty((B, n))
    d2r.pg_surrogate_unfused(ctx, "diag", "scalar", np.array([2.0]), G, opts, rl, None, inter["samples"],
                             inter["log_prob"], inter["rewards"], inter["advantages"], targets=y, step=7,
                             mean=mean, log_std=log_std, grad_mean=gm, grad_log_std=gs)
    np.testing.assert_array_equal(inter["samples"], samples)
    rl2, gm2, gs2 = np.empty(B), np.empty((B, n)), np.empty((B, n))
    d2r.pg_surrogate(ctx, "diag", "scalar", np.array([2.0]), G, opts, rl2, targets=y, step=7, mean=mean,
                     log_std=log_std, grad_mean=gm2, grad_log_std=gs2)
    np.testing.assert_allclose(rl2, rl, rtol=1e-12)
    np.testing.assert_allclose(gm2, gm, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(inter["rewards"], -2.0 * ((samples.reshape(B, G, n) - y[:, None]) ** 2).sum(-1))


def test_optimisers_follow_pytorch_semantics():
    torch = pytest.importorskip("torch")
    ctx = d2r.Context("cpu")
    p0 = np.linspace(-1, 1, 7)
    p = p0.copy()
    m, v, step = np.empty(7), np.empty(7), np.empty(1, np.int64)
    d2r.adam_reset(ctx, m, v, step)
    tp = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.AdamW([tp], lr=0.1, weight_decay=0.01)
    for k in range(3):
        g = np.cos(p * (k + 1))
        d2r.adam_step(ctx, p, g, m, v, step, learning_rate=0.1, weight_decay=0.01)
        tp.grad = torch.cos(tp.detach() * (k + 1))
        opt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert step[0] == 3
    x = np.array([3.0, 4.0])
    norm = np.empty(1)
    d2r.clip_global_norm(ctx, x, 1.0, norm)
    np.testing.assert_allclose(x, [0.6, 0.8]) and np.testing.assert_allclose(norm, [5.0])


def test_solvers_on_a_python_operator():
    ctx = d2r.Context("cpu")
    rng = np.random.default_rng(0)
    M = rng.normal(size=(6, 6))
    A = M @ M.T + 6 * np.eye(6)
    b = rng.normal(size=6)
    x = np.zeros(6)

    def op(xv, yv):
        np.asarray(yv)[:] = A @ np.asarray(xv)

    rep = d2r.conjugate_gradient(ctx, op, b, x, tolerance=1e-12, max_iterations=50)
    assert rep["status"] == "converged" and rep["iterations"] <= 7
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-9)
    x2 = np.zeros(6)
    rep = d2r.neumann_series(ctx, op, b, x2, alpha=1.0 / np.linalg.eigvalsh(A).max(), iterations=2000)
    assert rep["status"] == "converged"
    np.testing.assert_allclose(x2, np.linalg.solve(A, b), rtol=1e-6)

    def failing(xv, yv):
        raise KeyError("from the operator")

    with pytest.raises(KeyError, match="from the operator"):
        d2r.conjugate_gradient(ctx, failing, b, np.zeros(6))
    with pytest.raises(ValueError, match="'A'"):
        d2r.conjugate_gradient(ctx, 42, b, np.zeros(6))


def test_jax_arrays_are_read_without_being_written():
    jnp = pytest.importorskip("jax.numpy", reason="jax is not installed (tools/setup-python.sh does not install it)")
    ctx = d2r.Context("cpu", seed=3)
    mean = jnp.asarray(np.ones((3, 2), np.float32))
    log_std = jnp.asarray(np.zeros((3, 2), np.float32))
    before = np.array(mean)
    out = np.empty(3, np.float32)
    d2r.entropy(ctx, "diag", out, mean=mean, log_std=log_std)
    np.testing.assert_allclose(out, np.log(2 * np.pi * np.e), rtol=1e-6)
    np.testing.assert_array_equal(np.array(mean), before)
    jout = jnp.zeros(3, jnp.float32)
    with pytest.raises(ValueError, match="'out'.*JAX arrays are immutable"):
        d2r.entropy(ctx, "diag", jout, mean=mean, log_std=log_std)
    np.testing.assert_array_equal(np.array(jout), 0)
