#pragma once
// Host-callable launchers of rewards and group transforms (launch.cu).
// Plain C++ (host/src includes it without nvcc; with -DD2R_ENABLE_CUDA=OFF nothing here is
// defined, and host/src reaches these only through run_on's cuda branch). Each launcher enqueues
// work on `stream` and checks the launch; none synchronises unless its comment says so.
// Arguments are already validated by the public entry points in host/src.

#include <cstddef>
#include <cstdint>

#include "d2r/types/cuda.hpp"
#include "d2r/types/objectives.hpp"
#include "d2r/view.hpp"

namespace d2r::kernels::rewards {

void reward_continuous(cudaStream_t stream, const MahalanobisReward<float>& reward, MatrixView<const float> samples,
                       MatrixView<const float> targets, MatrixView<float> out);

void reward_one_hot(cudaStream_t stream, const MahalanobisReward<float>& reward, MatrixView<const std::int32_t> samples,
                    VectorView<const std::int32_t> labels, std::int64_t classes, MatrixView<float> out);

std::size_t reward_backward_continuous_workspace_bytes(const MahalanobisReward<float>& reward, std::int64_t rows,
                                                       std::int64_t dim, std::int64_t generations);

void reward_backward_continuous(cudaStream_t stream, const MahalanobisReward<float>& reward,
                                MatrixView<const float> samples, MatrixView<const float> targets,
                                MatrixView<const float> d_reward, VectorView<float> grad, void* workspace);

std::size_t reward_backward_one_hot_workspace_bytes(const MahalanobisReward<float>& reward, std::int64_t rows,
                                                    std::int64_t classes);

void reward_backward_one_hot(cudaStream_t stream, const MahalanobisReward<float>& reward,
                             MatrixView<const std::int32_t> samples, VectorView<const std::int32_t> labels,
                             std::int64_t classes, MatrixView<const float> d_reward, VectorView<float> grad,
                             void* workspace);

void transform_rewards(cudaStream_t stream, const TransformOptions<float>& options, MatrixView<const float> rewards,
                       MatrixView<float> advantages);

void transform_rewards_backward(cudaStream_t stream, const TransformOptions<float>& options,
                                MatrixView<const float> rewards, MatrixView<const float> d_advantages,
                                MatrixView<float> d_rewards);

}  // namespace d2r::kernels::rewards
