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

}  // namespace d2r::cli
