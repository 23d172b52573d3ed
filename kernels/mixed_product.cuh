#pragma once
// Device code of the exact-curvature mixed products ∇_φ(∇_head L_exact · ḣ) (DESIGN.md §5), see
// reference::exact_mixed_diag_gaussian / exact_mixed_categorical: per-row partial gradients
// (B x P), column-summed by the launchers (mixed_product.cu). The Cholesky head's lives with its
// objective kernels in cholesky_objectives.cu(h).

#include <cstdint>

#include "d2r/types/heads.hpp"
#include "kernels/categorical.cuh"
#include "kernels/common.cuh"
#include "common/math/numerics.hpp"

namespace d2r::kernels::mixed_product {

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
    exact_mixed_categorical_rows_kernel(Categorical<float> head, VectorView<const std::int32_t> labels,
                                        MahalanobisReward<float> reward, float k, Categorical<float> tangent,
                                        MatrixView<float> partial) {
  using categorical::RowStats;
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
    const RowStats st = categorical::row_stats<kBlock>(row, C, temp.stats);
    if (tid == 0) shared_stats = st;
    __syncthreads();
    const RowStats s = shared_stats;
    if (!categorical::valid(s)) {  // block-uniform branch
      for (std::int64_t p = tid; p < P; p += kBlock) partial(b, p) = __int_as_float(0x7fc00000);
      __syncthreads();
      continue;
    }
    const float log_sum = logf(s.s);
    const float mean = categorical::tangent_mean<kBlock>(row, t_row, C, s, log_sum, temp.sum);
    if (tid == 0) shared_mean = mean;
    __syncthreads();
    const float m_bar = shared_mean;
    const std::int32_t y = labels[b];
    const auto coefficient = [&](std::int64_t j) {
      const float x = row[j];
      return j == y || !(x > categorical::kNegInf) ? 0.0f : -k * expf((x - s.m) - log_sum) * (t_row[j] - m_bar);
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

}  // namespace d2r::kernels::mixed_product
