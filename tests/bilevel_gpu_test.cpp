// The bilevel scheduler on the cuda backend: the CUDA-graph inner loop gives the eager loop's
// results bit for bit (stays here: graph replay is not a comparison a case of the registry can
// express). One outer step against the cpu backend in double is the bilevel.outer_step case of
// host/checks/cases/curvature.cpp. Skips without a GPU (fails under D2R_EXPECT_GPU=1).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::TestRng;

struct SmallRegression {
  std::int64_t N = 256;
  std::vector<float> x, y;
  SmallRegression() {
    TestRng rng(7);
    for (std::int64_t i = 0; i < N; ++i) {
      const double a = rng.uniform(-2, 2), b = rng.uniform(-2, 2);
      x.push_back(static_cast<float>(a));
      x.push_back(static_cast<float>(b));
      y.push_back(static_cast<float>(a + 1 + rng.uniform(-1, 1)));
      y.push_back(static_cast<float>(b - 1 + rng.uniform(-1, 1)));
    }
  }
};

TEST(BilevelGpu, CudaGraphInnerLoopEqualsEagerLaunchesBitForBit) {
  D2R_REQUIRE_GPU();
  const SmallRegression d;
  std::vector<std::vector<double>> phis;
  std::vector<std::vector<float>> thetas;
  for (const bool graph : {true, false}) {
    d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = 4});
    d2r::Buffer<float> x(gpu, d.x), y(gpu, d.y);
    d2r::BilevelOptions<float> o;
    o.inner.steps = 10;
    o.inner_start = d2r::InnerStart::warm;
    o.cuda_graph = graph;
    d2r::BilevelTrainer<float> t(gpu, {.inputs = 2, .hidden = {16}}, {std::as_const(x).matrix(d.N, 2), std::as_const(y).matrix(d.N, 2)},
                                 {}, d2r::RewardForm::diagonal, std::vector<double>{1.0, 0.5}, o);
    std::vector<double> phi;
    for (int k = 0; k < 5; ++k) {
      if (k == 2) {
        // Move both workspace blocks (the old ones are freed) and change the seed: a graph that
        // kept the old pointers or seed would replay into freed memory or with stale draws; the
        // trainer must capture again (compute-sanitizer memcheck on this test sees the former).
        for (const d2r::Workspace w : {d2r::Workspace::primitive, d2r::Workspace::composite})
          gpu.workspace(4 * gpu.workspace_capacity(w) + 4096, w);
        gpu.set_seed(9);
      }
      const d2r::BilevelRecord& r = t.step();
      phi.insert(phi.end(), r.reward_params.begin(), r.reward_params.end());
    }
    phis.push_back(phi);
    const auto th = t.policy_params();
    std::vector<float> host(static_cast<std::size_t>(th.size));
    D2R_CUDA_TRY(cudaMemcpy(host.data(), th.data, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
    thetas.push_back(host);
  }
  EXPECT_EQ(phis[0], phis[1]);
  EXPECT_EQ(thetas[0], thetas[1]);
}

}  // namespace
