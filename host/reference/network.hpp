#pragma once
// CPU reference of the MLP trunk (d2r/network.hpp): forward, backward, forward tangent (R-op)
// and backward tangent (R-backward). Plain loops, templated on the scalar type: the test oracle
// (double) and the cpu backend (float/double). Arguments are already validated.
//
// Layouts are those documented in d2r/network.hpp: flat parameters (per layer W row-major out x in,
// then b, then γ and β for a LayerNorm layer), activations cache and tangent cache (hidden
// activations packed B x h_l, layer order; with LayerNorm then x̂_l / Rx̂_l, then s_l / ρ_l).
//
// LayerNorm works row by row (layer_norm_row_* below, shared with the cpu backend): each row's
// sums run over the features in order, and the γ / β gradients accumulate over the rows in order.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "d2r/types/network.hpp"
#include "d2r/view.hpp"
#include "common/math/philox.hpp"

namespace d2r::reference::network {

/// σ(z).
template <class T>
T mlp_activate(Activation act, T z) {
  return act == Activation::relu ? (z > T(0) ? z : T(0)) : std::tanh(z);
}
/// σ'(z) from a = σ(z).
template <class T>
T mlp_slope(Activation act, T a) {
  return act == Activation::relu ? (a > T(0) ? T(1) : T(0)) : T(1) - a * a;
}
/// σ''(z)·Rz from a = σ(z) and Ra = σ'(z)·Rz: 0 for relu, −2a·Ra for tanh.
template <class T>
T mlp_curvature_times(Activation act, T a, T ra) {
  return act == Activation::relu ? T(0) : T(-2) * a * ra;
}

/// LayerNorm's ε (PyTorch's nn.LayerNorm default), in T.
template <class T>
inline constexpr T kLayerNormEps = static_cast<T>(1e-5);

/// Scratch entries mlp_backward (tangent = false) or mlp_backward_tangent (tangent = true) needs.
inline std::int64_t mlp_scratch_elements(const MlpLayout& net, std::int64_t batch, bool tangent) {
  return (tangent ? 4 : 2) * batch * net.max_hidden;
}

/// Bound 1/√fan_in of layer l, computed in double then rounded to T (as the cuda launcher does).
template <class T>
T mlp_init_bound(const MlpLayer& layer) {
  return static_cast<T>(1.0 / std::sqrt(static_cast<double>(layer.inputs)));
}

/// The i-th draw of part `part` (0: W, 1: b) of layer `l`: bound·(2u − 1).
template <class T>
T mlp_init_value(std::uint64_t seed, std::uint32_t l, std::uint32_t part, std::int64_t i, T bound) {
  const math::Philox4 bits = math::draw_bits(seed, 0u, l, part, static_cast<std::uint32_t>(i / 4));
  const T u = math::uniform_open<T>(bits.v[i % 4]);
  return bound * (T(2) * u - T(1));
}

template <class T>
void mlp_init(const MlpLayout& net, VectorView<T> params, std::uint64_t seed) {
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer L = net.layer(l);
    const T bound = mlp_init_bound<T>(L);
    for (std::int64_t i = 0; i < L.outputs * L.inputs; ++i)
      params[L.weight_offset + i] = mlp_init_value<T>(seed, static_cast<std::uint32_t>(l), 0u, i, bound);
    for (std::int64_t i = 0; i < L.outputs; ++i)
      params[L.bias_offset + i] = mlp_init_value<T>(seed, static_cast<std::uint32_t>(l), 1u, i, bound);
    if (L.normalized) {
      for (std::int64_t i = 0; i < L.outputs; ++i) params[L.gamma_offset + i] = T(1);
      for (std::int64_t i = 0; i < L.outputs; ++i) params[L.beta_offset + i] = T(0);
    }
  }
}

namespace detail_network {

/// Input of layer l: x for l = 0, else the cached hidden activation l − 1 (packed).
template <class T>
MatrixView<const T> layer_input(const MlpLayout& net, std::int64_t l, MatrixView<const T> x, const T* cache) {
  if (l == 0) return x;
  std::int64_t offset = 0;
  for (std::int64_t j = 0; j < l - 1; ++j) offset += net.layer(j).outputs;
  const std::int64_t h = net.layer(l - 1).outputs;
  return {cache + x.rows * offset, x.rows, h, h};
}
/// Hidden activation slot of layer l (< L) in a cache.
template <class U>
MatrixView<U> hidden_slot(const MlpLayout& net, std::int64_t l, std::int64_t batch, U* cache) {
  std::int64_t offset = 0;
  for (std::int64_t j = 0; j < l; ++j) offset += net.layer(j).outputs;
  const std::int64_t h = net.layer(l).outputs;
  return {cache + batch * offset, batch, h, h};
}
/// Σ h_l over the hidden layers.
inline std::int64_t hidden_sum(const MlpLayout& net) {
  std::int64_t sum = 0;
  for (std::int64_t j = 0; j + 1 < net.layer_count(); ++j) sum += net.layer(j).outputs;
  return sum;
}
/// LayerNorm slots of hidden layer l in a cache (layer_norm only): x̂_l (or Rx̂_l in the tangent
/// cache), B x h_l packed, and s_l (or ρ_l), B entries.
template <class U>
MatrixView<U> normalized_slot(const MlpLayout& net, std::int64_t l, std::int64_t batch, U* cache) {
  return hidden_slot(net, l, batch, cache + batch * hidden_sum(net));
}
template <class U>
U* row_scale_slot(const MlpLayout& net, std::int64_t l, std::int64_t batch, U* cache) {
  return cache + batch * (2 * hidden_sum(net) + l);
}

// LayerNorm on one row of h features. `z`, `g`, `rg`, `rz` are the row's entries (contiguous);
// every other pointer holds h entries (γ, β, their tangents, the row of x̂ / Rx̂ / a / Ra).

/// Forward: z ← z + b, then μ, s = 1/√(mean((z − μ)²) + ε), x̂ = (z − μ)s, and z ← a = σ(γ x̂ + β).
/// Writes x̂; returns s.
template <class T>
T layer_norm_row_forward(Activation act, std::int64_t h, T* z, const T* b, const T* gamma, const T* beta, T* xhat) {
  T sum = 0;
  for (std::int64_t i = 0; i < h; ++i) {
    z[i] += b[i];
    sum += z[i];
  }
  const T mean = sum / static_cast<T>(h);
  T sq = 0;
  for (std::int64_t i = 0; i < h; ++i) {
    const T d = z[i] - mean;
    sq += d * d;
  }
  const T s = T(1) / std::sqrt(sq / static_cast<T>(h) + kLayerNormEps<T>);
  for (std::int64_t i = 0; i < h; ++i) {
    xhat[i] = (z[i] - mean) * s;
    z[i] = mlp_activate(act, gamma[i] * xhat[i] + beta[i]);
  }
  return s;
}

/// Forward tangent: rz holds a_{l−1}Vᵀ + Ra_{l−1}Wᵀ; rz ← Rz = rz + Rb, then c = mean(x̂ Rz),
/// Rx̂ = s(Rz − mean(Rz) − x̂ c), Rn = Rγ x̂ + γ Rx̂ + Rβ and rz ← Ra = σ'(n) Rn (σ' from a).
/// Writes Rx̂; returns ρ = Rs/s = −s c.
template <class T>
T layer_norm_row_tangent(Activation act, std::int64_t h, T* rz, const T* rb, const T* a, const T* xhat, T s,
                         const T* gamma, const T* rgamma, const T* rbeta, T* rxhat) {
  T sum = 0, dot = 0;
  for (std::int64_t i = 0; i < h; ++i) {
    rz[i] += rb[i];
    sum += rz[i];
    dot += xhat[i] * rz[i];
  }
  const T mean = sum / static_cast<T>(h), c = dot / static_cast<T>(h);
  for (std::int64_t i = 0; i < h; ++i) {
    rxhat[i] = s * (rz[i] - mean - xhat[i] * c);
    const T rn = rgamma[i] * xhat[i] + gamma[i] * rxhat[i] + rbeta[i];
    rz[i] = mlp_slope(act, a[i]) * rn;
  }
  return -s * c;
}

/// Backward: g holds ∂f/∂a on entry and δ = ∂f/∂z on exit:
///   gn = σ'(n) g,  gx = γ gn,  δ = s(gx − mean(gx) − x̂ mean(gx x̂));
/// accumulates d_gamma += gn x̂ and d_beta += gn.
template <class T>
void layer_norm_row_backward(Activation act, std::int64_t h, T* g, const T* a, const T* xhat, T s, const T* gamma,
                             T* d_gamma, T* d_beta) {
  T sum = 0, dot = 0;
  for (std::int64_t i = 0; i < h; ++i) {
    const T gn = mlp_slope(act, a[i]) * g[i];
    d_gamma[i] += gn * xhat[i];
    d_beta[i] += gn;
    const T gx = gamma[i] * gn;
    g[i] = gx;
    sum += gx;
    dot += gx * xhat[i];
  }
  const T m1 = sum / static_cast<T>(h), m2 = dot / static_cast<T>(h);
  for (std::int64_t i = 0; i < h; ++i) g[i] = s * (g[i] - m1 - xhat[i] * m2);
}

/// Backward tangent: g, rg hold ∂f/∂a and its tangent on entry, δ and Rδ on exit:
///   gn = σ'(n) g,  Rgn = σ''(n)Rn g + σ'(n) rg,  gx = γ gn,  Rgx = Rγ gn + γ Rgn,
///   m1 = mean(gx), m2 = mean(gx x̂), m3 = mean(Rgx), m4 = mean(Rgx x̂ + gx Rx̂),
///   δ = s(gx − m1 − x̂ m2),  Rδ = ρ δ + s(Rgx − m3 − Rx̂ m2 − x̂ m4);
/// accumulates rd_gamma += Rgn x̂ + gn Rx̂ and rd_beta += Rgn.
template <class T>
void layer_norm_row_backward_tangent(Activation act, std::int64_t h, T* g, T* rg, const T* a, const T* ra,
                                     const T* xhat, T s, const T* rxhat, T rho, const T* gamma, const T* rgamma,
                                     T* rd_gamma, T* rd_beta) {
  T s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  for (std::int64_t i = 0; i < h; ++i) {
    const T slope = mlp_slope(act, a[i]);
    const T gn = slope * g[i];
    const T rgn = mlp_curvature_times(act, a[i], ra[i]) * g[i] + slope * rg[i];
    rd_gamma[i] += rgn * xhat[i] + gn * rxhat[i];
    rd_beta[i] += rgn;
    const T gx = gamma[i] * gn, rgx = rgamma[i] * gn + gamma[i] * rgn;
    g[i] = gx;
    rg[i] = rgx;
    s1 += gx;
    s2 += gx * xhat[i];
    s3 += rgx;
    s4 += rgx * xhat[i] + gx * rxhat[i];
  }
  const T n = static_cast<T>(h);
  const T m1 = s1 / n, m2 = s2 / n, m3 = s3 / n, m4 = s4 / n;
  for (std::int64_t i = 0; i < h; ++i) {
    const T d = s * (g[i] - m1 - xhat[i] * m2);
    rg[i] = rho * d + s * (rg[i] - m3 - rxhat[i] * m2 - xhat[i] * m4);
    g[i] = d;
  }
}

/// The layer-norm steps of one hidden layer over all B rows (arguments as above; `z`, `g`, `rg`
/// are B x h views, the caches those of the layer). Shared by the reference and the cpu backend.
template <class T>
void layer_norm_forward(const MlpLayout& net, std::int64_t l, const T* params, MatrixView<T> z, T* cache) {
  const MlpLayer L = net.layer(l);
  const MatrixView<T> xhat = normalized_slot(net, l, z.rows, cache);
  T* s = row_scale_slot(net, l, z.rows, cache);
  for (std::int64_t r = 0; r < z.rows; ++r)
    s[r] = layer_norm_row_forward<T>(net.spec.activation, L.outputs, &z(r, 0), params + L.bias_offset,
                                     params + L.gamma_offset, params + L.beta_offset, &xhat(r, 0));
}
template <class T>
void layer_norm_tangent(const MlpLayout& net, std::int64_t l, const T* params, const T* v, MatrixView<T> rz,
                        const T* cache, T* tangent_cache) {
  const MlpLayer L = net.layer(l);
  const std::int64_t B = rz.rows;
  const MatrixView<const T> a = hidden_slot(net, l, B, cache), xhat = normalized_slot(net, l, B, cache);
  const T* s = row_scale_slot(net, l, B, cache);
  const MatrixView<T> rxhat = normalized_slot(net, l, B, tangent_cache);
  T* rho = row_scale_slot(net, l, B, tangent_cache);
  for (std::int64_t r = 0; r < B; ++r)
    rho[r] = layer_norm_row_tangent<T>(net.spec.activation, L.outputs, &rz(r, 0), v + L.bias_offset, &a(r, 0),
                                       &xhat(r, 0), s[r], params + L.gamma_offset, v + L.gamma_offset,
                                       v + L.beta_offset, &rxhat(r, 0));
}
/// Overwrites the γ and β gradients of layer l.
template <class T>
void layer_norm_backward(const MlpLayout& net, std::int64_t l, const T* params, MatrixView<T> g, const T* cache,
                         T* d_params) {
  const MlpLayer L = net.layer(l);
  const std::int64_t B = g.rows;
  const MatrixView<const T> a = hidden_slot(net, l, B, cache), xhat = normalized_slot(net, l, B, cache);
  const T* s = row_scale_slot(net, l, B, cache);
  T* d_gamma = d_params + L.gamma_offset;
  T* d_beta = d_params + L.beta_offset;
  std::fill(d_gamma, d_gamma + L.outputs, T(0));
  std::fill(d_beta, d_beta + L.outputs, T(0));
  for (std::int64_t r = 0; r < B; ++r)
    layer_norm_row_backward<T>(net.spec.activation, L.outputs, &g(r, 0), &a(r, 0), &xhat(r, 0), s[r],
                               params + L.gamma_offset, d_gamma, d_beta);
}
/// Overwrites the γ and β gradient tangents of layer l.
template <class T>
void layer_norm_backward_tangent(const MlpLayout& net, std::int64_t l, const T* params, const T* v, MatrixView<T> g,
                                 MatrixView<T> rg, const T* cache, const T* tangent_cache, T* d_params_tangent) {
  const MlpLayer L = net.layer(l);
  const std::int64_t B = g.rows;
  const MatrixView<const T> a = hidden_slot(net, l, B, cache), xhat = normalized_slot(net, l, B, cache);
  const MatrixView<const T> ra = hidden_slot(net, l, B, tangent_cache),
                            rxhat = normalized_slot(net, l, B, tangent_cache);
  const T* s = row_scale_slot(net, l, B, cache);
  const T* rho = row_scale_slot(net, l, B, tangent_cache);
  T* rd_gamma = d_params_tangent + L.gamma_offset;
  T* rd_beta = d_params_tangent + L.beta_offset;
  std::fill(rd_gamma, rd_gamma + L.outputs, T(0));
  std::fill(rd_beta, rd_beta + L.outputs, T(0));
  for (std::int64_t r = 0; r < B; ++r)
    layer_norm_row_backward_tangent<T>(net.spec.activation, L.outputs, &g(r, 0), &rg(r, 0), &a(r, 0), &ra(r, 0),
                                       &xhat(r, 0), s[r], &rxhat(r, 0), rho[r], params + L.gamma_offset,
                                       v + L.gamma_offset, rd_gamma, rd_beta);
}

/// out(r, o) = Σ_i in(r, i) W(o, i)   (+= when accumulate).
template <class T>
void times_weight_t(MatrixView<const T> in, const T* w, MatrixView<T> out, bool accumulate) {
  for (std::int64_t r = 0; r < in.rows; ++r)
    for (std::int64_t o = 0; o < out.cols; ++o) {
      T s = 0;
      for (std::int64_t i = 0; i < in.cols; ++i) s += in(r, i) * w[o * in.cols + i];
      out(r, o) = accumulate ? out(r, o) + s : s;
    }
}
/// out(r, i) = Σ_o d(r, o) W(o, i)   (+= when accumulate).
template <class T>
void times_weight(MatrixView<const T> d, const T* w, MatrixView<T> out, bool accumulate) {
  for (std::int64_t r = 0; r < d.rows; ++r)
    for (std::int64_t i = 0; i < out.cols; ++i) {
      T s = 0;
      for (std::int64_t o = 0; o < d.cols; ++o) s += d(r, o) * w[o * out.cols + i];
      out(r, i) = accumulate ? out(r, i) + s : s;
    }
}
/// g(o, i) = Σ_r d(r, o) a(r, i)   (+= when accumulate); gb(o) = Σ_r d(r, o) when gb != nullptr.
template <class T>
void outer_sum(MatrixView<const T> d, MatrixView<const T> a, T* g, T* gb, bool accumulate) {
  for (std::int64_t o = 0; o < d.cols; ++o) {
    for (std::int64_t i = 0; i < a.cols; ++i) {
      T s = 0;
      for (std::int64_t r = 0; r < d.rows; ++r) s += d(r, o) * a(r, i);
      g[o * a.cols + i] = accumulate ? g[o * a.cols + i] + s : s;
    }
    if (gb != nullptr) {
      T s = 0;
      for (std::int64_t r = 0; r < d.rows; ++r) s += d(r, o);
      gb[o] = s;
    }
  }
}

}  // namespace detail_network

template <class T>
void mlp_forward(const MlpLayout& net, VectorView<const T> params, MatrixView<const T> x, T* cache, MatrixView<T> out) {
  using namespace detail_network;
  const std::int64_t B = x.rows;
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer L = net.layer(l);
    const MatrixView<const T> in = layer_input<T>(net, l, x, cache);
    const MatrixView<T> z = L.activated ? hidden_slot<T>(net, l, B, cache) : out;
    times_weight_t<T>(in, params.data + L.weight_offset, z, false);
    if (L.normalized) {
      layer_norm_forward<T>(net, l, params.data, z, cache);
      continue;
    }
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t o = 0; o < L.outputs; ++o) {
        const T v = z(r, o) + params[L.bias_offset + o];
        z(r, o) = L.activated ? mlp_activate(net.spec.activation, v) : v;
      }
  }
}

/// `scratch`: mlp_scratch_elements(net, B, false) entries.
template <class T>
void mlp_backward(const MlpLayout& net, VectorView<const T> params, MatrixView<const T> x, const T* cache,
                  MatrixView<const T> d_out, T* d_params, MatrixView<T> d_x, T* scratch) {
  using namespace detail_network;
  const std::int64_t B = x.rows, H = net.max_hidden;
  T* buf[2] = {scratch, scratch + B * H};
  int next = 0;
  MatrixView<const T> delta = d_out;
  for (std::int64_t l = net.layer_count() - 1; l >= 0; --l) {
    const MlpLayer L = net.layer(l);
    const MatrixView<const T> in = layer_input<T>(net, l, x, cache);
    outer_sum<T>(delta, in, d_params + L.weight_offset, d_params + L.bias_offset, false);
    if (l > 0) {
      const MatrixView<T> g{buf[next], B, L.inputs, L.inputs};
      times_weight<T>(delta, params.data + L.weight_offset, g, false);
      if (net.layer(l - 1).normalized) {
        layer_norm_backward<T>(net, l - 1, params.data, g, cache, d_params);
      } else {
        for (std::int64_t r = 0; r < B; ++r)
          for (std::int64_t i = 0; i < L.inputs; ++i) g(r, i) *= mlp_slope(net.spec.activation, in(r, i));
      }
      delta = g;
      next ^= 1;
    } else if (!d_x.empty()) {
      times_weight<T>(delta, params.data + L.weight_offset, d_x, false);
    }
  }
}

template <class T>
void mlp_forward_tangent(const MlpLayout& net, VectorView<const T> params, VectorView<const T> v, MatrixView<const T> x,
                         const T* cache, T* tangent_cache, MatrixView<T> out_tangent) {
  using namespace detail_network;
  const std::int64_t B = x.rows;
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer L = net.layer(l);
    const MatrixView<const T> in = layer_input<T>(net, l, x, cache);
    const MatrixView<T> rz = L.activated ? hidden_slot<T>(net, l, B, tangent_cache) : out_tangent;
    times_weight_t<T>(in, v.data + L.weight_offset, rz, false);
    if (l > 0) times_weight_t<T>(layer_input<T>(net, l, x, tangent_cache), params.data + L.weight_offset, rz, true);
    if (L.normalized) {
      layer_norm_tangent<T>(net, l, params.data, v.data, rz, cache, tangent_cache);
      continue;
    }
    const MatrixView<const T> a = L.activated ? hidden_slot(net, l, B, cache) : MatrixView<const T>{};
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t o = 0; o < L.outputs; ++o) {
        const T t = rz(r, o) + v[L.bias_offset + o];
        rz(r, o) = L.activated ? mlp_slope(net.spec.activation, a(r, o)) * t : t;
      }
  }
}

/// `scratch`: mlp_scratch_elements(net, B, true) entries.
template <class T>
void mlp_backward_tangent(const MlpLayout& net, VectorView<const T> params, VectorView<const T> v, MatrixView<const T> x,
                          const T* cache, const T* tangent_cache, MatrixView<const T> d_out,
                          MatrixView<const T> d_out_tangent, T* d_params_tangent, T* scratch) {
  using namespace detail_network;
  const std::int64_t B = x.rows, H = net.max_hidden;
  T* dbuf[2] = {scratch, scratch + B * H};
  T* rbuf[2] = {scratch + 2 * B * H, scratch + 3 * B * H};
  int next = 0;
  const Activation act = net.spec.activation;
  MatrixView<const T> delta = d_out, rdelta = d_out_tangent;
  for (std::int64_t l = net.layer_count() - 1; l >= 0; --l) {
    const MlpLayer L = net.layer(l);
    const MatrixView<const T> in = layer_input<T>(net, l, x, cache);
    T* gw = d_params_tangent + L.weight_offset;
    outer_sum<T>(rdelta, in, gw, d_params_tangent + L.bias_offset, false);
    if (l == 0) break;
    const MatrixView<const T> rin = layer_input<T>(net, l, x, tangent_cache);
    outer_sum<T>(delta, rin, gw, static_cast<T*>(nullptr), true);
    const MatrixView<T> g{dbuf[next], B, L.inputs, L.inputs}, rg{rbuf[next], B, L.inputs, L.inputs};
    times_weight<T>(delta, params.data + L.weight_offset, g, false);
    times_weight<T>(delta, v.data + L.weight_offset, rg, false);
    times_weight<T>(rdelta, params.data + L.weight_offset, rg, true);
    if (net.layer(l - 1).normalized) {
      layer_norm_backward_tangent<T>(net, l - 1, params.data, v.data, g, rg, cache, tangent_cache, d_params_tangent);
    } else {
      for (std::int64_t r = 0; r < B; ++r)
        for (std::int64_t i = 0; i < L.inputs; ++i) {
          const T a = in(r, i), slope = mlp_slope(act, a);
          const T gi = g(r, i);
          g(r, i) = slope * gi;
          rg(r, i) = mlp_curvature_times(act, a, rin(r, i)) * gi + slope * rg(r, i);
        }
    }
    delta = g;
    rdelta = rg;
    next ^= 1;
  }
}

}  // namespace d2r::reference::network
