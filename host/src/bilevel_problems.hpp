#pragma once
// The inner problems of BilevelTrainer (bilevel.cpp): what the scheduler needs from a policy
// family on its data, one implementation per data kind, and the data-parallel one that sums the
// parts of every rank (internal; bilevel*.cpp only).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "d2r/bilevel.hpp"
#include "d2r/data.hpp"
#include "d2r/error.hpp"
#include "d2r/policy_curvature.hpp"
#include "host/src/comm/shard.hpp"
#include "host/src/trainer_common.hpp"

namespace d2r {

// ------------------------------------------------------------------ inner problems
// What the scheduler needs from a policy family: the inner gradient, the outer (NLL) gradient, the
// curvature operator and mixed product, and metrics. One implementation per data kind.
namespace bilevel_detail {

using trainer_common::gather_rows;
using trainer_common::rows_to_host;

/// The rows an inner step uses: every training row as given (rows == 0), or rows
/// [first, first + rows) of the trainer-owned shuffled copy (minibatches).
struct Window {
  std::int64_t first = 0;
  std::int64_t rows = 0;
};

/// Minibatch plumbing of the problems: a host copy of the rows the windows draw from (packed,
/// copied once) and, in the backend's memory, the rows of the current selection (a pass's
/// permutation, or this rank's parts of every window of it), in selection order.
template <class U>
class WindowedRows {
 public:
  WindowedRows(Context& ctx, std::vector<U> host, std::int64_t cols) : ctx_(ctx), host_(std::move(host)), cols_(cols) {}
  /// Row r of the selection = row rows[r] of the host copy (one upload).
  void select(const std::vector<std::int64_t>& rows) {
    picked_.resize(rows.size() * static_cast<std::size_t>(cols_));
    gather_rows(host_, cols_, rows, picked_);
    if (device_.size() < picked_.size()) device_ = Buffer<U>(ctx_, picked_.size());
    device_.copy_from_host(picked_);
  }
  /// Rows [first, first + rows) of the selection.
  [[nodiscard]] MatrixView<const U> window(std::int64_t first, std::int64_t rows) const {
    return {std::as_const(device_).data() + first * cols_, rows, cols_, cols_};
  }

 private:
  Context& ctx_;
  std::vector<U> host_, picked_;
  std::int64_t cols_;
  Buffer<U> device_;
};

template <class T>
class Problem {
 public:
  virtual ~Problem() = default;
  [[nodiscard]] virtual std::int64_t parameter_count() const = 0;
  [[nodiscard]] virtual std::int64_t train_rows() const = 0;
  [[nodiscard]] virtual bool has_validation() const = 0;
  [[nodiscard]] virtual std::string describe() const = 0;
  /// describe() of the problem on a set of `train_rows` training and `validation_rows` validation
  /// rows of these widths (data parallel: the whole set's, from a problem on some of its rows).
  [[nodiscard]] virtual std::string describe_rows(std::int64_t train_rows, std::int64_t validation_rows) const = 0;
  /// bilevel_data_hash of the training and validation data (one copy to the host): the data's
  /// identity in the checkpoint fingerprint.
  [[nodiscard]] virtual std::uint64_t data_hash() = 0;
  virtual void init(VectorView<T> theta, std::uint64_t seed) = 0;
  /// Minibatches of `batch` rows (called once, before the first step): a host copy of the rows
  /// the windows draw from (the training rows, or the problem's window source) and a buffer for
  /// their shuffled copy.
  virtual void enable_minibatches(std::int64_t batch) = 0;
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

/// What a problem needs to know about its data kind: the targets as a matrix (regression: the
/// n target columns; classification: the labels, one column) and back as the policy takes them.
template <class Data>
struct DataKind;
template <class T>
struct DataKind<RegressionData<T>> {
  using Target = T;
  static MatrixView<const T> targets(const RegressionData<T>& d) { return d.y; }
  static ConstMatrix<T> argument(MatrixView<const T> m) { return m; }
};
template <class T>
struct DataKind<ClassificationData<T>> {
  using Target = std::int32_t;
  static MatrixView<const std::int32_t> targets(const ClassificationData<T>& d) {
    return {d.labels.data, d.x.rows, 1, 1};
  }
  static VectorView<const std::int32_t> argument(MatrixView<const std::int32_t> m) { return {m.data, m.rows}; }
};

/// The problem of one policy family on its data (GaussianProblem, CategoricalProblem): the inner
/// gradient on every training row or on a minibatch window (exact expectation or REINFORCE), the
/// outer gradient, the curvature and metrics. The families differ only in how they describe and
/// hash their data.
template <class T, class Policy, class Curvature, class Data>
class PolicyProblem : public Problem<T> {
  using Kind = DataKind<Data>;
  using U = typename Kind::Target;

 public:
  std::int64_t parameter_count() const override { return policy_.parameter_count(); }
  std::int64_t train_rows() const override { return train_.x.rows; }
  bool has_validation() const override { return !validation_.empty(); }
  std::string describe() const override {
    return this->describe_rows(train_.x.rows, validation_.empty() ? 0 : validation_.x.rows);
  }
  void init(VectorView<T> theta, std::uint64_t seed) override { policy_.init(theta, seed); }
  void enable_minibatches(std::int64_t /*batch*/) override {
    x_rows_.emplace(ctx_, rows_to_host<T>(ctx_, window_source_.x), window_source_.x.cols);
    const MatrixView<const U> t = Kind::targets(window_source_);
    t_rows_.emplace(ctx_, rows_to_host<U>(ctx_, packed(t)), t.cols);
  }
  void shuffle(const std::vector<std::int64_t>& order) override {
    x_rows_->select(order);
    t_rows_->select(order);
  }
  void inner_gradient(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
                      const PgOptions<T>& pg, DrawKey key, bool exact, Window window, VectorView<T> grad,
                      VectorView<T> row_reward) override {
    ConstMatrix<T> x = train_.x;
    MatrixView<const U> t = Kind::targets(train_);
    if (window.rows > 0) {
      x = x_rows_->window(window.first, window.rows);
      t = t_rows_->window(window.first, window.rows);
    }
    if (exact) {
      policy_.exact_gradient(theta, x, Kind::argument(t), reward, pg, grad, row_reward);
    } else {
      policy_.pg_gradient(theta, x, Kind::argument(t), reward, generations, pg, key, grad, row_reward);
    }
  }
  void outer_gradient(ConstVector<T> theta, bool validation, VectorView<T> grad) override {
    const Data& d = validation ? validation_ : train_;
    policy_.nll_gradient(theta, d.x, Kind::argument(Kind::targets(d)), grad);
  }
  void prepare(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
               const PgOptions<T>& pg, DrawKey key, bool exact, VectorView<T> grad) override {
    const auto t = Kind::argument(Kind::targets(train_));
    if (exact) {
      curvature_.prepare_exact(theta, train_.x, t, reward, pg, grad);
    } else {
      curvature_.prepare(theta, train_.x, t, reward, generations, pg, key, grad);
    }
  }
  LinearOperator<T> curvature() override { return curvature_.as_operator(); }
  void mixed_product(ConstVector<T> w, VectorView<T> out) override { curvature_.mixed_product(w, out); }
  PolicyMetrics evaluate(ConstVector<T> theta, bool validation) override {
    const Data& d = validation ? validation_ : train_;
    return policy_.evaluate(theta, d.x, Kind::argument(Kind::targets(d)));
  }
  std::uint64_t data_hash() override {
    return bilevel_data_hash<T>(host_x(false), host_targets(false), host_x(true), host_targets(true));
  }
  Policy& policy() { return policy_; }

 protected:
  /// `policy_args`: the policy's constructor arguments between the context and its row capacity;
  /// `window_source`: the rows minibatch windows draw from (empty: `train`).
  template <class... PolicyArgs>
  PolicyProblem(Context& ctx, Data train, Data validation, Data window_source, PolicyArgs&&... policy_args)
      : ctx_(ctx),
        policy_(ctx, std::forward<PolicyArgs>(policy_args)...,
                std::max(train.x.rows, validation.empty() ? 0 : validation.x.rows)),
        curvature_(ctx, policy_.net(), train.x.rows),
        train_(train),
        validation_(validation),
        window_source_(window_source.empty() ? train : window_source) {}
  /// The values of the training and validation inputs and targets, each on the host (empty when
  /// the set is).
  std::vector<T> host_x(bool validation) const {
    const Data& d = validation ? validation_ : train_;
    return d.empty() ? std::vector<T>{} : rows_to_host<T>(ctx_, d.x);
  }
  std::vector<U> host_targets(bool validation) const {
    const Data& d = validation ? validation_ : train_;
    return d.empty() ? std::vector<U>{} : rows_to_host<U>(ctx_, packed(Kind::targets(d)));
  }
  /// A column of labels as one row (one copy).
  static MatrixView<const U> packed(MatrixView<const U> t) {
    return t.cols == 1 && t.row_stride == 1 ? MatrixView<const U>{t.data, 1, t.rows, t.rows} : t;
  }

  Context& ctx_;
  Policy policy_;
  Curvature curvature_;
  Data train_, validation_, window_source_;
  std::optional<WindowedRows<T>> x_rows_;  // minibatches
  std::optional<WindowedRows<U>> t_rows_;
};

/// Regression: a GaussianPolicy and the curvature of its head (DiagGaussianPolicyCurvature or
/// CholeskyPolicyCurvature).
template <class T, class Curvature>
class GaussianProblem final : public PolicyProblem<T, GaussianPolicy<T>, Curvature, RegressionData<T>> {
  using Base = PolicyProblem<T, GaussianPolicy<T>, Curvature, RegressionData<T>>;

 public:
  /// `window_source`: the rows minibatch windows draw from (empty: `train`).
  GaussianProblem(Context& ctx, MlpSpec trunk, RegressionData<T> train, RegressionData<T> validation, GaussianHead head,
                  RegressionData<T> window_source = {})
      : Base(ctx, train, validation, window_source, std::move(trunk), train.y.cols, head) {}
  std::string describe_rows(std::int64_t train_rows, std::int64_t validation_rows) const override {
    return fmt::format("regression; net {}; head {}; train {}x{}->{}; val {}", this->policy_.net().describe(),
                       to_string(this->policy_.head()), train_rows, this->train_.x.cols, this->train_.y.cols,
                       validation_rows);
  }
};

/// Classification: a CategoricalPolicy and its curvature.
template <class T>
class CategoricalProblem final
    : public PolicyProblem<T, CategoricalPolicy<T>, CategoricalPolicyCurvature<T>, ClassificationData<T>> {
  using Base = PolicyProblem<T, CategoricalPolicy<T>, CategoricalPolicyCurvature<T>, ClassificationData<T>>;

 public:
  /// `window_source`: the rows minibatch windows draw from (empty: `train`).
  CategoricalProblem(Context& ctx, MlpSpec trunk, ClassificationData<T> train, ClassificationData<T> validation,
                     std::int64_t classes, ClassificationData<T> window_source = {})
      : Base(ctx, train, validation, window_source, std::move(trunk), classes) {}
  std::string describe_rows(std::int64_t train_rows, std::int64_t validation_rows) const override {
    return fmt::format("classification; net {}; train {}x{}; classes {}; val {}", this->policy_.net().describe(),
                       train_rows, this->train_.x.cols, this->policy_.classes(), validation_rows);
  }
};


/// Data parallel (DESIGN.md §10, d2r/communicator.hpp): this rank's parts of the training and
/// validation rows, each an inner problem of its own over those rows, and the sums over every
/// rank's parts of the gradients, curvature products, mixed products and metrics. Draws are keyed
/// by global row (DrawKey::first_row) and normalised by the whole set (PgOptions::normaliser_rows),
/// so the parts add up to the one-process problem. Minibatches: each window of the pass is split
/// over the ranks like a batch of its own (its rows keyed and normalised as in the one-process
/// window), and each rank uploads only its parts of the pass's windows.
template <class T>
class ShardedProblem final : public Problem<T> {
 public:
  /// make(validation_set, first, rows): an inner problem on rows [first, first + rows) of the
  /// training (or the validation) set, without validation data of its own.
  using Factory = std::function<std::unique_ptr<Problem<T>>(bool, std::int64_t, std::int64_t)>;
  /// make_window(rows): an inner problem sized for windows of up to `rows` rows whose minibatch
  /// windows draw from the whole training set (empty: no minibatches).
  using WindowFactory = std::function<std::unique_ptr<Problem<T>>(std::int64_t)>;
  /// `hash`: the whole set's data_hash().
  ShardedProblem(Context& ctx, const DataParallel& parallel, const Factory& make, WindowFactory make_window,
                 std::int64_t train_rows, std::int64_t validation_rows, std::uint64_t hash)
      : ctx_(ctx),
        parallel_(parallel),
        make_window_(std::move(make_window)),
        train_plan_(shard::plan(parallel, train_rows)),
        val_plan_(shard::plan(parallel, validation_rows)),
        hash_(hash) {
    for (const shard::Part& part : train_plan_.parts) train_.push_back(make(false, part.first, part.rows));
    for (const shard::Part& part : val_plan_.parts) val_.push_back(make(true, part.first, part.rows));
    // A rank without training rows still initialises θ (and needs the parameter count).
    proto_ = train_.empty() ? make(false, 0, 1) : nullptr;
    Problem<T>& first = proto();
    reducer_.emplace(ctx, first.parameter_count());
    description_ = first.describe_rows(train_rows, validation_rows);
  }
  Problem<T>& proto() { return proto_ != nullptr ? *proto_ : *train_.front(); }
  std::int64_t parameter_count() const override {
    return proto_ != nullptr ? proto_->parameter_count() : train_.front()->parameter_count();
  }
  std::int64_t train_rows() const override { return train_plan_.total; }
  bool has_validation() const override { return val_plan_.total > 0; }
  std::string describe() const override { return description_; }
  std::string describe_rows(std::int64_t train_rows, std::int64_t validation_rows) const override {
    return proto_ != nullptr ? proto_->describe_rows(train_rows, validation_rows)
                             : train_.front()->describe_rows(train_rows, validation_rows);
  }
  std::uint64_t data_hash() override { return hash_; }
  void init(VectorView<T> theta, std::uint64_t seed) override { proto().init(theta, seed); }
  void enable_minibatches(std::int64_t batch) override {
    batch_ = batch;
    window_plan_ = shard::plan(parallel_, batch);
    std::int64_t widest = 1;
    window_rows_ = 0;
    for (const shard::Part& part : window_plan_.parts) {
      widest = std::max(widest, part.rows);
      window_rows_ += part.rows;
    }
    window_ = make_window_(widest);
    window_->enable_minibatches(batch);
  }
  /// This rank's parts of every window of the pass, window after window, part after part.
  void shuffle(const std::vector<std::int64_t>& order) override {
    const auto windows = static_cast<std::int64_t>(order.size()) / batch_;
    std::vector<std::int64_t> mine;
    mine.reserve(static_cast<std::size_t>(windows * window_rows_));
    for (std::int64_t w = 0; w < windows; ++w) {
      for (const shard::Part& part : window_plan_.parts) {
        const auto at = order.begin() + w * batch_ + part.first;
        mine.insert(mine.end(), at, at + part.rows);
      }
    }
    window_->shuffle(mine);
  }
  void inner_gradient(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
                      const PgOptions<T>& pg, DrawKey key, bool exact, Window window, VectorView<T> grad,
                      VectorView<T> row_reward) override {
    if (window.rows > 0) {
      window_gradient(theta, reward, generations, pg, key, exact, window, grad, row_reward);
      return;
    }
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
  /// One window of `batch_` rows: each part's rows keyed by their place in the window and the
  /// gradient normalised by the window's rows, as the one-process run does.
  void window_gradient(ConstVector<T> theta, const MahalanobisReward<T>& reward, std::int64_t generations,
                       const PgOptions<T>& pg, DrawKey key, bool exact, Window window, VectorView<T> grad,
                       VectorView<T> row_reward) {
    PgOptions<T> whole = pg;
    if (whole.normaliser_rows == 0) whole.normaliser_rows = batch_;
    if (row_reward.size > 0) zero(row_reward);
    std::int64_t at = window.first / batch_ * window_rows_;  // this window's parts in the uploaded rows
    reducer_->sum(window_plan_, grad, [&](const shard::Part& part, VectorView<T> out) {
      DrawKey k = key;
      k.first_row += part.first;
      const VectorView<T> rr = row_reward.size > 0 ? VectorView<T>{row_reward.data + part.first, part.rows} : VectorView<T>{};
      window_->inner_gradient(theta, reward, generations, whole, k, exact, Window{at, part.rows}, out, rr);
      at += part.rows;
    });
    if (row_reward.size > 0) gather(row_reward);
  }
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
  DataParallel parallel_;
  WindowFactory make_window_;
  shard::Plan train_plan_, val_plan_;
  // Minibatches: rows per window, its parts on this rank, their rows per window, and the problem
  // that computes them (its selection: this rank's parts of every window of the pass).
  std::int64_t batch_ = 0, window_rows_ = 0;
  shard::Plan window_plan_;
  std::unique_ptr<Problem<T>> window_;
  std::vector<std::unique_ptr<Problem<T>>> train_, val_;
  std::unique_ptr<Problem<T>> proto_;
  std::vector<LinearOperator<T>> operators_;
  std::optional<shard::Reducer<T>> reducer_;
  std::string description_;
  std::uint64_t hash_;
};

}  // namespace bilevel_detail

}  // namespace d2r
