// Cases of the registry (host/checks/checks.hpp): conjugate gradients (plain and normal) and the Neumann series.
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ solvers

namespace {
enum class Method { cg, cg_normal, neumann };

/// The solvers on an SPD operator built from the public primitives: the exact-curvature head
/// Hessian of a diagonal Gaussian (exact_backward_tangent, diagonal reward U), on vectors
/// [μ̇ (B·n) | ṡ (B·n)]. Eigenvalues 2U_dd/B and 4U_dd σ²/B (condition number about 5).
}  // namespace

void add_solver_checks(Table& t, Level level) {
  struct Size {
    std::int64_t B, n;
  };
  for (const Size s : upto<Size>(level, {{7, 3}}, {{1024, 17}}, {{65536, 17}})) {
    for (const Method m : {Method::cg, Method::cg_normal, Method::neumann}) {
      const char* name = m == Method::cg ? "conjugate_gradient" : m == Method::cg_normal ? "conjugate_gradient_normal"
                                                                                         : "neumann_series";
      const char* var = m == Method::neumann ? "exact head Hessian, 60 terms" : "exact head Hessian, tol 1e-5";
      t.add_custom(name, var, fmt::format("N={}", 2 * s.B * s.n), {1e-3}, [=](Env& env, std::uint64_t salt) {
        std::string status[2];
        std::int64_t iterations[2] = {0, 0};
        const auto solve = [&](Context& ctx, auto one) {
          using T = decltype(one);
          Rng r(env.seed, salt);
          const Shape shape{s.B, s.n, 1};
          const Diag<T> h(ctx, r, shape, false, -0.25, 0.25);
          const Buffer<T> u = put<T>(ctx, reward_params(r, RewardForm::diagonal, s.n));
          const std::int64_t N = 2 * s.B * s.n, Bn = s.B * s.n;
          const Buffer<T> b = put<T>(ctx, r.vec(N, -1, 1));
          Out<T> x(ctx, Vec(N, 0.0), "x");
          const MahalanobisReward<T> rew{RewardForm::diagonal, u.vector()};
          const PgOptions<T> options = pg_options<T>(Transform::none);
          const LinearOperator<T> A = [&](ConstVector<T> in, VectorView<T> out) {
            exact_backward_tangent(ctx, h.head(), rew, options,
                                   DiagGaussian<T>{matrix_view(in.data, s.B, s.n), matrix_view(in.data + Bn, s.B, s.n)},
                                   DiagGaussianGrad<T>{matrix_view(out.data, s.B, s.n), matrix_view(out.data + Bn, s.B, s.n)});
          };
          SolveReport<T> rep;
          const CgOptions<T> cg{.tolerance = f32<T>(1e-5), .max_iterations = 100};
          if (m == Method::cg) rep = conjugate_gradient<T>(ctx, A, b.vector(), x.vector(), cg);
          if (m == Method::cg_normal) rep = conjugate_gradient_normal<T>(ctx, A, b.vector(), x.vector(), cg);
          if (m == Method::neumann) {
            // α = B/9 against eigenvalues in [1.5/B, 8.2/B]: contraction about 0.83 per term.
            const NeumannOptions<T> no{.alpha = f32<T>(static_cast<double>(s.B) / 9.0), .iterations = 60};
            rep = neumann_series<T>(ctx, A, b.vector(), x.vector(), no);
          }
          status[std::is_same_v<T, double>] = to_string(rep.status);
          iterations[std::is_same_v<T, double>] = rep.iterations;
          return get(x);
        };
        const Vec got = solve(env.test, float{});
        const Vec want = solve(env.ref, double{});
        Outcome o = compare_normwise(got, want, 1e-3);
        o.note = fmt::format("rel: ‖x − x_ref‖/‖x_ref‖; {} {} iterations (reference {})", status[0], iterations[0],
                             iterations[1]);
        if (status[0] != status[1] || status[1] != std::string("converged")) {
          o.status = Status::fail;
          o.note = fmt::format("status {} (reference: {})", status[0], status[1]);
        }
        return o;
      });
    }
  }
}


}  // namespace d2r::checks
