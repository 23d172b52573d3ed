#pragma once
// Device code of the Cholesky-Gaussian head (DESIGN.md §3). Launchers: cholesky_gaussian.cu.
//
// Layout. One block of one warp per row b (grid-stride over rows). The row's factor L (packed
// lower triangle, diagonal = softplus(raw) + jitter) and its mean are staged in shared memory.
// Generations are processed in batches of kThreads, one generation per thread; each thread's
// per-generation vectors (ε, ŷ, z, v) live in shared memory laid out [dim][generation] with a
// padded stride kStride, so that both the per-thread walk over dims and the block's coalesced
// walk over a sample row's columns are free of bank conflicts.
//
// Determinism. Every sum runs in an order fixed by the shapes only: per-thread loops over dims,
// per-entry loops over generations in increasing order, warp butterflies. No atomics.

#include "d2r/types/heads.hpp"
#include "kernels/common.cuh"
#include "common/math/numerics.hpp"

namespace d2r::kernels::cholesky_gaussian {

/// Threads per block of the per-row kernels: one warp, one generation per lane.
inline constexpr int kThreads = kWarpSize;
/// Padded stride (in floats) of the [dim][generation] work arrays.
inline constexpr int kStride = kThreads + 1;

__host__ __device__ constexpr int packed_size(int n) { return n * (n + 1) / 2; }
/// Packed column of the diagonal entry (i, i).
__host__ __device__ constexpr int diagonal_index(int i) { return i * (i + 3) / 2; }

/// Dynamic shared memory (bytes) of sample_kernel and log_prob_kernel: factor, mean, one work array.
__host__ __device__ constexpr std::size_t forward_shared_bytes(int n) {
  return static_cast<std::size_t>(packed_size(n) + n + n * kStride) * sizeof(float);
}
/// Dynamic shared memory (bytes) of backward_kernel: factor, mean, z, v, tril and mean
/// accumulators, the batch's cotangents.
__host__ __device__ constexpr std::size_t backward_shared_bytes(int n) {
  return static_cast<std::size_t>(2 * packed_size(n) + 2 * n + 2 * n * kStride + kThreads) * sizeof(float);
}
static_assert(backward_shared_bytes(static_cast<int>(kMaxCholeskyDim)) <= 48 * 1024,
              "the Cholesky kernels must fit the default 48 KB of dynamic shared memory");
static_assert(forward_shared_bytes(static_cast<int>(kMaxCholeskyDim)) <= 48 * 1024,
              "the Cholesky kernels must fit the default 48 KB of dynamic shared memory");

/// Stages row b's factor L (diagonal transformed) and mean into shared memory. Ends synchronised.
__device__ __forceinline__ void stage_row(const CholeskyGaussian<float>& head, std::int64_t b, int n, float* factor,
                                          float* mean) {
  const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
  const int packed = packed_size(n);
  for (int k = threadIdx.x; k < packed; k += blockDim.x) factor[k] = head.tril(t_row, k);
  for (int i = threadIdx.x; i < n; i += blockDim.x) mean[i] = head.mean(b, i);
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int k = diagonal_index(i);
    factor[k] = math::softplus(factor[k]) + head.jitter;
  }
  __syncthreads();
}

/// Thread t's forward substitution z = L⁻¹ r, in place in column t of `work` ([dim][kStride]).
/// Returns ‖z‖².
__device__ __forceinline__ float forward_substitute(const float* factor, int n, float* work, int t) {
  float squares = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float* row = factor + packed_size(i);
    float acc = work[i * kStride + t];
    for (int j = 0; j < i; ++j) acc -= row[j] * work[j * kStride + t];
    const float z = acc / row[i];
    work[i * kStride + t] = z;
    squares += z * z;
  }
  return squares;
}

/// The residuals ŷ − μ of draws g0 .. g0 + count − 1 of row b, count = min(kThreads, generations − g0),
/// read coalesced into [dim][generation] of `work` (stride kStride). Returns count; the caller
/// synchronises before reading them.
__device__ __forceinline__ int stage_residuals(MatrixView<const float> samples, std::int64_t b, std::int64_t g0,
                                               std::int64_t generations, int n, const float* mean, float* work) {
  const int count = static_cast<int>(generations - g0 < kThreads ? generations - g0 : kThreads);
  for (int idx = threadIdx.x; idx < count * n; idx += blockDim.x) {
    const int gg = idx / n, i = idx % n;
    work[i * kStride + gg] = samples(b * generations + g0 + gg, i) - mean[i];
  }
  return count;
}

/// samples(b*G + g, i) = μ_i + Σ_{j<=i} L_ij ε_j (ε from Philox, keyed as in the reference).
D2R_KERNEL void sample_kernel(CholeskyGaussian<float> head, std::int64_t generations, math::DrawPosition pos,
                              MatrixView<float> samples) {
  extern __shared__ float smem[];
  const int n = static_cast<int>(head.mean.cols);
  float* factor = smem;
  float* mean = factor + packed_size(n);
  float* work = mean + n;
  const int t = threadIdx.x;
  const int quads = (n + 3) / 4;
  for (std::int64_t b = blockIdx.x; b < head.mean.rows; b += gridDim.x) {
    stage_row(head, b, n, factor, mean);
    for (std::int64_t g0 = 0; g0 < generations; g0 += kThreads) {
      const int count = static_cast<int>(generations - g0 < kThreads ? generations - g0 : kThreads);
      if (t < count) {
        const auto g = static_cast<std::uint32_t>(g0 + t);
        const auto row = static_cast<std::uint32_t>(pos.first_row + b);
        for (int q = 0; q < quads; ++q) {
          const math::Normal4<float> eps = math::normal4<float>(pos.seed, pos.step_at(), row, g, static_cast<std::uint32_t>(q));
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            const int d = 4 * q + k;
            if (d < n) work[d * kStride + t] = eps.z[k];
          }
        }
        // ŷ = μ + L ε in place, from the last dim down: ŷ_i needs ε_j for j <= i only.
        for (int i = n - 1; i >= 0; --i) {
          const float* l_row = factor + packed_size(i);
          float acc = mean[i];
          for (int j = 0; j <= i; ++j) acc += l_row[j] * work[j * kStride + t];
          work[i * kStride + t] = acc;
        }
      }
      __syncthreads();
      // Coalesced write-out: consecutive threads write consecutive columns of the sample rows.
      for (int idx = t; idx < count * n; idx += blockDim.x) {
        const int gg = idx / n, i = idx % n;
        samples(b * generations + g0 + gg, i) = work[i * kStride + gg];
      }
      __syncthreads();
    }
  }
}

/// out(b, g) = −½‖L⁻¹(ŷ − μ)‖² − Σ_d log L_dd − (n/2) log 2π.
D2R_KERNEL void log_prob_kernel(CholeskyGaussian<float> head, MatrixView<const float> samples, MatrixView<float> out) {
  extern __shared__ float smem[];
  const int n = static_cast<int>(head.mean.cols);
  const std::int64_t generations = out.cols;
  float* factor = smem;
  float* mean = factor + packed_size(n);
  float* work = mean + n;
  const int t = threadIdx.x;
  constexpr float kHalfLog2Pi = static_cast<float>(0.5 * math::kLog2Pi);
  for (std::int64_t b = blockIdx.x; b < head.mean.rows; b += gridDim.x) {
    stage_row(head, b, n, factor, mean);
    float log_det = 0.0f;
    for (int i = t; i < n; i += kThreads) log_det += logf(factor[diagonal_index(i)]);
    log_det = warp_sum(log_det);
    const float constant = -log_det - kHalfLog2Pi * static_cast<float>(n);
    for (std::int64_t g0 = 0; g0 < generations; g0 += kThreads) {
      const int count = stage_residuals(samples, b, g0, generations, n, mean, work);
      __syncthreads();
      if (t < count) {
        const float squares = forward_substitute(factor, n, work, t);
        out(b, g0 + t) = -0.5f * squares + constant;
      }
      __syncthreads();
    }
  }
}

/// One warp per row b: H = Σ_d log L_dd + (n/2) log 2πe.
D2R_KERNEL void entropy_kernel(CholeskyGaussian<float> head, VectorView<float> out) {
  const int n = static_cast<int>(head.mean.cols);
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / kWarpSize);
  constexpr float kHalfLog2PiE = static_cast<float>(0.5 * math::kLog2PiE);
  for (std::int64_t b = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / kWarpSize;
       b < head.mean.rows; b += warps) {
    const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
    float sum = 0.0f;
    for (int d = lane; d < n; d += kWarpSize) sum += logf(math::softplus(head.tril(t_row, diagonal_index(d))) + head.jitter);
    sum = warp_sum(sum);
    if (lane == 0) out[b] = sum + kHalfLog2PiE * static_cast<float>(n);
  }
}

/// Per row b (with c_g = d_log_prob(b, g), z = L⁻¹(ŷ − μ), v = L⁻ᵀ z, e = d_entropy[b]):
///   grad_mean(b, i)        = Σ_g c_g v_i
///   tril_target(b, (i, j)) = Σ_g c_g v_i z_j                                   (j < i)
///   tril_target(b, (i, i)) = (Σ_g c_g v_i z_i + (e − Σ_g c_g) / L_ii) · sigmoid(raw_ii)
/// `tril_target` is grad.tril (one factor per row) or a B x n(n+1)/2 workspace that is then
/// summed over rows (shared factor). Each accumulator entry is owned by one thread and summed
/// over generations in increasing order.
D2R_KERNEL void backward_kernel(CholeskyGaussian<float> head, MatrixView<const float> samples,
                                MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                                MatrixView<float> grad_mean, MatrixView<float> tril_target) {
  extern __shared__ float smem[];
  const int n = static_cast<int>(head.mean.cols);
  const int packed = packed_size(n);
  const std::int64_t generations = d_log_prob.data == nullptr ? 0 : d_log_prob.cols;
  float* factor = smem;
  float* mean = factor + packed;
  float* z = mean + n;                 // [dim][kStride]: residual, then z = L⁻¹ r
  float* v = z + n * kStride;          // [dim][kStride]: c · L⁻ᵀ z
  float* acc_tril = v + n * kStride;   // packed
  float* acc_mean = acc_tril + packed;  // n
  float* coef = acc_mean + n;          // kThreads
  const int t = threadIdx.x;
  for (std::int64_t b = blockIdx.x; b < head.mean.rows; b += gridDim.x) {
    const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
    for (int k = t; k < packed; k += blockDim.x) acc_tril[k] = 0.0f;
    for (int i = t; i < n; i += blockDim.x) acc_mean[i] = 0.0f;
    stage_row(head, b, n, factor, mean);
    float c_part = 0.0f;  // this lane's share of Σ_g c_g (generations g ≡ t mod kThreads)
    for (std::int64_t g0 = 0; g0 < generations; g0 += kThreads) {
      const int count = stage_residuals(samples, b, g0, generations, n, mean, z);
      coef[t] = t < count ? d_log_prob(b, g0 + t) : 0.0f;
      __syncthreads();
      if (t < count) {
        const float c = coef[t];
        c_part += c;
        forward_substitute(factor, n, z, t);
        // c·v = L⁻ᵀ (c·z) by back substitution (linear, so the cotangent is folded in here).
        for (int i = n - 1; i >= 0; --i) {
          float acc = c * z[i * kStride + t];
          for (int k = i + 1; k < n; ++k) acc -= factor[packed_size(k) + i] * v[k * kStride + t];
          v[i * kStride + t] = acc / factor[diagonal_index(i)];
        }
      }
      __syncthreads();
      // Entry (i, j) is owned by thread j % kThreads; mean entry i by thread i % kThreads.
      for (int i = 0; i < n; ++i) {
        const float* v_row = v + i * kStride;
        for (int j = t; j <= i; j += blockDim.x) {
          const float* z_row = z + j * kStride;
          float s = 0.0f;
          for (int gg = 0; gg < count; ++gg) s += v_row[gg] * z_row[gg];
          acc_tril[packed_size(i) + j] += s;
        }
      }
      for (int i = t; i < n; i += blockDim.x) {
        float s = 0.0f;
        for (int gg = 0; gg < count; ++gg) s += v[i * kStride + gg];
        acc_mean[i] += s;
      }
      __syncthreads();
    }
    const float c_sum = warp_sum(c_part);
    const float e = d_entropy.data == nullptr ? 0.0f : d_entropy[b];
    for (int i = t; i < n; i += blockDim.x) {
      const int k = diagonal_index(i);
      acc_tril[k] = (acc_tril[k] + (e - c_sum) / factor[k]) * math::sigmoid(head.tril(t_row, k));
      grad_mean(b, i) = acc_mean[i];
    }
    __syncthreads();
    for (int k = t; k < packed; k += blockDim.x) tril_target(b, k) = acc_tril[k];
    __syncthreads();
  }
}

/// First (row, dim) whose L_ii = softplus(raw_ii) + jitter is not > 0, as r * n + i (atomicMin
/// on integers: the result does not depend on the order of the atomics).
D2R_KERNEL void nonpositive_diagonal_kernel(MatrixView<const float> tril, int n, float jitter,
                                            unsigned long long* first) {
  const std::int64_t total = tril.rows * n;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / n;
    const int d = static_cast<int>(i % n);
    const float diagonal = math::softplus(tril(r, diagonal_index(d))) + jitter;
    if (!(diagonal > 0.0f)) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

}  // namespace d2r::kernels::cholesky_gaussian
