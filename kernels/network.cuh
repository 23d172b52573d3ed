#pragma once
// Device code of the MLP trunk (network.cu): the activation σ and its derivatives, written in
// terms of the stored activation a = σ(z) so that the cache holds one B x h matrix per layer.
// nvcc only. The CPU reference (host/reference/network_ref.hpp) computes the same expressions.

#include "d2r/network.hpp"

namespace d2r::kernels::network {

/// σ(z).
__device__ __forceinline__ float activate(Activation act, float z) {
  return act == Activation::relu ? fmaxf(z, 0.0f) : tanhf(z);
}
/// σ'(z) from a = σ(z): [a > 0] for relu, 1 − a² for tanh.
__device__ __forceinline__ float slope(Activation act, float a) {
  return act == Activation::relu ? (a > 0.0f ? 1.0f : 0.0f) : 1.0f - a * a;
}
/// σ''(z)·Rz from a and Ra = σ'(z)·Rz: 0 for relu, −2a·Ra for tanh.
__device__ __forceinline__ float curvature_times(Activation act, float a, float ra) {
  return act == Activation::relu ? 0.0f : -2.0f * a * ra;
}

}  // namespace d2r::kernels::network
