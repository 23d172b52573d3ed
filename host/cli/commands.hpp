#pragma once
// Subcommands of the d2r program.

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace d2r::cli {

/// `d2r sample`: draw from a distribution given on the command line, print summary statistics.
struct SampleOptions {
  std::string head = "diag";
  std::vector<double> mean;
  std::vector<double> std;
  std::vector<double> tril;
  std::vector<double> logits;
  std::int64_t generations = 10000;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
  std::string device = "auto";
};
CLI::App* add_sample_command(CLI::App& app, SampleOptions& options);
int run_sample(const SampleOptions& options);

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
  std::int64_t inner_steps = 50;
  std::string inner_start = "warm";
  std::string curvature = "exact";
  std::string solver = "normal_cg";
  std::int64_t solver_iterations = 1;
  double val_fraction = 0.2;
  bool standardize = false;
  std::int64_t eval_every = 1;
  std::uint64_t seed = 0;
  std::string device = "auto";
  std::string precision = "float";
  int threads = 1;
  std::string out;
  bool resume = false;
  std::int64_t checkpoint_every = 10;
  bool quiet = false;
};
CLI::App* add_fit_command(CLI::App& app, FitOptions& options);
int run_fit(const FitOptions& options);

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
};
CLI::App* add_reproduce_command(CLI::App& app, ReproduceOptions& options);
int run_reproduce(const ReproduceOptions& options);

}  // namespace d2r::cli
