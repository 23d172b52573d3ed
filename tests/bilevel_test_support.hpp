#pragma once
// Shared support of the bilevel trainer's tests (bilevel_test.cpp, bilevel_minibatch_test.cpp):
// the Fig. 3 data of PAPER.md, Gaussian draws, row-major views and a temporary directory.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace d2r::test::bilevel {

using d2r::test::TestRng;

inline constexpr double kPi = 3.14159265358979323846;

template <class T>
inline d2r::MatrixView<const T> cmat(const std::vector<T>& v, std::int64_t rows, std::int64_t cols) {
  return {v.data(), rows, cols, cols};
}

inline double normal(TestRng& rng) {
  const double u1 = rng.uniform(1e-12, 1.0), u2 = rng.uniform(0.0, 1.0);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * kPi * u2);
}

/// PAPER.md Fig. 1/3 data: x ~ U[−5, 5]², y = x + loc + σε, `inputs` x values × 10 samples each.
struct Fig3Data {
  std::int64_t N;
  std::vector<double> x, y;
  Fig3Data(std::int64_t inputs, double loc, double sigma, std::uint64_t seed) : N(inputs * 10) {
    TestRng rng(seed);
    for (std::int64_t i = 0; i < inputs; ++i) {
      const double a = rng.uniform(-5, 5), b = rng.uniform(-5, 5);
      for (int j = 0; j < 10; ++j) {
        x.insert(x.end(), {a, b});
        y.push_back(a + loc + sigma * normal(rng));
        y.push_back(b + loc + sigma * normal(rng));
      }
    }
  }
  d2r::RegressionData<double> data() const { return {cmat(x, N, 2), cmat(y, N, 2)}; }
};

/// The mean of the last `count` entries of `v`.
inline double mean_of_last(const std::vector<double>& v, std::size_t count) {
  return std::accumulate(v.end() - static_cast<std::ptrdiff_t>(count), v.end(), 0.0) / static_cast<double>(count);
}

/// A fresh empty directory d2r_bilevel_test_<name> under the system temporary directory.
inline std::filesystem::path temp_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("d2r_bilevel_test_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace d2r::test::bilevel
