// The Cholesky-Gaussian policy curvature on the cuda backend on bad input: named, grad untouched.
// Stays a bespoke test (error paths). The comparison against the cpu backend in double (per-row
// losses, kept samples, gradient, HVPs also through the operator, mixed products; surrogate and
// exact, every reward form) is the curvature.kept_state_and_products cases of
// host/checks/cases/curvature.cpp (tests/checks_gpu_test.cpp, `d2r validate`).
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
