// The warnings of a bilevel run (d2r/fit_run.hpp bilevel_warnings): what its outer-step records say
// about the hypergradient, the solves, the inner policy's stationarity, the step budget and
// over-fitting, for stdout and results.json.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "d2r/fit_run.hpp"

namespace d2r::runs {

namespace {

struct OuterStepFacts {
  bool clamped = false, at_max_step = false;
  double solver_relative_residual = 0, inner_gradient_relative = 0, train_loss = 0, validation_loss = 0;
};

std::vector<std::string> warnings_of(const std::vector<OuterStepFacts>& records, double solver_tolerance,
                                     double stationarity_tolerance, double hypergradient_clamp, OuterData outer_data,
                                     InnerStart inner_start) {
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
    w.push_back(fmt::format("the linear solve missed its relative-residual tolerance {:.3g} in {} of {} outer steps "
                            "(worst {:.3g}): the hypergradient is approximate there",
                            solver_tolerance, missed, N, worst_residual));
  }
  if (unsteady > 0) {
    w.push_back(fmt::format("the inner policy was not stationary (‖∇θ L_in‖ above {:.3g} of its starting value, "
                            "worst {:.3g}) at the implicit step of {} of {} outer steps: the inner step cap was reached, and {}",
                            stationarity_tolerance, worst_gradient, unsteady, N,
                            inner_start == InnerStart::fixed
                                ? "that policy is not trained again; Rprop undoes the move that led there, if any (raise --inner-max-steps to reach such a reward)"
                                : "the reward was not moved there"));
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
                            "inner policy; {})",
                            first.train_loss, last.train_loss, best_val, last.validation_loss,
                            outer_data == OuterData::train ? "use the validation rows as outer data"
                            : inner_start == InnerStart::fixed
                                ? "the outer loss is on the validation rows already and every step retrains from one "
                                  "start, so the rise comes from the reward: the outer loss is rough in it here; "
                                  "--final-model best returns the best-judged step's policy"
                                : "the outer loss is on the validation rows already: a warm inner start keeps "
                                  "training, and over-fits, whatever the reward does; --final-model best returns "
                                  "the best-judged step's policy, --inner-start fixed retrains from one start at "
                                  "every step"));
  }
  return w;
}

/// warnings_of the outer-step records of either task (StepRecord: held-out rows; OuterRecord: validation rows).
template <class Record>
std::vector<std::string> record_warnings(const std::vector<Record>& records, const BilevelOptions<double>& o) {
  std::vector<OuterStepFacts> facts;
  for (const Record& r : records) {
    const PolicyMetrics* held = nullptr;
    if constexpr (requires { r.held_out; }) {
      held = &r.held_out;
    } else {
      held = &r.validation;
    }
    double residual = 0;
    if constexpr (requires { r.solver_relative_residual(); }) {
      residual = r.solver_relative_residual();  // BilevelRecord computes it
    } else {
      residual = r.solver_relative_residual;
    }
    facts.push_back({.clamped = r.hypergradient_clamped,
                     .at_max_step = r.at_max_step,
                     .solver_relative_residual = residual,
                     .inner_gradient_relative = r.inner_gradient_norm0 > 0 ? r.inner_gradient_norm / r.inner_gradient_norm0 : 0.0,
                     .train_loss = r.train.nll_per_dim,
                     .validation_loss = held->nll_per_dim});
  }
  return warnings_of(facts, o.cg.tolerance, o.inner.stationarity_tolerance, o.hypergradient_clamp, o.outer_data,
                     o.inner_start);
}

}  // namespace

std::vector<std::string> bilevel_warnings(const std::vector<StepRecord>& records, const BilevelOptions<double>& o) {
  return record_warnings(records, o);
}
std::vector<std::string> bilevel_warnings(const std::vector<OuterRecord>& records, const BilevelOptions<double>& o) {
  return record_warnings(records, o);
}

std::vector<std::string> bilevel_warnings(const std::vector<BilevelRecord>& records, const BilevelOptions<double>& o) {
  return record_warnings(records, o);
}

std::vector<std::string> model_warnings(const ReturnedModel& m, FinalModel asked, std::size_t outer_steps) {
  std::vector<std::string> w;
  // The first step's policy is trained at the starting reward: a best step there means the outer
  // loop found nothing better (with a warm inner start, typically an inner policy that over-fits
  // with every later block of inner steps), so the reward reported was not learned.
  if (m.source == FinalModel::best && m.outer_step == 1 && outer_steps > 1) {
    w.push_back(fmt::format("the best-judged outer step is the first of {}: the reward reported is the starting value, "
                            "not a learned one, and the model returned is the inner policy after its first block of "
                            "inner steps (no later step with a stationary inner policy had a lower outer loss); "
                            "results.json final.last_step "
                            "has the outer loop's final reward (--final-model last returns it)",
                            outer_steps));
  }
  if (m.fallback) {
    w.push_back("no outer step had a stationary inner policy: the model returned is the last step's, not a best-judged "
                "one (--final-model best)");
  }
  if (asked == FinalModel::best && m.tracked_from > 1) {
    w.push_back(fmt::format("the checkpoint resumed was written before d2r saved the best outer step: the best step "
                            "was chosen among outer steps {} onwards only (the earlier steps' policies are not in it)",
                            m.tracked_from));
  }
  return w;
}

}  // namespace d2r::runs
