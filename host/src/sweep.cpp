// A sweep of fixed rewards (d2r/sweep.hpp): the learner's runs at every value and seed, the best
// value, the seed noise and the tolerance.
#include "d2r/sweep.hpp"

#include <algorithm>
#include <cmath>
#include <string_view>

#include <fmt/format.h>

#include "d2r/error.hpp"

namespace d2r::runs {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

[[noreturn]] void fail(std::string_view function, std::string_view argument, const std::string& what) {
  throw Error(ErrorKind::invalid_argument, std::string(argument),
              fmt::format("d2r::runs::{}: argument '{}': {}", function, argument, what));
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double sd_of(const std::vector<double>& v) {
  if (v.size() < 2) return kNaN;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

/// Every value of the grid, then every judged value, seed by seed: `run_one(config, context,
/// point)` trains one run and records its losses in the point.
template <class Config, class RunOne>
SweepResult run_points(Config c, const SweepSettings& s, const SweepProgressFn& progress, RunOne&& run_one) {
  SweepResult r;
  r.seeds = s.seeds;
  const auto run_point = [&](double value) {
    SweepPoint p;
    p.value = value;
    for (std::int64_t k = 0; k < s.seeds; ++k) {
      ContextOptions co = s.context;
      co.seed = s.seed + static_cast<std::uint64_t>(k);
      Context ctx(co);
      c.seed = co.seed;
      run_one(c, ctx, value, p);
      if (progress) progress(value, k, p.validation_loss.back());
    }
    p.mean = mean_of(p.validation_loss);
    p.sd = sd_of(p.validation_loss);
    return p;
  };
  for (double v : s.values) r.grid.push_back(run_point(v));
  for (double v : s.judged) r.judged.push_back(run_point(v));
  // The best: the lowest finite mean of the grid; the noise: the median of its finite sds.
  std::vector<double> sds;
  for (std::size_t i = 0; i < r.grid.size(); ++i) {
    const SweepPoint& p = r.grid[i];
    if (std::isfinite(p.sd)) sds.push_back(p.sd);
    if (std::isfinite(p.mean) && (!std::isfinite(r.grid[r.best].mean) || p.mean < r.grid[r.best].mean)) r.best = i;
  }
  std::sort(sds.begin(), sds.end());
  r.noise = sds.empty()            ? kNaN
            : sds.size() % 2 == 1 ? sds[sds.size() / 2]
                                  : 0.5 * (sds[sds.size() / 2 - 1] + sds[sds.size() / 2]);
  r.tolerance = 2 * r.noise * std::sqrt(2.0 / static_cast<double>(s.seeds));
  return r;
}

}  // namespace

std::vector<double> log_grid(double min, double max, std::int64_t points) {
  if (!(std::isfinite(min) && min > 0)) fail("log_grid", "min", fmt::format("expected a finite number > 0, got {}", min));
  if (!(std::isfinite(max) && max > min)) fail("log_grid", "max", fmt::format("expected a finite number > min {}, got {}", min, max));
  if (points < 2) fail("log_grid", "points", fmt::format("expected >= 2, got {}", points));
  std::vector<double> values;
  for (std::int64_t i = 0; i < points; ++i) {
    values.push_back(min * std::pow(max / min, static_cast<double>(i) / static_cast<double>(points - 1)));
  }
  return values;
}

void check(const SweepSettings& s) {
  if (s.values.empty()) fail("check", "settings.values", "expected at least one reward");
  for (const auto& [name, list] : {std::pair{"settings.values", &s.values}, std::pair{"settings.judged", &s.judged}}) {
    for (std::size_t i = 0; i < list->size(); ++i) {
      const double v = (*list)[i];
      if (!(std::isfinite(v) && v > 0)) fail("check", name, fmt::format("entry {} is {}; expected finite and > 0", i, v));
    }
  }
  if (s.seeds < 1) fail("check", "settings.seeds", fmt::format("expected >= 1, got {}", s.seeds));
  if (s.budget < 0) fail("check", "settings.budget", fmt::format("expected >= 0 (0: the config's own training), got {}", s.budget));
  if (s.stationary && s.budget != 0) {
    fail("check", "settings.stationary", fmt::format("the stationary learner trains to a tolerance: expected budget 0, got {}", s.budget));
  }
}

std::int64_t SweepResult::inner_steps() const noexcept {
  std::int64_t n = 0;
  for (const SweepPoint& p : grid) {
    for (std::int64_t k : p.steps) n += k;
  }
  return n;
}

bool SweepResult::within_noise_of_best(double loss) const noexcept {
  return !grid.empty() && std::isfinite(loss) && loss <= grid[best].mean + tolerance;
}

namespace {

/// One outer step of the base's bilevel options from a fixed start, its inner policy judged.
template <class Config>
void make_stationary(Config& c) {
  c.outer_steps = 1;
  c.final_model = FinalModel::last;
  c.bilevel.inner_start = InnerStart::fixed;
  c.bilevel.solver = ImplicitSolver::normal_cg;  // the hypergradient is not used: one iteration
  c.bilevel.cg.max_iterations = 1;
  c.inner_objective = InnerObjective::exact;
}

/// The stationary learner needs a tolerance: without one the run is a fixed budget (settings.budget).
template <class Config>
void check_stationary(const Config& c) {
  if (!(c.bilevel.inner.stationarity_tolerance > 0)) {
    fail("sweep", "config.bilevel.inner.stationarity_tolerance",
         fmt::format("the stationary learner trains to this tolerance: expected > 0, got {}",
                     static_cast<double>(c.bilevel.inner.stationarity_tolerance)));
  }
}

}  // namespace

void append_sweep_rows(RecordTable& table, const SweepResult& result, std::uint64_t seed) {
  if (table.header.empty()) {
    table.header = {"value", "seed", "validation_loss", "train_loss", "validation_accuracy", "steps"};
  }
  for (const auto* points : {&result.grid, &result.judged}) {
    for (const SweepPoint& p : *points) {
      for (std::size_t k = 0; k < p.validation_loss.size(); ++k) {
        table.rows.push_back({p.value, static_cast<double>(seed + k), p.validation_loss[k], p.train_loss[k],
                              k < p.validation_accuracy.size() ? p.validation_accuracy[k] : NAN,
                              static_cast<double>(p.steps[k])});
      }
    }
  }
}

RegressionConfig sweep_learner(const RegressionConfig& base, std::int64_t budget, bool stationary) {
  RegressionConfig c = base;
  if (stationary) {
    c.method = Method::bilevel;
    make_stationary(c);
    // A regression fit's inner steps take its --lr (fit writes it into both trainers' options);
    // the sweep's learner is that one.
    c.bilevel.inner.adam.learning_rate = c.plain.adam.learning_rate;
    return c;
  }
  c.method = Method::pg;
  if (budget > 0) {
    c.plain.steps = budget;
    c.inner_objective = InnerObjective::exact;
  }
  c.plain.evaluate_every = c.plain.steps;  // the sweep reads the final metrics only
  return c;
}

ClassificationConfig sweep_learner(const ClassificationConfig& base, std::int64_t budget, bool stationary) {
  ClassificationConfig c = base;
  if (stationary) {
    c.method = ClassMethod::bilevel;
    make_stationary(c);
    return c;
  }
  c.method = ClassMethod::pg;
  if (budget > 0) {
    // The bilevel learner: budget full-batch steps (one epoch = one step). The bilevel inner loop
    // clamps every gradient entry at c_in (InnerOptions::gradient_clamp); at large β that changes
    // the trajectory (iris, β = 163, 100 steps: validation 0.046 with the clamp, 0.122 without;
    // the bilevel run's own inner policy 0.042), so this learner clamps too.
    c.plain.epochs = budget;
    c.plain.batch_size = 0;
    c.plain.gradient_clamp = program_bilevel_defaults().inner.gradient_clamp;
    c.inner_objective = InnerObjective::exact;
  }
  return c;
}

SweepResult sweep(const RegressionConfig& config, const HostData& train, const HostData& validation,
                  const SweepSettings& settings, const DataParallel& parallel, const std::string& command,
                  const SweepProgressFn& progress) {
  check(settings);
  if (validation.empty()) fail("sweep", "validation", "the sweep measures the validation loss: expected validation rows");
  const RegressionConfig c = sweep_learner(config, settings.budget, settings.stationary);
  if (settings.stationary) check_stationary(c);
  SweepResult r = run_points(c, settings, progress, [&](RegressionConfig& rc, Context& ctx, double value, SweepPoint& p) {
    rc.reward_params = {value};
    RegressionRun run(ctx, rc, train, validation, parallel, command);
    const RunResult res = run.run();
    p.validation_loss.push_back(res.held_out.nll_per_dim);  // stationary: its one outer step's inner policy
    p.train_loss.push_back(res.train.nll_per_dim);
    p.steps.push_back(settings.stationary ? res.inner_steps : c.plain.steps);
  });
  r.steps_per_run = settings.stationary ? 0 : c.plain.steps;
  r.rows_per_step = train.rows;
  return r;
}

SweepResult sweep(const ClassificationConfig& config, const ClassHostData& train, const ClassHostData& validation,
                  const ClassHostData& test, std::int64_t classes, const SweepSettings& settings,
                  const DataParallel& parallel, const std::string& command, const SweepProgressFn& progress) {
  check(settings);
  if (validation.empty()) fail("sweep", "validation", "the sweep measures the validation loss: expected validation rows");
  const ClassificationConfig c = sweep_learner(config, settings.budget, settings.stationary);
  if (settings.stationary) check_stationary(c);
  const std::int64_t rows = train.rows;
  const std::int64_t batch =
      settings.stationary || c.plain.batch_size == 0 || c.plain.batch_size >= rows ? rows : c.plain.batch_size;
  const std::int64_t steps = c.plain.epochs * ((rows + batch - 1) / batch);
  SweepResult r = run_points(c, settings, progress, [&](ClassificationConfig& cc, Context& ctx, double value, SweepPoint& p) {
    cc.beta = value;
    ClassificationRun run(ctx, cc, train, validation, test, classes, parallel, command);
    const ClassificationResult res = run.run();
    p.validation_loss.push_back(res.validation.nll_per_dim);
    p.train_loss.push_back(res.train.nll_per_dim);
    p.validation_accuracy.push_back(res.validation.accuracy);
    p.steps.push_back(settings.stationary ? res.inner_steps : steps);
  });
  r.steps_per_run = settings.stationary ? 0 : steps;
  r.rows_per_step = batch;
  return r;
}

}  // namespace d2r::runs
