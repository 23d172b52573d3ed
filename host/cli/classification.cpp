// The program's side of a classification fit: splits, checks, configuration and records (classification.hpp).
#include "host/cli/classification.hpp"

#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "d2r/error.hpp"
#include "host/cli/output.hpp"
#include "host/cli/parallel.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli {


ClassMethod parse_class_method(const std::string& name) {
  for (ClassMethod m : {ClassMethod::nll, ClassMethod::pg, ClassMethod::heuristic, ClassMethod::bilevel}) {
    if (name == to_string(m)) return m;
  }
  throw Error(ErrorKind::invalid_argument, "--method",
              fmt::format("--method: a classification is trained by nll, pg, heuristic or bilevel, not '{}'", name));
}

ClassHostData to_class_host_data(const Dataset& d) {
  return {.rows = d.rows, .inputs = d.feature_count(), .x = d.features, .labels = d.labels};
}

ClassificationSplits split_classification(const Dataset& data, double test_fraction, double val_fraction,
                                          std::uint64_t seed, std::string_view command) {
  try {
    return d2r::split_classification(data, test_fraction, val_fraction, seed);
  } catch (const Error& e) {
    // The library names its own arguments (test_fraction); the user knows the file and --val-fraction.
    if (!std::string_view(e.what()).starts_with("d2r::split_classification:")) throw;
    const bool val = e.argument() == "val_fraction", test = e.argument() == "test_fraction";
    bad_input(command, val ? "--val-fraction" : "data",
              user_words(e) + (val ? " (give more rows or --val-fraction 0)" : test ? " (give more rows)" : ""));
  }
}

nlohmann::json config_json(const ClassificationConfig& c) {
  nlohmann::json j = {{"method", to_string(c.method)},
                      {"precision", c.double_precision ? "double" : "float"},
                      {"hidden", c.hidden},
                      {"activation", d2r::to_string(c.activation)},
                      {"policy", c.hidden.empty() ? "logistic regression (categorical of Wx + b)" : "MLP, categorical"},
                      {"epochs", c.plain.epochs},
                      {"batch_size", c.plain.batch_size},
                      {"learning_rate", c.learning_rate},
                      {"seed", c.seed}};
  if (!c.hidden.empty()) j["activation"] = d2r::to_string(c.activation);
  if (c.method != ClassMethod::nll) {
    j["reward"] = "one-hot Mahalanobis, U = beta I";
    j["lambda"] = c.lambda;
    j["generations"] = c.generations;
    j["transform"] = "none";
    j["objective"] = d2r::to_string(c.inner_objective);
  }
  if (c.method == ClassMethod::pg) j["beta"] = c.beta;
  if (c.method == ClassMethod::bilevel) {
    j["beta_init"] = c.beta;
    j["beta_tail"] = c.beta_tail;
    j["final_model"] = runs::to_string(c.final_model);
    outer_config_json(c, j);
  }
  return j;
}

ClassificationRun::ClassificationRun(Context& ctx, const ClassificationConfig& config, const ClassHostData& train,
                                     const ClassHostData& validation, const ClassHostData& test, std::int64_t classes,
                                     const std::string& command)
    : runs::ClassificationRun(ctx, (check_as_user(command, config, train, validation, test, classes, ctx), config), train,
                              validation, test, classes, data_parallel(), command) {}

nlohmann::json ClassificationRun::options_json() const {
  const runs::RunOptions o = options();
  nlohmann::json j = {{"classifier", fields_json(*o.classifier)}};
  if (o.bilevel) j["bilevel"] = fields_json(*o.bilevel);
  return j;
}

// ------------------------------------------------------------------ output
nlohmann::json class_metrics_json(const PolicyMetrics& m) {
  const auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"nll", num(m.nll_per_dim)}, {"accuracy", num(m.accuracy)}};
}

nlohmann::json epochs_json(const ClassificationResult& r) {
  nlohmann::json out = nlohmann::json::array();
  for (const EpochRecord& e : r.epochs) {
    out.push_back({{"epoch", e.epoch}, {"train", class_metrics_json(e.train)}, {"test", class_metrics_json(e.test)}});
  }
  return out;
}

nlohmann::json outer_json(const ClassificationResult& r) {
  nlohmann::json out = nlohmann::json::array();
  for (const OuterRecord& s : r.outer) {
    nlohmann::json j = {{"step", s.step},
                        {"beta", s.beta},
                        {"train", class_metrics_json(s.train)},
                        {"validation", class_metrics_json(s.validation)}};
    outer_step_json(s, j);
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace d2r::cli
