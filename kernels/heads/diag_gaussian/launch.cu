// Launchers of the diagonal-Gaussian head (device code beside it: distribution.cuh, objectives.cuh,
// second_order.cuh). A shared (1-row) log_std receives the column sum of per-row gradients written
// to the workspace.
#include <algorithm>

#include "kernels/heads/diag_gaussian/distribution.cuh"
#include "kernels/heads/diag_gaussian/objectives.cuh"
#include "kernels/heads/diag_gaussian/second_order.cuh"
#include "kernels/objectives/launch.hpp"
#include "kernels/checks/launch.hpp"
#include "kernels/heads/diag_gaussian/launch.hpp"

namespace d2r::kernels::diag_gaussian {
namespace {
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarpSize;
bool shared_log_std(const DiagGaussian<float>& head) { return head.log_std.rows == 1 && head.mean.rows > 1; }
constexpr int kRowThreads = 128;  // one thread per row

/// Block size and dynamic shared memory of a one-thread-per-row kernel that keeps
/// `floats_per_thread` floats per thread for a full U: as many threads per block as fit in
/// kPathwiseSharedBytes (the caller checked that one does). No scratch for the other forms.
struct RowLaunch {
  int threads = kRowThreads;
  std::size_t smem = 0;
};
RowLaunch full_u_launch(const MahalanobisReward<float>& reward, std::int64_t floats_per_thread) {
  if (reward.form != RewardForm::full) return {};
  const std::int64_t per_thread = floats_per_thread * static_cast<std::int64_t>(sizeof(float));
  const auto threads = static_cast<int>(std::clamp<std::int64_t>(kPathwiseSharedBytes / per_thread, 1, kRowThreads));
  return {threads, static_cast<std::size_t>(threads * per_thread)};
}

/// Where a kernel writes the log_std gradient of each row: grad.log_std itself, or the workspace.
MatrixView<float> log_std_target(const DiagGaussian<float>& head, const DiagGaussianGrad<float>& grad, void* workspace) {
  if (!shared_log_std(head)) return grad.log_std;
  return {static_cast<float*>(workspace), head.mean.rows, head.mean.cols, head.mean.cols};
}
void finish_shared(cudaStream_t stream, const DiagGaussian<float>& head, const DiagGaussianGrad<float>& grad,
                   void* workspace) {
  if (!shared_log_std(head)) return;
  const std::int64_t B = head.mean.rows, n = head.mean.cols;
  checks::column_sum(stream, MatrixView<const float>{static_cast<float*>(workspace), B, n, n}, grad.log_std.data,
                     static_cast<float*>(workspace) + B * n);
}
}  // namespace

void sample(cudaStream_t stream, const DiagGaussian<float>& head, std::int64_t generations, DrawPosition pos,
            MatrixView<float> samples) {
  const std::int64_t work = samples.rows * ((head.mean.cols + 3) / 4);
  diag_gaussian::sample_kernel<<<grid_size(work, kThreads), kThreads, 0, stream>>>(head, generations, pos, samples);
  D2R_CHECK_LAUNCH(stream);
}

void log_prob(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
              MatrixView<float> out) {
  diag_gaussian::log_prob_kernel<<<grid_size(samples.rows, kWarpsPerBlock), kThreads, 0, stream>>>(head, samples, out);
  D2R_CHECK_LAUNCH(stream);
}

void entropy(cudaStream_t stream, const DiagGaussian<float>& head, VectorView<float> out) {
  diag_gaussian::entropy_kernel<<<grid_size(head.mean.rows, kWarpsPerBlock), kThreads, 0, stream>>>(head, out);
  D2R_CHECK_LAUNCH(stream);
}

std::size_t backward_workspace_bytes(const DiagGaussian<float>& head) {
  if (!shared_log_std(head)) return 0;
  const std::size_t per_row = static_cast<std::size_t>(head.mean.rows * head.mean.cols) * sizeof(float);
  return per_row + checks::column_sum_workspace_bytes(head.mean.rows, head.mean.cols);
}

void backward(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
              MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
              const DiagGaussianGrad<float>& grad, void* workspace) {
  diag_gaussian::backward_kernel<<<grid_size(head.mean.rows * head.mean.cols, kThreads), kThreads, 0, stream>>>(
      head, samples, d_log_prob, d_entropy, grad.mean, log_std_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

void log_prob_jvp(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                  const DiagGaussian<float>& tangent, MatrixView<float> out) {
  diag_gaussian::log_prob_jvp_kernel<<<grid_size(samples.rows, kWarpsPerBlock), kThreads, 0, stream>>>(head, samples,
                                                                                                      tangent, out);
  D2R_CHECK_LAUNCH(stream);
}

void backward_tangent(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                      MatrixView<const float> d_log_prob, const DiagGaussian<float>& tangent,
                      const DiagGaussianGrad<float>& grad_tangent, void* workspace) {
  diag_gaussian::backward_tangent_kernel<<<grid_size(head.mean.rows * head.mean.cols, kThreads), kThreads, 0,
                                           stream>>>(head, samples, d_log_prob, tangent, grad_tangent.mean,
                                                     log_std_target(head, grad_tangent, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad_tangent, workspace);
}

// ---------------------------------------------------------------- objectives

void exact_objective(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                     const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                     const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad, void* workspace) {
  const RowLaunch launch = full_u_launch(reward, head.mean.cols);
  diag_gaussian::exact_kernel<<<grid_size(head.mean.rows, launch.threads), launch.threads, launch.smem, stream>>>(
      head, targets, reward, entropy_weight, scale, rows, grad.mean, log_std_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

void exact_backward_tangent(cudaStream_t stream, const DiagGaussian<float>& head,
                            const MahalanobisReward<float>& reward, ObjectiveScale<float> scale,
                            const DiagGaussian<float>& tangent, const DiagGaussianGrad<float>& grad_tangent,
                            void* workspace) {
  const RowLaunch launch = full_u_launch(reward, head.mean.cols);
  diag_gaussian::exact_tangent_kernel<<<grid_size(head.mean.rows, launch.threads), launch.threads, launch.smem, stream>>>(
      head, reward, scale.per_dim / scale.normaliser, tangent, grad_tangent.mean,
      log_std_target(head, grad_tangent, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad_tangent, workspace);
}

void pg_pathwise(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                 const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                 ObjectiveScale<float> scale, const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad,
                 void* workspace) {
  const RowLaunch launch = full_u_launch(reward, 2 * head.mean.cols);  // n <= kPathwiseMaxFullDim: caller
  diag_gaussian::pathwise_kernel<<<grid_size(head.mean.rows, launch.threads), launch.threads, launch.smem, stream>>>(
      head, targets, reward, options, pos, scale, rows, grad.mean, log_std_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

bool pg_surrogate_fusable(const DiagGaussian<float>& head, std::int64_t generations) {
  return head.mean.cols <= diag_gaussian::kFusedMaxDim && generations <= diag_gaussian::kFusedMaxGenerations;
}

void pg_surrogate(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                  const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                  ObjectiveScale<float> scale, const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad,
                  void* workspace) {
  constexpr int threads = diag_gaussian::kFusedWarpsPerBlock * kWarpSize;
  const std::size_t smem =
      static_cast<std::size_t>(diag_gaussian::kFusedWarpsPerBlock * (2 * scale.generations + head.mean.cols)) * sizeof(float);
  if (smem > 48 * 1024) {
    D2R_CUDA_TRY(cudaFuncSetAttribute(diag_gaussian::fused_surrogate_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
  }
  diag_gaussian::fused_surrogate_kernel<<<grid_size(head.mean.rows, diag_gaussian::kFusedWarpsPerBlock), threads, smem,
                                       stream>>>(head, targets, reward, options, pos, scale, rows, grad.mean,
                                                 log_std_target(head, grad, workspace));
  D2R_CHECK_LAUNCH(stream);
  finish_shared(stream, head, grad, workspace);
}

// ---------------------------------------------------------------- exact mixed product

void exact_mixed_product(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                         const MahalanobisReward<float>& reward, float k, const DiagGaussian<float>& tangent,
                         VectorView<float> grad, void* workspace) {
  const std::int64_t rows = head.mean.rows, p = reward.params.size;
  const MatrixView<float> partial{static_cast<float*>(workspace), rows, p, p};
  const std::int64_t columns = reward.form == RewardForm::scalar ? 1 : head.mean.cols;
  diag_gaussian::exact_mixed_rows_kernel<<<grid_size(rows * columns, kThreads), kThreads, 0, stream>>>(head, targets, reward, k,
                                                                                             tangent, partial);
  D2R_CHECK_LAUNCH(stream);
  checks::column_sum(stream, partial, grad.data, static_cast<float*>(workspace) + rows * p);
}

}  // namespace d2r::kernels::diag_gaussian
