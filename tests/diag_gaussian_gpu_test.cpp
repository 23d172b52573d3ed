// The diagonal-Gaussian CUDA kernels against the CPU reference (double) on the same Philox keys.
#include <gtest/gtest.h>

#include <cmath>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::GuardedMatrix;
using d2r::test::TestRng;

struct DiagCase {
  std::int64_t B, n, G;
  bool shared;
};
std::ostream& operator<<(std::ostream& os, const DiagCase& c) {
  return os << "B" << c.B << "_n" << c.n << "_G" << c.G << (c.shared ? "_shared" : "_per_row");
}

class DiagGaussianGpu : public ::testing::TestWithParam<DiagCase> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

TEST_P(DiagGaussianGpu, MatchesReference) {
  const auto [B, n, G, shared] = GetParam();
  const std::int64_t S = shared ? 1 : B;
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = 2024});
  d2r::Context cpu({.backend = d2r::Backend::cpu, .seed = 2024});
  TestRng rng(static_cast<std::uint64_t>(B * 1000 + n * 10 + G));
  const auto mean_f = rng.vector<float>(B * n, -2, 2), log_std_f = rng.vector<float>(S * n, -1, 1);
  const std::vector<double> mean(mean_f.begin(), mean_f.end()), log_std(log_std_f.begin(), log_std_f.end());
  const auto c_f = rng.vector<float>(B * G, -1, 1), e_f = rng.vector<float>(B, -1, 1);
  const std::vector<double> c(c_f.begin(), c_f.end()), e(e_f.begin(), e_f.end());

  GuardedMatrix<float> d_mean(gpu, B, n), d_log_std(gpu, S, n), d_samples(gpu, B * G, n), d_logp(gpu, B, G),
      d_entropy(gpu, 1, B), d_c(gpu, B, G), d_e(gpu, 1, B), d_gmean(gpu, B, n), d_gls(gpu, S, n);
  d_mean.fill(mean_f);
  d_log_std.fill(log_std_f);
  d_c.fill(c_f);
  d_e.fill(e_f);
  const d2r::DiagGaussian<float> head{d_mean.cview(), d_log_std.cview()};
  const d2r::DiagGaussian<double> ref_head{d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(log_std.data(), S, n)};

  // Sampling: same keys, so the same draws up to float rounding.
  d2r::sample(gpu, head, G, {.step = 17, .first_row = 5}, d_samples.view());
  std::vector<double> ref_samples(B * G * n);
  d2r::sample(cpu, ref_head, G, {.step = 17, .first_row = 5}, d2r::matrix_view(ref_samples.data(), B * G, n));
  const std::vector<float> samples = d_samples.values_checked();
  D2R_EXPECT_CLOSE(samples, ref_samples, 2e-5, 2e-5);

  // log_prob / entropy / backward on the GPU's own samples (fed to the reference in double).
  const std::vector<double> y(samples.begin(), samples.end());
  d2r::log_prob(gpu, head, d_samples.cview(), d_logp.view());
  d2r::entropy(gpu, head, d_entropy.vector());
  d2r::backward(gpu, head, d_samples.cview(), d_c.cview(), d2r::VectorView<const float>{d_e.cview().data, B},
                d2r::DiagGaussianGrad<float>{d_gmean.view(), d_gls.view()});
  std::vector<double> ref_logp(B * G), ref_entropy(B), ref_gmean(B * n), ref_gls(S * n);
  d2r::log_prob(cpu, ref_head, d2r::matrix_view(y.data(), B * G, n), d2r::matrix_view(ref_logp.data(), B, G));
  d2r::entropy(cpu, ref_head, d2r::vector_view(ref_entropy.data(), B));
  d2r::backward(cpu, ref_head, d2r::matrix_view(y.data(), B * G, n), d2r::matrix_view(c.data(), B, G),
                d2r::vector_view(e.data(), B),
                d2r::DiagGaussianGrad<double>{d2r::matrix_view(ref_gmean.data(), B, n), d2r::matrix_view(ref_gls.data(), S, n)});
  const double scale_n = static_cast<double>(n), scale_g = static_cast<double>(G * (shared ? B : 1));
  D2R_EXPECT_CLOSE(d_logp.values_checked(), ref_logp, 1e-5, 2e-6 * scale_n);
  D2R_EXPECT_CLOSE(d_entropy.values_checked(), ref_entropy, 1e-6, 1e-6 * scale_n);
  D2R_EXPECT_CLOSE(d_gmean.values_checked(), ref_gmean, 1e-4, 1e-5 * G);
  D2R_EXPECT_CLOSE(d_gls.values_checked(), ref_gls, 1e-4, 1e-5 * scale_g);
  double norm = 0;
  for (double v : ref_gls) norm += std::abs(v);
  EXPECT_GT(norm, 0.0);
}

/// backward with one cotangent only, each against the reference: d_entropy alone (no samples,
/// no d_log_prob: grad.mean is 0 and grad.log_std is d_entropy, summed over rows when shared),
/// and d_log_prob alone (empty d_entropy).
TEST_P(DiagGaussianGpu, BackwardWithOneCotangentOnly) {
  const auto [B, n, G, shared] = GetParam();
  const std::int64_t S = shared ? 1 : B;
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = 2025});
  d2r::Context cpu({.backend = d2r::Backend::cpu, .seed = 2025});
  TestRng rng(static_cast<std::uint64_t>(B * 1009 + n * 13 + G));
  const auto mean_f = rng.vector<float>(B * n, -2, 2), log_std_f = rng.vector<float>(S * n, -1, 1);
  const std::vector<double> mean(mean_f.begin(), mean_f.end()), log_std(log_std_f.begin(), log_std_f.end());
  const auto c_f = rng.vector<float>(B * G, -1, 1), e_f = rng.vector<float>(B, -1, 1);
  const std::vector<double> c(c_f.begin(), c_f.end()), e(e_f.begin(), e_f.end());

  GuardedMatrix<float> d_mean(gpu, B, n), d_log_std(gpu, S, n), d_samples(gpu, B * G, n), d_c(gpu, B, G), d_e(gpu, 1, B);
  d_mean.fill(mean_f);
  d_log_std.fill(log_std_f);
  d_c.fill(c_f);
  d_e.fill(e_f);
  const d2r::DiagGaussian<float> head{d_mean.cview(), d_log_std.cview()};
  const d2r::DiagGaussian<double> ref_head{d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(log_std.data(), S, n)};
  d2r::sample(gpu, head, G, {.step = 3}, d_samples.view());
  const std::vector<float> samples = d_samples.values_checked();
  const std::vector<double> y(samples.begin(), samples.end());
  const double scale_g = static_cast<double>(G * (shared ? B : 1));

  for (const bool entropy_only : {true, false}) {
    SCOPED_TRACE(entropy_only ? "d_entropy only (no samples)" : "d_log_prob only");
    GuardedMatrix<float> d_gmean(gpu, B, n), d_gls(gpu, S, n);
    std::vector<double> ref_gmean(B * n), ref_gls(S * n);
    const d2r::DiagGaussianGrad<double> ref_grad{d2r::matrix_view(ref_gmean.data(), B, n),
                                                 d2r::matrix_view(ref_gls.data(), S, n)};
    if (entropy_only) {
      d2r::backward(gpu, head, d2r::MatrixView<const float>{}, d2r::MatrixView<const float>{},
                    d2r::VectorView<const float>{d_e.cview().data, B}, d2r::DiagGaussianGrad<float>{d_gmean.view(), d_gls.view()});
      d2r::backward(cpu, ref_head, d2r::MatrixView<const double>{}, d2r::MatrixView<const double>{},
                    d2r::vector_view(e.data(), B), ref_grad);
    } else {
      d2r::backward(gpu, head, d_samples.cview(), d_c.cview(), d2r::VectorView<const float>{},
                    d2r::DiagGaussianGrad<float>{d_gmean.view(), d_gls.view()});
      d2r::backward(cpu, ref_head, d2r::matrix_view(y.data(), B * G, n), d2r::matrix_view(c.data(), B, G),
                    d2r::VectorView<const double>{}, ref_grad);
    }
    double norm = 0;
    for (double v : ref_gls) norm += std::abs(v);
    EXPECT_GT(norm, 0.0);
    D2R_EXPECT_CLOSE(d_gmean.values_checked(), ref_gmean, 1e-4, 1e-5 * G);
    D2R_EXPECT_CLOSE(d_gls.values_checked(), ref_gls, 1e-4, 1e-5 * scale_g);
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, DiagGaussianGpu,
                         ::testing::Values(DiagCase{1, 1, 1, false}, DiagCase{1, 1, 1, true}, DiagCase{3, 5, 7, false},
                                           DiagCase{7, 2, 5, true}, DiagCase{33, 17, 5, false},
                                           DiagCase{257, 17, 5, true}, DiagCase{129, 64, 16, false},
                                           DiagCase{1000, 33, 50, true}, DiagCase{2, 1000, 3, false},
                                           DiagCase{4099, 6, 2, true}),
                         [](const auto& info) {
                           std::ostringstream os;
                           os << info.param;
                           return os.str();
                         });

TEST(DiagGaussianGpuStats, SampleMomentsOnDevice) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = 5});
  const std::int64_t n = 3, G = 400000;
  const std::vector<float> mean{1, -2, 0.5f}, log_std{0, 0.5f, -1};
  d2r::Buffer<float> d_mean(gpu, std::span<const float>(mean)), d_ls(gpu, std::span<const float>(log_std));
  d2r::Buffer<float> d_y(gpu, G * n);
  d2r::sample(gpu, d2r::DiagGaussian<float>{d_mean.matrix(1, n), d_ls.matrix(1, n)}, G, {}, d_y.matrix(G, n));
  const auto y = d_y.to_host();
  for (std::int64_t d = 0; d < n; ++d) {
    double s1 = 0, s2 = 0;
    for (std::int64_t g = 0; g < G; ++g) s1 += y[g * n + d];
    const double m = s1 / G;
    for (std::int64_t g = 0; g < G; ++g) s2 += (y[g * n + d] - m) * (y[g * n + d] - m);
    const double sigma2 = std::exp(2.0 * log_std[d]);
    EXPECT_NEAR(m, mean[d], 4 * std::sqrt(sigma2 / G));
    EXPECT_NEAR(s2 / (G - 1), sigma2, 4 * sigma2 * std::sqrt(2.0 / G));
  }
}

}  // namespace
