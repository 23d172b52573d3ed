#pragma once
// CPU reference of the optimisers and gradient conditioning (d2r/optim.hpp). Plain loops,
// templated on the scalar type: the test oracle (double) and the cpu backend (float/double).
// The kernels (kernels/optim/optim.cuh) evaluate the same expressions in the same order.

#include <cmath>
#include <cstdint>

#include "d2r/types/optim.hpp"

namespace d2r::reference::optim {

/// Per-step scalars of Adam for step t = count + 1, computed in double (as PyTorch computes
/// 1 − β^t from Python floats) and rounded to T once.
template <class T>
struct AdamStepScalars {
  T step_size;          ///< lr / (1 − β1^t)
  T bias_correction2_sqrt;  ///< √(1 − β2^t)
};

template <class T>
AdamStepScalars<T> adam_step_scalars(const AdamOptions<T>& o, std::int64_t count) {
  const double t = static_cast<double>(count) + 1.0;
  const double bc1 = 1.0 - std::pow(static_cast<double>(o.beta1), t);
  const double bc2 = 1.0 - std::pow(static_cast<double>(o.beta2), t);
  return {static_cast<T>(static_cast<double>(o.learning_rate) / bc1), static_cast<T>(std::sqrt(bc2))};
}

template <class T>
void adam_reset(const AdamState<T>& state) {
  for (std::int64_t i = 0; i < state.first_moment.size; ++i) state.first_moment[i] = T(0);
  for (std::int64_t i = 0; i < state.second_moment.size; ++i) state.second_moment[i] = T(0);
  state.step[0] = 0;
}

template <class T>
void adam_step(const AdamOptions<T>& o, const AdamState<T>& state, VectorView<T> params, VectorView<const T> grad) {
  const AdamStepScalars<T> s = adam_step_scalars(o, state.step[0]);
  const T one_minus_beta1 = T(1) - o.beta1, one_minus_beta2 = T(1) - o.beta2;
  const T decay = T(1) - o.learning_rate * o.weight_decay;
  for (std::int64_t i = 0; i < params.size; ++i) {
    const T g = grad[i];
    const T m = o.beta1 * state.first_moment[i] + one_minus_beta1 * g;
    const T v = o.beta2 * state.second_moment[i] + one_minus_beta2 * g * g;
    T p = params[i];
    if (o.weight_decay > T(0)) p *= decay;
    const T denom = std::sqrt(v) / s.bias_correction2_sqrt + o.epsilon;
    params[i] = p - s.step_size * (m / denom);
    state.first_moment[i] = m;
    state.second_moment[i] = v;
  }
  state.step[0] += 1;
}

template <class T>
void sgd_step(T learning_rate, T momentum, VectorView<T> velocity, VectorView<T> params, VectorView<const T> grad) {
  for (std::int64_t i = 0; i < params.size; ++i) {
    T d = grad[i];
    if (momentum > T(0)) {
      d = momentum * velocity[i] + d;
      velocity[i] = d;
    }
    params[i] -= learning_rate * d;
  }
}

/// Clamp that keeps NaN (a comparison with NaN is false both ways).
template <class T>
T clamp_value(T x, T limit) {
  return x < -limit ? -limit : (x > limit ? limit : x);
}

template <class T>
void clamp_values(T limit, VectorView<T> values) {
  for (std::int64_t i = 0; i < values.size; ++i) values[i] = clamp_value(values[i], limit);
}

/// ‖values‖₂ with the squares summed in double in index order.
template <class T>
double global_norm(VectorView<const T> values) {
  double sum = 0;
  for (std::int64_t i = 0; i < values.size; ++i) sum += static_cast<double>(values[i]) * static_cast<double>(values[i]);
  return std::sqrt(sum);
}

/// Scale applied by clip_global_norm for a norm N: max_norm / N when N > max_norm, else 1.
inline double clip_scale(double norm, double max_norm) { return norm > max_norm ? max_norm / norm : 1.0; }

template <class T>
void clip_global_norm(T max_norm, VectorView<T> values, VectorView<T> norm_out) {
  const double norm = global_norm(VectorView<const T>(values));
  const double scale = clip_scale(norm, static_cast<double>(max_norm));
  if (scale != 1.0) {
    const T s = static_cast<T>(scale);
    for (std::int64_t i = 0; i < values.size; ++i) values[i] *= s;
  }
  if (!norm_out.empty()) norm_out[0] = static_cast<T>(norm);
}

}  // namespace d2r::reference::optim
