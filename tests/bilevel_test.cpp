// The bilevel scheduler (BilevelTrainer): the implicit hypergradient against its closed form for a
// free Gaussian (exact and surrogate curvature), the Fig. 3 setting of PAPER.md (u → u* = 0.32
// from above and below), the outer loss over u, checkpoint kill-and-resume, and bad input. The
// minibatched inner loop and InnerStart::fixed: bilevel_minibatch_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/bilevel_test_support.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::BilevelOptions;
using d2r::BilevelTrainer;
using d2r::CurvatureKind;
using d2r::InnerStart;
using d2r::RewardForm;
using d2r::test::TestRng;
using d2r::test::bilevel::cmat;
using d2r::test::bilevel::Fig3Data;
using d2r::test::bilevel::mean_of_last;
using d2r::test::bilevel::normal;
using d2r::test::bilevel::temp_dir;

// ------------------------------------------------------------------ hypergradient closed forms
/// A free 1-D Gaussian (linear policy on a constant input) at μ = ȳ, σ² = s2, against data of
/// (biased) variance v. With the exact curvature the implicit hypergradient is
///   h = (v/σ² − 1) / (2u)                       (positive when the policy is too narrow),
/// with the surrogate curvature (H_ss = −2u(3σ² + v), mixed 2σ²) it is
///   h = (σ² − v) / (u (3σ² + v))                (the opposite sign).
struct FreeGaussianAtOptimum {
  std::int64_t N = 2000;
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 5}};
  std::vector<double> x, y, theta;
  double mean = 0, v = 0;
  d2r::GaussianPolicy<double> policy;
  FreeGaussianAtOptimum(double s2) : policy(ctx, {.inputs = 1}, 1, d2r::GaussianHead::diagonal, 2000) {
    TestRng rng(3);
    for (std::int64_t i = 0; i < N; ++i) {
      x.push_back(1.0);
      y.push_back(6 + 1.25 * normal(rng));
    }
    mean = std::accumulate(y.begin(), y.end(), 0.0) / static_cast<double>(N);
    for (double yi : y) v += (yi - mean) * (yi - mean) / static_cast<double>(N);
    // Linear layer [W_mean, W_logstd | b_mean, b_logstd] on x = 1: put everything in the biases.
    theta = {0.0, 0.0, mean, 0.5 * std::log(s2)};
  }
  double hypergradient(CurvatureKind kind, double u, std::int64_t G,
                       d2r::ImplicitSolver solver = d2r::ImplicitSolver::normal_cg) {
    std::vector<double> phi{u}, g_in(4), g_out(4), w(4, 0.0), mixed(1);
    const d2r::MahalanobisReward<double> reward{RewardForm::scalar, {phi.data(), 1}};
    const d2r::PgOptions<double> pg{.entropy_weight = 1.0};
    const d2r::ConstVector<double> th{theta.data(), 4};
    d2r::DiagGaussianPolicyCurvature<double> curvature(ctx, policy.net(), N);
    if (kind == CurvatureKind::exact) {
      curvature.prepare_exact(th, cmat(x, N, 1), cmat(y, N, 1), reward, pg, {g_in.data(), 4});
    } else {
      curvature.prepare(th, cmat(x, N, 1), cmat(y, N, 1), reward, G, pg, {.step = 1}, {g_in.data(), 4});
    }
    policy.nll_gradient(th, cmat(x, N, 1), cmat(y, N, 1), {g_out.data(), 4});
    const d2r::ConstVector<double> b{g_out.data(), 4};
    const d2r::VectorView<double> wv{w.data(), 4};
    const d2r::CgOptions<double> cg{.tolerance = 1e-12, .max_iterations = 20};
    const auto report =
        solver == d2r::ImplicitSolver::normal_cg ? d2r::conjugate_gradient_normal<double>(ctx, curvature.as_operator(), b, wv, cg)
        : solver == d2r::ImplicitSolver::conjugate_gradient
            ? d2r::conjugate_gradient<double>(ctx, curvature.as_operator(), b, wv, cg)
            : d2r::neumann_series<double>(ctx, curvature.as_operator(), b, wv,
                                          {.alpha = 0.1, .iterations = 400, .tolerance = 1e-12});
    EXPECT_EQ(report.status, d2r::SolveStatus::converged) << d2r::to_string(solver);
    curvature.mixed_product({w.data(), 4}, {mixed.data(), 1});
    return -mixed[0];
  }
};

TEST(Hypergradient, ExactCurvatureMatchesTheClosedFormAndPointsTowardUStar) {
  for (double u : {0.2, 1.0}) {
    const double s2 = 1.0 / (2 * u);  // the inner optimum λ/(2u), λ = 1
    FreeGaussianAtOptimum p(s2);
    const double h = p.hypergradient(CurvatureKind::exact, u, 0);
    const double theory = (p.v / s2 - 1) / (2 * u);
    EXPECT_NEAR(h, theory, 1e-8 * (1 + std::abs(theory))) << "u = " << u;
    // u* = 1/(2v) ≈ 0.32: above it h > 0 (u decreases), below it h < 0 (u increases).
    EXPECT_EQ(h > 0, u > 1 / (2 * p.v)) << "u = " << u << ", h = " << h;
  }
}

TEST(Hypergradient, SurrogateCurvatureHasTheOppositeSign) {
  // The REINFORCE surrogate with fixed samples has Hessian Σ A ∇²(−log p), negative along the
  // variance when rewards are negative: its implicit step moves u away from u*. This is why the
  // trainer's default is the exact curvature (PAPER.md: the sign differs between the authors'
  // notebooks).
  const double u = 1.0, s2 = 0.5;
  FreeGaussianAtOptimum p(s2);
  const double h = p.hypergradient(CurvatureKind::surrogate, u, 256);
  const double theory = (s2 - p.v) / (u * (3 * s2 + p.v));
  EXPECT_LT(h, 0.0);
  EXPECT_NEAR(h, theory, 0.05 * std::abs(theory));
  EXPECT_GT(p.hypergradient(CurvatureKind::exact, u, 0), 0.0);
}

TEST(Hypergradient, EverySolverAgreesWhenTheExactCurvatureIsPositiveDefinite) {
  // Exact curvature of a free Gaussian: positive semi-definite (the weight and the bias on the
  // constant input are redundant), the gradient in its range: CG, CG on the normal equations and
  // the Neumann series (α = 0.1 < 2/‖H‖ = 0.5) all reach the closed form.
  const double u = 0.6, s2 = 1.0 / (2 * u);
  FreeGaussianAtOptimum p(s2);
  const double theory = (p.v / s2 - 1) / (2 * u);
  for (d2r::ImplicitSolver solver :
       {d2r::ImplicitSolver::conjugate_gradient, d2r::ImplicitSolver::normal_cg, d2r::ImplicitSolver::neumann}) {
    EXPECT_NEAR(p.hypergradient(CurvatureKind::exact, u, 0, solver), theory, 1e-8 * std::abs(theory))
        << d2r::to_string(solver);
  }
}

// ------------------------------------------------------------------ Fig. 3
/// The paper's Fig. 3 run (K_out = 100, K_in = 50, α = 0.01, λ = 1, G = 5, MLP 2→[64,64] ReLU,
/// outer Adam re-created each step, CG on the normal equations with 1 iteration), with the
/// exact curvature and a warm-started inner policy. Returns u after every outer step.
std::vector<double> fig3_trajectory(double u0) {
  const Fig3Data d(100, 6.0, 1.25, 3);
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 5}};
  BilevelOptions<double> o;
  o.inner_start = InnerStart::warm;
  BilevelTrainer<double> trainer(ctx, {.inputs = 2, .hidden = {64, 64}}, d.data(), {}, RewardForm::scalar,
                                 std::vector<double>{u0}, o);
  std::vector<double> u;
  for (int k = 0; k < 100; ++k) u.push_back(trainer.step().reward_params[0]);
  return u;
}


TEST(Fig3, ImplicitSolverBringsUFromOneToUStar) {
  const std::vector<double> u = fig3_trajectory(1.0);
  EXPECT_LT(u[9], 1.0);  // moves toward u*, not away
  EXPECT_NEAR(mean_of_last(u, 20), 0.32, 0.03);
  EXPECT_LT(*std::max_element(u.begin() + 80, u.end()), 0.32 + 0.05);
  // About 70 outer steps to get there (each re-created Adam step moves u by ≈ α_out = 0.01).
  const auto first = std::find_if(u.begin(), u.end(), [](double x) { return x < 0.35; });
  EXPECT_GE(first - u.begin(), 55);
  EXPECT_LE(first - u.begin(), 80);
}

TEST(Fig3, ImplicitSolverBringsUFromBelowUpToUStar) {
  const std::vector<double> u = fig3_trajectory(0.05);
  EXPECT_GT(u[9], 0.05);
  EXPECT_NEAR(mean_of_last(u, 20), 0.32, 0.03);
}

TEST(Fig3, OuterLossOverUIsLowestNearUStar) {
  // PG policies trained at fixed u, their NLL on the data: lowest at the grid point nearest u*.
  const Fig3Data d(100, 6.0, 1.25, 3);
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 5}};
  d2r::GaussianPolicy<double> policy(ctx, {.inputs = 2, .hidden = {64, 64}}, 2, d2r::GaussianHead::diagonal, d.N);
  std::vector<double> params(static_cast<std::size_t>(policy.parameter_count()));
  const std::vector<double> grid{0.08, 0.16, 0.32, 0.64, 1.0};
  std::vector<double> nll;
  for (double u : grid) {
    const auto records = d2r::fit_policy<double>(
        ctx, policy, {params.data(), static_cast<std::int64_t>(params.size())}, d.data(), {},
        {.loss = d2r::PolicyLoss::pg, .steps = 600, .adam = {.learning_rate = 0.01}, .gradient_clamp = 1.0,
         .generations = 5, .pg = {.entropy_weight = 1.0}, .reward_params = {u}, .seed = 1});
    nll.push_back(records.back().train.nll_per_dim);
  }
  const auto best = std::min_element(nll.begin(), nll.end()) - nll.begin();
  EXPECT_EQ(grid[static_cast<std::size_t>(best)], 0.32) << "NLL over the grid: " << ::testing::PrintToString(nll);
  EXPECT_LT(nll[2] + 0.05, nll[0]);
  EXPECT_LT(nll[2] + 0.05, nll[4]);
}

// ------------------------------------------------------------------ checkpoints
struct SmallRun {
  Fig3Data d{10, 6.0, 1.25, 17};
  BilevelOptions<double> options;
  explicit SmallRun(bool persistent) {
    options.inner.steps = 8;
    options.inner_start = persistent ? InnerStart::warm : InnerStart::fresh;
    options.reset_outer_optimizer = !persistent;
    options.cg.max_iterations = 3;
  }
  std::unique_ptr<BilevelTrainer<double>> make(d2r::Context& ctx) const {
    return std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = 2, .hidden = {6}}, d.data(),
                                                    d2r::RegressionData<double>{}, RewardForm::diagonal,
                                                    std::vector<double>{1.0, 0.5}, options);
  }
};


TEST(Checkpoint, KillAndResumeGivesTheUninterruptedRunBitForBit) {
  for (bool persistent : {false, true}) {
    const SmallRun run(persistent);
    const auto dir = temp_dir(persistent ? "warm" : "fresh");
    // Uninterrupted: 6 outer steps.
    d2r::Context ctx_a{{.backend = d2r::Backend::cpu, .seed = 2}};
    auto a = run.make(ctx_a);
    for (int k = 0; k < 6; ++k) a->step();
    // Interrupted after 3 steps: the process state is gone; a new trainer resumes from the file.
    {
      d2r::Context ctx_b{{.backend = d2r::Backend::cpu, .seed = 2}};
      auto b = run.make(ctx_b);
      for (int k = 0; k < 3; ++k) b->step();
      b->save(dir / "state.ckpt");
      b->step();  // work after the checkpoint is lost with the process
    }
    d2r::Context ctx_c{{.backend = d2r::Backend::cpu, .seed = 2}};
    auto c = run.make(ctx_c);
    c->load(dir / "state.ckpt");
    ASSERT_EQ(c->steps_done(), 3);
    for (int k = 0; k < 3; ++k) c->step();
    ASSERT_EQ(c->history().size(), a->history().size());
    for (std::size_t k = 0; k < a->history().size(); ++k) {
      EXPECT_EQ(c->history()[k].reward_params, a->history()[k].reward_params) << "step " << k + 1;
      EXPECT_EQ(c->history()[k].hypergradient, a->history()[k].hypergradient) << "step " << k + 1;
      EXPECT_EQ(c->history()[k].train.nll_per_dim, a->history()[k].train.nll_per_dim) << "step " << k + 1;
    }
    const auto ta = a->policy_params(), tc = c->policy_params();
    ASSERT_EQ(ta.size, tc.size);
    EXPECT_TRUE(std::equal(ta.data, ta.data + ta.size, tc.data)) << "θ differs after resuming";
    EXPECT_NE(a->history()[0].reward_params, a->history()[5].reward_params);  // the run did move φ
    // Only the checkpoint itself is in the directory (no temporaries left behind).
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator{}), 1);
    std::filesystem::remove_all(dir);
  }
}

TEST(Checkpoint, RejectsAnotherConfigurationACorruptFileAndADirectory) {
  const SmallRun run(false);
  const auto dir = temp_dir("errors");
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto t = run.make(ctx);
  t->step();
  t->save(dir / "a.ckpt");
  using d2r::test::expect_error;
  // Another configuration (inner steps) refuses the file and keeps its own state.
  SmallRun other(false);
  other.options.inner.steps = 9;
  auto o = other.make(ctx);
  expect_error([&] { o->load(dir / "a.ckpt"); }, "path", "another configuration");
  EXPECT_EQ(o->steps_done(), 0);
  // A flipped byte fails the checksum; a truncated file too.
  std::string bytes;
  {
    std::ifstream in(dir / "a.ckpt", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x10;
  std::ofstream(dir / "b.ckpt", std::ios::binary) << flipped;
  expect_error([&] { t->load(dir / "b.ckpt"); }, "path", "checksum", d2r::ErrorKind::io);
  std::ofstream(dir / "c.ckpt", std::ios::binary) << bytes.substr(0, bytes.size() / 3);
  expect_error([&] { t->load(dir / "c.ckpt"); }, "path", "checkpoint", d2r::ErrorKind::io);
  expect_error([&] { t->load(dir / "missing.ckpt"); }, "path", "cannot be opened", d2r::ErrorKind::io);
  EXPECT_EQ(t->steps_done(), 1);
  // Saving onto a directory fails and leaves nothing behind.
  std::filesystem::create_directories(dir / "sub");
  expect_error([&] { t->save(dir / "sub"); }, "path", "directory", d2r::ErrorKind::io);
  EXPECT_TRUE(std::filesystem::is_empty(dir / "sub"));
  std::filesystem::remove_all(dir);
}

// ------------------------------------------------------------------ bad input
TEST(BilevelTrainer, RejectsBadInputBeforeAnyWork) {
  using d2r::test::expect_error;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  const Fig3Data d(2, 6.0, 1.25, 1);
  const d2r::MlpSpec net{.inputs = 2, .hidden = {4}};
  const std::vector<double> u{1.0};
  const auto make = [&](const d2r::RegressionData<double>& train, const d2r::RegressionData<double>& val,
                        RewardForm form, std::vector<double> init, BilevelOptions<double> o) {
    BilevelTrainer<double> t(ctx, net, train, val, form, init, o);
  };
  const BilevelOptions<double> ok;
  expect_error([&] { make({}, {}, RewardForm::scalar, u, ok); }, "train.x", "rows");
  std::vector<double> bad = d.y;
  bad[3] = NAN;
  expect_error([&] { make({cmat(d.x, d.N, 2), cmat(bad, d.N, 2)}, {}, RewardForm::scalar, u, ok); }, "train.y",
               "finite");
  expect_error([&] { make({cmat(d.x, d.N, 2), cmat(d.y, d.N - 1, 2)}, {}, RewardForm::scalar, u, ok); }, "train.y",
               "rows");
  expect_error([&] { make(d.data(), {cmat(d.x, 5, 2), cmat(d.y, 10, 1)}, RewardForm::scalar, u, ok); },
               "validation.y", "rows");
  expect_error([&] { make(d.data(), {cmat(d.x, 10, 2), cmat(d.x, 10, 1)}, RewardForm::scalar, u, ok); },
               "validation.y", "columns");
  expect_error([&] { make(d.data(), {}, RewardForm::diagonal, u, ok); }, "reward_init", "2 parameters");
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, {-1.0}, ok); }, "reward_init", "> 0");
  expect_error([&] { make(d.data(), {}, RewardForm::full, {1.0, NAN, 1.0}, ok); }, "reward_init", "finite");
  auto o = ok;
  o.inner.steps = 0;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.inner.steps", "K_in >= 1");
  o = ok;
  o.inner.generations = 0;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.inner.generations", "G >= 1");
  o = ok;
  o.inner.gradient_clamp = 0;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.inner.gradient_clamp", "> 0");
  o = ok;
  o.inner.pg.entropy_weight = -1;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.inner.pg.entropy_weight", "λ >= 0");
  o = ok;
  o.inner.adam.beta1 = 1.0;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.inner.adam", "beta1");
  o = ok;
  o.cg.damping = -1e-3;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.cg.damping", ">= 0");
  o = ok;
  o.cg.max_iterations = 0;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.cg.max_iterations", "iteration cap");
  o = ok;
  o.solver = d2r::ImplicitSolver::neumann;
  o.neumann.alpha = 0;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.neumann.alpha", "α > 0");
  o = ok;
  o.hypergradient_clamp = -1;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.hypergradient_clamp", "> 0");
  o = ok;
  o.reward_floor = 0;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.reward_floor", "> 0");
  o = ok;
  o.outer_data = d2r::OuterData::validation;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.outer_data", "validation data");
  o = ok;
  o.optimizer = d2r::OuterOptimizer::sgd;
  o.sgd_momentum = 1.0;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.sgd_momentum", "[0, 1)");
  o = ok;
  o.outer_adam.weight_decay = 0.1;
  expect_error([&] { make(d.data(), {}, RewardForm::scalar, u, o); }, "options.outer_adam", "weight decay");
  expect_error([&] { BilevelTrainer<double>(ctx, {.inputs = 3}, d.data(), {}, RewardForm::scalar, u, ok); },
               "trunk.inputs", "columns of train.x");
}

TEST(BilevelTrainer, RecordsEveryOuterStep) {
  const Fig3Data d(10, 6.0, 1.25, 4);
  const Fig3Data v(5, 6.0, 1.25, 8);
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 1}};
  BilevelOptions<double> o;
  o.inner.steps = 5;
  o.outer_data = d2r::OuterData::validation;
  o.optimizer = d2r::OuterOptimizer::sgd;
  o.sgd_learning_rate = 1e-3;
  o.hypergradient_clamp = 0.5;
  BilevelTrainer<double> t(ctx, {.inputs = 2, .hidden = {4}}, d.data(), v.data(), RewardForm::full,
                           std::vector<double>{1.0, 0.1, 1.0}, o);
  for (int k = 0; k < 3; ++k) {
    const d2r::BilevelRecord& r = t.step();
    EXPECT_EQ(r.step, k + 1);
    ASSERT_EQ(r.reward_params.size(), 3u);
    ASSERT_EQ(r.hypergradient.size(), 3u);
    for (double h : r.hypergradient) EXPECT_LE(std::abs(h), 0.5);
    EXPECT_TRUE(std::isfinite(r.validation.nll_per_dim));
    EXPECT_EQ(r.outer_loss, r.validation.nll_per_dim);  // the outer data are the validation data
    EXPECT_LT(r.mean_inner_reward, 0.0);
    EXPECT_EQ(r.solver_iterations, 1);
    EXPECT_GT(r.solver_initial_residual, 0.0);
    EXPECT_GE(r.wall_seconds, 0.0);
  }
  // SGD on h: φ_k = φ_{k−1} − lr·h_k exactly.
  const auto& h = t.history();
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_DOUBLE_EQ(h[2].reward_params[i], h[1].reward_params[i] - 1e-3 * h[2].hypergradient[i]);
  }
  EXPECT_EQ(t.reward_params(), h.back().reward_params);
}

}  // namespace

namespace {

// ------------------------------------------------------------------ full U, implicit = finite difference
TEST(FullReward, BilevelWithACholeskyPolicyRecoversHalfLambdaTimesTheInverseCovariance) {
  // 2-D targets with correlated Σ, a free full-covariance policy (linear on a constant input), a
  // full U = RRᵀ learned from U = I: the implicit solver (CG, converged) must reach
  // U* = (λ/2) Σ̂⁻¹ (PAPER.md T2), whose Cholesky factor heuristic_reward gives.
  TestRng rng(5);
  const std::int64_t N = 400;
  std::vector<double> x(static_cast<std::size_t>(N), 1.0), y;
  for (std::int64_t b = 0; b < N; ++b) {
    const double z1 = normal(rng), z2 = normal(rng);
    y.push_back(1 + 1.2 * z1);
    y.push_back(-2 + 0.6 * z1 + 0.5 * z2);
  }
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
  std::vector<double> R_star(3);
  d2r::heuristic_reward<double>(ctx, cmat(y, N, 2), 1.0, RewardForm::full, {R_star.data(), 3});
  BilevelOptions<double> o;
  o.head = d2r::GaussianHead::cholesky;
  o.inner_start = InnerStart::warm;
  o.inner.adam.learning_rate = 0.02;
  o.solver = d2r::ImplicitSolver::conjugate_gradient;
  o.cg = {.damping = 1e-4, .tolerance = 1e-6, .max_iterations = 10};
  BilevelTrainer<double> t(ctx, {.inputs = 1}, {cmat(x, N, 1), cmat(y, N, 2)}, {}, RewardForm::full,
                           std::vector<double>{1.0, 0.0, 1.0}, o);
  std::vector<double> mean_R(3, 0.0);
  for (int k = 0; k < 200; ++k) {
    const d2r::BilevelRecord& r = t.step();
    if (k >= 160)
      for (std::size_t i = 0; i < 3; ++i) mean_R[i] += r.reward_params[i] / 40;
  }
  const auto U = [](const std::vector<double>& R) {
    return std::vector<double>{R[0] * R[0], R[1] * R[0], R[1] * R[1] + R[2] * R[2]};  // U00, U10, U11
  };
  const std::vector<double> u = U(mean_R), u_star = U(R_star);
  double err = 0, ref = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const double w = i == 1 ? 2.0 : 1.0;  // Frobenius: the off-diagonal entry counts twice
    err += w * (u[i] - u_star[i]) * (u[i] - u_star[i]);
    ref += w * u_star[i] * u_star[i];
  }
  EXPECT_LT(std::sqrt(err / ref), 0.05) << "U = " << ::testing::PrintToString(u)
                                        << ", (λ/2)Σ̂⁻¹ = " << ::testing::PrintToString(u_star);
}

/// One outer step's implicit hypergradient h against a central difference of the outer loss at
/// the inner optimum, L_out(θ*(φ ± ε)), with the exact inner objective run to convergence (so the
/// implicit function theorem applies) and a converged CG: the whole implicit step, end to end.
/// `make(φ)` builds a trainer at φ; outer_loss is per target dimension, hence `dims`.
template <class MakeTrainer>
void expect_implicit_equals_finite_difference(MakeTrainer&& make, const std::vector<double>& phi, double dims,
                                              double eps, double tol) {
  const d2r::BilevelRecord r = make(phi)->step();
  double norm = 0;
  for (std::size_t j = 0; j < phi.size(); ++j) {
    std::vector<double> up = phi, dn = phi;
    up[j] += eps;
    dn[j] -= eps;
    const double fd = dims * (make(up)->step().outer_loss - make(dn)->step().outer_loss) / (2 * eps);
    EXPECT_NEAR(r.hypergradient[j], fd, tol * std::abs(fd) + 1e-4) << "φ entry " << j;
    norm += fd * fd;
  }
  EXPECT_GT(norm, 1e-4);  // not a vacuous comparison of zeros
}

BilevelOptions<double> converged_exact_options() {
  BilevelOptions<double> o;
  o.inner.objective = d2r::InnerObjective::exact;
  o.inner.steps = 3000;
  o.inner.adam.learning_rate = 0.01;
  o.inner.gradient_clamp = std::numeric_limits<double>::infinity();
  o.hypergradient_clamp = std::numeric_limits<double>::infinity();
  o.solver = d2r::ImplicitSolver::conjugate_gradient;
  o.cg = {.damping = 0, .tolerance = 1e-10, .max_iterations = 200};
  return o;
}

TEST(ImplicitStep, EqualsTheFiniteDifferenceOfTheOuterLossForADiagonalPolicy) {
  const Fig3Data d(6, 6.0, 1.25, 2);
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 1}};
  const auto make = [&](const std::vector<double>& phi) {
    return std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = 2}, d.data(),
                                                    d2r::RegressionData<double>{}, RewardForm::diagonal, phi,
                                                    converged_exact_options());
  };
  expect_implicit_equals_finite_difference(make, {0.7, 0.3}, 2.0, 1e-3, 0.02);
}

TEST(ImplicitStep, EqualsTheFiniteDifferenceOfTheOuterLossForACholeskyPolicy) {
  const Fig3Data d(6, 6.0, 1.25, 3);
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 1}};
  auto o = converged_exact_options();
  o.head = d2r::GaussianHead::cholesky;
  const auto make = [&](const std::vector<double>& phi) {
    return std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = 2}, d.data(),
                                                    d2r::RegressionData<double>{}, RewardForm::full, phi, o);
  };
  expect_implicit_equals_finite_difference(make, {0.8, 0.2, 0.6}, 2.0, 1e-3, 0.02);
}

TEST(ImplicitStep, EqualsTheFiniteDifferenceOfTheOuterLossForALogisticRegression) {
  TestRng rng(4);
  const std::int64_t N = 40;
  std::vector<double> x;
  std::vector<std::int32_t> labels;
  for (std::int64_t i = 0; i < N; ++i) {
    const auto c = static_cast<std::int32_t>(i % 3);
    labels.push_back(c);
    for (int f = 0; f < 2; ++f) x.push_back((f == c ? 1.0 : 0.0) + 0.8 * normal(rng));
  }
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 1}};
  auto o = converged_exact_options();
  // β/λ moderate: the inner problem (non-concave in the logits for large β/λ) converges in K_in.
  o.inner.pg.entropy_weight = 1.0;
  const auto make = [&](const std::vector<double>& phi) {
    return std::make_unique<BilevelTrainer<double>>(
        ctx, d2r::MlpSpec{.inputs = 2}, d2r::ClassificationData<double>{cmat(x, N, 2), {labels.data(), N}},
        d2r::ClassificationData<double>{}, 3, RewardForm::scalar, phi, o);
  };
  expect_implicit_equals_finite_difference(make, {0.5}, 1.0, 1e-3, 0.02);
}

TEST(Fields, FlattenFieldsVisitsEveryNestedOptionByName) {
  d2r::BilevelOptions<float> o;
  const auto fields = d2r::flatten_fields(o);
  const auto value = [&](const std::vector<std::pair<std::string, std::string>>& f, const std::string& name) {
    for (const auto& [n, v] : f) {
      if (n == name) return v;
    }
    return std::string("<absent>");
  };
  EXPECT_EQ(value(fields, "inner.adam.learning_rate"), "0.01");
  EXPECT_EQ(value(fields, "inner.pg.transform.kind"), "none");
  EXPECT_EQ(value(fields, "solver"), "normal_cg");
  EXPECT_EQ(value(fields, "curvature"), "exact");
  EXPECT_EQ(value(fields, "cg.max_iterations"), "1");
  EXPECT_EQ(value(fields, "cuda_graph"), "<absent>");  // how the work is launched, not what it computes
  // Every leaf once: changing one field changes exactly that line.
  o.inner.adam.beta2 = 0.5f;
  const auto changed = d2r::flatten_fields(o);
  ASSERT_EQ(changed.size(), fields.size());
  int differ = 0;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    EXPECT_EQ(changed[i].first, fields[i].first);
    differ += changed[i].second != fields[i].second;
  }
  EXPECT_EQ(differ, 1);
  EXPECT_EQ(value(changed, "inner.adam.beta2"), "0.5");
}

TEST(Checkpoint, OtherDataOrIdentityIsRefusedNamingIt) {
  const SmallRun run(false);
  const auto dir = temp_dir("fingerprint");
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 2}};
  auto t = run.make(ctx);
  t->step();
  t->save(dir / "a.ckpt");
  using d2r::test::expect_error;
  // The same settings with another caller identity (say another data file's columns).
  auto u = run.make(ctx);
  const std::vector<std::pair<std::string, std::string>> id{{"data.columns", "[\"x\"]"}};
  u->set_checkpoint_identity(id);
  expect_error([&] { u->load(dir / "a.ckpt"); }, "path", "identity.data.columns: not in the checkpoint");
  EXPECT_EQ(u->steps_done(), 0);
  // Other data of the same shape: named by its hash.
  const SmallRun other_data(false);
  const Fig3Data d2{10, 6.0, 1.25, 18};
  auto v = std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = 2, .hidden = {6}}, d2.data(),
                                                    d2r::RegressionData<double>{}, RewardForm::diagonal,
                                                    std::vector<double>{1.0, 0.5}, other_data.options);
  expect_error([&] { v->load(dir / "a.ckpt"); }, "path", "data.hash: saved");
  // Another initial reward.
  auto w = std::make_unique<BilevelTrainer<double>>(ctx, d2r::MlpSpec{.inputs = 2, .hidden = {6}}, run.d.data(),
                                                    d2r::RegressionData<double>{}, RewardForm::diagonal,
                                                    std::vector<double>{2.0, 0.5}, run.options);
  expect_error([&] { w->load(dir / "a.ckpt"); }, "path", "reward.init: saved [1, 0.5], now [2, 0.5]");
  std::filesystem::remove_all(dir);
}

}  // namespace
