#pragma once
/// @file data.hpp
/// The data layer: a CSV reader, the datasets the program trains on, feature standardisation,
/// seeded train/test splits, and an atomic CSV writer for result curves. Everything here works
/// in host memory, in double precision.
///
/// @code
///   d2r::Table table = d2r::read_csv("data/wine.csv");
///   std::vector<std::string> targets{"quality"};
///   d2r::Dataset data = d2r::make_regression_dataset(table, targets);      // features: all other columns
///   auto [train, test] = d2r::random_split(data, 0.2, /*seed=*/42);
///   d2r::Standardization s = d2r::standardize(train);                      // statistics of train only
///   d2r::apply_standardization(test, s);
/// @endcode
///
/// CSV dialect (RFC 4180 plus the usual extensions):
///  - the first non-blank record is the header; it names every column; names are trimmed of
///    spaces and tabs and must be non-empty and unique;
///  - the delimiter is ',' unless CsvOptions says otherwise;
///  - a field may be quoted with '"'; inside quotes the delimiter, line breaks and '""' (one
///    literal quote) are allowed; spaces and tabs around a quoted field are ignored; a quote
///    anywhere else in an unquoted field is an error;
///  - records end with LF or CRLF (a bare CR outside quotes is an error); the last record needs
///    no line break;
///  - blank lines (nothing, or only a CR, between two line breaks) are skipped wherever they are
///    (so a one-column file writes an empty cell as `""`);
///  - a UTF-8 byte order mark at the very start is skipped;
///  - every record must have exactly as many fields as the header.
///
/// Errors. Every function here throws d2r::Error and returns nothing on failure (no partially
/// filled result, no argument modified, no partially written file). Malformed input throws
/// ErrorKind::invalid_argument; a file that cannot be opened, read or written throws
/// ErrorKind::io. Messages have the form
///   `d2r::<function>: argument '<name>': <source> line <L>, column <C> '<column name>': <what>`
/// where <source> is the file name (or the name given to read_csv_string), lines are the
/// physical lines of the text and columns the fields of a record, both counted from 1. A record
/// that spans several lines (line breaks inside quotes) is reported at the line where it begins.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace d2r {

// ------------------------------------------------------------------------------------- reading

/// How read_csv splits the text.
struct CsvOptions {
  /// Field separator: any single byte except '"', CR, LF, space and NUL (',' ';' '\t' '|' ...).
  char delimiter = ',';
};

/// A parsed CSV file: column names and the cells of the data records, kept as the strings they
/// were in the file (quotes removed, '""' unescaped, surrounding spaces kept for unquoted
/// fields). Cells are interpreted only when a Dataset is built from the table, so a column that
/// is never used may hold anything.
class Table {
 public:
  Table() = default;
  /// Builds a table from its parts and checks them: at least one column; names non-empty and
  /// unique; `cells` holds lines.size() rows of columns.size() cells, row-major; `lines[r]` is the
  /// source line where row r begins, after `header_line` (>= 1), the line of the header. Throws
  /// d2r::Error (invalid_argument) otherwise.
  Table(std::string source, std::vector<std::string> columns, std::vector<std::string> cells,
        std::vector<std::int64_t> lines, std::int64_t header_line = 1);

  /// Where the table came from (a path or the name given to read_csv_string); used in messages.
  [[nodiscard]] const std::string& source() const noexcept { return source_; }
  /// Column names, in file order.
  [[nodiscard]] const std::vector<std::string>& columns() const noexcept { return columns_; }
  /// Number of data rows (the header is not a row).
  [[nodiscard]] std::int64_t rows() const noexcept { return static_cast<std::int64_t>(lines_.size()); }
  /// Number of columns.
  [[nodiscard]] std::int64_t cols() const noexcept { return static_cast<std::int64_t>(columns_.size()); }
  /// The cell at (row, col), both from 0. Throws d2r::Error (invalid_argument) when out of range.
  [[nodiscard]] const std::string& cell(std::int64_t row, std::int64_t col) const;
  /// Source line (from 1) where data row `row` (from 0) begins. Throws when out of range.
  [[nodiscard]] std::int64_t line(std::int64_t row) const;
  /// Source line (from 1) of the header.
  [[nodiscard]] std::int64_t header_line() const noexcept { return header_line_; }
  /// Index (from 0) of the column called `name`, or nullopt.
  [[nodiscard]] std::optional<std::int64_t> find_column(std::string_view name) const;

 private:
  std::string source_;
  std::vector<std::string> columns_;
  std::vector<std::string> cells_;
  std::vector<std::int64_t> lines_;
  std::int64_t header_line_ = 1;
};

/// Reads a CSV file (the dialect in the file comment). The file must hold a header and at least
/// one data record. Throws d2r::Error: io when the file does not exist, is a directory or cannot
/// be read (argument 'path'); invalid_argument for an empty file, a header without data rows,
/// empty or duplicate column names, a record with too many or too few fields, an unterminated
/// quoted field, text after a closing quote, a quote inside an unquoted field or a bare CR, each
/// naming the file, the line and the column.
[[nodiscard]] Table read_csv(const std::filesystem::path& path, const CsvOptions& options = {});

/// Parses CSV text held in memory, exactly as read_csv parses a file; `source_name` stands for
/// the file name in messages and Table::source(). Errors name the argument 'text'.
[[nodiscard]] Table read_csv_string(std::string_view text, std::string_view source_name,
                                    const CsvOptions& options = {});

// ------------------------------------------------------------------------------------ datasets

/// What a Dataset holds targets for.
enum class Task {
  regression,      ///< real-valued target vectors (`targets`, `target_names`)
  classification,  ///< one class index per row (`labels`, `class_names`)
};

/// Rows of (features, target) pairs, row-major, in host memory. Built by make_regression_dataset
/// or make_classification_dataset; the fields are public so that programs can build or adjust
/// datasets themselves, and every function taking a Dataset checks that they agree:
/// features.size() == rows * feature_names.size(); for regression targets.size() ==
/// rows * target_names.size() and no labels; for classification labels.size() == rows, every
/// label in [0, class_names.size()) and no targets.
struct Dataset {
  Task task = Task::regression;
  std::string source;                      ///< where the data came from (for messages)
  std::int64_t rows = 0;                   ///< number of examples N
  std::vector<std::string> feature_names;  ///< p names
  std::vector<double> features;            ///< N x p, row-major
  std::vector<std::string> target_names;   ///< regression: n names
  std::vector<double> targets;             ///< regression: N x n, row-major
  std::vector<std::int32_t> labels;        ///< classification: N class indices
  std::vector<std::string> class_names;    ///< classification: C names; labels index into it

  /// p, the number of features.
  [[nodiscard]] std::int64_t feature_count() const noexcept {
    return static_cast<std::int64_t>(feature_names.size());
  }
  /// n for regression, C for classification.
  [[nodiscard]] std::int64_t target_count() const noexcept {
    return static_cast<std::int64_t>(task == Task::regression ? target_names.size() : class_names.size());
  }
};

/// A regression dataset from `table`: the columns named in `target_columns` (at least one) are
/// the targets, in that order; the features are `feature_columns` in that order, or, when it is
/// empty, every other column in file order (at least one must remain). Every cell of a used column
/// must be a finite number: optional spaces, an optional sign ('+' or '-'), decimal digits with an
/// optional fraction and exponent ("1e-3", "-0.5", "+2", " 7 "). Throws d2r::Error
/// (invalid_argument) for a column name the table lacks (listing the available columns), a name
/// given twice or both as target and feature, and for the first cell (in file order) that is
/// empty, not a number, NaN, infinite or out of the range of double, naming its line and column.
[[nodiscard]] Dataset make_regression_dataset(const Table& table, std::span<const std::string> target_columns,
                                              std::span<const std::string> feature_columns = {});

/// A classification dataset from `table`: `label_column` holds the class of each row, the features
/// are `feature_columns` or, when empty, every other column (numbers, as for regression). Labels
/// are trimmed of spaces and tabs and must be non-empty. When every label is a decimal integer
/// (optional sign, digits, within int64) the classes are the distinct integer values in numeric
/// order and their names are the canonical decimal forms ("01" and "1" are one class, "1");
/// otherwise the classes are the distinct label strings in byte-wise lexicographic order. At least
/// two classes are required. Throws d2r::Error (invalid_argument) naming line and column as for
/// make_regression_dataset.
[[nodiscard]] Dataset make_classification_dataset(const Table& table, const std::string& label_column,
                                                  std::span<const std::string> feature_columns = {});

// ------------------------------------------------------------------------------- standardising

/// Per-feature affine map x' = (x − mean) / scale.
struct Standardization {
  std::vector<double> mean;   ///< p column means
  std::vector<double> scale;  ///< p column standard deviations (divisor N − 1); 1 for a constant column
};

/// Standardises the features of `data` in place and returns the map it applied: mean and standard
/// deviation (divisor N − 1) of each feature column; a constant column (all values equal) has its
/// mean removed and keeps scale 1. Needs N >= 2. Targets are not touched. Throws d2r::Error
/// (invalid_argument), leaving `data` unchanged, for an inconsistent dataset, N < 2 or a
/// non-finite feature.
Standardization standardize(Dataset& data);

/// Applies a map computed by standardize (typically on the training set) to `data`'s features.
/// Throws d2r::Error (invalid_argument), leaving `data` unchanged, when the map's size differs
/// from the feature count, a mean is not finite or a scale is not finite and positive.
void apply_standardization(Dataset& data, const Standardization& map);

/// One affine map of every regression target, y' = (y − mean_d) / scale, with one scale for all
/// dimensions (so a reward U = u·I keeps its form): the metrics and the reward convert exactly to
/// the original units (NLL per dimension + log scale, RMSE × scale, U / scale²).
struct TargetScaling {
  std::vector<double> mean;  ///< one per target (column means)
  double scale = 1;          ///< the RMS of the targets' standard deviations (divisor N − 1)
};

/// Computes the TargetScaling of a regression dataset's targets (typically the training set) and
/// applies it to them. Needs N >= 2. Throws d2r::Error (invalid_argument, "data"), leaving `data`
/// unchanged, for a classification or inconsistent dataset, N < 2, or targets whose variance is
/// zero or not finite.
TargetScaling standardize_targets(Dataset& data);

/// Applies a TargetScaling (from standardize_targets) to `data`'s targets. Throws d2r::Error
/// (invalid_argument), leaving `data` unchanged, when the sizes differ or the scale is not
/// finite and positive.
void apply_target_scaling(Dataset& data, const TargetScaling& scaling);

// ------------------------------------------------------------------------------------- splits

/// splitmix64 (Steele, Lea and Flood, 2014): advances `state` by 0x9e3779b97f4a7c15 and returns
/// the mixed value. The random stream of every split here, so splits are the same with any
/// compiler and standard library.
[[nodiscard]] constexpr std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// A uniformly random permutation of 0..n−1 (n >= 0) determined by `seed`: Fisher–Yates from the
/// back (for i = n−1 down to 1, swap element i with element j, j uniform in [0, i]) over the
/// splitmix64 stream started at state `seed`; j is drawn without modulo bias (a draw x is
/// rejected while x < 2^64 mod (i+1), else j = x mod (i+1)).
[[nodiscard]] std::vector<std::int64_t> random_permutation(std::int64_t n, std::uint64_t seed);

/// Two disjoint datasets that together hold every row of the one they were split from.
struct Split {
  Dataset train;
  Dataset test;
};

/// Splits a classification dataset keeping each class's share: class c with N_c rows puts
/// round(test_fraction · N_c) of them (half away from zero) in the test set. Which rows: the
/// row indices of class 0, then class 1, ..., are each shuffled by the Fisher–Yates procedure of
/// random_permutation, all drawing in turn from one splitmix64 stream started at `seed`, and the
/// first round(test_fraction · N_c) shuffled rows of each class go to test. Both parts keep the
/// original row order, and the same (data, test_fraction, seed) always gives the same split.
/// Throws d2r::Error (invalid_argument) unless 0 < test_fraction < 1, `data` is a consistent
/// classification dataset, and both parts are non-empty.
[[nodiscard]] Split stratified_split(const Dataset& data, double test_fraction, std::uint64_t seed);

/// The splits of a classification dataset after the paper's tabular protocol (PAPER.md Tables
/// 1–2; `d2r fit --task classification`), the features of all three standardised with the
/// training rows' statistics (`map`, from standardize).
struct ClassificationSplits {
  Dataset train, validation, test;
  Standardization map;
};

/// stratified_split of `test_fraction` of every class to test, then of `val_fraction` of every
/// class of the rest to validation (0: no validation rows), with two seeds drawn in turn from the
/// splitmix64 stream started at `seed`; then standardize(train) and apply_standardization of its
/// map to validation and test. Throws d2r::Error (invalid_argument) naming "data" for an
/// inconsistent or regression dataset or fewer than 2 training rows; "test_fraction" /
/// "val_fraction" for a fraction outside (0, 1) (val_fraction may be 0) or one that leaves a part
/// empty ("<source> (R rows, C classes): cannot hold out a test share of F of every class: the
/// training or test rows would be none").
[[nodiscard]] ClassificationSplits split_classification(const Dataset& data, double test_fraction,
                                                        double val_fraction, std::uint64_t seed);

/// Splits any dataset (typically regression): round(test_fraction · N) rows (half away from zero),
/// the first ones of random_permutation(N, seed), go to test, the rest to train; both keep the
/// original row order. Throws d2r::Error (invalid_argument) unless 0 < test_fraction < 1, `data`
/// is consistent and both parts are non-empty.
[[nodiscard]] Split random_split(const Dataset& data, double test_fraction, std::uint64_t seed);

// ------------------------------------------------------------------------------------- writing

/// CSV text for `header` and `rows` (each row exactly header.size() fields, header non-empty),
/// LF line ends, last line terminated. A field is quoted (with '"' doubled) when it contains the
/// delimiter, a quote, CR or LF, starts or ends with a space or tab, starts with a UTF-8 byte
/// order mark, or is the only and empty field of its record; read_csv_string gives back the same
/// cells (header names must be non-empty, unique and without surrounding blanks for that).
/// Throws d2r::Error (invalid_argument) for an empty header or a row of the wrong length.
[[nodiscard]] std::string to_csv_string(std::span<const std::string> header,
                                        std::span<const std::vector<std::string>> rows,
                                        const CsvOptions& options = {});

/// Numbers as to_csv_string writes them: the shortest decimal form that reads back to the same
/// double ("0.1", "1e-07", "3"); NaN and infinities as "nan", "inf" and "-inf".
[[nodiscard]] std::string format_number(double value);

/// Writes `header` and `rows` to `path` atomically: the text goes to a new temporary file in the
/// same directory (".<name>.tmp-<pid>-<n>"), which is flushed to disk and then renamed over
/// `path`. On any failure the temporary is removed and whatever was at `path` before is left
/// as it was. Throws d2r::Error: invalid_argument for a bad header or row length (before touching
/// the file system), io when the directory does not exist or is not writable, `path` is a
/// directory, or a write fails.
void write_csv(const std::filesystem::path& path, std::span<const std::string> header,
               std::span<const std::vector<std::string>> rows, const CsvOptions& options = {});

/// Writes `text` to `path` atomically, as write_csv does: a new temporary file in the same
/// directory (".<name>.tmp-<pid>-<n>"), flushed to disk, then renamed over `path`; on any failure
/// the temporary is removed and `path` is left as it was. Throws d2r::Error (io, argument "path").
void write_text_atomic(const std::filesystem::path& path, std::string_view text);

/// write_csv for numeric rows (result curves), numbers written by format_number.
void write_csv(const std::filesystem::path& path, std::span<const std::string> header,
               std::span<const std::vector<double>> rows, const CsvOptions& options = {});

}  // namespace d2r
