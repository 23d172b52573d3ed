// Bad input to the diagonal-Gaussian entry points: a d2r::Error naming the argument, and no
// output written. (The Cholesky and categorical heads have their own files beside this one.)
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::GuardedMatrix;

using d2r::test::expect_error;

class DiagGaussianErrors : public ::testing::Test {
 protected:
  static constexpr std::int64_t B = 3, n = 2, G = 4;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  std::vector<float> mean = std::vector<float>(B * n, 0.5f), log_std = std::vector<float>(B * n, 0.1f);
  std::vector<float> samples_in = std::vector<float>(B * G * n, 0.25f);
  std::vector<float> c = std::vector<float>(B * G, 1.0f), e = std::vector<float>(B, 1.0f);
  GuardedMatrix<float> out_samples{ctx, B * G, n}, out_logp{ctx, B, G}, out_h{ctx, 1, B}, g_mean{ctx, B, n},
      g_ls{ctx, B, n};

  d2r::DiagGaussian<float> head() const {
    return {d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(log_std.data(), B, n)};
  }
  d2r::MatrixView<const float> samples() const { return d2r::matrix_view(samples_in.data(), B * G, n); }
  void expect_untouched() {
    EXPECT_TRUE(out_samples.untouched());
    EXPECT_TRUE(out_logp.untouched());
    EXPECT_TRUE(out_h.untouched());
    EXPECT_TRUE(g_mean.untouched());
    EXPECT_TRUE(g_ls.untouched());
  }
};

TEST_F(DiagGaussianErrors, Shapes) {
  auto h = head();
  expect_error([&] { d2r::sample(ctx, h, 0, {}, out_samples.view()); }, "generations", "generations >= 1");
  expect_error([&] { d2r::sample(ctx, h, G + 1, {}, out_samples.view()); }, "samples", "expected a 15 x 2 matrix");
  auto bad = h;
  bad.log_std.rows = 2;
  expect_error([&] { d2r::sample(ctx, bad, G, {}, out_samples.view()); }, "head.log_std", "or 1 row (shared)");
  bad = h;
  bad.log_std.cols = 3;
  expect_error([&] { d2r::entropy(ctx, bad, out_h.vector()); }, "head.log_std", "expected a 3 x 2 matrix");
  bad = h;
  bad.mean.cols = 0;
  expect_error([&] { d2r::entropy(ctx, bad, out_h.vector()); }, "head.mean", "n >= 1");
  bad = h;
  bad.mean.row_stride = 1;
  expect_error([&] { d2r::entropy(ctx, bad, out_h.vector()); }, "head.mean", "row_stride >= cols");
  bad = h;
  bad.mean.data = nullptr;
  expect_error([&] { d2r::entropy(ctx, bad, out_h.vector()); }, "head.mean", "null");
  expect_error([&] { d2r::entropy(ctx, h, d2r::VectorView<float>{out_h.vector().data, B - 1}); }, "out",
               "expected a 1 x 3 matrix");
  expect_error([&] { d2r::log_prob(ctx, h, samples().row_range(0, B * G - 1), out_logp.view()); }, "samples",
               "expected a 12 x 2");
  const d2r::MatrixView<const float> c_view = d2r::matrix_view(c.data(), B, G - 1);
  expect_error([&] {
    d2r::backward(ctx, h, samples(), c_view, {}, d2r::DiagGaussianGrad<float>{g_mean.view(), g_ls.view()});
  }, "samples", "expected a 9 x 2");
  expect_error([&] {
    d2r::backward(ctx, h, samples(), d2r::matrix_view<const float>(c.data(), B, G), {},
                  d2r::DiagGaussianGrad<float>{g_mean.view(), g_ls.view().row_range(0, 1)});
  }, "grad.log_std", "expected a 3 x 2");
  expect_untouched();
}

TEST_F(DiagGaussianErrors, Values) {
  mean[3] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] { d2r::sample(ctx, head(), G, {}, out_samples.view()); }, "head.mean", "element (1, 1) is nan");
  mean[3] = 0;
  log_std[0] = std::numeric_limits<float>::infinity();
  expect_error([&] { d2r::entropy(ctx, head(), out_h.vector()); }, "head.log_std", "element (0, 0) is inf");
  log_std[0] = 0;
  samples_in[5] = -std::numeric_limits<float>::infinity();
  expect_error([&] { d2r::log_prob(ctx, head(), samples(), out_logp.view()); }, "samples", "is -inf");
  samples_in[5] = 0;
  e[2] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] {
    d2r::backward(ctx, head(), samples(), d2r::matrix_view<const float>(c.data(), B, G),
                  d2r::vector_view<const float>(e.data(), B), d2r::DiagGaussianGrad<float>{g_mean.view(), g_ls.view()});
  }, "d_entropy", "is nan");
  expect_untouched();
}

TEST_F(DiagGaussianErrors, ValueChecksNoneTrustsTheValues) {
  ctx.set_value_checks(d2r::ValueChecks::none);
  mean[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NO_THROW(d2r::sample(ctx, head(), G, {}, out_samples.view()));
  const auto y = out_samples.values_checked();
  EXPECT_TRUE(std::isnan(y[0])) << "NaN in, NaN out: the check was skipped, not the work";
}

TEST_F(DiagGaussianErrors, DrawKey) {
  expect_error([&] { d2r::sample(ctx, head(), G, {.step = std::uint64_t{1} << 32}, out_samples.view()); }, "key.step",
               "step < 2^32");
  expect_error([&] { d2r::sample(ctx, head(), G, {.first_row = -1}, out_samples.view()); }, "key.first_row",
               "0 <= first_row");
  expect_error([&] { d2r::sample(ctx, head(), G, {.first_row = (std::int64_t{1} << 32) - 2}, out_samples.view()); },
               "key.first_row", "first_row + rows <= 2^32");
  expect_untouched();
}

TEST_F(DiagGaussianErrors, OutputsMustNotAliasInputs) {
  std::vector<float> storage(B * G * n + B * n, 0.0f);
  const d2r::DiagGaussian<float> aliased{d2r::matrix_view<const float>(storage.data(), B, n), head().log_std};
  const std::vector<float> before = storage;
  expect_error([&] { d2r::sample(ctx, aliased, G, {}, d2r::matrix_view(storage.data() + 1, B * G, n)); }, "samples",
               "overlaps argument 'head.mean'");
  EXPECT_EQ(storage, before) << "the input must not be modified";
  expect_error([&] {
    d2r::backward(ctx, head(), samples(), d2r::matrix_view<const float>(c.data(), B, G), {},
                  d2r::DiagGaussianGrad<float>{g_mean.view(), g_mean.view()});
  }, "grad.mean", "overlaps argument 'grad.log_std'");
  expect_untouched();
}

TEST_F(DiagGaussianErrors, InterleavedOutputsAreDisjointOnlyWhenTheirColumnsAre) {
  // The [mean | log_std] halves of one B x 2n matrix share rows but no element: allowed.
  std::vector<float> both(B * 2 * n, 0.0f);
  const d2r::MatrixView<float> mean_half{both.data(), B, n, 2 * n}, log_std_half{both.data() + n, B, n, 2 * n};
  EXPECT_NO_THROW(d2r::backward(ctx, head(), samples(), d2r::matrix_view<const float>(c.data(), B, G), {},
                                d2r::DiagGaussianGrad<float>{mean_half, log_std_half}));
  // Columns [0, n) and [n - 1, 2n - 1) of the same rows do share an element: rejected.
  const d2r::MatrixView<float> shifted{both.data() + n - 1, B, n, 2 * n};
  expect_error([&] {
    d2r::backward(ctx, head(), samples(), d2r::matrix_view<const float>(c.data(), B, G), {},
                  d2r::DiagGaussianGrad<float>{mean_half, shifted});
  }, "grad.mean", "overlaps argument 'grad.log_std'");
}

// The cuda backend's checks: DiagGaussianErrorsGpu in tests/errors_gpu_test.cpp (gpu_kernels_test).

}  // namespace
