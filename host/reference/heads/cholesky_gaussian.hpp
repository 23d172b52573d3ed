#pragma once
// CPU reference of the Cholesky-Gaussian head: plain loops over the formulas of DESIGN.md §3,
// templated on the scalar type. It is the test oracle (in double) and the cpu backend (float or
// double). Draws come from the same Philox stream as the CUDA kernels. Every primitive of the
// head is here: the distribution, its second-order pieces (d2r/second_order.hpp, DESIGN.md §6),
// the exact and pathwise objectives and the exact-curvature mixed product.
//
// Row b's factor L_b is lower triangular, packed row-major: entry (i, j), j <= i, at column
// i(i+1)/2 + j of `tril`; L_ii = softplus(raw_ii) + jitter, off-diagonal entries used as given.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "d2r/types/heads.hpp"
#include "d2r/types/objectives.hpp"
#include "host/reference/mixed_product.hpp"
#include "host/reference/objectives.hpp"
#include "host/reference/rewards.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference::cholesky_gaussian {

namespace detail {

/// Column of entry (i, j), j <= i, in the packed lower triangle.
constexpr std::int64_t packed_index(std::int64_t i, std::int64_t j) { return i * (i + 1) / 2 + j; }
/// Number of packed entries of an n x n lower triangle.
constexpr std::int64_t packed_size(std::int64_t n) { return n * (n + 1) / 2; }

/// Packed factor L of row b (diagonal transformed).
template <class T>
void load_factor(const CholeskyGaussian<T>& head, std::int64_t b, std::vector<T>& factor) {
  const std::int64_t n = head.mean.cols;
  const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
  factor.resize(static_cast<std::size_t>(packed_size(n)));
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < i; ++j) factor[packed_index(i, j)] = head.tril(t_row, packed_index(i, j));
    factor[packed_index(i, i)] = math::softplus(head.tril(t_row, packed_index(i, i))) + head.jitter;
  }
}

/// z = L⁻¹ r by forward substitution (in place: r becomes z).
template <class T>
void forward_substitute(const std::vector<T>& factor, std::int64_t n, std::vector<T>& r) {
  for (std::int64_t i = 0; i < n; ++i) {
    T acc = r[i];
    for (std::int64_t j = 0; j < i; ++j) acc -= factor[packed_index(i, j)] * r[j];
    r[i] = acc / factor[packed_index(i, i)];
  }
}

/// v = L⁻ᵀ z by back substitution.
template <class T>
void back_substitute(const std::vector<T>& factor, std::int64_t n, const std::vector<T>& z, std::vector<T>& v) {
  v.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = n - 1; i >= 0; --i) {
    T acc = z[i];
    for (std::int64_t k = i + 1; k < n; ++k) acc -= factor[packed_index(k, i)] * v[k];
    v[i] = acc / factor[packed_index(i, i)];
  }
}

template <class T>
T log_det(const std::vector<T>& factor, std::int64_t n) {
  T sum = 0;
  for (std::int64_t d = 0; d < n; ++d) sum += math::log_(factor[packed_index(d, d)]);
  return sum;
}

}  // namespace detail

/// samples(b*G + g, i) = μ_bi + Σ_{j<=i} L_b,ij ε_bgj, with ε keyed by (seed, step, first_row + b, g, j).
template <class T>
void sample(const CholeskyGaussian<T>& head, std::int64_t generations, math::DrawPosition pos, MatrixView<T> samples) {
  using namespace detail;
  const std::int64_t n = head.mean.cols;
  std::vector<T> factor, eps(static_cast<std::size_t>(n));
  for (std::int64_t b = 0; b < head.mean.rows; ++b) {
    load_factor(head, b, factor);
    for (std::int64_t g = 0; g < generations; ++g) {
      for (std::int64_t q = 0; q < (n + 3) / 4; ++q) {  // one Philox call per 4 dims
        const math::Normal4<T> quad = math::normal4<T>(pos.seed, pos.step_at(), static_cast<std::uint32_t>(pos.first_row + b),
                                                       static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(q));
        for (std::int64_t k = 0; k < 4 && 4 * q + k < n; ++k) eps[4 * q + k] = quad.z[k];
      }
      for (std::int64_t i = 0; i < n; ++i) {
        T acc = head.mean(b, i);
        for (std::int64_t j = 0; j <= i; ++j) acc += factor[packed_index(i, j)] * eps[j];
        samples(b * generations + g, i) = acc;
      }
    }
  }
}

/// log p = −½‖z‖² − Σ_d log L_dd − (n/2) log 2π with z = L⁻¹(ŷ − μ).
template <class T>
void log_prob(const CholeskyGaussian<T>& head, MatrixView<const T> samples, MatrixView<T> out) {
  using namespace detail;
  const std::int64_t n = head.mean.cols, generations = out.cols;
  std::vector<T> factor, z(static_cast<std::size_t>(n));
  for (std::int64_t b = 0; b < head.mean.rows; ++b) {
    load_factor(head, b, factor);
    const T constant = -log_det(factor, n) - T(0.5 * math::kLog2Pi) * static_cast<T>(n);
    for (std::int64_t g = 0; g < generations; ++g) {
      for (std::int64_t d = 0; d < n; ++d) z[d] = samples(b * generations + g, d) - head.mean(b, d);
      forward_substitute(factor, n, z);
      T squares = 0;
      for (std::int64_t d = 0; d < n; ++d) squares += z[d] * z[d];
      out(b, g) = T(-0.5) * squares + constant;
    }
  }
}

/// H = Σ_d log L_dd + (n/2) log 2πe.
template <class T>
void entropy(const CholeskyGaussian<T>& head, VectorView<T> out) {
  using namespace detail;
  const std::int64_t n = head.mean.cols;
  std::vector<T> factor;
  for (std::int64_t b = 0; b < head.mean.rows; ++b) {
    load_factor(head, b, factor);
    out[b] = log_det(factor, n) + T(0.5 * math::kLog2PiE) * static_cast<T>(n);
  }
}

/// grad.mean(b, i)       = Σ_g c_bg v_i                           (v = L⁻ᵀ z)
/// grad.tril(b, (i, j))  = Σ_g c_bg v_i z_j                        (j < i)
/// grad.tril(b, (i, i))  = (Σ_g c_bg (v_i z_i − 1/L_ii) + e_b / L_ii) · sigmoid(raw_ii)
/// A shared (1-row) tril receives the sum over rows b, in increasing b.
template <class T>
void backward(const CholeskyGaussian<T>& head, MatrixView<const T> samples, MatrixView<const T> d_log_prob,
              VectorView<const T> d_entropy, const CholeskyGaussianGrad<T>& grad) {
  using namespace detail;
  const std::int64_t n = head.mean.cols, batch = head.mean.rows, packed = packed_size(n);
  const std::int64_t generations = d_log_prob.empty() ? 0 : d_log_prob.cols;
  const bool shared = head.tril.rows == 1 && batch > 1;
  if (shared) {
    for (std::int64_t k = 0; k < packed; ++k) grad.tril(0, k) = 0;
  }
  std::vector<T> factor, z(static_cast<std::size_t>(n)), v, g_mean(static_cast<std::size_t>(n)),
      g_tril(static_cast<std::size_t>(packed));
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t t_row = head.tril.rows == 1 ? 0 : b;
    load_factor(head, b, factor);
    std::fill(g_mean.begin(), g_mean.end(), T(0));
    std::fill(g_tril.begin(), g_tril.end(), T(0));
    T c_sum = 0;
    for (std::int64_t g = 0; g < generations; ++g) {
      const T c = d_log_prob(b, g);
      c_sum += c;
      for (std::int64_t d = 0; d < n; ++d) z[d] = samples(b * generations + g, d) - head.mean(b, d);
      forward_substitute(factor, n, z);
      back_substitute(factor, n, z, v);
      for (std::int64_t i = 0; i < n; ++i) {
        const T cv = c * v[i];
        g_mean[i] += cv;
        for (std::int64_t j = 0; j <= i; ++j) g_tril[packed_index(i, j)] += cv * z[j];
      }
    }
    const T e = d_entropy.empty() ? T(0) : d_entropy[b];
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t k = packed_index(i, i);
      g_tril[k] = (g_tril[k] + (e - c_sum) / factor[k]) * math::sigmoid(head.tril(t_row, k));
    }
    for (std::int64_t i = 0; i < n; ++i) grad.mean(b, i) = g_mean[i];
    for (std::int64_t k = 0; k < packed; ++k) {
      if (shared) {
        grad.tril(0, k) += g_tril[k];
      } else {
        grad.tril(b, k) = g_tril[k];
      }
    }
  }
}

// ---------------------------------------------------------------- second order (d2r/second_order.hpp)
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

namespace detail {

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

}  // namespace detail

/// out(b, g) = vᵀ (μ̇ + L̇ z) − Σ_i L̇_ii / L_ii.
template <class T>
void log_prob_jvp(const CholeskyGaussian<T>& head, MatrixView<const T> samples, const CholeskyGaussian<T>& tangent,
                  MatrixView<T> out) {
  using namespace detail;
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

/// Tangent of backward along (μ̇, raẇ) (see the file comment). A shared
/// (1-row) tril receives the sum over rows b, in increasing b.
template <class T>
void backward_tangent(const CholeskyGaussian<T>& head, MatrixView<const T> samples, MatrixView<const T> d_log_prob,
                      VectorView<const T> d_entropy, const CholeskyGaussian<T>& tangent,
                      const CholeskyGaussianGrad<T>& grad_tangent) {
  using namespace detail;
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

// ---------------------------------------------------------------- exact objective and its tangent
/// Cholesky Gaussian: E[r] = −δᵀUδ − tr(U L Lᵀ); ∂/∂L = −2 U L (lower part), ∂H/∂L_dd = 1/L_dd.
template <class T>
void exact_objective(const CholeskyGaussian<T>& head, MatrixView<const T> targets, const MahalanobisReward<T>& reward,
                     const PgOptions<T>& options, ObjectiveScale<T> s, const ObjectiveRows<T>& rows,
                     const CholeskyGaussianGrad<T>& grad) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols, P = n * (n + 1) / 2;
  const bool shared = head.tril.rows == 1 && B > 1;
  const T k = s.per_dim / s.normaliser, lambda = options.entropy_weight;
  const std::vector<T> U = objectives::dense_u(reward, n);
  if (shared)
    for (std::int64_t p = 0; p < P; ++p) grad.tril(0, p) = 0;
  std::vector<T> L, u_delta;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t tr = head.tril.rows == 1 ? 0 : b;
    detail::load_factor(head, b, L);
    const T quad = objectives::apply_u(
        reward, n, [&](std::int64_t i) { return head.mean(b, i) - targets(b, i); }, u_delta);
    T trace = 0, H = T(0.5 * math::kLog2PiE) * T(n);
    for (std::int64_t d = 0; d < n; ++d) {
      H += math::log_(L[rewards::tril_index(d, d)]);
      grad.mean(b, d) = T(2) * k * u_delta[d];
    }
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j <= i; ++j) {
        T ul = 0;  // (U L)_ij
        for (std::int64_t m = j; m < n; ++m) ul += U[i * n + m] * L[rewards::tril_index(m, j)];
        trace += L[rewards::tril_index(i, j)] * ul;
        T g = -k * (T(-2) * ul + (i == j ? lambda / L[rewards::tril_index(i, i)] : T(0)));
        if (i == j) g *= math::sigmoid(head.tril(tr, rewards::tril_index(i, i)));
        if (shared) {
          grad.tril(0, rewards::tril_index(i, j)) += g;
        } else {
          grad.tril(b, rewards::tril_index(i, j)) = g;
        }
      }
    }
    const T expected = -quad - trace;
    rows.row_loss[b] = -k * (expected + lambda * H);
    if (!rows.row_reward.empty()) rows.row_reward[b] = expected;
  }
}

/// Tangent of exact_objective's head gradient along ḣ = (μ̇, raẇ) (the head-level Hessian
/// of L_exact applied to ḣ; it does not depend on the targets). With L̇ the tangent of the factor
/// (L̇_ij = raẇ_ij for j < i, L̇_ii = σ(raw_ii) raẇ_ii) and the gradient
/// g_L_ij = 2k (UL)_ij − [i = j] kλ / L_ii of exact_objective:
///   R(∂/∂μ_b)      = 2k U μ̇_b
///   R(∂/∂raw_ij)   = 2k (U L̇)_ij                                                 (j < i)
///   R(∂/∂raw_ii)   = (2k (U L̇)_ii + kλ L̇_ii / L_ii²) σ(raw_ii) + g_L_ii σ'(raw_ii) raẇ_ii,
/// σ' = σ(raw) σ(−raw); a shared (1-row) tril receives the sum over rows. The tangent's jitter is
/// ignored.
template <class T>
void exact_backward_tangent(const CholeskyGaussian<T>& head, const MahalanobisReward<T>& reward,
                            const PgOptions<T>& options, ObjectiveScale<T> s, const CholeskyGaussian<T>& tangent,
                            const CholeskyGaussianGrad<T>& grad_tangent) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols, P = n * (n + 1) / 2;
  const bool shared = head.tril.rows == 1 && B > 1;
  const T k = s.per_dim / s.normaliser, lambda = options.entropy_weight;
  const std::vector<T> U = objectives::dense_u(reward, n);
  if (shared)
    for (std::int64_t p = 0; p < P; ++p) grad_tangent.tril(0, p) = 0;
  std::vector<T> L, dL(static_cast<std::size_t>(P));
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t tr = head.tril.rows == 1 ? 0 : b;
    detail::load_factor(head, b, L);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < i; ++j) dL[rewards::tril_index(i, j)] = tangent.tril(tr, rewards::tril_index(i, j));
      dL[rewards::tril_index(i, i)] = math::sigmoid(head.tril(tr, rewards::tril_index(i, i))) * tangent.tril(tr, rewards::tril_index(i, i));
    }
    for (std::int64_t i = 0; i < n; ++i) {
      T u_mdot = 0;
      for (std::int64_t m = 0; m < n; ++m) u_mdot += U[i * n + m] * tangent.mean(b, m);
      grad_tangent.mean(b, i) = T(2) * k * u_mdot;
    }
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j <= i; ++j) {
        T udl = 0;  // (U L̇)_ij
        for (std::int64_t m = j; m < n; ++m) udl += U[i * n + m] * dL[rewards::tril_index(m, j)];
        T g = T(2) * k * udl;
        if (i == j) {
          T ul = 0;  // (U L)_ii
          for (std::int64_t m = i; m < n; ++m) ul += U[i * n + m] * L[rewards::tril_index(m, i)];
          const T l = L[rewards::tril_index(i, i)], raw = head.tril(tr, rewards::tril_index(i, i));
          const T sig = math::sigmoid(raw), dsig = sig * math::sigmoid(-raw);
          const T g_l = T(2) * k * ul - k * lambda / l;
          g = (g + k * lambda * dL[rewards::tril_index(i, i)] / (l * l)) * sig + g_l * dsig * tangent.tril(tr, rewards::tril_index(i, i));
        }
        if (shared) {
          grad_tangent.tril(0, rewards::tril_index(i, j)) += g;
        } else {
          grad_tangent.tril(b, rewards::tril_index(i, j)) = g;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- pathwise objective
/// Cholesky Gaussian, ŷ = μ + Lε: ∂ŷ_i/∂L_ij = ε_j.
template <class T>
void pg_pathwise(const CholeskyGaussian<T>& head, MatrixView<const T> targets, const MahalanobisReward<T>& reward,
                 const PgOptions<T>& options, math::DrawPosition pos, ObjectiveScale<T> s, const ObjectiveRows<T>& rows,
                 const CholeskyGaussianGrad<T>& grad) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols, G = s.generations, P = n * (n + 1) / 2;
  const bool shared = head.tril.rows == 1 && B > 1;
  const T k = s.per_dim / s.normaliser, lambda = options.entropy_weight;
  if (shared)
    for (std::int64_t p = 0; p < P; ++p) grad.tril(0, p) = 0;
  std::vector<T> L, eps(n), y_hat(n), u_delta, gm(n), gl(P);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t tr = head.tril.rows == 1 ? 0 : b;
    detail::load_factor(head, b, L);
    std::fill(gm.begin(), gm.end(), T(0));
    std::fill(gl.begin(), gl.end(), T(0));
    T value_sum = 0, reward_sum = 0, H = T(0.5 * math::kLog2PiE) * T(n);
    for (std::int64_t g = 0; g < G; ++g) {
      for (std::int64_t d = 0; d < n; ++d)
        eps[d] = math::normal<T>(pos.seed, pos.step_at(), static_cast<std::uint32_t>(pos.first_row + b),
                                 static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(d));
      for (std::int64_t i = 0; i < n; ++i) {
        y_hat[i] = head.mean(b, i);
        for (std::int64_t j = 0; j <= i; ++j) y_hat[i] += L[rewards::tril_index(i, j)] * eps[j];
      }
      const T r = -objectives::apply_u(
          reward, n, [&](std::int64_t i) { return y_hat[i] - targets(b, i); }, u_delta);
      T value, slope;
      objectives::pathwise_transform(options.transform, r, value, slope);
      value_sum += value;
      reward_sum += r;
      for (std::int64_t i = 0; i < n; ++i) {
        const T dr = T(-2) * u_delta[i];
        gm[i] += slope * dr;
        for (std::int64_t j = 0; j <= i; ++j) gl[rewards::tril_index(i, j)] += slope * dr * eps[j];
      }
    }
    for (std::int64_t d = 0; d < n; ++d) H += math::log_(L[rewards::tril_index(d, d)]);
    for (std::int64_t d = 0; d < n; ++d) grad.mean(b, d) = -k * gm[d] / T(G);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j <= i; ++j) {
        T g = -k * (gl[rewards::tril_index(i, j)] / T(G) + (i == j ? lambda / L[rewards::tril_index(i, i)] : T(0)));
        if (i == j) g *= math::sigmoid(head.tril(tr, rewards::tril_index(i, i)));
        if (shared) {
          grad.tril(0, rewards::tril_index(i, j)) += g;
        } else {
          grad.tril(b, rewards::tril_index(i, j)) = g;
        }
      }
    }
    rows.row_loss[b] = -k * (value_sum / T(G) + lambda * H);
    if (!rows.row_reward.empty()) rows.row_reward[b] = reward_sum / T(G);
  }
}

// ---------------------------------------------------------------- exact-curvature mixed product
/// Cholesky Gaussian: with L̇ the factor's tangent (L̇_ij = raẇ_ij for j < i, L̇_ii = σ(raw_ii) raẇ_ii),
///   ∇_head L_exact · ḣ = 2k Σ_b (δ_bᵀ U μ̇_b + Σ_j L_b,:jᵀ U L̇_b,:j) + (λ term),   k = pd/N,
/// i.e. 2k Σ_b tr(U M_b) with M = δ μ̇ᵀ + L L̇ᵀ; its φ-gradient (the λ term does not depend on φ).
/// A shared (1-row) tril and its 1-row tangent enter every row.
template <class T>
void exact_mixed_product(const CholeskyGaussian<T>& head, MatrixView<const T> targets,
                         const MahalanobisReward<T>& reward, ObjectiveScale<T> s, const CholeskyGaussian<T>& tangent,
                         VectorView<T> grad) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols, P = n * (n + 1) / 2;
  const T k = s.per_dim / s.normaliser;
  std::fill(grad.data, grad.data + grad.size, T(0));
  std::vector<T> L, dL(static_cast<std::size_t>(P));
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t tr = head.tril.rows == 1 ? 0 : b;
    detail::load_factor(head, b, L);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < i; ++j) dL[rewards::tril_index(i, j)] = tangent.tril(tr, rewards::tril_index(i, j));
      dL[rewards::tril_index(i, i)] = math::sigmoid(head.tril(tr, rewards::tril_index(i, i))) * tangent.tril(tr, rewards::tril_index(i, i));
    }
    objectives::bilinear_u_grad(
        reward, n, [&](std::int64_t i) { return head.mean(b, i) - targets(b, i); },
        [&](std::int64_t i) { return tangent.mean(b, i); }, T(2) * k, grad.data);
    for (std::int64_t j = 0; j < n; ++j) {  // column j of L and of L̇ (zero above the diagonal)
      objectives::bilinear_u_grad(
          reward, n, [&](std::int64_t i) { return i >= j ? L[rewards::tril_index(i, j)] : T(0); },
          [&](std::int64_t i) { return i >= j ? dL[rewards::tril_index(i, j)] : T(0); }, T(2) * k, grad.data);
    }
  }
}

}  // namespace d2r::reference::cholesky_gaussian
