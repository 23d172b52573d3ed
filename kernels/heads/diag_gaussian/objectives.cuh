#pragma once
// Device code of the inner objectives of the diagonal-Gaussian head: exact objective and its
// tangent, pathwise objective, fused REINFORCE surrogate. Launchers: launch.cu beside it.

#include "d2r/types/objectives.hpp"
#include "kernels/common.cuh"
#include "kernels/heads/diag_gaussian/launch.hpp"
#include "common/math/numerics.hpp"

namespace d2r::kernels::diag_gaussian {

__device__ __forceinline__ std::int64_t tril_index(std::int64_t i, std::int64_t j) { return i * (i + 1) / 2 + j; }

/// U_dd of the reward.
__device__ __forceinline__ float u_diagonal(const MahalanobisReward<float>& reward, std::int64_t d) {
  if (reward.form == RewardForm::scalar) return reward.params[0];
  if (reward.form == RewardForm::diagonal) return reward.params[d];
  float s = 0.0f;
  for (std::int64_t j = 0; j <= d; ++j) s += reward.params[tril_index(d, j)] * reward.params[tril_index(d, j)];
  return s;
}

/// Full U = R Rᵀ in two O(n²) halves, for kernels that need every (Uδ)_d of one δ: v = Rᵀδ
/// (n floats, kept by the caller), then (Uδ)_d = Σ_{j<=d} R_dj v_j.
template <class Delta>
__device__ void r_transpose_times(const MahalanobisReward<float>& reward, std::int64_t n, Delta&& delta, float* v) {
  for (std::int64_t j = 0; j < n; ++j) {
    float s = 0.0f;
    for (std::int64_t m = j; m < n; ++m) s += reward.params[tril_index(m, j)] * delta(m);
    v[j] = s;
  }
}
__device__ __forceinline__ float r_times(const MahalanobisReward<float>& reward, std::int64_t d, const float* v) {
  float out = 0.0f;
  for (std::int64_t j = 0; j <= d; ++j) out += reward.params[tril_index(d, j)] * v[j];
  return out;
}

/// Exact objective, one thread per row; a full U keeps v = Rᵀδ in `exact_scratch` (dynamic shared
/// memory, n floats per thread: launcher), so a row costs O(n²).
D2R_KERNEL void exact_kernel(DiagGaussian<float> head, MatrixView<const float> targets, MahalanobisReward<float> reward,
                             float lambda, ObjectiveScale<float> s, ObjectiveRows<float> rows, MatrixView<float> grad_mean,
                             MatrixView<float> log_std_target) {
  extern __shared__ float exact_scratch[];
  const std::int64_t n = head.mean.cols;
  float* const v = reward.form == RewardForm::full ? exact_scratch + n * threadIdx.x : nullptr;
  const float k = s.per_dim / s.normaliser;
  constexpr float kHalfLog2PiE = static_cast<float>(0.5 * math::kLog2PiE);
  for (std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; b < head.mean.rows;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t sr = head.log_std.rows == 1 ? 0 : b;
    const auto delta = [&](std::int64_t i) { return head.mean(b, i) - targets(b, i); };
    if (v != nullptr) r_transpose_times(reward, n, delta, v);
    float expected = 0.0f, H = 0.0f;
    for (std::int64_t d = 0; d < n; ++d) {
      const float ud = v != nullptr ? r_times(reward, d, v) : u_diagonal(reward, d) * delta(d);
      const float var = expf(2.0f * head.log_std(sr, d));
      const float udd = u_diagonal(reward, d);
      expected -= delta(d) * ud + udd * var;
      H += head.log_std(sr, d) + kHalfLog2PiE;
      grad_mean(b, d) = 2.0f * k * ud;
      log_std_target(b, d) = -k * (-2.0f * udd * var + lambda);
    }
    rows.row_loss[b] = -k * (expected + lambda * H);
    if (rows.row_reward.data != nullptr) rows.row_reward[b] = expected;
  }
}

/// Tangent of the exact objective's head gradient (see reference::diag_gaussian::exact_backward_tangent),
/// one thread per row; log_std_target is the per-row target (workspace when the log-std is shared).
/// Scratch as exact_kernel's (v = Rᵀμ̇ for a full U).
D2R_KERNEL void exact_tangent_kernel(DiagGaussian<float> head, MahalanobisReward<float> reward, float k,
                                     DiagGaussian<float> tangent, MatrixView<float> grad_mean,
                                     MatrixView<float> log_std_target) {
  extern __shared__ float exact_scratch[];
  const std::int64_t n = head.mean.cols;
  float* const v = reward.form == RewardForm::full ? exact_scratch + n * threadIdx.x : nullptr;
  for (std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; b < head.mean.rows;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t sr = head.log_std.rows == 1 ? 0 : b;
    const auto mean_dot = [&](std::int64_t i) { return tangent.mean(b, i); };
    if (v != nullptr) r_transpose_times(reward, n, mean_dot, v);
    for (std::int64_t d = 0; d < n; ++d) {
      grad_mean(b, d) = 2.0f * k * (v != nullptr ? r_times(reward, d, v) : u_diagonal(reward, d) * mean_dot(d));
      const float var = expf(2.0f * head.log_std(sr, d));
      log_std_target(b, d) = 4.0f * k * u_diagonal(reward, d) * var * tangent.log_std(sr, d);
    }
  }
}

/// Pathwise objective, one thread per row: ŷ = μ + σε with ε regenerated from Philox. A full U
/// keeps δ = ŷ − y and Uδ of the current draw in `scratch` (dynamic shared memory, 2n floats per
/// thread: launcher): v = Rᵀδ, then Uδ = R v in place, O(n²) per draw; the scalar and diagonal
/// forms need no scratch (O(n)).
D2R_KERNEL void pathwise_kernel(DiagGaussian<float> head, MatrixView<const float> targets,
                                MahalanobisReward<float> reward, PgOptions<float> options, math::DrawPosition pos,
                                ObjectiveScale<float> s, ObjectiveRows<float> rows, MatrixView<float> grad_mean,
                                MatrixView<float> log_std_target) {
  extern __shared__ float pathwise_scratch[];
  const std::int64_t n = head.mean.cols, G = s.generations;
  const float k = s.per_dim / s.normaliser;
  constexpr float kHalfLog2PiE = static_cast<float>(0.5 * math::kLog2PiE);
  const bool full = reward.form == RewardForm::full;
  float* const delta = full ? pathwise_scratch + 2 * n * threadIdx.x : nullptr;
  float* const u_delta = full ? delta + n : nullptr;
  for (std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; b < head.mean.rows;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t sr = head.log_std.rows == 1 ? 0 : b;
    const auto row = static_cast<std::uint32_t>(pos.first_row + b);
    for (std::int64_t d = 0; d < n; ++d) grad_mean(b, d) = 0.0f, log_std_target(b, d) = 0.0f;
    float value_sum = 0.0f, reward_sum = 0.0f;
    for (std::int64_t g = 0; g < G; ++g) {
      const auto gen = static_cast<std::uint32_t>(g);
      const auto eps = [&](std::int64_t i) {
        return math::normal<float>(pos.seed, pos.step_at(), row, gen, static_cast<std::uint32_t>(i));
      };
      const auto draw_delta = [&](std::int64_t i) {
        return head.mean(b, i) + expf(head.log_std(sr, i)) * eps(i) - targets(b, i);
      };
      float quad = 0.0f;  // δᵀUδ
      if (full) {
        for (std::int64_t i = 0; i < n; ++i) delta[i] = draw_delta(i);
        r_transpose_times(reward, n, [&](std::int64_t m) { return delta[m]; }, u_delta);  // v = Rᵀδ
        // (Uδ)_i = Σ_{j<=i} R_ij v_j in place, from the last i down: entry i reads v_0..v_i only.
        for (std::int64_t i = n - 1; i >= 0; --i) u_delta[i] = r_times(reward, i, u_delta);
        for (std::int64_t d = 0; d < n; ++d) quad += delta[d] * u_delta[d];
      } else {
        for (std::int64_t d = 0; d < n; ++d) {
          const float dd = draw_delta(d);
          quad += dd * u_diagonal(reward, d) * dd;
        }
      }
      const float r = -quad;
      float value = r, slope = 1.0f;
      if (options.transform.kind == Transform::rbf) {
        value = expf(options.transform.rbf_gamma * r);
        slope = options.transform.rbf_gamma * value;
      }
      value_sum += value;
      reward_sum += r;
      for (std::int64_t d = 0; d < n; ++d) {
        const float e = eps(d);
        const float sigma = expf(head.log_std(sr, d));
        const float ud = full ? u_delta[d] : u_diagonal(reward, d) * (head.mean(b, d) + sigma * e - targets(b, d));
        const float dr = -2.0f * ud;  // ∂r/∂ŷ_d
        grad_mean(b, d) += slope * dr;
        log_std_target(b, d) += slope * dr * sigma * e;
      }
    }
    float H = 0.0f;
    for (std::int64_t d = 0; d < n; ++d) {
      H += head.log_std(sr, d) + kHalfLog2PiE;
      grad_mean(b, d) = -k * grad_mean(b, d) / static_cast<float>(G);
      log_std_target(b, d) = -k * (log_std_target(b, d) / static_cast<float>(G) + options.entropy_weight);
    }
    rows.row_loss[b] = -k * (value_sum / static_cast<float>(G) + options.entropy_weight * H);
    if (rows.row_reward.data != nullptr) rows.row_reward[b] = reward_sum / static_cast<float>(G);
  }
}

/// Limits of the fused surrogate kernel: one Philox quad per lane (n <= 128) and the G rewards
/// and log-probabilities of a row in shared memory.
inline constexpr std::int64_t kFusedMaxDim = 4 * kWarpSize;
inline constexpr std::int64_t kFusedMaxGenerations = 1024;
inline constexpr int kFusedWarpsPerBlock = 4;

/// Fused REINFORCE surrogate, one warp per row; lane l owns dims 4l..4l+3 (one Philox quad).
/// Pass 1 draws the G samples and keeps only their rewards and log-probabilities (shared
/// memory); the transform and the row terms follow; pass 2 regenerates the same noise and
/// accumulates the gradient in registers. No B·G·n tensor touches device memory.
D2R_KERNEL void __launch_bounds__(kFusedWarpsPerBlock * kWarpSize)
    fused_surrogate_kernel(DiagGaussian<float> head, MatrixView<const float> targets, MahalanobisReward<float> reward,
                           PgOptions<float> options, math::DrawPosition pos, ObjectiveScale<float> s,
                           ObjectiveRows<float> rows, MatrixView<float> grad_mean, MatrixView<float> log_std_target) {
  extern __shared__ float shared[];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const std::int64_t n = head.mean.cols, G = s.generations;
  // Per warp: rewards[G], log_prob[G] (then advantages, cotangents), delta[n] (full U only).
  float* r_g = shared + warp * (2 * G + n);
  float* x_g = r_g + G;
  float* delta_s = x_g + G;
  constexpr float kHalfLog2Pi = static_cast<float>(0.5 * math::kLog2Pi);
  constexpr float kHalfLog2PiE = static_cast<float>(0.5 * math::kLog2PiE);
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kFusedWarpsPerBlock;
  for (std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * kFusedWarpsPerBlock + warp; b < head.mean.rows;
       b += warps) {
    const std::int64_t sr = head.log_std.rows == 1 ? 0 : b;
    const auto row = static_cast<std::uint32_t>(pos.first_row + b);
    float mu[4], sigma[4], log_sigma[4], y[4], u[4];
    bool valid[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const std::int64_t d = 4 * lane + k;
      valid[k] = d < n;
      mu[k] = valid[k] ? head.mean(b, d) : 0.0f;
      log_sigma[k] = valid[k] ? head.log_std(sr, d) : 0.0f;
      sigma[k] = expf(log_sigma[k]);
      y[k] = valid[k] ? targets(b, d) : 0.0f;
      u[k] = !valid[k] ? 0.0f : reward.form == RewardForm::diagonal ? reward.params[d] : reward.params[0];
    }
    float entropy_part = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; ++k) entropy_part += valid[k] ? log_sigma[k] + kHalfLog2PiE : 0.0f;
    const float H = warp_sum(entropy_part);

    // Pass 1: rewards and log-probabilities of the G samples.
    for (std::int64_t g = 0; g < G; ++g) {
      const math::Normal4<float> eps =
          math::normal4<float>(pos.seed, pos.step_at(), row, static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(lane));
      float quad = 0.0f, logp = 0.0f;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (!valid[k]) continue;
        const float delta = mu[k] + sigma[k] * eps.z[k] - y[k];
        if (reward.form == RewardForm::full) {
          delta_s[4 * lane + k] = delta;
        } else {
          quad += u[k] * delta * delta;
        }
        logp += -0.5f * eps.z[k] * eps.z[k] - log_sigma[k] - kHalfLog2Pi;
      }
      if (reward.form == RewardForm::full) {
        __syncwarp();
        for (std::int64_t j = lane; j < n; j += kWarpSize) {
          float v = 0.0f;  // (Rᵀδ)_j
          for (std::int64_t i = j; i < n; ++i) v += reward.params[tril_index(i, j)] * delta_s[i];
          quad += v * v;
        }
        __syncwarp();
      }
      quad = warp_sum(quad);
      logp = warp_sum(logp);
      if (lane == 0) {
        r_g[g] = -quad;
        x_g[g] = logp;
      }
    }
    __syncwarp();

    // Transform: group statistics over the G rewards.
    float sum = 0.0f, lo = INFINITY;
    for (std::int64_t g = lane; g < G; g += kWarpSize) {
      sum += r_g[g];
      lo = fminf(lo, r_g[g]);
    }
    sum = warp_sum(sum);
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, offset));
    // standardize centres r − lo (reference::rewards::transform_row): equal rewards give advantages of 0.
    float mean = 0.0f, scale = 1.0f;
    if (options.transform.kind == Transform::standardize) {
      for (std::int64_t g = lane; g < G; g += kWarpSize) mean += r_g[g] - lo;
      mean = warp_sum(mean) / static_cast<float>(G);
      float sq = 0.0f;
      for (std::int64_t g = lane; g < G; g += kWarpSize) sq += (r_g[g] - lo - mean) * (r_g[g] - lo - mean);
      sq = warp_sum(sq);
      scale = 1.0f / (sqrtf(sq / static_cast<float>(G - 1)) + options.transform.standardize_epsilon);
    }
    // Row terms; x_g becomes the cotangent of log p.
    float loss = 0.0f;
    for (std::int64_t g = lane; g < G; g += kWarpSize) {
      const float r = r_g[g];
      float a = r;
      switch (options.transform.kind) {
        case Transform::none: break;
        case Transform::normalize: a = r - lo; break;
        case Transform::rbf: a = expf(options.transform.rbf_gamma * r); break;
        case Transform::leave_one_out: a = r - (sum - r) / static_cast<float>(G - 1); break;
        case Transform::standardize: a = (r - lo - mean) * scale; break;
      }
      float x = -s.per_dim * x_g[g];
      bool active = true;
      const float c = options.log_prob_clip;
      if (c > 0.0f && (x > c || x < -c)) {
        active = false;
        x = x > c ? c : -c;
      }
      loss += x * a;
      x_g[g] = active ? -s.per_dim * a / (s.normaliser * static_cast<float>(G)) : 0.0f;
    }
    loss = warp_sum(loss);
    if (lane == 0) {
      rows.row_loss[b] = (loss / static_cast<float>(G) - options.entropy_weight * s.per_dim * H) / s.normaliser;
      if (rows.row_reward.data != nullptr) rows.row_reward[b] = sum / static_cast<float>(G);
    }
    __syncwarp();

    // Pass 2: the same noise again; ∂log p/∂μ = ε/σ, ∂log p/∂s = ε² − 1.
    float g_mu[4] = {0.0f, 0.0f, 0.0f, 0.0f}, g_s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (std::int64_t g = 0; g < G; ++g) {
      const float cg = x_g[g];
      const math::Normal4<float> eps =
          math::normal4<float>(pos.seed, pos.step_at(), row, static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(lane));
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        g_mu[k] += cg * eps.z[k] / sigma[k];
        g_s[k] += cg * (eps.z[k] * eps.z[k] - 1.0f);
      }
    }
    const float d_entropy = -options.entropy_weight * s.per_dim / s.normaliser;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (!valid[k]) continue;
      grad_mean(b, 4 * lane + k) = g_mu[k];
      log_std_target(b, 4 * lane + k) = g_s[k] + d_entropy;
    }
    __syncwarp();
  }
}

}  // namespace d2r::kernels::diag_gaussian
