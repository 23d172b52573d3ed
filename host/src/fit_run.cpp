// One fit of either task, end to end, from settings and host data (d2r/fit_run.hpp).
#include "d2r/fit_run.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "d2r/buffer.hpp"
#include "d2r/error.hpp"
#include "d2r/heuristic.hpp"
#include "host/src/comm/shard.hpp"

namespace d2r::runs {

namespace fs = std::filesystem;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

PolicyMetrics nan_class_metrics() { return {.nll_per_dim = kNaN, .rmse = kNaN, .mean_std = kNaN, .accuracy = kNaN}; }

/// Bad input found while building or resuming a run, in the words of the program's messages.
[[noreturn]] void bad_input(std::string_view command, std::string_view option, const std::string& what) {
  throw Error(ErrorKind::invalid_argument, std::string(option), fmt::format("d2r {}: {}: {}", command, option, what));
}

/// Where a bilevel run saves its checkpoint and every how many outer steps (Run::set_checkpoint).
struct CheckpointPlan {
  fs::path path;  // empty: no checkpoint
  std::int64_t every = 1;
  void set(fs::path to, std::int64_t steps) {
    if (!to.empty() && steps < 1) {
      throw Error(ErrorKind::invalid_argument, "every", fmt::format("expected >= 1 outer steps, got {}", steps));
    }
    path = std::move(to);
    every = steps;
  }
};

template <class T, class OnStep>
BilevelVerdict run_outer_loop(BilevelTrainer<T>& trainer, std::int64_t outer_steps, const fs::path& checkpoint,
                              std::int64_t every, OnStep&& on_step) {
  BilevelVerdict v = trainer.verdict(false);
  for (std::int64_t k = trainer.steps_done() + 1; k <= outer_steps && v.status == BilevelStatus::running; ++k) {
    const BilevelRecord& r = trainer.step();
    v = trainer.verdict(k == outer_steps);
    if (!checkpoint.empty() && (k % every == 0 || k == outer_steps || v.status != BilevelStatus::running)) {
      std::error_code ec;
      fs::create_directories(checkpoint.parent_path(), ec);
      if (ec) {
        throw Error(ErrorKind::io, "out",
                    fmt::format("d2r: cannot create directory '{}': {}", checkpoint.parent_path().string(), ec.message()));
      }
      trainer.save(checkpoint);
    }
    on_step(k, r);
  }
  if (v.status == BilevelStatus::running) v = trainer.verdict(true);
  return v;
}

/// The bilevel fields of a trainer's record.
OuterStepFields outer_fields(const BilevelRecord& r) {
  return {.outer_loss = r.outer_loss,
          .mean_inner_reward = r.mean_inner_reward,
          .solver_residual = r.solver_residual,
          .wall_seconds = r.wall_seconds,
          .solver_iterations = r.solver_iterations,
          .solver_status = r.solver_status,
          .solver_relative_residual = r.solver_relative_residual(),
          .inner_gradient_norm = r.inner_gradient_norm,
          .inner_gradient_norm0 = r.inner_gradient_norm0,
          .max_step = r.max_step,
          .inner_steps = r.inner_steps,
          .hypergradient_clamped = r.hypergradient_clamped,
          .at_max_step = r.at_max_step};
}

template <class T>
class TypedRun final : public RunImpl<RunResult> {
 public:
  TypedRun(Context& ctx, const RegressionConfig& c, const HostData& train, const HostData& held, const DataParallel& dp,
           std::string command)
      : ctx_(ctx), c_(c), dp_(dp), command_(std::move(command)) {
    // mpirun -np N: each rank uploads only the rows it computes on (fit_policy's local views and
    // BilevelTrainer's data-parallel constructor, DataParallel::train_rows); the heuristic reward
    // reads every target first. Minibatch bilevel windows draw from every row: all are uploaded.
    const bool active = dp.communicator != nullptr && (dp.communicator->size() > 1 || dp.deterministic);
    const RowRange tl = local_rows(dp, train.rows), hl = local_rows(dp, held.rows);
    const bool minibatch = c_.bilevel.inner.batch_size > 0 && c_.bilevel.inner.batch_size < train.rows;
    local_ = active && !(c_.method == Method::bilevel && minibatch);  // a rank may hold no rows of a set
    if (local_ && c_.method == Method::heuristic) upload(train, train_x_, train_y_, train_);
    if (local_ && c_.method == Method::heuristic) heuristic(train.dims);
    upload(train, train_x_, train_y_, train_, local_ ? tl : RowRange{0, train.rows});
    if (!held.empty()) upload(held, held_x_, held_y_, held_, local_ ? hl : RowRange{0, held.rows});
    if (local_) {
      train_total_ = train.rows;
      held_total_ = held.rows;
    }
    // D2R_DATA_STATS=1: every rank reports the data rows it holds in the backend's memory.
    if (const char* v = std::getenv("D2R_DATA_STATS"); v != nullptr && *v == '1') {
      std::fprintf(stderr,
                   "d2r data stats (rank %d of %d): training rows held %lld of %lld (%lld bytes); validation rows "
                   "held %lld of %lld (%lld bytes)\n",
                   dp.communicator != nullptr ? dp.communicator->rank() : 0,
                   dp.communicator != nullptr ? dp.communicator->size() : 1, static_cast<long long>(train_.x.rows), static_cast<long long>(train.rows),
                   static_cast<long long>(train_x_.size() + train_y_.size()) * static_cast<long long>(sizeof(T)),
                   static_cast<long long>(held_.empty() ? 0 : held_.x.rows), static_cast<long long>(held.rows),
                   static_cast<long long>(held_x_.size() + held_y_.size()) * static_cast<long long>(sizeof(T)));
    }
    const MlpSpec spec{.inputs = train.inputs, .hidden = c_.hidden, .outputs = 0, .activation = c_.activation};
    if (c_.method == Method::bilevel) {
      const BilevelOptions<T> o = bilevel_options<T>(c_);
      if (local_) {
        // The whole set's identity for the checkpoint (it resumes with any rank count).
        DataParallel p = dp;
        p.train_rows = train.rows;
        p.validation_rows = held.rows;
        const std::vector<T> tx(train.x.begin(), train.x.end()), ty(train.y.begin(), train.y.end()),
            vx(held.x.begin(), held.x.end()), vy(held.y.begin(), held.y.end());
        const std::uint64_t hash = bilevel_data_hash<T>(tx, ty, vx, vy);
        trainer_ = std::make_unique<BilevelTrainer<T>>(ctx_, spec, train_, held_, c_.reward_form,
                                                       std::span<const double>(c_.reward_params), o, p, hash);
      } else {
        trainer_ = std::make_unique<BilevelTrainer<T>>(ctx_, spec, train_, held_, c_.reward_form,
                                                       std::span<const double>(c_.reward_params), o);
        trainer_->set_data_parallel(dp_);  // mpirun -np N: this rank's rows
      }
    } else {
      // The policy's row workspaces: the rows this process computes on.
      const std::int64_t capacity = std::max({std::int64_t{1}, train_.x.rows, held_.empty() ? 0 : held_.x.rows});
      policy_ = std::make_unique<GaussianPolicy<T>>(ctx_, spec, train.dims, c_.head, capacity);
      params_ = Buffer<T>(ctx_, static_cast<std::size_t>(policy_->parameter_count()));
      if (c_.method == Method::pg) reward_ = c_.reward_params;
      if (c_.method == Method::heuristic && !local_) heuristic(train.dims);
    }
  }

  void set_checkpoint(fs::path path, std::int64_t every) override { checkpoint_.set(std::move(path), every); }

  void set_identity(const std::vector<std::pair<std::string, std::string>>& lines) override {
    if (trainer_) trainer_->set_checkpoint_identity(lines);
  }

  RunOptions options() const override {
    RunOptions o;
    if (trainer_) {
      o.bilevel = options_cast<BilevelOptions<double>>(trainer_->options());
    } else {
      o.policy = options_cast<PolicyFitOptions<double>>(plain_options());
    }
    return o;
  }

  std::int64_t resume(const fs::path& path) override {
    if (!trainer_) bad_input(command_, "--resume", "only a bilevel run can be resumed (config.method is not bilevel)");
    trainer_->load(path);
    if (trainer_->steps_done() > c_.outer_steps) {
      bad_input(command_, "--resume",
                fmt::format("the checkpoint '{}' holds {} outer steps, more than --outer-steps {}", path.string(),
                            trainer_->steps_done(), c_.outer_steps));
    }
    return trainer_->steps_done();
  }

  std::int64_t total_units() const override { return c_.method == Method::bilevel ? c_.outer_steps : c_.plain.steps; }

  RunResult run(const ProgressFn& progress) override {
    const auto t0 = std::chrono::steady_clock::now();
    RunResult out = c_.method == Method::bilevel ? run_bilevel(progress) : run_plain(progress);
    out.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }

 private:
  /// Rows `r` of `d` into the backend's memory.
  void upload(const HostData& d, Buffer<T>& bx, Buffer<T>& by, RegressionData<T>& view, RowRange r = {0, -1}) {
    if (r.rows < 0) r = {0, d.rows};
    const auto at = [&](const std::vector<double>& v, std::int64_t cols, std::int64_t row) {
      return v.begin() + static_cast<std::ptrdiff_t>(row * cols);
    };
    const std::vector<T> x(at(d.x, d.inputs, r.first), at(d.x, d.inputs, r.first + r.rows)),
        y(at(d.y, d.dims, r.first), at(d.y, d.dims, r.first + r.rows));
    bx = Buffer<T>(ctx_, std::span<const T>(x));
    by = Buffer<T>(ctx_, std::span<const T>(y));
    view = {std::as_const(bx).matrix(r.rows, d.inputs), std::as_const(by).matrix(r.rows, d.dims)};
  }

  /// --method heuristic: the reward of the training targets (every row in the backend's memory).
  void heuristic(std::int64_t dims) {
    Buffer<T> r(ctx_, static_cast<std::size_t>(reward_param_count(c_.reward_form, dims)));
    heuristic_reward<T>(ctx_, train_.y, static_cast<T>(c_.lambda), c_.reward_form, r.vector());
    const std::vector<T> h = r.to_host();
    reward_.assign(h.begin(), h.end());
    for (double v : reward_) {
      if (!std::isfinite(v)) {
        bad_input(command_, "--method heuristic", "the heuristic reward of these targets is not finite (constant targets?)");
      }
    }
  }

  PolicyFitOptions<T> plain_options() const {
    PolicyFitOptions<double> o = fit_options(c_);
    if (o.loss == PolicyLoss::pg) o.reward_params = reward_;
    PolicyFitOptions<T> out = options_cast<PolicyFitOptions<T>>(o);
    out.parallel = dp_;
    out.parallel.train_rows = train_total_;  // 0 unless the views hold this rank's rows only
    out.parallel.validation_rows = held_total_;
    return out;
  }

  RunResult run_plain(const ProgressFn& progress) {
    const PolicyFitOptions<T> o = plain_options();
    // fit_policy has no per-step hook: progress is reported when it returns.
    const std::vector<PolicyFitRecord> recs = fit_policy<T>(ctx_, *policy_, params_.vector(), train_, held_, o);
    RunResult out;
    for (const PolicyFitRecord& r : recs) {
      StepRecord s;
      s.step = r.step;
      s.train = r.train;
      s.held_out = r.validation;
      out.records.push_back(std::move(s));
    }
    for (StepRecord& r : out.records) {
      r.train = to_original(r.train);
      r.held_out = to_original(r.held_out);
    }
    out.train = out.records.back().train;
    out.held_out = out.records.back().held_out;
    out.reward_params = reward_;
    out.inner_steps = c_.plain.steps;
    if (progress) progress(c_.plain.steps, c_.plain.steps, "");
    return out;
  }

  /// Metrics of the standardised targets in the original units (one scale s for every dimension:
  /// NLL/dim + log s, RMSE and std × s).
  [[nodiscard]] PolicyMetrics to_original(PolicyMetrics m) const {
    if (c_.target_scale == 1) return m;
    m.nll_per_dim += std::log(c_.target_scale);
    m.rmse *= c_.target_scale;
    m.mean_std *= c_.target_scale;
    return m;
  }

  RunResult run_bilevel(const ProgressFn& progress) {
    // Stops at the budget or as soon as the run has converged or diverged (a resumed run that
    // had already stopped runs no further step).
    const BilevelVerdict v =
        run_outer_loop(*trainer_, c_.outer_steps, checkpoint_.path, checkpoint_.every, [&](std::int64_t k, const BilevelRecord& r) {
          if (progress) {
            progress(k, c_.outer_steps,
                     fmt::format("{}  outer loss {:.4f}", describe_reward(c_.reward_form, r.reward_params, train_.y.cols),
                                 r.outer_loss));
          }
        });
    RunResult out;
    out.verdict = v;
    for (const BilevelRecord& r : trainer_->history()) {
      StepRecord s;
      static_cast<OuterStepFields&>(s) = outer_fields(r);
      s.step = r.step;
      s.train = to_original(r.train);
      s.held_out = to_original(r.validation);
      s.reward_params = r.reward_params;
      s.hypergradient = r.hypergradient;
      if (c_.target_scale != 1) s.outer_loss += std::log(c_.target_scale);
      out.inner_steps += r.inner_steps;
      out.records.push_back(std::move(s));
    }
    // The returned model (FinalModel): its step's metrics are those of its inner policy.
    out.last_reward_params = trainer_->reward_params();
    out.model = returned_model(*trainer_, c_.final_model, c_.reward_params);
    if (!out.records.empty()) {
      const StepRecord& m = out.records[static_cast<std::size_t>(out.model.outer_step - 1)];
      out.train = m.train;
      out.held_out = m.held_out;
      out.model.outer_loss = m.outer_loss;  // in the original units
    }
    out.reward_params = out.model.source == FinalModel::best ? out.model.trained_at : out.last_reward_params;
    return out;
  }

  Context& ctx_;
  RegressionConfig c_;
  DataParallel dp_;
  std::string command_;
  Buffer<T> train_x_, train_y_, held_x_, held_y_;
  RegressionData<T> train_{}, held_{};
  // Plain fit on ranks: the buffers hold only this rank's rows of sets of these many rows.
  bool local_ = false;
  std::int64_t train_total_ = 0, held_total_ = 0;
  std::unique_ptr<GaussianPolicy<T>> policy_;
  Buffer<T> params_;
  std::vector<double> reward_;
  std::unique_ptr<BilevelTrainer<T>> trainer_;
  CheckpointPlan checkpoint_;
};

template <class T>
class TypedClassRun final : public RunImpl<ClassificationResult> {
 public:
  TypedClassRun(Context& ctx, const ClassificationConfig& c, const ClassHostData& train, const ClassHostData& val,
                const ClassHostData& test, std::int64_t classes, const DataParallel& dp, std::string command)
      : ctx_(ctx), c_(c), classes_(classes), command_(std::move(command)), dp_(dp), train_host_(&train) {
    // mpirun -np N: each rank uploads only its rows of the validation and test sets (evaluated by
    // evaluate_sharded) and of the training set (BilevelTrainer's data-parallel constructor; the
    // classifier phase takes the training rows from the host, fit_classifier(HostClassificationData)).
    // Minibatch bilevel windows draw from every row: that run uploads every training row.
    const bool active = dp_.communicator != nullptr && (dp_.communicator->size() > 1 || dp_.deterministic);
    const bool minibatch = c_.bilevel.inner.batch_size > 0 && c_.bilevel.inner.batch_size < train.rows;
    local_ = active;
    const bool local_train = local_ && !(c_.method == ClassMethod::bilevel && minibatch);
    local_val_ = local_ && !(c_.method == ClassMethod::bilevel && minibatch);
    const auto rows = [&](const ClassHostData& d, bool mine) { return mine ? local_rows(dp_, d.rows) : RowRange{0, d.rows}; };
    all_train_ = !local_train;
    // A plain fit on the rank's rows reads the training rows only from the host (the classifier phase).
    if (c_.method == ClassMethod::bilevel || !local_train) upload(train, train_x_, train_y_, train_, rows(train, local_train));
    if (!val.empty()) upload(val, val_x_, val_y_, val_, rows(val, local_val_));
    upload(test, test_x_, test_y_, test_, rows(test, local_));
    if (local_val_) val_total_ = val.rows;
    if (local_) test_total_ = test.rows;
    if (const char* v = std::getenv("D2R_DATA_STATS"); v != nullptr && *v == '1') {
      std::fprintf(stderr,
                   "d2r data stats (rank %d of %d): training rows held %lld of %lld (%lld bytes); validation rows "
                   "held %lld of %lld (%lld bytes); test rows held %lld of %lld (%lld bytes)\n",
                   rank(), ranks(), rows_held(train_), static_cast<long long>(train.rows),
                   bytes_held(train_x_, train_y_), rows_held(val_), static_cast<long long>(val.rows),
                   bytes_held(val_x_, val_y_), rows_held(test_), static_cast<long long>(test.rows),
                   bytes_held(test_x_, test_y_));
    }
    spec_ = MlpSpec{.inputs = train.inputs, .hidden = c_.hidden, .outputs = 0, .activation = c_.activation};
    // The policy's row workspaces: the most rows one policy call sees on this rank. One process:
    // every row of the largest set. A rank holding its rows: the rows it uploaded (evaluation, the
    // bilevel model's metrics) and, for a classifier phase on host rows, what that holds at once.
    std::int64_t capacity = std::max({train.rows, val.rows, test.rows});
    if (local_) {
      capacity = std::max<std::int64_t>({1, rows_held(train_), rows_held(val_), rows_held(test_)});
      if (!all_train_) capacity = std::max(capacity, classifier_rows_held(dp_, train.rows, c_.plain.batch_size));
    }
    if (const char* v = std::getenv("D2R_DATA_STATS"); v != nullptr && *v == '1') {
      std::fprintf(stderr, "d2r data stats (rank %d of %d): policy batch capacity %lld rows\n", rank(), ranks(),
                   static_cast<long long>(capacity));
    }
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
        trainer_->set_data_parallel(dp_);  // mpirun -np N: this rank's rows
      }
    }
  }

  double heuristic_beta() const override { return heuristic_beta_; }

  void set_checkpoint(std::filesystem::path path, std::int64_t every) override { checkpoint_.set(std::move(path), every); }

  void set_identity(const std::vector<std::pair<std::string, std::string>>& lines) override {
    if (trainer_) trainer_->set_checkpoint_identity(lines);
  }

  RunOptions options() const override {
    RunOptions o;
    o.classifier = options_cast<ClassifierFitOptions<double>>(plain_options(c_.method == ClassMethod::pg ? c_.beta : kNaN));
    if (trainer_) o.bilevel = options_cast<BilevelOptions<double>>(trainer_->options());
    return o;
  }

  /// The options of the PG/cross-entropy phase; `beta` NaN: β = 1 (unused by nll; bilevel and
  /// heuristic fill in their β when they run).
  ClassifierFitOptions<T> plain_options(double beta) const {
    ClassifierFitOptions<T> out = options_cast<ClassifierFitOptions<T>>(fit_options(c_, beta));
    out.parallel = dp_;
    out.parallel.validation_rows = test_total_;  // 0 unless the test view holds this rank's rows only
    return out;
  }

  std::int64_t resume(const std::filesystem::path& path) override {
    if (!trainer_) bad_input(command_, "--resume", "only a bilevel run can be resumed (config.method is not bilevel)");
    trainer_->load(path);
    if (trainer_->steps_done() > c_.outer_steps) {
      bad_input(command_, "--resume",
                fmt::format("the checkpoint '{}' holds {} outer steps, more than --outer-steps {}", path.string(),
                            trainer_->steps_done(), c_.outer_steps));
    }
    return trainer_->steps_done();
  }

  std::int64_t total_units() const override { return (c_.method == ClassMethod::bilevel ? c_.outer_steps : 0) + 1; }

  ClassificationResult run(const ProgressFn& progress) override {
    const auto t0 = std::chrono::steady_clock::now();
    ClassificationResult out;
    out.heuristic_beta = heuristic_beta_;
    const std::int64_t total = total_units();
    double beta = kNaN;
    if (c_.method == ClassMethod::pg) beta = c_.beta;
    if (c_.method == ClassMethod::heuristic) beta = heuristic_beta_;
    if (c_.method == ClassMethod::bilevel) {
      out.verdict = run_outer_loop(*trainer_, c_.outer_steps, checkpoint_.path, checkpoint_.every,
                                   [&](std::int64_t k, const BilevelRecord& r) {
                                     if (!progress) return;
                                     progress(k, total,
                                              fmt::format("β = {:.4g}  outer CE {:.4f}  train acc {:.3f}",
                                                          r.reward_params.at(0), r.outer_loss, r.train.accuracy));
                                   });
      // The records of every outer step, those restored by resume() included.
      for (const BilevelRecord& r : trainer_->history()) {
        OuterRecord s;
        static_cast<OuterStepFields&>(s) = outer_fields(r);
        s.step = r.step;
        s.beta = r.reward_params.at(0);
        s.hypergradient = r.hypergradient.empty() ? kNaN : r.hypergradient[0];
        s.train = r.train;
        s.validation = val_total_ == 0 && val_.empty() ? nan_class_metrics() : r.validation;
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

    if (c_.method == ClassMethod::bilevel) out.model.source = c_.final_model;
    if (c_.method == ClassMethod::bilevel && c_.final_model != FinalModel::pg && !out.outer.empty()) {
      // A model the outer loop judged: the inner policy of the best-judged or the last outer step
      // (its validation cross-entropy is that step's outer loss), trained at the β before that
      // step's move; best reports that β as the learned one.
      out.model = returned_model(*trainer_, c_.final_model, {c_.beta});
      const bool best = out.model.source == FinalModel::best;
      const std::vector<T> theta = ctx_.to_host(best ? trainer_->best_policy_params() : trainer_->policy_params());
      params_.copy_from_host(std::span<const T>(theta));
      if (best) out.beta = out.model.trained_at.at(0);
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
    // Its epochs shuffle every training row: a rank that holds only its rows passes the caller's
    // host copy, of which fit_classifier uploads only this rank's parts of each epoch's batches.
    const std::int64_t n = train_host_->rows;
    if (!all_train_ && !std::is_same_v<T, double>) train_x_host_.assign(train_host_->x.begin(), train_host_->x.end());
    const HostClassificationData<T> host_train{.x = host_x(), .labels = train_host_->labels, .rows = n, .cols = train_host_->inputs};
    if (const char* v = std::getenv("D2R_DATA_STATS"); v != nullptr && *v == '1') {
      std::fprintf(stderr, "d2r data stats (rank %d of %d): classifier phase: training rows held %lld of %lld\n",
                   rank(), ranks(),
                   all_train_ ? rows_held(train_) : static_cast<long long>(classifier_rows_held(o.parallel, n, o.batch_size)),
                   static_cast<long long>(n));
    }
    const std::vector<PolicyFitRecord> recs =
        all_train_ ? fit_classifier<T>(ctx_, *policy_, params_.vector(), train_, test_, o)
                   : fit_classifier<T>(ctx_, *policy_, params_.vector(), host_train, test_, o);
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
  int rank() const { return dp_.communicator != nullptr ? dp_.communicator->rank() : 0; }
  int ranks() const { return dp_.communicator != nullptr ? dp_.communicator->size() : 1; }
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
  // row, and else the caller's host copy (which outlives this run) for the classifier phase
  // (train_x_host_: its features as T when T is not double).
  DataParallel dp_{};
  bool local_ = false, local_val_ = false, all_train_ = false;
  std::int64_t val_total_ = 0, test_total_ = 0;
  const ClassHostData* train_host_ = nullptr;
  std::vector<T> train_x_host_;
  std::span<const T> host_x() const {
    if constexpr (std::is_same_v<T, double>) {
      return train_host_->x;
    } else {
      return train_x_host_;
    }
  }
  std::unique_ptr<CategoricalPolicy<T>> policy_;
  Buffer<T> params_;
  std::unique_ptr<BilevelTrainer<T>> trainer_;
  double heuristic_beta_ = kNaN;
  CheckpointPlan checkpoint_;
};

}  // namespace

template <class T>
ReturnedModel returned_model(const BilevelTrainer<T>& t, FinalModel asked, const std::vector<double>& initial) {
  const std::vector<BilevelRecord>& h = t.history();
  ReturnedModel m;
  m.source = asked;
  m.tracked_from = t.best_tracked_from();
  if (h.empty()) return m;
  if (asked == FinalModel::best && t.best_step() == 0) {
    m.source = FinalModel::last;
    m.fallback = true;
  }
  if (m.source == FinalModel::best) {
    m.outer_step = t.best_step();
    m.trained_at = t.best_reward_params();
    m.outer_loss = t.best_outer_loss();
  } else {
    m.outer_step = h.back().step;
    m.trained_at = h.size() >= 2 ? h[h.size() - 2].reward_params : initial;
    m.outer_loss = h.back().outer_loss;
  }
  for (std::int64_t k = 0; k < m.outer_step; ++k) m.inner_steps += h[static_cast<std::size_t>(k)].inner_steps;
  return m;
}

template ReturnedModel returned_model(const BilevelTrainer<float>&, FinalModel, const std::vector<double>&);
template ReturnedModel returned_model(const BilevelTrainer<double>&, FinalModel, const std::vector<double>&);

const char* to_string(FinalModel model) noexcept {
  switch (model) {
    case FinalModel::best: return "best";
    case FinalModel::last: return "last";
    case FinalModel::pg: return "pg";
  }
  return "unknown";
}

const char* to_string(Method method) noexcept {
  switch (method) {
    case Method::mse: return "mse";
    case Method::nll: return "nll";
    case Method::pg: return "pg";
    case Method::heuristic: return "heuristic";
    case Method::bilevel: return "bilevel";
  }
  return "unknown";
}

const char* to_string(ClassMethod method) noexcept {
  switch (method) {
    case ClassMethod::nll: return "nll";
    case ClassMethod::pg: return "pg";
    case ClassMethod::heuristic: return "heuristic";
    case ClassMethod::bilevel: return "bilevel";
  }
  return "unknown";
}

std::vector<double> reward_in_scale(RewardForm form, const std::vector<double>& params, std::int64_t /*dims*/,
                                    double factor) {
  std::vector<double> out = params;
  for (double& v : out) v = form == RewardForm::full ? v / factor : v / (factor * factor);
  return out;
}

std::vector<double> identity_reward(RewardForm form, std::int64_t dims) {
  if (form != RewardForm::full) return std::vector<double>(static_cast<std::size_t>(reward_param_count(form, dims)), 1.0);
  std::vector<double> r(static_cast<std::size_t>(reward_param_count(form, dims)), 0.0);
  for (std::int64_t i = 0; i < dims; ++i) r[static_cast<std::size_t>(i * (i + 1) / 2 + i)] = 1.0;
  return r;
}

std::string describe_reward(RewardForm form, const std::vector<double>& p, std::int64_t n) {
  if (p.empty()) return "none";
  switch (form) {
    case RewardForm::scalar: return fmt::format("u = {:.4g}", p[0]);
    case RewardForm::diagonal: return fmt::format("U = diag({:.4g})", fmt::join(p, ", "));
    case RewardForm::full: {
      // U = R Rᵀ from the packed lower-triangular R.
      const auto R = [&](std::int64_t i, std::int64_t j) { return j <= i ? p[static_cast<std::size_t>(i * (i + 1) / 2 + j)] : 0.0; };
      std::vector<std::string> rows;
      std::vector<double> diag;
      for (std::int64_t i = 0; i < n; ++i) {
        std::vector<double> row;
        for (std::int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (std::int64_t k = 0; k <= std::min(i, j); ++k) s += R(i, k) * R(j, k);
          row.push_back(s);
        }
        diag.push_back(row[static_cast<std::size_t>(i)]);
        rows.push_back(fmt::format("[{:.4g}]", fmt::join(row, ", ")));
      }
      if (n <= 4) return fmt::format("U = R Rᵀ = [{}]", fmt::join(rows, ", "));
      return fmt::format("U = R Rᵀ, diag(U) = ({:.4g})", fmt::join(diag, ", "));
    }
  }
  return "?";
}

PolicyFitOptions<double> fit_options(const RegressionConfig& c) {
  PolicyFitOptions<double> o = c.plain;
  o.loss = c.method == Method::mse ? PolicyLoss::mse : c.method == Method::nll ? PolicyLoss::nll : PolicyLoss::pg;
  o.generations = c.generations;
  o.pg.entropy_weight = c.lambda;
  o.objective = c.inner_objective;
  o.seed = c.seed;
  o.reward_form = c.reward_form;
  return o;
}

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

RegressionRun::RegressionRun(Context& ctx, const RegressionConfig& config, const HostData& train,
                             const HostData& held_out, const DataParallel& parallel, std::string command) {
  shard::check(ctx, "RegressionRun", "parallel", parallel);  // before local_rows reads it
  check(config, train, held_out, ctx);
  if (config.double_precision) {
    impl_ = std::make_unique<TypedRun<double>>(ctx, config, train, held_out, parallel, std::move(command));
  } else {
    impl_ = std::make_unique<TypedRun<float>>(ctx, config, train, held_out, parallel, std::move(command));
  }
}

ClassificationRun::ClassificationRun(Context& ctx, const ClassificationConfig& config, const ClassHostData& train,
                                     const ClassHostData& validation, const ClassHostData& test, std::int64_t classes,
                                     const DataParallel& parallel, std::string command) {
  shard::check(ctx, "ClassificationRun", "parallel", parallel);  // before local_rows reads it
  check(config, train, validation, test, classes, ctx);
  if (config.double_precision) {
    impl_ = std::make_unique<TypedClassRun<double>>(ctx, config, train, validation, test, classes, parallel,
                                                    std::move(command));
  } else {
    impl_ = std::make_unique<TypedClassRun<float>>(ctx, config, train, validation, test, classes, parallel,
                                                   std::move(command));
  }
}

}  // namespace d2r::runs
