// The data layer: CSV reading, datasets, standardisation, splits, atomic CSV writing.
// Host code only; it needs nothing from CUDA but the Error type (so that the fuzz target can
// compile it on its own with clang++).
#include "d2r/data.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "d2r/error.hpp"

namespace d2r {
namespace {

// ------------------------------------------------------------------------------------ helpers

[[noreturn]] void fail(ErrorKind kind, std::string_view function, std::string_view argument, const std::string& what) {
  throw Error(kind, std::string(argument), fmt::format("d2r::{}: argument '{}': {}", function, argument, what));
}

[[noreturn]] void fail_input(std::string_view function, std::string_view argument, const std::string& what) {
  fail(ErrorKind::invalid_argument, function, argument, what);
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

/// The index of the first byte of `s` that is not part of valid UTF-8 (overlong forms, surrogates
/// and code points above U+10FFFF included), or npos.
std::size_t invalid_utf8_at(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0, min = 0;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + len > s.size()) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return std::string_view::npos;
}

/// A cell or name as it appears in a message: quoted, control bytes escaped, long values cut.
std::string shown(std::string_view s) {
  constexpr std::size_t max_shown = 40;
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < max_shown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max_shown) out += "...";
  out += "'";
  return out;
}

/// "<source> line <L>, column <C> '<name>'" (the name only when the column has one).
std::string where(std::string_view source, std::int64_t line, std::int64_t column_index,
                  std::string_view column_name) {
  if (column_name.empty()) return fmt::format("{} line {}, column {}", source, line, column_index + 1);
  return fmt::format("{} line {}, column {} {}", source, line, column_index + 1, shown(column_name));
}

std::string list_columns(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ", ";
    out += shown(names[i]);
  }
  return out;
}

// ------------------------------------------------------------------------------------ tokenizer

/// Parses the whole text into header + cells, or throws. Lines count '\n' bytes.
class CsvParser {
 public:
  CsvParser(std::string_view text, std::string_view source, char delimiter, std::string_view function,
            std::string_view argument)
      : text_(text), source_(source), delim_(delimiter), function_(function), argument_(argument) {}

  Table parse() {
    constexpr std::string_view bom = "\xEF\xBB\xBF";
    if (text_.substr(0, bom.size()) == bom) pos_ = bom.size();

    std::vector<std::string> header;
    std::int64_t header_line = 0;
    if (!next_record(header, header_line)) {
      fail_input(function_, argument_,
                 fmt::format("{} line 1: the file is empty, expected a header row naming the columns", source_));
    }
    for (auto& name : header) name = std::string(trim(name));
    std::map<std::string_view, std::size_t> seen;
    for (std::size_t c = 0; c < header.size(); ++c) {
      if (header[c].empty()) {
        fail_input(function_, argument_,
                   fmt::format("{}: the header has an empty column name", where(source_, header_line,
                                                                               static_cast<std::int64_t>(c), "")));
      }
      const auto [it, inserted] = seen.emplace(header[c], c);
      if (!inserted) {
        fail_input(function_, argument_,
                   fmt::format("{}: duplicate column name (also the name of column {})",
                               where(source_, header_line, static_cast<std::int64_t>(c), header[c]), it->second + 1));
      }
    }
    header_ = &header;

    std::vector<std::string> cells;
    std::vector<std::int64_t> lines;
    std::vector<std::string> record;
    std::int64_t line = 0;
    while (next_record(record, line)) {
      if (record.size() != header.size()) {
        const std::size_t got = record.size();
        const std::size_t want = header.size();
        const std::string what =
            got > want
                ? fmt::format("{}: too many fields: the record has {} fields, the header names {} columns",
                              where(source_, line, static_cast<std::int64_t>(want), ""), got, want)
                : fmt::format("{}: missing field: the record has {} fields, the header names {} columns",
                              where(source_, line, static_cast<std::int64_t>(got), header[got]), got, want);
        fail_input(function_, argument_, what);
      }
      for (auto& cell : record) cells.push_back(std::move(cell));
      lines.push_back(line);
    }
    if (lines.empty()) {
      fail_input(function_, argument_,
                 fmt::format("{} line {}: the file has a header but no data rows", source_, header_line));
    }
    return Table(std::string(source_), std::move(header), std::move(cells), std::move(lines), header_line);
  }

 private:
  [[nodiscard]] bool at_end() const { return pos_ >= text_.size(); }
  [[nodiscard]] char peek(std::size_t ahead = 0) const {
    return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0';
  }
  [[nodiscard]] bool at_line_break() const { return peek() == '\n' || (peek() == '\r' && peek(1) == '\n'); }

  /// Column name for messages about field `index` ("" while reading the header, or past its end).
  [[nodiscard]] std::string_view column_name(std::size_t index) const {
    return header_ != nullptr && index < header_->size() ? std::string_view((*header_)[index]) : std::string_view();
  }

  [[noreturn]] void fail_at(std::int64_t line, std::size_t field, const std::string& what) const {
    fail_input(function_, argument_,
               fmt::format("{}: {}", where(source_, line, static_cast<std::int64_t>(field), column_name(field)), what));
  }

  /// Consumes a line break at pos_ (LF or CRLF).
  void skip_line_break() {
    pos_ += peek() == '\r' ? 2 : 1;
    ++line_;
  }

  /// Reads the next non-blank record into `fields`; false at the end of the text.
  bool next_record(std::vector<std::string>& fields, std::int64_t& record_line) {
    while (!at_end() && at_line_break()) skip_line_break();  // blank lines
    if (at_end()) return false;
    fields.clear();
    record_line = line_;
    for (;;) {
      const std::size_t index = fields.size();
      fields.emplace_back();
      std::string& field = fields.back();
      // Blanks before an opening quote belong to no field.
      std::size_t look = pos_;
      while (look < text_.size() && is_blank(text_[look]) && text_[look] != delim_) ++look;
      if (look < text_.size() && text_[look] == '"') {
        pos_ = look + 1;
        const std::int64_t open_line = line_;
        for (;;) {
          if (at_end()) {
            fail_at(open_line, index, "unterminated quoted field: the quote opened here is never closed");
          }
          const char c = text_[pos_];
          if (c == '"') {
            if (peek(1) == '"') {
              field += '"';
              pos_ += 2;
              continue;
            }
            ++pos_;
            break;
          }
          if (c == '\n') ++line_;
          field += c;
          ++pos_;
        }
        while (!at_end() && is_blank(peek()) && peek() != delim_) ++pos_;
        if (!at_end() && peek() != delim_ && !at_line_break()) {
          fail_at(line_, index,
                  fmt::format("unexpected {} after the closing quote (expected the delimiter or the end of the line)",
                              shown(std::string_view(&text_[pos_], 1))));
        }
      } else {
        const std::size_t start = pos_;
        while (!at_end()) {
          const char c = peek();
          if (c == delim_ || c == '\n') break;
          if (c == '\r') {
            if (peek(1) == '\n') break;
            fail_at(line_, index, "bare carriage return (CR) outside quotes; lines must end with LF or CRLF");
          }
          if (c == '"') {
            fail_at(line_, index,
                    "quote inside an unquoted field; quote the whole field and double the inner quotes");
          }
          ++pos_;
        }
        field.assign(text_.substr(start, pos_ - start));
      }
      if (const std::size_t bad = invalid_utf8_at(field); bad != std::string::npos) {
        fail_at(record_line, index,
                fmt::format("invalid UTF-8: byte 0x{:02x} at byte {} of the field (d2r reads text files in UTF-8; "
                            "convert the file, e.g. with iconv -f latin1 -t utf-8)",
                            static_cast<unsigned char>(field[bad]), bad + 1));
      }
      if (at_end()) return true;
      if (peek() == delim_) {
        ++pos_;
        continue;
      }
      skip_line_break();  // at_line_break() holds here
      return true;
    }
  }

  std::string_view text_;
  std::string_view source_;
  char delim_;
  std::string_view function_;
  std::string_view argument_;
  std::size_t pos_ = 0;
  std::int64_t line_ = 1;
  const std::vector<std::string>* header_ = nullptr;
};

void check_options(std::string_view function, const CsvOptions& options) {
  const char d = options.delimiter;
  if (d == '"' || d == '\r' || d == '\n' || d == ' ' || d == '\0') {
    fail_input(function, "options",
               fmt::format("the delimiter must be one byte other than quote, CR, LF, space and NUL, got {}",
                           shown(std::string_view(&d, 1))));
  }
}

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

// ------------------------------------------------------------------------------------ writing

bool needs_quotes(std::string_view field, char delimiter, bool only_field) {
  if (field.empty()) return only_field;
  if (is_blank(field.front()) || is_blank(field.back())) return true;
  if (field.substr(0, 3) == "\xEF\xBB\xBF") return true;
  return field.find_first_of(std::string{delimiter, '"', '\r', '\n'}) != std::string_view::npos;
}

void append_field(std::string& out, std::string_view field, char delimiter, bool only_field) {
  if (!needs_quotes(field, delimiter, only_field)) {
    out += field;
    return;
  }
  out += '"';
  for (const char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

template <class Row>
void check_rows(std::string_view function, std::span<const std::string> header, std::span<const Row> rows) {
  if (header.empty()) fail_input(function, "header", "expected at least one column name, got none");
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].size() != header.size()) {
      fail_input(function, "rows",
                 fmt::format("row {} has {} fields, expected {} (one per header column)", r, rows[r].size(),
                             header.size()));
    }
  }
}

std::string csv_text(std::span<const std::string> header, std::span<const std::vector<std::string>> rows,
                     char delimiter) {
  std::string out;
  const auto append_record = [&](std::span<const std::string> fields) {
    for (std::size_t c = 0; c < fields.size(); ++c) {
      if (c > 0) out += delimiter;
      append_field(out, fields[c], delimiter, fields.size() == 1);
    }
    out += '\n';
  };
  append_record(header);
  for (const auto& row : rows) append_record(row);
  return out;
}

std::atomic<std::uint64_t> temp_counter{0};

[[noreturn]] void fail_io(std::string_view function, const std::string& what) {
  fail(ErrorKind::io, function, "path", what);
}

/// Closes and removes the temporary, then throws with errno's description.
[[noreturn]] void abandon_temporary(std::string_view function, int fd, const std::filesystem::path& temp,
                                    const std::string& what) {
  const int saved = errno;
  if (fd >= 0) ::close(fd);
  ::unlink(temp.c_str());
  fail_io(function, fmt::format("{}: {}", what, std::strerror(saved)));
}

/// Writes `text` to a fresh temporary beside `path`, flushes it to disk, then renames it over `path`.
void write_atomically(std::string_view function, const std::filesystem::path& path, const std::string& text) {
  const std::string name = path.string();
  if (!path.has_filename()) fail_io(function, fmt::format("{} names no file (it ends with a separator)", name));
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail_io(function, fmt::format("cannot write {}: it is a directory", name));
  const std::filesystem::path dir = path.parent_path();
  int fd = -1;
  std::filesystem::path temp;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    temp = dir / fmt::format(".{}.tmp-{}-{}", path.filename().string(), static_cast<long>(::getpid()),
                             temp_counter.fetch_add(1));
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    fail_io(function, fmt::format("cannot create a temporary file beside {}: {}", name, std::strerror(errno)));
  }
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      abandon_temporary(function, fd, temp, fmt::format("cannot write the temporary file for {}", name));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) abandon_temporary(function, fd, temp, fmt::format("cannot flush the temporary file for {}", name));
  if (::close(fd) != 0) abandon_temporary(function, -1, temp, fmt::format("cannot close the temporary file for {}", name));
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    abandon_temporary(function, -1, temp, fmt::format("cannot rename the temporary file onto {}", name));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------- Table

Table::Table(std::string source, std::vector<std::string> columns, std::vector<std::string> cells,
             std::vector<std::int64_t> lines, std::int64_t header_line)
    : source_(std::move(source)),
      columns_(std::move(columns)),
      cells_(std::move(cells)),
      lines_(std::move(lines)),
      header_line_(header_line) {
  constexpr std::string_view fn = "Table";
  if (header_line_ < 1) fail_input(fn, "header_line", fmt::format("expected a line >= 1, got {}", header_line_));
  if (columns_.empty()) fail_input(fn, "columns", "expected at least one column, got none");
  std::set<std::string_view> seen;
  for (std::size_t c = 0; c < columns_.size(); ++c) {
    if (columns_[c].empty()) fail_input(fn, "columns", fmt::format("column {} has an empty name", c + 1));
    if (!seen.insert(columns_[c]).second) {
      fail_input(fn, "columns", fmt::format("column {} {}: duplicate column name", c + 1, shown(columns_[c])));
    }
  }
  if (cells_.size() != lines_.size() * columns_.size()) {
    fail_input(fn, "cells",
               fmt::format("expected lines x columns = {} x {} cells, got {}", lines_.size(), columns_.size(),
                           cells_.size()));
  }
  for (std::size_t r = 0; r < lines_.size(); ++r) {
    if (lines_[r] <= header_line_) fail_input(fn, "lines", fmt::format("lines[{}] must be after the header line {}, got {}", r, header_line_, lines_[r]));
  }
}

const std::string& Table::cell(std::int64_t row, std::int64_t col) const {
  if (row < 0 || row >= rows() || col < 0 || col >= cols()) {
    fail_input("Table::cell", "row",
               fmt::format("({}, {}) is outside the {} x {} table", row, col, rows(), cols()));
  }
  return cells_[static_cast<std::size_t>(row * cols() + col)];
}

std::int64_t Table::line(std::int64_t row) const {
  if (row < 0 || row >= rows()) {
    fail_input("Table::line", "row", fmt::format("expected a row in [0, {}), got {}", rows(), row));
  }
  return lines_[static_cast<std::size_t>(row)];
}

std::optional<std::int64_t> Table::find_column(std::string_view name) const {
  const auto it = std::find(columns_.begin(), columns_.end(), name);
  if (it == columns_.end()) return std::nullopt;
  return static_cast<std::int64_t>(it - columns_.begin());
}

// ---------------------------------------------------------------------------------------- reading

Table read_csv_string(std::string_view text, std::string_view source_name, const CsvOptions& options) {
  check_options("read_csv_string", options);
  return CsvParser(text, source_name, options.delimiter, "read_csv_string", "text").parse();
}

Table read_csv(const std::filesystem::path& path, const CsvOptions& options) {
  constexpr std::string_view fn = "read_csv";
  check_options(fn, options);
  const std::string name = path.string();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    fail(ErrorKind::io, fn, "path",
         fmt::format("cannot open {}: {}", name, ec ? ec.message() : std::string("no such file")));
  }
  if (std::filesystem::is_directory(status)) fail(ErrorKind::io, fn, "path", fmt::format("{} is a directory", name));
  // A pipe would block (or never end) and a device like /dev/zero never ends: regular files only.
  if (!std::filesystem::is_regular_file(status)) {
    fail(ErrorKind::io, fn, "path", fmt::format("{} is not a regular file (a pipe, device or socket)", name));
  }
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) fail(ErrorKind::io, fn, "path", fmt::format("cannot open {}: {}", name, std::strerror(errno)));
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    const std::size_t n = std::fread(buffer, 1, sizeof buffer, file);
    text.append(buffer, n);
    if (n < sizeof buffer) break;
  }
  const bool failed = std::ferror(file) != 0;
  const int saved = errno;
  std::fclose(file);
  if (failed) fail(ErrorKind::io, fn, "path", fmt::format("cannot read {}: {}", name, std::strerror(saved)));
  return CsvParser(text, name, options.delimiter, fn, "path").parse();
}

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

// ---------------------------------------------------------------------------------------- writing

std::string format_number(double value) {
  if (std::isnan(value)) return "nan";
  return fmt::format("{}", value);
}

std::string to_csv_string(std::span<const std::string> header, std::span<const std::vector<std::string>> rows,
                          const CsvOptions& options) {
  constexpr std::string_view fn = "to_csv_string";
  check_options(fn, options);
  check_rows(fn, header, rows);
  return csv_text(header, rows, options.delimiter);
}

void write_csv(const std::filesystem::path& path, std::span<const std::string> header,
               std::span<const std::vector<std::string>> rows, const CsvOptions& options) {
  constexpr std::string_view fn = "write_csv";
  check_options(fn, options);
  check_rows(fn, header, rows);
  write_atomically(fn, path, csv_text(header, rows, options.delimiter));
}

void write_csv(const std::filesystem::path& path, std::span<const std::string> header,
               std::span<const std::vector<double>> rows, const CsvOptions& options) {
  constexpr std::string_view fn = "write_csv";
  check_options(fn, options);
  check_rows(fn, header, rows);
  std::vector<std::vector<std::string>> text(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    text[r].reserve(rows[r].size());
    for (const double v : rows[r]) text[r].push_back(format_number(v));
  }
  write_atomically(fn, path, csv_text(header, text, options.delimiter));
}

}  // namespace d2r
