// The classification trainer behind `d2r fit --task classification` and `d2r reproduce tabular`
// (classification.hpp).
#include "host/cli/classification.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <utility>

#include <fmt/format.h>

#include "d2r/buffer.hpp"
#include "d2r/error.hpp"
#include "d2r/heuristic.hpp"
#include "host/cli/output.hpp"
#include "host/cli/parallel.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

PolicyMetrics nan_class_metrics() { return {.nll_per_dim = kNaN, .rmse = kNaN, .mean_std = kNaN, .accuracy = kNaN}; }
}  // namespace

const char* to_string(ClassMethod method) noexcept {
  switch (method) {
    case ClassMethod::nll: return "nll";
    case ClassMethod::pg: return "pg";
    case ClassMethod::heuristic: return "heuristic";
    case ClassMethod::bilevel: return "bilevel";
  }
  return "unknown";
}

ClassMethod parse_class_method(const std::string& name) {
  for (ClassMethod m : {ClassMethod::nll, ClassMethod::pg, ClassMethod::heuristic, ClassMethod::bilevel}) {
    if (name == to_string(m)) return m;
  }
  throw Error(ErrorKind::invalid_argument, "--method",
              fmt::format("--method: a classification is trained by nll, pg, heuristic or bilevel, not '{}'", name));
}

ClassHostData to_class_host_data(const Dataset& d) {
  return {.rows = d.rows, .inputs = d.feature_count(), .x = d.features, .labels = d.labels};
}

ClassificationSplits split_classification(const Dataset& data, double test_fraction, double val_fraction,
                                          std::uint64_t seed, std::string_view command) {
  // Two independent seeds for the two splits, from the run's seed.
  std::uint64_t state = seed;
  const std::uint64_t test_seed = splitmix64(state), val_seed = splitmix64(state);
  const auto split = [&](const Dataset& d, double fraction, std::uint64_t s, const char* what) {
    try {
      return stratified_split(d, fraction, s);
    } catch (const Error&) {
      // The library names its own arguments (test_fraction); the user knows the file and --val-fraction.
      bad_input(command, std::string_view(what) == "test" ? "data" : "--val-fraction",
                fmt::format("{} ({} rows, {} classes): cannot hold out a {} share of {} of every class: the training "
                            "or {} rows would be none (give more rows{})",
                            data.source, d.rows, data.class_names.size(), what, fraction, what,
                            std::string_view(what) == "test" ? "" : " or --val-fraction 0"));
    }
  };
  ClassificationSplits out;
  Split first = split(data, test_fraction, test_seed, "test");
  out.test = std::move(first.test);
  if (val_fraction > 0) {
    Split second = split(first.train, val_fraction, val_seed, "validation");
    out.train = std::move(second.train);
    out.validation = std::move(second.test);
  } else {
    out.train = std::move(first.train);
  }
  if (out.train.rows < 2) {
    bad_input(command, "data", fmt::format("{}: expected at least 2 training rows, got {}", data.source, out.train.rows));
  }
  out.map = standardize(out.train);
  if (out.validation.rows > 0) apply_standardization(out.validation, out.map);
  apply_standardization(out.test, out.map);
  return out;
}

nlohmann::json ClassificationConfig::to_json() const {
  nlohmann::json j = {{"method", cli::to_string(method)},
                      {"precision", double_precision ? "double" : "float"},
                      {"hidden", hidden},
                      {"policy", hidden.empty() ? "logistic regression (categorical of Wx + b)" : "MLP, categorical"},
                      {"epochs", plain.epochs},
                      {"batch_size", plain.batch_size},
                      {"learning_rate", learning_rate},
                      {"seed", seed}};
  if (!hidden.empty()) j["activation"] = d2r::to_string(activation);
  if (method != ClassMethod::nll) {
    j["reward"] = "one-hot Mahalanobis, U = beta I";
    j["lambda"] = lambda;
    j["generations"] = generations;
    j["transform"] = "none";
    j["objective"] = inner_objective == InnerObjective::exact ? "exact" : "reinforce";
  }
  if (method == ClassMethod::pg) j["beta"] = beta;
  if (method == ClassMethod::bilevel) {
    j["beta_init"] = beta;
    j["beta_tail"] = beta_tail;
    j["final_model"] = refit_pg ? "pg" : "inner";
    outer_config_json(*this, j);
  }
  return j;
}

// ------------------------------------------------------------------ the run
struct ClassificationRun::Impl : RunImpl<ClassificationResult> {
  virtual double heuristic_beta() const = 0;
};

namespace {

template <class T>
class TypedClassRun final : public ClassificationRun::Impl {
 public:
  TypedClassRun(Context& ctx, const ClassificationConfig& c, const ClassHostData& train, const ClassHostData& val,
                const ClassHostData& test, std::int64_t classes, std::string command)
      : ctx_(ctx), c_(c), classes_(classes), command_(std::move(command)), train_host_(&train) {
    // mpirun -np N: each rank uploads only its rows of the validation and test sets (evaluated by
    // evaluate_sharded) and, for a full-batch bilevel run, of the training set (BilevelTrainer's
    // data-parallel constructor); fit_classifier's epochs shuffle every training row, so run()
    // uploads all of them for that phase. Minibatch bilevel windows draw from every row.
    dp_ = data_parallel();
    const bool active = dp_.communicator != nullptr && (dp_.communicator->size() > 1 || dp_.deterministic);
    const bool minibatch = c_.bilevel.inner.batch_size > 0 && c_.bilevel.inner.batch_size < train.rows;
    local_ = active;
    const bool local_train = local_ && c_.method == ClassMethod::bilevel && !minibatch;
    local_val_ = local_ && !(c_.method == ClassMethod::bilevel && minibatch);
    const auto rows = [&](const ClassHostData& d, bool mine) { return mine ? local_rows(dp_, d.rows) : RowRange{0, d.rows}; };
    if (c_.method != ClassMethod::bilevel || !local_train) all_train_ = true;
    upload(train, train_x_, train_y_, train_, rows(train, local_train));
    if (!val.empty()) upload(val, val_x_, val_y_, val_, rows(val, local_val_));
    upload(test, test_x_, test_y_, test_, rows(test, local_));
    if (local_val_) val_total_ = val.rows;
    if (local_) test_total_ = test.rows;
    if (const char* v = std::getenv("D2R_DATA_STATS"); v != nullptr && *v == '1') {
      std::fprintf(stderr,
                   "d2r data stats (rank %d of %d): training rows held %lld of %lld (%lld bytes); validation rows "
                   "held %lld of %lld (%lld bytes); test rows held %lld of %lld (%lld bytes)\n",
                   d2r::cli::rank(), ranks(), rows_held(train_), static_cast<long long>(train.rows),
                   bytes_held(train_x_, train_y_), rows_held(val_), static_cast<long long>(val.rows),
                   bytes_held(val_x_, val_y_), rows_held(test_), static_cast<long long>(test.rows),
                   bytes_held(test_x_, test_y_));
    }
    spec_ = MlpSpec{.inputs = train.inputs, .hidden = c_.hidden, .outputs = 0, .activation = c_.activation};
    const std::int64_t capacity = std::max({train.rows, val.rows, test.rows});
    policy_ = std::make_unique<CategoricalPolicy<T>>(ctx_, spec_, classes_, capacity);
    params_ = Buffer<T>(ctx_, static_cast<std::size_t>(policy_->parameter_count()));
    if (c_.lambda > 0) {
      // Every training label (a rank holding only its rows uploads them for this alone).
      const Buffer<std::int32_t> labels = local_train ? Buffer<std::int32_t>(ctx_, std::span<const std::int32_t>(train.labels))
                                                      : Buffer<std::int32_t>();
      heuristic_beta_ = heuristic_class_beta(ctx_, local_train ? labels.vector() : train_.labels, classes_, c_.lambda);
    }
    if (c_.method == ClassMethod::heuristic && !(std::isfinite(heuristic_beta_) && heuristic_beta_ > 0)) {
      bad_input(command_, "--method heuristic",
                fmt::format("the heuristic β* of these training labels is {}, not a finite number > 0", heuristic_beta_));
    }
    if (c_.method == ClassMethod::bilevel) {
      const BilevelOptions<T> o = bilevel_options<T>(c_);
      const std::vector<double> beta0{c_.beta};
      if (local_train) {
        // The whole set's identity for the checkpoint (it resumes with any rank count).
        DataParallel p = dp_;
        p.train_rows = train.rows;
        p.validation_rows = val.rows;
        const std::vector<T> tx(train.x.begin(), train.x.end()), vx(val.x.begin(), val.x.end());
        const std::uint64_t hash = bilevel_data_hash<T>(std::span<const T>(tx), std::span<const std::int32_t>(train.labels),
                                                        std::span<const T>(vx), std::span<const std::int32_t>(val.labels));
        trainer_ = std::make_unique<BilevelTrainer<T>>(ctx_, spec_, train_, val_, classes_, RewardForm::scalar,
                                                       std::span<const double>(beta0), o, p, hash);
      } else {
        // Minibatches (or one process): every training and validation row.
        trainer_ = std::make_unique<BilevelTrainer<T>>(ctx_, spec_, train_, val_, classes_, RewardForm::scalar,
                                                       std::span<const double>(beta0), o);
        trainer_->set_data_parallel(dp_);  // mpirun -np N: this rank's rows (parallel.hpp)
      }
    }
  }

  double heuristic_beta() const override { return heuristic_beta_; }

  void set_checkpoint(std::filesystem::path path, std::int64_t every) override {
    checkpoint_ = std::move(path);
    every_ = every;
  }

  void set_identity(const std::vector<std::pair<std::string, std::string>>& lines) override {
    if (trainer_) trainer_->set_checkpoint_identity(lines);
  }

  nlohmann::json options_json() const override {
    nlohmann::json j = {{"classifier", fields_json(plain_options(c_.method == ClassMethod::pg ? c_.beta : kNaN))}};
    if (trainer_) j["bilevel"] = fields_json(trainer_->options());
    return j;
  }

  /// The options of the PG/cross-entropy phase; `beta` NaN: β = 1 (unused by nll; bilevel and
  /// heuristic fill in their β when they run).
  ClassifierFitOptions<T> plain_options(double beta) const {
    ClassifierFitOptions<T> out = options_cast<ClassifierFitOptions<T>>(fit_options(c_, beta));
    out.parallel = data_parallel();
    out.parallel.validation_rows = test_total_;  // 0 unless the test view holds this rank's rows only
    return out;
  }

  std::int64_t resume(const std::filesystem::path& path) override {
    trainer_->load(path);
    if (trainer_->steps_done() > c_.outer_steps) {
      bad_input(command_, "--resume",
                fmt::format("the checkpoint '{}' holds {} outer steps, more than --outer-steps {}", path.string(),
                            trainer_->steps_done(), c_.outer_steps));
    }
    return trainer_->steps_done();
  }

  std::int64_t total_units() const override { return (c_.method == ClassMethod::bilevel ? c_.outer_steps : 0) + 1; }

  ClassificationResult run(const ClassProgressFn& progress) override {
    const auto t0 = std::chrono::steady_clock::now();
    ClassificationResult out;
    out.heuristic_beta = heuristic_beta_;
    const std::int64_t total = total_units();
    double beta = kNaN;
    if (c_.method == ClassMethod::pg) beta = c_.beta;
    if (c_.method == ClassMethod::heuristic) beta = heuristic_beta_;
    if (c_.method == ClassMethod::bilevel) {
      out.verdict = run_outer_loop(*trainer_, c_.outer_steps, checkpoint_, every_,
                                   [&](std::int64_t k, const BilevelRecord& r) {
                                     if (!progress) return;
                                     progress(k, total,
                                              fmt::format("β = {:.4g}  outer CE {:.4f}  train acc {:.3f}",
                                                          r.reward_params.at(0), r.outer_loss, r.train.accuracy));
                                   });
      // The records of every outer step, those restored by resume() included.
      for (const BilevelRecord& r : trainer_->history()) {
        OuterRecord s;
        s.step = r.step;
        s.beta = r.reward_params.at(0);
        s.hypergradient = r.hypergradient.empty() ? kNaN : r.hypergradient[0];
        s.outer_loss = r.outer_loss;
        s.mean_inner_reward = r.mean_inner_reward;
        s.solver_residual = r.solver_residual;
        s.solver_iterations = r.solver_iterations;
        s.solver_status = r.solver_status;
        s.wall_seconds = r.wall_seconds;
        s.train = r.train;
        s.validation = val_total_ == 0 && val_.empty() ? nan_class_metrics() : r.validation;
        s.solver_relative_residual = r.solver_relative_residual();
        s.inner_gradient_norm = r.inner_gradient_norm;
        s.inner_gradient_norm0 = r.inner_gradient_norm0;
        s.max_step = r.max_step;
        s.inner_steps = r.inner_steps;
        s.hypergradient_clamped = r.hypergradient_clamped;
        s.at_max_step = r.at_max_step;
        out.inner_steps += r.inner_steps;
        out.outer.push_back(s);
      }
      // The paper preset's β oscillates around its fixed point: the mean of the last steps'.
      // Otherwise the run stopped where β settled: the final value.
      const std::size_t tail =
          c_.preset == "paper" ? std::min<std::size_t>(static_cast<std::size_t>(c_.beta_tail), out.outer.size()) : 1;
      beta = 0;
      for (std::size_t i = out.outer.size() - tail; i < out.outer.size(); ++i) beta += out.outer[i].beta;
      beta /= static_cast<double>(tail);
    }
    out.beta = beta;

    if (c_.method == ClassMethod::bilevel && !c_.refit_pg && !out.outer.empty()) {
      // The model the outer loop judged: the inner policy of the last outer step (its validation
      // cross-entropy is that step's outer loss), trained at the β before that step's move.
      const std::vector<T> theta = ctx_.to_host(trainer_->policy_params());
      params_.copy_from_host(std::span<const T>(theta));
      out.model_outer_step = out.outer.back().step;
      out.model_beta = out.outer.size() >= 2 ? out.outer[out.outer.size() - 2].beta : c_.beta;
      const ConstVector<T> p = std::as_const(params_).vector();
      out.train = metrics(p, train_, !all_train_, train_host_->rows);
      out.test = metrics(p, test_, local_, test_total_);
      out.validation = metrics(p, val_, local_val_, val_total_);
      out.mean_test_accuracy = kNaN;  // no learning curve: no epochs were trained
      out.mean_test_nll = kNaN;
      if (progress) progress(total, total, "");
      out.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return out;
    }

    const ClassifierFitOptions<T> o = plain_options(beta);
    // fit_classifier evaluates one held-out set after every epoch: the test rows (the learning
    // curve of the paper); the validation rows are evaluated once, at the end.
    // Its epochs shuffle every training row: a rank that held only its rows uploads all of them now.
    if (!all_train_) upload(*train_host_, train_all_x_, train_all_y_, train_all_, RowRange{0, train_host_->rows});
    const ClassificationData<T>& fit_train = all_train_ ? train_ : train_all_;
    if (const char* v = std::getenv("D2R_DATA_STATS"); v != nullptr && *v == '1') {
      std::fprintf(stderr, "d2r data stats (rank %d of %d): classifier phase: training rows held %lld of %lld\n",
                   d2r::cli::rank(), ranks(), rows_held(fit_train), static_cast<long long>(train_host_->rows));
    }
    const std::vector<PolicyFitRecord> recs = fit_classifier<T>(ctx_, *policy_, params_.vector(), fit_train, test_, o);
    double acc = 0, nll = 0;
    for (const PolicyFitRecord& r : recs) {
      out.epochs.push_back({.epoch = r.step, .train = r.train, .test = r.validation});
      acc += r.validation.accuracy;
      nll += r.validation.nll_per_dim;
    }
    out.mean_test_accuracy = acc / static_cast<double>(recs.size());
    out.mean_test_nll = nll / static_cast<double>(recs.size());
    out.train = recs.back().train;
    out.test = recs.back().validation;
    out.validation = metrics(std::as_const(params_).vector(), val_, local_val_, val_total_);
    if (progress) progress(total, total, "");
    out.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }

 private:
  /// Rows `r` of `d` into the backend's memory (no rows: an empty view).
  void upload(const ClassHostData& d, Buffer<T>& bx, Buffer<std::int32_t>& by, ClassificationData<T>& view, RowRange r) {
    const auto first = static_cast<std::ptrdiff_t>(r.first), rows = static_cast<std::ptrdiff_t>(r.rows);
    const std::vector<T> x(d.x.begin() + first * d.inputs, d.x.begin() + (first + rows) * d.inputs);
    bx = Buffer<T>(ctx_, std::span<const T>(x));
    by = Buffer<std::int32_t>(ctx_, std::span<const std::int32_t>(d.labels.data() + first, d.labels.data() + first + rows));
    view = {std::as_const(bx).matrix(r.rows, d.inputs), std::as_const(by).vector()};
  }
  /// The metrics of `p` on a set: `local`: d holds this rank's rows of a set of `total` rows, the
  /// sums reduced over the ranks (evaluate_sharded); else every row. NaN for a set of no rows.
  PolicyMetrics metrics(ConstVector<T> p, const ClassificationData<T>& d, bool local, std::int64_t total) {
    if (local ? total == 0 : d.empty()) return nan_class_metrics();
    return local ? evaluate_sharded<T>(ctx_, *policy_, p, d, total, dp_) : policy_->evaluate(p, d.x, d.labels);
  }
  static long long rows_held(const ClassificationData<T>& d) { return d.empty() ? 0 : static_cast<long long>(d.x.rows); }
  static long long bytes_held(const Buffer<T>& x, const Buffer<std::int32_t>& y) {
    return static_cast<long long>(x.size() * sizeof(T) + y.size() * sizeof(std::int32_t));
  }

  Context& ctx_;
  ClassificationConfig c_;
  std::int64_t classes_;
  std::string command_;
  MlpSpec spec_;
  Buffer<T> train_x_, val_x_, test_x_;
  Buffer<std::int32_t> train_y_, val_y_, test_y_;
  ClassificationData<T> train_{}, val_{}, test_{};
  // Data parallel (mpirun -np N): whether test_ (local_) and val_ (local_val_) hold this rank's
  // rows only, of sets of test_total_ and val_total_ rows; whether train_ holds every training
  // row, and else every training row for the classifier phase (train_all_) from the caller's
  // host copy, which outlives this run.
  DataParallel dp_{};
  bool local_ = false, local_val_ = false, all_train_ = false;
  std::int64_t val_total_ = 0, test_total_ = 0;
  const ClassHostData* train_host_ = nullptr;
  Buffer<T> train_all_x_;
  Buffer<std::int32_t> train_all_y_;
  ClassificationData<T> train_all_{};
  std::unique_ptr<CategoricalPolicy<T>> policy_;
  Buffer<T> params_;
  std::unique_ptr<BilevelTrainer<T>> trainer_;
  double heuristic_beta_ = kNaN;
  std::filesystem::path checkpoint_;
  std::int64_t every_ = 1;
};

bool positive_finite(double v) { return std::isfinite(v) && v > 0; }

}  // namespace

ClassifierFitOptions<double> fit_options(const ClassificationConfig& c, double beta) {
  ClassifierFitOptions<double> o = c.plain;
  o.loss = c.method == ClassMethod::nll ? PolicyLoss::nll : PolicyLoss::pg;
  o.adam.learning_rate = c.learning_rate;
  o.generations = c.generations;
  o.pg.entropy_weight = c.lambda;
  o.reward_form = RewardForm::scalar;
  o.reward_params = {std::isnan(beta) ? 1.0 : beta};
  o.seed = c.seed;
  o.objective = c.inner_objective;
  return o;
}

namespace {

/// The checks of the settings, with messages naming the options; then every field through the
/// library's check (check_as_user), and the rest again when the policy and the trainer are built.
void validate(const std::string& cmd, const ClassificationConfig& c, const ClassHostData& train,
              const ClassHostData& val, const ClassHostData& test, std::int64_t classes, const Context& ctx) {
  if (classes < 2) bad_input(cmd, "data", fmt::format("expected at least 2 classes, got {}", classes));
  const auto check_data = [&](const ClassHostData& d, const char* name) {
    if (d.inputs < 1 || static_cast<std::int64_t>(d.x.size()) != d.rows * d.inputs ||
        static_cast<std::int64_t>(d.labels.size()) != d.rows) {
      bad_input(cmd, name, fmt::format("inconsistent data: {} rows, {} inputs, {} values and {} labels", d.rows,
                                       d.inputs, d.x.size(), d.labels.size()));
    }
    if (d.inputs != train.inputs) bad_input(cmd, name, "its columns differ from the training data's");
    for (std::int32_t l : d.labels) {
      if (l < 0 || l >= classes) bad_input(cmd, name, fmt::format("label {} is not in [0, {})", l, classes));
    }
  };
  check_data(train, "training data");
  if (train.rows < 2) bad_input(cmd, "training data", fmt::format("expected at least 2 rows, got {}", train.rows));
  if (!val.empty()) check_data(val, "validation data");
  if (test.empty()) bad_input(cmd, "test data", "expected at least 1 row");
  check_data(test, "test data");
  if (c.double_precision && ctx.backend() == Backend::cuda) {
    bad_input(cmd, "--precision", "double precision runs on the cpu backend only (use --device cpu or float)");
  }
  for (std::int64_t h : c.hidden) {
    if (h < 1) bad_input(cmd, "--hidden", fmt::format("layer widths must be >= 1, got {}", h));
  }
  if (!(std::isfinite(c.lambda) && c.lambda >= 0)) {
    bad_input(cmd, "--lambda", fmt::format("expected a finite entropy weight λ >= 0, got {}", c.lambda));
  }
  if (c.method == ClassMethod::heuristic && !(c.lambda > 0)) bad_input(cmd, "--lambda", "the heuristic β* needs λ > 0");
  if (c.generations < 1) bad_input(cmd, "--generations", fmt::format("expected G >= 1, got {}", c.generations));
  if (c.plain.epochs < 1) bad_input(cmd, "--epochs", fmt::format("expected >= 1 epochs, got {}", c.plain.epochs));
  if (c.plain.batch_size < 0) bad_input(cmd, "--batch-size", fmt::format("expected >= 0 (0: full batch), got {}", c.plain.batch_size));
  if (!positive_finite(c.learning_rate)) {
    bad_input(cmd, "--lr", fmt::format("expected a finite learning rate > 0, got {}", c.learning_rate));
  }
  if ((c.method == ClassMethod::pg || c.method == ClassMethod::bilevel) && !positive_finite(c.beta)) {
    bad_input(cmd, "--beta", fmt::format("expected a finite β > 0, got {}", c.beta));
  }
  if (c.method == ClassMethod::bilevel) {
    if (c.outer_steps < 1) bad_input(cmd, "--outer-steps", fmt::format("expected >= 1, got {}", c.outer_steps));
    if (c.bilevel.inner.steps < 1) bad_input(cmd, "--inner-steps", fmt::format("expected >= 1, got {}", c.bilevel.inner.steps));
    if (c.bilevel.inner.batch_size < 0) {
      bad_input(cmd, "--inner-batch-size",
                fmt::format("expected rows per inner step >= 0 (0: full batch), got {}", c.bilevel.inner.batch_size));
    }
    if (!positive_finite(c.bilevel.outer_adam.learning_rate)) {
      bad_input(cmd, "--outer-lr", fmt::format("expected a finite learning rate > 0, got {}", c.bilevel.outer_adam.learning_rate));
    }
    if (c.bilevel.outer_data == OuterData::validation && val.empty()) {
      bad_input(cmd, "--outer-data", "validation needs validation rows (--val-fraction > 0)");
    }
    if (c.beta_tail < 1) bad_input(cmd, "beta tail", fmt::format("expected >= 1, got {}", c.beta_tail));
    check_outer_settings(cmd, c);
    check_as_user(cmd, bilevel_options<double>(c));
  }
  check_as_user(cmd, fit_options(c, c.beta));
}

}  // namespace

ClassificationRun::ClassificationRun(Context& ctx, const ClassificationConfig& config, const ClassHostData& train,
                                     const ClassHostData& validation, const ClassHostData& test, std::int64_t classes,
                                     std::string command) {
  validate(command, config, train, validation, test, classes, ctx);
  if (config.double_precision) {
    impl_ = std::make_unique<TypedClassRun<double>>(ctx, config, train, validation, test, classes, std::move(command));
  } else {
    impl_ = std::make_unique<TypedClassRun<float>>(ctx, config, train, validation, test, classes, std::move(command));
  }
}

ClassificationRun::~ClassificationRun() = default;

double ClassificationRun::heuristic_beta() const noexcept { return impl_->heuristic_beta(); }
void ClassificationRun::set_checkpoint(std::filesystem::path path, std::int64_t every) {
  impl_->set_checkpoint(std::move(path), every);
}
void ClassificationRun::set_identity(const std::vector<std::pair<std::string, std::string>>& lines) {
  impl_->set_identity(lines);
}
nlohmann::json ClassificationRun::options_json() const { return impl_->options_json(); }
std::int64_t ClassificationRun::resume(const std::filesystem::path& path) { return impl_->resume(path); }
ClassificationResult ClassificationRun::run(const ClassProgressFn& progress) { return impl_->run(progress); }
std::int64_t ClassificationRun::total_units() const noexcept { return impl_->total_units(); }

// ------------------------------------------------------------------ output
nlohmann::json class_metrics_json(const PolicyMetrics& m) {
  const auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"nll", num(m.nll_per_dim)}, {"accuracy", num(m.accuracy)}};
}

void epoch_table(const ClassificationResult& r, std::vector<std::string>& header, std::vector<std::vector<double>>& rows) {
  header = {"epoch", "train_nll", "train_accuracy", "test_nll", "test_accuracy"};
  rows.clear();
  for (const EpochRecord& e : r.epochs) {
    rows.push_back({static_cast<double>(e.epoch), e.train.nll_per_dim, e.train.accuracy, e.test.nll_per_dim,
                    e.test.accuracy});
  }
}

void outer_table(const ClassificationResult& r, std::vector<std::string>& header, std::vector<std::vector<double>>& rows) {
  header = {"step",           "beta",       "hypergradient",    "outer_loss",         "train_nll",
            "train_accuracy", "val_nll",    "val_accuracy",     "mean_inner_reward",  "solver_iterations",
            "solver_residual", "wall_seconds", "solver_relative_residual", "inner_steps", "inner_gradient_norm",
            "max_step"};
  rows.clear();
  for (const OuterRecord& s : r.outer) {
    rows.push_back({static_cast<double>(s.step), s.beta, s.hypergradient, s.outer_loss, s.train.nll_per_dim,
                    s.train.accuracy, s.validation.nll_per_dim, s.validation.accuracy, s.mean_inner_reward,
                    static_cast<double>(s.solver_iterations), s.solver_residual, s.wall_seconds,
                    s.solver_relative_residual, static_cast<double>(s.inner_steps), s.inner_gradient_norm,
                    s.max_step});
  }
}

nlohmann::json epochs_json(const ClassificationResult& r) {
  nlohmann::json out = nlohmann::json::array();
  for (const EpochRecord& e : r.epochs) {
    out.push_back({{"epoch", e.epoch}, {"train", class_metrics_json(e.train)}, {"test", class_metrics_json(e.test)}});
  }
  return out;
}

nlohmann::json outer_json(const ClassificationResult& r) {
  nlohmann::json out = nlohmann::json::array();
  for (const OuterRecord& s : r.outer) {
    out.push_back({{"step", s.step},
                   {"beta", s.beta},
                   {"hypergradient", s.hypergradient},
                   {"outer_loss", s.outer_loss},
                   {"train", class_metrics_json(s.train)},
                   {"validation", class_metrics_json(s.validation)},
                   {"mean_inner_reward", s.mean_inner_reward},
                   {"solver_status", d2r::to_string(s.solver_status)},
                   {"solver_iterations", s.solver_iterations},
                   {"solver_residual", s.solver_residual},
                   {"solver_relative_residual", s.solver_relative_residual},
                   {"inner_steps", s.inner_steps},
                   {"inner_gradient_norm", s.inner_gradient_norm},
                   {"inner_gradient_norm_relative",
                    s.inner_gradient_norm0 > 0 ? s.inner_gradient_norm / s.inner_gradient_norm0 : 0.0},
                   {"max_step", s.max_step},
                   {"hypergradient_clamped", s.hypergradient_clamped},
                   {"at_max_step", s.at_max_step},
                   {"wall_seconds", s.wall_seconds}});
  }
  return out;
}

}  // namespace d2r::cli
