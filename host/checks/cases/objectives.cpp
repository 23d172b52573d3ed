// Cases of the registry (host/checks/checks.hpp): the policy-gradient objectives of the three heads.
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ objectives


void add_objective_checks(Table& t, Level level) {
  const Tol tol{2e-3};
  struct Variant {
    Transform kind;
    RewardForm form;
    bool shared, per_dim;
  };
  for (const Shape s : diag_shapes(level)) {
    for (const Variant v : {Variant{Transform::none, RewardForm::scalar, false, false},
                            Variant{Transform::leave_one_out, RewardForm::diagonal, false, true},
                            Variant{Transform::standardize, RewardForm::full, true, false}}) {
      if (s.G < 2 && v.kind != Transform::none) continue;
      if (v.shared && s.B == 1) continue;
      const std::string var = fmt::format("diag{}, {}, {}{}", v.shared ? " shared" : "", to_string(v.kind),
                                          form_name(v.form), v.per_dim ? ", per-dim" : "");
      t.add("pg_surrogate", var, gauss_size(s), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Diag<T> h(ctx, r, s, v.shared);
        const Buffer<T> u = put<T>(ctx, reward_params(r, v.form, s.n));
        Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew");
        auto g = h.zeros(ctx);
        pg_surrogate(ctx, h.head(), h.y(), MahalanobisReward<T>{v.form, u.vector()}, s.G, pg_options<T>(v.kind, v.per_dim),
                     kKey, ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
        return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_log_std", get(g.b)}};
      });
    }
    for (const Transform kind : {Transform::none, Transform::rbf}) {
      t.add("pg_pathwise", fmt::format("diag, {}", to_string(kind)), gauss_size(s), tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, RewardForm::diagonal, s.n));
              Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew");
              auto g = h.zeros(ctx);
              pg_pathwise(ctx, h.head(), h.y(), MahalanobisReward<T>{RewardForm::diagonal, u.vector()}, s.G,
                          pg_options<T>(kind), kKey, ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_log_std", get(g.b)}};
            });
    }
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_objective", fmt::format("diag, {}", form_name(form)), gauss_size(s), tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew");
              auto g = h.zeros(ctx);
              exact_objective(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                              ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_log_std", get(g.b)}};
            });
    }
  }
  for (const Shape s : chol_shapes(level)) {
    for (const Variant v : {Variant{Transform::none, RewardForm::scalar, false, false},
                            Variant{Transform::leave_one_out, RewardForm::full, true, true}}) {
      if (s.G < 2 && v.kind != Transform::none) continue;
      if (v.shared && s.B == 1) continue;
      const std::string var = fmt::format("cholesky{}, {}, {}{}", v.shared ? " shared" : "", to_string(v.kind),
                                          form_name(v.form), v.per_dim ? ", per-dim" : "");
      t.add("pg_surrogate", var, gauss_size(s), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Chol<T> h(ctx, r, s, v.shared);
        const Buffer<T> u = put<T>(ctx, reward_params(r, v.form, s.n));
        Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew");
        auto g = h.zeros(ctx);
        pg_surrogate(ctx, h.head(), h.y(), MahalanobisReward<T>{v.form, u.vector()}, s.G, pg_options<T>(v.kind, v.per_dim),
                     kKey, ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
        return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_tril", get(g.b)}};
      });
    }
    t.add("pg_pathwise", "cholesky, none", gauss_size(s), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Chol<T> h(ctx, r, s, false);
      const Buffer<T> u = put<T>(ctx, reward_params(r, RewardForm::scalar, s.n));
      Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew");
      auto g = h.zeros(ctx);
      pg_pathwise(ctx, h.head(), h.y(), MahalanobisReward<T>{RewardForm::scalar, u.vector()}, s.G,
                  pg_options<T>(Transform::none), kKey, ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
      return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_tril", get(g.b)}};
    });
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_objective", fmt::format("cholesky, {}", form_name(form)), gauss_size(s), tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Chol<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew");
              auto g = h.zeros(ctx);
              exact_objective(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                              ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_tril", get(g.b)}};
            });
    }
  }
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
              pg_surrogate(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, s.G,
                           pg_options<T>(kind, false, 0.1), kKey, ObjectiveRows<T>{loss.vector(), rew.vector()},
                           h.as_grad(g));
              return {cat_draws(ctx, h),
                      {"row_loss", get(loss), s.B},
                      {"row_reward", get(rew), s.B},
                      {"grad_logits", get(g), s.B}};
            });
    }
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_objective", fmt::format("categorical, {}", form_name(form)), cat_size(s), {2e-3},
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Out<T> loss(ctx, s.B, "loss"), rew(ctx, s.B, "rew"), g(ctx, s.B * s.n, "g");
              exact_objective(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                              ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_logits", get(g)}};
            });
    }
  }
}


}  // namespace d2r::checks
