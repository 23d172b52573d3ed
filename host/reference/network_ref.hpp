#pragma once
// CPU reference of the MLP trunk (d2r/network.hpp): forward, backward, forward tangent (R-op)
// and backward tangent (R-backward). Plain loops, templated on the scalar type: the test oracle
// (double) and the cpu backend (float/double). Arguments are already validated.
//
// Layouts are those documented in d2r/network.hpp: flat parameters (per layer W row-major out x in,
// then b), activations cache and tangent cache (hidden activations packed B x h_l, layer order).

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "d2r/network.hpp"
#include "d2r/view.hpp"
#include "kernels/math/philox.hpp"

namespace d2r::reference {

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

/// Scratch entries mlp_backward (tangent = false) or mlp_backward_tangent (tangent = true) needs.
inline std::int64_t mlp_scratch_elements(const Mlp& net, std::int64_t batch, bool tangent) {
  return (tangent ? 4 : 2) * batch * net.max_hidden();
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
void mlp_init(const Mlp& net, VectorView<T> params, std::uint64_t seed) {
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer L = net.layer(l);
    const T bound = mlp_init_bound<T>(L);
    for (std::int64_t i = 0; i < L.outputs * L.inputs; ++i)
      params[L.weight_offset + i] = mlp_init_value<T>(seed, static_cast<std::uint32_t>(l), 0u, i, bound);
    for (std::int64_t i = 0; i < L.outputs; ++i)
      params[L.bias_offset + i] = mlp_init_value<T>(seed, static_cast<std::uint32_t>(l), 1u, i, bound);
  }
}

namespace detail_network {

/// Input of layer l: x for l = 0, else the cached hidden activation l − 1 (packed).
template <class T>
MatrixView<const T> layer_input(const Mlp& net, std::int64_t l, MatrixView<const T> x, const T* cache) {
  if (l == 0) return x;
  std::int64_t offset = 0;
  for (std::int64_t j = 0; j < l - 1; ++j) offset += net.layer(j).outputs;
  const std::int64_t h = net.layer(l - 1).outputs;
  return {cache + x.rows * offset, x.rows, h, h};
}
/// Hidden activation slot of layer l (< L) in a cache.
template <class U>
MatrixView<U> hidden_slot(const Mlp& net, std::int64_t l, std::int64_t batch, U* cache) {
  std::int64_t offset = 0;
  for (std::int64_t j = 0; j < l; ++j) offset += net.layer(j).outputs;
  const std::int64_t h = net.layer(l).outputs;
  return {cache + batch * offset, batch, h, h};
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
void mlp_forward(const Mlp& net, VectorView<const T> params, MatrixView<const T> x, T* cache, MatrixView<T> out) {
  using namespace detail_network;
  const std::int64_t B = x.rows;
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer L = net.layer(l);
    const MatrixView<const T> in = layer_input<T>(net, l, x, cache);
    const MatrixView<T> z = L.activated ? hidden_slot<T>(net, l, B, cache) : out;
    times_weight_t<T>(in, params.data + L.weight_offset, z, false);
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t o = 0; o < L.outputs; ++o) {
        const T v = z(r, o) + params[L.bias_offset + o];
        z(r, o) = L.activated ? mlp_activate(net.spec().activation, v) : v;
      }
  }
}

/// `scratch`: mlp_scratch_elements(net, B, false) entries.
template <class T>
void mlp_backward(const Mlp& net, VectorView<const T> params, MatrixView<const T> x, const T* cache,
                  MatrixView<const T> d_out, T* d_params, MatrixView<T> d_x, T* scratch) {
  using namespace detail_network;
  const std::int64_t B = x.rows, H = net.max_hidden();
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
      for (std::int64_t r = 0; r < B; ++r)
        for (std::int64_t i = 0; i < L.inputs; ++i) g(r, i) *= mlp_slope(net.spec().activation, in(r, i));
      delta = g;
      next ^= 1;
    } else if (!d_x.empty()) {
      times_weight<T>(delta, params.data + L.weight_offset, d_x, false);
    }
  }
}

template <class T>
void mlp_forward_tangent(const Mlp& net, VectorView<const T> params, VectorView<const T> v, MatrixView<const T> x,
                         const T* cache, T* tangent_cache, MatrixView<T> out_tangent) {
  using namespace detail_network;
  const std::int64_t B = x.rows;
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer L = net.layer(l);
    const MatrixView<const T> in = layer_input<T>(net, l, x, cache);
    const MatrixView<T> rz = L.activated ? hidden_slot<T>(net, l, B, tangent_cache) : out_tangent;
    times_weight_t<T>(in, v.data + L.weight_offset, rz, false);
    if (l > 0) times_weight_t<T>(layer_input<T>(net, l, x, tangent_cache), params.data + L.weight_offset, rz, true);
    const MatrixView<const T> a = L.activated ? hidden_slot(net, l, B, cache) : MatrixView<const T>{};
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t o = 0; o < L.outputs; ++o) {
        const T t = rz(r, o) + v[L.bias_offset + o];
        rz(r, o) = L.activated ? mlp_slope(net.spec().activation, a(r, o)) * t : t;
      }
  }
}

/// `scratch`: mlp_scratch_elements(net, B, true) entries.
template <class T>
void mlp_backward_tangent(const Mlp& net, VectorView<const T> params, VectorView<const T> v, MatrixView<const T> x,
                          const T* cache, const T* tangent_cache, MatrixView<const T> d_out,
                          MatrixView<const T> d_out_tangent, T* d_params_tangent, T* scratch) {
  using namespace detail_network;
  const std::int64_t B = x.rows, H = net.max_hidden();
  T* dbuf[2] = {scratch, scratch + B * H};
  T* rbuf[2] = {scratch + 2 * B * H, scratch + 3 * B * H};
  int next = 0;
  const Activation act = net.spec().activation;
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
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t i = 0; i < L.inputs; ++i) {
        const T a = in(r, i), slope = mlp_slope(act, a);
        const T gi = g(r, i);
        g(r, i) = slope * gi;
        rg(r, i) = mlp_curvature_times(act, a, rin(r, i)) * gi + slope * rg(r, i);
      }
    delta = g;
    rdelta = rg;
    next ^= 1;
  }
}

}  // namespace d2r::reference
