#pragma once
// CPU reference of the iterative solvers (DESIGN.md §6): CG, CG on the normal equations and the
// Neumann series on an abstract operator. Plain loops, templated on the scalar type: the test
// oracle (double) and the cpu backend (float/double).
//
// The algorithm is step for step the one the cuda backend runs (kernels/solvers/launch.cu): vectors in
// T, dot products and scalars (α, β, norms) accumulated in double, the same stopping tests in the
// same order. Where the device freezes its iterate, this loop breaks.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include "d2r/types/solvers.hpp"

namespace d2r::reference::solvers {

/// Scratch vectors (of n elements each) the solvers need.
inline constexpr std::int64_t kCgScratchVectors = 4;      // x_k, r, p, A p
inline constexpr std::int64_t kCgNormalScratchVectors = 5;  // x_k, r, p, A p, A r
inline constexpr std::int64_t kNeumannScratchVectors = 3;   // x_k, t, A t

namespace detail {

template <class T>
double dot(const T* a, const T* b, std::int64_t n) {
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

/// y += δ x (the damping term of A + δI).
template <class T>
void add_damping(T* y, const T* x, T damping, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += damping * x[i];
}

template <class T>
SolveReport<T> finish(SolveStatus status, std::int64_t iterations, double initial, std::vector<T> history) {
  SolveReport<T> report;
  report.status = status;
  report.iterations = iterations;
  report.initial_residual_norm = static_cast<T>(initial);
  report.residual_norm = history.back();
  report.residual_history = std::move(history);
  return report;
}

}  // namespace detail

/// CG (normal = false) or CGNR (normal = true) on (A + δI) x = b. `apply(x, y)` computes y = A x.
/// x: initial guess in, solution out (written once, at the end). `scratch`: kCgScratchVectors
/// (kCgNormalScratchVectors for CGNR) times n elements, not overlapping b or x.
template <class T, class Apply>
SolveReport<T> conjugate_gradient(Apply&& apply, VectorView<const T> b, VectorView<T> x, const CgOptions<T>& options,
                                  bool normal, T* scratch) {
  const std::int64_t n = b.size;
  const T damping = options.damping;
  T* xk = scratch;
  T* r = xk + n;
  T* p = r + n;
  T* w = p + n;                       // (A + δI) p
  T* z = normal ? w + n : r;          // CG: z = r; CGNR: z = (A + δI) r
  // r_0 = b − (A + δI) x_0 (no operator application for a known-zero x_0).
  if (options.zero_initial_guess) {
    std::fill(xk, xk + n, T(0));
    std::fill(w, w + n, T(0));
  } else {
    std::copy(x.data, x.data + n, xk);
    apply(VectorView<const T>{xk, n}, VectorView<T>{w, n});
  }
  double rr = 0, bb = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    r[i] = b[i] - (w[i] + damping * xk[i]);
    rr += static_cast<double>(r[i]) * r[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  const bool zero_solution = bb == 0;
  const double initial = zero_solution ? 0.0 : std::sqrt(rr);
  const double threshold = static_cast<double>(options.tolerance) * std::sqrt(bb);
  std::vector<T> history{static_cast<T>(initial)};
  std::int64_t iterations = 0;
  bool running = false;
  SolveStatus status = SolveStatus::converged;
  const auto stop = [&](SolveStatus why) {
    status = why;
    running = false;
  };
  if (zero_solution) {
    stop(SolveStatus::converged);
  } else if (!std::isfinite(initial) || !std::isfinite(threshold)) {
    stop(SolveStatus::diverged);
  } else if (initial <= threshold) {
    stop(SolveStatus::converged);
  } else {
    running = true;
  }

  double rho = rr;  // r·r (CG) or z·z (CGNR)
  if (running && normal) {
    apply(VectorView<const T>{r, n}, VectorView<T>{z, n});
    detail::add_damping(z, r, damping, n);
    rho = detail::dot(z, z, n);
    if (!std::isfinite(rho)) stop(SolveStatus::diverged);
  }
  if (running) std::copy(z, z + n, p);

  for (std::int64_t k = 1; running && k <= options.max_iterations; ++k) {
    apply(VectorView<const T>{p, n}, VectorView<T>{w, n});
    detail::add_damping(w, p, damping, n);
    const double curvature = normal ? detail::dot(w, w, n) : detail::dot(p, w, n);
    if (!(curvature > 0)) {
      stop(std::isfinite(curvature) ? SolveStatus::breakdown : SolveStatus::diverged);
      break;
    }
    const T alpha = static_cast<T>(rho / curvature);
    rr = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      xk[i] += alpha * p[i];
      r[i] -= alpha * w[i];
      rr += static_cast<double>(r[i]) * r[i];
    }
    const double norm = std::sqrt(rr);
    history.push_back(static_cast<T>(norm));
    iterations = k;
    if (!std::isfinite(norm)) {
      stop(SolveStatus::diverged);
    } else if (norm <= threshold) {
      stop(SolveStatus::converged);
    } else if (norm > kSolverDivergenceFactor * initial) {
      stop(SolveStatus::diverged);
    }
    if (!running) break;
    double next = rr;
    if (normal) {
      apply(VectorView<const T>{r, n}, VectorView<T>{z, n});
      detail::add_damping(z, r, damping, n);
      next = detail::dot(z, z, n);
      if (!std::isfinite(next)) {
        stop(SolveStatus::diverged);
        break;
      }
    }
    const T beta = static_cast<T>(next / rho);
    rho = next;
    for (std::int64_t i = 0; i < n; ++i) p[i] = z[i] + beta * p[i];
  }
  if (running) status = SolveStatus::max_iterations;

  for (std::int64_t i = 0; i < n; ++i) x[i] = zero_solution ? T(0) : xk[i];
  return detail::finish<T>(status, iterations, initial, std::move(history));
}

/// Neumann series x = α Σ_{k=0}^{K} (I − α(A + δI))^k b. x: output only (written once, at the end).
/// `scratch`: kNeumannScratchVectors times n elements, not overlapping b or x.
template <class T, class Apply>
SolveReport<T> neumann_series(Apply&& apply, VectorView<const T> b, VectorView<T> x, const NeumannOptions<T>& options,
                              T* scratch) {
  const std::int64_t n = b.size;
  const T alpha = options.alpha, damping = options.damping;
  const bool use_tolerance = options.tolerance > 0;
  const double slack = 1.0 + kNeumannGrowthUlps * std::numeric_limits<T>::epsilon();
  T* xk = scratch;
  T* t = xk + n;  // the current term t_k
  T* w = t + n;   // the next term
  double bb = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    t[i] = b[i];
    xk[i] = alpha * b[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  const double initial = std::sqrt(bb);
  const double threshold = static_cast<double>(options.tolerance) * initial;
  double smallest = initial;
  bool running = std::isfinite(initial);
  SolveStatus status = running ? SolveStatus::converged : SolveStatus::diverged;
  std::vector<T> history;
  std::int64_t iterations = 0;

  for (std::int64_t k = 0; running && k < options.iterations; ++k) {
    // t_{k+1} = t_k − α (A + δI) t_k; its norm is the residual of x_k.
    apply(VectorView<const T>{t, n}, VectorView<T>{w, n});
    double ww = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      w[i] = t[i] - alpha * (w[i] + damping * t[i]);
      ww += static_cast<double>(w[i]) * w[i];
    }
    const double norm = std::sqrt(ww);
    history.push_back(static_cast<T>(norm));
    if (!std::isfinite(norm) || norm > smallest * slack) {
      status = SolveStatus::diverged;
      running = false;
      break;
    }
    smallest = std::min(smallest, norm);
    if (use_tolerance && norm <= threshold) {
      status = SolveStatus::converged;
      running = false;
      break;
    }
    iterations = k + 1;
    for (std::int64_t i = 0; i < n; ++i) xk[i] += alpha * w[i];
    std::swap(t, w);
  }

  // Explicit residual of the returned sum: ‖(A + δI) x − b‖.
  apply(VectorView<const T>{xk, n}, VectorView<T>{w, n});
  double rr = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const T ri = (w[i] + damping * xk[i]) - b[i];
    rr += static_cast<double>(ri) * ri;
  }
  const double residual = std::sqrt(rr);
  history.resize(static_cast<std::size_t>(iterations + 1));
  history.back() = static_cast<T>(residual);
  if (running) {
    status = !std::isfinite(residual) ? SolveStatus::diverged
             : (!use_tolerance || residual <= threshold) ? SolveStatus::converged
                                                          : SolveStatus::max_iterations;
  }
  for (std::int64_t i = 0; i < n; ++i) x[i] = xk[i];
  return detail::finish<T>(status, iterations, initial, std::move(history));
}

}  // namespace d2r::reference::solvers
