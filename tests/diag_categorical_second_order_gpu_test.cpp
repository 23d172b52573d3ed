// Second-order primitives of the diagonal-Gaussian and categorical heads: CUDA (float) against
// the CPU reference (double) on the same float inputs, through guarded (sentinel-padded)
// buffers; and bad input on the cuda backend leaves the outputs untouched.
#include <gtest/gtest.h>

#include <algorithm>
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

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// ------------------------------------------------------------------------ diagonal Gaussian

struct DiagSoGpuCase {
  std::int64_t B, n, G;
  bool shared;
};
std::ostream& operator<<(std::ostream& os, const DiagSoGpuCase& c) {
  return os << "B" << c.B << "_n" << c.n << "_G" << c.G << (c.shared ? "_shared" : "_per_row");
}

class DiagGaussianSecondOrderGpu : public ::testing::TestWithParam<DiagSoGpuCase> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

TEST_P(DiagGaussianSecondOrderGpu, MatchesReference) {
  const auto [B, n, G, shared] = GetParam();
  const std::int64_t S = shared ? 1 : B;
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  d2r::Context cpu({.backend = d2r::Backend::cpu});
  TestRng rng(static_cast<std::uint64_t>(B * 1000 + n * 10 + G));
  const auto mean_f = rng.vector<float>(B * n, -1, 1), log_std_f = rng.vector<float>(S * n, -0.5, 0.5);
  const auto y_f = rng.vector<float>(B * G * n, -2.5, 2.5), c_f = rng.vector<float>(B * G, -1, 1),
             e_f = rng.vector<float>(B, -1, 1);
  const auto tm_f = rng.vector<float>(B * n, -1, 1), ts_f = rng.vector<float>(S * n, -1, 1);
  const auto mean = widen(mean_f), log_std = widen(log_std_f), y = widen(y_f), c = widen(c_f), e = widen(e_f),
             tm = widen(tm_f), ts = widen(ts_f);

  GuardedMatrix<float> d_mean(gpu, B, n), d_log_std(gpu, S, n), d_y(gpu, B * G, n), d_c(gpu, B, G), d_e(gpu, 1, B),
      d_tm(gpu, B, n), d_ts(gpu, S, n);
  d_mean.fill(mean_f);
  d_log_std.fill(log_std_f);
  d_y.fill(y_f);
  d_c.fill(c_f);
  d_e.fill(e_f);
  d_tm.fill(tm_f);
  d_ts.fill(ts_f);
  const d2r::DiagGaussian<float> head{d_mean.cview(), d_log_std.cview()}, tangent{d_tm.cview(), d_ts.cview()};
  const d2r::DiagGaussian<double> ref_head{d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(log_std.data(), S, n)};
  const d2r::DiagGaussian<double> ref_tangent{d2r::matrix_view(tm.data(), B, n), d2r::matrix_view(ts.data(), S, n)};
  const auto ref_y = d2r::matrix_view(y.data(), B * G, n);

  GuardedMatrix<float> d_jvp(gpu, B, G);
  d2r::log_prob_jvp(gpu, head, d_y.cview(), tangent, d_jvp.view());
  std::vector<double> ref_jvp(B * G);
  d2r::log_prob_jvp(cpu, ref_head, ref_y, ref_tangent, d2r::matrix_view(ref_jvp.data(), B, G));
  D2R_EXPECT_CLOSE(d_jvp.values_checked(), ref_jvp, 1e-4, 1e-4 * static_cast<double>(n));

  const double scale_g = static_cast<double>(G * (shared ? B : 1));
  for (const bool with_c : {true, false}) {
    SCOPED_TRACE(::testing::Message() << "d_log_prob " << with_c);
    GuardedMatrix<float> d_gm(gpu, B, n), d_gs(gpu, S, n);
    d2r::backward_tangent(gpu, head, d_y.cview(), with_c ? d_c.cview() : d2r::MatrixView<const float>{},
                          d2r::VectorView<const float>{d_e.cview().data, B}, tangent,
                          d2r::DiagGaussianGrad<float>{d_gm.view(), d_gs.view()});
    std::vector<double> ref_gm(B * n), ref_gs(S * n);
    d2r::backward_tangent(cpu, ref_head, ref_y,
                          with_c ? d2r::matrix_view(c.data(), B, G) : d2r::MatrixView<const double>{},
                          d2r::vector_view(e.data(), B), ref_tangent,
                          d2r::DiagGaussianGrad<double>{d2r::matrix_view(ref_gm.data(), B, n),
                                                        d2r::matrix_view(ref_gs.data(), S, n)});
    D2R_EXPECT_CLOSE(d_gm.values_checked(), ref_gm, 1e-4, 1e-5 * static_cast<double>(G));
    D2R_EXPECT_CLOSE(d_gs.values_checked(), ref_gs, 1e-4, 1e-4 * scale_g);
  }

  // Exact-objective head Hessian (exact_backward_tangent) for the three reward forms.
  for (const d2r::RewardForm form : {d2r::RewardForm::scalar, d2r::RewardForm::diagonal, d2r::RewardForm::full}) {
    SCOPED_TRACE(::testing::Message() << "exact tangent, form " << static_cast<int>(form));
    const std::int64_t P = form == d2r::RewardForm::scalar ? 1 : form == d2r::RewardForm::diagonal ? n : n * (n + 1) / 2;
    std::vector<float> u_f = rng.vector<float>(P, 0.2, 1.2);
    if (form == d2r::RewardForm::full)  // off-diagonal Cholesky entries may be negative
      for (std::int64_t i = 0, k = 0; i < n; ++i)
        for (std::int64_t j = 0; j <= i; ++j, ++k)
          if (j < i) u_f[static_cast<std::size_t>(k)] -= 0.7f;
    const auto u = widen(u_f);
    GuardedMatrix<float> d_u(gpu, 1, P), d_gm(gpu, B, n), d_gs(gpu, S, n);
    d_u.fill(u_f);
    const d2r::PgOptions<float> options{.entropy_weight = 0.7f, .per_dimension_mean = true};
    d2r::exact_backward_tangent(gpu, head, {form, d2r::VectorView<const float>{d_u.cview().data, P}}, options, tangent,
                                d2r::DiagGaussianGrad<float>{d_gm.view(), d_gs.view()});
    std::vector<double> ref_gm(B * n), ref_gs(S * n);
    d2r::exact_backward_tangent(cpu, ref_head, {form, d2r::vector_view(u.data(), P)},
                                d2r::PgOptions<double>{.entropy_weight = 0.7, .per_dimension_mean = true}, ref_tangent,
                                d2r::DiagGaussianGrad<double>{d2r::matrix_view(ref_gm.data(), B, n),
                                                              d2r::matrix_view(ref_gs.data(), S, n)});
    D2R_EXPECT_CLOSE(d_gm.values_checked(), ref_gm, 1e-4, 1e-5 * static_cast<double>(n));
    D2R_EXPECT_CLOSE(d_gs.values_checked(), ref_gs, 1e-4, 1e-5 * static_cast<double>(shared ? B : 1));
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, DiagGaussianSecondOrderGpu,
                         ::testing::Values(DiagSoGpuCase{1, 1, 1, false}, DiagSoGpuCase{1, 3, 1, true},
                                           DiagSoGpuCase{7, 5, 5, true}, DiagSoGpuCase{33, 17, 5, false},
                                           DiagSoGpuCase{257, 64, 50, true}, DiagSoGpuCase{257, 33, 1, false},
                                           DiagSoGpuCase{129, 64, 16, true}),
                         [](const auto& info) {
                           std::ostringstream os;
                           os << info.param;
                           return os.str();
                         });

// ------------------------------------------------------------------------------ categorical

struct CatSoGpuCase {
  std::int64_t B, C, G;
  bool masked;
};
std::ostream& operator<<(std::ostream& os, const CatSoGpuCase& c) {
  return os << "B" << c.B << "_C" << c.C << "_G" << c.G << (c.masked ? "_masked" : "");
}

class CategoricalSecondOrderGpu : public ::testing::TestWithParam<CatSoGpuCase> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

TEST_P(CategoricalSecondOrderGpu, MatchesReference) {
  const auto [B, C, G, masked] = GetParam();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  d2r::Context cpu({.backend = d2r::Backend::cpu});
  TestRng rng(static_cast<std::uint64_t>(B * 7 + C * 3 + G));
  auto logits_f = rng.vector<float>(B * C, -4, 4);
  if (masked) {
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t j = 1; j < C; j += 3) logits_f[r * C + j] = -std::numeric_limits<float>::infinity();
  }
  const auto t_f = rng.vector<float>(B * C, -1, 1), c_f = rng.vector<float>(B * G, -1, 1),
             e_f = rng.vector<float>(B, -1, 1);
  std::vector<std::int32_t> k(B * G);
  for (std::int64_t r = 0; r < B; ++r) {
    for (std::int64_t g = 0; g < G; ++g) {
      std::int32_t j = 0;
      do {
        j = static_cast<std::int32_t>(rng.uniform(0, static_cast<double>(C)));
      } while (j >= C || std::isinf(logits_f[r * C + j]));
      k[r * G + g] = j;
    }
  }
  const auto logits = widen(logits_f), t = widen(t_f), c = widen(c_f), e = widen(e_f);

  GuardedMatrix<float> d_logits(gpu, B, C), d_t(gpu, B, C), d_c(gpu, B, G), d_e(gpu, 1, B);
  GuardedMatrix<std::int32_t> d_k(gpu, B, G);
  d_logits.fill(logits_f);
  d_t.fill(t_f);
  d_c.fill(c_f);
  d_e.fill(e_f);
  d_k.fill(k);
  const d2r::Categorical<float> head{d_logits.cview()}, tangent{d_t.cview()};
  const d2r::Categorical<double> ref_head{d2r::matrix_view(logits.data(), B, C)},
      ref_tangent{d2r::matrix_view(t.data(), B, C)};
  const auto ref_k = d2r::matrix_view(k.data(), B, G);

  GuardedMatrix<float> d_jvp(gpu, B, G);
  d2r::log_prob_jvp(gpu, head, d_k.cview(), tangent, d_jvp.view());
  std::vector<double> ref_jvp(B * G);
  d2r::log_prob_jvp(cpu, ref_head, ref_k, ref_tangent, d2r::matrix_view(ref_jvp.data(), B, G));
  D2R_EXPECT_CLOSE(d_jvp.values_checked(), ref_jvp, 1e-4, 1e-5);

  for (const bool with_c : {true, false}) {
    for (const bool with_e : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "d_log_prob " << with_c << ", d_entropy " << with_e);
      GuardedMatrix<float> d_g(gpu, B, C);
      d2r::backward_tangent(gpu, head, d_k.cview(), with_c ? d_c.cview() : d2r::MatrixView<const float>{},
                            with_e ? d2r::VectorView<const float>{d_e.cview().data, B} : d2r::VectorView<const float>{},
                            tangent, d2r::CategoricalGrad<float>{d_g.view()});
      std::vector<double> ref_g(B * C);
      d2r::backward_tangent(cpu, ref_head, ref_k,
                            with_c ? d2r::matrix_view(c.data(), B, G) : d2r::MatrixView<const double>{},
                            with_e ? d2r::vector_view(e.data(), B) : d2r::VectorView<const double>{}, ref_tangent,
                            d2r::CategoricalGrad<double>{d2r::matrix_view(ref_g.data(), B, C)});
      const std::vector<float> got = d_g.values_checked();
      D2R_EXPECT_CLOSE(got, ref_g, 1e-3, 1e-6 * static_cast<double>(G + 1));
      for (std::int64_t i = 0; i < B * C; ++i) {
        if (std::isinf(logits_f[i])) {
          EXPECT_EQ(got[i], 0.0f) << i;
        }
      }
    }
  }

  // Exact-objective head Hessian (exact_backward_tangent), labels = each row's first draw (an
  // unmasked class); the full one-hot reward only for small C (C(C+1)/2 parameters).
  std::vector<std::int32_t> labels(B);
  for (std::int64_t r = 0; r < B; ++r) labels[r] = k[r * G];
  GuardedMatrix<std::int32_t> d_labels(gpu, 1, B);
  d_labels.fill(labels);
  for (const d2r::RewardForm form : {d2r::RewardForm::scalar, d2r::RewardForm::diagonal, d2r::RewardForm::full}) {
    if (form == d2r::RewardForm::full && C > 64) continue;
    SCOPED_TRACE(::testing::Message() << "exact tangent, form " << static_cast<int>(form));
    const std::int64_t P = d2r::reward_param_count(form, C);
    std::vector<float> u_f = rng.vector<float>(P, 0.2, 1.2);
    if (form == d2r::RewardForm::full)  // off-diagonal Cholesky entries may be negative
      for (std::int64_t i = 0, q = 0; i < C; ++i)
        for (std::int64_t j = 0; j <= i; ++j, ++q)
          if (j < i) u_f[static_cast<std::size_t>(q)] -= 0.7f;
    const auto u = widen(u_f);
    GuardedMatrix<float> d_u(gpu, 1, P), d_g(gpu, B, C), d_g2(gpu, B, C);
    d_u.fill(u_f);
    const d2r::MahalanobisReward<float> reward{form, d2r::VectorView<const float>{d_u.cview().data, P}};
    const d2r::PgOptions<float> options{.entropy_weight = 0.4f, .normaliser_rows = B + 1};
    d2r::exact_backward_tangent(gpu, head, d2r::VectorView<const std::int32_t>{d_labels.cview().data, B}, reward, options,
                                tangent, d2r::CategoricalGrad<float>{d_g.view()});
    std::vector<double> ref_g(B * C);
    d2r::exact_backward_tangent(cpu, ref_head, d2r::vector_view(labels.data(), B), {form, d2r::vector_view(u.data(), P)},
                                d2r::PgOptions<double>{.entropy_weight = 0.4, .normaliser_rows = B + 1}, ref_tangent,
                                d2r::CategoricalGrad<double>{d2r::matrix_view(ref_g.data(), B, C)});
    double scale = 0;
    for (double v : ref_g) scale = std::max(scale, std::abs(v));
    const std::vector<float> got = d_g.values_checked();
    D2R_EXPECT_CLOSE(got, ref_g, 1e-3, 1e-4 * scale + 1e-9);
    for (std::int64_t i = 0; i < B * C; ++i) {
      if (std::isinf(logits_f[i])) {
        EXPECT_EQ(got[i], 0.0f) << i;
      }
    }
    d2r::exact_backward_tangent(gpu, head, d2r::VectorView<const std::int32_t>{d_labels.cview().data, B}, reward, options,
                                tangent, d2r::CategoricalGrad<float>{d_g2.view()});
    EXPECT_EQ(d_g2.values_checked(), got);  // deterministic
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, CategoricalSecondOrderGpu,
                         ::testing::Values(CatSoGpuCase{1, 2, 1, false}, CatSoGpuCase{7, 10, 5, true},
                                           CatSoGpuCase{33, 10, 1, false}, CatSoGpuCase{257, 1000, 50, false},
                                           CatSoGpuCase{2, 1000, 50, true}, CatSoGpuCase{3, 32000, 5, true},
                                           CatSoGpuCase{1, 32000, 1, false}),
                         [](const auto& info) {
                           std::ostringstream os;
                           os << info.param;
                           return os.str();
                         });

// --------------------------------------------------------------------------- bad input (cuda)

TEST(DiagCategoricalSecondOrderGpu, BadInputLeavesOutputsUntouched) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  const std::int64_t B = 3, n = 2, G = 2, C = 4;
  GuardedMatrix<float> mean(gpu, B, n), log_std(gpu, B, n), y(gpu, B * G, n), tm(gpu, B, n), ts(gpu, B, n),
      out(gpu, B, G), gm(gpu, B, n), gs(gpu, B, n);
  for (auto* m : {&mean, &log_std, &tm, &ts, &gm}) m->fill(std::vector<float>(B * n, 0.1f));
  y.fill(std::vector<float>(B * G * n, 0.2f));
  const d2r::DiagGaussian<float> head{mean.cview(), log_std.cview()};
  // The tangent's log_std with the wrong row count.
  const d2r::DiagGaussian<float> bad_tangent{tm.cview(), d2r::MatrixView<const float>{ts.cview().data, 1, n, n + 3}};
  expect_error([&] { d2r::log_prob_jvp(gpu, head, y.cview(), bad_tangent, out.view()); }, "tangent.log_std",
               "expected a 3 x 2 matrix");
  // Output over the tangent.
  const d2r::DiagGaussian<float> tangent{tm.cview(), ts.cview()};
  expect_error([&] {
    d2r::backward_tangent(gpu, head, y.cview(), d2r::MatrixView<const float>{}, d2r::VectorView<const float>{}, tangent,
                          d2r::DiagGaussianGrad<float>{gs.view(), tm.view()});
  }, "grad_tangent.log_std", "overlaps argument 'tangent.mean'");
  EXPECT_TRUE(out.untouched());
  EXPECT_TRUE(gs.untouched());

  GuardedMatrix<float> logits(gpu, B, C), t(gpu, B, C), g(gpu, B, C);
  GuardedMatrix<std::int32_t> k(gpu, B, G);
  logits.fill(std::vector<float>(B * C, 0.5f));
  std::vector<float> t_host(B * C, 0.1f);
  t_host[5] = std::numeric_limits<float>::quiet_NaN();
  t.fill(t_host);
  k.fill(std::vector<std::int32_t>(B * G, 1));
  const d2r::Categorical<float> cat{logits.cview()}, cat_t{t.cview()};
  expect_error([&] {
    d2r::backward_tangent(gpu, cat, k.cview(), d2r::MatrixView<const float>{}, d2r::VectorView<const float>{}, cat_t,
                          d2r::CategoricalGrad<float>{g.view()});
  }, "tangent.logits", "element (1, 1)");
  GuardedMatrix<std::int32_t> labels(gpu, 1, B);
  labels.fill(std::vector<std::int32_t>(B, 2));
  GuardedMatrix<float> beta(gpu, 1, 1);
  beta.fill({0.5f});
  expect_error([&] {
    d2r::exact_backward_tangent(gpu, cat, d2r::VectorView<const std::int32_t>{labels.cview().data, B},
                                {d2r::RewardForm::scalar, d2r::VectorView<const float>{beta.cview().data, 1}}, {}, cat_t,
                                d2r::CategoricalGrad<float>{g.view()});
  }, "tangent.logits", "element (1, 1)");
  const d2r::Categorical<float> narrow{d2r::MatrixView<const float>{t.cview().data, B, C - 1, C + 3}};
  expect_error([&] { d2r::log_prob_jvp(gpu, cat, k.cview(), narrow, out.view()); }, "tangent.logits",
               "expected a 3 x 4 matrix");
  EXPECT_TRUE(g.untouched());
  EXPECT_TRUE(out.untouched());
}

}  // namespace
