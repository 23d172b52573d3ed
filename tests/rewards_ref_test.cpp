// Rewards and group transforms on the cpu backend (double): closed forms against a dense U,
// finite differences of the parameter gradients, transform formulas and their properties.
#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::test::TestRng;

/// Dense U (d x d) of a reward, built independently of the library: u·I, diag, or R Rᵀ.
std::vector<double> dense_u(RewardForm form, const std::vector<double>& p, std::int64_t d) {
  std::vector<double> U(d * d, 0.0);
  if (form == RewardForm::scalar) {
    for (std::int64_t i = 0; i < d; ++i) U[i * d + i] = p[0];
  } else if (form == RewardForm::diagonal) {
    for (std::int64_t i = 0; i < d; ++i) U[i * d + i] = p[i];
  } else {
    std::vector<double> R(d * d, 0.0);
    for (std::int64_t i = 0, k = 0; i < d; ++i)
      for (std::int64_t j = 0; j <= i; ++j) R[i * d + j] = p[k++];
    for (std::int64_t i = 0; i < d; ++i)
      for (std::int64_t j = 0; j < d; ++j)
        for (std::int64_t k = 0; k < d; ++k) U[i * d + j] += R[i * d + k] * R[j * d + k];
  }
  return U;
}

std::vector<double> random_params(RewardForm form, std::int64_t d, TestRng& rng) {
  std::vector<double> p(d2r::reward_param_count(form, d));
  for (auto& v : p) v = rng.uniform(-0.8, 0.8);
  if (form == RewardForm::full) {
    for (std::int64_t i = 0; i < d; ++i) p[i * (i + 1) / 2 + i] = rng.uniform(0.5, 1.5);
  } else {
    for (auto& v : p) v = rng.uniform(0.2, 2.0);
  }
  return p;
}

class RewardForms : public ::testing::TestWithParam<RewardForm> {
 protected:
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
};

TEST_P(RewardForms, ContinuousRewardIsMinusQuadraticForm) {
  const RewardForm form = GetParam();
  const std::int64_t B = 3, n = 4, G = 5;
  TestRng rng(static_cast<std::uint64_t>(form) + 10);
  auto p = random_params(form, n, rng);
  auto y = rng.vector<double>(B * n, -1, 1), s = rng.vector<double>(B * G * n, -2, 2);
  std::vector<double> r(B * G);
  d2r::reward(ctx, d2r::MahalanobisReward<double>{form, d2r::vector_view<const double>(p.data(), (std::int64_t)p.size())},
              d2r::matrix_view<const double>(s.data(), B * G, n), d2r::matrix_view<const double>(y.data(), B, n),
              d2r::matrix_view(r.data(), B, G));
  const auto U = dense_u(form, p, n);
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t g = 0; g < G; ++g) {
      double q = 0;
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < n; ++j)
          q += (s[(b * G + g) * n + i] - y[b * n + i]) * U[i * n + j] * (s[(b * G + g) * n + j] - y[b * n + j]);
      EXPECT_NEAR(r[b * G + g], -q, 1e-12 * (1 + q));
      EXPECT_LT(r[b * G + g], 0.0);
    }
  }
}

TEST_P(RewardForms, OneHotRewardMatchesDenseU) {
  const RewardForm form = GetParam();
  const std::int64_t B = 4, C = 6, G = 7;
  TestRng rng(static_cast<std::uint64_t>(form) + 20);
  auto p = random_params(form, C, rng);
  std::vector<std::int32_t> labels{0, 5, 2, 3}, samples(B * G);
  for (std::int64_t i = 0; i < B * G; ++i) samples[i] = static_cast<std::int32_t>(i % C);
  std::vector<double> r(B * G);
  d2r::reward(ctx, d2r::MahalanobisReward<double>{form, d2r::vector_view<const double>(p.data(), (std::int64_t)p.size())},
              d2r::matrix_view<const std::int32_t>(samples.data(), B, G),
              d2r::vector_view<const std::int32_t>(labels.data(), B), C, d2r::matrix_view(r.data(), B, G));
  const auto U = dense_u(form, p, C);
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t g = 0; g < G; ++g) {
      const std::int32_t k = samples[b * G + g], y = labels[b];
      const double expected = -(U[k * C + k] - U[k * C + y] - U[y * C + k] + U[y * C + y]);
      EXPECT_NEAR(r[b * G + g], expected, 1e-12) << "k " << k << " y " << y;
    }
  }
}

TEST_P(RewardForms, GradientsMatchFiniteDifferences) {
  const RewardForm form = GetParam();
  const std::int64_t B = 3, n = 3, G = 4, C = 5;
  TestRng rng(static_cast<std::uint64_t>(form) + 30);
  auto p = random_params(form, n, rng), pc = random_params(form, C, rng);
  auto y = rng.vector<double>(B * n, -1, 1), s = rng.vector<double>(B * G * n, -2, 2), c = rng.vector<double>(B * G, -1, 1);
  std::vector<std::int32_t> labels{1, 4, 0}, ks{0, 1, 2, 3, 4, 4, 4, 1, 0, 0, 2, 3};
  const auto view = [](std::vector<double>& v) { return d2r::vector_view<const double>(v.data(), (std::int64_t)v.size()); };
  const auto continuous = [&]() {
    std::vector<double> r(B * G);
    d2r::reward(ctx, d2r::MahalanobisReward<double>{form, view(p)}, d2r::matrix_view<const double>(s.data(), B * G, n),
                d2r::matrix_view<const double>(y.data(), B, n), d2r::matrix_view(r.data(), B, G));
    double t = 0;
    for (std::int64_t i = 0; i < B * G; ++i) t += c[i] * r[i];
    return t;
  };
  const auto one_hot = [&]() {
    std::vector<double> r(B * G);
    d2r::reward(ctx, d2r::MahalanobisReward<double>{form, view(pc)}, d2r::matrix_view<const std::int32_t>(ks.data(), B, G),
                d2r::vector_view<const std::int32_t>(labels.data(), B), C, d2r::matrix_view(r.data(), B, G));
    double t = 0;
    for (std::int64_t i = 0; i < B * G; ++i) t += c[i] * r[i];
    return t;
  };
  std::vector<double> grad(p.size()), grad_c(pc.size());
  d2r::reward_backward(ctx, d2r::MahalanobisReward<double>{form, view(p)}, d2r::matrix_view<const double>(s.data(), B * G, n),
                       d2r::matrix_view<const double>(y.data(), B, n), d2r::matrix_view<const double>(c.data(), B, G),
                       d2r::vector_view(grad.data(), (std::int64_t)grad.size()));
  d2r::reward_backward(ctx, d2r::MahalanobisReward<double>{form, view(pc)},
                       d2r::matrix_view<const std::int32_t>(ks.data(), B, G),
                       d2r::vector_view<const std::int32_t>(labels.data(), B), C,
                       d2r::matrix_view<const double>(c.data(), B, G),
                       d2r::vector_view(grad_c.data(), (std::int64_t)grad_c.size()));
  const auto fd = [](std::vector<double>& param, std::size_t i, const std::function<double()>& f) {
    const double h = 1e-6, saved = param[i];
    param[i] = saved + h;
    const double up = f();
    param[i] = saved - h;
    const double down = f();
    param[i] = saved;
    return (up - down) / (2 * h);
  };
  double norm = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(grad[i], fd(p, i, continuous), 1e-6 * (1 + std::abs(grad[i]))) << "continuous param " << i;
    norm += std::abs(grad[i]);
  }
  for (std::size_t i = 0; i < pc.size(); ++i) {
    EXPECT_NEAR(grad_c[i], fd(pc, i, one_hot), 1e-6 * (1 + std::abs(grad_c[i]))) << "one-hot param " << i;
    norm += std::abs(grad_c[i]);
  }
  EXPECT_GT(norm, 0.1);
}

INSTANTIATE_TEST_SUITE_P(Forms, RewardForms, ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                         [](const auto& info) {
                           return std::string(info.param == RewardForm::scalar     ? "scalar"
                                              : info.param == RewardForm::diagonal ? "diagonal"
                                                                                   : "full");
                         });

TEST(RewardRef, OneHotScalarIsZeroOrMinusTwoBeta) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const double beta = 0.7;
  std::vector<std::int32_t> labels{2}, samples{0, 2, 1};
  std::vector<double> r(3);
  d2r::reward(ctx, d2r::MahalanobisReward<double>{RewardForm::scalar, d2r::vector_view<const double>(&beta, 1)},
              d2r::matrix_view<const std::int32_t>(samples.data(), 1, 3), d2r::vector_view<const std::int32_t>(labels.data(), 1),
              3, d2r::matrix_view(r.data(), 1, 3));
  EXPECT_EQ(r, (std::vector<double>{-2 * beta, 0.0, -2 * beta}));
}

TEST(TransformRef, FormulasOnAKnownRow) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::vector<double> r{-1.0, -3.0, -0.5, -2.5};
  const auto run = [&](d2r::TransformOptions<double> o) {
    std::vector<double> a(4);
    d2r::transform_rewards(ctx, o, d2r::matrix_view<const double>(r.data(), 1, 4), d2r::matrix_view(a.data(), 1, 4));
    return a;
  };
  EXPECT_EQ(run({.kind = d2r::Transform::none}), r);
  EXPECT_EQ(run({.kind = d2r::Transform::normalize}), (std::vector<double>{2.0, 0.0, 2.5, 0.5}));
  const auto rbf = run({.kind = d2r::Transform::rbf, .rbf_gamma = 0.5});
  for (int g = 0; g < 4; ++g) EXPECT_NEAR(rbf[g], std::exp(0.5 * r[g]), 1e-15);
  const auto loo = run({.kind = d2r::Transform::leave_one_out});
  EXPECT_NEAR(loo[0], -1.0 - (-3.0 - 0.5 - 2.5) / 3, 1e-15);
  double loo_sum = 0;
  for (double v : loo) loo_sum += v;
  EXPECT_NEAR(loo_sum, 0.0, 1e-14) << "leave-one-out advantages of a row sum to zero";
  const auto z = run({.kind = d2r::Transform::standardize, .standardize_epsilon = 1e-12});
  double m = 0, v = 0;
  for (double x : z) m += x / 4;
  for (double x : z) v += (x - m) * (x - m) / 3;
  EXPECT_NEAR(m, 0.0, 1e-12);
  EXPECT_NEAR(v, 1.0, 1e-9);
  // In place is allowed.
  std::vector<double> inplace = r;
  d2r::transform_rewards(ctx, d2r::TransformOptions<double>{.kind = d2r::Transform::normalize},
                         d2r::matrix_view<const double>(inplace.data(), 1, 4), d2r::matrix_view(inplace.data(), 1, 4));
  EXPECT_EQ(inplace, (std::vector<double>{2.0, 0.0, 2.5, 0.5}));
}

/// A group of equal rewards (every draw of a one-hot reward U = βI missing the label, say) has
/// advantages of exactly 0 under standardize, in float too: sum/G of equal floats can be off by
/// an ulp, which the division by s + ε (s = 0) would blow up to O(0.1).
TEST(TransformRef, StandardizeGivesAGroupOfEqualRewardsZeroAdvantages) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  for (const auto& [beta, G] : std::vector<std::pair<float, std::int64_t>>{{0.7f, 16}, {1.3f, 50}, {0.1f, 7}, {0.3f, 3}}) {
    SCOPED_TRACE(::testing::Message() << "beta " << beta << " G " << G);
    // Row 0: all equal; row 1: equal but one entry, which must still standardise normally.
    std::vector<float> r(static_cast<std::size_t>(2 * G), -2.0f * beta), a(r.size(), -1.0f);
    r[static_cast<std::size_t>(G)] = 0.0f;
    const d2r::TransformOptions<float> o{.kind = d2r::Transform::standardize};
    d2r::transform_rewards(ctx, o, d2r::matrix_view<const float>(r.data(), 2, G), d2r::matrix_view(a.data(), 2, G));
    for (std::int64_t g = 0; g < G; ++g) ASSERT_EQ(a[static_cast<std::size_t>(g)], 0.0f) << g;
    EXPECT_GT(a[static_cast<std::size_t>(G)], 0.5f);
    for (std::int64_t g = 1; g < G; ++g) ASSERT_EQ(a[static_cast<std::size_t>(G + g)], a[static_cast<std::size_t>(G + 1)]);
    EXPECT_LT(a[static_cast<std::size_t>(G + 1)], 0.0f);
    // Backward at the tied row: z = 0 exactly, so d_r = (d_a − mean d_a) / ε (s = 0, no ∂s term).
    std::vector<float> da(static_cast<std::size_t>(G)), dr(static_cast<std::size_t>(G));
    for (std::int64_t g = 0; g < G; ++g) da[static_cast<std::size_t>(g)] = static_cast<float>(g % 3) - 1.0f;
    d2r::transform_rewards_backward(ctx, o, d2r::matrix_view<const float>(r.data(), 1, G),
                                    d2r::matrix_view<const float>(da.data(), 1, G), d2r::matrix_view(dr.data(), 1, G));
    double mean_da = 0;
    for (float v : da) mean_da += v / static_cast<double>(G);
    for (std::int64_t g = 0; g < G; ++g)
      EXPECT_NEAR(dr[static_cast<std::size_t>(g)], (da[static_cast<std::size_t>(g)] - mean_da) / o.standardize_epsilon, 1.0) << g;
  }
}

/// Under ValueChecks::none a row of all −inf logits draws class −1 (distributions.hpp): its
/// one-hot reward is NaN and the draw adds nothing to the reward gradient (it must not index
/// params[−1]).
TEST(RewardRef, OneHotDrawOfARowWithoutADistributionIsNaNAndHasNoGradient) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .value_checks = d2r::ValueChecks::none});
  for (RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    SCOPED_TRACE(static_cast<int>(form));
    TestRng rng(3);
    const std::int64_t C = 4;
    const std::vector<double> params = random_params(form, C, rng);
    const d2r::MahalanobisReward<double> reward{form, d2r::vector_view(params.data(), (std::int64_t)params.size())};
    const std::vector<std::int32_t> labels{2}, with{-1, 0, 1}, without{0, 1};
    std::vector<double> r(3);
    d2r::reward(ctx, reward, d2r::matrix_view(with.data(), 1, 3), d2r::vector_view(labels.data(), 1), C,
                d2r::matrix_view(r.data(), 1, 3));
    EXPECT_TRUE(std::isnan(r[0]));
    EXPECT_TRUE(std::isfinite(r[1]) && std::isfinite(r[2]));
    const std::vector<double> d3{0.5, -1.25, 0.75}, d2{-1.25, 0.75};
    std::vector<double> g_with(params.size(), 9.0), g_without(params.size(), 9.0);
    d2r::reward_backward(ctx, reward, d2r::matrix_view(with.data(), 1, 3), d2r::vector_view(labels.data(), 1), C,
                         d2r::matrix_view(d3.data(), 1, 3), d2r::vector_view(g_with.data(), (std::int64_t)g_with.size()));
    d2r::reward_backward(ctx, reward, d2r::matrix_view(without.data(), 1, 2), d2r::vector_view(labels.data(), 1), C,
                         d2r::matrix_view(d2.data(), 1, 2),
                         d2r::vector_view(g_without.data(), (std::int64_t)g_without.size()));
    EXPECT_EQ(g_with, g_without);
  }
}

}  // namespace
