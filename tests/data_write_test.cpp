// The data layer's CSV writing: round trips through the reader, numbers bit for bit, atomic
// replacement with no temporary left, and every failure (bad rows, a directory, a missing
// directory, a failed write, a read-only directory) leaving the original untouched.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include "d2r/data.hpp"
#include "d2r/error.hpp"
#include "tests/data_test_support.hpp"

namespace fs = std::filesystem;
using d2r::test::data::expect_error;
using d2r::test::data::names;
using d2r::test::data::cells;
using d2r::test::data::TempDir;
using d2r::test::data::write_file;
using d2r::test::data::read_file;

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
