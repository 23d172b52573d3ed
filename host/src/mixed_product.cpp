// Second-order reward pieces (second_order.hpp): the transform's vector-Jacobian product, the
// REINFORCE mixed product ∇_φ(∇_head L_in · ḣ) as a composition of public primitives, and the
// checks of the exact-curvature mixed product (DESIGN.md §5–6). Each head's mixed_product and
// exact_mixed_product (host/src/heads/<head>.cpp) call the generic pieces here, instantiated for
// the three heads.
//
// Everything is validated first (head, targets, reward, options, tangent, output shape and
// aliasing), then the work runs; the composition runs with value checks off and its
// intermediates in the context's composite workspace.
#include <cmath>
#include <vector>

#include "d2r/distributions.hpp"
#include "d2r/objectives.hpp"
#include "d2r/second_order.hpp"
#include "host/reference/mixed_product.hpp"
#include "host/reference/objectives.hpp"
#include "host/src/head_checks.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/objectives/launch.hpp"
#include "kernels/rewards/launch.hpp"

namespace d2r {
namespace objective_common {
namespace {

using detail::MatrixArg;

// ---------------------------------------------------------------- tangent checks
template <class T>
void check_component(Context& ctx, std::string_view fn, std::string_view name, ConstMatrix<T> m, std::int64_t rows,
                     std::int64_t cols, std::vector<MatrixArg>& inputs) {
  const MatrixArg arg(name, m);
  detail::check_matrix(ctx, fn, arg, rows, cols);
  detail::check_values<T>(ctx, fn, name, m, detail::ValueRule::finite);
  inputs.push_back(arg);
}
/// The tangent has the head's shapes (a shared 1-row log_std / tril: a 1-row tangent), finite.
template <class T>
void check_tangent(Context& ctx, std::string_view fn, const DiagGaussian<T>& head, const DiagGaussian<T>& t,
                   std::vector<MatrixArg>& inputs) {
  check_component<T>(ctx, fn, "tangent.mean", t.mean, head.mean.rows, head.mean.cols, inputs);
  check_component<T>(ctx, fn, "tangent.log_std", t.log_std, head.log_std.rows, head.log_std.cols, inputs);
}
template <class T>
void check_tangent(Context& ctx, std::string_view fn, const CholeskyGaussian<T>& head, const CholeskyGaussian<T>& t,
                   std::vector<MatrixArg>& inputs) {
  check_component<T>(ctx, fn, "tangent.mean", t.mean, head.mean.rows, head.mean.cols, inputs);
  check_component<T>(ctx, fn, "tangent.tril", t.tril, head.tril.rows, head.tril.cols, inputs);
}
template <class T>
void check_tangent(Context& ctx, std::string_view fn, const Categorical<T>& head, const Categorical<T>& t,
                   std::vector<MatrixArg>& inputs) {
  check_component<T>(ctx, fn, "tangent.logits", t.logits, head.logits.rows, head.logits.cols, inputs);
}

/// Head, targets, reward, options, tangent and grad_params (1 x P, disjoint from every input).
template <class T, class Head, class Targets>
void check_mixed(Context& ctx, std::string_view fn, const Head& head, Targets targets,
                 const MahalanobisReward<T>& reward, const PgOptions<T>& options, const Head& tangent,
                 VectorView<T> grad_params) {
  detail::check_head(ctx, fn, head);
  std::vector<MatrixArg> inputs = detail::head_inputs(head);
  inputs.push_back(check_targets<T>(ctx, fn, head, targets));
  detail::check_reward(ctx, fn, reward, head_traits<Head>::dim(head));
  inputs.emplace_back("reward.params", reward.params);
  check_options(fn, options, head_traits<Head>::rows(head));
  check_tangent<T>(ctx, fn, head, tangent, inputs);
  const MatrixArg out("grad_params", grad_params);
  detail::check_matrix(ctx, fn, out, 1, reward.params.size);
  for (const MatrixArg& in : inputs) detail::check_disjoint(fn, out, in);
}

// ---------------------------------------------------------------- REINFORCE mixed product
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
template <class T>
void reward_backward_of(Context& ctx, const MahalanobisReward<T>& r, ConstMatrix<T> samples, ConstMatrix<T> targets,
                        ConstMatrix<T> d_reward, VectorView<T> grad, std::int64_t) {
  reward_backward(ctx, r, samples, targets, d_reward, grad);
}
template <class T>
void reward_backward_of(Context& ctx, const MahalanobisReward<T>& r, MatrixView<const std::int32_t> samples,
                        VectorView<const std::int32_t> labels, ConstMatrix<T> d_reward, VectorView<T> grad,
                        std::int64_t classes) {
  reward_backward(ctx, r, samples, labels, classes, d_reward, grad);
}

}  // namespace

template <class T, class Head, class Targets>
void mixed_product_by_composition(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& r,
                                  std::int64_t G, const PgOptions<T>& options, DrawKey key, const Head& tangent,
                                  VectorView<T> grad_params) {
  constexpr std::string_view fn = "mixed_product";
  using Sample = typename head_traits<Head>::Sample;
  detail::check_scalar_type<T>(ctx, fn);
  check_mixed<T>(ctx, fn, head, targets, r, options, tangent, grad_params);
  D2R_EXPECTS(G >= 1, fn, "generations", "expected generations >= 1, got {}", G);
  detail::check_transform(fn, options.transform, G);
  detail::check_draw_key(ctx, fn, key, head_traits<Head>::rows(head));

  const std::int64_t B = head_traits<Head>::rows(head);
  const std::int64_t sr = head_traits<Head>::sample_rows(head, G), sc = head_traits<Head>::sample_cols(head, G);
  const std::size_t sample_bytes = (static_cast<std::size_t>(sr * sc) * sizeof(Sample) + 255) / 256 * 256;
  const std::size_t bytes = sample_bytes + static_cast<std::size_t>(5 * B * G + 3 * B) * sizeof(T);
  char* base = static_cast<char*>(ctx.workspace(bytes, Workspace::composite));
  T* v = reinterpret_cast<T*>(base + sample_bytes);
  const MatrixView<Sample> samples{reinterpret_cast<Sample*>(base), sr, sc, sc};
  const MatrixView<T> lp{v, B, G, G}, rewards{v + B * G, B, G, G}, jvp{v + 2 * B * G, B, G, G},
      s{v + 3 * B * G, B, G, G}, d_r{v + 4 * B * G, B, G, G};
  const VectorView<T> H{v + 5 * B * G, B}, row_loss{v + 5 * B * G + B, B}, d_entropy{v + 5 * B * G + 2 * B, B};

  const MatrixView<const Sample> cs = samples;
  ChecksOff checks_off(ctx);
  sample(ctx, head, G, key, samples);
  log_prob(ctx, head, cs, lp);
  reward_of<T>(ctx, r, cs, targets, rewards, head_traits<Head>::dim(head));
  log_prob_jvp(ctx, head, cs, tangent, jvp);
  entropy(ctx, head, H);
  // s_bg = −pd·active_bg/(N G) · jvp_bg: pg_row_terms' d_log_prob with the jvp as advantages.
  const auto scale = scale_of(head, options, G);
  const ObjectiveRows<T> rows{row_loss, {}};
  detail::run_on<T>(
      ctx, [&] { reference::objectives::pg_row_terms<T>(options, scale, lp, rewards, jvp, H, s, d_entropy, rows); },
      [&](const auto& ex) {
        ex.launch(kernels::objectives::pg_row_terms, options, scale, lp, rewards, jvp, H, s, d_entropy, rows);
      });
  transform_rewards_backward(ctx, options.transform, ConstMatrix<T>(rewards), ConstMatrix<T>(s), d_r);
  reward_backward_of<T>(ctx, r, cs, targets, ConstMatrix<T>(d_r), grad_params,
                        head_traits<Head>::dim(head));
}

template <class T, class Head, class Targets>
void check_exact_mixed_product(Context& ctx, const Head& head, Targets targets, const MahalanobisReward<T>& r,
                               const PgOptions<T>& options, const Head& tangent, VectorView<T> grad_params) {
  constexpr std::string_view fn = "exact_mixed_product";
  detail::check_scalar_type<T>(ctx, fn);
  check_mixed<T>(ctx, fn, head, targets, r, options, tangent, grad_params);
}

// Instantiations for each head (H) and its targets (Y).
#define D2R_INSTANTIATE(T, H, Y)                                                                            \
  template void mixed_product_by_composition<T, H, Y>(Context&, const H&, Y, const MahalanobisReward<T>&,   \
                                                      std::int64_t, const PgOptions<T>&, DrawKey, const H&, \
                                                      VectorView<T>);                                       \
  template void check_exact_mixed_product<T, H, Y>(Context&, const H&, Y, const MahalanobisReward<T>&,      \
                                                   const PgOptions<T>&, const H&, VectorView<T>);
#define D2R_INSTANTIATE_TYPE(T)                           \
  D2R_INSTANTIATE(T, DiagGaussian<T>, ConstMatrix<T>)     \
  D2R_INSTANTIATE(T, CholeskyGaussian<T>, ConstMatrix<T>) \
  D2R_INSTANTIATE(T, Categorical<T>, VectorView<const std::int32_t>)
D2R_INSTANTIATE_TYPE(float)
D2R_INSTANTIATE_TYPE(double)
#undef D2R_INSTANTIATE_TYPE
#undef D2R_INSTANTIATE

}  // namespace objective_common

// ---------------------------------------------------------------- public entry point
template <class T>
void transform_rewards_backward(Context& ctx, const TransformOptions<T>& options, ConstMatrix<T> rewards,
                                ConstMatrix<T> d_advantages, MatrixView<T> d_rewards) {
  constexpr std::string_view fn = "transform_rewards_backward";
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(rewards.rows >= 1 && rewards.cols >= 1, fn, "rewards", "expected B x G with B, G >= 1, got {} x {}",
              rewards.rows, rewards.cols);
  const detail::MatrixArg r("rewards", rewards), da("d_advantages", d_advantages), o("d_rewards", d_rewards);
  detail::check_matrix(ctx, fn, r, rewards.rows, rewards.cols);
  detail::check_matrix(ctx, fn, da, rewards.rows, rewards.cols);
  detail::check_transform(fn, options, rewards.cols);
  detail::check_values<T>(ctx, fn, "rewards", rewards, detail::ValueRule::finite);
  detail::check_values<T>(ctx, fn, "d_advantages", d_advantages, detail::ValueRule::finite);
  detail::check_matrix(ctx, fn, o, rewards.rows, rewards.cols);
  detail::check_disjoint(fn, o, r);
  detail::check_disjoint(fn, o, da);
  detail::run_on<T>(
      ctx, [&] { reference::rewards::transform_rewards_backward(options, rewards, d_advantages, d_rewards); },
      [&](const auto& ex) {
        ex.launch(kernels::rewards::transform_rewards_backward, options, rewards, d_advantages, d_rewards);
      });
}

template void transform_rewards_backward<float>(Context&, const TransformOptions<float>&, ConstMatrix<float>,
                                                ConstMatrix<float>, MatrixView<float>);
template void transform_rewards_backward<double>(Context&, const TransformOptions<double>&, ConstMatrix<double>,
                                                 ConstMatrix<double>, MatrixView<double>);

}  // namespace d2r
