#pragma once
// The one copy of each work model (d2r::checks), used by `d2r bench` and by bench/ (Google
// Benchmark): the least traffic a call must move in bytes (each input read once, each output
// written once) and its FLOPs (GEMMs: 2·m·n·k), from which GB/s, GFLOP/s and % of the measured copy
// bandwidth follow. `bytes_per` is sizeof(T) of the call (4 for float).
#include <cstdint>

#include "d2r/network.hpp"
#include "d2r/objectives.hpp"

namespace d2r::checks {

struct Work {
  double bytes = 0, flops = 0;
};

/// FLOPs of one forward pass of an MLP on B rows: 2·B·Σ in·out (the GEMMs).
inline double mlp_forward_flops(const Mlp& net, std::int64_t B) {
  double f = 0;
  for (std::int64_t l = 0; l < net.layer_count(); ++l)
    f += 2.0 * static_cast<double>(B) * static_cast<double>(net.layer(l).inputs * net.layer(l).outputs);
  return f;
}

/// The primitives of a policy head (d2r/distributions.hpp and the tangents of d2r/objectives.hpp).
enum class HeadOp { sample, log_prob, entropy, backward, log_prob_jvp, backward_tangent };

/// Which cotangents a backward or backward_tangent call reads: d_log_prob (B·G) and d_entropy (B).
/// backward always reads d_log_prob.
struct Cotangents {
  bool log_prob = true, entropy = true;
};

namespace detail {
inline double d(std::int64_t v) { return static_cast<double>(v); }
}  // namespace detail

/// A diagonal Gaussian head (mean B×n, log σ S×n: S = B per row, 1 shared). sample: mean and log σ
/// read, B·G·n draws written; log_prob: + the draws read, B·G log-probabilities written; entropy:
/// log σ read, B entropies written; backward: mean, log σ, draws and d_log_prob (B·G) read, plus
/// d_entropy (B) when given, both gradients written; log_prob_jvp: the head, its tangent (the same
/// sizes) and the draws read, B·G written; backward_tangent: the head, the draws, the cotangents
/// given and the tangent read, the gradient's tangent (the head's sizes) written. No FLOPs counted
/// (elementwise).
inline Work diag_work(HeadOp op, std::int64_t B, std::int64_t n, std::int64_t G, std::int64_t S, Cotangents cot = {},
                      double bytes_per = 4) {
  using detail::d;
  const double params = d(B * n) + d(S * n), draws = d(B * G * n);
  const double cots = (cot.log_prob ? d(B * G) : 0.0) + (cot.entropy ? d(B) : 0.0);
  switch (op) {
    case HeadOp::sample: return {bytes_per * (params + draws), 0};
    case HeadOp::log_prob: return {bytes_per * (params + draws + d(B * G)), 0};
    case HeadOp::entropy: return {bytes_per * (d(S * n) + d(B)), 0};
    case HeadOp::backward: return {bytes_per * (params + draws + d(B * G) + (cot.entropy ? d(B) : 0.0) + params), 0};
    case HeadOp::log_prob_jvp: return {bytes_per * (2.0 * params + draws + d(B * G)), 0};
    case HeadOp::backward_tangent: return {bytes_per * (3.0 * params + draws + cots), 0};
  }
  return {};
}

/// A Cholesky head (mean B×n, packed L S×P, P = n(n+1)/2). sample (L ε: 2P FLOPs a draw), log_prob
/// (forward substitution: 2P a draw), entropy (the diagonal of L read: S·n, B written),
/// backward (forward and back substitution and a rank-1 update: 6P a draw; both gradients written)
/// and log_prob_jvp (z = L⁻¹(y − μ), v = L⁻ᵀz and the tangent's L̇z: 6P a draw; the head and its
/// tangent read, B·G written). backward_tangent: the head and its tangent read, the gradient's
/// tangent (the head's sizes) written, and with d_log_prob the draws and d_log_prob read and, per
/// draw, z, v, L̇z, ż = −L⁻¹(μ̇ + L̇z), L̇ᵀv, v̇ and the rank-2 update of the tril's tangent: 16P a
/// draw; without d_log_prob only the d_entropy term (O(n) a row, 0 counted).
inline Work cholesky_work(HeadOp op, std::int64_t B, std::int64_t n, std::int64_t G, std::int64_t S, Cotangents cot = {},
                          double bytes_per = 4) {
  using detail::d;
  const double P = d(n * (n + 1) / 2), params = d(B * n) + d(S) * P, draws = d(B * G);
  switch (op) {
    case HeadOp::sample: return {bytes_per * (params + draws * d(n)), draws * 2.0 * P};
    case HeadOp::log_prob: return {bytes_per * (params + draws * d(n + 1)), draws * 2.0 * P};
    case HeadOp::entropy: return {bytes_per * (d(S * n) + d(B)), 0};
    case HeadOp::backward: return {bytes_per * (2.0 * params + draws * d(n + 1) + (cot.entropy ? d(B) : 0.0)), draws * 6.0 * P};
    case HeadOp::log_prob_jvp: return {bytes_per * (2.0 * params + draws * d(n + 1)), draws * 6.0 * P};
    case HeadOp::backward_tangent:
      return {bytes_per * (3.0 * params + (cot.log_prob ? draws * d(n + 1) : 0.0) + (cot.entropy ? d(B) : 0.0)),
              cot.log_prob ? draws * 16.0 * P : 0.0};
  }
  return {};
}

/// A categorical head (logits B×C; class indices int32). sample: logits read, B·G indices written;
/// log_prob: + indices read, B·G log-probabilities written; entropy: logits read, B written;
/// backward: logits, indices and d_log_prob read (+ d_entropy), the B×C gradient written;
/// log_prob_jvp: logits, their tangent and the indices read, B·G written; backward_tangent: logits,
/// indices, the cotangents given and the tangent read, the B×C gradient's tangent written.
inline Work categorical_work(HeadOp op, std::int64_t B, std::int64_t C, std::int64_t G, Cotangents cot = {},
                             double bytes_per = 4) {
  using detail::d;
  const double logits = bytes_per * d(B * C), idx = 4.0 * d(B * G);
  const double cots = bytes_per * ((cot.log_prob ? d(B * G) : 0.0) + (cot.entropy ? d(B) : 0.0));
  switch (op) {
    case HeadOp::sample: return {logits + idx, 0};
    case HeadOp::log_prob: return {logits + idx + bytes_per * d(B * G), 0};
    case HeadOp::entropy: return {logits + bytes_per * d(B), 0};
    case HeadOp::backward: return {2.0 * logits + idx + bytes_per * (d(B * G) + (cot.entropy ? d(B) : 0.0)), 0};
    case HeadOp::log_prob_jvp: return {2.0 * logits + idx + bytes_per * d(B * G), 0};
    case HeadOp::backward_tangent: return {3.0 * logits + idx + cots, 0};
  }
  return {};
}

/// pg_surrogate of a diagonal Gaussian (log σ S×n): μ, log σ and y read once; both gradients and
/// `row_outputs` per-row arrays (loss, and reward when asked) written once (the B·G·n draws are
/// never stored by the fused kernel). The reward's parameters (at most n(n+1)/2) are not counted.
inline Work pg_surrogate_diag_work(std::int64_t B, std::int64_t n, std::int64_t S, int row_outputs = 1, double bytes_per = 4) {
  using detail::d;
  return {bytes_per * (3.0 * d(B * n) + 2.0 * d(S * n) + row_outputs * d(B)), 0};
}
/// pg_surrogate of a Cholesky head (packed L S×P): head outputs and targets read once, gradients and
/// the row outputs written once; 6P FLOPs a draw.
inline Work pg_surrogate_cholesky_work(std::int64_t B, std::int64_t n, std::int64_t G, std::int64_t S, int row_outputs = 1,
                                       double bytes_per = 4) {
  using detail::d;
  const double P = d(n * (n + 1) / 2);
  return {bytes_per * (2.0 * (d(B * n) + d(S) * P) + d(B * n) + row_outputs * d(B)), d(B * G) * 6.0 * P};
}
/// pg_surrogate of a categorical head: logits read, gradient written, labels (int32) read, row
/// outputs written.
inline Work pg_surrogate_categorical_work(std::int64_t B, std::int64_t C, int row_outputs = 1, double bytes_per = 4) {
  using detail::d;
  return {bytes_per * (2.0 * d(B * C) + row_outputs * d(B)) + 4.0 * d(B), 0};
}

/// reward and reward_backward (d2r/rewards.hpp), P = reward_param_count(form, n) reward parameters. Continuous
/// (B·G draws of n values, B targets): draws, targets and parameters read, B·G rewards written;
/// backward: + the B·G cotangents read, P gradients written instead. The full form's Rᵀδ is 2P FLOPs
/// a draw (4P with its gradient's rank-1 update); scalar and diagonal are elementwise (0 counted).
/// One-hot (B·G class indices and B labels, int32): δ = e_k − e_y has two non-zeros, so every form is
/// O(n) a draw (0 FLOPs counted).
inline Work reward_work(bool backward, bool one_hot, RewardForm form, std::int64_t B, std::int64_t n, std::int64_t G,
                        double bytes_per = 4) {
  using detail::d;
  const std::int64_t params = reward_param_count(form, n);
  const bool full_form = form == RewardForm::full;
  const double inputs = one_hot ? 4.0 * (d(B * G) + d(B)) : bytes_per * (d(B * G * n) + d(B * n));
  const double bytes = inputs + bytes_per * (d(params) + (backward ? d(B * G) + d(params) : d(B * G)));
  const double P = d(n * (n + 1) / 2);
  const double flops = one_hot || !full_form ? 0.0 : d(B * G) * (backward ? 4.0 : 2.0) * P;
  return {bytes, flops};
}

/// transform_rewards: B·G rewards read, B·G advantages written; transform_rewards_backward: the
/// rewards and the advantages' cotangents read, B·G written. Every transform is elementwise or a
/// per-group sum (0 FLOPs counted).
inline Work transform_rewards_work(bool backward, std::int64_t B, std::int64_t G, double bytes_per = 4) {
  return {bytes_per * (backward ? 3.0 : 2.0) * detail::d(B * G), 0};
}

/// clip_global_norm below its limit: n values read (their norm), the norm written when asked; no
/// value written (the kernel skips a scale of 1). A clipping call also writes the n values, but
/// repeated under a timer it stops clipping after the first call (the norm is then at the limit),
/// so only the below-the-limit cases are timed. Elementwise (0 FLOPs counted).
inline Work clip_global_norm_work(std::int64_t n, bool norm_output, double bytes_per = 4) {
  return {bytes_per * (detail::d(n) + (norm_output ? 1.0 : 0.0)), 0};
}

/// exact_objective (the exact expectation of the PG objective and its gradient, d2r/objectives.hpp),
/// P reward parameters. Diagonal Gaussian (mean B×n, log σ S×n, targets B×n): the head, the targets
/// and the parameters read; row loss and row reward (B each) and both gradients written. The full
/// form's Uδ = R(Rᵀδ) is 4P FLOPs a row, plus the diagonal of U once (2P); scalar and diagonal forms
/// are elementwise (0 counted).
inline Work exact_objective_diag_work(RewardForm form, std::int64_t B, std::int64_t n, std::int64_t S, double bytes_per = 4) {
  using detail::d;
  const std::int64_t params = reward_param_count(form, n);
  const bool full_form = form == RewardForm::full;
  const double head = d(B * n) + d(S * n);
  const double P = d(n * (n + 1) / 2);
  return {bytes_per * (head + d(B * n) + d(params) + 2.0 * d(B) + head), full_form ? 4.0 * P * d(B) + 2.0 * P : 0.0};
}
/// pg_pathwise (the reparameterised objective, d2r/objectives.hpp): the same traffic as
/// exact_objective (the head, the targets and the parameters read; row loss, row reward and both
/// gradients written; the G draws regenerated, never stored). FLOPs per draw, as the kernels compute
/// them (the products with L and R; the scalar and diagonal forms' O(n) not counted): a diagonal
/// Gaussian with the full form Rᵀδ and R v (4P); a Cholesky head ŷ = μ + Lε (2P) and the
/// accumulation of a εᵀ on the lower triangle (2P), plus Rᵀδ and R v (4P) for the full form.
inline Work pg_pathwise_diag_work(RewardForm form, std::int64_t B, std::int64_t n, std::int64_t G, std::int64_t S,
                                  double bytes_per = 4) {
  using detail::d;
  const double head = d(B * n) + d(S * n), P = d(n * (n + 1) / 2);
  return {bytes_per * (2.0 * head + d(B * n) + d(reward_param_count(form, n)) + 2.0 * d(B)),
          form == RewardForm::full ? 4.0 * P * d(B * G) : 0.0};
}
inline Work pg_pathwise_cholesky_work(RewardForm form, std::int64_t B, std::int64_t n, std::int64_t G, std::int64_t S,
                                      double bytes_per = 4) {
  using detail::d;
  const double P = d(n * (n + 1) / 2), head = d(B * n) + d(S) * P;
  return {bytes_per * (2.0 * head + d(B * n) + d(reward_param_count(form, n)) + 2.0 * d(B)),
          d(B * G) * (form == RewardForm::full ? 8.0 : 4.0) * P};
}
/// Cholesky head (mean B×n, packed L S×P, P = n(n+1)/2, targets B×n): the head, the targets and the
/// parameters read; row loss and row reward (B each) and both gradients (the head's sizes) written.
/// Per row, as the kernel computes it (U dense, built once per block: not counted): Uδ and δᵀUδ
/// (2n² + 2n), (UL)_ij on the lower triangle (T = 2 Σ_j (n − j)² = n(n+1)(2n+1)/3) and the trace
/// Σ L_ij (UL)_ij (2P), any form.
inline Work exact_objective_cholesky_work(RewardForm form, std::int64_t B, std::int64_t n, std::int64_t S,
                                          double bytes_per = 4) {
  using detail::d;
  const double P = d(n * (n + 1) / 2), head = d(B * n) + d(S) * P;
  const double tri = d(n * (n + 1) * (2 * n + 1)) / 3.0;
  return {bytes_per * (head + d(B * n) + d(reward_param_count(form, n)) + 2.0 * d(B) + head),
          d(B) * (2.0 * d(n * n) + 2.0 * d(n) + tri + 2.0 * P)};
}
/// Categorical (logits B×C, labels int32): logits, labels and parameters read; row loss, row reward
/// and the B×C gradient written. The full form's U_jy for every class j of a row is 2P FLOPs a row
/// (row y of U = R Rᵀ), plus the diagonal of U once (2P); scalar and diagonal forms are O(C) a row
/// (0 counted).
inline Work exact_objective_categorical_work(RewardForm form, std::int64_t B, std::int64_t C, double bytes_per = 4) {
  using detail::d;
  const std::int64_t params = reward_param_count(form, C);
  const bool full_form = form == RewardForm::full;
  const double P = d(C * (C + 1) / 2);
  return {bytes_per * (2.0 * d(B * C) + d(params) + 2.0 * d(B)) + 4.0 * d(B), full_form ? 2.0 * P * d(B) + 2.0 * P : 0.0};
}

/// The exact curvature's head-level primitives (d2r/second_order.hpp), P reward parameters. A
/// diagonal Gaussian (mean B×n, log σ S×n; the tangent the head's sizes): exact_backward_tangent
/// reads the head, the parameters and the tangent and writes the gradient's tangent (the head's
/// sizes); the full form's U μ̇ = R(Rᵀμ̇) is 4P FLOPs a row, plus U's diagonal once (2P).
/// exact_mixed_product reads the head, the targets (B×n), the parameters and the tangent and
/// writes P; the full form's gradient of δᵀUμ̇ in R (Rᵀδ, Rᵀμ̇ and a rank-2 update of R) and of
/// the diagonal term is 10P FLOPs a row. Scalar and diagonal forms are elementwise (0 counted).
inline Work exact_backward_tangent_diag_work(RewardForm form, std::int64_t B, std::int64_t n, std::int64_t S,
                                             double bytes_per = 4) {
  using detail::d;
  const double head = d(B * n) + d(S * n), P = d(n * (n + 1) / 2);
  const bool full_form = form == RewardForm::full;
  return {bytes_per * (3.0 * head + d(reward_param_count(form, n))), full_form ? 4.0 * P * d(B) + 2.0 * P : 0.0};
}
inline Work exact_mixed_product_diag_work(RewardForm form, std::int64_t B, std::int64_t n, std::int64_t S,
                                          double bytes_per = 4) {
  using detail::d;
  const double head = d(B * n) + d(S * n), P = d(n * (n + 1) / 2);
  const bool full_form = form == RewardForm::full;
  return {bytes_per * (2.0 * head + d(B * n) + 2.0 * d(reward_param_count(form, n))), full_form ? 10.0 * P * d(B) : 0.0};
}
/// A categorical head (logits B×C, labels int32, the tangent B×C): exact_backward_tangent writes
/// B×C, exact_mixed_product P. The full form needs row y of U = R Rᵀ in every row (2P FLOPs; its
/// gradient in R 4P) and U's diagonal once (2P); scalar and diagonal forms are O(C) a row.
inline Work exact_backward_tangent_categorical_work(RewardForm form, std::int64_t B, std::int64_t C, double bytes_per = 4) {
  using detail::d;
  const double P = d(C * (C + 1) / 2);
  const bool full_form = form == RewardForm::full;
  return {bytes_per * (3.0 * d(B * C) + d(reward_param_count(form, C))) + 4.0 * d(B),
          full_form ? 2.0 * P * d(B) + 2.0 * P : 0.0};
}
inline Work exact_mixed_product_categorical_work(RewardForm form, std::int64_t B, std::int64_t C, double bytes_per = 4) {
  using detail::d;
  const double P = d(C * (C + 1) / 2);
  const bool full_form = form == RewardForm::full;
  return {bytes_per * (2.0 * d(B * C) + 2.0 * d(reward_param_count(form, C))) + 4.0 * d(B),
          full_form ? 4.0 * P * d(B) + 2.0 * P : 0.0};
}

/// A Cholesky head (mean B×n, packed L S×P, P = n(n+1)/2; the tangent the head's sizes; the
/// kernels build U dense, n×n). exact_backward_tangent: the head, the parameters and the tangent
/// read, the gradient's tangent written; per row U μ̇ (2n²), U L̇ on the lower triangle
/// (T = 2 Σ_j (n − j)² = n(n+1)(2n+1)/3 ≈ 2n³/3: column j has n − j entries, each a sum of n − j
/// products) and (UL)_ii (n(n+1)), any form. exact_mixed_product: the head, the targets, the
/// parameters and the tangent read, the reward's parameters written; per row the diagonal of L L̇ᵀ
/// (2P) for the scalar and diagonal forms, and for the full form S = δμ̇ᵀ + L L̇ᵀ + its transpose
/// (2n² + T) and its product with R on the lower triangle (T).
inline Work exact_backward_tangent_cholesky_work(RewardForm form, std::int64_t B, std::int64_t n, std::int64_t S,
                                                 double bytes_per = 4) {
  using detail::d;
  const double P = d(n * (n + 1) / 2), head = d(B * n) + d(S) * P;
  const double tri = d(n * (n + 1) * (2 * n + 1)) / 3.0;  // T: U L̇ on the lower triangle
  return {bytes_per * (3.0 * head + d(reward_param_count(form, n))), d(B) * (2.0 * d(n * n) + tri + d(n * (n + 1)))};
}
inline Work exact_mixed_product_cholesky_work(RewardForm form, std::int64_t B, std::int64_t n, std::int64_t S,
                                              double bytes_per = 4) {
  using detail::d;
  const double P = d(n * (n + 1) / 2), head = d(B * n) + d(S) * P;
  const double tri = d(n * (n + 1) * (2 * n + 1)) / 3.0;  // T: L L̇ᵀ, and S R on the lower triangle
  const double flops = form == RewardForm::full ? 2.0 * d(n * n) + 2.0 * tri : 2.0 * P;
  return {bytes_per * (2.0 * head + d(B * n) + 2.0 * d(reward_param_count(form, n))), d(B) * flops};
}

/// mixed_product (the REINFORCE surrogate's, d2r/second_order.hpp): the least traffic, the head,
/// the targets, the parameters and the tangent read and P written, as a fused kernel that
/// regenerates the B·G draws would move (today's composition, mixed_product_by_composition,
/// stores the draws and reads them back about four times, so its % of copy bandwidth is a lower
/// bound). Per draw: the full form's reward and its gradient in R (Rᵀδ and a rank-1 update: 4P
/// FLOPs) and, for a Cholesky head (packed L S×P_L), the draw L ε, its log-probability and the
/// log-probability's tangent (2P_L + 2P_L + 6P_L). A categorical head's one-hot reward is O(C) a
/// draw (0 counted).
inline Work mixed_product_gaussian_work(bool cholesky, RewardForm form, std::int64_t B, std::int64_t n, std::int64_t G,
                                        std::int64_t S, double bytes_per = 4) {
  using detail::d;
  const double P = d(n * (n + 1) / 2), head = d(B * n) + d(S) * (cholesky ? P : d(n));
  const bool full_form = form == RewardForm::full;
  return {bytes_per * (2.0 * head + d(B * n) + 2.0 * d(reward_param_count(form, n))),
          d(B * G) * ((full_form ? 4.0 * P : 0.0) + (cholesky ? 10.0 * P : 0.0))};
}
inline Work mixed_product_categorical_work(RewardForm form, std::int64_t B, std::int64_t C, double bytes_per = 4) {
  using detail::d;
  return {bytes_per * (2.0 * d(B * C) + 2.0 * d(reward_param_count(form, C))) + 4.0 * d(B), 0};
}

/// The optimisers (d2r/optim.hpp), n parameters, elementwise (no FLOPs counted). adam_step:
/// parameters, both moments and the gradient read, parameters and both moments written, and the
/// int64 step counter read and written (16 bytes). sgd_step: parameters and the gradient read and
/// the parameters written, plus the velocity read and written with momentum. clamp_values: read
/// and written once.
inline Work adam_step_work(std::int64_t n, double bytes_per = 4) { return {bytes_per * 7.0 * static_cast<double>(n) + 16.0, 0}; }
inline Work sgd_step_work(std::int64_t n, bool momentum, double bytes_per = 4) {
  return {bytes_per * (momentum ? 5.0 : 3.0) * static_cast<double>(n), 0};
}
inline Work clamp_values_work(std::int64_t n, double bytes_per = 4) { return {bytes_per * 2.0 * static_cast<double>(n), 0}; }

/// The MLP's passes. GEMM FLOPs only: 2·B·in·out per product; S over all layers, S1 over the
/// layers after the first (whose input gradient is needed). Bytes: every input read once, every
/// output written once (x, parameters p, cache c, outputs; tangents v of size p).
///   forward:          x, p read; cache, out written; S products.
///   backward:         x, p, cache, d_out read; d_params written (+ d_x when asked); weight grads S,
///                     input grads S1 (S with d_x).
///   forward_tangent:  x, p, v, cache read; tangent cache, out tangent written; V products S, W on Ra S1.
///   backward_tangent: x, p, v, cache, tangent cache, d_out, d_out tangent read; d_params tangent
///                     written; Rδᵀa S, δᵀRa, δW, δV, RδW 4·S1.
///   forward_backward: forward then backward without d_x.
///   all_passes:       forward, backward with d_x, forward_tangent and backward_tangent in turn (the
///                     registry's mlp.all_passes), each counted as above.
enum class MlpPass { forward, backward, backward_with_input, forward_tangent, backward_tangent, forward_backward, all_passes };
inline Work mlp_work(const Mlp& net, std::int64_t B, MlpPass pass, double bytes_per = 4) {
  double s = 0, s1 = 0;
  for (std::int64_t l = 0; l < net.layer_count(); ++l) {
    const double io = static_cast<double>(net.layer(l).inputs) * static_cast<double>(net.layer(l).outputs);
    s += io;
    if (l > 0) s1 += io;
  }
  const double b2 = 2.0 * static_cast<double>(B);
  const double bx = static_cast<double>(B * net.inputs()), bo = static_cast<double>(B * net.outputs());
  const double p = static_cast<double>(net.parameter_count()), c = static_cast<double>(net.cache_elements(B));
  switch (pass) {
    case MlpPass::forward: return {bytes_per * (bx + p + c + bo), b2 * s};
    case MlpPass::backward: return {bytes_per * (bx + 2 * p + c + bo), b2 * (s + s1)};
    case MlpPass::backward_with_input: return {bytes_per * (2 * bx + 2 * p + c + bo), b2 * 2 * s};
    case MlpPass::forward_tangent: return {bytes_per * (bx + 2 * p + 2 * c + bo), b2 * (s + s1)};
    case MlpPass::backward_tangent: return {bytes_per * (bx + 3 * p + 2 * c + 2 * bo), b2 * (s + 4 * s1)};
    case MlpPass::forward_backward: {
      const Work f = mlp_work(net, B, MlpPass::forward, bytes_per), b = mlp_work(net, B, MlpPass::backward, bytes_per);
      return {f.bytes + b.bytes, f.flops + b.flops};
    }
    case MlpPass::all_passes: {
      Work w;
      for (const MlpPass q : {MlpPass::forward, MlpPass::backward_with_input, MlpPass::forward_tangent, MlpPass::backward_tangent}) {
        const Work one = mlp_work(net, B, q, bytes_per);
        w.bytes += one.bytes;
        w.flops += one.flops;
      }
      return w;
    }
  }
  return {};
}

/// The policy-curvature inner gradient (prepare or prepare_exact: 3F, forward and backward of the
/// trunk) and one Hessian-vector product (apply: 5F, forward tangent F, backward 2F, backward
/// tangent 2F), any head: the trunk's GEMMs only (the head's per-row work is not counted); x and
/// the targets read once (`dims` values a row: the action dimensions, 1 for categorical labels).
inline Work curvature_gradient_work(const Mlp& net, std::int64_t B, std::int64_t dims, double bytes_per = 4) {
  return {bytes_per * static_cast<double>(B * (net.inputs() + dims)), 3.0 * mlp_forward_flops(net, B)};
}
inline Work curvature_hvp_work(const Mlp& net, std::int64_t B, std::int64_t dims, double bytes_per = 4) {
  return {bytes_per * static_cast<double>(B * (net.inputs() + dims)), 5.0 * mlp_forward_flops(net, B)};
}
/// PolicyCurvature::mixed_product: the trunk's forward tangent along w (its GEMMs, MlpPass::forward_tangent:
/// 2·B·(S + S1)) and then the head-level mixed product (O(B·P) for a full U; not counted, as the
/// head's work in the gradient and the HVP); x and the targets read once.
inline Work curvature_mixed_product_work(const Mlp& net, std::int64_t B, std::int64_t dims, double bytes_per = 4) {
  return {bytes_per * static_cast<double>(B * (net.inputs() + dims)), mlp_work(net, B, MlpPass::forward_tangent).flops};
}

/// One BilevelTrainer outer step with exact curvature and CG on the normal equations: K inner steps
/// (3F each), 8F of outer gradients, and 2 + 2·cg_iterations HVPs (5F each); x and y read once per
/// pass (K + 4 + HVPs passes). `net` is the policy trunk (outputs 2·dims).
inline Work outer_step_work(const Mlp& net, std::int64_t B, std::int64_t dims, std::int64_t inner_steps,
                            std::int64_t cg_iterations, double bytes_per = 4) {
  const double hvps = 2.0 + 2.0 * static_cast<double>(cg_iterations), K = static_cast<double>(inner_steps);
  return {(K + 4.0 + hvps) * bytes_per * static_cast<double>(B * (net.inputs() + dims)),
          (3.0 * K + 8.0 + 5.0 * hvps) * mlp_forward_flops(net, B)};
}

}  // namespace d2r::checks
