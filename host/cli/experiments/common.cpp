// What the experiments of `d2r reproduce` share (experiments.hpp).
#include <algorithm>
#include <span>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "host/cli/experiments/experiments.hpp"

namespace d2r::cli::experiments {

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t s = seed ^ (0x9e3779b97f4a7c15ull * (stream + 1));
  return splitmix64(s);
}

HostData make_fig1_data(Rng& rng, std::int64_t points, std::int64_t per_point, double loc, double sigma) {
  HostData d{.rows = points * per_point, .inputs = 2, .dims = 2, .x = {}, .y = {}};
  for (std::int64_t i = 0; i < points; ++i) {
    const double a = rng.uniform(-5, 5), b = rng.uniform(-5, 5);
    for (std::int64_t j = 0; j < per_point; ++j) {
      d.x.insert(d.x.end(), {a, b});
      d.y.push_back(a + loc + sigma * rng.normal());
      d.y.push_back(b + loc + sigma * rng.normal());
    }
  }
  return d;
}

std::int64_t Runner::weight(const RegressionConfig& c, std::int64_t rows) {
  const std::int64_t pg = c.method == Method::mse || c.method == Method::nll ? 1 : 2;
  if (c.method == Method::bilevel) return c.outer_steps * (2 * c.bilevel.inner.steps + 8) * rows;
  return c.plain.steps * pg * rows;
}

namespace {
/// One run's entry of results.json: its configuration, final metrics, reward and records.
nlohmann::json run_json(const std::string& name, const RegressionConfig& c, const RunResult& r, nlohmann::json tags) {
  nlohmann::json j = {{"name", name},
                      {"config", config_json(c)},
                      {"final", {{"train", to_json(r.train)}, {"test", to_json(r.held_out)}}},
                      {"reward_params", r.reward_params},
                      {"wall_seconds", r.wall_seconds},
                      {"records", records_json(r, c.method == Method::bilevel, "test")}};
  if (!tags.is_null()) j["tags"] = std::move(tags);
  return j;
}
}  // namespace

RunResult Runner::run(const std::string& name, const RegressionConfig& c, const HostData& train, const HostData& test,
                      nlohmann::json tags) {
  if (!progress_) progress_ = std::make_unique<Progress>(label_, total_, !quiet_, false);
  RegressionRun r(ctx_, c, train, test, kCmd);
  const std::int64_t w = weight(c, train.rows);
  RunResult res = r.run([&](std::int64_t done, std::int64_t total, const std::string& status) {
    progress_->update(base_ + w * done / std::max<std::int64_t>(total, 1),
                      status.empty() ? name : fmt::format("{}: {}", name, status));
  });
  base_ += w;
  progress_->update(base_, name);
  runs_.push_back(run_json(name, c, res, std::move(tags)));
  curves_.add(name, res);
  return res;
}

void LongCurves::add(const std::string& run, const RunResult& r) {
  for (const StepRecord& s : r.records) {
    const bool bl = !s.reward_params.empty();
    rows.push_back({run, format_number(static_cast<double>(s.step)), format_number(s.train.nll_per_dim),
                    format_number(s.train.rmse), format_number(s.train.mean_std), format_number(s.held_out.nll_per_dim),
                    format_number(s.held_out.rmse), format_number(s.held_out.mean_std),
                    format_number(bl ? s.outer_loss : kNaN), format_number(bl ? s.reward_params[0] : kNaN),
                    format_number(bl && !s.hypergradient.empty() ? s.hypergradient[0] : kNaN)});
  }
}

nlohmann::json experiment_header(const Context& ctx, const ReproduceOptions& o) {
  nlohmann::json j = run_header(kCmd, ctx, o.precision);
  j["experiment"] = o.name;
  j["quick"] = o.quick;
  j["seed"] = o.seed;
  j["threads"] = o.threads;
  return j;
}

void write_outputs(const fs::path& out, const nlohmann::json& results, const std::vector<std::string>& summary_header,
                   const std::vector<std::vector<std::string>>& summary_rows,
                   const std::vector<std::string>& curves_header, const std::vector<std::vector<std::string>>& curves) {
  ensure_directory(out);
  write_csv(out / "summary.csv", summary_header, std::span<const std::vector<std::string>>(summary_rows));
  write_csv(out / "curves.csv", curves_header, std::span<const std::vector<std::string>>(curves));
  write_json_atomic(out / "results.json", results);
  fmt::print("wrote {}, {}, {}\n", (out / "results.json").string(), (out / "summary.csv").string(),
             (out / "curves.csv").string());
}

void write_outputs(const fs::path& out, const nlohmann::json& results, const std::vector<std::string>& summary_header,
                   const std::vector<std::vector<std::string>>& summary_rows, const LongCurves& curves) {
  write_outputs(out, results, summary_header, summary_rows, curves.header, curves.rows);
}

std::string fmt_or_dash(double v, int precision) {
  return std::isfinite(v) ? fmt::format("{:.{}f}", v, precision) : "–";
}

RegressionConfig base_config(const ReproduceOptions& o) {
  RegressionConfig c;
  c.double_precision = o.precision == "double";
  c.hidden = {64, 64};
  c.activation = Activation::relu;
  c.head = GaussianHead::diagonal;
  c.lambda = 1;
  c.generations = 5;
  c.seed = o.seed;
  return c;
}

fs::path find_data_dir(const ReproduceOptions& o, const std::function<bool(const fs::path&)>& has_data,
                       std::string_view what) {
  std::vector<fs::path> candidates;
  if (!o.data_dir.empty()) {
    candidates.push_back(o.data_dir);
  } else {
    candidates.push_back("data");
#ifdef D2R_SOURCE_DATA_DIR
    candidates.push_back(D2R_SOURCE_DATA_DIR);
#endif
  }
  for (const fs::path& p : candidates) {
    if (has_data(p)) return p;
  }
  std::vector<std::string> names;
  for (const fs::path& p : candidates) names.push_back(p.string());
  bad_input(kCmd, "--data-dir",
            fmt::format("no {} under {} (give the repository's data/ directory)", what, fmt::join(names, ", ")));
}

}  // namespace d2r::cli::experiments
