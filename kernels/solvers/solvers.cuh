#pragma once
// Device code of the iterative solvers (DESIGN.md §6). Launchers: launch.cu.
//
// Every reduction is two passes with a grid fixed by n: each block of a *_partials kernel sums its
// grid-stride share in double and writes one partial per sum (cub::BlockReduce, a fixed order);
// then one block of a finalize kernel sums the partials in a fixed order and thread 0 updates the
// SolverState. No atomics, so a solve is bitwise reproducible. Kernels that read the state return
// at once when it is frozen (status != kSolverRunning).

#include <cub/block/block_reduce.cuh>

#include "d2r/types/solvers.hpp"
#include "kernels/common.cuh"
#include "kernels/solvers/launch.hpp"

namespace d2r::kernels::solvers {

inline constexpr int kThreads = 256;
inline constexpr std::int64_t kMaxPartials = 1024;

__device__ __forceinline__ bool frozen(const SolverState* s) { return s->status != kSolverRunning; }
__device__ __forceinline__ std::int32_t as_int(SolveStatus status) { return static_cast<std::int32_t>(status); }

using BlockSum = cub::BlockReduce<double, kThreads>;

/// Writes the block's sums of `a` (and `b`) to partials[blockIdx.x] (and partials[gridDim.x + blockIdx.x]).
template <int kSums>
__device__ __forceinline__ void store_partials(double a, double b, double* partials) {
  D2R_SHARED(typename BlockSum::TempStorage, temp);
  const double sa = BlockSum(temp).Sum(a);
  if (threadIdx.x == 0) partials[blockIdx.x] = sa;
  if constexpr (kSums == 2) {
    __syncthreads();
    const double sb = BlockSum(temp).Sum(b);
    if (threadIdx.x == 0) partials[gridDim.x + blockIdx.x] = sb;
  }
}

/// Sum of partials[0..count) in a fixed order; valid in thread 0 of a kThreads-thread block.
__device__ __forceinline__ double sum_partials(const double* partials, std::int64_t count) {
  D2R_SHARED(typename BlockSum::TempStorage, temp);
  double v = 0;
  for (std::int64_t i = threadIdx.x; i < count; i += kThreads) v += partials[i];
  const double total = BlockSum(temp).Sum(v);
  __syncthreads();  // temp may be reused by a second call
  return total;
}

#define D2R_SOLVER_LOOP(i, n)                                                                   \
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)

// ---------------------------------------------------------------- CG and CGNR
D2R_KERNEL void cg_start_partials(SolverDevice dev, VectorView<const float> b, const float* x, const float* ax,
                                  float* r) {
  double rr = 0, bb = 0;
  D2R_SOLVER_LOOP(i, b.size) {
    const float ri = b[i] - (ax[i] + dev.damping * x[i]);
    r[i] = ri;
    rr += static_cast<double>(ri) * ri;
    bb += static_cast<double>(b[i]) * b[i];
  }
  store_partials<2>(rr, bb, dev.partials);
}

D2R_KERNEL void cg_start_finalize(SolverDevice dev, std::int64_t count) {
  const double rr = sum_partials(dev.partials, count);
  const double bb = sum_partials(dev.partials + count, count);
  if (threadIdx.x != 0) return;
  SolverState* s = dev.state;
  const bool zero = bb == 0;
  const double initial = zero ? 0.0 : sqrt(rr);
  const double threshold = dev.tolerance * sqrt(bb);
  s->rho = rr;
  s->alpha = s->beta = 0;
  s->threshold = threshold;
  s->initial = s->residual = s->smallest = initial;
  s->iterations = 0;
  s->zero_solution = zero ? 1 : 0;
  dev.history[0] = static_cast<float>(initial);
  if (zero) {
    s->status = as_int(SolveStatus::converged);
  } else if (!isfinite(initial) || !isfinite(threshold)) {
    s->status = as_int(SolveStatus::diverged);
  } else if (initial <= threshold) {
    s->status = as_int(SolveStatus::converged);
  } else {
    s->status = kSolverRunning;
  }
}

/// y += δ x; sum x·y (dot) or y·y.
D2R_KERNEL void damp_reduce_partials(SolverDevice dev, VectorView<float> y, const float* x, bool dot) {
  if (frozen(dev.state)) return;
  double acc = 0;
  D2R_SOLVER_LOOP(i, y.size) {
    const float yi = y[i] + dev.damping * x[i];
    y[i] = yi;
    acc += static_cast<double>(dot ? x[i] : yi) * yi;
  }
  store_partials<1>(acc, 0, dev.partials);
}

D2R_KERNEL void damp_reduce_finalize(SolverDevice dev, std::int64_t count, SolverReduce what) {
  if (frozen(dev.state)) return;
  const double sum = sum_partials(dev.partials, count);
  if (threadIdx.x != 0) return;
  SolverState* s = dev.state;
  switch (what) {
    case SolverReduce::curvature_dot:
    case SolverReduce::curvature_norm:
      if (!(sum > 0)) {
        s->status = as_int(isfinite(sum) ? SolveStatus::breakdown : SolveStatus::diverged);
      } else {
        s->alpha = s->rho / sum;
      }
      break;
    case SolverReduce::normal_start:
      if (!isfinite(sum)) s->status = as_int(SolveStatus::diverged);
      s->rho = sum;
      break;
    case SolverReduce::normal_beta:
      if (!isfinite(sum)) {
        s->status = as_int(SolveStatus::diverged);
      } else {
        s->beta = sum / s->rho;
        s->rho = sum;
      }
      break;
  }
}

D2R_KERNEL void cg_update_partials(SolverDevice dev, VectorView<float> x, float* r, const float* p, const float* ap) {
  if (frozen(dev.state)) return;
  const float alpha = static_cast<float>(dev.state->alpha);
  double rr = 0;
  D2R_SOLVER_LOOP(i, x.size) {
    x[i] += alpha * p[i];
    const float ri = r[i] - alpha * ap[i];
    r[i] = ri;
    rr += static_cast<double>(ri) * ri;
  }
  store_partials<1>(rr, 0, dev.partials);
}

D2R_KERNEL void cg_update_finalize(SolverDevice dev, std::int64_t count, std::int64_t k, bool cg_beta) {
  if (frozen(dev.state)) return;
  const double rr = sum_partials(dev.partials, count);
  if (threadIdx.x != 0) return;
  SolverState* s = dev.state;
  const double norm = sqrt(rr);
  dev.history[k] = static_cast<float>(norm);
  s->iterations = k;
  s->residual = norm;
  if (!isfinite(norm)) {
    s->status = as_int(SolveStatus::diverged);
  } else if (norm <= s->threshold) {
    s->status = as_int(SolveStatus::converged);
  } else if (norm > dev.divergence_factor * s->initial) {
    s->status = as_int(SolveStatus::diverged);
  } else if (cg_beta) {
    s->beta = rr / s->rho;
    s->rho = rr;
  }
}

D2R_KERNEL void direction_kernel(SolverDevice dev, VectorView<float> p, const float* z, bool first) {
  // The first direction is written even when the solve stopped at its start (b = 0, x₀ already
  // good): the operator is still applied to p max_iterations times and must not read garbage.
  if (!first && frozen(dev.state)) return;
  const float beta = static_cast<float>(dev.state->beta);
  D2R_SOLVER_LOOP(i, p.size) p[i] = first ? z[i] : z[i] + beta * p[i];
}

D2R_KERNEL void write_solution_kernel(SolverDevice dev, VectorView<const float> xk, VectorView<float> x) {
  const bool zero = dev.state->zero_solution != 0;
  D2R_SOLVER_LOOP(i, x.size) x[i] = zero ? 0.0f : xk[i];
}

// ---------------------------------------------------------------- Neumann series
D2R_KERNEL void neumann_start_partials(SolverDevice dev, VectorView<const float> b, float* t, float* x) {
  double bb = 0;
  D2R_SOLVER_LOOP(i, b.size) {
    t[i] = b[i];
    x[i] = dev.alpha * b[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  store_partials<1>(bb, 0, dev.partials);
}

D2R_KERNEL void neumann_start_finalize(SolverDevice dev, std::int64_t count) {
  const double bb = sum_partials(dev.partials, count);
  if (threadIdx.x != 0) return;
  SolverState* s = dev.state;
  const double initial = sqrt(bb);
  s->rho = bb;
  s->alpha = dev.alpha;
  s->beta = 0;
  s->threshold = dev.tolerance * initial;
  s->initial = s->residual = s->smallest = initial;
  s->iterations = 0;
  s->zero_solution = 0;
  s->status = isfinite(initial) ? kSolverRunning : as_int(SolveStatus::diverged);
}

D2R_KERNEL void neumann_term_partials(SolverDevice dev, VectorView<float> w, const float* t) {
  if (frozen(dev.state)) return;
  double ww = 0;
  D2R_SOLVER_LOOP(i, w.size) {
    const float wi = t[i] - dev.alpha * (w[i] + dev.damping * t[i]);
    w[i] = wi;
    ww += static_cast<double>(wi) * wi;
  }
  store_partials<1>(ww, 0, dev.partials);
}

D2R_KERNEL void neumann_term_finalize(SolverDevice dev, std::int64_t count, std::int64_t k) {
  if (frozen(dev.state)) return;
  const double ww = sum_partials(dev.partials, count);
  if (threadIdx.x != 0) return;
  SolverState* s = dev.state;
  const double norm = sqrt(ww);
  dev.history[k] = static_cast<float>(norm);
  s->residual = norm;
  if (!isfinite(norm) || norm > s->smallest * dev.growth_slack) {
    s->status = as_int(SolveStatus::diverged);
    return;
  }
  s->smallest = norm < s->smallest ? norm : s->smallest;
  if (dev.tolerance > 0 && norm <= s->threshold) {
    s->status = as_int(SolveStatus::converged);
    return;
  }
  s->iterations = k + 1;
}

D2R_KERNEL void neumann_accumulate_kernel(SolverDevice dev, VectorView<float> x, const float* w) {
  if (frozen(dev.state)) return;
  D2R_SOLVER_LOOP(i, x.size) x[i] += dev.alpha * w[i];
}

D2R_KERNEL void neumann_residual_partials(SolverDevice dev, VectorView<const float> b, const float* x, float* ax) {
  double rr = 0;
  D2R_SOLVER_LOOP(i, b.size) {
    const float ri = (ax[i] + dev.damping * x[i]) - b[i];
    ax[i] = ri;
    rr += static_cast<double>(ri) * ri;
  }
  store_partials<1>(rr, 0, dev.partials);
}

D2R_KERNEL void neumann_residual_finalize(SolverDevice dev, std::int64_t count) {
  const double rr = sum_partials(dev.partials, count);
  if (threadIdx.x != 0) return;
  SolverState* s = dev.state;
  const double residual = sqrt(rr);
  s->residual = residual;
  dev.history[s->iterations] = static_cast<float>(residual);
  if (s->status == kSolverRunning) {
    s->status = !isfinite(residual)                               ? as_int(SolveStatus::diverged)
                : (dev.tolerance <= 0 || residual <= s->threshold) ? as_int(SolveStatus::converged)
                                                                   : as_int(SolveStatus::max_iterations);
  }
}

#undef D2R_SOLVER_LOOP

}  // namespace d2r::kernels::solvers
