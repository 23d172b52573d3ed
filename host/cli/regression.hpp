#pragma once
// The regression trainer behind `d2r fit` and `d2r reproduce`: one configuration (method, reward,
// network, optimiser, bilevel settings) run on host data through the library's trainers
// (fit_policy, heuristic_reward, BilevelTrainer), with records, final metrics and the reward
// parameters as plain host values that the commands print and write.
//
// Use: RegressionRun run(ctx, config, train, held_out); (validates everything and allocates, no
// training) ... run.run(progress) (trains). For the bilevel method a checkpoint path makes run()
// save every `checkpoint_every` outer steps, and resume() continues from such a file.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "d2r/bilevel.hpp"
#include "d2r/error.hpp"
#include "d2r/context.hpp"
#include "d2r/network.hpp"
#include "d2r/objectives.hpp"
#include "d2r/policy_model.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {

/// What a regression run trains.
enum class Method {
  mse,        ///< maximum likelihood of the mean only (the variance outputs are not trained)
  nll,        ///< maximum likelihood
  pg,         ///< policy gradient with a fixed reward (RegressionConfig::reward_params, default U = I)
  heuristic,  ///< policy gradient with the heuristic reward of the training targets (heuristic.hpp)
  bilevel,    ///< the reward learned by BilevelTrainer; the policy is the last outer step's inner policy
};
const char* to_string(Method method) noexcept;
Method parse_method(const std::string& name);

/// Rows of inputs x (rows x inputs) and targets y (rows x dims), row-major, in host memory.
struct HostData {
  std::int64_t rows = 0, inputs = 0, dims = 0;
  std::vector<double> x, y;
  [[nodiscard]] bool empty() const noexcept { return rows == 0; }
};

/// The program's bilevel defaults: BilevelOptions::paper() with one override, a warm-started inner
/// policy (with K_in = 50 a fresh one under-fits the mean and biases u* low: bilevel.hpp). `d2r fit`
/// then applies a named preset (apply_bilevel_preset) and the options given.
inline BilevelOptions<double> program_bilevel_defaults() {
  BilevelOptions<double> o = BilevelOptions<double>::paper();
  o.inner_start = InnerStart::warm;
  return o;
}

/// Every setting of a run: the library's options of both trainers plus what only the program has
/// (the defaults are those of the paper's Fig. 1/3 and MBRL settings where they have one).
struct RegressionConfig {
  Method method = Method::nll;
  bool double_precision = false;  ///< cpu backend only
  // Policy.
  std::vector<std::int64_t> hidden{64, 64};
  Activation activation = Activation::relu;
  GaussianHead head = GaussianHead::diagonal;
  // Reward (pg, heuristic, bilevel).
  RewardForm reward_form = RewardForm::scalar;
  std::vector<double> reward_params;  ///< pg: the fixed reward; bilevel: φ₀; empty: U = I
  // The policy-gradient settings both trainers share: the run writes them into the options of the
  // method it runs (plain.pg / bilevel.inner.pg, generations, objective, seed).
  double lambda = 1;                  ///< entropy weight λ
  std::int64_t generations = 5;       ///< G
  InnerObjective inner_objective = InnerObjective::reinforce;  ///< the inner steps' (pg's) gradient
  std::uint64_t seed = 0;  ///< initialisation of θ (the context's seed keys the draws)
  /// Plain training (mse, nll, pg, heuristic): fit_policy's options. Overrides of the library's
  /// defaults: 400 steps, metrics at every step. (loss, reward and parallel are set by the run.)
  PolicyFitOptions<double> plain{.steps = 400, .evaluate_every = 1};
  /// Bilevel: BilevelTrainer's options (program_bilevel_defaults; `preset` names the preset last
  /// applied). The run applies two rules on top: Rprop's step bounds take in a larger or smaller
  /// initial step, and a nonzero inner.max_steps is at least inner.steps.
  BilevelOptions<double> bilevel = program_bilevel_defaults();
  std::int64_t outer_steps = 100;
  std::string preset = "paper";       ///< "recommended" (d2r fit's default) or "paper"
  /// Target scaling (fit): the targets the trainer saw are (y − target_mean) / target_scale (one
  /// scale for every dimension, so U keeps its form: U_original = U / scale²); metrics are
  /// reported in the original units. scale 1 and mean 0: no scaling.
  std::vector<double> target_mean;
  double target_scale = 1;

  [[nodiscard]] nlohmann::json to_json() const;
};

/// Sets the fields of a configuration's BilevelOptions (RegressionConfig, ClassificationConfig)
/// that the named presets govern: "recommended" (BilevelOptions::recommended(): validation rows,
/// log-space Rprop with persistent state, a stationary warm-started inner policy, damped CG to a
/// relative residual of 0.25) or "paper" (BilevelOptions::paper(): training rows, outer Adam
/// re-created every step, one CG iteration, fresh inner policy). The step sizes, clamps, minibatch,
/// curvature and policy-gradient settings stay as configured. Throws d2r::Error
/// (invalid_argument, "--preset") for another name.
template <class Config>
void apply_bilevel_preset(Config& c, const std::string& preset) {
  if (preset != "paper" && preset != "recommended") {
    throw Error(ErrorKind::invalid_argument, "--preset",
                "--preset: expected recommended or paper, got '" + preset + "'");
  }
  BilevelOptions<double> o =
      preset == "paper" ? BilevelOptions<double>::paper() : BilevelOptions<double>::recommended();
  const BilevelOptions<double>& kept = c.bilevel;
  o.inner.adam = kept.inner.adam;
  o.inner.gradient_clamp = kept.inner.gradient_clamp;
  o.inner.generations = kept.inner.generations;
  o.inner.pg = kept.inner.pg;
  o.inner.batch_size = kept.inner.batch_size;
  o.head = kept.head;
  o.curvature = kept.curvature;
  o.neumann = kept.neumann;
  o.outer_adam = kept.outer_adam;
  o.hypergradient_clamp = kept.hypergradient_clamp;
  o.seed = kept.seed;
  c.bilevel = o;
  c.inner_objective = o.inner.objective;  // the shared setting that bilevel_options writes back
  c.preset = preset;
}

/// The BilevelOptions a run of a configuration (RegressionConfig, ClassificationConfig) trains
/// with, in its scalar type: c.bilevel, the shared policy-gradient settings, and the two rules of
/// RegressionConfig::bilevel.
template <class T, class Config>
BilevelOptions<T> bilevel_options(const Config& c) {
  BilevelOptions<double> o = c.bilevel;
  o.inner.generations = c.generations;
  o.inner.pg.entropy_weight = c.lambda;
  o.inner.objective = c.inner_objective;
  o.seed = c.seed;
  if constexpr (requires { c.learning_rate; }) o.inner.adam.learning_rate = c.learning_rate;  // classification
  o.rprop.max_step = std::max(o.rprop.max_step, o.rprop.initial_step);
  o.rprop.min_step = std::min(o.rprop.min_step, o.rprop.initial_step);
  if (o.inner.max_steps != 0) o.inner.max_steps = std::max(o.inner.max_steps, o.inner.steps);
  return options_cast<BilevelOptions<T>>(o);
}

/// The bilevel fields of a configuration as JSON members of `j` (results.json and checkpoint.json:
/// keep the names, python/ and the tests read them).
template <class Config>
void outer_config_json(const Config& c, nlohmann::json& j) {
  const BilevelOptions<double>& b = c.bilevel;
  j["outer_steps"] = c.outer_steps;
  j["inner_steps"] = b.inner.steps;
  j["inner_batch_size"] = b.inner.batch_size;
  if constexpr (requires { c.learning_rate; }) {
    j["inner_learning_rate"] = c.learning_rate;  // classification: the epochs' rate
  } else {
    j["inner_learning_rate"] = b.inner.adam.learning_rate;
  }
  j["outer_learning_rate"] = b.outer_adam.learning_rate;
  j["inner_gradient_clamp"] = b.inner.gradient_clamp;
  j["hypergradient_clamp"] = b.hypergradient_clamp;
  j["inner_start"] = d2r::to_string(b.inner_start);
  j["curvature"] = d2r::to_string(b.curvature);
  j["solver"] = d2r::to_string(b.solver);
  j["solver_iterations"] = b.cg.max_iterations;
  j["preset"] = c.preset;
  j["outer_data"] = d2r::to_string(b.outer_data);
  j["outer_optimizer"] = d2r::to_string(b.optimizer);
  j["reset_outer_optimizer"] = b.reset_outer_optimizer;
  j["outer_step"] = b.rprop.initial_step;
  j["flat_tolerance"] = b.rprop.flat_tolerance;
  j["inner_objective"] = d2r::to_string(c.inner_objective);
  j["stationarity_tolerance"] = b.inner.stationarity_tolerance;
  j["inner_max_steps"] = b.inner.max_steps;
  j["solver_tolerance"] = b.cg.tolerance;
  j["damping"] = b.cg.damping;
  j["stopping"] = fields_json(b.stopping);
}

/// fit_policy's options of a configuration (double): c.plain with the shared policy-gradient
/// settings and the method's loss written in (the run adds the reward and this rank's rows).
PolicyFitOptions<double> fit_options(const RegressionConfig& c);

/// The option of the program that sets a field of the library's options (d2r::check names the
/// field: "options.inner.steps" is --inner-steps); the field's own name when no option sets it.
std::string option_for_field(std::string_view field);

/// d2r::check(options), a refused field reported as bad input (d2r::Error, invalid_argument) of
/// `command` naming the user's option: the library's checks of every field after the program's own.
void check_as_user(const std::string& command, const BilevelOptions<double>& options);
void check_as_user(const std::string& command, const PolicyFitOptions<double>& options);
void check_as_user(const std::string& command, const ClassifierFitOptions<double>& options);

/// Checks the outer-loop fields of a configuration (RegressionConfig, ClassificationConfig), naming
/// the option of `command` (bad_input).
template <class Config>
void check_outer_settings(const std::string& command, const Config& c);

/// Diagnostics of a bilevel run's outer steps (DESIGN.md §7), one sentence each: the hypergradient
/// at its clamp, linear solves that missed their tolerance, an inner policy left short of
/// stationarity, φ moved by the maximum step at every step, training and validation losses
/// parting ways. `records` in step order.
struct OuterStepFacts {
  bool clamped = false, at_max_step = false;
  double solver_relative_residual = 0, inner_gradient_relative = 0, train_loss = 0, validation_loss = 0;
};
std::vector<std::string> bilevel_warnings(const std::vector<OuterStepFacts>& records, double solver_tolerance,
                                          double stationarity_tolerance, double hypergradient_clamp);

/// One evaluation: a plain-training step or an outer step of the bilevel loop.
struct StepRecord {
  std::int64_t step = 0;
  PolicyMetrics train, held_out;  ///< held_out: NaN fields when there is none
  // Bilevel only.
  std::vector<double> reward_params, hypergradient;
  double outer_loss = 0, mean_inner_reward = 0, solver_residual = 0, wall_seconds = 0;
  std::int64_t solver_iterations = 0;
  SolveStatus solver_status = SolveStatus::converged;
  double solver_relative_residual = 0, inner_gradient_norm = 0, inner_gradient_norm0 = 0, max_step = 0;
  std::int64_t inner_steps = 0;
  bool hypergradient_clamped = false, at_max_step = false;
};

struct RunResult {
  std::vector<StepRecord> records;
  PolicyMetrics train, held_out;     ///< of the final policy
  std::vector<double> reward_params; ///< the reward the policy was trained with (empty for mse/nll)
  double wall_seconds = 0;           ///< of this process's part of the run
  BilevelVerdict verdict{};          ///< bilevel: converged / step_limited / diverged and why
  std::int64_t inner_steps = 0;      ///< bilevel: inner steps of all outer steps (plain: steps)
};

/// Called after every step (plain: every eval_every steps) with (done, total, status text).
using ProgressFn = std::function<void(std::int64_t, std::int64_t, const std::string&)>;

/// The outer loop of a bilevel run of either task: steps `trainer` from where it stands (a resumed
/// run continues) to `outer_steps`, stopping as soon as it has converged or diverged (a resumed
/// run that had already stopped takes no step); saves to `checkpoint` (when not empty) every
/// `every` steps, at the last and at a verdict; calls on_step(k, record) after each step. Returns
/// the verdict (step_limited when the budget ran out).
template <class T, class OnStep>
BilevelVerdict run_outer_loop(BilevelTrainer<T>& trainer, std::int64_t outer_steps,
                              const std::filesystem::path& checkpoint, std::int64_t every, OnStep&& on_step) {
  BilevelVerdict v = trainer.verdict(false);
  for (std::int64_t k = trainer.steps_done() + 1; k <= outer_steps && v.status == BilevelStatus::running; ++k) {
    const BilevelRecord& r = trainer.step();
    v = trainer.verdict(k == outer_steps);
    if (!checkpoint.empty() && (k % every == 0 || k == outer_steps || v.status != BilevelStatus::running)) {
      ensure_directory(checkpoint.parent_path());
      trainer.save(checkpoint);
    }
    on_step(k, r);
  }
  if (v.status == BilevelStatus::running) v = trainer.verdict(true);
  return v;
}

/// What a run of either task (RegressionRun, ClassificationRun) does behind its public class: one
/// implementation per scalar type.
template <class Result>
struct RunImpl {
  virtual ~RunImpl() = default;
  virtual void set_checkpoint(std::filesystem::path path, std::int64_t every) = 0;
  virtual std::int64_t resume(const std::filesystem::path& path) = 0;
  virtual void set_identity(const std::vector<std::pair<std::string, std::string>>& lines) = 0;
  virtual nlohmann::json options_json() const = 0;
  virtual Result run(const ProgressFn& progress) = 0;
  virtual std::int64_t total_units() const = 0;
};

class RegressionRun {
 public:
  /// Validates the configuration and the data, uploads the data and builds the trainer; throws
  /// d2r::Error (invalid_argument) naming the problem, before any training. `held_out` may be
  /// empty. `command` prefixes the messages ("fit", "reproduce").
  RegressionRun(Context& ctx, const RegressionConfig& config, const HostData& train, const HostData& held_out,
                std::string command = "fit");
  ~RegressionRun();
  RegressionRun(const RegressionRun&) = delete;
  RegressionRun& operator=(const RegressionRun&) = delete;

  /// Bilevel: saves the trainer to `path` every `every` outer steps (and after the last).
  void set_checkpoint(std::filesystem::path path, std::int64_t every);
  /// Bilevel: what identifies the run beyond the trainer's own settings (the program's settings,
  /// column names): saved in and checked against the checkpoint (BilevelTrainer::set_checkpoint_identity).
  void set_identity(const std::vector<std::pair<std::string, std::string>>& lines);
  /// Every field of the library options the run trains with (for_each_field): BilevelOptions for
  /// the bilevel method, else the plain trainer's options.
  [[nodiscard]] nlohmann::json options_json() const;
  /// Bilevel: restores the state saved in `path` (throws d2r::Error when it does not fit); returns
  /// the number of outer steps already done.
  std::int64_t resume(const std::filesystem::path& path);

  /// Trains and returns the result.
  RunResult run(const ProgressFn& progress = {});

  /// The number of units of progress run() reports (steps or outer steps).
  [[nodiscard]] std::int64_t total_units() const noexcept;

  struct Impl;  ///< opaque (one implementation per scalar type)

 private:
  std::unique_ptr<Impl> impl_;
};

/// "u = 0.32" / "U_ii = 0.5, 0.7" / "U = R Rᵀ with R = ..., diag(U) = ..." for printing.
std::string describe_reward(RewardForm form, const std::vector<double>& params, std::int64_t dims);

/// The identity U = I in `form`'s layout for `dims` target dimensions.
std::vector<double> identity_reward(RewardForm form, std::int64_t dims);

/// The parameters of the same reward on targets multiplied by `factor` (U / factor² for scalar and
/// diagonal forms, R / factor for the packed R of a full one). Empty stays empty.
std::vector<double> reward_in_scale(RewardForm form, const std::vector<double>& params, std::int64_t dims,
                                    double factor);

/// Checks reward parameters as given on the command line (--u): finite, and > 0 where U needs it
/// (every entry of a scalar or diagonal form, the diagonal of a full form's R); bad_input otherwise.
void check_reward_values(const std::string& command, RewardForm form, const std::vector<double>& params,
                         std::int64_t dims);


/// Curves of a run as CSV columns: header and numeric rows (step, train/held-out metrics, and for
/// the bilevel method reward parameters, hypergradient, outer loss and solver figures).
void curves_table(const RunResult& result, bool bilevel, std::vector<std::string>& header,
                  std::vector<std::vector<double>>& rows, const std::string& held_out_name = "val");

/// Records of a run as JSON.
nlohmann::json records_json(const RunResult& result, bool bilevel, const std::string& held_out_name = "validation");

}  // namespace d2r::cli
