#pragma once
/// @file comm/mpi.hpp
/// The MPI communicator (builds with D2R_WITH_MPI; d2r::has_mpi() says whether this one has it).
/// Host buffers (the cpu backend's memory; on the cuda backend the trainers stage through the
/// host). CUDA-aware MPI is not assumed.
///
/// Collectives are started non-blocking (MPI_Iallreduce, MPI_Ibcast, MPI_Ibarrier) and polled
/// until they finish or `timeout_seconds` pass: a peer that died, hangs or took another path ends
/// the wait with d2r::Error (ErrorKind::communication) instead of a hang. The communicator works on
/// a duplicate of the caller's MPI_Comm with MPI_ERRORS_RETURN, so engine failures are reported
/// the same way and the caller's handle keeps its own error handler.
///
/// @code
///   d2r::MpiSession mpi(&argc, &argv);                // MPI_Init_thread .. MPI_Finalize
///   d2r::MpiCommunicator comm(MPI_COMM_WORLD);
///   if (comm.rank() == 0) { /* print, write outputs */ }
/// @endcode

#include <mpi.h>

#include "d2r/communicator.hpp"

namespace d2r {

/// MPI_Init_thread (MPI_THREAD_FUNNELED) unless MPI is already initialised, MPI_Finalize at the
/// end of its scope if it initialised it.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owns_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  /// Duplicates `comm` (collective: every rank of it must construct one). `timeout_seconds` > 0
  /// bounds every collective; 0 takes D2R_COMM_TIMEOUT from the environment, else 600 s.
  explicit MpiCommunicator(MPI_Comm comm, double timeout_seconds = 0);
  ~MpiCommunicator() override;

  [[nodiscard]] int rank() const noexcept override { return rank_; }
  [[nodiscard]] int size() const noexcept override { return size_; }
  [[nodiscard]] CommMemory memory() const noexcept override { return CommMemory::host; }
  void allreduce_sum(std::span<float> data) override;
  void allreduce_sum(std::span<double> data) override;
  void broadcast(std::span<std::byte> data, int root) override;
  void barrier() override;
  void sync() override {}
  [[noreturn]] void abort(std::string_view message, int exit_code) noexcept override;
  /// The duplicated communicator (for bootstrapping other engines over it, e.g. nccl_over_mpi).
  [[nodiscard]] MPI_Comm handle() const noexcept { return comm_; }
  [[nodiscard]] double timeout_seconds() const noexcept { return timeout_; }

 private:
  void wait(MPI_Request& request, int started, const char* what);
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_ = 600;
};

}  // namespace d2r
