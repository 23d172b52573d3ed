// Reward and transform kernels against the CPU reference (double).
#include <gtest/gtest.h>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::test::GuardedMatrix;
using d2r::test::TestRng;

struct RewardCase {
  RewardForm form;
  std::int64_t B, d, G;
};

class RewardGpu : public ::testing::TestWithParam<RewardCase> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

std::vector<float> params_for(RewardForm form, std::int64_t d, TestRng& rng) {
  std::vector<float> p(d2r::reward_param_count(form, d));
  for (auto& v : p) v = static_cast<float>(form == RewardForm::full ? rng.uniform(-0.5, 0.5) : rng.uniform(0.2, 2));
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < d; ++i) p[i * (i + 1) / 2 + i] = static_cast<float>(rng.uniform(0.5, 1.5));
  return p;
}

TEST_P(RewardGpu, ContinuousAndOneHotMatchReference) {
  const auto [form, B, d, G] = GetParam();
  d2r::Context gpu({.backend = d2r::Backend::cuda}), cpu({.backend = d2r::Backend::cpu});
  TestRng rng(static_cast<std::uint64_t>(B + d + G));
  const auto p = params_for(form, d, rng);
  const auto y = rng.vector<float>(B * d, -1, 1), s = rng.vector<float>(B * G * d, -2, 2), c = rng.vector<float>(B * G, -1, 1);
  std::vector<std::int32_t> labels(B), ks(B * G);
  for (auto& v : labels) v = static_cast<std::int32_t>(rng.uniform(0, static_cast<double>(d) - 1e-9));
  for (auto& v : ks) v = static_cast<std::int32_t>(rng.uniform(0, static_cast<double>(d) - 1e-9));
  const std::vector<double> pd(p.begin(), p.end()), yd(y.begin(), y.end()), sd(s.begin(), s.end()), cd(c.begin(), c.end());
  const std::int64_t P = static_cast<std::int64_t>(p.size());

  GuardedMatrix<float> dp(gpu, 1, P), dy(gpu, B, d), ds(gpu, B * G, d), dc(gpu, B, G), out(gpu, B, G), grad(gpu, 1, P),
      out1(gpu, B, G), grad1(gpu, 1, P);
  GuardedMatrix<std::int32_t> dl(gpu, 1, B), dk(gpu, B, G);
  dp.fill(p), dy.fill(y), ds.fill(s), dc.fill(c), dl.fill(labels), dk.fill(ks);
  const d2r::MahalanobisReward<float> reward{form, {dp.cview().data, P}};
  const d2r::MahalanobisReward<double> ref{form, {pd.data(), P}};
  const d2r::VectorView<const std::int32_t> labels_view{dl.cview().data, B};

  d2r::reward(gpu, reward, ds.cview(), dy.cview(), out.view());
  d2r::reward_backward(gpu, reward, ds.cview(), dy.cview(), dc.cview(), grad.vector());
  d2r::reward(gpu, reward, dk.cview(), labels_view, d, out1.view());
  d2r::reward_backward(gpu, reward, dk.cview(), labels_view, d, dc.cview(), grad1.vector());

  std::vector<double> r(B * G), g(P), r1(B * G), g1(P);
  d2r::reward(cpu, ref, d2r::matrix_view(sd.data(), B * G, d), d2r::matrix_view(yd.data(), B, d), d2r::matrix_view(r.data(), B, G));
  d2r::reward_backward(cpu, ref, d2r::matrix_view(sd.data(), B * G, d), d2r::matrix_view(yd.data(), B, d),
                       d2r::matrix_view(cd.data(), B, G), d2r::vector_view(g.data(), P));
  d2r::reward(cpu, ref, d2r::matrix_view<const std::int32_t>(ks.data(), B, G), d2r::vector_view<const std::int32_t>(labels.data(), B),
              d, d2r::matrix_view(r1.data(), B, G));
  d2r::reward_backward(cpu, ref, d2r::matrix_view<const std::int32_t>(ks.data(), B, G),
                       d2r::vector_view<const std::int32_t>(labels.data(), B), d, d2r::matrix_view(cd.data(), B, G),
                       d2r::vector_view(g1.data(), P));
  D2R_EXPECT_CLOSE(out.values_checked(), r, 1e-5, 1e-5 * d);
  D2R_EXPECT_CLOSE(grad.values_checked(), g, 1e-4, 1e-4 * static_cast<double>(B * G));
  D2R_EXPECT_CLOSE(out1.values_checked(), r1, 1e-5, 1e-5);
  D2R_EXPECT_CLOSE(grad1.values_checked(), g1, 1e-4, 1e-5 * static_cast<double>(B * G));
}

INSTANTIATE_TEST_SUITE_P(Sizes, RewardGpu,
                         ::testing::Values(RewardCase{RewardForm::scalar, 1, 2, 1}, RewardCase{RewardForm::scalar, 1000, 17, 5},
                                           RewardCase{RewardForm::diagonal, 3, 2, 5}, RewardCase{RewardForm::diagonal, 777, 40, 16},
                                           RewardCase{RewardForm::full, 5, 3, 2}, RewardCase{RewardForm::full, 513, 17, 5},
                                           RewardCase{RewardForm::full, 70, 64, 3}));

class TransformGpu : public ::testing::TestWithParam<d2r::Transform> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

TEST_P(TransformGpu, MatchesReference) {
  d2r::Context gpu({.backend = d2r::Backend::cuda}), cpu({.backend = d2r::Backend::cpu});
  const std::int64_t B = 1001, G = 17;
  TestRng rng(5);
  const auto r = rng.vector<float>(B * G, -3, 0);
  const std::vector<double> rd(r.begin(), r.end());
  GuardedMatrix<float> dr(gpu, B, G), da(gpu, B, G);
  dr.fill(r);
  const d2r::TransformOptions<float> o{.kind = GetParam(), .rbf_gamma = 0.7f, .standardize_epsilon = 1e-4f};
  d2r::transform_rewards(gpu, o, dr.cview(), da.view());
  std::vector<double> a(B * G);
  d2r::transform_rewards(cpu, d2r::TransformOptions<double>{o.kind, 0.7, 1e-4}, d2r::matrix_view(rd.data(), B, G),
                         d2r::matrix_view(a.data(), B, G));
  D2R_EXPECT_CLOSE(da.values_checked(), a, 1e-5, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Kinds, TransformGpu,
                         ::testing::Values(d2r::Transform::none, d2r::Transform::normalize, d2r::Transform::rbf,
                                           d2r::Transform::leave_one_out, d2r::Transform::standardize));

}  // namespace
