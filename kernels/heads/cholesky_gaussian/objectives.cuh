#pragma once
// Device code of the inner objectives of the Cholesky-Gaussian head (DESIGN.md §5): the
// exact-expectation objective with its head Hessian (exact_tangent_kernel) and mixed product
// (exact_mixed_kernel, DESIGN.md §6), the pathwise objective and the fused REINFORCE surrogate.
// Launchers: launch.cu beside it. The math is that of reference::cholesky_gaussian::exact_objective and
// reference::cholesky_gaussian::pg_pathwise (host/reference/heads/cholesky_gaussian.hpp), with k = pd / N, and
// for the surrogate that of pg_surrogate's composition (sample, log_prob, reward,
// transform_rewards, entropy, reference::objectives::pg_row_terms, backward).
//
// Layout. One block of one warp per row b (grid-stride over rows), as the head's own kernels
// (cholesky_gaussian.cuh): the row's factor L (packed, diagonal = softplus(raw) + jitter) and
// μ − y are staged in shared memory.
//   exact:    U (dense n x n, built once per block from the reward's parameters); entry (i, j)
//             of the tril gradient, (UL)_ij = Σ_{m>=j} U_im L_mj, is computed by thread j % 32.
//             Its tangent (exact_tangent_kernel) stages L̇ and μ̇ beside L and reads U the same way.
//   exact mixed: per row, L, L̇, δ and μ̇ staged; for a full U the symmetric S = M + Mᵀ,
//             M = δμ̇ᵀ + LL̇ᵀ, is built in shared memory and R is read from the reward's
//             parameters; per-row partial φ-gradients go to a B x P workspace (then column_sum).
//   pathwise: generations are processed in batches of 32, one generation per thread; each
//             thread's ε and a = T'(r)·∂r/∂ŷ = −2 T'(r) Uδ live in shared memory laid out
//             [dim][generation] (padded stride), and the batch's contribution to entry (i, j),
//             Σ_g a_i ε_j, is summed over the batch by the entry's owning thread (j % 32) and added
//             to a shared accumulator, batch after batch. A full U = R Rᵀ is applied as R (Rᵀδ)
//             from the packed R, and ε is drawn a second time from Philox instead of being kept
//             next to δ and Rᵀδ: two work arrays, so that n = 64 fits in 48 KB of shared memory.
//             No B·G·n tensor touches device memory.
//   surrogate: the pathwise layout plus the row's G rewards and G log-probabilities (then
//             cotangents) in shared memory; a second pass regenerates ε from Philox (DESIGN.md §8
//             "Fuse the head"). See surrogate_kernel.
//
// Determinism. Every sum runs in an order fixed by the shapes only (per-thread loops over dims
// and generations, per-entry loops over a batch's generations in increasing order, warp
// butterflies). No atomics.

#include "d2r/types/heads.hpp"
#include "d2r/types/objectives.hpp"
#include "kernels/common.cuh"
#include "kernels/checks/launch.hpp"
#include "kernels/heads/cholesky_gaussian/launch.hpp"
#include "kernels/objectives/launch.hpp"
#include "kernels/rewards/launch.hpp"
#include "common/math/numerics.hpp"

namespace d2r::kernels::cholesky_objectives {

/// Packed (row-major lower triangle) layout, as in cholesky_gaussian.cuh: entry (i, j), j <= i,
/// at column i(i+1)/2 + j.
__host__ __device__ constexpr int packed_size(int n) { return n * (n + 1) / 2; }
__host__ __device__ constexpr int diagonal_index(int i) { return i * (i + 3) / 2; }

/// Threads per block: one warp (warp_sum is the block's reduction).
inline constexpr int kThreads = kWarpSize;
/// Padded stride (in floats) of the [dim][generation] work arrays.
inline constexpr int kStride = kThreads + 1;

/// Dynamic shared memory (bytes) of exact_kernel: U (n x n), L (packed), μ − y.
__host__ __device__ constexpr std::size_t exact_shared_bytes(int n) {
  return static_cast<std::size_t>(n * n + packed_size(n) + n) * sizeof(float);
}
/// Dynamic shared memory (bytes) of pathwise_kernel: L, R (full U only, packed; else the n
/// diagonal entries of U), the tril accumulator (packed), μ − y, the mean accumulator and two
/// [dim][kStride] work arrays.
__host__ __device__ constexpr std::size_t pathwise_shared_bytes(int n) {
  return static_cast<std::size_t>(3 * packed_size(n) + 2 * n + 2 * n * kStride) * sizeof(float);
}
static_assert(exact_shared_bytes(static_cast<int>(kMaxCholeskyDim)) <= 48 * 1024,
              "the Cholesky objective kernels must fit the default 48 KB of dynamic shared memory");
static_assert(pathwise_shared_bytes(static_cast<int>(kMaxCholeskyDim)) <= 48 * 1024,
              "the Cholesky objective kernels must fit the default 48 KB of dynamic shared memory");

/// Stages row b's factor L (diagonal transformed) and μ − y. Ends synchronised.
__device__ __forceinline__ void stage_row(const CholeskyGaussian<float>& head, const MatrixView<const float>& targets,
                                          std::int64_t b, int n, float* factor, float* offset) {
  const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
  const int packed = packed_size(n);
  for (int k = threadIdx.x; k < packed; k += blockDim.x) factor[k] = head.tril(t_row, k);
  for (int i = threadIdx.x; i < n; i += blockDim.x) offset[i] = head.mean(b, i) - targets(b, i);
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int k = diagonal_index(i);
    factor[k] = math::softplus(factor[k]) + head.jitter;
  }
  __syncthreads();
}

/// Σ_d log L_dd over this thread's dims (sum with warp_sum).
__device__ __forceinline__ float log_det_part(const float* factor, int n) {
  float s = 0.0f;
  for (int d = threadIdx.x; d < n; d += blockDim.x) s += logf(factor[diagonal_index(d)]);
  return s;
}

/// Dense U (n x n, row-major) of the reward into `u`; a full U = R Rᵀ is formed from R staged in
/// `scratch` (packed_size(n) floats, overwritten). All threads; ends synchronised.
__device__ __forceinline__ void stage_u(const MahalanobisReward<float>& reward, int n, float* u, float* scratch) {
  const int t = threadIdx.x;
  if (reward.form == RewardForm::full) {
    for (int p = t; p < packed_size(n); p += blockDim.x) scratch[p] = reward.params[p];
    __syncthreads();
    for (int idx = t; idx < n * n; idx += blockDim.x) {
      const int i = idx / n, j = idx % n, lo = i < j ? i : j;
      float sum = 0.0f;  // Σ_{m<=min(i,j)} R_im R_jm
      for (int m = 0; m <= lo; ++m) sum += scratch[packed_size(i) + m] * scratch[packed_size(j) + m];
      u[idx] = sum;
    }
  } else {
    for (int idx = t; idx < n * n; idx += blockDim.x) {
      const int i = idx / n, j = idx % n;
      u[idx] = i != j ? 0.0f : reward.form == RewardForm::scalar ? reward.params[0] : reward.params[i];
    }
  }
  __syncthreads();
}

/// Stages the tangent of row b: L̇ (packed; L̇_ii = sigmoid(raw_ii) raẇ_ii, L̇_ij = raẇ_ij) and μ̇.
/// Ends synchronised.
__device__ __forceinline__ void stage_tangent(const CholeskyGaussian<float>& head, const CholeskyGaussian<float>& tangent,
                                              std::int64_t b, int n, float* dfactor, float* mean_dot) {
  const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
  for (int k = threadIdx.x; k < packed_size(n); k += blockDim.x) dfactor[k] = tangent.tril(t_row, k);
  for (int i = threadIdx.x; i < n; i += blockDim.x) mean_dot[i] = tangent.mean(b, i);
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int k = diagonal_index(i);
    dfactor[k] *= math::sigmoid(head.tril(t_row, k));
  }
  __syncthreads();
}

/// Per row b (δ = μ − y):
///   E[r]                 = −δᵀUδ − tr(U L Lᵀ)
///   grad_mean(b, i)      = 2k (Uδ)_i
///   tril_target(b, (i,j)) = −k (−2 (UL)_ij + [i = j] λ / L_ii), times sigmoid(raw_ii) on the diagonal
///   row_loss_b           = −k (E[r] + λ H),   row_reward_b = E[r]
/// `tril_target` is grad.tril (one factor per row) or a B x n(n+1)/2 workspace that is then
/// summed over rows (shared factor).
D2R_KERNEL void __launch_bounds__(kThreads)
    exact_kernel(CholeskyGaussian<float> head, MatrixView<const float> targets, MahalanobisReward<float> reward,
                 float lambda, ObjectiveScale<float> s, ObjectiveRows<float> rows, MatrixView<float> grad_mean,
                 MatrixView<float> tril_target) {
  extern __shared__ float smem[];
  const int n = static_cast<int>(head.mean.cols);
  const int packed = packed_size(n);
  float* u = smem;                 // n x n, row-major
  float* factor = u + n * n;       // packed
  float* offset = factor + packed; // μ − y
  const int t = threadIdx.x;
  const float k = s.per_dim / s.normaliser;
  constexpr float kHalfLog2PiE = static_cast<float>(0.5 * math::kLog2PiE);

  // U once per block (R staged in `factor` first for the full form).
  stage_u(reward, n, u, factor);

  for (std::int64_t b = blockIdx.x; b < head.mean.rows; b += gridDim.x) {
    const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
    stage_row(head, targets, b, n, factor, offset);
    float quad = 0.0f;
    for (int i = t; i < n; i += blockDim.x) {
      const float* u_row = u + i * n;
      float acc = 0.0f;
      for (int m = 0; m < n; ++m) acc += u_row[m] * offset[m];
      quad += offset[i] * acc;
      grad_mean(b, i) = 2.0f * k * acc;
    }
    quad = warp_sum(quad);
    const float H = warp_sum(log_det_part(factor, n)) + kHalfLog2PiE * static_cast<float>(n);
    float trace = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float* u_row = u + i * n;
      for (int j = t; j <= i; j += blockDim.x) {
        float ul = 0.0f;  // (U L)_ij
        for (int m = j; m < n; ++m) ul += u_row[m] * factor[packed_size(m) + j];
        const int p = packed_size(i) + j;
        trace += factor[p] * ul;
        float g = -k * (-2.0f * ul + (i == j ? lambda / factor[p] : 0.0f));
        if (i == j) g *= math::sigmoid(head.tril(t_row, p));
        tril_target(b, p) = g;
      }
    }
    trace = warp_sum(trace);
    if (t == 0) {
      const float expected = -quad - trace;
      rows.row_loss[b] = -k * (expected + lambda * H);
      if (rows.row_reward.data != nullptr) rows.row_reward[b] = expected;
    }
    __syncthreads();  // factor and offset are restaged for the next row
  }
}

/// Dynamic shared memory (bytes) of exact_tangent_kernel: U (n x n), L and L̇ (packed), μ̇.
__host__ __device__ constexpr std::size_t exact_tangent_shared_bytes(int n) {
  return static_cast<std::size_t>(n * n + 2 * packed_size(n) + n) * sizeof(float);
}
static_assert(exact_tangent_shared_bytes(static_cast<int>(kMaxCholeskyDim)) <= 48 * 1024,
              "the Cholesky objective kernels must fit the default 48 KB of dynamic shared memory");

/// Tangent of exact_kernel's head gradient along (μ̇, raẇ) (reference::cholesky_gaussian::exact_backward_tangent),
/// with L̇ the factor's tangent and g_ii = 2k (UL)_ii − kλ / L_ii:
///   grad_mean(b, i)        = 2k (U μ̇)_i
///   tril_target(b, (i, j)) = 2k (U L̇)_ij                                          (j < i)
///   tril_target(b, (i, i)) = (2k (U L̇)_ii + kλ L̇_ii / L_ii²) σ(raw_ii) + g_ii σ'(raw_ii) raẇ_ii
/// `tril_target` as in exact_kernel. Entry (i, j) is computed by thread j % 32, as there.
D2R_KERNEL void __launch_bounds__(kThreads)
    exact_tangent_kernel(CholeskyGaussian<float> head, MahalanobisReward<float> reward, float lambda, float k,
                         CholeskyGaussian<float> tangent, MatrixView<float> grad_mean, MatrixView<float> tril_target) {
  extern __shared__ float smem[];
  const int n = static_cast<int>(head.mean.cols);
  const int packed = packed_size(n);
  float* u = smem;                    // n x n, row-major
  float* factor = u + n * n;          // packed L
  float* dfactor = factor + packed;   // packed L̇
  float* mean_dot = dfactor + packed; // μ̇
  const int t = threadIdx.x;
  stage_u(reward, n, u, factor);

  for (std::int64_t b = blockIdx.x; b < head.mean.rows; b += gridDim.x) {
    const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
    for (int q = t; q < packed; q += blockDim.x) factor[q] = head.tril(t_row, q);
    __syncthreads();
    for (int i = t; i < n; i += blockDim.x) factor[diagonal_index(i)] = math::softplus(factor[diagonal_index(i)]) + head.jitter;
    stage_tangent(head, tangent, b, n, dfactor, mean_dot);  // synchronises (after the diagonal above)
    for (int i = t; i < n; i += blockDim.x) {
      const float* u_row = u + i * n;
      float acc = 0.0f;
      for (int m = 0; m < n; ++m) acc += u_row[m] * mean_dot[m];
      grad_mean(b, i) = 2.0f * k * acc;
    }
    for (int i = 0; i < n; ++i) {
      const float* u_row = u + i * n;
      for (int j = t; j <= i; j += blockDim.x) {
        float udl = 0.0f;  // (U L̇)_ij
        for (int m = j; m < n; ++m) udl += u_row[m] * dfactor[packed_size(m) + j];
        const int p = packed_size(i) + j;
        float g = 2.0f * k * udl;
        if (i == j) {
          float ul = 0.0f;  // (U L)_ii
          for (int m = i; m < n; ++m) ul += u_row[m] * factor[packed_size(m) + i];
          const float l = factor[p], raw = head.tril(t_row, p);
          const float sig = math::sigmoid(raw), dsig = sig * math::sigmoid(-raw);
          const float g_l = 2.0f * k * ul - k * lambda / l;
          g = (g + k * lambda * dfactor[p] / (l * l)) * sig + g_l * dsig * tangent.tril(t_row, p);
        }
        tril_target(b, p) = g;
      }
    }
    __syncthreads();  // factor, dfactor and mean_dot are restaged for the next row
  }
}

/// Dynamic shared memory (bytes) of exact_mixed_kernel: S (n x n), L and L̇ (packed), δ and μ̇.
__host__ __device__ constexpr std::size_t exact_mixed_shared_bytes(int n) {
  return static_cast<std::size_t>(n * n + 2 * packed_size(n) + 2 * n) * sizeof(float);
}
static_assert(exact_mixed_shared_bytes(static_cast<int>(kMaxCholeskyDim)) <= 48 * 1024,
              "the Cholesky objective kernels must fit the default 48 KB of dynamic shared memory");

/// Per-row partial φ-gradients of ∇_head L_exact · ḣ = 2k Σ_b tr(U M_b), M = δ μ̇ᵀ + L L̇ᵀ
/// (reference::cholesky_gaussian::exact_mixed_product):
///   scalar    partial(b, 0)       = 2k Σ_i M_ii
///   diagonal  partial(b, i)       = 2k M_ii
///   full      partial(b, (i, j))  = 2k Σ_{m>=j} S_im R_mj,   S = M + Mᵀ (U = R Rᵀ)
/// S is built in shared memory (full form only); R is read from the reward's parameters.
D2R_KERNEL void __launch_bounds__(kThreads)
    exact_mixed_kernel(CholeskyGaussian<float> head, MatrixView<const float> targets, MahalanobisReward<float> reward,
                       float k, CholeskyGaussian<float> tangent, MatrixView<float> partial) {
  extern __shared__ float smem[];
  const int n = static_cast<int>(head.mean.cols);
  const int packed = packed_size(n);
  float* sym = smem;                  // n x n, row-major (full form)
  float* factor = sym + n * n;        // packed L
  float* dfactor = factor + packed;   // packed L̇
  float* offset = dfactor + packed;   // δ = μ − y
  float* mean_dot = offset + n;       // μ̇
  const int t = threadIdx.x;
  for (std::int64_t b = blockIdx.x; b < head.mean.rows; b += gridDim.x) {
    stage_row(head, targets, b, n, factor, offset);
    stage_tangent(head, tangent, b, n, dfactor, mean_dot);
    if (reward.form != RewardForm::full) {
      float trace = 0.0f;
      for (int i = t; i < n; i += blockDim.x) {
        float m_ii = offset[i] * mean_dot[i];
        for (int q = 0; q <= i; ++q) m_ii += factor[packed_size(i) + q] * dfactor[packed_size(i) + q];
        if (reward.form == RewardForm::diagonal) partial(b, i) = 2.0f * k * m_ii;
        trace += m_ii;
      }
      trace = warp_sum(trace);
      if (reward.form == RewardForm::scalar && t == 0) partial(b, 0) = 2.0f * k * trace;
    } else {
      for (int idx = t; idx < n * n; idx += blockDim.x) {
        const int i = idx / n, m = idx % n, lo = i < m ? i : m;
        float acc = offset[i] * mean_dot[m] + offset[m] * mean_dot[i];  // S_im = M_im + M_mi
        for (int q = 0; q <= lo; ++q) {
          acc += factor[packed_size(i) + q] * dfactor[packed_size(m) + q] +
                 factor[packed_size(m) + q] * dfactor[packed_size(i) + q];
        }
        sym[idx] = acc;
      }
      __syncthreads();
      for (int i = 0; i < n; ++i) {
        const float* s_row = sym + i * n;
        for (int j = t; j <= i; j += blockDim.x) {
          float acc = 0.0f;
          for (int m = j; m < n; ++m) acc += s_row[m] * reward.params[packed_size(m) + j];
          partial(b, packed_size(i) + j) = 2.0f * k * acc;
        }
      }
    }
    __syncthreads();  // the row's staging is reused by the next row
  }
}

/// Adds one tile of `count` generations (columns of the [dim][kStride] arrays v and e) into the
/// accumulators: acc_tril(i, j) += Σ_g v(i, g) e(j, g) for j <= i, acc_mean(i) += Σ_g v(i, g).
/// Entry (i, j) is owned by thread j % kThreads; mean entry i by thread i % kThreads.
__device__ __forceinline__ void accumulate_tile(const float* v, const float* e, int n, int count, int t,
                                                float* acc_tril, float* acc_mean) {
  for (int i = 0; i < n; ++i) {
    const float* v_row = v + i * kStride;
    for (int j = t; j <= i; j += blockDim.x) {
      const float* e_row = e + j * kStride;
      float sum = 0.0f;
      for (int gg = 0; gg < count; ++gg) sum += v_row[gg] * e_row[gg];
      acc_tril[packed_size(i) + j] += sum;
    }
  }
  for (int i = t; i < n; i += blockDim.x) {
    const float* v_row = v + i * kStride;
    float sum = 0.0f;
    for (int gg = 0; gg < count; ++gg) sum += v_row[gg];
    acc_mean[i] += sum;
  }
}

/// Thread t's ε of generation g into column t of `work` ([dim][kStride]).
__device__ __forceinline__ void draw_noise(const math::DrawPosition& pos, std::uint32_t row, std::uint32_t g, int n,
                                           float* work, int t) {
  const int quads = (n + 3) / 4;
  for (int q = 0; q < quads; ++q) {
    const math::Normal4<float> eps = math::normal4<float>(pos.seed, pos.step_at(), row, g, static_cast<std::uint32_t>(q));
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int d = 4 * q + c;
      if (d < n) work[d * kStride + t] = eps.z[c];
    }
  }
}

/// Per row b, with ε_g the Philox noise of generation g, ŷ = μ + Lε, δ = ŷ − y, r = −δᵀUδ and
/// a_g = T'(r_g) · (−2 Uδ_g):
///   grad_mean(b, i)        = −k Σ_g a_gi / G
///   tril_target(b, (i, j)) = −k (Σ_g a_gi ε_gj / G + [i = j] λ / L_ii), times sigmoid(raw_ii) on the diagonal
///   row_loss_b             = −k (Σ_g T(r_g) / G + λ H),   row_reward_b = Σ_g r_g / G
D2R_KERNEL void __launch_bounds__(kThreads)
    pathwise_kernel(CholeskyGaussian<float> head, MatrixView<const float> targets, MahalanobisReward<float> reward,
                    PgOptions<float> options, math::DrawPosition pos, ObjectiveScale<float> s, ObjectiveRows<float> rows,
                    MatrixView<float> grad_mean, MatrixView<float> tril_target) {
  extern __shared__ float smem[];
  const int n = static_cast<int>(head.mean.cols);
  const int packed = packed_size(n);
  const std::int64_t G = s.generations;
  float* factor = smem;                  // packed L
  float* r_factor = factor + packed;     // packed R (full), or the n diagonal entries of U
  float* acc_tril = r_factor + packed;   // packed
  float* offset = acc_tril + packed;     // μ − y
  float* acc_mean = offset + n;          // n
  float* work_a = acc_mean + n;          // [dim][kStride]
  float* work_b = work_a + n * kStride;  // [dim][kStride]
  const int t = threadIdx.x;
  const bool full = reward.form == RewardForm::full;
  const float k = s.per_dim / s.normaliser, lambda = options.entropy_weight;
  const bool rbf = options.transform.kind == Transform::rbf;
  const float gamma = options.transform.rbf_gamma;
  constexpr float kHalfLog2PiE = static_cast<float>(0.5 * math::kLog2PiE);

  if (full) {
    for (int p = t; p < packed; p += blockDim.x) r_factor[p] = reward.params[p];
  } else {
    for (int i = t; i < n; i += blockDim.x)
      r_factor[i] = reward.form == RewardForm::scalar ? reward.params[0] : reward.params[i];
  }
  // (stage_row's first barrier orders these writes before any read)

  for (std::int64_t b = blockIdx.x; b < head.mean.rows; b += gridDim.x) {
    const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
    const auto row = static_cast<std::uint32_t>(pos.first_row + b);
    for (int p = t; p < packed; p += blockDim.x) acc_tril[p] = 0.0f;
    for (int i = t; i < n; i += blockDim.x) acc_mean[i] = 0.0f;
    stage_row(head, targets, b, n, factor, offset);
    // After each generation: `grad_a` holds a = −2 T'(r) Uδ and `eps` holds ε (column t).
    float* grad_a = full ? work_a : work_b;
    float* eps = full ? work_b : work_a;
    float value_sum = 0.0f, reward_sum = 0.0f;  // this thread's generations, in increasing order
    for (std::int64_t g0 = 0; g0 < G; g0 += kThreads) {
      const int count = static_cast<int>(G - g0 < kThreads ? G - g0 : kThreads);
      if (t < count) {
        const auto g = static_cast<std::uint32_t>(g0 + t);
        float r = 0.0f;
        if (full) {
          // work_a: ε, then δ in place (δ_i needs ε_j for j <= i only: last dim first).
          draw_noise(pos, row, g, n, work_a, t);
          for (int i = n - 1; i >= 0; --i) {
            const float* l_row = factor + packed_size(i);
            float acc = offset[i];
            for (int j = 0; j <= i; ++j) acc += l_row[j] * work_a[j * kStride + t];
            work_a[i * kStride + t] = acc;
          }
          // work_b: v = Rᵀδ, r = −‖v‖².
          float quad = 0.0f;
          for (int j = 0; j < n; ++j) {
            float v = 0.0f;
            for (int i = j; i < n; ++i) v += r_factor[packed_size(i) + j] * work_a[i * kStride + t];
            work_b[j * kStride + t] = v;
            quad += v * v;
          }
          r = -quad;
        } else {
          // work_a: ε; work_b: δ.
          draw_noise(pos, row, g, n, work_a, t);
          float quad = 0.0f;
          for (int i = 0; i < n; ++i) {
            const float* l_row = factor + packed_size(i);
            float acc = offset[i];
            for (int j = 0; j <= i; ++j) acc += l_row[j] * work_a[j * kStride + t];
            work_b[i * kStride + t] = acc;
            quad += r_factor[i] * acc * acc;
          }
          r = -quad;
        }
        const float value = rbf ? expf(gamma * r) : r;
        const float slope = rbf ? gamma * value : 1.0f;
        value_sum += value;
        reward_sum += r;
        if (full) {
          // work_a: a = −2 T'(r) R v (δ is no longer needed); work_b: ε again (v no longer needed).
          for (int i = 0; i < n; ++i) {
            const float* r_row = r_factor + packed_size(i);
            float acc = 0.0f;
            for (int j = 0; j <= i; ++j) acc += r_row[j] * work_b[j * kStride + t];
            work_a[i * kStride + t] = -2.0f * slope * acc;
          }
          draw_noise(pos, row, g, n, work_b, t);
        } else {
          for (int i = 0; i < n; ++i) work_b[i * kStride + t] *= -2.0f * slope * r_factor[i];
        }
      }
      __syncthreads();
      accumulate_tile(grad_a, eps, n, count, t, acc_tril, acc_mean);
      __syncthreads();
    }
    const auto g_count = static_cast<float>(G);
    const float value_total = warp_sum(value_sum), reward_total = warp_sum(reward_sum);
    const float H = warp_sum(log_det_part(factor, n)) + kHalfLog2PiE * static_cast<float>(n);
    for (int i = t; i < n; i += blockDim.x) grad_mean(b, i) = -k * acc_mean[i] / g_count;
    for (int i = 0; i < n; ++i) {
      for (int j = t; j <= i; j += blockDim.x) {
        const int p = packed_size(i) + j;
        float g = -k * (acc_tril[p] / g_count + (i == j ? lambda / factor[p] : 0.0f));
        if (i == j) g *= math::sigmoid(head.tril(t_row, p));
        tril_target(b, p) = g;
      }
    }
    if (t == 0) {
      rows.row_loss[b] = -k * (value_total / g_count + lambda * H);
      if (rows.row_reward.data != nullptr) rows.row_reward[b] = reward_total / g_count;
    }
    __syncthreads();  // accumulators and staged row are reset for the next row
  }
}

// ---------------------------------------------------------------- fused REINFORCE surrogate
/// Most generations the fused surrogate takes: the G rewards and the G log-probabilities (then
/// cotangents) of a row live in shared memory. Above it, pg_surrogate composes the primitives.
inline constexpr std::int64_t kFusedMaxGenerations = 1024;

/// Dynamic shared memory (bytes) of surrogate_kernel: L (packed), μ − y, R (full U, packed; else
/// the n diagonal entries of U) sharing its space with the tril accumulator (packed), the mean
/// accumulator, two [dim][kStride] work arrays, and the G rewards and G log-probabilities.
__host__ __device__ constexpr std::size_t surrogate_shared_bytes(int n, std::int64_t generations) {
  return static_cast<std::size_t>(2 * packed_size(n) + 2 * n + 2 * n * kStride + 2 * generations) * sizeof(float);
}
static_assert(surrogate_shared_bytes(static_cast<int>(kMaxCholeskyDim), kFusedMaxGenerations) <= 48 * 1024,
              "the fused Cholesky surrogate must fit the default 48 KB of dynamic shared memory");

/// Minimum over the 32 lanes of a warp (exact: the order does not matter).
__device__ __forceinline__ float warp_min(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

/// Fused REINFORCE surrogate, the composition sample → log_prob → reward → transform_rewards →
/// entropy → pg_row_terms → backward in one kernel. Per row b (ε_g the Philox noise of
/// generation g, keyed as cholesky_gaussian::sample; ŷ_g = μ + Lε_g, so z = L⁻¹(ŷ_g − μ) = ε_g):
///   pass 1    r_g = −δ_gᵀUδ_g (δ_g = ŷ_g − y), log p_g = −½‖ε_g‖² − Σ_d log L_dd − (n/2) log 2π,
///             kept in shared memory (G floats each), nothing else;
///   row terms A = T(r) over the row's G rewards, x_g = −pd log p_g clipped to [−c, c],
///             row_loss_b = (Σ_g clip(x_g) A_g / G − λ pd H) / N, row_reward_b = Σ_g r_g / G,
///             c_g = −pd A_g [|x_g| <= c] / (N G) (overwrites log p_g), e = −λ pd / N;
///   pass 2    the same ε_g again, v_g = L⁻ᵀ(c_g ε_g) by back substitution:
///             grad_mean(b, i)        = Σ_g v_gi
///             tril_target(b, (i, j)) = Σ_g v_gi ε_gj                          (j < i)
///             tril_target(b, (i, i)) = (Σ_g v_gi ε_gi + (e − Σ_g c_g) / L_ii) · sigmoid(raw_ii)
/// i.e. ∂log p/∂μ = L⁻ᵀε and ∂log p/∂L = tril(L⁻ᵀ ε εᵀ) − diag(1/L_dd), as the composition's
/// backward. Pass 1 has one generation per thread (batches of 32) and every thread touches only
/// its own column of the work array; the row terms are one generation per lane (g ≡ lane mod 32,
/// as the lane that wrote it); pass 2 sums each accumulator entry over a batch's generations in
/// increasing order, by the entry's owning thread (j % 32), as backward_kernel. `tril_target` is
/// grad.tril (one factor per row) or a B x n(n+1)/2 workspace then summed over rows (shared
/// factor). No B·G·n tensor and no B x G intermediate touches device memory.
D2R_KERNEL void __launch_bounds__(kThreads)
    surrogate_kernel(CholeskyGaussian<float> head, MatrixView<const float> targets, MahalanobisReward<float> reward,
                     PgOptions<float> options, math::DrawPosition pos, ObjectiveScale<float> s, ObjectiveRows<float> rows,
                     MatrixView<float> grad_mean, MatrixView<float> tril_target) {
  extern __shared__ float smem[];
  const int n = static_cast<int>(head.mean.cols);
  const int packed = packed_size(n);
  const std::int64_t G = s.generations;
  float* factor = smem;                  // packed L
  float* offset = factor + packed;       // μ − y
  float* r_factor = offset + n;          // pass 1: packed R (full), or the n diagonal entries of U
  float* acc_tril = r_factor;            // pass 2: packed accumulator (R is restaged every row)
  float* acc_mean = r_factor + packed;   // n
  float* work_a = acc_mean + n;          // [dim][kStride]: ε, then δ in place (full U)
  float* work_b = work_a + n * kStride;  // [dim][kStride]: v = L⁻ᵀ(c ε)
  float* r_g = work_b + n * kStride;     // G rewards
  float* c_g = r_g + G;                  // G log-probabilities, then the cotangents c_g
  const int t = threadIdx.x;
  const bool full = reward.form == RewardForm::full;
  const float c = options.log_prob_clip;
  const auto g_count = static_cast<float>(G);
  constexpr float kHalfLog2Pi = static_cast<float>(0.5 * math::kLog2Pi);
  constexpr float kHalfLog2PiE = static_cast<float>(0.5 * math::kLog2PiE);

  for (std::int64_t b = blockIdx.x; b < head.mean.rows; b += gridDim.x) {
    const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
    const auto row = static_cast<std::uint32_t>(pos.first_row + b);
    if (full) {
      for (int p = t; p < packed; p += blockDim.x) r_factor[p] = reward.params[p];
    } else {
      for (int i = t; i < n; i += blockDim.x)
        r_factor[i] = reward.form == RewardForm::scalar ? reward.params[0] : reward.params[i];
    }
    stage_row(head, targets, b, n, factor, offset);  // its first barrier orders the writes above
    const float log_det = warp_sum(log_det_part(factor, n));
    const float H = log_det + kHalfLog2PiE * static_cast<float>(n);
    const float log_prob_constant = -log_det - kHalfLog2Pi * static_cast<float>(n);

    // Pass 1: each thread its own generations, its own column of work_a (no barrier needed).
    for (std::int64_t g0 = 0; g0 < G; g0 += kThreads) {
      if (g0 + t >= G) break;
      const auto g = static_cast<std::uint32_t>(g0 + t);
      draw_noise(pos, row, g, n, work_a, t);
      float squares = 0.0f;
      for (int i = 0; i < n; ++i) squares += work_a[i * kStride + t] * work_a[i * kStride + t];
      float quad = 0.0f;
      if (full) {
        // δ = μ − y + Lε in place (δ_i needs ε_j for j <= i only: last dim first), then ‖Rᵀδ‖².
        for (int i = n - 1; i >= 0; --i) {
          const float* l_row = factor + packed_size(i);
          float acc = offset[i];
          for (int j = 0; j <= i; ++j) acc += l_row[j] * work_a[j * kStride + t];
          work_a[i * kStride + t] = acc;
        }
        for (int j = 0; j < n; ++j) {
          float v = 0.0f;
          for (int i = j; i < n; ++i) v += r_factor[packed_size(i) + j] * work_a[i * kStride + t];
          quad += v * v;
        }
      } else {
        for (int i = 0; i < n; ++i) {
          const float* l_row = factor + packed_size(i);
          float acc = offset[i];
          for (int j = 0; j <= i; ++j) acc += l_row[j] * work_a[j * kStride + t];
          quad += r_factor[i] * acc * acc;
        }
      }
      r_g[g] = -quad;
      c_g[g] = -0.5f * squares + log_prob_constant;
    }
    __syncthreads();  // R is no longer read: its space becomes the tril accumulator

    for (int p = t; p < packed; p += blockDim.x) acc_tril[p] = 0.0f;
    for (int i = t; i < n; i += blockDim.x) acc_mean[i] = 0.0f;
    // Row terms: the group transform over the G rewards, then the clipped surrogate terms.
    float sum = 0.0f, lo = INFINITY;
    for (std::int64_t g = t; g < G; g += kThreads) {
      sum += r_g[g];
      lo = fminf(lo, r_g[g]);
    }
    sum = warp_sum(sum);
    lo = warp_min(lo);
    // standardize centres r − lo (reference::rewards::transform_row): equal rewards give advantages of 0.
    float mean = 0.0f, scale = 1.0f;
    if (options.transform.kind == Transform::standardize) {
      for (std::int64_t g = t; g < G; g += kThreads) mean += r_g[g] - lo;
      mean = warp_sum(mean) / g_count;
      float sq = 0.0f;
      for (std::int64_t g = t; g < G; g += kThreads) sq += (r_g[g] - lo - mean) * (r_g[g] - lo - mean);
      sq = warp_sum(sq);
      scale = 1.0f / (sqrtf(sq / static_cast<float>(G - 1)) + options.transform.standardize_epsilon);
    }
    float loss = 0.0f, c_part = 0.0f;
    for (std::int64_t g = t; g < G; g += kThreads) {
      const float r = r_g[g];
      float a = r;
      switch (options.transform.kind) {
        case Transform::none: break;
        case Transform::normalize: a = r - lo; break;
        case Transform::rbf: a = expf(options.transform.rbf_gamma * r); break;
        case Transform::leave_one_out: a = r - (sum - r) / static_cast<float>(G - 1); break;
        case Transform::standardize: a = (r - lo - mean) * scale; break;
      }
      float x = -s.per_dim * c_g[g];
      bool active = true;
      if (c > 0.0f && (x > c || x < -c)) {
        active = false;
        x = x > c ? c : -c;
      }
      loss += x * a;
      const float cot = active ? -s.per_dim * a / (s.normaliser * g_count) : 0.0f;
      c_g[g] = cot;
      c_part += cot;
    }
    loss = warp_sum(loss);
    const float c_sum = warp_sum(c_part);
    if (t == 0) {
      rows.row_loss[b] = (loss / g_count - options.entropy_weight * s.per_dim * H) / s.normaliser;
      if (rows.row_reward.data != nullptr) rows.row_reward[b] = sum / static_cast<float>(G);
    }
    __syncthreads();

    // Pass 2: the same noise again; v = L⁻ᵀ(c ε), summed into the accumulators batch by batch.
    for (std::int64_t g0 = 0; g0 < G; g0 += kThreads) {
      const int count = static_cast<int>(G - g0 < kThreads ? G - g0 : kThreads);
      if (t < count) {
        const std::int64_t g = g0 + t;
        draw_noise(pos, row, static_cast<std::uint32_t>(g), n, work_a, t);
        const float cot = c_g[g];
        for (int i = n - 1; i >= 0; --i) {
          float acc = cot * work_a[i * kStride + t];
          for (int k = i + 1; k < n; ++k) acc -= factor[packed_size(k) + i] * work_b[k * kStride + t];
          work_b[i * kStride + t] = acc / factor[diagonal_index(i)];
        }
      }
      __syncthreads();
      accumulate_tile(work_b, work_a, n, count, t, acc_tril, acc_mean);
      __syncthreads();
    }
    const float e = -options.entropy_weight * s.per_dim / s.normaliser;
    for (int i = t; i < n; i += blockDim.x) {
      const int p = diagonal_index(i);
      acc_tril[p] = (acc_tril[p] + (e - c_sum) / factor[p]) * math::sigmoid(head.tril(t_row, p));
      grad_mean(b, i) = acc_mean[i];
    }
    __syncthreads();
    for (int p = t; p < packed; p += blockDim.x) tril_target(b, p) = acc_tril[p];
    __syncthreads();  // accumulators, R and the staged row are rewritten for the next row
  }
}

}  // namespace d2r::kernels::cholesky_objectives
