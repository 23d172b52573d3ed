// The bilevel trainer's minibatched inner loop (batch 0 and batch >= N are the full batch, a
// window step is a full-batch step on the window's rows, the Fig. 3 run and the classification
// run with windows, kill-and-resume in the middle of a pass, bad batch sizes and old checkpoints)
// and InnerStart::fixed (the outer loss as a function of the reward alone).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/bilevel_test_support.hpp"
#include "tests/test_utils.hpp"


// ------------------------------------------------------------------ minibatched inner loop
namespace {

using d2r::BilevelOptions;
using d2r::BilevelTrainer;
using d2r::InnerStart;
using d2r::RewardForm;
using d2r::test::TestRng;
using d2r::test::bilevel::cmat;
using d2r::test::bilevel::Fig3Data;
using d2r::test::bilevel::mean_of_last;
using d2r::test::bilevel::normal;
using d2r::test::bilevel::temp_dir;

/// Three classes in 2-D (class c near the c-th unit vector), N rows.
struct ThreeClassData {
  std::int64_t N;
  std::vector<double> x;
  std::vector<std::int32_t> labels;
  ThreeClassData(std::int64_t rows, double noise, std::uint64_t seed) : N(rows) {
    TestRng rng(seed);
    for (std::int64_t i = 0; i < N; ++i) {
      const auto c = static_cast<std::int32_t>(i % 3);
      labels.push_back(c);
      for (int f = 0; f < 2; ++f) x.push_back((f == c ? 1.0 : 0.0) + noise * normal(rng));
    }
  }
  d2r::ClassificationData<double> data() const { return {cmat(x, N, 2), {labels.data(), N}}; }
  /// The rows `rows` (in that order) as a data set of their own.
  ThreeClassData subset(const std::vector<std::int64_t>& rows) const {
    ThreeClassData out(0, 0, 0);
    out.N = static_cast<std::int64_t>(rows.size());
    for (std::int64_t r : rows) {
      out.x.insert(out.x.end(), x.begin() + 2 * r, x.begin() + 2 * r + 2);
      out.labels.push_back(labels[static_cast<std::size_t>(r)]);
    }
    return out;
  }
};

/// Rows `rows` of packed host rows of `width` values, in that order.
std::vector<double> take_rows(const std::vector<double>& v, std::int64_t width, const std::vector<std::int64_t>& rows) {
  std::vector<double> out;
  for (std::int64_t r : rows) out.insert(out.end(), v.begin() + r * width, v.begin() + (r + 1) * width);
  return out;
}

void expect_same_history(const BilevelTrainer<double>& a, const BilevelTrainer<double>& b, const std::string& what) {
  ASSERT_EQ(a.history().size(), b.history().size()) << what;
  for (std::size_t k = 0; k < a.history().size(); ++k) {
    const d2r::BilevelRecord &ra = a.history()[k], &rb = b.history()[k];
    EXPECT_EQ(ra.reward_params, rb.reward_params) << what << ", step " << k + 1;
    EXPECT_EQ(ra.hypergradient, rb.hypergradient) << what << ", step " << k + 1;
    EXPECT_EQ(ra.train.nll_per_dim, rb.train.nll_per_dim) << what << ", step " << k + 1;
    EXPECT_EQ(ra.mean_inner_reward, rb.mean_inner_reward) << what << ", step " << k + 1;
    EXPECT_EQ(ra.solver_residual, rb.solver_residual) << what << ", step " << k + 1;
  }
  const auto ta = a.policy_params(), tb = b.policy_params();
  ASSERT_EQ(ta.size, tb.size) << what;
  EXPECT_TRUE(std::equal(ta.data, ta.data + ta.size, tb.data)) << what << ": θ differs";
}

TEST(Minibatch, BatchZeroAndBatchAtLeastNAreTheSameFullBatchRun) {
  // REINFORCE inner steps (draws included), both data kinds: 0, N and N + 7 rows per step are the
  // full batch, bit for bit, and no minibatch position is kept.
  const Fig3Data d(10, 6.0, 1.25, 17);  // N = 100
  const ThreeClassData c(45, 0.8, 6);
  for (bool classification : {false, true}) {
    const std::int64_t N = classification ? c.N : d.N;
    std::vector<std::unique_ptr<BilevelTrainer<double>>> runs;
    std::vector<std::unique_ptr<d2r::Context>> contexts;
    for (std::int64_t batch : {std::int64_t{0}, N, N + 7}) {
      contexts.push_back(std::make_unique<d2r::Context>(d2r::ContextOptions{.backend = d2r::Backend::cpu, .seed = 4}));
      BilevelOptions<double> o;
      o.inner.steps = 6;
      o.inner.batch_size = batch;
      o.inner_start = InnerStart::warm;
      runs.push_back(classification ? std::make_unique<BilevelTrainer<double>>(
                                          *contexts.back(), d2r::MlpSpec{.inputs = 2}, c.data(),
                                          d2r::ClassificationData<double>{}, 3, RewardForm::scalar,
                                          std::vector<double>{1.0}, o)
                                    : std::make_unique<BilevelTrainer<double>>(
                                          *contexts.back(), d2r::MlpSpec{.inputs = 2, .hidden = {6}}, d.data(),
                                          d2r::RegressionData<double>{}, RewardForm::diagonal,
                                          std::vector<double>{1.0, 0.5}, o));
      for (int k = 0; k < 3; ++k) runs.back()->step();
      EXPECT_TRUE(runs.back()->window_rows().empty());
    }
    const std::string kind = classification ? "classification" : "regression";
    expect_same_history(*runs[0], *runs[1], kind + ": batch 0 vs N");
    expect_same_history(*runs[0], *runs[2], kind + ": batch 0 vs N + 7");
  }
}

TEST(Minibatch, AWindowStepIsAFullBatchStepOnTheWindowsRows) {
  // The exact (deterministic) inner objective, one inner step from a fresh policy: the minibatched
  // trainer's step on its window must equal, bit for bit, the step of a full-batch trainer built
  // on just those rows (in window order) — the same rows, and the gradient normalised per row of
  // the window (1/B, not 1/N). Then the windows walk through the pass: floor(N/B) disjoint windows
  // of B distinct rows, and the next pass is a new permutation.
  BilevelOptions<double> o;
  o.inner.objective = d2r::InnerObjective::exact;
  o.inner.steps = 1;
  o.inner.adam.learning_rate = 0.05;
  // Adam's first step is about lr·sign(g), blind to the gradient's scale; with ε ≫ |g| it is
  // lr·g/ε, so a window gradient normalised by 1/N instead of 1/B would move θ 3.3 times less.
  o.inner.adam.epsilon = 1e3;
  o.inner.gradient_clamp = std::numeric_limits<double>::infinity();  // the clamp would hide the scale
  o.inner_start = InnerStart::fresh;
  o.seed = 11;
  const std::int64_t B = 30;
  const auto same_theta = [](const BilevelTrainer<double>& a, const BilevelTrainer<double>& b) {
    const auto ta = a.policy_params(), tb = b.policy_params();
    return ta.size == tb.size && std::equal(ta.data, ta.data + ta.size, tb.data);
  };
  {  // regression (N = 100: 3 windows of 30 per pass, 10 rows dropped)
    const Fig3Data d(10, 6.0, 1.25, 21);
    d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 1}};
    auto mo = o;
    mo.inner.batch_size = B;
    const d2r::MlpSpec net{.inputs = 2, .hidden = {5}};
    BilevelTrainer<double> mini(ctx, net, d.data(), {}, RewardForm::scalar, std::vector<double>{0.7}, mo);
    const d2r::BilevelRecord first = mini.step();
    const std::vector<std::int64_t> w1 = mini.window_rows();
    ASSERT_EQ(static_cast<std::int64_t>(w1.size()), B);
    const std::vector<double> xs = take_rows(d.x, 2, w1), ys = take_rows(d.y, 2, w1);
    BilevelTrainer<double> sub(ctx, net, {cmat(xs, B, 2), cmat(ys, B, 2)}, {}, RewardForm::scalar,
                               std::vector<double>{0.7}, o);
    const d2r::BilevelRecord ref = sub.step();
    EXPECT_TRUE(same_theta(mini, sub)) << "θ after one window step differs from the step on the window's rows";
    EXPECT_EQ(first.mean_inner_reward, ref.mean_inner_reward);  // E[r] averaged over the window's rows
    // A full-batch step on all rows moves θ differently (the window is not the whole data).
    BilevelTrainer<double> full(ctx, net, d.data(), {}, RewardForm::scalar, std::vector<double>{0.7}, o);
    full.step();
    EXPECT_FALSE(same_theta(mini, full));
    // The pass: windows 2 and 3 are disjoint from window 1 and each other; 90 distinct rows in all.
    std::vector<std::int64_t> seen = w1;
    for (int k = 0; k < 2; ++k) {
      mini.step();
      const std::vector<std::int64_t> w = mini.window_rows();
      ASSERT_EQ(static_cast<std::int64_t>(w.size()), B);
      seen.insert(seen.end(), w.begin(), w.end());
    }
    std::vector<std::int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end()) << "a row appears twice in one pass";
    EXPECT_GE(sorted.front(), 0);
    EXPECT_LT(sorted.back(), d.N);
    mini.step();  // pass 2, window 1: another permutation
    const std::vector<std::int64_t> w4 = mini.window_rows();
    EXPECT_EQ(static_cast<std::int64_t>(w4.size()), B);
    EXPECT_NE(w4, w1);
  }
  {  // classification (logistic regression, N = 45, windows of 30: one per pass, 15 rows dropped)
    const ThreeClassData c(45, 0.8, 7);
    d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 1}};
    auto mo = o;
    mo.inner.batch_size = B;
    BilevelTrainer<double> mini(ctx, {.inputs = 2}, c.data(), {}, 3, RewardForm::scalar, std::vector<double>{2.0}, mo);
    const d2r::BilevelRecord first = mini.step();
    const std::vector<std::int64_t> w1 = mini.window_rows();
    ASSERT_EQ(static_cast<std::int64_t>(w1.size()), B);
    const ThreeClassData s = c.subset(w1);
    BilevelTrainer<double> sub(ctx, {.inputs = 2}, s.data(), {}, 3, RewardForm::scalar, std::vector<double>{2.0}, o);
    const d2r::BilevelRecord ref = sub.step();
    EXPECT_TRUE(same_theta(mini, sub)) << "classification: θ after one window step differs";
    EXPECT_EQ(first.mean_inner_reward, ref.mean_inner_reward);
    mini.step();
    EXPECT_NE(mini.window_rows(), w1);  // one window per pass: the next step is a new pass
  }
}

TEST(Minibatch, Fig3RunWithWindowsOf100RowsStillBringsUToUStar) {
  // The Fig. 3 setting of fig3_trajectory (N = 1000 rows, warm start, K_in = 50, G = 5, exact
  // curvature, u from 1) with every inner Adam step on a window of 100 shuffled rows (5 passes per
  // outer step) instead of all rows; the implicit step still sees every row, so u* = 1/(2v) ≈ 0.32
  // is unchanged. The REINFORCE advantages use the leave-one-out baseline: plain REINFORCE (A = r,
  // the default) has a gradient variance that at 100–500 rows per step (unlike 1000) makes the
  // first outer steps' policy blow up now and then (train NLL > 1e10; the baseline removes it), so
  // the test checks the minibatch logic, not that. Tolerance 0.04 on the mean of the last 20 outer
  // steps (the full-batch test allows 0.03): the window noise moves θ*_k around the full-data
  // optimum, so u jitters by one or two outer Adam steps (0.01 each) more.
  const Fig3Data d(100, 6.0, 1.25, 3);
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 5}};
  BilevelOptions<double> o;
  o.inner_start = InnerStart::warm;
  o.inner.batch_size = 100;
  o.inner.pg.transform.kind = d2r::Transform::leave_one_out;
  BilevelTrainer<double> trainer(ctx, {.inputs = 2, .hidden = {64, 64}}, d.data(), {}, RewardForm::scalar,
                                 std::vector<double>{1.0}, o);
  std::vector<double> u;
  for (int k = 0; k < 120; ++k) u.push_back(trainer.step().reward_params[0]);
  EXPECT_LT(u[9], 1.0);  // toward u*, not away
  EXPECT_NEAR(mean_of_last(u, 20), 0.32, 0.04) << ::testing::PrintToString(u);
  EXPECT_LT(*std::max_element(u.end() - 20, u.end()), 0.32 + 0.08);
  EXPECT_LT(trainer.history().back().train.nll_per_dim, 2.0);  // the policy fits the data
}

TEST(Minibatch, ClassificationBetaMovesTheWayOfTheFullBatchRun) {
  // Logistic regression, outer cross-entropy on validation rows (PAPER.md's tabular setting in
  // small, 15 outer steps of 0.1): the minibatched run (windows of 16 of the 90 rows) moves β the
  // same way as the full-batch run, by more than 3 outer steps, from below (β = 0.3: up) and from
  // above (β = 3: down) the point the runs settle near (≈ 2).
  const ThreeClassData train(90, 0.9, 8), val(60, 0.9, 9);
  for (double beta0 : {0.3, 3.0}) {
    std::vector<double> end;
    for (std::int64_t batch : {std::int64_t{0}, std::int64_t{16}}) {
      d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
      BilevelOptions<double> o;
      o.inner.steps = 20;
      o.inner.generations = 20;
      o.inner.adam.learning_rate = 0.05;
      o.inner.batch_size = batch;
      o.inner_start = InnerStart::warm;
      o.outer_data = d2r::OuterData::validation;
      o.outer_adam.learning_rate = 0.1;
      BilevelTrainer<double> t(ctx, {.inputs = 2}, train.data(), val.data(), 3, RewardForm::scalar,
                               std::vector<double>{beta0}, o);
      for (int k = 0; k < 15; ++k) t.step();
      end.push_back(t.reward_params()[0]);
    }
    EXPECT_GT(std::abs(end[0] - beta0), 0.3) << "the full-batch run should move β";
    EXPECT_EQ(end[0] > beta0, end[1] > beta0) << "β0 = " << beta0 << ": full batch → " << end[0]
                                              << ", minibatches → " << end[1];
    EXPECT_GT(std::abs(end[1] - beta0), 0.3) << "the minibatched run should move β too";
  }
}

TEST(InnerStartFixed, TheOuterLossIsAFunctionOfTheRewardAlone) {
  // Issue 13: with a warm start the outer loss of step k depends on the path (the policy keeps
  // training); with InnerStart::fixed every step starts from the same θ₀, so the record of step k
  // equals, bit for bit, the first step of a new trainer started at the φ that step k was taken at.
  // A warm-started run, checked the same way, differs (the check is not vacuous). An unmoved φ
  // reuses the policy (no inner step) and gives the same record again.
  const ThreeClassData train(90, 0.9, 8), val(60, 0.9, 9);
  const auto make = [&](d2r::Context& ctx, InnerStart start, double beta) {
    BilevelOptions<double> o = BilevelOptions<double>::recommended();
    o.inner_start = start;
    o.inner.steps = 30;
    o.inner.stationarity_tolerance = 0;  // a fixed inner budget
    o.inner.adam.learning_rate = 0.05;
    return std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = 2}, train.data(), val.data(), 3,
                                                     RewardForm::scalar, std::vector<double>{beta}, o);
  };
  for (InnerStart start : {InnerStart::fixed, InnerStart::warm}) {
    d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
    auto run = make(ctx, start, 0.5);
    for (int k = 0; k < 4; ++k) run->step();
    int same = 0;
    for (std::size_t k = 1; k < run->history().size(); ++k) {
      const double at = run->history()[k - 1].reward_params[0];  // the φ step k + 1 trained at
      d2r::Context c2{{.backend = d2r::Backend::cpu, .seed = 3}};
      auto one = make(c2, start, at);
      const d2r::BilevelRecord& r = one->step();
      if (start == InnerStart::fixed) {
        EXPECT_EQ(r.outer_loss, run->history()[k].outer_loss) << "step " << k + 1 << " at β = " << at;
        EXPECT_EQ(r.hypergradient, run->history()[k].hypergradient) << "step " << k + 1;
      }
      same += r.outer_loss == run->history()[k].outer_loss ? 1 : 0;
    }
    if (start == InnerStart::warm) {
      EXPECT_EQ(same, 0) << "a warm start should depend on the path";
    }
    ASSERT_NE(run->history()[1].reward_params[0], 0.5) << "β should move";
  }
  // φ unmoved: the fixed start keeps θ and runs no inner step; the record is the same.
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
  BilevelOptions<double> o = BilevelOptions<double>::recommended();
  o.inner_start = InnerStart::fixed;
  o.inner.stationarity_tolerance = 0;
  o.hypergradient_clamp = 1e-12;  // below the flat tolerance: φ never moves
  BilevelTrainer<double> t(ctx, {.inputs = 2}, train.data(), val.data(), 3, RewardForm::scalar, std::vector<double>{1.0}, o);
  const d2r::BilevelRecord first = t.step();
  const d2r::BilevelRecord& second = t.step();
  EXPECT_EQ(first.max_step, 0);
  EXPECT_EQ(first.inner_steps, o.inner.steps);
  EXPECT_EQ(second.inner_steps, 0);
  EXPECT_EQ(second.outer_loss, first.outer_loss);
}

TEST(Minibatch, KillAndResumeInTheMiddleOfAPassIsBitIdentical) {
  // Windows of 30 of 100 rows (3 per pass), K_in = 5: after 2 outer steps 10 windows are used, so
  // the checkpoint falls in pass 4 after its first window. Regression (REINFORCE draws) and
  // classification.
  const Fig3Data d(10, 6.0, 1.25, 17);
  const ThreeClassData c(100, 0.8, 5);
  const auto dir = temp_dir("minibatch_resume");
  for (bool classification : {false, true}) {
    BilevelOptions<double> o;
    o.inner.steps = 5;
    o.inner.batch_size = 30;
    o.inner_start = InnerStart::warm;
    o.reset_outer_optimizer = false;
    const auto make = [&](d2r::Context& ctx) {
      return classification
                 ? std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = 2, .hidden = {4}}, c.data(),
                                                            d2r::ClassificationData<double>{}, 3, RewardForm::scalar,
                                                            std::vector<double>{1.0}, o)
                 : std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = 2, .hidden = {6}}, d.data(),
                                                            d2r::RegressionData<double>{}, RewardForm::diagonal,
                                                            std::vector<double>{1.0, 0.5}, o);
    };
    d2r::Context ctx_a{{.backend = d2r::Backend::cpu, .seed = 2}};
    auto a = make(ctx_a);
    for (int k = 0; k < 5; ++k) a->step();
    std::vector<std::int64_t> rows_at_save;
    {
      d2r::Context ctx_b{{.backend = d2r::Backend::cpu, .seed = 2}};
      auto b = make(ctx_b);
      for (int k = 0; k < 2; ++k) b->step();
      b->save(dir / "state.ckpt");
      rows_at_save = b->window_rows();
      b->step();  // lost with the process
    }
    d2r::Context ctx_c{{.backend = d2r::Backend::cpu, .seed = 2}};
    auto c_run = make(ctx_c);
    c_run->load(dir / "state.ckpt");
    ASSERT_EQ(c_run->steps_done(), 2);
    EXPECT_EQ(c_run->window_rows(), rows_at_save);  // the position in the pass came back
    for (int k = 0; k < 3; ++k) c_run->step();
    expect_same_history(*a, *c_run, classification ? "classification" : "regression");
    EXPECT_NE(a->history()[0].reward_params, a->history()[4].reward_params);
  }
  std::filesystem::remove_all(dir);
}

TEST(Minibatch, BadBatchSizesAndOldCheckpointsAreRejected) {
  using d2r::test::expect_error;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  const Fig3Data d(2, 6.0, 1.25, 1);  // N = 20
  const ThreeClassData c(12, 0.5, 1);
  BilevelOptions<double> o;
  o.inner.batch_size = -1;
  expect_error([&] { BilevelTrainer<double>(ctx, {.inputs = 2}, d.data(), {}, RewardForm::scalar, std::vector<double>{1.0}, o); },
               "options.inner.batch_size", ">= 0");
  expect_error([&] { BilevelTrainer<double>(ctx, {.inputs = 2}, c.data(), {}, 3, RewardForm::scalar, std::vector<double>{1.0}, o); },
               "options.inner.batch_size", ">= 0");
  // A minibatch gradient is the mean over its window: a whole-data normaliser contradicts it.
  o.inner.batch_size = 5;
  o.inner.pg.normaliser_rows = 20;
  expect_error([&] { BilevelTrainer<double>(ctx, {.inputs = 2}, d.data(), {}, RewardForm::scalar, std::vector<double>{1.0}, o); },
               "options.inner.pg.normaliser_rows", "minibatches");
  o.inner.batch_size = 20;  // full batch: allowed as before
  BilevelTrainer<double>(ctx, {.inputs = 2}, d.data(), {}, RewardForm::scalar, std::vector<double>{1.0}, o);

  // A checkpoint of format version 4 (before the Rprop state): the version named, no state changed.
  // Made from a current file by rewriting the version and its checksum (FNV-1a, checkpoint.hpp).
  const auto dir = temp_dir("minibatch_version");
  o = {};
  o.inner.steps = 2;
  BilevelTrainer<double> t(ctx, {.inputs = 2}, d.data(), {}, RewardForm::scalar, std::vector<double>{1.0}, o);
  t.step();
  t.save(dir / "v5.ckpt");
  std::string bytes;
  {
    std::ifstream in(dir / "v5.ckpt", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::size_t at = bytes.find("d2r bilevel v5\n");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 13] = '4';
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i + 8 < bytes.size(); ++i) h = (h ^ static_cast<unsigned char>(bytes[i])) * 1099511628211ull;
  std::memcpy(bytes.data() + bytes.size() - 8, &h, 8);
  std::ofstream(dir / "v4.ckpt", std::ios::binary) << bytes;
  BilevelTrainer<double> fresh(ctx, {.inputs = 2}, d.data(), {}, RewardForm::scalar, std::vector<double>{1.0}, o);
  expect_error([&] { fresh.load(dir / "v4.ckpt"); }, "path", "format version 4");
  EXPECT_EQ(fresh.steps_done(), 0);
  fresh.load(dir / "v5.ckpt");  // the untouched file still loads
  EXPECT_EQ(fresh.steps_done(), 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
