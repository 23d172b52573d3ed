// Cholesky-Gaussian head on the cpu backend (the reference), checked against independent
// computations: dense covariance algebra (LU with partial pivoting), the diagonal-Gaussian head,
// central finite differences, sampler statistics and the Philox keying contract.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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

constexpr double kLog2Pi = 1.83787706640934548356;
constexpr double kLog2PiE = 2.83787706640934548356;

std::int64_t packed_size(std::int64_t n) { return n * (n + 1) / 2; }
std::int64_t packed_index(std::int64_t i, std::int64_t j) { return i * (i + 1) / 2 + j; }

// ---------------------------------------------------------------- independent dense algebra
/// softplus written independently of d2r::math (inputs in the tests stay in [-3, 3]).
double softplus_plain(double x) { return std::log(1.0 + std::exp(x)); }
/// Raw diagonal value whose softplus is y (inverse softplus).
double inverse_softplus(double y) { return std::log(std::expm1(y)); }

/// Dense n x n (row-major) factor L of one packed raw row.
std::vector<double> dense_factor(const double* raw, std::int64_t n, double jitter) {
  std::vector<double> l(static_cast<std::size_t>(n * n), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < i; ++j) l[i * n + j] = raw[packed_index(i, j)];
    l[i * n + i] = softplus_plain(raw[packed_index(i, i)]) + jitter;
  }
  return l;
}

/// Σ = L Lᵀ.
std::vector<double> covariance(const std::vector<double>& l, std::int64_t n) {
  std::vector<double> s(static_cast<std::size_t>(n * n), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t k = 0; k < n; ++k) s[i * n + j] += l[i * n + k] * l[j * n + k];
  return s;
}

/// Solves A x = r by Gaussian elimination with partial pivoting; returns log |det A|.
double solve_and_log_det(std::vector<double> a, std::int64_t n, std::vector<double> r, std::vector<double>& x) {
  double log_det = 0;
  for (std::int64_t col = 0; col < n; ++col) {
    std::int64_t pivot = col;
    for (std::int64_t row = col + 1; row < n; ++row)
      if (std::abs(a[row * n + col]) > std::abs(a[pivot * n + col])) pivot = row;
    if (pivot != col) {
      for (std::int64_t k = 0; k < n; ++k) std::swap(a[col * n + k], a[pivot * n + k]);
      std::swap(r[col], r[pivot]);
    }
    log_det += std::log(std::abs(a[col * n + col]));
    for (std::int64_t row = col + 1; row < n; ++row) {
      const double f = a[row * n + col] / a[col * n + col];
      for (std::int64_t k = col; k < n; ++k) a[row * n + k] -= f * a[col * n + k];
      r[row] -= f * r[col];
    }
  }
  x.assign(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t row = n - 1; row >= 0; --row) {
    double acc = r[row];
    for (std::int64_t k = row + 1; k < n; ++k) acc -= a[row * n + k] * x[k];
    x[row] = acc / a[row * n + row];
  }
  return log_det;
}

// ---------------------------------------------------------------- test problems
/// A head's host data: B x n mean, (B or 1) x n(n+1)/2 raw tril, packed rows.
struct HeadData {
  std::int64_t batch = 0, n = 0;
  bool shared = false;
  double jitter = 1e-3;
  std::vector<double> mean, tril;
  [[nodiscard]] std::int64_t tril_rows() const { return shared ? 1 : batch; }
  [[nodiscard]] CholeskyGaussian<double> head() const {
    return {matrix_view(mean.data(), batch, n), matrix_view(tril.data(), tril_rows(), packed_size(n)), jitter};
  }
  [[nodiscard]] const double* raw_row(std::int64_t b) const { return tril.data() + (shared ? 0 : b) * packed_size(n); }
};

/// Well-conditioned random head: L_ii = softplus(raw) with raw in [-0.3, 1.5], |L_ij| <= 0.6.
HeadData random_head(std::int64_t batch, std::int64_t n, bool shared, std::uint64_t seed) {
  TestRng rng(seed);
  HeadData h;
  h.batch = batch;
  h.n = n;
  h.shared = shared;
  h.mean = rng.vector<double>(static_cast<std::size_t>(batch * n), -2.0, 2.0);
  h.tril.resize(static_cast<std::size_t>(h.tril_rows() * packed_size(n)));
  for (std::int64_t r = 0; r < h.tril_rows(); ++r)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j)
        h.tril[r * packed_size(n) + packed_index(i, j)] = i == j ? rng.uniform(-0.3, 1.5) : rng.uniform(-0.6, 0.6);
  return h;
}

Context cpu_context(std::uint64_t seed = 11) { return Context({.backend = Backend::cpu, .seed = seed}); }

std::vector<double> draw(Context& ctx, const HeadData& h, std::int64_t generations, DrawKey key) {
  GuardedMatrix<double> samples(ctx, h.batch * generations, h.n);
  sample(ctx, h.head(), generations, key, samples.view());
  return samples.values_checked();
}

std::vector<double> log_probs(Context& ctx, const HeadData& h, const std::vector<double>& samples,
                              std::int64_t generations) {
  GuardedMatrix<double> out(ctx, h.batch, generations);
  log_prob(ctx, h.head(), matrix_view(samples.data(), h.batch * generations, h.n), out.view());
  return out.values_checked();
}

std::vector<double> entropies(Context& ctx, const HeadData& h) {
  GuardedMatrix<double> out(ctx, 1, h.batch);
  entropy(ctx, h.head(), out.vector());
  return out.values_checked();
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// ---------------------------------------------------------------- log-probability and entropy
struct Shape {
  std::int64_t batch, n, generations;
  bool shared;
};

void PrintTo(const Shape& s, std::ostream* os) {
  *os << fmt::format("B={} n={} G={} {}", s.batch, s.n, s.generations, s.shared ? "shared" : "per-row");
}

class CholeskyGaussianRefShapes : public ::testing::TestWithParam<Shape> {};

TEST_P(CholeskyGaussianRefShapes, LogProbMatchesDenseGaussianDensity) {
  const Shape s = GetParam();
  const HeadData h = random_head(s.batch, s.n, s.shared, 100 + static_cast<std::uint64_t>(s.n));
  Context ctx = cpu_context();
  // Arbitrary evaluation points (not drawn from the head).
  TestRng rng(7);
  const std::vector<double> y = rng.vector<double>(static_cast<std::size_t>(s.batch * s.generations * s.n), -4.0, 4.0);
  const std::vector<double> got = log_probs(ctx, h, y, s.generations);

  std::vector<double> expected;
  for (std::int64_t b = 0; b < s.batch; ++b) {
    const std::vector<double> sigma = covariance(dense_factor(h.raw_row(b), s.n, h.jitter), s.n);
    for (std::int64_t g = 0; g < s.generations; ++g) {
      std::vector<double> r(static_cast<std::size_t>(s.n)), x;
      for (std::int64_t d = 0; d < s.n; ++d) r[d] = y[(b * s.generations + g) * s.n + d] - h.mean[b * s.n + d];
      const double log_det = solve_and_log_det(sigma, s.n, r, x);
      double quad = 0;
      for (std::int64_t d = 0; d < s.n; ++d) quad += r[d] * x[d];
      expected.push_back(-0.5 * quad - 0.5 * (static_cast<double>(s.n) * kLog2Pi + log_det));
    }
  }
  ASSERT_GT(max_abs(expected), 0.1);
  D2R_EXPECT_CLOSE(got, expected, 1e-10, 1e-10);
}

TEST_P(CholeskyGaussianRefShapes, EntropyMatchesHalfLogDetTwoPiESigma) {
  const Shape s = GetParam();
  const HeadData h = random_head(s.batch, s.n, s.shared, 200 + static_cast<std::uint64_t>(s.n));
  Context ctx = cpu_context();
  const std::vector<double> got = entropies(ctx, h);
  std::vector<double> expected;
  for (std::int64_t b = 0; b < s.batch; ++b) {
    const std::vector<double> sigma = covariance(dense_factor(h.raw_row(b), s.n, h.jitter), s.n);
    std::vector<double> x;
    const double log_det = solve_and_log_det(sigma, s.n, std::vector<double>(static_cast<std::size_t>(s.n), 1.0), x);
    expected.push_back(0.5 * (static_cast<double>(s.n) * kLog2PiE + log_det));
  }
  ASSERT_GT(max_abs(expected), 0.1);
  D2R_EXPECT_CLOSE(got, expected, 1e-12, 1e-12);
  if (s.shared) {
    for (std::int64_t b = 1; b < s.batch; ++b) EXPECT_EQ(got[b], got[0]) << "a shared factor has one entropy";
  }
}

/// Draw for draw: sample(b, g) = μ_b + L_b ε with ε the documented Philox normals.
TEST_P(CholeskyGaussianRefShapes, SampleIsMeanPlusFactorTimesKeyedNormals) {
  const Shape s = GetParam();
  const HeadData h = random_head(s.batch, s.n, s.shared, 300 + static_cast<std::uint64_t>(s.n));
  Context ctx = cpu_context(0x1234'5678'9abcULL);
  const DrawKey key{.step = 17, .first_row = 5};
  const std::vector<double> got = draw(ctx, h, s.generations, key);
  std::vector<double> expected;
  for (std::int64_t b = 0; b < s.batch; ++b) {
    const std::vector<double> l = dense_factor(h.raw_row(b), s.n, h.jitter);
    for (std::int64_t g = 0; g < s.generations; ++g) {
      std::vector<double> eps(static_cast<std::size_t>(s.n));
      for (std::int64_t d = 0; d < s.n; ++d) {
        eps[d] = math::normal4<double>(ctx.seed(), 17, static_cast<std::uint32_t>(5 + b), static_cast<std::uint32_t>(g),
                                       static_cast<std::uint32_t>(d / 4))
                     .z[d % 4];
      }
      for (std::int64_t i = 0; i < s.n; ++i) {
        double y = h.mean[b * s.n + i];
        for (std::int64_t j = 0; j < s.n; ++j) y += l[i * s.n + j] * eps[j];
        expected.push_back(y);
      }
    }
  }
  ASSERT_GT(max_abs(expected), 0.1);
  D2R_EXPECT_CLOSE(got, expected, 1e-12, 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CholeskyGaussianRefShapes,
                         ::testing::Values(Shape{1, 1, 1, false}, Shape{1, 1, 4, true}, Shape{3, 2, 5, false},
                                           Shape{3, 2, 5, true}, Shape{5, 3, 4, false}, Shape{2, 5, 3, true},
                                           Shape{4, 8, 2, false}, Shape{2, 17, 3, false}, Shape{1, 64, 2, false}),
                         [](const ::testing::TestParamInfo<Shape>& info) {
                           const Shape& s = info.param;
                           return fmt::format("B{}_n{}_G{}_{}", s.batch, s.n, s.generations,
                                              s.shared ? "shared" : "perrow");
                         });

// ---------------------------------------------------------------- diagonal special case
TEST(CholeskyGaussianRef, ZeroOffDiagonalEqualsDiagonalGaussian) {
  const std::int64_t batch = 3, n = 4, generations = 5;
  HeadData h = random_head(batch, n, false, 42);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < i; ++j) h.tril[b * packed_size(n) + packed_index(i, j)] = 0.0;
  std::vector<double> log_std(static_cast<std::size_t>(batch * n)), diag_raw(log_std.size());
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < n; ++i) {
      diag_raw[b * n + i] = h.tril[b * packed_size(n) + packed_index(i, i)];
      log_std[b * n + i] = std::log(softplus_plain(diag_raw[b * n + i]) + h.jitter);
    }
  const DiagGaussian<double> diag{matrix_view<const double>(h.mean.data(), batch, n),
                                  matrix_view<const double>(log_std.data(), batch, n)};
  Context ctx = cpu_context();

  const std::vector<double> y = draw(ctx, h, generations, {.step = 3});
  GuardedMatrix<double> diag_samples(ctx, batch * generations, n);
  sample(ctx, diag, generations, {.step = 3}, diag_samples.view());
  D2R_EXPECT_CLOSE(y, diag_samples.values_checked(), 1e-12, 1e-12);

  const MatrixView<const double> y_view = matrix_view(y.data(), batch * generations, n);
  GuardedMatrix<double> diag_lp(ctx, batch, generations);
  log_prob(ctx, diag, y_view, diag_lp.view());
  D2R_EXPECT_CLOSE(log_probs(ctx, h, y, generations), diag_lp.values_checked(), 1e-12, 1e-12);

  GuardedMatrix<double> diag_h(ctx, 1, batch);
  entropy(ctx, diag, diag_h.vector());
  D2R_EXPECT_CLOSE(entropies(ctx, h), diag_h.values_checked(), 1e-12, 1e-12);

  // Gradients: ∂/∂raw_ii = ∂/∂log σ_i · sigmoid(raw_ii) / L_ii; the mean gradients coincide.
  TestRng rng(5);
  const std::vector<double> c = rng.vector<double>(static_cast<std::size_t>(batch * generations), -1.0, 1.0);
  const std::vector<double> e = rng.vector<double>(static_cast<std::size_t>(batch), -1.0, 1.0);
  const MatrixView<const double> c_view = matrix_view(c.data(), batch, generations);
  const VectorView<const double> e_view = vector_view(e.data(), batch);
  GuardedMatrix<double> dg_mean(ctx, batch, n), dg_log_std(ctx, batch, n);
  backward(ctx, diag, y_view, c_view, e_view, {dg_mean.view(), dg_log_std.view()});
  GuardedMatrix<double> cg_mean(ctx, batch, n), cg_tril(ctx, batch, packed_size(n));
  backward(ctx, h.head(), y_view, c_view, e_view, {cg_mean.view(), cg_tril.view()});
  const std::vector<double> expected_mean = dg_mean.values_checked();
  ASSERT_GT(max_abs(expected_mean), 0.1);
  D2R_EXPECT_CLOSE(cg_mean.values_checked(), expected_mean, 1e-10, 1e-12);
  const std::vector<double> got_tril = cg_tril.values_checked(), g_log_std = dg_log_std.values_checked();
  std::vector<double> got_diag, expected_diag;
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < n; ++i) {
      const double raw = diag_raw[b * n + i];
      got_diag.push_back(got_tril[b * packed_size(n) + packed_index(i, i)]);
      expected_diag.push_back(g_log_std[b * n + i] / (1.0 + std::exp(-raw)) / (softplus_plain(raw) + h.jitter));
    }
  ASSERT_GT(max_abs(expected_diag), 0.1);
  D2R_EXPECT_CLOSE(got_diag, expected_diag, 1e-10, 1e-12);
}

// ---------------------------------------------------------------- backward vs finite differences
enum class Cotangents { both, log_prob_only, entropy_only };

struct GradCase {
  std::int64_t batch, n, generations;
  bool shared;
  Cotangents cotangents;
};

void PrintTo(const GradCase& p, std::ostream* os) {
  *os << fmt::format("B={} n={} G={} {} cotangents={}", p.batch, p.n, p.generations, p.shared ? "shared" : "per-row",
                     static_cast<int>(p.cotangents));
}

class CholeskyGaussianRefBackward : public ::testing::TestWithParam<GradCase> {};

TEST_P(CholeskyGaussianRefBackward, MatchesCentralFiniteDifferences) {
  const GradCase p = GetParam();
  HeadData h = random_head(p.batch, p.n, p.shared, 500 + static_cast<std::uint64_t>(p.n) * 3 + (p.shared ? 1 : 0));
  Context ctx = cpu_context(99);
  const bool with_lp = p.cotangents != Cotangents::entropy_only;
  const bool with_h = p.cotangents != Cotangents::log_prob_only;
  const std::vector<double> y = draw(ctx, h, p.generations, {.step = 4});  // fixed while the head moves
  TestRng rng(77);
  const std::vector<double> c = rng.vector<double>(static_cast<std::size_t>(p.batch * p.generations), -1.0, 1.0);
  const std::vector<double> e = rng.vector<double>(static_cast<std::size_t>(p.batch), -1.0, 1.0);

  // F(head) = Σ_{b,g} c_bg log p(y_bg) + Σ_b e_b H_b, through the public primitives.
  auto objective = [&]() {
    double f = 0;
    if (with_lp) {
      const std::vector<double> lp = log_probs(ctx, h, y, p.generations);
      for (std::size_t i = 0; i < lp.size(); ++i) f += c[i] * lp[i];
    }
    if (with_h) {
      const std::vector<double> ent = entropies(ctx, h);
      for (std::size_t b = 0; b < ent.size(); ++b) f += e[b] * ent[b];
    }
    return f;
  };
  auto central_difference = [&](double& x) {
    constexpr double kEps = 1e-6;
    const double saved = x;
    x = saved + kEps;
    const double up = objective();
    x = saved - kEps;
    const double down = objective();
    x = saved;
    return (up - down) / (2 * kEps);
  };

  GuardedMatrix<double> g_mean(ctx, p.batch, p.n), g_tril(ctx, h.tril_rows(), packed_size(p.n));
  const MatrixView<const double> samples = with_lp ? matrix_view<const double>(y.data(), p.batch * p.generations, p.n)
                                                   : MatrixView<const double>{};
  const MatrixView<const double> d_log_prob =
      with_lp ? matrix_view<const double>(c.data(), p.batch, p.generations) : MatrixView<const double>{};
  const VectorView<const double> d_entropy = with_h ? vector_view<const double>(e.data(), p.batch) : VectorView<const double>{};
  backward(ctx, h.head(), samples, d_log_prob, d_entropy, {g_mean.view(), g_tril.view()});
  const std::vector<double> got_mean = g_mean.values_checked(), got_tril = g_tril.values_checked();

  std::vector<double> fd_mean, fd_tril;
  for (double& x : h.mean) fd_mean.push_back(central_difference(x));
  for (double& x : h.tril) fd_tril.push_back(central_difference(x));

  const double scale = std::max(max_abs(fd_mean), max_abs(fd_tril));
  ASSERT_GT(scale, 0.1) << "the objective must depend on the head";
  if (with_lp) {
    ASSERT_GT(max_abs(fd_mean), 0.1);
  } else {
    EXPECT_EQ(max_abs(got_mean), 0.0) << "the entropy does not depend on the mean";
  }
  D2R_EXPECT_CLOSE(got_mean, fd_mean, 1e-5, 1e-6 * scale);
  D2R_EXPECT_CLOSE(got_tril, fd_tril, 1e-5, 1e-6 * scale);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CholeskyGaussianRefBackward,
    ::testing::Values(GradCase{1, 1, 3, false, Cotangents::both}, GradCase{3, 1, 2, true, Cotangents::both},
                      GradCase{3, 2, 4, false, Cotangents::both}, GradCase{3, 3, 4, true, Cotangents::both},
                      GradCase{2, 4, 3, false, Cotangents::both}, GradCase{4, 5, 2, true, Cotangents::both},
                      GradCase{2, 3, 3, false, Cotangents::log_prob_only},
                      GradCase{3, 3, 3, true, Cotangents::log_prob_only},
                      GradCase{2, 4, 1, false, Cotangents::entropy_only},
                      GradCase{3, 4, 1, true, Cotangents::entropy_only}),
    [](const ::testing::TestParamInfo<GradCase>& info) {
      const GradCase& p = info.param;
      const char* mode = p.cotangents == Cotangents::both ? "both" : (p.cotangents == Cotangents::log_prob_only ? "logp" : "entropy");
      return fmt::format("B{}_n{}_G{}_{}_{}", p.batch, p.n, p.generations, p.shared ? "shared" : "perrow", mode);
    });

/// A shared factor's gradient is the sum of the per-row gradients.
TEST(CholeskyGaussianRef, SharedTrilGradientIsSumOverRows) {
  const std::int64_t batch = 4, n = 3, generations = 3;
  const HeadData shared = random_head(batch, n, true, 8);
  HeadData per_row = shared;
  per_row.shared = false;
  per_row.tril.clear();
  for (std::int64_t b = 0; b < batch; ++b) per_row.tril.insert(per_row.tril.end(), shared.tril.begin(), shared.tril.end());
  Context ctx = cpu_context();
  const std::vector<double> y = draw(ctx, shared, generations, {.step = 1});
  TestRng rng(3);
  const std::vector<double> c = rng.vector<double>(static_cast<std::size_t>(batch * generations), -1.0, 1.0);
  const std::vector<double> e = rng.vector<double>(static_cast<std::size_t>(batch), -1.0, 1.0);
  const auto y_view = matrix_view<const double>(y.data(), batch * generations, n);
  const auto c_view = matrix_view<const double>(c.data(), batch, generations);
  const auto e_view = vector_view<const double>(e.data(), batch);
  GuardedMatrix<double> gm_s(ctx, batch, n), gt_s(ctx, 1, packed_size(n)), gm_p(ctx, batch, n),
      gt_p(ctx, batch, packed_size(n));
  backward(ctx, shared.head(), y_view, c_view, e_view, {gm_s.view(), gt_s.view()});
  backward(ctx, per_row.head(), y_view, c_view, e_view, {gm_p.view(), gt_p.view()});
  D2R_EXPECT_CLOSE(gm_s.values_checked(), gm_p.values_checked(), 0.0, 0.0);
  const std::vector<double> rows = gt_p.values_checked();
  std::vector<double> summed(static_cast<std::size_t>(packed_size(n)), 0.0);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t k = 0; k < packed_size(n); ++k) summed[k] += rows[b * packed_size(n) + k];
  ASSERT_GT(max_abs(summed), 0.1);
  D2R_EXPECT_CLOSE(gt_s.values_checked(), summed, 1e-12, 1e-12);
}

// ---------------------------------------------------------------- sampler statistics
TEST(CholeskyGaussianRef, SampleMomentsMatchMeanAndCovariance) {
  const std::int64_t n = 3, generations = 200000;
  const double l_true[3][3] = {{1.2, 0.0, 0.0}, {0.8, 0.7, 0.0}, {-0.5, -0.6, 0.9}};
  HeadData h;
  h.batch = 1;
  h.n = n;
  h.jitter = 1e-3;
  h.mean = {1.0, -2.0, 0.5};
  h.tril.resize(static_cast<std::size_t>(packed_size(n)));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j <= i; ++j)
      h.tril[packed_index(i, j)] = i == j ? inverse_softplus(l_true[i][i] - h.jitter) : l_true[i][j];
  std::vector<double> l(9);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) l[i * 3 + j] = l_true[i][j];
  const std::vector<double> sigma = covariance(l, n);

  Context ctx = cpu_context(2024);
  const std::vector<double> y = draw(ctx, h, generations, {.step = 9});
  const double count = static_cast<double>(generations);
  std::vector<double> mean(3, 0.0), cov(9, 0.0);
  for (std::int64_t g = 0; g < generations; ++g)
    for (int i = 0; i < 3; ++i) mean[i] += y[g * 3 + i] / count;
  for (std::int64_t g = 0; g < generations; ++g)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) cov[i * 3 + j] += (y[g * 3 + i] - mean[i]) * (y[g * 3 + j] - mean[j]) / (count - 1);

  for (int i = 0; i < 3; ++i) {
    const double tol = 4.0 * std::sqrt(sigma[i * 3 + i] / count);
    EXPECT_NEAR(mean[i], h.mean[i], tol) << "mean of dim " << i;
  }
  // Var(sample covariance_ij) = (Σ_ii Σ_jj + Σ_ij²) / N for a Gaussian.
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      const double sij = sigma[i * 3 + j];
      const double tol = 4.0 * std::sqrt((sigma[i * 3 + i] * sigma[j * 3 + j] + sij * sij) / count);
      if (i != j) {
        ASSERT_LT(tol, 0.1 * std::abs(sij)) << "the test must be able to see the correlation " << i << j;
      }
      EXPECT_NEAR(cov[i * 3 + j], sij, tol) << "covariance (" << i << ", " << j << ")";
    }
  }

  // E[−log p(ŷ)] = H: the sample mean of −log p within 4 standard errors of the entropy.
  const std::vector<double> lp = log_probs(ctx, h, y, generations);
  double m = 0, m2 = 0;
  for (double v : lp) m += -v / count;
  for (double v : lp) m2 += (-v - m) * (-v - m) / (count - 1);
  const double se = std::sqrt(m2 / count);
  const double expected_h = entropies(ctx, h)[0];
  ASSERT_GT(se, 0.0);
  EXPECT_NEAR(m, expected_h, 4.0 * se);
}

// ---------------------------------------------------------------- the Philox keying contract
TEST(CholeskyGaussianRef, ShardOfRowsDrawsWhatTheWholeBatchDraws) {
  const std::int64_t batch = 7, n = 5, generations = 3, r0 = 2, r1 = 5;
  for (const bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "shared tril" : "per-row tril");
    const HeadData h = random_head(batch, n, shared, 31);
    Context ctx = cpu_context(5);
    const std::vector<double> full = draw(ctx, h, generations, {.step = 12, .first_row = 0});
    const CholeskyGaussian<double> whole = h.head();
    const CholeskyGaussian<double> shard{whole.mean.row_range(r0, r1 - r0),
                                         shared ? whole.tril : whole.tril.row_range(r0, r1 - r0), whole.jitter};
    GuardedMatrix<double> part(ctx, (r1 - r0) * generations, n);
    sample(ctx, shard, generations, {.step = 12, .first_row = r0}, part.view());
    const std::vector<double> got = part.values_checked();
    const std::vector<double> expected(full.begin() + r0 * generations * n, full.begin() + r1 * generations * n);
    ASSERT_GT(max_abs(expected), 0.1);
    EXPECT_EQ(got, expected);
  }
}

TEST(CholeskyGaussianRef, SameKeySameDrawsOtherStepOrSeedOtherDraws) {
  const HeadData h = random_head(3, 4, false, 13);
  Context ctx = cpu_context(77);
  const std::vector<double> a = draw(ctx, h, 6, {.step = 100});
  const std::vector<double> b = draw(ctx, h, 6, {.step = 100});
  EXPECT_EQ(a, b);
  const std::vector<double> c = draw(ctx, h, 6, {.step = 101});
  Context other = cpu_context(78);
  const std::vector<double> d = draw(other, h, 6, {.step = 100});
  std::int64_t same_step = 0, same_seed = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    same_step += a[i] == c[i];
    same_seed += a[i] == d[i];
  }
  EXPECT_EQ(same_step, 0) << "a new step must give new draws";
  EXPECT_EQ(same_seed, 0) << "a new seed must give new draws";
}

// ---------------------------------------------------------------- float cpu backend
TEST(CholeskyGaussianRef, FloatCpuBackendCloseToDoubleReference) {
  const std::int64_t batch = 5, n = 6, generations = 7;
  for (const bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "shared tril" : "per-row tril");
    HeadData h = random_head(batch, n, shared, 61);
    // Float-representable inputs, so both precisions see the same head.
    for (double& x : h.mean) x = static_cast<float>(x);
    for (double& x : h.tril) x = static_cast<float>(x);
    h.jitter = static_cast<float>(h.jitter);
    const std::vector<float> mean_f(h.mean.begin(), h.mean.end()), tril_f(h.tril.begin(), h.tril.end());
    const CholeskyGaussian<float> head_f{matrix_view(mean_f.data(), batch, n),
                                         matrix_view(tril_f.data(), h.tril_rows(), packed_size(n)),
                                         static_cast<float>(h.jitter)};
    Context ctx = cpu_context(3);

    GuardedMatrix<float> ys_f(ctx, batch * generations, n);
    sample(ctx, head_f, generations, {.step = 2}, ys_f.view());
    const std::vector<float> y_f = ys_f.values_checked();
    const std::vector<double> y_d = draw(ctx, h, generations, {.step = 2});
    ASSERT_GT(max_abs(y_d), 0.1);
    D2R_EXPECT_CLOSE(y_f, y_d, 1e-5, 1e-5);

    // Evaluate both precisions at the float samples.
    const std::vector<double> y_common(y_f.begin(), y_f.end());
    GuardedMatrix<float> lp_f(ctx, batch, generations);
    log_prob(ctx, head_f, matrix_view<const float>(y_f.data(), batch * generations, n), lp_f.view());
    D2R_EXPECT_CLOSE(lp_f.values_checked(), log_probs(ctx, h, y_common, generations), 1e-5, 1e-5);

    GuardedMatrix<float> h_f(ctx, 1, batch);
    entropy(ctx, head_f, h_f.vector());
    D2R_EXPECT_CLOSE(h_f.values_checked(), entropies(ctx, h), 1e-6, 1e-6);

    TestRng rng(9);
    const std::vector<float> c_f = rng.vector<float>(static_cast<std::size_t>(batch * generations), -1.0, 1.0);
    const std::vector<float> e_f = rng.vector<float>(static_cast<std::size_t>(batch), -1.0, 1.0);
    const std::vector<double> c_d(c_f.begin(), c_f.end()), e_d(e_f.begin(), e_f.end());
    GuardedMatrix<float> gm_f(ctx, batch, n), gt_f(ctx, h.tril_rows(), packed_size(n));
    backward(ctx, head_f, matrix_view<const float>(y_f.data(), batch * generations, n),
             matrix_view<const float>(c_f.data(), batch, generations), vector_view<const float>(e_f.data(), batch),
             {gm_f.view(), gt_f.view()});
    GuardedMatrix<double> gm_d(ctx, batch, n), gt_d(ctx, h.tril_rows(), packed_size(n));
    backward(ctx, h.head(), matrix_view<const double>(y_common.data(), batch * generations, n),
             matrix_view<const double>(c_d.data(), batch, generations), vector_view<const double>(e_d.data(), batch),
             {gm_d.view(), gt_d.view()});
    const std::vector<double> gm_ref = gm_d.values_checked(), gt_ref = gt_d.values_checked();
    ASSERT_GT(max_abs(gt_ref), 0.1);
    D2R_EXPECT_CLOSE(gm_f.values_checked(), gm_ref, 1e-4, 1e-5 * max_abs(gm_ref));
    D2R_EXPECT_CLOSE(gt_f.values_checked(), gt_ref, 1e-4, 1e-5 * max_abs(gt_ref));
  }
}

}  // namespace
}  // namespace d2r
