// The solvers on the cuda backend (float) against the CPU reference (double) on the same
// operators: dense matrices through cuBLAS gemv (n = 1, 7, 1000) and a symmetric tridiagonal
// matrix through cuBLAS sbmv (n = 100003). Outputs through GuardedMatrix (no write outside x).
// Stays a bespoke test: its operators are raw cuBLAS calls on device memory, with an application
// count, which a case of the registry (host/checks builds without the CUDA toolkit; its operators
// are the library's primitives on either backend) cannot express; the registry's solver cases
// (host/checks/cases/solvers.cpp) solve on the exact head Hessian instead. Also the behaviour
// tests (breakdown, divergence, steady workspace, zero initial guess, bad input).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/solvers_test_problems.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::SolveStatus;
using d2r::test::Dense;
using d2r::test::distance;
using d2r::test::GuardedMatrix;
using d2r::test::norm2;
using d2r::test::TestRng;

enum class Method { cg, cg_normal, neumann };
const char* name(Method m) { return m == Method::cg ? "cg" : (m == Method::cg_normal ? "cg_normal" : "neumann"); }

/// A symmetric operator held on both backends: float entries on the device, the same values in
/// double on the host. Dense (cuBLAS gemv) or tridiagonal (cuBLAS sbmv, lower band storage).
class Problem {
 public:
  /// Dense with eigenvalues `lambda`.
  Problem(d2r::Context& gpu, const std::vector<double>& lambda, std::uint64_t seed)
      : gpu_(gpu), n_(static_cast<std::int64_t>(lambda.size())), dense_(true) {
    const Dense m = d2r::test::with_eigenvalues(lambda, seed);
    values_.assign(m.a.begin(), m.a.end());
    largest_ = 0;
    for (double l : lambda) largest_ = std::max(largest_, std::abs(l));
    upload();
  }
  /// Tridiagonal: diagonal in [2.5, 3.5], off-diagonal −1 (SPD, eigenvalues in (0.5, 5.5)).
  Problem(d2r::Context& gpu, std::int64_t n) : gpu_(gpu), n_(n), dense_(false), largest_(5.5) {
    TestRng rng(static_cast<std::uint64_t>(n));
    values_.resize(static_cast<std::size_t>(2 * n));
    for (std::int64_t j = 0; j < n; ++j) {
      values_[2 * j] = static_cast<float>(rng.uniform(2.5, 3.5));
      values_[2 * j + 1] = j + 1 < n ? -1.0f : 0.0f;
    }
    upload();
  }

  [[nodiscard]] std::int64_t n() const { return n_; }
  [[nodiscard]] double largest() const { return largest_; }
  [[nodiscard]] std::int64_t applications() const { return applications_; }

  /// y = A x on the device, through the context's cuBLAS handle (bound to its stream).
  [[nodiscard]] d2r::LinearOperator<float> device_op() {
    return [this](d2r::ConstVector<float> x, d2r::VectorView<float> y) {
      ++applications_;
      const float one = 1.0f, zero = 0.0f;
      cublasHandle_t h = gpu_.cublas();
      const int n = static_cast<int>(n_);
      if (dense_) {
        D2R_CUBLAS_TRY(cublasSgemv(h, CUBLAS_OP_N, n, n, &one, device_.data(), n, x.data, 1, &zero, y.data, 1));
      } else {
        D2R_CUBLAS_TRY(cublasSsbmv(h, CUBLAS_FILL_MODE_LOWER, n, 1, &one, device_.data(), 2, x.data, 1, &zero, y.data, 1));
      }
    };
  }
  /// The same operator in double on the host.
  [[nodiscard]] d2r::LinearOperator<double> host_op() const {
    return [this](d2r::ConstVector<double> x, d2r::VectorView<double> y) {
      for (std::int64_t i = 0; i < n_; ++i) {
        double s = 0;
        if (dense_) {
          for (std::int64_t j = 0; j < n_; ++j) s += static_cast<double>(values_[i * n_ + j]) * x[j];
        } else {
          s = static_cast<double>(values_[2 * i]) * x[i];
          if (i > 0) s += static_cast<double>(values_[2 * (i - 1) + 1]) * x[i - 1];
          if (i + 1 < n_) s += static_cast<double>(values_[2 * i + 1]) * x[i + 1];
        }
        y[i] = s;
      }
    };
  }

 private:
  void upload() { device_ = d2r::Buffer<float>(gpu_, std::span<const float>(values_)); }
  d2r::Context& gpu_;
  std::int64_t n_;
  bool dense_;
  double largest_ = 0;
  std::vector<float> values_;
  d2r::Buffer<float> device_;
  std::int64_t applications_ = 0;
};

struct Solved {
  d2r::SolveReport<double> ref;
  d2r::SolveReport<float> gpu;
  std::vector<double> x_ref;
  std::vector<float> x_gpu;
};

struct Settings {
  float tolerance = 1e-5f;
  std::int64_t max_iterations = 300;
  float damping = 0;
  float alpha = 0;  // Neumann
  std::int64_t terms = 0;
};

/// Solves with both backends from x₀ = 0 (CG) or into a NaN-filled x (Neumann: never read).
Solved solve_both(d2r::Context& gpu, Problem& p, Method m, const std::vector<float>& b, const Settings& s) {
  d2r::Context cpu({.backend = d2r::Backend::cpu});
  const std::int64_t n = p.n();
  GuardedMatrix<float> db(gpu, 1, n), dx(gpu, 1, n);
  db.fill(b);
  if (m != Method::neumann) dx.fill(std::vector<float>(n, 0.0f));
  const std::vector<double> bd(b.begin(), b.end());
  Solved run{{}, {}, std::vector<double>(n, 0.0), {}};
  const d2r::ConstVector<double> bv{bd.data(), n};
  const d2r::VectorView<double> xv{run.x_ref.data(), n};
  const d2r::CgOptions<float> cg{.damping = s.damping, .tolerance = s.tolerance, .max_iterations = s.max_iterations};
  const d2r::CgOptions<double> cgd{.damping = s.damping, .tolerance = s.tolerance, .max_iterations = s.max_iterations};
  const d2r::NeumannOptions<float> ne{.alpha = s.alpha, .iterations = s.terms, .damping = s.damping};
  const d2r::NeumannOptions<double> ned{.alpha = s.alpha, .iterations = s.terms, .damping = s.damping};
  switch (m) {
    case Method::cg:
      run.gpu = d2r::conjugate_gradient(gpu, p.device_op(), {db.cview().data, n}, dx.vector(), cg);
      run.ref = d2r::conjugate_gradient(cpu, p.host_op(), bv, xv, cgd);
      break;
    case Method::cg_normal:
      run.gpu = d2r::conjugate_gradient_normal(gpu, p.device_op(), {db.cview().data, n}, dx.vector(), cg);
      run.ref = d2r::conjugate_gradient_normal(cpu, p.host_op(), bv, xv, cgd);
      break;
    case Method::neumann:
      run.gpu = d2r::neumann_series(gpu, p.device_op(), {db.cview().data, n}, dx.vector(), ne);
      run.ref = d2r::neumann_series(cpu, p.host_op(), bv, xv, ned);
      break;
  }
  run.x_gpu = dx.values_checked();
  EXPECT_EQ(db.values_checked(), b) << "b must not be modified";
  EXPECT_EQ(static_cast<std::int64_t>(run.gpu.residual_history.size()), run.gpu.iterations + 1);
  EXPECT_EQ(run.gpu.residual_history.back(), run.gpu.residual_norm);
  return run;
}

struct GpuCase {
  std::int64_t n;
  Method method;
};
std::string case_name(const ::testing::TestParamInfo<GpuCase>& info) {
  return std::string(name(info.param.method)) + "_n" + std::to_string(info.param.n);
}

class SolverGpu : public ::testing::TestWithParam<GpuCase> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
  static std::unique_ptr<Problem> problem(d2r::Context& gpu, std::int64_t n) {
    if (n > 1000) return std::make_unique<Problem>(gpu, n);
    return std::make_unique<Problem>(gpu, d2r::test::geometric(n, 0.2, 2.0), 31 + static_cast<std::uint64_t>(n));
  }
};

TEST_P(SolverGpu, ConvergedSolveMatchesReference) {
  const auto [n, method] = GetParam();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  auto p = problem(gpu, n);
  const auto b = TestRng(static_cast<std::uint64_t>(n) + 7).vector<float>(n, -1, 1);
  Settings s;
  s.alpha = static_cast<float>(1.0 / p->largest());  // α‖A‖ = 1: every eigenvalue of I − αA in [0, 0.9)
  s.terms = 150;
  const Solved run = solve_both(gpu, *p, method, b, s);
  EXPECT_EQ(run.gpu.status, SolveStatus::converged) << d2r::to_string(run.gpu.status);
  EXPECT_EQ(run.ref.status, SolveStatus::converged) << d2r::to_string(run.ref.status);
  // Float and double CG part ways at rounding level: the count may differ a little.
  EXPECT_LE(std::abs(run.gpu.iterations - run.ref.iterations),
            method == Method::neumann ? 0 : std::max<std::int64_t>(2, run.ref.iterations / 10));
  EXPECT_NEAR(run.gpu.initial_residual_norm, run.ref.initial_residual_norm, 1e-5 * run.ref.initial_residual_norm);
  if (method != Method::neumann) {
    EXPECT_LE(run.gpu.residual_norm, s.tolerance * norm2({b.begin(), b.end()}) * 1.0001);
  }
  ASSERT_GT(norm2(run.x_ref), 0);
  EXPECT_LE(distance(run.x_gpu, run.x_ref), 1e-3 * norm2(run.x_ref));
  // A fixed number of operator applications, whatever the iteration that converged.
  const std::int64_t expected_applications =
      method == Method::cg ? 1 + s.max_iterations : (method == Method::cg_normal ? 2 + 2 * s.max_iterations : s.terms + 1);
  EXPECT_EQ(p->applications(), expected_applications);
}

TEST_P(SolverGpu, FixedStepsMatchReferenceIterateForIterate) {
  const auto [n, method] = GetParam();
  if (n < 7) GTEST_SKIP() << "n = 1 converges in one step; covered by ConvergedSolveMatchesReference";
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  auto p = problem(gpu, n);
  const auto b = TestRng(static_cast<std::uint64_t>(n) + 9).vector<float>(n, -1, 1);
  Settings s;
  s.tolerance = 1e-12f;  // not reached in 4 steps
  s.max_iterations = 4;
  s.damping = 0.05f;
  s.alpha = static_cast<float>(0.8 / p->largest());
  s.terms = 12;
  const Solved run = solve_both(gpu, *p, method, b, s);
  const SolveStatus expected = method == Method::neumann ? SolveStatus::converged : SolveStatus::max_iterations;
  EXPECT_EQ(run.gpu.status, expected) << d2r::to_string(run.gpu.status);
  EXPECT_EQ(run.ref.status, expected) << d2r::to_string(run.ref.status);
  ASSERT_EQ(run.gpu.iterations, run.ref.iterations);
  D2R_EXPECT_CLOSE(run.gpu.residual_history, run.ref.residual_history, 2e-4, 1e-6 * run.ref.initial_residual_norm);
  EXPECT_LE(distance(run.x_gpu, run.x_ref), 2e-4 * norm2(run.x_ref));
}

INSTANTIATE_TEST_SUITE_P(Sizes, SolverGpu,
                         ::testing::Values(GpuCase{1, Method::cg}, GpuCase{1, Method::cg_normal},
                                           GpuCase{1, Method::neumann}, GpuCase{7, Method::cg},
                                           GpuCase{7, Method::cg_normal}, GpuCase{7, Method::neumann},
                                           GpuCase{1000, Method::cg}, GpuCase{1000, Method::cg_normal},
                                           GpuCase{1000, Method::neumann}, GpuCase{100003, Method::cg},
                                           GpuCase{100003, Method::cg_normal}, GpuCase{100003, Method::neumann}),
                         case_name);

TEST(SolverGpuBehaviour, BreakdownOnIndefiniteAndNormalEquationsSolve) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  const std::vector<double> lambda{-2.0, -0.5, 0.3, 1.0, 1.5, 2.0, 3.0};
  Problem p(gpu, lambda, 9);
  // b along the most negative eigenvector (power iteration on A − 3I, in double on the host).
  std::vector<double> v = TestRng(1).vector<double>(7, -1, 1), w(7);
  const auto op = p.host_op();
  for (int it = 0; it < 200; ++it) {
    op({v.data(), 7}, {w.data(), 7});
    double s = 0;
    for (int i = 0; i < 7; ++i) s += (w[i] - 3 * v[i]) * (w[i] - 3 * v[i]);
    for (int i = 0; i < 7; ++i) v[i] = (w[i] - 3 * v[i]) / std::sqrt(s);
  }
  const std::vector<float> b(v.begin(), v.end());
  const Solved cg = solve_both(gpu, p, Method::cg, b, {});
  EXPECT_EQ(cg.gpu.status, SolveStatus::breakdown);
  EXPECT_EQ(cg.ref.status, SolveStatus::breakdown);
  EXPECT_EQ(cg.gpu.iterations, 0);
  EXPECT_EQ(cg.x_gpu, std::vector<float>(7, 0.0f));
  const Solved nr = solve_both(gpu, p, Method::cg_normal, b, {});
  EXPECT_EQ(nr.gpu.status, SolveStatus::converged);
  EXPECT_EQ(nr.ref.status, SolveStatus::converged);
  EXPECT_LE(distance(nr.x_gpu, nr.x_ref), 1e-3 * norm2(nr.x_ref));
}

TEST(SolverGpuBehaviour, NeumannDivergesAboveTwoOverNorm) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  Problem p(gpu, d2r::test::geometric(50, 0.5, 2.0), 4);
  const auto b = TestRng(8).vector<float>(50, -1, 1);
  Settings s;
  s.alpha = 1.25f;  // α‖A‖ = 2.5
  s.terms = 40;
  const Solved run = solve_both(gpu, p, Method::neumann, b, s);
  EXPECT_EQ(run.gpu.status, SolveStatus::diverged);
  EXPECT_EQ(run.ref.status, SolveStatus::diverged);
  EXPECT_LE(std::abs(run.gpu.iterations - run.ref.iterations), 1);
  for (float v : run.x_gpu) EXPECT_TRUE(std::isfinite(v));
}

TEST(SolverGpuBehaviour, DeterministicZeroRhsAndSteadyWorkspace) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  const std::int64_t n = 100003;
  Problem p(gpu, n);
  const auto b = TestRng(3).vector<float>(n, -1, 1);
  const Solved first = solve_both(gpu, p, Method::cg, b, {});
  const std::size_t capacity = gpu.workspace_capacity(d2r::Workspace::solver);
  const Solved second = solve_both(gpu, p, Method::cg, b, {});
  EXPECT_EQ(first.x_gpu, second.x_gpu) << "fixed-order reductions: bitwise reproducible";
  EXPECT_EQ(first.gpu.residual_history, second.gpu.residual_history);
  EXPECT_EQ(gpu.workspace_capacity(d2r::Workspace::solver), capacity) << "no growth in the steady state";

  const Solved zero = solve_both(gpu, p, Method::cg, std::vector<float>(n, 0.0f), {});
  EXPECT_EQ(zero.gpu.status, SolveStatus::converged);
  EXPECT_EQ(zero.gpu.iterations, 0);
  EXPECT_EQ(zero.x_gpu, std::vector<float>(n, 0.0f));
}

TEST(SolverGpuBehaviour, PaperSettingRuns) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  Problem p(gpu, d2r::test::geometric(1000, 0.2, 2.0), 5);
  const auto b = TestRng(6).vector<float>(1000, -1, 1);
  Settings s;
  s.tolerance = 1e-6f;
  s.max_iterations = 1;
  const Solved run = solve_both(gpu, p, Method::cg_normal, b, s);
  EXPECT_EQ(run.gpu.status, SolveStatus::max_iterations);
  EXPECT_EQ(run.gpu.iterations, 1);
  EXPECT_LT(run.gpu.residual_norm, run.gpu.initial_residual_norm);
  EXPECT_LE(distance(run.x_gpu, run.x_ref), 1e-4 * norm2(run.x_ref));
}

TEST(SolverGpuBehaviour, ZeroInitialGuessMatchesExplicitZerosWithoutReadingX) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  Problem p(gpu, d2r::test::geometric(300, 0.2, 2.0), 9);
  const auto b = TestRng(8).vector<float>(300, -1, 1);
  GuardedMatrix<float> db(gpu, 1, 300), xa(gpu, 1, 300), xb(gpu, 1, 300);
  db.fill(b);
  xa.fill(std::vector<float>(300, 0.0f));
  xb.fill(std::vector<float>(300, std::numeric_limits<float>::quiet_NaN()));
  for (const bool normal : {false, true}) {
    SCOPED_TRACE(normal ? "CGNR" : "CG");
    d2r::CgOptions<float> o{.damping = 0.1f, .tolerance = 1e-6f, .max_iterations = 7};
    const auto run = [&](GuardedMatrix<float>& x) {
      return normal ? d2r::conjugate_gradient_normal(gpu, p.device_op(), {db.cview().data, 300}, x.vector(), o)
                    : d2r::conjugate_gradient(gpu, p.device_op(), {db.cview().data, 300}, x.vector(), o);
    };
    xa.fill(std::vector<float>(300, 0.0f));
    const auto ra = run(xa);
    o.zero_initial_guess = true;
    xb.fill(std::vector<float>(300, std::numeric_limits<float>::quiet_NaN()));
    const auto rb = run(xb);
    EXPECT_EQ(xa.values_checked(), xb.values_checked());
    EXPECT_EQ(ra.residual_history, rb.residual_history);
  }
}

TEST(SolverGpuBehaviour, RejectsDoubleAndHostMemory) {
  D2R_REQUIRE_GPU();
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  std::vector<double> bd(4, 1.0), xd(4, 0.0);
  const d2r::LinearOperator<double> opd = [](d2r::ConstVector<double>, d2r::VectorView<double>) {};
  try {
    d2r::conjugate_gradient<double>(gpu, opd, {bd.data(), 4}, {xd.data(), 4}, {});
    ADD_FAILURE() << "double on cuda must throw";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.kind(), d2r::ErrorKind::unsupported);
    EXPECT_EQ(e.argument(), "b");
  }
  std::vector<float> bh(4, 1.0f);
  GuardedMatrix<float> dx(gpu, 1, 4);
  const d2r::LinearOperator<float> op = [](d2r::ConstVector<float>, d2r::VectorView<float>) {};
  try {
    d2r::neumann_series<float>(gpu, op, {bh.data(), 4}, dx.vector(), {.alpha = 0.5f});
    ADD_FAILURE() << "host b on cuda must throw";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "b");
  }
  EXPECT_TRUE(dx.untouched());
}

}  // namespace
