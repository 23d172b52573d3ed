// Public entry points of the diagonal-Gaussian head (d2r/distributions.hpp, its overloads of
// d2r/objectives.hpp and d2r/second_order.hpp): validate, then run the CPU
// reference (host/reference/heads/diag_gaussian.hpp) or the CUDA kernels (kernels/heads/diag_gaussian/).
#include <type_traits>
#include <vector>

#include "d2r/distributions.hpp"
#include "d2r/objectives.hpp"
#include "d2r/second_order.hpp"
#include "host/reference/heads/diag_gaussian.hpp"
#include "host/reference/objectives.hpp"
#include "host/src/head_checks.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/heads/diag_gaussian/launch.hpp"
#include "kernels/objectives/launch.hpp"

namespace d2r {
namespace {

using detail::MatrixArg;

template <class T>
void check_head_impl(Context& ctx, std::string_view fn, const DiagGaussian<T>& head) {
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(head.mean.rows >= 1 && head.mean.cols >= 1, fn, "head.mean", "expected B >= 1 rows and n >= 1 columns, got {} x {}",
              head.mean.rows, head.mean.cols);
  detail::check_matrix(ctx, fn, MatrixArg("head.mean", head.mean), head.mean.rows, head.mean.cols);
  D2R_EXPECTS(head.log_std.rows == 1 || head.log_std.rows == head.mean.rows, fn, "head.log_std",
              "expected {} rows (state-dependent) or 1 row (shared), got {}", head.mean.rows, head.log_std.rows);
  detail::check_matrix(ctx, fn, MatrixArg("head.log_std", head.log_std), head.log_std.rows, head.mean.cols);
  detail::check_values<T>(ctx, fn, "head.mean", head.mean, detail::ValueRule::finite);
  detail::check_values<T>(ctx, fn, "head.log_std", head.log_std, detail::ValueRule::finite);
}

template <class T>
void check_output(std::string_view fn, const MatrixArg& out, const DiagGaussian<T>& head) {
  detail::check_disjoint(fn, out, MatrixArg("head.mean", head.mean));
  detail::check_disjoint(fn, out, MatrixArg("head.log_std", head.log_std));
}

}  // namespace

namespace detail {
template <class T>
void check_head(Context& ctx, std::string_view fn, const DiagGaussian<T>& head) {
  check_head_impl(ctx, fn, head);
}
template <class T>
std::vector<MatrixArg> check_head_grad(const Context& ctx, std::string_view fn, const DiagGaussian<T>& head,
                                       const DiagGaussianGrad<T>& grad, bool tangent) {
  const MatrixArg g_mean(tangent ? "grad_tangent.mean" : "grad.mean", grad.mean),
      g_log_std(tangent ? "grad_tangent.log_std" : "grad.log_std", grad.log_std);
  check_matrix(ctx, fn, g_mean, head.mean.rows, head.mean.cols);
  check_matrix(ctx, fn, g_log_std, head.log_std.rows, head.mean.cols);
  check_disjoint(fn, g_mean, g_log_std);
  return {g_mean, g_log_std};
}
template void check_head<float>(Context&, std::string_view, const DiagGaussian<float>&);
template void check_head<double>(Context&, std::string_view, const DiagGaussian<double>&);
template std::vector<MatrixArg> check_head_grad<float>(const Context&, std::string_view, const DiagGaussian<float>&,
                                                       const DiagGaussianGrad<float>&, bool);
template std::vector<MatrixArg> check_head_grad<double>(const Context&, std::string_view, const DiagGaussian<double>&,
                                                        const DiagGaussianGrad<double>&, bool);
}  // namespace detail

template <class T>
void sample(Context& ctx, const DiagGaussian<T>& head, std::int64_t generations, DrawKey key, MatrixView<T> samples) {
  constexpr std::string_view fn = "sample";
  check_head_impl(ctx, fn, head);
  D2R_EXPECTS(generations >= 1, fn, "generations", "expected generations >= 1, got {}", generations);
  detail::check_draw_key(ctx, fn, key, head.mean.rows);
  const MatrixArg out("samples", samples);
  detail::check_matrix(ctx, fn, out, head.mean.rows * generations, head.mean.cols);
  check_output(fn, out, head);
  detail::run_on<T>(
      ctx, [&] { reference::diag_gaussian::sample(head, generations, detail::draw_position(ctx, key), samples); },
      [&](const auto& ex) {
        ex.launch(kernels::diag_gaussian::sample, head, generations, detail::draw_position(ctx, key), samples);
      });
}

template <class T>
void log_prob(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> samples, MatrixView<T> out) {
  constexpr std::string_view fn = "log_prob";
  check_head_impl(ctx, fn, head);
  D2R_EXPECTS(out.cols >= 1, fn, "out", "expected B x G with G >= 1 generations, got {} x {}", out.rows, out.cols);
  detail::check_matrix(ctx, fn, MatrixArg("out", out), head.mean.rows, out.cols);
  detail::check_matrix(ctx, fn, MatrixArg("samples", samples), head.mean.rows * out.cols, head.mean.cols);
  detail::check_values<T>(ctx, fn, "samples", samples, detail::ValueRule::finite);
  check_output(fn, MatrixArg("out", out), head);
  detail::check_disjoint(fn, MatrixArg("out", out), MatrixArg("samples", samples));
  detail::run_on<T>(
      ctx, [&] { reference::diag_gaussian::log_prob(head, samples, out); },
      [&](const auto& ex) { ex.launch(kernels::diag_gaussian::log_prob, head, samples, out); });
}

template <class T>
void entropy(Context& ctx, const DiagGaussian<T>& head, VectorView<T> out) {
  constexpr std::string_view fn = "entropy";
  check_head_impl(ctx, fn, head);
  detail::check_matrix(ctx, fn, MatrixArg("out", out), 1, head.mean.rows);
  check_output(fn, MatrixArg("out", out), head);
  detail::run_on<T>(
      ctx, [&] { reference::diag_gaussian::entropy(head, out); },
      [&](const auto& ex) { ex.launch(kernels::diag_gaussian::entropy, head, out); });
}

template <class T>
void backward(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> samples, ConstMatrix<T> d_log_prob,
              ConstVector<T> d_entropy, const DiagGaussianGrad<T>& grad) {
  constexpr std::string_view fn = "backward";
  check_head_impl(ctx, fn, head);
  const std::int64_t batch = head.mean.rows, n = head.mean.cols;
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  detail::check_cotangent_shapes(ctx, fn, batch, n, samples, d_log_prob, d_entropy, inputs);
  detail::check_cotangent_values<T>(ctx, fn, samples, d_log_prob, d_entropy);
  for (const MatrixArg& out : detail::check_head_grad(ctx, fn, head, grad))
    for (const MatrixArg& in : inputs) detail::check_disjoint(fn, out, in);
  detail::run_on<T>(
      ctx, [&] { reference::diag_gaussian::backward(head, samples, d_log_prob, d_entropy, grad); },
      [&](const auto& ex) {
        void* workspace = ctx.workspace(ex.call(kernels::diag_gaussian::backward_workspace_bytes, head));
        ex.launch(kernels::diag_gaussian::backward, head, samples, d_log_prob, d_entropy, grad, workspace);
      });
}

#define D2R_INSTANTIATE(T)                                                                                   \
  template void sample<T>(Context&, const DiagGaussian<T>&, std::int64_t, DrawKey, MatrixView<T>);           \
  template void log_prob<T>(Context&, const DiagGaussian<T>&, ConstMatrix<T>, MatrixView<T>);           \
  template void entropy<T>(Context&, const DiagGaussian<T>&, VectorView<T>);                                 \
  template void backward<T>(Context&, const DiagGaussian<T>&, ConstMatrix<T>, ConstMatrix<T>,      \
                            ConstVector<T>, const DiagGaussianGrad<T>&);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r

// ---------------------------------------------------------------- second order

namespace d2r {
namespace {

using detail::MatrixArg;

/// Shapes of the tangent (those of the head: log_std 1 row when the head's is shared), then its
/// values (finite). Returns its views for the aliasing checks of the outputs.
template <class T>
std::vector<MatrixArg> check_tangent(Context& ctx, std::string_view fn, const DiagGaussian<T>& head,
                                     const DiagGaussian<T>& tangent) {
  const MatrixArg t_mean("tangent.mean", tangent.mean), t_log_std("tangent.log_std", tangent.log_std);
  detail::check_matrix(ctx, fn, t_mean, head.mean.rows, head.mean.cols);
  detail::check_matrix(ctx, fn, t_log_std, head.log_std.rows, head.mean.cols);
  detail::check_values<T>(ctx, fn, "tangent.mean", tangent.mean, detail::ValueRule::finite);
  detail::check_values<T>(ctx, fn, "tangent.log_std", tangent.log_std, detail::ValueRule::finite);
  return {t_mean, t_log_std};
}

}  // namespace

template <class T>
void log_prob_jvp(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> samples, const DiagGaussian<T>& tangent,
                  MatrixView<T> out) {
  constexpr std::string_view fn = "log_prob_jvp";
  detail::check_head(ctx, fn, head);
  const std::int64_t batch = head.mean.rows, n = head.mean.cols;
  D2R_EXPECTS(out.cols >= 1, fn, "out", "expected B x G with G >= 1 generations, got {} x {}", out.rows, out.cols);
  const MatrixArg out_arg("out", out);
  detail::check_matrix(ctx, fn, out_arg, batch, out.cols);
  detail::check_matrix(ctx, fn, MatrixArg("samples", samples), batch * out.cols, n);
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  inputs.emplace_back("samples", samples);
  for (const MatrixArg& t : check_tangent(ctx, fn, head, tangent)) inputs.push_back(t);
  for (const MatrixArg& in : inputs) detail::check_disjoint(fn, out_arg, in);
  detail::check_values<T>(ctx, fn, "samples", samples, detail::ValueRule::finite);
  detail::run_on<T>(
      ctx, [&] { reference::diag_gaussian::log_prob_jvp(head, samples, tangent, out); },
      [&](const auto& ex) { ex.launch(kernels::diag_gaussian::log_prob_jvp, head, samples, tangent, out); });
}

template <class T>
void backward_tangent(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> samples, ConstMatrix<T> d_log_prob,
                      ConstVector<T> d_entropy, const DiagGaussian<T>& tangent,
                      const DiagGaussianGrad<T>& grad_tangent) {
  constexpr std::string_view fn = "backward_tangent";
  detail::check_head(ctx, fn, head);
  const std::int64_t batch = head.mean.rows, n = head.mean.cols;
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  const bool has_log_prob = !d_log_prob.empty();
  detail::check_cotangent_shapes(ctx, fn, batch, n, samples, d_log_prob, d_entropy, inputs);
  for (const MatrixArg& t : check_tangent(ctx, fn, head, tangent)) inputs.push_back(t);
  const MatrixArg g_mean("grad_tangent.mean", grad_tangent.mean),
      g_log_std("grad_tangent.log_std", grad_tangent.log_std);
  detail::check_matrix(ctx, fn, g_mean, batch, n);
  detail::check_matrix(ctx, fn, g_log_std, head.log_std.rows, n);
  for (const MatrixArg& in : inputs) {
    detail::check_disjoint(fn, g_mean, in);
    detail::check_disjoint(fn, g_log_std, in);
  }
  detail::check_disjoint(fn, g_mean, g_log_std);
  detail::check_cotangent_values<T>(ctx, fn, samples, d_log_prob, d_entropy);
  // The entropy Σ_d (s_d + ½ log 2πe) is linear in the head: its Hessian term vanishes, so
  // d_entropy is checked but not read; without d_log_prob the result is 0.
  const MatrixView<const T> used_samples = has_log_prob ? samples : MatrixView<const T>{};
  detail::run_on<T>(
      ctx, [&] { reference::diag_gaussian::backward_tangent(head, used_samples, d_log_prob, tangent, grad_tangent); },
      [&](const auto& ex) {
        void* workspace = ctx.workspace(ex.call(kernels::diag_gaussian::backward_workspace_bytes, head));
        ex.launch(kernels::diag_gaussian::backward_tangent, head, used_samples, d_log_prob, tangent, grad_tangent,
                  workspace);
      });
}

template <class T>
void exact_backward_tangent(Context& ctx, const DiagGaussian<T>& head, const MahalanobisReward<T>& reward,
                            const PgOptions<T>& options, const DiagGaussian<T>& tangent,
                            const DiagGaussianGrad<T>& grad_tangent) {
  constexpr std::string_view fn = "exact_backward_tangent";
  detail::check_head(ctx, fn, head);
  const std::int64_t batch = head.mean.rows, n = head.mean.cols;
  detail::check_reward(ctx, fn, reward, n);
  objective_common::check_options(fn, options, batch);
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  for (const MatrixArg& t : check_tangent(ctx, fn, head, tangent)) inputs.push_back(t);
  inputs.emplace_back("reward.params", reward.params);
  const MatrixArg g_mean("grad_tangent.mean", grad_tangent.mean),
      g_log_std("grad_tangent.log_std", grad_tangent.log_std);
  detail::check_matrix(ctx, fn, g_mean, batch, n);
  detail::check_matrix(ctx, fn, g_log_std, head.log_std.rows, n);
  for (const MatrixArg& in : inputs) {
    detail::check_disjoint(fn, g_mean, in);
    detail::check_disjoint(fn, g_log_std, in);
  }
  detail::check_disjoint(fn, g_mean, g_log_std);
  const auto s = objective_common::scale_of(head, options, 1);
  detail::run_on<T>(
      ctx, [&] { reference::diag_gaussian::exact_backward_tangent(head, reward, s, tangent, grad_tangent); },
      [&](const auto& ex) {
        D2R_EXPECTS(reward.form != RewardForm::full || n <= kernels::diag_gaussian::kExactMaxFullDim, fn, "reward.form",
                    "on the cuda backend a full U supports n <= {} here (the kernel keeps n floats per row in shared "
                    "memory), got n = {}",
                    kernels::diag_gaussian::kExactMaxFullDim, n);
        const bool shared = head.log_std.rows == 1 && batch > 1;
        void* ws = ctx.workspace(ex.call(kernels::objectives::shared_param_workspace_bytes, batch, n, shared));
        ex.launch(kernels::diag_gaussian::exact_backward_tangent, head, reward, s, tangent, grad_tangent, ws);
      });
}

#define D2R_INSTANTIATE(T)                                                                                      \
  template void log_prob_jvp<T>(Context&, const DiagGaussian<T>&, ConstMatrix<T>, const DiagGaussian<T>&,       \
                                MatrixView<T>);                                                                \
  template void backward_tangent<T>(Context&, const DiagGaussian<T>&, ConstMatrix<T>, ConstMatrix<T>,           \
                                    ConstVector<T>, const DiagGaussian<T>&, const DiagGaussianGrad<T>&); \
  template void exact_backward_tangent<T>(Context&, const DiagGaussian<T>&, const MahalanobisReward<T>&,           \
                                          const PgOptions<T>&, const DiagGaussian<T>&, const DiagGaussianGrad<T>&);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r

// ---------------------------------------------------------------- objectives and mixed products
// The generic checks and compositions are objectives.cpp's and mixed_product.cpp's; here the
// head's own kernels and reference.

namespace d2r {
namespace {

/// Workspace of the head's objective kernels: per-row gradients of a shared log_std.
template <class Ex>
void* objective_workspace(const Ex& ex, const DiagGaussian<float>& head) {
  const bool shared = head.log_std.rows == 1 && head.mean.rows > 1;
  return ex.workspace(
      ex.call(kernels::objectives::shared_param_workspace_bytes, head.mean.rows, head.mean.cols, shared));
}

}  // namespace

template <class T>
void pg_surrogate(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets, const MahalanobisReward<T>& reward,
                  std::int64_t generations, const PgOptions<T>& options, DrawKey key, const ObjectiveRows<T>& rows,
                  const DiagGaussianGrad<T>& grad) {
  objective_common::check_pg_surrogate<T>(ctx, head, targets, reward, generations, options, key, rows, grad);
  // cuda: the fused kernel where its launch header takes the size; else (and on cpu) the composition.
  const bool fused = detail::run_on<T>(
      ctx, [] { return false; },
      [&](const auto& ex) {
        if (!ex.call(kernels::diag_gaussian::pg_surrogate_fusable, head, generations)) return false;
        ex.launch(kernels::diag_gaussian::pg_surrogate, head, targets, reward, options, detail::draw_position(ctx, key),
                  objective_common::scale_of(head, options, generations), rows, grad, objective_workspace(ex, head));
        return true;
      });
  if (!fused) {
    objective_common::surrogate_by_composition<T>(ctx, head, targets, reward, generations, options, key, rows, grad);
  }
}

template <class T>
void pg_surrogate_unfused(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets,
                          const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                          DrawKey key, const PgIntermediates<T>& intermediates, const ObjectiveRows<T>& rows,
                          const DiagGaussianGrad<T>& grad) {
  objective_common::unfused_surrogate<T>(ctx, head, targets, reward, generations, options, key, intermediates, rows,
                                         grad);
}

template <class T>
void pg_pathwise(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets, const MahalanobisReward<T>& reward,
                 std::int64_t generations, const PgOptions<T>& options, DrawKey key, const ObjectiveRows<T>& rows,
                 const DiagGaussianGrad<T>& grad) {
  constexpr std::string_view fn = "pg_pathwise";
  objective_common::check_pg_pathwise<T>(ctx, head, targets, reward, generations, options, key, rows, grad);
  const auto s = objective_common::scale_of(head, options, generations);
  const math::DrawPosition pos = detail::draw_position(ctx, key);
  detail::run_on<T>(
      ctx, [&] { reference::diag_gaussian::pg_pathwise(head, targets, reward, options, pos, s, rows, grad); },
      [&](const auto& ex) {
        D2R_EXPECTS(reward.form != RewardForm::full || head.mean.cols <= kernels::diag_gaussian::kPathwiseMaxFullDim,
                    fn, "reward.form",
                    "on the cuda backend the pathwise objective with a full U supports n <= {} (its kernel keeps 2n "
                    "floats per row in shared memory), got n = {}",
                    kernels::diag_gaussian::kPathwiseMaxFullDim, head.mean.cols);
        ex.launch(kernels::diag_gaussian::pg_pathwise, head, targets, reward, options, pos, s, rows, grad,
                  objective_workspace(ex, head));
      });
}

template <class T>
void exact_objective(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, const ObjectiveRows<T>& rows,
                     const DiagGaussianGrad<T>& grad) {
  constexpr std::string_view fn = "exact_objective";
  objective_common::check_exact_objective<T>(ctx, head, targets, reward, options, rows, grad);
  const auto s = objective_common::scale_of(head, options, 1);
  detail::run_on<T>(
      ctx, [&] { reference::diag_gaussian::exact_objective(head, targets, reward, options, s, rows, grad); },
      [&](const auto& ex) {
        D2R_EXPECTS(reward.form != RewardForm::full || head.mean.cols <= kernels::diag_gaussian::kExactMaxFullDim, fn,
                    "reward.form",
                    "on the cuda backend the exact objective with a full U supports n <= {} (its kernel keeps n floats "
                    "per row in shared memory), got n = {}",
                    kernels::diag_gaussian::kExactMaxFullDim, head.mean.cols);
        ex.launch(kernels::diag_gaussian::exact_objective, head, targets, reward, options.entropy_weight, s, rows, grad,
                  objective_workspace(ex, head));
      });
}

template <class T>
void mixed_product(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets,
                   const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                   DrawKey key, const DiagGaussian<T>& tangent, VectorView<T> grad_params) {
  objective_common::mixed_product_by_composition<T>(ctx, head, targets, reward, generations, options, key, tangent,
                                                    grad_params);
}

template <class T>
void exact_mixed_product(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> targets,
                         const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                         const DiagGaussian<T>& tangent, VectorView<T> grad_params) {
  objective_common::exact_mixed_product_on<T>(
      ctx, head, targets, reward, options, tangent, grad_params,
      [](const auto&... a) { reference::diag_gaussian::exact_mixed_product(a...); },
      [](const auto& ex, const auto&... a) { ex.launch(kernels::diag_gaussian::exact_mixed_product, a...); });
}

#define D2R_INSTANTIATE(T)                                                                                             \
  template void pg_surrogate<T>(Context&, const DiagGaussian<T>&, ConstMatrix<T>, const MahalanobisReward<T>&,         \
                                std::int64_t, const PgOptions<T>&, DrawKey, const ObjectiveRows<T>&,                   \
                                const DiagGaussianGrad<T>&);                                                           \
  template void pg_surrogate_unfused<T>(Context&, const DiagGaussian<T>&, ConstMatrix<T>, const MahalanobisReward<T>&, \
                                        std::int64_t, const PgOptions<T>&, DrawKey, const PgIntermediates<T>&,         \
                                        const ObjectiveRows<T>&, const DiagGaussianGrad<T>&);                          \
  template void pg_pathwise<T>(Context&, const DiagGaussian<T>&, ConstMatrix<T>, const MahalanobisReward<T>&,          \
                               std::int64_t, const PgOptions<T>&, DrawKey, const ObjectiveRows<T>&,                    \
                               const DiagGaussianGrad<T>&);                                                            \
  template void exact_objective<T>(Context&, const DiagGaussian<T>&, ConstMatrix<T>, const MahalanobisReward<T>&,      \
                                   const PgOptions<T>&, const ObjectiveRows<T>&, const DiagGaussianGrad<T>&);          \
  template void mixed_product<T>(Context&, const DiagGaussian<T>&, ConstMatrix<T>, const MahalanobisReward<T>&,        \
                                 std::int64_t, const PgOptions<T>&, DrawKey, const DiagGaussian<T>&, VectorView<T>);   \
  template void exact_mixed_product<T>(Context&, const DiagGaussian<T>&, ConstMatrix<T>, const MahalanobisReward<T>&,  \
                                       const PgOptions<T>&, const DiagGaussian<T>&, VectorView<T>);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r
