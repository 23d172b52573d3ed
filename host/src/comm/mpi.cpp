// The MPI communicator (d2r/comm/mpi.hpp): non-blocking collectives polled against a deadline.
#include "d2r/comm/mpi.hpp"

#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "d2r/error.hpp"
#include "host/src/comm/wait.hpp"

namespace d2r {
namespace {

[[noreturn]] void fail(const std::string& message) {
  throw Error(ErrorKind::communication, "", "d2r::MpiCommunicator: " + message);
}

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(text, static_cast<std::size_t>(length));
}

void check(int code, const char* what) {
  if (code != MPI_SUCCESS) fail(fmt::format("{} failed: {}", what, mpi_error_text(code)));
}

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (initialised == 0) {
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owns_ = true;
  }
}

MpiSession::~MpiSession() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (owns_ && finalised == 0) MPI_Finalize();
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, double timeout_seconds)
    : timeout_(timeout_seconds > 0 ? timeout_seconds : comm_detail::env_timeout("d2r::MpiCommunicator")) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (initialised == 0) fail("MPI is not initialised (MPI_Init, or a d2r::MpiSession, first)");
  check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (comm_ != MPI_COMM_NULL && finalised == 0) MPI_Comm_free(&comm_);
}

void MpiCommunicator::wait(MPI_Request& request, int started, const char* what) {
  check(started, what);
  comm_detail::wait_until(
      timeout_,
      [&] {
        int done = 0;
        check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
        return done != 0;
      },
      [&] {
        fail(fmt::format("{} did not complete within {} s on rank {} of {} (a peer died, hangs or took another "
                         "path); set D2R_COMM_TIMEOUT to wait longer",
                         what, timeout_, rank_, size_));
      });
}

void MpiCommunicator::allreduce_sum(std::span<float> data) {
  ++stats_.allreduce_calls;
  stats_.allreduce_bytes += data.size_bytes();
  if (size_ == 1 || data.empty()) return;
  MPI_Request r = MPI_REQUEST_NULL;
  wait(r, MPI_Iallreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), MPI_FLOAT, MPI_SUM, comm_, &r),
       "MPI_Iallreduce");
}

void MpiCommunicator::allreduce_sum(std::span<double> data) {
  ++stats_.allreduce_calls;
  stats_.allreduce_bytes += data.size_bytes();
  if (size_ == 1 || data.empty()) return;
  MPI_Request r = MPI_REQUEST_NULL;
  wait(r, MPI_Iallreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), MPI_DOUBLE, MPI_SUM, comm_, &r),
       "MPI_Iallreduce");
}

void MpiCommunicator::broadcast(std::span<std::byte> data, int root) {
  if (root < 0 || root >= size_) {
    throw Error(ErrorKind::invalid_argument, "root",
                fmt::format("d2r::MpiCommunicator::broadcast: argument 'root': expected a rank in [0, {}), got {}",
                            size_, root));
  }
  ++stats_.broadcast_calls;
  stats_.broadcast_bytes += data.size_bytes();
  if (size_ == 1 || data.empty()) return;
  MPI_Request r = MPI_REQUEST_NULL;
  wait(r, MPI_Ibcast(data.data(), static_cast<int>(data.size()), MPI_BYTE, root, comm_, &r), "MPI_Ibcast");
}

void MpiCommunicator::barrier() {
  ++stats_.barriers;
  if (size_ == 1) return;
  MPI_Request r = MPI_REQUEST_NULL;
  wait(r, MPI_Ibarrier(comm_, &r), "MPI_Ibarrier");
}

void MpiCommunicator::abort(std::string_view message, int exit_code) noexcept {
  std::fprintf(stderr, "%s\n", std::string(message).c_str());
  std::fflush(stderr);
  MPI_Abort(comm_ != MPI_COMM_NULL ? comm_ : MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace d2r
