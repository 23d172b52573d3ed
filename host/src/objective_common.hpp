#pragma once
// Helpers shared by the entry points of the objectives and of the second-order reward pieces
// (host/src/heads/<head>.cpp, objectives.cpp, mixed_product.cpp): the value-checks guard, the
// target and option checks, the objective scale, and the generic checks and compositions that
// objectives.cpp and mixed_product.cpp define for every head. Internal header.

#include <cmath>
#include <cstdint>
#include <string_view>

#include "d2r/context.hpp"
#include "d2r/distributions.hpp"
#include "d2r/objectives.hpp"
#include "d2r/second_order.hpp"
#include "host/reference/objectives.hpp"
#include "host/src/backend.hpp"
#include "host/src/validate.hpp"
#include "kernels/objectives/launch.hpp"

namespace d2r::objective_common {

/// Value checks off for the primitives called by a composite whose inputs were checked once.
class ChecksOff {
 public:
  explicit ChecksOff(Context& ctx) : ctx_(ctx), saved_(ctx.value_checks()) { ctx.set_value_checks(ValueChecks::none); }
  ~ChecksOff() { ctx_.set_value_checks(saved_); }
  ChecksOff(const ChecksOff&) = delete;
  ChecksOff& operator=(const ChecksOff&) = delete;

 private:
  Context& ctx_;
  ValueChecks saved_;
};

// ---------------------------------------------------------------- checks
template <class T, class Head>
detail::MatrixArg check_targets(Context& ctx, std::string_view fn, const Head& head, ConstMatrix<T> targets) {
  const detail::MatrixArg arg("targets", targets);
  detail::check_matrix(ctx, fn, arg, head_traits<Head>::rows(head), head_traits<Head>::dim(head));
  detail::check_values<T>(ctx, fn, "targets", targets, detail::ValueRule::finite);
  return arg;
}
template <class T>
detail::MatrixArg check_targets(Context& ctx, std::string_view fn, const Categorical<T>& head,
                                VectorView<const std::int32_t> labels) {
  const detail::MatrixArg arg("labels", labels);
  detail::check_matrix(ctx, fn, arg, 1, head.logits.rows);
  detail::check_indices(ctx, fn, "labels", MatrixView<const std::int32_t>{labels.data, 1, labels.size, labels.size},
                        static_cast<std::int32_t>(head.logits.cols));
  return arg;
}

template <class T>
void check_options(std::string_view fn, const PgOptions<T>& o, std::int64_t rows) {
  D2R_EXPECTS(o.entropy_weight >= T(0) && std::isfinite(o.entropy_weight), fn, "options.entropy_weight",
              "expected a finite λ >= 0, got {}", o.entropy_weight);
  D2R_EXPECTS(o.log_prob_clip >= T(0) && std::isfinite(o.log_prob_clip), fn, "options.log_prob_clip",
              "expected a finite c >= 0 (0 = no clipping), got {}", o.log_prob_clip);
  D2R_EXPECTS(o.normaliser_rows == 0 || o.normaliser_rows >= rows, fn, "options.normaliser_rows",
              "expected 0 (this call's rows) or the whole batch's rows >= {}, got {}", rows, o.normaliser_rows);
}

template <class T, class Head>
ObjectiveScale<T> scale_of(const Head& head, const PgOptions<T>& o, std::int64_t generations) {
  const bool categorical = head_traits<Head>::categorical;
  const T per_dim = o.per_dimension_mean && !categorical ? T(1) / T(head_traits<Head>::dim(head)) : T(1);
  const std::int64_t rows = head_traits<Head>::rows(head);
  return {per_dim, T(o.normaliser_rows > 0 ? o.normaliser_rows : rows), generations};
}

// ---------------------------------------------------------------- generic entry pieces
// Defined and instantiated for the three heads in objectives.cpp and mixed_product.cpp; each
// head's entry points (host/src/heads/<head>.cpp) call them around the head's own kernels.
template <class Head>
using GradOf = typename head_traits<Head>::Grad;

/// pg_surrogate's checks: head, targets, reward, options, rows, gradient, draw key.
template <class T, class Head, class Targets>
void check_pg_surrogate(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& reward,
                        std::int64_t generations, const PgOptions<T>& options, DrawKey key,
                        const ObjectiveRows<T>& rows, const GradOf<Head>& grad);

/// The REINFORCE surrogate as a composition of the public primitives, its intermediates in the
/// composite workspace (inputs already checked).
template <class T, class Head, class Targets>
void surrogate_by_composition(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& reward,
                              std::int64_t generations, const PgOptions<T>& options, DrawKey key,
                              const ObjectiveRows<T>& rows, const GradOf<Head>& grad);

/// pg_surrogate_unfused: checks, then the composition into the caller's intermediates.
template <class T, class Head, class Targets>
void unfused_surrogate(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& reward,
                       std::int64_t generations, const PgOptions<T>& options, DrawKey key,
                       const PgIntermediates<T, typename head_traits<Head>::Sample>& intermediates,
                       const ObjectiveRows<T>& rows, const GradOf<Head>& grad);

/// pg_pathwise's checks (those of pg_surrogate, transform none or rbf, no log-probability clip).
template <class T, class Head>
void check_pg_pathwise(Context& ctx, const Head& head, ConstMatrix<T> targets, const MahalanobisReward<T>& reward,
                       std::int64_t generations, const PgOptions<T>& options, DrawKey key, const ObjectiveRows<T>& rows,
                       const GradOf<Head>& grad);

/// exact_objective's checks.
template <class T, class Head, class Targets>
void check_exact_objective(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& reward,
                           const PgOptions<T>& options, const ObjectiveRows<T>& rows, const GradOf<Head>& grad);

/// mixed_product: checks, then the REINFORCE mixed product as a composition of the primitives.
template <class T, class Head, class Targets>
void mixed_product_by_composition(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& reward,
                                  std::int64_t generations, const PgOptions<T>& options, DrawKey key,
                                  const Head& tangent, VectorView<T> grad_params);

/// exact_mixed_product's checks (head, targets, reward, options, tangent, grad_params).
template <class T, class Head, class Targets>
void check_exact_mixed_product(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& reward,
                               const PgOptions<T>& options, const Head& tangent, VectorView<T> grad_params);

/// exact_mixed_product of a head: its checks, then `reference(head, targets, reward, scale, tangent,
/// grad_params)` on the cpu backend, or `kernel(ex, head, targets, reward, per_dim / normaliser,
/// tangent, grad_params, workspace)` on the cuda backend with the workspace of the shared rule; the
/// scale is scale_of(head, options, 1) (per_dim is 1 for the categorical head).
template <class T, class Head, class Targets, class Reference, class Kernel>
void exact_mixed_product_on(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& reward,
                            const PgOptions<T>& options, const Head& tangent, VectorView<T> grad_params,
                            Reference&& reference, Kernel&& kernel) {
  check_exact_mixed_product<T>(ctx, head, targets, reward, options, tangent, grad_params);
  const auto s = scale_of(head, options, 1);
  detail::run_on<T>(
      ctx, [&] { reference(head, targets, reward, s, tangent, grad_params); },
      [&](const auto& ex) {
        void* ws = ex.workspace(ex.call(kernels::objectives::exact_mixed_product_workspace_bytes,
                                        head_traits<Head>::rows(head), reward.params.size));
        kernel(ex, head, targets, reward, s.per_dim / s.normaliser, tangent, grad_params, ws);
      });
}

}  // namespace d2r::objective_common
