#pragma once
// d2r::checks — the one case registry behind `ctest -L gpu` (tests/checks_gpu_test.cpp),
// `d2r validate` and the cpu self-check (tests/checks_test.cpp), after ggml's test-backend-ops:
// every GPU primitive of the public API is a Case (primitive, variant, size, tolerance, and a run
// that builds its inputs from a seeded generator and runs the primitive in float on the tested
// backend and in double on the cpu backend, then compares with host/checks/compare.hpp). Outputs
// are sentinel-guarded (host/checks/cases/common.hpp, Out<T>). A case also states its work (bytes,
// FLOPs: host/checks/work.hpp) and marks the one call `d2r bench` and bench/ time (timed()), so the
// same cases are checked, validated and timed. Not installed; not public API.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "d2r/context.hpp"
#include "host/checks/compare.hpp"

namespace d2r::checks {

/// Size classes: each includes the smaller ones. small: tiny shapes and edge cases; medium: + the
/// paper's sizes (the default of `d2r validate`, and what the GPU test runs); large: + C = 2^17,
/// wide MLPs.
enum class Level { small = 0, medium = 1, large = 2 };

/// Categorical heads up to this many classes in the cpu self-check: above, the cpu float path's
/// sequential sums over 2^15..2^18 probabilities round by about √C·ε of their total, beyond the
/// tolerances the GPU kernels (tree reductions) are held to; the double reference is unaffected.
inline constexpr std::int64_t kSelfCheckMaxClasses = 4096;

/// Where a case runs: `test` is cuda (float), or cpu (float) for the self-check; `ref` is cpu (double).
struct Env {
  Context& test;
  Context& ref;
  std::uint64_t seed;
  bool self_check;
};

/// The work model of one case: the least traffic of its timed call in bytes (each input read
/// once, each output written once, float) and its FLOPs (GEMM-like and O(n²)-per-row work only:
/// elementwise work is not counted, so 0 FLOPs is a statement, not an omission), from the one
/// formula of its primitive in host/checks/work.hpp. A case without such a formula says why in
/// `unstated` (bytes and flops are then meaningless, never reported as 0).
struct WorkModel {
  double bytes = 0, flops = 0;
  std::string unstated = "no work formula for this case (host/checks/work.hpp)";
  [[nodiscard]] bool stated() const { return unstated.empty(); }
};

struct Case {
  std::string family;  ///< the file of host/checks/cases/ it comes from ("distributions", ...)
  std::string primitive, variant, size;
  Tol tolerance;
  /// Builds the inputs from (seed, salt), runs on env.test in float and env.ref in double, compares.
  std::function<Outcome(Env&, std::uint64_t salt)> run;
  /// Builds the inputs from (seed, salt) and runs the case once in float on ctx alone, its timed
  /// call through timed() (time_case). Null for a case with a bespoke comparison (add_custom).
  std::function<void(Context&, std::uint64_t seed, std::uint64_t salt)> build = {};
  WorkModel work_model = {};
  /// "primitive/variant/size": what `d2r validate --filter` matches, unique in a registry.
  [[nodiscard]] std::string key() const { return primitive + "/" + variant + "/" + size; }
  /// The work of the call time_case times (work_model; see WorkModel for an unstated one).
  [[nodiscard]] const WorkModel& work() const { return work_model; }
};

/// Every case up to `level`. `self_check`: the cpu backend in float is the tested side (categorical
/// heads above kSelfCheckMaxClasses left out). Builds closures only: no CUDA call.
std::vector<Case> all_cases(Level level, bool self_check);

/// Runs one case with the salt of its key; an exception (a d2r::Error, an out-of-bounds write or an
/// unwritten element of a guarded output) is a failed case whose note carries the message.
Outcome run_case(const Case& c, Env& env);

/// What times a case's marked call: given the call, runs it as often as it likes (a warm-up and
/// repetitions with the one timer of host/checks/timer.hpp, or a Google Benchmark loop).
using CallTimer = std::function<void(const std::function<void()>& call)>;

/// Inside a case: runs `call`, the one call of the case that is timed. Outside time_case it runs
/// once (check, validate); under time_case on the same context it is handed to the CallTimer
/// (which may run it many times: outputs accumulated into grow, which only a timing tolerates).
void timed(Context& ctx, const std::function<void()>& call);

/// Why a case cannot be timed ("" when it can): no build (a bespoke comparison), or no stated work.
std::string untimed_reason(const Case& c);

/// Builds the case's inputs on ctx in float (the salt of its key, `seed`) and hands its marked call
/// to `timer`. Throws d2r::Error when the case cannot be timed (untimed_reason) or marks no call or
/// more than one; rethrows what the case throws.
void time_case(const Case& c, Context& ctx, std::uint64_t seed, const CallTimer& timer);

/// "1.23e-04", "inf", "nan": the table's number format.
std::string format_err(double v);

}  // namespace d2r::checks
