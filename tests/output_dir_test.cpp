// d2r/output_dir.hpp and write_text_atomic (d2r/data.hpp): a run's output folder checked without
// creating anything, locked for one process, cleared of exactly the temporaries a killed run
// leaves; text files replaced atomically. Refusals name the option in "d2r COMMAND: OPTION: ".
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "d2r/data.hpp"
#include "d2r/output_dir.hpp"
#include "tests/data_test_support.hpp"

namespace {

namespace fs = std::filesystem;
using d2r::test::data::expect_error;
using d2r::test::data::TempDir;
using d2r::test::data::write_file;

TEST(OutputDir, CheckCreatesNothingAndNamesTheOption) {
  TempDir dir;
  const fs::path missing = dir.path() / "a" / "b";
  d2r::check_output_dir("fit", "--out", missing);  // a missing folder under a writable one: fine
  d2r::check_output_dir("fit", "--out", dir.path());
  EXPECT_FALSE(fs::exists(dir.path() / "a"));
  EXPECT_TRUE(dir.entries().empty());  // the probe file is gone
  write_file(dir.path() / "file", "x");
  expect_error([&] { d2r::check_output_dir("sweep", "--out", dir.path() / "file"); }, d2r::ErrorKind::invalid_argument,
               {"d2r sweep: --out: ", "exists and is not a directory"}, "--out");
  expect_error([&] { d2r::check_output_dir("fit", "--out", dir.path() / "file" / "sub"); },
               d2r::ErrorKind::invalid_argument, {"cannot be created", "is not a directory"}, "--out");
  expect_error([&] { d2r::check_output_dir("fit", "--out", ""); }, d2r::ErrorKind::invalid_argument,
               {"expected a directory"}, "--out");
}

TEST(OutputDir, PresentFilesInOrderAndRefusesANonRegularOne) {
  TempDir dir;
  const std::vector<std::string> names{"results.json", "curves.csv", "checkpoint.ckpt"};
  EXPECT_TRUE(d2r::present_files("fit", "--out", dir.path(), names).empty());
  write_file(dir.path() / "checkpoint.ckpt", "x");
  write_file(dir.path() / "results.json", "{}");
  EXPECT_EQ(d2r::present_files("fit", "--out", dir.path(), names),
            (std::vector<std::string>{"results.json", "checkpoint.ckpt"}));
  fs::create_directory(dir.path() / "curves.csv");
  expect_error([&] { (void)d2r::present_files("fit", "--out", dir.path(), names); }, d2r::ErrorKind::invalid_argument,
               {"d2r fit: --out: ", "curves.csv", "not a regular file", "a directory"}, "--out");
}

TEST(OutputDir, RemovesOnlyTheStaleTemporaries) {
  TempDir dir;
  const std::vector<std::string> names{"results.json", "checkpoint.ckpt"};
  for (const char* n : {".results.json.tmp-99999-0", "checkpoint.ckpt.tmp.AbC123", ".d2r-probe-99999-1",
                        "notes.tmp.txt", ".draft.tmp-1-2", "results.json.bak", ".curves.csv.tmp-99999-3"}) {
    write_file(dir.path() / n, "x");
  }
  d2r::remove_stale_temporaries(dir.path(), names);
  // .curves.csv.tmp-* is not a temporary of `names`: left alone, as every file of the user's.
  EXPECT_EQ(dir.entries(),
            (std::vector<std::string>{".curves.csv.tmp-99999-3", ".draft.tmp-1-2", "notes.tmp.txt", "results.json.bak"}));
}

TEST(OutputDir, WriteTextAtomicReplacesTheFileAndLeavesNoTemporary) {
  TempDir dir;
  const fs::path p = dir.path() / "results.json";
  d2r::write_text_atomic(p, "first\n");
  d2r::write_text_atomic(p, std::string("sec\0ond", 7));  // bytes, not C strings
  std::ifstream in(p, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, std::string("sec\0ond", 7));
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"results.json"}));
  expect_error([&] { d2r::write_text_atomic(dir.path() / "no" / "x.json", "x"); }, d2r::ErrorKind::io,
               {"write_text_atomic", "cannot create a temporary"}, "path");
  expect_error([&] { d2r::write_text_atomic(dir.path(), "x"); }, d2r::ErrorKind::io, {"is a directory"}, "path");
}

TEST(OutputDir, LockRefusesAFolderAnotherHolderLocked) {
  TempDir dir;
  const fs::path busy = dir.path() / "busy", mine = dir.path() / "mine" / "sub";
  fs::create_directory(busy);
  const int fd = ::open(busy.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);  // another holder (flock: per open file)
  expect_error([&] { d2r::lock_output_dir("fit", "--out", busy); }, d2r::ErrorKind::invalid_argument,
               {"d2r fit: --out: ", "is busy", "choose another --out"}, "--out");
  ::close(fd);
  d2r::lock_output_dir("fit", "--out", mine);  // creates the folder and locks it until the process ends
  EXPECT_TRUE(fs::is_directory(mine));
  const int probe = ::open(mine.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(probe, 0);
  EXPECT_NE(::flock(probe, LOCK_EX | LOCK_NB), 0);  // held
  ::close(probe);
  d2r::lock_output_dir("fit", "--out", busy);  // a second call is a no-op
}

}  // namespace
