// The diagonal-Gaussian policy curvature on the cuda backend on bad input (host pointers,
// non-finite targets found on the device, apply before prepare, double on cuda): named, grad
// untouched. Stays a bespoke test (error paths). The comparison against the cpu backend in double
// (prepare's kept samples, advantages, cotangents and per-row losses, its gradient, HVPs also
// through the operator and again after another direction, the mixed product; surrogate per
// transform and per_dimension_mean, exact, every reward form; strided guarded views) is the
// curvature.kept_state_and_products cases of host/checks/cases/curvature.cpp
// (tests/checks_gpu_test.cpp, `d2r validate`). Each test skips when no CUDA device is usable.
#include <fmt/format.h>
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
using d2r::test::GuardedMatrix;
using d2r::test::TestRng;

std::vector<float> reward_params(RewardForm form, std::int64_t n, TestRng& rng) {
  std::vector<float> p(static_cast<std::size_t>(d2r::reward_param_count(form, n)));
  for (auto& v : p) v = static_cast<float>(form == RewardForm::full ? rng.uniform(-0.3, 0.3) : rng.uniform(0.3, 1.3));
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < n; ++i) p[static_cast<std::size_t>(i * (i + 1) / 2 + i)] = static_cast<float>(rng.uniform(0.6, 1.2));
  return p;
}

constexpr std::uint64_t kSeed = 43;

/// One problem, in float for the device and widened to double for the reference.
struct Problem {
  std::int64_t B = 29, n = 3, G = 7, D = 5;
  d2r::Mlp net;
  std::vector<float> params, x, y, u;
  RewardForm form;
  Problem(RewardForm f, std::uint64_t seed)
      : net({.inputs = 5, .hidden = {13, 7}, .outputs = 2 * 3, .activation = d2r::Activation::tanh}), form(f) {
    TestRng rng(seed);
    params.resize(static_cast<std::size_t>(net.parameter_count()));
    d2r::Context init({.backend = d2r::Backend::cpu});
    net.init<float>(init, d2r::vector_view(params.data(), net.parameter_count()), seed);
    x = rng.vector<float>(static_cast<std::size_t>(B * D), -1.5, 1.5);
    y = rng.vector<float>(static_cast<std::size_t>(B * n), -1.0, 1.0);
    u = reward_params(f, n, rng);
  }
};

/// A read-only vector view of a guarded 1 x N buffer.
d2r::VectorView<const float> const_vector(const GuardedMatrix<float>& m, std::int64_t size) {
  return {m.cview().data, size};
}

TEST(DiagPolicyCurvatureGpuErrors, HostPointersAndNonFiniteTargetsAreNamed) {
  D2R_REQUIRE_GPU();
  const Problem p(RewardForm::scalar, 7);
  const std::int64_t B = p.B, n = p.n, D = p.D, P = p.net.parameter_count();
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = kSeed});
  GuardedMatrix<float> g_params(gpu, 1, P), g_x(gpu, B, D), g_y(gpu, B, n), g_u(gpu, 1, 1), g_grad(gpu, 1, P);
  g_params.fill(p.params);
  g_x.fill(p.x);
  g_y.fill(p.y);
  g_u.fill(p.u);
  d2r::DiagGaussianPolicyCurvature<float> c(gpu, p.net, B);
  const d2r::MahalanobisReward<float> reward{RewardForm::scalar, const_vector(g_u, 1)};
  // Host targets on the cuda backend.
  d2r::test::expect_error(
      [&] { c.prepare_exact(const_vector(g_params, P), g_x.cview(), {p.y.data(), B, n, n}, reward, {}, g_grad.vector()); },
      "targets", "device or managed memory");
  // Host params.
  d2r::test::expect_error(
      [&] { c.prepare({p.params.data(), P}, g_x.cview(), g_y.cview(), reward, 3, {}, {}, g_grad.vector()); }, "params",
      "device or managed memory");
  // A non-finite target, found on the device.
  std::vector<float> bad = p.y;
  bad[5] = NAN;
  GuardedMatrix<float> g_bad(gpu, B, n);
  g_bad.fill(bad);
  d2r::test::expect_error(
      [&] { c.prepare(const_vector(g_params, P), g_x.cview(), g_bad.cview(), reward, 3, {}, {}, g_grad.vector()); },
      "targets", "");
  EXPECT_TRUE(g_grad.untouched()) << "grad was written by a call that failed its checks";
  // apply() before a successful prepare().
  GuardedMatrix<float> g_v(gpu, 1, P), g_hv(gpu, 1, P);
  g_v.fill(std::vector<float>(static_cast<std::size_t>(P), 1.0f));
  d2r::test::expect_error([&] { c.apply(const_vector(g_v, P), g_hv.vector()); }, "this", "prepare() must succeed");
  EXPECT_TRUE(g_hv.untouched());
  // double views on the cuda backend are refused at construction.
  d2r::test::expect_error([&] { d2r::DiagGaussianPolicyCurvature<double> d(gpu, p.net, B); }, "head", "float only");
}

}  // namespace
