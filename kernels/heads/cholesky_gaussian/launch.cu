// Launchers of the Cholesky-Gaussian head (device code beside it: distribution.cuh,
// second_order.cuh, objectives.cuh). The objective kernels (exact, its head Hessian and mixed
// product, pathwise, fused REINFORCE surrogate) write a shared (1-row) tril's per-row gradients
// to the first B x n(n+1)/2 floats of the workspace (shared_param_workspace_bytes) and
// column-sum them.
#include "kernels/heads/cholesky_gaussian/distribution.cuh"
#include "kernels/heads/cholesky_gaussian/objectives.cuh"
#include "kernels/heads/cholesky_gaussian/second_order.cuh"
#include "kernels/objectives/launch.hpp"
#include "kernels/checks/launch.hpp"
#include "kernels/heads/cholesky_gaussian/launch.hpp"

namespace d2r::kernels::cholesky_gaussian {

namespace {
using cholesky_gaussian::kThreads;
constexpr int kEntropyThreads = 256;
constexpr int kCheckThreads = 256;

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
  checks::column_sum(stream, MatrixView<const float>{static_cast<float*>(workspace), B, P, P}, grad.tril.data,
                     static_cast<float*>(workspace) + B * P);
}
}  // namespace

void sample(cudaStream_t stream, const CholeskyGaussian<float>& head, std::int64_t generations, DrawPosition pos,
            MatrixView<float> samples) {
  const std::size_t smem = cholesky_gaussian::forward_shared_bytes(dim(head));
  cholesky_gaussian::sample_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(head, generations, pos,
                                                                                            samples);
  D2R_CHECK_LAUNCH(stream);
}

void log_prob(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> samples,
              MatrixView<float> out) {
  const std::size_t smem = cholesky_gaussian::forward_shared_bytes(dim(head));
  cholesky_gaussian::log_prob_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(head, samples, out);
  D2R_CHECK_LAUNCH(stream);
}

void entropy(cudaStream_t stream, const CholeskyGaussian<float>& head, VectorView<float> out) {
  constexpr int kWarpsPerBlock = kEntropyThreads / kWarpSize;
  cholesky_gaussian::entropy_kernel<<<grid_size(head.mean.rows, kWarpsPerBlock), kEntropyThreads, 0, stream>>>(head,
                                                                                                             out);
  D2R_CHECK_LAUNCH(stream);
}

std::size_t backward_workspace_bytes(const CholeskyGaussian<float>& head) {
  if (!shared_tril(head)) return 0;
  const std::int64_t packed = cholesky_gaussian::packed_size(dim(head));
  const std::size_t per_row = static_cast<std::size_t>(head.mean.rows * packed) * sizeof(float);
  return per_row + checks::column_sum_workspace_bytes(head.mean.rows, packed);
}

void backward(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> samples,
              MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
              const CholeskyGaussianGrad<float>& grad, void* workspace) {
  const bool shared = shared_tril(head);
  const std::int64_t batch = head.mean.rows, packed = cholesky_gaussian::packed_size(dim(head));
  MatrixView<float> tril_target = grad.tril;
  if (shared) tril_target = MatrixView<float>{static_cast<float*>(workspace), batch, packed, packed};
  const std::size_t smem = cholesky_gaussian::backward_shared_bytes(dim(head));
  cholesky_gaussian::backward_kernel<<<grid_size(batch, 1), kThreads, smem, stream>>>(
      head, samples, d_log_prob, d_entropy, grad.mean, tril_target);
  D2R_CHECK_LAUNCH(stream);
  if (shared) {
    checks::column_sum(stream, tril_target, grad.tril.data, static_cast<float*>(workspace) + batch * packed);
  }
}

std::int64_t first_nonpositive_diagonal(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                        std::int64_t* scratch) {
  auto* first = reinterpret_cast<unsigned long long*>(scratch);
  // All bits set: the largest value, meaning "none" to atomicMin.
  D2R_CUDA_TRY(cudaMemsetAsync(first, 0xff, sizeof(unsigned long long), stream));
  const std::int64_t work = head.tril.rows * head.mean.cols;
  cholesky_gaussian::nonpositive_diagonal_kernel<<<grid_size(work, kCheckThreads, 4096), kCheckThreads, 0, stream>>>(
      head.tril, dim(head), head.jitter, first);
  D2R_CHECK_LAUNCH(stream);
  unsigned long long result = 0;
  D2R_CUDA_TRY(cudaMemcpyAsync(&result, first, sizeof result, cudaMemcpyDeviceToHost, stream));
  D2R_CUDA_TRY(cudaStreamSynchronize(stream));
  return result == ~0ULL ? -1 : static_cast<std::int64_t>(result);
}

}  // namespace d2r::kernels::cholesky_gaussian

// ---- second order (device code at the end of cholesky_gaussian.cuh)
namespace d2r::kernels::cholesky_gaussian {

void log_prob_jvp(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> samples,
                  const CholeskyGaussian<float>& tangent, MatrixView<float> out) {
  const std::size_t smem = cholesky_gaussian::log_prob_jvp_shared_bytes(dim(head));
  cholesky_gaussian::log_prob_jvp_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(head, samples,
                                                                                                  tangent, out);
  D2R_CHECK_LAUNCH(stream);
}

std::size_t backward_tangent_workspace_bytes(const CholeskyGaussian<float>& head) {
  return backward_workspace_bytes(head);  // the same per-row rows and column sum
}

void backward_tangent(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> samples,
                      MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                      const CholeskyGaussian<float>& tangent, const CholeskyGaussianGrad<float>& grad_tangent,
                      void* workspace) {
  const bool shared = shared_tril(head);
  const std::int64_t batch = head.mean.rows, packed = cholesky_gaussian::packed_size(dim(head));
  MatrixView<float> tril_target = grad_tangent.tril;
  if (shared) tril_target = MatrixView<float>{static_cast<float*>(workspace), batch, packed, packed};
  const std::size_t smem = cholesky_gaussian::backward_tangent_shared_bytes(dim(head));
  cholesky_gaussian::backward_tangent_kernel<<<grid_size(batch, 1), kThreads, smem, stream>>>(
      head, samples, d_log_prob, d_entropy, tangent, grad_tangent.mean, tril_target);
  D2R_CHECK_LAUNCH(stream);
  if (shared) {
    checks::column_sum(stream, tril_target, grad_tangent.tril.data, static_cast<float*>(workspace) + batch * packed);
  }
}

// ---------------------------------------------------------------- objectives

void exact_objective(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                     const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                     const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad, void* workspace) {
  const std::size_t smem = cholesky_objectives::exact_shared_bytes(dim(head));
  cholesky_objectives::exact_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(
      head, targets, reward, entropy_weight, scale, rows, grad.mean, tril_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

void exact_backward_tangent(cudaStream_t stream, const CholeskyGaussian<float>& head,
                            const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                            const CholeskyGaussian<float>& tangent, const CholeskyGaussianGrad<float>& grad_tangent,
                            void* workspace) {
  const std::size_t smem = cholesky_objectives::exact_tangent_shared_bytes(dim(head));
  cholesky_objectives::exact_tangent_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(
      head, reward, entropy_weight, scale.per_dim / scale.normaliser, tangent, grad_tangent.mean,
      tril_target(head, grad_tangent, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad_tangent, workspace);
}

void exact_mixed_product(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                         const MahalanobisReward<float>& reward, float k, const CholeskyGaussian<float>& tangent,
                         VectorView<float> grad, void* workspace) {
  // Per-row partials (B x P, the first floats of exact_mixed_product_workspace_bytes) then their
  // deterministic column sum.
  const std::int64_t rows = head.mean.rows, p = reward.params.size;
  const MatrixView<float> partial{static_cast<float*>(workspace), rows, p, p};
  const std::size_t smem = cholesky_objectives::exact_mixed_shared_bytes(dim(head));
  cholesky_objectives::exact_mixed_kernel<<<grid_size(rows, 1), kThreads, smem, stream>>>(head, targets, reward, k,
                                                                                          tangent, partial);
  D2R_CHECK_LAUNCH(stream);
  checks::column_sum(stream, partial, grad.data, static_cast<float*>(workspace) + rows * p);
}

void pg_pathwise(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                 const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                 ObjectiveScale<float> scale, const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad,
                 void* workspace) {
  const std::size_t smem = cholesky_objectives::pathwise_shared_bytes(dim(head));
  cholesky_objectives::pathwise_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(
      head, targets, reward, options, pos, scale, rows, grad.mean, tril_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

bool pg_surrogate_fusable(const CholeskyGaussian<float>& head, std::int64_t generations) {
  return head.mean.cols <= kMaxCholeskyDim && generations <= cholesky_objectives::kFusedMaxGenerations;
}

void pg_surrogate(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                  const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                  ObjectiveScale<float> scale, const ObjectiveRows<float>& rows,
                  const CholeskyGaussianGrad<float>& grad, void* workspace) {
  const std::size_t smem = cholesky_objectives::surrogate_shared_bytes(dim(head), scale.generations);
  cholesky_objectives::surrogate_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(
      head, targets, reward, options, pos, scale, rows, grad.mean, tril_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

}  // namespace d2r::kernels::cholesky_gaussian
