// Launchers of the optimiser and gradient-conditioning kernels (device code in optim.cuh).
// Nothing here synchronises or copies to the host: an optimiser step can be captured in a CUDA
// graph (the workspace of clip_global_norm must have reached its size before capture).
#include "kernels/optim/launch.hpp"
#include "kernels/optim/optim.cuh"

namespace d2r::kernels::optim {
namespace {
using optim::kThreads;
/// Blocks of the first pass of the global norm: fixed by n alone (never by the device), so the
/// summation order, and hence the result, is the same on every GPU and every run.
constexpr std::int64_t kNormItemsPerThread = 8;
constexpr std::int64_t kMaxNormBlocks = 1024;
unsigned norm_blocks(std::int64_t n) { return grid_size(n, kThreads * kNormItemsPerThread, kMaxNormBlocks); }
}  // namespace

void adam_step(cudaStream_t stream, const AdamOptions<float>& options, const AdamState<float>& state,
               VectorView<float> params, VectorView<const float> grad) {
  const optim::AdamParams a{options.learning_rate,
                            options.beta1,
                            options.beta2,
                            1.0f - options.beta1,
                            1.0f - options.beta2,
                            options.epsilon,
                            1.0f - options.learning_rate * options.weight_decay,
                            static_cast<double>(options.beta1),
                            static_cast<double>(options.beta2),
                            static_cast<double>(options.learning_rate),
                            options.weight_decay > 0.0f};
  optim::adam_kernel<<<grid_size(params.size, kThreads), kThreads, 0, stream>>>(
      a, state.step.data, params.data, grad.data, state.first_moment.data, state.second_moment.data, params.size);
  D2R_CHECK_LAUNCH(stream);
  optim::adam_increment_step<<<1, 1, 0, stream>>>(state.step.data);
  D2R_CHECK_LAUNCH(stream);
}

void advance_counter(cudaStream_t stream, std::int64_t* counter, std::int64_t by) {
  optim::advance_counter_kernel<<<1, 1, 0, stream>>>(counter, by);
  D2R_CHECK_LAUNCH(stream);
}

void adam_reset(cudaStream_t stream, const AdamState<float>& state) {
  optim::adam_reset_kernel<<<grid_size(state.first_moment.size, kThreads), kThreads, 0, stream>>>(
      state.first_moment.data, state.second_moment.data, state.step.data, state.first_moment.size);
  D2R_CHECK_LAUNCH(stream);
}

void sgd_step(cudaStream_t stream, float learning_rate, float momentum, VectorView<float> velocity,
              VectorView<float> params, VectorView<const float> grad) {
  const unsigned grid = grid_size(params.size, kThreads);
  if (momentum > 0.0f) {
    optim::sgd_kernel<true><<<grid, kThreads, 0, stream>>>(learning_rate, momentum, velocity.data, params.data,
                                                           grad.data, params.size);
  } else {
    optim::sgd_kernel<false><<<grid, kThreads, 0, stream>>>(learning_rate, momentum, nullptr, params.data, grad.data,
                                                            params.size);
  }
  D2R_CHECK_LAUNCH(stream);
}

void clamp_values(cudaStream_t stream, float limit, VectorView<float> values) {
  optim::clamp_kernel<<<grid_size(values.size, kThreads), kThreads, 0, stream>>>(limit, values.data, values.size);
  D2R_CHECK_LAUNCH(stream);
}

std::size_t clip_global_norm_workspace_bytes(std::int64_t n) {
  return static_cast<std::size_t>(norm_blocks(n)) * sizeof(double) + sizeof(double);
}

void clip_global_norm(cudaStream_t stream, float max_norm, VectorView<float> values, VectorView<float> norm_out,
                      void* workspace) {
  const unsigned blocks = norm_blocks(values.size);
  auto* partials = static_cast<double*>(workspace);
  auto* scale = reinterpret_cast<float*>(partials + blocks);
  optim::norm_partials_kernel<<<blocks, kThreads, 0, stream>>>(values.data, values.size, partials);
  D2R_CHECK_LAUNCH(stream);
  optim::clip_finalize_kernel<<<1, kThreads, 0, stream>>>(partials, static_cast<int>(blocks), max_norm, scale,
                                                          norm_out.empty() ? nullptr : norm_out.data);
  D2R_CHECK_LAUNCH(stream);
  optim::clip_scale_kernel<<<grid_size(values.size, kThreads), kThreads, 0, stream>>>(scale, values.data, values.size);
  D2R_CHECK_LAUNCH(stream);
}

}  // namespace d2r::kernels::optim
