#pragma once
/// @file optim.hpp
/// Optimisers and gradient conditioning on flat parameter vectors (DESIGN.md §7): Adam/AdamW,
/// SGD with momentum, element-wise clamping and global-norm clipping.
///
/// Every function works in place on views in the context's memory space and runs entirely on
/// the backend: on cuda nothing is copied to the host and nothing synchronises the stream
/// (except the value checks of ValueChecks::full), so an inner loop made of these calls can be
/// captured in a CUDA graph once the context's workspace has reached its high-water mark.
/// In particular the Adam step counter lives in the backend's memory and is incremented by the
/// update itself, so the bias correction of a replayed graph uses the device-side count.
///
/// Semantics follow PyTorch (torch.optim.Adam / AdamW, torch.optim.SGD with dampening 0 and no
/// Nesterov, torch.clamp, torch.nn.utils.clip_grad_norm_) so that results can be compared with
/// a PyTorch peer step for step.
///
/// Errors. Every function checks sizes (params, grad and state vectors must have the same
/// non-zero length), hyperparameter ranges, aliasing (a written vector may not overlap any other
/// argument) and, unless the context's ValueChecks is none, the values of its inputs; it throws
/// d2r::Error naming the argument before it writes anything. The cuda backend takes float views
/// only; the cpu backend takes float or double.
///
/// @code
///   d2r::Buffer<float> m(ctx, P), v(ctx, P);
///   d2r::Buffer<std::int64_t> step(ctx, 1);
///   const d2r::AdamState<float> state{m.vector(), v.vector(), step.vector()};
///   d2r::adam_reset(ctx, state);
///   for (int k = 0; k < K; ++k) {
///     compute_gradient(params, grad);
///     d2r::clamp_values(ctx, 1.0f, grad);                    // the paper's inner clamp c_in
///     d2r::adam_step(ctx, {.learning_rate = 1e-3f}, state, params, grad);
///   }
/// @endcode

#include <cstdint>
#include <type_traits>

#include "d2r/context.hpp"
#include "d2r/types/optim.hpp"
#include "d2r/view.hpp"

namespace d2r {

// ------------------------------------------------------------------ Adam / AdamW
/// Zeroes both moments and the step counter (a fresh optimiser, as the paper re-creates the
/// outer Adam each step when asked to).
template <class T>
void adam_reset(Context& ctx, const AdamState<T>& state);

/// One Adam (AdamW when options.weight_decay > 0) update of `params` with gradient `grad`,
/// PyTorch semantics. With c the step count held in state.step before the call and t = c + 1:
///   m ← β1·m + (1 − β1)·g
///   v ← β2·v + (1 − β2)·g²
///   p ← p·(1 − lr·wd)                                   (only when wd > 0)
///   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
/// and state.step becomes t. The bias corrections are computed in double from the counter read
/// in the backend's memory. On cuda this is one fused element-wise kernel (reads p, g, m, v;
/// writes p, m, v) followed by a one-thread kernel that increments the counter, both on
/// ctx.stream(): every thread of the update reads the same old count, and no host
/// synchronisation is needed.
/// @param state   moments of the length of params, a count >= 0 (checked under ValueChecks::full,
///                which reads it back: one synchronisation on cuda)
/// @param params  updated in place; may not overlap grad or the state
/// @param grad    same length as params; finite (checked under ValueChecks::full)
template <class T>
void adam_step(Context& ctx, const AdamOptions<T>& options, const AdamState<T>& state, VectorView<T> params,
               ConstVector<T> grad);

/// counter[0] += by on the backend (a one-thread kernel on cuda; no synchronisation). It moves
/// the Philox position of DrawKey::step_offset, so a captured CUDA graph that ends with it draws
/// fresh samples on every replay.
/// @param counter  one int64 in the backend's memory
void advance_counter(Context& ctx, VectorView<std::int64_t> counter, std::int64_t by = 1);

// ------------------------------------------------------------------ SGD
/// One SGD update with momentum, PyTorch semantics with dampening 0 and no Nesterov:
///   buf ← momentum·buf + g;  p ← p − lr·buf           (momentum > 0)
///   p ← p − lr·g                                       (momentum == 0; velocity is not used)
/// Start `velocity` at zero: the first step then sets buf = g exactly as PyTorch does.
/// @param learning_rate  lr > 0, finite
/// @param momentum       in [0, 1)
/// @param velocity       the momentum buffer, length of params; may be empty when momentum == 0
///                       (when given with momentum == 0 it is checked but not modified)
template <class T>
void sgd_step(Context& ctx, std::type_identity_t<T> learning_rate, std::type_identity_t<T> momentum,
              VectorView<T> velocity, VectorView<T> params, ConstVector<T> grad);

// ------------------------------------------------------------------ gradient conditioning
/// Clamps every element of `values` to [−limit, limit] in place (the paper clamps inner
/// gradients with limit 1 and the outer hypergradient with limit 10). NaN stays NaN.
/// @param limit   > 0 (may be +inf)
/// @param values  non-empty; finite (checked under ValueChecks::full)
template <class T>
void clamp_values(Context& ctx, std::type_identity_t<T> limit, VectorView<T> values);

/// Global-norm clipping, computed on the backend without host synchronisation: with
/// N = ‖values‖₂, multiplies `values` by max_norm / N when N > max_norm and leaves them as they
/// are otherwise (PyTorch's clip_grad_norm_ without its 1e-6 added to N). The sum of squares is
/// accumulated in double in a fixed order that depends only on the length (per-block partial
/// sums, then one deterministic reduction; no atomics), so repeated calls give identical bits.
/// @param max_norm  > 0, finite
/// @param values    non-empty; finite (checked under ValueChecks::full)
/// @param norm_out  one element receiving N (the norm before clipping), or empty
template <class T>
void clip_global_norm(Context& ctx, std::type_identity_t<T> max_norm, VectorView<T> values, VectorView<T> norm_out);

}  // namespace d2r
