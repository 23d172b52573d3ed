#pragma once
// Test problems of the solver tests: dense symmetric matrices with chosen eigenvalues (so that
// ‖A‖, the condition number and definiteness are known exactly), a dense LU solve, and host
// operators over them. Everything in double; built independently of the library.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "d2r/solvers.hpp"
#include "tests/test_utils.hpp"

namespace d2r::test {

/// Row-major n x n symmetric matrix.
struct Dense {
  std::int64_t n = 0;
  std::vector<double> a;
  [[nodiscard]] double operator()(std::int64_t i, std::int64_t j) const { return a[i * n + j]; }
};

/// Q diag(λ) Qᵀ with Q a product of three Householder reflections drawn from `seed`.
inline Dense with_eigenvalues(const std::vector<double>& lambda, std::uint64_t seed) {
  const std::int64_t n = static_cast<std::int64_t>(lambda.size());
  Dense m{n, std::vector<double>(n * n, 0.0)};
  for (std::int64_t i = 0; i < n; ++i) m.a[i * n + i] = lambda[i];
  if (n == 1) return m;
  TestRng rng(seed);
  std::vector<double> hv(n);
  for (int reflection = 0; reflection < 3; ++reflection) {
    auto v = rng.vector<double>(n, -1, 1);
    double vv = 0;
    for (double e : v) vv += e * e;
    // M ← H M H with H = I − 2 v vᵀ / vᵀv: M H = M − 2 (M v) vᵀ / vᵀv, then H (M H) likewise.
    for (int side = 0; side < 2; ++side) {
      for (std::int64_t i = 0; i < n; ++i) {
        double s = 0;
        for (std::int64_t j = 0; j < n; ++j) s += m.a[i * n + j] * v[j];
        hv[i] = 2 * s / vv;
      }
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < n; ++j) m.a[i * n + j] -= hv[i] * v[j];
      // transpose in place: the second pass applies H from the left
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = i + 1; j < n; ++j) std::swap(m.a[i * n + j], m.a[j * n + i]);
    }
  }
  for (std::int64_t i = 0; i < n; ++i)  // exact symmetry
    for (std::int64_t j = i + 1; j < n; ++j) m.a[j * n + i] = m.a[i * n + j] = 0.5 * (m.a[i * n + j] + m.a[j * n + i]);
  return m;
}

/// n eigenvalues spaced geometrically from lo to hi (condition number hi / lo).
inline std::vector<double> geometric(std::int64_t n, double lo, double hi) {
  std::vector<double> l(n);
  for (std::int64_t i = 0; i < n; ++i) l[i] = n == 1 ? hi : lo * std::pow(hi / lo, static_cast<double>(i) / (n - 1));
  return l;
}

inline std::vector<double> matvec(const Dense& m, const std::vector<double>& x, double shift = 0) {
  std::vector<double> y(m.n, 0.0);
  for (std::int64_t i = 0; i < m.n; ++i) {
    double s = shift * x[i];
    for (std::int64_t j = 0; j < m.n; ++j) s += m(i, j) * x[j];
    y[i] = s;
  }
  return y;
}

/// Solves (m + shift I) x = b by LU with partial pivoting.
inline std::vector<double> dense_solve(const Dense& m, std::vector<double> b, double shift = 0) {
  const std::int64_t n = m.n;
  std::vector<double> a = m.a;
  for (std::int64_t i = 0; i < n; ++i) a[i * n + i] += shift;
  for (std::int64_t k = 0; k < n; ++k) {
    std::int64_t piv = k;
    for (std::int64_t i = k + 1; i < n; ++i)
      if (std::abs(a[i * n + k]) > std::abs(a[piv * n + k])) piv = i;
    if (piv != k) {
      for (std::int64_t j = 0; j < n; ++j) std::swap(a[k * n + j], a[piv * n + j]);
      std::swap(b[k], b[piv]);
    }
    for (std::int64_t i = k + 1; i < n; ++i) {
      const double f = a[i * n + k] / a[k * n + k];
      for (std::int64_t j = k; j < n; ++j) a[i * n + j] -= f * a[k * n + j];
      b[i] -= f * b[k];
    }
  }
  std::vector<double> x(n);
  for (std::int64_t i = n - 1; i >= 0; --i) {
    double s = b[i];
    for (std::int64_t j = i + 1; j < n; ++j) s -= a[i * n + j] * x[j];
    x[i] = s / a[i * n + i];
  }
  return x;
}

inline double norm2(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e * e;
  return std::sqrt(s);
}

template <class A, class B>
double distance(const std::vector<A>& a, const std::vector<B>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  return std::sqrt(s);
}

/// ‖b − (m + shift I) x‖.
template <class T>
double true_residual(const Dense& m, const std::vector<T>& x, const std::vector<double>& b, double shift = 0) {
  const std::vector<double> y = matvec(m, std::vector<double>(x.begin(), x.end()), shift);
  double s = 0;
  for (std::int64_t i = 0; i < m.n; ++i) s += (b[i] - y[i]) * (b[i] - y[i]);
  return std::sqrt(s);
}

/// Host operator y = m x in T (entries rounded to T), counting its applications.
template <class T>
class HostOperator {
 public:
  explicit HostOperator(const Dense& m) : n_(m.n), a_(m.a.begin(), m.a.end()) {}
  [[nodiscard]] LinearOperator<T> op() {
    return [this](ConstVector<T> x, VectorView<T> y) {
      ++applications_;
      for (std::int64_t i = 0; i < n_; ++i) {
        T s = 0;
        for (std::int64_t j = 0; j < n_; ++j) s += a_[i * n_ + j] * x[j];
        y[i] = s;
      }
    };
  }
  [[nodiscard]] std::int64_t applications() const { return applications_; }

 private:
  std::int64_t n_;
  std::vector<T> a_;
  std::int64_t applications_ = 0;
};

}  // namespace d2r::test
