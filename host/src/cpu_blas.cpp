// The cpu backend of the MLP trunk: GEMMs through OpenBLAS' CBLAS, elementwise work in plain
// loops (see cpu_blas.hpp). Mirrors host/reference/network.hpp step for step; the LayerNorm
// steps call the reference's row loops themselves (reference::network::detail_network::layer_norm_*). Built with
// D2R_WITH_OPENBLAS undefined (CMake option D2R_WITH_OPENBLAS=OFF), the GEMMs are plain loops.
#include "host/src/cpu_blas.hpp"

#if defined(D2R_WITH_OPENBLAS)
#include <cblas.h>
#endif

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

#include "host/reference/network.hpp"

namespace d2r::cpu_blas {
namespace {

using reference::network::detail_network::hidden_slot;
using reference::network::detail_network::layer_input;
namespace ln = reference::network::detail_network;  // the LayerNorm row loops, shared with the reference

// ------------------------------------------------------------------------------ GEMMs

/// CBLAS dimensions and leading dimensions are C ints (Debian's OpenBLAS: 32-bit blasint).
constexpr std::int64_t kMaxBlasInt = std::numeric_limits<int>::max();

/// Row-major C (m x n) = op(A) · op(B) + beta · C with op(A) m x k, op(B) k x n; beta is 0
/// (C is only written, never read: it may hold anything, NaN included) or 1.
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
          const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
#if defined(D2R_WITH_OPENBLAS)
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  const auto i = [](std::int64_t v) { return static_cast<int>(v); };
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, i(m), i(n), i(k), 1.0f, a, i(lda), b, i(ldb), beta, c, i(ldc));
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, i(m), i(n), i(k), 1.0, a, i(lda), b, i(ldb), beta, c, i(ldc));
  }
#else
  for (std::int64_t r = 0; r < m; ++r)
    for (std::int64_t j = 0; j < n; ++j) {
      T s = 0;
      for (std::int64_t p = 0; p < k; ++p)
        s += (trans_a ? a[p * lda + r] : a[r * lda + p]) * (trans_b ? b[j * ldb + p] : b[p * ldb + j]);
      c[r * ldc + j] = beta == T(0) ? s : beta * c[r * ldc + j] + s;
    }
#endif
}

/// Leading dimension of a row-major view for BLAS: its row stride, except that a view of at most
/// one row may have any stride (even 0) and BLAS wants one >= the row length.
template <class T>
std::int64_t ld(MatrixView<T> m) {
  return m.rows <= 1 ? m.cols : m.row_stride;
}

/// Rows of the B-row operands handed to one GEMM call: all of them (up to the BLAS int limit)
/// while every row stride fits a BLAS int, else one row at a time (a 1-row view needs no stride).
std::int64_t rows_per_call(std::int64_t rows, std::initializer_list<std::int64_t> strides) {
  for (const std::int64_t s : strides)
    if (rows > 1 && s > kMaxBlasInt) return 1;
  return std::min(rows, kMaxBlasInt);
}

/// z (B x out) = a (B x in) · Wᵀ (+ z when accumulate); W packed out x in.
template <class T>
void times_weight_t(MatrixView<const T> a, const T* w, MatrixView<T> z, bool accumulate) {
  const std::int64_t step = rows_per_call(a.rows, {a.row_stride, z.row_stride});
  for (std::int64_t first = 0; first < a.rows; first += step) {
    const std::int64_t count = std::min(step, a.rows - first);
    const MatrixView<const T> ac = a.row_range(first, count);
    const MatrixView<T> zc = z.row_range(first, count);
    gemm(false, true, count, z.cols, a.cols, ac.data, ld(ac), w, a.cols, accumulate ? T(1) : T(0),
         zc.data, ld(zc));
  }
}

/// out (B x in) = d (B x out) · W (+ out when accumulate); W packed out x in.
template <class T>
void times_weight(MatrixView<const T> d, const T* w, MatrixView<T> out, bool accumulate) {
  const std::int64_t step = rows_per_call(d.rows, {d.row_stride, out.row_stride});
  for (std::int64_t first = 0; first < d.rows; first += step) {
    const std::int64_t count = std::min(step, d.rows - first);
    const MatrixView<const T> dc = d.row_range(first, count);
    const MatrixView<T> oc = out.row_range(first, count);
    gemm(false, false, count, out.cols, d.cols, dc.data, ld(dc), w, out.cols,
         accumulate ? T(1) : T(0), oc.data, ld(oc));
  }
}

/// g (out x in, packed) = dᵀ a = Σ_rows d(r, :)ᵀ a(r, :) (+ g when accumulate).
template <class T>
void outer_sum(MatrixView<const T> d, MatrixView<const T> a, T* g, bool accumulate) {
  const std::int64_t step = rows_per_call(d.rows, {d.row_stride, a.row_stride});
  for (std::int64_t first = 0; first < d.rows; first += step) {
    const std::int64_t count = std::min(step, d.rows - first);
    const MatrixView<const T> dc = d.row_range(first, count), ac = a.row_range(first, count);
    gemm(true, false, d.cols, a.cols, count, dc.data, ld(dc), ac.data, ld(ac),
         accumulate || first > 0 ? T(1) : T(0), g, a.cols);
  }
}

// ------------------------------------------------------------------------------ elementwise

/// gb(o) = Σ_r d(r, o), rows in order (deterministic; the reference's summation order).
template <class T>
void column_sum(MatrixView<const T> d, T* gb) {
  std::fill(gb, gb + d.cols, T(0));
  for (std::int64_t r = 0; r < d.rows; ++r) {
    const T* row = d.data + r * d.row_stride;
    for (std::int64_t o = 0; o < d.cols; ++o) gb[o] += row[o];
  }
}

/// Calls f(std::integral_constant<Activation, act>{}) so that the loops inside are specialised
/// (no per-element branch on the activation).
template <class F>
void with_activation(Activation act, F&& f) {
  if (act == Activation::relu) {
    f(std::integral_constant<Activation, Activation::relu>{});
  } else {
    f(std::integral_constant<Activation, Activation::tanh>{});
  }
}

/// z ← σ(z + b) (activated) or z + b, row by row.
template <class T>
void bias_activation(MatrixView<T> z, const T* b, Activation act, bool activated) {
  if (!activated) {
    for (std::int64_t r = 0; r < z.rows; ++r) {
      T* row = z.data + r * z.row_stride;
      for (std::int64_t o = 0; o < z.cols; ++o) row[o] += b[o];
    }
    return;
  }
  with_activation(act, [&](auto a) {
    for (std::int64_t r = 0; r < z.rows; ++r) {
      T* row = z.data + r * z.row_stride;
      for (std::int64_t o = 0; o < z.cols; ++o) row[o] = reference::network::mlp_activate(a.value, row[o] + b[o]);
    }
  });
}

/// rz ← σ'(z) ⊙ (rz + rb) (activated, from a = σ(z)) or rz + rb.
template <class T>
void tangent_activation(MatrixView<T> rz, const T* rb, MatrixView<const T> a, Activation act, bool activated) {
  if (!activated) {
    bias_activation(rz, rb, act, false);
    return;
  }
  with_activation(act, [&](auto f) {
    for (std::int64_t r = 0; r < rz.rows; ++r) {
      T* row = rz.data + r * rz.row_stride;
      const T* arow = a.data + r * a.row_stride;
      for (std::int64_t o = 0; o < rz.cols; ++o)
        row[o] = reference::network::mlp_slope(f.value, arow[o]) * (row[o] + rb[o]);
    }
  });
}

/// g ← σ'(z) ⊙ g, from a = σ(z).
template <class T>
void backward_activation(MatrixView<T> g, MatrixView<const T> a, Activation act) {
  with_activation(act, [&](auto f) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      T* row = g.data + r * g.row_stride;
      const T* arow = a.data + r * a.row_stride;
      for (std::int64_t i = 0; i < g.cols; ++i) row[i] *= reference::network::mlp_slope(f.value, arow[i]);
    }
  });
}

/// (g, rg) ← (σ' ⊙ g, σ''Rz ⊙ g + σ' ⊙ rg), from a = σ(z) and ra = σ'(z) Rz.
template <class T>
void backward_tangent_activation(MatrixView<T> g, MatrixView<T> rg, MatrixView<const T> a, MatrixView<const T> ra,
                                 Activation act) {
  with_activation(act, [&](auto f) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      T* grow = g.data + r * g.row_stride;
      T* rrow = rg.data + r * rg.row_stride;
      const T* arow = a.data + r * a.row_stride;
      const T* rarow = ra.data + r * ra.row_stride;
      for (std::int64_t i = 0; i < g.cols; ++i) {
        const T slope = reference::network::mlp_slope(f.value, arow[i]), gi = grow[i];
        grow[i] = slope * gi;
        rrow[i] = reference::network::mlp_curvature_times(f.value, arow[i], rarow[i]) * gi + slope * rrow[i];
      }
    }
  });
}

}  // namespace

// ------------------------------------------------------------------------------ the trunk

template <class T>
void mlp_forward(const Mlp& net, VectorView<const T> params, MatrixView<const T> x, T* cache, MatrixView<T> out) {
  const std::int64_t B = x.rows;
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer L = net.layer(l);
    const MatrixView<T> z = L.activated ? hidden_slot<T>(net, l, B, cache) : out;
    times_weight_t<T>(layer_input<T>(net, l, x, cache), params.data + L.weight_offset, z, false);
    if (L.normalized) {
      ln::layer_norm_forward<T>(net, l, params.data, z, cache);
    } else {
      bias_activation<T>(z, params.data + L.bias_offset, net.spec().activation, L.activated);
    }
  }
}

template <class T>
void mlp_backward(const Mlp& net, VectorView<const T> params, MatrixView<const T> x, const T* cache,
                  MatrixView<const T> d_out, T* d_params, MatrixView<T> d_x, T* scratch) {
  const std::int64_t B = x.rows, H = net.max_hidden();
  T* buf[2] = {scratch, scratch + B * H};
  int next = 0;
  MatrixView<const T> delta = d_out;
  for (std::int64_t l = net.layer_count() - 1; l >= 0; --l) {
    const MlpLayer L = net.layer(l);
    const MatrixView<const T> in = layer_input<T>(net, l, x, cache);
    outer_sum<T>(delta, in, d_params + L.weight_offset, false);
    column_sum<T>(delta, d_params + L.bias_offset);
    if (l > 0) {
      const MatrixView<T> g{buf[next], B, L.inputs, L.inputs};
      times_weight<T>(delta, params.data + L.weight_offset, g, false);
      if (net.layer(l - 1).normalized) {
        ln::layer_norm_backward<T>(net, l - 1, params.data, g, cache, d_params);
      } else {
        backward_activation<T>(g, in, net.spec().activation);
      }
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
  const std::int64_t B = x.rows;
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer L = net.layer(l);
    const MatrixView<T> rz = L.activated ? hidden_slot<T>(net, l, B, tangent_cache) : out_tangent;
    times_weight_t<T>(layer_input<T>(net, l, x, cache), v.data + L.weight_offset, rz, false);
    if (l > 0) {
      times_weight_t<T>(layer_input<T>(net, l, x, tangent_cache), params.data + L.weight_offset,
                        rz, true);
    }
    if (L.normalized) {
      ln::layer_norm_tangent<T>(net, l, params.data, v.data, rz, cache, tangent_cache);
      continue;
    }
    const MatrixView<const T> a = L.activated ? hidden_slot(net, l, B, cache) : MatrixView<const T>{};
    tangent_activation<T>(rz, v.data + L.bias_offset, a, net.spec().activation, L.activated);
  }
}

template <class T>
void mlp_backward_tangent(const Mlp& net, VectorView<const T> params, VectorView<const T> v, MatrixView<const T> x,
                          const T* cache, const T* tangent_cache, MatrixView<const T> d_out,
                          MatrixView<const T> d_out_tangent, T* d_params_tangent, T* scratch) {
  const std::int64_t B = x.rows, H = net.max_hidden();
  T* dbuf[2] = {scratch, scratch + B * H};
  T* rbuf[2] = {scratch + 2 * B * H, scratch + 3 * B * H};
  int next = 0;
  MatrixView<const T> delta = d_out, rdelta = d_out_tangent;
  for (std::int64_t l = net.layer_count() - 1; l >= 0; --l) {
    const MlpLayer L = net.layer(l);
    const MatrixView<const T> in = layer_input<T>(net, l, x, cache);
    T* gw = d_params_tangent + L.weight_offset;
    outer_sum<T>(rdelta, in, gw, false);
    column_sum<T>(rdelta, d_params_tangent + L.bias_offset);
    if (l == 0) break;
    const MatrixView<const T> rin = layer_input<T>(net, l, x, tangent_cache);
    outer_sum<T>(delta, rin, gw, true);
    const MatrixView<T> g{dbuf[next], B, L.inputs, L.inputs}, rg{rbuf[next], B, L.inputs, L.inputs};
    times_weight<T>(delta, params.data + L.weight_offset, g, false);
    times_weight<T>(delta, v.data + L.weight_offset, rg, false);
    times_weight<T>(rdelta, params.data + L.weight_offset, rg, true);
    if (net.layer(l - 1).normalized) {
      ln::layer_norm_backward_tangent<T>(net, l - 1, params.data, v.data, g, rg, cache, tangent_cache,
                                         d_params_tangent);
    } else {
      backward_tangent_activation<T>(g, rg, in, rin, net.spec().activation);
    }
    delta = g;
    rdelta = rg;
    next ^= 1;
  }
}

#define D2R_INSTANTIATE(T)                                                                                             \
  template void mlp_forward<T>(const Mlp&, VectorView<const T>, MatrixView<const T>, T*, MatrixView<T>);               \
  template void mlp_backward<T>(const Mlp&, VectorView<const T>, MatrixView<const T>, const T*, MatrixView<const T>,   \
                                T*, MatrixView<T>, T*);                                                                \
  template void mlp_forward_tangent<T>(const Mlp&, VectorView<const T>, VectorView<const T>, MatrixView<const T>,      \
                                       const T*, T*, MatrixView<T>);                                                   \
  template void mlp_backward_tangent<T>(const Mlp&, VectorView<const T>, VectorView<const T>, MatrixView<const T>,     \
                                        const T*, const T*, MatrixView<const T>, MatrixView<const T>, T*, T*);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r::cpu_blas
