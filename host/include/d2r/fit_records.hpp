#pragma once
// A run's records (d2r/fit_run.hpp) as table columns, one row per record: what `d2r fit` writes
// into curves.csv and outer_curves.csv (write_csv of d2r/data.hpp writes a RecordTable as it is).
//
//   curves_table  a regression run: step, the train and held-out metrics, and for the bilevel
//                 method the outer loss, reward parameters, hypergradient and solver figures;
//   epoch_table   a classification run's learning curve: epoch, train and test metrics;
//   outer_table   a classification run's bilevel phase: step, β, hypergradient, outer loss,
//                 train and validation metrics, solver figures.
//
// Use: const RecordTable t = curves_table(result, true); write_csv(path, t.header, t.rows);
#include <string>
#include <vector>

#include "d2r/fit_run.hpp"

namespace d2r::runs {

/// Column names and numeric rows (every row as long as the header).
struct RecordTable {
  std::vector<std::string> header;
  std::vector<std::vector<double>> rows;
};

/// A regression run's records: "step", "train_{nll_per_dim,rmse,mean_std}",
/// "<held_out_name>_{nll_per_dim,rmse,mean_std}", and with `bilevel` "outer_loss", "reward_i",
/// "hypergradient_i" (as many as the first record's reward parameters; NaN where a record has
/// fewer), "mean_inner_reward", "solver_iterations", "solver_residual", "wall_seconds",
/// "solver_relative_residual", "inner_steps", "inner_gradient_norm", "max_step".
RecordTable curves_table(const RunResult& result, bool bilevel, const std::string& held_out_name = "val");

/// A classification run's learning curve: "epoch", "train_nll", "train_accuracy", "test_nll", "test_accuracy".
RecordTable epoch_table(const ClassificationResult& result);

/// A classification run's outer steps: "step", "beta", "hypergradient", "outer_loss", "train_nll",
/// "train_accuracy", "val_nll", "val_accuracy", "mean_inner_reward", "solver_iterations",
/// "solver_residual", "wall_seconds", "solver_relative_residual", "inner_steps",
/// "inner_gradient_norm", "max_step".
RecordTable outer_table(const ClassificationResult& result);

}  // namespace d2r::runs
