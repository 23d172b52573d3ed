// Launchers of the solver kernels (device code in solvers.cuh). Each reduction is a *_partials
// kernel on partial_count(n) blocks followed by a one-block *_finalize kernel.
#include <algorithm>

#include "kernels/solvers/launch.hpp"
#include "kernels/solvers/solvers.cuh"

namespace d2r::kernels::solvers {
namespace {
using solvers::kThreads;

unsigned partial_grid(std::int64_t n) { return static_cast<unsigned>(partial_count(n)); }
}  // namespace

std::int64_t partial_count(std::int64_t n) {
  return std::clamp<std::int64_t>((n + kThreads - 1) / kThreads, 1, solvers::kMaxPartials);
}

void cg_start(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> b, const float* x, const float* ax,
              float* r) {
  solvers::cg_start_partials<<<partial_grid(b.size), kThreads, 0, stream>>>(dev, b, x, ax, r);
  D2R_CHECK_LAUNCH(stream);
  solvers::cg_start_finalize<<<1, kThreads, 0, stream>>>(dev, partial_count(b.size));
  D2R_CHECK_LAUNCH(stream);
}

void damp_reduce(cudaStream_t stream, const SolverDevice& dev, VectorView<float> y, const float* x, SolverReduce what) {
  const bool dot = what == SolverReduce::curvature_dot;
  solvers::damp_reduce_partials<<<partial_grid(y.size), kThreads, 0, stream>>>(dev, y, x, dot);
  D2R_CHECK_LAUNCH(stream);
  solvers::damp_reduce_finalize<<<1, kThreads, 0, stream>>>(dev, partial_count(y.size), what);
  D2R_CHECK_LAUNCH(stream);
}

void cg_update(cudaStream_t stream, const SolverDevice& dev, std::int64_t k, VectorView<float> x, float* r,
               const float* p, const float* ap, bool cg_beta) {
  solvers::cg_update_partials<<<partial_grid(x.size), kThreads, 0, stream>>>(dev, x, r, p, ap);
  D2R_CHECK_LAUNCH(stream);
  solvers::cg_update_finalize<<<1, kThreads, 0, stream>>>(dev, partial_count(x.size), k, cg_beta);
  D2R_CHECK_LAUNCH(stream);
}

void direction(cudaStream_t stream, const SolverDevice& dev, VectorView<float> p, const float* z, bool first) {
  solvers::direction_kernel<<<grid_size(p.size, kThreads), kThreads, 0, stream>>>(dev, p, z, first);
  D2R_CHECK_LAUNCH(stream);
}

void write_solution(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> xk, VectorView<float> x) {
  solvers::write_solution_kernel<<<grid_size(x.size, kThreads), kThreads, 0, stream>>>(dev, xk, x);
  D2R_CHECK_LAUNCH(stream);
}

void neumann_start(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> b, float* t, float* x) {
  solvers::neumann_start_partials<<<partial_grid(b.size), kThreads, 0, stream>>>(dev, b, t, x);
  D2R_CHECK_LAUNCH(stream);
  solvers::neumann_start_finalize<<<1, kThreads, 0, stream>>>(dev, partial_count(b.size));
  D2R_CHECK_LAUNCH(stream);
}

void neumann_term(cudaStream_t stream, const SolverDevice& dev, std::int64_t k, VectorView<float> w, const float* t) {
  solvers::neumann_term_partials<<<partial_grid(w.size), kThreads, 0, stream>>>(dev, w, t);
  D2R_CHECK_LAUNCH(stream);
  solvers::neumann_term_finalize<<<1, kThreads, 0, stream>>>(dev, partial_count(w.size), k);
  D2R_CHECK_LAUNCH(stream);
}

void neumann_accumulate(cudaStream_t stream, const SolverDevice& dev, VectorView<float> x, const float* w) {
  solvers::neumann_accumulate_kernel<<<grid_size(x.size, kThreads), kThreads, 0, stream>>>(dev, x, w);
  D2R_CHECK_LAUNCH(stream);
}

void neumann_residual(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> b, const float* x,
                      float* ax) {
  solvers::neumann_residual_partials<<<partial_grid(b.size), kThreads, 0, stream>>>(dev, b, x, ax);
  D2R_CHECK_LAUNCH(stream);
  solvers::neumann_residual_finalize<<<1, kThreads, 0, stream>>>(dev, partial_count(b.size));
  D2R_CHECK_LAUNCH(stream);
}

}  // namespace d2r::kernels::solvers
