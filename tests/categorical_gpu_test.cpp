// Categorical head: CUDA kernels (float) against the CPU reference (double), draw for draw and
// value for value, with sentinel-padded outputs; plus sampler statistics on the GPU at a large
// vocabulary, determinism, sharding and the no-value-checks conventions.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "common/math/numerics.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;
using test::TestRng;

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Case {
  std::int64_t batch, classes, generations;
};

void PrintTo(const Case& c, std::ostream* os) { *os << fmt::format("B={} C={} G={}", c.batch, c.classes, c.generations); }

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return fmt::format("B{}_C{}_G{}", info.param.batch, info.param.classes, info.param.generations);
}

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

std::vector<double> unnormalised_cdf(const double* row, std::int64_t classes) {
  double m = -kInf;
  for (std::int64_t j = 0; j < classes; ++j) m = std::max(m, row[j]);
  std::vector<double> cdf(static_cast<std::size_t>(classes));
  double run = 0;
  for (std::int64_t j = 0; j < classes; ++j) {
    if (row[j] != -kInf) run += std::exp(row[j] - m);
    cdf[static_cast<std::size_t>(j)] = run;
  }
  return cdf;
}

/// How far the float sampler may place a draw from the double reference's target t = u·Z: a
/// host emulation of the sampler's float arithmetic (tile sums, tile prefix, in-tile scan) on
/// these tests' inputs puts every mismatch within 1.7e-7·Z of a CDF boundary, also with expf off
/// by up to ±2 ulp (on the surrogate tests' inputs 3.5e-7·Z; 6.9e-7·Z even with sequential
/// instead of tree block sums), so 1e-6·Z leaves a margin; the former 1e-5·Z spanned several
/// classes at C = 2^18, where an average class is 4e-6·Z wide.
constexpr double kDrawWindow = 1e-6;
/// Classes narrower than this (times Z) may lie between the GPU's class and the reference's: they
/// are below the float sampler's resolution. On the surrogate tests' inputs the same emulation
/// steps over classes up to 1e-7·Z wide (the tail of a peaked row; at C = 2^18 about a quarter of
/// the classes are narrower than 1e-7·Z), so "the nearest unmasked neighbour" alone would fail a
/// correct kernel.
constexpr double kUnresolvedWidth = 2.5e-7;

/// The GPU class k is the reference class `ref`, or a neighbour of it on either side with
/// nothing between them but masked classes and classes narrower than kUnresolvedWidth·Z
/// (inclusive cdf, z = cdf.back()).
bool is_reference_or_neighbour(std::int64_t k, std::int64_t ref, const std::vector<double>& cdf) {
  const double z = cdf.back();
  for (std::int64_t j = std::min(k, ref) + 1; j < std::max(k, ref); ++j) {
    const double width = cdf[static_cast<std::size_t>(j)] - cdf[static_cast<std::size_t>(j - 1)];
    if (width > kUnresolvedWidth * z) return false;
  }
  return true;
}

/// GPU draws against reference draws: equal, or (float rounding at a CDF boundary) a neighbour of
/// the reference class (is_reference_or_neighbour) whose interval [cdf_{k-1}, cdf_k) lies within
/// kDrawWindow·Z of the reference target t = u·Z. Never a masked class.
void expect_draws_match(const std::vector<std::int32_t>& gpu, const std::vector<std::int32_t>& ref,
                        const std::vector<double>& logits, std::int64_t batch, std::int64_t classes,
                        std::int64_t generations, std::uint64_t seed, DrawKey key) {
  std::int64_t exact = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::vector<double> cdf = unnormalised_cdf(&logits[b * classes], classes);
    const double z = cdf.back();
    for (std::int64_t g = 0; g < generations; ++g) {
      const std::int64_t i = b * generations + g;
      const std::int32_t k = gpu[i];
      ASSERT_GE(k, 0) << "row " << b << " draw " << g;
      ASSERT_LT(k, classes) << "row " << b << " draw " << g;
      ASSERT_NE(logits[b * classes + k], -kInf) << "masked class drawn: row " << b << " draw " << g;
      if (k == ref[i]) {
        ++exact;
        continue;
      }
      const double u = math::categorical_uniform<double>(seed, static_cast<std::uint32_t>(key.step),
                                                         static_cast<std::uint32_t>(key.first_row + b),
                                                         static_cast<std::uint32_t>(g));
      const double t = u * z, window = kDrawWindow * z;
      const double lower = k == 0 ? 0.0 : cdf[static_cast<std::size_t>(k - 1)];
      const double upper = cdf[static_cast<std::size_t>(k)];
      EXPECT_TRUE(is_reference_or_neighbour(k, ref[i], cdf))
          << "row " << b << " draw " << g << ": gpu class " << k << " is not the reference class " << ref[i]
          << " nor its neighbour (a class wider than " << kUnresolvedWidth << "·Z lies between them)";
      EXPECT_TRUE(lower <= t + window && upper >= t - window)
          << "row " << b << " draw " << g << ": gpu class " << k << " [" << lower / z << ", " << upper / z
          << ") vs reference class " << ref[i] << " at t/Z = " << u;
    }
  }
  // Up to a few thousand classes, boundary cases are rare: at least 99.9% of the draws agree.
  // At 32k+ classes the average class is only ~Z/C wide (4e-6·Z at 2^18), so float rounding of
  // t = u·Z alone moves about one draw in a hundred across a boundary; the window and neighbour
  // checks above are then the real criterion, and the agreement bound only catches gross failures.
  const std::int64_t total = batch * generations;
  const double required = classes <= 4096 ? 0.999 : 0.95;
  EXPECT_GE(static_cast<double>(exact), std::floor(required * static_cast<double>(total)))
      << exact << " of " << total << " draws agree exactly";
}

class CategoricalGpu : public ::testing::TestWithParam<Case> {};

TEST_P(CategoricalGpu, MatchesReference) {
  D2R_REQUIRE_GPU();
  const auto [batch, classes, generations] = GetParam();
  constexpr std::uint64_t kSeed = 2024;
  TestRng rng(static_cast<std::uint64_t>(batch * 1000003 + classes * 31 + generations));
  const std::vector<double> logits = random_logits(rng, batch, classes);
  const std::vector<float> logits_f(logits.begin(), logits.end());
  Context gpu({.backend = Backend::cuda, .seed = kSeed});
  Context cpu({.backend = Backend::cpu, .seed = kSeed});
  GuardedMatrix<float> head_gpu(gpu, batch, classes);
  head_gpu.fill(logits_f);
  GuardedMatrix<double> head_ref(cpu, batch, classes);
  head_ref.fill(logits);
  const Categorical<float> cat_gpu{head_gpu.cview()};
  const Categorical<double> cat_ref{head_ref.cview()};
  const DrawKey key{.step = 12345, .first_row = 7};

  // ---- sample
  GuardedMatrix<std::int32_t> s_gpu(gpu, batch, generations), s_ref(cpu, batch, generations);
  sample(gpu, cat_gpu, generations, key, s_gpu.view());
  sample(cpu, cat_ref, generations, key, s_ref.view());
  const std::vector<std::int32_t> draws = s_gpu.values_checked();
  expect_draws_match(draws, s_ref.values_checked(), logits, batch, classes, generations, kSeed, key);
  if (HasFatalFailure()) return;
  GuardedMatrix<std::int32_t> s_again(gpu, batch, generations);
  sample(gpu, cat_gpu, generations, key, s_again.view());
  EXPECT_EQ(s_again.values_checked(), draws) << "sampling must be deterministic";

  // The GPU's draws are the indices for log_prob and backward on both sides.
  GuardedMatrix<std::int32_t> idx_ref(cpu, batch, generations);
  idx_ref.fill(draws);

  // ---- log_prob
  GuardedMatrix<float> lp_gpu(gpu, batch, generations);
  GuardedMatrix<double> lp_ref(cpu, batch, generations);
  log_prob(gpu, cat_gpu, s_gpu.cview(), lp_gpu.view());
  log_prob(cpu, cat_ref, idx_ref.cview(), lp_ref.view());
  {
    const std::vector<float> got = lp_gpu.values_checked();
    const std::vector<double> want = lp_ref.values_checked();
    for (std::size_t i = 0; i < want.size(); ++i) {
      ASSERT_TRUE(std::isfinite(want[i]));
      EXPECT_NEAR(got[i], want[i], 1e-5 * (1 + std::abs(want[i]))) << "element " << i;
      EXPECT_LE(got[i], 0.0f);
    }
  }

  // ---- entropy
  GuardedMatrix<float> h_gpu(gpu, 1, batch);
  GuardedMatrix<double> h_ref(cpu, 1, batch);
  entropy(gpu, cat_gpu, h_gpu.vector());
  entropy(cpu, cat_ref, h_ref.vector());
  const std::vector<double> h = h_ref.values_checked();
  {
    const std::vector<float> got = h_gpu.values_checked();
    for (std::int64_t b = 0; b < batch; ++b) EXPECT_NEAR(got[b], h[b], 1e-5 * (1 + h[b])) << "row " << b;
  }

  // ---- backward: both cotangents, then the entropy term alone
  const std::vector<double> c = rng.vector<double>(static_cast<std::size_t>(batch * generations), -1, 1);
  const std::vector<double> e = rng.vector<double>(static_cast<std::size_t>(batch), -1, 1);
  GuardedMatrix<float> c_gpu(gpu, batch, generations), e_gpu(gpu, 1, batch);
  c_gpu.fill(std::vector<float>(c.begin(), c.end()));
  e_gpu.fill(std::vector<float>(e.begin(), e.end()));
  std::vector<double> c_rounded(c.size()), e_rounded(e.size());
  for (std::size_t i = 0; i < c.size(); ++i) c_rounded[i] = static_cast<float>(c[i]);
  for (std::size_t i = 0; i < e.size(); ++i) e_rounded[i] = static_cast<float>(e[i]);
  GuardedMatrix<double> c_ref(cpu, batch, generations), e_ref(cpu, 1, batch);
  c_ref.fill(c_rounded);
  e_ref.fill(e_rounded);
  const VectorView<const float> e_gpu_view{e_gpu.cview().data, batch};
  const VectorView<const double> e_ref_view{e_ref.cview().data, batch};

  for (const bool with_log_prob : {true, false}) {
    SCOPED_TRACE(with_log_prob ? "d_log_prob and d_entropy" : "d_entropy only");
    GuardedMatrix<float> g_gpu(gpu, batch, classes);
    GuardedMatrix<double> g_ref(cpu, batch, classes);
    backward(gpu, cat_gpu, with_log_prob ? s_gpu.cview() : MatrixView<const std::int32_t>{},
             with_log_prob ? c_gpu.cview() : MatrixView<const float>{}, e_gpu_view,
             CategoricalGrad<float>{g_gpu.view()});
    backward(cpu, cat_ref, with_log_prob ? idx_ref.cview() : MatrixView<const std::int32_t>{},
             with_log_prob ? c_ref.cview() : MatrixView<const double>{}, e_ref_view,
             CategoricalGrad<double>{g_ref.view()});
    const std::vector<float> got = g_gpu.values_checked();
    const std::vector<double> want = g_ref.values_checked();
    // Per-element scale of the terms that make up the gradient (so that tiny entries of large
    // vocabularies are checked relative to their own size, not to the largest entry).
    std::int64_t worst = -1;
    double worst_ratio = 0, largest = 0;
    for (std::int64_t b = 0; b < batch; ++b) {
      double c_abs = 0;
      std::vector<double> at_class(static_cast<std::size_t>(classes), 0.0);
      if (with_log_prob) {
        for (std::int64_t g = 0; g < generations; ++g) {
          c_abs += std::abs(c_rounded[b * generations + g]);
          at_class[static_cast<std::size_t>(draws[b * generations + g])] += std::abs(c_rounded[b * generations + g]);
        }
      }
      const double lse = [&] {
        double m = -kInf, s = 0;
        for (std::int64_t j = 0; j < classes; ++j) m = std::max(m, logits[b * classes + j]);
        for (std::int64_t j = 0; j < classes; ++j) s += std::exp(logits[b * classes + j] - m);
        return m + std::log(s);
      }();
      for (std::int64_t j = 0; j < classes; ++j) {
        const std::int64_t i = b * classes + j;
        const double x = logits[i];
        if (x == -kInf) {
          EXPECT_EQ(got[i], 0.0f) << "masked class " << j << " of row " << b;
          continue;
        }
        const double lp = x - lse, p = std::exp(lp);
        const double scale = p * (c_abs + std::abs(e_rounded[b]) * (1 + std::abs(lp) + h[b])) + at_class[j];
        const double ratio = std::abs(got[i] - want[i]) / (1e-4 * scale + 1e-30);
        largest = std::max(largest, std::abs(want[i]));
        if (!(ratio <= worst_ratio)) {
          worst_ratio = ratio;
          worst = i;
        }
      }
    }
    EXPECT_GT(largest, 0.0);
    EXPECT_LE(worst_ratio, 1.0) << "worst element " << worst << ": gpu " << got[worst] << " reference " << want[worst];
    // Deterministic: a second run is bitwise identical.
    GuardedMatrix<float> g_again(gpu, batch, classes);
    backward(gpu, cat_gpu, with_log_prob ? s_gpu.cview() : MatrixView<const std::int32_t>{},
             with_log_prob ? c_gpu.cview() : MatrixView<const float>{}, e_gpu_view,
             CategoricalGrad<float>{g_again.view()});
    const std::vector<float> again = g_again.values_checked();
    EXPECT_EQ(std::memcmp(again.data(), got.data(), got.size() * sizeof(float)), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, CategoricalGpu,
                         ::testing::Values(Case{1, 2, 1}, Case{3, 2, 300}, Case{7, 3, 5}, Case{5, 64, 50},
                                           Case{1, 512, 300}, Case{3, 513, 5}, Case{1, 1000, 50},
                                           Case{5, 1000, 300}, Case{1, 2048, 3}, Case{3, 2049, 50},
                                           Case{2, 2049, 300}, Case{3, 4096, 7}, Case{1, 32000, 5},
                                           Case{4, 32000, 50}, Case{2, 131072, 300}, Case{1, 262144, 1},
                                           Case{3, 262144, 50}, Case{2, 262144, 300}),
                         case_name);

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
