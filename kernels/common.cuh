#pragma once
// Device-side helpers shared by the kernel families. nvcc only.

#include <cstdint>

#include "d2r/error.hpp"

/// Kernels have internal linkage so that identical template instantiations in different shared
/// libraries cannot be merged by the dynamic linker.
#define D2R_KERNEL static __global__

namespace d2r::kernels {

inline constexpr int kWarpSize = 32;

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
