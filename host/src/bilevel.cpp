// The bilevel scheduler and the plain policy trainers (d2r/bilevel.hpp): host-side loops over
// the primitives (GaussianPolicy losses, DiagGaussianPolicyCurvature, solvers, optimisers).
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
#include "host/src/checkpoint.hpp"
#include "host/src/comm/shard.hpp"
#include "host/src/trainer_common.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"

namespace d2r {

const char* to_string(ImplicitSolver solver) noexcept {
  switch (solver) {
    case ImplicitSolver::conjugate_gradient: return "cg";
    case ImplicitSolver::normal_cg: return "normal_cg";
    case ImplicitSolver::neumann: return "neumann";
  }
  return "unknown";
}

const char* to_string(BilevelStatus status) noexcept {
  switch (status) {
    case BilevelStatus::running: return "running";
    case BilevelStatus::converged: return "converged";
    case BilevelStatus::step_limited: return "step_limited";
    case BilevelStatus::diverged: return "diverged";
  }
  return "unknown";
}
const char* to_string(InnerObjective objective) noexcept {
  return objective == InnerObjective::exact ? "exact" : "reinforce";
}
const char* to_string(InnerStart start) noexcept { return start == InnerStart::warm ? "warm" : "fresh"; }
const char* to_string(CurvatureKind curvature) noexcept {
  return curvature == CurvatureKind::exact ? "exact" : "surrogate";
}
const char* to_string(OuterOptimizer optimizer) noexcept {
  return optimizer == OuterOptimizer::sgd ? "sgd" : optimizer == OuterOptimizer::rprop ? "rprop" : "adam";
}
const char* to_string(OuterData data) noexcept { return data == OuterData::validation ? "validation" : "train"; }

using namespace trainer_common;  // NOLINT(google-build-using-namespace): the shared checks



// ------------------------------------------------------------------ inner problems
// What the scheduler needs from a policy family: the inner gradient, the outer (NLL) gradient, the
// curvature operator and mixed product, and metrics. One implementation per data kind.
namespace bilevel_detail {

/// The rows an inner step uses: every training row as given (rows == 0), or rows
/// [first, first + rows) of the trainer-owned shuffled copy (minibatches).
struct Window {
  std::int64_t first = 0;
  std::int64_t rows = 0;
};

constexpr std::uint64_t kFnvBasis = 1469598103934665603ull;
template <class U>
std::uint64_t fnv1a(const std::vector<U>& values, std::uint64_t h) {
  const auto* p = reinterpret_cast<const unsigned char*>(values.data());
  for (std::size_t i = 0; i < values.size() * sizeof(U); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

template <class T>
class Problem {
 public:
  virtual ~Problem() = default;
  [[nodiscard]] virtual std::int64_t parameter_count() const = 0;
  [[nodiscard]] virtual std::int64_t train_rows() const = 0;
  [[nodiscard]] virtual bool has_validation() const = 0;
  [[nodiscard]] virtual std::string describe() const = 0;
  /// FNV-1a of the values of the training and validation data (one copy to the host): the data's
  /// identity in the checkpoint fingerprint.
  [[nodiscard]] virtual std::uint64_t data_hash() = 0;
  virtual void init(VectorView<T> theta, std::uint64_t seed) = 0;
  /// Minibatches (called once, at construction): a host copy of the training rows and a buffer
  /// for their shuffled copy.
  virtual void enable_minibatches() = 0;
  /// Copies the training rows into the shuffled buffer: row r = training row order[r] (one
  /// upload; synchronises on the cuda backend).
  virtual void shuffle(const std::vector<std::int64_t>& order) = 0;
  /// REINFORCE (G samples, key) or, when `exact`, the exact-expectation gradient, on the rows of
  /// `window` (per-row mean over them).
  virtual void inner_gradient(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
                              const PgOptions<T>& pg, DrawKey key, bool exact, Window window, VectorView<T> grad,
                              VectorView<T> row_reward) = 0;
  virtual void outer_gradient(ConstVector<T> theta, bool validation, VectorView<T> grad) = 0;
  virtual void prepare(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
                       const PgOptions<T>& pg, DrawKey key, bool exact, VectorView<T> grad) = 0;
  virtual LinearOperator<T> curvature() = 0;
  virtual void mixed_product(ConstVector<T> w, VectorView<T> out) = 0;
  virtual PolicyMetrics evaluate(ConstVector<T> theta, bool validation) = 0;
};

/// Regression: a GaussianPolicy and the curvature of its head (DiagGaussianPolicyCurvature or
/// CholeskyPolicyCurvature).
template <class T, class Curvature>
class GaussianProblem final : public Problem<T> {
 public:
  GaussianProblem(Context& ctx, MlpSpec trunk, RegressionData<T> train, RegressionData<T> validation, GaussianHead head)
      : ctx_(ctx),
        policy_(ctx, std::move(trunk), train.y.cols, head,
                std::max(train.x.rows, validation.empty() ? 0 : validation.x.rows)),
        curvature_(ctx, policy_.net(), train.x.rows),
        train_(train),
        validation_(validation) {}
  std::int64_t parameter_count() const override { return policy_.parameter_count(); }
  std::int64_t train_rows() const override { return train_.x.rows; }
  bool has_validation() const override { return !validation_.empty(); }
  std::string describe() const override {
    return fmt::format("regression; net {}; head {}; train {}x{}->{}; val {}", policy_.net().describe(),
                       to_string(policy_.head()), train_.x.rows, train_.x.cols, train_.y.cols,
                       validation_.empty() ? 0 : validation_.x.rows);
  }
  std::uint64_t data_hash() override {
    std::uint64_t h = kFnvBasis;
    for (const RegressionData<T>* d : {&train_, &validation_}) {
      if (d->empty()) continue;
      h = fnv1a(rows_to_host<T>(ctx_, d->x), h);
      h = fnv1a(rows_to_host<T>(ctx_, d->y), h);
    }
    return h;
  }
  void init(VectorView<T> theta, std::uint64_t seed) override { policy_.init(theta, seed); }
  void enable_minibatches() override {
    x_host_ = rows_to_host<T>(ctx_, train_.x);
    y_host_ = rows_to_host<T>(ctx_, train_.y);
    x_perm_.resize(x_host_.size());
    y_perm_.resize(y_host_.size());
    x_shuffled_ = Buffer<T>(ctx_, x_host_.size());
    y_shuffled_ = Buffer<T>(ctx_, y_host_.size());
  }
  void shuffle(const std::vector<std::int64_t>& order) override {
    gather_rows(x_host_, train_.x.cols, order, x_perm_);
    gather_rows(y_host_, train_.y.cols, order, y_perm_);
    x_shuffled_.copy_from_host(x_perm_);
    y_shuffled_.copy_from_host(y_perm_);
  }
  void inner_gradient(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
                      const PgOptions<T>& pg, DrawKey key, bool exact, Window window, VectorView<T> grad,
                      VectorView<T> row_reward) override {
    ConstMatrix<T> x = train_.x, y = train_.y;
    if (window.rows > 0) {
      const std::int64_t p = train_.x.cols, n = train_.y.cols;
      x = {std::as_const(x_shuffled_).data() + window.first * p, window.rows, p, p};
      y = {std::as_const(y_shuffled_).data() + window.first * n, window.rows, n, n};
    }
    if (exact) {
      policy_.exact_gradient(theta, x, y, reward, pg, grad, row_reward);
    } else {
      policy_.pg_gradient(theta, x, y, reward, generations, pg, key, grad, row_reward);
    }
  }
  void outer_gradient(ConstVector<T> theta, bool validation, VectorView<T> grad) override {
    const RegressionData<T>& d = validation ? validation_ : train_;
    policy_.nll_gradient(theta, d.x, d.y, grad);
  }
  void prepare(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
               const PgOptions<T>& pg, DrawKey key, bool exact, VectorView<T> grad) override {
    if (exact) {
      curvature_.prepare_exact(theta, train_.x, train_.y, reward, pg, grad);
    } else {
      curvature_.prepare(theta, train_.x, train_.y, reward, generations, pg, key, grad);
    }
  }
  LinearOperator<T> curvature() override { return curvature_.as_operator(); }
  void mixed_product(ConstVector<T> w, VectorView<T> out) override { curvature_.mixed_product(w, out); }
  PolicyMetrics evaluate(ConstVector<T> theta, bool validation) override {
    const RegressionData<T>& d = validation ? validation_ : train_;
    return policy_.evaluate(theta, d.x, d.y);
  }
  GaussianPolicy<T>& policy() { return policy_; }

 private:
  Context& ctx_;
  GaussianPolicy<T> policy_;
  Curvature curvature_;
  RegressionData<T> train_, validation_;
  // Minibatches: the training rows on the host (packed, copied once) and their shuffled copy.
  std::vector<T> x_host_, y_host_, x_perm_, y_perm_;
  Buffer<T> x_shuffled_, y_shuffled_;
};

template <class T>
class CategoricalProblem final : public Problem<T> {
 public:
  CategoricalProblem(Context& ctx, MlpSpec trunk, ClassificationData<T> train, ClassificationData<T> validation,
                     std::int64_t classes)
      : ctx_(ctx),
        policy_(ctx, std::move(trunk), classes, std::max(train.x.rows, validation.empty() ? 0 : validation.x.rows)),
        curvature_(ctx, policy_.net(), train.x.rows),
        train_(train),
        validation_(validation) {}
  std::int64_t parameter_count() const override { return policy_.parameter_count(); }
  std::int64_t train_rows() const override { return train_.x.rows; }
  bool has_validation() const override { return !validation_.empty(); }
  std::string describe() const override {
    return fmt::format("classification; net {}; train {}x{}; classes {}; val {}", policy_.net().describe(),
                       train_.x.rows, train_.x.cols, policy_.classes(), validation_.empty() ? 0 : validation_.x.rows);
  }
  std::uint64_t data_hash() override {
    std::uint64_t h = kFnvBasis;
    for (const ClassificationData<T>* d : {&train_, &validation_}) {
      if (d->empty()) continue;
      const std::int64_t N = d->x.rows;
      h = fnv1a(rows_to_host<T>(ctx_, d->x), h);
      h = fnv1a(rows_to_host<std::int32_t>(ctx_, MatrixView<const std::int32_t>{d->labels.data, 1, N, N}), h);
    }
    return h;
  }
  void init(VectorView<T> theta, std::uint64_t seed) override { policy_.init(theta, seed); }
  void enable_minibatches() override {
    const std::int64_t N = train_.x.rows;
    x_host_ = rows_to_host<T>(ctx_, train_.x);
    labels_host_ = rows_to_host<std::int32_t>(ctx_, MatrixView<const std::int32_t>{train_.labels.data, 1, N, N});
    x_perm_.resize(x_host_.size());
    labels_perm_.resize(labels_host_.size());
    x_shuffled_ = Buffer<T>(ctx_, x_host_.size());
    labels_shuffled_ = Buffer<std::int32_t>(ctx_, labels_host_.size());
  }
  void shuffle(const std::vector<std::int64_t>& order) override {
    gather_rows(x_host_, train_.x.cols, order, x_perm_);
    gather_rows(labels_host_, 1, order, labels_perm_);
    x_shuffled_.copy_from_host(x_perm_);
    labels_shuffled_.copy_from_host(labels_perm_);
  }
  void inner_gradient(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
                      const PgOptions<T>& pg, DrawKey key, bool exact, Window window, VectorView<T> grad,
                      VectorView<T> row_reward) override {
    ConstMatrix<T> x = train_.x;
    VectorView<const std::int32_t> labels = train_.labels;
    if (window.rows > 0) {
      const std::int64_t p = train_.x.cols;
      x = {std::as_const(x_shuffled_).data() + window.first * p, window.rows, p, p};
      labels = {std::as_const(labels_shuffled_).data() + window.first, window.rows};
    }
    if (exact) {
      policy_.exact_gradient(theta, x, labels, reward, pg, grad, row_reward);
    } else {
      policy_.pg_gradient(theta, x, labels, reward, generations, pg, key, grad, row_reward);
    }
  }
  void outer_gradient(ConstVector<T> theta, bool validation, VectorView<T> grad) override {
    const ClassificationData<T>& d = validation ? validation_ : train_;
    policy_.nll_gradient(theta, d.x, d.labels, grad);
  }
  void prepare(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
               const PgOptions<T>& pg, DrawKey key, bool exact, VectorView<T> grad) override {
    if (exact) {
      curvature_.prepare_exact(theta, train_.x, train_.labels, reward, pg, grad);
    } else {
      curvature_.prepare(theta, train_.x, train_.labels, reward, generations, pg, key, grad);
    }
  }
  LinearOperator<T> curvature() override { return curvature_.as_operator(); }
  void mixed_product(ConstVector<T> w, VectorView<T> out) override { curvature_.mixed_product(w, out); }
  PolicyMetrics evaluate(ConstVector<T> theta, bool validation) override {
    const ClassificationData<T>& d = validation ? validation_ : train_;
    return policy_.evaluate(theta, d.x, d.labels);
  }
  CategoricalPolicy<T>& policy() { return policy_; }

 private:
  Context& ctx_;
  CategoricalPolicy<T> policy_;
  CategoricalPolicyCurvature<T> curvature_;
  ClassificationData<T> train_, validation_;
  // Minibatches: the training rows on the host (packed, copied once) and their shuffled copy.
  std::vector<T> x_host_, x_perm_;
  std::vector<std::int32_t> labels_host_, labels_perm_;
  Buffer<T> x_shuffled_;
  Buffer<std::int32_t> labels_shuffled_;
};


/// Data parallel (DESIGN.md §10, d2r/communicator.hpp): this rank's parts of the training and
/// validation rows, each an inner problem of its own over those rows, and the sums over every
/// rank's parts of the gradients, curvature products, mixed products and metrics. Draws are keyed
/// by global row (DrawKey::first_row) and normalised by the whole set (PgOptions::normaliser_rows),
/// so the parts add up to the one-process problem. Full batch only (no minibatch windows).
template <class T>
class ShardedProblem final : public Problem<T> {
 public:
  /// make(validation_set, first, rows): an inner problem on rows [first, first + rows) of the
  /// training (or the validation) set, without validation data of its own.
  using Factory = std::function<std::unique_ptr<Problem<T>>(bool, std::int64_t, std::int64_t)>;
  ShardedProblem(Context& ctx, const DataParallel& parallel, const Factory& make, std::int64_t train_rows,
                 std::int64_t validation_rows, std::string description, std::uint64_t hash)
      : ctx_(ctx),
        train_plan_(shard::plan(parallel, train_rows)),
        val_plan_(shard::plan(parallel, validation_rows)),
        description_(std::move(description)),
        hash_(hash) {
    for (const shard::Part& part : train_plan_.parts) train_.push_back(make(false, part.first, part.rows));
    for (const shard::Part& part : val_plan_.parts) val_.push_back(make(true, part.first, part.rows));
    // A rank without training rows still initialises θ (and needs the parameter count).
    proto_ = train_.empty() ? make(false, 0, 1) : nullptr;
    Problem<T>& first = proto();
    reducer_.emplace(ctx, first.parameter_count());
  }
  Problem<T>& proto() { return proto_ != nullptr ? *proto_ : *train_.front(); }
  std::int64_t parameter_count() const override {
    return proto_ != nullptr ? proto_->parameter_count() : train_.front()->parameter_count();
  }
  std::int64_t train_rows() const override { return train_plan_.total; }
  bool has_validation() const override { return val_plan_.total > 0; }
  std::string describe() const override { return description_; }
  std::uint64_t data_hash() override { return hash_; }
  void init(VectorView<T> theta, std::uint64_t seed) override { proto().init(theta, seed); }
  void enable_minibatches() override {
    detail::fail_unsupported("BilevelTrainer", "options.inner.batch_size", "minibatches are not split over ranks");
  }
  void shuffle(const std::vector<std::int64_t>&) override { enable_minibatches(); }
  void inner_gradient(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
                      const PgOptions<T>& pg, DrawKey key, bool exact, Window /*window*/, VectorView<T> grad,
                      VectorView<T> row_reward) override {
    const PgOptions<T> whole = whole_batch(pg);
    if (row_reward.size > 0) zero(row_reward);
    std::size_t i = 0;
    reducer_->sum(train_plan_, grad, [&](const shard::Part& part, VectorView<T> out) {
      DrawKey k = key;
      k.first_row += part.first;
      const VectorView<T> rr = row_reward.size > 0 ? VectorView<T>{row_reward.data + part.first, part.rows} : VectorView<T>{};
      train_[i++]->inner_gradient(theta, reward, generations, whole, k, exact, Window{}, out, rr);
    });
    if (row_reward.size > 0) gather(row_reward);  // each rank wrote its rows, zeros elsewhere
  }
  void outer_gradient(ConstVector<T> theta, bool validation, VectorView<T> grad) override {
    const shard::Plan& plan = validation ? val_plan_ : train_plan_;
    auto& parts = validation ? val_ : train_;
    std::size_t i = 0;
    reducer_->sum(plan, grad, [&](const shard::Part& part, VectorView<T> out) {
      parts[i++]->outer_gradient(theta, false, out);  // the mean over the part's rows
      shard::scale(ctx_, static_cast<T>(static_cast<double>(part.rows) / static_cast<double>(plan.total)), out);
    });
  }
  void prepare(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
               const PgOptions<T>& pg, DrawKey key, bool exact, VectorView<T> grad) override {
    const PgOptions<T> whole = whole_batch(pg);
    std::size_t i = 0;
    reducer_->sum(train_plan_, grad, [&](const shard::Part& part, VectorView<T> out) {
      DrawKey k = key;
      k.first_row += part.first;
      train_[i++]->prepare(theta, reward, generations, whole, k, exact, out);
    });
  }
  LinearOperator<T> curvature() override {
    operators_.clear();
    for (auto& p : train_) operators_.push_back(p->curvature());
    return [this](ConstVector<T> v, VectorView<T> hv) {
      std::size_t i = 0;
      reducer_->sum(train_plan_, hv, [&](const shard::Part&, VectorView<T> out) { operators_[i++](v, out); });
    };
  }
  void mixed_product(ConstVector<T> w, VectorView<T> out) override {
    std::size_t i = 0;
    reducer_->sum(train_plan_, out, [&](const shard::Part&, VectorView<T> o) { train_[i++]->mixed_product(w, o); });
  }
  PolicyMetrics evaluate(ConstVector<T> theta, bool validation) override {
    auto& parts = validation ? val_ : train_;
    std::size_t i = 0;
    return shard::metrics(validation ? val_plan_ : train_plan_,
                          [&](const shard::Part&) { return parts[i++]->evaluate(theta, false); });
  }

 private:
  PgOptions<T> whole_batch(const PgOptions<T>& pg) const {
    PgOptions<T> o = pg;
    if (o.normaliser_rows == 0) o.normaliser_rows = train_plan_.total;
    return o;
  }
  void zero(VectorView<T> v) {
    detail::run_on<T>(
        ctx_, [&] { std::fill(v.data, v.data + v.size, T(0)); },
        [&](const auto& ex) {
#if D2R_WITH_CUDA
          D2R_CUDA_TRY(cudaMemsetAsync(v.data, 0, static_cast<std::size_t>(v.size) * sizeof(T), ex.stream));
#else
          (void)ex;
#endif
        });
  }
  void gather(VectorView<T> v) {
    Communicator& comm = *train_plan_.comm;
    if (comm.memory() == CommMemory::device) {
      comm.allreduce_sum(std::span<T>(v.data, static_cast<std::size_t>(v.size)));
      return;
    }
    std::vector<T> h(static_cast<std::size_t>(v.size));
    shard::to_host(ctx_, v.data, h.data(), v.size);
    comm.allreduce_sum(std::span<T>(h));
    shard::from_host(ctx_, h.data(), v.data, v.size);
  }
  Context& ctx_;
  shard::Plan train_plan_, val_plan_;
  std::vector<std::unique_ptr<Problem<T>>> train_, val_;
  std::unique_ptr<Problem<T>> proto_;
  std::vector<LinearOperator<T>> operators_;
  std::optional<shard::Reducer<T>> reducer_;
  std::string description_;
  std::uint64_t hash_;
};

}  // namespace bilevel_detail

// ------------------------------------------------------------------ BilevelTrainer
template <class T>
struct BilevelTrainer<T>::Impl {
  Impl(Context& c, std::unique_ptr<bilevel_detail::Problem<T>> p, std::int64_t phi_size)
      : ctx(c), host_ctx(ContextOptions{.backend = Backend::cpu}), problem(std::move(p)) {
    const auto P = static_cast<std::size_t>(problem->parameter_count());
    for (Buffer<T>* b : {&theta, &theta0, &grad, &first_moment, &second_moment, &g_out, &grad_in, &w}) {
      *b = Buffer<T>(c, P);
    }
    adam_count = Buffer<std::int64_t>(c, 1);
    draw_counter = Buffer<std::int64_t>(c, 1);
    reward = Buffer<T>(c, static_cast<std::size_t>(phi_size));
    mixed = Buffer<T>(c, static_cast<std::size_t>(phi_size));
    row_reward = Buffer<T>(c, static_cast<std::size_t>(problem->train_rows()));
    const auto S = static_cast<std::size_t>(phi_size);
    outer_m.assign(S, 0.0);
    outer_v.assign(S, 0.0);
    sgd_velocity.assign(S, 0.0);
    rprop_step.assign(S, 0.0);
    rprop_sign.assign(S, 0.0);
    rprop_last.assign(S, 0.0);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  Context& ctx;
  Context host_ctx;  // the outer optimiser runs on the host, in double
  std::unique_ptr<bilevel_detail::Problem<T>> problem;
  // theta0: the first outer step's initial policy, the reference of the stationarity check.
  Buffer<T> theta, theta0, grad, first_moment, second_moment, g_out, grad_in, w, reward, mixed, row_reward;
  Buffer<std::int64_t> adam_count;
  // The Philox position of the inner draws, in the backend's memory (DrawKey::step_offset), so
  // that one captured inner step replays with fresh samples; philox_step mirrors it on the host.
  Buffer<std::int64_t> draw_counter;
  // One inner step, captured on the first outer step (cuda). It is stale when the context's
  // workspace blocks (the HVPs of the implicit step, or a larger validation set, can grow them
  // after the capture, which frees the blocks the graph points to) or the seed of its draws have
  // changed since the capture; the inner step is then captured again.
  CapturedGraph inner_graph;
  std::vector<double> outer_m, outer_v, sgd_velocity;
  // Rprop: the step Δ_i of every parameter (0 before the first step) and the sign of the last
  // hypergradient that was followed (0: none, or a sign change was just seen).
  // rprop_last: the last move of each coordinate ψ (undone when the outer loss rose after it).
  std::vector<double> rprop_step, rprop_sign, rprop_last;
  std::int64_t outer_count = 0;
  std::uint64_t philox_step = 0;
  RewardForm form = RewardForm::scalar;
  std::vector<std::size_t> positive;
  std::string fingerprint;  // its data.hash line is filled in by checkpoint_fingerprint()
  bool data_hashed = false;
  /// The fingerprint with the data's hash, computed on the first save() or load() (one copy of
  /// the data to the host: a trainer that never checkpoints does not pay for it).
  const std::string& checkpoint_fingerprint() {
    if (!data_hashed) {
      constexpr std::string_view placeholder = "data.hash = ?\n";
      const std::size_t at = fingerprint.find(placeholder);
      fingerprint.replace(at, placeholder.size(), fmt::format("data.hash = {:016x}\n", problem->data_hash()));
      data_hashed = true;
    }
    return fingerprint;
  }
  std::string identity;  // set_checkpoint_identity's lines
  // Minibatches (InnerOptions::batch_size): `batch` rows per window (0: full batch),
  // windows_per_pass = floor(N / batch) (the N mod batch rows left over are dropped that pass).
  // pass = passes drawn so far (1-based index of the current one, 0 before the first), window =
  // windows of the current pass already used; `order` = the current pass's permutation.
  std::int64_t batch = 0, windows_per_pass = 0, pass = 0, window = 0;
  std::vector<std::int64_t> order;
  // Data parallel (set_data_parallel): builds an inner problem on some rows of the data, and
  // whether `problem` is the sharded one (its reductions synchronise: no CUDA graph then).
  typename bilevel_detail::ShardedProblem<T>::Factory factory;
  std::int64_t validation_rows = 0;
  bool sharded = false;

  /// Draws pass `pass`'s permutation and uploads the rows in that order.
  void draw_pass(std::uint64_t seed) {
    order = random_permutation(problem->train_rows(), pass_seed(seed, static_cast<std::uint64_t>(pass)));
    problem->shuffle(order);
  }
  /// The window of the next inner step; a used-up pass (or none yet) draws the next one first.
  bilevel_detail::Window next_window(std::uint64_t seed) {
    if (pass == 0 || window == windows_per_pass) {
      ++pass;
      window = 0;
      draw_pass(seed);
    }
    return {.first = window++ * batch, .rows = batch};
  }
};

namespace {

/// Every field of the options on its own (check(BilevelOptions) and the constructors).
template <class T>
void check_bilevel_options(std::string_view fn, const BilevelOptions<T>& options) {
  check_inner(fn, options.inner);  // every field of InnerOptions
  D2R_EXPECTS(options.inner_start == InnerStart::fresh || options.inner_start == InnerStart::warm, fn,
              "options.inner_start", "unknown value {}", static_cast<int>(options.inner_start));
  D2R_EXPECTS(options.curvature == CurvatureKind::surrogate || options.curvature == CurvatureKind::exact, fn,
              "options.curvature", "unknown value {}",
              static_cast<int>(options.curvature));
  switch (options.solver) {
    case ImplicitSolver::conjugate_gradient:
    case ImplicitSolver::normal_cg:
      D2R_EXPECTS(std::isfinite(static_cast<double>(options.cg.damping)) && options.cg.damping >= 0, fn,
                  "options.cg.damping", "expected a finite damping δ >= 0, got {}", options.cg.damping);
      D2R_EXPECTS(finite_positive(static_cast<double>(options.cg.tolerance)), fn, "options.cg.tolerance",
                  "expected a tolerance > 0, got {}", options.cg.tolerance);
      D2R_EXPECTS(options.cg.max_iterations >= 1 && options.cg.max_iterations <= kMaxSolverIterations, fn,
                  "options.cg.max_iterations", "expected an iteration cap in [1, {}], got {}", kMaxSolverIterations,
                  options.cg.max_iterations);
      break;
    case ImplicitSolver::neumann:
      D2R_EXPECTS(std::isfinite(static_cast<double>(options.neumann.alpha)) && options.neumann.alpha > 0, fn,
                  "options.neumann.alpha", "expected a finite α > 0, got {}", options.neumann.alpha);
      D2R_EXPECTS(std::isfinite(static_cast<double>(options.neumann.damping)) && options.neumann.damping >= 0, fn,
                  "options.neumann.damping", "expected a finite damping δ >= 0, got {}", options.neumann.damping);
      D2R_EXPECTS(options.neumann.iterations >= 0 && options.neumann.iterations <= kMaxSolverIterations, fn,
                  "options.neumann.iterations", "expected K in [0, {}], got {}", kMaxSolverIterations,
                  options.neumann.iterations);
      break;
    default:
      D2R_EXPECTS(false, fn, "options.solver", "unknown value {}", static_cast<int>(options.solver));
  }
  if (options.optimizer == OuterOptimizer::adam) {
    check_adam(fn, "options.outer_adam", options.outer_adam);
    D2R_EXPECTS(options.outer_adam.weight_decay == 0, fn, "options.outer_adam",
                "weight decay of the reward parameters is not supported (got {})", options.outer_adam.weight_decay);
  } else if (options.optimizer == OuterOptimizer::rprop) {
    const RpropOptions& r = options.rprop;
    D2R_EXPECTS(finite_positive(r.initial_step) && r.initial_step <= 10, fn, "options.rprop.initial_step",
                "expected a step in (0, 10] (log space), got {}", r.initial_step);
    D2R_EXPECTS(std::isfinite(r.max_step) && r.max_step >= r.initial_step && r.max_step <= 10, fn,
                "options.rprop.max_step", "expected a step in [initial_step = {}, 10], got {}", r.initial_step,
                r.max_step);
    D2R_EXPECTS(finite_positive(r.min_step) && r.min_step <= r.initial_step, fn, "options.rprop.min_step",
                "expected a step in (0, initial_step = {}], got {}", r.initial_step, r.min_step);
    D2R_EXPECTS(std::isfinite(r.increase) && r.increase > 1 && r.increase <= 10, fn, "options.rprop.increase",
                "expected a factor in (1, 10], got {}", r.increase);
    D2R_EXPECTS(r.decrease > 0 && r.decrease < 1, fn, "options.rprop.decrease", "expected a factor in (0, 1), got {}",
                r.decrease);
    D2R_EXPECTS(std::isfinite(r.flat_tolerance) && r.flat_tolerance >= 0, fn, "options.rprop.flat_tolerance",
                "expected a finite fraction >= 0 (0: off), got {}", r.flat_tolerance);
  } else {
    D2R_EXPECTS(options.optimizer == OuterOptimizer::sgd, fn, "options.optimizer", "unknown value {}",
                static_cast<int>(options.optimizer));
    D2R_EXPECTS(std::isfinite(options.sgd_learning_rate) && options.sgd_learning_rate > 0, fn,
                "options.sgd_learning_rate", "expected a finite step size > 0, got {}", options.sgd_learning_rate);
    D2R_EXPECTS(options.sgd_momentum >= 0 && options.sgd_momentum < 1, fn, "options.sgd_momentum",
                "expected momentum in [0, 1), got {}", options.sgd_momentum);
  }
  D2R_EXPECTS(finite_positive(options.hypergradient_clamp), fn, "options.hypergradient_clamp",
              "expected c_out > 0 (+inf for no clamp), got {}", options.hypergradient_clamp);
  D2R_EXPECTS(std::isfinite(options.reward_floor) && options.reward_floor > 0, fn, "options.reward_floor",
              "expected a finite floor > 0, got {}", options.reward_floor);
  D2R_EXPECTS(std::isfinite(options.reward_ceiling) && options.reward_ceiling > options.reward_floor, fn,
              "options.reward_ceiling", "expected a finite ceiling > the floor {}, got {}", options.reward_floor,
              options.reward_ceiling);
  D2R_EXPECTS(options.stopping.window >= 2 && options.stopping.window <= 1000000, fn, "options.stopping.window",
              "expected a window of 2 to 10^6 outer steps, got {}", options.stopping.window);
  D2R_EXPECTS(finite_positive(options.stopping.reward_tolerance), fn, "options.stopping.reward_tolerance",
              "expected a finite tolerance > 0, got {}", options.stopping.reward_tolerance);
  D2R_EXPECTS(finite_positive(options.stopping.loss_tolerance), fn, "options.stopping.loss_tolerance",
              "expected a finite tolerance > 0, got {}", options.stopping.loss_tolerance);
}

/// Everything about the options and the reward that does not depend on the data kind.
template <class T>
std::vector<std::size_t> check_bilevel_setup(std::string_view fn, const BilevelOptions<T>& options, RewardForm form,
                                             std::span<const double> reward_init, std::int64_t reward_dim,
                                             std::int64_t train_rows, bool has_validation) {
  D2R_EXPECTS(form == RewardForm::scalar || form == RewardForm::diagonal || form == RewardForm::full, fn, "form",
              "expected RewardForm::scalar, diagonal or full, got value {}", static_cast<int>(form));
  const std::int64_t phi_size = reward_size(form, reward_dim);
  D2R_EXPECTS(static_cast<std::int64_t>(reward_init.size()) == phi_size, fn, "reward_init",
              "a {} reward on {} dimensions has {} parameters, got {}", form_name(form), reward_dim, phi_size,
              reward_init.size());
  std::vector<std::size_t> positive = positive_entries(form, phi_size, reward_dim);
  for (std::size_t i = 0; i < reward_init.size(); ++i) {
    D2R_EXPECTS(std::isfinite(reward_init[i]), fn, "reward_init", "entry {} is not finite ({})", i, reward_init[i]);
  }
  for (std::size_t i : positive) {
    D2R_EXPECTS(reward_init[i] > 0, fn, "reward_init", "entry {} must be > 0 (U positive definite), got {}", i,
                reward_init[i]);
  }
  check_bilevel_options(fn, options);
  D2R_EXPECTS(options.outer_data == OuterData::train || has_validation, fn, "options.outer_data",
              "OuterData::validation needs validation data, and none was given");
  objective_common::check_options(fn, options.inner.pg, train_rows);
  const bool minibatch = options.inner.batch_size > 0 && options.inner.batch_size < train_rows;
  D2R_EXPECTS(!minibatch || options.inner.pg.normaliser_rows == 0, fn, "options.inner.pg.normaliser_rows",
              "expected 0 with minibatches (options.inner.batch_size = {} < {} training rows: the inner gradient is "
              "the per-row mean over each window), got {}",
              options.inner.batch_size, train_rows, options.inner.pg.normaliser_rows);
  detail::check_transform(fn, options.inner.pg.transform, options.inner.generations);
  return positive;
}

}  // namespace

namespace {

// The fingerprint walks the options with for_each_field (bilevel.hpp), which lists the fields by
// hand: a field added to a struct but not to its visitor would let a checkpoint resume under
// another value of it. These sizes catch the addition (x86-64 / aarch64, as the hosts d2r
// builds on): add the field to for_each_field, then update the size here.
static_assert(sizeof(InnerOptions<float>) == 104 && sizeof(InnerOptions<double>) == 152,
              "InnerOptions changed: add the new field to its for_each_field (bilevel.hpp), then update this size");
static_assert(sizeof(BilevelOptions<float>) == 368 && sizeof(BilevelOptions<double>) == 432,
              "BilevelOptions changed: add the new field to its for_each_field (bilevel.hpp), then update this size");

/// The first line of every checkpoint's fingerprint: the format version. v3 added the minibatch
/// position (InnerOptions::batch_size); v4 made the fingerprint one "name = value" line per
/// setting (every field of BilevelOptions by for_each_field, the data's hash, the initial reward,
/// the caller's identity lines) and added the accuracies to the records. Older files cannot be
/// resumed. v5 added the outer optimiser's Rprop state (step sizes, signs, last moves) and the
/// per-step diagnostics of the records (inner steps, stationarity, solver, step size).
constexpr int kCheckpointVersion = 5;
constexpr std::string_view kCheckpointPrefix = "d2r bilevel v";
constexpr std::string_view kCheckpointFormat = "d2r bilevel v5\n";  // kCheckpointPrefix, kCheckpointVersion

/// "name = value" lines of a fingerprint (after its first line) as ordered pairs.
std::vector<std::pair<std::string, std::string>> fingerprint_lines(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t at = text.find('\n');
  at = at == std::string_view::npos ? text.size() : at + 1;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(at, end - at);
    const std::size_t eq = line.find(" = ");
    if (eq == std::string_view::npos) {
      out.emplace_back(std::string(line), "");
    } else {
      out.emplace_back(std::string(line.substr(0, eq)), std::string(line.substr(eq + 3)));
    }
    at = end + 1;
  }
  return out;
}

/// What differs between two fingerprints, one "name: saved X, now Y" per setting.
std::vector<std::string> fingerprint_diff(std::string_view saved, std::string_view current) {
  return field_differences(fingerprint_lines(saved), fingerprint_lines(current));
}

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
    impl_->problem->enable_minibatches();
  }
  phi_.assign(reward_init.begin(), reward_init.end());
  for (std::size_t i : impl_->positive) phi_[i] = std::max(phi_[i], options_.reward_floor);
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

template <class T>
BilevelTrainer<T>::BilevelTrainer(Context& ctx, MlpSpec trunk, RegressionData<T> train, RegressionData<T> validation,
                                  RewardForm form, std::span<const double> reward_init, BilevelOptions<T> options)
    : options_(options) {
  constexpr std::string_view fn = "BilevelTrainer";
  detail::check_scalar_type<T>(ctx, fn);
  check_data(ctx, fn, "train", train, 2);
  const std::int64_t n = train.y.cols;
  if (trunk.inputs == 0) trunk.inputs = train.x.cols;
  D2R_EXPECTS(trunk.inputs == train.x.cols, fn, "trunk.inputs", "expected {} (the columns of train.x), got {}",
              train.x.cols, trunk.inputs);
  if (!validation.empty()) {
    check_data(ctx, fn, "validation", validation, 1);
    D2R_EXPECTS(validation.x.cols == train.x.cols, fn, "validation.x", "expected {} columns (those of train.x), got {}",
                train.x.cols, validation.x.cols);
    D2R_EXPECTS(validation.y.cols == n, fn, "validation.y", "expected {} columns (those of train.y), got {}", n,
                validation.y.cols);
  }
  std::vector<std::size_t> positive =
      check_bilevel_setup(fn, options, form, reward_init, n, train.x.rows, !validation.empty());
  D2R_EXPECTS(options.head == GaussianHead::diagonal || options.head == GaussianHead::cholesky, fn, "options.head",
              "expected GaussianHead::diagonal or cholesky, got value {}", static_cast<int>(options.head));
  D2R_EXPECTS(options.head != GaussianHead::cholesky || n <= kMaxCholeskyDim, fn, "options.head",
              "the Cholesky head supports n <= {} target dimensions, got {}", kMaxCholeskyDim, n);
  const MlpSpec spec = trunk;  // set_data_parallel builds more problems of it
  std::unique_ptr<bilevel_detail::Problem<T>> problem;
  if (options.head == GaussianHead::diagonal) {
    problem = std::make_unique<bilevel_detail::GaussianProblem<T, DiagGaussianPolicyCurvature<T>>>(
        ctx, std::move(trunk), train, validation, options.head);
  } else {
    problem = std::make_unique<bilevel_detail::GaussianProblem<T, CholeskyPolicyCurvature<T>>>(
        ctx, std::move(trunk), train, validation, options.head);
  }
  initialize(ctx, std::move(problem), form, reward_init, std::move(positive));
  impl_->validation_rows = validation.empty() ? 0 : validation.x.rows;
  impl_->factory = [c = &ctx, spec, train, validation, head = options.head](bool val, std::int64_t first,
                                                                           std::int64_t rows) {
    const RegressionData<T>& d = val ? validation : train;
    const RegressionData<T> part{{d.x.data + first * d.x.row_stride, rows, d.x.cols, d.x.row_stride},
                                 {d.y.data + first * d.y.row_stride, rows, d.y.cols, d.y.row_stride}};
    std::unique_ptr<bilevel_detail::Problem<T>> p;
    if (head == GaussianHead::diagonal) {
      p = std::make_unique<bilevel_detail::GaussianProblem<T, DiagGaussianPolicyCurvature<T>>>(*c, spec, part,
                                                                                            RegressionData<T>{}, head);
    } else {
      p = std::make_unique<bilevel_detail::GaussianProblem<T, CholeskyPolicyCurvature<T>>>(*c, spec, part,
                                                                                         RegressionData<T>{}, head);
    }
    return p;
  };
}

template <class T>
BilevelTrainer<T>::BilevelTrainer(Context& ctx, MlpSpec trunk, ClassificationData<T> train,
                                  ClassificationData<T> validation, std::int64_t classes, RewardForm form,
                                  std::span<const double> reward_init, BilevelOptions<T> options)
    : options_(options) {
  constexpr std::string_view fn = "BilevelTrainer";
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(classes >= 2 && classes <= kMaxCategoricalClasses, fn, "classes", "expected 2 <= C <= {}, got {}",
              kMaxCategoricalClasses, classes);
  check_class_data(ctx, fn, "train", train, classes, 2);
  if (trunk.inputs == 0) trunk.inputs = train.x.cols;
  D2R_EXPECTS(trunk.inputs == train.x.cols, fn, "trunk.inputs", "expected {} (the columns of train.x), got {}",
              train.x.cols, trunk.inputs);
  if (!validation.empty()) {
    check_class_data(ctx, fn, "validation", validation, classes, 1);
    D2R_EXPECTS(validation.x.cols == train.x.cols, fn, "validation.x", "expected {} columns (those of train.x), got {}",
                train.x.cols, validation.x.cols);
  }
  D2R_EXPECTS(form != RewardForm::full || classes <= 256, fn, "form", "a full one-hot reward supports C <= 256, got {}",
              classes);
  std::vector<std::size_t> positive =
      check_bilevel_setup(fn, options, form, reward_init, classes, train.x.rows, !validation.empty());
  const MlpSpec spec = trunk;  // set_data_parallel builds more problems of it
  initialize(ctx,
             std::make_unique<bilevel_detail::CategoricalProblem<T>>(ctx, std::move(trunk), train, validation, classes),
             form, reward_init, std::move(positive));
  impl_->validation_rows = validation.empty() ? 0 : validation.x.rows;
  impl_->factory = [c = &ctx, spec, train, validation, classes](bool val, std::int64_t first, std::int64_t rows) {
    const ClassificationData<T>& d = val ? validation : train;
    const ClassificationData<T> part{{d.x.data + first * d.x.row_stride, rows, d.x.cols, d.x.row_stride},
                                     {d.labels.data + first, rows}};
    return std::unique_ptr<bilevel_detail::Problem<T>>(
        std::make_unique<bilevel_detail::CategoricalProblem<T>>(*c, spec, part, ClassificationData<T>{}, classes));
  };
}

template <class T>
void BilevelTrainer<T>::set_data_parallel(const DataParallel& parallel) {
  constexpr std::string_view fn = "BilevelTrainer::set_data_parallel";
  Impl& s = *impl_;
  shard::check(s.ctx, fn, "parallel", parallel);
  D2R_EXPECTS(steps_done() == 0 && !s.sharded, fn, "this",
              "set data parallel once, before the first step() and before load() ({} steps done)", steps_done());
  if (!shard::active(parallel)) return;
  D2R_EXPECTS(s.batch == 0, fn, "parallel",
              "minibatches (options.inner.batch_size = {}) are not split over ranks yet; use the full batch",
              options_.inner.batch_size);
  // The full problem gives the fingerprint's description and data hash (the same for any rank
  // count, so a checkpoint resumes with another one), then makes way for this rank's parts.
  std::unique_ptr<bilevel_detail::Problem<T>> full = std::move(s.problem);
  const std::string description = full->describe();
  const std::uint64_t hash = full->data_hash();
  const std::int64_t train_rows = full->train_rows();
  const std::int64_t validation_rows = s.validation_rows;
  full.reset();
  s.problem = std::make_unique<bilevel_detail::ShardedProblem<T>>(s.ctx, parallel, s.factory, train_rows,
                                                                  validation_rows, description, hash);
  s.sharded = true;
}

template <class T>
BilevelTrainer<T>::~BilevelTrainer() = default;

template <class T>
VectorView<const T> BilevelTrainer<T>::policy_params() const {
  return std::as_const(impl_->theta).vector();
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
  if (options_.inner_start == InnerStart::fresh || k == 1) s.problem->init(s.theta.vector(), mix_seed(options_.seed, k));
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
  std::int64_t inner_done = 0;
  if (!(gradient_norm <= target)) {
    inner_done = in.steps;
    run_inner(in.steps, true);
    gradient_norm = exact_gradient_norm(s.theta);
  }
  bool stationary = true;
  if (in.stationarity_tolerance > 0) {
    while (!(gradient_norm <= target) && inner_done < max_inner) {
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
  // Metrics of θ*_k (before φ moves: the outer loss at the φ the hypergradient is taken at).
  rec.train = s.problem->evaluate(theta, false);
  rec.validation = s.problem->has_validation() ? s.problem->evaluate(theta, true) : nan_metrics();
  rec.outer_loss = options_.outer_data == OuterData::train ? rec.train.nll_per_dim : rec.validation.nll_per_dim;

  // Outer step on φ (host, double); a non-finite hypergradient, or one taken at an inner policy
  // that is not stationary, leaves φ unchanged.
  rec.inner_stationary = stationary;
  if (finite && stationary) {
    if (options_.reset_outer_optimizer) {
      std::fill(s.outer_m.begin(), s.outer_m.end(), 0.0);
      std::fill(s.outer_v.begin(), s.outer_v.end(), 0.0);
      std::fill(s.sgd_velocity.begin(), s.sgd_velocity.end(), 0.0);
      std::fill(s.rprop_step.begin(), s.rprop_step.end(), 0.0);
      std::fill(s.rprop_sign.begin(), s.rprop_sign.end(), 0.0);
      std::fill(s.rprop_last.begin(), s.rprop_last.end(), 0.0);
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
        if (moved_last && flipped && history_.size() > 0 &&
            rec.outer_loss > history_.back().outer_loss + options_.stopping.loss_tolerance) {
          for (std::size_t i = 0; i < phi_.size(); ++i) {
            delta[i] = -s.rprop_last[i];
            s.rprop_step[i] = std::max(s.rprop_step[i] * o.decrease, o.min_step);
            s.rprop_sign[i] = 0;
            s.rprop_last[i] = 0;
          }
          rec.backtracked = true;
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
      if (log_space && is_positive[i]) {
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

template <class T>
BilevelVerdict BilevelTrainer<T>::verdict(bool budget_spent) const {
  const Impl& s = *impl_;
  if (history_.empty()) {
    return {budget_spent ? BilevelStatus::step_limited : BilevelStatus::running, "no outer step was run"};
  }
  const BilevelRecord& last = history_.back();
  for (const BilevelRecord& r : history_) {
    for (double h : r.hypergradient) {
      if (!std::isfinite(h)) {
        return {BilevelStatus::diverged, fmt::format("the hypergradient of outer step {} is not finite", r.step)};
      }
    }
  }
  if (!std::isfinite(last.outer_loss)) {
    return {BilevelStatus::diverged, fmt::format("the outer loss of outer step {} is not finite", last.step)};
  }
  for (std::size_t i : s.positive) {
    if (phi_[i] <= options_.reward_floor || phi_[i] >= options_.reward_ceiling) {
      return {BilevelStatus::diverged,
              fmt::format("reward parameter {} reached its {} {} (the outer optimum lies beyond it, or the "
                          "hypergradient points the wrong way)",
                          i, phi_[i] <= options_.reward_floor ? "floor" : "ceiling", phi_[i])};
    }
  }
  const StoppingOptions& st = options_.stopping;
  const auto W = static_cast<std::size_t>(st.window);
  // Relative spread of φ and absolute spread of the outer loss over the last W steps.
  double reward_spread = std::numeric_limits<double>::infinity(), loss_spread = reward_spread;
  if (history_.size() >= W) {
    reward_spread = 0;
    const std::size_t first = history_.size() - W;
    for (std::size_t i = 0; i < phi_.size(); ++i) {
      double lo = std::numeric_limits<double>::infinity(), hi = -lo;
      for (std::size_t k = first; k < history_.size(); ++k) {
        const double v = history_[k].reward_params[i];
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      const bool pos = std::find(s.positive.begin(), s.positive.end(), i) != s.positive.end();
      reward_spread = std::max(reward_spread, pos ? std::log(hi / lo) : (hi - lo) / std::max(std::abs(hi), 1e-12));
    }
    // The outer loss is noisy (sampled inner steps, few validation rows): its level, the mean
    // over the window, against the mean over the window before.
    if (history_.size() >= 2 * W) {
      double now = 0, before = 0;
      for (std::size_t k = first; k < history_.size(); ++k) now += history_[k].outer_loss / static_cast<double>(W);
      for (std::size_t k = first - W; k < first; ++k) before += history_[k].outer_loss / static_cast<double>(W);
      loss_spread = std::abs(now - before);
    }
  }
  // Every step of the window with a stationary inner policy, and not every one a maximal move (a
  // fixed step of the paper's re-created Adam can be small relative to φ without φ having settled).
  bool window_stationary = history_.size() >= W, window_at_max = history_.size() >= W;
  for (std::size_t k = history_.size() >= W ? history_.size() - W : 0; k < history_.size(); ++k) {
    window_stationary = window_stationary && history_[k].inner_stationary;
    window_at_max = window_at_max && history_[k].at_max_step;
  }
  if (window_stationary && !window_at_max && reward_spread <= st.reward_tolerance &&
      loss_spread <= st.loss_tolerance) {
    return {BilevelStatus::converged,
            fmt::format("over the last {} outer steps the reward moved by {:.3g} (relative, tolerance {}) and the "
                        "outer loss's mean by {:.3g} from the {} steps before (tolerance {})",
                        W, reward_spread, st.reward_tolerance, loss_spread, W, st.loss_tolerance)};
  }
  if (!budget_spent) return {BilevelStatus::running, ""};
  bool every_max = true;
  for (const BilevelRecord& r : history_) every_max = every_max && r.at_max_step;
  if (every_max) {
    return {BilevelStatus::step_limited,
            fmt::format("the reward moved by the maximum step at every one of the {} outer steps: it is set by the "
                        "step budget, not by the data",
                        history_.size())};
  }
  if (!window_stationary && history_.size() >= W) {
    return {BilevelStatus::step_limited,
            fmt::format("the outer-step budget ran out while the inner policy was not stationary at the cap of {} inner "
                        "steps in some of the last {} outer steps (φ is not moved then)",
                        std::max(options_.inner.steps, options_.inner.max_steps), W)};
  }
  if (history_.size() < 2 * W) {
    return {BilevelStatus::step_limited,
            fmt::format("{} outer steps are fewer than twice the convergence window of {}", history_.size(), W)};
  }
  return {BilevelStatus::step_limited,
          fmt::format("the outer-step budget ran out: over the last {} outer steps the reward still moved by {:.3g} "
                      "(relative, tolerance {}) and the outer loss's mean by {:.3g} from the {} steps before "
                      "(tolerance {})",
                      W, reward_spread, st.reward_tolerance, loss_spread, W, st.loss_tolerance)};
}

// ------------------------------------------------------------------ checkpoints
namespace {

constexpr int kRecordFixed = 24;  // doubles per record before its two vectors

void append_record(std::vector<double>& out, const BilevelRecord& r) {
  out.insert(out.end(), {static_cast<double>(r.step), r.outer_loss, r.train.nll_per_dim, r.train.rmse,
                         r.train.mean_std, r.validation.nll_per_dim, r.validation.rmse, r.validation.mean_std,
                         r.mean_inner_reward, static_cast<double>(static_cast<int>(r.solver_status)),
                         static_cast<double>(r.solver_iterations), r.solver_initial_residual, r.solver_residual,
                         r.wall_seconds, r.train.accuracy, r.validation.accuracy, static_cast<double>(r.inner_steps),
                         r.inner_gradient_norm, r.inner_gradient_norm0, r.hypergradient_clamped ? 1.0 : 0.0,
                         r.max_step, r.at_max_step ? 1.0 : 0.0, r.inner_stationary ? 1.0 : 0.0,
                         r.backtracked ? 1.0 : 0.0});
  out.push_back(static_cast<double>(r.reward_params.size()));
  out.insert(out.end(), r.reward_params.begin(), r.reward_params.end());
  out.push_back(static_cast<double>(r.hypergradient.size()));
  out.insert(out.end(), r.hypergradient.begin(), r.hypergradient.end());
}

std::vector<BilevelRecord> parse_records(const std::vector<double>& in, std::int64_t count,
                                         const std::filesystem::path& path) {
  std::vector<BilevelRecord> out;
  std::size_t at = 0;
  const auto need = [&](std::size_t k) {
    if (in.size() - at < k) {
      throw Error(ErrorKind::io, "path", fmt::format("checkpoint '{}': the records are truncated", path.string()));
    }
  };
  const auto vec = [&](std::vector<double>& v) {
    need(1);
    const auto len = static_cast<std::size_t>(in[at++]);
    need(len);
    v.assign(in.begin() + static_cast<std::ptrdiff_t>(at), in.begin() + static_cast<std::ptrdiff_t>(at + len));
    at += len;
  };
  for (std::int64_t i = 0; i < count; ++i) {
    need(kRecordFixed);
    const double* f = in.data() + at;
    BilevelRecord r;
    r.step = static_cast<std::int64_t>(f[0]);
    r.outer_loss = f[1];
    r.train = {f[2], f[3], f[4]};
    r.validation = {f[5], f[6], f[7]};
    r.mean_inner_reward = f[8];
    r.solver_status = static_cast<SolveStatus>(static_cast<int>(f[9]));
    r.solver_iterations = static_cast<std::int64_t>(f[10]);
    r.solver_initial_residual = f[11];
    r.solver_residual = f[12];
    r.wall_seconds = f[13];
    r.train.accuracy = f[14];
    r.validation.accuracy = f[15];
    r.inner_steps = static_cast<std::int64_t>(f[16]);
    r.inner_gradient_norm = f[17];
    r.inner_gradient_norm0 = f[18];
    r.hypergradient_clamped = f[19] != 0;
    r.max_step = f[20];
    r.at_max_step = f[21] != 0;
    r.inner_stationary = f[22] != 0;
    r.backtracked = f[23] != 0;
    at += kRecordFixed;
    vec(r.reward_params);
    vec(r.hypergradient);
    out.push_back(std::move(r));
  }
  if (at != in.size()) {
    throw Error(ErrorKind::io, "path", fmt::format("checkpoint '{}': trailing record data", path.string()));
  }
  return out;
}

template <class T>
void add_values(detail::CheckpointWriter& w, const std::string& name, const std::vector<T>& v) {
  w.add(name, std::span<const T>(v));
}

template <class T>
std::vector<T> read_values(const detail::CheckpointReader& r, const std::string& name) {
  if constexpr (std::is_same_v<T, float>) {
    return r.floats(name);
  } else {
    return r.doubles(name);
  }
}

}  // namespace

template <class T>
void BilevelTrainer<T>::set_checkpoint_identity(std::span<const std::pair<std::string, std::string>> lines) {
  std::string text;
  for (const auto& [name, value] : lines) {
    D2R_EXPECTS(!name.empty() && name.find('\n') == std::string::npos && name.find(" = ") == std::string::npos &&
                    value.find('\n') == std::string::npos,
                "BilevelTrainer::set_checkpoint_identity", "lines",
                "expected names without line breaks or ' = ' and values without line breaks, got '{}'", name);
    text += fmt::format("identity.{} = {}\n", name, value);
  }
  impl_->identity = std::move(text);
}

template <class T>
void BilevelTrainer<T>::save(const std::filesystem::path& path) const {
  const Impl& s = *impl_;
  detail::CheckpointWriter w;
  w.add_text("fingerprint", impl_->checkpoint_fingerprint() + s.identity);
  add_values(w, "theta", s.theta.to_host());
  add_values(w, "inner_first_moment", s.first_moment.to_host());
  add_values(w, "inner_second_moment", s.second_moment.to_host());
  w.add("inner_count", std::span<const std::int64_t>(s.adam_count.to_host()));
  w.add("phi", std::span<const double>(phi_));
  w.add("outer_first_moment", std::span<const double>(s.outer_m));
  w.add("outer_second_moment", std::span<const double>(s.outer_v));
  w.add("sgd_velocity", std::span<const double>(s.sgd_velocity));
  w.add("rprop_step", std::span<const double>(s.rprop_step));
  w.add("rprop_sign", std::span<const double>(s.rprop_sign));
  w.add("rprop_last", std::span<const double>(s.rprop_last));
  const std::vector<std::int64_t> counters{s.outer_count, static_cast<std::int64_t>(s.philox_step), steps_done()};
  w.add("counters", std::span<const std::int64_t>(counters));
  const std::vector<std::int64_t> minibatch{s.pass, s.window};
  w.add("minibatch", std::span<const std::int64_t>(minibatch));
  std::vector<double> records;
  for (const BilevelRecord& r : history_) append_record(records, r);
  w.add("records", std::span<const double>(records));
  w.write(path);
}

template <class T>
void BilevelTrainer<T>::load(const std::filesystem::path& path) {
  constexpr std::string_view fn = "BilevelTrainer::load";
  Impl& s = *impl_;
  const detail::CheckpointReader r(path);
  const std::string saved = r.text("fingerprint");
  D2R_EXPECTS(saved.starts_with(kCheckpointPrefix), fn, "path", "checkpoint '{}' is not a BilevelTrainer checkpoint",
              path.string());
  if (!saved.starts_with(kCheckpointFormat)) {
    const std::string_view rest = std::string_view(saved).substr(kCheckpointPrefix.size());
    const std::string version(rest.substr(0, rest.find_first_not_of("0123456789")));
    D2R_EXPECTS(false, fn, "path",
                "checkpoint '{}' has format version {}; this d2r reads version {} only (version 5 added the "
                "outer optimiser's Rprop state), so it cannot be resumed: start the run again",
                path.string(), version, kCheckpointVersion);
  }
  const std::string current = s.checkpoint_fingerprint() + s.identity;
  if (saved != current) {
    const std::vector<std::string> diff = fingerprint_diff(saved, current);
    D2R_EXPECTS(false, fn, "path", "checkpoint '{}' was written by a run with another configuration or other data ({}):\n  {}",
                path.string(), diff.size() == 1 ? "1 difference" : fmt::format("{} differences", diff.size()),
                fmt::join(diff, "\n  "));
  }
  // Read and check everything before changing any state.
  const std::vector<T> theta = read_values<T>(r, "theta"), m = read_values<T>(r, "inner_first_moment"),
                       v = read_values<T>(r, "inner_second_moment");
  const std::vector<std::int64_t> inner_count = r.integers("inner_count"), counters = r.integers("counters"),
                                  minibatch = r.integers("minibatch");
  const std::vector<double> phi = r.doubles("phi"), om = r.doubles("outer_first_moment"),
                            ov = r.doubles("outer_second_moment"), vel = r.doubles("sgd_velocity"),
                            rstep = r.doubles("rprop_step"), rsign = r.doubles("rprop_sign"),
                            rlast = r.doubles("rprop_last");
  const std::size_t P = s.theta.size(), S = phi_.size();
  D2R_EXPECTS(theta.size() == P && m.size() == P && v.size() == P && inner_count.size() == 1 && phi.size() == S &&
                  om.size() == S && ov.size() == S && vel.size() == S && rstep.size() == S && rsign.size() == S && rlast.size() == S &&
                  counters.size() == 3 && counters[0] >= 0 &&
                  counters[1] >= 0 && counters[2] >= 0,
              fn, "path", "checkpoint '{}' has sections of the wrong size", path.string());
  D2R_EXPECTS(minibatch.size() == 2 && minibatch[0] >= 0 &&
                  (s.batch == 0 ? minibatch[0] == 0 && minibatch[1] == 0
                                : minibatch[1] >= (minibatch[0] > 0 ? 1 : 0) &&
                                      minibatch[1] <= (minibatch[0] > 0 ? s.windows_per_pass : 0)),
              fn, "path", "checkpoint '{}' has an invalid minibatch position", path.string());
  std::vector<BilevelRecord> records = parse_records(r.doubles("records"), counters[2], path);
  // The values themselves: a file can be well-formed (and its checksum recomputed) yet hold a
  // state no run produces; resuming from it would train on garbage.
  const auto all_finite = [](const auto& v) {
    return std::all_of(v.begin(), v.end(), [](auto x) { return std::isfinite(static_cast<double>(x)); });
  };
  D2R_EXPECTS(all_finite(theta) && all_finite(m) && all_finite(v) && all_finite(om) && all_finite(ov) && all_finite(vel),
              fn, "path", "checkpoint '{}' holds non-finite policy or optimiser values", path.string());
  D2R_EXPECTS(std::all_of(v.begin(), v.end(), [](T x) { return x >= T(0); }) &&
                  std::all_of(ov.begin(), ov.end(), [](double x) { return x >= 0; }) && inner_count[0] >= 0,
              fn, "path", "checkpoint '{}' holds a negative second moment or step count", path.string());
  D2R_EXPECTS(all_finite(phi), fn, "path", "checkpoint '{}' holds non-finite reward parameters", path.string());
  for (std::size_t i : s.positive) {
    D2R_EXPECTS(phi[i] >= options_.reward_floor, fn, "path",
                "checkpoint '{}' holds reward parameter {} = {}, below the floor {} that every run keeps it above",
                path.string(), i, phi[i], options_.reward_floor);
  }
  for (std::size_t k = 0; k < records.size(); ++k) {
    D2R_EXPECTS(records[k].step == static_cast<std::int64_t>(k) + 1 && records[k].reward_params.size() == S, fn, "path",
                "checkpoint '{}' has malformed records (record {} is of step {})", path.string(), k + 1,
                records[k].step);
  }
  D2R_EXPECTS(records.empty() || records.back().reward_params == phi, fn, "path",
              "checkpoint '{}': the last record's reward differs from the saved reward", path.string());

  s.theta.copy_from_host(theta);
  s.first_moment.copy_from_host(m);
  s.second_moment.copy_from_host(v);
  s.adam_count.copy_from_host(inner_count);
  phi_ = phi;
  s.outer_m = om;
  s.outer_v = ov;
  s.sgd_velocity = vel;
  s.rprop_step = rstep;
  s.rprop_sign = rsign;
  s.rprop_last = rlast;
  s.outer_count = counters[0];
  s.philox_step = static_cast<std::uint64_t>(counters[1]);
  s.pass = minibatch[0];
  s.window = minibatch[1];
  if (s.pass > 0) {
    s.draw_pass(options_.seed);  // the current pass's rows, as the saving run had them
  } else {
    s.order.clear();
  }
  history_ = std::move(records);
}

template <class T>
void check(const BilevelOptions<T>& options) {
  check_bilevel_options("d2r::check(BilevelOptions)", options);
}

template class BilevelTrainer<float>;
template class BilevelTrainer<double>;
template void check(const BilevelOptions<float>&);
template void check(const BilevelOptions<double>&);

}  // namespace d2r
