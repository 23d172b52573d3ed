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
#include "d2r/view.hpp"

namespace d2r {

// ------------------------------------------------------------------ rewards
/// Parameterisation of the SPD matrix U of a Mahalanobis reward in d dimensions.
enum class RewardForm {
  scalar,    ///< params = [u], U = u·I, u > 0
  diagonal,  ///< params = [U_11 … U_dd], all > 0
  full,      ///< params = the d(d+1)/2 entries of a lower-triangular R (row-major packed, R_ii > 0),
             ///< U = R Rᵀ, so U stays SPD for any R with a positive diagonal
};
const char* to_string(RewardForm form) noexcept;

/// r_U(ŷ, y) = −(ŷ − y)ᵀ U (ŷ − y). For a categorical policy the same family acts on one-hot
/// vectors (d = C): r(k, y) = −(U_kk − U_ky − U_yk + U_yy); with U = βI it is 0 when k = y and
/// −2β otherwise.
template <class T>
struct MahalanobisReward {
  RewardForm form = RewardForm::scalar;
  VectorView<const T> params;
};

/// Largest number of classes for a full one-hot reward (it has C(C+1)/2 parameters).
inline constexpr std::int64_t kMaxOneHotFullClasses = 256;

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
/// Transform T applied to the G rewards of each row to give the advantages A = T(r).
enum class Transform {
  none,           ///< A = r (REINFORCE; unbiased for any G)
  normalize,      ///< A = r − min_g r (biased; kept for fidelity with the paper's code)
  rbf,            ///< A = exp(γ r)
  leave_one_out,  ///< A_g = r_g − mean_{g'≠g} r_g' (unbiased baseline; needs G >= 2)
  standardize,    ///< A = (r − mean) / (std + ε), std with the G−1 divisor, as GRPO (needs G >= 2)
};
const char* to_string(Transform transform) noexcept;

template <class T>
struct TransformOptions {
  Transform kind = Transform::none;
  T rbf_gamma = T(1);           ///< γ of rbf
  T standardize_epsilon = T(1e-6);  ///< ε of standardize, > 0
};

/// Calls f(name, value) for every field of `o` (fields.hpp).
template <class T, class F>
void for_each_field(const TransformOptions<T>& o, F&& f) {
  f("kind", o.kind);
  f("rbf_gamma", o.rbf_gamma);
  f("standardize_epsilon", o.standardize_epsilon);
}

/// advantages(b, g) = T(rewards(b, ·))_g; both B x G.
template <class T>
void transform_rewards(Context& ctx, const TransformOptions<T>& options, ConstMatrix<T> rewards,
                       MatrixView<T> advantages);

// ------------------------------------------------------------------ policy-gradient head
/// Options of the inner policy-gradient objective (DESIGN.md §5):
///   L = (1/N) Σ_b [ (1/G) Σ_g clip(−log p(ŷ_bg | x_b)) · A_bg − λ H_b ]
/// with A = T(r) held constant, N = normaliser_rows (0: this call's B).
template <class T>
struct PgOptions {
  T entropy_weight = T(0);      ///< λ >= 0
  TransformOptions<T> transform{};
  T log_prob_clip = T(0);       ///< c > 0 clips −log p to [−c, c] with zero gradient outside; 0 = off
  bool per_dimension_mean = false;  ///< use log p / n and H / n (the paper's code; same optimum)
  std::int64_t normaliser_rows = 0;
};

/// Calls f(name, value) for every field of `o` (fields.hpp).
template <class T, class F>
void for_each_field(const PgOptions<T>& o, F&& f) {
  f("entropy_weight", o.entropy_weight);
  f("transform", o.transform);
  f("log_prob_clip", o.log_prob_clip);
  f("per_dimension_mean", o.per_dimension_mean);
  f("normaliser_rows", o.normaliser_rows);
}

/// Per-row outputs of an objective (length B each; row_reward may be empty).
template <class T>
struct ObjectiveRows {
  VectorView<T> row_loss;    ///< contribution of each row to the loss (already divided by N)
  VectorView<T> row_reward;  ///< mean raw reward of the row's G samples (expected reward for exact)
};

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

/// Intermediates of the unfused path, for users who want them: samples ((B·G) x n, or B x G
/// indices), log_prob, rewards and advantages (B x G each).
template <class T, class Sample = T>
struct PgIntermediates {
  MatrixView<Sample> samples;
  MatrixView<T> log_prob;
  MatrixView<T> rewards;
  MatrixView<T> advantages;
};

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
