// Cases of the registry (host/checks/checks.hpp): the heads' second-order primitives (JVPs, tangents, mixed products).
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ second order (head level)

void add_second_order_checks(Table& t, Level level) {
  const Tol tol{2e-3};
  for (const Shape s : diag_shapes(level)) {
    const std::string size = gauss_size(s);
    t.add("log_prob_jvp", "diag", size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Diag<T> h(ctx, r, s, false);
      const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3));
      const auto tan = h.like(ctx, r);
      Out<T> out(ctx, s.B * s.G, "out");
      log_prob_jvp(ctx, h.head(), y.matrix(s.B * s.G, s.n), h.as_head(tan), out.matrix(s.B, s.G));
      return {{"jvp", get(out)}};
    });
    for (const bool shared : {false, true}) {
      if (shared && s.B == 1) continue;
      t.add("backward_tangent", shared ? "diag, shared log-std" : "diag", size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, shared);
              const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)),
                              e = put<T>(ctx, r.vec(s.B, -1, 1));
              const auto tan = h.like(ctx, r);
              auto g = h.zeros(ctx);
              backward_tangent(ctx, h.head(), y.matrix(s.B * s.G, s.n), c.matrix(s.B, s.G), e.vector(), h.as_head(tan),
                               h.as_grad(g));
              return {{"grad_mean_tangent", get(g.a)}, {"grad_log_std_tangent", get(g.b)}};
            });
    }
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_backward_tangent", fmt::format("diag, {}", form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              const auto tan = h.like(ctx, r);
              auto g = h.zeros(ctx);
              exact_backward_tangent(ctx, h.head(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                                     h.as_head(tan), h.as_grad(g));
              return {{"grad_mean_tangent", get(g.a)}, {"grad_log_std_tangent", get(g.b)}};
            });
      t.add("exact_mixed_product", fmt::format("diag, {}", form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, false);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host);
              const auto tan = h.like(ctx, r);
              Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
              exact_mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                  pg_options<T>(Transform::none), h.as_head(tan), g.vector());
              return {{"grad_params", get(g)}};
            });
    }
    for (const Transform kind : {Transform::none, Transform::leave_one_out}) {
      if (s.G < 2 && kind != Transform::none) continue;
      const RewardForm form = kind == Transform::none ? RewardForm::scalar : RewardForm::diagonal;
      t.add("mixed_product", fmt::format("diag, {}, {}", to_string(kind), form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, false);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host);
              const auto tan = h.like(ctx, r);
              Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
              mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, s.G, pg_options<T>(kind), kKey,
                            h.as_head(tan), g.vector());
              return {{"grad_params", get(g)}};
            });
    }
  }
  for (const Shape s : chol_shapes(level)) {
    const std::string size = gauss_size(s);
    t.add("log_prob_jvp", "cholesky", size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Chol<T> h(ctx, r, s, false);
      const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3));
      const auto tan = h.like(ctx, r);
      Out<T> out(ctx, s.B * s.G, "out");
      log_prob_jvp(ctx, h.head(), y.matrix(s.B * s.G, s.n), h.as_head(tan), out.matrix(s.B, s.G));
      return {{"jvp", get(out)}};
    });
    t.add("backward_tangent", "cholesky", size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Chol<T> h(ctx, r, s, false);
      const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)),
                      e = put<T>(ctx, r.vec(s.B, -1, 1));
      const auto tan = h.like(ctx, r);
      auto g = h.zeros(ctx);
      backward_tangent(ctx, h.head(), y.matrix(s.B * s.G, s.n), c.matrix(s.B, s.G), e.vector(), h.as_head(tan),
                       h.as_grad(g));
      return {{"grad_mean_tangent", get(g.a)}, {"grad_tril_tangent", get(g.b)}};
    });
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_backward_tangent", fmt::format("cholesky, {}", form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Chol<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              const auto tan = h.like(ctx, r);
              auto g = h.zeros(ctx);
              exact_backward_tangent(ctx, h.head(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                                     h.as_head(tan), h.as_grad(g));
              return {{"grad_mean_tangent", get(g.a)}, {"grad_tril_tangent", get(g.b)}};
            });
      t.add("exact_mixed_product", fmt::format("cholesky, {}", form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Chol<T> h(ctx, r, s, false);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host);
              const auto tan = h.like(ctx, r);
              Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
              exact_mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                  pg_options<T>(Transform::none), h.as_head(tan), g.vector());
              return {{"grad_params", get(g)}};
            });
    }
    t.add("mixed_product", "cholesky, none, full", size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Chol<T> h(ctx, r, s, false);
      const Vec u_host = reward_params(r, RewardForm::full, s.n);
      const Buffer<T> u = put<T>(ctx, u_host);
      const auto tan = h.like(ctx, r);
      Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
      mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{RewardForm::full, u.vector()}, s.G,
                    pg_options<T>(Transform::none), kKey, h.as_head(tan), g.vector());
      return {{"grad_params", get(g)}};
    });
  }
  for (const Shape s : cat_shapes(level, t.self_check)) {
    const std::string size = cat_size(s);
    const Tol per_element{2e-3};
    // Σ_j p_j u_j r_j-type sums cancel to ~p_y at large C: an absolute floor, as the tests'.
    const Tol mixed{2e-3, 0.1, 0.05};
    t.add("log_prob_jvp", "categorical", size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      const Buffer<T> tan = h.like(ctx, r);
      Out<T> out(ctx, s.B * s.G, "out");
      log_prob_jvp(ctx, h.head(), k.matrix(s.B, s.G), h.as_head(tan), out.matrix(s.B, s.G));
      return {{"jvp", get(out)}};
    });
    t.add("backward_tangent", "categorical", size, per_element, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      const Buffer<T> c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)), e = put<T>(ctx, r.vec(s.B, -1, 1)), tan = h.like(ctx, r);
      Out<T> g(ctx, s.B * s.n, "g");
      backward_tangent(ctx, h.head(), k.matrix(s.B, s.G), c.matrix(s.B, s.G), e.vector(), h.as_head(tan), h.as_grad(g));
      return {{"grad_logits_tangent", get(g)}};
    });
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_backward_tangent", fmt::format("categorical, {}", form_name(form)), size, per_element,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n)), tan = h.like(ctx, r);
              Out<T> g(ctx, s.B * s.n, "g");
              exact_backward_tangent(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                     pg_options<T>(Transform::none), h.as_head(tan), h.as_grad(g));
              return {{"grad_logits_tangent", get(g)}};
            });
      t.add("exact_mixed_product", fmt::format("categorical, {}", form_name(form)), size, mixed,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host), tan = h.like(ctx, r);
              Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
              exact_mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                  pg_options<T>(Transform::none), h.as_head(tan), g.vector());
              return {{"grad_params", get(g)}};
            });
    }
  }
  for (const Shape s : cat_objective_shapes(level, t.self_check)) {
    const std::string size = cat_size(s);
    const Tol tol{2e-3, 0.1, 0.05};
    // The mixed product sums over rows, so a draw at a CDF boundary (float and double part there)
    // would leave nothing to compare: it is also computed row by row (a one-row shard with the
    // whole batch's normaliser and the row's draw key), the rows whose draws agree are compared
    // with the reference, and the whole-batch call is checked against the sum of its rows.
    for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal}) {
      t.add("mixed_product", fmt::format("categorical, none, {}", form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Vec u_host = reward_params(r, form, s.n);
              const auto P = static_cast<std::int64_t>(u_host.size());
              const Buffer<T> u = put<T>(ctx, u_host), tan = h.like(ctx, r);
              const MahalanobisReward<T> rew{form, u.vector()};
              PgOptions<T> options = pg_options<T>(Transform::none);
              Out<T> g(ctx, P, "g"), g1(ctx, P, "g1");
              mixed_product(ctx, h.head(), h.y(), rew, s.G, options, kKey, h.as_head(tan), g.vector());
              options.normaliser_rows = s.B;
              Vec rows;
              for (std::int64_t b = 0; b < s.B; ++b) {
                const DrawKey key{.step = kKey.step, .first_row = kKey.first_row + b};
                mixed_product(ctx, Categorical<T>{h.head().logits.row_range(b, 1)}, VectorView<const std::int32_t>{h.y().data + b, 1},
                              rew, s.G, options, key, Categorical<T>{h.as_head(tan).logits.row_range(b, 1)}, g1.vector());
                const Vec part = get(g1);
                rows.insert(rows.end(), part.begin(), part.end());
              }
              Output total{"grad_params", get(g)};
              total.total_of = "grad_params_by_row";
              return {cat_draws(ctx, h), {"grad_params_by_row", std::move(rows), s.B}, std::move(total)};
            });
    }
  }
}


}  // namespace d2r::checks
