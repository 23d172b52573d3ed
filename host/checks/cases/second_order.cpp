// Cases of the registry (host/checks/checks.hpp): the heads' second-order primitives (JVPs, tangents, mixed products).
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ second order (head level)

namespace {

/// The former tests/diag_categorical_second_order_gpu_test.cpp comparisons: strided guarded
/// inputs and outputs, that test's inputs, shapes and per-output tolerances (one case per output;
/// D2R_EXPECT_CLOSE(rtol, atol) is Tol{rtol, 0, atol / rtol}, "+ 1e-4·max|want|" a floor of 0.1).
struct DiagSo {
  std::int64_t B, n, G;
  bool shared;
};
struct CatSo {
  std::int64_t B, C, G;
  bool masked;
};

/// Reward parameters in [0.2, 1.2], the off-diagonal Cholesky entries of the full form shifted by −0.7.
Vec so_reward_params(Rng& r, RewardForm form, std::int64_t n) {
  Vec u = r.vec(reward_param_count(form, n), 0.2, 1.2);
  if (form == RewardForm::full)
    for (std::int64_t i = 0, k = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j, ++k)
        if (j < i) u[static_cast<std::size_t>(k)] = static_cast<float>(u[static_cast<std::size_t>(k)] - 0.7);
  return u;
}

void add_strided_diag_second_order(Table& t, Level level) {
  const std::vector<DiagSo> shapes = upto<DiagSo>(
      level, {{1, 1, 1, false}, {1, 3, 1, true}, {7, 5, 5, true}, {33, 17, 5, false}},
      {{257, 64, 50, true}, {257, 33, 1, false}, {129, 64, 16, true}}, {});
  for (const DiagSo s : shapes) {
    const std::int64_t B = s.B, n = s.n, G = s.G, S = s.shared ? 1 : B;
    const double dn = static_cast<double>(n), dG = static_cast<double>(G), scale_g = dG * (s.shared ? static_cast<double>(B) : 1.0);
    const std::string size = gauss_size(Shape{B, n, G}), head = s.shared ? "diag shared, strided" : "diag, strided";
    // The inputs in the test's order.
    const auto problem = [=](Context& ctx, auto one, Rng& r) {
      using T = decltype(one);
      struct P {
        Out<T> mean, log_std, y, c, e, tm, ts;
      };
      return P{Out<T>(ctx, B, n, r.vec(B * n, -1, 1), "mean"),     Out<T>(ctx, S, n, r.vec(S * n, -0.5, 0.5), "log_std"),
               Out<T>(ctx, B * G, n, r.vec(B * G * n, -2.5, 2.5), "y"), Out<T>(ctx, B, G, r.vec(B * G, -1, 1), "d_log_prob"),
               Out<T>(ctx, r.vec(B, -1, 1), "d_entropy"),           Out<T>(ctx, B, n, r.vec(B * n, -1, 1), "tangent.mean"),
               Out<T>(ctx, S, n, r.vec(S * n, -1, 1), "tangent.log_std")};
    };
    t.add("log_prob_jvp", head, size, {1e-4, 0.0, dn}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const auto p = problem(ctx, one, r);
      Out<T> jvp(ctx, B, G, {}, "jvp");
      timed(ctx, [&] {
        log_prob_jvp(ctx, DiagGaussian<T>{p.mean.matrix(B, n), p.log_std.matrix(S, n)}, p.y.matrix(B * G, n),
                     DiagGaussian<T>{p.tm.matrix(B, n), p.ts.matrix(S, n)}, jvp.matrix(B, G));
      });
      return {{"jvp", get(jvp)}};
    }).work_model = stated(diag_work(HeadOp::log_prob_jvp, B, n, G, S));
    for (const bool with_c : {true, false}) {
      add_per_output(t, "backward_tangent", head + (with_c ? "" : ", no d_log_prob"), size,
                     {{"grad_mean_tangent", {1e-4, 0.0, 0.1 * dG}}, {"grad_log_std_tangent", {1e-4, 0.0, scale_g}}},
                     [=](Context& ctx, auto one, Rng& r) -> Outputs {
                       using T = decltype(one);
                       const auto p = problem(ctx, one, r);
                       Out<T> gm(ctx, B, n, {}, "grad_mean_tangent"), gs(ctx, S, n, {}, "grad_log_std_tangent");
                       timed(ctx, [&] {
                         backward_tangent(ctx, DiagGaussian<T>{p.mean.matrix(B, n), p.log_std.matrix(S, n)}, p.y.matrix(B * G, n),
                                          with_c ? p.c.matrix(B, G) : MatrixView<const T>{}, p.e.vector(),
                                          DiagGaussian<T>{p.tm.matrix(B, n), p.ts.matrix(S, n)},
                                          DiagGaussianGrad<T>{gm.matrix(B, n), gs.matrix(S, n)});
                       });
                       return {{"grad_mean_tangent", get(gm)}, {"grad_log_std_tangent", get(gs)}};
                     },
                     stated(diag_work(HeadOp::backward_tangent, B, n, G, S, {.log_prob = with_c})));
    }
    for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
      add_per_output(t, "exact_backward_tangent", fmt::format("{}, {}, per-dim mean", head, form_name(form)), size,
                     {{"grad_mean_tangent", {1e-4, 0.0, 0.1 * dn}},
                      {"grad_log_std_tangent", {1e-4, 0.0, 0.1 * (s.shared ? static_cast<double>(B) : 1.0)}}},
                     [=](Context& ctx, auto one, Rng& r) -> Outputs {
                       using T = decltype(one);
                       const auto p = problem(ctx, one, r);
                       const Out<T> u(ctx, so_reward_params(r, form, n), "reward.params");
                       Out<T> gm(ctx, B, n, {}, "grad_mean_tangent"), gs(ctx, S, n, {}, "grad_log_std_tangent");
                       timed(ctx, [&] {
                         exact_backward_tangent(ctx, DiagGaussian<T>{p.mean.matrix(B, n), p.log_std.matrix(S, n)},
                                                MahalanobisReward<T>{form, u.vector()},
                                                PgOptions<T>{.entropy_weight = f32<T>(0.7), .per_dimension_mean = true},
                                                DiagGaussian<T>{p.tm.matrix(B, n), p.ts.matrix(S, n)},
                                                DiagGaussianGrad<T>{gm.matrix(B, n), gs.matrix(S, n)});
                       });
                       return {{"grad_mean_tangent", get(gm)}, {"grad_log_std_tangent", get(gs)}};
                     },
                     stated(exact_backward_tangent_diag_work(form, B, n, S)));
    }
  }
}

void add_strided_categorical_second_order(Table& t, Level level) {
  std::vector<CatSo> shapes = upto<CatSo>(level, {{1, 2, 1, false}, {7, 10, 5, true}, {33, 10, 1, false}},
                                          {{257, 1000, 50, false}, {2, 1000, 50, true}, {3, 32000, 5, true}, {1, 32000, 1, false}},
                                          {});
  if (t.self_check) std::erase_if(shapes, [](const CatSo& s) { return s.C > kSelfCheckMaxClasses; });
  for (const CatSo s : shapes) {
    const std::int64_t B = s.B, C = s.C, G = s.G;
    const std::string size = cat_size(Shape{B, C, G}), head = s.masked ? "categorical, every third class masked, strided"
                                                                       : "categorical, strided";
    struct Host {
      Vec logits, t, c, e;
      Idx k;
    };
    // The inputs in the test's order; draws among the unmasked classes.
    const auto host = [=](Rng& r) {
      Host h;
      h.logits = r.vec(B * C, -4, 4);
      if (s.masked)
        for (std::int64_t row = 0; row < B; ++row)
          for (std::int64_t j = 1; j < C; j += 3) h.logits[row * C + j] = -kInf;
      h.t = r.vec(B * C, -1, 1);
      h.c = r.vec(B * G, -1, 1);
      h.e = r.vec(B, -1, 1);
      h.k = unmasked_draws(r, h.logits, B, C, G);
      return h;
    };
    const auto masked_zero = [=](const Host& h, const Vec& g, const char* what) {
      for (std::int64_t i = 0; i < B * C; ++i)
        require(!std::isinf(h.logits[i]) || g[i] == 0.0, fmt::format("{}: a masked class's entry is not 0", what));
    };
    t.add("log_prob_jvp", head, size, {1e-4, 0.0, 0.1}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Host h = host(r);
      const Out<T> logits(ctx, B, C, h.logits, "logits"), tan(ctx, B, C, h.t, "tangent");
      const Out<std::int32_t> k(ctx, B, G, Vec(h.k.begin(), h.k.end()), "k");
      Out<T> jvp(ctx, B, G, {}, "jvp");
      timed(ctx, [&] { log_prob_jvp(ctx, Categorical<T>{logits.matrix(B, C)}, k.matrix(B, G), Categorical<T>{tan.matrix(B, C)}, jvp.matrix(B, G)); });
      return {{"jvp", get(jvp)}};
    }).work_model = stated(categorical_work(HeadOp::log_prob_jvp, B, C, G));
    for (const bool with_c : {true, false}) {
      for (const bool with_e : {true, false}) {
        t.add("backward_tangent", fmt::format("{}{}{}", head, with_c ? "" : ", no d_log_prob", with_e ? "" : ", no d_entropy"), size,
              {1e-3, 0.0, 1e-3 * static_cast<double>(G + 1)}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
                using T = decltype(one);
                const Host h = host(r);
                const Out<T> logits(ctx, B, C, h.logits, "logits"), tan(ctx, B, C, h.t, "tangent"), c(ctx, B, G, h.c, "d_log_prob"),
                    e(ctx, h.e, "d_entropy");
                const Out<std::int32_t> k(ctx, B, G, Vec(h.k.begin(), h.k.end()), "k");
                Out<T> g(ctx, B, C, {}, "grad_logits_tangent");
                timed(ctx, [&] {
                  backward_tangent(ctx, Categorical<T>{logits.matrix(B, C)}, k.matrix(B, G),
                                   with_c ? c.matrix(B, G) : MatrixView<const T>{}, with_e ? e.vector() : VectorView<const T>{},
                                   Categorical<T>{tan.matrix(B, C)}, CategoricalGrad<T>{g.matrix(B, C)});
                });
                const Vec got = get(g);
                masked_zero(h, got, "backward_tangent");
                return {{"grad_logits_tangent", got}};
              }).work_model = stated(categorical_work(HeadOp::backward_tangent, B, C, G, {.log_prob = with_c, .entropy = with_e}));
      }
    }
    for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
      if (form == RewardForm::full && C > 64) continue;
      // labels: each row's first draw (an unmasked class); normaliser B + 1; twice, the same bits.
      t.add("exact_backward_tangent", fmt::format("{}, {}, twice", head, form_name(form)), size, {1e-3, 0.1, 1e-6},
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Host h = host(r);
              Vec labels(static_cast<std::size_t>(B));
              for (std::int64_t row = 0; row < B; ++row) labels[row] = h.k[row * G];
              const Out<T> logits(ctx, B, C, h.logits, "logits"), tan(ctx, B, C, h.t, "tangent"),
                  u(ctx, so_reward_params(r, form, C), "reward.params");
              const Out<std::int32_t> y(ctx, labels, "labels");
              const PgOptions<T> options{.entropy_weight = f32<T>(0.4), .normaliser_rows = B + 1};
              const auto call = [&](Out<T>& g) {
                exact_backward_tangent(ctx, Categorical<T>{logits.matrix(B, C)}, y.vector(), MahalanobisReward<T>{form, u.vector()},
                                       options, Categorical<T>{tan.matrix(B, C)}, CategoricalGrad<T>{g.matrix(B, C)});
              };
              Out<T> g(ctx, B, C, {}, "grad_logits_tangent"), g2(ctx, B, C, {}, "grad_logits_tangent (again)");
              timed(ctx, [&] { call(g); });  // the first run is the one d2r bench times
              call(g2);
              const Vec first = get(g), again = get(g2);
              masked_zero(h, first, "exact_backward_tangent");
              return {{"grad_logits_tangent", first}, {"rerun_minus_first", difference(again, first)}};
            }).work_model = stated(exact_backward_tangent_categorical_work(form, B, C));
    }
  }
}

/// The former tests/cholesky_second_order_gpu_test.cpp comparisons: strided guarded inputs and
/// outputs (jitter 1e-4; samples = mean + U(−1, 1)); log_prob_jvp, backward_tangent with both
/// cotangents and each alone, exact_backward_tangent and exact_mixed_product per reward form with
/// and without the per-dimension mean; determinism (a second run gives the same bits); that test's
/// shapes, per-output tolerances (2e-4·max(max|want|, m) as Tol::floor 0.1 with min_scale m) and
/// non-vacuity thresholds (max|want| > 1e-6).
struct CholSo {
  std::int64_t B, n, G;
  bool shared;
};

template <class T>
struct CholSoProblem {
  std::int64_t B, n, G, R, P;
  Out<T> mean, tril, t_mean, t_tril, samples, d_log_prob, d_entropy;
  static Vec samples_around(Rng& r, const Vec& mean, std::int64_t B, std::int64_t n, std::int64_t G) {
    Vec s(static_cast<std::size_t>(B * G * n));
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t g = 0; g < G; ++g)
        for (std::int64_t d = 0; d < n; ++d) s[(b * G + g) * n + d] = static_cast<float>(mean[b * n + d] + r.uniform(-1.0, 1.0));
    return s;
  }
  CholSoProblem(Context& ctx, Rng& r, CholSo s, const Vec& mean_values)
      : B(s.B), n(s.n), G(s.G), R(s.shared ? 1 : s.B), P(packed(s.n)), mean(ctx, B, n, mean_values, "mean"),
        tril(ctx, R, P, Chol<double>::tril_values(r, R, n), "tril"), t_mean(ctx, B, n, r.vec(B * n, -1, 1), "tangent.mean"),
        t_tril(ctx, R, P, r.vec(R * P, -1, 1), "tangent.tril"),
        samples(ctx, B * G, n, samples_around(r, mean_values, B, n, G), "samples"),
        d_log_prob(ctx, B, G, r.vec(B * G, -1, 1), "d_log_prob"), d_entropy(ctx, r.vec(B, -1, 1), "d_entropy") {}
  [[nodiscard]] CholeskyGaussian<T> head() const { return {mean.matrix(B, n), tril.matrix(R, P), f32<T>(1e-4)}; }
  [[nodiscard]] CholeskyGaussian<T> tangent() const { return {t_mean.matrix(B, n), t_tril.matrix(R, P), T(0)}; }
};

/// `call` whose first run goes through timed() (the call d2r bench times) and later runs are plain:
/// for the cases that run a primitive twice.
template <class F>
auto first_timed(Context& ctx, F call) {
  return [&ctx, call, first = true]() mutable {
    if (first) {
      first = false;
      timed(ctx, call);
    } else {
      call();
    }
  };
}

/// Runs f twice; the two results must have the same bits.
template <class F>
Vec twice(F f, const char* what) {
  const Vec a = f(), b = f();
  require(std::equal(a.begin(), a.end(), b.begin(), [](double x, double y) { return std::memcmp(&x, &y, sizeof x) == 0; }),
          fmt::format("{}: a second run gives other bits", what));
  return a;
}

void add_strided_cholesky_second_order(Table& t, Level level) {
  std::vector<CholSo> shapes;
  for (const std::int64_t B : {1, 3, 257})
    for (const std::int64_t n : {1, 2, 17, 64})
      for (const std::int64_t G : {1, 5, 40})
        for (const bool shared : {false, true})
          if ((B < 257 && n < 64) || level != Level::small) shapes.push_back({B, n, G, shared});
  const Tol mean_tol{2e-3, 0.1, 0.0, 1.0}, tril_tol{2e-3, 0.1, 0.0, 0.0, 1e-6};
  for (const CholSo s : shapes) {
    const std::string size = gauss_size(Shape{s.B, s.n, s.G}), head = s.shared ? "cholesky shared, strided" : "cholesky, strided";
    t.add("log_prob_jvp", head + ", twice", size, {2e-3, 0.1, 0.0, 0.0, 1e-6}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const CholSoProblem<T> p(ctx, r, s, r.vec(s.B * s.n, -2, 2));
      Out<T> out(ctx, s.B, s.G, {}, "jvp");
      auto call = first_timed(ctx, [&] { log_prob_jvp(ctx, p.head(), p.samples.matrix(s.B * s.G, s.n), p.tangent(), out.matrix(s.B, s.G)); });
      const Vec jvp = twice([&] {
        call();
        return get(out);
      }, "log_prob_jvp");
      return {{"jvp", jvp}};
    }).work_model = stated(cholesky_work(HeadOp::log_prob_jvp, s.B, s.n, s.G, s.shared ? 1 : s.B));
    for (const int which : {0, 1, 2}) {  // both cotangents, d_log_prob only, d_entropy only
      const bool with_c = which != 2, with_e = which != 1;
      add_per_output(t, "backward_tangent", head + (which == 0 ? ", twice" : which == 1 ? ", d_log_prob only" : ", d_entropy only"),
                     size, {{"grad_mean_tangent", mean_tol}, {"grad_tril_tangent", tril_tol}},
                     [=](Context& ctx, auto one, Rng& r) -> Outputs {
                       using T = decltype(one);
                       const CholSoProblem<T> p(ctx, r, s, r.vec(s.B * s.n, -2, 2));
                       Out<T> gm(ctx, p.B, p.n, {}, "grad_mean_tangent"), gt(ctx, p.R, p.P, {}, "grad_tril_tangent");
                       auto call = first_timed(ctx, [&] {
                         backward_tangent(ctx, p.head(), with_c ? p.samples.matrix(s.B * s.G, s.n) : MatrixView<const T>{},
                                          with_c ? p.d_log_prob.matrix(s.B, s.G) : MatrixView<const T>{},
                                          with_e ? p.d_entropy.vector() : VectorView<const T>{}, p.tangent(),
                                          CholeskyGaussianGrad<T>{gm.matrix(p.B, p.n), gt.matrix(p.R, p.P)});
                       });
                       const auto run = [&] {
                         call();
                         Vec both = get(gm), tril = get(gt);
                         both.insert(both.end(), tril.begin(), tril.end());
                         return both;
                       };
                       const Vec both = which == 0 ? twice(run, "backward_tangent") : run();
                       const auto split = both.begin() + p.B * p.n;
                       return {{"grad_mean_tangent", Vec(both.begin(), split)}, {"grad_tril_tangent", Vec(split, both.end())}};
                     },
                     stated(cholesky_work(HeadOp::backward_tangent, s.B, s.n, s.G, s.shared ? 1 : s.B,
                                          {.log_prob = with_c, .entropy = with_e})));
    }
  }
  // exact_backward_tangent and exact_mixed_product: B in {1, 3, 300}, n in {1, 2, 17, 64}.
  for (const std::int64_t B : {1, 3, 300})
    for (const std::int64_t n : {1, 2, 17, 64})
      for (const bool shared : {false, true}) {
        if (level == Level::small && (B == 300 || n == 64)) continue;
        const CholSo s{B, n, 1, shared};
        const std::string size = fmt::format("B={} n={}", B, n);
        for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full}) {
          for (const bool per_dim : {false, true}) {
            const std::string var = fmt::format("cholesky{}, strided, {}{}, twice", shared ? " shared" : "", form_name(form),
                                                per_dim ? ", per-dim mean" : "");
            // Reward parameters (full: a well-conditioned Cholesky factor), y in [-1.5, 1.5].
            const auto params = [=](Rng& r) {
              Vec u(static_cast<std::size_t>(reward_param_count(form, n)));
              for (double& x : u) x = form == RewardForm::full ? r.uniform(-0.3, 0.3) : r.uniform(0.3, 1.5);
              if (form == RewardForm::full)
                for (std::int64_t i = 0; i < n; ++i) u[static_cast<std::size_t>(packed(i) + i)] = r.uniform(0.6, 1.2);
              return u;
            };
            const auto options = [=](auto one) {
              using T = decltype(one);
              return PgOptions<T>{.entropy_weight = f32<T>(0.6), .per_dimension_mean = per_dim, .normaliser_rows = B + 3};
            };
            add_per_output(t, "exact_backward_tangent", var, size,
                           {{"grad_mean_tangent", Tol{2e-3, 0.1, 0.0, 1e-3}}, {"grad_tril_tangent", tril_tol}},
                           [=](Context& ctx, auto one, Rng& r) -> Outputs {
                             using T = decltype(one);
                             const CholSoProblem<T> p(ctx, r, s, r.vec(B * n, -2, 2));
                             const Out<T> u(ctx, params(r), "reward.params");
                             Out<T> gm(ctx, B, n, {}, "grad_mean_tangent"), gt(ctx, p.R, p.P, {}, "grad_tril_tangent");
                             auto call = first_timed(ctx, [&] {
                               exact_backward_tangent(ctx, p.head(), MahalanobisReward<T>{form, u.vector()}, options(one), p.tangent(),
                                                      CholeskyGaussianGrad<T>{gm.matrix(B, n), gt.matrix(p.R, p.P)});
                             });
                             const Vec both = twice([&] {
                               call();
                               Vec v = get(gm), w = get(gt);
                               v.insert(v.end(), w.begin(), w.end());
                               return v;
                             }, "exact_backward_tangent");
                             const auto split = both.begin() + B * n;
                             return {{"grad_mean_tangent", Vec(both.begin(), split)}, {"grad_tril_tangent", Vec(split, both.end())}};
                           },
                           stated(exact_backward_tangent_cholesky_work(form, B, n, shared ? 1 : B)));
            t.add("exact_mixed_product", var, size, {2e-3, 0.1, 0.0, 0.0, 1e-6}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const CholSoProblem<T> p(ctx, r, s, r.vec(B * n, -2, 2));
              const Out<T> u(ctx, params(r), "reward.params"), y(ctx, B, n, r.vec(B * n, -1.5, 1.5), "y");
              Out<T> g(ctx, reward_param_count(form, n), "grad_params");
              auto call = first_timed(ctx, [&] {
                exact_mixed_product(ctx, p.head(), y.matrix(B, n), MahalanobisReward<T>{form, u.vector()}, options(one), p.tangent(),
                                    g.vector());
              });
              const Vec got = twice([&] {
                call();
                return get(g);
              }, "exact_mixed_product");
              return {{"grad_params", got}};
            }).work_model = stated(exact_mixed_product_cholesky_work(form, B, n, shared ? 1 : B));
          }
        }
      }
}

}  // namespace

namespace {
/// log_prob_jvp, backward_tangent (per-row, and shared when `shared_name` is set), the exact tangent
/// and exact mixed product per reward form, and the REINFORCE mixed product per (transform, form)
/// of one Gaussian head family (Head = Diag or Chol) on its shapes.
template <template <class> class Head>
void add_gaussian_second_order(Table& t, const std::vector<Shape>& shapes, const std::string& name,
                               const std::string& shared_name, const std::string& second_tangent,
                               const std::vector<std::pair<Transform, RewardForm>>& reinforce,
                               Work (*work)(HeadOp, std::int64_t, std::int64_t, std::int64_t, std::int64_t, Cotangents, double),
                               bool cholesky) {
  const Tol tol{2e-3};
  for (const Shape s : shapes) {
    const std::string size = gauss_size(s);
    t.add("log_prob_jvp", name, size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Head<T> h(ctx, r, s, false);
      const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3));
      const auto tan = h.like(ctx, r);
      Out<T> out(ctx, s.B * s.G, "out");
      timed(ctx, [&] { log_prob_jvp(ctx, h.head(), y.matrix(s.B * s.G, s.n), h.as_head(tan), out.matrix(s.B, s.G)); });
      return {{"jvp", get(out)}};
    }).work_model = stated(work(HeadOp::log_prob_jvp, s.B, s.n, s.G, s.B, {}, 4));
    for (const bool shared : {false, true}) {
      if (shared && (s.B == 1 || shared_name.empty())) continue;
      t.add("backward_tangent", shared ? shared_name : name, size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)),
                        e = put<T>(ctx, r.vec(s.B, -1, 1));
        const auto tan = h.like(ctx, r);
        auto g = h.zeros(ctx);
        timed(ctx, [&] {
          backward_tangent(ctx, h.head(), y.matrix(s.B * s.G, s.n), c.matrix(s.B, s.G), e.vector(), h.as_head(tan), h.as_grad(g));
        });
        return {{"grad_mean_tangent", get(g.a)}, {second_tangent, get(g.b)}};
      }).work_model = stated(work(HeadOp::backward_tangent, s.B, s.n, s.G, shared ? 1 : s.B, {}, 4));
    }
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_backward_tangent", fmt::format("{}, {}", name, form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Head<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              const auto tan = h.like(ctx, r);
              auto g = h.zeros(ctx);
              timed(ctx, [&] {
                exact_backward_tangent(ctx, h.head(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                                       h.as_head(tan), h.as_grad(g));
              });
              return {{"grad_mean_tangent", get(g.a)}, {second_tangent, get(g.b)}};
            }).work_model = stated(cholesky ? exact_backward_tangent_cholesky_work(form, s.B, s.n, s.B)
                                            : exact_backward_tangent_diag_work(form, s.B, s.n, s.B));
      t.add("exact_mixed_product", fmt::format("{}, {}", name, form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Head<T> h(ctx, r, s, false);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host);
              const auto tan = h.like(ctx, r);
              Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
              timed(ctx, [&] {
                exact_mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                    pg_options<T>(Transform::none), h.as_head(tan), g.vector());
              });
              return {{"grad_params", get(g)}};
            }).work_model = stated(cholesky ? exact_mixed_product_cholesky_work(form, s.B, s.n, s.B)
                                            : exact_mixed_product_diag_work(form, s.B, s.n, s.B));
    }
    for (const auto& [kind, form] : reinforce) {
      if (s.G < 2 && kind != Transform::none) continue;
      t.add("mixed_product", fmt::format("{}, {}, {}", name, to_string(kind), form_name(form)), size, tol,
            [=, kind = kind, form = form](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Head<T> h(ctx, r, s, false);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host);
              const auto tan = h.like(ctx, r);
              Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
              timed(ctx, [&] {
                mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, s.G, pg_options<T>(kind), kKey,
                              h.as_head(tan), g.vector());
              });
              return {{"grad_params", get(g)}};
            }).work_model = stated(mixed_product_gaussian_work(cholesky, form, s.B, s.n, s.G, s.B));
    }
  }
}
}  // namespace

void add_second_order_checks(Table& t, Level level) {
  const Tol tol{2e-3};
  add_gaussian_second_order<Diag>(t, diag_shapes(level), "diag", "diag, shared log-std", "grad_log_std_tangent",
                                  {{Transform::none, RewardForm::scalar}, {Transform::leave_one_out, RewardForm::diagonal}}, diag_work,
                                  false);
  add_gaussian_second_order<Chol>(t, chol_shapes(level), "cholesky", "", "grad_tril_tangent",
                                  {{Transform::none, RewardForm::full}}, cholesky_work, true);
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
      timed(ctx, [&] { log_prob_jvp(ctx, h.head(), k.matrix(s.B, s.G), h.as_head(tan), out.matrix(s.B, s.G)); });
      return {{"jvp", get(out)}};
    }).work_model = stated(categorical_work(HeadOp::log_prob_jvp, s.B, s.n, s.G));
    t.add("backward_tangent", "categorical", size, per_element, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      const Buffer<T> c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)), e = put<T>(ctx, r.vec(s.B, -1, 1)), tan = h.like(ctx, r);
      Out<T> g(ctx, s.B * s.n, "g");
      timed(ctx, [&] { backward_tangent(ctx, h.head(), k.matrix(s.B, s.G), c.matrix(s.B, s.G), e.vector(), h.as_head(tan), h.as_grad(g)); });
      return {{"grad_logits_tangent", get(g)}};
    }).work_model = stated(categorical_work(HeadOp::backward_tangent, s.B, s.n, s.G));
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_backward_tangent", fmt::format("categorical, {}", form_name(form)), size, per_element,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n)), tan = h.like(ctx, r);
              Out<T> g(ctx, s.B * s.n, "g");
              timed(ctx, [&] {
                exact_backward_tangent(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                       pg_options<T>(Transform::none), h.as_head(tan), h.as_grad(g));
              });
              return {{"grad_logits_tangent", get(g)}};
            }).work_model = stated(exact_backward_tangent_categorical_work(form, s.B, s.n));
      t.add("exact_mixed_product", fmt::format("categorical, {}", form_name(form)), size, mixed,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host), tan = h.like(ctx, r);
              Out<T> g(ctx, static_cast<std::int64_t>(u_host.size()), "g");
              timed(ctx, [&] {
                exact_mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                    pg_options<T>(Transform::none), h.as_head(tan), g.vector());
              });
              return {{"grad_params", get(g)}};
            }).work_model = stated(exact_mixed_product_categorical_work(form, s.B, s.n));
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
              timed(ctx, [&] { mixed_product(ctx, h.head(), h.y(), rew, s.G, options, kKey, h.as_head(tan), g.vector()); });
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
            }).work_model = stated(mixed_product_categorical_work(form, s.B, s.n));
    }
  }
  add_strided_diag_second_order(t, level);
  add_strided_categorical_second_order(t, level);
  add_strided_cholesky_second_order(t, level);
}

}  // namespace d2r::checks
