#pragma once
/// @file types/heads.hpp
/// Plain types of the three policy heads (no functions, no Context): the draw key, the head views
/// and their gradient views, their limits, and one `head_traits<Head>` table. Shared by the public
/// API (d2r/distributions.hpp), the CUDA kernels (kernels/) and the CPU reference
/// (host/reference/); compiles with any C++20 compiler, without CUDA.

#include <cstdint>
#include <string_view>

#include "d2r/view.hpp"

namespace d2r {

/// Position of a call's draws in the Philox stream.
struct DrawKey {
  std::uint64_t step = 0;       ///< one value per optimisation step; must be < 2^32
  std::int64_t first_row = 0;   ///< global index of row 0 of the views (for sharded batches)
  /// Optional counter (one int64 in the backend's memory) read when the draws execute and added to
  /// `step`: the stream position then advances without changing the call, so a captured CUDA
  /// graph replays with fresh draws (advance_counter inside the graph moves it on). The caller
  /// keeps step + *step_offset < 2^32 (it cannot be checked without reading the counter back).
  const std::int64_t* step_offset = nullptr;
};

// ------------------------------------------------------------------ diagonal Gaussian
/// N(mean_b, diag(exp(log_std)^2)). `mean` is B x n. `log_std` is B x n (state-dependent) or
/// 1 x n (one learned vector shared by all rows).
template <class T>
struct DiagGaussian {
  MatrixView<const T> mean;
  MatrixView<const T> log_std;
};
/// Gradient views for a DiagGaussian, shaped like its head.
template <class T>
struct DiagGaussianGrad {
  MatrixView<T> mean;
  MatrixView<T> log_std;
};

// ------------------------------------------------------------------ Cholesky Gaussian
/// N(mean_b, L_b L_bᵀ) with L_b lower triangular. `tril` holds the n(n+1)/2 raw entries of
/// each row's L, row-major packed: entry (i, j), j <= i, at column i(i+1)/2 + j. The diagonal
/// is L_ii = softplus(raw_ii) + jitter (> 0); off-diagonal entries are used as they are.
/// `tril` has B rows or 1 row (shared). n is limited to kMaxCholeskyDim.
template <class T>
struct CholeskyGaussian {
  MatrixView<const T> mean;
  MatrixView<const T> tril;
  T jitter = T(1e-5);
};
template <class T>
struct CholeskyGaussianGrad {
  MatrixView<T> mean;
  MatrixView<T> tril;  ///< gradient with respect to the raw entries (softplus chain applied)
};
/// Largest output dimension of the Cholesky head.
inline constexpr std::int64_t kMaxCholeskyDim = 64;

// ------------------------------------------------------------------ categorical
/// Categorical over C classes with probabilities softmax(logits_b). `logits` is B x C with
/// 2 <= C <= 2^18. A logit of -inf masks its class (probability exactly 0): such a class is
/// never sampled. With value checks on, NaN and +inf logits and rows with no finite logit are
/// rejected. With ValueChecks::none a row whose logits are all -inf has no distribution: its
/// samples are written as -1 and its log-probabilities and entropy as NaN.
template <class T>
struct Categorical {
  MatrixView<const T> logits;
};
template <class T>
struct CategoricalGrad {
  MatrixView<T> logits;
};
/// Largest number of classes of the categorical head.
inline constexpr std::int64_t kMaxCategoricalClasses = std::int64_t{1} << 18;

// ------------------------------------------------------------------ head traits
/// What the generic code needs to know about a head: its gradient views, the element type of its
/// samples, what its rewards score (continuous targets or class labels), its shapes, and the
/// name its PolicyCurvature reports. The one table of per-head facts (add a head here).
template <class Head>
struct head_traits;

template <class T>
struct head_traits<DiagGaussian<T>> {
  using Scalar = T;
  using Grad = DiagGaussianGrad<T>;
  using Sample = T;                ///< samples are (B·G) x n values
  using Targets = ConstMatrix<T>;  ///< B x n continuous targets
  static constexpr bool categorical = false;
  static constexpr std::string_view curvature_name = "DiagGaussianPolicyCurvature";
  static std::int64_t rows(const DiagGaussian<T>& h) { return h.mean.rows; }
  static std::int64_t dim(const DiagGaussian<T>& h) { return h.mean.cols; }
  static std::int64_t sample_rows(const DiagGaussian<T>& h, std::int64_t G) { return rows(h) * G; }
  static std::int64_t sample_cols(const DiagGaussian<T>& h, std::int64_t) { return dim(h); }
};
template <class T>
struct head_traits<CholeskyGaussian<T>> {
  using Scalar = T;
  using Grad = CholeskyGaussianGrad<T>;
  using Sample = T;
  using Targets = ConstMatrix<T>;
  static constexpr bool categorical = false;
  static constexpr std::string_view curvature_name = "CholeskyPolicyCurvature";
  static std::int64_t rows(const CholeskyGaussian<T>& h) { return h.mean.rows; }
  static std::int64_t dim(const CholeskyGaussian<T>& h) { return h.mean.cols; }
  static std::int64_t sample_rows(const CholeskyGaussian<T>& h, std::int64_t G) { return rows(h) * G; }
  static std::int64_t sample_cols(const CholeskyGaussian<T>& h, std::int64_t) { return dim(h); }
};
template <class T>
struct head_traits<Categorical<T>> {
  using Scalar = T;
  using Grad = CategoricalGrad<T>;
  using Sample = std::int32_t;                     ///< samples are B x G class indices
  using Targets = VectorView<const std::int32_t>;  ///< B class labels in [0, C)
  static constexpr bool categorical = true;
  static constexpr std::string_view curvature_name = "CategoricalPolicyCurvature";
  static std::int64_t rows(const Categorical<T>& h) { return h.logits.rows; }
  static std::int64_t dim(const Categorical<T>& h) { return h.logits.cols; }
  static std::int64_t sample_rows(const Categorical<T>& h, std::int64_t) { return rows(h); }
  static std::int64_t sample_cols(const Categorical<T>&, std::int64_t G) { return G; }
};

}  // namespace d2r
