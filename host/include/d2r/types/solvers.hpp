#pragma once
/// @file types/solvers.hpp
/// Plain types of the linear solvers (d2r/solvers.hpp): the operator type, the status and report
/// of a solve, the options and limits. Compiles without CUDA.

#include <cstdint>
#include <functional>
#include <vector>

#include "d2r/view.hpp"

namespace d2r {

/// y = A x for vectors in the backend's memory (device memory on cuda), with the work enqueued on
/// ctx.stream() of the context the solve runs on. The operator must write every element of y
/// (it is scratch memory, not zeroed), must not write x, and must not use
/// Workspace::solver of that context. CG needs A symmetric (a Hessian-vector product is).
/// x and y have the solve's length n and never overlap.
template <class T>
using LinearOperator = std::function<void(ConstVector<T> x, VectorView<T> y)>;

/// Why a solve stopped.
enum class SolveStatus {
  converged,       ///< CG: ‖r‖ <= tolerance·‖b‖; Neumann: the series contracted (and met its tolerance, if any)
  max_iterations,  ///< the iteration cap was reached first (x is the last iterate)
  breakdown,       ///< CG: pᵀ(A + δI)p <= 0 (A + δI not positive definite), or for the normal equations
                   ///< ‖(A + δI)p‖ = 0 (A + δI singular along p); x is the iterate before that step
  diverged,        ///< a residual or Neumann term grew past its bound, or a value stopped being finite
};

/// CG and CGNR report `diverged` when ‖r_k‖ exceeds this multiple of ‖r_0‖. CG on an SPD system
/// cannot get there in exact arithmetic (‖r_k‖ <= √κ ‖r_0‖), unless the condition number κ of
/// A + δI is beyond 10^12; the residual of CGNR never grows.
inline constexpr double kSolverDivergenceFactor = 1e6;

/// Relative slack of the Neumann growth test: the series is reported `diverged` when the norm of a
/// term exceeds the smallest earlier term norm by more than this factor times 64 ε of the scalar
/// type (rounding of a contracting series stays within it; a term of a series with spectral radius
/// above 1 exceeds it after a few terms).
inline constexpr double kNeumannGrowthUlps = 64;

/// Largest max_iterations (CG) or iterations (Neumann) a solve accepts (2^24).
inline constexpr std::int64_t kMaxSolverIterations = std::int64_t{1} << 24;

/// What a solve did.
/// @tparam T float or double
template <class T>
struct SolveReport {
  SolveStatus status = SolveStatus::max_iterations;
  /// CG: completed updates of x. Neumann: K' with x = α Σ_{k=0}^{K'} (I − α(A + δI))^k b
  /// (K' = options.iterations unless the series was stopped early).
  std::int64_t iterations = 0;
  /// CG: ‖b − (A + δI)x₀‖ of the initial guess. Neumann: ‖b‖ (the residual of x = 0).
  /// 0 when b = 0 (the solution x = 0 is then returned exactly).
  T initial_residual_norm = 0;
  /// ‖r‖ of the returned x: for CG the recursively updated residual (equal in exact arithmetic to
  /// ‖b − (A + δI)x‖, within rounding otherwise); for Neumann computed explicitly at the end.
  T residual_norm = 0;
  /// ‖r_k‖ after iteration k, k = 0..iterations (iterations + 1 entries; entry 0 is the initial
  /// residual for CG and the residual of the first term α b for Neumann).
  std::vector<T> residual_history;
};

/// Options of conjugate_gradient and conjugate_gradient_normal.
template <class T>
struct CgOptions {
  T damping = 0;                     ///< δ >= 0, finite: solve (A + δI) x = b
  T tolerance = T(1e-6);             ///< > 0: stop when ‖r‖ <= tolerance·‖b‖ (r = b − (A + δI)x)
  std::int64_t max_iterations = 100; ///< in [1, kMaxSolverIterations]
  /// true: start from x₀ = 0 without reading x (it may hold anything) and without the operator
  /// application of the starting residual (r₀ = b): one HVP fewer per solve, a quarter of a
  /// one-iteration CGNR solve. Same iterates as passing zeros with this false.
  bool zero_initial_guess = false;
};

/// Calls f(name, value) for every field of `o` (fields.hpp).
template <class T, class F>
void for_each_field(const CgOptions<T>& o, F&& f) {
  f("damping", o.damping);
  f("tolerance", o.tolerance);
  f("max_iterations", o.max_iterations);
  f("zero_initial_guess", o.zero_initial_guess);
}

/// Options of neumann_series.
template <class T>
struct NeumannOptions {
  T alpha = T(0);                ///< α > 0, finite; the series converges iff 0 < α λ < 2 for every
                                 ///< eigenvalue λ of A + δI (e.g. α < 2 / ‖A + δI‖ for SPD A + δI)
  std::int64_t iterations = 100; ///< K in [0, kMaxSolverIterations]: terms k = 0..K
  T damping = 0;                 ///< δ >= 0, finite
  /// >= 0. 0 (default): sum all K + 1 terms; status converged unless the series diverged.
  /// > 0: also stop once ‖r‖ <= tolerance·‖b‖ and report max_iterations when K terms do not get there.
  T tolerance = 0;
};

/// Calls f(name, value) for every field of `o` (fields.hpp).
template <class T, class F>
void for_each_field(const NeumannOptions<T>& o, F&& f) {
  f("alpha", o.alpha);
  f("iterations", o.iterations);
  f("damping", o.damping);
  f("tolerance", o.tolerance);
}

}  // namespace d2r
