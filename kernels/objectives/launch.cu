// Launchers of the head-independent pieces of the objectives (device code in row_terms.cuh): the
// per-row surrogate terms, and the workspace rules shared by the heads' objective kernels.
#include "kernels/checks/launch.hpp"
#include "kernels/objectives/launch.hpp"
#include "kernels/objectives/row_terms.cuh"

namespace d2r::kernels::objectives {
namespace {
constexpr int kThreads = 128;
}  // namespace

std::size_t shared_param_workspace_bytes(std::int64_t rows, std::int64_t params, bool shared) {
  if (!shared) return 0;
  return static_cast<std::size_t>(rows * params) * sizeof(float) + checks::column_sum_workspace_bytes(rows, params);
}

void pg_row_terms(cudaStream_t stream, const PgOptions<float>& options, ObjectiveScale<float> scale,
                  MatrixView<const float> log_prob, MatrixView<const float> rewards, MatrixView<const float> advantages,
                  VectorView<const float> entropy, MatrixView<float> d_log_prob, VectorView<float> d_entropy,
                  const ObjectiveRows<float>& rows) {
  objectives::row_terms_kernel<<<grid_size(log_prob.rows, kThreads), kThreads, 0, stream>>>(
      options, scale, log_prob, rewards, advantages, entropy, d_log_prob, d_entropy, rows);
  D2R_CHECK_LAUNCH(stream);
}

std::size_t exact_mixed_product_workspace_bytes(std::int64_t rows, std::int64_t params) {
  return static_cast<std::size_t>(rows * params) * sizeof(float) + checks::column_sum_workspace_bytes(rows, params);
}

}  // namespace d2r::kernels::objectives
