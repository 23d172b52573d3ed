// The program's side of a regression fit: its checks, configuration and records (regression.hpp).
#include "host/cli/regression.hpp"

#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "d2r/error.hpp"
#include "host/cli/output.hpp"
#include "host/cli/parallel.hpp"

namespace d2r::cli {

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
    if (c.method != Method::heuristic) j["objective"] = d2r::to_string(c.inner_objective);
  }
  if (c.method == Method::bilevel) {
    j["final_model"] = runs::to_string(c.final_model);
    outer_config_json(c, j);
  } else {
    j["steps"] = c.plain.steps;
    j["learning_rate"] = c.plain.adam.learning_rate;
    j["gradient_clamp"] = std::isfinite(c.plain.gradient_clamp) ? nlohmann::json(c.plain.gradient_clamp) : nlohmann::json("none");
    j["eval_every"] = c.plain.evaluate_every;
  }
  return j;
}

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
      {"options.rprop.initial_step", "--outer-step"},   {"options.rprop.flat_tolerance", "--flat-tolerance"},   {"options.stopping.window", "--window"},
      {"options.stopping.reward_tolerance", "--reward-tolerance"},
      {"options.stopping.loss_tolerance", "--loss-tolerance"}, {"options.stopping.patience", "--patience"}, {"options.outer_data", "--outer-data"},
      {"options.steps", "--steps"},                     {"options.adam", "--lr"},
      {"options.evaluate_every", "--eval-every"},       {"options.generations", "--generations"},
      {"options.pg.entropy_weight", "--lambda"},        {"options.epochs", "--epochs"},
      {"options.batch_size", "--batch-size"},           {"options.objective", "--inner-objective"},
      {"options.inner.adam.learning_rate", "--lr"},     {"options.adam.learning_rate", "--lr"},
      {"options.outer_adam.learning_rate", "--outer-lr"}};
  // runs::check names the configuration's fields and the data sets.
  static const std::pair<std::string_view, std::string_view> kConfig[] = {
      {"config.double_precision", "--precision"}, {"config.hidden", "--hidden"},
      {"config.lambda", "--lambda"},              {"config.generations", "--generations"},
      {"config.reward_params", "--u"},            {"config.head", "--head"},
      {"config.outer_steps", "--outer-steps"},    {"config.learning_rate", "--lr"},
      {"config.beta", "--beta"},                  {"config.beta_tail", "beta tail"},
      {"train", "training data"},                 {"held_out", "held-out data"},
      {"validation", "validation data"},          {"test", "test data"},
      {"classes", "data"}};
  for (const auto& [name, option] : kConfig) {
    if (field == name) return std::string(option);
  }
  // config.bilevel.X and config.plain.X: the library options' own fields (options.X).
  for (std::string_view prefix : {"config.bilevel.", "config.plain."}) {
    if (field.starts_with(prefix)) return option_for_field("options." + std::string(field.substr(prefix.size())));
  }
  for (const auto& [name, option] : kOptions) {
    if (field == name) return std::string(option);
  }
  return std::string(field);
}

RegressionRun::RegressionRun(Context& ctx, const RegressionConfig& config, const HostData& train,
                             const HostData& held_out, const std::string& command)
    : runs::RegressionRun(ctx, (check_as_user(command, config, train, held_out, ctx), config), train, held_out,
                          data_parallel(), command) {}

nlohmann::json RegressionRun::options_json() const {
  const runs::RunOptions o = options();
  return o.bilevel ? fields_json(*o.bilevel) : fields_json(*o.policy);
}

// ------------------------------------------------------------------ output
nlohmann::json records_json(const RunResult& result, bool bilevel, const std::string& held_out_name) {
  nlohmann::json out = nlohmann::json::array();
  for (const StepRecord& r : result.records) {
    nlohmann::json j = {{"step", r.step}, {"train", to_json(r.train)}, {held_out_name, to_json(r.held_out)}};
    if (bilevel) {
      j["reward_params"] = r.reward_params;
      outer_step_json(r, j);
    }
    out.push_back(std::move(j));
  }
  return out;
}

/// stdout's line and results.json's final.model of a returned inner policy (FinalModel best or
/// last); `reward` describes the φ it was trained at.
nlohmann::json model_json(const runs::ReturnedModel& m, const std::string& reward) {
  const bool best = m.source == runs::FinalModel::best;
  fmt::print("model: the inner policy of outer step {} ({}; trained at {}, outer loss {:.4f})\n", m.outer_step,
             best ? "the best-judged step: the lowest outer loss among steps with a stationary inner policy"
                  : m.fallback ? "the last step: no step had a stationary inner policy"
                               : "the last step",
             reward, m.outer_loss);
  return {{"source", runs::to_string(m.source)},
          {"outer_step", m.outer_step},
          {"outer_loss", m.outer_loss},
          {"inner_steps", m.inner_steps},
          {"tracked_from_step", m.tracked_from},
          {"fallback", m.fallback},
          {"description", best ? "the inner policy of the best-judged outer step (lowest outer loss among those whose "
                                 "inner policy was stationary), trained at the reward before that step's move"
                               : "the inner policy of the last outer step"}};
}

}  // namespace d2r::cli
