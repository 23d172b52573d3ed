// `d2r reproduce NAME`: the experiments of PAPER.md, run by the program with built-in (synthetic,
// implicit) or bundled (mbrl: data/halfcheetah, tabular: data/tabular) data; our numbers are printed beside
// the paper's and written (results.json, summary.csv, curves.csv) into --out.
//
//   synthetic  Fig. 1: MSE, NLL, PG(U = I), PG(U* = λ/(2σ²)I) on x ~ U[−5,5]², y = x + loc + σε
//   implicit   Fig. 3: the bilevel trainer moves u from 1 to u* ≈ 0.32 (loc 6, σ = 1.25, λ = 1)
//   mbrl       Table 3: one-step dynamics models of HalfCheetah (23 → 17), six methods
//   tabular    Tables 1–2: logistic regression on data/tabular, NLL vs PG(β=1) vs PG(β*) vs PG(β learned)
//
// Each has the paper's size and a --quick size (a couple of minutes at most on a 2-core CPU).
// The experiments themselves are in experiments/ (one file each).
#include <filesystem>

#include "d2r/d2r.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/experiments/experiments.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {

using experiments::kCmd;
namespace fs = std::filesystem;

CLI::App* add_reproduce_command(CLI::App& app, ReproduceOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "reproduce", "Run one of the paper's experiments (synthetic: Fig. 1, implicit: Fig. 3, mbrl: Table 3, tabular: "
                   "Tables 1-2) and print our numbers beside the paper's");
  cmd->add_option("name", o.name, "synthetic, implicit, mbrl or tabular")
      ->required()
      ->check(CLI::IsMember({"synthetic", "implicit", "mbrl", "tabular"}));
  cmd->add_flag("--quick", o.quick, "a smaller size that finishes in a couple of minutes on a small CPU");
  add_shown_option(cmd, "--seed", o.seed, "seed of the data, initialisations and draws");
  add_device_options(cmd, o.device, o.precision, o.threads);
  cmd->add_option("--out", o.out, "output directory (default ./d2r-out/<name>)");
  cmd->add_option("--data-dir", o.data_dir,
                  "directory holding halfcheetah/ (mbrl) and tabular/ (tabular); default ./data, then the source tree's");
  cmd->add_option("--datasets", o.datasets,
                  "tabular: the data sets to run, comma-separated names of data/tabular/*.csv (default: all; --quick: "
                  "iris,wine,breast_cancer)")
      ->delimiter(',');
  add_shown_option(cmd, "--lambda", o.lambda,
                   "tabular: entropy weight λ > 0 (the paper: 10 in Table 1, 0.1 in its earlier run); the bilevel β "
                   "starts at λ and moves by 0.1·λ per outer step")
      ->check(positive_number());
  cmd->add_flag("-q,--quiet", o.quiet, "no progress report on stderr");
  return cmd;
}

int run_reproduce(const ReproduceOptions& o) {
  if (!o.datasets.empty() && o.name != "tabular") bad_input(kCmd, "--datasets", "is an option of `reproduce tabular` only");
  if (o.lambda != 1 && o.name != "tabular") bad_input(kCmd, "--lambda", "is an option of `reproduce tabular` only");
  const fs::path out = o.out.empty() ? fs::path("d2r-out") / o.name : fs::path(o.out);
  check_output_dir(kCmd, "--out", out);
  set_cpu_threads(o.threads);
  Context ctx({.backend = parse_backend(o.device), .seed = o.seed});
  if (o.precision == "double" && ctx.backend() == Backend::cuda) {
    bad_input(kCmd, "--precision", "double precision runs on the cpu backend only");
  }
  if (o.name == "synthetic") return experiments::reproduce_synthetic(ctx, o, out);
  if (o.name == "implicit") return experiments::reproduce_implicit(ctx, o, out);
  if (o.name == "tabular") return experiments::reproduce_tabular(ctx, o, out);
  return experiments::reproduce_mbrl(ctx, o, out);
}

}  // namespace d2r::cli
