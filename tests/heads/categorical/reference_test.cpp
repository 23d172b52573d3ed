// Categorical head on the cpu backend (the reference), checked against independent computations:
// closed forms, central finite differences, an independent inverse-CDF oracle on the documented
// Philox uniform, sampler statistics and the Philox keying contract.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <vector>

#include "d2r/d2r.hpp"
#include "common/math/numerics.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;
using test::TestRng;

constexpr double kInf = std::numeric_limits<double>::infinity();

Context cpu_context(std::uint64_t seed = 0, ValueChecks checks = ValueChecks::full) {
  return Context({.backend = Backend::cpu, .seed = seed, .value_checks = checks});
}

// ---------------------------------------------------------------- independent helpers
/// Softmax probabilities of one row, written independently of d2r (−inf ⇒ 0).
std::vector<double> softmax(const std::vector<double>& row) {
  double m = -kInf;
  for (double x : row) m = std::max(m, x);
  std::vector<double> p(row.size(), 0.0);
  double z = 0;
  for (std::size_t j = 0; j < row.size(); ++j) {
    if (row[j] != -kInf) p[j] = std::exp(row[j] - m);
    z += p[j];
  }
  for (double& v : p) v /= z;
  return p;
}

/// Unnormalised inverse-CDF table of one row: cdf[k] = Σ_{j<=k} exp(ℓ_j − M).
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

/// The documented draw: the smallest k with cdf[k] > u·Z. Also returns how far t = u·Z lies from
/// the nearest boundary of that class's interval, relative to Z.
struct OracleDraw {
  std::int64_t index;
  double margin;
};
OracleDraw oracle_draw(const std::vector<double>& cdf, double u) {
  const double z = cdf.back();
  const double t = u * z;
  const auto it = std::upper_bound(cdf.begin(), cdf.end(), t);
  const std::int64_t k = it - cdf.begin();
  const double lower = k == 0 ? 0.0 : cdf[static_cast<std::size_t>(k - 1)];
  const double upper = k < static_cast<std::int64_t>(cdf.size()) ? cdf[static_cast<std::size_t>(k)] : z;
  return {k, std::min(t - lower, upper - t) / z};
}

double uniform_of(std::uint64_t seed, std::uint64_t step, std::int64_t row, std::int64_t g) {
  return math::categorical_uniform<double>(seed, static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(row),
                                           static_cast<std::uint32_t>(g));
}

/// Random logits in [lo, hi] with roughly `masked_fraction` of the entries set to −inf, never a
/// whole row.
std::vector<double> random_logits(TestRng& rng, std::int64_t rows, std::int64_t classes, double lo, double hi,
                                  double masked_fraction) {
  std::vector<double> v = rng.vector<double>(static_cast<std::size_t>(rows * classes), lo, hi);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < classes; ++j)
      if (rng.uniform(0, 1) < masked_fraction) v[r * classes + j] = -kInf;
    v[r * classes + static_cast<std::int64_t>(rng.uniform(0, 1) * static_cast<double>(classes)) % classes] =
        rng.uniform(lo, hi);
  }
  return v;
}

template <class T>
std::vector<std::int32_t> draw(Context& ctx, const GuardedMatrix<T>& logits, std::int64_t generations, DrawKey key) {
  GuardedMatrix<std::int32_t> out(ctx, logits.cview().rows, generations);
  sample(ctx, Categorical<T>{logits.cview()}, generations, key, out.view());
  return out.values_checked();
}

// ---------------------------------------------------------------- closed forms
TEST(CategoricalRef, LogProbClosedForms) {
  Context ctx = cpu_context();
  // Row 0: two classes, log p(0) = −log(1 + e^{b−a}). Row 1: class 1 masked.
  const double a = 0.7, b = -1.9;
  GuardedMatrix<double> head(ctx, 2, 4);
  head.fill(std::vector<double>{a, b, -kInf, -kInf, 0.0, -kInf, 1.0, 2.0});
  GuardedMatrix<std::int32_t> samples(ctx, 2, 3);
  samples.fill({0, 1, 0, 0, 1, 3});
  GuardedMatrix<double> out(ctx, 2, 3);
  log_prob(ctx, Categorical<double>{head.cview()}, samples.cview(), out.view());
  const std::vector<double> got = out.values_checked();
  const double lse1 = std::log(1.0 + std::exp(1.0) + std::exp(2.0));
  const std::vector<double> expected{-std::log1p(std::exp(b - a)), -std::log1p(std::exp(a - b)),
                                     -std::log1p(std::exp(b - a)), -lse1, -kInf, 2.0 - lse1};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (std::isinf(expected[i])) {
      EXPECT_EQ(got[i], expected[i]) << i;
    } else {
      EXPECT_NEAR(got[i], expected[i], 1e-13) << i;
    }
    EXPECT_LE(got[i], 0.0);
  }
}

TEST(CategoricalRef, LogProbsOfAllClassesSumToOne) {
  Context ctx = cpu_context();
  TestRng rng(11);
  const std::int64_t rows = 3, classes = 37;
  GuardedMatrix<double> head(ctx, rows, classes);
  head.fill(random_logits(rng, rows, classes, -6, 6, 0.2));
  GuardedMatrix<std::int32_t> samples(ctx, rows, classes);
  std::vector<std::int32_t> all(static_cast<std::size_t>(rows * classes));
  for (std::int64_t i = 0; i < rows * classes; ++i) all[i] = static_cast<std::int32_t>(i % classes);
  samples.fill(all);
  GuardedMatrix<double> out(ctx, rows, classes);
  log_prob(ctx, Categorical<double>{head.cview()}, samples.cview(), out.view());
  const std::vector<double> lp = out.values_checked();
  for (std::int64_t r = 0; r < rows; ++r) {
    double total = 0;
    for (std::int64_t j = 0; j < classes; ++j) total += std::exp(lp[r * classes + j]);
    EXPECT_NEAR(total, 1.0, 1e-13) << "row " << r;
  }
}

TEST(CategoricalRef, EntropyClosedForms) {
  Context ctx = cpu_context();
  const double d = 1.3;
  const double p = 1.0 / (1.0 + std::exp(-d));  // two classes with logits (d, 0)
  const std::int64_t classes = 7;
  const std::vector<double> rows{
      2.5,  2.5,   2.5,   2.5,   2.5,   2.5,   2.5,    // uniform: log 7
      d,    0.0,   -kInf, -kInf, -kInf, -kInf, -kInf,  // Bernoulli(p)
      0.0,  -kInf, 0.0,   -kInf, 0.0,   -kInf, -kInf,  // uniform on 3 classes: log 3
      4.0,  -kInf, -kInf, -kInf, -kInf, -kInf, -kInf,  // one class: 0
      -1.0, 800.0, -kInf, 0.0,   3.0,   2.0,   1.0,    // one class dominates by e^797: 0
  };
  GuardedMatrix<double> head(ctx, 5, classes);
  head.fill(rows);
  GuardedMatrix<double> out(ctx, 1, 5);
  entropy(ctx, Categorical<double>{head.cview()}, out.vector());
  const std::vector<double> h = out.values_checked();
  EXPECT_NEAR(h[0], std::log(7.0), 1e-13);
  EXPECT_NEAR(h[1], -p * std::log(p) - (1 - p) * std::log(1 - p), 1e-13);
  EXPECT_NEAR(h[2], std::log(3.0), 1e-13);
  EXPECT_EQ(h[3], 0.0);
  EXPECT_GE(h[4], 0.0);
  EXPECT_LT(h[4], 1e-300);
}

TEST(CategoricalRef, EntropyMatchesDefinitionOnRandomRows) {
  Context ctx = cpu_context();
  TestRng rng(5);
  const std::int64_t rows = 4, classes = 300;
  const std::vector<double> logits = random_logits(rng, rows, classes, -8, 8, 0.3);
  GuardedMatrix<double> head(ctx, rows, classes);
  head.fill(logits);
  GuardedMatrix<double> out(ctx, 1, rows);
  entropy(ctx, Categorical<double>{head.cview()}, out.vector());
  const std::vector<double> h = out.values_checked();
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::vector<double> p =
        softmax(std::vector<double>(logits.begin() + r * classes, logits.begin() + (r + 1) * classes));
    double expected = 0;
    for (double v : p)
      if (v > 0) expected -= v * std::log(v);
    EXPECT_GT(expected, 0.5);
    EXPECT_NEAR(h[r], expected, 1e-12) << "row " << r;
  }
}

// ---------------------------------------------------------------- gradients
struct Cotangents {
  std::vector<std::int32_t> samples;
  std::vector<double> d_log_prob;  // empty: none
  std::vector<double> d_entropy;   // empty: none
};

/// f(ℓ) = Σ_bg c_bg log p(k_bg) + Σ_b e_b H_b through the public log_prob / entropy.
double objective(const std::vector<double>& logits, std::int64_t rows, std::int64_t classes, std::int64_t generations,
                 const Cotangents& ct) {
  Context ctx = cpu_context();
  const Categorical<double> head{matrix_view(logits.data(), rows, classes)};
  double f = 0;
  if (!ct.d_log_prob.empty()) {
    std::vector<double> lp(static_cast<std::size_t>(rows * generations));
    log_prob(ctx, head, matrix_view(ct.samples.data(), rows, generations), matrix_view(lp.data(), rows, generations));
    for (std::size_t i = 0; i < lp.size(); ++i) f += ct.d_log_prob[i] * lp[i];
  }
  if (!ct.d_entropy.empty()) {
    std::vector<double> h(static_cast<std::size_t>(rows));
    entropy(ctx, head, vector_view(h.data(), rows));
    for (std::size_t i = 0; i < h.size(); ++i) f += ct.d_entropy[i] * h[i];
  }
  return f;
}

std::vector<double> analytic_gradient(const std::vector<double>& logits, std::int64_t rows, std::int64_t classes,
                                      std::int64_t generations, const Cotangents& ct) {
  Context ctx = cpu_context();
  GuardedMatrix<double> head(ctx, rows, classes);
  head.fill(logits);
  GuardedMatrix<std::int32_t> samples(ctx, rows, generations);
  samples.fill(ct.samples);
  GuardedMatrix<double> dlp(ctx, rows, generations), de(ctx, 1, rows), grad(ctx, rows, classes);
  MatrixView<const std::int32_t> samples_view{};
  MatrixView<const double> dlp_view{};
  VectorView<const double> de_view{};
  if (!ct.d_log_prob.empty()) {
    dlp.fill(ct.d_log_prob);
    dlp_view = dlp.cview();
    samples_view = samples.cview();
  }
  if (!ct.d_entropy.empty()) {
    de.fill(ct.d_entropy);
    de_view = VectorView<const double>{de.cview().data, rows};
  }
  backward(ctx, Categorical<double>{head.cview()}, samples_view, dlp_view, de_view,
           CategoricalGrad<double>{grad.view()});
  return grad.values_checked();
}

void expect_matches_finite_differences(std::uint64_t seed, bool with_log_prob, bool with_entropy) {
  TestRng rng(seed);
  const std::int64_t rows = 3, classes = 6, generations = 5;
  std::vector<double> logits = random_logits(rng, rows, classes, -2, 2, 0.25);
  Cotangents ct;
  ct.samples.resize(static_cast<std::size_t>(rows * generations));
  for (std::int64_t r = 0; r < rows; ++r) {
    std::vector<std::int32_t> finite;
    for (std::int64_t j = 0; j < classes; ++j)
      if (logits[r * classes + j] != -kInf) finite.push_back(static_cast<std::int32_t>(j));
    for (std::int64_t g = 0; g < generations; ++g)
      ct.samples[r * generations + g] = finite[static_cast<std::size_t>(rng.uniform(0, 1) * finite.size()) % finite.size()];
    ct.samples[r * generations + 1] = ct.samples[r * generations];  // a repeated class
  }
  if (with_log_prob) ct.d_log_prob = rng.vector<double>(static_cast<std::size_t>(rows * generations), -1.5, 1.5);
  if (with_entropy) ct.d_entropy = rng.vector<double>(static_cast<std::size_t>(rows), -2, 2);

  const std::vector<double> grad = analytic_gradient(logits, rows, classes, generations, ct);
  const double h = 1e-6;
  double scale = 0;
  for (std::int64_t i = 0; i < rows * classes; ++i) {
    if (logits[i] == -kInf) {
      EXPECT_EQ(grad[i], 0.0) << "masked class " << i << " must get a zero gradient";
      continue;
    }
    std::vector<double> plus = logits, minus = logits;
    plus[i] += h;
    minus[i] -= h;
    const double fd = (objective(plus, rows, classes, generations, ct) - objective(minus, rows, classes, generations, ct)) /
                      (2 * h);
    EXPECT_NEAR(grad[i], fd, 1e-7 + 1e-6 * std::abs(fd)) << "element " << i;
    scale = std::max(scale, std::abs(fd));
  }
  EXPECT_GT(scale, 1e-2) << "the finite-difference gradient must not vanish";
}

TEST(CategoricalRef, BackwardMatchesFiniteDifferences) { expect_matches_finite_differences(1, true, true); }
TEST(CategoricalRef, BackwardLogProbOnlyMatchesFiniteDifferences) { expect_matches_finite_differences(2, true, false); }
TEST(CategoricalRef, BackwardEntropyOnlyMatchesFiniteDifferences) { expect_matches_finite_differences(3, false, true); }

TEST(CategoricalRef, BackwardIsLinearInTheCotangents) {
  TestRng rng(21);
  const std::int64_t rows = 2, classes = 9, generations = 4;
  const std::vector<double> logits = random_logits(rng, rows, classes, -3, 3, 0.0);
  Cotangents both, lp_only, h_only;
  both.samples = {0, 3, 3, 8, 1, 1, 1, 2};
  both.d_log_prob = rng.vector<double>(8, -1, 1);
  both.d_entropy = rng.vector<double>(2, -1, 1);
  lp_only = both;
  lp_only.d_entropy.clear();
  h_only = both;
  h_only.d_log_prob.clear();
  const std::vector<double> g_both = analytic_gradient(logits, rows, classes, generations, both);
  const std::vector<double> g_lp = analytic_gradient(logits, rows, classes, generations, lp_only);
  const std::vector<double> g_h = analytic_gradient(logits, rows, classes, generations, h_only);
  std::vector<double> sum(g_both.size());
  for (std::size_t i = 0; i < sum.size(); ++i) sum[i] = g_lp[i] + g_h[i];
  D2R_EXPECT_CLOSE(g_both, sum, 1e-13, 1e-15);
  // The score of log p sums to 0 over classes: Σ_j grad_j = Σ_g c_g − Σ_g c_g = 0.
  for (std::int64_t r = 0; r < rows; ++r) {
    double total = 0;
    for (std::int64_t j = 0; j < classes; ++j) total += g_lp[r * classes + j];
    EXPECT_NEAR(total, 0.0, 1e-14);
  }
}

// ---------------------------------------------------------------- sampling
TEST(CategoricalRef, SamplesFollowTheDocumentedInverseCdf) {
  Context ctx = cpu_context(42);
  TestRng rng(8);
  const std::int64_t rows = 5, classes = 40, generations = 400;
  const std::vector<double> logits = random_logits(rng, rows, classes, -4, 4, 0.3);
  GuardedMatrix<double> head(ctx, rows, classes);
  head.fill(logits);
  const DrawKey key{.step = 9, .first_row = 0};
  const std::vector<std::int32_t> got = draw(ctx, head, generations, key);
  std::int64_t exact = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::vector<double> cdf = unnormalised_cdf(&logits[r * classes], classes);
    for (std::int64_t g = 0; g < generations; ++g) {
      const OracleDraw o = oracle_draw(cdf, uniform_of(42, key.step, r, g));
      const std::int32_t k = got[r * generations + g];
      if (o.margin > 1e-12) {
        EXPECT_EQ(k, o.index) << "row " << r << " draw " << g;
      }
      exact += k == o.index;
    }
  }
  EXPECT_GE(exact, rows * generations - 2);
}

TEST(CategoricalRef, SamplerHistogramMatchesProbabilities) {
  Context ctx = cpu_context(1234);
  const std::int64_t classes = 10, rows = 4, generations = 50000;
  const std::vector<double> row{0.3, -1.2, 1.1, -kInf, 0.0, 0.8, -0.5, 1.4, -kInf, 0.2};
  std::vector<double> logits;
  for (std::int64_t r = 0; r < rows; ++r) logits.insert(logits.end(), row.begin(), row.end());
  GuardedMatrix<double> head(ctx, rows, classes);
  head.fill(logits);
  const std::vector<std::int32_t> got = draw(ctx, head, generations, {.step = 3});
  std::vector<double> count(static_cast<std::size_t>(classes), 0.0);
  for (std::int32_t k : got) {
    ASSERT_GE(k, 0);
    ASSERT_LT(k, classes);
    count[static_cast<std::size_t>(k)] += 1;
  }
  const std::vector<double> p = softmax(row);
  const double n = static_cast<double>(rows * generations);
  double min_p = 1;
  for (double v : p)
    if (v > 0) min_p = std::min(min_p, v);
  for (std::int64_t j = 0; j < classes; ++j) {
    const double pj = p[static_cast<std::size_t>(j)];
    if (pj == 0) {
      EXPECT_EQ(count[static_cast<std::size_t>(j)], 0) << "masked class " << j << " was drawn";
      continue;
    }
    const double tol = 4 * std::sqrt(pj * (1 - pj) / n);
    EXPECT_LT(tol, 0.5 * min_p) << "test tolerance too high to detect errors";
    EXPECT_NEAR(count[static_cast<std::size_t>(j)] / n, pj, tol) << "class " << j;
  }
}

TEST(CategoricalRef, MaskedClassesAreNeverDrawn) {
  Context ctx = cpu_context(77);
  const std::int64_t classes = 50, generations = 20000;
  // Row 0: only classes 0, 25 and 49 are live (masked runs at both ends and between).
  // Row 1: only the first and the last class are live, one of them 40 nats below the other.
  // Row 2: only class 13 is live.
  std::vector<double> logits(static_cast<std::size_t>(3 * classes), -kInf);
  logits[0] = 0.5;
  logits[25] = -0.5;
  logits[49] = 0.0;
  logits[classes + 0] = -40.0;
  logits[classes + 49] = 0.0;
  logits[2 * classes + 13] = 3.0;
  GuardedMatrix<double> head(ctx, 3, classes);
  head.fill(logits);
  const std::vector<std::int32_t> got = draw(ctx, head, generations, {.step = 1});
  std::set<std::int32_t> seen[3];
  for (std::int64_t r = 0; r < 3; ++r)
    for (std::int64_t g = 0; g < generations; ++g) seen[r].insert(got[r * generations + g]);
  EXPECT_EQ(seen[0], (std::set<std::int32_t>{0, 25, 49}));
  EXPECT_EQ(seen[1], (std::set<std::int32_t>{49}));  // p(0) = e^-40: not in 20000 draws
  EXPECT_EQ(seen[2], (std::set<std::int32_t>{13}));
}

TEST(CategoricalRef, ExtremeLogitGapsStayFinite) {
  Context ctx = cpu_context(3);
  // exp(−1000) underflows: class 0 has weight 0 in the sampler but a finite log-probability.
  GuardedMatrix<double> head(ctx, 1, 3);
  head.fill({0.0, 1000.0, -kInf});
  const std::vector<std::int32_t> got = draw(ctx, head, 500, {});
  for (std::int32_t k : got) EXPECT_EQ(k, 1);
  GuardedMatrix<std::int32_t> samples(ctx, 1, 3);
  samples.fill({0, 1, 2});
  GuardedMatrix<double> lp(ctx, 1, 3), h(ctx, 1, 1);
  log_prob(ctx, Categorical<double>{head.cview()}, samples.cview(), lp.view());
  entropy(ctx, Categorical<double>{head.cview()}, h.vector());
  const std::vector<double> lpv = lp.values_checked(), hv = h.values_checked();
  EXPECT_NEAR(lpv[0], -1000.0, 1e-12);
  EXPECT_EQ(lpv[1], 0.0);
  EXPECT_EQ(lpv[2], -kInf);
  EXPECT_GE(hv[0], 0.0);
  EXPECT_LT(hv[0], 1e-300);
}

TEST(CategoricalRef, ShardOfRowsDrawsWhatTheWholeBatchDraws) {
  Context ctx = cpu_context(99);
  TestRng rng(4);
  const std::int64_t rows = 9, classes = 31, generations = 17;
  const std::vector<double> logits = random_logits(rng, rows, classes, -3, 3, 0.1);
  GuardedMatrix<double> head(ctx, rows, classes);
  head.fill(logits);
  const std::vector<std::int32_t> full = draw(ctx, head, generations, {.step = 5, .first_row = 0});
  const std::int64_t r0 = 3, r1 = 7;
  GuardedMatrix<std::int32_t> part(ctx, r1 - r0, generations);
  sample(ctx, Categorical<double>{head.cview().row_range(r0, r1 - r0)}, generations, {.step = 5, .first_row = r0},
         part.view());
  const std::vector<std::int32_t> got = part.values_checked();
  const std::vector<std::int32_t> expected(full.begin() + r0 * generations, full.begin() + r1 * generations);
  EXPECT_EQ(got, expected);
  // Without the offset the shard would draw other numbers.
  GuardedMatrix<std::int32_t> unkeyed(ctx, r1 - r0, generations);
  sample(ctx, Categorical<double>{head.cview().row_range(r0, r1 - r0)}, generations, {.step = 5, .first_row = 0},
         unkeyed.view());
  EXPECT_NE(unkeyed.values_checked(), expected);
}

TEST(CategoricalRef, DrawsAreKeyedBySeedStepAndGeneration) {
  TestRng rng(6);
  const std::int64_t rows = 4, classes = 20, generations = 250;
  const std::vector<double> logits = random_logits(rng, rows, classes, -1, 1, 0.0);
  Context ctx = cpu_context(10);
  GuardedMatrix<double> head(ctx, rows, classes);
  head.fill(logits);
  const std::vector<std::int32_t> a = draw(ctx, head, generations, {.step = 2});
  const std::vector<std::int32_t> again = draw(ctx, head, generations, {.step = 2});
  const std::vector<std::int32_t> next_step = draw(ctx, head, generations, {.step = 3});
  Context other_seed = cpu_context(11);
  const std::vector<std::int32_t> b = draw(other_seed, head, generations, {.step = 2});
  EXPECT_EQ(a, again);
  auto differing = [](const std::vector<std::int32_t>& x, const std::vector<std::int32_t>& y) {
    std::int64_t n = 0;
    for (std::size_t i = 0; i < x.size(); ++i) n += x[i] != y[i];
    return n;
  };
  // Independent draws over ~20 near-uniform classes agree about 5% of the time.
  EXPECT_GT(differing(a, next_step), rows * generations / 2);
  EXPECT_GT(differing(a, b), rows * generations / 2);
  // Draw g does not depend on how many generations are drawn.
  const std::vector<std::int32_t> fewer = draw(ctx, head, 5, {.step = 2});
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t g = 0; g < 5; ++g) EXPECT_EQ(fewer[r * 5 + g], a[r * generations + g]);
}

TEST(CategoricalRef, FloatBackendAgreesWithDoubleExceptAtCdfBoundaries) {
  TestRng rng(13);
  const std::int64_t rows = 6, classes = 100, generations = 1000;
  std::vector<double> logits = random_logits(rng, rows, classes, -5, 5, 0.2);
  for (double& v : logits) v = static_cast<double>(static_cast<float>(v));  // same inputs in both precisions
  std::vector<float> logits_f(logits.begin(), logits.end());
  Context ctx = cpu_context(8);
  GuardedMatrix<double> head_d(ctx, rows, classes);
  head_d.fill(logits);
  GuardedMatrix<float> head_f(ctx, rows, classes);
  head_f.fill(logits_f);
  const std::vector<std::int32_t> d = draw(ctx, head_d, generations, {.step = 4});
  const std::vector<std::int32_t> f = draw(ctx, head_f, generations, {.step = 4});
  std::int64_t exact = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::vector<double> cdf = unnormalised_cdf(&logits[r * classes], classes);
    for (std::int64_t g = 0; g < generations; ++g) {
      const std::int64_t i = r * generations + g;
      exact += d[i] == f[i];
      if (d[i] != f[i]) {
        const OracleDraw o = oracle_draw(cdf, uniform_of(8, 4, r, g));
        EXPECT_LT(o.margin, 1e-4) << "row " << r << " draw " << g << ": float " << f[i] << " vs double " << d[i];
      }
      ASSERT_GE(f[i], 0);
      ASSERT_NE(logits[r * classes + f[i]], -kInf);
    }
  }
  EXPECT_GE(static_cast<double>(exact), 0.999 * static_cast<double>(rows * generations));
}

TEST(CategoricalRef, LargeVocabulary) {
  Context ctx = cpu_context(21);
  TestRng rng(17);
  const std::int64_t rows = 2, classes = 131072, generations = 64;
  std::vector<double> logits = random_logits(rng, rows, classes, -3, 3, 0.05);
  logits[100000] = 13.0;  // row 0 has one heavy class, about half of the mass
  GuardedMatrix<double> head(ctx, rows, classes);
  head.fill(logits);
  const std::vector<std::int32_t> got = draw(ctx, head, generations, {.step = 7});
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::vector<double> cdf = unnormalised_cdf(&logits[r * classes], classes);
    for (std::int64_t g = 0; g < generations; ++g) {
      const std::int32_t k = got[r * generations + g];
      ASSERT_GE(k, 0);
      ASSERT_LT(k, classes);
      EXPECT_NE(logits[r * classes + k], -kInf);
      const OracleDraw o = oracle_draw(cdf, uniform_of(21, 7, r, g));
      if (o.margin > 1e-12) {
        EXPECT_EQ(k, o.index);
      }
    }
  }
  GuardedMatrix<std::int32_t> samples(ctx, rows, generations);
  samples.fill(got);
  GuardedMatrix<double> lp(ctx, rows, generations), h(ctx, 1, rows);
  log_prob(ctx, Categorical<double>{head.cview()}, samples.cview(), lp.view());
  entropy(ctx, Categorical<double>{head.cview()}, h.vector());
  const std::vector<double> lpv = lp.values_checked(), hv = h.values_checked();
  for (double v : lpv) {
    EXPECT_LE(v, 0.0);
    EXPECT_TRUE(std::isfinite(v));
  }
  EXPECT_GT(hv[1], 0.9 * std::log(static_cast<double>(classes)) - 1.0);
  EXPECT_LE(hv[1], std::log(static_cast<double>(classes)));
  EXPECT_LT(hv[0], hv[1]);
}

TEST(CategoricalRef, RowWithoutFiniteLogitWithChecksOff) {
  Context ctx = cpu_context(5, ValueChecks::none);
  const std::int64_t classes = 4, generations = 6;
  GuardedMatrix<double> head(ctx, 3, classes);
  head.fill({0.0, 1.0, -kInf, 2.0,  //
             -kInf, -kInf, -kInf, -kInf,  //
             1.0, 1.0, 1.0, 1.0});
  const std::vector<std::int32_t> got = draw(ctx, head, generations, {});
  for (std::int64_t g = 0; g < generations; ++g) {
    EXPECT_EQ(got[generations + g], -1);
    EXPECT_GE(got[g], 0);
    EXPECT_NE(got[g], 2);
    EXPECT_GE(got[2 * generations + g], 0);
    EXPECT_LT(got[2 * generations + g], classes);
  }
  GuardedMatrix<std::int32_t> samples(ctx, 3, 2);
  samples.fill({0, 3, 0, 1, 2, 3});
  GuardedMatrix<double> lp(ctx, 3, 2), h(ctx, 1, 3), grad(ctx, 3, classes), dlp(ctx, 3, 2);
  dlp.fill({1.0, 1.0, 1.0, 1.0, 1.0, 1.0});
  const Categorical<double> cat{head.cview()};
  log_prob(ctx, cat, samples.cview(), lp.view());
  entropy(ctx, cat, h.vector());
  backward(ctx, cat, samples.cview(), dlp.cview(), VectorView<const double>{}, CategoricalGrad<double>{grad.view()});
  const std::vector<double> lpv = lp.values_checked(), hv = h.values_checked(), gv = grad.values_checked();
  EXPECT_TRUE(std::isnan(lpv[2]) && std::isnan(lpv[3]));
  EXPECT_TRUE(std::isnan(hv[1]));
  for (std::int64_t j = 0; j < classes; ++j) EXPECT_TRUE(std::isnan(gv[classes + j]));
  // The other rows are unaffected.
  EXPECT_NEAR(lpv[4], -std::log(4.0), 1e-15);
  EXPECT_NEAR(hv[2], std::log(4.0), 1e-15);
  EXPECT_TRUE(std::isfinite(lpv[0]) && std::isfinite(hv[0]) && std::isfinite(gv[0]));
}

TEST(CategoricalRef, OutOfRangeIndicesWithChecksOffAreContained) {
  Context ctx = cpu_context(0, ValueChecks::none);
  GuardedMatrix<double> head(ctx, 1, 3);
  head.fill({0.0, 0.0, 0.0});
  GuardedMatrix<std::int32_t> samples(ctx, 1, 3);
  samples.fill({-1, 3, 1});
  GuardedMatrix<double> lp(ctx, 1, 3), dlp(ctx, 1, 3), grad(ctx, 1, 3);
  dlp.fill({5.0, 7.0, 1.0});
  log_prob(ctx, Categorical<double>{head.cview()}, samples.cview(), lp.view());
  backward(ctx, Categorical<double>{head.cview()}, samples.cview(), dlp.cview(), VectorView<const double>{},
           CategoricalGrad<double>{grad.view()});
  const std::vector<double> lpv = lp.values_checked(), gv = grad.values_checked();
  EXPECT_TRUE(std::isnan(lpv[0]) && std::isnan(lpv[1]));
  EXPECT_NEAR(lpv[2], -std::log(3.0), 1e-15);
  // Dense term −p Σc = −13/3 everywhere, plus 1 at the one valid index.
  EXPECT_NEAR(gv[0], -13.0 / 3.0, 1e-14);
  EXPECT_NEAR(gv[1], 1.0 - 13.0 / 3.0, 1e-14);
  EXPECT_NEAR(gv[2], -13.0 / 3.0, 1e-14);
}

}  // namespace
}  // namespace d2r
