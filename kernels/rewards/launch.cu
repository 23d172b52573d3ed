// Launchers of the reward and transform kernels (device code in rewards.cuh).
#include "kernels/checks/launch.hpp"
#include "kernels/rewards/launch.hpp"
#include "kernels/rewards/rewards.cuh"

namespace d2r::kernels::rewards {
namespace {
constexpr int kThreads = 256;
constexpr std::int64_t kOneHotRowsPerChunk = 256;
std::int64_t param_count(const MahalanobisReward<float>& reward) { return reward.params.size; }
std::int64_t one_hot_chunks(std::int64_t rows) { return (rows + kOneHotRowsPerChunk - 1) / kOneHotRowsPerChunk; }
}  // namespace

void reward_continuous(cudaStream_t stream, const MahalanobisReward<float>& reward, MatrixView<const float> samples,
                       MatrixView<const float> targets, MatrixView<float> out) {
  rewards::continuous_kernel<<<grid_size(samples.rows, kThreads / kWarpSize), kThreads, 0, stream>>>(reward, samples,
                                                                                                       targets, out);
  D2R_CHECK_LAUNCH(stream);
}

void reward_one_hot(cudaStream_t stream, const MahalanobisReward<float>& reward, MatrixView<const std::int32_t> samples,
                    VectorView<const std::int32_t> labels, std::int64_t /*classes*/, MatrixView<float> out) {
  rewards::one_hot_kernel<<<grid_size(out.rows * out.cols, kThreads), kThreads, 0, stream>>>(reward, samples, labels,
                                                                                              out);
  D2R_CHECK_LAUNCH(stream);
}

std::size_t reward_backward_continuous_workspace_bytes(const MahalanobisReward<float>& reward, std::int64_t rows,
                                                       std::int64_t /*dim*/, std::int64_t /*generations*/) {
  const std::int64_t p = param_count(reward);
  return static_cast<std::size_t>(rows * p) * sizeof(float) + checks::column_sum_workspace_bytes(rows, p);
}

void reward_backward_continuous(cudaStream_t stream, const MahalanobisReward<float>& reward,
                                MatrixView<const float> samples, MatrixView<const float> targets,
                                MatrixView<const float> d_reward, VectorView<float> grad, void* workspace) {
  const std::int64_t rows = targets.rows, p = param_count(reward);
  const MatrixView<float> partial{static_cast<float*>(workspace), rows, p, p};
  const std::int64_t columns = reward.form == RewardForm::scalar ? 1 : targets.cols;
  rewards::continuous_grad_rows_kernel<<<grid_size(rows * columns, kThreads), kThreads, 0, stream>>>(
      reward, samples, targets, d_reward, partial);
  D2R_CHECK_LAUNCH(stream);
  checks::column_sum(stream, partial, grad.data, static_cast<float*>(workspace) + rows * p);
}

std::size_t reward_backward_one_hot_workspace_bytes(const MahalanobisReward<float>& reward, std::int64_t rows,
                                                    std::int64_t /*classes*/) {
  const std::int64_t chunks = one_hot_chunks(rows), p = param_count(reward);
  return static_cast<std::size_t>(chunks * p) * sizeof(float) + checks::column_sum_workspace_bytes(chunks, p);
}

void reward_backward_one_hot(cudaStream_t stream, const MahalanobisReward<float>& reward,
                             MatrixView<const std::int32_t> samples, VectorView<const std::int32_t> labels,
                             std::int64_t /*classes*/, MatrixView<const float> d_reward, VectorView<float> grad,
                             void* workspace) {
  const std::int64_t chunks = one_hot_chunks(labels.size), p = param_count(reward);
  const MatrixView<float> partial{static_cast<float*>(workspace), chunks, p, p};
  rewards::one_hot_grad_chunks_kernel<<<grid_size(chunks, 64), 64, 0, stream>>>(reward, samples, labels, d_reward,
                                                                                 partial, kOneHotRowsPerChunk);
  D2R_CHECK_LAUNCH(stream);
  checks::column_sum(stream, partial, grad.data, static_cast<float*>(workspace) + chunks * p);
}

void transform_rewards(cudaStream_t stream, const TransformOptions<float>& options, MatrixView<const float> rewards,
                       MatrixView<float> advantages) {
  rewards::transform_kernel<<<grid_size(rewards.rows, kThreads), kThreads, 0, stream>>>(options, rewards, advantages);
  D2R_CHECK_LAUNCH(stream);
}

void transform_rewards_backward(cudaStream_t stream, const TransformOptions<float>& options,
                                MatrixView<const float> rewards, MatrixView<const float> d_advantages,
                                MatrixView<float> d_rewards) {
  rewards::transform_backward_kernel<<<grid_size(rewards.rows, kThreads), kThreads, 0, stream>>>(
      options, rewards, d_advantages, d_rewards);
  D2R_CHECK_LAUNCH(stream);
}

}  // namespace d2r::kernels::rewards
