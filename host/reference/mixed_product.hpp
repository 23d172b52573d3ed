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
#include "host/reference/objectives.hpp"
#include "host/reference/rewards.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference::rewards {

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
      // z is formed as in rewards::transform_row (centred on r − lo), exactly 0 in a group of equal rewards.
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
    rewards::transform_row_backward(options, r.data(), da.data(), dr.data(), G);
    for (std::int64_t g = 0; g < G; ++g) d_rewards(b, g) = dr[g];
  }
}

}  // namespace d2r::reference::rewards

namespace d2r::reference::objectives {

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
          va += reward.params[rewards::tril_index(i, j)] * a(i);
          vb += reward.params[rewards::tril_index(i, j)] * bv(i);
        }
        for (std::int64_t i = j; i < n; ++i) grad[rewards::tril_index(i, j)] += c * (a(i) * vb + bv(i) * va);
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
        for (std::int64_t j = 0; j <= d; ++j) grad[rewards::tril_index(d, j)] += c * T(2) * reward.params[rewards::tril_index(d, j)] * w(d);
      break;
  }
}

}  // namespace d2r::reference::objectives
