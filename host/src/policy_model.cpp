// GaussianPolicy: an Mlp trunk feeding a diagonal or Cholesky Gaussian head, with the losses of
// the trainers composed of the primitives (network forward/backward, fused PG head, head VJPs).
#include "d2r/policy_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "d2r/error.hpp"
#include "host/src/validate.hpp"

namespace d2r {

const char* to_string(GaussianHead head) noexcept {
  switch (head) {
    case GaussianHead::diagonal: return "diagonal";
    case GaussianHead::cholesky: return "cholesky";
  }
  return "unknown";
}

namespace {

std::int64_t head_width(GaussianHead head, std::int64_t n) {
  return head == GaussianHead::diagonal ? 2 * n : n + n * (n + 1) / 2;
}

MlpSpec with_outputs(MlpSpec spec, std::int64_t dims, GaussianHead head) {
  constexpr std::string_view fn = "GaussianPolicy";
  D2R_EXPECTS(head == GaussianHead::diagonal || head == GaussianHead::cholesky, fn, "head",
              "expected GaussianHead::diagonal or GaussianHead::cholesky, got value {}", static_cast<int>(head));
  D2R_EXPECTS(dims >= 1, fn, "dims", "expected n >= 1 target dimensions, got {}", dims);
  D2R_EXPECTS(head != GaussianHead::cholesky || dims <= kMaxCholeskyDim, fn, "dims",
              "the Cholesky head supports n <= {}, got {}", kMaxCholeskyDim, dims);
  D2R_EXPECTS(dims <= (std::int64_t{1} << 20), fn, "dims", "expected n <= 2^20, got {}", dims);
  spec.outputs = head_width(head, dims);
  return spec;
}

double softplus_host(double x) { return x > 30 ? x : std::log1p(std::exp(x)); }

}  // namespace

template <class T>
GaussianPolicy<T>::GaussianPolicy(Context& ctx, MlpSpec trunk, std::int64_t dims, GaussianHead head,
                                  std::int64_t batch)
    : ctx_(ctx), net_(with_outputs(std::move(trunk), dims, head)), n_(dims), capacity_(batch), head_(head) {
  constexpr std::string_view fn = "GaussianPolicy";
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(batch >= 1, fn, "batch", "expected a batch capacity >= 1 rows, got {}", batch);
  const auto size = [](std::int64_t s) { return static_cast<std::size_t>(s); };
  const std::int64_t w = net_.outputs();
  out_ = Buffer<T>(ctx, size(batch * w));
  cache_ = Buffer<T>(ctx, size(std::max<std::int64_t>(net_.cache_elements(batch), 1)));
  d_out_ = Buffer<T>(ctx, size(batch * w));
  // The MSE cotangent only ever has its mean columns written: the rest stays zero.
  d_out_mse_ = Buffer<T>(ctx, std::vector<T>(size(batch * w), T(0)));
  log_prob_ = Buffer<T>(ctx, size(batch));
  d_log_prob_ = Buffer<T>(ctx, size(batch));
  row_loss_ = Buffer<T>(ctx, size(batch));
  zero_log_std_ = Buffer<T>(ctx, std::vector<T>(size(n_), T(0)));
  d_shared_ = Buffer<T>(ctx, size(n_));
}

template <class T>
void GaussianPolicy<T>::init(VectorView<T> params, std::uint64_t seed) {
  net_.init(ctx_, params, seed);
}

template <class T>
void GaussianPolicy<T>::check_call(std::string_view fn, ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y,
                                   VectorView<T> grad) const {
  D2R_EXPECTS(params.size == parameter_count(), fn, "params", "expected {} parameters ({}), got {}",
              parameter_count(), net_.describe(), params.size);
  D2R_EXPECTS(x.rows >= 1 && x.rows <= capacity_, fn, "x", "expected between 1 and {} rows (the batch capacity), got {}",
              capacity_, x.rows);
  D2R_EXPECTS(y.rows == x.rows, fn, "y", "expected {} rows (those of x), got {}", x.rows, y.rows);
  D2R_EXPECTS(y.cols == n_, fn, "y", "expected {} target columns, got {}", n_, y.cols);
  if (grad.data != nullptr || grad.size != 0) {
    D2R_EXPECTS(grad.size == parameter_count(), fn, "grad", "expected {} entries, got {}", parameter_count(), grad.size);
  }
}

template <class T>
VectorView<T> GaussianPolicy<T>::cache(std::int64_t rows) {
  const std::int64_t size = net_.cache_elements(rows);
  return size == 0 ? VectorView<T>{} : VectorView<T>{cache_.data(), size};
}

template <class T>
MatrixView<const T> GaussianPolicy<T>::run_forward(ConstVector<T> params, ConstMatrix<T> x) {
  const std::int64_t B = x.rows;
  const MatrixView<T> out = out_.matrix(x.rows, net_.outputs());
  net_.forward(ctx_, params, x, cache(B), out);
  return out;
}

template <class T>
DiagGaussian<T> GaussianPolicy<T>::diag_head(MatrixView<const T> out) const {
  return {MatrixView<const T>{out.data, out.rows, n_, out.row_stride},
          MatrixView<const T>{out.data + n_, out.rows, n_, out.row_stride}};
}

template <class T>
CholeskyGaussian<T> GaussianPolicy<T>::chol_head(MatrixView<const T> out) const {
  return {MatrixView<const T>{out.data, out.rows, n_, out.row_stride},
          MatrixView<const T>{out.data + n_, out.rows, out.cols - n_, out.row_stride}};
}

template <class T>
MatrixView<T> GaussianPolicy<T>::d_out(std::int64_t rows) {
  return d_out_.matrix(rows, net_.outputs());
}

template <class T>
void GaussianPolicy<T>::pg_gradient(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y,
                                    const MahalanobisReward<T>& reward, std::int64_t generations,
                                    const PgOptions<T>& options, DrawKey key, VectorView<T> grad,
                                    VectorView<T> row_reward) {
  constexpr std::string_view fn = "GaussianPolicy::pg_gradient";
  check_call(fn, params, x, y, grad);
  D2R_EXPECTS(grad.size == parameter_count(), fn, "grad", "expected {} entries, got {}", parameter_count(), grad.size);
  const std::int64_t B = x.rows;
  const MatrixView<const T> out = run_forward(params, x);
  const MatrixView<T> d = d_out(B);
  const ObjectiveRows<T> rows{VectorView<T>{row_loss_.data(), B}, row_reward};
  if (head_ == GaussianHead::diagonal) {
    pg_surrogate(ctx_, diag_head(out), y, reward, generations, options, key, rows,
                 DiagGaussianGrad<T>{MatrixView<T>{d.data, B, n_, d.row_stride},
                                     MatrixView<T>{d.data + n_, B, n_, d.row_stride}});
  } else {
    pg_surrogate(ctx_, chol_head(out), y, reward, generations, options, key, rows,
                 CholeskyGaussianGrad<T>{MatrixView<T>{d.data, B, n_, d.row_stride},
                                         MatrixView<T>{d.data + n_, B, d.cols - n_, d.row_stride}});
  }
  net_.backward(ctx_, params, x, cache(B), d, grad, {});
}

template <class T>
void GaussianPolicy<T>::exact_gradient(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y,
                                       const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                                       VectorView<T> grad, VectorView<T> row_reward) {
  constexpr std::string_view fn = "GaussianPolicy::exact_gradient";
  check_call(fn, params, x, y, grad);
  D2R_EXPECTS(grad.size == parameter_count(), fn, "grad", "expected {} entries, got {}", parameter_count(), grad.size);
  const std::int64_t B = x.rows;
  const MatrixView<const T> out = run_forward(params, x);
  const MatrixView<T> d = d_out(B);
  const ObjectiveRows<T> rows{VectorView<T>{row_loss_.data(), B}, row_reward};
  if (head_ == GaussianHead::diagonal) {
    exact_objective(ctx_, diag_head(out), y, reward, options, rows,
                    DiagGaussianGrad<T>{MatrixView<T>{d.data, B, n_, d.row_stride},
                                        MatrixView<T>{d.data + n_, B, n_, d.row_stride}});
  } else {
    exact_objective(ctx_, chol_head(out), y, reward, options, rows,
                    CholeskyGaussianGrad<T>{MatrixView<T>{d.data, B, n_, d.row_stride},
                                            MatrixView<T>{d.data + n_, B, d.cols - n_, d.row_stride}});
  }
  net_.backward(ctx_, params, x, cache(B), d, grad, {});
}

template <class T>
void GaussianPolicy<T>::nll_gradient(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y, VectorView<T> grad) {
  constexpr std::string_view fn = "GaussianPolicy::nll_gradient";
  check_call(fn, params, x, y, grad);
  D2R_EXPECTS(grad.size == parameter_count(), fn, "grad", "expected {} entries, got {}", parameter_count(), grad.size);
  const std::int64_t B = x.rows;
  if (d_log_prob_rows_ != B) {  // −1/B per row: refilled only when the batch size changes
    d_log_prob_.copy_from_host(std::vector<T>(static_cast<std::size_t>(B), T(-1) / T(B)));
    d_log_prob_rows_ = B;
  }
  const MatrixView<const T> out = run_forward(params, x);
  const MatrixView<T> d = d_out(B);
  const MatrixView<const T> d_lp{d_log_prob_.data(), B, 1, 1};
  if (head_ == GaussianHead::diagonal) {
    backward(ctx_, diag_head(out), y, d_lp, {},
             DiagGaussianGrad<T>{MatrixView<T>{d.data, B, n_, d.row_stride},
                                 MatrixView<T>{d.data + n_, B, n_, d.row_stride}});
  } else {
    backward(ctx_, chol_head(out), y, d_lp, {},
             CholeskyGaussianGrad<T>{MatrixView<T>{d.data, B, n_, d.row_stride},
                                     MatrixView<T>{d.data + n_, B, d.cols - n_, d.row_stride}});
  }
  net_.backward(ctx_, params, x, cache(B), d, grad, {});
}

template <class T>
void GaussianPolicy<T>::mse_gradient(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y, VectorView<T> grad) {
  constexpr std::string_view fn = "GaussianPolicy::mse_gradient";
  check_call(fn, params, x, y, grad);
  D2R_EXPECTS(grad.size == parameter_count(), fn, "grad", "expected {} entries, got {}", parameter_count(), grad.size);
  const std::int64_t B = x.rows;
  if (d_mse_rows_ != B) {  // −2/B per row (see below), refilled only when the batch size changes
    d_log_prob_mse_ = Buffer<T>(ctx_, std::vector<T>(static_cast<std::size_t>(B), T(-2) / T(B)));
    d_mse_rows_ = B;
  }
  const MatrixView<const T> out = run_forward(params, x);
  // ‖μ − y‖² = −2 log N(y; μ, I) + const, so the MSE gradient in μ is the unit-variance Gaussian
  // log-prob VJP with cotangent −2/B; the variance columns of the cotangent stay zero.
  const MatrixView<T> d = d_out_mse_.matrix(B, net_.outputs());
  const DiagGaussian<T> unit{MatrixView<const T>{out.data, B, n_, out.row_stride},
                             MatrixView<const T>{zero_log_std_.data(), 1, n_, n_}};
  backward(ctx_, unit, y, MatrixView<const T>{d_log_prob_mse_.data(), B, 1, 1}, {},
           DiagGaussianGrad<T>{MatrixView<T>{d.data, B, n_, d.row_stride}, d_shared_.matrix(1, n_)});
  net_.backward(ctx_, params, x, cache(B), d, grad, {});
}

template <class T>
void GaussianPolicy<T>::forward(ConstVector<T> params, ConstMatrix<T> x, MatrixView<T> out) {
  const std::int64_t B = x.rows;
  D2R_EXPECTS(B >= 1 && B <= capacity_, "GaussianPolicy::forward", "x",
              "expected between 1 and {} rows (the batch capacity), got {}", capacity_, B);
  net_.forward(ctx_, params, x, cache(B), out);
}

template <class T>
PolicyMetrics GaussianPolicy<T>::evaluate(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y) {
  constexpr std::string_view fn = "GaussianPolicy::evaluate";
  check_call(fn, params, x, y, {});
  const std::int64_t B = x.rows, w = net_.outputs();
  const MatrixView<const T> out = run_forward(params, x);
  const MatrixView<T> lp = log_prob_.matrix(B, 1);
  if (head_ == GaussianHead::diagonal) {
    log_prob(ctx_, diag_head(out), y, lp);
  } else {
    log_prob(ctx_, chol_head(out), y, lp);
  }
  const std::vector<T> out_host = out_.to_host(), lp_host = log_prob_.to_host();
  // y may be strided and on the device: copy its rows through a packed staging buffer.
  const std::vector<T> y_host = ctx_.to_host(MatrixView<const T>{y.data, B, n_, y.row_stride});
  double nll = 0, se = 0, sd = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    nll -= static_cast<double>(lp_host[static_cast<std::size_t>(b)]);
    const T* row = out_host.data() + b * w;
    for (std::int64_t d = 0; d < n_; ++d) {
      const double e = static_cast<double>(row[d]) - static_cast<double>(y_host[static_cast<std::size_t>(b * n_ + d)]);
      se += e * e;
      if (head_ == GaussianHead::diagonal) {
        sd += std::exp(static_cast<double>(row[n_ + d]));
      } else {  // √(Σ_j≤d L_dj²), L_dd = softplus(raw) + jitter
        const T* tril = row + n_ + d * (d + 1) / 2;
        double var = 0;
        for (std::int64_t j = 0; j < d; ++j) var += static_cast<double>(tril[j]) * static_cast<double>(tril[j]);
        const double diag = softplus_host(static_cast<double>(tril[d])) + 1e-5;
        sd += std::sqrt(var + diag * diag);
      }
    }
  }
  const double count = static_cast<double>(B * n_);
  return {nll / count, std::sqrt(se / count), sd / count};
}

template class GaussianPolicy<float>;
template class GaussianPolicy<double>;

// ------------------------------------------------------------------ CategoricalPolicy
namespace {
MlpSpec with_classes(MlpSpec spec, std::int64_t classes) {
  D2R_EXPECTS(classes >= 2 && classes <= kMaxCategoricalClasses, "CategoricalPolicy", "classes",
              "expected 2 <= C <= {} classes, got {}", kMaxCategoricalClasses, classes);
  spec.outputs = classes;
  return spec;
}
}  // namespace

template <class T>
CategoricalPolicy<T>::CategoricalPolicy(Context& ctx, MlpSpec trunk, std::int64_t classes, std::int64_t batch)
    : ctx_(ctx), net_(with_classes(std::move(trunk), classes)), classes_(classes), capacity_(batch) {
  constexpr std::string_view fn = "CategoricalPolicy";
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(batch >= 1, fn, "batch", "expected a batch capacity >= 1 rows, got {}", batch);
  const auto size = [](std::int64_t v) { return static_cast<std::size_t>(v); };
  out_ = Buffer<T>(ctx, size(batch * classes));
  cache_ = Buffer<T>(ctx, size(std::max<std::int64_t>(net_.cache_elements(batch), 1)));
  d_out_ = Buffer<T>(ctx, size(batch * classes));
  row_loss_ = Buffer<T>(ctx, size(batch));
  d_log_prob_ = Buffer<T>(ctx, size(batch));
}

template <class T>
void CategoricalPolicy<T>::init(VectorView<T> params, std::uint64_t seed) {
  net_.init(ctx_, params, seed);
}

template <class T>
VectorView<T> CategoricalPolicy<T>::cache(std::int64_t rows) {
  const std::int64_t size = net_.cache_elements(rows);
  return size == 0 ? VectorView<T>{} : VectorView<T>{cache_.data(), size};
}

template <class T>
void CategoricalPolicy<T>::check_call(std::string_view fn, ConstVector<T> params, ConstMatrix<T> x,
                                      VectorView<const std::int32_t> labels, VectorView<T> grad,
                                      bool need_grad) const {
  D2R_EXPECTS(params.size == parameter_count(), fn, "params", "expected {} parameters ({}), got {}",
              parameter_count(), net_.describe(), params.size);
  D2R_EXPECTS(x.rows >= 1 && x.rows <= capacity_, fn, "x", "expected between 1 and {} rows (the batch capacity), got {}",
              capacity_, x.rows);
  D2R_EXPECTS(labels.size == x.rows, fn, "labels", "expected {} labels (the rows of x), got {}", x.rows, labels.size);
  detail::check_indices(ctx_, fn, "labels", MatrixView<const std::int32_t>{labels.data, 1, labels.size, labels.size},
                        static_cast<std::int32_t>(classes_));
  if (need_grad) {
    D2R_EXPECTS(grad.size == parameter_count(), fn, "grad", "expected {} entries, got {}", parameter_count(), grad.size);
  }
}

template <class T>
MatrixView<const T> CategoricalPolicy<T>::run_forward(ConstVector<T> params, ConstMatrix<T> x) {
  const std::int64_t B = x.rows;
  const MatrixView<T> out = out_.matrix(B, classes_);
  net_.forward(ctx_, params, x, cache(B), out);
  return out;
}

template <class T>
void CategoricalPolicy<T>::pg_gradient(ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels,
                                       const MahalanobisReward<T>& reward, std::int64_t generations,
                                       const PgOptions<T>& options, DrawKey key, VectorView<T> grad,
                                       VectorView<T> row_reward) {
  constexpr std::string_view fn = "CategoricalPolicy::pg_gradient";
  check_call(fn, params, x, labels, grad, true);
  const std::int64_t B = x.rows;
  const MatrixView<const T> logits = run_forward(params, x);
  const MatrixView<T> d = d_out_.matrix(B, classes_);
  pg_surrogate(ctx_, Categorical<T>{logits}, labels, reward, generations, options, key,
               ObjectiveRows<T>{VectorView<T>{row_loss_.data(), B}, row_reward}, CategoricalGrad<T>{d});
  net_.backward(ctx_, params, x, cache(B), d, grad, {});
}

template <class T>
void CategoricalPolicy<T>::exact_gradient(ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels,
                                          const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                                          VectorView<T> grad, VectorView<T> row_reward) {
  constexpr std::string_view fn = "CategoricalPolicy::exact_gradient";
  check_call(fn, params, x, labels, grad, true);
  const std::int64_t B = x.rows;
  const MatrixView<const T> logits = run_forward(params, x);
  const MatrixView<T> d = d_out_.matrix(B, classes_);
  exact_objective(ctx_, Categorical<T>{logits}, labels, reward, options,
                  ObjectiveRows<T>{VectorView<T>{row_loss_.data(), B}, row_reward}, CategoricalGrad<T>{d});
  net_.backward(ctx_, params, x, cache(B), d, grad, {});
}

template <class T>
void CategoricalPolicy<T>::nll_gradient(ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels,
                                        VectorView<T> grad) {
  constexpr std::string_view fn = "CategoricalPolicy::nll_gradient";
  check_call(fn, params, x, labels, grad, true);
  const std::int64_t B = x.rows;
  if (d_log_prob_rows_ != B) {
    d_log_prob_.copy_from_host(std::vector<T>(static_cast<std::size_t>(B), T(-1) / T(B)));
    d_log_prob_rows_ = B;
  }
  const MatrixView<const T> logits = run_forward(params, x);
  const MatrixView<T> d = d_out_.matrix(B, classes_);
  backward(ctx_, Categorical<T>{logits}, MatrixView<const std::int32_t>{labels.data, B, 1, 1},
           MatrixView<const T>{d_log_prob_.data(), B, 1, 1}, {}, CategoricalGrad<T>{d});
  net_.backward(ctx_, params, x, cache(B), d, grad, {});
}

template <class T>
void CategoricalPolicy<T>::forward(ConstVector<T> params, ConstMatrix<T> x, MatrixView<T> out) {
  D2R_EXPECTS(x.rows >= 1 && x.rows <= capacity_, "CategoricalPolicy::forward", "x",
              "expected between 1 and {} rows (the batch capacity), got {}", capacity_, x.rows);
  net_.forward(ctx_, params, x, cache(x.rows), out);
}

template <class T>
PolicyMetrics CategoricalPolicy<T>::evaluate(ConstVector<T> params, ConstMatrix<T> x,
                                             VectorView<const std::int32_t> labels) {
  constexpr std::string_view fn = "CategoricalPolicy::evaluate";
  check_call(fn, params, x, labels, {}, false);
  const std::int64_t B = x.rows, C = classes_;
  (void)run_forward(params, x);
  const std::vector<T> logits = out_.to_host();
  const std::vector<std::int32_t> y = ctx_.to_host(VectorView<const std::int32_t>{labels.data, B});
  double nll = 0, correct = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    const T* row = logits.data() + b * C;
    std::int64_t best = 0;
    double top = static_cast<double>(row[0]);
    for (std::int64_t k = 1; k < C; ++k) {
      if (static_cast<double>(row[k]) > top) top = static_cast<double>(row[k]), best = k;
    }
    double z = 0;
    for (std::int64_t k = 0; k < C; ++k) z += std::exp(static_cast<double>(row[k]) - top);
    const std::int32_t label = y[static_cast<std::size_t>(b)];
    nll += top + std::log(z) - static_cast<double>(row[label]);
    correct += best == label ? 1.0 : 0.0;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  return {nll / static_cast<double>(B), nan, nan, correct / static_cast<double>(B)};
}

template class CategoricalPolicy<float>;
template class CategoricalPolicy<double>;

}  // namespace d2r
