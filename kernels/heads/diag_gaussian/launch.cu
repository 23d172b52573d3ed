// Launchers of the diagonal-Gaussian head kernels (device code in diag_gaussian.cuh).
#include "kernels/heads/diag_gaussian/distribution.cuh"
#include "kernels/checks/launch.hpp"
#include "kernels/heads/diag_gaussian/launch.hpp"

namespace d2r::kernels {
namespace {
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarpSize;
bool shared_log_std(const DiagGaussian<float>& head) { return head.log_std.rows == 1 && head.mean.rows > 1; }
}  // namespace

void diag_gaussian_sample(cudaStream_t stream, const DiagGaussian<float>& head, std::int64_t generations,
                          DrawPosition pos, MatrixView<float> samples) {
  const std::int64_t work = samples.rows * ((head.mean.cols + 3) / 4);
  diag_gaussian::sample_kernel<<<grid_size(work, kThreads), kThreads, 0, stream>>>(head, generations, pos, samples);
  D2R_CHECK_LAUNCH(stream);
}

void diag_gaussian_log_prob(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                            MatrixView<float> out) {
  diag_gaussian::log_prob_kernel<<<grid_size(samples.rows, kWarpsPerBlock), kThreads, 0, stream>>>(head, samples, out);
  D2R_CHECK_LAUNCH(stream);
}

void diag_gaussian_entropy(cudaStream_t stream, const DiagGaussian<float>& head, VectorView<float> out) {
  diag_gaussian::entropy_kernel<<<grid_size(head.mean.rows, kWarpsPerBlock), kThreads, 0, stream>>>(head, out);
  D2R_CHECK_LAUNCH(stream);
}

std::size_t diag_gaussian_backward_workspace_bytes(const DiagGaussian<float>& head) {
  if (!shared_log_std(head)) return 0;
  const std::size_t per_row = static_cast<std::size_t>(head.mean.rows * head.mean.cols) * sizeof(float);
  return per_row + column_sum_workspace_bytes(head.mean.rows, head.mean.cols);
}

void diag_gaussian_backward(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                            MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                            const DiagGaussianGrad<float>& grad, void* workspace) {
  const bool shared = shared_log_std(head);
  const std::int64_t batch = head.mean.rows, n = head.mean.cols;
  MatrixView<float> log_std_target = grad.log_std;
  if (shared) log_std_target = MatrixView<float>{static_cast<float*>(workspace), batch, n, n};
  diag_gaussian::backward_kernel<<<grid_size(batch * n, kThreads), kThreads, 0, stream>>>(
      head, samples, d_log_prob, d_entropy, grad.mean, log_std_target);
  D2R_CHECK_LAUNCH(stream);
  if (shared) {
    column_sum(stream, log_std_target, grad.log_std.data, static_cast<float*>(workspace) + batch * n);
  }
}

void diag_gaussian_log_prob_jvp(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                                const DiagGaussian<float>& tangent, MatrixView<float> out) {
  diag_gaussian::log_prob_jvp_kernel<<<grid_size(samples.rows, kWarpsPerBlock), kThreads, 0, stream>>>(head, samples,
                                                                                                      tangent, out);
  D2R_CHECK_LAUNCH(stream);
}

void diag_gaussian_backward_tangent(cudaStream_t stream, const DiagGaussian<float>& head,
                                    MatrixView<const float> samples, MatrixView<const float> d_log_prob,
                                    const DiagGaussian<float>& tangent, const DiagGaussianGrad<float>& grad_tangent,
                                    void* workspace) {
  const bool shared = shared_log_std(head);
  const std::int64_t batch = head.mean.rows, n = head.mean.cols;
  MatrixView<float> log_std_target = grad_tangent.log_std;
  if (shared) log_std_target = MatrixView<float>{static_cast<float*>(workspace), batch, n, n};
  diag_gaussian::backward_tangent_kernel<<<grid_size(batch * n, kThreads), kThreads, 0, stream>>>(
      head, samples, d_log_prob, tangent, grad_tangent.mean, log_std_target);
  D2R_CHECK_LAUNCH(stream);
  if (shared) {
    column_sum(stream, log_std_target, grad_tangent.log_std.data, static_cast<float*>(workspace) + batch * n);
  }
}

}  // namespace d2r::kernels
