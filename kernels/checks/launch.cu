// Launchers of the value checks (device code in value_checks.cuh): each copies the kernel's
// smallest offending index back (one synchronisation).
#include "kernels/checks/launch.hpp"
#include "kernels/checks/value_checks.cuh"

namespace d2r::kernels::checks {
namespace {

using value_checks::kNone;
using value_checks::kThreads;
using value_checks::Rule;

template <class Launch>
std::int64_t run_check(cudaStream_t stream, std::int64_t* scratch, Launch&& launch) {
  auto* first = reinterpret_cast<unsigned long long*>(scratch);
  const unsigned long long none = kNone;
  D2R_CUDA_TRY(cudaMemcpyAsync(first, &none, sizeof none, cudaMemcpyHostToDevice, stream));
  launch(first);
  D2R_CHECK_LAUNCH(stream);
  unsigned long long result = kNone;
  D2R_CUDA_TRY(cudaMemcpyAsync(&result, first, sizeof result, cudaMemcpyDeviceToHost, stream));
  D2R_CUDA_TRY(cudaStreamSynchronize(stream));
  return result == kNone ? -1 : static_cast<std::int64_t>(result);
}

}  // namespace

std::int64_t first_nonfinite(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch) {
  return run_check(stream, scratch, [&](unsigned long long* first) {
    value_checks::first_bad_kernel<Rule::finite><<<grid_size(m.rows * m.cols, kThreads, 4096), kThreads, 0, stream>>>(m, first);
  });
}

std::int64_t first_bad_logit(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch) {
  return run_check(stream, scratch, [&](unsigned long long* first) {
    value_checks::first_bad_kernel<Rule::logit><<<grid_size(m.rows * m.cols, kThreads, 4096), kThreads, 0, stream>>>(m, first);
  });
}

std::int64_t first_row_without_finite(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch) {
  return run_check(stream, scratch, [&](unsigned long long* first) {
    value_checks::row_without_finite_kernel<<<grid_size(m.rows * kWarpSize, kThreads, 4096), kThreads, 0, stream>>>(m, first);
  });
}

std::int64_t first_index_out_of_range(cudaStream_t stream, MatrixView<const std::int32_t> m, std::int32_t upper,
                                      std::int64_t* scratch) {
  return run_check(stream, scratch, [&](unsigned long long* first) {
    value_checks::index_range_kernel<<<grid_size(m.rows * m.cols, kThreads, 4096), kThreads, 0, stream>>>(m, upper, first);
  });
}

}  // namespace d2r::kernels::checks
