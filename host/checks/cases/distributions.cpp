// Cases of the registry (host/checks/checks.hpp): sample, log_prob, entropy and backward of the three heads.
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ distributions

namespace {
/// sample, log_prob, entropy and backward of one Gaussian head family (Head = Diag or Chol) on its
/// shapes, per-row and shared second parameter.
template <template <class> class Head>
void add_gaussian_head_checks(Table& t, const std::vector<Shape>& shapes, const std::string& name,
                              const std::string& shared_name, const std::string& second_grad) {
  const Tol values{1e-4}, grads{1e-3};
  for (const Shape s : shapes) {
    const std::string size = gauss_size(s);
    for (const bool shared : {false, true}) {
      if (shared && s.B == 1) continue;
      const std::string var = shared ? shared_name : name;
      t.add("sample", var, size, values, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        Out<T> y(ctx, s.B * s.G * s.n, "y");
        sample(ctx, h.head(), s.G, kKey, y.matrix(s.B * s.G, s.n));
        return {{"samples", get(y)}};
      });
      t.add("log_prob", var, size, values, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3));
        Out<T> lp(ctx, s.B * s.G, "lp");
        log_prob(ctx, h.head(), y.matrix(s.B * s.G, s.n), lp.matrix(s.B, s.G));
        return {{"log_prob", get(lp)}};
      });
      t.add("entropy", var, size, values, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        Out<T> e(ctx, s.B, "e");
        entropy(ctx, h.head(), e.vector());
        return {{"entropy", get(e)}};
      });
      t.add("backward", var, size, grads, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)),
                        e = put<T>(ctx, r.vec(s.B, -1, 1));
        auto g = h.zeros(ctx);
        backward(ctx, h.head(), y.matrix(s.B * s.G, s.n), c.matrix(s.B, s.G), e.vector(), h.as_grad(g));
        return {{"grad_mean", get(g.a)}, {second_grad, get(g.b)}};
      });
    }
  }
}
}  // namespace

void add_distribution_checks(Table& t, Level level) {
  add_gaussian_head_checks<Diag>(t, diag_shapes(level), "diag", "diag, shared log-std", "grad_log_std");
  add_gaussian_head_checks<Chol>(t, chol_shapes(level), "cholesky", "cholesky, shared L", "grad_tril");
  for (const Shape s : cat_shapes(level, t.self_check)) {
    const std::string size = cat_size(s);
    // Draw for draw: the tolerance is compare_draws's agreement fraction.
    t.add_custom("sample", "categorical", size, {1e-3}, [=](Env& env, std::uint64_t salt) {
      const auto draw = [&](Context& ctx, auto one) {
        using T = decltype(one);
        Rng r(env.seed, salt);
        const Cat<T> h(ctx, r, s);
        Out<std::int32_t> k(ctx, s.B * s.G, "k");
        sample(ctx, h.head(), s.G, kKey, k.matrix(s.B, s.G));
        return std::make_pair(k.to_host(), h.host_logits);
      };
      const auto got = draw(env.test, float{});
      const auto want = draw(env.ref, double{});
      return compare_draws(got.first, want.first, want.second, s.B, s.n, s.G, env.self_check);
    });
    t.add("log_prob", "categorical", size, {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      Out<T> lp(ctx, s.B * s.G, "lp");
      log_prob(ctx, h.head(), k.matrix(s.B, s.G), lp.matrix(s.B, s.G));
      return {{"log_prob", get(lp)}};
    });
    t.add("entropy", "categorical", size, {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      Out<T> e(ctx, s.B, "e");
      entropy(ctx, h.head(), e.vector());
      return {{"entropy", get(e)}};
    });
    // Per element: the gradient of a large vocabulary has entries far below its largest one.
    t.add("backward", "categorical", size, {1e-3, 1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      const Buffer<T> c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)), e = put<T>(ctx, r.vec(s.B, -1, 1));
      Out<T> g(ctx, s.B * s.n, "g");
      backward(ctx, h.head(), k.matrix(s.B, s.G), c.matrix(s.B, s.G), e.vector(), h.as_grad(g));
      return {{"grad_logits", get(g)}};
    });
  }
}


}  // namespace d2r::checks
