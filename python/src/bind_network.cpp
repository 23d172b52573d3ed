// Bindings of network.hpp (Mlp) and policy_curvature.hpp (the three PolicyCurvature classes).
#include <memory>
#include <variant>

#include <nanobind/stl/vector.h>

#include "heads.hpp"

namespace d2rpy {

namespace {

d2r::Mlp make_mlp(std::int64_t inputs, const std::vector<std::int64_t>& hidden, std::int64_t outputs,
                  const std::string& activation, bool layer_norm) {
  return d2r::Mlp({.inputs = inputs, .hidden = hidden, .outputs = outputs,
                   .activation = parse_activation("Mlp", activation), .layer_norm = layer_norm});
}

/// A PolicyCurvature of either scalar type; keeps the arrays of the last prepare alive (the C++
/// object holds views of them until the last apply).
template <class Head32, class Head64>
struct CurvaturePy {
  d2r::Context* ctx;
  HeadKind kind;
  Scalar scalar;
  std::variant<std::unique_ptr<d2r::PolicyCurvature<float, Head32>>, std::unique_ptr<d2r::PolicyCurvature<double, Head64>>>
      impl;
  std::vector<nb::object> kept;  // params, x, targets/labels, reward params of the last prepare
};
using DiagCurv = CurvaturePy<d2r::DiagGaussian<float>, d2r::DiagGaussian<double>>;
using CholCurv = CurvaturePy<d2r::CholeskyGaussian<float>, d2r::CholeskyGaussian<double>>;
using CatCurv = CurvaturePy<d2r::Categorical<float>, d2r::Categorical<double>>;

Scalar parse_dtype(std::string_view fn, const std::string& s) {
  if (s == "float32") return Scalar::f32;
  if (s == "float64") return Scalar::f64;
  bad_argument(fn, "dtype", "expected 'float32' or 'float64', got '" + s + "'");
}

/// apply and mixed_product: `in` must have the curvature's dtype and `out` be writable of it; then
/// `op(curvature, in, out)` on the typed curvature with the GIL released.
template <class C, class Op>
void vector_product(C& self, const char* fn, const char* in_name, nb::object in, const char* out_name,
                    nb::object out, Op op) {
  Call c(fn, *self.ctx);
  const Arg ia = c.input(in_name, in), oa = c.output(out_name, out);
  if (c.scalar(ia) != self.scalar) bad_argument(c.fn(), in_name, "dtype differs from the curvature's dtype");
  c.expect_scalar(oa);
  dispatch(self.scalar, [&]<class T>() {
    auto& p = *std::get<std::is_same_v<T, float> ? 0 : 1>(self.impl);
    const auto in_view = c.vector<const T>(ia);
    const auto out_view = c.vector<T>(oa);
    nb::gil_scoped_release rel;
    op(p, in_view, out_view);
  });
}

/// prepare and prepare_exact: the arrays (params with the curvature's dtype, the others with
/// params'), the reward form, then `key_of(fn)` (prepare's draw key); then, on the typed
/// curvature with the GIL released, `op(curvature, params, x, labels or targets (data_of),
/// reward, options, key, grad)`. Keeps the arrays alive.
template <class C, class KeyOf, class Op>
void prepare_with(C& self, const char* fn, nb::object params, nb::object x, nb::object grad,
                  const std::string& reward_form, nb::object reward_params, const PgOptionsPy& options,
                  nb::object targets, nb::object labels, KeyOf key_of, Op op) {
  Call c(fn, *self.ctx);
  const Arg pa = c.input("params", params), xa = c.input("x", x), ga = c.output("grad", grad),
            ra = c.input("reward_params", reward_params);
  const Scalar s = c.scalar(pa);
  if (s != self.scalar) bad_argument(c.fn(), "params", "dtype differs from the curvature's dtype");
  c.expect_scalar(xa), c.expect_scalar(ga), c.expect_scalar(ra);
  const d2r::RewardForm form = parse_reward_form(c.fn(), reward_form);
  const d2r::DrawKey key = key_of(c.fn());
  dispatch(s, [&]<class T>() {
    auto& p = *std::get<std::is_same_v<T, float> ? 0 : 1>(self.impl);
    const auto pv = c.vector<const T>(pa);
    const auto xv = c.matrix<const T>(xa);
    const auto gv = c.vector<T>(ga);
    const d2r::MahalanobisReward<T> rw{form, c.vector<const T>(ra)};
    const auto opt = to_pg<T>(c.fn(), options);
    using Head = std::conditional_t<std::is_same_v<C, CatCurv>, d2r::Categorical<T>, d2r::DiagGaussian<T>>;
    const auto data = data_of<T>(c, Head{}, targets, labels);
    nb::gil_scoped_release rel;
    op(p, pv, xv, data, rw, opt, key, gv);
  });
  self.kept = {params, x, targets, labels, reward_params};
}

template <class C>
void bind_curvature(nb::module_& m, const char* name, HeadKind kind) {
  auto cls = nb::class_<C>(m, name,
                           "The inner objective's exact curvature with respect to the policy network's parameters "
                           "(d2r::PolicyCurvature): prepare()/prepare_exact() at θ, then apply(v, hv) = H v and "
                           "mixed_product(w, grad_params). Keeps the arrays of the last prepare alive.");
  cls.def(
      "__init__",
      [kind](C* self, d2r::Context& ctx, const d2r::Mlp& net, std::int64_t batch, const std::string& dtype,
             double jitter) {
        new (self) C{&ctx, kind, parse_dtype("PolicyCurvature", dtype), {}, {}};
        if (self->scalar == Scalar::f64 && ctx.backend() == d2r::Backend::cuda) {
          bad_argument("PolicyCurvature", "dtype", "the cuda backend runs float32 only");
        }
        using P32 = typename std::variant_alternative_t<0, decltype(self->impl)>::element_type;
        using P64 = typename std::variant_alternative_t<1, decltype(self->impl)>::element_type;
        if constexpr (P32::kCholesky) {
          if (self->scalar == Scalar::f64) self->impl = std::make_unique<P64>(ctx, net, batch, jitter);
          else self->impl = std::make_unique<P32>(ctx, net, batch, static_cast<float>(jitter));
        } else {
          if (self->scalar == Scalar::f64) self->impl = std::make_unique<P64>(ctx, net, batch);
          else self->impl = std::make_unique<P32>(ctx, net, batch);
        }
      },
      nb::arg("ctx"), nb::arg("net"), nb::arg("batch"), nb::kw_only(), nb::arg("dtype") = "float32",
      nb::arg("jitter") = 1e-5, nb::keep_alive<1, 2>(), nb::keep_alive<1, 3>());

  cls.def(
      "prepare",
      [](C& self, nb::object params, nb::object x, nb::object grad, const std::string& reward_form,
                  nb::object reward_params, std::int64_t generations, const PgOptionsPy& options, nb::object targets,
                  nb::object labels, std::int64_t step) {
        prepare_with(self, "PolicyCurvature.prepare", params, x, grad, reward_form, reward_params, options, targets,
                     labels, [&](std::string_view fn) { return draw_key(fn, step, 0); },
                     [&](auto& p, auto pv, auto xv, auto data, auto rw, const auto& opt, d2r::DrawKey key, auto gv) {
                       p.prepare(pv, xv, data, rw, generations, opt, key, gv);
                     });
      },
      nb::arg("params"), nb::arg("x"), nb::arg("grad"), nb::arg("reward_form"), nb::arg("reward_params"),
      nb::arg("generations"), nb::arg("options"), nb::kw_only(), nb::arg("targets") = nb::none(),
      nb::arg("labels") = nb::none(), nb::arg("step") = 0,
      "The surrogate's curvature at θ = params (samples and advantages kept); writes ∇θ L_in into grad.");

  cls.def(
      "prepare_exact",
      [](C& self, nb::object params, nb::object x, nb::object grad, const std::string& reward_form,
         nb::object reward_params, const PgOptionsPy& options, nb::object targets, nb::object labels) {
        prepare_with(self, "PolicyCurvature.prepare_exact", params, x, grad, reward_form, reward_params, options,
                     targets, labels, [](std::string_view) { return d2r::DrawKey{}; },
                     [](auto& p, auto pv, auto xv, auto data, auto rw, const auto& opt, d2r::DrawKey, auto gv) {
                       p.prepare_exact(pv, xv, data, rw, opt, gv);
                     });
      },
      nb::arg("params"), nb::arg("x"), nb::arg("grad"), nb::arg("reward_form"), nb::arg("reward_params"),
      nb::arg("options"), nb::kw_only(), nb::arg("targets") = nb::none(), nb::arg("labels") = nb::none(),
      "The exact-expectation objective's curvature at θ = params; writes ∇θ L_exact into grad.");

  cls.def(
      "apply",
      [](C& self, nb::object v, nb::object hv) {
        vector_product(self, "PolicyCurvature.apply", "v", v, "hv", hv,
                       [](auto& p, auto in, auto out) { p.apply(in, out); });
      },
      nb::arg("v"), nb::arg("hv"), "hv = ∇²θ L · v for the objective of the last prepare.");

  cls.def(
      "mixed_product",
      [](C& self, nb::object w, nb::object grad_params) {
        vector_product(self, "PolicyCurvature.mixed_product", "w", w, "grad_params", grad_params,
                       [](auto& p, auto in, auto out) { p.mixed_product(in, out); });
      },
      nb::arg("w"), nb::arg("grad_params"), "grad_params = ∇_φ(∇θ L · w) with the reward of the last prepare.");

  cls.def_prop_ro("dims", [](C& self) {
    std::int64_t d = 0;
    std::visit([&](auto& p) { d = p->dims(); }, self.impl);
    return d;
  });
  cls.def_prop_ro("dtype", [](C& self) { return std::string(self.scalar == Scalar::f64 ? "float64" : "float32"); });
}

}  // namespace

/// The solvers need the curvature's operator (bind_optim.cpp).
bool curvature_operator(nb::handle obj, Scalar s, d2r::LinearOperator<float>* f32, d2r::LinearOperator<double>* f64) {
  const auto take = [&](auto* c) {
    if (c->scalar != s) return false;
    if (s == Scalar::f32) *f32 = std::get<0>(c->impl)->as_operator();
    else *f64 = std::get<1>(c->impl)->as_operator();
    return true;
  };
  DiagCurv* d = nullptr;
  CholCurv* ch = nullptr;
  CatCurv* ca = nullptr;
  if (nb::try_cast(obj, d, false) && d) return take(d);
  if (nb::try_cast(obj, ch, false) && ch) return take(ch);
  if (nb::try_cast(obj, ca, false) && ca) return take(ca);
  return false;
}

void bind_network(nb::module_& m) {
  nb::class_<d2r::Mlp>(m, "Mlp",
                       "Layout of a multilayer perceptron (owns no parameters): flat parameter vector, forward, "
                       "backward, forward tangent (R-op) and backward tangent (d2r::Mlp).")
      .def(
          "__init__",
          [](d2r::Mlp* self, std::int64_t inputs, const std::vector<std::int64_t>& hidden, std::int64_t outputs,
             const std::string& activation, bool layer_norm) {
            new (self) d2r::Mlp(make_mlp(inputs, hidden, outputs, activation, layer_norm));
          },
          nb::arg("inputs"), nb::arg("hidden"), nb::arg("outputs"), nb::kw_only(), nb::arg("activation") = "relu",
          nb::arg("layer_norm") = false)
      .def_prop_ro("inputs", &d2r::Mlp::inputs)
      .def_prop_ro("outputs", &d2r::Mlp::outputs)
      .def_prop_ro("parameter_count", &d2r::Mlp::parameter_count)
      .def_prop_ro("layer_count", &d2r::Mlp::layer_count)
      .def_prop_ro("hidden", [](const d2r::Mlp& n) { return n.spec().hidden; })
      .def_prop_ro("activation", [](const d2r::Mlp& n) { return std::string(d2r::to_string(n.spec().activation)); })
      .def_prop_ro("layer_norm", [](const d2r::Mlp& n) { return n.spec().layer_norm; })
      .def("cache_elements", &d2r::Mlp::cache_elements, nb::arg("batch"))
      .def("describe", &d2r::Mlp::describe)
      .def("layer", [](const d2r::Mlp& n, std::int64_t l) {
        const d2r::MlpLayer L = n.layer(l);
        nb::dict d;
        d["inputs"] = L.inputs, d["outputs"] = L.outputs, d["weight_offset"] = L.weight_offset;
        d["bias_offset"] = L.bias_offset, d["activated"] = L.activated, d["normalized"] = L.normalized;
        d["gamma_offset"] = L.gamma_offset, d["beta_offset"] = L.beta_offset;
        return d;
      }, nb::arg("l"))
      .def(
          "init",
          [](const d2r::Mlp& n, d2r::Context& ctx, nb::object params, std::uint64_t seed) {
            Call c("Mlp.init", ctx);
            const Arg p = c.output("params", params);
            dispatch(c.scalar(p), [&]<class T>() {
              const auto pv = c.vector<T>(p);
              nb::gil_scoped_release rel;
              n.init(ctx, pv, seed);
            });
          },
          nb::arg("ctx"), nb::arg("params"), nb::arg("seed"), "PyTorch's default nn.Linear initialisation from seed.")
      .def(
          "forward",
          [](const d2r::Mlp& n, d2r::Context& ctx, nb::object params, nb::object x, nb::object cache, nb::object out) {
            Call c("Mlp.forward", ctx);
            const Arg p = c.input("params", params), xa = c.input("x", x), ca = c.output("cache", cache, true),
                      o = c.output("out", out);
            dispatch(c.scalar(p), [&]<class T>() {
              c.expect_scalar(xa), c.expect_scalar(ca), c.expect_scalar(o);
              const auto pv = c.vector<const T>(p);
              const auto xv = c.matrix<const T>(xa);
              const auto cv = c.vector<T>(ca);
              const auto ov = c.matrix<T>(o);
              nb::gil_scoped_release rel;
              n.forward(ctx, pv, xv, cv, ov);
            });
          },
          nb::arg("ctx"), nb::arg("params"), nb::arg("x"), nb::arg("cache").none(), nb::arg("out"))
      .def(
          "backward",
          [](const d2r::Mlp& n, d2r::Context& ctx, nb::object params, nb::object x, nb::object cache,
             nb::object d_out, nb::object d_params, nb::object d_x) {
            Call c("Mlp.backward", ctx);
            const Arg p = c.input("params", params), xa = c.input("x", x), ca = c.input("cache", cache, true),
                      d = c.input("d_out", d_out), dp = c.output("d_params", d_params), dx = c.output("d_x", d_x, true);
            dispatch(c.scalar(p), [&]<class T>() {
              c.expect_scalar(xa), c.expect_scalar(ca), c.expect_scalar(d), c.expect_scalar(dp), c.expect_scalar(dx);
              const auto pv = c.vector<const T>(p);
              const auto xv = c.matrix<const T>(xa);
              const auto cv = c.vector<const T>(ca);
              const auto dv = c.matrix<const T>(d);
              const auto dpv = c.vector<T>(dp);
              const auto dxv = c.matrix<T>(dx);
              nb::gil_scoped_release rel;
              n.backward(ctx, pv, xv, cv, dv, dpv, dxv);
            });
          },
          nb::arg("ctx"), nb::arg("params"), nb::arg("x"), nb::arg("cache").none(), nb::arg("d_out"),
          nb::arg("d_params"), nb::arg("d_x").none() = nb::none())
      .def(
          "forward_tangent",
          [](const d2r::Mlp& n, d2r::Context& ctx, nb::object params, nb::object v, nb::object x, nb::object cache,
             nb::object tangent_cache, nb::object out_tangent) {
            Call c("Mlp.forward_tangent", ctx);
            const Arg p = c.input("params", params), va = c.input("v", v), xa = c.input("x", x),
                      ca = c.input("cache", cache, true), tc = c.output("tangent_cache", tangent_cache, true),
                      o = c.output("out_tangent", out_tangent);
            dispatch(c.scalar(p), [&]<class T>() {
              c.expect_scalar(va), c.expect_scalar(xa), c.expect_scalar(ca), c.expect_scalar(tc), c.expect_scalar(o);
              const auto pv = c.vector<const T>(p);
              const auto vv = c.vector<const T>(va);
              const auto xv = c.matrix<const T>(xa);
              const auto cv = c.vector<const T>(ca);
              const auto tcv = c.vector<T>(tc);
              const auto ov = c.matrix<T>(o);
              nb::gil_scoped_release rel;
              n.forward_tangent(ctx, pv, vv, xv, cv, tcv, ov);
            });
          },
          nb::arg("ctx"), nb::arg("params"), nb::arg("v"), nb::arg("x"), nb::arg("cache").none(),
          nb::arg("tangent_cache").none(), nb::arg("out_tangent"))
      .def(
          "backward_tangent",
          [](const d2r::Mlp& n, d2r::Context& ctx, nb::object params, nb::object v, nb::object x, nb::object cache,
             nb::object tangent_cache, nb::object d_out, nb::object d_out_tangent, nb::object d_params_tangent) {
            Call c("Mlp.backward_tangent", ctx);
            const Arg p = c.input("params", params), va = c.input("v", v), xa = c.input("x", x),
                      ca = c.input("cache", cache, true), tc = c.input("tangent_cache", tangent_cache, true),
                      d = c.input("d_out", d_out), dt = c.input("d_out_tangent", d_out_tangent),
                      o = c.output("d_params_tangent", d_params_tangent);
            dispatch(c.scalar(p), [&]<class T>() {
              c.expect_scalar(va), c.expect_scalar(xa), c.expect_scalar(ca), c.expect_scalar(tc);
              c.expect_scalar(d), c.expect_scalar(dt), c.expect_scalar(o);
              const auto pv = c.vector<const T>(p);
              const auto vv = c.vector<const T>(va);
              const auto xv = c.matrix<const T>(xa);
              const auto cv = c.vector<const T>(ca);
              const auto tcv = c.vector<const T>(tc);
              const auto dv = c.matrix<const T>(d);
              const auto dtv = c.matrix<const T>(dt);
              const auto ov = c.vector<T>(o);
              nb::gil_scoped_release rel;
              n.backward_tangent(ctx, pv, vv, xv, cv, tcv, dv, dtv, ov);
            });
          },
          nb::arg("ctx"), nb::arg("params"), nb::arg("v"), nb::arg("x"), nb::arg("cache").none(),
          nb::arg("tangent_cache").none(), nb::arg("d_out"), nb::arg("d_out_tangent"), nb::arg("d_params_tangent"));

  bind_curvature<DiagCurv>(m, "DiagGaussianPolicyCurvature", HeadKind::diag);
  bind_curvature<CholCurv>(m, "CholeskyPolicyCurvature", HeadKind::cholesky);
  bind_curvature<CatCurv>(m, "CategoricalPolicyCurvature", HeadKind::categorical);
}

}  // namespace d2rpy
