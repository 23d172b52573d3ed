#pragma once
// The program's side of a fit of either task (the run itself is the library's, d2r/fit_run.hpp):
// its checks of the settings, naming the options of `d2r fit`, `d2r sweep` and `d2r reproduce`;
// the presets; the configuration and records as results.json and CSV columns.
//
// Use: RegressionRun run(ctx, config, train, held_out); (validates everything and allocates, no
// training) ... run.run(progress) (trains). For the bilevel method a checkpoint path makes run()
// save every `checkpoint_every` outer steps, and resume() continues from such a file.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "d2r/context.hpp"
#include "d2r/error.hpp"
#include "d2r/fit_run.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {

using runs::apply_bilevel_preset;
using runs::bilevel_warnings;
using runs::ClassHostData;
using runs::ClassificationConfig;
using runs::ClassificationResult;
using runs::ClassMethod;
using runs::describe_reward;
using runs::EpochRecord;
using runs::HostData;
using runs::identity_reward;
using runs::Method;
using runs::OuterRecord;
using runs::RegressionConfig;
using runs::reward_in_scale;
using runs::RunResult;
using runs::StepRecord;
using runs::to_string;

/// The configuration as results.json's "config" (python/ and the tests read its names).
nlohmann::json config_json(const RegressionConfig& c);

/// The bilevel fields of a configuration as JSON members of `j` (results.json and checkpoint.json:
/// keep the names, python/ and the tests read them).
template <class Config>
void outer_config_json(const Config& c, nlohmann::json& j) {
  const BilevelOptions<double>& b = c.bilevel;
  j["outer_steps"] = c.outer_steps;
  j["inner_steps"] = b.inner.steps;
  j["inner_batch_size"] = b.inner.batch_size;
  if constexpr (requires { c.learning_rate; }) {
    j["inner_learning_rate"] = c.learning_rate;  // classification: the epochs' rate
  } else {
    j["inner_learning_rate"] = b.inner.adam.learning_rate;
  }
  j["outer_learning_rate"] = b.outer_adam.learning_rate;
  j["inner_gradient_clamp"] = b.inner.gradient_clamp;
  j["hypergradient_clamp"] = b.hypergradient_clamp;
  j["inner_start"] = d2r::to_string(b.inner_start);
  j["curvature"] = d2r::to_string(b.curvature);
  j["solver"] = d2r::to_string(b.solver);
  j["solver_iterations"] = b.cg.max_iterations;
  j["preset"] = c.preset;
  j["outer_data"] = d2r::to_string(b.outer_data);
  j["outer_optimizer"] = d2r::to_string(b.optimizer);
  j["reset_outer_optimizer"] = b.reset_outer_optimizer;
  j["outer_step"] = b.rprop.initial_step;
  j["flat_tolerance"] = b.rprop.flat_tolerance;
  j["inner_objective"] = d2r::to_string(c.inner_objective);
  j["stationarity_tolerance"] = b.inner.stationarity_tolerance;
  j["inner_max_steps"] = b.inner.max_steps;
  j["solver_tolerance"] = b.cg.tolerance;
  j["damping"] = b.cg.damping;
  j["stopping"] = fields_json(b.stopping);
}

/// The option of the program that sets a field of the library's options (d2r::check names the
/// field: "options.inner.steps" is --inner-steps); the field's own name when no option sets it.
std::string option_for_field(std::string_view field);

/// runs::check (runs::check_memory with `memory`) of a run's settings and data, a refused field
/// reported as bad input (d2r::Error, invalid_argument) of `command` naming the user's option
/// (option_for_field).
template <bool memory = false, class... Args>
void check_as_user(const std::string& command, const Args&... args) {
  try {
    if constexpr (memory) {
      runs::check_memory(args...);
    } else {
      runs::check(args...);
    }
  } catch (const Error& e) {
    bad_input(command, option_for_field(e.argument()), user_words(e));
  }
}

/// The library's regression run (d2r/fit_run.hpp) after the program's checks of the settings and
/// the data (d2r::Error, invalid_argument, naming the option; `command` prefixes the messages), on
/// this process's ranks (parallel.hpp).
class RegressionRun : public runs::RegressionRun {
 public:
  RegressionRun(Context& ctx, const RegressionConfig& config, const HostData& train, const HostData& held_out,
                const std::string& command = "fit");
  /// Every field of the library options the run trains with (for_each_field): BilevelOptions for
  /// the bilevel method, else the plain trainer's options.
  [[nodiscard]] nlohmann::json options_json() const;
};

/// The members of an outer step's record that both tasks' records have (StepRecord, OuterRecord)
/// as JSON members of `j`.
template <class Record>
void outer_step_json(const Record& r, nlohmann::json& j) {
  j["hypergradient"] = r.hypergradient;
  j["outer_loss"] = r.outer_loss;
  j["mean_inner_reward"] = r.mean_inner_reward;
  j["solver_status"] = d2r::to_string(r.solver_status);
  j["solver_iterations"] = r.solver_iterations;
  j["solver_residual"] = r.solver_residual;
  j["solver_relative_residual"] = r.solver_relative_residual;
  j["inner_steps"] = r.inner_steps;
  j["inner_gradient_norm"] = r.inner_gradient_norm;
  j["inner_gradient_norm_relative"] = r.inner_gradient_norm0 > 0 ? r.inner_gradient_norm / r.inner_gradient_norm0 : 0.0;
  j["max_step"] = r.max_step;
  j["hypergradient_clamped"] = r.hypergradient_clamped;
  j["at_max_step"] = r.at_max_step;
  j["wall_seconds"] = r.wall_seconds;
}

/// Records of a run as JSON.
nlohmann::json records_json(const RunResult& result, bool bilevel, const std::string& held_out_name = "validation");

/// `d2r fit` bilevel, either task: prints the line saying which inner policy was returned (FinalModel best or
/// last; `reward` describes the reward it was trained at) and returns results.json's final.model for it.
nlohmann::json model_json(const runs::ReturnedModel& m, const std::string& reward);

}  // namespace d2r::cli
