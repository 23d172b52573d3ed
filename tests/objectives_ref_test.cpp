// The inner objectives on the cpu backend (double): gradients against finite differences for every
// head x reward form x transform, unbiasedness of REINFORCE against the exact gradient, the bias
// of "normalize", closed-form expectations against Monte Carlo, shard normalisation.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <tuple>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::Transform;
using d2r::test::TestRng;

std::vector<double> reward_params(RewardForm form, std::int64_t d, TestRng& rng) {
  std::vector<double> p(d2r::reward_param_count(form, d));
  for (auto& v : p) v = form == RewardForm::full ? rng.uniform(-0.4, 0.4) : rng.uniform(0.3, 1.5);
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < d; ++i) p[i * (i + 1) / 2 + i] = rng.uniform(0.6, 1.2);
  return p;
}

using d2r::test::central_difference;
constexpr auto fd = [](std::vector<double>& param, std::size_t i, const std::function<double()>& f) {
  return central_difference(param, i, f);
};

double sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

/// A small problem for each head: parameters, targets, reward. Parameters are flat vectors so
/// finite differences can walk them.
struct Problem {
  std::int64_t B = 3, n = 3, G = 4, C = 5;
  std::vector<double> mean, log_std, tril, logits, targets, reward;
  std::vector<std::int32_t> labels{1, 4, 0};
  RewardForm form;
  Problem(RewardForm f, std::uint64_t seed) : form(f) {
    TestRng rng(seed);
    mean = rng.vector<double>(B * n, -1, 1);
    log_std = rng.vector<double>(B * n, -0.5, 0.3);
    tril = rng.vector<double>(B * n * (n + 1) / 2, -0.4, 0.4);
    logits = rng.vector<double>(B * C, -1.5, 1.5);
    logits[3] = -INFINITY;  // a masked class
    targets = rng.vector<double>(B * n, -1, 1);
    reward = reward_params(f, n, rng);
  }
  d2r::DiagGaussian<double> diag() { return {d2r::matrix_view<const double>(mean.data(), B, n), d2r::matrix_view<const double>(log_std.data(), B, n)}; }
  d2r::CholeskyGaussian<double> chol() {
    return {d2r::matrix_view<const double>(mean.data(), B, n), d2r::matrix_view<const double>(tril.data(), B, n * (n + 1) / 2), 1e-5};
  }
  d2r::Categorical<double> cat() { return {d2r::matrix_view<const double>(logits.data(), B, C)}; }
  d2r::MahalanobisReward<double> r() { return {form, d2r::vector_view<const double>(reward.data(), (std::int64_t)reward.size())}; }
  d2r::ConstMatrix<double> y() { return d2r::matrix_view<const double>(targets.data(), B, n); }
  d2r::VectorView<const std::int32_t> lab() { return d2r::vector_view<const std::int32_t>(labels.data(), B); }
};

using Case = std::tuple<RewardForm, Transform>;

class SurrogateGradient : public ::testing::TestWithParam<Case> {
 protected:
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 31}};
};

// The surrogate with the samples and advantages held fixed is a function of the head; its
// gradient is what pg_surrogate writes. L(θ) is rebuilt from log_prob and entropy.
TEST_P(SurrogateGradient, DiagAndCholeskyMatchFiniteDifferences) {
  const auto [form, transform] = GetParam();
  Problem p(form, 100 + static_cast<std::uint64_t>(form) * 10 + static_cast<std::uint64_t>(transform));
  const d2r::PgOptions<double> opt{.entropy_weight = 0.3, .transform = {.kind = transform, .rbf_gamma = 0.4},
                                   .log_prob_clip = 0.0, .per_dimension_mean = transform == Transform::rbf,
                                   .normaliser_rows = 7};
  const std::int64_t B = p.B, n = p.n, G = p.G, P = n * (n + 1) / 2;
  for (int head_kind = 0; head_kind < 2; ++head_kind) {
    std::vector<double> samples(B * G * n), logp(B * G), rewards(B * G), adv(B * G), row_loss(B), row_reward(B);
    std::vector<double> g_mean(B * n), g_second(head_kind == 0 ? B * n : B * P);
    const d2r::PgIntermediates<double> im{d2r::matrix_view(samples.data(), B * G, n), d2r::matrix_view(logp.data(), B, G),
                                          d2r::matrix_view(rewards.data(), B, G), d2r::matrix_view(adv.data(), B, G)};
    const d2r::ObjectiveRows<double> rows{d2r::vector_view(row_loss.data(), B), d2r::vector_view(row_reward.data(), B)};
    std::vector<double>& second = head_kind == 0 ? p.log_std : p.tril;
    const auto objective = [&]() {  // L(θ) with samples and advantages fixed
      std::vector<double> lp(B * G), H(B);
      if (head_kind == 0) {
        d2r::log_prob(ctx, p.diag(), d2r::matrix_view<const double>(samples.data(), B * G, n), d2r::matrix_view(lp.data(), B, G));
        d2r::entropy(ctx, p.diag(), d2r::vector_view(H.data(), B));
      } else {
        d2r::log_prob(ctx, p.chol(), d2r::matrix_view<const double>(samples.data(), B * G, n), d2r::matrix_view(lp.data(), B, G));
        d2r::entropy(ctx, p.chol(), d2r::vector_view(H.data(), B));
      }
      const double pd = opt.per_dimension_mean ? 1.0 / n : 1.0;
      double L = 0;
      for (std::int64_t b = 0; b < B; ++b) {
        for (std::int64_t g = 0; g < G; ++g) L += -pd * lp[b * G + g] * adv[b * G + g] / G;
        L -= opt.entropy_weight * pd * H[b];
      }
      return L / 7.0;
    };
    if (head_kind == 0) {
      d2r::pg_surrogate_unfused(ctx, p.diag(), p.y(), p.r(), G, opt, {.step = 2}, im, rows,
                                d2r::DiagGaussianGrad<double>{d2r::matrix_view(g_mean.data(), B, n), d2r::matrix_view(g_second.data(), B, n)});
    } else {
      d2r::pg_surrogate_unfused(ctx, p.chol(), p.y(), p.r(), G, opt, {.step = 2}, im, rows,
                                d2r::CholeskyGaussianGrad<double>{d2r::matrix_view(g_mean.data(), B, n), d2r::matrix_view(g_second.data(), B, P)});
    }
    EXPECT_NEAR(sum(row_loss), objective(), 1e-12) << "row losses add up to the objective";
    double norm = 0;
    for (std::size_t i = 0; i < p.mean.size(); ++i) {
      EXPECT_NEAR(g_mean[i], fd(p.mean, i, objective), 1e-6 * (1 + std::abs(g_mean[i]))) << "head " << head_kind << " mean " << i;
      norm += std::abs(g_mean[i]);
    }
    for (std::size_t i = 0; i < second.size(); ++i) {
      EXPECT_NEAR(g_second[i], fd(second, i, objective), 1e-6 * (1 + std::abs(g_second[i]))) << "head " << head_kind << " param " << i;
    }
    EXPECT_GT(norm, 1e-3);
    // The fused entry point gives the same loss and gradient on the same key.
    std::vector<double> row_loss2(B), g_mean2(B * n), g_second2(g_second.size());
    const d2r::ObjectiveRows<double> rows2{d2r::vector_view(row_loss2.data(), B), {}};
    if (head_kind == 0) {
      d2r::pg_surrogate(ctx, p.diag(), p.y(), p.r(), G, opt, {.step = 2}, rows2,
                        d2r::DiagGaussianGrad<double>{d2r::matrix_view(g_mean2.data(), B, n), d2r::matrix_view(g_second2.data(), B, n)});
    } else {
      d2r::pg_surrogate(ctx, p.chol(), p.y(), p.r(), G, opt, {.step = 2}, rows2,
                        d2r::CholeskyGaussianGrad<double>{d2r::matrix_view(g_mean2.data(), B, n), d2r::matrix_view(g_second2.data(), B, P)});
    }
    EXPECT_EQ(row_loss2, row_loss);
    EXPECT_EQ(g_mean2, g_mean);
    EXPECT_EQ(g_second2, g_second);
  }
}

TEST_P(SurrogateGradient, CategoricalMatchesFiniteDifferences) {
  const auto [form, transform] = GetParam();
  Problem p(form, 200 + static_cast<std::uint64_t>(form) * 10 + static_cast<std::uint64_t>(transform));
  TestRng rng(5);
  p.reward = reward_params(form, p.C, rng);
  const d2r::PgOptions<double> opt{.entropy_weight = 0.2, .transform = {.kind = transform, .rbf_gamma = 0.5}};
  const std::int64_t B = p.B, C = p.C, G = 6;
  std::vector<std::int32_t> samples(B * G);
  std::vector<double> logp(B * G), rewards(B * G), adv(B * G), row_loss(B), grad(B * C);
  const d2r::PgIntermediates<double, std::int32_t> im{d2r::matrix_view(samples.data(), B, G), d2r::matrix_view(logp.data(), B, G),
                                                      d2r::matrix_view(rewards.data(), B, G), d2r::matrix_view(adv.data(), B, G)};
  d2r::pg_surrogate_unfused(ctx, p.cat(), p.lab(), p.r(), G, opt, {.step = 1}, im, {d2r::vector_view(row_loss.data(), B), {}},
                            d2r::CategoricalGrad<double>{d2r::matrix_view(grad.data(), B, C)});
  for (std::int64_t g = 0; g < G; ++g) EXPECT_NE(samples[g], 3) << "row 0 drew its masked class";
  const auto objective = [&]() {
    std::vector<double> lp(B * G), H(B);
    d2r::log_prob(ctx, p.cat(), d2r::matrix_view<const std::int32_t>(samples.data(), B, G), d2r::matrix_view(lp.data(), B, G));
    d2r::entropy(ctx, p.cat(), d2r::vector_view(H.data(), B));
    double L = 0;
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t g = 0; g < G; ++g) L += -lp[b * G + g] * adv[b * G + g] / G;
      L -= opt.entropy_weight * H[b];
    }
    return L / B;
  };
  EXPECT_NEAR(sum(row_loss), objective(), 1e-12);
  for (std::size_t i = 0; i < p.logits.size(); ++i) {
    if (std::isinf(p.logits[i])) {
      EXPECT_EQ(grad[i], 0.0) << "masked class " << i;
      continue;
    }
    EXPECT_NEAR(grad[i], fd(p.logits, i, objective), 1e-6 * (1 + std::abs(grad[i]))) << "logit " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(FormsAndTransforms, SurrogateGradient,
                         ::testing::Combine(::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                                            ::testing::Values(Transform::none, Transform::normalize, Transform::rbf,
                                                              Transform::leave_one_out, Transform::standardize)));

TEST(SurrogateClip, ClippedSamplesContributeNoGradient) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 3});
  std::vector<double> mean{0, 0}, log_std{-5, -5}, y{1, 1}, u{1}, row_loss(1), gm(2), gs(2), s(8 * 2), lp(8), r(8), a(8);
  const d2r::DiagGaussian<double> head{d2r::matrix_view<const double>(mean.data(), 1, 2), d2r::matrix_view<const double>(log_std.data(), 1, 2)};
  // With σ = e^-5, −log p is about −8 on average: a clip at 1 clips every sample.
  d2r::pg_surrogate_unfused(ctx, head, d2r::matrix_view<const double>(y.data(), 1, 2),
                            d2r::MahalanobisReward<double>{RewardForm::scalar, d2r::vector_view<const double>(u.data(), 1)}, 8,
                            d2r::PgOptions<double>{.entropy_weight = 0.0, .log_prob_clip = 1.0}, {},
                            {d2r::matrix_view(s.data(), 8, 2), d2r::matrix_view(lp.data(), 1, 8), d2r::matrix_view(r.data(), 1, 8),
                             d2r::matrix_view(a.data(), 1, 8)},
                            {d2r::vector_view(row_loss.data(), 1), {}},
                            d2r::DiagGaussianGrad<double>{d2r::matrix_view(gm.data(), 1, 2), d2r::matrix_view(gs.data(), 1, 2)});
  for (double v : lp) ASSERT_GT(v, 1.0) << "the test needs every −log p below −1";
  EXPECT_EQ(gm, (std::vector<double>{0, 0}));
  EXPECT_EQ(gs, (std::vector<double>{0, 0}));
  double expected = 0;
  for (double v : a) expected += -1.0 * v / 8;  // clip(−log p) = −1
  EXPECT_NEAR(row_loss[0], expected, 1e-12);
}

// ---------------------------------------------------------------- unbiasedness
struct GradientSamples {
  std::vector<double> mean, se;  // per component: mean over steps and its standard error
};

GradientSamples reinforce_gradients(Transform transform, std::int64_t G, int steps) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 2024});
  std::vector<double> mean{0.3, -0.2}, log_std{-0.1, 0.2}, y{1.0, 0.5}, u{0.8};
  const d2r::DiagGaussian<double> head{d2r::matrix_view<const double>(mean.data(), 1, 2), d2r::matrix_view<const double>(log_std.data(), 1, 2)};
  const d2r::MahalanobisReward<double> reward{RewardForm::scalar, d2r::vector_view<const double>(u.data(), 1)};
  std::vector<double> s1(4, 0), s2(4, 0), row_loss(1), g(4);
  for (int t = 0; t < steps; ++t) {
    d2r::pg_surrogate(ctx, head, d2r::matrix_view<const double>(y.data(), 1, 2), reward, G,
                      d2r::PgOptions<double>{.entropy_weight = 0.5, .transform = {.kind = transform}},
                      {.step = static_cast<std::uint64_t>(t)}, {d2r::vector_view(row_loss.data(), 1), {}},
                      d2r::DiagGaussianGrad<double>{d2r::matrix_view(g.data(), 1, 2), d2r::matrix_view(g.data() + 2, 1, 2)});
    for (int i = 0; i < 4; ++i) s1[i] += g[i], s2[i] += g[i] * g[i];
  }
  GradientSamples out;
  for (int i = 0; i < 4; ++i) {
    const double m = s1[i] / steps, var = s2[i] / steps - m * m;
    out.mean.push_back(m);
    out.se.push_back(std::sqrt(var / steps));
  }
  return out;
}

std::vector<double> exact_gradient() {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  std::vector<double> mean{0.3, -0.2}, log_std{-0.1, 0.2}, y{1.0, 0.5}, u{0.8}, row_loss(1), g(4);
  d2r::exact_objective(ctx,
                       d2r::DiagGaussian<double>{d2r::matrix_view<const double>(mean.data(), 1, 2), d2r::matrix_view<const double>(log_std.data(), 1, 2)},
                       d2r::matrix_view<const double>(y.data(), 1, 2),
                       d2r::MahalanobisReward<double>{RewardForm::scalar, d2r::vector_view<const double>(u.data(), 1)},
                       d2r::PgOptions<double>{.entropy_weight = 0.5}, {d2r::vector_view(row_loss.data(), 1), {}},
                       d2r::DiagGaussianGrad<double>{d2r::matrix_view(g.data(), 1, 2), d2r::matrix_view(g.data() + 2, 1, 2)});
  return g;
}

TEST(Unbiasedness, ReinforceMeanGradientMatchesExactGradient) {
  const auto exact = exact_gradient();
  for (Transform t : {Transform::none, Transform::leave_one_out}) {
    for (std::int64_t G : {2, 5}) {
      const auto est = reinforce_gradients(t, G, 20000);
      for (int i = 0; i < 4; ++i) {
        EXPECT_GT(est.se[i], 0.0);
        // 4.5 standard errors: a false alarm in 16 comparisons has probability below 1e-4.
        EXPECT_NEAR(est.mean[i], exact[i], 4.5 * est.se[i]) << d2r::to_string(t) << " G=" << G << " component " << i;
      }
    }
  }
}

TEST(Unbiasedness, NormalizeIsBiased) {
  // Subtracting the group minimum correlates the advantage with the sample: with G = 2 the mean
  // gradient on log σ differs from the exact one by many standard errors (PAPER.md T8).
  const auto exact = exact_gradient();
  const auto est = reinforce_gradients(Transform::normalize, 2, 20000);
  double worst = 0;
  for (int i = 2; i < 4; ++i) worst = std::max(worst, std::abs(est.mean[i] - exact[i]) / est.se[i]);
  EXPECT_GT(worst, 10.0);
}

// ---------------------------------------------------------------- exact objective
TEST(ExactObjective, ExpectedRewardMatchesMonteCarlo) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 8});
  for (RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    Problem p(form, 300 + static_cast<std::uint64_t>(form));
    const std::int64_t B = p.B, n = p.n, G = 200000, P = n * (n + 1) / 2;
    std::vector<double> row_loss(B), expected(B), gm(B * n), gs(B * n), gt(B * P), samples(B * G * n), r(B * G);
    const d2r::ObjectiveRows<double> rows{d2r::vector_view(row_loss.data(), B), d2r::vector_view(expected.data(), B)};
    for (int head_kind = 0; head_kind < 2; ++head_kind) {
      if (head_kind == 0) {
        d2r::exact_objective(ctx, p.diag(), p.y(), p.r(), d2r::PgOptions<double>{}, rows,
                             d2r::DiagGaussianGrad<double>{d2r::matrix_view(gm.data(), B, n), d2r::matrix_view(gs.data(), B, n)});
        d2r::sample(ctx, p.diag(), G, {}, d2r::matrix_view(samples.data(), B * G, n));
      } else {
        d2r::exact_objective(ctx, p.chol(), p.y(), p.r(), d2r::PgOptions<double>{}, rows,
                             d2r::CholeskyGaussianGrad<double>{d2r::matrix_view(gm.data(), B, n), d2r::matrix_view(gt.data(), B, P)});
        d2r::sample(ctx, p.chol(), G, {}, d2r::matrix_view(samples.data(), B * G, n));
      }
      d2r::reward(ctx, p.r(), d2r::matrix_view<const double>(samples.data(), B * G, n), p.y(), d2r::matrix_view(r.data(), B, G));
      for (std::int64_t b = 0; b < B; ++b) {
        double s1 = 0, s2 = 0;
        for (std::int64_t g = 0; g < G; ++g) s1 += r[b * G + g], s2 += r[b * G + g] * r[b * G + g];
        const double m = s1 / G, se = std::sqrt((s2 / G - m * m) / G);
        EXPECT_NEAR(m, expected[b], 4.5 * se) << "head " << head_kind << " row " << b;
        EXPECT_NEAR(row_loss[b], -expected[b] / B, 1e-12) << "λ = 0: the loss is −E[r] / B";
      }
    }
  }
}

TEST(ExactObjective, GradientsMatchFiniteDifferences) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  for (RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    Problem p(form, 400 + static_cast<std::uint64_t>(form));
    const std::int64_t B = p.B, n = p.n, C = p.C, P = n * (n + 1) / 2;
    TestRng rng(9);
    std::vector<double> reward_c = reward_params(form, C, rng);
    const d2r::PgOptions<double> opt{.entropy_weight = 0.7, .per_dimension_mean = true};
    std::vector<double> row_loss(B), gm(B * n), gs(B * n), gt(B * P), gl(B * C);
    const d2r::ObjectiveRows<double> rows{d2r::vector_view(row_loss.data(), B), {}};
    const auto diag_loss = [&]() {
      d2r::exact_objective(ctx, p.diag(), p.y(), p.r(), opt, rows,
                           d2r::DiagGaussianGrad<double>{d2r::matrix_view(gm.data(), B, n), d2r::matrix_view(gs.data(), B, n)});
      return sum(row_loss);
    };
    const auto chol_loss = [&]() {
      d2r::exact_objective(ctx, p.chol(), p.y(), p.r(), opt, rows,
                           d2r::CholeskyGaussianGrad<double>{d2r::matrix_view(gm.data(), B, n), d2r::matrix_view(gt.data(), B, P)});
      return sum(row_loss);
    };
    const auto cat_loss = [&]() {
      d2r::exact_objective(ctx, p.cat(), p.lab(),
                           d2r::MahalanobisReward<double>{form, d2r::vector_view<const double>(reward_c.data(), (std::int64_t)reward_c.size())},
                           opt, rows, d2r::CategoricalGrad<double>{d2r::matrix_view(gl.data(), B, C)});
      return sum(row_loss);
    };
    const auto check = [&](const std::function<double()>& loss, std::vector<double>& param, const std::vector<double>& grad_of,
                           const char* what) {
      loss();
      const std::vector<double> grad = grad_of;
      for (std::size_t i = 0; i < param.size(); ++i) {
        if (std::isinf(param[i])) continue;
        EXPECT_NEAR(grad[i], fd(param, i, loss), 1e-6 * (1 + std::abs(grad[i]))) << what << " " << i;
      }
    };
    check(diag_loss, p.mean, gm, "diag mean");
    check(diag_loss, p.log_std, gs, "diag log_std");
    check(chol_loss, p.mean, gm, "cholesky mean");
    check(chol_loss, p.tril, gt, "cholesky tril");
    check(cat_loss, p.logits, gl, "categorical logits");
  }
}

/// Under ValueChecks::none (no value checks): a row of the categorical exact objective with no
/// distribution (all logits −inf) gets NaN gradients, loss and tangent, as the kernels write; a
/// NaN logit masks its class like −inf; the other rows are unaffected.
TEST(ExactObjective, CategoricalRowWithoutADistributionIsNaNAndNaNLogitsAreMasked) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .value_checks = d2r::ValueChecks::none});
  constexpr double kInf = std::numeric_limits<double>::infinity(), kNaN = std::numeric_limits<double>::quiet_NaN();
  constexpr std::int64_t B = 3, C = 3;
  // Row 0: no distribution. Row 1: class 0 NaN. Row 2: class 0 −inf (must equal row 1).
  const std::vector<double> logits{-kInf, -kInf, -kInf, kNaN, 0.5, -0.25, -kInf, 0.5, -0.25};
  const std::vector<double> tangent{0.3, -0.2, 0.1, 0.7, 0.4, -0.6, 0.7, 0.4, -0.6};
  const std::vector<std::int32_t> labels{1, 1, 1};
  const double beta = 0.8;
  const d2r::MahalanobisReward<double> reward{RewardForm::scalar, d2r::vector_view<const double>(&beta, 1)};
  const d2r::PgOptions<double> opt{.entropy_weight = 0.5};
  const d2r::Categorical<double> head{d2r::matrix_view(logits.data(), B, C)}, tan{d2r::matrix_view(tangent.data(), B, C)};
  std::vector<double> loss(B, 9.0), expected(B, 9.0), grad(B * C, 9.0), grad_t(B * C, 9.0);
  d2r::exact_objective(ctx, head, d2r::vector_view(labels.data(), B), reward, opt,
                       d2r::ObjectiveRows<double>{d2r::vector_view(loss.data(), B), d2r::vector_view(expected.data(), B)},
                       d2r::CategoricalGrad<double>{d2r::matrix_view(grad.data(), B, C)});
  d2r::exact_backward_tangent(ctx, head, d2r::vector_view(labels.data(), B), reward, opt, tan,
                              d2r::CategoricalGrad<double>{d2r::matrix_view(grad_t.data(), B, C)});
  EXPECT_TRUE(std::isnan(loss[0]) && std::isnan(expected[0]));
  for (std::int64_t j = 0; j < C; ++j) {
    EXPECT_TRUE(std::isnan(grad[j])) << j;
    EXPECT_TRUE(std::isnan(grad_t[j])) << j;
    EXPECT_EQ(grad[C + j], grad[2 * C + j]) << j;
    EXPECT_EQ(grad_t[C + j], grad_t[2 * C + j]) << j;
  }
  EXPECT_EQ(loss[1], loss[2]);
  EXPECT_TRUE(std::isfinite(loss[1]));
  EXPECT_EQ(grad[C], 0.0);     // the masked class gets no gradient
  EXPECT_EQ(grad_t[C], 0.0);   // nor a tangent
  // E[r] of rows 1, 2 over the two live classes: p(label 1) r = 0, p(class 2) (−2β).
  const double p2 = std::exp(-0.25) / (std::exp(0.5) + std::exp(-0.25));
  EXPECT_NEAR(expected[1], -2 * beta * p2, 1e-15);
}

// ---------------------------------------------------------------- pathwise
TEST(Pathwise, GradientsMatchFiniteDifferencesWithFixedNoise) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 12});
  for (RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    for (Transform t : {Transform::none, Transform::rbf}) {
      Problem p(form, 500 + static_cast<std::uint64_t>(form));
      const std::int64_t B = p.B, n = p.n, G = 5, P = n * (n + 1) / 2;
      const d2r::PgOptions<double> opt{.entropy_weight = 0.4, .transform = {.kind = t, .rbf_gamma = 0.3}};
      std::vector<double> row_loss(B), gm(B * n), gs(B * n), gt(B * P);
      const d2r::ObjectiveRows<double> rows{d2r::vector_view(row_loss.data(), B), {}};
      const auto diag_loss = [&]() {
        d2r::pg_pathwise(ctx, p.diag(), p.y(), p.r(), G, opt, {.step = 3}, rows,
                         d2r::DiagGaussianGrad<double>{d2r::matrix_view(gm.data(), B, n), d2r::matrix_view(gs.data(), B, n)});
        return sum(row_loss);
      };
      const auto chol_loss = [&]() {
        d2r::pg_pathwise(ctx, p.chol(), p.y(), p.r(), G, opt, {.step = 3}, rows,
                         d2r::CholeskyGaussianGrad<double>{d2r::matrix_view(gm.data(), B, n), d2r::matrix_view(gt.data(), B, P)});
        return sum(row_loss);
      };
      for (auto [loss, param, grad] : {std::tuple{diag_loss, &p.mean, &gm}, std::tuple{diag_loss, &p.log_std, &gs}}) {
        loss();
        const std::vector<double> g = *grad;
        for (std::size_t i = 0; i < param->size(); ++i)
          EXPECT_NEAR(g[i], fd(*param, i, loss), 1e-6 * (1 + std::abs(g[i]))) << "diag " << i;
      }
      for (auto [loss, param, grad] : {std::tuple{chol_loss, &p.mean, &gm}, std::tuple{chol_loss, &p.tril, &gt}}) {
        loss();
        const std::vector<double> g = *grad;
        for (std::size_t i = 0; i < param->size(); ++i)
          EXPECT_NEAR(g[i], fd(*param, i, loss), 1e-6 * (1 + std::abs(g[i]))) << "cholesky " << i;
      }
    }
  }
}

TEST(Sharding, ShardsAddUpToTheWholeBatch) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 4});
  Problem p(RewardForm::diagonal, 600);
  const std::int64_t B = p.B, n = p.n, G = 4;
  const d2r::PgOptions<double> whole{.entropy_weight = 0.1, .transform = {.kind = Transform::leave_one_out}};
  std::vector<double> loss(B), gm(B * n), gs(B * n);
  d2r::pg_surrogate(ctx, p.diag(), p.y(), p.r(), G, whole, {.step = 6}, {d2r::vector_view(loss.data(), B), {}},
                    d2r::DiagGaussianGrad<double>{d2r::matrix_view(gm.data(), B, n), d2r::matrix_view(gs.data(), B, n)});
  // Rows [1, 3) as a shard of the same batch.
  auto shard_opt = whole;
  shard_opt.normaliser_rows = B;
  std::vector<double> loss2(2), gm2(2 * n), gs2(2 * n);
  const auto head = p.diag();
  d2r::pg_surrogate(ctx, d2r::DiagGaussian<double>{head.mean.row_range(1, 2), head.log_std.row_range(1, 2)},
                    p.y().row_range(1, 2), p.r(), G, shard_opt, {.step = 6, .first_row = 1}, {d2r::vector_view(loss2.data(), 2), {}},
                    d2r::DiagGaussianGrad<double>{d2r::matrix_view(gm2.data(), 2, n), d2r::matrix_view(gs2.data(), 2, n)});
  for (int i = 0; i < 2; ++i) EXPECT_DOUBLE_EQ(loss2[i], loss[1 + i]);
  for (std::int64_t i = 0; i < 2 * n; ++i) {
    EXPECT_DOUBLE_EQ(gm2[i], gm[n + i]);
    EXPECT_DOUBLE_EQ(gs2[i], gs[n + i]);
  }
}

}  // namespace

// ---------------------------------------------------------------- counter-keyed draws
namespace {

/// DrawKey::step_offset: draws keyed by (step, *counter) are those of the plain step + counter, for
/// the samplers and the fused surrogate of every head, and advance_counter moves the counter.
TEST(CounterKeyedDraws, EqualThePlainStepPlusTheCounter) {
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 12}};
  const std::int64_t B = 5, n = 3, G = 4, C = 6;
  d2r::test::TestRng rng(3);
  const auto mean = rng.vector<double>(B * n, -1, 1), log_std = rng.vector<double>(B * n, -0.5, 0.5);
  const auto tril = rng.vector<double>(B * n * (n + 1) / 2, -0.5, 0.5), logits = rng.vector<double>(B * C, -1, 1);
  const auto y = rng.vector<double>(B * n, -1, 1);
  std::vector<std::int32_t> labels{0, 1, 2, 3, 4};
  std::vector<std::int64_t> counter{0};
  d2r::advance_counter(ctx, d2r::VectorView<std::int64_t>{counter.data(), 1}, 5);
  d2r::advance_counter(ctx, d2r::VectorView<std::int64_t>{counter.data(), 1});
  ASSERT_EQ(counter[0], 6);
  const d2r::DrawKey plain{.step = 9}, keyed{.step = 3, .step_offset = counter.data()};
  const d2r::DiagGaussian<double> diag{d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(log_std.data(), B, n)};
  const d2r::CholeskyGaussian<double> chol{d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(tril.data(), B, n * (n + 1) / 2)};
  const d2r::Categorical<double> cat{d2r::matrix_view(logits.data(), B, C)};
  std::vector<double> a(B * G * n), b(B * G * n, 1.0);
  d2r::sample(ctx, diag, G, plain, d2r::matrix_view(a.data(), B * G, n));
  d2r::sample(ctx, diag, G, keyed, d2r::matrix_view(b.data(), B * G, n));
  EXPECT_EQ(a, b);
  d2r::sample(ctx, chol, G, plain, d2r::matrix_view(a.data(), B * G, n));
  d2r::sample(ctx, chol, G, keyed, d2r::matrix_view(b.data(), B * G, n));
  EXPECT_EQ(a, b);
  std::vector<std::int32_t> ka(B * G), kb(B * G, -1);
  d2r::sample(ctx, cat, G, plain, d2r::matrix_view(ka.data(), B, G));
  d2r::sample(ctx, cat, G, keyed, d2r::matrix_view(kb.data(), B, G));
  EXPECT_EQ(ka, kb);
  // The fused surrogate (diag) regenerates its noise from the same counter-keyed stream.
  std::vector<double> u{0.8};
  const d2r::MahalanobisReward<double> reward{d2r::RewardForm::scalar, {u.data(), 1}};
  std::vector<double> la(B), lb(B), gma(B * n), gsa(B * n), gmb(B * n), gsb(B * n);
  d2r::pg_surrogate(ctx, diag, d2r::matrix_view(y.data(), B, n), reward, G, {.entropy_weight = 0.2}, plain,
                    {{la.data(), B}, {}}, {d2r::matrix_view(gma.data(), B, n), d2r::matrix_view(gsa.data(), B, n)});
  d2r::pg_surrogate(ctx, diag, d2r::matrix_view(y.data(), B, n), reward, G, {.entropy_weight = 0.2}, keyed,
                    {{lb.data(), B}, {}}, {d2r::matrix_view(gmb.data(), B, n), d2r::matrix_view(gsb.data(), B, n)});
  EXPECT_EQ(la, lb);
  EXPECT_EQ(gma, gmb);
  EXPECT_EQ(gsa, gsb);
  // A different counter value gives different draws.
  counter[0] = 7;
  d2r::sample(ctx, diag, G, keyed, d2r::matrix_view(b.data(), B * G, n));
  d2r::sample(ctx, diag, G, plain, d2r::matrix_view(a.data(), B * G, n));
  EXPECT_NE(a, b);
  d2r::test::expect_error([&] { d2r::advance_counter(ctx, d2r::VectorView<std::int64_t>{counter.data(), 2}); },
                          "counter", "one element");
}

}  // namespace
