#pragma once
// Subcommands of the d2r program.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "d2r/bilevel.hpp"

namespace d2r::cli {

/// `d2r sample`: draw from a distribution given on the command line, print summary statistics.
struct SampleOptions {
  std::string head = "diag";
  std::vector<double> mean;
  std::vector<double> std;
  std::vector<double> tril;
  std::vector<double> logits;
  std::string logits_file;  ///< categorical: logits read from a file (numbers separated by commas or white space)
  std::int64_t generations = 10000;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
  std::string device = "auto";
};
CLI::App* add_sample_command(CLI::App& app, SampleOptions& options);
int run_sample(const SampleOptions& options);

/// The library's recommended bilevel preset, whose values fit shows as its defaults.
inline const d2r::BilevelOptions<double>& recommended_bilevel() {
  static const d2r::BilevelOptions<double> o = d2r::BilevelOptions<double>::recommended();
  return o;
}

/// `d2r fit`: train a Gaussian regression policy on a CSV file with one of the methods (MSE, NLL,
/// PG with a fixed reward, PG with the heuristic reward, the bilevel learned reward), print the
/// metrics and write results.json, curves.csv (and for bilevel a checkpoint) into --out.
struct FitOptions {
  std::string data;
  std::string task = "regression";
  std::vector<std::string> targets;
  std::vector<std::string> features;
  std::string method = "nll";
  std::string reward = "scalar";
  std::vector<double> u;
  double lambda = 1;
  std::int64_t generations = 5;
  std::int64_t steps = 400;
  double lr = 0.01;
  double outer_lr = 0.01;
  std::vector<std::int64_t> hidden{64, 64};
  std::string activation = "relu";
  std::string head = "diagonal";
  std::int64_t outer_steps = 100;
  std::int64_t inner_steps = 20;
  std::int64_t inner_batch_size = 0;   ///< bilevel: rows per inner step (0: full batch)
  std::string inner_start = "warm";
  std::string inner_objective = "exact";  ///< bilevel: reinforce or exact (default: the preset's)
  std::string curvature = "exact";
  std::string solver = "normal_cg";
  std::int64_t solver_iterations = 50;
  double val_fraction = 0.2;
  bool standardize = false;
  std::int64_t eval_every = 1;
  std::uint64_t seed = 0;
  std::string device = "auto";
  std::string precision = "float";
  int threads = 1;
  std::string out;
  bool resume = false;
  bool overwrite = false;  ///< replace the files of an earlier run in --out
  std::int64_t checkpoint_every = 10;
  bool quiet = false;
  // --task classification (PAPER.md Tables 1-2).
  std::string label;                   ///< the label column
  double beta = 1;                     ///< pg: the fixed β of U = β·I; bilevel: the starting β
  std::int64_t epochs = 30;            ///< passes over the training rows
  std::int64_t batch_size = 128;       ///< rows per Adam step (0: full batch)
  std::string outer_data = "validation";  ///< bilevel: rows of the outer loss (the preset's unless given)
  // Bilevel outer loop (BilevelOptions); the preset's values unless given.
  std::string preset = "recommended";  ///< recommended, stationary or paper
  std::string final_model = "best";    ///< bilevel: best, last (alias inner) or pg (the preset's unless given)
  // The shown defaults are the library's recommended preset (one copy: BilevelOptions::recommended()).
  double outer_step = recommended_bilevel().rprop.initial_step;                  ///< rprop: initial log-space step
  double flat_tolerance = recommended_bilevel().rprop.flat_tolerance;            ///< rprop: no step predicting less than this × loss_tolerance
  double inner_tolerance = recommended_bilevel().inner.stationarity_tolerance;   ///< stationarity: ‖∇θ L_in‖ relative to its starting value
  std::int64_t inner_max_steps = recommended_bilevel().inner.max_steps;          ///< cap on the inner steps of one outer step
  double solver_tolerance = recommended_bilevel().cg.tolerance;                  ///< relative residual of the linear solve
  double damping = recommended_bilevel().cg.damping;                             ///< δ of the linear solve
  std::int64_t window = recommended_bilevel().stopping.window;                   ///< convergence window (outer steps)
  double reward_tolerance = recommended_bilevel().stopping.reward_tolerance;     ///< relative move of φ over the window
  double loss_tolerance = recommended_bilevel().stopping.loss_tolerance;         ///< move of the outer loss over the window
  std::int64_t patience = recommended_bilevel().stopping.patience;               ///< early stop: outer steps without a better best-judged one (0: off)
  bool standardize_targets = true;     ///< regression: z-score the targets (one scale), metrics in original units
  std::vector<std::string> given;      ///< long names of the options given on the command line (set by the parser)
};
CLI::App* add_fit_command(CLI::App& app, FitOptions& options);
/// Registers fit's options on `cmd` (also used by `d2r sweep`).
void register_fit_options(CLI::App* cmd, FitOptions& options);
int run_fit(const FitOptions& options);
/// Whether option `name` ("--lr") was given on the command line.
inline bool given(const FitOptions& o, std::string_view name) {
  return std::find(o.given.begin(), o.given.end(), name) != o.given.end();
}

/// fit's options of the bilevel outer loop, used by --method bilevel alone (sweep refuses them).
inline constexpr std::string_view kOuterLoopOptions[] = {
    "--outer-lr", "--outer-steps", "--inner-steps", "--inner-batch-size", "--inner-start", "--curvature", "--solver",
    "--solver-iterations", "--checkpoint-every", "--outer-data", "--preset", "--outer-step", "--flat-tolerance", "--inner-tolerance",
    "--inner-max-steps", "--solver-tolerance", "--damping", "--window", "--reward-tolerance", "--loss-tolerance",
    "--patience"};

/// `d2r sweep`: PG at a log-spaced grid of fixed rewards (u of U = u·I, or β), several seeds each,
/// the validation outer loss at each value and the best one: the brute-force answer the bilevel
/// method must match. Takes fit's data and training options; writes results.json and sweep.csv.
struct SweepOptions {
  FitOptions fit;
  double grid_min = 0.1;            ///< smallest reward of the grid (> 0)
  double grid_max = 100;            ///< largest (> grid_min)
  std::int64_t points = 13;         ///< log-spaced values (>= 2)
  std::vector<double> values;       ///< explicit values instead of the grid
  std::int64_t seeds = 2;           ///< seeds per value (fit's --seed, --seed + 1, ...)
  std::vector<std::string> bilevel; ///< optional: `d2r fit --method bilevel` --out directories to compare with
  /// What is trained at each reward: "pg" (fit --method pg's protocol, the model fit trains at the
  /// learned reward) or "bilevel" (exact gradient, full batch, fresh start, for the bilevel runs'
  /// inner-step count: the bilevel inner learner's budget).
  std::string learner = "pg";
};
CLI::App* add_sweep_command(CLI::App& app, SweepOptions& options);
int run_sweep(const SweepOptions& options);

/// --device (auto, cpu or cuda), --precision (float or double) and --threads (the cpu backend's
/// BLAS threads) of a command that trains (fit, sweep, reproduce).
void add_device_options(CLI::App* cmd, std::string& device, std::string& precision, int& threads);

/// `d2r reproduce NAME`: the paper's experiments (PAPER.md) with built-in or bundled data, our
/// numbers printed beside the paper's, results.json and CSVs written into --out.
struct ReproduceOptions {
  std::string name;
  bool quick = false;
  std::uint64_t seed = 0;
  std::string device = "auto";
  std::string precision = "float";
  int threads = 1;
  std::string out;          ///< default ./d2r-out/<name>
  std::string data_dir;     ///< default: the repository's data/ (mbrl, tabular)
  bool quiet = false;
  std::vector<std::string> datasets;  ///< tabular: the data/tabular files to run (default: all; --quick: 3)
  double lambda = 1;                  ///< tabular: the entropy weight λ
};
CLI::App* add_reproduce_command(CLI::App& app, ReproduceOptions& options);
int run_reproduce(const ReproduceOptions& options);

/// `d2r validate`: every GPU primitive of the public API on the cuda backend (float) against the
/// cpu backend in double on the same inputs at several sizes; a pass/fail table, validate.json in
/// --out. --device cpu: the same table with the cpu backend in float (a self-check without a GPU).
struct ValidateOptions {
  std::string sizes = "medium";  ///< small, medium (adds the paper's sizes) or large (adds big shapes)
  std::uint64_t seed = 2024;
  std::string filter;            ///< regular expression over "primitive/variant/size"
  std::string out;
  std::string device = "auto";
};
CLI::App* add_validate_command(CLI::App& app, ValidateOptions& options);
int run_validate(const ValidateOptions& options);

/// `d2r bench`: times the registry's cases (host/checks/, filtered as `d2r validate`) and two
/// composite rows on one backend (median of repetitions after a warm-up), states their work and
/// prints GB/s, GFLOP/s and the fraction of the measured copy bandwidth; bench.json in --out.
struct BenchOptions {
  std::string device = "auto";
  std::string sizes = "medium";  ///< the registry's size class, as ValidateOptions::sizes
  std::string filter;            ///< regular expression over "primitive/variant/size", as validate's
  bool quick = false;
  std::string out;
};
CLI::App* add_bench_command(CLI::App& app, BenchOptions& options);
int run_bench(const BenchOptions& options);

}  // namespace d2r::cli
