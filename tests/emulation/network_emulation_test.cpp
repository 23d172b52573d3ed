// Emulated MLP-trunk kernels (kernels/network/network.cuh) against the CPU reference
// (host/reference/network.hpp): the elementwise kernels (Philox init, bias + activation, the
// activation derivatives of backward and the tangents, fill) and LayerNorm's four row kernels,
// with a warp per row (h <= 512) and a block per row (h > 512) as network.cu launches them, one
// grid block so that the row loop runs several times, relu and tanh. (The GEMMs between them are
// cuBLAS calls issued by host/src/network.cpp, not kernels of d2r.)
#include "tests/emulation/kernel_emulation.hpp"

#include "host/reference/network.hpp"
#include "kernels/network/network.cuh"

namespace d2r::emulation {
namespace {

namespace nw = kernels::network;
constexpr unsigned kThreads = nw::kThreads, kRowBlock = nw::kRowBlock;

const char* act_name(Activation a) { return a == Activation::relu ? "relu" : "tanh"; }

TEST(NetworkEmulation, ElementwiseKernelsMatchReference) {
  const std::int64_t B = 7, h = 45, count = 1001;
  TestRng rng(31);
  std::vector<float> params(static_cast<std::size_t>(count), -7.0f);
  simt::launch({2, kThreads, 0}, nw::init_uniform_kernel, params.data(), count, 0.25f, std::uint64_t{99}, 3u, 1u);
  for (std::int64_t i = 0; i < count; ++i)
    EXPECT_EQ(params[static_cast<std::size_t>(i)], reference::network::mlp_init_value<float>(99, 3, 1, i, 0.25f)) << i;
  simt::launch({2, kThreads, 0}, nw::fill_kernel, params.data(), count, 1.5f);
  EXPECT_EQ(params, std::vector<float>(static_cast<std::size_t>(count), 1.5f));

  for (const Activation act : {Activation::relu, Activation::tanh}) {
    for (const bool activate : {true, false}) {
      SCOPED_TRACE(std::string(act_name(act)) + (activate ? "" : ", no activation"));
      const auto z0 = uniform(rng, B * h, -2, 2), bias = uniform(rng, h, -1, 1), rz0 = uniform(rng, B * h, -1, 1);
      const auto rbias = uniform(rng, h, -1, 1), g0 = uniform(rng, B * h, -1, 1), rg0 = uniform(rng, B * h, -1, 1);
      const auto ra = uniform(rng, B * h, -1, 1);
      FloatMatrix z(B, h, z0), rz(B, h, rz0), g(B, h, g0), g2(B, h, g0), rg(B, h, rg0);
      simt::launch({1, kThreads, 0}, nw::bias_activation_kernel, z.view(), bias.data(), act, activate);
      const std::vector<float> a = z.values();  // the activations (or z + b)
      const FloatMatrix da(B, h, a), dra(B, h, ra);
      simt::launch({1, kThreads, 0}, nw::tangent_activation_kernel, rz.view(), rbias.data(), da.cview(), act, activate);
      simt::launch({1, kThreads, 0}, nw::backward_activation_kernel, g.view(), da.cview(), act);
      simt::launch({1, kThreads, 0}, nw::backward_tangent_activation_kernel, g2.view(), rg.view(), da.cview(),
                   dra.cview(), act);
      std::vector<double> a_ref(a.size()), rz_ref(a.size()), g_ref(a.size()), rg_ref(a.size());
      for (std::int64_t r = 0; r < B; ++r)
        for (std::int64_t c = 0; c < h; ++c) {
          const auto i = static_cast<std::size_t>(r * h + c);
          const float v = z0[i] + bias[static_cast<std::size_t>(c)];
          a_ref[i] = activate ? reference::network::mlp_activate(act, v) : v;
          const float t = rz0[i] + rbias[static_cast<std::size_t>(c)];
          rz_ref[i] = activate ? reference::network::mlp_slope(act, a[i]) * t : t;
          g_ref[i] = reference::network::mlp_slope(act, a[i]) * g0[i];
          rg_ref[i] = reference::network::mlp_curvature_times(act, a[i], ra[i]) * g0[i] +
                      reference::network::mlp_slope(act, a[i]) * rg0[i];
        }
      D2R_EXPECT_CLOSE(checked(z, "bias_activation"), a_ref, 1e-6, 1e-7);
      D2R_EXPECT_CLOSE(checked(rz, "tangent_activation"), rz_ref, 1e-6, 1e-7);
      D2R_EXPECT_CLOSE(checked(g, "backward_activation"), g_ref, 1e-6, 1e-7);
      D2R_EXPECT_CLOSE(checked(g2, "backward_tangent_activation g"), g_ref, 1e-6, 1e-7);
      D2R_EXPECT_CLOSE(checked(rg, "backward_tangent_activation rg"), rg_ref, 1e-6, 1e-7);
    }
  }
}

/// kernel<kGroup> as network.cu's launch_rows chooses it, on one grid block.
template <int kGroup>
void run_layer_norm(std::int64_t B, std::int64_t h, Activation act, TestRng& rng) {
  const auto z0 = uniform(rng, B * h, -2, 2), bias = uniform(rng, h, -1, 1), gamma = uniform(rng, h, 0.5, 1.5);
  const auto beta = uniform(rng, h, -0.5, 0.5), rz0 = uniform(rng, B * h, -1, 1), rbias = uniform(rng, h, -1, 1);
  const auto rgamma = uniform(rng, h, -1, 1), rbeta = uniform(rng, h, -1, 1), g0 = uniform(rng, B * h, -1, 1);
  const auto rg0 = uniform(rng, B * h, -1, 1);
  const simt::LaunchConfig one{1, kRowBlock, 0};
  const auto n = static_cast<std::size_t>(B * h);
  const auto row = [h](std::vector<float>& v, std::int64_t r) { return v.data() + r * h; };

  // Forward.
  FloatMatrix z(B, h, z0), xhat(B, h), rstd(1, B);
  simt::launch(one, nw::layer_norm_forward_kernel<kGroup>, z.view(), bias.data(), gamma.data(), beta.data(), xhat.view(),
               rstd.vector().data, act);
  std::vector<float> a_ref = z0, xhat_ref(n), s_ref(static_cast<std::size_t>(B));
  for (std::int64_t r = 0; r < B; ++r)
    s_ref[static_cast<std::size_t>(r)] = reference::network::detail_network::layer_norm_row_forward<float>(
        act, h, row(a_ref, r), bias.data(), gamma.data(), beta.data(), row(xhat_ref, r));
  D2R_EMU_EXPECT_CLOSE(checked(z, "forward a"), to_double(a_ref), 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(xhat, "forward xhat"), to_double(xhat_ref), 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(rstd, "forward s"), to_double(s_ref), 1e-4, 1e-6);
  // The rest runs on the reference's forward values (the same inputs for both).
  const FloatMatrix da(B, h, a_ref), dxhat(B, h, xhat_ref);

  // Tangent.
  FloatMatrix rz(B, h, rz0), rxhat(B, h), rho(1, B);
  simt::launch(one, nw::layer_norm_tangent_kernel<kGroup>, rz.view(), rbias.data(), gamma.data(), rgamma.data(),
               rbeta.data(), da.cview(), dxhat.cview(), static_cast<const float*>(s_ref.data()), rxhat.view(),
               rho.vector().data, act);
  std::vector<float> ra_ref = rz0, rxhat_ref(n), rho_ref(static_cast<std::size_t>(B));
  for (std::int64_t r = 0; r < B; ++r)
    rho_ref[static_cast<std::size_t>(r)] = reference::network::detail_network::layer_norm_row_tangent<float>(
        act, h, row(ra_ref, r), rbias.data(), row(a_ref, r), row(xhat_ref, r), s_ref[static_cast<std::size_t>(r)],
        gamma.data(), rgamma.data(), rbeta.data(), row(rxhat_ref, r));
  D2R_EMU_EXPECT_CLOSE(checked(rz, "tangent Ra"), to_double(ra_ref), 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(rxhat, "tangent Rxhat"), to_double(rxhat_ref), 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(rho, "tangent rho"), to_double(rho_ref), 1e-4, 1e-5);
  const FloatMatrix dra(B, h, ra_ref), drxhat(B, h, rxhat_ref);

  // Backward: per-row gn and gn·x̂ (the reference accumulates them into d_beta, d_gamma).
  FloatMatrix g(B, h, g0), gn(B, h), gn_xhat(B, h);
  simt::launch(one, nw::layer_norm_backward_kernel<kGroup>, g.view(), da.cview(), dxhat.cview(),
               static_cast<const float*>(s_ref.data()), gamma.data(), gn.view(), gn_xhat.view(), act);
  std::vector<float> g_ref = g0, d_gamma(n, 0.0f), d_beta(n, 0.0f);
  for (std::int64_t r = 0; r < B; ++r)
    reference::network::detail_network::layer_norm_row_backward<float>(
        act, h, row(g_ref, r), row(a_ref, r), row(xhat_ref, r), s_ref[static_cast<std::size_t>(r)], gamma.data(),
        row(d_gamma, r), row(d_beta, r));
  D2R_EMU_EXPECT_CLOSE(checked(g, "backward delta"), to_double(g_ref), 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(gn, "backward gn"), to_double(d_beta), 1e-5, 1e-6);
  D2R_EMU_EXPECT_CLOSE(checked(gn_xhat, "backward gn xhat"), to_double(d_gamma), 1e-5, 1e-6);

  // Backward tangent.
  FloatMatrix g2(B, h, g0), rg(B, h, rg0), rgn(B, h), rgn_xhat(B, h);
  simt::launch(one, nw::layer_norm_backward_tangent_kernel<kGroup>, g2.view(), rg.view(), da.cview(), dra.cview(),
               dxhat.cview(), static_cast<const float*>(s_ref.data()), drxhat.cview(),
               static_cast<const float*>(rho_ref.data()), gamma.data(), rgamma.data(), rgn.view(), rgn_xhat.view(), act);
  std::vector<float> g2_ref = g0, rg_ref = rg0, rd_gamma(n, 0.0f), rd_beta(n, 0.0f);
  for (std::int64_t r = 0; r < B; ++r)
    reference::network::detail_network::layer_norm_row_backward_tangent<float>(
        act, h, row(g2_ref, r), row(rg_ref, r), row(a_ref, r), row(ra_ref, r), row(xhat_ref, r),
        s_ref[static_cast<std::size_t>(r)], row(rxhat_ref, r), rho_ref[static_cast<std::size_t>(r)], gamma.data(),
        rgamma.data(), row(rd_gamma, r), row(rd_beta, r));
  D2R_EMU_EXPECT_CLOSE(checked(g2, "backward_tangent delta"), to_double(g2_ref), 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(rg, "backward_tangent R delta"), to_double(rg_ref), 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(rgn, "backward_tangent Rgn"), to_double(rd_beta), 1e-5, 1e-6);
  D2R_EMU_EXPECT_CLOSE(checked(rgn_xhat, "backward_tangent Rgn xhat + gn Rxhat"), to_double(rd_gamma), 1e-5, 1e-6);
}

TEST(NetworkEmulation, LayerNormRowKernelsMatchReference) {
  TestRng rng(32);
  for (const Activation act : {Activation::relu, Activation::tanh}) {
    SCOPED_TRACE(act_name(act));
    {
      SCOPED_TRACE("a warp per row, h = 45, 11 rows on 8 warps");
      run_layer_norm<32>(11, 45, act, rng);
    }
    {
      SCOPED_TRACE("a block per row, h = 600, 3 rows on one block");
      run_layer_norm<static_cast<int>(kRowBlock)>(3, 600, act, rng);
    }
  }
}

}  // namespace
}  // namespace d2r::emulation
