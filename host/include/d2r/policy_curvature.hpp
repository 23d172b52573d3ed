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
#include <string_view>
#include <type_traits>

#include "d2r/buffer.hpp"
#include "d2r/context.hpp"
#include "d2r/distributions.hpp"
#include "d2r/network.hpp"
#include "d2r/objectives.hpp"
#include "d2r/solvers.hpp"

namespace d2r {

/// What distinguishes the policy curvature of one head (the data its rewards score, the samples
/// it draws, its gradient views): the head's entry of head_traits (d2r/types/heads.hpp).
template <class T, class Head>
using PolicyCurvatureHead = head_traits<Head>;

/// The curvature of the inner objective of an Mlp feeding the policy head `Head`
/// (DiagGaussian<T>, CholeskyGaussian<T> or Categorical<T>); use it through the aliases
/// DiagGaussianPolicyCurvature, CholeskyPolicyCurvature and CategoricalPolicyCurvature below.
/// How each head reads the network's outputs, row by row:
///   DiagGaussian      2n outputs [mean | log_std] (state-dependent log-std);
///   CholeskyGaussian  n + n(n+1)/2 outputs [mean | raw tril (packed row-major as in
///                     CholeskyGaussian)], so L_b = tril with diagonal softplus(raw_ii) + jitter;
///                     1 <= n <= kMaxCholeskyDim;
///   Categorical       C outputs, the logits (2 <= C <= kMaxCategoricalClasses); the reward is
///                     the one-hot Mahalanobis reward (full U only for C <= kMaxOneHotFullClasses)
///                     and the per-dimension mean of PgOptions does not apply (as in pg_surrogate).
template <class T, class Head>
class PolicyCurvature {
 public:
  using Targets = typename PolicyCurvatureHead<T, Head>::Targets;
  using Sample = typename PolicyCurvatureHead<T, Head>::Sample;
  using Grad = typename PolicyCurvatureHead<T, Head>::Grad;
  static constexpr bool kCholesky = std::is_same_v<Head, CholeskyGaussian<T>>;

  /// `net`'s outputs must be laid out for the head (above); `batch` is the number of rows B of x.
  PolicyCurvature(Context& ctx, const Mlp& net, std::int64_t batch)
    requires(!kCholesky);
  /// Cholesky head: `jitter` (finite, >= 0) is added to every softplus diagonal of L.
  PolicyCurvature(Context& ctx, const Mlp& net, std::int64_t batch, T jitter = CholeskyGaussian<T>{}.jitter)
    requires(kCholesky);

  /// The surrogate's curvature: evaluates the policy at θ = params on x (B x inputs), draws G
  /// samples per row with `key`, scores them against `targets` (B x n targets or B labels) and
  /// keeps samples, advantages and the cotangents of the surrogate; writes the inner gradient
  /// ∇θ L_in into `grad` (parameter_count entries). Every argument is checked (a d2r::Error
  /// naming it) before `grad` or the kept state is touched; a failure later (a network output
  /// the head rejects under value checks) leaves the object unprepared and `grad` unwritten.
  /// `key` must be a plain step (no step_offset): mixed_product() replays its draws later.
  void prepare(ConstVector<T> params, ConstMatrix<T> x, Targets targets, const MahalanobisReward<T>& reward,
               std::int64_t generations, const PgOptions<T>& options, DrawKey key, VectorView<T> grad);

  /// Exact curvature (DESIGN.md §5 "exact-expectation objective"): evaluates the policy at θ on x
  /// and prepares the Hessian and mixed product of L_exact = −(1/B) Σ_b (E[r_b] + λ H_b)
  /// (exact_objective) — no sampling, so no key and no generations; options.transform and
  /// log_prob_clip do not apply. Writes ∇θ L_exact into `grad`. Checks as prepare(). Unlike the
  /// surrogate's, this curvature is that of the expected objective itself: at an inner optimum
  /// it is positive semi-definite along the variance directions, where the surrogate's
  /// (Σ A ∇²(−log p) with negative rewards) is negative.
  void prepare_exact(ConstVector<T> params, ConstMatrix<T> x, Targets targets, const MahalanobisReward<T>& reward,
                     const PgOptions<T>& options, VectorView<T> grad);

  /// hv = ∇²θ L · v (both parameter_count entries, not overlapping) for the objective of the last
  /// prepare: the surrogate with samples and advantages fixed, or L_exact.
  void apply(ConstVector<T> v, VectorView<T> hv);

  /// The mixed second derivative applied to a parameter direction w:
  ///   grad_params = ∇_φ ( ∇θ L · w )   (reward.params layout),
  /// with the reward, targets, options (and key) of the last prepare, so that the hypergradient
  /// of the implicit step is h = −mixed_product(w) for the solution w of (H + δI) w = ∇θ L_out.
  void mixed_product(ConstVector<T> w, VectorView<T> grad_params);

  /// The same as a LinearOperator (captures this object by reference).
  [[nodiscard]] LinearOperator<T> as_operator();

  /// The head's dimension: n for the Gaussian heads, C for the categorical one.
  [[nodiscard]] std::int64_t dims() const noexcept { return dims_; }

  /// What prepare() kept: samples ((B·G) x n values, or B x G class indices), advantages (B x G),
  /// the cotangent of log p (B x G) and of the entropy (B), and the per-row losses (B) of the
  /// surrogate (after prepare_exact: no samples, G = 0, and the per-row losses of L_exact).
  [[nodiscard]] MatrixView<const Sample> samples() const;
  [[nodiscard]] MatrixView<const T> advantages() const;
  [[nodiscard]] MatrixView<const T> log_prob_cotangent() const;
  [[nodiscard]] VectorView<const T> entropy_cotangent() const;
  [[nodiscard]] VectorView<const T> row_loss() const;

 private:
  Head head_of(MatrixView<const T> out) const;
  Grad grad_of(MatrixView<T> out) const;
  void check_prepare(std::string_view fn, ConstVector<T> params, ConstMatrix<T> x, Targets targets,
                     const MahalanobisReward<T>& reward, const PgOptions<T>& options, VectorView<T> grad);
  void ensure_buffers(std::int64_t generations);
  void keep(ConstVector<T> params, ConstMatrix<T> x, Targets targets, const MahalanobisReward<T>& reward,
            const PgOptions<T>& options, DrawKey key, std::int64_t generations, bool exact);

  Context& ctx_;
  const Mlp& net_;
  std::int64_t batch_, dims_, width_;  // width_: network outputs per row
  T jitter_ = T(0);                    // Cholesky only
  std::int64_t generations_ = 0;
  bool prepared_ = false;
  bool exact_ = false;  // prepared by prepare_exact()
  ConstVector<T> params_{};
  ConstMatrix<T> x_{};
  Targets targets_{};
  MahalanobisReward<T> reward_{};
  PgOptions<T> options_{};
  DrawKey key_{};
  // Network values (B x width) and caches; head samples and scores.
  Buffer<T> out_, cache_, tangent_cache_, tangent_out_, d_head_, d_head_tangent_;
  Buffer<Sample> samples_;
  Buffer<T> log_prob_, rewards_, advantages_, d_log_prob_, entropy_, d_entropy_, row_loss_;
};

/// Diagonal-Gaussian policy: the Mlp's 2n outputs are [mean | log_std], continuous targets.
/// @code
///   d2r::DiagGaussianPolicyCurvature<float> curvature(ctx, net, B);
///   curvature.prepare(theta, x, y, reward, G, options, {.step = k}, grad_inner);   // at θ*
///   d2r::SolveReport<float> rep =
///       d2r::conjugate_gradient(ctx, curvature.as_operator(), grad_outer, w, {.damping = 1e-3f});
///   curvature.mixed_product(w, h);                                               // hypergradient −h
/// @endcode
template <class T>
using DiagGaussianPolicyCurvature = PolicyCurvature<T, DiagGaussian<T>>;

/// Cholesky-Gaussian policy (a state-dependent full covariance L Lᵀ); the exact curvature uses
/// E[r] = −(μ−y)ᵀU(μ−y) − tr(U L Lᵀ) (DESIGN.md §5).
/// @code
///   d2r::Mlp net({.inputs = d, .hidden = {64}, .outputs = n + n * (n + 1) / 2});
///   d2r::CholeskyPolicyCurvature<float> curvature(ctx, net, B);
///   curvature.prepare_exact(theta, x, y, reward, options, grad_inner);        // at θ*
/// @endcode
template <class T>
using CholeskyPolicyCurvature = PolicyCurvature<T, CholeskyGaussian<T>>;

/// Categorical policy over the Mlp's C logits (hidden empty: logistic regression, the paper's
/// tabular policy), class labels and the one-hot Mahalanobis reward.
/// @code
///   d2r::Mlp net({.inputs = d, .outputs = C});
///   d2r::CategoricalPolicyCurvature<float> curvature(ctx, net, B);
///   curvature.prepare(theta, x, labels, reward, G, options, {.step = k}, grad_inner);
/// @endcode
template <class T>
using CategoricalPolicyCurvature = PolicyCurvature<T, Categorical<T>>;

}  // namespace d2r
