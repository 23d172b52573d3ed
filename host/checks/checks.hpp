#pragma once
// d2r::checks — the one case registry behind `ctest -L gpu` (tests/checks_gpu_test.cpp),
// `d2r validate` and the cpu self-check (tests/checks_test.cpp), after ggml's test-backend-ops:
// every GPU primitive of the public API is a Case (primitive, variant, size, tolerance, and a run
// that builds its inputs from a seeded generator and runs the primitive in float on the tested
// backend and in double on the cpu backend, then compares with host/checks/compare.hpp). Outputs
// are sentinel-guarded (host/checks/cases/common.hpp, Out<T>). Not installed; not public API.
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

struct Case {
  std::string family;  ///< the file of host/checks/cases/ it comes from ("distributions", ...)
  std::string primitive, variant, size;
  Tol tolerance;
  /// Builds the inputs from (seed, salt), runs on env.test in float and env.ref in double, compares.
  std::function<Outcome(Env&, std::uint64_t salt)> run;
  /// "primitive/variant/size": what `d2r validate --filter` matches, unique in a registry.
  [[nodiscard]] std::string key() const { return primitive + "/" + variant + "/" + size; }
};

/// Every case up to `level`. `self_check`: the cpu backend in float is the tested side (categorical
/// heads above kSelfCheckMaxClasses left out). Builds closures only: no CUDA call.
std::vector<Case> all_cases(Level level, bool self_check);

/// Runs one case with the salt of its key; an exception (a d2r::Error, an out-of-bounds write or an
/// unwritten element of a guarded output) is a failed case whose note carries the message.
Outcome run_case(const Case& c, Env& env);

/// "1.23e-04", "inf", "nan": the table's number format.
std::string format_err(double v);

}  // namespace d2r::checks
