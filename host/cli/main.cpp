// The d2r program. Subcommands are registered here and implemented one per file.
//
// Exit codes: kExitCodes below, printed by --help.
#include <csignal>
#include <cstdio>
#include <new>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "d2r/error.hpp"
#include "d2r/version.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/parallel.hpp"

namespace {
constexpr const char* kExitCodes =
    "Exit codes: 0 success (a bilevel fit: converged); 1 internal error; 2 bad input (options, files, data, a busy "
    "or non-empty --out; nothing written); 3 the run diverged or its final metrics are not finite (results.json "
    "written with the reason; sweep: no grid value trained to a finite loss); 4 a bilevel fit ended step_limited (results written).";
}  // namespace

int main(int argc, char** argv) {
  // A closed output pipe must not kill a run (SIGPIPE): the write fails with EPIPE instead and
  // the commands report it with an exit code.
  std::signal(SIGPIPE, SIG_IGN);
  // Under mpirun: MPI up before the options are parsed, one communicator for the trainers.
  d2r::cli::ParallelSession parallel(&argc, &argv);
  CLI::App app{"d2r: learn rewards from data by bilevel optimisation, and the GPU primitives to do it"};
  app.footer(kExitCodes);
  // CLI11's own errors start with "error:" like every other error of the program.
  app.failure_message([](const CLI::App* a, const CLI::Error& e) { return "error: " + CLI::FailureMessage::simple(a, e); });
  app.set_version_flag("--version", std::string("d2r ") + D2R_VERSION_STRING);
  app.require_subcommand(1);
  d2r::cli::SampleOptions sample_options;
  CLI::App* sample = d2r::cli::add_sample_command(app, sample_options);
  d2r::cli::FitOptions fit_options;
  CLI::App* fit = d2r::cli::add_fit_command(app, fit_options);
  d2r::cli::add_parallel_options(fit);
  d2r::cli::SweepOptions sweep_options;
  CLI::App* sweep = d2r::cli::add_sweep_command(app, sweep_options);
  d2r::cli::add_parallel_options(sweep);
  d2r::cli::ReproduceOptions reproduce_options;
  CLI::App* reproduce = d2r::cli::add_reproduce_command(app, reproduce_options);
  d2r::cli::add_parallel_options(reproduce);
  d2r::cli::ValidateOptions validate_options;
  CLI::App* validate = d2r::cli::add_validate_command(app, validate_options);
  d2r::cli::BenchOptions bench_options;
  CLI::App* bench = d2r::cli::add_bench_command(app, bench_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Under mpirun every rank parses the same words: rank 0 alone prints the message (or --help).
    if (d2r::cli::rank() > 0) return e.get_exit_code() == 0 ? 0 : 2;
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (d2r::cli::ranks() > 1 && !fit->parsed() && !sweep->parsed() && !reproduce->parsed()) {
      d2r::cli::fail_all_ranks("only 'd2r fit', 'd2r sweep' and 'd2r reproduce' train on several MPI ranks (mpirun -np "
                               "N d2r fit ...); 'sample', 'validate' and 'bench' run on one process",
                               2);
    }
    if (sample->parsed()) return d2r::cli::run_sample(sample_options);
    if (fit->parsed()) {
      fit_options.out = d2r::cli::rank_output_dir(fit_options.out, fit_options.resume);
      return d2r::cli::run_fit(fit_options);
    }
    if (sweep->parsed()) {
      sweep_options.fit.out = d2r::cli::rank_output_dir(sweep_options.fit.out, false);
      sweep_options.fit.quiet = sweep_options.fit.quiet || d2r::cli::rank() > 0;  // rank 0 alone reports progress
      return d2r::cli::run_sweep(sweep_options);
    }
    if (reproduce->parsed()) {
      if (reproduce_options.out.empty()) reproduce_options.out = "d2r-out/" + reproduce_options.name;
      reproduce_options.out = d2r::cli::rank_output_dir(reproduce_options.out, false);
      reproduce_options.quiet = reproduce_options.quiet || d2r::cli::rank() > 0;
      return d2r::cli::run_reproduce(reproduce_options);
    }
    if (validate->parsed()) return d2r::cli::run_validate(validate_options);
    if (bench->parsed()) return d2r::cli::run_bench(bench_options);
  } catch (const d2r::Error& e) {
    const int code = e.kind() == d2r::ErrorKind::invalid_argument || e.kind() == d2r::ErrorKind::unsupported ? 2 : 1;
    d2r::cli::fail_all_ranks(e.what(), code);  // several ranks: ends them all (their peers may wait)
    fmt::print(stderr, "error: {}\n", e.what());
    return code;
  } catch (const std::bad_alloc&) {
    d2r::cli::fail_all_ranks("out of memory", 1);
    fmt::print(stderr, "error: out of memory (the run needs more memory than this machine could give it)\n");
    return 1;
  } catch (const std::exception& e) {
    d2r::cli::fail_all_ranks(e.what(), 1);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
