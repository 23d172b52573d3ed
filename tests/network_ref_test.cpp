// The MLP trunk on the cpu backend: forward against an independent dense computation, backward /
// forward_tangent / backward_tangent against central finite differences (double), the backend
// (OpenBLAS GEMMs) against the reference loops in float and double on strided views; each with and
// without LayerNorm, plus LayerNorm's forward against a hand computation and the explicit Hessian
// of a scalar loss against second differences. Layout, init and bad input: network_layout_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "host/reference/network.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::Activation;
using d2r::Mlp;
using d2r::MlpSpec;
using d2r::test::expect_error;
using d2r::test::GuardedMatrix;
using d2r::test::TestRng;
using Vec = std::vector<double>;

// ------------------------------------------------------------------ helpers on the cpu backend

struct Runner {
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  const Mlp& net;
  std::int64_t B;

  Vec forward(const Vec& p, const Vec& x, Vec* cache_out = nullptr) {
    GuardedMatrix<double> cache(ctx, 1, net.cache_elements(B)), out(ctx, B, net.outputs()), xm(ctx, B, net.inputs());
    xm.fill(x);
    net.forward<double>(ctx, d2r::vector_view(p.data(), static_cast<std::int64_t>(p.size())), xm.cview(),
                        cache.vector(), out.view());
    if (cache_out != nullptr) *cache_out = cache.values_checked();
    return out.values_checked();
  }
  /// (d_params, d_x) of Σ d_out ⊙ out.
  std::pair<Vec, Vec> backward(const Vec& p, const Vec& x, const Vec& d_out) {
    Vec cache;
    forward(p, x, &cache);
    GuardedMatrix<double> xm(ctx, B, net.inputs()), dout(ctx, B, net.outputs()), dp(ctx, 1, net.parameter_count()),
        dx(ctx, B, net.inputs());
    xm.fill(x);
    dout.fill(d_out);
    net.backward<double>(ctx, d2r::vector_view(p.data(), net.parameter_count()), xm.cview(),
                         d2r::vector_view(cache.data(), net.cache_elements(B)), dout.cview(), dp.vector(), dx.view());
    return {dp.values_checked(), dx.values_checked()};
  }
  Vec forward_tangent(const Vec& p, const Vec& v, const Vec& x, Vec* tangent_cache_out = nullptr) {
    Vec cache;
    forward(p, x, &cache);
    GuardedMatrix<double> xm(ctx, B, net.inputs()), tc(ctx, 1, net.cache_elements(B)), out(ctx, B, net.outputs());
    xm.fill(x);
    net.forward_tangent<double>(ctx, d2r::vector_view(p.data(), net.parameter_count()),
                                d2r::vector_view(v.data(), net.parameter_count()), xm.cview(),
                                d2r::vector_view(cache.data(), net.cache_elements(B)), tc.vector(), out.view());
    if (tangent_cache_out != nullptr) *tangent_cache_out = tc.values_checked();
    return out.values_checked();
  }
  Vec backward_tangent(const Vec& p, const Vec& v, const Vec& x, const Vec& d_out, const Vec& d_out_t) {
    Vec cache, tcache;
    forward(p, x, &cache);
    forward_tangent(p, v, x, &tcache);
    GuardedMatrix<double> xm(ctx, B, net.inputs()), dout(ctx, B, net.outputs()), doutt(ctx, B, net.outputs()),
        dpt(ctx, 1, net.parameter_count());
    xm.fill(x);
    dout.fill(d_out);
    doutt.fill(d_out_t);
    net.backward_tangent<double>(ctx, d2r::vector_view(p.data(), net.parameter_count()),
                                 d2r::vector_view(v.data(), net.parameter_count()), xm.cview(),
                                 d2r::vector_view(cache.data(), net.cache_elements(B)),
                                 d2r::vector_view(tcache.data(), net.cache_elements(B)), dout.cview(), doutt.cview(),
                                 dpt.vector());
    return dpt.values_checked();
  }
};

Vec axpy(const Vec& a, double s, const Vec& b) {
  Vec r(a);
  for (std::size_t i = 0; i < r.size(); ++i) r[i] += s * b[i];
  return r;
}
double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
double max_abs_of(const Vec& v) {
  double m = 0;
  for (double a : v) m = std::max(m, std::abs(a));
  return m;
}

/// Independent dense forward pass written from the documented layout (no d2r code): per layer W,
/// b, and with layer_norm (hidden layers) γ, β; LayerNorm with the biased variance and ε = 1e-5.
Vec dense_forward(const MlpSpec& spec, const Vec& p, const Vec& x, std::int64_t B) {
  std::vector<std::int64_t> widths{spec.inputs};
  for (auto h : spec.hidden) widths.push_back(h);
  widths.push_back(spec.outputs);
  Vec out;
  for (std::int64_t r = 0; r < B; ++r) {
    Vec a(x.begin() + r * spec.inputs, x.begin() + (r + 1) * spec.inputs);
    std::size_t off = 0;
    for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
      const auto in = static_cast<std::size_t>(widths[l]), o = static_cast<std::size_t>(widths[l + 1]);
      Vec z(o);
      const bool last = l + 2 == widths.size();
      for (std::size_t j = 0; j < o; ++j) {
        double s = p[off + o * in + j];  // bias after the weight
        for (std::size_t i = 0; i < in; ++i) s += p[off + j * in + i] * a[i];
        z[j] = s;
      }
      if (!last && spec.layer_norm) {  // γ after the bias, β after γ
        double mean = 0, var = 0;
        for (double v : z) mean += v / static_cast<double>(o);
        for (double v : z) var += (v - mean) * (v - mean) / static_cast<double>(o);
        for (std::size_t j = 0; j < o; ++j)
          z[j] = p[off + o * in + o + j] * (z[j] - mean) / std::sqrt(var + 1e-5) + p[off + o * in + 2 * o + j];
      }
      if (!last)
        for (double& v : z) v = spec.activation == Activation::relu ? std::max(v, 0.0) : std::tanh(v);
      off += o * (in + 1) + (!last && spec.layer_norm ? 2 * o : 0);
      a = z;
    }
    out.insert(out.end(), a.begin(), a.end());
  }
  return out;
}

struct Case {
  std::int64_t inputs;
  std::vector<std::int64_t> hidden;
  std::int64_t outputs;
  Activation act;
  bool layer_norm = false;
  MlpSpec spec() const { return {inputs, hidden, outputs, act, layer_norm}; }
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.inputs;
  for (auto h : c.hidden) *os << "-" << h;
  *os << "-" << c.outputs << " " << d2r::to_string(c.act) << (c.layer_norm ? " layernorm" : "");
}
std::string name_of(const ::testing::TestParamInfo<Case>& info) {
  std::string s = "in" + std::to_string(info.param.inputs);
  for (auto h : info.param.hidden) s += "_h" + std::to_string(h);
  return s + "_out" + std::to_string(info.param.outputs) + "_" + d2r::to_string(info.param.act) +
         (info.param.layer_norm ? "_ln" : "");
}

class NetworkReference : public ::testing::TestWithParam<Case> {
 protected:
  static constexpr std::int64_t B = 5;
  MlpSpec spec() const { return GetParam().spec(); }
};

/// Parameters: the documented init, then perturbed so that biases are not tiny.
Vec make_params(const Mlp& net, std::uint64_t seed) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  Vec p(static_cast<std::size_t>(net.parameter_count()));
  net.init<double>(ctx, d2r::vector_view(p.data(), net.parameter_count()), seed);
  TestRng rng(seed);
  for (auto& v : p) v += rng.uniform(-0.3, 0.3);
  return p;
}

TEST_P(NetworkReference, ForwardMatchesDenseComputation) {
  const Mlp net(spec());
  Runner run{.net = net, .B = B};
  TestRng rng(11);
  const Vec p = make_params(net, 3), x = rng.vector<double>(B * net.inputs(), -1.5, 1.5);
  Vec cache;
  const Vec out = run.forward(p, x, &cache);
  D2R_EXPECT_CLOSE(out, dense_forward(spec(), p, x, B), 1e-13, 1e-13);
  // The cache starts with the hidden activations (then, with layer_norm, x̂ and s).
  ASSERT_EQ(static_cast<std::int64_t>(cache.size()), net.cache_elements(B));
  std::int64_t hidden_sum = 0;
  for (auto h : spec().hidden) hidden_sum += h;
  if (!spec().hidden.empty() && spec().activation == Activation::relu) {
    for (std::int64_t i = 0; i < B * hidden_sum; ++i) EXPECT_GE(cache[static_cast<std::size_t>(i)], 0.0);
  }
  if (spec().layer_norm) {
    ASSERT_EQ(net.cache_elements(B), B * (2 * hidden_sum + static_cast<std::int64_t>(spec().hidden.size())));
    // Each row of x̂_l has mean 0 and mean square var/(var + ε) <= 1; every s_l is positive.
    std::int64_t offset = B * hidden_sum;
    for (auto h : spec().hidden) {
      for (std::int64_t r = 0; r < B; ++r) {
        double m = 0, sq = 0;
        for (std::int64_t i = 0; i < h; ++i) {
          const double v = cache[static_cast<std::size_t>(offset + r * h + i)];
          m += v / static_cast<double>(h);
          sq += v * v / static_cast<double>(h);
        }
        EXPECT_NEAR(m, 0.0, 1e-12);
        EXPECT_LE(sq, 1.0 + 1e-12);
      }
      offset += B * h;
    }
    for (std::int64_t i = offset; i < net.cache_elements(B); ++i) EXPECT_GT(cache[static_cast<std::size_t>(i)], 0.0);
  }
  // float on the cpu backend agrees with double.
  std::vector<float> pf(p.begin(), p.end()), xf(x.begin(), x.end());
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  std::vector<float> cf(static_cast<std::size_t>(net.cache_elements(B)) + 1);
  std::vector<float> of(static_cast<std::size_t>(B * net.outputs()));
  net.forward<float>(ctx, d2r::vector_view(pf.data(), net.parameter_count()),
                     d2r::matrix_view(xf.data(), B, net.inputs()), d2r::vector_view(cf.data(), net.cache_elements(B)),
                     d2r::matrix_view(of.data(), B, net.outputs()));
  D2R_EXPECT_CLOSE(of, out, 1e-4, 1e-5);
}

TEST_P(NetworkReference, BackwardMatchesFiniteDifferences) {
  const Mlp net(spec());
  Runner run{.net = net, .B = B};
  TestRng rng(12);
  Vec p = make_params(net, 4), x = rng.vector<double>(B * net.inputs(), -1.5, 1.5);
  const Vec c = rng.vector<double>(B * net.outputs(), -1, 1);
  const auto [dp, dx] = run.backward(p, x, c);
  const double h = 1e-6;
  Vec fd_p(p.size()), fd_x(x.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double saved = p[i];
    p[i] = saved + h;
    const double fp = dot(c, run.forward(p, x));
    p[i] = saved - h;
    const double fm = dot(c, run.forward(p, x));
    p[i] = saved;
    fd_p[i] = (fp - fm) / (2 * h);
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double fp = dot(c, run.forward(p, x));
    x[i] = saved - h;
    const double fm = dot(c, run.forward(p, x));
    x[i] = saved;
    fd_x[i] = (fp - fm) / (2 * h);
  }
  D2R_EXPECT_CLOSE(dp, fd_p, 1e-6, 1e-7);
  D2R_EXPECT_CLOSE(dx, fd_x, 1e-6, 1e-7);
}

TEST_P(NetworkReference, ForwardTangentMatchesFiniteDifferences) {
  const Mlp net(spec());
  Runner run{.net = net, .B = B};
  TestRng rng(13);
  const Vec p = make_params(net, 5), x = rng.vector<double>(B * net.inputs(), -1.5, 1.5);
  const Vec v = rng.vector<double>(p.size(), -1, 1);
  const Vec jv = run.forward_tangent(p, v, x);
  const double h = 1e-6;
  const Vec plus = run.forward(axpy(p, h, v), x), minus = run.forward(axpy(p, -h, v), x);
  Vec fd(plus.size());
  for (std::size_t i = 0; i < fd.size(); ++i) fd[i] = (plus[i] - minus[i]) / (2 * h);
  D2R_EXPECT_CLOSE(jv, fd, 1e-6, 1e-7);
}

TEST_P(NetworkReference, BackwardTangentMatchesFiniteDifferences) {
  const Mlp net(spec());
  Runner run{.net = net, .B = B};
  TestRng rng(14);
  const Vec p = make_params(net, 6), x = rng.vector<double>(B * net.inputs(), -1.5, 1.5);
  const Vec v = rng.vector<double>(p.size(), -1, 1);
  const Vec d_out = rng.vector<double>(B * net.outputs(), -1, 1);
  const Vec d_out_t = rng.vector<double>(B * net.outputs(), -1, 1);
  const Vec zero(d_out.size(), 0.0);
  const double h = 1e-6;
  for (const Vec* dt : {&zero, &d_out_t}) {
    SCOPED_TRACE(dt == &zero ? "d_out fixed" : "d_out moving along d_out_tangent");
    const Vec rg = run.backward_tangent(p, v, x, d_out, *dt);
    const Vec plus = run.backward(axpy(p, h, v), x, axpy(d_out, h, *dt)).first;
    const Vec minus = run.backward(axpy(p, -h, v), x, axpy(d_out, -h, *dt)).first;
    Vec fd(plus.size());
    for (std::size_t i = 0; i < fd.size(); ++i) fd[i] = (plus[i] - minus[i]) / (2 * h);
    D2R_EXPECT_CLOSE(rg, fd, 1e-6, 1e-7);
  }
}

TEST_P(NetworkReference, HessianVectorProductOfAQuadraticIsSymmetric) {
  // f = ½‖out‖²: H v through forward_tangent (d_out_tangent = J v) and backward_tangent; then
  // uᵀ(Hv) = vᵀ(Hu) for any u, v.
  const Mlp net(spec());
  Runner run{.net = net, .B = B};
  TestRng rng(15);
  const Vec p = make_params(net, 7), x = rng.vector<double>(B * net.inputs(), -1.5, 1.5);
  const Vec u = rng.vector<double>(p.size(), -1, 1), v = rng.vector<double>(p.size(), -1, 1);
  const Vec out = run.forward(p, x);
  const Vec hv = run.backward_tangent(p, v, x, out, run.forward_tangent(p, v, x));
  const Vec hu = run.backward_tangent(p, u, x, out, run.forward_tangent(p, u, x));
  EXPECT_NEAR(dot(u, hv), dot(v, hu), 1e-10 * (1 + std::abs(dot(u, hv))));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, NetworkReference,
    ::testing::Values(Case{3, {}, 2, Activation::relu}, Case{3, {}, 1, Activation::tanh},
                      Case{4, {5}, 3, Activation::relu}, Case{4, {5}, 3, Activation::tanh},
                      Case{3, {6, 4, 5}, 2, Activation::relu}, Case{3, {6, 4, 5}, 2, Activation::tanh},
                      Case{1, {1}, 1, Activation::tanh},
                      // LayerNorm after every hidden affine map
                      Case{3, {}, 2, Activation::relu, true},  // a linear model: nothing to normalise
                      Case{4, {5}, 3, Activation::relu, true}, Case{4, {5}, 3, Activation::tanh, true},
                      Case{3, {6, 4, 5}, 2, Activation::relu, true}, Case{3, {6, 4, 5}, 2, Activation::tanh, true},
                      Case{2, {2}, 2, Activation::tanh, true},  // two features: x̂ = ±(nearly) 1
                      Case{1, {1}, 1, Activation::tanh, true}),  // one feature: x̂ = 0, n = β
    name_of);

// ------------------------------------------------------------------ LayerNorm by hand, and the explicit Hessian

TEST(NetworkLayerNorm, ForwardMatchesHandComputation) {
  // 1 input, 2 hidden (tanh, LayerNorm), 1 output; one row x = 1.
  //   z = W0 x + b0 = (1, −1) + (0.5, 0) = (1.5, −1);  μ = 0.25;  var = 1.25² = 1.5625;
  //   s = 1/√(1.5625 + 1e-5);  x̂ = (1.25 s, −1.25 s);  n = γ ⊙ x̂ + β with γ = (2, 1), β = (0, 0.5);
  //   out = 1·tanh(n0) − 3·tanh(n1) + 0.25.
  const Mlp net({.inputs = 1, .hidden = {2}, .outputs = 1, .activation = Activation::tanh, .layer_norm = true});
  ASSERT_EQ(net.parameter_count(), 2 + 2 + 2 + 2 + 2 + 1);
  //           W0      b0        γ0        β0        W1         b1
  const Vec p{1, -1, 0.5, 0, 2, 1, 0, 0.5, 1, -3, 0.25};
  Runner run{.net = net, .B = 1};
  Vec cache;
  const Vec out = run.forward(p, {1.0}, &cache);
  const double s = 1.0 / std::sqrt(1.5625 + 1e-5), x0 = 1.25 * s, x1 = -1.25 * s;
  const double a0 = std::tanh(2 * x0), a1 = std::tanh(x1 + 0.5);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_NEAR(out[0], a0 - 3 * a1 + 0.25, 1e-15);
  // Cache: a (2), x̂ (2), s (1).
  ASSERT_EQ(cache.size(), 5u);
  EXPECT_NEAR(cache[0], a0, 1e-15);
  EXPECT_NEAR(cache[1], a1, 1e-15);
  EXPECT_NEAR(cache[2], x0, 1e-15);
  EXPECT_NEAR(cache[3], x1, 1e-15);
  EXPECT_NEAR(cache[4], s, 1e-15);
  // float on the cpu backend.
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::vector<float> pf(p.begin(), p.end()), xf{1.0f};
  std::vector<float> cf(5), of(1);
  net.forward<float>(ctx, d2r::vector_view(pf.data(), 11), d2r::matrix_view(xf.data(), 1, 1),
                     d2r::vector_view(cf.data(), 5), d2r::matrix_view(of.data(), 1, 1));
  EXPECT_NEAR(of[0], out[0], 1e-6);
}

/// f(p) = Σ_rows (½‖out‖² + c·out): ∂f/∂out = out + c, and its tangent along v is J v, so
/// backward_tangent(d_out = out + c, d_out_tangent = J v) is the exact H v.
struct ScalarLoss {
  Runner& run;
  Vec x, c;
  double value(const Vec& p) {
    const Vec out = run.forward(p, x);
    double f = 0;
    for (std::size_t i = 0; i < out.size(); ++i) f += 0.5 * out[i] * out[i] + c[i] * out[i];
    return f;
  }
  Vec hvp(const Vec& p, const Vec& v) {
    Vec d_out = run.forward(p, x);
    for (std::size_t i = 0; i < d_out.size(); ++i) d_out[i] += c[i];
    return run.backward_tangent(p, v, x, d_out, run.forward_tangent(p, v, x));
  }
};

class NetworkLayerNormHessian : public ::testing::TestWithParam<Case> {};

TEST_P(NetworkLayerNormHessian, ExplicitHessianMatchesSecondDifferencesAndIsSymmetric) {
  const Mlp net(GetParam().spec());
  constexpr std::int64_t B = 3;
  Runner run{.net = net, .B = B};
  TestRng rng(21);
  const Vec p = make_params(net, 8);
  ScalarLoss loss{.run = run,
                  .x = rng.vector<double>(B * net.inputs(), -1.5, 1.5),
                  .c = rng.vector<double>(B * net.outputs(), -1, 1)};
  const std::size_t P = p.size();
  // H column by column through the HVP (forward-over-reverse).
  std::vector<Vec> H(P);
  for (std::size_t j = 0; j < P; ++j) {
    Vec e(P, 0.0);
    e[j] = 1;
    H[j] = loss.hvp(p, e);  // column j (= row j when symmetric)
  }
  double scale = 0;
  for (const Vec& col : H) scale = std::max(scale, max_abs_of(col));
  // Symmetric to rounding.
  for (std::size_t i = 0; i < P; ++i)
    for (std::size_t j = 0; j < i; ++j)
      EXPECT_NEAR(H[j][i], H[i][j], 1e-11 * (1 + scale)) << "H(" << i << ", " << j << ")";
  // Second differences of f: (f(p + h eᵢ + h eⱼ) − f(p + h eᵢ − h eⱼ) − f(p − h eᵢ + h eⱼ) + f(p − h eᵢ − h eⱼ)) / 4h².
  const double h = 1e-4;
  for (std::size_t i = 0; i < P; ++i)
    for (std::size_t j = 0; j <= i; ++j) {
      auto at = [&](double si, double sj) {
        Vec q(p);
        q[i] += si * h;
        q[j] += sj * h;
        return loss.value(q);
      };
      const double fd = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / (4 * h * h);
      EXPECT_NEAR(H[j][i], fd, 2e-5 * (1 + scale)) << "H(" << i << ", " << j << ")";
    }
}

INSTANTIATE_TEST_SUITE_P(Tiny, NetworkLayerNormHessian,
                         ::testing::Values(Case{2, {3}, 2, Activation::tanh, true},
                                           Case{2, {3, 2}, 1, Activation::tanh, true},
                                           Case{2, {4}, 2, Activation::relu, true}),
                         name_of);

// ------------------------------------------------------------------ the cpu backend vs the reference loops
//
// The cpu backend runs its matrix products through OpenBLAS (host/src/cpu_blas.cpp); the
// reference loops (host/reference/network.hpp) stay the oracle. Each primitive gets the same
// inputs on both sides (the float backend's inputs are handed to the double reference exactly,
// including the caches the backend produced, so a ReLU kink can never flip between the two) on
// strided views (GuardedMatrix: row_stride = cols + 3, sentinel padding checked), at sizes where
// OpenBLAS runs its blocked (and, with several cores, threaded) kernels.

struct BlasCase {
  Case shape;
  std::int64_t batch;
};
void PrintTo(const BlasCase& c, std::ostream* os) {
  PrintTo(c.shape, os);
  *os << " B=" << c.batch;
}
std::string blas_name_of(const ::testing::TestParamInfo<BlasCase>& info) {
  return name_of({info.param.shape, info.index}) + "_B" + std::to_string(info.param.batch);
}

double max_abs(const Vec& v) {
  double m = 0;
  for (double a : v) m = std::max(m, std::abs(a));
  return m;
}
template <class T>
std::vector<T> to(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
Vec to_double(const std::vector<T>& v) {
  return Vec(v.begin(), v.end());
}
/// |actual − expected| <= rtol (|expected| + max |expected|): relative to each entry and to the
/// scale of the whole result (an entry near 0 from cancellation keeps the error of its terms).
#define D2R_EXPECT_MATCHES_REFERENCE(actual, expected, rtol) \
  D2R_EXPECT_CLOSE(actual, expected, rtol, (rtol) * std::max(max_abs(expected), 1e-300))

/// Everything one comparison needs, in T (backend) and as the exact double values (reference).
template <class T>
struct BlasComparison {
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  const Mlp net;
  const std::int64_t B, P, CE;
  std::vector<T> p, v;
  GuardedMatrix<T> x, d_out, d_out_t;
  Vec pr, vr, xr, dr, dtr;  // the same values in double

  BlasComparison(const Case& c, std::int64_t batch)
      : net(c.spec()), B(batch), P(net.parameter_count()), CE(net.cache_elements(B)),
        x(ctx, B, net.inputs()), d_out(ctx, B, net.outputs()), d_out_t(ctx, B, net.outputs()) {
    TestRng rng(31);
    p = to<T>(make_params(net, 9));
    v = to<T>(rng.vector<double>(static_cast<std::size_t>(P), -1, 1));
    const std::vector<T> xv = to<T>(rng.vector<double>(static_cast<std::size_t>(B * net.inputs()), -1.5, 1.5));
    const std::vector<T> dv = to<T>(rng.vector<double>(static_cast<std::size_t>(B * net.outputs()), -1, 1));
    const std::vector<T> dtv = to<T>(rng.vector<double>(static_cast<std::size_t>(B * net.outputs()), -1, 1));
    x.fill(xv);
    d_out.fill(dv);
    d_out_t.fill(dtv);
    pr = to_double(p);
    vr = to_double(v);
    xr = to_double(xv);
    dr = to_double(dv);
    dtr = to_double(dtv);
  }
  d2r::VectorView<const T> params() const { return d2r::vector_view(p.data(), P); }
  d2r::VectorView<const T> dir() const { return d2r::vector_view(v.data(), P); }
  static d2r::VectorView<const double> ref_vector(const Vec& a) {
    return d2r::vector_view(a.data(), static_cast<std::int64_t>(a.size()));
  }
  d2r::MatrixView<const double> ref_matrix(const Vec& a, std::int64_t cols) const {
    return d2r::matrix_view(a.data(), B, cols);
  }

  /// Runs the four primitives on the backend and on the reference; `rtol` for every result.
  void run(double rtol) {
    namespace ref = d2r::reference::network;
    const std::int64_t in = net.inputs(), out_w = net.outputs();

    // forward: out and the activations cache.
    GuardedMatrix<T> cache(ctx, 1, CE), out(ctx, B, out_w);
    net.forward<T>(ctx, params(), x.cview(), cache.vector(), out.view());
    const std::vector<T> cache_t = cache.values_checked();
    Vec ref_cache(static_cast<std::size_t>(CE)), ref_out(static_cast<std::size_t>(B * out_w));
    ref::mlp_forward<double>(net, ref_vector(pr), ref_matrix(xr, in), ref_cache.data(),
                             d2r::matrix_view(ref_out.data(), B, out_w));
    {
      SCOPED_TRACE("forward");
      D2R_EXPECT_MATCHES_REFERENCE(out.values_checked(), ref_out, rtol);
      D2R_EXPECT_MATCHES_REFERENCE(cache_t, ref_cache, rtol);
    }
    // From here on both sides read the backend's cache.
    const Vec cache_r = to_double(cache_t);
    const auto cache_view = d2r::vector_view(cache_t.data(), CE);

    // backward: d_params and d_x.
    GuardedMatrix<T> dp(ctx, 1, P), dx(ctx, B, in);
    net.backward<T>(ctx, params(), x.cview(), cache_view, d_out.cview(), dp.vector(), dx.view());
    Vec ref_dp(static_cast<std::size_t>(P)), ref_dx(static_cast<std::size_t>(B * in));
    Vec scratch(static_cast<std::size_t>(ref::mlp_scratch_elements(net, B, true)));
    ref::mlp_backward<double>(net, ref_vector(pr), ref_matrix(xr, in), cache_r.data(), ref_matrix(dr, out_w),
                              ref_dp.data(), d2r::matrix_view(ref_dx.data(), B, in), scratch.data());
    {
      SCOPED_TRACE("backward");
      D2R_EXPECT_MATCHES_REFERENCE(dp.values_checked(), ref_dp, rtol);
      D2R_EXPECT_MATCHES_REFERENCE(dx.values_checked(), ref_dx, rtol);
    }
    // Deterministic run to run (the bias column sums in particular), and d_x = {} writes no d_x.
    GuardedMatrix<T> dp2(ctx, 1, P);
    net.backward<T>(ctx, params(), x.cview(), cache_view, d_out.cview(), dp2.vector(), {});
    EXPECT_TRUE(dp2.values_checked() == dp.values_checked()) << "backward is not bitwise reproducible";

    // forward_tangent: out_tangent and the tangent cache.
    GuardedMatrix<T> tcache(ctx, 1, CE), out_t(ctx, B, out_w);
    net.forward_tangent<T>(ctx, params(), dir(), x.cview(), cache_view, tcache.vector(), out_t.view());
    const std::vector<T> tcache_t = tcache.values_checked();
    Vec ref_tcache(static_cast<std::size_t>(CE)), ref_out_t(static_cast<std::size_t>(B * out_w));
    ref::mlp_forward_tangent<double>(net, ref_vector(pr), ref_vector(vr), ref_matrix(xr, in), cache_r.data(),
                                     ref_tcache.data(), d2r::matrix_view(ref_out_t.data(), B, out_w));
    {
      SCOPED_TRACE("forward_tangent");
      D2R_EXPECT_MATCHES_REFERENCE(out_t.values_checked(), ref_out_t, rtol);
      D2R_EXPECT_MATCHES_REFERENCE(tcache_t, ref_tcache, rtol);
    }
    const Vec tcache_r = to_double(tcache_t);

    // backward_tangent, with a moving upstream gradient.
    GuardedMatrix<T> dpt(ctx, 1, P);
    net.backward_tangent<T>(ctx, params(), dir(), x.cview(), cache_view, d2r::vector_view(tcache_t.data(), CE),
                            d_out.cview(), d_out_t.cview(), dpt.vector());
    Vec ref_dpt(static_cast<std::size_t>(P));
    ref::mlp_backward_tangent<double>(net, ref_vector(pr), ref_vector(vr), ref_matrix(xr, in), cache_r.data(),
                                      tcache_r.data(), ref_matrix(dr, out_w), ref_matrix(dtr, out_w), ref_dpt.data(),
                                      scratch.data());
    {
      SCOPED_TRACE("backward_tangent");
      D2R_EXPECT_MATCHES_REFERENCE(dpt.values_checked(), ref_dpt, rtol);
    }
    GuardedMatrix<T> dpt2(ctx, 1, P);
    net.backward_tangent<T>(ctx, params(), dir(), x.cview(), cache_view, d2r::vector_view(tcache_t.data(), CE),
                            d_out.cview(), d_out_t.cview(), dpt2.vector());
    EXPECT_TRUE(dpt2.values_checked() == dpt.values_checked()) << "backward_tangent is not bitwise reproducible";
  }
};

class CpuBackendVsReference : public ::testing::TestWithParam<BlasCase> {};

TEST_P(CpuBackendVsReference, Double) {
  BlasComparison<double> c(GetParam().shape, GetParam().batch);
  c.run(1e-12);
}

TEST_P(CpuBackendVsReference, Float) {
  BlasComparison<float> c(GetParam().shape, GetParam().batch);
  c.run(1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuBackendVsReference,
    ::testing::Values(BlasCase{{5, {}, 3, Activation::relu}, 300},           // linear model
                      BlasCase{{70, {}, 70, Activation::tanh}, 300},         // linear, wide
                      BlasCase{{70, {70, 70}, 70, Activation::relu}, 300},   // blocked kernels
                      BlasCase{{70, {70, 70}, 70, Activation::tanh}, 300},   //
                      BlasCase{{23, {64, 64}, 34, Activation::tanh}, 257},   // the paper's MBRL trunk
                      BlasCase{{13, {70, 9, 33}, 5, Activation::relu}, 300},  // uneven widths, 3 hidden
                      BlasCase{{2, {64, 64}, 4, Activation::relu}, 1},       // a single row
                      BlasCase{{3, {4}, 2, Activation::tanh}, 2},
                      // LayerNorm
                      BlasCase{{70, {70, 70}, 70, Activation::relu, true}, 300},
                      BlasCase{{23, {64, 64}, 34, Activation::tanh, true}, 257},
                      BlasCase{{13, {70, 9, 33}, 5, Activation::tanh, true}, 300},
                      BlasCase{{2, {64, 64}, 4, Activation::relu, true}, 1},
                      BlasCase{{3, {4}, 2, Activation::tanh, true}, 2}),
    blas_name_of);

TEST(CpuBackendVsReferenceViews, SingleRowWithAnyStride) {
  // A view of one row may carry any row stride (0 here); BLAS must not be handed it.
  const Mlp net({.inputs = 3, .hidden = {5}, .outputs = 2, .activation = Activation::tanh});
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const Vec p = make_params(net, 10);
  const Vec x{0.3, -0.7, 1.1}, d_out{0.5, -2.0};
  Vec cache(5), out(2), dp(static_cast<std::size_t>(net.parameter_count())), dx(3);
  const auto pv = d2r::vector_view(p.data(), net.parameter_count());
  net.forward<double>(ctx, pv, d2r::matrix_view(x.data(), 1, 3, 0), d2r::vector_view(cache.data(), 5),
                      d2r::matrix_view(out.data(), 1, 2, 0));
  net.backward<double>(ctx, pv, d2r::matrix_view(x.data(), 1, 3, 0), d2r::vector_view<const double>(cache.data(), 5),
                       d2r::matrix_view(d_out.data(), 1, 2, 0), d2r::vector_view(dp.data(), net.parameter_count()),
                       d2r::matrix_view(dx.data(), 1, 3, 0));
  Vec ref_cache(5), ref_out(2), ref_dp(dp.size()), ref_dx(3), scratch(2 * 5);
  d2r::reference::network::mlp_forward<double>(net, pv, d2r::matrix_view(x.data(), 1, 3), ref_cache.data(),
                                               d2r::matrix_view(ref_out.data(), 1, 2));
  d2r::reference::network::mlp_backward<double>(net, pv, d2r::matrix_view(x.data(), 1, 3), ref_cache.data(),
                                                d2r::matrix_view(d_out.data(), 1, 2), ref_dp.data(),
                                                d2r::matrix_view(ref_dx.data(), 1, 3), scratch.data());
  D2R_EXPECT_MATCHES_REFERENCE(out, ref_out, 1e-14);
  D2R_EXPECT_MATCHES_REFERENCE(cache, ref_cache, 1e-14);
  D2R_EXPECT_MATCHES_REFERENCE(dp, ref_dp, 1e-14);
  D2R_EXPECT_MATCHES_REFERENCE(dx, ref_dx, 1e-14);
}

}  // namespace
