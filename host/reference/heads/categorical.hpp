#pragma once
// CPU reference of the categorical head: plain loops over the formulas of DESIGN.md §3,
// templated on the scalar type. It is the test oracle (in double) and the cpu backend (float or
// double). Draws use the same Philox uniform as the CUDA kernel (math::categorical_uniform).
//
// Conventions shared with kernels/heads/categorical/distribution.cuh:
// - A logit that is not > -inf (-inf, or NaN when value checks are off) has weight 0.
// - A row "has no distribution" when its largest logit is not finite (all -inf, or +inf with
//   checks off) or its weight sum is not a finite positive number: its samples are -1 and its
//   log-probabilities, entropy and gradient row are NaN.
// - A class index outside [0, C) (only reachable with checks off) gives a NaN log-probability
//   and is skipped by backward.

#include <cstdint>
#include <limits>
#include <vector>

#include "d2r/types/heads.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference {

/// Per-row softmax statistics: M = max_j ℓ_j, Z = Σ_j exp(ℓ_j − M), A = Σ_j exp(ℓ_j − M)(ℓ_j − M)
/// (masked classes contribute 0 to both sums).
template <class T>
struct CategoricalRowStats {
  T max;
  T sum;
  T weighted;
  [[nodiscard]] bool valid() const {
    return max > -std::numeric_limits<T>::infinity() && max < std::numeric_limits<T>::infinity() && sum > T(0) &&
           sum < std::numeric_limits<T>::infinity();
  }
  [[nodiscard]] T log_sum() const { return math::log_(sum); }
  /// H = log Z − A / Z (= LSE − Σ p_j ℓ_j).
  [[nodiscard]] T entropy() const { return math::log_(sum) - weighted / sum; }
};

template <class T>
CategoricalRowStats<T> categorical_row_stats(MatrixView<const T> logits, std::int64_t b) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  T m = kNegInf;
  for (std::int64_t j = 0; j < logits.cols; ++j) {
    if (logits(b, j) > m) m = logits(b, j);
  }
  T sum = 0, weighted = 0;
  if (m > kNegInf && m < std::numeric_limits<T>::infinity()) {
    for (std::int64_t j = 0; j < logits.cols; ++j) {
      const T x = logits(b, j);
      if (!(x > kNegInf)) continue;
      const T w = math::exp_(x - m);
      sum += w;
      weighted += w * (x - m);
    }
  }
  return {m, sum, weighted};
}

/// Inverse CDF on one Philox uniform per draw: with w_j = exp(ℓ_j − M), Z = Σ w_j, t = u·Z, the
/// sample is the smallest k with Σ_{j<=k} w_j > t, or (when rounding leaves none) the last class
/// with w_j > 0. The partial sums are accumulated left to right in T.
template <class T>
void categorical_sample(const Categorical<T>& head, std::int64_t generations, math::DrawPosition pos,
                        MatrixView<std::int32_t> samples) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const MatrixView<const T> logits = head.logits;
  const std::int64_t classes = logits.cols;
  std::vector<T> cdf(static_cast<std::size_t>(classes));
  for (std::int64_t b = 0; b < logits.rows; ++b) {
    T m = kNegInf;
    for (std::int64_t j = 0; j < classes; ++j) {
      if (logits(b, j) > m) m = logits(b, j);
    }
    bool valid = m > kNegInf && m < std::numeric_limits<T>::infinity();
    std::int64_t last_positive = -1;
    T total = 0;
    if (valid) {
      for (std::int64_t j = 0; j < classes; ++j) {
        const T x = logits(b, j);
        const T w = x > kNegInf ? math::exp_(x - m) : T(0);
        if (w > T(0)) last_positive = j;
        total += w;
        cdf[static_cast<std::size_t>(j)] = total;
      }
      valid = total > T(0) && total < std::numeric_limits<T>::infinity() && last_positive >= 0;
    }
    for (std::int64_t g = 0; g < generations; ++g) {
      if (!valid) {
        samples(b, g) = -1;
        continue;
      }
      const T u = math::categorical_uniform<T>(pos.seed, pos.step_at(), static_cast<std::uint32_t>(pos.first_row + b),
                                               static_cast<std::uint32_t>(g));
      const T t = u * total;
      // Smallest k with cdf[k] > t (cdf is non-decreasing: it is summed left to right).
      std::int64_t lo = 0, hi = classes;
      while (lo < hi) {
        const std::int64_t mid = lo + (hi - lo) / 2;
        if (cdf[static_cast<std::size_t>(mid)] > t) {
          hi = mid;
        } else {
          lo = mid + 1;
        }
      }
      samples(b, g) = static_cast<std::int32_t>(lo < classes ? lo : last_positive);
    }
  }
}

/// out(b, g) = ℓ_k − M − log Z for k = samples(b, g).
template <class T>
void categorical_log_prob(const Categorical<T>& head, MatrixView<const std::int32_t> samples, MatrixView<T> out) {
  const std::int64_t classes = head.logits.cols;
  for (std::int64_t b = 0; b < head.logits.rows; ++b) {
    const CategoricalRowStats<T> s = categorical_row_stats(head.logits, b);
    const T log_sum = s.log_sum();
    for (std::int64_t g = 0; g < out.cols; ++g) {
      const std::int32_t k = samples(b, g);
      out(b, g) = s.valid() && k >= 0 && k < classes ? (head.logits(b, k) - s.max) - log_sum
                                                     : std::numeric_limits<T>::quiet_NaN();
    }
  }
}

/// out[b] = log Z − A / Z.
template <class T>
void categorical_entropy(const Categorical<T>& head, VectorView<T> out) {
  for (std::int64_t b = 0; b < head.logits.rows; ++b) {
    const CategoricalRowStats<T> s = categorical_row_stats(head.logits, b);
    out[b] = s.valid() ? s.entropy() : std::numeric_limits<T>::quiet_NaN();
  }
}

/// grad(b, j) = Σ_g c_bg ([k_bg == j] − p_bj) + e_b · (−p_bj (log p_bj + H_b)), where terms with
/// p_bj = 0 (ℓ_bj = −inf) are 0.
template <class T>
void categorical_backward(const Categorical<T>& head, MatrixView<const std::int32_t> samples,
                          MatrixView<const T> d_log_prob, VectorView<const T> d_entropy,
                          const CategoricalGrad<T>& grad) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const MatrixView<const T> logits = head.logits;
  const std::int64_t classes = logits.cols;
  const std::int64_t generations = d_log_prob.empty() ? 0 : d_log_prob.cols;
  for (std::int64_t b = 0; b < logits.rows; ++b) {
    const CategoricalRowStats<T> s = categorical_row_stats(logits, b);
    if (!s.valid()) {
      for (std::int64_t j = 0; j < classes; ++j) grad.logits(b, j) = std::numeric_limits<T>::quiet_NaN();
      continue;
    }
    const T log_sum = s.log_sum();
    const T h = s.entropy();
    const T e = d_entropy.empty() ? T(0) : d_entropy[b];
    T c_sum = 0;
    for (std::int64_t g = 0; g < generations; ++g) c_sum += d_log_prob(b, g);
    for (std::int64_t j = 0; j < classes; ++j) {
      const T x = logits(b, j);
      if (!(x > kNegInf)) {
        grad.logits(b, j) = 0;
        continue;
      }
      const T log_p = (x - s.max) - log_sum;
      const T p = math::exp_(log_p);
      grad.logits(b, j) = -p * c_sum - e * p * (log_p + h);
    }
    for (std::int64_t g = 0; g < generations; ++g) {
      const std::int32_t k = samples(b, g);
      if (k >= 0 && k < classes) grad.logits(b, k) += d_log_prob(b, g);
    }
  }
}

}  // namespace d2r::reference
