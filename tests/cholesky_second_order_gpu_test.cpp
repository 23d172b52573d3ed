// Second-order primitives of the Cholesky-Gaussian head on the cuda backend: a bad input rejected
// on the device before any write. The comparisons against the CPU reference in double (log_prob_jvp,
// backward_tangent with both cotangents and each alone, exact_backward_tangent and
// exact_mixed_product per reward form, per-row and shared tril, determinism) are cases of
// host/checks/cases/second_order.cpp (tests/checks_gpu_test.cpp, `d2r validate`). Each test skips
// when no CUDA device is usable.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "d2r/d2r.hpp"
#include "d2r/second_order.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;
using test::TestRng;

std::int64_t packed_size(std::int64_t n) { return n * (n + 1) / 2; }

struct Shape {
  std::int64_t batch, n, generations;
  bool shared;
};

/// One problem in float on the device and, with the same float values, in double on the host.
struct Problem {
  Shape s;
  float jitter = 1e-4f;
  std::vector<float> mean, tril, t_mean, t_tril, samples, d_log_prob, d_entropy;

  Problem(const Shape& shape, std::uint64_t seed) : s(shape) {
    TestRng rng(seed);
    const std::int64_t n = s.n, P = packed_size(n), rows = tril_rows();
    // Well conditioned for every n: L_ii = softplus(raw) in [0.47, 1.3], |L_ij| <= 0.5/sqrt(n).
    const double off = 0.5 / std::sqrt(static_cast<double>(n));
    mean = rng.vector<float>(static_cast<std::size_t>(s.batch * n), -2.0, 2.0);
    tril.resize(static_cast<std::size_t>(rows * P));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j <= i; ++j)
          tril[r * P + i * (i + 1) / 2 + j] =
              static_cast<float>(i == j ? rng.uniform(-0.5, 1.0) : rng.uniform(-off, off));
    t_mean = rng.vector<float>(static_cast<std::size_t>(s.batch * n), -1.0, 1.0);
    t_tril = rng.vector<float>(static_cast<std::size_t>(rows * P), -1.0, 1.0);
    samples.resize(static_cast<std::size_t>(s.batch * s.generations * n));
    for (std::int64_t b = 0; b < s.batch; ++b)
      for (std::int64_t g = 0; g < s.generations; ++g)
        for (std::int64_t d = 0; d < n; ++d)
          samples[(b * s.generations + g) * n + d] = static_cast<float>(mean[b * n + d] + rng.uniform(-1.0, 1.0));
    d_log_prob = rng.vector<float>(static_cast<std::size_t>(s.batch * s.generations), -1.0, 1.0);
    d_entropy = rng.vector<float>(static_cast<std::size_t>(s.batch), -1.0, 1.0);
  }
  [[nodiscard]] std::int64_t tril_rows() const { return s.shared ? 1 : s.batch; }
};

/// The problem's inputs in sentinel-guarded device buffers.
struct DeviceInputs {
  GuardedMatrix<float> mean, tril, t_mean, t_tril, samples, d_log_prob, d_entropy;
  DeviceInputs(Context& gpu, const Problem& p)
      : mean(gpu, p.s.batch, p.s.n), tril(gpu, p.tril_rows(), packed_size(p.s.n)), t_mean(gpu, p.s.batch, p.s.n),
        t_tril(gpu, p.tril_rows(), packed_size(p.s.n)), samples(gpu, p.s.batch * p.s.generations, p.s.n),
        d_log_prob(gpu, p.s.batch, p.s.generations), d_entropy(gpu, 1, p.s.batch) {
    mean.fill(p.mean);
    tril.fill(p.tril);
    t_mean.fill(p.t_mean);
    t_tril.fill(p.t_tril);
    samples.fill(p.samples);
    d_log_prob.fill(p.d_log_prob);
    d_entropy.fill(p.d_entropy);
  }
  [[nodiscard]] CholeskyGaussian<float> head(float jitter) const { return {mean.cview(), tril.cview(), jitter}; }
  [[nodiscard]] CholeskyGaussian<float> tangent() const { return {t_mean.cview(), t_tril.cview()}; }
  [[nodiscard]] VectorView<const float> entropy_cotangent() { return d_entropy.vector(); }
};

/// A non-finite tangent on the device is rejected before any output is written.
TEST(CholeskySecondOrderGpuErrors, RejectsNonFiniteTangentOnDevice) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda});
  Problem p({4, 3, 2, false}, 17);
  p.t_tril[7] = std::numeric_limits<float>::quiet_NaN();
  DeviceInputs dev(gpu, p);
  GuardedMatrix<float> out(gpu, 4, 2), gm(gpu, 4, 3), gt(gpu, 4, packed_size(3));
  for (int call = 0; call < 2; ++call) {
    try {
      if (call == 0) {
        log_prob_jvp(gpu, dev.head(p.jitter), dev.samples.cview(), dev.tangent(), out.view());
      } else {
        backward_tangent(gpu, dev.head(p.jitter), dev.samples.cview(), dev.d_log_prob.cview(), dev.entropy_cotangent(),
                         dev.tangent(), {gm.view(), gt.view()});
      }
      ADD_FAILURE() << "no d2r::Error thrown (call " << call << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "tangent.tril") << e.what();
    }
  }
  EXPECT_TRUE(out.untouched());
  EXPECT_TRUE(gm.untouched());
  EXPECT_TRUE(gt.untouched());
}

}  // namespace
}  // namespace d2r
