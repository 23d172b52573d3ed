#pragma once
// Device-side helpers shared by the kernel families. nvcc only.

#include <math.h>  // ::isfinite of the kernels: nvcc has it; a host compiler (the emulation tests) gets it here

#include <cstdint>

#include "d2r/error.hpp"

/// Kernels have internal linkage so that identical template instantiations in different shared
/// libraries cannot be merged by the dynamic linker.
#define D2R_KERNEL static __global__

/// A block-shared variable of type T (T may be an array type): `D2R_SHARED(float[5], stats);`.
/// Kernels declare static shared memory only through this macro, so that the kernel emulator
/// (tests/emulation/simt_emulator.hpp, which defines it first) can give it per-block storage that
/// is NaN-poisoned before every block. Types with a comma need an alias first.
#ifndef D2R_SHARED
#define D2R_SHARED(T, name) __shared__ ::d2r::kernels::SharedType<T> name
#endif

namespace d2r::kernels {

inline constexpr int kWarpSize = 32;

/// T itself: lets D2R_SHARED declare arrays (SharedType<float[5]> x).
template <class T>
using SharedType = T;

/// Blocks needed to cover `work` items with `per_block` items each, capped for a grid-stride loop.
inline unsigned grid_size(std::int64_t work, int per_block, std::int64_t cap = 65535LL * 32) {
  const std::int64_t blocks = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

/// Sum over the 32 lanes of a warp by a butterfly: a fixed order, so deterministic.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

}  // namespace d2r::kernels
