// Public entry points of the Cholesky-Gaussian head (d2r/distributions.hpp, its overloads of
// d2r/objectives.hpp and d2r/second_order.hpp): validate, then run the CPU
// reference (host/reference/heads/cholesky_gaussian.hpp) or the CUDA kernels (kernels/heads/cholesky_gaussian/).
// Every check (shapes, strides, memory space, aliasing, hyperparameters, then
// values) runs before the first write to any output.
#include <cmath>
#include <string_view>
#include <type_traits>
#include <vector>

#include "d2r/distributions.hpp"
#include "d2r/objectives.hpp"
#include "d2r/second_order.hpp"
#include "host/reference/heads/cholesky_gaussian.hpp"
#include "host/reference/objectives.hpp"
#include "host/src/head_checks.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/heads/cholesky_gaussian/launch.hpp"
#include "kernels/objectives/launch.hpp"

namespace d2r {
namespace {

using detail::MatrixArg;

std::int64_t packed_size(std::int64_t n) { return n * (n + 1) / 2; }

/// Shapes, strides, memory space and the jitter (no reads of the data).
template <class T>
void check_head_shape(const Context& ctx, std::string_view fn, const CholeskyGaussian<T>& head) {
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(head.mean.rows >= 1 && head.mean.cols >= 1, fn, "head.mean",
              "expected B >= 1 rows and n >= 1 columns, got {} x {}", head.mean.rows, head.mean.cols);
  D2R_EXPECTS(head.mean.cols <= kMaxCholeskyDim, fn, "head.mean",
              "expected n <= {} columns (kMaxCholeskyDim), got {}", kMaxCholeskyDim, head.mean.cols);
  detail::check_matrix(ctx, fn, MatrixArg("head.mean", head.mean), head.mean.rows, head.mean.cols);
  const std::int64_t n = head.mean.cols;
  D2R_EXPECTS(head.tril.rows == 1 || head.tril.rows == head.mean.rows, fn, "head.tril",
              "expected {} rows (one factor per row) or 1 row (shared), got {}", head.mean.rows, head.tril.rows);
  D2R_EXPECTS(head.tril.cols == packed_size(n), fn, "head.tril",
              "expected n(n+1)/2 = {} columns (packed lower triangle for n = {}), got {}", packed_size(n), n,
              head.tril.cols);
  detail::check_matrix(ctx, fn, MatrixArg("head.tril", head.tril), head.tril.rows, packed_size(n));
  D2R_EXPECTS(std::isfinite(head.jitter) && head.jitter >= T(0), fn, "head.jitter",
              "expected a finite jitter >= 0, got {}", static_cast<double>(head.jitter));
}

/// Values (ValueChecks::full): finite mean and tril, and every L_ii = softplus(raw_ii) + jitter > 0.
template <class T>
void check_head_values(Context& ctx, std::string_view fn, const CholeskyGaussian<T>& head) {
  if (ctx.value_checks() == ValueChecks::none) return;
  detail::check_values<T>(ctx, fn, "head.mean", head.mean, detail::ValueRule::finite);
  detail::check_values<T>(ctx, fn, "head.tril", head.tril, detail::ValueRule::finite);
  const std::int64_t n = head.mean.cols;
  std::int64_t bad = -1;
  detail::run_on<T>(
      ctx,
      [&] {
        for (std::int64_t r = 0; r < head.tril.rows && bad < 0; ++r) {
          for (std::int64_t i = 0; i < n && bad < 0; ++i) {
            const T diagonal = math::softplus(head.tril(r, i * (i + 3) / 2)) + head.jitter;
            if (!(diagonal > T(0))) bad = r * n + i;
          }
        }
      },
      [&](const auto& ex) {
        auto* scratch = static_cast<std::int64_t*>(ctx.workspace(sizeof(std::int64_t)));
        bad = ex.launch(kernels::cholesky_gaussian::first_nonpositive_diagonal, head, scratch);
      });
  if (bad < 0) return;
  const std::int64_t r = bad / n, i = bad % n, c = i * (i + 3) / 2;
  T raw{};
  ctx.to_host(&raw, &head.tril(r, c), sizeof(T));
  detail::fail_argument(fn, "head.tril",
                        fmt::format("element ({}, {}) (diagonal entry L_{}{}) is {}: softplus(raw) + jitter ({}) = {};"
                                    " expected L_ii > 0 (raise the raw diagonal or the jitter)",
                                    r, c, i, i, static_cast<double>(raw), static_cast<double>(head.jitter),
                                    static_cast<double>(math::softplus(raw) + head.jitter)));
}

template <class T>
void check_output(std::string_view fn, const MatrixArg& out, const CholeskyGaussian<T>& head) {
  detail::check_disjoint(fn, out, MatrixArg("head.mean", head.mean));
  detail::check_disjoint(fn, out, MatrixArg("head.tril", head.tril));
}

}  // namespace

// Shared head validation (host/src/head_checks.hpp), for the objectives composed of this head.
namespace detail {
template <class T>
void check_head(Context& ctx, std::string_view fn, const CholeskyGaussian<T>& head) {
  check_head_shape(ctx, fn, head);
  check_head_values(ctx, fn, head);
}
template <class T>
std::vector<MatrixArg> check_head_grad(const Context& ctx, std::string_view fn, const CholeskyGaussian<T>& head,
                                       const CholeskyGaussianGrad<T>& grad, bool tangent) {
  const MatrixArg g_mean(tangent ? "grad_tangent.mean" : "grad.mean", grad.mean),
      g_tril(tangent ? "grad_tangent.tril" : "grad.tril", grad.tril);
  check_matrix(ctx, fn, g_mean, head.mean.rows, head.mean.cols);
  check_matrix(ctx, fn, g_tril, head.tril.rows, head.tril.cols);
  check_disjoint(fn, g_mean, g_tril);
  return {g_mean, g_tril};
}
template void check_head<float>(Context&, std::string_view, const CholeskyGaussian<float>&);
template void check_head<double>(Context&, std::string_view, const CholeskyGaussian<double>&);
template std::vector<MatrixArg> check_head_grad<float>(const Context&, std::string_view, const CholeskyGaussian<float>&,
                                                       const CholeskyGaussianGrad<float>&, bool);
template std::vector<MatrixArg> check_head_grad<double>(const Context&, std::string_view,
                                                        const CholeskyGaussian<double>&,
                                                        const CholeskyGaussianGrad<double>&, bool);
}  // namespace detail

template <class T>
void sample(Context& ctx, const CholeskyGaussian<T>& head, std::int64_t generations, DrawKey key,
            MatrixView<T> samples) {
  constexpr std::string_view fn = "sample";
  check_head_shape(ctx, fn, head);
  D2R_EXPECTS(generations >= 1, fn, "generations", "expected generations >= 1, got {}", generations);
  detail::check_draw_key(ctx, fn, key, head.mean.rows);
  const MatrixArg out("samples", samples);
  detail::check_matrix(ctx, fn, out, head.mean.rows * generations, head.mean.cols);
  check_output(fn, out, head);
  check_head_values(ctx, fn, head);
  detail::run_on<T>(
      ctx, [&] { reference::cholesky_gaussian::sample(head, generations, detail::draw_position(ctx, key), samples); },
      [&](const auto& ex) {
        ex.launch(kernels::cholesky_gaussian::sample, head, generations, detail::draw_position(ctx, key), samples);
      });
}

template <class T>
void log_prob(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> samples, MatrixView<T> out) {
  constexpr std::string_view fn = "log_prob";
  check_head_shape(ctx, fn, head);
  D2R_EXPECTS(out.cols >= 1, fn, "out", "expected B x G with G >= 1 generations, got {} x {}", out.rows, out.cols);
  const MatrixArg out_arg("out", out), samples_arg("samples", samples);
  detail::check_matrix(ctx, fn, out_arg, head.mean.rows, out.cols);
  detail::check_matrix(ctx, fn, samples_arg, head.mean.rows * out.cols, head.mean.cols);
  check_output(fn, out_arg, head);
  detail::check_disjoint(fn, out_arg, samples_arg);
  check_head_values(ctx, fn, head);
  detail::check_values<T>(ctx, fn, "samples", samples, detail::ValueRule::finite);
  detail::run_on<T>(
      ctx, [&] { reference::cholesky_gaussian::log_prob(head, samples, out); },
      [&](const auto& ex) { ex.launch(kernels::cholesky_gaussian::log_prob, head, samples, out); });
}

template <class T>
void entropy(Context& ctx, const CholeskyGaussian<T>& head, VectorView<T> out) {
  constexpr std::string_view fn = "entropy";
  check_head_shape(ctx, fn, head);
  const MatrixArg out_arg("out", out);
  detail::check_matrix(ctx, fn, out_arg, 1, head.mean.rows);
  check_output(fn, out_arg, head);
  check_head_values(ctx, fn, head);
  detail::run_on<T>(
      ctx, [&] { reference::cholesky_gaussian::entropy(head, out); },
      [&](const auto& ex) { ex.launch(kernels::cholesky_gaussian::entropy, head, out); });
}

template <class T>
void backward(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> samples,
              ConstMatrix<T> d_log_prob, ConstVector<T> d_entropy, const CholeskyGaussianGrad<T>& grad) {
  constexpr std::string_view fn = "backward";
  check_head_shape(ctx, fn, head);
  const std::int64_t batch = head.mean.rows, n = head.mean.cols;
  std::vector<MatrixArg> inputs{MatrixArg("head.mean", head.mean), MatrixArg("head.tril", head.tril)};
  detail::check_cotangent_shapes(ctx, fn, batch, n, samples, d_log_prob, d_entropy, inputs);
  const MatrixArg g_mean("grad.mean", grad.mean), g_tril("grad.tril", grad.tril);
  detail::check_matrix(ctx, fn, g_mean, batch, n);
  detail::check_matrix(ctx, fn, g_tril, head.tril.rows, packed_size(n));
  for (const MatrixArg& in : inputs) {
    detail::check_disjoint(fn, g_mean, in);
    detail::check_disjoint(fn, g_tril, in);
  }
  detail::check_disjoint(fn, g_mean, g_tril);
  check_head_values(ctx, fn, head);
  detail::check_cotangent_values<T>(ctx, fn, samples, d_log_prob, d_entropy);
  detail::run_on<T>(
      ctx, [&] { reference::cholesky_gaussian::backward(head, samples, d_log_prob, d_entropy, grad); },
      [&](const auto& ex) {
        void* workspace = ctx.workspace(ex.call(kernels::cholesky_gaussian::backward_workspace_bytes, head));
        ex.launch(kernels::cholesky_gaussian::backward, head, samples, d_log_prob, d_entropy, grad, workspace);
      });
}

#define D2R_INSTANTIATE(T)                                                                                   \
  template void sample<T>(Context&, const CholeskyGaussian<T>&, std::int64_t, DrawKey, MatrixView<T>);       \
  template void log_prob<T>(Context&, const CholeskyGaussian<T>&, ConstMatrix<T>, MatrixView<T>);       \
  template void entropy<T>(Context&, const CholeskyGaussian<T>&, VectorView<T>);                             \
  template void backward<T>(Context&, const CholeskyGaussian<T>&, ConstMatrix<T>, ConstMatrix<T>,  \
                            ConstVector<T>, const CholeskyGaussianGrad<T>&);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r

// ---------------------------------------------------------------- second order (d2r/second_order.hpp)

namespace d2r {
namespace {

using detail::MatrixArg;

/// The tangent has the shapes of the head outputs: mean B x n, tril with the head's tril rows
/// (B, or 1 when shared) x n(n+1)/2. Its jitter is ignored. Shapes only.
template <class T>
std::vector<MatrixArg> check_tangent_shape(const Context& ctx, std::string_view fn, const CholeskyGaussian<T>& head,
                                           const CholeskyGaussian<T>& tangent) {
  const MatrixArg t_mean("tangent.mean", tangent.mean), t_tril("tangent.tril", tangent.tril);
  detail::check_matrix(ctx, fn, t_mean, head.mean.rows, head.mean.cols);
  detail::check_matrix(ctx, fn, t_tril, head.tril.rows, head.tril.cols);
  return {t_mean, t_tril};
}

template <class T>
void check_tangent_values(Context& ctx, std::string_view fn, const CholeskyGaussian<T>& tangent) {
  detail::check_values<T>(ctx, fn, "tangent.mean", tangent.mean, detail::ValueRule::finite);
  detail::check_values<T>(ctx, fn, "tangent.tril", tangent.tril, detail::ValueRule::finite);
}

}  // namespace

template <class T>
void log_prob_jvp(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> samples,
                  const CholeskyGaussian<T>& tangent, MatrixView<T> out) {
  constexpr std::string_view fn = "log_prob_jvp";
  detail::check_head(ctx, fn, head);
  const std::int64_t batch = head.mean.rows, n = head.mean.cols;
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  for (const MatrixArg& t : check_tangent_shape(ctx, fn, head, tangent)) inputs.push_back(t);
  D2R_EXPECTS(out.cols >= 1, fn, "out", "expected B x G with G >= 1 generations, got {} x {}", out.rows, out.cols);
  const MatrixArg out_arg("out", out), samples_arg("samples", samples);
  detail::check_matrix(ctx, fn, out_arg, batch, out.cols);
  detail::check_matrix(ctx, fn, samples_arg, batch * out.cols, n);
  inputs.push_back(samples_arg);
  for (const MatrixArg& in : inputs) detail::check_disjoint(fn, out_arg, in);
  check_tangent_values(ctx, fn, tangent);
  detail::check_values<T>(ctx, fn, "samples", samples, detail::ValueRule::finite);
  detail::run_on<T>(
      ctx, [&] { reference::cholesky_gaussian::log_prob_jvp(head, samples, tangent, out); },
      [&](const auto& ex) { ex.launch(kernels::cholesky_gaussian::log_prob_jvp, head, samples, tangent, out); });
}

template <class T>
void backward_tangent(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> samples,
                      ConstMatrix<T> d_log_prob, ConstVector<T> d_entropy, const CholeskyGaussian<T>& tangent,
                      const CholeskyGaussianGrad<T>& grad_tangent) {
  constexpr std::string_view fn = "backward_tangent";
  detail::check_head(ctx, fn, head);
  const std::int64_t batch = head.mean.rows, n = head.mean.cols;
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  for (const MatrixArg& t : check_tangent_shape(ctx, fn, head, tangent)) inputs.push_back(t);
  detail::check_cotangent_shapes(ctx, fn, batch, n, samples, d_log_prob, d_entropy, inputs);
  // grad_tangent is shaped like the head (its tril has the head's tril rows); its two views are disjoint.
  const std::vector<MatrixArg> outputs = detail::check_head_grad(ctx, fn, head, grad_tangent, /*tangent=*/true);
  for (const MatrixArg& out : outputs) {
    for (const MatrixArg& in : inputs) detail::check_disjoint(fn, out, in);
  }
  check_tangent_values(ctx, fn, tangent);
  detail::check_cotangent_values<T>(ctx, fn, samples, d_log_prob, d_entropy);
  detail::run_on<T>(
      ctx,
      [&] {
        reference::cholesky_gaussian::backward_tangent(head, samples, d_log_prob, d_entropy, tangent, grad_tangent);
      },
      [&](const auto& ex) {
        void* workspace = ctx.workspace(ex.call(kernels::cholesky_gaussian::backward_tangent_workspace_bytes, head));
        ex.launch(kernels::cholesky_gaussian::backward_tangent, head, samples, d_log_prob, d_entropy, tangent,
                  grad_tangent, workspace);
      });
}

template <class T>
void exact_backward_tangent(Context& ctx, const CholeskyGaussian<T>& head, const MahalanobisReward<T>& reward,
                            const PgOptions<T>& options, const CholeskyGaussian<T>& tangent,
                            const CholeskyGaussianGrad<T>& grad_tangent) {
  constexpr std::string_view fn = "exact_backward_tangent";
  detail::check_head(ctx, fn, head);
  const std::int64_t batch = head.mean.rows, n = head.mean.cols;
  detail::check_reward(ctx, fn, reward, n);
  objective_common::check_options(fn, options, batch);
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  for (const MatrixArg& t : check_tangent_shape(ctx, fn, head, tangent)) inputs.push_back(t);
  inputs.emplace_back("reward.params", reward.params);
  // grad_tangent is shaped like the head (its tril has the head's tril rows); its two views are disjoint.
  const std::vector<MatrixArg> outputs = detail::check_head_grad(ctx, fn, head, grad_tangent, /*tangent=*/true);
  for (const MatrixArg& out : outputs) {
    for (const MatrixArg& in : inputs) detail::check_disjoint(fn, out, in);
  }
  check_tangent_values(ctx, fn, tangent);
  const auto s = objective_common::scale_of(head, options, 1);
  detail::run_on<T>(
      ctx,
      [&] { reference::cholesky_gaussian::exact_backward_tangent(head, reward, options, s, tangent, grad_tangent); },
      [&](const auto& ex) {
        const bool shared = head.tril.rows == 1 && batch > 1;
        void* ws =
            ctx.workspace(ex.call(kernels::objectives::shared_param_workspace_bytes, batch, head.tril.cols, shared));
        ex.launch(kernels::cholesky_gaussian::exact_backward_tangent, head, reward, options.entropy_weight, s, tangent,
                  grad_tangent, ws);
      });
}

#define D2R_INSTANTIATE(T)                                                                                     \
  template void log_prob_jvp<T>(Context&, const CholeskyGaussian<T>&, ConstMatrix<T>, const CholeskyGaussian<T>&, \
                                MatrixView<T>);                                                                \
  template void backward_tangent<T>(Context&, const CholeskyGaussian<T>&, ConstMatrix<T>, ConstMatrix<T>,        \
                                    ConstVector<T>, const CholeskyGaussian<T>&, const CholeskyGaussianGrad<T>&); \
  template void exact_backward_tangent<T>(Context&, const CholeskyGaussian<T>&, const MahalanobisReward<T>&,     \
                                          const PgOptions<T>&, const CholeskyGaussian<T>&,                        \
                                          const CholeskyGaussianGrad<T>&);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r

// ---------------------------------------------------------------- objectives and mixed products
// The generic checks and compositions are objectives.cpp's and mixed_product.cpp's; here the
// head's own kernels and reference.

namespace d2r {
namespace {

/// Workspace of the head's objective kernels: per-row gradients of a shared tril.
template <class Ex>
void* objective_workspace(const Ex& ex, const CholeskyGaussian<float>& head) {
  const bool shared = head.tril.rows == 1 && head.mean.rows > 1;
  return ex.workspace(
      ex.call(kernels::objectives::shared_param_workspace_bytes, head.mean.rows, head.tril.cols, shared));
}

}  // namespace

template <class T>
void pg_surrogate(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                  const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                  DrawKey key, const ObjectiveRows<T>& rows, const CholeskyGaussianGrad<T>& grad) {
  objective_common::check_pg_surrogate<T>(ctx, head, targets, reward, generations, options, key, rows, grad);
  // cuda: the fused kernel where its launch header takes the size; else (and on cpu) the composition.
  const bool fused = detail::run_on<T>(
      ctx, [] { return false; },
      [&](const auto& ex) {
        if (!ex.call(kernels::cholesky_gaussian::pg_surrogate_fusable, head, generations)) return false;
        ex.launch(kernels::cholesky_gaussian::pg_surrogate, head, targets, reward, options,
                  detail::draw_position(ctx, key), objective_common::scale_of(head, options, generations), rows, grad,
                  objective_workspace(ex, head));
        return true;
      });
  if (!fused) {
    objective_common::surrogate_by_composition<T>(ctx, head, targets, reward, generations, options, key, rows, grad);
  }
}

template <class T>
void pg_surrogate_unfused(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                          const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                          DrawKey key, const PgIntermediates<T>& intermediates, const ObjectiveRows<T>& rows,
                          const CholeskyGaussianGrad<T>& grad) {
  objective_common::unfused_surrogate<T>(ctx, head, targets, reward, generations, options, key, intermediates, rows,
                                         grad);
}

template <class T>
void pg_pathwise(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                 const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options, DrawKey key,
                 const ObjectiveRows<T>& rows, const CholeskyGaussianGrad<T>& grad) {
  objective_common::check_pg_pathwise<T>(ctx, head, targets, reward, generations, options, key, rows, grad);
  const auto s = objective_common::scale_of(head, options, generations);
  const math::DrawPosition pos = detail::draw_position(ctx, key);
  detail::run_on<T>(
      ctx, [&] { reference::cholesky_gaussian::pg_pathwise(head, targets, reward, options, pos, s, rows, grad); },
      [&](const auto& ex) {
        ex.launch(kernels::cholesky_gaussian::pg_pathwise, head, targets, reward, options, pos, s, rows, grad,
                  objective_workspace(ex, head));
      });
}

template <class T>
void exact_objective(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, const ObjectiveRows<T>& rows,
                     const CholeskyGaussianGrad<T>& grad) {
  objective_common::check_exact_objective<T>(ctx, head, targets, reward, options, rows, grad);
  const auto s = objective_common::scale_of(head, options, 1);
  detail::run_on<T>(
      ctx, [&] { reference::cholesky_gaussian::exact_objective(head, targets, reward, options, s, rows, grad); },
      [&](const auto& ex) {
        ex.launch(kernels::cholesky_gaussian::exact_objective, head, targets, reward, options.entropy_weight, s, rows,
                  grad, objective_workspace(ex, head));
      });
}

template <class T>
void mixed_product(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                   const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                   DrawKey key, const CholeskyGaussian<T>& tangent, VectorView<T> grad_params) {
  objective_common::mixed_product_by_composition<T>(ctx, head, targets, reward, generations, options, key, tangent,
                                                    grad_params);
}

template <class T>
void exact_mixed_product(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> targets,
                         const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                         const CholeskyGaussian<T>& tangent, VectorView<T> grad_params) {
  objective_common::exact_mixed_product_on<T>(
      ctx, head, targets, reward, options, tangent, grad_params,
      [](const auto&... a) { reference::cholesky_gaussian::exact_mixed_product(a...); },
      [](const auto& ex, const auto&... a) { ex.launch(kernels::cholesky_gaussian::exact_mixed_product, a...); });
}

#define D2R_INSTANTIATE(T)                                                                                            \
  template void pg_surrogate<T>(Context&, const CholeskyGaussian<T>&, ConstMatrix<T>, const MahalanobisReward<T>&,    \
                                std::int64_t, const PgOptions<T>&, DrawKey, const ObjectiveRows<T>&,                  \
                                const CholeskyGaussianGrad<T>&);                                                      \
  template void pg_surrogate_unfused<T>(Context&, const CholeskyGaussian<T>&, ConstMatrix<T>,                         \
                                        const MahalanobisReward<T>&, std::int64_t, const PgOptions<T>&, DrawKey,      \
                                        const PgIntermediates<T>&, const ObjectiveRows<T>&,                           \
                                        const CholeskyGaussianGrad<T>&);                                              \
  template void pg_pathwise<T>(Context&, const CholeskyGaussian<T>&, ConstMatrix<T>, const MahalanobisReward<T>&,     \
                               std::int64_t, const PgOptions<T>&, DrawKey, const ObjectiveRows<T>&,                   \
                               const CholeskyGaussianGrad<T>&);                                                       \
  template void exact_objective<T>(Context&, const CholeskyGaussian<T>&, ConstMatrix<T>, const MahalanobisReward<T>&, \
                                   const PgOptions<T>&, const ObjectiveRows<T>&, const CholeskyGaussianGrad<T>&);     \
  template void mixed_product<T>(Context&, const CholeskyGaussian<T>&, ConstMatrix<T>, const MahalanobisReward<T>&,   \
                                 std::int64_t, const PgOptions<T>&, DrawKey, const CholeskyGaussian<T>&,              \
                                 VectorView<T>);                                                                      \
  template void exact_mixed_product<T>(Context&, const CholeskyGaussian<T>&, ConstMatrix<T>,                          \
                                       const MahalanobisReward<T>&, const PgOptions<T>&, const CholeskyGaussian<T>&,  \
                                       VectorView<T>);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r
