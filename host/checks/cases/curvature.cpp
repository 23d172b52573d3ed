// Cases of the registry (host/checks/checks.hpp): the policy-curvature classes (gradient, HVP, mixed product).
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ policy curvature

namespace {
enum class CurvOut { gradient, hvp, mixed };
const char* curv_name(CurvOut o) {
  return o == CurvOut::gradient ? "curvature.gradient" : o == CurvOut::hvp ? "curvature.hvp" : "curvature.mixed_product";
}

/// Parameters of a trunk: PyTorch's initialisation scaled by 1.5 (heads away from uniform).
Vec trunk_params(const Mlp& net, std::uint64_t seed) {
  std::vector<float> init(static_cast<std::size_t>(net.parameter_count()));
  Context host({.backend = Backend::cpu});
  net.init<float>(host, vector_view(init.data(), net.parameter_count()), seed);
  Vec p(init.size());
  for (std::size_t i = 0; i < init.size(); ++i) p[i] = static_cast<float>(1.5 * init[i]);
  return p;
}

/// prepare (or prepare_exact), then the requested output: the inner gradient, two HVPs (apply and
/// the LinearOperator), or the mixed product along a direction.
template <class T, class Curvature, class Prepare>
Outputs curvature_outputs(Context& ctx, Rng& r, Curvature& curvature, const Mlp& net, CurvOut what,
                          std::int64_t reward_params_count, Prepare prepare) {
  const std::int64_t P = net.parameter_count();
  Out<T> grad(ctx, P, "grad"), hv(ctx, P, "hv"), hv2(ctx, P, "hv2"), mixed(ctx, reward_params_count, "mixed");
  prepare(grad.vector());
  const Buffer<T> v = put<T>(ctx, r.vec(P, -1, 1)), w = put<T>(ctx, r.vec(P, -1, 1));
  switch (what) {
    case CurvOut::gradient: return {{"grad", get(grad)}};
    case CurvOut::hvp:
      curvature.apply(v.vector(), hv.vector());
      curvature.as_operator()(w.vector(), hv2.vector());
      return {{"hv", get(hv)}, {"hv_operator", get(hv2)}};
    case CurvOut::mixed: curvature.mixed_product(v.vector(), mixed.vector()); return {{"grad_params", get(mixed)}};
  }
  return {};
}
}  // namespace

void add_curvature_checks(Table& t, Level level) {
  const Tol tol{2e-3, 0.25};
  struct DiagCase {
    std::int64_t B, n;
    MlpSpec spec;
  };
  const std::vector<DiagCase> diag = upto<DiagCase>(
      level, {{9, 3, {.inputs = 6, .hidden = {16, 8}, .outputs = 6, .activation = Activation::tanh}}},
      {{1024, 17, {.inputs = 23, .hidden = {64, 64}, .outputs = 34, .activation = Activation::relu}}},
      {{8192, 17, {.inputs = 23, .hidden = {256, 256}, .outputs = 34, .activation = Activation::tanh}}});
  for (const DiagCase& c : diag) {
    for (const bool exact : {true, false}) {
      for (const CurvOut what : {CurvOut::gradient, CurvOut::hvp, CurvOut::mixed}) {
        t.add(curv_name(what), fmt::format("diag {}, {}", exact ? "exact" : "surrogate", net_name(c.spec)),
              fmt::format("B={} G=5", c.B), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
                using T = decltype(one);
                const Mlp net(c.spec);
                const std::int64_t B = c.B, n = c.n, in = c.spec.inputs;
                const Buffer<T> params = put<T>(ctx, trunk_params(net, 11)), x = put<T>(ctx, r.vec(B * in, -1.5, 1.5)),
                                y = put<T>(ctx, r.vec(B * n, -1, 1)), u = put<T>(ctx, reward_params(r, RewardForm::diagonal, n));
                const MahalanobisReward<T> rew{RewardForm::diagonal, u.vector()};
                DiagGaussianPolicyCurvature<T> curvature(ctx, net, B);
                return curvature_outputs<T>(ctx, r, curvature, net, what, n, [&](VectorView<T> grad) {
                  if (exact) {
                    curvature.prepare_exact(params.vector(), x.matrix(B, in), y.matrix(B, n), rew,
                                            pg_options<T>(Transform::none), grad);
                  } else {
                    curvature.prepare(params.vector(), x.matrix(B, in), y.matrix(B, n), rew, 5,
                                      pg_options<T>(Transform::none), kKey, grad);
                  }
                });
              });
      }
    }
  }
  const std::vector<DiagCase> chol = upto<DiagCase>(
      level, {{9, 3, {.inputs = 4, .hidden = {16}, .outputs = 3 + 6, .activation = Activation::tanh}}},
      {{512, 17, {.inputs = 23, .hidden = {64, 64}, .outputs = 17 + 153, .activation = Activation::relu}}}, {});
  for (const DiagCase& c : chol) {
    for (const bool exact : {true, false}) {
      for (const CurvOut what : {CurvOut::gradient, CurvOut::hvp, CurvOut::mixed}) {
        t.add(curv_name(what), fmt::format("cholesky {}, {}", exact ? "exact" : "surrogate", net_name(c.spec)),
              fmt::format("B={} G=5", c.B), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
                using T = decltype(one);
                const Mlp net(c.spec);
                const std::int64_t B = c.B, n = c.n, in = c.spec.inputs;
                const Vec u_host = reward_params(r, RewardForm::full, n);
                const Buffer<T> params = put<T>(ctx, trunk_params(net, 12)), x = put<T>(ctx, r.vec(B * in, -1.5, 1.5)),
                                y = put<T>(ctx, r.vec(B * n, -1, 1)), u = put<T>(ctx, u_host);
                const MahalanobisReward<T> rew{RewardForm::full, u.vector()};
                CholeskyPolicyCurvature<T> curvature(ctx, net, B, f32<T>(1e-4));
                return curvature_outputs<T>(ctx, r, curvature, net, what, static_cast<std::int64_t>(u_host.size()),
                                            [&](VectorView<T> grad) {
                                              if (exact) {
                                                curvature.prepare_exact(params.vector(), x.matrix(B, in), y.matrix(B, n),
                                                                        rew, pg_options<T>(Transform::none), grad);
                                              } else {
                                                curvature.prepare(params.vector(), x.matrix(B, in), y.matrix(B, n), rew, 5,
                                                                  pg_options<T>(Transform::none), kKey, grad);
                                              }
                                            });
              });
      }
    }
  }
  struct CatCase {
    std::int64_t B;
    MlpSpec spec;
  };
  const std::vector<CatCase> cats = upto<CatCase>(
      level, {{33, {.inputs = 6, .hidden = {16}, .outputs = 7, .activation = Activation::tanh}}},
      {{1024, {.inputs = 23, .hidden = {}, .outputs = 10}}},
      {{4096, {.inputs = 64, .hidden = {128}, .outputs = 1000, .activation = Activation::relu}}});
  for (const CatCase& c : cats) {
    for (const CurvOut what : {CurvOut::gradient, CurvOut::hvp, CurvOut::mixed}) {
      t.add(curv_name(what), fmt::format("categorical exact, {}", net_name(c.spec)), fmt::format("B={}", c.B), tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Mlp net(c.spec);
              const std::int64_t B = c.B, C = c.spec.outputs, in = c.spec.inputs;
              const Buffer<T> params = put<T>(ctx, trunk_params(net, 13)), x = put<T>(ctx, r.vec(B * in, -1.5, 1.5)),
                              u = put<T>(ctx, reward_params(r, RewardForm::diagonal, C));
              const Buffer<std::int32_t> labels = put_idx(ctx, indices(r, B, C));
              const MahalanobisReward<T> rew{RewardForm::diagonal, u.vector()};
              CategoricalPolicyCurvature<T> curvature(ctx, net, B);
              return curvature_outputs<T>(ctx, r, curvature, net, what, C, [&](VectorView<T> grad) {
                curvature.prepare_exact(params.vector(), x.matrix(B, in), labels.vector(), rew,
                                        pg_options<T>(Transform::none), grad);
              });
            });
    }
  }
}


}  // namespace d2r::checks
