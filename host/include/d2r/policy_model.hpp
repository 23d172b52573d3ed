#pragma once
/// @file policy_model.hpp
/// A Gaussian regression policy p_θ(y | x): an Mlp trunk whose outputs parameterise a diagonal
/// or a Cholesky Gaussian head, with the losses the trainers of d2r/bilevel.hpp minimise and
/// the metrics they report (DESIGN.md §5, PAPER.md "Metrics").
///
/// Output layout of the trunk (one row per input row):
///   diagonal head:  [mean (n) | log_std (n)]                      outputs = 2n
///   Cholesky head:  [mean (n) | raw tril (n(n+1)/2, packed)]      outputs = n + n(n+1)/2
///
/// Losses (all means over rows; gradients written into a flat vector of parameter_count()):
///   pg_gradient   the REINFORCE surrogate L_in of pg_surrogate (fused head), samples drawn with
///                 the given Philox key
///   nll_gradient  L_out = −(1/B) Σ_b log p_θ(y_b | x_b)
///   mse_gradient  (1/B) Σ_b ‖μ_θ(x_b) − y_b‖² (the variance outputs get zero gradient)
/// None of them synchronises the stream or reads values back: an inner loop made of them, of
/// clamp_values and adam_step runs asynchronously on the cuda backend. evaluate() reads back.
///
/// Views (x, y, params, grad) live in the context's memory space. x is B x inputs, y is B x n,
/// with B <= the batch capacity given at construction. Value checks follow the context.
///
/// @code
///   d2r::GaussianPolicy<float> policy(ctx, {.inputs = 2, .hidden = {64, 64}, .outputs = 0}, 2,
///                                     d2r::GaussianHead::diagonal, B);
///   d2r::Buffer<float> theta(ctx, policy.parameter_count()), grad(ctx, policy.parameter_count());
///   policy.init(theta.vector(), /*seed=*/1);
///   policy.nll_gradient(theta.vector(), x, y, grad.vector());
/// @endcode

#include <cstdint>
#include <limits>

#include "d2r/buffer.hpp"
#include "d2r/context.hpp"
#include "d2r/distributions.hpp"
#include "d2r/network.hpp"
#include "d2r/objectives.hpp"
#include "d2r/view.hpp"

namespace d2r {

/// The Gaussian head a GaussianPolicy's trunk feeds.
enum class GaussianHead {
  diagonal,  ///< N(μ, diag(exp(log_std)²)), state-dependent log-std
  cholesky,  ///< N(μ, L Lᵀ), L from softplus-diagonal raw entries (CholeskyGaussian)
};
/// "diagonal" or "cholesky".
const char* to_string(GaussianHead head) noexcept;

/// Metrics of a policy on a data set, computed in double on the host.
struct PolicyMetrics {
  double nll_per_dim = 0;  ///< −(1/(B n)) Σ log p(y | x): the paper's per-dimension NLL (n = 1 for classes)
  double rmse = 0;         ///< √((1/(B n)) Σ ‖μ − y‖²): the error of the mean (NaN for classes)
  double mean_std = 0;     ///< (1/(B n)) Σ_b Σ_d √Cov_b,dd: the average predicted standard deviation (NaN for classes)
  double accuracy = std::numeric_limits<double>::quiet_NaN();  ///< fraction of argmax-correct rows (classes only)
};

template <class T>
class GaussianPolicy {
 public:
  /// `trunk.outputs` is ignored and set from the head (2n or n + n(n+1)/2); every other field of
  /// the spec is the Mlp's. `dims` = n >= 1 (n <= kMaxCholeskyDim for the Cholesky head);
  /// `batch` = the largest number of rows any later call is given (>= 1).
  /// @throws d2r::Error naming "dims", "batch" or the trunk's spec fields
  GaussianPolicy(Context& ctx, MlpSpec trunk, std::int64_t dims, GaussianHead head, std::int64_t batch);

  [[nodiscard]] const Mlp& net() const noexcept { return net_; }
  [[nodiscard]] GaussianHead head() const noexcept { return head_; }
  [[nodiscard]] std::int64_t dims() const noexcept { return n_; }
  [[nodiscard]] std::int64_t batch_capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::int64_t parameter_count() const noexcept { return net_.parameter_count(); }

  /// PyTorch-default initialisation of the trunk from `seed` (Mlp::init).
  void init(VectorView<T> params, std::uint64_t seed);

  /// grad = ∇θ L_in(θ; reward) of the REINFORCE surrogate, fused head (pg_surrogate). When
  /// `row_reward` is not empty it receives each row's mean raw reward (B entries).
  void pg_gradient(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y, const MahalanobisReward<T>& reward,
                   std::int64_t generations, const PgOptions<T>& options, DrawKey key, VectorView<T> grad,
                   VectorView<T> row_reward = {});
  /// grad = ∇θ of the exact-expectation inner objective L_exact = −(1/B) Σ (E[r] + λ H)
  /// (exact_objective: deterministic, no sampling). `row_reward` as in pg_gradient (E[r] per row).
  void exact_gradient(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y, const MahalanobisReward<T>& reward,
                      const PgOptions<T>& options, VectorView<T> grad, VectorView<T> row_reward = {});
  /// grad = ∇θ of −(1/B) Σ log p_θ(y | x).
  void nll_gradient(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y, VectorView<T> grad);
  /// grad = ∇θ of (1/B) Σ ‖μ_θ(x) − y‖².
  void mse_gradient(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y, VectorView<T> grad);

  /// NLL per dimension, RMSE of the mean and mean predicted std on (x, y) (synchronises).
  [[nodiscard]] PolicyMetrics evaluate(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y);

  /// Writes the network's outputs on x (B x net().outputs()) into `out`, for callers that need
  /// the raw head parameters (e.g. to print the learned covariance).
  void forward(ConstVector<T> params, ConstMatrix<T> x, MatrixView<T> out);

 private:
  void check_call(std::string_view fn, ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> y,
                  VectorView<T> grad) const;
  /// Runs the trunk on x into out_ (B rows) and returns its view.
  MatrixView<const T> run_forward(ConstVector<T> params, ConstMatrix<T> x);
  DiagGaussian<T> diag_head(MatrixView<const T> out) const;
  CholeskyGaussian<T> chol_head(MatrixView<const T> out) const;
  MatrixView<T> d_out(std::int64_t rows);
  VectorView<T> cache(std::int64_t rows);  // the activations cache for `rows` rows (empty for a linear model)

  Context& ctx_;
  Mlp net_;
  std::int64_t n_, capacity_;
  GaussianHead head_;
  Buffer<T> out_, cache_, d_out_, d_out_mse_, log_prob_, row_loss_, zero_log_std_, d_shared_;
  // Constant per-row cotangents −1/B (NLL) and −2/B (MSE), refilled when B changes.
  Buffer<T> d_log_prob_, d_log_prob_mse_;
  std::int64_t d_log_prob_rows_ = 0, d_mse_rows_ = 0;
};

/// A categorical classification policy p_θ(k | x) = softmax(Mlp(x))_k over C classes (no hidden
/// layer: logistic regression, the paper's tabular policy). Labels are int32 class indices in
/// [0, C), in the context's memory space. Same conventions as GaussianPolicy: means over rows,
/// no synchronisation except in evaluate().
template <class T>
class CategoricalPolicy {
 public:
  /// `trunk.outputs` is set to `classes` (2 <= C <= kMaxCategoricalClasses); `batch` >= 1 is the
  /// largest number of rows of any later call.
  CategoricalPolicy(Context& ctx, MlpSpec trunk, std::int64_t classes, std::int64_t batch);

  [[nodiscard]] const Mlp& net() const noexcept { return net_; }
  [[nodiscard]] std::int64_t classes() const noexcept { return classes_; }
  [[nodiscard]] std::int64_t batch_capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::int64_t parameter_count() const noexcept { return net_.parameter_count(); }

  void init(VectorView<T> params, std::uint64_t seed);
  /// grad = ∇θ of the REINFORCE surrogate with the one-hot Mahalanobis reward (pg_surrogate).
  void pg_gradient(ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels,
                   const MahalanobisReward<T>& reward, std::int64_t generations, const PgOptions<T>& options,
                   DrawKey key, VectorView<T> grad, VectorView<T> row_reward = {});
  /// grad = ∇θ of L_exact = −(1/B) Σ (Σ_k p_k r(k, label) + λ H) (exact_objective).
  void exact_gradient(ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels,
                      const MahalanobisReward<T>& reward, const PgOptions<T>& options, VectorView<T> grad,
                      VectorView<T> row_reward = {});
  /// grad = ∇θ of the cross-entropy −(1/B) Σ log p_θ(label | x).
  void nll_gradient(ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels,
                    VectorView<T> grad);
  /// Cross-entropy (nll_per_dim) and accuracy on (x, labels) (synchronises); rmse, mean_std NaN.
  [[nodiscard]] PolicyMetrics evaluate(ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels);
  /// The logits on x (B x C).
  void forward(ConstVector<T> params, ConstMatrix<T> x, MatrixView<T> out);

 private:
  void check_call(std::string_view fn, ConstVector<T> params, ConstMatrix<T> x, VectorView<const std::int32_t> labels,
                  VectorView<T> grad, bool need_grad) const;
  VectorView<T> cache(std::int64_t rows);
  MatrixView<const T> run_forward(ConstVector<T> params, ConstMatrix<T> x);

  Context& ctx_;
  Mlp net_;
  std::int64_t classes_, capacity_;
  Buffer<T> out_, cache_, d_out_, row_loss_, d_log_prob_;
  std::int64_t d_log_prob_rows_ = 0;
};

}  // namespace d2r
