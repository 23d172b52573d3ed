#pragma once
// CPU reference of the diagonal-Gaussian head: plain loops over the formulas of DESIGN.md §3,
// templated on the scalar type. It is the test oracle (in double) and the cpu backend (float or
// double). Draws come from the same Philox stream as the CUDA kernels.

#include <cstdint>

#include "d2r/types/heads.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference {

template <class T>
void diag_gaussian_sample(const DiagGaussian<T>& head, std::int64_t generations, math::DrawPosition pos,
                          MatrixView<T> samples) {
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
void diag_gaussian_log_prob(const DiagGaussian<T>& head, MatrixView<const T> samples, MatrixView<T> out) {
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
void diag_gaussian_entropy(const DiagGaussian<T>& head, VectorView<T> out) {
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
void diag_gaussian_backward(const DiagGaussian<T>& head, MatrixView<const T> samples, MatrixView<const T> d_log_prob,
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

}  // namespace d2r::reference
