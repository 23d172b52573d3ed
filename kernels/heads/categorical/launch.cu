// Launchers of the categorical head kernels (device code in categorical.cuh). One block per row;
// a smaller block for small vocabularies, where a 256-thread block would mostly idle.
#include "kernels/heads/categorical/distribution.cuh"
#include "kernels/heads/categorical/launch.hpp"

namespace d2r::kernels {
namespace {

// Sampling: tiles of kBlock * kItems logits; the large variant covers kMaxCategoricalClasses.
constexpr int kSampleItems = 8;
constexpr int kSampleBlock = 256;
constexpr int kSampleTile = kSampleBlock * kSampleItems;
constexpr int kSampleMaxTiles = static_cast<int>((kMaxCategoricalClasses + kSampleTile - 1) / kSampleTile);
static_assert(kSampleMaxTiles == 128, "2^18 classes in tiles of 2048");
constexpr int kSmallBlock = 64;
constexpr std::int64_t kSmallSampleClasses = std::int64_t{kSmallBlock} * kSampleItems;  // one tile

// Row reductions (log_prob, entropy, backward).
constexpr int kRowBlock = 256;
constexpr std::int64_t kSmallRowClasses = 1024;

unsigned row_grid(std::int64_t rows) { return grid_size(rows, 1); }

}  // namespace

void categorical_sample(cudaStream_t stream, const Categorical<float>& head, std::int64_t generations,
                        DrawPosition pos, MatrixView<std::int32_t> samples) {
  const unsigned grid = row_grid(head.logits.rows);
  if (head.logits.cols <= kSmallSampleClasses) {
    categorical::sample_kernel<kSmallBlock, kSampleItems, 1><<<grid, kSmallBlock, 0, stream>>>(head, generations, pos,
                                                                                                samples);
  } else {
    categorical::sample_kernel<kSampleBlock, kSampleItems, kSampleMaxTiles>
        <<<grid, kSampleBlock, 0, stream>>>(head, generations, pos, samples);
  }
  D2R_CHECK_LAUNCH(stream);
}

void categorical_log_prob(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
                          MatrixView<float> out) {
  const unsigned grid = row_grid(head.logits.rows);
  if (head.logits.cols <= kSmallRowClasses) {
    categorical::log_prob_kernel<kSmallBlock><<<grid, kSmallBlock, 0, stream>>>(head, samples, out);
  } else {
    categorical::log_prob_kernel<kRowBlock><<<grid, kRowBlock, 0, stream>>>(head, samples, out);
  }
  D2R_CHECK_LAUNCH(stream);
}

void categorical_entropy(cudaStream_t stream, const Categorical<float>& head, VectorView<float> out) {
  const unsigned grid = row_grid(head.logits.rows);
  if (head.logits.cols <= kSmallRowClasses) {
    categorical::entropy_kernel<kSmallBlock><<<grid, kSmallBlock, 0, stream>>>(head, out);
  } else {
    categorical::entropy_kernel<kRowBlock><<<grid, kRowBlock, 0, stream>>>(head, out);
  }
  D2R_CHECK_LAUNCH(stream);
}

void categorical_backward(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
                          MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                          const CategoricalGrad<float>& grad) {
  const unsigned grid = row_grid(head.logits.rows);
  if (head.logits.cols <= kSmallRowClasses) {
    categorical::backward_kernel<kSmallBlock><<<grid, kSmallBlock, 0, stream>>>(head, samples, d_log_prob, d_entropy,
                                                                               grad.logits);
  } else {
    categorical::backward_kernel<kRowBlock><<<grid, kRowBlock, 0, stream>>>(head, samples, d_log_prob, d_entropy,
                                                                           grad.logits);
  }
  D2R_CHECK_LAUNCH(stream);
}

void exact_categorical(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                       const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                       const ObjectiveRows<float>& rows, const CategoricalGrad<float>& grad) {
  const unsigned grid = row_grid(head.logits.rows);
  if (head.logits.cols <= kSmallRowClasses) {
    categorical::exact_kernel<kSmallBlock><<<grid, kSmallBlock, 0, stream>>>(head, labels, reward, entropy_weight,
                                                                             scale.normaliser, rows, grad.logits);
  } else {
    categorical::exact_kernel<kRowBlock><<<grid, kRowBlock, 0, stream>>>(head, labels, reward, entropy_weight,
                                                                         scale.normaliser, rows, grad.logits);
  }
  D2R_CHECK_LAUNCH(stream);
}

void exact_categorical_tangent(cudaStream_t stream, const Categorical<float>& head,
                               VectorView<const std::int32_t> labels, const MahalanobisReward<float>& reward,
                               float entropy_weight, ObjectiveScale<float> scale, const Categorical<float>& tangent,
                               const CategoricalGrad<float>& grad_tangent) {
  const unsigned grid = row_grid(head.logits.rows);
  if (head.logits.cols <= kSmallRowClasses) {
    categorical::exact_tangent_kernel<kSmallBlock><<<grid, kSmallBlock, 0, stream>>>(
        head, labels, reward, entropy_weight, scale.normaliser, tangent, grad_tangent.logits);
  } else {
    categorical::exact_tangent_kernel<kRowBlock><<<grid, kRowBlock, 0, stream>>>(
        head, labels, reward, entropy_weight, scale.normaliser, tangent, grad_tangent.logits);
  }
  D2R_CHECK_LAUNCH(stream);
}

bool pg_surrogate_categorical_fusable(const Categorical<float>& head, std::int64_t generations) {
  return generations >= 1 && generations <= categorical::kFusedMaxGenerations && head.logits.cols >= 1 &&
         head.logits.cols <= kMaxCategoricalClasses;
}

// Same block shapes as categorical_sample: the draws must be the sampler's, tile for tile.
void pg_surrogate_categorical(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                              const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                              ObjectiveScale<float> scale, const ObjectiveRows<float>& rows,
                              const CategoricalGrad<float>& grad) {
  const unsigned grid = row_grid(head.logits.rows);
  const auto smem = static_cast<std::size_t>(scale.generations * categorical::kFusedBytesPerDraw);
  if (head.logits.cols <= kSmallSampleClasses) {
    categorical::pg_surrogate_kernel<kSmallBlock, kSampleItems, 1>
        <<<grid, kSmallBlock, smem, stream>>>(head, labels, reward, options, pos, scale, rows, grad.logits);
  } else {
    categorical::pg_surrogate_kernel<kSampleBlock, kSampleItems, kSampleMaxTiles>
        <<<grid, kSampleBlock, smem, stream>>>(head, labels, reward, options, pos, scale, rows, grad.logits);
  }
  D2R_CHECK_LAUNCH(stream);
}

void categorical_log_prob_jvp(cudaStream_t stream, const Categorical<float>& head,
                              MatrixView<const std::int32_t> samples, const Categorical<float>& tangent,
                              MatrixView<float> out) {
  const unsigned grid = row_grid(head.logits.rows);
  if (head.logits.cols <= kSmallRowClasses) {
    categorical::log_prob_jvp_kernel<kSmallBlock><<<grid, kSmallBlock, 0, stream>>>(head, samples, tangent, out);
  } else {
    categorical::log_prob_jvp_kernel<kRowBlock><<<grid, kRowBlock, 0, stream>>>(head, samples, tangent, out);
  }
  D2R_CHECK_LAUNCH(stream);
}

void categorical_backward_tangent(cudaStream_t stream, const Categorical<float>& head,
                                  MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                                  const Categorical<float>& tangent, const CategoricalGrad<float>& grad_tangent) {
  const unsigned grid = row_grid(head.logits.rows);
  if (head.logits.cols <= kSmallRowClasses) {
    categorical::backward_tangent_kernel<kSmallBlock>
        <<<grid, kSmallBlock, 0, stream>>>(head, d_log_prob, d_entropy, tangent, grad_tangent.logits);
  } else {
    categorical::backward_tangent_kernel<kRowBlock>
        <<<grid, kRowBlock, 0, stream>>>(head, d_log_prob, d_entropy, tangent, grad_tangent.logits);
  }
  D2R_CHECK_LAUNCH(stream);
}

}  // namespace d2r::kernels
