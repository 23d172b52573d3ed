#pragma once
// CPU reference of the Cholesky-Gaussian head: plain loops over the formulas of DESIGN.md §3,
// templated on the scalar type. It is the test oracle (in double) and the cpu backend (float or
// double). Draws come from the same Philox stream as the CUDA kernels.
//
// Row b's factor L_b is lower triangular, packed row-major: entry (i, j), j <= i, at column
// i(i+1)/2 + j of `tril`; L_ii = softplus(raw_ii) + jitter, off-diagonal entries used as given.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "d2r/types/heads.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference {

namespace cholesky_detail {

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

}  // namespace cholesky_detail

/// samples(b*G + g, i) = μ_bi + Σ_{j<=i} L_b,ij ε_bgj, with ε keyed by (seed, step, first_row + b, g, j).
template <class T>
void cholesky_gaussian_sample(const CholeskyGaussian<T>& head, std::int64_t generations, math::DrawPosition pos,
                              MatrixView<T> samples) {
  using namespace cholesky_detail;
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
void cholesky_gaussian_log_prob(const CholeskyGaussian<T>& head, MatrixView<const T> samples, MatrixView<T> out) {
  using namespace cholesky_detail;
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
void cholesky_gaussian_entropy(const CholeskyGaussian<T>& head, VectorView<T> out) {
  using namespace cholesky_detail;
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
void cholesky_gaussian_backward(const CholeskyGaussian<T>& head, MatrixView<const T> samples,
                                MatrixView<const T> d_log_prob, VectorView<const T> d_entropy,
                                const CholeskyGaussianGrad<T>& grad) {
  using namespace cholesky_detail;
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

}  // namespace d2r::reference
