// The policy-level Hessian-vector product (MLP + diagonal-Gaussian head, REINFORCE curvature):
// against central differences of the gradient with samples and advantages fixed, symmetry, the
// explicit Hessian of a tiny network, and CG on the operator against a dense solve.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::Transform;
using d2r::test::TestRng;

struct Problem {
  std::int64_t B = 4, n = 2, G = 3;
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 17}};
  d2r::Mlp net;
  std::vector<double> params, x, y, u;
  RewardForm form;
  d2r::PgOptions<double> options;
  Problem(d2r::Activation act, RewardForm f, Transform t)
      : net({.inputs = 3, .hidden = {5}, .outputs = 4, .activation = act}), form(f) {
    TestRng rng(static_cast<std::uint64_t>(act) * 10 + static_cast<std::uint64_t>(f) + 100 * static_cast<std::uint64_t>(t));
    params.resize(net.parameter_count());
    net.init(ctx, d2r::vector_view(params.data(), static_cast<std::int64_t>(params.size())), 3);
    x = rng.vector<double>(B * 3, -1, 1);
    y = rng.vector<double>(B * n, -1, 1);
    u = f == RewardForm::full ? std::vector<double>{1.0, 0.3, 0.8} : f == RewardForm::diagonal ? std::vector<double>{0.7, 1.3} : std::vector<double>{0.9};
    options = {.entropy_weight = 0.3, .transform = {.kind = t}};
  }
  d2r::ConstVector<double> theta() const { return {params.data(), static_cast<std::int64_t>(params.size())}; }
  d2r::MahalanobisReward<double> reward() const { return {form, {u.data(), static_cast<std::int64_t>(u.size())}}; }

  /// ∇θ of the surrogate with the samples and cotangents of `c` held fixed (the gradient whose
  /// Jacobian the HVP is), at the current params.
  std::vector<double> fixed_gradient(const d2r::DiagGaussianPolicyCurvature<double>& c) {
    std::vector<double> out(B * 4), cache(net.cache_elements(B)), d_head(B * 4), grad(params.size());
    net.forward(ctx, theta(), d2r::matrix_view<const double>(x.data(), B, 3), d2r::vector_view(cache.data(), (std::int64_t)cache.size()),
                d2r::matrix_view(out.data(), B, 4));
    const d2r::DiagGaussian<double> head{{out.data(), B, n, 4}, {out.data() + n, B, n, 4}};
    d2r::backward(ctx, head, c.samples(), c.log_prob_cotangent(), c.entropy_cotangent(),
                  d2r::DiagGaussianGrad<double>{{d_head.data(), B, n, 4}, {d_head.data() + n, B, n, 4}});
    net.backward(ctx, theta(), d2r::matrix_view<const double>(x.data(), B, 3), d2r::vector_view<const double>(cache.data(), (std::int64_t)cache.size()),
                 d2r::matrix_view<const double>(d_head.data(), B, 4), d2r::vector_view(grad.data(), (std::int64_t)grad.size()), {});
    return grad;
  }
};

class PolicyCurvature : public ::testing::TestWithParam<std::tuple<d2r::Activation, RewardForm, Transform>> {};

TEST_P(PolicyCurvature, HvpIsTheJacobianOfTheGradient) {
  const auto [act, form, transform] = GetParam();
  Problem s(act, form, transform);
  const auto P = static_cast<std::int64_t>(s.params.size());
  d2r::DiagGaussianPolicyCurvature<double> curvature(s.ctx, s.net, s.B);
  std::vector<double> grad(P);
  curvature.prepare(s.theta(), d2r::matrix_view<const double>(s.x.data(), s.B, 3), d2r::matrix_view<const double>(s.y.data(), s.B, s.n),
                    s.reward(), s.G, s.options, {.step = 5}, d2r::vector_view(grad.data(), P));
  // prepare's gradient is the fixed-sample gradient at θ.
  D2R_EXPECT_CLOSE(grad, s.fixed_gradient(curvature), 1e-12, 1e-12);
  double norm = 0;
  for (double g : grad) norm += std::abs(g);
  EXPECT_GT(norm, 1e-3);

  TestRng rng(9);
  const auto v = rng.vector<double>(P, -1, 1), w = rng.vector<double>(P, -1, 1);
  std::vector<double> hv(P), hw(P);
  curvature.apply({v.data(), P}, {hv.data(), P});
  curvature.apply({w.data(), P}, {hw.data(), P});
  // Central difference of the fixed-sample gradient along v.
  const std::vector<double> saved = s.params;
  const double h = 1e-5;
  for (std::int64_t i = 0; i < P; ++i) s.params[i] = saved[i] + h * v[i];
  const auto up = s.fixed_gradient(curvature);
  for (std::int64_t i = 0; i < P; ++i) s.params[i] = saved[i] - h * v[i];
  const auto down = s.fixed_gradient(curvature);
  s.params = saved;
  std::vector<double> fd(P);
  for (std::int64_t i = 0; i < P; ++i) fd[i] = (up[i] - down[i]) / (2 * h);
  D2R_EXPECT_CLOSE(hv, fd, 1e-5, 1e-7);
  // Symmetry: wᵀ(Hv) = vᵀ(Hw).
  double whv = 0, vhw = 0, scale = 0;
  for (std::int64_t i = 0; i < P; ++i) whv += w[i] * hv[i], vhw += v[i] * hw[i], scale += std::abs(w[i] * hv[i]);
  EXPECT_NEAR(whv, vhw, 1e-10 * (1 + scale));
}

INSTANTIATE_TEST_SUITE_P(Cases, PolicyCurvature,
                         ::testing::Combine(::testing::Values(d2r::Activation::tanh, d2r::Activation::relu),
                                            ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                                            ::testing::Values(Transform::none, Transform::leave_one_out)));

TEST(PolicyCurvatureSolve, CgOnTheOperatorMatchesADenseSolve) {
  Problem s(d2r::Activation::tanh, RewardForm::scalar, Transform::none);
  const auto P = static_cast<std::int64_t>(s.params.size());
  d2r::DiagGaussianPolicyCurvature<double> curvature(s.ctx, s.net, s.B);
  std::vector<double> grad(P);
  curvature.prepare(s.theta(), d2r::matrix_view<const double>(s.x.data(), s.B, 3), d2r::matrix_view<const double>(s.y.data(), s.B, s.n),
                    s.reward(), s.G, s.options, {.step = 1}, d2r::vector_view(grad.data(), P));
  // The explicit Hessian, column by column; it must be symmetric.
  std::vector<double> H(P * P), e(P, 0.0), col(P);
  for (std::int64_t j = 0; j < P; ++j) {
    e[j] = 1;
    curvature.apply({e.data(), P}, {col.data(), P});
    e[j] = 0;
    for (std::int64_t i = 0; i < P; ++i) H[i * P + j] = col[i];
  }
  double asym = 0, mag = 0;
  for (std::int64_t i = 0; i < P; ++i)
    for (std::int64_t j = 0; j < P; ++j) asym = std::max(asym, std::abs(H[i * P + j] - H[j * P + i])), mag = std::max(mag, std::abs(H[i * P + j]));
  EXPECT_GT(mag, 1e-3);
  EXPECT_LT(asym, 1e-10 * mag);
  // (H + δI) w = g by CG on the normal equations (H may be indefinite) vs Gaussian elimination.
  const double damping = 0.5;
  std::vector<double> A = H, b = grad, w_dense(P);
  for (std::int64_t i = 0; i < P; ++i) A[i * P + i] += damping;
  for (std::int64_t k = 0; k < P; ++k) {  // partial pivoting
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
  std::vector<double> w(P, 0.0);
  const auto report = d2r::conjugate_gradient_normal<double>(s.ctx, curvature.as_operator(), {grad.data(), P}, {w.data(), P},
                                                             {.damping = damping, .tolerance = 1e-12, .max_iterations = 4 * P});
  EXPECT_EQ(report.status, d2r::SolveStatus::converged) << d2r::to_string(report.status);
  D2R_EXPECT_CLOSE(w, w_dense, 1e-6, 1e-8);
}

TEST(PolicyCurvatureMixed, MixedProductIsTheRewardDerivativeOfTheGradientAlongW) {
  for (RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    for (Transform t : {Transform::none, Transform::standardize}) {
      Problem s(d2r::Activation::tanh, form, t);
      const auto P = static_cast<std::int64_t>(s.params.size());
      const auto U = static_cast<std::int64_t>(s.u.size());
      TestRng rng(4);
      const auto w = rng.vector<double>(P, -1, 1);
      const auto gradient_dot_w = [&]() {  // ⟨∇θ L_in(φ), w⟩; θ and the key fixed, so the samples are too
        d2r::DiagGaussianPolicyCurvature<double> c(s.ctx, s.net, s.B);
        std::vector<double> grad(P);
        c.prepare(s.theta(), d2r::matrix_view<const double>(s.x.data(), s.B, 3), d2r::matrix_view<const double>(s.y.data(), s.B, s.n),
                  s.reward(), s.G, s.options, {.step = 2}, d2r::vector_view(grad.data(), P));
        double dot = 0;
        for (std::int64_t i = 0; i < P; ++i) dot += grad[i] * w[i];
        return dot;
      };
      d2r::DiagGaussianPolicyCurvature<double> c(s.ctx, s.net, s.B);
      std::vector<double> grad(P), mixed(U);
      c.prepare(s.theta(), d2r::matrix_view<const double>(s.x.data(), s.B, 3), d2r::matrix_view<const double>(s.y.data(), s.B, s.n),
                s.reward(), s.G, s.options, {.step = 2}, d2r::vector_view(grad.data(), P));
      c.mixed_product({w.data(), P}, d2r::vector_view(mixed.data(), U));
      double norm = 0;
      for (std::int64_t i = 0; i < U; ++i) {
        EXPECT_NEAR(mixed[i], d2r::test::central_difference(s.u, static_cast<std::size_t>(i), gradient_dot_w),
                    1e-6 * (1 + std::abs(mixed[i])))
            << d2r::to_string(t) << " param " << i;
        norm += std::abs(mixed[i]);
      }
      if (form == RewardForm::scalar && t == Transform::standardize) {
        // Standardised advantages do not depend on the scale u of the rewards (up to ε).
        EXPECT_LT(norm, 1e-5);
      } else {
        EXPECT_GT(norm, 1e-4);
      }
    }
  }
}

TEST(PolicyCurvatureErrors, BadInput) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const d2r::Mlp odd({.inputs = 2, .outputs = 3});
  d2r::test::expect_error([&] { d2r::DiagGaussianPolicyCurvature<double> c(ctx, odd, 4); }, "net", "even number of outputs");
  const d2r::Mlp net({.inputs = 2, .outputs = 4});
  d2r::DiagGaussianPolicyCurvature<double> c(ctx, net, 4);
  std::vector<double> v(net.parameter_count()), hv(net.parameter_count());
  d2r::test::expect_error([&] { c.apply({v.data(), (std::int64_t)v.size()}, {hv.data(), (std::int64_t)hv.size()}); }, "this",
                          "prepare() must succeed");
  d2r::test::expect_error([&] { d2r::DiagGaussianPolicyCurvature<double> c0(ctx, net, 0); }, "batch", "B >= 1");

  // prepare checks every argument before grad is written (the grad sentinel survives) and
  // leaves the object unprepared.
  const std::int64_t P = net.parameter_count(), B = 4, n = 2;
  std::vector<double> params(P, 0.1), x(B * 2, 0.5), y(B * n, 0.0), grad(P, -7.0), u{1.0};
  const auto xv = d2r::matrix_view<const double>(x.data(), B, 2);
  const auto yv = d2r::matrix_view<const double>(y.data(), B, n);
  const d2r::MahalanobisReward<double> reward{d2r::RewardForm::scalar, {u.data(), 1}};
  const auto expect_untouched = [&](auto&& call, const std::string& argument) {
    d2r::test::expect_error(call, argument, "");
    for (double g : grad) ASSERT_EQ(g, -7.0) << argument;
  };
  expect_untouched([&] { c.prepare({params.data(), P - 1}, xv, yv, reward, 2, {}, {}, {grad.data(), P}); }, "params");
  expect_untouched([&] { c.prepare({params.data(), P}, d2r::matrix_view<const double>(x.data(), 3, 2), yv, reward, 2, {}, {},
                                   {grad.data(), P}); },
                   "x");
  expect_untouched([&] { c.prepare({params.data(), P}, xv, d2r::matrix_view<const double>(y.data(), 4, 1), reward, 2, {}, {},
                                   {grad.data(), P}); },
                   "targets");
  y[3] = std::numeric_limits<double>::quiet_NaN();
  expect_untouched([&] { c.prepare_exact({params.data(), P}, xv, yv, reward, {}, {grad.data(), P}); }, "targets");
  y[3] = 0.0;
  expect_untouched([&] { c.prepare({params.data(), P}, xv, yv, reward, 0, {}, {}, {grad.data(), P}); }, "generations");
  expect_untouched([&] { c.prepare({params.data(), P}, xv, yv, reward, 2, {}, {}, {params.data(), P}); }, "grad");
  d2r::test::expect_error([&] { c.apply({v.data(), P}, {hv.data(), P}); }, "this", "prepare() must succeed");

  // After a successful prepare, apply and mixed_product check their vectors.
  c.prepare({params.data(), P}, xv, yv, reward, 2, {}, {}, {grad.data(), P});
  d2r::test::expect_error([&] { c.apply({v.data(), P - 1}, {hv.data(), P}); }, "v", "");
  d2r::test::expect_error([&] { c.apply({v.data(), P}, {v.data(), P}); }, "hv", "");
  d2r::test::expect_error([&] { c.mixed_product({v.data(), P + 1}, {u.data(), 1}); }, "w", "");
}

}  // namespace

// ---------------------------------------------------------------- exact curvature
namespace {

/// prepare_exact: the HVP is the derivative of the exact gradient along v (central differences),
/// it is symmetric, and the mixed product is the derivative in φ of ∇θ L_exact · w.
TEST(DiagGaussianPolicyCurvatureExact, HvpAndMixedProductMatchFiniteDifferences) {
  for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    SCOPED_TRACE(::testing::Message() << "form " << static_cast<int>(form));
    const std::int64_t B = 5, n = 2;
    d2r::Context ctx{{.backend = d2r::Backend::cpu}};
    const d2r::Mlp net({.inputs = 3, .hidden = {6}, .outputs = 2 * n, .activation = d2r::Activation::tanh});
    TestRng rng(77 + static_cast<std::uint64_t>(form));
    std::vector<double> params(static_cast<std::size_t>(net.parameter_count()));
    net.init(ctx, d2r::vector_view(params.data(), static_cast<std::int64_t>(params.size())), 4);
    const std::vector<double> x = rng.vector<double>(B * 3, -1, 1), y = rng.vector<double>(B * n, -1, 1);
    std::vector<double> u = form == RewardForm::full ? std::vector<double>{1.0, 0.4, 0.7}
                            : form == RewardForm::diagonal ? std::vector<double>{0.6, 1.4} : std::vector<double>{0.9};
    const d2r::PgOptions<double> options{.entropy_weight = 0.5};
    const auto P = params.size();
    const auto grad_at = [&](const std::vector<double>& th, const std::vector<double>& phi) {
      d2r::DiagGaussianPolicyCurvature<double> c(ctx, net, B);
      std::vector<double> g(P);
      c.prepare_exact({th.data(), static_cast<std::int64_t>(P)}, d2r::matrix_view(x.data(), B, 3),
                      d2r::matrix_view(y.data(), B, n), {form, {phi.data(), static_cast<std::int64_t>(phi.size())}},
                      options, {g.data(), static_cast<std::int64_t>(P)});
      return g;
    };
    d2r::DiagGaussianPolicyCurvature<double> c(ctx, net, B);
    std::vector<double> g(P);
    c.prepare_exact({params.data(), static_cast<std::int64_t>(P)}, d2r::matrix_view(x.data(), B, 3),
                    d2r::matrix_view(y.data(), B, n), {form, {u.data(), static_cast<std::int64_t>(u.size())}}, options,
                    {g.data(), static_cast<std::int64_t>(P)});
    EXPECT_EQ(c.samples().rows, 0);  // no sampling
    const std::vector<double> v = rng.vector<double>(P, -1, 1), w = rng.vector<double>(P, -1, 1);
    std::vector<double> hv(P), hw(P);
    c.apply({v.data(), static_cast<std::int64_t>(P)}, {hv.data(), static_cast<std::int64_t>(P)});
    c.apply({w.data(), static_cast<std::int64_t>(P)}, {hw.data(), static_cast<std::int64_t>(P)});
    const double h = 1e-5;
    std::vector<double> up = params, dn = params;
    for (std::size_t i = 0; i < P; ++i) up[i] += h * v[i], dn[i] -= h * v[i];
    const std::vector<double> g_up = grad_at(up, u), g_dn = grad_at(dn, u);
    std::vector<double> fd(P);
    for (std::size_t i = 0; i < P; ++i) fd[i] = (g_up[i] - g_dn[i]) / (2 * h);
    D2R_EXPECT_CLOSE(hv, fd, 1e-6, 1e-7);
    double whv = 0, vhw = 0;
    for (std::size_t i = 0; i < P; ++i) whv += w[i] * hv[i], vhw += v[i] * hw[i];
    EXPECT_NEAR(whv, vhw, 1e-10 * (1 + std::abs(whv)));
    // Mixed product against ∂/∂φ_j (∇θ L_exact · w).
    std::vector<double> mixed(u.size());
    c.mixed_product({w.data(), static_cast<std::int64_t>(P)}, {mixed.data(), static_cast<std::int64_t>(u.size())});
    for (std::size_t j = 0; j < u.size(); ++j) {
      std::vector<double> pu = u, pd = u;
      pu[j] += h;
      pd[j] -= h;
      const std::vector<double> gu = grad_at(params, pu), gd = grad_at(params, pd);
      double fdj = 0;
      for (std::size_t i = 0; i < P; ++i) fdj += w[i] * (gu[i] - gd[i]) / (2 * h);
      EXPECT_NEAR(mixed[j], fdj, 1e-6 * (1 + std::abs(fdj))) << "φ entry " << j;
    }
  }
}

}  // namespace
