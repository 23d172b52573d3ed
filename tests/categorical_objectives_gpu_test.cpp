// The categorical head's fused surrogate on the cuda backend where a case of the registry does
// not reach (stays here): a shard of rows gives the whole batch's rows and gradient rows bit for
// bit, and with value checks off a row without a distribution gets NaN written (never the
// sentinel) while the other rows are unchanged. The comparisons (fused against the double
// composition on the tested draws, against the reference on the rows whose draws agree, against
// pg_surrogate_unfused; draws under the 1e-6·Z window; every form, transform and clip; the special
// rows; the G cap; determinism) are cases of host/checks/cases/categorical_objectives.cpp
// (tests/checks_gpu_test.cpp, `d2r validate`).
//
// Reward parameters are dyadic (multiples of 1/8), so rewards and their group sums are exact in float.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;
using test::TestRng;






/// Float-representable logits in [-4, 4], about 10% masked, never a whole row; with B >= 5 the
/// special rows: 1 a single unmasked class, 2 a masked label, 3 a whole masked 2048-tile (C >
/// 4096) and masked first and last classes, 4 a peaked row.
struct Problem {
  std::int64_t B, C;
  std::vector<float> logits;
  std::vector<std::int32_t> labels;

  Problem(std::int64_t batch, std::int64_t classes, std::uint64_t seed) : B(batch), C(classes) {
    TestRng rng(seed);
    logits.resize(static_cast<std::size_t>(B * C));
    labels.resize(static_cast<std::size_t>(B));
    const float ninf = -std::numeric_limits<float>::infinity();
    for (std::int64_t b = 0; b < B; ++b) {
      labels[b] = static_cast<std::int32_t>(std::min<double>(rng.uniform(0, static_cast<double>(C)), C - 1));
      bool any = false;
      for (std::int64_t j = 0; j < C; ++j) {
        const bool masked = rng.uniform(0, 1) < 0.1;
        logits[b * C + j] = masked ? ninf : static_cast<float>(rng.uniform(-4, 4));
        any = any || !masked;
      }
      if (!any) logits[b * C + C / 2] = 0.5f;
    }
    if (B < 5) return;
    float* r1 = &logits[1 * C];
    const std::int64_t only = C / 3;
    for (std::int64_t j = 0; j < C; ++j) r1[j] = j == only ? 1.25f : ninf;
    float* r2 = &logits[2 * C];
    r2[labels[2]] = ninf;
    if (std::none_of(r2, r2 + C, [](float x) { return std::isfinite(x); })) r2[(labels[2] + 1) % C] = 0.0f;
    float* r3 = &logits[3 * C];
    if (C > 4096)
      for (std::int64_t j = 2048; j < 4096; ++j) r3[j] = ninf;
    r3[0] = ninf;
    r3[C - 1] = ninf;
    if (std::none_of(r3, r3 + C, [](float x) { return std::isfinite(x); })) r3[C / 2] = 0.0f;
    logits[4 * C + (C * 2) / 3] = 15.0f;
  }
};

/// Dyadic reward parameters (multiples of 1/8): U = u·I, diag(U), or R with R_ii in [0.5, 1.25].
std::vector<float> reward_params(RewardForm form, std::int64_t C, TestRng& rng) {
  std::vector<float> p(static_cast<std::size_t>(reward_param_count(form, C)));
  const auto dyadic = [&](double lo, double hi) { return static_cast<float>(std::round(rng.uniform(lo, hi) * 8) / 8); };
  if (form == RewardForm::full) {
    for (std::int64_t i = 0; i < C; ++i)
      for (std::int64_t j = 0; j <= i; ++j)
        p[i * (i + 1) / 2 + j] = i == j ? dyadic(0.5, 1.25) : (rng.uniform(0, 1) < 0.3 ? dyadic(-0.25, 0.25) : 0.0f);
  } else {
    for (auto& v : p) v = dyadic(0.25, 2.0);
  }
  return p;
}

/// A problem on the device: strided logits, labels, reward parameters.
struct DeviceProblem {
  GuardedMatrix<float> logits;
  GuardedMatrix<std::int32_t> labels;
  GuardedMatrix<float> params;
  std::int64_t B, C, P;
  RewardForm form;

  DeviceProblem(Context& gpu, const Problem& p, RewardForm f, const std::vector<float>& u)
      : logits(gpu, p.B, p.C), labels(gpu, 1, p.B), params(gpu, 1, static_cast<std::int64_t>(u.size())), B(p.B),
        C(p.C), P(static_cast<std::int64_t>(u.size())), form(f) {
    logits.fill(p.logits);
    labels.fill(p.labels);
    params.fill(u);
  }
  [[nodiscard]] Categorical<float> head() const { return {logits.cview()}; }
  [[nodiscard]] VectorView<const std::int32_t> label_view() const { return {labels.cview().data, B}; }
  [[nodiscard]] MahalanobisReward<float> reward() const { return {form, {params.cview().data, P}}; }
};

/// Outputs of one objective call on the device, in guarded buffers.
struct DeviceOutputs {
  GuardedMatrix<float> loss, reward, grad;
  bool with_reward;
  DeviceOutputs(Context& gpu, std::int64_t B, std::int64_t C, bool r)
      : loss(gpu, 1, B), reward(gpu, 1, B), grad(gpu, B, C), with_reward(r) {}
  [[nodiscard]] ObjectiveRows<float> rows() { return {loss.vector(), with_reward ? reward.vector() : VectorView<float>{}}; }
  [[nodiscard]] CategoricalGrad<float> g() { return {grad.view()}; }
};

struct Values {
  std::vector<float> loss, reward, grad;
};

Values read(const DeviceOutputs& out) {
  Values v{out.loss.values_checked(), {}, out.grad.values_checked()};
  if (out.with_reward) {
    v.reward = out.reward.values_checked();
  } else {
    EXPECT_TRUE(out.reward.untouched()) << "row_reward was empty but its buffer was written";
  }
  return v;
}

/// A shard (first_row = r0, normaliser_rows = B) gives the whole batch's rows and gradient rows,
/// bit for bit: the draws continue the whole batch's stream.
TEST(CategoricalSurrogateGpuShards, ShardMatchesWholeBatch) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda, .seed = 8});
  const std::int64_t B = 9, C = 3000, G = 50, r0 = 3, m = 4;
  const Problem p(B, C, 4);
  TestRng rng(2);
  const DeviceProblem dp(gpu, p, RewardForm::diagonal, reward_params(RewardForm::diagonal, C, rng));
  const PgOptions<float> opt{.entropy_weight = 0.5f, .transform = {.kind = Transform::leave_one_out}, .normaliser_rows = B};
  DeviceOutputs whole(gpu, B, C, true), shard(gpu, m, C, true);
  pg_surrogate(gpu, dp.head(), dp.label_view(), dp.reward(), G, opt, {.step = 4}, whole.rows(), whole.g());
  const VectorView<const std::int32_t> labels = dp.label_view();
  pg_surrogate(gpu, Categorical<float>{dp.head().logits.row_range(r0, m)},
               VectorView<const std::int32_t>{labels.data + r0, m}, dp.reward(), G, opt, {.step = 4, .first_row = r0},
               shard.rows(), shard.g());
  const Values w = read(whole), sh = read(shard);
  EXPECT_EQ(sh.loss, std::vector<float>(w.loss.begin() + r0, w.loss.begin() + r0 + m));
  EXPECT_EQ(sh.reward, std::vector<float>(w.reward.begin() + r0, w.reward.begin() + r0 + m));
  EXPECT_TRUE(sh.grad == std::vector<float>(w.grad.begin() + r0 * C, w.grad.begin() + (r0 + m) * C));
}

/// With value checks off a row without a distribution (all -inf) gets NaN loss, reward and
/// gradient; the other rows are exactly those of a batch where that row is valid.
TEST(CategoricalSurrogateGpuChecksOff, RowWithoutDistributionIsNaN) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda, .seed = 3, .value_checks = ValueChecks::none});
  const std::int64_t B = 4, C = 5000, G = 20, bad = 2;
  Problem p(B, C, 6);
  TestRng rng(1);
  const std::vector<float> u = reward_params(RewardForm::scalar, C, rng);
  const PgOptions<float> opt{.entropy_weight = 0.2f, .transform = {.kind = Transform::rbf}};
  const DeviceProblem valid(gpu, p, RewardForm::scalar, u);
  DeviceOutputs ok(gpu, B, C, true);
  pg_surrogate(gpu, valid.head(), valid.label_view(), valid.reward(), G, opt, {.step = 2}, ok.rows(), ok.g());
  for (std::int64_t j = 0; j < C; ++j) p.logits[bad * C + j] = -std::numeric_limits<float>::infinity();
  const DeviceProblem masked(gpu, p, RewardForm::scalar, u);
  DeviceOutputs out(gpu, B, C, true);
  pg_surrogate(gpu, masked.head(), masked.label_view(), masked.reward(), G, opt, {.step = 2}, out.rows(), out.g());
  const Values a = read(ok), b = read(out);
  for (std::int64_t r = 0; r < B; ++r) {
    if (r == bad) {  // NaN written by the kernel (the never-written sentinel is a NaN too, and fails)
      EXPECT_TRUE(test::is_written_nan(b.loss[r]));
      EXPECT_TRUE(test::is_written_nan(b.reward[r]));
      EXPECT_TRUE(std::all_of(b.grad.begin() + r * C, b.grad.begin() + (r + 1) * C,
                              [](float x) { return test::is_written_nan(x); }));
      continue;
    }
    EXPECT_EQ(b.loss[r], a.loss[r]) << "row " << r;
    EXPECT_EQ(b.reward[r], a.reward[r]) << "row " << r;
    EXPECT_TRUE(std::equal(b.grad.begin() + r * C, b.grad.begin() + (r + 1) * C, a.grad.begin() + r * C)) << "row " << r;
  }
}

}  // namespace
}  // namespace d2r
