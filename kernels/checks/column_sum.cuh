#pragma once
// Device code of the deterministic column sums (launcher: column_sum.cu), the reduction used
// wherever a parameter shared by all rows (a 1-row log_std or tril) receives the sum of per-row
// gradients. No atomics: each pass sums fixed chunks of kRowsPerBlock rows in a fixed order,
// then the partials are summed again.

#include <cstdint>

#include "d2r/view.hpp"
#include "kernels/common.cuh"

namespace d2r::kernels::column_sums {

inline constexpr int kColsPerBlock = 32;
inline constexpr int kRowLanes = 8;
inline constexpr std::int64_t kRowsPerBlock = 256;
inline constexpr std::int64_t kMaxGridY = 65535;  // CUDA's limit on gridDim.y

/// Sums chunk c (rows [c·kRowsPerBlock, (c+1)·kRowsPerBlock)) of every column into out row c.
/// The chunks are strided over gridDim.y (at most kMaxGridY), so any number of rows works; the
/// order of every sum depends only on the shape.
D2R_KERNEL void column_partial_sums(MatrixView<const float> in, float* out, std::int64_t out_stride,
                                    std::int64_t n_chunks) {
  D2R_SHARED(float[kRowLanes][kColsPerBlock], partial);
  const std::int64_t col = static_cast<std::int64_t>(blockIdx.x) * kColsPerBlock + threadIdx.x;
  for (std::int64_t chunk = blockIdx.y; chunk < n_chunks; chunk += gridDim.y) {
    const std::int64_t row0 = chunk * kRowsPerBlock;
    const std::int64_t row_end = min(row0 + kRowsPerBlock, in.rows);
    float sum = 0.0f;
    if (col < in.cols) {
      for (std::int64_t r = row0 + threadIdx.y; r < row_end; r += kRowLanes) sum += in(r, col);
    }
    partial[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && col < in.cols) {
      float total = 0.0f;
      for (int lane = 0; lane < kRowLanes; ++lane) total += partial[lane][threadIdx.x];
      out[chunk * out_stride + col] = total;
    }
    __syncthreads();  // partial is rewritten by the next chunk
  }
}

}  // namespace d2r::kernels::column_sums
