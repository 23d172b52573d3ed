// `d2r sweep`: policy gradient at a log-spaced grid of fixed rewards (u of U = u·I on the
// standardised targets for a regression, β of U = β·I for a classification), several seeds per
// value, the validation outer loss (NLL per dimension / cross-entropy of the validation rows) at
// each value and the best one — the brute-force answer `d2r fit --method bilevel` must match
// (DESIGN.md §7). With --bilevel DIR it reads that fit's results.json and says whether its outer
// loss is within the sweep's seed noise of the best, and at what share of the sweep's compute.
//
// Takes fit's data and training options (the same split, standardisation and PG settings as fit,
// so the numbers are comparable); writes results.json and sweep.csv into --out. --learner bilevel
// trains the bilevel inner learner's budget instead of fit --method pg's protocol (issue 13: the
// best reward depends on the learner's step count).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
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

/// One value of the grid: the validation and training outer loss of every seed's PG policy.
struct Point {
  double value = 0;
  std::vector<double> val_loss, train_loss, accuracy;
  double mean = kNaN, sd = kNaN;
};

Point point_at(double value) {
  Point p;
  p.value = value;
  return p;
}

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
      "Takes fit's data and PG options; --learner bilevel trains the bilevel inner learner's budget instead; writes "
      "results.json and sweep.csv into --out");
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
  cmd->add_option("--learner", o.learner,
                  "what is trained at each reward: pg (fit --method pg's protocol, what fit --final-model pg retrains at "
                  "the learned reward: REINFORCE unless --inner-objective exact; classification: --epochs of "
                  "--batch-size rows) or bilevel (the bilevel inner learner's budget: exact gradient, full batch, fresh "
                  "start, fit's --lr, for as many Adam steps as each --bilevel run's returned policy took (up to its returned outer step), one grid per distinct "
                  "count, or --steps; a warm-started run's policy trained along its path, so this matches it only "
                  "approximately; a run with --inner-start fixed --inner-tolerance 0: its K_in, the learner it judged)")
      ->check(CLI::IsMember({"pg", "bilevel"}))
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
  // The learner trained at each reward. "pg" (default): fit --method pg's protocol (REINFORCE unless
  // --inner-objective exact; classification: --epochs of --batch-size rows), the model fit trains at
  // the learned reward. "bilevel": exact gradient, full batch, fresh start, the fit's --lr, for as
  // many Adam steps as each bilevel run took in all (one grid per distinct count) or --steps. Issue
  // 13 (letter): the validation loss at a fixed β depends on the training length (best β 3.0 after 40
  // full-batch steps, 2.4 after 140 and 400, 2.2 after 1500 and with the 3000 minibatch steps of the
  // pg protocol), so the two learners can disagree on the best reward.
  const bool bilevel_learner = s.learner == "bilevel";
  if (bilevel_learner) {
    if (given(o, "--inner-objective") && o.inner_objective != "exact") {
      bad_input(kCmd, "--inner-objective",
                "--learner bilevel trains on the exact gradient (the bilevel preset's inner learner); use --learner pg "
                "for REINFORCE");
    }
    for (std::string_view n : {"--epochs", "--batch-size"}) {
      if (given(o, n)) bad_input(kCmd, n, "--learner bilevel trains full batch for --steps (or the bilevel runs' inner steps); use --learner pg for epochs of minibatches");
    }
  }
  // Step budgets: one grid per distinct budget; budget_of[i] is bilevel run i's group.
  std::vector<std::int64_t> budgets;
  std::vector<std::size_t> budget_of(bilevel_values.size(), 0);
  if (!bilevel_learner || given(o, "--steps") || bilevel_results.empty()) {
    budgets.push_back(bilevel_learner ? o.steps : 0);
  } else {
    for (std::size_t i = 0; i < bilevel_results.size(); ++i) {
      // A run with a fixed inner start judged a fresh learner of K_in steps at every φ (when its
      // budget is fixed: --inner-tolerance 0); otherwise its returned policy took the inner steps
      // of every outer step up to its own (final.model.inner_steps: --final-model best returns an
      // earlier step's; results.json of older runs: every inner step of the run).
      const nlohmann::json cfg = bilevel_results[i].value("config", nlohmann::json::object());
      const nlohmann::json& fin = bilevel_results[i]["final"];
      const bool fixed = cfg.value("inner_start", std::string()) == "fixed" && cfg.value("stationarity_tolerance", 1.0) == 0;
      const nlohmann::json model = fin.value("model", nlohmann::json::object());
      const std::int64_t n = fixed                            ? cfg.value("inner_steps", std::int64_t{0})
                             : model.contains("inner_steps") ? model.value("inner_steps", std::int64_t{0})
                                                              : fin.value("inner_steps", std::int64_t{0});
      if (n < 1) {
        bad_input(kCmd, "--bilevel",
                  fmt::format("'{}' records {} inner steps; give --steps for the sweep's learner", s.bilevel[i], n));
      }
      const auto it = std::find(budgets.begin(), budgets.end(), n);
      budget_of[i] = static_cast<std::size_t>(it - budgets.begin());
      if (it == budgets.end()) budgets.push_back(n);
    }
  }
  if (bilevel_learner && !(o.steps >= 1)) bad_input(kCmd, "--steps", fmt::format("expected >= 1, got {}", o.steps));
  set_cpu_threads(o.threads);
  const fs::path out = o.out;
  check_output_dir(kCmd, "--out", out);

  // PG's gradient: the exact expectation for the bilevel learner (and --learner pg
  // --inner-objective exact), else REINFORCE (fit --method pg).
  const InnerObjective objective =
      bilevel_learner || (given(o, "--inner-objective") && o.inner_objective == "exact") ? InnerObjective::exact
                                                                                        : InnerObjective::reinforce;
  const bool classification_task = classification;
  std::optional<RegressionInputs> rin;
  std::optional<ClassificationInputs> cin;
  double target_scale = 1;
  std::int64_t train_rows = 0;
  if (!classification_task) {
    rin = load_regression_inputs(o, kCmd);
    target_scale = rin->target_scale;
    train_rows = rin->train.rows;
  } else {
    cin = load_classification_inputs(o, kCmd);
    train_rows = cin->train.rows;
  }

  /// One grid (and the bilevel runs it judges) at one step budget.
  struct Group {
    std::int64_t budget = 0;  // 0: the pg protocol
    std::vector<Point> points;
    std::size_t grid_size = 0;
    std::vector<std::size_t> runs;  // indices into bilevel_values
    std::int64_t steps_per_run = 0, rows_per_step = 0;
    nlohmann::json config;
    std::size_t best = 0;
    double noise = kNaN;
  };
  std::vector<Group> groups(budgets.size());
  std::int64_t total_runs = 0;
  for (std::size_t g = 0; g < budgets.size(); ++g) {
    Group& gr = groups[g];
    gr.budget = budgets[g];
    for (double v : values) gr.points.push_back(point_at(v));
    gr.grid_size = gr.points.size();
    // The bilevel rewards are more points, run like the others but not candidates for the best.
    for (std::size_t i = 0; i < bilevel_values.size(); ++i) {
      if (budget_of[i] != g) continue;
      gr.runs.push_back(i);
      gr.points.push_back(point_at(bilevel_values[i]));
    }
    total_runs += static_cast<std::int64_t>(gr.points.size()) * s.seeds;
  }
  Progress progress("sweep", total_runs, !o.quiet, true);
  const auto t0 = std::chrono::steady_clock::now();
  std::string device;
  std::int64_t runs_done = 0;
  for (Group& gr : groups) {
    if (!classification_task) {
      const RegressionInputs& in = *rin;
      RegressionConfig c;
      c.method = Method::pg;
      c.double_precision = o.precision == "double";
      c.hidden = o.hidden;
      c.activation = o.activation == "tanh" ? Activation::tanh : Activation::relu;
      c.lambda = o.lambda;
      c.generations = o.generations;
      c.plain.steps = gr.budget > 0 ? gr.budget : o.steps;
      c.plain.adam.learning_rate = o.lr;  // fit's --lr: also the bilevel inner learning rate
      c.plain.gradient_clamp = 1;  // as the bilevel inner loop (InnerOptions::gradient_clamp)
      c.inner_objective = objective;
      c.plain.evaluate_every = c.plain.steps;
      c.target_mean = in.target_mean;
      c.target_scale = in.target_scale;
      gr.steps_per_run = c.plain.steps;
      gr.rows_per_step = in.train.rows;
      gr.config = config_json(c);
      for (Point& p : gr.points) {
        for (std::int64_t k = 0; k < s.seeds; ++k) {
          Context ctx({.backend = parse_backend(o.device), .seed = o.seed + static_cast<std::uint64_t>(k)});
          device = to_string(ctx.backend());
          c.reward_params = {p.value};
          c.seed = o.seed + static_cast<std::uint64_t>(k);
          RegressionRun run(ctx, c, in.train, in.val, kCmd);
          const RunResult r = run.run();
          p.val_loss.push_back(r.held_out.nll_per_dim);
          p.train_loss.push_back(r.train.nll_per_dim);
          progress.update(++runs_done, fmt::format("u = {:.4g}: validation NLL/dim {:.4f}", p.value, r.held_out.nll_per_dim));
        }
      }
    } else {
      const ClassificationInputs& in = *cin;
      ClassificationConfig c;
      c.method = ClassMethod::pg;
      c.double_precision = o.precision == "double";
      if (given(o, "--hidden")) c.hidden = o.hidden;
      c.activation = o.activation == "tanh" ? Activation::tanh : Activation::relu;
      c.lambda = o.lambda;
      if (given(o, "--generations")) c.generations = o.generations;
      // The bilevel learner: budget full-batch steps (one epoch = one step).
      c.plain.epochs = gr.budget > 0 ? gr.budget : o.epochs;
      c.plain.batch_size = gr.budget > 0 ? 0 : o.batch_size;
      // The bilevel inner loop clamps every gradient entry at c_in = 1 (InnerOptions::gradient_clamp);
      // at large β that changes the trajectory (iris, β = 163, 100 steps: validation 0.046 with the
      // clamp, 0.122 without; the bilevel run's own inner policy 0.042), so this learner clamps too.
      if (gr.budget > 0) c.plain.gradient_clamp = program_bilevel_defaults().inner.gradient_clamp;
      if (given(o, "--lr")) c.learning_rate = o.lr;
      c.inner_objective = objective;
      const std::int64_t B = c.plain.batch_size == 0 || c.plain.batch_size >= train_rows ? train_rows : c.plain.batch_size;
      gr.steps_per_run = c.plain.epochs * ((train_rows + B - 1) / B);
      gr.rows_per_step = B;
      gr.config = config_json(c);
      for (Point& p : gr.points) {
        for (std::int64_t k = 0; k < s.seeds; ++k) {
          Context ctx({.backend = parse_backend(o.device), .seed = o.seed + static_cast<std::uint64_t>(k)});
          device = to_string(ctx.backend());
          c.beta = p.value;
          c.seed = o.seed + static_cast<std::uint64_t>(k);
          ClassificationRun run(ctx, c, in.train, in.val, in.test, in.classes, kCmd);
          const ClassificationResult r = run.run();
          p.val_loss.push_back(r.validation.nll_per_dim);
          p.train_loss.push_back(r.train.nll_per_dim);
          p.accuracy.push_back(r.validation.accuracy);
          progress.update(++runs_done, fmt::format("β = {:.4g}: validation CE {:.4f}", p.value, r.validation.nll_per_dim));
        }
      }
    }
  }
  progress.finish();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // ---------------------------------------------------------------- summarise
  // The seed noise: the median over the grid values of the standard deviation over seeds of the
  // validation loss — the spread two runs at one reward differ by. The median, not a pooled sd:
  // at rewards where PG collapses the predicted spread the loss is huge and its sd with it.
  const char* name = classification ? "β" : "u";
  const char* learner_text = bilevel_learner ? "the bilevel inner learner: exact gradient, full batch, fresh start"
                             : objective == InnerObjective::exact ? "PG, exact gradient"
                                                                  : "PG, REINFORCE gradient";
  std::int64_t sweep_steps_all = 0;
  for (Group& gr : groups) {
    std::vector<double> sds;
    for (std::size_t i = 0; i < gr.points.size(); ++i) {
      Point& p = gr.points[i];
      p.mean = mean_of(p.val_loss);
      p.sd = sd_of(p.val_loss);
      if (i >= gr.grid_size) continue;
      if (std::isfinite(p.sd)) sds.push_back(p.sd);
      if (std::isfinite(p.mean) && (!std::isfinite(gr.points[gr.best].mean) || p.mean < gr.points[gr.best].mean)) gr.best = i;
    }
    std::sort(sds.begin(), sds.end());
    gr.noise = sds.empty() ? kNaN
               : sds.size() % 2 == 1 ? sds[sds.size() / 2]
                                     : 0.5 * (sds[sds.size() / 2 - 1] + sds[sds.size() / 2]);
    sweep_steps_all += static_cast<std::int64_t>(gr.grid_size) * s.seeds * gr.steps_per_run;
    fmt::print("d2r sweep: {} ({} training rows), {}, at {} fixed rewards × {} seeds, {} steps of {} rows "
               "each; validation {} per value:\n",
               o.data, train_rows, learner_text, values.size(), s.seeds, gr.steps_per_run, gr.rows_per_step,
               classification ? "cross-entropy" : "NLL/dim (original units)");
    fmt::print("  {:>10} {:>12} {:>10}\n", name, "mean", "sd");
    for (std::size_t i = 0; i < gr.grid_size; ++i) {
      fmt::print("  {:>10.4g} {:>12.4f} {:>10.4f}\n", gr.points[i].value, gr.points[i].mean, gr.points[i].sd);
    }
    const Point& b = gr.points[gr.best];
    fmt::print("best {} = {:.4g}{}: validation loss {:.4f}; seed noise (median sd over seeds) {:.4f}; {} inner "
               "steps\n",
               name, b.value,
               classification || target_scale == 1 ? std::string()
                                                    : fmt::format(" (standardised targets; {:.4g} in original units)",
                                                                  b.value / (target_scale * target_scale)),
               b.mean, gr.noise, static_cast<std::int64_t>(gr.grid_size) * s.seeds * gr.steps_per_run);
  }
  fmt::print("wall time {:.1f} s\n", wall);
  const auto grid_json = [&](const Group& gr) {
    nlohmann::json grid = nlohmann::json::array();
    for (std::size_t i = 0; i < gr.grid_size; ++i) {
      const Point& p = gr.points[i];
      grid.push_back({{"value", p.value},
                      {"value_original_units", classification ? p.value : p.value / (target_scale * target_scale)},
                      {"validation_loss", p.val_loss},
                      {"train_loss", p.train_loss},
                      {"mean", p.mean},
                      {"sd", p.sd}});
    }
    return grid;
  };
  const auto compute_json = [&](const Group& gr) {
    const std::int64_t steps = static_cast<std::int64_t>(gr.grid_size) * s.seeds * gr.steps_per_run;
    return nlohmann::json{{"runs", gr.grid_size * static_cast<std::size_t>(s.seeds)},
                          {"steps_per_run", gr.steps_per_run},
                          {"rows_per_step", gr.rows_per_step},
                          {"inner_steps", steps},
                          {"row_gradients", steps * gr.rows_per_step}};
  };
  nlohmann::json j = run_header(kCmd, Context({.backend = parse_backend(o.device)}), o.precision);
  j["learner"] = s.learner;
  j["config"] = groups[0].config;
  j["data"] = {{"path", o.data}, {"task", o.task}, {"train_rows", train_rows}, {"val_fraction", o.val_fraction},
               {"target_scale", target_scale}};
  j["reward"] = classification ? "beta" : "u (standardised targets)";
  // The first group at the top level (one group unless the bilevel runs' step counts differ); all
  // of them under "groups".
  const Group& g0 = groups[0];
  j["grid"] = grid_json(g0);
  j["seeds"] = s.seeds;
  j["best"] = {{"value", g0.points[g0.best].value},
               {"validation_loss", g0.points[g0.best].mean},
               {"sd", g0.points[g0.best].sd}};
  j["seed_noise"] = g0.noise;
  j["compute"] = compute_json(g0);
  nlohmann::json gj = nlohmann::json::array();
  for (const Group& gr : groups) {
    const Point& b = gr.points[gr.best];
    gj.push_back({{"steps_per_run", gr.steps_per_run},
                  {"grid", grid_json(gr)},
                  {"best", {{"value", b.value}, {"validation_loss", b.mean}, {"sd", b.sd}}},
                  {"seed_noise", gr.noise},
                  {"compute", compute_json(gr)}});
  }
  j["groups"] = gj;
  j["wall_seconds"] = wall;
  std::vector<std::string> header{"value", "seed", "validation_loss", "train_loss", "validation_accuracy", "steps"};
  std::vector<std::vector<double>> rows;
  for (const Group& gr : groups) {
    for (const Point& p : gr.points) {
      for (std::size_t k = 0; k < p.val_loss.size(); ++k) {
        rows.push_back({p.value, static_cast<double>(o.seed + k), p.val_loss[k], p.train_loss[k],
                        k < p.accuracy.size() ? p.accuracy[k] : kNaN, static_cast<double>(gr.steps_per_run)});
      }
    }
  }
  // The comparison of DESIGN.md §7: the learner at each learned reward, with the sweep's protocol
  // and seeds, within the seed noise of the best grid value of its group. The tolerance: the
  // difference of two means of S seeds each has a standard deviation of noise·sqrt(2/S); 2 of those.
  nlohmann::json bj = nlohmann::json::array();
  for (std::size_t i = 0; i < bilevel_values.size(); ++i) {
    const Group& gr = groups[budget_of[i]];
    const std::size_t pos = static_cast<std::size_t>(std::find(gr.runs.begin(), gr.runs.end(), i) - gr.runs.begin());
    const Point& lp = gr.points[gr.grid_size + pos];
    const Point& b = gr.points[gr.best];
    const double tol = 2 * gr.noise * std::sqrt(2.0 / static_cast<double>(s.seeds));
    const nlohmann::json& res = bilevel_results[i];
    const double lb = lp.mean;
    const std::int64_t bsteps = res["final"].value("inner_steps", std::int64_t{0});
    const std::int64_t grid_steps = static_cast<std::int64_t>(gr.grid_size) * s.seeds * gr.steps_per_run;
    const bool within = std::isfinite(lb) && lb <= b.mean + tol;
    const double share = static_cast<double>(bsteps) / static_cast<double>(grid_steps);
    fmt::print("bilevel ({}): learned {} = {:.4g}, the learner there ({} steps): validation loss {:.4f} (sd {:.4f}); "
               "{} inner steps ({:.0f} % of its grid's), verdict {}: {} the grid's best {:.4f} (at {:.4g}) + "
               "tolerance {:.4f}\n",
               s.bilevel[i], name, lp.value, gr.steps_per_run, lb, lp.sd, bsteps, 100.0 * share,
               (res["verdict"].is_string() ? res["verdict"].get<std::string>() : std::string("?")),
               within ? "within" : "NOT within", b.mean, b.value, tol);
    bj.push_back({{"path", s.bilevel[i]},
                  {"value", lp.value},
                  {"outer_loss_of_bilevel_run",
                   res["final"].value("model", nlohmann::json::object()).value("outer_loss", res["final"].value("outer_loss", kNaN))},
                  {"validation_loss", lp.val_loss},
                  {"mean", lb},
                  {"steps_per_run", gr.steps_per_run},
                  {"best_value", b.value},
                  {"best_validation_loss", b.mean},
                  {"seed_noise", gr.noise},
                  {"inner_steps", bsteps},
                  {"model_inner_steps", res["final"].value("model", nlohmann::json::object()).value("inner_steps", bsteps)},
                  {"share_of_sweep_inner_steps", share},
                  {"verdict", res["verdict"]},
                  {"reason", res.value("reason", "")},
                  {"tolerance", tol},
                  {"within_noise_of_best", within}});
  }
  if (!bilevel_values.empty()) j["bilevel"] = bj;
  (void)sweep_steps_all;
  ensure_directory(out);
  write_csv(out / "sweep.csv", header, std::span<const std::vector<double>>(rows));
  write_json_atomic(out / "results.json", j);
  fmt::print("wrote {}, {}\n", (out / "results.json").string(), (out / "sweep.csv").string());
  return 0;
}

}  // namespace d2r::cli
