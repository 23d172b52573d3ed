#pragma once
// Checks and small helpers shared by the trainers (bilevel.cpp: BilevelTrainer; policy_fit.cpp:
// fit_policy, fit_classifier): option and data validation that must run before any work, reward
// layouts, seeds, and host/backend copies.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "d2r/bilevel.hpp"
#include "d2r/buffer.hpp"
#include "d2r/error.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"

namespace d2r::trainer_common {

using objective_common::ChecksOff;

/// SplitMix64 finaliser: decorrelates the per-outer-step initialisation seeds.
inline std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t k) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (k + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Seed of the permutation of minibatch pass `pass` (>= 1) of BilevelTrainer: keyed by (seed,
/// pass) like fit_classifier's epochs, in a part of mix_seed's index space (top bit set) that the
/// per-outer-step initialisation seeds mix_seed(seed, k) never reach.
inline std::uint64_t pass_seed(std::uint64_t seed, std::uint64_t pass) {
  return mix_seed(seed, pass | (std::uint64_t{1} << 63));
}

/// dst row r = src row order[r], for packed host rows of `width` values (dst sized like src).
template <class U>
void gather_rows(std::span<const std::type_identity_t<U>> src, std::int64_t width,
                 const std::vector<std::int64_t>& order, std::vector<U>& dst) {
  for (std::size_t r = 0; r < order.size(); ++r) {
    const std::int64_t from = order[r];
    std::copy(src.begin() + from * width, src.begin() + (from + 1) * width,
              dst.begin() + static_cast<std::int64_t>(r) * width);
  }
}

inline const char* form_name(RewardForm form) {
  switch (form) {
    case RewardForm::scalar: return "scalar";
    case RewardForm::diagonal: return "diagonal";
    case RewardForm::full: return "full";
  }
  return "unknown";
}

inline bool finite_positive(double v) { return v > 0 && !std::isnan(v); }

inline std::int64_t reward_size(RewardForm form, std::int64_t n) {
  switch (form) {
    case RewardForm::scalar: return 1;
    case RewardForm::diagonal: return n;
    case RewardForm::full: return n * (n + 1) / 2;
  }
  return -1;
}

/// Indices of φ that must stay positive (and are floored): all for scalar/diagonal, R_ii for full.
inline std::vector<std::size_t> positive_entries(RewardForm form, std::int64_t size, std::int64_t n) {
  std::vector<std::size_t> idx;
  if (form == RewardForm::full) {
    for (std::int64_t i = 0; i < n; ++i) idx.push_back(static_cast<std::size_t>(i * (i + 1) / 2 + i));
  } else {
    for (std::int64_t i = 0; i < size; ++i) idx.push_back(static_cast<std::size_t>(i));
  }
  return idx;
}

template <class T>
void check_adam(std::string_view fn, std::string_view name, const AdamOptions<T>& a) {
  D2R_EXPECTS(std::isfinite(static_cast<double>(a.learning_rate)) && a.learning_rate > 0, fn, name,
              "learning_rate must be finite and > 0, got {}", a.learning_rate);
  D2R_EXPECTS(a.beta1 >= 0 && a.beta1 < 1, fn, name, "beta1 must be in [0, 1), got {}", a.beta1);
  D2R_EXPECTS(a.beta2 >= 0 && a.beta2 < 1, fn, name, "beta2 must be in [0, 1), got {}", a.beta2);
  D2R_EXPECTS(std::isfinite(static_cast<double>(a.epsilon)) && a.epsilon > 0, fn, name,
              "epsilon must be finite and > 0, got {}", a.epsilon);
  D2R_EXPECTS(std::isfinite(static_cast<double>(a.weight_decay)) && a.weight_decay >= 0, fn, name,
              "weight_decay must be finite and >= 0, got {}", a.weight_decay);
}

/// Shapes, memory space and finiteness of a data set (finiteness always, whatever the context's
/// value-check setting: bad data must fail before any work).
template <class T>
void check_data(Context& ctx, std::string_view fn, std::string_view name, const RegressionData<T>& d,
                std::int64_t min_rows) {
  const std::string xs = fmt::format("{}.x", name), ys = fmt::format("{}.y", name);
  D2R_EXPECTS(d.x.data != nullptr && d.x.rows >= min_rows && d.x.cols >= 1, fn, xs,
              "expected at least {} rows and 1 column, got {} x {}", min_rows, d.x.rows, d.x.cols);
  D2R_EXPECTS(d.y.data != nullptr && d.y.cols >= 1, fn, ys, "expected at least 1 target column, got {} x {}",
              d.y.rows, d.y.cols);
  D2R_EXPECTS(d.y.rows == d.x.rows, fn, ys, "expected {} rows (those of {}), got {}", d.x.rows, xs, d.y.rows);
  detail::check_matrix(ctx, fn, detail::MatrixArg(xs, d.x), d.x.rows, d.x.cols);
  detail::check_matrix(ctx, fn, detail::MatrixArg(ys, d.y), d.y.rows, d.y.cols);
  const ValueChecks saved = ctx.value_checks();
  ctx.set_value_checks(ValueChecks::full);
  try {
    detail::check_values<T>(ctx, fn, xs, d.x, detail::ValueRule::finite);
    detail::check_values<T>(ctx, fn, ys, d.y, detail::ValueRule::finite);
  } catch (...) {
    ctx.set_value_checks(saved);
    throw;
  }
  ctx.set_value_checks(saved);
}

/// Shapes, memory space, finiteness of x and the label range of a classification data set.
template <class T>
void check_class_data(Context& ctx, std::string_view fn, std::string_view name, const ClassificationData<T>& d,
                      std::int64_t classes, std::int64_t min_rows) {
  const std::string xs = fmt::format("{}.x", name), ls = fmt::format("{}.labels", name);
  D2R_EXPECTS(d.x.data != nullptr && d.x.rows >= min_rows && d.x.cols >= 1, fn, xs,
              "expected at least {} rows and 1 column, got {} x {}", min_rows, d.x.rows, d.x.cols);
  D2R_EXPECTS(d.labels.data != nullptr && d.labels.size == d.x.rows, fn, ls, "expected {} labels (the rows of {}), got {}",
              d.x.rows, xs, d.labels.size);
  detail::check_matrix(ctx, fn, detail::MatrixArg(xs, d.x), d.x.rows, d.x.cols);
  const ValueChecks saved = ctx.value_checks();
  ctx.set_value_checks(ValueChecks::full);
  try {
    detail::check_values<T>(ctx, fn, xs, d.x, detail::ValueRule::finite);
    detail::check_indices(ctx, fn, ls, MatrixView<const std::int32_t>{d.labels.data, 1, d.labels.size, d.labels.size},
                          static_cast<std::int32_t>(classes));
  } catch (...) {
    ctx.set_value_checks(saved);
    throw;
  }
  ctx.set_value_checks(saved);
}

template <class T>
void check_inner(std::string_view fn, const InnerOptions<T>& in) {
  D2R_EXPECTS(in.objective == InnerObjective::reinforce || in.objective == InnerObjective::exact, fn,
              "options.inner.objective", "unknown value {}", static_cast<int>(in.objective));
  D2R_EXPECTS(in.steps >= 1, fn, "options.inner.steps", "expected K_in >= 1 inner steps, got {}", in.steps);
  D2R_EXPECTS(in.steps < (std::int64_t{1} << 31), fn, "options.inner.steps", "expected K_in < 2^31, got {}", in.steps);
  D2R_EXPECTS(in.generations >= 1, fn, "options.inner.generations", "expected G >= 1, got {}", in.generations);
  D2R_EXPECTS(finite_positive(static_cast<double>(in.gradient_clamp)), fn, "options.inner.gradient_clamp",
              "expected c_in > 0 (+inf for no clamp), got {}", in.gradient_clamp);
  D2R_EXPECTS(std::isfinite(static_cast<double>(in.pg.entropy_weight)) && in.pg.entropy_weight >= 0, fn,
              "options.inner.pg.entropy_weight", "expected a finite λ >= 0, got {}", in.pg.entropy_weight);
  D2R_EXPECTS(in.batch_size >= 0, fn, "options.inner.batch_size",
              "expected rows per inner step >= 0 (0 or >= the training rows: full batch), got {}", in.batch_size);
  check_adam(fn, "options.inner.adam", in.adam);
  D2R_EXPECTS(std::isfinite(static_cast<double>(in.stationarity_tolerance)) && in.stationarity_tolerance >= 0, fn,
              "options.inner.stationarity_tolerance", "expected a finite tolerance >= 0 (0: no check), got {}",
              in.stationarity_tolerance);
  D2R_EXPECTS(in.max_steps == 0 || (in.max_steps >= in.steps && in.max_steps <= (std::int64_t{1} << 24)), fn,
              "options.inner.max_steps", "expected 0 or a cap in [options.inner.steps = {}, 2^24], got {}", in.steps,
              in.max_steps);
}

/// Every field of fit_policy's options on its own (check(PolicyFitOptions) and fit_policy).
template <class T>
void check_policy_fit_fields(std::string_view fn, const PolicyFitOptions<T>& options) {
  D2R_EXPECTS(options.loss == PolicyLoss::mse || options.loss == PolicyLoss::nll || options.loss == PolicyLoss::pg, fn,
              "options.loss", "unknown value {}", static_cast<int>(options.loss));
  D2R_EXPECTS(options.steps >= 1, fn, "options.steps", "expected >= 1 steps, got {}", options.steps);
  D2R_EXPECTS(options.steps < (std::int64_t{1} << 32), fn, "options.steps", "expected < 2^32 steps, got {}",
              options.steps);
  D2R_EXPECTS(options.evaluate_every >= 0, fn, "options.evaluate_every", "expected >= 0, got {}",
              options.evaluate_every);
  D2R_EXPECTS(finite_positive(static_cast<double>(options.gradient_clamp)), fn, "options.gradient_clamp",
              "expected c > 0 (+inf for no clamp), got {}", options.gradient_clamp);
  check_adam(fn, "options.adam", options.adam);
}

/// Every field of fit_classifier's options on its own (check(ClassifierFitOptions) and fit_classifier).
template <class T>
void check_classifier_fit_fields(std::string_view fn, const ClassifierFitOptions<T>& options) {
  D2R_EXPECTS(options.loss == PolicyLoss::nll || options.loss == PolicyLoss::pg, fn, "options.loss",
              "expected PolicyLoss::nll or PolicyLoss::pg for a classifier, got {}", to_string(options.loss));
  D2R_EXPECTS(options.epochs >= 1, fn, "options.epochs", "expected >= 1 epochs, got {}", options.epochs);
  D2R_EXPECTS(options.batch_size >= 0, fn, "options.batch_size", "expected >= 0 (0: full batch), got {}",
              options.batch_size);
  D2R_EXPECTS(finite_positive(static_cast<double>(options.gradient_clamp)), fn, "options.gradient_clamp",
              "expected c > 0 (+inf for no clamp), got {}", options.gradient_clamp);
  check_adam(fn, "options.adam", options.adam);
}

template <class T>
std::vector<double> to_host_double(const Buffer<T>& b, std::int64_t count) {
  const std::vector<T> h = b.to_host();
  return std::vector<double>(h.begin(), h.begin() + count);
}

inline PolicyMetrics nan_metrics() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  return {nan, nan, nan};
}


/// Rows of a backend matrix / vector copied to the host (packed).
template <class U>
std::vector<U> rows_to_host(Context& ctx, MatrixView<const U> m) {
  return ctx.to_host(m);
}


}  // namespace d2r::trainer_common
