// XLA FFI handlers of d2r for JAX (d2r.jax), cpu platform: XLA's CPU buffers are host memory, run
// on a thread-local cpu-backend context. Compiled when the build's Python has jax (its FFI headers).
// Each handler takes the head by name (attribute), its arrays as buffers (b is a 0-size buffer for
// the categorical head) and writes XLA's result buffers; a d2r::Error becomes an FFI
// invalid-argument error carrying d2r's message (JAX raises it as an XlaRuntimeError).
#include <string>
#include <string_view>

#include "xla/ffi/api/ffi.h"

#include "heads.hpp"

namespace ffi = xla::ffi;

namespace d2rpy {
namespace {

d2r::Context& jax_context(std::int64_t seed) {
  thread_local d2r::Context ctx({.backend = d2r::Backend::cpu});
  ctx.set_seed(static_cast<std::uint64_t>(seed));
  return ctx;
}

template <class T>
d2r::MatrixView<T> mat(void* data, const ffi::AnyBuffer::Dimensions& d) {
  const std::int64_t rows = d.size() >= 1 ? d[0] : 0, cols = d.size() >= 2 ? d[1] : 1;
  return {static_cast<T*>(data), rows, cols, std::max<std::int64_t>(cols, 1)};
}

template <class T, class F>
void with_head_views(std::string_view head, double jitter, ffi::AnyBuffer a, ffi::AnyBuffer b, F&& f) {
  const auto av = mat<const T>(a.untyped_data(), a.dimensions());
  const auto bv = mat<const T>(b.untyped_data(), b.dimensions());
  if (head == "diag") f(d2r::DiagGaussian<T>{av, bv});
  else if (head == "cholesky") f(d2r::CholeskyGaussian<T>{av, bv, static_cast<T>(jitter)});
  else if (head == "categorical") f(d2r::Categorical<T>{av});
  else throw d2r::Error(d2r::ErrorKind::invalid_argument, "head", "d2r.jax: argument 'head': expected 'diag', 'cholesky' or 'categorical'");
}

template <class F>
ffi::Error guarded(ffi::AnyBuffer a, F&& f) {
  try {
    if (a.element_type() == ffi::DataType::F32) f.template operator()<float>();
    else if (a.element_type() == ffi::DataType::F64) f.template operator()<double>();
    else return ffi::Error(ffi::ErrorCode::kInvalidArgument, "d2r.jax: expected float32 or float64 head arrays");
  } catch (const std::exception& e) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, e.what());
  }
  return ffi::Error::Success();
}

ffi::Error sample_impl(std::string_view head, double jitter, std::int64_t generations, std::int64_t seed,
                       std::int64_t step, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out) {
  return guarded(a, [&]<class T>() {
    d2r::Context& ctx = jax_context(seed);
    with_head_views<T>(head, jitter, a, b, [&](const auto& h) {
      using H = std::decay_t<decltype(h)>;
      const d2r::DrawKey key{.step = static_cast<std::uint64_t>(step)};
      if constexpr (is_categorical<H>) d2r::sample(ctx, h, generations, key, mat<std::int32_t>(out->untyped_data(), out->dimensions()));
      else d2r::sample(ctx, h, generations, key, mat<T>(out->untyped_data(), out->dimensions()));
    });
  });
}

ffi::Error log_prob_impl(std::string_view head, double jitter, ffi::AnyBuffer a, ffi::AnyBuffer b,
                         ffi::AnyBuffer samples, ffi::Result<ffi::AnyBuffer> out) {
  return guarded(a, [&]<class T>() {
    d2r::Context& ctx = jax_context(0);
    with_head_views<T>(head, jitter, a, b, [&](const auto& h) {
      using H = std::decay_t<decltype(h)>;
      const auto ov = mat<T>(out->untyped_data(), out->dimensions());
      if constexpr (is_categorical<H>) d2r::log_prob(ctx, h, mat<const std::int32_t>(samples.untyped_data(), samples.dimensions()), ov);
      else d2r::log_prob(ctx, h, mat<const T>(samples.untyped_data(), samples.dimensions()), ov);
    });
  });
}

ffi::Error entropy_impl(std::string_view head, double jitter, ffi::AnyBuffer a, ffi::AnyBuffer b,
                        ffi::Result<ffi::AnyBuffer> out) {
  return guarded(a, [&]<class T>() {
    d2r::Context& ctx = jax_context(0);
    with_head_views<T>(head, jitter, a, b, [&](const auto& h) {
      d2r::entropy(ctx, h, d2r::VectorView<T>{static_cast<T*>(out->untyped_data()), out->dimensions()[0]});
    });
  });
}

/// The vector-Jacobian product of log_prob (d_log_prob = cot, B x G) or of entropy (samples 0-size, cot B).
ffi::Error head_backward_impl(std::string_view head, double jitter, ffi::AnyBuffer a, ffi::AnyBuffer b,
                              ffi::AnyBuffer samples, ffi::AnyBuffer cot, ffi::Result<ffi::AnyBuffer> ga,
                              ffi::Result<ffi::AnyBuffer> gb) {
  return guarded(a, [&]<class T>() {
    d2r::Context& ctx = jax_context(0);
    const bool of_entropy = cot.dimensions().size() == 1;
    with_head_views<T>(head, jitter, a, b, [&](const auto& h) {
      using H = std::decay_t<decltype(h)>;
      const auto cm = of_entropy ? d2r::MatrixView<const T>{} : mat<const T>(cot.untyped_data(), cot.dimensions());
      const auto ce = of_entropy ? d2r::VectorView<const T>{static_cast<const T*>(cot.untyped_data()), cot.dimensions()[0]}
                                 : d2r::VectorView<const T>{};
      const auto gav = mat<T>(ga->untyped_data(), ga->dimensions());
      const auto gbv = mat<T>(gb->untyped_data(), gb->dimensions());
      if constexpr (is_categorical<H>) {
        const auto sv = of_entropy ? d2r::MatrixView<const std::int32_t>{}
                                   : mat<const std::int32_t>(samples.untyped_data(), samples.dimensions());
        d2r::backward(ctx, h, sv, cm, ce, d2r::CategoricalGrad<T>{gav});
      } else {
        const auto sv = of_entropy ? d2r::MatrixView<const T>{} : mat<const T>(samples.untyped_data(), samples.dimensions());
        d2r::backward(ctx, h, sv, cm, ce, typename std::conditional_t<std::is_same_v<H, d2r::DiagGaussian<T>>,
                                                                       d2r::DiagGaussianGrad<T>, d2r::CholeskyGaussianGrad<T>>{gav, gbv});
      }
    });
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(d2r_jax_sample, sample_impl,
                              ffi::Ffi::Bind()
                                  .Attr<std::string_view>("head")
                                  .Attr<double>("jitter")
                                  .Attr<std::int64_t>("generations")
                                  .Attr<std::int64_t>("seed")
                                  .Attr<std::int64_t>("step")
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(d2r_jax_log_prob, log_prob_impl,
                              ffi::Ffi::Bind()
                                  .Attr<std::string_view>("head")
                                  .Attr<double>("jitter")
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(d2r_jax_entropy, entropy_impl,
                              ffi::Ffi::Bind()
                                  .Attr<std::string_view>("head")
                                  .Attr<double>("jitter")
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(d2r_jax_head_backward, head_backward_impl,
                              ffi::Ffi::Bind()
                                  .Attr<std::string_view>("head")
                                  .Attr<double>("jitter")
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

void bind_jax(nb::module_& m) {
  nb::dict targets;
  const auto add = [&](const char* name, XLA_FFI_Handler* fn) {
    targets[name] = nb::capsule(reinterpret_cast<void*>(fn));
  };
  add("d2r_sample", d2r_jax_sample);
  add("d2r_log_prob", d2r_jax_log_prob);
  add("d2r_entropy", d2r_jax_entropy);
  add("d2r_head_backward", d2r_jax_head_backward);
  m.def("_jax_targets", [targets]() { return targets; }, "XLA FFI handlers (cpu platform) for d2r.jax.");
}

}  // namespace d2rpy
