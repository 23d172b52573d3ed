// Cholesky-Gaussian kernels (cuda backend, float) against the CPU reference in double: the same
// Philox keys give the same draws, and every output is compared through sentinel-guarded
// buffers. Each test skips when no CUDA device is usable.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;
using test::TestRng;

std::int64_t packed_size(std::int64_t n) { return n * (n + 1) / 2; }

struct GpuCase {
  std::int64_t batch, n, generations;
  bool shared;
};

void PrintTo(const GpuCase& p, std::ostream* os) {
  *os << fmt::format("B={} n={} G={} {}", p.batch, p.n, p.generations, p.shared ? "shared" : "per-row");
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

/// A read-only vector view of a guarded 1 x N buffer (inputs are views of const).
template <class T>
VectorView<const T> const_vector(GuardedMatrix<T>& m) {
  return m.vector();
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

/// One problem in float on the device and, with the same float-representable values, in double
/// on the host.
struct Problem {
  GpuCase shape;
  float jitter = 1e-4f;
  std::vector<float> mean, tril, d_log_prob, d_entropy;

  explicit Problem(const GpuCase& s, std::uint64_t seed) : shape(s) {
    TestRng rng(seed);
    const std::int64_t n = s.n, tril_rows = s.shared ? 1 : s.batch;
    mean = rng.vector<float>(static_cast<std::size_t>(s.batch * n), -2.0, 2.0);
    // Well conditioned for every n: L_ii = softplus(raw) in [0.47, 1.3], |L_ij| <= 0.5/sqrt(n).
    const double off = 0.5 / std::sqrt(static_cast<double>(n));
    tril.resize(static_cast<std::size_t>(tril_rows * packed_size(n)));
    for (std::int64_t r = 0; r < tril_rows; ++r)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j <= i; ++j)
          tril[r * packed_size(n) + i * (i + 1) / 2 + j] =
              static_cast<float>(i == j ? rng.uniform(-0.5, 1.0) : rng.uniform(-off, off));
    d_log_prob = rng.vector<float>(static_cast<std::size_t>(s.batch * s.generations), -1.0, 1.0);
    d_entropy = rng.vector<float>(static_cast<std::size_t>(s.batch), -1.0, 1.0);
  }
  [[nodiscard]] std::int64_t tril_rows() const { return shape.shared ? 1 : shape.batch; }
};

class CholeskyGpu : public ::testing::TestWithParam<GpuCase> {
 protected:
  void SetUp() override {
    D2R_REQUIRE_GPU();
    gpu_ = std::make_unique<Context>(ContextOptions{.backend = Backend::cuda, .seed = kSeed});
    cpu_ = std::make_unique<Context>(ContextOptions{.backend = Backend::cpu, .seed = kSeed});
  }
  static constexpr std::uint64_t kSeed = 0xC0FFEE;
  std::unique_ptr<Context> gpu_, cpu_;
};

TEST_P(CholeskyGpu, MatchesDoubleReference) {
  const GpuCase s = GetParam();
  const Problem p(s, 1000 + static_cast<std::uint64_t>(s.batch * 131 + s.n * 7 + s.generations));
  Context& gpu = *gpu_;
  Context& cpu = *cpu_;
  const std::int64_t B = s.batch, n = s.n, G = s.generations, P = packed_size(n);
  const double dn = static_cast<double>(n);
  const DrawKey key{.step = 123, .first_row = 40};

  // Device inputs (strided: GuardedMatrix rows have a gap).
  GuardedMatrix<float> mean_g(gpu, B, n), tril_g(gpu, p.tril_rows(), P), dlp_g(gpu, B, G), dent_g(gpu, 1, B);
  mean_g.fill(p.mean);
  tril_g.fill(p.tril);
  dlp_g.fill(p.d_log_prob);
  dent_g.fill(p.d_entropy);
  const CholeskyGaussian<float> head_g{mean_g.cview(), tril_g.cview(), p.jitter};
  // Host double inputs with the same values.
  const std::vector<double> mean_d = to_double(p.mean), tril_d = to_double(p.tril), dlp_d = to_double(p.d_log_prob),
                            dent_d = to_double(p.d_entropy);
  const CholeskyGaussian<double> head_d{matrix_view(mean_d.data(), B, n), matrix_view(tril_d.data(), p.tril_rows(), P),
                                        static_cast<double>(p.jitter)};

  // ---- sample: draw for draw.
  GuardedMatrix<float> y_g(gpu, B * G, n);
  sample(gpu, head_g, G, key, y_g.view());
  const std::vector<float> y = y_g.values_checked();
  std::vector<double> y_ref(static_cast<std::size_t>(B * G * n));
  sample(cpu, head_d, G, key, matrix_view(y_ref.data(), B * G, n));
  ASSERT_GT(max_abs(y_ref), 0.1);
  {
    SCOPED_TRACE("sample");
    D2R_EXPECT_CLOSE(y, y_ref, 1e-4, 1e-5 * (1.0 + std::sqrt(dn)));
  }

  // Evaluate both backends at the device's samples.
  const std::vector<double> y_d = to_double(y);
  const MatrixView<const double> y_d_view = matrix_view(y_d.data(), B * G, n);

  // ---- log_prob
  GuardedMatrix<float> lp_g(gpu, B, G);
  log_prob(gpu, head_g, y_g.cview(), lp_g.view());
  std::vector<double> lp_ref(static_cast<std::size_t>(B * G));
  log_prob(cpu, head_d, y_d_view, matrix_view(lp_ref.data(), B, G));
  ASSERT_GT(max_abs(lp_ref), 0.1);
  {
    SCOPED_TRACE("log_prob");
    D2R_EXPECT_CLOSE(lp_g.values_checked(), lp_ref, 1e-4, 1e-5 * dn);
  }

  // ---- entropy
  GuardedMatrix<float> h_g(gpu, 1, B);
  entropy(gpu, head_g, h_g.vector());
  std::vector<double> h_ref(static_cast<std::size_t>(B));
  entropy(cpu, head_d, vector_view(h_ref.data(), B));
  {
    SCOPED_TRACE("entropy");
    D2R_EXPECT_CLOSE(h_g.values_checked(), h_ref, 1e-5, 1e-5 * dn);
  }

  // ---- backward (both cotangents), compared with a normalised tolerance: entries are sums
  // over G (and over B for a shared factor) whose terms may cancel.
  GuardedMatrix<float> gm_g(gpu, B, n), gt_g(gpu, p.tril_rows(), P);
  backward(gpu, head_g, y_g.cview(), dlp_g.cview(), const_vector(dent_g), {gm_g.view(), gt_g.view()});
  std::vector<double> gm_ref(static_cast<std::size_t>(B * n)), gt_ref(static_cast<std::size_t>(p.tril_rows() * P));
  backward(cpu, head_d, y_d_view, matrix_view(dlp_d.data(), B, G), vector_view(dent_d.data(), B),
           {matrix_view(gm_ref.data(), B, n), matrix_view(gt_ref.data(), p.tril_rows(), P)});
  ASSERT_GT(max_abs(gm_ref), 1e-3);
  ASSERT_GT(max_abs(gt_ref), 1e-3);
  const std::vector<float> gm = gm_g.values_checked(), gt = gt_g.values_checked();
  {
    SCOPED_TRACE("backward: grad.mean");
    D2R_EXPECT_CLOSE(gm, gm_ref, 1e-3, 1e-4 * max_abs(gm_ref));
  }
  {
    SCOPED_TRACE("backward: grad.tril");
    D2R_EXPECT_CLOSE(gt, gt_ref, 1e-3, 1e-4 * max_abs(gt_ref));
  }

  // Deterministic: a second run gives the same bits.
  GuardedMatrix<float> gm2_g(gpu, B, n), gt2_g(gpu, p.tril_rows(), P);
  backward(gpu, head_g, y_g.cview(), dlp_g.cview(), const_vector(dent_g), {gm2_g.view(), gt2_g.view()});
  EXPECT_EQ(gm2_g.values_checked(), gm);
  EXPECT_EQ(gt2_g.values_checked(), gt);
}

TEST_P(CholeskyGpu, BackwardWithOneCotangentOnly) {
  const GpuCase s = GetParam();
  const Problem p(s, 2000 + static_cast<std::uint64_t>(s.batch * 17 + s.n));
  Context& gpu = *gpu_;
  Context& cpu = *cpu_;
  const std::int64_t B = s.batch, n = s.n, G = s.generations, P = packed_size(n);
  GuardedMatrix<float> mean_g(gpu, B, n), tril_g(gpu, p.tril_rows(), P), dlp_g(gpu, B, G), dent_g(gpu, 1, B);
  mean_g.fill(p.mean);
  tril_g.fill(p.tril);
  dlp_g.fill(p.d_log_prob);
  dent_g.fill(p.d_entropy);
  const CholeskyGaussian<float> head_g{mean_g.cview(), tril_g.cview(), p.jitter};
  const std::vector<double> mean_d = to_double(p.mean), tril_d = to_double(p.tril), dlp_d = to_double(p.d_log_prob),
                            dent_d = to_double(p.d_entropy);
  const CholeskyGaussian<double> head_d{matrix_view(mean_d.data(), B, n), matrix_view(tril_d.data(), p.tril_rows(), P),
                                        static_cast<double>(p.jitter)};
  GuardedMatrix<float> y_g(gpu, B * G, n);
  sample(gpu, head_g, G, {.step = 5}, y_g.view());
  const std::vector<double> y_d = to_double(y_g.values_checked());

  for (const bool entropy_only : {true, false}) {
    SCOPED_TRACE(entropy_only ? "d_entropy only (no samples)" : "d_log_prob only");
    GuardedMatrix<float> gm_g(gpu, B, n), gt_g(gpu, p.tril_rows(), P);
    std::vector<double> gm_ref(static_cast<std::size_t>(B * n)), gt_ref(static_cast<std::size_t>(p.tril_rows() * P));
    const CholeskyGaussianGrad<double> grad_ref{matrix_view(gm_ref.data(), B, n),
                                                matrix_view(gt_ref.data(), p.tril_rows(), P)};
    if (entropy_only) {
      backward(gpu, head_g, MatrixView<const float>{}, MatrixView<const float>{}, const_vector(dent_g),
               {gm_g.view(), gt_g.view()});
      backward(cpu, head_d, MatrixView<const double>{}, MatrixView<const double>{}, vector_view(dent_d.data(), B),
               grad_ref);
    } else {
      backward(gpu, head_g, y_g.cview(), dlp_g.cview(), VectorView<const float>{}, {gm_g.view(), gt_g.view()});
      backward(cpu, head_d, matrix_view(y_d.data(), B * G, n), matrix_view(dlp_d.data(), B, G),
               VectorView<const double>{}, grad_ref);
    }
    ASSERT_GT(max_abs(gt_ref), 1e-3);
    D2R_EXPECT_CLOSE(gm_g.values_checked(), gm_ref, 1e-3, 1e-4 * std::max(max_abs(gm_ref), 1.0));
    D2R_EXPECT_CLOSE(gt_g.values_checked(), gt_ref, 1e-3, 1e-4 * max_abs(gt_ref));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CholeskyGpu,
    ::testing::Values(GpuCase{1, 1, 1, false}, GpuCase{1, 2, 5, false}, GpuCase{1, 64, 1, true},
                      GpuCase{7, 1, 100, true}, GpuCase{7, 2, 5, true}, GpuCase{7, 3, 50, false},
                      GpuCase{7, 17, 50, false}, GpuCase{7, 17, 50, true}, GpuCase{5, 64, 100, false},
                      GpuCase{3, 64, 33, true}, GpuCase{257, 3, 100, false}, GpuCase{257, 3, 100, true},
                      GpuCase{257, 17, 5, true}, GpuCase{257, 64, 5, false}, GpuCase{300, 5, 7, true},
                      GpuCase{33, 17, 1, true}, GpuCase{2, 4, 64, false}),
    [](const ::testing::TestParamInfo<GpuCase>& info) {
      const GpuCase& p = info.param;
      return fmt::format("B{}_n{}_G{}_{}", p.batch, p.n, p.generations, p.shared ? "shared" : "perrow");
    });

/// Rows [r0, r1) sampled as a shard (first_row = r0) equal those rows of the whole batch.
TEST(CholeskyGpuKeys, ShardDrawsWhatTheWholeBatchDraws) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda, .seed = 21});
  const GpuCase s{9, 6, 40, false};
  const Problem p(s, 77);
  const std::int64_t B = s.batch, n = s.n, G = s.generations, P = packed_size(n), r0 = 3, r1 = 7;
  GuardedMatrix<float> mean_g(gpu, B, n), tril_g(gpu, B, P);
  mean_g.fill(p.mean);
  tril_g.fill(p.tril);
  const CholeskyGaussian<float> head{mean_g.cview(), tril_g.cview(), p.jitter};
  GuardedMatrix<float> full(gpu, B * G, n), part(gpu, (r1 - r0) * G, n);
  sample(gpu, head, G, {.step = 8}, full.view());
  const CholeskyGaussian<float> shard{head.mean.row_range(r0, r1 - r0), head.tril.row_range(r0, r1 - r0), head.jitter};
  sample(gpu, shard, G, {.step = 8, .first_row = r0}, part.view());
  const std::vector<float> all = full.values_checked();
  const std::vector<float> expected(all.begin() + r0 * G * n, all.begin() + r1 * G * n);
  EXPECT_EQ(part.values_checked(), expected);
}

/// The cuda value check rejects a diagonal that underflows to 0 in float (jitter 0), before writing.
TEST(CholeskyGpuKeys, RejectsNonPositiveDiagonalOnDevice) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda});
  const GpuCase s{4, 3, 2, false};
  Problem p(s, 5);
  p.jitter = 0.0f;
  p.tril[2 * packed_size(3) + 5] = -200.0f;  // row 2, diagonal (2, 2)
  GuardedMatrix<float> mean_g(gpu, 4, 3), tril_g(gpu, 4, packed_size(3)), out(gpu, 1, 4);
  mean_g.fill(p.mean);
  tril_g.fill(p.tril);
  try {
    entropy(gpu, CholeskyGaussian<float>{mean_g.cview(), tril_g.cview(), 0.0f}, out.vector());
    ADD_FAILURE() << "a zero diagonal must be rejected";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "head.tril");
    EXPECT_NE(std::string(e.what()).find("element (2, 5)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected L_ii > 0"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(out.untouched());
  // With the check off the same call runs (and yields -inf for that row).
  gpu.set_value_checks(ValueChecks::none);
  entropy(gpu, CholeskyGaussian<float>{mean_g.cview(), tril_g.cview(), 0.0f}, out.vector());
  const std::vector<float> h = out.values_checked();
  EXPECT_TRUE(std::isinf(h[2]) && h[2] < 0);
  EXPECT_TRUE(std::isfinite(h[0]));
}

}  // namespace
}  // namespace d2r
