#pragma once
// A sweep of fixed rewards: policy gradient at every value of a grid of scalar rewards (u of
// U = u·I for a regression, β of U = β·I for a classification), several seeds per value, the
// validation outer loss (NLL per dimension / cross-entropy of the validation rows) of every run,
// the best value, the seed noise and the tolerance within which a learned reward matches the best
// (DESIGN.md §7): the brute-force answer a bilevel fit must match, behind `d2r sweep`.
//
//   noise      the median over the grid values of the standard deviation over seeds of the
//              validation loss: the spread two runs at one reward differ by (the median, not a
//              pooled sd: where PG collapses the predicted spread the loss is huge, its sd too);
//   tolerance  2 · noise · sqrt(2 / S) for S seeds: the difference of two means of S seeds each
//              has a standard deviation of noise · sqrt(2 / S), and the tolerance is 2 of those.
//
// Every run is one runs::RegressionRun / runs::ClassificationRun (d2r/fit_run.hpp) of the learner
// config (sweep_learner) with the reward and the seed replaced, on a fresh Context.
//
// Use: SweepSettings s{.values = log_grid(0.1, 10, 9), .seeds = 3}; SweepResult r =
// sweep(config, train, validation, s); r.grid[r.best].value; r.within_noise_of_best(r.judged[0]).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "d2r/communicator.hpp"
#include "d2r/context.hpp"
#include "d2r/fit_records.hpp"
#include "d2r/fit_run.hpp"

namespace d2r::runs {

/// `points` log-spaced values from `min` to `max`: min · (max / min)^(i / (points − 1)). Throws
/// d2r::Error (invalid_argument) naming "min", "max" or "points" unless 0 < min < max (finite)
/// and points >= 2.
std::vector<double> log_grid(double min, double max, std::int64_t points);

/// What a sweep runs.
struct SweepSettings {
  std::vector<double> values;  ///< the grid: the fixed rewards (> 0, finite), candidates for the best
  /// More rewards (learned ones, to be judged) run exactly like the grid's but not candidates for
  /// the best (> 0, finite; may be empty).
  std::vector<double> judged;
  std::int64_t seeds = 2;      ///< seeds per value (>= 1; >= 2 gives the seed noise)
  std::uint64_t seed = 0;      ///< the k-th seed of every value is seed + k (the config's and the context's)
  /// The learner (sweep_learner): 0 the config's own plain training; n >= 1 the bilevel inner
  /// learner's budget, n full-batch Adam steps on the exact gradient from a fresh start.
  std::int64_t budget = 0;
  /// The learner a `--preset stationary` fit judges at every reward (BilevelOptions::stationary()):
  /// each run is one outer step of the config's bilevel options with InnerStart::fixed, the inner
  /// policy trained from θ₀ (seeded by the run's seed) until ‖∇θ L_in‖ is below
  /// config.bilevel.inner.stationarity_tolerance of its untrained value (at most inner.max_steps),
  /// and judged by its validation loss: the outer loss such a fit minimises, so a fit and this
  /// sweep with the fit's seed evaluate the same function. Needs budget 0 and a tolerance > 0.
  bool stationary = false;
  ContextOptions context{};    ///< of every run's Context (its seed replaced by the run's)
};

/// Checks the settings: throws d2r::Error (invalid_argument) whose argument names the field
/// ("settings.values", "settings.judged", "settings.seeds", "settings.budget", "settings.stationary").
void check(const SweepSettings& settings);

/// One reward of a sweep and the outer losses of its runs, seed by seed.
struct SweepPoint {
  double value = 0;
  std::vector<double> validation_loss, train_loss;
  std::vector<double> validation_accuracy;  ///< classification only (empty for a regression)
  std::vector<std::int64_t> steps;          ///< each run's optimiser steps (the stationary learner's vary)
  double mean = std::numeric_limits<double>::quiet_NaN();  ///< of validation_loss over the seeds
  double sd = std::numeric_limits<double>::quiet_NaN();    ///< sample sd over the seeds (NaN: one seed)
};

struct SweepResult {
  std::vector<SweepPoint> grid;    ///< in the order of SweepSettings::values
  std::vector<SweepPoint> judged;  ///< in the order of SweepSettings::judged
  std::size_t best = 0;            ///< the grid's lowest finite mean (0 when none is finite)
  double noise = std::numeric_limits<double>::quiet_NaN();      ///< median over the grid of the sd (NaN: no finite sd)
  double tolerance = std::numeric_limits<double>::quiet_NaN();  ///< 2 · noise · sqrt(2 / seeds)
  std::int64_t seeds = 0;
  std::int64_t steps_per_run = 0;  ///< the learner's optimiser steps per run (0: they vary, SweepPoint::steps)
  std::int64_t rows_per_step = 0;  ///< training rows per step
  /// The grid's compute: runs (values × seeds), their inner steps and row gradients.
  [[nodiscard]] std::int64_t runs() const noexcept { return static_cast<std::int64_t>(grid.size()) * seeds; }
  [[nodiscard]] std::int64_t inner_steps() const noexcept;
  [[nodiscard]] std::int64_t row_gradients() const noexcept { return inner_steps() * rows_per_step; }
  /// Whether a point's mean validation loss is finite and at most the best's plus the tolerance.
  [[nodiscard]] bool within_noise_of_best(const SweepPoint& p) const noexcept { return within_noise_of_best(p.mean); }
  /// The same test of one validation loss: a judged bilevel run's own (its returned model's outer
  /// loss; issue 13: "the bilevel run's validation outer loss within the seed noise of the sweep's best").
  [[nodiscard]] bool within_noise_of_best(double loss) const noexcept;
};

/// Appends a sweep's runs to `table` as rows, one per run: the grid's points, then the judged
/// ones, seed by seed: "value", "seed" (`seed` + k), "validation_loss", "train_loss",
/// "validation_accuracy" (NaN for a regression), "steps"; sets that header when `table` has none.
/// What `d2r sweep` writes into sweep.csv (write_csv of d2r/data.hpp), every group's runs in turn.
void append_sweep_rows(RecordTable& table, const SweepResult& result, std::uint64_t seed);

/// The learner a sweep trains at each reward, from a base configuration: method pg, one
/// evaluation at the end (regression), and with `budget` >= 1 the bilevel inner learner's budget
/// instead of the base's plain training: the exact gradient, `budget` full-batch steps (a
/// classification: `budget` epochs of every row, each gradient entry clamped at the inner loop's
/// c_in, InnerOptions::gradient_clamp: at large β the clamp changes the trajectory). With
/// `stationary` (budget 0) the stationary learner of SweepSettings::stationary: method bilevel, one
/// outer step, InnerStart::fixed, the last (only) step's inner policy returned, a one-iteration
/// solve (the hypergradient is not used), and (regression) the inner Adam at base.plain's learning
/// rate, as a fit's --lr sets both.
RegressionConfig sweep_learner(const RegressionConfig& base, std::int64_t budget, bool stationary = false);
ClassificationConfig sweep_learner(const ClassificationConfig& base, std::int64_t budget, bool stationary = false);

/// Called after every run with the reward, the seed's index (0 .. seeds − 1) and its validation loss.
using SweepProgressFn = std::function<void(double value, std::int64_t seed_index, double validation_loss)>;

/// Runs sweep_learner(config, settings.budget) at every value and seed (the grid first, then the
/// judged values) and summarises (SweepResult). Checks the settings (check) and, through each
/// run's constructor, the configuration and the data (runs::check); `command` prefixes the
/// messages of bad input as in the runs. `validation` must not be empty.
SweepResult sweep(const RegressionConfig& config, const HostData& train, const HostData& validation,
                  const SweepSettings& settings, const DataParallel& parallel = {},
                  const std::string& command = "sweep", const SweepProgressFn& progress = {});
SweepResult sweep(const ClassificationConfig& config, const ClassHostData& train, const ClassHostData& validation,
                  const ClassHostData& test, std::int64_t classes, const SweepSettings& settings,
                  const DataParallel& parallel = {}, const std::string& command = "sweep",
                  const SweepProgressFn& progress = {});

}  // namespace d2r::runs
