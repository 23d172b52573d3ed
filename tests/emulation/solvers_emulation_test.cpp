// Emulated solver kernels (kernels/solvers/solvers.cuh) driven as host/src/solvers.cpp drives them on the
// cuda backend (cg_cuda, neumann_cuda: the same launch sequence, grids of solvers::partial_count(n)
// blocks of 256 threads, one-block finalize kernels, frozen kernels after the stop), with a dense
// SPD operator applied on the host, against the CPU reference solvers (host/reference/solvers.hpp)
// on the same operator: status, iteration count, residual history and solution. CG, CGNR (with
// damping and an initial guess), Neumann with and without a tolerance, and b = 0.
#include "tests/emulation/kernel_emulation.hpp"

#include "d2r/solvers.hpp"
#include "host/reference/solvers.hpp"
#include "kernels/solvers/solvers.cuh"

namespace d2r::emulation {
namespace {

namespace sv = kernels::solvers;
constexpr unsigned kThreads = sv::kThreads;

unsigned partial_grid(std::int64_t n) {  // kernels::solvers::partial_count (solvers.cu)
  return static_cast<unsigned>(std::clamp<std::int64_t>((n + kThreads - 1) / kThreads, 1, sv::kMaxPartials));
}
unsigned elementwise_grid(std::int64_t n) { return static_cast<unsigned>(std::max<std::int64_t>((n + kThreads - 1) / kThreads, 1)); }

/// A well-conditioned SPD matrix: I + M Mᵀ / n with M uniform in [-1, 1].
struct Operator {
  std::int64_t n;
  std::vector<float> a;
  Operator(std::int64_t size, TestRng& rng) : n(size), a(static_cast<std::size_t>(size * size)) {
    const auto m = uniform(rng, n * n, -1, 1);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = i == j ? 1.0 : 0.0;
        for (std::int64_t k = 0; k < n; ++k) s += double(m[i * n + k]) * m[j * n + k] / double(n);
        a[static_cast<std::size_t>(i * n + j)] = static_cast<float>(s);
      }
  }
  void operator()(const float* x, float* y) const {
    for (std::int64_t i = 0; i < n; ++i) {
      float s = 0;
      for (std::int64_t j = 0; j < n; ++j) s += a[static_cast<std::size_t>(i * n + j)] * x[j];
      y[i] = s;
    }
  }
};

/// The device-side scalars of a solve (host memory here), as device_solve sets them up.
struct Solve {
  kernels::solvers::SolverState state{};
  std::vector<double> partials;
  std::vector<float> history;
  kernels::solvers::SolverDevice dev{};
  Solve(std::int64_t n, std::int64_t history_size)
      : partials(static_cast<std::size_t>(2 * partial_grid(n)), std::numeric_limits<double>::quiet_NaN()),
        history(static_cast<std::size_t>(history_size), std::numeric_limits<float>::quiet_NaN()) {
    dev.state = &state;
    dev.partials = partials.data();
    dev.history = history.data();
    dev.divergence_factor = kSolverDivergenceFactor;
    dev.growth_slack = 1.0 + kNeumannGrowthUlps * std::numeric_limits<float>::epsilon();
  }
  /// read_report (solvers.cpp).
  SolveReport<float> report() const {
    SolveReport<float> r;
    r.status = state.status == kernels::solvers::kSolverRunning ? SolveStatus::max_iterations
                                                                : static_cast<SolveStatus>(state.status);
    r.iterations = state.iterations;
    r.initial_residual_norm = static_cast<float>(state.initial);
    r.residual_history.assign(history.begin(), history.begin() + state.iterations + 1);
    r.residual_norm = r.residual_history.back();
    return r;
  }
};

/// cg_cuda (solvers.cpp) with emulated launches.
SolveReport<float> emulated_cg(const Operator& A, const std::vector<float>& b, std::vector<float>& x, const CgOptions<float>& o,
                               bool normal) {
  using kernels::solvers::SolverReduce;
  const std::int64_t n = A.n;
  Solve s(n, o.max_iterations + 1);
  s.dev.damping = o.damping;
  s.dev.tolerance = o.tolerance;
  std::vector<float> xk(static_cast<std::size_t>(n)), r(xk.size()), p(xk.size()), w(xk.size()), zbuf(xk.size());
  float* z = normal ? zbuf.data() : r.data();
  const simt::LaunchConfig partials{partial_grid(n), kThreads, 0}, finalize{1, kThreads, 0},
      elementwise{elementwise_grid(n), kThreads, 0};
  const auto count = static_cast<std::int64_t>(partial_grid(n));
  const auto damp_reduce = [&](float* y, const float* from, SolverReduce what) {
    simt::launch(partials, sv::damp_reduce_partials, s.dev, VectorView<float>{y, n}, from,
                 what == SolverReduce::curvature_dot);
    simt::launch(finalize, sv::damp_reduce_finalize, s.dev, count, what);
  };
  if (o.zero_initial_guess) {
    std::fill(xk.begin(), xk.end(), 0.0f);
    std::fill(w.begin(), w.end(), 0.0f);
  } else {
    xk = x;
    A(xk.data(), w.data());
  }
  simt::launch(partials, sv::cg_start_partials, s.dev, VectorView<const float>{b.data(), n},
               static_cast<const float*>(xk.data()), static_cast<const float*>(w.data()), r.data());
  simt::launch(finalize, sv::cg_start_finalize, s.dev, count);
  if (normal) {
    A(r.data(), z);
    damp_reduce(z, r.data(), SolverReduce::normal_start);
  }
  simt::launch(elementwise, sv::direction_kernel, s.dev, VectorView<float>{p.data(), n}, static_cast<const float*>(z), true);
  for (std::int64_t k = 1; k <= o.max_iterations; ++k) {
    A(p.data(), w.data());
    damp_reduce(w.data(), p.data(), normal ? SolverReduce::curvature_norm : SolverReduce::curvature_dot);
    simt::launch(partials, sv::cg_update_partials, s.dev, VectorView<float>{xk.data(), n}, r.data(),
                 static_cast<const float*>(p.data()), static_cast<const float*>(w.data()));
    simt::launch(finalize, sv::cg_update_finalize, s.dev, count, k, !normal);
    if (normal) {
      A(r.data(), z);
      damp_reduce(z, r.data(), SolverReduce::normal_beta);
    }
    simt::launch(elementwise, sv::direction_kernel, s.dev, VectorView<float>{p.data(), n}, static_cast<const float*>(z), false);
  }
  simt::launch(elementwise, sv::write_solution_kernel, s.dev, VectorView<const float>{xk.data(), n},
               VectorView<float>{x.data(), n});
  return s.report();
}

/// neumann_cuda (solvers.cpp) with emulated launches.
SolveReport<float> emulated_neumann(const Operator& A, const std::vector<float>& b, std::vector<float>& x,
                                    const NeumannOptions<float>& o) {
  const std::int64_t n = A.n;
  Solve s(n, o.iterations + 1);
  s.dev.damping = o.damping;
  s.dev.alpha = o.alpha;
  s.dev.tolerance = o.tolerance;
  std::vector<float> xk(static_cast<std::size_t>(n)), tb(xk.size()), wb(xk.size());
  float *t = tb.data(), *w = wb.data();
  const simt::LaunchConfig partials{partial_grid(n), kThreads, 0}, finalize{1, kThreads, 0},
      elementwise{elementwise_grid(n), kThreads, 0};
  const auto count = static_cast<std::int64_t>(partial_grid(n));
  simt::launch(partials, sv::neumann_start_partials, s.dev, VectorView<const float>{b.data(), n}, t, xk.data());
  simt::launch(finalize, sv::neumann_start_finalize, s.dev, count);
  for (std::int64_t k = 0; k < o.iterations; ++k) {
    A(t, w);
    simt::launch(partials, sv::neumann_term_partials, s.dev, VectorView<float>{w, n}, static_cast<const float*>(t));
    simt::launch(finalize, sv::neumann_term_finalize, s.dev, count, k);
    simt::launch(elementwise, sv::neumann_accumulate_kernel, s.dev, VectorView<float>{xk.data(), n},
                 static_cast<const float*>(w));
    std::swap(t, w);
  }
  A(xk.data(), w);
  simt::launch(partials, sv::neumann_residual_partials, s.dev, VectorView<const float>{b.data(), n},
               static_cast<const float*>(xk.data()), w);
  simt::launch(finalize, sv::neumann_residual_finalize, s.dev, count);
  simt::launch(elementwise, sv::write_solution_kernel, s.dev, VectorView<const float>{xk.data(), n},
               VectorView<float>{x.data(), n});
  return s.report();
}

void expect_same_report(const SolveReport<float>& got, const SolveReport<float>& want) {
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.iterations, want.iterations);
  EXPECT_NEAR(got.initial_residual_norm, want.initial_residual_norm, 1e-5 * (1 + want.initial_residual_norm));
  ASSERT_EQ(got.residual_history.size(), want.residual_history.size());
  D2R_EXPECT_CLOSE(to_double(got.residual_history), to_double(want.residual_history), 1e-3,
                   1e-5 * (1 + want.initial_residual_norm));
}

// n = 300: two partial blocks (the partials are summed by the finalize block).
TEST(SolversEmulation, ConjugateGradientAndCgnrMatchReference) {
  const std::int64_t n = 300;
  TestRng rng(21);
  const Operator A(n, rng);
  const auto apply = [&](VectorView<const float> x, VectorView<float> y) { A(x.data, y.data); };
  const auto b = uniform(rng, n, -1, 1), x0 = uniform(rng, n, -0.1, 0.1);
  // CG from a guess, CGNR from zero (each solve launches ~100 emulated 256-thread blocks).
  for (const bool normal : {false, true}) {
    for (const bool zero_guess : {normal}) {
      SCOPED_TRACE(std::string(normal ? "CGNR" : "CG") + (zero_guess ? ", zero guess" : ", guess"));
      const CgOptions<float> o{normal ? 0.05f : 0.0f, 1e-4f, 14, zero_guess};  // converges in fewer: frozen launches after
      std::vector<float> x = x0, rx = x0, scratch(static_cast<std::size_t>(5 * n));
      const SolveReport<float> got = emulated_cg(A, b, x, o, normal);
      const SolveReport<float> want = reference::solvers::conjugate_gradient<float>(
          apply, vector_view<const float>(b.data(), n), vector_view(rx.data(), n), o, normal, scratch.data());
      EXPECT_EQ(want.status, SolveStatus::converged);  // not vacuous: a real solve
      EXPECT_GT(want.iterations, 3);
      EXPECT_LT(want.iterations, o.max_iterations);  // the kernels after the stop run frozen
      expect_same_report(got, want);
      D2R_EXPECT_CLOSE(to_double(x), to_double(rx), 1e-3, 1e-4);
    }
  }
  // b = 0: the solution is exactly 0 (x is written, the guess ignored).
  std::vector<float> zero(static_cast<std::size_t>(n), 0.0f), x = x0;
  const SolveReport<float> got = emulated_cg(A, zero, x, CgOptions<float>{0.0f, 1e-5f, 5, false}, false);
  EXPECT_EQ(got.status, SolveStatus::converged);
  EXPECT_EQ(got.iterations, 0);
  EXPECT_EQ(x, zero);
}

TEST(SolversEmulation, NeumannMatchesReference) {
  const std::int64_t n = 300;
  TestRng rng(22);
  const Operator A(n, rng);
  const auto apply = [&](VectorView<const float> x, VectorView<float> y) { A(x.data, y.data); };
  const auto b = uniform(rng, n, -1, 1);
  for (const float tolerance : {0.0f, 1e-2f}) {
    SCOPED_TRACE(tolerance);
    const NeumannOptions<float> o{0.3f, 12, 0.01f, tolerance};
    std::vector<float> x(static_cast<std::size_t>(n)), rx(x.size()), scratch(static_cast<std::size_t>(3 * n));
    const SolveReport<float> got = emulated_neumann(A, b, x, o);
    const SolveReport<float> want = reference::solvers::neumann_series<float>(
        apply, vector_view<const float>(b.data(), n), vector_view(rx.data(), n), o, scratch.data());
    EXPECT_GT(want.iterations, 3);
    expect_same_report(got, want);
    D2R_EXPECT_CLOSE(to_double(x), to_double(rx), 1e-3, 1e-4);
  }
}

}  // namespace
}  // namespace d2r::emulation
