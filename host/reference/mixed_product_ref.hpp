#pragma once
// CPU reference of the second-order reward pieces (DESIGN.md §5–6): the vector-Jacobian product
// of the group transforms and the exact-curvature mixed products ∇_φ(∇_head L_exact · ḣ).
// Plain loops, templated on the scalar type: the test oracle (double) and the cpu backend.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "d2r/types/heads.hpp"
#include "d2r/types/objectives.hpp"
#include "host/reference/objectives_ref.hpp"
#include "host/reference/rewards_ref.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference {

/// d_r = (∂T(r)/∂r)ᵀ d_a over the G entries of one row (d_r must not alias r or d_a).
template <class T>
void transform_row_backward(const TransformOptions<T>& options, const T* r, const T* da, T* dr,
                            std::int64_t generations) {
  const auto G = generations;
  T da_sum = 0;
  for (std::int64_t g = 0; g < G; ++g) da_sum += da[g];
  switch (options.kind) {
    case Transform::none:
      for (std::int64_t g = 0; g < G; ++g) dr[g] = da[g];
      break;
    case Transform::normalize: {
      // A_g = r_g − r_m with m the first minimal entry.
      const std::int64_t m = std::min_element(r, r + G) - r;
      for (std::int64_t g = 0; g < G; ++g) dr[g] = da[g];
      dr[m] -= da_sum;
      break;
    }
    case Transform::rbf:
      for (std::int64_t g = 0; g < G; ++g) dr[g] = da[g] * options.rbf_gamma * math::exp_(options.rbf_gamma * r[g]);
      break;
    case Transform::leave_one_out:
      // A_g = r_g G/(G−1) − S/(G−1).
      for (std::int64_t g = 0; g < G; ++g) dr[g] = (da[g] * T(G) - da_sum) / T(G - 1);
      break;
    case Transform::standardize: {
      // A_g = z_g / (s + ε), z = r − mean, s = sqrt(Σz²/(G−1)); ∂s/∂r_k = z_k / ((G−1) s) (0 at s = 0).
      // z is formed as in transform_row (centred on r − lo), exactly 0 in a group of equal rewards.
      const T lo = *std::min_element(r, r + G);
      T mean = 0, sq = 0;
      for (std::int64_t g = 0; g < G; ++g) mean += r[g] - lo;
      mean /= T(G);
      for (std::int64_t g = 0; g < G; ++g) sq += (r[g] - lo - mean) * (r[g] - lo - mean);
      const T s = math::sqrt_(sq / T(G - 1));
      const T D = s + options.standardize_epsilon;
      T dz = 0;  // Σ_g da_g z_g
      for (std::int64_t g = 0; g < G; ++g) dz += da[g] * (r[g] - lo - mean);
      const T coef = s > T(0) ? dz / (T(G - 1) * s * D * D) : T(0);
      const T da_mean = da_sum / T(G);
      for (std::int64_t g = 0; g < G; ++g) dr[g] = (da[g] - da_mean) / D - coef * (r[g] - lo - mean);
      break;
    }
  }
}

template <class T>
void transform_rewards_backward(const TransformOptions<T>& options, MatrixView<const T> rewards,
                                MatrixView<const T> d_advantages, MatrixView<T> d_rewards) {
  const std::int64_t G = rewards.cols;
  std::vector<T> r(G), da(G), dr(G);
  for (std::int64_t b = 0; b < rewards.rows; ++b) {
    for (std::int64_t g = 0; g < G; ++g) {
      r[g] = rewards(b, g);
      da[g] = d_advantages(b, g);
    }
    transform_row_backward(options, r.data(), da.data(), dr.data(), G);
    for (std::int64_t g = 0; g < G; ++g) d_rewards(b, g) = dr[g];
  }
}

/// Adds c · ∂(aᵀUb)/∂params into grad (a, b read through callables, dimension n).
template <class T, class A, class Bv>
void bilinear_u_grad(const MahalanobisReward<T>& reward, std::int64_t n, A&& a, Bv&& bv, T c, T* grad) {
  switch (reward.form) {
    case RewardForm::scalar: {
      T s = 0;
      for (std::int64_t i = 0; i < n; ++i) s += a(i) * bv(i);
      grad[0] += c * s;
      break;
    }
    case RewardForm::diagonal:
      for (std::int64_t i = 0; i < n; ++i) grad[i] += c * a(i) * bv(i);
      break;
    case RewardForm::full:
      // aᵀRRᵀb = Σ_j (Rᵀa)_j (Rᵀb)_j; ∂/∂R_ij = a_i (Rᵀb)_j + b_i (Rᵀa)_j.
      for (std::int64_t j = 0; j < n; ++j) {
        T va = 0, vb = 0;
        for (std::int64_t i = j; i < n; ++i) {
          va += reward.params[tril_index(i, j)] * a(i);
          vb += reward.params[tril_index(i, j)] * bv(i);
        }
        for (std::int64_t i = j; i < n; ++i) grad[tril_index(i, j)] += c * (a(i) * vb + bv(i) * va);
      }
      break;
  }
}

/// Adds c · ∂(Σ_d U_dd w_d)/∂params into grad.
template <class T, class W>
void u_diagonal_grad(const MahalanobisReward<T>& reward, std::int64_t n, W&& w, T c, T* grad) {
  switch (reward.form) {
    case RewardForm::scalar: {
      T s = 0;
      for (std::int64_t d = 0; d < n; ++d) s += w(d);
      grad[0] += c * s;
      break;
    }
    case RewardForm::diagonal:
      for (std::int64_t d = 0; d < n; ++d) grad[d] += c * w(d);
      break;
    case RewardForm::full:
      // U_dd = Σ_{j<=d} R_dj²: ∂/∂R_dj = 2 R_dj.
      for (std::int64_t d = 0; d < n; ++d)
        for (std::int64_t j = 0; j <= d; ++j) grad[tril_index(d, j)] += c * T(2) * reward.params[tril_index(d, j)] * w(d);
      break;
  }
}

/// Cholesky Gaussian: with L̇ the factor's tangent (L̇_ij = raẇ_ij for j < i, L̇_ii = σ(raw_ii) raẇ_ii),
///   ∇_head L_exact · ḣ = 2k Σ_b (δ_bᵀ U μ̇_b + Σ_j L_b,:jᵀ U L̇_b,:j) + (λ term),   k = pd/N,
/// i.e. 2k Σ_b tr(U M_b) with M = δ μ̇ᵀ + L L̇ᵀ; its φ-gradient (the λ term does not depend on φ).
/// A shared (1-row) tril and its 1-row tangent enter every row.
template <class T>
void exact_mixed_cholesky_gaussian(const CholeskyGaussian<T>& head, MatrixView<const T> targets,
                                   const MahalanobisReward<T>& reward, ObjectiveScale<T> s,
                                   const CholeskyGaussian<T>& tangent, VectorView<T> grad) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols, P = n * (n + 1) / 2;
  const T k = s.per_dim / s.normaliser;
  std::fill(grad.data, grad.data + grad.size, T(0));
  std::vector<T> L, dL(static_cast<std::size_t>(P));
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t tr = head.tril.rows == 1 ? 0 : b;
    cholesky_detail::load_factor(head, b, L);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < i; ++j) dL[tril_index(i, j)] = tangent.tril(tr, tril_index(i, j));
      dL[tril_index(i, i)] = math::sigmoid(head.tril(tr, tril_index(i, i))) * tangent.tril(tr, tril_index(i, i));
    }
    bilinear_u_grad(
        reward, n, [&](std::int64_t i) { return head.mean(b, i) - targets(b, i); },
        [&](std::int64_t i) { return tangent.mean(b, i); }, T(2) * k, grad.data);
    for (std::int64_t j = 0; j < n; ++j) {  // column j of L and of L̇ (zero above the diagonal)
      bilinear_u_grad(
          reward, n, [&](std::int64_t i) { return i >= j ? L[tril_index(i, j)] : T(0); },
          [&](std::int64_t i) { return i >= j ? dL[tril_index(i, j)] : T(0); }, T(2) * k, grad.data);
    }
  }
}

/// Categorical: ∇_ℓ L_exact · ℓ̇ = −(1/N) Σ_b Σ_k ṗ_k r(k, y_b) + (λ term), ṗ = p ⊙ (ℓ̇ − p·ℓ̇).
template <class T>
void exact_mixed_categorical(const Categorical<T>& head, VectorView<const std::int32_t> labels,
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
            const T rk = m <= j ? reward.params[tril_index(j, m)] : T(0);
            const T ry = m <= y ? reward.params[tril_index(y, m)] : T(0);
            if (m <= j) grad[tril_index(j, m)] -= c * T(2) * (rk - ry);
            if (m <= y) grad[tril_index(y, m)] += c * T(2) * (rk - ry);
          }
          break;
      }
    }
  }
}

}  // namespace d2r::reference
