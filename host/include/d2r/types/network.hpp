#pragma once
/// @file types/network.hpp
/// Plain types of the MLP trunk (d2r/network.hpp): the activation, the spec, where each layer sits
/// in the flat parameter vector, and MlpLayout, the whole layout computed from a spec by
/// mlp_layout(). The CPU reference and the cuda launchers work on an MlpLayout; d2r::Mlp validates
/// the spec and holds one. Compiles without CUDA.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "d2r/view.hpp"

namespace d2r {

/// Hidden-layer nonlinearity σ.
enum class Activation {
  relu,  ///< max(z, 0); σ'(z) = [z > 0] (0 at the kink), σ'' = 0
  tanh,  ///< tanh(z);   σ' = 1 − a², σ'' = −2a(1 − a²) with a = tanh(z)
};
/// Shape of an MLP.
struct MlpSpec {
  std::int64_t inputs = 0;           ///< input width (>= 1)
  std::vector<std::int64_t> hidden = {};  ///< hidden widths (each >= 1); empty: a single linear layer
  std::int64_t outputs = 0;          ///< output width (>= 1): the head's input (its raw outputs)
  Activation activation = Activation::relu;
  /// LayerNorm (ε = 1e-5, learned elementwise γ and β) after each hidden affine map, before σ.
  bool layer_norm = false;
};

/// Where one affine layer sits in the flat parameter vector.
struct MlpLayer {
  std::int64_t inputs;         ///< in_l
  std::int64_t outputs;        ///< out_l
  std::int64_t weight_offset;  ///< first entry of W_l (out_l x in_l, row-major)
  std::int64_t bias_offset;    ///< first entry of b_l (out_l entries) = weight_offset + out_l·in_l
  bool activated;              ///< σ follows this layer (every layer but the last)
  bool normalized = false;     ///< LayerNorm follows the affine map (every hidden layer when spec.layer_norm)
  std::int64_t gamma_offset = -1;  ///< first entry of γ_l (out_l entries) = bias_offset + out_l; −1 if !normalized
  std::int64_t beta_offset = -1;   ///< first entry of β_l (out_l entries) = gamma_offset + out_l; −1 if !normalized
};

/// Largest parameter count an Mlp accepts (Philox keys index elements with 32-bit quads).
inline constexpr std::int64_t kMaxMlpParameters = std::int64_t{1} << 33;

/// The layout of an MLP: its layers in the flat parameter vector and the sizes derived from them.
struct MlpLayout {
  MlpSpec spec;
  std::vector<MlpLayer> layers;
  std::int64_t parameter_count = 0;  ///< Σ_l out_l·(in_l + 1), plus 2·Σh with layer_norm
  std::int64_t hidden_sum = 0;       ///< Σh: sum of the hidden widths
  std::int64_t cache_per_row = 0;    ///< Σh, or 2Σh + L with layer_norm
  std::int64_t max_hidden = 0;       ///< largest hidden width (0 for a linear model)

  /// Number of affine layers: hidden.size() + 1.
  [[nodiscard]] std::int64_t layer_count() const noexcept { return static_cast<std::int64_t>(layers.size()); }
  /// Layer l in [0, layer_count()) (unchecked: Mlp::layer checks).
  [[nodiscard]] const MlpLayer& layer(std::int64_t l) const noexcept { return layers[static_cast<std::size_t>(l)]; }
};

/// The layout of a spec whose widths are >= 1 and whose parameter count fits (Mlp's constructor
/// checks both before calling this). Layer l: W_l (out_l x in_l, row-major) at weight_offset,
/// then b_l, then γ_l and β_l for a LayerNorm layer.
inline MlpLayout mlp_layout(const MlpSpec& spec) {
  MlpLayout layout;
  layout.spec = spec;
  std::int64_t in = spec.inputs, offset = 0;
  const std::size_t count = spec.hidden.size() + 1;
  for (std::size_t l = 0; l < count; ++l) {
    const bool last = l + 1 == count;
    const std::int64_t out = last ? spec.outputs : spec.hidden[l];
    const bool normalized = spec.layer_norm && !last;
    const std::int64_t extra = normalized ? 2 : 0;  // γ and β
    const std::int64_t bias = offset + out * in;
    layout.layers.push_back({.inputs = in,
                             .outputs = out,
                             .weight_offset = offset,
                             .bias_offset = bias,
                             .activated = !last,
                             .normalized = normalized,
                             .gamma_offset = normalized ? bias + out : -1,
                             .beta_offset = normalized ? bias + 2 * out : -1});
    offset += out * (in + 1 + extra);
    if (!last) {
      layout.hidden_sum += out;
      layout.max_hidden = std::max(layout.max_hidden, out);
    }
    in = out;
  }
  layout.parameter_count = offset;
  // Activations (and with layer_norm x̂ and one s per row) of every hidden layer.
  layout.cache_per_row =
      spec.layer_norm ? 2 * layout.hidden_sum + static_cast<std::int64_t>(spec.hidden.size()) : layout.hidden_sum;
  return layout;
}

}  // namespace d2r
