#pragma once
/// @file comm/nccl.hpp
/// The NCCL communicator (builds with D2R_WITH_NCCL; d2r::has_nccl()): one rank per GPU, device
/// buffers, collectives enqueued on the given stream (the context's: ctx.stream()), so they order
/// with the primitives and can be captured in a CUDA graph. Nothing synchronises except sync()
/// and barrier(), which wait for the stream with a timeout and surface ncclCommGetAsyncError;
/// on a timeout or an asynchronous error the communicator is aborted (ncclCommAbort) and
/// d2r::Error (ErrorKind::communication) is thrown.
///
/// @code
///   d2r::MpiCommunicator mpi(MPI_COMM_WORLD);
///   d2r::NcclHandle nccl = d2r::nccl_over_mpi(mpi, /*device=*/local_rank);   // D2R_WITH_MPI too
///   d2r::Context ctx({.backend = d2r::Backend::cuda});
///   d2r::NcclCommunicator comm(nccl.get(), ctx.stream());
/// @endcode

#include <memory>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "d2r/communicator.hpp"

namespace d2r {

class MpiCommunicator;

/// Owns an ncclComm_t (ncclCommDestroy at the end).
struct NcclDeleter {
  void operator()(ncclComm_t comm) const noexcept;
};
using NcclHandle = std::unique_ptr<std::remove_pointer_t<ncclComm_t>, NcclDeleter>;

/// A one-rank NCCL communicator on the current device (ncclCommInitAll with one device).
NcclHandle nccl_single_rank();

/// Bootstraps NCCL over MPI: rank 0 draws ncclGetUniqueId, MPI broadcasts it, every rank calls
/// ncclCommInitRank on `device` (cudaSetDevice first). Collective over `mpi`. Builds only with
/// D2R_WITH_MPI as well (else throws ErrorKind::unsupported).
NcclHandle nccl_over_mpi(MpiCommunicator& mpi, int device);

class NcclCommunicator final : public Communicator {
 public:
  /// Wraps `comm` (not owned) on `stream`. `timeout_seconds` as MpiCommunicator's.
  NcclCommunicator(ncclComm_t comm, cudaStream_t stream, double timeout_seconds = 0);
  ~NcclCommunicator() override;

  [[nodiscard]] int rank() const noexcept override { return rank_; }
  [[nodiscard]] int size() const noexcept override { return size_; }
  [[nodiscard]] CommMemory memory() const noexcept override { return CommMemory::device; }
  void allreduce_sum(std::span<float> data) override;
  void allreduce_sum(std::span<double> data) override;
  void broadcast(std::span<std::byte> data, int root) override;
  void barrier() override;
  void sync() override;
  [[noreturn]] void abort(std::string_view message, int exit_code) noexcept override;
  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_; }

 private:
  ncclComm_t comm_;
  cudaStream_t stream_;
  int rank_ = 0, size_ = 1;
  double timeout_ = 600;
  float* scratch_ = nullptr;  // one float on the device: barrier()'s allreduce
};

}  // namespace d2r
