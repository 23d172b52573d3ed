#pragma once
/// @file communicator.hpp
/// Data-parallel training on an existing engine (DESIGN.md §10): the non-owning interface the
/// trainers reduce through, and the single-process implementation.
///
/// Every rank runs the same program on the same data, options and seeds; each computes on its
/// shard of the rows (DataParallel says which) and the communicator sums the partial gradients,
/// Hessian-vector products, mixed products and metrics, so every rank holds the same parameters
/// after every step. Collectives are issued in the same order on every rank.
///
/// Implementations:
///   SingleProcessCommunicator  one rank (collectives are no-ops), d2r/communicator.hpp
///   MpiCommunicator            an MPI_Comm (host buffers), d2r/comm/mpi.hpp (D2R_WITH_MPI builds)
///   NcclCommunicator           an ncclComm_t on the context's stream (device buffers),
///                              d2r/comm/nccl.hpp (D2R_WITH_NCCL builds); nccl_over_mpi()
///                              bootstraps one over MPI
/// `d2r::has_mpi()` / `d2r::has_nccl()` say which this build has.
///
/// Errors: a collective that fails, or that does not finish within the communicator's timeout
/// (a peer died or took another path), throws d2r::Error of kind ErrorKind::communication; the
/// caller then ends every rank (abort()) rather than returning, since the peers may wait forever.
///
/// @code
///   d2r::MpiCommunicator comm(MPI_COMM_WORLD);
///   d2r::PolicyFitOptions<float> o;
///   o.parallel = {.communicator = &comm, .deterministic = true};
///   d2r::fit_policy(ctx, policy, theta.vector(), train, validation, o);   // same bits on 1..N ranks
/// @endcode

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace d2r {

/// Where the buffers given to a communicator's collectives live.
enum class CommMemory {
  host,    ///< host memory (MPI without CUDA awareness; the single-process communicator)
  device,  ///< device memory, enqueued on the stream the communicator was given (NCCL)
};

/// What a communicator has moved since it was created, per rank: the payload of the
/// collectives this rank took part in (an allreduce of n floats counts 4n bytes; the bytes on
/// the wire depend on the engine's algorithm: a ring allreduce sends about 2(P−1)/P of them).
struct CommStats {
  std::uint64_t allreduce_calls = 0;
  std::uint64_t allreduce_bytes = 0;
  std::uint64_t broadcast_calls = 0;
  std::uint64_t broadcast_bytes = 0;
  std::uint64_t barriers = 0;
};

/// The collectives the trainers need. Non-owning: an implementation wraps a communicator the
/// caller created (MPI_Comm, ncclComm_t) and does not finalise it.
class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  /// This process's index in [0, size()).
  [[nodiscard]] virtual int rank() const noexcept = 0;
  /// The number of processes.
  [[nodiscard]] virtual int size() const noexcept = 0;
  /// Where the buffers of the collectives must live.
  [[nodiscard]] virtual CommMemory memory() const noexcept = 0;

  /// data ← Σ over ranks of data (in place, same length on every rank).
  virtual void allreduce_sum(std::span<float> data) = 0;
  virtual void allreduce_sum(std::span<double> data) = 0;
  /// data ← root's data (same length on every rank).
  virtual void broadcast(std::span<std::byte> data, int root) = 0;
  /// Returns once every rank has called it.
  virtual void barrier() = 0;
  /// Waits for the collectives enqueued so far (NCCL: on the stream) and surfaces their
  /// asynchronous errors as d2r::Error; a no-op for blocking engines.
  virtual void sync() = 0;
  /// Ends every rank's process now (MPI_Abort, ncclCommAbort + exit) after printing `message`
  /// to stderr: the way out when one rank fails and the others would wait in a collective.
  [[noreturn]] virtual void abort(std::string_view message, int exit_code) noexcept = 0;

  /// Payload counters of this rank (see CommStats).
  [[nodiscard]] const CommStats& stats() const noexcept { return stats_; }
  void reset_stats() noexcept { stats_ = {}; }

 protected:
  CommStats stats_;
};

/// One process: every collective is a no-op (counted, so the byte model can be checked).
class SingleProcessCommunicator final : public Communicator {
 public:
  [[nodiscard]] int rank() const noexcept override { return 0; }
  [[nodiscard]] int size() const noexcept override { return 1; }
  [[nodiscard]] CommMemory memory() const noexcept override { return CommMemory::host; }
  void allreduce_sum(std::span<float> data) override;
  void allreduce_sum(std::span<double> data) override;
  void broadcast(std::span<std::byte> data, int root) override;
  void barrier() override { ++stats_.barriers; }
  void sync() override {}
  [[noreturn]] void abort(std::string_view message, int exit_code) noexcept override;
};

/// How a trainer splits its rows over the ranks of `communicator` (nullptr: one process, the
/// trainer's plain code path).
///
/// Not deterministic: rank r computes on one contiguous shard of about N/size rows and the
/// partial sums are all-reduced by the engine: the result equals the one-process run up to the
/// rounding of the summation order (a few ulps per step; runs of many steps drift further).
/// Deterministic: the rows are cut into blocks of `block_rows` (the last one shorter), fixed by
/// N alone; each rank computes the partial sum of every block it owns, the per-block partial
/// sums of every rank are all-reduced as one vector (each entry has exactly one nonzero
/// contribution, so the engine's order does not matter) and every rank adds the blocks up in
/// block order. A run then gives the same bits for any number of ranks (1 included), at the
/// price of (blocks × length) values per reduction instead of (length).
///
/// A device-memory communicator (NCCL) must have been given the stream of the trainer's context
/// (ctx.stream()): its collectives then order with the primitives without a synchronisation.
struct DataParallel {
  Communicator* communicator = nullptr;
  bool deterministic = false;
  std::int64_t block_rows = 256;  ///< rows per block in deterministic mode (>= 1)
  /// Views of this rank's rows only (0 elsewhere): when > 0, the training (validation) views
  /// given to the trainer hold only this rank's rows, local_rows(*this, train_rows) of a set of
  /// `train_rows` rows (local_rows(*this, validation_rows) of `validation_rows`), so a rank keeps
  /// only its shard in the backend's memory. 0: the views hold every row. Taken by fit_policy
  /// (both sets), BilevelTrainer's data-parallel constructors (both sets), fit_classifier and
  /// evaluate_sharded (the validation set: the classifier's epochs shuffle every training row).
  std::int64_t train_rows = 0;
  std::int64_t validation_rows = 0;
};

/// Rows [first, first + rows) of a batch.
struct RowRange {
  std::int64_t first = 0;
  std::int64_t rows = 0;
};

/// The rows of a batch of `total` rows that this rank computes on under `dp` (its parts are
/// contiguous): every row for one process without deterministic mode.
[[nodiscard]] RowRange local_rows(const DataParallel& dp, std::int64_t total);

/// Whether this build has the MPI communicator (d2r/comm/mpi.hpp) and the NCCL one.
[[nodiscard]] bool has_mpi() noexcept;
[[nodiscard]] bool has_nccl() noexcept;

}  // namespace d2r
