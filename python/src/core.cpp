// d2r._core: the module, the error translation, Context, backends(), and the array import shared
// by every binding (common.hpp).
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>

#include "common.hpp"

#ifdef D2R_PY_OPENBLAS
extern "C" void openblas_set_num_threads(int num_threads);
extern "C" int openblas_get_num_threads(void);
#endif

namespace d2rpy {

namespace {
PyObject* g_argument_error = nullptr;  // d2r.ArgumentError (a ValueError subclass)

const char* device_kind(int t) {
  switch (t) {
    case nb::device::cpu::value: return "cpu";
    case nb::device::cuda::value: return "cuda";
    case nb::device::cuda_host::value: return "cuda_host (pinned)";
    case nb::device::cuda_managed::value: return "cuda_managed";
    default: return "another device";
  }
}
}  // namespace

void bad_argument(std::string_view fn, std::string_view arg, const std::string& what) {
  throw d2r::Error(d2r::ErrorKind::invalid_argument, std::string(arg),
                   "d2r." + std::string(fn) + ": argument '" + std::string(arg) + "': " + what);
}

const char* dtype_name(nb::dlpack::dtype dt) {
  using C = nb::dlpack::dtype_code;
  const auto code = static_cast<C>(dt.code);
  if (dt.lanes != 1) return "a vector dtype";
  if (code == C::Float) return dt.bits == 32 ? "float32" : dt.bits == 64 ? "float64" : dt.bits == 16 ? "float16" : "float?";
  if (code == C::Int) return dt.bits == 32 ? "int32" : dt.bits == 64 ? "int64" : dt.bits == 8 ? "int8" : dt.bits == 16 ? "int16" : "int?";
  if (code == C::UInt) return dt.bits == 8 ? "uint8" : "an unsigned integer dtype";
  if (code == C::Bfloat) return "bfloat16";
  if (code == C::Bool) return "bool";
  if (code == C::Complex) return "a complex dtype";
  return "an unknown dtype";
}

Arg Call::input(std::string_view name, const nb::handle& obj, bool optional) {
  Arg a{.name = name};
  if (obj.is_none()) {
    if (!optional) bad_argument(fn_, name, "an array is required, got None");
    return a;
  }
  if (!nb::try_cast(obj, a.in, /*convert=*/false)) {
    bad_argument(fn_, name,
                 std::string("expected an array (DLPack or buffer protocol: NumPy, PyTorch, JAX, CuPy), got ") +
                     nb::inst_name(obj).c_str() +
                     (nb::hasattr(obj, "requires_grad") ? " (a tensor that requires grad: pass tensor.detach())" : ""));
  }
  a.present = true;
  check_space(a);
  return a;
}

Arg Call::output(std::string_view name, const nb::handle& obj, bool optional) {
  Arg a{.name = name, .is_out = true};
  if (obj.is_none()) {
    if (!optional) bad_argument(fn_, name, "an output array is required, got None");
    return a;
  }
  // JAX arrays are immutable and DLPack (as nanobind imports it) carries no read-only flag: refuse
  // them as outputs by type, so that a JAX array is never written through.
  const std::string module = nb::cast<std::string>(nb::handle(reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr()))).attr("__module__"));
  if (module.rfind("jax", 0) == 0) {
    bad_argument(fn_, name, "JAX arrays are immutable and cannot be outputs; pass a NumPy, CuPy or PyTorch array "
                            "(JAX arrays are fine as inputs)");
  }
  if (!nb::try_cast(obj, a.out, /*convert=*/false)) {
    InArray ro;
    if (nb::try_cast(obj, ro, false)) bad_argument(fn_, name, "the output array is read-only");
    bad_argument(fn_, name, std::string("expected a writable array, got ") + nb::inst_name(obj).c_str());
  }
  a.present = true;
  check_space(a);
  return a;
}

void Call::check_space(const Arg& a) {
  const bool cuda = ctx_.backend() == d2r::Backend::cuda;
  const int t = a.device_type();
  if (cuda) {
    if (t != nb::device::cuda::value && t != nb::device::cuda_managed::value) {
      bad_argument(fn_, a.name, std::string("the context runs the cuda backend: expected a CUDA array, got a ") +
                                    device_kind(t) + " array");
    }
    if (t == nb::device::cuda::value && a.device_id() != ctx_.device()) {
      bad_argument(fn_, a.name, "expected an array on CUDA device " + std::to_string(ctx_.device()) +
                                    " (the context's), got device " + std::to_string(a.device_id()));
    }
  } else if (t != nb::device::cpu::value && t != nb::device::cuda_host::value) {
    bad_argument(fn_, a.name, std::string("the context runs the cpu backend: expected a host array, got a ") +
                                  device_kind(t) + " array");
  }
}

Scalar Call::scalar(const Arg& a) {
  if (!a.present) bad_argument(fn_, a.name, "an array is required");
  const auto dt = a.dtype();
  Scalar s;
  if (dt == nb::dtype<float>()) {
    s = Scalar::f32;
  } else if (dt == nb::dtype<double>()) {
    s = Scalar::f64;
  } else {
    bad_argument(fn_, a.name, std::string("expected dtype float32 or float64, got ") + dtype_name(dt));
  }
  if (s == Scalar::f64 && ctx_.backend() == d2r::Backend::cuda) {
    bad_argument(fn_, a.name, "the cuda backend takes float32 arrays only, got float64");
  }
  if (!have_scalar_) {
    have_scalar_ = true;
    scalar_ = s;
    scalar_from_ = a.name;
  } else if (s != scalar_) {
    bad_argument(fn_, a.name, std::string("expected dtype ") + (scalar_ == Scalar::f32 ? "float32" : "float64") +
                                  " (the dtype of '" + std::string(scalar_from_) + "'), got " + dtype_name(dt));
  }
  return s;
}

void Call::expect_scalar(const Arg& a) {
  if (a.present) scalar(a);
}

std::int64_t Call::rows_of(const Arg& a) {
  if (a.ndim() != 2) {
    bad_argument(fn_, a.name, "expected a 2-D array (rows x columns), got " + std::to_string(a.ndim()) + " dimensions");
  }
  return a.shape(0);
}
std::int64_t Call::cols_of(const Arg& a) { return a.shape(1); }
std::int64_t Call::row_stride_of(const Arg& a) {
  const std::int64_t rows = a.shape(0), cols = a.shape(1);
  if (cols > 1 && a.stride(1) != 1) {
    bad_argument(fn_, a.name, "its columns are not contiguous (inner stride " + std::to_string(a.stride(1)) +
                                  " elements, expected 1): d2r takes row-major rows with unit inner stride; pass "
                                  "a contiguous array (e.g. .contiguous() / np.ascontiguousarray)");
  }
  if (rows <= 1) return std::max<std::int64_t>(cols, 1);
  if (a.stride(0) < cols) {
    bad_argument(fn_, a.name, "its row stride " + std::to_string(a.stride(0)) + " is smaller than its " +
                                  std::to_string(cols) + " columns (transposed, broadcast or negative strides)");
  }
  return a.stride(0);
}
std::int64_t Call::vector_size_of(const Arg& a) {
  if (a.ndim() != 1) {
    bad_argument(fn_, a.name, "expected a 1-D array, got " + std::to_string(a.ndim()) + " dimensions");
  }
  if (a.shape(0) > 1 && a.stride(0) != 1) {
    bad_argument(fn_, a.name, "expected a contiguous vector (stride 1), got stride " + std::to_string(a.stride(0)));
  }
  return a.shape(0);
}

d2r::RewardForm parse_reward_form(std::string_view fn, const std::string& s) {
  if (s == "scalar") return d2r::RewardForm::scalar;
  if (s == "diagonal") return d2r::RewardForm::diagonal;
  if (s == "full") return d2r::RewardForm::full;
  bad_argument(fn, "reward_form", "expected 'scalar', 'diagonal' or 'full', got '" + s + "'");
}
d2r::Transform parse_transform(std::string_view fn, const std::string& s) {
  if (s == "none") return d2r::Transform::none;
  if (s == "normalize") return d2r::Transform::normalize;
  if (s == "rbf") return d2r::Transform::rbf;
  if (s == "leave_one_out") return d2r::Transform::leave_one_out;
  if (s == "standardize") return d2r::Transform::standardize;
  bad_argument(fn, "transform", "expected 'none', 'normalize', 'rbf', 'leave_one_out' or 'standardize', got '" + s + "'");
}
d2r::Activation parse_activation(std::string_view fn, const std::string& s) {
  if (s == "relu") return d2r::Activation::relu;
  if (s == "tanh") return d2r::Activation::tanh;
  bad_argument(fn, "activation", "expected 'relu' or 'tanh', got '" + s + "'");
}

void bind_core(nb::module_& m) {
  nb::class_<d2r::Context>(m, "Context",
                           "Backend (cpu or cuda), CUDA stream, cuBLAS handle, workspace and Philox seed of the "
                           "primitives. stream: a borrowed cudaStream_t as an int (e.g. "
                           "torch.cuda.current_stream().cuda_stream; 0 is the legacy default stream); None: the context owns a new "
                           "stream. Not thread-safe (the GIL is released while a primitive runs): one context per thread, as "
                           "d2r.torch.context_for keeps.")
      .def(
          "__init__",
          [](d2r::Context* self, const std::string& backend, std::uint64_t seed, int device,
             std::optional<std::uintptr_t> stream, const std::string& value_checks) {
            d2r::ContextOptions o;
            try {
              o.backend = d2r::parse_backend(backend);
            } catch (const d2r::Error&) {
              bad_argument("Context", "backend", "expected 'auto', 'cpu' or 'cuda', got '" + backend + "'");
            }
            if (value_checks != "full" && value_checks != "none") {
              bad_argument("Context", "value_checks", "expected 'full' or 'none', got '" + value_checks + "'");
            }
            o.seed = seed;
            o.device = device;
            // 0 is the legacy default stream (PyTorch's default stream reports cuda_stream == 0): borrow
            // it as cudaStreamLegacy, since a null stream in ContextOptions means "own a new one".
#if D2R_WITH_CUDA
            if (stream) o.stream = *stream == 0 ? cudaStreamLegacy : reinterpret_cast<cudaStream_t>(*stream);
#else
            if (stream) o.stream = reinterpret_cast<cudaStream_t>(*stream);  // a cuda context throws below
#endif
            o.value_checks = value_checks == "none" ? d2r::ValueChecks::none : d2r::ValueChecks::full;
            new (self) d2r::Context(o);
          },
          nb::arg("backend") = "auto", nb::arg("seed") = 0, nb::arg("device") = 0, nb::arg("stream") = nb::none(),
          nb::arg("value_checks") = "full")
      .def_prop_ro("backend", [](const d2r::Context& c) { return std::string(d2r::to_string(c.backend())); })
      .def_prop_rw("seed", &d2r::Context::seed, &d2r::Context::set_seed)
      .def_prop_rw(
          "value_checks",
          [](const d2r::Context& c) { return std::string(c.value_checks() == d2r::ValueChecks::none ? "none" : "full"); },
          [](d2r::Context& c, const std::string& v) {
            if (v != "full" && v != "none") bad_argument("Context", "value_checks", "expected 'full' or 'none', got '" + v + "'");
            c.set_value_checks(v == "none" ? d2r::ValueChecks::none : d2r::ValueChecks::full);
          })
      .def_prop_ro("device", &d2r::Context::device)
      .def_prop_ro("device_name", &d2r::Context::device_name)
      .def_prop_ro("stream", [](const d2r::Context& c) { return reinterpret_cast<std::uintptr_t>(c.stream()); })
      .def("synchronize", &d2r::Context::synchronize, nb::call_guard<nb::gil_scoped_release>());

  m.def(
      "set_cpu_threads",
      [](int threads) {
        if (threads < 1) bad_argument("set_cpu_threads", "threads", "expected >= 1, got " + std::to_string(threads));
#ifdef D2R_PY_OPENBLAS
        openblas_set_num_threads(threads);
#endif
      },
      nb::arg("threads"),
      "Threads of the cpu backend's GEMMs (OpenBLAS), as `d2r fit --threads` (whose default is 1); results are "
      "reproducible for a given count. No effect in a build without OpenBLAS.");
  m.def("cuda_device_available", &d2r::cuda_device_available,
        "True when the CUDA runtime reports a usable device (never raises).");
  m.def("reward_param_count", [](const std::string& form, std::int64_t dim) {
    return d2r::reward_param_count(parse_reward_form("reward_param_count", form), dim);
  }, nb::arg("reward_form"), nb::arg("dim"));
  m.attr("MAX_CATEGORICAL_CLASSES") = d2r::kMaxCategoricalClasses;
  m.attr("MAX_CHOLESKY_DIM") = d2r::kMaxCholeskyDim;
  m.attr("__version__") = D2R_VERSION_STRING;
}

}  // namespace d2rpy

NB_MODULE(_core, m) {
  using namespace d2rpy;
  m.doc() = "d2r's framework-neutral bindings over DLPack arrays (see d2r.__doc__ and DESIGN.md §11)";
  nb::object value_error = nb::borrow(PyExc_ValueError);
  g_argument_error = PyErr_NewExceptionWithDoc(
      "d2r._core.ArgumentError",
      "A bad argument: the message names it (d2r::Error of kind invalid_argument or unsupported). "
      "A subclass of ValueError; .argument holds the argument's name.",
      value_error.ptr(), nullptr);
  m.attr("ArgumentError") = nb::handle(g_argument_error);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const d2r::Error& e) {
      switch (e.kind()) {
        case d2r::ErrorKind::invalid_argument:
        case d2r::ErrorKind::unsupported: {
          nb::object exc = nb::steal(PyObject_CallFunction(g_argument_error, "s", e.what()));
          if (!exc.is_valid()) return;  // the call set an error already
          nb::setattr(exc, "argument", nb::str(e.argument().c_str()));
          PyErr_SetObject(g_argument_error, exc.ptr());
          return;
        }
        case d2r::ErrorKind::io: PyErr_SetString(PyExc_OSError, e.what()); return;
        case d2r::ErrorKind::cuda:
        case d2r::ErrorKind::cublas:
        case d2r::ErrorKind::communication: PyErr_SetString(PyExc_RuntimeError, e.what()); return;
      }
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  bind_core(m);
  bind_distributions(m);
  bind_objectives(m);
  bind_second_order(m);
  bind_network(m);
  bind_optim(m);
  bind_trainers(m);
  bind_sweep(m);
#ifdef D2R_PY_JAX
  bind_jax(m);
#endif
}
