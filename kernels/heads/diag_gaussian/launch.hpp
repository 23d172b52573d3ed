#pragma once
// Host-callable launchers of the diagonal-Gaussian head (launch.cu beside it):
// its primitives, second-order pieces, objectives, fused surrogate and exact mixed product, with their
// workspace and fusion rules.
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

namespace d2r::kernels::diag_gaussian {

using math::DrawPosition;

void sample(cudaStream_t stream, const DiagGaussian<float>& head, std::int64_t generations, DrawPosition pos,
            MatrixView<float> samples);

void log_prob(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
              MatrixView<float> out);

void entropy(cudaStream_t stream, const DiagGaussian<float>& head, VectorView<float> out);

/// `workspace`: backward_workspace_bytes(...) device bytes (0 when log_std is per-row).
std::size_t backward_workspace_bytes(const DiagGaussian<float>& head);

void backward(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
              MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
              const DiagGaussianGrad<float>& grad, void* workspace);

void exact_objective(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                     const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                     const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad, void* workspace);

/// Shared memory the diagonal head's one-thread-per-row kernels may use for a full U: 2n floats
/// per thread for the pathwise kernel, n for the exact objective and its tangent; the largest n
/// that leaves at least one thread per block.
inline constexpr std::int64_t kPathwiseSharedBytes = 48 * 1024;

inline constexpr std::int64_t kPathwiseMaxFullDim = kPathwiseSharedBytes / (2 * 4);

inline constexpr std::int64_t kExactMaxFullDim = kPathwiseSharedBytes / 4;

void pg_pathwise(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                 const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                 ObjectiveScale<float> scale, const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad,
                 void* workspace);

/// Whether the fused kernel takes this size (n <= 128, G <= 1024); otherwise compose primitives.
bool pg_surrogate_fusable(const DiagGaussian<float>& head, std::int64_t generations);

/// Fused REINFORCE surrogate of the diagonal-Gaussian head: one warp per row, noise regenerated
/// from Philox in the second pass instead of storing B·G·n samples.
void pg_surrogate(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                  const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                  ObjectiveScale<float> scale, const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad,
                  void* workspace);

/// Tangent of the exact objective's head gradient (diagonal Gaussian); workspace as exact_objective.
void exact_backward_tangent(cudaStream_t stream, const DiagGaussian<float>& head,
                            const MahalanobisReward<float>& reward, ObjectiveScale<float> scale,
                            const DiagGaussian<float>& tangent, const DiagGaussianGrad<float>& grad_tangent,
                            void* workspace);

void log_prob_jvp(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                  const DiagGaussian<float>& tangent, MatrixView<float> out);

/// `workspace`: backward_workspace_bytes(head) device bytes.
void backward_tangent(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                      MatrixView<const float> d_log_prob, const DiagGaussian<float>& tangent,
                      const DiagGaussianGrad<float>& grad_tangent, void* workspace);

void exact_mixed_product(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                         const MahalanobisReward<float>& reward, float k, const DiagGaussian<float>& tangent,
                         VectorView<float> grad, void* workspace);

}  // namespace d2r::kernels::diag_gaussian
