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
  // Two independent seeds for the two splits, from the run's seed.
  std::uint64_t state = seed;
  const std::uint64_t test_seed = splitmix64(state), val_seed = splitmix64(state);
  const auto split = [&](const Dataset& d, double fraction, std::uint64_t s, const char* what) {
    try {
      return stratified_split(d, fraction, s);
    } catch (const Error&) {
      // The library names its own arguments (test_fraction); the user knows the file and --val-fraction.
      bad_input(command, std::string_view(what) == "test" ? "data" : "--val-fraction",
                fmt::format("{} ({} rows, {} classes): cannot hold out a {} share of {} of every class: the training "
                            "or {} rows would be none (give more rows{})",
                            data.source, d.rows, data.class_names.size(), what, fraction, what,
                            std::string_view(what) == "test" ? "" : " or --val-fraction 0"));
    }
  };
  ClassificationSplits out;
  Split first = split(data, test_fraction, test_seed, "test");
  out.test = std::move(first.test);
  if (val_fraction > 0) {
    Split second = split(first.train, val_fraction, val_seed, "validation");
    out.train = std::move(second.train);
    out.validation = std::move(second.test);
  } else {
    out.train = std::move(first.train);
  }
  if (out.train.rows < 2) {
    bad_input(command, "data", fmt::format("{}: expected at least 2 training rows, got {}", data.source, out.train.rows));
  }
  out.map = standardize(out.train);
  if (out.validation.rows > 0) apply_standardization(out.validation, out.map);
  apply_standardization(out.test, out.map);
  return out;
}

nlohmann::json config_json(const ClassificationConfig& c) {
  nlohmann::json j = {{"method", to_string(c.method)},
                      {"precision", c.double_precision ? "double" : "float"},
                      {"hidden", c.hidden},
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
    j["objective"] = c.inner_objective == InnerObjective::exact ? "exact" : "reinforce";
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
