// Emulated kernels of the Cholesky-Gaussian head (kernels/heads/cholesky_gaussian/distribution.cuh) against the CPU
// reference in double: sample, log_prob, entropy, backward (with and without samples), the
// non-positive diagonal check, log_prob_jvp and backward_tangent. One warp per block and per row,
// dynamic shared memory of the launchers' sizes (cholesky_gaussian.cu), poisoned before each block.
#include "tests/emulation/kernel_emulation.hpp"

#include "host/reference/heads/cholesky_gaussian.hpp"
#include "kernels/heads/cholesky_gaussian/distribution.cuh"
#include "kernels/heads/cholesky_gaussian/second_order.cuh"

namespace d2r::emulation {
namespace {

namespace cg = kernels::cholesky_gaussian;

struct HeadCase {
  const char* name;
  std::int64_t B, n, G;
  bool shared_tril;
  unsigned grid;  // blocks (of one warp): fewer than the rows, so that the row loop runs again
};
void PrintTo(const HeadCase& c, std::ostream* os) { *os << c.name; }

class CholeskyGaussianEmulation : public ::testing::TestWithParam<HeadCase> {};

TEST_P(CholeskyGaussianEmulation, KernelsMatchReference) {
  const HeadCase c = GetParam();
  const std::int64_t B = c.B, n = c.n, G = c.G, R = c.shared_tril ? 1 : B, P = packed_size(n);
  const bool reduce = c.shared_tril && B > 1;  // per-row tril targets, column-summed by the launcher
  const int ni = static_cast<int>(n);
  TestRng rng(static_cast<std::uint64_t>(B * 131 + n * 7 + G));
  const auto mean = uniform(rng, B * n, -2, 2), tril = raw_tril(rng, R, n);
  const auto cot = uniform(rng, B * G, -1, 1), ent = uniform(rng, B, -1, 1);
  const auto t_mean = uniform(rng, B * n, -1, 1), t_tril = uniform(rng, R * P, -1, 1);
  const FloatMatrix d_mean(B, n, mean), d_tril(R, P, tril), d_cot(B, G, cot), d_ent(1, B, ent);
  const FloatMatrix d_tm(B, n, t_mean), d_tt(R, P, t_tril);
  const float jitter = 1e-4f;
  const CholeskyGaussian<float> head{d_mean.cview(), d_tril.cview(), jitter}, tangent{d_tm.cview(), d_tt.cview()};

  const auto md = to_double(mean), td = to_double(tril), cd = to_double(cot), ed = to_double(ent);
  const auto tmd = to_double(t_mean), ttd = to_double(t_tril);
  const CholeskyGaussian<double> rh{matrix_view(md.data(), B, n), matrix_view(td.data(), R, P), static_cast<double>(jitter)};
  const CholeskyGaussian<double> rt{matrix_view(tmd.data(), B, n), matrix_view(ttd.data(), R, P)};
  const auto cdv = matrix_view<const double>(cd.data(), B, G);
  const auto edv = vector_view<const double>(ed.data(), B);
  const math::DrawPosition pos{0xC0FFEE, 123, 40, nullptr};
  const auto one_warp = [&](std::size_t shared_bytes) {
    return simt::LaunchConfig{c.grid, static_cast<unsigned>(cg::kThreads), shared_bytes};
  };

  FloatMatrix y(B * G, n);
  simt::launch(one_warp(cg::forward_shared_bytes(ni)), cg::sample_kernel, head, G, pos, y.view());
  std::vector<double> y_ref(static_cast<std::size_t>(B * G * n));
  reference::cholesky_gaussian::sample(rh, G, pos, matrix_view(y_ref.data(), B * G, n));
  const auto yv = checked(y, "samples");
  D2R_EXPECT_CLOSE(yv, y_ref, 1e-4, 1e-5 * (1.0 + std::sqrt(static_cast<double>(n))));
  const auto yd = matrix_view<const double>(yv.data(), B * G, n);  // the kernel's samples feed the rest

  const std::int64_t T = reduce ? B : R;  // rows of a tril target
  FloatMatrix lp(B, G), H(1, B), jvp(B, G), gm(B, n), gt(T, P), gm0(B, n), gt0(T, P), tgm(B, n), tgt(T, P);
  simt::launch(one_warp(cg::forward_shared_bytes(ni)), cg::log_prob_kernel, head, y.cview(), lp.view());
  // entropy: one warp per row; 2 warps a block (the launcher: 8), so that the warps stride over rows.
  simt::launch(simt::LaunchConfig{c.grid, 64, 0}, cg::entropy_kernel, head, H.vector());
  simt::launch(one_warp(cg::backward_shared_bytes(ni)), cg::backward_kernel, head, y.cview(), d_cot.cview(),
               d_ent.cvector(), gm.view(), gt.view());
  simt::launch(one_warp(cg::backward_shared_bytes(ni)), cg::backward_kernel, head, MatrixView<const float>{},
               MatrixView<const float>{}, d_ent.cvector(), gm0.view(), gt0.view());
  simt::launch(one_warp(cg::log_prob_jvp_shared_bytes(ni)), cg::log_prob_jvp_kernel, head, y.cview(), tangent, jvp.view());
  simt::launch(one_warp(cg::backward_tangent_shared_bytes(ni)), cg::backward_tangent_kernel, head, y.cview(),
               d_cot.cview(), d_ent.cvector(), tangent, tgm.view(), tgt.view());

  std::vector<double> lp_ref(static_cast<std::size_t>(B * G)), jvp_ref(lp_ref.size()), H_ref(static_cast<std::size_t>(B));
  std::vector<double> gm_ref(static_cast<std::size_t>(B * n)), gm0_ref(gm_ref.size()), tgm_ref(gm_ref.size());
  std::vector<double> gt_ref(static_cast<std::size_t>(R * P)), gt0_ref(gt_ref.size()), tgt_ref(gt_ref.size());
  const auto grad = [&](std::vector<double>& m, std::vector<double>& t) {
    return CholeskyGaussianGrad<double>{matrix_view(m.data(), B, n), matrix_view(t.data(), R, P)};
  };
  reference::cholesky_gaussian::log_prob(rh, yd, matrix_view(lp_ref.data(), B, G));
  reference::cholesky_gaussian::entropy(rh, vector_view(H_ref.data(), B));
  reference::cholesky_gaussian::backward(rh, yd, cdv, edv, grad(gm_ref, gt_ref));
  reference::cholesky_gaussian::backward(rh, MatrixView<const double>{}, MatrixView<const double>{}, edv,
                                         grad(gm0_ref, gt0_ref));
  reference::cholesky_gaussian::log_prob_jvp(rh, yd, rt, matrix_view(jvp_ref.data(), B, G));
  reference::cholesky_gaussian::backward_tangent(rh, yd, cdv, edv, rt, grad(tgm_ref, tgt_ref));

  D2R_EMU_EXPECT_CLOSE(checked(lp, "log_prob"), lp_ref, 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(H, "entropy"), H_ref, 1e-5, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(gm, "backward mean"), gm_ref, 1e-3, 1e-4);
  D2R_EMU_EXPECT_CLOSE(reduce_rows(checked(gt, "backward tril"), B, P, reduce), gt_ref, 1e-3, 1e-4);
  D2R_EMU_EXPECT_CLOSE(checked(gm0, "backward (entropy only) mean"), gm0_ref, 1e-3, 1e-4);
  D2R_EMU_EXPECT_CLOSE(reduce_rows(checked(gt0, "backward (entropy only) tril"), B, P, reduce), gt0_ref, 1e-3, 1e-4);
  D2R_EMU_EXPECT_CLOSE(checked(jvp, "log_prob_jvp"), jvp_ref, 2e-3, 2e-4);
  D2R_EMU_EXPECT_CLOSE(checked(tgm, "backward_tangent mean"), tgm_ref, 2e-3, 2e-4);
  D2R_EMU_EXPECT_CLOSE(reduce_rows(checked(tgt, "backward_tangent tril"), B, P, reduce), tgt_ref, 2e-3, 2e-4);
}

// n = 1 and G = 1 edges; G > 32 (several batches of generations, a partial last one); n = 17 (odd,
// > 16) and n = 64 = kMaxCholeskyDim (the largest shared-memory layout); shared and per-row factors.
INSTANTIATE_TEST_SUITE_P(
    Cases, CholeskyGaussianEmulation,
    ::testing::Values(HeadCase{"B1_n1_G1", 1, 1, 1, false, 1}, HeadCase{"B1_n2_G5", 1, 2, 5, false, 1},
                      HeadCase{"B3_n1_G40_shared", 3, 1, 40, true, 2}, HeadCase{"B5_n3_G50_grid2", 5, 3, 50, false, 2},
                      HeadCase{"B4_n17_G33_shared", 4, 17, 33, true, 3}, HeadCase{"B2_n64_G5", 2, 64, 5, false, 1},
                      HeadCase{"B3_n64_G3_shared", 3, 64, 3, true, 2}),
    [](const ::testing::TestParamInfo<HeadCase>& info) { return std::string(info.param.name); });

// The first (row, dim) whose L_ii = softplus(raw_ii) + jitter is not > 0, by atomicMin over all
// threads of a grid-stride loop.
TEST(CholeskyGaussianFirstNonpositiveDiagonalEmulation, FindsTheFirstBadEntry) {
  const std::int64_t R = 5, n = 7, P = packed_size(n);
  TestRng rng(9);
  auto tril = raw_tril(rng, R, n);
  const auto diag = [&](std::int64_t r, std::int64_t i) -> float& {
    return tril[static_cast<std::size_t>(r * P + i * (i + 3) / 2)];
  };
  unsigned long long first = ~0ULL;
  const auto run = [&](float jitter) {
    const FloatMatrix d_tril(R, P, tril);
    first = ~0ULL;
    simt::launch(simt::LaunchConfig{1, 32, 0}, cg::nonpositive_diagonal_kernel, d_tril.cview(), static_cast<int>(n), jitter,
                 &first);
  };
  run(0.0f);
  EXPECT_EQ(first, ~0ULL) << "no bad diagonal";
  diag(3, 1) = std::nanf("");  // index 3·7 + 1 = 22
  diag(2, 4) = -200.0f;        // softplus underflows to 0: index 2·7 + 4 = 18
  run(0.0f);
  EXPECT_EQ(first, 18ULL);
  run(1e-4f);  // the jitter makes (2, 4) positive; the NaN stays bad
  EXPECT_EQ(first, 22ULL);
}

}  // namespace
}  // namespace d2r::emulation
