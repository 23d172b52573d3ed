// A run's records as table columns (d2r/fit_records.hpp).
#include "d2r/fit_records.hpp"

#include <cmath>
#include <utility>

#include <fmt/format.h>

namespace d2r::runs {

RecordTable curves_table(const RunResult& result, bool bilevel, const std::string& held_out_name) {
  RecordTable t;
  t.header = {"step", "train_nll_per_dim", "train_rmse", "train_mean_std", held_out_name + "_nll_per_dim",
              held_out_name + "_rmse", held_out_name + "_mean_std"};
  std::size_t S = 0;
  if (bilevel && !result.records.empty()) {
    S = result.records.front().reward_params.size();
    t.header.push_back("outer_loss");
    for (std::size_t i = 0; i < S; ++i) t.header.push_back(fmt::format("reward_{}", i));
    for (std::size_t i = 0; i < S; ++i) t.header.push_back(fmt::format("hypergradient_{}", i));
    for (const char* h : {"mean_inner_reward", "solver_iterations", "solver_residual", "wall_seconds",
                          "solver_relative_residual", "inner_steps", "inner_gradient_norm", "max_step"}) {
      t.header.push_back(h);
    }
  }
  for (const StepRecord& r : result.records) {
    std::vector<double> row{static_cast<double>(r.step), r.train.nll_per_dim, r.train.rmse, r.train.mean_std,
                            r.held_out.nll_per_dim, r.held_out.rmse, r.held_out.mean_std};
    if (bilevel) {
      row.push_back(r.outer_loss);
      for (std::size_t i = 0; i < S; ++i) row.push_back(i < r.reward_params.size() ? r.reward_params[i] : NAN);
      for (std::size_t i = 0; i < S; ++i) row.push_back(i < r.hypergradient.size() ? r.hypergradient[i] : NAN);
      row.insert(row.end(), {r.mean_inner_reward, static_cast<double>(r.solver_iterations), r.solver_residual,
                             r.wall_seconds, r.solver_relative_residual, static_cast<double>(r.inner_steps),
                             r.inner_gradient_norm, r.max_step});
    }
    t.rows.push_back(std::move(row));
  }
  return t;
}

RecordTable epoch_table(const ClassificationResult& r) {
  RecordTable t;
  t.header = {"epoch", "train_nll", "train_accuracy", "test_nll", "test_accuracy"};
  for (const EpochRecord& e : r.epochs) {
    t.rows.push_back({static_cast<double>(e.epoch), e.train.nll_per_dim, e.train.accuracy, e.test.nll_per_dim,
                      e.test.accuracy});
  }
  return t;
}

RecordTable outer_table(const ClassificationResult& r) {
  RecordTable t;
  t.header = {"step",           "beta",       "hypergradient",    "outer_loss",         "train_nll",
              "train_accuracy", "val_nll",    "val_accuracy",     "mean_inner_reward",  "solver_iterations",
              "solver_residual", "wall_seconds", "solver_relative_residual", "inner_steps", "inner_gradient_norm",
              "max_step"};
  for (const OuterRecord& s : r.outer) {
    t.rows.push_back({static_cast<double>(s.step), s.beta, s.hypergradient, s.outer_loss, s.train.nll_per_dim,
                      s.train.accuracy, s.validation.nll_per_dim, s.validation.accuracy, s.mean_inner_reward,
                      static_cast<double>(s.solver_iterations), s.solver_residual, s.wall_seconds,
                      s.solver_relative_residual, static_cast<double>(s.inner_steps), s.inner_gradient_norm,
                      s.max_step});
  }
  return t;
}

}  // namespace d2r::runs
