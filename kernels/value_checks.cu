// Value checks run before a primitive writes its outputs (ValueChecks::full). Each kernel
// records the smallest offending linear index with an integer atomicMin, whose result does not
// depend on the order of the atomics; the launcher copies it back (one synchronisation).
#include <limits>

#include "kernels/common.cuh"
#include "kernels/launch.hpp"

namespace d2r::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned long long kNone = std::numeric_limits<unsigned long long>::max();

enum class Rule { finite, logit };

template <Rule rule>
D2R_KERNEL void first_bad_kernel(MatrixView<const float> m, unsigned long long* first) {
  const std::int64_t total = m.rows * m.cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float v = m(i / m.cols, i % m.cols);
    const bool bad = rule == Rule::finite ? !isfinite(v) : (isnan(v) || (isinf(v) && v > 0.0f));
    if (bad) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

/// One warp per row: does the row hold at least one finite value?
D2R_KERNEL void row_without_finite_kernel(MatrixView<const float> m, unsigned long long* first) {
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / kWarpSize);
  const int lane = threadIdx.x % kWarpSize;
  for (std::int64_t r = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / kWarpSize; r < m.rows;
       r += warps) {
    bool any = false;
    for (std::int64_t c = lane; c < m.cols && !any; c += kWarpSize) any = isfinite(m(r, c));
    if (!__any_sync(0xffffffffu, any) && lane == 0) atomicMin(first, static_cast<unsigned long long>(r));
  }
}

D2R_KERNEL void index_range_kernel(MatrixView<const std::int32_t> m, std::int32_t upper, unsigned long long* first) {
  const std::int64_t total = m.rows * m.cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int32_t v = m(i / m.cols, i % m.cols);
    if (v < 0 || v >= upper) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

template <class Launch>
std::int64_t run_check(cudaStream_t stream, std::int64_t* scratch, Launch&& launch) {
  auto* first = reinterpret_cast<unsigned long long*>(scratch);
  const unsigned long long none = kNone;
  D2R_CUDA_TRY(cudaMemcpyAsync(first, &none, sizeof none, cudaMemcpyHostToDevice, stream));
  launch(first);
  D2R_CHECK_LAUNCH(stream);
  unsigned long long result = kNone;
  D2R_CUDA_TRY(cudaMemcpyAsync(&result, first, sizeof result, cudaMemcpyDeviceToHost, stream));
  D2R_CUDA_TRY(cudaStreamSynchronize(stream));
  return result == kNone ? -1 : static_cast<std::int64_t>(result);
}

}  // namespace

std::int64_t first_nonfinite(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch) {
  return run_check(stream, scratch, [&](unsigned long long* first) {
    first_bad_kernel<Rule::finite><<<grid_size(m.rows * m.cols, kThreads, 4096), kThreads, 0, stream>>>(m, first);
  });
}

std::int64_t first_bad_logit(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch) {
  return run_check(stream, scratch, [&](unsigned long long* first) {
    first_bad_kernel<Rule::logit><<<grid_size(m.rows * m.cols, kThreads, 4096), kThreads, 0, stream>>>(m, first);
  });
}

std::int64_t first_row_without_finite(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch) {
  return run_check(stream, scratch, [&](unsigned long long* first) {
    row_without_finite_kernel<<<grid_size(m.rows * kWarpSize, kThreads, 4096), kThreads, 0, stream>>>(m, first);
  });
}

std::int64_t first_index_out_of_range(cudaStream_t stream, MatrixView<const std::int32_t> m, std::int32_t upper,
                                      std::int64_t* scratch) {
  return run_check(stream, scratch, [&](unsigned long long* first) {
    index_range_kernel<<<grid_size(m.rows * m.cols, kThreads, 4096), kThreads, 0, stream>>>(m, upper, first);
  });
}

}  // namespace d2r::kernels
