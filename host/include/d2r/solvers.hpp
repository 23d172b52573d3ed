#pragma once
/// @file solvers.hpp
/// Iterative solvers of (A + δI) x = b on an abstract linear operator (DESIGN.md §6): the linear
/// system of the implicit hypergradient, (H + δI) w = ∇_θ L_out, where A is a Hessian-vector
/// product that is never formed as a matrix.
///
/// Three methods:
///  - conjugate_gradient: CG for symmetric positive definite A + δI (one operator application per
///    iteration);
///  - conjugate_gradient_normal: CG on the normal equations (A + δI)ᵀ(A + δI) x = (A + δI)ᵀ b for a
///    symmetric A that may be indefinite (two applications per iteration). The paper's code used
///    this with one iteration, tolerance 1e-6 and no damping (PAPER.md "Solvers"):
///    `CgOptions<float>{.damping = 0, .tolerance = 1e-6f, .max_iterations = 1}`;
///  - neumann_series: x = α Σ_{k=0}^{K} (I − α(A + δI))^k b (one application per term).
///
/// Every solve returns a SolveReport: why it stopped, how many iterations it ran, and the residual
/// norm after every iteration. Not converging is always reported, never silent: a solve that hits
/// its iteration cap says `max_iterations`, a CG whose curvature pᵀ(A + δI)p is not positive says
/// `breakdown`, and a solve whose residual (or Neumann term) grows without bound or stops being
/// finite says `diverged`; in every case x holds the last good iterate.
///
/// Backends. On cpu the solvers run in float or double with plain loops. On cuda (float only) the
/// scalars of the iteration (dot products, norms, step sizes, the stop flag) live in device
/// memory: reductions are fixed-order two-pass sums (the result depends only on n, never on timing),
/// the step sizes are computed by the device, and a device-side flag freezes the iterate once the
/// solve has stopped. So a solve enqueues a fixed number of kernels and operator applications
/// (max_iterations of them, even when it converges earlier; CUDA-graph friendly) and synchronises
/// the stream once, at the end, to build the report; besides that only the value checks of b and
/// x (ValueChecks::full; none with ValueChecks::none) and a first-time growth of the workspace
/// synchronise. A solve that converges early still pays for the remaining operator applications:
/// choose max_iterations accordingly.
///
/// Workspace. The solvers keep their vectors and device scalars in
/// `ctx.workspace(bytes, Workspace::solver)`, a block of their own: the operator may use the
/// primitive and composite blocks (a Hessian-vector product built from the objectives does) but
/// not the solver block. A solve that sees the solver block grow during an operator application
/// throws d2r::Error for argument 'A' (its state was freed).
///
/// @code
///   d2r::LinearOperator<float> hvp = [&](d2r::ConstVector<float> v, d2r::VectorView<float> hv) {
///     my_hessian_vector_product(ctx, v, hv);   // enqueued on ctx.stream()
///   };
///   d2r::SolveReport<float> rep =
///       d2r::conjugate_gradient(ctx, hvp, grad_outer, w, {.damping = 1e-3f, .tolerance = 1e-4f});
///   if (rep.status != d2r::SolveStatus::converged)
///     std::fprintf(stderr, "CG: %s after %lld iterations\n", d2r::to_string(rep.status),
///                  static_cast<long long>(rep.iterations));
/// @endcode

#include <cstdint>
#include <functional>
#include <vector>

#include "d2r/context.hpp"
#include "d2r/types/solvers.hpp"
#include "d2r/view.hpp"

namespace d2r {

/// "converged", "max_iterations", "breakdown" or "diverged".
const char* to_string(SolveStatus status) noexcept;

/// Conjugate gradient on (A + δI) x = b, for symmetric A with A + δI positive definite.
///
/// @param ctx      backend (cpu: float or double; cuda: float) and stream; solver workspace used
/// @param A        the operator (see LinearOperator); applied 1 + max_iterations times on cuda
///                 (1 + iterations on cpu; one fewer with options.zero_initial_guess)
/// @param[in] b    right-hand side, length n >= 1, backend memory, must not overlap x
/// @param[in,out] x initial guess on input (e.g. zeros, or the previous solution as a warm start;
///                 not read with options.zero_initial_guess),
///                 solution on output; written once, at the end of the solve (untouched on error)
/// @param options  damping, relative tolerance, iteration cap
/// @return the report; status converged, max_iterations, breakdown or diverged
/// @throws d2r::Error (before anything is written) for an empty operator, b/x of different or
///         zero length, overlapping b and x, host pointers on cuda, double on cuda, options out
///         of range, or (value checks on) non-finite b or x; and for argument 'A' if the operator
///         grew the solver workspace.
template <class T>
SolveReport<T> conjugate_gradient(Context& ctx, const LinearOperator<T>& A, ConstVector<T> b, VectorView<T> x,
                                  const CgOptions<T>& options);

/// CG on the normal equations (A + δI)ᵀ(A + δI) x = (A + δI)ᵀ b (CGNR), for symmetric A that may be
/// indefinite or singular. Two operator applications per iteration (2 + 2·max_iterations on cuda; one fewer with
/// options.zero_initial_guess).
/// The tolerance, the history and the reported residual are those of the original system,
/// ‖b − (A + δI)x‖, which CGNR never increases. Parameters as conjugate_gradient.
template <class T>
SolveReport<T> conjugate_gradient_normal(Context& ctx, const LinearOperator<T>& A, ConstVector<T> b, VectorView<T> x,
                                         const CgOptions<T>& options);

/// Neumann series x = α Σ_{k=0}^{K} (I − α(A + δI))^k b, an approximation of (A + δI)⁻¹ b that
/// converges when the spectral radius of I − α(A + δI) is below 1.
///
/// Term k+1 is t_{k+1} = t_k − α(A + δI)t_k with t_0 = b, and b − (A + δI)x_k = t_{k+1}, so the
/// residual history costs nothing extra; the final residual is computed explicitly with one more
/// operator application (K + 1 applications in all; on cuda always, on cpu fewer if the series
/// stopped early). Status diverged when a term's norm grows (see kNeumannGrowthUlps) or is not
/// finite; x then holds the sum before the growing term.
///
/// @param[out] x  the sum, length n; only written (never read), at the end
/// Other parameters and errors as conjugate_gradient.
template <class T>
SolveReport<T> neumann_series(Context& ctx, const LinearOperator<T>& A, ConstVector<T> b, VectorView<T> x,
                              const NeumannOptions<T>& options);

}  // namespace d2r
