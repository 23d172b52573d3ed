// The outer loop of the recommended preset (BilevelOptions::recommended(), DESIGN.md §7) on the
// shipped data: the implicit hypergradient's sign against finite differences of the validation
// loss at the state where it is taken (iris, HalfCheetah), the paper preset's one-iteration solve
// at the same states (the "classification climbing the wrong way" finding of issue 13), Rprop's
// log-space steps and verdicts, and a bit-identical resume with the Rprop state.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::BilevelOptions;
using d2r::BilevelTrainer;
using d2r::RewardForm;

const std::filesystem::path kData = D2R_TEST_DATA_DIR;

template <class T>
d2r::MatrixView<const T> cmat(const std::vector<T>& v, std::int64_t rows, std::int64_t cols) {
  return {v.data(), rows, cols, cols};
}

/// Every other row (even: training, odd: validation) of a data set, features standardised with
/// the training rows' statistics and, for a regression, the targets centred and divided by one
/// scale (as `d2r fit --standardize --standardize-targets`).
struct Halves {
  std::int64_t p = 0, n = 0, train_rows = 0, val_rows = 0, classes = 0;
  std::vector<double> xt, xv, yt, yv;
  std::vector<std::int32_t> lt, lv;
  explicit Halves(d2r::Dataset d, std::int64_t max_rows = 0) {
    const std::int64_t N = max_rows > 0 ? std::min(max_rows, d.rows) : d.rows;
    p = d.feature_count();
    n = d.task == d2r::Task::regression ? d.target_count() : 0;
    classes = d.task == d2r::Task::classification ? d.target_count() : 0;
    for (std::int64_t r = 0; r < N; ++r) {
      auto& x = r % 2 == 0 ? xt : xv;
      x.insert(x.end(), d.features.begin() + r * p, d.features.begin() + (r + 1) * p);
      if (n > 0) {
        auto& y = r % 2 == 0 ? yt : yv;
        y.insert(y.end(), d.targets.begin() + r * n, d.targets.begin() + (r + 1) * n);
      } else {
        (r % 2 == 0 ? lt : lv).push_back(d.labels[static_cast<std::size_t>(r)]);
      }
    }
    train_rows = static_cast<std::int64_t>(xt.size()) / p;
    val_rows = static_cast<std::int64_t>(xv.size()) / p;
    standardise(xt, xv, p, false);
    if (n > 0) standardise(yt, yv, n, true);
  }
  static void standardise(std::vector<double>& a, std::vector<double>& b, std::int64_t w, bool one_scale) {
    const auto rows = static_cast<std::int64_t>(a.size()) / w;
    std::vector<double> mean(static_cast<std::size_t>(w), 0.0), sd(static_cast<std::size_t>(w), 0.0);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < w; ++c) mean[c] += a[r * w + c] / static_cast<double>(rows);
    }
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < w; ++c) sd[c] += std::pow(a[r * w + c] - mean[c], 2) / static_cast<double>(rows - 1);
    }
    double pooled = 0;
    for (double& s : sd) pooled += s / static_cast<double>(w);
    for (double& s : sd) s = one_scale ? std::sqrt(pooled) : (s > 0 ? std::sqrt(s) : 1.0);
    for (std::vector<double>* v : {&a, &b}) {
      for (std::size_t i = 0; i < v->size(); ++i) (*v)[i] = ((*v)[i] - mean[i % w]) / sd[i % w];
    }
  }
  d2r::RegressionData<double> train() const { return {cmat(xt, train_rows, p), cmat(yt, train_rows, n)}; }
  d2r::RegressionData<double> val() const { return {cmat(xv, val_rows, p), cmat(yv, val_rows, n)}; }
  d2r::ClassificationData<double> ctrain() const { return {cmat(xt, train_rows, p), {lt.data(), train_rows}}; }
  d2r::ClassificationData<double> cval() const { return {cmat(xv, val_rows, p), {lv.data(), val_rows}}; }
};

Halves iris() {
  const d2r::Table t = d2r::read_csv(kData / "tabular" / "iris.csv");
  return Halves(d2r::make_classification_dataset(t, "label", {}));
}

Halves halfcheetah(std::int64_t rows) {
  const d2r::Table t = d2r::read_csv(kData / "halfcheetah" / "random.csv");
  std::vector<std::string> targets, features;
  for (const std::string& c : t.columns()) (c.starts_with("ds_") ? targets : features).push_back(c);
  return Halves(d2r::make_regression_dataset(t, targets, features), rows);
}

/// The recommended preset with the exact-expectation inner objective (deterministic: the inner
/// optimum θ*(φ) is a function of φ, so the validation loss at θ*(φ ± ε) has a finite difference)
/// run until ‖∇θ L_in‖ is 1e-3 of an untrained policy's, from a fresh start.
BilevelOptions<double> stationary_exact(std::int64_t cg_iterations) {
  BilevelOptions<double> o = BilevelOptions<double>::recommended();
  o.inner.objective = d2r::InnerObjective::exact;
  o.inner_start = d2r::InnerStart::fresh;
  o.inner.steps = 200;
  o.inner.max_steps = 6000;
  o.inner.stationarity_tolerance = 3e-3;
  o.cg.max_iterations = cg_iterations;
  if (cg_iterations == 1) o.cg = BilevelOptions<double>::paper().cg;
  return o;
}

/// The hypergradient at φ (log-space sign) and the central difference of the validation loss at
/// θ*(φ e^{±ε}), for the solve of `cg_iterations` iterations.
struct SignCheck {
  double h = 0, fd = 0, gradient = 0;
  bool stationary = false;
};

template <class Make>
SignCheck check_sign(Make&& make, double phi, double eps, std::int64_t cg_iterations) {
  SignCheck s;
  const d2r::BilevelRecord r = make(phi, stationary_exact(cg_iterations))->step();
  s.h = r.hypergradient.at(0);
  s.stationary = r.inner_stationary;
  s.gradient = r.inner_gradient_norm / r.inner_gradient_norm0;
  const double up = make(phi * std::exp(eps), stationary_exact(cg_iterations))->step().validation.nll_per_dim;
  const double dn = make(phi * std::exp(-eps), stationary_exact(cg_iterations))->step().validation.nll_per_dim;
  s.fd = (up - dn) / (2 * eps);
  return s;
}

TEST(RealData, IrisHypergradientSignAgreesWithFiniteDifferencesOfTheValidationLoss) {
  const Halves d = iris();
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
  const auto make = [&](double beta, BilevelOptions<double> o) {
    return std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = d.p}, d.ctrain(), d.cval(), d.classes,
                                                    RewardForm::scalar, std::vector<double>{beta}, o);
  };
  for (double beta : {0.3, 1.0, 2.0}) {
    const SignCheck s = check_sign(make, beta, 0.2, 50);
    const SignCheck paper = check_sign(make, beta, 0.2, 1);
    std::printf("iris β = %g: h = %.4g (1 CG iteration: %.4g), finite difference %.4g, ‖∇θ L_in‖ relative %.3g\n",
                beta, s.h, paper.h, s.fd, s.gradient);
    EXPECT_TRUE(s.stationary) << "β = " << beta;
    EXPECT_GT(std::abs(s.fd), 1e-4) << "β = " << beta << ": the finite difference is too small to have a sign";
    EXPECT_EQ(s.h > 0, s.fd > 0) << "β = " << beta << ": h = " << s.h << ", finite difference " << s.fd;
  }
}

TEST(RealData, HalfCheetahHypergradientSignAgreesWithFiniteDifferencesOfTheValidationLoss) {
  const Halves d = halfcheetah(400);
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
  const auto make = [&](double u, BilevelOptions<double> o) {
    return std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = d.p, .hidden = {32}}, d.train(),
                                                    d.val(), RewardForm::scalar, std::vector<double>{u}, o);
  };
  // Below and above the outer optimum of these rows (the validation loss falls, then rises, in u).
  bool saw_negative = false, saw_positive = false;
  for (double u : {0.1, 10.0}) {  // standardised targets
    const SignCheck s = check_sign(make, u, 0.2, 50);
    std::printf("HalfCheetah u = %g: h = %.4g, finite difference %.4g, ‖∇θ L_in‖ relative %.3g\n", u, s.h, s.fd,
                s.gradient);
    EXPECT_TRUE(s.stationary) << "u = " << u;
    EXPECT_GT(std::abs(s.fd), 1e-4) << "u = " << u << ": the finite difference is too small to have a sign";
    EXPECT_EQ(s.h > 0, s.fd > 0) << "u = " << u << ": h = " << s.h << ", finite difference " << s.fd;
    saw_negative = saw_negative || s.fd < 0;
    saw_positive = saw_positive || s.fd > 0;
  }
  EXPECT_TRUE(saw_negative && saw_positive) << "both sides of the optimum";
}

// ------------------------------------------------------------------ the stationary preset
TEST(StationaryPreset, AnUnsolvableRewardUndoesTheMoveAndIsNotTrainedAgain) {
  // Iris (every other row), β from 0.3, with an inner cap that β near 1 cannot meet (from θ₀ the
  // policy needs 380 exact steps to reach 1e-3 at β = 0.58, over 1000 at 0.89): the fixed start gives the same
  // policy at a φ however often it is trained, so a φ left short of stationarity at the cap is
  // undone (φ returns to the value before the move, the steps shrink) and, where φ stays, reused.
  const Halves d = iris();
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
  BilevelOptions<double> o = BilevelOptions<double>::stationary();
  constexpr double kStart = 0.3;
  o.inner.max_steps = 1000;
  BilevelTrainer<double> t(ctx, d2r::MlpSpec{.inputs = d.p}, d.ctrain(), d.cval(), d.classes, RewardForm::scalar,
                           std::vector<double>{kStart}, o);
  for (int k = 0; k < 30 && t.verdict(false).status == d2r::BilevelStatus::running; ++k) (void)t.step();
  const auto& h = t.history();
  int undone = 0;
  double before = kStart;  // φ before record i's move
  for (std::size_t i = 0; i < h.size(); ++i) {
    const double at = i == 0 ? kStart : h[i - 1].reward_params[0];  // φ record i was trained at
    if (!h[i].inner_stationary) {
      EXPECT_EQ(h[i].inner_steps, i > 0 && h[i - 1].max_step == 0 ? 0 : o.inner.max_steps) << "record " << i;
      if (i > 0 && h[i - 1].max_step > 0) {
        ++undone;
        EXPECT_NEAR(h[i].reward_params[0], before, 1e-12 * before) << "record " << i << " trained at " << at;
        EXPECT_TRUE(h[i].backtracked) << "record " << i;
      }
    }
    before = at;
  }
  EXPECT_GE(undone, 1) << "no step was left short of stationarity: the cap did not bite";
  // The model returned is one the inner loop solved.
  ASSERT_GE(t.best_step(), 1);
  EXPECT_TRUE(h[static_cast<std::size_t>(t.best_step() - 1)].inner_stationary);
}

/// The records of a run (a trainer from make(ctx), contexts of seed `seed`) saved to a checkpoint
/// after `saved` outer steps, loaded into a new trainer and continued to `total` steps.
template <class Make>
std::vector<d2r::BilevelRecord> resumed_records(const Make& make, std::uint64_t seed, std::size_t saved,
                                                std::int64_t total, const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("d2r_resumed_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  d2r::Context c1{{.backend = d2r::Backend::cpu, .seed = seed}};
  auto a = make(c1);
  for (std::size_t k = 0; k < saved; ++k) (void)a.step();
  a.save(dir / "run.ckpt");
  d2r::Context c2{{.backend = d2r::Backend::cpu, .seed = seed}};
  auto b = make(c2);
  b.load(dir / "run.ckpt");
  while (b.steps_done() < total) (void)b.step();
  std::filesystem::remove_all(dir);
  return b.history();
}

TEST(StationaryPreset, AReturnAfterAnUndoTakesThePolicyKeptFromThatVisit) {
  // Iris (every other row) from β = 0.3 with the cap of the test above: Rprop undoes moves. With
  // the fixed start and the exact inner gradient the policy of a φ is the same every time, so the
  // return to the φ before an undone move takes that visit's policy: no inner step, the same φ bit
  // for bit, the same outer loss and hypergradient as at that visit. A checkpoint saved right
  // after the undo resumes onto the same records.
  const Halves d = iris();
  BilevelOptions<double> o = BilevelOptions<double>::stationary();
  o.inner.max_steps = 1000;
  const auto make = [&](d2r::Context& ctx) {
    return BilevelTrainer<double>(ctx, d2r::MlpSpec{.inputs = d.p}, d.ctrain(), d.cval(), d.classes,
                                  RewardForm::scalar, std::vector<double>{0.3}, o);
  };
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
  BilevelTrainer<double> t = make(ctx);
  for (int k = 0; k < 30 && t.verdict(false).status == d2r::BilevelStatus::running; ++k) (void)t.step();
  const auto& h = t.history();
  const auto trained_at = [&](std::size_t i) { return i == 0 ? 0.3 : h[i - 1].reward_params[0]; };
  std::size_t returns = 0, first_undo = 0;
  for (std::size_t i = 2; i < h.size(); ++i) {
    if (!h[i - 1].backtracked) continue;
    if (first_undo == 0) first_undo = i - 1;
    ++returns;
    // Record i-1 undid the move made by record i-2: φ is back where record i-2 was trained.
    EXPECT_EQ(trained_at(i), trained_at(i - 2)) << "record " << i;
    EXPECT_EQ(h[i].inner_steps, 0) << "record " << i << ": trained again";
    EXPECT_EQ(h[i].outer_loss, h[i - 2].outer_loss) << "record " << i;
    EXPECT_EQ(h[i].hypergradient, h[i - 2].hypergradient) << "record " << i;
    EXPECT_EQ(h[i].inner_stationary, h[i - 2].inner_stationary) << "record " << i;
  }
  ASSERT_GE(returns, 1u) << "no move was undone: the test does not reach the kept policy";
  // Resume right after the first undo: the kept visit is in the checkpoint.
  const std::vector<d2r::BilevelRecord> b = resumed_records(make, 3, first_undo + 1, t.steps_done(), "visit");
  for (std::size_t i = 0; i < h.size(); ++i) {
    EXPECT_EQ(b[i].reward_params, h[i].reward_params) << "record " << i;
    EXPECT_EQ(b[i].inner_steps, h[i].inner_steps) << "record " << i;
    EXPECT_EQ(b[i].outer_loss, h[i].outer_loss) << "record " << i;
  }
}

TEST(StationaryPreset, AStartThatCannotBeSolvedEndsTheRunAtOnce) {
  // β = 0.3 needs 260 exact steps from θ₀ to reach 1e-3 on these rows: a cap of 40 leaves the first
  // step short, there is no move to undo, and every further step would reuse the same policy.
  const Halves d = iris();
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
  BilevelOptions<double> o = BilevelOptions<double>::stationary();
  o.inner.max_steps = 40;
  BilevelTrainer<double> t(ctx, d2r::MlpSpec{.inputs = d.p}, d.ctrain(), d.cval(), d.classes, RewardForm::scalar,
                           std::vector<double>{0.3}, o);
  (void)t.step();
  ASSERT_FALSE(t.history().back().inner_stationary);
  const d2r::BilevelVerdict v = t.verdict(false);
  EXPECT_EQ(v.status, d2r::BilevelStatus::step_limited) << v.reason;
  EXPECT_NE(v.reason.find("stayed short of stationarity at the cap of 40"), std::string::npos) << v.reason;
  // The same cap with a warm start keeps training at the next step: not stuck, still running.
  o.inner_start = d2r::InnerStart::warm;
  BilevelTrainer<double> w(ctx, d2r::MlpSpec{.inputs = d.p}, d.ctrain(), d.cval(), d.classes, RewardForm::scalar,
                           std::vector<double>{0.3}, o);
  (void)w.step();
  ASSERT_FALSE(w.history().back().inner_stationary);
  EXPECT_EQ(w.verdict(false).status, d2r::BilevelStatus::running) << w.verdict(false).reason;
}

// ------------------------------------------------------------------ Rprop and verdicts
/// A 1-D problem with a known outer optimum: a free Gaussian (linear policy on a constant input),
/// targets N(6, 1.25²), λ = 1: u* = λ/(2σ²) = 0.32 for the validation rows' spread.
struct OneD {
  std::int64_t N = 400;
  std::vector<double> x, y, xv, yv;
  OneD() {
    d2r::test::TestRng rng(11);
    const auto normal = [&] {
      const double u1 = rng.uniform(1e-12, 1.0), u2 = rng.uniform(0.0, 1.0);
      return std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * 3.14159265358979323846 * u2);
    };
    for (std::int64_t i = 0; i < N; ++i) {
      x.push_back(1.0);
      y.push_back(6 + 1.25 * normal());
      xv.push_back(1.0);
      yv.push_back(6 + 1.25 * normal());
    }
  }
  d2r::RegressionData<double> train() const { return {cmat(x, N, 1), cmat(y, N, 1)}; }
  d2r::RegressionData<double> val() const { return {cmat(xv, N, 1), cmat(yv, N, 1)}; }
  /// The validation rows' isotropic optimum u* = λ/(2σ̂²) (PAPER.md T3).
  double u_star() const {
    double var = 0, mean = 0;
    for (double v : yv) mean += v / static_cast<double>(N);
    for (double v : yv) var += (v - mean) * (v - mean) / static_cast<double>(N);
    return 1.0 / (2 * var);
  }
};

TEST(Rprop, ConvergesToTheOuterOptimumFromFarBelowAndFarAbove) {
  const OneD d;
  const double u_star = d.u_star();
  for (double u0 : {0.01, 30.0}) {
    d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 4}};
    BilevelOptions<double> o = BilevelOptions<double>::recommended();
    o.inner.objective = d2r::InnerObjective::exact;  // no sampling noise: a sharp check of where it stops
    BilevelTrainer<double> t(ctx, {.inputs = 1}, d.train(), d.val(), RewardForm::scalar, std::vector<double>{u0}, o);
    d2r::BilevelVerdict v;
    for (int k = 0; k < 80 && v.status == d2r::BilevelStatus::running; ++k) {
      t.step();
      v = t.verdict(k + 1 == 80);
    }
    EXPECT_EQ(v.status, d2r::BilevelStatus::converged) << "u0 = " << u0 << ": " << v.reason;
    // Where it may stop: the validation NLL per dimension at the optimal policy of u = u* e^δ is
    // L* + (e^δ − 1 − δ)/2, so ∂L/∂log u = (e^δ − 1)/2, and the flat tolerance stops Rprop once
    // that is below flat_tolerance · loss_tolerance / Δ₀ = 0.033: |δ| < 0.065 at an exact inner
    // optimum; the inner policy's own tolerance (0.1 of its starting gradient) adds to it, so 0.15.
    // In loss terms that is within 0.006 nats of the optimum, under the verdict's 0.02.
    const double delta = std::log(t.reward_params()[0] / u_star);
    EXPECT_NEAR(delta, 0.0, 0.15) << "u0 = " << u0 << ": u = " << t.reward_params()[0] << ", u* = " << u_star;
    EXPECT_LT(0.5 * (std::exp(delta) - 1 - delta), o.stopping.loss_tolerance) << "u0 = " << u0;
    // Log-space steps: the first move is the initial step, a factor e^0.3, whatever u0.
    EXPECT_NEAR(std::abs(std::log(t.history()[0].reward_params[0] / u0)), o.rprop.initial_step, 1e-12);
  }
}

TEST(StationaryPreset, AScalarRewardIsRefinedInsideTheBracketOfItsFirstSignChange) {
  // The stationary preset on the free Gaussian from u0 = 0.01 and 30 (δ = log(u/u*) of −3.5 and
  // +4.5): Rprop walks in growing steps until the hypergradient changes sign, and from there the
  // minimum is located by regula falsi inside that bracket: every later visit lies inside the
  // bracket of the visits before it, a handful of visits suffice (Rprop would halve its step from
  // about 0.5 down to the reward tolerance 0.03: at least 8 more visits), and u ends at u*. A
  // checkpoint saved inside the bracket resumes onto the same records.
  const OneD d;
  const double u_star = d.u_star();
  const BilevelOptions<double> o = BilevelOptions<double>::stationary();
  for (double u0 : {0.01, 30.0}) {
    const auto make = [&](d2r::Context& ctx) {
      return BilevelTrainer<double>(ctx, {.inputs = 1}, d.train(), d.val(), RewardForm::scalar,
                                    std::vector<double>{u0}, o);
    };
    d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 4}};
    BilevelTrainer<double> t = make(ctx);
    d2r::BilevelVerdict v;
    for (int k = 0; k < 60 && v.status == d2r::BilevelStatus::running; ++k) {
      (void)t.step();
      v = t.verdict(k + 1 == 60);
    }
    EXPECT_EQ(v.status, d2r::BilevelStatus::converged) << "u0 = " << u0 << ": " << v.reason;
    EXPECT_NEAR(std::log(t.reward_params()[0] / u_star), 0.0, 0.05) << "u0 = " << u0 << ": u = " << t.reward_params()[0];
    const auto& h = t.history();
    const auto x_at = [&](std::size_t i) { return std::log(i == 0 ? u0 : h[i - 1].reward_params[0]); };
    std::size_t first = 0;  // the record whose hypergradient first has the other sign
    for (std::size_t i = 1; i < h.size() && first == 0; ++i) {
      if (h[i].hypergradient[0] * h[i - 1].hypergradient[0] < 0) first = i;
    }
    ASSERT_GT(first, 0u) << "u0 = " << u0 << ": the hypergradient never changed sign";
    double lo = std::min(x_at(first), x_at(first - 1)), hi = std::max(x_at(first), x_at(first - 1));
    int visits = 0;
    for (std::size_t i = first + 1; i < h.size(); ++i) {
      if (h[i - 1].max_step == 0) continue;  // φ did not move: the same visit again
      ++visits;
      const double x = x_at(i);
      EXPECT_GT(x, lo) << "u0 = " << u0 << ", record " << i;
      EXPECT_LT(x, hi) << "u0 = " << u0 << ", record " << i;
      (h[i].hypergradient[0] < 0 ? lo : hi) = x;
    }
    EXPECT_GE(visits, 1) << "u0 = " << u0;
    EXPECT_LE(visits, 4) << "u0 = " << u0 << ": " << visits << " visits after the first sign change";
    // Resume from a checkpoint saved right after the bracket formed.
    const std::vector<d2r::BilevelRecord> b = resumed_records(make, 4, first + 1, t.steps_done(), "bracket");
    for (std::size_t i = 0; i < h.size(); ++i) {
      EXPECT_EQ(b[i].reward_params, h[i].reward_params) << "u0 = " << u0 << ", record " << i;
    }
  }
}

TEST(Rprop, DoesNotStepWhereTheHypergradientPredictsLessThanTheLossTolerance) {
  // Started at the validation optimum u*, the hypergradient is ~0 but has a sign: plain Rprop
  // (flat_tolerance 0) moves log u by the full Δ₀ on its first step; the recommended preset's
  // flat_tolerance keeps u where it is, since |∂L/∂log u| · Δ₀ is below half the loss tolerance.
  const OneD d;
  const double u_star = d.u_star();
  for (double flat : {0.0, BilevelOptions<double>::recommended().rprop.flat_tolerance}) {
    d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 4}};
    BilevelOptions<double> o = BilevelOptions<double>::recommended();
    o.rprop.flat_tolerance = flat;
    o.inner.stationarity_tolerance = 1e-3;  // the first step's policy at its optimum: h is then ~0
    o.inner.max_steps = 6000;
    BilevelTrainer<double> t(ctx, {.inputs = 1}, d.train(), d.val(), RewardForm::scalar, std::vector<double>{u_star}, o);
    const d2r::BilevelRecord& r = t.step();
    const double g = std::abs(r.hypergradient[0] * u_star);  // ∂L/∂log u at the step
    const double moved = std::abs(std::log(t.reward_params()[0] / u_star));
    if (flat == 0) {
      EXPECT_GT(g, 0.0);
      EXPECT_NEAR(moved, o.rprop.initial_step, 1e-12) << "|g| = " << g;
    } else {
      ASSERT_GT(flat, 0.0);
      ASSERT_LT(g * o.rprop.initial_step, flat * o.stopping.loss_tolerance) << "not a flat start: |g| = " << g;
      EXPECT_EQ(moved, 0.0) << "|g| = " << g;
    }
  }
}

TEST(Verdict, StepLimitedWhenEveryStepIsTheMaximumAndDivergedOnANonFiniteLoss) {
  const OneD d;
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 4}};
  // The paper preset from u = 30: φ moves by about the learning rate at every step.
  BilevelOptions<double> o = BilevelOptions<double>::paper();
  o.inner.steps = 5;
  BilevelTrainer<double> t(ctx, {.inputs = 1}, d.train(), d.val(), RewardForm::scalar, std::vector<double>{30.0}, o);
  for (int k = 0; k < 6; ++k) t.step();
  EXPECT_EQ(t.verdict(false).status, d2r::BilevelStatus::running);
  const d2r::BilevelVerdict v = t.verdict(true);
  EXPECT_EQ(v.status, d2r::BilevelStatus::step_limited);
  EXPECT_NE(v.reason.find("maximum step at every one"), std::string::npos) << v.reason;
  // Rejected options name themselves.
  BilevelOptions<double> bad = BilevelOptions<double>::recommended();
  bad.rprop.decrease = 1.5;
  try {
    BilevelTrainer<double>(ctx, {.inputs = 1}, d.train(), d.val(), RewardForm::scalar, std::vector<double>{1.0}, bad);
    ADD_FAILURE() << "expected an error";
  } catch (const d2r::Error& e) {
    EXPECT_NE(std::string(e.what()).find("options.rprop.decrease"), std::string::npos) << e.what();
  }
  bad = BilevelOptions<double>::recommended();
  bad.stopping.window = 1;
  EXPECT_THROW(
      BilevelTrainer<double>(ctx, {.inputs = 1}, d.train(), d.val(), RewardForm::scalar, std::vector<double>{1.0}, bad),
      d2r::Error);
}

TEST(Rprop, KillAndResumeWithTheRpropStateIsBitIdentical) {
  const OneD d;
  const auto dir = std::filesystem::temp_directory_path() / "d2r_bilevel_outer_resume";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  BilevelOptions<double> o = BilevelOptions<double>::recommended();
  o.inner.steps = 5;
  o.inner.max_steps = 20;
  const auto make = [&](d2r::Context& ctx) {
    return std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = 1, .hidden = {8}}, d.train(), d.val(),
                                                    RewardForm::scalar, std::vector<double>{2.0}, o);
  };
  d2r::Context ca{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto a = make(ca);
  for (int k = 0; k < 8; ++k) a->step();
  {
    d2r::Context cb{{.backend = d2r::Backend::cpu, .seed = 2}};
    auto b = make(cb);
    for (int k = 0; k < 4; ++k) b->step();
    b->save(dir / "state.ckpt");
  }
  d2r::Context cc{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto c = make(cc);
  c->load(dir / "state.ckpt");
  for (int k = 0; k < 4; ++k) c->step();
  ASSERT_EQ(c->history().size(), a->history().size());
  for (std::size_t k = 0; k < a->history().size(); ++k) {
    EXPECT_EQ(c->history()[k].reward_params, a->history()[k].reward_params) << "step " << k + 1;
    EXPECT_EQ(c->history()[k].inner_steps, a->history()[k].inner_steps) << "step " << k + 1;
    EXPECT_EQ(c->history()[k].max_step, a->history()[k].max_step) << "step " << k + 1;
  }
  // The Rprop step sizes took part: the moves were not all the initial step.
  bool varied = false;
  for (const auto& r : a->history()) varied = varied || std::abs(r.max_step - o.rprop.initial_step) > 1e-9;
  EXPECT_TRUE(varied);
  const auto ta = a->policy_params(), tc = c->policy_params();
  EXPECT_TRUE(std::equal(ta.data, ta.data + ta.size, tc.data)) << "θ differs after resuming";
  std::filesystem::remove_all(dir);
}

}  // namespace

TEST(BilevelOptions, InertFieldsAreTheOtherOptimisersAndSolversSettings) {
  // What a program refuses as an option that would do nothing (d2r fit --outer-lr with Rprop).
  BilevelOptions<double> o = BilevelOptions<double>::recommended();  // Rprop, CG on the normal equations
  std::vector<std::string> inert = d2r::inert_fields(o);
  EXPECT_TRUE(d2r::is_inert(inert, "outer_adam.learning_rate"));
  EXPECT_TRUE(d2r::is_inert(inert, "sgd_momentum"));
  EXPECT_TRUE(d2r::is_inert(inert, "log_space"));
  EXPECT_TRUE(d2r::is_inert(inert, "neumann.alpha"));
  EXPECT_FALSE(d2r::is_inert(inert, "rprop.initial_step"));
  EXPECT_FALSE(d2r::is_inert(inert, "cg.tolerance"));
  EXPECT_FALSE(d2r::is_inert(inert, "rprop_step"));  // a prefix of a name is not a parent field
  // Exact inner steps and exact curvature draw nothing: G, the transform and the clip are unread.
  EXPECT_TRUE(d2r::is_inert(inert, "inner.generations"));
  EXPECT_TRUE(d2r::is_inert(inert, "inner.pg.transform.kind"));
  EXPECT_TRUE(d2r::is_inert(inert, "inner.pg.log_prob_clip"));
  EXPECT_FALSE(d2r::is_inert(inert, "inner.pg.entropy_weight"));  // λ is in the exact objective
  o.curvature = d2r::CurvatureKind::surrogate;  // the surrogate's curvature samples
  EXPECT_FALSE(d2r::is_inert(d2r::inert_fields(o), "inner.generations"));
  o = BilevelOptions<double>::paper();  // outer Adam, REINFORCE inner steps
  EXPECT_FALSE(d2r::is_inert(d2r::inert_fields(o), "inner.generations"));
  EXPECT_FALSE(d2r::is_inert(d2r::inert_fields(o), "inner.pg.transform"));
  inert = d2r::inert_fields(o);
  EXPECT_TRUE(d2r::is_inert(inert, "rprop.initial_step"));
  EXPECT_TRUE(d2r::is_inert(inert, "sgd_learning_rate"));
  EXPECT_FALSE(d2r::is_inert(inert, "outer_adam.learning_rate"));
  EXPECT_FALSE(d2r::is_inert(inert, "log_space"));
  o.optimizer = d2r::OuterOptimizer::sgd;
  o.solver = d2r::ImplicitSolver::neumann;
  inert = d2r::inert_fields(o);
  EXPECT_TRUE(d2r::is_inert(inert, "outer_adam"));
  EXPECT_FALSE(d2r::is_inert(inert, "sgd_learning_rate"));
  EXPECT_TRUE(d2r::is_inert(inert, "cg.max_iterations"));
  EXPECT_FALSE(d2r::is_inert(inert, "cg.damping"));  // the series is damped by it
  EXPECT_FALSE(d2r::is_inert(inert, "neumann.iterations"));
}
