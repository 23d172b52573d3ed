// Second-order reward pieces on the cpu backend (double): the transforms' vector-Jacobian
// products, the REINFORCE mixed product ∇_φ(∇_head L · ḣ) and its exact-curvature variant against
// central differences in φ, the DESIGN.md §6 identity for transform none, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "d2r/second_order.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::Transform;
using d2r::test::central_difference;
using d2r::test::TestRng;

constexpr Transform kTransforms[] = {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out,
                                     Transform::standardize};
constexpr RewardForm kForms[] = {RewardForm::scalar, RewardForm::diagonal, RewardForm::full};

std::vector<double> reward_params(RewardForm form, std::int64_t d, TestRng& rng) {
  std::vector<double> p(d2r::reward_param_count(form, d));
  for (auto& v : p) v = form == RewardForm::full ? rng.uniform(-0.4, 0.4) : rng.uniform(0.3, 1.5);
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < d; ++i) p[i * (i + 1) / 2 + i] = rng.uniform(0.6, 1.2);
  return p;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ---------------------------------------------------------------- transform VJP
TEST(TransformRewardsBackward, MatchesFiniteDifferencesForEveryTransform) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t B = 3, G = 5;
  for (const Transform t : kTransforms) {
    TestRng rng(7 + static_cast<std::uint64_t>(t));
    std::vector<double> r = rng.vector<double>(B * G, -2, 1), da = rng.vector<double>(B * G, -1, 1), dr(B * G);
    const d2r::TransformOptions<double> o{.kind = t, .rbf_gamma = 0.7, .standardize_epsilon = 1e-3};
    d2r::transform_rewards_backward(ctx, o, d2r::matrix_view<const double>(r.data(), B, G),
                                    d2r::matrix_view<const double>(da.data(), B, G), d2r::matrix_view(dr.data(), B, G));
    const auto f = [&]() {
      std::vector<double> a(B * G);
      d2r::transform_rewards(ctx, o, d2r::matrix_view<const double>(r.data(), B, G), d2r::matrix_view(a.data(), B, G));
      return dot(a, da);
    };
    for (std::size_t i = 0; i < r.size(); ++i)
      EXPECT_NEAR(dr[i], central_difference(r, i, f), 1e-7 * (1 + std::abs(dr[i]))) << d2r::to_string(t) << " " << i;
  }
}

TEST(TransformRewardsBackward, NormalizeSubgradientGoesToFirstMinimum) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::vector<double> r{0.5, -1.0, 2.0, -1.0}, da{0.1, 0.2, 0.3, 0.4};
  std::vector<double> dr(4);
  d2r::transform_rewards_backward(ctx, d2r::TransformOptions<double>{.kind = Transform::normalize},
                                  d2r::matrix_view<const double>(r.data(), 1, 4),
                                  d2r::matrix_view<const double>(da.data(), 1, 4), d2r::matrix_view(dr.data(), 1, 4));
  EXPECT_DOUBLE_EQ(dr[0], 0.1);
  EXPECT_DOUBLE_EQ(dr[1], 0.2 - 1.0);
  EXPECT_DOUBLE_EQ(dr[2], 0.3);
  EXPECT_DOUBLE_EQ(dr[3], 0.4);
}

TEST(TransformRewardsBackward, StandardizeOfAConstantRowIsFinite) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::vector<double> r{1.0, 1.0, 1.0}, da{0.3, -0.1, 0.4};
  std::vector<double> dr(3);
  const d2r::TransformOptions<double> o{.kind = Transform::standardize, .standardize_epsilon = 0.5};
  d2r::transform_rewards_backward(ctx, o, d2r::matrix_view<const double>(r.data(), 1, 3),
                                  d2r::matrix_view<const double>(da.data(), 1, 3), d2r::matrix_view(dr.data(), 1, 3));
  for (int g = 0; g < 3; ++g) EXPECT_NEAR(dr[g], (da[g] - 0.6 / 3) / 0.5, 1e-15);
}

// ---------------------------------------------------------------- problems
struct Problem {
  std::int64_t B = 3, n = 3, G = 4, C = 5, P;
  bool shared;
  std::vector<double> mean, log_std, tril, logits, targets, reward;
  std::vector<double> t_mean, t_log_std, t_tril, t_logits;
  std::vector<std::int32_t> labels{1, 4, 0};
  RewardForm form;
  Problem(RewardForm f, std::uint64_t seed, bool shared_scale = false) : shared(shared_scale), form(f) {
    TestRng rng(seed);
    const std::int64_t sr = shared ? 1 : B;
    mean = rng.vector<double>(B * n, -1, 1);
    log_std = rng.vector<double>(sr * n, -0.5, 0.3);
    tril = rng.vector<double>(sr * n * (n + 1) / 2, -0.4, 0.4);
    logits = rng.vector<double>(B * C, -1.5, 1.5);
    targets = rng.vector<double>(B * n, -1, 1);
    reward = reward_params(f, n, rng);
    t_mean = rng.vector<double>(B * n, -1, 1);
    t_log_std = rng.vector<double>(sr * n, -1, 1);
    t_tril = rng.vector<double>(sr * n * (n + 1) / 2, -1, 1);
    t_logits = rng.vector<double>(B * C, -1, 1);
    P = static_cast<std::int64_t>(reward.size());
  }
  std::int64_t srows() const { return shared ? 1 : B; }
  std::int64_t tri() const { return n * (n + 1) / 2; }
  d2r::DiagGaussian<double> diag() {
    return {d2r::matrix_view<const double>(mean.data(), B, n), d2r::matrix_view<const double>(log_std.data(), srows(), n)};
  }
  d2r::DiagGaussian<double> diag_t() {
    return {d2r::matrix_view<const double>(t_mean.data(), B, n),
            d2r::matrix_view<const double>(t_log_std.data(), srows(), n)};
  }
  d2r::CholeskyGaussian<double> chol() {
    return {d2r::matrix_view<const double>(mean.data(), B, n), d2r::matrix_view<const double>(tril.data(), srows(), tri()),
            1e-5};
  }
  d2r::CholeskyGaussian<double> chol_t() {
    return {d2r::matrix_view<const double>(t_mean.data(), B, n),
            d2r::matrix_view<const double>(t_tril.data(), srows(), tri()), 0.0};
  }
  d2r::Categorical<double> cat() { return {d2r::matrix_view<const double>(logits.data(), B, C)}; }
  d2r::Categorical<double> cat_t() { return {d2r::matrix_view<const double>(t_logits.data(), B, C)}; }
  d2r::MahalanobisReward<double> r() { return {form, d2r::vector_view<const double>(reward.data(), P)}; }
  d2r::MahalanobisReward<double> r_cat() { return {form, d2r::vector_view<const double>(reward_c.data(), Pc)}; }
  d2r::ConstMatrix<double> y() { return d2r::matrix_view<const double>(targets.data(), B, n); }
  d2r::VectorView<const std::int32_t> lab() { return d2r::vector_view<const std::int32_t>(labels.data(), B); }
  // The categorical head's reward lives in C dimensions.
  std::vector<double> reward_c;
  std::int64_t Pc = 0;
  void make_categorical_reward(std::uint64_t seed) {
    TestRng rng(seed);
    reward_c = reward_params(form, C, rng);
    Pc = static_cast<std::int64_t>(reward_c.size());
  }
};

enum class Head { diag, diag_shared, chol, chol_shared, cat };
bool is_chol(Head h) { return h == Head::chol || h == Head::chol_shared; }
bool is_shared(Head h) { return h == Head::diag_shared || h == Head::chol_shared; }
std::string head_name(Head h) {
  switch (h) {
    case Head::diag: return "diag";
    case Head::diag_shared: return "diag_shared";
    case Head::chol: return "cholesky";
    case Head::chol_shared: return "cholesky_shared";
    case Head::cat: return "categorical";
  }
  return "?";
}

/// ⟨∇_head L, ḣ⟩ for the surrogate (exact = false) or the exact objective (exact = true).
double head_grad_dot(d2r::Context& ctx, Problem& p, Head h, const d2r::PgOptions<double>& opt, d2r::DrawKey key,
                     bool exact) {
  std::vector<double> row_loss(p.B);
  const d2r::ObjectiveRows<double> rows{d2r::vector_view(row_loss.data(), p.B), {}};
  if (h == Head::cat) {
    std::vector<double> gl(p.B * p.C);
    const d2r::CategoricalGrad<double> g{d2r::matrix_view(gl.data(), p.B, p.C)};
    if (exact) {
      d2r::exact_objective(ctx, p.cat(), p.lab(), p.r_cat(), opt, rows, g);
    } else {
      d2r::pg_surrogate(ctx, p.cat(), p.lab(), p.r_cat(), p.G, opt, key, rows, g);
    }
    return dot(gl, p.t_logits);
  }
  std::vector<double> gm(p.B * p.n);
  if (is_chol(h)) {
    std::vector<double> gt(p.srows() * p.tri());
    const d2r::CholeskyGaussianGrad<double> g{d2r::matrix_view(gm.data(), p.B, p.n),
                                              d2r::matrix_view(gt.data(), p.srows(), p.tri())};
    if (exact) {
      d2r::exact_objective(ctx, p.chol(), p.y(), p.r(), opt, rows, g);
    } else {
      d2r::pg_surrogate(ctx, p.chol(), p.y(), p.r(), p.G, opt, key, rows, g);
    }
    return dot(gm, p.t_mean) + dot(gt, p.t_tril);
  }
  std::vector<double> gs(p.srows() * p.n);
  const d2r::DiagGaussianGrad<double> g{d2r::matrix_view(gm.data(), p.B, p.n), d2r::matrix_view(gs.data(), p.srows(), p.n)};
  if (exact) {
    d2r::exact_objective(ctx, p.diag(), p.y(), p.r(), opt, rows, g);
  } else {
    d2r::pg_surrogate(ctx, p.diag(), p.y(), p.r(), p.G, opt, key, rows, g);
  }
  return dot(gm, p.t_mean) + dot(gs, p.t_log_std);
}

/// −pd·log p of the surrogate's samples (for picking a clip that is active on some samples).
std::vector<double> scaled_neg_log_prob(d2r::Context& ctx, Problem& p, Head h, double pd, d2r::DrawKey key) {
  std::vector<double> lp(p.B * p.G);
  if (h == Head::cat) {
    std::vector<std::int32_t> s(p.B * p.G);
    d2r::sample(ctx, p.cat(), p.G, key, d2r::matrix_view(s.data(), p.B, p.G));
    d2r::log_prob(ctx, p.cat(), d2r::matrix_view<const std::int32_t>(s.data(), p.B, p.G), d2r::matrix_view(lp.data(), p.B, p.G));
  } else {
    std::vector<double> s(p.B * p.G * p.n);
    if (h == Head::chol) {
      d2r::sample(ctx, p.chol(), p.G, key, d2r::matrix_view(s.data(), p.B * p.G, p.n));
      d2r::log_prob(ctx, p.chol(), d2r::matrix_view<const double>(s.data(), p.B * p.G, p.n), d2r::matrix_view(lp.data(), p.B, p.G));
    } else {
      d2r::sample(ctx, p.diag(), p.G, key, d2r::matrix_view(s.data(), p.B * p.G, p.n));
      d2r::log_prob(ctx, p.diag(), d2r::matrix_view<const double>(s.data(), p.B * p.G, p.n), d2r::matrix_view(lp.data(), p.B, p.G));
    }
  }
  for (auto& v : lp) v = -pd * v;
  return lp;
}

std::vector<double> run_mixed(d2r::Context& ctx, Problem& p, Head h, const d2r::PgOptions<double>& opt, d2r::DrawKey key) {
  std::vector<double> g(h == Head::cat ? p.Pc : p.P);
  const auto out = d2r::vector_view(g.data(), static_cast<std::int64_t>(g.size()));
  switch (h) {
    case Head::cat: d2r::mixed_product(ctx, p.cat(), p.lab(), p.r_cat(), p.G, opt, key, p.cat_t(), out); break;
    case Head::chol: d2r::mixed_product(ctx, p.chol(), p.y(), p.r(), p.G, opt, key, p.chol_t(), out); break;
    default: d2r::mixed_product(ctx, p.diag(), p.y(), p.r(), p.G, opt, key, p.diag_t(), out); break;
  }
  return g;
}

// ---------------------------------------------------------------- REINFORCE mixed product
using MixedCase = std::tuple<Head, RewardForm>;
class MixedProduct : public ::testing::TestWithParam<MixedCase> {};

TEST_P(MixedProduct, MatchesCentralDifferencesOfTheHeadGradient) {
  const auto [h, form] = GetParam();
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 77});
  const d2r::DrawKey key{.step = 5, .first_row = 2};
  for (const Transform t : kTransforms) {
    for (int clip = 0; clip < 2; ++clip) {
      for (int per_dim = 0; per_dim < 2; ++per_dim) {
        Problem p(form, 300 + 10 * static_cast<std::uint64_t>(t) + static_cast<std::uint64_t>(form), h == Head::diag_shared);
        p.make_categorical_reward(900 + static_cast<std::uint64_t>(form));
        d2r::PgOptions<double> opt{.entropy_weight = 0.2, .transform = {.kind = t, .rbf_gamma = 0.3},
                                   .log_prob_clip = 0.0, .per_dimension_mean = per_dim == 1, .normaliser_rows = 5};
        if (clip == 1) {  // a clip active on some samples and not on others
          const double pd = per_dim == 1 && h != Head::cat ? 1.0 / p.n : 1.0;
          std::vector<double> x = scaled_neg_log_prob(ctx, p, h, pd, key);
          for (auto& v : x) v = std::abs(v);
          std::sort(x.begin(), x.end());
          opt.log_prob_clip = 0.5 * (x[x.size() / 2 - 1] + x[x.size() / 2]);
          ASSERT_GT(x.back(), opt.log_prob_clip);
          ASSERT_LT(x.front(), opt.log_prob_clip);
        }
        const std::vector<double> g = run_mixed(ctx, p, h, opt, key);
        std::vector<double>& phi = h == Head::cat ? p.reward_c : p.reward;
        const auto F = [&]() { return head_grad_dot(ctx, p, h, opt, key, false); };
        double norm = 0;
        for (std::size_t i = 0; i < phi.size(); ++i) {
          const double fd = central_difference(phi, i, F, 1e-5);
          EXPECT_NEAR(g[i], fd, 1e-6 * (1 + std::abs(fd)))
              << head_name(h) << " " << d2r::to_string(t) << " clip " << clip << " per_dim " << per_dim << " param " << i;
          norm += std::abs(g[i]);
        }
        // A scalar reward's scale cancels in standardize (up to ε); a categorical scalar reward
        // only takes the values 0 and −2u, so normalize may flatten a row: no size check there.
        const bool degenerate =
            form == RewardForm::scalar && (t == Transform::standardize || (h == Head::cat && t == Transform::normalize));
        if (!degenerate) {
          EXPECT_GT(norm, 1e-8) << head_name(h) << " " << d2r::to_string(t);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllHeadsAndForms, MixedProduct,
                         ::testing::Combine(::testing::Values(Head::diag, Head::diag_shared, Head::cat, Head::chol),
                                            ::testing::ValuesIn(kForms)),
                         [](const auto& info) {
                           return head_name(std::get<0>(info.param)) + "_" +
                                  std::to_string(static_cast<int>(std::get<1>(info.param)));
                         });

// DESIGN.md §6: for transform none the mixed product is reward_backward of
// s_bg = −pd·active_bg/(N G)·(∇_head log p(ŷ_bg)·ḣ_b); the score is taken here by central
// differences of log_prob along the tangent.
TEST(MixedProductIdentity, TransformNoneIsRewardBackwardOfTheScaledScore) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 12});
  const d2r::DrawKey key{.step = 3};
  for (const RewardForm form : kForms) {
    Problem p(form, 40 + static_cast<std::uint64_t>(form));
    const std::int64_t B = p.B, G = p.G, n = p.n;
    const d2r::PgOptions<double> opt{.per_dimension_mean = true};
    std::vector<double> s(B * G * n);
    d2r::sample(ctx, p.diag(), G, key, d2r::matrix_view(s.data(), B * G, n));
    const auto lp_at = [&](double eps) {
      std::vector<double> m(p.mean), ls(p.log_std), lp(B * G);
      for (std::size_t i = 0; i < m.size(); ++i) m[i] += eps * p.t_mean[i];
      for (std::size_t i = 0; i < ls.size(); ++i) ls[i] += eps * p.t_log_std[i];
      d2r::log_prob(ctx, d2r::DiagGaussian<double>{d2r::matrix_view<const double>(m.data(), B, n), d2r::matrix_view<const double>(ls.data(), B, n)},
                    d2r::matrix_view<const double>(s.data(), B * G, n), d2r::matrix_view(lp.data(), B, G));
      return lp;
    };
    const double h = 1e-5;
    const std::vector<double> up = lp_at(h), down = lp_at(-h);
    std::vector<double> score(B * G), grad(p.P);
    for (std::int64_t i = 0; i < B * G; ++i) score[i] = -(1.0 / n) * (up[i] - down[i]) / (2 * h) / (B * G);
    d2r::reward_backward(ctx, p.r(), d2r::matrix_view<const double>(s.data(), B * G, n), p.y(),
                         d2r::matrix_view<const double>(score.data(), B, G), d2r::vector_view(grad.data(), p.P));
    const std::vector<double> g = run_mixed(ctx, p, Head::diag, opt, key);
    D2R_EXPECT_CLOSE(g, grad, 1e-7, 1e-9);
  }
}

// ---------------------------------------------------------------- exact mixed product
using ExactCase = std::tuple<Head, RewardForm>;
class ExactMixedProduct : public ::testing::TestWithParam<ExactCase> {};

TEST_P(ExactMixedProduct, MatchesCentralDifferencesOfTheExactHeadGradient) {
  const auto [h, form] = GetParam();
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  for (int per_dim = 0; per_dim < 2; ++per_dim) {
    Problem p(form, 500 + static_cast<std::uint64_t>(form) * 3 + static_cast<std::uint64_t>(per_dim), is_shared(h));
    p.make_categorical_reward(700 + static_cast<std::uint64_t>(form));
    const d2r::PgOptions<double> opt{.entropy_weight = 0.4, .per_dimension_mean = per_dim == 1, .normaliser_rows = 6};
    std::vector<double> g(h == Head::cat ? p.Pc : p.P);
    const auto out = d2r::vector_view(g.data(), static_cast<std::int64_t>(g.size()));
    if (h == Head::cat) {
      d2r::exact_mixed_product(ctx, p.cat(), p.lab(), p.r_cat(), opt, p.cat_t(), out);
    } else if (is_chol(h)) {
      d2r::exact_mixed_product(ctx, p.chol(), p.y(), p.r(), opt, p.chol_t(), out);
    } else {
      d2r::exact_mixed_product(ctx, p.diag(), p.y(), p.r(), opt, p.diag_t(), out);
    }
    std::vector<double>& phi = h == Head::cat ? p.reward_c : p.reward;
    const auto F = [&]() { return head_grad_dot(ctx, p, h, opt, {}, true); };
    double norm = 0;
    for (std::size_t i = 0; i < phi.size(); ++i) {
      const double fd = central_difference(phi, i, F, 1e-5);
      EXPECT_NEAR(g[i], fd, 1e-7 * (1 + std::abs(fd))) << head_name(h) << " per_dim " << per_dim << " param " << i;
      norm += std::abs(g[i]);
    }
    EXPECT_GT(norm, 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(AllHeads, ExactMixedProduct,
                         ::testing::Combine(::testing::Values(Head::diag, Head::diag_shared, Head::cat, Head::chol,
                                                              Head::chol_shared),
                                            ::testing::ValuesIn(kForms)),
                         [](const auto& info) {
                           return head_name(std::get<0>(info.param)) + "_" +
                                  std::to_string(static_cast<int>(std::get<1>(info.param)));
                         });

// ---------------------------------------------------------------- bad input
TEST(MixedProductErrors, BadInputLeavesOutputsUntouched) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  using d2r::test::GuardedMatrix;
  using d2r::test::expect_error;
  {  // transform VJP: d_advantages of the wrong shape, and an output aliasing an input
    std::vector<double> r(6, 0.5), da(4, 1.0);
    GuardedMatrix<double> out(ctx, 2, 3);
    expect_error([&] {
      d2r::transform_rewards_backward(ctx, d2r::TransformOptions<double>{}, d2r::matrix_view<const double>(r.data(), 2, 3),
                                      d2r::matrix_view<const double>(da.data(), 2, 2), out.view());
    }, "d_advantages", "expected a 2 x 3 matrix");
    EXPECT_TRUE(out.untouched());
    expect_error([&] {
      d2r::transform_rewards_backward(ctx, d2r::TransformOptions<double>{.kind = Transform::leave_one_out},
                                      d2r::matrix_view<const double>(r.data(), 6, 1),
                                      d2r::matrix_view<const double>(r.data(), 6, 1), d2r::matrix_view(da.data(), 6, 1));
    }, "generations", "G >= 2");
    std::vector<double> rr(6, 0.5);
    rr[2] = NAN;
    expect_error([&] {
      d2r::transform_rewards_backward(ctx, d2r::TransformOptions<double>{}, d2r::matrix_view<const double>(rr.data(), 2, 3),
                                      d2r::matrix_view<const double>(r.data(), 2, 3), out.view());
    }, "rewards", "");
    EXPECT_TRUE(out.untouched());
  }
  Problem p(RewardForm::diagonal, 3);
  p.make_categorical_reward(4);
  GuardedMatrix<double> g(ctx, 1, p.P), gc(ctx, 1, p.Pc), small(ctx, 1, p.P - 1);
  const d2r::PgOptions<double> opt{};
  // tangent of the wrong shape
  const d2r::DiagGaussian<double> bad_t{d2r::matrix_view<const double>(p.t_mean.data(), p.B, p.n - 1),
                                        d2r::matrix_view<const double>(p.t_log_std.data(), p.B, p.n)};
  expect_error([&] { d2r::mixed_product(ctx, p.diag(), p.y(), p.r(), p.G, opt, {}, bad_t, g.vector()); }, "tangent.mean",
               "expected a 3 x 3 matrix");
  expect_error([&] { d2r::exact_mixed_product(ctx, p.diag(), p.y(), p.r(), opt, bad_t, g.vector()); }, "tangent.mean",
               "expected a 3 x 3 matrix");
  // grad_params of the wrong size
  expect_error([&] { d2r::mixed_product(ctx, p.diag(), p.y(), p.r(), p.G, opt, {}, p.diag_t(), small.vector()); },
               "grad_params", "expected a 1 x 3 matrix");
  // a non-finite tangent, generations 0, leave_one_out with G = 1, a negative clip
  std::vector<double> tl(p.t_logits);
  tl[4] = INFINITY;
  const d2r::Categorical<double> inf_t{d2r::matrix_view<const double>(tl.data(), p.B, p.C)};
  expect_error([&] { d2r::mixed_product(ctx, p.cat(), p.lab(), p.r_cat(), p.G, opt, {}, inf_t, gc.vector()); },
               "tangent.logits", "");
  expect_error([&] { d2r::exact_mixed_product(ctx, p.cat(), p.lab(), p.r_cat(), opt, inf_t, gc.vector()); },
               "tangent.logits", "");
  expect_error([&] { d2r::mixed_product(ctx, p.diag(), p.y(), p.r(), 0, opt, {}, p.diag_t(), g.vector()); },
               "generations", ">= 1");
  expect_error([&] {
    d2r::mixed_product(ctx, p.diag(), p.y(), p.r(), 1, d2r::PgOptions<double>{.transform = {.kind = Transform::leave_one_out}},
                       {}, p.diag_t(), g.vector());
  }, "generations", "G >= 2");
  expect_error([&] {
    d2r::exact_mixed_product(ctx, p.diag(), p.y(), p.r(), d2r::PgOptions<double>{.log_prob_clip = -1}, p.diag_t(),
                             g.vector());
  }, "options.log_prob_clip", "c >= 0");
  // the Cholesky head's exact mixed product: a 1-row tril tangent for a per-row tril, a non-finite tangent
  const d2r::CholeskyGaussian<double> one_row_t{d2r::matrix_view<const double>(p.t_mean.data(), p.B, p.n),
                                                d2r::matrix_view<const double>(p.t_tril.data(), 1, p.tri()), 0.0};
  expect_error([&] { d2r::exact_mixed_product(ctx, p.chol(), p.y(), p.r(), opt, one_row_t, g.vector()); },
               "tangent.tril", "expected a 3 x 6 matrix");
  std::vector<double> nan_tril(p.t_tril);
  nan_tril[2] = NAN;
  const d2r::CholeskyGaussian<double> nan_t{d2r::matrix_view<const double>(p.t_mean.data(), p.B, p.n),
                                            d2r::matrix_view<const double>(nan_tril.data(), p.B, p.tri()), 0.0};
  expect_error([&] { d2r::exact_mixed_product(ctx, p.chol(), p.y(), p.r(), opt, nan_t, g.vector()); }, "tangent.tril",
               "");
  // grad_params aliasing an input (the reward's own parameters)
  expect_error([&] {
    d2r::exact_mixed_product(ctx, p.diag(), p.y(), p.r(), opt, p.diag_t(),
                             d2r::vector_view(p.reward.data(), p.P));
  }, "grad_params", "");
  EXPECT_TRUE(g.untouched());
  EXPECT_TRUE(gc.untouched());
  EXPECT_TRUE(small.untouched());
}

}  // namespace
