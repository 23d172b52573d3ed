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

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "d2r/config.hpp"
#include "d2r/types/cuda.hpp"
#include "d2r/view.hpp"

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

/// True when the CUDA runtime reports at least one usable device. Never throws. Always false in a
/// build without CUDA (D2R_WITH_CUDA == 0).
bool cuda_device_available() noexcept;

/// What the kernels' launch rules need to know about the context's device (cuda backend); all
/// zero, and name "cpu", on the cpu backend.
struct DeviceProperties {
  std::string name = "cpu";
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessors = 0;
  std::size_t shared_memory_per_block = 0;        ///< bytes a block may use without opting in
  std::size_t shared_memory_per_block_optin = 0;  ///< bytes a block may use after opting in
  std::size_t l2_cache_bytes = 0;
  std::size_t total_memory_bytes = 0;  ///< device memory
};

class Context;

/// A CUDA graph captured by Context::capture: replays the captured work on the context's stream.
/// It records what the graph baked in besides the caller's own memory (the context's workspace
/// blocks and its seed): when any of them has changed since the capture, stale() is true and the
/// work must be captured again (Context::workspace explains why a block moves). Movable; destroys
/// the graph. Empty (and stale) when default-constructed.
class CapturedGraph {
 public:
  CapturedGraph() = default;
  ~CapturedGraph();
  CapturedGraph(CapturedGraph&& other) noexcept;
  CapturedGraph& operator=(CapturedGraph&& other) noexcept;
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  [[nodiscard]] bool empty() const noexcept { return exec_ == nullptr; }
  /// True when empty, or when a workspace block of the context or its seed changed since the capture.
  [[nodiscard]] bool stale() const noexcept;
  /// Enqueues one replay on the context's stream (no synchronisation). Throws d2r::Error when empty.
  void launch() const;

 private:
  friend class Context;
  const Context* ctx_ = nullptr;
  void* exec_ = nullptr;  // cudaGraphExec_t
  std::array<void*, 3> workspaces_{};
  std::uint64_t seed_ = 0;
};

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
  /// Properties of the device (queried once, at construction).
  [[nodiscard]] const DeviceProperties& device_properties() const noexcept;
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

  /// Copies `bytes` bytes from the backend's memory at `src` to host memory at `dst` after the
  /// work queued on stream() (cuda: an ordered copy, then a synchronisation; cpu: memcpy).
  void to_host(void* dst, const void* src, std::size_t bytes) const;
  /// Copies `bytes` bytes from host memory at `src` into the backend's memory at `dst`; returns
  /// once the copy is done (the host memory may then be reused).
  void from_host(void* dst, const void* src, std::size_t bytes) const;
  /// The elements of a (possibly strided) matrix in the backend's memory, packed row-major on the host.
  template <class T>
  [[nodiscard]] std::vector<std::remove_const_t<T>> to_host(MatrixView<T> m) const {
    std::vector<std::remove_const_t<T>> out(static_cast<std::size_t>(m.rows * m.cols));
    if (!out.empty()) {
      to_host_rows(out.data(), static_cast<std::size_t>(m.cols) * sizeof(T), m.data,
                   static_cast<std::size_t>(m.row_stride) * sizeof(T), static_cast<std::size_t>(m.rows));
    }
    return out;
  }
  /// The elements of a vector in the backend's memory, on the host.
  template <class T>
  [[nodiscard]] std::vector<std::remove_const_t<T>> to_host(VectorView<T> v) const {
    std::vector<std::remove_const_t<T>> out(static_cast<std::size_t>(v.size));
    if (!out.empty()) to_host(out.data(), v.data, out.size() * sizeof(T));
    return out;
  }

  /// Captures what `record` enqueues on stream() into a CUDA graph (nothing runs while
  /// capturing). Run the work once eagerly first so that the workspace blocks have grown to what
  /// it needs. If `record` throws, the capture is ended (the stream stays usable) and the
  /// exception propagates. Throws d2r::Error (unsupported) on the cpu backend.
  [[nodiscard]] CapturedGraph capture(const std::function<void()>& record);

 private:
  /// Copies `rows` rows of `row_bytes` bytes, `src_pitch` bytes apart at src, packed at dst.
  void to_host_rows(void* dst, std::size_t row_bytes, const void* src, std::size_t src_pitch, std::size_t rows) const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace d2r
