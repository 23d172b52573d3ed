// BilevelTrainer::verdict (d2r/bilevel.hpp, DESIGN.md §7): whether a bilevel run has converged,
// ran out of outer steps or diverged, judged on its records.
#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "d2r/bilevel.hpp"
#include "host/src/bilevel_impl.hpp"

namespace d2r {

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
  // A fixed inner start left short of stationarity where φ did not move (nothing to undo): every
  // further step would reuse that policy and repeat the step (issue 13: HalfCheetah rows under
  // the stationary preset spent 100 outer steps there).
  if (options_.inner_start == InnerStart::fixed && !last.inner_stationary && last.max_step == 0) {
    return {BilevelStatus::step_limited,
            fmt::format("the inner policy at the reward of outer step {} stayed short of stationarity at the cap of {} "
                        "inner steps (‖∇θ L_in‖ at {:.3g} of its start, tolerance {:.3g}), and with a fixed inner start "
                        "every further step would repeat that; raise the cap or the tolerance",
                        last.step, std::max(options_.inner.steps, options_.inner.max_steps),
                        last.inner_gradient_norm0 > 0 ? last.inner_gradient_norm / last.inner_gradient_norm0 : 0.0,
                        static_cast<double>(options_.inner.stationarity_tolerance))};
  }
  const StoppingOptions& st = options_.stopping;
  // Early stop: no outer step improved on the best-judged one for `patience` steps.
  if (st.patience > 0 && s.best_step > 0 && last.step - s.best_step >= st.patience) {
    return {BilevelStatus::converged,
            fmt::format("early stop: no outer step improved on the outer loss {:.6g} of the best-judged step {} in the "
                        "{} steps since (patience {})",
                        s.best_loss, s.best_step, last.step - s.best_step, st.patience)};
  }
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

template BilevelVerdict BilevelTrainer<float>::verdict(bool) const;
template BilevelVerdict BilevelTrainer<double>::verdict(bool) const;

}  // namespace d2r
