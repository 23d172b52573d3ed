// The d2r program. Subcommands are registered here and implemented one per file.
//
// Exit codes: 0 success (a bilevel fit: converged); 2 bad input (command line, arguments, data, a
// device this machine lacks; nothing written); 3 a run diverged or produced non-finite final
// metrics; 4 a bilevel fit finished step_limited; 1 any other failure.
#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "d2r/error.hpp"
#include "d2r/version.hpp"
#include "host/cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"d2r: learn rewards from data by bilevel optimisation, and the GPU primitives to do it"};
  app.set_version_flag("--version", std::string("d2r ") + D2R_VERSION_STRING);
  app.require_subcommand(1);
  d2r::cli::SampleOptions sample_options;
  CLI::App* sample = d2r::cli::add_sample_command(app, sample_options);
  d2r::cli::FitOptions fit_options;
  CLI::App* fit = d2r::cli::add_fit_command(app, fit_options);
  d2r::cli::SweepOptions sweep_options;
  CLI::App* sweep = d2r::cli::add_sweep_command(app, sweep_options);
  d2r::cli::ReproduceOptions reproduce_options;
  CLI::App* reproduce = d2r::cli::add_reproduce_command(app, reproduce_options);
  d2r::cli::ValidateOptions validate_options;
  CLI::App* validate = d2r::cli::add_validate_command(app, validate_options);
  d2r::cli::BenchOptions bench_options;
  CLI::App* bench = d2r::cli::add_bench_command(app, bench_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (sample->parsed()) return d2r::cli::run_sample(sample_options);
    if (fit->parsed()) return d2r::cli::run_fit(fit_options);
    if (sweep->parsed()) return d2r::cli::run_sweep(sweep_options);
    if (reproduce->parsed()) return d2r::cli::run_reproduce(reproduce_options);
    if (validate->parsed()) return d2r::cli::run_validate(validate_options);
    if (bench->parsed()) return d2r::cli::run_bench(bench_options);
  } catch (const d2r::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return e.kind() == d2r::ErrorKind::invalid_argument || e.kind() == d2r::ErrorKind::unsupported ? 2 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
