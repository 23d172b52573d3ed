// The bilevel scheduler and the plain policy trainers (d2r/bilevel.hpp): host-side loops over
// the primitives (GaussianPolicy losses, DiagGaussianPolicyCurvature, solvers, optimisers).
// The inner problems are in bilevel_problems.hpp, the option checks in bilevel_options.cpp, the
// checkpoints in bilevel_checkpoint.cpp.
#include "d2r/bilevel.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "d2r/data.hpp"
#include "d2r/error.hpp"
#include "d2r/policy_curvature.hpp"
#include "host/src/bilevel_impl.hpp"
#include "host/src/bilevel_problems.hpp"
#include "host/src/comm/shard.hpp"
#include "host/src/trainer_common.hpp"

namespace d2r {

using bilevel_detail::check_bilevel_setup;
using bilevel_detail::kCheckpointFormat;
using trainer_common::ChecksOff;
using trainer_common::check_class_data;
using trainer_common::check_data;
using trainer_common::form_name;
using trainer_common::mix_seed;
using trainer_common::nan_metrics;
using trainer_common::to_host_double;

namespace {

/// Captures what `record` enqueues (nothing runs) into a CUDA graph (Context::capture). A d2r::Error
/// during the capture names the way out.
template <class Record>
CapturedGraph capture_inner_step(Context& ctx, Record&& record) {
  try {
    return ctx.capture(std::forward<Record>(record));
  } catch (const Error& e) {
    detail::fail_unsupported("BilevelTrainer::step", "options.cuda_graph",
                             fmt::format("capturing the inner step in a CUDA graph failed ({}); set "
                                         "options.cuda_graph = false to run it eagerly",
                                         e.what()));
  }
}

}  // namespace

template <class T>
void BilevelTrainer<T>::initialize(Context& ctx, std::unique_ptr<bilevel_detail::Problem<T>> problem,
                                   RewardForm form, std::span<const double> reward_init,
                                   std::vector<std::size_t> positive) {
  const std::int64_t phi_size = static_cast<std::int64_t>(reward_init.size());
  impl_ = std::make_unique<Impl>(ctx, std::move(problem), phi_size);
  impl_->form = form;
  impl_->positive = std::move(positive);
  impl_->problem->init(impl_->theta0.vector(), mix_seed(options_.seed, 1));  // = step 1's initial policy
  const std::int64_t N = impl_->problem->train_rows();
  if (options_.inner.batch_size > 0 && options_.inner.batch_size < N) {
    impl_->batch = options_.inner.batch_size;
    impl_->windows_per_pass = N / impl_->batch;
    impl_->problem->enable_minibatches(impl_->batch);
  }
  phi_.assign(reward_init.begin(), reward_init.end());
  for (std::size_t i : impl_->positive) phi_[i] = std::max(phi_[i], options_.reward_floor);
  impl_->initial_phi = phi_;
  // The fingerprint: everything the results depend on besides the state (the data's values, every
  // option, the initial reward, the context), one "name = value" line each.
  std::string& fp = impl_->fingerprint;
  fp = std::string(kCheckpointFormat);
  const auto line = [&fp](std::string_view name, const std::string& value) {
    fp += fmt::format("{} = {}\n", name, value);
  };
  line("scalar", sizeof(T) == 4 ? "float" : "double");
  line("backend", to_string(ctx.backend()));
  line("context.seed", std::to_string(ctx.seed()));
  line("problem", impl_->problem->describe());
  line("data.hash", "?");  // checkpoint_fingerprint() fills it in
  line("reward.form", form_name(form));
  line("reward.init", field_text(std::vector<double>(reward_init.begin(), reward_init.end())));
  for (const auto& [name, value] : flatten_fields(options_, "options.")) line(name, value);
}

namespace {

using bilevel_detail::Problem;

/// DataParallel::train_rows of the constructors given every row (they delegate to the
/// data-parallel ones, which refuse it).
constexpr std::int64_t kEveryRow = -1;

/// Rows [first, first + rows) of a view.
template <class T>
RegressionData<T> rows_of(const RegressionData<T>& d, std::int64_t first, std::int64_t rows) {
  return {{d.x.data + first * d.x.row_stride, rows, d.x.cols, d.x.row_stride},
          {d.y.data + first * d.y.row_stride, rows, d.y.cols, d.y.row_stride}};
}
template <class T>
ClassificationData<T> rows_of(const ClassificationData<T>& d, std::int64_t first, std::int64_t rows) {
  return {{d.x.data + first * d.x.row_stride, rows, d.x.cols, d.x.row_stride}, {d.labels.data + first, rows}};
}

/// The regression problem of `head` (see GaussianProblem).
template <class T>
std::unique_ptr<Problem<T>> gaussian_problem(Context& ctx, MlpSpec spec, RegressionData<T> train,
                                             RegressionData<T> validation, GaussianHead head,
                                             RegressionData<T> window_source = {}) {
  if (head == GaussianHead::diagonal) {
    return std::make_unique<bilevel_detail::GaussianProblem<T, DiagGaussianPolicyCurvature<T>>>(
        ctx, std::move(spec), train, validation, head, window_source);
  }
  return std::make_unique<bilevel_detail::GaussianProblem<T, CholeskyPolicyCurvature<T>>>(
      ctx, std::move(spec), train, validation, head, window_source);
}

/// Data parallel: the problem on rows [first, first + rows) of the training (or validation) set,
/// made from views of the sets whose first rows are rows `train_first` and `val_first` of them
/// (0: every row; the data-parallel constructors: this rank's first row).
template <class T, class Data, class Make>
typename bilevel_detail::ShardedProblem<T>::Factory part_factory(Data train, Data validation, std::int64_t train_first,
                                                                 std::int64_t val_first, Make make) {
  return [=](bool val, std::int64_t first, std::int64_t rows) {
    return make(val ? rows_of(validation, first - val_first, rows) : rows_of(train, first - train_first, rows));
  };
}

/// The data-parallel constructors' problem: this rank's problems only, on its views of the sets
/// (no problem on every row is built).
template <class T, class Data, class Make>
std::unique_ptr<Problem<T>> local_problem(Context& ctx, const DataParallel& parallel, Data train, Data validation,
                                          Make make, std::uint64_t data_hash) {
  const std::int64_t t0 = local_rows(parallel, parallel.train_rows).first;
  const std::int64_t v0 = local_rows(parallel, parallel.validation_rows).first;
  return std::make_unique<bilevel_detail::ShardedProblem<T>>(ctx, parallel,
                                                             part_factory<T>(train, validation, t0, v0, make), nullptr,
                                                             parallel.train_rows, parallel.validation_rows, data_hash);
}

/// The data-parallel constructors' checks of `parallel` and of the sizes of this rank's views.
template <class T>
void check_local_rows(Context& ctx, std::string_view fn, const DataParallel& parallel, std::int64_t train_rows,
                      std::int64_t validation_rows, const BilevelOptions<T>& options) {
  shard::check(ctx, fn, "parallel", parallel, true);
  D2R_EXPECTS(shard::active(parallel), fn, "parallel",
              "views of this rank's rows need a data-parallel communicator (several ranks or deterministic mode)");
  D2R_EXPECTS(parallel.train_rows >= 2 && parallel.validation_rows >= 0, fn, "parallel.train_rows",
              "expected the whole set's rows (>= 2 training, >= 0 validation), got {} and {}", parallel.train_rows,
              parallel.validation_rows);
  const RowRange t = local_rows(parallel, parallel.train_rows), v = local_rows(parallel, parallel.validation_rows);
  D2R_EXPECTS(train_rows == t.rows, fn, "train.x",
              "expected this rank's {} rows of the {} training rows (local_rows of parallel.train_rows), got {}", t.rows,
              parallel.train_rows, train_rows);
  D2R_EXPECTS(validation_rows == v.rows, fn, "validation.x",
              "expected this rank's {} rows of the {} validation rows (local_rows of parallel.validation_rows), got {}",
              v.rows, parallel.validation_rows, validation_rows);
  D2R_EXPECTS(options.inner.batch_size <= 0 || options.inner.batch_size >= parallel.train_rows, fn,
              "options.inner.batch_size",
              "minibatch windows draw from every training row: give every row and call set_data_parallel (got "
              "batches of {} of {} rows)",
              options.inner.batch_size, parallel.train_rows);
}

}  // namespace

template <class T>
BilevelTrainer<T>::BilevelTrainer(Context& ctx, MlpSpec trunk, RegressionData<T> train, RegressionData<T> validation,
                                  RewardForm form, std::span<const double> reward_init, BilevelOptions<T> options)
    : BilevelTrainer(ctx, std::move(trunk), train, validation, form, reward_init, options, DataParallel{.train_rows = kEveryRow}, 0) {}

template <class T>
BilevelTrainer<T>::BilevelTrainer(Context& ctx, MlpSpec trunk, RegressionData<T> train, RegressionData<T> validation,
                                  RewardForm form, std::span<const double> reward_init, BilevelOptions<T> options,
                                  const DataParallel& parallel, std::uint64_t data_hash)
    : options_(options) {
  constexpr std::string_view fn = "BilevelTrainer";
  detail::check_scalar_type<T>(ctx, fn);
  // `local`: the data-parallel constructor, views of this rank's rows (a rank may hold none).
  const bool local = parallel.train_rows != kEveryRow;
  const std::int64_t train_rows = local ? parallel.train_rows : train.x.rows;
  const std::int64_t val_local = validation.empty() ? 0 : validation.x.rows;
  const bool has_validation = local ? parallel.validation_rows > 0 : !validation.empty();
  if (local) check_local_rows(ctx, fn, parallel, train.x.rows, val_local, options);
  if (!local || train.x.rows > 0) check_data(ctx, fn, "train", train, local ? 1 : 2);
  const std::int64_t n = train.y.cols;
  D2R_EXPECTS(train.x.cols >= 1 && n >= 1, fn, "train", "expected at least 1 input and 1 target column, got {} and {}",
              train.x.cols, n);
  if (trunk.inputs == 0) trunk.inputs = train.x.cols;
  D2R_EXPECTS(trunk.inputs == train.x.cols, fn, "trunk.inputs", "expected {} (the columns of train.x), got {}",
              train.x.cols, trunk.inputs);
  if (local ? val_local > 0 : !validation.empty()) {
    check_data(ctx, fn, "validation", validation, 1);
    D2R_EXPECTS(validation.x.cols == train.x.cols, fn, "validation.x", "expected {} columns (those of train.x), got {}",
                train.x.cols, validation.x.cols);
    D2R_EXPECTS(validation.y.cols == n, fn, "validation.y", "expected {} columns (those of train.y), got {}", n,
                validation.y.cols);
  }
  std::vector<std::size_t> positive =
      check_bilevel_setup(fn, options, form, reward_init, n, train_rows, has_validation);
  D2R_EXPECTS(options.head == GaussianHead::diagonal || options.head == GaussianHead::cholesky, fn, "options.head",
              "expected GaussianHead::diagonal or cholesky, got value {}", static_cast<int>(options.head));
  D2R_EXPECTS(options.head != GaussianHead::cholesky || n <= kMaxCholeskyDim, fn, "options.head",
              "the Cholesky head supports n <= {} target dimensions, got {}", kMaxCholeskyDim, n);
  const GaussianHead head = options.head;
  const auto make = [c = &ctx, spec = trunk, head](RegressionData<T> part) {
    return gaussian_problem<T>(*c, spec, part, RegressionData<T>{}, head);
  };
  if (local) {
    initialize(ctx, local_problem<T>(ctx, parallel, train, validation, make, data_hash), form, reward_init,
               std::move(positive));
    impl_->sharded = true;
    return;
  }
  initialize(ctx, gaussian_problem<T>(ctx, trunk, train, validation, head), form, reward_init, std::move(positive));
  impl_->validation_rows = validation.empty() ? 0 : validation.x.rows;
  impl_->factory = part_factory<T>(train, validation, 0, 0, make);
  impl_->window_factory = [c = &ctx, spec = trunk, train, head](std::int64_t rows) {
    return gaussian_problem<T>(*c, spec, rows_of(train, 0, rows), RegressionData<T>{}, head, train);
  };
}

template <class T>
BilevelTrainer<T>::BilevelTrainer(Context& ctx, MlpSpec trunk, ClassificationData<T> train,
                                  ClassificationData<T> validation, std::int64_t classes, RewardForm form,
                                  std::span<const double> reward_init, BilevelOptions<T> options)
    : BilevelTrainer(ctx, std::move(trunk), train, validation, classes, form, reward_init, options, DataParallel{.train_rows = kEveryRow}, 0) {}

template <class T>
BilevelTrainer<T>::BilevelTrainer(Context& ctx, MlpSpec trunk, ClassificationData<T> train,
                                  ClassificationData<T> validation, std::int64_t classes, RewardForm form,
                                  std::span<const double> reward_init, BilevelOptions<T> options,
                                  const DataParallel& parallel, std::uint64_t data_hash)
    : options_(options) {
  constexpr std::string_view fn = "BilevelTrainer";
  detail::check_scalar_type<T>(ctx, fn);
  // `local`: the data-parallel constructor, views of this rank's rows (a rank may hold none).
  const bool local = parallel.train_rows != kEveryRow;
  const std::int64_t train_rows = local ? parallel.train_rows : train.x.rows;
  const std::int64_t val_local = validation.empty() ? 0 : validation.x.rows;
  const bool has_validation = local ? parallel.validation_rows > 0 : !validation.empty();
  D2R_EXPECTS(classes >= 2 && classes <= kMaxCategoricalClasses, fn, "classes", "expected 2 <= C <= {}, got {}",
              kMaxCategoricalClasses, classes);
  if (local) check_local_rows(ctx, fn, parallel, train.x.rows, val_local, options);
  if (!local || train.x.rows > 0) check_class_data(ctx, fn, "train", train, classes, local ? 1 : 2);
  D2R_EXPECTS(train.x.cols >= 1, fn, "train.x", "expected at least 1 column, got {}", train.x.cols);
  if (trunk.inputs == 0) trunk.inputs = train.x.cols;
  D2R_EXPECTS(trunk.inputs == train.x.cols, fn, "trunk.inputs", "expected {} (the columns of train.x), got {}",
              train.x.cols, trunk.inputs);
  if (local ? val_local > 0 : !validation.empty()) {
    check_class_data(ctx, fn, "validation", validation, classes, 1);
    D2R_EXPECTS(validation.x.cols == train.x.cols, fn, "validation.x", "expected {} columns (those of train.x), got {}",
                train.x.cols, validation.x.cols);
  }
  D2R_EXPECTS(form != RewardForm::full || classes <= 256, fn, "form", "a full one-hot reward supports C <= 256, got {}",
              classes);
  std::vector<std::size_t> positive =
      check_bilevel_setup(fn, options, form, reward_init, classes, train_rows, has_validation);
  const auto make = [c = &ctx, spec = trunk, classes](ClassificationData<T> part) {
    return std::unique_ptr<Problem<T>>(
        std::make_unique<bilevel_detail::CategoricalProblem<T>>(*c, spec, part, ClassificationData<T>{}, classes));
  };
  if (local) {
    initialize(ctx, local_problem<T>(ctx, parallel, train, validation, make, data_hash), form, reward_init,
               std::move(positive));
    impl_->sharded = true;
    return;
  }
  initialize(ctx, std::make_unique<bilevel_detail::CategoricalProblem<T>>(ctx, trunk, train, validation, classes),
             form, reward_init, std::move(positive));
  impl_->validation_rows = validation.empty() ? 0 : validation.x.rows;
  impl_->factory = part_factory<T>(train, validation, 0, 0, make);
  impl_->window_factory = [c = &ctx, spec = trunk, train, classes](std::int64_t rows) {
    return std::unique_ptr<Problem<T>>(std::make_unique<bilevel_detail::CategoricalProblem<T>>(
        *c, spec, rows_of(train, 0, rows), ClassificationData<T>{}, classes, train));
  };
}

template <class T>
void BilevelTrainer<T>::set_data_parallel(const DataParallel& parallel) {
  constexpr std::string_view fn = "BilevelTrainer::set_data_parallel";
  Impl& s = *impl_;
  D2R_EXPECTS(steps_done() == 0 && !s.sharded, fn, "this",
              "set data parallel once, before the first step() and before load() ({} steps done; the "
              "data-parallel constructors set it)",
              steps_done());
  shard::check(s.ctx, fn, "parallel", parallel);
  if (!shard::active(parallel)) return;
  // The full problem gives the fingerprint's data hash (the same for any rank count, so a
  // checkpoint resumes with another one), then makes way for this rank's parts.
  std::unique_ptr<bilevel_detail::Problem<T>> full = std::move(s.problem);
  const std::uint64_t hash = full->data_hash();
  const std::int64_t train_rows = full->train_rows();
  const std::int64_t validation_rows = s.validation_rows;
  full.reset();
  s.problem = std::make_unique<bilevel_detail::ShardedProblem<T>>(s.ctx, parallel, s.factory, s.window_factory,
                                                                  train_rows, validation_rows, hash);
  if (s.batch > 0) s.problem->enable_minibatches(s.batch);
  s.sharded = true;
}

template <class T>
BilevelTrainer<T>::~BilevelTrainer() = default;

template <class T>
VectorView<const T> BilevelTrainer<T>::policy_params() const {
  return std::as_const(impl_->theta).vector();
}

template <class T>
std::int64_t BilevelTrainer<T>::best_step() const noexcept {
  return impl_->best_step;
}

template <class T>
std::int64_t BilevelTrainer<T>::best_tracked_from() const noexcept {
  return impl_->best_from;
}

template <class T>
double BilevelTrainer<T>::best_outer_loss() const noexcept {
  return impl_->best_loss;
}

template <class T>
const std::vector<double>& BilevelTrainer<T>::best_reward_params() const noexcept {
  return impl_->best_phi;
}

template <class T>
VectorView<const T> BilevelTrainer<T>::best_policy_params() const {
  return std::as_const(impl_->best_theta).vector();
}

template <class T>
std::vector<std::int64_t> BilevelTrainer<T>::window_rows() const {
  const Impl& s = *impl_;
  if (s.batch == 0 || s.window == 0) return {};
  const auto first = s.order.begin() + (s.window - 1) * s.batch;
  return {first, first + s.batch};
}

template <class T>
GaussianPolicy<T>& BilevelTrainer<T>::policy() {
  bilevel_detail::Problem<T>* problem = impl_->problem.get();
  if (auto* sharded = dynamic_cast<bilevel_detail::ShardedProblem<T>*>(problem)) problem = &sharded->proto();
  if (auto* d = dynamic_cast<bilevel_detail::GaussianProblem<T, DiagGaussianPolicyCurvature<T>>*>(problem)) {
    return d->policy();
  }
  auto* c = dynamic_cast<bilevel_detail::GaussianProblem<T, CholeskyPolicyCurvature<T>>*>(problem);
  if (c == nullptr) {
    detail::fail_unsupported("BilevelTrainer::policy", "this",
                             "a classification trainer has no GaussianPolicy; use classifier()");
  }
  return c->policy();
}

template <class T>
CategoricalPolicy<T>& BilevelTrainer<T>::classifier() {
  bilevel_detail::Problem<T>* problem = impl_->problem.get();
  if (auto* sharded = dynamic_cast<bilevel_detail::ShardedProblem<T>*>(problem)) problem = &sharded->proto();
  auto* p = dynamic_cast<bilevel_detail::CategoricalProblem<T>*>(problem);
  if (p == nullptr) detail::fail_unsupported("BilevelTrainer::classifier", "this", "a regression trainer has no CategoricalPolicy; use policy()");
  return p->policy();
}

template <class T>
const BilevelRecord& BilevelTrainer<T>::step() {
  constexpr std::string_view fn = "BilevelTrainer::step";
  Impl& s = *impl_;
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t k = steps_done() + 1;
  const std::int64_t max_inner = std::max(options_.inner.steps, options_.inner.max_steps);
  const std::int64_t draws = max_inner + 1;
  D2R_EXPECTS(s.philox_step + static_cast<std::uint64_t>(draws) <= (std::uint64_t{1} << 32), fn, "this",
              "the Philox step counter would pass 2^32 (after {} outer steps); start a new run with another seed",
              k - 1);
  ChecksOff checks_off(s.ctx);  // the data were checked at construction; the inner loop must not synchronise

  // Reward parameters φ → the backend (in T).
  std::vector<T> phi_t(phi_.begin(), phi_.end());
  s.reward.copy_from_host(phi_t);
  const MahalanobisReward<T> reward{s.form, std::as_const(s.reward).vector()};

  // Inner problem: K_in Adam steps of policy gradient on r_φ.
  // Fixed start: when φ did not move last step, θ already is the policy this φ gives from θ₀ (the
  // exact inner steps are deterministic), so it is kept and no inner step runs; also when it fell
  // short of stationarity at the cap: training again from θ₀ would give the same θ (issue 13:
  // letter, 39 outer steps of 4000 identical inner steps each).
  const bool fixed = options_.inner_start == InnerStart::fixed;
  const bool reuse = fixed && k > 1 && history_.back().max_step == 0;
  // With a deterministic inner loop the policy a φ gives is the same every time it is trained, so
  // the previous visit's policy is kept (Impl::visit_theta) and a return to that φ (Rprop undoing a
  // move) takes it instead of training it again from θ₀: the same bits, no inner step (issue 13:
  // such returns were 12 % of the stationary preset's inner steps on the tabular sets).
  const bool memo = fixed && s.deterministic_inner(options_.inner);
  const bool recall = memo && !reuse && k > 1 && !s.visit_phi.empty() && s.visit_phi == phi_;
  const bool kept = reuse || recall;
  if (recall) {
    s.exchange_visit();
  } else if (fixed && !reuse) {
    if (memo && k > 1) s.keep_visit();
    s.problem->init(s.theta.vector(), mix_seed(options_.seed, 1));  // the same θ₀ every step
    s.theta_phi = phi_;
  } else if (options_.inner_start == InnerStart::fresh || k == 1) {
    s.problem->init(s.theta.vector(), mix_seed(options_.seed, k));
  }
  const AdamState<T> adam{s.first_moment.vector(), s.second_moment.vector(), s.adam_count.vector()};
  adam_reset(s.ctx, adam);
  const InnerOptions<T>& in = options_.inner;
  const bool clamp = std::isfinite(static_cast<double>(in.gradient_clamp));
  s.draw_counter.copy_from_host(std::vector<std::int64_t>{static_cast<std::int64_t>(s.philox_step)});
  // Minibatches: each step takes the next window (drawing and uploading a new pass when one is
  // used up: eager work, so the minibatched loop is never captured in a graph). Full batch: all rows.
  const bool minibatch = s.batch > 0;
  const auto inner_step = [&](bool last) {
    const bilevel_detail::Window window = minibatch ? s.next_window(options_.seed) : bilevel_detail::Window{};
    s.problem->inner_gradient(std::as_const(s.theta).vector(), reward, in.generations, in.pg,
                              DrawKey{.step = 0, .step_offset = s.draw_counter.data()},
                              in.objective == InnerObjective::exact, window, s.grad.vector(),
                              last ? VectorView<T>{s.row_reward.data(), minibatch ? window.rows : static_cast<std::int64_t>(s.row_reward.size())}
                                   : VectorView<T>{});
    if (clamp) clamp_values(s.ctx, in.gradient_clamp, s.grad.vector());
    adam_step(s.ctx, in.adam, adam, s.theta.vector(), std::as_const(s.grad).vector());
    advance_counter(s.ctx, s.draw_counter.vector());
  };
  // Runs `count` inner steps; the last one records its rows' rewards when `record_last`.
  const auto run_inner = [&](std::int64_t count, bool record_last) {
    std::int64_t done = 0;
    if (detail::on_device(s.ctx) && options_.cuda_graph && count >= 3 && !minibatch && !s.sharded) {
      if (s.inner_graph.stale()) {
        inner_step(false);  // eager: brings the workspaces to their steady state for the inner step first
        ++done;
        s.inner_graph = capture_inner_step(s.ctx, [&] { inner_step(false); });
      }
      for (; done < count - 1; ++done) s.inner_graph.launch();
    }
    for (; done < count; ++done) inner_step(record_last && done + 1 == count);
  };
  // ‖∇θ L_exact‖ on every training row: the stationarity the implicit step assumes (one
  // synchronisation).
  const auto exact_gradient_norm = [&](const Buffer<T>& at) {
    s.problem->inner_gradient(at.vector(), reward, in.generations, in.pg, DrawKey{}, true,
                              bilevel_detail::Window{}, s.grad_in.vector(), VectorView<T>{});
    const std::vector<double> g = to_host_double(s.grad_in, static_cast<std::int64_t>(s.grad_in.size()));
    double sq = 0;
    for (double v : g) sq += v * v;
    return std::sqrt(sq);
  };
  // The scale of the stationarity check: the gradient norm of an untrained policy (the first
  // step's initial one) under the current reward — it changes with φ by orders of magnitude.
  const double gradient_norm0 = exact_gradient_norm(s.theta0);
  const double target = static_cast<double>(in.stationarity_tolerance) * gradient_norm0;
  // With the check on, when φ did not move last step and the warm-started policy is still
  // stationary, no inner step is taken: Adam's normalised steps keep moving θ on a flat plateau
  // (issue 13: sonar from β = 10, the validation loss rose 2 → 10.6 at a fixed β with ‖∇θ L_in‖
  // at 1e-4 of its start), and that drift, not φ, would then move the outer loss. After a move
  // the K_in steps always run (the policy follows φ more closely than the tolerance alone asks).
  double gradient_norm = std::numeric_limits<double>::infinity();
  if (in.stationarity_tolerance > 0 && options_.inner_start == InnerStart::warm && k > 1 &&
      history_.back().max_step == 0) {
    gradient_norm = exact_gradient_norm(s.theta);
  }
  if (kept) gradient_norm = exact_gradient_norm(s.theta);
  std::int64_t inner_done = 0;
  if (!kept && !(gradient_norm <= target)) {
    inner_done = in.steps;
    run_inner(in.steps, true);
    gradient_norm = exact_gradient_norm(s.theta);
  }
  bool stationary = true;
  if (in.stationarity_tolerance > 0) {
    while (!kept && !(gradient_norm <= target) && inner_done < max_inner) {
      const std::int64_t more = std::min(in.steps, max_inner - inner_done);
      run_inner(more, true);
      inner_done += more;
      gradient_norm = exact_gradient_norm(s.theta);
    }
    stationary = gradient_norm <= target;
  }
  s.philox_step += static_cast<std::uint64_t>(inner_done);

  // Implicit hypergradient: (H + δI) w = ∇θ L_out,  h = −(∂²L_in/∂φ∂θ) w, on the FULL training
  // data whatever the inner batch (the inner objective is the full-data expectation).
  const bool outer_validation = options_.outer_data == OuterData::validation;
  const ConstVector<T> theta = std::as_const(s.theta).vector();
  s.problem->outer_gradient(theta, outer_validation, s.g_out.vector());
  const DrawKey curvature_key{.step = s.philox_step++};  // consumed by the surrogate only; counted either way
  s.problem->prepare(theta, reward, in.generations, in.pg, curvature_key, options_.curvature == CurvatureKind::exact,
                     s.grad_in.vector());
  const LinearOperator<T> H = s.problem->curvature();
  CgOptions<T> cg = options_.cg;
  cg.zero_initial_guess = true;  // w₀ = 0: skip the starting residual's HVP
  SolveReport<T> report;
  switch (options_.solver) {
    case ImplicitSolver::conjugate_gradient:
      report = conjugate_gradient(s.ctx, H, std::as_const(s.g_out).vector(), s.w.vector(), cg);
      break;
    case ImplicitSolver::normal_cg:
      report = conjugate_gradient_normal(s.ctx, H, std::as_const(s.g_out).vector(), s.w.vector(), cg);
      break;
    case ImplicitSolver::neumann:
      report = neumann_series(s.ctx, H, std::as_const(s.g_out).vector(), s.w.vector(), options_.neumann);
      break;
    case ImplicitSolver::cg_or_normal_cg: {
      report = conjugate_gradient(s.ctx, H, std::as_const(s.g_out).vector(), s.w.vector(), cg);
      if (report.status != SolveStatus::converged) {
        const std::int64_t cg_iterations = report.iterations;
        report = conjugate_gradient_normal(s.ctx, H, std::as_const(s.g_out).vector(), s.w.vector(), cg);
        report.iterations += cg_iterations;
      }
      break;
    }
  }
  s.problem->mixed_product(std::as_const(s.w).vector(), s.mixed.vector());

  BilevelRecord rec;
  rec.step = k;
  const std::int64_t S = static_cast<std::int64_t>(phi_.size());
  rec.hypergradient = to_host_double(s.mixed, S);  // one synchronisation: the end of the step's device work
  bool finite = true;
  for (double& h : rec.hypergradient) {
    const double raw = -h;
    h = std::clamp(raw, -options_.hypergradient_clamp, options_.hypergradient_clamp);
    rec.hypergradient_clamped = rec.hypergradient_clamped || std::abs(raw) >= options_.hypergradient_clamp;
    finite = finite && std::isfinite(h);
  }
  rec.solver_status = report.status;
  rec.solver_iterations = report.iterations;
  rec.solver_initial_residual = static_cast<double>(report.initial_residual_norm);
  rec.solver_residual = static_cast<double>(report.residual_norm);
  rec.inner_steps = inner_done;
  rec.inner_gradient_norm = gradient_norm;
  rec.inner_gradient_norm0 = gradient_norm0;
  // The last inner step's rows: its window (minibatches) or every training row.
  const std::vector<double> rr = to_host_double(s.row_reward, minibatch ? s.batch : s.problem->train_rows());
  double sum = 0;
  for (double r : rr) sum += r;
  rec.mean_inner_reward = sum / static_cast<double>(rr.size());
  // No inner step this time: the rewards are those of the last one run (also after a resume).
  if (inner_done == 0 && !history_.empty()) rec.mean_inner_reward = history_.back().mean_inner_reward;
  if (recall) rec.mean_inner_reward = s.theta_reward;  // the visit's, as training it again would give
  s.theta_reward = rec.mean_inner_reward;
  // Metrics of θ*_k (before φ moves: the outer loss at the φ the hypergradient is taken at).
  rec.train = s.problem->evaluate(theta, false);
  rec.validation = s.problem->has_validation() ? s.problem->evaluate(theta, true) : nan_metrics();
  rec.outer_loss = options_.outer_data == OuterData::train ? rec.train.nll_per_dim : rec.validation.nll_per_dim;

  // The best-judged step (best_step): the lowest finite outer loss among steps with a stationary
  // inner policy; its θ and the φ it was trained at (φ before this step's move) are kept.
  if (stationary && std::isfinite(rec.outer_loss) && (s.best_step == 0 || rec.outer_loss < s.best_loss)) {
    s.set_best(k, phi_, rec.outer_loss);
  }

  // Outer step on φ (host, double); a non-finite hypergradient, or one taken at an inner policy
  // that is not stationary, leaves φ unchanged. Except with a fixed start and Rprop: there the
  // policy at this φ stays short of stationarity however often it is trained, so the move that led
  // here is undone and the steps shrink, as after a rise of the outer loss (a φ the inner loop
  // cannot solve within its cap is treated as worse than the one before).
  rec.inner_stationary = stationary;
  bool undo_unsolved = false;
  if (finite && !stationary && options_.inner_start == InnerStart::fixed &&
      options_.optimizer == OuterOptimizer::rprop) {
    for (double last : s.rprop_last) undo_unsolved = undo_unsolved || last != 0;
  }
  if (finite && (stationary || undo_unsolved)) {
    if (options_.reset_outer_optimizer) {
      std::fill(s.outer_m.begin(), s.outer_m.end(), 0.0);
      std::fill(s.outer_v.begin(), s.outer_v.end(), 0.0);
      std::fill(s.sgd_velocity.begin(), s.sgd_velocity.end(), 0.0);
      std::fill(s.rprop_step.begin(), s.rprop_step.end(), 0.0);
      std::fill(s.rprop_sign.begin(), s.rprop_sign.end(), 0.0);
      std::fill(s.rprop_last.begin(), s.rprop_last.end(), 0.0);
      s.bracket = {};  // regula falsi's bracket is the outer optimiser's state too
      s.outer_count = 0;
    }
    const bool log_space = options_.log_space || options_.optimizer == OuterOptimizer::rprop;
    // dφ/dψ of the optimised coordinates ψ: 1 (linear), φ_i (log φ_i of a positive entry) or
    // sqrt(R_ii R_jj) (an off-diagonal R_ij, measured relative to its row's and column's scale).
    std::vector<double> scale(phi_.size(), 1.0);
    std::vector<bool> is_positive(phi_.size(), false);
    for (std::size_t i : s.positive) is_positive[i] = true;
    if (log_space) {
      for (std::size_t i : s.positive) scale[i] = phi_[i];
      if (s.form == RewardForm::full) {
        std::size_t p = 0;
        for (std::size_t r = 0; p < phi_.size(); ++r) {
          for (std::size_t c = 0; c <= r && p < phi_.size(); ++c, ++p) {
            if (c != r) scale[p] = std::sqrt(phi_[r * (r + 1) / 2 + r] * phi_[c * (c + 1) / 2 + c]);
          }
        }
      }
    }
    std::vector<double> g(phi_.size()), delta(phi_.size(), 0.0);
    for (std::size_t i = 0; i < phi_.size(); ++i) g[i] = rec.hypergradient[i] * scale[i];
    const VectorView<double> d{delta.data(), S};
    const ConstVector<double> gv{g.data(), S};
    bool at_max = false;
    bool restore = false;
    switch (options_.optimizer) {
      case OuterOptimizer::adam: {
        const AdamState<double> st{{s.outer_m.data(), S}, {s.outer_v.data(), S}, {&s.outer_count, 1}};
        adam_step(s.host_ctx, options_.outer_adam, st, d, gv);
        for (double v : delta) at_max = at_max || std::abs(v) >= 0.9 * options_.outer_adam.learning_rate;
        break;
      }
      case OuterOptimizer::sgd:
        sgd_step(s.host_ctx, options_.sgd_learning_rate, options_.sgd_momentum,
                 VectorView<double>{s.sgd_velocity.data(), S}, d, gv);
        break;
      case OuterOptimizer::rprop: {
        const RpropOptions& o = options_.rprop;
        if (memo && S == 1 && is_positive[0] && s.refine_scalar(stationary, std::log(phi_[0]), g[0], o,
                                                                 options_.stopping, delta[0])) {
          s.rprop_last[0] = delta[0];
          s.rprop_sign[0] = 0;
          break;
        }
        const bool loss_rose = history_.size() > 0 && rec.outer_loss > history_.back().outer_loss;
        // The outer loss rose by more than its tolerance after the last move: that move went the
        // wrong way whatever the hypergradient says (a wrong or noisy h, or an inner point that is
        // no minimum): undo it and shrink the steps (iRprop+).
        // As in iRprop+, only when the hypergradient also changed sign there: a rise with an unchanged
        // sign comes from the inner policy's drift at the new φ, not from the move (issue 13: sonar
        // from β = 10, every move down was undone while h kept pointing down and the loss rose with
        // each block of inner steps whatever φ did).
        const double flat_sign = o.flat_tolerance * options_.stopping.loss_tolerance / o.initial_step;
        bool moved_last = false;
        bool flipped = false;
        for (std::size_t i = 0; i < phi_.size(); ++i) {
          moved_last = moved_last || s.rprop_last[i] != 0;
          const double sign = std::abs(g[i]) <= flat_sign ? 0.0 : g[i] > 0 ? 1.0 : -1.0;
          flipped = flipped || (s.rprop_last[i] != 0 && sign * s.rprop_sign[i] < 0);
        }
        // With a fixed inner start the outer loss is a function of φ alone, so a rise after a move
        // is the move's doing whatever h says (issue 13: digits, β 2.98 → 4.91 raised the loss
        // 0.111 → 0.146 onto a plateau where h ≈ 2e-5 counts as flat, and the run stayed there).
        const bool loss_is_of_phi = options_.inner_start == InnerStart::fixed;
        if (undo_unsolved || (moved_last && (flipped || loss_is_of_phi) && history_.size() > 0 &&
                              rec.outer_loss > history_.back().outer_loss + options_.stopping.loss_tolerance)) {
          for (std::size_t i = 0; i < phi_.size(); ++i) {
            delta[i] = -s.rprop_last[i];
            s.rprop_step[i] = std::max(s.rprop_step[i] * o.decrease, o.min_step);
            s.rprop_sign[i] = 0;
            s.rprop_last[i] = 0;
          }
          rec.backtracked = true;
          restore = memo && !s.visit_phi.empty();  // back to the previous visit's φ exactly (its policy is kept)
          break;
        }
        // A hypergradient that predicts less than flat_tolerance × loss_tolerance of change for a
        // move of Δ₀ counts as zero: the outer loss is flat there within the verdict's resolution.
        const double flat = o.flat_tolerance * options_.stopping.loss_tolerance / o.initial_step;
        for (std::size_t i = 0; i < phi_.size(); ++i) {
          const double sign = std::abs(g[i]) <= flat ? 0.0 : g[i] > 0 ? 1.0 : g[i] < 0 ? -1.0 : 0.0;
          double& step = s.rprop_step[i];
          double& last = s.rprop_sign[i];
          if (step == 0) {
            step = o.initial_step;
          } else if (sign * last > 0) {
            if (!loss_rose) step = std::min(step * o.increase, o.max_step);
          } else if (sign * last < 0) {
            step = std::max(step * o.decrease, o.min_step);  // overshot: smaller steps, and no step now
            last = 0;
            s.rprop_last[i] = 0;
            continue;
          }
          delta[i] = -sign * step;
          s.rprop_last[i] = delta[i];
          last = sign;
          at_max = at_max || (sign != 0 && step >= o.max_step);
        }
        break;
      }
    }
    double moved = 0;
    for (std::size_t i = 0; i < phi_.size(); ++i) {
      const double before = phi_[i];
      if (restore) {
        phi_[i] = s.visit_phi[i];
      } else if (log_space && is_positive[i]) {
        phi_[i] *= std::exp(delta[i]);
      } else {
        phi_[i] += delta[i] * scale[i];
      }
      if (is_positive[i]) phi_[i] = std::clamp(phi_[i], options_.reward_floor, options_.reward_ceiling);
      const double rel = is_positive[i] ? std::abs(std::log(phi_[i] / before))
                                        : std::abs(phi_[i] - before) / std::max(scale[i], 1e-300);
      moved = std::max(moved, rel);
    }
    rec.max_step = moved;
    rec.at_max_step = at_max;
  }
  rec.reward_params = phi_;
  rec.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  history_.push_back(std::move(rec));
  return history_.back();
}

template class BilevelTrainer<float>;
template class BilevelTrainer<double>;

}  // namespace d2r
