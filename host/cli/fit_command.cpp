// `d2r fit`: trains a Gaussian regression policy on a CSV file by MSE, NLL, policy gradient with a
// fixed or heuristic reward, or with the reward learned by the bilevel trainer; prints the metrics
// and writes results.json, curves.csv and (bilevel) a resumable checkpoint into --out.
// `--task classification` trains a categorical policy (logistic regression by default) on a label
// column by cross-entropy, PG with U = β·I, PG with the heuristic β* or the bilevel-learned β
// (classification.hpp), with the paper's stratified test/validation splits and standardisation.
//
// Everything is validated (options, data file, columns, cells, split, trainer settings, output
// directory) before any training; nothing is written into --out on bad input.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <span>
#include <string_view>

#include <fmt/format.h>

#include "d2r/d2r.hpp"
#include "d2r/fit_records.hpp"
#include "host/cli/classification.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/fit_inputs.hpp"
#include "host/cli/output.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kCmd = "fit";
constexpr const char* kCheckpoint = "checkpoint.ckpt";
constexpr const char* kCheckpointConfig = "checkpoint.json";
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// The bilevel outer-loop settings of a run: the preset, then every option given explicitly.
template <class Config>
void apply_outer_options(const FitOptions& o, Config& c) {
  apply_bilevel_preset(c, o.preset);
  if (given(o, "--inner-steps")) c.bilevel.inner.steps = o.inner_steps;
  if (given(o, "--outer-data")) c.bilevel.outer_data = named(o.outer_data, {OuterData::train, OuterData::validation});
  if (given(o, "--inner-start")) {
    c.bilevel.inner_start = named(o.inner_start, {InnerStart::warm, InnerStart::fresh, InnerStart::fixed});
  }
  if (given(o, "--inner-objective")) {
    c.inner_objective = named(o.inner_objective, {InnerObjective::reinforce, InnerObjective::exact});
  }
  if (given(o, "--solver")) {
    c.bilevel.solver = named(o.solver, {ImplicitSolver::normal_cg, ImplicitSolver::conjugate_gradient,
                                        ImplicitSolver::neumann, ImplicitSolver::cg_or_normal_cg});
  }
  if (given(o, "--solver-iterations")) c.bilevel.cg.max_iterations = o.solver_iterations;
  if (given(o, "--outer-step")) c.bilevel.rprop.initial_step = o.outer_step;
  if (given(o, "--flat-tolerance")) c.bilevel.rprop.flat_tolerance = o.flat_tolerance;
  if (given(o, "--inner-tolerance")) c.bilevel.inner.stationarity_tolerance = o.inner_tolerance;
  if (given(o, "--inner-max-steps")) c.bilevel.inner.max_steps = o.inner_max_steps;
  if (given(o, "--solver-tolerance")) c.bilevel.cg.tolerance = o.solver_tolerance;
  if (given(o, "--damping")) c.bilevel.cg.damping = o.damping;
  if (given(o, "--window")) c.bilevel.stopping.window = o.window;
  if (given(o, "--reward-tolerance")) c.bilevel.stopping.reward_tolerance = o.reward_tolerance;
  if (given(o, "--loss-tolerance")) c.bilevel.stopping.loss_tolerance = o.loss_tolerance;
  if (given(o, "--patience")) c.bilevel.stopping.patience = o.patience;
  c.bilevel.curvature = named(o.curvature, {CurvatureKind::exact, CurvatureKind::surrogate});
  // An option that sets only fields these settings never read would silently do nothing. (The
  // inner objective is the configuration's: the run writes it into the options, and --final-model
  // pg trains the epochs with it too.)
  const std::vector<std::string> inert = inert_fields(runs::bilevel_options<double>(c));
  const bool rprop = c.bilevel.optimizer == OuterOptimizer::rprop;
  const std::string outer = fmt::format("the {} outer optimiser of --preset {} ({})", rprop ? "Rprop" : "Adam", o.preset,
                                        rprop ? "--outer-step sets its step" : "--outer-lr sets its rate");
  const std::pair<std::string_view, std::string_view> sets[] = {{"--outer-lr", "outer_adam.learning_rate"},
                                                                {"--outer-step", "rprop.initial_step"},
                                                                {"--flat-tolerance", "rprop.flat_tolerance"},
                                                                {"--solver-iterations", "cg.max_iterations"},
                                                                {"--solver-tolerance", "cg.tolerance"},
                                                                {"--generations", "inner.generations"}};
  for (const auto& [option, field] : sets) {
    if (given(o, option) && is_inert(inert, field)) {
      const std::string why = field.starts_with("cg.")      ? std::string("--solver neumann")
                              : field.starts_with("inner.") ? fmt::format("--inner-objective exact with --curvature exact "
                                                                          "(--preset {}: nothing is sampled)", o.preset)
                                                            : outer;
      bad_input(kCmd, option, fmt::format("not used by {}; drop it", why));
    }
  }
}

/// --final-model (inner: the old name of last), or the preset's: recommended best, paper last
/// (classification: pg, the paper's tabular protocol).
runs::FinalModel final_model(const FitOptions& o, const std::string& preset, bool classification) {
  using runs::FinalModel;
  if (!given(o, "--final-model")) {
    return preset == "paper" ? (classification ? FinalModel::pg : FinalModel::last) : FinalModel::best;
  }
  return named(o.final_model, {FinalModel::last, FinalModel::best, FinalModel::pg});  // "inner": last
}

/// The verdict of a bilevel run on stdout and as the exit code (0 converged, 4 step_limited, 3
/// diverged); warnings on stderr.
int report_verdict(const BilevelVerdict& v, const std::vector<std::string>& warnings) {
  for (const std::string& w : warnings) fmt::print(stderr, "warning: {}\n", w);
  fmt::print("verdict: {} ({})\n", to_string(v.status), v.reason);
  switch (v.status) {
    case BilevelStatus::converged: return 0;
    case BilevelStatus::diverged: return 3;
    default: return 4;
  }
}

/// Options of one task given with the other: bad input, naming the first.
void reject_options(const FitOptions& o, std::initializer_list<std::string_view> names, std::string_view why) {
  for (std::string_view n : names) {
    if (given(o, n)) bad_input(kCmd, n, std::string(why));
  }
}

/// Which methods use an option, per task ("" = none: the task refuses it elsewhere; "*" = every
/// method). An option not listed is used by every method; those of kOuterLoopOptions by bilevel
/// alone. A new option of one method gets a row.
struct OptionUse {
  std::string_view option, regression, classification;
};
constexpr OptionUse kOptionUse[] = {
    {"--reward", "pg heuristic bilevel", ""},
    {"--lambda", "pg heuristic bilevel", "pg heuristic bilevel"},
    {"--generations", "pg heuristic bilevel", "pg heuristic bilevel"},
    {"--steps", "mse nll pg heuristic", ""},
    {"--eval-every", "mse nll pg heuristic", ""},
    {"--inner-objective", "bilevel", "bilevel"},
    {"--final-model", "bilevel", "bilevel"},
};

/// Refuses an option given on the command line that the chosen method does not use: accepting it
/// would silently do nothing.
void reject_unused_options(const FitOptions& o, bool classification) {
  std::vector<OptionUse> uses(std::begin(kOptionUse), std::end(kOptionUse));
  for (std::string_view n : kOuterLoopOptions) uses.push_back({n, "bilevel", "bilevel"});
  for (const OptionUse& u : uses) {
    const std::string_view users = classification ? u.classification : u.regression;
    if (users.empty() || users == "*" || !given(o, u.option)) continue;
    bool used = false;
    for (std::size_t at = 0; at < users.size();) {
      const std::size_t end = std::min(users.find(' ', at), users.size());
      used = used || users.substr(at, end - at) == o.method;
      at = end + 1;
    }
    if (!used) {
      std::string list(users);
      std::replace(list.begin(), list.end(), ' ', '/');
      bad_input(kCmd, u.option,
                fmt::format("not used by --method {}{} (an option of --method {}); drop it", o.method,
                            classification ? " --task classification" : "", list));
    }
  }
}

/// Standard output must take what the run prints; checked before training (the header is out)
/// and at the end. SIGPIPE is ignored (main), so a closed pipe shows here as EPIPE.
bool stdout_ok() { return std::fflush(stdout) == 0 && std::ferror(stdout) == 0; }

/// The exit code of a finished run: 3 when it diverged (the reason printed), 1 when standard output
/// failed (the results are written), else 0.
int finish_run(const std::string& diverged, const fs::path& out) {
  const bool out_ok = stdout_ok();
  if (!diverged.empty()) {
    fmt::print(stderr,
               "error: d2r fit: the run diverged: {}; results.json in '{}' records it (try a smaller --lr, "
               "--standardize, or rescaled data)\n",
               diverged, out.string());
    return 3;
  }
  if (!out_ok) {
    fmt::print(stderr, "error: d2r fit: cannot write the report to standard output ({}); the results are in '{}'\n",
               std::strerror(errno), out.string());
    return 1;
  }
  return 0;
}

/// The bilevel settings of a configuration (RegressionConfig, ClassificationConfig) in the words of
/// the header `d2r fit` prints; `outer_loss` names the outer loss ("loss", "cross-entropy").
template <class Config>
std::string describe_bilevel(const Config& c, std::string_view curvature, std::int64_t train_rows,
                             std::string_view outer_loss) {
  return fmt::format(
      "K_out = {}, K_in = {} inner steps ({}{}), {} inner start, {} inner gradient, {} curvature, solver {} ({} "
      "iterations at most, "
      "tolerance {}, damping {}), outer {}, outer {} on the {} rows",
      c.outer_steps, c.bilevel.inner.steps,
      c.bilevel.inner.batch_size > 0 && c.bilevel.inner.batch_size < train_rows
          ? fmt::format("windows of {} shuffled rows", c.bilevel.inner.batch_size)
          : std::string("full batch"),
      c.bilevel.inner.stationarity_tolerance > 0
          ? fmt::format(", until ‖∇‖ < {} of its start, at most {}", c.bilevel.inner.stationarity_tolerance, c.bilevel.inner.max_steps)
          : std::string(),
      d2r::to_string(c.bilevel.inner_start),
      d2r::to_string(c.inner_objective), curvature, to_string(c.bilevel.solver), c.bilevel.cg.max_iterations,
      c.bilevel.cg.tolerance, c.bilevel.cg.damping,
      c.bilevel.optimizer == OuterOptimizer::rprop
          ? fmt::format("log-space Rprop from step {}", c.bilevel.rprop.initial_step)
          : fmt::format("Adam {}{}", c.bilevel.outer_adam.learning_rate, c.bilevel.reset_outer_optimizer ? " (re-created each step)" : ""),
      outer_loss, c.bilevel.outer_data == OuterData::validation ? "validation" : "training");
}

/// The settings and data identity lines of a checkpoint: the flattened config ("a.b = json").
void flatten_json(const nlohmann::json& j, const std::string& prefix, std::vector<std::pair<std::string, std::string>>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) flatten_json(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
  } else {
    out.emplace_back(prefix, json_text(j, -1));
  }
}

/// Every run, after validation: claims --out (lock, stale temporaries, --overwrite). Bilevel runs
/// (both tasks) then: the --resume identity check against DIR/checkpoint.json (the settings named
/// as the user knows them), the checkpoint's own fingerprint (every library option, the data's
/// hash, and these settings as identity lines: a checkpoint copied alone into another folder is
/// checked as fully), the restore, then the identity file and the periodic checkpoint. Returns the
/// outer steps already done (0 for a new run).
template <class Run>
std::int64_t setup_checkpoint(const FitOptions& o, const nlohmann::json& config, const fs::path& out, Run& run,
                              bool bilevel) {
  const fs::path ckpt = out / kCheckpoint, ckpt_config = out / kCheckpointConfig;
  nlohmann::json identity = config;  // what must match to resume (not the step count)
  identity.erase("outer_steps");
  identity.erase("library_options");  // the checkpoint's own fingerprint holds every library option
  identity.erase("final_model");  // what is reported after the outer loop: not part of its state
  identity["data"].erase("path");
  std::vector<std::pair<std::string, std::string>> lines;
  flatten_json(identity, "", lines);
  std::int64_t resumed_from = 0;
  if (o.resume) {
    std::error_code ec;
    if (!fs::exists(ckpt, ec)) {
      bad_input(kCmd, "--resume",
                fmt::format("no checkpoint '{}' to resume from (a run saves one every --checkpoint-every outer "
                            "steps; start again with --overwrite)",
                            ckpt.string()));
    }
    if (!fs::is_regular_file(ckpt, ec)) bad_input(kCmd, "--resume", fmt::format("'{}' is not a regular file", ckpt.string()));
    if (fs::exists(ckpt_config, ec)) {
      nlohmann::json saved;
      try {
        saved = read_json(ckpt_config);
      } catch (const Error& e) {
        bad_input(kCmd, "--resume", e.what());
      }
      if (!saved.is_object()) {
        bad_input(kCmd, "--resume",
                  fmt::format("'{}' is not the settings file d2r writes (expected a JSON object)", ckpt_config.string()));
      }
      // Written before --patience existed: that d2r ran without the early stop (the fingerprint alike).
      if (saved.contains("stopping") && saved["stopping"].is_object() && !saved["stopping"].contains("patience")) {
        saved["stopping"]["patience"] = 0;
      }
      if (saved != identity) {
        // The settings that differ (top-level names), then each leaf as "name: saved X, now Y".
        std::vector<std::string> diff;
        for (auto it = identity.begin(); it != identity.end(); ++it) {
          if (!saved.contains(it.key()) || saved[it.key()] != it.value()) diff.push_back(it.key());
        }
        for (auto it = saved.begin(); it != saved.end(); ++it) {
          if (!identity.contains(it.key())) diff.push_back(it.key());
        }
        std::vector<std::pair<std::string, std::string>> before;
        flatten_json(saved, "", before);
        const std::vector<std::string> details = field_differences(before, lines);
        bad_input(kCmd, "--resume",
                  fmt::format("the checkpoint in '{}' was written by a run with other settings ({}):\n  {}",
                              out.string(), fmt::join(diff, ", "), fmt::join(details, "\n  ")));
      }
    }
  }
  if (bilevel) run.set_identity(lines);
  if (o.resume) {
    try {
      resumed_from = run.resume(ckpt);
    } catch (const Error& e) {
      if (std::string_view(e.what()).starts_with("d2r fit: ")) throw;  // already the CLI's words (bad_input)
      bad_input(kCmd, "--resume", user_words(e));  // the user gave --resume, not BilevelTrainer::load's path
    }
  }
  // Validation is over: from here on files may be written.
  claim_run_dir(kCmd, "--out", out, o.resume, o.overwrite);
  if (bilevel) {
    write_json_atomic(ckpt_config, identity);
    run.set_checkpoint(ckpt, o.checkpoint_every);
  }
  return resumed_from;
}

/// `d2r fit --task regression`: a Gaussian policy on the target columns (regression.hpp); the
/// task's own parts of fit_task.
struct RegressionFit {
  static constexpr bool kClassification = false;
  using Run = RegressionRun;
  using Result = RunResult;
  Method method{};
  RegressionInputs in;
  RegressionConfig c;

  void check(const FitOptions& o) {
    if (o.targets.empty()) bad_input(kCmd, "--targets", "the target columns are required (or --task classification --label COL)");
    reject_options(o, {"--label", "--beta", "--epochs", "--batch-size"}, "only for --task classification");
    method = named(o.method, {Method::mse, Method::nll, Method::pg, Method::heuristic, Method::bilevel});  // checked by --method's validator
    if (o.resume && method != Method::bilevel) bad_input(kCmd, "--resume", "only a bilevel run can be resumed");
    if (given(o, "--final-model") && o.final_model == "pg") {
      bad_input(kCmd, "--final-model",
                "a regression bilevel fit returns an inner policy (best or last); pg is for --task classification");
    }
  }
  [[nodiscard]] bool bilevel() const { return method == Method::bilevel; }
  [[nodiscard]] bool has_val() const { return in.has_val; }
  void after_preset(const FitOptions& o) { c.final_model = final_model(o, c.preset, false); }

  void configure(const FitOptions& o) {
    in = load_regression_inputs(o, kCmd);
    c = shared_config(o, in);
    c.method = method;
    c.head = named(o.head, {GaussianHead::diagonal, GaussianHead::cholesky});
    c.reward_form = named(o.reward, {RewardForm::scalar, RewardForm::diagonal, RewardForm::full});
    // --u is on the targets the trainer sees (standardised unless --no-standardize-targets); the
    // results give the reward in both scales.
    c.reward_params = o.u;
    if (c.reward_params.empty() && (method == Method::pg || method == Method::bilevel)) {
      c.reward_params = identity_reward(c.reward_form, in.train.dims);  // U = I on the standardised targets
    }
    c.plain.evaluate_every = o.eval_every;
    c.outer_steps = o.outer_steps;
    c.bilevel.inner.steps = o.inner_steps;
    c.bilevel.inner.batch_size = o.inner_batch_size;
    c.bilevel.inner.adam.learning_rate = o.lr;
    c.bilevel.outer_adam.learning_rate = o.outer_lr;
  }

  void check_memory(const Context& ctx) const { check_as_user<true>(kCmd, c, in.train, in.val, ctx); }
  Run make_run(Context& ctx) const { return Run(ctx, c, in.train, in.val, kCmd); }

  [[nodiscard]] nlohmann::json data_json(const FitOptions& o) const {
    const HostData &train = in.train, &val = in.val;
    nlohmann::json d = {{"path", o.data},
                        {"rows", in.data.rows},
                        {"targets", in.data.target_names},
                        {"features", in.data.feature_names},
                        {"train_rows", train.rows},
                        {"validation_rows", val.rows},
                        {"val_fraction", o.val_fraction},
                        {"standardize", o.standardize},
                        {"hash", runs::data_hash(train, val)},
                        {"standardize_targets", o.standardize_targets}};
    if (o.standardize) d["standardization"] = {{"mean", in.map.mean}, {"scale", in.map.scale}};
    if (in.target_scale != 1) d["target_standardization"] = {{"mean", in.target_mean}, {"scale", in.target_scale}};
    return d;
  }

  void print_header(const FitOptions& o, const Context& ctx) const {
    const HostData& train = in.train;
    fmt::print("d2r fit: {} ({} rows): {} train / {} validation rows, {} features -> {} targets ({})\n", o.data,
               in.data.rows, train.rows, in.val.rows, train.inputs, train.dims, fmt::join(in.data.target_names, ", "));
    fmt::print("method {}", o.method);
    if (method == Method::pg || method == Method::heuristic || method == Method::bilevel) {
      fmt::print(", {} reward, λ = {}, G = {}", o.reward, o.lambda, o.generations);
    }
    if (method == Method::bilevel) {
      fmt::print(", preset {}: {}", c.preset, describe_bilevel(c, o.curvature, train.rows, "loss"));
    } else {
      fmt::print(", {} steps", o.steps);
    }
    fmt::print("\nMLP {}→[{}]→{} ({}), {} head, lr {}; device {} ({}), {}; seed {}\n", train.inputs,
               fmt::join(o.hidden, ","), train.dims, o.activation, o.head, o.lr, to_string(ctx.backend()),
               ctx.device_name(), o.precision, o.seed);
  }

  [[nodiscard]] std::vector<double> reward_original(const Result& r) const {
    return reward_in_scale(c.reward_form, r.reward_params, in.train.dims, in.target_scale);
  }

  /// The metrics and the reward on stdout, and the task's members of results.json.
  void report(const Result& r, nlohmann::json& j, std::int64_t resumed_from) const {
    const double scale = in.target_scale;
    const std::int64_t dims = in.train.dims;
    fmt::print("\n{:<12} {:>10} {:>10} {:>10}\n", "", "NLL/dim", "RMSE", "mean std");
    fmt::print("{:<12} {:>10.4f} {:>10.4f} {:>10.4f}\n", "train", r.train.nll_per_dim, r.train.rmse, r.train.mean_std);
    if (has_val()) {
      fmt::print("{:<12} {:>10.4f} {:>10.4f} {:>10.4f}\n", "validation", r.held_out.nll_per_dim, r.held_out.rmse,
                 r.held_out.mean_std);
    }
    if (scale != 1) fmt::print("(metrics in the original units of the targets; trained on (y − mean) / {:.6g})\n", scale);
    const std::vector<double> original = reward_original(r);
    nlohmann::json model;
    if (bilevel() && !r.records.empty()) {
      model = model_json(r.model, describe_reward(c.reward_form, reward_in_scale(c.reward_form, r.model.trained_at, dims, scale), dims));
    }
    if (!r.reward_params.empty()) {
      fmt::print("{} reward: {}{}\n", method == Method::bilevel ? "learned" : method == Method::heuristic ? "heuristic" : "fixed",
                 describe_reward(c.reward_form, original, dims), scale != 1 ? " (original units)" : "");
      fmt::print("reward parameters: [{}]\n", fmt::join(original, ", "));
      if (scale != 1) {
        fmt::print("on the standardised targets: {}, parameters [{}]\n", describe_reward(c.reward_form, r.reward_params, dims),
                   fmt::join(r.reward_params, ", "));
      }
    }
    if (method == Method::bilevel) {
      fmt::print("last outer step: {}, outer loss ({} rows) {:.4f}; {} inner steps in {} outer steps\n",
                 describe_reward(c.reward_form, reward_in_scale(c.reward_form, r.last_reward_params, dims, scale), dims),
                 c.bilevel.outer_data == OuterData::validation ? "validation" : "training", outer_loss(r), r.inner_steps,
                 r.records.size());
    }
    fmt::print("wall time {:.1f} s\n", r.wall_seconds);
    j["records"] = records_json(r, bilevel());
    j["final"] = {{"train", to_json(r.train)},
                  {"validation", has_val() ? to_json(r.held_out) : nlohmann::json(nullptr)},
                  {"steps_done", r.records.empty() ? 0 : r.records.back().step}};
    if (!r.reward_params.empty()) {
      j["final"]["reward"] = {{"form", d2r::to_string(c.reward_form)},
                              {"params", original},
                              {"params_standardized", r.reward_params},
                              {"target_scale", scale},
                              {"description", describe_reward(c.reward_form, original, dims)}};
    }
    j["resumed_from_step"] = resumed_from;
    if (bilevel()) {
      // A regression bilevel fit never retrains: its final metrics are of a judged inner policy,
      // and final.reward is the φ it was trained at (best) or the last φ (last).
      if (model.is_null()) model = {{"source", runs::to_string(r.model.source)}, {"outer_step", 0}};
      model["trained_at"] = {{"params", reward_in_scale(c.reward_form, r.model.trained_at, dims, scale)},
                             {"params_standardized", r.model.trained_at}};
      j["final"]["model"] = model;
      j["final"]["last_step"] = {{"outer_step", r.records.empty() ? 0 : r.records.back().step},
                                 {"outer_loss", outer_loss(r)},
                                 {"params", reward_in_scale(c.reward_form, r.last_reward_params, dims, scale)},
                                 {"params_standardized", r.last_reward_params}};
    }
  }

  static const std::vector<StepRecord>& outer_records(const Result& r) { return r.records; }
  static const runs::ReturnedModel& returned(const Result& r) { return r.model; }
  static double outer_loss(const Result& r) { return r.records.empty() ? kNaN : r.records.back().outer_loss; }

  [[nodiscard]] std::string diverged(const Result& r) const { return runs::non_finite(r, has_val()); }

  /// Writes the curves; returns the other files written besides results.json and curves.csv.
  std::string write_curves(const fs::path& out, const Result& r) const {
    const runs::RecordTable t = runs::curves_table(r, bilevel());
    write_csv(out / "curves.csv", t.header, std::span<const std::vector<double>>(t.rows));
    return bilevel() ? fmt::format(", {}", (out / kCheckpoint).string()) : "";
  }
};

/// `d2r fit --task classification`: the paper's tabular protocol (classification.hpp) on one CSV
/// file; the task's own parts of fit_task.
struct ClassificationFit {
  static constexpr bool kClassification = true;
  static constexpr double kTestFraction = 0.2;
  using Run = ClassificationRun;
  using Result = ClassificationResult;
  ClassMethod method{};
  ClassificationInputs in;
  ClassificationConfig c;

  void check(const FitOptions& o) {
    reject_options(o, {"--targets", "--u", "--reward", "--head", "--steps", "--eval-every"},
                   "not an option of --task classification (see --label, --beta, --epochs, --batch-size)");
    if (o.label.empty()) bad_input(kCmd, "--label", "the label column is required with --task classification");
    method = parse_class_method(o.method);
    if (o.resume && method != ClassMethod::bilevel) bad_input(kCmd, "--resume", "only a bilevel run can be resumed");
    if (given(o, "--standardize-targets")) bad_input(kCmd, "--standardize-targets", "only for --task regression");
    if (given(o, "--beta") && method != ClassMethod::pg && method != ClassMethod::bilevel) {
      bad_input(kCmd, "--beta", fmt::format("β is set by --method pg (fixed) and bilevel (start), not {}", o.method));
    }
  }
  [[nodiscard]] bool bilevel() const { return method == ClassMethod::bilevel; }
  [[nodiscard]] bool has_val() const { return !in.val.empty(); }
  /// The model returned: the judged inner policy, unless asked for (or the paper's protocol) PG at the learned β.
  void after_preset(const FitOptions& o) {
    c.final_model = final_model(o, c.preset, true);
    if (bilevel() && c.final_model != runs::FinalModel::pg) {  // the epochs are --final-model pg's alone
      for (std::string_view n : {"--epochs", "--batch-size"}) {
        if (given(o, n)) {
          bad_input(kCmd, n, fmt::format("a bilevel fit trains epochs only for --final-model pg (the model returned is "
                                         "--final-model {}'s inner policy); drop it", runs::to_string(c.final_model)));
        }
      }
    }
  }

  /// Defaults of the paper's tabular setting where the option was not given.
  void configure(const FitOptions& o) {
    in = load_classification_inputs(o, kCmd);
    c = shared_config(o, in);
    c.method = method;
    c.beta = o.beta;
    if (given(o, "--outer-steps")) c.outer_steps = o.outer_steps;
    if (given(o, "--inner-steps")) c.bilevel.inner.steps = o.inner_steps;
    c.bilevel.inner.batch_size = o.inner_batch_size;
    if (given(o, "--outer-lr")) c.bilevel.outer_adam.learning_rate = o.outer_lr;
  }

  void check_memory(const Context& ctx) const {
    check_as_user<true>(kCmd, c, in.train, in.val, in.test, in.classes, ctx);
  }
  Run make_run(Context& ctx) const { return Run(ctx, c, in.train, in.val, in.test, in.classes, kCmd); }

  [[nodiscard]] nlohmann::json data_json(const FitOptions& o) const {
    std::vector<std::int64_t> counts(static_cast<std::size_t>(in.classes), 0);
    for (std::int32_t l : in.data.labels) ++counts[static_cast<std::size_t>(l)];
    const ClassHostData &train = in.train, &val = in.val, &test = in.test;
    return {{"path", o.data},
            {"rows", in.data.rows},
            {"label", o.label},
            {"classes", in.data.class_names},
            {"class_counts", counts},
            {"features", in.data.feature_names},
            {"train_rows", train.rows},
            {"validation_rows", val.rows},
            {"test_rows", test.rows},
            {"test_fraction", kTestFraction},
            {"val_fraction", o.val_fraction},
            {"split", "stratified: test_fraction of every class to test, then val_fraction of the rest"},
            {"standardize", true},
            {"standardization", {{"mean", in.splits.map.mean}, {"scale", in.splits.map.scale}}},
            // The data's identity for --resume (the path itself may change): the values of every split.
            {"hash", runs::data_hash(train, val, test)}};
  }

  void print_header(const FitOptions& o, const Context& ctx) const {
    fmt::print("d2r fit: {} ({} rows, {} classes): {} train / {} validation / {} test rows (stratified), {} features "
               "(standardised) -> label '{}'\n",
               o.data, in.data.rows, in.classes, in.train.rows, in.val.rows, in.test.rows, in.train.inputs, o.label);
    fmt::print("method {}", o.method);
    if (method != ClassMethod::nll) fmt::print(", one-hot reward U = β·I, λ = {}, G = {}, transform none", c.lambda, c.generations);
    if (method == ClassMethod::pg) fmt::print(", β = {}", c.beta);
    if (method == ClassMethod::bilevel) {
      fmt::print("\nbilevel β from {} (preset {}): {}; {}", c.beta, c.preset,
                 describe_bilevel(c, o.curvature, in.train.rows, "cross-entropy"),
                 c.final_model == runs::FinalModel::pg ? std::string("then PG with the learned β (--final-model pg)")
                 : fmt::format("the model: the inner policy of the {} outer step (--final-model {})",
                               c.final_model == runs::FinalModel::best ? "best-judged" : "last",
                               runs::to_string(c.final_model)));
    }
    const bool epochs = method != ClassMethod::bilevel || c.final_model == runs::FinalModel::pg;
    fmt::print("\n{} {}→{}{}, {}; device {} ({}), {}; seed {}\n", c.hidden.empty() ? "logistic regression" : "MLP",
               in.train.inputs, c.hidden.empty() ? "" : fmt::format("[{}]→", fmt::join(c.hidden, ",")), in.classes,
               epochs ? fmt::format("Adam {} × {} epochs of batch {}", c.learning_rate, c.plain.epochs,
                                    c.plain.batch_size == 0 ? std::string("all rows") : std::to_string(c.plain.batch_size))
                      : fmt::format("Adam {} full-batch inner steps", c.learning_rate),
               to_string(ctx.backend()), ctx.device_name(), o.precision, o.seed);
  }

  /// The metrics and β on stdout, and the task's members of results.json.
  void report(const Result& r, nlohmann::json& j, std::int64_t resumed_from) const {
    fmt::print("\n{:<12} {:>14} {:>10}\n", "", "cross-entropy", "accuracy");
    fmt::print("{:<12} {:>14.4f} {:>10.4f}\n", "train", r.train.nll_per_dim, r.train.accuracy);
    if (has_val()) fmt::print("{:<12} {:>14.4f} {:>10.4f}\n", "validation", r.validation.nll_per_dim, r.validation.accuracy);
    fmt::print("{:<12} {:>14.4f} {:>10.4f}\n", "test", r.test.nll_per_dim, r.test.accuracy);
    if (!r.epochs.empty()) {
      fmt::print("test accuracy averaged over the {} epochs (the paper's figure): {:.4f}; final test accuracy {:.4f}\n",
                 r.epochs.size(), r.mean_test_accuracy, r.test.accuracy);
    }
    nlohmann::json model;
    if (r.model.outer_step > 0) model = model_json(r.model, fmt::format("β = {:.4g}", r.model.trained_at.at(0)));
    if (method == ClassMethod::bilevel) {
      if (r.model.source == runs::FinalModel::best) {
        fmt::print("learned β = {:.4f} (the best-judged step's, from {}; last outer step: β = {:.4f}, outer cross-entropy "
                   "{:.4f}; {} inner steps in {} outer steps)\n",
                   r.beta, c.beta, r.outer.back().beta, r.outer.back().outer_loss, r.inner_steps, r.outer.size());
      } else if (c.preset == "paper") {
        fmt::print("learned β = {:.4f} (mean of the last {} outer steps; final {:.4f}, from {})\n", r.beta,
                   std::min<std::size_t>(static_cast<std::size_t>(c.beta_tail), r.outer.size()), r.outer.back().beta, c.beta);
      } else {
        fmt::print("learned β = {:.4f} (from {}; outer cross-entropy {:.4f}; {} inner steps in {} outer steps)\n", r.beta,
                   c.beta, r.outer.back().outer_loss, r.inner_steps, r.outer.size());
      }
    } else if (method == ClassMethod::pg) {
      fmt::print("fixed β = {}\n", r.beta);
    } else if (method == ClassMethod::heuristic) {
      fmt::print("heuristic β* = {:.4f}\n", r.beta);
    }
    if (method != ClassMethod::heuristic && std::isfinite(r.heuristic_beta)) {
      fmt::print("(heuristic β* of the training labels at λ = {}: {:.4f})\n", c.lambda, r.heuristic_beta);
    }
    fmt::print("wall time {:.1f} s\n", r.wall_seconds);
    j["records"] = epochs_json(r);
    if (bilevel()) j["outer_records"] = outer_json(r);
    j["final"] = {{"train", class_metrics_json(r.train)},
                  {"validation", has_val() ? class_metrics_json(r.validation) : nlohmann::json(nullptr)},
                  {"test", class_metrics_json(r.test)},
                  {"mean_test_accuracy", r.mean_test_accuracy},
                  {"mean_test_nll", r.mean_test_nll},
                  {"test_accuracy", r.test.accuracy},
                  {"epochs_done", r.epochs.size()},
                  {"heuristic_beta", std::isfinite(r.heuristic_beta) ? nlohmann::json(r.heuristic_beta) : nlohmann::json(nullptr)}};
    if (method != ClassMethod::nll) {
      j["final"]["reward"] = {{"form", "scalar"},
                              {"params", {r.beta}},
                              {"beta", r.beta},
                              {"description", fmt::format("U = β·I, β = {:.4g}", r.beta)}};
    }
    if (bilevel()) {
      j["resumed_from_step"] = resumed_from;
      // Which model the final metrics are of (--final-model), and the last step's β and outer loss.
      if (model.is_null()) {
        model = {{"source", runs::to_string(r.model.source)}, {"outer_step", 0}};
        if (r.model.source == runs::FinalModel::pg) {
          model["epochs"] = r.epochs.size();
          model["description"] = "PG retrained for the epochs at the learned β";
        }
      } else {
        model["trained_at_beta"] = r.model.trained_at.at(0);
      }
      j["final"]["model"] = model;
      if (!r.outer.empty()) {
        j["final"]["last_step"] = {{"outer_step", r.outer.back().step},
                                   {"outer_loss", r.outer.back().outer_loss},
                                   {"beta", r.outer.back().beta}};
      }
    }
  }

  static const std::vector<OuterRecord>& outer_records(const Result& r) { return r.outer; }
  static const runs::ReturnedModel& returned(const Result& r) { return r.model; }
  static double outer_loss(const Result& r) { return r.outer.empty() ? kNaN : r.outer.back().outer_loss; }

  [[nodiscard]] std::string diverged(const Result& r) const { return runs::non_finite(r, has_val(), method); }

  std::string write_curves(const fs::path& out, const Result& r) const {
    const runs::RecordTable epochs = runs::epoch_table(r);
    write_csv(out / "curves.csv", epochs.header, std::span<const std::vector<double>>(epochs.rows));
    if (!bilevel()) return "";
    const runs::RecordTable outer = runs::outer_table(r);
    write_csv(out / "outer_curves.csv", outer.header, std::span<const std::vector<double>>(outer.rows));
    return fmt::format(", {}, {}", (out / "outer_curves.csv").string(), (out / kCheckpoint).string());
  }
};

/// `d2r fit` of either task: validate everything (options, data, settings, --out, memory), print
/// the header, claim --out (and resume), train, report, write results.json and the curves; the
/// exit code of the verdict (0, 3, 4) or of the standard output (1).
template <class Task>
int fit_task(const FitOptions& o) {
  // ---------------------------------------------------------------- validate everything
  Task t;
  t.check(o);
  reject_unused_options(o, Task::kClassification);
  set_cpu_threads(o.threads);
  Context ctx({.backend = parse_backend(o.device), .seed = o.seed});
  t.configure(o);
  if (t.bilevel()) {
    apply_outer_options(o, t.c);
    t.after_preset(o);
    if (!t.has_val() && !given(o, "--outer-data") && t.c.bilevel.outer_data == OuterData::validation) {
      bad_input(kCmd, "--val-fraction",
                "the bilevel outer loss is on validation rows by default, and --val-fraction 0 leaves none; give "
                "--val-fraction > 0 or --outer-data train");
    }
  }
  t.c.seed = o.seed;
  const fs::path out = o.out;
  check_run_dir(kCmd, "--out", out, o.resume, o.overwrite);
  t.check_memory(ctx);
  typename Task::Run run = t.make_run(ctx);  // validates the settings against the data, builds the trainer

  nlohmann::json config = config_json(t.c);
  config["data"] = t.data_json(o);
  config["device"] = to_string(ctx.backend());
  config["threads"] = o.threads;
  config["task"] = o.task;
  t.print_header(o, ctx);
  if (!stdout_ok()) bad_input(kCmd, "standard output", fmt::format("cannot write the report ({})", std::strerror(errno)));
  config["library_options"] = run.options_json();
  const std::int64_t resumed_from = setup_checkpoint(o, config, out, run, t.bilevel());

  // ---------------------------------------------------------------- train
  if (resumed_from > 0) fmt::print("resuming from the checkpoint after outer step {}\n", resumed_from);
  std::fflush(stdout);
  typename Task::Result result;
  {
    Progress progress(fmt::format("fit {}", o.method), run.total_units(), !o.quiet && t.bilevel(), true, resumed_from);
    result = run.run([&](std::int64_t done, std::int64_t, const std::string& status) { progress.update(done, status); });
    progress.finish();
  }

  // ---------------------------------------------------------------- report and write
  nlohmann::json j = run_header(kCmd, ctx, o.precision);
  j["config"] = config;
  t.report(result, j, resumed_from);
  std::vector<std::string> warnings;
  int code = 0;
  if (t.bilevel()) {
    warnings = bilevel_warnings(Task::outer_records(result), t.c.bilevel);
    for (std::string& w : runs::model_warnings(Task::returned(result), t.c.final_model, Task::outer_records(result).size()))
      warnings.push_back(std::move(w));
    j["verdict"] = to_string(result.verdict.status);
    j["reason"] = result.verdict.reason;
    j["final"]["outer_loss"] = Task::outer_loss(result);
    j["final"]["inner_steps"] = result.inner_steps;
    code = report_verdict(result.verdict, warnings);
  }
  j["warnings"] = warnings;
  j["wall_seconds"] = result.wall_seconds;
  // A run whose final metrics are not finite diverged: its results are written (with the reason)
  // but it is no success.
  const std::string diverged = t.diverged(result);
  if (!diverged.empty()) {
    j["verdict"] = "diverged";
    j["reason"] = fmt::format("non-finite final metrics: {}", diverged);
  }
  ensure_directory(out);
  const std::string written = t.write_curves(out, result);
  write_json_atomic(out / "results.json", j);
  fmt::print("wrote {}, {}{}\n", (out / "results.json").string(), (out / "curves.csv").string(), written);
  const int finished = finish_run(diverged, out);
  return finished != 0 ? finished : code;
}

}  // namespace

int run_fit(const FitOptions& o) {
  return o.task == "classification" ? fit_task<ClassificationFit>(o) : fit_task<RegressionFit>(o);
}

}  // namespace d2r::cli
