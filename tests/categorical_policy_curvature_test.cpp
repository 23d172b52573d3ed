// The policy-level curvature of an MLP + categorical head (REINFORCE surrogate, samples and
// advantages fixed), cpu backend in double unless stated: the gradient against central
// differences of the surrogate loss written out from its definition, the HVP against central
// differences of the gradient and against the explicit Hessian (second differences of the loss)
// of a tiny tanh network and of a logistic regression, symmetry, CG on the operator, the mixed
// product against finite differences in φ for every one-hot reward form, float against double,
// and bad input (every argument named, nothing touched).
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

enum class Net { tanh_hidden, relu_hidden, logistic };

const char* net_name(Net n) {
  switch (n) {
    case Net::tanh_hidden: return "tanh_3_4_3";
    case Net::relu_hidden: return "relu_3_5_3";
    case Net::logistic: return "logistic_4_3";
  }
  return "?";
}

d2r::MlpSpec spec_of(Net n) {
  switch (n) {
    case Net::tanh_hidden: return {.inputs = 3, .hidden = {4}, .outputs = 3, .activation = d2r::Activation::tanh};
    case Net::relu_hidden: return {.inputs = 3, .hidden = {5}, .outputs = 3, .activation = d2r::Activation::relu};
    case Net::logistic: return {.inputs = 4, .hidden = {}, .outputs = 3};
  }
  return {};
}

/// One-hot reward parameters for C = 3 classes. Dyadic (multiples of 1/8), so that a group of
/// equal rewards has an exact mean and standardises to exactly 0: with an inexact mean the group
/// has a roundoff-level spread s > 0, and transform_rewards_backward differentiates through it
/// (its standardize branch is exact only for s = 0 exactly).
std::vector<double> reward_params(RewardForm f) {
  switch (f) {
    case RewardForm::scalar: return {0.875};
    case RewardForm::diagonal: return {0.75, 1.25, 0.5};
    case RewardForm::full: return {1.0, 0.25, 0.75, -0.25, 0.375, 1.125};  // R row-major packed, R_ii > 0
  }
  return {};
}

template <class T>
struct CatProblem {
  std::int64_t B = 5, C = 3, G = 4, D;
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 23}};
  d2r::Mlp net;
  std::vector<T> params, x, u;
  std::vector<std::int32_t> labels;
  RewardForm form;
  d2r::PgOptions<T> options;

  CatProblem(Net n, RewardForm f, Transform t, std::uint64_t seed = 1)
      : D(spec_of(n).inputs), net(spec_of(n)), form(f) {
    TestRng rng(seed * 1000 + static_cast<std::uint64_t>(n) * 100 + static_cast<std::uint64_t>(f) * 10 +
                static_cast<std::uint64_t>(t));
    // Parameters drawn in float and widened, so that float and double problems are the same.
    std::vector<float> p(static_cast<std::size_t>(net.parameter_count()));
    d2r::Context init_ctx({.backend = d2r::Backend::cpu});
    net.init(init_ctx, d2r::vector_view(p.data(), static_cast<std::int64_t>(p.size())), 3);
    params.assign(p.begin(), p.end());
    // Scale the weights up a little so that the logits are far from uniform.
    for (auto& v : params) v = static_cast<T>(static_cast<float>(1.5 * static_cast<double>(v)));
    for (double v : rng.vector<float>(static_cast<std::size_t>(B * D), -1.5, 1.5)) x.push_back(static_cast<T>(v));
    labels.resize(static_cast<std::size_t>(B));
    for (auto& l : labels) l = static_cast<std::int32_t>(std::min<double>(rng.uniform(0, 3), 2));
    for (double v : reward_params(f)) u.push_back(static_cast<T>(v));
    options = {.entropy_weight = T(0.3), .transform = {.kind = t}};
  }
  std::int64_t P() const { return net.parameter_count(); }
  d2r::ConstVector<T> theta() const { return {params.data(), P()}; }
  d2r::ConstMatrix<T> xv() const { return {x.data(), B, D, D}; }
  d2r::VectorView<const std::int32_t> lab() const { return {labels.data(), B}; }
  d2r::MahalanobisReward<T> reward() const { return {form, {u.data(), static_cast<std::int64_t>(u.size())}}; }

  /// A curvature prepared at the current params with `step`; its gradient into `grad`.
  void prepare(d2r::CategoricalPolicyCurvature<T>& c, std::vector<T>& grad, std::uint64_t step = 5) {
    grad.assign(static_cast<std::size_t>(P()), T(0));
    c.prepare(theta(), xv(), lab(), reward(), G, options, {.step = step}, d2r::vector_view(grad.data(), P()));
  }

  /// Logits at the current params.
  std::vector<T> logits(std::vector<T>& cache) {
    std::vector<T> out(static_cast<std::size_t>(B * C));
    cache.assign(static_cast<std::size_t>(net.cache_elements(B)), T(0));
    net.forward(ctx, theta(), xv(), d2r::vector_view(cache.data(), static_cast<std::int64_t>(cache.size())),
                d2r::matrix_view(out.data(), B, C));
    return out;
  }

  /// The surrogate from its definition, at the current params with the samples and advantages of
  /// `c` held fixed: L = (1/BG) Σ −log p(k_bg | x_b) A_bg − (λ/B) Σ_b H_b.
  double fixed_loss(const d2r::CategoricalPolicyCurvature<T>& c) {
    std::vector<T> cache;
    const std::vector<T> l = logits(cache);
    const d2r::Categorical<T> head{d2r::matrix_view<const T>(l.data(), B, C)};
    std::vector<T> lp(static_cast<std::size_t>(B * G)), H(static_cast<std::size_t>(B));
    d2r::log_prob(ctx, head, c.samples(), d2r::matrix_view(lp.data(), B, G));
    d2r::entropy(ctx, head, d2r::vector_view(H.data(), B));
    double loss = 0;
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t g = 0; g < G; ++g)
        loss -= static_cast<double>(lp[b * G + g]) * static_cast<double>(c.advantages()(b, g)) / double(B * G);
      loss -= static_cast<double>(options.entropy_weight) * static_cast<double>(H[b]) / double(B);
    }
    return loss;
  }

  /// ∇θ of the surrogate with the samples and cotangents of `c` held fixed (the gradient whose
  /// Jacobian the HVP is), at the current params.
  std::vector<T> fixed_gradient(const d2r::CategoricalPolicyCurvature<T>& c) {
    std::vector<T> cache;
    const std::vector<T> l = logits(cache);
    std::vector<T> d_head(static_cast<std::size_t>(B * C)), grad(static_cast<std::size_t>(P()));
    const d2r::Categorical<T> head{d2r::matrix_view<const T>(l.data(), B, C)};
    d2r::backward(ctx, head, c.samples(), c.log_prob_cotangent(), c.entropy_cotangent(),
                  d2r::CategoricalGrad<T>{d2r::matrix_view(d_head.data(), B, C)});
    net.backward(ctx, theta(), xv(), d2r::vector_view<const T>(cache.data(), static_cast<std::int64_t>(cache.size())),
                 d2r::matrix_view<const T>(d_head.data(), B, C), d2r::vector_view(grad.data(), P()), {});
    return grad;
  }
};

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

using Case = std::tuple<Net, RewardForm, Transform>;
class CategoricalPolicyCurvature : public ::testing::TestWithParam<Case> {};

TEST_P(CategoricalPolicyCurvature, GradientMatchesCentralDifferencesOfTheSurrogate) {
  const auto [n, form, transform] = GetParam();
  CatProblem<double> s(n, form, transform);
  const std::int64_t P = s.P();
  d2r::CategoricalPolicyCurvature<double> c(s.ctx, s.net, s.B);
  std::vector<double> grad;
  s.prepare(c, grad);
  // What prepare kept: G samples per row in [0, C), per-row losses summing to the loss.
  ASSERT_EQ(c.samples().rows, s.B);
  ASSERT_EQ(c.samples().cols, s.G);
  for (std::int64_t b = 0; b < s.B; ++b)
    for (std::int64_t g = 0; g < s.G; ++g) EXPECT_TRUE(c.samples()(b, g) >= 0 && c.samples()(b, g) < s.C);
  double total = 0;
  for (std::int64_t b = 0; b < s.B; ++b) total += c.row_loss()[b];
  EXPECT_NEAR(total, s.fixed_loss(c), 1e-12);
  // The gradient is that of the loss with samples and advantages fixed ...
  std::vector<double> fd(static_cast<std::size_t>(P));
  for (std::int64_t i = 0; i < P; ++i)
    fd[i] = d2r::test::central_difference(s.params, static_cast<std::size_t>(i), [&] { return s.fixed_loss(c); });
  D2R_EXPECT_CLOSE(grad, fd, 1e-6, 1e-8);
  // ... and the composition of the primitives with the kept cotangents.
  D2R_EXPECT_CLOSE(grad, s.fixed_gradient(c), 1e-12, 1e-14);
  double norm = 0;
  for (double g : grad) norm += std::abs(g);
  EXPECT_GT(norm, 1e-3);
}

TEST_P(CategoricalPolicyCurvature, HvpIsTheJacobianOfTheGradient) {
  const auto [n, form, transform] = GetParam();
  CatProblem<double> s(n, form, transform);
  const std::int64_t P = s.P();
  d2r::CategoricalPolicyCurvature<double> c(s.ctx, s.net, s.B);
  std::vector<double> grad;
  s.prepare(c, grad);
  TestRng rng(9);
  const auto v = rng.vector<double>(static_cast<std::size_t>(P), -1, 1), w = rng.vector<double>(static_cast<std::size_t>(P), -1, 1);
  std::vector<double> hv(static_cast<std::size_t>(P)), hw(static_cast<std::size_t>(P));
  c.apply({v.data(), P}, {hv.data(), P});
  c.apply({w.data(), P}, {hw.data(), P});
  // Central difference of the fixed-sample gradient along v.
  const std::vector<double> saved = s.params;
  const double h = 1e-5;
  for (std::int64_t i = 0; i < P; ++i) s.params[i] = saved[i] + h * v[i];
  const auto up = s.fixed_gradient(c);
  for (std::int64_t i = 0; i < P; ++i) s.params[i] = saved[i] - h * v[i];
  const auto down = s.fixed_gradient(c);
  s.params = saved;
  std::vector<double> fd(static_cast<std::size_t>(P));
  for (std::int64_t i = 0; i < P; ++i) fd[i] = (up[i] - down[i]) / (2 * h);
  D2R_EXPECT_CLOSE(hv, fd, 1e-5, 1e-8);
  double norm = 0;
  for (double x : hv) norm += std::abs(x);
  EXPECT_GT(norm, 1e-3);
  // Symmetry: wᵀ(Hv) = vᵀ(Hw).
  EXPECT_NEAR(dot(w, hv), dot(v, hw), 1e-12 * (1 + norm));
  // The operator is the same map; applying it again gives the same bits.
  std::vector<double> again(static_cast<std::size_t>(P));
  c.as_operator()({v.data(), P}, {again.data(), P});
  EXPECT_EQ(again, hv);
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const RewardForm f = std::get<1>(info.param);
  const char* fs = f == RewardForm::scalar ? "scalar" : f == RewardForm::diagonal ? "diagonal" : "full";
  return std::string(net_name(std::get<0>(info.param))) + "_" + fs + "_" + d2r::to_string(std::get<2>(info.param));
}

INSTANTIATE_TEST_SUITE_P(Cases, CategoricalPolicyCurvature,
                         ::testing::Combine(::testing::Values(Net::tanh_hidden, Net::relu_hidden, Net::logistic),
                                            ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                                            ::testing::Values(Transform::none, Transform::leave_one_out)),
                         case_name);

/// The explicit Hessian, column by column from apply().
std::vector<double> explicit_hessian(d2r::CategoricalPolicyCurvature<double>& c, std::int64_t P) {
  std::vector<double> H(static_cast<std::size_t>(P * P)), e(static_cast<std::size_t>(P), 0.0), col(static_cast<std::size_t>(P));
  for (std::int64_t j = 0; j < P; ++j) {
    e[j] = 1;
    c.apply({e.data(), P}, {col.data(), P});
    e[j] = 0;
    for (std::int64_t i = 0; i < P; ++i) H[i * P + j] = col[i];
  }
  return H;
}

/// (A) w = b by Gaussian elimination with partial pivoting.
std::vector<double> dense_solve(std::vector<double> A, std::vector<double> b) {
  const auto P = static_cast<std::int64_t>(b.size());
  for (std::int64_t k = 0; k < P; ++k) {
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
  std::vector<double> w(static_cast<std::size_t>(P));
  for (std::int64_t i = P - 1; i >= 0; --i) {
    double t = b[i];
    for (std::int64_t j = i + 1; j < P; ++j) t -= A[i * P + j] * w[j];
    w[i] = t / A[i * P + i];
  }
  return w;
}

TEST(CategoricalPolicyCurvatureHessian, ExplicitHessianIsTheSecondDifferenceOfTheLossAndCgSolvesIt) {
  for (Net n : {Net::tanh_hidden, Net::logistic}) {
    SCOPED_TRACE(net_name(n));
    CatProblem<double> s(n, RewardForm::diagonal, Transform::none, 2);
    const std::int64_t P = s.P();
    d2r::CategoricalPolicyCurvature<double> c(s.ctx, s.net, s.B);
    std::vector<double> grad;
    s.prepare(c, grad, 1);
    const std::vector<double> H = explicit_hessian(c, P);
    // Second differences of the loss (independent of every gradient and tangent code path):
    // H_ij ≈ [L(+h e_i + h e_j) − L(+h e_i − h e_j) − L(−h e_i + h e_j) + L(−h e_i − h e_j)] / 4h².
    const double h = 1e-4;
    std::vector<double> fd(static_cast<std::size_t>(P * P));
    const std::vector<double> saved = s.params;
    const auto at = [&](std::int64_t i, double si, std::int64_t j, double sj) {
      s.params = saved;
      s.params[i] += si * h;
      s.params[j] += sj * h;
      return s.fixed_loss(c);
    };
    for (std::int64_t i = 0; i < P; ++i)
      for (std::int64_t j = i; j < P; ++j)
        fd[i * P + j] = fd[j * P + i] = (at(i, 1, j, 1) - at(i, 1, j, -1) - at(i, -1, j, 1) + at(i, -1, j, -1)) / (4 * h * h);
    s.params = saved;
    D2R_EXPECT_CLOSE(H, fd, 1e-5, 1e-7);
    double asym = 0, mag = 0;
    for (std::int64_t i = 0; i < P; ++i)
      for (std::int64_t j = 0; j < P; ++j)
        asym = std::max(asym, std::abs(H[i * P + j] - H[j * P + i])), mag = std::max(mag, std::abs(H[i * P + j]));
    EXPECT_GT(mag, 1e-3);
    EXPECT_LT(asym, 1e-12 * mag);
    // (H + δI) w = g by CG on the normal equations (H is indefinite, and singular for the
    // logistic regression: softmax is invariant to a common shift of the logits) vs a dense solve.
    const double damping = 0.5;
    std::vector<double> A = H;
    for (std::int64_t i = 0; i < P; ++i) A[i * P + i] += damping;
    const std::vector<double> w_dense = dense_solve(A, grad);
    std::vector<double> w(static_cast<std::size_t>(P), 0.0);
    const auto report = d2r::conjugate_gradient_normal<double>(s.ctx, c.as_operator(), {grad.data(), P}, {w.data(), P},
                                                               {.damping = damping, .tolerance = 1e-12, .max_iterations = 4 * P});
    EXPECT_EQ(report.status, d2r::SolveStatus::converged) << d2r::to_string(report.status);
    D2R_EXPECT_CLOSE(w, w_dense, 1e-6, 1e-8);
  }
}

TEST(CategoricalPolicyCurvatureHessian, LogisticRegressionHessianIsTheClosedForm) {
  // With λ = 0 the fixed-sample surrogate of a logistic regression ℓ_b = W x_b + b is
  // Σ_bg c_bg log p(k_bg), whose Hessian is −Σ_b (Σ_g c_bg) (diag p_b − p_b p_bᵀ) ⊗ [x_b; 1][x_b; 1]ᵀ.
  CatProblem<double> s(Net::logistic, RewardForm::full, Transform::none, 3);
  s.options.entropy_weight = 0;
  const std::int64_t P = s.P(), D = s.D, C = s.C;
  d2r::CategoricalPolicyCurvature<double> c(s.ctx, s.net, s.B);
  std::vector<double> grad;
  s.prepare(c, grad, 4);
  const std::vector<double> H = explicit_hessian(c, P);
  std::vector<double> cache;
  const std::vector<double> l = s.logits(cache);
  const d2r::MlpLayer layer = s.net.layer(0);
  // Parameter index of logit class k's coefficient of input i (i = D: the bias).
  const auto index = [&](std::int64_t k, std::int64_t i) { return i < D ? layer.weight_offset + k * D + i : layer.bias_offset + k; };
  std::vector<double> expected(static_cast<std::size_t>(P * P), 0.0);
  for (std::int64_t b = 0; b < s.B; ++b) {
    double m = 0, sum_c = 0;
    for (std::int64_t k = 0; k < C; ++k) m = std::max(m, l[b * C + k]);
    std::vector<double> p(static_cast<std::size_t>(C));
    double z = 0;
    for (std::int64_t k = 0; k < C; ++k) z += p[k] = std::exp(l[b * C + k] - m);
    for (auto& v : p) v /= z;
    for (std::int64_t g = 0; g < s.G; ++g) sum_c += c.log_prob_cotangent()(b, g);
    for (std::int64_t k = 0; k < C; ++k)
      for (std::int64_t j = 0; j < C; ++j)
        for (std::int64_t i = 0; i <= D; ++i)
          for (std::int64_t q = 0; q <= D; ++q) {
            const double xi = i < D ? s.x[b * D + i] : 1.0, xq = q < D ? s.x[b * D + q] : 1.0;
            expected[index(k, i) * P + index(j, q)] -= sum_c * ((k == j ? p[k] : 0.0) - p[k] * p[j]) * xi * xq;
          }
  }
  D2R_EXPECT_CLOSE(H, expected, 1e-12, 1e-14);
}

TEST(CategoricalPolicyCurvatureMixed, MixedProductIsTheRewardDerivativeOfTheGradientAlongW) {
  for (Net n : {Net::tanh_hidden, Net::logistic}) {
    for (RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
      for (Transform t : {Transform::none, Transform::leave_one_out, Transform::standardize}) {
        SCOPED_TRACE(std::string(net_name(n)) + " " + d2r::to_string(t) + " form " + std::to_string(static_cast<int>(form)));
        CatProblem<double> s(n, form, t);
        s.G = 8;
        const std::int64_t P = s.P(), U = static_cast<std::int64_t>(s.u.size());
        TestRng rng(4);
        const auto w = rng.vector<double>(static_cast<std::size_t>(P), -1, 1);
        const auto gradient_dot_w = [&]() {  // ⟨∇θ L_in(φ), w⟩; θ and the key fixed, so the samples are too
          d2r::CategoricalPolicyCurvature<double> c(s.ctx, s.net, s.B);
          std::vector<double> grad;
          s.prepare(c, grad, 2);
          return dot(grad, w);
        };
        d2r::CategoricalPolicyCurvature<double> c(s.ctx, s.net, s.B);
        std::vector<double> grad, mixed(static_cast<std::size_t>(U));
        s.prepare(c, grad, 2);
        c.mixed_product({w.data(), P}, d2r::vector_view(mixed.data(), U));
        double norm = 0;
        for (std::int64_t i = 0; i < U; ++i) {
          EXPECT_NEAR(mixed[i], d2r::test::central_difference(s.u, static_cast<std::size_t>(i), gradient_dot_w),
                      1e-6 * (1 + std::abs(mixed[i])))
              << "param " << i;
          norm += std::abs(mixed[i]);
        }
        // A group standardised from at most two distinct rewards does not depend on them (up to ε):
        // the one-hot rewards of a row take three values (k = y and two different k ≠ y) only
        // when the row drew every class, and then only for a non-scalar U.
        bool three_valued = false;
        for (std::int64_t b = 0; b < s.B; ++b) {
          bool seen[3] = {false, false, false};
          for (std::int64_t g = 0; g < s.G; ++g) seen[c.samples()(b, g)] = true;
          three_valued = three_valued || (seen[0] && seen[1] && seen[2]);
        }
        if (t == Transform::standardize && (form == RewardForm::scalar || !three_valued)) {
          EXPECT_LT(norm, 1e-5);
        } else {
          EXPECT_GT(norm, 1e-4);
        }
      }
    }
  }
}

TEST(CategoricalPolicyCurvaturePrecision, FloatAgreesWithDouble) {
  for (Net n : {Net::tanh_hidden, Net::logistic}) {
    SCOPED_TRACE(net_name(n));
    CatProblem<float> f(n, RewardForm::full, Transform::leave_one_out, 5);
    CatProblem<double> d(n, RewardForm::full, Transform::leave_one_out, 5);
    ASSERT_EQ(std::vector<double>(f.params.begin(), f.params.end()), d.params);
    ASSERT_EQ(f.labels, d.labels);
    const std::int64_t P = d.P(), U = static_cast<std::int64_t>(d.u.size());
    d2r::CategoricalPolicyCurvature<float> cf(f.ctx, f.net, f.B);
    d2r::CategoricalPolicyCurvature<double> cd(d.ctx, d.net, d.B);
    std::vector<float> gf;
    std::vector<double> gd;
    f.prepare(cf, gf, 7);
    d.prepare(cd, gd, 7);
    for (std::int64_t b = 0; b < d.B; ++b)
      for (std::int64_t g = 0; g < d.G; ++g) ASSERT_EQ(cf.samples()(b, g), cd.samples()(b, g)) << b << "," << g;
    D2R_EXPECT_CLOSE(gf, gd, 1e-4, 1e-6);
    TestRng rng(12);
    const auto vd = rng.vector<double>(static_cast<std::size_t>(P), -1, 1);
    const std::vector<float> vf(vd.begin(), vd.end());
    std::vector<float> hf(static_cast<std::size_t>(P)), mf(static_cast<std::size_t>(U));
    std::vector<double> hd(static_cast<std::size_t>(P)), md(static_cast<std::size_t>(U));
    cf.apply({vf.data(), P}, {hf.data(), P});
    cd.apply({vd.data(), P}, {hd.data(), P});
    D2R_EXPECT_CLOSE(hf, hd, 1e-4, 1e-5);
    cf.mixed_product({vf.data(), P}, {mf.data(), U});
    cd.mixed_product({vd.data(), P}, {md.data(), U});
    D2R_EXPECT_CLOSE(mf, md, 1e-4, 1e-6);
  }
}

TEST(CategoricalPolicyCurvatureErrors, ConstructorAndUnpreparedCalls) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const d2r::Mlp one({.inputs = 2, .outputs = 1});
  d2r::test::expect_error([&] { d2r::CategoricalPolicyCurvature<double> c(ctx, one, 4); }, "net", "2 <= C");
  const d2r::Mlp net({.inputs = 2, .outputs = 3});
  d2r::test::expect_error([&] { d2r::CategoricalPolicyCurvature<double> c(ctx, net, 0); }, "batch", "B >= 1");
  d2r::CategoricalPolicyCurvature<double> c(ctx, net, 4);
  std::vector<double> v(static_cast<std::size_t>(net.parameter_count())), hv(v.size()), g(1);
  const auto P = static_cast<std::int64_t>(v.size());
  d2r::test::expect_error([&] { c.apply({v.data(), P}, {hv.data(), P}); }, "this", "prepare() must succeed before apply()");
  d2r::test::expect_error([&] { c.mixed_product({v.data(), P}, {g.data(), 1}); }, "this",
                          "prepare() must succeed before mixed_product()");
  d2r::test::expect_error([&] { (void)c.as_operator()({v.data(), P}, {hv.data(), P}); }, "this", "prepare() must succeed");
}

TEST(CategoricalPolicyCurvatureErrors, BadPrepareArgumentsAreNamedAndTouchNothing) {
  CatProblem<double> s(Net::tanh_hidden, RewardForm::diagonal, Transform::leave_one_out);
  const std::int64_t P = s.P(), B = s.B;
  d2r::CategoricalPolicyCurvature<double> c(s.ctx, s.net, B);
  // A good preparation first: a failed prepare() must leave it (and grad) as they were.
  std::vector<double> grad0;
  s.prepare(c, grad0);
  TestRng rng(3);
  const auto v = rng.vector<double>(static_cast<std::size_t>(P), -1, 1);
  std::vector<double> hv0(static_cast<std::size_t>(P));
  c.apply({v.data(), P}, {hv0.data(), P});

  const double sentinel = 12345.0;
  std::vector<double> grad(static_cast<std::size_t>(P), sentinel);
  const auto gv = d2r::vector_view(grad.data(), P);
  const auto expect = [&](auto call, const std::string& argument, const std::string& words) {
    d2r::test::expect_error(call, argument, words);
    EXPECT_TRUE(std::all_of(grad.begin(), grad.end(), [&](double x) { return x == sentinel; })) << argument;
  };
  const d2r::DrawKey key{.step = 5};
  std::vector<std::int32_t> bad = s.labels;
  bad[2] = 3;  // == C
  expect([&] { c.prepare(s.theta(), s.xv(), {bad.data(), B}, s.reward(), s.G, s.options, key, gv); }, "labels",
         "class index in [0, 3)");
  bad[2] = -1;
  expect([&] { c.prepare(s.theta(), s.xv(), {bad.data(), B}, s.reward(), s.G, s.options, key, gv); }, "labels",
         "class index in [0, 3)");
  expect([&] { c.prepare(s.theta(), s.xv(), {s.labels.data(), B - 1}, s.reward(), s.G, s.options, key, gv); }, "labels",
         "expected B = 5 class indices");
  expect([&] { c.prepare({s.params.data(), P - 1}, s.xv(), s.lab(), s.reward(), s.G, s.options, key, gv); }, "params",
         "expected " + std::to_string(P) + " entries");
  expect([&] { c.prepare(s.theta(), {s.x.data(), B - 1, s.D, s.D}, s.lab(), s.reward(), s.G, s.options, key, gv); }, "x",
         "expected B x inputs");
  expect([&] { c.prepare(s.theta(), {s.x.data(), B, s.D - 1, s.D}, s.lab(), s.reward(), s.G, s.options, key, gv); }, "x",
         "expected B x inputs");
  expect([&] { c.prepare(s.theta(), s.xv(), s.lab(), {RewardForm::diagonal, {s.u.data(), 2}}, s.G, s.options, key, gv); },
         "reward.params", "expected a 1 x 3 matrix");
  std::vector<double> negative = s.u;
  negative[1] = -0.5;
  expect([&] { c.prepare(s.theta(), s.xv(), s.lab(), {RewardForm::diagonal, {negative.data(), 3}}, s.G, s.options, key, gv); },
         "reward.params", "positive definite");
  expect([&] { c.prepare(s.theta(), s.xv(), s.lab(), s.reward(), 0, s.options, key, gv); }, "generations",
         "generations >= 1");
  expect([&] { c.prepare(s.theta(), s.xv(), s.lab(), s.reward(), 1, s.options, key, gv); }, "generations", "G >= 2");
  d2r::PgOptions<double> o = s.options;
  o.entropy_weight = -1;
  expect([&] { c.prepare(s.theta(), s.xv(), s.lab(), s.reward(), s.G, o, key, gv); }, "options.entropy_weight", "λ >= 0");
  expect([&] { c.prepare(s.theta(), s.xv(), s.lab(), s.reward(), s.G, s.options, {.step = std::uint64_t{1} << 32}, gv); },
         "key.step", "step < 2^32");
  expect([&] { c.prepare(s.theta(), s.xv(), s.lab(), s.reward(), s.G, s.options, key, {grad.data(), P + 1}); }, "grad",
         "expected " + std::to_string(P) + " entries");
  // grad aliasing params (the params must not change either).
  std::vector<double> alias = s.params;
  d2r::test::expect_error([&] {
    c.prepare({alias.data(), P}, s.xv(), s.lab(), s.reward(), s.G, s.options, key, {alias.data(), P});
  }, "grad", "overlaps argument 'params'");
  EXPECT_EQ(alias, s.params);

  // The earlier preparation still stands.
  std::vector<double> hv(static_cast<std::size_t>(P));
  c.apply({v.data(), P}, {hv.data(), P});
  EXPECT_EQ(hv, hv0);
  // Bad apply / mixed_product arguments.
  d2r::test::expect_error([&] { c.apply({v.data(), P - 1}, {hv.data(), P}); }, "v", "expected " + std::to_string(P));
  d2r::test::expect_error([&] { c.apply({v.data(), P}, {hv.data(), P - 1}); }, "hv", "expected " + std::to_string(P));
  std::vector<double> same = v;
  d2r::test::expect_error([&] { c.apply({same.data(), P}, {same.data(), P}); }, "hv", "overlaps argument 'v'");
  std::vector<double> m(3, sentinel);
  d2r::test::expect_error([&] { c.mixed_product({v.data(), P - 1}, {m.data(), 3}); }, "w", "expected " + std::to_string(P));
  d2r::test::expect_error([&] { c.mixed_product({v.data(), P}, {m.data(), 2}); }, "grad_params", "expected a 1 x 3 matrix");
  EXPECT_TRUE(std::all_of(m.begin(), m.end(), [&](double x) { return x == sentinel; }));
}

}  // namespace

// ---------------------------------------------------------------- exact curvature
namespace {

/// prepare_exact's gradient, HVP and mixed product for L_exact = −(1/B) Σ_b (Σ_k p_k r(k, y_b) + λ H_b).
struct ExactCat {
  CatProblem<double>& p;
  /// Σ_b row_loss_b of exact_objective at the current params (and φ).
  double loss() {
    std::vector<double> cache;
    const std::vector<double> l = p.logits(cache);
    std::vector<double> rows(static_cast<std::size_t>(p.B)), g(static_cast<std::size_t>(p.B * p.C));
    d2r::exact_objective(p.ctx, d2r::Categorical<double>{d2r::matrix_view<const double>(l.data(), p.B, p.C)}, p.lab(),
                         p.reward(), p.options, d2r::ObjectiveRows<double>{d2r::vector_view(rows.data(), p.B), {}},
                         d2r::CategoricalGrad<double>{d2r::matrix_view(g.data(), p.B, p.C)});
    double s = 0;
    for (double r : rows) s += r;
    return s;
  }
  /// prepare_exact's gradient at the current params (and φ).
  std::vector<double> gradient() {
    d2r::CategoricalPolicyCurvature<double> c(p.ctx, p.net, p.B);
    std::vector<double> g(static_cast<std::size_t>(p.P()));
    c.prepare_exact(p.theta(), p.xv(), p.lab(), p.reward(), p.options, d2r::vector_view(g.data(), p.P()));
    return g;
  }
};

using ExactCase = std::tuple<Net, RewardForm>;
class CategoricalPolicyCurvatureExact : public ::testing::TestWithParam<ExactCase> {};

TEST_P(CategoricalPolicyCurvatureExact, GradientHvpAndMixedProductMatchFiniteDifferences) {
  const auto [n, form] = GetParam();
  CatProblem<double> p(n, form, Transform::none, 3);
  ExactCat e{p};
  const std::int64_t P = p.P();
  d2r::CategoricalPolicyCurvature<double> c(p.ctx, p.net, p.B);
  std::vector<double> grad(static_cast<std::size_t>(P));
  c.prepare_exact(p.theta(), p.xv(), p.lab(), p.reward(), p.options, d2r::vector_view(grad.data(), P));
  EXPECT_EQ(c.samples().cols, 0);  // no sampling
  // Gradient against central differences of L_exact.
  double norm = 0;
  for (std::int64_t i = 0; i < P; ++i) {
    const double fd = d2r::test::central_difference(p.params, static_cast<std::size_t>(i), [&] { return e.loss(); });
    EXPECT_NEAR(grad[static_cast<std::size_t>(i)], fd, 1e-7 * (1 + std::abs(fd))) << "θ entry " << i;
    norm += std::abs(grad[static_cast<std::size_t>(i)]);
  }
  EXPECT_GT(norm, 1e-3);
  // HVP against central differences of the gradient along v; symmetry.
  TestRng rng(12);
  const std::vector<double> v = rng.vector<double>(static_cast<std::size_t>(P), -1, 1),
                            w = rng.vector<double>(static_cast<std::size_t>(P), -1, 1);
  std::vector<double> hv(static_cast<std::size_t>(P)), hw(static_cast<std::size_t>(P));
  c.apply(d2r::vector_view<const double>(v.data(), P), d2r::vector_view(hv.data(), P));
  c.as_operator()(d2r::vector_view<const double>(w.data(), P), d2r::vector_view(hw.data(), P));
  const std::vector<double> saved = p.params;
  const double h = 1e-5;
  for (std::int64_t i = 0; i < P; ++i) p.params[i] = saved[i] + h * v[i];
  const std::vector<double> up = e.gradient();
  for (std::int64_t i = 0; i < P; ++i) p.params[i] = saved[i] - h * v[i];
  const std::vector<double> down = e.gradient();
  p.params = saved;
  std::vector<double> fd(static_cast<std::size_t>(P));
  double scale = 0;
  for (std::int64_t i = 0; i < P; ++i) {
    fd[i] = (up[i] - down[i]) / (2 * h);
    scale = std::max(scale, std::abs(fd[i]));
  }
  EXPECT_GT(scale, 1e-4);
  D2R_EXPECT_CLOSE(hv, fd, 1e-5, 1e-8 + 1e-7 * scale);
  EXPECT_NEAR(dot(w, hv), dot(v, hw), 1e-10 * (1 + std::abs(dot(w, hv))));
  // Mixed product against ∂/∂φ_j (∇θ L_exact · w).
  const auto U = static_cast<std::int64_t>(p.u.size());
  std::vector<double> mixed(static_cast<std::size_t>(U));
  c.mixed_product(d2r::vector_view<const double>(w.data(), P), d2r::vector_view(mixed.data(), U));
  double mixed_norm = 0;
  for (std::int64_t j = 0; j < U; ++j) {
    const double fdj = d2r::test::central_difference(p.u, static_cast<std::size_t>(j), [&] { return dot(e.gradient(), w); },
                                                     1e-5);
    EXPECT_NEAR(mixed[static_cast<std::size_t>(j)], fdj, 1e-7 * (1 + std::abs(fdj))) << "φ entry " << j;
    mixed_norm += std::abs(mixed[static_cast<std::size_t>(j)]);
  }
  EXPECT_GT(mixed_norm, 1e-5);
  // A surrogate prepare afterwards switches the object back to the REINFORCE curvature.
  std::vector<double> g2;
  p.prepare(c, g2);
  EXPECT_EQ(c.samples().cols, p.G);
  std::vector<double> hv2(static_cast<std::size_t>(P));
  c.apply(d2r::vector_view<const double>(v.data(), P), d2r::vector_view(hv2.data(), P));
  double diff = 0;
  for (std::int64_t i = 0; i < P; ++i) diff = std::max(diff, std::abs(hv2[i] - hv[i]));
  EXPECT_GT(diff, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Cases, CategoricalPolicyCurvatureExact,
                         ::testing::Combine(::testing::Values(Net::tanh_hidden, Net::relu_hidden, Net::logistic),
                                            ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full)),
                         [](const auto& info) {
                           const RewardForm f = std::get<1>(info.param);
                           return std::string(net_name(std::get<0>(info.param))) + "_" +
                                  (f == RewardForm::scalar ? "scalar" : f == RewardForm::diagonal ? "diagonal" : "full");
                         });

TEST(CategoricalPolicyCurvatureExactErrors, BadArgumentsAreNamedAndTouchNothing) {
  CatProblem<double> p(Net::logistic, RewardForm::diagonal, Transform::none);
  const std::int64_t P = p.P();
  d2r::CategoricalPolicyCurvature<double> c(p.ctx, p.net, p.B);
  std::vector<double> grad(static_cast<std::size_t>(P), 9.0);
  const auto g = d2r::vector_view(grad.data(), P);
  std::vector<std::int32_t> bad = p.labels;
  bad[2] = 3;
  d2r::test::expect_error([&] { c.prepare_exact(p.theta(), p.xv(), {bad.data(), p.B}, p.reward(), p.options, g); },
                          "labels", "class index in [0, 3)");
  d2r::test::expect_error([&] { c.prepare_exact(p.theta(), p.xv(), {p.labels.data(), p.B - 1}, p.reward(), p.options, g); },
                          "labels", "");
  d2r::test::expect_error(
      [&] { c.prepare_exact(p.theta(), p.xv(), p.lab(), {RewardForm::diagonal, {p.u.data(), 2}}, p.options, g); },
      "reward.params", "");
  d2r::test::expect_error(
      [&] { c.prepare_exact(p.theta(), p.xv(), p.lab(), p.reward(), {.normaliser_rows = 2}, g); },
      "options.normaliser_rows", "");
  d2r::test::expect_error(
      [&] { c.prepare_exact(p.theta(), p.xv(), p.lab(), p.reward(), p.options, {p.params.data(), P}); }, "grad",
      "overlaps");
  for (double v : grad) EXPECT_EQ(v, 9.0);
  std::vector<double> v(static_cast<std::size_t>(P)), hv(static_cast<std::size_t>(P));
  d2r::test::expect_error([&] { c.apply({v.data(), P}, {hv.data(), P}); }, "this", "prepare() must succeed");
}

}  // namespace
