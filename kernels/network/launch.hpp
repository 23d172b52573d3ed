#pragma once
// Host-callable launchers of the elementwise steps of the MLP trunk (launch.cu).
// Plain C++ (host/src includes it without nvcc; with -DD2R_ENABLE_CUDA=OFF nothing here is
// defined, and host/src reaches these only through run_on's cuda branch). Each launcher enqueues
// work on `stream` and checks the launch; none synchronises unless its comment says so.
// Arguments are already validated by the public entry points in host/src.

#include <cstddef>
#include <cstdint>

#include "common/math/philox.hpp"
#include "d2r/types/cuda.hpp"
#include "d2r/types/network.hpp"
#include "d2r/view.hpp"

namespace d2r::kernels::network {

using math::DrawPosition;

// ---- networks (launch.cu): the elementwise steps of the MLP trunk (d2r/network.hpp); the GEMMs
// are cuBLAS calls in host/src/network.cpp. Matrices here are the packed or strided B x width
// activations of one layer; `bias`/`rbias` hold one value per column.
/// params[i] = bound · (2u − 1), u = uniform_open(draw_bits(seed, 0, layer, part, i / 4).v[i % 4]).
void init_uniform(cudaStream_t stream, float* params, std::int64_t count, float bound, std::uint64_t seed,
                  std::uint32_t layer, std::uint32_t part);
/// z = σ(z + b) (activate) or z + b, in place.
void bias_activation(cudaStream_t stream, MatrixView<float> z, const float* bias, Activation act, bool activate);
/// rz = σ'(z) ⊙ (rz + rb) with σ' from the cached a (activate), or rz + rb; `a` unread when !activate.
void tangent_activation(cudaStream_t stream, MatrixView<float> rz, const float* rbias, MatrixView<const float> a,
                        Activation act, bool activate);
/// g = σ'(z) ⊙ g (δ of the layer below from δ W).
void backward_activation(cudaStream_t stream, MatrixView<float> g, MatrixView<const float> a, Activation act);
/// With g = δ W and rg = δ V + Rδ W on entry: g = σ' ⊙ g and rg = σ''Rz ⊙ g_in + σ' ⊙ rg.
void backward_tangent_activation(cudaStream_t stream, MatrixView<float> g, MatrixView<float> rg,
                                 MatrixView<const float> a, MatrixView<const float> ra, Activation act);
/// params[i] = value for i < count (LayerNorm's γ = 1 at init).
void fill(cudaStream_t stream, float* params, std::int64_t count, float value);

// LayerNorm of a hidden layer (d2r/network.hpp; the row loops of host/reference/network.hpp):
// one warp (h <= 512) or one 256-thread block per row, row sums through CUB in a fixed order.
// `z`, `rz`, `g`, `rg` are the layer's B x h activation-slot matrices (updated in place); x̂, Rx̂
// and the scratch outputs are B x h, `rstd` (s) and `rho` (ρ) B entries; γ, β and their
// tangents h entries.

/// z ← a = σ(γ x̂ + β) from z = aWᵀ on entry (b added here); writes x̂ and s per row.
void layer_norm_forward(cudaStream_t stream, MatrixView<float> z, const float* bias, const float* gamma,
                        const float* beta, MatrixView<float> xhat, float* rstd, Activation act);
/// rz ← Ra = σ'(n)(Rγ x̂ + γ Rx̂ + Rβ) from rz = aVᵀ + RaWᵀ on entry (Rb added here); writes Rx̂, ρ.
void layer_norm_tangent(cudaStream_t stream, MatrixView<float> rz, const float* rbias, const float* gamma,
                        const float* rgamma, const float* rbeta, MatrixView<const float> a,
                        MatrixView<const float> xhat, const float* rstd, MatrixView<float> rxhat, float* rho,
                        Activation act);
/// g ← δ = ∂f/∂z from g = ∂f/∂a on entry; writes gn = σ'(n) g and gn ⊙ x̂ (column-summed by the
/// caller into the β and γ gradients).
void layer_norm_backward(cudaStream_t stream, MatrixView<float> g, MatrixView<const float> a,
                         MatrixView<const float> xhat, const float* rstd, const float* gamma, MatrixView<float> gn,
                         MatrixView<float> gn_xhat, Activation act);
/// (g, rg) ← (δ, Rδ) from ∂f/∂a and its tangent; writes Rgn and Rgn ⊙ x̂ + gn ⊙ Rx̂ (column-summed
/// by the caller into the β and γ gradient tangents).
void layer_norm_backward_tangent(cudaStream_t stream, MatrixView<float> g, MatrixView<float> rg,
                                 MatrixView<const float> a, MatrixView<const float> ra, MatrixView<const float> xhat,
                                 const float* rstd, MatrixView<const float> rxhat, const float* rho, const float* gamma,
                                 const float* rgamma, MatrixView<float> rgn, MatrixView<float> rgn_xhat,
                                 Activation act);

}  // namespace d2r::kernels::network
