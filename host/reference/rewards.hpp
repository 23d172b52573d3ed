#pragma once
// CPU reference of the reward family and the group transforms (DESIGN.md §4). Plain loops,
// templated on the scalar type: the test oracle (double) and the cpu backend (float/double).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "d2r/types/objectives.hpp"
#include "common/math/numerics.hpp"

namespace d2r::reference::rewards {

/// Index of entry (i, j), j <= i, in a row-major packed lower triangle.
inline std::int64_t tril_index(std::int64_t i, std::int64_t j) { return i * (i + 1) / 2 + j; }

/// −δᵀ U δ for a difference vector δ (length dim, read through `delta(i)`).
template <class T, class Delta>
T mahalanobis_reward(const MahalanobisReward<T>& reward, std::int64_t dim, Delta&& delta) {
  T quad = 0;
  switch (reward.form) {
    case RewardForm::scalar:
      for (std::int64_t i = 0; i < dim; ++i) quad += delta(i) * delta(i);
      quad *= reward.params[0];
      break;
    case RewardForm::diagonal:
      for (std::int64_t i = 0; i < dim; ++i) quad += reward.params[i] * delta(i) * delta(i);
      break;
    case RewardForm::full:
      // ‖Rᵀδ‖², (Rᵀδ)_j = Σ_{i>=j} R_ij δ_i.
      for (std::int64_t j = 0; j < dim; ++j) {
        T v = 0;
        for (std::int64_t i = j; i < dim; ++i) v += reward.params[tril_index(i, j)] * delta(i);
        quad += v * v;
      }
      break;
  }
  return -quad;
}

/// Adds c · ∂(−δᵀUδ)/∂params into grad (same layout as params).
template <class T, class Delta>
void mahalanobis_reward_grad(const MahalanobisReward<T>& reward, std::int64_t dim, Delta&& delta, T c, T* grad) {
  switch (reward.form) {
    case RewardForm::scalar: {
      T sq = 0;
      for (std::int64_t i = 0; i < dim; ++i) sq += delta(i) * delta(i);
      grad[0] -= c * sq;
      break;
    }
    case RewardForm::diagonal:
      for (std::int64_t i = 0; i < dim; ++i) grad[i] -= c * delta(i) * delta(i);
      break;
    case RewardForm::full:
      // ∂/∂R_ij of −Σ_j (Rᵀδ)_j² = −2 δ_i (Rᵀδ)_j, i >= j.
      for (std::int64_t j = 0; j < dim; ++j) {
        T v = 0;
        for (std::int64_t i = j; i < dim; ++i) v += reward.params[tril_index(i, j)] * delta(i);
        for (std::int64_t i = j; i < dim; ++i) grad[tril_index(i, j)] -= c * T(2) * delta(i) * v;
      }
      break;
  }
}

template <class T>
void reward_continuous(const MahalanobisReward<T>& reward, MatrixView<const T> samples, MatrixView<const T> targets,
                       MatrixView<T> out) {
  const std::int64_t n = targets.cols, generations = out.cols;
  for (std::int64_t b = 0; b < out.rows; ++b)
    for (std::int64_t g = 0; g < generations; ++g)
      out(b, g) = mahalanobis_reward(reward, n, [&](std::int64_t i) { return samples(b * generations + g, i) - targets(b, i); });
}

/// One-hot difference e_k − e_y as a function of the coordinate.
struct OneHotDelta {
  std::int32_t k, y;
  template <class T = double>
  T operator()(std::int64_t i) const {
    return static_cast<T>((i == k ? 1 : 0) - (i == y ? 1 : 0));
  }
};

/// r(k, y) for a one-hot reward in `classes` dimensions, in O(1) for scalar/diagonal forms.
template <class T>
T one_hot_reward(const MahalanobisReward<T>& reward, std::int64_t classes, std::int32_t k, std::int32_t y) {
  // k = −1 is the draw of a row without a distribution (all logits −inf, ValueChecks::none).
  if (k < 0) return std::numeric_limits<T>::quiet_NaN();
  if (k == y) return T(0);
  switch (reward.form) {
    case RewardForm::scalar: return T(-2) * reward.params[0];
    case RewardForm::diagonal: return -(reward.params[k] + reward.params[y]);
    case RewardForm::full: {
      // −‖R_k,: − R_y,:‖² over the packed rows of R.
      T s = 0;
      for (std::int64_t j = 0; j < classes; ++j) {
        const T rk = j <= k ? reward.params[tril_index(k, j)] : T(0);
        const T ry = j <= y ? reward.params[tril_index(y, j)] : T(0);
        s += (rk - ry) * (rk - ry);
      }
      return -s;
    }
  }
  return T(0);
}

template <class T>
void reward_one_hot(const MahalanobisReward<T>& reward, MatrixView<const std::int32_t> samples,
                    VectorView<const std::int32_t> labels, std::int64_t classes, MatrixView<T> out) {
  for (std::int64_t b = 0; b < out.rows; ++b)
    for (std::int64_t g = 0; g < out.cols; ++g) out(b, g) = one_hot_reward(reward, classes, samples(b, g), labels[b]);
}

template <class T>
void reward_backward_continuous(const MahalanobisReward<T>& reward, MatrixView<const T> samples,
                                MatrixView<const T> targets, MatrixView<const T> d_reward, VectorView<T> grad) {
  const std::int64_t n = targets.cols, generations = d_reward.cols;
  std::fill(grad.data, grad.data + grad.size, T(0));
  for (std::int64_t b = 0; b < d_reward.rows; ++b)
    for (std::int64_t g = 0; g < generations; ++g)
      mahalanobis_reward_grad(reward, n, [&](std::int64_t i) { return samples(b * generations + g, i) - targets(b, i); },
                              d_reward(b, g), grad.data);
}

template <class T>
void reward_backward_one_hot(const MahalanobisReward<T>& reward, MatrixView<const std::int32_t> samples,
                             VectorView<const std::int32_t> labels, std::int64_t /*classes*/,
                             MatrixView<const T> d_reward, VectorView<T> grad) {
  std::fill(grad.data, grad.data + grad.size, T(0));
  for (std::int64_t b = 0; b < d_reward.rows; ++b) {
    for (std::int64_t g = 0; g < d_reward.cols; ++g) {
      const std::int32_t k = samples(b, g), y = labels[b];
      if (k == y || k < 0) continue;  // k = −1: a row without a distribution (its reward is NaN)
      const T c = d_reward(b, g);
      switch (reward.form) {
        case RewardForm::scalar: grad[0] -= T(2) * c; break;
        case RewardForm::diagonal:
          grad[k] -= c;
          grad[y] -= c;
          break;
        case RewardForm::full:
          for (std::int64_t j = 0; j <= std::max(k, y); ++j) {
            const T rk = j <= k ? reward.params[tril_index(k, j)] : T(0);
            const T ry = j <= y ? reward.params[tril_index(y, j)] : T(0);
            if (j <= k) grad[tril_index(k, j)] -= c * T(2) * (rk - ry);
            if (j <= y) grad[tril_index(y, j)] += c * T(2) * (rk - ry);
          }
          break;
      }
    }
  }
}

/// A = T(r) over the G entries of one row.
template <class T>
void transform_row(const TransformOptions<T>& options, const T* r, T* a, std::int64_t generations) {
  const auto G = generations;
  switch (options.kind) {
    case Transform::none:
      for (std::int64_t g = 0; g < G; ++g) a[g] = r[g];
      break;
    case Transform::normalize: {
      const T lo = *std::min_element(r, r + G);
      for (std::int64_t g = 0; g < G; ++g) a[g] = r[g] - lo;
      break;
    }
    case Transform::rbf:
      for (std::int64_t g = 0; g < G; ++g) a[g] = math::exp_(options.rbf_gamma * r[g]);
      break;
    case Transform::leave_one_out: {
      T sum = 0;
      for (std::int64_t g = 0; g < G; ++g) sum += r[g];
      for (std::int64_t g = 0; g < G; ++g) a[g] = r[g] - (sum - r[g]) / T(G - 1);
      break;
    }
    case Transform::standardize: {
      // Centred on z = r − lo first: the same value in exact arithmetic, and a group of equal
      // rewards (every draw of a one-hot reward missing the label, say) gets a mean of exactly 0
      // and advantages of exactly 0 — sum/G of equal floats can be off by an ulp, which the
      // division by s + ε (s = 0) would blow up to O(0.1).
      const T lo = *std::min_element(r, r + G);
      T mean = 0, sq = 0;
      for (std::int64_t g = 0; g < G; ++g) mean += r[g] - lo;
      mean /= T(G);
      for (std::int64_t g = 0; g < G; ++g) sq += (r[g] - lo - mean) * (r[g] - lo - mean);
      const T std_dev = math::sqrt_(sq / T(G - 1));
      for (std::int64_t g = 0; g < G; ++g) a[g] = (r[g] - lo - mean) / (std_dev + options.standardize_epsilon);
      break;
    }
  }
}

template <class T>
void transform_rewards(const TransformOptions<T>& options, MatrixView<const T> rewards, MatrixView<T> advantages) {
  std::vector<T> r(rewards.cols), a(rewards.cols);
  for (std::int64_t b = 0; b < rewards.rows; ++b) {
    for (std::int64_t g = 0; g < rewards.cols; ++g) r[g] = rewards(b, g);
    transform_row(options, r.data(), a.data(), rewards.cols);
    for (std::int64_t g = 0; g < rewards.cols; ++g) advantages(b, g) = a[g];
  }
}

}  // namespace d2r::reference::rewards
