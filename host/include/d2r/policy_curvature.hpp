#pragma once
/// @file policy_curvature.hpp
/// The inner objective's curvature with respect to the policy-network parameters θ, as a linear
/// operator for the implicit solvers (DESIGN.md §6): exact Hessian-vector products by
/// forward-over-reverse through an MLP feeding a policy head, for three heads:
///   DiagGaussianPolicyCurvature  the Mlp's 2n outputs are read as [mean | log_std]
///                                (state-dependent log-std), continuous targets;
///   CholeskyPolicyCurvature      the Mlp's n + n(n+1)/2 outputs are read as [mean | raw tril]
///                                (state-dependent full covariance L Lᵀ), continuous targets;
///   CategoricalPolicyCurvature   the Mlp's C outputs are the logits (hidden empty: logistic
///                                regression, the paper's tabular policy), class labels and the
///                                one-hot Mahalanobis reward.
///
/// The objective: the REINFORCE surrogate of pg_surrogate (same reward, options and key), with
/// the samples and the advantages held fixed at the θ of prepare() — the curvature of the
/// paper's implicit step — or, after prepare_exact(), the exact-expectation objective of
/// exact_objective (the "exact curvature", DESIGN.md §5). One HVP costs a forward tangent, the
/// head's backward tangent and the network's backward tangent: about three gradients.
///
/// @code
///   d2r::DiagGaussianPolicyCurvature<float> curvature(ctx, net, B);
///   curvature.prepare(theta, x, y, reward, G, options, {.step = k}, grad_inner);   // at θ*
///   d2r::SolveReport<float> rep =
///       d2r::conjugate_gradient(ctx, curvature.as_operator(), grad_outer, w, {.damping = 1e-3f});
/// @endcode
///
/// Lifetime. The object keeps views of `params`, `x`, `targets` (or `labels`) and the reward
/// parameters, and the Mlp by reference:
/// they must stay alive and unchanged from prepare() until the last apply(). Its own buffers are
/// allocated by the first prepare() (and again only when a later call needs more), so the
/// applies of a solve allocate nothing. Not thread-safe; one per context.

#include <cstdint>
#include <memory>
#include <string_view>

#include "d2r/buffer.hpp"
#include "d2r/context.hpp"
#include "d2r/distributions.hpp"
#include "d2r/network.hpp"
#include "d2r/objectives.hpp"
#include "d2r/solvers.hpp"

namespace d2r {

template <class T>
class DiagGaussianPolicyCurvature {
 public:
  /// `net` must have an even number of outputs 2n; `batch` is the number of rows B of x.
  DiagGaussianPolicyCurvature(Context& ctx, const Mlp& net, std::int64_t batch);

  /// Evaluates the policy at θ = params on x (B x inputs), draws G samples per row with `key`,
  /// scores them against `targets` (B x n) and keeps samples, advantages and the cotangents of
  /// the surrogate; writes the inner gradient ∇θ L_in into `grad` (parameter_count entries).
  void prepare(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> targets, const MahalanobisReward<T>& reward,
               std::int64_t generations, const PgOptions<T>& options, DrawKey key, VectorView<T> grad);

  /// Exact curvature (DESIGN.md §5 "exact-expectation objective"): evaluates the policy at θ on x
  /// and prepares the Hessian and mixed product of L_exact = −(1/B) Σ (E[r_b] + λ H_b) — no
  /// sampling, so no key and no generations; options.transform and log_prob_clip do not apply.
  /// Writes ∇θ L_exact into `grad`. Unlike the surrogate's, this curvature is that of the
  /// expected objective itself: at an inner optimum it is positive semi-definite along the
  /// variance directions, where the surrogate's (Σ A ∇²(−log p) with negative rewards) is negative.
  void prepare_exact(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> targets, const MahalanobisReward<T>& reward,
                     const PgOptions<T>& options, VectorView<T> grad);

  /// hv = ∇²θ L_in · v (both parameter_count entries), samples and advantages fixed.
  void apply(ConstVector<T> v, VectorView<T> hv);

  /// The mixed second derivative applied to a parameter direction w:
  ///   grad_params = ∇_φ ( ∇θ L_in · w )   (reward.params layout),
  /// with the reward, targets, options and key of prepare(), so that the hypergradient of the
  /// implicit step is h = −mixed_product(w) for the solution w of (H + δI) w = ∇θ L_out.
  void mixed_product(ConstVector<T> w, VectorView<T> grad_params);

  /// The same as a LinearOperator (captures this object by reference).
  [[nodiscard]] LinearOperator<T> as_operator();

  /// What prepare() kept: samples ((B·G) x n), advantages (B x G), the cotangent of log p
  /// (B x G) and of the entropy (B), and the per-row losses (B) of the surrogate.
  [[nodiscard]] MatrixView<const T> samples() const;
  [[nodiscard]] MatrixView<const T> advantages() const;
  [[nodiscard]] MatrixView<const T> log_prob_cotangent() const;
  [[nodiscard]] VectorView<const T> entropy_cotangent() const;
  [[nodiscard]] VectorView<const T> row_loss() const;

 private:
  DiagGaussian<T> head_of(MatrixView<const T> out) const;
  void ensure_buffers(std::int64_t generations);

  Context& ctx_;
  const Mlp& net_;
  std::int64_t batch_, n_;
  std::int64_t generations_ = 0;
  bool prepared_ = false;
  bool exact_ = false;  // prepared by prepare_exact()
  ConstVector<T> params_{};
  ConstMatrix<T> x_{};
  ConstMatrix<T> targets_{};
  MahalanobisReward<T> reward_{};
  PgOptions<T> options_{};
  DrawKey key_{};
  // Network values (B x 2n) and caches; head samples and scores.
  Buffer<T> out_, cache_, tangent_cache_, tangent_out_, d_head_, d_head_tangent_;
  Buffer<T> samples_, log_prob_, rewards_, advantages_, d_log_prob_, entropy_, d_entropy_, row_loss_;
};

/// The Cholesky-Gaussian counterpart of DiagGaussianPolicyCurvature: the Mlp's outputs are read,
/// row by row, as [mean (n) | raw tril (n(n+1)/2, packed row-major as in CholeskyGaussian)], so
/// L_b = tril with diagonal softplus(raw_ii) + jitter (the layout of GaussianPolicy's Cholesky
/// head). Surrogate (prepare) and exact (prepare_exact) curvature as for the diagonal head; the
/// exact one uses E[r] = −(μ−y)ᵀU(μ−y) − tr(U L Lᵀ) (DESIGN.md §5).
///
/// @code
///   d2r::Mlp net({.inputs = d, .hidden = {64}, .outputs = n + n * (n + 1) / 2});
///   d2r::CholeskyPolicyCurvature<float> curvature(ctx, net, B);
///   curvature.prepare_exact(theta, x, y, reward, options, grad_inner);        // at θ*
///   d2r::conjugate_gradient(ctx, curvature.as_operator(), grad_outer, w, {.damping = 1e-3f});
///   curvature.mixed_product(w, h);                                             // hypergradient −h
/// @endcode
template <class T>
class CholeskyPolicyCurvature {
 public:
  /// `net` must have n + n(n+1)/2 outputs for some 1 <= n <= kMaxCholeskyDim; `batch` is the
  /// number of rows B of x; `jitter` (finite, >= 0) is added to every softplus diagonal of L.
  CholeskyPolicyCurvature(Context& ctx, const Mlp& net, std::int64_t batch, T jitter = CholeskyGaussian<T>{}.jitter);

  /// Evaluates the policy at θ = params on x (B x inputs), draws G samples per row with `key`,
  /// scores them against `targets` (B x n) and keeps samples, advantages and the cotangents of
  /// the surrogate; writes the inner gradient ∇θ L_in into `grad` (parameter_count entries).
  /// Every argument is checked (a d2r::Error naming it) before `grad` or the kept state is
  /// touched; a failure later (a network output the head rejects under value checks) leaves the
  /// object unprepared and `grad` unwritten.
  void prepare(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> targets, const MahalanobisReward<T>& reward,
               std::int64_t generations, const PgOptions<T>& options, DrawKey key, VectorView<T> grad);

  /// Exact curvature: evaluates the policy at θ on x and prepares the Hessian and mixed product
  /// of L_exact = −(1/N) Σ_b (E[r_b] + λ H_b) (exact_objective) — no sampling, so no key and no
  /// generations; options.transform and log_prob_clip do not apply. Writes ∇θ L_exact into
  /// `grad`. Checks as prepare().
  void prepare_exact(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> targets, const MahalanobisReward<T>& reward,
                     const PgOptions<T>& options, VectorView<T> grad);

  /// hv = ∇²θ L · v (both parameter_count entries, not overlapping) for the objective of the last
  /// prepare: the surrogate with samples and advantages fixed, or L_exact.
  void apply(ConstVector<T> v, VectorView<T> hv);

  /// grad_params = ∇_φ ( ∇θ L · w ) (reward.params layout), with the reward, targets, options
  /// (and key) of the last prepare: the hypergradient of the implicit step is h = −mixed_product(w).
  void mixed_product(ConstVector<T> w, VectorView<T> grad_params);

  /// The same as a LinearOperator (captures this object by reference).
  [[nodiscard]] LinearOperator<T> as_operator();

  /// The output dimension n of the head.
  [[nodiscard]] std::int64_t dims() const noexcept { return n_; }

  /// What prepare() kept: samples ((B·G) x n), advantages (B x G), the cotangent of log p
  /// (B x G) and of the entropy (B), and the per-row losses (B) of the surrogate (after
  /// prepare_exact: no samples, G = 0, and the per-row losses of L_exact).
  [[nodiscard]] MatrixView<const T> samples() const;
  [[nodiscard]] MatrixView<const T> advantages() const;
  [[nodiscard]] MatrixView<const T> log_prob_cotangent() const;
  [[nodiscard]] VectorView<const T> entropy_cotangent() const;
  [[nodiscard]] VectorView<const T> row_loss() const;

 private:
  CholeskyGaussian<T> head_of(MatrixView<const T> out) const;
  CholeskyGaussianGrad<T> grad_of(MatrixView<T> out) const;
  void check_prepare(std::string_view fn, ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> targets,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, VectorView<T> grad);
  void ensure_buffers(std::int64_t generations);

  Context& ctx_;
  const Mlp& net_;
  std::int64_t batch_, n_, packed_, width_;  // width_ = n + n(n+1)/2 outputs per row
  T jitter_;
  std::int64_t generations_ = 0;
  bool prepared_ = false;
  bool exact_ = false;  // prepared by prepare_exact()
  ConstVector<T> params_{};
  ConstMatrix<T> x_{};
  ConstMatrix<T> targets_{};
  MahalanobisReward<T> reward_{};
  PgOptions<T> options_{};
  DrawKey key_{};
  // Network values (B x width) and caches; head samples and scores.
  Buffer<T> out_, cache_, tangent_cache_, tangent_out_, d_head_, d_head_tangent_;
  Buffer<T> samples_, log_prob_, rewards_, advantages_, d_log_prob_, entropy_, d_entropy_, row_loss_;
};

/// The categorical counterpart of DiagGaussianPolicyCurvature: an Mlp whose C outputs
/// (2 <= C <= kMaxCategoricalClasses) are the logits of a Categorical head, class labels, and
/// a one-hot Mahalanobis reward (scalar β, diagonal or full U; full for C <= kMaxOneHotFullClasses).
/// The per-dimension mean of PgOptions does not apply to a categorical head (as in pg_surrogate).
///
/// @code
///   d2r::Mlp net({.inputs = d, .outputs = C});                          // logistic regression
///   d2r::CategoricalPolicyCurvature<float> curvature(ctx, net, B);
///   curvature.prepare(theta, x, labels, reward, G, options, {.step = k}, grad_inner);
///   d2r::conjugate_gradient(ctx, curvature.as_operator(), grad_outer, w, {.damping = 1e-3f});
///   curvature.mixed_product(w, h);                                      // hypergradient −h
/// @endcode
template <class T>
class CategoricalPolicyCurvature {
 public:
  /// `net` has C = net.spec().outputs classes, 2 <= C <= kMaxCategoricalClasses; `batch` is the
  /// number of rows B of x.
  CategoricalPolicyCurvature(Context& ctx, const Mlp& net, std::int64_t batch);

  /// Evaluates the logits at θ = params on x (B x inputs), draws G class indices per row with
  /// `key`, scores them against `labels` (B class indices in [0, C)) with the one-hot reward and
  /// keeps samples, advantages and the cotangents of the surrogate; writes the inner gradient
  /// ∇θ L_in into `grad` (parameter_count entries). Every argument is checked (a d2r::Error
  /// naming it) before `grad` or the kept state is touched; a failure later (non-finite logits
  /// under value checks) leaves the object unprepared and `grad` unwritten.
  void prepare(ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels,
               const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options, DrawKey key,
               VectorView<T> grad);

  /// Exact curvature: evaluates the logits at θ on x and prepares the Hessian and mixed product of
  /// L_exact = −(1/N) Σ_b (Σ_k p_k r(k, y_b) + λ H_b) (exact_objective) — no sampling, so no key
  /// and no generations; options.transform and log_prob_clip do not apply. Writes ∇θ L_exact
  /// into `grad`. Checks as prepare().
  void prepare_exact(ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, VectorView<T> grad);

  /// hv = ∇²θ L · v (both parameter_count entries) for the objective of the last prepare: the
  /// surrogate with samples and advantages fixed, or L_exact.
  void apply(ConstVector<T> v, VectorView<T> hv);

  /// grad_params = ∇_φ ( ∇θ L · w ) (reward.params layout), with the reward, labels, options
  /// (and key) of the last prepare: the hypergradient of the implicit step is h = −mixed_product(w).
  void mixed_product(ConstVector<T> w, VectorView<T> grad_params);

  /// The same as a LinearOperator (captures this object by reference).
  [[nodiscard]] LinearOperator<T> as_operator();

  /// What prepare() kept: samples (B x G class indices), advantages (B x G), the cotangent of
  /// log p (B x G) and of the entropy (B), and the per-row losses (B) of the surrogate (after
  /// prepare_exact: no samples, G = 0, and the per-row losses of L_exact).
  [[nodiscard]] MatrixView<const std::int32_t> samples() const;
  [[nodiscard]] MatrixView<const T> advantages() const;
  [[nodiscard]] MatrixView<const T> log_prob_cotangent() const;
  [[nodiscard]] VectorView<const T> entropy_cotangent() const;
  [[nodiscard]] VectorView<const T> row_loss() const;

 private:
  Categorical<T> head_of(MatrixView<const T> out) const;
  void check_prepare(std::string_view fn, ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, VectorView<T> grad);
  void ensure_buffers(std::int64_t generations);

  Context& ctx_;
  const Mlp& net_;
  std::int64_t batch_, classes_;
  std::int64_t generations_ = 0;
  bool prepared_ = false;
  bool exact_ = false;  // prepared by prepare_exact()
  ConstVector<T> params_{};
  ConstMatrix<T> x_{};
  VectorView<const std::int32_t> labels_{};
  MahalanobisReward<T> reward_{};
  PgOptions<T> options_{};
  DrawKey key_{};
  // Logits (B x C) and caches; head samples and scores.
  Buffer<T> out_, cache_, tangent_cache_, tangent_out_, d_head_, d_head_tangent_;
  Buffer<std::int32_t> samples_;
  Buffer<T> log_prob_, rewards_, advantages_, d_log_prob_, entropy_, d_entropy_, row_loss_;
};

}  // namespace d2r
