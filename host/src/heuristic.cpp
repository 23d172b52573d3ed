// The heuristic reward solver: closed forms of the Gaussian theory on the targets' covariance.
#include "d2r/heuristic.hpp"

#include <cmath>
#include <vector>

#include "host/src/validate.hpp"

namespace d2r {
namespace {

using detail::MatrixArg;

/// The matrix in host memory as packed double rows (one copy for device memory).
template <class T>
std::vector<double> to_host(const Context& ctx, MatrixView<const T> m) {
  std::vector<T> raw(static_cast<std::size_t>((m.rows - 1) * m.row_stride + m.cols));
  ctx.to_host(raw.data(), m.data, raw.size() * sizeof(T));
  std::vector<double> out(static_cast<std::size_t>(m.rows * m.cols));
  for (std::int64_t r = 0; r < m.rows; ++r)
    for (std::int64_t c = 0; c < m.cols; ++c) out[r * m.cols + c] = static_cast<double>(raw[r * m.row_stride + c]);
  return out;
}

template <class T>
void to_device(const Context& ctx, const std::vector<double>& values, T* dst) {
  const std::vector<T> cast(values.begin(), values.end());
  ctx.from_host(dst, cast.data(), cast.size() * sizeof(T));
}

/// Unbiased covariance (n x n, row-major) of N x n packed rows, two-pass for accuracy.
std::vector<double> covariance(const std::vector<double>& y, std::int64_t N, std::int64_t n) {
  std::vector<double> mean(n, 0.0), cov(n * n, 0.0);
  for (std::int64_t r = 0; r < N; ++r)
    for (std::int64_t i = 0; i < n; ++i) mean[i] += y[r * n + i] / static_cast<double>(N);
  for (std::int64_t r = 0; r < N; ++r)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j) cov[i * n + j] += (y[r * n + i] - mean[i]) * (y[r * n + j] - mean[j]);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j <= i; ++j) cov[j * n + i] = cov[i * n + j] /= static_cast<double>(N - 1);
  return cov;
}

/// Lower Cholesky factor of an SPD matrix (row-major), or an empty vector when not SPD.
std::vector<double> cholesky(const std::vector<double>& a, std::int64_t n) {
  std::vector<double> l(n * n, 0.0);
  for (std::int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (std::int64_t k = 0; k < j; ++k) d -= l[j * n + k] * l[j * n + k];
    if (!(d > 0.0)) return {};
    l[j * n + j] = std::sqrt(d);
    for (std::int64_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (std::int64_t k = 0; k < j; ++k) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / l[j * n + j];
    }
  }
  return l;
}

template <class T>
std::vector<double> checked_covariance(Context& ctx, std::string_view fn, MatrixView<const T> targets) {
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(targets.rows >= 2 && targets.cols >= 1, fn, "targets",
              "expected N >= 2 rows (the covariance divides by N - 1) and n >= 1 columns, got {} x {}", targets.rows,
              targets.cols);
  detail::check_matrix(ctx, fn, MatrixArg("targets", targets), targets.rows, targets.cols);
  detail::check_values<T>(ctx, fn, "targets", targets, detail::ValueRule::finite);
  return covariance(to_host(ctx, targets), targets.rows, targets.cols);
}

}  // namespace

template <class T>
void target_covariance(Context& ctx, ConstMatrix<T> targets, MatrixView<T> out) {
  constexpr std::string_view fn = "target_covariance";
  const std::int64_t n = targets.cols;
  const MatrixArg o("out", out);
  detail::check_matrix(ctx, fn, o, n, n);
  detail::check_disjoint(fn, o, MatrixArg("targets", targets));
  const std::vector<double> cov = checked_covariance(ctx, fn, targets);
  std::vector<double> strided(static_cast<std::size_t>((n - 1) * out.row_stride + n), 0.0);
  {  // keep the bytes between rows as they are
    std::vector<T> current(strided.size());
    ctx.to_host(current.data(), out.data, current.size() * sizeof(T));
    strided.assign(current.begin(), current.end());
  }
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) strided[i * out.row_stride + j] = cov[i * n + j];
  to_device(ctx, strided, out.data);
}

template <class T>
void heuristic_reward(Context& ctx, ConstMatrix<T> targets, std::type_identity_t<T> entropy_weight, RewardForm form,
                      VectorView<T> params) {
  constexpr std::string_view fn = "heuristic_reward";
  const std::int64_t n = targets.cols;
  D2R_EXPECTS(entropy_weight > T(0) && std::isfinite(entropy_weight), fn, "entropy_weight",
              "expected a finite λ > 0 (U scales with λ), got {}", entropy_weight);
  const std::int64_t count = reward_param_count(form, n);
  D2R_EXPECTS(count > 0, fn, "form", "unknown reward form");
  const MatrixArg p("params", params);
  detail::check_matrix(ctx, fn, p, 1, count);
  detail::check_disjoint(fn, p, MatrixArg("targets", targets));
  const std::vector<double> cov = checked_covariance(ctx, fn, targets);
  const double lambda = static_cast<double>(entropy_weight);
  std::vector<double> out(static_cast<std::size_t>(count));
  if (form == RewardForm::scalar) {
    double trace = 0;
    for (std::int64_t i = 0; i < n; ++i) trace += cov[i * n + i];
    D2R_EXPECTS(trace > 0, fn, "targets", "the targets do not vary (tr Σ̂ = {}); no finite reward scale fits them", trace);
    out[0] = lambda * static_cast<double>(n) / (2 * trace);
  } else if (form == RewardForm::diagonal) {
    for (std::int64_t i = 0; i < n; ++i) {
      D2R_EXPECTS(cov[i * n + i] > 0, fn, "targets", "column {} does not vary (Σ̂_ii = {})", i, cov[i * n + i]);
      out[i] = lambda / (2 * cov[i * n + i]);
    }
  } else {
    // U = (λ/2) Σ̂⁻¹ = (λ/2) L⁻ᵀ L⁻¹ with Σ̂ = L Lᵀ. Its Cholesky factor R (U = R Rᵀ) follows from
    // the reversal trick: with J the exchange matrix, J Σ̂ J = M Mᵀ gives U = R Rᵀ with
    // R = sqrt(λ/2) J M⁻ᵀ J, lower triangular with a positive diagonal.
    std::vector<double> rev(n * n);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) rev[i * n + j] = cov[(n - 1 - i) * n + (n - 1 - j)];
    const std::vector<double> m = cholesky(rev, n);
    D2R_EXPECTS(!m.empty(), fn, "targets",
                "the targets' covariance is not positive definite (N = {} rows in n = {} dimensions, or collinear "
                "columns), so (λ/2)Σ̂⁻¹ does not exist; use the diagonal or scalar form", targets.rows, n);
    // inv = M⁻¹ (lower triangular) by forward substitution.
    std::vector<double> inv(n * n, 0.0);
    for (std::int64_t c = 0; c < n; ++c) {
      for (std::int64_t i = c; i < n; ++i) {
        double s = i == c ? 1.0 : 0.0;
        for (std::int64_t k = c; k < i; ++k) s -= m[i * n + k] * inv[k * n + c];
        inv[i * n + c] = s / m[i * n + i];
      }
    }
    // R_ij = sqrt(λ/2) (M⁻ᵀ)_{n-1-i, n-1-j} = sqrt(λ/2) inv_{n-1-j, n-1-i}, nonzero for j <= i.
    const double scale = std::sqrt(lambda / 2);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j) out[i * (i + 1) / 2 + j] = scale * inv[(n - 1 - j) * n + (n - 1 - i)];
  }
  to_device(ctx, out, params.data);
}

double heuristic_class_beta(Context& ctx, VectorView<const std::int32_t> labels, std::int64_t classes,
                            double entropy_weight) {
  constexpr std::string_view fn = "heuristic_class_beta";
  D2R_EXPECTS(entropy_weight > 0 && std::isfinite(entropy_weight), fn, "entropy_weight",
              "expected a finite λ > 0, got {}", entropy_weight);
  D2R_EXPECTS(classes >= 2, fn, "classes", "expected classes >= 2, got {}", classes);
  D2R_EXPECTS(labels.size >= 2, fn, "labels", "expected N >= 2 labels, got {}", labels.size);
  detail::check_matrix(ctx, fn, MatrixArg("labels", labels), 1, labels.size);
  std::vector<std::int32_t> host(static_cast<std::size_t>(labels.size));
  ctx.to_host(host.data(), labels.data, host.size() * sizeof(std::int32_t));
  std::vector<double> counts(static_cast<std::size_t>(classes), 0.0);
  for (std::size_t i = 0; i < host.size(); ++i) {
    D2R_EXPECTS(host[i] >= 0 && host[i] < classes, fn, "labels", "element {} is {}; expected a class index in [0, {})",
                i, host[i], classes);
    counts[host[i]] += 1;
  }
  const double N = static_cast<double>(labels.size);
  double purity = 0;
  for (double c : counts) purity += (c / N) * (c / N);
  D2R_EXPECTS(purity < 1.0, fn, "labels", "every label is the same class; the heuristic β* = λC/(2·N/(N−1)·(1 − Σp̂²)) "
              "is infinite");
  return entropy_weight * static_cast<double>(classes) / (2 * N / (N - 1) * (1 - purity));
}

template void target_covariance<float>(Context&, ConstMatrix<float>, MatrixView<float>);
template void target_covariance<double>(Context&, ConstMatrix<double>, MatrixView<double>);
template void heuristic_reward<float>(Context&, ConstMatrix<float>, std::type_identity_t<float>, RewardForm,
                                      VectorView<float>);
template void heuristic_reward<double>(Context&, ConstMatrix<double>, std::type_identity_t<double>, RewardForm,
                                       VectorView<double>);

}  // namespace d2r
