// Bad input to the optimisers and gradient conditioning (cpu backend): a d2r::Error naming the
// argument, raised before any output is written. The cuda-only cases (double views, host
// pointers) are in optim_gpu_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::GuardedMatrix;

using d2r::test::expect_error;

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

class OptimErrors : public ::testing::Test {
 protected:
  static constexpr std::int64_t n = 5;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  // Outputs: never filled, so every element holds the sentinel until something writes it.
  GuardedMatrix<float> params{ctx, 1, n}, m{ctx, 1, n}, v{ctx, 1, n}, velocity{ctx, 1, n}, values{ctx, 1, n},
      norm{ctx, 1, 2};
  GuardedMatrix<std::int64_t> step{ctx, 1, 1};
  std::vector<float> g = std::vector<float>(n, 0.25f);

  d2r::VectorView<const float> grad(std::int64_t size = n) const { return {g.data(), size}; }
  d2r::AdamState<float> state() { return {m.vector(), v.vector(), step.vector()}; }
  void adam(const d2r::AdamOptions<float>& o) { d2r::adam_step(ctx, o, state(), params.vector(), grad()); }
  void expect_untouched() {
    EXPECT_TRUE(params.untouched());
    EXPECT_TRUE(m.untouched());
    EXPECT_TRUE(v.untouched());
    EXPECT_TRUE(step.untouched());
    EXPECT_TRUE(velocity.untouched());
    EXPECT_TRUE(values.untouched());
    EXPECT_TRUE(norm.untouched());
  }
};

TEST_F(OptimErrors, AdamHyperparameters) {
  expect_error([&] { adam({.learning_rate = 0.0f}); }, "options.learning_rate", "expected a finite value > 0, got 0");
  expect_error([&] { adam({.learning_rate = -1e-3f}); }, "options.learning_rate", "> 0");
  expect_error([&] { adam({.learning_rate = kInf}); }, "options.learning_rate", "got inf");
  expect_error([&] { adam({.learning_rate = kNan}); }, "options.learning_rate", "got nan");
  expect_error([&] { adam({.beta1 = 1.0f}); }, "options.beta1", "expected a value in [0, 1), got 1");
  expect_error([&] { adam({.beta1 = -0.1f}); }, "options.beta1", "[0, 1)");
  expect_error([&] { adam({.beta2 = 1.0f}); }, "options.beta2", "[0, 1)");
  expect_error([&] { adam({.beta2 = kNan}); }, "options.beta2", "[0, 1)");
  expect_error([&] { adam({.epsilon = 0.0f}); }, "options.epsilon", "> 0");
  expect_error([&] { adam({.weight_decay = -0.01f}); }, "options.weight_decay", ">= 0");
  expect_error([&] { adam({.weight_decay = kInf}); }, "options.weight_decay", "finite");
  expect_untouched();
}

TEST_F(OptimErrors, AdamShapes) {
  expect_error([&] { d2r::adam_step(ctx, {}, state(), d2r::VectorView<float>{}, grad(0)); }, "params", "non-empty");
  expect_error([&] { d2r::adam_step(ctx, {}, state(), d2r::VectorView<float>{nullptr, n}, grad()); }, "params",
               "data pointer is null");
  expect_error([&] { d2r::adam_step(ctx, {}, state(), params.vector(), grad(n - 1)); }, "grad",
               "expected 5 elements, got 4");
  expect_error([&] {
    d2r::adam_step(ctx, {}, {{m.vector().data, n + 1}, v.vector(), step.vector()}, params.vector(), grad());
  }, "state.first_moment", "expected 5 elements, got 6");
  expect_error([&] {
    d2r::adam_step(ctx, {}, {m.vector(), {v.vector().data, 2}, step.vector()}, params.vector(), grad());
  }, "state.second_moment", "expected 5 elements, got 2");
  expect_error([&] { d2r::adam_step(ctx, {}, {m.vector(), v.vector(), {}}, params.vector(), grad()); }, "state.step",
               "expected 1 element, got 0");
  expect_error([&] {
    d2r::adam_step(ctx, {}, {m.vector(), v.vector(), {step.vector().data, 2}}, params.vector(), grad());
  }, "state.step", "expected 1 element, got 2");
  expect_untouched();
}

TEST_F(OptimErrors, AdamAliasing) {
  const d2r::VectorView<float> p = params.vector();
  expect_error([&] { d2r::adam_step(ctx, {}, state(), p, d2r::VectorView<const float>(p)); }, "params",
               "overlaps argument 'grad'");
  expect_error([&] { d2r::adam_step(ctx, {}, {{p.data + 2, n}, v.vector(), step.vector()}, p, grad()); }, "params",
               "overlaps argument 'state.first_moment'");
  expect_error([&] { d2r::adam_step(ctx, {}, {m.vector(), {p.data + 4, n}, step.vector()}, p, grad()); }, "params",
               "overlaps argument 'state.second_moment'");
  expect_error([&] { d2r::adam_step(ctx, {}, {m.vector(), m.vector(), step.vector()}, p, grad()); },
               "state.first_moment", "overlaps argument 'state.second_moment'");
  expect_error([&] {
    d2r::adam_step(ctx, {}, {m.vector(), v.vector(), {reinterpret_cast<std::int64_t*>(v.vector().data), 1}}, p,
                   grad());
  }, "state.second_moment", "overlaps argument 'state.step'");
  std::vector<float> shared(2 * n, 0.0f);
  expect_error([&] {
    d2r::adam_step(ctx, {}, {{shared.data(), n}, v.vector(), step.vector()}, p, {shared.data() + 1, n});
  }, "state.first_moment", "overlaps argument 'grad'");
  EXPECT_EQ(shared, std::vector<float>(2 * n, 0.0f));
  expect_untouched();
}

TEST_F(OptimErrors, AdamValues) {
  g[2] = kNan;
  expect_error([&] { adam({}); }, "grad", "element (0, 2) is nan; expected finite values");
  g[2] = -kInf;
  expect_error([&] { adam({}); }, "grad", "is -inf");
  g[2] = 0.25f;
  std::vector<std::int64_t> negative{-1};
  expect_error([&] {
    d2r::adam_step(ctx, {}, {m.vector(), v.vector(), {negative.data(), 1}}, params.vector(), grad());
  }, "state.step", "expected a step count >= 0, got -1");
  EXPECT_EQ(negative[0], -1);
  expect_untouched();
}

TEST_F(OptimErrors, AdamWithoutValueChecksTrustsTheGradient) {
  ctx.set_value_checks(d2r::ValueChecks::none);
  std::vector<float> p(n, 1.0f), mm(n, 0.0f), vv(n, 0.0f);
  std::vector<std::int64_t> s{0};
  g[0] = kNan;
  d2r::adam_step(ctx, {}, {d2r::vector_view(mm.data(), n), d2r::vector_view(vv.data(), n), d2r::vector_view(s.data(), 1)},
                 d2r::vector_view(p.data(), n), grad());
  EXPECT_TRUE(std::isnan(p[0]));
  EXPECT_NE(p[1], 1.0f);
  EXPECT_EQ(s[0], 1);
}

TEST_F(OptimErrors, AdamReset) {
  expect_error([&] { d2r::adam_reset(ctx, d2r::AdamState<float>{{}, v.vector(), step.vector()}); },
               "state.first_moment", "non-empty");
  expect_error([&] { d2r::adam_reset(ctx, d2r::AdamState<float>{m.vector(), {v.vector().data, n - 1}, step.vector()}); },
               "state.second_moment", "expected 5 elements, got 4");
  expect_error([&] { d2r::adam_reset(ctx, d2r::AdamState<float>{m.vector(), v.vector(), {}}); }, "state.step",
               "expected 1 element");
  expect_error([&] {
    d2r::adam_reset(ctx, d2r::AdamState<float>{m.vector(), {m.vector().data + 1, n}, step.vector()});
  }, "state.first_moment", "overlaps argument 'state.second_moment'");
  expect_untouched();
}

TEST_F(OptimErrors, Sgd) {
  auto sgd = [&](float lr, float momentum, d2r::VectorView<float> vel, d2r::VectorView<float> p,
                 d2r::VectorView<const float> gr) { d2r::sgd_step(ctx, lr, momentum, vel, p, gr); };
  const auto vel = velocity.vector(), p = params.vector();
  expect_error([&] { sgd(0.0f, 0.0f, {}, p, grad()); }, "learning_rate", "expected a finite value > 0, got 0");
  expect_error([&] { sgd(kNan, 0.0f, {}, p, grad()); }, "learning_rate", "> 0");
  expect_error([&] { sgd(kInf, 0.0f, {}, p, grad()); }, "learning_rate", "finite");
  expect_error([&] { sgd(0.1f, 1.0f, vel, p, grad()); }, "momentum", "expected a value in [0, 1), got 1");
  expect_error([&] { sgd(0.1f, -0.5f, vel, p, grad()); }, "momentum", "[0, 1)");
  expect_error([&] { sgd(0.1f, 0.9f, {}, p, grad()); }, "velocity", "needs a velocity buffer of 5 elements");
  expect_error([&] { sgd(0.1f, 0.9f, {vel.data, 3}, p, grad()); }, "velocity", "expected 5 elements, got 3");
  expect_error([&] { sgd(0.1f, 0.0f, {vel.data, 3}, p, grad()); }, "velocity", "expected 5 elements, got 3");
  expect_error([&] { sgd(0.1f, 0.9f, vel, {}, grad(0)); }, "params", "non-empty");
  expect_error([&] { sgd(0.1f, 0.9f, vel, p, grad(4)); }, "grad", "expected 5 elements, got 4");
  expect_error([&] { sgd(0.1f, 0.9f, p, p, grad()); }, "params", "overlaps argument 'velocity'");
  expect_error([&] { sgd(0.1f, 0.9f, vel, p, d2r::VectorView<const float>(p)); }, "params", "overlaps argument 'grad'");
  expect_error([&] { sgd(0.1f, 0.9f, vel, p, d2r::VectorView<const float>{vel.data + 4, n}); }, "velocity",
               "overlaps argument 'grad'");
  g[4] = kInf;
  expect_error([&] { sgd(0.1f, 0.9f, vel, p, grad()); }, "grad", "element (0, 4) is inf");
  expect_untouched();
}

TEST_F(OptimErrors, Clamp) {
  const auto x = values.vector();
  expect_error([&] { d2r::clamp_values(ctx, 0.0f, x); }, "limit", "expected a value > 0");
  expect_error([&] { d2r::clamp_values(ctx, -1.0f, x); }, "limit", "got -1");
  expect_error([&] { d2r::clamp_values(ctx, kNan, x); }, "limit", "got nan");
  expect_error([&] { d2r::clamp_values(ctx, 1.0f, d2r::VectorView<float>{}); }, "values", "non-empty");
  expect_error([&] { d2r::clamp_values(ctx, 1.0f, x); }, "values", "is nan");  // the sentinel is a NaN
  expect_untouched();
}

TEST_F(OptimErrors, ClipGlobalNorm) {
  const auto x = values.vector();
  std::vector<float> finite(n, 1.0f);
  const auto f = d2r::vector_view(finite.data(), n);
  expect_error([&] { d2r::clip_global_norm(ctx, 0.0f, f, norm.vector()); }, "max_norm", "expected a finite value > 0");
  expect_error([&] { d2r::clip_global_norm(ctx, kInf, f, norm.vector()); }, "max_norm", "got inf");
  expect_error([&] { d2r::clip_global_norm(ctx, kNan, f, norm.vector()); }, "max_norm", "got nan");
  expect_error([&] { d2r::clip_global_norm(ctx, 1.0f, d2r::VectorView<float>{}, norm.vector()); }, "values",
               "non-empty");
  expect_error([&] { d2r::clip_global_norm(ctx, 1.0f, f, norm.vector()); }, "norm_out", "expected 1 element, got 2");
  expect_error([&] { d2r::clip_global_norm(ctx, 1.0f, x, {x.data + 4, 1}); }, "values", "overlaps argument 'norm_out'");
  expect_error([&] { d2r::clip_global_norm(ctx, 1.0f, x, {norm.vector().data, 1}); }, "values", "is nan");
  finite[3] = -kInf;
  expect_error([&] { d2r::clip_global_norm(ctx, 1.0f, f, {norm.vector().data, 1}); }, "values", "is -inf");
  EXPECT_EQ(finite[0], 1.0f);
  expect_untouched();
}

}  // namespace
