// The categorical policy curvature (MLP + categorical head, REINFORCE surrogate) on the cuda
// backend in float against the cpu backend in double, on the same parameters, inputs, labels,
// reward and key: the kept samples (draw for draw), advantages and per-row losses, prepare's
// gradient, HVPs along random directions and the mixed product, for a tanh and a relu trunk and
// a logistic regression, every one-hot reward form and three transforms; then bad input on the
// device (host pointers, labels out of range) named and leaving grad untouched. Each test skips
// when no CUDA device is usable.
//
// Reward parameters are dyadic (multiples of 1/8), so one-hot rewards and their group sums are
// exact in float: a group of equal rewards standardises to exactly 0 on both sides.
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

const char* trunk_name(Trunk t) {
  switch (t) {
    case Trunk::tanh2: return "tanh_6_16_8_7";
    case Trunk::relu1: return "relu_6_16_7";
    case Trunk::logistic: return "logistic_6_7";
  }
  return "?";
}
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
#define EXPECT_GPU_CLOSE(actual, expected) D2R_EXPECT_CLOSE(actual, expected, 1e-3, 1e-6 + 2e-4 * max_abs(expected))

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

using Case = std::tuple<Trunk, RewardForm, Transform>;
class CategoricalPolicyCurvatureGpu : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

TEST_P(CategoricalPolicyCurvatureGpu, MatchesCpuDouble) {
  const auto [trunk, form, transform] = GetParam();
  const Problem p(trunk, form, 100 + static_cast<std::uint64_t>(trunk) * 10 + static_cast<std::uint64_t>(form));
  const std::int64_t B = p.B, G = p.G, D = p.D, P = p.net.parameter_count();
  const auto U = static_cast<std::int64_t>(p.u.size());
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = kSeed});
  d2r::Context cpu({.backend = d2r::Backend::cpu, .seed = kSeed});
  // standardize with ε = 0.1: a group of equal rewards (s = 0) has ∂A/∂r = (I − 11ᵀ/G)/ε, and
  // for a scalar β the mixed product sums that against a uniform ∂r/∂β, so float roundoff in the
  // centring is amplified by 1/ε (with the default 1e-6, about 1e-2 where double gives 1e-7 on
  // either backend): a conditioning property of the transform, not a backend difference.
  const d2r::PgOptions<float> of{.entropy_weight = 0.25f, .transform = {.kind = transform, .standardize_epsilon = 0.1f}};
  const d2r::PgOptions<double> od{.entropy_weight = 0.25, .transform = {.kind = transform, .standardize_epsilon = 0.1}};
  const d2r::DrawKey key{.step = 9, .first_row = 4};

  // Device (float).
  d2r::Buffer<float> g_params(gpu, std::span<const float>(p.params)), g_x(gpu, std::span<const float>(p.x)),
      g_u(gpu, std::span<const float>(p.u)), g_grad(gpu, static_cast<std::size_t>(P));
  d2r::Buffer<std::int32_t> g_labels(gpu, std::span<const std::int32_t>(p.labels));
  d2r::CategoricalPolicyCurvature<float> cg(gpu, p.net, B);
  cg.prepare(std::as_const(g_params).vector(), std::as_const(g_x).matrix(B, D), std::as_const(g_labels).vector(),
             {form, std::as_const(g_u).vector()}, G, of, key, g_grad.vector());

  // Reference (double).
  const auto params = to_double(p.params), x = to_double(p.x), u = to_double(p.u);
  std::vector<double> grad(static_cast<std::size_t>(P));
  d2r::CategoricalPolicyCurvature<double> cc(cpu, p.net, B);
  cc.prepare({params.data(), P}, {x.data(), B, D, D}, {p.labels.data(), B}, {form, {u.data(), U}}, G, od, key,
             {grad.data(), P});

  // Same draws (no uniform lies within float rounding of a CDF boundary for these inputs).
  const auto samples = device_to_host(gpu, cg.samples().data, B * G);
  std::int64_t mismatches = 0;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t g = 0; g < G; ++g) mismatches += samples[b * G + g] != cc.samples()(b, g);
  ASSERT_EQ(mismatches, 0) << "GPU float and CPU double draws differ";

  const std::vector<double> adv(cc.advantages().data, cc.advantages().data + B * G);
  const std::vector<double> rows(cc.row_loss().data, cc.row_loss().data + B);
  const std::vector<double> dlp(cc.log_prob_cotangent().data, cc.log_prob_cotangent().data + B * G);
  D2R_EXPECT_CLOSE(device_to_host(gpu, cg.advantages().data, B * G), adv, 1e-5, 1e-5);
  D2R_EXPECT_CLOSE(device_to_host(gpu, cg.log_prob_cotangent().data, B * G), dlp, 1e-5, 1e-7);
  EXPECT_GPU_CLOSE(device_to_host(gpu, cg.row_loss().data, B), rows);
  EXPECT_GPU_CLOSE(g_grad.to_host(), grad);

  // HVPs along two directions, through the operator too.
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
    EXPECT_GT(max_abs(hv), 1e-3);
    EXPECT_GPU_CLOSE(g_hv.to_host(), hv);
    // Mixed product along the same direction.
    std::vector<double> mixed(static_cast<std::size_t>(U));
    cg.mixed_product(std::as_const(g_v).vector(), g_mixed.vector());
    cc.mixed_product({v.data(), P}, {mixed.data(), U});
    EXPECT_GPU_CLOSE(g_mixed.to_host(), mixed);
  }
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const RewardForm f = std::get<1>(info.param);
  const char* fs = f == RewardForm::scalar ? "scalar" : f == RewardForm::diagonal ? "diagonal" : "full";
  return std::string(trunk_name(std::get<0>(info.param))) + "_" + fs + "_" + d2r::to_string(std::get<2>(info.param));
}

INSTANTIATE_TEST_SUITE_P(Cases, CategoricalPolicyCurvatureGpu,
                         ::testing::Combine(::testing::Values(Trunk::tanh2, Trunk::relu1, Trunk::logistic),
                                            ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                                            ::testing::Values(Transform::none, Transform::leave_one_out,
                                                              Transform::standardize)),
                         case_name);

/// prepare_exact (exact-expectation curvature): gradient, per-row losses, HVPs and mixed products
/// on the device against the cpu backend in double, every trunk and reward form.
TEST(CategoricalPolicyCurvatureExactGpu, MatchesCpuDouble) {
  D2R_REQUIRE_GPU();
  for (const Trunk trunk : {Trunk::tanh2, Trunk::relu1, Trunk::logistic}) {
    for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
      SCOPED_TRACE(std::string(trunk_name(trunk)) + " form " + std::to_string(static_cast<int>(form)));
      const Problem p(trunk, form, 300 + static_cast<std::uint64_t>(trunk) * 10 + static_cast<std::uint64_t>(form));
      const std::int64_t B = p.B, D = p.D, P = p.net.parameter_count();
      const auto U = static_cast<std::int64_t>(p.u.size());
      d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = kSeed});
      d2r::Context cpu({.backend = d2r::Backend::cpu, .seed = kSeed});
      const d2r::PgOptions<float> of{.entropy_weight = 0.25f};
      const d2r::PgOptions<double> od{.entropy_weight = 0.25};
      d2r::Buffer<float> g_params(gpu, std::span<const float>(p.params)), g_x(gpu, std::span<const float>(p.x)),
          g_u(gpu, std::span<const float>(p.u)), g_grad(gpu, static_cast<std::size_t>(P));
      d2r::Buffer<std::int32_t> g_labels(gpu, std::span<const std::int32_t>(p.labels));
      d2r::CategoricalPolicyCurvature<float> cg(gpu, p.net, B);
      cg.prepare_exact(std::as_const(g_params).vector(), std::as_const(g_x).matrix(B, D), std::as_const(g_labels).vector(),
                       {form, std::as_const(g_u).vector()}, of, g_grad.vector());
      const auto params = to_double(p.params), x = to_double(p.x), u = to_double(p.u);
      std::vector<double> grad(static_cast<std::size_t>(P));
      d2r::CategoricalPolicyCurvature<double> cc(cpu, p.net, B);
      cc.prepare_exact({params.data(), P}, {x.data(), B, D, D}, {p.labels.data(), B}, {form, {u.data(), U}}, od,
                       {grad.data(), P});
      const std::vector<double> rows(cc.row_loss().data, cc.row_loss().data + B);
      EXPECT_GPU_CLOSE(device_to_host(gpu, cg.row_loss().data, B), rows);
      EXPECT_GPU_CLOSE(g_grad.to_host(), grad);
      TestRng rng(6);
      d2r::Buffer<float> g_v(gpu, static_cast<std::size_t>(P)), g_hv(gpu, static_cast<std::size_t>(P)),
          g_mixed(gpu, static_cast<std::size_t>(U));
      for (int k = 0; k < 2; ++k) {
        const auto v_f = rng.vector<float>(static_cast<std::size_t>(P), -1, 1);
        const auto v = to_double(v_f);
        g_v.copy_from_host(v_f);
        std::vector<double> hv(static_cast<std::size_t>(P)), mixed(static_cast<std::size_t>(U));
        cg.apply(std::as_const(g_v).vector(), g_hv.vector());
        cc.apply({v.data(), P}, {hv.data(), P});
        EXPECT_GT(max_abs(hv), 1e-4);
        EXPECT_GPU_CLOSE(g_hv.to_host(), hv);
        cg.mixed_product(std::as_const(g_v).vector(), g_mixed.vector());
        cc.mixed_product({v.data(), P}, {mixed.data(), U});
        EXPECT_GPU_CLOSE(g_mixed.to_host(), mixed);
      }
    }
  }
}

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
