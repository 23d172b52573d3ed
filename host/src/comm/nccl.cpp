// The NCCL communicator (d2r/comm/nccl.hpp): collectives on the caller's stream; sync() waits
// with a deadline and surfaces NCCL's asynchronous errors.
#include "d2r/comm/nccl.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include "d2r/error.hpp"
#include "host/src/comm/wait.hpp"
#if defined(D2R_WITH_MPI)
#include "d2r/comm/mpi.hpp"
#endif

namespace d2r {
namespace {

[[noreturn]] void fail(const std::string& message) {
  throw Error(ErrorKind::communication, "", "d2r::NcclCommunicator: " + message);
}

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress) fail(fmt::format("{} failed: {}", what, ncclGetErrorString(r)));
}

}  // namespace

void NcclDeleter::operator()(ncclComm_t comm) const noexcept {
  if (comm != nullptr) (void)ncclCommDestroy(comm);
}

NcclHandle nccl_single_rank() {
  int device = 0;
  D2R_CUDA_TRY(cudaGetDevice(&device));
  ncclComm_t comm = nullptr;
  check(ncclCommInitAll(&comm, 1, &device), "ncclCommInitAll");
  return NcclHandle(comm);
}

NcclHandle nccl_over_mpi([[maybe_unused]] MpiCommunicator& mpi, [[maybe_unused]] int device) {
#if defined(D2R_WITH_MPI)
  D2R_CUDA_TRY(cudaSetDevice(device));
  ncclUniqueId id{};
  if (mpi.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  mpi.broadcast(std::as_writable_bytes(std::span<ncclUniqueId>(&id, 1)), 0);
  ncclComm_t comm = nullptr;
  check(ncclCommInitRank(&comm, mpi.size(), id, mpi.rank()), "ncclCommInitRank");
  return NcclHandle(comm);
#else
  throw Error(ErrorKind::unsupported, "mpi", "d2r::nccl_over_mpi: this build has no MPI (D2R_WITH_MPI=OFF)");
#endif
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, cudaStream_t stream, double timeout_seconds)
    : comm_(comm), stream_(stream), timeout_(timeout_seconds > 0 ? timeout_seconds : comm_detail::env_timeout("d2r::NcclCommunicator")) {
  if (comm == nullptr) {
    throw Error(ErrorKind::invalid_argument, "comm", "d2r::NcclCommunicator: argument 'comm': expected an ncclComm_t, got null");
  }
  check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
  check(ncclCommCount(comm_, &size_), "ncclCommCount");
  D2R_CUDA_TRY(cudaMalloc(&scratch_, sizeof(float)));
}

NcclCommunicator::~NcclCommunicator() {
  if (scratch_ != nullptr) D2R_CUDA_TRY_NO_THROW(cudaFree(scratch_));
}

void NcclCommunicator::allreduce_sum(std::span<float> data) {
  ++stats_.allreduce_calls;
  stats_.allreduce_bytes += data.size_bytes();
  if (data.empty()) return;
  check(ncclAllReduce(data.data(), data.data(), data.size(), ncclFloat32, ncclSum, comm_, stream_), "ncclAllReduce");
}

void NcclCommunicator::allreduce_sum(std::span<double> data) {
  ++stats_.allreduce_calls;
  stats_.allreduce_bytes += data.size_bytes();
  if (data.empty()) return;
  check(ncclAllReduce(data.data(), data.data(), data.size(), ncclFloat64, ncclSum, comm_, stream_), "ncclAllReduce");
}

void NcclCommunicator::broadcast(std::span<std::byte> data, int root) {
  if (root < 0 || root >= size_) {
    throw Error(ErrorKind::invalid_argument, "root",
                fmt::format("d2r::NcclCommunicator::broadcast: argument 'root': expected a rank in [0, {}), got {}",
                            size_, root));
  }
  ++stats_.broadcast_calls;
  stats_.broadcast_bytes += data.size_bytes();
  if (data.empty()) return;
  check(ncclBroadcast(data.data(), data.data(), data.size(), ncclUint8, root, comm_, stream_), "ncclBroadcast");
}

void NcclCommunicator::barrier() {
  ++stats_.barriers;
  check(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_), "ncclAllReduce (barrier)");
  sync();
}

void NcclCommunicator::sync() {
  comm_detail::wait_until(
      timeout_,
      [&] {
        ncclResult_t async = ncclSuccess;
        check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
        if (async != ncclSuccess && async != ncclInProgress) {
          (void)ncclCommAbort(comm_);
          fail(fmt::format("asynchronous error on rank {} of {}: {}", rank_, size_, ncclGetErrorString(async)));
        }
        const cudaError_t q = cudaStreamQuery(stream_);
        if (q != cudaSuccess && q != cudaErrorNotReady) D2R_CUDA_TRY(q);
        return q == cudaSuccess;
      },
      [&] {
        (void)ncclCommAbort(comm_);
        fail(fmt::format("the stream's collectives did not complete within {} s on rank {} of {}; the communicator "
                         "was aborted (set D2R_COMM_TIMEOUT to wait longer)",
                         timeout_, rank_, size_));
      });
}

void NcclCommunicator::abort(std::string_view message, int exit_code) noexcept {
  std::fprintf(stderr, "%s\n", std::string(message).c_str());
  std::fflush(stderr);
  (void)ncclCommAbort(comm_);
  std::_Exit(exit_code);
}

}  // namespace d2r
