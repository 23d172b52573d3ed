#pragma once
// Stand-in for <cub/cub.cuh> in the kernel emulation tests (this directory comes first on their
// include path): the CUB collectives d2r's kernels use, with CUB's interface (a TempStorage type
// in shared memory, a constructor taking it, results where CUB documents them), built on the
// SIMT emulator's __syncthreads / __syncwarp (tests/emulation/simt_emulator.hpp, included first).
//
// Semantics kept from CUB, so that misuse fails here as it would (or could) on a device:
// - BlockReduce / WarpReduce: the result is defined in thread (lane) 0 only; the other threads
//   get a NaN-poisoned value (CUB: "undefined"), so a kernel that forgets to broadcast it computes
//   NaN. None of them ends with a barrier: reusing TempStorage needs the caller's __syncthreads /
//   __syncwarp, as with CUB (a missing one is a race: wrong values, reported by ThreadSanitizer).
// - Every barrier is reported at the kernel's call site of the collective (source_location), so
//   the emulator's divergent-barrier check still names the kernel's line.
// Combination order: each thread's items in order, then threads in order (CUB uses a tree), so
// results agree with CUB's to rounding, not bit for bit; deterministic in both.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <source_location>

namespace cub {

namespace emulation {

template <class T>
T poisoned() {
  T v;
  unsigned char bytes[sizeof(T)];
  for (std::size_t i = 0; i < sizeof(T); i += 4) {
    const std::uint32_t bits = 0x7ff8c0bbu;  // a quiet NaN as float, two of them as double
    std::memcpy(bytes + i, &bits, sizeof(T) - i < 4 ? sizeof(T) - i : 4);
  }
  std::memcpy(&v, bytes, sizeof(T));
  return v;
}

struct Sum {
  template <class T>
  T operator()(const T& a, const T& b) const {
    return a + b;
  }
};

template <int X, int Y, int Z>
inline int linear_tid() {
  return static_cast<int>(threadIdx.x + X * (threadIdx.y + Y * threadIdx.z));
}

}  // namespace emulation

enum BlockReduceAlgorithm { BLOCK_REDUCE_RAKING_COMMUTATIVE_ONLY, BLOCK_REDUCE_RAKING, BLOCK_REDUCE_WARP_REDUCTIONS };
enum BlockScanAlgorithm { BLOCK_SCAN_RAKING, BLOCK_SCAN_RAKING_MEMOIZE, BLOCK_SCAN_WARP_SCANS };

template <class T, int BLOCK_DIM_X, BlockReduceAlgorithm = BLOCK_REDUCE_WARP_REDUCTIONS, int BLOCK_DIM_Y = 1,
          int BLOCK_DIM_Z = 1>
class BlockReduce {
  static constexpr int kThreads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;

 public:
  struct TempStorage {
    T slot[kThreads];
  };

  explicit BlockReduce(TempStorage& temp) : temp_(temp), tid_(emulation::linear_tid<BLOCK_DIM_X, BLOCK_DIM_Y, BLOCK_DIM_Z>()) {}

  template <class Op>
  T Reduce(T input, Op op, std::source_location where = std::source_location::current()) {
    return reduce(input, op, kThreads, where);
  }
  template <class Op>
  T Reduce(T input, Op op, int num_valid, std::source_location where = std::source_location::current()) {
    return reduce(input, op, num_valid, where);
  }
  template <int N, class Op>
  T Reduce(T (&inputs)[N], Op op, std::source_location where = std::source_location::current()) {
    T v = inputs[0];
    for (int i = 1; i < N; ++i) v = op(v, inputs[i]);
    return reduce(v, op, kThreads, where);
  }
  T Sum(T input, std::source_location where = std::source_location::current()) {
    return reduce(input, emulation::Sum{}, kThreads, where);
  }
  T Sum(T input, int num_valid, std::source_location where = std::source_location::current()) {
    return reduce(input, emulation::Sum{}, num_valid, where);
  }
  template <int N>
  T Sum(T (&inputs)[N], std::source_location where = std::source_location::current()) {
    return Reduce(inputs, emulation::Sum{}, where);
  }

 private:
  template <class Op>
  T reduce(const T& input, Op op, int num_valid, const std::source_location& where) {
    temp_.slot[tid_] = input;
    __syncthreads(where);
    if (tid_ != 0) return emulation::poisoned<T>();
    T v = temp_.slot[0];
    for (int t = 1; t < num_valid && t < kThreads; ++t) v = op(v, temp_.slot[t]);
    return v;
  }

  TempStorage& temp_;
  int tid_;
};

template <class T, int BLOCK_DIM_X, BlockScanAlgorithm = BLOCK_SCAN_RAKING, int BLOCK_DIM_Y = 1, int BLOCK_DIM_Z = 1>
class BlockScan {
  static constexpr int kThreads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;

 public:
  struct TempStorage {
    T slot[kThreads];
  };

  explicit BlockScan(TempStorage& temp) : temp_(temp), tid_(emulation::linear_tid<BLOCK_DIM_X, BLOCK_DIM_Y, BLOCK_DIM_Z>()) {}

  void InclusiveSum(T input, T& output, std::source_location where = std::source_location::current()) {
    T in[1] = {input}, out[1];
    scan(in, out, emulation::Sum{}, true, where);
    output = out[0];
  }
  template <int N>
  void InclusiveSum(T (&input)[N], T (&output)[N], std::source_location where = std::source_location::current()) {
    scan(input, output, emulation::Sum{}, true, where);
  }
  void ExclusiveSum(T input, T& output, std::source_location where = std::source_location::current()) {
    T in[1] = {input}, out[1];
    scan(in, out, emulation::Sum{}, false, where);
    output = out[0];
  }
  template <int N>
  void ExclusiveSum(T (&input)[N], T (&output)[N], std::source_location where = std::source_location::current()) {
    scan(input, output, emulation::Sum{}, false, where);
  }
  template <class Op>
  void InclusiveScan(T input, T& output, Op op, std::source_location where = std::source_location::current()) {
    T in[1] = {input}, out[1];
    scan(in, out, op, true, where);
    output = out[0];
  }
  template <int N, class Op>
  void InclusiveScan(T (&input)[N], T (&output)[N], Op op, std::source_location where = std::source_location::current()) {
    scan(input, output, op, true, where);
  }

 private:
  // A sum's exclusive prefix starts at T{} (0); input and output may be the same array.
  template <int N, class Op>
  void scan(const T (&input)[N], T (&output)[N], Op op, bool inclusive, const std::source_location& where) {
    T in[N];
    for (int i = 0; i < N; ++i) in[i] = input[i];
    T aggregate = in[0];
    for (int i = 1; i < N; ++i) aggregate = op(aggregate, in[i]);
    temp_.slot[tid_] = aggregate;
    __syncthreads(where);
    bool has_prefix = tid_ > 0;
    T prefix = has_prefix ? temp_.slot[0] : T{};
    for (int t = 1; t < tid_; ++t) prefix = op(prefix, temp_.slot[t]);
    T run = prefix;
    for (int i = 0; i < N; ++i) {
      if (inclusive) {
        run = has_prefix ? op(run, in[i]) : in[i];
        has_prefix = true;
        output[i] = run;
      } else {
        output[i] = has_prefix ? run : T{};
        run = has_prefix ? op(run, in[i]) : in[i];
        has_prefix = true;
      }
    }
  }

  TempStorage& temp_;
  int tid_;
};

template <class T, int LOGICAL_WARP_THREADS = 32>
class WarpReduce {
  static_assert(LOGICAL_WARP_THREADS == 32, "the emulated WarpReduce covers full warps");

 public:
  struct TempStorage {
    T slot[LOGICAL_WARP_THREADS];
  };

  explicit WarpReduce(TempStorage& temp) : temp_(temp), lane_(static_cast<int>(threadIdx.x % 32)) {}

  template <class Op>
  T Reduce(T input, Op op, std::source_location = std::source_location::current()) {
    return reduce(input, op, LOGICAL_WARP_THREADS);
  }
  template <class Op>
  T Reduce(T input, Op op, int valid_items, std::source_location = std::source_location::current()) {
    return reduce(input, op, valid_items);
  }
  T Sum(T input, std::source_location = std::source_location::current()) {
    return reduce(input, emulation::Sum{}, LOGICAL_WARP_THREADS);
  }
  T Sum(T input, int valid_items, std::source_location = std::source_location::current()) {
    return reduce(input, emulation::Sum{}, valid_items);
  }

 private:
  template <class Op>
  T reduce(const T& input, Op op, int valid) {
    temp_.slot[lane_] = input;
    __syncwarp();
    if (lane_ != 0) return emulation::poisoned<T>();
    T v = temp_.slot[0];
    for (int l = 1; l < valid && l < LOGICAL_WARP_THREADS; ++l) v = op(v, temp_.slot[l]);
    return v;
  }

  TempStorage& temp_;
  int lane_;
};

}  // namespace cub
