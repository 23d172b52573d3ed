#pragma once
// Host-callable launchers of value checks and deterministic column sums (launch.cu, column_sum.cu).
// Plain C++ (host/src includes it without nvcc; with -DD2R_ENABLE_CUDA=OFF nothing here is
// defined, and host/src reaches these only through run_on's cuda branch). Each launcher enqueues
// work on `stream` and checks the launch; none synchronises unless its comment says so.
// Arguments are already validated by the public entry points in host/src.

#include <cstddef>
#include <cstdint>

#include "d2r/types/cuda.hpp"
#include "d2r/view.hpp"

namespace d2r::kernels::checks {

std::int64_t first_nonfinite(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch);

/// First NaN or +inf element of logits.
std::int64_t first_bad_logit(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch);

/// First row whose entries are all -inf (returns the row index).
std::int64_t first_row_without_finite(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch);

std::int64_t first_index_out_of_range(cudaStream_t stream, MatrixView<const std::int32_t> m, std::int32_t upper,
                                      std::int64_t* scratch);

std::size_t column_sum_workspace_bytes(std::int64_t rows, std::int64_t cols);

void column_sum(cudaStream_t stream, MatrixView<const float> in, float* out, void* workspace);

}  // namespace d2r::kernels::checks
