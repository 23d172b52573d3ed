// Launchers of the objective kernels of the diagonal-Gaussian head and of the per-row terms
// (device code in objectives.cuh). A shared (1-row) log_std receives the column sum of per-row
// gradients written to the workspace.
#include <algorithm>

#include "kernels/checks/launch.hpp"
#include "kernels/heads/diag_gaussian/launch.hpp"
#include "kernels/objectives/launch.hpp"
#include "kernels/heads/diag_gaussian/objectives.cuh"

namespace d2r::kernels {
namespace {
constexpr int kThreads = 128;

/// Block size and dynamic shared memory of a one-thread-per-row kernel that keeps
/// `floats_per_thread` floats per thread for a full U: as many threads per block as fit in
/// kPathwiseSharedBytes (the caller checked that one does). No scratch for the other forms.
struct RowLaunch {
  int threads = kThreads;
  std::size_t smem = 0;
};
RowLaunch full_u_launch(const MahalanobisReward<float>& reward, std::int64_t floats_per_thread) {
  if (reward.form != RewardForm::full) return {};
  const std::int64_t per_thread = floats_per_thread * static_cast<std::int64_t>(sizeof(float));
  const auto threads = static_cast<int>(std::clamp<std::int64_t>(kPathwiseSharedBytes / per_thread, 1, kThreads));
  return {threads, static_cast<std::size_t>(threads * per_thread)};
}

bool shared_log_std(const DiagGaussian<float>& head) { return head.log_std.rows == 1 && head.mean.rows > 1; }

/// Where a kernel writes the log_std gradient of each row: grad.log_std itself, or the workspace.
MatrixView<float> log_std_target(const DiagGaussian<float>& head, const DiagGaussianGrad<float>& grad, void* workspace) {
  if (!shared_log_std(head)) return grad.log_std;
  return {static_cast<float*>(workspace), head.mean.rows, head.mean.cols, head.mean.cols};
}
void finish_shared(cudaStream_t stream, const DiagGaussian<float>& head, const DiagGaussianGrad<float>& grad,
                   void* workspace) {
  if (!shared_log_std(head)) return;
  const std::int64_t B = head.mean.rows, n = head.mean.cols;
  column_sum(stream, MatrixView<const float>{static_cast<float*>(workspace), B, n, n}, grad.log_std.data,
             static_cast<float*>(workspace) + B * n);
}
}  // namespace

std::size_t shared_param_workspace_bytes(std::int64_t rows, std::int64_t params, bool shared) {
  if (!shared) return 0;
  return static_cast<std::size_t>(rows * params) * sizeof(float) + column_sum_workspace_bytes(rows, params);
}

void pg_row_terms(cudaStream_t stream, const PgOptions<float>& options, ObjectiveScale<float> scale,
                  MatrixView<const float> log_prob, MatrixView<const float> rewards, MatrixView<const float> advantages,
                  VectorView<const float> entropy, MatrixView<float> d_log_prob, VectorView<float> d_entropy,
                  const ObjectiveRows<float>& rows) {
  objectives::row_terms_kernel<<<grid_size(log_prob.rows, kThreads), kThreads, 0, stream>>>(
      options, scale, log_prob, rewards, advantages, entropy, d_log_prob, d_entropy, rows);
  D2R_CHECK_LAUNCH(stream);
}

void exact_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                         const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                         const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad, void* workspace) {
  const RowLaunch launch = full_u_launch(reward, head.mean.cols);
  objectives::exact_kernel<<<grid_size(head.mean.rows, launch.threads), launch.threads, launch.smem, stream>>>(
      head, targets, reward, entropy_weight, scale, rows, grad.mean, log_std_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

void exact_diag_gaussian_tangent(cudaStream_t stream, const DiagGaussian<float>& head,
                                 const MahalanobisReward<float>& reward, ObjectiveScale<float> scale,
                                 const DiagGaussian<float>& tangent, const DiagGaussianGrad<float>& grad_tangent,
                                 void* workspace) {
  const RowLaunch launch = full_u_launch(reward, head.mean.cols);
  objectives::exact_tangent_kernel<<<grid_size(head.mean.rows, launch.threads), launch.threads, launch.smem, stream>>>(
      head, reward, scale.per_dim / scale.normaliser, tangent, grad_tangent.mean,
      log_std_target(head, grad_tangent, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad_tangent, workspace);
}

void pathwise_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                            const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                            ObjectiveScale<float> scale, const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad,
                            void* workspace) {
  const RowLaunch launch = full_u_launch(reward, 2 * head.mean.cols);  // n <= kPathwiseMaxFullDim: caller
  objectives::pathwise_kernel<<<grid_size(head.mean.rows, launch.threads), launch.threads, launch.smem, stream>>>(
      head, targets, reward, options, pos, scale, rows, grad.mean, log_std_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

bool pg_surrogate_diag_gaussian_fusable(const DiagGaussian<float>& head, std::int64_t generations) {
  return head.mean.cols <= objectives::kFusedMaxDim && generations <= objectives::kFusedMaxGenerations;
}

void pg_surrogate_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                                const MahalanobisReward<float>& reward, const PgOptions<float>& options,
                                DrawPosition pos, ObjectiveScale<float> scale, const ObjectiveRows<float>& rows,
                                const DiagGaussianGrad<float>& grad, void* workspace) {
  constexpr int threads = objectives::kFusedWarpsPerBlock * kWarpSize;
  const std::size_t smem =
      static_cast<std::size_t>(objectives::kFusedWarpsPerBlock * (2 * scale.generations + head.mean.cols)) * sizeof(float);
  if (smem > 48 * 1024) {
    D2R_CUDA_TRY(cudaFuncSetAttribute(objectives::fused_surrogate_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
  }
  objectives::fused_surrogate_kernel<<<grid_size(head.mean.rows, objectives::kFusedWarpsPerBlock), threads, smem,
                                       stream>>>(head, targets, reward, options, pos, scale, rows, grad.mean,
                                                 log_std_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

}  // namespace d2r::kernels
