// The Cholesky policy curvature (MLP + Cholesky-Gaussian head) on the cuda backend in float
// against the cpu backend in double, on the same parameters, inputs, targets, reward and key:
// prepare's gradient and per-row losses, HVPs along random directions (also through the
// operator) and the mixed product, for the REINFORCE surrogate (samples drawn from the same
// Philox stream on both) and the exact-expectation objective, every reward form; then bad input
// on the device named and leaving grad untouched. Each test skips when no CUDA device is usable.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::Transform;
using d2r::test::TestRng;

std::vector<float> reward_params(RewardForm form, std::int64_t n, TestRng& rng) {
  std::vector<float> p(static_cast<std::size_t>(d2r::reward_param_count(form, n)));
  for (auto& v : p) v = static_cast<float>(form == RewardForm::full ? rng.uniform(-0.3, 0.3) : rng.uniform(0.3, 1.3));
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < n; ++i) p[static_cast<std::size_t>(i * (i + 1) / 2 + i)] = static_cast<float>(rng.uniform(0.6, 1.2));
  return p;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}
double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}
/// A packed device view to the host (after the context's work is done).
template <class T>
std::vector<T> device_to_host(d2r::Context& ctx, const T* data, std::int64_t count) {
  ctx.synchronize();
  std::vector<T> out(static_cast<std::size_t>(count));
  EXPECT_EQ(cudaMemcpy(out.data(), data, out.size() * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

/// float GPU vs double reference: relative to the entry and to the largest entry (sums over
/// rows, samples and hidden units of both signs).
#define EXPECT_GPU_CLOSE(actual, expected) D2R_EXPECT_CLOSE(actual, expected, 2e-3, 1e-6 + 5e-4 * max_abs(expected))

constexpr std::uint64_t kSeed = 41;

/// One problem, in float for the device and widened to double for the reference.
struct Problem {
  std::int64_t B = 37, n = 3, G = 6, D = 5;
  d2r::Mlp net;
  std::vector<float> params, x, y, u;
  RewardForm form;
  Problem(RewardForm f, std::uint64_t seed)
      : net({.inputs = 5, .hidden = {16}, .outputs = 3 + 6, .activation = d2r::Activation::tanh}), form(f) {
    TestRng rng(seed);
    params.resize(static_cast<std::size_t>(net.parameter_count()));
    d2r::Context init({.backend = d2r::Backend::cpu});
    net.init<float>(init, d2r::vector_view(params.data(), net.parameter_count()), seed);
    x = rng.vector<float>(static_cast<std::size_t>(B * D), -1.5, 1.5);
    y = rng.vector<float>(static_cast<std::size_t>(B * n), -1.0, 1.0);
    u = reward_params(f, n, rng);
  }
};

using Case = std::tuple<bool, RewardForm>;  // exact, form
class CholeskyPolicyCurvatureGpu : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

TEST_P(CholeskyPolicyCurvatureGpu, MatchesCpuDouble) {
  const auto [exact, form] = GetParam();
  const Problem p(form, 200 + static_cast<std::uint64_t>(form) + (exact ? 10 : 0));
  const std::int64_t B = p.B, n = p.n, G = p.G, D = p.D, P = p.net.parameter_count();
  const auto U = static_cast<std::int64_t>(p.u.size());
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = kSeed});
  d2r::Context cpu({.backend = d2r::Backend::cpu, .seed = kSeed});
  const d2r::PgOptions<float> of{.entropy_weight = 0.2f, .transform = {.kind = Transform::leave_one_out},
                                 .per_dimension_mean = true};
  const d2r::PgOptions<double> od{.entropy_weight = 0.2, .transform = {.kind = Transform::leave_one_out},
                                  .per_dimension_mean = true};
  const d2r::DrawKey key{.step = 3, .first_row = 2};

  // Device (float).
  d2r::Buffer<float> g_params(gpu, std::span<const float>(p.params)), g_x(gpu, std::span<const float>(p.x)),
      g_y(gpu, std::span<const float>(p.y)), g_u(gpu, std::span<const float>(p.u)),
      g_grad(gpu, static_cast<std::size_t>(P));
  d2r::CholeskyPolicyCurvature<float> cg(gpu, p.net, B);
  const d2r::MahalanobisReward<float> rg{form, std::as_const(g_u).vector()};
  if (exact) {
    cg.prepare_exact(std::as_const(g_params).vector(), std::as_const(g_x).matrix(B, D), std::as_const(g_y).matrix(B, n), rg,
                     of, g_grad.vector());
  } else {
    cg.prepare(std::as_const(g_params).vector(), std::as_const(g_x).matrix(B, D), std::as_const(g_y).matrix(B, n), rg, G,
               of, key, g_grad.vector());
  }

  // Reference (double).
  const auto params = to_double(p.params), x = to_double(p.x), y = to_double(p.y), u = to_double(p.u);
  std::vector<double> grad(static_cast<std::size_t>(P));
  d2r::CholeskyPolicyCurvature<double> cc(cpu, p.net, B);
  const d2r::MahalanobisReward<double> rc{form, {u.data(), U}};
  if (exact) {
    cc.prepare_exact({params.data(), P}, {x.data(), B, D, D}, {y.data(), B, n, n}, rc, od, {grad.data(), P});
  } else {
    cc.prepare({params.data(), P}, {x.data(), B, D, D}, {y.data(), B, n, n}, rc, G, od, key, {grad.data(), P});
  }

  const std::vector<double> rows(cc.row_loss().data, cc.row_loss().data + B);
  EXPECT_GPU_CLOSE(device_to_host(gpu, cg.row_loss().data, B), rows);
  if (!exact) {  // the same draws up to float rounding
    const std::vector<double> samples(cc.samples().data, cc.samples().data + B * G * n);
    D2R_EXPECT_CLOSE(device_to_host(gpu, cg.samples().data, B * G * n), samples, 1e-4, 1e-5);
  }
  EXPECT_GT(max_abs(grad), 1e-4);
  EXPECT_GPU_CLOSE(g_grad.to_host(), grad);

  // HVPs and mixed products along two directions, through the operator too.
  TestRng rng(5);
  d2r::Buffer<float> g_v(gpu, static_cast<std::size_t>(P)), g_hv(gpu, static_cast<std::size_t>(P)),
      g_mixed(gpu, static_cast<std::size_t>(U));
  for (int k = 0; k < 2; ++k) {
    const auto v_f = rng.vector<float>(static_cast<std::size_t>(P), -1, 1);
    const auto v = to_double(v_f);
    g_v.copy_from_host(v_f);
    std::vector<double> hv(static_cast<std::size_t>(P));
    if (k == 0) {
      cg.apply(std::as_const(g_v).vector(), g_hv.vector());
    } else {
      cg.as_operator()(std::as_const(g_v).vector(), g_hv.vector());
    }
    cc.apply({v.data(), P}, {hv.data(), P});
    EXPECT_GT(max_abs(hv), 1e-4);
    EXPECT_GPU_CLOSE(g_hv.to_host(), hv);
    std::vector<double> mixed(static_cast<std::size_t>(U));
    cg.mixed_product(std::as_const(g_v).vector(), g_mixed.vector());
    cc.mixed_product({v.data(), P}, {mixed.data(), U});
    EXPECT_GPU_CLOSE(g_mixed.to_host(), mixed);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CholeskyPolicyCurvatureGpu,
                         ::testing::Combine(::testing::Bool(),
                                            ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full)),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           const RewardForm f = std::get<1>(info.param);
                           return std::string(std::get<0>(info.param) ? "exact_" : "surrogate_") +
                                  (f == RewardForm::scalar ? "scalar" : f == RewardForm::diagonal ? "diagonal" : "full");
                         });

TEST(CholeskyPolicyCurvatureGpuErrors, HostPointersAndNonFiniteTargetsAreNamed) {
  D2R_REQUIRE_GPU();
  const Problem p(RewardForm::scalar, 7);
  const std::int64_t B = p.B, n = p.n, D = p.D, P = p.net.parameter_count();
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = kSeed});
  d2r::Buffer<float> g_params(gpu, std::span<const float>(p.params)), g_x(gpu, std::span<const float>(p.x)),
      g_u(gpu, std::span<const float>(p.u));
  const std::vector<float> sentinel(static_cast<std::size_t>(P), 4321.0f);
  d2r::Buffer<float> g_grad(gpu, std::span<const float>(sentinel));
  d2r::CholeskyPolicyCurvature<float> c(gpu, p.net, B);
  const d2r::MahalanobisReward<float> reward{RewardForm::scalar, std::as_const(g_u).vector()};
  // Host targets on the cuda backend.
  d2r::test::expect_error(
      [&] {
        c.prepare_exact(std::as_const(g_params).vector(), std::as_const(g_x).matrix(B, D), {p.y.data(), B, n, n}, reward,
                        {}, g_grad.vector());
      },
      "targets", "device or managed memory");
  // A non-finite target, found on the device.
  std::vector<float> bad = p.y;
  bad[5] = NAN;
  d2r::Buffer<float> g_bad(gpu, std::span<const float>(bad));
  d2r::test::expect_error(
      [&] {
        c.prepare(std::as_const(g_params).vector(), std::as_const(g_x).matrix(B, D), std::as_const(g_bad).matrix(B, n),
                  reward, 3, {}, {}, g_grad.vector());
      },
      "targets", "");
  EXPECT_EQ(g_grad.to_host(), sentinel);
  // double views on the cuda backend are refused at construction.
  d2r::test::expect_error([&] { d2r::CholeskyPolicyCurvature<double> d(gpu, p.net, B); }, "head", "float only");
}

}  // namespace
