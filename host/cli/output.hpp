#pragma once
// Output helpers shared by the subcommands of the d2r program: atomic JSON files (over the
// library's write_text_atomic), a run's files in --out (over d2r/output_dir.hpp), the header fields every results.json carries, and a
// progress report on stderr (a bar with ETA on a terminal, a line every 10 % otherwise).

#include <chrono>
#include <cmath>
#include <type_traits>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "d2r/context.hpp"
#include "d2r/data.hpp"
#include "d2r/error.hpp"
#include "d2r/fields.hpp"
#include "d2r/output_dir.hpp"
#include "d2r/policy_model.hpp"

namespace d2r::cli {

/// Throws d2r::Error (invalid_argument) with the message "d2r <command>: <option>: <what>".
[[noreturn]] void bad_input(std::string_view command, std::string_view option, const std::string& what);

/// A library message without its "d2r::function: argument 'name': " prefix (the user did not call
/// that function; the caller names the option or file instead).
std::string user_words(const Error& e);

/// The files a `d2r fit` run writes into --out (what makes a folder "reused", what --overwrite
/// removes). Nothing else in the folder is touched.
const std::vector<std::string>& run_files();

/// Validation of --out for a run (creates nothing): check_output_dir, then each of `files` (the
/// run's: run_files() for fit) that exists must be a regular file, and a folder holding any of them
/// is refused unless `resume` or `overwrite`. Throws d2r::Error (invalid_argument) naming `option`.
void check_run_dir(std::string_view command, std::string_view option, const std::filesystem::path& dir, bool resume,
                   bool overwrite, std::span<const std::string> files = run_files());

/// After validation, before the first write: lock_output_dir, then checks check_run_dir's policy
/// again under the lock, removes temporary files that killed runs left (".NAME.tmp-PID-N", "NAME.tmp.XXXXXX", ".d2r-probe-*") and, with `overwrite`,
/// the run's `files`.
void claim_run_dir(std::string_view command, std::string_view option, const std::filesystem::path& dir, bool resume,
                   bool overwrite, std::span<const std::string> files = run_files());

/// Splits a comma-separated list given to `option`; an item may be double-quoted to hold commas
/// ("a,b"; "" inside quotes is one quote). Throws CLI::ValidationError for an empty item (as in
/// "8,", "4,,4") or an unterminated quote.
std::vector<std::string> split_list(const std::string& option, const std::string& text);
/// split_list, each item a whole decimal integer / a number (std::from_chars, nothing left over).
std::vector<std::int64_t> split_integers(const std::string& option, const std::string& text);
std::vector<double> split_numbers(const std::string& option, const std::string& text);

/// JSON text safe for any string: invalid UTF-8 (a file name in Latin-1) is replaced by U+FFFD.
std::string json_text(const nlohmann::json& value, int indent = 2);

/// "'name'" with bytes that are not valid UTF-8 shown as \xNN: a name that came from the user.
std::string shown_name(std::string_view name);

/// write_text_atomic of `value` pretty-printed (2 spaces), NaN and infinities written as null.
void write_json_atomic(const std::filesystem::path& path, const nlohmann::json& value);

/// Reads a JSON file (throws d2r::Error, io for a missing/unreadable file, invalid_argument for bad JSON).
nlohmann::json read_json(const std::filesystem::path& path);

/// The fields every results.json starts with: program version, command, UTC date, device.
nlohmann::json run_header(std::string_view command, const Context& ctx, std::string_view precision);

/// Every field of a library options struct as a JSON object (walked by its for_each_field, nested
/// structs as objects): numbers as numbers (non-finite ones as the text "inf"/"nan"), enums by
/// name, vectors as arrays.
template <HasFields O>
nlohmann::json fields_json(const O& options) {
  nlohmann::json j = nlohmann::json::object();
  for_each_field(options, [&j](std::string_view name, const auto& value) {
    using V = std::remove_cvref_t<decltype(value)>;
    const std::string key(name);
    if constexpr (HasFields<V>) {
      j[key] = fields_json(value);
    } else if constexpr (std::is_same_v<V, bool> || std::is_integral_v<V>) {
      j[key] = value;
    } else if constexpr (std::is_floating_point_v<V>) {
      j[key] = std::isfinite(value) ? nlohmann::json(static_cast<double>(value)) : nlohmann::json(field_text(value));
    } else if constexpr (std::is_enum_v<V>) {
      j[key] = field_text(value);
    } else {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& x : value) a.push_back(x);
      j[key] = a;
    }
  });
  return j;
}

/// {"nll_per_dim", "rmse", "mean_std"}.
nlohmann::json to_json(const PolicyMetrics& m);

/// "1:05" / "1:02:03" for a duration in seconds.
std::string format_duration(double seconds);

/// Progress of a long loop on stderr. On a terminal: one line redrawn in place (at most 10 times
/// a second) with a bar, done/total, elapsed time and ETA, and a short status text. Otherwise a
/// plain line each time another 10 % is done. `enabled` = false prints nothing.
class Progress {
 public:
  /// `show_counts` = false shows the percentage only (for totals in arbitrary work units);
  /// `start` units were done before (a resumed run): the ETA is from the rate since construction.
  Progress(std::string label, std::int64_t total, bool enabled = true, bool show_counts = true, std::int64_t start = 0);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// `done` units of work out of the total are finished; `status` is shown after the counters.
  void update(std::int64_t done, std::string_view status = {});
  /// Ends the report (the terminal line is completed with a line break).
  void finish(std::string_view status = {});
  /// Seconds since construction.
  [[nodiscard]] double elapsed() const;

 private:
  void draw(std::int64_t done, std::string_view status, bool final);
  std::string label_;
  std::int64_t total_, start_units_;
  bool enabled_, show_counts_, tty_, finished_ = false, drawn_ = false;
  std::int64_t next_decile_ = 1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

/// Sets the number of threads of the cpu backend's BLAS (OpenBLAS) when the program is built with
/// it; results on the cpu backend are reproducible for a given thread count. No-op otherwise.
void set_cpu_threads(int threads);

/// CLI11 validators with short messages: a finite number >= 0 / > 0; a finite number in [lo, hi]
/// (NaN refused); a whole number in [0, 2^64 − 1] written in decimal digits only (no sign, so -1
/// does not wrap around, and 2^64 is refused instead of saturating).
CLI::Validator non_negative_number();
CLI::Validator positive_number();
CLI::Validator finite_range(double lo, double hi);
CLI::Validator unsigned_64();

/// The value among `values` that its to_string names `name` (an option's value, which its
/// validator has checked); the first of `values` for any other name (an option's alias).
template <class E>
E named(std::string_view name, std::initializer_list<E> values) {
  for (E v : values) {
    if (name == to_string(v)) return v;
  }
  return *values.begin();
}

/// cmd->add_option(name, value, help) with its default shown in --help (capture_default_str).
template <class T>
CLI::Option* add_shown_option(CLI::App* cmd, std::string name, T& value, std::string help) {
  return cmd->add_option(std::move(name), value, std::move(help))->capture_default_str();
}

/// True when stderr is a terminal.
bool stderr_is_tty() noexcept;

}  // namespace d2r::cli
