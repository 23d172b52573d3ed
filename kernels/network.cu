// Elementwise kernels of the MLP trunk (d2r/network.hpp): parameter init from Philox, bias +
// activation after a cuBLAS GEMM, and the activation derivatives of backward and the tangents.
// The GEMMs themselves are issued by host/src/network.cpp. One thread per element, grid-stride.
#include "kernels/common.cuh"
#include "kernels/launch.hpp"
#include "kernels/math/philox.hpp"
#include "kernels/network.cuh"

namespace d2r::kernels {
namespace {

constexpr int kThreads = 256;

D2R_KERNEL void init_uniform_kernel(float* params, std::int64_t count, float bound, std::uint64_t seed,
                                    std::uint32_t layer, std::uint32_t part) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const math::Philox4 bits = math::draw_bits(seed, 0u, layer, part, static_cast<std::uint32_t>(i / 4));
    const float u = math::uniform_open<float>(bits.v[i % 4]);
    params[i] = __fmul_rn(bound, 2.0f * u - 1.0f);  // no contraction: the reference's bound·(2u − 1)
  }
}

D2R_KERNEL void bias_activation_kernel(MatrixView<float> z, const float* bias, Activation act, bool activate) {
  const std::int64_t total = z.rows * z.cols;
  for (std::int64_t k = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = k / z.cols, c = k % z.cols;
    const float v = z(r, c) + bias[c];
    z(r, c) = activate ? network::activate(act, v) : v;
  }
}

D2R_KERNEL void tangent_activation_kernel(MatrixView<float> rz, const float* rbias, MatrixView<const float> a,
                                          Activation act, bool activate) {
  const std::int64_t total = rz.rows * rz.cols;
  for (std::int64_t k = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = k / rz.cols, c = k % rz.cols;
    const float t = rz(r, c) + rbias[c];
    rz(r, c) = activate ? network::slope(act, a(r, c)) * t : t;
  }
}

D2R_KERNEL void backward_activation_kernel(MatrixView<float> g, MatrixView<const float> a, Activation act) {
  const std::int64_t total = g.rows * g.cols;
  for (std::int64_t k = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = k / g.cols, c = k % g.cols;
    g(r, c) *= network::slope(act, a(r, c));
  }
}

D2R_KERNEL void backward_tangent_activation_kernel(MatrixView<float> g, MatrixView<float> rg, MatrixView<const float> a,
                                                   MatrixView<const float> ra, Activation act) {
  const std::int64_t total = g.rows * g.cols;
  for (std::int64_t k = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = k / g.cols, c = k % g.cols;
    const float av = a(r, c), s = network::slope(act, av), gv = g(r, c);
    g(r, c) = s * gv;
    rg(r, c) = network::curvature_times(act, av, ra(r, c)) * gv + s * rg(r, c);
  }
}

}  // namespace

void mlp_init_uniform(cudaStream_t stream, float* params, std::int64_t count, float bound, std::uint64_t seed,
                      std::uint32_t layer, std::uint32_t part) {
  init_uniform_kernel<<<grid_size(count, kThreads), kThreads, 0, stream>>>(params, count, bound, seed, layer, part);
  D2R_CHECK_LAUNCH(stream);
}

void mlp_bias_activation(cudaStream_t stream, MatrixView<float> z, const float* bias, Activation act, bool activate) {
  bias_activation_kernel<<<grid_size(z.rows * z.cols, kThreads), kThreads, 0, stream>>>(z, bias, act, activate);
  D2R_CHECK_LAUNCH(stream);
}

void mlp_tangent_activation(cudaStream_t stream, MatrixView<float> rz, const float* rbias, MatrixView<const float> a,
                            Activation act, bool activate) {
  tangent_activation_kernel<<<grid_size(rz.rows * rz.cols, kThreads), kThreads, 0, stream>>>(rz, rbias, a, act,
                                                                                              activate);
  D2R_CHECK_LAUNCH(stream);
}

void mlp_backward_activation(cudaStream_t stream, MatrixView<float> g, MatrixView<const float> a, Activation act) {
  backward_activation_kernel<<<grid_size(g.rows * g.cols, kThreads), kThreads, 0, stream>>>(g, a, act);
  D2R_CHECK_LAUNCH(stream);
}

void mlp_backward_tangent_activation(cudaStream_t stream, MatrixView<float> g, MatrixView<float> rg,
                                     MatrixView<const float> a, MatrixView<const float> ra, Activation act) {
  backward_tangent_activation_kernel<<<grid_size(g.rows * g.cols, kThreads), kThreads, 0, stream>>>(g, rg, a, ra, act);
  D2R_CHECK_LAUNCH(stream);
}

}  // namespace d2r::kernels
