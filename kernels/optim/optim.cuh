#pragma once
// Device code of the optimisers and gradient conditioning (d2r/optim.hpp). Launchers: launch.cu.
// Element-wise kernels are grid-stride loops; the expressions and their order are those of the
// CPU reference (host/reference/optim.hpp).

#include <cub/cub.cuh>

#include "d2r/view.hpp"
#include "kernels/common.cuh"

namespace d2r::kernels::optim {

inline constexpr int kThreads = 256;

/// Adam hyperparameters as the kernel uses them (host-side precomputed, float).
struct AdamParams {
  float learning_rate, beta1, beta2, one_minus_beta1, one_minus_beta2, epsilon, decay;
  double beta1_d, beta2_d, learning_rate_d;  ///< for the bias corrections, computed in double
  bool decoupled_decay;
};

/// The fused Adam update. Every block reads the *old* step count (the counter is incremented by
/// adam_increment_step, launched after this kernel on the same stream), so all threads use the
/// same t = count + 1. Thread 0 of each block computes the bias corrections in double.
D2R_KERNEL void adam_kernel(AdamParams a, const std::int64_t* __restrict__ step, float* __restrict__ params,
                            const float* __restrict__ grad, float* __restrict__ first_moment,
                            float* __restrict__ second_moment, std::int64_t n) {
  D2R_SHARED(float, step_size);
  D2R_SHARED(float, bias_correction2_sqrt);
  if (threadIdx.x == 0) {
    const double t = static_cast<double>(*step) + 1.0;
    step_size = static_cast<float>(a.learning_rate_d / (1.0 - pow(a.beta1_d, t)));
    bias_correction2_sqrt = static_cast<float>(sqrt(1.0 - pow(a.beta2_d, t)));
  }
  __syncthreads();
  const float s = step_size, c2 = bias_correction2_sqrt;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float g = grad[i];
    const float m = a.beta1 * first_moment[i] + a.one_minus_beta1 * g;
    const float v = a.beta2 * second_moment[i] + a.one_minus_beta2 * g * g;
    float p = params[i];
    if (a.decoupled_decay) p *= a.decay;
    const float denom = sqrtf(v) / c2 + a.epsilon;
    params[i] = p - s * (m / denom);
    first_moment[i] = m;
    second_moment[i] = v;
  }
}

/// step ← step + 1 (one thread), ordered after adam_kernel on the stream.
D2R_KERNEL void adam_increment_step(std::int64_t* step) { *step += 1; }
D2R_KERNEL void advance_counter_kernel(std::int64_t* counter, std::int64_t by) { *counter += by; }

/// Zeroes the moments and the step counter in one launch.
D2R_KERNEL void adam_reset_kernel(float* __restrict__ first_moment, float* __restrict__ second_moment,
                                  std::int64_t* __restrict__ step, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    first_moment[i] = 0.0f;
    second_moment[i] = 0.0f;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) *step = 0;
}

/// SGD: buf ← momentum·buf + g (when momentum > 0); p ← p − lr·buf.
template <bool kMomentum>
D2R_KERNEL void sgd_kernel(float learning_rate, float momentum, float* __restrict__ velocity,
                           float* __restrict__ params, const float* __restrict__ grad, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float d = grad[i];
    if constexpr (kMomentum) {
      d = momentum * velocity[i] + d;
      velocity[i] = d;
    }
    params[i] -= learning_rate * d;
  }
}

/// Clamp to [−limit, limit], NaN kept.
D2R_KERNEL void clamp_kernel(float limit, float* __restrict__ values, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float x = values[i];
    values[i] = x < -limit ? -limit : (x > limit ? limit : x);
  }
}

/// Pass 1 of the global norm: block b sums, in double, the squares of the elements
/// i ≡ b·kThreads + tid (mod gridDim·kThreads) and writes partials[b]. The grid depends only on
/// n, so the order of every addition does too.
D2R_KERNEL void norm_partials_kernel(const float* __restrict__ values, std::int64_t n, double* __restrict__ partials) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  D2R_SHARED(typename Reduce::TempStorage, temp);
  double sum = 0.0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * kThreads) {
    const double x = values[i];
    sum += x * x;
  }
  const double total = Reduce(temp).Sum(sum);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

/// Pass 2 (one block): reduces the `count` partials in a fixed order, writes the norm N to
/// `norm_out` (when given) and the factor the values are multiplied by to `scale`:
/// max_norm / N when N > max_norm, else 1.
D2R_KERNEL void clip_finalize_kernel(const double* __restrict__ partials, int count, float max_norm,
                                     float* __restrict__ scale, float* __restrict__ norm_out) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  D2R_SHARED(typename Reduce::TempStorage, temp);
  double sum = 0.0;
  for (int j = threadIdx.x; j < count; j += kThreads) sum += partials[j];
  const double total = Reduce(temp).Sum(sum);
  if (threadIdx.x == 0) {
    const double norm = sqrt(total), max_norm_d = max_norm;
    *scale = norm > max_norm_d ? static_cast<float>(max_norm_d / norm) : 1.0f;
    if (norm_out != nullptr) *norm_out = static_cast<float>(norm);
  }
}

/// Pass 3: values ← values · scale, skipped (no write) when scale is 1.
D2R_KERNEL void clip_scale_kernel(const float* __restrict__ scale, float* __restrict__ values, std::int64_t n) {
  const float s = *scale;
  if (s == 1.0f) return;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    values[i] *= s;
  }
}

}  // namespace d2r::kernels::optim
