// Output helpers of the d2r program (output.hpp).
#include "host/cli/output.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstdio>
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

std::string user_words(const Error& e) {
  std::string what = e.what();
  if (what.starts_with("d2r::")) {
    if (const std::size_t at = what.find("': "); at != std::string::npos) what = what.substr(at + 3);
  }
  return what;
}

const std::vector<std::string>& run_files() {
  static const std::vector<std::string> files{"results.json", "curves.csv", "outer_curves.csv", "checkpoint.ckpt",
                                              "checkpoint.json"};
  return files;
}

namespace {

void refuse_reuse(std::string_view command, std::string_view option, const fs::path& dir,
                  const std::vector<std::string>& present) {
  bad_input(command, option,
            fmt::format("'{}' holds the files of an earlier run ({}); pass --overwrite to replace them, --resume to "
                        "continue that run (bilevel), or choose another --out",
                        dir.string(), fmt::join(present, ", ")));
}

}  // namespace

void check_run_dir(std::string_view command, std::string_view option, const fs::path& dir, bool resume,
                   bool overwrite, std::span<const std::string> files) {
  check_output_dir(command, option, dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  const std::vector<std::string> present = present_files(command, option, dir, files);
  if (!present.empty() && !resume && !overwrite) refuse_reuse(command, option, dir, present);
}

void claim_run_dir(std::string_view command, std::string_view option, const fs::path& dir, bool resume,
                   bool overwrite, std::span<const std::string> files) {
  lock_output_dir(command, option, dir);
  // Under the lock: another run may have finished between the check and now.
  const std::vector<std::string> present = present_files(command, option, dir, files);
  if (!present.empty() && !resume && !overwrite) refuse_reuse(command, option, dir, present);
  remove_stale_temporaries(dir, files);
  std::error_code ec;
  if (overwrite) {
    for (const std::string& name : present) {
      if (fs::remove(dir / name, ec); ec) {
        throw Error(ErrorKind::io, "out", fmt::format("d2r: cannot remove '{}': {}", (dir / name).string(), ec.message()));
      }
    }
  }
}

std::vector<std::string> split_list(const std::string& option, const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (;;) {
    std::string item;
    bool quoted = false;
    if (at < text.size() && text[at] == '"') {
      quoted = true;
      ++at;
      for (;;) {
        if (at >= text.size()) throw CLI::ValidationError(option, fmt::format("unterminated quote in '{}'", text));
        if (text[at] == '"') {
          if (at + 1 < text.size() && text[at + 1] == '"') {
            item += '"';
            at += 2;
            continue;
          }
          ++at;
          break;
        }
        item += text[at++];
      }
      if (at < text.size() && text[at] != ',') {
        throw CLI::ValidationError(option, fmt::format("expected ',' after the closing quote in '{}'", text));
      }
    } else {
      const std::size_t end = std::min(text.find(',', at), text.size());
      item = text.substr(at, end - at);
      at = end;
    }
    if (item.empty() && !quoted) {
      throw CLI::ValidationError(option, fmt::format("empty item in the list '{}' (item {})", text, out.size() + 1));
    }
    out.push_back(std::move(item));
    if (at >= text.size()) break;
    ++at;  // the comma
    if (at >= text.size()) {
      throw CLI::ValidationError(option, fmt::format("empty item in the list '{}' (item {})", text, out.size() + 1));
    }
  }
  return out;
}

std::vector<std::int64_t> split_integers(const std::string& option, const std::string& text) {
  std::vector<std::int64_t> out;
  for (const std::string& item : split_list(option, text)) {
    std::int64_t v = 0;
    const auto r = std::from_chars(item.data(), item.data() + item.size(), v);
    if (r.ec != std::errc() || r.ptr != item.data() + item.size()) {
      throw CLI::ValidationError(option, fmt::format("expected a whole number, got '{}'", item));
    }
    out.push_back(v);
  }
  return out;
}

std::vector<double> split_numbers(const std::string& option, const std::string& text) {
  std::vector<double> out;
  for (const std::string& item : split_list(option, text)) {
    double v = 0;
    const auto r = std::from_chars(item.data(), item.data() + item.size(), v);
    const bool inf = item == "inf" || item == "-inf";  // from_chars takes these too; kept for -inf logits
    if ((r.ec != std::errc() || r.ptr != item.data() + item.size()) && !inf) {
      throw CLI::ValidationError(option, fmt::format("expected a number, got '{}'", item));
    }
    out.push_back(v);
  }
  return out;
}

std::string json_text(const nlohmann::json& value, int indent) {
  return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string shown_name(std::string_view name) {
  std::string out = "'";
  std::size_t i = 0;
  while (i < name.size()) {
    const auto c = static_cast<unsigned char>(name[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= name.size();
    for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(name[i + k]) & 0xc0) == 0x80;
    if (ok) {
      out.append(name.substr(i, len));
      i += len;
    } else {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    }
  }
  return out + "'";
}

void write_json_atomic(const fs::path& path, const nlohmann::json& value) {
  // nlohmann::json writes NaN and infinities as null; invalid UTF-8 becomes U+FFFD.
  write_text_atomic(path, json_text(value) + "\n");
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::io, "path", fmt::format("d2r: cannot open '{}'", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  if (!fs::is_regular_file(path)) {
    throw Error(ErrorKind::invalid_argument, "path", fmt::format("d2r: '{}' is not a regular file", path.string()));
  }
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

CLI::Validator finite_range(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& in) -> std::string {
        double v = 0;
        const auto r = std::from_chars(in.data(), in.data() + in.size(), v);
        if (r.ec != std::errc() || r.ptr != in.data() + in.size()) return fmt::format("expected a number, got '{}'", in);
        if (!(std::isfinite(v) && v >= lo && v <= hi)) {
          return fmt::format("expected a finite number in [{}, {}], got {}", lo, hi, in);
        }
        return "";
      },
      fmt::format("NUMBER in [{}, {}]", lo, hi));
}

CLI::Validator unsigned_64() {
  return CLI::Validator(
      [](std::string& in) -> std::string {
        std::uint64_t v = 0;
        const bool digits = !in.empty() && std::all_of(in.begin(), in.end(), [](char c) { return c >= '0' && c <= '9'; });
        const auto r = std::from_chars(in.data(), in.data() + in.size(), v);
        if (!digits || r.ec != std::errc() || r.ptr != in.data() + in.size()) {
          return fmt::format("expected a whole number in [0, 18446744073709551615], got '{}'", in);
        }
        return "";
      },
      "UINT64");
}

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
