// Output helpers of the d2r program (output.hpp).
#include "host/cli/output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <system_error>

#include <fmt/format.h>

#include "d2r/error.hpp"
#include "d2r/version.hpp"

#ifdef D2R_CLI_OPENBLAS
extern "C" void openblas_set_num_threads(int num_threads);
#endif

namespace d2r::cli {

namespace fs = std::filesystem;

void set_cpu_threads(int threads) {
#ifdef D2R_CLI_OPENBLAS
  openblas_set_num_threads(threads);
#else
  (void)threads;
#endif
}

void bad_input(std::string_view command, std::string_view option, const std::string& what) {
  throw Error(ErrorKind::invalid_argument, std::string(option), fmt::format("d2r {}: {}: {}", command, option, what));
}

namespace {

std::atomic<unsigned> temp_counter{0};

fs::path temp_name(const fs::path& path) {
  return path.parent_path() / fmt::format(".{}.tmp-{}-{}", path.filename().string(), static_cast<long>(::getpid()),
                                          temp_counter.fetch_add(1));
}

/// Creates and removes a temporary file in `dir`; returns "" on success, else the reason.
std::string probe_directory(const fs::path& dir) {
  const fs::path probe = dir / fmt::format(".d2r-probe-{}-{}", static_cast<long>(::getpid()), temp_counter.fetch_add(1));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return std::strerror(errno);
  ::close(fd);
  ::unlink(probe.c_str());
  return "";
}

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
      const std::string why = probe_directory(p);
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

void write_text_atomic(const fs::path& path, std::string_view text) {
  const fs::path tmp = temp_name(path);
  const auto fail = [&](const std::string& what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::io, "path", fmt::format("d2r: cannot write '{}': {} ({})", path.string(), what, std::strerror(err)));
  };
  if (fs::is_directory(path)) {
    throw Error(ErrorKind::io, "path", fmt::format("d2r: cannot write '{}': it is a directory", path.string()));
  }
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw Error(ErrorKind::io, "path",
                fmt::format("d2r: cannot write '{}': cannot create a temporary file ({})", path.string(), std::strerror(err)));
  }
  std::size_t at = 0;
  while (at < text.size()) {
    const ssize_t n = ::write(fd, text.data() + at, text.size() - at);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      fail("write failed");
    }
    at += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    fail("fsync failed");
  }
  if (::close(fd) != 0) fail("close failed");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename failed");
}

void write_json_atomic(const fs::path& path, const nlohmann::json& value) {
  // nlohmann::json writes NaN and infinities as null.
  write_text_atomic(path, value.dump(2) + "\n");
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::io, "path", fmt::format("d2r: cannot open '{}'", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::invalid_argument, "path", fmt::format("d2r: '{}' is not valid JSON: {}", path.string(), e.what()));
  }
}

nlohmann::json run_header(std::string_view command, const Context& ctx, std::string_view precision) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return {{"program", "d2r"},
          {"d2r_version", D2R_VERSION_STRING},
          {"command", std::string(command)},
          {"date", date},
          {"device", {{"backend", to_string(ctx.backend())}, {"name", ctx.device_name()}}},
          {"precision", std::string(precision)}};
}

nlohmann::json to_json(const PolicyMetrics& m) {
  return {{"nll_per_dim", m.nll_per_dim}, {"rmse", m.rmse}, {"mean_std", m.mean_std}};
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

namespace {
CLI::Validator number_validator(bool strict) {
  return CLI::Validator(
      [strict](std::string& in) -> std::string {
        double v = 0;
        std::size_t used = 0;
        try {
          v = std::stod(in, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != in.size()) return fmt::format("expected a number, got '{}'", in);
        if (!std::isfinite(v) || (strict ? !(v > 0) : !(v >= 0))) {
          return fmt::format("expected a finite number {} 0, got {}", strict ? ">" : ">=", in);
        }
        return "";
      },
      strict ? "NUMBER > 0" : "NUMBER >= 0");
}
}  // namespace

CLI::Validator non_negative_number() { return number_validator(false); }
CLI::Validator positive_number() { return number_validator(true); }

bool stderr_is_tty() noexcept { return ::isatty(STDERR_FILENO) == 1; }

Progress::Progress(std::string label, std::int64_t total, bool enabled, bool show_counts, std::int64_t start)
    : label_(std::move(label)),
      total_(total > 0 ? total : 1),
      start_units_(std::clamp<std::int64_t>(start, 0, total_)),
      enabled_(enabled),
      show_counts_(show_counts),
      tty_(stderr_is_tty()),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (enabled_ && tty_ && drawn_ && !finished_) std::fputc('\n', stderr);
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(std::int64_t done, std::string_view status) {
  if (!enabled_ || finished_) return;
  if (tty_) {
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    draw(done, status, false);
  } else if (done * 10 >= next_decile_ * total_ && done < total_) {
    while (done * 10 >= next_decile_ * total_) ++next_decile_;
    draw(done, status, false);
  }
}

void Progress::finish(std::string_view status) {
  if (!enabled_ || finished_) return;
  draw(total_, status, true);
  finished_ = true;
}

void Progress::draw(std::int64_t done, std::string_view status, bool final) {
  const double t = elapsed();
  const double frac = static_cast<double>(std::min(done, total_)) / static_cast<double>(total_);
  const std::int64_t since = std::min(done, total_) - start_units_;
  const std::string eta = final       ? "done"
                          : since > 0 ? "ETA " + format_duration(t / static_cast<double>(since) *
                                                                 static_cast<double>(total_ - std::min(done, total_)))
                                      : "ETA ?";
  const std::string counts =
      show_counts_ ? fmt::format("{}/{} ({:3.0f}%), {} elapsed, {}", done, total_, 100 * frac, format_duration(t), eta)
                   : fmt::format("{:3.0f}%, {} elapsed, {}", 100 * frac, format_duration(t), eta);
  if (tty_) {
    constexpr int width = 24;
    const int filled = static_cast<int>(frac * width);
    fmt::print(stderr, "\r\x1b[K{} [{}{}] {}{}{}", label_, std::string(static_cast<std::size_t>(filled), '#'),
               std::string(static_cast<std::size_t>(width - filled), '.'), counts, status.empty() ? "" : "  ", status);
    if (final) std::fputc('\n', stderr);
  } else {
    fmt::print(stderr, "{}: {}{}{}\n", label_, counts, status.empty() ? "" : "  ", status);
  }
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace d2r::cli
