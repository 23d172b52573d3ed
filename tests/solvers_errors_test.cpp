// Bad input to the solvers: a d2r::Error naming the argument, raised before x is written; and
// failures inside the solve (an operator that throws, or that grows the solver's workspace)
// leave x untouched.
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <stdexcept>
#include <string>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::SolveStatus;
using d2r::test::GuardedMatrix;

using d2r::test::expect_error;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

class SolverErrors : public ::testing::Test {
 protected:
  static constexpr std::int64_t n = 4;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  std::vector<float> b = std::vector<float>(n, 1.0f);
  GuardedMatrix<float> x{ctx, 1, n};
  d2r::LinearOperator<float> identity = [](d2r::ConstVector<float> in, d2r::VectorView<float> out) {
    for (std::int64_t i = 0; i < in.size; ++i) out[i] = 2 * in[i];
  };
  d2r::ConstVector<float> bv() const { return {b.data(), n}; }

  void cg(const d2r::CgOptions<float>& o) { d2r::conjugate_gradient<float>(ctx, identity, bv(), x.vector(), o); }
  void cgnr(const d2r::CgOptions<float>& o) { d2r::conjugate_gradient_normal<float>(ctx, identity, bv(), x.vector(), o); }
  void neumann(const d2r::NeumannOptions<float>& o) { d2r::neumann_series<float>(ctx, identity, bv(), x.vector(), o); }
};

TEST_F(SolverErrors, CgOptions) {
  for (const auto& solve : {std::function<void(const d2r::CgOptions<float>&)>([&](auto& o) { cg(o); }),
                            std::function<void(const d2r::CgOptions<float>&)>([&](auto& o) { cgnr(o); })}) {
    expect_error([&] { solve({.damping = -1.0f}); }, "options.damping", "finite δ >= 0, got -1");
    expect_error([&] { solve({.damping = kNaN}); }, "options.damping", "finite δ >= 0");
    expect_error([&] { solve({.damping = kInf}); }, "options.damping", "finite δ >= 0");
    expect_error([&] { solve({.tolerance = 0.0f}); }, "options.tolerance", "tolerance > 0, got 0");
    expect_error([&] { solve({.tolerance = -1e-3f}); }, "options.tolerance", "tolerance > 0");
    expect_error([&] { solve({.tolerance = kNaN}); }, "options.tolerance", "tolerance > 0");
    expect_error([&] { solve({.max_iterations = 0}); }, "options.max_iterations", "1 <= max_iterations");
    expect_error([&] { solve({.max_iterations = d2r::kMaxSolverIterations + 1}); }, "options.max_iterations",
                 "max_iterations <= 16777216");
  }
  EXPECT_TRUE(x.untouched());
}

TEST_F(SolverErrors, NeumannOptions) {
  expect_error([&] { neumann({}); }, "options.alpha", "finite α > 0, got 0");
  expect_error([&] { neumann({.alpha = -0.1f}); }, "options.alpha", "finite α > 0");
  expect_error([&] { neumann({.alpha = kInf}); }, "options.alpha", "finite α > 0");
  expect_error([&] { neumann({.alpha = 0.1f, .iterations = -1}); }, "options.iterations", "0 <= iterations");
  expect_error([&] { neumann({.alpha = 0.1f, .damping = -0.5f}); }, "options.damping", "finite δ >= 0");
  expect_error([&] { neumann({.alpha = 0.1f, .tolerance = -1.0f}); }, "options.tolerance", "tolerance >= 0");
  EXPECT_TRUE(x.untouched());
}

TEST_F(SolverErrors, VectorsAndOperator) {
  const d2r::CgOptions<float> o{};
  std::vector<float> xs(n, 0.0f), longer(n + 1, 0.0f);
  expect_error([&] { d2r::conjugate_gradient<float>(ctx, identity, bv(), {x.vector().data, n - 1}, o); }, "x",
               "expected length n = 4 (the length of b), got 3");
  expect_error([&] { d2r::neumann_series<float>(ctx, identity, bv(), {longer.data(), n + 1}, {.alpha = 0.1f}); }, "x",
               "got 5");
  expect_error([&] { d2r::conjugate_gradient<float>(ctx, identity, {b.data(), 0}, {xs.data(), 0}, o); }, "b",
               "length n >= 1, got length 0");
  expect_error([&] { d2r::conjugate_gradient<float>(ctx, identity, {nullptr, n}, x.vector(), o); }, "b", "null");
  expect_error([&] { d2r::conjugate_gradient<float>(ctx, identity, bv(), {nullptr, n}, o); }, "x", "null");
  expect_error([&] { d2r::conjugate_gradient<float>(ctx, d2r::LinearOperator<float>{}, bv(), x.vector(), o); }, "A",
               "empty LinearOperator");
  expect_error([&] { d2r::neumann_series<float>(ctx, {}, bv(), x.vector(), {.alpha = 0.1f}); }, "A", "empty");
  // b and x aliasing: the same memory, or overlapping ranges.
  std::vector<float> shared(2 * n, 1.0f);
  expect_error([&] { d2r::conjugate_gradient<float>(ctx, identity, {shared.data(), n}, {shared.data(), n}, o); }, "x",
               "overlaps argument 'b'");
  expect_error([&] {
    d2r::conjugate_gradient_normal<float>(ctx, identity, {shared.data(), n}, {shared.data() + n - 1, n}, o);
  }, "x", "overlaps argument 'b'");
  expect_error([&] { d2r::neumann_series<float>(ctx, identity, {shared.data() + 1, n}, {shared.data(), n}, {.alpha = 0.1f}); },
               "x", "overlaps");
  EXPECT_EQ(shared, std::vector<float>(2 * n, 1.0f));
  EXPECT_TRUE(x.untouched());
}

TEST_F(SolverErrors, NonFiniteValues) {
  b[2] = kNaN;
  expect_error([&] { cg({}); }, "b", "element (0, 2) is nan");
  expect_error([&] { neumann({.alpha = 0.1f}); }, "b", "finite values");
  b[2] = 1.0f;
  expect_error([&] { cg({}); }, "x", "finite values");  // the initial guess is the NaN sentinel
  EXPECT_TRUE(x.untouched());

  // With value checks off the solve runs and says it diverged, instead of returning quietly.
  ctx.set_value_checks(d2r::ValueChecks::none);
  b[1] = kInf;
  std::vector<float> xs(n, 0.0f);
  for (int method = 0; method < 3; ++method) {
    const auto rep = method == 0   ? d2r::conjugate_gradient<float>(ctx, identity, bv(), {xs.data(), n}, {})
                     : method == 1 ? d2r::conjugate_gradient_normal<float>(ctx, identity, bv(), {xs.data(), n}, {})
                                   : d2r::neumann_series<float>(ctx, identity, bv(), {xs.data(), n}, {.alpha = 0.1f});
    EXPECT_EQ(rep.status, SolveStatus::diverged) << method;
  }
}

TEST_F(SolverErrors, DoubleVectorsAreFineOnCpu) {
  std::vector<double> bd(n, 1.0), xd(n, 0.0);
  const d2r::LinearOperator<double> op = [](d2r::ConstVector<double> in, d2r::VectorView<double> out) {
    for (std::int64_t i = 0; i < in.size; ++i) out[i] = 2 * in[i];
  };
  const auto rep = d2r::conjugate_gradient<double>(ctx, op, {bd.data(), n}, {xd.data(), n}, {});
  EXPECT_EQ(rep.status, SolveStatus::converged);
  EXPECT_EQ(xd, std::vector<double>(n, 0.5));
}

TEST_F(SolverErrors, OperatorFailureLeavesXUntouched) {
  x.fill(std::vector<float>(n, 0.25f));
  int calls = 0;
  const d2r::LinearOperator<float> throws_later = [&](d2r::ConstVector<float> in, d2r::VectorView<float> out) {
    if (++calls == 3) throw std::runtime_error("operator failed");
    for (std::int64_t i = 0; i < in.size; ++i) out[i] = (1.0f + static_cast<float>(i)) * in[i];
  };
  EXPECT_THROW(d2r::conjugate_gradient<float>(ctx, throws_later, bv(), x.vector(), {.tolerance = 1e-7f}),
               std::runtime_error);
  EXPECT_EQ(x.values_checked(), std::vector<float>(n, 0.25f));

  // An operator that takes the solver workspace for itself is caught.
  // (It is done with in and out, which live in that workspace, before it grows the block.)
  const d2r::LinearOperator<float> greedy = [&](d2r::ConstVector<float> in, d2r::VectorView<float> out) {
    for (std::int64_t i = 0; i < in.size; ++i) out[i] = in[i];
    (void)ctx.workspace(ctx.workspace_capacity(d2r::Workspace::solver) + 4096, d2r::Workspace::solver);
  };
  expect_error([&] { d2r::conjugate_gradient<float>(ctx, greedy, bv(), x.vector(), {}); }, "A",
               "solver workspace");
  expect_error([&] { d2r::neumann_series<float>(ctx, greedy, bv(), x.vector(), {.alpha = 0.5f}); }, "A",
               "Workspace::primitive");
  EXPECT_EQ(x.values_checked(), std::vector<float>(n, 0.25f));
  // An operator using the primitive workspace is fine.
  const d2r::LinearOperator<float> modest = [&](d2r::ConstVector<float> in, d2r::VectorView<float> out) {
    auto* tmp = static_cast<float*>(ctx.workspace(static_cast<std::size_t>(in.size) * sizeof(float)));
    for (std::int64_t i = 0; i < in.size; ++i) tmp[i] = 2 * in[i];
    for (std::int64_t i = 0; i < in.size; ++i) out[i] = tmp[i];
  };
  const auto rep = d2r::conjugate_gradient<float>(ctx, modest, bv(), x.vector(), {});
  EXPECT_EQ(rep.status, SolveStatus::converged);
  EXPECT_EQ(x.values_checked(), std::vector<float>(n, 0.5f));
}

}  // namespace
