// GaussianPolicy losses (against finite differences and an independent composition) and the plain
// trainers (fit_policy) against the Gaussian closed forms of PAPER.md: T1/T4 inner optimum,
// T2 heuristic reward gives the MLE covariance, T3 isotropic, T5 reverse-KL identity, T6 λ-invariance,
// T7/T8 REINFORCE fixed points with transform none vs normalize.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::GaussianHead;
using d2r::PolicyLoss;
using d2r::RewardForm;
using d2r::Transform;
using d2r::test::TestRng;

constexpr double kPi = 3.14159265358979323846;

template <class T>
d2r::MatrixView<const T> cmat(const std::vector<T>& v, std::int64_t rows, std::int64_t cols) {
  return {v.data(), rows, cols, cols};
}
template <class T>
d2r::VectorView<T> vec(std::vector<T>& v) {
  return {v.data(), static_cast<std::int64_t>(v.size())};
}

/// Standard normal by Box–Muller on the test RNG.
double normal(TestRng& rng) {
  const double u1 = rng.uniform(1e-12, 1.0), u2 = rng.uniform(0.0, 1.0);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * kPi * u2);
}

// ------------------------------------------------------------------ losses of GaussianPolicy
struct LossProblem {
  std::int64_t B = 5, n = 2;
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
  d2r::GaussianPolicy<double> policy;
  std::vector<double> params, x, y;
  explicit LossProblem(GaussianHead head)
      : policy(ctx, {.inputs = 3, .hidden = {4}, .activation = d2r::Activation::tanh}, 2, head, 5) {
    TestRng rng(static_cast<std::uint64_t>(head) + 11);
    params.resize(static_cast<std::size_t>(policy.parameter_count()));
    policy.init(vec(params), 5);
    for (double& p : params) p += rng.uniform(-0.3, 0.3);  // away from the symmetric init
    x = rng.vector<double>(static_cast<std::size_t>(B * 3), -1, 1);
    y = rng.vector<double>(static_cast<std::size_t>(B * n), -1.5, 1.5);
  }
  d2r::ConstVector<double> theta() const { return {params.data(), static_cast<std::int64_t>(params.size())}; }
};

class LossTest : public ::testing::TestWithParam<GaussianHead> {};

TEST_P(LossTest, NllGradientMatchesFiniteDifferences) {
  LossProblem p(GetParam());
  std::vector<double> grad(p.params.size());
  p.policy.nll_gradient(p.theta(), cmat(p.x, p.B, 3), cmat(p.y, p.B, p.n), vec(grad));
  const auto loss = [&] { return p.policy.evaluate(p.theta(), cmat(p.x, p.B, 3), cmat(p.y, p.B, p.n)).nll_per_dim * p.n; };
  double norm = 0;
  for (std::size_t i = 0; i < p.params.size(); ++i) {
    const double fd = d2r::test::central_difference(p.params, i, loss, 1e-6);
    EXPECT_NEAR(grad[i], fd, 1e-7 * (1 + std::abs(fd))) << "parameter " << i;
    norm += grad[i] * grad[i];
  }
  EXPECT_GT(norm, 1e-6);
}

TEST_P(LossTest, MseGradientMatchesFiniteDifferencesAndIgnoresTheVariance) {
  LossProblem p(GetParam());
  std::vector<double> grad(p.params.size());
  p.policy.mse_gradient(p.theta(), cmat(p.x, p.B, 3), cmat(p.y, p.B, p.n), vec(grad));
  const auto loss = [&] {
    const double rmse = p.policy.evaluate(p.theta(), cmat(p.x, p.B, 3), cmat(p.y, p.B, p.n)).rmse;
    return rmse * rmse * static_cast<double>(p.n);
  };
  for (std::size_t i = 0; i < p.params.size(); ++i) {
    const double fd = d2r::test::central_difference(p.params, i, loss, 1e-6);
    EXPECT_NEAR(grad[i], fd, 1e-7 * (1 + std::abs(fd))) << "parameter " << i;
  }
  // The output layer's weights of the variance outputs get no gradient.
  const d2r::MlpLayer last = p.policy.net().layer(p.policy.net().layer_count() - 1);
  for (std::int64_t o = p.n; o < last.outputs; ++o) {
    for (std::int64_t i = 0; i < last.inputs; ++i) {
      EXPECT_EQ(grad[static_cast<std::size_t>(last.weight_offset + o * last.inputs + i)], 0.0);
    }
    EXPECT_EQ(grad[static_cast<std::size_t>(last.bias_offset + o)], 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Heads, LossTest, ::testing::Values(GaussianHead::diagonal, GaussianHead::cholesky),
                         [](const auto& info) { return std::string(d2r::to_string(info.param)); });

TEST(GaussianPolicy, PgGradientEqualsTheCurvatureCompositionOfTheUnfusedPrimitives) {
  // Two independent compositions of the REINFORCE gradient: fused head (pg_surrogate) in
  // GaussianPolicy, sample/log_prob/reward/transform/backward in DiagGaussianPolicyCurvature.
  for (Transform t : {Transform::none, Transform::leave_one_out}) {
    LossProblem p(GaussianHead::diagonal);
    std::vector<double> u{0.7, 1.4};
    const d2r::MahalanobisReward<double> reward{RewardForm::diagonal, {u.data(), 2}};
    const d2r::PgOptions<double> pg{.entropy_weight = 0.4, .transform = {.kind = t}};
    std::vector<double> g_fused(p.params.size()), g_composed(p.params.size()), rows(p.B);
    p.policy.pg_gradient(p.theta(), cmat(p.x, p.B, 3), cmat(p.y, p.B, p.n), reward, 4, pg, {.step = 9}, vec(g_fused),
                         vec(rows));
    d2r::DiagGaussianPolicyCurvature<double> curvature(p.ctx, p.policy.net(), p.B);
    curvature.prepare(p.theta(), cmat(p.x, p.B, 3), cmat(p.y, p.B, p.n), reward, 4, pg, {.step = 9}, vec(g_composed));
    double norm = 0;
    for (std::size_t i = 0; i < p.params.size(); ++i) {
      EXPECT_NEAR(g_fused[i], g_composed[i], 1e-10 * (1 + std::abs(g_composed[i]))) << "parameter " << i;
      norm += g_fused[i] * g_fused[i];
    }
    EXPECT_GT(norm, 1e-8);
    for (double r : rows) EXPECT_LT(r, 0.0);  // Mahalanobis rewards are negative
  }
}

TEST(GaussianPolicy, RejectsBadArguments) {
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  using d2r::test::expect_error;
  expect_error([&] { d2r::GaussianPolicy<double>(ctx, {.inputs = 2}, 0, GaussianHead::diagonal, 4); }, "dims", "n >= 1");
  expect_error([&] { d2r::GaussianPolicy<double>(ctx, {.inputs = 2}, 2, GaussianHead::diagonal, 0); }, "batch", ">= 1");
  expect_error([&] { d2r::GaussianPolicy<double>(ctx, {.inputs = 2}, 65, GaussianHead::cholesky, 4); }, "dims", "64");
  expect_error([&] { d2r::GaussianPolicy<double>(ctx, {.inputs = 0}, 2, GaussianHead::diagonal, 4); }, "spec.inputs",
               ">= 1");
  d2r::GaussianPolicy<double> policy(ctx, {.inputs = 2, .hidden = {3}}, 2, GaussianHead::diagonal, 4);
  std::vector<double> params(static_cast<std::size_t>(policy.parameter_count()), 0.1), grad(params.size(), 7.0);
  std::vector<double> x(10, 0.5), y(10, 0.5);
  const d2r::ConstVector<double> theta{params.data(), static_cast<std::int64_t>(params.size())};
  expect_error([&] { policy.nll_gradient(theta, cmat(x, 5, 2), cmat(y, 5, 2), vec(grad)); }, "x", "batch capacity");
  expect_error([&] { policy.nll_gradient(theta, cmat(x, 4, 2), cmat(y, 3, 2), vec(grad)); }, "y", "rows");
  expect_error([&] { policy.mse_gradient(theta, cmat(x, 4, 2), cmat(y, 4, 1), vec(grad)); }, "y", "target columns");
  expect_error([&] { policy.nll_gradient({params.data(), 3}, cmat(x, 4, 2), cmat(y, 4, 2), vec(grad)); }, "params",
               "parameters");
  for (double g : grad) EXPECT_EQ(g, 7.0);  // untouched
}

// ------------------------------------------------------------------ closed forms through fit_policy
/// A "free" Gaussian policy: a linear model on one constant input, so θ is just (μ, log σ) or (μ, L).
struct FreeGaussian {
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 21}};
  std::int64_t N, n;
  std::vector<double> x, y;
  d2r::GaussianPolicy<double> policy;
  std::vector<double> params;
  FreeGaussian(std::vector<double> targets, std::int64_t dims, GaussianHead head)
      : N(static_cast<std::int64_t>(targets.size()) / dims),
        n(dims),
        x(static_cast<std::size_t>(N), 1.0),
        y(std::move(targets)),
        policy(ctx, {.inputs = 1}, dims, head, N),
        params(static_cast<std::size_t>(policy.parameter_count())) {}
  d2r::RegressionData<double> data() const { return {cmat(x, N, 1), cmat(y, N, n)}; }
  std::vector<double> fit(const d2r::PolicyFitOptions<double>& o) {
    d2r::fit_policy(ctx, policy, vec(params), data(), {}, o);
    std::vector<double> out(static_cast<std::size_t>(policy.net().outputs()));
    policy.forward({params.data(), static_cast<std::int64_t>(params.size())}, cmat(x, 1, 1),
                   {out.data(), 1, policy.net().outputs(), policy.net().outputs()});
    return out;  // the head's raw outputs (same for every row)
  }
};

std::vector<double> gaussian_targets(std::int64_t N, std::vector<double> mean, std::vector<double> stddev,
                                     std::uint64_t seed) {
  TestRng rng(seed);
  std::vector<double> y;
  for (std::int64_t b = 0; b < N; ++b)
    for (std::size_t d = 0; d < mean.size(); ++d) y.push_back(mean[d] + stddev[d] * normal(rng));
  return y;
}

std::vector<double> column_means(const std::vector<double>& y, std::int64_t n) {
  std::vector<double> m(static_cast<std::size_t>(n), 0.0);
  const std::int64_t N = static_cast<std::int64_t>(y.size()) / n;
  for (std::int64_t b = 0; b < N; ++b)
    for (std::int64_t d = 0; d < n; ++d) m[static_cast<std::size_t>(d)] += y[static_cast<std::size_t>(b * n + d)] / N;
  return m;
}

TEST(ClosedForms, T1T4InnerOptimumOfPgWithADiagonalReward) {
  // Diagonal policy, diagonal U: m* = data mean, σ_i² = λ / (2 U_ii), whatever the data's spread.
  const std::vector<double> targets = gaussian_targets(64, {2.0, -1.0}, {0.5, 2.0}, 1);
  FreeGaussian fg(targets, 2, GaussianHead::diagonal);
  const double lambda = 0.8;
  const std::vector<double> U{0.5, 2.0};
  const std::vector<double> out = fg.fit({.loss = PolicyLoss::pg, .steps = 3000, .adam = {.learning_rate = 0.01},
                                          .generations = 32, .pg = {.entropy_weight = lambda},
                                          .reward_form = RewardForm::diagonal, .reward_params = U, .seed = 1});
  const std::vector<double> mean = column_means(targets, 2);
  for (int d = 0; d < 2; ++d) {
    const double var = std::exp(2 * out[static_cast<std::size_t>(2 + d)]);
    const double theory = lambda / (2 * U[static_cast<std::size_t>(d)]);
    EXPECT_NEAR(var, theory, 0.1 * theory) << "dimension " << d;
    EXPECT_NEAR(out[static_cast<std::size_t>(d)], mean[static_cast<std::size_t>(d)], 0.1 * std::sqrt(theory))
        << "dimension " << d;
  }
}

TEST(ClosedForms, T2T3HeuristicRewardGivesTheMaximumLikelihoodCovariance) {
  // Correlated 2-D data; U* = (λ/2) Σ̂⁻¹ from heuristic_reward (full, Cholesky-packed) makes the PG
  // optimum of a full-covariance policy the MLE covariance Σ̂; the isotropic heuristic
  // u = λn/(2 tr Σ̂) gives the isotropic MLE variance tr Σ̂ / n.
  TestRng rng(5);
  std::vector<double> targets;
  const std::int64_t N = 80;
  for (std::int64_t b = 0; b < N; ++b) {
    const double z1 = normal(rng), z2 = normal(rng);
    targets.push_back(1.0 + 1.2 * z1);
    targets.push_back(-2.0 + 0.6 * z1 + 0.5 * z2);
  }
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  std::vector<double> cov(4);
  d2r::target_covariance<double>(ctx, cmat(targets, N, 2), {cov.data(), 2, 2, 2});
  const double lambda = 1.5;
  std::vector<double> R(3), u(1);
  d2r::heuristic_reward<double>(ctx, cmat(targets, N, 2), lambda, RewardForm::full, vec(R));
  d2r::heuristic_reward<double>(ctx, cmat(targets, N, 2), lambda, RewardForm::scalar, vec(u));
  EXPECT_NEAR(u[0], lambda * 2 / (2 * (cov[0] + cov[3])), 1e-12);

  FreeGaussian full(targets, 2, GaussianHead::cholesky);
  const std::vector<double> out = full.fit({.loss = PolicyLoss::pg, .steps = 3000, .adam = {.learning_rate = 0.01},
                                            .generations = 32, .pg = {.entropy_weight = lambda},
                                            .reward_form = RewardForm::full, .reward_params = R, .seed = 2});
  const auto sp = [](double v) { return std::log1p(std::exp(v)) + 1e-5; };
  const double l00 = sp(out[2]), l10 = out[3], l11 = sp(out[4]);
  const double s00 = l00 * l00, s10 = l10 * l00, s11 = l10 * l10 + l11 * l11;
  EXPECT_NEAR(s00, cov[0], 0.1 * cov[0]);
  EXPECT_NEAR(s10, cov[2], 0.1 * std::sqrt(cov[0] * cov[3]));
  EXPECT_NEAR(s11, cov[3], 0.1 * cov[3]);

  FreeGaussian iso(targets, 2, GaussianHead::diagonal);
  const std::vector<double> o2 = iso.fit({.loss = PolicyLoss::pg, .steps = 3000, .adam = {.learning_rate = 0.01},
                                          .generations = 32, .pg = {.entropy_weight = lambda},
                                          .reward_form = RewardForm::scalar, .reward_params = u, .seed = 3});
  const double iso_var = (cov[0] + cov[3]) / 2;
  for (int d = 0; d < 2; ++d) EXPECT_NEAR(std::exp(2 * o2[static_cast<std::size_t>(2 + d)]), iso_var, 0.1 * iso_var);
}

TEST(ClosedForms, T5ReverseKlIdentityHoldsForEveryGaussianPolicy) {
  // With U* = (λ/2)Σ⁻¹: J(p) + λ KL(p‖q) = λ (H(q) − n), J(p) = E_{y~q,ŷ~p}[r(ŷ, y)] + λ H(p).
  // E_y over q of the exact objective at target y is its value at y = μ minus tr(U Σ).
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  const double lambda = 0.7;
  const std::vector<double> mu{0.5, -1.0};
  const double S00 = 1.3, S10 = 0.4, S11 = 0.9;  // Σ of q
  const double det = S00 * S11 - S10 * S10;
  const double P00 = S11 / det, P10 = -S10 / det, P11 = S00 / det;  // Σ⁻¹
  // U = (λ/2)Σ⁻¹ as a packed Cholesky factor R (U = R Rᵀ).
  const double r00 = std::sqrt(lambda / 2 * P00), r10 = lambda / 2 * P10 / r00;
  const double r11 = std::sqrt(lambda / 2 * P11 - r10 * r10);
  std::vector<double> R{r00, r10, r11};
  const double trUS = lambda / 2 * 2;  // tr((λ/2)Σ⁻¹Σ) = λn/2
  const double Hq = 0.5 * std::log(det) + 1.0 * (1 + std::log(2 * kPi));
  TestRng rng(9);
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<double> mean{rng.uniform(-2, 2), rng.uniform(-2, 2)};
    std::vector<double> tril{rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1, 1)};  // raw entries
    std::vector<double> row_loss(1), row_reward(1), g_mean(2), g_tril(3);
    const d2r::CholeskyGaussian<double> p{cmat(mean, 1, 2), cmat(tril, 1, 3), 0.0};
    d2r::exact_objective<double>(ctx, p, cmat(mu, 1, 2), {RewardForm::full, {R.data(), 3}},
                                 {.entropy_weight = lambda}, {vec(row_loss), vec(row_reward)},
                                 {{g_mean.data(), 1, 2, 2}, {g_tril.data(), 1, 3, 3}});
    const double J = -row_loss[0] - trUS;  // L_exact = −(E[r] + λH), then E over y ~ q
    // KL(p‖q) in closed form.
    const auto sp = [](double v) { return std::log1p(std::exp(v)); };
    const double l00 = sp(tril[0]), l10 = tril[1], l11 = sp(tril[2]);
    const double C00 = l00 * l00, C10 = l10 * l00, C11 = l10 * l10 + l11 * l11;
    const double dm0 = mu[0] - mean[0], dm1 = mu[1] - mean[1];
    const double kl = 0.5 * (P00 * C00 + 2 * P10 * C10 + P11 * C11 + P00 * dm0 * dm0 + 2 * P10 * dm0 * dm1 +
                             P11 * dm1 * dm1 - 2 + std::log(det) - std::log(C00 * C11 - C10 * C10));
    EXPECT_NEAR(J + lambda * kl, lambda * (Hq - 2), 1e-10) << "trial " << trial;
  }
}

TEST(ClosedForms, T6EveryEntropyWeightHasTheSameFixedPointWhenUScalesWithIt) {
  const std::vector<double> targets = gaussian_targets(40, {3.0}, {0.7}, 4);
  std::vector<double> variances;
  for (double lambda : {0.3, 1.0, 3.0}) {
    FreeGaussian fg(targets, 1, GaussianHead::diagonal);
    const double sigma2 = 0.49;
    const std::vector<double> out =
        fg.fit({.loss = PolicyLoss::pg, .steps = 3000, .adam = {.learning_rate = 0.01}, .generations = 32,
                .pg = {.entropy_weight = lambda}, .reward_form = RewardForm::scalar,
                .reward_params = {lambda / (2 * sigma2)}, .seed = 4});
    variances.push_back(std::exp(2 * out[1]));
  }
  for (double v : variances) EXPECT_NEAR(v, 0.49, 0.1 * 0.49);
}

/// T7/T8: 1-D, 10 points from N(2, 0.8²), λ = 0.5; the fixed point of s (the variance) of a noisy
/// iteration, estimated as the mean of the late iterates (evaluations 6..10 of each run) over 8 runs.
double reinforce_variance(double u, std::int64_t G, Transform t) {
  const std::vector<double> targets = gaussian_targets(10, {2.0}, {0.8}, 7);
  FreeGaussian fg(targets, 1, GaussianHead::diagonal);
  double sum = 0;
  int count = 0;
  for (std::uint64_t run = 0; run < 8; ++run) {
    const auto records = d2r::fit_policy(
        fg.ctx, fg.policy, vec(fg.params), fg.data(), {},
        d2r::PolicyFitOptions<double>{.loss = PolicyLoss::pg, .steps = 4000, .adam = {.learning_rate = 0.01},
                                      .generations = G, .pg = {.entropy_weight = 0.5, .transform = {.kind = t}},
                                      .reward_form = RewardForm::scalar, .reward_params = {u}, .seed = run,
                                      .evaluate_every = 400});
    for (std::size_t i = 5; i < records.size(); ++i) {
      sum += records[i].train.mean_std * records[i].train.mean_std;
      ++count;
    }
  }
  return sum / count;
}

TEST(ClosedForms, T7ReinforceWithoutTransformIsUnbiased) {
  EXPECT_NEAR(reinforce_variance(0.2, 5, Transform::none), 1.25, 0.1 * 1.25);  // paper: 1.22
  EXPECT_NEAR(reinforce_variance(1.0, 5, Transform::none), 0.25, 0.1 * 0.25);  // paper: 0.23
}

TEST(ClosedForms, T8NormalizeTransformIsBiasedUpwardAndLessSoWithMoreSamples) {
  const double g2 = reinforce_variance(0.2, 2, Transform::normalize);
  const double g5 = reinforce_variance(0.2, 5, Transform::normalize);
  const double g25 = reinforce_variance(0.2, 25, Transform::normalize);
  // PAPER.md: 7.4 / 2.7 / 1.7 against the unbiased 1.25.
  EXPECT_GT(g2, 2.0 * 1.25);
  EXPECT_GT(g2, g5);
  EXPECT_GT(g5, g25);
  EXPECT_GT(g25, 1.15 * 1.25);
  for (std::int64_t G : {2, 25}) EXPECT_NEAR(reinforce_variance(0.2, G, Transform::none), 1.25, 0.12 * 1.25) << G;
}

// ------------------------------------------------------------------ baselines
TEST(FitPolicy, MseAndNllBaselinesFitAHeteroscedasticRegression) {
  // y = 2x + 1 + (0.2 + 0.3|x|) ε: MSE learns the mean; NLL also the spread.
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 1}};
  TestRng rng(12);
  const std::int64_t N = 200;
  std::vector<double> x, y;
  for (std::int64_t b = 0; b < N; ++b) {
    const double xi = rng.uniform(-1, 1);
    x.push_back(xi);
    y.push_back(2 * xi + 1 + (0.2 + 0.3 * std::abs(xi)) * normal(rng));
  }
  const d2r::RegressionData<double> data{cmat(x, N, 1), cmat(y, N, 1)};
  d2r::GaussianPolicy<double> policy(ctx, {.inputs = 1, .hidden = {16}, .activation = d2r::Activation::tanh}, 1,
                                     GaussianHead::diagonal, N);
  std::vector<double> params(static_cast<std::size_t>(policy.parameter_count()));
  std::vector<std::int64_t> seen;
  const auto mse = d2r::fit_policy(ctx, policy, vec(params), data, {},
                                   {.loss = PolicyLoss::mse, .steps = 1500, .adam = {.learning_rate = 0.01},
                                    .evaluate_every = 500,
                                    .on_record = [&](const d2r::PolicyFitRecord& r) { seen.push_back(r.step); }});
  ASSERT_EQ(mse.size(), 3u);
  EXPECT_EQ(seen, (std::vector<std::int64_t>{500, 1000, 1500}));
  EXPECT_EQ(mse.back().step, 1500);
  EXPECT_LT(mse.back().train.rmse, 0.45);
  EXPECT_LT(mse.back().train.rmse, mse.front().train.rmse + 1e-12);
  EXPECT_TRUE(std::isnan(mse.back().validation.nll_per_dim));
  const auto nll = d2r::fit_policy(ctx, policy, vec(params), data, data,
                                   {.loss = PolicyLoss::nll, .steps = 1500, .adam = {.learning_rate = 0.01}});
  ASSERT_EQ(nll.size(), 1u);
  EXPECT_LT(nll.back().train.rmse, 0.45);
  EXPECT_NEAR(nll.back().train.mean_std, 0.35, 0.08);  // E[0.2 + 0.3|x|] = 0.35
  EXPECT_DOUBLE_EQ(nll.back().validation.nll_per_dim, nll.back().train.nll_per_dim);
  // The NLL model's likelihood beats a unit-variance model's.
  EXPECT_LT(nll.back().train.nll_per_dim, 0.5 * std::log(2 * kPi) + 0.5 * 0.45 * 0.45);
}

TEST(FitPolicy, RejectsBadInputBeforeAnyWork) {
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  using d2r::test::expect_error;
  d2r::GaussianPolicy<double> policy(ctx, {.inputs = 1}, 1, GaussianHead::diagonal, 4);
  std::vector<double> params(static_cast<std::size_t>(policy.parameter_count()), 0.25);
  const std::vector<double> before = params;
  std::vector<double> x{0, 1, 2, 3}, y{0, 1, 2, 3}, bad{0, NAN, 2, 3};
  const d2r::RegressionData<double> ok{cmat(x, 4, 1), cmat(y, 4, 1)};
  expect_error([&] { d2r::fit_policy<double>(ctx, policy, vec(params), {}, {}, {}); }, "train.x", "rows");
  expect_error([&] { d2r::fit_policy<double>(ctx, policy, vec(params), {cmat(x, 4, 1), cmat(bad, 4, 1)}, {}, {}); },
               "train.y", "finite");
  expect_error([&] { d2r::fit_policy<double>(ctx, policy, vec(params), ok, {}, {.steps = 0}); }, "options.steps", ">= 1");
  expect_error([&] { d2r::fit_policy<double>(ctx, policy, vec(params), ok, {}, {.adam = {.learning_rate = -1}}); },
               "options.adam", "learning_rate");
  expect_error([&] { d2r::fit_policy<double>(ctx, policy, vec(params), ok, {}, {.gradient_clamp = 0}); },
               "options.gradient_clamp", "> 0");
  expect_error(
      [&] {
        d2r::fit_policy<double>(ctx, policy, vec(params), ok, {},
                                {.loss = PolicyLoss::pg, .reward_form = RewardForm::diagonal, .reward_params = {1, 2}});
      },
      "options.reward_params", "parameters");
  expect_error(
      [&] { d2r::fit_policy<double>(ctx, policy, vec(params), ok, {}, {.loss = PolicyLoss::pg, .reward_params = {-1}}); },
      "options.reward_params", "> 0");
  expect_error([&] { d2r::fit_policy<double>(ctx, policy, vec(params), {cmat(x, 2, 2), cmat(y, 2, 2)}, {}, {}); },
               "train.x", "columns");
  EXPECT_EQ(params, before);
}

}  // namespace

// ------------------------------------------------------------------ classification
namespace {

/// Three Gaussian blobs in 4-D (class c centred at 1.5·e_c), N rows.
struct Blobs {
  std::int64_t N;
  std::vector<double> x;
  std::vector<std::int32_t> labels;
  Blobs(std::int64_t rows, std::uint64_t seed) : N(rows) {
    TestRng rng(seed);
    for (std::int64_t i = 0; i < N; ++i) {
      const auto c = static_cast<std::int32_t>(i % 3);
      labels.push_back(c);
      for (int d = 0; d < 4; ++d) x.push_back((d == c ? 1.5 : 0.0) + normal(rng));
    }
  }
  d2r::ClassificationData<double> data() const { return {cmat(x, N, 4), {labels.data(), N}}; }
};

TEST(CategoricalPolicy, NllGradientMatchesFiniteDifferencesAndPgMatchesTheCurvatureComposition) {
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 4}};
  const Blobs b(7, 2);
  d2r::CategoricalPolicy<double> policy(ctx, {.inputs = 4, .hidden = {5}, .activation = d2r::Activation::tanh}, 3, 7);
  std::vector<double> params(static_cast<std::size_t>(policy.parameter_count())), grad(params.size());
  policy.init(vec(params), 3);
  const d2r::ConstVector<double> theta{params.data(), static_cast<std::int64_t>(params.size())};
  policy.nll_gradient(theta, b.data().x, b.data().labels, vec(grad));
  const auto loss = [&] { return policy.evaluate(theta, b.data().x, b.data().labels).nll_per_dim; };
  for (std::size_t i = 0; i < params.size(); ++i) {
    const double fd = d2r::test::central_difference(params, i, loss, 1e-6);
    EXPECT_NEAR(grad[i], fd, 1e-8 * (1 + std::abs(fd))) << "parameter " << i;
  }
  // The REINFORCE gradient equals CategoricalPolicyCurvature's composition of the unfused primitives.
  std::vector<double> beta{0.7}, g_fused(params.size()), g_composed(params.size());
  const d2r::MahalanobisReward<double> reward{RewardForm::scalar, {beta.data(), 1}};
  const d2r::PgOptions<double> pg{.entropy_weight = 0.3};
  policy.pg_gradient(theta, b.data().x, b.data().labels, reward, 6, pg, {.step = 3}, vec(g_fused));
  d2r::CategoricalPolicyCurvature<double> curvature(ctx, policy.net(), b.N);
  curvature.prepare(theta, b.data().x, b.data().labels, reward, 6, pg, {.step = 3}, vec(g_composed));
  double norm = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_NEAR(g_fused[i], g_composed[i], 1e-10 * (1 + std::abs(g_composed[i])));
    norm += g_fused[i] * g_fused[i];
  }
  EXPECT_GT(norm, 1e-8);
  const d2r::PolicyMetrics m = policy.evaluate(theta, b.data().x, b.data().labels);
  EXPECT_GE(m.accuracy, 0.0);
  EXPECT_LE(m.accuracy, 1.0);
  EXPECT_TRUE(std::isnan(m.rmse));
}

TEST(FitClassifier, LogisticRegressionLearnsBlobsWithNllAndWithPg) {
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 8}};
  const Blobs train(600, 5), test(300, 6);
  d2r::CategoricalPolicy<double> policy(ctx, {.inputs = 4}, 3, 600);
  std::vector<double> params(static_cast<std::size_t>(policy.parameter_count()));
  const auto nll = d2r::fit_classifier(ctx, policy, vec(params), train.data(), test.data(),
                                       d2r::ClassifierFitOptions<double>{.epochs = 10, .seed = 1});
  ASSERT_EQ(nll.size(), 10u);
  EXPECT_EQ(nll.back().step, 10);
  // The Bayes accuracy of these blobs is about 0.80.
  EXPECT_GT(nll.back().validation.accuracy, 0.72);
  EXPECT_LT(nll.back().train.nll_per_dim, nll.front().train.nll_per_dim + 1e-12);
  const std::vector<double> first = params;
  // Deterministic for a seed.
  d2r::fit_classifier(ctx, policy, vec(params), train.data(), test.data(),
                      d2r::ClassifierFitOptions<double>{.epochs = 10, .seed = 1});
  EXPECT_EQ(params, first);
  // PG with the heuristic β* (balanced 3 classes, λ = 1: β* = λC / (2·N/(N−1)·(2/3))).
  const double beta = d2r::heuristic_class_beta(ctx, train.data().labels, 3, 1.0);
  const auto pg = d2r::fit_classifier(
      ctx, policy, vec(params), train.data(), test.data(),
      d2r::ClassifierFitOptions<double>{.loss = PolicyLoss::pg, .epochs = 10, .generations = 50,
                                        .pg = {.entropy_weight = 1.0}, .reward_params = {beta}, .seed = 1});
  EXPECT_GT(pg.back().validation.accuracy, 0.72);
}

TEST(FitClassifier, RejectsBadInputBeforeAnyWork) {
  using d2r::test::expect_error;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  const Blobs b(9, 1);
  d2r::CategoricalPolicy<double> policy(ctx, {.inputs = 4}, 3, 9);
  std::vector<double> params(static_cast<std::size_t>(policy.parameter_count()), 0.5);
  const std::vector<double> before = params;
  std::vector<std::int32_t> bad_labels = b.labels;
  bad_labels[2] = 3;
  expect_error([&] { d2r::fit_classifier<double>(ctx, policy, vec(params), {b.data().x, {bad_labels.data(), 9}}, {}, {}); },
               "train.labels", "");
  expect_error([&] { d2r::fit_classifier<double>(ctx, policy, vec(params), {b.data().x, {b.labels.data(), 8}}, {}, {}); },
               "train.labels", "9 labels");
  expect_error([&] { d2r::fit_classifier<double>(ctx, policy, vec(params), b.data(), {}, {.loss = PolicyLoss::mse}); },
               "options.loss", "classifier");
  expect_error([&] { d2r::fit_classifier<double>(ctx, policy, vec(params), b.data(), {}, {.epochs = 0}); },
               "options.epochs", ">= 1");
  expect_error([&] { d2r::fit_classifier<double>(ctx, policy, vec(params), b.data(), {}, {.batch_size = -1}); },
               "options.batch_size", ">= 0");
  expect_error(
      [&] {
        d2r::fit_classifier<double>(ctx, policy, vec(params), b.data(), {},
                                    {.loss = PolicyLoss::pg, .reward_params = {0.0}});
      },
      "options.reward_params", "> 0");
  EXPECT_EQ(params, before);
  expect_error([&] { d2r::CategoricalPolicy<double>(ctx, {.inputs = 4}, 1, 9); }, "classes", "2 <= C");
}

TEST(BilevelClassifier, RunsAndRecordsEveryOuterStep) {
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 3}};
  const Blobs b(60, 9);
  d2r::BilevelOptions<double> o;
  o.inner.steps = 5;
  o.inner.generations = 8;
  using d2r::test::expect_error;
  d2r::BilevelTrainer<double> t(ctx, {.inputs = 4}, b.data(), b.data(), 3, RewardForm::scalar,
                                std::vector<double>{1.0}, o);
  for (int k = 0; k < 3; ++k) {
    const d2r::BilevelRecord& r = t.step();
    ASSERT_EQ(r.reward_params.size(), 1u);
    EXPECT_TRUE(std::isfinite(r.hypergradient[0]));
    EXPECT_NE(r.hypergradient[0], 0.0);
    EXPECT_TRUE(std::isfinite(r.train.accuracy));
    EXPECT_TRUE(std::isfinite(r.validation.nll_per_dim));
    EXPECT_LE(r.mean_inner_reward, 0.0);
  }
  EXPECT_EQ(t.classifier().classes(), 3);
  expect_error([&] { (void)t.policy(); }, "this", "classification", d2r::ErrorKind::unsupported);
}

}  // namespace
