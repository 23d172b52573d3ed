// Emulated inner-objective kernels of the Cholesky-Gaussian head (kernels/heads/cholesky_gaussian/objectives.cuh)
// against the CPU reference in double: the fused REINFORCE surrogate (against the reference
// composition the cpu backend runs), the pathwise and exact objectives, the exact objective's
// tangent and mixed product. One warp per block and per row, the launchers' dynamic shared memory
// sizes (kernels/heads/cholesky_gaussian/launch.cu). Also the standardize fix on constant reward groups.
#include "tests/emulation/kernel_emulation.hpp"

#include "host/reference/heads/cholesky_gaussian.hpp"
#include "host/reference/mixed_product.hpp"
#include "host/reference/objectives.hpp"
#include "host/reference/rewards.hpp"
#include "kernels/heads/cholesky_gaussian/objectives.cuh"

namespace d2r::emulation {
namespace {

namespace co = kernels::cholesky_objectives;

struct Shape {
  const char* name;
  std::int64_t B, n, G;
  bool shared_tril, per_dim_mean, clip;
  unsigned grid;  // blocks of one warp, fewer than the rows: the row loop runs again
  bool row_reward = true;
};

// n = 1 and G = 1; G > 32 (several batches, a partial last one) and G = 70; n = 64 =
// kMaxCholeskyDim; shared factors; per-dimension means; clipping (the clip in a gap of the
// |pd log p| values); an empty row_reward.
const Shape kShapes[] = {
    {"B3_n1_G1", 3, 1, 1, false, false, false, 2},
    {"B5_n4_G37_shared_pdm", 5, 4, 37, true, true, false, 2},
    {"B3_n3_G70_no_reward", 3, 3, 70, false, false, false, 2, false},
    {"B2_n64_G5", 2, 64, 5, false, false, false, 1},
    {"B4_n5_G40_shared_clip", 4, 5, 40, true, false, true, 3},
    {"B3_n9_G7_pdm_clip", 3, 9, 7, false, true, true, 1},
};

struct CholeskyProblem {
  RewardForm form;
  std::int64_t B, n, G, R, P, N;
  bool reduce;  // shared factor with B > 1: per-row targets summed by the launcher
  double pd;
  std::vector<float> mean, y, tril, u, t_mean, t_tril;
  FloatMatrix d_mean, d_y, d_tril, d_u, d_tm, d_tt;
  std::vector<double> md, yd, td, ud, tmd, ttd;
  float jitter = 1e-4f;
  math::DrawPosition pos{0x511, 23, 11, nullptr};
  PgOptions<float> of;
  PgOptions<double> od;

  CholeskyProblem(RewardForm form_, Transform kind, const Shape& s)
      : form(form_), B(s.B), n(s.n), G(s.G), R(s.shared_tril ? 1 : s.B), P(packed_size(s.n)), N(s.B + 5),
        reduce(s.shared_tril && s.B > 1), pd(s.per_dim_mean ? 1.0 / static_cast<double>(s.n) : 1.0), d_mean(B, n),
        d_y(B, n), d_tril(R, P), d_u(1, param_count(form_, n)), d_tm(B, n), d_tt(R, P) {
    TestRng rng(static_cast<std::uint64_t>(B * 1009 + n * 31 + G * 7 + 3 * static_cast<int>(form) + static_cast<int>(kind)));
    mean = uniform(rng, B * n, -1, 1);
    y = uniform(rng, B * n, -1, 1);
    tril = raw_tril(rng, R, n);
    u = reward_params(form, n, rng, 0.5 / std::sqrt(static_cast<double>(n)));
    t_mean = uniform(rng, B * n, -1, 1);
    t_tril = uniform(rng, R * P, -1, 1);
    d_mean.fill(mean);
    d_y.fill(y);
    d_tril.fill(tril);
    d_u.fill(u);
    d_tm.fill(t_mean);
    d_tt.fill(t_tril);
    md = to_double(mean);
    yd = to_double(y);
    td = to_double(tril);
    ud = to_double(u);
    tmd = to_double(t_mean);
    ttd = to_double(t_tril);
    float clip = 0.0f;
    if (s.clip) {
      std::vector<double> smp(static_cast<std::size_t>(B * G * n)), lp(static_cast<std::size_t>(B * G));
      reference::cholesky_gaussian::sample(head_d(), G, pos, matrix_view(smp.data(), B * G, n));
      reference::cholesky_gaussian::log_prob(head_d(), matrix_view<const double>(smp.data(), B * G, n),
                                             matrix_view(lp.data(), B, G));
      clip = static_cast<float>(clip_in_gap(lp, pd));
    }
    const auto gamma = static_cast<float>(0.3 / static_cast<double>(n));
    of = PgOptions<float>{0.7f, {kind, gamma, 1e-6f}, clip, s.per_dim_mean, N};
    od = PgOptions<double>{static_cast<double>(0.7f), {kind, static_cast<double>(gamma), static_cast<double>(1e-6f)},
                           static_cast<double>(clip), s.per_dim_mean, N};
  }
  CholeskyGaussian<float> head() const { return {d_mean.cview(), d_tril.cview(), jitter}; }
  CholeskyGaussian<float> tangent() const { return {d_tm.cview(), d_tt.cview()}; }
  MahalanobisReward<float> reward() const { return {form, d_u.cvector()}; }
  CholeskyGaussian<double> head_d() const {
    return {matrix_view(md.data(), B, n), matrix_view(td.data(), R, P), static_cast<double>(jitter)};
  }
  CholeskyGaussian<double> tangent_d() const { return {matrix_view(tmd.data(), B, n), matrix_view(ttd.data(), R, P)}; }
  MahalanobisReward<double> reward_d() const { return {form, vector_view<const double>(ud.data(), ud.size())}; }
  MatrixView<const double> targets_d() const { return matrix_view<const double>(yd.data(), B, n); }
  ObjectiveScale<float> scale(std::int64_t g) const { return {static_cast<float>(pd), static_cast<float>(N), g}; }
  ObjectiveScale<double> scale_d(std::int64_t g) const { return {pd, static_cast<double>(N), g}; }
  simt::LaunchConfig config(unsigned grid, std::size_t shared_bytes) const {
    return {grid, static_cast<unsigned>(co::kThreads), shared_bytes};
  }
};

struct Outputs {
  FloatMatrix loss, reward, grad_mean, tril_target;
  explicit Outputs(const CholeskyProblem& p)
      : loss(1, p.B), reward(1, p.B), grad_mean(p.B, p.n), tril_target(p.reduce ? p.B : p.R, p.P) {}
  ObjectiveRows<float> rows(bool with_reward) { return {loss.vector(), with_reward ? reward.vector() : VectorView<float>{}}; }
};

struct Expected {
  std::vector<double> loss, reward, grad_mean, grad_tril;
  explicit Expected(const CholeskyProblem& p)
      : loss(static_cast<std::size_t>(p.B)), reward(loss.size()), grad_mean(static_cast<std::size_t>(p.B * p.n)),
        grad_tril(static_cast<std::size_t>(p.R * p.P)) {}
  ObjectiveRows<double> rows(const CholeskyProblem& p) {
    return {vector_view(loss.data(), p.B), vector_view(reward.data(), p.B)};
  }
  CholeskyGaussianGrad<double> grad(const CholeskyProblem& p) {
    return {matrix_view(grad_mean.data(), p.B, p.n), matrix_view(grad_tril.data(), p.R, p.P)};
  }
};

void compare(const char* what, const CholeskyProblem& p, const Outputs& got, Expected& want, bool with_reward,
             double rtol_value, double rtol_grad) {
  SCOPED_TRACE(what);
  D2R_EMU_EXPECT_CLOSE(checked(got.loss, "row_loss"), want.loss, rtol_value, 0.1 * rtol_value);
  if (with_reward) {
    D2R_EMU_EXPECT_CLOSE(checked(got.reward, "row_reward"), want.reward, rtol_value, 0.1 * rtol_value);
  } else {
    EXPECT_TRUE(got.reward.untouched()) << "row_reward was empty but its buffer was written";
  }
  D2R_EMU_EXPECT_CLOSE(checked(got.grad_mean, "grad mean"), want.grad_mean, rtol_grad, 0.1 * rtol_grad);
  D2R_EMU_EXPECT_CLOSE(reduce_rows(checked(got.tril_target, "grad tril"), p.B, p.P, p.reduce), want.grad_tril, rtol_grad,
                       0.1 * rtol_grad);
}

void run_surrogate(const CholeskyProblem& p, const Shape& s) {
  Outputs out(p);
  simt::launch(p.config(s.grid, co::surrogate_shared_bytes(static_cast<int>(p.n), p.G)), co::surrogate_kernel, p.head(),
               p.d_y.cview(), p.reward(), p.of, p.pos, p.scale(p.G), out.rows(s.row_reward), out.grad_mean.view(),
               out.tril_target.view());
  const std::int64_t B = p.B, G = p.G, n = p.n;
  std::vector<double> smp(static_cast<std::size_t>(B * G * n)), lp(static_cast<std::size_t>(B * G)), r(lp.size()),
      a(lp.size()), dlp(lp.size()), H(static_cast<std::size_t>(B)), de(H.size());
  const auto smpv = matrix_view<const double>(smp.data(), B * G, n);
  reference::cholesky_gaussian::sample(p.head_d(), G, p.pos, matrix_view(smp.data(), B * G, n));
  reference::cholesky_gaussian::log_prob(p.head_d(), smpv, matrix_view(lp.data(), B, G));
  reference::rewards::reward_continuous(p.reward_d(), smpv, p.targets_d(), matrix_view(r.data(), B, G));
  reference::rewards::transform_rewards(p.od.transform, matrix_view<const double>(r.data(), B, G),
                                        matrix_view(a.data(), B, G));
  reference::cholesky_gaussian::entropy(p.head_d(), vector_view(H.data(), B));
  Expected want(p);
  reference::objectives::pg_row_terms<double>(
      p.od, p.scale_d(G), matrix_view<const double>(lp.data(), B, G), matrix_view<const double>(r.data(), B, G),
      matrix_view<const double>(a.data(), B, G), vector_view<const double>(H.data(), B), matrix_view(dlp.data(), B, G),
      vector_view(de.data(), B), want.rows(p));
  reference::cholesky_gaussian::backward(p.head_d(), smpv, matrix_view<const double>(dlp.data(), B, G),
                                         vector_view<const double>(de.data(), B), want.grad(p));
  compare("surrogate", p, out, want, s.row_reward, 1e-3, 2e-3);
}

class CholeskyGaussianPgSurrogateEmulation : public ::testing::TestWithParam<std::tuple<RewardForm, Transform>> {};

TEST_P(CholeskyGaussianPgSurrogateEmulation, FusedKernelMatchesReferenceComposition) {
  const auto [form, kind] = GetParam();
  for (const Shape& s : kShapes) {
    if (s.G < 2 && needs_two(kind)) continue;
    SCOPED_TRACE(s.name);
    run_surrogate(CholeskyProblem(form, kind, s), s);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CholeskyGaussianPgSurrogateEmulation,
                         ::testing::Combine(::testing::Values(RewardForm::scalar, RewardForm::diagonal,
                                                              RewardForm::full),
                                            ::testing::Values(Transform::none, Transform::normalize, Transform::rbf,
                                                              Transform::leave_one_out, Transform::standardize)),
                         [](const ::testing::TestParamInfo<std::tuple<RewardForm, Transform>>& info) {
                           return std::string(form_name(std::get<0>(info.param))) + "_" +
                                  transform_name(std::get<1>(info.param));
                         });

// Pathwise (transforms none and rbf), exact, exact tangent and exact mixed product.
class CholeskyGaussianObjectiveEmulation : public ::testing::TestWithParam<RewardForm> {};

TEST_P(CholeskyGaussianObjectiveEmulation, PathwiseExactTangentAndMixedMatchReference) {
  const RewardForm form = GetParam();
  for (const Shape& s : kShapes) {
    if (s.clip) continue;  // the clip is the surrogate's
    for (const Transform kind : {Transform::none, Transform::rbf}) {
      SCOPED_TRACE(std::string(s.name) + " " + transform_name(kind));
      const CholeskyProblem p(form, kind, s);
      const int ni = static_cast<int>(p.n);
      {
        Outputs out(p);
        simt::launch(p.config(s.grid, co::pathwise_shared_bytes(ni)), co::pathwise_kernel, p.head(), p.d_y.cview(),
                     p.reward(), p.of, p.pos, p.scale(p.G), out.rows(s.row_reward), out.grad_mean.view(),
                     out.tril_target.view());
        Expected want(p);
        reference::cholesky_gaussian::pg_pathwise(p.head_d(), p.targets_d(), p.reward_d(), p.od, p.pos, p.scale_d(p.G),
                                                  want.rows(p), want.grad(p));
        compare("pathwise", p, out, want, s.row_reward, 1e-3, 2e-3);
      }
      if (kind != Transform::none) continue;  // the exact objective has no transform
      {
        Outputs out(p);
        simt::launch(p.config(s.grid, co::exact_shared_bytes(ni)), co::exact_kernel, p.head(), p.d_y.cview(), p.reward(),
                     p.of.entropy_weight, p.scale(1), out.rows(s.row_reward), out.grad_mean.view(), out.tril_target.view());
        Expected want(p);
        reference::cholesky_gaussian::exact_objective(p.head_d(), p.targets_d(), p.reward_d(), p.od, p.scale_d(1),
                                                      want.rows(p), want.grad(p));
        compare("exact", p, out, want, s.row_reward, 1e-3, 2e-3);
      }
      {
        Outputs out(p);
        simt::launch(p.config(s.grid, co::exact_tangent_shared_bytes(ni)), co::exact_tangent_kernel, p.head(), p.reward(),
                     p.of.entropy_weight, static_cast<float>(p.pd / static_cast<double>(p.N)), p.tangent(),
                     out.grad_mean.view(), out.tril_target.view());
        Expected want(p);
        reference::cholesky_gaussian::exact_backward_tangent(p.head_d(), p.reward_d(), p.od, p.scale_d(1),
                                                             p.tangent_d(), want.grad(p));
        D2R_EMU_EXPECT_CLOSE(checked(out.grad_mean, "exact_tangent mean"), want.grad_mean, 1e-3, 1e-4);
        D2R_EMU_EXPECT_CLOSE(reduce_rows(checked(out.tril_target, "exact_tangent tril"), p.B, p.P, p.reduce),
                             want.grad_tril, 1e-3, 1e-4);
      }
      {
        const std::int64_t U = param_count(form, p.n);
        FloatMatrix partial(p.B, U);
        simt::launch(p.config(s.grid, co::exact_mixed_shared_bytes(ni)), co::exact_mixed_kernel, p.head(), p.d_y.cview(),
                     p.reward(), static_cast<float>(p.pd / static_cast<double>(p.N)), p.tangent(), partial.view());
        std::vector<double> want(static_cast<std::size_t>(U));
        reference::cholesky_gaussian::exact_mixed_product(p.head_d(), p.targets_d(), p.reward_d(), p.scale_d(1),
                                                          p.tangent_d(), vector_view(want.data(), U));
        D2R_EMU_EXPECT_CLOSE(column_sums(checked(partial, "exact_mixed partial"), p.B, U), want, 1e-3, 1e-4);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Forms, CholeskyGaussianObjectiveEmulation,
                         ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                         [](const ::testing::TestParamInfo<RewardForm>& info) {
                           return std::string(form_name(info.param));
                         });

// A row whose G rewards are all equal: L = softplus(−40)·I (jitter 0) puts every draw on μ in
// float (and in double), so r_g = −δᵀUδ for all g. Standardize must give advantages of exactly 0:
// no policy-gradient term (grad mean and off-diagonal tril exactly 0; the diagonal is the entropy
// term (e / L_ii)·sigmoid(raw_ii) alone), where rounding noise in the group mean, amplified by 1/ε
// and by 1/L, used to give huge gradients.
class CholeskyGaussianPgSurrogateConstantGroup : public ::testing::TestWithParam<RewardForm> {};

TEST_P(CholeskyGaussianPgSurrogateConstantGroup, StandardizeGivesNoPolicyGradient) {
  const RewardForm form = GetParam();
  for (const std::int64_t G : {10, 16, 37}) {
    SCOPED_TRACE("G = " + std::to_string(G));
    const std::int64_t B = 8, n = 3, P = packed_size(n), N = 11;
    const double lambda = static_cast<double>(0.7f), pd = 1.0 / static_cast<double>(n), raw = -40.0;
    TestRng rng(static_cast<std::uint64_t>(G) + 10 * static_cast<std::uint64_t>(form));
    std::vector<float> mean = uniform(rng, B * n, 0.5, 1.5), y = uniform(rng, B * n, -1, 1);
    for (std::size_t i = 0; i < mean.size(); i += 2) mean[i] = -mean[i];
    std::vector<float> tril(static_cast<std::size_t>(B * P), 0.0f);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < n; ++i) tril[static_cast<std::size_t>(b * P + i * (i + 3) / 2)] = static_cast<float>(raw);
    const auto u = reward_params(form, n, rng);
    const FloatMatrix d_mean(B, n, mean), d_tril(B, P, tril), d_y(B, n, y), d_u(1, param_count(form, n), u);
    FloatMatrix loss(1, B), rew(1, B), gm(B, n), gt(B, P);
    const PgOptions<float> options{0.7f, {Transform::standardize, 1.0f, 1e-6f}, 0.0f, true, N};
    simt::launch(simt::LaunchConfig{2, static_cast<unsigned>(co::kThreads), co::surrogate_shared_bytes(static_cast<int>(n), G)},
                 co::surrogate_kernel, CholeskyGaussian<float>{d_mean.cview(), d_tril.cview(), 0.0f}, d_y.cview(),
                 MahalanobisReward<float>{form, d_u.cvector()}, options, math::DrawPosition{5, 1, 0, nullptr},
                 ObjectiveScale<float>{static_cast<float>(pd), static_cast<float>(N), G},
                 ObjectiveRows<float>{loss.vector(), rew.vector()}, gm.view(), gt.view());
    // Closed form with A = 0: row_loss = −λ·pd·H/N, row_reward = r, grad mean = 0,
    // grad tril = diag(e·sigmoid(raw)/softplus(raw)), e = −λ·pd/N.
    const auto ud = to_double(u);
    const MahalanobisReward<double> rr{form, vector_view<const double>(ud.data(), ud.size())};
    const double l = math::softplus(raw), e = -lambda * pd / static_cast<double>(N);
    const double H = static_cast<double>(n) * (std::log(l) + 0.5 * math::kLog2PiE);
    std::vector<double> want_loss, want_reward, want_gt(static_cast<std::size_t>(B * P), 0.0);
    for (std::int64_t b = 0; b < B; ++b) {
      const auto i0 = static_cast<std::size_t>(b * n);
      want_reward.push_back(reference::rewards::mahalanobis_reward(
          rr, n, [&](std::int64_t i) { return double(mean[i0 + i]) - double(y[i0 + i]); }));
      want_loss.push_back(-lambda * pd * H / static_cast<double>(N));
      for (std::int64_t i = 0; i < n; ++i)
        want_gt[static_cast<std::size_t>(b * P + i * (i + 3) / 2)] = e * math::sigmoid(raw) / l;
    }
    const auto gmv = checked(gm, "grad mean"), gtv = checked(gt, "grad tril");
    for (std::size_t i = 0; i < gmv.size(); ++i) EXPECT_EQ(gmv[i], 0.0) << "grad mean element " << i;
    for (std::size_t i = 0; i < gtv.size(); ++i) {
      if (want_gt[i] == 0.0) {
        EXPECT_EQ(gtv[i], 0.0) << "grad tril off-diagonal element " << i;
      }
    }
    D2R_EMU_EXPECT_CLOSE(checked(loss, "row_loss"), want_loss, 1e-5, 1e-6);
    D2R_EMU_EXPECT_CLOSE(checked(rew, "row_reward"), want_reward, 1e-5, 1e-6);
    D2R_EMU_EXPECT_CLOSE(gtv, want_gt, 1e-5, 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Forms, CholeskyGaussianPgSurrogateConstantGroup,
                         ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                         [](const ::testing::TestParamInfo<RewardForm>& info) {
                           return std::string(form_name(info.param));
                         });

}  // namespace
}  // namespace d2r::emulation
