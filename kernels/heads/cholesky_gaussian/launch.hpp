#pragma once
// Host-callable launchers of the Cholesky-Gaussian head (launch.cu beside it): its
// primitives, second-order pieces, objectives, fused surrogate and exact mixed product, with their workspace
// and fusion rules.
// Plain C++ (host/src includes it without nvcc; with -DD2R_ENABLE_CUDA=OFF nothing here is
// defined, and host/src reaches these only through run_on's cuda branch). Each launcher enqueues
// work on `stream` and checks the launch; none synchronises unless its comment says so.
// Arguments are already validated by the public entry points in host/src.

#include <cstddef>
#include <cstdint>

#include "common/math/philox.hpp"
#include "d2r/types/cuda.hpp"
#include "d2r/types/heads.hpp"
#include "d2r/types/objectives.hpp"
#include "d2r/view.hpp"

namespace d2r::kernels::cholesky_gaussian {

using math::DrawPosition;

void sample(cudaStream_t stream, const CholeskyGaussian<float>& head, std::int64_t generations, DrawPosition pos,
            MatrixView<float> samples);

void log_prob(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> samples,
              MatrixView<float> out);

void entropy(cudaStream_t stream, const CholeskyGaussian<float>& head, VectorView<float> out);

/// Row-major index (r * n + i) of the first diagonal entry with softplus(raw_ii) + jitter not > 0,
/// or -1; synchronises `stream`. `scratch` is 8 device bytes.
std::int64_t first_nonpositive_diagonal(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                        std::int64_t* scratch);

std::size_t backward_workspace_bytes(const CholeskyGaussian<float>& head);

void backward(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> samples,
              MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
              const CholeskyGaussianGrad<float>& grad, void* workspace);

void exact_objective(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                     const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                     const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad, void* workspace);

/// Tangent of the exact objective's head gradient (Cholesky Gaussian, see
/// reference::cholesky_gaussian::exact_backward_tangent); workspace as exact_objective.
void exact_backward_tangent(cudaStream_t stream, const CholeskyGaussian<float>& head,
                            const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                            const CholeskyGaussian<float>& tangent, const CholeskyGaussianGrad<float>& grad_tangent,
                            void* workspace);

void pg_pathwise(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                 const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                 ObjectiveScale<float> scale, const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad,
                 void* workspace);

/// Whether the fused Cholesky surrogate takes this size (n <= kMaxCholeskyDim, G <= 1024: the G
/// rewards and log-probabilities of a row in shared memory); otherwise compose primitives.
bool pg_surrogate_fusable(const CholeskyGaussian<float>& head, std::int64_t generations);

/// Fused REINFORCE surrogate of the Cholesky-Gaussian head (objectives.cuh, launch.cu): one warp per
/// row, the noise regenerated from Philox in the second pass; no B·G·n tensor and no B x G
/// intermediate in device memory. `workspace`: shared_param_workspace_bytes(B, n(n+1)/2, shared).
void pg_surrogate(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                  const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                  ObjectiveScale<float> scale, const ObjectiveRows<float>& rows,
                  const CholeskyGaussianGrad<float>& grad, void* workspace);

/// Cholesky Gaussian (device code in objectives.cuh: one warp per row).
void exact_mixed_product(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                         const MahalanobisReward<float>& reward, float k, const CholeskyGaussian<float>& tangent,
                         VectorView<float> grad, void* workspace);

/// out(b, g) = ∇_head log p(ŷ_bg) · tangent_b. One warp per row; no workspace.
void log_prob_jvp(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> samples,
                  const CholeskyGaussian<float>& tangent, MatrixView<float> out);

/// Per-row tril tangents (B x n(n+1)/2 floats) and their column sum when the tril is shared; else 0.
std::size_t backward_tangent_workspace_bytes(const CholeskyGaussian<float>& head);

/// Tangent of backward along `tangent` (samples and cotangents fixed).
void backward_tangent(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> samples,
                      MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                      const CholeskyGaussian<float>& tangent, const CholeskyGaussianGrad<float>& grad_tangent,
                      void* workspace);

}  // namespace d2r::kernels::cholesky_gaussian
