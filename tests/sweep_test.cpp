// d2r/sweep.hpp: a sweep of fixed rewards through the library alone (the computation behind
// `d2r sweep`): the best value is the argmin of the grid's mean losses, the seed noise and the
// tolerance follow from the per-seed losses the result returns, the compute counts from the
// learner, and bad settings are refused naming the field.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "d2r/error.hpp"
#include "d2r/sweep.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::Backend;
using d2r::runs::ClassHostData;
using d2r::runs::ClassificationConfig;
using d2r::runs::HostData;
using d2r::runs::RegressionConfig;
using d2r::runs::SweepPoint;
using d2r::runs::SweepResult;
using d2r::runs::SweepSettings;
using d2r::test::TestRng;

/// y = 2x + 0.3·noise, one input and one target.
HostData line_data(std::int64_t rows, std::uint64_t seed) {
  TestRng rng(seed);
  HostData d{.rows = rows, .inputs = 1, .dims = 1, .x = {}, .y = {}};
  for (std::int64_t i = 0; i < rows; ++i) {
    const double x = rng.uniform(-1.0, 1.0);
    d.x.push_back(x);
    d.y.push_back(2 * x + 0.3 * rng.uniform(-1.0, 1.0));
  }
  return d;
}

/// Two classes split by the sign of the first of two inputs, 10 % of the labels flipped.
ClassHostData sign_data(std::int64_t rows, std::uint64_t seed) {
  TestRng rng(seed);
  ClassHostData d{.rows = rows, .inputs = 2, .x = {}, .labels = {}};
  for (std::int64_t i = 0; i < rows; ++i) {
    const double a = rng.uniform(-1.0, 1.0), b = rng.uniform(-1.0, 1.0);
    d.x.insert(d.x.end(), {a, b});
    const bool flip = rng.uniform(0.0, 1.0) < 0.1;
    d.labels.push_back((a > 0) != flip ? 1 : 0);
  }
  return d;
}

RegressionConfig small_regression() {
  RegressionConfig c;
  c.double_precision = true;
  c.hidden = {4};
  c.plain.steps = 30;
  c.plain.adam.learning_rate = 0.02;
  return c;
}

SweepSettings cpu_settings(std::vector<double> values, std::int64_t seeds) {
  SweepSettings s;
  s.values = std::move(values);
  s.seeds = seeds;
  s.seed = 7;
  s.context.backend = Backend::cpu;
  return s;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double sample_sd(const std::vector<double>& v) {
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

/// The summary of a result recomputed from its per-seed losses.
void expect_summary_consistent(const SweepResult& r, std::int64_t seeds) {
  ASSERT_FALSE(r.grid.empty());
  std::vector<double> sds;
  std::size_t argmin = 0;
  for (std::size_t i = 0; i < r.grid.size(); ++i) {
    const SweepPoint& p = r.grid[i];
    ASSERT_EQ(p.validation_loss.size(), static_cast<std::size_t>(seeds));
    ASSERT_EQ(p.train_loss.size(), static_cast<std::size_t>(seeds));
    for (double l : p.validation_loss) EXPECT_TRUE(std::isfinite(l));
    EXPECT_DOUBLE_EQ(p.mean, mean(p.validation_loss));
    EXPECT_DOUBLE_EQ(p.sd, sample_sd(p.validation_loss));
    sds.push_back(p.sd);
    if (p.mean < r.grid[argmin].mean) argmin = i;
  }
  EXPECT_EQ(r.best, argmin);
  std::sort(sds.begin(), sds.end());
  const std::size_t n = sds.size();
  const double median = n % 2 == 1 ? sds[n / 2] : 0.5 * (sds[n / 2 - 1] + sds[n / 2]);
  EXPECT_DOUBLE_EQ(r.noise, median);
  EXPECT_GT(r.noise, 0);  // different seeds give different losses
  EXPECT_DOUBLE_EQ(r.tolerance, 2 * median * std::sqrt(2.0 / static_cast<double>(seeds)));
  EXPECT_EQ(r.seeds, seeds);
  EXPECT_EQ(r.runs(), static_cast<std::int64_t>(r.grid.size()) * seeds);
  EXPECT_EQ(r.inner_steps(), r.runs() * r.steps_per_run);
  EXPECT_EQ(r.row_gradients(), r.inner_steps() * r.rows_per_step);
}

TEST(Sweep, LogGridSpansTheEndsEvenlyInLogSpace) {
  const std::vector<double> g = d2r::runs::log_grid(0.1, 1000, 5);
  ASSERT_EQ(g.size(), 5u);
  EXPECT_DOUBLE_EQ(g.front(), 0.1);
  EXPECT_NEAR(g.back(), 1000, 1e-9);
  for (std::size_t i = 1; i < g.size(); ++i) EXPECT_NEAR(g[i] / g[i - 1], 10, 1e-9);
}

TEST(Sweep, RegressionBestIsTheArgminAndTheNoiseTheMedianSd) {
  const SweepSettings s = [] {
    SweepSettings t = cpu_settings({0.05, 1, 20}, 3);
    t.judged = {1};  // a judged value equal to a grid value runs the same seeds: the same losses
    return t;
  }();
  std::vector<std::pair<double, std::int64_t>> calls;
  const SweepResult r = d2r::runs::sweep(small_regression(), line_data(48, 1), line_data(24, 2), s, {}, "sweep",
                                         [&](double v, std::int64_t k, double loss) {
                                           EXPECT_TRUE(std::isfinite(loss));
                                           calls.emplace_back(v, k);
                                         });
  expect_summary_consistent(r, 3);
  ASSERT_EQ(calls.size(), 12u);  // (3 grid values + 1 judged) × 3 seeds, grid first
  EXPECT_EQ(calls.front(), std::make_pair(0.05, std::int64_t{0}));
  EXPECT_EQ(calls.back(), std::make_pair(1.0, std::int64_t{2}));
  EXPECT_EQ(r.steps_per_run, 30);
  EXPECT_EQ(r.rows_per_step, 48);
  // The runs are deterministic in the seed: the judged value repeats the grid's runs at 1.
  ASSERT_EQ(r.judged.size(), 1u);
  EXPECT_EQ(r.judged[0].validation_loss, r.grid[1].validation_loss);
  EXPECT_TRUE(r.judged[0].validation_accuracy.empty());
  EXPECT_EQ(r.within_noise_of_best(r.judged[0]), r.grid[1].mean <= r.grid[r.best].mean + r.tolerance);
  EXPECT_TRUE(r.within_noise_of_best(r.grid[r.best]));
  // The rewards differ by 400x, so the losses do too: the grid is not flat.
  EXPECT_NE(r.grid[0].mean, r.grid[2].mean);
}

TEST(Sweep, ClassificationBudgetTrainsTheBilevelLearner) {
  ClassificationConfig c;
  c.double_precision = true;
  c.plain.epochs = 2;
  c.plain.batch_size = 16;
  const ClassHostData train = sign_data(40, 3), val = sign_data(20, 4), test = sign_data(20, 5);
  SweepSettings s = cpu_settings({0.5, 4}, 2);
  s.budget = 15;
  const SweepResult r = d2r::runs::sweep(c, train, val, test, 2, s);
  expect_summary_consistent(r, 2);
  EXPECT_EQ(r.steps_per_run, 15);  // budget full-batch steps
  EXPECT_EQ(r.rows_per_step, 40);
  for (const SweepPoint& p : r.grid) {
    ASSERT_EQ(p.validation_accuracy.size(), 2u);
    for (double a : p.validation_accuracy) EXPECT_TRUE(a >= 0 && a <= 1);
  }
  // The pg protocol: epochs of minibatches.
  s.budget = 0;
  const SweepResult pg = d2r::runs::sweep(c, train, val, test, 2, s);
  EXPECT_EQ(pg.steps_per_run, 2 * 3);  // 2 epochs of ceil(40 / 16) batches
  EXPECT_EQ(pg.rows_per_step, 16);
}

TEST(Sweep, LearnerOfABudgetIsExactFullBatchAndClamped) {
  RegressionConfig rc = small_regression();
  const RegressionConfig r0 = d2r::runs::sweep_learner(rc, 0);
  EXPECT_EQ(r0.method, d2r::runs::Method::pg);
  EXPECT_EQ(r0.plain.steps, 30);
  EXPECT_EQ(r0.plain.evaluate_every, 30);
  EXPECT_EQ(r0.inner_objective, d2r::InnerObjective::reinforce);
  const RegressionConfig r1 = d2r::runs::sweep_learner(rc, 12);
  EXPECT_EQ(r1.plain.steps, 12);
  EXPECT_EQ(r1.plain.evaluate_every, 12);
  EXPECT_EQ(r1.inner_objective, d2r::InnerObjective::exact);
  ClassificationConfig cc;
  cc.plain.batch_size = 16;
  const ClassificationConfig c1 = d2r::runs::sweep_learner(cc, 12);
  EXPECT_EQ(c1.method, d2r::runs::ClassMethod::pg);
  EXPECT_EQ(c1.plain.epochs, 12);
  EXPECT_EQ(c1.plain.batch_size, 0);
  EXPECT_EQ(c1.plain.gradient_clamp, d2r::runs::program_bilevel_defaults().inner.gradient_clamp);
  EXPECT_EQ(c1.inner_objective, d2r::InnerObjective::exact);
}

template <class F>
std::string refused(F&& f);

TEST(Sweep, StationaryLearnerIsTheOuterLossAFixedStartFitMinimises) {
  // --preset stationary's learner, looser so the test is quick: each run is one outer step from θ₀.
  ClassificationConfig c;
  c.double_precision = true;
  d2r::runs::apply_bilevel_preset(c, "stationary");
  c.bilevel.inner.stationarity_tolerance = 1e-2;
  c.bilevel.inner.max_steps = 2000;
  const ClassHostData train = sign_data(40, 3), val = sign_data(20, 4), test = sign_data(20, 5);
  SweepSettings s = cpu_settings({0.5, 4}, 2);
  s.stationary = true;
  const SweepResult r = d2r::runs::sweep(c, train, val, test, 2, s);
  EXPECT_EQ(r.steps_per_run, 0);  // each run trains to the tolerance: SweepPoint::steps
  EXPECT_EQ(r.rows_per_step, 40);
  std::int64_t total = 0;
  std::vector<std::int64_t> all;
  for (const SweepPoint& p : r.grid) {
    ASSERT_EQ(p.steps.size(), 2u);
    for (std::int64_t k : p.steps) {
      EXPECT_GE(k, c.bilevel.inner.steps);
      EXPECT_LE(k, c.bilevel.inner.max_steps);
      EXPECT_EQ(k % c.bilevel.inner.steps, 0);  // K_in steps at a time
      total += k;
      all.push_back(k);
    }
  }
  EXPECT_EQ(r.inner_steps(), total);
  EXPECT_NE(*std::min_element(all.begin(), all.end()), *std::max_element(all.begin(), all.end()))
      << "the steps to stationarity should depend on β";
  // A fit with the same settings and seed (several outer steps, a real solve) evaluates the same
  // function at its first step: the sweep's loss at β = 4, seed 7 + 1, bit for bit.
  ClassificationConfig fit = c;
  fit.method = d2r::runs::ClassMethod::bilevel;
  fit.outer_steps = 2;
  fit.beta = 4;
  fit.seed = 8;
  d2r::Context ctx({.backend = Backend::cpu, .seed = 8});
  d2r::runs::ClassificationRun run(ctx, fit, train, val, test, 2, {}, "test");
  const d2r::runs::ClassificationResult res = run.run();
  ASSERT_EQ(res.outer.size(), 2u);
  EXPECT_EQ(res.outer[0].outer_loss, r.grid[1].validation_loss[1]);
  EXPECT_EQ(res.outer[0].inner_steps, r.grid[1].steps[1]);
  // The stationary learner trains to a tolerance: a budget or no tolerance is refused.
  s.budget = 10;
  EXPECT_EQ(refused([&] { (void)d2r::runs::sweep(c, train, val, test, 2, s); }), "settings.stationary");
  s.budget = 0;
  ClassificationConfig untoleranced = c;
  untoleranced.bilevel.inner.stationarity_tolerance = 0;
  EXPECT_EQ(refused([&] { (void)d2r::runs::sweep(untoleranced, train, val, test, 2, s); }),
            "config.bilevel.inner.stationarity_tolerance");
}

/// The argument of the d2r::Error that `f` throws ("" when it throws none).
template <class F>
std::string refused(F&& f) {
  try {
    f();
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.kind(), d2r::ErrorKind::invalid_argument);
    return e.argument();
  }
  return "";
}

TEST(Sweep, RowsAreOnePerRunGridFirstThenJudgedSeedBySeed) {
  d2r::runs::SweepResult r;
  r.grid = {{.value = 0.5, .validation_loss = {1, 2}, .train_loss = {3, 4}, .validation_accuracy = {}, .steps = {10, 11}},
            {.value = 2, .validation_loss = {5, 6}, .train_loss = {7, 8}, .validation_accuracy = {}, .steps = {12, 13}}};
  r.judged = {{.value = 1, .validation_loss = {9, 10}, .train_loss = {11, 12}, .validation_accuracy = {0.25, 0.75},
               .steps = {14, 15}}};
  d2r::runs::RecordTable t;
  d2r::runs::append_sweep_rows(t, r, 7);
  EXPECT_EQ(t.header, (std::vector<std::string>{"value", "seed", "validation_loss", "train_loss", "validation_accuracy",
                                                "steps"}));
  ASSERT_EQ(t.rows.size(), 6u);
  EXPECT_EQ(t.rows[0][0], 0.5);
  EXPECT_EQ(t.rows[0][1], 7);
  EXPECT_EQ(t.rows[1][1], 8);
  EXPECT_EQ(t.rows[1][2], 2);
  EXPECT_EQ(t.rows[1][3], 4);
  EXPECT_TRUE(std::isnan(t.rows[1][4]));  // a regression has no accuracy
  EXPECT_EQ(t.rows[3][5], 13);
  EXPECT_EQ(t.rows[5], (std::vector<double>{1, 8, 10, 12, 0.75, 15}));
  // A second group's runs follow under the same header.
  d2r::runs::append_sweep_rows(t, r, 7);
  EXPECT_EQ(t.rows.size(), 12u);
  EXPECT_EQ(t.header.size(), 6u);
}

TEST(Sweep, BadSettingsAreRefusedNamingTheField) {
  const HostData train = line_data(16, 1), val = line_data(8, 2);
  const auto sweep_with = [&](SweepSettings s, const HostData& v) {
    return [s, &train, &v] { (void)d2r::runs::sweep(small_regression(), train, v, s); };
  };
  const SweepSettings ok = cpu_settings({1}, 1);
  SweepSettings s = ok;
  s.values = {};
  EXPECT_EQ(refused(sweep_with(s, val)), "settings.values");
  s.values = {1, -2};
  EXPECT_EQ(refused(sweep_with(s, val)), "settings.values");
  s = ok;
  s.judged = {std::nan("")};
  EXPECT_EQ(refused(sweep_with(s, val)), "settings.judged");
  s = ok;
  s.seeds = 0;
  EXPECT_EQ(refused(sweep_with(s, val)), "settings.seeds");
  s = ok;
  s.budget = -1;
  EXPECT_EQ(refused(sweep_with(s, val)), "settings.budget");
  EXPECT_EQ(refused(sweep_with(ok, HostData{})), "validation");
  // The runs' own check names the configuration's field.
  RegressionConfig bad = small_regression();
  bad.lambda = -1;
  EXPECT_EQ(refused([&] { (void)d2r::runs::sweep(bad, train, val, ok); }), "config.lambda");
  EXPECT_EQ(refused([] { (void)d2r::runs::log_grid(0, 1, 3); }), "min");
  EXPECT_EQ(refused([] { (void)d2r::runs::log_grid(2, 1, 3); }), "max");
  EXPECT_EQ(refused([] { (void)d2r::runs::log_grid(1, 2, 1); }), "points");
}

}  // namespace
