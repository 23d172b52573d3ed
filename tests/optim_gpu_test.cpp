// Optimiser and gradient-conditioning kernels against the CPU reference (double), through
// sentinel-guarded buffers; the device-side Adam counter under CUDA-graph replay; determinism of
// the global norm; the cuda-only argument errors.
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

std::vector<double> widen(const std::vector<float>& x) { return {x.begin(), x.end()}; }

class OptimGpu : public ::testing::TestWithParam<std::int64_t> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

TEST_P(OptimGpu, AdamMatchesReference) {
  const std::int64_t n = GetParam();
  d2r::Context gpu({.backend = d2r::Backend::cuda}), cpu({.backend = d2r::Backend::cpu});
  TestRng rng(static_cast<std::uint64_t>(n) + 1);
  const auto p0 = rng.vector<float>(n, -2, 2), garbage = rng.vector<float>(n, -5, 5);
  GuardedMatrix<float> dp(gpu, 1, n), dm(gpu, 1, n), dv(gpu, 1, n), dg(gpu, 1, n);
  GuardedMatrix<std::int64_t> ds(gpu, 1, 1);
  dp.fill(p0), dm.fill(garbage), dv.fill(garbage), ds.fill({123});
  const d2r::AdamState<float> state{dm.vector(), dv.vector(), ds.vector()};
  d2r::adam_reset(gpu, state);  // the reset kernel must clear the garbage and the count

  std::vector<double> p = widen(p0), m(n, 0.0), v(n, 0.0);
  std::vector<std::int64_t> step{0};
  const d2r::AdamState<double> ref{d2r::vector_view(m.data(), n), d2r::vector_view(v.data(), n),
                                   d2r::vector_view(step.data(), 1)};
  const d2r::AdamOptions<float> options{.learning_rate = 1e-2f, .beta1 = 0.8f, .epsilon = 1e-6f, .weight_decay = 0.05f};
  const d2r::AdamOptions<double> ref_options{options.learning_rate, options.beta1, options.beta2, options.epsilon,
                                             options.weight_decay};
  std::vector<float> g;
  for (int k = 0; k < 4; ++k) {
    g = rng.vector<float>(n, -1, 1);
    dg.fill(g);
    const std::vector<double> gd = widen(g);
    d2r::adam_step(gpu, options, state, dp.vector(), dg.vector());
    d2r::adam_step(cpu, ref_options, ref, d2r::vector_view(p.data(), n), d2r::vector_view(gd.data(), n));
  }
  EXPECT_EQ(ds.values_checked(), std::vector<std::int64_t>{4});
  EXPECT_EQ(step[0], 4);
  D2R_EXPECT_CLOSE(dp.values_checked(), p, 1e-5, 1e-6);
  D2R_EXPECT_CLOSE(dm.values_checked(), m, 1e-5, 1e-7);
  D2R_EXPECT_CLOSE(dv.values_checked(), v, 1e-5, 1e-8);
  EXPECT_EQ(dg.values_checked(), g) << "grad is read only";
}

TEST_P(OptimGpu, SgdMatchesReference) {
  const std::int64_t n = GetParam();
  d2r::Context gpu({.backend = d2r::Backend::cuda}), cpu({.backend = d2r::Backend::cpu});
  TestRng rng(static_cast<std::uint64_t>(n) + 2);
  const auto p0 = rng.vector<float>(n, -2, 2);
  GuardedMatrix<float> dp(gpu, 1, n), dq(gpu, 1, n), dvel(gpu, 1, n), dg(gpu, 1, n);
  dp.fill(p0), dq.fill(p0), dvel.fill(std::vector<float>(n, 0.0f));
  std::vector<double> p = widen(p0), q = p, vel(n, 0.0);
  for (int k = 0; k < 3; ++k) {
    const auto g = rng.vector<float>(n, -1, 1);
    dg.fill(g);
    const std::vector<double> gd = widen(g);
    d2r::sgd_step<float>(gpu, 0.1f, 0.0f, {}, dp.vector(), dg.vector());
    d2r::sgd_step<float>(gpu, 0.05f, 0.9f, dvel.vector(), dq.vector(), dg.vector());
    d2r::sgd_step<double>(cpu, 0.1f, 0.0, {}, d2r::vector_view(p.data(), n), d2r::vector_view(gd.data(), n));
    d2r::sgd_step<double>(cpu, 0.05f, 0.9f, d2r::vector_view(vel.data(), n), d2r::vector_view(q.data(), n),
                          d2r::vector_view(gd.data(), n));
  }
  D2R_EXPECT_CLOSE(dp.values_checked(), p, 1e-6, 1e-6);
  D2R_EXPECT_CLOSE(dq.values_checked(), q, 1e-6, 1e-6);
  D2R_EXPECT_CLOSE(dvel.values_checked(), vel, 1e-6, 1e-6);
}

TEST_P(OptimGpu, ClampMatchesReferenceExactly) {
  const std::int64_t n = GetParam();
  d2r::Context gpu({.backend = d2r::Backend::cuda}), cpu({.backend = d2r::Backend::cpu});
  TestRng rng(static_cast<std::uint64_t>(n) + 3);
  auto x = rng.vector<float>(n, -3, 3);
  GuardedMatrix<float> dx(gpu, 1, n);
  dx.fill(x);
  d2r::clamp_values(gpu, 1.0f, dx.vector());
  d2r::clamp_values(cpu, 1.0f, d2r::vector_view(x.data(), n));
  EXPECT_EQ(dx.values_checked(), x);
}

TEST_P(OptimGpu, ClipGlobalNormMatchesReference) {
  const std::int64_t n = GetParam();
  d2r::Context gpu({.backend = d2r::Backend::cuda}), cpu({.backend = d2r::Backend::cpu});
  TestRng rng(static_cast<std::uint64_t>(n) + 4);
  const auto x0 = rng.vector<float>(n, -1, 1);
  double sq = 0;
  for (const float v : x0) sq += static_cast<double>(v) * v;
  const double norm = std::sqrt(sq);
  ASSERT_GT(norm, 0.0);
  for (const double factor : {0.25, 4.0}) {  // max_norm below the norm (clips), above it (no-op)
    const float max_norm = static_cast<float>(factor * norm);
    GuardedMatrix<float> dx(gpu, 1, n), dnorm(gpu, 1, 1), dy(gpu, 1, n);
    dx.fill(x0), dy.fill(x0);
    d2r::clip_global_norm(gpu, max_norm, dx.vector(), dnorm.vector());
    d2r::clip_global_norm<float>(gpu, max_norm, dy.vector(), {});
    std::vector<double> x = widen(x0), ref_norm{0.0};
    d2r::clip_global_norm(cpu, static_cast<double>(max_norm), d2r::vector_view(x.data(), n),
                          d2r::vector_view(ref_norm.data(), 1));
    const auto got = dx.values_checked();
    D2R_EXPECT_CLOSE(got, x, 1e-6, 1e-7);
    D2R_EXPECT_CLOSE(dnorm.values_checked(), ref_norm, 1e-6, 0.0);
    EXPECT_EQ(dy.values_checked(), got) << "norm_out must not change the values";
    if (factor > 1) {
      EXPECT_EQ(got, x0) << "below max_norm the values are left as they are";
    }
  }
}

TEST_P(OptimGpu, ClipGlobalNormIsDeterministic) {
  const std::int64_t n = GetParam();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  TestRng rng(static_cast<std::uint64_t>(n) + 5);
  const auto x0 = rng.vector<float>(n, -1, 1);
  std::vector<float> first, first_norm;
  for (int run = 0; run < 3; ++run) {
    GuardedMatrix<float> dx(gpu, 1, n), dnorm(gpu, 1, 1);
    dx.fill(x0);
    d2r::clip_global_norm(gpu, 0.1f, dx.vector(), dnorm.vector());
    const auto got = dx.values_checked(), got_norm = dnorm.values_checked();
    if (run == 0) {
      first = got, first_norm = got_norm;
    } else {
      EXPECT_EQ(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)), 0);
      EXPECT_EQ(std::memcmp(got_norm.data(), first_norm.data(), sizeof(float)), 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, OptimGpu, ::testing::Values(std::int64_t{1}, std::int64_t{31}, std::int64_t{1000},
                                                           (std::int64_t{1} << 20) + 3));

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
