// The MLP trunk's cuda backend on bad input (device arguments, LayerNorm arguments): errors named,
// outputs untouched. The comparison against the CPU reference in double (init bit for bit, forward,
// backward and both tangents on strided guarded views through non-square layers, with and without
// LayerNorm, determinism) is the mlp.all_passes cases of host/checks/cases/network.cpp
// (tests/checks_gpu_test.cpp, `d2r validate`).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>


#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::Activation;
using d2r::Mlp;
using d2r::test::expect_error;
using d2r::test::GuardedMatrix;

TEST(NetworkGpuErrors, DeviceArguments) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  const Mlp net({.inputs = 3, .hidden = {4}, .outputs = 2});
  constexpr std::int64_t B = 2;
  GuardedMatrix<float> params(gpu, 1, net.parameter_count()), x(gpu, B, 3), cache(gpu, 1, net.cache_elements(B)),
      out(gpu, B, 2);
  net.init<float>(gpu, params.vector(), 1);
  x.fill(std::vector<float>(B * 3, 0.5f));
  // Double views on cuda.
  d2r::Buffer<double> pd(gpu, static_cast<std::size_t>(net.parameter_count()));
  expect_error([&] { net.init<double>(gpu, pd.vector(), 1); }, "params", "float only", d2r::ErrorKind::unsupported);
  // Host memory on cuda.
  std::vector<float> host_x(B * 3, 0.5f);
  const auto host_view = d2r::matrix_view<const float>(host_x.data(), B, 3);
  expect_error([&] { net.forward<float>(gpu, params.vector(), host_view, cache.vector(), out.view()); },
               "x", "device or managed memory");
  // A non-finite input found on the device.
  std::vector<float> bad(B * 3, 0.5f);
  bad[4] = NAN;
  GuardedMatrix<float> x_bad(gpu, B, 3);
  x_bad.fill(bad);
  expect_error([&] { net.forward<float>(gpu, params.vector(), x_bad.cview(), cache.vector(), out.view()); }, "x",
               "element (1, 1) is nan");
  EXPECT_TRUE(out.untouched());
  EXPECT_TRUE(cache.untouched());
}

TEST(NetworkGpuErrors, LayerNormArguments) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  const Mlp net({.inputs = 3, .hidden = {4}, .outputs = 2, .activation = Activation::tanh, .layer_norm = true});
  constexpr std::int64_t B = 2;
  ASSERT_EQ(net.parameter_count(), 34);
  ASSERT_EQ(net.cache_elements(B), 18);
  GuardedMatrix<float> params(gpu, 1, 34), x(gpu, B, 3), cache(gpu, 1, 18), out(gpu, B, 2);
  x.fill(std::vector<float>(B * 3, 0.5f));
  // The cache of the network without LayerNorm is too small.
  expect_error([&] { net.forward<float>(gpu, params.vector(), x.cview(), {cache.vector().data, 8}, out.view()); },
               "cache", "expected 18 entries");
  // A NaN in γ_0 (entries 16..19) found on the device.
  std::vector<float> p(34, 0.1f);
  p[18] = NAN;
  params.fill(p);
  expect_error([&] { net.forward<float>(gpu, params.vector(), x.cview(), cache.vector(), out.view()); }, "params",
               "element (0, 18) is nan");
  EXPECT_TRUE(out.untouched());
  EXPECT_TRUE(cache.untouched());
}

}  // namespace
