#pragma once
// CPU reference of the head-level second-order primitives of the categorical head
// (d2r/second_order.hpp, DESIGN.md §6): plain loops, templated on the scalar type. Test oracle
// (double) and the cpu backend (float or double). (The diagonal Gaussian's are in heads/diag_gaussian.hpp.)
//
// Categorical, with m̄ = Σ_j p_j ℓ̇_j and u_j = ℓ̇_j − m̄ (so ṗ_j = p_j u_j):
//   ∇ log p(k)·ℓ̇ = ℓ̇_k − m̄,
//   d/dt ∇ log p(k) = −ṗ,
//   d/dt ∂H/∂ℓ_j = −p_j [u_j (log p_j + H + 1) + Ḣ],  Ḣ = −Σ_j p_j (log p_j + H) u_j.
// Masked classes (ℓ_j = −inf) have p_j = 0 and contribute nothing; their output entries are 0.
// Rows without a distribution (only reachable with value checks off) give NaN, as backward does.

#include <cstdint>
#include <limits>

#include "d2r/types/heads.hpp"
#include "host/reference/categorical_ref.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference {

/// out(b, g) = ℓ̇_k − Σ_j p_j ℓ̇_j for k = samples(b, g) (NaN for a row without a distribution or
/// an index outside [0, C)).
template <class T>
void categorical_log_prob_jvp(const Categorical<T>& head, MatrixView<const std::int32_t> samples,
                              const Categorical<T>& tangent, MatrixView<T> out) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const MatrixView<const T> logits = head.logits;
  const std::int64_t classes = logits.cols;
  for (std::int64_t b = 0; b < logits.rows; ++b) {
    const CategoricalRowStats<T> s = categorical_row_stats(logits, b);
    T mean_dot = 0;
    if (s.valid()) {
      const T log_sum = s.log_sum();
      for (std::int64_t j = 0; j < classes; ++j) {
        const T x = logits(b, j);
        if (!(x > kNegInf)) continue;
        mean_dot += math::exp_((x - s.max) - log_sum) * tangent.logits(b, j);
      }
    }
    for (std::int64_t g = 0; g < out.cols; ++g) {
      const std::int32_t k = samples(b, g);
      out(b, g) = s.valid() && k >= 0 && k < classes ? tangent.logits(b, k) - mean_dot
                                                     : std::numeric_limits<T>::quiet_NaN();
    }
  }
}

/// grad_tangent(b, j) = −C_b p_j u_j − e_b p_j [u_j (log p_j + H + 1) + Ḣ]   (0 where p_j = 0),
/// C_b = Σ_g c_bg (the sampled classes' constant e_k terms have no tangent).
template <class T>
void categorical_backward_tangent(const Categorical<T>& head, MatrixView<const T> d_log_prob,
                                  VectorView<const T> d_entropy, const Categorical<T>& tangent,
                                  const CategoricalGrad<T>& grad_tangent) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const MatrixView<const T> logits = head.logits;
  const std::int64_t classes = logits.cols;
  const std::int64_t generations = d_log_prob.empty() ? 0 : d_log_prob.cols;
  for (std::int64_t b = 0; b < logits.rows; ++b) {
    const CategoricalRowStats<T> s = categorical_row_stats(logits, b);
    if (!s.valid()) {
      for (std::int64_t j = 0; j < classes; ++j) grad_tangent.logits(b, j) = std::numeric_limits<T>::quiet_NaN();
      continue;
    }
    const T log_sum = s.log_sum();
    const T h = s.entropy();
    const T e = d_entropy.empty() ? T(0) : d_entropy[b];
    T c_sum = 0;
    for (std::int64_t g = 0; g < generations; ++g) c_sum += d_log_prob(b, g);
    // m̄ = Σ p_j ℓ̇_j, then Ḣ = −Σ p_j (log p_j + H)(ℓ̇_j − m̄).
    T mean_dot = 0;
    for (std::int64_t j = 0; j < classes; ++j) {
      const T x = logits(b, j);
      if (!(x > kNegInf)) continue;
      mean_dot += math::exp_((x - s.max) - log_sum) * tangent.logits(b, j);
    }
    T h_dot = 0;
    for (std::int64_t j = 0; j < classes; ++j) {
      const T x = logits(b, j);
      if (!(x > kNegInf)) continue;
      const T log_p = (x - s.max) - log_sum;
      h_dot -= math::exp_(log_p) * (log_p + h) * (tangent.logits(b, j) - mean_dot);
    }
    for (std::int64_t j = 0; j < classes; ++j) {
      const T x = logits(b, j);
      if (!(x > kNegInf)) {
        grad_tangent.logits(b, j) = 0;
        continue;
      }
      const T log_p = (x - s.max) - log_sum;
      const T p = math::exp_(log_p);
      const T u = tangent.logits(b, j) - mean_dot;
      grad_tangent.logits(b, j) = -c_sum * p * u - e * p * (u * (log_p + h + T(1)) + h_dot);
    }
  }
}

}  // namespace d2r::reference
