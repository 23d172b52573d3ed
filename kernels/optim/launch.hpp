#pragma once
// Host-callable launchers of optimisers and gradient conditioning (launch.cu).
// Plain C++ (host/src includes it without nvcc; with -DD2R_ENABLE_CUDA=OFF nothing here is
// defined, and host/src reaches these only through run_on's cuda branch). Each launcher enqueues
// work on `stream` and checks the launch; none synchronises unless its comment says so.
// Arguments are already validated by the public entry points in host/src.

#include <cstddef>
#include <cstdint>

#include "d2r/types/cuda.hpp"
#include "d2r/types/optim.hpp"
#include "d2r/view.hpp"

namespace d2r::kernels::optim {

/// Fused Adam/AdamW update, then a one-thread kernel that increments state.step (both on stream).
void adam_step(cudaStream_t stream, const AdamOptions<float>& options, const AdamState<float>& state,
               VectorView<float> params, VectorView<const float> grad);

void adam_reset(cudaStream_t stream, const AdamState<float>& state);

/// counter[0] += by (one thread).
void advance_counter(cudaStream_t stream, std::int64_t* counter, std::int64_t by);

/// `velocity` is not read when momentum == 0.
void sgd_step(cudaStream_t stream, float learning_rate, float momentum, VectorView<float> velocity,
              VectorView<float> params, VectorView<const float> grad);

void clamp_values(cudaStream_t stream, float limit, VectorView<float> values);

/// Per-block partial sums of squares (double) and the scale factor.
std::size_t clip_global_norm_workspace_bytes(std::int64_t n);

/// Three launches: partial sums, a one-block deterministic reduction, the scaling.
void clip_global_norm(cudaStream_t stream, float max_norm, VectorView<float> values, VectorView<float> norm_out,
                      void* workspace);

}  // namespace d2r::kernels::optim
