#pragma once
// Host-callable launchers of the CUDA kernels (plain C++: host/src includes this without nvcc).
// Each launcher enqueues work on `stream` and checks the launch; none synchronises unless its
// comment says so. Arguments are already validated by the public entry points in host/src.

#include <cstdint>

#include <cuda_runtime_api.h>

#include "d2r/distributions.hpp"
#include "d2r/objectives.hpp"
#include "d2r/view.hpp"
#include "kernels/math/philox.hpp"

namespace d2r::kernels {

using math::DrawPosition;

// ---- value checks (value_checks.cu). Each returns the row-major linear index (r * cols + c)
// of the first offending element, or -1; each synchronises `stream`. `scratch` is 8 device bytes.
std::int64_t first_nonfinite(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch);
/// First NaN or +inf element of logits.
std::int64_t first_bad_logit(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch);
/// First row whose entries are all -inf (returns the row index).
std::int64_t first_row_without_finite(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch);
std::int64_t first_index_out_of_range(cudaStream_t stream, MatrixView<const std::int32_t> m, std::int32_t upper,
                                      std::int64_t* scratch);

// ---- deterministic column sums (column_sum.cu): out[c] = Σ_r in(r, c), summed in a fixed
// order that depends only on the shape (never on the device or on timing).
std::size_t column_sum_workspace_bytes(std::int64_t rows, std::int64_t cols);
void column_sum(cudaStream_t stream, MatrixView<const float> in, float* out, void* workspace);

// ---- diagonal Gaussian (diag_gaussian.cu)
void diag_gaussian_sample(cudaStream_t stream, const DiagGaussian<float>& head, std::int64_t generations,
                          DrawPosition pos, MatrixView<float> samples);
void diag_gaussian_log_prob(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                            MatrixView<float> out);
void diag_gaussian_entropy(cudaStream_t stream, const DiagGaussian<float>& head, VectorView<float> out);
/// `workspace`: diag_gaussian_backward_workspace_bytes(...) device bytes (0 when log_std is per-row).
std::size_t diag_gaussian_backward_workspace_bytes(const DiagGaussian<float>& head);
void diag_gaussian_backward(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                            MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                            const DiagGaussianGrad<float>& grad, void* workspace);

// ---- Cholesky Gaussian (cholesky_gaussian.cu)
void cholesky_gaussian_sample(cudaStream_t stream, const CholeskyGaussian<float>& head, std::int64_t generations,
                              DrawPosition pos, MatrixView<float> samples);
void cholesky_gaussian_log_prob(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                MatrixView<const float> samples, MatrixView<float> out);
void cholesky_gaussian_entropy(cudaStream_t stream, const CholeskyGaussian<float>& head, VectorView<float> out);
/// Row-major index (r * n + i) of the first diagonal entry with softplus(raw_ii) + jitter not > 0,
/// or -1; synchronises `stream`. `scratch` is 8 device bytes.
std::int64_t cholesky_first_nonpositive_diagonal(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                                 std::int64_t* scratch);
std::size_t cholesky_gaussian_backward_workspace_bytes(const CholeskyGaussian<float>& head);
void cholesky_gaussian_backward(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                MatrixView<const float> samples, MatrixView<const float> d_log_prob,
                                VectorView<const float> d_entropy, const CholeskyGaussianGrad<float>& grad,
                                void* workspace);

// ---- categorical (categorical.cu)
void categorical_sample(cudaStream_t stream, const Categorical<float>& head, std::int64_t generations,
                        DrawPosition pos, MatrixView<std::int32_t> samples);
void categorical_log_prob(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
                          MatrixView<float> out);
void categorical_entropy(cudaStream_t stream, const Categorical<float>& head, VectorView<float> out);
void categorical_backward(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
                          MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                          const CategoricalGrad<float>& grad);

}  // namespace d2r::kernels

// ---- rewards and group transforms (rewards.cu)
namespace d2r::kernels {
void reward_continuous(cudaStream_t stream, const MahalanobisReward<float>& reward, MatrixView<const float> samples,
                       MatrixView<const float> targets, MatrixView<float> out);
void reward_one_hot(cudaStream_t stream, const MahalanobisReward<float>& reward, MatrixView<const std::int32_t> samples,
                    VectorView<const std::int32_t> labels, std::int64_t classes, MatrixView<float> out);
std::size_t reward_backward_continuous_workspace_bytes(const MahalanobisReward<float>& reward, std::int64_t rows,
                                                       std::int64_t dim, std::int64_t generations);
void reward_backward_continuous(cudaStream_t stream, const MahalanobisReward<float>& reward,
                                MatrixView<const float> samples, MatrixView<const float> targets,
                                MatrixView<const float> d_reward, VectorView<float> grad, void* workspace);
std::size_t reward_backward_one_hot_workspace_bytes(const MahalanobisReward<float>& reward, std::int64_t rows,
                                                    std::int64_t classes);
void reward_backward_one_hot(cudaStream_t stream, const MahalanobisReward<float>& reward,
                             MatrixView<const std::int32_t> samples, VectorView<const std::int32_t> labels,
                             std::int64_t classes, MatrixView<const float> d_reward, VectorView<float> grad,
                             void* workspace);
void transform_rewards(cudaStream_t stream, const TransformOptions<float>& options, MatrixView<const float> rewards,
                       MatrixView<float> advantages);
}  // namespace d2r::kernels

// ---- objectives (objectives.cu and the head families' files)
namespace d2r::kernels {
/// Scale factors of an objective: pd (1/n or 1), N, G.
struct ObjectiveScale {
  float per_dim;
  float normaliser;
  std::int64_t generations;
};
/// Per-row surrogate terms and the cotangents for backward (see reference::pg_row_terms).
void pg_row_terms(cudaStream_t stream, const PgOptions<float>& options, ObjectiveScale scale,
                  MatrixView<const float> log_prob, MatrixView<const float> rewards, MatrixView<const float> advantages,
                  VectorView<const float> entropy, MatrixView<float> d_log_prob, VectorView<float> d_entropy,
                  const ObjectiveRows<float>& rows);
/// Workspace of the objective kernels of the Gaussian heads: per-row gradients of a shared
/// log_std / tril (B x P floats) and their column sum; 0 when the parameter is per row.
std::size_t shared_param_workspace_bytes(std::int64_t rows, std::int64_t params, bool shared);

void exact_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                         const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale scale,
                         const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad, void* workspace);
void pathwise_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                            const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                            ObjectiveScale scale, const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad,
                            void* workspace);
/// Whether the fused kernel takes this size (n <= 128, G <= 1024); otherwise compose primitives.
bool pg_surrogate_diag_gaussian_fusable(const DiagGaussian<float>& head, std::int64_t generations);
/// Fused REINFORCE surrogate of the diagonal-Gaussian head: one warp per row, noise regenerated
/// from Philox in the second pass instead of storing B·G·n samples.
void pg_surrogate_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                                const MahalanobisReward<float>& reward, const PgOptions<float>& options,
                                DrawPosition pos, ObjectiveScale scale, const ObjectiveRows<float>& rows,
                                const DiagGaussianGrad<float>& grad, void* workspace);

void exact_cholesky_gaussian(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                             const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale scale,
                             const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad,
                             void* workspace);
void pathwise_cholesky_gaussian(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                MatrixView<const float> targets, const MahalanobisReward<float>& reward,
                                const PgOptions<float>& options, DrawPosition pos, ObjectiveScale scale,
                                const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad,
                                void* workspace);
void exact_categorical(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                       const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale scale,
                       const ObjectiveRows<float>& rows, const CategoricalGrad<float>& grad);
}  // namespace d2r::kernels
