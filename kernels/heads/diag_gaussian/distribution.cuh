#pragma once
// Device code of the diagonal-Gaussian head's distribution (DESIGN.md §3). Launchers: launch.cu
// beside it; the objectives and second-order pieces are in objectives.cuh and second_order.cuh.

#include "d2r/types/heads.hpp"
#include "kernels/common.cuh"
#include "common/math/numerics.hpp"

namespace d2r::kernels::diag_gaussian {

/// One thread per (sample row, quad of 4 dims): one Philox call gives the 4 normals.
D2R_KERNEL void sample_kernel(DiagGaussian<float> head, std::int64_t generations, math::DrawPosition pos,
                              MatrixView<float> samples) {
  const std::int64_t n = head.mean.cols;
  const std::int64_t quads = (n + 3) / 4;
  const std::int64_t total = samples.rows * quads;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = i / quads, quad = i % quads;
    const std::int64_t b = row / generations, g = row % generations;
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    const math::Normal4<float> eps = math::normal4<float>(pos.seed, pos.step_at(), static_cast<std::uint32_t>(pos.first_row + b),
                                                          static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(quad));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const std::int64_t d = quad * 4 + k;
      if (d < n) samples(row, d) = head.mean(b, d) + expf(head.log_std(s_row, d)) * eps.z[k];
    }
  }
}

/// One warp per sample row (b, g); lanes stride over dims and reduce by butterfly.
D2R_KERNEL void log_prob_kernel(DiagGaussian<float> head, MatrixView<const float> samples, MatrixView<float> out) {
  const std::int64_t n = head.mean.cols, generations = out.cols;
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / kWarpSize);
  constexpr float kHalfLog2Pi = static_cast<float>(0.5 * math::kLog2Pi);
  for (std::int64_t row = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / kWarpSize;
       row < samples.rows; row += warps) {
    const std::int64_t b = row / generations;
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    float sum = 0.0f;
    for (std::int64_t d = lane; d < n; d += kWarpSize) {
      const float s = head.log_std(s_row, d);
      const float z = (samples(row, d) - head.mean(b, d)) * expf(-s);
      sum += -0.5f * z * z - s - kHalfLog2Pi;
    }
    sum = warp_sum(sum);
    if (lane == 0) out(b, row % generations) = sum;
  }
}

/// One warp per row b.
D2R_KERNEL void entropy_kernel(DiagGaussian<float> head, VectorView<float> out) {
  const std::int64_t n = head.mean.cols;
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / kWarpSize);
  constexpr float kHalfLog2PiE = static_cast<float>(0.5 * math::kLog2PiE);
  for (std::int64_t b = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / kWarpSize;
       b < head.mean.rows; b += warps) {
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    float sum = 0.0f;
    for (std::int64_t d = lane; d < n; d += kWarpSize) sum += head.log_std(s_row, d) + kHalfLog2PiE;
    sum = warp_sum(sum);
    if (lane == 0) out[b] = sum;
  }
}

/// One thread per (b, d), looping over generations (reads of sample rows are coalesced over d).
/// Writes grad.mean, and the log_std gradient either into grad.log_std (state-dependent) or
/// into `per_row_log_std` (B x n, later summed over rows when log_std is shared).
D2R_KERNEL void backward_kernel(DiagGaussian<float> head, MatrixView<const float> samples,
                                MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                                MatrixView<float> grad_mean, MatrixView<float> log_std_target) {
  const std::int64_t n = head.mean.cols, batch = head.mean.rows;
  const std::int64_t generations = d_log_prob.data == nullptr ? 0 : d_log_prob.cols;
  const std::int64_t total = batch * n;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = i / n, d = i % n;
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    const float inv_var = expf(-2.0f * head.log_std(s_row, d));
    const float mu = head.mean(b, d);
    float g_mean = 0.0f, g_log_std = 0.0f;
    for (std::int64_t g = 0; g < generations; ++g) {
      const float c = d_log_prob(b, g);
      const float diff = samples(b * generations + g, d) - mu;
      g_mean += c * diff * inv_var;
      g_log_std += c * (diff * diff * inv_var - 1.0f);
    }
    grad_mean(b, d) = g_mean;
    log_std_target(b, d) = g_log_std + (d_entropy.data == nullptr ? 0.0f : d_entropy[b]);
  }
}

}  // namespace d2r::kernels::diag_gaussian
