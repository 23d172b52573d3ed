// The registry: every family's cases, and the one way to run a case (the salt of its key).
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "d2r/error.hpp"

#include "host/checks/cases/common.hpp"
#include "host/checks/checks.hpp"

namespace d2r::checks {
namespace {
std::uint64_t fnv(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

/// The time_case in progress on this thread: its context, timer and the marked calls seen.
struct Probe {
  Context* ctx;
  const CallTimer* timer;
  int calls = 0;
};
thread_local Probe* active_probe = nullptr;
}  // namespace

void timed(Context& ctx, const std::function<void()>& call) {
  Probe* p = active_probe;
  if (p == nullptr || p->ctx != &ctx) {
    call();
    return;
  }
  if (++p->calls > 1) throw Error(ErrorKind::invalid_argument, "timed", "a case marks more than one call to time");
  (*p->timer)(call);
}

std::string untimed_reason(const Case& c) {
  if (!c.build) return "a bespoke comparison (add_custom): no single call to time";
  if (!c.work().stated()) return "work not stated: " + c.work().unstated;
  return {};
}

void time_case(const Case& c, Context& ctx, std::uint64_t seed, const CallTimer& timer) {
  if (const std::string why = untimed_reason(c); !why.empty()) throw Error(ErrorKind::invalid_argument, c.key(), why);
  Probe probe{&ctx, &timer};
  struct Restore {
    Probe* saved;
    ~Restore() { active_probe = saved; }
  } restore{active_probe};
  active_probe = &probe;
  c.build(ctx, seed, fnv(c.key()));
  if (probe.calls == 0) throw Error(ErrorKind::invalid_argument, c.key(), "the case marks no call to time (timed())");
}

std::vector<Case> all_cases(Level level, bool self_check) {
  Table t(level, self_check);
  const std::pair<const char*, void (*)(Table&, Level)> families[] = {
      {"distributions", add_distribution_checks}, {"rewards", add_reward_checks},
      {"objectives", add_objective_checks},       {"second_order", add_second_order_checks},
      {"second_order", add_mixed_product_checks}, {"network", add_network_checks},
      {"curvature", add_curvature_checks},        {"optim", add_optim_checks},
      {"solvers", add_solver_checks}};
  for (const auto& [family, add] : families) {
    t.family = family;
    add(t, level);
  }
  return std::move(t.cases);
}

Outcome run_case(const Case& c, Env& env) {
  Outcome out;
  try {
    out = c.run(env, fnv(c.key()));
  } catch (const std::exception& e) {
    out.status = Status::fail;
    out.abs_err = out.rel_err = kInf;
    out.tolerance = c.tolerance.rtol;
    out.note = fmt::format("error: {}", e.what());
  }
  return out;
}

std::string format_err(double v) {
  if (std::isinf(v)) return "inf";
  if (std::isnan(v)) return "nan";
  return fmt::format("{:.2e}", v);
}

}  // namespace d2r::checks
