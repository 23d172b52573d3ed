#pragma once
// One fit of either task, end to end, from settings and host data: the run behind `d2r fit`,
// `d2r sweep` and `d2r reproduce` (and a future Python d2r.fit). A run uploads the data, builds
// the policy (and for the bilevel method the BilevelTrainer), trains (fit_policy, fit_classifier,
// heuristic_reward, BilevelTrainer's outer loop with checkpoints) and evaluates, and returns its
// records and final metrics as plain host values.
//
//   regression      a Gaussian policy by mse, nll, pg with a fixed reward, pg with the heuristic
//                   reward of the training targets, or bilevel (the policy is the last outer
//                   step's inner policy);
//   classification  a categorical policy (logistic regression by default) by nll, pg with the
//                   one-hot reward U = β·I, pg with the heuristic β*, or bilevel: K_out outer steps
//                   learn β (the paper preset: the mean of the last beta_tail outer steps' β), then
//                   the epochs train as pg with the learned β (phase 2, a pure function of β and
//                   the settings, so simply run again after a resume).
//
// Use: RegressionRun run(ctx, settings, train, held_out, parallel); (allocates, no training) ...
// run.run(progress). The constructors check the settings and the data first (check); bad input
// found only later (a checkpoint with more outer steps than the run's, a heuristic reward that is
// not finite) throws d2r::Error (invalid_argument) whose message starts "d2r COMMAND: OPTION: ".
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "d2r/bilevel.hpp"
#include "d2r/communicator.hpp"
#include "d2r/context.hpp"
#include "d2r/error.hpp"
#include "d2r/network.hpp"
#include "d2r/objectives.hpp"
#include "d2r/policy_model.hpp"
#include "d2r/trainers.hpp"

namespace d2r::runs {

/// What a regression run trains.
enum class Method {
  mse,        ///< maximum likelihood of the mean only (the variance outputs are not trained)
  nll,        ///< maximum likelihood
  pg,         ///< policy gradient with a fixed reward (RegressionConfig::reward_params, default U = I)
  heuristic,  ///< policy gradient with the heuristic reward of the training targets (heuristic.hpp)
  bilevel,    ///< the reward learned by BilevelTrainer; the policy is the last outer step's inner policy
};
const char* to_string(Method method) noexcept;

/// What a classification run trains.
enum class ClassMethod { nll, pg, heuristic, bilevel };
const char* to_string(ClassMethod method) noexcept;

/// Which model a bilevel run returns (and whose reward it reports): `d2r fit --final-model`.
enum class FinalModel {
  /// The inner policy of the best-judged outer step (BilevelTrainer::best_step: the lowest outer
  /// loss among steps with a stationary inner policy) and the φ it was trained at; the last step's
  /// when no step qualifies (ReturnedModel::fallback). The recommended preset's default.
  best,
  last,  ///< the inner policy of the last outer step and the last φ (after that step's move)
  pg,    ///< classification only: PG retrained for the epochs at the learned β (the paper's protocol)
};
const char* to_string(FinalModel model) noexcept;

/// The model a bilevel run returned (RunResult::model, ClassificationResult::model).
struct ReturnedModel {
  FinalModel source = FinalModel::last;  ///< what was returned (last after a fallback of best)
  std::int64_t outer_step = 0;           ///< whose inner policy (0: pg, or no outer step)
  /// φ that policy was trained at (the value before that step's move), on the targets the trainer
  /// saw (regression: standardised when the caller scaled them).
  std::vector<double> trained_at;
  double outer_loss = std::numeric_limits<double>::quiet_NaN();  ///< that step's (regression: original units)
  std::int64_t inner_steps = 0;          ///< inner steps of outer steps 1 .. outer_step (the policy's training)
  /// best: the first step the choice considered (BilevelTrainer::best_tracked_from: > 1 after a
  /// resume from a checkpoint written before the best step was saved).
  std::int64_t tracked_from = 1;
  bool fallback = false;                 ///< best was asked for, but no step had a stationary inner policy
};

/// Rows of inputs x (rows x inputs) and targets y (rows x dims), row-major, in host memory.
struct HostData {
  std::int64_t rows = 0, inputs = 0, dims = 0;
  std::vector<double> x, y;
  [[nodiscard]] bool empty() const noexcept { return rows == 0; }
};

/// Rows of inputs x (rows x inputs, row-major) and class labels in [0, classes), in host memory.
struct ClassHostData {
  std::int64_t rows = 0, inputs = 0;
  std::vector<double> x;
  std::vector<std::int32_t> labels;
  [[nodiscard]] bool empty() const noexcept { return rows == 0; }
};

/// The program's bilevel defaults: BilevelOptions::paper() with one override, a warm-started inner
/// policy (with K_in = 50 a fresh one under-fits the mean and biases u* low: bilevel.hpp).
inline BilevelOptions<double> program_bilevel_defaults() {
  BilevelOptions<double> o = BilevelOptions<double>::paper();
  o.inner_start = InnerStart::warm;
  return o;
}

/// The bilevel defaults of a classification run: the program's with two overrides. The outer
/// cross-entropy is on the validation rows (needs validation rows): on (nearly) separable data the
/// training cross-entropy keeps falling as β grows, so β learned on the training rows rises for as
/// long as the outer loop runs. The outer Adam steps by 0.1: it is re-created every step (the
/// paper), so β moves by about that per step and from β₀ = 1 can reach 1 + K_out·0.1 = 6 (β* of
/// the shipped data sets: 2.1–13.5 at λ = 1; the outer optima we measured: 1.5–4.6).
inline BilevelOptions<double> class_bilevel_defaults() {
  BilevelOptions<double> o = program_bilevel_defaults();
  o.outer_data = OuterData::validation;
  o.outer_adam.learning_rate = 0.1;
  return o;
}

/// Every setting of a regression run: the library's options of both trainers plus the settings
/// both share (the defaults are those of the paper's Fig. 1/3 and MBRL settings where they have one).
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
  /// applied). The run applies two rules on top (bilevel_options): Rprop's step bounds take in a
  /// larger or smaller initial step, and a nonzero inner.max_steps is at least inner.steps.
  BilevelOptions<double> bilevel = program_bilevel_defaults();
  std::int64_t outer_steps = 100;
  std::string preset = "paper";       ///< "recommended" (d2r fit's default), "stationary" or "paper"
  FinalModel final_model = FinalModel::last;  ///< bilevel: best or last (pg is classification's)
  /// Target scaling done by the caller: the run trains on the targets as given; when the caller
  /// passed (y − target_mean) / target_scale (one scale for every dimension, so U keeps its form:
  /// U_original = U / scale²), `target_scale` converts the metrics and the outer loss back to the
  /// original units (> 0; 1: targets not scaled). `target_mean` (one entry per target, or none) is
  /// recorded only.
  std::vector<double> target_mean;
  double target_scale = 1;
};

/// Every setting of a classification run; the defaults are the paper's tabular setting (logistic
/// regression, G = 50, transform none, batch 128, Adam 0.05, 30 epochs, λ = 1: ClassifierFitOptions' own).
struct ClassificationConfig {
  ClassMethod method = ClassMethod::nll;
  bool double_precision = false;  ///< cpu backend only
  std::vector<std::int64_t> hidden{};  ///< empty: logistic regression
  Activation activation = Activation::relu;
  double beta = 1;                 ///< pg: the fixed β; bilevel: the starting β₀
  // Shared by both trainers: the run writes them into the options of what it runs.
  double lambda = 1;               ///< entropy weight λ (pg, heuristic, bilevel)
  std::int64_t generations = 50;   ///< G
  double learning_rate = 0.05;     ///< Adam (the epochs, and bilevel's inner loop)
  InnerObjective inner_objective = InnerObjective::reinforce;  ///< the inner steps' (pg's) gradient
  std::uint64_t seed = 0;          ///< initialisation of θ and the epoch shuffles
  /// The epochs (nll, pg, heuristic, and bilevel's phase 2): fit_classifier's options (loss,
  /// reward and parallel are set by the run).
  ClassifierFitOptions<double> plain{};
  /// Bilevel (phase 1): BilevelTrainer's options (class_bilevel_defaults), with RegressionConfig::bilevel's rules.
  BilevelOptions<double> bilevel = class_bilevel_defaults();
  std::int64_t outer_steps = 50;
  std::int64_t beta_tail = 10;     ///< paper preset: the learned β is the mean of the last this many outer steps' β
  std::string preset = "paper";    ///< with "recommended" or "stationary" the learned β is the final one
  /// Bilevel: what the run returns and reports (FinalModel): an inner policy the outer loop judged,
  /// best (`d2r fit`'s recommended default) or last, or pg, PG retrained for the epochs at the
  /// learned β (the paper's tabular protocol: `reproduce tabular`, `--preset paper`).
  FinalModel final_model = FinalModel::last;
};

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

/// Sets the fields of a configuration's BilevelOptions (RegressionConfig, ClassificationConfig)
/// that the named presets govern: "recommended" (BilevelOptions::recommended(): validation rows,
/// log-space Rprop with persistent state, a stationary warm-started inner policy, damped CG to a
/// relative residual of 0.25), "stationary" (BilevelOptions::stationary(): recommended with a fixed
/// inner start trained to stationarity, an accurate solve and a fine loss tolerance, so the outer
/// loss is a function of the reward alone) or "paper" (BilevelOptions::paper(): training rows, outer
/// Adam re-created every step, one CG iteration, fresh inner policy). The step sizes, clamps,
/// minibatch, curvature and policy-gradient settings stay as configured. Throws d2r::Error
/// (invalid_argument, "preset") for another name.
template <class Config>
void apply_bilevel_preset(Config& c, const std::string& preset) {
  if (preset != "paper" && preset != "recommended" && preset != "stationary") {
    throw Error(ErrorKind::invalid_argument, "preset",
                "d2r::runs::apply_bilevel_preset: argument 'preset': expected recommended, stationary or paper, got '" +
                    preset + "'");
  }
  BilevelOptions<double> o = preset == "paper"        ? BilevelOptions<double>::paper()
                             : preset == "stationary" ? BilevelOptions<double>::stationary()
                                                      : BilevelOptions<double>::recommended();
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

/// fit_policy's options of a configuration (double): c.plain with the shared policy-gradient
/// settings and the method's loss written in (the run adds the reward and this rank's rows).
PolicyFitOptions<double> fit_options(const RegressionConfig& c);

/// fit_classifier's options of a configuration (double): c.plain with the shared settings, the
/// method's loss and the one-hot reward U = β·I written in (`beta` NaN: β = 1, unused by nll;
/// bilevel and heuristic fill in their β when they run; the run adds this rank's rows).
ClassifierFitOptions<double> fit_options(const ClassificationConfig& c, double beta);

/// Checks a run's settings and data before anything is allocated (the runs' constructors call it
/// first): throws d2r::Error (invalid_argument) whose argument names the field ("config.lambda",
/// "config.bilevel.inner.steps", "config.plain.epochs") or the data set ("train", "held_out",
/// "validation", "test", "classes"), then d2r::check of the trainers' options (arguments
/// "options.…"). Three messages name the program's options as the remedy (double precision on
/// cuda, reward parameters of a method that has none, bilevel outer data on missing validation rows).
void check(const RegressionConfig& config, const HostData& train, const HostData& held_out, const Context& ctx);
void check(const ClassificationConfig& config, const ClassHostData& train, const ClassHostData& validation,
           const ClassHostData& test, std::int64_t classes, const Context& ctx);

/// The least memory a run needs (the parameters with their gradient and optimiser state, the
/// activations of one pass over the largest data set): throws d2r::Error (invalid_argument,
/// "config.hidden") with the figures when it is more than the machine's memory (a container's
/// cgroup limit when lower; the device's on the cuda backend), instead of running out mid-run.
void check_memory(const RegressionConfig& config, const HostData& train, const HostData& held_out, const Context& ctx);
void check_memory(const ClassificationConfig& config, const ClassHostData& train, const ClassHostData& validation,
                  const ClassHostData& test, std::int64_t classes, const Context& ctx);

/// The identity of a run's data for a resume (a checkpoint continues only on the same values; the
/// file's path may change): FNV-1a (64 bits) over the bytes of every value, as 16 hex digits. A
/// regression's training then held-out x and y; a classification's x and labels of its training,
/// validation and test rows.
std::string data_hash(const HostData& train, const HostData& held_out);
std::string data_hash(const ClassHostData& train, const ClassHostData& validation, const ClassHostData& test);

/// The bilevel fields of one outer step, common to both tasks (from BilevelRecord).
struct OuterStepFields {
  double outer_loss = 0, mean_inner_reward = 0, solver_residual = 0, wall_seconds = 0;
  std::int64_t solver_iterations = 0;
  SolveStatus solver_status = SolveStatus::converged;
  double solver_relative_residual = 0, inner_gradient_norm = 0, inner_gradient_norm0 = 0, max_step = 0;
  std::int64_t inner_steps = 0;
  bool hypergradient_clamped = false, at_max_step = false;
};

/// One evaluation of a regression run: a plain-training step or an outer step of the bilevel loop.
struct StepRecord : OuterStepFields {
  std::int64_t step = 0;
  PolicyMetrics train, held_out;  ///< held_out: NaN fields when there is none
  // Bilevel only.
  std::vector<double> reward_params, hypergradient;
};

struct RunResult {
  std::vector<StepRecord> records;
  PolicyMetrics train, held_out;     ///< of the final policy
  /// The reward the policy was trained with (empty for mse/nll); bilevel: the returned model's
  /// (FinalModel best: the φ its step was trained at; last: the last φ).
  std::vector<double> reward_params;
  std::vector<double> last_reward_params;  ///< bilevel: φ after the last outer step
  ReturnedModel model;               ///< bilevel: which inner policy was returned
  double wall_seconds = 0;           ///< of this process's part of the run
  BilevelVerdict verdict{};          ///< bilevel: converged / step_limited / diverged and why
  std::int64_t inner_steps = 0;      ///< bilevel: inner steps of all outer steps (plain: steps)
};

/// One epoch of a classification run's learning curve (the held-out rows are the test rows).
struct EpochRecord {
  std::int64_t epoch = 0;
  PolicyMetrics train, test;
};

/// One outer step of a classification run's bilevel phase.
struct OuterRecord : OuterStepFields {
  std::int64_t step = 0;
  double beta = 0, hypergradient = 0;
  PolicyMetrics train, validation;  ///< of the inner policy (validation: NaN fields when there is none)
};

struct ClassificationResult {
  std::vector<OuterRecord> outer;    ///< bilevel phase (empty otherwise)
  std::vector<EpochRecord> epochs;   ///< the learning curve
  PolicyMetrics train, validation, test;  ///< of the final policy (validation: NaN fields when none)
  double beta = std::numeric_limits<double>::quiet_NaN();  ///< the β PG trained with (NaN for nll)
  double heuristic_beta = std::numeric_limits<double>::quiet_NaN();  ///< β* of the training labels (λ > 0)
  double mean_test_accuracy = 0;     ///< test accuracy averaged over the epochs (the paper's figure; NaN: no epochs)
  double mean_test_nll = 0;          ///< test cross-entropy averaged over the epochs (NaN: no epochs)
  double wall_seconds = 0;
  BilevelVerdict verdict{};          ///< bilevel: converged / step_limited / diverged and why
  std::int64_t inner_steps = 0;      ///< bilevel: inner steps of the outer loop
  /// Bilevel: the model returned (ReturnedModel: FinalModel best or last, the final metrics are
  /// that outer step's inner policy, trained at model.trained_at; pg: outer_step 0). `beta` is
  /// the returned model's β (best: the β its step was trained at; last and pg: the learned β).
  ReturnedModel model;
};

/// Why a finished run cannot count as a success: the first of its final figures that is not
/// finite, as "the final training NLL is nan" ("" when every one is finite). Regression: the
/// training NLL and RMSE, the held-out ones when `held_out` (the run had such rows), then each
/// reward parameter. Classification: the training and test cross-entropy, the validation one
/// when `validation`, and the learned or fixed β unless the method is nll.
std::string non_finite(const RunResult& result, bool held_out);
std::string non_finite(const ClassificationResult& result, bool validation, ClassMethod method);

/// Called with (done, total, status text): bilevel after every outer step; a plain regression
/// fit once when it returns; a classification run once more at the end.
using ProgressFn = std::function<void(std::int64_t, std::int64_t, const std::string&)>;

/// The library options a run trains with, in double (options_cast of its scalar type's): the plain
/// trainer's (fit_policy or fit_classifier) and, for the bilevel method, BilevelTrainer's.
struct RunOptions {
  std::optional<PolicyFitOptions<double>> policy;
  std::optional<ClassifierFitOptions<double>> classifier;
  std::optional<BilevelOptions<double>> bilevel;
};

/// What a run of either task does behind its public class: one implementation per scalar type.
template <class Result>
struct RunImpl {
  virtual ~RunImpl() = default;
  virtual void set_checkpoint(std::filesystem::path path, std::int64_t every) = 0;
  virtual std::int64_t resume(const std::filesystem::path& path) = 0;
  virtual void set_identity(const std::vector<std::pair<std::string, std::string>>& lines) = 0;
  virtual RunOptions options() const = 0;
  virtual Result run(const ProgressFn& progress) = 0;
  virtual std::int64_t total_units() const = 0;
  virtual double heuristic_beta() const { return std::numeric_limits<double>::quiet_NaN(); }
};

/// A run of either task (Config RegressionConfig with data HostData and result RunResult, or
/// ClassificationConfig, ClassHostData and ClassificationResult).
template <class Config, class Data, class Result>
class Run {
 public:
  /// Bilevel: saves the trainer to `path` every `every` (>= 1) outer steps (and after the last, and
  /// at a verdict); an empty path: no checkpoints.
  void set_checkpoint(std::filesystem::path path, std::int64_t every) { impl_->set_checkpoint(std::move(path), every); }
  /// Bilevel: what identifies the run beyond the trainer's own settings (the program's settings,
  /// column names): saved in and checked against the checkpoint (BilevelTrainer::set_checkpoint_identity).
  void set_identity(const std::vector<std::pair<std::string, std::string>>& lines) { impl_->set_identity(lines); }
  /// Every library option the run trains with.
  [[nodiscard]] RunOptions options() const { return impl_->options(); }
  /// Bilevel: restores the state saved in `path` (throws d2r::Error when the run is not bilevel,
  /// when the checkpoint does not fit, or when it holds more outer steps than the run's); returns
  /// the number of outer steps already done.
  std::int64_t resume(const std::filesystem::path& path) { return impl_->resume(path); }
  /// Trains and returns the result.
  Result run(const ProgressFn& progress = {}) { return impl_->run(progress); }
  /// The units of progress run() reports: regression the steps or outer steps; classification
  /// the outer steps (bilevel) plus 1 for the epochs.
  [[nodiscard]] std::int64_t total_units() const noexcept { return impl_->total_units(); }
  /// Classification: β* = λC / (2·N/(N−1)·(1 − Σ_c p̂_c²)) of the training labels (NaN when λ = 0).
  [[nodiscard]] double heuristic_beta() const noexcept { return impl_->heuristic_beta(); }

 protected:
  std::unique_ptr<RunImpl<Result>> impl_;
};

class RegressionRun : public Run<RegressionConfig, HostData, RunResult> {
 public:
  /// Checks the settings and the data (check), uploads the data (with several ranks in `parallel`,
  /// a plain fit and a full-batch bilevel run only this rank's rows) and builds the policy or the bilevel trainer; `held_out` may be empty; `command` prefixes the
  /// messages of bad input ("fit", "reproduce").
  RegressionRun(Context& ctx, const RegressionConfig& config, const HostData& train, const HostData& held_out,
                const DataParallel& parallel, std::string command = "fit");
};

class ClassificationRun : public Run<ClassificationConfig, ClassHostData, ClassificationResult> {
 public:
  /// Checks the settings and the data (check), uploads the data and builds the policy (and the
  /// bilevel trainer); `validation` may be empty, `test` may not; `command` prefixes the messages
  /// of bad input. `train` must outlive run() (run() reads it again: under mpirun a full-batch
  /// bilevel run uploads only this rank's training rows, and fit_classifier's epochs read every row).
  ClassificationRun(Context& ctx, const ClassificationConfig& config, const ClassHostData& train,
                    const ClassHostData& validation, const ClassHostData& test, std::int64_t classes,
                    const DataParallel& parallel, std::string command = "fit");
};

/// "u = 0.32" / "U = diag(0.5, 0.7)" / "U = R Rᵀ = [...]" for printing.
std::string describe_reward(RewardForm form, const std::vector<double>& params, std::int64_t dims);

/// The identity U = I in `form`'s layout for `dims` target dimensions.
std::vector<double> identity_reward(RewardForm form, std::int64_t dims);

/// The parameters of the same reward on targets multiplied by `factor` (U / factor² for scalar and
/// diagonal forms, R / factor for the packed R of a full one). Empty stays empty.
std::vector<double> reward_in_scale(RewardForm form, const std::vector<double>& params, std::int64_t dims,
                                    double factor);

/// Diagnostics of a bilevel run's outer steps (DESIGN.md §7), one sentence each: the hypergradient
/// at its clamp, linear solves that missed their tolerance, an inner policy left short of
/// stationarity, φ moved by the maximum step at every step, training and validation losses
/// parting ways. `records` in step order, under the tolerances of `options`.
std::vector<std::string> bilevel_warnings(const std::vector<StepRecord>& records, const BilevelOptions<double>& options);
std::vector<std::string> bilevel_warnings(const std::vector<OuterRecord>& records, const BilevelOptions<double>& options);
/// The same from a BilevelTrainer's own records (BilevelTrainer::history(): what the Python front end reports).
std::vector<std::string> bilevel_warnings(const std::vector<BilevelRecord>& records, const BilevelOptions<double>& options);

/// The model a bilevel trainer returns when asked for `asked` (FinalModel best or last; best falls
/// back to the last step when no step had a stationary inner policy); `initial`: φ before step 1.
/// What `d2r fit` reports as results.json `final.model`, and what model_warnings judges.
template <class T>
ReturnedModel returned_model(const BilevelTrainer<T>& trainer, FinalModel asked, const std::vector<double>& initial);

/// Warnings about the model a bilevel run returned (ReturnedModel), one sentence each: a
/// best-judged step that is the first of several (the reward reported is the starting one), a
/// best that fell back to the last step, a best chosen among the steps after the resume of an
/// older checkpoint only. `asked`: the FinalModel the run was asked for; `outer_steps`: the outer
/// steps it recorded.
std::vector<std::string> model_warnings(const ReturnedModel& model, FinalModel asked, std::size_t outer_steps);

}  // namespace d2r::runs
