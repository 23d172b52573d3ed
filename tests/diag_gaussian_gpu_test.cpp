// The diagonal-Gaussian sampler's moments on the device (statistics: not a case of the registry).
// The comparisons against the CPU reference (double) on the same Philox keys are cases of
// host/checks/cases/distributions.cpp (strided and guarded; log_prob, entropy and backward at the
// tested side's draws; backward with one cotangent only): tests/checks_gpu_test.cpp, `d2r validate`.
#include <gtest/gtest.h>

#include <cmath>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

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
