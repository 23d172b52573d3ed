// Emulated inner-objective kernels of the diagonal-Gaussian head and the per-row surrogate terms
// (kernels/heads/diag_gaussian/objectives.cuh) against the CPU reference in double: row terms, the fused REINFORCE
// surrogate (against the reference composition sample → log_prob → reward → transform → entropy →
// row terms → backward, i.e. what the cpu backend runs), the pathwise and exact objectives and
// the exact objective's tangent. Also the standardize fix on constant reward groups.
#include "tests/emulation/kernel_emulation.hpp"

#include "host/reference/heads/diag_gaussian.hpp"
#include "host/reference/objectives.hpp"
#include "host/reference/rewards.hpp"
#include "kernels/heads/diag_gaussian/objectives.cuh"
#include "kernels/objectives/row_terms.cuh"

namespace d2r::emulation {
namespace {

namespace ob = kernels::objectives;
namespace dg = kernels::diag_gaussian;

// ------------------------------------------------------------------------------------ row terms

TEST(RowTermsEmulation, MatchReference) {
  const std::int64_t B = 37, G = 6, N = 45;
  TestRng rng(3);
  const auto lp = uniform(rng, B * G, -6, 1), r = uniform(rng, B * G, -3, 0), a = uniform(rng, B * G, -1, 1);
  const auto H = uniform(rng, B, -1, 3);
  const double pd = 0.25;
  const double clip = clip_in_gap(to_double(lp), pd);
  ASSERT_GT(clip, 0.0);
  const FloatMatrix d_lp(B, G, lp), d_r(B, G, r), d_a(B, G, a), d_H(1, B, H);
  const PgOptions<float> of{0.3f, {}, static_cast<float>(clip), true, N};
  const PgOptions<double> od{static_cast<double>(0.3f), {}, static_cast<double>(static_cast<float>(clip)), true, N};
  const auto lpd = to_double(lp), rd = to_double(r), ad = to_double(a), Hd = to_double(H);
  for (const bool with_reward : {true, false}) {
    SCOPED_TRACE(with_reward ? "with row_reward" : "without row_reward");
    FloatMatrix dlp(B, G), de(1, B), loss(1, B), rew(1, B);
    const ObjectiveRows<float> rows{loss.vector(), with_reward ? rew.vector() : VectorView<float>{}};
    // 32 threads, one grid block: the per-row grid-stride loop runs twice (objectives.cu: 128).
    simt::launch(simt::LaunchConfig{1, 32, 0}, ob::row_terms_kernel, of, ObjectiveScale<float>{0.25f, float(N), G},
                 d_lp.cview(), d_r.cview(), d_a.cview(), d_H.cvector(), dlp.view(), de.vector(), rows);
    std::vector<double> dlp_ref(static_cast<std::size_t>(B * G)), de_ref(static_cast<std::size_t>(B));
    std::vector<double> loss_ref(de_ref.size()), rew_ref(de_ref.size());
    reference::objectives::pg_row_terms<double>(
        od, ObjectiveScale<double>{pd, double(N), G}, matrix_view<const double>(lpd.data(), B, G),
        matrix_view<const double>(rd.data(), B, G), matrix_view<const double>(ad.data(), B, G),
        vector_view<const double>(Hd.data(), B), matrix_view(dlp_ref.data(), B, G), vector_view(de_ref.data(), B),
        ObjectiveRows<double>{vector_view(loss_ref.data(), B), vector_view(rew_ref.data(), B)});
    D2R_EMU_EXPECT_CLOSE(checked(dlp, "d_log_prob"), dlp_ref, 1e-5, 1e-6);
    D2R_EMU_EXPECT_CLOSE(checked(de, "d_entropy"), de_ref, 1e-6, 1e-7);
    D2R_EMU_EXPECT_CLOSE(checked(loss, "row_loss"), loss_ref, 1e-5, 1e-6);
    if (with_reward) {
      D2R_EMU_EXPECT_CLOSE(checked(rew, "row_reward"), rew_ref, 1e-5, 1e-6);
    } else {
      EXPECT_TRUE(rew.untouched()) << "row_reward was empty but its buffer was written";
    }
  }
}

// --------------------------------------------------------------------------- objectives of a head

struct Shape {
  const char* name;
  std::int64_t B, n, G;
  bool shared_log_std, per_dim_mean, clip;
  unsigned grid;   // grid of every kernel (smaller than the rows: grid-stride loops)
  unsigned block;  // block of the one-thread-per-row kernels (objectives.cu: 128)
  bool row_reward = true;
};

// Odd sizes; n = 1 and G = 1; G = 37 > 32 (the lanes loop over generations); n = 128 = kFusedMaxDim (every
// lane owns a full Philox quad); 37 rows for 32-thread blocks and 4-warp fused blocks; a shared
// log_std; clipping (the clip in a gap of the |pd log p| values); an empty row_reward.
const Shape kShapes[] = {
    {"B3_n1_G1", 3, 1, 1, false, false, false, 1, 32},
    {"B5_n9_G37_shared_pdm", 5, 9, 37, true, true, false, 1, 32},
    {"B6_n3_G6_grid2_no_reward", 6, 3, 6, false, false, false, 2, 32, false},
    {"B2_n128_G5_pdm", 2, 128, 5, false, true, false, 1, 128},
    {"B37_n4_G3", 37, 4, 3, false, false, false, 1, 32},
    {"B5_n3_G12_shared_clip", 5, 3, 12, true, false, true, 1, 32},
    {"B4_n12_G9_pdm_clip", 4, 12, 9, false, true, true, 2, 32},
};

/// One problem: the head, targets and reward in float (guarded) and double, options and scales.
struct DiagProblem {
  RewardForm form_;
  std::int64_t B, n, G, S, N;
  bool reduce;  // shared log_std with B > 1: per-row targets summed by the launcher
  double pd;
  std::vector<float> mean, log_std, y, u, t_mean, t_log_std;
  FloatMatrix d_mean, d_ls, d_y, d_u, d_tm, d_tls;
  std::vector<double> md, lsd, yd, ud, tmd, tlsd;
  math::DrawPosition pos{99, 9, 4, nullptr};
  PgOptions<float> of;
  PgOptions<double> od;

  DiagProblem(RewardForm form, Transform kind, const Shape& s)
      : form_(form), B(s.B), n(s.n), G(s.G), S(s.shared_log_std ? 1 : s.B), N(s.B + 3), reduce(s.shared_log_std && s.B > 1),
        pd(s.per_dim_mean ? 1.0 / static_cast<double>(s.n) : 1.0), d_mean(B, n), d_ls(S, n), d_y(B, n),
        d_u(1, param_count(form, n)), d_tm(B, n), d_tls(S, n) {
    TestRng rng(static_cast<std::uint64_t>(B * 131 + n * 7 + G + 3 * static_cast<int>(form) + static_cast<int>(kind)));
    mean = uniform(rng, B * n, -1, 1);
    log_std = uniform(rng, S * n, -0.7, 0.2);
    y = uniform(rng, B * n, -1, 1);
    u = reward_params(form, n, rng);
    t_mean = uniform(rng, B * n, -1, 1);
    t_log_std = uniform(rng, S * n, -1, 1);
    d_mean.fill(mean);
    d_ls.fill(log_std);
    d_y.fill(y);
    d_u.fill(u);
    d_tm.fill(t_mean);
    d_tls.fill(t_log_std);
    md = to_double(mean);
    lsd = to_double(log_std);
    yd = to_double(y);
    ud = to_double(u);
    tmd = to_double(t_mean);
    tlsd = to_double(t_log_std);
    float clip = 0.0f;
    if (s.clip) {
      std::vector<double> smp(static_cast<std::size_t>(B * G * n)), lp(static_cast<std::size_t>(B * G));
      reference::diag_gaussian::sample(head_d(), G, pos, matrix_view(smp.data(), B * G, n));
      reference::diag_gaussian::log_prob(head_d(), matrix_view<const double>(smp.data(), B * G, n),
                                         matrix_view(lp.data(), B, G));
      clip = static_cast<float>(clip_in_gap(lp, pd));
    }
    of = PgOptions<float>{0.3f, {kind, 0.5f, 1e-6f}, clip, s.per_dim_mean, N};
    od = PgOptions<double>{static_cast<double>(0.3f), {kind, static_cast<double>(0.5f), static_cast<double>(1e-6f)},
                           static_cast<double>(clip), s.per_dim_mean, N};
  }
  DiagGaussian<float> head() const { return {d_mean.cview(), d_ls.cview()}; }
  DiagGaussian<float> tangent() const { return {d_tm.cview(), d_tls.cview()}; }
  MahalanobisReward<float> reward() const { return {form_, d_u.cvector()}; }
  DiagGaussian<double> head_d() const { return {matrix_view(md.data(), B, n), matrix_view(lsd.data(), S, n)}; }
  DiagGaussian<double> tangent_d() const { return {matrix_view(tmd.data(), B, n), matrix_view(tlsd.data(), S, n)}; }
  MahalanobisReward<double> reward_d() const { return {form_, vector_view<const double>(ud.data(), ud.size())}; }
  MatrixView<const double> targets_d() const { return matrix_view<const double>(yd.data(), B, n); }
  ObjectiveScale<float> scale(std::int64_t g) const { return {static_cast<float>(pd), static_cast<float>(N), g}; }
  ObjectiveScale<double> scale_d(std::int64_t g) const { return {pd, static_cast<double>(N), g}; }
};

/// The kernel's outputs: per-row loss and reward, mean gradient, per-row log_std target.
struct Outputs {
  FloatMatrix loss, reward, grad_mean, log_std_target;
  Outputs(const DiagProblem& p)
      : loss(1, p.B), reward(1, p.B), grad_mean(p.B, p.n), log_std_target(p.reduce ? p.B : p.S, p.n) {}
  ObjectiveRows<float> rows(bool with_reward) { return {loss.vector(), with_reward ? reward.vector() : VectorView<float>{}}; }
};

/// The reference's outputs, in the layout of the public API (log_std gradient S x n).
struct Expected {
  std::vector<double> loss, reward, grad_mean, grad_log_std;
  explicit Expected(const DiagProblem& p)
      : loss(static_cast<std::size_t>(p.B)), reward(loss.size()), grad_mean(static_cast<std::size_t>(p.B * p.n)),
        grad_log_std(static_cast<std::size_t>(p.S * p.n)) {}
  ObjectiveRows<double> rows(const DiagProblem& p) { return {vector_view(loss.data(), p.B), vector_view(reward.data(), p.B)}; }
  DiagGaussianGrad<double> grad(const DiagProblem& p) {
    return {matrix_view(grad_mean.data(), p.B, p.n), matrix_view(grad_log_std.data(), p.S, p.n)};
  }
};

void compare(const char* what, const DiagProblem& p, const Outputs& got, Expected& want, bool with_reward, double rtol,
             double atol_rel) {
  SCOPED_TRACE(what);
  D2R_EMU_EXPECT_CLOSE(checked(got.loss, "row_loss"), want.loss, rtol, atol_rel);
  if (with_reward) {
    D2R_EMU_EXPECT_CLOSE(checked(got.reward, "row_reward"), want.reward, rtol, atol_rel);
  } else {
    EXPECT_TRUE(got.reward.untouched()) << "row_reward was empty but its buffer was written";
  }
  D2R_EMU_EXPECT_CLOSE(checked(got.grad_mean, "grad mean"), want.grad_mean, rtol, atol_rel);
  D2R_EMU_EXPECT_CLOSE(reduce_rows(checked(got.log_std_target, "grad log_std"), p.B, p.n, p.reduce), want.grad_log_std,
                       rtol, atol_rel);
}

std::size_t fused_shared_bytes(std::int64_t n, std::int64_t G) {
  return static_cast<std::size_t>(dg::kFusedWarpsPerBlock * (2 * G + n)) * sizeof(float);
}

/// The fused surrogate against the reference composition that the cpu backend runs.
void run_fused(const DiagProblem& p, const Shape& s) {
  Outputs out(p);
  simt::launch(simt::LaunchConfig{s.grid, dg::kFusedWarpsPerBlock * kernels::kWarpSize, fused_shared_bytes(p.n, p.G)},
               dg::fused_surrogate_kernel, p.head(), p.d_y.cview(), p.reward(), p.of, p.pos, p.scale(p.G),
               out.rows(s.row_reward), out.grad_mean.view(), out.log_std_target.view());
  const std::int64_t B = p.B, G = p.G, n = p.n;
  std::vector<double> smp(static_cast<std::size_t>(B * G * n)), lp(static_cast<std::size_t>(B * G)), r(lp.size()),
      a(lp.size()), dlp(lp.size()), H(static_cast<std::size_t>(B)), de(H.size());
  const auto smpv = matrix_view<const double>(smp.data(), B * G, n);
  reference::diag_gaussian::sample(p.head_d(), G, p.pos, matrix_view(smp.data(), B * G, n));
  reference::diag_gaussian::log_prob(p.head_d(), smpv, matrix_view(lp.data(), B, G));
  reference::rewards::reward_continuous(p.reward_d(), smpv, p.targets_d(), matrix_view(r.data(), B, G));
  reference::rewards::transform_rewards(p.od.transform, matrix_view<const double>(r.data(), B, G),
                                        matrix_view(a.data(), B, G));
  reference::diag_gaussian::entropy(p.head_d(), vector_view(H.data(), B));
  Expected want(p);
  reference::objectives::pg_row_terms<double>(
      p.od, p.scale_d(G), matrix_view<const double>(lp.data(), B, G), matrix_view<const double>(r.data(), B, G),
      matrix_view<const double>(a.data(), B, G), vector_view<const double>(H.data(), B), matrix_view(dlp.data(), B, G),
      vector_view(de.data(), B), want.rows(p));
  reference::diag_gaussian::backward(p.head_d(), smpv, matrix_view<const double>(dlp.data(), B, G),
                                     vector_view<const double>(de.data(), B), want.grad(p));
  compare("fused surrogate", p, out, want, s.row_reward, 2e-3, 2e-4);
}

class DiagGaussianPgSurrogateEmulation : public ::testing::TestWithParam<std::tuple<RewardForm, Transform>> {};

TEST_P(DiagGaussianPgSurrogateEmulation, FusedKernelMatchesReferenceComposition) {
  const auto [form, kind] = GetParam();
  for (const Shape& s : kShapes) {
    if (s.G < 2 && needs_two(kind)) continue;
    SCOPED_TRACE(s.name);
    run_fused(DiagProblem(form, kind, s), s);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, DiagGaussianPgSurrogateEmulation,
                         ::testing::Combine(::testing::Values(RewardForm::scalar, RewardForm::diagonal,
                                                              RewardForm::full),
                                            ::testing::Values(Transform::none, Transform::normalize, Transform::rbf,
                                                              Transform::leave_one_out, Transform::standardize)),
                         [](const ::testing::TestParamInfo<std::tuple<RewardForm, Transform>>& info) {
                           return std::string(form_name(std::get<0>(info.param))) + "_" +
                                  transform_name(std::get<1>(info.param));
                         });

/// The launch of a one-thread-per-row kernel that keeps `floats_per_thread` floats of dynamic
/// shared memory per thread for a full U: as many threads a block as fit in kPathwiseSharedBytes,
/// at most the shape's block (objectives.cu's full_u_launch); no scratch for the other forms.
simt::LaunchConfig row_launch(RewardForm form, std::int64_t floats_per_thread, const Shape& s) {
  if (form != RewardForm::full) return {s.grid, s.block, 0};
  const auto per_thread = floats_per_thread * static_cast<std::int64_t>(sizeof(float));
  const auto threads = std::clamp<std::int64_t>(kernels::diag_gaussian::kPathwiseSharedBytes / per_thread, 1, s.block);
  return {s.grid, static_cast<unsigned>(threads), static_cast<std::size_t>(threads * per_thread)};
}

// Pathwise (transforms none and rbf), exact and the exact objective's tangent.
class DiagGaussianObjectiveEmulation : public ::testing::TestWithParam<RewardForm> {};

TEST_P(DiagGaussianObjectiveEmulation, PathwiseExactAndTangentMatchReference) {
  const RewardForm form = GetParam();
  for (const Shape& s : kShapes) {
    if (s.clip) continue;  // the clip is the surrogate's
    for (const Transform kind : {Transform::none, Transform::rbf}) {
      SCOPED_TRACE(std::string(s.name) + " " + transform_name(kind));
      const DiagProblem p(form, kind, s);
      {
        Outputs out(p);
        simt::launch(row_launch(form, 2 * p.n, s), dg::pathwise_kernel, p.head(), p.d_y.cview(),
                     p.reward(), p.of, p.pos, p.scale(p.G), out.rows(s.row_reward), out.grad_mean.view(),
                     out.log_std_target.view());
        Expected want(p);
        reference::diag_gaussian::pg_pathwise(p.head_d(), p.targets_d(), p.reward_d(), p.od, p.pos, p.scale_d(p.G),
                                              want.rows(p), want.grad(p));
        compare("pathwise", p, out, want, s.row_reward, 2e-3, 2e-4);
      }
      if (kind != Transform::none) continue;  // exact ignores the transform
      {
        Outputs out(p);
        simt::launch(row_launch(form, p.n, s), dg::exact_kernel, p.head(), p.d_y.cview(), p.reward(), p.of.entropy_weight, p.scale(1),
                     out.rows(s.row_reward), out.grad_mean.view(), out.log_std_target.view());
        Expected want(p);
        reference::diag_gaussian::exact_objective(p.head_d(), p.targets_d(), p.reward_d(), p.od, p.scale_d(1),
                                                  want.rows(p), want.grad(p));
        compare("exact", p, out, want, s.row_reward, 1e-4, 1e-5);
      }
      {
        Outputs out(p);
        simt::launch(row_launch(form, p.n, s), dg::exact_tangent_kernel, p.head(), p.reward(), static_cast<float>(p.pd / p.N), p.tangent(),
                     out.grad_mean.view(), out.log_std_target.view());
        Expected want(p);
        reference::diag_gaussian::exact_backward_tangent(p.head_d(), p.reward_d(), p.scale_d(1), p.tangent_d(),
                                                         want.grad(p));
        D2R_EMU_EXPECT_CLOSE(checked(out.grad_mean, "exact_tangent mean"), want.grad_mean, 1e-4, 1e-5);
        D2R_EMU_EXPECT_CLOSE(reduce_rows(checked(out.log_std_target, "exact_tangent log_std"), p.B, p.n, p.reduce),
                             want.grad_log_std, 1e-4, 1e-5);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Forms, DiagGaussianObjectiveEmulation,
                         ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                         [](const ::testing::TestParamInfo<RewardForm>& info) {
                           return std::string(form_name(info.param));
                         });

// A row whose G rewards are all equal: σ = e^−40 puts every draw on μ in float (and in double), so
// r_g = −δᵀUδ for all g. Standardize must then give advantages of exactly 0: no policy-gradient
// term at all (grad mean exactly 0, the log_std gradient is the entropy term alone), where rounding
// noise in the group mean, amplified by 1/ε and by 1/σ, used to give huge gradients.
class DiagGaussianPgSurrogateConstantGroup : public ::testing::TestWithParam<RewardForm> {};

TEST_P(DiagGaussianPgSurrogateConstantGroup, StandardizeGivesNoPolicyGradient) {
  const RewardForm form = GetParam();
  for (const std::int64_t G : {10, 16, 37}) {
    SCOPED_TRACE("G = " + std::to_string(G));
    const std::int64_t B = 5, n = 3, N = 9;
    const double lambda = static_cast<double>(0.3f), pd = 1.0 / static_cast<double>(n);
    TestRng rng(static_cast<std::uint64_t>(G) + 10 * static_cast<std::uint64_t>(form));
    std::vector<float> mean = uniform(rng, B * n, 0.5, 1.5), y = uniform(rng, B * n, -1, 1);
    for (std::size_t i = 0; i < mean.size(); i += 2) mean[i] = -mean[i];
    const std::vector<float> log_std(static_cast<std::size_t>(B * n), -40.0f);
    const auto u = reward_params(form, n, rng);
    const FloatMatrix d_mean(B, n, mean), d_ls(B, n, log_std), d_y(B, n, y), d_u(1, param_count(form, n), u);
    FloatMatrix loss(1, B), rew(1, B), gm(B, n), gs(B, n);
    const PgOptions<float> options{0.3f, {Transform::standardize, 1.0f, 1e-6f}, 0.0f, true, N};
    simt::launch(simt::LaunchConfig{1, dg::kFusedWarpsPerBlock * kernels::kWarpSize, fused_shared_bytes(n, G)},
                 dg::fused_surrogate_kernel, DiagGaussian<float>{d_mean.cview(), d_ls.cview()}, d_y.cview(),
                 MahalanobisReward<float>{form, d_u.cvector()}, options, math::DrawPosition{5, 1, 0, nullptr},
                 ObjectiveScale<float>{static_cast<float>(pd), static_cast<float>(N), G},
                 ObjectiveRows<float>{loss.vector(), rew.vector()}, gm.view(), gs.view());
    // Closed form: A = 0, so row_loss = −λ·pd·H/N, row_reward = r, grad mean = 0, grad log_std = −λ·pd/N.
    const auto ud = to_double(u);
    const MahalanobisReward<double> rr{form, vector_view<const double>(ud.data(), ud.size())};
    std::vector<double> want_loss, want_reward, want_gs(static_cast<std::size_t>(B * n), -lambda * pd / N);
    for (std::int64_t b = 0; b < B; ++b) {
      const auto i0 = static_cast<std::size_t>(b * n);
      want_reward.push_back(reference::rewards::mahalanobis_reward(
          rr, n, [&](std::int64_t i) { return double(mean[i0 + i]) - double(y[i0 + i]); }));
      double H = 0;
      for (std::int64_t d = 0; d < n; ++d) H += -40.0 + 0.5 * math::kLog2PiE;
      want_loss.push_back(-lambda * pd * H / N);
    }
    const auto gmv = checked(gm, "grad mean");
    for (std::size_t i = 0; i < gmv.size(); ++i) EXPECT_EQ(gmv[i], 0.0) << "grad mean element " << i;
    D2R_EMU_EXPECT_CLOSE(checked(loss, "row_loss"), want_loss, 1e-5, 1e-6);
    D2R_EMU_EXPECT_CLOSE(checked(rew, "row_reward"), want_reward, 1e-5, 1e-6);
    D2R_EMU_EXPECT_CLOSE(checked(gs, "grad log_std"), want_gs, 1e-5, 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Forms, DiagGaussianPgSurrogateConstantGroup,
                         ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                         [](const ::testing::TestParamInfo<RewardForm>& info) {
                           return std::string(form_name(info.param));
                         });

}  // namespace
}  // namespace d2r::emulation
