// Optimisers and gradient conditioning on the cpu backend (float and double) against
// independent implementations of PyTorch's formulas, known tiny cases and convergence on a
// quadratic.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::TestRng;

/// Adam/AdamW written from torch.optim.AdamW's documentation (bias-corrected moments m̂, v̂),
/// in double, independently of the library's (lr / bc1) · m / (√v / √bc2 + ε) arrangement.
struct AdamOracle {
  double lr, beta1, beta2, eps, weight_decay;
  std::vector<double> m, v;
  std::int64_t t = 0;

  void step(std::vector<double>& p, const std::vector<double>& g) {
    ++t;
    for (std::size_t i = 0; i < p.size(); ++i) {
      p[i] -= lr * weight_decay * p[i];
      m[i] = beta1 * m[i] + (1 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(beta1, static_cast<double>(t)));
      const double v_hat = v[i] / (1 - std::pow(beta2, static_cast<double>(t)));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

template <class T>
std::vector<T> cast(const std::vector<double>& x) {
  return std::vector<T>(x.begin(), x.end());
}

struct AdamCase {
  const char* name;
  double lr, beta1, beta2, eps, weight_decay;
  std::int64_t initial_step;  ///< state.step before the first call (a resumed optimiser)
};
void PrintTo(const AdamCase& c, std::ostream* os) {
  *os << c.name << " (lr " << c.lr << ", beta1 " << c.beta1 << ", beta2 " << c.beta2 << ", eps " << c.eps
      << ", weight_decay " << c.weight_decay << ", initial step " << c.initial_step << ")";
}

class OptimAdamVsOracle : public ::testing::TestWithParam<AdamCase> {
 protected:
  /// Runs `steps` updates of size n through d2r on the cpu backend in T and through the oracle;
  /// compares params, both moments and the counter after every step.
  template <class T>
  void run(double rtol, double atol) {
    const AdamCase c = GetParam();
    constexpr std::int64_t n = 37;
    constexpr int steps = 6;
    d2r::Context ctx({.backend = d2r::Backend::cpu});
    TestRng rng(static_cast<std::uint64_t>(c.initial_step) + 11);
    std::vector<double> p = rng.vector<double>(n, -2, 2);
    // Start from non-zero moments when resuming, as a checkpoint would.
    std::vector<double> m0(n, 0.0), v0(n, 0.0);
    if (c.initial_step > 0) m0 = rng.vector<double>(n, -0.5, 0.5), v0 = rng.vector<double>(n, 0.0, 0.3);
    AdamOracle oracle{c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, m0, v0, c.initial_step};
    std::vector<T> params = cast<T>(p), m = cast<T>(m0), v = cast<T>(v0);
    std::vector<std::int64_t> step{c.initial_step};
    const d2r::AdamState<T> state{d2r::vector_view(m.data(), n), d2r::vector_view(v.data(), n),
                                  d2r::vector_view(step.data(), 1)};
    const d2r::AdamOptions<T> options{static_cast<T>(c.lr), static_cast<T>(c.beta1), static_cast<T>(c.beta2),
                                      static_cast<T>(c.eps), static_cast<T>(c.weight_decay)};
    // The oracle sees exactly the hyperparameters the library sees (rounded to T).
    oracle.lr = static_cast<double>(options.learning_rate), oracle.beta1 = static_cast<double>(options.beta1);
    oracle.beta2 = static_cast<double>(options.beta2), oracle.eps = static_cast<double>(options.epsilon);
    oracle.weight_decay = static_cast<double>(options.weight_decay);
    for (int k = 0; k < steps; ++k) {
      std::vector<double> g = rng.vector<double>(n, -1, 1);
      g[static_cast<std::size_t>(k)] = 0.0;  // a zero gradient entry each step
      const std::vector<T> gt = cast<T>(g);
      oracle.step(p, std::vector<double>(gt.begin(), gt.end()));
      d2r::adam_step(ctx, options, state, d2r::vector_view(params.data(), n), d2r::vector_view(gt.data(), n));
      ASSERT_EQ(step[0], c.initial_step + k + 1) << "after step " << k;
      D2R_EXPECT_CLOSE(params, p, rtol, atol);
      D2R_EXPECT_CLOSE(m, oracle.m, rtol, atol);
      D2R_EXPECT_CLOSE(v, oracle.v, rtol, atol);
    }
    EXPECT_GT(std::abs(p[5]), 0.0);
  }
};

TEST_P(OptimAdamVsOracle, Double) { run<double>(1e-12, 1e-14); }
TEST_P(OptimAdamVsOracle, Float) { run<float>(2e-5, 1e-6); }

INSTANTIATE_TEST_SUITE_P(Options, OptimAdamVsOracle,
                         ::testing::Values(AdamCase{"Defaults", 1e-3, 0.9, 0.999, 1e-8, 0.0, 0},
                                           AdamCase{"AdamW", 0.05, 0.9, 0.999, 1e-8, 0.01, 0},
                                           AdamCase{"SmallBetas", 0.1, 0.5, 0.9, 1e-3, 0.0, 0},
                                           AdamCase{"ZeroBetasAdamW", 0.01, 0.0, 0.0, 1e-6, 0.1, 0},  // sign-like steps
                                           AdamCase{"ResumedAtStep41", 2e-3, 0.9, 0.999, 1e-8, 0.05, 41}),
                         [](const ::testing::TestParamInfo<AdamCase>& info) { return std::string(info.param.name); });

TEST(OptimAdam, FirstStepMovesEachParameterByLearningRateTimesSign) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  std::vector<double> p{1.0, -2.0, 0.5, 3.0, 0.0}, g{0.3, -4.0, 1e-3, 0.0, -50.0};
  const std::vector<double> p0 = p;
  std::vector<double> m(5, 0.0), v(5, 0.0);
  std::vector<std::int64_t> step{0};
  const double lr = 0.01;
  d2r::adam_step(ctx, d2r::AdamOptions<double>{.learning_rate = lr},
                 {d2r::vector_view(m.data(), 5), d2r::vector_view(v.data(), 5), d2r::vector_view(step.data(), 1)},
                 d2r::vector_view(p.data(), 5), d2r::vector_view<const double>(g.data(), 5));
  EXPECT_EQ(step[0], 1);
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double sign = g[i] > 0 ? 1.0 : (g[i] < 0 ? -1.0 : 0.0);
    // |g| / (|g| + ε): ≈ 1 up to ε / |g| ≤ 1e-5.
    EXPECT_NEAR(p[i], p0[i] - lr * sign, lr * 1e-5) << i;
    EXPECT_NEAR(m[i], 0.1 * g[i], 1e-14 * (1 + std::abs(g[i])));
    EXPECT_NEAR(v[i], 0.001 * g[i] * g[i], 1e-14 * (1 + g[i] * g[i]));
  }
}

TEST(OptimAdam, ResetZeroesMomentsAndCounter) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  std::vector<float> m{1, 2, 3}, v{4, 5, 6};
  std::vector<std::int64_t> step{17};
  d2r::adam_reset(ctx, d2r::AdamState<float>{d2r::vector_view(m.data(), 3), d2r::vector_view(v.data(), 3),
                                             d2r::vector_view(step.data(), 1)});
  EXPECT_EQ(m, std::vector<float>(3, 0.0f));
  EXPECT_EQ(v, std::vector<float>(3, 0.0f));
  EXPECT_EQ(step[0], 0);
}

TEST(OptimAdam, CounterDrivesBiasCorrection) {
  // Same moments and gradient, different counts: the update size follows √(1−β2^t)/(1−β1^t).
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const double lr = 0.1, g = 0.5;
  auto move = [&](std::int64_t count) {
    std::vector<double> p{0.0}, m{0.2}, v{0.04};
    std::vector<std::int64_t> step{count};
    d2r::adam_step(ctx, d2r::AdamOptions<double>{.learning_rate = lr, .epsilon = 1e-300},
                   {d2r::vector_view(m.data(), 1), d2r::vector_view(v.data(), 1), d2r::vector_view(step.data(), 1)},
                   d2r::vector_view(p.data(), 1), d2r::vector_view<const double>(&g, 1));
    EXPECT_EQ(step[0], count + 1);
    const double t = static_cast<double>(count + 1);
    const double mm = 0.9 * 0.2 + 0.1 * g, vv = 0.999 * 0.04 + 0.001 * g * g;
    EXPECT_NEAR(p[0], -lr * (mm / (1 - std::pow(0.9, t))) / std::sqrt(vv / (1 - std::pow(0.999, t))), 1e-14);
    return p[0];
  };
  EXPECT_NE(move(0), move(1000));
}

TEST(OptimSgd, PlainAndMomentumFollowPyTorch) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  TestRng rng(5);
  constexpr std::int64_t n = 19;
  const double lr = 0.1, mu = 0.9;
  std::vector<double> p = rng.vector<double>(n, -1, 1), q = p, buf(n, 0.0), vel(n, 0.0);
  std::vector<double> expected_p = p, expected_q = q;
  for (int k = 0; k < 4; ++k) {
    const std::vector<double> g = rng.vector<double>(n, -1, 1);
    // torch.optim.SGD: first step buf = g, then buf = μ·buf + g; p -= lr·buf.
    for (std::int64_t i = 0; i < n; ++i) {
      buf[i] = k == 0 ? g[i] : mu * buf[i] + g[i];
      expected_q[i] -= lr * buf[i];
      expected_p[i] -= lr * g[i];
    }
    d2r::sgd_step<double>(ctx, lr, 0.0, {}, d2r::vector_view(p.data(), n), d2r::vector_view<const double>(g.data(), n));
    d2r::sgd_step<double>(ctx, lr, mu, d2r::vector_view(vel.data(), n), d2r::vector_view(q.data(), n),
                          d2r::vector_view<const double>(g.data(), n));
    D2R_EXPECT_CLOSE(p, expected_p, 1e-14, 1e-15);
    D2R_EXPECT_CLOSE(q, expected_q, 1e-14, 1e-15);
    D2R_EXPECT_CLOSE(vel, buf, 1e-14, 1e-15);
  }
}

TEST(OptimSgd, FloatWithDoubleLiteralsAndUnusedVelocity) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  std::vector<float> p{1.0f, 2.0f}, g{0.5f, -1.0f}, vel{7.0f, 7.0f};
  // momentum 0: a given velocity is checked but left alone.
  d2r::sgd_step(ctx, 0.5, 0.0, d2r::vector_view(vel.data(), 2), d2r::vector_view(p.data(), 2),
                d2r::vector_view(g.data(), 2));
  EXPECT_EQ(p, (std::vector<float>{0.75f, 2.5f}));
  EXPECT_EQ(vel, (std::vector<float>{7.0f, 7.0f}));
}

TEST(OptimClamp, ClampsToSymmetricRange) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  std::vector<float> x{-3.0f, -1.0f, -0.25f, 0.0f, 0.5f, 1.0f, 12.0f};
  d2r::clamp_values(ctx, 1.0, d2r::vector_view(x.data(), 7));
  EXPECT_EQ(x, (std::vector<float>{-1.0f, -1.0f, -0.25f, 0.0f, 0.5f, 1.0f, 1.0f}));
  std::vector<double> y{-20.0, 9.99, 10.0, 10.01};
  d2r::clamp_values(ctx, 10.0, d2r::vector_view(y.data(), 4));
  EXPECT_EQ(y, (std::vector<double>{-10.0, 9.99, 10.0, 10.0}));
}

TEST(OptimClamp, InfinitiesClampAndNanStaysWithoutValueChecks) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .value_checks = d2r::ValueChecks::none});
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> x{-inf, inf, std::nan(""), 0.5};
  d2r::clamp_values(ctx, 2.0, d2r::vector_view(x.data(), 4));
  EXPECT_EQ(x[0], -2.0);
  EXPECT_EQ(x[1], 2.0);
  EXPECT_TRUE(std::isnan(x[2]));
  EXPECT_EQ(x[3], 0.5);
  std::vector<double> y{-3.0, 3.0};
  d2r::clamp_values(ctx, inf, d2r::vector_view(y.data(), 2));  // +inf: no-op
  EXPECT_EQ(y, (std::vector<double>{-3.0, 3.0}));
}

TEST(OptimClipGlobalNorm, ScalesAboveMaxNormOnly) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  std::vector<double> x{3.0, 4.0}, norm{-1.0};
  d2r::clip_global_norm(ctx, 1.0, d2r::vector_view(x.data(), 2), d2r::vector_view(norm.data(), 1));
  EXPECT_NEAR(x[0], 0.6, 1e-15);
  EXPECT_NEAR(x[1], 0.8, 1e-15);
  EXPECT_EQ(norm[0], 5.0);

  std::vector<double> y{3.0, 4.0};
  d2r::clip_global_norm(ctx, 5.0, d2r::vector_view(y.data(), 2), d2r::vector_view(norm.data(), 1));  // N == max
  EXPECT_EQ(y, (std::vector<double>{3.0, 4.0}));
  EXPECT_EQ(norm[0], 5.0);
  d2r::clip_global_norm<double>(ctx, 100.0, d2r::vector_view(y.data(), 2), {});  // below, no norm_out
  EXPECT_EQ(y, (std::vector<double>{3.0, 4.0}));

  std::vector<float> z(4, 0.0f), fn{7.0f};
  d2r::clip_global_norm(ctx, 1.0, d2r::vector_view(z.data(), 4), d2r::vector_view(fn.data(), 1));  // zero norm
  EXPECT_EQ(z, std::vector<float>(4, 0.0f));
  EXPECT_EQ(fn[0], 0.0f);
}

TEST(OptimClipGlobalNorm, RandomVectorsMatchDefinition) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  TestRng rng(8);
  for (const double max_norm : {0.5, 3.0, 1e3}) {
    for (const std::int64_t n : {1, 31, 1000}) {
      const std::vector<double> x0 = rng.vector<double>(static_cast<std::size_t>(n), -1, 1);
      double sq = 0;
      for (const double v : x0) sq += v * v;
      const double N = std::sqrt(sq), s = N > max_norm ? max_norm / N : 1.0;
      std::vector<float> x = cast<float>(x0), norm{0.0f};
      std::vector<double> expected(x0.size());
      for (std::size_t i = 0; i < x0.size(); ++i) expected[i] = static_cast<double>(x[i]) * s;
      d2r::clip_global_norm(ctx, max_norm, d2r::vector_view(x.data(), n), d2r::vector_view(norm.data(), 1));
      D2R_EXPECT_CLOSE(x, expected, 1e-6, 1e-7);
      EXPECT_NEAR(norm[0], N, 1e-6 * N);
      double after = 0;
      for (const float v : x) after += static_cast<double>(v) * v;
      EXPECT_LE(std::sqrt(after), max_norm * (1 + 1e-6));
    }
  }
}

/// f(x) = ½ Σ a_i (x_i − c_i)²: every optimiser must bring x to c.
class Quadratic {
 public:
  explicit Quadratic(std::int64_t n) : a_(static_cast<std::size_t>(n)), c_(static_cast<std::size_t>(n)) {
    TestRng rng(21);
    for (std::size_t i = 0; i < a_.size(); ++i) a_[i] = rng.uniform(0.5, 4.0), c_[i] = rng.uniform(-3, 3);
  }
  template <class T>
  void gradient(const std::vector<T>& x, std::vector<T>& g) const {
    for (std::size_t i = 0; i < x.size(); ++i) g[i] = static_cast<T>(a_[i] * (static_cast<double>(x[i]) - c_[i]));
  }
  [[nodiscard]] const std::vector<double>& minimiser() const { return c_; }

 private:
  std::vector<double> a_, c_;
};

TEST(OptimConvergence, AdamAndSgdMinimiseAQuadratic) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  constexpr std::int64_t n = 50;
  const Quadratic f(n);
  {
    std::vector<float> x(n, 0.0f), g(n), m(n), v(n);
    std::vector<std::int64_t> step{99};
    const d2r::AdamState<float> state{d2r::vector_view(m.data(), n), d2r::vector_view(v.data(), n),
                                      d2r::vector_view(step.data(), 1)};
    d2r::adam_reset(ctx, state);
    for (int k = 0; k < 3000; ++k) {
      f.gradient(x, g);
      d2r::clamp_values(ctx, 1.0, d2r::vector_view(g.data(), n));  // the paper's inner clamp
      d2r::adam_step(ctx, {.learning_rate = 0.01f}, state, d2r::vector_view(x.data(), n), d2r::vector_view(g.data(), n));
    }
    EXPECT_EQ(step[0], 3000);
    D2R_EXPECT_CLOSE(x, f.minimiser(), 0.0, 2e-3);
  }
  {
    std::vector<double> x(n, 0.0), g(n), vel(n, 0.0);
    for (int k = 0; k < 500; ++k) {
      f.gradient(x, g);
      d2r::clip_global_norm<double>(ctx, 10.0, d2r::vector_view(g.data(), n), {});
      d2r::sgd_step<double>(ctx, 0.05, 0.9, d2r::vector_view(vel.data(), n), d2r::vector_view(x.data(), n),
                            d2r::vector_view<const double>(g.data(), n));
    }
    D2R_EXPECT_CLOSE(x, f.minimiser(), 0.0, 1e-8);
  }
}

}  // namespace
