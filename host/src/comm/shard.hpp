#pragma once
// Row sharding and reductions of the trainers (DESIGN.md §10; d2r/communicator.hpp DataParallel):
// which rows this rank computes on, and the sums of per-shard (or per-block) contributions to a
// backend vector or to metrics.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include <fmt/format.h>

#include "d2r/config.hpp"
#if D2R_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

#include "d2r/bilevel.hpp"
#include "d2r/buffer.hpp"
#include "d2r/communicator.hpp"
#include "d2r/error.hpp"
#include "host/src/backend.hpp"
#include "host/src/validate.hpp"

namespace d2r::shard {

/// Rows [first, first + rows) of the batch; `slot` = its index in the reduction vector (the
/// global block index in deterministic mode, the rank otherwise).
struct Part {
  std::int64_t first = 0;
  std::int64_t rows = 0;
  std::int64_t slot = 0;
};

/// This rank's parts of a batch of `total` rows.
struct Plan {
  Communicator* comm = nullptr;
  bool deterministic = false;
  std::int64_t total = 0;
  std::int64_t slots = 1;  // blocks (deterministic) or ranks
  std::vector<Part> parts;
};

/// Whether `dp` asks for anything but the plain one-process path.
inline bool active(const DataParallel& dp) {
  return dp.communicator != nullptr && (dp.communicator->size() > 1 || dp.deterministic);
}

/// `local_views`: whether the trainer takes views of this rank's rows only (train_rows > 0).
inline void check(Context& ctx, std::string_view fn, std::string_view name, const DataParallel& dp,
                  bool local_views = false) {
  D2R_EXPECTS(local_views || (dp.train_rows == 0 && dp.validation_rows == 0), fn, name,
              "train_rows/validation_rows (views of this rank's rows only) are not taken here; give 0 and every row");
  D2R_EXPECTS(dp.communicator == nullptr || dp.communicator->memory() == CommMemory::host ||
                  detail::on_device(ctx),
              fn, name, "a device-memory communicator (NCCL) needs the cuda backend");
  D2R_EXPECTS(!dp.deterministic || dp.block_rows >= 1, fn, name, "block_rows must be >= 1, got {}", dp.block_rows);
  D2R_EXPECTS(!dp.deterministic || dp.communicator != nullptr, fn, name,
              "deterministic mode needs a communicator (d2r::SingleProcessCommunicator for one process)");
}

inline Plan plan(const DataParallel& dp, std::int64_t total) {
  Plan p;
  p.comm = dp.communicator;
  p.deterministic = dp.deterministic;
  p.total = total;
  const std::int64_t size = p.comm != nullptr ? p.comm->size() : 1, rank = p.comm != nullptr ? p.comm->rank() : 0;
  if (dp.deterministic) {
    const std::int64_t blocks = (total + dp.block_rows - 1) / dp.block_rows;
    p.slots = blocks;
    const std::int64_t b0 = rank * blocks / size, b1 = (rank + 1) * blocks / size;
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t first = b * dp.block_rows;
      p.parts.push_back({first, std::min(dp.block_rows, total - first), b});
    }
  } else {
    p.slots = size;
    const std::int64_t first = rank * total / size, last = (rank + 1) * total / size;
    if (last > first) p.parts.push_back({first, last - first, rank});
  }
  return p;
}

/// v ← a·v on the context's backend.
template <class T>
void scale(Context& ctx, T a, VectorView<T> v) {
  if (a == T(1)) return;
  detail::run_on<T>(
      ctx, [&] { for (std::int64_t i = 0; i < v.size; ++i) v.data[i] *= a; },
      [&](const auto& ex) {
#if D2R_WITH_CUDA
        D2R_CUBLAS_TRY(cublasSscal(ex.ctx.cublas(), static_cast<int>(v.size), &a, v.data, 1));
#else
        (void)ex;
#endif
      });
}

/// n elements of the backend's memory at src to the host at dst (after the queued work).
template <class T>
void to_host(Context& ctx, const T* src, T* dst, std::int64_t n) {
  if (n > 0) ctx.to_host(dst, src, static_cast<std::size_t>(n) * sizeof(T));
}
/// n host elements at src into the backend's memory at dst (returns once copied).
template <class T>
void from_host(Context& ctx, const T* src, T* dst, std::int64_t n) {
  if (n > 0) ctx.from_host(dst, src, static_cast<std::size_t>(n) * sizeof(T));
}

/// Reduces vectors of the backend's memory.
template <class T>
class Reducer {
 public:
  /// Vectors of up to `length` entries.
  Reducer(Context& ctx, std::int64_t length) : ctx_(ctx), scratch_(ctx, static_cast<std::size_t>(length)) {}

  /// out ← Σ over every rank's parts of `plan` of compute(part, dst) (each writes its part's
  /// contribution, already normalised by the whole batch, into dst: out.size entries of the
  /// backend's memory).
  void sum(const Plan& plan_, VectorView<T> out, const std::function<void(const Part&, VectorView<T>)>& compute) {
    const std::int64_t n = out.size;
    Communicator& comm = *plan_.comm;
    const bool device_comm = comm.memory() == CommMemory::device;
    if (!plan_.deterministic) {
      if (plan_.parts.empty()) {
        zero(out);
      } else {
        compute(plan_.parts.front(), out);
      }
      if (device_comm) {
        comm.allreduce_sum(std::span<T>(out.data, static_cast<std::size_t>(n)));
      } else {
        host_.resize(static_cast<std::size_t>(n));
        to_host(ctx_, out.data, host_.data(), n);
        comm.allreduce_sum(std::span<T>(host_));
        from_host(ctx_, host_.data(), out.data, n);
      }
      return;
    }
    // Deterministic: one slot per block, every rank fills its own, the engine adds zeros to them
    // (exact), then the blocks are summed in block order on the host.
    const std::size_t total = static_cast<std::size_t>(plan_.slots * n);
    host_.assign(total, T(0));
    for (const Part& part : plan_.parts) {
      compute(part, VectorView<T>{scratch_.data(), n});
      to_host(ctx_, scratch_.data(), host_.data() + part.slot * n, n);
    }
    if (device_comm) {
      if (blocks_.size() < total) blocks_ = Buffer<T>(ctx_, total);
      from_host(ctx_, host_.data(), blocks_.data(), static_cast<std::int64_t>(total));
      comm.allreduce_sum(std::span<T>(blocks_.data(), total));
      comm.sync();
      to_host(ctx_, blocks_.data(), host_.data(), static_cast<std::int64_t>(total));
    } else {
      comm.allreduce_sum(std::span<T>(host_));
    }
    std::vector<T> acc(host_.begin(), host_.begin() + n);
    for (std::int64_t b = 1; b < plan_.slots; ++b) {
      const T* blk = host_.data() + b * n;
      for (std::int64_t i = 0; i < n; ++i) acc[static_cast<std::size_t>(i)] += blk[i];
    }
    from_host(ctx_, acc.data(), out.data, n);
  }

 private:
  void zero(VectorView<T> v) {
    detail::run_on<T>(
        ctx_, [&] { std::fill(v.data, v.data + v.size, T(0)); },
        [&](const auto& ex) {
#if D2R_WITH_CUDA
          D2R_CUDA_TRY(cudaMemsetAsync(v.data, 0, static_cast<std::size_t>(v.size) * sizeof(T), ex.stream));
#else
          (void)ex;
#endif
        });
  }
  Context& ctx_;
  Buffer<T> scratch_, blocks_;
  std::vector<T> host_;
};

/// Metrics of the whole batch from the metrics of the parts (means over their rows), in double on
/// the host: the sums Σ nll, Σ squared error, Σ std, Σ correct are reduced (in block order in
/// deterministic mode) and divided by the batch's rows.
inline PolicyMetrics metrics(const Plan& plan, const std::function<PolicyMetrics(const Part&)>& evaluate) {
  constexpr std::int64_t K = 4;
  std::vector<double> sums(static_cast<std::size_t>(plan.slots * K), 0.0);
  for (const Part& part : plan.parts) {
    const PolicyMetrics m = evaluate(part);
    const auto r = static_cast<double>(part.rows);
    double* s = sums.data() + (plan.deterministic ? part.slot : 0) * K;
    s[0] += m.nll_per_dim * r;
    s[1] += m.rmse * m.rmse * r;
    s[2] += m.mean_std * r;
    s[3] += m.accuracy * r;
  }
  if (!plan.deterministic) sums.resize(K);
  plan.comm->allreduce_sum(std::span<double>(sums));
  std::vector<double> acc(sums.begin(), sums.begin() + K);
  for (std::size_t b = 1; b * K < sums.size(); ++b) {
    for (std::int64_t i = 0; i < K; ++i) acc[static_cast<std::size_t>(i)] += sums[b * K + static_cast<std::size_t>(i)];
  }
  const auto N = static_cast<double>(plan.total);
  PolicyMetrics out;
  out.nll_per_dim = acc[0] / N;
  out.rmse = std::sqrt(acc[1] / N);
  out.mean_std = acc[2] / N;
  out.accuracy = acc[3] / N;
  return out;
}

}  // namespace d2r::shard
