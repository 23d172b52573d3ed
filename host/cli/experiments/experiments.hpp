#pragma once
// The experiments of `d2r reproduce` (PAPER.md), one file each, and what they share: the data
// generator of Fig. 1/3, a runner with one progress report over many configurations, the
// long-format curves.csv and the output files.
//
//   synthetic.cpp  Fig. 1     implicit.cpp  Fig. 3     mbrl.cpp  Table 3     tabular.cpp  Tables 1–2
//
// Each experiment checks every argument and reads every file first, then locks --out
// (lock_output_dir: a second run into the same folder is refused), then trains.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "d2r/context.hpp"
#include "d2r/data.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/output.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli::experiments {

namespace fs = std::filesystem;
inline constexpr const char* kCmd = "reproduce";
inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

int reproduce_synthetic(Context& ctx, const ReproduceOptions& o, const fs::path& out);
int reproduce_implicit(Context& ctx, const ReproduceOptions& o, const fs::path& out);
int reproduce_mbrl(Context& ctx, const ReproduceOptions& o, const fs::path& out);
int reproduce_tabular(Context& ctx, const ReproduceOptions& o, const fs::path& out);

/// Uniform and normal numbers from the splitmix64 stream (the data generators of the program).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  double uniform(double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(splitmix64(state_) >> 11) * 0x1.0p-53;
  }
  double normal() {  // Box–Muller
    const double u1 = 1.0 - uniform(0, 1), u2 = uniform(0, 1);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * 3.14159265358979323846 * u2);
  }

 private:
  std::uint64_t state_;
};

/// An independent seed for stream `stream` of a run seeded by `seed`.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream);

/// PAPER.md Fig. 1/3 data: x ~ U[−5, 5]², y = x + loc + σε; `points` x values, `per_point` samples each.
HostData make_fig1_data(Rng& rng, std::int64_t points, std::int64_t per_point, double loc, double sigma);

/// curves.csv of a reproduction: every run's records in long format.
struct LongCurves {
  std::vector<std::string> header{"run",         "step",           "train_nll_per_dim", "train_rmse",
                                  "train_mean_std", "test_nll_per_dim", "test_rmse",      "test_mean_std",
                                  "outer_loss",  "u",              "hypergradient"};
  std::vector<std::vector<std::string>> rows;
  void add(const std::string& run, const RunResult& r);
};

/// Runs configurations one after the other with one progress report over all of them (the
/// work of each is planned first, so the ETA covers the whole reproduction), and keeps every
/// run's entry of results.json (run_json, with its `tags`) and its records for curves.csv.
class Runner {
 public:
  Runner(Context& ctx, std::string label, bool quiet) : ctx_(ctx), label_(std::move(label)), quiet_(quiet) {}
  static std::int64_t weight(const RegressionConfig& c, std::int64_t rows);
  void plan(const RegressionConfig& c, std::int64_t rows) { total_ += weight(c, rows); }
  RunResult run(const std::string& name, const RegressionConfig& c, const HostData& train, const HostData& test,
                nlohmann::json tags = {});
  void finish() {
    if (progress_) progress_->finish();
  }
  [[nodiscard]] double elapsed() const { return progress_ ? progress_->elapsed() : 0.0; }
  [[nodiscard]] const nlohmann::json& runs() const { return runs_; }
  [[nodiscard]] const LongCurves& curves() const { return curves_; }

 private:
  Context& ctx_;
  std::string label_;
  bool quiet_;
  std::int64_t total_ = 0, base_ = 0;
  std::unique_ptr<Progress> progress_;
  nlohmann::json runs_ = nlohmann::json::array();
  LongCurves curves_;
};

/// The fields every reproduction's results.json starts with: run_header's, then "experiment",
/// "quick", "seed" and "threads" of the options.
nlohmann::json experiment_header(const Context& ctx, const ReproduceOptions& o);

/// Writes results.json, summary.csv and curves.csv into `out` (locked by lock_output_dir before).
void write_outputs(const fs::path& out, const nlohmann::json& results, const std::vector<std::string>& summary_header,
                   const std::vector<std::vector<std::string>>& summary_rows, const LongCurves& curves);
void write_outputs(const fs::path& out, const nlohmann::json& results, const std::vector<std::string>& summary_header,
                   const std::vector<std::vector<std::string>>& summary_rows,
                   const std::vector<std::string>& curves_header, const std::vector<std::vector<std::string>>& curves);

/// A number with `precision` decimals, "–" when it is not finite.
std::string fmt_or_dash(double v, int precision = 3);

/// The regression setting the paper's experiments share (64-64 ReLU, diagonal head, λ = 1, G = 5).
RegressionConfig base_config(const ReproduceOptions& o);

/// The bundled data directory: --data-dir, else ./data, else the source tree's; the first that
/// `has_data` accepts. Bad input naming --data-dir (and `what` it looked for) otherwise.
fs::path find_data_dir(const ReproduceOptions& o, const std::function<bool(const fs::path&)>& has_data,
                       std::string_view what);

}  // namespace d2r::cli::experiments
