// The program's side of a regression fit: its checks, configuration and records (regression.hpp).
#include "host/cli/regression.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "d2r/error.hpp"
#include "host/cli/classification.hpp"
#include "host/cli/fit_inputs.hpp"
#include "host/cli/output.hpp"
#include "host/cli/parallel.hpp"

namespace d2r::cli {

namespace fs = std::filesystem;

Method parse_method(const std::string& name) {
  for (Method m : {Method::mse, Method::nll, Method::pg, Method::heuristic, Method::bilevel}) {
    if (name == to_string(m)) return m;
  }
  throw Error(ErrorKind::invalid_argument, "--method",
              fmt::format("--method: expected mse, nll, pg, heuristic or bilevel, got '{}'", name));
}

nlohmann::json config_json(const RegressionConfig& c) {
  nlohmann::json j = {{"method", to_string(c.method)},
                      {"precision", c.double_precision ? "double" : "float"},
                      {"hidden", c.hidden},
                      {"activation", d2r::to_string(c.activation)},
                      {"head", d2r::to_string(c.head)},
                      {"seed", c.seed}};
  if (c.method == Method::pg || c.method == Method::heuristic || c.method == Method::bilevel) {
    j["reward"] = d2r::to_string(c.reward_form);
    j["lambda"] = c.lambda;
    j["generations"] = c.generations;
    if (c.method != Method::heuristic) j["reward_init"] = c.reward_params;
    if (c.method != Method::heuristic) j["objective"] = c.inner_objective == InnerObjective::exact ? "exact" : "reinforce";
  }
  if (c.method == Method::bilevel) {
    outer_config_json(c, j);
  } else {
    j["steps"] = c.plain.steps;
    j["learning_rate"] = c.plain.adam.learning_rate;
    j["gradient_clamp"] = std::isfinite(c.plain.gradient_clamp) ? nlohmann::json(c.plain.gradient_clamp) : nlohmann::json("none");
    j["eval_every"] = c.plain.evaluate_every;
  }
  return j;
}

namespace {

bool positive_finite(double v) { return std::isfinite(v) && v > 0; }

}  // namespace

std::string option_for_field(std::string_view field) {
  static const std::pair<std::string_view, std::string_view> kOptions[] = {
      {"options.inner.objective", "--inner-objective"}, {"options.inner.steps", "--inner-steps"},
      {"options.inner.adam", "--lr"},                   {"options.inner.generations", "--generations"},
      {"options.inner.pg.entropy_weight", "--lambda"},  {"options.inner.batch_size", "--inner-batch-size"},
      {"options.inner.stationarity_tolerance", "--inner-tolerance"},
      {"options.inner.max_steps", "--inner-max-steps"}, {"options.inner_start", "--inner-start"},
      {"options.curvature", "--curvature"},             {"options.solver", "--solver"},
      {"options.cg.tolerance", "--solver-tolerance"},   {"options.cg.damping", "--damping"},
      {"options.cg.max_iterations", "--solver-iterations"}, {"options.outer_adam", "--outer-lr"},
      {"options.rprop.initial_step", "--outer-step"},   {"options.stopping.window", "--window"},
      {"options.stopping.reward_tolerance", "--reward-tolerance"},
      {"options.stopping.loss_tolerance", "--loss-tolerance"}, {"options.outer_data", "--outer-data"},
      {"options.steps", "--steps"},                     {"options.adam", "--lr"},
      {"options.evaluate_every", "--eval-every"},       {"options.generations", "--generations"},
      {"options.pg.entropy_weight", "--lambda"},        {"options.epochs", "--epochs"},
      {"options.batch_size", "--batch-size"},           {"options.objective", "--inner-objective"}};
  for (const auto& [name, option] : kOptions) {
    if (field == name) return std::string(option);
  }
  return std::string(field);
}

namespace {
template <class O>
void check_fields_as_user(const std::string& command, const O& options) {
  try {
    d2r::check(options);
  } catch (const Error& e) {
    bad_input(command, option_for_field(e.argument()), user_words(e));
  }
}
}  // namespace

void check_as_user(const std::string& command, const BilevelOptions<double>& o) { check_fields_as_user(command, o); }
void check_as_user(const std::string& command, const PolicyFitOptions<double>& o) { check_fields_as_user(command, o); }
void check_as_user(const std::string& command, const ClassifierFitOptions<double>& o) {
  check_fields_as_user(command, o);
}

void check_reward_values(const std::string& cmd, RewardForm form, const std::vector<double>& params, std::int64_t dims) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const double v = params[i];
    bool diagonal = form != RewardForm::full;
    if (!diagonal) {
      for (std::int64_t r = 0; r < dims; ++r) diagonal = diagonal || static_cast<std::int64_t>(i) == r * (r + 1) / 2 + r;
    }
    if (!std::isfinite(v) || (diagonal && !(v > 0))) {
      bad_input(cmd, "--u", fmt::format("entry {} is {}; expected finite{}", i, v, diagonal ? " and > 0" : ""));
    }
  }
}

template <class Config>
void check_outer_settings(const std::string& cmd, const Config& c) {
  if (!positive_finite(c.bilevel.rprop.initial_step) || c.bilevel.rprop.initial_step > 10) {
    bad_input(cmd, "--outer-step", fmt::format("expected a log-space step in (0, 10], got {}", c.bilevel.rprop.initial_step));
  }
  if (!(std::isfinite(c.bilevel.inner.stationarity_tolerance) && c.bilevel.inner.stationarity_tolerance >= 0)) {
    bad_input(cmd, "--inner-tolerance",
              fmt::format("expected a finite tolerance >= 0 (0: no check), got {}", c.bilevel.inner.stationarity_tolerance));
  }
  const std::int64_t cap = c.bilevel.inner.max_steps;
  if (cap < 0 || cap > (std::int64_t{1} << 24)) {
    bad_input(cmd, "--inner-max-steps", fmt::format("expected 0 (K_in) to 2^24, got {}", c.bilevel.inner.max_steps));
  }
  if (!positive_finite(c.bilevel.cg.tolerance)) {
    bad_input(cmd, "--solver-tolerance", fmt::format("expected a finite tolerance > 0, got {}", c.bilevel.cg.tolerance));
  }
  if (!(std::isfinite(c.bilevel.cg.damping) && c.bilevel.cg.damping >= 0)) {
    bad_input(cmd, "--damping", fmt::format("expected a finite damping >= 0, got {}", c.bilevel.cg.damping));
  }
  if (c.bilevel.stopping.window < 2) bad_input(cmd, "--window", fmt::format("expected >= 2 outer steps, got {}", c.bilevel.stopping.window));
  if (!positive_finite(c.bilevel.stopping.reward_tolerance)) {
    bad_input(cmd, "--reward-tolerance", fmt::format("expected a tolerance > 0, got {}", c.bilevel.stopping.reward_tolerance));
  }
  if (!positive_finite(c.bilevel.stopping.loss_tolerance)) {
    bad_input(cmd, "--loss-tolerance", fmt::format("expected a tolerance > 0, got {}", c.bilevel.stopping.loss_tolerance));
  }
}
template void check_outer_settings<RegressionConfig>(const std::string&, const RegressionConfig&);
template void check_outer_settings<ClassificationConfig>(const std::string&, const ClassificationConfig&);

namespace {

/// The checks of the command line's settings, with messages naming the options; the library
/// checks again (and everything else) when the trainer is built.
void validate(const std::string& cmd, const RegressionConfig& c, const HostData& train, const HostData& held,
              const Context& ctx) {
  const auto check_data = [&](const HostData& d, const char* name) {
    if (d.inputs < 1 || d.dims < 1 || static_cast<std::int64_t>(d.x.size()) != d.rows * d.inputs ||
        static_cast<std::int64_t>(d.y.size()) != d.rows * d.dims) {
      bad_input(cmd, name, fmt::format("inconsistent data: {} rows, {} inputs, {} targets, {} and {} values", d.rows,
                                       d.inputs, d.dims, d.x.size(), d.y.size()));
    }
  };
  check_data(train, "training data");
  if (train.rows < 2) bad_input(cmd, "training data", fmt::format("expected at least 2 rows, got {}", train.rows));
  if (!held.empty()) {
    check_data(held, "held-out data");
    if (held.inputs != train.inputs || held.dims != train.dims) {
      bad_input(cmd, "held-out data", "its columns differ from the training data's");
    }
  }
  if (c.double_precision && ctx.backend() == Backend::cuda) {
    bad_input(cmd, "--precision", "double precision runs on the cpu backend only (use --device cpu or float)");
  }
  for (std::int64_t h : c.hidden) {
    if (h < 1) bad_input(cmd, "--hidden", fmt::format("layer widths must be >= 1, got {}", h));
  }
  if (!(std::isfinite(c.lambda) && c.lambda >= 0)) {
    bad_input(cmd, "--lambda", fmt::format("expected a finite entropy weight λ >= 0, got {}", c.lambda));
  }
  if (c.generations < 1) bad_input(cmd, "--generations", fmt::format("expected G >= 1, got {}", c.generations));
  const bool uses_reward = c.method == Method::pg || c.method == Method::bilevel;
  if (!uses_reward && !c.reward_params.empty()) {
    bad_input(cmd, "--u", fmt::format("reward parameters are used by --method pg and bilevel only, not {}",
                                      to_string(c.method)));
  }
  if (uses_reward) {
    const std::int64_t S = reward_param_count(c.reward_form, train.dims);
    if (static_cast<std::int64_t>(c.reward_params.size()) != S) {
      bad_input(cmd, "--u",
                fmt::format("a {} reward on {} targets has {} parameter{}{}, got {}", d2r::to_string(c.reward_form),
                            train.dims, S, S == 1 ? "" : "s",
                            c.reward_form == RewardForm::full ? " (the packed rows of R, U = R Rᵀ)" : "",
                            c.reward_params.size()));
    }
    check_reward_values(cmd, c.reward_form, c.reward_params, train.dims);
  }
  if (c.method == Method::heuristic && !(c.lambda > 0)) {
    bad_input(cmd, "--lambda", "the heuristic reward needs λ > 0");
  }
  if (c.method == Method::bilevel) {
    if (c.head != GaussianHead::diagonal) {
      bad_input(cmd, "--head", "the bilevel method trains a diagonal Gaussian head only");
    }
    if (c.outer_steps < 1) bad_input(cmd, "--outer-steps", fmt::format("expected >= 1, got {}", c.outer_steps));
    if (c.bilevel.inner.steps < 1) bad_input(cmd, "--inner-steps", fmt::format("expected >= 1, got {}", c.bilevel.inner.steps));
    if (c.bilevel.inner.batch_size < 0) {
      bad_input(cmd, "--inner-batch-size",
                fmt::format("expected rows per inner step >= 0 (0: full batch), got {}", c.bilevel.inner.batch_size));
    }
    if (!positive_finite(c.bilevel.inner.adam.learning_rate)) {
      bad_input(cmd, "--lr", fmt::format("expected a finite learning rate > 0, got {}", c.bilevel.inner.adam.learning_rate));
    }
    if (!positive_finite(c.bilevel.outer_adam.learning_rate)) {
      bad_input(cmd, "--outer-lr", fmt::format("expected a finite learning rate > 0, got {}", c.bilevel.outer_adam.learning_rate));
    }
    if (c.bilevel.outer_data == OuterData::validation && held.empty()) {
      bad_input(cmd, "--outer-data",
                "the outer loss is on the validation rows by default, and there are none: give --val-fraction > 0 "
                "or --outer-data train");
    }
    check_outer_settings(cmd, c);
    check_as_user(cmd, bilevel_options<double>(c));
  } else {
    if (c.plain.steps < 1) bad_input(cmd, "--steps", fmt::format("expected >= 1 training steps, got {}", c.plain.steps));
    if (!positive_finite(c.plain.adam.learning_rate)) {
      bad_input(cmd, "--lr", fmt::format("expected a finite learning rate > 0, got {}", c.plain.adam.learning_rate));
    }
    if (c.plain.evaluate_every < 1) bad_input(cmd, "--eval-every", fmt::format("expected >= 1, got {}", c.plain.evaluate_every));
    check_as_user(cmd, fit_options(c));
  }
}

}  // namespace

RegressionRun::RegressionRun(Context& ctx, const RegressionConfig& config, const HostData& train,
                             const HostData& held_out, const std::string& command)
    : runs::RegressionRun(ctx, (validate(command, config, train, held_out, ctx), config), train, held_out,
                          data_parallel(), command) {}

nlohmann::json RegressionRun::options_json() const {
  const runs::RunOptions o = options();
  return o.bilevel ? fields_json(*o.bilevel) : fields_json(*o.policy);
}

// ------------------------------------------------------------------ output
void curves_table(const RunResult& result, bool bilevel, std::vector<std::string>& header,
                  std::vector<std::vector<double>>& rows, const std::string& held_out_name) {
  header = {"step", "train_nll_per_dim", "train_rmse", "train_mean_std", held_out_name + "_nll_per_dim",
            held_out_name + "_rmse", held_out_name + "_mean_std"};
  std::size_t S = 0;
  if (bilevel && !result.records.empty()) {
    S = result.records.front().reward_params.size();
    header.push_back("outer_loss");
    for (std::size_t i = 0; i < S; ++i) header.push_back(fmt::format("reward_{}", i));
    for (std::size_t i = 0; i < S; ++i) header.push_back(fmt::format("hypergradient_{}", i));
    for (const char* h : {"mean_inner_reward", "solver_iterations", "solver_residual", "wall_seconds",
                          "solver_relative_residual", "inner_steps", "inner_gradient_norm", "max_step"}) {
      header.push_back(h);
    }
  }
  rows.clear();
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
    rows.push_back(std::move(row));
  }
}

nlohmann::json records_json(const RunResult& result, bool bilevel, const std::string& held_out_name) {
  nlohmann::json out = nlohmann::json::array();
  for (const StepRecord& r : result.records) {
    nlohmann::json j = {{"step", r.step}, {"train", to_json(r.train)}, {held_out_name, to_json(r.held_out)}};
    if (bilevel) {
      j["reward_params"] = r.reward_params;
      j["hypergradient"] = r.hypergradient;
      j["outer_loss"] = r.outer_loss;
      j["mean_inner_reward"] = r.mean_inner_reward;
      j["solver_status"] = d2r::to_string(r.solver_status);
      j["solver_iterations"] = r.solver_iterations;
      j["solver_residual"] = r.solver_residual;
      j["solver_relative_residual"] = r.solver_relative_residual;
      j["inner_steps"] = r.inner_steps;
      j["inner_gradient_norm"] = r.inner_gradient_norm;
      j["inner_gradient_norm_relative"] =
          r.inner_gradient_norm0 > 0 ? r.inner_gradient_norm / r.inner_gradient_norm0 : 0.0;
      j["max_step"] = r.max_step;
      j["hypergradient_clamped"] = r.hypergradient_clamped;
      j["at_max_step"] = r.at_max_step;
      j["wall_seconds"] = r.wall_seconds;
    }
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace d2r::cli
