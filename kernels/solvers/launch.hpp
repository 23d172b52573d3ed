#pragma once
// Host-callable launchers of the device side of the linear solvers (launch.cu).
// Plain C++ (host/src includes it without nvcc; with -DD2R_ENABLE_CUDA=OFF nothing here is
// defined, and host/src reaches these only through run_on's cuda branch). Each launcher enqueues
// work on `stream` and checks the launch; none synchronises unless its comment says so.
// Arguments are already validated by the public entry points in host/src.

#include <cstddef>
#include <cstdint>

#include "d2r/types/cuda.hpp"
#include "d2r/view.hpp"

namespace d2r::kernels::solvers {

// ---- linear solvers (launch.cu). the device side of conjugate_gradient, conjugate_gradient_normal
// and neumann_series (host/src/solvers.cpp drives the iteration; the CPU reference is
// host/reference/solvers.hpp, step for step). The scalars live in a device SolverState; every
// reduction is a fixed-order two-pass sum in double (partial_count(n) block partials, then
// one block), so results depend only on n. Once the state is frozen (status != kSolverRunning)
// every launcher is a no-op on the device except write_solution and
// neumann_residual. None synchronises.
inline constexpr std::int32_t kSolverRunning = -1;
/// Device-resident scalars of one solve; status is a SolveStatus value or kSolverRunning.
struct SolverState {
  double rho;        ///< CG: r·r; CGNR: ‖(A + δI)r‖²
  double alpha;      ///< step of the current iteration
  double beta;       ///< direction update of the current iteration
  double threshold;  ///< tolerance · ‖b‖
  double initial;    ///< ‖r_0‖ (CG) or ‖b‖ (Neumann)
  double smallest;   ///< Neumann: smallest term norm so far
  double residual;   ///< latest residual norm
  std::int64_t iterations;
  std::int32_t status;
  std::int32_t zero_solution;  ///< b = 0: the solution is exactly 0
};
/// Where a solve keeps its device scalars, and its parameters.
struct SolverDevice {
  SolverState* state;
  double* partials;  ///< 2 · partial_count(n) doubles
  float* history;    ///< residual norms, one per iteration (max_iterations + 1)
  float damping;
  float alpha;       ///< Neumann step α
  double tolerance;  ///< relative tolerance; Neumann: 0 = none
  double divergence_factor;
  double growth_slack;  ///< Neumann: 1 + kNeumannGrowthUlps · ε(float)
};
/// What damp_reduce does with its sum s after y += δ x.
enum class SolverReduce {
  curvature_dot,   ///< s = x·y: α = ρ / s, breakdown unless s > 0 (CG)
  curvature_norm,  ///< s = y·y: α = ρ / s, breakdown unless s > 0 (CGNR)
  normal_start,    ///< s = y·y: ρ = s (CGNR)
  normal_beta,     ///< s = y·y: β = s / ρ, ρ = s (CGNR)
};
std::int64_t partial_count(std::int64_t n);
/// r = b − (ax + δ x); initialises the state from ‖r‖ and ‖b‖ (history[0]).
void cg_start(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> b, const float* x, const float* ax,
              float* r);
/// y += δ x, then the reduction `what`.
void damp_reduce(cudaStream_t stream, const SolverDevice& dev, VectorView<float> y, const float* x, SolverReduce what);
/// x += α p, r −= α ap; residual test of iteration k (history[k]); CG (cg_beta): β = r·r / ρ, ρ = r·r.
void cg_update(cudaStream_t stream, const SolverDevice& dev, std::int64_t k, VectorView<float> x, float* r,
               const float* p, const float* ap, bool cg_beta);
/// p = z (first) or p = z + β p.
void direction(cudaStream_t stream, const SolverDevice& dev, VectorView<float> p, const float* z, bool first);
/// x = xk, or 0 when b = 0.
void write_solution(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> xk, VectorView<float> x);
/// t = b, x = α b; initialises the state from ‖b‖.
void neumann_start(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> b, float* t, float* x);
/// w = t − α (w + δ t) with w = A t on entry; growth and tolerance tests of term k + 1 (history[k]).
void neumann_term(cudaStream_t stream, const SolverDevice& dev, std::int64_t k, VectorView<float> w, const float* t);
/// x += α w.
void neumann_accumulate(cudaStream_t stream, const SolverDevice& dev, VectorView<float> x, const float* w);
/// ‖(ax + δ x) − b‖ with ax = A x on entry (overwritten): the final residual and status.
void neumann_residual(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> b, const float* x,
                      float* ax);

}  // namespace d2r::kernels::solvers
