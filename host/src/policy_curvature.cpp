// Hessian-vector products of the REINFORCE surrogate (or of the exact-expectation objective)
// through an MLP + diagonal-Gaussian, Cholesky-Gaussian or categorical policy, composed of the
// primitives: forward → head scoring (prepare), then per HVP forward_tangent → head
// backward_tangent (or exact_backward_tangent) → network backward_tangent.
#include "d2r/policy_curvature.hpp"

#include <cmath>
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <utility>

#include "host/reference/objectives_ref.hpp"
#include "d2r/second_order.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/launch.hpp"

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
void row_terms(Context& ctx, const PgOptions<T>& options, const reference::ObjectiveScale<T>& s,
               ConstMatrix<T> log_prob, ConstMatrix<T> rewards, ConstMatrix<T> advantages, ConstVector<T> entropy,
               MatrixView<T> d_log_prob, VectorView<T> d_entropy, const ObjectiveRows<T>& rows) {
  if (ctx.backend() == Backend::cpu) {
    reference::pg_row_terms<T>(options, s, log_prob, rewards, advantages, entropy, d_log_prob, d_entropy, rows);
  } else if constexpr (std::is_same_v<T, float>) {
    kernels::pg_row_terms(ctx.stream(), options, objective_common::to_kernel(s), log_prob, rewards, advantages, entropy,
                          d_log_prob, d_entropy, rows);
  }
}

}  // namespace

// ================================================================ diagonal Gaussian

template <class T>
DiagGaussianPolicyCurvature<T>::DiagGaussianPolicyCurvature(Context& ctx, const Mlp& net, std::int64_t batch)
    : ctx_(ctx), net_(net), batch_(batch), n_(net.spec().outputs / 2) {
  constexpr std::string_view fn = "DiagGaussianPolicyCurvature";
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(net.spec().outputs % 2 == 0, fn, "net",
              "expected an even number of outputs 2n read as [mean | log_std], got {}", net.spec().outputs);
  D2R_EXPECTS(batch >= 1, fn, "batch", "expected B >= 1 rows, got {}", batch);
}

template <class T>
void DiagGaussianPolicyCurvature<T>::ensure_buffers(std::int64_t generations) {
  const std::int64_t B = batch_, G = generations, w = 2 * n_;
  for (Buffer<T>* b : {&out_, &tangent_out_, &d_head_, &d_head_tangent_}) grow(ctx_, *b, B * w);
  grow(ctx_, cache_, net_.cache_elements(B));
  grow(ctx_, tangent_cache_, net_.cache_elements(B));
  grow(ctx_, samples_, B * G * n_);
  for (Buffer<T>* b : {&log_prob_, &rewards_, &advantages_, &d_log_prob_}) grow(ctx_, *b, B * G);
  for (Buffer<T>* b : {&entropy_, &d_entropy_, &row_loss_}) grow(ctx_, *b, B);
}

template <class T>
DiagGaussian<T> DiagGaussianPolicyCurvature<T>::head_of(MatrixView<const T> out) const {
  // [mean | log_std] side by side in each row of the network output.
  return {MatrixView<const T>{out.data, batch_, n_, 2 * n_}, MatrixView<const T>{out.data + n_, batch_, n_, 2 * n_}};
}

template <class T>
void DiagGaussianPolicyCurvature<T>::prepare(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> targets,
                                             const MahalanobisReward<T>& reward, std::int64_t generations,
                                             const PgOptions<T>& options, DrawKey key, VectorView<T> grad) {
  constexpr std::string_view fn = "DiagGaussianPolicyCurvature::prepare";
  const std::int64_t B = batch_, G = generations;
  D2R_EXPECTS(generations >= 1, fn, "generations", "expected generations >= 1, got {}", generations);
  D2R_EXPECTS(x.rows == B, fn, "x", "expected the {} rows given at construction, got {}", B, x.rows);
  D2R_EXPECTS(grad.size == net_.parameter_count(), fn, "grad", "expected {} entries (the network's parameters), got {}",
              net_.parameter_count(), grad.size);
  objective_common::check_options(fn, options, B);
  detail::check_transform(fn, options.transform, G);
  detail::check_draw_key(ctx_, fn, key, B);
  D2R_EXPECTS(key.step_offset == nullptr, fn, "key.step_offset",
              "mixed_product() replays this key's draws later, when a counter may have moved; pass a plain step");
  prepared_ = false;  // before the buffers may be reallocated
  ensure_buffers(G);
  // Every primitive below validates its own arguments; the only user output, grad, is written last.
  net_.forward(ctx_, params, x, cache_.vector(), out_.matrix(B, 2 * n_));
  const DiagGaussian<T> head = head_of(std::as_const(out_).matrix(B, 2 * n_));
  const MatrixView<T> samples = samples_.matrix(B * G, n_);
  sample(ctx_, head, G, key, samples);
  log_prob(ctx_, head, samples, log_prob_.matrix(B, G));
  d2r::reward(ctx_, reward, samples, targets, rewards_.matrix(B, G));
  transform_rewards(ctx_, options.transform, rewards_.matrix(B, G), advantages_.matrix(B, G));
  entropy(ctx_, head, entropy_.vector());
  const auto s = objective_common::scale_of(head, options, G);
  const ObjectiveRows<T> rows{row_loss_.vector(), {}};
  row_terms<T>(ctx_, options, s, log_prob_.matrix(B, G), rewards_.matrix(B, G), advantages_.matrix(B, G),
               entropy_.vector(), d_log_prob_.matrix(B, G), d_entropy_.vector(), rows);
  const MatrixView<T> d_head = d_head_.matrix(B, 2 * n_);
  backward(ctx_, head, samples, d_log_prob_.matrix(B, G), entropy_cotangent(),
           DiagGaussianGrad<T>{MatrixView<T>{d_head.data, B, n_, 2 * n_}, MatrixView<T>{d_head.data + n_, B, n_, 2 * n_}});
  net_.backward(ctx_, params, x, cache_.vector(), d_head, grad, {});
  params_ = params;
  x_ = x;
  targets_ = targets;
  reward_ = reward;
  options_ = options;
  key_ = key;
  generations_ = G;
  exact_ = false;
  prepared_ = true;
}

template <class T>
void DiagGaussianPolicyCurvature<T>::prepare_exact(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> targets,
                                                   const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                                                   VectorView<T> grad) {
  constexpr std::string_view fn = "DiagGaussianPolicyCurvature::prepare_exact";
  const std::int64_t B = batch_;
  D2R_EXPECTS(x.rows == B, fn, "x", "expected the {} rows given at construction, got {}", B, x.rows);
  D2R_EXPECTS(grad.size == net_.parameter_count(), fn, "grad", "expected {} entries (the network's parameters), got {}",
              net_.parameter_count(), grad.size);
  objective_common::check_options(fn, options, B);
  prepared_ = false;  // before the buffers may be reallocated
  ensure_buffers(1);
  net_.forward(ctx_, params, x, cache_.vector(), out_.matrix(B, 2 * n_));
  const DiagGaussian<T> head = head_of(std::as_const(out_).matrix(B, 2 * n_));
  const MatrixView<T> d_head = d_head_.matrix(B, 2 * n_);
  exact_objective(ctx_, head, targets, reward, options, ObjectiveRows<T>{row_loss_.vector(), {}},
                  DiagGaussianGrad<T>{MatrixView<T>{d_head.data, B, n_, 2 * n_},
                                      MatrixView<T>{d_head.data + n_, B, n_, 2 * n_}});
  net_.backward(ctx_, params, x, cache_.vector(), d_head, grad, {});
  params_ = params;
  x_ = x;
  targets_ = targets;
  reward_ = reward;
  options_ = options;
  key_ = {};
  generations_ = 0;
  exact_ = true;
  prepared_ = true;
}

template <class T>
void DiagGaussianPolicyCurvature<T>::apply(ConstVector<T> v, VectorView<T> hv) {
  constexpr std::string_view fn = "DiagGaussianPolicyCurvature::apply";
  check_prepared(prepared_, fn, "apply()");
  const std::int64_t B = batch_;
  ChecksOff checks_off(ctx_);  // inputs were checked by prepare(); an inner solver loop must not synchronise
  const MatrixView<T> tangent_out = tangent_out_.matrix(B, 2 * n_);
  net_.forward_tangent(ctx_, params_, v, x_, cache_.vector(), tangent_cache_.vector(), tangent_out);
  const MatrixView<T> d_head_tangent = d_head_tangent_.matrix(B, 2 * n_);
  const DiagGaussianGrad<T> head_tangent{MatrixView<T>{d_head_tangent.data, B, n_, 2 * n_},
                                         MatrixView<T>{d_head_tangent.data + n_, B, n_, 2 * n_}};
  if (exact_) {
    exact_backward_tangent(ctx_, head_of(std::as_const(out_).matrix(B, 2 * n_)), reward_, options_,
                           head_of(tangent_out), head_tangent);
  } else {
    backward_tangent(ctx_, head_of(std::as_const(out_).matrix(B, 2 * n_)), samples(), log_prob_cotangent(),
                     entropy_cotangent(), head_of(tangent_out), head_tangent);
  }
  net_.backward_tangent(ctx_, params_, v, x_, cache_.vector(), tangent_cache_.vector(),
                        std::as_const(d_head_).matrix(B, 2 * n_), d_head_tangent, hv);
}

template <class T>
void DiagGaussianPolicyCurvature<T>::mixed_product(ConstVector<T> w, VectorView<T> grad_params) {
  constexpr std::string_view fn = "DiagGaussianPolicyCurvature::mixed_product";
  check_prepared(prepared_, fn, "mixed_product()");
  const std::int64_t B = batch_;
  // ḣ = J_head w, then the head-level mixed product (which regenerates the same samples).
  const MatrixView<T> tangent_out = tangent_out_.matrix(B, 2 * n_);
  net_.forward_tangent(ctx_, params_, w, x_, cache_.vector(), tangent_cache_.vector(), tangent_out);
  if (exact_) {
    exact_mixed_product(ctx_, head_of(std::as_const(out_).matrix(B, 2 * n_)), targets_, reward_, options_,
                        head_of(tangent_out), grad_params);
  } else {
    d2r::mixed_product(ctx_, head_of(std::as_const(out_).matrix(B, 2 * n_)), targets_, reward_, generations_,
                       options_, key_, head_of(tangent_out), grad_params);
  }
}

template <class T>
LinearOperator<T> DiagGaussianPolicyCurvature<T>::as_operator() {
  return [this](ConstVector<T> v, VectorView<T> hv) { apply(v, hv); };
}

template <class T>
MatrixView<const T> DiagGaussianPolicyCurvature<T>::samples() const {
  return {samples_.data(), batch_ * generations_, n_, n_};
}
template <class T>
MatrixView<const T> DiagGaussianPolicyCurvature<T>::advantages() const {
  return {advantages_.data(), batch_, generations_, generations_};
}
template <class T>
MatrixView<const T> DiagGaussianPolicyCurvature<T>::log_prob_cotangent() const {
  return {d_log_prob_.data(), batch_, generations_, generations_};
}
template <class T>
VectorView<const T> DiagGaussianPolicyCurvature<T>::entropy_cotangent() const {
  return {d_entropy_.data(), batch_};
}
template <class T>
VectorView<const T> DiagGaussianPolicyCurvature<T>::row_loss() const {
  return {row_loss_.data(), batch_};
}

template class DiagGaussianPolicyCurvature<float>;
template class DiagGaussianPolicyCurvature<double>;

// ================================================================ Cholesky Gaussian

namespace {
/// n with n + n(n+1)/2 == outputs, or 0 when there is none.
std::int64_t cholesky_dims(std::int64_t outputs) {
  for (std::int64_t n = 1; n + n * (n + 1) / 2 <= outputs; ++n)
    if (n + n * (n + 1) / 2 == outputs) return n;
  return 0;
}
}  // namespace

template <class T>
CholeskyPolicyCurvature<T>::CholeskyPolicyCurvature(Context& ctx, const Mlp& net, std::int64_t batch, T jitter)
    : ctx_(ctx), net_(net), batch_(batch), n_(cholesky_dims(net.spec().outputs)), packed_(n_ * (n_ + 1) / 2),
      width_(net.spec().outputs), jitter_(jitter) {
  constexpr std::string_view fn = "CholeskyPolicyCurvature";
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(n_ >= 1 && n_ <= kMaxCholeskyDim, fn, "net",
              "expected n + n(n+1)/2 outputs read as [mean | raw tril] with 1 <= n <= {}, got {} outputs",
              kMaxCholeskyDim, net.spec().outputs);
  D2R_EXPECTS(batch >= 1, fn, "batch", "expected B >= 1 rows, got {}", batch);
  D2R_EXPECTS(std::isfinite(jitter) && jitter >= T(0), fn, "jitter", "expected a finite jitter >= 0, got {}", jitter);
}

template <class T>
void CholeskyPolicyCurvature<T>::ensure_buffers(std::int64_t generations) {
  const std::int64_t B = batch_, G = generations;
  for (Buffer<T>* b : {&out_, &tangent_out_, &d_head_, &d_head_tangent_}) grow(ctx_, *b, B * width_);
  grow(ctx_, cache_, net_.cache_elements(B));
  grow(ctx_, tangent_cache_, net_.cache_elements(B));
  grow(ctx_, samples_, B * G * n_);
  for (Buffer<T>* b : {&log_prob_, &rewards_, &advantages_, &d_log_prob_}) grow(ctx_, *b, B * G);
  for (Buffer<T>* b : {&entropy_, &d_entropy_, &row_loss_}) grow(ctx_, *b, B);
}

template <class T>
CholeskyGaussian<T> CholeskyPolicyCurvature<T>::head_of(MatrixView<const T> out) const {
  // [mean | raw tril] side by side in each row of the network output.
  return {MatrixView<const T>{out.data, batch_, n_, width_}, MatrixView<const T>{out.data + n_, batch_, packed_, width_},
          jitter_};
}

template <class T>
CholeskyGaussianGrad<T> CholeskyPolicyCurvature<T>::grad_of(MatrixView<T> out) const {
  return {MatrixView<T>{out.data, batch_, n_, width_}, MatrixView<T>{out.data + n_, batch_, packed_, width_}};
}

/// Everything prepare() and prepare_exact() share: params, x, targets, reward, options and grad
/// (shapes, memory space, the reward's values, aliasing), before any state is touched.
template <class T>
void CholeskyPolicyCurvature<T>::check_prepare(std::string_view fn, ConstVector<T> params, ConstMatrix<T> x,
                                               ConstMatrix<T> targets, const MahalanobisReward<T>& reward,
                                               const PgOptions<T>& options, VectorView<T> grad) {
  const std::int64_t B = batch_, P = net_.parameter_count();
  const MatrixArg params_arg = check_parameter_vector(ctx_, fn, "params", params, P);
  D2R_EXPECTS(x.rows == B && x.cols == net_.inputs(), fn, "x",
              "expected B x inputs = {} x {} (the rows given at construction, the network's inputs), got {} x {}", B,
              net_.inputs(), x.rows, x.cols);
  const MatrixArg x_arg("x", x);
  detail::check_matrix(ctx_, fn, x_arg, B, x.cols);
  const MatrixArg targets_arg("targets", targets);
  detail::check_matrix(ctx_, fn, targets_arg, B, n_);
  detail::check_values<T>(ctx_, fn, "targets", targets, detail::ValueRule::finite);
  detail::check_reward(ctx_, fn, reward, n_);
  objective_common::check_options(fn, options, B);
  const MatrixArg grad_arg = check_parameter_vector(ctx_, fn, "grad", grad, P);
  for (const MatrixArg& in : {params_arg, x_arg, targets_arg, MatrixArg("reward.params", reward.params)})
    detail::check_disjoint(fn, grad_arg, in);
}

template <class T>
void CholeskyPolicyCurvature<T>::prepare(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> targets,
                                         const MahalanobisReward<T>& reward, std::int64_t generations,
                                         const PgOptions<T>& options, DrawKey key, VectorView<T> grad) {
  constexpr std::string_view fn = "CholeskyPolicyCurvature::prepare";
  const std::int64_t B = batch_, G = generations;
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
  const CholeskyGaussian<T> head = head_of(std::as_const(out_).matrix(B, width_));
  const MatrixView<T> samples = samples_.matrix(B * G, n_);
  sample(ctx_, head, G, key, samples);
  log_prob(ctx_, head, samples, log_prob_.matrix(B, G));
  d2r::reward(ctx_, reward, samples, targets, rewards_.matrix(B, G));
  transform_rewards(ctx_, options.transform, rewards_.matrix(B, G), advantages_.matrix(B, G));
  entropy(ctx_, head, entropy_.vector());
  const auto s = objective_common::scale_of(head, options, G);
  row_terms<T>(ctx_, options, s, log_prob_.matrix(B, G), rewards_.matrix(B, G), advantages_.matrix(B, G),
               entropy_.vector(), d_log_prob_.matrix(B, G), d_entropy_.vector(), ObjectiveRows<T>{row_loss_.vector(), {}});
  generations_ = G;  // the accessors below read the kept cotangents with this G
  backward(ctx_, head, samples, log_prob_cotangent(), entropy_cotangent(), grad_of(d_head_.matrix(B, width_)));
  net_.backward(ctx_, params, x, cache_.vector(), std::as_const(d_head_).matrix(B, width_), grad, {});
  params_ = params;
  x_ = x;
  targets_ = targets;
  reward_ = reward;
  options_ = options;
  key_ = key;
  exact_ = false;
  prepared_ = true;
}

template <class T>
void CholeskyPolicyCurvature<T>::prepare_exact(ConstVector<T> params, ConstMatrix<T> x, ConstMatrix<T> targets,
                                               const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                                               VectorView<T> grad) {
  constexpr std::string_view fn = "CholeskyPolicyCurvature::prepare_exact";
  const std::int64_t B = batch_;
  check_prepare(fn, params, x, targets, reward, options, grad);
  prepared_ = false;  // before the buffers may be reallocated
  ensure_buffers(1);
  net_.forward(ctx_, params, x, cache_.vector(), out_.matrix(B, width_));
  exact_objective(ctx_, head_of(std::as_const(out_).matrix(B, width_)), targets, reward, options,
                  ObjectiveRows<T>{row_loss_.vector(), {}}, grad_of(d_head_.matrix(B, width_)));
  net_.backward(ctx_, params, x, cache_.vector(), std::as_const(d_head_).matrix(B, width_), grad, {});
  params_ = params;
  x_ = x;
  targets_ = targets;
  reward_ = reward;
  options_ = options;
  key_ = {};
  generations_ = 0;
  exact_ = true;
  prepared_ = true;
}

template <class T>
void CholeskyPolicyCurvature<T>::apply(ConstVector<T> v, VectorView<T> hv) {
  constexpr std::string_view fn = "CholeskyPolicyCurvature::apply";
  check_prepared(prepared_, fn, "apply()");
  const std::int64_t B = batch_, P = net_.parameter_count();
  const MatrixArg v_arg = check_parameter_vector(ctx_, fn, "v", v, P);
  detail::check_disjoint(fn, check_parameter_vector(ctx_, fn, "hv", hv, P), v_arg);
  ChecksOff checks_off(ctx_);  // inputs were checked by prepare(); an inner solver loop must not synchronise
  const MatrixView<T> tangent_out = tangent_out_.matrix(B, width_);
  net_.forward_tangent(ctx_, params_, v, x_, cache_.vector(), tangent_cache_.vector(), tangent_out);
  const MatrixView<T> d_head_tangent = d_head_tangent_.matrix(B, width_);
  const CholeskyGaussian<T> head = head_of(std::as_const(out_).matrix(B, width_));
  if (exact_) {
    exact_backward_tangent(ctx_, head, reward_, options_, head_of(tangent_out), grad_of(d_head_tangent));
  } else {
    backward_tangent(ctx_, head, samples(), log_prob_cotangent(), entropy_cotangent(), head_of(tangent_out),
                     grad_of(d_head_tangent));
  }
  net_.backward_tangent(ctx_, params_, v, x_, cache_.vector(), tangent_cache_.vector(),
                        std::as_const(d_head_).matrix(B, width_), d_head_tangent, hv);
}

template <class T>
void CholeskyPolicyCurvature<T>::mixed_product(ConstVector<T> w, VectorView<T> grad_params) {
  constexpr std::string_view fn = "CholeskyPolicyCurvature::mixed_product";
  check_prepared(prepared_, fn, "mixed_product()");
  const std::int64_t B = batch_;
  check_parameter_vector(ctx_, fn, "w", w, net_.parameter_count());
  // ḣ = J_head w, then the head-level mixed product (the surrogate's regenerates the same
  // samples; both check grad_params).
  const MatrixView<T> tangent_out = tangent_out_.matrix(B, width_);
  net_.forward_tangent(ctx_, params_, w, x_, cache_.vector(), tangent_cache_.vector(), tangent_out);
  const CholeskyGaussian<T> head = head_of(std::as_const(out_).matrix(B, width_));
  if (exact_) {
    exact_mixed_product(ctx_, head, targets_, reward_, options_, head_of(tangent_out), grad_params);
  } else {
    d2r::mixed_product(ctx_, head, targets_, reward_, generations_, options_, key_, head_of(tangent_out), grad_params);
  }
}

template <class T>
LinearOperator<T> CholeskyPolicyCurvature<T>::as_operator() {
  return [this](ConstVector<T> v, VectorView<T> hv) { apply(v, hv); };
}

template <class T>
MatrixView<const T> CholeskyPolicyCurvature<T>::samples() const {
  return {samples_.data(), batch_ * generations_, n_, n_};
}
template <class T>
MatrixView<const T> CholeskyPolicyCurvature<T>::advantages() const {
  return {advantages_.data(), batch_, generations_, generations_};
}
template <class T>
MatrixView<const T> CholeskyPolicyCurvature<T>::log_prob_cotangent() const {
  return {d_log_prob_.data(), batch_, generations_, generations_};
}
template <class T>
VectorView<const T> CholeskyPolicyCurvature<T>::entropy_cotangent() const {
  return {d_entropy_.data(), batch_};
}
template <class T>
VectorView<const T> CholeskyPolicyCurvature<T>::row_loss() const {
  return {row_loss_.data(), batch_};
}

template class CholeskyPolicyCurvature<float>;
template class CholeskyPolicyCurvature<double>;

// ================================================================ categorical

template <class T>
CategoricalPolicyCurvature<T>::CategoricalPolicyCurvature(Context& ctx, const Mlp& net, std::int64_t batch)
    : ctx_(ctx), net_(net), batch_(batch), classes_(net.spec().outputs) {
  constexpr std::string_view fn = "CategoricalPolicyCurvature";
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(classes_ >= 2 && classes_ <= kMaxCategoricalClasses, fn, "net",
              "expected 2 <= C <= {} outputs read as the logits of C classes, got {}", kMaxCategoricalClasses,
              classes_);
  D2R_EXPECTS(batch >= 1, fn, "batch", "expected B >= 1 rows, got {}", batch);
}

template <class T>
void CategoricalPolicyCurvature<T>::ensure_buffers(std::int64_t generations) {
  const std::int64_t B = batch_, G = generations, C = classes_;
  for (Buffer<T>* b : {&out_, &tangent_out_, &d_head_, &d_head_tangent_}) grow(ctx_, *b, B * C);
  grow(ctx_, cache_, net_.cache_elements(B));
  grow(ctx_, tangent_cache_, net_.cache_elements(B));
  grow(ctx_, samples_, B * G);
  for (Buffer<T>* b : {&log_prob_, &rewards_, &advantages_, &d_log_prob_}) grow(ctx_, *b, B * G);
  for (Buffer<T>* b : {&entropy_, &d_entropy_, &row_loss_}) grow(ctx_, *b, B);
}

template <class T>
Categorical<T> CategoricalPolicyCurvature<T>::head_of(MatrixView<const T> out) const {
  return {MatrixView<const T>{out.data, batch_, classes_, classes_}};
}

/// Everything prepare() and prepare_exact() share: params, x, labels, reward, options and grad
/// (shapes, memory space, label range, the reward's values, aliasing), before any state is touched.
template <class T>
void CategoricalPolicyCurvature<T>::check_prepare(std::string_view fn, ConstVector<T> params, ConstMatrix<T> x,
                                                  VectorView<const std::int32_t> labels,
                                                  const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                                                  VectorView<T> grad) {
  const std::int64_t B = batch_, C = classes_, P = net_.parameter_count();
  const MatrixArg params_arg = check_parameter_vector(ctx_, fn, "params", params, P);
  D2R_EXPECTS(x.rows == B && x.cols == net_.inputs(), fn, "x",
              "expected B x inputs = {} x {} (the rows given at construction, the network's inputs), got {} x {}", B,
              net_.inputs(), x.rows, x.cols);
  const MatrixArg x_arg("x", x);
  detail::check_matrix(ctx_, fn, x_arg, B, x.cols);
  D2R_EXPECTS(labels.size == B, fn, "labels", "expected B = {} class indices (one per row of x), got {}", B,
              labels.size);
  const MatrixArg labels_arg("labels", labels);
  detail::check_matrix(ctx_, fn, labels_arg, 1, B);
  detail::check_indices(ctx_, fn, "labels", MatrixView<const std::int32_t>{labels.data, 1, B, B},
                        static_cast<std::int32_t>(C));
  D2R_EXPECTS(reward.form != RewardForm::full || C <= kMaxOneHotFullClasses, fn, "reward.form",
              "a full one-hot reward has C(C+1)/2 parameters; expected C <= {}, got {}", kMaxOneHotFullClasses, C);
  detail::check_reward(ctx_, fn, reward, C);
  objective_common::check_options(fn, options, B);
  const MatrixArg grad_arg = check_parameter_vector(ctx_, fn, "grad", grad, P);
  for (const MatrixArg& in : {params_arg, x_arg, labels_arg, MatrixArg("reward.params", reward.params)})
    detail::check_disjoint(fn, grad_arg, in);
}

template <class T>
void CategoricalPolicyCurvature<T>::prepare(ConstVector<T> params, ConstMatrix<T> x,
                                            VectorView<const std::int32_t> labels, const MahalanobisReward<T>& reward,
                                            std::int64_t generations, const PgOptions<T>& options, DrawKey key,
                                            VectorView<T> grad) {
  constexpr std::string_view fn = "CategoricalPolicyCurvature::prepare";
  const std::int64_t B = batch_, C = classes_, G = generations;
  // Everything is checked before the kept state or grad is touched.
  check_prepare(fn, params, x, labels, reward, options, grad);
  D2R_EXPECTS(generations >= 1, fn, "generations", "expected generations >= 1, got {}", generations);
  detail::check_transform(fn, options.transform, G);
  detail::check_draw_key(ctx_, fn, key, B);
  D2R_EXPECTS(key.step_offset == nullptr, fn, "key.step_offset",
              "mixed_product() replays this key's draws later, when a counter may have moved; pass a plain step");

  prepared_ = false;  // before the buffers may be reallocated
  ensure_buffers(G);
  // The primitives below check their own arguments again (and the logits' values: a network
  // output that is not finite stops here); the only user output, grad, is written last.
  net_.forward(ctx_, params, x, cache_.vector(), out_.matrix(B, C));
  const Categorical<T> head = head_of(std::as_const(out_).matrix(B, C));
  sample(ctx_, head, G, key, samples_.matrix(B, G));
  const MatrixView<const std::int32_t> samples = std::as_const(samples_).matrix(B, G);
  log_prob(ctx_, head, samples, log_prob_.matrix(B, G));
  d2r::reward(ctx_, reward, samples, labels, C, rewards_.matrix(B, G));
  transform_rewards(ctx_, options.transform, rewards_.matrix(B, G), advantages_.matrix(B, G));
  entropy(ctx_, head, entropy_.vector());
  const auto s = objective_common::scale_of(head, options, G);
  row_terms<T>(ctx_, options, s, log_prob_.matrix(B, G), rewards_.matrix(B, G), advantages_.matrix(B, G),
               entropy_.vector(), d_log_prob_.matrix(B, G), d_entropy_.vector(), ObjectiveRows<T>{row_loss_.vector(), {}});
  backward(ctx_, head, samples, d_log_prob_.matrix(B, G), entropy_cotangent(), CategoricalGrad<T>{d_head_.matrix(B, C)});
  net_.backward(ctx_, params, x, cache_.vector(), std::as_const(d_head_).matrix(B, C), grad, {});
  params_ = params;
  x_ = x;
  labels_ = labels;
  reward_ = reward;
  options_ = options;
  key_ = key;
  generations_ = G;
  exact_ = false;
  prepared_ = true;
}

template <class T>
void CategoricalPolicyCurvature<T>::prepare_exact(ConstVector<T> params, ConstMatrix<T> x,
                                                  VectorView<const std::int32_t> labels,
                                                  const MahalanobisReward<T>& reward, const PgOptions<T>& options,
                                                  VectorView<T> grad) {
  constexpr std::string_view fn = "CategoricalPolicyCurvature::prepare_exact";
  const std::int64_t B = batch_, C = classes_;
  check_prepare(fn, params, x, labels, reward, options, grad);
  prepared_ = false;  // before the buffers may be reallocated
  ensure_buffers(1);
  net_.forward(ctx_, params, x, cache_.vector(), out_.matrix(B, C));
  exact_objective(ctx_, head_of(std::as_const(out_).matrix(B, C)), labels, reward, options,
                  ObjectiveRows<T>{row_loss_.vector(), {}}, CategoricalGrad<T>{d_head_.matrix(B, C)});
  net_.backward(ctx_, params, x, cache_.vector(), std::as_const(d_head_).matrix(B, C), grad, {});
  params_ = params;
  x_ = x;
  labels_ = labels;
  reward_ = reward;
  options_ = options;
  key_ = {};
  generations_ = 0;
  exact_ = true;
  prepared_ = true;
}

template <class T>
void CategoricalPolicyCurvature<T>::apply(ConstVector<T> v, VectorView<T> hv) {
  constexpr std::string_view fn = "CategoricalPolicyCurvature::apply";
  check_prepared(prepared_, fn, "apply()");
  const std::int64_t B = batch_, C = classes_, P = net_.parameter_count();
  const MatrixArg v_arg = check_parameter_vector(ctx_, fn, "v", v, P);
  detail::check_disjoint(fn, check_parameter_vector(ctx_, fn, "hv", hv, P), v_arg);
  ChecksOff checks_off(ctx_);  // inputs were checked by prepare(); an inner solver loop must not synchronise
  const MatrixView<T> tangent_out = tangent_out_.matrix(B, C);
  net_.forward_tangent(ctx_, params_, v, x_, cache_.vector(), tangent_cache_.vector(), tangent_out);
  const MatrixView<T> d_head_tangent = d_head_tangent_.matrix(B, C);
  if (exact_) {
    exact_backward_tangent(ctx_, head_of(std::as_const(out_).matrix(B, C)), labels_, reward_, options_,
                           head_of(tangent_out), CategoricalGrad<T>{d_head_tangent});
  } else {
    backward_tangent(ctx_, head_of(std::as_const(out_).matrix(B, C)), samples(), log_prob_cotangent(),
                     entropy_cotangent(), head_of(tangent_out), CategoricalGrad<T>{d_head_tangent});
  }
  net_.backward_tangent(ctx_, params_, v, x_, cache_.vector(), tangent_cache_.vector(),
                        std::as_const(d_head_).matrix(B, C), d_head_tangent, hv);
}

template <class T>
void CategoricalPolicyCurvature<T>::mixed_product(ConstVector<T> w, VectorView<T> grad_params) {
  constexpr std::string_view fn = "CategoricalPolicyCurvature::mixed_product";
  check_prepared(prepared_, fn, "mixed_product()");
  const std::int64_t B = batch_, C = classes_;
  check_parameter_vector(ctx_, fn, "w", w, net_.parameter_count());
  // ḣ = J_logits w, then the head-level mixed product (which regenerates the same samples and
  // checks grad_params).
  const MatrixView<T> tangent_out = tangent_out_.matrix(B, C);
  net_.forward_tangent(ctx_, params_, w, x_, cache_.vector(), tangent_cache_.vector(), tangent_out);
  if (exact_) {
    exact_mixed_product(ctx_, head_of(std::as_const(out_).matrix(B, C)), labels_, reward_, options_,
                        head_of(tangent_out), grad_params);
  } else {
    d2r::mixed_product(ctx_, head_of(std::as_const(out_).matrix(B, C)), labels_, reward_, generations_, options_, key_,
                       head_of(tangent_out), grad_params);
  }
}

template <class T>
LinearOperator<T> CategoricalPolicyCurvature<T>::as_operator() {
  return [this](ConstVector<T> v, VectorView<T> hv) { apply(v, hv); };
}

template <class T>
MatrixView<const std::int32_t> CategoricalPolicyCurvature<T>::samples() const {
  return {samples_.data(), batch_, generations_, generations_};
}
template <class T>
MatrixView<const T> CategoricalPolicyCurvature<T>::advantages() const {
  return {advantages_.data(), batch_, generations_, generations_};
}
template <class T>
MatrixView<const T> CategoricalPolicyCurvature<T>::log_prob_cotangent() const {
  return {d_log_prob_.data(), batch_, generations_, generations_};
}
template <class T>
VectorView<const T> CategoricalPolicyCurvature<T>::entropy_cotangent() const {
  return {d_entropy_.data(), batch_};
}
template <class T>
VectorView<const T> CategoricalPolicyCurvature<T>::row_loss() const {
  return {row_loss_.data(), batch_};
}

template class CategoricalPolicyCurvature<float>;
template class CategoricalPolicyCurvature<double>;

}  // namespace d2r
