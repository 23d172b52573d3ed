// Second-order primitives of the Cholesky-Gaussian head on the cuda backend (float) against the
// CPU reference in double, through sentinel-guarded (strided) buffers: log_prob_jvp and
// backward_tangent with both cotangents and each alone, per-row and shared tril, run-to-run
// determinism, and a bad input rejected on the device before any write. Each test skips when no
// CUDA device is usable.
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

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

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

/// The same inputs in double on the host.
struct HostInputs {
  std::vector<double> mean, tril, t_mean, t_tril, samples, d_log_prob, d_entropy;
  const Problem& p;
  explicit HostInputs(const Problem& problem)
      : mean(to_double(problem.mean)), tril(to_double(problem.tril)), t_mean(to_double(problem.t_mean)),
        t_tril(to_double(problem.t_tril)), samples(to_double(problem.samples)),
        d_log_prob(to_double(problem.d_log_prob)), d_entropy(to_double(problem.d_entropy)), p(problem) {}
  [[nodiscard]] CholeskyGaussian<double> head() const {
    return {matrix_view(mean.data(), p.s.batch, p.s.n), matrix_view(tril.data(), p.tril_rows(), packed_size(p.s.n)),
            static_cast<double>(p.jitter)};
  }
  [[nodiscard]] CholeskyGaussian<double> tangent() const {
    return {matrix_view(t_mean.data(), p.s.batch, p.s.n),
            matrix_view(t_tril.data(), p.tril_rows(), packed_size(p.s.n))};
  }
  [[nodiscard]] MatrixView<const double> samples_view() const {
    return matrix_view(samples.data(), p.s.batch * p.s.generations, p.s.n);
  }
  [[nodiscard]] MatrixView<const double> d_log_prob_view() const {
    return matrix_view(d_log_prob.data(), p.s.batch, p.s.generations);
  }
  [[nodiscard]] VectorView<const double> d_entropy_view() const { return vector_view(d_entropy.data(), p.s.batch); }
};

using Params = std::tuple<std::int64_t, std::int64_t, std::int64_t, bool>;

class CholeskySecondOrderGpu : public ::testing::TestWithParam<Params> {
 protected:
  void SetUp() override {
    D2R_REQUIRE_GPU();
    gpu_ = std::make_unique<Context>(ContextOptions{.backend = Backend::cuda, .seed = 9});
    cpu_ = std::make_unique<Context>(ContextOptions{.backend = Backend::cpu, .seed = 9});
  }
  [[nodiscard]] Shape shape() const {
    const auto& [b, n, g, shared] = GetParam();
    return {b, n, g, shared};
  }
  std::unique_ptr<Context> gpu_, cpu_;
};

TEST_P(CholeskySecondOrderGpu, LogProbJvpMatchesDoubleReference) {
  const Shape s = shape();
  const Problem p(s, 3000 + static_cast<std::uint64_t>(s.batch * 131 + s.n * 7 + s.generations));
  DeviceInputs dev(*gpu_, p);
  const HostInputs host(p);
  GuardedMatrix<float> out(*gpu_, s.batch, s.generations);
  log_prob_jvp(*gpu_, dev.head(p.jitter), dev.samples.cview(), dev.tangent(), out.view());
  std::vector<double> ref(static_cast<std::size_t>(s.batch * s.generations));
  log_prob_jvp(*cpu_, host.head(), host.samples_view(), host.tangent(),
               matrix_view(ref.data(), s.batch, s.generations));
  ASSERT_GT(max_abs(ref), 1e-6);
  const std::vector<float> got = out.values_checked();
  D2R_EXPECT_CLOSE(got, ref, 2e-3, 2e-4 * max_abs(ref));
  // Deterministic: a second run gives the same bits.
  GuardedMatrix<float> again(*gpu_, s.batch, s.generations);
  log_prob_jvp(*gpu_, dev.head(p.jitter), dev.samples.cview(), dev.tangent(), again.view());
  EXPECT_EQ(again.values_checked(), got);
}

TEST_P(CholeskySecondOrderGpu, BackwardTangentMatchesDoubleReference) {
  const Shape s = shape();
  const Problem p(s, 4000 + static_cast<std::uint64_t>(s.batch * 131 + s.n * 7 + s.generations));
  DeviceInputs dev(*gpu_, p);
  const HostInputs host(p);
  const std::int64_t B = s.batch, n = s.n, P = packed_size(n), R = p.tril_rows();
  enum class Which { both, log_prob_only, entropy_only };
  for (const Which which : {Which::both, Which::log_prob_only, Which::entropy_only}) {
    SCOPED_TRACE(which == Which::both ? "both cotangents" : which == Which::log_prob_only ? "d_log_prob only"
                                                                                           : "d_entropy only");
    const bool with_c = which != Which::entropy_only, with_e = which != Which::log_prob_only;
    GuardedMatrix<float> gm(*gpu_, B, n), gt(*gpu_, R, P);
    backward_tangent(*gpu_, dev.head(p.jitter), with_c ? dev.samples.cview() : MatrixView<const float>{},
                     with_c ? dev.d_log_prob.cview() : MatrixView<const float>{},
                     with_e ? dev.entropy_cotangent() : VectorView<const float>{}, dev.tangent(),
                     {gm.view(), gt.view()});
    std::vector<double> gm_ref(static_cast<std::size_t>(B * n)), gt_ref(static_cast<std::size_t>(R * P));
    backward_tangent(*cpu_, host.head(), with_c ? host.samples_view() : MatrixView<const double>{},
                     with_c ? host.d_log_prob_view() : MatrixView<const double>{},
                     with_e ? host.d_entropy_view() : VectorView<const double>{}, host.tangent(),
                     {matrix_view(gm_ref.data(), B, n), matrix_view(gt_ref.data(), R, P)});
    ASSERT_GT(max_abs(gt_ref), 1e-6);
    const std::vector<float> got_mean = gm.values_checked(), got_tril = gt.values_checked();
    {
      SCOPED_TRACE("grad_tangent.mean");
      D2R_EXPECT_CLOSE(got_mean, gm_ref, 2e-3, 2e-4 * std::max(max_abs(gm_ref), 1.0));
    }
    {
      SCOPED_TRACE("grad_tangent.tril");
      D2R_EXPECT_CLOSE(got_tril, gt_ref, 2e-3, 2e-4 * max_abs(gt_ref));
    }
    if (which == Which::both) {
      GuardedMatrix<float> gm2(*gpu_, B, n), gt2(*gpu_, R, P);
      backward_tangent(*gpu_, dev.head(p.jitter), dev.samples.cview(), dev.d_log_prob.cview(), dev.entropy_cotangent(),
                       dev.tangent(), {gm2.view(), gt2.view()});
      EXPECT_EQ(gm2.values_checked(), got_mean);
      EXPECT_EQ(gt2.values_checked(), got_tril);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CholeskySecondOrderGpu,
                         ::testing::Combine(::testing::Values<std::int64_t>(1, 3, 257),
                                            ::testing::Values<std::int64_t>(1, 2, 17, 64),
                                            ::testing::Values<std::int64_t>(1, 5, 40), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<Params>& info) {
                           return fmt::format("B{}_n{}_G{}_{}", std::get<0>(info.param), std::get<1>(info.param),
                                              std::get<2>(info.param), std::get<3>(info.param) ? "shared" : "perrow");
                         });

// ---------------------------------------------------------------- exact curvature
/// Reward parameters of a form in n dims (full: a well-conditioned Cholesky factor R).
std::vector<float> exact_reward_params(RewardForm form, std::int64_t n, TestRng& rng) {
  std::vector<float> u(static_cast<std::size_t>(reward_param_count(form, n)));
  for (float& x : u) x = static_cast<float>(form == RewardForm::full ? rng.uniform(-0.3, 0.3) : rng.uniform(0.3, 1.5));
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < n; ++i) u[static_cast<std::size_t>(i * (i + 1) / 2 + i)] = static_cast<float>(rng.uniform(0.6, 1.2));
  return u;
}

using ExactParams = std::tuple<std::int64_t, std::int64_t, bool>;
class CholeskyExactCurvatureGpu : public ::testing::TestWithParam<ExactParams> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

/// exact_backward_tangent and exact_mixed_product (Cholesky head) on the device against the CPU
/// reference in double, for every reward form, with and without the per-dimension mean; both are
/// deterministic (a second run gives the same bits).
TEST_P(CholeskyExactCurvatureGpu, MatchesDoubleReference) {
  const auto [B, n, shared] = GetParam();
  Context gpu({.backend = Backend::cuda}), cpu({.backend = Backend::cpu});
  const Problem p({B, n, 1, shared}, 5000 + static_cast<std::uint64_t>(B * 131 + n * 7) + (shared ? 1 : 0));
  DeviceInputs dev(gpu, p);
  const HostInputs host(p);
  const std::int64_t P = packed_size(n), R = p.tril_rows();
  TestRng rng(91 + static_cast<std::uint64_t>(n));
  const std::vector<float> y = rng.vector<float>(static_cast<std::size_t>(B * n), -1.5, 1.5);
  GuardedMatrix<float> d_y(gpu, B, n);
  d_y.fill(y);
  const std::vector<double> y_ref = to_double(y);
  for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    for (const bool per_dim : {false, true}) {
      SCOPED_TRACE(fmt::format("form {} per_dim {}", static_cast<int>(form), per_dim));
      const std::vector<float> u = exact_reward_params(form, n, rng);
      const auto U = static_cast<std::int64_t>(u.size());
      GuardedMatrix<float> d_u(gpu, 1, U);
      d_u.fill(u);
      const std::vector<double> u_ref = to_double(u);
      const MahalanobisReward<float> reward{form, VectorView<const float>{d_u.cview().data, U}};
      const MahalanobisReward<double> reward_ref{form, vector_view(u_ref.data(), U)};
      const PgOptions<float> o{.entropy_weight = 0.6f, .per_dimension_mean = per_dim, .normaliser_rows = B + 3};
      const PgOptions<double> od{.entropy_weight = 0.6, .per_dimension_mean = per_dim, .normaliser_rows = B + 3};
      // Head Hessian.
      GuardedMatrix<float> gm(gpu, B, n), gt(gpu, R, P);
      exact_backward_tangent(gpu, dev.head(p.jitter), reward, o, dev.tangent(), {gm.view(), gt.view()});
      std::vector<double> gm_ref(static_cast<std::size_t>(B * n)), gt_ref(static_cast<std::size_t>(R * P));
      exact_backward_tangent(cpu, host.head(), reward_ref, od, host.tangent(),
                             {matrix_view(gm_ref.data(), B, n), matrix_view(gt_ref.data(), R, P)});
      ASSERT_GT(max_abs(gt_ref), 1e-6);
      const std::vector<float> got_mean = gm.values_checked(), got_tril = gt.values_checked();
      D2R_EXPECT_CLOSE(got_mean, gm_ref, 2e-3, 2e-4 * std::max(max_abs(gm_ref), 1e-3));
      D2R_EXPECT_CLOSE(got_tril, gt_ref, 2e-3, 2e-4 * max_abs(gt_ref));
      GuardedMatrix<float> gm2(gpu, B, n), gt2(gpu, R, P);
      exact_backward_tangent(gpu, dev.head(p.jitter), reward, o, dev.tangent(), {gm2.view(), gt2.view()});
      EXPECT_EQ(gm2.values_checked(), got_mean);
      EXPECT_EQ(gt2.values_checked(), got_tril);
      // Mixed product.
      GuardedMatrix<float> g(gpu, 1, U), g2(gpu, 1, U);
      exact_mixed_product(gpu, dev.head(p.jitter), d_y.cview(), reward, o, dev.tangent(), g.vector());
      std::vector<double> g_ref(static_cast<std::size_t>(U));
      exact_mixed_product(cpu, host.head(), matrix_view(y_ref.data(), B, n), reward_ref, od, host.tangent(),
                          vector_view(g_ref.data(), U));
      ASSERT_GT(max_abs(g_ref), 1e-6);
      const std::vector<float> got = g.values_checked();
      D2R_EXPECT_CLOSE(got, g_ref, 2e-3, 2e-4 * max_abs(g_ref));
      exact_mixed_product(gpu, dev.head(p.jitter), d_y.cview(), reward, o, dev.tangent(), g2.vector());
      EXPECT_EQ(g2.values_checked(), got);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CholeskyExactCurvatureGpu,
                         ::testing::Combine(::testing::Values<std::int64_t>(1, 3, 300),
                                            ::testing::Values<std::int64_t>(1, 2, 17, 64), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<ExactParams>& info) {
                           return fmt::format("B{}_n{}_{}", std::get<0>(info.param), std::get<1>(info.param),
                                              std::get<2>(info.param) ? "shared" : "perrow");
                         });

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
