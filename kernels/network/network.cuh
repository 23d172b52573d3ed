#pragma once
// Device code of the MLP trunk (launchers: launch.cu): the activation σ and its derivatives,
// written in terms of the stored activation a = σ(z) so that the cache holds one B x h matrix per
// layer; the elementwise kernels (parameter init from Philox, bias + activation after a cuBLAS
// GEMM, activation derivatives of backward and the tangents: one thread per element,
// grid-stride) and LayerNorm's row kernels (one warp or one block per row, grid-stride over rows,
// row sums through CUB in a fixed order: deterministic). The GEMMs themselves are issued by
// host/src/network.cpp. The CPU reference (host/reference/network.hpp) computes the same
// expressions.

#include <cub/cub.cuh>

#include <type_traits>

#include "d2r/types/network.hpp"
#include "d2r/view.hpp"
#include "kernels/common.cuh"
#include "common/math/philox.hpp"

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

D2R_KERNEL void fill_kernel(float* p, std::int64_t count, float value) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    p[i] = value;
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

// ------------------------------------------------------------------------------ LayerNorm rows

constexpr int kRowBlock = 256;       // threads per block of the row kernels
constexpr std::int64_t kWarpRowMax = 512;  // widest row given to one warp

/// N running sums, reduced together.
template <int N>
struct Sums {
  float v[N];
};
struct AddSums {
  template <int N>
  __device__ __forceinline__ Sums<N> operator()(const Sums<N>& a, const Sums<N>& b) const {
    Sums<N> c;
#pragma unroll
    for (int k = 0; k < N; ++k) c.v[k] = a.v[k] + b.v[k];
    return c;
  }
};
template <int N>
__device__ __forceinline__ Sums<N> zero_sums() {
  Sums<N> z;
#pragma unroll
  for (int k = 0; k < N; ++k) z.v[k] = 0.0f;
  return z;
}

/// kGroup threads work on one row: a warp (kGroup = 32, kRowBlock / 32 rows per block) or the
/// whole block (kGroup = kRowBlock). `sum` returns the row's totals to every thread of the group,
/// reduced by CUB in a fixed order (the result depends on the row width only).
template <int kGroup, int N>
struct RowTeam {
  static_assert(kGroup == kWarpSize || kGroup == kRowBlock);
  static constexpr bool kWarp = kGroup == kWarpSize;
  static constexpr int kRowsPerBlock = kRowBlock / kGroup;
  using WarpReduce = cub::WarpReduce<Sums<N>>;
  using BlockReduce = cub::BlockReduce<Sums<N>, kRowBlock>;
  struct Storage {
    std::conditional_t<kWarp, typename WarpReduce::TempStorage[kRowsPerBlock], typename BlockReduce::TempStorage>
        temp;
    Sums<N> total;
  };

  __device__ static int lane() { return static_cast<int>(threadIdx.x) % kGroup; }
  __device__ static std::int64_t first_row() {
    return static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + static_cast<int>(threadIdx.x) / kGroup;
  }
  __device__ static std::int64_t row_step() { return static_cast<std::int64_t>(gridDim.x) * kRowsPerBlock; }

  __device__ static Sums<N> sum(Storage& st, const Sums<N>& local) {
    if constexpr (kWarp) {
      Sums<N> t = WarpReduce(st.temp[threadIdx.x / kWarpSize]).Reduce(local, AddSums{});
#pragma unroll
      for (int k = 0; k < N; ++k) t.v[k] = __shfl_sync(0xffffffffu, t.v[k], 0);
      __syncwarp();  // the warp's temp storage is reused by the next reduction
      return t;
    } else {
      const Sums<N> t = BlockReduce(st.temp).Reduce(local, AddSums{});
      if (threadIdx.x == 0) st.total = t;
      __syncthreads();
      const Sums<N> out = st.total;
      __syncthreads();  // temp and total are reused by the next reduction
      return out;
    }
  }
};

/// Every thread of a group walks the same rows, so the group's reductions stay converged.
template <int kGroup>
D2R_KERNEL void __launch_bounds__(kRowBlock)
    layer_norm_forward_kernel(MatrixView<float> z, const float* bias, const float* gamma, const float* beta,
                              MatrixView<float> xhat, float* rstd, Activation act) {
  using Team = RowTeam<kGroup, 1>;
  D2R_SHARED(typename Team::Storage, st);
  const std::int64_t h = z.cols;
  const float n = static_cast<float>(h);
  const int lane = Team::lane();
  for (std::int64_t r = Team::first_row(); r < z.rows; r += Team::row_step()) {
    float* zr = &z(r, 0);
    float* xr = &xhat(r, 0);
    Sums<1> acc = zero_sums<1>();
    for (std::int64_t i = lane; i < h; i += kGroup) {
      const float v = zr[i] + bias[i];
      zr[i] = v;
      acc.v[0] += v;
    }
    const float mean = Team::sum(st, acc).v[0] / n;
    acc = zero_sums<1>();
    for (std::int64_t i = lane; i < h; i += kGroup) {
      const float d = zr[i] - mean;
      acc.v[0] += d * d;
    }
    const float s = 1.0f / sqrtf(Team::sum(st, acc).v[0] / n + 1e-5f);
    for (std::int64_t i = lane; i < h; i += kGroup) {
      const float x = (zr[i] - mean) * s;
      xr[i] = x;
      zr[i] = network::activate(act, gamma[i] * x + beta[i]);
    }
    if (lane == 0) rstd[r] = s;
  }
}

template <int kGroup>
D2R_KERNEL void __launch_bounds__(kRowBlock)
    layer_norm_tangent_kernel(MatrixView<float> rz, const float* rbias, const float* gamma, const float* rgamma,
                              const float* rbeta, MatrixView<const float> a, MatrixView<const float> xhat,
                              const float* rstd, MatrixView<float> rxhat, float* rho, Activation act) {
  using Team = RowTeam<kGroup, 2>;
  D2R_SHARED(typename Team::Storage, st);
  const std::int64_t h = rz.cols;
  const float n = static_cast<float>(h);
  const int lane = Team::lane();
  for (std::int64_t r = Team::first_row(); r < rz.rows; r += Team::row_step()) {
    float* rr = &rz(r, 0);
    const float* xr = &xhat(r, 0);
    Sums<2> acc = zero_sums<2>();
    for (std::int64_t i = lane; i < h; i += kGroup) {
      const float t = rr[i] + rbias[i];
      rr[i] = t;
      acc.v[0] += t;
      acc.v[1] += xr[i] * t;
    }
    const Sums<2> tot = Team::sum(st, acc);
    const float mean = tot.v[0] / n, c = tot.v[1] / n, s = rstd[r];
    const float* ar = &a(r, 0);
    float* rxr = &rxhat(r, 0);
    for (std::int64_t i = lane; i < h; i += kGroup) {
      const float rx = s * (rr[i] - mean - xr[i] * c);
      rxr[i] = rx;
      rr[i] = network::slope(act, ar[i]) * (rgamma[i] * xr[i] + gamma[i] * rx + rbeta[i]);
    }
    if (lane == 0) rho[r] = -s * c;
  }
}

template <int kGroup>
D2R_KERNEL void __launch_bounds__(kRowBlock)
    layer_norm_backward_kernel(MatrixView<float> g, MatrixView<const float> a, MatrixView<const float> xhat,
                               const float* rstd, const float* gamma, MatrixView<float> gn, MatrixView<float> gn_xhat,
                               Activation act) {
  using Team = RowTeam<kGroup, 2>;
  D2R_SHARED(typename Team::Storage, st);
  const std::int64_t h = g.cols;
  const float n = static_cast<float>(h);
  const int lane = Team::lane();
  for (std::int64_t r = Team::first_row(); r < g.rows; r += Team::row_step()) {
    float* gr = &g(r, 0);
    const float* ar = &a(r, 0);
    const float* xr = &xhat(r, 0);
    Sums<2> acc = zero_sums<2>();
    for (std::int64_t i = lane; i < h; i += kGroup) {
      const float gni = network::slope(act, ar[i]) * gr[i];
      gn(r, i) = gni;
      gn_xhat(r, i) = gni * xr[i];
      const float gx = gamma[i] * gni;
      gr[i] = gx;
      acc.v[0] += gx;
      acc.v[1] += gx * xr[i];
    }
    const Sums<2> tot = Team::sum(st, acc);
    const float m1 = tot.v[0] / n, m2 = tot.v[1] / n, s = rstd[r];
    for (std::int64_t i = lane; i < h; i += kGroup) gr[i] = s * (gr[i] - m1 - xr[i] * m2);
  }
}

template <int kGroup>
D2R_KERNEL void __launch_bounds__(kRowBlock)
    layer_norm_backward_tangent_kernel(MatrixView<float> g, MatrixView<float> rg, MatrixView<const float> a,
                                       MatrixView<const float> ra, MatrixView<const float> xhat, const float* rstd,
                                       MatrixView<const float> rxhat, const float* rho, const float* gamma,
                                       const float* rgamma, MatrixView<float> rgn, MatrixView<float> rgn_xhat,
                                       Activation act) {
  using Team = RowTeam<kGroup, 4>;
  D2R_SHARED(typename Team::Storage, st);
  const std::int64_t h = g.cols;
  const float n = static_cast<float>(h);
  const int lane = Team::lane();
  for (std::int64_t r = Team::first_row(); r < g.rows; r += Team::row_step()) {
    float* gr = &g(r, 0);
    float* rgr = &rg(r, 0);
    const float* ar = &a(r, 0);
    const float* rar = &ra(r, 0);
    const float* xr = &xhat(r, 0);
    const float* rxr = &rxhat(r, 0);
    Sums<4> acc = zero_sums<4>();
    for (std::int64_t i = lane; i < h; i += kGroup) {
      const float sl = network::slope(act, ar[i]), gi = gr[i];
      const float gni = sl * gi;
      const float rgni = network::curvature_times(act, ar[i], rar[i]) * gi + sl * rgr[i];
      rgn(r, i) = rgni;
      rgn_xhat(r, i) = rgni * xr[i] + gni * rxr[i];
      const float gx = gamma[i] * gni, rgx = rgamma[i] * gni + gamma[i] * rgni;
      gr[i] = gx;
      rgr[i] = rgx;
      acc.v[0] += gx;
      acc.v[1] += gx * xr[i];
      acc.v[2] += rgx;
      acc.v[3] += rgx * xr[i] + gx * rxr[i];
    }
    const Sums<4> tot = Team::sum(st, acc);
    const float m1 = tot.v[0] / n, m2 = tot.v[1] / n, m3 = tot.v[2] / n, m4 = tot.v[3] / n;
    const float s = rstd[r], p = rho[r];
    for (std::int64_t i = lane; i < h; i += kGroup) {
      const float d = s * (gr[i] - m1 - xr[i] * m2);
      rgr[i] = p * d + s * (rgr[i] - m3 - rxr[i] * m2 - xr[i] * m4);
      gr[i] = d;
    }
  }
}

}  // namespace d2r::kernels::network
