#pragma once
// Host-callable launchers of the CUDA kernels (plain C++: host/src includes this without nvcc).
// Each launcher enqueues work on `stream` and checks the launch; none synchronises unless its
// comment says so. Arguments are already validated by the public entry points in host/src.

#include <cstdint>

#include <cuda_runtime_api.h>

#include "d2r/types/heads.hpp"
#include "d2r/types/objectives.hpp"
#include "d2r/view.hpp"
#include "common/math/philox.hpp"

namespace d2r::kernels {

using math::DrawPosition;

// ---- value checks (value_checks.cu). Each returns the row-major linear index (r * cols + c)
// of the first offending element, or -1; each synchronises `stream`. `scratch` is 8 device bytes.
std::int64_t first_nonfinite(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch);
/// First NaN or +inf element of logits.
std::int64_t first_bad_logit(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch);
/// First row whose entries are all -inf (returns the row index).
std::int64_t first_row_without_finite(cudaStream_t stream, MatrixView<const float> m, std::int64_t* scratch);
std::int64_t first_index_out_of_range(cudaStream_t stream, MatrixView<const std::int32_t> m, std::int32_t upper,
                                      std::int64_t* scratch);

// ---- deterministic column sums (column_sum.cu): out[c] = Σ_r in(r, c), summed in a fixed
// order that depends only on the shape (never on the device or on timing).
std::size_t column_sum_workspace_bytes(std::int64_t rows, std::int64_t cols);
void column_sum(cudaStream_t stream, MatrixView<const float> in, float* out, void* workspace);

// ---- diagonal Gaussian (diag_gaussian.cu)
void diag_gaussian_sample(cudaStream_t stream, const DiagGaussian<float>& head, std::int64_t generations,
                          DrawPosition pos, MatrixView<float> samples);
void diag_gaussian_log_prob(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                            MatrixView<float> out);
void diag_gaussian_entropy(cudaStream_t stream, const DiagGaussian<float>& head, VectorView<float> out);
/// `workspace`: diag_gaussian_backward_workspace_bytes(...) device bytes (0 when log_std is per-row).
std::size_t diag_gaussian_backward_workspace_bytes(const DiagGaussian<float>& head);
void diag_gaussian_backward(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                            MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                            const DiagGaussianGrad<float>& grad, void* workspace);

// ---- Cholesky Gaussian (cholesky_gaussian.cu)
void cholesky_gaussian_sample(cudaStream_t stream, const CholeskyGaussian<float>& head, std::int64_t generations,
                              DrawPosition pos, MatrixView<float> samples);
void cholesky_gaussian_log_prob(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                MatrixView<const float> samples, MatrixView<float> out);
void cholesky_gaussian_entropy(cudaStream_t stream, const CholeskyGaussian<float>& head, VectorView<float> out);
/// Row-major index (r * n + i) of the first diagonal entry with softplus(raw_ii) + jitter not > 0,
/// or -1; synchronises `stream`. `scratch` is 8 device bytes.
std::int64_t cholesky_first_nonpositive_diagonal(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                                 std::int64_t* scratch);
std::size_t cholesky_gaussian_backward_workspace_bytes(const CholeskyGaussian<float>& head);
void cholesky_gaussian_backward(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                MatrixView<const float> samples, MatrixView<const float> d_log_prob,
                                VectorView<const float> d_entropy, const CholeskyGaussianGrad<float>& grad,
                                void* workspace);

// ---- categorical (categorical.cu)
void categorical_sample(cudaStream_t stream, const Categorical<float>& head, std::int64_t generations,
                        DrawPosition pos, MatrixView<std::int32_t> samples);
void categorical_log_prob(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
                          MatrixView<float> out);
void categorical_entropy(cudaStream_t stream, const Categorical<float>& head, VectorView<float> out);
void categorical_backward(cudaStream_t stream, const Categorical<float>& head, MatrixView<const std::int32_t> samples,
                          MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                          const CategoricalGrad<float>& grad);

}  // namespace d2r::kernels

// ---- rewards and group transforms (rewards.cu)
namespace d2r::kernels {
void reward_continuous(cudaStream_t stream, const MahalanobisReward<float>& reward, MatrixView<const float> samples,
                       MatrixView<const float> targets, MatrixView<float> out);
void reward_one_hot(cudaStream_t stream, const MahalanobisReward<float>& reward, MatrixView<const std::int32_t> samples,
                    VectorView<const std::int32_t> labels, std::int64_t classes, MatrixView<float> out);
std::size_t reward_backward_continuous_workspace_bytes(const MahalanobisReward<float>& reward, std::int64_t rows,
                                                       std::int64_t dim, std::int64_t generations);
void reward_backward_continuous(cudaStream_t stream, const MahalanobisReward<float>& reward,
                                MatrixView<const float> samples, MatrixView<const float> targets,
                                MatrixView<const float> d_reward, VectorView<float> grad, void* workspace);
std::size_t reward_backward_one_hot_workspace_bytes(const MahalanobisReward<float>& reward, std::int64_t rows,
                                                    std::int64_t classes);
void reward_backward_one_hot(cudaStream_t stream, const MahalanobisReward<float>& reward,
                             MatrixView<const std::int32_t> samples, VectorView<const std::int32_t> labels,
                             std::int64_t classes, MatrixView<const float> d_reward, VectorView<float> grad,
                             void* workspace);
void transform_rewards(cudaStream_t stream, const TransformOptions<float>& options, MatrixView<const float> rewards,
                       MatrixView<float> advantages);
void transform_rewards_backward(cudaStream_t stream, const TransformOptions<float>& options,
                                MatrixView<const float> rewards, MatrixView<const float> d_advantages,
                                MatrixView<float> d_rewards);
}  // namespace d2r::kernels

// ---- objectives (objectives.cu and the head families' files)
namespace d2r::kernels {
/// Per-row surrogate terms and the cotangents for backward (see reference::pg_row_terms).
void pg_row_terms(cudaStream_t stream, const PgOptions<float>& options, ObjectiveScale<float> scale,
                  MatrixView<const float> log_prob, MatrixView<const float> rewards, MatrixView<const float> advantages,
                  VectorView<const float> entropy, MatrixView<float> d_log_prob, VectorView<float> d_entropy,
                  const ObjectiveRows<float>& rows);
/// Workspace of the objective kernels of the Gaussian heads: per-row gradients of a shared
/// log_std / tril (B x P floats) and their column sum; 0 when the parameter is per row.
std::size_t shared_param_workspace_bytes(std::int64_t rows, std::int64_t params, bool shared);

void exact_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                         const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                         const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad, void* workspace);
/// Shared memory the diagonal head's one-thread-per-row kernels may use for a full U: 2n floats
/// per thread for the pathwise kernel, n for the exact objective and its tangent; the largest n
/// that leaves at least one thread per block.
inline constexpr std::int64_t kPathwiseSharedBytes = 48 * 1024;
inline constexpr std::int64_t kPathwiseMaxFullDim = kPathwiseSharedBytes / (2 * 4);
inline constexpr std::int64_t kExactMaxFullDim = kPathwiseSharedBytes / 4;
void pathwise_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                            const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                            ObjectiveScale<float> scale, const ObjectiveRows<float>& rows, const DiagGaussianGrad<float>& grad,
                            void* workspace);
/// Whether the fused kernel takes this size (n <= 128, G <= 1024); otherwise compose primitives.
bool pg_surrogate_diag_gaussian_fusable(const DiagGaussian<float>& head, std::int64_t generations);
/// Fused REINFORCE surrogate of the diagonal-Gaussian head: one warp per row, noise regenerated
/// from Philox in the second pass instead of storing B·G·n samples.
void pg_surrogate_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> targets,
                                const MahalanobisReward<float>& reward, const PgOptions<float>& options,
                                DrawPosition pos, ObjectiveScale<float> scale, const ObjectiveRows<float>& rows,
                                const DiagGaussianGrad<float>& grad, void* workspace);
/// Whether the fused categorical surrogate takes this size (G <= 1024: the G draws of a row in
/// shared memory); otherwise compose primitives.
bool pg_surrogate_categorical_fusable(const Categorical<float>& head, std::int64_t generations);
/// Fused REINFORCE surrogate of the categorical head (categorical.cu): one block per row; the
/// logits are read in pass 1 (statistics), again only in the tiles that hold a draw, and once
/// more for the gradient (a row of C <= 2048 is read once); draws equal categorical_sample's; no
/// B x G intermediate in device memory.
void pg_surrogate_categorical(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                              const MahalanobisReward<float>& reward, const PgOptions<float>& options, DrawPosition pos,
                              ObjectiveScale<float> scale, const ObjectiveRows<float>& rows,
                              const CategoricalGrad<float>& grad);

/// Tangent of the exact objective's head gradient (diagonal Gaussian); workspace as exact_diag_gaussian.
void exact_diag_gaussian_tangent(cudaStream_t stream, const DiagGaussian<float>& head,
                                 const MahalanobisReward<float>& reward, ObjectiveScale<float> scale,
                                 const DiagGaussian<float>& tangent, const DiagGaussianGrad<float>& grad_tangent,
                                 void* workspace);
void exact_cholesky_gaussian(cudaStream_t stream, const CholeskyGaussian<float>& head, MatrixView<const float> targets,
                             const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                             const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad,
                             void* workspace);
/// Tangent of the exact objective's head gradient (Cholesky Gaussian, see
/// reference::exact_cholesky_gaussian_tangent); workspace as exact_cholesky_gaussian.
void exact_cholesky_gaussian_tangent(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                     const MahalanobisReward<float>& reward, float entropy_weight,
                                     ObjectiveScale<float> scale, const CholeskyGaussian<float>& tangent,
                                     const CholeskyGaussianGrad<float>& grad_tangent, void* workspace);
void pathwise_cholesky_gaussian(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                MatrixView<const float> targets, const MahalanobisReward<float>& reward,
                                const PgOptions<float>& options, DrawPosition pos, ObjectiveScale<float> scale,
                                const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad,
                                void* workspace);
/// Whether the fused Cholesky surrogate takes this size (n <= kMaxCholeskyDim, G <= 1024: the G
/// rewards and log-probabilities of a row in shared memory); otherwise compose primitives.
bool pg_surrogate_cholesky_gaussian_fusable(const CholeskyGaussian<float>& head, std::int64_t generations);
/// Fused REINFORCE surrogate of the Cholesky-Gaussian head (cholesky_objectives.cu): one warp per
/// row, the noise regenerated from Philox in the second pass; no B·G·n tensor and no B x G
/// intermediate in device memory. `workspace`: shared_param_workspace_bytes(B, n(n+1)/2, shared).
void pg_surrogate_cholesky_gaussian(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                    MatrixView<const float> targets, const MahalanobisReward<float>& reward,
                                    const PgOptions<float>& options, DrawPosition pos, ObjectiveScale<float> scale,
                                    const ObjectiveRows<float>& rows, const CholeskyGaussianGrad<float>& grad,
                                    void* workspace);
void exact_categorical(cudaStream_t stream, const Categorical<float>& head, VectorView<const std::int32_t> labels,
                       const MahalanobisReward<float>& reward, float entropy_weight, ObjectiveScale<float> scale,
                       const ObjectiveRows<float>& rows, const CategoricalGrad<float>& grad);
/// Tangent of the exact objective's logits gradient (categorical.cu, one block per row; see
/// reference::exact_categorical_tangent). No workspace.
void exact_categorical_tangent(cudaStream_t stream, const Categorical<float>& head,
                               VectorView<const std::int32_t> labels, const MahalanobisReward<float>& reward,
                               float entropy_weight, ObjectiveScale<float> scale, const Categorical<float>& tangent,
                               const CategoricalGrad<float>& grad_tangent);
}  // namespace d2r::kernels

// ---- optimisers (optim.cu)
#include "d2r/types/optim.hpp"
namespace d2r::kernels {
/// Fused Adam/AdamW update, then a one-thread kernel that increments state.step (both on stream).
void adam_step(cudaStream_t stream, const AdamOptions<float>& options, const AdamState<float>& state,
               VectorView<float> params, VectorView<const float> grad);
void adam_reset(cudaStream_t stream, const AdamState<float>& state);
/// counter[0] += by (one thread).
void advance_counter(cudaStream_t stream, std::int64_t* counter, std::int64_t by);
/// `velocity` is not read when momentum == 0.
void sgd_step(cudaStream_t stream, float learning_rate, float momentum, VectorView<float> velocity,
              VectorView<float> params, VectorView<const float> grad);
void clamp_values(cudaStream_t stream, float limit, VectorView<float> values);
/// Per-block partial sums of squares (double) and the scale factor.
std::size_t clip_global_norm_workspace_bytes(std::int64_t n);
/// Three launches: partial sums, a one-block deterministic reduction, the scaling.
void clip_global_norm(cudaStream_t stream, float max_norm, VectorView<float> values, VectorView<float> norm_out,
                      void* workspace);
}  // namespace d2r::kernels

// ---- linear solvers (solvers.cu): the device side of conjugate_gradient, conjugate_gradient_normal
// and neumann_series (host/src/solvers.cpp drives the iteration; the CPU reference is
// host/reference/solvers_ref.hpp, step for step). The scalars live in a device SolverState; every
// reduction is a fixed-order two-pass sum in double (solver_partial_count(n) block partials, then
// one block), so results depend only on n. Once the state is frozen (status != kSolverRunning)
// every launcher is a no-op on the device except solver_write_solution and
// solver_neumann_residual. None synchronises.
namespace d2r::kernels {
inline constexpr std::int32_t kSolverRunning = -1;
/// Device-resident scalars of one solve; status is a SolveStatus value or kSolverRunning.
struct SolverState {
  double rho;        ///< CG: r·r; CGNR: ‖(A + δI)r‖²
  double alpha;      ///< step of the current iteration
  double beta;       ///< direction update of the current iteration
  double threshold;  ///< tolerance · ‖b‖
  double initial;    ///< ‖r_0‖ (CG) or ‖b‖ (Neumann)
  double smallest;   ///< Neumann: smallest term norm so far
  double residual;   ///< latest residual norm
  std::int64_t iterations;
  std::int32_t status;
  std::int32_t zero_solution;  ///< b = 0: the solution is exactly 0
};
/// Where a solve keeps its device scalars, and its parameters.
struct SolverDevice {
  SolverState* state;
  double* partials;  ///< 2 · solver_partial_count(n) doubles
  float* history;    ///< residual norms, one per iteration (max_iterations + 1)
  float damping;
  float alpha;            ///< Neumann step α
  double tolerance;       ///< relative tolerance; Neumann: 0 = none
  double divergence_factor;
  double growth_slack;    ///< Neumann: 1 + kNeumannGrowthUlps · ε(float)
};
/// What solver_damp_reduce does with its sum s after y += δ x.
enum class SolverReduce {
  curvature_dot,   ///< s = x·y: α = ρ / s, breakdown unless s > 0 (CG)
  curvature_norm,  ///< s = y·y: α = ρ / s, breakdown unless s > 0 (CGNR)
  normal_start,    ///< s = y·y: ρ = s (CGNR)
  normal_beta,     ///< s = y·y: β = s / ρ, ρ = s (CGNR)
};
std::int64_t solver_partial_count(std::int64_t n);
/// r = b − (ax + δ x); initialises the state from ‖r‖ and ‖b‖ (history[0]).
void solver_cg_start(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> b, const float* x,
                     const float* ax, float* r);
/// y += δ x, then the reduction `what`.
void solver_damp_reduce(cudaStream_t stream, const SolverDevice& dev, VectorView<float> y, const float* x,
                        SolverReduce what);
/// x += α p, r −= α ap; residual test of iteration k (history[k]); CG (cg_beta): β = r·r / ρ, ρ = r·r.
void solver_cg_update(cudaStream_t stream, const SolverDevice& dev, std::int64_t k, VectorView<float> x, float* r,
                      const float* p, const float* ap, bool cg_beta);
/// p = z (first) or p = z + β p.
void solver_direction(cudaStream_t stream, const SolverDevice& dev, VectorView<float> p, const float* z, bool first);
/// x = xk, or 0 when b = 0.
void solver_write_solution(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> xk, VectorView<float> x);
/// t = b, x = α b; initialises the state from ‖b‖.
void solver_neumann_start(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> b, float* t, float* x);
/// w = t − α (w + δ t) with w = A t on entry; growth and tolerance tests of term k + 1 (history[k]).
void solver_neumann_term(cudaStream_t stream, const SolverDevice& dev, std::int64_t k, VectorView<float> w,
                         const float* t);
/// x += α w.
void solver_neumann_accumulate(cudaStream_t stream, const SolverDevice& dev, VectorView<float> x, const float* w);
/// ‖(ax + δ x) − b‖ with ax = A x on entry (overwritten): the final residual and status.
void solver_neumann_residual(cudaStream_t stream, const SolverDevice& dev, VectorView<const float> b, const float* x,
                             float* ax);
}  // namespace d2r::kernels

// ---- second order: diagonal Gaussian and categorical (diag_gaussian.cu, categorical.cu); see
// d2r/second_order.hpp and host/reference/second_order_ref.hpp. `samples` of the diagonal
// Gaussian's backward_tangent and `d_log_prob` / `d_entropy` may be empty.
namespace d2r::kernels {
void diag_gaussian_log_prob_jvp(cudaStream_t stream, const DiagGaussian<float>& head, MatrixView<const float> samples,
                                const DiagGaussian<float>& tangent, MatrixView<float> out);
/// `workspace`: diag_gaussian_backward_workspace_bytes(head) device bytes.
void diag_gaussian_backward_tangent(cudaStream_t stream, const DiagGaussian<float>& head,
                                    MatrixView<const float> samples, MatrixView<const float> d_log_prob,
                                    const DiagGaussian<float>& tangent, const DiagGaussianGrad<float>& grad_tangent,
                                    void* workspace);
void categorical_log_prob_jvp(cudaStream_t stream, const Categorical<float>& head,
                              MatrixView<const std::int32_t> samples, const Categorical<float>& tangent,
                              MatrixView<float> out);
void categorical_backward_tangent(cudaStream_t stream, const Categorical<float>& head,
                                  MatrixView<const float> d_log_prob, VectorView<const float> d_entropy,
                                  const Categorical<float>& tangent, const CategoricalGrad<float>& grad_tangent);
}  // namespace d2r::kernels

// ---- exact-curvature mixed products (mixed_product.cu); k = pd/N (diag Gaussian) or 1/N
namespace d2r::kernels {
std::size_t exact_mixed_product_workspace_bytes(std::int64_t rows, std::int64_t params);
void exact_mixed_product_diag_gaussian(cudaStream_t stream, const DiagGaussian<float>& head,
                                       MatrixView<const float> targets, const MahalanobisReward<float>& reward,
                                       float k, const DiagGaussian<float>& tangent, VectorView<float> grad,
                                       void* workspace);
/// Cholesky Gaussian (device code and launcher in cholesky_objectives.cu(h): one warp per row).
void exact_mixed_product_cholesky_gaussian(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                           MatrixView<const float> targets, const MahalanobisReward<float>& reward,
                                           float k, const CholeskyGaussian<float>& tangent, VectorView<float> grad,
                                           void* workspace);
void exact_mixed_product_categorical(cudaStream_t stream, const Categorical<float>& head,
                                     VectorView<const std::int32_t> labels, const MahalanobisReward<float>& reward,
                                     float k, const Categorical<float>& tangent, VectorView<float> grad,
                                     void* workspace);
}  // namespace d2r::kernels

// ---- second order: Cholesky Gaussian (cholesky_gaussian.cu; reference:
// host/reference/cholesky_second_order_ref.hpp)
namespace d2r::kernels {
/// out(b, g) = ∇_head log p(ŷ_bg) · tangent_b. One warp per row; no workspace.
void cholesky_gaussian_log_prob_jvp(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                    MatrixView<const float> samples, const CholeskyGaussian<float>& tangent,
                                    MatrixView<float> out);
/// Per-row tril tangents (B x n(n+1)/2 floats) and their column sum when the tril is shared; else 0.
std::size_t cholesky_gaussian_backward_tangent_workspace_bytes(const CholeskyGaussian<float>& head);
/// Tangent of cholesky_gaussian_backward along `tangent` (samples and cotangents fixed).
void cholesky_gaussian_backward_tangent(cudaStream_t stream, const CholeskyGaussian<float>& head,
                                        MatrixView<const float> samples, MatrixView<const float> d_log_prob,
                                        VectorView<const float> d_entropy, const CholeskyGaussian<float>& tangent,
                                        const CholeskyGaussianGrad<float>& grad_tangent, void* workspace);
}  // namespace d2r::kernels

// ---- networks (network.cu): the elementwise steps of the MLP trunk (d2r/network.hpp); the GEMMs
// are cuBLAS calls in host/src/network.cpp. Matrices here are the packed or strided B x width
// activations of one layer; `bias`/`rbias` hold one value per column.
#include "d2r/types/network.hpp"
namespace d2r::kernels {
/// params[i] = bound · (2u − 1), u = uniform_open(draw_bits(seed, 0, layer, part, i / 4).v[i % 4]).
void mlp_init_uniform(cudaStream_t stream, float* params, std::int64_t count, float bound, std::uint64_t seed,
                      std::uint32_t layer, std::uint32_t part);
/// z = σ(z + b) (activate) or z + b, in place.
void mlp_bias_activation(cudaStream_t stream, MatrixView<float> z, const float* bias, Activation act, bool activate);
/// rz = σ'(z) ⊙ (rz + rb) with σ' from the cached a (activate), or rz + rb; `a` unread when !activate.
void mlp_tangent_activation(cudaStream_t stream, MatrixView<float> rz, const float* rbias, MatrixView<const float> a,
                            Activation act, bool activate);
/// g = σ'(z) ⊙ g (δ of the layer below from δ W).
void mlp_backward_activation(cudaStream_t stream, MatrixView<float> g, MatrixView<const float> a, Activation act);
/// With g = δ W and rg = δ V + Rδ W on entry: g = σ' ⊙ g and rg = σ''Rz ⊙ g_in + σ' ⊙ rg.
void mlp_backward_tangent_activation(cudaStream_t stream, MatrixView<float> g, MatrixView<float> rg,
                                     MatrixView<const float> a, MatrixView<const float> ra, Activation act);
/// params[i] = value for i < count (LayerNorm's γ = 1 at init).
void mlp_fill(cudaStream_t stream, float* params, std::int64_t count, float value);

// LayerNorm of a hidden layer (d2r/network.hpp; the row loops of host/reference/network_ref.hpp):
// one warp (h <= 512) or one 256-thread block per row, row sums through CUB in a fixed order.
// `z`, `rz`, `g`, `rg` are the layer's B x h activation-slot matrices (updated in place); x̂, Rx̂
// and the scratch outputs are B x h, `rstd` (s) and `rho` (ρ) B entries; γ, β and their
// tangents h entries.

/// z ← a = σ(γ x̂ + β) from z = aWᵀ on entry (b added here); writes x̂ and s per row.
void mlp_layer_norm_forward(cudaStream_t stream, MatrixView<float> z, const float* bias, const float* gamma,
                            const float* beta, MatrixView<float> xhat, float* rstd, Activation act);
/// rz ← Ra = σ'(n)(Rγ x̂ + γ Rx̂ + Rβ) from rz = aVᵀ + RaWᵀ on entry (Rb added here); writes Rx̂, ρ.
void mlp_layer_norm_tangent(cudaStream_t stream, MatrixView<float> rz, const float* rbias, const float* gamma,
                            const float* rgamma, const float* rbeta, MatrixView<const float> a,
                            MatrixView<const float> xhat, const float* rstd, MatrixView<float> rxhat, float* rho,
                            Activation act);
/// g ← δ = ∂f/∂z from g = ∂f/∂a on entry; writes gn = σ'(n) g and gn ⊙ x̂ (column-summed by the
/// caller into the β and γ gradients).
void mlp_layer_norm_backward(cudaStream_t stream, MatrixView<float> g, MatrixView<const float> a,
                             MatrixView<const float> xhat, const float* rstd, const float* gamma, MatrixView<float> gn,
                             MatrixView<float> gn_xhat, Activation act);
/// (g, rg) ← (δ, Rδ) from ∂f/∂a and its tangent; writes Rgn and Rgn ⊙ x̂ + gn ⊙ Rx̂ (column-summed
/// by the caller into the β and γ gradient tangents).
void mlp_layer_norm_backward_tangent(cudaStream_t stream, MatrixView<float> g, MatrixView<float> rg,
                                     MatrixView<const float> a, MatrixView<const float> ra,
                                     MatrixView<const float> xhat, const float* rstd, MatrixView<const float> rxhat,
                                     const float* rho, const float* gamma, const float* rgamma, MatrixView<float> rgn,
                                     MatrixView<float> rgn_xhat, Activation act);
}  // namespace d2r::kernels
