// The data layer: CSV reading (dialect and every error, each naming line and column), datasets,
// standardisation, seeded splits and atomic CSV writing.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "d2r/data.hpp"
#include "d2r/error.hpp"

namespace fs = std::filesystem;

namespace {

/// Runs `f`, which must throw d2r::Error of `kind` whose message contains every one of `parts`.
void expect_error(const std::function<void()>& f, d2r::ErrorKind kind, std::initializer_list<std::string> parts,
                  const std::string& argument = "") {
  try {
    f();
  } catch (const d2r::Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
    for (const auto& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "message lacks \"" << part << "\": " << e.what();
    }
    if (!argument.empty()) {
      EXPECT_EQ(e.argument(), argument) << e.what();
    }
    return;
  }
  ADD_FAILURE() << "expected a d2r::Error, none was thrown";
}

d2r::Table parse(const std::string& text, const d2r::CsvOptions& options = {}) {
  return d2r::read_csv_string(text, "t.csv", options);
}

void expect_parse_error(const std::string& text, std::initializer_list<std::string> parts) {
  expect_error([&] { (void)parse(text); }, d2r::ErrorKind::invalid_argument, parts, "text");
}

std::vector<std::string> names(std::initializer_list<const char*> list) { return {list.begin(), list.end()}; }

/// All cells of a table, row by row.
std::vector<std::vector<std::string>> cells(const d2r::Table& t) {
  std::vector<std::vector<std::string>> out(static_cast<std::size_t>(t.rows()));
  for (std::int64_t r = 0; r < t.rows(); ++r) {
    for (std::int64_t c = 0; c < t.cols(); ++c) out[static_cast<std::size_t>(r)].push_back(t.cell(r, c));
  }
  return out;
}

/// A fresh empty directory under the system temporary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "d2r_data_test_XXXXXX").string();
    const char* made = ::mkdtemp(pattern.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }
  /// Names of the entries in the directory, sorted.
  [[nodiscard]] std::vector<std::string> entries() const { return entries_of(path_); }
  static std::vector<std::string> entries_of(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

// =========================================================================================== dialect

TEST(CsvRead, HeaderCellsAndLines) {
  const d2r::Table t = parse("a,b,c\n1,2,3\n4,5,6\n");
  EXPECT_EQ(t.source(), "t.csv");
  EXPECT_EQ(t.columns(), names({"a", "b", "c"}));
  ASSERT_EQ(t.rows(), 2);
  ASSERT_EQ(t.cols(), 3);
  EXPECT_EQ(cells(t), (std::vector<std::vector<std::string>>{{"1", "2", "3"}, {"4", "5", "6"}}));
  EXPECT_EQ(t.header_line(), 1);
  EXPECT_EQ(t.line(0), 2);
  EXPECT_EQ(t.line(1), 3);
  EXPECT_EQ(t.find_column("b"), 1);
  EXPECT_FALSE(t.find_column("z").has_value());
  expect_error([&] { (void)t.cell(2, 0); }, d2r::ErrorKind::invalid_argument, {"outside the 2 x 3 table"});
  expect_error([&] { (void)t.cell(0, -1); }, d2r::ErrorKind::invalid_argument, {"outside"});
}

TEST(CsvRead, Quoting) {
  const d2r::Table t = parse(
      "name,\"note, with comma\",v\n"
      "\"x,y\",\"say \"\"hi\"\"\",1\n"
      "  \"padded\"  ,\"two\nlines\",2\n"
      "\"\",plain text ,3\n");
  EXPECT_EQ(t.columns(), names({"name", "note, with comma", "v"}));
  EXPECT_EQ(cells(t), (std::vector<std::vector<std::string>>{
                          {"x,y", "say \"hi\"", "1"}, {"padded", "two\nlines", "2"}, {"", "plain text ", "3"}}));
  EXPECT_EQ(t.line(0), 2);
  EXPECT_EQ(t.line(1), 3);  // the record spans lines 3-4
  EXPECT_EQ(t.line(2), 5);
}

TEST(CsvRead, CrlfLfTrailingNewlineAndBlankLinesGiveTheSameTable) {
  const auto reference = cells(parse("a,b\n1,2\n3,4\n"));
  for (const std::string text : {"a,b\r\n1,2\r\n3,4\r\n", "a,b\n1,2\n3,4", "a,b\r\n1,2\r\n3,4", "a,b\n1,2\n3,4\n\n\n",
                                 "a,b\r\n1,2\r\n3,4\r\n\r\n\r\n", "\n\na,b\n1,2\n\n3,4\n"}) {
    const d2r::Table t = parse(text);
    EXPECT_EQ(t.columns(), names({"a", "b"})) << text;
    EXPECT_EQ(cells(t), reference) << text;
  }
  // Blank lines shift line numbers but are not rows.
  const d2r::Table t = parse("\n\na,b\n1,2\n\n3,4\n");
  EXPECT_EQ(t.header_line(), 3);
  EXPECT_EQ(t.line(0), 4);
  EXPECT_EQ(t.line(1), 6);
  // CR inside quotes is kept; CRLF inside quotes too.
  const d2r::Table q = parse("a\r\n\"x\r\ny\"\r\n");
  EXPECT_EQ(q.cell(0, 0), "x\r\ny");
}

TEST(CsvRead, ByteOrderMarkIsSkipped) {
  const d2r::Table t = parse("\xEF\xBB\xBF" "a,b\n1,2\n");
  EXPECT_EQ(t.columns(), names({"a", "b"}));
  EXPECT_TRUE(t.find_column("a").has_value());
  // Only at the very start: elsewhere it is data.
  const d2r::Table u = parse("a,b\n\xEF\xBB\xBFx,2\n");
  EXPECT_EQ(u.cell(0, 0), "\xEF\xBB\xBFx");
}

TEST(CsvRead, HeaderNamesAreTrimmed) {
  const d2r::Table t = parse(" a ,\tb\n1,2\n");
  EXPECT_EQ(t.columns(), names({"a", "b"}));
}

TEST(CsvRead, OtherDelimiters) {
  const d2r::Table semi = parse("a;b\n\"1;5\";2\n", {.delimiter = ';'});
  EXPECT_EQ(cells(semi), (std::vector<std::vector<std::string>>{{"1;5", "2"}}));
  const d2r::Table tab = parse("a\tb\n1,5\t2\n", {.delimiter = '\t'});
  EXPECT_EQ(cells(tab), (std::vector<std::vector<std::string>>{{"1,5", "2"}}));
  expect_error([] { (void)parse("a\n1\n", {.delimiter = '"'}); }, d2r::ErrorKind::invalid_argument,
               {"delimiter"}, "options");
  expect_error([] { (void)parse("a\n1\n", {.delimiter = '\n'}); }, d2r::ErrorKind::invalid_argument,
               {"delimiter"}, "options");
}

TEST(CsvRead, FromFile) {
  TempDir dir;
  write_file(dir.path() / "d.csv", "x,y\r\n1,2\r\n");
  const d2r::Table t = d2r::read_csv(dir.path() / "d.csv");
  EXPECT_EQ(t.source(), (dir.path() / "d.csv").string());
  EXPECT_EQ(cells(t), (std::vector<std::vector<std::string>>{{"1", "2"}}));
  // Errors from a file name the file.
  write_file(dir.path() / "bad.csv", "x,y\n1,2\n3\n");
  expect_error([&] { (void)d2r::read_csv(dir.path() / "bad.csv"); }, d2r::ErrorKind::invalid_argument,
               {"bad.csv line 3, column 2 'y'", "missing field", "d2r::read_csv"}, "path");
}

TEST(CsvRead, NonRegularFilesAreRefusedWithoutReading) {
  TempDir dir;
  const auto fifo = dir.path() / "fifo.csv";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // A FIFO with no writer would block the open forever; /dev/zero would never end.
  expect_error([&] { (void)d2r::read_csv(fifo); }, d2r::ErrorKind::io, {"fifo.csv is not a regular file"}, "path");
  expect_error([&] { (void)d2r::read_csv("/dev/zero"); }, d2r::ErrorKind::io, {"/dev/zero is not a regular file"},
               "path");
}

// ============================================================================================ errors

TEST(CsvErrors, InvalidUtf8IsNamedByLineAndColumn) {
  expect_parse_error("x,y\xff\n1,2\n", {"t.csv line 1, column 2", "invalid UTF-8: byte 0xff at byte 2"});
  expect_parse_error("x,label\n1,a\n2,caf\xe9\n", {"t.csv line 3, column 2 'label'", "byte 0xe9 at byte 4"});
  expect_parse_error("x\n\xc0\xaf\n", {"line 2, column 1", "byte 0xc0"});            // overlong '/'
  expect_parse_error("x\n\xed\xa0\x80\n", {"line 2, column 1", "byte 0xed"});        // a surrogate
  expect_parse_error("x\n\"a\nb\xfe\"\n", {"line 2, column 1", "byte 0xfe at byte 4"});  // quoted, two lines
  // Valid multi-byte text is kept as it is.
  const d2r::Table t = parse("caf\xc3\xa9,\xe2\x82\xac,\xf0\x9f\x98\x80\n1,2,3\n");
  EXPECT_EQ(t.columns(), names({"caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}));
}

TEST(CsvErrors, TooManyFields) {
  expect_parse_error("a,b\n1,2\n3,4,5\n", {"t.csv line 3, column 3", "too many fields", "3 fields", "2 columns"});
}

TEST(CsvErrors, TooFewFields) {
  expect_parse_error("a,b,c\n1,2,3\n\n4,5\n", {"t.csv line 4, column 3 'c'", "missing field", "2 fields"});
}

TEST(CsvErrors, UnterminatedQuote) {
  expect_parse_error("a,b\n1,2\n3,\"open\n4,5\n", {"t.csv line 3, column 2 'b'", "unterminated quoted field"});
  expect_parse_error("\"a,b\n1,2\n", {"t.csv line 1, column 1", "unterminated quoted field"});
}

TEST(CsvErrors, TextAfterClosingQuote) {
  expect_parse_error("a,b\n1,\"2\"x\n", {"t.csv line 2, column 2 'b'", "after the closing quote"});
}

TEST(CsvErrors, QuoteInsideUnquotedField) {
  expect_parse_error("a,b\n1,2\"\n", {"t.csv line 2, column 2 'b'", "quote inside an unquoted field"});
}

TEST(CsvErrors, BareCarriageReturn) {
  expect_parse_error("a,b\r1,2\n", {"t.csv line 1, column 2", "bare carriage return"});
}

TEST(CsvErrors, DuplicateColumnNames) {
  expect_parse_error("a,b,a\n1,2,3\n", {"t.csv line 1, column 3 'a'", "duplicate column name", "column 1"});
  expect_parse_error("a, b ,b\n1,2,3\n", {"t.csv line 1, column 3 'b'", "duplicate column name", "column 2"});
}

TEST(CsvErrors, EmptyColumnName) {
  expect_parse_error("a,,c\n1,2,3\n", {"t.csv line 1, column 2", "empty column name"});
}

TEST(CsvErrors, EmptyFile) {
  for (const std::string text : {"", "\n\n", "\r\n", "\xEF\xBB\xBF"}) {
    expect_parse_error(text, {"t.csv line 1", "empty"});
  }
}

TEST(CsvErrors, HeaderOnly) {
  for (const std::string text : {"a,b", "a,b\n", "a,b\r\n\r\n\n"}) {
    expect_parse_error(text, {"t.csv line 1", "no data rows"});
  }
}

TEST(CsvErrors, FileNotFoundOrDirectory) {
  TempDir dir;
  expect_error([&] { (void)d2r::read_csv(dir.path() / "missing.csv"); }, d2r::ErrorKind::io,
               {"missing.csv", "d2r::read_csv"}, "path");
  expect_error([&] { (void)d2r::read_csv(dir.path()); }, d2r::ErrorKind::io, {"is a directory"}, "path");
}

// ========================================================================================== numbers

TEST(Numbers, AcceptedForms) {
  const d2r::Table t = parse("x,y\n1e-3,-0.5\n+2, 7 \n\" 3.25\",.5\n1E+2,-0\n1e-310,5.\n");
  const d2r::Dataset d = d2r::make_regression_dataset(t, names({"y"}));
  EXPECT_EQ(d.features, (std::vector<double>{1e-3, 2.0, 3.25, 100.0, 1e-310}));
  EXPECT_EQ(d.targets, (std::vector<double>{-0.5, 7.0, 0.5, -0.0, 5.0}));
}

TEST(Numbers, RejectedCellsNameLineAndColumn) {
  struct Case {
    std::string cell;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"", "empty cell"},
      {"   ", "empty cell"},
      {"nan", "non-finite value 'nan'"},
      {"NaN", "non-finite"},
      {"inf", "non-finite value 'inf'"},
      {"-inf", "non-finite"},
      {"+infinity", "non-finite"},
      {"abc", "expected a finite number, got 'abc'"},
      {"1e999", "out of the range of double"},
      {"-1e999", "out of the range of double"},
      {"+-1", "got '+-1'"},
      {"1 2", "got '1 2'"},
      {"0x10", "got '0x10'"},
      {"1,5", "got '1,5'"},
      {"1e", "got '1e'"},
      {"+", "got '+'"},
  };
  for (const auto& c : cases) {
    // The bad cell is in line 4 (row 3), column 2 'y'; rows before it are fine.
    const std::string text = "x,y,z\n1,2,3\n4,5,6\n7,\"" + c.cell + "\",9\n";
    const d2r::Table t = parse(text);
    expect_error([&] { (void)d2r::make_regression_dataset(t, names({"y"})); }, d2r::ErrorKind::invalid_argument,
                 {"t.csv line 4, column 2 'y'", c.expect, "d2r::make_regression_dataset"}, "table");
    expect_error([&] { (void)d2r::make_regression_dataset(t, names({"x"})); }, d2r::ErrorKind::invalid_argument,
                 {"t.csv line 4, column 2 'y'", c.expect}, "table");
    expect_error([&] { (void)d2r::make_classification_dataset(t, "z"); }, d2r::ErrorKind::invalid_argument,
                 {"t.csv line 4, column 2 'y'", c.expect, "d2r::make_classification_dataset"}, "table");
    // An unused column may hold anything.
    const d2r::Dataset d = d2r::make_regression_dataset(t, names({"z"}), names({"x"}));
    EXPECT_EQ(d.features, (std::vector<double>{1, 4, 7}));
  }
}

TEST(Numbers, FirstBadCellInFileOrderIsReported) {
  const d2r::Table t = parse("x,y\n1,2\n3,bad\nworse,4\n");
  expect_error([&] { (void)d2r::make_regression_dataset(t, names({"x"})); }, d2r::ErrorKind::invalid_argument,
               {"t.csv line 3, column 2 'y'", "'bad'"});
}

// ======================================================================================= regression

TEST(Regression, DefaultFeaturesAreAllOtherColumnsInFileOrder) {
  const d2r::Table t = parse("a,y1,b,y2,c\n1,10,2,20,3\n4,40,5,50,6\n");
  const std::vector<std::string> targets = {"y2", "y1"};
  const d2r::Dataset d = d2r::make_regression_dataset(t, targets);
  EXPECT_EQ(d.task, d2r::Task::regression);
  EXPECT_EQ(d.rows, 2);
  EXPECT_EQ(d.feature_names, names({"a", "b", "c"}));
  EXPECT_EQ(d.target_names, names({"y2", "y1"}));
  EXPECT_EQ(d.features, (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(d.targets, (std::vector<double>{20, 10, 50, 40}));
  EXPECT_TRUE(d.labels.empty());
  EXPECT_EQ(d.feature_count(), 3);
  EXPECT_EQ(d.target_count(), 2);
  EXPECT_EQ(d.source, "t.csv");
}

TEST(Regression, ExplicitFeatures) {
  const d2r::Table t = parse("a,y,b,c\n1,10,2,x\n4,40,5,y\n");
  const d2r::Dataset d = d2r::make_regression_dataset(t, names({"y"}), names({"b", "a"}));
  EXPECT_EQ(d.feature_names, names({"b", "a"}));
  EXPECT_EQ(d.features, (std::vector<double>{2, 1, 5, 4}));
  EXPECT_EQ(d.targets, (std::vector<double>{10, 40}));
}

TEST(Regression, ColumnErrors) {
  const d2r::Table t = parse("a,b,y\n1,2,3\n");
  expect_error([&] { (void)d2r::make_regression_dataset(t, names({"target"})); }, d2r::ErrorKind::invalid_argument,
               {"t.csv line 1 (header)", "no target column named 'target'", "available columns: 'a', 'b', 'y'"},
               "target_columns");
  expect_error([&] { (void)d2r::make_regression_dataset(t, names({"y"}), names({"a", "zz"})); },
               d2r::ErrorKind::invalid_argument, {"no feature column named 'zz'", "'a', 'b', 'y'"},
               "feature_columns");
  expect_error([&] { (void)d2r::make_regression_dataset(t, names({"y", "y"})); }, d2r::ErrorKind::invalid_argument,
               {"t.csv line 1, column 3 'y'", "named twice"}, "target_columns");
  expect_error([&] { (void)d2r::make_regression_dataset(t, names({"y"}), names({"a", "a"})); },
               d2r::ErrorKind::invalid_argument, {"t.csv line 1, column 1 'a'", "named twice"}, "feature_columns");
  expect_error([&] { (void)d2r::make_regression_dataset(t, names({"y"}), names({"y"})); },
               d2r::ErrorKind::invalid_argument, {"t.csv line 1, column 3 'y'", "both as a target and as a feature"},
               "feature_columns");
  expect_error([&] { (void)d2r::make_regression_dataset(t, {}); }, d2r::ErrorKind::invalid_argument,
               {"at least one target column", "'a', 'b', 'y'"}, "target_columns");
  expect_error([&] { (void)d2r::make_regression_dataset(t, names({"a", "b", "y"})); },
               d2r::ErrorKind::invalid_argument, {"t.csv line 1 (header)", "no column is left for the features"},
               "feature_columns");
  // A table built by hand without rows.
  const d2r::Table empty("hand", names({"a", "y"}), {}, {});
  expect_error([&] { (void)d2r::make_regression_dataset(empty, names({"y"})); }, d2r::ErrorKind::invalid_argument,
               {"hand line 1", "no data rows"}, "table");
}

TEST(TableConstructor, ChecksItsParts) {
  expect_error([] { d2r::Table("s", {}, {}, {}); }, d2r::ErrorKind::invalid_argument, {"at least one column"});
  expect_error([] { d2r::Table("s", names({"a", "a"}), {}, {}); }, d2r::ErrorKind::invalid_argument, {"duplicate"});
  expect_error([] { d2r::Table("s", names({"a", ""}), {}, {}); }, d2r::ErrorKind::invalid_argument, {"empty name"});
  expect_error([] { d2r::Table("s", names({"a", "b"}), names({"1"}), {2}); }, d2r::ErrorKind::invalid_argument,
               {"1 x 2 cells, got 1"});
  expect_error([] { d2r::Table("s", names({"a"}), names({"1"}), {1}); }, d2r::ErrorKind::invalid_argument,
               {"after the header line"});
}

// =================================================================================== classification

TEST(Classification, StringLabelsInLexicographicOrder) {
  const d2r::Table t = parse("x,label\n1,setosa\n2,virginica\n3, versicolor \n4,setosa\n5,Zeta\n");
  const d2r::Dataset d = d2r::make_classification_dataset(t, "label");
  EXPECT_EQ(d.task, d2r::Task::classification);
  EXPECT_EQ(d.class_names, names({"Zeta", "setosa", "versicolor", "virginica"}));  // byte order: 'Z' < 's'
  EXPECT_EQ(d.labels, (std::vector<std::int32_t>{1, 3, 2, 1, 0}));
  EXPECT_EQ(d.feature_names, names({"x"}));
  EXPECT_EQ(d.features, (std::vector<double>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(d.targets.empty());
  EXPECT_EQ(d.target_count(), 4);
}

TEST(Classification, IntegerLabelsInNumericOrder) {
  // Lexicographic order would be "-1" < "10" < "2"; numeric order is -1 < 2 < 10.
  const d2r::Table t = parse("label,x\n10,1\n2,2\n-1,3\n+2,4\n02,5\n");
  const d2r::Dataset d = d2r::make_classification_dataset(t, "label");
  EXPECT_EQ(d.class_names, names({"-1", "2", "10"}));
  EXPECT_EQ(d.labels, (std::vector<std::int32_t>{2, 1, 0, 1, 1}));
}

TEST(Classification, MixedLabelsAreStrings) {
  const d2r::Table t = parse("x,label\n1,10\n2,2\n3,b\n4,1.0\n");
  const d2r::Dataset d = d2r::make_classification_dataset(t, "label");
  EXPECT_EQ(d.class_names, names({"1.0", "10", "2", "b"}));
  EXPECT_EQ(d.labels, (std::vector<std::int32_t>{1, 2, 3, 0}));
}

TEST(Classification, Errors) {
  const d2r::Table t = parse("x,label,w\n1,a,0\n2,,0\n");
  expect_error([&] { (void)d2r::make_classification_dataset(t, "label"); }, d2r::ErrorKind::invalid_argument,
               {"t.csv line 3, column 2 'label'", "empty label"}, "table");
  expect_error([&] { (void)d2r::make_classification_dataset(t, "class"); }, d2r::ErrorKind::invalid_argument,
               {"t.csv line 1 (header)", "no label column named 'class'", "available columns: 'x', 'label', 'w'"},
               "label_column");
  expect_error([&] { (void)d2r::make_classification_dataset(t, "label", names({"x", "label"})); },
               d2r::ErrorKind::invalid_argument, {"column 2 'label'", "both as a label and as a feature"},
               "feature_columns");
  const d2r::Table one = parse("x,label\n1,a\n2,a\n");
  expect_error([&] { (void)d2r::make_classification_dataset(one, "label"); }, d2r::ErrorKind::invalid_argument,
               {"t.csv line 2, column 2 'label'", "at least two classes", "'a'"}, "table");
  const d2r::Table only_label = parse("label\na\nb\n");
  expect_error([&] { (void)d2r::make_classification_dataset(only_label, "label"); },
               d2r::ErrorKind::invalid_argument, {"no column is left for the features"}, "feature_columns");
}

// ================================================================================== standardisation

TEST(Standardize, ValuesAgainstHandComputation) {
  // Column a: 1, 2, 3, 6 -> mean 3, squares 4+1+0+9 = 14, std = sqrt(14/3).
  // Column b: 5, 5, 5, 5 -> constant: mean 5 removed, scale 1.
  // Column c: -2, 0, 0, 2 -> mean 0, squares 8, std = sqrt(8/3).
  const d2r::Table t = parse("a,b,c,y\n1,5,-2,0\n2,5,0,1\n3,5,0,2\n6,5,2,3\n");
  d2r::Dataset d = d2r::make_regression_dataset(t, names({"y"}));
  const std::vector<double> targets_before = d.targets;
  const d2r::Standardization s = d2r::standardize(d);
  const double sa = std::sqrt(14.0 / 3.0);
  const double sc = std::sqrt(8.0 / 3.0);
  ASSERT_EQ(s.mean.size(), 3u);
  EXPECT_DOUBLE_EQ(s.mean[0], 3.0);
  EXPECT_DOUBLE_EQ(s.mean[1], 5.0);
  EXPECT_DOUBLE_EQ(s.mean[2], 0.0);
  EXPECT_DOUBLE_EQ(s.scale[0], sa);
  EXPECT_DOUBLE_EQ(s.scale[1], 1.0);
  EXPECT_DOUBLE_EQ(s.scale[2], sc);
  const std::vector<double> expected = {-2 / sa, 0, -2 / sc, -1 / sa, 0, 0, 0, 0, 0, 3 / sa, 0, 2 / sc};
  ASSERT_EQ(d.features.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(d.features[i], expected[i], 1e-15) << i;
  EXPECT_EQ(d.targets, targets_before);
  // The standardised non-constant columns have mean 0 and std 1.
  for (const std::size_t j : {std::size_t{0}, std::size_t{2}}) {
    double m = 0, v = 0;
    for (std::size_t r = 0; r < 4; ++r) m += d.features[r * 3 + j] / 4;
    for (std::size_t r = 0; r < 4; ++r) v += (d.features[r * 3 + j] - m) * (d.features[r * 3 + j] - m) / 3;
    EXPECT_NEAR(m, 0.0, 1e-15);
    EXPECT_NEAR(v, 1.0, 1e-14);
  }

  // The same map applied to other data.
  d2r::Dataset other = d2r::make_regression_dataset(parse("a,b,c,y\n3,6,1,0\n"), names({"y"}));
  d2r::apply_standardization(other, s);
  EXPECT_NEAR(other.features[0], 0.0, 1e-15);
  EXPECT_NEAR(other.features[1], 1.0, 1e-15);
  EXPECT_NEAR(other.features[2], 1 / sc, 1e-15);
}

TEST(Standardize, TinyAndHugeColumns) {
  // Squaring the deviations directly would underflow (1e-200²) or overflow (1e200²).
  const d2r::Table t = parse("tiny,huge,y\n1e-200,1e200,0\n2e-200,3e200,0\n3e-200,5e200,0\n");
  d2r::Dataset d = d2r::make_regression_dataset(t, names({"y"}));
  const d2r::Standardization s = d2r::standardize(d);
  EXPECT_NEAR(s.mean[0] / 2e-200, 1.0, 1e-15);
  EXPECT_NEAR(s.scale[0] / 1e-200, 1.0, 1e-15);  // deviations -1, 0, 1 (x 1e-200): std 1e-200
  EXPECT_NEAR(s.mean[1] / 3e200, 1.0, 1e-15);
  EXPECT_NEAR(s.scale[1] / 2e200, 1.0, 1e-15);
  const std::vector<double> expected = {-1, -1, 0, 0, 1, 1};
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(d.features[i], expected[i], 1e-14) << i;
}

TEST(Standardize, ErrorsLeaveTheDatasetUnchanged) {
  d2r::Dataset one = d2r::make_regression_dataset(parse("a,y\n1,2\n"), names({"y"}));
  const std::vector<double> before = one.features;
  expect_error([&] { (void)d2r::standardize(one); }, d2r::ErrorKind::invalid_argument, {"at least 2 rows"}, "data");
  EXPECT_EQ(one.features, before);

  d2r::Dataset d = d2r::make_regression_dataset(parse("a,b,y\n1,2,0\n3,4,0\n"), names({"y"}));
  const std::vector<double> features = d.features;
  d2r::Standardization wrong{{0.0}, {1.0}};
  expect_error([&] { d2r::apply_standardization(d, wrong); }, d2r::ErrorKind::invalid_argument,
               {"expected 2 means and scales"}, "map");
  d2r::Standardization zero{{0.0, 0.0}, {1.0, 0.0}};
  expect_error([&] { d2r::apply_standardization(d, zero); }, d2r::ErrorKind::invalid_argument,
               {"scale[1] must be finite and > 0"}, "map");
  d2r::Standardization nan_mean{{std::nan(""), 0.0}, {1.0, 1.0}};
  expect_error([&] { d2r::apply_standardization(d, nan_mean); }, d2r::ErrorKind::invalid_argument,
               {"mean[0] must be finite"}, "map");
  EXPECT_EQ(d.features, features);

  d2r::Dataset bad = d;
  bad.features[3] = INFINITY;
  const std::vector<double> bad_before = bad.features;
  expect_error([&] { (void)d2r::standardize(bad); }, d2r::ErrorKind::invalid_argument, {"'b'", "not finite"}, "data");
  EXPECT_EQ(bad.features, bad_before);

  d2r::Dataset inconsistent = d;
  inconsistent.features.pop_back();
  expect_error([&] { (void)d2r::standardize(inconsistent); }, d2r::ErrorKind::invalid_argument,
               {"rows x feature_names = 2 x 2"}, "data");
}

// ============================================================================================ splits

TEST(Splits, SplitMix64KnownAnswers) {
  // Reference outputs of splitmix64 seeded with 1234567 (as in the xoshiro authors' test vectors).
  std::uint64_t state = 1234567;
  EXPECT_EQ(d2r::splitmix64(state), 6457827717110365317ULL);
  EXPECT_EQ(d2r::splitmix64(state), 3203168211198807973ULL);
  EXPECT_EQ(d2r::splitmix64(state), 9817491932198370423ULL);
  EXPECT_EQ(d2r::splitmix64(state), 4593380528125082431ULL);
  EXPECT_EQ(d2r::splitmix64(state), 16408922859458223821ULL);
}

TEST(Splits, PermutationFollowsTheDocumentedFisherYates) {
  // Recompute the documented procedure independently.
  const std::int64_t n = 17;
  for (const std::uint64_t seed : {0ULL, 1ULL, 42ULL, 0xdeadbeefULL}) {
    std::vector<std::int64_t> expected(n);
    std::iota(expected.begin(), expected.end(), 0);
    std::uint64_t state = seed;
    for (std::int64_t i = n - 1; i >= 1; --i) {
      const std::uint64_t bound = static_cast<std::uint64_t>(i) + 1;
      std::uint64_t x = d2r::splitmix64(state);
      while (x < (0 - bound) % bound) x = d2r::splitmix64(state);
      std::swap(expected[static_cast<std::size_t>(i)], expected[static_cast<std::size_t>(x % bound)]);
    }
    EXPECT_EQ(d2r::random_permutation(n, seed), expected) << seed;
  }
  EXPECT_TRUE(d2r::random_permutation(0, 3).empty());
  EXPECT_EQ(d2r::random_permutation(1, 3), std::vector<std::int64_t>{0});
}

TEST(Splits, PermutationIsRoughlyUniform) {
  // All 6 permutations of 3 elements over 6000 seeds: each expected 1000 times, sd ~ 29.
  std::map<std::vector<std::int64_t>, int> count;
  for (std::uint64_t seed = 0; seed < 6000; ++seed) ++count[d2r::random_permutation(3, seed)];
  ASSERT_EQ(count.size(), 6u);
  for (const auto& [perm, c] : count) {
    EXPECT_GT(c, 850);
    EXPECT_LT(c, 1150);
  }
}

namespace {
/// A classification dataset with `per_class[c]` rows of class c, interleaved; feature = row index.
d2r::Dataset classes_dataset(const std::vector<int>& per_class) {
  std::string text = "id,label\n";
  std::vector<int> left = per_class;
  int id = 0;
  for (bool any = true; any;) {
    any = false;
    for (std::size_t c = 0; c < left.size(); ++c) {
      if (left[c] == 0) continue;
      --left[c];
      any = true;
      text += std::to_string(id++) + ",class" + std::to_string(c) + "\n";
    }
  }
  return d2r::make_classification_dataset(d2r::read_csv_string(text, "gen"), "label");
}

std::vector<double> ids(const d2r::Dataset& d) { return d.features; }
}  // namespace

TEST(Splits, StratifiedKeepsClassProportions) {
  const std::vector<int> per_class = {50, 7, 13, 2, 1};
  const d2r::Dataset d = classes_dataset(per_class);
  ASSERT_EQ(d.rows, 73);
  for (const double fraction : {0.2, 0.25, 0.5, 0.7}) {
    const d2r::Split s = d2r::stratified_split(d, fraction, 7);
    std::vector<int> in_test(per_class.size(), 0), in_train(per_class.size(), 0);
    for (const auto l : s.test.labels) ++in_test[static_cast<std::size_t>(l)];
    for (const auto l : s.train.labels) ++in_train[static_cast<std::size_t>(l)];
    for (std::size_t c = 0; c < per_class.size(); ++c) {
      EXPECT_EQ(in_test[c], std::llround(fraction * per_class[c])) << "class " << c << " fraction " << fraction;
      EXPECT_EQ(in_test[c] + in_train[c], per_class[c]);
    }
    // A partition of the rows, each part in the original order, the rows intact.
    std::vector<double> all = ids(s.train);
    all.insert(all.end(), s.test.features.begin(), s.test.features.end());
    std::sort(all.begin(), all.end());
    std::vector<double> expected(73);
    std::iota(expected.begin(), expected.end(), 0.0);
    EXPECT_EQ(all, expected);
    EXPECT_TRUE(std::is_sorted(s.train.features.begin(), s.train.features.end()));
    EXPECT_TRUE(std::is_sorted(s.test.features.begin(), s.test.features.end()));
    for (std::int64_t r = 0; r < s.test.rows; ++r) {
      const auto id = static_cast<std::size_t>(s.test.features[static_cast<std::size_t>(r)]);
      EXPECT_EQ(s.test.labels[static_cast<std::size_t>(r)], d.labels[id]);
    }
    EXPECT_EQ(s.test.class_names, d.class_names);
    EXPECT_EQ(s.train.feature_names, d.feature_names);
    EXPECT_EQ(s.train.rows + s.test.rows, d.rows);
  }
}

TEST(Splits, StratifiedIsDeterministicAndSeedDependent) {
  const d2r::Dataset d = classes_dataset({40, 30, 30});
  const d2r::Split a = d2r::stratified_split(d, 0.3, 123);
  const d2r::Split b = d2r::stratified_split(d, 0.3, 123);
  EXPECT_EQ(a.test.features, b.test.features);
  EXPECT_EQ(a.train.features, b.train.features);
  std::set<std::vector<double>> distinct;
  for (std::uint64_t seed = 0; seed < 10; ++seed) distinct.insert(d2r::stratified_split(d, 0.3, seed).test.features);
  EXPECT_EQ(distinct.size(), 10u);  // C(40,12)·C(30,9)² possibilities: a repeat would be a bug
}

TEST(Splits, StratifiedErrors) {
  const d2r::Dataset d = classes_dataset({3, 3});
  for (const double f : {0.0, 1.0, -0.1, 1.5, std::nan("")}) {
    expect_error([&] { (void)d2r::stratified_split(d, f, 1); }, d2r::ErrorKind::invalid_argument, {"(0, 1)"},
                 "test_fraction");
  }
  expect_error([&] { (void)d2r::stratified_split(d, 0.1, 1); }, d2r::ErrorKind::invalid_argument,
               {"leaves the test set empty"}, "test_fraction");
  expect_error([&] { (void)d2r::stratified_split(d, 0.9, 1); }, d2r::ErrorKind::invalid_argument,
               {"leaves the train set empty"}, "test_fraction");
  const d2r::Dataset r = d2r::make_regression_dataset(parse("a,y\n1,2\n3,4\n"), names({"y"}));
  expect_error([&] { (void)d2r::stratified_split(r, 0.5, 1); }, d2r::ErrorKind::invalid_argument,
               {"classification dataset"}, "data");
  d2r::Dataset broken = d;
  broken.labels[0] = 5;
  expect_error([&] { (void)d2r::stratified_split(broken, 0.5, 1); }, d2r::ErrorKind::invalid_argument,
               {"labels[0]", "[0, 2)"}, "data");
}

TEST(Splits, RandomSplit) {
  std::string text = "x,y\n";
  for (int i = 0; i < 41; ++i) text += std::to_string(i) + "," + std::to_string(10 * i) + "\n";
  const d2r::Dataset d = d2r::make_regression_dataset(parse(text), names({"y"}));
  const d2r::Split s = d2r::random_split(d, 0.25, 99);
  EXPECT_EQ(s.test.rows, 10);  // round(10.25)
  EXPECT_EQ(s.train.rows, 31);
  // The test rows are the first 10 of the documented permutation.
  std::vector<std::int64_t> perm = d2r::random_permutation(41, 99);
  std::vector<double> expected(perm.begin(), perm.begin() + 10);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(s.test.features, expected);
  for (std::int64_t r = 0; r < s.train.rows; ++r) {
    EXPECT_EQ(s.train.targets[static_cast<std::size_t>(r)], 10 * s.train.features[static_cast<std::size_t>(r)]);
  }
  EXPECT_EQ(d2r::random_split(d, 0.25, 99).test.features, s.test.features);
  EXPECT_NE(d2r::random_split(d, 0.25, 100).test.features, s.test.features);
  expect_error([&] { (void)d2r::random_split(d, 0.01, 1); }, d2r::ErrorKind::invalid_argument,
               {"leaves the test set empty"}, "test_fraction");
}

// =========================================================================================== writing

TEST(WriteCsv, RoundTripsThroughTheReader) {
  const std::vector<std::string> header = {"name", "with,comma", "quote\"d", " padded "};
  const std::vector<std::vector<std::string>> rows = {
      {"a", "1,2", "say \"hi\"", " x"}, {"", "line\nbreak", "cr\rhere", ""}, {"\xEF\xBB\xBF", "t\t", "-", "z"}};
  const std::string text = d2r::to_csv_string(header, rows);
  const d2r::Table t = d2r::read_csv_string(text, "rt");
  EXPECT_EQ(t.columns(), (std::vector<std::string>{"name", "with,comma", "quote\"d", "padded"}));
  EXPECT_EQ(cells(t), rows);
  // One column: an empty cell must not become a (skipped) blank line.
  const std::vector<std::string> one = {"v"};
  const std::vector<std::vector<std::string>> one_rows = {{""}, {"1"}, {""}};
  EXPECT_EQ(d2r::to_csv_string(one, one_rows), "v\n\"\"\n1\n\"\"\n");
  EXPECT_EQ(cells(d2r::read_csv_string(d2r::to_csv_string(one, one_rows), "rt")), one_rows);
  // A BOM-led first header name survives.
  const std::vector<std::string> bom = {"\xEF\xBB\xBF" "a"};
  EXPECT_EQ(d2r::read_csv_string(d2r::to_csv_string(bom, one_rows), "rt").columns(), bom);
}

TEST(WriteCsv, NumbersRoundTrip) {
  EXPECT_EQ(d2r::format_number(0.1), "0.1");
  EXPECT_EQ(d2r::format_number(3.0), "3");
  EXPECT_EQ(d2r::format_number(-2.5e-300), "-2.5e-300");
  EXPECT_EQ(d2r::format_number(std::nan("")), "nan");
  EXPECT_EQ(d2r::format_number(-INFINITY), "-inf");
  TempDir dir;
  const fs::path path = dir.path() / "curve.csv";
  const std::vector<std::string> header = {"step", "loss"};
  const std::vector<std::vector<double>> rows = {{0, 1.0 / 3.0}, {1, 1e-17}, {2, -123456.789}};
  d2r::write_csv(path, header, rows);
  const d2r::Dataset d = d2r::make_regression_dataset(d2r::read_csv(path), names({"loss"}));
  EXPECT_EQ(d.targets, (std::vector<double>{1.0 / 3.0, 1e-17, -123456.789}));  // bit-exact
  EXPECT_EQ(dir.entries(), names({"curve.csv"}));
}

TEST(WriteCsv, ReplacesAtomicallyAndLeavesNoTemporary) {
  TempDir dir;
  const fs::path path = dir.path() / "out.csv";
  write_file(path, "old contents\n");
  const std::vector<std::string> header = {"a", "b"};
  const std::vector<std::vector<double>> rows = {{1, 2}, {3, 4}};
  d2r::write_csv(path, header, rows);
  EXPECT_EQ(read_file(path), "a,b\n1,2\n3,4\n");
  EXPECT_EQ(dir.entries(), names({"out.csv"}));
  // A relative path (no directory part) works too.
  const fs::path cwd = fs::current_path();
  fs::current_path(dir.path());
  d2r::write_csv("rel.csv", header, rows);
  fs::current_path(cwd);
  EXPECT_EQ(read_file(dir.path() / "rel.csv"), "a,b\n1,2\n3,4\n");
  EXPECT_EQ(dir.entries(), names({"out.csv", "rel.csv"}));
}

TEST(WriteCsv, BadRowsTouchNothing) {
  TempDir dir;
  const fs::path path = dir.path() / "out.csv";
  write_file(path, "old\n");
  const std::vector<std::string> header = {"a", "b"};
  const std::vector<std::vector<double>> rows = {{1, 2}, {3}};
  expect_error([&] { d2r::write_csv(path, header, rows); }, d2r::ErrorKind::invalid_argument,
               {"row 1 has 1 fields, expected 2"}, "rows");
  expect_error([&] { d2r::write_csv(path, std::vector<std::string>{}, std::vector<std::vector<double>>{}); },
               d2r::ErrorKind::invalid_argument, {"at least one column name"}, "header");
  EXPECT_EQ(read_file(path), "old\n");
  EXPECT_EQ(dir.entries(), names({"out.csv"}));
}

TEST(WriteCsv, PathIsADirectory) {
  TempDir dir;
  const fs::path target = dir.path() / "taken";
  fs::create_directory(target);
  write_file(target / "inside.txt", "keep\n");
  const std::vector<std::string> header = {"a"};
  const std::vector<std::vector<double>> rows = {{1}};
  expect_error([&] { d2r::write_csv(target, header, rows); }, d2r::ErrorKind::io, {"is a directory"}, "path");
  EXPECT_TRUE(fs::is_directory(target));
  EXPECT_EQ(TempDir::entries_of(target), names({"inside.txt"}));
  EXPECT_EQ(read_file(target / "inside.txt"), "keep\n");
  EXPECT_EQ(dir.entries(), names({"taken"}));
}

TEST(WriteCsv, MissingDirectory) {
  TempDir dir;
  const std::vector<std::string> header = {"a"};
  const std::vector<std::vector<double>> rows = {{1}};
  expect_error([&] { d2r::write_csv(dir.path() / "no" / "such.csv", header, rows); }, d2r::ErrorKind::io,
               {"such.csv", "No such file or directory"}, "path");
  EXPECT_TRUE(dir.entries().empty());
}

TEST(WriteCsv, FailedWriteLeavesTheOriginalAndNoTemporary) {
  // A write that fails half-way: the file-size limit stops the temporary at 64 bytes (EFBIG; works
  // for root too, unlike permissions).
  TempDir dir;
  const fs::path path = dir.path() / "curve.csv";
  write_file(path, "original\n");
  const std::vector<std::string> header = {"step", "value"};
  std::vector<std::vector<double>> rows;
  for (int i = 0; i < 1000; ++i) rows.push_back({double(i), i * 0.001});

  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 64;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  bool threw = false;
  std::string message;
  try {
    d2r::write_csv(path, header, rows);
  } catch (const d2r::Error& e) {
    threw = true;
    message = e.what();
    EXPECT_EQ(e.kind(), d2r::ErrorKind::io);
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(threw);
  EXPECT_NE(message.find("cannot write the temporary file"), std::string::npos) << message;
  EXPECT_EQ(read_file(path), "original\n");
  EXPECT_EQ(dir.entries(), names({"curve.csv"}));
}

TEST(WriteCsv, ReadOnlyDirectory) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: directory permissions do not apply";
  TempDir dir;
  const fs::path path = dir.path() / "out.csv";
  write_file(path, "original\n");
  fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
  const std::vector<std::string> header = {"a"};
  const std::vector<std::vector<double>> rows = {{1}};
  expect_error([&] { d2r::write_csv(path, header, rows); }, d2r::ErrorKind::io, {"cannot create a temporary"},
               "path");
  fs::permissions(dir.path(), fs::perms::owner_all);
  EXPECT_EQ(read_file(path), "original\n");
  EXPECT_EQ(dir.entries(), names({"out.csv"}));
}
