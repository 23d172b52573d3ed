// Launchers of the categorical head (device code beside it: distribution.cuh, objectives.cuh,
// second_order.cuh). One block per row; a smaller block for small vocabularies, where a
// 256-thread block would mostly idle: dispatch_row_block and dispatch_sample_block pick it.
#include <type_traits>

#include "kernels/checks/launch.hpp"
#include "kernels/heads/categorical/distribution.cuh"
#include "kernels/heads/categorical/launch.hpp"
#include "kernels/heads/categorical/objectives.cuh"
#include "kernels/heads/categorical/second_order.cuh"
#include "kernels/objectives/launch.hpp"

namespace d2r::kernels::categorical {
namespace {

// Sampling: tiles of kBlock * kItems logits; the large variant covers kMaxCategoricalClasses.
constexpr int kSampleItems = 8;
constexpr int kSampleBlock = 256;
constexpr int kSampleTile = kSampleBlock * kSampleItems;
constexpr int kSampleMaxTiles = static_cast<int>((kMaxCategoricalClasses + kSampleTile - 1) / kSampleTile);
static_assert(kSampleMaxTiles == 128, "2^18 classes in tiles of 2048");
constexpr int kSmallBlock = 64;
constexpr std::int64_t kSmallSampleClasses = std::int64_t{kSmallBlock} * kSampleItems;  // one tile

// Row reductions (log_prob, entropy, backward, the objectives, the second-order pieces).
constexpr int kRowBlock = 256;
constexpr std::int64_t kSmallRowClasses = 1024;

unsigned row_grid(std::int64_t rows) { return grid_size(rows, 1); }

/// Calls launch(block) with the row kernels' block size for `classes` as a compile-time constant
/// (std::integral_constant<int, ...>): kSmallBlock threads up to kSmallRowClasses, else kRowBlock.
template <class Launch>
void dispatch_row_block(std::int64_t classes, Launch&& launch) {
  if (classes <= kSmallRowClasses) {
    launch(std::integral_constant<int, kSmallBlock>{});
  } else {
    launch(std::integral_constant<int, kRowBlock>{});
  }
}

/// The sampler's shapes, (block, tiles) as compile-time constants: one tile of kSmallBlock threads
/// up to kSmallSampleClasses, else up to kSampleMaxTiles tiles of kSampleBlock threads. The fused
/// surrogate uses the same shapes: its draws must be the sampler's, tile for tile.
template <class Launch>
void dispatch_sample_block(std::int64_t classes, Launch&& launch) {
  if (classes <= kSmallSampleClasses) {
    launch(std::integral_constant<int, kSmallBlock>{}, std::integral_constant<int, 1>{});
  } else {
    launch(std::integral_constant<int, kSampleBlock>{}, std::integral_constant<int, kSampleMaxTiles>{});
  }
}

}  // namespace

void sample(cudaStream_t stream, const Categorical<float>& head, std::int64_t generations, DrawPosition pos,
            MatrixView<std::int32_t> samples) {
  dispatch_sample_block(head.logits.cols, [&](auto block, auto tiles) {
    constexpr int kBlock = decltype(block)::value, kTiles = decltype(tiles)::value;
    categorical::sample_kernel<kBlock, kSampleItems, kTiles>
        <<<row_grid(head.logits.rows), kBlock, 0, stream>>>(head, generations, pos, samples);
  });
  D2R_CHECK_LAUNCH(stream);
}

void log_prob(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
              MatrixView<float> out) {
  dispatch_row_block(head.logits.cols, [&](auto block) {
    constexpr int kBlock = decltype(block)::value;
    categorical::log_prob_kernel<kBlock><<<row_grid(head.logits.rows), kBlock, 0, stream>>>(head, samples, out);
  });
  D2R_CHECK_LAUNCH(stream);
}

void entropy(cudaStream_t stream, const Categorical<float>& head, VectorView<float> out) {
  dispatch_row_block(head.logits.cols, [&](auto block) {
    constexpr int kBlock = decltype(block)::value;
    categorical::entropy_kernel<kBlock><<<row_grid(head.logits.rows), kBlock, 0, stream>>>(head, out);
  });
  D2R_CHECK_LAUNCH(stream);
}

void backward(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
              MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
              const CategoricalGrad<float>& grad) {
  dispatch_row_block(head.logits.cols, [&](auto block) {
    constexpr int kBlock = decltype(block)::value;
    categorical::backward_kernel<kBlock><<<row_grid(head.logits.rows), kBlock, 0, stream>>>(
        head, samples, d_log_prob, d_entropy, grad.logits);
  });
  D2R_CHECK_LAUNCH(stream);
}

// ---------------------------------------------------------------- objectives

void exact_objective(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                     const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                     const ObjectiveRows<float>& rows, const CategoricalGrad<float>& grad) {
  dispatch_row_block(head.logits.cols, [&](auto block) {
    constexpr int kBlock = decltype(block)::value;
    categorical::exact_kernel<kBlock><<<row_grid(head.logits.rows), kBlock, 0, stream>>>(
        head, labels, reward, entropy_weight, scale.normaliser, rows, grad.logits);
  });
  D2R_CHECK_LAUNCH(stream);
}

bool pg_surrogate_fusable(const Categorical<float>& head, std::int64_t generations) {
  return generations >= 1 && generations <= categorical::kFusedMaxGenerations && head.logits.cols >= 1 &&
         head.logits.cols <= kMaxCategoricalClasses;
}

void pg_surrogate(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                  const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                  ObjectiveScale<float> scale, const ObjectiveRows<float>& rows, const CategoricalGrad<float>& grad) {
  const auto smem = static_cast<std::size_t>(scale.generations * categorical::kFusedBytesPerDraw);
  dispatch_sample_block(head.logits.cols, [&](auto block, auto tiles) {
    constexpr int kBlock = decltype(block)::value, kTiles = decltype(tiles)::value;
    categorical::pg_surrogate_kernel<kBlock, kSampleItems, kTiles>
        <<<row_grid(head.logits.rows), kBlock, smem, stream>>>(head, labels, reward, options, pos, scale, rows,
                                                                    grad.logits);
  });
  D2R_CHECK_LAUNCH(stream);
}

// ---------------------------------------------------------------- second order

void exact_backward_tangent(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                            const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                            const Categorical<float>& tangent, const CategoricalGrad<float>& grad_tangent) {
  dispatch_row_block(head.logits.cols, [&](auto block) {
    constexpr int kBlock = decltype(block)::value;
    categorical::exact_tangent_kernel<kBlock><<<row_grid(head.logits.rows), kBlock, 0, stream>>>(
        head, labels, reward, entropy_weight, scale.normaliser, tangent, grad_tangent.logits);
  });
  D2R_CHECK_LAUNCH(stream);
}

void log_prob_jvp(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
                  const Categorical<float>& tangent, MatrixView<float> out) {
  dispatch_row_block(head.logits.cols, [&](auto block) {
    constexpr int kBlock = decltype(block)::value;
    categorical::log_prob_jvp_kernel<kBlock><<<row_grid(head.logits.rows), kBlock, 0, stream>>>(
        head, samples, tangent, out);
  });
  D2R_CHECK_LAUNCH(stream);
}

void backward_tangent(cudaStream_t stream, const Categorical<float>& head, MatrixView<const float> d_log_prob,
                      VectorView<const float> d_entropy, const Categorical<float>& tangent,
                      const CategoricalGrad<float>& grad_tangent) {
  dispatch_row_block(head.logits.cols, [&](auto block) {
    constexpr int kBlock = decltype(block)::value;
    categorical::backward_tangent_kernel<kBlock><<<row_grid(head.logits.rows), kBlock, 0, stream>>>(
        head, d_log_prob, d_entropy, tangent, grad_tangent.logits);
  });
  D2R_CHECK_LAUNCH(stream);
}

/// Per-row partial gradients (B x P, the first floats of exact_mixed_product_workspace_bytes)
/// then their deterministic column sum.
void exact_mixed_product(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                         const MahalanobisReward<float>& reward, float k, const Categorical<float>& tangent,
                         VectorView<float> grad, void* workspace) {
  const std::int64_t rows = head.logits.rows, p = reward.params.size;
  const MatrixView<float> partial{static_cast<float*>(workspace), rows, p, p};
  dispatch_row_block(head.logits.cols, [&](auto block) {
    constexpr int kBlock = decltype(block)::value;
    categorical::exact_mixed_rows_kernel<kBlock>
        <<<row_grid(rows), kBlock, 0, stream>>>(head, labels, reward, k, tangent, partial);
  });
  D2R_CHECK_LAUNCH(stream);
  checks::column_sum(stream, partial, grad.data, static_cast<float*>(workspace) + rows * p);
}

}  // namespace d2r::kernels::categorical
