// libFuzzer target: arbitrary bytes through the CSV reader, the writer and the dataset builders.
//
// Input layout: byte 0 picks the options (bits 0-1: delimiter ',' ';' '\t' '|'; bits 2-7: the
// test fraction of the splits, (k + 1) / 66); the rest is the CSV text. Only d2r::Error may
// escape the library; anything else (another exception, a sanitizer report, a broken invariant
// checked below) is a crash.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "d2r/data.hpp"
#include "d2r/error.hpp"

namespace {

#define FUZZ_CHECK(cond)                                                         \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "fuzz_csv: invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

bool blank(char c) { return c == ' ' || c == '\t'; }

void check_table(const d2r::Table& t) {
  FUZZ_CHECK(t.cols() >= 1);
  FUZZ_CHECK(t.rows() >= 1);
  std::set<std::string> names;
  for (const auto& name : t.columns()) {
    FUZZ_CHECK(!name.empty());
    FUZZ_CHECK(!blank(name.front()) && !blank(name.back()));
    FUZZ_CHECK(names.insert(name).second);
  }
  std::int64_t previous = t.header_line();
  for (std::int64_t r = 0; r < t.rows(); ++r) {
    FUZZ_CHECK(t.line(r) > previous);
    previous = t.line(r);
  }
}

std::vector<std::vector<std::string>> cells(const d2r::Table& t) {
  std::vector<std::vector<std::string>> out(static_cast<std::size_t>(t.rows()));
  for (std::int64_t r = 0; r < t.rows(); ++r) {
    for (std::int64_t c = 0; c < t.cols(); ++c) out[static_cast<std::size_t>(r)].push_back(t.cell(r, c));
  }
  return out;
}

void check_dataset(const d2r::Dataset& d, const d2r::Table& t) {
  FUZZ_CHECK(d.rows == t.rows());
  FUZZ_CHECK(d.feature_count() >= 1);
  FUZZ_CHECK(d.features.size() == static_cast<std::size_t>(d.rows * d.feature_count()));
  for (const double x : d.features) FUZZ_CHECK(std::isfinite(x));
  if (d.task == d2r::Task::regression) {
    FUZZ_CHECK(d.targets.size() == static_cast<std::size_t>(d.rows) * d.target_names.size());
    for (const double y : d.targets) FUZZ_CHECK(std::isfinite(y));
    FUZZ_CHECK(d.labels.empty());
  } else {
    FUZZ_CHECK(d.class_names.size() >= 2);
    FUZZ_CHECK(d.labels.size() == static_cast<std::size_t>(d.rows));
    std::vector<bool> used(d.class_names.size(), false);
    for (const auto l : d.labels) {
      FUZZ_CHECK(l >= 0 && static_cast<std::size_t>(l) < d.class_names.size());
      used[static_cast<std::size_t>(l)] = true;
    }
    for (const bool u : used) FUZZ_CHECK(u);  // every class occurs
    FUZZ_CHECK(std::adjacent_find(d.class_names.begin(), d.class_names.end()) == d.class_names.end());
  }
}

void check_split(const d2r::Split& s, const d2r::Dataset& d) {
  FUZZ_CHECK(s.train.rows >= 1 && s.test.rows >= 1);
  FUZZ_CHECK(s.train.rows + s.test.rows == d.rows);
  FUZZ_CHECK(s.train.features.size() + s.test.features.size() == d.features.size());
  FUZZ_CHECK(s.train.labels.size() + s.test.labels.size() == d.labels.size());
  FUZZ_CHECK(s.train.targets.size() + s.test.targets.size() == d.targets.size());
}

void exercise(d2r::Dataset d, const d2r::Table& t, double fraction, std::uint64_t seed) {
  check_dataset(d, t);
  try {
    const d2r::Split s = d.task == d2r::Task::classification ? d2r::stratified_split(d, fraction, seed)
                                                              : d2r::random_split(d, fraction, seed);
    check_split(s, d);
  } catch (const d2r::Error&) {
  }
  const std::vector<double> before = d.features;
  try {
    const d2r::Standardization map = d2r::standardize(d);
    FUZZ_CHECK(map.mean.size() == static_cast<std::size_t>(d.feature_count()));
    for (const double s : map.scale) FUZZ_CHECK(std::isfinite(s) && s > 0.0);
  } catch (const d2r::Error&) {
    FUZZ_CHECK(d.features == before);  // nothing modified on failure
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static constexpr char delimiters[] = {',', ';', '\t', '|'};
  const d2r::CsvOptions options{.delimiter = delimiters[data[0] & 3u]};
  const double fraction = static_cast<double>((data[0] >> 2) + 1) / 66.0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  d2r::Table table;
  try {
    table = d2r::read_csv_string(text, "fuzz.csv", options);
  } catch (const d2r::Error&) {
    return 0;
  }
  check_table(table);

  // The writer's text reads back to the same table.
  const std::vector<std::vector<std::string>> original = cells(table);
  const d2r::Table again = d2r::read_csv_string(d2r::to_csv_string(table.columns(), original, options), "rt", options);
  FUZZ_CHECK(again.columns() == table.columns());
  FUZZ_CHECK(cells(again) == original);

  const auto& columns = table.columns();
  const std::vector<std::string> last{columns.back()};
  const std::vector<std::string> first_and_last{columns.front(), columns.back()};
  std::vector<std::string> middle(columns.begin() + (columns.size() > 2 ? 1 : 0), columns.end() - 1);
  const std::uint64_t seed = size;
  try {
    exercise(d2r::make_regression_dataset(table, last), table, fraction, seed);
  } catch (const d2r::Error&) {
  }
  try {
    exercise(d2r::make_regression_dataset(table, first_and_last, middle), table, fraction, seed);
  } catch (const d2r::Error&) {
  }
  try {
    exercise(d2r::make_classification_dataset(table, columns.front()), table, fraction, seed);
  } catch (const d2r::Error&) {
  }
  try {
    exercise(d2r::make_classification_dataset(table, columns.back(), middle), table, fraction, seed);
  } catch (const d2r::Error&) {
  }
  return 0;
}
