// Launchers of the Cholesky-Gaussian head kernels (device code in cholesky_gaussian.cuh).
#include "kernels/heads/cholesky_gaussian/distribution.cuh"
#include "kernels/checks/launch.hpp"
#include "kernels/heads/cholesky_gaussian/launch.hpp"

namespace d2r::kernels {

namespace {
using cholesky_gaussian::kThreads;
constexpr int kEntropyThreads = 256;
constexpr int kCheckThreads = 256;

bool shared_tril(const CholeskyGaussian<float>& head) { return head.tril.rows == 1 && head.mean.rows > 1; }
int dim(const CholeskyGaussian<float>& head) { return static_cast<int>(head.mean.cols); }
}  // namespace

void cholesky_gaussian_sample(cudaStream_t stream, const CholeskyGaussian<float>& head, std::int64_t generations,
                              DrawPosition pos, MatrixView<float> samples) {
  const std::size_t smem = cholesky_gaussian::forward_shared_bytes(dim(head));
  cholesky_gaussian::sample_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(head, generations, pos,
                                                                                            samples);
  D2R_CHECK_LAUNCH(stream);
}

void cholesky_gaussian_log_prob(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                MatrixView<const float> samples, MatrixView<float> out) {
  const std::size_t smem = cholesky_gaussian::forward_shared_bytes(dim(head));
  cholesky_gaussian::log_prob_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(head, samples, out);
  D2R_CHECK_LAUNCH(stream);
}

void cholesky_gaussian_entropy(cudaStream_t stream, const CholeskyGaussian<float>& head, VectorView<float> out) {
  constexpr int kWarpsPerBlock = kEntropyThreads / kWarpSize;
  cholesky_gaussian::entropy_kernel<<<grid_size(head.mean.rows, kWarpsPerBlock), kEntropyThreads, 0, stream>>>(head,
                                                                                                             out);
  D2R_CHECK_LAUNCH(stream);
}

std::size_t cholesky_gaussian_backward_workspace_bytes(const CholeskyGaussian<float>& head) {
  if (!shared_tril(head)) return 0;
  const std::int64_t packed = cholesky_gaussian::packed_size(dim(head));
  const std::size_t per_row = static_cast<std::size_t>(head.mean.rows * packed) * sizeof(float);
  return per_row + column_sum_workspace_bytes(head.mean.rows, packed);
}

void cholesky_gaussian_backward(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                MatrixView<const float> samples, MatrixView<const float> d_log_prob,
                                VectorView<const float> d_entropy, const CholeskyGaussianGrad<float>& grad,
                                void* workspace) {
  const bool shared = shared_tril(head);
  const std::int64_t batch = head.mean.rows, packed = cholesky_gaussian::packed_size(dim(head));
  MatrixView<float> tril_target = grad.tril;
  if (shared) tril_target = MatrixView<float>{static_cast<float*>(workspace), batch, packed, packed};
  const std::size_t smem = cholesky_gaussian::backward_shared_bytes(dim(head));
  cholesky_gaussian::backward_kernel<<<grid_size(batch, 1), kThreads, smem, stream>>>(
      head, samples, d_log_prob, d_entropy, grad.mean, tril_target);
  D2R_CHECK_LAUNCH(stream);
  if (shared) {
    column_sum(stream, tril_target, grad.tril.data, static_cast<float*>(workspace) + batch * packed);
  }
}

std::int64_t cholesky_first_nonpositive_diagonal(cudaStream_t stream, const CholeskyGaussian<float>& head,
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

}  // namespace d2r::kernels

// ---- second order (device code at the end of cholesky_gaussian.cuh)
namespace d2r::kernels {

void cholesky_gaussian_log_prob_jvp(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                    MatrixView<const float> samples, const CholeskyGaussian<float>& tangent,
                                    MatrixView<float> out) {
  const std::size_t smem = cholesky_gaussian::log_prob_jvp_shared_bytes(dim(head));
  cholesky_gaussian::log_prob_jvp_kernel<<<grid_size(head.mean.rows, 1), kThreads, smem, stream>>>(head, samples,
                                                                                                  tangent, out);
  D2R_CHECK_LAUNCH(stream);
}

std::size_t cholesky_gaussian_backward_tangent_workspace_bytes(const CholeskyGaussian<float>& head) {
  return cholesky_gaussian_backward_workspace_bytes(head);  // the same per-row rows and column sum
}

void cholesky_gaussian_backward_tangent(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                        MatrixView<const float> samples, MatrixView<const float> d_log_prob,
                                        VectorView<const float> d_entropy, const CholeskyGaussian<float>& tangent,
                                        const CholeskyGaussianGrad<float>& grad_tangent, void* workspace) {
  const bool shared = shared_tril(head);
  const std::int64_t batch = head.mean.rows, packed = cholesky_gaussian::packed_size(dim(head));
  MatrixView<float> tril_target = grad_tangent.tril;
  if (shared) tril_target = MatrixView<float>{static_cast<float*>(workspace), batch, packed, packed};
  const std::size_t smem = cholesky_gaussian::backward_tangent_shared_bytes(dim(head));
  cholesky_gaussian::backward_tangent_kernel<<<grid_size(batch, 1), kThreads, smem, stream>>>(
      head, samples, d_log_prob, d_entropy, tangent, grad_tangent.mean, tril_target);
  D2R_CHECK_LAUNCH(stream);
  if (shared) {
    column_sum(stream, tril_target, grad_tangent.tril.data, static_cast<float*>(workspace) + batch * packed);
  }
}

}  // namespace d2r::kernels
