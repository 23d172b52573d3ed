// Cases of the registry (host/checks/checks.hpp): the policy-gradient objectives of the three heads.
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ objectives


namespace {
void add_diag_objective_gpu_checks(Table& t);

struct SurrogateVariant {
  Transform kind;
  RewardForm form;
  bool shared, per_dim;
};

/// pg_surrogate per variant, pg_pathwise per (transform, form) and exact_objective per reward form
/// of one Gaussian head family (Head = Diag or Chol; `second` names its second gradient).
template <template <class> class Head>
void add_gaussian_objectives(Table& t, const std::vector<Shape>& shapes, const std::string& name, const std::string& second,
                             const std::vector<SurrogateVariant>& surrogate,
                             const std::vector<std::pair<Transform, RewardForm>>& pathwise,
                             Work (*surrogate_work)(Shape, std::int64_t S), Work (*pathwise_work)(Shape, RewardForm),
                             Work (*exact_work)(Shape, RewardForm)) {
  const Tol tol{2e-3};
  for (const Shape s : shapes) {
    for (const SurrogateVariant v : surrogate) {
      if (s.G < 2 && v.kind != Transform::none) continue;
      if (v.shared && s.B == 1) continue;
      const std::string var = fmt::format("{}{}, {}, {}{}", name, v.shared ? " shared" : "", to_string(v.kind),
                                          form_name(v.form), v.per_dim ? ", per-dim" : "");
      t.add("pg_surrogate", var, gauss_size(s), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, v.shared);
        const Buffer<T> u = put<T>(ctx, reward_params(r, v.form, s.n));
        Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew");
        auto g = h.zeros(ctx);
        timed(ctx, [&] {
          pg_surrogate(ctx, h.head(), h.y(), MahalanobisReward<T>{v.form, u.vector()}, s.G, pg_options<T>(v.kind, v.per_dim),
                       kKey, ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
        });
        return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {second, get(g.b)}};
      }).work_model = stated(surrogate_work(s, v.shared ? 1 : s.B));
    }
    for (const auto& [kind, form] : pathwise) {
      t.add("pg_pathwise", fmt::format("{}, {}, {}", name, to_string(kind), form_name(form)), gauss_size(s), tol,
            [=, kind = kind, form = form](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Head<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew");
              auto g = h.zeros(ctx);
              timed(ctx, [&] {
                pg_pathwise(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, s.G, pg_options<T>(kind), kKey,
                            ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              });
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {second, get(g.b)}};
            }).work_model = stated(pathwise_work(s, form));
    }
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_objective", fmt::format("{}, {}", name, form_name(form)), gauss_size(s), tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Head<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew");
              auto g = h.zeros(ctx);
              timed(ctx, [&] {
                exact_objective(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                                ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              });
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {second, get(g.b)}};
            }).work_model = stated(exact_work(s, form));
    }
  }
}
}  // namespace

void add_objective_checks(Table& t, Level level) {
  add_gaussian_objectives<Diag>(t, diag_shapes(level), "diag", "grad_log_std",
                                {{Transform::none, RewardForm::scalar, false, false},
                                 {Transform::leave_one_out, RewardForm::diagonal, false, true},
                                 {Transform::standardize, RewardForm::full, true, false}},
                                {{Transform::none, RewardForm::diagonal}, {Transform::rbf, RewardForm::diagonal}},
                                [](Shape s, std::int64_t S) { return pg_surrogate_diag_work(s.B, s.n, S, 2); },
                                [](Shape s, RewardForm form) { return pg_pathwise_diag_work(form, s.B, s.n, s.G, s.B); },
                                [](Shape s, RewardForm form) { return exact_objective_diag_work(form, s.B, s.n, s.B); });
  add_gaussian_objectives<Chol>(t, chol_shapes(level), "cholesky", "grad_tril",
                                {{Transform::none, RewardForm::scalar, false, false},
                                 {Transform::leave_one_out, RewardForm::full, true, true}},
                                {{Transform::none, RewardForm::scalar}},
                                [](Shape s, std::int64_t S) { return pg_surrogate_cholesky_work(s.B, s.n, s.G, S, 2); },
                                [](Shape s, RewardForm form) { return pg_pathwise_cholesky_work(form, s.B, s.n, s.G, s.B); },
                                [](Shape s, RewardForm form) { return exact_objective_cholesky_work(form, s.B, s.n, s.B); });
  for (const Shape s : cat_objective_shapes(level, t.self_check)) {
    for (const Transform kind : {Transform::none, Transform::standardize}) {
      if (s.G < 2 && kind != Transform::none) continue;
      const RewardForm form = kind == Transform::none ? RewardForm::scalar : RewardForm::diagonal;
      // standardize with ε = 0.1: a group of equal one-hot rewards (std 0) amplifies float
      // rounding by 1/ε, a conditioning property of the transform (categorical tests, likewise).
      t.add("pg_surrogate", fmt::format("categorical, {}, {}", to_string(kind), form_name(form)), cat_size(s), {2e-3, 1e-3},
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew"), g(ctx, s.B * s.n, "g");
              timed(ctx, [&] {
                pg_surrogate(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, s.G,
                             pg_options<T>(kind, false, 0.1), kKey, ObjectiveRows<T>{loss.vector(), rew.vector()},
                             h.as_grad(g));
              });
              return {cat_draws(ctx, h),
                      {"row_loss", get(loss), s.B},
                      {"row_reward", get(rew), s.B},
                      {"grad_logits", get(g), s.B}};
            }).work_model = stated(pg_surrogate_categorical_work(s.B, s.n, 2));
    }
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_objective", fmt::format("categorical, {}", form_name(form)), cat_size(s), {2e-3},
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew"), g(ctx, s.B * s.n, "g");
              timed(ctx, [&] {
                exact_objective(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                                ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              });
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_logits", get(g)}};
            }).work_model = stated(exact_objective_categorical_work(form, s.B, s.n));
    }
  }
  // The former GPU test's cases: at the GPU test's size class (medium) and above.
  if (level >= Level::medium) add_diag_objective_gpu_checks(t);
  add_cholesky_objective_checks(t, level);
  add_categorical_objective_checks(t, level);
}


}  // namespace d2r::checks

namespace d2r::checks {

// ------------------------------------------------------------------ the former objectives_gpu_test

namespace {
/// Reward parameters as tests/objectives_gpu_test.cpp drew them: scalar and diagonal in [0.3, 1.5];
/// full: off-diagonal in [−0.3, 0.3], diagonal in [0.6, 1.2].
Vec test_reward_params(Rng& r, RewardForm form, std::int64_t d) {
  Vec p(static_cast<std::size_t>(reward_param_count(form, d)));
  for (double& v : p) v = form == RewardForm::full ? r.uniform(-0.3, 0.3) : r.uniform(0.3, 1.5);
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < d; ++i) p[static_cast<std::size_t>(packed(i) + i)] = r.uniform(0.6, 1.2);
  return p;
}

struct DiagObjectiveCase {
  RewardForm form;
  Transform transform;
  std::int64_t B, n, G;
  bool shared;
  bool clip = false;  ///< the fused surrogate clips −pd·log p (always with Transform::none)
};

std::string diag_objective_variant(const char* what, const DiagObjectiveCase& c) {
  return fmt::format("diag {}, {}, {}, {}{}", what, form_name(c.form), to_string(c.transform), c.shared ? "shared" : "per-row",
                     c.clip ? ", clip" : "");
}

/// One case's inputs (float values): mean and y in [−1, 1], log σ in [−0.7, 0.2].
struct DiagObjectiveIn {
  Vec mean, log_std, y, u;
  DiagObjectiveIn(Rng& r, const DiagObjectiveCase& c)
      : mean(r.vec(c.B * c.n, -1, 1)), log_std(r.vec((c.shared ? 1 : c.B) * c.n, -0.7, 0.2)), y(r.vec(c.B * c.n, -1, 1)),
        u(test_reward_params(r, c.form, c.n)) {}
};

enum class DiagObjective { surrogate, pathwise, exact };

/// Runs one objective in T on ctx through strided guarded views: row_loss, row_reward, grad_mean,
/// grad_log_std.
template <class T>
Outputs diag_objective_side(Context& ctx, const DiagObjectiveCase& c, const DiagObjectiveIn& in, DiagObjective what,
                            const PgOptions<T>& o, DrawKey key) {
  const std::int64_t B = c.B, n = c.n, S = c.shared ? 1 : B, P = static_cast<std::int64_t>(in.u.size());
  const Out<T> mean(ctx, B, n, in.mean, "mean"), log_std(ctx, S, n, in.log_std, "log_std"), y(ctx, B, n, in.y, "y"),
      u(ctx, 1, P, in.u, "reward.params");
  Out<T> loss(ctx, 1, B, {}, "row_loss"), rew(ctx, 1, B, {}, "row_reward"), gm(ctx, B, n, {}, "grad_mean"),
      gs(ctx, S, n, {}, "grad_log_std");
  const DiagGaussian<T> head{mean.matrix(B, n), log_std.matrix(S, n)};
  const MahalanobisReward<T> reward{c.form, {u.data(), P}};
  const ObjectiveRows<T> rows{{loss.data(), B}, {rew.data(), B}};
  const DiagGaussianGrad<T> grad{gm.matrix(B, n), gs.matrix(S, n)};
  timed(ctx, [&] {  // the call d2r bench times (a plain call elsewhere)
    if (what == DiagObjective::surrogate) pg_surrogate(ctx, head, y.matrix(B, n), reward, c.G, o, key, rows, grad);
    if (what == DiagObjective::pathwise) pg_pathwise(ctx, head, y.matrix(B, n), reward, c.G, o, key, rows, grad);
    if (what == DiagObjective::exact) exact_objective(ctx, head, y.matrix(B, n), reward, o, rows, grad);
  });
  return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(gm)}, {"grad_log_std", get(gs)}};
}

/// The test's four D2R_EXPECT_CLOSE: row_reward's atol ×n, grad_log_std's ×B when shared.
std::vector<Tol> diag_objective_tols(const DiagObjectiveCase& c, double rtol, double atol) {
  const double scale_rows = c.shared ? static_cast<double>(c.B) : 1.0;
  return {close(rtol, atol), close(rtol, atol * static_cast<double>(c.n)), close(rtol, atol), close(rtol, atol * scale_rows)};
}

constexpr DrawKey kSurrogateKey{.step = 9, .first_row = 4};

/// The fused surrogate (tested side, float) against pg_surrogate on the reference (double), with
/// log_prob_clip in a gap of the reference's own |pd·log p| values (same key), so that float
/// rounding cannot move a draw across the clip; `zero_reward`: u = 0 with value checks off.
Outcome diag_surrogate_case(Env& env, std::uint64_t salt, const DiagObjectiveCase& c, bool zero_reward) {
  Rng r(env.seed, salt);
  DiagObjectiveIn in(r, c);
  if (zero_reward) std::fill(in.u.begin(), in.u.end(), 0.0);
  const ValueChecks checks = zero_reward ? ValueChecks::none : ValueChecks::full;
  const ValueChecksScope test_checks(env.test, checks), ref_checks(env.ref, checks);
  const bool pdm = c.n > 8;
  double clip = 0;
  if (c.clip || c.transform == Transform::none) {
    const std::int64_t B = c.B, n = c.n, G = c.G, S = c.shared ? 1 : B;
    const Buffer<double> mean = put<double>(env.ref, in.mean), log_std = put<double>(env.ref, in.log_std);
    const DiagGaussian<double> head{mean.matrix(B, n), log_std.matrix(S, n)};
    Buffer<double> samples(env.ref, static_cast<std::size_t>(B * G * n)), lp(env.ref, static_cast<std::size_t>(B * G));
    sample(env.ref, head, G, kSurrogateKey, samples.matrix(B * G, n));
    log_prob(env.ref, head, std::as_const(samples).matrix(B * G, n), lp.matrix(B, G));
    const std::vector<double> lp_host = lp.to_host();
    clip = static_cast<float>(pick_clip(Vec(lp_host.begin(), lp_host.end()), pdm ? 1.0 / static_cast<double>(n) : 1.0));
    if (!(clip > 0)) {
      Outcome o;
      o.status = Status::fail;
      o.note = "no gap for the clip";
      return o;
    }
  }
  const auto options = [&](auto one) {
    using T = decltype(one);
    return PgOptions<T>{.entropy_weight = f32<T>(0.3),
                        .transform = {.kind = c.transform, .rbf_gamma = f32<T>(0.5), .standardize_epsilon = f32<T>(1e-6)},
                        .log_prob_clip = static_cast<T>(clip),
                        .per_dimension_mean = pdm,
                        .normaliser_rows = c.B + 3};
  };
  const Outputs got = diag_objective_side<float>(env.test, c, in, DiagObjective::surrogate, options(float{}), kSurrogateKey);
  const Outputs want = diag_objective_side<double>(env.ref, c, in, DiagObjective::surrogate, options(double{}), kSurrogateKey);
  return compare_each(got, want, diag_objective_tols(c, 2e-3, 2e-4));
}

std::vector<DiagObjectiveCase> diag_objective_cases() {
  std::vector<DiagObjectiveCase> out;
  for (RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full})
    for (Transform t : {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out, Transform::standardize}) {
      out.push_back({form, t, 1, 2, 5, false});
      out.push_back({form, t, 37, 17, 16, true});
    }
  out.push_back({RewardForm::diagonal, Transform::none, 300, 128, 50, false});   // the fused kernel's widest head
  out.push_back({RewardForm::scalar, Transform::leave_one_out, 5, 200, 5, true});  // wider than fused: composition
  out.push_back({RewardForm::scalar, Transform::none, 3, 3, 1100, false});         // more draws than fused: composition
  out.push_back({RewardForm::scalar, Transform::none, 4099, 6, 1, true});
  // More than 32 draws per row (the fused kernel's group statistics span several warps' worth)
  // with every group transform, clip on and off, per-row and shared log-std, pdm on (n > 8) and off.
  out.push_back({RewardForm::diagonal, Transform::standardize, 7, 9, 70, false, true});
  out.push_back({RewardForm::scalar, Transform::standardize, 33, 5, 64, true, false});
  out.push_back({RewardForm::full, Transform::normalize, 5, 12, 40, false, true});
  out.push_back({RewardForm::diagonal, Transform::normalize, 3, 3, 33, true, false});
  out.push_back({RewardForm::scalar, Transform::leave_one_out, 6, 17, 100, true, true});
  out.push_back({RewardForm::full, Transform::leave_one_out, 9, 4, 65, false, false});
  return out;
}

/// The former tests/objectives_gpu_test.cpp comparisons (DiagObjectiveGpu, CategoricalExactGpu):
/// its 40 diagonal cases (every form x transform, G > 32 with every group transform, clip on and
/// off), each with the fused surrogate against the reference, the fused surrogate against the
/// unfused composition on the tested backend, and (none and rbf) pathwise and exact; the
/// standardize of equal rewards (u = 0, value checks off, clip off and on); the categorical exact
/// objective with a masked class. Tolerances are its D2R_EXPECT_CLOSE's, per output.
void add_diag_objective_gpu_checks(Table& t) {
  for (const DiagObjectiveCase& c : diag_objective_cases()) {
    const std::string size = gauss_size(Shape{c.B, c.n, c.G});
    t.add_custom("pg_surrogate", diag_objective_variant("fused", c), size, close(2e-3, 2e-4),
                 [c](Env& env, std::uint64_t salt) { return diag_surrogate_case(env, salt, c, false); });
    // The fused kernel against the composition of primitives, both on the tested backend (float).
    t.add_custom("pg_surrogate", diag_objective_variant("fused vs unfused", c), size, close(1e-3, 1e-5),
                 [c](Env& env, std::uint64_t salt) {
                   Context& ctx = env.test;
                   Rng r(env.seed, salt);
                   const std::int64_t B = c.B, n = c.n, G = c.G, S = c.shared ? 1 : B;
                   const Vec u_host = test_reward_params(r, c.form, n);
                   const Out<float> mean(ctx, B, n, r.vec(B * n, -1, 1), "mean"), ls(ctx, S, n, r.vec(S * n, -0.5, 0.1), "log_std"),
                       y(ctx, B, n, r.vec(B * n, -1, 1), "y"), up(ctx, u_host, "reward.params");
                   Out<float> samples(ctx, B * G, n, {}, "samples"), lp(ctx, B, G, {}, "log_prob"), rw(ctx, B, G, {}, "rewards"),
                       adv(ctx, B, G, {}, "advantages"), l1(ctx, B, "row_loss"), l2(ctx, B, "row_loss unfused"),
                       gm1(ctx, B, n, {}, "grad_mean"), gm2(ctx, B, n, {}, "grad_mean unfused"), gs1(ctx, S, n, {}, "grad_log_std"),
                       gs2(ctx, S, n, {}, "grad_log_std unfused");
                   const DiagGaussian<float> head{mean.matrix(B, n), ls.matrix(S, n)};
                   const MahalanobisReward<float> reward{c.form, up.vector()};
                   const PgOptions<float> o{.entropy_weight = 0.1f, .transform = {.kind = c.transform}};
                   pg_surrogate(ctx, head, y.matrix(B, n), reward, G, o, {.step = 1}, {l1.vector(), {}}, {gm1.matrix(B, n), gs1.matrix(S, n)});
                   pg_surrogate_unfused(ctx, head, y.matrix(B, n), reward, G, o, {.step = 1},
                                        {samples.matrix(B * G, n), lp.matrix(B, G), rw.matrix(B, G), adv.matrix(B, G)},
                                        {l2.vector(), {}}, {gm2.matrix(B, n), gs2.matrix(S, n)});
                   (void)get(samples), (void)get(lp), (void)get(rw), (void)get(adv);  // guarded: every element written
                   return compare_each({{"row_loss", get(l1)}, {"grad_mean", get(gm1)}, {"grad_log_std", get(gs1)}},
                                       {{"row_loss", get(l2)}, {"grad_mean", get(gm2)}, {"grad_log_std", get(gs2)}},
                                       {close(1e-4, 1e-5), close(1e-3, 1e-5), close(1e-3, 1e-5 * static_cast<double>(B))});
                 });
    if (c.transform != Transform::none && c.transform != Transform::rbf) continue;  // pathwise takes none or rbf only
    for (const DiagObjective what : {DiagObjective::pathwise, DiagObjective::exact}) {
      const bool pathwise = what == DiagObjective::pathwise;
      const double rtol = pathwise ? 1e-3 : 1e-4, atol = pathwise ? 1e-4 : 1e-5;
      t.add(pathwise ? "pg_pathwise" : "exact_objective", diag_objective_variant("strided", c), size, close(rtol, atol),
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const DiagObjectiveIn in(r, c);
              const PgOptions<T> o{.entropy_weight = f32<T>(0.2),
                                   .transform = {.kind = c.transform, .rbf_gamma = f32<T>(0.3), .standardize_epsilon = f32<T>(1e-6)}};
              return diag_objective_side<T>(ctx, c, in, what, o, {.step = 2});
            }).work_model = stated(pathwise ? pg_pathwise_diag_work(c.form, c.B, c.n, c.G, c.shared ? 1 : c.B)
                                            : exact_objective_diag_work(c.form, c.B, c.n, c.shared ? 1 : c.B));
    }
  }
  // Standardize over a group whose rewards are all equal: U = 0 (accepted with value checks off)
  // makes every reward exactly 0 on both sides, so the advantages are 0 / (0 + ε) = 0 and only the
  // entropy term remains (G > 32, clip off and on).
  for (const bool clip : {false, true}) {
    const DiagObjectiveCase c{RewardForm::scalar, Transform::standardize, 7, 9, 70, false, clip};
    t.add_custom("pg_surrogate", diag_objective_variant("fused, equal rewards (u = 0)", c), gauss_size(Shape{c.B, c.n, c.G}),
                 close(2e-3, 2e-4), [c](Env& env, std::uint64_t salt) { return diag_surrogate_case(env, salt, c, true); });
  }
  for (RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
    for (std::int64_t C : {2, 10, 200, 5000}) {
      if (form == RewardForm::full && C > kMaxOneHotFullClasses) continue;
      if (t.self_check && C > kSelfCheckMaxClasses) continue;
      const std::int64_t B = 33;
      t.add_custom("exact_objective", fmt::format("categorical strided, {}, masked class", form_name(form)), cat_size(Shape{B, C, 1}),
                   close(1e-3, 1e-7), [=](Env& env, std::uint64_t salt) {
                     Rng r(env.seed, salt);
                     Vec logits = r.vec(B * C, -3, 3);
                     logits[1] = -kInf;
                     const Vec u = test_reward_params(r, form, C);
                     Idx labels(static_cast<std::size_t>(B));
                     for (auto& l : labels) l = r.index(C);
                     const auto side = [&](Context& ctx, auto one) -> Outputs {
                       using T = decltype(one);
                       const auto P = static_cast<std::int64_t>(u.size());
                       const Out<T> d_logits(ctx, B, C, logits, "logits"), d_u(ctx, 1, P, u, "reward.params");
                       const Out<std::int32_t> d_labels(ctx, 1, B, Vec(labels.begin(), labels.end()), "labels");
                       Out<T> loss(ctx, 1, B, {}, "row_loss"), rew(ctx, 1, B, {}, "row_reward"), grad(ctx, B, C, {}, "grad_logits");
                       exact_objective(ctx, Categorical<T>{d_logits.matrix(B, C)}, VectorView<const std::int32_t>{d_labels.data(), B},
                                       MahalanobisReward<T>{form, {d_u.data(), P}},
                                       PgOptions<T>{.entropy_weight = f32<T>(0.4), .normaliser_rows = 50},
                                       {{loss.data(), B}, {rew.data(), B}}, CategoricalGrad<T>{grad.matrix(B, C)});
                       return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_logits", get(grad)}};
                     };
                     return compare_each(side(env.test, float{}), side(env.ref, double{}),
                                         {close(1e-4, 1e-6), close(1e-4, 1e-5), close(1e-3, 1e-7)});
                   });
    }
  }
}
}  // namespace


}  // namespace d2r::checks
