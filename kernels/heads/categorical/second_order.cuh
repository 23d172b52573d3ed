#pragma once
// Device code of the categorical head's second-order pieces (d2r/second_order.hpp, DESIGN.md
// §5-6): the log-probability JVP, the backward tangent, the exact objective's tangent and the
// exact-curvature mixed product's per-row partial gradients (see reference::categorical::exact_mixed_product;
// the launcher column-sums them). Launchers: launch.cu beside it. Conventions: distribution.cuh.

#include <cub/cub.cuh>

#include <cstdint>

#include "d2r/types/heads.hpp"
#include "d2r/types/objectives.hpp"
#include "kernels/common.cuh"
#include "kernels/heads/categorical/distribution.cuh"
#include "kernels/heads/categorical/objectives.cuh"
#include "kernels/rewards/rewards.cuh"
#include "common/math/numerics.hpp"

namespace d2r::kernels::categorical {

/// m̄ = Σ_j p_j ℓ̇_j of row b with statistics `s` (valid): block-wide, the result in thread 0.
template <int kBlock>
__device__ __forceinline__ float tangent_mean(const float* row, const float* tangent_row, std::int64_t classes,
                                              const RowStats& s, float log_sum,
                                              typename cub::BlockReduce<float, kBlock>::TempStorage& temp) {
  float local = 0.0f;
  for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
    const float x = row[j];
    if (x > kNegInf) local += expf((x - s.m) - log_sum) * tangent_row[j];
  }
  return cub::BlockReduce<float, kBlock>(temp).Sum(local);
}

/// out(b, g) = ℓ̇_k − Σ_j p_j ℓ̇_j for k = samples(b, g) (NaN for an invalid row or index).
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    log_prob_jvp_kernel(Categorical<float> head, MatrixView<const std::int32_t> samples, Categorical<float> tangent,
                        MatrixView<float> out) {
  using ReduceStats = cub::BlockReduce<RowStats, kBlock>;
  using ReduceSum = cub::BlockReduce<float, kBlock>;
  union Temp {
    typename ReduceStats::TempStorage stats;
    typename ReduceSum::TempStorage sum;
  };
  D2R_SHARED(Temp, temp);
  D2R_SHARED(RowStats, shared_stats);
  D2R_SHARED(float, shared_mean);
  const std::int64_t classes = head.logits.cols;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const float* t_row = &tangent.logits(b, 0);
    const RowStats st = row_stats<kBlock>(row, classes, temp.stats);
    if (threadIdx.x == 0) shared_stats = st;
    __syncthreads();
    const RowStats s = shared_stats;
    const bool ok = valid(s);
    const float log_sum = logf(s.s);
    float mean = 0.0f;
    if (ok) mean = tangent_mean<kBlock>(row, t_row, classes, s, log_sum, temp.sum);  // block-uniform branch
    if (threadIdx.x == 0) shared_mean = mean;
    __syncthreads();
    const float m_bar = shared_mean;
    for (std::int64_t g = threadIdx.x; g < out.cols; g += kBlock) {
      const std::int32_t k = samples(b, g);
      out(b, g) = ok && k >= 0 && k < classes ? t_row[k] - m_bar : __int_as_float(0x7fc00000);
    }
    __syncthreads();
  }
}

/// grad_tangent(b, j) = −C p_j u_j − e p_j [u_j (log p_j + H + 1) + Ḣ], u_j = ℓ̇_j − m̄,
/// Ḣ = −Σ_j p_j (log p_j + H) u_j, C = Σ_g c_bg (0 where p_j = 0; NaN rows without a
/// distribution). Passes over the row: statistics, m̄, Ḣ, output.
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    backward_tangent_kernel(Categorical<float> head, MatrixView<const float> d_log_prob,
                            VectorView<const float> d_entropy, Categorical<float> tangent, MatrixView<float> grad) {
  using ReduceStats = cub::BlockReduce<RowStats, kBlock>;
  using ReduceSum = cub::BlockReduce<float, kBlock>;
  union Temp {
    typename ReduceStats::TempStorage stats;
    typename ReduceSum::TempStorage sum;
  };
  D2R_SHARED(Temp, temp);
  D2R_SHARED(RowStats, shared_stats);
  D2R_SHARED(float, shared_c_sum);
  D2R_SHARED(float, shared_mean);
  D2R_SHARED(float, shared_h_dot);
  const std::int64_t classes = head.logits.cols;
  const std::int64_t generations = d_log_prob.data != nullptr ? d_log_prob.cols : 0;
  const bool has_entropy = d_entropy.data != nullptr;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const float* t_row = &tangent.logits(b, 0);
    const RowStatsAndSum rs =
        row_stats_and_cotangent_sum<kBlock>(row, classes, d_log_prob, b, generations, temp, shared_stats, shared_c_sum);
    const RowStats s = rs.stats;
    const bool ok = valid(s);
    const float c = rs.c_sum;
    const float e = has_entropy ? d_entropy[b] : 0.0f;
    const float log_sum = logf(s.s);
    const float h = log_sum - s.a / s.s;
    float mean = 0.0f;
    if (ok) mean = tangent_mean<kBlock>(row, t_row, classes, s, log_sum, temp.sum);  // block-uniform branch
    if (threadIdx.x == 0) shared_mean = mean;
    __syncthreads();
    const float m_bar = shared_mean;
    float h_dot = 0.0f;
    if (ok && has_entropy) {  // block-uniform branch
      float local = 0.0f;
      for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
        const float x = row[j];
        if (!(x > kNegInf)) continue;
        const float log_p = (x - s.m) - log_sum;
        local -= expf(log_p) * (log_p + h) * (t_row[j] - m_bar);
      }
      h_dot = ReduceSum(temp.sum).Sum(local);
    }
    if (threadIdx.x == 0) shared_h_dot = h_dot;
    __syncthreads();
    h_dot = shared_h_dot;
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      const float x = row[j];
      float gj = 0.0f;
      if (!ok) {
        gj = __int_as_float(0x7fc00000);
      } else if (x > kNegInf) {
        const float log_p = (x - s.m) - log_sum;
        const float p = expf(log_p);
        const float u = t_row[j] - m_bar;
        gj = -c * p * u - e * p * (u * (log_p + h + 1.0f) + h_dot);
      }
      grad(b, j) = gj;
    }
    __syncthreads();
  }
}

// ------------------------------------------------------------------- exact-objective tangent

/// Tangent of exact_kernel's gradient along ℓ̇ (reference::categorical::exact_backward_tangent), one row per
/// block: with u_j = ℓ̇_j − m̄ (m̄ = Σ p ℓ̇), E = Σ p r, Ė = Σ p u r and Ḣ = −Σ p u (log p + H),
///   grad(b, j) = −k [p_j u_j (r_j − E) − p_j Ė − λ p_j (u_j (log p_j + H + 1) + Ḣ)],   k = 1 / N,
/// 0 where p_j = 0, NaN rows without a distribution. Passes over the row: statistics and the most
/// probable class a; m̄ and E; Ė and Ḣ; output (the one-hot reward r_j = r(j, y_b) recomputed in
/// each). As the reference, ℓ̇ and r are shifted by their values at a first (u, r − E and Ė do not
/// change), so that u_a and r_a − E are sums of small terms, not differences of nearly equal ones
/// when p_a ≈ 1 (issue 17: 3 digits lost in float at p_a ≈ 0.992).
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    exact_tangent_kernel(Categorical<float> head, VectorView<const std::int32_t> labels, MahalanobisReward<float> reward,
                         float lambda, float normaliser, Categorical<float> tangent, MatrixView<float> grad) {
  using ReduceStats = cub::BlockReduce<RowStats, kBlock>;
  using ReducePair = cub::BlockReduce<Pair, kBlock>;
  using ReduceIndex = cub::BlockReduce<std::int64_t, kBlock>;
  union Temp {
    typename ReduceStats::TempStorage stats;
    typename ReducePair::TempStorage pair;
    typename ReduceIndex::TempStorage index;
  };
  D2R_SHARED(Temp, temp);
  D2R_SHARED(RowStats, shared_stats);
  D2R_SHARED(std::int64_t, shared_argmax);
  D2R_SHARED(Pair, shared_first);
  D2R_SHARED(Pair, shared_second);
  const std::int64_t classes = head.logits.cols;
  const float k = 1.0f / normaliser;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const float* t_row = &tangent.logits(b, 0);
    const std::int32_t y = labels[b];
    const RowStats st = row_stats<kBlock>(row, classes, temp.stats);
    if (threadIdx.x == 0) shared_stats = st;
    __syncthreads();
    const RowStats s = shared_stats;
    const bool ok = valid(s);
    const float log_sum = logf(s.s);
    const float h = log_sum - s.a / s.s;
    // a = the first index of the largest logit (0 for a row without a distribution).
    std::int64_t local_a = classes;
    for (std::int64_t j = threadIdx.x; j < classes && local_a == classes; j += kBlock)
      if (row[j] == s.m) local_a = j;
    const std::int64_t block_a = ReduceIndex(temp.index).Reduce(local_a, MinIndex{});
    if (threadIdx.x == 0) shared_argmax = block_a < classes ? block_a : 0;
    __syncthreads();
    const std::int64_t a = shared_argmax;
    const float t_a = t_row[a];
    const float r_a = rewards::one_hot_reward(reward, static_cast<std::int32_t>(a), y);
    // m̄ = Σ p (ℓ̇ − ℓ̇_a) and E = Σ p (r − r_a).
    Pair local{0.0f, 0.0f};
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      const float x = row[j];
      if (!(x > kNegInf)) continue;
      const float p = expf((x - s.m) - log_sum);
      local.x += p * (t_row[j] - t_a);
      local.y += p * (rewards::one_hot_reward(reward, static_cast<std::int32_t>(j), y) - r_a);
    }
    const Pair first = ReducePair(temp.pair).Reduce(local, PairSum{});
    if (threadIdx.x == 0) shared_first = first;
    __syncthreads();
    const float m_bar = shared_first.x, e_r = shared_first.y;
    // Ė = Σ p u (r − r_a) and Ḣ = −Σ p u (log p + H).
    local = {0.0f, 0.0f};
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      const float x = row[j];
      if (!(x > kNegInf)) continue;
      const float log_p = (x - s.m) - log_sum;
      const float pu = expf(log_p) * ((t_row[j] - t_a) - m_bar);
      local.x += pu * (rewards::one_hot_reward(reward, static_cast<std::int32_t>(j), y) - r_a);
      local.y -= pu * (log_p + h);
    }
    const Pair second = ReducePair(temp.pair).Reduce(local, PairSum{});
    if (threadIdx.x == 0) shared_second = second;
    __syncthreads();
    const float e_dot = shared_second.x, h_dot = shared_second.y;
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      const float x = row[j];
      float gj = 0.0f;
      if (!ok) {
        gj = __int_as_float(0x7fc00000);
      } else if (x > kNegInf) {
        const float log_p = (x - s.m) - log_sum;
        const float p = expf(log_p);
        const float u = (t_row[j] - t_a) - m_bar;
        const float r = rewards::one_hot_reward(reward, static_cast<std::int32_t>(j), y) - r_a;
        gj = -k * (p * u * (r - e_r) - p * e_dot - lambda * p * (u * (log_p + h + 1.0f) + h_dot));
      }
      grad(b, j) = gj;
    }
    __syncthreads();
  }
}

// ------------------------------------------------------------------- exact-curvature mixed product

__device__ __forceinline__ std::int64_t tri(std::int64_t i, std::int64_t j) { return i * (i + 1) / 2 + j; }

/// One block per row (grid-stride over rows), like the categorical head's kernels: the row's
/// softmax statistics and m̄ = p·ℓ̇ by block reductions, then the row's partial gradient with
/// c_j = −k p_j (ℓ̇_j − m̄), the coefficient of r(j, y) in ∇_ℓ L_exact · ℓ̇ (j ≠ y):
///   scalar:   partial(b, 0) = −2 Σ_{j≠y} c_j
///   diagonal: partial(b, j) = −c_j (j ≠ y),  partial(b, y) = −Σ_{j≠y} c_j
///   full:     partial(b, tri(j, m)) = −2 c_j (R_jm − R_ym [m ≤ y])  (j ≠ y, m ≤ j),
///             partial(b, tri(y, m)) = 2 Σ_{j≠y} c_j (R_jm [m ≤ j] − R_ym)  (m ≤ y).
/// Every element of the row is written exactly once (threads over j, and over m for row y of
/// the full form, recomputing c_j), and the sums over j are block reductions in a fixed order:
/// deterministic, and the whole block works on a row of any width. (The former design gave one
/// thread a whole row: at 10^5 classes and 10^3 rows almost all of the GPU idled.) A row without
/// a distribution gets NaN.
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    exact_mixed_rows_kernel(Categorical<float> head, VectorView<const std::int32_t> labels,
                                        MahalanobisReward<float> reward, float k, Categorical<float> tangent,
                                        MatrixView<float> partial) {
  using ReduceStats = cub::BlockReduce<RowStats, kBlock>;
  using ReduceSum = cub::BlockReduce<float, kBlock>;
  union Temp {
    typename ReduceStats::TempStorage stats;
    typename ReduceSum::TempStorage sum;
  };
  D2R_SHARED(Temp, temp);
  D2R_SHARED(RowStats, shared_stats);
  D2R_SHARED(float, shared_mean);
  const std::int64_t C = head.logits.cols, P = partial.cols;
  const int tid = static_cast<int>(threadIdx.x);
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const float* t_row = &tangent.logits(b, 0);
    const RowStats st = row_stats<kBlock>(row, C, temp.stats);
    if (tid == 0) shared_stats = st;
    __syncthreads();
    const RowStats s = shared_stats;
    if (!valid(s)) {  // block-uniform branch
      for (std::int64_t p = tid; p < P; p += kBlock) partial(b, p) = __int_as_float(0x7fc00000);
      __syncthreads();
      continue;
    }
    const float log_sum = logf(s.s);
    const float mean = tangent_mean<kBlock>(row, t_row, C, s, log_sum, temp.sum);
    if (tid == 0) shared_mean = mean;
    __syncthreads();
    const float m_bar = shared_mean;
    const std::int32_t y = labels[b];
    const auto coefficient = [&](std::int64_t j) {
      const float x = row[j];
      return j == y || !(x > kNegInf) ? 0.0f : -k * expf((x - s.m) - log_sum) * (t_row[j] - m_bar);
    };
    if (reward.form != RewardForm::full) {
      float local = 0.0f;
      for (std::int64_t j = tid; j < C; j += kBlock) {
        const float c = coefficient(j);
        local += c;
        if (reward.form == RewardForm::diagonal && j != y) partial(b, j) = -c;
      }
      const float c_sum = ReduceSum(temp.sum).Sum(local);
      if (tid == 0) partial(b, reward.form == RewardForm::scalar ? 0 : y) = (reward.form == RewardForm::scalar ? -2.0f : -1.0f) * c_sum;
    } else {
      const float* R = reward.params.data;
      for (std::int64_t j = tid; j < C; j += kBlock) {
        if (j == y) continue;
        const float c = coefficient(j);
        for (std::int64_t m = 0; m <= j; ++m) {
          const float ry = m <= y ? R[tri(y, m)] : 0.0f;
          partial(b, tri(j, m)) = -2.0f * c * (R[tri(j, m)] - ry);
        }
      }
      for (std::int64_t m = tid; m <= y; m += kBlock) {
        float acc = 0.0f;
        for (std::int64_t j = 0; j < C; ++j) {
          if (j == y) continue;
          const float rj = m <= j ? R[tri(j, m)] : 0.0f;
          acc += coefficient(j) * (rj - R[tri(y, m)]);
        }
        partial(b, tri(y, m)) = 2.0f * acc;
      }
    }
    __syncthreads();  // temp and the shared values are reused by the next row
  }
}

}  // namespace d2r::kernels::categorical
