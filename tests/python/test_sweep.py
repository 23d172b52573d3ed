"""d2r.sweep: `d2r sweep` on arrays (the same rows, options and seed give the same losses bit for bit),
the judged learned rewards with their own learner, and bad arguments naming themselves."""

import json
import math
import os
import subprocess
import warnings

import numpy as np
import pytest

import d2r


def cli_or_skip():
    path = os.environ.get("D2R_CLI")
    if not path or not os.path.exists(path):
        pytest.skip("the d2r program is not built (D2R_CLI unset): configure with D2R_BUILD_CLI=ON")
    return path


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 2)).astype(np.float32)
    y = (x @ np.array([[1.0], [-0.5]], np.float32) + 0.4 * rng.normal(size=(50, 1))).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "reg.csv"
    # %.17g of the float32 values: the CLI reads exactly the values Python passes.
    np.savetxt(path, np.hstack([x, y]).astype(np.float64), delimiter=",", header="a,b,y", comments="", fmt="%.17g")
    return path, x, y


def cli_split(n, fraction, seed):
    """`d2r fit`'s validation rows (d2r::random_split): the first round(f·n) of random_permutation(n,
    seed), half away from zero, in their original order; the rest train."""
    perm = d2r.random_permutation(n, seed)
    k = int(math.floor(fraction * n + 0.5))
    val = sorted(perm[:k])
    return sorted(set(range(n)) - set(val)), val


def classes3(rows=70, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3)).astype(np.float32)
    labels = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int32) + (X[:, 2] > 1).astype(np.int32)
    return X, labels


@pytest.mark.parametrize("scale", [True, False])
def test_sweep_equals_the_cli(regression, tmp_path, scale):
    path, X, Y = regression
    out = tmp_path / "cli"
    cmd = [cli_or_skip(), "sweep", str(path), "--targets", "y", "--val-fraction", "0.25", "--seed", "3", "--values",
           "0.3,1,3", "--seeds", "2", "--hidden", "8", "--steps", "30", "--device", "cpu", "--out", str(out), "-q"]
    subprocess.run(cmd + ([] if scale else ["--no-standardize-targets"]), check=True, capture_output=True)
    cli = json.loads((out / "results.json").read_text())
    train, val = cli_split(len(X), 0.25, 3)
    r = d2r.sweep(X[train], Y[train], val_X=X[val], val_Y=Y[val], values=[0.3, 1, 3], seeds=2, seed=3, hidden=[8],
                  steps=30, device="cpu", standardize_targets=scale, progress=False)
    assert [p["validation_loss"] for p in r.grid] == [p["validation_loss"] for p in cli["grid"]]  # bit for bit
    assert r.best_value == cli["best"]["value"] and r.noise == cli["seed_noise"]
    assert r.target_scale == cli["data"]["target_scale"]
    assert r.groups[0].inner_steps == cli["compute"]["inner_steps"] == 3 * 2 * 30
    assert len({p["mean"] for p in r.grid}) == 3  # the rewards differ in outcome
    # The grid of grid_min, grid_max, points is the CLI's (d2r::runs::log_grid).
    assert d2r.log_grid(0.1, 100, 13)[6] == pytest.approx(math.sqrt(10)) and len(d2r.log_grid(0.1, 100, 13)) == 13


def test_sweep_judges_learned_rewards_with_their_own_learner():
    X, labels = classes3()
    data = dict(labels=labels[:50], classes=3, val_X=X[50:], val_labels=labels[50:])
    # A stationary fit: its learner at the reported β from its seed is its returned model, bit for bit.
    st = d2r.BilevelRewardLearner(preset="stationary", outer_steps=6, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", d2r.BilevelWarning)
        st.fit(X[:50], progress=False, **data)
        rec = d2r.BilevelRewardLearner(outer_steps=8, seed=2)  # the recommended preset (warm start)
        rec.fit(X[:50], progress=False, **data)
    r = d2r.sweep(X[:50], values=[0.5, 2, 8], seeds=2, seed=2, learner="bilevel", judge=[st, rec], progress=False,
                  **data)
    assert [g.budget for g in r.groups] == ["stationary", sum(h["inner_steps"] for h in rec.history_[:rec.model_step_])]
    j_st, j_rec = r.judged
    assert j_st.learner is st and j_st.value == st.reward_params_[0]
    assert j_st.point["validation_loss"][0] == j_st.outer_loss == st.history_[st.model_step_ - 1]["outer_loss"]
    assert r.groups[0].steps_per_run == 0 and len(set(r.groups[0].grid[0]["steps"] + r.groups[0].grid[2]["steps"])) > 1
    assert j_rec.value == rec.reward_params_[0]
    assert r.groups[1].steps_per_run == j_rec.inner_steps == r.groups[1].budget
    for j, g in ((j_st, r.groups[0]), (j_rec, r.groups[1])):
        assert j.within == (j.point["mean"] <= g.best_loss + g.tolerance)  # SweepResult::within_noise_of_best
        assert j.returned_within == (j.outer_loss <= g.best_loss + g.tolerance)  # the fit's returned model
        assert j.share == j.inner_steps / g.inner_steps and g.tolerance > 0
    # The pg protocol: one grid, the learned rewards run with it.
    pg = d2r.sweep(X[:50], values=[0.5, 2], seeds=2, judge=[rec], epochs=2, batch_size=16, progress=False, **data)
    assert len(pg.groups) == 1 and pg.groups[0].steps_per_run == 2 * math.ceil(50 / 16) and pg.judged[0].value == rec.reward_params_[0]


def test_bad_sweep_arguments_name_themselves(regression):
    _, X, Y = regression
    reg = dict(val_X=X[40:], val_Y=Y[40:], progress=False)
    Xc, labels = classes3()
    cases = [(dict(), "'val_X'", {"val_X": None, "val_Y": None}),
             (dict(learner="greedy"), "'learner'", {}),
             (dict(values=[-1.0]), "'values'", {}),
             (dict(values=["a"]), "'values'", {}),
             (dict(values=None, grid_min=1.0, grid_max=0.5), "'grid_max'", {}),
             (dict(values=[1.0, 2.0], points=5), "'points': not used with values=", {}),
             (dict(seeds=0), "'seeds'", {}),
             (dict(stepz=3), "'stepz'.*unknown option", {}),
             (dict(steps=0), "'steps'", {}),
             (dict(learner="bilevel"), "'steps'.*needs steps= or judged runs", {}),
             (dict(learner="bilevel", steps=5, objective="reinforce"), "'objective'", {}),
             (dict(learner="bilevel", steps=5, lr=0.1, epochs=3), "'epochs'", {}),
             (dict(learner="bilevel", steps=5, generations=3), "'generations': not used by the exact gradient", {}),
             (dict(objective="exact", generations=3), "'generations': not used", {}),
             (dict(judge=[d2r.BilevelRewardLearner()]), "'judge'.*not a fitted", {})]
    for kw, message, data in cases:
        args = {**reg, **data}
        with pytest.raises(ValueError, match=message):
            d2r.sweep(X[:40], Y[:40], values=kw.pop("values", [1.0, 2.0]), **args, **kw)
    with pytest.raises(ValueError, match="'Y': not used by classification"):
        d2r.sweep(Xc[:50], Y[:50], classes=3, values=[1.0], progress=False)
    # A regression learner of other targets' scale is not judged against this sweep.
    fitted = d2r.BilevelRewardLearner(outer_steps=1, hidden=[4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", d2r.BilevelWarning)
        fitted.fit(X[:40], 10 * Y[:40], val_X=X[40:], val_Y=10 * Y[40:], progress=False)
    with pytest.raises(ValueError, match="'judge'.*scaled by"):
        d2r.sweep(X[:40], Y[:40], values=[1.0, 2.0], judge=[fitted], hidden=[4], **reg)


def test_a_sweep_whose_every_value_diverged_raises(regression):
    # As `d2r sweep` (exit 3): no finite validation loss, no best; the result is kept.
    _, X, Y = regression
    with pytest.raises(d2r.FitDivergedError, match="no value of the grid trained to a finite") as e:
        d2r.sweep(X[:40], Y[:40], val_X=X[40:], val_Y=Y[40:], values=[1.0, 2.0], hidden=[4], steps=30, lr=1e10,
                  progress=False)
    assert all(not math.isfinite(p["mean"]) for p in e.value.result.grid)


def test_a_stationary_regression_fit_is_judged_with_its_own_learning_rate(regression):
    # The stationary learner trains at the judged run's inner rate (fit's lr): at the learned u, from
    # the fit's seed, it is the returned model bit for bit (the learning rate was once left at 0.01).
    _, X, Y = regression
    fitted = d2r.BilevelRewardLearner(preset="stationary", outer_steps=3, hidden=[4], inner_lr=0.05, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", d2r.BilevelWarning)
        fitted.fit(X[:40], Y[:40], val_X=X[40:], val_Y=Y[40:], progress=False)
    r = d2r.sweep(X[:40], Y[:40], val_X=X[40:], val_Y=Y[40:], values=[0.5, 2.0], seed=1, hidden=[4],
                  learner="bilevel", judge=[fitted], progress=False)
    j = r.judged[0]
    assert j.point["validation_loss"][0] == j.outer_loss == fitted.history_[fitted.model_step_ - 1]["outer_loss"]
    with pytest.raises(ValueError, match=r"'lr': the judged runs' inner learning rates are \[0.05"):
        d2r.sweep(X[:40], Y[:40], val_X=X[40:], val_Y=Y[40:], values=[0.5, 2.0], seed=1, hidden=[4], lr=0.01,
                  learner="bilevel", judge=[fitted], progress=False)


def test_judged_learners_of_another_task_form_or_shape_are_refused(regression):
    _, X, Y = regression
    Xc, labels = classes3()
    cls = dict(labels=labels[:50], classes=3, val_X=Xc[50:], val_labels=labels[50:], progress=False)
    reg = dict(val_X=X[40:], val_Y=Y[40:], progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", d2r.BilevelWarning)
        r_scalar = d2r.BilevelRewardLearner(outer_steps=1, hidden=[4])
        r_scalar.fit(X[:40], Y[:40], **reg)
        r_full = d2r.BilevelRewardLearner(outer_steps=1, hidden=[4], reward_form="full")
        r_full.fit(X[:40], Y[:40], **reg)
        c2 = d2r.BilevelRewardLearner(outer_steps=1)
        c2.fit(Xc[:50, :2], **dict(cls, val_X=Xc[50:, :2]))
    for judged, data, x, message in [
            ([r_full], reg, X[:40], "learned a full reward"),
            ([r_scalar], cls, Xc[:50], "was fit on 2 features and 1 targets; this sweep has 3 features and 3 classes"),
            ([c2], cls, Xc[:50], "was fit on 2 features"),
            (r_scalar, reg, X[:40], "'judge': expected a list")]:
        y = {"Y": Y[:40]} if data is reg else {}
        with pytest.raises(ValueError, match=message):
            d2r.sweep(x, values=[1.0, 2.0], judge=judged, **y, **data)
    with pytest.raises(ValueError, match="'seeds': judging a learned reward needs the seed noise"):
        d2r.sweep(X[:40], Y[:40], values=[1.0, 2.0], seeds=1, judge=[r_scalar], **reg)


def test_sweep_data_and_settings_are_checked_naming_the_keyword():
    Xc, labels = classes3()
    cls = dict(classes=3, val_X=Xc[50:], val_labels=labels[50:], values=[1.0, 2.0], epochs=1, progress=False)
    for kw, message in [(dict(labels=labels[:50] + 0.7), "'labels': expected dtype int32, got float64"),
                        (dict(labels=labels[:50].astype(np.int64)), "'labels': expected dtype int32"),
                        (dict(labels=np.where(labels[:50] == 2, 5, labels[:50]).astype(np.int32)),
                         r"'labels': labels in \[0, 3\) expected"),
                        (dict(labels=np.zeros(50, np.int32)), "'labels': every training row has the same class"),
                        (dict(labels=labels[:50], device="gpu"), "'device'"),
                        (dict(labels=labels[:50], hidden=[4.5]), "'hidden': expected positive integers"),
                        (dict(labels=labels[:50], inner_tolerance=0.1), "'inner_tolerance'")]:
        with pytest.raises(ValueError, match=message):
            d2r.sweep(Xc[:50], **{**cls, **kw})
    with pytest.raises(ValueError, match="'grid_min': expected a finite reward > 0"):
        d2r.sweep(Xc[:50], labels=labels[:50], **{**cls, "values": None}, grid_min=0.0)


def test_a_judged_learner_of_another_network_or_objective_is_refused(regression):
    # A reward is judged with the learner it was learned for: the same network, λ and precision.
    _, X, Y = regression
    reg = dict(val_X=X[40:], val_Y=Y[40:], progress=False)
    fitted = d2r.BilevelRewardLearner(outer_steps=1, hidden=[4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", d2r.BilevelWarning)
        fitted.fit(X[:40], Y[:40], **reg)
    for kw, message in [(dict(hidden=[8]), r"'hidden': judge entry 0 learned its reward for hidden=\[4\]"),
                        (dict(hidden=[4], entropy_weight=0.5), "'entropy_weight'"),
                        (dict(hidden=[4], activation="tanh"), "'activation'")]:
        with pytest.raises(ValueError, match=message):
            d2r.sweep(X[:40], Y[:40], values=[1.0, 2.0], judge=[fitted], **kw, **reg)
    with pytest.raises(ValueError, match="'X': judge entry 0 was fit on float32 arrays, X is float64"):
        d2r.sweep(X[:40].astype(np.float64), Y[:40].astype(np.float64), val_X=X[40:].astype(np.float64),
                  val_Y=Y[40:].astype(np.float64), values=[1.0, 2.0], judge=[fitted], hidden=[4], progress=False)
    r = d2r.sweep(X[:40], Y[:40], values=[1.0, 2.0], judge=[fitted], hidden=[4], **reg)  # the same learner: judged
    assert len(r.judged) == 1
