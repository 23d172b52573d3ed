#pragma once
// CPU reference of the diagonal-Gaussian head: plain loops over the formulas of DESIGN.md §3,
// templated on the scalar type. It is the test oracle (in double) and the cpu backend (float or
// double). Draws come from the same Philox stream as the CUDA kernels. Every primitive of the
// head is here: the distribution, its second-order pieces (d2r/second_order.hpp, DESIGN.md §6),
// the exact, pathwise objectives and the exact-curvature mixed product.
//
// Second order, with δ = ŷ − μ, v = e^{−2s} (s the row's log_std):
//   ∂log p/∂μ = δ v,  ∂log p/∂s = δ² v − 1,
//   ∂²/∂μ² = −v,  ∂²/∂μ∂s = −2 δ v,  ∂²/∂s² = −2 δ² v;  the entropy has a zero Hessian.

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

namespace d2r::reference::diag_gaussian {

template <class T>
void sample(const DiagGaussian<T>& head, std::int64_t generations, math::DrawPosition pos, MatrixView<T> samples) {
  const std::int64_t n = head.mean.cols;
  for (std::int64_t b = 0; b < head.mean.rows; ++b) {
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    for (std::int64_t g = 0; g < generations; ++g) {
      math::Normal4<T> quad{};
      for (std::int64_t d = 0; d < n; ++d) {
        if (d % 4 == 0) {  // one Philox call gives the normals of 4 consecutive dims
          quad = math::normal4<T>(pos.seed, pos.step_at(), static_cast<std::uint32_t>(pos.first_row + b),
                                  static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(d / 4));
        }
        samples(b * generations + g, d) = head.mean(b, d) + math::exp_(head.log_std(s_row, d)) * quad.z[d % 4];
      }
    }
  }
}

template <class T>
void log_prob(const DiagGaussian<T>& head, MatrixView<const T> samples, MatrixView<T> out) {
  const std::int64_t n = head.mean.cols, generations = out.cols;
  for (std::int64_t b = 0; b < head.mean.rows; ++b) {
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    for (std::int64_t g = 0; g < generations; ++g) {
      T sum = 0;
      for (std::int64_t d = 0; d < n; ++d) {
        const T s = head.log_std(s_row, d);
        const T z = (samples(b * generations + g, d) - head.mean(b, d)) * math::exp_(-s);
        sum += T(-0.5) * z * z - s - T(0.5 * math::kLog2Pi);
      }
      out(b, g) = sum;
    }
  }
}

template <class T>
void entropy(const DiagGaussian<T>& head, VectorView<T> out) {
  const std::int64_t n = head.mean.cols;
  for (std::int64_t b = 0; b < head.mean.rows; ++b) {
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    T sum = 0;
    for (std::int64_t d = 0; d < n; ++d) sum += head.log_std(s_row, d) + T(0.5 * math::kLog2PiE);
    out[b] = sum;
  }
}

/// grad.mean(b,d)    = Σ_g c_bg (ŷ−μ)/σ²
/// grad.log_std(b,d) = Σ_g c_bg ((ŷ−μ)²/σ² − 1) + e_b      (summed over b when shared)
template <class T>
void backward(const DiagGaussian<T>& head, MatrixView<const T> samples, MatrixView<const T> d_log_prob,
              VectorView<const T> d_entropy, const DiagGaussianGrad<T>& grad) {
  const std::int64_t n = head.mean.cols, batch = head.mean.rows;
  const std::int64_t generations = d_log_prob.empty() ? 0 : d_log_prob.cols;
  const bool shared = head.log_std.rows == 1 && batch > 1;
  if (shared) {
    for (std::int64_t d = 0; d < n; ++d) grad.log_std(0, d) = 0;
  }
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t s_row = head.log_std.rows == 1 ? 0 : b;
    const T e = d_entropy.empty() ? T(0) : d_entropy[b];
    for (std::int64_t d = 0; d < n; ++d) {
      const T inv_var = math::exp_(T(-2) * head.log_std(s_row, d));
      T g_mean = 0, g_log_std = 0;
      for (std::int64_t g = 0; g < generations; ++g) {
        const T c = d_log_prob(b, g);
        const T diff = samples(b * generations + g, d) - head.mean(b, d);
        g_mean += c * diff * inv_var;
        g_log_std += c * (diff * diff * inv_var - T(1));
      }
      grad.mean(b, d) = g_mean;
      if (shared) {
        grad.log_std(0, d) += g_log_std + e;
      } else {
        grad.log_std(b, d) = g_log_std + e;
      }
    }
  }
}

// ---------------------------------------------------------------- second order (d2r/second_order.hpp)
/// out(b, g) = Σ_d [δ v μ̇ + (δ² v − 1) ṡ].
template <class T>
void log_prob_jvp(const DiagGaussian<T>& head, MatrixView<const T> samples, const DiagGaussian<T>& tangent,
                  MatrixView<T> out) {
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
void backward_tangent(const DiagGaussian<T>& head, MatrixView<const T> samples, MatrixView<const T> d_log_prob,
                      const DiagGaussian<T>& tangent, const DiagGaussianGrad<T>& grad_tangent) {
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

// ---------------------------------------------------------------- exact objective and its tangent
/// Diagonal Gaussian: E[r] = −δᵀUδ − Σ_d U_dd σ_d², δ = μ − y.
template <class T>
void exact_objective(const DiagGaussian<T>& head, MatrixView<const T> targets, const MahalanobisReward<T>& reward,
                     const PgOptions<T>& options, ObjectiveScale<T> s, const ObjectiveRows<T>& rows,
                     const DiagGaussianGrad<T>& grad) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols;
  const bool shared = head.log_std.rows == 1 && B > 1;
  const T k = s.per_dim / s.normaliser, lambda = options.entropy_weight;
  if (shared)
    for (std::int64_t d = 0; d < n; ++d) grad.log_std(0, d) = 0;
  std::vector<T> u_delta;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t sr = head.log_std.rows == 1 ? 0 : b;
    const T quad = objectives::apply_u(
        reward, n, [&](std::int64_t i) { return head.mean(b, i) - targets(b, i); }, u_delta);
    T expected = -quad, H = 0;
    for (std::int64_t d = 0; d < n; ++d) {
      const T var = math::exp_(T(2) * head.log_std(sr, d));
      expected -= objectives::u_diagonal(reward, d) * var;
      H += head.log_std(sr, d) + T(0.5 * math::kLog2PiE);
      grad.mean(b, d) = T(2) * k * u_delta[d];
      const T g_s = -k * (T(-2) * objectives::u_diagonal(reward, d) * var + lambda);
      if (shared) {
        grad.log_std(0, d) += g_s;
      } else {
        grad.log_std(b, d) = g_s;
      }
    }
    rows.row_loss[b] = -k * (expected + lambda * H);
    if (!rows.row_reward.empty()) rows.row_reward[b] = expected;
  }
}

/// Tangent of exact_objective's head gradient along ḣ = (μ̇, ṡ) (the head-level Hessian of
/// L_exact applied to ḣ; it does not depend on the targets):
///   R(∂/∂μ_b) = 2k U μ̇_b,   R(∂/∂s_bd) = 4k U_dd σ_bd² ṡ_bd   (summed over rows for a shared log-std).
template <class T>
void exact_backward_tangent(const DiagGaussian<T>& head, const MahalanobisReward<T>& reward, ObjectiveScale<T> s,
                            const DiagGaussian<T>& tangent, const DiagGaussianGrad<T>& grad_tangent) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols;
  const bool shared = head.log_std.rows == 1 && B > 1;
  const T k = s.per_dim / s.normaliser;
  if (shared)
    for (std::int64_t d = 0; d < n; ++d) grad_tangent.log_std(0, d) = 0;
  std::vector<T> u_dot;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t sr = head.log_std.rows == 1 ? 0 : b;
    objectives::apply_u(
        reward, n, [&](std::int64_t i) { return tangent.mean(b, i); }, u_dot);
    for (std::int64_t d = 0; d < n; ++d) {
      grad_tangent.mean(b, d) = T(2) * k * u_dot[static_cast<std::size_t>(d)];
      const T var = math::exp_(T(2) * head.log_std(sr, d));
      const T g = T(4) * k * objectives::u_diagonal(reward, d) * var * tangent.log_std(sr, d);
      if (shared) {
        grad_tangent.log_std(0, d) += g;
      } else {
        grad_tangent.log_std(b, d) = g;
      }
    }
  }
}

// ---------------------------------------------------------------- pathwise objective
/// Diagonal Gaussian, ŷ = μ + σ⊙ε: ∂r/∂ŷ = −2U(ŷ−y), ∂ŷ/∂μ = I, ∂ŷ_d/∂s_d = σ_d ε_d.
template <class T>
void pg_pathwise(const DiagGaussian<T>& head, MatrixView<const T> targets, const MahalanobisReward<T>& reward,
                 const PgOptions<T>& options, math::DrawPosition pos, ObjectiveScale<T> s, const ObjectiveRows<T>& rows,
                 const DiagGaussianGrad<T>& grad) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols, G = s.generations;
  const bool shared = head.log_std.rows == 1 && B > 1;
  const T k = s.per_dim / s.normaliser, lambda = options.entropy_weight;
  if (shared)
    for (std::int64_t d = 0; d < n; ++d) grad.log_std(0, d) = 0;
  std::vector<T> eps(static_cast<std::size_t>(n)), y_hat(static_cast<std::size_t>(n)), u_delta, gm(n), gs(n);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t sr = head.log_std.rows == 1 ? 0 : b;
    std::fill(gm.begin(), gm.end(), T(0));
    std::fill(gs.begin(), gs.end(), T(0));
    T value_sum = 0, reward_sum = 0, H = 0;
    for (std::int64_t g = 0; g < G; ++g) {
      for (std::int64_t d = 0; d < n; ++d) {
        eps[d] = math::normal<T>(pos.seed, pos.step_at(), static_cast<std::uint32_t>(pos.first_row + b),
                                 static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(d));
        y_hat[d] = head.mean(b, d) + math::exp_(head.log_std(sr, d)) * eps[d];
      }
      const T r = -objectives::apply_u(
          reward, n, [&](std::int64_t i) { return y_hat[i] - targets(b, i); }, u_delta);
      T value, slope;
      objectives::pathwise_transform(options.transform, r, value, slope);
      value_sum += value;
      reward_sum += r;
      for (std::int64_t d = 0; d < n; ++d) {
        const T dr = T(-2) * u_delta[d];  // ∂r/∂ŷ_d
        gm[d] += slope * dr;
        gs[d] += slope * dr * math::exp_(head.log_std(sr, d)) * eps[d];
      }
    }
    for (std::int64_t d = 0; d < n; ++d) H += head.log_std(sr, d) + T(0.5 * math::kLog2PiE);
    for (std::int64_t d = 0; d < n; ++d) {
      grad.mean(b, d) = -k * gm[d] / T(G);
      const T g_s = -k * (gs[d] / T(G) + lambda);
      if (shared) {
        grad.log_std(0, d) += g_s;
      } else {
        grad.log_std(b, d) = g_s;
      }
    }
    rows.row_loss[b] = -k * (value_sum / T(G) + lambda * H);
    if (!rows.row_reward.empty()) rows.row_reward[b] = reward_sum / T(G);
  }
}

// ---------------------------------------------------------------- exact-curvature mixed product (d2r/second_order.hpp)
/// Diagonal Gaussian: ∇_head L_exact · ḣ = k Σ_b (2δᵀU μ̇ + Σ_d 2U_dd σ_d² ṡ_d − λ Σ_d ṡ_d), k = pd/N;
/// its φ-gradient (the λ term does not depend on φ).
template <class T>
void exact_mixed_product(const DiagGaussian<T>& head, MatrixView<const T> targets, const MahalanobisReward<T>& reward,
                         ObjectiveScale<T> s, const DiagGaussian<T>& tangent, VectorView<T> grad) {
  const std::int64_t B = head.mean.rows, n = head.mean.cols;
  const T k = s.per_dim / s.normaliser;
  std::fill(grad.data, grad.data + grad.size, T(0));
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t sr = head.log_std.rows == 1 ? 0 : b;
    const std::int64_t tr = tangent.log_std.rows == 1 ? 0 : b;
    objectives::bilinear_u_grad(
        reward, n, [&](std::int64_t i) { return head.mean(b, i) - targets(b, i); },
        [&](std::int64_t i) { return tangent.mean(b, i); }, T(2) * k, grad.data);
    objectives::u_diagonal_grad(
        reward, n, [&](std::int64_t d) { return math::exp_(T(2) * head.log_std(sr, d)) * tangent.log_std(tr, d); },
        T(2) * k, grad.data);
  }
}

}  // namespace d2r::reference::diag_gaussian
