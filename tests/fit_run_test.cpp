// d2r/fit_run.hpp: one fit of either task end to end through the library alone (the run behind
// `d2r fit`, without the program): records and final metrics, the options it trains with, a
// bilevel checkpoint resumed bit for bit, and bad input found only by the run.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <unistd.h>
#include <string>
#include <vector>

#include "d2r/error.hpp"
#include "d2r/fit_run.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::Backend;
using d2r::Context;
using d2r::runs::ClassHostData;
using d2r::runs::ClassificationConfig;
using d2r::runs::ClassificationRun;
using d2r::runs::ClassMethod;
using d2r::runs::HostData;
using d2r::runs::Method;
using d2r::runs::RegressionConfig;
using d2r::runs::RegressionRun;
using d2r::test::TestRng;

/// y = 2x + 0.1·noise, one input and one target.
HostData line_data(std::int64_t rows, std::uint64_t seed) {
  TestRng rng(seed);
  HostData d{.rows = rows, .inputs = 1, .dims = 1, .x = {}, .y = {}};
  for (std::int64_t i = 0; i < rows; ++i) {
    const double x = rng.uniform(-1.0, 1.0);
    d.x.push_back(x);
    d.y.push_back(2 * x + 0.1 * rng.uniform(-1.0, 1.0));
  }
  return d;
}

/// Two classes split by the sign of the first of two inputs.
ClassHostData sign_data(std::int64_t rows, std::uint64_t seed) {
  TestRng rng(seed);
  ClassHostData d{.rows = rows, .inputs = 2, .x = {}, .labels = {}};
  for (std::int64_t i = 0; i < rows; ++i) {
    const double a = rng.uniform(-1.0, 1.0), b = rng.uniform(-1.0, 1.0);
    d.x.insert(d.x.end(), {a, b});
    d.labels.push_back(a > 0 ? 1 : 0);
  }
  return d;
}

TEST(FitRun, RegressionNllLearnsTheLine) {
  Context ctx({.backend = Backend::cpu, .seed = 1});
  RegressionConfig c;
  c.method = Method::nll;
  c.double_precision = true;
  c.hidden = {8};
  c.plain.steps = 200;
  c.plain.evaluate_every = 50;
  c.plain.adam.learning_rate = 0.02;
  RegressionRun run(ctx, c, line_data(64, 2), line_data(32, 3), d2r::DataParallel{});
  EXPECT_EQ(run.total_units(), 200);
  ASSERT_TRUE(run.options().policy.has_value());
  EXPECT_FALSE(run.options().bilevel.has_value());
  const d2r::runs::RunResult r = run.run();
  ASSERT_EQ(r.records.size(), 4u);  // steps 50, 100, 150, 200
  EXPECT_EQ(r.records.back().step, 200);
  EXPECT_TRUE(r.reward_params.empty());
  EXPECT_LT(r.train.nll_per_dim, r.records.front().train.nll_per_dim);
  EXPECT_LT(r.held_out.rmse, 0.5);  // the targets' own spread is about 1.15
  EXPECT_EQ(r.held_out.rmse, r.records.back().held_out.rmse);
}

TEST(FitRun, RegressionBilevelResumesBitForBit) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("d2r_fit_run_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  RegressionConfig c;
  c.method = Method::bilevel;
  c.double_precision = true;
  c.hidden = {8};
  c.reward_params = {1.0};
  c.outer_steps = 4;
  c.bilevel.inner.steps = 10;
  c.bilevel.outer_data = d2r::OuterData::validation;
  const HostData train = line_data(48, 4), val = line_data(24, 5);
  const auto full = [&] {
    Context ctx({.backend = Backend::cpu, .seed = 7});
    RegressionRun run(ctx, c, train, val, d2r::DataParallel{});
    return run.run();
  }();
  ASSERT_EQ(full.records.size(), 4u);
  EXPECT_NE(full.verdict.status, d2r::BilevelStatus::running);
  // Two outer steps with a checkpoint, then a second run resumes from it and takes the other two.
  {
    RegressionConfig half = c;
    half.outer_steps = 2;
    Context ctx({.backend = Backend::cpu, .seed = 7});
    RegressionRun run(ctx, half, train, val, d2r::DataParallel{});
    run.set_checkpoint(dir / "run.ckpt", 1);
    EXPECT_EQ(run.run().records.size(), 2u);
  }
  Context ctx({.backend = Backend::cpu, .seed = 7});
  RegressionRun run(ctx, c, train, val, d2r::DataParallel{});
  ASSERT_TRUE(run.options().bilevel.has_value());
  EXPECT_EQ(run.resume(dir / "run.ckpt"), 2);
  const d2r::runs::RunResult resumed = run.run();
  ASSERT_EQ(resumed.records.size(), 4u);
  EXPECT_EQ(resumed.reward_params, full.reward_params);
  EXPECT_EQ(resumed.held_out.nll_per_dim, full.held_out.nll_per_dim);
  EXPECT_EQ(resumed.verdict.status, full.verdict.status);
  // A run of fewer outer steps than the checkpoint holds refuses it, naming --resume.
  RegressionConfig shorter = c;
  shorter.outer_steps = 1;
  Context ctx1({.backend = Backend::cpu, .seed = 7});
  RegressionRun short_run(ctx1, shorter, train, val, d2r::DataParallel{}, "fit");
  try {
    short_run.resume(dir / "run.ckpt");
    ADD_FAILURE() << "a checkpoint of 2 outer steps resumed into a run of 1";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "--resume");
    EXPECT_NE(std::string(e.what()).find("holds 2 outer steps, more than --outer-steps 1"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(FitRun, ClassificationNllAndBilevel) {
  const ClassHostData train = sign_data(80, 8), val = sign_data(40, 9), test = sign_data(40, 10);
  ClassificationConfig c;
  c.method = ClassMethod::nll;
  c.double_precision = true;
  c.plain.epochs = 20;
  c.plain.batch_size = 0;
  c.learning_rate = 0.1;
  {
    Context ctx({.backend = Backend::cpu, .seed = 1});
    ClassificationRun run(ctx, c, train, val, test, 2, d2r::DataParallel{});
    EXPECT_EQ(run.total_units(), 1);
    const d2r::runs::ClassificationResult r = run.run();
    ASSERT_EQ(r.epochs.size(), 20u);
    EXPECT_TRUE(std::isnan(r.beta));  // nll trains with no reward
    EXPECT_GT(r.test.accuracy, 0.85);
    EXPECT_GT(r.validation.accuracy, 0.85);
    EXPECT_GT(r.mean_test_accuracy, 0.5);
    EXPECT_LE(r.mean_test_accuracy, 1.0);
    EXPECT_GT(run.heuristic_beta(), 0);  // λ = 1
  }
  c.method = ClassMethod::bilevel;
  c.outer_steps = 3;
  c.bilevel.inner.steps = 5;
  Context ctx({.backend = Backend::cpu, .seed = 1});
  ClassificationRun run(ctx, c, train, val, test, 2, d2r::DataParallel{});
  EXPECT_EQ(run.total_units(), 4);  // the outer steps, then the epochs
  ASSERT_TRUE(run.options().bilevel.has_value());
  ASSERT_TRUE(run.options().classifier.has_value());
  std::int64_t calls = 0;
  const d2r::runs::ClassificationResult r = run.run([&](std::int64_t, std::int64_t total, const std::string&) {
    ++calls;
    EXPECT_EQ(total, 4);
  });
  EXPECT_EQ(calls, 4);
  ASSERT_EQ(r.outer.size(), 3u);
  double mean = 0;  // the paper preset: β is the mean of the outer steps' β (beta_tail 10 > 3)
  for (const auto& s : r.outer) mean += s.beta / 3;
  EXPECT_DOUBLE_EQ(r.beta, mean);
  EXPECT_NE(r.outer.back().beta, c.beta);
  // FinalModel::last (the library's default): the model is the inner policy of the last outer step, no epochs.
  EXPECT_TRUE(r.epochs.empty());
  EXPECT_EQ(r.model.source, d2r::runs::FinalModel::last);
  EXPECT_EQ(r.model.outer_step, 3);
  EXPECT_EQ(r.model.trained_at, std::vector<double>{r.outer[1].beta});
  EXPECT_TRUE(std::isnan(r.mean_test_accuracy));
  // FinalModel::pg (the paper's protocol): PG retrained for the epochs at the learned β.
  c.final_model = d2r::runs::FinalModel::pg;
  Context ctx2({.backend = Backend::cpu, .seed = 1});
  ClassificationRun refit(ctx2, c, train, val, test, 2, d2r::DataParallel{});
  const d2r::runs::ClassificationResult p = refit.run();
  EXPECT_EQ(p.epochs.size(), 20u);
  EXPECT_EQ(p.model.outer_step, 0);
  EXPECT_EQ(p.model.source, d2r::runs::FinalModel::pg);
  EXPECT_EQ(p.beta, r.beta);  // the same outer loop
  EXPECT_GT(p.test.accuracy, 0.85);
}

TEST(FitRun, BadSettingsAndDataAreRefusedNamingTheField) {
  Context ctx({.backend = Backend::cpu, .seed = 1});
  const HostData train = line_data(16, 11);
  const auto refused = [&](const RegressionConfig& c, const HostData& held, const std::string& argument) {
    try {
      RegressionRun run(ctx, c, train, held, d2r::DataParallel{});
      ADD_FAILURE() << "accepted; expected a refusal of " << argument;
    } catch (const d2r::Error& e) {
      EXPECT_EQ(e.kind(), d2r::ErrorKind::invalid_argument);
      EXPECT_EQ(e.argument(), argument) << e.what();
    }
  };
  RegressionConfig c;
  c.lambda = -1;
  refused(c, {}, "config.lambda");
  c = {};
  c.method = Method::bilevel;
  c.reward_params = {1.0};
  c.bilevel.outer_data = d2r::OuterData::validation;
  refused(c, {}, "config.bilevel.outer_data");  // no validation rows
  c.bilevel.outer_data = d2r::OuterData::train;
  c.bilevel.stopping.window = 1;
  refused(c, {}, "config.bilevel.stopping.window");
  c = {};
  HostData wide = line_data(4, 12);
  wide.inputs = 2;
  wide.rows = 2;
  refused(c, wide, "held_out");  // 2 rows of 2 inputs and 4 target values
  ClassificationConfig k;
  const ClassHostData rows = sign_data(10, 13);
  try {
    ClassificationRun run(ctx, k, rows, {}, rows, 1, d2r::DataParallel{});
    ADD_FAILURE() << "one class accepted";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "classes");
  }
}

TEST(FitRun, LibraryCallersGetTheChecksTheProgramMakes) {
  Context ctx({.backend = Backend::cpu, .seed = 1});
  const HostData train = line_data(16, 11);
  const auto refused = [](const std::string& argument, const auto& fn) {
    try {
      fn();
      ADD_FAILURE() << "accepted; expected a refusal of " << argument;
    } catch (const d2r::Error& e) {
      EXPECT_EQ(e.kind(), d2r::ErrorKind::invalid_argument);
      EXPECT_EQ(e.argument(), argument) << e.what();
    }
  };
  RegressionConfig c;
  c.target_scale = 0;  // would make every metric NaN (log 0)
  refused("config.target_scale", [&] { RegressionRun run(ctx, c, train, {}, d2r::DataParallel{}); });
  c = {};
  c.target_mean = {0.0, 1.0};  // one target
  refused("config.target_mean", [&] { RegressionRun run(ctx, c, train, {}, d2r::DataParallel{}); });
  c = {};
  c.method = Method::bilevel;
  c.reward_params = {1.0};
  c.bilevel.outer_data = d2r::OuterData::train;
  c.preset = "Paper";  // not a preset: would silently act as "recommended"
  refused("config.preset", [&] { RegressionRun run(ctx, c, train, {}, d2r::DataParallel{}); });
  // A deterministic split with blocks of 0 rows would divide by zero in local_rows.
  d2r::SingleProcessCommunicator one;
  const d2r::DataParallel bad{.communicator = &one, .deterministic = true, .block_rows = 0};
  refused("parallel", [&] { RegressionRun run(ctx, RegressionConfig{}, train, {}, bad); });
  refused("dp.block_rows", [&] { (void)d2r::local_rows(bad, 16); });
  refused("parallel.block_rows", [&] { (void)d2r::classifier_rows_held(bad, 16, 4); });
  // Checkpoints every 0 steps (k % 0), and the resume of a run with no trainer.
  c = {};
  c.method = Method::nll;
  RegressionRun plain(ctx, c, train, {}, d2r::DataParallel{});
  refused("every", [&] { plain.set_checkpoint("unused.ckpt", 0); });
  refused("--resume", [&] { (void)plain.resume("unused.ckpt"); });
}

}  // namespace

namespace {

TEST(FitRun, ModelWarningsSayWhatTheReturnedModelIs) {
  using d2r::runs::FinalModel;
  d2r::runs::ReturnedModel m;
  m.source = FinalModel::best;
  m.outer_step = 3;
  EXPECT_TRUE(d2r::runs::model_warnings(m, FinalModel::best, 10).empty());  // a learned step: nothing to say
  m.outer_step = 1;  // the first of 10: the reward reported is the starting one
  std::vector<std::string> w = d2r::runs::model_warnings(m, FinalModel::best, 10);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("the first of 10"), std::string::npos) << w[0];
  EXPECT_TRUE(d2r::runs::model_warnings(m, FinalModel::best, 1).empty());  // the only step
  m = {};
  m.source = FinalModel::last;
  m.fallback = true;
  m.tracked_from = 4;
  w = d2r::runs::model_warnings(m, FinalModel::best, 10);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NE(w[0].find("no outer step had a stationary inner policy"), std::string::npos) << w[0];
  EXPECT_NE(w[1].find("outer steps 4 onwards"), std::string::npos) << w[1];
  EXPECT_EQ(d2r::runs::model_warnings(m, FinalModel::last, 10).size(), 1u);  // the resume matters only to best
}

}  // namespace

namespace {

TEST(FitRun, BilevelPresetSetsItsFieldsAndKeepsTheRest) {
  RegressionConfig c;
  c.bilevel.inner.adam.learning_rate = 0.123;
  c.bilevel.hypergradient_clamp = 7;
  d2r::runs::apply_bilevel_preset(c, "recommended");
  const d2r::BilevelOptions<double> r = d2r::BilevelOptions<double>::recommended();
  EXPECT_EQ(c.preset, "recommended");
  EXPECT_EQ(c.bilevel.optimizer, r.optimizer);
  EXPECT_EQ(c.bilevel.outer_data, r.outer_data);
  EXPECT_EQ(c.bilevel.cg.max_iterations, r.cg.max_iterations);
  EXPECT_EQ(c.inner_objective, r.inner.objective);  // the shared setting follows the preset
  EXPECT_EQ(c.bilevel.inner.adam.learning_rate, 0.123);  // kept
  EXPECT_EQ(c.bilevel.hypergradient_clamp, 7);
  d2r::runs::apply_bilevel_preset(c, "paper");
  EXPECT_EQ(c.bilevel.optimizer, d2r::BilevelOptions<double>::paper().optimizer);
  EXPECT_EQ(c.bilevel.inner.adam.learning_rate, 0.123);
  try {
    d2r::runs::apply_bilevel_preset(c, "fast");
    ADD_FAILURE() << "an unknown preset was accepted";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "preset");
    EXPECT_EQ(c.preset, "paper");  // unchanged
  }
}

}  // namespace

namespace {

TEST(FitRun, DataHashChangesWithAnyValue) {
  const HostData train = line_data(16, 1), val = line_data(8, 2);
  const std::string h = d2r::runs::data_hash(train, val);
  EXPECT_EQ(h.size(), 16u);
  EXPECT_EQ(d2r::runs::data_hash(line_data(16, 1), line_data(8, 2)), h);  // the same values
  HostData moved = val;
  moved.y[7] += 1e-12;
  EXPECT_NE(d2r::runs::data_hash(train, moved), h);
  EXPECT_NE(d2r::runs::data_hash(val, train), h);  // the parts in order
  const ClassHostData a = sign_data(12, 3), b = sign_data(6, 4), c = sign_data(6, 5);
  const std::string hc = d2r::runs::data_hash(a, b, c);
  ClassHostData relabelled = c;
  relabelled.labels[0] = 1 - relabelled.labels[0];
  EXPECT_NE(d2r::runs::data_hash(a, b, relabelled), hc);
  EXPECT_EQ(d2r::runs::data_hash(sign_data(12, 3), sign_data(6, 4), sign_data(6, 5)), hc);
}

TEST(FitRun, NonFiniteNamesTheFirstBadFigure) {
  d2r::runs::RunResult r;
  r.train.nll_per_dim = 1;
  r.train.rmse = 0.5;
  r.held_out.nll_per_dim = r.held_out.rmse = NAN;  // no held-out rows
  EXPECT_EQ(d2r::runs::non_finite(r, false), "");
  EXPECT_EQ(d2r::runs::non_finite(r, true), "the final validation NLL is nan");
  r.reward_params = {1, INFINITY};
  EXPECT_EQ(d2r::runs::non_finite(r, false), "reward parameter 1 is inf");
  r.train.rmse = NAN;
  EXPECT_EQ(d2r::runs::non_finite(r, false), "the final training RMSE is nan");
  d2r::runs::ClassificationResult c;
  c.train.nll_per_dim = 0.5;
  c.test.nll_per_dim = 0.6;
  c.validation.nll_per_dim = NAN;
  EXPECT_EQ(d2r::runs::non_finite(c, false, ClassMethod::nll), "");  // β is NaN for nll: not a figure of it
  EXPECT_EQ(d2r::runs::non_finite(c, false, ClassMethod::pg), "the learned β is nan");
  c.beta = 2;
  EXPECT_EQ(d2r::runs::non_finite(c, false, ClassMethod::pg), "");
  EXPECT_EQ(d2r::runs::non_finite(c, true, ClassMethod::pg), "the final validation cross-entropy is nan");
}

}  // namespace
