// The fused REINFORCE surrogate of the Cholesky-Gaussian head on the cuda backend where a case of
// the registry does not reach (stays here): a shard of rows (first_row, normaliser_rows = B) gives
// the whole batch's rows and per-row gradients bit for bit. The comparisons (against the CPU
// reference in double and against the GPU composition pg_surrogate_unfused, every reward form x
// transform x tril x per_dimension_mean x clip with the clip in a gap of the reference's
// |pd·log p|, normaliser_rows 0 and > B, row_reward present and empty; determinism; G above the
// fused kernel's cap) are cases of host/checks/cases/cholesky_objectives.cpp
// (tests/checks_gpu_test.cpp, `d2r validate`).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;
using test::TestRng;

std::int64_t packed_size(std::int64_t n) { return n * (n + 1) / 2; }


/// One problem's inputs as float values (used as given on the device, widened to double on the host).
struct Inputs {
  std::vector<float> mean, targets, tril, params;

  Inputs(std::int64_t B, std::int64_t n, bool shared, RewardForm form, std::uint64_t seed) {
    TestRng rng(seed);
    const std::int64_t P = packed_size(n), tril_rows = shared ? 1 : B;
    mean = rng.vector<float>(static_cast<std::size_t>(B * n), -1.0, 1.0);
    targets = rng.vector<float>(static_cast<std::size_t>(B * n), -1.0, 1.0);
    // Well conditioned for every n: L_ii = softplus(raw) in [0.47, 1.3], |L_ij| <= 0.5/sqrt(n).
    const double off = 0.5 / std::sqrt(static_cast<double>(n));
    tril.resize(static_cast<std::size_t>(tril_rows * P));
    for (std::int64_t r = 0; r < tril_rows; ++r)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j <= i; ++j)
          tril[r * P + i * (i + 1) / 2 + j] =
              static_cast<float>(i == j ? rng.uniform(-0.5, 1.0) : rng.uniform(-off, off));
    params.resize(static_cast<std::size_t>(reward_param_count(form, n)));
    if (form == RewardForm::full) {
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j <= i; ++j)
          params[i * (i + 1) / 2 + j] = static_cast<float>(i == j ? rng.uniform(0.5, 1.5) : rng.uniform(-off, off));
    } else {
      for (auto& u : params) u = static_cast<float>(rng.uniform(0.2, 2.0));
    }
  }
};

/// A shard (first_row = r0, normaliser_rows = B) gives the rows and the per-row gradients of the
/// whole batch: the draws continue the whole batch's stream.
TEST(CholeskySurrogateGpuShards, ShardMatchesWholeBatch) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda, .seed = 34});
  const std::int64_t B = 9, n = 6, G = 12, P = packed_size(n), r0 = 3, r1 = 7;
  const Inputs in(B, n, false, RewardForm::full, 5);
  GuardedMatrix<float> mean_g(gpu, B, n), targets_g(gpu, B, n), tril_g(gpu, B, P), params_g(gpu, 1, P);
  mean_g.fill(in.mean);
  targets_g.fill(in.targets);
  tril_g.fill(in.tril);
  params_g.fill(in.params);
  const CholeskyGaussian<float> head{mean_g.cview(), tril_g.cview(), 1e-4f};
  const MahalanobisReward<float> reward{RewardForm::full, {params_g.cview().data, P}};
  const PgOptions<float> opt{.entropy_weight = 0.5f, .transform = {.kind = Transform::leave_one_out},
                             .normaliser_rows = B};
  GuardedMatrix<float> loss(gpu, 1, B), gm(gpu, B, n), gt(gpu, B, P);
  pg_surrogate(gpu, head, targets_g.cview(), reward, G, opt, {.step = 4}, {loss.vector(), {}}, {gm.view(), gt.view()});
  const std::int64_t m = r1 - r0;
  const CholeskyGaussian<float> shard{head.mean.row_range(r0, m), head.tril.row_range(r0, m), head.jitter};
  GuardedMatrix<float> loss_s(gpu, 1, m), gm_s(gpu, m, n), gt_s(gpu, m, P);
  pg_surrogate(gpu, shard, targets_g.cview().row_range(r0, m), reward, G, opt, {.step = 4, .first_row = r0},
               {loss_s.vector(), {}}, {gm_s.view(), gt_s.view()});
  const std::vector<float> l = loss.values_checked(), a = gm.values_checked(), t = gt.values_checked();
  EXPECT_EQ(loss_s.values_checked(), std::vector<float>(l.begin() + r0, l.begin() + r1));
  EXPECT_EQ(gm_s.values_checked(), std::vector<float>(a.begin() + r0 * n, a.begin() + r1 * n));
  EXPECT_EQ(gt_s.values_checked(), std::vector<float>(t.begin() + r0 * P, t.begin() + r1 * P));
}

}  // namespace
}  // namespace d2r
