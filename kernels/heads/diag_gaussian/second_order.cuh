#pragma once
// Device code of the diagonal-Gaussian head's second-order pieces (d2r/second_order.hpp, DESIGN.md
// §5-6): the log-probability JVP, the backward tangent and the exact-curvature mixed product's
// per-row partial gradients (see reference::diag_gaussian::exact_mixed_product; launchers column-sum them).
// Launchers: launch.cu beside it.

#include <cstdint>

#include "d2r/types/heads.hpp"
#include "d2r/types/objectives.hpp"
#include "kernels/common.cuh"
#include "kernels/heads/diag_gaussian/distribution.cuh"
#include "kernels/heads/diag_gaussian/objectives.cuh"
#include "common/math/numerics.hpp"

namespace d2r::kernels::diag_gaussian {

/// out(b, g) = Σ_d [δ v μ̇ + (δ² v − 1) ṡ] with δ = ŷ − μ, v = e^{−2s}: one warp per sample row.
D2R_KERNEL void log_prob_jvp_kernel(DiagGaussian<float> head, MatrixView<const float> samples,
                                    DiagGaussian<float> tangent, MatrixView<float> out) {
  const std::int64_t n = head.mean.cols, generations = out.cols;
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / kWarpSize);
  for (std::int64_t row = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / kWarpSize;
       row < samples.rows; row += warps) {
    const std::int64_t b = row / generations;
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    float sum = 0.0f;
    for (std::int64_t d = lane; d < n; d += kWarpSize) {
      const float v = expf(-2.0f * head.log_std(s_row, d));
      const float diff = samples(row, d) - head.mean(b, d);
      sum += diff * v * tangent.mean(b, d) + (diff * diff * v - 1.0f) * tangent.log_std(s_row, d);
    }
    sum = warp_sum(sum);
    if (lane == 0) out(b, row % generations) = sum;
  }
}

/// One thread per (b, d), looping over generations, as backward_kernel:
///   grad_mean(b, d)      = Σ_g c_bg (−v μ̇ − 2 δ v ṡ)
///   log_std_target(b, d) = Σ_g c_bg (−2 δ v μ̇ − 2 δ² v ṡ)
/// (log_std_target is grad_tangent.log_std, or B x n scratch summed over rows when shared).
D2R_KERNEL void backward_tangent_kernel(DiagGaussian<float> head, MatrixView<const float> samples,
                                        MatrixView<const float> d_log_prob, DiagGaussian<float> tangent,
                                        MatrixView<float> grad_mean, MatrixView<float> log_std_target) {
  const std::int64_t n = head.mean.cols, batch = head.mean.rows;
  const std::int64_t generations = d_log_prob.data == nullptr ? 0 : d_log_prob.cols;
  const std::int64_t total = batch * n;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = i / n, d = i % n;
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    const float v = expf(-2.0f * head.log_std(s_row, d));
    const float mu = head.mean(b, d);
    const float mu_dot = tangent.mean(b, d), s_dot = tangent.log_std(s_row, d);
    float g_mean = 0.0f, g_log_std = 0.0f;
    for (std::int64_t g = 0; g < generations; ++g) {
      const float c = d_log_prob(b, g);
      const float diff = samples(b * generations + g, d) - mu;
      const float dv = diff * v;
      g_mean += c * (-v * mu_dot - 2.0f * dv * s_dot);
      g_log_std += c * (-2.0f * dv * mu_dot - 2.0f * diff * dv * s_dot);
    }
    grad_mean(b, d) = g_mean;
    log_std_target(b, d) = g_log_std;
  }
}

/// One thread per (b, column): column 0 (scalar), d (diagonal) or j (full, entries (i >= j, j)).
D2R_KERNEL void exact_mixed_rows_kernel(DiagGaussian<float> head, MatrixView<const float> targets,
                                             MahalanobisReward<float> reward, float k, DiagGaussian<float> tangent,
                                             MatrixView<float> partial) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols;
  const std::int64_t columns = reward.form == RewardForm::scalar ? 1 : n;
  for (std::int64_t t = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; t < B * columns;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = t / columns, j = t % columns;
    const std::int64_t sr = head.log_std.rows == 1 ? 0 : b, tr = tangent.log_std.rows == 1 ? 0 : b;
    auto w = [&](std::int64_t d) { return expf(2.0f * head.log_std(sr, d)) * tangent.log_std(tr, d); };
    if (reward.form == RewardForm::scalar) {
      float acc = 0.0f;
      for (std::int64_t d = 0; d < n; ++d) acc += (head.mean(b, d) - targets(b, d)) * tangent.mean(b, d) + w(d);
      partial(b, 0) = 2.0f * k * acc;
    } else if (reward.form == RewardForm::diagonal) {
      partial(b, j) = 2.0f * k * ((head.mean(b, j) - targets(b, j)) * tangent.mean(b, j) + w(j));
    } else {
      float va = 0.0f, vb = 0.0f;  // (Rᵀδ)_j, (Rᵀμ̇)_j
      for (std::int64_t i = j; i < n; ++i) {
        va += reward.params[tril_index(i, j)] * (head.mean(b, i) - targets(b, i));
        vb += reward.params[tril_index(i, j)] * tangent.mean(b, i);
      }
      for (std::int64_t i = j; i < n; ++i) {
        const float delta = head.mean(b, i) - targets(b, i);
        partial(b, tril_index(i, j)) =
            2.0f * k * (delta * vb + tangent.mean(b, i) * va + 2.0f * reward.params[tril_index(i, j)] * w(i));
      }
    }
  }
}

}  // namespace d2r::kernels::diag_gaussian
