#pragma once
/// @file network.hpp
/// Policy-network trunk: a multilayer perceptron (MLP) with the pieces an exact Hessian-vector
/// product needs (DESIGN.md §6): forward, backward, the forward tangent (R-op, J·v) and the
/// tangent of backward along a parameter direction v (R-backward).
///
/// An `Mlp` is a *layout*: it owns no parameters. Parameters, activations and gradients live in
/// views the caller owns (device memory on the cuda backend, host memory on cpu), so that an
/// optimiser, a solver or another engine works on one flat parameter vector.
///
/// Network (L = hidden.size() hidden layers, layer l = 0..L):
///   a_{-1} = x,   z_l = a_{l-1} W_lᵀ + b_l,   a_l = σ(z_l) (l < L),   out = z_L   (no activation)
/// With MlpSpec::layer_norm, every hidden layer (l < L; never the output layer) normalises z_l per
/// row over its h_l features before the activation (PyTorch's nn.LayerNorm(h_l), ε = 1e-5):
///   μ = mean(z_l),  s_l = 1/√(mean((z_l − μ)²) + ε)   (biased variance),
///   x̂_l = (z_l − μ)·s_l,   n_l = γ_l ⊙ x̂_l + β_l,   a_l = σ(n_l).
///
/// Flat parameter layout: layers in order; per layer the weight W_l (out_l x in_l, row-major:
/// W(o, i) at weight_offset + o·in_l + i) then the bias b_l (out_l entries at bias_offset); with
/// layer_norm, each hidden layer then continues with γ_l (h_l entries at gamma_offset =
/// bias_offset + h_l) and β_l (h_l entries at beta_offset = gamma_offset + h_l), so hidden layer
/// l occupies h_l·(in_l + 3) entries. `layer(l)` gives the offsets. hidden empty = one linear
/// layer (linear / logistic regression; layer_norm then changes nothing).
///
/// Activations cache (`cache`, cache_elements(B) entries, filled by forward): the hidden
/// activations a_0 .. a_{L-1}, each packed B x h_l row-major, in layer order (B·Σh entries,
/// Σh = Σ_l h_l). With layer_norm it continues with the normalised x̂_0 .. x̂_{L-1} (packed
/// B x h_l each, layer order; B·Σh entries) and then the per-row inverse deviations s_0 .. s_{L-1}
/// (B entries each, layer order; B·L entries): B·(2Σh + L) entries in all.
/// The tangent cache (same size and layout, filled by forward_tangent) holds Ra_l = σ'(n_l) ⊙ Rn_l
/// (σ'(z_l) ⊙ Rz_l without layer_norm), then Rx̂_l, then ρ_l = Rs_l / s_l (per row). Both
/// are caller-provided so that a composite operation (the network HVP) can keep them in its own
/// memory (for example Context::workspace(Workspace::composite)) while the primitives use the
/// context's `primitive` workspace for their scratch (the backward δ's and the column sums).
///
/// A network HVP is forward → forward_tangent → (head backward and head backward_tangent) →
/// backward (for the gradient) and backward_tangent (for H·v).
///
/// cuda backend: float only; the GEMMs run through cuBLAS (cublasSgemm on the context's handle
/// and stream, FP32 compute; the context never enables TF32 tensor-op math, so results are plain
/// FP32 accumulation and cuBLAS' kernel choice is deterministic for a given shape and device);
/// bias, activation and their derivatives in CUDA kernels; the LayerNorm row statistics in CUDA
/// kernels with one warp (h_l <= 512) or one block (wider) per row, reducing through CUB's
/// WarpReduce / BlockReduce in a fixed order; bias, γ and β gradients by deterministic column
/// sums (no atomics). cpu backend, float or double: the GEMMs through OpenBLAS
/// (host/src/cpu_blas.cpp; plain loops when built with D2R_WITH_OPENBLAS=OFF), everything else as
/// in the reference loops (host/reference/network.hpp), which stay the independent test oracle.
///
/// Gradients are sums over the B rows (no 1/B): a call on a row range of a larger batch returns
/// that shard's partial sum, to be all-reduced (DESIGN.md §10).
///
/// Every call validates shapes, sizes, memory space and aliasing (and, under ValueChecks::full,
/// finiteness of params, x, v and the cotangents) before writing any output; failures throw
/// d2r::Error naming the argument.
///
/// @code
///   d2r::Mlp net({.inputs = 8, .hidden = {64, 64}, .outputs = 4, .activation = d2r::Activation::tanh});
///   d2r::Buffer<float> params(ctx, net.parameter_count()), cache(ctx, net.cache_elements(B));
///   net.init(ctx, params.vector(), /*seed=*/1);
///   net.forward(ctx, params.vector(), x, cache.vector(), out);
///   net.backward(ctx, params.vector(), x, cache.vector(), d_out, grad.vector(), {});
/// @endcode

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "d2r/context.hpp"
#include "d2r/types/network.hpp"
#include "d2r/view.hpp"

namespace d2r {

/// "relu" or "tanh".
const char* to_string(Activation activation) noexcept;

/// Layout and operations of a multilayer perceptron. Cheap to copy; owns no device memory.
class Mlp {
 public:
  /// Validates the spec: inputs, outputs and every hidden width in [1, 2^31 − 1], a known activation,
  /// parameter_count() <= kMaxMlpParameters. Throws d2r::Error naming
  /// "spec.inputs", "spec.hidden" (with the index), "spec.outputs", "spec.activation" or
  /// "spec" (too many parameters).
  explicit Mlp(MlpSpec spec);

  [[nodiscard]] const MlpSpec& spec() const noexcept { return layout_.spec; }
  [[nodiscard]] std::int64_t inputs() const noexcept { return layout_.spec.inputs; }
  [[nodiscard]] std::int64_t outputs() const noexcept { return layout_.spec.outputs; }
  /// The layout (types/network.hpp) the CPU reference and the cuda launchers work on; an Mlp
  /// converts to it, so a reference function taking `const MlpLayout&` takes an Mlp.
  [[nodiscard]] const MlpLayout& layout() const noexcept { return layout_; }
  operator const MlpLayout&() const noexcept { return layout_; }  // NOLINT(google-explicit-constructor)
  /// Number of affine layers: hidden.size() + 1.
  [[nodiscard]] std::int64_t layer_count() const noexcept { return layout_.layer_count(); }
  /// Layer l in [0, layer_count()); throws d2r::Error for any other l.
  [[nodiscard]] MlpLayer layer(std::int64_t l) const;
  /// Total number of parameters: Σ_l out_l·(in_l + 1), plus 2·Σh (γ and β) with layer_norm.
  [[nodiscard]] std::int64_t parameter_count() const noexcept { return layout_.parameter_count; }
  /// Entries of the activations cache (and of the tangent cache) for a batch of B rows: B·Σh, or
  /// B·(2Σh + L) with layer_norm (0 for a linear model, whose cache views may then be empty).
  [[nodiscard]] std::int64_t cache_elements(std::int64_t batch) const noexcept { return batch * layout_.cache_per_row; }
  /// Largest hidden width (0 for a linear model).
  [[nodiscard]] std::int64_t max_hidden() const noexcept { return layout_.max_hidden; }
  /// "8-64-64-4 tanh" style description for messages ("8-64-64-4 tanh layernorm" with layer_norm).
  [[nodiscard]] std::string describe() const;

  /// PyTorch's default nn.Linear initialisation: W ~ Kaiming-uniform(a = √5) = U(−1/√in_l, 1/√in_l)
  /// and b ~ U(−1/√in_l, 1/√in_l), drawn from Philox keyed by (seed, step 0, row l,
  /// generation 0 for W / 1 for b, dim = element index within W_l or b_l), value = bound·(2u − 1)
  /// with u = uniform_open; with layer_norm, γ_l = 1 and β_l = 0 (nn.LayerNorm's init, exact on
  /// every backend). The cpu float and cuda backends produce bitwise-identical parameters;
  /// cpu double differs from them only by float rounding of the bound. Independent of ctx.seed().
  template <class T>
  void init(Context& ctx, VectorView<T> params, std::uint64_t seed) const;

  /// out = MLP(x) for the B rows of x (B x inputs); writes the hidden activations (and with
  /// layer_norm x̂_l and s_l) into `cache` (cache_elements(B) entries). out: B x outputs, may be
  /// strided; must not alias any input.
  template <class T>
  void forward(Context& ctx, ConstVector<T> params, ConstMatrix<T> x, VectorView<T> cache, MatrixView<T> out) const;

  /// Reverse mode: given d_out = ∂f/∂out (B x outputs) for some scalar f, and the cache that
  /// forward() produced for the same params and x, overwrites d_params with ∂f/∂params and,
  /// when d_x is not empty, d_x (B x inputs) with ∂f/∂x. Uses the context's primitive workspace.
  /// With δ_l = ∂f/∂z_l (δ_L = d_out) and g = δ_{l+1} W_{l+1} = ∂f/∂a_l:
  ///   gW_l = δ_lᵀ a_{l−1},  gb_l = Σ_rows δ_l,  δ_l = σ'(z_l) ⊙ g   (no layer_norm), or
  ///   gn = σ'(n_l) ⊙ g,  gγ_l = Σ_rows gn ⊙ x̂_l,  gβ_l = Σ_rows gn,  gx = γ_l ⊙ gn,
  ///   δ_l = s_l·(gx − mean(gx) − x̂_l·mean(gx ⊙ x̂_l))   (means per row over the h_l features).
  template <class T>
  void backward(Context& ctx, ConstVector<T> params, ConstMatrix<T> x, ConstVector<T> cache, ConstMatrix<T> d_out,
                VectorView<T> d_params, MatrixView<T> d_x) const;

  /// Forward tangent (Pearlmutter's R-op) along a parameter direction v (parameter_count()
  /// entries, same layout as params), x held fixed: out_tangent = J_params(out)·v, with
  ///   Rz_l = a_{l−1} V_lᵀ + Ra_{l−1} W_lᵀ + Rb_l,   Ra_l = σ'(z_l) ⊙ Rz_l   (Ra_{−1} = 0),
  /// and with layer_norm, through LayerNorm's Jacobian s(I − 11ᵀ/h − x̂x̂ᵀ/h) and the γ, β tangents:
  ///   c = mean(x̂_l ⊙ Rz_l),  Rx̂_l = s_l·(Rz_l − mean(Rz_l) − x̂_l·c),  ρ_l = Rs_l/s_l = −s_l·c,
  ///   Rn_l = Rγ_l ⊙ x̂_l + γ_l ⊙ Rx̂_l + Rβ_l,   Ra_l = σ'(n_l) ⊙ Rn_l;
  /// Ra_l (and Rx̂_l, ρ_l) written into `tangent_cache` (cache_elements(B) entries). Needs
  /// forward's cache.
  template <class T>
  void forward_tangent(Context& ctx, ConstVector<T> params, ConstVector<T> v, ConstMatrix<T> x, ConstVector<T> cache,
                       VectorView<T> tangent_cache, MatrixView<T> out_tangent) const;

  /// Tangent of backward() along v (R-backward), given the upstream gradient d_out = δ_L and its
  /// tangent d_out_tangent = Rδ_L (from the head's backward_tangent; zero when the upstream
  /// gradient does not move with the parameters). Overwrites d_params_tangent with R(∂f/∂params):
  ///   δ_{l−1} = σ'(z_{l−1}) ⊙ (δ_l W_l),
  ///   Rδ_{l−1} = σ''(z_{l−1}) Rz_{l−1} ⊙ (δ_l W_l) + σ'(z_{l−1}) ⊙ (δ_l V_l + Rδ_l W_l),
  ///   R gW_l = Rδ_lᵀ a_{l−1} + δ_lᵀ Ra_{l−1},   R gb_l = Σ_rows Rδ_l.
  /// With layer_norm, from g = δ_l W_l and Rg = δ_l V_l + Rδ_l W_l (∂f/∂a_{l−1} and its tangent),
  /// with the layer-(l−1) quantities of backward() (gn, gx, m1 = mean(gx), m2 = mean(gx ⊙ x̂)):
  ///   Rgn = σ''(n) Rn ⊙ g + σ'(n) ⊙ Rg,   Rgx = Rγ ⊙ gn + γ ⊙ Rgn,
  ///   R gγ = Σ_rows (Rgn ⊙ x̂ + gn ⊙ Rx̂),   R gβ = Σ_rows Rgn,
  ///   m3 = mean(Rgx),   m4 = mean(Rgx ⊙ x̂ + gx ⊙ Rx̂)   (= R m1 and R m2),
  ///   Rδ_{l−1} = ρ·δ_{l−1} + s·(Rgx − m3 − Rx̂·m2 − x̂·m4)   (Rs = ρ·s: the second-order terms
  ///   of the normalisation, from the tangents of s, x̂ and the two row means).
  /// Needs forward's cache and forward_tangent's tangent_cache for the same params, v and x.
  template <class T>
  void backward_tangent(Context& ctx, ConstVector<T> params, ConstVector<T> v, ConstMatrix<T> x, ConstVector<T> cache,
                        ConstVector<T> tangent_cache, ConstMatrix<T> d_out, ConstMatrix<T> d_out_tangent,
                        VectorView<T> d_params_tangent) const;

 private:
  MlpLayout layout_;
};

}  // namespace d2r
