#pragma once
// Validation of the policy heads, shared by the distribution primitives and the objectives that
// compose them. Internal header; defined beside each head's entry points.

#include <string_view>
#include <vector>

#include "d2r/distributions.hpp"
#include "host/src/validate.hpp"

namespace d2r::detail {

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

/// The gradient views of a head, checked for shape like the head.
template <class T>
std::vector<MatrixArg> check_head_grad(const Context& ctx, std::string_view function, const DiagGaussian<T>& head,
                                       const DiagGaussianGrad<T>& grad);
template <class T>
std::vector<MatrixArg> check_head_grad(const Context& ctx, std::string_view function, const CholeskyGaussian<T>& head,
                                       const CholeskyGaussianGrad<T>& grad);
template <class T>
std::vector<MatrixArg> check_head_grad(const Context& ctx, std::string_view function, const Categorical<T>& head,
                                       const CategoricalGrad<T>& grad);

}  // namespace d2r::detail
