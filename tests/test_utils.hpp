#pragma once
// Shared test support: the GPU gate, guarded (sentinel-padded) buffers, comparisons.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
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
      GTEST_SKIP() << "no CUDA device: GPU-vs-reference test not run";                     \
    }                                                                                      \
  } while (0)

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
      } else if (std::memcmp(&all[i], &kSentinelBits, sizeof(T)) != 0) {
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
      if (std::memcmp(&v, &kSentinelBits, sizeof(T)) != 0) return false;
    return true;
  }
  static T sentinel() {
    T v;
    std::memcpy(&v, &kSentinelBits, sizeof(T));
    return v;
  }

 private:
  // A NaN with a recognisable payload (for float: 0x7fc0dead; for int32 the same bits).
  static constexpr std::uint64_t kSentinelBits = sizeof(T) == 8 ? 0x7ff80000deadbeefULL : 0x7fc0deadULL;
  std::int64_t rows_, cols_, stride_;
  Buffer<T> storage_;
};

/// Largest |a - b| / (atol + rtol |b|); the comparison passes when it is <= 1.
template <class A, class B>
double worst_ratio(const std::vector<A>& actual, const std::vector<B>& expected, double rtol, double atol,
                   std::int64_t* worst_index = nullptr) {
  double worst = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double a = static_cast<double>(actual[i]), e = static_cast<double>(expected[i]);
    const double r = std::isnan(a) != std::isnan(e) ? INFINITY : (std::isnan(e) ? 0.0 : std::abs(a - e) / (atol + rtol * std::abs(e)));
    if (r > worst) {
      worst = r;
      if (worst_index) *worst_index = static_cast<std::int64_t>(i);
    }
  }
  return worst;
}

#define D2R_EXPECT_CLOSE(actual, expected, rtol, atol)                                                       \
  do {                                                                                                      \
    std::int64_t d2r_i_ = -1;                                                                               \
    const double d2r_w_ = ::d2r::test::worst_ratio(actual, expected, rtol, atol, &d2r_i_);                  \
    EXPECT_LE(d2r_w_, 1.0) << "worst element " << d2r_i_ << ": actual " << (actual)[d2r_i_] << " expected " \
                           << (expected)[d2r_i_] << " (rtol " << (rtol) << ", atol " << (atol) << ")";      \
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
