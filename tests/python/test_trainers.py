"""The trainers from Python: d2r.fit and d2r.BilevelRewardLearner equal `d2r fit` on the same data,
settings and seed (with the targets standardised, the default of both, or as given); checkpoints
resume bit for bit; bad options name themselves."""

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
    learner = d2r.BilevelRewardLearner(preset="paper", outer_steps=4, inner_steps=6, hidden=[8], seed=3, device="cpu",
                                       standardize_targets=False)
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
    result = d2r.fit(X, Y, method="nll", steps=30, hidden=[8], seed=2, lr=0.01, progress=False, standardize_targets=False)
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
    # As `d2r fit --preset paper`: the outer cross-entropy on the training rows, held-out rows or not;
    # the recommended preset's on the held-out ones.
    for preset, part in (("paper", "train"), ("recommended", "validation")):
        r = d2r.fit(X[:40], labels=labels[:40], classes=3, val_X=X[40:], val_labels=labels[40:], method="bilevel",
                    preset=preset, outer_steps=1, hidden=[], progress=False)
        assert r.records[0]["outer_loss"] == r.records[0][part]["nll_per_dim"] != r.records[0]["validation" if
                                                                                             part == "train" else
                                                                                             "train"]["nll_per_dim"]


def test_bad_options_and_data_name_themselves(regression_csv):
    _, X, Y = regression_csv
    with pytest.raises(ValueError, match="'inner_stepz'.*unknown option"):
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1, inner_stepz=3).fit(X, Y, progress=False)
    with pytest.raises(ValueError, match="'solver'"):
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1, solver="lu").fit(X, Y, progress=False)
    with pytest.raises(ValueError, match="argument 'Y': dtype float64 differs from X's float32"):
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1).fit(X, Y.astype(np.float64), progress=False)
    with pytest.raises(ValueError, match="'method'"):
        d2r.fit(X, Y, method="sgd")
    bad = Y.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"argument 'Y': Y\[3, 0\] is nan"):  # standardising the targets
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1).fit(X, bad, progress=False)
    with pytest.raises(ValueError, match=r"argument 'Y': element \(3, 0\) is nan"):
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1, standardize_targets=False).fit(X, bad, progress=False)


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
                                      device="cpu", standardize_targets=False).fit(X, Y, progress=False)
    assert [r["reward_params"] for r in result.records] == [r["reward_params"] for r in cli["records"]]
    warm = d2r.BilevelRewardLearner(preset="paper", outer_steps=3, inner_steps=5, hidden=[8], seed=4, device="cpu",
                                    standardize_targets=False).fit(X, Y, progress=False)
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
                                       final_model="best", standardize_targets=False)
    result = learner.fit(X, Y, progress=False)
    losses = [r["outer_loss"] for r in result.records]
    best = 1 + losses.index(min(losses))
    assert cli["final"]["model"]["source"] == "best"
    assert learner.model_step_ == learner.best_step_ == cli["final"]["model"]["outer_step"] == best
    assert result.reward_params == cli["final"]["reward"]["params_standardized"]
    before = result.records[best - 2]["reward_params"] if best >= 2 else [1.0]
    assert result.reward_params == before
    last = d2r.BilevelRewardLearner(preset="paper", outer_steps=6, inner_steps=5, hidden=[8], seed=4, device="cpu",
                                    standardize_targets=False).fit(X, Y, progress=False)
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
    learner = d2r.BilevelRewardLearner(outer_steps=40, hidden=[8], seed=5, outer_data="train", device="cpu",
                                       standardize_targets=False)
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
    assert learner.final_model_ == "best" and result.reward_params == cli["final"]["reward"]["params"]
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
                       ("loss_tolerance", 0.0), ("patience", -1), ("solver_tolerance", float("nan")), ("inner_lr", -0.1)):
        with pytest.raises(d2r.ArgumentError, match=f"argument '{key}'") as e:
            d2r.BilevelRewardLearner(outer_data="train", **{key: value}).fit(X, Y, progress=False)
        assert e.value.argument == key and "options." not in str(e.value)


def test_patience_stops_as_the_cli(regression_csv, tmp_path):
    # patience=P (`d2r fit --patience P`): the run ends `converged` P outer steps after its best-judged
    # one when no later step had a lower outer loss; the same steps and reason as the CLI's.
    path, X, Y = regression_csv
    out = tmp_path / "cli"
    proc = subprocess.run([cli_or_skip(), "fit", str(path), "--targets", "y", "--method", "bilevel", "--outer-steps",
                           "40", "--hidden", "8", "--seed", "5", "--val-fraction", "0", "--outer-data", "train",
                           "--device", "cpu", "--no-standardize-targets", "--patience", "1", "--out", str(out), "-q"],
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    cli = json.loads((out / "results.json").read_text())
    learner = d2r.BilevelRewardLearner(outer_steps=40, hidden=[8], seed=5, outer_data="train", device="cpu",
                                       standardize_targets=False, patience=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = learner.fit(X, Y, progress=False)
    assert result.verdict == cli["verdict"] == "converged"
    assert result.reason == cli["reason"] and result.reason.startswith("early stop")
    assert len(result.records) == len(cli["records"]) < 40
    assert [r["reward_params"] for r in result.records] == [r["reward_params"] for r in cli["records"]]
    assert cli["final"]["model"]["outer_step"] == len(cli["records"]) - 1


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


# ---------------------------------------------------------------------------- target scaling
# `d2r fit` standardises regression targets by default (y ← (y − mean) / s, column means, one scale s
# for every dimension: the RMS of the columns' standard deviations over N − 1); so do d2r.fit and
# BilevelRewardLearner, with the library's computation (d2r::standardize_targets, bound), so the
# two agree bit for bit when the CSV holds the float32 values exactly.


@pytest.fixture(scope="module")
def large_scale_csv(tmp_path_factory):
    # Targets far from z-scored: y ≈ 150 ± 77 (two dimensions, different means and spreads).
    rng = np.random.default_rng(11)
    x = rng.normal(size=(60, 2)).astype(np.float32)
    y = np.stack([150 + 70 * x[:, 0] - 30 * x[:, 1] + 8 * rng.normal(size=60),
                  -20 + 10 * x[:, 1] + 3 * rng.normal(size=60)], axis=1).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "large.csv"
    # %.17g of the float32 values (as doubles): the CLI reads exactly the values Python passes.
    np.savetxt(path, np.hstack([x, y]).astype(np.float64), delimiter=",", header="a,b,y1,y2", comments="",
               fmt="%.17g")
    return path, x, y


def test_fit_standardizes_targets_as_the_cli(large_scale_csv, tmp_path):
    path, X, Y = large_scale_csv
    Y_before = Y.copy()
    out = tmp_path / "nll"
    subprocess.run([cli_or_skip(), "fit", str(path), "--targets", "y1,y2", "--method", "nll", "--steps", "40",
                    "--hidden", "8", "--seed", "2", "--val-fraction", "0", "--device", "cpu", "--out", str(out), "-q"],
                   check=True, capture_output=True)
    cli = json.loads((out / "results.json").read_text())
    result = d2r.fit(X, Y, method="nll", steps=40, hidden=[8], seed=2, progress=False)  # standardised by default
    np.testing.assert_array_equal(Y, Y_before)  # the caller's targets are only read
    scaling = cli["config"]["data"]["target_standardization"]
    assert result.target_mean == scaling["mean"] and result.target_scale == scaling["scale"]
    assert result.target_scale > 30
    assert len(result.records) == len(cli["records"]) == 40
    for mine, theirs in zip(result.records, cli["records"]):  # metrics in the original units, bit for bit
        assert mine["train"]["nll_per_dim"] == theirs["train"]["nll_per_dim"]
        assert mine["train"]["rmse"] == theirs["train"]["rmse"]
        assert mine["train"]["mean_std"] == theirs["train"]["mean_std"]
    assert result.records[-1]["train"]["rmse"] == cli["final"]["train"]["rmse"]
    unscaled = d2r.fit(X, Y, method="nll", steps=40, hidden=[8], seed=2, progress=False, standardize_targets=False)
    assert unscaled.target_mean is None and unscaled.target_scale == 1.0
    assert unscaled.records[-1]["train"]["rmse"] != result.records[-1]["train"]["rmse"]

    # pg with a fixed reward given on the standardised targets (as --u): the reward in both scales.
    out = tmp_path / "pg"
    subprocess.run([cli_or_skip(), "fit", str(path), "--targets", "y1,y2", "--method", "pg", "--steps", "10",
                    "--reward", "diagonal", "--u", "2,0.5", "--hidden", "8", "--seed", "2", "--val-fraction", "0",
                    "--device", "cpu", "--out", str(out), "-q"], check=True, capture_output=True)
    cli = json.loads((out / "results.json").read_text())
    result = d2r.fit(X, Y, method="pg", steps=10, hidden=[8], seed=2, reward_form="diagonal", reward_params=[2.0, 0.5],
                     progress=False)
    assert result.reward_params == cli["final"]["reward"]["params"]
    assert result.reward_params_standardized == cli["final"]["reward"]["params_standardized"] == [2.0, 0.5]
    assert result.target_scale == cli["final"]["reward"]["target_scale"]
    assert [r["train"]["nll_per_dim"] for r in result.records] == [r["train"]["nll_per_dim"] for r in cli["records"]]


def test_bilevel_learner_standardizes_targets_as_the_cli(large_scale_csv, tmp_path):
    # The recommended preset on the training rows (no validation rows, as the CLI with
    # --val-fraction 0 --outer-data train), both with their default target scaling.
    path, X, Y = large_scale_csv
    Y_before = Y.copy()
    out = tmp_path / "cli"
    proc = subprocess.run([cli_or_skip(), "fit", str(path), "--targets", "y1,y2", "--method", "bilevel",
                           "--reward", "diagonal", "--outer-steps", "12", "--hidden", "8", "--seed", "5",
                           "--val-fraction", "0", "--outer-data", "train", "--device", "cpu", "--out", str(out), "-q"],
                          capture_output=True)
    assert proc.returncode in (0, 4), proc.stderr.decode()
    cli = json.loads((out / "results.json").read_text())
    learner = d2r.BilevelRewardLearner(reward_form="diagonal", outer_steps=12, hidden=[8], seed=5, outer_data="train",
                                       device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", d2r.BilevelWarning)
        result = learner.fit(X, Y, progress=False)
    np.testing.assert_array_equal(Y, Y_before)
    assert learner.target_scale_ == result.target_scale == cli["final"]["reward"]["target_scale"] > 30
    assert learner.target_mean_ == result.target_mean == cli["config"]["data"]["target_standardization"]["mean"]
    assert len(result.records) == len(cli["records"]) >= 2
    for mine, theirs in zip(result.records, cli["records"]):
        assert mine["reward_params"] == theirs["reward_params"]  # on the standardised targets, as the CLI's
        assert mine["hypergradient"] == theirs["hypergradient"]
        assert mine["outer_loss"] == theirs["outer_loss"]  # in the original units
        assert all(mine["train"][k] == theirs["train"][k] for k in ("nll_per_dim", "rmse", "mean_std"))
    assert result.reward_params == learner.reward_params_ == cli["final"]["reward"]["params"]
    assert result.reward_params_standardized == cli["final"]["reward"]["params_standardized"]
    s2 = result.target_scale ** 2
    assert result.reward_params == [u / s2 for u in result.reward_params_standardized]
    assert result.verdict == cli["verdict"] and len(result.warnings) == len(cli["warnings"])


def test_raw_large_scale_targets_train_with_the_default(device):
    # Issue 13: targets of y ≈ 150 ± 77 fail silently as given (NLL far from the mean in 400 steps);
    # standardised by default, they train, and the caller's arrays (NumPy or PyTorch, on their
    # device) are left as they were.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(240, 2)).astype(np.float32)
    y = (150 + 77 * (0.8 * x[:, :1] - 0.6 * x[:, 1:]) + 5 * rng.normal(size=(240, 1))).astype(np.float32)
    X, Y, vX, vY = x[:200], y[:200], x[200:], y[200:]
    noise_rmse = 5.0
    if device == "cuda":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("torch sees no CUDA device")
        X, Y, vX, vY = (torch.from_numpy(a).to("cuda") for a in (X, Y, vX, vY))
    Y_before, vY_before = (a.clone() if device == "cuda" else a.copy() for a in (Y, vY))
    res = d2r.fit(X, Y, val_X=vX, val_Y=vY, method="nll", hidden=[16], seed=1, progress=False)
    raw = d2r.fit(X, Y, val_X=vX, val_Y=vY, method="nll", hidden=[16], seed=1, progress=False, standardize_targets=False)
    assert res.target_scale == pytest.approx(float(y[:200].astype(np.float64).std(ddof=1)), rel=1e-12)
    assert res.records[-1]["validation"]["rmse"] < 2 * noise_rmse
    assert raw.records[-1]["validation"]["rmse"] > 10 * noise_rmse  # as given: nowhere near
    if device == "cuda":
        assert Y.device.type == "cuda" and bool((Y == Y_before).all()) and bool((vY == vY_before).all())
        assert res.policy_params.device.type == "cuda"
    else:
        np.testing.assert_array_equal(Y, Y_before)
        np.testing.assert_array_equal(vY, vY_before)
    # The bilevel learner (recommended preset, validation rows): a usable reward, the hypergradient
    # off its clamp, the metrics in the original units.
    learner = d2r.BilevelRewardLearner(outer_steps=30, hidden=[16], seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", d2r.BilevelWarning)
        bl = learner.fit(X, Y, val_X=vX, val_Y=vY, progress=False)
    assert bl.verdict in ("converged", "step_limited")
    assert not all(r["hypergradient_clamped"] for r in bl.records)
    assert bl.records[-1]["validation"]["rmse"] < 2 * noise_rmse
    assert bl.reward_params[0] == pytest.approx(bl.reward_params_standardized[0] / bl.target_scale ** 2, rel=1e-12)
    if device == "cpu":
        np.testing.assert_array_equal(Y, Y_before)


def test_target_scaling_of_validation_rows_is_the_training_rows():
    # val_Y is scaled with the training rows' mean and scale: the same rows as both give the same metrics.
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 3)).astype(np.float32)
    Y = (40 + 9 * X[:, :2] + rng.normal(size=(50, 2))).astype(np.float32)
    res = d2r.fit(X, Y, val_X=X, val_Y=Y, method="mse", steps=20, hidden=[4], progress=False)
    keys = ("nll_per_dim", "rmse", "mean_std")
    assert [[r["train"][k] for k in keys] for r in res.records] == [[r["validation"][k] for k in keys] for r in res.records]
    with pytest.raises(d2r.ArgumentError, match="argument 'val_Y': expected 2 columns"):
        d2r.fit(X, Y, val_X=X, val_Y=Y[:, :1].copy(), method="mse", steps=2, progress=False)


def test_constant_targets_raise_naming_Y():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 2)).astype(np.float32)
    Y = np.ones((200, 1), np.float32)  # the mean of 200 ones rounds: the check is exact
    for call in (lambda: d2r.fit(X, Y, method="nll", steps=2, progress=False),
                 lambda: d2r.BilevelRewardLearner(preset="paper", outer_steps=1).fit(X, Y, progress=False)):
        with pytest.raises(d2r.ArgumentError, match="argument 'Y': the targets are constant.*standardize_targets=False"):
            call()
    res = d2r.fit(X, Y, method="mse", steps=2, hidden=[4], progress=False, standardize_targets=False)
    assert res.target_mean is None and res.target_scale == 1.0
    two = np.stack([np.full(200, 3.0), np.full(200, -1.0)], axis=1).astype(np.float32)  # every column constant
    with pytest.raises(d2r.ArgumentError, match="argument 'Y': the targets are constant"):
        d2r.fit(X, two, method="mse", steps=2, progress=False)
    one_varies = two.copy()
    one_varies[0, 1] = 0.0  # one column varies: one scale for both is fine
    assert d2r.fit(X, one_varies, method="mse", steps=2, hidden=[4], progress=False).target_scale > 0
    with pytest.raises(d2r.ArgumentError, match="argument 'Y'.*at least 2 rows"):
        d2r.fit(X[:1], Y[:1] + 1, method="mse", steps=2, progress=False)


def test_standardize_targets_is_for_regression():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 2)).astype(np.float32)
    labels = (X[:, 0] > 0).astype(np.int32)
    with pytest.raises(d2r.ArgumentError, match="argument 'standardize_targets': only for regression"):
        d2r.fit(X, labels=labels, classes=2, method="nll", epochs=1, standardize_targets=True)
    with pytest.raises(d2r.ArgumentError, match="argument 'standardize_targets': only for regression"):
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1, standardize_targets=True).fit(
            X, labels=labels, classes=2, progress=False)
    with pytest.raises(d2r.ArgumentError, match="'standardize_targets': expected True or False"):
        d2r.BilevelRewardLearner(standardize_targets="yes")
    # The default (and False) are fine for classification.
    res = d2r.fit(X, labels=labels, classes=2, method="nll", epochs=2, progress=False)
    assert res.target_mean is None and res.target_scale == 1.0
    d2r.fit(X, labels=labels, classes=2, method="nll", epochs=2, progress=False, standardize_targets=False)


def test_a_fit_with_non_finite_results_raises_and_keeps_them(regression_csv):
    # As `d2r fit` (exit 3): targets of 1e30 overflow the NLL; the run must not end as a success.
    _, X, Y = regression_csv
    with pytest.raises(d2r.FitDivergedError, match="non-finite final figures") as e:
        d2r.fit(X, Y * 1e30, method="nll", lr=10.0, steps=20, hidden=[8], standardize_targets=False, progress=False)
    assert isinstance(e.value.result, d2r.FitResult) and len(e.value.result.records) == 20
    assert e.value.reason.startswith("non-finite final figures: ")
    assert issubclass(d2r.BilevelDivergedError, d2r.FitDivergedError)


def test_data_keywords_of_the_other_task_or_half_a_pair_are_refused(regression_csv):
    _, X, Y = regression_csv
    labels = (X[:, 0] > 0).astype(np.int32)
    cases = [
        (dict(Y=Y, labels=labels, classes=2), "'Y': not used by classification"),
        (dict(Y=Y, labels=labels), "'labels': not used by regression"),
        (dict(Y=Y, val_labels=labels), "'val_labels': not used by regression"),
        (dict(Y=Y, val_Y=Y), "'val_X': val_X and val_Y go together"),
        (dict(Y=Y, val_X=X), "'val_Y': val_X and val_Y go together"),
        (dict(labels=labels, classes=2, val_labels=labels), "'val_X': val_X and val_labels go together"),
        (dict(Y=Y[:30]), "'Y': 30 rows, X has 40"),
        (dict(Y=Y[:, 0]), "'Y': expected 2 dimensions"),
        (dict(Y=Y.tolist()), "'Y': expected an array"),
        (dict(Y=Y[:0]), "'Y': no rows"),
        (dict(Y=Y, val_X=X[:, :1], val_Y=Y), "'val_X': expected 2 columns"),
        (dict(labels=labels, classes=1), "'classes': expected 0 \\(regression\\) or at least 2"),
        (dict(labels=labels, classes=2.7), "'classes': expected an integer"),
    ]
    for method in ("nll", "bilevel"):
        for kw, message in cases:
            with pytest.raises(ValueError, match=message):
                d2r.fit(X, method=method, outer_steps=1, progress=False, **kw) if method == "bilevel" else \
                    d2r.fit(X, method=method, progress=False, **kw)
    bad = X.copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="argument 'X'"):  # the library's 'train.x', in the user's word
        d2r.fit(bad, Y, method="nll", steps=2, progress=False)
    with pytest.raises(ValueError, match="argument 'labels'"):
        d2r.fit(X, labels=np.full(40, 5, np.int32), classes=2, method="nll", progress=False)


def test_numbers_that_are_not_numbers_are_refused(regression_csv):
    _, X, Y = regression_csv
    for kw, name in [(dict(outer_steps=True), "outer_steps"), (dict(outer_steps=2.9), "outer_steps"),
                     (dict(outer_steps="2"), "outer_steps"), (dict(outer_steps=0), "outer_steps"),
                     (dict(reward_init="12"), "reward_init"), (dict(reward_init=[True]), "reward_init"),
                     (dict(threads=0), "threads"), (dict(seed=-1), "seed"), (dict(inner_steps=True), "inner_steps"),
                     (dict(head="cholesky"), "head")]:
        with pytest.raises(ValueError, match=f"'{name}'"):
            d2r.BilevelRewardLearner(preset="paper", **{"outer_steps": 1, **kw}).fit(X, Y, progress=False)
    for kw, name in [(dict(steps=True), "steps"), (dict(lr=True), "lr"), (dict(hidden=[4.5]), "hidden"),
                     (dict(entropy_weight=0.5), "entropy_weight"), (dict(reward_params=[2.0]), "reward_params"),
                     (dict(generations=4), "generations"), (dict(seed=-1), "seed")]:
        with pytest.raises(ValueError, match=f"'{name}'"):
            d2r.fit(X, Y, method="nll", progress=False, **kw)


def test_a_refused_fit_leaves_the_learner_and_the_checkpoint_as_they_were(regression_csv, tmp_path):
    _, X, Y = regression_csv
    ckpt = tmp_path / "run.ckpt"
    learner = d2r.BilevelRewardLearner(preset="paper", outer_steps=2, inner_steps=3, hidden=[8])
    with pytest.raises(ValueError, match="'checkpoint': .* is not a file in a writable folder"):
        learner.fit(X, Y, progress=False, checkpoint=tmp_path / "missing" / "x.ckpt")
    assert learner.trainer_ is None  # refused before any training
    with pytest.raises(ValueError, match="'checkpoint_every': needs checkpoint="):
        learner.fit(X, Y, progress=False, checkpoint_every=1)
    learner.fit(X, Y, progress=False, checkpoint=ckpt)
    before = (learner.trainer_, learner.target_scale_, learner.target_mean_, list(learner.history_),
              list(learner.reward_params_), ckpt.read_bytes())
    with pytest.raises(ValueError, match="'checkpoint': .* exists: resume=True continues it, overwrite=True"):
        learner.fit(X, Y, progress=False, checkpoint=ckpt)
    with pytest.raises(ValueError, match="'Y': dtype float64"):
        learner.fit(X, Y.astype(np.float64) * 10, progress=False)
    with pytest.raises(ValueError, match="'resume': no checkpoint"):
        learner.fit(X, Y, progress=False, checkpoint=tmp_path / "other.ckpt", resume=True)
    after = (learner.trainer_, learner.target_scale_, learner.target_mean_, list(learner.history_),
             list(learner.reward_params_), ckpt.read_bytes())
    assert after == before
    learner.fit(X, Y, progress=False, checkpoint=ckpt, overwrite=True)
    assert learner.trainer_ is not before[0] and learner.trainer_.steps_done == 2


def test_options_of_another_optimiser_or_solver_are_refused(regression_csv):
    # d2r::inert_fields: a key that sets only fields the settings never read would do nothing.
    _, X, Y = regression_csv
    for kw, message in [(dict(outer_lr=0.1), "'outer_lr': not used with outer_optimizer='rprop'"),
                        (dict(preset="paper", outer_step=0.2), "'outer_step': not used with outer_optimizer='adam'"),
                        (dict(preset="paper", flat_tolerance=0.2), "'flat_tolerance': not used"),
                        (dict(neumann_alpha=0.5), "'neumann_alpha': not used with solver='normal_cg'"),
                        (dict(solver="neumann", solver_iterations=5), "'solver_iterations': not used with solver='neumann'")]:
        with pytest.raises(ValueError, match=message):
            d2r.fit(X[:30], Y[:30], val_X=X[30:], val_Y=Y[30:], method="bilevel", outer_steps=1, hidden=[4],
                    progress=False, **kw)
    for kw in (dict(preset="paper", outer_lr=0.05), dict(outer_optimizer="adam", outer_lr=0.05)):  # used there
        r = d2r.fit(X[:30], Y[:30], val_X=X[30:], val_Y=Y[30:], method="bilevel", outer_steps=1, hidden=[4],
                    progress=False, **kw)
        assert len(r.records) == 1


def _classes3(rows=60, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3)).astype(np.float32)
    labels = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int32) + (X[:, 2] > 1).astype(np.int32)
    return X, labels


def test_final_model_pg_retrains_pg_at_the_learned_beta():
    # `d2r fit --final-model pg`: PG afresh at the learned β with the inner steps' lr, G, λ and objective.
    X, labels = _classes3()
    data = dict(labels=labels[:40], classes=3, val_X=X[40:], val_labels=labels[40:])
    for preset, objective, tail in (("recommended", "exact", 1), ("paper", "reinforce", 10)):
        kw = dict(preset=preset, outer_steps=12, hidden=[], seed=5, epochs=3, batch_size=16)
        if preset == "recommended":
            kw["final_model"] = "pg"  # the paper preset's default for classification
        learner = d2r.BilevelRewardLearner(**kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", d2r.BilevelWarning)
            r = learner.fit(X[:40], progress=False, **data)
        betas = [rec["reward_params"][0] for rec in r.records]
        assert learner.trainer_.inner_objective == objective
        assert r.reward_params == [sum(betas[-min(tail, len(betas)):]) / min(tail, len(betas))]
        assert len(r.pg_records) == 3 and learner.model_step_ is None and learner.final_model_ == "pg"
        sampled = dict(generations=50) if objective == "reinforce" else {}  # exact: nothing is sampled
        same = d2r.fit(X[:40], method="pg", reward_params=r.reward_params, epochs=3, batch_size=16, lr=0.05,
                       entropy_weight=1.0, objective=objective, hidden=[], seed=5, progress=False, **sampled, **data)
        np.testing.assert_array_equal(r.policy_params, same.policy_params)  # bit for bit
        for k in ("nll_per_dim", "accuracy"):
            assert r.pg_records[-1]["validation"][k] == same.records[-1]["validation"][k]
        # ... and not the inner policy the outer loop judged
        assert not np.array_equal(r.policy_params, learner.trainer_.policy_params())


def test_final_model_pg_and_sampling_keywords_are_refused_where_unused(regression_csv):
    _, X, Y = regression_csv
    Xc, labels = _classes3()
    cls = dict(labels=labels[:40], classes=3, val_X=Xc[40:], val_labels=labels[40:], progress=False)
    reg = dict(val_X=X[30:], val_Y=Y[30:], progress=False)
    cases = [(dict(final_model="pg"), X[:30], dict(Y=Y[:30], **reg), "'final_model': 'pg' retrains a classifier"),
             (dict(epochs=3), Xc[:40], cls, "'epochs': used by the PG epochs of final_model='pg' only"),
             (dict(preset="paper", final_model="last", batch_size=8), Xc[:40], cls, "'batch_size': used by"),
             (dict(final_model="pg", epochs=0), Xc[:40], cls, "'epochs'"),
             # the recommended and stationary presets draw nothing (so neither do their PG epochs)
             (dict(generations=8), X[:30], dict(Y=Y[:30], **reg),
              "'generations': not used with inner_objective='exact' and curvature='exact'"),
             (dict(final_model="pg", generations=8), Xc[:40], cls, "'generations': not used"),
             (dict(preset="stationary", transform="leave_one_out"), Xc[:40], cls, "'transform': not used")]
    for kw, x, data, message in cases:
        learner = d2r.BilevelRewardLearner(outer_steps=1, hidden=[], **kw)
        with pytest.raises(ValueError, match=message):
            learner.fit(x, **data)
        assert learner.trainer_ is None  # refused before anything ran
    with pytest.raises(ValueError, match="'final_model'"):
        d2r.BilevelRewardLearner(final_model="inner")
    with pytest.raises(ValueError, match="'objective': not used by method='nll'"):
        d2r.fit(Xc[:40], method="nll", objective="exact", epochs=1, **cls)
    r = d2r.BilevelRewardLearner(outer_steps=1, final_model="pg", epochs=1, batch_size=0).fit(Xc[:40], **cls)
    assert len(r.pg_records) == 1  # batch_size=0: every row, as `d2r fit --batch-size 0`
    for key, value in (("generations", 4), ("transform", "rbf")):  # the plain trainers' exact objective, alike
        with pytest.raises(ValueError, match=f"'{key}': not used with objective='exact'"):
            d2r.fit(Xc[:40], method="pg", objective="exact", epochs=1, **{key: value}, **cls)
    # Where something is sampled, G is taken: REINFORCE inner steps (the paper preset), the surrogate's curvature.
    for kw in (dict(preset="paper"), dict(curvature="surrogate"), dict(inner_objective="reinforce")):
        r = d2r.fit(Xc[:40], method="bilevel", outer_steps=1, hidden=[], generations=4, epochs=1, **kw, **cls) \
            if kw.get("preset") == "paper" else \
            d2r.fit(Xc[:40], method="bilevel", outer_steps=1, hidden=[], generations=4, **kw, **cls)
        assert len(r.records) == 1
