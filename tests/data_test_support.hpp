#pragma once
// Shared support of the data-layer tests (data_test.cpp, data_write_test.cpp): an error matcher,
// CSV parsing from a string, table cells, and a temporary directory with file helpers.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "d2r/data.hpp"
#include "d2r/error.hpp"

namespace d2r::test::data {

namespace fs = std::filesystem;

/// Runs `f`, which must throw d2r::Error of `kind` whose message contains every one of `parts`.
inline void expect_error(const std::function<void()>& f, d2r::ErrorKind kind,
                         std::initializer_list<std::string> parts, const std::string& argument = "") {
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

inline d2r::Table parse(const std::string& text, const d2r::CsvOptions& options = {}) {
  return d2r::read_csv_string(text, "t.csv", options);
}

inline void expect_parse_error(const std::string& text, std::initializer_list<std::string> parts) {
  expect_error([&] { (void)parse(text); }, d2r::ErrorKind::invalid_argument, parts, "text");
}

inline std::vector<std::string> names(std::initializer_list<const char*> list) { return {list.begin(), list.end()}; }

/// All cells of a table, row by row.
inline std::vector<std::vector<std::string>> cells(const d2r::Table& t) {
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

inline void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good());
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}


}  // namespace d2r::test::data
