// The MLP trunk's parameter layout (offsets and counts, with and without LayerNorm), its Philox
// init (reproducible, bounded, the same in float and double; LayerNorm at the identity affine), and
// bad input (the spec, every argument of forward / backward / tangents / init, outputs unchanged).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::Activation;
using d2r::Mlp;
using d2r::MlpSpec;
using d2r::test::expect_error;
using d2r::test::GuardedMatrix;
using Vec = std::vector<double>;

// ------------------------------------------------------------------ layout

TEST(NetworkLayout, OffsetsAndCounts) {
  const Mlp net({.inputs = 3, .hidden = {4, 2}, .outputs = 5, .activation = Activation::tanh});
  EXPECT_EQ(net.layer_count(), 3);
  EXPECT_EQ(net.parameter_count(), 4 * 4 + 2 * 5 + 5 * 3);
  const auto l0 = net.layer(0), l1 = net.layer(1), l2 = net.layer(2);
  EXPECT_EQ(l0.weight_offset, 0);
  EXPECT_EQ(l0.bias_offset, 12);
  EXPECT_EQ(l1.weight_offset, 16);
  EXPECT_EQ(l1.bias_offset, 24);
  EXPECT_EQ(l2.weight_offset, 26);
  EXPECT_EQ(l2.bias_offset, 36);
  EXPECT_TRUE(l0.activated);
  EXPECT_FALSE(l2.activated);
  EXPECT_EQ(net.cache_elements(7), 7 * 6);
  EXPECT_EQ(net.max_hidden(), 4);
  EXPECT_EQ(net.describe(), "3-4-2-5 tanh");
  const Mlp linear({.inputs = 3, .outputs = 2});
  EXPECT_EQ(linear.parameter_count(), 8);
  EXPECT_EQ(linear.cache_elements(100), 0);
  EXPECT_FALSE(l0.normalized);
  EXPECT_EQ(l0.gamma_offset, -1);
  EXPECT_EQ(l0.beta_offset, -1);
}

TEST(NetworkLayout, LayerNormOffsetsAndCounts) {
  // Per hidden layer W, b, γ, β; the output layer W, b.
  const Mlp net({.inputs = 3, .hidden = {4, 2}, .outputs = 5, .activation = Activation::tanh, .layer_norm = true});
  EXPECT_EQ(net.layer_count(), 3);
  EXPECT_EQ(net.parameter_count(), 4 * (3 + 3) + 2 * (4 + 3) + 5 * (2 + 1));
  const auto l0 = net.layer(0), l1 = net.layer(1), l2 = net.layer(2);
  EXPECT_EQ(l0.weight_offset, 0);
  EXPECT_EQ(l0.bias_offset, 12);
  EXPECT_EQ(l0.gamma_offset, 16);
  EXPECT_EQ(l0.beta_offset, 20);
  EXPECT_EQ(l1.weight_offset, 24);
  EXPECT_EQ(l1.bias_offset, 32);
  EXPECT_EQ(l1.gamma_offset, 34);
  EXPECT_EQ(l1.beta_offset, 36);
  EXPECT_EQ(l2.weight_offset, 38);
  EXPECT_EQ(l2.bias_offset, 48);
  EXPECT_EQ(l2.gamma_offset, -1);
  EXPECT_EQ(l2.beta_offset, -1);
  EXPECT_TRUE(l0.normalized);
  EXPECT_TRUE(l1.normalized);
  EXPECT_FALSE(l2.normalized);
  // Cache per row: a (4 + 2), x̂ (4 + 2), s (one per hidden layer).
  EXPECT_EQ(net.cache_elements(7), 7 * (6 + 6 + 2));
  EXPECT_EQ(net.max_hidden(), 4);
  EXPECT_EQ(net.describe(), "3-4-2-5 tanh layernorm");
  // A linear model has no hidden layer to normalise.
  const Mlp linear({.inputs = 3, .outputs = 2, .layer_norm = true});
  EXPECT_EQ(linear.parameter_count(), 8);
  EXPECT_EQ(linear.cache_elements(100), 0);
  EXPECT_EQ(linear.describe(), "3-2");
}

// ------------------------------------------------------------------ init

TEST(NetworkInit, ReproducibleBoundedAndSameInFloatAndDouble) {
  const Mlp net({.inputs = 256, .hidden = {256, 17}, .outputs = 3});
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 99});
  const auto P = static_cast<std::size_t>(net.parameter_count());
  Vec a(P), b(P), c(P);
  std::vector<float> f(P);
  net.init<double>(ctx, d2r::vector_view(a.data(), net.parameter_count()), 42);
  ctx.set_seed(1234);  // the context's seed plays no part
  net.init<double>(ctx, d2r::vector_view(b.data(), net.parameter_count()), 42);
  net.init<double>(ctx, d2r::vector_view(c.data(), net.parameter_count()), 43);
  net.init<float>(ctx, d2r::vector_view(f.data(), net.parameter_count()), 42);
  EXPECT_EQ(a, b);
  std::size_t same = 0;
  for (std::size_t i = 0; i < P; ++i) same += a[i] == c[i];
  EXPECT_LT(same, P / 1000);
  D2R_EXPECT_CLOSE(f, a, 2e-7, 0.0);

  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const auto L = net.layer(l);
    const double bound = 1.0 / std::sqrt(static_cast<double>(L.inputs));
    const std::pair<std::int64_t, std::int64_t> parts[] = {{L.weight_offset, L.outputs * L.inputs},
                                                           {L.bias_offset, L.outputs}};
    for (const auto& [first, count] : parts) {
      double lo = 1, hi = -1, sum = 0, sq = 0;
      for (std::int64_t i = first; i < first + count; ++i) {
        const double w = a[static_cast<std::size_t>(i)];
        EXPECT_LT(std::abs(w), bound);
        lo = std::min(lo, w / bound);
        hi = std::max(hi, w / bound);
        sum += w / bound;
        sq += (w / bound) * (w / bound);
      }
      if (count >= 4096) {  // U(-1, 1) after scaling: mean 0, variance 1/3, extremes near ±1
        const double n = static_cast<double>(count), mean = sum / n, var = sq / n - mean * mean;
        EXPECT_LT(std::abs(mean), 4.0 * std::sqrt(1.0 / 3.0 / n)) << "layer " << l;
        EXPECT_NEAR(var, 1.0 / 3.0, 0.02) << "layer " << l;
        EXPECT_LT(lo, -0.99);
        EXPECT_GT(hi, 0.99);
      }
    }
  }
}

TEST(NetworkInit, LayerNormStartsAtIdentityAffine) {
  // γ = 1 and β = 0 exactly, in float and double; W and b are the draws of the same network
  // without LayerNorm (the Philox keys do not depend on the layout).
  MlpSpec spec{.inputs = 5, .hidden = {7, 3}, .outputs = 2, .activation = Activation::tanh, .layer_norm = true};
  const Mlp net(spec);
  spec.layer_norm = false;
  const Mlp plain(spec);
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  Vec a(static_cast<std::size_t>(net.parameter_count()), -7.0), b(static_cast<std::size_t>(plain.parameter_count()));
  std::vector<float> f(a.size(), -7.0f);
  net.init<double>(ctx, d2r::vector_view(a.data(), net.parameter_count()), 5);
  net.init<float>(ctx, d2r::vector_view(f.data(), net.parameter_count()), 5);
  plain.init<double>(ctx, d2r::vector_view(b.data(), plain.parameter_count()), 5);
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const auto L = net.layer(l), M = plain.layer(l);
    for (std::int64_t i = 0; i < L.outputs * (L.inputs + 1); ++i)
      EXPECT_EQ(a[static_cast<std::size_t>(L.weight_offset + i)], b[static_cast<std::size_t>(M.weight_offset + i)]);
    if (!L.normalized) continue;
    for (std::int64_t i = 0; i < L.outputs; ++i) {
      EXPECT_EQ(a[static_cast<std::size_t>(L.gamma_offset + i)], 1.0);
      EXPECT_EQ(a[static_cast<std::size_t>(L.beta_offset + i)], 0.0);
      EXPECT_EQ(f[static_cast<std::size_t>(L.gamma_offset + i)], 1.0f);
      EXPECT_EQ(f[static_cast<std::size_t>(L.beta_offset + i)], 0.0f);
      EXPECT_FALSE(std::signbit(f[static_cast<std::size_t>(L.beta_offset + i)]));
    }
  }
  for (double v : a) EXPECT_NE(v, -7.0);  // every entry written
}

// ------------------------------------------------------------------ bad input

TEST(NetworkSpecErrors, Rejected) {
  using d2r::ErrorKind;
  expect_error([] { Mlp({.inputs = 0, .outputs = 2}); }, "spec.inputs", "input width >= 1");
  expect_error([] { Mlp({.inputs = 3, .outputs = 0}); }, "spec.outputs", "output width >= 1");
  expect_error([] { Mlp({.inputs = 3, .hidden = {4, 0, 2}, .outputs = 2}); }, "spec.hidden",
               "hidden layer 1 has width 0");
  expect_error([] { Mlp({.inputs = 3, .hidden = {-4}, .outputs = 2}); }, "spec.hidden", "width -4");
  expect_error([] { Mlp({.inputs = 3, .outputs = 2, .activation = static_cast<Activation>(7)}); }, "spec.activation",
               "Activation::relu or Activation::tanh");
  EXPECT_NO_THROW(Mlp({.inputs = 3, .hidden = {4}, .outputs = 2, .layer_norm = true}));
  // γ and β count towards the parameter limit: with h = 2^31 − 1, 2-h-1 has 4h + 1 = 2^33 − 3
  // parameters, 2 h more with LayerNorm.
  constexpr std::int64_t kWide = (std::int64_t{1} << 31) - 1;
  EXPECT_EQ(Mlp({.inputs = 2, .hidden = {kWide}, .outputs = 1}).parameter_count(), (std::int64_t{1} << 33) - 3);
  expect_error([] { Mlp({.inputs = 2, .hidden = {kWide}, .outputs = 1, .layer_norm = true}); }, "spec",
               "more than 8589934592 parameters (layer 0");
  expect_error([] { Mlp({.inputs = std::int64_t{1} << 40, .outputs = 2}); }, "spec.inputs",
               "expected an input width <= 2147483647");
  expect_error([] { Mlp({.inputs = 3, .hidden = {std::int64_t{1} << 31}, .outputs = 2}); }, "spec.hidden",
               "expected <= 2147483647");
  expect_error([] { Mlp({.inputs = std::int64_t{1} << 20, .outputs = std::int64_t{1} << 14}); }, "spec",
               "more than 8589934592 parameters");
  const Mlp net({.inputs = 3, .hidden = {4}, .outputs = 2});
  expect_error([&] { (void)net.layer(2); }, "l", "[0, 2)");
  expect_error([&] { (void)net.layer(-1); }, "l", "[0, 2)");
}

class NetworkErrors : public ::testing::Test {
 protected:
  static constexpr std::int64_t B = 3;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  Mlp net{{.inputs = 3, .hidden = {4}, .outputs = 2, .activation = Activation::tanh}};
  std::vector<float> p = std::vector<float>(static_cast<std::size_t>(net.parameter_count()), 0.1f);
  std::vector<float> v = std::vector<float>(p.size(), 0.2f);
  std::vector<float> x = std::vector<float>(B * 3, 0.5f), d_out = std::vector<float>(B * 2, 1.0f);
  std::vector<float> cache_in = std::vector<float>(static_cast<std::size_t>(net.cache_elements(B)), 0.3f);
  GuardedMatrix<float> out{ctx, B, 2}, cache{ctx, 1, net.cache_elements(B)}, dp{ctx, 1, net.parameter_count()},
      dx{ctx, B, 3}, tcache{ctx, 1, net.cache_elements(B)};

  d2r::VectorView<const float> params() const { return d2r::vector_view(p.data(), net.parameter_count()); }
  d2r::VectorView<const float> dir() const { return d2r::vector_view(v.data(), net.parameter_count()); }
  d2r::MatrixView<const float> xv() const { return d2r::matrix_view(x.data(), B, 3); }
  d2r::MatrixView<const float> dov() const { return d2r::matrix_view(d_out.data(), B, 2); }
  d2r::VectorView<const float> cv() const { return d2r::vector_view(cache_in.data(), net.cache_elements(B)); }
  void expect_untouched() {
    EXPECT_TRUE(out.untouched());
    EXPECT_TRUE(cache.untouched());
    EXPECT_TRUE(dp.untouched());
    EXPECT_TRUE(dx.untouched());
    EXPECT_TRUE(tcache.untouched());
  }
};

TEST_F(NetworkErrors, Forward) {
  auto fwd = [&](d2r::VectorView<const float> pp, d2r::MatrixView<const float> xx, d2r::VectorView<float> c,
                 d2r::MatrixView<float> o) { net.forward<float>(ctx, pp, xx, c, o); };
  expect_error([&] { fwd({p.data(), net.parameter_count() - 1}, xv(), cache.vector(), out.view()); }, "params",
               "expected 26 entries (the parameters of the 3-4-2 tanh MLP), got 25");
  expect_error([&] { fwd(params(), d2r::matrix_view(x.data(), B, 2), cache.vector(), out.view()); }, "x",
               "expected 3 columns");
  expect_error([&] { fwd(params(), d2r::matrix_view(x.data(), 0, 3), cache.vector(), out.view()); }, "x", "B >= 1");
  expect_error([&] { fwd(params(), d2r::matrix_view(x.data(), B, 3, 2), cache.vector(), out.view()); }, "x",
               "row_stride");
  expect_error([&] { fwd(params(), d2r::MatrixView<const float>{nullptr, B, 3, 3}, cache.vector(), out.view()); }, "x",
               "null");
  expect_error([&] { fwd(params(), xv(), {cache.vector().data, 11}, out.view()); }, "cache", "expected 12 entries");
  expect_error([&] { fwd(params(), xv(), cache.vector(), {out.view().data, B, 3, 5}); }, "out",
               "expected a 3 x 2 matrix");
  // Aliasing: the output over x, the cache over params, out over the cache.
  std::vector<float> shared(64, 0.5f);
  const auto shared_x = d2r::matrix_view<const float>(shared.data(), B, 3);
  expect_error([&] { fwd(params(), shared_x, cache.vector(), d2r::matrix_view(shared.data() + 4, B, 2)); }, "out",
               "overlaps argument 'x'");
  std::vector<float> big(200, 0.1f);
  const auto big_params = d2r::vector_view<const float>(big.data(), net.parameter_count());
  expect_error([&] { fwd(big_params, xv(), d2r::vector_view(big.data() + 20, 12), out.view()); }, "cache",
               "overlaps argument 'params'");
  expect_error([&] { fwd(params(), xv(), d2r::vector_view(big.data(), 12), d2r::matrix_view(big.data() + 10, B, 2)); },
               "out", "overlaps argument 'cache'");
  // Values.
  x[4] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] { fwd(params(), xv(), cache.vector(), out.view()); }, "x", "element (1, 1) is nan");
  x[4] = 0.5f;
  p[7] = std::numeric_limits<float>::infinity();
  expect_error([&] { fwd(params(), xv(), cache.vector(), out.view()); }, "params", "element (0, 7) is inf");
  expect_untouched();
  // ValueChecks::none trusts the values.
  ctx.set_value_checks(d2r::ValueChecks::none);
  EXPECT_NO_THROW(fwd(params(), xv(), cache.vector(), out.view()));
}

TEST_F(NetworkErrors, Backward) {
  auto bwd = [&](d2r::MatrixView<const float> d, d2r::VectorView<float> g, d2r::MatrixView<float> gx) {
    net.backward<float>(ctx, params(), xv(), cv(), d, g, gx);
  };
  expect_error([&] { bwd(d2r::matrix_view(d_out.data(), B, 1), dp.vector(), dx.view()); }, "d_out",
               "expected a 3 x 2 matrix");
  expect_error([&] { bwd(dov(), {dp.vector().data, 5}, dx.view()); }, "d_params", "expected 26 entries");
  expect_error([&] { bwd(dov(), dp.vector(), {dx.view().data, B, 2, 5}); }, "d_x", "expected a 3 x 3 matrix");
  expect_error([&] { net.backward<float>(ctx, params(), xv(), {cache_in.data(), 3}, dov(), dp.vector(), dx.view()); },
               "cache", "expected 12 entries");
  expect_error([&] { bwd(dov(), dp.vector(), d2r::matrix_view(dp.vector().data + 2, B, 3)); }, "d_params",
               "overlaps argument 'd_x'");
  const d2r::VectorView<float> over_params{p.data(), net.parameter_count()};
  expect_error([&] { net.backward<float>(ctx, params(), xv(), cv(), dov(), over_params, {}); }, "d_params",
               "overlaps argument 'params'");
  d_out[5] = -std::numeric_limits<float>::infinity();
  expect_error([&] { bwd(dov(), dp.vector(), dx.view()); }, "d_out", "element (2, 1) is -inf");
  expect_untouched();
  d_out[5] = 1.0f;
  EXPECT_NO_THROW(bwd(dov(), dp.vector(), {}));  // d_x may be empty
  EXPECT_TRUE(dx.untouched());
}

TEST_F(NetworkErrors, Tangents) {
  auto fwd_t = [&](d2r::VectorView<const float> vv, d2r::VectorView<float> tc, d2r::MatrixView<float> o) {
    net.forward_tangent<float>(ctx, params(), vv, xv(), cv(), tc, o);
  };
  std::vector<float> dt(d_out.size(), 0.0f);
  auto bwd_t = [&](d2r::MatrixView<const float> d_t, d2r::VectorView<float> g) {
    net.backward_tangent<float>(ctx, params(), dir(), xv(), cv(), cv(), dov(), d_t, g);
  };
  const auto dtv = d2r::matrix_view<const float>(dt.data(), B, 2);
  expect_error([&] { fwd_t({v.data(), 3}, tcache.vector(), out.view()); }, "v", "expected 26 entries");
  expect_error([&] { fwd_t(dir(), {tcache.vector().data, 2}, out.view()); }, "tangent_cache", "expected 12 entries");
  expect_error([&] { fwd_t(dir(), tcache.vector(), {out.view().data, 2, 2, 5}); }, "out_tangent",
               "expected a 3 x 2 matrix");
  expect_error([&] { bwd_t(d2r::matrix_view<const float>(dt.data(), B - 1, 2), dp.vector()); }, "d_out_tangent",
               "expected a 3 x 2 matrix");
  expect_error([&] { bwd_t(dtv, {dp.vector().data, 1}); }, "d_params_tangent", "expected 26 entries");
  expect_error([&] { bwd_t(dtv, {v.data(), net.parameter_count()}); }, "d_params_tangent", "overlaps argument 'v'");
  dt[0] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] { bwd_t(dtv, dp.vector()); }, "d_out_tangent", "is nan");
  v[0] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] { fwd_t(dir(), tcache.vector(), out.view()); }, "v", "is nan");
  expect_untouched();
}

TEST(NetworkLayerNormErrors, SizesOfTheLayerNormLayoutAndOutputsUnchanged) {
  constexpr std::int64_t B = 3;
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const Mlp net({.inputs = 3, .hidden = {4}, .outputs = 2, .activation = Activation::tanh, .layer_norm = true});
  ASSERT_EQ(net.parameter_count(), 34);
  ASSERT_EQ(net.cache_elements(B), 27);
  std::vector<float> p(34, 0.1f), v(34, 0.2f), x(B * 3, 0.5f), d_out(B * 2, 1.0f), cache_in(27, 0.3f);
  GuardedMatrix<float> out(ctx, B, 2), cache(ctx, 1, 27), tcache(ctx, 1, 27), dp(ctx, 1, 34), dx(ctx, B, 3);
  const auto pv = d2r::vector_view<const float>(p.data(), 34), vv = d2r::vector_view<const float>(v.data(), 34);
  const auto xv = d2r::matrix_view<const float>(x.data(), B, 3), dov = d2r::matrix_view<const float>(d_out.data(), B, 2);
  const auto cv = d2r::vector_view<const float>(cache_in.data(), 27);
  // The sizes of the network without LayerNorm (26 parameters, 12 cache entries) are rejected.
  expect_error([&] { net.forward<float>(ctx, {p.data(), 26}, xv, cache.vector(), out.view()); }, "params",
               "expected 34 entries (the parameters of the 3-4-2 tanh layernorm MLP), got 26");
  expect_error([&] { net.forward<float>(ctx, pv, xv, {cache.vector().data, 12}, out.view()); }, "cache",
               "expected 27 entries");
  expect_error([&] { net.backward<float>(ctx, pv, xv, {cache_in.data(), 12}, dov, dp.vector(), dx.view()); }, "cache",
               "expected 27 entries");
  expect_error([&] { net.forward_tangent<float>(ctx, pv, vv, xv, cv, {tcache.vector().data, 12}, out.view()); },
               "tangent_cache", "expected 27 entries");
  expect_error([&] { net.backward_tangent<float>(ctx, pv, vv, xv, cv, {cache_in.data(), 12}, dov, dov, dp.vector()); },
               "tangent_cache", "expected 27 entries");
  // γ and β are checked like every other parameter (γ_0 starts at 16, β_0 at 20).
  p[17] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] { net.forward<float>(ctx, pv, xv, cache.vector(), out.view()); }, "params", "element (0, 17) is nan");
  p[17] = 1.0f;
  v[21] = std::numeric_limits<float>::infinity();
  expect_error([&] { net.forward_tangent<float>(ctx, pv, vv, xv, cv, tcache.vector(), out.view()); }, "v",
               "element (0, 21) is inf");
  EXPECT_TRUE(out.untouched());
  EXPECT_TRUE(cache.untouched());
  EXPECT_TRUE(tcache.untouched());
  EXPECT_TRUE(dp.untouched());
  EXPECT_TRUE(dx.untouched());
}

TEST_F(NetworkErrors, Init) {
  expect_error([&] { net.init<float>(ctx, {dp.vector().data, 3}, 1); }, "params", "expected 26 entries");
  expect_error([&] { net.init<float>(ctx, {nullptr, net.parameter_count()}, 1); }, "params", "null");
  expect_untouched();
}

}  // namespace
