// Launchers of the exact-curvature mixed products (device code in mixed_product.cuh): per-row
// partial gradients (B x P) then a deterministic column sum.
#include "kernels/checks/launch.hpp"
#include "kernels/heads/categorical/launch.hpp"
#include "kernels/heads/diag_gaussian/launch.hpp"
#include "kernels/objectives/launch.hpp"
#include "kernels/mixed_product.cuh"

namespace d2r::kernels {
namespace {
constexpr int kThreads = 256;
constexpr int kSmallRowBlock = 64;  // as the categorical head's row kernels (categorical.cu)
constexpr int kRowBlock = 256;
constexpr std::int64_t kSmallRowClasses = 1024;
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
  mixed_product::exact_mixed_diag_rows_kernel<<<grid_size(rows * columns, kThreads), kThreads, 0, stream>>>(head, targets, reward, k,
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
  const unsigned grid = grid_size(rows, 1);  // one block per row
  if (head.logits.cols <= kSmallRowClasses) {
    mixed_product::exact_mixed_categorical_rows_kernel<kSmallRowBlock>
        <<<grid, kSmallRowBlock, 0, stream>>>(head, labels, reward, k, tangent, partial);
  } else {
    mixed_product::exact_mixed_categorical_rows_kernel<kRowBlock>
        <<<grid, kRowBlock, 0, stream>>>(head, labels, reward, k, tangent, partial);
  }
  D2R_CHECK_LAUNCH(stream);
  column_sum(stream, partial, grad.data, static_cast<float*>(workspace) + rows * p);
}

}  // namespace d2r::kernels
