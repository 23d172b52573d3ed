#pragma once
// Device code of the categorical head's distribution (DESIGN.md §3): sampling, log_prob, entropy,
// backward. Launchers: launch.cu beside it; the objectives and second-order pieces are in
// objectives.cuh and second_order.cuh. CPU reference with the same conventions:
// host/reference/heads/categorical.hpp.
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

#include "d2r/types/heads.hpp"
#include "kernels/common.cuh"
#include "kernels/heads/categorical/launch.hpp"
#include "kernels/objectives/launch.hpp"
#include "kernels/rewards/rewards.cuh"
#include "common/math/numerics.hpp"

namespace d2r::kernels::categorical {

inline constexpr float kNegInf = -__builtin_huge_valf();

struct MaxFloat {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct MinIndex {
  __device__ __forceinline__ std::int64_t operator()(std::int64_t a, std::int64_t b) const { return a < b ? a : b; }
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
  const float u = math::categorical_uniform<float>(pos.seed, pos.step_at(), static_cast<std::uint32_t>(pos.first_row + b),
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

/// Inverse-CDF sampling of one row per block on tiles of kTile = kBlock * kItems logits: the
/// device code shared by sample_kernel and the fused surrogate (pg_surrogate_kernel), so that
/// both draw the same class for the same key.
///
/// Pass 1 reads every tile once (item i of thread x holds tile element i * kBlock + x) and keeps
/// its max and its sum of exp(ℓ − tile max) in shared memory (tile_stats). Thread 0 then forms the
/// row max M, the tile masses rescaled to M and their prefix sums, in tile order (finish_row).
/// Each draw finds its tile in the prefix sums (draw_target); pass 2 re-reads only tiles that
/// hold a draw, scans w_j = exp(ℓ_j − M) over the tile (prepare_search), and each draw of the
/// tile binary-searches its residual target r = max(t − prefix[tile], 0): the smallest j with
/// cdf_j > r, or the tile's last positive-weight index when rounding leaves none (resolve).
template <int kBlock, int kItems, int kMaxTiles>
struct TileSampler {
  static constexpr int kTile = kBlock * kItems;
  static constexpr int kNeededWords = (kMaxTiles + 31) / 32;
  using Reduce = cub::BlockReduce<float, kBlock>;
  using ReduceIndex = cub::BlockReduce<int, kBlock>;
  using Scan = cub::BlockScan<float, kBlock>;

  struct Shared {
    union {
      typename Reduce::TempStorage reduce;
      typename ReduceIndex::TempStorage reduce_index;
      typename Scan::TempStorage scan;
    } temp;
    typename Reduce::TempStorage reduce_weighted;  // pass 1's second sum (with the entropy only)
    float tile_max[kMaxTiles];
    float tile_sum[kMaxTiles];       // Σ exp(ℓ − tile max)
    float tile_weighted[kMaxTiles];  // Σ exp(ℓ − tile max)(ℓ − tile max) (with the entropy only)
    float prefix[kMaxTiles + 1];     // prefix[t]: mass of tiles < t, rescaled to the row max
    unsigned needed[kNeededWords];   // tiles that hold a draw
    union {
      struct {
        float weights[kTile];  // w_j of the tile being searched, by position in the tile
        float cdf[kTile];      // their inclusive prefix sums
      } search;
      struct {
        int count[kTile];    // draws per class of the tile being written (fused kernel)
        float value[kTile];  // the cotangent of those draws
      } hits;
    } tile;
    float row_max;
    float row_total;     // Z = Σ exp(ℓ − M)
    float row_weighted;  // A = Σ exp(ℓ − M)(ℓ − M) (with the entropy only)
    int last_tile;       // last tile of positive mass; -1: the row has no distribution
    int tile_last_positive;  // last index of positive weight in the tile being searched
  };

  __device__ static int tiles(std::int64_t classes) { return static_cast<int>((classes + kTile - 1) / kTile); }

  /// Item i of thread x gets tile element i * kBlock + x, sanitised (-inf past the row's end).
  __device__ static void load(const float* row, std::int64_t classes, int tile, float (&items)[kItems]) {
    const std::int64_t base = static_cast<std::int64_t>(tile) * kTile;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const std::int64_t j = base + i * kBlock + static_cast<int>(threadIdx.x);
      items[i] = j < classes ? sanitize(row[j]) : kNegInf;
    }
  }

  /// Pass 1 on the tile held in `items`: its max and Σ exp(ℓ − tile max), and with kWeighted also
  /// Σ exp(ℓ − tile max)(ℓ − tile max), into shared memory. All threads; ends synchronised.
  template <bool kWeighted>
  __device__ static void tile_stats(Shared& sh, int tile, const float (&items)[kItems]) {
    float local_max = kNegInf;
#pragma unroll
    for (int i = 0; i < kItems; ++i) local_max = fmaxf(local_max, items[i]);
    const float block_max = Reduce(sh.temp.reduce).Reduce(local_max, MaxFloat{});
    if (threadIdx.x == 0) sh.tile_max[tile] = block_max;
    __syncthreads();
    const float m = sh.tile_max[tile];
    float local_sum = 0.0f, local_weighted = 0.0f;
    if (m > kNegInf) {
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const float w = expf(items[i] - m);
        local_sum += w;
        if constexpr (kWeighted) {
          if (items[i] > kNegInf) local_weighted += w * (items[i] - m);
        }
      }
    }
    const float block_sum = Reduce(sh.temp.reduce).Sum(local_sum);
    float block_weighted = 0.0f;
    if constexpr (kWeighted) block_weighted = Reduce(sh.reduce_weighted).Sum(local_weighted);
    if (threadIdx.x == 0) {
      sh.tile_sum[tile] = block_sum;
      if constexpr (kWeighted) sh.tile_weighted[tile] = block_weighted;
    }
    __syncthreads();
  }

  /// Thread 0, after pass 1: row max, tile masses rescaled to it and their prefix sums in tile
  /// order, validity (last_tile = -1: no distribution), with kWeighted A = Σ exp(ℓ − M)(ℓ − M);
  /// clears the needed-tile mask. The caller synchronises.
  template <bool kWeighted>
  __device__ static void finish_row(Shared& sh, int tiles) {
    float m = kNegInf;
    for (int tile = 0; tile < tiles; ++tile) m = fmaxf(m, sh.tile_max[tile]);
    float run = 0.0f, weighted = 0.0f;
    int last = -1;
    sh.prefix[0] = 0.0f;
    const bool finite_max = isfinite(m);
    for (int tile = 0; tile < tiles; ++tile) {
      float mass = 0.0f;
      if (finite_max && sh.tile_max[tile] > kNegInf) {
        const float d = sh.tile_max[tile] - m;
        const float f = expf(d);
        mass = __fmul_rn(sh.tile_sum[tile], f);  // never contracted into the running sum
        if constexpr (kWeighted) weighted += f * (sh.tile_weighted[tile] + sh.tile_sum[tile] * d);
      }
      if (mass > 0.0f) last = tile;
      run = __fadd_rn(run, mass);
      sh.prefix[tile + 1] = run;
    }
    const bool valid = finite_max && run > 0.0f && isfinite(run) && last >= 0;
    sh.row_max = m;
    sh.row_total = run;
    sh.row_weighted = weighted;
    sh.last_tile = valid ? last : -1;
    for (int w = 0; w < kNeededWords; ++w) sh.needed[w] = 0u;
  }

  __device__ static void mark(Shared& sh, int tile) { atomicOr(&sh.needed[tile / 32], 1u << (tile % 32)); }
  __device__ static bool needed(const Shared& sh, int tile) { return ((sh.needed[tile / 32] >> (tile % 32)) & 1u) != 0u; }

  /// Search arrays of the tile whose logits are in `items`: the weights by position, their
  /// inclusive prefix sums and the last positive-weight position. All threads; ends synchronised.
  __device__ static void prepare_search(Shared& sh, const float (&items)[kItems]) {
    const int tid = static_cast<int>(threadIdx.x);
    const float row_max = sh.row_max;
#pragma unroll
    for (int i = 0; i < kItems; ++i)
      sh.tile.search.weights[i * kBlock + tid] = items[i] > kNegInf ? expf(items[i] - row_max) : 0.0f;
    __syncthreads();
    float w[kItems];
    int local_last = -1;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      w[i] = sh.tile.search.weights[tid * kItems + i];
      if (w[i] > 0.0f) local_last = tid * kItems + i;
    }
    Scan(sh.temp.scan).InclusiveSum(w, w);
#pragma unroll
    for (int i = 0; i < kItems; ++i) sh.tile.search.cdf[tid * kItems + i] = w[i];
    __syncthreads();
    const int block_last = ReduceIndex(sh.temp.reduce_index).Reduce(local_last, MaxInt{});
    if (tid == 0) sh.tile_last_positive = block_last;
    __syncthreads();
  }

  /// Class of a draw with target t that lies in `tile` (after prepare_search on that tile).
  __device__ static std::int32_t resolve(const Shared& sh, float t, int tile, std::int64_t classes) {
    const std::int64_t base = static_cast<std::int64_t>(tile) * kTile;
    const int in_tile = static_cast<int>(classes - base < kTile ? classes - base : kTile);
    const float r = fmaxf(t - sh.prefix[tile], 0.0f);
    int lo = 0, hi = in_tile;
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (sh.tile.search.cdf[mid] > r) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    // NOTE: a parallel scan of floats need not be monotone to the last ulp; never return a
    // zero-weight class because of that.
    while (lo < in_tile && !(sh.tile.search.weights[lo] > 0.0f)) ++lo;
    if (lo >= in_tile) lo = sh.tile_last_positive;
    return static_cast<std::int32_t>(base + lo);
  }
};

/// Inverse-CDF sampling (TileSampler), one block per row. Pass 2 goes last tile first (its
/// logits are still in registers). Draws are taken kBlock at a time (generation g by thread
/// g % kBlock; draw g = tid is kept in registers), so any G works.
template <int kBlock, int kItems, int kMaxTiles>
D2R_KERNEL void __launch_bounds__(kBlock)
    sample_kernel(Categorical<float> head, std::int64_t generations, math::DrawPosition pos,
                  MatrixView<std::int32_t> samples) {
  using S = TileSampler<kBlock, kItems, kMaxTiles>;
  D2R_SHARED(typename S::Shared, sh);
  const int tid = static_cast<int>(threadIdx.x);
  const std::int64_t classes = head.logits.cols;
  const int tiles = S::tiles(classes);

  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    float items[kItems];

    // ---- pass 1
    for (int tile = 0; tile < tiles; ++tile) {
      S::load(row, classes, tile, items);
      S::template tile_stats<false>(sh, tile, items);
    }
    if (tid == 0) S::template finish_row<false>(sh, tiles);
    __syncthreads();
    const float total = sh.row_total;
    const int last = sh.last_tile;

    if (last < 0) {
      for (std::int64_t g = tid; g < generations; g += kBlock) samples(b, g) = -1;
      __syncthreads();
      continue;
    }

    // ---- which tiles hold a draw
    DrawTarget first{-1, 0.0f};
    if (tid < generations) {
      first = draw_target(pos, b, tid, total, sh.prefix, tiles, last);
      S::mark(sh, first.tile);
    }
    for (std::int64_t g = tid + kBlock; g < generations; g += kBlock)
      S::mark(sh, draw_target(pos, b, g, total, sh.prefix, tiles, last).tile);
    __syncthreads();

    // ---- pass 2, last tile first
    for (int tile = tiles - 1; tile >= 0; --tile) {
      if (!S::needed(sh, tile)) continue;
      if (tile != tiles - 1) S::load(row, classes, tile, items);
      S::prepare_search(sh, items);
      for (std::int64_t g = tid; g < generations; g += kBlock) {
        const DrawTarget d = g == tid ? first : draw_target(pos, b, g, total, sh.prefix, tiles, last);
        if (d.tile == tile) samples(b, g) = S::resolve(sh, d.t, tile, classes);
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

/// Row b's statistics and C = Σ_g d_log_prob(b, g) over its `generations` draws, both block-wide,
/// handed to every thread through `shared_stats` and `shared_c_sum`. `temp` (a union of the two
/// reductions' storage, `stats` and `sum`) is reused between them after a barrier.
struct RowStatsAndSum {
  RowStats stats;
  float c_sum;
};
template <int kBlock, class Temp>
__device__ __forceinline__ RowStatsAndSum row_stats_and_cotangent_sum(const float* row, std::int64_t classes,
                                                                      MatrixView<const float> d_log_prob,
                                                                      std::int64_t b, std::int64_t generations,
                                                                      Temp& temp, RowStats& shared_stats,
                                                                      float& shared_c_sum) {
  const RowStats st = row_stats<kBlock>(row, classes, temp.stats);
  float local_c = 0.0f;
  for (std::int64_t g = threadIdx.x; g < generations; g += kBlock) local_c += d_log_prob(b, g);
  __syncthreads();  // temp.stats -> temp.sum
  const float c_sum = cub::BlockReduce<float, kBlock>(temp.sum).Sum(local_c);
  if (threadIdx.x == 0) {
    shared_stats = st;
    shared_c_sum = c_sum;
  }
  __syncthreads();
  return {shared_stats, shared_c_sum};
}

/// out(b, g) = (ℓ_k − M) − log Z for k = samples(b, g).
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    log_prob_kernel(Categorical<float> head, MatrixView<const std::int32_t> samples, MatrixView<float> out) {
  using Reduce = cub::BlockReduce<RowStats, kBlock>;
  D2R_SHARED(typename Reduce::TempStorage, temp);
  D2R_SHARED(RowStats, shared_stats);
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
  D2R_SHARED(typename Reduce::TempStorage, temp);
  const std::int64_t classes = head.logits.cols;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const RowStats st = row_stats<kBlock>(&head.logits(b, 0), classes, temp);
    if (threadIdx.x == 0) out[b] = valid(st) ? logf(st.s) - st.a / st.s : __int_as_float(0x7fc00000);
    __syncthreads();
  }
}

/// grad(b, j) = −p_j Σ_g c_bg − e_b p_j (log p_j + H) for every j (0 where p_j = 0), then
/// + Σ_{g: k_bg = j} c_bg, one block per row. The sparse sum takes the draws kBlock at a time in
/// generation order (a chunk in shared memory); in a chunk, the first thread holding class k (its
/// "leader") adds the chunk's cotangents of k in generation order and updates grad(b, k) once, and
/// a barrier separates the chunks: every class's sum has a fixed order (deterministic) and no two
/// threads update one element at a time, with O(G) work per thread instead of O(G) serial
/// dependent read-modify-writes in one thread (the former design, idle for large G).
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    backward_kernel(Categorical<float> head, MatrixView<const std::int32_t> samples, MatrixView<const float> d_log_prob,
                    VectorView<const float> d_entropy, MatrixView<float> grad) {
  using ReduceStats = cub::BlockReduce<RowStats, kBlock>;
  using ReduceSum = cub::BlockReduce<float, kBlock>;
  union Temp {
    typename ReduceStats::TempStorage stats;
    typename ReduceSum::TempStorage sum;
  };
  D2R_SHARED(Temp, temp);
  D2R_SHARED(RowStats, shared_stats);
  D2R_SHARED(float, shared_c_sum);
  D2R_SHARED(std::int32_t[kBlock], chunk_class);  // class of each draw of the chunk, −1: none
  D2R_SHARED(float[kBlock], chunk_c);             // its cotangent
  const int tid = static_cast<int>(threadIdx.x);
  const std::int64_t classes = head.logits.cols;
  const bool has_log_prob = d_log_prob.data != nullptr;
  const std::int64_t generations = has_log_prob ? d_log_prob.cols : 0;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const RowStatsAndSum rs =
        row_stats_and_cotangent_sum<kBlock>(row, classes, d_log_prob, b, generations, temp, shared_stats, shared_c_sum);
    const RowStats s = rs.stats;
    const bool ok = valid(s);
    const float c = rs.c_sum;
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
    __syncthreads();  // the dense row is written (and visible to every thread)
    if (ok) {  // block-uniform branch
      for (std::int64_t g0 = 0; g0 < generations; g0 += kBlock) {
        const std::int64_t g = g0 + tid;
        std::int32_t k = -1;
        float cg = 0.0f;
        if (g < generations) {
          k = samples(b, g);
          if (k < 0 || k >= classes) {
            k = -1;
          } else {
            cg = d_log_prob(b, g);
          }
        }
        chunk_class[tid] = k;
        chunk_c[tid] = cg;
        __syncthreads();
        if (k >= 0) {
          bool leader = true;
          for (int t = 0; t < tid && leader; ++t) leader = chunk_class[t] != k;
          if (leader) {
            const int n = generations - g0 < kBlock ? static_cast<int>(generations - g0) : kBlock;
            float sum = cg;
            for (int t = tid + 1; t < n; ++t)
              if (chunk_class[t] == k) sum += chunk_c[t];
            grad(b, k) += sum;
          }
        }
        __syncthreads();  // the chunk's updates are done before the next chunk overwrites it
      }
    }
    __syncthreads();
  }
}

}  // namespace d2r::kernels::categorical
