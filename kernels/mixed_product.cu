// Launcher of the categorical head's exact-curvature mixed product (device code in
// mixed_product.cuh): per-row partial gradients (B x P) then a deterministic column sum.
#include "kernels/checks/launch.hpp"
#include "kernels/heads/categorical/launch.hpp"
#include "kernels/objectives/launch.hpp"
#include "kernels/mixed_product.cuh"

namespace d2r::kernels {
namespace {
constexpr int kSmallRowBlock = 64;  // as the categorical head's row kernels (categorical.cu)
constexpr int kRowBlock = 256;
constexpr std::int64_t kSmallRowClasses = 1024;
}  // namespace

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
