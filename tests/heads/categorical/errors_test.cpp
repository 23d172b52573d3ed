// Bad input to the categorical entry points: a d2r::Error naming the argument and saying what
// was expected, and no output written.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::GuardedMatrix;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using d2r::test::expect_error;

class CategoricalErrors : public ::testing::Test {
 protected:
  static constexpr std::int64_t B = 3, C = 5, G = 4;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  std::vector<float> logits{0.1f, -0.4f, 1.0f, -kInf, 0.3f,  //
                            2.0f, 0.0f,  0.5f, 0.5f,  -1.0f,  //
                            -kInf, 0.2f, -kInf, 0.7f, 0.0f};
  std::vector<std::int32_t> indices{0, 2, 4, 1, 0, 3, 3, 4, 1, 1, 3, 4};
  std::vector<float> c = std::vector<float>(B * G, 0.5f), e = std::vector<float>(B, -1.0f);
  GuardedMatrix<std::int32_t> out_samples{ctx, B, G};
  GuardedMatrix<float> out_logp{ctx, B, G}, out_h{ctx, 1, B}, grad{ctx, B, C};

  [[nodiscard]] d2r::Categorical<float> head() const { return {d2r::matrix_view(logits.data(), B, C)}; }
  [[nodiscard]] d2r::MatrixView<const std::int32_t> samples() const { return d2r::matrix_view(indices.data(), B, G); }
  [[nodiscard]] d2r::MatrixView<const float> d_log_prob() const { return d2r::matrix_view(c.data(), B, G); }
  [[nodiscard]] d2r::VectorView<const float> d_entropy() const { return d2r::vector_view(e.data(), B); }
  [[nodiscard]] d2r::CategoricalGrad<float> grad_view() { return {grad.view()}; }

  /// Calls all four entry points with `h` and expects the same error from each.
  void expect_error_everywhere(const d2r::Categorical<float>& h, const std::string& argument, const std::string& words) {
    expect_error([&] { d2r::sample(ctx, h, G, {}, out_samples.view()); }, argument, words);
    expect_error([&] { d2r::log_prob(ctx, h, samples(), out_logp.view()); }, argument, words);
    expect_error([&] { d2r::entropy(ctx, h, out_h.vector()); }, argument, words);
    expect_error([&] { d2r::backward(ctx, h, samples(), d_log_prob(), d_entropy(), grad_view()); }, argument, words);
  }
  void expect_untouched() {
    EXPECT_TRUE(out_samples.untouched());
    EXPECT_TRUE(out_logp.untouched());
    EXPECT_TRUE(out_h.untouched());
    EXPECT_TRUE(grad.untouched());
  }
};

TEST_F(CategoricalErrors, ValidCallsPass) {
  // The fixture's arguments are valid: the error tests below change one thing at a time.
  EXPECT_NO_THROW(d2r::sample(ctx, head(), G, {}, out_samples.view()));
  EXPECT_NO_THROW(d2r::log_prob(ctx, head(), samples(), out_logp.view()));
  EXPECT_NO_THROW(d2r::entropy(ctx, head(), out_h.vector()));
  EXPECT_NO_THROW(d2r::backward(ctx, head(), samples(), d_log_prob(), d_entropy(), grad_view()));
  EXPECT_NO_THROW(d2r::backward(ctx, head(), {}, {}, d_entropy(), grad_view()));
  EXPECT_NO_THROW(d2r::backward(ctx, head(), samples(), d_log_prob(), {}, grad_view()));
}

TEST_F(CategoricalErrors, HeadShapes) {
  auto bad = head();
  bad.logits.cols = 1;
  expect_error_everywhere(bad, "head.logits", "expected 2 <= C <= 262144 classes");
  bad = head();
  bad.logits.rows = 0;
  expect_error_everywhere(bad, "head.logits", "expected B >= 1 rows");
  bad = head();
  bad.logits.row_stride = C - 1;
  expect_error_everywhere(bad, "head.logits", "row_stride >= cols");
  bad = head();
  bad.logits.data = nullptr;
  expect_error_everywhere(bad, "head.logits", "null");
  // One class more than the largest vocabulary.
  const std::int64_t too_many = d2r::kMaxCategoricalClasses + 1;
  std::vector<float> wide(static_cast<std::size_t>(too_many), 0.0f);
  GuardedMatrix<std::int32_t> one_sample(ctx, 1, 1);
  GuardedMatrix<float> one_h(ctx, 1, 1);
  expect_error([&] { d2r::sample(ctx, d2r::Categorical<float>{d2r::matrix_view(wide.data(), 1, too_many)}, 1, {},
                                 one_sample.view()); },
               "head.logits", "got 1 x 262145");
  expect_error([&] { d2r::entropy(ctx, d2r::Categorical<float>{d2r::matrix_view(wide.data(), 1, too_many)},
                                  one_h.vector()); },
               "head.logits", "C <= 262144");
  EXPECT_TRUE(one_sample.untouched());
  EXPECT_TRUE(one_h.untouched());
  expect_untouched();
}

TEST_F(CategoricalErrors, OutputAndCotangentShapes) {
  const auto h = head();
  // sample
  expect_error([&] { d2r::sample(ctx, h, 0, {}, out_samples.view()); }, "generations", "generations >= 1");
  expect_error([&] { d2r::sample(ctx, h, (std::int64_t{1} << 32) + 1, {}, out_samples.view()); }, "generations",
               "generations <= 2^32");
  expect_error([&] { d2r::sample(ctx, h, G - 1, {}, out_samples.view()); }, "samples", "expected a 3 x 3 matrix");
  expect_error([&] { d2r::sample(ctx, h, G, {}, out_samples.view().row_range(0, B - 1)); }, "samples",
               "expected a 3 x 4 matrix, got 2 x 4");
  // log_prob
  expect_error([&] { d2r::log_prob(ctx, h, samples(), d2r::MatrixView<float>{out_logp.view().data, B, 0, G}); }, "out",
               "G >= 1");
  expect_error([&] { d2r::log_prob(ctx, h, samples(), out_logp.view().row_range(0, 1)); }, "out",
               "expected a 3 x 4 matrix");
  expect_error([&] { d2r::log_prob(ctx, h, d2r::matrix_view(indices.data(), B, G - 1), out_logp.view()); }, "samples",
               "expected a 3 x 4 matrix, got 3 x 3");
  // entropy
  expect_error([&] { d2r::entropy(ctx, h, d2r::VectorView<float>{out_h.vector().data, B - 1}); }, "out",
               "expected a 1 x 3 matrix");
  // backward
  expect_error([&] { d2r::backward(ctx, h, samples(), d_log_prob().row_range(0, 2), d_entropy(), grad_view()); },
               "d_log_prob", "expected a 3 x 4 matrix");
  expect_error([&] {
    d2r::backward(ctx, h, d2r::matrix_view(indices.data(), B, G - 1), d_log_prob(), d_entropy(), grad_view());
  }, "samples", "expected a 3 x 4 matrix");
  expect_error([&] { d2r::backward(ctx, h, {}, d_log_prob(), d_entropy(), grad_view()); }, "samples",
               "expected a 3 x 4 matrix, got 0 x 0");
  expect_error([&] {
    d2r::backward(ctx, h, samples(), d_log_prob(), d2r::vector_view<const float>(e.data(), B + 1), grad_view());
  }, "d_entropy", "expected a 1 x 3 matrix");
  expect_error([&] {
    d2r::backward(ctx, h, samples(), d_log_prob(), d_entropy(),
                  d2r::CategoricalGrad<float>{d2r::MatrixView<float>{grad.view().data, B, C - 1, C + 3}});
  }, "grad.logits", "expected a 3 x 5 matrix");
  expect_untouched();
}

TEST_F(CategoricalErrors, LogitValues) {
  logits[7] = kNaN;
  expect_error_everywhere(head(), "head.logits", "element (1, 2) is nan; expected finite values or -inf");
  logits[7] = kInf;
  expect_error_everywhere(head(), "head.logits", "element (1, 2) is inf");
  logits[7] = 0.5f;
  for (std::int64_t j = 0; j < C; ++j) logits[C + j] = -kInf;
  expect_error_everywhere(head(), "head.logits", "row 1 has no finite logit");
  expect_untouched();
}

TEST_F(CategoricalErrors, SampleIndices) {
  for (const std::int32_t bad : {std::int32_t{-1}, static_cast<std::int32_t>(C)}) {
    indices[6] = bad;
    const std::string words = fmt::format("element (1, 2) is {}; expected a class index in [0, 5)", bad);
    expect_error([&] { d2r::log_prob(ctx, head(), samples(), out_logp.view()); }, "samples", words);
    expect_error([&] { d2r::backward(ctx, head(), samples(), d_log_prob(), d_entropy(), grad_view()); }, "samples",
                 words);
  }
  expect_untouched();
}

TEST_F(CategoricalErrors, CotangentValues) {
  c[5] = kNaN;
  expect_error([&] { d2r::backward(ctx, head(), samples(), d_log_prob(), d_entropy(), grad_view()); }, "d_log_prob",
               "element (1, 1) is nan; expected finite values");
  c[5] = 0.5f;
  e[2] = -kInf;
  expect_error([&] { d2r::backward(ctx, head(), samples(), d_log_prob(), d_entropy(), grad_view()); }, "d_entropy",
               "is -inf");
  expect_untouched();
}

TEST_F(CategoricalErrors, DrawKey) {
  expect_error([&] { d2r::sample(ctx, head(), G, {.step = std::uint64_t{1} << 32}, out_samples.view()); }, "key.step",
               "step < 2^32");
  expect_error([&] { d2r::sample(ctx, head(), G, {.first_row = -1}, out_samples.view()); }, "key.first_row",
               "0 <= first_row");
  expect_error([&] { d2r::sample(ctx, head(), G, {.first_row = (std::int64_t{1} << 32) - 2}, out_samples.view()); },
               "key.first_row", "first_row + rows <= 2^32");
  expect_untouched();
}

TEST_F(CategoricalErrors, OutputsMustNotAliasInputs) {
  // One block of memory holds the logits and, overlapping them, the would-be outputs.
  std::vector<float> storage(B * C + B * G, 0.25f);
  const d2r::Categorical<float> shared_head{d2r::matrix_view<const float>(storage.data(), B, C)};
  const std::vector<float> before = storage;
  auto* as_indices = reinterpret_cast<std::int32_t*>(storage.data() + 2);
  expect_error([&] { d2r::sample(ctx, shared_head, G, {}, d2r::matrix_view(as_indices, B, G)); }, "samples",
               "overlaps argument 'head.logits'");
  expect_error([&] { d2r::log_prob(ctx, shared_head, samples(), d2r::matrix_view(storage.data() + C, B, G)); }, "out",
               "overlaps argument 'head.logits'");
  expect_error([&] { d2r::entropy(ctx, shared_head, d2r::vector_view(storage.data() + B * C - 1, B)); }, "out",
               "overlaps argument 'head.logits'");
  expect_error([&] {
    d2r::backward(ctx, shared_head, samples(), d_log_prob(), d_entropy(),
                  d2r::CategoricalGrad<float>{d2r::matrix_view(storage.data() + 1, B, C)});
  }, "grad.logits", "overlaps argument 'head.logits'");
  EXPECT_EQ(storage, before) << "the inputs must not be modified";

  // log_prob: out over the samples; backward: grad over each cotangent and over the samples.
  std::vector<float> block(B * C + B * G, 0.0f);
  auto* block_indices = reinterpret_cast<std::int32_t*>(block.data());
  expect_error([&] {
    d2r::log_prob(ctx, head(), d2r::matrix_view<const std::int32_t>(block_indices, B, G),
                  d2r::matrix_view(block.data() + 1, B, G));
  }, "out", "overlaps argument 'samples'");
  expect_error([&] {
    d2r::backward(ctx, head(), samples(), d2r::matrix_view<const float>(block.data(), B, G), d_entropy(),
                  d2r::CategoricalGrad<float>{d2r::matrix_view(block.data() + G, B, C)});
  }, "grad.logits", "overlaps argument 'd_log_prob'");
  expect_error([&] {
    d2r::backward(ctx, head(), samples(), d_log_prob(), d2r::vector_view<const float>(block.data() + 2, B),
                  d2r::CategoricalGrad<float>{d2r::matrix_view(block.data(), B, C)});
  }, "grad.logits", "overlaps argument 'd_entropy'");
  expect_error([&] {
    d2r::backward(ctx, head(), d2r::matrix_view<const std::int32_t>(block_indices + 3, B, G), d_log_prob(),
                  d_entropy(), d2r::CategoricalGrad<float>{d2r::matrix_view(block.data(), B, C)});
  }, "grad.logits", "overlaps argument 'samples'");
  for (float v : block) EXPECT_EQ(v, 0.0f);
  expect_untouched();
}

TEST_F(CategoricalErrors, DoubleViewsAreCheckedToo) {
  std::vector<double> wide(B * C, 0.0);
  wide[4] = std::numeric_limits<double>::quiet_NaN();
  GuardedMatrix<double> h(ctx, 1, B);
  expect_error([&] { d2r::entropy(ctx, d2r::Categorical<double>{d2r::matrix_view<const double>(wide.data(), B, C)},
                                  h.vector()); },
               "head.logits", "element (0, 4) is nan");
  expect_error([&] { d2r::entropy(ctx, d2r::Categorical<double>{d2r::matrix_view<const double>(wide.data(), B, 1)},
                                  h.vector()); },
               "head.logits", "2 <= C");
  EXPECT_TRUE(h.untouched());
}

TEST_F(CategoricalErrors, ValueChecksNoneTrustsTheValues) {
  ctx.set_value_checks(d2r::ValueChecks::none);
  for (std::int64_t j = 0; j < C; ++j) logits[C + j] = -kInf;
  indices[0] = -1;
  EXPECT_NO_THROW(d2r::sample(ctx, head(), G, {}, out_samples.view()));
  EXPECT_NO_THROW(d2r::log_prob(ctx, head(), samples(), out_logp.view()));
  const std::vector<std::int32_t> s = out_samples.values_checked();
  const std::vector<float> lp = out_logp.values_checked();
  for (std::int64_t g = 0; g < G; ++g) EXPECT_EQ(s[G + g], -1) << "a row without a distribution draws -1";
  EXPECT_TRUE(std::isnan(lp[0])) << "an out-of-range index has no log-probability";
  EXPECT_TRUE(std::isnan(lp[G])) << "a row without a distribution has no log-probability";
}

// The cuda backend's checks: CategoricalErrorsGpu in tests/errors_gpu_test.cpp (gpu_kernels_test).

}  // namespace
