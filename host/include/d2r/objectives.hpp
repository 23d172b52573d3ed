#pragma once
/// @file objectives.hpp
/// Rewards, advantage transforms and the inner objectives of d2r (DESIGN.md §4–5):
/// the Mahalanobis reward family, the group transforms over the G rewards of a row, the fused
/// policy-gradient head (REINFORCE surrogate and pathwise variant) and the exact-expectation
/// objective.
///
/// Normalisation. Objectives are means over the rows of the *whole* batch, which may be split
/// into shards (DESIGN.md §10). Each call writes per-row contributions already divided by
/// `normaliser_rows` (the whole batch's row count; 0 means this call's B), so the loss of the
/// whole batch is the plain sum of `row_loss` over all shards, and gradients of different
/// shards add up to the gradient of the whole batch.
///
/// @code
///   d2r::MahalanobisReward<float> reward{d2r::RewardForm::scalar, u_view};     // U = u·I
///   d2r::PgOptions<float> opt{.entropy_weight = 1.0f};
///   d2r::pg_surrogate(ctx, head, targets, reward, /*G=*/5, opt, {.step = k},
///                     {row_loss, row_reward}, {grad_mean, grad_log_std});
/// @endcode

#include <cstdint>

#include "d2r/context.hpp"
#include "d2r/distributions.hpp"
#include "d2r/types/objectives.hpp"
#include "d2r/view.hpp"

namespace d2r {

// ------------------------------------------------------------------ rewards
const char* to_string(RewardForm form) noexcept;

/// Number of parameters of `form` in `dim` dimensions: 1, dim or dim(dim+1)/2.
std::int64_t reward_param_count(RewardForm form, std::int64_t dim);

/// Rewards of Gaussian samples: out(b, g) = r_U(sample_bg, target_b).
/// samples (B·G) x n, targets B x n, out B x G.
template <class T>
void reward(Context& ctx, const MahalanobisReward<T>& reward, ConstMatrix<T> samples, ConstMatrix<T> targets,
            MatrixView<T> out);
/// Rewards of class samples: samples B x G indices, labels length B, both in [0, classes).
template <class T>
void reward(Context& ctx, const MahalanobisReward<T>& reward, MatrixView<const std::int32_t> samples,
            VectorView<const std::int32_t> labels, std::int64_t classes, MatrixView<T> out);

/// Gradient of Σ_bg d_reward(b,g) · r(b,g) with respect to reward.params (summed over rows in a
/// fixed order). ∂r/∂U = −(ŷ−y)(ŷ−y)ᵀ, chained to the chosen parameterisation.
template <class T>
void reward_backward(Context& ctx, const MahalanobisReward<T>& reward, ConstMatrix<T> samples, ConstMatrix<T> targets,
                     ConstMatrix<T> d_reward, VectorView<T> grad_params);
template <class T>
void reward_backward(Context& ctx, const MahalanobisReward<T>& reward, MatrixView<const std::int32_t> samples,
                     VectorView<const std::int32_t> labels, std::int64_t classes, ConstMatrix<T> d_reward,
                     VectorView<T> grad_params);

// ------------------------------------------------------------------ transforms
const char* to_string(Transform transform) noexcept;

/// advantages(b, g) = T(rewards(b, ·))_g; both B x G.
template <class T>
void transform_rewards(Context& ctx, const TransformOptions<T>& options, ConstMatrix<T> rewards,
                       MatrixView<T> advantages);

// ------------------------------------------------------------------ policy-gradient head
/// Fused REINFORCE surrogate: draws G samples per row (Philox key as in sample()), scores them,
/// transforms, and writes the per-row loss and the gradient with respect to the head outputs,
/// without storing the B·G·n samples. targets: B x n.
template <class T>
void pg_surrogate(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets,
                  const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                  DrawKey key, const ObjectiveRows<T>& rows, const DiagGaussianGrad<T>& grad);
template <class T>
void pg_surrogate(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                  const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                  DrawKey key, const ObjectiveRows<T>& rows, const CholeskyGaussianGrad<T>& grad);
/// Categorical head with class labels (length B) and a one-hot Mahalanobis reward.
template <class T>
void pg_surrogate(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                  const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                  DrawKey key, const ObjectiveRows<T>& rows, const CategoricalGrad<T>& grad);

/// The same objective computed by composing the primitives (sample, log_prob, reward,
/// transform_rewards, backward), also returning the intermediates. Same draws, same result as
/// pg_surrogate up to rounding.
template <class T>
void pg_surrogate_unfused(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets,
                          const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                          DrawKey key, const PgIntermediates<T>& intermediates, const ObjectiveRows<T>& rows,
                          const DiagGaussianGrad<T>& grad);
template <class T>
void pg_surrogate_unfused(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                          const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                          DrawKey key, const PgIntermediates<T>& intermediates, const ObjectiveRows<T>& rows,
                          const CholeskyGaussianGrad<T>& grad);
template <class T>
void pg_surrogate_unfused(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                          const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                          DrawKey key, const PgIntermediates<T, std::int32_t>& intermediates,
                          const ObjectiveRows<T>& rows, const CategoricalGrad<T>& grad);

/// Pathwise (reparameterised) objective for the Gaussian heads, ŷ = μ + σ⊙ε (or μ + Lε)
/// differentiated through: L = −(1/N) Σ_b [ (1/G) Σ_g T(r_bg) + λ H_b ]. Transforms none and rbf
/// only (the group-centred transforms have zero pathwise gradient by construction).
/// log_prob_clip must be 0.
template <class T>
void pg_pathwise(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets, const MahalanobisReward<T>& reward,
                 std::int64_t generations, const PgOptions<T>& options, DrawKey key, const ObjectiveRows<T>& rows,
                 const DiagGaussianGrad<T>& grad);
template <class T>
void pg_pathwise(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                 const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                 DrawKey key, const ObjectiveRows<T>& rows, const CholeskyGaussianGrad<T>& grad);

// ------------------------------------------------------------------ exact expectation
/// Deterministic objective L = −(1/N) Σ_b (E[r_b] + λ H_b) (divided by n with
/// per_dimension_mean), from the closed forms of DESIGN.md §5:
///   diag Gaussian   E[r] = −(μ−y)ᵀU(μ−y) − Σ_d U_dd σ_d²
///   Cholesky        E[r] = −(μ−y)ᵀU(μ−y) − tr(U L Lᵀ)
///   categorical     E[r] = Σ_k p_k r(k, y)
/// Uses entropy_weight, per_dimension_mean and normaliser_rows of `options` (the transform and
/// clip do not apply). row_reward receives E[r_b].
template <class T>
void exact_objective(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, const ObjectiveRows<T>& rows,
                     const DiagGaussianGrad<T>& grad);
template <class T>
void exact_objective(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, const ObjectiveRows<T>& rows,
                     const CholeskyGaussianGrad<T>& grad);
template <class T>
void exact_objective(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, const ObjectiveRows<T>& rows,
                     const CategoricalGrad<T>& grad);

}  // namespace d2r
