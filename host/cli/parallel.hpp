#pragma once
// `mpirun -np N d2r …` (DESIGN.md §10): the program's communicator and its rank handling. Under
// an MPI launcher (and in a D2R_WITH_MPI build) every rank runs the command on the same data; the
// trainers shard the rows (DataParallel); rank 0 alone prints and writes --out; ranks > 0 print
// nothing and write into a private scratch directory (removed at exit). A failure on one rank
// ends every rank (MPI_Abort); a collective that waits longer than D2R_COMM_TIMEOUT seconds fails.
#include <cstdint>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "d2r/communicator.hpp"

namespace d2r::cli {

/// Starts MPI when the process was started by an MPI launcher (before the options are parsed);
/// finalises it at the end of its scope.
class ParallelSession {
 public:
  ParallelSession(int* argc, char*** argv);
  ~ParallelSession();
  ParallelSession(const ParallelSession&) = delete;
  ParallelSession& operator=(const ParallelSession&) = delete;
};

/// Adds --deterministic-reduction and --reduction-block-rows to a training command.
void add_parallel_options(CLI::App* cmd);
/// The trainers' DataParallel: {nullptr} for one process without --deterministic-reduction.
[[nodiscard]] DataParallel data_parallel();
/// The process's rank and the number of ranks (0 and 1 without a launcher).
[[nodiscard]] int rank();
[[nodiscard]] int ranks();
/// Ranks > 0: silences stdout and returns a private scratch directory to use instead of the
/// user's --out (holding copies of its checkpoint files when `resume`); rank 0: returns `out`.
/// Collective (a barrier, so no rank copies while rank 0 claims the directory).
[[nodiscard]] std::string rank_output_dir(const std::string& out, bool resume);
/// A failure: with several ranks, prints `message` (naming the rank) and ends every rank with
/// `exit_code`; with one, returns so the caller prints and returns as usual.
void fail_all_ranks(std::string_view message, int exit_code);

}  // namespace d2r::cli
