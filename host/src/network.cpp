// Public entry points of the MLP trunk (d2r/network.hpp): validate, then run the cpu backend
// (OpenBLAS GEMMs plus plain loops, host/src/cpu_blas.cpp) or cuBLAS GEMMs plus the elementwise
// kernels of kernels/network/launch.cu.
#include "d2r/network.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "host/reference/network.hpp"
#include "host/src/cpu_blas.hpp"
#include "host/src/validate.hpp"
#include "kernels/checks/launch.hpp"
#include "kernels/network/launch.hpp"

namespace d2r {

const char* to_string(Activation activation) noexcept {
  switch (activation) {
    case Activation::relu: return "relu";
    case Activation::tanh: return "tanh";
  }
  return "unknown";
}

Mlp::Mlp(MlpSpec spec) {
  constexpr std::string_view fn = "Mlp";
  D2R_EXPECTS(spec.inputs >= 1, fn, "spec.inputs", "expected an input width >= 1, got {}", spec.inputs);
  D2R_EXPECTS(spec.outputs >= 1, fn, "spec.outputs", "expected an output width >= 1, got {}", spec.outputs);
  for (std::size_t i = 0; i < spec.hidden.size(); ++i) {
    D2R_EXPECTS(spec.hidden[i] >= 1, fn, "spec.hidden", "hidden layer {} has width {}; expected every width >= 1", i,
                spec.hidden[i]);
  }
  constexpr std::int64_t kMaxWidth = std::numeric_limits<int>::max();  // a cuBLAS dimension
  D2R_EXPECTS(spec.inputs <= kMaxWidth, fn, "spec.inputs", "expected an input width <= {}, got {}", kMaxWidth,
              spec.inputs);
  D2R_EXPECTS(spec.outputs <= kMaxWidth, fn, "spec.outputs", "expected an output width <= {}, got {}", kMaxWidth,
              spec.outputs);
  for (std::size_t i = 0; i < spec.hidden.size(); ++i) {
    D2R_EXPECTS(spec.hidden[i] <= kMaxWidth, fn, "spec.hidden", "hidden layer {} has width {}; expected <= {}", i,
                spec.hidden[i], kMaxWidth);
  }
  D2R_EXPECTS(spec.activation == Activation::relu || spec.activation == Activation::tanh, fn, "spec.activation",
              "expected Activation::relu or Activation::tanh, got value {}", static_cast<int>(spec.activation));
  // Overflow-safe: every width is checked against the limit before multiplying.
  std::int64_t in = spec.inputs, offset = 0;
  for (std::size_t l = 0; l < spec.hidden.size() + 1; ++l) {
    const bool last = l == spec.hidden.size();
    const std::int64_t out = last ? spec.outputs : spec.hidden[l];
    const std::int64_t extra = spec.layer_norm && !last ? 2 : 0;  // γ and β
    D2R_EXPECTS(in <= kMaxMlpParameters && out <= kMaxMlpParameters &&
                    out * (in + 1 + extra) <= kMaxMlpParameters - offset,
                fn, "spec", "the network has more than {} parameters (layer {}: {} x {})", kMaxMlpParameters, l, out,
                in);
    offset += out * (in + 1 + extra);
    in = out;
  }
  layout_ = mlp_layout(std::move(spec));
}

MlpLayer Mlp::layer(std::int64_t l) const {
  D2R_EXPECTS(l >= 0 && l < layer_count(), "Mlp::layer", "l", "expected a layer index in [0, {}), got {}",
              layer_count(), l);
  return layout_.layer(l);
}

std::string Mlp::describe() const {
  std::string s = fmt::format("{}", layout_.spec.inputs);
  for (std::int64_t h : layout_.spec.hidden) s += fmt::format("-{}", h);
  s += fmt::format("-{}", layout_.spec.outputs);
  if (!layout_.spec.hidden.empty()) s += fmt::format(" {}", to_string(layout_.spec.activation));
  if (!layout_.spec.hidden.empty() && layout_.spec.layer_norm) s += " layernorm";
  return s;
}

namespace {

using detail::MatrixArg;

template <class T>
void check_type(const Context& ctx, std::string_view fn, std::string_view argument) {
  detail::check_backend_type<T>(ctx, fn, argument);
}

/// A parameter-space vector (params, v, d_params, d_params_tangent): exactly parameter_count() entries.
template <class T>
void check_param_vector(const Context& ctx, std::string_view fn, const Mlp& net, std::string_view name,
                        VectorView<T> p) {
  D2R_EXPECTS(p.size == net.parameter_count(), fn, name, "expected {} entries (the parameters of the {} MLP), got {}",
              net.parameter_count(), net.describe(), p.size);
  detail::check_matrix(ctx, fn, MatrixArg(name, p), 1, p.size);
}

/// A cache (activations or tangent): cache_elements(B) entries; may be empty for a linear model.
template <class T>
void check_cache(const Context& ctx, std::string_view fn, const Mlp& net, std::string_view name, VectorView<T> c,
                 std::int64_t batch) {
  const std::int64_t want = net.cache_elements(batch);
  D2R_EXPECTS(c.size == want, fn, name, "expected {} entries (B = {} rows of the hidden widths of the {} MLP), got {}",
              want, batch, net.describe(), c.size);
  if (want > 0) detail::check_matrix(ctx, fn, MatrixArg(name, c), 1, want);
}

/// On cuda, rows and row strides are cuBLAS int dimensions.
template <class T>
void check_blas_extent(const Context& ctx, std::string_view fn, std::string_view name, MatrixView<T> m) {
  if (!detail::on_device(ctx) || m.data == nullptr) return;
  constexpr std::int64_t kMax = std::numeric_limits<int>::max();
  D2R_EXPECTS(m.rows <= kMax && m.row_stride <= kMax, fn, name,
              "the cuda backend takes at most {} rows and a row_stride <= {}, got {} rows, row_stride {}", kMax, kMax,
              m.rows, m.row_stride);
}

/// x: B x inputs with B >= 1; returns B.
template <class T>
std::int64_t check_x(const Context& ctx, std::string_view fn, const Mlp& net, MatrixView<T> x) {
  D2R_EXPECTS(x.rows >= 1, fn, "x", "expected B >= 1 rows, got {} x {}", x.rows, x.cols);
  D2R_EXPECTS(x.cols == net.inputs(), fn, "x", "expected {} columns (the MLP's inputs), got {} x {}", net.inputs(),
              x.rows, x.cols);
  detail::check_matrix(ctx, fn, MatrixArg("x", x), x.rows, x.cols);
  check_blas_extent(ctx, fn, "x", x);
  return x.rows;
}

template <class T>
void check_finite(Context& ctx, std::string_view fn, std::string_view name, MatrixView<const T> m) {
  detail::check_values<T>(ctx, fn, name, m, detail::ValueRule::finite);
}
template <class T>
void check_finite(Context& ctx, std::string_view fn, std::string_view name, VectorView<const T> v) {
  detail::check_values<T>(ctx, fn, name, MatrixView<const T>{v.data, 1, v.size, v.size}, detail::ValueRule::finite);
}

void check_outputs_disjoint(std::string_view fn, std::initializer_list<MatrixArg> outputs,
                            std::initializer_list<MatrixArg> inputs) {
  for (auto o = outputs.begin(); o != outputs.end(); ++o) {
    if (o->data == nullptr) continue;
    for (const MatrixArg& in : inputs) detail::check_disjoint(fn, *o, in);
    for (auto p = std::next(o); p != outputs.end(); ++p) detail::check_disjoint(fn, *o, *p);
  }
}

// ------------------------------------------------------------------------------ cuda helpers
#if D2R_WITH_CUDA  // the cuda side is compiled with CUDA only

/// cuBLAS wants a leading dimension >= the row length even where a 1-row view has any stride.
std::int64_t ld(std::int64_t rows, std::int64_t cols, std::int64_t stride) { return rows <= 1 ? cols : stride; }

/// Row-major C (m x n) = alpha · op(A) · op(B) + beta · C, op(A) m x k, op(B) k x n, through the
/// column-major cuBLAS call on the transposes: Cᵀ = op(B)ᵀ op(A)ᵀ.
void gemm(Context& ctx, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  D2R_CUBLAS_TRY(cublasSgemm(ctx.cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                             static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b,
                             static_cast<int>(ldb), a, static_cast<int>(lda), &beta, c, static_cast<int>(ldc)));
}

/// Z (B x out) = A (B x in) · Wᵀ (+ beta Z).
void gemm_forward(Context& ctx, MatrixView<const float> a, const float* w, MatrixView<float> z, float beta) {
  gemm(ctx, false, true, a.rows, z.cols, a.cols, 1.0f, a.data, ld(a.rows, a.cols, a.row_stride), w, a.cols, beta,
       z.data, ld(z.rows, z.cols, z.row_stride));
}
/// G (out x in) = Dᵀ (out x B) · A (B x in) (+ beta G), packed.
void gemm_weight_grad(Context& ctx, MatrixView<const float> d, MatrixView<const float> a, float* g, float beta) {
  gemm(ctx, true, false, d.cols, a.cols, d.rows, 1.0f, d.data, ld(d.rows, d.cols, d.row_stride), a.data,
       ld(a.rows, a.cols, a.row_stride), beta, g, a.cols);
}
/// Out (B x in) = D (B x out) · W (out x in) (+ beta Out).
void gemm_input_grad(Context& ctx, MatrixView<const float> d, const float* w, MatrixView<float> out, float beta) {
  gemm(ctx, false, false, d.rows, out.cols, d.cols, 1.0f, d.data, ld(d.rows, d.cols, d.row_stride), w, out.cols, beta,
       out.data, ld(out.rows, out.cols, out.row_stride));
}

/// Hidden activation slot of layer l (< L) in a cache, and the input of layer l.
template <class U>
MatrixView<U> slot(const Mlp& net, std::int64_t l, std::int64_t batch, U* cache) {
  return reference::network::detail_network::hidden_slot(net, l, batch, cache);
}
MatrixView<const float> input_of(const Mlp& net, std::int64_t l, MatrixView<const float> x, const float* cache) {
  return l == 0 ? x : slot(net, l - 1, x.rows, cache);
}
/// LayerNorm slots of hidden layer l: x̂_l / Rx̂_l (B x h_l) and s_l / ρ_l (B entries).
template <class U>
MatrixView<U> norm_slot(const Mlp& net, std::int64_t l, std::int64_t batch, U* cache) {
  return reference::network::detail_network::normalized_slot(net, l, batch, cache);
}
template <class U>
U* scale_slot(const Mlp& net, std::int64_t l, std::int64_t batch, U* cache) {
  return reference::network::detail_network::row_scale_slot(net, l, batch, cache);
}

#endif  // D2R_WITH_CUDA

/// Scratch of backward / backward_tangent: (2 or 4) B·max_hidden scalars (the δ / Rδ ping-pong
/// buffers), on cuda with layer_norm 2 B·max_hidden more (the per-element γ / β gradient terms
/// before their column sums), then (cuda) the column-sum workspace at a 256-byte boundary.
struct Scratch {
  void* values;
  void* column_sum;
};
std::int64_t layer_norm_scratch_elements(const Context& ctx, const Mlp& net, std::int64_t batch) {
  return detail::on_device(ctx) && net.spec().layer_norm ? 2 * batch * net.max_hidden() : 0;
}
template <class T>
Scratch acquire_scratch(Context& ctx, const Mlp& net, std::int64_t batch, bool tangent) {
  const std::size_t values = static_cast<std::size_t>(reference::network::mlp_scratch_elements(net, batch, tangent) +
                                                      layer_norm_scratch_elements(ctx, net, batch)) *
                             sizeof(T);
  const std::size_t aligned = (values + 255) / 256 * 256;
  const std::size_t column = detail::run_on<T>(
      ctx, [] { return std::size_t{0}; },
      [&](const auto& ex) {
        std::size_t bytes = 0;
        for (std::int64_t l = 0; l < net.layer_count(); ++l)
          bytes = std::max(bytes, ex.call(kernels::checks::column_sum_workspace_bytes, batch, net.layer(l).outputs));
        return bytes;
      });
  char* base = static_cast<char*>(ctx.workspace(std::max<std::size_t>(aligned + column, 1)));
  return {base, base + aligned};
}

#if D2R_WITH_CUDA
// The cuda side of each entry point (float; reached only through run_on).
template <class Exec>
void init_cuda(const Exec& ex, const Mlp& net, VectorView<float> params, std::uint64_t seed) {
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer L = net.layout().layer(l);
    const float bound = reference::network::mlp_init_bound<float>(L);
    ex.launch(kernels::network::init_uniform, params.data + L.weight_offset, L.outputs * L.inputs, bound, seed,
              static_cast<std::uint32_t>(l), 0u);
    ex.launch(kernels::network::init_uniform, params.data + L.bias_offset, L.outputs, bound, seed,
              static_cast<std::uint32_t>(l), 1u);
    if (L.normalized) {
      ex.launch(kernels::network::fill, params.data + L.gamma_offset, L.outputs, 1.0f);
      ex.launch(kernels::network::fill, params.data + L.beta_offset, L.outputs, 0.0f);
    }
  }
}

template <class Exec>
void forward_cuda(const Exec& ex, const Mlp& net, ConstVector<float> params, ConstMatrix<float> x,
                  VectorView<float> cache, MatrixView<float> out, std::int64_t B) {
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer& L = net.layout().layer(l);
    const MatrixView<float> z = L.activated ? slot(net, l, B, cache.data) : out;
    gemm_forward(ex.ctx, input_of(net, l, x, cache.data), params.data + L.weight_offset, z, 0.0f);
    if (L.normalized) {
      ex.launch(kernels::network::layer_norm_forward, z, params.data + L.bias_offset, params.data + L.gamma_offset,
                params.data + L.beta_offset, norm_slot(net, l, B, cache.data), scale_slot(net, l, B, cache.data),
                net.layout().spec.activation);
    } else {
      ex.launch(kernels::network::bias_activation, z, params.data + L.bias_offset, net.layout().spec.activation,
                L.activated);
    }
  }
}

template <class Exec>
void backward_cuda(const Exec& ex, const Mlp& net, ConstVector<float> params, ConstMatrix<float> x,
                   ConstVector<float> cache, ConstMatrix<float> d_out, VectorView<float> d_params,
                   MatrixView<float> d_x, const Scratch& scratch, std::int64_t B) {
  float* buf[2] = {static_cast<float*>(scratch.values),
                   static_cast<float*>(scratch.values) + B * net.layout().max_hidden};
  float* ln_terms = static_cast<float*>(scratch.values) + 2 * B * net.layout().max_hidden;  // gn, gn ⊙ x̂ (layer_norm)
  int next = 0;
  MatrixView<const float> delta = d_out;
  for (std::int64_t l = net.layer_count() - 1; l >= 0; --l) {
    const MlpLayer& L = net.layout().layer(l);
    const MatrixView<const float> in = input_of(net, l, x, cache.data);
    gemm_weight_grad(ex.ctx, delta, in, d_params.data + L.weight_offset, 0.0f);
    ex.launch(kernels::checks::column_sum, delta, d_params.data + L.bias_offset, scratch.column_sum);
    if (l > 0) {
      const MatrixView<float> g{buf[next], B, L.inputs, L.inputs};
      gemm_input_grad(ex.ctx, delta, params.data + L.weight_offset, g, 0.0f);
      const MlpLayer& below = net.layout().layer(l - 1);
      if (below.normalized) {
        const MatrixView<float> gn{ln_terms, B, L.inputs, L.inputs},
            gn_xhat{ln_terms + B * net.layout().max_hidden, B, L.inputs, L.inputs};
        ex.launch(kernels::network::layer_norm_backward, g, in, norm_slot(net, l - 1, B, cache.data),
                  scale_slot(net, l - 1, B, cache.data), params.data + below.gamma_offset, gn, gn_xhat,
                  net.layout().spec.activation);
        ex.launch(kernels::checks::column_sum, gn_xhat, d_params.data + below.gamma_offset, scratch.column_sum);
        ex.launch(kernels::checks::column_sum, gn, d_params.data + below.beta_offset, scratch.column_sum);
      } else {
        ex.launch(kernels::network::backward_activation, g, in, net.layout().spec.activation);
      }
      delta = g;
      next ^= 1;
    } else if (!d_x.empty()) {
      gemm_input_grad(ex.ctx, delta, params.data + L.weight_offset, d_x, 0.0f);
    }
  }
}

template <class Exec>
void forward_tangent_cuda(const Exec& ex, const Mlp& net, ConstVector<float> params, ConstVector<float> v,
                          ConstMatrix<float> x, ConstVector<float> cache, VectorView<float> tangent_cache,
                          MatrixView<float> out_tangent, std::int64_t B) {
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const MlpLayer& L = net.layout().layer(l);
    const MatrixView<float> rz = L.activated ? slot(net, l, B, tangent_cache.data) : out_tangent;
    gemm_forward(ex.ctx, input_of(net, l, x, cache.data), v.data + L.weight_offset, rz, 0.0f);
    if (l > 0) {
      gemm_forward(ex.ctx, slot<const float>(net, l - 1, B, tangent_cache.data), params.data + L.weight_offset, rz,
                   1.0f);
    }
    if (L.normalized) {
      ex.launch(kernels::network::layer_norm_tangent, rz, v.data + L.bias_offset, params.data + L.gamma_offset,
                v.data + L.gamma_offset, v.data + L.beta_offset, slot(net, l, B, cache.data),
                norm_slot(net, l, B, cache.data), scale_slot(net, l, B, cache.data),
                norm_slot(net, l, B, tangent_cache.data), scale_slot(net, l, B, tangent_cache.data),
                net.layout().spec.activation);
      continue;
    }
    const MatrixView<const float> a = L.activated ? slot(net, l, B, cache.data) : MatrixView<const float>{};
    ex.launch(kernels::network::tangent_activation, rz, v.data + L.bias_offset, a, net.layout().spec.activation,
              L.activated);
  }
}

template <class Exec>
void backward_tangent_cuda(const Exec& ex, const Mlp& net, ConstVector<float> params, ConstVector<float> v,
                           ConstMatrix<float> x, ConstVector<float> cache, ConstVector<float> tangent_cache,
                           ConstMatrix<float> d_out, ConstMatrix<float> d_out_tangent,
                           VectorView<float> d_params_tangent, const Scratch& scratch, std::int64_t B) {
  float* base = static_cast<float*>(scratch.values);
  const std::int64_t stride = B * net.layout().max_hidden;
  float* dbuf[2] = {base, base + stride};
  float* rbuf[2] = {base + 2 * stride, base + 3 * stride};
  float* ln_terms = base + 4 * stride;  // Rgn, Rgn ⊙ x̂ + gn ⊙ Rx̂ (layer_norm)
  int next = 0;
  MatrixView<const float> delta = d_out, rdelta = d_out_tangent;
  for (std::int64_t l = net.layer_count() - 1; l >= 0; --l) {
    const MlpLayer& L = net.layout().layer(l);
    const MatrixView<const float> in = input_of(net, l, x, cache.data);
    float* gw = d_params_tangent.data + L.weight_offset;
    gemm_weight_grad(ex.ctx, rdelta, in, gw, 0.0f);
    ex.launch(kernels::checks::column_sum, rdelta, d_params_tangent.data + L.bias_offset, scratch.column_sum);
    if (l == 0) break;
    const MatrixView<const float> rin = slot(net, l - 1, B, tangent_cache.data);
    gemm_weight_grad(ex.ctx, delta, rin, gw, 1.0f);
    const MatrixView<float> g{dbuf[next], B, L.inputs, L.inputs}, rg{rbuf[next], B, L.inputs, L.inputs};
    gemm_input_grad(ex.ctx, delta, params.data + L.weight_offset, g, 0.0f);
    gemm_input_grad(ex.ctx, delta, v.data + L.weight_offset, rg, 0.0f);
    gemm_input_grad(ex.ctx, rdelta, params.data + L.weight_offset, rg, 1.0f);
    const MlpLayer& below = net.layout().layer(l - 1);
    if (below.normalized) {
      const MatrixView<float> rgn{ln_terms, B, L.inputs, L.inputs}, rgn_xhat{ln_terms + stride, B, L.inputs, L.inputs};
      ex.launch(kernels::network::layer_norm_backward_tangent, g, rg, in, rin, norm_slot(net, l - 1, B, cache.data),
                scale_slot(net, l - 1, B, cache.data), norm_slot(net, l - 1, B, tangent_cache.data),
                scale_slot(net, l - 1, B, tangent_cache.data), params.data + below.gamma_offset,
                v.data + below.gamma_offset, rgn, rgn_xhat, net.layout().spec.activation);
      ex.launch(kernels::checks::column_sum, rgn_xhat, d_params_tangent.data + below.gamma_offset, scratch.column_sum);
      ex.launch(kernels::checks::column_sum, rgn, d_params_tangent.data + below.beta_offset, scratch.column_sum);
    } else {
      ex.launch(kernels::network::backward_tangent_activation, g, rg, in, rin, net.layout().spec.activation);
    }
    delta = g;
    rdelta = rg;
    next ^= 1;
  }
}

#endif  // D2R_WITH_CUDA

}  // namespace

// ------------------------------------------------------------------------------ entry points

template <class T>
void Mlp::init(Context& ctx, VectorView<T> params, std::uint64_t seed) const {
  constexpr std::string_view fn = "Mlp::init";
  check_type<T>(ctx, fn, "params");
  check_param_vector(ctx, fn, *this, "params", params);
  detail::run_on<T>(
      ctx, [&] { reference::network::mlp_init(*this, params, seed); },
      [&](const auto& ex) { init_cuda(ex, *this, params, seed); });
}

template <class T>
void Mlp::forward(Context& ctx, ConstVector<T> params, ConstMatrix<T> x, VectorView<T> cache, MatrixView<T> out) const {
  constexpr std::string_view fn = "Mlp::forward";
  check_type<T>(ctx, fn, "params");
  check_param_vector(ctx, fn, *this, "params", params);
  const std::int64_t B = check_x(ctx, fn, *this, x);
  check_cache(ctx, fn, *this, "cache", cache, B);
  detail::check_matrix(ctx, fn, MatrixArg("out", out), B, outputs());
  check_blas_extent(ctx, fn, "out", out);
  check_outputs_disjoint(fn, {MatrixArg("out", out), MatrixArg("cache", cache)},
                         {MatrixArg("params", params), MatrixArg("x", x)});
  check_finite<T>(ctx, fn, "params", params);
  check_finite<T>(ctx, fn, "x", x);
  detail::run_on<T>(
      ctx, [&] { cpu_blas::mlp_forward<T>(*this, params, x, cache.data, out); },
      [&](const auto& ex) { forward_cuda(ex, *this, params, x, cache, out, B); });
}

template <class T>
void Mlp::backward(Context& ctx, ConstVector<T> params, ConstMatrix<T> x, ConstVector<T> cache, ConstMatrix<T> d_out,
                   VectorView<T> d_params, MatrixView<T> d_x) const {
  constexpr std::string_view fn = "Mlp::backward";
  check_type<T>(ctx, fn, "params");
  check_param_vector(ctx, fn, *this, "params", params);
  const std::int64_t B = check_x(ctx, fn, *this, x);
  check_cache(ctx, fn, *this, "cache", cache, B);
  detail::check_matrix(ctx, fn, MatrixArg("d_out", d_out), B, outputs());
  check_blas_extent(ctx, fn, "d_out", d_out);
  check_param_vector(ctx, fn, *this, "d_params", d_params);
  if (!d_x.empty()) detail::check_matrix(ctx, fn, MatrixArg("d_x", d_x), B, inputs());
  check_blas_extent(ctx, fn, "d_x", d_x);
  check_outputs_disjoint(fn, {MatrixArg("d_params", d_params), MatrixArg("d_x", d_x)},
                         {MatrixArg("params", params), MatrixArg("x", x), MatrixArg("cache", cache),
                          MatrixArg("d_out", d_out)});
  check_finite<T>(ctx, fn, "params", params);
  check_finite<T>(ctx, fn, "x", x);
  check_finite<T>(ctx, fn, "d_out", d_out);
  const Scratch scratch = acquire_scratch<T>(ctx, *this, B, false);
  detail::run_on<T>(
      ctx,
      [&] {
        cpu_blas::mlp_backward<T>(*this, params, x, cache.data, d_out, d_params.data, d_x,
                                  static_cast<T*>(scratch.values));
      },
      [&](const auto& ex) { backward_cuda(ex, *this, params, x, cache, d_out, d_params, d_x, scratch, B); });
}

template <class T>
void Mlp::forward_tangent(Context& ctx, ConstVector<T> params, ConstVector<T> v, ConstMatrix<T> x,
                          ConstVector<T> cache, VectorView<T> tangent_cache, MatrixView<T> out_tangent) const {
  constexpr std::string_view fn = "Mlp::forward_tangent";
  check_type<T>(ctx, fn, "params");
  check_param_vector(ctx, fn, *this, "params", params);
  check_param_vector(ctx, fn, *this, "v", v);
  const std::int64_t B = check_x(ctx, fn, *this, x);
  check_cache(ctx, fn, *this, "cache", cache, B);
  check_cache(ctx, fn, *this, "tangent_cache", tangent_cache, B);
  detail::check_matrix(ctx, fn, MatrixArg("out_tangent", out_tangent), B, outputs());
  check_blas_extent(ctx, fn, "out_tangent", out_tangent);
  check_outputs_disjoint(fn, {MatrixArg("out_tangent", out_tangent), MatrixArg("tangent_cache", tangent_cache)},
                         {MatrixArg("params", params), MatrixArg("v", v), MatrixArg("x", x),
                          MatrixArg("cache", cache)});
  check_finite<T>(ctx, fn, "params", params);
  check_finite<T>(ctx, fn, "v", v);
  check_finite<T>(ctx, fn, "x", x);
  detail::run_on<T>(
      ctx, [&] { cpu_blas::mlp_forward_tangent<T>(*this, params, v, x, cache.data, tangent_cache.data, out_tangent); },
      [&](const auto& ex) { forward_tangent_cuda(ex, *this, params, v, x, cache, tangent_cache, out_tangent, B); });
}

template <class T>
void Mlp::backward_tangent(Context& ctx, ConstVector<T> params, ConstVector<T> v, ConstMatrix<T> x,
                           ConstVector<T> cache, ConstVector<T> tangent_cache, ConstMatrix<T> d_out,
                           ConstMatrix<T> d_out_tangent, VectorView<T> d_params_tangent) const {
  constexpr std::string_view fn = "Mlp::backward_tangent";
  check_type<T>(ctx, fn, "params");
  check_param_vector(ctx, fn, *this, "params", params);
  check_param_vector(ctx, fn, *this, "v", v);
  const std::int64_t B = check_x(ctx, fn, *this, x);
  check_cache(ctx, fn, *this, "cache", cache, B);
  check_cache(ctx, fn, *this, "tangent_cache", tangent_cache, B);
  detail::check_matrix(ctx, fn, MatrixArg("d_out", d_out), B, outputs());
  check_blas_extent(ctx, fn, "d_out", d_out);
  detail::check_matrix(ctx, fn, MatrixArg("d_out_tangent", d_out_tangent), B, outputs());
  check_blas_extent(ctx, fn, "d_out_tangent", d_out_tangent);
  check_param_vector(ctx, fn, *this, "d_params_tangent", d_params_tangent);
  check_outputs_disjoint(fn, {MatrixArg("d_params_tangent", d_params_tangent)},
                         {MatrixArg("params", params), MatrixArg("v", v), MatrixArg("x", x), MatrixArg("cache", cache),
                          MatrixArg("tangent_cache", tangent_cache), MatrixArg("d_out", d_out),
                          MatrixArg("d_out_tangent", d_out_tangent)});
  check_finite<T>(ctx, fn, "params", params);
  check_finite<T>(ctx, fn, "v", v);
  check_finite<T>(ctx, fn, "x", x);
  check_finite<T>(ctx, fn, "d_out", d_out);
  check_finite<T>(ctx, fn, "d_out_tangent", d_out_tangent);
  const Scratch scratch = acquire_scratch<T>(ctx, *this, B, true);
  detail::run_on<T>(
      ctx,
      [&] {
        cpu_blas::mlp_backward_tangent<T>(*this, params, v, x, cache.data, tangent_cache.data, d_out, d_out_tangent,
                                          d_params_tangent.data, static_cast<T*>(scratch.values));
      },
      [&](const auto& ex) {
        backward_tangent_cuda(ex, *this, params, v, x, cache, tangent_cache, d_out, d_out_tangent, d_params_tangent,
                              scratch, B);
      });
}

#define D2R_INSTANTIATE(T)                                                                                             \
  template void Mlp::init<T>(Context&, VectorView<T>, std::uint64_t) const;                                            \
  template void Mlp::forward<T>(Context&, ConstVector<T>, ConstMatrix<T>, VectorView<T>, MatrixView<T>) const;         \
  template void Mlp::backward<T>(Context&, ConstVector<T>, ConstMatrix<T>, ConstVector<T>, ConstMatrix<T>,             \
                                 VectorView<T>, MatrixView<T>) const;                                                  \
  template void Mlp::forward_tangent<T>(Context&, ConstVector<T>, ConstVector<T>, ConstMatrix<T>, ConstVector<T>,      \
                                        VectorView<T>, MatrixView<T>) const;                                           \
  template void Mlp::backward_tangent<T>(Context&, ConstVector<T>, ConstVector<T>, ConstMatrix<T>, ConstVector<T>,     \
                                         ConstVector<T>, ConstMatrix<T>, ConstMatrix<T>, VectorView<T>) const;
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r
