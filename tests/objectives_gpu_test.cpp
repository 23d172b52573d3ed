// Objective kernels of the diagonal-Gaussian head (fused surrogate, pathwise, exact) and the
// GPU composition (unfused surrogate) against the CPU reference (double) on the same keys. The
// fused surrogate runs every reward form x transform at G <= 32 and G > 32 (several warps' worth
// of draws per row), with log_prob_clip placed in a gap of the reference's |pd·log p| values so
// that float rounding cannot move a draw across the clip, and a standardize group whose rewards
// are all equal (U = 0). Outputs go through sentinel-guarded buffers.
#include <gtest/gtest.h>

#include <algorithm>
#include <ostream>
#include <tuple>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::Transform;
using d2r::test::GuardedMatrix;
using d2r::test::TestRng;

struct DiagObjectiveCase {
  RewardForm form;
  Transform transform;
  std::int64_t B, n, G;
  bool shared;
  bool clip = false;  ///< the fused surrogate clips −pd·log p (always with Transform::none)
};

/// Readable (and deterministic: no padding bytes) names in gtest and ctest output.
void PrintTo(const DiagObjectiveCase& c, std::ostream* os) {
  *os << (c.form == RewardForm::scalar ? "scalar" : c.form == RewardForm::diagonal ? "diagonal" : "full") << "_"
      << d2r::to_string(c.transform) << "_B" << c.B << "_n" << c.n << "_G" << c.G << (c.shared ? "_shared" : "_perrow")
      << (c.clip ? "_clip" : "");
}

constexpr std::uint64_t kSeed = 77;
constexpr d2r::DrawKey kSurrogateKey{.step = 9, .first_row = 4};

class DiagObjectiveGpu : public ::testing::TestWithParam<DiagObjectiveCase> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

std::vector<float> reward_params(RewardForm form, std::int64_t d, TestRng& rng) {
  std::vector<float> p(d2r::reward_param_count(form, d));
  for (auto& v : p) v = static_cast<float>(form == RewardForm::full ? rng.uniform(-0.3, 0.3) : rng.uniform(0.3, 1.5));
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < d; ++i) p[i * (i + 1) / 2 + i] = static_cast<float>(rng.uniform(0.6, 1.2));
  return p;
}

/// One case's inputs, float values (widened to double for the reference).
struct DiagInputs {
  std::vector<float> mean, log_std, y, u;
  explicit DiagInputs(const DiagObjectiveCase& c) {
    const std::int64_t B = c.B, n = c.n, S = c.shared ? 1 : B;
    TestRng rng(static_cast<std::uint64_t>(B * 131 + n * 7 + c.G));
    mean = rng.vector<float>(B * n, -1, 1);
    log_std = rng.vector<float>(S * n, -0.7, 0.2);
    y = rng.vector<float>(B * n, -1, 1);
    u = reward_params(c.form, n, rng);
  }
};

/// Runs `call(ctx, head, rows, grad)` on the GPU (float) and the CPU (double) and compares.
template <class GpuCall, class CpuCall>
void compare(const DiagObjectiveCase& c, const DiagInputs& in, GpuCall&& gpu_call, CpuCall&& cpu_call, double rtol,
             double atol, d2r::ValueChecks checks = d2r::ValueChecks::full) {
  const std::int64_t B = c.B, n = c.n, S = c.shared ? 1 : B;
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = kSeed, .value_checks = checks}),
      cpu({.backend = d2r::Backend::cpu, .seed = kSeed, .value_checks = checks});
  const std::vector<float>& mean = in.mean;
  const std::vector<float>& log_std = in.log_std;
  const std::vector<float>& y = in.y;
  const std::vector<float>& u = in.u;
  const std::vector<double> mean_d(mean.begin(), mean.end()), ls_d(log_std.begin(), log_std.end()), y_d(y.begin(), y.end()),
      u_d(u.begin(), u.end());
  const auto P = static_cast<std::int64_t>(u.size());
  GuardedMatrix<float> d_mean(gpu, B, n), d_ls(gpu, S, n), d_y(gpu, B, n), d_u(gpu, 1, P), loss(gpu, 1, B), rew(gpu, 1, B),
      g_mean(gpu, B, n), g_ls(gpu, S, n);
  d_mean.fill(mean), d_ls.fill(log_std), d_y.fill(y), d_u.fill(u);
  gpu_call(gpu, d2r::DiagGaussian<float>{d_mean.cview(), d_ls.cview()}, d_y.cview(),
           d2r::MahalanobisReward<float>{c.form, {d_u.cview().data, P}}, d2r::ObjectiveRows<float>{loss.vector(), rew.vector()},
           d2r::DiagGaussianGrad<float>{g_mean.view(), g_ls.view()});
  std::vector<double> r_loss(B), r_rew(B), r_gm(B * n), r_gs(S * n);
  cpu_call(cpu, d2r::DiagGaussian<double>{d2r::matrix_view(mean_d.data(), B, n), d2r::matrix_view(ls_d.data(), S, n)},
           d2r::matrix_view(y_d.data(), B, n), d2r::MahalanobisReward<double>{c.form, d2r::vector_view(u_d.data(), P)},
           d2r::ObjectiveRows<double>{d2r::vector_view(r_loss.data(), B), d2r::vector_view(r_rew.data(), B)},
           d2r::DiagGaussianGrad<double>{d2r::matrix_view(r_gm.data(), B, n), d2r::matrix_view(r_gs.data(), S, n)});
  const double scale_rows = c.shared ? static_cast<double>(B) : 1.0;
  D2R_EXPECT_CLOSE(loss.values_checked(), r_loss, rtol, atol);
  D2R_EXPECT_CLOSE(rew.values_checked(), r_rew, rtol, atol * n);
  D2R_EXPECT_CLOSE(g_mean.values_checked(), r_gm, rtol, atol);
  D2R_EXPECT_CLOSE(g_ls.values_checked(), r_gs, rtol, atol * scale_rows);
}

/// A clip for the fused surrogate of case `c`: in a gap of the |pd·log p| values of the double
/// reference's own draws (same seed and key as compare's), so that no draw lies within float
/// rounding of ±clip (a fixed level such as 6 may straddle the float and double values of a
/// draw). Returned as the float both sides use.
float surrogate_clip(const DiagObjectiveCase& c, const DiagInputs& in, bool per_dimension_mean) {
  const std::int64_t B = c.B, n = c.n, G = c.G, S = c.shared ? 1 : B;
  d2r::Context cpu({.backend = d2r::Backend::cpu, .seed = kSeed});
  const std::vector<double> mean(in.mean.begin(), in.mean.end()), log_std(in.log_std.begin(), in.log_std.end());
  const d2r::DiagGaussian<double> head{d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(log_std.data(), S, n)};
  std::vector<double> samples(static_cast<std::size_t>(B * G * n)), lp(static_cast<std::size_t>(B * G));
  d2r::sample(cpu, head, G, kSurrogateKey, d2r::matrix_view(samples.data(), B * G, n));
  d2r::log_prob(cpu, head, d2r::matrix_view<const double>(samples.data(), B * G, n), d2r::matrix_view(lp.data(), B, G));
  const auto clip = static_cast<float>(d2r::test::pick_clip(lp, per_dimension_mean ? 1.0 / static_cast<double>(n) : 1.0));
  EXPECT_GT(clip, 0.0f) << "no gap for the clip";
  return clip;
}

/// The fused surrogate (cuda, float) against pg_surrogate on the cpu backend (double).
void expect_surrogate_matches(const DiagObjectiveCase& c, const DiagInputs& in,
                              d2r::ValueChecks checks = d2r::ValueChecks::full) {
  const bool pdm = c.n > 8;
  const float clip = c.clip || c.transform == Transform::none ? surrogate_clip(c, in, pdm) : 0.0f;
  const d2r::PgOptions<double> od{.entropy_weight = 0.3,
                                  .transform = {.kind = c.transform, .rbf_gamma = 0.5,
                                                .standardize_epsilon = static_cast<double>(1e-6f)},
                                  .log_prob_clip = static_cast<double>(clip),
                                  .per_dimension_mean = pdm, .normaliser_rows = c.B + 3};
  const d2r::PgOptions<float> of{0.3f, {c.transform, 0.5f, 1e-6f}, clip, pdm, od.normaliser_rows};
  compare(
      c, in,
      [&](d2r::Context& ctx, const auto& head, auto targets, const auto& reward, const auto& rows, const auto& grad) {
        d2r::pg_surrogate(ctx, head, targets, reward, c.G, of, kSurrogateKey, rows, grad);
      },
      [&](d2r::Context& ctx, const auto& head, auto targets, const auto& reward, const auto& rows, const auto& grad) {
        d2r::pg_surrogate(ctx, head, targets, reward, c.G, od, kSurrogateKey, rows, grad);
      },
      2e-3, 2e-4, checks);
}

TEST_P(DiagObjectiveGpu, FusedSurrogateMatchesReference) {
  const auto c = GetParam();
  expect_surrogate_matches(c, DiagInputs(c));
}

/// Standardize over a group whose rewards are all equal: U = 0 (accepted with value checks off)
/// makes every reward exactly 0 on both sides, so the advantages are 0 / (0 + ε) = 0 and only the
/// entropy term remains (G > 32, clip off and on).
TEST(DiagObjectiveGpuEqualRewards, StandardizeOfEqualRewardsMatchesReference) {
  D2R_REQUIRE_GPU();
  for (const bool clip : {false, true}) {
    SCOPED_TRACE(clip ? "clip on" : "clip off");
    const DiagObjectiveCase c{RewardForm::scalar, Transform::standardize, 7, 9, 70, false, clip};
    DiagInputs in(c);
    std::fill(in.u.begin(), in.u.end(), 0.0f);
    expect_surrogate_matches(c, in, d2r::ValueChecks::none);
  }
}

TEST_P(DiagObjectiveGpu, FusedEqualsUnfusedOnTheGpu) {
  const auto c = GetParam();
  const std::int64_t B = c.B, n = c.n, G = c.G;
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = 5});
  TestRng rng(3);
  const auto u = reward_params(c.form, n, rng);
  d2r::Buffer<float> mean(gpu, rng.vector<float>(B * n, -1, 1)), ls(gpu, rng.vector<float>((c.shared ? 1 : B) * n, -0.5, 0.1)),
      y(gpu, rng.vector<float>(B * n, -1, 1)), up(gpu, u), samples(gpu, B * G * n), lp(gpu, B * G), rw(gpu, B * G), adv(gpu, B * G);
  const d2r::DiagGaussian<float> head{mean.matrix(B, n), ls.matrix(c.shared ? 1 : B, n)};
  const d2r::MahalanobisReward<float> reward{c.form, up.vector()};
  const d2r::PgOptions<float> o{.entropy_weight = 0.1f, .transform = {.kind = c.transform}};
  d2r::Buffer<float> l1(gpu, B), l2(gpu, B), gm1(gpu, B * n), gm2(gpu, B * n), gs1(gpu, head.log_std.rows * n),
      gs2(gpu, head.log_std.rows * n);
  d2r::pg_surrogate(gpu, head, y.matrix(B, n), reward, G, o, {.step = 1}, {l1.vector(), {}},
                    {gm1.matrix(B, n), gs1.matrix(head.log_std.rows, n)});
  d2r::pg_surrogate_unfused(gpu, head, y.matrix(B, n), reward, G, o, {.step = 1},
                            {samples.matrix(B * G, n), lp.matrix(B, G), rw.matrix(B, G), adv.matrix(B, G)}, {l2.vector(), {}},
                            {gm2.matrix(B, n), gs2.matrix(head.log_std.rows, n)});
  D2R_EXPECT_CLOSE(l1.to_host(), l2.to_host(), 1e-4, 1e-5);
  D2R_EXPECT_CLOSE(gm1.to_host(), gm2.to_host(), 1e-3, 1e-5);
  D2R_EXPECT_CLOSE(gs1.to_host(), gs2.to_host(), 1e-3, 1e-5 * B);
}

TEST_P(DiagObjectiveGpu, PathwiseAndExactMatchReference) {
  const auto c = GetParam();
  if (c.transform != Transform::none && c.transform != Transform::rbf) GTEST_SKIP() << "pathwise takes none or rbf only";
  const d2r::PgOptions<double> od{.entropy_weight = 0.2, .transform = {.kind = c.transform, .rbf_gamma = 0.3}};
  const d2r::PgOptions<float> of{0.2f, {c.transform, 0.3f, 1e-6f}};
  const DiagInputs in(c);
  compare(
      c, in,
      [&](d2r::Context& ctx, const auto& head, auto targets, const auto& reward, const auto& rows, const auto& grad) {
        d2r::pg_pathwise(ctx, head, targets, reward, c.G, of, {.step = 2}, rows, grad);
      },
      [&](d2r::Context& ctx, const auto& head, auto targets, const auto& reward, const auto& rows, const auto& grad) {
        d2r::pg_pathwise(ctx, head, targets, reward, c.G, od, {.step = 2}, rows, grad);
      },
      1e-3, 1e-4);
  compare(
      c, in,
      [&](d2r::Context& ctx, const auto& head, auto targets, const auto& reward, const auto& rows, const auto& grad) {
        d2r::exact_objective(ctx, head, targets, reward, of, rows, grad);
      },
      [&](d2r::Context& ctx, const auto& head, auto targets, const auto& reward, const auto& rows, const auto& grad) {
        d2r::exact_objective(ctx, head, targets, reward, od, rows, grad);
      },
      1e-4, 1e-5);
}

std::vector<DiagObjectiveCase> cases() {
  std::vector<DiagObjectiveCase> out;
  for (RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full})
    for (Transform t : {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out, Transform::standardize}) {
      out.push_back({form, t, 1, 2, 5, false});
      out.push_back({form, t, 37, 17, 16, true});
    }
  out.push_back({RewardForm::diagonal, Transform::none, 300, 128, 50, false});   // the fused kernel's widest head
  out.push_back({RewardForm::scalar, Transform::leave_one_out, 5, 200, 5, true});  // wider than fused: composition
  out.push_back({RewardForm::scalar, Transform::none, 3, 3, 1100, false});         // more draws than fused: composition
  out.push_back({RewardForm::scalar, Transform::none, 4099, 6, 1, true});
  // More than 32 draws per row (the fused kernel's group statistics span several warps' worth)
  // with every group transform, clip on and off, per-row and shared log-std, pdm on (n > 8) and off.
  out.push_back({RewardForm::diagonal, Transform::standardize, 7, 9, 70, false, true});
  out.push_back({RewardForm::scalar, Transform::standardize, 33, 5, 64, true, false});
  out.push_back({RewardForm::full, Transform::normalize, 5, 12, 40, false, true});
  out.push_back({RewardForm::diagonal, Transform::normalize, 3, 3, 33, true, false});
  out.push_back({RewardForm::scalar, Transform::leave_one_out, 6, 17, 100, true, true});
  out.push_back({RewardForm::full, Transform::leave_one_out, 9, 4, 65, false, false});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Cases, DiagObjectiveGpu, ::testing::ValuesIn(cases()));

TEST(CategoricalExactGpu, MatchesReference) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda}), cpu({.backend = d2r::Backend::cpu});
  for (RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    for (std::int64_t C : {2, 10, 200, 5000}) {
      if (form == RewardForm::full && C > d2r::kMaxOneHotFullClasses) continue;
      const std::int64_t B = 33;
      TestRng rng(static_cast<std::uint64_t>(C));
      auto logits = rng.vector<float>(B * C, -3, 3);
      logits[1] = -INFINITY;
      const auto u = reward_params(form, C, rng);
      std::vector<std::int32_t> labels(B);
      for (auto& l : labels) l = static_cast<std::int32_t>(rng.uniform(0, static_cast<double>(C) - 1e-9));
      const std::vector<double> logits_d(logits.begin(), logits.end()), u_d(u.begin(), u.end());
      const auto P = static_cast<std::int64_t>(u.size());
      GuardedMatrix<float> d_logits(gpu, B, C), d_u(gpu, 1, P), loss(gpu, 1, B), rew(gpu, 1, B), grad(gpu, B, C);
      GuardedMatrix<std::int32_t> d_labels(gpu, 1, B);
      d_logits.fill(logits), d_u.fill(u), d_labels.fill(labels);
      const d2r::PgOptions<float> of{.entropy_weight = 0.4f, .normaliser_rows = 50};
      d2r::exact_objective(gpu, d2r::Categorical<float>{d_logits.cview()}, d2r::VectorView<const std::int32_t>{d_labels.cview().data, B},
                           d2r::MahalanobisReward<float>{form, {d_u.cview().data, P}}, of, {loss.vector(), rew.vector()},
                           d2r::CategoricalGrad<float>{grad.view()});
      std::vector<double> r_loss(B), r_rew(B), r_grad(B * C);
      d2r::exact_objective(cpu, d2r::Categorical<double>{d2r::matrix_view(logits_d.data(), B, C)},
                           d2r::vector_view<const std::int32_t>(labels.data(), B),
                           d2r::MahalanobisReward<double>{form, d2r::vector_view(u_d.data(), P)},
                           d2r::PgOptions<double>{.entropy_weight = 0.4, .normaliser_rows = 50},
                           {d2r::vector_view(r_loss.data(), B), d2r::vector_view(r_rew.data(), B)},
                           d2r::CategoricalGrad<double>{d2r::matrix_view(r_grad.data(), B, C)});
      D2R_EXPECT_CLOSE(loss.values_checked(), r_loss, 1e-4, 1e-6);
      D2R_EXPECT_CLOSE(rew.values_checked(), r_rew, 1e-4, 1e-5);
      D2R_EXPECT_CLOSE(grad.values_checked(), r_grad, 1e-3, 1e-7);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- counter-keyed draws on the device
namespace {

TEST(CounterKeyedDrawsGpu, DeviceCounterEqualsThePlainStepAndHostCountersAreRejected) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = 12});
  const std::int64_t B = 300, n = 5, G = 8;
  d2r::test::TestRng rng(3);
  const auto mean = rng.vector<float>(B * n, -1, 1), log_std = rng.vector<float>(B * n, -0.5, 0.5),
             y = rng.vector<float>(B * n, -1, 1);
  d2r::Buffer<float> d_mean(gpu, mean), d_log_std(gpu, log_std), d_y(gpu, y), a(gpu, B * G * n), b(gpu, B * G * n);
  d2r::Buffer<std::int64_t> counter(gpu, std::vector<std::int64_t>{0});
  d2r::advance_counter(gpu, counter.vector(), 4);
  d2r::advance_counter(gpu, counter.vector());
  EXPECT_EQ(counter.to_host()[0], 5);
  const d2r::DiagGaussian<float> head{std::as_const(d_mean).matrix(B, n), std::as_const(d_log_std).matrix(B, n)};
  d2r::sample(gpu, head, G, {.step = 11}, a.matrix(B * G, n));
  d2r::sample(gpu, head, G, {.step = 6, .step_offset = counter.data()}, b.matrix(B * G, n));
  EXPECT_EQ(a.to_host(), b.to_host());
  std::vector<float> u{0.8f};
  d2r::Buffer<float> d_u(gpu, u), la(gpu, B), lb(gpu, B), gma(gpu, B * n), gsa(gpu, B * n), gmb(gpu, B * n),
      gsb(gpu, B * n);
  const d2r::MahalanobisReward<float> reward{d2r::RewardForm::scalar, std::as_const(d_u).vector()};
  d2r::pg_surrogate(gpu, head, std::as_const(d_y).matrix(B, n), reward, G, {.entropy_weight = 0.2f}, {.step = 11},
                    {la.vector(), {}}, {gma.matrix(B, n), gsa.matrix(B, n)});
  d2r::pg_surrogate(gpu, head, std::as_const(d_y).matrix(B, n), reward, G, {.entropy_weight = 0.2f},
                    {.step = 6, .step_offset = counter.data()}, {lb.vector(), {}}, {gmb.matrix(B, n), gsb.matrix(B, n)});
  EXPECT_EQ(la.to_host(), lb.to_host());
  EXPECT_EQ(gma.to_host(), gmb.to_host());
  EXPECT_EQ(gsa.to_host(), gsb.to_host());
  std::int64_t host_counter = 0;
  d2r::test::expect_error(
      [&] { d2r::sample(gpu, head, G, {.step = 6, .step_offset = &host_counter}, b.matrix(B * G, n)); },
      "key.step_offset", "");
}

}  // namespace
