// The diagonal-Gaussian head on the cpu backend (the reference, in double): closed forms,
// finite differences, sampler statistics, Philox keying and sharding.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::TestRng;
constexpr double kPi = 3.14159265358979323846;

struct Fixture {
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 1234}};
};

d2r::DiagGaussian<double> head_of(std::vector<double>& mean, std::vector<double>& log_std, std::int64_t B,
                                  std::int64_t n, bool shared) {
  return {d2r::matrix_view<const double>(mean.data(), B, n),
          d2r::matrix_view<const double>(log_std.data(), shared ? 1 : B, n)};
}

TEST(DiagGaussianRef, LogProbMatchesProductOfUnivariateDensities) {
  Fixture f;
  TestRng rng(1);
  const std::int64_t B = 3, n = 4, G = 2;
  auto mean = rng.vector<double>(B * n, -2, 2), log_std = rng.vector<double>(B * n, -1, 1);
  auto y = rng.vector<double>(B * G * n, -3, 3);
  std::vector<double> out(B * G);
  d2r::log_prob(f.ctx, head_of(mean, log_std, B, n, false), d2r::matrix_view<const double>(y.data(), B * G, n),
                d2r::matrix_view(out.data(), B, G));
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t g = 0; g < G; ++g) {
      double density = 1;
      for (std::int64_t d = 0; d < n; ++d) {
        const double sigma = std::exp(log_std[b * n + d]), diff = y[(b * G + g) * n + d] - mean[b * n + d];
        density *= std::exp(-diff * diff / (2 * sigma * sigma)) / (sigma * std::sqrt(2 * kPi));
      }
      EXPECT_NEAR(out[b * G + g], std::log(density), 1e-10);
    }
  }
}

TEST(DiagGaussianRef, EntropyMatchesClosedFormAndMonteCarlo) {
  Fixture f;
  const std::int64_t n = 3, G = 200000;
  std::vector<double> mean{0.5, -1, 2}, log_std{-0.3, 0.2, 0.7};
  const auto head = head_of(mean, log_std, 1, n, false);
  std::vector<double> H(1);
  d2r::entropy(f.ctx, head, d2r::vector_view(H.data(), 1));
  double closed = 0;
  for (double s : log_std) closed += 0.5 * std::log(2 * kPi * std::exp(1.0) * std::exp(2 * s));
  EXPECT_NEAR(H[0], closed, 1e-12);
  // -E[log p] over samples estimates H; the std of -log p is sqrt(n/2) for a Gaussian.
  std::vector<double> y(G * n), logp(G);
  d2r::sample(f.ctx, head, G, {.step = 3}, d2r::matrix_view(y.data(), G, n));
  d2r::log_prob(f.ctx, head, d2r::matrix_view<const double>(y.data(), G, n), d2r::matrix_view(logp.data(), 1, G));
  double mc = 0;
  for (double v : logp) mc -= v / G;
  EXPECT_NEAR(mc, H[0], 4 * std::sqrt(n / 2.0) / std::sqrt(double(G)));
}

TEST(DiagGaussianRef, SampleMomentsMatchWithinFourStandardErrors) {
  Fixture f;
  const std::int64_t B = 2, n = 3, G = 100000;
  std::vector<double> mean{0, 1, -2, 3, 0.5, 7}, log_std{0, -1, 0.5, 1, -0.5, 0.2};
  std::vector<double> y(B * G * n);
  d2r::sample(f.ctx, head_of(mean, log_std, B, n, false), G, {.step = 0}, d2r::matrix_view(y.data(), B * G, n));
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t d = 0; d < n; ++d) {
      double s1 = 0, s2 = 0;
      for (std::int64_t g = 0; g < G; ++g) s1 += y[(b * G + g) * n + d];
      const double m = s1 / G;
      for (std::int64_t g = 0; g < G; ++g) s2 += std::pow(y[(b * G + g) * n + d] - m, 2);
      const double var = s2 / (G - 1), sigma2 = std::exp(2 * log_std[b * n + d]);
      EXPECT_NEAR(m, mean[b * n + d], 4 * std::sqrt(sigma2 / G)) << "b " << b << " d " << d;
      EXPECT_NEAR(var, sigma2, 4 * sigma2 * std::sqrt(2.0 / G)) << "b " << b << " d " << d;
    }
  }
}

TEST(DiagGaussianRef, SharedLogStdBroadcastsToEveryRow) {
  Fixture f;
  const std::int64_t B = 3, n = 2, G = 4;
  std::vector<double> mean{0, 1, 2, 3, 4, 5}, shared{0.3, -0.2}, per_row{0.3, -0.2, 0.3, -0.2, 0.3, -0.2};
  std::vector<double> a(B * G * n), b(B * G * n);
  d2r::sample(f.ctx, head_of(mean, shared, B, n, true), G, {.step = 9}, d2r::matrix_view(a.data(), B * G, n));
  d2r::sample(f.ctx, head_of(mean, per_row, B, n, false), G, {.step = 9}, d2r::matrix_view(b.data(), B * G, n));
  EXPECT_EQ(a, b);
}

TEST(DiagGaussianRef, DrawsAreKeyedBySeedStepAndGlobalRow) {
  Fixture f;
  const std::int64_t B = 6, n = 5, G = 3;
  TestRng rng(2);
  auto mean = rng.vector<double>(B * n, -1, 1), log_std = rng.vector<double>(B * n, -1, 1);
  std::vector<double> full(B * G * n), again(B * G * n), other_step(B * G * n);
  const auto head = head_of(mean, log_std, B, n, false);
  d2r::sample(f.ctx, head, G, {.step = 4}, d2r::matrix_view(full.data(), B * G, n));
  d2r::sample(f.ctx, head, G, {.step = 4}, d2r::matrix_view(again.data(), B * G, n));
  d2r::sample(f.ctx, head, G, {.step = 5}, d2r::matrix_view(other_step.data(), B * G, n));
  EXPECT_EQ(full, again);
  for (std::size_t i = 0; i < full.size(); ++i) EXPECT_NE(full[i], other_step[i]) << i;
  // A shard of rows [2, 5) drawn on its own continues the whole batch's stream.
  const std::int64_t r0 = 2, rows = 3;
  std::vector<double> shard(rows * G * n);
  d2r::DiagGaussian<double> shard_head{head.mean.row_range(r0, rows), head.log_std.row_range(r0, rows)};
  d2r::sample(f.ctx, shard_head, G, {.step = 4, .first_row = r0}, d2r::matrix_view(shard.data(), rows * G, n));
  for (std::size_t i = 0; i < shard.size(); ++i) EXPECT_EQ(shard[i], full[r0 * G * n + i]) << i;
  // Another seed gives another stream.
  f.ctx.set_seed(99);
  d2r::sample(f.ctx, head, G, {.step = 4}, d2r::matrix_view(again.data(), B * G, n));
  EXPECT_NE(full, again);
}

// f(μ, s) = Σ_bg c_bg log p(y_bg) + Σ_b e_b H_b, differentiated by central differences.
void check_backward_against_finite_differences(bool shared) {
  Fixture f;
  const std::int64_t B = 3, n = 4, G = 5;
  TestRng rng(shared ? 7 : 8);
  auto mean = rng.vector<double>(B * n, -1, 1);
  auto log_std = rng.vector<double>((shared ? 1 : B) * n, -0.5, 0.5);
  auto y = rng.vector<double>(B * G * n, -2, 2);
  auto c = rng.vector<double>(B * G, -1, 1), e = rng.vector<double>(B, -1, 1);
  const auto objective = [&]() {
    std::vector<double> logp(B * G), H(B);
    const auto head = head_of(mean, log_std, B, n, shared);
    d2r::log_prob(f.ctx, head, d2r::matrix_view<const double>(y.data(), B * G, n), d2r::matrix_view(logp.data(), B, G));
    d2r::entropy(f.ctx, head, d2r::vector_view(H.data(), B));
    double total = 0;
    for (std::int64_t i = 0; i < B * G; ++i) total += c[i] * logp[i];
    for (std::int64_t b = 0; b < B; ++b) total += e[b] * H[b];
    return total;
  };
  std::vector<double> g_mean(B * n), g_log_std(log_std.size());
  d2r::backward(f.ctx, head_of(mean, log_std, B, n, shared), d2r::matrix_view<const double>(y.data(), B * G, n),
                d2r::matrix_view<const double>(c.data(), B, G), d2r::vector_view<const double>(e.data(), B),
                d2r::DiagGaussianGrad<double>{d2r::matrix_view(g_mean.data(), B, n),
                                              d2r::matrix_view(g_log_std.data(), shared ? 1 : B, n)});
  const auto fd = [&](std::vector<double>& param, std::size_t i) {
    const double h = 1e-6, saved = param[i];
    param[i] = saved + h;
    const double up = objective();
    param[i] = saved - h;
    const double down = objective();
    param[i] = saved;
    return (up - down) / (2 * h);
  };
  double norm = 0;
  for (std::size_t i = 0; i < mean.size(); ++i) {
    EXPECT_NEAR(g_mean[i], fd(mean, i), 1e-6 * (1 + std::abs(g_mean[i]))) << "mean " << i;
    norm += std::abs(g_mean[i]);
  }
  for (std::size_t i = 0; i < log_std.size(); ++i) {
    EXPECT_NEAR(g_log_std[i], fd(log_std, i), 1e-6 * (1 + std::abs(g_log_std[i]))) << "log_std " << i;
    norm += std::abs(g_log_std[i]);
  }
  EXPECT_GT(norm, 0.1) << "the gradient must not be trivially zero";
}

TEST(DiagGaussianRef, BackwardMatchesFiniteDifferencesPerRowLogStd) { check_backward_against_finite_differences(false); }
TEST(DiagGaussianRef, BackwardMatchesFiniteDifferencesSharedLogStd) { check_backward_against_finite_differences(true); }

TEST(DiagGaussianRef, BackwardWithEntropyOnlyIgnoresSamples) {
  Fixture f;
  std::vector<double> mean{0, 0}, log_std{0.1, 0.2}, e{2.5}, g_mean(2, -1), g_log_std(2, -1);
  d2r::backward(f.ctx, head_of(mean, log_std, 1, 2, false), {}, {}, d2r::vector_view<const double>(e.data(), 1),
                d2r::DiagGaussianGrad<double>{d2r::matrix_view(g_mean.data(), 1, 2), d2r::matrix_view(g_log_std.data(), 1, 2)});
  EXPECT_EQ(g_mean, (std::vector<double>{0, 0}));
  EXPECT_EQ(g_log_std, (std::vector<double>{2.5, 2.5}));  // ∂H/∂s_d = 1
}

TEST(DiagGaussianRef, FloatBackendAgreesWithDoubleReference) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 77});
  const std::int64_t B = 4, n = 7, G = 9;
  TestRng rng(3);
  auto mean = rng.vector<double>(B * n, -1, 1), log_std = rng.vector<double>(B * n, -1, 1);
  std::vector<float> mean_f(mean.begin(), mean.end()), log_std_f(log_std.begin(), log_std.end());
  for (std::size_t i = 0; i < mean.size(); ++i) mean[i] = mean_f[i], log_std[i] = log_std_f[i];
  std::vector<double> yd(B * G * n);
  std::vector<float> yf(B * G * n);
  d2r::sample(ctx, head_of(mean, log_std, B, n, false), G, {.step = 1}, d2r::matrix_view(yd.data(), B * G, n));
  d2r::sample(ctx, d2r::DiagGaussian<float>{d2r::matrix_view<const float>(mean_f.data(), B, n),
                                            d2r::matrix_view<const float>(log_std_f.data(), B, n)},
              G, {.step = 1}, d2r::matrix_view(yf.data(), B * G, n));
  D2R_EXPECT_CLOSE(yf, yd, 1e-5, 1e-5);
}

}  // namespace
