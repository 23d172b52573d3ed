#pragma once
// Shared test support: the GPU gate, guarded (sentinel-padded) buffers, comparisons.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "d2r/d2r.hpp"

namespace d2r::test {

/// True when a CUDA device is usable. Probed once, never from a static initialiser.
inline bool gpu_available() {
  static const bool available = d2r::cuda_device_available();
  return available;
}

/// D2R_EXPECT_GPU=1 turns "skipped for lack of a GPU" into a failure.
inline bool gpu_expected() {
  const char* v = std::getenv("D2R_EXPECT_GPU");
  return v != nullptr && std::string(v) == "1";
}

/// First statement of every GPU test.
#define D2R_REQUIRE_GPU()                                                                   \
  do {                                                                                     \
    if (!::d2r::test::gpu_available()) {                                                   \
      if (::d2r::test::gpu_expected()) FAIL() << "D2R_EXPECT_GPU=1 but no CUDA device is usable"; \
      GTEST_SKIP() << (D2R_WITH_CUDA ? "no CUDA device: GPU-vs-reference test not run"      \
                                     : "d2r was built without CUDA (-DD2R_ENABLE_CUDA=OFF): GPU test not run"); \
    }                                                                                      \
  } while (0)

/// The bits GuardedMatrix<T> fills its buffers with: a quiet NaN with a recognisable payload
/// (float 0x7fc0dead; double 0x7ff80000deadbeef; a 4- or 8-byte integer holds the same bits).
template <class T>
inline constexpr std::uint64_t kSentinelBits = sizeof(T) == 8 ? 0x7ff80000deadbeefULL : 0x7fc0deadULL;

/// True when `v` has exactly the bits of GuardedMatrix<T>'s sentinel, i.e. an element nobody
/// wrote. Compare in the element's own type: a float sentinel widened to double is not one.
/// Every test that expects a NaN output must also require !is_sentinel (a kernel that skips an
/// element leaves the sentinel, which is a NaN too).
template <class T>
  requires(std::is_arithmetic_v<T> && (sizeof(T) == 4 || sizeof(T) == 8))
bool is_sentinel(T v) {
  if constexpr (sizeof(T) == 8) {
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    return bits == kSentinelBits<T>;
  } else {
    std::uint32_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    return bits == static_cast<std::uint32_t>(kSentinelBits<T>);
  }
}

/// A NaN that was written (not the never-written sentinel): what a "NaN expected" check asks.
template <class T>
  requires std::is_floating_point_v<T>
bool is_written_nan(T v) {
  return std::isnan(v) && !is_sentinel(v);
}

/// A matrix in a backend's memory, surrounded by sentinel padding (before, after, and a gap at
/// the end of every row) so that out-of-bounds writes are detected. The view has
/// row_stride = cols + kGap.
template <class T>
class GuardedMatrix {
 public:
  static constexpr std::int64_t kPad = 64;
  static constexpr std::int64_t kGap = 3;

  GuardedMatrix(const Context& ctx, std::int64_t rows, std::int64_t cols)
      : rows_(rows), cols_(cols), stride_(cols + kGap),
        storage_(ctx, static_cast<std::size_t>(2 * kPad + rows * stride_)) {
    std::vector<T> init(storage_.size());
    for (auto& v : init) v = sentinel();
    storage_.copy_from_host(init);
  }
  /// Fills the logical elements from a packed rows x cols host array.
  void fill(const std::vector<T>& packed) {
    std::vector<T> all = storage_.to_host();
    for (std::int64_t r = 0; r < rows_; ++r)
      for (std::int64_t c = 0; c < cols_; ++c) all[kPad + r * stride_ + c] = packed[r * cols_ + c];
    storage_.copy_from_host(all);
  }
  [[nodiscard]] MatrixView<T> view() { return {storage_.data() + kPad, rows_, cols_, stride_}; }
  [[nodiscard]] MatrixView<const T> cview() const { return {storage_.data() + kPad, rows_, cols_, stride_}; }
  [[nodiscard]] VectorView<T> vector() { return {storage_.data() + kPad, rows_ * cols_}; }

  /// Packed logical values; records a test failure if any padding byte changed.
  [[nodiscard]] std::vector<T> values_checked() const {
    const std::vector<T> all = storage_.to_host();
    std::vector<T> out(static_cast<std::size_t>(rows_ * cols_));
    std::int64_t touched = 0;
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(all.size()); ++i) {
      const std::int64_t j = i - kPad;
      const bool logical = j >= 0 && j < rows_ * stride_ && (j % stride_) < cols_;
      if (logical) {
        out[(j / stride_) * cols_ + j % stride_] = all[i];
      } else if (!is_sentinel(all[i])) {
        ++touched;
      }
    }
    EXPECT_EQ(touched, 0) << "elements outside the view were written";
    return out;
  }
  /// True when no logical element was written either (for bad-input tests).
  [[nodiscard]] bool untouched() const {
    const std::vector<T> all = storage_.to_host();
    for (const T& v : all)
      if (!is_sentinel(v)) return false;
    return true;
  }
  static T sentinel() {
    T v;
    if constexpr (sizeof(T) == 8) {
      const std::uint64_t bits = kSentinelBits<T>;
      std::memcpy(&v, &bits, sizeof(T));
    } else {
      const auto bits = static_cast<std::uint32_t>(kSentinelBits<T>);
      std::memcpy(&v, &bits, sizeof(T));
    }
    return v;
  }

 private:
  std::int64_t rows_, cols_, stride_;
  Buffer<T> storage_;
};

/// |a - b| / (atol + rtol |b|) for one element: 0 when both are NaNs that were written (a NaN
/// the reference also produces), infinite when only one is NaN or either is the never-written
/// sentinel of GuardedMatrix (which is a NaN too: "both NaN" must not pass for an element the
/// code under test never wrote).
template <class A, class B>
double element_ratio(A actual, B expected, double rtol, double atol) {
  if constexpr (std::is_floating_point_v<A>) {
    if (is_sentinel(actual)) return INFINITY;
  }
  if constexpr (std::is_floating_point_v<B>) {
    if (is_sentinel(expected)) return INFINITY;
  }
  const double a = static_cast<double>(actual), e = static_cast<double>(expected);
  if (std::isnan(a) || std::isnan(e)) return std::isnan(a) && std::isnan(e) ? 0.0 : INFINITY;
  return std::abs(a - e) / (atol + rtol * std::abs(e));
}

/// Largest |a - b| / (atol + rtol |b|); the comparison passes when it is <= 1 (element_ratio:
/// both-NaN counts as equal unless either is the sentinel). Different sizes give infinity.
template <class A, class B>
double worst_ratio(const std::vector<A>& actual, const std::vector<B>& expected, double rtol, double atol,
                   std::int64_t* worst_index = nullptr) {
  if (actual.size() != expected.size()) return INFINITY;
  double worst = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double r = element_ratio(actual[i], expected[i], rtol, atol);
    if (r > worst) {
      worst = r;
      if (worst_index) *worst_index = static_cast<std::int64_t>(i);
    }
  }
  return worst;
}

/// Empty when `actual` matches `expected` (worst_ratio <= 1); else a description of the worst
/// element (its index, both values, whether it is the never-written sentinel).
template <class A, class B>
std::string close_failure(const std::vector<A>& actual, const std::vector<B>& expected, double rtol, double atol) {
  if (actual.size() != expected.size())
    return "size mismatch: actual has " + std::to_string(actual.size()) + " elements, expected " +
           std::to_string(expected.size());
  std::int64_t i = -1;
  const double w = worst_ratio(actual, expected, rtol, atol, &i);
  if (w <= 1.0) return {};
  const auto at = static_cast<std::size_t>(i);
  std::ostringstream os;
  os << "worst element " << i << " (" << w << "x the tolerance): actual " << +actual[at];
  if constexpr (std::is_floating_point_v<A>) {
    if (is_sentinel(actual[at])) os << " (the sentinel: never written)";
  }
  os << " expected " << +expected[at];
  if constexpr (std::is_floating_point_v<B>) {
    if (is_sentinel(expected[at])) os << " (the sentinel: never written)";
  }
  os << " (rtol " << rtol << ", atol " << atol << ")";
  return os.str();
}

/// actual ≈ expected elementwise (vectors; each argument evaluated once).
#define D2R_EXPECT_CLOSE(actual, expected, rtol, atol)                                                           \
  do {                                                                                                          \
    const std::string d2r_failure_ = ::d2r::test::close_failure((actual), (expected), (rtol), (atol));          \
    EXPECT_TRUE(d2r_failure_.empty()) << d2r_failure_;                                                          \
  } while (0)

/// Runs `call` and expects a d2r::Error naming `argument` whose message contains `words` (and,
/// when given, of `kind`): the shape of every bad-input test.
inline void expect_error(const std::function<void()>& call, const std::string& argument, const std::string& words,
                         std::optional<ErrorKind> kind = std::nullopt) {
  try {
    call();
    ADD_FAILURE() << "expected d2r::Error for argument '" << argument << "'";
  } catch (const Error& e) {
    if (kind) {
      EXPECT_EQ(e.kind(), *kind) << e.what();
    }
    EXPECT_EQ(e.argument(), argument) << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << "message: " << e.what();
  }
}

/// Central difference of f() with respect to param[i] (restored afterwards).
inline double central_difference(std::vector<double>& param, std::size_t i, const std::function<double()>& f,
                                 double h = 1e-6) {
  const double saved = param[i];
  param[i] = saved + h;
  const double up = f();
  param[i] = saved - h;
  const double down = f();
  param[i] = saved;
  return (up - down) / (2 * h);
}

/// Deterministic pseudo-random test inputs (a tiny LCG, so tests never depend on std::random_device).
class TestRng {
 public:
  explicit TestRng(std::uint64_t seed) : state_(seed * 6364136223846793005ULL + 1442695040888963407ULL) {}
  double uniform(double lo, double hi) {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * static_cast<double>(state_ >> 11) * (1.0 / 9007199254740992.0);
  }
  template <class T>
  std::vector<T> vector(std::size_t n, double lo, double hi) {
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(uniform(lo, hi));
    return v;
  }

 private:
  std::uint64_t state_;
};

}  // namespace d2r::test
