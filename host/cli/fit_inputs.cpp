// The data of `d2r fit` and `d2r sweep` (fit_inputs.hpp): the CSV file read, its columns, cells,
// split, standardisation and target scaling checked, each refusal naming the user's option, file,
// line and column.
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include <unistd.h>

#include <fstream>

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
  HostData train = to_host_data(train_set);
  HostData val = has_val ? to_host_data(val_set) : HostData{};
  // Target scaling: y ← (y − mean) / s with one s for every dimension (the RMS of the training
  // targets' standard deviations), so every metric and the reward convert exactly to the
  // original units (NLL + log s, RMSE × s, U / s²).
  std::vector<double> target_mean;
  double target_scale = 1;
  if (o.standardize_targets && train.rows >= 2) {
    const std::int64_t n = train.dims;
    target_mean.assign(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t r = 0; r < train.rows; ++r) {
      for (std::int64_t d = 0; d < n; ++d) target_mean[d] += train.y[r * n + d] / static_cast<double>(train.rows);
    }
    double var = 0;
    for (std::int64_t r = 0; r < train.rows; ++r) {
      for (std::int64_t d = 0; d < n; ++d) {
        const double e = train.y[r * n + d] - target_mean[d];
        var += e * e / static_cast<double>((train.rows - 1) * n);
      }
    }
    if (!(std::isfinite(var) && var > 0)) {
      bad_input(cmd, "--standardize-targets",
                "the training targets are constant (zero variance); give --no-standardize-targets");
    }
    target_scale = std::sqrt(var);
    for (HostData* h : {&train, &val}) {
      for (std::int64_t r = 0; r < h->rows; ++r) {
        for (std::int64_t d = 0; d < n; ++d) h->y[r * n + d] = (h->y[r * n + d] - target_mean[d]) / target_scale;
      }
    }
  }

  in.data = data;
  in.train = std::move(train);
  in.val = std::move(val);
  in.map = map;
  in.target_mean = std::move(target_mean);
  in.target_scale = target_scale;
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
  constexpr double test_fraction = 0.2;
  const ClassificationSplits splits = split_classification(data, test_fraction, o.val_fraction, o.seed, cmd);
  const ClassHostData train = to_class_host_data(splits.train), val = to_class_host_data(splits.validation),
                      test = to_class_host_data(splits.test);
  const std::int64_t classes = data.target_count();

  in.data = data;
  in.splits = splits;
  in.train = train;
  in.val = val;
  in.test = test;
  in.classes = classes;
  in.test_fraction = test_fraction;
  return in;
}

/// The least memory a run needs (the parameters and their gradient and Adam moments, the
/// activations of one pass over the largest data set): refused with the figure when it is more
/// than the machine has, instead of failing with std::bad_alloc (or the device's out-of-memory)
/// in the middle.
void check_fit_memory(const FitOptions& o, const std::vector<std::int64_t>& hidden, std::int64_t inputs,
                  std::int64_t outputs, std::int64_t rows, const Context& ctx) {
  long double params = 0, width = static_cast<long double>(inputs), activations = 0;
  for (std::int64_t h : hidden) {
    params += (width + 1) * static_cast<long double>(h);
    activations += static_cast<long double>(h);
    width = static_cast<long double>(h);
  }
  params += (width + 1) * static_cast<long double>(outputs);
  const long double scalar = o.precision == "double" ? 8 : 4;
  // Vectors of the parameters' size a run holds: θ, its gradient and Adam's moments; a bilevel run
  // also the inner and outer optimisers' state, the solver's vectors and the HVP's scratch. Peak
  // RSS on the cpu backend (--hidden 4000,4000, float, 64 MB a vector): 3 such vectors for nll,
  // 17.7 (regression) and 19.7 (classification) for bilevel.
  const long double copies = o.method == "bilevel" ? 20 : 4;
  const long double need = scalar * (copies * params + static_cast<long double>(rows) * (activations + outputs));
  std::uint64_t have = 0;
  std::string where;
  if (ctx.backend() == Backend::cuda) {
    have = ctx.device_properties().total_memory_bytes;
    where = "device memory";
  } else {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) have = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
    where = "memory";
    // A container's limit (cgroup v2) is what the run may use, when it is lower.
    if (std::ifstream limit("/sys/fs/cgroup/memory.max"); limit) {
      std::uint64_t bytes = 0;
      if (limit >> bytes && bytes > 0 && (have == 0 || bytes < have)) {
        have = bytes;
        where = "memory (the container's limit)";
      }
    }
  }
  if (have > 0 && need > static_cast<long double>(have)) {
    constexpr long double GiB = 1024.0L * 1024 * 1024;
    bad_input("fit", "--hidden",
              fmt::format("this network ({:.3g} parameters, layers {}) needs at least {:.1f} GiB, more than the "
                          "{:.1f} GiB of {} this machine has; use narrower layers",
                          static_cast<double>(params), fmt::join(hidden, ","), static_cast<double>(need / GiB),
                          static_cast<double>(static_cast<long double>(have) / GiB), where));
  }
}

}  // namespace d2r::cli
