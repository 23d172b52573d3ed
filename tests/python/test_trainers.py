"""The trainers from Python: d2r.fit and d2r.BilevelRewardLearner equal `d2r fit` on the same data,
settings and seed; checkpoints resume bit for bit; bad options name themselves."""

import json
import os
import subprocess
import warnings

import numpy as np
import pytest

import d2r


@pytest.fixture(scope="module")
def regression_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = x @ np.array([[1.0], [-0.5]]) + 0.3 * rng.normal(size=(40, 1))
    path = tmp_path_factory.mktemp("data") / "reg.csv"
    np.savetxt(path, np.hstack([x, y]), delimiter=",", header="a,b,y", comments="", fmt="%.6f")
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    return path, data[:, :2].astype(np.float32), data[:, 2:].astype(np.float32)


def cli_or_skip():
    path = os.environ.get("D2R_CLI")
    if not path or not os.path.exists(path):
        pytest.skip("the d2r program is not built (D2R_CLI unset): configure with D2R_BUILD_CLI=ON")
    return path


def test_bilevel_learner_equals_the_cli(regression_csv, tmp_path):
    path, X, Y = regression_csv
    out = tmp_path / "cli"
    proc = subprocess.run([cli_or_skip(), "fit", str(path), "--targets", "y", "--method", "bilevel", "--outer-steps", "4",
                    "--inner-steps", "6", "--hidden", "8", "--seed", "3", "--val-fraction", "0", "--device", "cpu",
                    # preset='paper' is the CLI's paper preset with a warm inner start on the arrays as
                    # given; the CLI standardises targets by default.
                    "--preset", "paper", "--inner-start", "warm", "--no-standardize-targets", "--out", str(out), "-q"],
                   capture_output=True)
    # Four outer steps cannot converge: the CLI says step_limited with exit 4 (and results written).
    assert proc.returncode == 4, proc.stderr.decode()
    cli = json.loads((out / "results.json").read_text())
    assert cli["verdict"] == "step_limited"
    learner = d2r.BilevelRewardLearner(preset="paper", outer_steps=4, inner_steps=6, hidden=[8], seed=3, device="cpu")
    result = learner.fit(X, Y, progress=False)
    assert len(result.records) == len(cli["records"]) == 4
    for mine, theirs in zip(result.records, cli["records"]):
        assert mine["reward_params"] == theirs["reward_params"]  # bit for bit: same kernels, data, seed
        assert mine["hypergradient"] == theirs["hypergradient"]
        assert mine["train"]["nll_per_dim"] == theirs["train"]["nll_per_dim"]
    assert result.reward_params == cli["final"]["reward"]["params"]
    assert result.records[-1]["reward_params"] != result.records[0]["reward_params"]  # it moved
    assert result.policy_params.dtype == np.float32 and result.policy_params.shape == (d2r.parameter_count(2, [8], 2),)


def test_fit_nll_equals_the_cli(regression_csv, tmp_path):
    path, X, Y = regression_csv
    out = tmp_path / "cli"
    subprocess.run([cli_or_skip(), "fit", str(path), "--targets", "y", "--method", "nll", "--steps", "30",
                    "--hidden", "8", "--seed", "2", "--val-fraction", "0", "--device", "cpu", "--no-standardize-targets",
                    "--out", str(out), "-q"], check=True, capture_output=True)
    cli = json.loads((out / "results.json").read_text())
    result = d2r.fit(X, Y, method="nll", steps=30, hidden=[8], seed=2, lr=0.01, progress=False)
    assert result.records[-1]["train"]["nll_per_dim"] == cli["final"]["train"]["nll_per_dim"]
    assert result.records[-1]["train"]["nll_per_dim"] < result.records[0]["train"]["nll_per_dim"]


def test_checkpoint_resume_reproduces_the_uninterrupted_run(regression_csv, tmp_path):
    _, X, Y = regression_csv
    full = d2r.BilevelRewardLearner(preset="paper", outer_steps=4, inner_steps=3, hidden=[4], seed=1).fit(X, Y, progress=False)
    ckpt = tmp_path / "run.ckpt"
    d2r.BilevelRewardLearner(preset="paper", outer_steps=2, inner_steps=3, hidden=[4], seed=1).fit(X, Y, checkpoint=ckpt,
                                                                                  progress=False)
    resumed = d2r.BilevelRewardLearner(preset="paper", outer_steps=4, inner_steps=3, hidden=[4], seed=1).fit(
        X, Y, checkpoint=ckpt, resume=True, progress=False)
    assert resumed.reward_params == full.reward_params
    np.testing.assert_array_equal(resumed.policy_params, full.policy_params)
    assert [r["step"] for r in resumed.records] == [1, 2, 3, 4]


def test_classification_fit_and_bilevel():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 3)).astype(np.float32)
    labels = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int32) + (X[:, 2] > 1).astype(np.int32)
    res = d2r.fit(X, labels=labels, classes=3, method="nll", epochs=20, batch_size=0, lr=0.1, progress=False)
    assert len(res.records) == 20
    assert res.records[-1]["train"]["accuracy"] > 0.7 > res.records[0]["train"]["accuracy"] - 0.3
    bl = d2r.fit(X, labels=labels, classes=3, method="bilevel", preset="paper", outer_steps=2, inner_steps=3,
                 hidden=[], progress=False)
    assert len(bl.records) == 2 and len(bl.reward_params) == 1 and bl.reward_params[0] > 0


def test_bad_options_and_data_name_themselves(regression_csv):
    _, X, Y = regression_csv
    with pytest.raises(ValueError, match="'inner_stepz'.*unknown option"):
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1, inner_stepz=3).fit(X, Y, progress=False)
    with pytest.raises(ValueError, match="'solver'"):
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1, solver="lu").fit(X, Y, progress=False)
    with pytest.raises(ValueError, match="'y'.*float32"):
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1).fit(X, Y.astype(np.float64), progress=False)
    with pytest.raises(ValueError, match="'method'"):
        d2r.fit(X, Y, method="sgd")
    bad = Y.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="y"):
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1).fit(X, bad, progress=False)


def test_fit_on_torch_tensors_allocates_in_torch(device):
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    X = torch.randn(30, 2, device=device)
    Y = X[:, :1] * 2
    res = d2r.fit(X, Y, method="mse", steps=5, hidden=[4], progress=False)
    assert isinstance(res.policy_params, torch.Tensor) and res.policy_params.shape == (d2r.parameter_count(2, [4], 2),)
    assert res.policy_params.device.type == device
    assert torch.isfinite(res.policy_params).all()


def test_fixed_inner_start_equals_the_cli(regression_csv, tmp_path):
    # inner_start='fixed': every outer step starts from the same θ₀, as `d2r fit --inner-start fixed`.
    path, X, Y = regression_csv
    out = tmp_path / "cli"
    proc = subprocess.run([cli_or_skip(), "fit", str(path), "--targets", "y", "--method", "bilevel", "--outer-steps", "3",
                           "--inner-steps", "5", "--hidden", "8", "--seed", "4", "--val-fraction", "0", "--device",
                           "cpu", "--preset", "paper", "--inner-start", "fixed", "--no-standardize-targets", "--out",
                           str(out), "-q"], capture_output=True)
    assert proc.returncode in (0, 4), proc.stderr.decode()
    cli = json.loads((out / "results.json").read_text())
    result = d2r.BilevelRewardLearner(preset="paper", outer_steps=3, inner_steps=5, hidden=[8], seed=4, inner_start="fixed",
                                      device="cpu").fit(X, Y, progress=False)
    assert [r["reward_params"] for r in result.records] == [r["reward_params"] for r in cli["records"]]
    warm = d2r.BilevelRewardLearner(preset="paper", outer_steps=3, inner_steps=5, hidden=[8], seed=4, device="cpu").fit(
        X, Y, progress=False)
    assert [r["train"]["nll_per_dim"] for r in warm.records] != [r["train"]["nll_per_dim"] for r in result.records]
    with pytest.raises(ValueError, match="inner_start"):
        d2r.BilevelRewardLearner(preset="paper", outer_steps=3, inner_start="cold").fit(X, Y, progress=False)


def test_final_model_best_equals_the_cli(regression_csv, tmp_path):
    # final_model='best': the best-judged step's policy and the reward it was trained at, as `d2r fit
    # --final-model best` (here the paper preset: every step counts as stationary, the outer loss on the training rows).
    path, X, Y = regression_csv
    out = tmp_path / "cli"
    proc = subprocess.run([cli_or_skip(), "fit", str(path), "--targets", "y", "--method", "bilevel", "--outer-steps", "6",
                           "--inner-steps", "5", "--hidden", "8", "--seed", "4", "--val-fraction", "0", "--device",
                           "cpu", "--preset", "paper", "--inner-start", "warm", "--no-standardize-targets",
                           "--final-model", "best", "--out", str(out), "-q"], capture_output=True)
    assert proc.returncode in (0, 4), proc.stderr.decode()
    cli = json.loads((out / "results.json").read_text())
    learner = d2r.BilevelRewardLearner(preset="paper", outer_steps=6, inner_steps=5, hidden=[8], seed=4, device="cpu",
                                       final_model="best")
    result = learner.fit(X, Y, progress=False)
    losses = [r["outer_loss"] for r in result.records]
    best = 1 + losses.index(min(losses))
    assert cli["final"]["model"]["source"] == "best"
    assert learner.model_step_ == learner.best_step_ == cli["final"]["model"]["outer_step"] == best
    assert result.reward_params == cli["final"]["reward"]["params_standardized"]
    before = result.records[best - 2]["reward_params"] if best >= 2 else [1.0]
    assert result.reward_params == before
    last = d2r.BilevelRewardLearner(preset="paper", outer_steps=6, inner_steps=5, hidden=[8], seed=4, device="cpu").fit(
        X, Y, progress=False)
    assert last.reward_params == result.records[-1]["reward_params"]
    assert (best == 6) == np.array_equal(np.asarray(last.policy_params), np.asarray(result.policy_params))
    with pytest.raises(ValueError, match="final_model"):
        d2r.BilevelRewardLearner(final_model="newest")


def test_recommended_preset_is_the_default_and_equals_the_cli(regression_csv, tmp_path):
    # preset='recommended' (the default, as `d2r fit`): log-space Rprop, the exact-gradient warm inner
    # policy trained until stationary, the loose damped solve, and a stop at the verdict. The CLI's
    # run on the training rows (--outer-data train, no validation rows) gives the same steps, verdict
    # and reward bit for bit; the CLI's warnings are the learner's, in the Python keywords' words.
    path, X, Y = regression_csv
    out = tmp_path / "cli"
    proc = subprocess.run([cli_or_skip(), "fit", str(path), "--targets", "y", "--method", "bilevel", "--outer-steps",
                           "40", "--hidden", "8", "--seed", "5", "--val-fraction", "0", "--outer-data", "train",
                           "--device", "cpu", "--no-standardize-targets", "--out", str(out), "-q"], capture_output=True)
    assert proc.returncode in (0, 4), proc.stderr.decode()
    cli = json.loads((out / "results.json").read_text())
    learner = d2r.BilevelRewardLearner(outer_steps=40, hidden=[8], seed=5, outer_data="train", device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = learner.fit(X, Y, progress=False)
    assert len(result.records) == len(cli["records"]) >= 2
    for mine, theirs in zip(result.records, cli["records"]):
        assert mine["reward_params"] == theirs["reward_params"]
        assert mine["inner_steps"] == theirs["inner_steps"]
    assert result.records[0]["inner_steps"] >= 20  # the preset's K_in, not the paper's 50 REINFORCE steps
    assert result.verdict == learner.verdict_ == cli["verdict"]
    assert (proc.returncode == 0) == (result.verdict == "converged")
    assert result.reason == cli["reason"] and result.reason
    assert learner.final_model == "best" and result.reward_params == cli["final"]["reward"]["params"]
    assert len(result.warnings) == len(cli["warnings"])
    assert [str(w.message) for w in caught if issubclass(w.category, d2r.BilevelWarning)] == result.warnings
    assert not any("--" in w for w in result.warnings)


def test_recommended_preset_needs_held_out_rows(regression_csv):
    _, X, Y = regression_csv
    with pytest.raises(d2r.ArgumentError, match="'val_X'.*held-out rows"):
        d2r.BilevelRewardLearner(outer_steps=2).fit(X, Y, progress=False)
    with pytest.raises(d2r.ArgumentError, match="'preset'"):
        d2r.BilevelRewardLearner(preset="fast")
    with pytest.raises(ValueError, match="'outer_optimizer'"):
        d2r.BilevelRewardLearner(outer_optimizer="lbfgs", outer_data="train").fit(X, Y, progress=False)
    # The library's checks name the dict key, not the library's field.
    for key, value in (("inner_tolerance", -1.0), ("inner_max_steps", -3), ("outer_step", 0.0), ("window", 1),
                       ("loss_tolerance", 0.0), ("solver_tolerance", float("nan")), ("inner_lr", -0.1)):
        with pytest.raises(d2r.ArgumentError, match=f"argument '{key}'") as e:
            d2r.BilevelRewardLearner(outer_data="train", **{key: value}).fit(X, Y, progress=False)
        assert e.value.argument == key and "options." not in str(e.value)


def test_stationary_preset_reward_reproduces_its_model():
    # preset='stationary': every outer step retrains from one θ₀ to stationarity, so the reward it
    # reports reproduces its model: one outer step of the same options at that reward trains the
    # same policy bit for bit (as `d2r fit --preset stationary --beta B --outer-steps 1`).
    rng = np.random.default_rng(7)
    X = rng.normal(size=(160, 4)).astype(np.float32)
    labels = (X[:, 0] - 0.7 * X[:, 1] + 0.8 * rng.normal(size=160) > 0).astype(np.int32)
    data = dict(labels=labels[:120], classes=2, val_X=X[120:], val_labels=labels[120:])
    learner = d2r.BilevelRewardLearner(preset="stationary", outer_steps=60, seed=2, device="cpu")
    result = learner.fit(X[:120], progress=False, **data)
    assert result.verdict == "converged", result.reason
    assert all(r["inner_steps"] > 20 or r["inner_steps"] == 0 for r in result.records)  # trained to the tolerance
    again = d2r.BilevelRewardLearner(preset="stationary", outer_steps=1, seed=2, device="cpu",
                                     reward_init=result.reward_params).fit(X[:120], progress=False, **data)
    np.testing.assert_array_equal(again.policy_params, result.policy_params)
    assert again.records[0]["outer_loss"] == min(r["outer_loss"] for r in result.records if r["inner_stationary"])


def test_a_diverged_run_raises(regression_csv):
    # A reward at its floor or ceiling is `diverged` (the CLI exits 3): the learner raises, and keeps the run.
    _, X, Y = regression_csv
    learner = d2r.BilevelRewardLearner(preset="paper", outer_steps=5, inner_steps=3, hidden=[4], seed=1,
                                       reward_floor=0.995, reward_ceiling=1.005, device="cpu")
    with pytest.raises(d2r.BilevelDivergedError, match="diverged: reward parameter 0 reached its") as e:
        learner.fit(X, Y, progress=False)
    assert e.value.learner is learner and learner.verdict_ == "diverged" and len(learner.history_) == 1
