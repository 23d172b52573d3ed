// Deterministic column sums: the reduction used wherever a parameter shared by all rows
// (a 1-row log_std or tril) receives the sum of per-row gradients. No atomics: each pass sums
// fixed chunks of kRowsPerBlock rows in a fixed order, then the partials are summed again.
#include <algorithm>

#include "kernels/common.cuh"
#include "kernels/launch.hpp"

namespace d2r::kernels {
namespace {

constexpr int kColsPerBlock = 32;
constexpr int kRowLanes = 8;
constexpr std::int64_t kRowsPerBlock = 256;
constexpr std::int64_t kMaxGridY = 65535;  // CUDA's limit on gridDim.y

/// Sums chunk c (rows [c·kRowsPerBlock, (c+1)·kRowsPerBlock)) of every column into out row c.
/// The chunks are strided over gridDim.y (at most kMaxGridY), so any number of rows works; the
/// order of every sum depends only on the shape.
D2R_KERNEL void column_partial_sums(MatrixView<const float> in, float* out, std::int64_t out_stride,
                                    std::int64_t n_chunks) {
  __shared__ float partial[kRowLanes][kColsPerBlock];
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

std::int64_t chunks(std::int64_t rows) { return (rows + kRowsPerBlock - 1) / kRowsPerBlock; }

}  // namespace

std::size_t column_sum_workspace_bytes(std::int64_t rows, std::int64_t cols) {
  return rows <= kRowsPerBlock ? 0 : 2 * static_cast<std::size_t>(chunks(rows) * cols) * sizeof(float);
}

void column_sum(cudaStream_t stream, MatrixView<const float> in, float* out, void* workspace) {
  float* ping = static_cast<float*>(workspace);
  float* pong = ping + chunks(in.rows) * in.cols;
  MatrixView<const float> current = in;
  while (true) {
    const std::int64_t n_chunks = chunks(current.rows);
    float* target = n_chunks == 1 ? out : ping;
    const dim3 block(kColsPerBlock, kRowLanes);
    const dim3 grid(static_cast<unsigned>((current.cols + kColsPerBlock - 1) / kColsPerBlock),
                    static_cast<unsigned>(std::min(n_chunks, kMaxGridY)));
    column_partial_sums<<<grid, block, 0, stream>>>(current, target, current.cols, n_chunks);
    D2R_CHECK_LAUNCH(stream);
    if (n_chunks == 1) return;
    current = MatrixView<const float>{ping, n_chunks, current.cols, current.cols};
    std::swap(ping, pong);
  }
}

}  // namespace d2r::kernels
