// Public entry points of the iterative solvers: CG, CG on the normal equations, Neumann series.
//
// Everything is validated before anything is written. The cpu backend runs the reference
// (host/reference/solvers.hpp); the cuda backend drives the same iteration from here with the
// scalars on the device (kernels/solvers/launch.cu): a fixed sequence of launches and operator
// applications, then one synchronisation to read the state and the residual history back.
// Both keep the iterate in the solver workspace and write x once, at the end, so an operator
// that throws leaves x untouched.
#include <cmath>
#include <cstring>
#include <limits>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "d2r/solvers.hpp"
#include "host/reference/solvers.hpp"
#include "host/src/validate.hpp"
#include "kernels/solvers/launch.hpp"

namespace d2r {

const char* to_string(SolveStatus status) noexcept {
  switch (status) {
    case SolveStatus::converged: return "converged";
    case SolveStatus::max_iterations: return "max_iterations";
    case SolveStatus::breakdown: return "breakdown";
    case SolveStatus::diverged: return "diverged";
  }
  return "unknown";
}

namespace {

using detail::MatrixArg;

// ---------------------------------------------------------------- validation
template <class T>
void check_problem(Context& ctx, std::string_view fn, const LinearOperator<T>& A, VectorView<const T> b,
                   VectorView<T> x) {
  detail::check_backend_type<T>(ctx, fn, "b");
  D2R_EXPECTS(static_cast<bool>(A), fn, "A", "expected a callable operator, got an empty LinearOperator");
  D2R_EXPECTS(b.size >= 1, fn, "b", "expected a vector of length n >= 1, got length {}", b.size);
  detail::check_matrix(ctx, fn, MatrixArg("b", b), 1, b.size);
  D2R_EXPECTS(x.size == b.size, fn, "x", "expected length n = {} (the length of b), got {}", b.size, x.size);
  detail::check_matrix(ctx, fn, MatrixArg("x", x), 1, b.size);
  detail::check_disjoint(fn, MatrixArg("x", x), MatrixArg("b", b));
}

template <class T>
void check_damping(std::string_view fn, T damping) {
  D2R_EXPECTS(std::isfinite(damping) && damping >= T(0), fn, "options.damping", "expected a finite δ >= 0, got {}",
              damping);
}

template <class T>
void check_finite(Context& ctx, std::string_view fn, std::string_view name, VectorView<const T> v) {
  detail::check_values<T>(ctx, fn, name, MatrixView<const T>{v.data, 1, v.size, v.size}, detail::ValueRule::finite);
}

template <class T>
void check_cg(Context& ctx, std::string_view fn, const LinearOperator<T>& A, VectorView<const T> b, VectorView<T> x,
              const CgOptions<T>& o) {
  check_problem<T>(ctx, fn, A, b, x);
  check_damping(fn, o.damping);
  D2R_EXPECTS(std::isfinite(o.tolerance) && o.tolerance > T(0), fn, "options.tolerance",
              "expected a finite tolerance > 0, got {}", o.tolerance);
  D2R_EXPECTS(o.max_iterations >= 1 && o.max_iterations <= kMaxSolverIterations, fn, "options.max_iterations",
              "expected 1 <= max_iterations <= {}, got {}", kMaxSolverIterations, o.max_iterations);
  check_finite<T>(ctx, fn, "b", b);
  if (!o.zero_initial_guess) check_finite<T>(ctx, fn, "x", x);
}

template <class T>
void check_neumann(Context& ctx, std::string_view fn, const LinearOperator<T>& A, VectorView<const T> b,
                   VectorView<T> x, const NeumannOptions<T>& o) {
  check_problem<T>(ctx, fn, A, b, x);
  D2R_EXPECTS(std::isfinite(o.alpha) && o.alpha > T(0), fn, "options.alpha", "expected a finite α > 0, got {}",
              o.alpha);
  D2R_EXPECTS(o.iterations >= 0 && o.iterations <= kMaxSolverIterations, fn, "options.iterations",
              "expected 0 <= iterations <= {}, got {}", kMaxSolverIterations, o.iterations);
  check_damping(fn, o.damping);
  D2R_EXPECTS(std::isfinite(o.tolerance) && o.tolerance >= T(0), fn, "options.tolerance",
              "expected a finite tolerance >= 0 (0: none), got {}", o.tolerance);
  check_finite<T>(ctx, fn, "b", b);
}

// ---------------------------------------------------------------- operator guard
/// Applies A and checks that it left the solver workspace (the solver's state) in place.
template <class T>
class GuardedOperator {
 public:
  GuardedOperator(Context& ctx, std::string_view fn, const LinearOperator<T>& A, std::int64_t n)
      : ctx_(ctx), fn_(fn), A_(A), n_(n), capacity_(ctx.workspace_capacity(Workspace::solver)) {}

  void operator()(VectorView<const T> in, VectorView<T> out) const {
    A_(in, out);
    check();
  }
  void operator()(const T* in, T* out) const { (*this)(VectorView<const T>{in, n_}, VectorView<T>{out, n_}); }

 private:
  void check() const {
    D2R_EXPECTS(ctx_.workspace_capacity(Workspace::solver) == capacity_, fn_, "A",
                "the operator grew the context's solver workspace from {} to {} bytes, which freed the solver's "
                "state; operators must use Workspace::primitive, Workspace::composite or their own memory",
                capacity_, ctx_.workspace_capacity(Workspace::solver));
  }
  Context& ctx_;
  std::string_view fn_;
  const LinearOperator<T>& A_;
  std::int64_t n_;
  std::size_t capacity_;
};

// ---------------------------------------------------------------- cuda driver (float; compiled with CUDA only)
#if D2R_WITH_CUDA
constexpr std::size_t kAlign = 256;
constexpr std::size_t round_up(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }
static_assert(sizeof(kernels::solvers::SolverState) <= kAlign);

/// Device workspace of a solve: [state | history] (read back together) [partials] [vectors].
struct DeviceLayout {
  std::int64_t n, history_size, partial_count, vectors;
  [[nodiscard]] std::size_t readback_bytes() const {
    return kAlign + static_cast<std::size_t>(history_size) * sizeof(float);
  }
  [[nodiscard]] std::size_t partials_offset() const { return round_up(readback_bytes()); }
  [[nodiscard]] std::size_t vector_bytes() const { return round_up(static_cast<std::size_t>(n) * sizeof(float)); }
  [[nodiscard]] std::size_t vectors_offset() const {
    return partials_offset() + round_up(2 * static_cast<std::size_t>(partial_count) * sizeof(double));
  }
  [[nodiscard]] std::size_t total_bytes() const {
    return vectors_offset() + static_cast<std::size_t>(vectors) * vector_bytes();
  }
};

struct DeviceSolve {
  DeviceLayout layout;
  char* base;
  kernels::solvers::SolverDevice dev;
  [[nodiscard]] float* vector(std::int64_t i) const {
    return reinterpret_cast<float*>(base + layout.vectors_offset() + static_cast<std::size_t>(i) * layout.vector_bytes());
  }
};

DeviceSolve device_solve(Context& ctx, std::int64_t n, std::int64_t history_size, std::int64_t vectors) {
  DeviceSolve s{{n, history_size, kernels::solvers::partial_count(n), vectors}, nullptr, {}};
  s.base = static_cast<char*>(ctx.workspace(s.layout.total_bytes(), Workspace::solver));
  s.dev.state = reinterpret_cast<kernels::solvers::SolverState*>(s.base);
  s.dev.history = reinterpret_cast<float*>(s.base + kAlign);
  s.dev.partials = reinterpret_cast<double*>(s.base + s.layout.partials_offset());
  s.dev.divergence_factor = kSolverDivergenceFactor;
  s.dev.growth_slack = 1.0 + kNeumannGrowthUlps * std::numeric_limits<float>::epsilon();
  return s;
}

/// The one synchronisation of a cuda solve: state and history back to the host.
SolveReport<float> read_report(Context& ctx, const DeviceSolve& s) {
  std::vector<unsigned char> host(s.layout.readback_bytes());
  D2R_CUDA_TRY(cudaMemcpyAsync(host.data(), s.base, host.size(), cudaMemcpyDeviceToHost, ctx.stream()));
  D2R_CUDA_TRY(cudaStreamSynchronize(ctx.stream()));
  kernels::solvers::SolverState state{};
  std::memcpy(&state, host.data(), sizeof state);
  SolveReport<float> report;
  report.status = state.status == kernels::solvers::kSolverRunning ? SolveStatus::max_iterations
                                                                   : static_cast<SolveStatus>(state.status);
  report.iterations = state.iterations;
  report.initial_residual_norm = static_cast<float>(state.initial);
  report.residual_history.resize(static_cast<std::size_t>(state.iterations + 1));
  std::memcpy(report.residual_history.data(), host.data() + kAlign, report.residual_history.size() * sizeof(float));
  report.residual_norm = report.residual_history.back();
  return report;
}

SolveReport<float> cg_cuda(Context& ctx, std::string_view fn, const LinearOperator<float>& A, VectorView<const float> b,
                           VectorView<float> x, const CgOptions<float>& o, bool normal) {
  using kernels::solvers::SolverReduce;
  const std::int64_t n = b.size;
  DeviceSolve s = device_solve(ctx, n, o.max_iterations + 1,
                               normal ? reference::solvers::kCgNormalScratchVectors : reference::solvers::kCgScratchVectors);
  s.dev.damping = o.damping;
  s.dev.tolerance = o.tolerance;
  const GuardedOperator<float> apply(ctx, fn, A, n);
  const cudaStream_t stream = ctx.stream();
  float *xk = s.vector(0), *r = s.vector(1), *p = s.vector(2), *w = s.vector(3);
  float* z = normal ? s.vector(4) : r;

  if (o.zero_initial_guess) {  // r_0 = b: no operator application
    D2R_CUDA_TRY(cudaMemsetAsync(xk, 0, static_cast<std::size_t>(n) * sizeof(float), stream));
    D2R_CUDA_TRY(cudaMemsetAsync(w, 0, static_cast<std::size_t>(n) * sizeof(float), stream));
  } else {
    D2R_CUDA_TRY(cudaMemcpyAsync(xk, x.data, static_cast<std::size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice,
                                 stream));
    apply(xk, w);
  }
  kernels::solvers::cg_start(stream, s.dev, b, xk, w, r);
  if (normal) {
    apply(r, z);
    kernels::solvers::damp_reduce(stream, s.dev, {z, n}, r, SolverReduce::normal_start);
  }
  kernels::solvers::direction(stream, s.dev, {p, n}, z, true);
  for (std::int64_t k = 1; k <= o.max_iterations; ++k) {
    apply(p, w);
    kernels::solvers::damp_reduce(stream, s.dev, {w, n}, p,
                                  normal ? SolverReduce::curvature_norm : SolverReduce::curvature_dot);
    kernels::solvers::cg_update(stream, s.dev, k, {xk, n}, r, p, w, !normal);
    if (normal) {
      apply(r, z);
      kernels::solvers::damp_reduce(stream, s.dev, {z, n}, r, SolverReduce::normal_beta);
    }
    kernels::solvers::direction(stream, s.dev, {p, n}, z, false);
  }
  kernels::solvers::write_solution(stream, s.dev, {xk, n}, x);
  return read_report(ctx, s);
}

SolveReport<float> neumann_cuda(Context& ctx, std::string_view fn, const LinearOperator<float>& A,
                                VectorView<const float> b, VectorView<float> x, const NeumannOptions<float>& o) {
  const std::int64_t n = b.size;
  DeviceSolve s = device_solve(ctx, n, o.iterations + 1, reference::solvers::kNeumannScratchVectors);
  s.dev.damping = o.damping;
  s.dev.alpha = o.alpha;
  s.dev.tolerance = o.tolerance;
  const GuardedOperator<float> apply(ctx, fn, A, n);
  const cudaStream_t stream = ctx.stream();
  float *xk = s.vector(0), *t = s.vector(1), *w = s.vector(2);

  kernels::solvers::neumann_start(stream, s.dev, b, t, xk);
  for (std::int64_t k = 0; k < o.iterations; ++k) {
    apply(t, w);
    kernels::solvers::neumann_term(stream, s.dev, k, {w, n}, t);
    kernels::solvers::neumann_accumulate(stream, s.dev, {xk, n}, w);
    std::swap(t, w);  // once frozen the kernels ignore both
  }
  apply(xk, w);
  kernels::solvers::neumann_residual(stream, s.dev, b, xk, w);
  kernels::solvers::write_solution(stream, s.dev, {xk, n}, x);
  return read_report(ctx, s);
}

#endif  // D2R_WITH_CUDA

// ---------------------------------------------------------------- dispatch
template <class T>
SolveReport<T> cg_any(Context& ctx, std::string_view fn, const LinearOperator<T>& A, VectorView<const T> b,
                      VectorView<T> x, const CgOptions<T>& options, bool normal) {
  check_cg<T>(ctx, fn, A, b, x, options);
  return detail::run_on<T>(
      ctx,
      [&] {
        const std::int64_t vectors = normal ? reference::solvers::kCgNormalScratchVectors : reference::solvers::kCgScratchVectors;
        T* scratch =
            static_cast<T*>(ctx.workspace(static_cast<std::size_t>(vectors * b.size) * sizeof(T), Workspace::solver));
        return reference::solvers::conjugate_gradient<T>(GuardedOperator<T>(ctx, fn, A, b.size), b, x, options, normal,
                                                         scratch);
      },
      [&](const auto& ex) { return cg_cuda(ex.ctx, fn, A, b, x, options, normal); });
}

}  // namespace

template <class T>
SolveReport<T> conjugate_gradient(Context& ctx, const LinearOperator<T>& A, ConstVector<T> b, VectorView<T> x,
                                  const CgOptions<T>& options) {
  return cg_any<T>(ctx, "conjugate_gradient", A, b, x, options, false);
}

template <class T>
SolveReport<T> conjugate_gradient_normal(Context& ctx, const LinearOperator<T>& A, ConstVector<T> b, VectorView<T> x,
                                         const CgOptions<T>& options) {
  return cg_any<T>(ctx, "conjugate_gradient_normal", A, b, x, options, true);
}

template <class T>
SolveReport<T> neumann_series(Context& ctx, const LinearOperator<T>& A, ConstVector<T> b, VectorView<T> x,
                              const NeumannOptions<T>& options) {
  constexpr std::string_view fn = "neumann_series";
  check_neumann<T>(ctx, fn, A, b, x, options);
  return detail::run_on<T>(
      ctx,
      [&] {
        T* scratch = static_cast<T*>(ctx.workspace(
            static_cast<std::size_t>(reference::solvers::kNeumannScratchVectors * b.size) * sizeof(T), Workspace::solver));
        return reference::solvers::neumann_series<T>(GuardedOperator<T>(ctx, fn, A, b.size), b, x, options, scratch);
      },
      [&](const auto& ex) { return neumann_cuda(ex.ctx, fn, A, b, x, options); });
}

#define D2R_INSTANTIATE(T)                                                                                     \
  template SolveReport<T> conjugate_gradient<T>(Context&, const LinearOperator<T>&, ConstVector<T>, VectorView<T>, \
                                                const CgOptions<T>&);                                          \
  template SolveReport<T> conjugate_gradient_normal<T>(Context&, const LinearOperator<T>&, ConstVector<T>,      \
                                                       VectorView<T>, const CgOptions<T>&);                     \
  template SolveReport<T> neumann_series<T>(Context&, const LinearOperator<T>&, ConstVector<T>, VectorView<T>,   \
                                            const NeumannOptions<T>&);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r
