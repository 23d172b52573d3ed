// Cases of the registry (host/checks/checks.hpp): the policy-curvature classes (gradient, HVP, mixed product).
#include "d2r/bilevel.hpp"
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ policy curvature

namespace {
void add_curvature_gpu_test_checks(Table& t);
void add_bilevel_step_check(Table& t);

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
  // The timed call (d2r bench): prepare of a gradient case, apply of an HVP case, mixed_product of a mixed one.
  if (what == CurvOut::gradient) {
    timed(ctx, [&] { prepare(grad.vector()); });
  } else {
    prepare(grad.vector());
  }
  const Buffer<T> v = put<T>(ctx, r.vec(P, -1, 1)), w = put<T>(ctx, r.vec(P, -1, 1));
  switch (what) {
    case CurvOut::gradient: return {{"grad", get(grad)}};
    case CurvOut::hvp:
      timed(ctx, [&] { curvature.apply(v.vector(), hv.vector()); });
      curvature.as_operator()(w.vector(), hv2.vector());
      return {{"hv", get(hv)}, {"hv_operator", get(hv2)}};
    case CurvOut::mixed:
      timed(ctx, [&] { curvature.mixed_product(v.vector(), mixed.vector()); });
      return {{"grad_params", get(mixed)}};
  }
  return {};
}

/// The work of a curvature case's timed call (host/checks/work.hpp: the trunk's GEMMs, 3F for the
/// gradient, 5F for an HVP, the trunk's forward tangent for the mixed product; x and the targets
/// read once, `dims` values a row).
WorkModel curvature_work(CurvOut what, const MlpSpec& spec, std::int64_t B, std::int64_t dims) {
  if (what == CurvOut::gradient) return stated(curvature_gradient_work(Mlp(spec), B, dims));
  if (what == CurvOut::hvp) return stated(curvature_hvp_work(Mlp(spec), B, dims));
  return stated(curvature_mixed_product_work(Mlp(spec), B, dims));
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
              }).work_model = curvature_work(what, c.spec, c.B, c.n);
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
              }).work_model = curvature_work(what, c.spec, c.B, c.n);
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
            }).work_model = curvature_work(what, c.spec, c.B, 1);  // one int32 label a row
    }
  }
  if (level >= Level::medium) add_curvature_gpu_test_checks(t);
  if (level >= Level::medium) add_bilevel_step_check(t);
}


// ------------------------------------------------------------------ the former *_policy_curvature_gpu_test

namespace {
enum class CurvHead { diag, cholesky, categorical };

/// One case of the former diag/cholesky/categorical_policy_curvature_gpu_test.cpp: the curvature
/// class prepared (surrogate or exact) on one problem, then what prepare kept, its gradient, and
/// HVPs and mixed products along two directions (the second through the operator; diag: then
/// the first again, the same bits).
struct CurvCase {
  CurvHead head;
  bool exact;
  RewardForm form;
  Transform transform;
  MlpSpec spec;
  std::int64_t B, n, G;  // n: dimensions, or classes
  bool per_dim;
  double eps, entropy;
  DrawKey key;
  std::string trunk;  // the test's name of the trunk
};

struct CurvIn {
  Vec params, x, y, u, v0, v1;
  Idx labels;
};

/// Reward parameters as the tests drew them: Gaussian heads uniform (scalar, diagonal in [0.3,
/// 1.3]; full off-diagonal in [−0.3, 0.3], diagonal in [0.6, 1.2]); categorical dyadic (one-hot
/// rewards and their group sums exact in float).
Vec curvature_reward_params(Rng& r, const CurvCase& c) {
  Vec p(static_cast<std::size_t>(reward_param_count(c.form, c.n)));
  const bool cat = c.head == CurvHead::categorical, full = c.form == RewardForm::full;
  for (double& v : p) v = cat ? (full ? r.dyadic(-0.375, 0.375) : r.dyadic(0.25, 1.5)) : (full ? r.uniform(-0.3, 0.3) : r.uniform(0.3, 1.3));
  if (full)
    for (std::int64_t i = 0; i < c.n; ++i)
      p[static_cast<std::size_t>(packed(i) + i)] = cat ? r.dyadic(0.5, 1.25) : r.uniform(0.6, 1.2);
  return p;
}

CurvIn curvature_inputs(Rng& r, const CurvCase& c, std::uint64_t init_seed) {
  const Mlp net(c.spec);
  CurvIn in;
  in.params = trunk_params(net, init_seed);  // ×1.5: categorical logits away from uniform
  if (c.head != CurvHead::categorical)
    for (double& v : in.params) v = static_cast<float>(v / 1.5);  // the Gaussian tests' plain init
  in.x = r.vec(c.B * c.spec.inputs, -1.5, 1.5);
  if (c.head == CurvHead::categorical) {
    in.labels = indices(r, c.B, c.n);
  } else {
    in.y = r.vec(c.B * c.n, -1, 1);
  }
  in.u = curvature_reward_params(r, c);
  in.v0 = r.vec(net.parameter_count(), -1, 1);
  in.v1 = r.vec(net.parameter_count(), -1, 1);
  return in;
}

template <class T, class Curvature, class Prepare>
Outputs curvature_case_side(Context& ctx, const CurvCase& c, const CurvIn& in, Curvature& curv, Prepare prepare) {
  const Mlp net(c.spec);
  const std::int64_t P = net.parameter_count(), U = static_cast<std::int64_t>(in.u.size());
  Out<T> grad(ctx, 1, P, {}, "grad");
  prepare(grad.vector());
  const auto rows = ctx.to_host(curv.row_loss());
  Outputs out{{"row_loss", Vec(rows.begin(), rows.end())}};
  if (!c.exact) {
    const auto samples = ctx.to_host(curv.samples());
    out.push_back({"samples", Vec(samples.begin(), samples.end())});
    if (c.head != CurvHead::cholesky) {
      const auto adv = ctx.to_host(curv.advantages()), dlp = ctx.to_host(curv.log_prob_cotangent());
      out.push_back({"advantages", Vec(adv.begin(), adv.end())});
      out.push_back({"log_prob_cotangent", Vec(dlp.begin(), dlp.end())});
    }
    if (c.head == CurvHead::diag) {
      const auto dent = ctx.to_host(curv.entropy_cotangent());
      out.push_back({"entropy_cotangent", Vec(dent.begin(), dent.end())});
    }
  }
  out.push_back({"grad", get(grad)});
  // The categorical exact test applied both directions with apply(); the others the second
  // through the operator.
  const bool second_through_operator = !(c.head == CurvHead::categorical && c.exact);
  Vec first_hv;
  for (int k = 0; k < (c.head == CurvHead::diag ? 3 : 2); ++k) {
    const Out<T> v(ctx, 1, P, k == 1 ? in.v1 : in.v0, "v");
    Out<T> hv(ctx, 1, P, {}, "hv"), mixed(ctx, 1, U, {}, "mixed");
    if (k == 1 && second_through_operator) {
      curv.as_operator()(v.vector(), hv.vector());
    } else {
      curv.apply(v.vector(), hv.vector());
    }
    if (k == 2) {  // the first direction again: an apply leaves the kept state as it was
      out.push_back({"hv again minus first", difference(get(hv), first_hv)});
      continue;
    }
    if (k == 0) first_hv = get(hv);
    out.push_back({fmt::format("hv {}", k), k == 0 ? first_hv : get(hv)});
    curv.mixed_product(v.vector(), mixed.vector());
    out.push_back({fmt::format("mixed {}", k), get(mixed)});
  }
  return out;
}

template <class T>
Outputs curvature_case_run(Context& ctx, const CurvCase& c, const CurvIn& in) {
  const Mlp net(c.spec);
  const std::int64_t B = c.B, n = c.n, D = c.spec.inputs, P = net.parameter_count(), U = static_cast<std::int64_t>(in.u.size());
  const Out<T> params(ctx, 1, P, in.params, "params"), x(ctx, B, D, in.x, "x"), u(ctx, 1, U, in.u, "reward.params");
  const PgOptions<T> o{.entropy_weight = f32<T>(c.entropy),
                       .transform = {.kind = c.transform, .standardize_epsilon = f32<T>(c.eps)},
                       .per_dimension_mean = c.per_dim};
  const MahalanobisReward<T> rew{c.form, u.vector()};
  if (c.head == CurvHead::categorical) {
    const Out<std::int32_t> labels(ctx, 1, B, Vec(in.labels.begin(), in.labels.end()), "labels");
    CategoricalPolicyCurvature<T> curv(ctx, net, B);
    return curvature_case_side<T>(ctx, c, in, curv, [&](VectorView<T> grad) {
      if (c.exact) {
        curv.prepare_exact(params.vector(), x.matrix(B, D), labels.vector(), rew, o, grad);
      } else {
        curv.prepare(params.vector(), x.matrix(B, D), labels.vector(), rew, c.G, o, c.key, grad);
      }
    });
  }
  const Out<T> y(ctx, B, n, in.y, "targets");
  const auto run = [&](auto& curv) {
    return curvature_case_side<T>(ctx, c, in, curv, [&](VectorView<T> grad) {
      if (c.exact) {
        curv.prepare_exact(params.vector(), x.matrix(B, D), y.matrix(B, n), rew, o, grad);
      } else {
        curv.prepare(params.vector(), x.matrix(B, D), y.matrix(B, n), rew, c.G, o, c.key, grad);
      }
    });
  };
  if (c.head == CurvHead::diag) {
    DiagGaussianPolicyCurvature<T> curv(ctx, net, B);
    return run(curv);
  }
  CholeskyPolicyCurvature<T> curv(ctx, net, B);
  return run(curv);
}

/// The tests' tolerances per output: EXPECT_GPU_CLOSE (2e-3, 1e-6 + 5e-4·max|want|; categorical
/// 1e-3, 1e-6 + 2e-4·max|want|) as Tol{rtol, atol_fraction / rtol, 1e-6 / rtol}, the kept state's
/// D2R_EXPECT_CLOSE, the categorical draws exactly, and their non-vacuity thresholds (EXPECT_GT on
/// max|want|) as Tol::min_reference.
std::vector<Tol> curvature_case_tols(const CurvCase& c, const Outputs& want) {
  const bool cat = c.head == CurvHead::categorical;
  const Tol gpu_close = cat ? Tol{1e-3, 0.2, 1e-3} : Tol{2e-3, 0.25, 5e-4};
  const auto with_min = [](Tol t, double m) {
    t.min_reference = m;
    return t;
  };
  std::vector<Tol> tols;
  for (const Output& w : want) {
    const std::string& k = w.name;
    if (k == "row_loss") tols.push_back(c.head == CurvHead::diag ? with_min(gpu_close, 1e-4) : gpu_close);
    else if (k == "samples") tols.push_back(cat ? Tol{0.0} : close(1e-4, 1e-5));
    else if (k == "advantages") tols.push_back(cat ? close(1e-5, 1e-5) : with_min(Tol{1e-3, 0.1}, 1e-3));
    else if (k == "log_prob_cotangent") tols.push_back(cat ? close(1e-5, 1e-7) : Tol{1e-3, 0.1});
    else if (k == "entropy_cotangent") tols.push_back(close(1e-5, 1e-7));
    else if (k == "grad") tols.push_back(cat ? gpu_close : with_min(gpu_close, 1e-4));
    else if (k.rfind("hv", 0) == 0 && k.find("again") == std::string::npos)
      tols.push_back(with_min(gpu_close, cat && !c.exact ? 1e-3 : 1e-4));
    else if (k.rfind("mixed", 0) == 0) tols.push_back(c.head == CurvHead::diag ? with_min(gpu_close, 1e-6) : gpu_close);
    else tols.push_back(Tol{0.0});  // "hv again minus first": 0 on both sides, bit for bit
  }
  return tols;
}

std::vector<CurvCase> curvature_gpu_test_cases() {
  std::vector<CurvCase> out;
  const auto forms = {RewardForm::scalar, RewardForm::diagonal, RewardForm::full};
  const MlpSpec diag_spec{.inputs = 5, .hidden = {13, 7}, .outputs = 2 * 3, .activation = Activation::tanh};
  for (const RewardForm form : forms) {
    for (const Transform t : {Transform::none, Transform::leave_one_out, Transform::standardize})
      // standardize with ε = 0.1: with the scalar form, A = (r − mean)/(s + ε) hardly depends on
      // the scale u of r when ε << s, so the mixed product would be float noise around ~0.
      out.push_back({CurvHead::diag, false, form, t, diag_spec, 29, 3, 7, t == Transform::leave_one_out,
                     t == Transform::standardize ? 0.1 : 1e-6, 0.2, {.step = 5, .first_row = 3}, "tanh_5_13_7_6"});
    out.push_back({CurvHead::diag, true, form, Transform::none, diag_spec, 29, 3, 7, false, 1e-6, 0.2, {.step = 5, .first_row = 3},
                   "tanh_5_13_7_6"});
  }
  const MlpSpec chol_spec{.inputs = 5, .hidden = {16}, .outputs = 3 + 6, .activation = Activation::tanh};
  for (const bool exact : {false, true})
    for (const RewardForm form : forms)
      out.push_back({CurvHead::cholesky, exact, form, Transform::leave_one_out, chol_spec, 37, 3, 6, true, 1e-6, 0.2,
                     {.step = 3, .first_row = 2}, "tanh_5_16_9"});
  const std::pair<MlpSpec, const char*> trunks[] = {
      {{.inputs = 6, .hidden = {16, 8}, .outputs = 7, .activation = Activation::tanh}, "tanh_6_16_8_7"},
      {{.inputs = 6, .hidden = {16}, .outputs = 7, .activation = Activation::relu}, "relu_6_16_7"},
      {{.inputs = 6, .hidden = {}, .outputs = 7}, "logistic_6_7"}};
  for (const auto& [spec, name] : trunks)
    for (const RewardForm form : forms) {
      // standardize with ε = 0.1: a group of equal rewards has ∂A/∂r = (I − 11ᵀ/G)/ε, so float
      // roundoff in the centring would be amplified by 1/ε (a property of the transform).
      for (const Transform t : {Transform::none, Transform::leave_one_out, Transform::standardize})
        out.push_back({CurvHead::categorical, false, form, t, spec, 33, 7, 5, false, 0.1, 0.25, {.step = 9, .first_row = 4}, name});
      out.push_back({CurvHead::categorical, true, form, Transform::none, spec, 33, 7, 5, false, 0.1, 0.25, {}, name});
    }
  return out;
}

/// The former diag/cholesky/categorical_policy_curvature_gpu_test.cpp comparisons: their
/// problems (non-square odd-sized trunks, B = 29/37/33), strided guarded inputs and outputs, what
/// prepare kept (samples, advantages, cotangents, per-row losses), the gradient, two HVPs (one
/// through the operator) and mixed products, the diag head's repeat of the first direction bit
/// for bit, their tolerances and non-vacuity thresholds.
void add_curvature_gpu_test_checks(Table& t) {
  for (const CurvCase& c : curvature_gpu_test_cases()) {
    const char* head = c.head == CurvHead::diag ? "diag" : c.head == CurvHead::cholesky ? "cholesky" : "categorical";
    const std::string var = fmt::format("{} {}, {}, {}, {}{}", head, c.exact ? "exact" : "surrogate", c.trunk, form_name(c.form),
                                        to_string(c.transform), c.per_dim ? ", per-dim" : "");
    t.add_custom("curvature.kept_state_and_products", var, c.exact ? fmt::format("B={}", c.B) : fmt::format("B={} G={}", c.B, c.G), Tol{2e-3, 0.25, 5e-4},
                 [c](Env& env, std::uint64_t salt) {
                   Rng r(env.seed, salt);
                   const CurvIn in = curvature_inputs(r, c, salt % 1000);
                   const Outputs got = curvature_case_run<float>(env.test, c, in);
                   const Outputs want = curvature_case_run<double>(env.ref, c, in);
                   return compare_each(got, want, curvature_case_tols(c, want));
                 });
  }
}
}  // namespace

namespace {
// ------------------------------------------------------------------ one bilevel outer step

/// The former BilevelGpu.OneOuterStepAgreesWithTheCpuBackend: one outer step of the
/// BilevelTrainer (exact inner objective, 200 inner steps, conjugate gradients with damping 1e-3,
/// tolerance 1e-6, at most 50 iterations) on a small 2-d regression (N = 256, y = x ± 1 + noise)
/// on the tested backend in float and the cpu backend in double: the hypergradient within
/// 1e-3·(1 + |h|), the train NLL per dimension within 1e-4·(1 + |nll|), and φ after the one
/// re-created Adam step within 1e-6 (the same ±α when the signs agree). The CUDA-graph test stays
/// in tests/bilevel_gpu_test.cpp.
void add_bilevel_step_check(Table& t) {
  t.add_custom("bilevel.outer_step", "exact inner objective, CG, scalar reward", "N=256 inputs=2", Tol{1e-3, 0.0, 1.0},
               [](Env& env, std::uint64_t salt) {
                 Rng r(env.seed, salt);
                 const std::int64_t N = 256;
                 Vec x, y;
                 for (std::int64_t i = 0; i < N; ++i) {
                   const double a = r.uniform(-2, 2), b = r.uniform(-2, 2);
                   x.push_back(a);
                   x.push_back(b);
                   y.push_back(static_cast<float>(a + 1 + r.uniform(-1, 1)));
                   y.push_back(static_cast<float>(b - 1 + r.uniform(-1, 1)));
                 }
                 const auto step = [&](Context& ctx, auto zero) {
                   using T = decltype(zero);
                   BilevelOptions<T> o;
                   o.inner.objective = InnerObjective::exact;
                   o.inner.steps = 200;
                   o.solver = ImplicitSolver::conjugate_gradient;
                   o.cg = {.damping = T(1e-3), .tolerance = T(1e-6), .max_iterations = 50};
                   const Buffer<T> xb = put<T>(ctx, x), yb = put<T>(ctx, y);
                   BilevelTrainer<T> trainer(ctx, {.inputs = 2}, {xb.matrix(N, 2), yb.matrix(N, 2)}, {}, RewardForm::scalar,
                                             std::vector<double>{0.7}, o);
                   const BilevelRecord rec = trainer.step();
                   return std::make_tuple(rec.hypergradient[0], rec.train.nll_per_dim, rec.reward_params[0]);
                 };
                 const auto [hg, nll_g, phi_g] = step(env.test, float{});
                 const auto [hc, nll_c, phi_c] = step(env.ref, double{});
                 return compare_each({{"hypergradient", {hg}}, {"nll_per_dim", {nll_g}}, {"reward_params minus reference", {phi_g - phi_c}}},
                                     {{"hypergradient", {hc}}, {"nll_per_dim", {nll_c}}, {"reward_params minus reference", {0.0}}},
                                     {Tol{1e-3, 0.0, 1.0}, Tol{1e-4, 0.0, 1.0}, Tol{1e-6, 0.0, 1.0}});
               });
}
}  // namespace

}  // namespace d2r::checks
