// Inner objectives of the Cholesky-Gaussian head on the cuda backend (float) against the CPU
// reference in double (cpu backend, same Philox keys, same float-representable inputs):
// exact_objective and pg_pathwise, for every reward form (scalar, diagonal, full), transforms
// none and rbf, per-row and shared (1-row) tril, per_dimension_mean on and off, normaliser_rows
// 0 and larger than B, row_reward present and empty. Every output goes through a sentinel-guarded
// buffer whose padding must stay untouched; inputs are strided views. Each test skips when no
// CUDA device is usable.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;
using test::TestRng;

std::int64_t packed_size(std::int64_t n) { return n * (n + 1) / 2; }

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

const char* form_name(RewardForm f) {
  switch (f) {
    case RewardForm::scalar: return "scalar";
    case RewardForm::diagonal: return "diagonal";
    case RewardForm::full: return "full";
  }
  return "?";
}

struct Shape {
  std::int64_t batch, n, generations;
};

void PrintTo(const Shape& s, std::ostream* os) { *os << fmt::format("B={} n={} G={}", s.batch, s.n, s.generations); }

std::string shape_name(const ::testing::TestParamInfo<Shape>& info) {
  return fmt::format("B{}_n{}_G{}", info.param.batch, info.param.n, info.param.generations);
}

/// One problem's inputs as float values (used as given on the device, widened to double on the host).
struct Inputs {
  std::vector<float> mean, targets, tril, params;

  Inputs(std::int64_t B, std::int64_t n, bool shared, RewardForm form, std::uint64_t seed) {
    TestRng rng(seed);
    const std::int64_t P = packed_size(n), tril_rows = shared ? 1 : B;
    mean = rng.vector<float>(static_cast<std::size_t>(B * n), -1.0, 1.0);
    targets = rng.vector<float>(static_cast<std::size_t>(B * n), -1.0, 1.0);
    // Well conditioned for every n: L_ii = softplus(raw) in [0.47, 1.3], |L_ij| <= 0.5/sqrt(n).
    const double off = 0.5 / std::sqrt(static_cast<double>(n));
    tril.resize(static_cast<std::size_t>(tril_rows * P));
    for (std::int64_t r = 0; r < tril_rows; ++r)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j <= i; ++j)
          tril[r * P + i * (i + 1) / 2 + j] =
              static_cast<float>(i == j ? rng.uniform(-0.5, 1.0) : rng.uniform(-off, off));
    params.resize(static_cast<std::size_t>(reward_param_count(form, n)));
    if (form == RewardForm::full) {
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j <= i; ++j)
          params[i * (i + 1) / 2 + j] = static_cast<float>(i == j ? rng.uniform(0.5, 1.5) : rng.uniform(-off, off));
    } else {
      for (auto& u : params) u = static_cast<float>(rng.uniform(0.2, 2.0));
    }
  }
};

/// One configuration of an objective call.
struct Config {
  RewardForm form;
  bool shared;
  Transform transform;
  bool per_dimension_mean;
  std::int64_t normaliser_rows;
  bool with_reward;

  [[nodiscard]] std::string describe() const {
    return fmt::format("form={} tril={} transform={} per_dimension_mean={} normaliser_rows={} row_reward={}",
                       form_name(form), shared ? "shared" : "per-row", to_string(transform), per_dimension_mean,
                       normaliser_rows, with_reward ? "yes" : "empty");
  }
};

enum class Objective { exact, pathwise };

class CholeskyObjectiveGpu : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    D2R_REQUIRE_GPU();
    gpu_ = std::make_unique<Context>(ContextOptions{.backend = Backend::cuda, .seed = kSeed});
    cpu_ = std::make_unique<Context>(ContextOptions{.backend = Backend::cpu, .seed = kSeed});
  }

  /// Runs `objective` on both backends for one configuration and compares every output.
  /// Returns the device's outputs (row_loss, row_reward, grad.mean, grad.tril), for the
  /// determinism check.
  std::vector<std::vector<float>> run_and_compare(Objective objective, const Shape& s, const Config& c,
                                                  std::uint64_t seed) {
    SCOPED_TRACE(c.describe());
    Context& gpu = *gpu_;
    Context& cpu = *cpu_;
    const std::int64_t B = s.batch, n = s.n, G = s.generations, P = packed_size(n), tril_rows = c.shared ? 1 : B;
    const std::int64_t R = reward_param_count(c.form, n);
    const Inputs in(B, n, c.shared, c.form, seed);
    const float lambda = 0.7f, gamma = static_cast<float>(0.3 / static_cast<double>(n));
    const DrawKey key{.step = 17, .first_row = 9};

    // Device inputs: strided views (GuardedMatrix rows have a gap).
    GuardedMatrix<float> mean_g(gpu, B, n), targets_g(gpu, B, n), tril_g(gpu, tril_rows, P), params_g(gpu, 1, R);
    mean_g.fill(in.mean);
    targets_g.fill(in.targets);
    tril_g.fill(in.tril);
    params_g.fill(in.params);
    const CholeskyGaussian<float> head_g{mean_g.cview(), tril_g.cview(), 1e-4f};
    const MahalanobisReward<float> reward_g{c.form, {params_g.cview().data, R}};
    PgOptions<float> opt_g{.entropy_weight = lambda,
                           .transform = {.kind = c.transform, .rbf_gamma = gamma},
                           .per_dimension_mean = c.per_dimension_mean,
                           .normaliser_rows = c.normaliser_rows};

    // Host double inputs with the same values.
    const std::vector<double> mean_d = to_double(in.mean), targets_d = to_double(in.targets),
                              tril_d = to_double(in.tril), params_d = to_double(in.params);
    const CholeskyGaussian<double> head_d{matrix_view(mean_d.data(), B, n), matrix_view(tril_d.data(), tril_rows, P),
                                          static_cast<double>(1e-4f)};
    const MahalanobisReward<double> reward_d{c.form, {params_d.data(), R}};
    const PgOptions<double> opt_d{.entropy_weight = static_cast<double>(lambda),
                                  .transform = {.kind = c.transform, .rbf_gamma = static_cast<double>(gamma)},
                                  .per_dimension_mean = c.per_dimension_mean,
                                  .normaliser_rows = c.normaliser_rows};

    GuardedMatrix<float> loss_g(gpu, 1, B), reward_out_g(gpu, 1, B), gm_g(gpu, B, n), gt_g(gpu, tril_rows, P);
    const ObjectiveRows<float> rows_g{loss_g.vector(), c.with_reward ? reward_out_g.vector() : VectorView<float>{}};
    std::vector<double> loss_d(static_cast<std::size_t>(B)), reward_out_d(static_cast<std::size_t>(B)),
        gm_d(static_cast<std::size_t>(B * n)), gt_d(static_cast<std::size_t>(tril_rows * P));
    const ObjectiveRows<double> rows_d{vector_view(loss_d.data(), B),
                                       c.with_reward ? vector_view(reward_out_d.data(), B) : VectorView<double>{}};
    const CholeskyGaussianGrad<double> grad_d{matrix_view(gm_d.data(), B, n), matrix_view(gt_d.data(), tril_rows, P)};

    if (objective == Objective::exact) {
      exact_objective(gpu, head_g, targets_g.cview(), reward_g, opt_g, rows_g, {gm_g.view(), gt_g.view()});
      exact_objective(cpu, head_d, matrix_view<const double>(targets_d.data(), B, n), reward_d, opt_d, rows_d, grad_d);
    } else {
      pg_pathwise(gpu, head_g, targets_g.cview(), reward_g, G, opt_g, key, rows_g, {gm_g.view(), gt_g.view()});
      pg_pathwise(cpu, head_d, matrix_view<const double>(targets_d.data(), B, n), reward_d, G, opt_d, key, rows_d,
                  grad_d);
    }

    // Tolerances: entries are sums (over n, G, and B for a shared tril) whose terms may cancel,
    // so the absolute part is scaled by the output's largest magnitude.
    std::vector<std::vector<float>> out;
    out.push_back(loss_g.values_checked());
    {
      SCOPED_TRACE("row_loss");
      EXPECT_GT(max_abs(loss_d), 0.0);
      D2R_EXPECT_CLOSE(out.back(), loss_d, 1e-4, 1e-5 * max_abs(loss_d));
    }
    if (c.with_reward) {
      out.push_back(reward_out_g.values_checked());
      SCOPED_TRACE("row_reward");
      D2R_EXPECT_CLOSE(out.back(), reward_out_d, 1e-4, 1e-5 * max_abs(reward_out_d));
    } else {
      EXPECT_TRUE(reward_out_g.untouched()) << "row_reward was empty but its buffer was written";
      out.emplace_back();
    }
    out.push_back(gm_g.values_checked());
    {
      SCOPED_TRACE("grad.mean");
      EXPECT_GT(max_abs(gm_d), 0.0);
      D2R_EXPECT_CLOSE(out.back(), gm_d, 1e-3, 1e-4 * max_abs(gm_d));
    }
    out.push_back(gt_g.values_checked());
    {
      SCOPED_TRACE("grad.tril");
      EXPECT_GT(max_abs(gt_d), 0.0);
      D2R_EXPECT_CLOSE(out.back(), gt_d, 1e-3, 1e-4 * max_abs(gt_d));
    }
    return out;
  }

  static constexpr std::uint64_t kSeed = 0xC40;
  std::unique_ptr<Context> gpu_, cpu_;
};

std::vector<Shape> shapes(bool with_generations) {
  std::vector<Shape> out;
  for (const std::int64_t B : {1, 3, 257})
    for (const std::int64_t n : {1, 2, 3, 17, 64}) {
      if (!with_generations) {
        out.push_back({B, n, 1});
        continue;
      }
      for (const std::int64_t G : {1, 5, 40}) out.push_back({B, n, G});
    }
  return out;
}

constexpr RewardForm kForms[] = {RewardForm::scalar, RewardForm::diagonal, RewardForm::full};

// ---------------------------------------------------------------- exact_objective
class CholeskyExactGpu : public CholeskyObjectiveGpu {};

TEST_P(CholeskyExactGpu, MatchesDoubleReference) {
  const Shape s = GetParam();
  std::uint64_t seed = 100 + static_cast<std::uint64_t>(s.batch * 131 + s.n * 7);
  int variant = 0;
  for (const RewardForm form : kForms)
    for (const bool shared : {false, true})
      for (const bool pdm : {false, true}) {
        // normaliser_rows and the presence of row_reward alternate over the configurations.
        const Config c{form, shared, Transform::none, pdm, variant % 2 == 0 ? 0 : s.batch + 5, variant % 3 != 2};
        run_and_compare(Objective::exact, s, c, seed++);
        ++variant;
      }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CholeskyExactGpu, ::testing::ValuesIn(shapes(false)), shape_name);

// ---------------------------------------------------------------- pg_pathwise
class CholeskyPathwiseGpu : public CholeskyObjectiveGpu {};

TEST_P(CholeskyPathwiseGpu, MatchesDoubleReference) {
  const Shape s = GetParam();
  std::uint64_t seed = 200 + static_cast<std::uint64_t>(s.batch * 131 + s.n * 7 + s.generations);
  int variant = 0;
  for (const RewardForm form : kForms)
    for (const bool shared : {false, true})
      for (const Transform transform : {Transform::none, Transform::rbf})
        for (const bool pdm : {false, true}) {
          const Config c{form, shared, transform, pdm, variant % 2 == 0 ? s.batch + 5 : 0, variant % 3 != 1};
          run_and_compare(Objective::pathwise, s, c, seed++);
          ++variant;
        }
}

/// Two runs of the same call give the same bits (no atomics, fixed summation order).
TEST_P(CholeskyPathwiseGpu, Deterministic) {
  const Shape s = GetParam();
  if (s.batch == 1 && s.n < 17) GTEST_SKIP() << "covered by the larger shapes";
  for (const RewardForm form : {RewardForm::diagonal, RewardForm::full}) {
    const Config c{form, true, Transform::rbf, false, 0, true};
    const auto first = run_and_compare(Objective::pathwise, s, c, 7);
    const auto second = run_and_compare(Objective::pathwise, s, c, 7);
    for (std::size_t i = 0; i < first.size(); ++i) EXPECT_EQ(first[i], second[i]) << "output " << i;
    const auto exact1 = run_and_compare(Objective::exact, s, c, 8);
    const auto exact2 = run_and_compare(Objective::exact, s, c, 8);
    for (std::size_t i = 0; i < exact1.size(); ++i) EXPECT_EQ(exact1[i], exact2[i]) << "exact output " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CholeskyPathwiseGpu, ::testing::ValuesIn(shapes(true)), shape_name);

/// A shard (first_row = r0, normaliser_rows = B) gives the rows and the per-row gradients of the
/// whole batch: the draws continue the whole batch's stream.
TEST(CholeskyObjectiveGpuShards, PathwiseShardMatchesWholeBatch) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda, .seed = 33});
  const std::int64_t B = 9, n = 5, G = 7, P = packed_size(n), r0 = 3, r1 = 7;
  const Inputs in(B, n, false, RewardForm::full, 4);
  GuardedMatrix<float> mean_g(gpu, B, n), targets_g(gpu, B, n), tril_g(gpu, B, P), params_g(gpu, 1, packed_size(n));
  mean_g.fill(in.mean);
  targets_g.fill(in.targets);
  tril_g.fill(in.tril);
  params_g.fill(in.params);
  const CholeskyGaussian<float> head{mean_g.cview(), tril_g.cview(), 1e-4f};
  const MahalanobisReward<float> reward{RewardForm::full, {params_g.cview().data, packed_size(n)}};
  const PgOptions<float> opt{.entropy_weight = 0.5f, .normaliser_rows = B};
  GuardedMatrix<float> loss(gpu, 1, B), gm(gpu, B, n), gt(gpu, B, P);
  pg_pathwise(gpu, head, targets_g.cview(), reward, G, opt, {.step = 4}, {loss.vector(), {}}, {gm.view(), gt.view()});
  const std::int64_t m = r1 - r0;
  const CholeskyGaussian<float> shard{head.mean.row_range(r0, m), head.tril.row_range(r0, m), head.jitter};
  GuardedMatrix<float> loss_s(gpu, 1, m), gm_s(gpu, m, n), gt_s(gpu, m, P);
  pg_pathwise(gpu, shard, targets_g.cview().row_range(r0, m), reward, G, opt, {.step = 4, .first_row = r0},
              {loss_s.vector(), {}}, {gm_s.view(), gt_s.view()});
  const std::vector<float> l = loss.values_checked(), a = gm.values_checked(), t = gt.values_checked();
  EXPECT_EQ(loss_s.values_checked(), std::vector<float>(l.begin() + r0, l.begin() + r1));
  EXPECT_EQ(gm_s.values_checked(), std::vector<float>(a.begin() + r0 * n, a.begin() + r1 * n));
  EXPECT_EQ(gt_s.values_checked(), std::vector<float>(t.begin() + r0 * P, t.begin() + r1 * P));
}

}  // namespace
}  // namespace d2r
