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
///
/// Flat parameter layout: layers in order; per layer the weight W_l (out_l x in_l, row-major:
/// W(o, i) at weight_offset + o·in_l + i) then the bias b_l (out_l entries at bias_offset).
/// `layer(l)` gives the offsets. hidden empty = one linear layer (linear / logistic regression).
///
/// Activations cache (`cache`, cache_elements(B) entries, filled by forward): the hidden
/// activations a_0 .. a_{L-1}, each packed B x h_l row-major, in layer order. The tangent
/// cache (same size and layout, filled by forward_tangent) holds Ra_l = σ'(z_l) ⊙ Rz_l. Both
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
/// bias, activation and their derivatives in CUDA kernels; bias gradients by deterministic
/// column sums (no atomics). cpu backend, float or double: the GEMMs through OpenBLAS
/// (host/src/cpu_blas.cpp; plain loops when built with D2R_WITH_OPENBLAS=OFF), everything else as
/// in the reference loops (host/reference/network_ref.hpp), which stay the independent test oracle.
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
///
/// Not yet available: LayerNorm between layers (MlpSpec::layer_norm = true is rejected with
/// ErrorKind::unsupported).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "d2r/context.hpp"
#include "d2r/view.hpp"

namespace d2r {

/// Hidden-layer nonlinearity σ.
enum class Activation {
  relu,  ///< max(z, 0); σ'(z) = [z > 0] (0 at the kink), σ'' = 0
  tanh,  ///< tanh(z);   σ' = 1 − a², σ'' = −2a(1 − a²) with a = tanh(z)
};
/// "relu" or "tanh".
const char* to_string(Activation activation) noexcept;

/// Shape of an MLP.
struct MlpSpec {
  std::int64_t inputs = 0;           ///< input width (>= 1)
  std::vector<std::int64_t> hidden = {};  ///< hidden widths (each >= 1); empty: a single linear layer
  std::int64_t outputs = 0;          ///< output width (>= 1): the head's input (its raw outputs)
  Activation activation = Activation::relu;
  bool layer_norm = false;  ///< LayerNorm after each hidden affine map: NOT YET AVAILABLE (rejected)
};

/// Where one affine layer sits in the flat parameter vector.
struct MlpLayer {
  std::int64_t inputs;         ///< in_l
  std::int64_t outputs;        ///< out_l
  std::int64_t weight_offset;  ///< first entry of W_l (out_l x in_l, row-major)
  std::int64_t bias_offset;    ///< first entry of b_l (out_l entries) = weight_offset + out_l·in_l
  bool activated;              ///< σ follows this layer (every layer but the last)
};

/// Largest parameter count an Mlp accepts (Philox keys index elements with 32-bit quads).
inline constexpr std::int64_t kMaxMlpParameters = std::int64_t{1} << 33;

/// Layout and operations of a multilayer perceptron. Cheap to copy; owns no device memory.
class Mlp {
 public:
  /// Validates the spec: inputs, outputs and every hidden width in [1, 2^31 − 1], a known activation,
  /// layer_norm false, parameter_count() <= kMaxMlpParameters. Throws d2r::Error naming
  /// "spec.inputs", "spec.hidden" (with the index), "spec.outputs", "spec.activation" or
  /// "spec.layer_norm".
  explicit Mlp(MlpSpec spec);

  [[nodiscard]] const MlpSpec& spec() const noexcept { return spec_; }
  [[nodiscard]] std::int64_t inputs() const noexcept { return spec_.inputs; }
  [[nodiscard]] std::int64_t outputs() const noexcept { return spec_.outputs; }
  /// Number of affine layers: hidden.size() + 1.
  [[nodiscard]] std::int64_t layer_count() const noexcept { return static_cast<std::int64_t>(layers_.size()); }
  /// Layer l in [0, layer_count()); throws d2r::Error for any other l.
  [[nodiscard]] MlpLayer layer(std::int64_t l) const;
  /// Total number of parameters: Σ_l out_l·(in_l + 1).
  [[nodiscard]] std::int64_t parameter_count() const noexcept { return parameter_count_; }
  /// Entries of the activations cache (and of the tangent cache) for a batch of B rows: B·Σ h_l
  /// (0 for a linear model, whose cache views may then be empty).
  [[nodiscard]] std::int64_t cache_elements(std::int64_t batch) const noexcept { return batch * hidden_sum_; }
  /// Largest hidden width (0 for a linear model).
  [[nodiscard]] std::int64_t max_hidden() const noexcept { return max_hidden_; }
  /// "8-64-64-4 tanh" style description for messages.
  [[nodiscard]] std::string describe() const;

  /// PyTorch's default nn.Linear initialisation: W ~ Kaiming-uniform(a = √5) = U(−1/√in_l, 1/√in_l)
  /// and b ~ U(−1/√in_l, 1/√in_l), drawn from Philox keyed by (seed, step 0, row l,
  /// generation 0 for W / 1 for b, dim = element index within W_l or b_l), value = bound·(2u − 1)
  /// with u = uniform_open. The cpu float and cuda backends produce bitwise-identical parameters;
  /// cpu double differs from them only by float rounding of the bound. Independent of ctx.seed().
  template <class T>
  void init(Context& ctx, VectorView<T> params, std::uint64_t seed) const;

  /// out = MLP(x) for the B rows of x (B x inputs); writes the hidden activations into `cache`
  /// (cache_elements(B) entries). out: B x outputs, may be strided; must not alias any input.
  template <class T>
  void forward(Context& ctx, ConstVector<T> params, ConstMatrix<T> x, VectorView<T> cache, MatrixView<T> out) const;

  /// Reverse mode: given d_out = ∂f/∂out (B x outputs) for some scalar f, and the cache that
  /// forward() produced for the same params and x, overwrites d_params with ∂f/∂params and,
  /// when d_x is not empty, d_x (B x inputs) with ∂f/∂x. Uses the context's primitive workspace.
  template <class T>
  void backward(Context& ctx, ConstVector<T> params, ConstMatrix<T> x, ConstVector<T> cache, ConstMatrix<T> d_out,
                VectorView<T> d_params, MatrixView<T> d_x) const;

  /// Forward tangent (Pearlmutter's R-op) along a parameter direction v (parameter_count()
  /// entries, same layout as params), x held fixed: out_tangent = J_params(out)·v, with
  ///   Rz_l = a_{l−1} V_lᵀ + Ra_{l−1} W_lᵀ + Rb_l,   Ra_l = σ'(z_l) ⊙ Rz_l   (Ra_{−1} = 0),
  /// and Ra_l written into `tangent_cache` (cache_elements(B) entries). Needs forward's cache.
  template <class T>
  void forward_tangent(Context& ctx, ConstVector<T> params, ConstVector<T> v, ConstMatrix<T> x, ConstVector<T> cache,
                       VectorView<T> tangent_cache, MatrixView<T> out_tangent) const;

  /// Tangent of backward() along v (R-backward), given the upstream gradient d_out = δ_L and its
  /// tangent d_out_tangent = Rδ_L (from the head's backward_tangent; zero when the upstream
  /// gradient does not move with the parameters). Overwrites d_params_tangent with R(∂f/∂params):
  ///   δ_{l−1} = σ'(z_{l−1}) ⊙ (δ_l W_l),
  ///   Rδ_{l−1} = σ''(z_{l−1}) Rz_{l−1} ⊙ (δ_l W_l) + σ'(z_{l−1}) ⊙ (δ_l V_l + Rδ_l W_l),
  ///   R gW_l = Rδ_lᵀ a_{l−1} + δ_lᵀ Ra_{l−1},   R gb_l = Σ_rows Rδ_l.
  /// Needs forward's cache and forward_tangent's tangent_cache for the same params, v and x.
  template <class T>
  void backward_tangent(Context& ctx, ConstVector<T> params, ConstVector<T> v, ConstMatrix<T> x, ConstVector<T> cache,
                        ConstVector<T> tangent_cache, ConstMatrix<T> d_out, ConstMatrix<T> d_out_tangent,
                        VectorView<T> d_params_tangent) const;

 private:
  MlpSpec spec_;
  std::vector<MlpLayer> layers_;
  std::int64_t parameter_count_ = 0;
  std::int64_t hidden_sum_ = 0;
  std::int64_t max_hidden_ = 0;
};

}  // namespace d2r
