#pragma once
// Shared support of kernel_emulation_test: the device code of d2r's kernel families compiled by
// the host compiler and run by the SIMT emulator (simt_emulator.hpp) against the CPU reference in
// double. This checks the logic of the device code (indexing, grid-stride loops, barriers, warp
// reductions, shared-memory layout, padding) on every CI run; it is not a GPU measurement and does
// not replace the GPU tests (tests/*gpu_test.cpp), which compare the compiled kernels on a device.
//
// Include this header first in every *_emulation_test.cpp, then the kernel header(s) it covers.
// Every kernel of an included header must be launched by that test source: the kernels are
// `static` (D2R_KERNEL), so an unlaunched one fails the build with -Wunused-function, which is the
// reminder to emulate a kernel added to a covered family.

#include "tests/emulation/simt_emulator.hpp"

// The `extern __shared__` arrays of the covered kernel families (one definition for the program).
SIMT_DYNAMIC_SHARED_MEMORY(d2r::kernels::cholesky_gaussian, float, smem)
SIMT_DYNAMIC_SHARED_MEMORY(d2r::kernels::cholesky_objectives, float, smem)
SIMT_DYNAMIC_SHARED_MEMORY(d2r::kernels::diag_gaussian, float, shared)
SIMT_DYNAMIC_SHARED_MEMORY(d2r::kernels::diag_gaussian, float, pathwise_scratch)
SIMT_DYNAMIC_SHARED_MEMORY(d2r::kernels::diag_gaussian, float, exact_scratch)
SIMT_DYNAMIC_SHARED_MEMORY(d2r::kernels::categorical, unsigned char, draw_storage)

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "d2r/distributions.hpp"
#include "d2r/objectives.hpp"
#include "tests/test_utils.hpp"

namespace d2r::emulation {

using FloatMatrix = simt::GuardedMatrix<float>;
using IndexMatrix = simt::GuardedMatrix<std::int32_t>;
using test::TestRng;

/// The logical values of `m` in double; a test failure if anything outside the view was written.
inline std::vector<double> checked(const FloatMatrix& m, const std::string& what) {
  EXPECT_EQ(m.padding_written(), 0) << what << ": elements outside the view were written";
  const std::vector<float> v = m.values();
  return {v.begin(), v.end()};
}

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v)
    if (std::isfinite(x)) m = std::max(m, std::abs(x));
  return m;
}

/// Σ over the rows of a packed rows x cols matrix (a launcher's column_sum of per-row targets).
inline std::vector<double> column_sums(const std::vector<double>& m, std::int64_t rows, std::int64_t cols) {
  std::vector<double> out(static_cast<std::size_t>(cols), 0.0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) out[static_cast<std::size_t>(c)] += m[static_cast<std::size_t>(r * cols + c)];
  return out;
}

/// The kernel's per-row gradient target (B x cols) as the launcher reduces it: column-summed to
/// one row when the parameter is shared by the rows (shared && B > 1), else as is.
inline std::vector<double> reduce_rows(const std::vector<double>& per_row, std::int64_t B, std::int64_t cols,
                                       bool shared) {
  if (shared && B > 1) return column_sums(per_row, B, cols);
  return per_row;
}

/// float kernel vs double reference: |got − want| <= atol_rel·max|want| + rtol·|want| element-wise
/// (NaN must match NaN), the tolerances of tests/*gpu_test.cpp.
#define D2R_EMU_EXPECT_CLOSE(got, want, rtol, atol_rel)                                                   \
  do {                                                                                                    \
    SCOPED_TRACE(#got);                                                                                   \
    const std::vector<double> d2r_got_ = (got);                                                           \
    const std::vector<double>& d2r_want_ = (want);                                                        \
    D2R_EXPECT_CLOSE(d2r_got_, d2r_want_, (rtol), (atol_rel) * std::max(::d2r::emulation::max_abs(d2r_want_), 1e-30)); \
  } while (0)

inline std::vector<float> uniform(TestRng& rng, std::int64_t count, double lo, double hi) {
  return rng.vector<float>(static_cast<std::size_t>(count), lo, hi);
}

inline std::int64_t packed_size(std::int64_t n) { return n * (n + 1) / 2; }

inline std::int64_t param_count(RewardForm form, std::int64_t n) {
  return form == RewardForm::scalar ? 1 : form == RewardForm::diagonal ? n : packed_size(n);
}

/// Reward parameters: positive u / U_dd; for full, R with a positive diagonal and off-diagonal
/// entries of size off.
inline std::vector<float> reward_params(RewardForm form, std::int64_t n, TestRng& rng, double off = 0.3) {
  std::vector<float> p(static_cast<std::size_t>(param_count(form, n)));
  for (auto& v : p) v = static_cast<float>(form == RewardForm::full ? rng.uniform(-off, off) : rng.uniform(0.4, 1.4));
  if (form == RewardForm::full)
    for (std::int64_t i = 0; i < n; ++i) p[static_cast<std::size_t>(i * (i + 1) / 2 + i)] = static_cast<float>(rng.uniform(0.5, 1.4));
  return p;
}

/// Raw packed lower triangles (rows x n(n+1)/2): diagonal raw values in [-0.5, 1], off-diagonal
/// entries of size 0.5/sqrt(n) (well conditioned factors).
inline std::vector<float> raw_tril(TestRng& rng, std::int64_t rows, std::int64_t n) {
  const std::int64_t P = packed_size(n);
  std::vector<float> t(static_cast<std::size_t>(rows * P));
  const double off = 0.5 / std::sqrt(static_cast<double>(n));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j)
        t[static_cast<std::size_t>(r * P + i * (i + 1) / 2 + j)] =
            static_cast<float>(i == j ? rng.uniform(-0.5, 1.0) : rng.uniform(-off, off));
  return t;
}

inline const char* form_name(RewardForm f) {
  switch (f) {
    case RewardForm::scalar: return "scalar";
    case RewardForm::diagonal: return "diagonal";
    case RewardForm::full: return "full";
  }
  return "?";
}

inline const char* transform_name(Transform t) {
  switch (t) {
    case Transform::none: return "none";
    case Transform::normalize: return "normalize";
    case Transform::rbf: return "rbf";
    case Transform::leave_one_out: return "leave_one_out";
    case Transform::standardize: return "standardize";
  }
  return "?";
}

}  // namespace d2r::emulation

// Readable test parameters in gtest's messages (found by argument-dependent lookup).
namespace d2r {
inline void PrintTo(RewardForm f, std::ostream* os) { *os << emulation::form_name(f); }
inline void PrintTo(Transform t, std::ostream* os) { *os << emulation::transform_name(t); }
}  // namespace d2r

namespace d2r::emulation {

/// Transforms that need G >= 2.
inline bool needs_two(Transform t) {
  return t == Transform::leave_one_out || t == Transform::standardize || t == Transform::normalize;
}

/// A clip c in a gap of the sorted |pd·log p| values (above their median), so that no value sits
/// within float rounding of c and the float kernel and the double reference agree on which terms
/// are clipped. 0 when there is no such gap.
inline double clip_in_gap(const std::vector<double>& log_prob, double per_dim) {
  std::vector<double> x{0.0};
  for (double v : log_prob) x.push_back(std::abs(per_dim * v));
  std::sort(x.begin(), x.end());
  for (std::size_t i = x.size() / 2 + 1; i < x.size(); ++i)
    if (x[i] - x[i - 1] > 1e-3 * (1 + x[i])) return 0.5 * (x[i] + x[i - 1]);
  return 0.0;
}

}  // namespace d2r::emulation
