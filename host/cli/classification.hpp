#pragma once
// The classification trainer behind `d2r fit --task classification` and `d2r reproduce tabular`
// (PAPER.md, Tables 1–2): a categorical policy (logistic regression by default: the logits Wx + b;
// optional hidden layers) trained on host data through the library's fit_classifier and
// BilevelTrainer, by one of
//
//   nll        cross-entropy (maximum likelihood)
//   pg         policy gradient with the fixed one-hot reward r = −β‖e_ŷ − e_y‖² (U = β I)
//   heuristic  the same with β* = λC / (2·N/(N−1)·(1 − Σ_c p̂_c²)) of the training labels
//   bilevel    β learned by BilevelTrainer (implicit differentiation; full-batch or minibatched
//              inner loop), then the policy trained exactly as pg with the learned β
//
// nll, pg and heuristic train by minibatch Adam over epochs (fit_classifier: the rows shuffled
// every epoch); after every epoch the policy is evaluated on the training and the test rows (the
// learning curve the paper averages), at the end on the validation rows too. The bilevel method
// runs in two phases: (1) K_out outer steps, each of K_in Adam steps of the inner PG problem —
// on every training row (inner_batch_size 0, the default) or on windows of inner_batch_size
// shuffled rows (InnerOptions::batch_size: passes over the data across the inner steps; the
// implicit step still uses every training row) — followed by the implicit hypergradient of the
// outer cross-entropy (on the validation rows by default); the learned β is the mean of the last
// (up to) 10 outer steps' β, since β oscillates by about the outer step size around its fixed
// point; (2) the pg protocol with that β, which gives a learning curve comparable with the other
// methods'. Phase 1 can be checkpointed (set_checkpoint) and resumed (resume) bit for bit, like
// the regression bilevel run; phase 2 is a pure function of β and the settings, so it is simply
// run again after a resume.
//
// Use: ClassificationRun run(ctx, config, train, validation, test, classes); (validates and
// allocates, no training) ... run.run(progress).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "d2r/bilevel.hpp"
#include "d2r/context.hpp"
#include "d2r/data.hpp"
#include "d2r/network.hpp"
#include "d2r/policy_model.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli {

/// What a classification run trains.
enum class ClassMethod { nll, pg, heuristic, bilevel };
const char* to_string(ClassMethod method) noexcept;
/// "nll", "pg", "heuristic" or "bilevel"; throws d2r::Error (invalid_argument) otherwise.
ClassMethod parse_class_method(const std::string& name);

/// Rows of inputs x (rows x inputs, row-major) and class labels in [0, classes), in host memory.
struct ClassHostData {
  std::int64_t rows = 0, inputs = 0;
  std::vector<double> x;
  std::vector<std::int32_t> labels;
  [[nodiscard]] bool empty() const noexcept { return rows == 0; }
};

/// Copies a classification Dataset's features and labels.
ClassHostData to_class_host_data(const Dataset& d);

/// The paper's splits: `test_fraction` of every class to test, then `val_fraction` of every class
/// of the rest to validation (0: no validation rows), both stratified (stratified_split); the
/// features of all three standardised with the training rows' statistics. Throws d2r::Error
/// (invalid_argument) naming `command` and the data when a part would be empty or the training
/// part has fewer than 2 rows.
struct ClassificationSplits {
  Dataset train, validation, test;
  Standardization map;
};
ClassificationSplits split_classification(const Dataset& data, double test_fraction, double val_fraction,
                                          std::uint64_t seed, std::string_view command);

/// The bilevel defaults of a classification run: the program's (program_bilevel_defaults) with two
/// overrides. The outer cross-entropy is on the validation rows (needs validation rows): on
/// (nearly) separable data the training cross-entropy keeps falling as β grows, so β learned on
/// the training rows rises for as long as the outer loop runs. The outer Adam steps by 0.1: it is
/// re-created every step (the paper), so β moves by about that per step and from β₀ = 1 can reach
/// 1 + K_out·0.1 = 6 (β* of the shipped data sets: 2.1–13.5 at λ = 1; the outer optima we
/// measured: 1.5–4.6).
inline BilevelOptions<double> class_bilevel_defaults() {
  BilevelOptions<double> o = program_bilevel_defaults();
  o.outer_data = OuterData::validation;
  o.outer_adam.learning_rate = 0.1;
  return o;
}

/// Every setting of a run: the library's options of both trainers plus what only the program has;
/// the defaults are the paper's tabular setting (logistic regression, G = 50, transform none,
/// batch 128, Adam 0.05, 30 epochs, λ = 1: ClassifierFitOptions' own).
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
  /// Bilevel (phase 1): BilevelTrainer's options (class_bilevel_defaults; apply_bilevel_preset in
  /// regression.hpp sets a named preset, and the run applies RegressionConfig::bilevel's rules).
  BilevelOptions<double> bilevel = class_bilevel_defaults();
  std::int64_t outer_steps = 50;
  std::int64_t beta_tail = 10;     ///< paper preset: the learned β is the mean of the last this many outer steps' β
  std::string preset = "paper";    ///< with "recommended" the learned β is the final one
  /// Bilevel: what the run returns and reports. false: the inner policy of the last outer step,
  /// the model whose validation loss the outer loop judged (`d2r fit`'s default, --final-model
  /// inner). true: PG retrained for the epochs at the learned β (the paper's tabular protocol:
  /// `reproduce tabular`, `--preset paper`, --final-model pg).
  bool refit_pg = false;

  [[nodiscard]] nlohmann::json to_json() const;
};

/// fit_classifier's options of a configuration (double): c.plain with the shared settings, the
/// method's loss and the one-hot reward U = β·I written in (`beta` NaN: β = 1, unused by nll;
/// bilevel and heuristic fill in their β when they run; the run adds this rank's rows).
ClassifierFitOptions<double> fit_options(const ClassificationConfig& c, double beta);

/// One epoch of the learning curve (the held-out rows are the test rows).
struct EpochRecord {
  std::int64_t epoch = 0;
  PolicyMetrics train, test;
};

/// One outer step of the bilevel phase.
struct OuterRecord {
  std::int64_t step = 0;
  double beta = 0, hypergradient = 0, outer_loss = 0, mean_inner_reward = 0, solver_residual = 0, wall_seconds = 0;
  std::int64_t solver_iterations = 0;
  SolveStatus solver_status = SolveStatus::converged;
  PolicyMetrics train, validation;  ///< of the inner policy (validation: NaN fields when there is none)
  double solver_relative_residual = 0, inner_gradient_norm = 0, inner_gradient_norm0 = 0, max_step = 0;
  std::int64_t inner_steps = 0;
  bool hypergradient_clamped = false, at_max_step = false;
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
  /// Bilevel without refit_pg: the final metrics are the inner policy of this outer step, trained
  /// at model_beta (the β before that step's move); 0 otherwise.
  std::int64_t model_outer_step = 0;
  double model_beta = std::numeric_limits<double>::quiet_NaN();
};

/// Called with (done, total, status text): bilevel after every outer step, and once at the end.
using ClassProgressFn = std::function<void(std::int64_t, std::int64_t, const std::string&)>;

class ClassificationRun {
 public:
  /// Validates the configuration and the data, uploads the data and builds the policy (and the
  /// bilevel trainer); throws d2r::Error (invalid_argument) naming the problem, before any
  /// training. `validation` may be empty; `test` may not. `command` prefixes the messages.
  /// `train` must outlive run(): under mpirun a full-batch bilevel run uploads only this rank's
  /// training rows, and run() uploads every row from it for fit_classifier's epochs.
  ClassificationRun(Context& ctx, const ClassificationConfig& config, const ClassHostData& train,
                    const ClassHostData& validation, const ClassHostData& test, std::int64_t classes,
                    std::string command = "fit");
  ~ClassificationRun();
  ClassificationRun(const ClassificationRun&) = delete;
  ClassificationRun& operator=(const ClassificationRun&) = delete;

  /// β* = λC / (2·N/(N−1)·(1 − Σ_c p̂_c²)) of the training labels (NaN when λ = 0).
  [[nodiscard]] double heuristic_beta() const noexcept;
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
  ClassificationResult run(const ClassProgressFn& progress = {});
  /// The units of progress run() reports: the outer steps (bilevel) plus 1 for the epochs.
  [[nodiscard]] std::int64_t total_units() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// {"nll": cross-entropy per row, "accuracy"}.
nlohmann::json class_metrics_json(const PolicyMetrics& m);

/// The learning curve as CSV columns (epoch, train/test cross-entropy and accuracy).
void epoch_table(const ClassificationResult& r, std::vector<std::string>& header, std::vector<std::vector<double>>& rows);
/// The bilevel phase as CSV columns (step, β, hypergradient, outer loss, train/validation metrics, solver figures).
void outer_table(const ClassificationResult& r, std::vector<std::string>& header, std::vector<std::vector<double>>& rows);
/// Records as JSON.
nlohmann::json epochs_json(const ClassificationResult& r);
nlohmann::json outer_json(const ClassificationResult& r);

}  // namespace d2r::cli
