// Second-order reward pieces on the cuda backend: bad input leaves the outputs untouched. The
// comparisons against the cpu backend (double) -- the transforms' vector-Jacobian products, the
// exact mixed products, the REINFORCE mixed product (samples regenerated from the same key on both)
// -- are cases of host/checks/cases/mixed_products.cpp (tests/checks_gpu_test.cpp, `d2r validate`).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "d2r/second_order.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::test::GuardedMatrix;
using d2r::test::TestRng;

std::vector<float> params_for(RewardForm form, std::int64_t d, TestRng& rng) {
  std::vector<float> p(d2r::reward_param_count(form, d));
  for (auto& v : p) v = static_cast<float>(form == RewardForm::full ? rng.uniform(-0.4, 0.4) : rng.uniform(0.3, 1.5));
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < d; ++i) p[i * (i + 1) / 2 + i] = static_cast<float>(rng.uniform(0.6, 1.2));
  return p;
}

class MixedProductGpu : public ::testing::Test {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

/// A problem in float (device) and double (reference) for one reward form.
struct GpuProblem {
  std::int64_t B = 19, n = 5, C = 7, G = 8;
  bool shared;
  std::vector<float> mean, log_std, tril, logits, targets, reward, reward_c, t_mean, t_log_std, t_tril, t_logits;
  std::vector<std::int32_t> labels;
  RewardForm form;
  GpuProblem(RewardForm f, std::uint64_t seed, bool shared_scale) : shared(shared_scale), form(f) {
    TestRng rng(seed);
    const std::int64_t sr = shared ? 1 : B, P = n * (n + 1) / 2;
    mean = rng.vector<float>(B * n, -1, 1);
    log_std = rng.vector<float>(sr * n, -0.5, 0.3);
    tril = rng.vector<float>(sr * P, -0.4, 0.4);
    logits = rng.vector<float>(B * C, -1.5, 1.5);
    targets = rng.vector<float>(B * n, -1, 1);
    reward = params_for(f, n, rng);
    reward_c = params_for(f, C, rng);
    t_mean = rng.vector<float>(B * n, -1, 1);
    t_log_std = rng.vector<float>(sr * n, -1, 1);
    t_tril = rng.vector<float>(sr * P, -1, 1);
    t_logits = rng.vector<float>(B * C, -1, 1);
    labels.resize(B);
    for (auto& v : labels) v = static_cast<std::int32_t>(rng.uniform(0, static_cast<double>(C) - 1e-9));
  }
  std::int64_t sr() const { return shared ? 1 : B; }
  std::int64_t tri() const { return n * (n + 1) / 2; }
};

/// Device copies of a problem.
template <class T>
struct Views {
  const d2r::Context& ctx;
  GuardedMatrix<T> mean, log_std, tril, logits, targets, reward, reward_c, t_mean, t_log_std, t_tril, t_logits;
  GuardedMatrix<std::int32_t> labels;
  RewardForm form;
  std::int64_t B, n, C, sr, P;
  Views(const d2r::Context& c, const GpuProblem& p)
      : ctx(c), mean(c, p.B, p.n), log_std(c, p.sr(), p.n), tril(c, p.sr(), p.tri()), logits(c, p.B, p.C),
        targets(c, p.B, p.n), reward(c, 1, static_cast<std::int64_t>(p.reward.size())),
        reward_c(c, 1, static_cast<std::int64_t>(p.reward_c.size())), t_mean(c, p.B, p.n), t_log_std(c, p.sr(), p.n),
        t_tril(c, p.sr(), p.tri()), t_logits(c, p.B, p.C), labels(c, 1, p.B), form(p.form), B(p.B), n(p.n), C(p.C),
        sr(p.sr()), P(p.tri()) {
    const auto conv = [](const std::vector<float>& v) { return std::vector<T>(v.begin(), v.end()); };
    mean.fill(conv(p.mean)), log_std.fill(conv(p.log_std)), tril.fill(conv(p.tril)), logits.fill(conv(p.logits));
    targets.fill(conv(p.targets)), reward.fill(conv(p.reward)), reward_c.fill(conv(p.reward_c));
    t_mean.fill(conv(p.t_mean)), t_log_std.fill(conv(p.t_log_std)), t_tril.fill(conv(p.t_tril));
    t_logits.fill(conv(p.t_logits)), labels.fill(p.labels);
  }
  d2r::DiagGaussian<T> diag() const { return {mean.cview(), log_std.cview()}; }
  d2r::DiagGaussian<T> diag_t() const { return {t_mean.cview(), t_log_std.cview()}; }
  d2r::CholeskyGaussian<T> chol() const { return {mean.cview(), tril.cview(), T(1e-5)}; }
  d2r::CholeskyGaussian<T> chol_t() const { return {t_mean.cview(), t_tril.cview(), T(0)}; }
  d2r::Categorical<T> cat() const { return {logits.cview()}; }
  d2r::Categorical<T> cat_t() const { return {t_logits.cview()}; }
  d2r::MahalanobisReward<T> r() const { return {form, {reward.cview().data, reward.cview().cols}}; }
  d2r::MahalanobisReward<T> rc() const { return {form, {reward_c.cview().data, reward_c.cview().cols}}; }
  d2r::VectorView<const std::int32_t> lab() const { return {labels.cview().data, B}; }
};

TEST_F(MixedProductGpu, BadInputLeavesOutputsUntouched) {
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  const GpuProblem p(RewardForm::diagonal, 3, false);
  const Views<float> dv(gpu, p);
  GuardedMatrix<float> g(gpu, 1, p.n), small(gpu, 1, p.n - 1), out(gpu, p.B, 3), r(gpu, p.B, 3), da(gpu, p.B, 2);
  const d2r::PgOptions<float> o{};
  d2r::test::expect_error([&] { d2r::mixed_product(gpu, dv.diag(), dv.targets.cview(), dv.r(), 4, o, {}, dv.diag_t(), small.vector()); },
                          "grad_params", "expected a 1 x 5 matrix");
  const d2r::DiagGaussian<float> bad_t{dv.t_mean.cview(), dv.t_tril.cview()};
  d2r::test::expect_error([&] { d2r::exact_mixed_product(gpu, dv.diag(), dv.targets.cview(), dv.r(), o, bad_t, g.vector()); },
                          "tangent.log_std", "expected a 19 x 5 matrix");
  d2r::test::expect_error(
      [&] { d2r::transform_rewards_backward(gpu, d2r::TransformOptions<float>{}, r.cview(), da.cview(), out.view()); },
      "d_advantages", "expected a 19 x 3 matrix");
  EXPECT_TRUE(g.untouched());
  EXPECT_TRUE(small.untouched());
  EXPECT_TRUE(out.untouched());
}

}  // namespace
