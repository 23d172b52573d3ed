#pragma once
// Device code of the Cholesky-Gaussian head's second-order pieces (DESIGN.md §6): the
// log-probability JVP and the backward tangent. Launchers: launch.cu beside it. (The exact
// objective's tangent and mixed product share the objective kernels' staging: objectives.cuh.)
#include <cstdint>

#include "d2r/types/heads.hpp"
#include "kernels/common.cuh"
#include "kernels/heads/cholesky_gaussian/distribution.cuh"
#include "common/math/numerics.hpp"

// Head-level second-order primitives (d2r/second_order.hpp; reference and formulas:
// host/reference/heads/cholesky_gaussian.hpp). Same layout as the kernels above: one warp per
// row, one generation per lane, [dim][kStride] work arrays. The tangent factor L̇ (diagonal
// sigmoid(raw_ii)·raẇ_ii) and the mean tangent μ̇ are staged beside L and μ.
namespace d2r::kernels::cholesky_gaussian {

/// Dynamic shared memory (bytes) of log_prob_jvp_kernel: L, L̇, μ, μ̇, two work arrays.
__host__ __device__ constexpr std::size_t log_prob_jvp_shared_bytes(int n) {
  return static_cast<std::size_t>(2 * packed_size(n) + 2 * n + 2 * n * kStride) * sizeof(float);
}
/// Dynamic shared memory (bytes) of backward_tangent_kernel: L, L̇, μ, μ̇, three work arrays,
/// the mean and diagonal accumulators, the batch's cotangents. (The tril accumulator lives in
/// the block's own row of the output, so that n = 64 fits the default 48 KB.)
__host__ __device__ constexpr std::size_t backward_tangent_shared_bytes(int n) {
  return static_cast<std::size_t>(2 * packed_size(n) + 4 * n + 3 * n * kStride + kThreads) * sizeof(float);
}
static_assert(log_prob_jvp_shared_bytes(static_cast<int>(kMaxCholeskyDim)) <= 48 * 1024,
              "the Cholesky second-order kernels must fit the default 48 KB of dynamic shared memory");
static_assert(backward_tangent_shared_bytes(static_cast<int>(kMaxCholeskyDim)) <= 48 * 1024,
              "the Cholesky second-order kernels must fit the default 48 KB of dynamic shared memory");

/// Stages row b's tangent factor L̇ (diagonal scaled by sigmoid(raw_ii) of the head) and mean
/// tangent μ̇ into shared memory. Ends synchronised.
__device__ __forceinline__ void stage_tangent(const CholeskyGaussian<float>& head,
                                              const CholeskyGaussian<float>& tangent, std::int64_t b, int n,
                                              float* dfactor, float* dmean) {
  const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
  const int packed = packed_size(n);
  for (int k = threadIdx.x; k < packed; k += blockDim.x) dfactor[k] = tangent.tril(t_row, k);
  for (int i = threadIdx.x; i < n; i += blockDim.x) dmean[i] = tangent.mean(b, i);
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int k = diagonal_index(i);
    dfactor[k] *= math::sigmoid(head.tril(t_row, k));
  }
  __syncthreads();
}

/// Thread t's w = sign · (μ̇ + L̇ z), z in column t of `z`, w into column t of `w`.
__device__ __forceinline__ void tangent_residual(const float* dfactor, const float* dmean, int n, const float* z,
                                                 float* w, int t, float sign) {
  for (int i = 0; i < n; ++i) {
    const float* row = dfactor + packed_size(i);
    float acc = dmean[i];
    for (int j = 0; j <= i; ++j) acc += row[j] * z[j * kStride + t];
    w[i * kStride + t] = sign * acc;
  }
}

/// Thread t's back substitution x = L⁻ᵀ x, in place in column t of `x`.
__device__ __forceinline__ void back_substitute(const float* factor, int n, float* x, int t) {
  for (int i = n - 1; i >= 0; --i) {
    float acc = x[i * kStride + t];
    for (int k = i + 1; k < n; ++k) acc -= factor[packed_size(k) + i] * x[k * kStride + t];
    x[i * kStride + t] = acc / factor[diagonal_index(i)];
  }
}

/// out(b, g) = zᵀ L⁻¹ (μ̇ + L̇ z) − Σ_i L̇_ii / L_ii   (= vᵀ (μ̇ + L̇ z) − tr(L⁻¹ L̇)).
D2R_KERNEL void log_prob_jvp_kernel(CholeskyGaussian<float> head, MatrixView<const float> samples,
                                    CholeskyGaussian<float> tangent, MatrixView<float> out) {
  extern __shared__ float smem[];
  const int n = static_cast<int>(head.mean.cols);
  const int packed = packed_size(n);
  const std::int64_t generations = out.cols;
  float* factor = smem;
  float* dfactor = factor + packed;
  float* mean = dfactor + packed;
  float* dmean = mean + n;
  float* z = dmean + n;        // [dim][kStride]: residual, then z = L⁻¹ r
  float* w = z + n * kStride;  // [dim][kStride]: μ̇ + L̇ z, then L⁻¹ (μ̇ + L̇ z)
  const int t = threadIdx.x;
  for (std::int64_t b = blockIdx.x; b < head.mean.rows; b += gridDim.x) {
    stage_row(head, b, n, factor, mean);
    stage_tangent(head, tangent, b, n, dfactor, dmean);
    float trace = 0.0f;
    for (int i = t; i < n; i += kThreads) trace += dfactor[diagonal_index(i)] / factor[diagonal_index(i)];
    trace = warp_sum(trace);
    for (std::int64_t g0 = 0; g0 < generations; g0 += kThreads) {
      const int count = stage_residuals(samples, b, g0, generations, n, mean, z);
      __syncthreads();
      if (t < count) {
        forward_substitute(factor, n, z, t);
        tangent_residual(dfactor, dmean, n, z, w, t, 1.0f);
        forward_substitute(factor, n, w, t);
        float dot = 0.0f;
        for (int i = 0; i < n; ++i) dot += z[i * kStride + t] * w[i * kStride + t];
        out(b, g0 + t) = dot - trace;
      }
      __syncthreads();
    }
  }
}

/// Per row b (c_g = d_log_prob(b, g), e = d_entropy[b]; z, v = L⁻ᵀ z, ż, v̇ as in the reference):
///   grad_mean(b, i)        = Σ_g c_g v̇_i
///   tril_target(b, (i, j)) = Σ_g c_g (v̇_i z_j + v_i ż_j)                                  (j < i)
///   tril_target(b, (i, i)) = [Σ_g c_g (v̇_i z_i + v_i ż_i) + (Σ c − e) L̇_ii / L_ii²] σ(raw_ii)
///                          + [Σ_g c_g v_i z_i + (e − Σ c) / L_ii] σ'(raw_ii) raẇ_ii
/// `tril_target` is grad_tangent.tril (one factor per row) or a B x n(n+1)/2 workspace that is
/// then summed over rows (shared factor); its row b is owned by block b and serves as the tril
/// accumulator. Each entry (i, j) is owned by thread j % kThreads and summed over generations in
/// increasing order (two fixed-order terms per batch of generations). No atomics.
D2R_KERNEL void backward_tangent_kernel(CholeskyGaussian<float> head, MatrixView<const float> samples,
                                        MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                                        CholeskyGaussian<float> tangent, MatrixView<float> grad_mean,
                                        MatrixView<float> tril_target) {
  extern __shared__ float smem[];
  const int n = static_cast<int>(head.mean.cols);
  const int packed = packed_size(n);
  const std::int64_t generations = d_log_prob.data == nullptr ? 0 : d_log_prob.cols;
  float* factor = smem;
  float* dfactor = factor + packed;
  float* mean = dfactor + packed;
  float* dmean = mean + n;
  float* z = dmean + n;                // [dim][kStride]: residual, then z = L⁻¹ r
  float* a = z + n * kStride;          // [dim][kStride]: c v = L⁻ᵀ (c z)
  float* d = a + n * kStride;          // [dim][kStride]: ż, then c (ż − L̇ᵀ v), then c v̇
  float* acc_mean = d + n * kStride;   // n: Σ c v̇
  float* acc_diag = acc_mean + n;      // n: Σ c v_i z_i
  float* coef = acc_diag + n;          // kThreads
  const int t = threadIdx.x;
  for (std::int64_t b = blockIdx.x; b < head.mean.rows; b += gridDim.x) {
    const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
    // Entry (i, j) of the row is zeroed by its owner, thread j % kThreads.
    for (int i = 0; i < n; ++i) {
      for (int j = t; j <= i; j += blockDim.x) tril_target(b, packed_size(i) + j) = 0.0f;
    }
    for (int i = t; i < n; i += blockDim.x) {
      acc_mean[i] = 0.0f;
      acc_diag[i] = 0.0f;
    }
    stage_row(head, b, n, factor, mean);
    stage_tangent(head, tangent, b, n, dfactor, dmean);
    float c_part = 0.0f;  // this lane's share of Σ_g c_g
    for (std::int64_t g0 = 0; g0 < generations; g0 += kThreads) {
      const int count = stage_residuals(samples, b, g0, generations, n, mean, z);
      coef[t] = t < count ? d_log_prob(b, g0 + t) : 0.0f;
      __syncthreads();
      if (t < count) {
        const float c = coef[t];
        c_part += c;
        forward_substitute(factor, n, z, t);
        for (int i = 0; i < n; ++i) a[i * kStride + t] = c * z[i * kStride + t];
        back_substitute(factor, n, a, t);
        // ż = −L⁻¹ (μ̇ + L̇ z)
        tangent_residual(dfactor, dmean, n, z, d, t, -1.0f);
        forward_substitute(factor, n, d, t);
      }
      __syncthreads();
      // Term 1: Σ_g (c v)_i ż_j, and the diagonal Σ_g (c v)_i z_i.
      for (int i = 0; i < n; ++i) {
        const float* a_row = a + i * kStride;
        for (int j = t; j <= i; j += blockDim.x) {
          const float* d_row = d + j * kStride;
          float s = 0.0f;
          for (int gg = 0; gg < count; ++gg) s += a_row[gg] * d_row[gg];
          tril_target(b, packed_size(i) + j) += s;
          if (j == i) {
            const float* z_row = z + i * kStride;
            float s_diag = 0.0f;
            for (int gg = 0; gg < count; ++gg) s_diag += a_row[gg] * z_row[gg];
            acc_diag[i] += s_diag;
          }
        }
      }
      __syncthreads();
      if (t < count) {
        const float c = coef[t];
        // c (ż − L̇ᵀ v) in place (entry i reads ż_i and (c v)_k for k >= i only), then c v̇ = L⁻ᵀ (·).
        for (int i = 0; i < n; ++i) {
          float acc = c * d[i * kStride + t];
          for (int k = i; k < n; ++k) acc -= dfactor[packed_size(k) + i] * a[k * kStride + t];
          d[i * kStride + t] = acc;
        }
        back_substitute(factor, n, d, t);
      }
      __syncthreads();
      // Term 2: Σ_g (c v̇)_i z_j, and the mean Σ_g (c v̇)_i.
      for (int i = 0; i < n; ++i) {
        const float* d_row = d + i * kStride;
        for (int j = t; j <= i; j += blockDim.x) {
          const float* z_row = z + j * kStride;
          float s = 0.0f;
          for (int gg = 0; gg < count; ++gg) s += d_row[gg] * z_row[gg];
          tril_target(b, packed_size(i) + j) += s;
        }
      }
      for (int i = t; i < n; i += blockDim.x) {
        float s = 0.0f;
        for (int gg = 0; gg < count; ++gg) s += d[i * kStride + gg];
        acc_mean[i] += s;
      }
      __syncthreads();
    }
    const float c_sum = warp_sum(c_part);
    const float e = d_entropy.data == nullptr ? 0.0f : d_entropy[b];
    // Diagonal entry (i, i) is finished by its owner, thread i % kThreads.
    for (int i = t; i < n; i += blockDim.x) {
      const int k = diagonal_index(i);
      const float l = factor[k], raw = head.tril(t_row, k);
      const float s = math::sigmoid(raw), ds = s * math::sigmoid(-raw);
      const float gdot_l = tril_target(b, k) + (c_sum - e) * dfactor[k] / (l * l);
      const float g_l = acc_diag[i] + (e - c_sum) / l;
      tril_target(b, k) = gdot_l * s + g_l * ds * tangent.tril(t_row, k);
      grad_mean(b, i) = acc_mean[i];
    }
    __syncthreads();
  }
}

}  // namespace d2r::kernels::cholesky_gaussian
