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
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "d2r/d2r.hpp"
#include "d2r/sweep.hpp"
#include "host/cli/classification.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/fit_inputs.hpp"
#include "host/cli/output.hpp"
#include "host/cli/parallel.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kCmd = "sweep";
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

CLI::App* add_sweep_command(CLI::App& app, SweepOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "sweep",
      "PG at a log-spaced grid of fixed rewards (u of U = u·I on the standardised targets, or β), several seeds "
      "each: the validation outer loss at every value and the best one (the brute-force answer bilevel must match). "
      "Takes fit's data and PG options; --learner bilevel trains the bilevel inner learner's budget instead; writes "
      "results.json and sweep.csv into --out");
  register_fit_options(cmd, o.fit);
  add_shown_option(cmd, "--grid-min", o.grid_min, "smallest reward of the grid")->check(positive_number());
  add_shown_option(cmd, "--grid-max", o.grid_max, "largest reward of the grid")->check(positive_number());
  add_shown_option(cmd, "--points", o.points, "log-spaced grid values")
      ->check(CLI::Range(std::int64_t{2}, std::int64_t{10000}));
  cmd->add_option("--values", o.values, "explicit reward values instead of the grid, comma-separated")
      ->delimiter(',')
      ->check(positive_number());
  add_shown_option(cmd, "--seeds", o.seeds, "seeds per value (--seed, --seed + 1, ...; >= 2 gives the seed noise)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1000}));
  add_shown_option(cmd, "--learner", o.learner,
                   "what is trained at each reward: pg (fit --method pg's protocol, what fit --final-model pg retrains at "
                   "the learned reward: REINFORCE unless --inner-objective exact; classification: --epochs of "
                   "--batch-size rows) or bilevel (the bilevel inner learner's budget: exact gradient, full batch, fresh "
                   "start, fit's --lr, for as many Adam steps as each --bilevel run's returned policy took (up to its returned outer step), one grid per distinct "
                   "count, or --steps; a warm-started run's policy trained along its path, so this matches it only "
                   "approximately; a run with --inner-start fixed --inner-tolerance 0: its K_in, the learner it judged)")
      ->check(CLI::IsMember({"pg", "bilevel"}));
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
  const auto refuse = [&](std::string_view n) {
    if (given(o, n)) bad_input(kCmd, n, "not an option of sweep (it trains PG at fixed scalar rewards)");
  };
  for (std::string_view n : {"--method", "--u", "--beta", "--resume", "--reward", "--head", "--final-model"}) refuse(n);
  for (std::string_view n : kOuterLoopOptions) refuse(n);
  if (given(o, "--eval-every")) bad_input(kCmd, "--eval-every", "the sweep reads each run's final metrics only; drop it");
  if (!s.values.empty()) {  // the grid options would silently do nothing
    for (std::string_view n : {"--grid-min", "--grid-max", "--points"}) {
      if (given(o, n)) bad_input(kCmd, n, "not used with --values (the grid is the values given); drop one");
    }
  }
  if (!(s.grid_max > s.grid_min)) {
    bad_input(kCmd, "--grid-max", fmt::format("expected > --grid-min {}, got {}", s.grid_min, s.grid_max));
  }
  const std::vector<double> values = s.values.empty() ? runs::log_grid(s.grid_min, s.grid_max, s.points) : s.values;
  const bool classification = o.task == "classification";
  // The other task's options would silently do nothing (as in fit).
  constexpr std::string_view kRegressionOnly[] = {"--standardize-targets", "--targets"};
  constexpr std::string_view kClassificationOnly[] = {"--epochs", "--batch-size", "--label"};
  for (std::string_view n : classification ? std::span<const std::string_view>(kRegressionOnly)
                                           : std::span<const std::string_view>(kClassificationOnly)) {
    if (given(o, n)) bad_input(kCmd, n, fmt::format("only for --task {}", classification ? "regression" : "classification"));
  }
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
    const nlohmann::json cfg = res.value("config", nlohmann::json::object());
    // The same task, reward form and rows: a reward learned elsewhere is not comparable.
    if (res.contains("verdict") && cfg.value("task", std::string()) != o.task) {
      bad_input(kCmd, "--bilevel", fmt::format("'{}' is a {} fit; this sweep is --task {}", p.string(),
                                               cfg.value("task", std::string("?")), o.task));
    }
    // U = u·I: the scalar form, or a diagonal one of one target; a full form's parameter is R, not u.
    if (!classification && cfg.value("reward", std::string("scalar")) == "full") {
      bad_input(kCmd, "--bilevel", fmt::format("'{}' learned a full reward (U = R Rᵀ); the sweep's rewards are U = u·I",
                                               p.string()));
    }
    const char* key = o.task == "classification" ? "params" : "params_standardized";
    if (!res.contains("verdict") || !r.contains(key) || !r[key].is_array() || r[key].size() != 1 ||
        !r[key][0].is_number()) {
      bad_input(kCmd, "--bilevel",
                fmt::format("'{}' is not the results.json of a bilevel fit of one reward parameter (U = u·I) of this "
                            "task", p.string()));
    }
    if (cfg.value("data", nlohmann::json::object()).value("validation_rows", std::int64_t{1}) == 0) {
      bad_input(kCmd, "--bilevel", fmt::format("'{}' was fit without validation rows (--val-fraction 0): a sweep judges "
                                               "a reward by the validation loss",
                                               p.string()));
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
  } else if (classification && given(o, "--steps")) {
    bad_input(kCmd, "--steps", "--learner pg trains a classifier for --epochs of --batch-size rows (--steps is --learner "
                               "bilevel's budget); drop it");
  }
  // The exact gradient draws nothing.
  if ((bilevel_learner || (given(o, "--inner-objective") && o.inner_objective == "exact")) && given(o, "--generations")) {
    bad_input(kCmd, "--generations", fmt::format("not used by the exact gradient ({}: nothing is sampled); drop it",
                                                 bilevel_learner ? "--learner bilevel" : "--inner-objective exact"));
  }
  // The seed noise is the tolerance a learned reward is judged by: one seed has none.
  if (!s.bilevel.empty() && s.seeds < 2) {
    bad_input(kCmd, "--seeds", "judging a learned reward (--bilevel) needs the seed noise: expected --seeds 2 or more");
  }
  // Step budgets: one grid per distinct budget; budget_of[i] is bilevel run i's group. kStationary:
  // the learner of a fixed-start run trained to a tolerance (runs::SweepSettings::stationary), with
  // that run's tolerance, cap and K_in (one such setting per sweep).
  constexpr std::int64_t kStationary = -1;
  struct StationarySettings {
    double tolerance = 0;
    std::int64_t max_steps = 0, steps = 0;
    bool operator==(const StationarySettings&) const = default;
  };
  std::optional<StationarySettings> stationary;
  std::vector<std::int64_t> budgets;
  std::vector<std::size_t> budget_of(bilevel_values.size(), 0);
  if (!bilevel_learner || given(o, "--steps") || bilevel_results.empty()) {
    budgets.push_back(bilevel_learner ? o.steps : 0);
  } else {
    for (std::size_t i = 0; i < bilevel_results.size(); ++i) {
      // A run with a fixed inner start judged a fresh learner of K_in steps at every φ (when its
      // budget is fixed: --inner-tolerance 0), or trained to its tolerance from θ₀ (--preset
      // stationary); otherwise its returned policy took the inner steps of every outer step up to
      // its own (final.model.inner_steps: --final-model best returns an earlier step's; results.json
      // of older runs: every inner step of the run).
      const nlohmann::json cfg = bilevel_results[i].value("config", nlohmann::json::object());
      const nlohmann::json& fin = bilevel_results[i]["final"];
      const bool fixed_start = cfg.value("inner_start", std::string()) == "fixed";
      const double tolerance = cfg.value("stationarity_tolerance", 1.0);
      const bool fixed = fixed_start && tolerance == 0;
      const nlohmann::json model = fin.value("model", nlohmann::json::object());
      if (fixed_start && tolerance > 0) {
        const StationarySettings st{tolerance, cfg.value("inner_max_steps", std::int64_t{0}),
                                    cfg.value("inner_steps", std::int64_t{0})};
        if (stationary && !(*stationary == st)) {
          bad_input(kCmd, "--bilevel",
                    fmt::format("'{}' trained its inner policy to stationarity with other settings than the runs "
                                "before it (tolerance {}, at most {} steps, {} at a time); sweep them separately",
                                s.bilevel[i], st.tolerance, st.max_steps, st.steps));
        }
        stationary = st;
        const auto it = std::find(budgets.begin(), budgets.end(), kStationary);
        budget_of[i] = static_cast<std::size_t>(it - budgets.begin());
        if (it == budgets.end()) budgets.push_back(kStationary);
        continue;
      }
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
  // The sweep's files: an earlier run's are replaced only with --overwrite, and never a judged fit's folder.
  static const std::vector<std::string> kSweepFiles{"results.json", "sweep.csv"};
  for (const std::string& dir : s.bilevel) {
    std::error_code ec;
    if (fs::exists(out, ec) && fs::equivalent(out, dir, ec)) {
      bad_input(kCmd, "--out", fmt::format("'{}' is the folder of a --bilevel fit it judges; choose another --out", dir));
    }
  }
  check_run_dir(kCmd, "--out", out, false, o.overwrite, kSweepFiles);

  // PG's gradient: the exact expectation for the bilevel learner (and --learner pg
  // --inner-objective exact), else REINFORCE (fit --method pg).
  const InnerObjective objective =
      bilevel_learner || (given(o, "--inner-objective") && o.inner_objective == "exact") ? InnerObjective::exact
                                                                                        : InnerObjective::reinforce;
  std::optional<RegressionInputs> rin;
  std::optional<ClassificationInputs> cin;
  double target_scale = 1;
  std::int64_t train_rows = 0;
  if (!classification) {
    rin = load_regression_inputs(o, kCmd);
    target_scale = rin->target_scale;
    train_rows = rin->train.rows;
  } else {
    cin = load_classification_inputs(o, kCmd);
    train_rows = cin->train.rows;
  }
  // The rows each learned reward was fit on (fit's config.data.hash): the same file, columns, split and
  // scaling. The options that choose them are named where they differ.
  const std::string rows_hash = classification ? runs::data_hash(cin->train, cin->val, cin->test)
                                               : runs::data_hash(rin->train, rin->val);
  std::vector<std::string> sweep_warnings;
  for (std::size_t i = 0; i < bilevel_results.size(); ++i) {
    const nlohmann::json& cfg = bilevel_results[i]["config"];
    const nlohmann::json d = cfg.value("data", nlohmann::json::object());
    if (!d.contains("hash")) {
      sweep_warnings.push_back(fmt::format("'{}' records no data hash (an older d2r): it is judged without checking "
                                           "that it was fit on these rows", s.bilevel[i]));
      continue;
    }
    if (d["hash"] == rows_hash) continue;
    std::vector<std::string> differ;
    const auto differs = [&](const char* field, const nlohmann::json& mine, const char* option) {
      if (d.contains(field) && d[field] != mine) differ.push_back(fmt::format("{} {} (here {})", option, json_text(d[field], -1), json_text(mine, -1)));
    };
    if (classification) {
      differs("label", o.label, "--label");
    } else {
      differs("targets", o.targets, "--targets");
      differs("standardize_targets", o.standardize_targets, "--standardize-targets");
    }
    differs("val_fraction", o.val_fraction, "--val-fraction");
    differs("standardize", classification || o.standardize, "--standardize");
    if (cfg.value("seed", o.seed) != o.seed) differ.push_back(fmt::format("--seed {} (here {})", cfg.value("seed", o.seed), o.seed));
    bad_input(kCmd, "--bilevel",
              fmt::format("'{}' was fit on other rows than this sweep's (data hash {}, here {}){}", s.bilevel[i],
                          json_text(d["hash"], -1), rows_hash,
                          differ.empty() ? std::string(": another data file or --features?")
                                         : fmt::format(": the fit had {}", fmt::join(differ, ", "))));
  }
  // The learner's settings from fit's options (runs::sweep_learner applies a bilevel budget).
  RegressionConfig rc;
  ClassificationConfig cc;
  if (!classification) {
    rc = shared_config(o, *rin);
    rc.plain.gradient_clamp = 1;  // as the bilevel inner loop (InnerOptions::gradient_clamp)
    rc.inner_objective = objective;
  } else {
    cc = shared_config(o, *cin);
    cc.inner_objective = objective;
  }
  // The policy and objective the judged rewards were learned for: the sweep trains the same network
  // at the same λ and precision, and the bilevel learner at the judged runs' inner rate (fit's --lr),
  // full batch, on the exact gradient; another would judge another learner.
  const double sweep_lr = classification ? cc.learning_rate : rc.plain.adam.learning_rate;
  const nlohmann::json sweep_hidden = classification ? cc.hidden : rc.hidden;
  const std::string sweep_activation = d2r::to_string(classification ? cc.activation : rc.activation);
  for (std::size_t i = 0; i < bilevel_results.size(); ++i) {
    const nlohmann::json cfg = bilevel_results[i].value("config", nlohmann::json::object());
    const auto same = [&](const char* field, const nlohmann::json& mine, const char* option) {
      if (cfg.contains(field) && cfg[field] != mine) {
        bad_input(kCmd, option, fmt::format("'{}' learned its reward for {} {}, this sweep trains {}: give {} {}",
                                            s.bilevel[i], option, json_text(cfg[field], -1), json_text(mine, -1), option,
                                            json_text(cfg[field], -1)));
      }
    };
    same("hidden", sweep_hidden, "--hidden");
    same("activation", sweep_activation, "--activation");
    same("lambda", o.lambda, "--lambda");
    same("precision", o.precision, "--precision");
    if (!bilevel_learner) continue;
    const double fit_lr = cfg.value("inner_learning_rate", sweep_lr);
    if (std::abs(fit_lr - sweep_lr) > 1e-9 * fit_lr) {
      bad_input(kCmd, "--lr", fmt::format("'{}' trained its inner policy at --lr {}, the sweep's learner at {}: give "
                                          "--lr {}", s.bilevel[i], fit_lr, sweep_lr, fit_lr));
    }
    if (cfg.value("inner_batch_size", std::int64_t{0}) != 0 || cfg.value("inner_objective", std::string("exact")) != "exact") {
      bad_input(kCmd, "--bilevel", fmt::format("'{}' trained its inner policy on {}; --learner bilevel is the exact-gradient, "
                                               "full-batch learner (use --learner pg)",
                                               s.bilevel[i],
                                               cfg.value("inner_batch_size", std::int64_t{0}) != 0
                                                   ? fmt::format("windows of {} rows", cfg.value("inner_batch_size", std::int64_t{0}))
                                                   : std::string("REINFORCE samples")));
    }
  }
  if (stationary) {  // the runs' learner: the stationary preset with their tolerance, cap and K_in
    const auto set = [&](auto& c) {
      runs::apply_bilevel_preset(c, "stationary");
      c.bilevel.inner.stationarity_tolerance = stationary->tolerance;
      c.bilevel.inner.max_steps = stationary->max_steps;
      c.bilevel.inner.steps = stationary->steps;
    };
    if (classification) {
      set(cc);
    } else {
      set(rc);
    }
  }
  // The learner of a group's budget (kStationary: the stationary one).
  const auto learner_of = [&](const auto& base, std::int64_t budget) {
    return runs::sweep_learner(base, budget == kStationary ? 0 : budget, budget == kStationary);
  };

  /// One grid (and the bilevel runs it judges) at one step budget.
  struct Group {
    runs::SweepSettings settings;
    std::vector<std::size_t> runs;  // indices into bilevel_values
    nlohmann::json config;
    runs::SweepResult result;
  };
  std::vector<Group> groups(budgets.size());
  std::int64_t total_runs = 0;
  const Context check_ctx({.backend = parse_backend(o.device)});
  for (std::size_t g = 0; g < budgets.size(); ++g) {
    Group& gr = groups[g];
    gr.settings = {.values = values, .judged = {}, .seeds = s.seeds, .seed = o.seed,
                   .budget = budgets[g] == kStationary ? 0 : budgets[g], .stationary = budgets[g] == kStationary,
                   .context = {.backend = parse_backend(o.device)}};
    // The bilevel rewards are more points, run like the others but not candidates for the best.
    for (std::size_t i = 0; i < bilevel_values.size(); ++i) {
      if (budget_of[i] != g) continue;
      gr.runs.push_back(i);
      gr.settings.judged.push_back(bilevel_values[i]);
    }
    total_runs += static_cast<std::int64_t>(values.size() + gr.runs.size()) * s.seeds;
    // The settings and data checked naming the user's options, at every reward, before any run.
    std::vector<double> all = values;
    all.insert(all.end(), gr.settings.judged.begin(), gr.settings.judged.end());
    for (double v : all) {
      if (!classification) {
        RegressionConfig c = learner_of(rc, budgets[g]);
        c.reward_params = {v};
        check_as_user(kCmd, c, rin->train, rin->val, check_ctx);
      } else {
        ClassificationConfig c = learner_of(cc, budgets[g]);
        c.beta = v;
        check_as_user(kCmd, c, cin->train, cin->val, cin->test, cin->classes, check_ctx);
      }
    }
    gr.config = classification ? config_json(learner_of(cc, budgets[g])) : config_json(learner_of(rc, budgets[g]));
  }
  claim_run_dir(kCmd, "--out", out, false, o.overwrite, kSweepFiles);  // every check is done: lock --out
  Progress progress("sweep", total_runs, !o.quiet, true);
  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t runs_done = 0;
  const auto report = [&](double value, std::int64_t, double loss) {
    progress.update(++runs_done, classification ? fmt::format("β = {:.4g}: validation CE {:.4f}", value, loss)
                                                : fmt::format("u = {:.4g}: validation NLL/dim {:.4f}", value, loss));
  };
  for (Group& gr : groups) {
    gr.result = classification
                    ? runs::sweep(cc, cin->train, cin->val, cin->test, cin->classes, gr.settings, data_parallel(), kCmd, report)
                    : runs::sweep(rc, rin->train, rin->val, gr.settings, data_parallel(), kCmd, report);
  }
  progress.finish();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // ---------------------------------------------------------------- summarise
  const char* name = classification ? "β" : "u";
  const char* learner_text = bilevel_learner ? "the bilevel inner learner: exact gradient, full batch, fresh start"
                             : objective == InnerObjective::exact ? "PG, exact gradient"
                                                                  : "PG, REINFORCE gradient";
  // A run's steps: the budget, or (the stationary learner) as many as it took, "N–M".
  const auto steps_text = [](const runs::SweepResult& r, const std::vector<runs::SweepPoint>& points) {
    if (r.steps_per_run > 0) return fmt::format("{}", r.steps_per_run);
    std::int64_t lo = std::numeric_limits<std::int64_t>::max(), hi = 0;
    for (const runs::SweepPoint& p : points) {
      for (std::int64_t k : p.steps) lo = std::min(lo, k), hi = std::max(hi, k);
    }
    return hi == 0 ? std::string("0") : lo == hi ? fmt::format("{}", lo) : fmt::format("{}–{}", lo, hi);
  };
  for (const Group& gr : groups) {
    const runs::SweepResult& r = gr.result;
    const std::string learner =
        gr.settings.stationary
            ? fmt::format("the stationary inner learner: from θ₀ to ‖∇θ L_in‖ <= {} of its start, at most {} steps",
                          stationary->tolerance, stationary->max_steps)
            : std::string(learner_text);
    fmt::print("d2r sweep: {} ({} training rows), {}, at {} fixed rewards × {} seeds, {} steps of {} rows "
               "each; validation {} per value:\n",
               o.data, train_rows, learner, values.size(), s.seeds, steps_text(r, r.grid), r.rows_per_step,
               classification ? "cross-entropy" : "NLL/dim (original units)");
    fmt::print("  {:>10} {:>12} {:>10}\n", name, "mean", "sd");
    for (const runs::SweepPoint& p : r.grid) fmt::print("  {:>10.4g} {:>12.4f} {:>10.4f}\n", p.value, p.mean, p.sd);
    const runs::SweepPoint& b = r.grid[r.best];
    fmt::print("best {} = {:.4g}{}: validation loss {:.4f}; seed noise (median sd over seeds) {:.4f}; {} inner "
               "steps\n",
               name, b.value,
               classification || target_scale == 1 ? std::string()
                                                    : fmt::format(" (standardised targets; {:.4g} in original units)",
                                                                  b.value / (target_scale * target_scale)),
               b.mean, r.noise, r.inner_steps());
  }
  fmt::print("wall time {:.1f} s\n", wall);
  const auto grid_json = [&](const runs::SweepResult& r) {
    nlohmann::json grid = nlohmann::json::array();
    for (const runs::SweepPoint& p : r.grid) {
      grid.push_back({{"value", p.value},
                      {"value_original_units", classification ? p.value : p.value / (target_scale * target_scale)},
                      {"validation_loss", p.validation_loss},
                      {"train_loss", p.train_loss},
                      {"mean", p.mean},
                      {"sd", p.sd}});
    }
    return grid;
  };
  const auto compute_json = [](const runs::SweepResult& r) {
    return nlohmann::json{{"runs", r.runs()},
                          {"steps_per_run", r.steps_per_run},
                          {"rows_per_step", r.rows_per_step},
                          {"inner_steps", r.inner_steps()},
                          {"row_gradients", r.row_gradients()}};
  };
  const auto best_json = [](const runs::SweepResult& r) {
    const runs::SweepPoint& b = r.grid[r.best];
    return nlohmann::json{{"value", b.value}, {"validation_loss", b.mean}, {"sd", b.sd}};
  };
  nlohmann::json j = run_header(kCmd, Context({.backend = parse_backend(o.device)}), o.precision);
  j["learner"] = s.learner;
  j["config"] = groups[0].config;
  j["data"] = {{"path", o.data}, {"task", o.task}, {"train_rows", train_rows}, {"val_fraction", o.val_fraction},
               {"target_scale", target_scale}};
  j["reward"] = classification ? "beta" : "u (standardised targets)";
  // The first group at the top level (one group unless the bilevel runs' step counts differ); all
  // of them under "groups".
  const runs::SweepResult& g0 = groups[0].result;
  j["grid"] = grid_json(g0);
  j["seeds"] = s.seeds;
  j["best"] = best_json(g0);
  j["seed_noise"] = g0.noise;
  j["compute"] = compute_json(g0);
  nlohmann::json gj = nlohmann::json::array();
  for (const Group& gr : groups) {
    const runs::SweepResult& r = gr.result;
    gj.push_back({{"steps_per_run", r.steps_per_run},
                  {"grid", grid_json(r)},
                  {"best", best_json(r)},
                  {"seed_noise", r.noise},
                  {"compute", compute_json(r)}});
  }
  j["groups"] = gj;
  j["wall_seconds"] = wall;
  runs::RecordTable table;
  for (const Group& gr : groups) runs::append_sweep_rows(table, gr.result, o.seed);
  // The comparison of DESIGN.md §7: the learner at each learned reward, with the sweep's protocol
  // and seeds, within the seed noise of the best grid value of its group (SweepResult::tolerance).
  nlohmann::json bj = nlohmann::json::array();
  for (std::size_t i = 0; i < bilevel_values.size(); ++i) {
    const Group& gr = groups[budget_of[i]];
    const runs::SweepResult& r = gr.result;
    const std::size_t pos = static_cast<std::size_t>(std::find(gr.runs.begin(), gr.runs.end(), i) - gr.runs.begin());
    const runs::SweepPoint& lp = r.judged[pos];
    const runs::SweepPoint& b = r.grid[r.best];
    const nlohmann::json& res = bilevel_results[i];
    const std::int64_t bsteps = res["final"].value("inner_steps", std::int64_t{0});
    const bool within = r.within_noise_of_best(lp);
    // The model the fit returned: its own validation outer loss against the same best and tolerance.
    const double returned_loss = res["final"].value("model", nlohmann::json::object()).value("outer_loss", res["final"].value("outer_loss", kNaN));
    const bool returned_within = r.within_noise_of_best(returned_loss);
    const double share = static_cast<double>(bsteps) / static_cast<double>(r.inner_steps());
    fmt::print("bilevel ({}): learned {} = {:.4g}, the learner there ({} steps): validation loss {:.4f} (sd {:.4f}); "
               "{} inner steps ({:.0f} % of its grid's), verdict {}: {} the grid's best {:.4f} (at {:.4g}) + "
               "tolerance {:.4f}\n",
               s.bilevel[i], name, lp.value, steps_text(r, {lp}), lp.mean, lp.sd, bsteps, 100.0 * share,
               (res["verdict"].is_string() ? res["verdict"].get<std::string>() : std::string("?")),
               within ? "within" : "NOT within", b.mean, b.value, r.tolerance);
    fmt::print("bilevel ({}): the model the fit returned: validation loss {:.4f}, {} the grid's best + tolerance\n",
               s.bilevel[i], returned_loss, returned_within ? "within" : "NOT within");
    bj.push_back({{"path", s.bilevel[i]},
                  {"value", lp.value},
                  {"outer_loss_of_bilevel_run", returned_loss},
                  {"returned_model_within_noise_of_best", returned_within},
                  {"validation_loss", lp.validation_loss},
                  {"mean", lp.mean},
                  {"steps_per_run", r.steps_per_run},
                  {"best_value", b.value},
                  {"best_validation_loss", b.mean},
                  {"seed_noise", r.noise},
                  {"inner_steps", bsteps},
                  {"model_inner_steps", res["final"].value("model", nlohmann::json::object()).value("inner_steps", bsteps)},
                  {"share_of_sweep_inner_steps", share},
                  {"verdict", res["verdict"]},
                  {"reason", res.value("reason", "")},
                  {"tolerance", r.tolerance},
                  {"within_noise_of_best", within}});
  }
  if (!bilevel_values.empty()) j["bilevel"] = bj;
  // No run ends with exit 0 and non-finite results: a grid without one finite mean has no best.
  std::vector<std::string> warnings = sweep_warnings;
  std::string diverged;
  for (const Group& gr : groups) {
    std::size_t bad = 0;
    for (const runs::SweepPoint& p : gr.result.grid) bad += std::isfinite(p.mean) ? 0 : 1;
    for (std::size_t k = 0; k < gr.result.judged.size(); ++k) {
      if (!std::isfinite(gr.result.judged[k].mean)) {
        warnings.push_back(fmt::format("the learner at the reward learned by '{}' ({:.4g}) diverged (non-finite validation "
                                       "loss): not within the noise of the best",
                                       s.bilevel[gr.runs[k]], gr.result.judged[k].value));
      }
    }
    if (bad == gr.result.grid.size()) {
      diverged = fmt::format("no value of the grid trained to a finite validation loss (all {} diverged)", bad);
    } else if (bad > 0) {
      warnings.push_back(fmt::format("{} of the {} grid values gave a non-finite validation loss (the learner "
                                     "diverged there); the best is among the others",
                                     bad, gr.result.grid.size()));
    }
  }
  for (const std::string& w : warnings) fmt::print(stderr, "warning: {}\n", w);
  j["status"] = diverged.empty() ? "ok" : "diverged";
  j["reason"] = diverged;
  j["warnings"] = warnings;
  write_csv(out / "sweep.csv", table.header, std::span<const std::vector<double>>(table.rows));
  write_json_atomic(out / "results.json", j);
  fmt::print("wrote {}, {}\n", (out / "results.json").string(), (out / "sweep.csv").string());
  if (!diverged.empty()) {
    fmt::print(stderr, "error: d2r sweep: {}; results.json in '{}' records it (try a smaller --lr or other "
               "rewards)\n", diverged, out.string());
    return 3;
  }
  return 0;
}

}  // namespace d2r::cli
