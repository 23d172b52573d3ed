#pragma once
// Device code of the categorical head (DESIGN.md §3). Launchers: categorical.cu.
// CPU reference with the same conventions: host/reference/heads/categorical.hpp.
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
#include "kernels/rewards.cuh"
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
/// row terms → backward (see reference::pg_row_terms for the per-row terms).
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
    // standardize centres r − lo (reference::transform_row): equal rewards give advantages of 0.
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

// ------------------------------------------------------------ second order (d2r/second_order.hpp)

/// m̄ = Σ_j p_j ℓ̇_j of row b with statistics `s` (valid): block-wide, the result in thread 0.
template <int kBlock>
__device__ __forceinline__ float tangent_mean(const float* row, const float* tangent_row, std::int64_t classes,
                                              const RowStats& s, float log_sum,
                                              typename cub::BlockReduce<float, kBlock>::TempStorage& temp) {
  float local = 0.0f;
  for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
    const float x = row[j];
    if (x > kNegInf) local += expf((x - s.m) - log_sum) * tangent_row[j];
  }
  return cub::BlockReduce<float, kBlock>(temp).Sum(local);
}

/// out(b, g) = ℓ̇_k − Σ_j p_j ℓ̇_j for k = samples(b, g) (NaN for an invalid row or index).
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    log_prob_jvp_kernel(Categorical<float> head, MatrixView<const std::int32_t> samples, Categorical<float> tangent,
                        MatrixView<float> out) {
  using ReduceStats = cub::BlockReduce<RowStats, kBlock>;
  using ReduceSum = cub::BlockReduce<float, kBlock>;
  union Temp {
    typename ReduceStats::TempStorage stats;
    typename ReduceSum::TempStorage sum;
  };
  D2R_SHARED(Temp, temp);
  D2R_SHARED(RowStats, shared_stats);
  D2R_SHARED(float, shared_mean);
  const std::int64_t classes = head.logits.cols;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const float* t_row = &tangent.logits(b, 0);
    const RowStats st = row_stats<kBlock>(row, classes, temp.stats);
    if (threadIdx.x == 0) shared_stats = st;
    __syncthreads();
    const RowStats s = shared_stats;
    const bool ok = valid(s);
    const float log_sum = logf(s.s);
    float mean = 0.0f;
    if (ok) mean = tangent_mean<kBlock>(row, t_row, classes, s, log_sum, temp.sum);  // block-uniform branch
    if (threadIdx.x == 0) shared_mean = mean;
    __syncthreads();
    const float m_bar = shared_mean;
    for (std::int64_t g = threadIdx.x; g < out.cols; g += kBlock) {
      const std::int32_t k = samples(b, g);
      out(b, g) = ok && k >= 0 && k < classes ? t_row[k] - m_bar : __int_as_float(0x7fc00000);
    }
    __syncthreads();
  }
}

/// grad_tangent(b, j) = −C p_j u_j − e p_j [u_j (log p_j + H + 1) + Ḣ], u_j = ℓ̇_j − m̄,
/// Ḣ = −Σ_j p_j (log p_j + H) u_j, C = Σ_g c_bg (0 where p_j = 0; NaN rows without a
/// distribution). Passes over the row: statistics, m̄, Ḣ, output.
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    backward_tangent_kernel(Categorical<float> head, MatrixView<const float> d_log_prob,
                            VectorView<const float> d_entropy, Categorical<float> tangent, MatrixView<float> grad) {
  using ReduceStats = cub::BlockReduce<RowStats, kBlock>;
  using ReduceSum = cub::BlockReduce<float, kBlock>;
  union Temp {
    typename ReduceStats::TempStorage stats;
    typename ReduceSum::TempStorage sum;
  };
  D2R_SHARED(Temp, temp);
  D2R_SHARED(RowStats, shared_stats);
  D2R_SHARED(float, shared_c_sum);
  D2R_SHARED(float, shared_mean);
  D2R_SHARED(float, shared_h_dot);
  const std::int64_t classes = head.logits.cols;
  const std::int64_t generations = d_log_prob.data != nullptr ? d_log_prob.cols : 0;
  const bool has_entropy = d_entropy.data != nullptr;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const float* t_row = &tangent.logits(b, 0);
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
    const float e = has_entropy ? d_entropy[b] : 0.0f;
    const float log_sum = logf(s.s);
    const float h = log_sum - s.a / s.s;
    float mean = 0.0f;
    if (ok) mean = tangent_mean<kBlock>(row, t_row, classes, s, log_sum, temp.sum);  // block-uniform branch
    if (threadIdx.x == 0) shared_mean = mean;
    __syncthreads();
    const float m_bar = shared_mean;
    float h_dot = 0.0f;
    if (ok && has_entropy) {  // block-uniform branch
      float local = 0.0f;
      for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
        const float x = row[j];
        if (!(x > kNegInf)) continue;
        const float log_p = (x - s.m) - log_sum;
        local -= expf(log_p) * (log_p + h) * (t_row[j] - m_bar);
      }
      h_dot = ReduceSum(temp.sum).Sum(local);
    }
    if (threadIdx.x == 0) shared_h_dot = h_dot;
    __syncthreads();
    h_dot = shared_h_dot;
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      const float x = row[j];
      float gj = 0.0f;
      if (!ok) {
        gj = __int_as_float(0x7fc00000);
      } else if (x > kNegInf) {
        const float log_p = (x - s.m) - log_sum;
        const float p = expf(log_p);
        const float u = t_row[j] - m_bar;
        gj = -c * p * u - e * p * (u * (log_p + h + 1.0f) + h_dot);
      }
      grad(b, j) = gj;
    }
    __syncthreads();
  }
}

// ------------------------------------------------------------------- exact-objective tangent

/// Tangent of exact_kernel's gradient along ℓ̇ (reference::exact_categorical_tangent), one row per
/// block: with u_j = ℓ̇_j − m̄ (m̄ = Σ p ℓ̇), E = Σ p r, Ė = Σ p u r and Ḣ = −Σ p u (log p + H),
///   grad(b, j) = −k [p_j u_j (r_j − E) − p_j Ė − λ p_j (u_j (log p_j + H + 1) + Ḣ)],   k = 1 / N,
/// 0 where p_j = 0, NaN rows without a distribution. Passes over the row: statistics and the most
/// probable class a; m̄ and E; Ė and Ḣ; output (the one-hot reward r_j = r(j, y_b) recomputed in
/// each). As the reference, ℓ̇ and r are shifted by their values at a first (u, r − E and Ė do not
/// change), so that u_a and r_a − E are sums of small terms, not differences of nearly equal ones
/// when p_a ≈ 1 (issue 17: 3 digits lost in float at p_a ≈ 0.992).
template <int kBlock>
D2R_KERNEL void __launch_bounds__(kBlock)
    exact_tangent_kernel(Categorical<float> head, VectorView<const std::int32_t> labels, MahalanobisReward<float> reward,
                         float lambda, float normaliser, Categorical<float> tangent, MatrixView<float> grad) {
  using ReduceStats = cub::BlockReduce<RowStats, kBlock>;
  using ReducePair = cub::BlockReduce<Pair, kBlock>;
  using ReduceIndex = cub::BlockReduce<std::int64_t, kBlock>;
  union Temp {
    typename ReduceStats::TempStorage stats;
    typename ReducePair::TempStorage pair;
    typename ReduceIndex::TempStorage index;
  };
  D2R_SHARED(Temp, temp);
  D2R_SHARED(RowStats, shared_stats);
  D2R_SHARED(std::int64_t, shared_argmax);
  D2R_SHARED(Pair, shared_first);
  D2R_SHARED(Pair, shared_second);
  const std::int64_t classes = head.logits.cols;
  const float k = 1.0f / normaliser;
  for (std::int64_t b = blockIdx.x; b < head.logits.rows; b += gridDim.x) {
    const float* row = &head.logits(b, 0);
    const float* t_row = &tangent.logits(b, 0);
    const std::int32_t y = labels[b];
    const RowStats st = row_stats<kBlock>(row, classes, temp.stats);
    if (threadIdx.x == 0) shared_stats = st;
    __syncthreads();
    const RowStats s = shared_stats;
    const bool ok = valid(s);
    const float log_sum = logf(s.s);
    const float h = log_sum - s.a / s.s;
    // a = the first index of the largest logit (0 for a row without a distribution).
    std::int64_t local_a = classes;
    for (std::int64_t j = threadIdx.x; j < classes && local_a == classes; j += kBlock)
      if (row[j] == s.m) local_a = j;
    const std::int64_t block_a = ReduceIndex(temp.index).Reduce(local_a, MinIndex{});
    if (threadIdx.x == 0) shared_argmax = block_a < classes ? block_a : 0;
    __syncthreads();
    const std::int64_t a = shared_argmax;
    const float t_a = t_row[a];
    const float r_a = rewards::one_hot_reward(reward, static_cast<std::int32_t>(a), y);
    // m̄ = Σ p (ℓ̇ − ℓ̇_a) and E = Σ p (r − r_a).
    Pair local{0.0f, 0.0f};
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      const float x = row[j];
      if (!(x > kNegInf)) continue;
      const float p = expf((x - s.m) - log_sum);
      local.x += p * (t_row[j] - t_a);
      local.y += p * (rewards::one_hot_reward(reward, static_cast<std::int32_t>(j), y) - r_a);
    }
    const Pair first = ReducePair(temp.pair).Reduce(local, PairSum{});
    if (threadIdx.x == 0) shared_first = first;
    __syncthreads();
    const float m_bar = shared_first.x, e_r = shared_first.y;
    // Ė = Σ p u (r − r_a) and Ḣ = −Σ p u (log p + H).
    local = {0.0f, 0.0f};
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      const float x = row[j];
      if (!(x > kNegInf)) continue;
      const float log_p = (x - s.m) - log_sum;
      const float pu = expf(log_p) * ((t_row[j] - t_a) - m_bar);
      local.x += pu * (rewards::one_hot_reward(reward, static_cast<std::int32_t>(j), y) - r_a);
      local.y -= pu * (log_p + h);
    }
    const Pair second = ReducePair(temp.pair).Reduce(local, PairSum{});
    if (threadIdx.x == 0) shared_second = second;
    __syncthreads();
    const float e_dot = shared_second.x, h_dot = shared_second.y;
    for (std::int64_t j = threadIdx.x; j < classes; j += kBlock) {
      const float x = row[j];
      float gj = 0.0f;
      if (!ok) {
        gj = __int_as_float(0x7fc00000);
      } else if (x > kNegInf) {
        const float log_p = (x - s.m) - log_sum;
        const float p = expf(log_p);
        const float u = (t_row[j] - t_a) - m_bar;
        const float r = rewards::one_hot_reward(reward, static_cast<std::int32_t>(j), y) - r_a;
        gj = -k * (p * u * (r - e_r) - p * e_dot - lambda * p * (u * (log_p + h + 1.0f) + h_dot));
      }
      grad(b, j) = gj;
    }
    __syncthreads();
  }
}

}  // namespace d2r::kernels::categorical
