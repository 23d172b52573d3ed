#pragma once
// Host-callable launchers of the head-independent pieces of the objectives (launch.cu beside it):
// per-row surrogate terms and the workspace rules shared by the heads' objective kernels.
// Plain C++ (host/src includes it without nvcc; with -DD2R_ENABLE_CUDA=OFF nothing here is
// defined, and host/src reaches these only through run_on's cuda branch). Each launcher enqueues
// work on `stream` and checks the launch; none synchronises unless its comment says so.
// Arguments are already validated by the public entry points in host/src.

#include <cstddef>
#include <cstdint>

#include "d2r/types/cuda.hpp"
#include "d2r/types/objectives.hpp"
#include "d2r/view.hpp"

namespace d2r::kernels::objectives {

/// Per-row surrogate terms and the cotangents for backward (see reference::objectives::pg_row_terms).
void pg_row_terms(cudaStream_t stream, const PgOptions<float>& options, ObjectiveScale<float> scale,
                  MatrixView<const float> log_prob, MatrixView<const float> rewards, MatrixView<const float> advantages,
                  VectorView<const float> entropy, MatrixView<float> d_log_prob, VectorView<float> d_entropy,
                  const ObjectiveRows<float>& rows);

/// Workspace of the objective kernels of the Gaussian heads: per-row gradients of a shared
/// log_std / tril (B x P floats) and their column sum; 0 when the parameter is per row.
std::size_t shared_param_workspace_bytes(std::int64_t rows, std::int64_t params, bool shared);

std::size_t exact_mixed_product_workspace_bytes(std::int64_t rows, std::int64_t params);

}  // namespace d2r::kernels::objectives
