// The best-judged outer step of BilevelTrainer (issue 13: a warm-started inner policy can over-fit
// as the run goes on, so the last step's policy can be the worst): best_step() is the argmin of the
// outer loss over the steps whose inner policy was stationary, its θ is that step's policy bit for
// bit, its φ the one the policy was trained at; a non-stationary step is never chosen; a resume
// continues the choice exactly; a checkpoint written without the best step restarts it at its last step.
// StoppingOptions::patience ends a run `converged` that many steps after its best-judged step.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "host/src/checkpoint.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::BilevelOptions;
using d2r::BilevelTrainer;
using d2r::RewardForm;
using d2r::test::TestRng;

/// Three overlapping Gaussian classes in 2-D (rows x 2 features, labels 0..2).
struct Classes {
  std::int64_t rows;
  std::vector<double> x;
  std::vector<std::int32_t> labels;
  Classes(std::int64_t n, double spread, std::uint64_t seed) : rows(n) {
    TestRng rng(seed);
    for (std::int64_t i = 0; i < n; ++i) {
      const auto c = static_cast<std::int32_t>(i % 3);
      x.push_back((c == 1 ? 1.0 : 0.0) + spread * rng.uniform(-1.0, 1.0));
      x.push_back((c == 2 ? 1.0 : 0.0) + spread * rng.uniform(-1.0, 1.0));
      labels.push_back(c);
    }
  }
  d2r::ClassificationData<double> data() const { return {{x.data(), rows, 2, 2}, {labels.data(), rows}}; }
};

/// The recommended preset on a small MLP from β₀ = 10, with an inner cap that some outer steps
/// reach before the stationarity tolerance (so both kinds of step occur).
struct BestRun {
  Classes train{90, 0.9, 3}, val{60, 0.9, 4};
  BilevelOptions<double> o = [] {
    BilevelOptions<double> r = BilevelOptions<double>::recommended();
    r.inner.steps = 5;
    r.inner.max_steps = 10;
    r.inner.stationarity_tolerance = 0.1;  // the preset's tolerance when these cases were chosen
    r.inner.adam.learning_rate = 0.05;
    return r;
  }();
  std::unique_ptr<BilevelTrainer<double>> make(d2r::Context& ctx) const {
    return std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = 2, .hidden = {8}}, train.data(),
                                                    val.data(), 3, RewardForm::scalar, std::vector<double>{10.0}, o);
  }
};

std::vector<double> host(const d2r::Context& ctx, d2r::VectorView<const double> v) { return ctx.to_host(v); }

std::filesystem::path temp_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("d2r_bilevel_best_test_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

constexpr int kSteps = 12;

/// Writes the checkpoint read by `r` again as an earlier d2r wrote it: with `fingerprint`, and without the
/// best step's sections unless `best`.
void write_as_before(const d2r::detail::CheckpointReader& r, const std::string& fingerprint, bool best,
                     const std::filesystem::path& path) {
  d2r::detail::CheckpointWriter w;
  w.add_text("fingerprint", fingerprint);
  std::vector<const char*> doubles{"theta", "inner_first_moment", "inner_second_moment", "phi", "outer_first_moment",
                                   "outer_second_moment", "sgd_velocity", "rprop_step", "rprop_sign", "rprop_last",
                                   "records"};
  if (best) doubles.insert(doubles.end(), {"best", "best_phi", "best_theta"});
  for (const char* name : doubles) {
    const std::vector<double> v = r.doubles(name);
    w.add(name, std::span<const double>(v));
  }
  for (const char* name : {"inner_count", "counters", "minibatch"}) {
    const std::vector<std::int64_t> v = r.integers(name);
    w.add(name, std::span<const std::int64_t>(v));
  }
  w.write(path);
}

TEST(BestStep, IsTheArgminOverStationaryStepsAndKeepsThatPolicyBitForBit) {
  const BestRun run;
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto t = run.make(ctx);
  EXPECT_EQ(t->best_step(), 0);
  std::vector<std::vector<double>> thetas;  // every step's inner policy
  for (int k = 0; k < kSteps; ++k) {
    t->step();
    thetas.push_back(host(ctx, t->policy_params()));
  }
  const auto& h = t->history();
  std::int64_t argmin = 0, stationary = 0, not_stationary = 0;
  for (const auto& r : h) {
    (r.inner_stationary ? stationary : not_stationary) += 1;
    if (r.inner_stationary && std::isfinite(r.outer_loss) &&
        (argmin == 0 || r.outer_loss < h[static_cast<std::size_t>(argmin - 1)].outer_loss)) {
      argmin = r.step;
    }
  }
  ASSERT_GT(stationary, 0) << "no stationary step: the test would not choose anything";
  ASSERT_GT(not_stationary, 0) << "every step stationary: the filter would not be exercised";
  ASSERT_EQ(t->best_step(), argmin);
  EXPECT_EQ(t->best_tracked_from(), 1);
  const auto& best = h[static_cast<std::size_t>(argmin - 1)];
  EXPECT_TRUE(best.inner_stationary);
  EXPECT_EQ(t->best_outer_loss(), best.outer_loss);
  EXPECT_EQ(host(ctx, t->best_policy_params()), thetas[static_cast<std::size_t>(argmin - 1)]);
  // The φ it was trained at: before that step's move.
  const std::vector<double> before = argmin >= 2 ? h[static_cast<std::size_t>(argmin - 2)].reward_params : std::vector<double>{10.0};
  EXPECT_EQ(t->best_reward_params(), before);
  // Every non-stationary step was passed over, also one with a lower outer loss (here: the early, barely
  // trained policies).
  bool lower_passed_over = false;
  for (const auto& r : h) lower_passed_over = lower_passed_over || (!r.inner_stationary && r.outer_loss < best.outer_loss);
  EXPECT_TRUE(lower_passed_over);
  for (const auto& r : h) {
    if (!r.inner_stationary) {
      EXPECT_NE(r.step, t->best_step());
    }
  }
}

TEST(BestStep, NoneWhenNoStepIsStationary) {
  BestRun run;
  run.o.inner.stationarity_tolerance = 1e-12;  // unreachable in 10 inner steps
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto t = run.make(ctx);
  for (int k = 0; k < 3; ++k) t->step();
  for (const auto& r : t->history()) ASSERT_FALSE(r.inner_stationary);
  EXPECT_EQ(t->best_step(), 0);
  EXPECT_TRUE(t->best_reward_params().empty());
  EXPECT_TRUE(std::isnan(t->best_outer_loss()));
}

TEST(BestStep, KillAndResumeContinuesTheChoiceExactly) {
  BestRun run;
  run.o.inner.max_steps = 40;  // a best step before the checkpoint
  const auto dir = temp_dir("resume");
  d2r::Context ctx_a{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto a = run.make(ctx_a);
  for (int k = 0; k < kSteps; ++k) a->step();
  {
    d2r::Context ctx_b{{.backend = d2r::Backend::cpu, .seed = 2}};
    auto b = run.make(ctx_b);
    for (int k = 0; k < kSteps / 2; ++k) b->step();
    ASSERT_GT(b->best_step(), 0);
    b->save(dir / "state.ckpt");
  }
  d2r::Context ctx_c{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto c = run.make(ctx_c);
  c->load(dir / "state.ckpt");
  for (int k = kSteps / 2; k < kSteps; ++k) c->step();
  ASSERT_GT(a->best_step(), 0);
  EXPECT_EQ(c->best_step(), a->best_step());
  EXPECT_EQ(c->best_tracked_from(), 1);
  EXPECT_EQ(c->best_outer_loss(), a->best_outer_loss());
  EXPECT_EQ(c->best_reward_params(), a->best_reward_params());
  EXPECT_EQ(host(ctx_c, c->best_policy_params()), host(ctx_a, a->best_policy_params()));
  std::filesystem::remove_all(dir);
}

TEST(BestStep, ACheckpointWithoutTheBestStepRestartsTheChoiceAtItsLastStep) {
  // A file as the code before the best step wrote it: every section but "best", "best_phi", "best_theta".
  BestRun run;
  run.o.inner.max_steps = 40;  // more steps reach the tolerance
  const auto dir = temp_dir("old");
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto t = run.make(ctx);
  // Saved after a step K with a stationary policy that is not the best so far (so the restart changes the choice).
  do {
    t->step();
  } while (t->steps_done() < kSteps && !(t->history().back().inner_stationary && t->best_step() != t->steps_done()));
  ASSERT_TRUE(t->history().back().inner_stationary && t->best_step() != t->steps_done());
  const std::int64_t K = t->steps_done();
  t->save(dir / "new.ckpt");
  const d2r::detail::CheckpointReader r(dir / "new.ckpt");
  ASSERT_TRUE(r.has("best") && r.has("best_phi") && r.has("best_theta"));
  write_as_before(r, r.text("fingerprint"), false, dir / "old.ckpt");

  d2r::Context ctx2{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto old = run.make(ctx2);
  old->load(dir / "old.ckpt");
  const auto& last = old->history().back();
  EXPECT_EQ(old->best_tracked_from(), K);
  // Its last step had a stationary policy: that step is the best so far.
  EXPECT_EQ(old->best_step(), K);
  EXPECT_EQ(old->best_outer_loss(), last.outer_loss);
  EXPECT_EQ(old->best_reward_params(), old->history()[static_cast<std::size_t>(K - 2)].reward_params);
  EXPECT_EQ(host(ctx2, old->best_policy_params()), host(ctx2, old->policy_params()));
  // The file as the trainer writes it keeps the choice among every step: an earlier step.
  d2r::Context ctx3{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto fresh = run.make(ctx3);
  fresh->load(dir / "new.ckpt");
  EXPECT_EQ(fresh->best_tracked_from(), 1);
  EXPECT_EQ(fresh->best_step(), t->best_step());
  // The run goes on; the choice is among step K and the later ones, and equals the argmin over them.
  for (int k = 0; k < 4; ++k) old->step();
  std::int64_t argmin = 0;
  const auto& h = old->history();
  for (std::size_t i = static_cast<std::size_t>(K - 1); i < h.size(); ++i) {
    if (h[i].inner_stationary && (argmin == 0 || h[i].outer_loss < h[static_cast<std::size_t>(argmin - 1)].outer_loss)) {
      argmin = h[i].step;
    }
  }
  EXPECT_EQ(old->best_step(), argmin);
  EXPECT_GE(old->best_step(), K);
  std::filesystem::remove_all(dir);
}

/// Steps `t` until its verdict is no longer running (at most `cap` steps); returns the verdict.
d2r::BilevelVerdict run_until_verdict(BilevelTrainer<double>& t, int cap) {
  d2r::BilevelVerdict v = t.verdict(false);
  while (v.status == d2r::BilevelStatus::running && t.steps_done() < cap) {
    t.step();
    v = t.verdict(false);
  }
  return v;
}

TEST(Patience, EndsTheRunThatManyStepsAfterTheBestJudgedOne) {
  BestRun run;
  run.o.inner.max_steps = 40;
  run.o.stopping.patience = 0;
  d2r::Context ctx0{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto off = run.make(ctx0);
  const d2r::BilevelVerdict v0 = run_until_verdict(*off, 40);
  // The same run with patience P: the same steps, and it ends at the first step P after the best one so far.
  for (const std::int64_t P : {std::int64_t{2}, std::int64_t{3}}) {
    run.o.stopping.patience = P;
    d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 2}};
    auto t = run.make(ctx);
    const d2r::BilevelVerdict v = run_until_verdict(*t, 40);
    ASSERT_EQ(v.status, d2r::BilevelStatus::converged) << v.reason;
    ASSERT_NE(v.reason.find("early stop"), std::string::npos) << v.reason;
    const auto& h = t->history();
    const std::int64_t K = t->steps_done();
    EXPECT_EQ(K - t->best_step(), P);
    // No step after the best one had a lower outer loss with a stationary policy, and every earlier step was
    // within P of the best so far at its time (else the run would have ended there).
    for (std::size_t i = static_cast<std::size_t>(t->best_step()); i < h.size(); ++i) {
      EXPECT_FALSE(h[i].inner_stationary && h[i].outer_loss < t->best_outer_loss());
    }
    // Patience changes when the run ends, not its steps: the records equal the run without it.
    ASSERT_GE(off->history().size(), h.size()) << "the run without patience ended first: " << v0.reason;
    for (std::size_t i = 0; i < h.size(); ++i) {
      EXPECT_EQ(h[i].outer_loss, off->history()[i].outer_loss);
      EXPECT_EQ(h[i].reward_params, off->history()[i].reward_params);
    }
  }
  // Without patience the verdict never says early stop.
  EXPECT_EQ(v0.reason.find("early stop"), std::string::npos) << v0.reason;
}

TEST(Patience, IsCheckedAndACheckpointWithoutItResumesAsOff) {
  BestRun run;
  run.o.stopping.patience = -1;
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 2}};
  try {
    (void)run.make(ctx);
    FAIL() << "patience -1 was accepted";
  } catch (const d2r::Error& e) {
    EXPECT_NE(std::string(e.what()).find("options.stopping.patience"), std::string::npos) << e.what();
  }
  // A checkpoint whose fingerprint has no patience line (written before the option existed).
  run.o.stopping.patience = 0;
  const auto dir = temp_dir("patience");
  auto t = run.make(ctx);
  for (int k = 0; k < 2; ++k) t->step();
  t->save(dir / "new.ckpt");
  const d2r::detail::CheckpointReader r(dir / "new.ckpt");
  std::string fp = r.text("fingerprint");
  const std::string line = "options.stopping.patience = 0\n";
  const std::size_t at = fp.find(line);
  ASSERT_NE(at, std::string::npos) << fp;
  fp.erase(at, line.size());
  write_as_before(r, fp, true, dir / "old.ckpt");
  d2r::Context ctx2{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto same = run.make(ctx2);
  same->load(dir / "old.ckpt");  // patience 0: what that d2r ran
  EXPECT_EQ(same->steps_done(), 2);
  run.o.stopping.patience = 5;
  d2r::Context ctx3{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto other = run.make(ctx3);
  try {
    other->load(dir / "old.ckpt");
    FAIL() << "a checkpoint of a run without patience resumed with patience 5";
  } catch (const d2r::Error& e) {
    EXPECT_NE(std::string(e.what()).find("options.stopping.patience: saved 0, now 5"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
