// Second-order primitives of the categorical head (d2r/second_order.hpp): validate, then run the
// CPU reference (host/reference/second_order_ref.hpp) or the CUDA kernels. Shapes, strides,
// memory spaces and aliasing are checked first, then the values, and only then is any output
// written.
#include <type_traits>
#include <vector>

#include "d2r/second_order.hpp"
#include "host/reference/objectives_ref.hpp"
#include "host/reference/second_order_ref.hpp"
#include "host/src/head_checks.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/heads/categorical/launch.hpp"

namespace d2r {
namespace {

using detail::MatrixArg;

/// Shape of the tangent (that of the logits).
template <class T>
MatrixArg check_tangent_shape(const Context& ctx, std::string_view fn, const Categorical<T>& head,
                              const Categorical<T>& tangent) {
  const MatrixArg t_logits("tangent.logits", tangent.logits);
  detail::check_matrix(ctx, fn, t_logits, head.logits.rows, head.logits.cols);
  return t_logits;
}

/// Values of the tangent: finite everywhere (also on masked classes, where it is multiplied by 0).
template <class T>
void check_tangent_values(Context& ctx, std::string_view fn, const Categorical<T>& tangent) {
  detail::check_values<T>(ctx, fn, "tangent.logits", tangent.logits, detail::ValueRule::finite);
}

}  // namespace

template <class T>
void log_prob_jvp(Context& ctx, const Categorical<T>& head, MatrixView<const std::int32_t> samples,
                  const Categorical<T>& tangent, MatrixView<T> out) {
  constexpr std::string_view fn = "log_prob_jvp";
  detail::check_head(ctx, fn, head);
  const std::int64_t batch = head.logits.rows;
  D2R_EXPECTS(out.cols >= 1, fn, "out", "expected B x G with G >= 1 generations, got {} x {}", out.rows, out.cols);
  const MatrixArg out_arg("out", out);
  detail::check_matrix(ctx, fn, out_arg, batch, out.cols);
  detail::check_matrix(ctx, fn, MatrixArg("samples", samples), batch, out.cols);
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  inputs.emplace_back("samples", samples);
  inputs.push_back(check_tangent_shape(ctx, fn, head, tangent));
  for (const MatrixArg& in : inputs) detail::check_disjoint(fn, out_arg, in);
  check_tangent_values(ctx, fn, tangent);
  detail::check_indices(ctx, fn, "samples", samples, static_cast<std::int32_t>(head.logits.cols));
  detail::run_on<T>(
      ctx, [&] { reference::categorical_log_prob_jvp(head, samples, tangent, out); },
      [&](const auto& ex) { ex.launch(kernels::categorical_log_prob_jvp, head, samples, tangent, out); });
}

template <class T>
void backward_tangent(Context& ctx, const Categorical<T>& head, MatrixView<const std::int32_t> samples,
                      ConstMatrix<T> d_log_prob, ConstVector<T> d_entropy, const Categorical<T>& tangent,
                      const CategoricalGrad<T>& grad_tangent) {
  constexpr std::string_view fn = "backward_tangent";
  detail::check_head(ctx, fn, head);
  const std::int64_t batch = head.logits.rows, classes = head.logits.cols;
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  const bool has_log_prob = !d_log_prob.empty();
  detail::check_cotangent_shapes(ctx, fn, batch, 0, samples, d_log_prob, d_entropy, inputs);
  inputs.push_back(check_tangent_shape(ctx, fn, head, tangent));
  const MatrixArg g_logits("grad_tangent.logits", grad_tangent.logits);
  detail::check_matrix(ctx, fn, g_logits, batch, classes);
  for (const MatrixArg& in : inputs) detail::check_disjoint(fn, g_logits, in);

  check_tangent_values(ctx, fn, tangent);
  if (has_log_prob) {
    detail::check_indices(ctx, fn, "samples", samples, static_cast<std::int32_t>(classes));
    detail::check_values<T>(ctx, fn, "d_log_prob", d_log_prob, detail::ValueRule::finite);
  }
  if (!d_entropy.empty()) {
    detail::check_values<T>(ctx, fn, "d_entropy", MatrixView<const T>{d_entropy.data, 1, batch, batch},
                            detail::ValueRule::finite);
  }
  // The sampled classes enter the gradient through constant indicator terms, which have no
  // tangent: only Σ_g c_bg is needed, and the samples are checked but not read.
  detail::run_on<T>(
      ctx, [&] { reference::categorical_backward_tangent(head, d_log_prob, d_entropy, tangent, grad_tangent); },
      [&](const auto& ex) {
        ex.launch(kernels::categorical_backward_tangent, head, d_log_prob, d_entropy, tangent, grad_tangent);
      });
}

template <class T>
void exact_backward_tangent(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                            const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                            const Categorical<T>& tangent, const CategoricalGrad<T>& grad_tangent) {
  constexpr std::string_view fn = "exact_backward_tangent";
  detail::check_head(ctx, fn, head);
  const std::int64_t batch = head.logits.rows, classes = head.logits.cols;
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  inputs.push_back(objective_common::check_targets<T>(ctx, fn, head, labels));
  detail::check_reward(ctx, fn, reward, classes);
  inputs.emplace_back("reward.params", reward.params);
  objective_common::check_options(fn, options, batch);
  inputs.push_back(check_tangent_shape(ctx, fn, head, tangent));
  const MatrixArg g_logits("grad_tangent.logits", grad_tangent.logits);
  detail::check_matrix(ctx, fn, g_logits, batch, classes);
  for (const MatrixArg& in : inputs) detail::check_disjoint(fn, g_logits, in);
  check_tangent_values(ctx, fn, tangent);
  const auto s = objective_common::scale_of(head, options, 1);
  detail::run_on<T>(
      ctx, [&] { reference::exact_categorical_tangent(head, labels, reward, options, s, tangent, grad_tangent); },
      [&](const auto& ex) {
        ex.launch(kernels::exact_categorical_tangent, head, labels, reward, options.entropy_weight, s, tangent,
                  grad_tangent);
      });
}

#define D2R_INSTANTIATE(T)                                                                                    \
  template void log_prob_jvp<T>(Context&, const Categorical<T>&, MatrixView<const std::int32_t>,              \
                                const Categorical<T>&, MatrixView<T>);                                        \
  template void backward_tangent<T>(Context&, const Categorical<T>&, MatrixView<const std::int32_t>,          \
                                    ConstMatrix<T>, ConstVector<T>, const Categorical<T>&,                    \
                                    const CategoricalGrad<T>&);                                               \
  template void exact_backward_tangent<T>(Context&, const Categorical<T>&, VectorView<const std::int32_t>,    \
                                          const MahalanobisReward<T>&, const PgOptions<T>&, const Categorical<T>&, \
                                          const CategoricalGrad<T>&);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r
