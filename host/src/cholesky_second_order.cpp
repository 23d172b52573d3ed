// Head-level second-order primitives of the Cholesky-Gaussian head (d2r/second_order.hpp,
// DESIGN.md §6): validate everything, then run the CPU reference or the CUDA kernels. Every check
// (head, shapes, strides, memory space, aliasing, then values) runs before the first write to
// any output.
#include <string_view>
#include <type_traits>
#include <vector>

#include "d2r/second_order.hpp"
#include "host/reference/cholesky_second_order_ref.hpp"
#include "host/reference/objectives_ref.hpp"
#include "host/src/head_checks.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/heads/cholesky_gaussian/launch.hpp"
#include "kernels/objectives/launch.hpp"

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
      ctx, [&] { reference::cholesky_gaussian_log_prob_jvp(head, samples, tangent, out); },
      [&](const auto& ex) { ex.launch(kernels::cholesky_gaussian_log_prob_jvp, head, samples, tangent, out); });
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
  if (!d_log_prob.empty()) {
    detail::check_values<T>(ctx, fn, "samples", samples, detail::ValueRule::finite);
    detail::check_values<T>(ctx, fn, "d_log_prob", d_log_prob, detail::ValueRule::finite);
  }
  if (!d_entropy.empty()) {
    detail::check_values<T>(ctx, fn, "d_entropy", MatrixView<const T>{d_entropy.data, 1, batch, batch},
                            detail::ValueRule::finite);
  }
  detail::run_on<T>(
      ctx,
      [&] {
        reference::cholesky_gaussian_backward_tangent(head, samples, d_log_prob, d_entropy, tangent, grad_tangent);
      },
      [&](const auto& ex) {
        void* workspace = ctx.workspace(ex.call(kernels::cholesky_gaussian_backward_tangent_workspace_bytes, head));
        ex.launch(kernels::cholesky_gaussian_backward_tangent, head, samples, d_log_prob, d_entropy, tangent,
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
      ctx, [&] { reference::exact_cholesky_gaussian_tangent(head, reward, options, s, tangent, grad_tangent); },
      [&](const auto& ex) {
        const bool shared = head.tril.rows == 1 && batch > 1;
        void* ws = ctx.workspace(ex.call(kernels::shared_param_workspace_bytes, batch, head.tril.cols, shared));
        ex.launch(kernels::exact_cholesky_gaussian_tangent, head, reward, options.entropy_weight, s, tangent,
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
