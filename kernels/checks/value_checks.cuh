#pragma once
// Device code of the value checks (launchers: launch.cu), run before a primitive writes its
// outputs (ValueChecks::full). Each kernel records the smallest offending linear index with an
// integer atomicMin, whose result does not depend on the order of the atomics.

#include <cstdint>
#include <limits>

#include "d2r/view.hpp"
#include "kernels/common.cuh"

namespace d2r::kernels::value_checks {

inline constexpr int kThreads = 256;
inline constexpr unsigned long long kNone = std::numeric_limits<unsigned long long>::max();

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

}  // namespace d2r::kernels::value_checks
