#pragma once
// The backend boundary of the library: run_on<T>(ctx, cpu_fn, cuda_fn) is the one place (with
// Context itself) that reads ctx.backend(). Internal header.
//
//   detail::run_on<T>(
//       ctx, [&] { reference::optim::adam_step(options, state, params, grad); },
//       [&](const auto& ex) { ex.launch(kernels::optim::adam_step, options, state, params, grad); });
//
// cpu_fn() runs on the cpu backend (float or double). cuda_fn(exec) runs on the cuda backend and
// gets a kernels::Exec (stream, workspace, device properties). Write cuda_fn as a generic lambda
// (`const auto& ex`) and reach the kernels through it (ex.launch(launcher, args...) for a
// launcher of a family launch header, ex.call(rule, args...) for its workspace_bytes / fusable
// rules): every such expression then depends on the lambda's parameter, so it is compiled only
// where it can run, that is for T = float in a build with CUDA; `double` code and a
// -DD2R_ENABLE_CUDA=OFF build never compile or link the kernels. A `double` call on the cuda backend throws d2r::Error
// (unsupported), never a silent no-op; in a build without CUDA a cuda context cannot exist (Context throws), and run_on
// throws the same "built without CUDA" error should one get here.
//
// T is the scalar type of the call's views; pass void (or an integer type) for calls that move no
// floating-point data (memory-space checks, counters): only double is refused on cuda.

#include <cstddef>
#include <string_view>
#include <type_traits>
#include <utility>

#include "d2r/config.hpp"
#include "d2r/context.hpp"
#include "d2r/error.hpp"

namespace d2r {

namespace kernels {
/// What a cuda-side function gets from run_on: the stream to enqueue on, the context's workspace
/// blocks, and the properties of the device (for the launch headers' can_implement rules).
struct Exec {
  cudaStream_t stream;
  const DeviceProperties& device;
  Context& ctx;
  /// Context::workspace of the call's context (see there: it may move when it grows).
  [[nodiscard]] void* workspace(std::size_t bytes, Workspace which = Workspace::primitive) const {
    return ctx.workspace(bytes, which);
  }
  /// launcher(stream, args...): a launcher of a family launch header, on this stream. Calling
  /// through the Exec keeps the call dependent on it, so it is compiled for float only.
  template <class Launcher, class... Args>
  decltype(auto) launch(Launcher&& launcher, Args&&... args) const {
    return std::forward<Launcher>(launcher)(stream, std::forward<Args>(args)...);
  }
  /// rule(args...): a launch header's rule (workspace_bytes, can_implement), compiled for float only.
  template <class Rule, class... Args>
  decltype(auto) call(Rule&& rule, Args&&... args) const {
    return std::forward<Rule>(rule)(std::forward<Args>(args)...);
  }
};
}  // namespace kernels

namespace detail {

/// The error of a double call on the cuda backend, naming the argument.
[[noreturn]] void fail_double_on_cuda(std::string_view function, std::string_view argument);
/// The error of a cuda call in a build without CUDA.
[[noreturn]] void fail_built_without_cuda(std::string_view function);

/// Throws d2r::Error (unsupported) naming `argument` when T is double and ctx is a cuda context:
/// the check a public entry point makes first, before its other checks.
template <class T>
void check_backend_type(const Context& ctx, std::string_view function, std::string_view argument) {
  if constexpr (std::is_same_v<std::remove_cv_t<T>, double>) {
    if (ctx.backend() == Backend::cuda) fail_double_on_cuda(function, argument);
  }
}

/// True on the cuda backend. For the few decisions that are not a cpu/cuda split of one
/// computation (which memory a buffer lives in, whether a graph can be captured).
inline bool on_device(const Context& ctx) noexcept { return ctx.backend() == Backend::cuda; }

/// Runs cpu_fn() or cuda_fn(kernels::Exec) on ctx's backend and returns what it returns.
template <class T, class Ctx, class CpuFn, class CudaFn>
decltype(auto) run_on(Ctx& ctx, CpuFn&& cpu_fn, CudaFn&& cuda_fn) {
  static_assert(std::is_same_v<std::remove_cv_t<Ctx>, Context>);
  if (ctx.backend() != Backend::cuda) return std::forward<CpuFn>(cpu_fn)();
  if constexpr (std::is_same_v<std::remove_cv_t<T>, double>) {
    fail_double_on_cuda("run_on", "T");
  } else {
#if D2R_WITH_CUDA
    using Result = decltype(std::forward<CpuFn>(cpu_fn)());
    Context& mutable_ctx = const_cast<Context&>(ctx);  // the workspace is the context's scratch, not its state
    const kernels::Exec exec{ctx.stream(), ctx.device_properties(), mutable_ctx};
    if constexpr (std::is_void_v<Result>) {
      std::forward<CudaFn>(cuda_fn)(exec);
      return;
    } else {
      return static_cast<Result>(std::forward<CudaFn>(cuda_fn)(exec));
    }
#else
    (void)cuda_fn;
    fail_built_without_cuda("run_on");
#endif
  }
}

}  // namespace detail
}  // namespace d2r
