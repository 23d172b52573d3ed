// `d2r sweep`: policy gradient at a log-spaced grid of fixed rewards (u of U = u·I on the
// standardised targets for a regression, β of U = β·I for a classification), several seeds per
// value, the validation outer loss (NLL per dimension / cross-entropy of the validation rows) at
// each value and the best one — the brute-force answer `d2r fit --method bilevel` must match
// (DESIGN.md §7). With --bilevel DIR it reads that fit's results.json and says whether its outer
// loss is within the sweep's seed noise of the best, and at what share of the sweep's compute.
//
// Takes fit's data and training options (the same split, standardisation and PG settings as fit,
// so the numbers are comparable); writes results.json and sweep.csv into --out.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "d2r/d2r.hpp"
#include "host/cli/classification.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/fit_inputs.hpp"
#include "host/cli/output.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kCmd = "sweep";
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool given(const FitOptions& o, std::string_view name) {
  return std::find(o.given.begin(), o.given.end(), name) != o.given.end();
}

/// One value of the grid: the validation and training outer loss of every seed's PG policy.
struct Point {
  double value = 0;
  std::vector<double> val_loss, train_loss, accuracy;
  double mean = kNaN, sd = kNaN;
};

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double sd_of(const std::vector<double>& v) {
  if (v.size() < 2) return kNaN;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

}  // namespace

CLI::App* add_sweep_command(CLI::App& app, SweepOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "sweep",
      "PG at a log-spaced grid of fixed rewards (u of U = u·I on the standardised targets, or β), several seeds "
      "each: the validation outer loss at every value and the best one (the brute-force answer bilevel must match). "
      "Takes fit's data and PG options; writes results.json and sweep.csv into --out");
  register_fit_options(cmd, o.fit);
  cmd->add_option("--grid-min", o.grid_min, "smallest reward of the grid")->check(positive_number())->capture_default_str();
  cmd->add_option("--grid-max", o.grid_max, "largest reward of the grid")->check(positive_number())->capture_default_str();
  cmd->add_option("--points", o.points, "log-spaced grid values")
      ->check(CLI::Range(std::int64_t{2}, std::int64_t{10000}))
      ->capture_default_str();
  cmd->add_option("--values", o.values, "explicit reward values instead of the grid, comma-separated")
      ->delimiter(',')
      ->check(positive_number());
  cmd->add_option("--seeds", o.seeds, "seeds per value (--seed, --seed + 1, ...; >= 2 gives the seed noise)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1000}))
      ->capture_default_str();
  cmd->add_option("--bilevel", o.bilevel,
                  "`d2r fit --method bilevel` output directories on the same data, comma-separated: PG at each "
                  "learned reward with the sweep's protocol, compared with the best grid value, and the compute")
      ->delimiter(',')
      ->check(CLI::ExistingDirectory);
  return cmd;
}

int run_sweep(const SweepOptions& s) {
  const FitOptions& o = s.fit;
  // ---------------------------------------------------------------- validate everything
  for (std::string_view n : {"--method", "--u", "--beta", "--resume", "--outer-steps", "--inner-steps",
                             "--inner-batch-size", "--inner-start", "--curvature", "--solver", "--solver-iterations",
                             "--outer-lr", "--preset", "--outer-step", "--inner-tolerance", "--inner-max-steps",
                             "--solver-tolerance", "--damping", "--window", "--reward-tolerance", "--loss-tolerance",
                             "--outer-data", "--checkpoint-every", "--reward", "--head"}) {
    if (given(o, n)) bad_input(kCmd, n, "not an option of sweep (it trains PG at fixed scalar rewards)");
  }
  if (!(s.grid_max > s.grid_min)) {
    bad_input(kCmd, "--grid-max", fmt::format("expected > --grid-min {}, got {}", s.grid_min, s.grid_max));
  }
  std::vector<double> values = s.values;
  if (values.empty()) {
    for (std::int64_t i = 0; i < s.points; ++i) {
      values.push_back(s.grid_min * std::pow(s.grid_max / s.grid_min, static_cast<double>(i) / static_cast<double>(s.points - 1)));
    }
  }
  const bool classification = o.task == "classification";
  if (classification && o.label.empty()) bad_input(kCmd, "--label", "the label column is required with --task classification");
  if (!classification && o.targets.empty()) bad_input(kCmd, "--targets", "the target columns are required");
  if (!(o.val_fraction > 0)) bad_input(kCmd, "--val-fraction", "the sweep measures the validation loss: expected > 0");
  // The learned rewards, evaluated with the sweep's protocol after the grid.
  std::vector<nlohmann::json> bilevel_results;
  std::vector<double> bilevel_values;
  for (const std::string& dir : s.bilevel) {
    const fs::path p = fs::path(dir) / "results.json";
    if (!fs::exists(p)) bad_input(kCmd, "--bilevel", fmt::format("no results.json in '{}'", dir));
    nlohmann::json res;
    try {
      res = read_json(p);
    } catch (const Error& e) {
      bad_input(kCmd, "--bilevel", e.what());
    }
    const nlohmann::json f = res.value("final", nlohmann::json::object());
    const nlohmann::json r = f.value("reward", nlohmann::json::object());
    const char* key = o.task == "classification" ? "params" : "params_standardized";
    if (!res.contains("verdict") || !r.contains(key) || !r[key].is_array() || r[key].size() != 1 ||
        !r[key][0].is_number()) {
      bad_input(kCmd, "--bilevel",
                fmt::format("'{}' is not the results.json of a scalar-reward bilevel fit of this task", p.string()));
    }
    const double v = r[key][0].get<double>();
    if (!(std::isfinite(v) && v > 0)) bad_input(kCmd, "--bilevel", fmt::format("the learned reward in '{}' is {}", p.string(), v));
    bilevel_results.push_back(res);
    bilevel_values.push_back(v);
  }
  set_cpu_threads(o.threads);
  const fs::path out = o.out;
  check_output_dir(kCmd, "--out", out);

  std::vector<Point> points;
  for (double v : values) {
    Point p;
    p.value = v;
    points.push_back(std::move(p));
  }
  // The bilevel rewards are more points, run like the others but not candidates for the best.
  const std::size_t grid_size = points.size();
  for (double v : bilevel_values) {
    Point p;
    p.value = v;
    points.push_back(std::move(p));
  }
  // PG's gradient: REINFORCE (fit --method pg), or its exact expectation (--inner-objective exact:
  // the recommended bilevel preset's inner learner, to compare rewards on the same learner).
  const InnerObjective objective = given(o, "--inner-objective") && o.inner_objective == "exact"
                                       ? InnerObjective::exact
                                       : InnerObjective::reinforce;
  double target_scale = 1;
  std::int64_t steps_per_run = 0, rows_per_step = 0, train_rows = 0;
  nlohmann::json config;
  Progress progress("sweep", static_cast<std::int64_t>(points.size()) * s.seeds, !o.quiet, true);
  const auto t0 = std::chrono::steady_clock::now();
  std::string device;
  if (!classification) {
    const RegressionInputs in = load_regression_inputs(o, kCmd);
    target_scale = in.target_scale;
    train_rows = in.train.rows;
    RegressionConfig c;
    c.method = Method::pg;
    c.double_precision = o.precision == "double";
    c.hidden = o.hidden;
    c.activation = o.activation == "tanh" ? Activation::tanh : Activation::relu;
    c.lambda = o.lambda;
    c.generations = o.generations;
    c.plain.steps = o.steps;
    c.plain.adam.learning_rate = o.lr;
    c.plain.gradient_clamp = 1;  // as the bilevel inner loop (InnerOptions::gradient_clamp)
    c.inner_objective = objective;
    c.plain.evaluate_every = o.steps;
    c.target_mean = in.target_mean;
    c.target_scale = in.target_scale;
    steps_per_run = c.plain.steps;
    rows_per_step = in.train.rows;
    config = c.to_json();
    for (std::size_t i = 0; i < points.size(); ++i) {
      for (std::int64_t k = 0; k < s.seeds; ++k) {
        Context ctx({.backend = parse_backend(o.device), .seed = o.seed + static_cast<std::uint64_t>(k)});
        device = to_string(ctx.backend());
        c.reward_params = {points[i].value};
        c.seed = o.seed + static_cast<std::uint64_t>(k);
        RegressionRun run(ctx, c, in.train, in.val, kCmd);
        const RunResult r = run.run();
        points[i].val_loss.push_back(r.held_out.nll_per_dim);
        points[i].train_loss.push_back(r.train.nll_per_dim);
        progress.update(static_cast<std::int64_t>(i) * s.seeds + k + 1,
                        fmt::format("u = {:.4g}: validation NLL/dim {:.4f}", points[i].value, r.held_out.nll_per_dim));
      }
    }
  } else {
    const ClassificationInputs in = load_classification_inputs(o, kCmd);
    train_rows = in.train.rows;
    ClassificationConfig c;
    c.method = ClassMethod::pg;
    c.double_precision = o.precision == "double";
    if (given(o, "--hidden")) c.hidden = o.hidden;
    c.activation = o.activation == "tanh" ? Activation::tanh : Activation::relu;
    c.lambda = o.lambda;
    if (given(o, "--generations")) c.generations = o.generations;
    c.plain.epochs = o.epochs;
    c.plain.batch_size = o.batch_size;
    if (given(o, "--lr")) c.learning_rate = o.lr;
    c.inner_objective = objective;
    const std::int64_t B = c.plain.batch_size == 0 || c.plain.batch_size >= train_rows ? train_rows : c.plain.batch_size;
    steps_per_run = c.plain.epochs * ((train_rows + B - 1) / B);
    rows_per_step = B;
    config = c.to_json();
    for (std::size_t i = 0; i < points.size(); ++i) {
      for (std::int64_t k = 0; k < s.seeds; ++k) {
        Context ctx({.backend = parse_backend(o.device), .seed = o.seed + static_cast<std::uint64_t>(k)});
        device = to_string(ctx.backend());
        c.beta = points[i].value;
        c.seed = o.seed + static_cast<std::uint64_t>(k);
        ClassificationRun run(ctx, c, in.train, in.val, in.test, in.classes, kCmd);
        const ClassificationResult r = run.run();
        points[i].val_loss.push_back(r.validation.nll_per_dim);
        points[i].train_loss.push_back(r.train.nll_per_dim);
        points[i].accuracy.push_back(r.validation.accuracy);
        progress.update(static_cast<std::int64_t>(i) * s.seeds + k + 1,
                        fmt::format("β = {:.4g}: validation CE {:.4f}", points[i].value, r.validation.nll_per_dim));
      }
    }
  }
  progress.finish();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // ---------------------------------------------------------------- summarise
  // The seed noise: the median over the grid values of the standard deviation over seeds of the
  // validation loss — the spread two runs at one reward differ by. The median, not a pooled sd:
  // at rewards where PG collapses the predicted spread the loss is huge and its sd with it.
  std::vector<double> sds;
  std::size_t best = 0;
  for (std::size_t i = 0; i < points.size(); ++i) {
    Point& p = points[i];
    p.mean = mean_of(p.val_loss);
    p.sd = sd_of(p.val_loss);
    if (i >= grid_size) continue;
    if (std::isfinite(p.sd)) sds.push_back(p.sd);
    if (std::isfinite(p.mean) && (!std::isfinite(points[best].mean) || p.mean < points[best].mean)) best = i;
  }
  std::sort(sds.begin(), sds.end());
  const double noise = sds.empty() ? kNaN
                       : sds.size() % 2 == 1 ? sds[sds.size() / 2]
                                             : 0.5 * (sds[sds.size() / 2 - 1] + sds[sds.size() / 2]);
  const std::int64_t sweep_steps = static_cast<std::int64_t>(grid_size) * s.seeds * steps_per_run;
  const char* name = classification ? "β" : "u";
  fmt::print("d2r sweep: {} ({} training rows), PG ({} gradient) at {} fixed rewards × {} seeds, {} steps of {} rows "
             "each; validation {} per value:\n",
             o.data, train_rows, objective == InnerObjective::exact ? "exact" : "REINFORCE", values.size(), s.seeds,
             steps_per_run, rows_per_step,
             classification ? "cross-entropy" : "NLL/dim (original units)");
  fmt::print("  {:>10} {:>12} {:>10}\n", name, "mean", "sd");
  for (std::size_t i = 0; i < grid_size; ++i) {
    fmt::print("  {:>10.4g} {:>12.4f} {:>10.4f}\n", points[i].value, points[i].mean, points[i].sd);
  }
  const Point& b = points[best];
  fmt::print("best {} = {:.4g}{}: validation loss {:.4f}; seed noise (median sd over seeds) {:.4f}; {} inner steps "
             "in all; wall time {:.1f} s\n",
             name, b.value,
             classification || target_scale == 1 ? std::string()
                                                  : fmt::format(" (standardised targets; {:.4g} in original units)",
                                                                b.value / (target_scale * target_scale)),
             b.mean, noise, sweep_steps, wall);
  nlohmann::json j = run_header(kCmd, Context({.backend = parse_backend(o.device)}), o.precision);
  j["config"] = config;
  j["data"] = {{"path", o.data}, {"task", o.task}, {"train_rows", train_rows}, {"val_fraction", o.val_fraction},
               {"target_scale", target_scale}};
  j["reward"] = classification ? "beta" : "u (standardised targets)";
  nlohmann::json grid = nlohmann::json::array();
  std::vector<std::string> header{"value", "seed", "validation_loss", "train_loss", "validation_accuracy"};
  std::vector<std::vector<double>> rows;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const Point& p = points[i];
    if (i < grid_size) grid.push_back({{"value", p.value},
                    {"value_original_units", classification ? p.value : p.value / (target_scale * target_scale)},
                    {"validation_loss", p.val_loss},
                    {"train_loss", p.train_loss},
                    {"mean", p.mean},
                    {"sd", p.sd}});
    for (std::size_t k = 0; k < p.val_loss.size(); ++k) {
      rows.push_back({p.value, static_cast<double>(o.seed + k), p.val_loss[k], p.train_loss[k],
                      k < p.accuracy.size() ? p.accuracy[k] : kNaN});
    }
  }
  j["grid"] = grid;
  j["seeds"] = s.seeds;
  j["best"] = {{"value", b.value}, {"validation_loss", b.mean}, {"sd", b.sd}};
  j["seed_noise"] = noise;
  j["compute"] = {{"runs", values.size() * static_cast<std::size_t>(s.seeds)},
                  {"steps_per_run", steps_per_run},
                  {"rows_per_step", rows_per_step},
                  {"inner_steps", sweep_steps},
                  {"row_gradients", sweep_steps * rows_per_step}};
  j["wall_seconds"] = wall;
  // The comparison of DESIGN.md §7: PG at each learned reward, with the sweep's protocol and
  // seeds, within the seed noise of the best grid value. The tolerance: the difference of two
  // means of S seeds each has a standard deviation of noise·sqrt(2/S); 2 of those.
  const double tol = 2 * noise * std::sqrt(2.0 / static_cast<double>(s.seeds));
  nlohmann::json bj = nlohmann::json::array();
  for (std::size_t i = 0; i < bilevel_values.size(); ++i) {
    const Point& lp = points[grid_size + i];
    const nlohmann::json& res = bilevel_results[i];
    const double lb = lp.mean;
    const std::int64_t bsteps = res["final"].value("inner_steps", std::int64_t{0});
    const bool within = std::isfinite(lb) && lb <= b.mean + tol;
    const double share = static_cast<double>(bsteps) / static_cast<double>(sweep_steps);
    fmt::print("bilevel ({}): learned {} = {:.4g}, PG there: validation loss {:.4f} (sd {:.4f}); {} inner steps "
               "({:.0f} % of the sweep's), verdict {}: {} the sweep's best {:.4f} + tolerance {:.4f}\n",
               s.bilevel[i], name, lp.value, lb, lp.sd, bsteps, 100.0 * share,
               (res["verdict"].is_string() ? res["verdict"].get<std::string>() : std::string("?")), within ? "within" : "NOT within", b.mean, tol);
    bj.push_back({{"path", s.bilevel[i]},
                  {"value", lp.value},
                  {"outer_loss_of_bilevel_run", res["final"].value("outer_loss", kNaN)},
                  {"validation_loss", lp.val_loss},
                  {"mean", lb},
                  {"inner_steps", bsteps},
                  {"share_of_sweep_inner_steps", share},
                  {"verdict", res["verdict"]},
                  {"reason", res.value("reason", "")},
                  {"tolerance", tol},
                  {"within_noise_of_best", within}});
  }
  if (!bilevel_values.empty()) j["bilevel"] = bj;
  ensure_directory(out);
  write_csv(out / "sweep.csv", header, std::span<const std::vector<double>>(rows));
  write_json_atomic(out / "results.json", j);
  fmt::print("wrote {}, {}\n", (out / "results.json").string(), (out / "sweep.csv").string());
  return 0;
}

}  // namespace d2r::cli
