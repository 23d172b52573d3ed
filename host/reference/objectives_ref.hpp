#pragma once
// CPU reference of the inner objectives (DESIGN.md §5): the per-row terms of the REINFORCE
// surrogate, the exact-expectation objective and the pathwise objective of each head.
// Plain loops, templated on the scalar type (the double oracle and the cpu backend).
//
// Conventions shared with the kernels: N = normaliser rows, k = pd / N with pd = 1/n under
// per_dimension_mean (1 otherwise, and always 1 for the categorical head); row values are
// already divided by N so that shards add up.

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "d2r/types/objectives.hpp"
#include "host/reference/categorical_ref.hpp"
#include "host/reference/heads/cholesky_gaussian.hpp"
#include "host/reference/rewards_ref.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference {

/// From log-probabilities, raw rewards, advantages and entropies of a batch, the surrogate's
/// per-row values and the cotangents that `backward` turns into the head gradient:
///   x = −pd·log p, clipped to [−c, c] when c > 0 (active = |x| <= c)
///   row_loss_b   = (1/N) [ (1/G) Σ_g clip(x_bg)·A_bg − λ·pd·H_b ]
///   d_log_prob   = −pd·A·active / (N·G),   d_entropy_b = −λ·pd / N,   row_reward_b = mean_g r_bg
template <class T>
void pg_row_terms(const PgOptions<T>& options, ObjectiveScale<T> s, MatrixView<const T> log_prob,
                  MatrixView<const T> rewards, MatrixView<const T> advantages, VectorView<const T> entropy,
                  MatrixView<T> d_log_prob, VectorView<T> d_entropy, const ObjectiveRows<T>& rows) {
  const std::int64_t G = s.generations;
  const T c = options.log_prob_clip;
  for (std::int64_t b = 0; b < log_prob.rows; ++b) {
    T loss = 0, reward_sum = 0;
    for (std::int64_t g = 0; g < G; ++g) {
      T x = -s.per_dim * log_prob(b, g);
      bool active = true;
      if (c > T(0) && (x > c || x < -c)) {
        active = false;
        x = x > c ? c : -c;
      }
      loss += x * advantages(b, g);
      reward_sum += rewards(b, g);
      d_log_prob(b, g) = active ? -s.per_dim * advantages(b, g) / (s.normaliser * T(G)) : T(0);
    }
    rows.row_loss[b] = (loss / T(G) - options.entropy_weight * s.per_dim * entropy[b]) / s.normaliser;
    if (!rows.row_reward.empty()) rows.row_reward[b] = reward_sum / T(G);
    d_entropy[b] = -options.entropy_weight * s.per_dim / s.normaliser;
  }
}

/// Writes U·δ into `out` and returns δᵀUδ, for the reward's U in dimension n.
template <class T, class Delta>
T apply_u(const MahalanobisReward<T>& reward, std::int64_t n, Delta&& delta, std::vector<T>& out) {
  out.assign(static_cast<std::size_t>(n), T(0));
  if (reward.form == RewardForm::full) {
    std::vector<T> v(static_cast<std::size_t>(n), T(0));  // Rᵀδ
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t i = j; i < n; ++i) v[j] += reward.params[tril_index(i, j)] * delta(i);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j) out[i] += reward.params[tril_index(i, j)] * v[j];
  } else {
    for (std::int64_t i = 0; i < n; ++i)
      out[i] = (reward.form == RewardForm::scalar ? reward.params[0] : reward.params[i]) * delta(i);
  }
  T quad = 0;
  for (std::int64_t i = 0; i < n; ++i) quad += delta(i) * out[i];
  return quad;
}

/// U_dd of the reward.
template <class T>
T u_diagonal(const MahalanobisReward<T>& reward, std::int64_t d) {
  if (reward.form == RewardForm::scalar) return reward.params[0];
  if (reward.form == RewardForm::diagonal) return reward.params[d];
  T s = 0;
  for (std::int64_t j = 0; j <= d; ++j) s += reward.params[tril_index(d, j)] * reward.params[tril_index(d, j)];
  return s;
}

/// Dense U (n x n, row-major) of the reward.
template <class T>
std::vector<T> dense_u(const MahalanobisReward<T>& reward, std::int64_t n) {
  std::vector<T> U(static_cast<std::size_t>(n * n), T(0)), column;
  for (std::int64_t j = 0; j < n; ++j) {
    apply_u(reward, n, [&](std::int64_t i) { return i == j ? T(1) : T(0); }, column);
    for (std::int64_t i = 0; i < n; ++i) U[i * n + j] = column[i];
  }
  return U;
}

// ---------------------------------------------------------------- exact expectation
/// Cholesky Gaussian: E[r] = −δᵀUδ − tr(U L Lᵀ); ∂/∂L = −2 U L (lower part), ∂H/∂L_dd = 1/L_dd.
template <class T>
void exact_cholesky_gaussian(const CholeskyGaussian<T>& head, MatrixView<const T> targets,
                             const MahalanobisReward<T>& reward, const PgOptions<T>& options, ObjectiveScale<T> s,
                             const ObjectiveRows<T>& rows, const CholeskyGaussianGrad<T>& grad) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols, P = n * (n + 1) / 2;
  const bool shared = head.tril.rows == 1 && B > 1;
  const T k = s.per_dim / s.normaliser, lambda = options.entropy_weight;
  const std::vector<T> U = dense_u(reward, n);
  if (shared)
    for (std::int64_t p = 0; p < P; ++p) grad.tril(0, p) = 0;
  std::vector<T> L, u_delta;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t tr = head.tril.rows == 1 ? 0 : b;
    cholesky_detail::load_factor(head, b, L);
    const T quad = apply_u(reward, n, [&](std::int64_t i) { return head.mean(b, i) - targets(b, i); }, u_delta);
    T trace = 0, H = T(0.5 * math::kLog2PiE) * T(n);
    for (std::int64_t d = 0; d < n; ++d) {
      H += math::log_(L[tril_index(d, d)]);
      grad.mean(b, d) = T(2) * k * u_delta[d];
    }
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j <= i; ++j) {
        T ul = 0;  // (U L)_ij
        for (std::int64_t m = j; m < n; ++m) ul += U[i * n + m] * L[tril_index(m, j)];
        trace += L[tril_index(i, j)] * ul;
        T g = -k * (T(-2) * ul + (i == j ? lambda / L[tril_index(i, i)] : T(0)));
        if (i == j) g *= math::sigmoid(head.tril(tr, tril_index(i, i)));
        if (shared) {
          grad.tril(0, tril_index(i, j)) += g;
        } else {
          grad.tril(b, tril_index(i, j)) = g;
        }
      }
    }
    const T expected = -quad - trace;
    rows.row_loss[b] = -k * (expected + lambda * H);
    if (!rows.row_reward.empty()) rows.row_reward[b] = expected;
  }
}

/// Tangent of exact_cholesky_gaussian's head gradient along ḣ = (μ̇, raẇ) (the head-level Hessian
/// of L_exact applied to ḣ; it does not depend on the targets). With L̇ the tangent of the factor
/// (L̇_ij = raẇ_ij for j < i, L̇_ii = σ(raw_ii) raẇ_ii) and the gradient
/// g_L_ij = 2k (UL)_ij − [i = j] kλ / L_ii of exact_cholesky_gaussian:
///   R(∂/∂μ_b)      = 2k U μ̇_b
///   R(∂/∂raw_ij)   = 2k (U L̇)_ij                                                 (j < i)
///   R(∂/∂raw_ii)   = (2k (U L̇)_ii + kλ L̇_ii / L_ii²) σ(raw_ii) + g_L_ii σ'(raw_ii) raẇ_ii,
/// σ' = σ(raw) σ(−raw); a shared (1-row) tril receives the sum over rows. The tangent's jitter is
/// ignored.
template <class T>
void exact_cholesky_gaussian_tangent(const CholeskyGaussian<T>& head, const MahalanobisReward<T>& reward,
                                     const PgOptions<T>& options, ObjectiveScale<T> s,
                                     const CholeskyGaussian<T>& tangent, const CholeskyGaussianGrad<T>& grad_tangent) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols, P = n * (n + 1) / 2;
  const bool shared = head.tril.rows == 1 && B > 1;
  const T k = s.per_dim / s.normaliser, lambda = options.entropy_weight;
  const std::vector<T> U = dense_u(reward, n);
  if (shared)
    for (std::int64_t p = 0; p < P; ++p) grad_tangent.tril(0, p) = 0;
  std::vector<T> L, dL(static_cast<std::size_t>(P));
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t tr = head.tril.rows == 1 ? 0 : b;
    cholesky_detail::load_factor(head, b, L);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < i; ++j) dL[tril_index(i, j)] = tangent.tril(tr, tril_index(i, j));
      dL[tril_index(i, i)] = math::sigmoid(head.tril(tr, tril_index(i, i))) * tangent.tril(tr, tril_index(i, i));
    }
    for (std::int64_t i = 0; i < n; ++i) {
      T u_mdot = 0;
      for (std::int64_t m = 0; m < n; ++m) u_mdot += U[i * n + m] * tangent.mean(b, m);
      grad_tangent.mean(b, i) = T(2) * k * u_mdot;
    }
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j <= i; ++j) {
        T udl = 0;  // (U L̇)_ij
        for (std::int64_t m = j; m < n; ++m) udl += U[i * n + m] * dL[tril_index(m, j)];
        T g = T(2) * k * udl;
        if (i == j) {
          T ul = 0;  // (U L)_ii
          for (std::int64_t m = i; m < n; ++m) ul += U[i * n + m] * L[tril_index(m, i)];
          const T l = L[tril_index(i, i)], raw = head.tril(tr, tril_index(i, i));
          const T sig = math::sigmoid(raw), dsig = sig * math::sigmoid(-raw);
          const T g_l = T(2) * k * ul - k * lambda / l;
          g = (g + k * lambda * dL[tril_index(i, i)] / (l * l)) * sig + g_l * dsig * tangent.tril(tr, tril_index(i, i));
        }
        if (shared) {
          grad_tangent.tril(0, tril_index(i, j)) += g;
        } else {
          grad_tangent.tril(b, tril_index(i, j)) = g;
        }
      }
    }
  }
}

/// Categorical: E[r] = Σ_k p_k r(k, y); ∂E/∂ℓ_j = p_j (r(j, y) − E[r]). Classes whose logit is
/// not > −inf (−inf or NaN) are masked (p = 0); a row with no distribution (categorical_row_stats
/// not valid, possible under ValueChecks::none) gets NaN gradients and outputs, as the kernels.
template <class T>
void exact_categorical(const Categorical<T>& head, VectorView<const std::int32_t> labels,
                       const MahalanobisReward<T>& reward, const PgOptions<T>& options, ObjectiveScale<T> s,
                       const ObjectiveRows<T>& rows, const CategoricalGrad<T>& grad) {
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  const std::int64_t B = head.logits.rows, C = head.logits.cols;
  const T k = T(1) / s.normaliser, lambda = options.entropy_weight;
  std::vector<T> p(static_cast<std::size_t>(C)), logp(static_cast<std::size_t>(C)), r(static_cast<std::size_t>(C));
  for (std::int64_t b = 0; b < B; ++b) {
    const CategoricalRowStats<T> st = categorical_row_stats(head.logits, b);
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
      r[j] = one_hot_reward(reward, C, static_cast<std::int32_t>(j), labels[b]);
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

/// Tangent of exact_categorical's head gradient along ℓ̇ (the head-level Hessian of L_exact applied
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
void exact_categorical_tangent(const Categorical<T>& head, VectorView<const std::int32_t> labels,
                               const MahalanobisReward<T>& reward, const PgOptions<T>& options, ObjectiveScale<T> s,
                               const Categorical<T>& tangent, const CategoricalGrad<T>& grad_tangent) {
  const std::int64_t B = head.logits.rows, C = head.logits.cols;
  const T k = T(1) / s.normaliser, lambda = options.entropy_weight;
  std::vector<T> p(static_cast<std::size_t>(C)), logp(static_cast<std::size_t>(C)), r(static_cast<std::size_t>(C)),
      u(static_cast<std::size_t>(C));
  for (std::int64_t b = 0; b < B; ++b) {
    const CategoricalRowStats<T> st = categorical_row_stats(head.logits, b);
    if (!st.valid()) {
      for (std::int64_t j = 0; j < C; ++j) grad_tangent.logits(b, j) = std::numeric_limits<T>::quiet_NaN();
      continue;
    }
    std::int64_t a = 0;  // the most probable class (first index of the largest logit)
    while (!(head.logits(b, a) == st.max)) ++a;
    const T t_a = tangent.logits(b, a);
    const T r_a = one_hot_reward(reward, C, static_cast<std::int32_t>(a), labels[b]);
    const T log_sum = st.log_sum();
    T expected = 0, H = 0, mean_dot = 0;  // expected and mean_dot of the shifted r and ℓ̇
    for (std::int64_t j = 0; j < C; ++j) {
      const bool live = head.logits(b, j) > -std::numeric_limits<T>::infinity();
      logp[j] = live ? (head.logits(b, j) - st.max) - log_sum : T(0);
      p[j] = live ? math::exp_(logp[j]) : T(0);
      r[j] = one_hot_reward(reward, C, static_cast<std::int32_t>(j), labels[b]) - r_a;
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

// ---------------------------------------------------------------- pathwise
/// T(r) and T'(r) for the pathwise transforms (none, rbf).
template <class T>
void pathwise_transform(const TransformOptions<T>& o, T r, T& value, T& slope) {
  if (o.kind == Transform::rbf) {
    value = math::exp_(o.rbf_gamma * r);
    slope = o.rbf_gamma * value;
  } else {
    value = r;
    slope = T(1);
  }
}

/// Cholesky Gaussian, ŷ = μ + Lε: ∂ŷ_i/∂L_ij = ε_j.
template <class T>
void pathwise_cholesky_gaussian(const CholeskyGaussian<T>& head, MatrixView<const T> targets,
                                const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                                math::DrawPosition pos, ObjectiveScale<T> s, const ObjectiveRows<T>& rows,
                                const CholeskyGaussianGrad<T>& grad) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols, G = s.generations, P = n * (n + 1) / 2;
  const bool shared = head.tril.rows == 1 && B > 1;
  const T k = s.per_dim / s.normaliser, lambda = options.entropy_weight;
  if (shared)
    for (std::int64_t p = 0; p < P; ++p) grad.tril(0, p) = 0;
  std::vector<T> L, eps(n), y_hat(n), u_delta, gm(n), gl(P);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t tr = head.tril.rows == 1 ? 0 : b;
    cholesky_detail::load_factor(head, b, L);
    std::fill(gm.begin(), gm.end(), T(0));
    std::fill(gl.begin(), gl.end(), T(0));
    T value_sum = 0, reward_sum = 0, H = T(0.5 * math::kLog2PiE) * T(n);
    for (std::int64_t g = 0; g < G; ++g) {
      for (std::int64_t d = 0; d < n; ++d)
        eps[d] = math::normal<T>(pos.seed, pos.step_at(), static_cast<std::uint32_t>(pos.first_row + b),
                                 static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(d));
      for (std::int64_t i = 0; i < n; ++i) {
        y_hat[i] = head.mean(b, i);
        for (std::int64_t j = 0; j <= i; ++j) y_hat[i] += L[tril_index(i, j)] * eps[j];
      }
      const T r = -apply_u(reward, n, [&](std::int64_t i) { return y_hat[i] - targets(b, i); }, u_delta);
      T value, slope;
      pathwise_transform(options.transform, r, value, slope);
      value_sum += value;
      reward_sum += r;
      for (std::int64_t i = 0; i < n; ++i) {
        const T dr = T(-2) * u_delta[i];
        gm[i] += slope * dr;
        for (std::int64_t j = 0; j <= i; ++j) gl[tril_index(i, j)] += slope * dr * eps[j];
      }
    }
    for (std::int64_t d = 0; d < n; ++d) H += math::log_(L[tril_index(d, d)]);
    for (std::int64_t d = 0; d < n; ++d) grad.mean(b, d) = -k * gm[d] / T(G);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j <= i; ++j) {
        T g = -k * (gl[tril_index(i, j)] / T(G) + (i == j ? lambda / L[tril_index(i, i)] : T(0)));
        if (i == j) g *= math::sigmoid(head.tril(tr, tril_index(i, i)));
        if (shared) {
          grad.tril(0, tril_index(i, j)) += g;
        } else {
          grad.tril(b, tril_index(i, j)) = g;
        }
      }
    }
    rows.row_loss[b] = -k * (value_sum / T(G) + lambda * H);
    if (!rows.row_reward.empty()) rows.row_reward[b] = reward_sum / T(G);
  }
}

}  // namespace d2r::reference
