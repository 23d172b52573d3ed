// Second-order primitives of the diagonal-Gaussian head on the cpu backend (double):
// log_prob_jvp against central differences of log_prob along the tangent, backward_tangent
// against central differences of backward along the tangent (the Hessian is the Jacobian of the
// gradient), symmetry of the Hessian, per-row and shared log_std, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <sstream>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::expect_error;
using d2r::test::GuardedMatrix;
using d2r::test::TestRng;

/// A diagonal-Gaussian head, its samples and cotangents, and a tangent, all in double on the host.
struct DiagProblem {
  std::int64_t B, n, G, S;
  std::vector<double> mean, log_std, samples, c, e, t_mean, t_log_std;

  DiagProblem(std::int64_t b, std::int64_t dims, std::int64_t g, bool shared, std::uint64_t seed)
      : B(b), n(dims), G(g), S(shared ? 1 : b) {
    TestRng rng(seed);
    mean = rng.vector<double>(B * n, -1.5, 1.5);
    log_std = rng.vector<double>(S * n, -0.7, 0.7);
    samples = rng.vector<double>(B * G * n, -3, 3);
    c = rng.vector<double>(B * G, -1, 1);
    e = rng.vector<double>(B, -1, 1);
    t_mean = rng.vector<double>(B * n, -1, 1);
    t_log_std = rng.vector<double>(S * n, -1, 1);
  }
  [[nodiscard]] d2r::DiagGaussian<double> head(const std::vector<double>& m, const std::vector<double>& s) const {
    return {d2r::matrix_view<const double>(m.data(), B, n), d2r::matrix_view<const double>(s.data(), S, n)};
  }
  [[nodiscard]] d2r::DiagGaussian<double> head() const { return head(mean, log_std); }
  [[nodiscard]] d2r::DiagGaussian<double> tangent() const { return head(t_mean, t_log_std); }
  [[nodiscard]] d2r::MatrixView<const double> y() const {
    return d2r::matrix_view<const double>(samples.data(), B * G, n);
  }
  [[nodiscard]] d2r::MatrixView<const double> d_log_prob(bool with) const {
    return with ? d2r::matrix_view<const double>(c.data(), B, G) : d2r::MatrixView<const double>{};
  }
  [[nodiscard]] d2r::VectorView<const double> d_entropy(bool with) const {
    return with ? d2r::vector_view<const double>(e.data(), B) : d2r::VectorView<const double>{};
  }
  /// The head moved by eps along (dm, ds).
  [[nodiscard]] std::pair<std::vector<double>, std::vector<double>> moved(double eps, const std::vector<double>& dm,
                                                                          const std::vector<double>& ds) const {
    std::vector<double> m = mean, s = log_std;
    for (std::size_t i = 0; i < m.size(); ++i) m[i] += eps * dm[i];
    for (std::size_t i = 0; i < s.size(); ++i) s[i] += eps * ds[i];
    return {m, s};
  }
};

struct DiagSoCase {
  std::int64_t B, n, G;
  bool shared;
};
std::ostream& operator<<(std::ostream& os, const DiagSoCase& c) {
  return os << "B" << c.B << "_n" << c.n << "_G" << c.G << (c.shared ? "_shared" : "_per_row");
}

class DiagGaussianSecondOrder : public ::testing::TestWithParam<DiagSoCase> {
 protected:
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 99}};
};

TEST_P(DiagGaussianSecondOrder, LogProbJvpMatchesCentralDifferences) {
  const auto [B, n, G, shared] = GetParam();
  const DiagProblem p(B, n, G, shared, static_cast<std::uint64_t>(B * 131 + n * 7 + G));
  std::vector<double> jvp(B * G);
  d2r::log_prob_jvp(ctx, p.head(), p.y(), p.tangent(), d2r::matrix_view(jvp.data(), B, G));
  const double h = 1e-5;
  std::vector<double> up(B * G), down(B * G);
  const auto [mu_up, s_up] = p.moved(h, p.t_mean, p.t_log_std);
  const auto [mu_dn, s_dn] = p.moved(-h, p.t_mean, p.t_log_std);
  d2r::log_prob(ctx, p.head(mu_up, s_up), p.y(), d2r::matrix_view(up.data(), B, G));
  d2r::log_prob(ctx, p.head(mu_dn, s_dn), p.y(), d2r::matrix_view(down.data(), B, G));
  std::vector<double> fd(B * G);
  for (std::int64_t i = 0; i < B * G; ++i) fd[i] = (up[i] - down[i]) / (2 * h);
  D2R_EXPECT_CLOSE(jvp, fd, 1e-6, 1e-6 * static_cast<double>(n));
}

TEST_P(DiagGaussianSecondOrder, BackwardTangentMatchesCentralDifferencesOfBackward) {
  const auto [B, n, G, shared] = GetParam();
  const std::int64_t S = shared ? 1 : B;
  const DiagProblem p(B, n, G, shared, static_cast<std::uint64_t>(B * 17 + n * 5 + G + 3));
  for (const bool with_c : {true, false}) {
    for (const bool with_e : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "d_log_prob " << with_c << ", d_entropy " << with_e);
      std::vector<double> tm(B * n, -7.0), ts(S * n, -7.0);
      d2r::backward_tangent(ctx, p.head(), p.y(), p.d_log_prob(with_c), p.d_entropy(with_e), p.tangent(),
                            d2r::DiagGaussianGrad<double>{d2r::matrix_view(tm.data(), B, n),
                                                          d2r::matrix_view(ts.data(), S, n)});
      const double h = 1e-5;
      std::vector<double> gm_up(B * n), gs_up(S * n), gm_dn(B * n), gs_dn(S * n);
      const auto [mu_up, s_up] = p.moved(h, p.t_mean, p.t_log_std);
      const auto [mu_dn, s_dn] = p.moved(-h, p.t_mean, p.t_log_std);
      d2r::backward(ctx, p.head(mu_up, s_up), p.y(), p.d_log_prob(with_c), p.d_entropy(with_e),
                    d2r::DiagGaussianGrad<double>{d2r::matrix_view(gm_up.data(), B, n),
                                                  d2r::matrix_view(gs_up.data(), S, n)});
      d2r::backward(ctx, p.head(mu_dn, s_dn), p.y(), p.d_log_prob(with_c), p.d_entropy(with_e),
                    d2r::DiagGaussianGrad<double>{d2r::matrix_view(gm_dn.data(), B, n),
                                                  d2r::matrix_view(gs_dn.data(), S, n)});
      std::vector<double> fd_m(B * n), fd_s(S * n);
      for (std::int64_t i = 0; i < B * n; ++i) fd_m[i] = (gm_up[i] - gm_dn[i]) / (2 * h);
      for (std::int64_t i = 0; i < S * n; ++i) fd_s[i] = (gs_up[i] - gs_dn[i]) / (2 * h);
      const double scale = static_cast<double>(G * (shared ? B : 1));
      D2R_EXPECT_CLOSE(tm, fd_m, 1e-6, 1e-7 * scale);
      D2R_EXPECT_CLOSE(ts, fd_s, 1e-6, 1e-7 * scale);
      if (!with_c) {
        for (double v : tm) EXPECT_EQ(v, 0.0);
        for (double v : ts) EXPECT_EQ(v, 0.0);
      }
    }
  }
}

TEST_P(DiagGaussianSecondOrder, HessianIsSymmetric) {
  const auto [B, n, G, shared] = GetParam();
  const std::int64_t S = shared ? 1 : B;
  const DiagProblem p(B, n, G, shared, static_cast<std::uint64_t>(B + n + G + 11));
  TestRng rng(5);
  const auto wm = rng.vector<double>(B * n, -1, 1), ws = rng.vector<double>(S * n, -1, 1);
  const d2r::DiagGaussian<double> u = p.tangent(), w = p.head(wm, ws);
  std::vector<double> hu_m(B * n), hu_s(S * n), hw_m(B * n), hw_s(S * n);
  d2r::backward_tangent(ctx, p.head(), p.y(), p.d_log_prob(true), p.d_entropy(true), u,
                        d2r::DiagGaussianGrad<double>{d2r::matrix_view(hu_m.data(), B, n),
                                                      d2r::matrix_view(hu_s.data(), S, n)});
  d2r::backward_tangent(ctx, p.head(), p.y(), p.d_log_prob(true), p.d_entropy(true), w,
                        d2r::DiagGaussianGrad<double>{d2r::matrix_view(hw_m.data(), B, n),
                                                      d2r::matrix_view(hw_s.data(), S, n)});
  double w_hu = 0, u_hw = 0, norm = 0;
  for (std::int64_t i = 0; i < B * n; ++i) {
    w_hu += wm[i] * hu_m[i];
    u_hw += p.t_mean[i] * hw_m[i];
    norm += std::abs(wm[i] * hu_m[i]);
  }
  for (std::int64_t i = 0; i < S * n; ++i) {
    w_hu += ws[i] * hu_s[i];
    u_hw += p.t_log_std[i] * hw_s[i];
    norm += std::abs(ws[i] * hu_s[i]);
  }
  EXPECT_NEAR(w_hu, u_hw, 1e-12 * (1 + norm));
  EXPECT_GT(norm, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Sizes, DiagGaussianSecondOrder,
                         ::testing::Values(DiagSoCase{1, 1, 1, false}, DiagSoCase{1, 3, 2, true},
                                           DiagSoCase{3, 4, 5, false}, DiagSoCase{3, 4, 5, true},
                                           DiagSoCase{7, 33, 3, false}, DiagSoCase{9, 17, 6, true}),
                         [](const auto& info) {
                           std::ostringstream os;
                           os << info.param;
                           return os.str();
                         });

TEST(DiagGaussianSecondOrderRef, LogProbJvpClosedFormOneDim) {
  // n = 1: d/dt log p = δ/σ² μ̇ + (δ²/σ² − 1) ṡ.
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const double mu = 0.3, s = -0.2, y = 1.1, mu_dot = 0.7, s_dot = -0.4;
  const d2r::DiagGaussian<double> head{d2r::matrix_view<const double>(&mu, 1, 1), d2r::matrix_view<const double>(&s, 1, 1)};
  const d2r::DiagGaussian<double> tangent{d2r::matrix_view<const double>(&mu_dot, 1, 1),
                                          d2r::matrix_view<const double>(&s_dot, 1, 1)};
  double out = 0;
  d2r::log_prob_jvp(ctx, head, d2r::matrix_view<const double>(&y, 1, 1), tangent, d2r::matrix_view(&out, 1, 1));
  const double v = std::exp(-2 * s), d = y - mu;
  EXPECT_NEAR(out, d * v * mu_dot + (d * d * v - 1) * s_dot, 1e-14);
}

TEST(DiagGaussianSecondOrderRef, FloatCpuMatchesDouble) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t B = 4, n = 5, G = 3;
  const DiagProblem p(B, n, G, true, 8);
  auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  const auto mean = f(p.mean), log_std = f(p.log_std), y = f(p.samples), c = f(p.c), tm = f(p.t_mean),
             ts = f(p.t_log_std);
  const d2r::DiagGaussian<float> head{d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(log_std.data(), 1, n)};
  const d2r::DiagGaussian<float> tangent{d2r::matrix_view(tm.data(), B, n), d2r::matrix_view(ts.data(), 1, n)};
  std::vector<float> jvp(B * G), gm(B * n), gs(n);
  d2r::log_prob_jvp(ctx, head, d2r::matrix_view(y.data(), B * G, n), tangent, d2r::matrix_view(jvp.data(), B, G));
  d2r::backward_tangent(ctx, head, d2r::matrix_view(y.data(), B * G, n), d2r::matrix_view(c.data(), B, G),
                        d2r::VectorView<const float>{}, tangent,
                        d2r::DiagGaussianGrad<float>{d2r::matrix_view(gm.data(), B, n), d2r::matrix_view(gs.data(), 1, n)});
  std::vector<double> jvp_d(B * G), gm_d(B * n), gs_d(n);
  d2r::log_prob_jvp(ctx, p.head(), p.y(), p.tangent(), d2r::matrix_view(jvp_d.data(), B, G));
  d2r::backward_tangent(ctx, p.head(), p.y(), p.d_log_prob(true), p.d_entropy(false), p.tangent(),
                        d2r::DiagGaussianGrad<double>{d2r::matrix_view(gm_d.data(), B, n),
                                                      d2r::matrix_view(gs_d.data(), 1, n)});
  D2R_EXPECT_CLOSE(jvp, jvp_d, 1e-4, 1e-4);
  D2R_EXPECT_CLOSE(gm, gm_d, 1e-4, 1e-4);
  D2R_EXPECT_CLOSE(gs, gs_d, 1e-4, 1e-4);
}

// ---- bad input: a d2r::Error naming the argument, outputs untouched.
class DiagGaussianSecondOrderErrors : public ::testing::Test {
 protected:
  static constexpr std::int64_t B = 3, n = 2, G = 4;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  std::vector<float> mean = std::vector<float>(B * n, 0.5f), log_std = std::vector<float>(B * n, 0.1f);
  std::vector<float> samples_in = std::vector<float>(B * G * n, 0.25f);
  std::vector<float> c = std::vector<float>(B * G, 1.0f), e = std::vector<float>(B, 1.0f);
  std::vector<float> t_mean = std::vector<float>(B * n, 0.3f), t_log_std = std::vector<float>(B * n, -0.2f);
  GuardedMatrix<float> out{ctx, B, G}, g_mean{ctx, B, n}, g_ls{ctx, B, n};

  d2r::DiagGaussian<float> head() const {
    return {d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(log_std.data(), B, n)};
  }
  d2r::DiagGaussian<float> tangent() const {
    return {d2r::matrix_view(t_mean.data(), B, n), d2r::matrix_view(t_log_std.data(), B, n)};
  }
  d2r::MatrixView<const float> samples() const { return d2r::matrix_view(samples_in.data(), B * G, n); }
  d2r::MatrixView<const float> d_log_prob() const { return d2r::matrix_view(c.data(), B, G); }
  d2r::VectorView<const float> d_entropy() const { return d2r::vector_view(e.data(), B); }
  d2r::DiagGaussianGrad<float> grad() { return {g_mean.view(), g_ls.view()}; }
  void expect_untouched() {
    EXPECT_TRUE(out.untouched());
    EXPECT_TRUE(g_mean.untouched());
    EXPECT_TRUE(g_ls.untouched());
  }
};

TEST_F(DiagGaussianSecondOrderErrors, MismatchedTangentShapes) {
  const d2r::DiagGaussian<float> short_mean{d2r::matrix_view(t_mean.data(), B - 1, n),
                                            d2r::matrix_view(t_log_std.data(), B, n)};
  expect_error([&] { d2r::log_prob_jvp(ctx, head(), samples(), short_mean, out.view()); }, "tangent.mean",
               "expected a 3 x 2 matrix");
  expect_error([&] { d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), short_mean, grad()); },
               "tangent.mean", "expected a 3 x 2 matrix");
  // A shared tangent log_std for a per-row head (and the reverse).
  const d2r::DiagGaussian<float> shared_ls{d2r::matrix_view(t_mean.data(), B, n),
                                           d2r::matrix_view(t_log_std.data(), 1, n)};
  expect_error([&] { d2r::log_prob_jvp(ctx, head(), samples(), shared_ls, out.view()); }, "tangent.log_std",
               "expected a 3 x 2 matrix");
  const d2r::DiagGaussian<float> shared_head{d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(log_std.data(), 1, n)};
  expect_error([&] { d2r::backward_tangent(ctx, shared_head, samples(), d_log_prob(), d_entropy(), tangent(), grad()); },
               "tangent.log_std", "expected a 1 x 2 matrix");
  const d2r::DiagGaussian<float> wide{d2r::matrix_view(t_mean.data(), B, n - 1),
                                      d2r::matrix_view(t_log_std.data(), B, n)};
  expect_error([&] { d2r::log_prob_jvp(ctx, head(), samples(), wide, out.view()); }, "tangent.mean",
               "expected a 3 x 2 matrix");
  expect_untouched();
}

TEST_F(DiagGaussianSecondOrderErrors, BadOutputsAndCotangents) {
  GuardedMatrix<float> small{ctx, B - 1, G};
  expect_error([&] { d2r::log_prob_jvp(ctx, head(), samples(), tangent(), small.view()); }, "out",
               "expected a 3 x 4 matrix");
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d2r::matrix_view(c.data(), B - 1, G), d_entropy(), tangent(), grad());
  }, "d_log_prob", "expected a 3 x 4 matrix");
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d2r::vector_view(e.data(), B - 1), tangent(), grad());
  }, "d_entropy", "expected a 1 x 3 matrix");
  GuardedMatrix<float> g_small{ctx, 1, n};
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), tangent(),
                          d2r::DiagGaussianGrad<float>{g_mean.view(), g_small.view()});
  }, "grad_tangent.log_std", "expected a 3 x 2 matrix");
  EXPECT_TRUE(small.untouched());
  EXPECT_TRUE(g_small.untouched());
  expect_untouched();
}

TEST_F(DiagGaussianSecondOrderErrors, OverlappingOutputs) {
  // out over the tangent.
  std::vector<float> t_alias(B * G + B * n, 0.1f);
  const d2r::DiagGaussian<float> aliased{d2r::matrix_view<const float>(t_alias.data(), B, n),
                                         d2r::matrix_view(t_log_std.data(), B, n)};
  expect_error([&] { d2r::log_prob_jvp(ctx, head(), samples(), aliased, d2r::matrix_view(t_alias.data(), B, G)); },
               "out", "overlaps argument 'tangent.mean'");
  // grad_tangent.mean over the tangent's log_std, and the two gradient parts over each other.
  std::vector<float> shared_buf(B * n, 0.0f);
  const d2r::DiagGaussian<float> t2{d2r::matrix_view(t_mean.data(), B, n),
                                    d2r::matrix_view<const float>(shared_buf.data(), B, n)};
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), t2,
                          d2r::DiagGaussianGrad<float>{d2r::matrix_view(shared_buf.data(), B, n), g_ls.view()});
  }, "grad_tangent.mean", "overlaps argument 'tangent.log_std'");
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), tangent(),
                          d2r::DiagGaussianGrad<float>{g_mean.view(), g_mean.view()});
  }, "grad_tangent.mean", "overlaps argument 'grad_tangent.log_std'");
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), tangent(),
                          d2r::DiagGaussianGrad<float>{g_mean.view(), d2r::matrix_view(mean.data(), B, n)});
  }, "grad_tangent.log_std", "overlaps argument 'head.mean'");
  expect_untouched();
}

TEST_F(DiagGaussianSecondOrderErrors, NonFiniteTangent) {
  t_log_std[3] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] { d2r::log_prob_jvp(ctx, head(), samples(), tangent(), out.view()); }, "tangent.log_std",
               "element (1, 1)");
  expect_error([&] { d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), tangent(), grad()); },
               "tangent.log_std", "element (1, 1)");
  expect_untouched();
}

}  // namespace

// ---------------------------------------------------------------- exact-objective tangent
/// exact_backward_tangent against central differences of exact_objective's head gradient along the
/// tangent, for the three reward forms, per-row and shared log-std, and the per-dimension scaling.
TEST(DiagGaussianExactBackwardTangent, MatchesCentralDifferencesOfTheExactGradient) {
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  for (const d2r::RewardForm form : {d2r::RewardForm::scalar, d2r::RewardForm::diagonal, d2r::RewardForm::full}) {
    for (const bool shared : {false, true}) {
      for (const bool per_dim : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "form " << static_cast<int>(form) << " shared " << shared << " per_dim "
                                          << per_dim);
        const std::int64_t B = 4, n = 3, S = shared ? 1 : B;
        const DiagProblem p(B, n, 1, shared, 7 + static_cast<std::uint64_t>(form) * 3 + shared);
        TestRng rng(41);
        const std::vector<double> y = rng.vector<double>(B * n, -1, 1);
        std::vector<double> u = form == d2r::RewardForm::scalar     ? std::vector<double>{0.8}
                                : form == d2r::RewardForm::diagonal ? std::vector<double>{0.5, 1.5, 0.9}
                                                                    : std::vector<double>{1.1, 0.3, 0.9, -0.2, 0.4, 1.3};
        const d2r::MahalanobisReward<double> reward{form, d2r::vector_view<const double>(u.data(), static_cast<std::int64_t>(u.size()))};
        const d2r::PgOptions<double> options{.entropy_weight = 0.6, .per_dimension_mean = per_dim};
        std::vector<double> tm(B * n, -7.0), ts(S * n, -7.0);
        d2r::exact_backward_tangent(ctx, p.head(), reward, options, p.tangent(),
                                    d2r::DiagGaussianGrad<double>{d2r::matrix_view(tm.data(), B, n),
                                                                  d2r::matrix_view(ts.data(), S, n)});
        const auto gradient = [&](const std::vector<double>& m, const std::vector<double>& s, std::vector<double>& gm,
                                  std::vector<double>& gs) {
          std::vector<double> rows(B);
          gm.assign(B * n, 0.0);
          gs.assign(S * n, 0.0);
          d2r::exact_objective(ctx, p.head(m, s), d2r::matrix_view<const double>(y.data(), B, n), reward, options,
                               d2r::ObjectiveRows<double>{d2r::vector_view(rows.data(), B), {}},
                               d2r::DiagGaussianGrad<double>{d2r::matrix_view(gm.data(), B, n),
                                                             d2r::matrix_view(gs.data(), S, n)});
        };
        const double h = 1e-5;
        std::vector<double> gm_up, gs_up, gm_dn, gs_dn;
        const auto [mu_up, s_up] = p.moved(h, p.t_mean, p.t_log_std);
        const auto [mu_dn, s_dn] = p.moved(-h, p.t_mean, p.t_log_std);
        gradient(mu_up, s_up, gm_up, gs_up);
        gradient(mu_dn, s_dn, gm_dn, gs_dn);
        std::vector<double> fd_m(B * n), fd_s(S * n);
        for (std::int64_t i = 0; i < B * n; ++i) fd_m[i] = (gm_up[i] - gm_dn[i]) / (2 * h);
        for (std::int64_t i = 0; i < S * n; ++i) fd_s[i] = (gs_up[i] - gs_dn[i]) / (2 * h);
        D2R_EXPECT_CLOSE(tm, fd_m, 1e-7, 1e-8);
        D2R_EXPECT_CLOSE(ts, fd_s, 1e-7, 1e-8);
        double norm = 0;
        for (double v : ts) norm += v * v;
        EXPECT_GT(norm, 1e-6);
      }
    }
  }
}

TEST(DiagGaussianExactBackwardTangent, RejectsBadArgumentsBeforeWriting) {
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  const DiagProblem p(3, 2, 1, false, 5);
  std::vector<double> u{1.0}, bad_u{-1.0};
  const d2r::MahalanobisReward<double> reward{d2r::RewardForm::scalar, d2r::vector_view<const double>(u.data(), 1)};
  std::vector<double> tm(6, -7.0), ts(6, -7.0);
  const d2r::DiagGaussianGrad<double> out{d2r::matrix_view(tm.data(), 3, 2), d2r::matrix_view(ts.data(), 3, 2)};
  expect_error([&] { d2r::exact_backward_tangent(ctx, p.head(), {d2r::RewardForm::scalar, d2r::vector_view<const double>(bad_u.data(), 1)}, {}, p.tangent(), out); },
               "reward.params", "");
  expect_error([&] { d2r::exact_backward_tangent(ctx, p.head(), reward, {.entropy_weight = -1}, p.tangent(), out); },
               "options.entropy_weight", "");
  const std::vector<double> short_mean(4, 0.0);
  expect_error([&] { d2r::exact_backward_tangent(ctx, p.head(), reward, {}, d2r::DiagGaussian<double>{d2r::matrix_view<const double>(short_mean.data(), 2, 2), p.tangent().log_std}, out); },
               "tangent.mean", "");
  expect_error([&] { d2r::exact_backward_tangent(ctx, p.head(), reward, {}, p.tangent(), d2r::DiagGaussianGrad<double>{d2r::matrix_view(tm.data(), 3, 2), d2r::matrix_view(tm.data() + 1, 3, 2)}); },
               "grad_tangent.mean", "");
  for (double v : tm) EXPECT_EQ(v, -7.0);
  for (double v : ts) EXPECT_EQ(v, -7.0);
}
