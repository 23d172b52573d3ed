#pragma once
/// @file context.hpp
/// d2r::Context: the one handle passed first to every primitive.
///
/// A Context owns (or borrows) everything a primitive needs besides its views: the backend that
/// runs it (the CUDA kernels or the CPU reference), the CUDA stream, a cuBLAS handle bound to
/// that stream with a workspace of its own, a growable device workspace, and the Philox seed. Primitives
/// never create streams, handles or allocations of their own; after the workspace has grown to
/// its high-water mark, the steady state allocates nothing.
///
/// @code
///   d2r::Context ctx({.backend = d2r::Backend::automatic, .seed = 42});
///   if (ctx.backend() == d2r::Backend::cuda) { /* views must hold device pointers */ }
/// @endcode
///
/// A Context is not thread-safe: use one per host thread (they may share a device).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

namespace d2r {

/// Which implementation runs the primitives.
enum class Backend {
  automatic,  ///< cuda when a CUDA device is usable, else cpu (only as a request)
  cpu,        ///< the CPU reference (host memory); float or double
  cuda,       ///< the CUDA kernels (device memory); float
};

/// How much a primitive checks the *values* of its inputs before it writes any output.
/// Shapes, strides and hyperparameters are always checked; value checks read every input once
/// more (and, on the cuda backend, synchronise the stream once per call to learn the verdict).
enum class ValueChecks {
  full,  ///< reject NaN/inf where the math forbids them, out-of-range class indices, rows of
         ///< logits with no finite entry (default: safe while developing)
  none,  ///< trust the values: no extra pass, no synchronisation (inner loops, CUDA graphs)
};

/// Which of the context's scratch blocks a call uses, one block per level of nesting, so that
/// no level overwrites the state of the level that called it: primitives use `primitive`;
/// operations composed of primitives (the objectives, Hessian-vector products) keep their
/// intermediates in `composite`; the iterative solvers, whose operator is such a composite,
/// keep their vectors in `solver`.
enum class Workspace { primitive, composite, solver };

/// Construction options for a Context.
struct ContextOptions {
  Backend backend = Backend::automatic;
  std::uint64_t seed = 0;                  ///< Philox key of every draw made through this context
  int device = 0;                          ///< CUDA device ordinal (cuda backend)
  cudaStream_t stream = nullptr;           ///< borrowed stream (not destroyed); nullptr: own a new one
  ValueChecks value_checks = ValueChecks::full;
};

/// Returns the backend name: "cpu", "cuda" or "automatic".
const char* to_string(Backend backend) noexcept;
/// Parses "cpu", "cuda" or "auto"/"automatic"; throws d2r::Error for anything else.
Backend parse_backend(const std::string& name);

/// True when the CUDA runtime reports at least one usable device. Never throws.
bool cuda_device_available() noexcept;

/// Resources for running d2r primitives. Movable, not copyable.
class Context {
 public:
  /// Creates the context. Backend::cuda without a usable device throws d2r::Error.
  explicit Context(const ContextOptions& options = {});
  ~Context();
  Context(Context&&) noexcept;
  Context& operator=(Context&&) noexcept;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  /// The resolved backend: cpu or cuda, never automatic.
  [[nodiscard]] Backend backend() const noexcept;
  [[nodiscard]] std::uint64_t seed() const noexcept;
  void set_seed(std::uint64_t seed) noexcept;
  [[nodiscard]] ValueChecks value_checks() const noexcept;
  void set_value_checks(ValueChecks checks) noexcept;

  /// CUDA device ordinal (-1 on the cpu backend).
  [[nodiscard]] int device() const noexcept;
  /// Human-readable device name ("cpu" on the cpu backend).
  [[nodiscard]] std::string device_name() const;
  /// The stream every primitive orders its work on (nullptr on the cpu backend).
  [[nodiscard]] cudaStream_t stream() const noexcept;
  /// cuBLAS handle, created with the context (cuda backend), bound once to stream() and given a
  /// device workspace of its own (cublasSetWorkspace: 32 MiB on compute capability 9.x and newer,
  /// 4 MiB before, as cuBLAS recommends), so that GEMMs captured in a CUDA graph allocate
  /// nothing and replay with the algorithms of the eager calls. Do not call cublasSetStream on
  /// it: that drops the workspace. Throws d2r::Error on the cpu backend.
  cublasHandle_t cublas();

  /// Returns at least `bytes` bytes of scratch memory in the backend's memory space (device
  /// memory for cuda), aligned to 256 bytes. The pointer stays valid until the next call that
  /// asks for more than the current capacity; growing synchronises the stream once.
  /// `workspace(0, which)` returns the current block without allocating (nullptr before the first).
  /// CUDA graphs: a captured primitive keeps the block's address. Run the work once eagerly
  /// before capturing (so the blocks have grown to what it needs), and capture again when a block
  /// has moved since (compare workspace(0, which) with its value at capture time), as
  /// BilevelTrainer does.
  void* workspace(std::size_t bytes, Workspace which = Workspace::primitive);
  /// Current capacity of a workspace block in bytes (its high-water mark).
  [[nodiscard]] std::size_t workspace_capacity(Workspace which = Workspace::primitive) const noexcept;

  /// Blocks until all work queued on stream() has finished (no-op on cpu).
  void synchronize() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace d2r
