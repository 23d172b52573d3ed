// `mpirun -np N d2r …`: see parallel.hpp.
#include "host/cli/parallel.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>
#include <memory>
#include <system_error>

#include <fmt/format.h>

#include "d2r/config.hpp"
#if D2R_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#if defined(D2R_WITH_MPI)
#include "d2r/comm/mpi.hpp"
#endif

namespace d2r::cli {
namespace {

namespace fs = std::filesystem;

struct State {
#if defined(D2R_WITH_MPI)
  std::unique_ptr<MpiSession> session;
#endif
  std::unique_ptr<Communicator> comm;
  bool deterministic = false;
  std::int64_t block_rows = 256;
  fs::path scratch;
};
State& state() {
  static State s;
  return s;
}

/// Whether an MPI launcher started this process (Open MPI, MPICH/PMI, PMIx).
bool under_launcher() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

}  // namespace

ParallelSession::ParallelSession([[maybe_unused]] int* argc, [[maybe_unused]] char*** argv) {
#if defined(D2R_WITH_MPI)
  if (under_launcher()) {
    State& s = state();
    s.session = std::make_unique<MpiSession>(argc, argv);
    s.comm = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
#if D2R_WITH_CUDA
    // One GPU per rank: the ranks of one node take its devices in turn (cuda backend).
    int devices = 0;
    if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 1) {
      MPI_Comm node = MPI_COMM_NULL;
      int local = 0;
      if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &local);
        MPI_Comm_free(&node);
      }
      (void)cudaSetDevice(local % devices);
    }
    (void)cudaGetLastError();  // no device at all is fine: the cpu backend
#endif
    if (s.comm->rank() > 0) {
      // Only rank 0 prints: the others' stdout goes nowhere (their errors still reach stderr).
      if (std::freopen("/dev/null", "w", stdout) == nullptr) std::fclose(stdout);
    }
  }
#else
  if (under_launcher()) {
    // Without MPI every rank would run the whole job on its own and write the same --out.
    std::fprintf(stderr, "d2r: started by an MPI launcher, but this d2r was built without MPI; rebuild with Open MPI "
                         "installed (libopenmpi-dev) and -DD2R_WITH_MPI=ON, or run it without mpirun\n");
    std::exit(2);
  }
#endif
}

ParallelSession::~ParallelSession() {
  State& s = state();
  // D2R_COMM_STATS=1: rank 0 reports what its communicator moved (the README's byte model).
  if (const char* v = std::getenv("D2R_COMM_STATS"); v != nullptr && *v == '1' && s.comm != nullptr && rank() == 0) {
    const CommStats& c = s.comm->stats();
    std::fprintf(stderr, "d2r comm stats (rank 0 of %d): %llu allreduce calls, %llu bytes; %llu broadcasts, %llu bytes; "
                 "%llu barriers\n", ranks(), static_cast<unsigned long long>(c.allreduce_calls),
                 static_cast<unsigned long long>(c.allreduce_bytes), static_cast<unsigned long long>(c.broadcast_calls),
                 static_cast<unsigned long long>(c.broadcast_bytes), static_cast<unsigned long long>(c.barriers));
  }
  if (!s.scratch.empty()) {
    std::error_code ec;
    fs::remove_all(s.scratch, ec);
  }
  s.comm.reset();
#if defined(D2R_WITH_MPI)
  s.session.reset();
#endif
}

void add_parallel_options(CLI::App* cmd) {
  State& s = state();
  cmd->add_flag("--deterministic-reduction", s.deterministic,
                "sum gradients and metrics per fixed block of rows in block order: the same bits for any number "
                "of MPI ranks (mpirun -np N d2r ...), at the price of more bytes per reduction");
  cmd->add_option("--reduction-block-rows", s.block_rows, "rows per block of --deterministic-reduction")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
}

DataParallel data_parallel() {
  State& s = state();
  if (s.comm == nullptr && s.deterministic) s.comm = std::make_unique<SingleProcessCommunicator>();
  return {.communicator = s.comm.get(), .deterministic = s.deterministic, .block_rows = s.block_rows};
}

int rank() { return state().comm != nullptr ? state().comm->rank() : 0; }
int ranks() { return state().comm != nullptr ? state().comm->size() : 1; }

std::string rank_output_dir(const std::string& out, bool resume) {
  State& s = state();
  if (ranks() == 1) return out;
  if (rank() > 0) {
    const fs::path dir = fs::temp_directory_path() / fmt::format("d2r-rank{}-{}", rank(), ::getpid());
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir);
    s.scratch = dir;
    if (resume) {  // the checkpoint the run resumes from, as rank 0 sees it before it writes
      for (const fs::directory_entry& e : fs::directory_iterator(out, ec)) {
        if (e.is_regular_file() && e.path().filename().string().rfind("checkpoint", 0) == 0) {
          fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing, ec);
        }
      }
    }
  }
  s.comm->barrier();
  return rank() > 0 ? s.scratch.string() : out;
}

void fail_all_ranks(std::string_view message, int exit_code) {
  State& s = state();
  if (s.comm == nullptr || s.comm->size() == 1) return;
  s.comm->abort(fmt::format("error (rank {} of {}): {}", s.comm->rank(), s.comm->size(), message), exit_code);
}

}  // namespace d2r::cli
