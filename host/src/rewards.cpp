// Public entry points of the reward family and the group transforms.
#include <vector>

#include "d2r/objectives.hpp"
#include "host/reference/rewards.hpp"
#include "host/src/reward_checks.hpp"
#include "host/src/validate.hpp"
#include "kernels/rewards/launch.hpp"

namespace d2r {

std::int64_t reward_param_count(RewardForm form, std::int64_t dim) {
  switch (form) {
    case RewardForm::scalar: return 1;
    case RewardForm::diagonal: return dim;
    case RewardForm::full: return dim * (dim + 1) / 2;
  }
  return 0;
}

const char* to_string(Transform transform) noexcept {
  switch (transform) {
    case Transform::none: return "none";
    case Transform::normalize: return "normalize";
    case Transform::rbf: return "rbf";
    case Transform::leave_one_out: return "leave_one_out";
    case Transform::standardize: return "standardize";
  }
  return "unknown";
}

const char* to_string(RewardForm form) noexcept {
  switch (form) {
    case RewardForm::scalar: return "scalar";
    case RewardForm::diagonal: return "diagonal";
    case RewardForm::full: return "full";
  }
  return "unknown";
}

namespace detail {

template <class T>
void check_reward(Context& ctx, std::string_view fn, const MahalanobisReward<T>& reward, std::int64_t dim) {
  const std::int64_t count = reward_param_count(reward.form, dim);
  D2R_EXPECTS(count > 0, fn, "reward.form", "unknown reward form");
  check_matrix(ctx, fn, MatrixArg("reward.params", reward.params), 1, count);
  if (ctx.value_checks() == ValueChecks::none) return;
  std::vector<T> p(static_cast<std::size_t>(count));
  ctx.to_host(p.data(), reward.params.data, p.size() * sizeof(T));
  for (std::int64_t i = 0; i < count; ++i) {
    D2R_EXPECTS(std::isfinite(p[i]), fn, "reward.params", "entry {} is {}; expected finite values", i, p[i]);
  }
  const char* what = reward.form == RewardForm::full ? "diagonal entry R_{}{} of the Cholesky factor" : "entry {}{}";
  for (std::int64_t i = 0; i < (reward.form == RewardForm::scalar ? 1 : dim); ++i) {
    const std::int64_t at = reward.form == RewardForm::full ? reference::rewards::tril_index(i, i) : i;
    D2R_EXPECTS(p[at] > T(0), fn, "reward.params", "{} is {}; expected > 0 so that U is positive definite",
                fmt::format(fmt::runtime(what), i, reward.form == RewardForm::full ? std::to_string(i) : ""), p[at]);
  }
}

template <class T>
void check_transform(std::string_view fn, const TransformOptions<T>& options, std::int64_t generations) {
  const bool needs_two = options.kind == Transform::leave_one_out || options.kind == Transform::standardize;
  D2R_EXPECTS(!needs_two || generations >= 2, fn, "generations",
              "the {} transform compares each reward with the other G-1 of its row, so it needs G >= 2, got G = {}",
              to_string(options.kind), generations);
  D2R_EXPECTS(std::isfinite(options.rbf_gamma), fn, "transform.rbf_gamma", "expected a finite value, got {}",
              options.rbf_gamma);
  D2R_EXPECTS(options.standardize_epsilon > T(0) && std::isfinite(options.standardize_epsilon), fn,
              "transform.standardize_epsilon", "expected a finite value > 0, got {}", options.standardize_epsilon);
}

template void check_reward<float>(Context&, std::string_view, const MahalanobisReward<float>&, std::int64_t);
template void check_reward<double>(Context&, std::string_view, const MahalanobisReward<double>&, std::int64_t);
template void check_transform<float>(std::string_view, const TransformOptions<float>&, std::int64_t);
template void check_transform<double>(std::string_view, const TransformOptions<double>&, std::int64_t);

}  // namespace detail

namespace {
using detail::MatrixArg;

template <class T>
void check_continuous(Context& ctx, std::string_view fn, const MahalanobisReward<T>& reward, MatrixView<const T> samples,
                      MatrixView<const T> targets, std::int64_t generations_from, MatrixView<const T>* d_reward) {
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(targets.rows >= 1 && targets.cols >= 1, fn, "targets", "expected B >= 1 rows and n >= 1 columns, got {} x {}",
              targets.rows, targets.cols);
  detail::check_matrix(ctx, fn, MatrixArg("targets", targets), targets.rows, targets.cols);
  detail::check_matrix(ctx, fn, MatrixArg("samples", samples), targets.rows * generations_from, targets.cols);
  detail::check_reward(ctx, fn, reward, targets.cols);
  detail::check_values<T>(ctx, fn, "targets", targets, detail::ValueRule::finite);
  detail::check_values<T>(ctx, fn, "samples", samples, detail::ValueRule::finite);
  if (d_reward != nullptr) detail::check_values<T>(ctx, fn, "d_reward", *d_reward, detail::ValueRule::finite);
}

template <class T>
void check_one_hot(Context& ctx, std::string_view fn, const MahalanobisReward<T>& reward,
                   MatrixView<const std::int32_t> samples, VectorView<const std::int32_t> labels, std::int64_t classes) {
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(classes >= 2 && classes <= kMaxCategoricalClasses, fn, "classes", "expected 2 <= classes <= {}, got {}",
              kMaxCategoricalClasses, classes);
  D2R_EXPECTS(reward.form != RewardForm::full || classes <= kMaxOneHotFullClasses, fn, "reward.form",
              "a full one-hot reward has classes(classes+1)/2 parameters; expected classes <= {}, got {}",
              kMaxOneHotFullClasses, classes);
  D2R_EXPECTS(labels.size >= 1, fn, "labels", "expected B >= 1 labels, got {}", labels.size);
  detail::check_matrix(ctx, fn, MatrixArg("labels", labels), 1, labels.size);
  D2R_EXPECTS(samples.cols >= 1, fn, "samples", "expected B x G with G >= 1, got {} x {}", samples.rows, samples.cols);
  detail::check_matrix(ctx, fn, MatrixArg("samples", samples), labels.size, samples.cols);
  detail::check_reward(ctx, fn, reward, classes);
  detail::check_indices(ctx, fn, "labels", MatrixView<const std::int32_t>{labels.data, 1, labels.size, labels.size},
                        static_cast<std::int32_t>(classes));
  detail::check_indices(ctx, fn, "samples", samples, static_cast<std::int32_t>(classes));
}

template <class T>
void check_output_disjoint(std::string_view fn, const MatrixArg& out, std::initializer_list<MatrixArg> inputs) {
  for (const MatrixArg& in : inputs) detail::check_disjoint(fn, out, in);
}

}  // namespace

template <class T>
void reward(Context& ctx, const MahalanobisReward<T>& reward, ConstMatrix<T> samples, ConstMatrix<T> targets,
            MatrixView<T> out) {
  constexpr std::string_view fn = "reward";
  D2R_EXPECTS(out.cols >= 1, fn, "out", "expected B x G with G >= 1, got {} x {}", out.rows, out.cols);
  check_continuous<T>(ctx, fn, reward, samples, targets, out.cols, nullptr);
  const MatrixArg o("out", out);
  detail::check_matrix(ctx, fn, o, targets.rows, out.cols);
  check_output_disjoint<T>(fn, o, {MatrixArg("samples", samples), MatrixArg("targets", targets),
                                   MatrixArg("reward.params", reward.params)});
  detail::run_on<T>(
      ctx, [&] { reference::rewards::reward_continuous(reward, samples, targets, out); },
      [&](const auto& ex) { ex.launch(kernels::rewards::reward_continuous, reward, samples, targets, out); });
}

template <class T>
void reward(Context& ctx, const MahalanobisReward<T>& reward, MatrixView<const std::int32_t> samples,
            VectorView<const std::int32_t> labels, std::int64_t classes, MatrixView<T> out) {
  constexpr std::string_view fn = "reward";
  check_one_hot<T>(ctx, fn, reward, samples, labels, classes);
  const MatrixArg o("out", out);
  detail::check_matrix(ctx, fn, o, labels.size, samples.cols);
  check_output_disjoint<T>(fn, o, {MatrixArg("samples", samples), MatrixArg("labels", labels),
                                   MatrixArg("reward.params", reward.params)});
  detail::run_on<T>(
      ctx, [&] { reference::rewards::reward_one_hot(reward, samples, labels, classes, out); },
      [&](const auto& ex) { ex.launch(kernels::rewards::reward_one_hot, reward, samples, labels, classes, out); });
}

template <class T>
void reward_backward(Context& ctx, const MahalanobisReward<T>& reward, ConstMatrix<T> samples, ConstMatrix<T> targets,
                     ConstMatrix<T> d_reward, VectorView<T> grad_params) {
  constexpr std::string_view fn = "reward_backward";
  D2R_EXPECTS(d_reward.cols >= 1, fn, "d_reward", "expected B x G with G >= 1, got {} x {}", d_reward.rows, d_reward.cols);
  detail::check_matrix(ctx, fn, MatrixArg("d_reward", d_reward), targets.rows, d_reward.cols);
  check_continuous<T>(ctx, fn, reward, samples, targets, d_reward.cols, &d_reward);
  const MatrixArg o("grad_params", grad_params);
  detail::check_matrix(ctx, fn, o, 1, reward.params.size);
  check_output_disjoint<T>(fn, o, {MatrixArg("samples", samples), MatrixArg("targets", targets),
                                   MatrixArg("d_reward", d_reward), MatrixArg("reward.params", reward.params)});
  detail::run_on<T>(
      ctx, [&] { reference::rewards::reward_backward_continuous(reward, samples, targets, d_reward, grad_params); },
      [&](const auto& ex) {
        void* workspace = ctx.workspace(ex.call(kernels::rewards::reward_backward_continuous_workspace_bytes, reward,
                                                targets.rows, targets.cols, d_reward.cols));
        ex.launch(kernels::rewards::reward_backward_continuous, reward, samples, targets, d_reward, grad_params,
                  workspace);
      });
}

template <class T>
void reward_backward(Context& ctx, const MahalanobisReward<T>& reward, MatrixView<const std::int32_t> samples,
                     VectorView<const std::int32_t> labels, std::int64_t classes, ConstMatrix<T> d_reward,
                     VectorView<T> grad_params) {
  constexpr std::string_view fn = "reward_backward";
  check_one_hot<T>(ctx, fn, reward, samples, labels, classes);
  detail::check_matrix(ctx, fn, MatrixArg("d_reward", d_reward), labels.size, samples.cols);
  detail::check_values<T>(ctx, fn, "d_reward", d_reward, detail::ValueRule::finite);
  const MatrixArg o("grad_params", grad_params);
  detail::check_matrix(ctx, fn, o, 1, reward.params.size);
  check_output_disjoint<T>(fn, o, {MatrixArg("samples", samples), MatrixArg("labels", labels),
                                   MatrixArg("d_reward", d_reward), MatrixArg("reward.params", reward.params)});
  detail::run_on<T>(
      ctx,
      [&] { reference::rewards::reward_backward_one_hot(reward, samples, labels, classes, d_reward, grad_params); },
      [&](const auto& ex) {
        void* workspace = ctx.workspace(
            ex.call(kernels::rewards::reward_backward_one_hot_workspace_bytes, reward, labels.size, classes));
        ex.launch(kernels::rewards::reward_backward_one_hot, reward, samples, labels, classes, d_reward, grad_params,
                  workspace);
      });
}

template <class T>
void transform_rewards(Context& ctx, const TransformOptions<T>& options, ConstMatrix<T> rewards,
                       MatrixView<T> advantages) {
  constexpr std::string_view fn = "transform_rewards";
  detail::check_scalar_type<T>(ctx, fn);
  D2R_EXPECTS(rewards.rows >= 1 && rewards.cols >= 1, fn, "rewards", "expected B x G with B, G >= 1, got {} x {}",
              rewards.rows, rewards.cols);
  detail::check_matrix(ctx, fn, MatrixArg("rewards", rewards), rewards.rows, rewards.cols);
  detail::check_transform(fn, options, rewards.cols);
  detail::check_values<T>(ctx, fn, "rewards", rewards, detail::ValueRule::finite);
  const MatrixArg o("advantages", advantages);
  detail::check_matrix(ctx, fn, o, rewards.rows, rewards.cols);
  // In place (advantages == rewards, same strides) is allowed: each row is read before written.
  if (advantages.data != rewards.data || advantages.row_stride != rewards.row_stride) {
    detail::check_disjoint(fn, o, MatrixArg("rewards", rewards));
  }
  detail::run_on<T>(
      ctx, [&] { reference::rewards::transform_rewards(options, rewards, advantages); },
      [&](const auto& ex) { ex.launch(kernels::rewards::transform_rewards, options, rewards, advantages); });
}

#define D2R_INSTANTIATE(T)                                                                                            \
  template void reward<T>(Context&, const MahalanobisReward<T>&, ConstMatrix<T>, ConstMatrix<T>, MatrixView<T>);      \
  template void reward<T>(Context&, const MahalanobisReward<T>&, MatrixView<const std::int32_t>,                      \
                          VectorView<const std::int32_t>, std::int64_t, MatrixView<T>);                               \
  template void reward_backward<T>(Context&, const MahalanobisReward<T>&, ConstMatrix<T>, ConstMatrix<T>,             \
                                   ConstMatrix<T>, VectorView<T>);                                                    \
  template void reward_backward<T>(Context&, const MahalanobisReward<T>&, MatrixView<const std::int32_t>,             \
                                   VectorView<const std::int32_t>, std::int64_t, ConstMatrix<T>, VectorView<T>);      \
  template void transform_rewards<T>(Context&, const TransformOptions<T>&, ConstMatrix<T>, MatrixView<T>);
D2R_INSTANTIATE(float)
D2R_INSTANTIATE(double)
#undef D2R_INSTANTIATE

}  // namespace d2r
