#pragma once
// CPU reference of the categorical head: plain loops over the formulas of DESIGN.md §3,
// templated on the scalar type. It is the test oracle (in double) and the cpu backend (float or
// double). Draws use the same Philox uniform as the CUDA kernel (math::categorical_uniform). Every
// primitive of the head is here: the distribution, its second-order pieces (d2r/second_order.hpp,
// DESIGN.md §6), the exact objective and its tangent, and the exact-curvature mixed product.
//
// Conventions shared with kernels/heads/categorical/distribution.cuh:
// - A logit that is not > -inf (-inf, or NaN when value checks are off) has weight 0.
// - A row "has no distribution" when its largest logit is not finite (all -inf, or +inf with
//   checks off) or its weight sum is not a finite positive number: its samples are -1 and its
//   log-probabilities, entropy and gradient row are NaN.
// - A class index outside [0, C) (only reachable with checks off) gives a NaN log-probability
//   and is skipped by backward.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "d2r/types/heads.hpp"
#include "d2r/types/objectives.hpp"
#include "host/reference/mixed_product.hpp"
#include "host/reference/objectives.hpp"
#include "host/reference/rewards.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference::categorical {

/// Per-row softmax statistics: M = max_j ℓ_j, Z = Σ_j exp(ℓ_j − M), A = Σ_j exp(ℓ_j − M)(ℓ_j − M)
/// (masked classes contribute 0 to both sums).
template <class T>
struct RowStats {
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
RowStats<T> row_stats(MatrixView<const T> logits, std::int64_t b) {
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
void sample(const Categorical<T>& head, std::int64_t generations, math::DrawPosition pos,
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
void log_prob(const Categorical<T>& head, MatrixView<const std::int32_t> samples, MatrixView<T> out) {
  const std::int64_t classes = head.logits.cols;
  for (std::int64_t b = 0; b < head.logits.rows; ++b) {
    const RowStats<T> s = row_stats(head.logits, b);
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
void entropy(const Categorical<T>& head, VectorView<T> out) {
  for (std::int64_t b = 0; b < head.logits.rows; ++b) {
    const RowStats<T> s = row_stats(head.logits, b);
    out[b] = s.valid() ? s.entropy() : std::numeric_limits<T>::quiet_NaN();
  }
}

/// The per-row terms of backward and backward_tangent: the row's statistics, log Z, H,
/// e_b = d_entropy[b] (0 when empty) and C_b = Σ_g c_bg. A row without a distribution gets a
/// NaN row of `out` (and its stats say !valid()).
template <class T>
struct BackwardRow {
  RowStats<T> stats;
  T log_sum = 0, h = 0, e = 0, c_sum = 0;
};
template <class T>
BackwardRow<T> backward_row(MatrixView<const T> logits, std::int64_t b, MatrixView<const T> d_log_prob,
                            VectorView<const T> d_entropy, MatrixView<T> out) {
  BackwardRow<T> row{row_stats(logits, b)};
  if (!row.stats.valid()) {
    for (std::int64_t j = 0; j < logits.cols; ++j) out(b, j) = std::numeric_limits<T>::quiet_NaN();
    return row;
  }
  row.log_sum = row.stats.log_sum();
  row.h = row.stats.entropy();
  row.e = d_entropy.empty() ? T(0) : d_entropy[b];
  const std::int64_t generations = d_log_prob.empty() ? 0 : d_log_prob.cols;
  for (std::int64_t g = 0; g < generations; ++g) row.c_sum += d_log_prob(b, g);
  return row;
}

/// grad(b, j) = Σ_g c_bg ([k_bg == j] − p_bj) + e_b · (−p_bj (log p_bj + H_b)), where terms with
/// p_bj = 0 (ℓ_bj = −inf) are 0.
template <class T>
void backward(const Categorical<T>& head, MatrixView<const std::int32_t> samples, MatrixView<const T> d_log_prob,
              VectorView<const T> d_entropy, const CategoricalGrad<T>& grad) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const MatrixView<const T> logits = head.logits;
  const std::int64_t classes = logits.cols;
  const std::int64_t generations = d_log_prob.empty() ? 0 : d_log_prob.cols;
  for (std::int64_t b = 0; b < logits.rows; ++b) {
    const BackwardRow<T> row = backward_row(logits, b, d_log_prob, d_entropy, grad.logits);
    if (!row.stats.valid()) continue;
    const RowStats<T>& s = row.stats;
    const T log_sum = row.log_sum, h = row.h, e = row.e, c_sum = row.c_sum;
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

// ---------------------------------------------------------------- second order (d2r/second_order.hpp)
// Categorical, with m̄ = Σ_j p_j ℓ̇_j and u_j = ℓ̇_j − m̄ (so ṗ_j = p_j u_j):
//   ∇ log p(k)·ℓ̇ = ℓ̇_k − m̄,
//   d/dt ∇ log p(k) = −ṗ,
//   d/dt ∂H/∂ℓ_j = −p_j [u_j (log p_j + H + 1) + Ḣ],  Ḣ = −Σ_j p_j (log p_j + H) u_j.
// Masked classes (ℓ_j = −inf) have p_j = 0 and contribute nothing; their output entries are 0.
// Rows without a distribution (only reachable with value checks off) give NaN, as backward does.

/// out(b, g) = ℓ̇_k − Σ_j p_j ℓ̇_j for k = samples(b, g) (NaN for a row without a distribution or
/// an index outside [0, C)).
template <class T>
void log_prob_jvp(const Categorical<T>& head, MatrixView<const std::int32_t> samples, const Categorical<T>& tangent,
                  MatrixView<T> out) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const MatrixView<const T> logits = head.logits;
  const std::int64_t classes = logits.cols;
  for (std::int64_t b = 0; b < logits.rows; ++b) {
    const RowStats<T> s = row_stats(logits, b);
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
void backward_tangent(const Categorical<T>& head, MatrixView<const T> d_log_prob, VectorView<const T> d_entropy,
                      const Categorical<T>& tangent, const CategoricalGrad<T>& grad_tangent) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const MatrixView<const T> logits = head.logits;
  const std::int64_t classes = logits.cols;
  for (std::int64_t b = 0; b < logits.rows; ++b) {
    const BackwardRow<T> row = backward_row(logits, b, d_log_prob, d_entropy, grad_tangent.logits);
    if (!row.stats.valid()) continue;
    const RowStats<T>& s = row.stats;
    const T log_sum = row.log_sum, h = row.h, e = row.e, c_sum = row.c_sum;
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

// ---------------------------------------------------------------- exact objective and its tangent
/// Categorical: E[r] = Σ_k p_k r(k, y); ∂E/∂ℓ_j = p_j (r(j, y) − E[r]). Classes whose logit is
/// not > −inf (−inf or NaN) are masked (p = 0); a row with no distribution (row_stats
/// not valid, possible under ValueChecks::none) gets NaN gradients and outputs, as the kernels.
template <class T>
void exact_objective(const Categorical<T>& head, VectorView<const std::int32_t> labels,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, ObjectiveScale<T> s,
                     const ObjectiveRows<T>& rows, const CategoricalGrad<T>& grad) {
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  const std::int64_t B = head.logits.rows, C = head.logits.cols;
  const T k = T(1) / s.normaliser, lambda = options.entropy_weight;
  std::vector<T> p(static_cast<std::size_t>(C)), logp(static_cast<std::size_t>(C)), r(static_cast<std::size_t>(C));
  for (std::int64_t b = 0; b < B; ++b) {
    const RowStats<T> st = row_stats(head.logits, b);
    if (!st.valid()) {
      for (std::int64_t j = 0; j < C; ++j) grad.logits(b, j) = kNaN;
      rows.row_loss[b] = kNaN;
      if (!rows.row_reward.empty()) rows.row_reward[b] = kNaN;
      continue;
    }
    const T log_sum = st.log_sum();
    T expected = 0, H = 0;
    for (std::int64_t j = 0; j < C; ++j) {
      const bool live = head.logits(b, j) > -std::numeric_limits<T>::infinity();
      logp[j] = live ? (head.logits(b, j) - st.max) - log_sum : T(0);
      p[j] = live ? math::exp_(logp[j]) : T(0);
      r[j] = rewards::one_hot_reward(reward, C, static_cast<std::int32_t>(j), labels[b]);
      if (p[j] > T(0)) {
        expected += p[j] * r[j];
        H -= p[j] * logp[j];
      }
    }
    for (std::int64_t j = 0; j < C; ++j) {
      grad.logits(b, j) = p[j] > T(0) ? -k * (p[j] * (r[j] - expected) - lambda * p[j] * (logp[j] + H)) : T(0);
    }
    rows.row_loss[b] = -k * (expected + lambda * H);
    if (!rows.row_reward.empty()) rows.row_reward[b] = expected;
  }
}

/// Tangent of exact_objective's head gradient along ℓ̇ (the head-level Hessian of L_exact applied
/// to ℓ̇). With p = softmax(ℓ), u_j = ℓ̇_j − Σ_i p_i ℓ̇_i (so ṗ_j = p_j u_j), r_j = r(j, y_b),
/// E = Σ_j p_j r_j, Ė = Σ_j p_j u_j r_j and Ḣ = −Σ_j p_j u_j (log p_j + H):
///   R(∂L/∂ℓ_j) = −k [p_j u_j (r_j − E) − p_j Ė − λ p_j (u_j (log p_j + H + 1) + Ḣ)],   k = 1/N,
/// and 0 where p_j = 0 (masked classes); NaN rows for a row with no distribution.
///
/// Computed without cancellation when one class dominates (issue 17: p ≈ 0.992 lost 3 digits in
/// float): ℓ̇ and r are first shifted by their values at the row's most probable class a (the
/// first index of the largest logit), which changes none of u, r_j − E, Ė (Σ p u = 0) in exact
/// arithmetic; then u_a = −Σ_i p_i (ℓ̇_i − ℓ̇_a) is a sum of small terms instead of ℓ̇_a − m̄ with
/// m̄ ≈ ℓ̇_a, and likewise r_a − E. The kernel (categorical::exact_tangent_kernel) does the same.
template <class T>
void exact_backward_tangent(const Categorical<T>& head, VectorView<const std::int32_t> labels,
                            const MahalanobisReward<T>& reward, const PgOptions<T>& options, ObjectiveScale<T> s,
                            const Categorical<T>& tangent, const CategoricalGrad<T>& grad_tangent) {
  const std::int64_t B = head.logits.rows, C = head.logits.cols;
  const T k = T(1) / s.normaliser, lambda = options.entropy_weight;
  std::vector<T> p(static_cast<std::size_t>(C)), logp(static_cast<std::size_t>(C)), r(static_cast<std::size_t>(C)),
      u(static_cast<std::size_t>(C));
  for (std::int64_t b = 0; b < B; ++b) {
    const RowStats<T> st = row_stats(head.logits, b);
    if (!st.valid()) {
      for (std::int64_t j = 0; j < C; ++j) grad_tangent.logits(b, j) = std::numeric_limits<T>::quiet_NaN();
      continue;
    }
    std::int64_t a = 0;  // the most probable class (first index of the largest logit)
    while (!(head.logits(b, a) == st.max)) ++a;
    const T t_a = tangent.logits(b, a);
    const T r_a = rewards::one_hot_reward(reward, C, static_cast<std::int32_t>(a), labels[b]);
    const T log_sum = st.log_sum();
    T expected = 0, H = 0, mean_dot = 0;  // expected and mean_dot of the shifted r and ℓ̇
    for (std::int64_t j = 0; j < C; ++j) {
      const bool live = head.logits(b, j) > -std::numeric_limits<T>::infinity();
      logp[j] = live ? (head.logits(b, j) - st.max) - log_sum : T(0);
      p[j] = live ? math::exp_(logp[j]) : T(0);
      r[j] = rewards::one_hot_reward(reward, C, static_cast<std::int32_t>(j), labels[b]) - r_a;
      if (p[j] > T(0)) {
        expected += p[j] * r[j];
        H -= p[j] * logp[j];
        mean_dot += p[j] * (tangent.logits(b, j) - t_a);
      }
    }
    T expected_dot = 0, entropy_dot = 0;
    for (std::int64_t j = 0; j < C; ++j) {
      u[j] = (tangent.logits(b, j) - t_a) - mean_dot;
      if (p[j] > T(0)) {
        expected_dot += p[j] * u[j] * r[j];
        entropy_dot -= p[j] * u[j] * (logp[j] + H);
      }
    }
    for (std::int64_t j = 0; j < C; ++j) {
      grad_tangent.logits(b, j) =
          p[j] > T(0) ? -k * (p[j] * u[j] * (r[j] - expected) - p[j] * expected_dot -
                              lambda * p[j] * (u[j] * (logp[j] + H + T(1)) + entropy_dot))
                      : T(0);
    }
  }
}

// ---------------------------------------------------------------- exact-curvature mixed product
/// Categorical: ∇_ℓ L_exact · ℓ̇ = −(1/N) Σ_b Σ_k ṗ_k r(k, y_b) + (λ term), ṗ = p ⊙ (ℓ̇ − p·ℓ̇).
template <class T>
void exact_mixed_product(const Categorical<T>& head, VectorView<const std::int32_t> labels,
                         const MahalanobisReward<T>& reward, ObjectiveScale<T> s, const Categorical<T>& tangent,
                         VectorView<T> grad) {
  const std::int64_t B = head.logits.rows, C = head.logits.cols;
  const T k = T(1) / s.normaliser;
  std::fill(grad.data, grad.data + grad.size, T(0));
  std::vector<T> p(static_cast<std::size_t>(C));
  for (std::int64_t b = 0; b < B; ++b) {
    T mx = -INFINITY;
    for (std::int64_t j = 0; j < C; ++j) mx = std::max(mx, head.logits(b, j));
    T z = 0;
    for (std::int64_t j = 0; j < C; ++j) z += math::exp_(head.logits(b, j) - mx);
    T pl = 0;
    for (std::int64_t j = 0; j < C; ++j) {
      p[j] = math::exp_(head.logits(b, j) - mx) / z;
      pl += p[j] * tangent.logits(b, j);
    }
    const std::int32_t y = labels[b];
    for (std::int64_t j = 0; j < C; ++j) {
      if (j == y) continue;
      const T c = -k * p[j] * (tangent.logits(b, j) - pl);  // coefficient of r(j, y)
      switch (reward.form) {
        case RewardForm::scalar: grad[0] -= T(2) * c; break;
        case RewardForm::diagonal:
          grad[j] -= c;
          grad[y] -= c;
          break;
        case RewardForm::full:
          for (std::int64_t m = 0; m <= std::max<std::int64_t>(j, y); ++m) {
            const T rk = m <= j ? reward.params[rewards::tril_index(j, m)] : T(0);
            const T ry = m <= y ? reward.params[rewards::tril_index(y, m)] : T(0);
            if (m <= j) grad[rewards::tril_index(j, m)] -= c * T(2) * (rk - ry);
            if (m <= y) grad[rewards::tril_index(y, m)] += c * T(2) * (rk - ry);
          }
          break;
      }
    }
  }
}

}  // namespace d2r::reference::categorical
