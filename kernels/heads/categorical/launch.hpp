#pragma once
// Host-callable launchers of the categorical head (launch.cu beside it): its primitives, second-
// order pieces, objectives, fused surrogate and exact mixed product, with their fusion rules.
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

namespace d2r::kernels::categorical {

using math::DrawPosition;

void sample(cudaStream_t stream, const Categorical<float>& head, std::int64_t generations, DrawPosition pos,
            MatrixView<std::int32_t> samples);

void log_prob(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
              MatrixView<float> out);

void entropy(cudaStream_t stream, const Categorical<float>& head, VectorView<float> out);

void backward(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
              MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
              const CategoricalGrad<float>& grad);

/// Whether the fused categorical surrogate takes this size (G <= 1024: the G draws of a row in
/// shared memory); otherwise compose primitives.
bool pg_surrogate_fusable(const Categorical<float>& head, std::int64_t generations);

/// Fused REINFORCE surrogate of the categorical head (objectives.cuh): one block per row; the
/// logits are read in pass 1 (statistics), again only in the tiles that hold a draw, and once
/// more for the gradient (a row of C <= 2048 is read once); draws equal sample's; no
/// B x G intermediate in device memory.
void pg_surrogate(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                  const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                  ObjectiveScale<float> scale, const ObjectiveRows<float>& rows, const CategoricalGrad<float>& grad);

void exact_objective(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                     const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                     const ObjectiveRows<float>& rows, const CategoricalGrad<float>& grad);

/// Tangent of the exact objective's logits gradient (second_order.cuh, one block per row; see
/// reference::categorical::exact_backward_tangent). No workspace.
void exact_backward_tangent(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                            const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                            const Categorical<float>& tangent, const CategoricalGrad<float>& grad_tangent);

void log_prob_jvp(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
                  const Categorical<float>& tangent, MatrixView<float> out);

void backward_tangent(cudaStream_t stream, const Categorical<float>& head, MatrixView<const float> d_log_prob,
                      VectorView<const float> d_entropy, const Categorical<float>& tangent,
                      const CategoricalGrad<float>& grad_tangent);

void exact_mixed_product(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                         const MahalanobisReward<float>& reward, float k, const Categorical<float>& tangent,
                         VectorView<float> grad, void* workspace);

}  // namespace d2r::kernels::categorical
