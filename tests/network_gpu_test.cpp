// The MLP trunk's cuda backend (cuBLAS GEMMs + kernels/network.cu) against the CPU reference in
// double: init (bitwise equal to cpu float; γ = 1, β = 0 with LayerNorm), then forward, backward,
// forward_tangent and backward_tangent at perturbed parameters, through non-square layers, on
// strided, sentinel-guarded views, with and without
// LayerNorm (warp-per-row and block-per-row widths); determinism; bad input on the device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::Activation;
using d2r::Mlp;
using d2r::test::expect_error;
using d2r::test::GuardedMatrix;
using d2r::test::TestRng;

struct NetCase {
  std::int64_t B, width, depth;
  Activation act;
  bool layer_norm = false;
};
void PrintTo(const NetCase& c, std::ostream* os) {
  *os << "B=" << c.B << " width=" << c.width << " depth=" << c.depth << " " << d2r::to_string(c.act)
      << (c.layer_norm ? " layernorm" : "");
}
std::string case_name(const ::testing::TestParamInfo<NetCase>& info) {
  const NetCase& c = info.param;
  return fmt::format("B{}_w{}_d{}_{}{}", c.B, c.width, c.depth, d2r::to_string(c.act), c.layer_norm ? "_ln" : "");
}

class NetworkGpu : public ::testing::TestWithParam<NetCase> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}
double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}
/// float GPU vs double reference: relative to the entry and to the largest entry (sums of up
/// to B or width terms of both signs).
#define EXPECT_GPU_CLOSE(actual, expected) D2R_EXPECT_CLOSE(actual, expected, 2e-4, 2e-5 * (1.0 + max_abs(expected)))

TEST_P(NetworkGpu, MatchesReference) {
  const auto [B, width, depth, act, layer_norm] = GetParam();
  // Non-square layers (inputs, alternating hidden widths, outputs all differ), so that a swapped
  // leading dimension or inputs/outputs mix-up cannot pass.
  std::vector<std::int64_t> hidden;
  for (std::int64_t d = 0; d < depth; ++d) hidden.push_back(width + 5 * (d % 2));
  const Mlp net({.inputs = width + 3, .hidden = hidden, .outputs = width / 2 + 1, .activation = act,
                 .layer_norm = layer_norm});
  const std::int64_t P = net.parameter_count(), C = net.cache_elements(B), in = net.inputs(), out = net.outputs();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  d2r::Context cpu({.backend = d2r::Backend::cpu});

  // Init: cuda float equals cpu float bit for bit.
  GuardedMatrix<float> g_params(gpu, 1, P);
  net.init<float>(gpu, g_params.vector(), 77);
  std::vector<float> params_f(static_cast<std::size_t>(P));
  net.init<float>(cpu, d2r::vector_view(params_f.data(), P), 77);
  ASSERT_EQ(g_params.values_checked(), params_f);
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const d2r::MlpLayer L = net.layer(l);
    if (!L.normalized) continue;
    for (std::int64_t i = 0; i < L.outputs; ++i) {
      ASSERT_EQ(params_f[static_cast<std::size_t>(L.gamma_offset + i)], 1.0f);
      ASSERT_EQ(params_f[static_cast<std::size_t>(L.beta_offset + i)], 0.0f);
    }
  }

  TestRng rng(static_cast<std::uint64_t>(B * 1000 + width * 10 + depth));
  // Then every parameter is moved off its initial value (γ != 1, β != 0 with LayerNorm), so that
  // a kernel that drops γ or β, or reads another layer's, is seen.
  // Scaled moves keep the weights at their init's magnitude (activations stay O(1) with depth).
  const auto scale = rng.vector<float>(P, 0.5, 1.5), shift = rng.vector<float>(P, -0.1, 0.1);
  for (std::size_t i = 0; i < params_f.size(); ++i) params_f[i] = params_f[i] * scale[i] + shift[i];
  g_params.fill(params_f);

  const auto x_f = rng.vector<float>(B * in, -1.5, 1.5), v_f = rng.vector<float>(P, -1, 1);
  const auto dout_f = rng.vector<float>(B * out, -1, 1), doutt_f = rng.vector<float>(B * out, -1, 1);
  const auto params = to_double(params_f), x = to_double(x_f), v = to_double(v_f), dout = to_double(dout_f),
             doutt = to_double(doutt_f);

  // Reference (double, cpu).
  std::vector<double> r_cache(static_cast<std::size_t>(C)), r_tcache(static_cast<std::size_t>(C)),
      r_out(static_cast<std::size_t>(B * out)), r_outt(r_out.size()), r_dp(static_cast<std::size_t>(P)),
      r_dx(x.size()), r_dpt(r_dp.size());
  const auto pv = d2r::vector_view(params.data(), P), vv = d2r::vector_view(v.data(), P);
  const auto xv = d2r::matrix_view(x.data(), B, in);
  net.forward<double>(cpu, pv, xv, d2r::vector_view(r_cache.data(), C), d2r::matrix_view(r_out.data(), B, out));
  net.backward<double>(cpu, pv, xv, d2r::vector_view(r_cache.data(), C), d2r::matrix_view(dout.data(), B, out),
                       d2r::vector_view(r_dp.data(), P), d2r::matrix_view(r_dx.data(), B, in));
  net.forward_tangent<double>(cpu, pv, vv, xv, d2r::vector_view(r_cache.data(), C),
                              d2r::vector_view(r_tcache.data(), C), d2r::matrix_view(r_outt.data(), B, out));
  net.backward_tangent<double>(cpu, pv, vv, xv, d2r::vector_view(r_cache.data(), C),
                               d2r::vector_view(r_tcache.data(), C), d2r::matrix_view(dout.data(), B, out),
                               d2r::matrix_view(doutt.data(), B, out), d2r::vector_view(r_dpt.data(), P));

  // Device, on strided guarded views.
  GuardedMatrix<float> g_x(gpu, B, in), g_v(gpu, 1, P), g_dout(gpu, B, out), g_doutt(gpu, B, out),
      g_cache(gpu, 1, C), g_tcache(gpu, 1, C), g_out(gpu, B, out), g_outt(gpu, B, out), g_dp(gpu, 1, P),
      g_dx(gpu, B, in), g_dpt(gpu, 1, P);
  g_x.fill(x_f);
  g_v.fill(v_f);
  g_dout.fill(dout_f);
  g_doutt.fill(doutt_f);
  const d2r::VectorView<const float> gp = g_params.vector(), gv = g_v.vector();
  net.forward<float>(gpu, gp, g_x.cview(), g_cache.vector(), g_out.view());
  net.backward<float>(gpu, gp, g_x.cview(), g_cache.vector(), g_dout.cview(), g_dp.vector(), g_dx.view());
  net.forward_tangent<float>(gpu, gp, gv, g_x.cview(), g_cache.vector(), g_tcache.vector(), g_outt.view());
  net.backward_tangent<float>(gpu, gp, gv, g_x.cview(), g_cache.vector(), g_tcache.vector(), g_dout.cview(),
                              g_doutt.cview(), g_dpt.vector());
  gpu.synchronize();

  {
    SCOPED_TRACE("forward");
    EXPECT_GPU_CLOSE(g_out.values_checked(), r_out);
    EXPECT_GPU_CLOSE(g_cache.values_checked(), r_cache);
  }
  {
    SCOPED_TRACE("backward");
    EXPECT_GPU_CLOSE(g_dp.values_checked(), r_dp);
    EXPECT_GPU_CLOSE(g_dx.values_checked(), r_dx);
  }
  {
    SCOPED_TRACE("forward_tangent");
    EXPECT_GPU_CLOSE(g_outt.values_checked(), r_outt);
    EXPECT_GPU_CLOSE(g_tcache.values_checked(), r_tcache);
  }
  {
    SCOPED_TRACE("backward_tangent");
    EXPECT_GPU_CLOSE(g_dpt.values_checked(), r_dpt);
  }

  // Deterministic: a second backward and backward_tangent give the same bits.
  const auto dp1 = g_dp.values_checked(), dpt1 = g_dpt.values_checked();
  net.backward<float>(gpu, gp, g_x.cview(), g_cache.vector(), g_dout.cview(), g_dp.vector(), {});
  net.backward_tangent<float>(gpu, gp, gv, g_x.cview(), g_cache.vector(), g_tcache.vector(), g_dout.cview(),
                              g_doutt.cview(), g_dpt.vector());
  EXPECT_EQ(g_dp.values_checked(), dp1);
  EXPECT_EQ(g_dpt.values_checked(), dpt1);
}

std::vector<NetCase> cases() {
  std::vector<NetCase> out;
  for (std::int64_t B : {1, 7, 1000})
    for (std::int64_t w : {2, 17, 64, 256}) {
      out.push_back({B, w, 0, Activation::relu});
      out.push_back({B, w, 1, Activation::tanh});
      out.push_back({B, w, 3, Activation::relu});
      out.push_back({B, w, 3, Activation::tanh});
      if (w > 2) {  // LayerNorm over two features is ill-conditioned in float (x̂ = ±d/√(d² + ε))
        out.push_back({B, w, 1, Activation::tanh, true});
        out.push_back({B, w, 3, Activation::relu, true});
        out.push_back({B, w, 3, Activation::tanh, true});
      }
    }
  // Rows wider than 512 features: one block per LayerNorm row.
  for (std::int64_t B : {1, 7, 300}) {
    out.push_back({B, 600, 2, Activation::tanh, true});
    out.push_back({B, 1100, 1, Activation::relu, true});
  }
  return out;
}
INSTANTIATE_TEST_SUITE_P(Shapes, NetworkGpu, ::testing::ValuesIn(cases()), case_name);

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
