// The iterative solvers on the cpu backend (double unless said otherwise), on operators given by
// dense matrices with known eigenvalues: CG and CGNR against a dense LU solve, iteration counts,
// damping, breakdown on indefinite operators, iteration caps, the paper's one-step CGNR, and the
// Neumann series' convergence and divergence.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "d2r/d2r.hpp"
#include "tests/solvers_test_problems.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::SolveStatus;
using d2r::test::Dense;
using d2r::test::dense_solve;
using d2r::test::distance;
using d2r::test::geometric;
using d2r::test::HostOperator;
using d2r::test::norm2;
using d2r::test::TestRng;
using d2r::test::true_residual;
using d2r::test::with_eigenvalues;

d2r::VectorView<double> view(std::vector<double>& v) { return {v.data(), static_cast<std::int64_t>(v.size())}; }
d2r::VectorView<const double> cview(const std::vector<double>& v) { return {v.data(), static_cast<std::int64_t>(v.size())}; }

/// Checks the report's internal consistency: history length, first and last entries.
template <class T>
void expect_consistent(const d2r::SolveReport<T>& r) {
  ASSERT_EQ(static_cast<std::int64_t>(r.residual_history.size()), r.iterations + 1);
  EXPECT_EQ(r.residual_history.back(), r.residual_norm);
  for (T v : r.residual_history) EXPECT_TRUE(std::isfinite(v) || r.status == SolveStatus::diverged);
}

struct SpdCase {
  std::int64_t n;
  double condition;
};

class SolverCgSpd : public ::testing::TestWithParam<SpdCase> {
 protected:
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
};

TEST_P(SolverCgSpd, MatchesDenseSolveWithinTolerance) {
  const auto [n, condition] = GetParam();
  const Dense A = with_eigenvalues(geometric(n, 1.0 / condition, 1.0), 11 + n);
  TestRng rng(static_cast<std::uint64_t>(n));
  const auto b = rng.vector<double>(n, -1, 1);
  const auto exact = dense_solve(A, b);
  ASSERT_GT(norm2(exact), 0);
  const double tol = 1e-10;
  for (const bool normal : {false, true}) {
    if (normal && condition > 1e3) continue;  // κ² > 1e6 on the normal equations: not to 1e-10
    SCOPED_TRACE(normal ? "normal equations" : "CG");
    HostOperator<double> op(A);
    std::vector<double> x = rng.vector<double>(n, -0.1, 0.1);  // a non-zero initial guess
    const double r0 = true_residual(A, x, b);
    const d2r::CgOptions<double> o{.tolerance = tol, .max_iterations = 20 * n + 20};
    const auto rep = normal ? d2r::conjugate_gradient_normal(ctx, op.op(), cview(b), view(x), o)
                            : d2r::conjugate_gradient(ctx, op.op(), cview(b), view(x), o);
    expect_consistent(rep);
    EXPECT_EQ(rep.status, SolveStatus::converged) << d2r::to_string(rep.status);
    EXPECT_NEAR(rep.initial_residual_norm, r0, 1e-12 * (1 + r0));
    EXPECT_LE(rep.residual_norm, tol * norm2(b));
    EXPECT_LE(true_residual(A, x, b), 10 * tol * norm2(b)) << "the recursive residual drifted from the true one";
    EXPECT_LE(distance(x, exact), 10 * condition * tol * norm2(exact));
    // n steps in exact arithmetic; a well-conditioned system in double gets there with little slack
    // (with larger κ, rounding delays CG's finite termination: it still converges, later).
    if (condition <= 30 && !normal) {
      EXPECT_LE(rep.iterations, n + 2);
    }
    // Applications: CG 1 + iterations; CGNR 2 + 2·iterations − 1 (the last iteration converged).
    EXPECT_EQ(op.applications(), normal ? 2 * rep.iterations + 1 : rep.iterations + 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, SolverCgSpd,
                         ::testing::Values(SpdCase{1, 1}, SpdCase{2, 10}, SpdCase{7, 30}, SpdCase{50, 10},
                                           SpdCase{50, 100}, SpdCase{40, 1e6}),
                         [](const ::testing::TestParamInfo<SpdCase>& info) {
                           return fmt::format("n{}_cond{}", info.param.n, info.param.condition);
                         });

TEST(SolverCgRef, ClusteredSpectrumConvergesInAsManyStepsAsDistinctEigenvalues) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t n = 60;
  std::vector<double> lambda(n);
  for (std::int64_t i = 0; i < n; ++i) lambda[i] = i % 3 == 0 ? 1.0 : (i % 3 == 1 ? 4.0 : 9.0);
  const Dense A = with_eigenvalues(lambda, 3);
  const auto b = TestRng(4).vector<double>(n, -1, 1);
  HostOperator<double> op(A);
  std::vector<double> x(n, 0.0);
  const auto rep = d2r::conjugate_gradient(ctx, op.op(), cview(b), view(x), {.tolerance = 1e-10});
  EXPECT_EQ(rep.status, SolveStatus::converged);
  EXPECT_LE(rep.iterations, 4);
  EXPECT_LE(distance(x, dense_solve(A, b)), 1e-8);
}

TEST(SolverCgRef, DampingSolvesTheShiftedSystem) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t n = 30;
  const Dense A = with_eigenvalues(geometric(n, 0.01, 2.0), 5);
  const auto b = TestRng(6).vector<double>(n, -1, 1);
  for (const double delta : {0.0, 0.1, 3.0}) {
    HostOperator<double> op(A);
    std::vector<double> x(n, 0.0), y(n, 0.0);
    const auto rep = d2r::conjugate_gradient(ctx, op.op(), cview(b), view(x), {.damping = delta, .tolerance = 1e-12});
    const auto rep2 = d2r::conjugate_gradient_normal(ctx, op.op(), cview(b), view(y),
                                                     {.damping = delta, .tolerance = 1e-11, .max_iterations = 500});
    const auto expected = dense_solve(A, b, delta);
    EXPECT_EQ(rep.status, SolveStatus::converged);
    EXPECT_EQ(rep2.status, SolveStatus::converged);
    EXPECT_LE(distance(x, expected), 1e-8 * norm2(expected)) << "δ = " << delta;
    EXPECT_LE(distance(y, expected), 1e-7 * norm2(expected)) << "δ = " << delta;
    if (delta > 0) {
      EXPECT_GT(distance(x, dense_solve(A, b)), 1e-3) << "damping must change the solution";
    }
  }
}

TEST(SolverCgRef, IndefiniteOperatorBreaksDownAndNormalEquationsSolveIt) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t n = 7;
  const std::vector<double> lambda{-2.0, -0.5, 0.3, 1.0, 1.5, 2.0, 3.0};
  const Dense A = with_eigenvalues(lambda, 9);
  // b with bᵀAb < 0: the first CG direction (p = b) has negative curvature.
  // Power iteration on A − 3I (eigenvalues λ − 3, largest in magnitude −5 for λ = −2).
  std::vector<double> b = TestRng(1).vector<double>(n, -1, 1);
  for (int it = 0; it < 200; ++it) {
    b = d2r::test::matvec(A, b, -3.0);
    const double scale = norm2(b);
    for (double& e : b) e /= scale;
  }
  const auto Ab = d2r::test::matvec(A, b);
  double curvature = 0;
  for (std::int64_t i = 0; i < n; ++i) curvature += b[i] * Ab[i];
  ASSERT_LT(curvature, 0);

  HostOperator<double> op(A);
  std::vector<double> x(n, 0.0);
  const auto rep = d2r::conjugate_gradient(ctx, op.op(), cview(b), view(x), {.tolerance = 1e-10});
  expect_consistent(rep);
  EXPECT_EQ(rep.status, SolveStatus::breakdown);
  EXPECT_EQ(rep.iterations, 0);
  EXPECT_EQ(x, std::vector<double>(n, 0.0)) << "x is the iterate before the failing step";

  std::vector<double> y(n, 0.0);
  const auto rep2 = d2r::conjugate_gradient_normal(ctx, op.op(), cview(b), view(y), {.tolerance = 1e-10});
  expect_consistent(rep2);
  EXPECT_EQ(rep2.status, SolveStatus::converged);
  EXPECT_LE(distance(y, dense_solve(A, b)), 1e-8);
  for (std::size_t k = 1; k < rep2.residual_history.size(); ++k)
    EXPECT_LE(rep2.residual_history[k], rep2.residual_history[k - 1] * (1 + 1e-12)) << "CGNR residual grew at " << k;
}

TEST(SolverCgRef, IterationCapIsReportedWithTheLastIterate) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t n = 50;
  const Dense A = with_eigenvalues(geometric(n, 0.01, 1.0), 2);
  const auto b = TestRng(3).vector<double>(n, -1, 1);
  HostOperator<double> op(A);
  std::vector<double> x(n, 0.0);
  const auto rep = d2r::conjugate_gradient(ctx, op.op(), cview(b), view(x), {.tolerance = 1e-12, .max_iterations = 3});
  expect_consistent(rep);
  EXPECT_EQ(rep.status, SolveStatus::max_iterations);
  EXPECT_EQ(rep.iterations, 3);
  EXPECT_GT(norm2(x), 0) << "the capped solve still returns its iterate, never zeros";
  EXPECT_NEAR(true_residual(A, x, b), rep.residual_norm, 1e-10);
  EXPECT_LT(rep.residual_norm, rep.initial_residual_norm);
}

TEST(SolverCgRef, PaperSettingOneStepOfNormalEquations) {
  // The paper's code: CG on the normal equations, 1 iteration, tol 1e-6, no damping, from x = 0.
  // One CGNR step from 0 is x = (zᵀz / ‖Az‖²) z with z = A b.
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t n = 20;
  std::vector<double> lambda = geometric(n, 0.1, 2.0);
  lambda[0] = -0.7;  // indefinite, as a Hessian away from a minimum can be
  const Dense A = with_eigenvalues(lambda, 8);
  const auto b = TestRng(12).vector<double>(n, -1, 1);
  HostOperator<double> op(A);
  std::vector<double> x(n, 0.0);
  const auto rep = d2r::conjugate_gradient_normal(ctx, op.op(), cview(b), view(x),
                                                  {.damping = 0, .tolerance = 1e-6, .max_iterations = 1});
  expect_consistent(rep);
  EXPECT_EQ(rep.status, SolveStatus::max_iterations);
  EXPECT_EQ(rep.iterations, 1);
  EXPECT_LT(rep.residual_norm, rep.initial_residual_norm);
  const auto z = d2r::test::matvec(A, b), Az = d2r::test::matvec(A, z);
  const double step = norm2(z) * norm2(z) / (norm2(Az) * norm2(Az));
  std::vector<double> expected(n);
  for (std::int64_t i = 0; i < n; ++i) expected[i] = step * z[i];
  EXPECT_LE(distance(x, expected), 1e-12 * norm2(expected));
}

TEST(SolverCgRef, ZeroInitialGuessSkipsOneApplicationAndGivesTheSameIterates) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t n = 16;
  std::vector<double> lambda = geometric(n, 0.2, 3.0);
  lambda[3] = -0.5;
  const Dense A = with_eigenvalues(lambda, 21);
  const auto b = TestRng(4).vector<double>(n, -1, 1);
  for (const bool normal : {false, true}) {
    SCOPED_TRACE(normal ? "CGNR" : "CG");
    const d2r::CgOptions<double> plain{.damping = 0.3, .tolerance = 1e-10, .max_iterations = 5};
    d2r::CgOptions<double> zero = plain;
    zero.zero_initial_guess = true;
    HostOperator<double> op_a(A), op_b(A);
    std::vector<double> xa(n, 0.0), xb(n, std::numeric_limits<double>::quiet_NaN());  // not read
    const auto solve = [&](HostOperator<double>& op, std::vector<double>& x, const d2r::CgOptions<double>& o) {
      return normal ? d2r::conjugate_gradient_normal(ctx, op.op(), cview(b), view(x), o)
                    : d2r::conjugate_gradient(ctx, op.op(), cview(b), view(x), o);
    };
    const auto ra = solve(op_a, xa, plain), rb = solve(op_b, xb, zero);
    EXPECT_EQ(xa, xb);
    EXPECT_EQ(ra.residual_history, rb.residual_history);
    EXPECT_EQ(ra.status, rb.status);
    EXPECT_EQ(op_b.applications(), op_a.applications() - 1);
    EXPECT_GT(op_b.applications(), 0);
  }
}

TEST(SolverCgRef, ZeroRightHandSideGivesZeroAndExactGuessStops) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t n = 5;
  const Dense A = with_eigenvalues(geometric(n, 0.5, 2.0), 1);
  HostOperator<double> op(A);
  std::vector<double> zero(n, 0.0), x(n, 3.0);
  for (const bool normal : {false, true}) {
    x.assign(n, 3.0);
    const auto rep = normal ? d2r::conjugate_gradient_normal(ctx, op.op(), cview(zero), view(x), {})
                            : d2r::conjugate_gradient(ctx, op.op(), cview(zero), view(x), {});
    expect_consistent(rep);
    EXPECT_EQ(rep.status, SolveStatus::converged);
    EXPECT_EQ(rep.iterations, 0);
    EXPECT_EQ(rep.residual_norm, 0.0);
    EXPECT_EQ(x, zero);
  }
  const auto b = TestRng(2).vector<double>(n, -1, 1);
  std::vector<double> solution = dense_solve(A, b), guess = solution;
  const auto rep = d2r::conjugate_gradient(ctx, op.op(), cview(b), view(guess), {.tolerance = 1e-8});
  EXPECT_EQ(rep.status, SolveStatus::converged);
  EXPECT_EQ(rep.iterations, 0);
  EXPECT_EQ(guess, solution);
}

TEST(SolverCgRef, FloatOnCpuMatchesDouble) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::int64_t n = 40;
  const Dense A = with_eigenvalues(geometric(n, 0.1, 1.0), 7);
  const auto b = TestRng(5).vector<double>(n, -1, 1);
  const std::vector<float> bf(b.begin(), b.end());
  std::vector<float> x(n, 0.0f);
  HostOperator<float> op(A);
  const auto rep = d2r::conjugate_gradient<float>(ctx, op.op(), {bf.data(), n}, {x.data(), n}, {.tolerance = 1e-5f});
  expect_consistent(rep);
  EXPECT_EQ(rep.status, SolveStatus::converged);
  const auto exact = dense_solve(A, b);
  EXPECT_LE(distance(x, exact), 1e-4 * norm2(exact));
}

// ---------------------------------------------------------------- Neumann series
class SolverNeumannRef : public ::testing::Test {
 protected:
  static constexpr std::int64_t n = 25;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  Dense A = with_eigenvalues(geometric(n, 0.5, 2.0), 21);  // ‖A‖ = 2
  std::vector<double> b = TestRng(22).vector<double>(n, -1, 1);
};

TEST_F(SolverNeumannRef, ConvergesToTheSolveWithErrorDecreasingInK) {
  const auto exact = dense_solve(A, b);
  double previous = INFINITY;
  for (const std::int64_t K : {0, 2, 5, 10, 20, 40, 80}) {
    HostOperator<double> op(A);
    std::vector<double> x(n, std::numeric_limits<double>::quiet_NaN());  // output only: never read
    const auto rep = d2r::neumann_series(ctx, op.op(), cview(b), view(x), {.alpha = 0.4, .iterations = K});  // α‖A‖ = 0.8
    expect_consistent(rep);
    EXPECT_EQ(rep.status, SolveStatus::converged);
    EXPECT_EQ(rep.iterations, K);
    EXPECT_EQ(op.applications(), K + 1);
    EXPECT_NEAR(rep.initial_residual_norm, norm2(b), 1e-12);
    EXPECT_NEAR(rep.residual_norm, true_residual(A, x, b), 1e-12);
    for (std::size_t k = 1; k < rep.residual_history.size(); ++k)
      EXPECT_LE(rep.residual_history[k], rep.residual_history[k - 1] * (1 + 1e-12));
    const double error = distance(x, exact);
    EXPECT_LT(error, previous) << "K = " << K;
    previous = error;
    // Error bound: ‖(I − αA)^{K+1} A⁻¹ b‖ <= 0.8^{K+1} ‖A⁻¹b‖ (eigenvalues of I − αA in [0.2, 0.8]).
    EXPECT_LE(error, std::pow(0.8, static_cast<double>(K + 1)) * norm2(exact) * (1 + 1e-9));
  }
  EXPECT_LT(previous, 1e-7);
}

TEST_F(SolverNeumannRef, KZeroIsAlphaB) {
  std::vector<double> x(n, 0.0);
  HostOperator<double> op(A);
  const auto rep = d2r::neumann_series(ctx, op.op(), cview(b), view(x), {.alpha = 0.3, .iterations = 0});
  EXPECT_EQ(rep.iterations, 0);
  ASSERT_EQ(rep.residual_history.size(), 1u);
  for (std::int64_t i = 0; i < n; ++i) EXPECT_DOUBLE_EQ(x[i], 0.3 * b[i]);
}

TEST_F(SolverNeumannRef, ConvergesBelowTwoOverNormAndDivergesAbove) {
  // The series converges iff |1 − αλ| < 1 for every eigenvalue: α‖A‖ = 1.5 still converges.
  for (const double scaled : {1.0, 1.5, 2.5, 4.0}) {
    SCOPED_TRACE(scaled);
    HostOperator<double> op(A);
    std::vector<double> x(n, 0.0);
    const auto rep = d2r::neumann_series(ctx, op.op(), cview(b), view(x), {.alpha = scaled / 2.0, .iterations = 60});
    expect_consistent(rep);
    if (scaled < 2) {
      EXPECT_EQ(rep.status, SolveStatus::converged);
      EXPECT_LE(distance(x, dense_solve(A, b)), 1e-6);
    } else {
      EXPECT_EQ(rep.status, SolveStatus::diverged);
      EXPECT_LT(rep.iterations, 60) << "the growing term is caught, not summed";
      for (double v : x) EXPECT_TRUE(std::isfinite(v));
      EXPECT_NEAR(rep.residual_norm, true_residual(A, x, b), 1e-9 * (1 + rep.residual_norm));
    }
  }
}

TEST_F(SolverNeumannRef, IndefiniteOperatorDiverges) {
  std::vector<double> lambda = geometric(n, 0.5, 2.0);
  lambda[3] = -0.4;
  const Dense M = with_eigenvalues(lambda, 23);
  HostOperator<double> op(M);
  std::vector<double> x(n, 0.0);
  const auto rep = d2r::neumann_series(ctx, op.op(), cview(b), view(x), {.alpha = 0.1, .iterations = 100});
  EXPECT_EQ(rep.status, SolveStatus::diverged);
  // With damping δ = 0.5 the shifted operator is SPD and the series converges to its solve.
  HostOperator<double> op2(M);
  // Eigenvalues of M + 0.5 I in [0.1, 2.5]: α = 0.7 gives I − α(M + δI) eigenvalues in [−0.75, 0.93].
  const auto rep2 = d2r::neumann_series(ctx, op2.op(), cview(b), view(x), {.alpha = 0.7, .iterations = 300, .damping = 0.5});
  EXPECT_EQ(rep2.status, SolveStatus::converged);
  EXPECT_LE(distance(x, dense_solve(M, b, 0.5)), 1e-6);
}

TEST_F(SolverNeumannRef, ToleranceStopsEarlyOrReportsTheCap) {
  HostOperator<double> op(A);
  std::vector<double> x(n, 0.0);
  const auto rep = d2r::neumann_series(ctx, op.op(), cview(b), view(x),
                                       {.alpha = 0.4, .iterations = 500, .tolerance = 1e-6});
  expect_consistent(rep);
  EXPECT_EQ(rep.status, SolveStatus::converged);
  EXPECT_LT(rep.iterations, 500);
  EXPECT_LE(rep.residual_norm, 1e-6 * norm2(b) * (1 + 1e-9));
  const auto capped = d2r::neumann_series(ctx, op.op(), cview(b), view(x),
                                          {.alpha = 0.4, .iterations = 3, .tolerance = 1e-6});
  EXPECT_EQ(capped.status, SolveStatus::max_iterations);
  EXPECT_EQ(capped.iterations, 3);
}

TEST(SolverStatus, Names) {
  EXPECT_STREQ(d2r::to_string(SolveStatus::converged), "converged");
  EXPECT_STREQ(d2r::to_string(SolveStatus::max_iterations), "max_iterations");
  EXPECT_STREQ(d2r::to_string(SolveStatus::breakdown), "breakdown");
  EXPECT_STREQ(d2r::to_string(SolveStatus::diverged), "diverged");
}

}  // namespace
