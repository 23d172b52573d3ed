// Launcher of the deterministic column sums (device code in column_sum.cuh).
#include <algorithm>

#include "kernels/checks/column_sum.cuh"
#include "kernels/checks/launch.hpp"

namespace d2r::kernels::checks {
namespace {

using column_sums::kColsPerBlock;
using column_sums::kMaxGridY;
using column_sums::kRowLanes;
using column_sums::kRowsPerBlock;

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
    column_sums::column_partial_sums<<<grid, block, 0, stream>>>(current, target, current.cols, n_chunks);
    D2R_CHECK_LAUNCH(stream);
    if (n_chunks == 1) return;
    current = MatrixView<const float>{ping, n_chunks, current.cols, current.cols};
    std::swap(ping, pong);
  }
}

}  // namespace d2r::kernels::checks
