// The regression trainer behind `d2r fit` and `d2r reproduce` (regression.hpp).
#include "host/cli/regression.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <span>
#include <utility>

#include <fmt/format.h>

#include "d2r/buffer.hpp"
#include "d2r/error.hpp"
#include "d2r/heuristic.hpp"
#include "host/cli/classification.hpp"
#include "host/cli/fit_inputs.hpp"
#include "host/cli/output.hpp"
#include "host/cli/parallel.hpp"

namespace d2r::cli {

namespace fs = std::filesystem;

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

Method parse_method(const std::string& name) {
  for (Method m : {Method::mse, Method::nll, Method::pg, Method::heuristic, Method::bilevel}) {
    if (name == to_string(m)) return m;
  }
  throw Error(ErrorKind::invalid_argument, "--method",
              fmt::format("--method: expected mse, nll, pg, heuristic or bilevel, got '{}'", name));
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

std::vector<std::string> bilevel_warnings(const std::vector<OuterStepFacts>& records, double solver_tolerance,
                                          double stationarity_tolerance, double hypergradient_clamp) {
  std::vector<std::string> w;
  if (records.empty()) return w;
  const auto N = records.size();
  std::size_t clamped = 0, missed = 0, unsteady = 0, at_max = 0;
  double worst_residual = 0, worst_gradient = 0;
  for (const OuterStepFacts& r : records) {
    clamped += r.clamped ? 1 : 0;
    at_max += r.at_max_step ? 1 : 0;
    if (!(r.solver_relative_residual <= solver_tolerance)) {
      ++missed;
      worst_residual = std::max(worst_residual, r.solver_relative_residual);
    }
    if (stationarity_tolerance > 0 && !(r.inner_gradient_relative <= stationarity_tolerance)) {
      ++unsteady;
      worst_gradient = std::max(worst_gradient, r.inner_gradient_relative);
    }
  }
  if (clamped > 0) {
    w.push_back(fmt::format("the hypergradient sat at its clamp (|h| = {}) in {} of {} outer steps: its size is "
                            "not known there (badly scaled targets or reward?)",
                            hypergradient_clamp, clamped, N));
  }
  if (missed > 0) {
    w.push_back(fmt::format("the linear solve missed its relative-residual tolerance {} in {} of {} outer steps "
                            "(worst {:.3g}): the hypergradient is approximate there",
                            solver_tolerance, missed, N, worst_residual));
  }
  if (unsteady > 0) {
    w.push_back(fmt::format("the inner policy was not stationary (‖∇θ L_in‖ above {} of its starting value, "
                            "worst {:.3g}) at the implicit step of {} of {} outer steps: the inner step cap was reached, and the reward was not moved there",
                            stationarity_tolerance, worst_gradient, unsteady, N));
  }
  if (at_max == N && N >= 2) {
    w.push_back(fmt::format("the reward moved by the maximum step at every one of the {} outer steps: the learned "
                            "value is set by the step budget, not by the data",
                            N));
  }
  // Training and validation losses parting ways: over the run the training loss fell while the
  // validation loss rose above its best by more than 0.1 nats.
  const OuterStepFacts& first = records.front();
  const OuterStepFacts& last = records.back();
  double best_val = std::numeric_limits<double>::infinity();
  for (const OuterStepFacts& r : records) best_val = std::min(best_val, r.validation_loss);
  if (std::isfinite(last.validation_loss) && last.train_loss < first.train_loss &&
      last.validation_loss > best_val + 0.1) {
    w.push_back(fmt::format("the training and validation losses part ways: the training loss fell from {:.4g} to "
                            "{:.4g} while the validation loss rose from its best {:.4g} to {:.4g} (an over-fitting "
                            "inner policy; use the validation rows as outer data)",
                            first.train_loss, last.train_loss, best_val, last.validation_loss));
  }
  return w;
}

nlohmann::json RegressionConfig::to_json() const {
  nlohmann::json j = {{"method", cli::to_string(method)},
                      {"precision", double_precision ? "double" : "float"},
                      {"hidden", hidden},
                      {"activation", d2r::to_string(activation)},
                      {"head", d2r::to_string(head)},
                      {"seed", seed}};
  if (method == Method::pg || method == Method::heuristic || method == Method::bilevel) {
    j["reward"] = d2r::to_string(reward_form);
    j["lambda"] = lambda;
    j["generations"] = generations;
    if (method != Method::heuristic) j["reward_init"] = reward_params;
    if (method != Method::heuristic) j["objective"] = inner_objective == InnerObjective::exact ? "exact" : "reinforce";
  }
  if (method == Method::bilevel) {
    outer_config_json(*this, j);
  } else {
    j["steps"] = plain.steps;
    j["learning_rate"] = plain.adam.learning_rate;
    j["gradient_clamp"] = std::isfinite(plain.gradient_clamp) ? nlohmann::json(plain.gradient_clamp) : nlohmann::json("none");
    j["eval_every"] = plain.evaluate_every;
  }
  return j;
}

// ------------------------------------------------------------------ the run
struct RegressionRun::Impl : RunImpl<RunResult> {};

namespace {

template <class T>
class TypedRun final : public RegressionRun::Impl {
 public:
  TypedRun(Context& ctx, const RegressionConfig& c, const HostData& train, const HostData& held, std::string command)
      : ctx_(ctx), c_(c), command_(std::move(command)) {
    // mpirun -np N: each rank uploads only the rows it computes on (fit_policy's local views and
    // BilevelTrainer's data-parallel constructor, DataParallel::train_rows); the heuristic reward
    // reads every target first. Minibatch bilevel windows draw from every row: all are uploaded.
    const DataParallel dp = data_parallel();
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
                   d2r::cli::rank(), ranks(), static_cast<long long>(train_.x.rows), static_cast<long long>(train.rows),
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
        trainer_->set_data_parallel(dp);  // mpirun -np N: this rank's rows (parallel.hpp)
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

  void set_checkpoint(fs::path path, std::int64_t every) override {
    checkpoint_ = std::move(path);
    every_ = every;
  }

  void set_identity(const std::vector<std::pair<std::string, std::string>>& lines) override {
    if (trainer_) trainer_->set_checkpoint_identity(lines);
  }

  nlohmann::json options_json() const override {
    if (trainer_) return fields_json(trainer_->options());
    return fields_json(plain_options());
  }

  std::int64_t resume(const fs::path& path) override {
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
    out.parallel = data_parallel();
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
        run_outer_loop(*trainer_, c_.outer_steps, checkpoint_, every_, [&](std::int64_t k, const BilevelRecord& r) {
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
      s.step = r.step;
      s.train = r.train;
      s.held_out = r.validation;
      s.reward_params = r.reward_params;
      s.hypergradient = r.hypergradient;
      s.outer_loss = r.outer_loss;
      s.mean_inner_reward = r.mean_inner_reward;
      s.solver_residual = r.solver_residual;
      s.solver_iterations = r.solver_iterations;
      s.solver_status = r.solver_status;
      s.wall_seconds = r.wall_seconds;
      s.solver_relative_residual = r.solver_relative_residual();
      s.inner_gradient_norm = r.inner_gradient_norm;
      s.inner_gradient_norm0 = r.inner_gradient_norm0;
      s.max_step = r.max_step;
      s.inner_steps = r.inner_steps;
      s.hypergradient_clamped = r.hypergradient_clamped;
      s.at_max_step = r.at_max_step;
      s.train = to_original(s.train);
      s.held_out = to_original(s.held_out);
      if (c_.target_scale != 1) s.outer_loss += std::log(c_.target_scale);
      out.inner_steps += r.inner_steps;
      out.records.push_back(std::move(s));
    }
    if (!out.records.empty()) {
      out.train = out.records.back().train;
      out.held_out = out.records.back().held_out;
    }
    out.reward_params = trainer_->reward_params();
    return out;
  }

  Context& ctx_;
  RegressionConfig c_;
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
  fs::path checkpoint_;
  std::int64_t every_ = 1;
};

bool positive_finite(double v) { return std::isfinite(v) && v > 0; }

}  // namespace

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

std::string option_for_field(std::string_view field) {
  static const std::pair<std::string_view, std::string_view> kOptions[] = {
      {"options.inner.objective", "--inner-objective"}, {"options.inner.steps", "--inner-steps"},
      {"options.inner.adam", "--lr"},                   {"options.inner.generations", "--generations"},
      {"options.inner.pg.entropy_weight", "--lambda"},  {"options.inner.batch_size", "--inner-batch-size"},
      {"options.inner.stationarity_tolerance", "--inner-tolerance"},
      {"options.inner.max_steps", "--inner-max-steps"}, {"options.inner_start", "--inner-start"},
      {"options.curvature", "--curvature"},             {"options.solver", "--solver"},
      {"options.cg.tolerance", "--solver-tolerance"},   {"options.cg.damping", "--damping"},
      {"options.cg.max_iterations", "--solver-iterations"}, {"options.outer_adam", "--outer-lr"},
      {"options.rprop.initial_step", "--outer-step"},   {"options.stopping.window", "--window"},
      {"options.stopping.reward_tolerance", "--reward-tolerance"},
      {"options.stopping.loss_tolerance", "--loss-tolerance"}, {"options.outer_data", "--outer-data"},
      {"options.steps", "--steps"},                     {"options.adam", "--lr"},
      {"options.evaluate_every", "--eval-every"},       {"options.generations", "--generations"},
      {"options.pg.entropy_weight", "--lambda"},        {"options.epochs", "--epochs"},
      {"options.batch_size", "--batch-size"},           {"options.objective", "--inner-objective"}};
  for (const auto& [name, option] : kOptions) {
    if (field == name) return std::string(option);
  }
  return std::string(field);
}

namespace {
template <class O>
void check_fields_as_user(const std::string& command, const O& options) {
  try {
    d2r::check(options);
  } catch (const Error& e) {
    bad_input(command, option_for_field(e.argument()), user_words(e));
  }
}
}  // namespace

void check_as_user(const std::string& command, const BilevelOptions<double>& o) { check_fields_as_user(command, o); }
void check_as_user(const std::string& command, const PolicyFitOptions<double>& o) { check_fields_as_user(command, o); }
void check_as_user(const std::string& command, const ClassifierFitOptions<double>& o) {
  check_fields_as_user(command, o);
}

void check_reward_values(const std::string& cmd, RewardForm form, const std::vector<double>& params, std::int64_t dims) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const double v = params[i];
    bool diagonal = form != RewardForm::full;
    if (!diagonal) {
      for (std::int64_t r = 0; r < dims; ++r) diagonal = diagonal || static_cast<std::int64_t>(i) == r * (r + 1) / 2 + r;
    }
    if (!std::isfinite(v) || (diagonal && !(v > 0))) {
      bad_input(cmd, "--u", fmt::format("entry {} is {}; expected finite{}", i, v, diagonal ? " and > 0" : ""));
    }
  }
}

namespace {

}  // namespace

template <class Config>
void check_outer_settings(const std::string& cmd, const Config& c) {
  if (!positive_finite(c.bilevel.rprop.initial_step) || c.bilevel.rprop.initial_step > 10) {
    bad_input(cmd, "--outer-step", fmt::format("expected a log-space step in (0, 10], got {}", c.bilevel.rprop.initial_step));
  }
  if (!(std::isfinite(c.bilevel.inner.stationarity_tolerance) && c.bilevel.inner.stationarity_tolerance >= 0)) {
    bad_input(cmd, "--inner-tolerance",
              fmt::format("expected a finite tolerance >= 0 (0: no check), got {}", c.bilevel.inner.stationarity_tolerance));
  }
  const std::int64_t cap = c.bilevel.inner.max_steps;
  if (cap < 0 || cap > (std::int64_t{1} << 24)) {
    bad_input(cmd, "--inner-max-steps", fmt::format("expected 0 (K_in) to 2^24, got {}", c.bilevel.inner.max_steps));
  }
  if (!positive_finite(c.bilevel.cg.tolerance)) {
    bad_input(cmd, "--solver-tolerance", fmt::format("expected a finite tolerance > 0, got {}", c.bilevel.cg.tolerance));
  }
  if (!(std::isfinite(c.bilevel.cg.damping) && c.bilevel.cg.damping >= 0)) {
    bad_input(cmd, "--damping", fmt::format("expected a finite damping >= 0, got {}", c.bilevel.cg.damping));
  }
  if (c.bilevel.stopping.window < 2) bad_input(cmd, "--window", fmt::format("expected >= 2 outer steps, got {}", c.bilevel.stopping.window));
  if (!positive_finite(c.bilevel.stopping.reward_tolerance)) {
    bad_input(cmd, "--reward-tolerance", fmt::format("expected a tolerance > 0, got {}", c.bilevel.stopping.reward_tolerance));
  }
  if (!positive_finite(c.bilevel.stopping.loss_tolerance)) {
    bad_input(cmd, "--loss-tolerance", fmt::format("expected a tolerance > 0, got {}", c.bilevel.stopping.loss_tolerance));
  }
}
template void check_outer_settings<RegressionConfig>(const std::string&, const RegressionConfig&);
template void check_outer_settings<ClassificationConfig>(const std::string&, const ClassificationConfig&);

namespace {

/// The checks of the command line's settings, with messages naming the options; the library
/// checks again (and everything else) when the trainer is built.
void validate(const std::string& cmd, const RegressionConfig& c, const HostData& train, const HostData& held,
              const Context& ctx) {
  const auto check_data = [&](const HostData& d, const char* name) {
    if (d.inputs < 1 || d.dims < 1 || static_cast<std::int64_t>(d.x.size()) != d.rows * d.inputs ||
        static_cast<std::int64_t>(d.y.size()) != d.rows * d.dims) {
      bad_input(cmd, name, fmt::format("inconsistent data: {} rows, {} inputs, {} targets, {} and {} values", d.rows,
                                       d.inputs, d.dims, d.x.size(), d.y.size()));
    }
  };
  check_data(train, "training data");
  if (train.rows < 2) bad_input(cmd, "training data", fmt::format("expected at least 2 rows, got {}", train.rows));
  if (!held.empty()) {
    check_data(held, "held-out data");
    if (held.inputs != train.inputs || held.dims != train.dims) {
      bad_input(cmd, "held-out data", "its columns differ from the training data's");
    }
  }
  if (c.double_precision && ctx.backend() == Backend::cuda) {
    bad_input(cmd, "--precision", "double precision runs on the cpu backend only (use --device cpu or float)");
  }
  for (std::int64_t h : c.hidden) {
    if (h < 1) bad_input(cmd, "--hidden", fmt::format("layer widths must be >= 1, got {}", h));
  }
  if (!(std::isfinite(c.lambda) && c.lambda >= 0)) {
    bad_input(cmd, "--lambda", fmt::format("expected a finite entropy weight λ >= 0, got {}", c.lambda));
  }
  if (c.generations < 1) bad_input(cmd, "--generations", fmt::format("expected G >= 1, got {}", c.generations));
  const bool uses_reward = c.method == Method::pg || c.method == Method::bilevel;
  if (!uses_reward && !c.reward_params.empty()) {
    bad_input(cmd, "--u", fmt::format("reward parameters are used by --method pg and bilevel only, not {}",
                                      to_string(c.method)));
  }
  if (uses_reward) {
    const std::int64_t S = reward_param_count(c.reward_form, train.dims);
    if (static_cast<std::int64_t>(c.reward_params.size()) != S) {
      bad_input(cmd, "--u",
                fmt::format("a {} reward on {} targets has {} parameter{}{}, got {}", d2r::to_string(c.reward_form),
                            train.dims, S, S == 1 ? "" : "s",
                            c.reward_form == RewardForm::full ? " (the packed rows of R, U = R Rᵀ)" : "",
                            c.reward_params.size()));
    }
    check_reward_values(cmd, c.reward_form, c.reward_params, train.dims);
  }
  if (c.method == Method::heuristic && !(c.lambda > 0)) {
    bad_input(cmd, "--lambda", "the heuristic reward needs λ > 0");
  }
  if (c.method == Method::bilevel) {
    if (c.head != GaussianHead::diagonal) {
      bad_input(cmd, "--head", "the bilevel method trains a diagonal Gaussian head only");
    }
    if (c.outer_steps < 1) bad_input(cmd, "--outer-steps", fmt::format("expected >= 1, got {}", c.outer_steps));
    if (c.bilevel.inner.steps < 1) bad_input(cmd, "--inner-steps", fmt::format("expected >= 1, got {}", c.bilevel.inner.steps));
    if (c.bilevel.inner.batch_size < 0) {
      bad_input(cmd, "--inner-batch-size",
                fmt::format("expected rows per inner step >= 0 (0: full batch), got {}", c.bilevel.inner.batch_size));
    }
    if (!positive_finite(c.bilevel.inner.adam.learning_rate)) {
      bad_input(cmd, "--lr", fmt::format("expected a finite learning rate > 0, got {}", c.bilevel.inner.adam.learning_rate));
    }
    if (!positive_finite(c.bilevel.outer_adam.learning_rate)) {
      bad_input(cmd, "--outer-lr", fmt::format("expected a finite learning rate > 0, got {}", c.bilevel.outer_adam.learning_rate));
    }
    if (c.bilevel.outer_data == OuterData::validation && held.empty()) {
      bad_input(cmd, "--outer-data",
                "the outer loss is on the validation rows by default, and there are none: give --val-fraction > 0 "
                "or --outer-data train");
    }
    check_outer_settings(cmd, c);
    check_as_user(cmd, bilevel_options<double>(c));
  } else {
    if (c.plain.steps < 1) bad_input(cmd, "--steps", fmt::format("expected >= 1 training steps, got {}", c.plain.steps));
    if (!positive_finite(c.plain.adam.learning_rate)) {
      bad_input(cmd, "--lr", fmt::format("expected a finite learning rate > 0, got {}", c.plain.adam.learning_rate));
    }
    if (c.plain.evaluate_every < 1) bad_input(cmd, "--eval-every", fmt::format("expected >= 1, got {}", c.plain.evaluate_every));
    check_as_user(cmd, fit_options(c));
  }
}

}  // namespace

RegressionRun::RegressionRun(Context& ctx, const RegressionConfig& config, const HostData& train,
                             const HostData& held_out, std::string command) {
  validate(command, config, train, held_out, ctx);
  if (config.double_precision) {
    impl_ = std::make_unique<TypedRun<double>>(ctx, config, train, held_out, std::move(command));
  } else {
    impl_ = std::make_unique<TypedRun<float>>(ctx, config, train, held_out, std::move(command));
  }
}

RegressionRun::~RegressionRun() = default;

void RegressionRun::set_checkpoint(fs::path path, std::int64_t every) { impl_->set_checkpoint(std::move(path), every); }
void RegressionRun::set_identity(const std::vector<std::pair<std::string, std::string>>& lines) {
  impl_->set_identity(lines);
}
nlohmann::json RegressionRun::options_json() const { return impl_->options_json(); }
std::int64_t RegressionRun::resume(const fs::path& path) { return impl_->resume(path); }
RunResult RegressionRun::run(const ProgressFn& progress) { return impl_->run(progress); }
std::int64_t RegressionRun::total_units() const noexcept { return impl_->total_units(); }

// ------------------------------------------------------------------ output
void curves_table(const RunResult& result, bool bilevel, std::vector<std::string>& header,
                  std::vector<std::vector<double>>& rows, const std::string& held_out_name) {
  header = {"step", "train_nll_per_dim", "train_rmse", "train_mean_std", held_out_name + "_nll_per_dim",
            held_out_name + "_rmse", held_out_name + "_mean_std"};
  std::size_t S = 0;
  if (bilevel && !result.records.empty()) {
    S = result.records.front().reward_params.size();
    header.push_back("outer_loss");
    for (std::size_t i = 0; i < S; ++i) header.push_back(fmt::format("reward_{}", i));
    for (std::size_t i = 0; i < S; ++i) header.push_back(fmt::format("hypergradient_{}", i));
    for (const char* h : {"mean_inner_reward", "solver_iterations", "solver_residual", "wall_seconds",
                          "solver_relative_residual", "inner_steps", "inner_gradient_norm", "max_step"}) {
      header.push_back(h);
    }
  }
  rows.clear();
  for (const StepRecord& r : result.records) {
    std::vector<double> row{static_cast<double>(r.step), r.train.nll_per_dim, r.train.rmse, r.train.mean_std,
                            r.held_out.nll_per_dim, r.held_out.rmse, r.held_out.mean_std};
    if (bilevel) {
      row.push_back(r.outer_loss);
      for (std::size_t i = 0; i < S; ++i) row.push_back(i < r.reward_params.size() ? r.reward_params[i] : NAN);
      for (std::size_t i = 0; i < S; ++i) row.push_back(i < r.hypergradient.size() ? r.hypergradient[i] : NAN);
      row.insert(row.end(), {r.mean_inner_reward, static_cast<double>(r.solver_iterations), r.solver_residual,
                             r.wall_seconds, r.solver_relative_residual, static_cast<double>(r.inner_steps),
                             r.inner_gradient_norm, r.max_step});
    }
    rows.push_back(std::move(row));
  }
}

nlohmann::json records_json(const RunResult& result, bool bilevel, const std::string& held_out_name) {
  nlohmann::json out = nlohmann::json::array();
  for (const StepRecord& r : result.records) {
    nlohmann::json j = {{"step", r.step}, {"train", to_json(r.train)}, {held_out_name, to_json(r.held_out)}};
    if (bilevel) {
      j["reward_params"] = r.reward_params;
      j["hypergradient"] = r.hypergradient;
      j["outer_loss"] = r.outer_loss;
      j["mean_inner_reward"] = r.mean_inner_reward;
      j["solver_status"] = d2r::to_string(r.solver_status);
      j["solver_iterations"] = r.solver_iterations;
      j["solver_residual"] = r.solver_residual;
      j["solver_relative_residual"] = r.solver_relative_residual;
      j["inner_steps"] = r.inner_steps;
      j["inner_gradient_norm"] = r.inner_gradient_norm;
      j["inner_gradient_norm_relative"] =
          r.inner_gradient_norm0 > 0 ? r.inner_gradient_norm / r.inner_gradient_norm0 : 0.0;
      j["max_step"] = r.max_step;
      j["hypergradient_clamped"] = r.hypergradient_clamped;
      j["at_max_step"] = r.at_max_step;
      j["wall_seconds"] = r.wall_seconds;
    }
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace d2r::cli
