// Categorical head on the GPU where a case of the registry does not reach (stays here): sampler
// statistics at a large vocabulary, a shard of rows drawing what the whole batch draws, and the
// no-value-checks conventions (a row without a distribution draws -1; NaN written, never the
// sentinel, for out-of-range indices). The comparison against the CPU reference in double (draws
// under the 1e-6·Z window and neighbour rule, log_prob, entropy and backward at the tested draws,
// per-element gradient scale, masked classes exactly 0, determinism; its 18 shapes up to
// C = 2^18) is the "categorical strided" cases of host/checks/cases/distributions.cpp
// (tests/checks_gpu_test.cpp, `d2r validate`).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;
using test::TestRng;

constexpr double kInf = std::numeric_limits<double>::infinity();

/// Float-representable logits in [-4, 4], about 10% masked with -inf, never a whole row.
std::vector<double> random_logits(TestRng& rng, std::int64_t rows, std::int64_t classes) {
  std::vector<double> v(static_cast<std::size_t>(rows * classes));
  for (std::int64_t r = 0; r < rows; ++r) {
    bool any = false;
    for (std::int64_t j = 0; j < classes; ++j) {
      const bool masked = rng.uniform(0, 1) < 0.1;
      v[r * classes + j] = masked ? -kInf : static_cast<double>(static_cast<float>(rng.uniform(-4, 4)));
      any = any || !masked;
    }
    if (!any) v[r * classes + classes / 2] = 1.0;
  }
  return v;
}

TEST(CategoricalGpuStatistics, HistogramAtLargeVocabulary) {
  D2R_REQUIRE_GPU();
  // 128000 classes: ten heavy classes spread over tiles (some at tile edges), masked classes and
  // runs, and a background of light classes counted as one bin.
  const std::int64_t classes = 128000, rows = 64, generations = 4096;
  std::vector<double> row(static_cast<std::size_t>(classes), 0.0);
  const std::vector<std::int64_t> heavy{0, 1, 2047, 2048, 2049, 4095, 50000, 64000, 100001, 127999};
  for (std::size_t i = 0; i < heavy.size(); ++i) row[static_cast<std::size_t>(heavy[i])] = 7.5 + 0.25 * i;
  for (std::int64_t j : {5, 2046, 6000, 127998}) row[static_cast<std::size_t>(j)] = -kInf;
  for (std::int64_t j = 69000; j < 71800; ++j) row[static_cast<std::size_t>(j)] = -kInf;  // covers tile [69632, 71680)
  std::vector<float> logits;
  for (std::int64_t r = 0; r < rows; ++r) logits.insert(logits.end(), row.begin(), row.end());

  Context gpu({.backend = Backend::cuda, .seed = 99});
  GuardedMatrix<float> head(gpu, rows, classes);
  head.fill(logits);
  GuardedMatrix<std::int32_t> out(gpu, rows, generations);
  sample(gpu, Categorical<float>{head.cview()}, generations, {.step = 1}, out.view());
  const std::vector<std::int32_t> draws = out.values_checked();

  double m = -kInf, z = 0;
  for (double x : row) m = std::max(m, x);
  for (double x : row) z += std::exp(x - m);
  std::vector<double> p_heavy;
  double p_background = 1;
  for (std::int64_t j : heavy) {
    p_heavy.push_back(std::exp(row[static_cast<std::size_t>(j)] - m) / z);
    p_background -= p_heavy.back();
  }
  std::vector<double> count(heavy.size() + 1, 0.0);
  for (std::int32_t k : draws) {
    ASSERT_GE(k, 0);
    ASSERT_LT(k, classes);
    ASSERT_NE(row[static_cast<std::size_t>(k)], -kInf) << "masked class " << k << " drawn";
    const auto it = std::find(heavy.begin(), heavy.end(), k);
    count[static_cast<std::size_t>(it - heavy.begin())] += 1;
  }
  const double n = static_cast<double>(rows * generations);
  std::vector<double> p = p_heavy;
  p.push_back(p_background);
  const double min_p = *std::min_element(p.begin(), p.end());
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double tol = 4 * std::sqrt(p[i] * (1 - p[i]) / n);
    EXPECT_LT(tol, 0.5 * min_p) << "test tolerance too high to detect errors";
    EXPECT_NEAR(count[i] / n, p[i], tol) << (i < heavy.size() ? fmt::format("class {}", heavy[i]) : "background");
  }
}

TEST(CategoricalGpuSharding, ShardOfRowsDrawsWhatTheWholeBatchDraws) {
  D2R_REQUIRE_GPU();
  TestRng rng(31);
  const std::int64_t rows = 9, classes = 5000, generations = 70;
  const std::vector<double> logits = random_logits(rng, rows, classes);
  Context gpu({.backend = Backend::cuda, .seed = 5});
  GuardedMatrix<float> head(gpu, rows, classes);
  head.fill(std::vector<float>(logits.begin(), logits.end()));
  GuardedMatrix<std::int32_t> full(gpu, rows, generations), part(gpu, 4, generations);
  sample(gpu, Categorical<float>{head.cview()}, generations, {.step = 8}, full.view());
  sample(gpu, Categorical<float>{head.cview().row_range(3, 4)}, generations, {.step = 8, .first_row = 3}, part.view());
  const std::vector<std::int32_t> all = full.values_checked();
  EXPECT_EQ(part.values_checked(), std::vector<std::int32_t>(all.begin() + 3 * generations, all.begin() + 7 * generations));
}

TEST(CategoricalGpuConventions, NoDistributionAndOutOfRangeIndicesWithChecksOff) {
  D2R_REQUIRE_GPU();
  for (const std::int64_t classes : {std::int64_t{6}, std::int64_t{3000}}) {
    SCOPED_TRACE(fmt::format("C = {}", classes));
    const std::int64_t rows = 3, generations = 4;
    std::vector<float> logits(static_cast<std::size_t>(rows * classes), 0.5f);
    for (std::int64_t j = 0; j < classes; ++j) logits[classes + j] = -std::numeric_limits<float>::infinity();
    logits[2 * classes + 1] = 2.0f;
    Context gpu({.backend = Backend::cuda, .seed = 1, .value_checks = ValueChecks::none});
    Context cpu({.backend = Backend::cpu, .seed = 1, .value_checks = ValueChecks::none});
    GuardedMatrix<float> head(gpu, rows, classes);
    head.fill(logits);
    GuardedMatrix<float> head_cpu(cpu, rows, classes);
    head_cpu.fill(logits);
    const std::vector<std::int32_t> idx{0, -1, static_cast<std::int32_t>(classes), 1,  //
                                        0, 1, 2, 3,                                  //
                                        1, 1, -5, static_cast<std::int32_t>(classes) + 7};
    GuardedMatrix<std::int32_t> samples(gpu, rows, generations), samples_cpu(cpu, rows, generations);
    samples.fill(idx);
    samples_cpu.fill(idx);
    GuardedMatrix<std::int32_t> drawn(gpu, rows, generations);
    GuardedMatrix<float> lp(gpu, rows, generations), h(gpu, 1, rows), grad(gpu, rows, classes), dlp(gpu, rows, generations);
    GuardedMatrix<float> lp_cpu(cpu, rows, generations), h_cpu(cpu, 1, rows), grad_cpu(cpu, rows, classes),
        dlp_cpu(cpu, rows, generations);
    const std::vector<float> c{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    dlp.fill(c);
    dlp_cpu.fill(c);
    const Categorical<float> cat{head.cview()}, cat_cpu{head_cpu.cview()};
    sample(gpu, cat, generations, {}, drawn.view());
    log_prob(gpu, cat, samples.cview(), lp.view());
    entropy(gpu, cat, h.vector());
    backward(gpu, cat, samples.cview(), dlp.cview(), VectorView<const float>{}, CategoricalGrad<float>{grad.view()});
    log_prob(cpu, cat_cpu, samples_cpu.cview(), lp_cpu.view());
    entropy(cpu, cat_cpu, h_cpu.vector());
    backward(cpu, cat_cpu, samples_cpu.cview(), dlp_cpu.cview(), VectorView<const float>{},
             CategoricalGrad<float>{grad_cpu.view()});
    const std::vector<std::int32_t> d = drawn.values_checked();
    for (std::int64_t g = 0; g < generations; ++g) {
      EXPECT_EQ(d[generations + g], -1) << "a row without a distribution draws -1";
      EXPECT_GE(d[g], 0);
      EXPECT_LT(d[g], classes);
      EXPECT_GE(d[2 * generations + g], 0);
      EXPECT_LT(d[2 * generations + g], classes);
    }
    // NaN written by the kernel: the sentinel (a NaN too) of an element never written fails.
    const std::vector<float> lpv = lp.values_checked(), hv = h.values_checked();
    for (const std::int64_t i : {1, 2, 10, 11}) EXPECT_TRUE(test::is_written_nan(lpv[i])) << "log_prob " << i;
    for (std::int64_t g = 0; g < generations; ++g)
      EXPECT_TRUE(test::is_written_nan(lpv[generations + g])) << "log_prob of the row without a distribution, " << g;
    EXPECT_TRUE(test::is_written_nan(hv[1]));
    EXPECT_TRUE(std::isfinite(hv[0]) && std::isfinite(hv[2]));
    // Same values as the reference, NaN where it has NaN (neither side may be the sentinel).
    const std::vector<float> lp_want = lp_cpu.values_checked(), h_want = h_cpu.values_checked();
    const std::vector<float> g_got = grad.values_checked(), g_want = grad_cpu.values_checked();
    D2R_EXPECT_CLOSE(lpv, lp_want, 1e-5, 1e-5);
    D2R_EXPECT_CLOSE(hv, h_want, 1e-5, 1e-5);
    D2R_EXPECT_CLOSE(g_got, g_want, 1e-4, 1e-5);
  }
}

}  // namespace
}  // namespace d2r
