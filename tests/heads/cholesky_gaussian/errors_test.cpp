// Argument checking of the Cholesky-Gaussian entry points: every bad argument is reported as a
// d2r::Error naming the argument and saying what was expected, before any output is written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::int64_t packed_size(std::int64_t n) { return n * (n + 1) / 2; }
std::int64_t diagonal_index(std::int64_t i) { return i * (i + 3) / 2; }

/// Runs `call` and checks that it throws d2r::Error about `argument` whose message mentions `text`.
template <class F>
void expect_rejected(F&& call, const std::string& argument, const std::string& text) {
  try {
    call();
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), argument) << "what(): " << e.what();
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos)
        << "what(): " << e.what() << "\nexpected it to mention: " << text;
    return;
  }
  ADD_FAILURE() << "no d2r::Error thrown; expected one about '" << argument << "'";
}

/// A valid problem (B = 3, n = 3, G = 2) in host memory, to be broken one argument at a time.
class CholeskyGaussianErrors : public ::testing::Test {
 protected:
  static constexpr std::int64_t kB = 3, kN = 3, kG = 2;
  Context ctx{{.backend = Backend::cpu, .seed = 1}};
  std::vector<double> mean = std::vector<double>(kB * kN, 0.5);
  std::vector<double> tril = std::vector<double>(kB * packed_size(kN), 0.25);
  std::vector<double> samples = std::vector<double>(kB * kG * kN, 0.75);
  std::vector<double> d_log_prob = std::vector<double>(kB * kG, 1.0);
  std::vector<double> d_entropy = std::vector<double>(kB, 1.0);

  [[nodiscard]] CholeskyGaussian<double> head() const {
    return {matrix_view(mean.data(), kB, kN), matrix_view(tril.data(), kB, packed_size(kN)), 1e-5};
  }
  [[nodiscard]] MatrixView<const double> samples_view() const { return matrix_view(samples.data(), kB * kG, kN); }
  [[nodiscard]] MatrixView<const double> d_log_prob_view() const { return matrix_view(d_log_prob.data(), kB, kG); }
  [[nodiscard]] VectorView<const double> d_entropy_view() const { return vector_view(d_entropy.data(), kB); }

  /// Every entry point rejects `bad` with the same argument and message, and writes nothing.
  /// Outputs are shaped for a batch of `batch` rows, n = `n` columns and `tril_rows` factor rows
  /// (valid for the head as far as possible, so that the head is what gets rejected).
  void expect_every_entry_point_rejects(const CholeskyGaussian<double>& bad, std::int64_t batch, std::int64_t n,
                                        std::int64_t tril_rows, const std::string& argument, const std::string& text) {
    const std::int64_t rows = std::max<std::int64_t>(batch, 1), cols = std::max<std::int64_t>(n, 1);
    const std::vector<double> y(static_cast<std::size_t>(rows * kG * cols), 0.5), c(static_cast<std::size_t>(rows * kG), 1.0),
        e(static_cast<std::size_t>(rows), 1.0);
    const auto y_view = matrix_view(y.data(), rows * kG, cols);
    const auto c_view = matrix_view(c.data(), rows, kG);
    const auto e_view = vector_view(e.data(), rows);
    {
      SCOPED_TRACE("sample");
      GuardedMatrix<double> out(ctx, rows * kG, cols);
      expect_rejected([&] { sample(ctx, bad, kG, {}, out.view()); }, argument, text);
      EXPECT_TRUE(out.untouched());
    }
    {
      SCOPED_TRACE("log_prob");
      GuardedMatrix<double> out(ctx, rows, kG);
      expect_rejected([&] { log_prob(ctx, bad, y_view, out.view()); }, argument, text);
      EXPECT_TRUE(out.untouched());
    }
    {
      SCOPED_TRACE("entropy");
      GuardedMatrix<double> out(ctx, 1, rows);
      expect_rejected([&] { entropy(ctx, bad, out.vector()); }, argument, text);
      EXPECT_TRUE(out.untouched());
    }
    {
      SCOPED_TRACE("backward");
      GuardedMatrix<double> g_mean(ctx, rows, cols), g_tril(ctx, std::max<std::int64_t>(tril_rows, 1), packed_size(cols));
      expect_rejected([&] { backward(ctx, bad, y_view, c_view, e_view, {g_mean.view(), g_tril.view()}); }, argument,
                      text);
      EXPECT_TRUE(g_mean.untouched());
      EXPECT_TRUE(g_tril.untouched());
    }
  }
};

// ---------------------------------------------------------------- the head (all entry points)
TEST_F(CholeskyGaussianErrors, ZeroDimensionIsRejected) {
  CholeskyGaussian<double> bad = head();
  bad.mean.cols = 0;
  bad.tril.cols = 0;
  expect_every_entry_point_rejects(bad, kB, 0, kB, "head.mean", "n >= 1 columns");
}

TEST_F(CholeskyGaussianErrors, EmptyBatchIsRejected) {
  CholeskyGaussian<double> bad = head();
  bad.mean.rows = 0;
  expect_every_entry_point_rejects(bad, 0, kN, kB, "head.mean", "B >= 1 rows");
}

TEST_F(CholeskyGaussianErrors, DimensionAboveLimitIsRejected) {
  constexpr std::int64_t n = kMaxCholeskyDim + 1;
  const std::vector<double> big_mean(static_cast<std::size_t>(kB * n), 0.0);
  const std::vector<double> big_tril(static_cast<std::size_t>(kB * packed_size(n)), 0.0);
  const CholeskyGaussian<double> bad{matrix_view(big_mean.data(), kB, n), matrix_view(big_tril.data(), kB, packed_size(n)),
                                     1e-5};
  expect_every_entry_point_rejects(bad, kB, n, kB, "head.mean", "n <= 64");
}

TEST_F(CholeskyGaussianErrors, TrilWithWrongColumnCountIsRejected) {
  CholeskyGaussian<double> bad = head();
  bad.tril.cols = packed_size(kN) - 1;
  expect_every_entry_point_rejects(bad, kB, kN, kB, "head.tril", "n(n+1)/2 = 6 columns");
  bad.tril.cols = packed_size(kN) + 1;
  bad.tril.row_stride = bad.tril.cols;
  expect_every_entry_point_rejects(bad, kB, kN, kB, "head.tril", "n(n+1)/2 = 6 columns");
}

TEST_F(CholeskyGaussianErrors, TrilWithRowsNeitherOneNorBIsRejected) {
  CholeskyGaussian<double> bad = head();
  bad.tril.rows = 2;
  expect_every_entry_point_rejects(bad, kB, kN, kB, "head.tril", "3 rows (one factor per row) or 1 row (shared)");
}

TEST_F(CholeskyGaussianErrors, BadStrideAndNullPointerAreRejected) {
  CholeskyGaussian<double> bad = head();
  bad.tril.row_stride = packed_size(kN) - 1;
  expect_every_entry_point_rejects(bad, kB, kN, kB, "head.tril", "row_stride >= cols");
  bad = head();
  bad.mean.data = nullptr;
  expect_every_entry_point_rejects(bad, kB, kN, kB, "head.mean", "null");
}

TEST_F(CholeskyGaussianErrors, NegativeOrNonFiniteJitterIsRejected) {
  for (const double jitter : {-1e-6, kNaN, kInf}) {
    SCOPED_TRACE(jitter);
    CholeskyGaussian<double> bad = head();
    bad.jitter = jitter;
    expect_every_entry_point_rejects(bad, kB, kN, kB, "head.jitter", "finite jitter >= 0");
  }
}

TEST_F(CholeskyGaussianErrors, NonFiniteMeanOrTrilIsRejected) {
  mean[4] = kNaN;
  expect_every_entry_point_rejects(head(), kB, kN, kB, "head.mean", "element (1, 1) is nan; expected finite");
  mean[4] = 0.5;
  tril[packed_size(kN) + 1] = -kInf;  // row 1, entry (1, 0)
  expect_every_entry_point_rejects(head(), kB, kN, kB, "head.tril", "element (1, 1) is -inf; expected finite");
  tril[packed_size(kN) + 1] = 0.25;
  tril[2 * packed_size(kN) + diagonal_index(2)] = kNaN;  // row 2, diagonal (2, 2)
  expect_every_entry_point_rejects(head(), kB, kN, kB, "head.tril", "expected finite");
}

TEST_F(CholeskyGaussianErrors, NonPositiveDiagonalIsRejected) {
  // softplus(-800) underflows to 0 in double; with no jitter L_11 of row 2 is 0.
  tril[2 * packed_size(kN) + diagonal_index(1)] = -800.0;
  CholeskyGaussian<double> bad = head();
  bad.jitter = 0.0;
  expect_every_entry_point_rejects(bad, kB, kN, kB, "head.tril", "expected L_ii > 0");
  expect_every_entry_point_rejects(bad, kB, kN, kB, "head.tril", "element (2, 2) (diagonal entry L_11)");
  // A jitter keeps the same raw value valid.
  bad.jitter = 1e-3;
  GuardedMatrix<double> out(ctx, 1, kB);
  EXPECT_NO_THROW(entropy(ctx, bad, out.vector()));
  EXPECT_FALSE(out.untouched());
}

TEST_F(CholeskyGaussianErrors, DiagonalUnderflowDependsOnPrecision) {
  // softplus(-200) = e^-200 ≈ 1.4e-87 is a positive double but underflows to 0 in float.
  tril[diagonal_index(0)] = -200.0;
  CholeskyGaussian<double> h = head();
  h.jitter = 0.0;
  GuardedMatrix<double> out_d(ctx, 1, kB);
  EXPECT_NO_THROW(entropy(ctx, h, out_d.vector()));
  EXPECT_NEAR(out_d.values_checked()[0] - out_d.values_checked()[1], -200.0 - std::log(std::log1p(std::exp(0.25))), 1e-9);

  const std::vector<float> mean_f(mean.begin(), mean.end()), tril_f(tril.begin(), tril.end());
  const CholeskyGaussian<float> h_f{matrix_view(mean_f.data(), kB, kN), matrix_view(tril_f.data(), kB, packed_size(kN)),
                                    0.0f};
  GuardedMatrix<float> out_f(ctx, 1, kB);
  expect_rejected([&] { entropy(ctx, h_f, out_f.vector()); }, "head.tril", "expected L_ii > 0");
  EXPECT_TRUE(out_f.untouched());
}

TEST_F(CholeskyGaussianErrors, ValueChecksNoneSkipsValueChecksOnly) {
  mean[0] = kNaN;
  Context trusting({.backend = Backend::cpu, .value_checks = ValueChecks::none});
  GuardedMatrix<double> out(trusting, kB * kG, kN);
  EXPECT_NO_THROW(sample(trusting, head(), kG, {}, out.view()));
  EXPECT_FALSE(out.untouched());
  // Shapes are still checked.
  GuardedMatrix<double> wrong(trusting, kB * kG, kN + 1);
  expect_rejected([&] { sample(trusting, head(), kG, {}, wrong.view()); }, "samples", "expected a 6 x 3 matrix");
  EXPECT_TRUE(wrong.untouched());
}

// ---------------------------------------------------------------- sample
TEST_F(CholeskyGaussianErrors, SampleRejectsBadGenerationsShapesAndKeys) {
  GuardedMatrix<double> out(ctx, kB * kG, kN);
  for (const std::int64_t g : {std::int64_t{0}, std::int64_t{-3}}) {
    expect_rejected([&] { sample(ctx, head(), g, {}, out.view()); }, "generations", "expected generations >= 1");
  }
  expect_rejected([&] { sample(ctx, head(), kG + 1, {}, out.view()); }, "samples", "expected a 9 x 3 matrix, got 6 x 3");
  expect_rejected([&] { sample(ctx, head(), kG, {.step = std::uint64_t{1} << 32}, out.view()); }, "key.step",
                  "expected step < 2^32");
  expect_rejected([&] { sample(ctx, head(), kG, {.first_row = -1}, out.view()); }, "key.first_row", "0 <= first_row");
  expect_rejected([&] { sample(ctx, head(), kG, {.first_row = (std::int64_t{1} << 32) - 2}, out.view()); },
                  "key.first_row", "first_row + rows <= 2^32");
  EXPECT_TRUE(out.untouched());
  GuardedMatrix<double> wrong_cols(ctx, kB * kG, kN - 1);
  expect_rejected([&] { sample(ctx, head(), kG, {}, wrong_cols.view()); }, "samples", "expected a 6 x 3 matrix");
  EXPECT_TRUE(wrong_cols.untouched());
}

TEST_F(CholeskyGaussianErrors, SampleRejectsOutputOverlappingTheHead) {
  // One block holding the mean, the factor and (overlapping both) the output.
  std::vector<double> block(static_cast<std::size_t>(kB * kN + kB * packed_size(kN)), 0.5);
  const CholeskyGaussian<double> h{matrix_view<const double>(block.data(), kB, kN),
                                   matrix_view<const double>(block.data() + kB * kN, kB, packed_size(kN)), 1e-5};
  const std::vector<double> before = block;
  expect_rejected([&] { sample(ctx, h, kG, {}, matrix_view(block.data() + 2, kB * kG, kN)); }, "samples",
                  "overlaps argument 'head.mean'");
  expect_rejected([&] { sample(ctx, h, 1, {}, matrix_view(block.data() + kB * kN, kB, kN)); }, "samples",
                  "overlaps argument 'head.tril'");
  EXPECT_EQ(block, before);
}

// ---------------------------------------------------------------- log_prob
TEST_F(CholeskyGaussianErrors, LogProbRejectsBadShapesValuesAndOverlap) {
  GuardedMatrix<double> out(ctx, kB, kG);
  expect_rejected([&] { log_prob(ctx, head(), samples_view(), MatrixView<double>{out.view().data, kB, 0, kG}); },
                  "out", "G >= 1 generations");
  expect_rejected([&] { log_prob(ctx, head(), samples_view(), out.view().row_range(0, kB - 1)); }, "out",
                  "expected a 3 x 2 matrix, got 2 x 2");
  expect_rejected([&] { log_prob(ctx, head(), samples_view().row_range(0, kB * kG - 1), out.view()); }, "samples",
                  "expected a 6 x 3 matrix, got 5 x 3");
  samples[7] = kNaN;
  expect_rejected([&] { log_prob(ctx, head(), samples_view(), out.view()); }, "samples", "expected finite");
  samples[7] = 0.75;
  EXPECT_TRUE(out.untouched());

  const std::vector<double> before = samples;
  expect_rejected([&] { log_prob(ctx, head(), samples_view(), matrix_view(samples.data() + 3, kB, kG)); }, "out",
                  "overlaps argument 'samples'");
  expect_rejected([&] { log_prob(ctx, head(), samples_view(), matrix_view(tril.data(), kB, kG)); }, "out",
                  "overlaps argument 'head.tril'");
  EXPECT_EQ(samples, before);
}

// ---------------------------------------------------------------- entropy
TEST_F(CholeskyGaussianErrors, EntropyRejectsBadOutput) {
  GuardedMatrix<double> out(ctx, 1, kB + 1);
  expect_rejected([&] { entropy(ctx, head(), out.vector()); }, "out", "expected a 1 x 3 matrix, got 1 x 4");
  EXPECT_TRUE(out.untouched());
  expect_rejected([&] { entropy(ctx, head(), VectorView<double>{}); }, "out", "expected a 1 x 3 matrix, got 1 x 0");
  const std::vector<double> before = mean;
  expect_rejected([&] { entropy(ctx, head(), vector_view(mean.data() + 1, kB)); }, "out", "overlaps argument 'head.mean'");
  EXPECT_EQ(mean, before);
}

// ---------------------------------------------------------------- backward
TEST_F(CholeskyGaussianErrors, BackwardRejectsBadCotangentsAndGradients) {
  GuardedMatrix<double> g_mean(ctx, kB, kN), g_tril(ctx, kB, packed_size(kN));
  const CholeskyGaussianGrad<double> grad{g_mean.view(), g_tril.view()};
  expect_rejected([&] { backward(ctx, head(), samples_view(), d_log_prob_view().row_range(0, 2), d_entropy_view(), grad); },
                  "d_log_prob", "expected a 3 x 2 matrix, got 2 x 2");
  expect_rejected(
      [&] { backward(ctx, head(), samples_view(), MatrixView<const double>{d_log_prob.data(), kB, 0, kG}, d_entropy_view(), grad); },
      "d_log_prob", "G >= 1");
  expect_rejected([&] { backward(ctx, head(), samples_view().row_range(0, 5), d_log_prob_view(), d_entropy_view(), grad); },
                  "samples", "expected a 6 x 3 matrix, got 5 x 3");
  expect_rejected([&] { backward(ctx, head(), MatrixView<const double>{}, d_log_prob_view(), d_entropy_view(), grad); },
                  "samples", "expected a 6 x 3 matrix, got 0 x 0");
  expect_rejected([&] { backward(ctx, head(), samples_view(), d_log_prob_view(), vector_view<const double>(d_entropy.data(), 2), grad); },
                  "d_entropy", "expected a 1 x 3 matrix, got 1 x 2");
  d_log_prob[3] = kNaN;
  expect_rejected([&] { backward(ctx, head(), samples_view(), d_log_prob_view(), d_entropy_view(), grad); }, "d_log_prob",
                  "expected finite");
  d_log_prob[3] = 1.0;
  d_entropy[2] = kInf;
  expect_rejected([&] { backward(ctx, head(), samples_view(), d_log_prob_view(), d_entropy_view(), grad); }, "d_entropy",
                  "expected finite");
  d_entropy[2] = 1.0;
  samples[0] = kNaN;
  expect_rejected([&] { backward(ctx, head(), samples_view(), d_log_prob_view(), d_entropy_view(), grad); }, "samples",
                  "expected finite");
  samples[0] = 0.75;

  GuardedMatrix<double> small_mean(ctx, kB, kN - 1);
  expect_rejected(
      [&] { backward(ctx, head(), samples_view(), d_log_prob_view(), d_entropy_view(), {small_mean.view(), g_tril.view()}); },
      "grad.mean", "expected a 3 x 3 matrix, got 3 x 2");
  EXPECT_TRUE(small_mean.untouched());
  // A shared factor takes a 1-row gradient.
  CholeskyGaussian<double> shared = head();
  shared.tril.rows = 1;
  expect_rejected([&] { backward(ctx, shared, samples_view(), d_log_prob_view(), d_entropy_view(), grad); }, "grad.tril",
                  "expected a 1 x 6 matrix, got 3 x 6");
  GuardedMatrix<double> narrow_tril(ctx, kB, packed_size(kN) - 1);
  expect_rejected(
      [&] { backward(ctx, head(), samples_view(), d_log_prob_view(), d_entropy_view(), {g_mean.view(), narrow_tril.view()}); },
      "grad.tril", "expected a 3 x 6 matrix, got 3 x 5");
  EXPECT_TRUE(narrow_tril.untouched());
  EXPECT_TRUE(g_mean.untouched());
  EXPECT_TRUE(g_tril.untouched());
}

TEST_F(CholeskyGaussianErrors, BackwardRejectsOverlappingOutputs) {
  // grad.mean and grad.tril carved from one block, overlapping.
  std::vector<double> block(64, 0.5);
  const std::vector<double> before = block;
  const MatrixView<double> g_mean = matrix_view(block.data(), kB, kN);
  expect_rejected([&] { backward(ctx, head(), samples_view(), d_log_prob_view(), d_entropy_view(),
                                 {g_mean, matrix_view(block.data() + 4, kB, packed_size(kN))}); },
                  "grad.mean", "overlaps argument 'grad.tril'");
  GuardedMatrix<double> g_tril(ctx, kB, packed_size(kN));
  expect_rejected([&] { backward(ctx, head(), samples_view(), d_log_prob_view(), d_entropy_view(),
                                 {matrix_view(samples.data() + 1, kB, kN), g_tril.view()}); },
                  "grad.mean", "overlaps argument 'samples'");
  GuardedMatrix<double> g_mean_ok(ctx, kB, kN);
  const std::vector<double> tril_before = tril;
  expect_rejected([&] { backward(ctx, head(), samples_view(), d_log_prob_view(), d_entropy_view(),
                                 {g_mean_ok.view(), matrix_view(tril.data(), kB, packed_size(kN))}); },
                  "grad.tril", "overlaps argument 'head.tril'");
  expect_rejected([&] { backward(ctx, head(), samples_view(), d_log_prob_view(), d_entropy_view(),
                                 {g_mean_ok.view(), matrix_view(d_log_prob.data(), kB, packed_size(kN))}); },
                  "grad.tril", "overlaps argument");
  EXPECT_EQ(block, before);
  EXPECT_EQ(tril, tril_before);
  EXPECT_TRUE(g_mean_ok.untouched());
  EXPECT_TRUE(g_tril.untouched());
}

TEST_F(CholeskyGaussianErrors, BackwardAcceptsEmptyCotangents) {
  // Only the entropy term: no samples, no d_log_prob.
  GuardedMatrix<double> g_mean(ctx, kB, kN), g_tril(ctx, kB, packed_size(kN));
  EXPECT_NO_THROW(backward(ctx, head(), MatrixView<const double>{}, MatrixView<const double>{}, d_entropy_view(),
                           {g_mean.view(), g_tril.view()}));
  for (const double v : g_mean.values_checked()) EXPECT_EQ(v, 0.0);
  // Neither term: an all-zero gradient.
  GuardedMatrix<double> z_mean(ctx, kB, kN), z_tril(ctx, kB, packed_size(kN));
  EXPECT_NO_THROW(backward(ctx, head(), MatrixView<const double>{}, MatrixView<const double>{}, VectorView<const double>{},
                           {z_mean.view(), z_tril.view()}));
  for (const double v : z_tril.values_checked()) EXPECT_EQ(v, 0.0);
}

// The cuda backend's checks: CholeskyErrorsGpu in tests/errors_gpu_test.cpp (gpu_kernels_test).

}  // namespace
}  // namespace d2r
