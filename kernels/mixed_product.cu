// Exact-curvature mixed products ∇_φ(∇_head L_exact · ḣ) (DESIGN.md §5), see
// reference::exact_mixed_diag_gaussian / exact_mixed_categorical: per-row partial gradients
// (B x P) then a deterministic column sum. The Cholesky head's (same scheme, one warp per row
// with the factor in shared memory) lives with its objective kernels in cholesky_objectives.cu(h).
#include "kernels/common.cuh"
#include "kernels/launch.hpp"
#include "kernels/math/numerics.hpp"

namespace d2r::kernels {
namespace {
constexpr int kThreads = 256;

__device__ __forceinline__ std::int64_t tri(std::int64_t i, std::int64_t j) { return i * (i + 1) / 2 + j; }

/// One thread per (b, column): column 0 (scalar), d (diagonal) or j (full, entries (i >= j, j)).
D2R_KERNEL void exact_mixed_diag_rows_kernel(DiagGaussian<float> head, MatrixView<const float> targets,
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
        va += reward.params[tri(i, j)] * (head.mean(b, i) - targets(b, i));
        vb += reward.params[tri(i, j)] * tangent.mean(b, i);
      }
      for (std::int64_t i = j; i < n; ++i) {
        const float delta = head.mean(b, i) - targets(b, i);
        partial(b, tri(i, j)) =
            2.0f * k * (delta * vb + tangent.mean(b, i) * va + 2.0f * reward.params[tri(i, j)] * w(i));
      }
    }
  }
}

/// One thread per row: ṗ = p ⊙ (ℓ̇ − p·ℓ̇), scattered through the one-hot reward's derivative.
D2R_KERNEL void exact_mixed_categorical_rows_kernel(Categorical<float> head, VectorView<const std::int32_t> labels,
                                                    MahalanobisReward<float> reward, float k,
                                                    Categorical<float> tangent, MatrixView<float> partial) {
  const std::int64_t B = head.logits.rows, C = head.logits.cols;
  for (std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    for (std::int64_t p = 0; p < partial.cols; ++p) partial(b, p) = 0.0f;
    float mx = -INFINITY;
    for (std::int64_t j = 0; j < C; ++j) mx = fmaxf(mx, head.logits(b, j));
    float z = 0.0f, pl = 0.0f;
    for (std::int64_t j = 0; j < C; ++j) {
      const float e = expf(head.logits(b, j) - mx);
      z += e;
      pl += e * tangent.logits(b, j);
    }
    pl /= z;
    const std::int32_t y = labels[b];
    for (std::int64_t j = 0; j < C; ++j) {
      if (j == y) continue;
      const float c = -k * expf(head.logits(b, j) - mx) / z * (tangent.logits(b, j) - pl);
      if (reward.form == RewardForm::scalar) {
        partial(b, 0) -= 2.0f * c;
      } else if (reward.form == RewardForm::diagonal) {
        partial(b, j) -= c;
        partial(b, y) -= c;
      } else {
        const std::int64_t top = j > y ? j : y;
        for (std::int64_t m = 0; m <= top; ++m) {
          const float rk = m <= j ? reward.params[tri(j, m)] : 0.0f;
          const float ry = m <= y ? reward.params[tri(y, m)] : 0.0f;
          if (m <= j) partial(b, tri(j, m)) -= 2.0f * c * (rk - ry);
          if (m <= y) partial(b, tri(y, m)) += 2.0f * c * (rk - ry);
        }
      }
    }
  }
}
}  // namespace

std::size_t exact_mixed_product_workspace_bytes(std::int64_t rows, std::int64_t params) {
  return static_cast<std::size_t>(rows * params) * sizeof(float) + column_sum_workspace_bytes(rows, params);
}

void exact_mixed_product_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head,
                                       MatrixView<const float> targets, const MahalanobisReward<float>& reward,
                                       float k, const DiagGaussian<float>& tangent, VectorView<float> grad,
                                       void* workspace) {
  const std::int64_t rows = head.mean.rows, p = reward.params.size;
  const MatrixView<float> partial{static_cast<float*>(workspace), rows, p, p};
  const std::int64_t columns = reward.form == RewardForm::scalar ? 1 : head.mean.cols;
  exact_mixed_diag_rows_kernel<<<grid_size(rows * columns, kThreads), kThreads, 0, stream>>>(head, targets, reward, k,
                                                                                             tangent, partial);
  D2R_CHECK_LAUNCH(stream);
  column_sum(stream, partial, grad.data, static_cast<float*>(workspace) + rows * p);
}

void exact_mixed_product_categorical(cudaStream_t stream, const Categorical<float>& head,
                                     VectorView<const std::int32_t> labels, const MahalanobisReward<float>& reward,
                                     float k, const Categorical<float>& tangent, VectorView<float> grad,
                                     void* workspace) {
  const std::int64_t rows = head.logits.rows, p = reward.params.size;
  const MatrixView<float> partial{static_cast<float*>(workspace), rows, p, p};
  exact_mixed_categorical_rows_kernel<<<grid_size(rows, 64), 64, 0, stream>>>(head, labels, reward, k, tangent,
                                                                              partial);
  D2R_CHECK_LAUNCH(stream);
  column_sum(stream, partial, grad.data, static_cast<float*>(workspace) + rows * p);
}

}  // namespace d2r::kernels
