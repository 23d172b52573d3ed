// Launchers of the inner-objective kernels of the Cholesky-Gaussian head (exact, its head Hessian
// and mixed product, pathwise, fused REINFORCE surrogate; device code in cholesky_objectives.cuh).
// A shared (1-row) tril receives the column sum of the per-row gradients written to the first
// B x n(n+1)/2 floats of the workspace (shared_param_workspace_bytes, objectives.cu).
#include "kernels/heads/cholesky_gaussian/objectives.cuh"
#include "kernels/checks/launch.hpp"
#include "kernels/heads/cholesky_gaussian/launch.hpp"
#include "kernels/objectives/launch.hpp"

namespace d2r::kernels {
namespace {
using cholesky_objectives::kThreads;

bool shared_tril(const CholeskyGaussian<float>& head) { return head.tril.rows == 1 && head.mean.rows > 1; }
int dim(const CholeskyGaussian<float>& head) { return static_cast<int>(head.mean.cols); }
std::int64_t packed(const CholeskyGaussian<float>& head) { return cholesky_objectives::packed_size(dim(head)); }

/// Where a kernel writes the tril gradient of each row: grad.tril itself, or the workspace.
MatrixView<float> tril_target(const CholeskyGaussian<float>& head, const CholeskyGaussianGrad<float>& grad,
                              void* workspace) {
  if (!shared_tril(head)) return grad.tril;
  return {static_cast<float*>(workspace), head.mean.rows, packed(head), packed(head)};
}

void finish_shared(cudaStream_t stream, const CholeskyGaussian<float>& head, const CholeskyGaussianGrad<float>& grad,
                   void* workspace) {
  if (!shared_tril(head)) return;
  const std::int64_t B = head.mean.rows, P = packed(head);
  column_sum(stream, MatrixView<const float>{static_cast<float*>(workspace), B, P, P}, grad.tril.data,
             static_cast<float*>(workspace) + B * P);
}
}  // namespace

void exact_cholesky_gaussian(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                             const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                             const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad,
                             void* workspace) {
  const std::size_t smem = cholesky_objectives::exact_shared_bytes(dim(head));
  cholesky_objectives::exact_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(
      head, targets, reward, entropy_weight, scale, rows, grad.mean, tril_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

void exact_cholesky_gaussian_tangent(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                     const MahalanobisReward<float>& reward, float entropy_weight,
                                     ObjectiveScale<float> scale, const CholeskyGaussian<float>& tangent,
                                     const CholeskyGaussianGrad<float>& grad_tangent, void* workspace) {
  const std::size_t smem = cholesky_objectives::exact_tangent_shared_bytes(dim(head));
  cholesky_objectives::exact_tangent_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(
      head, reward, entropy_weight, scale.per_dim / scale.normaliser, tangent, grad_tangent.mean,
      tril_target(head, grad_tangent, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad_tangent, workspace);
}

void exact_mixed_product_cholesky_gaussian(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                           MatrixView<const float> targets, const MahalanobisReward<float>& reward,
                                           float k, const CholeskyGaussian<float>& tangent, VectorView<float> grad,
                                           void* workspace) {
  // Per-row partials (B x P, the first floats of exact_mixed_product_workspace_bytes) then their
  // deterministic column sum.
  const std::int64_t rows = head.mean.rows, p = reward.params.size;
  const MatrixView<float> partial{static_cast<float*>(workspace), rows, p, p};
  const std::size_t smem = cholesky_objectives::exact_mixed_shared_bytes(dim(head));
  cholesky_objectives::exact_mixed_kernel<<<grid_size(rows, 1), kThreads, smem, stream>>>(head, targets, reward, k,
                                                                                          tangent, partial);
  D2R_CHECK_LAUNCH(stream);
  column_sum(stream, partial, grad.data, static_cast<float*>(workspace) + rows * p);
}

void pathwise_cholesky_gaussian(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                MatrixView<const float> targets, const MahalanobisReward<float>& reward,
                                const PgOptions<float>& options, DrawPosition pos, ObjectiveScale<float> scale,
                                const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad,
                                void* workspace) {
  const std::size_t smem = cholesky_objectives::pathwise_shared_bytes(dim(head));
  cholesky_objectives::pathwise_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(
      head, targets, reward, options, pos, scale, rows, grad.mean, tril_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

bool pg_surrogate_cholesky_gaussian_fusable(const CholeskyGaussian<float>& head, std::int64_t generations) {
  return head.mean.cols <= kMaxCholeskyDim && generations <= cholesky_objectives::kFusedMaxGenerations;
}

void pg_surrogate_cholesky_gaussian(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                    MatrixView<const float> targets, const MahalanobisReward<float>& reward,
                                    const PgOptions<float>& options, DrawPosition pos, ObjectiveScale<float> scale,
                                    const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad,
                                    void* workspace) {
  const std::size_t smem = cholesky_objectives::surrogate_shared_bytes(dim(head), scale.generations);
  cholesky_objectives::surrogate_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(
      head, targets, reward, options, pos, scale, rows, grad.mean, tril_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

}  // namespace d2r::kernels
