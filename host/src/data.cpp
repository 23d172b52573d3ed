// The data layer's datasets (d2r/data.hpp): regression and classification datasets from a Table,
// standardisation, permutations and splits (CSV text in and out: data_csv.cpp). Host code only;
// it needs nothing from CUDA but the Error type (so that the fuzz target can compile it with clang++).
#include "d2r/data.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <system_error>

#include <fmt/format.h>

#include "d2r/error.hpp"
#include "host/src/data_detail.hpp"

namespace d2r {
namespace {

using data_detail::fail;
using data_detail::fail_input;
using data_detail::invalid_utf8_at;
using data_detail::is_blank;
using data_detail::list_columns;
using data_detail::shown;
using data_detail::trim;
using data_detail::where;

// ------------------------------------------------------------------------------------ numbers

enum class NumberStatus { ok, empty, not_a_number, non_finite, out_of_range };

NumberStatus parse_number(std::string_view cell, double& value) {
  std::string_view s = trim(cell);
  if (s.empty()) return NumberStatus::empty;
  if (s.front() == '+') {
    s.remove_prefix(1);
    if (s.empty() || s.front() == '+' || s.front() == '-') return NumberStatus::not_a_number;
  }
  const char* first = s.data();
  const char* last = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(first, last, value, std::chars_format::general);
  if (ec == std::errc::result_out_of_range && ptr == last) return NumberStatus::out_of_range;
  if (ec != std::errc() || ptr != last) return NumberStatus::not_a_number;
  if (!std::isfinite(value)) return NumberStatus::non_finite;
  return NumberStatus::ok;
}

bool parse_integer(std::string_view cell, std::int64_t& value) {
  std::string_view s = trim(cell);
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
    if (!s.empty() && s.front() == '-') return false;
  }
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value, 10);
  return ec == std::errc() && ptr == s.data() + s.size();
}

/// The number in cell (row, col) of `table`, or an error naming its line and column.
double read_number(std::string_view function, const Table& table, std::int64_t row, std::int64_t col) {
  const std::string& cell = table.cell(row, col);
  double value = 0.0;
  const NumberStatus status = parse_number(cell, value);
  if (status == NumberStatus::ok) return value;
  std::string what;
  switch (status) {
    case NumberStatus::empty: what = "empty cell, expected a finite number"; break;
    case NumberStatus::non_finite:
      what = fmt::format("expected a finite number, got the non-finite value {} (NaN and infinities are rejected)",
                         shown(cell));
      break;
    case NumberStatus::out_of_range:
      what = fmt::format("expected a finite number, got {}, which is out of the range of double", shown(cell));
      break;
    default: what = fmt::format("expected a finite number, got {}", shown(cell)); break;
  }
  fail_input(function, "table",
             fmt::format("{}: {}", where(table.source(), table.line(row), col,
                                         table.columns()[static_cast<std::size_t>(col)]),
                         what));
}

/// "<source> line <header line>, column <C> '<name>'".
std::string header_where(const Table& table, std::int64_t col) {
  return where(table.source(), table.header_line(), col, table.columns()[static_cast<std::size_t>(col)]);
}

/// A table the dataset builders accept: at least one column and one row.
void check_table(std::string_view function, const Table& table) {
  if (table.cols() == 0) fail_input(function, "table", "the table has no columns");
  if (table.rows() == 0) {
    fail_input(function, "table",
               fmt::format("{} line {}: the table has a header but no data rows", table.source(), table.header_line()));
  }
}

/// Column index of `name`, or an error listing the available columns.
std::int64_t require_column(std::string_view function, std::string_view argument, const Table& table,
                            const std::string& name, std::string_view role) {
  const auto index = table.find_column(trim(name));
  if (!index) {
    fail_input(function, argument,
               fmt::format("{} line {} (header): no {} column named {}; available columns: {}", table.source(),
                           table.header_line(), role, shown(name), list_columns(table.columns())));
  }
  return *index;
}

/// The feature columns: `feature_columns` (checked: present, not repeated, not among `taken`), or
/// every column not in `taken` when it is empty (at least one).
std::vector<std::int64_t> resolve_features(std::string_view function, const Table& table,
                                           const std::vector<std::int64_t>& taken, std::string_view role,
                                           std::span<const std::string> feature_columns) {
  std::vector<std::int64_t> features;
  if (feature_columns.empty()) {
    for (std::int64_t c = 0; c < table.cols(); ++c) {
      if (std::find(taken.begin(), taken.end(), c) == taken.end()) features.push_back(c);
    }
    if (features.empty()) {
      fail_input(function, "feature_columns",
                 fmt::format("{} line {} (header): no column is left for the features once the {} columns are "
                             "taken; columns: {}",
                             table.source(), table.header_line(), role, list_columns(table.columns())));
    }
    return features;
  }
  for (const std::string& name : feature_columns) {
    const std::int64_t c = require_column(function, "feature_columns", table, name, "feature");
    if (std::find(taken.begin(), taken.end(), c) != taken.end()) {
      fail_input(function, "feature_columns",
                 fmt::format("{}: the column is named both as a {} and as a feature", header_where(table, c), role));
    }
    if (std::find(features.begin(), features.end(), c) != features.end()) {
      fail_input(function, "feature_columns", fmt::format("{}: the column is named twice", header_where(table, c)));
    }
    features.push_back(c);
  }
  return features;
}

// ------------------------------------------------------------------------------------ datasets

void check_dataset(std::string_view function, std::string_view argument, const Dataset& d) {
  const auto p = static_cast<std::uint64_t>(d.feature_names.size());
  if (d.rows < 0) fail_input(function, argument, fmt::format("rows must be >= 0, got {}", d.rows));
  const auto n_rows = static_cast<std::uint64_t>(d.rows);
  if (d.features.size() != n_rows * p) {
    fail_input(function, argument,
               fmt::format("features must hold rows x feature_names = {} x {} values, got {}", d.rows, p,
                           d.features.size()));
  }
  if (d.task == Task::regression) {
    const auto n = static_cast<std::uint64_t>(d.target_names.size());
    if (d.targets.size() != n_rows * n) {
      fail_input(function, argument,
                 fmt::format("targets must hold rows x target_names = {} x {} values, got {}", d.rows, n,
                             d.targets.size()));
    }
    if (!d.labels.empty()) fail_input(function, argument, "a regression dataset has no labels");
  } else {
    if (d.labels.size() != n_rows) {
      fail_input(function, argument, fmt::format("labels must hold {} values (one per row), got {}", d.rows,
                                                 d.labels.size()));
    }
    if (!d.targets.empty()) fail_input(function, argument, "a classification dataset has no real-valued targets");
    const auto classes = static_cast<std::int64_t>(d.class_names.size());
    for (std::size_t r = 0; r < d.labels.size(); ++r) {
      if (d.labels[r] < 0 || d.labels[r] >= classes) {
        fail_input(function, argument,
                   fmt::format("labels[{}] must be a class index in [0, {}), got {}", r, classes, d.labels[r]));
      }
    }
  }
}

/// The rows `index` (ascending) of `d`.
Dataset select_rows(const Dataset& d, const std::vector<std::int64_t>& index) {
  Dataset out;
  out.task = d.task;
  out.source = d.source;
  out.rows = static_cast<std::int64_t>(index.size());
  out.feature_names = d.feature_names;
  out.target_names = d.target_names;
  out.class_names = d.class_names;
  const auto p = static_cast<std::size_t>(d.feature_count());
  const std::size_t n = d.target_names.size();
  out.features.reserve(index.size() * p);
  for (const std::int64_t r : index) {
    const auto row = static_cast<std::size_t>(r);
    out.features.insert(out.features.end(), d.features.begin() + static_cast<std::ptrdiff_t>(row * p),
                        d.features.begin() + static_cast<std::ptrdiff_t>((row + 1) * p));
    if (d.task == Task::regression) {
      out.targets.insert(out.targets.end(), d.targets.begin() + static_cast<std::ptrdiff_t>(row * n),
                         d.targets.begin() + static_cast<std::ptrdiff_t>((row + 1) * n));
    } else {
      out.labels.push_back(d.labels[row]);
    }
  }
  return out;
}

/// Uniform integer in [0, bound), bound >= 1, without modulo bias.
std::uint64_t uniform_below(std::uint64_t& state, std::uint64_t bound) {
  const std::uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
  for (;;) {
    const std::uint64_t x = splitmix64(state);
    if (x >= threshold) return x % bound;
  }
}

/// Fisher–Yates from the back, drawing from `state`.
void shuffle(std::vector<std::int64_t>& v, std::uint64_t& state) {
  for (std::size_t i = v.size(); i-- > 1;) {
    const auto j = static_cast<std::size_t>(uniform_below(state, static_cast<std::uint64_t>(i) + 1));
    std::swap(v[i], v[j]);
  }
}

void check_fraction(std::string_view function, double test_fraction) {
  if (!(test_fraction > 0.0 && test_fraction < 1.0)) {
    fail_input(function, "test_fraction", fmt::format("expected a value in (0, 1), got {}", test_fraction));
  }
}

Split split_by_mask(std::string_view function, const Dataset& data, const std::vector<char>& in_test,
                    double test_fraction) {
  std::vector<std::int64_t> train, test;
  for (std::int64_t r = 0; r < data.rows; ++r) (in_test[static_cast<std::size_t>(r)] ? test : train).push_back(r);
  if (train.empty() || test.empty()) {
    fail_input(function, "test_fraction",
               fmt::format("test_fraction {} of {} rows leaves the {} set empty", test_fraction, data.rows,
                           train.empty() ? "train" : "test"));
  }
  return Split{select_rows(data, train), select_rows(data, test)};
}

/// round(fraction * count), half away from zero, for count >= 0.
std::int64_t rounded_share(double fraction, std::int64_t count) {
  return static_cast<std::int64_t>(std::llround(fraction * static_cast<double>(count)));
}

}  // namespace

// ---------------------------------------------------------------------------------------- datasets

Dataset make_regression_dataset(const Table& table, std::span<const std::string> target_columns,
                                std::span<const std::string> feature_columns) {
  constexpr std::string_view fn = "make_regression_dataset";
  check_table(fn, table);
  if (target_columns.empty()) {
    fail_input(fn, "target_columns",
               fmt::format("expected at least one target column; {} has the columns {}", table.source(),
                           list_columns(table.columns())));
  }
  std::vector<std::int64_t> targets;
  for (const std::string& name : target_columns) {
    const std::int64_t c = require_column(fn, "target_columns", table, name, "target");
    if (std::find(targets.begin(), targets.end(), c) != targets.end()) {
      fail_input(fn, "target_columns",
                 fmt::format("{}: the column is named twice", header_where(table, c)));
    }
    targets.push_back(c);
  }
  const std::vector<std::int64_t> features = resolve_features(fn, table, targets, "target", feature_columns);

  Dataset d;
  d.task = Task::regression;
  d.source = table.source();
  d.rows = table.rows();
  const auto p = static_cast<std::int64_t>(features.size());
  const auto n = static_cast<std::int64_t>(targets.size());
  d.features.assign(static_cast<std::size_t>(d.rows * p), 0.0);
  d.targets.assign(static_cast<std::size_t>(d.rows * n), 0.0);
  // Cells are parsed in file order (row by row, left to right), so that the first bad cell of the
  // file is the one reported. slot[c]: where column c goes (-1 unused, < p feature, else target).
  std::vector<std::int64_t> slot(static_cast<std::size_t>(table.cols()), -1);
  for (std::int64_t j = 0; j < p; ++j) slot[static_cast<std::size_t>(features[static_cast<std::size_t>(j)])] = j;
  for (std::int64_t j = 0; j < n; ++j) slot[static_cast<std::size_t>(targets[static_cast<std::size_t>(j)])] = p + j;
  for (std::int64_t r = 0; r < d.rows; ++r) {
    for (std::int64_t c = 0; c < table.cols(); ++c) {
      const std::int64_t j = slot[static_cast<std::size_t>(c)];
      if (j < 0) continue;
      const double value = read_number(fn, table, r, c);
      if (j < p) {
        d.features[static_cast<std::size_t>(r * p + j)] = value;
      } else {
        d.targets[static_cast<std::size_t>(r * n + (j - p))] = value;
      }
    }
  }
  for (const std::int64_t c : features) d.feature_names.push_back(table.columns()[static_cast<std::size_t>(c)]);
  for (const std::int64_t c : targets) d.target_names.push_back(table.columns()[static_cast<std::size_t>(c)]);
  return d;
}

Dataset make_classification_dataset(const Table& table, const std::string& label_column,
                                    std::span<const std::string> feature_columns) {
  constexpr std::string_view fn = "make_classification_dataset";
  check_table(fn, table);
  const std::int64_t label = require_column(fn, "label_column", table, label_column, "label");
  const std::vector<std::int64_t> features = resolve_features(fn, table, {label}, "label", feature_columns);
  const std::string& label_name = table.columns()[static_cast<std::size_t>(label)];

  Dataset d;
  d.task = Task::classification;
  d.source = table.source();
  d.rows = table.rows();
  const auto p = static_cast<std::int64_t>(features.size());
  d.features.assign(static_cast<std::size_t>(d.rows * p), 0.0);
  // File order, as for regression. slot[c]: -1 unused, -2 the label, else the feature index.
  std::vector<std::int64_t> slot(static_cast<std::size_t>(table.cols()), -1);
  for (std::int64_t j = 0; j < p; ++j) slot[static_cast<std::size_t>(features[static_cast<std::size_t>(j)])] = j;
  slot[static_cast<std::size_t>(label)] = -2;
  std::vector<std::string_view> raw(static_cast<std::size_t>(d.rows));
  for (std::int64_t r = 0; r < d.rows; ++r) {
    for (std::int64_t c = 0; c < table.cols(); ++c) {
      const std::int64_t j = slot[static_cast<std::size_t>(c)];
      if (j == -1) continue;
      if (j >= 0) {
        d.features[static_cast<std::size_t>(r * p + j)] = read_number(fn, table, r, c);
        continue;
      }
      const std::string_view value = trim(table.cell(r, c));
      if (value.empty()) {
        fail_input(fn, "table",
                   fmt::format("{}: empty label, expected a class name or an integer",
                               where(table.source(), table.line(r), c, label_name)));
      }
      raw[static_cast<std::size_t>(r)] = value;
    }
  }

  std::vector<std::int64_t> integers(raw.size());
  bool all_integers = true;
  for (std::size_t r = 0; r < raw.size() && all_integers; ++r) all_integers = parse_integer(raw[r], integers[r]);
  d.labels.resize(raw.size());
  if (all_integers) {
    std::map<std::int64_t, std::int32_t> classes;
    for (const std::int64_t v : integers) classes.emplace(v, 0);
    std::int32_t next = 0;
    for (auto& [value, index] : classes) {
      index = next++;
      d.class_names.push_back(std::to_string(value));
    }
    for (std::size_t r = 0; r < raw.size(); ++r) d.labels[r] = classes.at(integers[r]);
  } else {
    std::map<std::string_view, std::int32_t> classes;  // std::string_view compares byte-wise (char_traits<char>)
    for (const std::string_view v : raw) classes.emplace(v, 0);
    std::int32_t next = 0;
    for (auto& [value, index] : classes) {
      index = next++;
      d.class_names.emplace_back(value);
    }
    for (std::size_t r = 0; r < raw.size(); ++r) d.labels[r] = classes.at(raw[r]);
  }
  if (d.class_names.size() < 2) {
    fail_input(fn, "table",
               fmt::format("{}: classification needs at least two classes, but every row has the label {}",
                           where(table.source(), table.line(0), label, label_name), shown(d.class_names[0])));
  }
  for (const std::int64_t c : features) d.feature_names.push_back(table.columns()[static_cast<std::size_t>(c)]);
  return d;
}

// ---------------------------------------------------------------------------------------- standardising

Standardization standardize(Dataset& data) {
  constexpr std::string_view fn = "standardize";
  check_dataset(fn, "data", data);
  if (data.rows < 2) {
    fail_input(fn, "data", fmt::format("standardising needs at least 2 rows (std uses N - 1), got {}", data.rows));
  }
  const auto p = static_cast<std::size_t>(data.feature_count());
  const auto rows = static_cast<std::size_t>(data.rows);
  for (std::size_t i = 0; i < data.features.size(); ++i) {
    if (!std::isfinite(data.features[i])) {
      fail_input(fn, "data",
                 fmt::format("feature {} of row {} is not finite ({})", shown(data.feature_names[i % p]), i / p,
                             data.features[i]));
    }
  }
  Standardization s;
  s.mean.assign(p, 0.0);
  s.scale.assign(p, 1.0);
  for (std::size_t j = 0; j < p; ++j) {
    bool constant = true;
    double sum = 0.0;
    for (std::size_t r = 0; r < rows; ++r) {
      const double x = data.features[r * p + j];
      sum += x;
      constant = constant && x == data.features[j];
    }
    const double mean = sum / static_cast<double>(rows);
    s.mean[j] = constant ? data.features[j] : mean;
    if (constant) continue;
    // sd = m · sqrt(Σ ((x − mean)/m)² / (N − 1)) with m = max |x − mean|, so that tiny or huge
    // values neither underflow nor overflow when squared.
    double m = 0.0;
    for (std::size_t r = 0; r < rows; ++r) m = std::max(m, std::abs(data.features[r * p + j] - mean));
    double squares = 0.0;
    for (std::size_t r = 0; r < rows; ++r) {
      const double d = m > 0.0 ? (data.features[r * p + j] - mean) / m : 0.0;
      squares += d * d;
    }
    const double sd = m * std::sqrt(squares / static_cast<double>(rows - 1));
    if (!std::isfinite(sd) || !std::isfinite(mean)) {
      fail_input(fn, "data",
                 fmt::format("feature {} overflows double when standardised (mean {}, std {})",
                             shown(data.feature_names[j]), mean, sd));
    }
    s.scale[j] = sd > 0.0 ? sd : 1.0;
  }
  apply_standardization(data, s);
  return s;
}

void apply_standardization(Dataset& data, const Standardization& map) {
  constexpr std::string_view fn = "apply_standardization";
  check_dataset(fn, "data", data);
  const auto p = static_cast<std::size_t>(data.feature_count());
  if (map.mean.size() != p || map.scale.size() != p) {
    fail_input(fn, "map",
               fmt::format("expected {} means and scales (one per feature), got {} and {}", p, map.mean.size(),
                           map.scale.size()));
  }
  for (std::size_t j = 0; j < p; ++j) {
    if (!std::isfinite(map.mean[j])) fail_input(fn, "map", fmt::format("mean[{}] must be finite, got {}", j, map.mean[j]));
    if (!(std::isfinite(map.scale[j]) && map.scale[j] > 0.0)) {
      fail_input(fn, "map", fmt::format("scale[{}] must be finite and > 0, got {}", j, map.scale[j]));
    }
  }
  for (std::size_t i = 0; i < data.features.size(); ++i) {
    data.features[i] = (data.features[i] - map.mean[i % p]) / map.scale[i % p];
  }
}

TargetScaling standardize_targets(Dataset& data) {
  constexpr std::string_view fn = "standardize_targets";
  check_dataset(fn, "data", data);
  if (data.task != Task::regression) fail_input(fn, "data", "expected a regression dataset (targets), got a classification");
  if (data.rows < 2) {
    fail_input(fn, "data", fmt::format("standardising needs at least 2 rows (std uses N - 1), got {}", data.rows));
  }
  const std::int64_t rows = data.rows, n = data.target_count();
  const std::vector<double>& y = data.targets;
  // Constant targets, tested exactly: the variance below is not 0 for them when the mean rounds
  // (ten rows of 0.1 give 2e-34), and would then scale by 1e-17.
  bool constant = true;
  for (std::int64_t r = 1; r < rows && constant; ++r) {
    for (std::int64_t d = 0; d < n && constant; ++d) constant = y[r * n + d] == y[d];
  }
  if (constant) fail_input(fn, "data", "the targets are constant (every row has the same values)");
  TargetScaling s;
  s.mean.assign(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t d = 0; d < n; ++d) s.mean[d] += y[r * n + d] / static_cast<double>(rows);
  }
  double var = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t d = 0; d < n; ++d) {
      const double e = y[r * n + d] - s.mean[d];
      var += e * e / static_cast<double>((rows - 1) * n);
    }
  }
  if (!(std::isfinite(var) && var > 0)) {
    fail_input(fn, "data", fmt::format("the targets are constant or not finite (variance {})", var));
  }
  s.scale = std::sqrt(var);
  apply_target_scaling(data, s);
  return s;
}

void apply_target_scaling(Dataset& data, const TargetScaling& scaling) {
  constexpr std::string_view fn = "apply_target_scaling";
  check_dataset(fn, "data", data);
  const std::int64_t n = data.target_count();
  if (data.task != Task::regression || static_cast<std::int64_t>(scaling.mean.size()) != n) {
    fail_input(fn, "scaling", fmt::format("expected {} target means, got {}", n, scaling.mean.size()));
  }
  if (!(std::isfinite(scaling.scale) && scaling.scale > 0)) {
    fail_input(fn, "scaling", fmt::format("expected a finite scale > 0, got {}", scaling.scale));
  }
  for (std::int64_t r = 0; r < data.rows; ++r) {
    for (std::int64_t d = 0; d < n; ++d) {
      data.targets[r * n + d] = (data.targets[r * n + d] - scaling.mean[d]) / scaling.scale;
    }
  }
}

// ---------------------------------------------------------------------------------------- splits

std::vector<std::int64_t> random_permutation(std::int64_t n, std::uint64_t seed) {
  if (n < 0) fail_input("random_permutation", "n", fmt::format("expected n >= 0, got {}", n));
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  std::uint64_t state = seed;
  shuffle(v, state);
  return v;
}

Split stratified_split(const Dataset& data, double test_fraction, std::uint64_t seed) {
  constexpr std::string_view fn = "stratified_split";
  check_fraction(fn, test_fraction);
  check_dataset(fn, "data", data);
  if (data.task != Task::classification) {
    fail_input(fn, "data", "stratified_split needs a classification dataset; use random_split for regression");
  }
  std::vector<std::vector<std::int64_t>> by_class(data.class_names.size());
  for (std::int64_t r = 0; r < data.rows; ++r) by_class[static_cast<std::size_t>(data.labels[static_cast<std::size_t>(r)])].push_back(r);
  std::vector<char> in_test(static_cast<std::size_t>(data.rows), 0);
  std::uint64_t state = seed;
  for (auto& rows : by_class) {
    shuffle(rows, state);
    const std::int64_t take = rounded_share(test_fraction, static_cast<std::int64_t>(rows.size()));
    for (std::int64_t i = 0; i < take; ++i) in_test[static_cast<std::size_t>(rows[static_cast<std::size_t>(i)])] = 1;
  }
  return split_by_mask(fn, data, in_test, test_fraction);
}

ClassificationSplits split_classification(const Dataset& data, double test_fraction, double val_fraction,
                                          std::uint64_t seed) {
  constexpr std::string_view fn = "split_classification";
  check_fraction(fn, test_fraction);
  if (!(val_fraction >= 0.0 && val_fraction < 1.0)) {
    fail_input(fn, "val_fraction", fmt::format("expected 0 or a value in (0, 1), got {}", val_fraction));
  }
  check_dataset(fn, "data", data);
  if (data.task != Task::classification) fail_input(fn, "data", "expected a classification dataset");
  // Two independent seeds for the two splits. What is left to refuse is a part left empty.
  std::uint64_t state = seed;
  const std::uint64_t test_seed = splitmix64(state), val_seed = splitmix64(state);
  const auto split = [&](const Dataset& d, double fraction, std::uint64_t s, std::string_view what) {
    try {
      return stratified_split(d, fraction, s);
    } catch (const Error&) {
      fail_input(fn, what == "test" ? "test_fraction" : "val_fraction",
                 fmt::format("{} ({} rows, {} classes): cannot hold out a {} share of {} of every class: the training "
                             "or {} rows would be none",
                             data.source, d.rows, data.class_names.size(), what, fraction, what));
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
    fail_input(fn, "data", fmt::format("{}: expected at least 2 training rows, got {}", data.source, out.train.rows));
  }
  out.map = standardize(out.train);
  if (out.validation.rows > 0) apply_standardization(out.validation, out.map);
  apply_standardization(out.test, out.map);
  return out;
}

Split random_split(const Dataset& data, double test_fraction, std::uint64_t seed) {
  constexpr std::string_view fn = "random_split";
  check_fraction(fn, test_fraction);
  check_dataset(fn, "data", data);
  const std::vector<std::int64_t> order = random_permutation(data.rows, seed);
  const std::int64_t take = rounded_share(test_fraction, data.rows);
  std::vector<char> in_test(static_cast<std::size_t>(data.rows), 0);
  for (std::int64_t i = 0; i < take; ++i) in_test[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = 1;
  return split_by_mask(fn, data, in_test, test_fraction);
}

}  // namespace d2r
