// The plain trainers of d2r/bilevel.hpp: fit_policy (Gaussian regression: MSE, NLL, PG with a
// fixed reward; full batch) and fit_classifier (categorical: NLL, PG; seeded minibatch epochs).
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "d2r/bilevel.hpp"
#include "d2r/data.hpp"
#include "host/src/comm/shard.hpp"
#include "host/src/trainer_common.hpp"

namespace d2r {

// The trainers' shared checks and helpers (trainer_common.hpp).
using trainer_common::check_class_data;
using trainer_common::check_classifier_fit_fields;
using trainer_common::check_data;
using trainer_common::check_inner;
using trainer_common::check_policy_fit_fields;
using trainer_common::form_name;
using trainer_common::gather_rows;
using trainer_common::mix_seed;
using trainer_common::nan_metrics;
using trainer_common::positive_entries;
using trainer_common::reward_size;
using trainer_common::rows_to_host;
using trainer_common::ChecksOff;

const char* to_string(PolicyLoss loss) noexcept {
  switch (loss) {
    case PolicyLoss::mse: return "mse";
    case PolicyLoss::nll: return "nll";
    case PolicyLoss::pg: return "pg";
  }
  return "unknown";
}


RowRange local_rows(const DataParallel& dp, std::int64_t total) {
  D2R_EXPECTS(!dp.deterministic || dp.block_rows >= 1, "local_rows", "dp.block_rows",
              "deterministic mode splits the rows in blocks of block_rows >= 1, got {}", dp.block_rows);
  if (!shard::active(dp)) return {0, total};
  const shard::Plan p = shard::plan(dp, total);
  if (p.parts.empty()) return {0, 0};
  return {p.parts.front().first, p.parts.back().first + p.parts.back().rows - p.parts.front().first};
}

// ------------------------------------------------------------------ fit_policy
template <class T>
std::vector<PolicyFitRecord> fit_policy(Context& ctx, GaussianPolicy<T>& policy, VectorView<T> params,
                                        RegressionData<T> train, RegressionData<T> validation,
                                        const PolicyFitOptions<T>& options) {
  constexpr std::string_view fn = "fit_policy";
  // Local views (DataParallel::train_rows > 0): train and validation hold only this rank's rows.
  const DataParallel& dp = options.parallel;
  const bool local = dp.train_rows > 0;
  D2R_EXPECTS(dp.train_rows >= 0 && dp.validation_rows >= 0, fn, "options.parallel",
              "train_rows and validation_rows must be >= 0, got {} and {}", dp.train_rows, dp.validation_rows);
  D2R_EXPECTS(!local || shard::active(dp), fn, "options.parallel.train_rows",
              "local views of the rows need a data-parallel communicator (several ranks or deterministic mode)");
  D2R_EXPECTS(local || dp.validation_rows == 0, fn, "options.parallel.validation_rows",
              "is {} but train_rows is 0 (local views are given for both sets or neither)", dp.validation_rows);
  const RowRange train_local = local ? local_rows(dp, dp.train_rows) : RowRange{0, train.x.rows};
  const RowRange val_local = local ? local_rows(dp, dp.validation_rows)
                                   : RowRange{0, validation.empty() ? 0 : validation.x.rows};
  if (local) {
    D2R_EXPECTS(train.x.rows == train_local.rows, fn, "train.x",
                "expected this rank's {} rows of the {} training rows (DataParallel::train_rows), got {}",
                train_local.rows, dp.train_rows, train.x.rows);
    D2R_EXPECTS((validation.empty() ? 0 : validation.x.rows) == val_local.rows, fn, "validation.x",
                "expected this rank's {} rows of the {} validation rows (DataParallel::validation_rows), got {}",
                val_local.rows, dp.validation_rows, validation.empty() ? 0 : validation.x.rows);
  }
  // A rank may hold no rows of a set (fewer blocks than ranks): its empty view is not checked.
  const bool has_validation = local ? dp.validation_rows > 0 : !validation.empty();
  if (!local || train_local.rows > 0) check_data(ctx, fn, "train", train, 1);
  D2R_EXPECTS(train.x.cols == policy.net().inputs(), fn, "train.x", "expected {} columns (the network's inputs), got {}",
              policy.net().inputs(), train.x.cols);
  D2R_EXPECTS(train.y.cols == policy.dims(), fn, "train.y", "expected {} columns (the policy's dimensions), got {}",
              policy.dims(), train.y.cols);
  D2R_EXPECTS(train.x.rows <= policy.batch_capacity(), fn, "train.x",
              "has {} rows, more than the policy's batch capacity {}", train.x.rows, policy.batch_capacity());
  if (has_validation && val_local.rows > 0) {
    check_data(ctx, fn, "validation", validation, 1);
    D2R_EXPECTS(validation.x.cols == train.x.cols && validation.y.cols == train.y.cols, fn, "validation",
                "expected {} input and {} target columns, got {} and {}", train.x.cols, train.y.cols,
                validation.x.cols, validation.y.cols);
    D2R_EXPECTS(validation.x.rows <= policy.batch_capacity(), fn, "validation.x",
                "has {} rows, more than the policy's batch capacity {}", validation.x.rows, policy.batch_capacity());
  }
  D2R_EXPECTS(params.size == policy.parameter_count(), fn, "params", "expected {} entries, got {}",
              policy.parameter_count(), params.size);
  check_policy_fit_fields(fn, options);
  shard::check(ctx, fn, "options.parallel", options.parallel, true);
  Buffer<T> reward_params;
  if (options.loss == PolicyLoss::pg) {
    D2R_EXPECTS(options.generations >= 1, fn, "options.generations", "expected G >= 1, got {}", options.generations);
    const std::int64_t S = reward_size(options.reward_form, policy.dims());
    D2R_EXPECTS(S > 0 && static_cast<std::int64_t>(options.reward_params.size()) == S, fn, "options.reward_params",
                "a {} reward on {} dimensions has {} parameters, got {}", form_name(options.reward_form),
                policy.dims(), S, options.reward_params.size());
    for (std::size_t i : positive_entries(options.reward_form, S, policy.dims())) {
      D2R_EXPECTS(options.reward_params[i] > 0 && std::isfinite(options.reward_params[i]), fn,
                  "options.reward_params", "entry {} must be finite and > 0, got {}", i, options.reward_params[i]);
    }
    objective_common::check_options(fn, options.pg, local ? dp.train_rows : train.x.rows);
    detail::check_transform(fn, options.pg.transform, options.generations);
    reward_params = Buffer<T>(ctx, std::vector<T>(options.reward_params.begin(), options.reward_params.end()));
  }

  const auto P = static_cast<std::size_t>(policy.parameter_count());
  Buffer<T> grad(ctx, P), m(ctx, P), v(ctx, P);
  Buffer<std::int64_t> count(ctx, 1);
  const AdamState<T> adam{m.vector(), v.vector(), count.vector()};
  policy.init(params, options.seed);
  adam_reset(ctx, adam);
  const MahalanobisReward<T> reward{options.reward_form, std::as_const(reward_params).vector()};
  const bool clamp = std::isfinite(static_cast<double>(options.gradient_clamp));
  std::vector<PolicyFitRecord> records;
  // Data parallel: this rank's rows of the training and validation sets (shard.hpp).
  const bool sharded = shard::active(options.parallel);
  const std::int64_t N = local ? dp.train_rows : train.x.rows;
  const std::int64_t validation_total = local ? dp.validation_rows : validation.empty() ? 0 : validation.x.rows;
  const shard::Plan train_plan = sharded ? shard::plan(options.parallel, N) : shard::Plan{};
  const shard::Plan val_plan =
      sharded && has_validation ? shard::plan(options.parallel, validation_total) : shard::Plan{};
  std::optional<shard::Reducer<T>> reducer;
  if (sharded) reducer.emplace(ctx, static_cast<std::int64_t>(P));
  // Rows `part` (global row numbers) of a view whose first row is global row `offset`.
  const auto rows_of = [](ConstMatrix<T> m, const shard::Part& part, std::int64_t offset) {
    return ConstMatrix<T>{m.data + (part.first - offset) * m.row_stride, part.rows, m.cols, m.row_stride};
  };
  const auto evaluate = [&](const RegressionData<T>& d, const shard::Plan& plan, std::int64_t offset) {
    if (!sharded) return policy.evaluate(params, d.x, d.y);
    return shard::metrics(plan, [&](const shard::Part& part) {
      return policy.evaluate(params, rows_of(d.x, part, offset), rows_of(d.y, part, offset));
    });
  };
  const auto record = [&](std::int64_t step) {
    PolicyFitRecord r;
    r.step = step;
    r.train = evaluate(train, train_plan, train_local.first);
    r.validation = has_validation ? evaluate(validation, val_plan, val_local.first) : nan_metrics();
    records.push_back(r);
    if (options.on_record) options.on_record(records.back());
  };
  // The gradient of rows `part` of the training set, as its share of the whole batch's mean:
  // PG normalises by the whole batch itself (normaliser_rows) and draws by global row.
  const auto gradient = [&](std::int64_t step, const shard::Part& part, VectorView<T> out) {
    const ConstMatrix<T> x = rows_of(train.x, part, train_local.first), y = rows_of(train.y, part, train_local.first);
    switch (options.loss) {
      case PolicyLoss::mse:
        policy.mse_gradient(params, x, y, out);
        shard::scale(ctx, static_cast<T>(static_cast<double>(part.rows) / static_cast<double>(N)), out);
        break;
      case PolicyLoss::nll:
        policy.nll_gradient(params, x, y, out);
        shard::scale(ctx, static_cast<T>(static_cast<double>(part.rows) / static_cast<double>(N)), out);
        break;
      case PolicyLoss::pg: {
        if (options.objective == InnerObjective::exact) {
          policy.exact_gradient(params, x, y, reward, options.pg, out);
          shard::scale(ctx, static_cast<T>(static_cast<double>(part.rows) / static_cast<double>(N)), out);
          break;
        }
        PgOptions<T> pg = options.pg;
        if (pg.normaliser_rows == 0) pg.normaliser_rows = N;
        policy.pg_gradient(params, x, y, reward, options.generations, pg,
                           DrawKey{.step = static_cast<std::uint64_t>(step - 1), .first_row = part.first}, out);
        break;
      }
    }
  };
  ChecksOff checks_off(ctx);
  for (std::int64_t step = 1; step <= options.steps; ++step) {
    if (sharded) {
      reducer->sum(train_plan, grad.vector(), [&](const shard::Part& part, VectorView<T> out) { gradient(step, part, out); });
    } else {
      switch (options.loss) {
        case PolicyLoss::mse: policy.mse_gradient(params, train.x, train.y, grad.vector()); break;
        case PolicyLoss::nll: policy.nll_gradient(params, train.x, train.y, grad.vector()); break;
        case PolicyLoss::pg:
          if (options.objective == InnerObjective::exact) {
            policy.exact_gradient(params, train.x, train.y, reward, options.pg, grad.vector());
          } else {
            policy.pg_gradient(params, train.x, train.y, reward, options.generations, options.pg,
                               DrawKey{.step = static_cast<std::uint64_t>(step - 1)}, grad.vector());
          }
          break;
      }
    }
    if (clamp) clamp_values(ctx, options.gradient_clamp, grad.vector());
    adam_step(ctx, options.adam, adam, params, std::as_const(grad).vector());
    if ((options.evaluate_every > 0 && step % options.evaluate_every == 0) || step == options.steps) record(step);
  }
  return records;
}

template std::vector<PolicyFitRecord> fit_policy(Context&, GaussianPolicy<float>&, VectorView<float>,
                                                 RegressionData<float>, RegressionData<float>,
                                                 const PolicyFitOptions<float>&);
template std::vector<PolicyFitRecord> fit_policy(Context&, GaussianPolicy<double>&, VectorView<double>,
                                                 RegressionData<double>, RegressionData<double>,
                                                 const PolicyFitOptions<double>&);

// ------------------------------------------------------------------ fit_classifier

std::int64_t classifier_rows_held(const DataParallel& parallel, std::int64_t rows, std::int64_t batch_size) {
  constexpr std::string_view fn = "classifier_rows_held";
  D2R_EXPECTS(rows >= 0, fn, "rows", "expected >= 0, got {}", rows);
  D2R_EXPECTS(batch_size >= 0, fn, "batch_size", "expected >= 0 (0: full batch), got {}", batch_size);
  D2R_EXPECTS(!parallel.deterministic || parallel.block_rows >= 1, fn, "parallel.block_rows",
              "deterministic mode splits the rows in blocks of block_rows >= 1, got {}", parallel.block_rows);
  if (rows == 0) return 0;
  const std::int64_t batch = batch_size == 0 ? rows : std::min(batch_size, rows);
  std::int64_t epoch = 0;
  for (std::int64_t first = 0; first < rows; first += batch) epoch += local_rows(parallel, std::min(batch, rows - first)).rows;
  return std::max(epoch, local_rows(parallel, rows).rows);
}

namespace {

// The training rows of fit_classifier: a backend view (copied to the host once) or host spans.
template <class T>
struct ClassTrain {
  const ClassificationData<T>* device = nullptr;
  const HostClassificationData<T>* host = nullptr;
};

template <class T>
void check_host_class_data(std::string_view fn, const HostClassificationData<T>& d, std::int64_t classes) {
  D2R_EXPECTS(d.rows >= 1, fn, "train.rows", "expected >= 1, got {}", d.rows);
  D2R_EXPECTS(d.cols >= 1, fn, "train.cols", "expected >= 1, got {}", d.cols);
  D2R_EXPECTS(d.rows <= std::numeric_limits<std::int64_t>::max() / d.cols, fn, "train.rows",
              "{} rows of {} columns overflow", d.rows, d.cols);
  D2R_EXPECTS(static_cast<std::int64_t>(d.x.size()) == d.rows * d.cols, fn, "train.x",
              "expected {} values (train.rows {} x train.cols {}), got {}", d.rows * d.cols, d.rows, d.cols, d.x.size());
  D2R_EXPECTS(static_cast<std::int64_t>(d.labels.size()) == d.rows, fn, "train.labels",
              "expected {} labels (train.rows), got {}", d.rows, d.labels.size());
  for (std::size_t i = 0; i < d.x.size(); ++i) {
    D2R_EXPECTS(std::isfinite(static_cast<double>(d.x[i])), fn, "train.x", "row {} column {} is not finite",
                static_cast<std::int64_t>(i) / d.cols, static_cast<std::int64_t>(i) % d.cols);
  }
  for (std::size_t i = 0; i < d.labels.size(); ++i) {
    D2R_EXPECTS(d.labels[i] >= 0 && d.labels[i] < classes, fn, "train.labels", "entry {} is {}, not a class in [0, {})",
                i, d.labels[i], classes);
  }
}

template <class T>
std::vector<PolicyFitRecord> fit_classifier_rows(Context& ctx, CategoricalPolicy<T>& policy, VectorView<T> params,
                                                 ClassTrain<T> src, ClassificationData<T> validation,
                                                 const ClassifierFitOptions<T>& options) {
  constexpr std::string_view fn = "fit_classifier";
  const std::int64_t C = policy.classes();
  if (src.device != nullptr) {
    check_class_data(ctx, fn, "train", *src.device, C, 1);
  } else {
    check_host_class_data(fn, *src.host, C);
  }
  const std::int64_t N = src.device != nullptr ? src.device->x.rows : src.host->rows;
  const std::int64_t p = src.device != nullptr ? src.device->x.cols : src.host->cols;
  D2R_EXPECTS(p == policy.net().inputs(), fn, src.device != nullptr ? "train.x" : "train.cols",
              "expected {} columns (the network's inputs), got {}", policy.net().inputs(), p);
  // options.parallel.validation_rows > 0: `validation` holds this rank's rows of the set.
  const DataParallel& dp = options.parallel;
  D2R_EXPECTS(dp.train_rows == 0, fn, "options.parallel.train_rows",
              "expected 0: fit_classifier takes every training row (each epoch shuffles all of them), got {}",
              dp.train_rows);
  D2R_EXPECTS(dp.validation_rows >= 0, fn, "options.parallel.validation_rows", "expected >= 0, got {}",
              dp.validation_rows);
  const bool local_validation = dp.validation_rows > 0;
  D2R_EXPECTS(!local_validation || shard::active(dp), fn, "options.parallel.validation_rows",
              "views of this rank's rows need a data-parallel communicator (several ranks or deterministic mode)");
  const std::int64_t validation_total = local_validation ? dp.validation_rows : validation.empty() ? 0 : validation.x.rows;
  if (local_validation) {
    const std::int64_t want = local_rows(dp, dp.validation_rows).rows;
    D2R_EXPECTS((validation.empty() ? 0 : validation.x.rows) == want, fn, "validation.x",
                "expected this rank's {} rows of the {} validation rows (DataParallel::validation_rows), got {}", want,
                dp.validation_rows, validation.empty() ? 0 : validation.x.rows);
  }
  if (local_validation ? !validation.empty() && validation.x.rows > 0 : !validation.empty()) {
    check_class_data(ctx, fn, "validation", validation, C, 1);
    D2R_EXPECTS(validation.x.cols == p, fn, "validation.x", "expected {} columns, got {}", p, validation.x.cols);
    D2R_EXPECTS(validation.x.rows <= policy.batch_capacity(), fn, "validation.x",
                "has {} rows, more than the policy's batch capacity {}", validation.x.rows, policy.batch_capacity());
  }
  if (src.device != nullptr) {
    D2R_EXPECTS(N <= policy.batch_capacity(), fn, "train.x", "has {} rows, more than the policy's batch capacity {}",
                N, policy.batch_capacity());
  }
  D2R_EXPECTS(params.size == policy.parameter_count(), fn, "params", "expected {} entries, got {}",
              policy.parameter_count(), params.size);
  check_classifier_fit_fields(fn, options);
  shard::check(ctx, fn, "options.parallel", options.parallel, true);
  // Host rows: the device holds (and a policy call sees) at most `held` training rows.
  const std::int64_t held = src.device != nullptr ? N : classifier_rows_held(dp, N, options.batch_size);
  if (src.device == nullptr) {
    D2R_EXPECTS(held <= policy.batch_capacity(), fn, "train.rows",
                "this rank computes on {} of its {} rows, more than the policy's batch capacity {}", held, N,
                policy.batch_capacity());
  }
  const std::int64_t batch = options.batch_size == 0 ? N : std::min(options.batch_size, N);
  const std::int64_t batches_per_epoch = (N + batch - 1) / batch;
  D2R_EXPECTS(options.epochs <= (std::int64_t{1} << 32) / batches_per_epoch, fn, "options.epochs",
              "{} epochs of {} batches exceed the 2^32 Philox steps", options.epochs, batches_per_epoch);
  Buffer<T> reward_params;
  if (options.loss == PolicyLoss::pg) {
    D2R_EXPECTS(options.generations >= 1, fn, "options.generations", "expected G >= 1, got {}", options.generations);
    D2R_EXPECTS(options.reward_form != RewardForm::full || C <= 256, fn, "options.reward_form",
                "a full one-hot reward supports C <= 256, got {}", C);
    const std::int64_t S = reward_size(options.reward_form, C);
    D2R_EXPECTS(S > 0 && static_cast<std::int64_t>(options.reward_params.size()) == S, fn, "options.reward_params",
                "a {} one-hot reward on {} classes has {} parameters, got {}", form_name(options.reward_form), C, S,
                options.reward_params.size());
    for (std::size_t i = 0; i < options.reward_params.size(); ++i) {
      D2R_EXPECTS(std::isfinite(options.reward_params[i]), fn, "options.reward_params", "entry {} is not finite", i);
    }
    for (std::size_t i : positive_entries(options.reward_form, S, C)) {
      D2R_EXPECTS(options.reward_params[i] > 0, fn, "options.reward_params", "entry {} must be > 0, got {}", i,
                  options.reward_params[i]);
    }
    objective_common::check_options(fn, options.pg, batch);
    detail::check_transform(fn, options.pg.transform, options.generations);
    reward_params = Buffer<T>(ctx, std::vector<T>(options.reward_params.begin(), options.reward_params.end()));
  }

  // Host copies of the training rows, re-uploaded in a new order every epoch (data parallel: only
  // this rank's parts of every batch of the epoch, batch after batch, part after part).
  // Host rows: the spans as given, and the device buffers sized once for every use.
  std::vector<T> x_copy;
  std::vector<std::int32_t> y_copy;
  std::span<const T> x_host;
  std::span<const std::int32_t> y_host;
  Buffer<T> x_epoch;
  Buffer<std::int32_t> y_epoch;
  if (src.device != nullptr) {
    x_copy = rows_to_host<T>(ctx, src.device->x);
    y_copy = rows_to_host<std::int32_t>(ctx, MatrixView<const std::int32_t>{src.device->labels.data, 1, N, N});
    x_host = x_copy;
    y_host = y_copy;
  } else {
    x_host = src.host->x;
    y_host = src.host->labels;
    x_epoch = Buffer<T>(ctx, static_cast<std::size_t>(held * p));
    y_epoch = Buffer<std::int32_t>(ctx, static_cast<std::size_t>(held));
  }
  std::vector<T> x_perm;
  std::vector<std::int32_t> y_perm;

  const auto P = static_cast<std::size_t>(policy.parameter_count());
  Buffer<T> grad(ctx, P), m(ctx, P), v(ctx, P);
  Buffer<std::int64_t> count(ctx, 1);
  const AdamState<T> adam{m.vector(), v.vector(), count.vector()};
  policy.init(params, options.seed);
  adam_reset(ctx, adam);
  const MahalanobisReward<T> reward{options.reward_form, std::as_const(reward_params).vector()};
  const bool clamp = std::isfinite(static_cast<double>(options.gradient_clamp));
  std::vector<PolicyFitRecord> records;
  const bool sharded = shard::active(options.parallel);
  std::optional<shard::Reducer<T>> reducer;
  if (sharded) reducer.emplace(ctx, static_cast<std::int64_t>(P));
  const auto evaluate = [&](const ClassificationData<T>& d) {
    if (!sharded) return policy.evaluate(params, d.x, d.labels);
    return shard::metrics(shard::plan(options.parallel, d.x.rows), [&](const shard::Part& part) {
      return policy.evaluate(params, MatrixView<const T>{d.x.data + part.first * d.x.row_stride, part.rows, p, d.x.row_stride},
                             VectorView<const std::int32_t>{d.labels.data + part.first, part.rows});
    });
  };
  // The training metrics: a backend view as `evaluate`; host rows: this rank's rows of the set, in
  // their order, uploaded into the epoch's buffer (its batches are done) and evaluated by parts.
  const auto evaluate_train = [&]() -> PolicyMetrics {
    if (src.device != nullptr) return evaluate(*src.device);
    const RowRange mine = local_rows(dp, N);
    if (mine.rows > 0) {
      x_epoch.copy_from_host(x_host.subspan(static_cast<std::size_t>(mine.first * p), static_cast<std::size_t>(mine.rows * p)));
      y_epoch.copy_from_host(y_host.subspan(static_cast<std::size_t>(mine.first), static_cast<std::size_t>(mine.rows)));
    }
    const ClassificationData<T> local{MatrixView<const T>{x_epoch.data(), mine.rows, p, p},
                                      VectorView<const std::int32_t>{y_epoch.data(), mine.rows}};
    if (!sharded) return policy.evaluate(params, local.x, local.labels);
    return shard::metrics(shard::plan(dp, N), [&](const shard::Part& part) {
      const std::int64_t at = part.first - mine.first;
      return policy.evaluate(params, MatrixView<const T>{x_epoch.data() + at * p, part.rows, p, p},
                             VectorView<const std::int32_t>{y_epoch.data() + at, part.rows});
    });
  };
  ChecksOff checks_off(ctx);
  std::uint64_t step = 0;
  for (std::int64_t epoch = 1; epoch <= options.epochs; ++epoch) {
    std::vector<std::int64_t> order = random_permutation(N, mix_seed(options.seed, static_cast<std::uint64_t>(epoch)));
    if (sharded) {
      std::vector<std::int64_t> mine;
      for (std::int64_t first = 0; first < N; first += batch) {
        for (const shard::Part& part : shard::plan(options.parallel, std::min(batch, N - first)).parts) {
          const auto at = order.begin() + first + part.first;
          mine.insert(mine.end(), at, at + part.rows);
        }
      }
      order = std::move(mine);
    }
    x_perm.resize(order.size() * static_cast<std::size_t>(p));
    y_perm.resize(order.size());
    gather_rows(x_host, p, order, x_perm);
    gather_rows(y_host, 1, order, y_perm);
    if (x_epoch.size() < x_perm.size()) x_epoch = Buffer<T>(ctx, x_perm.size());
    if (y_epoch.size() < y_perm.size()) y_epoch = Buffer<std::int32_t>(ctx, y_perm.size());
    if (!order.empty()) {
      x_epoch.copy_from_host(x_perm);
      y_epoch.copy_from_host(y_perm);
    }
    std::int64_t local_at = 0;  // data parallel: this batch's parts in the uploaded rows
    for (std::int64_t first = 0; first < N; first += batch) {
      const std::int64_t rows = std::min(batch, N - first);
      // One process: the batch's rows of the epoch's copy (sharded: not read, at 0).
      const std::int64_t at = sharded ? 0 : first;
      const MatrixView<const T> xb{x_epoch.data() + at * p, rows, p, p};
      const VectorView<const std::int32_t> yb{y_epoch.data() + at, rows};
      if (sharded) {
        // This rank's rows of the batch (shard.hpp): draws keyed by the row's index in the batch.
        reducer->sum(shard::plan(options.parallel, rows), grad.vector(), [&](const shard::Part& part, VectorView<T> out) {
          const MatrixView<const T> xp{x_epoch.data() + local_at * p, part.rows, p, p};
          const VectorView<const std::int32_t> yp{y_epoch.data() + local_at, part.rows};
          local_at += part.rows;
          if (options.loss == PolicyLoss::nll || options.objective == InnerObjective::exact) {
            if (options.loss == PolicyLoss::nll) {
              policy.nll_gradient(params, xp, yp, out);
            } else {
              policy.exact_gradient(params, xp, yp, reward, options.pg, out);
            }
            shard::scale(ctx, static_cast<T>(static_cast<double>(part.rows) / static_cast<double>(rows)), out);
          } else {
            PgOptions<T> pg = options.pg;
            if (pg.normaliser_rows == 0) pg.normaliser_rows = rows;
            policy.pg_gradient(params, xp, yp, reward, options.generations, pg,
                               DrawKey{.step = step, .first_row = part.first}, out);
          }
        });
      } else if (options.loss == PolicyLoss::nll) {
        policy.nll_gradient(params, xb, yb, grad.vector());
      } else if (options.objective == InnerObjective::exact) {
        policy.exact_gradient(params, xb, yb, reward, options.pg, grad.vector());
      } else {
        policy.pg_gradient(params, xb, yb, reward, options.generations, options.pg, DrawKey{.step = step},
                           grad.vector());
      }
      ++step;
      if (clamp) clamp_values(ctx, options.gradient_clamp, grad.vector());
      adam_step(ctx, options.adam, adam, params, std::as_const(grad).vector());
    }
    PolicyFitRecord rec;
    rec.step = epoch;
    rec.train = evaluate_train();
    rec.validation = validation_total == 0 ? nan_metrics()
                     : local_validation ? evaluate_sharded(ctx, policy, ConstVector<T>(params), validation,
                                                           validation_total, dp)
                                        : evaluate(validation);
    records.push_back(rec);
    if (options.on_record) options.on_record(records.back());
  }
  return records;
}

}  // namespace

template <class T>
std::vector<PolicyFitRecord> fit_classifier(Context& ctx, CategoricalPolicy<T>& policy, VectorView<T> params,
                                            ClassificationData<T> train, ClassificationData<T> validation,
                                            const ClassifierFitOptions<T>& options) {
  return fit_classifier_rows<T>(ctx, policy, params, ClassTrain<T>{.device = &train}, validation, options);
}

template <class T>
std::vector<PolicyFitRecord> fit_classifier(Context& ctx, CategoricalPolicy<T>& policy, VectorView<T> params,
                                            HostClassificationData<T> train, ClassificationData<T> validation,
                                            const ClassifierFitOptions<T>& options) {
  return fit_classifier_rows<T>(ctx, policy, params, ClassTrain<T>{.host = &train}, validation, options);
}

template std::vector<PolicyFitRecord> fit_classifier(Context&, CategoricalPolicy<float>&, VectorView<float>,
                                                     HostClassificationData<float>, ClassificationData<float>,
                                                     const ClassifierFitOptions<float>&);
template std::vector<PolicyFitRecord> fit_classifier(Context&, CategoricalPolicy<double>&, VectorView<double>,
                                                     HostClassificationData<double>, ClassificationData<double>,
                                                     const ClassifierFitOptions<double>&);
template std::vector<PolicyFitRecord> fit_classifier(Context&, CategoricalPolicy<float>&, VectorView<float>,
                                                     ClassificationData<float>, ClassificationData<float>,
                                                     const ClassifierFitOptions<float>&);
template std::vector<PolicyFitRecord> fit_classifier(Context&, CategoricalPolicy<double>&, VectorView<double>,
                                                     ClassificationData<double>, ClassificationData<double>,
                                                     const ClassifierFitOptions<double>&);

template <class T>
PolicyMetrics evaluate_sharded(Context& ctx, CategoricalPolicy<T>& policy, ConstVector<T> params,
                               ClassificationData<T> data, std::int64_t rows, const DataParallel& parallel) {
  constexpr std::string_view fn = "evaluate_sharded";
  shard::check(ctx, fn, "parallel", parallel, true);  // its row counts are ignored: `rows` is the set's
  D2R_EXPECTS(rows >= 1, fn, "rows", "expected the set's rows >= 1, got {}", rows);
  const RowRange mine = local_rows(parallel, rows);
  const std::int64_t held = data.empty() ? 0 : data.x.rows;
  D2R_EXPECTS(held == mine.rows, fn, "data.x", "expected this rank's {} rows of the {} rows (local_rows), got {}",
              mine.rows, rows, held);
  D2R_EXPECTS(params.size == policy.parameter_count(), fn, "params", "expected {} entries, got {}",
              policy.parameter_count(), params.size);
  if (held > 0) {
    check_class_data(ctx, fn, "data", data, policy.classes(), 1);
    D2R_EXPECTS(data.x.cols == policy.net().inputs(), fn, "data.x", "expected {} columns (the network's inputs), got {}",
                policy.net().inputs(), data.x.cols);
  }
  if (!shard::active(parallel)) return policy.evaluate(params, data.x, data.labels);
  // Each part evaluated on its rows of the rank's view (whose first row is row mine.first).
  return shard::metrics(shard::plan(parallel, rows), [&](const shard::Part& part) {
    const std::int64_t at = part.first - mine.first;
    return policy.evaluate(params, MatrixView<const T>{data.x.data + at * data.x.row_stride, part.rows, data.x.cols,
                                                       data.x.row_stride},
                           VectorView<const std::int32_t>{data.labels.data + at, part.rows});
  });
}
template PolicyMetrics evaluate_sharded(Context&, CategoricalPolicy<float>&, ConstVector<float>,
                                        ClassificationData<float>, std::int64_t, const DataParallel&);
template PolicyMetrics evaluate_sharded(Context&, CategoricalPolicy<double>&, ConstVector<double>,
                                        ClassificationData<double>, std::int64_t, const DataParallel&);

template <class T>
void check(const InnerOptions<T>& options) {
  check_inner("d2r::check(InnerOptions)", options);
}
template <class T>
void check(const PolicyFitOptions<T>& options) {
  check_policy_fit_fields("d2r::check(PolicyFitOptions)", options);
}
template <class T>
void check(const ClassifierFitOptions<T>& options) {
  check_classifier_fit_fields("d2r::check(ClassifierFitOptions)", options);
}
template void check(const InnerOptions<float>&);
template void check(const InnerOptions<double>&);
template void check(const PolicyFitOptions<float>&);
template void check(const PolicyFitOptions<double>&);
template void check(const ClassifierFitOptions<float>&);
template void check(const ClassifierFitOptions<double>&);

}  // namespace d2r
