#pragma once
// The one copy of each work model (d2r::checks), used by `d2r bench` and by bench/ (Google
// Benchmark): the least traffic a call must move in bytes (each input read once, each output
// written once) and its FLOPs (GEMMs: 2·m·n·k), from which GB/s, GFLOP/s and % of the measured copy
// bandwidth follow. `bytes_per` is sizeof(T) of the call (4 for float).
#include <cstdint>

#include "d2r/network.hpp"

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

/// pg_surrogate of a diagonal Gaussian (per-row log σ): μ, log σ and y read once; both gradients and
/// the per-row loss written once (the B·G·n draws are never stored by the fused kernel).
inline Work pg_surrogate_diag_work(std::int64_t B, std::int64_t n, double bytes_per = 4) {
  return {bytes_per * (5.0 * static_cast<double>(B * n) + static_cast<double>(B)), 0};
}

/// A diagonal Gaussian head's (per-row log σ) sample (μ, log σ read, B·G·n draws written),
/// log_prob (+ draws read, B·G log-probabilities written) and backward (+ d_log_prob read, both
/// gradients written).
inline Work diag_sample_work(std::int64_t B, std::int64_t n, std::int64_t G) {
  const double params = 2.0 * static_cast<double>(B * n), draws = static_cast<double>(B * G * n);
  return {4 * (params + draws), 0};
}
inline Work diag_log_prob_work(std::int64_t B, std::int64_t n, std::int64_t G) {
  const double params = 2.0 * static_cast<double>(B * n), draws = static_cast<double>(B * G * n);
  return {4 * (params + draws + static_cast<double>(B * G)), 0};
}
inline Work diag_backward_work(std::int64_t B, std::int64_t n, std::int64_t G) {
  const double params = 2.0 * static_cast<double>(B * n), draws = static_cast<double>(B * G * n);
  return {4 * (params + draws + static_cast<double>(B * G) + params), 0};
}

/// A Cholesky head's (per-row L, P = n(n+1)/2) sample (L ε: 2P FLOPs a draw), log_prob (forward
/// substitution) and backward (forward and back substitution and a rank-1 update: 6P a draw).
inline Work cholesky_sample_work(std::int64_t B, std::int64_t n, std::int64_t G) {
  const double P = static_cast<double>(n * (n + 1) / 2), draws = static_cast<double>(B * G);
  return {4.0 * (static_cast<double>(B) * (static_cast<double>(n) + P) + draws * static_cast<double>(n)), draws * 2.0 * P};
}
inline Work cholesky_log_prob_work(std::int64_t B, std::int64_t n, std::int64_t G) {
  const double P = static_cast<double>(n * (n + 1) / 2), draws = static_cast<double>(B * G);
  return {4.0 * (static_cast<double>(B) * (static_cast<double>(n) + P) + draws * static_cast<double>(n + 1)), draws * 2.0 * P};
}
inline Work cholesky_backward_work(std::int64_t B, std::int64_t n, std::int64_t G) {
  const double P = static_cast<double>(n * (n + 1) / 2), draws = static_cast<double>(B * G);
  return {4.0 * (2.0 * static_cast<double>(B) * (static_cast<double>(n) + P) + draws * static_cast<double>(n + 1)), draws * 6.0 * P};
}

/// pg_surrogate of a categorical head (scalar reward): logits in, gradient out, labels, row losses.
inline Work pg_surrogate_categorical_work(std::int64_t B, std::int64_t C) {
  return {4.0 * (2.0 * static_cast<double>(B * C) + 2.0 * static_cast<double>(B)), 0};
}
/// pg_surrogate of a Cholesky head (scalar reward): head outputs and targets read once, gradient
/// written once; 6P FLOPs a draw.
inline Work pg_surrogate_cholesky_work(std::int64_t B, std::int64_t n, std::int64_t G) {
  const double P = static_cast<double>(n * (n + 1) / 2);
  return {4.0 * (2.0 * static_cast<double>(B) * (static_cast<double>(n) + P) + static_cast<double>(B * n) + static_cast<double>(B)),
          static_cast<double>(B * G) * 6.0 * P};
}

/// A categorical head's sample (logits read, indices written), log_prob (logits and indices read,
/// log-probabilities written) and backward (logits, indices and cotangents read, gradient written).
inline Work categorical_sample_work(std::int64_t B, std::int64_t C, std::int64_t G) {
  return {4.0 * static_cast<double>(B * C + B * G), 0};
}
inline Work categorical_log_prob_work(std::int64_t B, std::int64_t C, std::int64_t G) {
  return {4.0 * static_cast<double>(B * C + 2 * B * G), 0};
}
inline Work categorical_backward_work(std::int64_t B, std::int64_t C, std::int64_t G) {
  return {4.0 * static_cast<double>(2 * B * C + 2 * B * G), 0};
}

/// The MLP's passes: forward + backward (weight gradients, and input gradients after the first
/// layer), forward_tangent, backward_tangent. GEMM FLOPs: 2·B·in·out per product; S over all layers,
/// S1 over the layers after the first. Bytes: every input read once, every output written once.
enum class MlpPass { forward_backward, forward_tangent, backward_tangent };
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
    case MlpPass::forward_backward:  // forward; weight grads; input grads (l > 0)
      return {bytes_per * (2 * bx + 3 * p + 2 * c + 2 * bo), b2 * (2 * s + s1)};
    case MlpPass::forward_tangent:  // V products; W products on Ra (l > 0)
      return {bytes_per * (bx + 2 * p + 2 * c + bo), b2 * (s + s1)};
    case MlpPass::backward_tangent:  // Rδᵀa; δᵀRa, δW, δV, RδW (l > 0)
      return {bytes_per * (bx + 3 * p + 2 * c + 2 * bo), b2 * (s + 4 * s1)};
  }
  return {};
}

/// The policy-curvature inner gradient (prepare: 3F, forward and backward of the trunk) and one
/// Hessian-vector product (apply: 5F, forward tangent F, backward 2F, backward tangent 2F); x and y
/// read once (`dims` action dimensions).
inline Work curvature_gradient_work(const Mlp& net, std::int64_t B, std::int64_t dims, double bytes_per = 4) {
  return {bytes_per * static_cast<double>(B * (net.inputs() + dims)), 3.0 * mlp_forward_flops(net, B)};
}
inline Work curvature_hvp_work(const Mlp& net, std::int64_t B, std::int64_t dims, double bytes_per = 4) {
  return {bytes_per * static_cast<double>(B * (net.inputs() + dims)), 5.0 * mlp_forward_flops(net, B)};
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
