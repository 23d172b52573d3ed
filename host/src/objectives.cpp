// Generic pieces of the inner objectives' entry points: the checks every objective makes before
// any output is touched, and the REINFORCE surrogate as a composition of the public primitives
// (pg_surrogate_unfused, and pg_surrogate where a head has no fused kernel for the size). Each
// head's entry points (host/src/heads/<head>.cpp) call these around the head's own kernels; they
// are instantiated here for the three heads.
//
// The composition runs with value checks off (the inputs were checked once) and with its
// temporaries in the context's composite workspace.
#include <cmath>
#include <vector>

#include "d2r/distributions.hpp"
#include "d2r/objectives.hpp"
#include "host/reference/objectives.hpp"
#include "host/src/head_checks.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/objectives/launch.hpp"

namespace d2r::objective_common {
namespace {

using detail::MatrixArg;

/// Row outputs: row_loss length B (required), row_reward length B or empty; none aliases the
/// inputs nor each other. Returns them for the gradient aliasing checks.
template <class T>
std::vector<MatrixArg> check_rows(const Context& ctx, std::string_view fn, const ObjectiveRows<T>& rows,
                                  std::int64_t batch, const std::vector<MatrixArg>& inputs) {
  std::vector<MatrixArg> outs{MatrixArg("rows.row_loss", rows.row_loss)};
  detail::check_matrix(ctx, fn, outs[0], 1, batch);
  if (!rows.row_reward.empty()) {
    outs.emplace_back("rows.row_reward", rows.row_reward);
    detail::check_matrix(ctx, fn, outs[1], 1, batch);
  }
  for (const MatrixArg& o : outs)
    for (const MatrixArg& in : inputs) detail::check_disjoint(fn, o, in);
  if (outs.size() == 2) detail::check_disjoint(fn, outs[0], outs[1]);
  return outs;
}

void check_all_disjoint(std::string_view fn, const std::vector<MatrixArg>& outputs, const std::vector<MatrixArg>& others) {
  for (const MatrixArg& o : outputs)
    for (const MatrixArg& in : others)
      if (o.data != in.data || o.name != in.name) detail::check_disjoint(fn, o, in);
}

/// Everything an objective call checks before any output is touched. Returns the outputs
/// checked so far (rows and gradient) for further aliasing checks.
template <class T, class Head, class Targets>
std::vector<MatrixArg> check_objective_args(Context& ctx, std::string_view fn, const Head& head, Targets targets,
                                            const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                                            std::int64_t generations, const ObjectiveRows<T>& rows,
                                            const typename head_traits<Head>::Grad& grad) {
  detail::check_head(ctx, fn, head);
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  inputs.push_back(check_targets<T>(ctx, fn, head, targets));
  detail::check_reward(ctx, fn, reward, head_traits<Head>::dim(head));
  inputs.emplace_back("reward.params", reward.params);
  D2R_EXPECTS(generations >= 1, fn, "generations", "expected generations >= 1, got {}", generations);
  check_options(fn, options, head_traits<Head>::rows(head));
  detail::check_transform(fn, options.transform, generations);
  std::vector<MatrixArg> outputs = check_rows(ctx, fn, rows, head_traits<Head>::rows(head), inputs);
  const std::vector<MatrixArg> grads = detail::check_head_grad(ctx, fn, head, grad);
  check_all_disjoint(fn, grads, inputs);
  check_all_disjoint(fn, grads, outputs);
  outputs.insert(outputs.end(), grads.begin(), grads.end());
  outputs.insert(outputs.end(), inputs.begin(), inputs.end());
  return outputs;  // outputs first, then inputs: everything an intermediate must not overlap
}

// ---------------------------------------------------------------- unfused composition
template <class T>
void reward_of(Context& ctx, const MahalanobisReward<T>& r, ConstMatrix<T> samples, ConstMatrix<T> targets,
               MatrixView<T> out, std::int64_t) {
  reward(ctx, r, samples, targets, out);
}
template <class T>
void reward_of(Context& ctx, const MahalanobisReward<T>& r, MatrixView<const std::int32_t> samples,
               VectorView<const std::int32_t> labels, MatrixView<T> out, std::int64_t classes) {
  reward(ctx, r, samples, labels, classes, out);
}

/// Scratch of the composition: entropy (B), d_log_prob (B x G), d_entropy (B).
template <class T>
std::size_t row_scratch_bytes(std::int64_t B, std::int64_t G) {
  return static_cast<std::size_t>(B * (G + 2)) * sizeof(T);
}

template <class T, class Head, class Targets>
void run_unfused(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& r, std::int64_t G,
                 const PgOptions<T>& options, DrawKey key,
                 const PgIntermediates<T, typename head_traits<Head>::Sample>& im, const ObjectiveRows<T>& rows,
                 const typename head_traits<Head>::Grad& grad, T* scratch) {
  const std::int64_t B = head_traits<Head>::rows(head);
  ChecksOff checks_off(ctx);
  const VectorView<T> H{scratch, B}, d_entropy{scratch + B, B};
  const MatrixView<T> d_log_prob{scratch + 2 * B, B, G, G};
  sample(ctx, head, G, key, im.samples);
  log_prob(ctx, head, im.samples, im.log_prob);
  reward_of<T>(ctx, r, im.samples, targets, im.rewards, head_traits<Head>::dim(head));
  transform_rewards(ctx, options.transform, im.rewards, im.advantages);
  entropy(ctx, head, H);
  const auto s = scale_of(head, options, G);
  detail::run_on<T>(
      ctx,
      [&] {
        reference::objectives::pg_row_terms<T>(options, s, im.log_prob, im.rewards, im.advantages, H, d_log_prob,
                                               d_entropy, rows);
      },
      [&](const auto& ex) {
        ex.launch(kernels::objectives::pg_row_terms, options, s, im.log_prob, im.rewards, im.advantages, H, d_log_prob,
                  d_entropy, rows);
      });
  backward(ctx, head, im.samples, d_log_prob, d_entropy, grad);
}

}  // namespace

template <class T, class Head, class Targets>
void unfused_surrogate(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& r, std::int64_t G,
                       const PgOptions<T>& options, DrawKey key,
                       const PgIntermediates<T, typename head_traits<Head>::Sample>& im, const ObjectiveRows<T>& rows,
                       const typename head_traits<Head>::Grad& grad) {
  constexpr std::string_view fn = "pg_surrogate_unfused";
  std::vector<MatrixArg> others = check_objective_args<T>(ctx, fn, head, targets, r, options, G, rows, grad);
  detail::check_draw_key(ctx, fn, key, head_traits<Head>::rows(head));
  const std::int64_t B = head_traits<Head>::rows(head);
  const std::vector<MatrixArg> im_args{
      MatrixArg("intermediates.samples", im.samples), MatrixArg("intermediates.log_prob", im.log_prob),
      MatrixArg("intermediates.rewards", im.rewards), MatrixArg("intermediates.advantages", im.advantages)};
  detail::check_matrix(ctx, fn, im_args[0], head_traits<Head>::sample_rows(head, G), head_traits<Head>::sample_cols(head, G));
  for (int i = 1; i < 4; ++i) detail::check_matrix(ctx, fn, im_args[i], B, G);
  check_all_disjoint(fn, im_args, others);
  for (std::size_t i = 0; i < im_args.size(); ++i)
    for (std::size_t j = i + 1; j < im_args.size(); ++j) detail::check_disjoint(fn, im_args[i], im_args[j]);
  T* scratch = static_cast<T*>(ctx.workspace(row_scratch_bytes<T>(B, G), Workspace::composite));
  run_unfused<T>(ctx, head, targets, r, G, options, key, im, rows, grad, scratch);
}

/// The surrogate through the composition, with the intermediates in the composite workspace.
template <class T, class Head, class Targets>
void surrogate_by_composition(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& r,
                              std::int64_t G, const PgOptions<T>& options, DrawKey key, const ObjectiveRows<T>& rows,
                              const typename head_traits<Head>::Grad& grad) {
  using Sample = typename head_traits<Head>::Sample;
  const std::int64_t B = head_traits<Head>::rows(head);
  const std::int64_t sr = head_traits<Head>::sample_rows(head, G), sc = head_traits<Head>::sample_cols(head, G);
  const std::size_t sample_bytes = (static_cast<std::size_t>(sr * sc) * sizeof(Sample) + 255) / 256 * 256;
  const std::size_t bytes = sample_bytes + static_cast<std::size_t>(3 * B * G) * sizeof(T) + row_scratch_bytes<T>(B, G);
  char* base = static_cast<char*>(ctx.workspace(bytes, Workspace::composite));
  T* values = reinterpret_cast<T*>(base + sample_bytes);
  const PgIntermediates<T, Sample> im{MatrixView<Sample>{reinterpret_cast<Sample*>(base), sr, sc, sc},
                                      MatrixView<T>{values, B, G, G}, MatrixView<T>{values + B * G, B, G, G},
                                      MatrixView<T>{values + 2 * B * G, B, G, G}};
  run_unfused<T>(ctx, head, targets, r, G, options, key, im, rows, grad, values + 3 * B * G);
}

template <class T, class Head, class Targets>
void check_pg_surrogate(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& r, std::int64_t G,
                        const PgOptions<T>& options, DrawKey key, const ObjectiveRows<T>& rows,
                        const GradOf<Head>& grad) {
  constexpr std::string_view fn = "pg_surrogate";
  check_objective_args<T>(ctx, fn, head, targets, r, options, G, rows, grad);
  detail::check_draw_key(ctx, fn, key, head_traits<Head>::rows(head));
}

template <class T, class Head>
void check_pg_pathwise(Context& ctx, const Head& head, ConstMatrix<T> targets, const MahalanobisReward<T>& r,
                       std::int64_t G, const PgOptions<T>& options, DrawKey key, const ObjectiveRows<T>& rows,
                       const GradOf<Head>& grad) {
  constexpr std::string_view fn = "pg_pathwise";
  check_objective_args<T>(ctx, fn, head, targets, r, options, G, rows, grad);
  detail::check_draw_key(ctx, fn, key, head_traits<Head>::rows(head));
  D2R_EXPECTS(options.transform.kind == Transform::none || options.transform.kind == Transform::rbf, fn,
              "options.transform", "the pathwise objective takes transform none or rbf; {} centres each group, so "
              "its pathwise gradient would not be that of the group's rewards", to_string(options.transform.kind));
  D2R_EXPECTS(options.log_prob_clip == T(0), fn, "options.log_prob_clip",
              "the pathwise objective has no log-probability to clip; expected 0, got {}", options.log_prob_clip);
}

template <class T, class Head, class Targets>
void check_exact_objective(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& r,
                           const PgOptions<T>& options, const ObjectiveRows<T>& rows, const GradOf<Head>& grad) {
  constexpr std::string_view fn = "exact_objective";
  // The exact objective draws nothing: validate with G = 2 so that every transform passes.
  check_objective_args<T>(
      ctx, fn, head, targets, r,
      PgOptions<T>{options.entropy_weight, {}, T(0), options.per_dimension_mean, options.normaliser_rows}, 2, rows,
      grad);
  check_options(fn, options, head_traits<Head>::rows(head));
}

// Instantiations: every generic piece for each head (H), its targets (Y) and draws (S).
#define D2R_INSTANTIATE(T, H, Y, S)                                                                                   \
  template void unfused_surrogate<T, H, Y>(Context&, const H&, Y, const MahalanobisReward<T>&, std::int64_t,          \
                                           const PgOptions<T>&, DrawKey, const PgIntermediates<T, S>&,                \
                                           const ObjectiveRows<T>&, const GradOf<H>&);                                \
  template void surrogate_by_composition<T, H, Y>(Context&, const H&, Y, const MahalanobisReward<T>&, std::int64_t,   \
                                                  const PgOptions<T>&, DrawKey, const ObjectiveRows<T>&,              \
                                                  const GradOf<H>&);                                                  \
  template void check_pg_surrogate<T, H, Y>(Context&, const H&, Y, const MahalanobisReward<T>&, std::int64_t,         \
                                            const PgOptions<T>&, DrawKey, const ObjectiveRows<T>&, const GradOf<H>&); \
  template void check_exact_objective<T, H, Y>(Context&, const H&, Y, const MahalanobisReward<T>&,                    \
                                               const PgOptions<T>&, const ObjectiveRows<T>&, const GradOf<H>&);
#define D2R_INSTANTIATE_PATHWISE(T, H)                                                                                 \
  template void check_pg_pathwise<T, H>(Context&, const H&, ConstMatrix<T>, const MahalanobisReward<T>&, std::int64_t, \
                                        const PgOptions<T>&, DrawKey, const ObjectiveRows<T>&, const GradOf<H>&);
#define D2R_INSTANTIATE_TYPE(T)                                                    \
  D2R_INSTANTIATE(T, DiagGaussian<T>, ConstMatrix<T>, T)                           \
  D2R_INSTANTIATE(T, CholeskyGaussian<T>, ConstMatrix<T>, T)                       \
  D2R_INSTANTIATE(T, Categorical<T>, VectorView<const std::int32_t>, std::int32_t) \
  D2R_INSTANTIATE_PATHWISE(T, DiagGaussian<T>)                                     \
  D2R_INSTANTIATE_PATHWISE(T, CholeskyGaussian<T>)
D2R_INSTANTIATE_TYPE(float)
D2R_INSTANTIATE_TYPE(double)
#undef D2R_INSTANTIATE_TYPE
#undef D2R_INSTANTIATE_PATHWISE
#undef D2R_INSTANTIATE

}  // namespace d2r::objective_common
