// The data layer: CSV reading (dialect and every error, each naming line and column), datasets,
// standardisation and seeded splits; atomic CSV writing is in data_write_test.cpp.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
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
#include "tests/data_test_support.hpp"

using d2r::test::data::expect_error;
using d2r::test::data::expect_parse_error;
using d2r::test::data::parse;
using d2r::test::data::names;
using d2r::test::data::cells;
using d2r::test::data::TempDir;
using d2r::test::data::write_file;

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
