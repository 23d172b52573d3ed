// Hessian-vector products of the REINFORCE surrogate (or of the exact-expectation objective)
// through an MLP + diagonal-Gaussian, Cholesky-Gaussian or categorical policy, composed of the
// primitives: forward → head scoring (prepare), then per HVP forward_tangent → head
// backward_tangent (or exact_backward_tangent) → network backward_tangent. One template serves
// the three heads; what differs (the layout of the network's outputs, targets vs labels) is in
// the few functions of the "head layouts" section.
#include "d2r/policy_curvature.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "host/reference/objectives.hpp"
#include "d2r/second_order.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/objectives/launch.hpp"

namespace d2r {

using objective_common::ChecksOff;

namespace {

using detail::MatrixArg;

/// Grows `b` to at least `size` elements (contents not kept); never shrinks, so the applies of a
/// solve allocate nothing.
template <class U>
void grow(const Context& ctx, Buffer<U>& b, std::int64_t size) {
  if (static_cast<std::int64_t>(b.size()) < size) b = Buffer<U>(ctx, static_cast<std::size_t>(size));
}

void check_prepared(bool prepared, std::string_view fn, std::string_view call) {
  D2R_EXPECTS(prepared, fn, "this", "prepare() must succeed before {}", call);
}

/// A parameter-space vector (v, hv, w, grad): exactly `count` entries in the backend's memory.
template <class T>
MatrixArg check_parameter_vector(const Context& ctx, std::string_view fn, std::string_view name, VectorView<T> v,
                                 std::int64_t count) {
  D2R_EXPECTS(v.size == count, fn, name, "expected {} entries (the network's parameters), got {}", count, v.size);
  const MatrixArg arg(name, v);
  detail::check_matrix(ctx, fn, arg, 1, count);
  return arg;
}

/// pg_row_terms on the context's backend: the surrogate's per-row losses and the cotangents of
/// log p and of the entropy (per row, so the same for every head).
template <class T>
void row_terms(Context& ctx, const PgOptions<T>& options, const ObjectiveScale<T>& s,
               ConstMatrix<T> log_prob, ConstMatrix<T> rewards, ConstMatrix<T> advantages, ConstVector<T> entropy,
               MatrixView<T> d_log_prob, VectorView<T> d_entropy, const ObjectiveRows<T>& rows) {
  detail::run_on<T>(
      ctx,
      [&] {
        reference::objectives::pg_row_terms<T>(options, s, log_prob, rewards, advantages, entropy, d_log_prob,
                                               d_entropy, rows);
      },
      [&](const auto& ex) {
        ex.launch(kernels::objectives::pg_row_terms, options, s, log_prob, rewards, advantages, entropy, d_log_prob,
                  d_entropy, rows);
      });
}

}  // namespace

// ================================================================ head layouts

namespace {

template <class T, class Head>
inline constexpr bool kCategorical = std::is_same_v<Head, Categorical<T>>;

/// n with n + n(n+1)/2 == outputs, or 0 when there is none.
std::int64_t cholesky_dims(std::int64_t outputs) {
  for (std::int64_t n = 1; n + n * (n + 1) / 2 <= outputs; ++n)
    if (n + n * (n + 1) / 2 == outputs) return n;
  return 0;
}

/// The head's dimension for `outputs` network outputs; checks the layout (argument "net").
template <class T, class Head>
std::int64_t head_dims(std::string_view fn, std::int64_t outputs) {
  if constexpr (std::is_same_v<Head, DiagGaussian<T>>) {
    D2R_EXPECTS(outputs % 2 == 0, fn, "net", "expected an even number of outputs 2n read as [mean | log_std], got {}",
                outputs);
    return outputs / 2;
  } else if constexpr (std::is_same_v<Head, CholeskyGaussian<T>>) {
    const std::int64_t n = cholesky_dims(outputs);
    D2R_EXPECTS(n >= 1 && n <= kMaxCholeskyDim, fn, "net",
                "expected n + n(n+1)/2 outputs read as [mean | raw tril] with 1 <= n <= {}, got {} outputs",
                kMaxCholeskyDim, outputs);
    return n;
  } else {
    D2R_EXPECTS(outputs >= 2 && outputs <= kMaxCategoricalClasses, fn, "net",
                "expected 2 <= C <= {} outputs read as the logits of C classes, got {}", kMaxCategoricalClasses,
                outputs);
    return outputs;
  }
}

}  // namespace

template <class T, class Head>
PolicyCurvature<T, Head>::PolicyCurvature(Context& ctx, const Mlp& net, std::int64_t batch)
  requires(!kCholesky)
    : ctx_(ctx), net_(net), batch_(batch), width_(net.spec().outputs) {
  constexpr std::string_view fn = head_traits<Head>::curvature_name;
  detail::check_scalar_type<T>(ctx, fn);
  dims_ = head_dims<T, Head>(fn, width_);
  D2R_EXPECTS(batch >= 1, fn, "batch", "expected B >= 1 rows, got {}", batch);
}

template <class T, class Head>
PolicyCurvature<T, Head>::PolicyCurvature(Context& ctx, const Mlp& net, std::int64_t batch, T jitter)
  requires(kCholesky)
    : ctx_(ctx), net_(net), batch_(batch), width_(net.spec().outputs), jitter_(jitter) {
  constexpr std::string_view fn = head_traits<Head>::curvature_name;
  detail::check_scalar_type<T>(ctx, fn);
  dims_ = head_dims<T, Head>(fn, width_);
  D2R_EXPECTS(batch >= 1, fn, "batch", "expected B >= 1 rows, got {}", batch);
  D2R_EXPECTS(std::isfinite(jitter) && jitter >= T(0), fn, "jitter", "expected a finite jitter >= 0, got {}", jitter);
}

/// The head read from network outputs `out` (B x width_): [mean | log_std], [mean | raw tril]
/// or the logits. The same layout for values, tangents and gradients.
template <class T, class Head>
Head PolicyCurvature<T, Head>::head_of(MatrixView<const T> out) const {
  const std::int64_t B = batch_, n = dims_, w = width_;
  if constexpr (std::is_same_v<Head, DiagGaussian<T>>) {
    return {MatrixView<const T>{out.data, B, n, w}, MatrixView<const T>{out.data + n, B, n, w}};
  } else if constexpr (std::is_same_v<Head, CholeskyGaussian<T>>) {
    return {MatrixView<const T>{out.data, B, n, w}, MatrixView<const T>{out.data + n, B, w - n, w}, jitter_};
  } else {
    return {MatrixView<const T>{out.data, B, w, w}};
  }
}

template <class T, class Head>
typename PolicyCurvature<T, Head>::Grad PolicyCurvature<T, Head>::grad_of(MatrixView<T> out) const {
  const std::int64_t B = batch_, n = dims_, w = width_;
  if constexpr (kCategorical<T, Head>) {
    return {MatrixView<T>{out.data, B, w, w}};
  } else {
    return {MatrixView<T>{out.data, B, n, w}, MatrixView<T>{out.data + n, B, w - n, w}};
  }
}

template <class T, class Head>
MatrixView<const typename PolicyCurvature<T, Head>::Sample> PolicyCurvature<T, Head>::samples() const {
  if constexpr (kCategorical<T, Head>) {
    return {samples_.data(), batch_, generations_, generations_};
  } else {
    return {samples_.data(), batch_ * generations_, dims_, dims_};
  }
}

/// Everything prepare() and prepare_exact() share: params, x, targets (or labels), reward,
/// options and grad (shapes, memory space, values, aliasing), before any state is touched.
template <class T, class Head>
void PolicyCurvature<T, Head>::check_prepare(std::string_view fn, ConstVector<T> params, ConstMatrix<T> x,
                                             Targets targets, const MahalanobisReward<T>& reward,
                                             const PgOptions<T>& options, VectorView<T> grad) {
  const std::int64_t B = batch_, P = net_.parameter_count();
  const MatrixArg params_arg = check_parameter_vector(ctx_, fn, "params", params, P);
  D2R_EXPECTS(x.rows == B && x.cols == net_.inputs(), fn, "x",
              "expected B x inputs = {} x {} (the rows given at construction, the network's inputs), got {} x {}", B,
              net_.inputs(), x.rows, x.cols);
  const MatrixArg x_arg("x", x);
  detail::check_matrix(ctx_, fn, x_arg, B, x.cols);
  std::string_view targets_name = "targets";
  if constexpr (kCategorical<T, Head>) {
    targets_name = "labels";
    D2R_EXPECTS(targets.size == B, fn, "labels", "expected B = {} class indices (one per row of x), got {}", B,
                targets.size);
    detail::check_matrix(ctx_, fn, MatrixArg("labels", targets), 1, B);
    detail::check_indices(ctx_, fn, "labels", MatrixView<const std::int32_t>{targets.data, 1, B, B},
                          static_cast<std::int32_t>(dims_));
    D2R_EXPECTS(reward.form != RewardForm::full || dims_ <= kMaxOneHotFullClasses, fn, "reward.form",
                "a full one-hot reward has C(C+1)/2 parameters; expected C <= {}, got {}", kMaxOneHotFullClasses,
                dims_);
  } else {
    detail::check_matrix(ctx_, fn, MatrixArg("targets", targets), B, dims_);
    detail::check_values<T>(ctx_, fn, "targets", targets, detail::ValueRule::finite);
  }
  detail::check_reward(ctx_, fn, reward, dims_);
  objective_common::check_options(fn, options, B);
  const MatrixArg grad_arg = check_parameter_vector(ctx_, fn, "grad", grad, P);
  for (const MatrixArg& in :
       {params_arg, x_arg, MatrixArg(targets_name, targets), MatrixArg("reward.params", reward.params)})
    detail::check_disjoint(fn, grad_arg, in);
}

// ================================================================ shared by the three heads

template <class T, class Head>
void PolicyCurvature<T, Head>::ensure_buffers(std::int64_t generations) {
  const std::int64_t B = batch_, G = generations;
  for (Buffer<T>* b : {&out_, &tangent_out_, &d_head_, &d_head_tangent_}) grow(ctx_, *b, B * width_);
  grow(ctx_, cache_, net_.cache_elements(B));
  grow(ctx_, tangent_cache_, net_.cache_elements(B));
  grow(ctx_, samples_, kCategorical<T, Head> ? B * G : B * G * dims_);
  for (Buffer<T>* b : {&log_prob_, &rewards_, &advantages_, &d_log_prob_}) grow(ctx_, *b, B * G);
  for (Buffer<T>* b : {&entropy_, &d_entropy_, &row_loss_}) grow(ctx_, *b, B);
}

template <class T, class Head>
void PolicyCurvature<T, Head>::keep(ConstVector<T> params, ConstMatrix<T> x, Targets targets,
                                    const MahalanobisReward<T>& reward, const PgOptions<T>& options, DrawKey key,
                                    std::int64_t generations, bool exact) {
  params_ = params;
  x_ = x;
  targets_ = targets;
  reward_ = reward;
  options_ = options;
  key_ = key;
  generations_ = generations;
  exact_ = exact;
  prepared_ = true;
}

template <class T, class Head>
void PolicyCurvature<T, Head>::prepare(ConstVector<T> params, ConstMatrix<T> x, Targets targets,
                                       const MahalanobisReward<T>& reward, std::int64_t generations,
                                       const PgOptions<T>& options, DrawKey key, VectorView<T> grad) {
  static constexpr std::string_view name = head_traits<Head>::curvature_name;
  const std::string fn = std::string(name) + "::prepare";
  const std::int64_t B = batch_, G = generations;
  // Everything is checked before the kept state or grad is touched.
  check_prepare(fn, params, x, targets, reward, options, grad);
  D2R_EXPECTS(generations >= 1, fn, "generations", "expected generations >= 1, got {}", generations);
  detail::check_transform(fn, options.transform, G);
  detail::check_draw_key(ctx_, fn, key, B);
  D2R_EXPECTS(key.step_offset == nullptr, fn, "key.step_offset",
              "mixed_product() replays this key's draws later, when a counter may have moved; pass a plain step");
  prepared_ = false;  // before the buffers may be reallocated
  ensure_buffers(G);
  // The primitives below check their own arguments again (and the head's values: a network
  // output the head rejects stops here); the only user output, grad, is written last.
  net_.forward(ctx_, params, x, cache_.vector(), out_.matrix(B, width_));
  const Head head = head_of(std::as_const(out_).matrix(B, width_));
  generations_ = G;  // samples() and the cotangent accessors read the kept buffers with this G
  const MatrixView<Sample> drawn{samples_.data(), samples().rows, samples().cols, samples().cols};
  sample(ctx_, head, G, key, drawn);
  log_prob(ctx_, head, samples(), log_prob_.matrix(B, G));
  if constexpr (kCategorical<T, Head>) {
    d2r::reward(ctx_, reward, samples(), targets, dims_, rewards_.matrix(B, G));
  } else {
    d2r::reward(ctx_, reward, samples(), targets, rewards_.matrix(B, G));
  }
  transform_rewards(ctx_, options.transform, rewards_.matrix(B, G), advantages_.matrix(B, G));
  entropy(ctx_, head, entropy_.vector());
  const auto s = objective_common::scale_of(head, options, G);
  row_terms<T>(ctx_, options, s, log_prob_.matrix(B, G), rewards_.matrix(B, G), advantages_.matrix(B, G),
               entropy_.vector(), d_log_prob_.matrix(B, G), d_entropy_.vector(), ObjectiveRows<T>{row_loss_.vector(), {}});
  backward(ctx_, head, samples(), log_prob_cotangent(), entropy_cotangent(), grad_of(d_head_.matrix(B, width_)));
  net_.backward(ctx_, params, x, cache_.vector(), std::as_const(d_head_).matrix(B, width_), grad, {});
  keep(params, x, targets, reward, options, key, G, /*exact=*/false);
}

template <class T, class Head>
void PolicyCurvature<T, Head>::prepare_exact(ConstVector<T> params, ConstMatrix<T> x, Targets targets,
                                             const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                                             VectorView<T> grad) {
  static constexpr std::string_view name = head_traits<Head>::curvature_name;
  const std::string fn = std::string(name) + "::prepare_exact";
  const std::int64_t B = batch_;
  check_prepare(fn, params, x, targets, reward, options, grad);
  prepared_ = false;  // before the buffers may be reallocated
  ensure_buffers(1);
  net_.forward(ctx_, params, x, cache_.vector(), out_.matrix(B, width_));
  exact_objective(ctx_, head_of(std::as_const(out_).matrix(B, width_)), targets, reward, options,
                  ObjectiveRows<T>{row_loss_.vector(), {}}, grad_of(d_head_.matrix(B, width_)));
  net_.backward(ctx_, params, x, cache_.vector(), std::as_const(d_head_).matrix(B, width_), grad, {});
  keep(params, x, targets, reward, options, DrawKey{}, 0, /*exact=*/true);
}

template <class T, class Head>
void PolicyCurvature<T, Head>::apply(ConstVector<T> v, VectorView<T> hv) {
  static constexpr std::string_view name = head_traits<Head>::curvature_name;
  const std::string fn = std::string(name) + "::apply";
  check_prepared(prepared_, fn, "apply()");
  const std::int64_t B = batch_, P = net_.parameter_count();
  const MatrixArg v_arg = check_parameter_vector(ctx_, fn, "v", v, P);
  detail::check_disjoint(fn, check_parameter_vector(ctx_, fn, "hv", hv, P), v_arg);
  ChecksOff checks_off(ctx_);  // inputs were checked by prepare(); an inner solver loop must not synchronise
  const MatrixView<T> tangent_out = tangent_out_.matrix(B, width_);
  net_.forward_tangent(ctx_, params_, v, x_, cache_.vector(), tangent_cache_.vector(), tangent_out);
  const MatrixView<T> d_head_tangent = d_head_tangent_.matrix(B, width_);
  const Head head = head_of(std::as_const(out_).matrix(B, width_));
  const Head head_tangent = head_of(tangent_out);
  if (!exact_) {
    backward_tangent(ctx_, head, samples(), log_prob_cotangent(), entropy_cotangent(), head_tangent,
                     grad_of(d_head_tangent));
  } else if constexpr (kCategorical<T, Head>) {  // the categorical exact curvature depends on the labels
    exact_backward_tangent(ctx_, head, targets_, reward_, options_, head_tangent, grad_of(d_head_tangent));
  } else {
    exact_backward_tangent(ctx_, head, reward_, options_, head_tangent, grad_of(d_head_tangent));
  }
  net_.backward_tangent(ctx_, params_, v, x_, cache_.vector(), tangent_cache_.vector(),
                        std::as_const(d_head_).matrix(B, width_), d_head_tangent, hv);
}

template <class T, class Head>
void PolicyCurvature<T, Head>::mixed_product(ConstVector<T> w, VectorView<T> grad_params) {
  static constexpr std::string_view name = head_traits<Head>::curvature_name;
  const std::string fn = std::string(name) + "::mixed_product";
  check_prepared(prepared_, fn, "mixed_product()");
  const std::int64_t B = batch_;
  check_parameter_vector(ctx_, fn, "w", w, net_.parameter_count());
  // ḣ = J_head w, then the head-level mixed product (the surrogate's regenerates the same
  // samples from the kept key; both check grad_params).
  const MatrixView<T> tangent_out = tangent_out_.matrix(B, width_);
  net_.forward_tangent(ctx_, params_, w, x_, cache_.vector(), tangent_cache_.vector(), tangent_out);
  const Head head = head_of(std::as_const(out_).matrix(B, width_));
  if (exact_) {
    exact_mixed_product(ctx_, head, targets_, reward_, options_, head_of(tangent_out), grad_params);
  } else {
    d2r::mixed_product(ctx_, head, targets_, reward_, generations_, options_, key_, head_of(tangent_out), grad_params);
  }
}

template <class T, class Head>
LinearOperator<T> PolicyCurvature<T, Head>::as_operator() {
  return [this](ConstVector<T> v, VectorView<T> hv) { apply(v, hv); };
}

template <class T, class Head>
MatrixView<const T> PolicyCurvature<T, Head>::advantages() const {
  return {advantages_.data(), batch_, generations_, generations_};
}
template <class T, class Head>
MatrixView<const T> PolicyCurvature<T, Head>::log_prob_cotangent() const {
  return {d_log_prob_.data(), batch_, generations_, generations_};
}
template <class T, class Head>
VectorView<const T> PolicyCurvature<T, Head>::entropy_cotangent() const {
  return {d_entropy_.data(), batch_};
}
template <class T, class Head>
VectorView<const T> PolicyCurvature<T, Head>::row_loss() const {
  return {row_loss_.data(), batch_};
}

template class PolicyCurvature<float, DiagGaussian<float>>;
template class PolicyCurvature<double, DiagGaussian<double>>;
template class PolicyCurvature<float, CholeskyGaussian<float>>;
template class PolicyCurvature<double, CholeskyGaussian<double>>;
template class PolicyCurvature<float, Categorical<float>>;
template class PolicyCurvature<double, Categorical<double>>;

}  // namespace d2r
