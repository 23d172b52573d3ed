#pragma once
// Device code of the categorical head (DESIGN.md §3). Launchers: categorical.cu.
// CPU reference with the same conventions: host/reference/categorical_ref.hpp.
//
// Every kernel gives one thread block to one row (grid-stride over rows) and reduces with CUB
// block collectives, so results depend only on the block size, never on timing: deterministic.
//
// Conventions (shared with the reference):
// - A logit that is not > -inf (-inf, or NaN when value checks are off) has weight 0.
// - A row whose largest logit is not finite, or whose weight sum is not finite and positive, has
//   no distribution: samples -1, log-probabilities / entropy / gradient NaN.
// - Class indices outside [0, C) (checks off) give a NaN log-probability; backward skips them.

#include <cub/cub.cuh>

#include <cstdint>

#include "d2r/distributions.hpp"
#include "kernels/common.cuh"
#include "kernels/rewards.cuh"
#include "kernels/math/numerics.hpp"

namespace d2r::kernels::categorical {

inline constexpr float kNegInf = -__builtin_huge_valf();

struct MaxFloat {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct MaxInt {
  __device__ __forceinline__ int operator()(int a, int b) const { return a > b ? a : b; }
};

/// A logit as a weight-carrying value: -inf for masked classes and for NaN.
__device__ __forceinline__ float sanitize(float x) { return x > kNegInf ? x : kNegInf; }

// ------------------------------------------------------------------------------------ sampling

/// The draw (row b, generation g): its target t = u·Z and the tile that holds it, the smallest
/// tile whose inclusive prefix mass is > t (zero-mass tiles are never chosen), or, when rounding
/// leaves none, the last tile of positive mass.
struct DrawTarget {
  int tile;
  float t;
};
__device__ __forceinline__ DrawTarget draw_target(const math::DrawPosition& pos, std::int64_t b, std::int64_t g,
                                                  float total, const float* prefix, int tiles, int last_tile) {
  const float u = math::categorical_uniform<float>(pos.seed, pos.step, static_cast<std::uint32_t>(pos.first_row + b),
                                                   static_cast<std::uint32_t>(g));
  const float t = u * total;
  int lo = 0, hi = tiles;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (prefix[mid + 1] > t) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return {lo < tiles ? lo : last_tile, t};
}

/// Inverse-CDF sampling, one block per row, tiles of kTile = kBlock * kItems logits.
///
/// Pass 1 reads every tile once (item i of thread x holds tile element i * kBlock + x) and keeps
/// its max and its sum of exp(ℓ − tile max) in shared memory. Thread 0 then forms the row max M,
/// the tile masses rescaled to M and their prefix sums, in tile order. Each draw finds its tile in
/// the prefix sums; pass 2 re-reads only tiles that hold a draw (the last tile is still in
/// registers), scans w_j = exp(ℓ_j − M) over the tile, and each draw of the tile binary-searches
/// its residual target r = max(t − prefix[tile], 0): the smallest j with cdf_j > r, or the tile's
/// last positive-weight index when rounding leaves none. Draws are taken kBlock at a time
/// (generation g by thread g % kBlock), so any G works.
template <int kBlock, int kItems, int kMaxTiles>
D2R_KERNEL void __launch_bounds__(kBlock)
    sample_kernel(Categorical<float> head, std::int64_t generations, math::DrawPosition pos,
                  MatrixView<std::int32_t> samples) {
  constexpr int kTile = kBlock * kItems;
  using Reduce = cub::BlockReduce<float, kBlock>;
  using ReduceIndex = cub::BlockReduce<int, kBlock>;
  using Scan = cub::BlockScan<float, kBlock>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename ReduceIndex::TempStorage reduce_index;
    typename Scan::TempStorage scan;
  } temp;
  __shared__ float tile_max[kMaxTiles];
  __shared__ float tile_sum[kMaxTiles];
  __shared__ float prefix[kMaxTiles + 1];  // prefix[t]: mass of tiles < t, rescaled to the row max
  __shared__ unsigned needed[(kMaxTiles + 31) / 32];
  __shared__ float weights[kTile];  // w_j of the tile being searched, by position in the tile
  __shared__ float cdf[kTile];      // their inclusive prefix sums
  __shared__ float row_total;
  __shared__ int last_tile;           // last tile of positive mass; -1: the row has no distribution
  __shared__ int tile_last_positive;  // last index of positive weight in the tile being searched

  const int tid = static_cast<int>(threadIdx.x);
  const std::int64_t classes = head.logits.cols;
  const int tiles = static_cast<int>((classes + kTile - 1) / kTile);

  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    float items[kItems];

    // ---- pass 1: per-tile max and sum of exp(ℓ − tile max)
    for (int tile = 0; tile < tiles; ++tile) {
      const std::int64_t base = static_cast<std::int64_t>(tile) * kTile;
      float local_max = kNegInf;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const std::int64_t j = base + i * kBlock + tid;
        items[i] = j < classes ? sanitize(row[j]) : kNegInf;
        local_max = fmaxf(local_max, items[i]);
      }
      const float block_max = Reduce(temp.reduce).Reduce(local_max, MaxFloat{});
      if (tid == 0) tile_max[tile] = block_max;
      __syncthreads();
      const float m = tile_max[tile];
      float local_sum = 0.0f;
      if (m > kNegInf) {
#pragma unroll
        for (int i = 0; i < kItems; ++i) local_sum += expf(items[i] - m);
      }
      const float block_sum = Reduce(temp.reduce).Sum(local_sum);
      if (tid == 0) tile_sum[tile] = block_sum;
      __syncthreads();
    }

    // ---- row max, tile masses rescaled to it, prefix sums: one thread, in tile order
    if (tid == 0) {
      float m = kNegInf;
      for (int tile = 0; tile < tiles; ++tile) m = fmaxf(m, tile_max[tile]);
      float run = 0.0f;
      int last = -1;
      prefix[0] = 0.0f;
      const bool finite_max = isfinite(m);
      for (int tile = 0; tile < tiles; ++tile) {
        const float mass = finite_max && tile_max[tile] > kNegInf ? tile_sum[tile] * expf(tile_max[tile] - m) : 0.0f;
        if (mass > 0.0f) last = tile;
        run += mass;
        prefix[tile + 1] = run;
      }
      const bool valid = finite_max && run > 0.0f && isfinite(run) && last >= 0;
      row_total = run;
      last_tile = valid ? last : -1;
      tile_max[0] = m;  // pass 1 is over: slot 0 now carries the row max
      for (int w = 0; w < (kMaxTiles + 31) / 32; ++w) needed[w] = 0u;
    }
    __syncthreads();
    const float row_max = tile_max[0];
    const float total = row_total;
    const int last = last_tile;

    if (last < 0) {
      for (std::int64_t g = tid; g < generations; g += kBlock) samples(b, g) = -1;
      __syncthreads();
      continue;
    }

    // ---- which tiles hold a draw (draw g = tid is kept in registers)
    DrawTarget first{-1, 0.0f};
    if (tid < generations) {
      first = draw_target(pos, b, tid, total, prefix, tiles, last);
      atomicOr(&needed[first.tile / 32], 1u << (first.tile % 32));
    }
    for (std::int64_t g = tid + kBlock; g < generations; g += kBlock) {
      const DrawTarget d = draw_target(pos, b, g, total, prefix, tiles, last);
      atomicOr(&needed[d.tile / 32], 1u << (d.tile % 32));
    }
    __syncthreads();

    // ---- pass 2, last tile first (its logits are still in registers)
    for (int tile = tiles - 1; tile >= 0; --tile) {
      if (((needed[tile / 32] >> (tile % 32)) & 1u) == 0u) continue;
      const std::int64_t base = static_cast<std::int64_t>(tile) * kTile;
      if (tile != tiles - 1) {
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          const std::int64_t j = base + i * kBlock + tid;
          items[i] = j < classes ? sanitize(row[j]) : kNegInf;
        }
      }
#pragma unroll
      for (int i = 0; i < kItems; ++i) weights[i * kBlock + tid] = items[i] > kNegInf ? expf(items[i] - row_max) : 0.0f;
      __syncthreads();
      float w[kItems];
      int local_last = -1;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        w[i] = weights[tid * kItems + i];
        if (w[i] > 0.0f) local_last = tid * kItems + i;
      }
      Scan(temp.scan).InclusiveSum(w, w);
#pragma unroll
      for (int i = 0; i < kItems; ++i) cdf[tid * kItems + i] = w[i];
      __syncthreads();
      const int block_last = ReduceIndex(temp.reduce_index).Reduce(local_last, MaxInt{});
      if (tid == 0) tile_last_positive = block_last;
      __syncthreads();

      const int in_tile = static_cast<int>(classes - base < kTile ? classes - base : kTile);
      const float before = prefix[tile];
      const int fallback = tile_last_positive;
      for (std::int64_t g = tid; g < generations; g += kBlock) {
        const DrawTarget d = g == tid ? first : draw_target(pos, b, g, total, prefix, tiles, last);
        if (d.tile != tile) continue;
        const float r = fmaxf(d.t - before, 0.0f);
        int lo = 0, hi = in_tile;
        while (lo < hi) {
          const int mid = (lo + hi) / 2;
          if (cdf[mid] > r) {
            hi = mid;
          } else {
            lo = mid + 1;
          }
        }
        // NOTE: a parallel scan of floats need not be monotone to the last ulp; never return a
        // zero-weight class because of that.
        while (lo < in_tile && !(weights[lo] > 0.0f)) ++lo;
        if (lo >= in_tile) lo = fallback;
        samples(b, g) = static_cast<std::int32_t>(base + lo);
      }
      __syncthreads();
    }
  }
}

// ------------------------------------------------------------------- log_prob, entropy, backward

/// Online softmax statistics of a set of logits: m = max, s = Σ exp(ℓ − m),
/// a = Σ exp(ℓ − m)(ℓ − m). The empty set is {-inf, 0, 0}.
struct RowStats {
  float m, s, a;
};

__device__ __forceinline__ RowStats push(RowStats st, float x) {
  if (!(x > kNegInf)) return st;
  if (st.m == kNegInf) return {x, 1.0f, 0.0f};
  if (x > st.m) {
    const float d = st.m - x;
    const float f = expf(d);
    return {x, st.s * f + 1.0f, f * (st.a + st.s * d)};
  }
  const float d = x - st.m;
  const float w = expf(d);
  return {st.m, st.s + w, st.a + w * d};
}

struct CombineStats {
  __device__ __forceinline__ RowStats operator()(const RowStats& x, const RowStats& y) const {
    if (x.m == kNegInf) return y;
    if (y.m == kNegInf) return x;
    const float m = fmaxf(x.m, y.m);
    const float dx = x.m - m, dy = y.m - m;
    const float fx = expf(dx), fy = expf(dy);
    return {m, x.s * fx + y.s * fy, fx * (x.a + x.s * dx) + fy * (y.a + y.s * dy)};
  }
};

__device__ __forceinline__ bool valid(const RowStats& st) {
  return isfinite(st.m) && st.s > 0.0f && isfinite(st.s);
}

/// Block-wide statistics of row b; the result is valid in thread 0 only.
template <int kBlock>
__device__ __forceinline__ RowStats row_stats(const float* row, std::int64_t classes,
                                              typename cub::BlockReduce<RowStats, kBlock>::TempStorage& temp) {
  RowStats st{kNegInf, 0.0f, 0.0f};
  for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) st = push(st, row[j]);
  return cub::BlockReduce<RowStats, kBlock>(temp).Reduce(st, CombineStats{});
}

/// out(b, g) = (ℓ_k − M) − log Z for k = samples(b, g).
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    log_prob_kernel(Categorical<float> head, MatrixView<const std::int32_t> samples, MatrixView<float> out) {
  using Reduce = cub::BlockReduce<RowStats, kBlock>;
  __shared__ typename Reduce::TempStorage temp;
  __shared__ RowStats shared_stats;
  const std::int64_t classes = head.logits.cols;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const RowStats st = row_stats<kBlock>(row, classes, temp);
    if (threadIdx.x == 0) shared_stats = st;
    __syncthreads();
    const RowStats s = shared_stats;
    const bool ok = valid(s);
    const float log_sum = logf(s.s);
    for (std::int64_t g = threadIdx.x; g < out.cols; g += kBlock) {
      const std::int32_t k = samples(b, g);
      out(b, g) = ok && k >= 0 && k < classes ? (row[k] - s.m) - log_sum : __int_as_float(0x7fc00000);
    }
    __syncthreads();
  }
}

/// out[b] = log Z − A / Z.
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock) entropy_kernel(Categorical<float> head, VectorView<float> out) {
  using Reduce = cub::BlockReduce<RowStats, kBlock>;
  __shared__ typename Reduce::TempStorage temp;
  const std::int64_t classes = head.logits.cols;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const RowStats st = row_stats<kBlock>(&head.logits(b, 0), classes, temp);
    if (threadIdx.x == 0) out[b] = valid(st) ? logf(st.s) - st.a / st.s : __int_as_float(0x7fc00000);
    __syncthreads();
  }
}

/// grad(b, j) = −p_j Σ_g c_bg − e_b p_j (log p_j + H) for every j (0 where p_j = 0), then
/// thread 0 adds c_bg at k_bg for g = 0, 1, ... in order, so repeated classes accumulate in a
/// fixed order.
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    backward_kernel(Categorical<float> head, MatrixView<const std::int32_t> samples, MatrixView<const float> d_log_prob,
                    VectorView<const float> d_entropy, MatrixView<float> grad) {
  using ReduceStats = cub::BlockReduce<RowStats, kBlock>;
  using ReduceSum = cub::BlockReduce<float, kBlock>;
  __shared__ union {
    typename ReduceStats::TempStorage stats;
    typename ReduceSum::TempStorage sum;
  } temp;
  __shared__ RowStats shared_stats;
  __shared__ float shared_c_sum;
  const std::int64_t classes = head.logits.cols;
  const bool has_log_prob = d_log_prob.data != nullptr;
  const std::int64_t generations = has_log_prob ? d_log_prob.cols : 0;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const RowStats st = row_stats<kBlock>(row, classes, temp.stats);
    float local_c = 0.0f;
    for (std::int64_t g = threadIdx.x; g < generations; g += kBlock) local_c += d_log_prob(b, g);
    __syncthreads();  // temp.stats -> temp.sum
    const float c_sum = ReduceSum(temp.sum).Sum(local_c);
    if (threadIdx.x == 0) {
      shared_stats = st;
      shared_c_sum = c_sum;
    }
    __syncthreads();
    const RowStats s = shared_stats;
    const bool ok = valid(s);
    const float c = shared_c_sum;
    const float e = d_entropy.data != nullptr ? d_entropy[b] : 0.0f;
    const float log_sum = logf(s.s);
    const float h = log_sum - s.a / s.s;
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      const float x = row[j];
      float gj = 0.0f;
      if (!ok) {
        gj = __int_as_float(0x7fc00000);
      } else if (x > kNegInf) {
        const float log_p = (x - s.m) - log_sum;
        const float p = expf(log_p);
        gj = -p * c - e * p * (log_p + h);
      }
      grad(b, j) = gj;
    }
    __syncthreads();  // the dense row is written (and visible to thread 0)
    if (threadIdx.x == 0 && ok) {
      for (std::int64_t g = 0; g < generations; ++g) {
        const std::int32_t k = samples(b, g);
        if (k >= 0 && k < classes) grad(b, k) += d_log_prob(b, g);
      }
    }
    __syncthreads();
  }
}

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
  __shared__ union {
    typename ReduceStats::TempStorage stats;
    typename ReduceSum::TempStorage sum;
  } temp;
  __shared__ RowStats shared_stats;
  __shared__ float shared_expected;
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

}  // namespace d2r::kernels::categorical
