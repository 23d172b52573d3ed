#pragma once
// Validation of the policy heads, shared by the distribution primitives and the objectives that
// compose them. Internal header; defined beside each head's entry points.

#include <string_view>
#include <vector>

#include "d2r/distributions.hpp"
#include "host/src/validate.hpp"
#include "common/math/philox.hpp"

namespace d2r::detail {

/// Where a call's draws sit in the Philox stream: the context's seed and the key's step and
/// first row (already checked by check_draw_key to fit 32 bits).
inline math::DrawPosition draw_position(const Context& ctx, DrawKey key) {
  return {ctx.seed(), static_cast<std::uint32_t>(key.step), static_cast<std::uint32_t>(key.first_row), key.step_offset};
}

/// Shapes, strides, memory space, scalar type and (per the context's ValueChecks) the values of
/// a head.
template <class T>
void check_head(Context& ctx, std::string_view function, const DiagGaussian<T>& head);
template <class T>
void check_head(Context& ctx, std::string_view function, const CholeskyGaussian<T>& head);
template <class T>
void check_head(Context& ctx, std::string_view function, const Categorical<T>& head);

/// The head's input views, for aliasing checks of outputs.
template <class T>
std::vector<MatrixArg> head_inputs(const DiagGaussian<T>& head) {
  return {MatrixArg("head.mean", head.mean), MatrixArg("head.log_std", head.log_std)};
}
template <class T>
std::vector<MatrixArg> head_inputs(const CholeskyGaussian<T>& head) {
  return {MatrixArg("head.mean", head.mean), MatrixArg("head.tril", head.tril)};
}
template <class T>
std::vector<MatrixArg> head_inputs(const Categorical<T>& head) {
  return {MatrixArg("head.logits", head.logits)};
}

/// Shapes of the cotangents of backward() and its tangent, appended to `inputs` when present:
/// d_log_prob B x G (may be empty; then samples are not used), samples (B·G) x draw_dim for the
/// Gaussian heads or B x G class indices for the categorical head (draw_dim == 0), d_entropy
/// length B (may be empty).
template <class S, class T>
void check_cotangent_shapes(const Context& ctx, std::string_view function, std::int64_t batch, std::int64_t draw_dim,
                            MatrixView<const S> samples, MatrixView<const T> d_log_prob,
                            VectorView<const T> d_entropy, std::vector<MatrixArg>& inputs) {
  if (!d_log_prob.empty()) {
    D2R_EXPECTS(d_log_prob.cols >= 1, function, "d_log_prob", "expected B x G with G >= 1, got {} x {}",
                d_log_prob.rows, d_log_prob.cols);
    check_matrix(ctx, function, MatrixArg("d_log_prob", d_log_prob), batch, d_log_prob.cols);
    if (draw_dim > 0) {
      check_matrix(ctx, function, MatrixArg("samples", samples), batch * d_log_prob.cols, draw_dim);
    } else {
      check_matrix(ctx, function, MatrixArg("samples", samples), batch, d_log_prob.cols);
    }
    inputs.emplace_back("samples", samples);
    inputs.emplace_back("d_log_prob", d_log_prob);
  }
  if (!d_entropy.empty()) {
    check_matrix(ctx, function, MatrixArg("d_entropy", d_entropy), 1, batch);
    inputs.emplace_back("d_entropy", d_entropy);
  }
}

/// Values of the cotangents of a Gaussian head's backward() and its tangent, where present (their
/// shapes checked first by check_cotangent_shapes): samples and d_log_prob finite when d_log_prob
/// is given (without it the samples are not read), d_entropy finite.
template <class T>
void check_cotangent_values(Context& ctx, std::string_view function, MatrixView<const T> samples,
                            MatrixView<const T> d_log_prob, VectorView<const T> d_entropy) {
  if (!d_log_prob.empty()) {
    check_values<T>(ctx, function, "samples", samples, ValueRule::finite);
    check_values<T>(ctx, function, "d_log_prob", d_log_prob, ValueRule::finite);
  }
  if (!d_entropy.empty()) {
    check_values<T>(ctx, function, "d_entropy", MatrixView<const T>{d_entropy.data, 1, d_entropy.size, d_entropy.size},
                    ValueRule::finite);
  }
}

/// The gradient views of a head, checked for shape like the head. Errors name them grad.<view>,
/// or grad_tangent.<view> when `tangent` (the outputs of backward_tangent).
template <class T>
std::vector<MatrixArg> check_head_grad(const Context& ctx, std::string_view function, const DiagGaussian<T>& head,
                                       const DiagGaussianGrad<T>& grad, bool tangent = false);
template <class T>
std::vector<MatrixArg> check_head_grad(const Context& ctx, std::string_view function, const CholeskyGaussian<T>& head,
                                       const CholeskyGaussianGrad<T>& grad, bool tangent = false);
template <class T>
std::vector<MatrixArg> check_head_grad(const Context& ctx, std::string_view function, const Categorical<T>& head,
                                       const CategoricalGrad<T>& grad, bool tangent = false);

}  // namespace d2r::detail
