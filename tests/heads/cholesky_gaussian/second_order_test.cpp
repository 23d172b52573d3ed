// Second-order primitives of the Cholesky-Gaussian head on the cpu backend (the reference):
// log_prob_jvp against central differences of log_prob, backward_tangent against central
// differences of backward along the tangent, the symmetry of the Hessian, the first-order
// consistency of log_prob_jvp with backward, float against double, and argument checking
// (outputs untouched on failure).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "d2r/second_order.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;
using test::TestRng;

std::int64_t packed_size(std::int64_t n) { return n * (n + 1) / 2; }
std::int64_t packed_index(std::int64_t i, std::int64_t j) { return i * (i + 1) / 2 + j; }

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

struct Shape {
  std::int64_t batch, n, generations;
  bool shared;
};

void PrintTo(const Shape& s, std::ostream* os) {
  *os << fmt::format("B={} n={} G={} {}", s.batch, s.n, s.generations, s.shared ? "shared" : "per-row");
}

/// Head outputs (or a tangent of them): B x n mean, (B or 1) x n(n+1)/2 raw tril.
struct Outputs {
  std::vector<double> mean, tril;
};

/// One problem in host memory: head, samples, cotangents and two tangents u, v.
struct Problem {
  Shape s;
  double jitter = 1e-3;
  Outputs head, u, v;
  std::vector<double> samples, d_log_prob, d_entropy;

  Problem(const Shape& shape, std::uint64_t seed) : s(shape) {
    TestRng rng(seed);
    const std::int64_t n = s.n, P = packed_size(n), rows = tril_rows();
    // Well conditioned: L_ii = softplus(raw) with raw in [-0.3, 1.2], |L_ij| <= 0.5/sqrt(n).
    const double off = 0.5 / std::sqrt(static_cast<double>(n));
    head.mean = rng.vector<double>(static_cast<std::size_t>(s.batch * n), -1.0, 1.0);
    head.tril.resize(static_cast<std::size_t>(rows * P));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j <= i; ++j)
          head.tril[r * P + packed_index(i, j)] = i == j ? rng.uniform(-0.3, 1.2) : rng.uniform(-off, off);
    for (Outputs* t : {&u, &v}) {
      t->mean = rng.vector<double>(static_cast<std::size_t>(s.batch * n), -1.0, 1.0);
      t->tril = rng.vector<double>(static_cast<std::size_t>(rows * P), -1.0, 1.0);
    }
    // Samples spread around the mean (ŷ − μ of order 1).
    samples = rng.vector<double>(static_cast<std::size_t>(s.batch * s.generations * n), -1.5, 1.5);
    for (std::int64_t b = 0; b < s.batch; ++b)
      for (std::int64_t g = 0; g < s.generations; ++g)
        for (std::int64_t d = 0; d < n; ++d) samples[(b * s.generations + g) * n + d] += head.mean[b * n + d];
    d_log_prob = rng.vector<double>(static_cast<std::size_t>(s.batch * s.generations), -1.0, 1.0);
    d_entropy = rng.vector<double>(static_cast<std::size_t>(s.batch), -1.0, 1.0);
  }
  [[nodiscard]] std::int64_t tril_rows() const { return s.shared ? 1 : s.batch; }
  [[nodiscard]] CholeskyGaussian<double> view(const Outputs& o) const {
    return {matrix_view(o.mean.data(), s.batch, s.n), matrix_view(o.tril.data(), tril_rows(), packed_size(s.n)),
            jitter};
  }
  /// head + h · t.
  [[nodiscard]] Outputs moved(const Outputs& t, double h) const {
    Outputs o = head;
    for (std::size_t i = 0; i < o.mean.size(); ++i) o.mean[i] += h * t.mean[i];
    for (std::size_t i = 0; i < o.tril.size(); ++i) o.tril[i] += h * t.tril[i];
    return o;
  }
  [[nodiscard]] MatrixView<const double> samples_view() const {
    return matrix_view(samples.data(), s.batch * s.generations, s.n);
  }
  [[nodiscard]] MatrixView<const double> d_log_prob_view() const {
    return matrix_view(d_log_prob.data(), s.batch, s.generations);
  }
  [[nodiscard]] VectorView<const double> d_entropy_view() const { return vector_view(d_entropy.data(), s.batch); }
};

Context cpu_context() { return Context({.backend = Backend::cpu, .seed = 3}); }

std::vector<double> log_probs(Context& ctx, const Problem& p, const Outputs& at) {
  std::vector<double> out(static_cast<std::size_t>(p.s.batch * p.s.generations));
  log_prob(ctx, p.view(at), p.samples_view(), matrix_view(out.data(), p.s.batch, p.s.generations));
  return out;
}

std::vector<double> jvp(Context& ctx, const Problem& p, const Outputs& tangent) {
  GuardedMatrix<double> out(ctx, p.s.batch, p.s.generations);
  log_prob_jvp(ctx, p.view(p.head), p.samples_view(), p.view(tangent), out.view());
  return out.values_checked();
}

/// Which cotangents a call uses.
enum class Cotangents { both, log_prob_only, entropy_only };

/// backward(at) or backward_tangent(head, tangent), as one vector [mean..., tril...].
std::vector<double> gradient(Context& ctx, const Problem& p, const Outputs& at, const Outputs* tangent,
                             Cotangents which) {
  const std::int64_t B = p.s.batch, n = p.s.n, P = packed_size(n);
  GuardedMatrix<double> g_mean(ctx, B, n), g_tril(ctx, p.tril_rows(), P);
  const bool with_c = which != Cotangents::entropy_only, with_e = which != Cotangents::log_prob_only;
  const MatrixView<const double> samples = with_c ? p.samples_view() : MatrixView<const double>{};
  const MatrixView<const double> dlp = with_c ? p.d_log_prob_view() : MatrixView<const double>{};
  const VectorView<const double> dent = with_e ? p.d_entropy_view() : VectorView<const double>{};
  if (tangent == nullptr) {
    backward(ctx, p.view(at), samples, dlp, dent, {g_mean.view(), g_tril.view()});
  } else {
    backward_tangent(ctx, p.view(at), samples, dlp, dent, p.view(*tangent), {g_mean.view(), g_tril.view()});
  }
  std::vector<double> all = g_mean.values_checked();
  const std::vector<double> tril = g_tril.values_checked();
  all.insert(all.end(), tril.begin(), tril.end());
  return all;
}

std::vector<double> flat(const Outputs& o) {
  std::vector<double> all = o.mean;
  all.insert(all.end(), o.tril.begin(), o.tril.end());
  return all;
}

class CholeskyGaussianSecondOrder : public ::testing::TestWithParam<Shape> {};

TEST_P(CholeskyGaussianSecondOrder, LogProbJvpMatchesCentralDifferences) {
  const Shape s = GetParam();
  const Problem p(s, 100 + static_cast<std::uint64_t>(s.batch * 31 + s.n * 7 + s.generations));
  Context ctx = cpu_context();
  const double h = 1e-5;
  for (const Outputs* t : {&p.u, &p.v}) {
    const std::vector<double> plus = log_probs(ctx, p, p.moved(*t, h)), minus = log_probs(ctx, p, p.moved(*t, -h));
    std::vector<double> expected(plus.size());
    for (std::size_t i = 0; i < plus.size(); ++i) expected[i] = (plus[i] - minus[i]) / (2 * h);
    const std::vector<double> actual = jvp(ctx, p, *t);
    ASSERT_GT(max_abs(expected), 1e-2);
    D2R_EXPECT_CLOSE(actual, expected, 1e-6, 1e-7 * max_abs(expected));
  }
}

TEST_P(CholeskyGaussianSecondOrder, BackwardTangentMatchesCentralDifferencesOfBackward) {
  const Shape s = GetParam();
  const Problem p(s, 200 + static_cast<std::uint64_t>(s.batch * 31 + s.n * 7 + s.generations));
  Context ctx = cpu_context();
  const double h = 1e-5;
  for (const Cotangents which : {Cotangents::both, Cotangents::log_prob_only, Cotangents::entropy_only}) {
    SCOPED_TRACE(which == Cotangents::both ? "both cotangents"
                 : which == Cotangents::log_prob_only ? "d_log_prob only"
                                                       : "d_entropy only");
    for (const Outputs* t : {&p.u, &p.v}) {
      const std::vector<double> plus = gradient(ctx, p, p.moved(*t, h), nullptr, which);
      const std::vector<double> minus = gradient(ctx, p, p.moved(*t, -h), nullptr, which);
      std::vector<double> expected(plus.size());
      for (std::size_t i = 0; i < plus.size(); ++i) expected[i] = (plus[i] - minus[i]) / (2 * h);
      const std::vector<double> actual = gradient(ctx, p, p.head, t, which);
      ASSERT_GT(max_abs(expected), 1e-3);
      D2R_EXPECT_CLOSE(actual, expected, 1e-5, 1e-6 * max_abs(expected));
    }
  }
}

/// uᵀ (H v) = vᵀ (H u) for the Hessian of Σ c log p + Σ e H.
TEST_P(CholeskyGaussianSecondOrder, HessianIsSymmetric) {
  const Shape s = GetParam();
  const Problem p(s, 300 + static_cast<std::uint64_t>(s.batch * 31 + s.n * 7 + s.generations));
  Context ctx = cpu_context();
  for (const Cotangents which : {Cotangents::both, Cotangents::log_prob_only, Cotangents::entropy_only}) {
    const double uhv = dot(flat(p.u), gradient(ctx, p, p.head, &p.v, which));
    const double vhu = dot(flat(p.v), gradient(ctx, p, p.head, &p.u, which));
    EXPECT_NEAR(uhv, vhu, 1e-10 * std::max(1.0, std::abs(uhv))) << "cotangents " << static_cast<int>(which);
  }
}

/// Σ_bg c_bg (∇ log p_bg · t) = ⟨backward(c), t⟩: log_prob_jvp is the transpose of backward.
TEST_P(CholeskyGaussianSecondOrder, LogProbJvpIsTheTransposeOfBackward) {
  const Shape s = GetParam();
  const Problem p(s, 400 + static_cast<std::uint64_t>(s.batch * 31 + s.n * 7 + s.generations));
  Context ctx = cpu_context();
  const double lhs = dot(p.d_log_prob, jvp(ctx, p, p.u));
  const double rhs = dot(flat(p.u), gradient(ctx, p, p.head, nullptr, Cotangents::log_prob_only));
  EXPECT_NEAR(lhs, rhs, 1e-10 * std::max(1.0, std::abs(rhs)));
}

/// The cpu backend in float agrees with double.
TEST_P(CholeskyGaussianSecondOrder, FloatMatchesDouble) {
  const Shape s = GetParam();
  const Problem p(s, 500 + static_cast<std::uint64_t>(s.batch * 31 + s.n * 7 + s.generations));
  Context ctx = cpu_context();
  const std::int64_t B = s.batch, n = s.n, G = s.generations, P = packed_size(n), R = p.tril_rows();
  auto to_float = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  const std::vector<float> mean = to_float(p.head.mean), tril = to_float(p.head.tril), t_mean = to_float(p.u.mean),
                           t_tril = to_float(p.u.tril), y = to_float(p.samples), c = to_float(p.d_log_prob),
                           e = to_float(p.d_entropy);
  const CholeskyGaussian<float> head{matrix_view(mean.data(), B, n), matrix_view(tril.data(), R, P),
                                     static_cast<float>(p.jitter)};
  const CholeskyGaussian<float> tangent{matrix_view(t_mean.data(), B, n), matrix_view(t_tril.data(), R, P)};
  GuardedMatrix<float> out(ctx, B, G), g_mean(ctx, B, n), g_tril(ctx, R, P);
  log_prob_jvp(ctx, head, matrix_view(y.data(), B * G, n), tangent, out.view());
  backward_tangent(ctx, head, matrix_view(y.data(), B * G, n), matrix_view(c.data(), B, G), vector_view(e.data(), B),
                   tangent, {g_mean.view(), g_tril.view()});
  const std::vector<double> jvp_ref = jvp(ctx, p, p.u);
  std::vector<double> grad_ref = gradient(ctx, p, p.head, &p.u, Cotangents::both);
  const std::vector<double> mean_ref(grad_ref.begin(), grad_ref.begin() + B * n),
      tril_ref(grad_ref.begin() + B * n, grad_ref.end());
  D2R_EXPECT_CLOSE(out.values_checked(), jvp_ref, 1e-3, 1e-4 * max_abs(jvp_ref));
  D2R_EXPECT_CLOSE(g_mean.values_checked(), mean_ref, 1e-3, 1e-4 * std::max(1.0, max_abs(mean_ref)));
  D2R_EXPECT_CLOSE(g_tril.values_checked(), tril_ref, 1e-3, 1e-4 * max_abs(tril_ref));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CholeskyGaussianSecondOrder,
                         ::testing::Values(Shape{1, 1, 1, false}, Shape{1, 1, 4, true}, Shape{3, 2, 5, false},
                                           Shape{3, 2, 5, true}, Shape{2, 5, 3, false}, Shape{4, 5, 3, true},
                                           Shape{1, 8, 6, false}, Shape{2, 12, 2, true}),
                         [](const ::testing::TestParamInfo<Shape>& info) {
                           const Shape& s = info.param;
                           return fmt::format("B{}_n{}_G{}_{}", s.batch, s.n, s.generations,
                                              s.shared ? "shared" : "perrow");
                         });

/// A zero tangent gives zeros; the tangent's jitter is ignored.
TEST(CholeskyGaussianSecondOrderCases, ZeroTangentAndIgnoredJitter) {
  const Problem p({3, 4, 3, false}, 77);
  Context ctx = cpu_context();
  Outputs zero{std::vector<double>(p.u.mean.size(), 0.0), std::vector<double>(p.u.tril.size(), 0.0)};
  for (double v : jvp(ctx, p, zero)) EXPECT_EQ(v, 0.0);
  for (double v : gradient(ctx, p, p.head, &zero, Cotangents::both)) EXPECT_EQ(v, 0.0);
  // The same tangent with another jitter gives the same bits.
  CholeskyGaussian<double> t = p.view(p.u);
  t.jitter = 0.5;
  GuardedMatrix<double> out(ctx, 3, 3);
  log_prob_jvp(ctx, p.view(p.head), p.samples_view(), t, out.view());
  EXPECT_EQ(out.values_checked(), jvp(ctx, p, p.u));
}

/// A shared 1-row tril receives the sum over rows of the per-row tangents.
TEST(CholeskyGaussianSecondOrderCases, SharedTrilIsTheSumOverRows) {
  const Problem shared({4, 3, 3, true}, 91);
  Problem per_row({4, 3, 3, false}, 91);
  const std::int64_t P = packed_size(3);
  per_row.head.mean = shared.head.mean;
  per_row.samples = shared.samples;
  per_row.d_log_prob = shared.d_log_prob;
  per_row.d_entropy = shared.d_entropy;
  per_row.u.mean = shared.u.mean;
  per_row.head.tril.clear();
  per_row.u.tril.clear();
  for (int b = 0; b < 4; ++b) {
    per_row.head.tril.insert(per_row.head.tril.end(), shared.head.tril.begin(), shared.head.tril.end());
    per_row.u.tril.insert(per_row.u.tril.end(), shared.u.tril.begin(), shared.u.tril.end());
  }
  Context ctx = cpu_context();
  const std::vector<double> a = gradient(ctx, shared, shared.head, &shared.u, Cotangents::both);
  const std::vector<double> b = gradient(ctx, per_row, per_row.head, &per_row.u, Cotangents::both);
  for (std::int64_t i = 0; i < 4 * 3; ++i) EXPECT_NEAR(a[i], b[i], 1e-12 * (1 + std::abs(b[i])));
  for (std::int64_t k = 0; k < P; ++k) {
    double sum = 0;
    for (std::int64_t r = 0; r < 4; ++r) sum += b[12 + r * P + k];
    EXPECT_NEAR(a[12 + k], sum, 1e-12 * (1 + std::abs(sum)));
  }
  EXPECT_EQ(jvp(ctx, shared, shared.u), jvp(ctx, per_row, per_row.u));
}

// ---------------------------------------------------------------- argument checking
/// Runs `call` and checks that it throws d2r::Error about `argument` whose message mentions `text`.
template <class F>
void expect_rejected(F&& call, const std::string& argument, const std::string& text) {
  try {
    call();
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), argument) << "what(): " << e.what();
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos)
        << "what(): " << e.what() << "\nexpected it to mention: " << text;
    return;
  }
  ADD_FAILURE() << "no d2r::Error thrown; expected one about '" << argument << "'";
}

class CholeskyGaussianSecondOrderErrors : public ::testing::Test {
 protected:
  static constexpr std::int64_t kB = 3, kN = 3, kG = 2, kP = 6;
  Context ctx = cpu_context();
  Problem p{{kB, kN, kG, false}, 5};
  GuardedMatrix<double> out{ctx, kB, kG}, g_mean{ctx, kB, kN}, g_tril{ctx, kB, kP};

  /// Both entry points reject (head, tangent, samples, ...) with `argument` / `text` and write nothing.
  void expect_both_reject(const CholeskyGaussian<double>& head, const CholeskyGaussian<double>& tangent,
                          MatrixView<const double> samples, MatrixView<const double> dlp, VectorView<const double> dent,
                          const std::string& argument, const std::string& text) {
    {
      SCOPED_TRACE("log_prob_jvp");
      expect_rejected([&] { log_prob_jvp(ctx, head, samples, tangent, out.view()); }, argument, text);
    }
    {
      SCOPED_TRACE("backward_tangent");
      expect_rejected([&] { backward_tangent(ctx, head, samples, dlp, dent, tangent, {g_mean.view(), g_tril.view()}); },
                      argument, text);
    }
    EXPECT_TRUE(out.untouched());
    EXPECT_TRUE(g_mean.untouched());
    EXPECT_TRUE(g_tril.untouched());
  }
};

TEST_F(CholeskyGaussianSecondOrderErrors, RejectsBadTangentShapes) {
  Outputs t = p.u;
  CholeskyGaussian<double> tangent = p.view(t);
  tangent.mean = matrix_view(t.mean.data(), kB - 1, kN);
  expect_both_reject(p.view(p.head), tangent, p.samples_view(), p.d_log_prob_view(), p.d_entropy_view(),
                     "tangent.mean", "3");
  tangent = p.view(t);
  tangent.tril = matrix_view(t.tril.data(), 1, kP);  // head is per row: the tangent must be too
  expect_both_reject(p.view(p.head), tangent, p.samples_view(), p.d_log_prob_view(), p.d_entropy_view(),
                     "tangent.tril", "3");
  tangent = p.view(t);
  tangent.tril = matrix_view(t.tril.data(), kB, kP - 1);
  expect_both_reject(p.view(p.head), tangent, p.samples_view(), p.d_log_prob_view(), p.d_entropy_view(),
                     "tangent.tril", "6");
}

TEST_F(CholeskyGaussianSecondOrderErrors, RejectsNonFiniteTangentSamplesAndHead) {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  Outputs t = p.u;
  t.tril[4] = kNaN;
  expect_both_reject(p.view(p.head), p.view(t), p.samples_view(), p.d_log_prob_view(), p.d_entropy_view(),
                     "tangent.tril", "");
  t = p.u;
  t.mean[2] = std::numeric_limits<double>::infinity();
  expect_both_reject(p.view(p.head), p.view(t), p.samples_view(), p.d_log_prob_view(), p.d_entropy_view(),
                     "tangent.mean", "");
  std::vector<double> samples = p.samples;
  samples[5] = kNaN;
  expect_both_reject(p.view(p.head), p.view(p.u), matrix_view(samples.data(), kB * kG, kN), p.d_log_prob_view(),
                     p.d_entropy_view(), "samples", "");
  Outputs h = p.head;
  h.mean[0] = kNaN;
  expect_both_reject(p.view(h), p.view(p.u), p.samples_view(), p.d_log_prob_view(), p.d_entropy_view(), "head.mean",
                     "");
}

TEST_F(CholeskyGaussianSecondOrderErrors, RejectsBadOutputsAndCotangents) {
  // log_prob_jvp: out of the wrong shape, out aliasing the tangent.
  GuardedMatrix<double> wrong(ctx, kB + 1, kG);
  expect_rejected([&] { log_prob_jvp(ctx, p.view(p.head), p.samples_view(), p.view(p.u), wrong.view()); }, "out",
                  "");
  EXPECT_TRUE(wrong.untouched());
  Outputs t = p.u;
  expect_rejected(
      [&] {
        log_prob_jvp(ctx, p.view(p.head), p.samples_view(), p.view(t), matrix_view(t.mean.data(), kB, kG));
      },
      "out", "");
  EXPECT_EQ(t.mean, p.u.mean);
  // backward_tangent: non-finite cotangents, d_entropy of the wrong length, grad aliasing the tangent.
  std::vector<double> dlp = p.d_log_prob;
  dlp[1] = std::numeric_limits<double>::infinity();
  expect_rejected(
      [&] {
        backward_tangent(ctx, p.view(p.head), p.samples_view(), matrix_view(dlp.data(), kB, kG), p.d_entropy_view(),
                         p.view(p.u), {g_mean.view(), g_tril.view()});
      },
      "d_log_prob", "");
  expect_rejected(
      [&] {
        backward_tangent(ctx, p.view(p.head), p.samples_view(), p.d_log_prob_view(),
                         vector_view(p.d_entropy.data(), kB - 1), p.view(p.u), {g_mean.view(), g_tril.view()});
      },
      "d_entropy", "");
  expect_rejected(
      [&] {
        backward_tangent(ctx, p.view(p.head), p.samples_view(), p.d_log_prob_view(), p.d_entropy_view(), p.view(t),
                         {matrix_view(t.mean.data(), kB, kN), g_tril.view()});
      },
      "grad_tangent.mean", "");
  // grad_tangent.tril must have the head's tril rows.
  GuardedMatrix<double> one_row(ctx, 1, kP);
  expect_rejected(
      [&] {
        backward_tangent(ctx, p.view(p.head), p.samples_view(), p.d_log_prob_view(), p.d_entropy_view(), p.view(p.u),
                         {g_mean.view(), one_row.view()});
      },
      "grad_tangent.tril", "");
  EXPECT_TRUE(one_row.untouched());
  EXPECT_TRUE(g_mean.untouched());
  EXPECT_TRUE(g_tril.untouched());
  EXPECT_EQ(t.mean, p.u.mean);
}

// ---------------------------------------------------------------- exact-objective tangent
/// Reward parameters of a form in n dims (full: a well-conditioned Cholesky factor R).
std::vector<double> exact_reward_params(RewardForm form, std::int64_t n, TestRng& rng) {
  std::vector<double> u(static_cast<std::size_t>(reward_param_count(form, n)));
  for (double& x : u) x = form == RewardForm::full ? rng.uniform(-0.4, 0.4) : rng.uniform(0.3, 1.5);
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < n; ++i) u[static_cast<std::size_t>(packed_index(i, i))] = rng.uniform(0.6, 1.2);
  return u;
}

/// exact_objective's head gradient at `at`, as one vector [mean..., tril...].
std::vector<double> exact_gradient(Context& ctx, const Problem& p, const Outputs& at, const std::vector<double>& y,
                                   const MahalanobisReward<double>& reward, const PgOptions<double>& options) {
  const std::int64_t B = p.s.batch, n = p.s.n, P = packed_size(n);
  std::vector<double> rows(static_cast<std::size_t>(B));
  GuardedMatrix<double> g_mean(ctx, B, n), g_tril(ctx, p.tril_rows(), P);
  exact_objective(ctx, p.view(at), matrix_view(y.data(), B, n), reward, options,
                  ObjectiveRows<double>{vector_view(rows.data(), B), {}}, {g_mean.view(), g_tril.view()});
  std::vector<double> all = g_mean.values_checked();
  const std::vector<double> tril = g_tril.values_checked();
  all.insert(all.end(), tril.begin(), tril.end());
  return all;
}

/// exact_backward_tangent along t, as one vector [mean..., tril...].
std::vector<double> exact_tangent(Context& ctx, const Problem& p, const Outputs& t,
                                  const MahalanobisReward<double>& reward, const PgOptions<double>& options) {
  GuardedMatrix<double> g_mean(ctx, p.s.batch, p.s.n), g_tril(ctx, p.tril_rows(), packed_size(p.s.n));
  exact_backward_tangent(ctx, p.view(p.head), reward, options, p.view(t), {g_mean.view(), g_tril.view()});
  std::vector<double> all = g_mean.values_checked();
  const std::vector<double> tril = g_tril.values_checked();
  all.insert(all.end(), tril.begin(), tril.end());
  return all;
}

class CholeskyGaussianExactBackwardTangent : public ::testing::TestWithParam<Shape> {};

/// exact_backward_tangent is the derivative of exact_objective's head gradient along the tangent
/// (central differences), for every reward form, with and without the per-dimension mean; the
/// Hessian it applies is symmetric.
TEST_P(CholeskyGaussianExactBackwardTangent, MatchesCentralDifferencesOfTheExactGradient) {
  const Shape s = GetParam();
  Context ctx = cpu_context();
  for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    for (const bool per_dim : {false, true}) {
      SCOPED_TRACE(fmt::format("form {} per_dim {}", static_cast<int>(form), per_dim));
      const Problem p(s, 600 + static_cast<std::uint64_t>(s.batch * 31 + s.n * 7) + static_cast<std::uint64_t>(form));
      TestRng rng(17 + static_cast<std::uint64_t>(form));
      const std::vector<double> y = rng.vector<double>(static_cast<std::size_t>(s.batch * s.n), -1.0, 1.0);
      const std::vector<double> u = exact_reward_params(form, s.n, rng);
      const MahalanobisReward<double> reward{form, vector_view(u.data(), static_cast<std::int64_t>(u.size()))};
      const PgOptions<double> options{.entropy_weight = 0.7, .per_dimension_mean = per_dim, .normaliser_rows = 2 * s.batch};
      const double h = 1e-5;
      for (const Outputs* t : {&p.u, &p.v}) {
        const std::vector<double> plus = exact_gradient(ctx, p, p.moved(*t, h), y, reward, options);
        const std::vector<double> minus = exact_gradient(ctx, p, p.moved(*t, -h), y, reward, options);
        std::vector<double> expected(plus.size());
        for (std::size_t i = 0; i < plus.size(); ++i) expected[i] = (plus[i] - minus[i]) / (2 * h);
        const std::vector<double> actual = exact_tangent(ctx, p, *t, reward, options);
        ASSERT_GT(max_abs(expected), 1e-3);
        D2R_EXPECT_CLOSE(actual, expected, 1e-6, 1e-7 * max_abs(expected));
      }
      const double uhv = dot(flat(p.u), exact_tangent(ctx, p, p.v, reward, options));
      const double vhu = dot(flat(p.v), exact_tangent(ctx, p, p.u, reward, options));
      EXPECT_NEAR(uhv, vhu, 1e-10 * std::max(1.0, std::abs(uhv)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CholeskyGaussianExactBackwardTangent,
                         ::testing::Values(Shape{1, 1, 1, false}, Shape{3, 2, 1, false}, Shape{3, 2, 1, true},
                                           Shape{2, 5, 1, false}, Shape{4, 5, 1, true}, Shape{2, 9, 1, true}),
                         [](const ::testing::TestParamInfo<Shape>& info) {
                           const Shape& s = info.param;
                           return fmt::format("B{}_n{}_{}", s.batch, s.n, s.shared ? "shared" : "perrow");
                         });

/// Every argument is checked before grad_tangent is written.
TEST(CholeskyGaussianExactBackwardTangentErrors, RejectsBadArgumentsBeforeWriting) {
  Context ctx = cpu_context();
  const Problem p({3, 3, 1, false}, 8);
  std::vector<double> u{0.9, 1.2, 0.7}, bad_u{0.9, -1.0, 0.7};
  const MahalanobisReward<double> reward{RewardForm::diagonal, vector_view(u.data(), 3)};
  GuardedMatrix<double> g_mean(ctx, 3, 3), g_tril(ctx, 3, 6), one_row(ctx, 1, 6);
  const CholeskyGaussianGrad<double> out{g_mean.view(), g_tril.view()};
  const auto call = [&](const MahalanobisReward<double>& r, const PgOptions<double>& o,
                        const CholeskyGaussian<double>& t, const CholeskyGaussianGrad<double>& g) {
    exact_backward_tangent(ctx, p.view(p.head), r, o, t, g);
  };
  expect_rejected([&] { call({RewardForm::diagonal, vector_view(bad_u.data(), 3)}, {}, p.view(p.u), out); },
                  "reward.params", "");
  expect_rejected([&] { call({RewardForm::diagonal, vector_view(u.data(), 2)}, {}, p.view(p.u), out); },
                  "reward.params", "");
  expect_rejected([&] { call(reward, {.entropy_weight = -1.0}, p.view(p.u), out); }, "options.entropy_weight", "");
  expect_rejected([&] { call(reward, {.normaliser_rows = 2}, p.view(p.u), out); }, "options.normaliser_rows", "");
  CholeskyGaussian<double> t = p.view(p.u);
  t.tril = matrix_view(p.u.tril.data(), 1, 6);  // head is per row: the tangent must be too
  expect_rejected([&] { call(reward, {}, t, out); }, "tangent.tril", "");
  Outputs bad_t = p.u;
  bad_t.mean[4] = std::numeric_limits<double>::quiet_NaN();
  expect_rejected([&] { call(reward, {}, p.view(bad_t), out); }, "tangent.mean", "");
  expect_rejected([&] { call(reward, {}, p.view(p.u), {g_mean.view(), one_row.view()}); }, "grad_tangent.tril", "");
  Outputs alias = p.u;
  expect_rejected([&] { call(reward, {}, p.view(alias), {matrix_view(alias.mean.data(), 3, 3), g_tril.view()}); },
                  "grad_tangent.mean", "overlaps");
  std::vector<double> shared_buffer{0.9, 1.2, 0.7, 0, 0, 0, 0, 0, 0};  // reward.params inside grad_tangent.mean
  expect_rejected([&] {
    call({RewardForm::diagonal, vector_view(shared_buffer.data(), 3)}, {}, p.view(p.u),
         {matrix_view(shared_buffer.data(), 3, 3), g_tril.view()});
  }, "grad_tangent.mean", "reward.params");
  EXPECT_EQ(shared_buffer[3], 0.0);
  EXPECT_EQ(alias.mean, p.u.mean);
  EXPECT_TRUE(g_mean.untouched());
  EXPECT_TRUE(g_tril.untouched());
  EXPECT_TRUE(one_row.untouched());
}

}  // namespace
}  // namespace d2r
