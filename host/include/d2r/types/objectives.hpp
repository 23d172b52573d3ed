#pragma once
/// @file types/objectives.hpp
/// Plain types of the rewards and the policy-gradient objectives (d2r/objectives.hpp): the reward
/// family, the transforms and their options, the objective options, per-row outputs and the one
/// ObjectiveScale the cuda kernels and the CPU reference share. No functions besides the field
/// walkers; compiles without CUDA.

#include <cstdint>

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

// ------------------------------------------------------------------ transforms
/// Transform T applied to the G rewards of each row to give the advantages A = T(r).
enum class Transform {
  none,           ///< A = r (REINFORCE; unbiased for any G)
  normalize,      ///< A = r − min_g r (biased; kept for fidelity with the paper's code)
  rbf,            ///< A = exp(γ r)
  leave_one_out,  ///< A_g = r_g − mean_{g'≠g} r_g' (unbiased baseline; needs G >= 2)
  standardize,    ///< A = (r − mean) / (std + ε), std with the G−1 divisor, as GRPO (needs G >= 2)
};

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

// ------------------------------------------------------------------ policy-gradient objectives
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

/// Intermediates of the unfused path, for users who want them: samples ((B·G) x n, or B x G
/// indices), log_prob, rewards and advantages (B x G each).
template <class T, class Sample = T>
struct PgIntermediates {
  MatrixView<Sample> samples;
  MatrixView<T> log_prob;
  MatrixView<T> rewards;
  MatrixView<T> advantages;
};

/// Scalars that turn the options into the factors of an objective: pd (1/n with
/// per_dimension_mean on a Gaussian head, else 1), N (the normaliser rows) and G.
template <class T>
struct ObjectiveScale {
  T per_dim;      ///< pd: 1/n or 1
  T normaliser;   ///< N
  std::int64_t generations;
};

}  // namespace d2r
