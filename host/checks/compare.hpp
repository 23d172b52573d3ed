#pragma once
// The one comparison of the case registry (d2r::checks): a case's outputs computed in float on the
// tested backend against the same outputs in double on the cpu backend (the oracle, DESIGN.md §1).
//
// Relative with a floor: for every output array, with s = max|expected|, the relative error of an
// element is |got − expected| / (|expected| + floor·s + abs_floor): relative to the element, and to
// the array's scale for elements near zero (sums of terms of both signs cancel in float). A case
// passes when its worst relative error is within the tolerance. NaN and ±inf compare equal only to
// themselves. Categorical draws are compared draw for draw (compare_draws); objectives that sample
// categorical draws internally compare the rows whose draws agree (Output::draws / rows /
// total_of). Solver iterates are compared normwise (compare_normwise).
#include <cstdint>
#include <string>
#include <vector>

namespace d2r::checks {

using Vec = std::vector<double>;
using Idx = std::vector<std::int32_t>;

/// A case's tolerance: rtol on the relative-with-floor error above.
struct Tol {
  double rtol;
  double floor = 0.1;      ///< fraction of max|expected| added to |expected| in the denominator
  double abs_floor = 0.0;  ///< and this absolute amount (outputs that are sums cancelling to ~0)
  double min_scale = 0.0;  ///< the array's scale is at least this (a floor of floor·max(s, min_scale))
  /// >= 0: an array whose max|expected| is not above this fails (the comparison would be vacuous).
  double min_reference = -1.0;
};

/// One output array of a check. `rows` > 0: the array is `rows` equal blocks, one per batch row
/// (rows of a draws mismatch can be left out); `draws`: categorical draws that decide which rows
/// are comparable (not compared numerically).
struct Output {
  std::string name;
  Vec values;
  std::int64_t rows = 0;
  bool draws = false;
  /// When draws differ: compared with the row sums of the (rows-structured) output of this name
  /// on the same side instead of with the reference.
  std::string total_of = {};
};
using Outputs = std::vector<Output>;

enum class Status { pass, fail, skip };
const char* status_text(Status s);

/// The result of one case: the worst errors, the tolerance, and a note (the worst element, the
/// draws left out, the error thrown).
struct Outcome {
  Status status = Status::pass;
  double abs_err = 0, rel_err = 0, tolerance = 0;
  std::string abs_text, rel_text, tol_text;  // when set, printed instead of the numbers
  std::string note;
};

/// Relative with a floor over every output array (rows whose categorical draws differ left out).
Outcome compare(const Outputs& got, const Outputs& want, Tol tol);

/// Categorical draws against the reference's: in range, never masked, agreement >= 99.9 % (C <=
/// 4096; 95 % beyond; 99 % in the cpu self-check), and every disagreement at a CDF boundary.
Outcome compare_draws(const Idx& got, const Idx& want, const Vec& logits, std::int64_t B, std::int64_t C,
                      std::int64_t G, bool self_check);

/// Output k of `got` against output k of `want` with tolerance tols[k] (a former test's
/// per-output D2R_EXPECT_CLOSE in one case): the worst of them (by error over tolerance).
Outcome compare_each(const Outputs& got, const Outputs& want, const std::vector<Tol>& tols);

/// The worse of two outcomes (by error over tolerance); fails when either fails; notes joined.
Outcome worse(Outcome a, const Outcome& b);

/// max|v| (0 for an empty v).
double max_abs(const Vec& v);

/// Fails `o` when max|want| is not above `least` (the comparison would be vacuous).
Outcome require_scale(Outcome o, const Output& want, double least);

/// The GPU sampler's draw rule (moved from tests/categorical_gpu_test.cpp): every draw in range
/// and unmasked; equal to the reference's, or a neighbour of it with nothing between them but
/// masked classes and classes narrower than 2.5e-7·Z (below the float sampler's resolution), whose
/// interval [cdf_{k-1}, cdf_k) lies within 1e-6·Z of the reference target t = u·Z (u: the draw's
/// Philox uniform of `seed` and `key_step`/`key_first_row`); and at least 99.9 % of the draws
/// equal (C <= 4096; 95 % beyond, where an average class is about Z/C wide).
/// `required` >= 0 replaces the agreement fraction (0: none, the window and neighbour rule only).
Outcome compare_draws_windowed(const Idx& got, const Idx& want, const Vec& logits, std::int64_t B, std::int64_t C,
                               std::int64_t G, std::uint64_t seed, std::int64_t key_step, std::int64_t key_first_row,
                               double required = -1.0);

/// rel = ‖got − want‖ / ‖want‖ (normwise: iterates of a solver drift apart element by element).
Outcome compare_normwise(const Vec& got, const Vec& want, double tol);

}  // namespace d2r::checks
