// Cases of the registry (host/checks/checks.hpp): the optimisers and gradient conditioning, with
// the edge cases of the former tests/optim_gpu_test.cpp comparisons: Adam's moments and counter
// start as garbage (the sentinel) that adam_reset must clear, the counter and the read-only gradient
// are outputs too; SGD with and without momentum; clamping exact; clipping with and without the
// norm output, and exactly a no-op below the limit; sizes 1, 31, 1000, 2^20 + 3 (a tail) and 2^20.
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ optimisers

void add_optim_checks(Table& t, Level level) {
  // A clipping call repeated under a timer stops clipping after the first (host/checks/work.hpp).
  const WorkModel kClipsOnce{0, 0, "repeated calls stop clipping after the first: the below-the-limit cases are timed"};
  const std::vector<std::int64_t> sizes = upto<std::int64_t>(
      level, {1, 31, 1000}, {(std::int64_t{1} << 20) + 3, std::int64_t{1} << 20}, {std::int64_t{1} << 24});
  for (const std::int64_t n : sizes) {
    const std::string size = fmt::format("n={}", n);
    for (const double wd : {0.0, 0.05}) {
      t.add("adam_step", wd > 0 ? "adamw, 3 steps" : "adam, 3 steps", size, {1e-5}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        // m, v and the counter hold the sentinel (garbage) until adam_reset clears them.
        Out<T> p(ctx, r.vec(n, -1, 1), "params"), m(ctx, n, "first_moment"), v(ctx, n, "second_moment");
        Out<std::int64_t> step(ctx, 1, "step");
        const AdamState<T> state{m.vector(), v.vector(), step.vector()};
        adam_reset(ctx, state);
        const AdamOptions<T> o{.learning_rate = f32<T>(1e-2), .beta1 = f32<T>(0.8), .beta2 = f32<T>(0.999),
                               .epsilon = f32<T>(1e-6), .weight_decay = f32<T>(wd)};
        Vec last_grad;
        for (int k = 0; k < 3; ++k) {
          last_grad = r.vec(n, -2, 2);
          const Out<T> g(ctx, last_grad, "grad");
          const auto call = [&] { adam_step(ctx, o, state, p.vector(), g.vector()); };
          k == 2 ? timed(ctx, call) : call();  // the last step is the timed call (d2r bench)
          if (k == 2) last_grad = get(g);  // read only: equal on both sides only if untouched
        }
        return {{"params", get(p)}, {"first_moment", get(m)}, {"second_moment", get(v)}, {"step", get(step)},
                {"grad", last_grad}};
      }).work_model = stated(adam_step_work(n));
    }
    for (const double momentum : {0.9, 0.0}) {
      t.add("sgd_step", momentum > 0 ? "momentum 0.9, 3 steps" : "plain, 3 steps", size, {1e-5},
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              Out<T> p(ctx, r.vec(n, -1, 1), "params"), vel(ctx, Vec(n, 0.0), "velocity");
              for (int k = 0; k < 3; ++k) {
                const Buffer<T> g = put<T>(ctx, r.vec(n, -2, 2));
                const auto call = [&] {
                  sgd_step<T>(ctx, f32<T>(0.05), f32<T>(momentum), momentum > 0 ? vel.vector() : VectorView<T>{},
                              p.vector(), g.vector());
                };
                k == 2 ? timed(ctx, call) : call();  // the last step is the timed call (d2r bench)
              }
              if (momentum == 0.0) return {{"params", get(p)}};
              return {{"params", get(p)}, {"velocity", get(vel)}};
            }).work_model = stated(sgd_step_work(n, momentum > 0));
    }
    // Exact (tolerance 0): clamping rounds nothing.
    t.add("clamp_values", "limit 0.5", size, {0.0}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      Out<T> p(ctx, r.vec(n, -2, 2), "values");
      timed(ctx, [&] { clamp_values<T>(ctx, f32<T>(0.5), p.vector()); });
      return {{"values", get(p)}};
    }).work_model = stated(clamp_values_work(n));
    for (const bool active : {true, false}) {
      t.add("clip_global_norm", active ? "clipping" : "below the limit", size, {1e-5},
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              Out<T> p(ctx, r.vec(n, -1, 1), "values"), norm(ctx, 1, "norm");
              // ‖p‖ ≈ √(n/3): clip to a tenth of it, or leave it with a limit ten times above it.
              const double limit = (active ? 0.1 : 10.0) * std::sqrt(static_cast<double>(n) / 3.0);
              timed(ctx, [&] { clip_global_norm<T>(ctx, f32<T>(limit), p.vector(), norm.vector()); });
              return {{"values", get(p)}, {"norm", get(norm)}};
            }).work_model = active ? kClipsOnce : stated(clip_global_norm_work(n, true));
    }
    // Without the norm output the values are those of the call with it, bit for bit; below the
    // limit they are left exactly as they are (tolerance 0 against the untouched double values).
    for (const bool active : {true, false}) {
      t.add("clip_global_norm", active ? "clipping, no norm output" : "below the limit, no norm output, exact", size,
            {active ? 1e-5 : 0.0}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Vec x = r.vec(n, -1, 1);
              Out<T> p(ctx, x, "values"), q(ctx, x, "values_with_norm"), norm(ctx, 1, "norm");
              const double limit = (active ? 0.1 : 10.0) * std::sqrt(static_cast<double>(n) / 3.0);
              timed(ctx, [&] { clip_global_norm<T>(ctx, f32<T>(limit), p.vector(), VectorView<T>{}); });
              clip_global_norm<T>(ctx, f32<T>(limit), q.vector(), norm.vector());
              // Bit for bit the values of the call with the norm output: 0 on both sides, where any
              // difference is an infinite relative error.
              const Vec without = get(p), with = get(q);
              Vec difference(without.size());
              for (std::size_t i = 0; i < without.size(); ++i) difference[i] = without[i] - with[i];
              return {{"values", without}, {"values_without_minus_with_norm", difference}};
            }).work_model = active ? kClipsOnce : stated(clip_global_norm_work(n, false));
    }
  }
  // The former OptimGpu.ClipGlobalNormIsDeterministic: three runs of clip_global_norm(0.1) from the
  // same values give the same bits (values and norm): the differences are 0 on both sides, where
  // any difference is an infinite relative error. Its sizes, up to 2^20 + 3.
  for (const std::int64_t n : {std::int64_t{1}, std::int64_t{31}, std::int64_t{1000}, (std::int64_t{1} << 20) + 3}) {
    if (level < Level::medium) break;
    t.add("clip_global_norm", "three runs, same bits", fmt::format("n={}", n), {0.0}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Vec x0 = r.vec(n, -1, 1);
      Vec first, first_norm;
      Outputs out;
      for (int run = 0; run < 3; ++run) {
        Out<T> x(ctx, 1, n, x0, "values"), norm(ctx, 1, 1, {}, "norm");
        clip_global_norm<T>(ctx, f32<T>(0.1), x.vector(), norm.vector());
        const Vec got = get(x), got_norm = get(norm);
        if (run == 0) {
          first = got, first_norm = got_norm;
        } else {
          out.push_back({fmt::format("run {} minus run 1", run + 1), difference(got, first)});
          out.push_back({fmt::format("norm of run {} minus run 1", run + 1), difference(got_norm, first_norm)});
        }
      }
      return out;
    }).work_model.unstated = "a determinism check (three runs compared); the single-run clip_global_norm cases are timed";
  }
}

}  // namespace d2r::checks
