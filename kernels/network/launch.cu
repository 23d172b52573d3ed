// Launchers of the MLP trunk's kernels (device code in network.cuh, d2r/network.hpp).
#include <type_traits>

#include "kernels/network/launch.hpp"
#include "kernels/network/network.cuh"

namespace d2r::kernels::network {
namespace {
using network::kRowBlock;
using network::kThreads;
using network::kWarpRowMax;

/// Launches kernel<kGroup> for a row width: a warp per row up to kWarpRowMax features, else a block.
template <class Launch>
void launch_rows(std::int64_t rows, std::int64_t width, Launch&& launch) {
  if (width <= kWarpRowMax) {
    launch(std::integral_constant<int, kWarpSize>{}, grid_size(rows, kRowBlock / kWarpSize));
  } else {
    launch(std::integral_constant<int, kRowBlock>{}, grid_size(rows, 1));
  }
}

}  // namespace

void init_uniform(cudaStream_t stream, float* params, std::int64_t count, float bound, std::uint64_t seed,
                  std::uint32_t layer, std::uint32_t part) {
  network::init_uniform_kernel<<<grid_size(count, kThreads), kThreads, 0, stream>>>(params, count, bound, seed, layer, part);
  D2R_CHECK_LAUNCH(stream);
}

void bias_activation(cudaStream_t stream, MatrixView<float> z, const float* bias, Activation act, bool activate) {
  network::bias_activation_kernel<<<grid_size(z.rows * z.cols, kThreads), kThreads, 0, stream>>>(z, bias, act, activate);
  D2R_CHECK_LAUNCH(stream);
}

void tangent_activation(cudaStream_t stream, MatrixView<float> rz, const float* rbias, MatrixView<const float> a,
                        Activation act, bool activate) {
  network::tangent_activation_kernel<<<grid_size(rz.rows * rz.cols, kThreads), kThreads, 0, stream>>>(rz, rbias, a, act,
                                                                                              activate);
  D2R_CHECK_LAUNCH(stream);
}

void backward_activation(cudaStream_t stream, MatrixView<float> g, MatrixView<const float> a, Activation act) {
  network::backward_activation_kernel<<<grid_size(g.rows * g.cols, kThreads), kThreads, 0, stream>>>(g, a, act);
  D2R_CHECK_LAUNCH(stream);
}

void backward_tangent_activation(cudaStream_t stream, MatrixView<float> g, MatrixView<float> rg,
                                 MatrixView<const float> a, MatrixView<const float> ra, Activation act) {
  network::backward_tangent_activation_kernel<<<grid_size(g.rows * g.cols, kThreads), kThreads, 0, stream>>>(g, rg, a, ra, act);
  D2R_CHECK_LAUNCH(stream);
}

}  // namespace d2r::kernels::network

namespace d2r::kernels::network {

void fill(cudaStream_t stream, float* params, std::int64_t count, float value) {
  network::fill_kernel<<<grid_size(count, kThreads), kThreads, 0, stream>>>(params, count, value);
  D2R_CHECK_LAUNCH(stream);
}

void layer_norm_forward(cudaStream_t stream, MatrixView<float> z, const float* bias, const float* gamma,
                        const float* beta, MatrixView<float> xhat, float* rstd, Activation act) {
  launch_rows(z.rows, z.cols, [&](auto group, unsigned grid) {
    network::layer_norm_forward_kernel<decltype(group)::value>
        <<<grid, kRowBlock, 0, stream>>>(z, bias, gamma, beta, xhat, rstd, act);
  });
  D2R_CHECK_LAUNCH(stream);
}

void layer_norm_tangent(cudaStream_t stream, MatrixView<float> rz, const float* rbias, const float* gamma,
                        const float* rgamma, const float* rbeta, MatrixView<const float> a,
                        MatrixView<const float> xhat, const float* rstd, MatrixView<float> rxhat, float* rho,
                        Activation act) {
  launch_rows(rz.rows, rz.cols, [&](auto group, unsigned grid) {
    network::layer_norm_tangent_kernel<decltype(group)::value>
        <<<grid, kRowBlock, 0, stream>>>(rz, rbias, gamma, rgamma, rbeta, a, xhat, rstd, rxhat, rho, act);
  });
  D2R_CHECK_LAUNCH(stream);
}

void layer_norm_backward(cudaStream_t stream, MatrixView<float> g, MatrixView<const float> a,
                         MatrixView<const float> xhat, const float* rstd, const float* gamma, MatrixView<float> gn,
                         MatrixView<float> gn_xhat, Activation act) {
  launch_rows(g.rows, g.cols, [&](auto group, unsigned grid) {
    network::layer_norm_backward_kernel<decltype(group)::value>
        <<<grid, kRowBlock, 0, stream>>>(g, a, xhat, rstd, gamma, gn, gn_xhat, act);
  });
  D2R_CHECK_LAUNCH(stream);
}

void layer_norm_backward_tangent(cudaStream_t stream, MatrixView<float> g, MatrixView<float> rg,
                                 MatrixView<const float> a, MatrixView<const float> ra, MatrixView<const float> xhat,
                                 const float* rstd, MatrixView<const float> rxhat, const float* rho, const float* gamma,
                                 const float* rgamma, MatrixView<float> rgn, MatrixView<float> rgn_xhat,
                                 Activation act) {
  launch_rows(g.rows, g.cols, [&](auto group, unsigned grid) {
    network::layer_norm_backward_tangent_kernel<decltype(group)::value><<<grid, kRowBlock, 0, stream>>>(
        g, rg, a, ra, xhat, rstd, rxhat, rho, gamma, rgamma, rgn, rgn_xhat, act);
  });
  D2R_CHECK_LAUNCH(stream);
}

}  // namespace d2r::kernels::network
