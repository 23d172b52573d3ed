// Second-order primitives of the diagonal-Gaussian and categorical heads: bad input on the cuda
// backend leaves the outputs untouched. The comparisons against the CPU reference (double) through
// guarded buffers (log_prob_jvp, backward_tangent with and without each cotangent, exact tangents
// per reward form, masked classes exactly 0, determinism) are cases of
// host/checks/cases/second_order.cpp (tests/checks_gpu_test.cpp, `d2r validate`).
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
