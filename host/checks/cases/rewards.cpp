// Cases of the registry (host/checks/checks.hpp): the Mahalanobis rewards (continuous and one-hot) and the reward transforms.
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ rewards and transforms

namespace {

/// The former tests/rewards_gpu_test.cpp comparisons: every matrix argument strided (rows kGap
/// sentinels apart, the gaps guarded), that test's shapes, parameters and tolerances
/// (D2R_EXPECT_CLOSE(rtol, atol), |got − want| <= atol + rtol·|want|, is Tol{rtol, 0, atol / rtol}).
Vec strided_reward_params(Rng& r, RewardForm form, std::int64_t d) {
  Vec p(static_cast<std::size_t>(reward_param_count(form, d)));
  for (double& v : p) v = form == RewardForm::full ? r.uniform(-0.5, 0.5) : r.uniform(0.2, 2);
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < d; ++i) p[packed(i) + i] = r.uniform(0.5, 1.5);
  return p;
}

void add_strided_reward_checks(Table& t, Level level) {
  struct Case3 {
    RewardForm form;
    std::int64_t B, d, G;
  };
  const std::vector<Case3> shapes = upto<Case3>(
      level, {{RewardForm::scalar, 1, 2, 1}, {RewardForm::diagonal, 3, 2, 5}, {RewardForm::full, 5, 3, 2}},
      {{RewardForm::scalar, 1000, 17, 5}, {RewardForm::diagonal, 777, 40, 16}, {RewardForm::full, 513, 17, 5},
       {RewardForm::full, 70, 64, 3}},
      {});
  for (const Case3 c : shapes) {
    const auto B = c.B, d = c.d, G = c.G;
    const double BG = static_cast<double>(B * G);
    const std::string size = fmt::format("B={} n={} G={}", B, d, G);
    const std::string var = fmt::format("{}, strided rows", form_name(c.form));
    // The inputs in the test's order: parameters, targets, samples, cotangents, labels, classes.
    struct Inputs {
      Vec p, y, s, c;
      Idx labels, ks;
    };
    const auto inputs = [=](Rng& r) {
      Inputs in;
      in.p = strided_reward_params(r, c.form, d);
      in.y = r.vec(B * d, -1, 1);
      in.s = r.vec(B * G * d, -2, 2);
      in.c = r.vec(B * G, -1, 1);
      in.labels = indices(r, B, d);
      in.ks = indices(r, B * G, d);
      return in;
    };
    const auto as_vec = [](const Idx& k) { return Vec(k.begin(), k.end()); };
    t.add("reward", "gaussian, " + var, size, {1e-5, 0.0, static_cast<double>(d)}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Inputs in = inputs(r);
      const Out<T> p(ctx, in.p, "params"), y(ctx, B, d, in.y, "targets"), s(ctx, B * G, d, in.s, "samples");
      Out<T> out(ctx, B, G, {}, "rewards");
      timed(ctx, [&] { reward(ctx, MahalanobisReward<T>{c.form, p.vector()}, s.matrix(B * G, d), y.matrix(B, d), out.matrix(B, G)); });
      return {{"rewards", get(out)}};
    }).work_model = stated(reward_work(false, false, c.form, B, d, G));
    t.add("reward_backward", "gaussian, " + var, size, {1e-4, 0.0, BG}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Inputs in = inputs(r);
      const Out<T> p(ctx, in.p, "params"), y(ctx, B, d, in.y, "targets"), s(ctx, B * G, d, in.s, "samples"),
          cot(ctx, B, G, in.c, "cotangents");
      Out<T> g(ctx, static_cast<std::int64_t>(in.p.size()), "grad_params");
      timed(ctx, [&] {
        reward_backward(ctx, MahalanobisReward<T>{c.form, p.vector()}, s.matrix(B * G, d), y.matrix(B, d), cot.matrix(B, G),
                        g.vector());
      });
      return {{"grad_params", get(g)}};
    }).work_model = stated(reward_work(true, false, c.form, B, d, G));
    t.add("reward", "one-hot, " + var, size, {1e-5, 0.0, 1.0}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Inputs in = inputs(r);
      const Out<T> p(ctx, in.p, "params");
      const Out<std::int32_t> labels(ctx, as_vec(in.labels), "labels"), ks(ctx, B, G, as_vec(in.ks), "classes");
      Out<T> out(ctx, B, G, {}, "rewards");
      timed(ctx, [&] { reward(ctx, MahalanobisReward<T>{c.form, p.vector()}, ks.matrix(B, G), labels.vector(), d, out.matrix(B, G)); });
      return {{"rewards", get(out)}};
    }).work_model = stated(reward_work(false, true, c.form, B, d, G));
    t.add("reward_backward", "one-hot, " + var, size, {1e-4, 0.0, 0.1 * BG}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Inputs in = inputs(r);
      const Out<T> p(ctx, in.p, "params"), cot(ctx, B, G, in.c, "cotangents");
      const Out<std::int32_t> labels(ctx, as_vec(in.labels), "labels"), ks(ctx, B, G, as_vec(in.ks), "classes");
      Out<T> g(ctx, static_cast<std::int64_t>(in.p.size()), "grad_params");
      timed(ctx, [&] {
        reward_backward(ctx, MahalanobisReward<T>{c.form, p.vector()}, ks.matrix(B, G), labels.vector(), d, cot.matrix(B, G),
                        g.vector());
      });
      return {{"grad_params", get(g)}};
    }).work_model = stated(reward_work(true, true, c.form, B, d, G));
  }
  // Every transform at B = 1001, G = 17 (rbf γ = 0.7, standardize ε = 1e-4), strided; rtol = atol = 1e-5.
  for (const Transform kind :
       {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out, Transform::standardize}) {
    const std::int64_t B = 1001, G = 17;
    t.add("transform_rewards", fmt::format("{}, strided rows", to_string(kind)), fmt::format("B={} G={}", B, G),
          {1e-5, 0.0, 1.0}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
            using T = decltype(one);
            const Out<T> rw(ctx, B, G, r.vec(B * G, -3, 0), "rewards");
            Out<T> a(ctx, B, G, {}, "advantages");
            const TransformOptions<T> o{.kind = kind, .rbf_gamma = f32<T>(0.7), .standardize_epsilon = f32<T>(1e-4)};
            timed(ctx, [&] { transform_rewards(ctx, o, rw.matrix(B, G), a.matrix(B, G)); });
            return {{"advantages", get(a)}};
          }).work_model = stated(transform_rewards_work(false, B, G));
  }
}

}  // namespace

void add_reward_checks(Table& t, Level level) {
  for (const Shape s : diag_shapes(level)) {
    for (const RewardForm form : forms_for(s.n)) {
      const std::string var = fmt::format("gaussian, {}", form_name(form));
      t.add("reward", var, gauss_size(s), {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), tg = put<T>(ctx, r.vec(s.B * s.n, -2, 2)),
                        u = put<T>(ctx, reward_params(r, form, s.n));
        Out<T> out(ctx, s.B * s.G, "out");
        timed(ctx, [&] {
          reward(ctx, MahalanobisReward<T>{form, u.vector()}, y.matrix(s.B * s.G, s.n), tg.matrix(s.B, s.n), out.matrix(s.B, s.G));
        });
        return {{"rewards", get(out)}};
      }).work_model = stated(reward_work(false, false, form, s.B, s.n, s.G));
      t.add("reward_backward", var, gauss_size(s), {1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Vec u_host = reward_params(r, form, s.n);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), tg = put<T>(ctx, r.vec(s.B * s.n, -2, 2)),
                        u = put<T>(ctx, u_host), d = put<T>(ctx, r.vec(s.B * s.G, -1, 1));
        Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
        timed(ctx, [&] {
          reward_backward(ctx, MahalanobisReward<T>{form, u.vector()}, y.matrix(s.B * s.G, s.n), tg.matrix(s.B, s.n),
                          d.matrix(s.B, s.G), g.vector());
        });
        return {{"grad_params", get(g)}};
      }).work_model = stated(reward_work(true, false, form, s.B, s.n, s.G));
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
        timed(ctx, [&] { reward(ctx, MahalanobisReward<T>{form, u.vector()}, k.matrix(s.B, s.G), y.vector(), s.n, out.matrix(s.B, s.G)); });
        return {{"rewards", get(out)}};
      }).work_model = stated(reward_work(false, true, form, s.B, s.n, s.G));
      t.add("reward_backward", var, cat_size(s), {1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Vec u_host = reward_params(r, form, s.n);
        const Buffer<std::int32_t> k = put_idx(ctx, indices(r, s.B * s.G, s.n)), y = put_idx(ctx, indices(r, s.B, s.n));
        const Buffer<T> u = put<T>(ctx, u_host), d = put<T>(ctx, r.vec(s.B * s.G, -1, 1));
        Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
        timed(ctx, [&] {
          reward_backward(ctx, MahalanobisReward<T>{form, u.vector()}, k.matrix(s.B, s.G), y.vector(), s.n, d.matrix(s.B, s.G),
                          g.vector());
        });
        return {{"grad_params", get(g)}};
      }).work_model = stated(reward_work(true, true, form, s.B, s.n, s.G));
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
        timed(ctx, [&] { transform_rewards(ctx, pg_options<T>(kind, false, eps).transform, rw.matrix(s.B, s.G), a.matrix(s.B, s.G)); });
        return {{"advantages", get(a)}};
      }).work_model = stated(transform_rewards_work(false, s.B, s.G));
      t.add("transform_rewards_backward", to_string(kind), size, {1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Buffer<T> rw = put<T>(ctx, r.vec(s.B * s.G, -3, 0)), da = put<T>(ctx, r.vec(s.B * s.G, -1, 1));
        Out<T> dr(ctx, s.B * s.G, "dr");
        timed(ctx, [&] {
          transform_rewards_backward(ctx, pg_options<T>(kind, false, eps).transform, rw.matrix(s.B, s.G), da.matrix(s.B, s.G),
                                     dr.matrix(s.B, s.G));
        });
        return {{"d_rewards", get(dr)}};
      }).work_model = stated(transform_rewards_work(true, s.B, s.G));
    }
  }
  add_strided_reward_checks(t, level);
}

}  // namespace d2r::checks
