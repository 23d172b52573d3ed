#pragma once
/// @file distributions.hpp
/// Batched policy-head primitives: sampling, log-probability, entropy and their gradients for
/// the three heads of d2r (diagonal Gaussian, Cholesky Gaussian, categorical).
///
/// Shapes. A batch has B rows (one per input x_b). A head holds the network outputs of each
/// row. G generations are drawn per row; sample (b, g) is row `b * G + g` of a
/// `(B*G) x n` samples matrix (Gaussians) or element (b, g) of a `B x G` index matrix
/// (categorical). Per-sample results (log-probabilities, their cotangents) are `B x G`
/// matrices; per-row results (entropies) are length-B vectors.
///
/// Randomness. Draw (b, g, d) is keyed by (ctx.seed(), key.step, key.first_row + b, g, d) in
/// Philox4x32-10, so the cpu and cuda backends draw the same numbers for any launch shape, a
/// shard of rows [r0, r1) of a larger batch draws exactly what the whole batch would draw there,
/// and a resumed run continues the identical stream.
///
/// Gradients. `backward` is a vector-Jacobian product: given cotangents `d_log_prob` (B x G)
/// and `d_entropy` (B; may be empty for zero) it writes
///   grad = Σ_{b,g} d_log_prob[b,g] · ∂ log p(sample_bg | head_b) / ∂head
///        + Σ_b   d_entropy[b]     · ∂ H(head_b) / ∂head
/// into the gradient views (overwriting them). When a head parameter is shared by all rows
/// (a 1-row log_std or tril), its gradient is the deterministic sum over rows.
///
/// Errors. Every function checks shapes, strides, generations and (unless the context's
/// ValueChecks is none) the values of its inputs, and throws d2r::Error naming the argument
/// before it writes any output. The cuda backend takes float views only; the cpu backend takes
/// float or double.
///
/// @code
///   d2r::Context ctx({.seed = 7});
///   d2r::DiagGaussian<float> head{mean_view, log_std_view};       // B x n each
///   d2r::sample(ctx, head, G, {.step = it}, samples_view);         // (B*G) x n
///   d2r::log_prob(ctx, head, samples_view, logp_view);             // B x G
///   d2r::backward(ctx, head, samples_view, dlogp_view, {}, {grad_mean, grad_log_std});
/// @endcode

#include <cstdint>

#include "d2r/context.hpp"
#include "d2r/types/heads.hpp"
#include "d2r/view.hpp"

namespace d2r {

// ------------------------------------------------------------------ primitives
/// Draws `generations` samples per row into `samples` ((B*G) x n).
template <class T>
void sample(Context& ctx, const DiagGaussian<T>& head, std::int64_t generations, DrawKey key, MatrixView<T> samples);
template <class T>
void sample(Context& ctx, const CholeskyGaussian<T>& head, std::int64_t generations, DrawKey key,
            MatrixView<T> samples);
/// Draws `generations` class indices per row into `samples` (B x G), by inverse CDF on one
/// Philox uniform per draw: the smallest k with Σ_{j<=k} p_j > u. Reads the logits once
/// from device memory (plus at most min(G, tiles) tiles of 2048 logits re-read for the search).
template <class T>
void sample(Context& ctx, const Categorical<T>& head, std::int64_t generations, DrawKey key,
            MatrixView<std::int32_t> samples);

/// log p(sample_bg | head_b) into `out` (B x G).
template <class T>
void log_prob(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> samples, MatrixView<T> out);
template <class T>
void log_prob(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> samples, MatrixView<T> out);
template <class T>
void log_prob(Context& ctx, const Categorical<T>& head, MatrixView<const std::int32_t> samples, MatrixView<T> out);

/// Entropy H(head_b) into `out` (length B).
template <class T>
void entropy(Context& ctx, const DiagGaussian<T>& head, VectorView<T> out);
template <class T>
void entropy(Context& ctx, const CholeskyGaussian<T>& head, VectorView<T> out);
template <class T>
void entropy(Context& ctx, const Categorical<T>& head, VectorView<T> out);

/// Vector-Jacobian product of log-probabilities and entropies (see the file comment).
/// `d_log_prob` is B x G (may be empty when only the entropy term is wanted, then `samples`
/// may be empty too); `d_entropy` has length B or is empty.
template <class T>
void backward(Context& ctx, const DiagGaussian<T>& head, ConstMatrix<T> samples, ConstMatrix<T> d_log_prob,
              ConstVector<T> d_entropy, const DiagGaussianGrad<T>& grad);
template <class T>
void backward(Context& ctx, const CholeskyGaussian<T>& head, ConstMatrix<T> samples,
              ConstMatrix<T> d_log_prob, ConstVector<T> d_entropy, const CholeskyGaussianGrad<T>& grad);
template <class T>
void backward(Context& ctx, const Categorical<T>& head, MatrixView<const std::int32_t> samples,
              ConstMatrix<T> d_log_prob, ConstVector<T> d_entropy, const CategoricalGrad<T>& grad);

}  // namespace d2r
