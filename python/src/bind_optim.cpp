// Bindings of optim.hpp (Adam/AdamW, SGD, clamping, clipping, the draw counter) and solvers.hpp
// (CG, CG on the normal equations, Neumann series) over a PolicyCurvature or a Python callable.
#include <nanobind/stl/function.h>

#include "heads.hpp"

namespace d2rpy {

bool curvature_operator(nb::handle obj, Scalar s, d2r::LinearOperator<float>* f32, d2r::LinearOperator<double>* f64);

namespace {

/// A Python callable A(x, y) as a LinearOperator: called with the GIL held, with x (read-only) and y
/// as views of the solver's own vectors (no copies): NumPy arrays on the cpu backend, PyTorch
/// tensors on cuda. They are valid only during the call.
template <class T>
d2r::LinearOperator<T> python_operator(nb::object fn, bool cuda, int device) {
  return [fn, cuda, device](d2r::ConstVector<T> x, d2r::VectorView<T> y) {
    nb::gil_scoped_acquire gil;
    const std::size_t n = static_cast<std::size_t>(x.size);
    if (cuda) {
      using Ro = nb::ndarray<nb::pytorch, const T, nb::ndim<1>, nb::device::cuda>;
      using Rw = nb::ndarray<nb::pytorch, T, nb::ndim<1>, nb::device::cuda>;
      fn(nb::cast(Ro(x.data, {n}, nb::handle(), {}, nb::dtype<T>(), nb::device::cuda::value, device),
                  nb::rv_policy::reference),
         nb::cast(Rw(y.data, {n}, nb::handle(), {}, nb::dtype<T>(), nb::device::cuda::value, device),
                  nb::rv_policy::reference));
    } else {
      fn(nb::cast(nb::ndarray<nb::numpy, const T, nb::ndim<1>>(x.data, {n}, nb::handle()), nb::rv_policy::reference),
         nb::cast(nb::ndarray<nb::numpy, T, nb::ndim<1>>(y.data, {n}, nb::handle()), nb::rv_policy::reference));
    }
  };
}

template <class T>
nb::dict report_dict(const d2r::SolveReport<T>& r) {
  nb::dict d;
  d["status"] = std::string(d2r::to_string(r.status));
  d["iterations"] = r.iterations;
  d["initial_residual_norm"] = static_cast<double>(r.initial_residual_norm);
  d["residual_norm"] = static_cast<double>(r.residual_norm);
  nb::list h;
  for (T v : r.residual_history) h.append(static_cast<double>(v));
  d["residual_history"] = h;
  return d;
}

enum class Method { cg, normal_cg, neumann };

nb::dict solve(Method method, d2r::Context& ctx, nb::object A, nb::object b, nb::object x, double damping,
               double tolerance, std::int64_t max_iterations, bool zero_initial_guess, double alpha) {
  const char* fn = method == Method::cg ? "conjugate_gradient" : method == Method::normal_cg ? "conjugate_gradient_normal"
                                                                                            : "neumann_series";
  Call c(fn, ctx);
  const Arg ba = c.input("b", b), xa = c.output("x", x);
  const Scalar s = c.scalar(ba);
  c.expect_scalar(xa);
  nb::dict out;
  dispatch(s, [&]<class T>() {
    d2r::LinearOperator<float> op32;
    d2r::LinearOperator<double> op64;
    d2r::LinearOperator<T> op;
    if (curvature_operator(A, s, &op32, &op64)) {
      if constexpr (std::is_same_v<T, float>) op = op32;
      else op = op64;
    } else if (PyCallable_Check(A.ptr())) {
      op = python_operator<T>(A, ctx.backend() == d2r::Backend::cuda, ctx.device());
    } else {
      bad_argument(fn, "A", "expected a PolicyCurvature of the dtype of 'b' or a callable A(x, y) writing y = A x");
    }
    const auto bv = c.vector<const T>(ba);
    const auto xv = c.vector<T>(xa);
    d2r::SolveReport<T> rep;
    {
      nb::gil_scoped_release rel;
      if (method == Method::neumann) {
        rep = d2r::neumann_series(ctx, op, bv, xv,
                                  d2r::NeumannOptions<T>{.alpha = static_cast<T>(alpha), .iterations = max_iterations,
                                                         .damping = static_cast<T>(damping),
                                                         .tolerance = static_cast<T>(tolerance)});
      } else {
        const d2r::CgOptions<T> o{.damping = static_cast<T>(damping), .tolerance = static_cast<T>(tolerance),
                                  .max_iterations = max_iterations, .zero_initial_guess = zero_initial_guess};
        rep = method == Method::cg ? d2r::conjugate_gradient(ctx, op, bv, xv, o)
                                   : d2r::conjugate_gradient_normal(ctx, op, bv, xv, o);
      }
    }
    out = report_dict(rep);
  });
  return out;
}

}  // namespace

void bind_optim(nb::module_& m) {
  m.def(
      "adam_reset",
      [](d2r::Context& ctx, nb::object first_moment, nb::object second_moment, nb::object step) {
        Call c("adam_reset", ctx);
        const Arg m1 = c.output("first_moment", first_moment), m2 = c.output("second_moment", second_moment),
                  st = c.output("step", step);
        dispatch(c.scalar(m1), [&]<class T>() {
          c.expect_scalar(m2);
          const d2r::AdamState<T> state{c.vector<T>(m1), c.vector<T>(m2), c.vector<std::int64_t>(st)};
          nb::gil_scoped_release rel;
          d2r::adam_reset(ctx, state);
        });
      },
      nb::arg("ctx"), nb::arg("first_moment"), nb::arg("second_moment"), nb::arg("step"));

  m.def(
      "adam_step",
      [](d2r::Context& ctx, nb::object params, nb::object grad, nb::object first_moment, nb::object second_moment,
         nb::object step, double learning_rate, double beta1, double beta2, double epsilon, double weight_decay) {
        Call c("adam_step", ctx);
        const Arg p = c.output("params", params), g = c.input("grad", grad),
                  m1 = c.output("first_moment", first_moment), m2 = c.output("second_moment", second_moment),
                  st = c.output("step", step);
        dispatch(c.scalar(p), [&]<class T>() {
          c.expect_scalar(g), c.expect_scalar(m1), c.expect_scalar(m2);
          const d2r::AdamState<T> state{c.vector<T>(m1), c.vector<T>(m2), c.vector<std::int64_t>(st)};
          const d2r::AdamOptions<T> o{static_cast<T>(learning_rate), static_cast<T>(beta1), static_cast<T>(beta2),
                                      static_cast<T>(epsilon), static_cast<T>(weight_decay)};
          const auto pv = c.vector<T>(p);
          const auto gv = c.vector<const T>(g);
          nb::gil_scoped_release rel;
          d2r::adam_step(ctx, o, state, pv, gv);
        });
      },
      nb::arg("ctx"), nb::arg("params"), nb::arg("grad"), nb::arg("first_moment"), nb::arg("second_moment"),
      nb::arg("step"), nb::kw_only(), nb::arg("learning_rate") = 1e-3, nb::arg("beta1") = 0.9,
      nb::arg("beta2") = 0.999, nb::arg("epsilon") = 1e-8, nb::arg("weight_decay") = 0.0,
      "One Adam (AdamW when weight_decay > 0) update in place, PyTorch semantics; step counts the updates.");

  m.def(
      "advance_counter",
      [](d2r::Context& ctx, nb::object counter, std::int64_t by) {
        Call c("advance_counter", ctx);
        const auto cv = c.vector<std::int64_t>(c.output("counter", counter));
        nb::gil_scoped_release rel;
        d2r::advance_counter(ctx, cv, by);
      },
      nb::arg("ctx"), nb::arg("counter"), nb::arg("by") = 1);

  m.def(
      "sgd_step",
      [](d2r::Context& ctx, nb::object params, nb::object grad, nb::object velocity, double learning_rate,
         double momentum) {
        Call c("sgd_step", ctx);
        const Arg p = c.output("params", params), g = c.input("grad", grad), v = c.output("velocity", velocity, true);
        dispatch(c.scalar(p), [&]<class T>() {
          c.expect_scalar(g), c.expect_scalar(v);
          const auto pv = c.vector<T>(p);
          const auto gv = c.vector<const T>(g);
          const auto vv = c.vector<T>(v);
          nb::gil_scoped_release rel;
          d2r::sgd_step<T>(ctx, static_cast<T>(learning_rate), static_cast<T>(momentum), vv, pv, gv);
        });
      },
      nb::arg("ctx"), nb::arg("params"), nb::arg("grad"), nb::arg("velocity").none(), nb::kw_only(),
      nb::arg("learning_rate"), nb::arg("momentum") = 0.0);

  m.def(
      "clamp_values",
      [](d2r::Context& ctx, nb::object values, double limit) {
        Call c("clamp_values", ctx);
        const Arg v = c.output("values", values);
        dispatch(c.scalar(v), [&]<class T>() {
          const auto vv = c.vector<T>(v);
          nb::gil_scoped_release rel;
          d2r::clamp_values<T>(ctx, static_cast<T>(limit), vv);
        });
      },
      nb::arg("ctx"), nb::arg("values"), nb::arg("limit"));

  m.def(
      "clip_global_norm",
      [](d2r::Context& ctx, nb::object values, double max_norm, nb::object norm_out) {
        Call c("clip_global_norm", ctx);
        const Arg v = c.output("values", values), n = c.output("norm_out", norm_out, true);
        dispatch(c.scalar(v), [&]<class T>() {
          c.expect_scalar(n);
          const auto vv = c.vector<T>(v);
          const auto nv = c.vector<T>(n);
          nb::gil_scoped_release rel;
          d2r::clip_global_norm<T>(ctx, static_cast<T>(max_norm), vv, nv);
        });
      },
      nb::arg("ctx"), nb::arg("values"), nb::arg("max_norm"), nb::arg("norm_out").none() = nb::none());

  m.def(
      "conjugate_gradient",
      [](d2r::Context& ctx, nb::object A, nb::object b, nb::object x, double damping, double tolerance,
         std::int64_t max_iterations, bool zero_initial_guess) {
        return solve(Method::cg, ctx, A, b, x, damping, tolerance, max_iterations, zero_initial_guess, 0);
      },
      nb::arg("ctx"), nb::arg("A"), nb::arg("b"), nb::arg("x"), nb::kw_only(), nb::arg("damping") = 0.0,
      nb::arg("tolerance") = 1e-6, nb::arg("max_iterations") = 100, nb::arg("zero_initial_guess") = false,
      "CG on (A + δI) x = b; A a PolicyCurvature or a callable A(x, y). Returns the solve report as a dict.");
  m.def(
      "conjugate_gradient_normal",
      [](d2r::Context& ctx, nb::object A, nb::object b, nb::object x, double damping, double tolerance,
         std::int64_t max_iterations, bool zero_initial_guess) {
        return solve(Method::normal_cg, ctx, A, b, x, damping, tolerance, max_iterations, zero_initial_guess, 0);
      },
      nb::arg("ctx"), nb::arg("A"), nb::arg("b"), nb::arg("x"), nb::kw_only(), nb::arg("damping") = 0.0,
      nb::arg("tolerance") = 1e-6, nb::arg("max_iterations") = 100, nb::arg("zero_initial_guess") = false,
      "CG on the normal equations (symmetric, possibly indefinite A).");
  m.def(
      "neumann_series",
      [](d2r::Context& ctx, nb::object A, nb::object b, nb::object x, double alpha, std::int64_t iterations,
         double damping, double tolerance) {
        return solve(Method::neumann, ctx, A, b, x, damping, tolerance, iterations, false, alpha);
      },
      nb::arg("ctx"), nb::arg("A"), nb::arg("b"), nb::arg("x"), nb::kw_only(), nb::arg("alpha"),
      nb::arg("iterations") = 100, nb::arg("damping") = 0.0, nb::arg("tolerance") = 0.0,
      "Neumann series x = α Σ_k (I − α(A + δI))^k b.");
}

}  // namespace d2rpy
