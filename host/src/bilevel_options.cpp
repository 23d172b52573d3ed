// BilevelTrainer's option checks (d2r::check(BilevelOptions) and the constructors' setup checks)
// and the enum names (d2r/bilevel.hpp).
#include <cmath>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "d2r/bilevel.hpp"
#include "d2r/error.hpp"
#include "host/src/bilevel_impl.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/trainer_common.hpp"

namespace d2r {

const char* to_string(ImplicitSolver solver) noexcept {
  switch (solver) {
    case ImplicitSolver::conjugate_gradient: return "cg";
    case ImplicitSolver::normal_cg: return "normal_cg";
    case ImplicitSolver::neumann: return "neumann";
    case ImplicitSolver::cg_or_normal_cg: return "cg_or_normal_cg";
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
const char* to_string(InnerStart start) noexcept {
  return start == InnerStart::warm ? "warm" : start == InnerStart::fixed ? "fixed" : "fresh";
}
const char* to_string(CurvatureKind curvature) noexcept {
  return curvature == CurvatureKind::exact ? "exact" : "surrogate";
}
const char* to_string(OuterOptimizer optimizer) noexcept {
  return optimizer == OuterOptimizer::sgd ? "sgd" : optimizer == OuterOptimizer::rprop ? "rprop" : "adam";
}
const char* to_string(OuterData data) noexcept { return data == OuterData::validation ? "validation" : "train"; }

using trainer_common::check_adam;
using trainer_common::check_inner;
using trainer_common::finite_positive;
using trainer_common::form_name;
using trainer_common::positive_entries;
using trainer_common::reward_size;

namespace bilevel_detail {

/// Every field of the options on its own (check(BilevelOptions) and the constructors).
template <class T>
void check_bilevel_options(std::string_view fn, const BilevelOptions<T>& options) {
  check_inner(fn, options.inner);  // every field of InnerOptions
  D2R_EXPECTS(options.inner_start == InnerStart::fresh || options.inner_start == InnerStart::warm ||
                  options.inner_start == InnerStart::fixed,
              fn,
              "options.inner_start", "unknown value {}", static_cast<int>(options.inner_start));
  D2R_EXPECTS(options.curvature == CurvatureKind::surrogate || options.curvature == CurvatureKind::exact, fn,
              "options.curvature", "unknown value {}",
              static_cast<int>(options.curvature));
  switch (options.solver) {
    case ImplicitSolver::conjugate_gradient:
    case ImplicitSolver::normal_cg:
    case ImplicitSolver::cg_or_normal_cg:
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
  D2R_EXPECTS(options.stopping.patience >= 0 && options.stopping.patience <= 1000000, fn, "options.stopping.patience",
              "expected 0 (off) to 10^6 outer steps, got {}", options.stopping.patience);
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


template void check_bilevel_options(std::string_view, const BilevelOptions<float>&);
template void check_bilevel_options(std::string_view, const BilevelOptions<double>&);
template std::vector<std::size_t> check_bilevel_setup(std::string_view, const BilevelOptions<float>&, RewardForm,
                                                      std::span<const double>, std::int64_t, std::int64_t, bool);
template std::vector<std::size_t> check_bilevel_setup(std::string_view, const BilevelOptions<double>&, RewardForm,
                                                      std::span<const double>, std::int64_t, std::int64_t, bool);

}  // namespace bilevel_detail

template <class T>
void check(const BilevelOptions<T>& options) {
  bilevel_detail::check_bilevel_options("d2r::check(BilevelOptions)", options);
}

template void check(const BilevelOptions<float>&);
template void check(const BilevelOptions<double>&);

template <class T>
std::vector<std::string> inert_fields(const BilevelOptions<T>& o) {
  std::vector<std::string> out;
  switch (o.optimizer) {
    case OuterOptimizer::rprop: out = {"outer_adam", "sgd_learning_rate", "sgd_momentum", "log_space"}; break;
    case OuterOptimizer::adam: out = {"sgd_learning_rate", "sgd_momentum", "rprop"}; break;
    case OuterOptimizer::sgd: out = {"outer_adam", "rprop"}; break;
  }
  if (o.solver == ImplicitSolver::neumann) {
    out.insert(out.end(), {"cg.max_iterations", "cg.tolerance"});  // the series reads cg.damping only
  } else {
    out.insert(out.end(), {"neumann.alpha", "neumann.iterations"});
  }
  // Nothing draws when both the inner steps and the curvature take the exact expectation: the
  // sample count and what shapes sampled rewards (the transform, the clip of −log p) go unread.
  if (o.inner.objective == InnerObjective::exact && o.curvature == CurvatureKind::exact) {
    out.insert(out.end(), {"inner.generations", "inner.pg.transform", "inner.pg.log_prob_clip"});
  }
  return out;
}

template std::vector<std::string> inert_fields(const BilevelOptions<float>&);
template std::vector<std::string> inert_fields(const BilevelOptions<double>&);

bool is_inert(const std::vector<std::string>& inert, std::string_view field) {
  for (const std::string& f : inert) {
    if (field == f || (field.starts_with(f) && field.size() > f.size() && field[f.size()] == '.')) return true;
  }
  return false;
}

}  // namespace d2r
