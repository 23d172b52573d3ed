#pragma once
/// @file heuristic.hpp
/// The heuristic reward solver (DESIGN.md §7, PAPER.md T2–T4 and "Solvers"): plug the empirical
/// covariance of the training targets into the closed-form optimum of the Gaussian theory,
/// instead of running the bilevel loop. The inputs x are ignored.
///
///   full       U = (λ/2) Σ̂⁻¹                     (T2: the inner optimum then has covariance Σ̂)
///   diagonal   U_ii = λ / (2 Σ̂_ii)                (T4: each policy variance matches the data's)
///   scalar     u = λ n / (2 tr Σ̂)                 (T3, the isotropic optimum)
///   classes    β* = λ C / (2 · N/(N−1) · (1 − Σ_c p̂_c²)),  U = β*·I
///
/// Σ̂ is the unbiased sample covariance (divisor N − 1). The statistics are computed on the host
/// in double precision; device-resident targets are copied once (the targets are read once, and
/// the result is a handful of numbers).
///
/// @code
///   std::vector<float> r(d2r::reward_param_count(d2r::RewardForm::full, n));
///   d2r::heuristic_reward(ctx, targets, /*λ=*/1.0f, d2r::RewardForm::full, d2r::vector_view(r.data(), r.size()));
/// @endcode

#include <cstdint>

#include "d2r/context.hpp"
#include "d2r/objectives.hpp"
#include "d2r/view.hpp"

namespace d2r {

/// Unbiased sample covariance of the rows of `targets` (N x n, N >= 2) into `out` (n x n).
template <class T>
void target_covariance(Context& ctx, ConstMatrix<T> targets, MatrixView<T> out);

/// Reward parameters of `form` (layout of MahalanobisReward::params, in the context's memory)
/// from the targets' covariance and the entropy weight λ > 0. For the full form the output is the
/// packed Cholesky factor R of U = (λ/2) Σ̂⁻¹ (Σ̂ must be positive definite).
template <class T>
void heuristic_reward(Context& ctx, ConstMatrix<T> targets, std::type_identity_t<T> entropy_weight, RewardForm form,
                      VectorView<T> params);

/// β* of the one-hot reward U = β*·I from the class frequencies of `labels` (N >= 2 labels in
/// [0, classes), on the context's backend).
double heuristic_class_beta(Context& ctx, VectorView<const std::int32_t> labels, std::int64_t classes,
                            double entropy_weight);

}  // namespace d2r
