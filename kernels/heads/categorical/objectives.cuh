#pragma once
// Device code of the categorical head's objectives (DESIGN.md §5): the exact-expectation
// objective and the fused REINFORCE surrogate, whose draws are the sampler's (distribution.cuh).
// Launchers: launch.cu beside it. Conventions: distribution.cuh.

#include <cub/cub.cuh>

#include <cstdint>

#include "d2r/types/heads.hpp"
#include "d2r/types/objectives.hpp"
#include "kernels/common.cuh"
#include "kernels/heads/categorical/distribution.cuh"
#include "kernels/heads/categorical/launch.hpp"
#include "kernels/rewards/rewards.cuh"
#include "common/math/numerics.hpp"

namespace d2r::kernels::categorical {

// ------------------------------------------------------------------- exact objective

/// Exact-expectation objective (DESIGN.md §5) of one row per block:
///   E[r] = Σ_j p_j r(j, y),  row_loss = −k (E[r] + λ H),
///   grad(b, j) = −k (p_j (r(j, y) − E[r]) − λ p_j (log p_j + H)),  k = 1 / N.
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    exact_kernel(Categorical<float> head, VectorView<const std::int32_t> labels, MahalanobisReward<float> reward,
                 float lambda, float normaliser, ObjectiveRows<float> rows, MatrixView<float> grad) {
  using ReduceStats = cub::BlockReduce<RowStats, kBlock>;
  using ReduceSum = cub::BlockReduce<float, kBlock>;
  union Temp {
    typename ReduceStats::TempStorage stats;
    typename ReduceSum::TempStorage sum;
  };
  D2R_SHARED(Temp, temp);
  D2R_SHARED(RowStats, shared_stats);
  D2R_SHARED(float, shared_expected);
  const std::int64_t classes = head.logits.cols;
  const float k = 1.0f / normaliser;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const std::int32_t y = labels[b];
    const RowStats st = row_stats<kBlock>(row, classes, temp.stats);
    if (threadIdx.x == 0) shared_stats = st;
    __syncthreads();
    const RowStats s = shared_stats;
    const bool ok = valid(s);
    const float log_sum = logf(s.s);
    float local = 0.0f;
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      if (row[j] > kNegInf) local += expf((row[j] - s.m) - log_sum) * rewards::one_hot_reward(reward, static_cast<std::int32_t>(j), y);
    }
    const float expected = ReduceSum(temp.sum).Sum(local);
    if (threadIdx.x == 0) shared_expected = expected;
    __syncthreads();
    const float e_r = shared_expected;
    const float h = log_sum - s.a / s.s;
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      const float x = row[j];
      float gj = 0.0f;
      if (!ok) {
        gj = __int_as_float(0x7fc00000);
      } else if (x > kNegInf) {
        const float log_p = (x - s.m) - log_sum;
        const float p = expf(log_p);
        const float r = rewards::one_hot_reward(reward, static_cast<std::int32_t>(j), y);
        gj = -k * (p * (r - e_r) - lambda * p * (log_p + h));
      }
      grad(b, j) = gj;
    }
    if (threadIdx.x == 0) {
      rows.row_loss[b] = ok ? -k * (e_r + lambda * h) : __int_as_float(0x7fc00000);
      if (rows.row_reward.data != nullptr) rows.row_reward[b] = ok ? e_r : __int_as_float(0x7fc00000);
    }
    __syncthreads();
  }
}

// ------------------------------------------------------------------- fused REINFORCE surrogate

/// Largest G of the fused surrogate: the G draws of a row live in shared memory
/// (kFusedBytesPerDraw each); above it the composition of primitives runs instead.
inline constexpr std::int64_t kFusedMaxGenerations = 1024;
inline constexpr std::int64_t kFusedBytesPerDraw = 12;

struct Pair {
  float x, y;
};
struct PairSum {
  __device__ __forceinline__ Pair operator()(const Pair& a, const Pair& b) const { return {a.x + b.x, a.y + b.y}; }
};
struct SumMin {
  __device__ __forceinline__ Pair operator()(const Pair& a, const Pair& b) const { return {a.x + b.x, fminf(a.y, b.y)}; }
};

/// Fused REINFORCE surrogate of the categorical head (DESIGN.md §5, §8), one block per row;
/// the composition it replaces is sample → log_prob → one-hot reward → transform → entropy →
/// row terms → backward (see reference::objectives::pg_row_terms for the per-row terms).
///
/// Pass 1 (TileSampler, plus Σ exp(ℓ − M)(ℓ − M) for the entropy) reads every logit once and
/// gives M, Z, H and the tile prefix sums. The G draws are then located exactly as sample_kernel
/// locates them (same code), re-reading only the tiles that hold a draw. Draws, rewards,
/// log-probabilities, advantages and cotangents c_g stay in shared memory (12·G bytes, dynamic):
/// nothing of size B·G reaches device memory. Pass 2 reads the logits once more and writes
///   grad(b, j) = −p_j Σ_g c_g − e p_j (log p_j + H) + Σ_{g: k_g = j} c_g,   e = −λ·pd / N,
/// each element once. All draws of a class carry the same cotangent (c depends on the class
/// only, through its reward and log-probability), so the sparse sum at class j is c_j added
/// count_j times in sequence, as backward_kernel adds them in generation order; count_j comes from
/// integer shared atomics (exact). When the row fits in one tile (C <= kTile) its logits stay in
/// registers between the passes and are read from device memory once.
///
/// A row without a distribution (only with value checks off) gets NaN loss, reward and gradient.
///
/// Barriers: every __syncthreads sits in block-uniform control flow (the row and tile loops, the
/// `hit` bit read from the shared tile mask, the transform kind); the loops over the G draws
/// contain none, so no trip count that differs between threads meets a barrier. (Issue 17: under
/// a PTX simulator the kernel did not finish at G >= 50; the emulation tests run it at G = 50,
/// 300 and 4096 for C = 2 and C = 2^17 with every barrier's call site checked, and it finishes.)
template <int kBlock, int kItems, int kMaxTiles>
D2R_KERNEL void __launch_bounds__(kBlock)
    pg_surrogate_kernel(Categorical<float> head, VectorView<const std::int32_t> labels,
                        MahalanobisReward<float> reward, PgOptions<float> options, math::DrawPosition pos,
                        ObjectiveScale<float> s, ObjectiveRows<float> rows, MatrixView<float> grad) {
  using S = TileSampler<kBlock, kItems, kMaxTiles>;
  constexpr int kTile = S::kTile;
  using ReducePair = cub::BlockReduce<Pair, kBlock>;
  D2R_SHARED(typename S::Shared, sh);
  D2R_SHARED(typename ReducePair::TempStorage, pair_temp);
  D2R_SHARED(float[5], row_stat);  // Σ r, min r, mean of r − min, Σ c, Σ (r − min − mean)²
  extern __shared__ __align__(16) unsigned char draw_storage[];
  const std::int64_t G = s.generations;
  std::int32_t* draw_class = reinterpret_cast<std::int32_t*>(draw_storage);  // −1 − tile until resolved
  float* draw_value = reinterpret_cast<float*>(draw_storage) + G;             // target t, then reward r
  float* draw_grad = draw_value + G;                                          // log p, then cotangent c

  const int tid = static_cast<int>(threadIdx.x);
  const std::int64_t classes = head.logits.cols;
  const int tiles = S::tiles(classes);
  const float nan = __int_as_float(0x7fc00000);
  const float e = -options.entropy_weight * s.per_dim / s.normaliser;  // d_entropy
  const float clip = options.log_prob_clip;
  const TransformOptions<float>& tr = options.transform;

  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    float items[kItems];

    // ---- pass 1: tile statistics, then M, Z, A (thread 0)
    for (int tile = 0; tile < tiles; ++tile) {
      S::load(row, classes, tile, items);
      S::template tile_stats<true>(sh, tile, items);
    }
    if (tid == 0) S::template finish_row<true>(sh, tiles);
    __syncthreads();
    const float row_max = sh.row_max, total = sh.row_total;
    const int last = sh.last_tile;
    if (last < 0) {
      if (tid == 0) {
        rows.row_loss[b] = nan;
        if (rows.row_reward.data != nullptr) rows.row_reward[b] = nan;
      }
      for (std::int64_t j = tid; j < classes; j += kBlock) grad(b, j) = nan;
      __syncthreads();
      continue;
    }
    const float log_sum = logf(total);
    const float entropy = log_sum - sh.row_weighted / total;

    // ---- the draws' tiles, then their classes (as sample_kernel: last tile first)
    for (std::int64_t g = tid; g < G; g += kBlock) {
      const DrawTarget d = draw_target(pos, b, g, total, sh.prefix, tiles, last);
      draw_class[g] = -1 - d.tile;
      draw_value[g] = d.t;
      S::mark(sh, d.tile);
    }
    __syncthreads();
    int loaded = tiles - 1;  // the tile whose logits are in `items`
    for (int tile = tiles - 1; tile >= 0; --tile) {
      if (!S::needed(sh, tile)) continue;
      if (tile != loaded) {
        S::load(row, classes, tile, items);
        loaded = tile;
      }
      S::prepare_search(sh, items);
      for (std::int64_t g = tid; g < G; g += kBlock)
        if (draw_class[g] == -1 - tile) draw_class[g] = S::resolve(sh, draw_value[g], tile, classes);
      __syncthreads();
    }

    // ---- rewards and log-probabilities; group statistics
    const std::int32_t y = labels[b];
    Pair part{0.0f, INFINITY};
    for (std::int64_t g = tid; g < G; g += kBlock) {
      const std::int32_t k = draw_class[g];
      const float r = rewards::one_hot_reward(reward, k, y);
      draw_value[g] = r;
      draw_grad[g] = (row[k] - row_max) - log_sum;
      part.x += r;
      part.y = fminf(part.y, r);
    }
    const Pair sum_min = ReducePair(pair_temp).Reduce(part, SumMin{});
    if (tid == 0) row_stat[0] = sum_min.x, row_stat[1] = sum_min.y;
    __syncthreads();
    const float sum = row_stat[0], lo = row_stat[1];
    // standardize centres r − lo (reference::rewards::transform_row): equal rewards give advantages of 0.
    float mean = 0.0f, scale = 1.0f;
    if (tr.kind == Transform::standardize) {
      float shifted = 0.0f;
      for (std::int64_t g = tid; g < G; g += kBlock) shifted += draw_value[g] - lo;
      const Pair shifted_sum = ReducePair(pair_temp).Reduce(Pair{shifted, 0.0f}, PairSum{});
      if (tid == 0) row_stat[2] = shifted_sum.x / static_cast<float>(G);
      __syncthreads();
      mean = row_stat[2];
      float sq = 0.0f;
      for (std::int64_t g = tid; g < G; g += kBlock) sq += (draw_value[g] - lo - mean) * (draw_value[g] - lo - mean);
      const Pair sq_sum = ReducePair(pair_temp).Reduce(Pair{sq, 0.0f}, PairSum{});
      if (tid == 0) row_stat[4] = sq_sum.x;
      __syncthreads();
      scale = 1.0f / (sqrtf(row_stat[4] / static_cast<float>(G - 1)) + tr.standardize_epsilon);
    }

    // ---- advantages, clipped terms and cotangents (draw_grad becomes c_g)
    Pair loss_c{0.0f, 0.0f};
    for (std::int64_t g = tid; g < G; g += kBlock) {
      const float r = draw_value[g];
      float a = r;
      switch (tr.kind) {
        case Transform::none: break;
        case Transform::normalize: a = r - lo; break;
        case Transform::rbf: a = expf(tr.rbf_gamma * r); break;
        case Transform::leave_one_out: a = r - (sum - r) / static_cast<float>(G - 1); break;
        case Transform::standardize: a = (r - lo - mean) * scale; break;
      }
      float x = -s.per_dim * draw_grad[g];
      bool active = true;
      if (clip > 0.0f && (x > clip || x < -clip)) {
        active = false;
        x = x > clip ? clip : -clip;
      }
      const float c = active ? -s.per_dim * a / (s.normaliser * static_cast<float>(G)) : 0.0f;  // as row_terms
      draw_grad[g] = c;
      loss_c.x += x * a;
      loss_c.y += c;
    }
    const Pair totals = ReducePair(pair_temp).Reduce(loss_c, PairSum{});
    if (tid == 0) {
      row_stat[3] = totals.y;
      rows.row_loss[b] = (totals.x / static_cast<float>(G) - options.entropy_weight * s.per_dim * entropy) / s.normaliser;
      if (rows.row_reward.data != nullptr) rows.row_reward[b] = sum / static_cast<float>(G);
    }
    __syncthreads();
    const float c_sum = row_stat[3];

    // ---- pass 2: the gradient, each element written once; the tile still in registers first
    for (int step = 0; step < tiles; ++step) {
      const int tile = step == 0 ? loaded : (step <= loaded ? step - 1 : step);
      const std::int64_t base = static_cast<std::int64_t>(tile) * kTile;
      if (step > 0) S::load(row, classes, tile, items);
      const bool hit = S::needed(sh, tile);
      if (hit) {
        for (int i = tid; i < kTile; i += kBlock) sh.tile.hits.count[i] = 0;
        __syncthreads();
        for (std::int64_t g = tid; g < G; g += kBlock) {
          const std::int64_t at = draw_class[g] - base;
          if (at >= 0 && at < kTile && atomicAdd(&sh.tile.hits.count[at], 1) == 0) sh.tile.hits.value[at] = draw_grad[g];
        }
        __syncthreads();
      }
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int at = i * kBlock + tid;
        const std::int64_t j = base + at;
        if (j >= classes) continue;
        const float x = items[i];
        float gj = 0.0f;
        if (x > kNegInf) {
          const float log_p = (x - row_max) - log_sum;
          const float p = expf(log_p);
          gj = -p * c_sum - e * p * (log_p + entropy);
          const int n = hit ? sh.tile.hits.count[at] : 0;
          if (n > 0) {
            const float v = sh.tile.hits.value[at];
            for (int m = 0; m < n; ++m) gj += v;
          }
        }
        grad(b, j) = gj;
      }
      if (hit) __syncthreads();  // before the next hit tile clears the counts
    }
    __syncthreads();
  }
}

}  // namespace d2r::kernels::categorical
