// A run's output folder (d2r/output_dir.hpp): checked creating nothing, locked, cleared of stale
// temporaries.
#include "d2r/output_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

#include "d2r/error.hpp"

namespace d2r {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void bad_input(std::string_view command, std::string_view option, const std::string& what) {
  throw Error(ErrorKind::invalid_argument, std::string(option), fmt::format("d2r {}: {}: {}", command, option, what));
}

std::atomic<unsigned> probe_counter{0};

/// Creates and removes a temporary file in `dir`; returns "" on success, else the reason.
std::string probe_directory(const fs::path& dir) {
  const fs::path probe = dir / fmt::format(".d2r-probe-{}-{}", static_cast<long>(::getpid()), probe_counter.fetch_add(1));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return std::strerror(errno);
  ::close(fd);
  ::unlink(probe.c_str());
  return "";
}

int lock_fd = -1;  // the claimed folder, locked until the process ends

}  // namespace

void check_output_dir(std::string_view command, std::string_view option, const fs::path& dir) {
  if (dir.empty()) bad_input(command, option, "expected a directory, got an empty path");
  std::error_code ec;
  const fs::path abs = fs::absolute(dir, ec);
  if (ec) bad_input(command, option, fmt::format("'{}': {}", dir.string(), ec.message()));
  // Walk up to the nearest existing path.
  fs::path p = abs;
  while (true) {
    const fs::file_status st = fs::status(p, ec);
    if (!ec && fs::exists(st)) {
      if (!fs::is_directory(st)) {
        bad_input(command, option,
                  p == abs ? fmt::format("'{}' exists and is not a directory", dir.string())
                           : fmt::format("'{}' cannot be created: '{}' is not a directory", dir.string(), p.string()));
      }
      std::string why = probe_directory(p);
      // procfs, sysfs: the directory exists but takes no new files (ENOENT from open, confusingly).
      if (why == std::strerror(ENOENT)) why = "it does not take new files";
      if (!why.empty()) {
        bad_input(command, option,
                  p == abs ? fmt::format("directory '{}' is not writable ({})", dir.string(), why)
                           : fmt::format("'{}' cannot be created: directory '{}' is not writable ({})", dir.string(),
                                         p.string(), why));
      }
      return;
    }
    if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory) {
      bad_input(command, option, fmt::format("'{}': {}", p.string(), ec.message()));
    }
    if (!p.has_parent_path() || p.parent_path() == p) {
      bad_input(command, option, fmt::format("'{}': no existing parent directory", dir.string()));
    }
    p = p.parent_path();
  }
}

void ensure_directory(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    throw Error(ErrorKind::io, "out", fmt::format("d2r: cannot create directory '{}': {}", dir.string(), ec.message()));
  }
}

void lock_output_dir(std::string_view command, std::string_view option, const fs::path& dir) {
  ensure_directory(dir);
  if (lock_fd >= 0) return;
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) bad_input(command, option, fmt::format("cannot open directory '{}': {}", dir.string(), std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      bad_input(command, option,
                fmt::format("'{}' is busy: another d2r run is writing into it (wait for it to end or choose "
                            "another {})",
                            dir.string(), option));
    }
    bad_input(command, option, fmt::format("cannot lock directory '{}': {}", dir.string(), std::strerror(err)));
  }
  lock_fd = fd;  // kept open: the lock ends with the process
}

std::vector<std::string> present_files(std::string_view command, std::string_view option, const fs::path& dir,
                                       std::span<const std::string> names) {
  std::vector<std::string> present;
  for (const std::string& name : names) {
    std::error_code ec;
    const fs::path p = dir / name;
    const fs::file_status st = fs::symlink_status(p, ec);
    if (ec || !fs::exists(st)) continue;
    const fs::file_status target = fs::status(p, ec);
    if (ec || !fs::is_regular_file(target)) {
      bad_input(command, option,
                fmt::format("'{}' exists and is not a regular file ({}); d2r writes its {} there", p.string(),
                            fs::is_directory(target) ? "a directory" : ec ? ec.message() : "a device, pipe or socket",
                            name));
    }
    present.push_back(name);
  }
  return present;
}

void remove_stale_temporaries(const fs::path& dir, std::span<const std::string> names) {
  const auto stale = [&names](const std::string& name) {
    if (name.starts_with(".d2r-probe-")) return true;
    return std::ranges::any_of(names, [&name](const std::string& file) {
      return name.starts_with("." + file + ".tmp-") || name.starts_with(file + ".tmp.");
    });
  };
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    std::error_code ec2;
    if (stale(name) && e.is_regular_file(ec2)) fs::remove(e.path(), ec2);
  }
}

}  // namespace d2r
