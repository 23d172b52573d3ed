#pragma once
// Device code of the Mahalanobis rewards and the group transforms (DESIGN.md §4).
// Launchers: launch.cu.

#include "d2r/types/objectives.hpp"
#include "kernels/common.cuh"
#include "common/math/numerics.hpp"

namespace d2r::kernels::rewards {

__device__ __forceinline__ std::int64_t tril_index(std::int64_t i, std::int64_t j) { return i * (i + 1) / 2 + j; }

/// One warp per sample row (b, g): out(b, g) = −δᵀUδ with δ = sample − target.
D2R_KERNEL void continuous_kernel(MahalanobisReward<float> reward, MatrixView<const float> samples,
                                  MatrixView<const float> targets, MatrixView<float> out) {
  const std::int64_t n = targets.cols, generations = out.cols;
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / kWarpSize);
  for (std::int64_t row = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / kWarpSize;
       row < samples.rows; row += warps) {
    const std::int64_t b = row / generations;
    float quad = 0.0f;
    if (reward.form == RewardForm::full) {
      for (std::int64_t j = lane; j < n; j += kWarpSize) {
        float v = 0.0f;  // (Rᵀδ)_j
        for (std::int64_t i = j; i < n; ++i) v += reward.params[tril_index(i, j)] * (samples(row, i) - targets(b, i));
        quad += v * v;
      }
    } else {
      for (std::int64_t d = lane; d < n; d += kWarpSize) {
        const float delta = samples(row, d) - targets(b, d);
        quad += (reward.form == RewardForm::diagonal ? reward.params[d] : 1.0f) * delta * delta;
      }
    }
    quad = warp_sum(quad);
    if (lane == 0) out(b, row % generations) = -(reward.form == RewardForm::scalar ? reward.params[0] : 1.0f) * quad;
  }
}

/// r(k, y); NaN for the draw k = −1 of a row without a distribution (ValueChecks::none).
__device__ __forceinline__ float one_hot_reward(const MahalanobisReward<float>& reward, std::int32_t k, std::int32_t y) {
  if (k < 0) return __int_as_float(0x7fc00000);  // quiet NaN
  if (k == y) return 0.0f;
  switch (reward.form) {
    case RewardForm::scalar: return -2.0f * reward.params[0];
    case RewardForm::diagonal: return -(reward.params[k] + reward.params[y]);
    case RewardForm::full: {
      float s = 0.0f;
      const std::int32_t top = k > y ? k : y;
      for (std::int32_t j = 0; j <= top; ++j) {
        const float rk = j <= k ? reward.params[tril_index(k, j)] : 0.0f;
        const float ry = j <= y ? reward.params[tril_index(y, j)] : 0.0f;
        s += (rk - ry) * (rk - ry);
      }
      return -s;
    }
  }
  return 0.0f;
}

/// One thread per (b, g).
D2R_KERNEL void one_hot_kernel(MahalanobisReward<float> reward, MatrixView<const std::int32_t> samples,
                               VectorView<const std::int32_t> labels, MatrixView<float> out) {
  const std::int64_t total = out.rows * out.cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = i / out.cols, g = i % out.cols;
    out(b, g) = one_hot_reward(reward, samples(b, g), labels[b]);
  }
}

/// Per-row partial gradients (B x P) of Σ_g c_bg r_bg for the continuous reward. One thread per
/// (b, column): column = 0 for scalar, d for diagonal, j for full (owning entries (i >= j, j)).
D2R_KERNEL void continuous_grad_rows_kernel(MahalanobisReward<float> reward, MatrixView<const float> samples,
                                            MatrixView<const float> targets, MatrixView<const float> d_reward,
                                            MatrixView<float> partial) {
  const std::int64_t n = targets.cols, generations = d_reward.cols;
  const std::int64_t columns = reward.form == RewardForm::scalar ? 1 : n;
  const std::int64_t total = targets.rows * columns;
  for (std::int64_t t = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = t / columns, j = t % columns;
    if (reward.form == RewardForm::full) {
      for (std::int64_t i = j; i < n; ++i) partial(b, tril_index(i, j)) = 0.0f;
    }
    float acc = 0.0f;
    for (std::int64_t g = 0; g < generations; ++g) {
      const std::int64_t row = b * generations + g;
      const float c = d_reward(b, g);
      if (reward.form == RewardForm::scalar) {
        float sq = 0.0f;
        for (std::int64_t d = 0; d < n; ++d) {
          const float delta = samples(row, d) - targets(b, d);
          sq += delta * delta;
        }
        acc -= c * sq;
      } else if (reward.form == RewardForm::diagonal) {
        const float delta = samples(row, j) - targets(b, j);
        acc -= c * delta * delta;
      } else {
        float v = 0.0f;
        for (std::int64_t i = j; i < n; ++i) v += reward.params[tril_index(i, j)] * (samples(row, i) - targets(b, i));
        for (std::int64_t i = j; i < n; ++i) partial(b, tril_index(i, j)) -= 2.0f * c * (samples(row, i) - targets(b, i)) * v;
      }
    }
    if (reward.form != RewardForm::full) partial(b, j) = acc;
  }
}

/// One-hot reward gradient: one thread per chunk of rows scatters its rows' contributions, in
/// order, into its own zeroed partial row (chunks x P); a column sum follows.
D2R_KERNEL void one_hot_grad_chunks_kernel(MahalanobisReward<float> reward, MatrixView<const std::int32_t> samples,
                                           VectorView<const std::int32_t> labels, MatrixView<const float> d_reward,
                                           MatrixView<float> partial, std::int64_t rows_per_chunk) {
  const std::int64_t chunk = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (chunk >= partial.rows) return;
  for (std::int64_t p = 0; p < partial.cols; ++p) partial(chunk, p) = 0.0f;
  const std::int64_t end = min((chunk + 1) * rows_per_chunk, d_reward.rows);
  for (std::int64_t b = chunk * rows_per_chunk; b < end; ++b) {
    const std::int32_t y = labels[b];
    for (std::int64_t g = 0; g < d_reward.cols; ++g) {
      const std::int32_t k = samples(b, g);
      if (k == y || k < 0) continue;  // k = −1: a row without a distribution (its reward is NaN)
      const float c = d_reward(b, g);
      if (reward.form == RewardForm::scalar) {
        partial(chunk, 0) -= 2.0f * c;
      } else if (reward.form == RewardForm::diagonal) {
        partial(chunk, k) -= c;
        partial(chunk, y) -= c;
      } else {
        const std::int32_t top = k > y ? k : y;
        for (std::int32_t j = 0; j <= top; ++j) {
          const float rk = j <= k ? reward.params[tril_index(k, j)] : 0.0f;
          const float ry = j <= y ? reward.params[tril_index(y, j)] : 0.0f;
          if (j <= k) partial(chunk, tril_index(k, j)) -= 2.0f * c * (rk - ry);
          if (j <= y) partial(chunk, tril_index(y, j)) += 2.0f * c * (rk - ry);
        }
      }
    }
  }
}

/// One thread per row: the G rewards of a row are few (tens), read twice from L1.
D2R_KERNEL void transform_kernel(TransformOptions<float> options, MatrixView<const float> rewards,
                                 MatrixView<float> advantages) {
  const std::int64_t G = rewards.cols;
  for (std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; b < rewards.rows;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0f, lo = INFINITY;
    for (std::int64_t g = 0; g < G; ++g) {
      sum += rewards(b, g);
      lo = fminf(lo, rewards(b, g));
    }
    // standardize centres r − lo (see reference::rewards::transform_row): a group of equal rewards then
    // has a mean of exactly 0 and gets advantages of exactly 0.
    float mean = 0.0f, scale = 1.0f;
    if (options.kind == Transform::standardize) {
      for (std::int64_t g = 0; g < G; ++g) mean += rewards(b, g) - lo;
      mean /= static_cast<float>(G);
      float sq = 0.0f;
      for (std::int64_t g = 0; g < G; ++g) sq += (rewards(b, g) - lo - mean) * (rewards(b, g) - lo - mean);
      scale = 1.0f / (sqrtf(sq / static_cast<float>(G - 1)) + options.standardize_epsilon);
    }
    for (std::int64_t g = 0; g < G; ++g) {
      const float r = rewards(b, g);
      float a = r;
      switch (options.kind) {
        case Transform::none: break;
        case Transform::normalize: a = r - lo; break;
        case Transform::rbf: a = expf(options.rbf_gamma * r); break;
        case Transform::leave_one_out: a = r - (sum - r) / static_cast<float>(G - 1); break;
        case Transform::standardize: a = (r - lo - mean) * scale; break;
      }
      advantages(b, g) = a;
    }
  }
}

/// Vector-Jacobian product of the transform, one thread per row (see
/// reference::rewards::transform_row_backward; normalize: the subgradient goes to the first minimal entry).
D2R_KERNEL void transform_backward_kernel(TransformOptions<float> options, MatrixView<const float> rewards,
                                          MatrixView<const float> d_advantages, MatrixView<float> d_rewards) {
  const std::int64_t G = rewards.cols;
  for (std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; b < rewards.rows;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float da_sum = 0.0f, lo = INFINITY;
    std::int64_t arg_lo = 0;
    for (std::int64_t g = 0; g < G; ++g) {
      const float r = rewards(b, g);
      da_sum += d_advantages(b, g);
      if (r < lo) {
        lo = r;
        arg_lo = g;
      }
    }
    // standardize: centred as in transform_kernel (r − lo first), so z is exactly 0 in a group
    // of equal rewards, as in the reference.
    float mean = 0.0f, D = 1.0f, coef = 0.0f;
    if (options.kind == Transform::standardize) {
      for (std::int64_t g = 0; g < G; ++g) mean += rewards(b, g) - lo;
      mean /= static_cast<float>(G);
      float sq = 0.0f, dz = 0.0f;
      for (std::int64_t g = 0; g < G; ++g) {
        const float z = rewards(b, g) - lo - mean;
        sq += z * z;
        dz += d_advantages(b, g) * z;
      }
      const float s = sqrtf(sq / static_cast<float>(G - 1));
      D = s + options.standardize_epsilon;
      coef = s > 0.0f ? dz / (static_cast<float>(G - 1) * s * D * D) : 0.0f;
    }
    for (std::int64_t g = 0; g < G; ++g) {
      const float r = rewards(b, g), da = d_advantages(b, g);
      float dr = da;
      switch (options.kind) {
        case Transform::none: break;
        case Transform::normalize: dr = g == arg_lo ? da - da_sum : da; break;
        case Transform::rbf: dr = da * options.rbf_gamma * expf(options.rbf_gamma * r); break;
        case Transform::leave_one_out:
          dr = (da * static_cast<float>(G) - da_sum) / static_cast<float>(G - 1);
          break;
        case Transform::standardize: dr = (da - da_sum / static_cast<float>(G)) / D - coef * (r - lo - mean); break;
      }
      d_rewards(b, g) = dr;
    }
  }
}

}  // namespace d2r::kernels::rewards
