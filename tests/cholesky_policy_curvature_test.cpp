// The policy-level curvature of an MLP + Cholesky-Gaussian head (CholeskyPolicyCurvature) on the
// cpu backend in double, for the REINFORCE surrogate (samples and advantages fixed) and the
// exact-expectation objective: prepare's gradient against central differences of the objective,
// the HVP against central differences of the gradient and its symmetry, the mixed product against
// central differences in φ of ∇θ L · w, for every reward form, per-dimension mean on and off;
// CG on the operator; and bad input leaving grad untouched.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::Transform;
using d2r::test::TestRng;

constexpr std::int64_t kInputs = 3;

std::vector<double> reward_params(RewardForm form, std::int64_t n, TestRng& rng) {
  std::vector<double> u(static_cast<std::size_t>(d2r::reward_param_count(form, n)));
  for (double& x : u) x = form == RewardForm::full ? rng.uniform(-0.4, 0.4) : rng.uniform(0.4, 1.4);
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < n; ++i) u[static_cast<std::size_t>(i * (i + 1) / 2 + i)] = rng.uniform(0.6, 1.2);
  return u;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

/// An MLP with n + n(n+1)/2 outputs, inputs, targets and a reward, in double on the host.
struct Problem {
  std::int64_t B = 4, n = 2, G = 3, width;
  mutable d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 23}};
  d2r::Mlp net;
  std::vector<double> params, x, y, u;
  RewardForm form;
  d2r::PgOptions<double> options;
  Problem(std::int64_t dims, d2r::Activation act, RewardForm f, Transform t, bool per_dim, std::uint64_t seed)
      : n(dims), width(dims + dims * (dims + 1) / 2),
        net({.inputs = kInputs, .hidden = {5}, .outputs = width, .activation = act}), form(f) {
    TestRng rng(seed);
    params.resize(static_cast<std::size_t>(net.parameter_count()));
    net.init(ctx, d2r::vector_view(params.data(), net.parameter_count()), seed);
    x = rng.vector<double>(static_cast<std::size_t>(B * kInputs), -1, 1);
    y = rng.vector<double>(static_cast<std::size_t>(B * n), -1, 1);
    u = reward_params(f, n, rng);
    options = {.entropy_weight = 0.3, .transform = {.kind = t}, .per_dimension_mean = per_dim};
  }
  [[nodiscard]] std::int64_t P() const { return net.parameter_count(); }
  [[nodiscard]] d2r::ConstVector<double> theta() const { return {params.data(), P()}; }
  [[nodiscard]] d2r::ConstMatrix<double> xv() const { return d2r::matrix_view(x.data(), B, kInputs); }
  [[nodiscard]] d2r::ConstMatrix<double> yv() const { return d2r::matrix_view(y.data(), B, n); }
  [[nodiscard]] d2r::MahalanobisReward<double> reward() const {
    return {form, {u.data(), static_cast<std::int64_t>(u.size())}};
  }
  void prepare(d2r::CholeskyPolicyCurvature<double>& c, bool exact, std::vector<double>& grad) const {
    grad.assign(static_cast<std::size_t>(P()), 0.0);
    if (exact) {
      c.prepare_exact(theta(), xv(), yv(), reward(), options, {grad.data(), P()});
    } else {
      c.prepare(theta(), xv(), yv(), reward(), G, options, {.step = 4, .first_row = 1}, {grad.data(), P()});
    }
  }
  /// The network's head at the current params: out (B x width) and its cache.
  d2r::CholeskyGaussian<double> head(std::vector<double>& out, std::vector<double>& cache) const {
    out.assign(static_cast<std::size_t>(B * width), 0.0);
    cache.assign(static_cast<std::size_t>(net.cache_elements(B)), 0.0);
    net.forward(ctx, theta(), xv(), d2r::vector_view(cache.data(), net.cache_elements(B)),
                d2r::matrix_view(out.data(), B, width));
    return {{out.data(), B, n, width}, {out.data() + n, B, n * (n + 1) / 2, width}};
  }
  /// Objective whose θ-gradient prepare() returns, at the current params: for the surrogate
  /// Σ c·log p(kept samples) + Σ e·H with the kept cotangents (the fixed-sample surrogate when
  /// nothing is clipped), for the exact objective Σ_b row_loss_b.
  double objective(const d2r::CholeskyPolicyCurvature<double>& c, bool exact) const {
    std::vector<double> out, cache;
    const d2r::CholeskyGaussian<double> h = head(out, cache);
    std::vector<double> rows(static_cast<std::size_t>(B));
    if (exact) {
      std::vector<double> gm(static_cast<std::size_t>(B * n)), gt(static_cast<std::size_t>(B * n * (n + 1) / 2));
      d2r::exact_objective(ctx, h, yv(), reward(), options, d2r::ObjectiveRows<double>{{rows.data(), B}, {}},
                           d2r::CholeskyGaussianGrad<double>{d2r::matrix_view(gm.data(), B, n),
                                                             d2r::matrix_view(gt.data(), B, n * (n + 1) / 2)});
      double s = 0;
      for (double r : rows) s += r;
      return s;
    }
    std::vector<double> lp(static_cast<std::size_t>(B * G)), H(static_cast<std::size_t>(B));
    d2r::log_prob(ctx, h, c.samples(), d2r::matrix_view(lp.data(), B, G));
    d2r::entropy(ctx, h, d2r::vector_view(H.data(), B));
    double s = 0;
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t g = 0; g < G; ++g) s += c.log_prob_cotangent()(b, g) * lp[static_cast<std::size_t>(b * G + g)];
      s += c.entropy_cotangent()[b] * H[static_cast<std::size_t>(b)];
    }
    return s;
  }
  /// ∇θ of the objective with the kept samples and cotangents (surrogate) or of L_exact, at the
  /// current params: backward of the head, then of the network.
  std::vector<double> gradient(const d2r::CholeskyPolicyCurvature<double>& c, bool exact) const {
    std::vector<double> out, cache;
    const d2r::CholeskyGaussian<double> h = head(out, cache);
    std::vector<double> d_head(static_cast<std::size_t>(B * width)), grad(static_cast<std::size_t>(P()));
    const d2r::CholeskyGaussianGrad<double> g{{d_head.data(), B, n, width}, {d_head.data() + n, B, n * (n + 1) / 2, width}};
    if (exact) {
      std::vector<double> rows(static_cast<std::size_t>(B));
      d2r::exact_objective(ctx, h, yv(), reward(), options, d2r::ObjectiveRows<double>{{rows.data(), B}, {}}, g);
    } else {
      d2r::backward(ctx, h, c.samples(), c.log_prob_cotangent(), c.entropy_cotangent(), g);
    }
    net.backward(ctx, theta(), xv(), d2r::vector_view<const double>(cache.data(), net.cache_elements(B)),
                 d2r::matrix_view<const double>(d_head.data(), B, width), d2r::vector_view(grad.data(), P()), {});
    return grad;
  }
};

using Case = std::tuple<bool, RewardForm, bool>;  // exact, form, per-dimension mean
class CholeskyPolicyCurvature : public ::testing::TestWithParam<Case> {};

/// prepare's gradient is ∇θ of the objective; apply is the Jacobian of that gradient along v and
/// is symmetric; mixed_product is ∂/∂φ of ∇θ L · w.
TEST_P(CholeskyPolicyCurvature, GradientHvpAndMixedProductMatchFiniteDifferences) {
  const auto [exact, form, per_dim] = GetParam();
  for (const Transform t : exact ? std::vector<Transform>{Transform::none}
                                 : std::vector<Transform>{Transform::none, Transform::leave_one_out}) {
    for (const d2r::Activation act : {d2r::Activation::tanh, d2r::Activation::relu}) {
      SCOPED_TRACE(::testing::Message() << d2r::to_string(t) << " activation " << static_cast<int>(act));
      Problem s(2, act, form, t, per_dim, 10 + static_cast<std::uint64_t>(form) * 3 + (per_dim ? 1 : 0));
      const std::int64_t P = s.P();
      d2r::CholeskyPolicyCurvature<double> c(s.ctx, s.net, s.B);
      EXPECT_EQ(c.dims(), 2);
      std::vector<double> grad;
      s.prepare(c, exact, grad);
      EXPECT_EQ(c.samples().rows, exact ? 0 : s.B * s.G);
      // The gradient against central differences of the objective, one parameter at a time.
      EXPECT_GT(max_abs(grad), 1e-3);
      for (std::int64_t i = 0; i < P; ++i) {
        const double fd = d2r::test::central_difference(s.params, static_cast<std::size_t>(i),
                                                        [&] { return s.objective(c, exact); }, 1e-6);
        EXPECT_NEAR(grad[static_cast<std::size_t>(i)], fd, 1e-7 * (1 + std::abs(fd))) << "θ entry " << i;
      }
      D2R_EXPECT_CLOSE(grad, s.gradient(c, exact), 1e-12, 1e-13);

      // HVP along v against central differences of the gradient; symmetry.
      TestRng rng(9);
      const std::vector<double> v = rng.vector<double>(static_cast<std::size_t>(P), -1, 1),
                                w = rng.vector<double>(static_cast<std::size_t>(P), -1, 1);
      std::vector<double> hv(static_cast<std::size_t>(P)), hw(static_cast<std::size_t>(P));
      c.apply({v.data(), P}, {hv.data(), P});
      c.as_operator()({w.data(), P}, {hw.data(), P});
      const std::vector<double> saved = s.params;
      const double h = 1e-5;
      for (std::int64_t i = 0; i < P; ++i) s.params[i] = saved[i] + h * v[i];
      const std::vector<double> up = s.gradient(c, exact);
      for (std::int64_t i = 0; i < P; ++i) s.params[i] = saved[i] - h * v[i];
      const std::vector<double> down = s.gradient(c, exact);
      s.params = saved;
      std::vector<double> fd(static_cast<std::size_t>(P));
      for (std::int64_t i = 0; i < P; ++i) fd[i] = (up[i] - down[i]) / (2 * h);
      EXPECT_GT(max_abs(hv), 1e-3);
      D2R_EXPECT_CLOSE(hv, fd, 1e-5, 1e-7 * (1 + max_abs(fd)));
      EXPECT_NEAR(dot(w, hv), dot(v, hw), 1e-10 * (1 + std::abs(dot(w, hv))));

      // Mixed product against ∂/∂φ_j (∇θ L(φ) · w): θ and the key fixed, so the samples are too.
      const auto U = static_cast<std::int64_t>(s.u.size());
      std::vector<double> mixed(static_cast<std::size_t>(U));
      c.mixed_product({w.data(), P}, {mixed.data(), U});
      const auto gradient_dot_w = [&] {
        d2r::CholeskyPolicyCurvature<double> other(s.ctx, s.net, s.B);
        std::vector<double> g;
        s.prepare(other, exact, g);
        return dot(g, w);
      };
      double norm = 0;
      for (std::int64_t j = 0; j < U; ++j) {
        const double fdj = d2r::test::central_difference(s.u, static_cast<std::size_t>(j), gradient_dot_w, 1e-5);
        EXPECT_NEAR(mixed[static_cast<std::size_t>(j)], fdj, 1e-6 * (1 + std::abs(fdj))) << "φ entry " << j;
        norm += std::abs(mixed[static_cast<std::size_t>(j)]);
      }
      EXPECT_GT(norm, 1e-5);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CholeskyPolicyCurvature,
                         ::testing::Combine(::testing::Bool(),
                                            ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           const RewardForm f = std::get<1>(info.param);
                           return std::string(std::get<0>(info.param) ? "exact_" : "surrogate_") +
                                  (f == RewardForm::scalar ? "scalar" : f == RewardForm::diagonal ? "diagonal" : "full") +
                                  (std::get<2>(info.param) ? "_per_dim" : "_sum");
                         });

/// A larger head (n = 3) through the operator: the explicit Hessian of the exact objective is
/// symmetric, and CG on the normal equations matches a dense solve.
TEST(CholeskyPolicyCurvatureSolve, CgOnTheExactOperatorMatchesADenseSolve) {
  Problem s(3, d2r::Activation::tanh, RewardForm::full, Transform::none, false, 77);
  const std::int64_t P = s.P();
  d2r::CholeskyPolicyCurvature<double> c(s.ctx, s.net, s.B);
  std::vector<double> grad;
  s.prepare(c, true, grad);
  std::vector<double> H(static_cast<std::size_t>(P * P)), e(static_cast<std::size_t>(P), 0.0), col(static_cast<std::size_t>(P));
  for (std::int64_t j = 0; j < P; ++j) {
    e[j] = 1;
    c.apply({e.data(), P}, {col.data(), P});
    e[j] = 0;
    for (std::int64_t i = 0; i < P; ++i) H[i * P + j] = col[i];
  }
  double asym = 0, mag = 0;
  for (std::int64_t i = 0; i < P; ++i)
    for (std::int64_t j = 0; j < P; ++j)
      asym = std::max(asym, std::abs(H[i * P + j] - H[j * P + i])), mag = std::max(mag, std::abs(H[i * P + j]));
  EXPECT_GT(mag, 1e-3);
  EXPECT_LT(asym, 1e-10 * mag);
  const double damping = 0.5;
  std::vector<double> A = H, b = grad, w_dense(static_cast<std::size_t>(P));
  for (std::int64_t i = 0; i < P; ++i) A[i * P + i] += damping;
  for (std::int64_t k = 0; k < P; ++k) {  // Gaussian elimination with partial pivoting
    std::int64_t piv = k;
    for (std::int64_t i = k + 1; i < P; ++i)
      if (std::abs(A[i * P + k]) > std::abs(A[piv * P + k])) piv = i;
    for (std::int64_t j = 0; j < P; ++j) std::swap(A[k * P + j], A[piv * P + j]);
    std::swap(b[k], b[piv]);
    for (std::int64_t i = k + 1; i < P; ++i) {
      const double f = A[i * P + k] / A[k * P + k];
      for (std::int64_t j = k; j < P; ++j) A[i * P + j] -= f * A[k * P + j];
      b[i] -= f * b[k];
    }
  }
  for (std::int64_t i = P - 1; i >= 0; --i) {
    double t = b[i];
    for (std::int64_t j = i + 1; j < P; ++j) t -= A[i * P + j] * w_dense[j];
    w_dense[i] = t / A[i * P + i];
  }
  std::vector<double> w(static_cast<std::size_t>(P), 0.0);
  const auto report = d2r::conjugate_gradient_normal<double>(
      s.ctx, c.as_operator(), {grad.data(), P}, {w.data(), P},
      {.damping = damping, .tolerance = 1e-12, .max_iterations = 4 * P});
  EXPECT_EQ(report.status, d2r::SolveStatus::converged) << d2r::to_string(report.status);
  D2R_EXPECT_CLOSE(w, w_dense, 1e-6, 1e-8);
}

TEST(CholeskyPolicyCurvatureErrors, BadInputLeavesGradUntouched) {
  using d2r::test::expect_error;
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const d2r::Mlp bad({.inputs = 2, .outputs = 4});  // n + n(n+1)/2 is 2, 5, 9, ...
  expect_error([&] { d2r::CholeskyPolicyCurvature<double> c(ctx, bad, 4); }, "net", "n + n(n+1)/2 outputs");
  const d2r::Mlp net({.inputs = kInputs, .outputs = 5});
  expect_error([&] { d2r::CholeskyPolicyCurvature<double> c(ctx, net, 0); }, "batch", "B >= 1");
  expect_error([&] { d2r::CholeskyPolicyCurvature<double> c(ctx, net, 4, -1.0); }, "jitter", ">= 0");
  d2r::CholeskyPolicyCurvature<double> c(ctx, net, 4);
  const std::int64_t P = net.parameter_count();
  std::vector<double> params(static_cast<std::size_t>(P), 0.1), v(static_cast<std::size_t>(P)),
      x(4 * kInputs, 0.5), y(8, 0.0), u{1.0}, bad_u{-1.0};
  std::vector<double> grad(static_cast<std::size_t>(P), 7.0);
  const d2r::MahalanobisReward<double> reward{RewardForm::scalar, {u.data(), 1}};
  expect_error([&] { c.apply({v.data(), P}, {grad.data(), P}); }, "this", "prepare() must succeed");
  expect_error([&] { c.mixed_product({v.data(), P}, {u.data(), 1}); }, "this", "prepare() must succeed");
  const auto xv = d2r::matrix_view<const double>(x.data(), 4, kInputs);
  const auto yv = d2r::matrix_view<const double>(y.data(), 4, 2);
  expect_error([&] { c.prepare({params.data(), P - 1}, xv, yv, reward, 2, {}, {}, {grad.data(), P}); }, "params", "");
  expect_error([&] { c.prepare({params.data(), P}, d2r::matrix_view<const double>(x.data(), 3, kInputs), yv, reward, 2, {}, {},
                               {grad.data(), P}); },
               "x", "");
  expect_error([&] { c.prepare({params.data(), P}, xv, d2r::matrix_view<const double>(y.data(), 4, 1), reward, 2, {}, {},
                               {grad.data(), P}); },
               "targets", "");
  y[3] = NAN;
  expect_error([&] { c.prepare_exact({params.data(), P}, xv, yv, reward, {}, {grad.data(), P}); }, "targets", "");
  y[3] = 0;
  expect_error([&] { c.prepare({params.data(), P}, xv, yv, {RewardForm::scalar, {bad_u.data(), 1}}, 2, {}, {},
                               {grad.data(), P}); },
               "reward.params", "");
  expect_error([&] { c.prepare({params.data(), P}, xv, yv, reward, 0, {}, {}, {grad.data(), P}); }, "generations", ">= 1");
  expect_error([&] { c.prepare({params.data(), P}, xv, yv, reward, 1, {.transform = {.kind = Transform::leave_one_out}}, {},
                               {grad.data(), P}); },
               "generations", "G >= 2");
  expect_error([&] { c.prepare_exact({params.data(), P}, xv, yv, reward, {.entropy_weight = -1}, {grad.data(), P}); },
               "options.entropy_weight", "");
  expect_error([&] { c.prepare_exact({params.data(), P}, xv, yv, reward, {}, {params.data(), P}); }, "grad", "overlaps");
  for (double g : grad) EXPECT_EQ(g, 7.0);
  // After a good prepare, apply checks its vectors.
  c.prepare_exact({params.data(), P}, xv, yv, reward, {}, {grad.data(), P});
  std::vector<double> hv(static_cast<std::size_t>(P), 3.0);
  expect_error([&] { c.apply({v.data(), P - 1}, {hv.data(), P}); }, "v", "");
  expect_error([&] { c.apply({hv.data(), P}, {hv.data(), P}); }, "hv", "overlaps");
  for (double h : hv) EXPECT_EQ(h, 3.0);
}

}  // namespace
