// Cholesky-Gaussian kernels on the cuda backend where the case registry does not reach: a shard of
// rows draws what the whole batch draws, and a non-positive diagonal found on the device. The
// comparisons against the CPU reference in double (draws, log_prob, entropy, backward, one
// cotangent only, determinism) are cases of host/checks/cases/distributions.cpp
// (tests/checks_gpu_test.cpp, `d2r validate`). Each test skips when no CUDA device is usable.
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
