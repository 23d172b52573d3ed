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
#include "host/reference/rewards.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference::objectives {

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
      for (std::int64_t i = j; i < n; ++i) v[j] += reward.params[rewards::tril_index(i, j)] * delta(i);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j) out[i] += reward.params[rewards::tril_index(i, j)] * v[j];
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
  for (std::int64_t j = 0; j <= d; ++j) s += reward.params[rewards::tril_index(d, j)] * reward.params[rewards::tril_index(d, j)];
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

}  // namespace d2r::reference::objectives
