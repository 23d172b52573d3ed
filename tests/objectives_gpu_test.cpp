// Counter-keyed draws on the device (stays here: a key whose step offset is a device pointer, and
// the error path of a host pointer, are not a comparison a case of the registry can express). The
// objective comparisons against the CPU reference in double (the diagonal head's fused surrogate
// per reward form x transform with a clip in a gap of the reference's |pd·log p|, G > 32, equal
// rewards under standardize with value checks off; fused against unfused; pathwise and exact; the
// categorical exact objective with a masked class) are cases of host/checks/cases/objectives.cpp
// (tests/checks_gpu_test.cpp, `d2r validate`).
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

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
