// Public entry points of the categorical head (d2r/distributions.hpp, its overloads of
// d2r/objectives.hpp and d2r/second_order.hpp): validate, then run the CPU
// reference (host/reference/heads/categorical.hpp) or the CUDA kernels (kernels/heads/categorical/).
// Shapes, strides, memory spaces and aliasing are checked first (cheap), then the values (one more
// pass over the inputs, and on cuda one synchronisation), and only then is any output written.
#include <type_traits>
#include <vector>

#include "d2r/distributions.hpp"
#include "d2r/objectives.hpp"
#include "d2r/second_order.hpp"
#include "host/reference/heads/categorical.hpp"
#include "host/reference/objectives.hpp"
#include "host/src/head_checks.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/heads/categorical/launch.hpp"
#include "kernels/objectives/launch.hpp"

namespace d2r {
namespace {

using detail::MatrixArg;

/// Shape of the head (B >= 1 rows, 2 <= C <= kMaxCategoricalClasses), and its scalar type.
template <class T>
void check_head_shape(Context& ctx, std::string_view fn, const Categorical<T>& head) {
  detail::check_scalar_type<T>(ctx, fn);
  const MatrixView<const T>& logits = head.logits;
  D2R_EXPECTS(logits.rows >= 1, fn, "head.logits", "expected B >= 1 rows, got {} x {}", logits.rows, logits.cols);
  D2R_EXPECTS(logits.cols >= 2 && logits.cols <= kMaxCategoricalClasses, fn, "head.logits",
              "expected 2 <= C <= {} classes (columns), got {} x {}", kMaxCategoricalClasses, logits.rows,
              logits.cols);
  detail::check_matrix(ctx, fn, MatrixArg("head.logits", logits), logits.rows, logits.cols);
}

template <class T>
void check_logit_values(Context& ctx, std::string_view fn, const Categorical<T>& head) {
  detail::check_values<T>(ctx, fn, "head.logits", head.logits, detail::ValueRule::logits);
}

}  // namespace

// Shared head validation (host/src/head_checks.hpp), for the objectives composed of this head.
namespace detail {
template <class T>
void check_head(Context& ctx, std::string_view fn, const Categorical<T>& head) {
  check_head_shape(ctx, fn, head);
  check_logit_values(ctx, fn, head);
}
template <class T>
std::vector<MatrixArg> check_head_grad(const Context& ctx, std::string_view fn, const Categorical<T>& head,
                                       const CategoricalGrad<T>& grad, bool tangent) {
  const MatrixArg g_logits(tangent ? "grad_tangent.logits" : "grad.logits", grad.logits);
  check_matrix(ctx, fn, g_logits, head.logits.rows, head.logits.cols);
  return {g_logits};
}
template void check_head<float>(Context&, std::string_view, const Categorical<float>&);
template void check_head<double>(Context&, std::string_view, const Categorical<double>&);
template std::vector<MatrixArg> check_head_grad<float>(const Context&, std::string_view, const Categorical<float>&,
                                                       const CategoricalGrad<float>&, bool);
template std::vector<MatrixArg> check_head_grad<double>(const Context&, std::string_view, const Categorical<double>&,
                                                        const CategoricalGrad<double>&, bool);
}  // namespace detail

template <class T>
void sample(Context& ctx, const Categorical<T>& head, std::int64_t generations, DrawKey key,
            MatrixView<std::int32_t> samples) {
  constexpr std::string_view fn = "sample";
  check_head_shape(ctx, fn, head);
  const std::int64_t batch = head.logits.rows;
  D2R_EXPECTS(generations >= 1, fn, "generations", "expected generations >= 1, got {}", generations);
  D2R_EXPECTS(generations <= (std::int64_t{1} << 32), fn, "generations",
              "expected generations <= 2^32 (the Philox counter of a draw), got {}", generations);
  detail::check_draw_key(ctx, fn, key, batch);
  const MatrixArg out("samples", samples);
  detail::check_matrix(ctx, fn, out, batch, generations);
  detail::check_disjoint(fn, out, MatrixArg("head.logits", head.logits));
  check_logit_values(ctx, fn, head);
  detail::run_on<T>(
      ctx, [&] { reference::categorical::sample(head, generations, detail::draw_position(ctx, key), samples); },
      [&](const auto& ex) {
        ex.launch(kernels::categorical::sample, head, generations, detail::draw_position(ctx, key), samples);
      });
}

template <class T>
void log_prob(Context& ctx, const Categorical<T>& head, MatrixView<const std::int32_t> samples, MatrixView<T> out) {
  constexpr std::string_view fn = "log_prob";
  check_head_shape(ctx, fn, head);
  const std::int64_t batch = head.logits.rows;
  D2R_EXPECTS(out.cols >= 1, fn, "out", "expected B x G with G >= 1 generations, got {} x {}", out.rows, out.cols);
  const MatrixArg out_arg("out", out);
  detail::check_matrix(ctx, fn, out_arg, batch, out.cols);
  detail::check_matrix(ctx, fn, MatrixArg("samples", samples), batch, out.cols);
  detail::check_disjoint(fn, out_arg, MatrixArg("head.logits", head.logits));
  detail::check_disjoint(fn, out_arg, MatrixArg("samples", samples));
  check_logit_values(ctx, fn, head);
  detail::check_indices(ctx, fn, "samples", samples, static_cast<std::int32_t>(head.logits.cols));
  detail::run_on<T>(
      ctx, [&] { reference::categorical::log_prob(head, samples, out); },
      [&](const auto& ex) { ex.launch(kernels::categorical::log_prob, head, samples, out); });
}

template <class T>
void entropy(Context& ctx, const Categorical<T>& head, VectorView<T> out) {
  constexpr std::string_view fn = "entropy";
  check_head_shape(ctx, fn, head);
  const MatrixArg out_arg("out", out);
  detail::check_matrix(ctx, fn, out_arg, 1, head.logits.rows);
  detail::check_disjoint(fn, out_arg, MatrixArg("head.logits", head.logits));
  check_logit_values(ctx, fn, head);
  detail::run_on<T>(
      ctx, [&] { reference::categorical::entropy(head, out); },
      [&](const auto& ex) { ex.launch(kernels::categorical::entropy, head, out); });
}

template <class T>
void backward(Context& ctx, const Categorical<T>& head, MatrixView<const std::int32_t> samples,
              ConstMatrix<T> d_log_prob, ConstVector<T> d_entropy, const CategoricalGrad<T>& grad) {
  constexpr std::string_view fn = "backward";
  check_head_shape(ctx, fn, head);
  const std::int64_t batch = head.logits.rows, classes = head.logits.cols;
  std::vector<MatrixArg> inputs{MatrixArg("head.logits", head.logits)};
  const bool has_log_prob = !d_log_prob.empty();
  detail::check_cotangent_shapes(ctx, fn, batch, 0, samples, d_log_prob, d_entropy, inputs);
  const MatrixArg g_logits = detail::check_head_grad(ctx, fn, head, grad).front();
  for (const MatrixArg& in : inputs) detail::check_disjoint(fn, g_logits, in);

  check_logit_values(ctx, fn, head);
  if (has_log_prob) {
    detail::check_indices(ctx, fn, "samples", samples, static_cast<std::int32_t>(classes));
    detail::check_values<T>(ctx, fn, "d_log_prob", d_log_prob, detail::ValueRule::finite);
  }
  if (!d_entropy.empty()) {
    detail::check_values<T>(ctx, fn, "d_entropy", MatrixView<const T>{d_entropy.data, 1, batch, batch},
                            detail::ValueRule::finite);
  }
  // Without cotangents for the log-probabilities the samples are not read.
  const MatrixView<const std::int32_t> used_samples = has_log_prob ? samples : MatrixView<const std::int32_t>{};
  detail::run_on<T>(
      ctx, [&] { reference::categorical::backward(head, used_samples, d_log_prob, d_entropy, grad); },
      [&](const auto& ex) {
        ex.launch(kernels::categorical::backward, head, used_samples, d_log_prob, d_entropy, grad);
      });
}

#define D2R_INSTANTIATE(T)                                                                                       \
  template void sample<T>(Context&, const Categorical<T>&, std::int64_t, DrawKey, MatrixView<std::int32_t>);    \
  template void log_prob<T>(Context&, const Categorical<T>&, MatrixView<const std::int32_t>, MatrixView<T>);    \
  template void entropy<T>(Context&, const Categorical<T>&, VectorView<T>);                                     \
  template void backward<T>(Context&, const Categorical<T>&, MatrixView<const std::int32_t>, ConstMatrix<T>, \
                            ConstVector<T>, const CategoricalGrad<T>&);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r

// ---------------------------------------------------------------- second order (d2r/second_order.hpp)

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
      ctx, [&] { reference::categorical::log_prob_jvp(head, samples, tangent, out); },
      [&](const auto& ex) { ex.launch(kernels::categorical::log_prob_jvp, head, samples, tangent, out); });
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
      ctx, [&] { reference::categorical::backward_tangent(head, d_log_prob, d_entropy, tangent, grad_tangent); },
      [&](const auto& ex) {
        ex.launch(kernels::categorical::backward_tangent, head, d_log_prob, d_entropy, tangent, grad_tangent);
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
      ctx,
      [&] { reference::categorical::exact_backward_tangent(head, labels, reward, options, s, tangent, grad_tangent); },
      [&](const auto& ex) {
        ex.launch(kernels::categorical::exact_backward_tangent, head, labels, reward, options.entropy_weight, s,
                  tangent, grad_tangent);
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

// ---------------------------------------------------------------- objectives and mixed products
// The generic checks and compositions are objectives.cpp's and mixed_product.cpp's; here the
// head's own kernels and reference.

namespace d2r {

template <class T>
void pg_surrogate(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                  const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                  DrawKey key, const ObjectiveRows<T>& rows, const CategoricalGrad<T>& grad) {
  objective_common::check_pg_surrogate<T>(ctx, head, labels, reward, generations, options, key, rows, grad);
  // cuda: the fused kernel where its launch header takes the size; else (and on cpu) the composition.
  const bool fused = detail::run_on<T>(
      ctx, [] { return false; },
      [&](const auto& ex) {
        if (!ex.call(kernels::categorical::pg_surrogate_fusable, head, generations)) return false;
        ex.launch(kernels::categorical::pg_surrogate, head, labels, reward, options, detail::draw_position(ctx, key),
                  objective_common::scale_of(head, options, generations), rows, grad);
        return true;
      });
  if (!fused) {
    objective_common::surrogate_by_composition<T>(ctx, head, labels, reward, generations, options, key, rows, grad);
  }
}

template <class T>
void pg_surrogate_unfused(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                          const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                          DrawKey key, const PgIntermediates<T, std::int32_t>& intermediates,
                          const ObjectiveRows<T>& rows, const CategoricalGrad<T>& grad) {
  objective_common::unfused_surrogate<T>(ctx, head, labels, reward, generations, options, key, intermediates, rows,
                                         grad);
}

template <class T>
void exact_objective(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, const ObjectiveRows<T>& rows,
                     const CategoricalGrad<T>& grad) {
  objective_common::check_exact_objective<T>(ctx, head, labels, reward, options, rows, grad);
  const auto s = objective_common::scale_of(head, options, 1);
  detail::run_on<T>(
      ctx, [&] { reference::categorical::exact_objective(head, labels, reward, options, s, rows, grad); },
      [&](const auto& ex) {
        ex.launch(kernels::categorical::exact_objective, head, labels, reward, options.entropy_weight, s, rows, grad);
      });
}

template <class T>
void mixed_product(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                   const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                   DrawKey key, const Categorical<T>& tangent, VectorView<T> grad_params) {
  objective_common::mixed_product_by_composition<T>(ctx, head, labels, reward, generations, options, key, tangent,
                                                    grad_params);
}

template <class T>
void exact_mixed_product(Context& ctx, const Categorical<T>& head, VectorView<const std::int32_t> labels,
                         const MahalanobisReward<T>& reward, const PgOptions<T>& options, const Categorical<T>& tangent,
                         VectorView<T> grad_params) {
  objective_common::exact_mixed_product_on<T>(
      ctx, head, labels, reward, options, tangent, grad_params,
      [](const auto&... a) { reference::categorical::exact_mixed_product(a...); },
      [](const auto& ex, const auto&... a) { ex.launch(kernels::categorical::exact_mixed_product, a...); });
}

#define D2R_INSTANTIATE(T)                                                                                       \
  template void pg_surrogate<T>(Context&, const Categorical<T>&, VectorView<const std::int32_t>,                 \
                                const MahalanobisReward<T>&, std::int64_t, const PgOptions<T>&, DrawKey,         \
                                const ObjectiveRows<T>&, const CategoricalGrad<T>&);                             \
  template void pg_surrogate_unfused<T>(Context&, const Categorical<T>&, VectorView<const std::int32_t>,         \
                                        const MahalanobisReward<T>&, std::int64_t, const PgOptions<T>&, DrawKey, \
                                        const PgIntermediates<T, std::int32_t>&, const ObjectiveRows<T>&,        \
                                        const CategoricalGrad<T>&);                                              \
  template void exact_objective<T>(Context&, const Categorical<T>&, VectorView<const std::int32_t>,              \
                                   const MahalanobisReward<T>&, const PgOptions<T>&, const ObjectiveRows<T>&,    \
                                   const CategoricalGrad<T>&);                                                   \
  template void mixed_product<T>(Context&, const Categorical<T>&, VectorView<const std::int32_t>,                \
                                 const MahalanobisReward<T>&, std::int64_t, const PgOptions<T>&, DrawKey,        \
                                 const Categorical<T>&, VectorView<T>);                                          \
  template void exact_mixed_product<T>(Context&, const Categorical<T>&, VectorView<const std::int32_t>,          \
                                       const MahalanobisReward<T>&, const PgOptions<T>&, const Categorical<T>&,  \
                                       VectorView<T>);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r
