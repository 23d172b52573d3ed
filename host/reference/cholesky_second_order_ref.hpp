#pragma once
// CPU reference of the head-level second-order primitives of the Cholesky-Gaussian head
// (d2r/second_order.hpp, DESIGN.md §3 and §6): plain loops, templated on the scalar type. Test
// oracle (double) and the cpu backend (float or double).
//
// Per row, with L the factor (L_ii = softplus(raw_ii) + jitter), r = ŷ − μ, z = L⁻¹ r, v = L⁻ᵀ z,
// and the tangent (μ̇, raẇ) mapped to L̇ (L̇_ii = sigmoid(raw_ii) raẇ_ii, L̇_ij = raẇ_ij for j < i):
//   ż = −L⁻¹ (μ̇ + L̇ z),   v̇ = L⁻ᵀ (ż − L̇ᵀ v)                       (d L⁻ᵀ = −L⁻ᵀ L̇ᵀ L⁻ᵀ)
//   ∇ log p · tangent = vᵀ (μ̇ + L̇ z) − Σ_i L̇_ii / L_ii
// The gradient of backward (c = d_log_prob, e = d_entropy), g_L_ij = Σ_g c v_i z_j for j < i,
// g_L_ii = Σ_g c (v_i z_i − 1/L_ii) + e / L_ii, g_raw_ii = g_L_ii σ(raw_ii), g_μ = Σ_g c v, has
// the tangent
//   ġ_μ      = Σ_g c v̇
//   ġ_L_ij   = Σ_g c (v̇_i z_j + v_i ż_j)                                  (j < i)
//   ġ_L_ii   = Σ_g c (v̇_i z_i + v_i ż_i) + (Σ_g c − e) L̇_ii / L_ii²
//   ġ_raw_ii = ġ_L_ii σ(raw_ii) + g_L_ii σ'(raw_ii) raẇ_ii,   σ' = σ(raw) σ(−raw).
// The tangent's jitter is ignored (the jitter is a constant, not a head output).

#include <algorithm>
#include <cstdint>
#include <vector>

#include "d2r/types/heads.hpp"
#include "host/reference/heads/cholesky_gaussian.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference {

namespace cholesky_detail {

/// Packed L̇ of row b: the tangent's raw entries, diagonal scaled by sigmoid(raw_ii) of the head.
template <class T>
void load_factor_tangent(const CholeskyGaussian<T>& head, const CholeskyGaussian<T>& tangent, std::int64_t b,
                         std::vector<T>& dfactor) {
  const std::int64_t n = head.mean.cols;
  const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
  dfactor.resize(static_cast<std::size_t>(packed_size(n)));
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < i; ++j) dfactor[packed_index(i, j)] = tangent.tril(t_row, packed_index(i, j));
    const std::int64_t k = packed_index(i, i);
    dfactor[k] = math::sigmoid(head.tril(t_row, k)) * tangent.tril(t_row, k);
  }
}

/// w = μ̇ + L̇ z.
template <class T>
void tangent_residual(const std::vector<T>& dfactor, const CholeskyGaussian<T>& tangent, std::int64_t b,
                      std::int64_t n, const std::vector<T>& z, std::vector<T>& w) {
  w.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    T acc = tangent.mean(b, i);
    for (std::int64_t j = 0; j <= i; ++j) acc += dfactor[packed_index(i, j)] * z[j];
    w[i] = acc;
  }
}

}  // namespace cholesky_detail

/// out(b, g) = vᵀ (μ̇ + L̇ z) − Σ_i L̇_ii / L_ii.
template <class T>
void cholesky_gaussian_log_prob_jvp(const CholeskyGaussian<T>& head, MatrixView<const T> samples,
                                    const CholeskyGaussian<T>& tangent, MatrixView<T> out) {
  using namespace cholesky_detail;
  const std::int64_t n = head.mean.cols, generations = out.cols;
  std::vector<T> factor, dfactor, z(static_cast<std::size_t>(n)), v, w;
  for (std::int64_t b = 0; b < head.mean.rows; ++b) {
    load_factor(head, b, factor);
    load_factor_tangent(head, tangent, b, dfactor);
    T trace = 0;
    for (std::int64_t i = 0; i < n; ++i) trace += dfactor[packed_index(i, i)] / factor[packed_index(i, i)];
    for (std::int64_t g = 0; g < generations; ++g) {
      for (std::int64_t d = 0; d < n; ++d) z[d] = samples(b * generations + g, d) - head.mean(b, d);
      forward_substitute(factor, n, z);
      back_substitute(factor, n, z, v);
      tangent_residual(dfactor, tangent, b, n, z, w);
      T dot = 0;
      for (std::int64_t d = 0; d < n; ++d) dot += v[d] * w[d];
      out(b, g) = dot - trace;
    }
  }
}

/// Tangent of cholesky_gaussian_backward along (μ̇, raẇ) (see the file comment). A shared
/// (1-row) tril receives the sum over rows b, in increasing b.
template <class T>
void cholesky_gaussian_backward_tangent(const CholeskyGaussian<T>& head, MatrixView<const T> samples,
                                        MatrixView<const T> d_log_prob, VectorView<const T> d_entropy,
                                        const CholeskyGaussian<T>& tangent,
                                        const CholeskyGaussianGrad<T>& grad_tangent) {
  using namespace cholesky_detail;
  const std::int64_t n = head.mean.cols, batch = head.mean.rows, packed = packed_size(n);
  const std::int64_t generations = d_log_prob.empty() ? 0 : d_log_prob.cols;
  const bool shared = head.tril.rows == 1 && batch > 1;
  if (shared) {
    for (std::int64_t k = 0; k < packed; ++k) grad_tangent.tril(0, k) = 0;
  }
  std::vector<T> factor, dfactor, z(static_cast<std::size_t>(n)), v, w, zdot(static_cast<std::size_t>(n)), q,
      vdot, g_mean(static_cast<std::size_t>(n)), g_tril(static_cast<std::size_t>(packed)),
      g_diag(static_cast<std::size_t>(n));
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
    load_factor(head, b, factor);
    load_factor_tangent(head, tangent, b, dfactor);
    std::fill(g_mean.begin(), g_mean.end(), T(0));
    std::fill(g_tril.begin(), g_tril.end(), T(0));
    std::fill(g_diag.begin(), g_diag.end(), T(0));
    T c_sum = 0;
    for (std::int64_t g = 0; g < generations; ++g) {
      const T c = d_log_prob(b, g);
      c_sum += c;
      for (std::int64_t d = 0; d < n; ++d) z[d] = samples(b * generations + g, d) - head.mean(b, d);
      forward_substitute(factor, n, z);
      back_substitute(factor, n, z, v);
      tangent_residual(dfactor, tangent, b, n, z, w);
      // ż = −L⁻¹ w
      for (std::int64_t d = 0; d < n; ++d) zdot[d] = -w[d];
      forward_substitute(factor, n, zdot);
      // v̇ = L⁻ᵀ (ż − L̇ᵀ v)
      q.assign(static_cast<std::size_t>(n), T(0));
      for (std::int64_t i = 0; i < n; ++i) {
        T acc = zdot[i];
        for (std::int64_t k = i; k < n; ++k) acc -= dfactor[packed_index(k, i)] * v[k];
        q[i] = acc;
      }
      back_substitute(factor, n, q, vdot);
      for (std::int64_t i = 0; i < n; ++i) {
        g_mean[i] += c * vdot[i];
        g_diag[i] += c * v[i] * z[i];
        for (std::int64_t j = 0; j <= i; ++j) g_tril[packed_index(i, j)] += c * (vdot[i] * z[j] + v[i] * zdot[j]);
      }
    }
    const T e = d_entropy.empty() ? T(0) : d_entropy[b];
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t k = packed_index(i, i);
      const T l = factor[k], raw = head.tril(t_row, k);
      const T s = math::sigmoid(raw), ds = s * math::sigmoid(-raw);
      const T gdot_l = g_tril[k] + (c_sum - e) * dfactor[k] / (l * l);
      const T g_l = g_diag[i] + (e - c_sum) / l;
      g_tril[k] = gdot_l * s + g_l * ds * tangent.tril(t_row, k);
    }
    for (std::int64_t i = 0; i < n; ++i) grad_tangent.mean(b, i) = g_mean[i];
    for (std::int64_t k = 0; k < packed; ++k) {
      if (shared) {
        grad_tangent.tril(0, k) += g_tril[k];
      } else {
        grad_tangent.tril(b, k) = g_tril[k];
      }
    }
  }
}

}  // namespace d2r::reference
