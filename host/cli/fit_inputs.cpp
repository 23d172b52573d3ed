// The data of `d2r fit` and `d2r sweep` (fit_inputs.hpp): the CSV file read, its columns, cells,
// split, standardisation and target scaling checked, each refusal naming the user's option, file,
// line and column.
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "host/cli/fit_inputs.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {
namespace {

namespace fs = std::filesystem;

HostData to_host_data(const Dataset& d) {
  return {.rows = d.rows, .inputs = d.feature_count(), .dims = d.target_count(), .x = d.features, .y = d.targets};
}

/// --precision float: a value that a float cannot hold (|x| > 3.4e38) is bad input, named by its
/// file, line and column, before the library meets it as an infinity.
void check_float_range(std::string_view command, const FitOptions& o, const Table& table, const Dataset& data) {
  if (o.precision != "float") return;
  const auto check = [&](const std::vector<double>& values, const std::vector<std::string>& names) {
    const std::size_t cols = names.size();
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (std::abs(values[i]) <= static_cast<double>(std::numeric_limits<float>::max())) continue;
      const std::size_t r = i / cols, c = i % cols;
      const std::int64_t col = table.find_column(names[c]).value_or(-1);
      bad_input(command, "data",
                fmt::format("{} line {}, column {} {}: {} is outside the range of --precision float (|x| <= "
                            "3.4e38); rescale the column or use --precision double --device cpu",
                            o.data, table.line(static_cast<std::int64_t>(r)), col + 1, shown_name(names[c]),
                            values[i]));
    }
  };
  check(data.features, data.feature_names);
  if (data.task == Task::regression) check(data.targets, data.target_names);
}

/// A data-set builder's refusal in the user's words: the library names its function and argument
/// ("d2r::make_regression_dataset: argument 'target_columns': "); the user gave --targets.
template <class Build>
Dataset build_dataset(std::string_view command, Build&& build) {
  try {
    return build();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::invalid_argument) throw;
    const std::string what = user_words(e);
    const std::string& arg = e.argument();
    const std::string_view option = arg == "target_columns"    ? "--targets"
                                    : arg == "feature_columns" ? "--features"
                                    : arg == "label_column"    ? "--label"
                                                               : "data";
    bad_input(command, option, what);
  }
}

}  // namespace

Table read_data_file(std::string_view command, std::string_view option, const fs::path& path) {
  try {
    return read_csv(path);
  } catch (const Error& e) {
    bad_input(command, option, user_words(e));
  }
}

RegressionInputs load_regression_inputs(const FitOptions& o, std::string_view cmd) {
  RegressionInputs in;
  const Table table = read_data_file(cmd, "data", o.data);
  const Dataset data = build_dataset(cmd, [&] { return make_regression_dataset(table, o.targets, o.features); });
  check_float_range(cmd, o, table, data);
  Dataset train_set = data, val_set;
  const bool has_val = o.val_fraction > 0;
  if (has_val) {
    Split s;
    try {
      s = random_split(data, o.val_fraction, o.seed);
    } catch (const Error&) {
      bad_input(cmd, "--val-fraction",
                fmt::format("{} of the {} rows of {} leaves no training or no validation rows; give more rows or "
                            "--val-fraction 0",
                            o.val_fraction, data.rows, o.data));
    }
    train_set = std::move(s.train);
    val_set = std::move(s.test);
  }
  Standardization map;
  if (o.standardize) {
    map = standardize(train_set);
    if (has_val) apply_standardization(val_set, map);
  }
  // Target scaling: y ← (y − mean) / s with one s for every dimension (d2r::standardize_targets),
  // so every metric and the reward convert exactly to the original units.
  TargetScaling scaling;
  if (o.standardize_targets && train_set.rows < 2) {  // no standard deviation to scale by
    bad_input(cmd, "--standardize-targets",
              fmt::format("{} training row(s): the targets' standard deviation needs at least 2; give more rows or "
                          "--no-standardize-targets",
                          train_set.rows));
  }
  if (o.standardize_targets) {
    try {
      scaling = standardize_targets(train_set);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::invalid_argument) throw;
      bad_input(cmd, "--standardize-targets",
                "the training targets are constant (zero variance); give --no-standardize-targets");
    }
    if (has_val) apply_target_scaling(val_set, scaling);
  }
  in.data = data;
  in.train = to_host_data(train_set);
  if (has_val) in.val = to_host_data(val_set);
  in.map = map;
  in.target_mean = std::move(scaling.mean);
  in.target_scale = scaling.scale;
  in.has_val = has_val;
  return in;
}

ClassificationInputs load_classification_inputs(const FitOptions& o, std::string_view cmd) {
  ClassificationInputs in;
  const Table table = read_data_file(cmd, "data", o.data);
  if (!table.find_column(o.label)) {
    std::vector<std::string> names;
    for (const std::string& c : table.columns()) names.push_back(fmt::format("'{}'", c));
    bad_input(cmd, "--label", fmt::format("{} has no column named '{}'; available columns: {}", o.data, o.label,
                                           fmt::join(names, ", ")));
  }
  const Dataset data = build_dataset(cmd, [&] { return make_classification_dataset(table, o.label, o.features); });
  check_float_range(cmd, o, table, data);
  in.data = data;
  in.splits = split_classification(data, in.test_fraction, o.val_fraction, o.seed, cmd);
  in.train = to_class_host_data(in.splits.train);
  in.val = to_class_host_data(in.splits.validation);
  in.test = to_class_host_data(in.splits.test);
  in.classes = data.target_count();
  return in;
}

RegressionConfig shared_config(const FitOptions& o, const RegressionInputs& in) {
  RegressionConfig c;
  c.double_precision = o.precision == "double";
  c.hidden = o.hidden;
  c.activation = named(o.activation, {Activation::relu, Activation::tanh});
  c.lambda = o.lambda;
  c.generations = o.generations;
  c.plain.steps = o.steps;
  c.plain.adam.learning_rate = o.lr;
  c.target_mean = in.target_mean;
  c.target_scale = in.target_scale;
  return c;
}

ClassificationConfig shared_config(const FitOptions& o, const ClassificationInputs&) {
  ClassificationConfig c;
  c.double_precision = o.precision == "double";
  if (given(o, "--hidden")) c.hidden = o.hidden;
  c.activation = named(o.activation, {Activation::relu, Activation::tanh});
  c.lambda = o.lambda;
  if (given(o, "--generations")) c.generations = o.generations;
  c.plain.epochs = o.epochs;
  c.plain.batch_size = o.batch_size;
  if (given(o, "--lr")) c.learning_rate = o.lr;
  return c;
}

}  // namespace d2r::cli
