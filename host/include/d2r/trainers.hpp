#pragma once
/// @file trainers.hpp
/// The plain trainers the bilevel method is compared with (DESIGN.md §7): fit_policy trains a
/// Gaussian regression policy by full-batch Adam on MSE, NLL or the REINFORCE surrogate with a
/// fixed reward; fit_classifier trains a categorical policy by minibatch Adam on cross-entropy or
/// the surrogate. Also the data views both these and BilevelTrainer (bilevel.hpp) take.
///
/// @code
///   d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 7});
///   d2r::GaussianPolicy<double> policy(ctx, {.inputs = 2, .hidden = {64, 64}}, 2, d2r::GaussianHead::diagonal, N);
///   std::vector<double> theta(static_cast<std::size_t>(policy.parameter_count()));
///   auto records = d2r::fit_policy(ctx, policy, d2r::VectorView<double>{theta.data(), std::ssize(theta)}, {x, y}, {},
///                                  {.loss = d2r::PolicyLoss::nll});
/// @endcode
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "d2r/communicator.hpp"
#include "d2r/context.hpp"
#include "d2r/fields.hpp"
#include "d2r/objectives.hpp"
#include "d2r/optim.hpp"
#include "d2r/policy_model.hpp"
#include "d2r/view.hpp"

namespace d2r {

/// Inputs and targets of a regression data set, in the context's memory space: x is N x p,
/// y is N x n (row strides allowed). An empty RegressionData (both views empty) means "none".
template <class T>
struct RegressionData {
  MatrixView<const T> x{};
  MatrixView<const T> y{};
  [[nodiscard]] bool empty() const { return x.data == nullptr && y.data == nullptr; }
};

/// Inputs and class labels of a classification data set, in the context's memory space: x is
/// N x p, labels has N int32 entries in [0, classes). Empty (both views empty) means "none".
template <class T>
struct ClassificationData {
  MatrixView<const T> x{};
  VectorView<const std::int32_t> labels{};
  [[nodiscard]] bool empty() const { return x.data == nullptr && labels.data == nullptr; }
};

/// What fit_policy minimises.
enum class PolicyLoss {
  mse,  ///< (1/B) Σ ‖μ − y‖² (only the mean is trained)
  nll,  ///< −(1/B) Σ log p(y | x) (maximum likelihood)
  pg,   ///< the REINFORCE surrogate with a fixed reward (PgFitOptions::reward)
};

/// One evaluation during fit_policy.
struct PolicyFitRecord {
  std::int64_t step = 0;
  PolicyMetrics train;
  PolicyMetrics validation;  ///< NaN fields when there is no validation data
};

/// Which gradient the inner steps follow (BilevelOptions::inner, and the plain trainers' pg loss).
enum class InnerObjective {
  reinforce,  ///< the REINFORCE surrogate on G samples per row (the method; the default)
  exact,      ///< the exact-expectation objective (closed forms; deterministic, for checks and ablations)
};

namespace trainers_detail {
/// The fields both plain trainers' options have, in their declaration order (after the loss and
/// the step count): one list for both for_each_field visitors.
template <class O, class F>
void for_each_shared_field(const O& o, F& f) {
  f("adam", o.adam);
  f("gradient_clamp", o.gradient_clamp);
  f("generations", o.generations);
  f("pg", o.pg);
  f("reward_form", o.reward_form);
  f("reward_params", o.reward_params);
  f("seed", o.seed);
}
}  // namespace trainers_detail

/// Options of fit_policy.
template <class T>
struct PolicyFitOptions {
  PolicyLoss loss = PolicyLoss::nll;
  std::int64_t steps = 100;                   ///< full-batch Adam steps >= 1
  AdamOptions<T> adam{.learning_rate = T(1e-3)};
  T gradient_clamp = std::numeric_limits<T>::infinity();  ///< element-wise clamp c > 0 (+inf: off)
  std::int64_t generations = 5;               ///< G (pg)
  PgOptions<T> pg{.entropy_weight = T(1)};    ///< λ, transform (pg)
  RewardForm reward_form = RewardForm::scalar;  ///< reward of pg
  std::vector<double> reward_params{1.0};     ///< its parameters (pg)
  std::uint64_t seed = 0;                     ///< initialisation of θ
  std::int64_t evaluate_every = 0;            ///< > 0: record metrics every this many steps (and at the end)
  /// pg: the REINFORCE surrogate on G samples per row, or its exact expectation (deterministic;
  /// the recommended bilevel preset's inner gradient, so `d2r sweep` can train the same learner).
  InnerObjective objective = InnerObjective::reinforce;
  /// Called with each record as it is made (progress reporting); may be empty.
  std::function<void(const PolicyFitRecord&)> on_record{};
  /// Data parallel (d2r/communicator.hpp): every rank passes the same data and options; each
  /// computes on its rows, gradients and metrics are summed over the ranks. Not a setting of the
  /// results (the deterministic mode changes them at the rounding level only).
  DataParallel parallel{};
};

/// Calls f(name, value) for every field of `o` but the on_record hook and `parallel` (fields.hpp).
template <class T, class F>
void for_each_field(const PolicyFitOptions<T>& o, F&& f) {
  f("loss", o.loss);
  f("steps", o.steps);
  trainers_detail::for_each_shared_field(o, f);
  f("evaluate_every", o.evaluate_every);
  f("objective", o.objective);
}


/// Checks every field of `options` on its own (ranges, known enum values, the Adam settings); what
/// depends on the data and the policy (the reward's size, the transform against G and the rows)
/// is checked by fit_policy, which calls this first. A program can check a user's settings before
/// it reads any data.
/// @throws d2r::Error (invalid_argument) naming the field, as in "options.adam"
template <class T>
void check(const PolicyFitOptions<T>& options);

/// Trains `params` (initialised from options.seed) by full-batch Adam on the chosen loss; returns
/// the evaluation records (at least the final one). `policy` gives the network and head.
/// @throws d2r::Error naming the argument for bad data or options, before any work
template <class T>
std::vector<PolicyFitRecord> fit_policy(Context& ctx, GaussianPolicy<T>& policy, VectorView<T> params,
                                        RegressionData<T> train, RegressionData<T> validation,
                                        const PolicyFitOptions<T>& options);

/// Options of fit_classifier (defaults: the paper's tabular setting, PAPER.md Tables 1–2).
template <class T>
struct ClassifierFitOptions {
  PolicyLoss loss = PolicyLoss::nll;          ///< nll (cross-entropy) or pg (mse is rejected)
  std::int64_t epochs = 30;                   ///< passes over the training data >= 1
  std::int64_t batch_size = 128;              ///< rows per Adam step (0 or >= N: full batch)
  AdamOptions<T> adam{.learning_rate = T(0.05)};
  T gradient_clamp = std::numeric_limits<T>::infinity();  ///< element-wise clamp c > 0 (+inf: off)
  std::int64_t generations = 50;              ///< G (pg)
  PgOptions<T> pg{.entropy_weight = T(1)};    ///< λ, transform (pg)
  RewardForm reward_form = RewardForm::scalar;  ///< one-hot reward of pg
  std::vector<double> reward_params{1.0};     ///< its parameters (pg; scalar: {β})
  std::uint64_t seed = 0;                     ///< initialisation of θ and the epoch shuffles
  InnerObjective objective = InnerObjective::reinforce;  ///< pg: REINFORCE on G samples or its exact expectation
  /// Called with each epoch's record as it is made (progress reporting); may be empty.
  std::function<void(const PolicyFitRecord&)> on_record{};
  /// Data parallel as PolicyFitOptions::parallel: every batch's rows are split over the ranks.
  DataParallel parallel{};
};

/// Calls f(name, value) for every field of `o` but the on_record hook and `parallel` (fields.hpp).
template <class T, class F>
void for_each_field(const ClassifierFitOptions<T>& o, F&& f) {
  f("loss", o.loss);
  f("epochs", o.epochs);
  f("batch_size", o.batch_size);
  trainers_detail::for_each_shared_field(o, f);
  f("objective", o.objective);
}

/// Checks every field of `options` on its own, as check(PolicyFitOptions); fit_classifier calls it
/// first. @throws d2r::Error (invalid_argument) naming the field, as in "options.epochs"
template <class T>
void check(const ClassifierFitOptions<T>& options);

/// Trains a classification policy by minibatch Adam: every epoch the training rows are shuffled
/// (random_permutation keyed by (seed, epoch), the same on both backends), uploaded once in that
/// order, and cut into contiguous batches; the last batch of an epoch may be smaller. Returns one
/// record per epoch (train and, when given, validation cross-entropy and accuracy). Data
/// parallel: `train` holds every row (each epoch's shuffle draws from all of them; a host copy
/// is taken once and each rank uploads only its parts of the epoch's batches);
/// options.parallel.validation_rows > 0: `validation` holds only this rank's rows of it
/// (evaluate_sharded).
/// @throws d2r::Error naming the argument for bad data or options, before any work
template <class T>
std::vector<PolicyFitRecord> fit_classifier(Context& ctx, CategoricalPolicy<T>& policy, VectorView<T> params,
                                            ClassificationData<T> train, ClassificationData<T> validation,
                                            const ClassifierFitOptions<T>& options);

/// The metrics of `policy` at `params` on a set of `rows` rows of which this rank holds rows
/// local_rows(parallel, rows) as `data` (an empty view when it holds none): each rank evaluates
/// its parts, and the sums of the metrics over the rows are reduced over the ranks (in block
/// order in deterministic mode, so the value does not depend on the rank count) and divided by
/// `rows`. Without a data-parallel communicator: policy.evaluate on every row (`data`).
/// @throws d2r::Error naming the argument for views of another size or bad data
template <class T>
PolicyMetrics evaluate_sharded(Context& ctx, CategoricalPolicy<T>& policy, ConstVector<T> params,
                               ClassificationData<T> data, std::int64_t rows, const DataParallel& parallel);

const char* to_string(PolicyLoss loss) noexcept;
const char* to_string(InnerObjective objective) noexcept;

}  // namespace d2r
