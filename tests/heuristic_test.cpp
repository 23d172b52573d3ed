// The heuristic reward solver against the closed forms of PAPER.md T2–T4 and the classification β*.
#include <gtest/gtest.h>

#include <cmath>

#include "d2r/d2r.hpp"
#include "d2r/heuristic.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::test::expect_error;
using d2r::test::TestRng;

/// N draws of N(mean, L Lᵀ) in 2-D from Box–Muller on the test generator.
std::vector<double> gaussian_targets(std::int64_t N, double l00, double l10, double l11, std::uint64_t seed) {
  TestRng rng(seed);
  std::vector<double> y(2 * N);
  for (std::int64_t r = 0; r < N; ++r) {
    const double u1 = rng.uniform(1e-12, 1), u2 = rng.uniform(0, 1), u3 = rng.uniform(1e-12, 1), u4 = rng.uniform(0, 1);
    const double z0 = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2), z1 = std::sqrt(-2 * std::log(u3)) * std::cos(2 * M_PI * u4);
    y[2 * r] = 6.5 + l00 * z0;
    y[2 * r + 1] = -1 + l10 * z0 + l11 * z1;
  }
  return y;
}

TEST(Heuristic, CovarianceMatchesHandComputation) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::vector<double> y{1, 2, 3, 5, 2, 2, 6, 3};  // 4 rows, 2 columns
  std::vector<double> cov(4);
  d2r::target_covariance(ctx, d2r::matrix_view(y.data(), 4, 2), d2r::matrix_view(cov.data(), 2, 2));
  // means 3 and 3; deviations (−2,−1), (0,2), (−1,−1), (3,0)
  EXPECT_DOUBLE_EQ(cov[0], (4 + 0 + 1 + 9) / 3.0);
  EXPECT_DOUBLE_EQ(cov[3], (1 + 4 + 1 + 0) / 3.0);
  EXPECT_DOUBLE_EQ(cov[1], (2 + 0 + 1 + 0) / 3.0);
  EXPECT_DOUBLE_EQ(cov[2], cov[1]);
}

TEST(Heuristic, FullFormIsHalfLambdaTimesInverseCovariance) {
  // T2: U* = (λ/2) Σ̂⁻¹, returned as the Cholesky factor R of U.
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t N = 500;
  const auto y = gaussian_targets(N, 0.8, 0.3, 0.6, 1);
  for (double lambda : {0.3, 1.0, 4.0}) {
    std::vector<double> cov(4), R(3);
    d2r::target_covariance(ctx, d2r::matrix_view(y.data(), N, 2), d2r::matrix_view(cov.data(), 2, 2));
    d2r::heuristic_reward(ctx, d2r::matrix_view(y.data(), N, 2), lambda, RewardForm::full, d2r::vector_view(R.data(), 3));
    EXPECT_GT(R[0], 0.0);
    EXPECT_GT(R[2], 0.0);
    // U = R Rᵀ, then U Σ̂ = (λ/2) I.
    const double U00 = R[0] * R[0], U10 = R[1] * R[0], U11 = R[1] * R[1] + R[2] * R[2];
    EXPECT_NEAR(U00 * cov[0] + U10 * cov[2], lambda / 2, 1e-12);
    EXPECT_NEAR(U00 * cov[1] + U10 * cov[3], 0.0, 1e-12);
    EXPECT_NEAR(U10 * cov[0] + U11 * cov[2], 0.0, 1e-12);
    EXPECT_NEAR(U10 * cov[1] + U11 * cov[3], lambda / 2, 1e-12);
  }
}

TEST(Heuristic, IsotropicFormMatchesThePapersExample) {
  // T3: u* = λn/(2 tr Σ); for Σ = σ²I, n = 2, σ = 1.25, λ = 1: u* = 0.32. With N = 20000 draws the
  // estimate's relative standard error is about sqrt(2/(nN)) = 0.7 %; allow 4 of them.
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t N = 20000;
  const auto y = gaussian_targets(N, 1.25, 0.0, 1.25, 2);
  double u = 0;
  d2r::heuristic_reward(ctx, d2r::matrix_view(y.data(), N, 2), 1.0, RewardForm::scalar, d2r::vector_view(&u, 1));
  EXPECT_NEAR(u, 0.32, 0.32 * 4 * std::sqrt(2.0 / (2 * N)));
  std::vector<double> cov(4);
  d2r::target_covariance(ctx, d2r::matrix_view(y.data(), N, 2), d2r::matrix_view(cov.data(), 2, 2));
  EXPECT_DOUBLE_EQ(u, 1.0 * 2 / (2 * (cov[0] + cov[3])));
  std::vector<double> diag(2);
  d2r::heuristic_reward(ctx, d2r::matrix_view(y.data(), N, 2), 1.0, RewardForm::diagonal, d2r::vector_view(diag.data(), 2));
  EXPECT_DOUBLE_EQ(diag[0], 1.0 / (2 * cov[0]));  // T4: s_i* = λ/(2U_ii) = Σ̂_ii
  EXPECT_DOUBLE_EQ(diag[1], 1.0 / (2 * cov[3]));
}

TEST(Heuristic, FloatTargetsGiveTheDoubleAnswerRounded) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const auto y = gaussian_targets(100, 1.0, 0.5, 0.7, 3);
  const std::vector<float> yf(y.begin(), y.end());
  const std::vector<double> yd(yf.begin(), yf.end());
  std::vector<float> rf(3);
  std::vector<double> rd(3);
  d2r::heuristic_reward(ctx, d2r::matrix_view(yf.data(), 100, 2), 2.0f, RewardForm::full, d2r::vector_view(rf.data(), 3));
  d2r::heuristic_reward(ctx, d2r::matrix_view(yd.data(), 100, 2), 2.0, RewardForm::full, d2r::vector_view(rd.data(), 3));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rf[i], static_cast<float>(rd[i]));
}

TEST(Heuristic, ClassBetaMatchesTheFormula) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  // Balanced binary labels: 1 − Σp̂² = 1/2, so β* = 2λ (N−1)/N → 2λ for large N.
  std::vector<std::int32_t> balanced(1000);
  for (std::size_t i = 0; i < balanced.size(); ++i) balanced[i] = static_cast<std::int32_t>(i % 2);
  EXPECT_NEAR(d2r::heuristic_class_beta(ctx, d2r::vector_view<const std::int32_t>(balanced.data(), 1000), 2, 10.0),
              2 * 10.0 * 999.0 / 1000.0, 1e-12);
  // 3 classes with counts 5, 3, 2 (N = 10): Σp̂² = 0.38, β* = λ·3 / (2·10/9·0.62).
  std::vector<std::int32_t> labels{0, 0, 0, 0, 0, 1, 1, 1, 2, 2};
  EXPECT_NEAR(d2r::heuristic_class_beta(ctx, d2r::vector_view<const std::int32_t>(labels.data(), 10), 3, 0.5),
              0.5 * 3 / (2 * 10.0 / 9 * 0.62), 1e-12);
}

TEST(Heuristic, BadInput) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  std::vector<double> y{1, 2, 2, 4, 3, 6}, params(3, -7.0);  // collinear columns
  expect_error([&] { d2r::heuristic_reward(ctx, d2r::matrix_view(y.data(), 3, 2), 1.0, RewardForm::full, d2r::vector_view(params.data(), 3)); },
               "targets", "not positive definite");
  expect_error([&] { d2r::heuristic_reward(ctx, d2r::matrix_view(y.data(), 1, 2), 1.0, RewardForm::scalar, d2r::vector_view(params.data(), 1)); },
               "targets", "N >= 2 rows");
  expect_error([&] { d2r::heuristic_reward(ctx, d2r::matrix_view(y.data(), 3, 2), 0.0, RewardForm::scalar, d2r::vector_view(params.data(), 1)); },
               "entropy_weight", "λ > 0");
  expect_error([&] { d2r::heuristic_reward(ctx, d2r::matrix_view(y.data(), 3, 2), 1.0, RewardForm::diagonal, d2r::vector_view(params.data(), 3)); },
               "params", "expected a 1 x 2 matrix");
  EXPECT_EQ(params, std::vector<double>(3, -7.0)) << "nothing written on bad input";
  std::vector<std::int32_t> same(4, 1);
  expect_error([&] { d2r::heuristic_class_beta(ctx, d2r::vector_view<const std::int32_t>(same.data(), 4), 2, 1.0); }, "labels",
               "every label is the same class");
  same[2] = 5;
  expect_error([&] { d2r::heuristic_class_beta(ctx, d2r::vector_view<const std::int32_t>(same.data(), 4), 2, 1.0); }, "labels",
               "class index in [0, 2)");
}

}  // namespace
