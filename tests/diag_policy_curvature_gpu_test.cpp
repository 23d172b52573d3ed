// The diagonal-Gaussian policy curvature (MLP + DiagGaussian head, state-dependent log-std) on the
// cuda backend in float against the cpu backend in double, on the same parameters, inputs,
// targets, reward and key: prepare's kept samples, advantages, cotangents and per-row losses, its
// gradient, HVPs along random directions (also through the operator, and again after another
// direction: the kept state is unchanged) and the mixed product, for the REINFORCE surrogate
// (samples drawn from the same Philox stream on both; transforms none, leave_one_out and
// standardize; per_dimension_mean off and on) and the exact-expectation objective (prepare_exact),
// every reward form. A non-square MLP with odd sizes (5 inputs, hidden 13 and 7, 2n = 6 outputs;
// B = 29, G = 7), strided inputs, and every output in a sentinel-guarded buffer (a write outside
// it, or an element never written, fails). Then bad input on the device named and leaving grad
// untouched. Each test skips when no CUDA device is usable.
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

const char* form_name(RewardForm f) {
  return f == RewardForm::scalar ? "scalar" : f == RewardForm::diagonal ? "diagonal" : "full";
}

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

enum class Objective { surrogate, exact };
using Case = std::tuple<Objective, RewardForm, Transform>;

class DiagPolicyCurvatureGpu : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

TEST_P(DiagPolicyCurvatureGpu, MatchesCpuDouble) {
  const auto [objective, form, transform] = GetParam();
  const bool exact = objective == Objective::exact;
  const Problem p(form, 500 + static_cast<std::uint64_t>(form) * 3 + static_cast<std::uint64_t>(transform) +
                            (exact ? 20 : 0));
  const std::int64_t B = p.B, n = p.n, G = p.G, D = p.D, P = p.net.parameter_count();
  const auto U = static_cast<std::int64_t>(p.u.size());
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = kSeed});
  d2r::Context cpu({.backend = d2r::Backend::cpu, .seed = kSeed});
  const bool pdm = transform == Transform::leave_one_out;
  // standardize with ε = 0.1: with the scalar form, A = (r − mean)/(s + ε) hardly depends on the
  // scale u of r = −u·|y − ŷ|² when ε << s, so the mixed product would be float noise around
  // ~0; with ε = 0.1 it is a tenth of its usual size, well above that noise.
  const float eps = transform == Transform::standardize ? 0.1f : 1e-6f;
  const d2r::PgOptions<float> of{.entropy_weight = 0.2f,
                                 .transform = {.kind = transform, .standardize_epsilon = eps},
                                 .per_dimension_mean = pdm};
  const d2r::PgOptions<double> od{.entropy_weight = static_cast<double>(0.2f),
                                  .transform = {.kind = transform, .standardize_epsilon = static_cast<double>(eps)},
                                  .per_dimension_mean = pdm};
  const d2r::DrawKey key{.step = 5, .first_row = 3};

  // Device (float): strided x and targets, guarded everything.
  GuardedMatrix<float> g_params(gpu, 1, P), g_x(gpu, B, D), g_y(gpu, B, n), g_u(gpu, 1, U), g_grad(gpu, 1, P);
  g_params.fill(p.params);
  g_x.fill(p.x);
  g_y.fill(p.y);
  g_u.fill(p.u);
  d2r::DiagGaussianPolicyCurvature<float> cg(gpu, p.net, B);
  const d2r::MahalanobisReward<float> rg{form, const_vector(g_u, U)};
  if (exact) {
    cg.prepare_exact(const_vector(g_params, P), g_x.cview(), g_y.cview(), rg, of, g_grad.vector());
  } else {
    cg.prepare(const_vector(g_params, P), g_x.cview(), g_y.cview(), rg, G, of, key, g_grad.vector());
  }

  // Reference (double).
  const auto params = to_double(p.params), x = to_double(p.x), y = to_double(p.y), u = to_double(p.u);
  std::vector<double> grad(static_cast<std::size_t>(P));
  d2r::DiagGaussianPolicyCurvature<double> cc(cpu, p.net, B);
  const d2r::MahalanobisReward<double> rc{form, {u.data(), U}};
  if (exact) {
    cc.prepare_exact({params.data(), P}, {x.data(), B, D, D}, {y.data(), B, n, n}, rc, od, {grad.data(), P});
  } else {
    cc.prepare({params.data(), P}, {x.data(), B, D, D}, {y.data(), B, n, n}, rc, G, od, key, {grad.data(), P});
  }

  // What prepare kept.
  const std::vector<double> rows(cc.row_loss().data, cc.row_loss().data + B);
  EXPECT_GT(max_abs(rows), 1e-4);
  EXPECT_GPU_CLOSE(device_to_host(gpu, cg.row_loss().data, B), rows);
  if (!exact) {
    // The same draws up to float rounding, then what was computed from them.
    const std::vector<double> samples(cc.samples().data, cc.samples().data + B * G * n);
    D2R_EXPECT_CLOSE(device_to_host(gpu, cg.samples().data, B * G * n), samples, 1e-4, 1e-5);
    const std::vector<double> adv(cc.advantages().data, cc.advantages().data + B * G);
    const std::vector<double> dlp(cc.log_prob_cotangent().data, cc.log_prob_cotangent().data + B * G);
    const std::vector<double> dent(cc.entropy_cotangent().data, cc.entropy_cotangent().data + B);
    EXPECT_GT(max_abs(adv), 1e-3);
    D2R_EXPECT_CLOSE(device_to_host(gpu, cg.advantages().data, B * G), adv, 1e-3, 1e-4 * max_abs(adv));
    D2R_EXPECT_CLOSE(device_to_host(gpu, cg.log_prob_cotangent().data, B * G), dlp, 1e-3, 1e-4 * max_abs(dlp));
    D2R_EXPECT_CLOSE(device_to_host(gpu, cg.entropy_cotangent().data, B), dent, 1e-5, 1e-7);
  }
  EXPECT_GT(max_abs(grad), 1e-4);
  EXPECT_GPU_CLOSE(g_grad.values_checked(), grad);

  // HVPs and mixed products along two directions (the second through the operator), then the
  // first again: the same bits (an apply leaves the kept state as it was).
  std::vector<float> first_hv;
  for (int k = 0; k < 3; ++k) {
    SCOPED_TRACE(fmt::format("direction {}", k));
    TestRng rng(k == 1 ? 12 : 11);  // k = 2 repeats the direction of k = 0
    const auto v_f = rng.vector<float>(static_cast<std::size_t>(P), -1, 1);
    const auto v = to_double(v_f);
    GuardedMatrix<float> g_v(gpu, 1, P), g_hv(gpu, 1, P), g_mixed(gpu, 1, U);
    g_v.fill(v_f);
    if (k == 1) {
      cg.as_operator()(const_vector(g_v, P), g_hv.vector());
    } else {
      cg.apply(const_vector(g_v, P), g_hv.vector());
    }
    const std::vector<float> hv_g = g_hv.values_checked();
    if (k == 2) {
      EXPECT_EQ(hv_g, first_hv) << "apply after another direction differs from the first apply";
      continue;
    }
    if (k == 0) first_hv = hv_g;
    std::vector<double> hv(static_cast<std::size_t>(P));
    cc.apply({v.data(), P}, {hv.data(), P});
    EXPECT_GT(max_abs(hv), 1e-4);
    EXPECT_GPU_CLOSE(hv_g, hv);
    std::vector<double> mixed(static_cast<std::size_t>(U));
    cg.mixed_product(const_vector(g_v, P), g_mixed.vector());
    cc.mixed_product({v.data(), P}, {mixed.data(), U});
    EXPECT_GT(max_abs(mixed), 1e-6);
    EXPECT_GPU_CLOSE(g_mixed.values_checked(), mixed);
  }
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    for (const Transform t : {Transform::none, Transform::leave_one_out, Transform::standardize})
      out.emplace_back(Objective::surrogate, form, t);
    out.emplace_back(Objective::exact, form, Transform::none);
  }
  return out;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const auto [objective, form, transform] = info.param;
  if (objective == Objective::exact) return std::string("exact_") + form_name(form);
  return std::string("surrogate_") + form_name(form) + "_" + d2r::to_string(transform);
}

INSTANTIATE_TEST_SUITE_P(Cases, DiagPolicyCurvatureGpu, ::testing::ValuesIn(cases()), case_name);

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
