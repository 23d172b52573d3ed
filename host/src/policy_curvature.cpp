// Hessian-vector products of the REINFORCE surrogate through an MLP + diagonal-Gaussian policy,
// composed of the primitives: forward → head scoring (prepare), then per HVP
// forward_tangent → head backward_tangent → network backward_tangent.
#include "d2r/policy_curvature.hpp"

#include <type_traits>

#include "host/reference/objectives_ref.hpp"
#include "d2r/second_order.hpp"
#include "host/src/objective_common.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/launch.hpp"

namespace d2r {

using objective_common::ChecksOff;

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
  const auto grow = [&](Buffer<T>& b, std::int64_t size) {
    if (static_cast<std::int64_t>(b.size()) < size) b = Buffer<T>(ctx_, static_cast<std::size_t>(size));
  };
  const std::int64_t B = batch_, G = generations, w = 2 * n_;
  for (Buffer<T>* b : {&out_, &tangent_out_, &d_head_, &d_head_tangent_}) grow(*b, B * w);
  grow(cache_, net_.cache_elements(B));
  grow(tangent_cache_, net_.cache_elements(B));
  grow(samples_, B * G * n_);
  for (Buffer<T>* b : {&log_prob_, &rewards_, &advantages_, &d_log_prob_}) grow(*b, B * G);
  for (Buffer<T>* b : {&entropy_, &d_entropy_, &row_loss_}) grow(*b, B);
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
  ensure_buffers(G);
  prepared_ = false;
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
  if (ctx_.backend() == Backend::cpu) {
    reference::pg_row_terms<T>(options, s, log_prob_.matrix(B, G), rewards_.matrix(B, G), advantages_.matrix(B, G),
                               entropy_.vector(), d_log_prob_.matrix(B, G), d_entropy_.vector(), rows);
  } else if constexpr (std::is_same_v<T, float>) {
    kernels::pg_row_terms(ctx_.stream(), options, objective_common::to_kernel(s), log_prob_.matrix(B, G),
                          rewards_.matrix(B, G), advantages_.matrix(B, G), entropy_.vector(), d_log_prob_.matrix(B, G),
                          d_entropy_.vector(), rows);
  }
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
  prepared_ = true;
}

template <class T>
void DiagGaussianPolicyCurvature<T>::apply(ConstVector<T> v, VectorView<T> hv) {
  constexpr std::string_view fn = "DiagGaussianPolicyCurvature::apply";
  D2R_EXPECTS(prepared_, fn, "this", "prepare() must succeed before apply()");
  const std::int64_t B = batch_;
  ChecksOff checks_off(ctx_);  // inputs were checked by prepare(); an inner solver loop must not synchronise
  const MatrixView<T> tangent_out = tangent_out_.matrix(B, 2 * n_);
  net_.forward_tangent(ctx_, params_, v, x_, cache_.vector(), tangent_cache_.vector(), tangent_out);
  const MatrixView<T> d_head_tangent = d_head_tangent_.matrix(B, 2 * n_);
  backward_tangent(ctx_, head_of(std::as_const(out_).matrix(B, 2 * n_)), samples(), log_prob_cotangent(),
                   entropy_cotangent(), head_of(tangent_out),
                   DiagGaussianGrad<T>{MatrixView<T>{d_head_tangent.data, B, n_, 2 * n_},
                                       MatrixView<T>{d_head_tangent.data + n_, B, n_, 2 * n_}});
  net_.backward_tangent(ctx_, params_, v, x_, cache_.vector(), tangent_cache_.vector(),
                        std::as_const(d_head_).matrix(B, 2 * n_), d_head_tangent, hv);
}

template <class T>
void DiagGaussianPolicyCurvature<T>::mixed_product(ConstVector<T> w, VectorView<T> grad_params) {
  constexpr std::string_view fn = "DiagGaussianPolicyCurvature::mixed_product";
  D2R_EXPECTS(prepared_, fn, "this", "prepare() must succeed before mixed_product()");
  const std::int64_t B = batch_;
  // ḣ = J_head w, then the head-level mixed product (which regenerates the same samples).
  const MatrixView<T> tangent_out = tangent_out_.matrix(B, 2 * n_);
  net_.forward_tangent(ctx_, params_, w, x_, cache_.vector(), tangent_cache_.vector(), tangent_out);
  d2r::mixed_product(ctx_, head_of(std::as_const(out_).matrix(B, 2 * n_)), targets_, reward_, generations_, options_,
                     key_, head_of(tangent_out), grad_params);
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

}  // namespace d2r
