// Public entry points of the optimisers and gradient conditioning (d2r/optim.hpp).
//
// Order of the checks, all before the first write: scalar type for the backend,
// hyperparameters, sizes / pointers / memory space, aliasing, then (ValueChecks::full) values.
#include <cmath>
#include <initializer_list>
#include <type_traits>

#include "d2r/optim.hpp"
#include "host/reference/optim.hpp"
#include "host/src/validate.hpp"
#include "kernels/optim/launch.hpp"

namespace d2r {
namespace {

using detail::MatrixArg;

template <class T>
void check_type(const Context& ctx, std::string_view fn, std::string_view argument) {
  detail::check_backend_type<T>(ctx, fn, argument);
}

/// A vector of exactly `size` (>= 1) elements, non-null, in the backend's memory space.
template <class V>
void check_vector(const Context& ctx, std::string_view fn, std::string_view name, V v, std::int64_t size) {
  D2R_EXPECTS(v.size == size, fn, name, "expected {} element{}, got {}", size, size == 1 ? "" : "s", v.size);
  detail::check_matrix(ctx, fn, MatrixArg(name, v), 1, size);
}

/// The vector every other one is sized by: non-empty.
template <class V>
void check_leading(const Context& ctx, std::string_view fn, std::string_view name, V v) {
  D2R_EXPECTS(v.size >= 1, fn, name, "expected a non-empty vector, got {} elements", v.size);
  detail::check_matrix(ctx, fn, MatrixArg(name, v), 1, v.size);
}

/// Each written vector is disjoint from every other argument.
void check_no_overlap(std::string_view fn, std::initializer_list<MatrixArg> outputs,
                      std::initializer_list<MatrixArg> inputs) {
  for (auto out = outputs.begin(); out != outputs.end(); ++out) {
    for (auto other = out + 1; other != outputs.end(); ++other) detail::check_disjoint(fn, *out, *other);
    for (const MatrixArg& in : inputs) detail::check_disjoint(fn, *out, in);
  }
}

template <class T>
void check_finite_values(Context& ctx, std::string_view fn, std::string_view name, VectorView<const T> v) {
  detail::check_values<T>(ctx, fn, name, MatrixView<const T>{v.data, 1, v.size, v.size}, detail::ValueRule::finite);
}

template <class T>
void expect_positive_finite(std::string_view fn, std::string_view name, T value) {
  D2R_EXPECTS(std::isfinite(value) && value > T(0), fn, name, "expected a finite value > 0, got {}", value);
}

template <class T>
void expect_unit_interval(std::string_view fn, std::string_view name, T value) {
  D2R_EXPECTS(value >= T(0) && value < T(1), fn, name, "expected a value in [0, 1), got {}", value);
}

/// The state's sizes: both moments of length n, one step element.
template <class T>
void check_adam_state(const Context& ctx, std::string_view fn, const AdamState<T>& state, std::int64_t n) {
  check_vector(ctx, fn, "state.first_moment", state.first_moment, n);
  check_vector(ctx, fn, "state.second_moment", state.second_moment, n);
  check_vector(ctx, fn, "state.step", state.step, 1);
}

std::int64_t read_step(const Context& ctx, VectorView<std::int64_t> step) {
  std::int64_t value = 0;
  ctx.to_host(&value, step.data, sizeof value);
  return value;
}

}  // namespace

template <class T>
void adam_reset(Context& ctx, const AdamState<T>& state) {
  constexpr std::string_view fn = "adam_reset";
  check_type<T>(ctx, fn, "state");
  check_leading(ctx, fn, "state.first_moment", state.first_moment);
  check_adam_state(ctx, fn, state, state.first_moment.size);
  check_no_overlap(fn,
                   {MatrixArg("state.first_moment", state.first_moment),
                    MatrixArg("state.second_moment", state.second_moment), MatrixArg("state.step", state.step)},
                   {});
  detail::run_on<T>(
      ctx, [&] { reference::optim::adam_reset(state); },
      [&](const auto& ex) { ex.launch(kernels::optim::adam_reset, state); });
}

template <class T>
void adam_step(Context& ctx, const AdamOptions<T>& options, const AdamState<T>& state, VectorView<T> params,
               ConstVector<T> grad) {
  constexpr std::string_view fn = "adam_step";
  check_type<T>(ctx, fn, "params");
  expect_positive_finite(fn, "options.learning_rate", options.learning_rate);
  expect_unit_interval(fn, "options.beta1", options.beta1);
  expect_unit_interval(fn, "options.beta2", options.beta2);
  expect_positive_finite(fn, "options.epsilon", options.epsilon);
  D2R_EXPECTS(std::isfinite(options.weight_decay) && options.weight_decay >= T(0), fn, "options.weight_decay",
              "expected a finite value >= 0, got {}", options.weight_decay);
  check_leading(ctx, fn, "params", params);
  check_vector(ctx, fn, "grad", grad, params.size);
  check_adam_state(ctx, fn, state, params.size);
  check_no_overlap(fn,
                   {MatrixArg("params", params), MatrixArg("state.first_moment", state.first_moment),
                    MatrixArg("state.second_moment", state.second_moment), MatrixArg("state.step", state.step)},
                   {MatrixArg("grad", grad)});
  check_finite_values<T>(ctx, fn, "grad", grad);
  if (ctx.value_checks() == ValueChecks::full) {
    const std::int64_t count = read_step(ctx, state.step);
    D2R_EXPECTS(count >= 0, fn, "state.step", "expected a step count >= 0, got {}", count);
  }
  detail::run_on<T>(
      ctx, [&] { reference::optim::adam_step(options, state, params, grad); },
      [&](const auto& ex) { ex.launch(kernels::optim::adam_step, options, state, params, grad); });
}

template <class T>
void sgd_step(Context& ctx, std::type_identity_t<T> learning_rate, std::type_identity_t<T> momentum,
              VectorView<T> velocity, VectorView<T> params, ConstVector<T> grad) {
  constexpr std::string_view fn = "sgd_step";
  check_type<T>(ctx, fn, "params");
  expect_positive_finite(fn, "learning_rate", learning_rate);
  expect_unit_interval(fn, "momentum", momentum);
  check_leading(ctx, fn, "params", params);
  check_vector(ctx, fn, "grad", grad, params.size);
  const bool uses_velocity = momentum > T(0);
  D2R_EXPECTS(!uses_velocity || !velocity.empty(), fn, "velocity",
              "momentum {} > 0 needs a velocity buffer of {} elements, got an empty view", momentum, params.size);
  if (!velocity.empty()) check_vector(ctx, fn, "velocity", velocity, params.size);
  check_no_overlap(fn, {MatrixArg("params", params), MatrixArg("velocity", velocity)}, {MatrixArg("grad", grad)});
  check_finite_values<T>(ctx, fn, "grad", grad);
  detail::run_on<T>(
      ctx, [&] { reference::optim::sgd_step<T>(learning_rate, momentum, velocity, params, grad); },
      [&](const auto& ex) { ex.launch(kernels::optim::sgd_step, learning_rate, momentum, velocity, params, grad); });
}

template <class T>
void clamp_values(Context& ctx, std::type_identity_t<T> limit, VectorView<T> values) {
  constexpr std::string_view fn = "clamp_values";
  check_type<T>(ctx, fn, "values");
  D2R_EXPECTS(limit > T(0), fn, "limit", "expected a value > 0 (or +inf), got {}", limit);
  check_leading(ctx, fn, "values", values);
  check_finite_values<T>(ctx, fn, "values", values);
  detail::run_on<T>(
      ctx, [&] { reference::optim::clamp_values<T>(limit, values); },
      [&](const auto& ex) { ex.launch(kernels::optim::clamp_values, limit, values); });
}

template <class T>
void clip_global_norm(Context& ctx, std::type_identity_t<T> max_norm, VectorView<T> values, VectorView<T> norm_out) {
  constexpr std::string_view fn = "clip_global_norm";
  check_type<T>(ctx, fn, "values");
  expect_positive_finite(fn, "max_norm", max_norm);
  check_leading(ctx, fn, "values", values);
  if (!norm_out.empty()) check_vector(ctx, fn, "norm_out", norm_out, 1);
  check_no_overlap(fn, {MatrixArg("values", values), MatrixArg("norm_out", norm_out)}, {});
  check_finite_values<T>(ctx, fn, "values", values);
  detail::run_on<T>(
      ctx, [&] { reference::optim::clip_global_norm<T>(max_norm, values, norm_out); },
      [&](const auto& ex) {
        void* workspace = ctx.workspace(ex.call(kernels::optim::clip_global_norm_workspace_bytes, values.size));
        ex.launch(kernels::optim::clip_global_norm, max_norm, values, norm_out, workspace);
      });
}

void advance_counter(Context& ctx, VectorView<std::int64_t> counter, std::int64_t by) {
  constexpr std::string_view fn = "advance_counter";
  D2R_EXPECTS(counter.size == 1, fn, "counter", "expected one element, got {}", counter.size);
  detail::check_matrix(ctx, fn, detail::MatrixArg("counter", counter), 1, 1);
  detail::run_on<std::int64_t>(
      ctx, [&] { counter[0] += by; },
      [&](const auto& ex) { ex.launch(kernels::optim::advance_counter, counter.data, by); });
}

#define D2R_INSTANTIATE(T)                                                                                     \
  template void adam_reset<T>(Context&, const AdamState<T>&);                                                  \
  template void adam_step<T>(Context&, const AdamOptions<T>&, const AdamState<T>&, VectorView<T>,              \
                             ConstVector<T>);                                                                  \
  template void sgd_step<T>(Context&, std::type_identity_t<T>, std::type_identity_t<T>, VectorView<T>,         \
                            VectorView<T>, ConstVector<T>);                                                    \
  template void clamp_values<T>(Context&, std::type_identity_t<T>, VectorView<T>);                             \
  template void clip_global_norm<T>(Context&, std::type_identity_t<T>, VectorView<T>, VectorView<T>);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r
