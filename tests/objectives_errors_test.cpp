// Bad input to the reward, transform and objective entry points: a d2r::Error naming the
// argument, raised before any output is written.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::RewardForm;
using d2r::Transform;
using d2r::test::GuardedMatrix;

using d2r::test::expect_error;

class ObjectiveErrors : public ::testing::Test {
 protected:
  static constexpr std::int64_t B = 2, n = 3, G = 4, C = 4;
  d2r::Context ctx{{.backend = d2r::Backend::cpu}};
  std::vector<float> mean = std::vector<float>(B * n, 0.1f), log_std = std::vector<float>(B * n, -0.2f);
  std::vector<float> y = std::vector<float>(B * n, 0.3f), u{0.5f}, u_full = std::vector<float>(6, 0.1f);
  std::vector<float> logits = std::vector<float>(B * C, 0.0f), samples = std::vector<float>(B * G * n, 0.0f);
  std::vector<std::int32_t> labels{0, 3};
  GuardedMatrix<float> loss{ctx, 1, B}, g_mean{ctx, B, n}, g_ls{ctx, B, n}, g_logits{ctx, B, C}, out{ctx, B, G};

  d2r::DiagGaussian<float> head() const { return {d2r::matrix_view(mean.data(), B, n), d2r::matrix_view(log_std.data(), B, n)}; }
  d2r::MahalanobisReward<float> scalar() const { return {RewardForm::scalar, d2r::vector_view(u.data(), 1)}; }
  d2r::ConstMatrix<float> targets() const { return d2r::matrix_view(y.data(), B, n); }
  d2r::ObjectiveRows<float> rows() { return {loss.vector(), {}}; }
  d2r::DiagGaussianGrad<float> grad() { return {g_mean.view(), g_ls.view()}; }
  void surrogate(const d2r::PgOptions<float>& o, std::int64_t generations = G) {
    d2r::pg_surrogate(ctx, head(), targets(), scalar(), generations, o, {}, rows(), grad());
  }
  void expect_untouched() {
    EXPECT_TRUE(loss.untouched());
    EXPECT_TRUE(g_mean.untouched());
    EXPECT_TRUE(g_ls.untouched());
    EXPECT_TRUE(g_logits.untouched());
    EXPECT_TRUE(out.untouched());
  }
};

TEST_F(ObjectiveErrors, Options) {
  expect_error([&] { surrogate({.entropy_weight = -1.0f}); }, "options.entropy_weight", "λ >= 0");
  expect_error([&] { surrogate({.log_prob_clip = -0.5f}); }, "options.log_prob_clip", "c >= 0");
  expect_error([&] { surrogate({.normaliser_rows = 1}); }, "options.normaliser_rows", "rows >= 2");
  expect_error([&] { surrogate({.transform = {.kind = Transform::leave_one_out}}, 1); }, "generations",
               "needs G >= 2, got G = 1");
  expect_error([&] { surrogate({.transform = {.kind = Transform::standardize, .standardize_epsilon = 0.0f}}); },
               "transform.standardize_epsilon", "> 0");
  expect_error([&] { surrogate({}, 0); }, "generations", "generations >= 1");
  expect_error([&] {
    d2r::pg_pathwise(ctx, head(), targets(), scalar(), G, d2r::PgOptions<float>{.transform = {.kind = Transform::leave_one_out}},
                     {}, rows(), grad());
  }, "options.transform", "none or rbf");
  expect_error([&] {
    d2r::pg_pathwise(ctx, head(), targets(), scalar(), G, d2r::PgOptions<float>{.log_prob_clip = 1.0f}, {}, rows(), grad());
  }, "options.log_prob_clip", "no log-probability to clip");
  expect_untouched();
}

TEST_F(ObjectiveErrors, RewardParameters) {
  u[0] = 0.0f;
  expect_error([&] { surrogate({}); }, "reward.params", "expected > 0 so that U is positive definite");
  u[0] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] { surrogate({}); }, "reward.params", "expected finite");
  u[0] = 0.5f;
  u_full[2] = -1.0f;  // R_11 of a 3x3 factor
  expect_error([&] {
    d2r::pg_surrogate(ctx, head(), targets(), d2r::MahalanobisReward<float>{RewardForm::full, d2r::vector_view(u_full.data(), 6)}, G,
                      d2r::PgOptions<float>{}, {}, rows(), grad());
  }, "reward.params", "diagonal entry R_11");
  expect_error([&] {
    d2r::pg_surrogate(ctx, head(), targets(), d2r::MahalanobisReward<float>{RewardForm::diagonal, d2r::vector_view(u_full.data(), 2)}, G,
                      d2r::PgOptions<float>{}, {}, rows(), grad());
  }, "reward.params", "expected a 1 x 3 matrix");
  expect_untouched();
}

TEST_F(ObjectiveErrors, TargetsLabelsAndOutputs) {
  y[4] = std::numeric_limits<float>::infinity();
  expect_error([&] { surrogate({}); }, "targets", "element (1, 1) is inf");
  y[4] = 0.0f;
  expect_error([&] {
    d2r::exact_objective(ctx, head(), d2r::matrix_view(y.data(), B, n - 1), scalar(), d2r::PgOptions<float>{}, rows(), grad());
  }, "targets", "expected a 2 x 3 matrix");
  labels[1] = C;
  expect_error([&] {
    d2r::exact_objective(ctx, d2r::Categorical<float>{d2r::matrix_view(logits.data(), B, C)}, d2r::vector_view(labels.data(), B),
                         scalar(), d2r::PgOptions<float>{}, rows(), d2r::CategoricalGrad<float>{g_logits.view()});
  }, "labels", "expected a class index in [0, 4)");
  labels[1] = 1;
  expect_error([&] {
    d2r::pg_surrogate(ctx, head(), targets(), scalar(), G, d2r::PgOptions<float>{}, {}, {g_mean.vector(), {}}, grad());
  }, "rows.row_loss", "expected a 1 x 2 matrix");
  expect_error([&] {
    d2r::pg_surrogate(ctx, head(), targets(), scalar(), G, d2r::PgOptions<float>{}, {}, rows(),
                      d2r::DiagGaussianGrad<float>{g_mean.view(), d2r::MatrixView<float>{g_mean.view().data, B, n, n + 3}});
  }, "grad.mean", "overlaps argument 'grad.log_std'");
  expect_error([&] {
    d2r::pg_surrogate(ctx, head(), targets(), scalar(), G, d2r::PgOptions<float>{}, {},
                      {d2r::VectorView<float>{mean.data(), B}, {}}, grad());
  }, "rows.row_loss", "overlaps argument 'head.mean'");
  expect_untouched();
}

TEST_F(ObjectiveErrors, RewardAndTransformEntryPoints) {
  expect_error([&] { d2r::reward(ctx, scalar(), d2r::matrix_view(samples.data(), B * G - 1, n), targets(), out.view()); }, "samples",
               "expected a 8 x 3");
  expect_error([&] {
    d2r::transform_rewards(ctx, d2r::TransformOptions<float>{.kind = Transform::standardize}, d2r::matrix_view(samples.data(), B, 1),
                           out.view().row_range(0, B));
  }, "generations", "needs G >= 2");
  std::vector<std::int32_t> k(B * G, 0);
  expect_error([&] {
    d2r::reward(ctx, d2r::MahalanobisReward<float>{RewardForm::full, d2r::vector_view(u_full.data(), 6)},
                d2r::matrix_view(k.data(), B, G), d2r::vector_view(labels.data(), B), 300, out.view());
  }, "reward.form", "classes <= 256");
  expect_error([&] {
    d2r::reward(ctx, scalar(), d2r::matrix_view(k.data(), B, G), d2r::vector_view(labels.data(), B), 1, out.view());
  }, "classes", "2 <= classes");
  expect_untouched();
}

}  // namespace
