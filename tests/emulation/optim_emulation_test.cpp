// Emulated optimiser and gradient-conditioning kernels (kernels/optim/optim.cuh) against the CPU
// reference (host/reference/optim.hpp), which evaluates the same float expressions in the
// same order: Adam (with and without decoupled decay, over several steps, the step counter and
// reset), SGD with and without momentum, clamp, and the three passes of clip_global_norm.
// Launch shapes as optim.cu (256 threads), with grids smaller than the work.
#include "tests/emulation/kernel_emulation.hpp"

#include "host/reference/optim.hpp"
#include "kernels/optim/optim.cuh"

namespace d2r::emulation {
namespace {

namespace op = kernels::optim;
constexpr unsigned kThreads = op::kThreads;

/// AdamParams as kernels::optim::adam_step (optim.cu) builds them.
op::AdamParams adam_params(const AdamOptions<float>& o) {
  return {o.learning_rate, o.beta1, o.beta2, 1.0f - o.beta1, 1.0f - o.beta2, o.epsilon,
          1.0f - o.learning_rate * o.weight_decay, static_cast<double>(o.beta1), static_cast<double>(o.beta2),
          static_cast<double>(o.learning_rate), o.weight_decay > 0.0f};
}

TEST(OptimEmulation, AdamStepsResetAndCounter) {
  const std::int64_t n = 1000;
  TestRng rng(5);
  for (const float decay : {0.0f, 0.01f}) {
    SCOPED_TRACE(decay > 0 ? "AdamW" : "Adam");
    const AdamOptions<float> o{0.01f, 0.9f, 0.99f, 1e-6f, decay};
    std::vector<float> p = uniform(rng, n, -1, 1), m(n, 0.0f), v(n, 0.0f);
    std::vector<float> rp = p, rm = m, rv = v;
    std::vector<std::int64_t> step{0}, rstep{0};
    for (int s = 0; s < 3; ++s) {
      const auto g = uniform(rng, n, -2, 2);
      // 2 blocks of 256 for 1000 elements: the grid-stride loop runs twice.
      simt::launch({2, kThreads, 0}, op::adam_kernel, adam_params(o), static_cast<const std::int64_t*>(step.data()),
                   p.data(), g.data(), m.data(), v.data(), n);
      simt::launch({1, 1, 0}, op::adam_increment_step, step.data());
      reference::optim::adam_step(
          o, AdamState<float>{vector_view(rm.data(), n), vector_view(rv.data(), n), vector_view(rstep.data(), 1)},
          vector_view(rp.data(), n), vector_view<const float>(g.data(), n));
      EXPECT_EQ(step[0], rstep[0]);
      EXPECT_EQ(p, rp) << "step " << s;  // same expressions, same order: equal floats
      EXPECT_EQ(m, rm) << "step " << s;
      EXPECT_EQ(v, rv) << "step " << s;
    }
    simt::launch({3, kThreads, 0}, op::adam_reset_kernel, m.data(), v.data(), step.data(), n);
    EXPECT_EQ(step[0], 0);
    EXPECT_EQ(m, std::vector<float>(n, 0.0f));
    EXPECT_EQ(v, std::vector<float>(n, 0.0f));
  }
  std::int64_t counter = 40;
  simt::launch({1, 1, 0}, op::advance_counter_kernel, &counter, std::int64_t{7});
  EXPECT_EQ(counter, 47);
}

TEST(OptimEmulation, SgdAndClamp) {
  const std::int64_t n = 777;
  TestRng rng(6);
  const auto g = uniform(rng, n, -3, 3);
  for (const float momentum : {0.0f, 0.9f}) {
    std::vector<float> p = uniform(rng, n, -1, 1), vel = uniform(rng, n, -1, 1);
    std::vector<float> rp = p, rvel = vel;
    if (momentum > 0) {
      simt::launch({2, kThreads, 0}, op::sgd_kernel<true>, 0.1f, momentum, vel.data(), p.data(), g.data(), n);
    } else {
      simt::launch({2, kThreads, 0}, op::sgd_kernel<false>, 0.1f, momentum, static_cast<float*>(nullptr), p.data(),
                   g.data(), n);
    }
    reference::optim::sgd_step(0.1f, momentum, vector_view(rvel.data(), n), vector_view(rp.data(), n),
                               vector_view<const float>(g.data(), n));
    EXPECT_EQ(p, rp) << "momentum " << momentum;
    EXPECT_EQ(vel, rvel) << "momentum " << momentum;
  }
  std::vector<float> c = g, rc = g;
  c[3] = rc[3] = std::numeric_limits<float>::quiet_NaN();
  simt::launch({2, kThreads, 0}, op::clamp_kernel, 1.5f, c.data(), n);
  reference::optim::clamp_values(1.5f, vector_view(rc.data(), n));
  EXPECT_TRUE(std::isnan(c[3])) << "clamp keeps NaN";
  c[3] = rc[3] = 0.0f;
  EXPECT_EQ(c, rc);
}

// clip_global_norm's passes with optim.cu's grid (blocks of 256·8 elements, at most 1024): norm
// above max_norm (scaled) and below (untouched: the scale pass must not write).
TEST(OptimEmulation, ClipGlobalNorm) {
  const std::int64_t n = 5000;
  TestRng rng(7);
  for (const float max_norm : {5.0f, 1e6f}) {
    SCOPED_TRACE(max_norm);
    std::vector<float> values = uniform(rng, n, -1, 1), ref = values;
    const auto blocks = static_cast<unsigned>((n + kThreads * 8 - 1) / (kThreads * 8));
    std::vector<double> partials(blocks, std::numeric_limits<double>::quiet_NaN());
    float scale = std::numeric_limits<float>::quiet_NaN(), norm = std::numeric_limits<float>::quiet_NaN();
    simt::launch({blocks, kThreads, 0}, op::norm_partials_kernel, static_cast<const float*>(values.data()), n,
                 partials.data());
    simt::launch({1, kThreads, 0}, op::clip_finalize_kernel, static_cast<const double*>(partials.data()),
                 static_cast<int>(blocks), max_norm, &scale, &norm);
    simt::launch({3, kThreads, 0}, op::clip_scale_kernel, static_cast<const float*>(&scale), values.data(), n);
    float ref_norm = 0;
    reference::optim::clip_global_norm(max_norm, vector_view(ref.data(), n), vector_view(&ref_norm, 1));
    EXPECT_NEAR(norm, ref_norm, 1e-6 * ref_norm);
    const double want_scale = reference::optim::clip_scale(
        reference::optim::global_norm(vector_view<const float>(values.data(), n)), max_norm);
    if (max_norm > 1e5f) {
      EXPECT_EQ(scale, 1.0f);
      EXPECT_EQ(values, ref);  // untouched
    } else {
      EXPECT_LT(scale, 1.0f);
      D2R_EXPECT_CLOSE(to_double(values), to_double(ref), 1e-6, 0.0);
    }
    EXPECT_FALSE(std::isnan(want_scale));
  }
}

}  // namespace
}  // namespace d2r::emulation
