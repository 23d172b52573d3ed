// The single-process communicator and the build's engine list (communicator.hpp).
#include "d2r/communicator.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace d2r {

void SingleProcessCommunicator::allreduce_sum(std::span<float> data) {
  ++stats_.allreduce_calls;
  stats_.allreduce_bytes += data.size_bytes();
}
void SingleProcessCommunicator::allreduce_sum(std::span<double> data) {
  ++stats_.allreduce_calls;
  stats_.allreduce_bytes += data.size_bytes();
}
void SingleProcessCommunicator::broadcast(std::span<std::byte> data, int /*root*/) {
  ++stats_.broadcast_calls;
  stats_.broadcast_bytes += data.size_bytes();
}
void SingleProcessCommunicator::abort(std::string_view message, int exit_code) noexcept {
  std::fprintf(stderr, "%s\n", std::string(message).c_str());
  std::fflush(stderr);
  std::_Exit(exit_code);
}

bool has_mpi() noexcept {
#if defined(D2R_WITH_MPI)
  return true;
#else
  return false;
#endif
}
bool has_nccl() noexcept {
#if defined(D2R_WITH_NCCL)
  return true;
#else
  return false;
#endif
}

}  // namespace d2r
