#pragma once
// Device code of the per-row surrogate terms shared by every head's composition (the unfused
// REINFORCE objective). Launcher: launch.cu beside it.

#include "d2r/types/objectives.hpp"
#include "kernels/common.cuh"

namespace d2r::kernels::objectives {

/// One thread per row (see reference::objectives::pg_row_terms).
D2R_KERNEL void row_terms_kernel(PgOptions<float> options, ObjectiveScale<float> s, MatrixView<const float> log_prob,
                                 MatrixView<const float> rewards, MatrixView<const float> advantages,
                                 VectorView<const float> entropy, MatrixView<float> d_log_prob,
                                 VectorView<float> d_entropy, ObjectiveRows<float> rows) {
  const std::int64_t G = s.generations;
  const float c = options.log_prob_clip;
  for (std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; b < log_prob.rows;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float loss = 0.0f, reward_sum = 0.0f;
    for (std::int64_t g = 0; g < G; ++g) {
      float x = -s.per_dim * log_prob(b, g);
      bool active = true;
      if (c > 0.0f && (x > c || x < -c)) {
        active = false;
        x = x > c ? c : -c;
      }
      loss += x * advantages(b, g);
      reward_sum += rewards(b, g);
      d_log_prob(b, g) = active ? -s.per_dim * advantages(b, g) / (s.normaliser * static_cast<float>(G)) : 0.0f;
    }
    rows.row_loss[b] = (loss / static_cast<float>(G) - options.entropy_weight * s.per_dim * entropy[b]) / s.normaliser;
    if (rows.row_reward.data != nullptr) rows.row_reward[b] = reward_sum / static_cast<float>(G);
    d_entropy[b] = -options.entropy_weight * s.per_dim / s.normaliser;
  }
}

}  // namespace d2r::kernels::objectives
