#pragma once
// simt_emulator.hpp — runs the source of CUDA kernels on the host CPU, so that the *logic* of
// the device code (indexing, grid-stride loops, barriers, warp reductions, shared-memory layout)
// is executed and compared with the CPU reference on machines without a GPU (CI).
//
// What it emulates
// - The CUDA keywords (__global__, __device__, __host__, __forceinline__, __shared__,
//   __launch_bounds__) are defined away, so a kernel header (.cuh) compiles as plain C++ with the
//   host compiler. Include this header before any kernel header.
// - threadIdx, blockIdx, blockDim, gridDim (thread_local, 3-D) and warpSize.
// - A launch, simt::launch(config, kernel, args...), the counterpart of
//   kernel<<<grid, block, shared_bytes>>>(args...): 1-D, 2-D or 3-D grids and blocks (simt::Dim3).
//   Every CUDA thread of a block is one std::thread; the blocks of a grid run one after another,
//   in blockIdx order (x fastest). The arguments are copied once at the launch, and every thread
//   receives its own by-value copy, as on the device. The launch returns when the grid is done
//   (there are no streams: every launch is synchronous).
// - __syncthreads(): a std::barrier over the block's threads. Threads that returned from the
//   kernel no longer take part (as on Volta and later). Every non-exited thread must reach the
//   same __syncthreads() call site (checked: a divergent barrier is reported as an error).
// - Warps: consecutive linear thread ids (x fastest, then y, z) in groups of 32. __syncwarp() and
//   the shuffles __shfl_sync, __shfl_up_sync, __shfl_down_sync and __shfl_xor_sync (with the
//   optional width argument, CUDA's rules for out-of-segment source lanes) exchange values
//   through per-warp slot arrays (two, used alternately) guarded by a per-warp std::barrier. Only
//   full masks (every lane of the warp) are supported; all lanes must be at the same shuffle call
//   site, and a shuffle that reads a lane which already returned is reported.
// - Dynamic shared memory: a kernel's `extern __shared__ T name[];` declared inside namespace NS
//   refers to the namespace-scope array NS::name, which the test defines (once, before including
//   the kernel header) with SIMT_DYNAMIC_SHARED_MEMORY(NS, T, name). Because the blocks run one at
//   a time, one array per name is every block's shared memory. (On the device every
//   `extern __shared__` array of a kernel starts at the same address; here different names are
//   different arrays, which is the same for a kernel that declares one name, as d2r's do.) Before each block of each launch,
//   the first config.shared_bytes bytes of every registered array are poisoned with a quiet NaN
//   (simt::kSharedPoisonBits), so reading shared memory before writing it shows up as NaN, and the
//   kGuardBytes after them are filled with a guard pattern that is checked after the block: a
//   write past the requested dynamic size is reported (a read past it is not detected).
// - atomicAdd / atomicMin / atomicMax / atomicOr on integers (and atomicAdd on float/double)
//   through std::atomic_ref; the bit-cast intrinsics (__int_as_float, ...) and the IEEE
//   round-to-nearest ones (__fadd_rn, __fmul_rn, ...).
// - simt::GuardedMatrix<T>: a strided host matrix (row stride = cols + kGap) surrounded by
//   sentinel padding, giving d2r::MatrixView / VectorView views, that reports writes outside the
//   view (the host counterpart of tests/test_utils.hpp's GuardedMatrix).
// - A watchdog: a block that does not finish within SIMT_WATCHDOG_SECONDS (environment, default
//   300) prints where each thread last synchronised and aborts, instead of hanging the test run.
//
// What it does NOT emulate (it is not a GPU)
// - Arithmetic: CUDA's math library and fast intrinsics are replaced by the host libm (expf,
//   logf, sqrtf, ... through <cmath>); nvcc contracts a * b + c into FMAs by default, the host
//   build (-std=c++20, i.e. -ffp-contract=off with GCC) does not; code under
//   `#if defined(__CUDA_ARCH__)` takes its host branch. Results agree with the device to
//   rounding, not bit for bit: compare with tolerances.
// - The memory model: global and shared memory are ordinary host memory; the only ordering is
//   what the std::barrier of __syncthreads/__syncwarp/shuffles and the std::atomic_ref atomics
//   give (which is what correct CUDA code relies on). No caches, no __ldg, no memory fences
//   beyond that, no warp-synchronous execution: code that relies on implicit lock-step execution
//   of a warp without __syncwarp is a data race here (ThreadSanitizer reports it).
// - Timing, occupancy, register or shared-memory limits other than the 227 KiB per block and
//   1024 threads per block, streams, events, cooperative groups, warp match. (Warp votes
//   __ballot_sync / __any_sync / __all_sync are emulated on full warps, as shuffles.)
// - CUB: tests/emulation/include/cub/cub.cuh (first on the include path of the emulation tests)
//   stands in for the block/warp collectives d2r uses, on these barriers and shuffles.
//
// Static shared memory: kernels declare it with D2R_SHARED(T, name) (kernels/common.cuh), which
// this header defines as a function-local `static T& name` bound to storage allocated on first
// use and registered here. Since the blocks run one at a time, one object per declaration (per
// template instantiation) is every block's shared variable; before each block of each launch the
// whole of every registered object is poisoned with kSharedPoisonBits, as dynamic shared memory
// is, so a value read before it is written in that block shows up as NaN (never as what the
// previous block left). `__shared__` itself is defined to nothing, so that `extern __shared__`
// (dynamic) declarations work; a bare static `__shared__ T x;` would silently become a
// per-thread local, which is why kernel_emulation_test's SourceGuard test rejects any
// `__shared__` that is not `extern __shared__` in kernels/.
//
// Names such as __syncthreads are reserved identifiers in C++; defining them here is deliberate
// (they are the CUDA builtins the kernel sources call) and works with GCC and Clang.

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <mutex>
#include <source_location>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "d2r/view.hpp"

// ------------------------------------------------------------------------------------ keywords
#define __global__
#define __device__
#define __host__
// Functions defined in headers must stay inline (several test translation units include them).
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// A GNU attribute, which (unlike alignas) may follow `extern` in `extern __shared__ __align__(16) T x[];`.
#define __align__(n) __attribute__((aligned(n)))
// See "Static shared memory" above: `extern __shared__` arrays, and D2R_SHARED for static ones.
#define __shared__
#define D2R_SHARED(T, name) static ::simt::SharedType<T>& name = ::simt::detail::block_shared<T>(#name)

namespace simt {

inline constexpr unsigned kWarpSize = 32;
inline constexpr unsigned kMaxThreadsPerBlock = 1024;
/// Largest dynamic shared memory of one block (sm_90 with the opt-in attribute).
inline constexpr std::size_t kMaxDynamicSharedBytes = 227 * 1024;
/// Bytes after the requested dynamic size that are guarded against writes.
inline constexpr std::size_t kGuardBytes = 4096;
/// Poison of shared memory before each block: a quiet NaN as float, and two of them as double.
inline constexpr std::uint32_t kSharedPoisonBits = 0x7ff85badu;
/// Guard pattern after the requested dynamic size (also a quiet NaN as float).
inline constexpr std::uint32_t kSharedGuardBits = 0x7fc0feedu;

template <class T>
using SharedType = T;

/// dim3: extents of a grid or a block (x fastest).
struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr Dim3() = default;
  constexpr Dim3(unsigned x_, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}  // NOLINT: implicit like dim3
  [[nodiscard]] constexpr std::uint64_t count() const { return std::uint64_t{x} * y * z; }
};

/// The <<<grid, block, shared_bytes>>> of a launch.
struct LaunchConfig {
  Dim3 grid;
  Dim3 block;
  std::size_t shared_bytes = 0;
};

/// A launch that the emulator refused, or a fault it detected while running the kernel.
class LaunchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

/// One array that kernels declare as `extern __shared__`.
struct SharedArena {
  unsigned char* data;
  std::size_t bytes;  // kMaxDynamicSharedBytes + kGuardBytes
  const char* name;
};
inline std::vector<SharedArena>& shared_arenas() {
  static std::vector<SharedArena> arenas;
  return arenas;
}
/// The objects of D2R_SHARED declarations (bytes: the object's size); poisoned before each block.
inline std::vector<SharedArena>& static_shared() {
  static std::vector<SharedArena> objects;
  return objects;
}
inline std::mutex& static_shared_mutex() {
  static std::mutex m;
  return m;
}

inline void fill_pattern(unsigned char* p, std::size_t bytes, std::uint32_t bits) {
  for (std::size_t i = 0; i + 4 <= bytes; i += 4) std::memcpy(p + i, &bits, 4);
}

struct SyncSite {
  const char* file = nullptr;
  unsigned line = 0;
  bool operator==(const SyncSite& o) const { return line == o.line && file == o.file; }
};
inline SyncSite site_of(const std::source_location& where) { return {where.file_name(), where.line()}; }
inline std::string describe(const SyncSite& s) {
  return s.file == nullptr ? std::string("(none)") : std::string(s.file) + ":" + std::to_string(s.line);
}

class Block;

/// A warp's exchange: slots for shuffles, what every lane is doing, and its barrier.
class Warp {
 public:
  enum class Op : std::uint8_t { none, syncwarp, shuffle };
  struct Completion {
    Warp* warp;
    void operator()() noexcept;
  };

  Warp(Block* block, unsigned index, unsigned lanes)
      : block_(block), index_(index), lanes_(lanes), barrier_(static_cast<std::ptrdiff_t>(lanes), Completion{this}) {}

  Block* block_;
  unsigned index_, lanes_;
  // Two slot arrays used alternately by consecutive shuffles, so that one barrier per shuffle
  // suffices: a lane can only overwrite a slot array after every lane passed the next shuffle's
  // barrier, i.e. after all have read it.
  std::array<std::array<std::uint64_t, kWarpSize>, 2> slots_{};
  std::array<unsigned, kWarpSize> shuffles_{};  // per lane: shuffles done (all lanes agree)
  std::array<std::uint32_t, 2> live_{};         // per slot array: lanes running at its barrier
  std::array<Op, kWarpSize> op_{};
  std::array<SyncSite, kWarpSize> site_{};
  std::array<bool, kWarpSize> exited_{};
  std::barrier<Completion> barrier_;
};

/// The threads of one block: the __syncthreads barrier, the warps, and the faults found.
class Block {
 public:
  struct Completion {
    Block* block;
    void operator()() noexcept;
  };

  explicit Block(unsigned threads)
      : threads_(threads), barrier_(static_cast<std::ptrdiff_t>(threads), Completion{this}), site_(threads),
        exited_(threads, 0) {
    const unsigned warps = (threads + kWarpSize - 1) / kWarpSize;
    for (unsigned w = 0; w < warps; ++w)
      warps_.push_back(std::make_unique<Warp>(this, w, std::min(kWarpSize, threads - w * kWarpSize)));
  }

  void fault(std::string message) {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (faults_.size() < 16) faults_.push_back(std::move(message));
  }
  [[nodiscard]] std::vector<std::string> faults() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return faults_;
  }

  unsigned threads_;
  std::barrier<Completion> barrier_;
  std::vector<SyncSite> site_;        // per thread: its current (or last) __syncthreads
  std::vector<unsigned char> exited_;  // per thread: returned from the kernel
  std::vector<std::unique_ptr<Warp>> warps_;

 private:
  std::mutex mutex_;
  std::vector<std::string> faults_;
};

// Runs after every thread arrived, before any is released: all must be at one call site.
inline void Block::Completion::operator()() noexcept {
  const SyncSite* first = nullptr;
  for (unsigned t = 0; t < block->threads_; ++t) {
    if (block->exited_[t]) continue;
    if (first == nullptr) {
      first = &block->site_[t];
    } else if (!(block->site_[t] == *first)) {
      block->fault("divergent __syncthreads: thread " + std::to_string(t) + " at " + describe(block->site_[t]) +
                   ", another thread at " + describe(*first));
      return;
    }
  }
}

// A shuffle needs every live lane at the same shuffle.
inline void Warp::Completion::operator()() noexcept {
  bool any_shuffle = false;
  std::uint32_t live = 0;
  unsigned parity = 0;
  for (unsigned l = 0; l < warp->lanes_; ++l) {
    if (warp->exited_[l]) continue;
    live |= 1u << l;
    if (warp->op_[l] == Op::shuffle) {
      any_shuffle = true;
      parity = (warp->shuffles_[l] - 1) % 2;
    }
  }
  if (!any_shuffle) return;
  warp->live_[parity] = live;  // read by the lanes after this barrier (lanes may return meanwhile)
  int first = -1;
  for (unsigned l = 0; l < warp->lanes_; ++l) {
    if (warp->exited_[l]) continue;
    if (first < 0) {
      first = static_cast<int>(l);
    } else if (warp->op_[l] != warp->op_[first] || !(warp->site_[l] == warp->site_[first])) {
      warp->block_->fault("warp " + std::to_string(warp->index_) + ": lane " + std::to_string(l) + " at " +
                          describe(warp->site_[l]) + " while lane " + std::to_string(first) + " shuffles at " +
                          describe(warp->site_[first]));
      return;
    }
  }
}

/// What the current (emulated CUDA) thread is.
struct ThreadContext {
  Block* block = nullptr;
  unsigned tid = 0;  // linear thread id in the block
};
inline thread_local ThreadContext current_thread;

inline ThreadContext& context(const char* builtin) {
  if (current_thread.block == nullptr) {
    std::fprintf(stderr, "simt: %s called outside an emulated kernel\n", builtin);
    std::abort();
  }
  return current_thread;
}

}  // namespace detail
}  // namespace simt

// ------------------------------------------------------------------------------------ builtins
inline thread_local simt::Dim3 threadIdx, blockIdx, blockDim, gridDim;
inline constexpr int warpSize = static_cast<int>(simt::kWarpSize);

// CUDA's device min/max overloads.
using std::max;
using std::min;

inline void __syncthreads(std::source_location where = std::source_location::current()) {
  auto& ctx = simt::detail::context("__syncthreads");
  ctx.block->site_[ctx.tid] = simt::detail::site_of(where);
  ctx.block->barrier_.arrive_and_wait();
}

namespace simt::detail {

inline Warp& warp_of(const ThreadContext& ctx) { return *ctx.block->warps_[ctx.tid / kWarpSize]; }

inline void check_mask(const ThreadContext& ctx, unsigned mask, const char* builtin) {
  const Warp& warp = warp_of(ctx);
  const unsigned full = warp.lanes_ == kWarpSize ? 0xffffffffu : (1u << warp.lanes_) - 1u;
  if ((mask & full) != full)
    ctx.block->fault(std::string(builtin) + ": only full-warp masks are emulated (mask " + std::to_string(mask) + ")");
}

enum class ShuffleKind { idx, up, down, bfly };

template <class T>
T shuffle(T value, ShuffleKind kind, int arg, int width, unsigned mask, const std::source_location& where,
          const char* builtin) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(std::uint64_t), "shuffle of a 1-8 byte value");
  auto& ctx = context(builtin);
  check_mask(ctx, mask, builtin);
  Warp& warp = warp_of(ctx);
  const unsigned lane = ctx.tid % kWarpSize;
  if (width <= 0 || width > static_cast<int>(kWarpSize) || (width & (width - 1)) != 0) {
    ctx.block->fault(std::string(builtin) + ": width must be a power of 2 <= 32");
    width = static_cast<int>(kWarpSize);
  }
  const auto w = static_cast<unsigned>(width);
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  const unsigned parity = warp.shuffles_[lane]++ % 2;
  auto& slots = warp.slots_[parity];
  slots[lane] = bits;
  warp.op_[lane] = Warp::Op::shuffle;
  warp.site_[lane] = site_of(where);
  warp.barrier_.arrive_and_wait();  // every lane's value is in its slot
  const unsigned segment = lane / w * w;
  unsigned source = lane;
  switch (kind) {
    case ShuffleKind::idx: source = segment + static_cast<unsigned>(arg) % w; break;
    case ShuffleKind::up:
      source = lane - segment >= static_cast<unsigned>(arg) ? lane - static_cast<unsigned>(arg) : lane;
      break;
    case ShuffleKind::down:
      source = lane - segment + static_cast<unsigned>(arg) < w ? lane + static_cast<unsigned>(arg) : lane;
      break;
    case ShuffleKind::bfly: {
      const unsigned s = lane ^ static_cast<unsigned>(arg);
      source = s < segment + w ? s : lane;  // later segments return the caller's own value
      break;
    }
  }
  T out = value;
  if (source >= warp.lanes_ || (warp.live_[parity] >> source & 1u) == 0) {
    ctx.block->fault(std::string(builtin) + " at " + describe(site_of(where)) + ": lane " + std::to_string(lane) +
                     " reads lane " + std::to_string(source) + ", which is not running");
  } else {
    bits = slots[source];
    std::memcpy(&out, &bits, sizeof(T));
  }
  warp.op_[lane] = Warp::Op::none;
  return out;
}

}  // namespace simt::detail

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  auto& ctx = simt::detail::context("__syncwarp");
  simt::detail::check_mask(ctx, mask, "__syncwarp");
  auto& warp = simt::detail::warp_of(ctx);
  warp.op_[ctx.tid % simt::kWarpSize] = simt::detail::Warp::Op::syncwarp;
  warp.barrier_.arrive_and_wait();
}

template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
              std::source_location where = std::source_location::current()) {
  return simt::detail::shuffle(var, simt::detail::ShuffleKind::idx, src_lane, width, mask, where, "__shfl_sync");
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                 std::source_location where = std::source_location::current()) {
  return simt::detail::shuffle(var, simt::detail::ShuffleKind::up, static_cast<int>(delta), width, mask, where,
                               "__shfl_up_sync");
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                   std::source_location where = std::source_location::current()) {
  return simt::detail::shuffle(var, simt::detail::ShuffleKind::down, static_cast<int>(delta), width, mask, where,
                               "__shfl_down_sync");
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                  std::source_location where = std::source_location::current()) {
  return simt::detail::shuffle(var, simt::detail::ShuffleKind::bfly, lane_mask, width, mask, where, "__shfl_xor_sync");
}

// Warp votes, as a butterfly of shuffles (so the same all-lanes-at-one-site checks apply).
inline unsigned __ballot_sync(unsigned mask, int predicate, std::source_location where = std::source_location::current()) {
  const unsigned lane = simt::detail::context("__ballot_sync").tid % simt::kWarpSize;
  unsigned bits = predicate != 0 ? 1u << lane : 0u;
  for (int offset = 16; offset > 0; offset /= 2)
    bits |= simt::detail::shuffle(bits, simt::detail::ShuffleKind::bfly, offset, warpSize, mask, where, "__ballot_sync");
  return bits;
}
inline int __any_sync(unsigned mask, int predicate, std::source_location where = std::source_location::current()) {
  return __ballot_sync(mask, predicate, where) != 0u ? 1 : 0;
}
inline int __all_sync(unsigned mask, int predicate, std::source_location where = std::source_location::current()) {
  return __ballot_sync(mask, predicate == 0 ? 0 : 1, where) == mask ? 1 : 0;
}

// Bit casts and IEEE round-to-nearest arithmetic intrinsics (exact on the host too: the test
// target compiles with -std=c++20, i.e. -ffp-contract=off, so a + b is never fused either).
inline float __int_as_float(int v) { return std::bit_cast<float>(v); }
inline int __float_as_int(float v) { return std::bit_cast<int>(v); }
inline float __uint_as_float(unsigned v) { return std::bit_cast<float>(v); }
inline unsigned __float_as_uint(float v) { return std::bit_cast<unsigned>(v); }
inline double __longlong_as_double(long long v) { return std::bit_cast<double>(v); }
inline long long __double_as_longlong(double v) { return std::bit_cast<long long>(v); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
// Fast-math intrinsics: the host libm function (more accurate than the device's approximation).
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }

// Atomics on global or shared memory: the old value, as on the device.
template <class T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
template <class T>
  requires std::is_integral_v<T>
T atomicOr(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_or(value);
}
template <class T>
  requires std::is_integral_v<T>
T atomicMin(T* address, T value) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load();
  while (value < old && !ref.compare_exchange_weak(old, value)) {
  }
  return old;
}
template <class T>
  requires std::is_integral_v<T>
T atomicMax(T* address, T value) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load();
  while (value > old && !ref.compare_exchange_weak(old, value)) {
  }
  return old;
}

namespace simt {

/// Registers a namespace-scope array as dynamic shared memory (see SIMT_DYNAMIC_SHARED_MEMORY).
struct DynamicSharedRegistration {
  DynamicSharedRegistration(void* data, std::size_t bytes, const char* name) {
    detail::shared_arenas().push_back({static_cast<unsigned char*>(data), bytes, name});
  }
};

/// Defines NS::NAME, the array that `extern __shared__ TYPE NAME[];` in a kernel of namespace NS
/// refers to, and registers it with the launcher (poisoning, guard). Use it once per program for
/// each (NS, NAME), in a header included before the kernel header, at global scope.
#define SIMT_DYNAMIC_SHARED_MEMORY(NS, TYPE, NAME)                                                              \
  namespace NS {                                                                                                \
  alignas(16) inline TYPE NAME[(::simt::kMaxDynamicSharedBytes + ::simt::kGuardBytes) / sizeof(TYPE)];          \
  inline const ::simt::DynamicSharedRegistration NAME##_simt_registration{NAME, sizeof(NAME), #NS "::" #NAME}; \
  }

namespace detail {

/// Storage of the D2R_SHARED declaration `name` of type T: allocated, poisoned and registered on
/// the first execution of the declaration (a function-local static, so once per instantiation,
/// thread-safe), then poisoned again before every block.
template <class T>
T& block_shared(const char* name) {
  static_assert(std::is_trivially_default_constructible_v<std::remove_all_extents_t<T>> &&
                    std::is_trivially_destructible_v<std::remove_all_extents_t<T>>,
                "shared memory holds trivial types");
  constexpr std::size_t align = alignof(T) > 16 ? alignof(T) : 16;
  auto* data = static_cast<unsigned char*>(::operator new(sizeof(T), std::align_val_t{align}));  // never freed
  fill_pattern(data, sizeof(T), kSharedPoisonBits);
  {
    const std::lock_guard<std::mutex> lock(static_shared_mutex());
    static_shared().push_back({data, sizeof(T), name});
  }
  return *std::launder(reinterpret_cast<T*>(data));
}

inline std::string describe(const Dim3& d) {
  return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")";
}

inline double watchdog_seconds() {
  const char* v = std::getenv("SIMT_WATCHDOG_SECONDS");
  const double s = v == nullptr ? 0.0 : std::atof(v);
  return s > 0 ? s : 300.0;
}

inline void check_config(const LaunchConfig& c) {
  const std::uint64_t threads = c.block.count();
  if (c.grid.count() == 0 || threads == 0) throw LaunchError("simt::launch: empty grid or block");
  if (threads > kMaxThreadsPerBlock)
    throw LaunchError("simt::launch: " + std::to_string(threads) + " threads per block (at most 1024)");
  if (c.block.z > 64) throw LaunchError("simt::launch: block.z > 64");
  if (c.grid.y > 65535 || c.grid.z > 65535) throw LaunchError("simt::launch: grid.y or grid.z > 65535");
  if (c.shared_bytes > kMaxDynamicSharedBytes)
    throw LaunchError("simt::launch: " + std::to_string(c.shared_bytes) + " bytes of dynamic shared memory (at most " +
                      std::to_string(kMaxDynamicSharedBytes) + ")");
}

/// Runs `body` (the kernel call) as every thread of block `index` of the grid.
template <class Body>
void run_block(const LaunchConfig& config, const Dim3& index, const Body& body) {
  const auto threads = static_cast<unsigned>(config.block.count());
  for (const SharedArena& a : shared_arenas()) {
    fill_pattern(a.data, config.shared_bytes, kSharedPoisonBits);
    fill_pattern(a.data + config.shared_bytes, kGuardBytes, kSharedGuardBits);
  }
  {
    const std::lock_guard<std::mutex> lock(static_shared_mutex());
    for (const SharedArena& a : static_shared()) fill_pattern(a.data, a.bytes, kSharedPoisonBits);
  }
  Block block(threads);
  std::mutex done_mutex;
  std::condition_variable done_cv;
  unsigned done = 0;
  std::vector<std::thread> pool;
  pool.reserve(threads);
  // Leaves the barriers for thread t: it returned from the kernel, or was never started.
  const auto retire = [&block](unsigned t) {
    Warp& warp = *block.warps_[t / kWarpSize];
    warp.exited_[t % kWarpSize] = true;
    block.exited_[t] = 1;
    warp.barrier_.arrive_and_drop();
    block.barrier_.arrive_and_drop();
  };
  for (unsigned t = 0; t < threads; ++t) {
    const auto start = [&, t] {
      current_thread = {&block, t};
      threadIdx = Dim3(t % config.block.x, t / config.block.x % config.block.y, t / (config.block.x * config.block.y));
      blockIdx = index;
      blockDim = config.block;
      gridDim = config.grid;
      try {
        body();
      } catch (const std::exception& e) {
        block.fault("thread " + std::to_string(t) + " threw: " + e.what());
      } catch (...) {
        block.fault("thread " + std::to_string(t) + " threw an exception");
      }
      retire(t);  // returned from the kernel: no longer part of the warp's or the block's barriers
      current_thread = {};
      {
        const std::lock_guard<std::mutex> lock(done_mutex);
        ++done;
      }
      done_cv.notify_one();
    };
    try {
      pool.emplace_back(start);
    } catch (const std::system_error& e) {  // e.g. a process thread limit: fail the launch, do not hang
      block.fault("could not start thread " + std::to_string(t) + " of " + std::to_string(threads) + ": " + e.what());
      const std::lock_guard<std::mutex> lock(done_mutex);
      for (unsigned u = t; u < threads; ++u, ++done) retire(u);
      break;
    }
  }
  {
    std::unique_lock<std::mutex> lock(done_mutex);
    const auto limit = std::chrono::duration<double>(watchdog_seconds());
    if (!done_cv.wait_for(lock, limit, [&] { return done == threads; })) {
      std::fprintf(stderr, "simt: block %s of grid %s did not finish within %.0f s (deadlock?); last barriers:\n",
                   describe(index).c_str(), describe(config.grid).c_str(), limit.count());
      for (unsigned t = 0; t < threads; ++t)
        std::fprintf(stderr, "  thread %u: %s%s\n", t, describe(block.site_[t]).c_str(),
                     block.exited_[t] ? " (returned)" : "");
      std::abort();
    }
  }
  for (auto& th : pool) th.join();
  std::vector<std::string> faults = block.faults();
  for (const SharedArena& a : shared_arenas()) {
    const unsigned char* guard = a.data + config.shared_bytes;
    for (std::size_t i = 0; i + 4 <= kGuardBytes; i += 4) {
      std::uint32_t bits;
      std::memcpy(&bits, guard + i, 4);
      if (bits != kSharedGuardBits) {
        faults.push_back(std::string("write to ") + a.name + " at byte " + std::to_string(config.shared_bytes + i) +
                         ", past the " + std::to_string(config.shared_bytes) + " bytes of dynamic shared memory");
        break;
      }
    }
  }
  if (!faults.empty()) {
    std::string message = "simt: block " + describe(index) + " of grid " + describe(config.grid) + ", block " +
                          describe(config.block) + ":";
    for (const auto& f : faults) message += "\n  " + f;
    throw LaunchError(message);
  }
}

}  // namespace detail

/// kernel<<<config.grid, config.block, config.shared_bytes>>>(args...), synchronously. `kernel` is
/// a kernel function (or any callable); the arguments are copied once, as by a CUDA launch.
/// Throws LaunchError for an invalid configuration or a fault detected while running.
template <class Kernel, class... Args>
void launch(const LaunchConfig& config, Kernel&& kernel, Args&&... args) {
  detail::check_config(config);
  const std::tuple<std::decay_t<Args>...> arguments(std::forward<Args>(args)...);
  const auto body = [&] { std::apply(kernel, arguments); };
  for (unsigned z = 0; z < config.grid.z; ++z)
    for (unsigned y = 0; y < config.grid.y; ++y)
      for (unsigned x = 0; x < config.grid.x; ++x) detail::run_block(config, Dim3(x, y, z), body);
}

// ------------------------------------------------------------------------------ guarded buffers

/// A rows x cols host matrix with row stride cols + kGap, surrounded by kPad sentinel elements on
/// each side; the gaps at the end of every row hold sentinels too. padding_written() counts the
/// sentinels that changed: writes outside the view. Supports 4- and 8-byte element types.
template <class T>
class GuardedMatrix {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "4- or 8-byte elements");

 public:
  static constexpr std::int64_t kPad = 64;
  static constexpr std::int64_t kGap = 3;

  GuardedMatrix(std::int64_t rows, std::int64_t cols)
      : rows_(rows), cols_(cols), stride_(cols + kGap),
        storage_(static_cast<std::size_t>(2 * kPad + rows * (cols + kGap)), sentinel()) {}
  GuardedMatrix(std::int64_t rows, std::int64_t cols, const std::vector<T>& packed) : GuardedMatrix(rows, cols) {
    fill(packed);
  }

  /// Sets the logical elements from a packed rows x cols array.
  void fill(const std::vector<T>& packed) {
    if (static_cast<std::int64_t>(packed.size()) != rows_ * cols_) throw std::invalid_argument("GuardedMatrix::fill");
    for (std::int64_t r = 0; r < rows_; ++r)
      for (std::int64_t c = 0; c < cols_; ++c) at(r, c) = packed[static_cast<std::size_t>(r * cols_ + c)];
  }
  T& at(std::int64_t r, std::int64_t c) { return storage_[static_cast<std::size_t>(kPad + r * stride_ + c)]; }
  /// Padding element k >= 1 positions before the first element (to plant markers there).
  T& before(std::int64_t k) { return storage_[static_cast<std::size_t>(kPad - k)]; }

  [[nodiscard]] d2r::MatrixView<T> view() { return {data(), rows_, cols_, stride_}; }
  [[nodiscard]] d2r::MatrixView<const T> cview() const { return {data(), rows_, cols_, stride_}; }
  /// The elements of a 1-row matrix as a vector (rows > 1 are not contiguous: throws).
  [[nodiscard]] d2r::VectorView<T> vector() { return {data(), contiguous_size()}; }
  [[nodiscard]] d2r::VectorView<const T> cvector() const { return {data(), contiguous_size()}; }

  /// Packed logical values.
  [[nodiscard]] std::vector<T> values() const {
    std::vector<T> out(static_cast<std::size_t>(rows_ * cols_));
    for (std::int64_t r = 0; r < rows_; ++r)
      for (std::int64_t c = 0; c < cols_; ++c)
        out[static_cast<std::size_t>(r * cols_ + c)] = storage_[static_cast<std::size_t>(kPad + r * stride_ + c)];
    return out;
  }
  /// Number of padding and gap elements that no longer hold the sentinel.
  [[nodiscard]] std::int64_t padding_written() const {
    std::int64_t touched = 0;
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(storage_.size()); ++i) {
      const std::int64_t j = i - kPad;
      const bool logical = j >= 0 && j < rows_ * stride_ && j % stride_ < cols_;
      if (!logical && !is_sentinel(storage_[static_cast<std::size_t>(i)])) ++touched;
    }
    return touched;
  }
  /// True when no element, logical or padding, was written (for outputs that must stay unwritten).
  [[nodiscard]] bool untouched() const {
    return std::all_of(storage_.begin(), storage_.end(), [](const T& v) { return is_sentinel(v); });
  }
  [[nodiscard]] std::int64_t rows() const { return rows_; }
  [[nodiscard]] std::int64_t cols() const { return cols_; }

  static T sentinel() {
    T v;
    if constexpr (sizeof(T) == 4) {
      const std::uint32_t bits = 0x7fc0deadu;
      std::memcpy(&v, &bits, 4);
    } else {
      const std::uint64_t bits = 0x7ff80000deadbeefULL;
      std::memcpy(&v, &bits, 8);
    }
    return v;
  }
  static bool is_sentinel(const T& v) {
    const T s = sentinel();
    return std::memcmp(&v, &s, sizeof(T)) == 0;
  }

 private:
  T* data() { return storage_.data() + kPad; }
  const T* data() const { return storage_.data() + kPad; }
  std::int64_t contiguous_size() const {
    if (rows_ > 1) throw std::logic_error("GuardedMatrix::vector needs a single row");
    return cols_;
  }

  std::int64_t rows_, cols_, stride_;
  std::vector<T> storage_;
};

}  // namespace simt
