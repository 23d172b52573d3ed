// Second-order primitives of the categorical head on the cpu backend (double): log_prob_jvp
// against central differences of log_prob along the tangent, backward_tangent against central
// differences of backward along the tangent, symmetry of the Hessian, masked (−inf) classes,
// with and without each cotangent, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::expect_error;
using d2r::test::GuardedMatrix;
using d2r::test::TestRng;

constexpr double kInf = std::numeric_limits<double>::infinity();

/// Logits (every third class masked when asked, class 0 never), samples among the unmasked
/// classes, cotangents and a tangent, in double on the host.
struct CatProblem {
  std::int64_t B, C, G;
  std::vector<double> logits, c, e, tangent_logits;
  std::vector<std::int32_t> samples;

  CatProblem(std::int64_t b, std::int64_t classes, std::int64_t g, bool masked, std::uint64_t seed)
      : B(b), C(classes), G(g) {
    TestRng rng(seed);
    logits = rng.vector<double>(B * C, -3, 3);
    if (masked) {
      for (std::int64_t r = 0; r < B; ++r)
        for (std::int64_t j = 2; j < C; j += 3) logits[r * C + j] = -kInf;
    }
    c = rng.vector<double>(B * G, -1, 1);
    e = rng.vector<double>(B, -1, 1);
    tangent_logits = rng.vector<double>(B * C, -1, 1);
    samples.resize(B * G);
    for (std::int64_t r = 0; r < B; ++r) {
      for (std::int64_t k = 0; k < G; ++k) {
        std::int32_t j = 0;
        do {
          j = static_cast<std::int32_t>(rng.uniform(0, static_cast<double>(C)));
        } while (j >= C || logits[r * C + j] == -kInf);
        samples[r * G + k] = j;
      }
    }
  }
  [[nodiscard]] d2r::Categorical<double> head(const std::vector<double>& l) const {
    return {d2r::matrix_view<const double>(l.data(), B, C)};
  }
  [[nodiscard]] d2r::Categorical<double> head() const { return head(logits); }
  [[nodiscard]] d2r::Categorical<double> tangent() const { return head(tangent_logits); }
  [[nodiscard]] d2r::MatrixView<const std::int32_t> y() const {
    return d2r::matrix_view<const std::int32_t>(samples.data(), B, G);
  }
  [[nodiscard]] d2r::MatrixView<const double> d_log_prob(bool with) const {
    return with ? d2r::matrix_view<const double>(c.data(), B, G) : d2r::MatrixView<const double>{};
  }
  [[nodiscard]] d2r::VectorView<const double> d_entropy(bool with) const {
    return with ? d2r::vector_view<const double>(e.data(), B) : d2r::VectorView<const double>{};
  }
  [[nodiscard]] std::vector<double> moved(double eps, const std::vector<double>& dir) const {
    std::vector<double> l = logits;
    for (std::size_t i = 0; i < l.size(); ++i) l[i] += eps * dir[i];  // −inf stays −inf
    return l;
  }
};

struct CatSoCase {
  std::int64_t B, C, G;
  bool masked;
};
std::ostream& operator<<(std::ostream& os, const CatSoCase& c) {
  return os << "B" << c.B << "_C" << c.C << "_G" << c.G << (c.masked ? "_masked" : "");
}

class CategoricalSecondOrder : public ::testing::TestWithParam<CatSoCase> {
 protected:
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 7}};
};

TEST_P(CategoricalSecondOrder, LogProbJvpMatchesCentralDifferences) {
  const auto [B, C, G, masked] = GetParam();
  const CatProblem p(B, C, G, masked, static_cast<std::uint64_t>(B * 31 + C * 3 + G));
  std::vector<double> jvp(B * G);
  d2r::log_prob_jvp(ctx, p.head(), p.y(), p.tangent(), d2r::matrix_view(jvp.data(), B, G));
  const double h = 1e-5;
  const auto l_up = p.moved(h, p.tangent_logits), l_dn = p.moved(-h, p.tangent_logits);
  std::vector<double> up(B * G), down(B * G), fd(B * G);
  d2r::log_prob(ctx, p.head(l_up), p.y(), d2r::matrix_view(up.data(), B, G));
  d2r::log_prob(ctx, p.head(l_dn), p.y(), d2r::matrix_view(down.data(), B, G));
  for (std::int64_t i = 0; i < B * G; ++i) fd[i] = (up[i] - down[i]) / (2 * h);
  D2R_EXPECT_CLOSE(jvp, fd, 1e-6, 1e-8);
}

TEST_P(CategoricalSecondOrder, BackwardTangentMatchesCentralDifferencesOfBackward) {
  const auto [B, C, G, masked] = GetParam();
  const CatProblem p(B, C, G, masked, static_cast<std::uint64_t>(B * 13 + C + G * 5));
  for (const bool with_c : {true, false}) {
    for (const bool with_e : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "d_log_prob " << with_c << ", d_entropy " << with_e);
      std::vector<double> ht(B * C, -7.0);
      d2r::backward_tangent(ctx, p.head(), p.y(), p.d_log_prob(with_c), p.d_entropy(with_e), p.tangent(),
                            d2r::CategoricalGrad<double>{d2r::matrix_view(ht.data(), B, C)});
      const double h = 1e-5;
      const auto l_up = p.moved(h, p.tangent_logits), l_dn = p.moved(-h, p.tangent_logits);
      std::vector<double> g_up(B * C), g_dn(B * C), fd(B * C);
      d2r::backward(ctx, p.head(l_up), p.y(), p.d_log_prob(with_c), p.d_entropy(with_e),
                    d2r::CategoricalGrad<double>{d2r::matrix_view(g_up.data(), B, C)});
      d2r::backward(ctx, p.head(l_dn), p.y(), p.d_log_prob(with_c), p.d_entropy(with_e),
                    d2r::CategoricalGrad<double>{d2r::matrix_view(g_dn.data(), B, C)});
      for (std::int64_t i = 0; i < B * C; ++i) fd[i] = (g_up[i] - g_dn[i]) / (2 * h);
      D2R_EXPECT_CLOSE(ht, fd, 1e-6, 1e-8 * static_cast<double>(G + 1));
      for (std::int64_t i = 0; i < B * C; ++i) {
        EXPECT_FALSE(std::isnan(ht[i])) << i;
        if (p.logits[i] == -kInf) {
          EXPECT_EQ(ht[i], 0.0) << i;
        }
        if (!with_c && !with_e) {
          EXPECT_EQ(ht[i], 0.0) << i;
        }
      }
    }
  }
}

TEST_P(CategoricalSecondOrder, HessianIsSymmetric) {
  const auto [B, C, G, masked] = GetParam();
  const CatProblem p(B, C, G, masked, static_cast<std::uint64_t>(B + C + G + 101));
  TestRng rng(3);
  const auto w = rng.vector<double>(B * C, -1, 1);
  std::vector<double> hu(B * C), hw(B * C);
  d2r::backward_tangent(ctx, p.head(), p.y(), p.d_log_prob(true), p.d_entropy(true), p.tangent(),
                        d2r::CategoricalGrad<double>{d2r::matrix_view(hu.data(), B, C)});
  d2r::backward_tangent(ctx, p.head(), p.y(), p.d_log_prob(true), p.d_entropy(true), p.head(w),
                        d2r::CategoricalGrad<double>{d2r::matrix_view(hw.data(), B, C)});
  double w_hu = 0, u_hw = 0, norm = 0;
  for (std::int64_t i = 0; i < B * C; ++i) {
    w_hu += w[i] * hu[i];
    u_hw += p.tangent_logits[i] * hw[i];
    norm += std::abs(w[i] * hu[i]);
  }
  EXPECT_NEAR(w_hu, u_hw, 1e-12 * (1 + norm));
  EXPECT_GT(norm, 0.0);
}

TEST_P(CategoricalSecondOrder, ConstantTangentIsInvisible) {
  // Softmax is invariant to adding a constant per row: the tangent 1 changes nothing.
  const auto [B, C, G, masked] = GetParam();
  const CatProblem p(B, C, G, masked, 5);
  std::vector<double> ones(B * C, 1.0), jvp(B * G), ht(B * C);
  d2r::log_prob_jvp(ctx, p.head(), p.y(), p.head(ones), d2r::matrix_view(jvp.data(), B, G));
  d2r::backward_tangent(ctx, p.head(), p.y(), p.d_log_prob(true), p.d_entropy(true), p.head(ones),
                        d2r::CategoricalGrad<double>{d2r::matrix_view(ht.data(), B, C)});
  for (double v : jvp) EXPECT_NEAR(v, 0.0, 1e-13);
  for (double v : ht) EXPECT_NEAR(v, 0.0, 1e-13);
}

INSTANTIATE_TEST_SUITE_P(Sizes, CategoricalSecondOrder,
                         ::testing::Values(CatSoCase{1, 2, 1, false}, CatSoCase{3, 5, 4, false},
                                           CatSoCase{4, 10, 3, true}, CatSoCase{2, 50, 7, true},
                                           CatSoCase{5, 7, 1, true}),
                         [](const auto& info) {
                           std::ostringstream os;
                           os << info.param;
                           return os.str();
                         });

TEST(CategoricalSecondOrderRef, TwoClassesClosedForm) {
  // C = 2, logits (a, 0): p = σ(a). ∂²log p(0)/∂a² = −σ(1−σ) on the first logit.
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::vector<double> logits{0.4, 0.0}, tangent{1.0, 0.0}, c{1.0};
  const std::vector<std::int32_t> k{0};
  std::vector<double> ht(2);
  d2r::backward_tangent(ctx, d2r::Categorical<double>{d2r::matrix_view(logits.data(), 1, 2)},
                        d2r::matrix_view(k.data(), 1, 1), d2r::matrix_view(c.data(), 1, 1), d2r::VectorView<const double>{},
                        d2r::Categorical<double>{d2r::matrix_view(tangent.data(), 1, 2)},
                        d2r::CategoricalGrad<double>{d2r::matrix_view(ht.data(), 1, 2)});
  const double s = 1 / (1 + std::exp(-0.4));
  EXPECT_NEAR(ht[0], -s * (1 - s), 1e-14);
  EXPECT_NEAR(ht[1], s * (1 - s), 1e-14);
}

TEST(CategoricalSecondOrderRef, FloatCpuMatchesDouble) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t B = 3, C = 12, G = 4;
  const CatProblem p(B, C, G, true, 17);
  const std::vector<float> logits(p.logits.begin(), p.logits.end()), t(p.tangent_logits.begin(), p.tangent_logits.end()),
      c(p.c.begin(), p.c.end()), e(p.e.begin(), p.e.end());
  std::vector<float> jvp(B * G), ht(B * C);
  const d2r::Categorical<float> head{d2r::matrix_view(logits.data(), B, C)}, tangent{d2r::matrix_view(t.data(), B, C)};
  d2r::log_prob_jvp(ctx, head, p.y(), tangent, d2r::matrix_view(jvp.data(), B, G));
  d2r::backward_tangent(ctx, head, p.y(), d2r::matrix_view(c.data(), B, G), d2r::vector_view(e.data(), B), tangent,
                        d2r::CategoricalGrad<float>{d2r::matrix_view(ht.data(), B, C)});
  std::vector<double> jvp_d(B * G), ht_d(B * C);
  d2r::log_prob_jvp(ctx, p.head(), p.y(), p.tangent(), d2r::matrix_view(jvp_d.data(), B, G));
  d2r::backward_tangent(ctx, p.head(), p.y(), p.d_log_prob(true), p.d_entropy(true), p.tangent(),
                        d2r::CategoricalGrad<double>{d2r::matrix_view(ht_d.data(), B, C)});
  D2R_EXPECT_CLOSE(jvp, jvp_d, 1e-5, 1e-5);
  D2R_EXPECT_CLOSE(ht, ht_d, 1e-5, 1e-5);
}

TEST(CategoricalSecondOrderRef, RowWithoutDistributionIsNaNWithChecksOff) {
  // Only reachable with value checks off: an all −inf row gives NaN, like backward; other rows
  // are unaffected.
  d2r::Context ctx({.backend = d2r::Backend::cpu, .value_checks = d2r::ValueChecks::none});
  const std::vector<double> logits{0.1, -0.2, 0.3, -kInf, -kInf, -kInf}, t{0.5, -0.5, 0.25, 1, 1, 1}, c{1, 1},
      e{0.5, 0.5};
  const std::vector<std::int32_t> k{2, 0};
  std::vector<double> jvp(2), ht(6);
  const d2r::Categorical<double> head{d2r::matrix_view(logits.data(), 2, 3)}, tangent{d2r::matrix_view(t.data(), 2, 3)};
  d2r::log_prob_jvp(ctx, head, d2r::matrix_view(k.data(), 2, 1), tangent, d2r::matrix_view(jvp.data(), 2, 1));
  d2r::backward_tangent(ctx, head, d2r::matrix_view(k.data(), 2, 1), d2r::matrix_view(c.data(), 2, 1),
                        d2r::vector_view(e.data(), 2), tangent,
                        d2r::CategoricalGrad<double>{d2r::matrix_view(ht.data(), 2, 3)});
  EXPECT_FALSE(std::isnan(jvp[0]));
  EXPECT_TRUE(std::isnan(jvp[1]));
  for (int j = 0; j < 3; ++j) {
    EXPECT_FALSE(std::isnan(ht[j])) << j;
    EXPECT_TRUE(std::isnan(ht[3 + j])) << j;
  }
}

// ---- bad input: a d2r::Error naming the argument, outputs untouched.
class CategoricalSecondOrderErrors : public ::testing::Test {
 protected:
  static constexpr std::int64_t B = 3, C = 4, G = 2;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  std::vector<float> logits = std::vector<float>(B * C, 0.5f), t = std::vector<float>(B * C, 0.1f);
  std::vector<std::int32_t> samples_in = std::vector<std::int32_t>(B * G, 1);
  std::vector<float> c = std::vector<float>(B * G, 1.0f), e = std::vector<float>(B, 1.0f);
  GuardedMatrix<float> out{ctx, B, G}, g{ctx, B, C};

  d2r::Categorical<float> head() const { return {d2r::matrix_view(logits.data(), B, C)}; }
  d2r::Categorical<float> tangent() const { return {d2r::matrix_view(t.data(), B, C)}; }
  d2r::MatrixView<const std::int32_t> samples() const { return d2r::matrix_view(samples_in.data(), B, G); }
  d2r::MatrixView<const float> d_log_prob() const { return d2r::matrix_view(c.data(), B, G); }
  d2r::VectorView<const float> d_entropy() const { return d2r::vector_view(e.data(), B); }
  void expect_untouched() {
    EXPECT_TRUE(out.untouched());
    EXPECT_TRUE(g.untouched());
  }
};

TEST_F(CategoricalSecondOrderErrors, MismatchedTangentShape) {
  const d2r::Categorical<float> narrow{d2r::matrix_view(t.data(), B, C - 1)};
  expect_error([&] { d2r::log_prob_jvp(ctx, head(), samples(), narrow, out.view()); }, "tangent.logits",
               "expected a 3 x 4 matrix");
  const d2r::Categorical<float> short_rows{d2r::matrix_view(t.data(), B - 1, C)};
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), short_rows,
                          d2r::CategoricalGrad<float>{g.view()});
  }, "tangent.logits", "expected a 3 x 4 matrix");
  expect_untouched();
}

TEST_F(CategoricalSecondOrderErrors, BadOutputsCotangentsAndValues) {
  GuardedMatrix<float> g_small{ctx, B, C - 1};
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), tangent(),
                          d2r::CategoricalGrad<float>{g_small.view()});
  }, "grad_tangent.logits", "expected a 3 x 4 matrix");
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), d2r::matrix_view(samples_in.data(), B, G - 1), d_log_prob(), d_entropy(),
                          tangent(), d2r::CategoricalGrad<float>{g.view()});
  }, "samples", "expected a 3 x 2 matrix");
  samples_in[3] = static_cast<std::int32_t>(C);
  expect_error([&] { d2r::log_prob_jvp(ctx, head(), samples(), tangent(), out.view()); }, "samples", "");
  samples_in[3] = 0;
  t[5] = std::numeric_limits<float>::infinity();
  expect_error([&] { d2r::log_prob_jvp(ctx, head(), samples(), tangent(), out.view()); }, "tangent.logits",
               "element (1, 1)");
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), tangent(),
                          d2r::CategoricalGrad<float>{g.view()});
  }, "tangent.logits", "element (1, 1)");
  EXPECT_TRUE(g_small.untouched());
  expect_untouched();
}

TEST_F(CategoricalSecondOrderErrors, OverlappingOutputs) {
  expect_error([&] {
    d2r::log_prob_jvp(ctx, head(), samples(), tangent(), d2r::matrix_view(t.data(), B, G));
  }, "out", "overlaps argument 'tangent.logits'");
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), tangent(),
                          d2r::CategoricalGrad<float>{d2r::matrix_view(t.data(), B, C)});
  }, "grad_tangent.logits", "overlaps argument 'tangent.logits'");
  expect_error([&] {
    d2r::backward_tangent(ctx, head(), samples(), d_log_prob(), d_entropy(), tangent(),
                          d2r::CategoricalGrad<float>{d2r::matrix_view(logits.data(), B, C)});
  }, "grad_tangent.logits", "overlaps argument 'head.logits'");
  expect_untouched();
}

}  // namespace

// ---------------------------------------------------------------- exact-objective tangent
namespace {

std::vector<double> one_hot_params(d2r::RewardForm form, std::int64_t C, TestRng& rng) {
  std::vector<double> u(static_cast<std::size_t>(d2r::reward_param_count(form, C)));
  for (double& x : u) x = form == d2r::RewardForm::full ? rng.uniform(-0.4, 0.4) : rng.uniform(0.3, 1.5);
  if (form == d2r::RewardForm::full)
    for (std::int64_t i = 0; i < C; ++i) u[static_cast<std::size_t>(i * (i + 1) / 2 + i)] = rng.uniform(0.6, 1.2);
  return u;
}

/// Labels among the unmasked classes of each row.
std::vector<std::int32_t> labels_of(const CatProblem& p, TestRng& rng) {
  std::vector<std::int32_t> y(static_cast<std::size_t>(p.B));
  for (std::int64_t r = 0; r < p.B; ++r) {
    std::int32_t j = 0;
    do {
      j = static_cast<std::int32_t>(rng.uniform(0, static_cast<double>(p.C)));
    } while (j >= p.C || p.logits[r * p.C + j] == -kInf);
    y[static_cast<std::size_t>(r)] = j;
  }
  return y;
}

class CategoricalExactBackwardTangent : public ::testing::TestWithParam<CatSoCase> {
 protected:
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
};

/// exact_backward_tangent against central differences of exact_objective's logits gradient along
/// the tangent, for every reward form, with and without entropy; masked classes get exactly 0;
/// the Hessian is symmetric and blind to a constant tangent.
TEST_P(CategoricalExactBackwardTangent, MatchesCentralDifferencesOfTheExactGradient) {
  const auto [B, C, G, masked] = GetParam();
  for (const d2r::RewardForm form : {d2r::RewardForm::scalar, d2r::RewardForm::diagonal, d2r::RewardForm::full}) {
    for (const double lambda : {0.0, 0.6}) {
      SCOPED_TRACE(::testing::Message() << "form " << static_cast<int>(form) << " lambda " << lambda);
      const CatProblem p(B, C, G, masked, static_cast<std::uint64_t>(B * 7 + C * 11) + static_cast<std::uint64_t>(form));
      TestRng rng(29 + static_cast<std::uint64_t>(form));
      const std::vector<std::int32_t> y = labels_of(p, rng);
      const std::vector<double> u = one_hot_params(form, C, rng);
      const d2r::MahalanobisReward<double> reward{form, d2r::vector_view(u.data(), static_cast<std::int64_t>(u.size()))};
      const d2r::PgOptions<double> options{.entropy_weight = lambda, .normaliser_rows = B + 2};
      const auto labels = d2r::vector_view(y.data(), B);
      const auto tangent_of = [&](const std::vector<double>& t) {
        std::vector<double> out(static_cast<std::size_t>(B * C), -7.0);
        d2r::exact_backward_tangent(ctx, p.head(), labels, reward, options, p.head(t),
                                    d2r::CategoricalGrad<double>{d2r::matrix_view(out.data(), B, C)});
        return out;
      };
      const auto gradient = [&](const std::vector<double>& l) {
        std::vector<double> g(static_cast<std::size_t>(B * C)), rows(static_cast<std::size_t>(B));
        d2r::exact_objective(ctx, p.head(l), labels, reward, options,
                             d2r::ObjectiveRows<double>{d2r::vector_view(rows.data(), B), {}},
                             d2r::CategoricalGrad<double>{d2r::matrix_view(g.data(), B, C)});
        return g;
      };
      const std::vector<double> ht = tangent_of(p.tangent_logits);
      const double h = 1e-5;
      const std::vector<double> up = gradient(p.moved(h, p.tangent_logits)), dn = gradient(p.moved(-h, p.tangent_logits));
      std::vector<double> fd(static_cast<std::size_t>(B * C));
      double scale = 0;
      for (std::int64_t i = 0; i < B * C; ++i) {
        fd[i] = (up[i] - dn[i]) / (2 * h);
        scale = std::max(scale, std::abs(fd[i]));
      }
      EXPECT_GT(scale, 1e-4);
      D2R_EXPECT_CLOSE(ht, fd, 1e-6, 1e-8);
      for (std::int64_t i = 0; i < B * C; ++i) {
        EXPECT_FALSE(std::isnan(ht[i])) << i;
        if (p.logits[i] == -kInf) {
          EXPECT_EQ(ht[i], 0.0) << i;
        }
      }
      // Symmetry wᵀ(H ℓ̇) = ℓ̇ᵀ(H w), and a constant tangent changes nothing.
      const std::vector<double> w = rng.vector<double>(static_cast<std::size_t>(B * C), -1, 1);
      const std::vector<double> hw = tangent_of(w);
      double w_ht = 0, t_hw = 0, norm = 0;
      for (std::int64_t i = 0; i < B * C; ++i) {
        w_ht += w[i] * ht[i];
        t_hw += p.tangent_logits[i] * hw[i];
        norm += std::abs(w[i] * ht[i]);
      }
      EXPECT_NEAR(w_ht, t_hw, 1e-12 * (1 + norm));
      for (double v : tangent_of(std::vector<double>(static_cast<std::size_t>(B * C), 1.0))) EXPECT_NEAR(v, 0.0, 1e-13);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, CategoricalExactBackwardTangent,
                         ::testing::Values(CatSoCase{1, 2, 1, false}, CatSoCase{3, 5, 1, false},
                                           CatSoCase{4, 10, 1, true}, CatSoCase{2, 50, 1, true},
                                           CatSoCase{5, 7, 1, true}),
                         [](const auto& info) {
                           std::ostringstream os;
                           os << info.param;
                           return os.str();
                         });

TEST(CategoricalExactBackwardTangentErrors, RejectsBadArgumentsBeforeWriting) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t B = 3, C = 4;
  const CatProblem p(B, C, 1, false, 3);
  std::vector<std::int32_t> y{0, 3, 1};
  std::vector<double> u{0.8}, bad_u{0.0};
  const d2r::MahalanobisReward<double> reward{d2r::RewardForm::scalar, d2r::vector_view(u.data(), 1)};
  GuardedMatrix<double> g(ctx, B, C), narrow(ctx, B, C - 1);
  const d2r::CategoricalGrad<double> out{g.view()};
  const auto labels = d2r::vector_view(y.data(), B);
  expect_error([&] { d2r::exact_backward_tangent(ctx, p.head(), d2r::vector_view(y.data(), B - 1), reward, {}, p.tangent(), out); },
               "labels", "");
  y[1] = static_cast<std::int32_t>(C);
  expect_error([&] { d2r::exact_backward_tangent(ctx, p.head(), labels, reward, {}, p.tangent(), out); }, "labels", "");
  y[1] = 3;
  expect_error([&] {
    d2r::exact_backward_tangent(ctx, p.head(), labels, {d2r::RewardForm::scalar, d2r::vector_view(bad_u.data(), 1)}, {},
                                p.tangent(), out);
  }, "reward.params", "");
  expect_error([&] { d2r::exact_backward_tangent(ctx, p.head(), labels, reward, {.entropy_weight = -0.5}, p.tangent(), out); },
               "options.entropy_weight", "");
  const d2r::Categorical<double> narrow_t{d2r::matrix_view(p.tangent_logits.data(), B, C - 1)};
  expect_error([&] { d2r::exact_backward_tangent(ctx, p.head(), labels, reward, {}, narrow_t, out); }, "tangent.logits",
               "expected a 3 x 4 matrix");
  std::vector<double> nan_t(p.tangent_logits);
  nan_t[5] = std::numeric_limits<double>::quiet_NaN();
  expect_error([&] { d2r::exact_backward_tangent(ctx, p.head(), labels, reward, {}, p.head(nan_t), out); },
               "tangent.logits", "element (1, 1)");
  expect_error([&] {
    d2r::exact_backward_tangent(ctx, p.head(), labels, reward, {}, p.tangent(), d2r::CategoricalGrad<double>{narrow.view()});
  }, "grad_tangent.logits", "expected a 3 x 4 matrix");
  std::vector<double> alias(p.tangent_logits);
  expect_error([&] {
    d2r::exact_backward_tangent(ctx, p.head(), labels, reward, {}, p.head(alias),
                                d2r::CategoricalGrad<double>{d2r::matrix_view(alias.data(), B, C)});
  }, "grad_tangent.logits", "overlaps argument 'tangent.logits'");
  EXPECT_EQ(alias, p.tangent_logits);
  EXPECT_TRUE(g.untouched());
  EXPECT_TRUE(narrow.untouched());
}

}  // namespace
