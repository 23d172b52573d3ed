// The categorical policy curvature on the cuda backend on bad input (host pointers, labels out of
// range): named, grad untouched. Stays a bespoke test (error paths). The comparison against the
// cpu backend in double (kept draws exactly, advantages, cotangents, per-row losses, gradient,
// HVPs also through the operator, mixed products; a tanh and a relu trunk and a logistic
// regression, every one-hot reward form, three transforms, and prepare_exact) is the
// curvature.kept_state_and_products cases of host/checks/cases/curvature.cpp
// (tests/checks_gpu_test.cpp, `d2r validate`).
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

enum class Trunk { tanh2, relu1, logistic };

d2r::MlpSpec spec_of(Trunk t) {
  switch (t) {
    case Trunk::tanh2: return {.inputs = 6, .hidden = {16, 8}, .outputs = 7, .activation = d2r::Activation::tanh};
    case Trunk::relu1: return {.inputs = 6, .hidden = {16}, .outputs = 7, .activation = d2r::Activation::relu};
    case Trunk::logistic: return {.inputs = 6, .hidden = {}, .outputs = 7};
  }
  return {};
}

double dyadic(TestRng& rng, double lo, double hi) { return std::round(rng.uniform(lo, hi) * 8) / 8; }

std::vector<float> reward_params(RewardForm form, std::int64_t C, TestRng& rng) {
  std::vector<float> p(static_cast<std::size_t>(d2r::reward_param_count(form, C)));
  for (auto& v : p) v = static_cast<float>(form == RewardForm::full ? dyadic(rng, -0.375, 0.375) : dyadic(rng, 0.25, 1.5));
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < C; ++i) p[static_cast<std::size_t>(i * (i + 1) / 2 + i)] = static_cast<float>(dyadic(rng, 0.5, 1.25));
  return p;
}


constexpr std::uint64_t kSeed = 31;

/// One problem, in float for the device and widened to double for the reference.
struct Problem {
  std::int64_t B = 33, C = 7, G = 5, D = 6;
  d2r::Mlp net;
  std::vector<float> params, x, u;
  std::vector<std::int32_t> labels;
  RewardForm form;
  Problem(Trunk t, RewardForm f, std::uint64_t seed) : net(spec_of(t)), form(f) {
    TestRng rng(seed);
    params.resize(static_cast<std::size_t>(net.parameter_count()));
    d2r::Context init({.backend = d2r::Backend::cpu});
    net.init<float>(init, d2r::vector_view(params.data(), net.parameter_count()), seed);
    for (auto& v : params) v *= 1.5f;  // logits away from uniform
    x = rng.vector<float>(static_cast<std::size_t>(B * D), -1.5, 1.5);
    labels.resize(static_cast<std::size_t>(B));
    for (auto& l : labels) l = static_cast<std::int32_t>(std::min<double>(rng.uniform(0, double(C)), double(C - 1)));
    u = reward_params(f, C, rng);
  }
};

TEST(CategoricalPolicyCurvatureGpuErrors, HostPointersAndBadLabelsAreNamed) {
  D2R_REQUIRE_GPU();
  const Problem p(Trunk::logistic, RewardForm::scalar, 7);
  const std::int64_t B = p.B, D = p.D, P = p.net.parameter_count();
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = kSeed});
  d2r::Buffer<float> g_params(gpu, std::span<const float>(p.params)), g_x(gpu, std::span<const float>(p.x)),
      g_u(gpu, std::span<const float>(p.u));
  const std::vector<float> sentinel(static_cast<std::size_t>(P), 4321.0f);
  d2r::Buffer<float> g_grad(gpu, std::span<const float>(sentinel));
  d2r::CategoricalPolicyCurvature<float> c(gpu, p.net, B);
  const d2r::MahalanobisReward<float> reward{RewardForm::scalar, std::as_const(g_u).vector()};
  const d2r::PgOptions<float> o{.entropy_weight = 0.1f};
  // Host labels on the cuda backend.
  d2r::test::expect_error(
      [&] {
        c.prepare(std::as_const(g_params).vector(), std::as_const(g_x).matrix(B, D), {p.labels.data(), B}, reward, 3, o,
                  {}, g_grad.vector());
      },
      "labels", "device or managed memory");
  // Host params.
  d2r::Buffer<std::int32_t> g_labels(gpu, std::span<const std::int32_t>(p.labels));
  d2r::test::expect_error(
      [&] {
        c.prepare({p.params.data(), P}, std::as_const(g_x).matrix(B, D), std::as_const(g_labels).vector(), reward, 3, o,
                  {}, g_grad.vector());
      },
      "params", "device or managed memory");
  // A label out of range, found on the device.
  std::vector<std::int32_t> bad = p.labels;
  bad[B - 1] = static_cast<std::int32_t>(p.C);
  d2r::Buffer<std::int32_t> g_bad(gpu, std::span<const std::int32_t>(bad));
  d2r::test::expect_error(
      [&] {
        c.prepare(std::as_const(g_params).vector(), std::as_const(g_x).matrix(B, D), std::as_const(g_bad).vector(), reward,
                  3, o, {}, g_grad.vector());
      },
      "labels", "class index in [0, 7)");
  EXPECT_EQ(g_grad.to_host(), sentinel);
  // double views on the cuda backend are refused at construction.
  d2r::test::expect_error([&] { d2r::CategoricalPolicyCurvature<double> d(gpu, p.net, B); }, "head", "float only");
}

}  // namespace
