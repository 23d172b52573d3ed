#pragma once
// CPU reference of the head-level second-order primitives of the diagonal-Gaussian and
// categorical heads (d2r/second_order.hpp, DESIGN.md §6): plain loops, templated on the scalar
// type. Test oracle (double) and the cpu backend (float or double).
//
// Diagonal Gaussian, with δ = ŷ − μ, v = e^{−2s} (s the row's log_std):
//   ∂log p/∂μ = δ v,  ∂log p/∂s = δ² v − 1,
//   ∂²/∂μ² = −v,  ∂²/∂μ∂s = −2 δ v,  ∂²/∂s² = −2 δ² v;  the entropy has a zero Hessian.
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

/// out(b, g) = Σ_d [δ v μ̇ + (δ² v − 1) ṡ].
template <class T>
void diag_gaussian_log_prob_jvp(const DiagGaussian<T>& head, MatrixView<const T> samples,
                                const DiagGaussian<T>& tangent, MatrixView<T> out) {
  const std::int64_t n = head.mean.cols, generations = out.cols;
  for (std::int64_t b = 0; b < head.mean.rows; ++b) {
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    for (std::int64_t g = 0; g < generations; ++g) {
      T sum = 0;
      for (std::int64_t d = 0; d < n; ++d) {
        const T v = math::exp_(T(-2) * head.log_std(s_row, d));
        const T diff = samples(b * generations + g, d) - head.mean(b, d);
        sum += diff * v * tangent.mean(b, d) + (diff * diff * v - T(1)) * tangent.log_std(s_row, d);
      }
      out(b, g) = sum;
    }
  }
}

/// grad.mean(b,d)    = Σ_g c_bg (−v μ̇ − 2 δ v ṡ)
/// grad.log_std(b,d) = Σ_g c_bg (−2 δ v μ̇ − 2 δ² v ṡ)      (summed over b when shared)
template <class T>
void diag_gaussian_backward_tangent(const DiagGaussian<T>& head, MatrixView<const T> samples,
                                    MatrixView<const T> d_log_prob, const DiagGaussian<T>& tangent,
                                    const DiagGaussianGrad<T>& grad_tangent) {
  const std::int64_t n = head.mean.cols, batch = head.mean.rows;
  const std::int64_t generations = d_log_prob.empty() ? 0 : d_log_prob.cols;
  const bool shared = head.log_std.rows == 1 && batch > 1;
  if (shared) {
    for (std::int64_t d = 0; d < n; ++d) grad_tangent.log_std(0, d) = 0;
  }
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    for (std::int64_t d = 0; d < n; ++d) {
      const T v = math::exp_(T(-2) * head.log_std(s_row, d));
      const T mu_dot = tangent.mean(b, d), s_dot = tangent.log_std(s_row, d);
      T g_mean = 0, g_log_std = 0;
      for (std::int64_t g = 0; g < generations; ++g) {
        const T c = d_log_prob(b, g);
        const T diff = samples(b * generations + g, d) - head.mean(b, d);
        const T dv = diff * v;
        g_mean += c * (-v * mu_dot - T(2) * dv * s_dot);
        g_log_std += c * (T(-2) * dv * mu_dot - T(2) * diff * dv * s_dot);
      }
      grad_tangent.mean(b, d) = g_mean;
      if (shared) {
        grad_tangent.log_std(0, d) += g_log_std;
      } else {
        grad_tangent.log_std(b, d) = g_log_std;
      }
    }
  }
}

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
