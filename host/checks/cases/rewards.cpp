// Cases of the registry (host/checks/checks.hpp): the Mahalanobis rewards (continuous and one-hot) and the reward transforms.
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ rewards and transforms

void add_reward_checks(Table& t, Level level) {
  for (const Shape s : diag_shapes(level)) {
    for (const RewardForm form : forms_for(s.n)) {
      const std::string var = fmt::format("gaussian, {}", form_name(form));
      t.add("reward", var, gauss_size(s), {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), tg = put<T>(ctx, r.vec(s.B * s.n, -2, 2)),
                        u = put<T>(ctx, reward_params(r, form, s.n));
        Out<T> out(ctx, s.B * s.G, "out");
        reward(ctx, MahalanobisReward<T>{form, u.vector()}, y.matrix(s.B * s.G, s.n), tg.matrix(s.B, s.n),
               out.matrix(s.B, s.G));
        return {{"rewards", get(out)}};
      });
      t.add("reward_backward", var, gauss_size(s), {1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Vec u_host = reward_params(r, form, s.n);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), tg = put<T>(ctx, r.vec(s.B * s.n, -2, 2)),
                        u = put<T>(ctx, u_host), d = put<T>(ctx, r.vec(s.B * s.G, -1, 1));
        Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
        reward_backward(ctx, MahalanobisReward<T>{form, u.vector()}, y.matrix(s.B * s.G, s.n), tg.matrix(s.B, s.n),
                        d.matrix(s.B, s.G), g.vector());
        return {{"grad_params", get(g)}};
      });
    }
  }
  for (const Shape s : onehot_shapes(level)) {
    for (const RewardForm form : forms_for(s.n)) {
      const std::string var = fmt::format("one-hot, {}", form_name(form));
      t.add("reward", var, cat_size(s), {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Buffer<std::int32_t> k = put_idx(ctx, indices(r, s.B * s.G, s.n)), y = put_idx(ctx, indices(r, s.B, s.n));
        const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
        Out<T> out(ctx, s.B * s.G, "out");
        reward(ctx, MahalanobisReward<T>{form, u.vector()}, k.matrix(s.B, s.G), y.vector(), s.n, out.matrix(s.B, s.G));
        return {{"rewards", get(out)}};
      });
      t.add("reward_backward", var, cat_size(s), {1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Vec u_host = reward_params(r, form, s.n);
        const Buffer<std::int32_t> k = put_idx(ctx, indices(r, s.B * s.G, s.n)), y = put_idx(ctx, indices(r, s.B, s.n));
        const Buffer<T> u = put<T>(ctx, u_host), d = put<T>(ctx, r.vec(s.B * s.G, -1, 1));
        Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
        reward_backward(ctx, MahalanobisReward<T>{form, u.vector()}, k.matrix(s.B, s.G), y.vector(), s.n,
                        d.matrix(s.B, s.G), g.vector());
        return {{"grad_params", get(g)}};
      });
    }
  }
  struct Group {
    std::int64_t B, G;
  };
  for (const Group s : upto<Group>(level, {{1, 2}, {7, 5}}, {{1024, 16}}, {{65536, 32}})) {
    const std::string size = fmt::format("B={} G={}", s.B, s.G);
    for (const Transform kind :
         {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out, Transform::standardize}) {
      // G = 2 standardises to ±1/√2 whatever the rewards: its derivative is O(ε/std²), all
      // cancellation in float; ε = 0.1 keeps it measurable.
      const double eps = s.G == 2 ? 0.1 : 1e-3;
      t.add("transform_rewards", to_string(kind), size, {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Buffer<T> rw = put<T>(ctx, r.vec(s.B * s.G, -3, 0));
        Out<T> a(ctx, s.B * s.G, "a");
        transform_rewards(ctx, pg_options<T>(kind, false, eps).transform, rw.matrix(s.B, s.G), a.matrix(s.B, s.G));
        return {{"advantages", get(a)}};
      });
      t.add("transform_rewards_backward", to_string(kind), size, {1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Buffer<T> rw = put<T>(ctx, r.vec(s.B * s.G, -3, 0)), da = put<T>(ctx, r.vec(s.B * s.G, -1, 1));
        Out<T> dr(ctx, s.B * s.G, "dr");
        transform_rewards_backward(ctx, pg_options<T>(kind, false, eps).transform, rw.matrix(s.B, s.G), da.matrix(s.B, s.G),
                                   dr.matrix(s.B, s.G));
        return {{"d_rewards", get(dr)}};
      });
    }
  }
}


}  // namespace d2r::checks
