#pragma once
// Host-callable launchers of the CUDA kernels (plain C++: host/src includes this without nvcc).
// Each launcher enqueues work on `stream` and checks the launch; none synchronises unless its
// comment says so. Arguments are already validated by the public entry points in host/src.

#include <cstdint>

#include <cuda_runtime_api.h>

#include "d2r/distributions.hpp"
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
