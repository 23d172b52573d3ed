// What the case registry cannot express for the optimisers (stays here): the device-side Adam
// counter under CUDA-graph replay, and the cuda-only argument errors. The comparisons against the
// CPU reference (double) are cases of host/checks/cases/optim.cpp (tests/checks_gpu_test.cpp,
// `d2r validate`): Adam from garbage moments with its counter, SGD with and without momentum,
// exact clamping, clipping with and without the norm output, and the global norm's determinism
// over three runs (sizes 1 to 2^20 + 3).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <cuda_runtime_api.h>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::GuardedMatrix;
using d2r::test::TestRng;

/// An inner step (clamp, clip, Adam) captured once in a CUDA graph and replayed: the device-side
/// counter advances per replay, and the result equals the same steps launched directly.
TEST(OptimGpuGraph, AdamStepReplaysWithDeviceCounter) {
  D2R_REQUIRE_GPU();
  constexpr std::int64_t n = 4099;
  constexpr int replays = 5;
  d2r::Context gpu({.backend = d2r::Backend::cuda, .value_checks = d2r::ValueChecks::none});
  TestRng rng(77);
  const auto p0 = rng.vector<float>(n, -1, 1), g0 = rng.vector<float>(n, -3, 3);
  struct Set {
    d2r::Buffer<float> p, g, m, v;
    d2r::Buffer<std::int64_t> step;
  };
  auto make = [&] {
    Set s{d2r::Buffer<float>(gpu, p0), d2r::Buffer<float>(gpu, g0), d2r::Buffer<float>(gpu, n),
          d2r::Buffer<float>(gpu, n), d2r::Buffer<std::int64_t>(gpu, 1)};
    d2r::adam_reset(gpu, d2r::AdamState<float>{s.m.vector(), s.v.vector(), s.step.vector()});
    return s;
  };
  Set direct = make(), graphed = make();
  const d2r::AdamOptions<float> options{.learning_rate = 0.05f, .weight_decay = 0.01f};
  // The gradient is re-conditioned in place at every step; both runs perform the same sequence
  // of operations, launched directly or replayed from the graph.
  auto inner_step = [&](Set& s) {
    d2r::clamp_values(gpu, 2.0f, s.g.vector());
    d2r::clip_global_norm<float>(gpu, 10.0f, s.g.vector(), {});
    d2r::adam_step(gpu, options, d2r::AdamState<float>{s.m.vector(), s.v.vector(), s.step.vector()}, s.p.vector(),
                   s.g.vector());
  };
  for (int k = 0; k < replays; ++k) inner_step(direct);
  gpu.synchronize();  // the workspace has its size now: nothing allocates during capture

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(gpu.stream(), cudaStreamCaptureModeRelaxed), cudaSuccess);
  inner_step(graphed);
  ASSERT_EQ(cudaStreamEndCapture(gpu.stream(), &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int k = 0; k < replays; ++k) ASSERT_EQ(cudaGraphLaunch(exec, gpu.stream()), cudaSuccess);
  gpu.synchronize();
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);

  EXPECT_EQ(graphed.step.to_host(), std::vector<std::int64_t>{replays});
  EXPECT_EQ(direct.step.to_host(), std::vector<std::int64_t>{replays});
  const auto a = direct.p.to_host(), b = graphed.p.to_host();
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_NE(a, p0);
}

TEST(OptimGpuErrors, DoubleViewsAndHostPointers) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  d2r::Buffer<double> p(gpu, 4), g(gpu, 4), m(gpu, 4), v(gpu, 4);
  d2r::Buffer<std::int64_t> step(gpu, 1);
  auto expect_unsupported = [](const auto& call, const char* argument) {
    try {
      call();
      ADD_FAILURE() << "expected d2r::Error for argument '" << argument << "'";
    } catch (const d2r::Error& e) {
      EXPECT_EQ(e.kind(), d2r::ErrorKind::unsupported) << e.what();
      EXPECT_EQ(e.argument(), argument) << e.what();
      EXPECT_NE(std::string(e.what()).find("float only"), std::string::npos) << e.what();
    }
  };
  const d2r::AdamState<double> state{m.vector(), v.vector(), step.vector()};
  expect_unsupported([&] { d2r::adam_step(gpu, d2r::AdamOptions<double>{}, state, p.vector(), g.vector()); }, "params");
  expect_unsupported([&] { d2r::adam_reset(gpu, state); }, "state");
  expect_unsupported([&] { d2r::sgd_step<double>(gpu, 0.1, 0.0, {}, p.vector(), g.vector()); }, "params");
  expect_unsupported([&] { d2r::clamp_values(gpu, 1.0, p.vector()); }, "values");
  expect_unsupported([&] { d2r::clip_global_norm<double>(gpu, 1.0, p.vector(), {}); }, "values");

  std::vector<float> host(4, 0.0f);
  d2r::Buffer<float> dg(gpu, 4);
  try {
    d2r::sgd_step<float>(gpu, 0.1f, 0.0f, {}, d2r::vector_view(host.data(), 4), dg.vector());
    ADD_FAILURE() << "expected d2r::Error for a host pointer";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "params") << e.what();
    EXPECT_NE(std::string(e.what()).find("device or managed memory"), std::string::npos) << e.what();
  }
  EXPECT_EQ(host, std::vector<float>(4, 0.0f));
}

}  // namespace
