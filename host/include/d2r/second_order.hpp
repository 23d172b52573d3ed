#pragma once
/// @file second_order.hpp
/// Head-level second-order primitives for the implicit hypergradient (DESIGN.md §6).
///
/// A network's Hessian-vector product by forward-over-reverse needs, at the head, (1) the
/// directional derivative of log p along a head tangent ḣ = J_head v, and (2) the tangent of
/// the head-output gradient along ḣ. The mixed product (∂²L_in/∂φ∂θ)·w needs, per sample, the
/// score ∇_head log p(ŷ)·ḣ, then the transform's and the reward's vector-Jacobian products.
/// These functions provide exactly those pieces, so that the network part (R-op through the
/// trunk) only has to supply ḣ and consume the returned tangent.
///
/// Tangents have the shapes of the head outputs: for a DiagGaussian, {mean, log_std}
/// (log_std 1 row when shared); for a CholeskyGaussian, {mean, tril}; for a Categorical, logits.
/// Samples are held fixed (REINFORCE curvature: samples and advantages do not move with θ).

#include <cstdint>

#include "d2r/context.hpp"
#include "d2r/distributions.hpp"
#include "d2r/objectives.hpp"
#include "d2r/view.hpp"

namespace d2r {

/// out(b, g) = ∇_head log p(sample_bg | head_b) · tangent_b   (B x G).
template <class T>
void log_prob_jvp(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> samples,
                  const DiagGaussian<T>& tangent, MatrixView<T> out);
template <class T>
void log_prob_jvp(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> samples,
                  const CholeskyGaussian<T>& tangent, MatrixView<T> out);
template <class T>
void log_prob_jvp(Context& ctx, const Categorical<T>& head, MatrixView<const std::int32_t> samples,
                  const Categorical<T>& tangent, MatrixView<T> out);

/// Tangent of backward() along the head tangent, with samples and cotangents held fixed:
///   grad_tangent = Σ_bg d_log_prob(b,g) ∇²_head log p(sample_bg) · tangent_b
///                + Σ_b  d_entropy[b]    ∇²_head H(head_b)        · tangent_b
/// i.e. the Hessian of the scalar Σ c·log p + Σ e·H with respect to the head outputs, applied to
/// the tangent. A shared 1-row log_std / tril receives the sum over rows. The `jitter` of a
/// CholeskyGaussian tangent is ignored.
template <class T>
void backward_tangent(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> samples, ConstMatrix<T> d_log_prob,
                      ConstVector<T> d_entropy, const DiagGaussian<T>& tangent, const DiagGaussianGrad<T>& grad_tangent);
template <class T>
void backward_tangent(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> samples,
                      ConstMatrix<T> d_log_prob, ConstVector<T> d_entropy, const CholeskyGaussian<T>& tangent,
                      const CholeskyGaussianGrad<T>& grad_tangent);
template <class T>
void backward_tangent(Context& ctx, const Categorical<T>& head, MatrixView<const std::int32_t> samples,
                      ConstMatrix<T> d_log_prob, ConstVector<T> d_entropy, const Categorical<T>& tangent,
                      const CategoricalGrad<T>& grad_tangent);

/// Vector-Jacobian product of transform_rewards: d_rewards(b, k) = Σ_g d_advantages(b, g) ∂A_bg/∂r_bk
/// (normalize: the minimum's subgradient goes to the first minimal entry).
template <class T>
void transform_rewards_backward(Context& ctx, const TransformOptions<T>& options, ConstMatrix<T> rewards,
                                ConstMatrix<T> d_advantages, MatrixView<T> d_rewards);

/// Mixed second derivative of the REINFORCE surrogate (pg_surrogate, same options and key)
/// applied to a head tangent ḣ = J_head w:
///   grad_params = ∇_φ ( ∇_head L_in · ḣ ),
/// with samples fixed and advantages A = T(r_φ). Written as the composition
///   s_bg = −pd·active_bg / (N G) · (∇_head log p(ŷ_bg) · ḣ_b)   (log_prob_jvp)
///   d_r  = transform_rewards_backward(s)                          (through A = T(r))
///   grad_params = reward_backward(d_r)                            (through r = r_φ(ŷ, y))
/// For transform none and a Mahalanobis reward it is (1/NG) Σ (ŷ−y)(ŷ−y)ᵀ s̃_bg chained to φ.
template <class T>
void mixed_product(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets, const MahalanobisReward<T>& reward,
                   std::int64_t generations, const PgOptions<T>& options, DrawKey key, const DiagGaussian<T>& tangent,
                   VectorView<T> grad_params);
template <class T>
void mixed_product(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                   const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                   DrawKey key, const CholeskyGaussian<T>& tangent, VectorView<T> grad_params);
template <class T>
void mixed_product(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                   const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                   DrawKey key, const Categorical<T>& tangent, VectorView<T> grad_params);

/// Exact-curvature head Hessian: the tangent of exact_objective's head gradient along the head
/// direction `tangent` (same shapes as the head), i.e. ∇²_head L_exact · ḣ, with the options'
/// scaling (per_dimension_mean, normaliser_rows). For the diagonal Gaussian
///   R(∂L/∂μ_b) = 2k U μ̇_b,   R(∂L/∂s_bd) = 4k U_dd σ_bd² ṡ_bd   (k = pd / N),
/// summed over rows for a shared log-std; it does not depend on the targets. Overwrites
/// grad_tangent (shaped like the head), which may not overlap any input.
template <class T>
void exact_backward_tangent(Context& ctx, const DiagGaussian<T>& head, const MahalanobisReward<T>& reward,
                            const PgOptions<T>& options, const DiagGaussian<T>& tangent,
                            const DiagGaussianGrad<T>& grad_tangent);

/// Cholesky Gaussian (tangent (μ̇, raẇ) of the mean and of the RAW tril entries; the softplus
/// diagonal is chained, L̇_ii = σ(raw_ii) raẇ_ii, L̇_ij = raẇ_ij for j < i):
///   R(∂L/∂μ_b)     = 2k U μ̇_b
///   R(∂L/∂raw_ij)  = 2k (U L̇_b)_ij                                                     (j < i)
///   R(∂L/∂raw_ii)  = (2k (U L̇_b)_ii + kλ L̇_ii / L_ii²) σ(raw_ii) + g_ii σ'(raw_ii) raẇ_ii,
/// with g_ii = 2k (U L_b)_ii − kλ / L_ii the gradient w.r.t. L_ii and σ' = σ(1 − σ); a shared
/// (1-row) tril (and its 1-row tangent) receives the sum over rows. The tangent's jitter is
/// ignored. Overwrites grad_tangent (shaped like the head), which may not overlap any input.
template <class T>
void exact_backward_tangent(Context& ctx, const CholeskyGaussian<T>& head, const MahalanobisReward<T>& reward,
                            const PgOptions<T>& options, const CholeskyGaussian<T>& tangent,
                            const CholeskyGaussianGrad<T>& grad_tangent);

/// Categorical (one-hot reward r(j, y), L_exact = −(1/N) Σ_b (Σ_j p_j r(j, y_b) + λ H_b)), along a
/// logits tangent ℓ̇: with u_j = ℓ̇_j − Σ_i p_i ℓ̇_i, E = Σ_j p_j r_j, Ė = Σ_j p_j u_j r_j and
/// Ḣ = −Σ_j p_j u_j (log p_j + H),
///   R(∂L/∂ℓ_bj) = −(1/N) [p_j u_j (r_j − E) − p_j Ė − λ p_j (u_j (log p_j + H + 1) + Ḣ)],
/// 0 on masked (−inf, probability 0) classes whatever their tangent. `labels` are B class indices
/// in [0, C); per_dimension_mean does not apply. Overwrites grad_tangent (B x C), which may not
/// overlap any input.
template <class T>
void exact_backward_tangent(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                            const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                            const Categorical<T>& tangent, const CategoricalGrad<T>& grad_tangent);

/// Exact-curvature variant: ∇_φ(∇_head L_exact · ḣ) for exact_objective (same options), for the
/// scalar, diagonal and full reward forms. The tangent has the head's shapes (finite values);
/// grad_params (reward.params.size entries) is overwritten and may not overlap any input. For the
/// Cholesky Gaussian ∇_head L_exact · ḣ = 2k Σ_b tr(U M_b) + (λ term, independent of φ) with
/// M_b = δ_b μ̇_bᵀ + L_b L̇_bᵀ, δ = μ − y, and L̇ the tangent of the factor as above.
template <class T>
void exact_mixed_product(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets,
                         const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                         const DiagGaussian<T>& tangent, VectorView<T> grad_params);
template <class T>
void exact_mixed_product(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                         const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                         const CholeskyGaussian<T>& tangent, VectorView<T> grad_params);
template <class T>
void exact_mixed_product(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                         const MahalanobisReward<T>& reward, const PgOptions<T>& options, const Categorical<T>& tangent,
                         VectorView<T> grad_params);

}  // namespace d2r
