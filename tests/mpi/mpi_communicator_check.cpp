// MpiCommunicator across real ranks (run by ctest under `mpirun -np 3`; tests/CMakeLists.txt):
//   (no argument) allreduce_sum of float and double sums every rank's values, broadcast copies the
//                 root's bytes, barrier returns, the counters hold the payload; exit 0 when all hold.
//   timeout       rank 1 joins the allreduce 5 s late while the timeout is 1 s: rank 0's collective
//                 fails with ErrorKind::communication naming the timeout, and abort() ends every rank
//                 (the job's exit status is 7; ctest checks it and the message).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "d2r/comm/mpi.hpp"
#include "d2r/error.hpp"

namespace {
int failures = 0;
void expect(bool ok, const std::string& what, int rank) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: FAILED: %s\n", rank, what.c_str());
    ++failures;
  }
}
}  // namespace

int main(int argc, char** argv) {
  d2r::MpiSession session(&argc, &argv);
  const bool timeout_case = argc > 1 && std::strcmp(argv[1], "timeout") == 0;
  d2r::MpiCommunicator comm(MPI_COMM_WORLD, timeout_case ? 1.0 : 60.0);
  const int r = comm.rank(), n = comm.size();
  if (timeout_case) {
    std::vector<float> v{1.0f};
    if (r == 1) std::this_thread::sleep_for(std::chrono::seconds(5));
    try {
      comm.allreduce_sum(std::span<float>(v));
    } catch (const d2r::Error& e) {
      comm.abort(std::string("caught: ") + e.what() +
                     (e.kind() == d2r::ErrorKind::communication ? " [kind communication]" : " [wrong kind]"),
                 7);
    }
    comm.abort("no timeout was raised", 9);
  }
  expect(n >= 2, "run under mpirun with at least 2 ranks", r);
  std::vector<float> f{static_cast<float>(r + 1), 0.5f};
  std::vector<double> d{static_cast<double>(r) * 0.25, 1.0, -2.0};
  comm.allreduce_sum(std::span<float>(f));
  comm.allreduce_sum(std::span<double>(d));
  const double ranks_sum = n * (n - 1) / 2.0;
  expect(f[0] == static_cast<float>(n * (n + 1) / 2) && f[1] == 0.5f * static_cast<float>(n), "float sums", r);
  expect(d[0] == 0.25 * ranks_sum && d[1] == n && d[2] == -2.0 * n, "double sums", r);
  std::vector<std::byte> b(4, std::byte{static_cast<unsigned char>(r)});
  comm.broadcast(std::span<std::byte>(b), n - 1);
  expect(b[0] == std::byte{static_cast<unsigned char>(n - 1)} && b[3] == b[0], "broadcast from the last rank", r);
  comm.barrier();
  expect(comm.stats().allreduce_calls == 2 && comm.stats().allreduce_bytes == 2 * 4 + 3 * 8, "allreduce counters", r);
  expect(comm.stats().broadcast_bytes == 4 && comm.stats().barriers == 1, "broadcast and barrier counters", r);
  try {
    comm.broadcast(std::span<std::byte>(b), n);
    expect(false, "a root out of range was accepted", r);
  } catch (const d2r::Error& e) {
    expect(e.argument() == "root", "the bad root is named", r);
  }
  std::vector<int> all(static_cast<std::size_t>(n));
  const int mine = failures;
  MPI_Allgather(&mine, 1, MPI_INT, all.data(), 1, MPI_INT, MPI_COMM_WORLD);
  int total = 0;
  for (int x : all) total += x;
  if (r == 0) std::printf("%s: %d ranks, %d failures\n", total == 0 ? "PASSED" : "FAILED", n, total);
  return total == 0 ? 0 : 1;
}
