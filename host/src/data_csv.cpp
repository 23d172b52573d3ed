// The data layer's CSV text (d2r/data.hpp): the tokenizer, Table, read_csv, and CSV writing
// (atomic files). Host code only; it needs nothing from CUDA but the Error type (so that the fuzz
// target can compile it on its own with clang++).
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
void write_atomically(std::string_view function, const std::filesystem::path& path, std::string_view text) {
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

void write_text_atomic(const std::filesystem::path& path, std::string_view text) {
  write_atomically("write_text_atomic", path, text);
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
