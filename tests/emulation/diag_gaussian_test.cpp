// Emulated kernels of the diagonal-Gaussian head (kernels/heads/diag_gaussian/distribution.cuh) against the CPU
// reference in double: sample, log_prob, entropy, backward (with and without samples),
// log_prob_jvp, backward_tangent.
#include "tests/emulation/kernel_emulation.hpp"

#include "host/reference/heads/diag_gaussian.hpp"
#include "kernels/heads/diag_gaussian/distribution.cuh"
#include "kernels/heads/diag_gaussian/second_order.cuh"

namespace d2r::emulation {
namespace {

namespace dg = kernels::diag_gaussian;

struct HeadCase {
  const char* name;
  std::int64_t B, n, G;
  bool shared_log_std;
  unsigned grid, block;  // block 256 as the launchers (kernels/heads/diag_gaussian/launch.cu); smaller to loop more
};
void PrintTo(const HeadCase& c, std::ostream* os) { *os << c.name; }

class DiagGaussianEmulation : public ::testing::TestWithParam<HeadCase> {};

TEST_P(DiagGaussianEmulation, KernelsMatchReference) {
  const HeadCase c = GetParam();
  const std::int64_t B = c.B, n = c.n, G = c.G, S = c.shared_log_std ? 1 : B;
  const bool reduce = c.shared_log_std && B > 1;  // per-row log_std targets, column-summed by the launcher
  TestRng rng(static_cast<std::uint64_t>(B * 1000 + n * 10 + G));
  const auto mean = uniform(rng, B * n, -2, 2), log_std = uniform(rng, S * n, -1, 1);
  const auto cot = uniform(rng, B * G, -1, 1), ent = uniform(rng, B, -1, 1);
  const auto t_mean = uniform(rng, B * n, -1, 1), t_log_std = uniform(rng, S * n, -1, 1);
  const FloatMatrix d_mean(B, n, mean), d_ls(S, n, log_std), d_cot(B, G, cot), d_ent(1, B, ent);
  const FloatMatrix d_tm(B, n, t_mean), d_tls(S, n, t_log_std);
  const DiagGaussian<float> head{d_mean.cview(), d_ls.cview()}, tangent{d_tm.cview(), d_tls.cview()};

  const auto md = to_double(mean), lsd = to_double(log_std), cd = to_double(cot), ed = to_double(ent);
  const auto tmd = to_double(t_mean), tlsd = to_double(t_log_std);
  const DiagGaussian<double> rh{matrix_view(md.data(), B, n), matrix_view(lsd.data(), S, n)};
  const DiagGaussian<double> rt{matrix_view(tmd.data(), B, n), matrix_view(tlsd.data(), S, n)};
  const auto cdv = matrix_view<const double>(cd.data(), B, G);
  const auto edv = vector_view<const double>(ed.data(), B);

  // A step offset read at execution (DrawKey::step_offset) as well as the fixed step.
  const std::int64_t step_offset = 3;
  const math::DrawPosition pos{77, 17, 5, &step_offset};
  const simt::LaunchConfig config{c.grid, c.block, 0};

  FloatMatrix y(B * G, n);
  simt::launch(config, dg::sample_kernel, head, G, pos, y.view());
  std::vector<double> y_ref(static_cast<std::size_t>(B * G * n));
  reference::diag_gaussian::sample(rh, G, pos, matrix_view(y_ref.data(), B * G, n));
  const auto yv = checked(y, "samples");
  D2R_EXPECT_CLOSE(yv, y_ref, 2e-5, 2e-5);
  const auto yd = matrix_view<const double>(yv.data(), B * G, n);  // the kernel's samples feed the rest

  FloatMatrix lp(B, G), H(1, B), jvp(B, G);
  FloatMatrix gm(B, n), gls(reduce ? B : S, n), gm0(B, n), gls0(reduce ? B : S, n), tgm(B, n), tgls(reduce ? B : S, n);
  simt::launch(config, dg::log_prob_kernel, head, y.cview(), lp.view());
  simt::launch(config, dg::entropy_kernel, head, H.vector());
  simt::launch(config, dg::backward_kernel, head, y.cview(), d_cot.cview(), d_ent.cvector(), gm.view(), gls.view());
  simt::launch(config, dg::backward_kernel, head, MatrixView<const float>{}, MatrixView<const float>{}, d_ent.cvector(),
               gm0.view(), gls0.view());
  simt::launch(config, dg::log_prob_jvp_kernel, head, y.cview(), tangent, jvp.view());
  simt::launch(config, dg::backward_tangent_kernel, head, y.cview(), d_cot.cview(), tangent, tgm.view(), tgls.view());

  std::vector<double> lp_ref(static_cast<std::size_t>(B * G)), H_ref(static_cast<std::size_t>(B));
  std::vector<double> gm_ref(static_cast<std::size_t>(B * n)), gls_ref(static_cast<std::size_t>(S * n));
  std::vector<double> gm0_ref(gm_ref.size()), gls0_ref(gls_ref.size()), tgm_ref(gm_ref.size()), tgls_ref(gls_ref.size());
  std::vector<double> jvp_ref(lp_ref.size());
  reference::diag_gaussian::log_prob(rh, yd, matrix_view(lp_ref.data(), B, G));
  reference::diag_gaussian::entropy(rh, vector_view(H_ref.data(), B));
  reference::diag_gaussian::backward(
      rh, yd, cdv, edv, DiagGaussianGrad<double>{matrix_view(gm_ref.data(), B, n), matrix_view(gls_ref.data(), S, n)});
  reference::diag_gaussian::backward(
      rh, MatrixView<const double>{}, MatrixView<const double>{}, edv,
      DiagGaussianGrad<double>{matrix_view(gm0_ref.data(), B, n), matrix_view(gls0_ref.data(), S, n)});
  reference::diag_gaussian::log_prob_jvp(rh, yd, rt, matrix_view(jvp_ref.data(), B, G));
  reference::diag_gaussian::backward_tangent(
      rh, yd, cdv, rt, DiagGaussianGrad<double>{matrix_view(tgm_ref.data(), B, n), matrix_view(tgls_ref.data(), S, n)});

  D2R_EMU_EXPECT_CLOSE(checked(lp, "log_prob"), lp_ref, 1e-5, 1e-6);
  D2R_EMU_EXPECT_CLOSE(checked(H, "entropy"), H_ref, 1e-5, 1e-6);
  D2R_EMU_EXPECT_CLOSE(checked(gm, "backward mean"), gm_ref, 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(reduce_rows(checked(gls, "backward log_std"), B, n, reduce), gls_ref, 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(gm0, "backward (entropy only) mean"), gm0_ref, 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(reduce_rows(checked(gls0, "backward (entropy only) log_std"), B, n, reduce), gls0_ref, 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(jvp, "log_prob_jvp"), jvp_ref, 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(tgm, "backward_tangent mean"), tgm_ref, 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(reduce_rows(checked(tgls, "backward_tangent log_std"), B, n, reduce), tgls_ref, 1e-4, 1e-5);
}

// Grids (and blocks) smaller than the work, so that the grid-stride loops (per sample row, per
// warp, per (b, d)) run several times; n = 1, G = 1 and B = 1 edges; n > 32 and n > 64 (lanes
// loop over dims); odd sizes; shared and per-row log_std.
INSTANTIATE_TEST_SUITE_P(Cases, DiagGaussianEmulation,
                         ::testing::Values(HeadCase{"B1_n1_G1", 1, 1, 1, false, 1, 256},
                                           HeadCase{"B1_n1_G1_shared", 1, 1, 1, true, 1, 32},
                                           HeadCase{"B3_n5_G7_grid2", 3, 5, 7, false, 2, 256},
                                           HeadCase{"B7_n2_G5_shared", 7, 2, 5, true, 1, 64},
                                           HeadCase{"B33_n17_G5_grid2", 33, 17, 5, false, 2, 64},
                                           HeadCase{"B9_n70_G3_shared", 9, 70, 3, true, 1, 32},
                                           HeadCase{"B5_n6_G40_grid3", 5, 6, 40, false, 3, 32}),
                         [](const ::testing::TestParamInfo<HeadCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace d2r::emulation
