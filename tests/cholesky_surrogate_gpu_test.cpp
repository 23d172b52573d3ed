// The fused REINFORCE surrogate of the Cholesky-Gaussian head (pg_surrogate on the cuda backend,
// kernels::pg_surrogate_cholesky_gaussian) against
//   (a) the CPU reference in double: pg_surrogate on the cpu backend, i.e. the composition
//       sample → log_prob → reward → transform_rewards → entropy → pg_row_terms → backward, on the
//       same Philox keys and the same float-representable inputs;
//   (b) the GPU composition pg_surrogate_unfused (float, cuda backend).
// Every reward form (scalar, diagonal, full) × every transform (none only for G = 1), clipping off
// and on, per_dimension_mean off and on, per-row and shared (1-row) tril, normaliser_rows 0 and
// larger than B, row_reward present and empty; B ∈ {1, 3, 257}, n ∈ {1, 2, 17, 64},
// G ∈ {1, 5, 40, 100}. The clip c is placed in a gap of the batch's |pd·log p| values (computed in
// double first), so that float rounding cannot move a draw across ±c. Every output goes through a
// sentinel-guarded buffer whose padding must stay untouched; inputs are strided views. Also:
// determinism (same bits twice), a shard equals its rows of the whole batch, and G above the
// fused kernel's cap (the composition). Each test skips when no CUDA device is usable.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <tuple>
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

constexpr RewardForm kForms[] = {RewardForm::scalar, RewardForm::diagonal, RewardForm::full};
constexpr Transform kTransforms[] = {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out,
                                     Transform::standardize};
constexpr DrawKey kKey{.step = 23, .first_row = 11};
constexpr std::uint64_t kSeed = 0x511;

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

/// One configuration of a surrogate call.
struct Config {
  RewardForm form;
  Transform transform;
  bool shared;
  bool per_dimension_mean;
  bool clip;
  std::int64_t normaliser_rows;
  bool with_reward;

  [[nodiscard]] std::string describe() const {
    return fmt::format("form={} transform={} tril={} per_dimension_mean={} clip={} normaliser_rows={} row_reward={}",
                       form_name(form), to_string(transform), shared ? "shared" : "per-row", per_dimension_mean,
                       clip ? "on" : "off", normaliser_rows, with_reward ? "yes" : "empty");
  }
};

/// The configurations run for a shape: the whole product (form × transform × tril × pdm × clip);
/// with `thin`, for the large shapes (where the double reference is slow) every form × transform
/// once, with tril, pdm and clip rotating, so that the suite still covers every combination.
std::vector<Config> configs(const Shape& s, bool thin) {
  const bool large = thin && s.batch * s.generations * s.n * s.n > 1'000'000;
  std::vector<Config> out;
  int variant = 0;
  for (const RewardForm form : kForms)
    for (const Transform transform : kTransforms) {
      if (s.generations == 1 && transform != Transform::none) continue;  // G >= 2 for the others
      for (int bits = 0; bits < 8; ++bits, ++variant) {
        if (large && bits != (variant / 8 + static_cast<int>(form)) % 8) continue;
        out.push_back({form, transform, (bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0,
                       variant % 2 == 0 ? 0 : s.batch + 5, variant % 3 != 2});
      }
    }
  return out;
}

/// A clip c such that no |pd·log p| of the batch lies within a margin of c (float rounding of
/// log p cannot flip a draw's clipping): the first wide enough gap of the sorted values from the
/// 70% quantile upwards, else downwards (down to the gap between 0 and the smallest value), so
/// that some draws clip. Returns 0 when there is no such gap.
double pick_clip(const std::vector<double>& log_prob, double pd) {
  std::vector<double> x{0.0};
  x.reserve(log_prob.size() + 1);
  for (double v : log_prob) x.push_back(std::abs(pd * v));
  std::sort(x.begin(), x.end());
  const std::size_t start = std::max<std::size_t>(1, x.size() * 7 / 10);
  const double margin = 1e-4 + 2e-5 * x[start];
  for (std::size_t i = start; i < x.size(); ++i)
    if (x[i] - x[i - 1] > 2 * margin) return 0.5 * (x[i - 1] + x[i]);
  for (std::size_t i = start - 1; i >= 1; --i)
    if (x[i] - x[i - 1] > 2 * margin) return 0.5 * (x[i - 1] + x[i]);
  return 0;
}

/// Outputs of one call, copied to the host (row_reward empty when not requested).
struct Outputs {
  std::vector<float> loss, reward, grad_mean, grad_tril;
};

class CholeskySurrogateGpu : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    D2R_REQUIRE_GPU();
    gpu_ = std::make_unique<Context>(ContextOptions{.backend = Backend::cuda, .seed = kSeed});
    cpu_ = std::make_unique<Context>(ContextOptions{.backend = Backend::cpu, .seed = kSeed});
  }

  /// The float clip of a configuration, from the double log-probabilities of the batch's draws
  /// (they depend on the inputs, i.e. on form and tril, and on pdm only: cached).
  float clip_of(const Shape& s, const Config& c, const Inputs& in) {
    if (!c.clip) return 0.0f;
    const auto cache_key = std::make_tuple(static_cast<int>(c.form), c.shared, c.per_dimension_mean);
    if (const auto it = clip_cache_.find(cache_key); it != clip_cache_.end()) return it->second;
    const std::int64_t B = s.batch, n = s.n, G = s.generations, P = packed_size(n);
    const std::vector<double> mean_d = to_double(in.mean), tril_d = to_double(in.tril);
    const CholeskyGaussian<double> head{matrix_view(mean_d.data(), B, n),
                                        matrix_view(tril_d.data(), c.shared ? 1 : B, P), static_cast<double>(1e-4f)};
    std::vector<double> samples(static_cast<std::size_t>(B * G * n)), lp(static_cast<std::size_t>(B * G));
    sample(*cpu_, head, G, kKey, matrix_view(samples.data(), B * G, n));
    log_prob(*cpu_, head, matrix_view<const double>(samples.data(), B * G, n), matrix_view(lp.data(), B, G));
    const double pd = c.per_dimension_mean ? 1.0 / static_cast<double>(n) : 1.0;
    const auto clip = static_cast<float>(pick_clip(lp, pd));
    EXPECT_GT(clip, 0.0f) << "no gap for the clip";
    clip_cache_.emplace(cache_key, clip);
    return clip;
  }

  /// Runs the fused surrogate on the device (strided, guarded buffers) and returns its outputs;
  /// with `unfused`, pg_surrogate_unfused instead.
  Outputs run_gpu(const Shape& s, const Config& c, const Inputs& in, float clip, bool unfused = false) {
    Context& gpu = *gpu_;
    const std::int64_t B = s.batch, n = s.n, G = s.generations, P = packed_size(n), tril_rows = c.shared ? 1 : B;
    const std::int64_t R = reward_param_count(c.form, n);
    GuardedMatrix<float> mean_g(gpu, B, n), targets_g(gpu, B, n), tril_g(gpu, tril_rows, P), params_g(gpu, 1, R);
    mean_g.fill(in.mean);
    targets_g.fill(in.targets);
    tril_g.fill(in.tril);
    params_g.fill(in.params);
    const CholeskyGaussian<float> head{mean_g.cview(), tril_g.cview(), 1e-4f};
    const MahalanobisReward<float> reward{c.form, {params_g.cview().data, R}};
    const PgOptions<float> opt{.entropy_weight = 0.7f,
                               .transform = {.kind = c.transform, .rbf_gamma = static_cast<float>(0.3 / n)},
                               .log_prob_clip = clip,
                               .per_dimension_mean = c.per_dimension_mean,
                               .normaliser_rows = c.normaliser_rows};
    GuardedMatrix<float> loss(gpu, 1, B), row_reward(gpu, 1, B), gm(gpu, B, n), gt(gpu, tril_rows, P);
    const ObjectiveRows<float> rows{loss.vector(), c.with_reward ? row_reward.vector() : VectorView<float>{}};
    const CholeskyGaussianGrad<float> grad{gm.view(), gt.view()};
    if (unfused) {
      Buffer<float> samples(gpu, static_cast<std::size_t>(B * G * n)), lp(gpu, static_cast<std::size_t>(B * G)),
          rw(gpu, static_cast<std::size_t>(B * G)), adv(gpu, static_cast<std::size_t>(B * G));
      pg_surrogate_unfused(gpu, head, targets_g.cview(), reward, G, opt, kKey,
                           {samples.matrix(B * G, n), lp.matrix(B, G), rw.matrix(B, G), adv.matrix(B, G)}, rows, grad);
    } else {
      pg_surrogate(gpu, head, targets_g.cview(), reward, G, opt, kKey, rows, grad);
    }
    Outputs out{loss.values_checked(), {}, gm.values_checked(), gt.values_checked()};
    if (c.with_reward) {
      out.reward = row_reward.values_checked();
    } else {
      EXPECT_TRUE(row_reward.untouched()) << "row_reward was empty but its buffer was written";
    }
    return out;
  }

  /// The CPU reference in double (pg_surrogate on the cpu backend) on the same values.
  std::vector<std::vector<double>> run_reference(const Shape& s, const Config& c, const Inputs& in, float clip) {
    const std::int64_t B = s.batch, n = s.n, G = s.generations, P = packed_size(n), tril_rows = c.shared ? 1 : B;
    const std::int64_t R = reward_param_count(c.form, n);
    const std::vector<double> mean_d = to_double(in.mean), targets_d = to_double(in.targets),
                              tril_d = to_double(in.tril), params_d = to_double(in.params);
    const CholeskyGaussian<double> head{matrix_view(mean_d.data(), B, n), matrix_view(tril_d.data(), tril_rows, P),
                                        static_cast<double>(1e-4f)};
    const MahalanobisReward<double> reward{c.form, {params_d.data(), R}};
    const PgOptions<double> opt{
        .entropy_weight = static_cast<double>(0.7f),
        .transform = {.kind = c.transform,
                      .rbf_gamma = static_cast<double>(static_cast<float>(0.3 / n)),
                      .standardize_epsilon = static_cast<double>(1e-6f)},
        .log_prob_clip = static_cast<double>(clip),
        .per_dimension_mean = c.per_dimension_mean,
        .normaliser_rows = c.normaliser_rows};
    std::vector<std::vector<double>> out{std::vector<double>(static_cast<std::size_t>(B)),
                                         std::vector<double>(static_cast<std::size_t>(B)),
                                         std::vector<double>(static_cast<std::size_t>(B * n)),
                                         std::vector<double>(static_cast<std::size_t>(tril_rows * P))};
    pg_surrogate(*cpu_, head, matrix_view<const double>(targets_d.data(), B, n), reward, G, opt, kKey,
                 {vector_view(out[0].data(), B), vector_view(out[1].data(), B)},
                 CholeskyGaussianGrad<double>{matrix_view(out[2].data(), B, n),
                                              matrix_view(out[3].data(), tril_rows, P)});
    return out;
  }

  /// Compares a device result with an expected one (double reference or GPU composition).
  /// Tolerances: entries are sums over n, G (and B for a shared tril) whose terms may cancel
  /// (centred advantages), so the absolute part is scaled by the output's largest magnitude.
  static void expect_close(const Config& c, const Outputs& got, const std::vector<std::vector<double>>& want) {
    {
      SCOPED_TRACE("row_loss");
      D2R_EXPECT_CLOSE(got.loss, want[0], 1e-4, 2e-5 * max_abs(want[0]));
    }
    if (c.with_reward) {
      SCOPED_TRACE("row_reward");
      D2R_EXPECT_CLOSE(got.reward, want[1], 1e-4, 1e-5 * max_abs(want[1]));
    }
    {
      SCOPED_TRACE("grad.mean");
      if (!c.clip) {  // (B = G = 1 with clipping clips the only draw)
        EXPECT_GT(max_abs(want[2]), 0.0);
      }
      D2R_EXPECT_CLOSE(got.grad_mean, want[2], 2e-3, 2e-4 * max_abs(want[2]));
    }
    {
      SCOPED_TRACE("grad.tril");
      EXPECT_GT(max_abs(want[3]), 0.0);
      D2R_EXPECT_CLOSE(got.grad_tril, want[3], 2e-3, 2e-4 * max_abs(want[3]));
    }
  }

  static std::uint64_t seed_of(const Shape& s, const Config& c) {
    return static_cast<std::uint64_t>(s.batch * 1009 + s.n * 31 + s.generations * 7 + static_cast<int>(c.form) * 3 +
                                      (c.shared ? 1 : 0));
  }

  std::unique_ptr<Context> gpu_, cpu_;
  std::map<std::tuple<int, bool, bool>, float> clip_cache_;
};

std::vector<Shape> shapes() {
  std::vector<Shape> out;
  for (const std::int64_t B : {1, 3, 257})
    for (const std::int64_t n : {1, 2, 17, 64})
      for (const std::int64_t G : {1, 5, 40, 100}) out.push_back({B, n, G});
  return out;
}

TEST_P(CholeskySurrogateGpu, FusedMatchesDoubleReference) {
  const Shape s = GetParam();
  for (const Config& c : configs(s, true)) {
    SCOPED_TRACE(c.describe());
    const Inputs in(s.batch, s.n, c.shared, c.form, seed_of(s, c));
    const float clip = clip_of(s, c, in);
    expect_close(c, run_gpu(s, c, in, clip), run_reference(s, c, in, clip));
  }
}

TEST_P(CholeskySurrogateGpu, FusedMatchesGpuComposition) {
  const Shape s = GetParam();
  for (const Config& c : configs(s, false)) {
    SCOPED_TRACE(c.describe());
    const Inputs in(s.batch, s.n, c.shared, c.form, seed_of(s, c));
    const float clip = clip_of(s, c, in);
    const Outputs unfused = run_gpu(s, c, in, clip, true);
    std::vector<std::vector<double>> want{to_double(unfused.loss), to_double(unfused.reward),
                                          to_double(unfused.grad_mean), to_double(unfused.grad_tril)};
    expect_close(c, run_gpu(s, c, in, clip), want);
  }
}

/// Two runs of the same call give the same bits (no atomics, fixed summation order).
TEST_P(CholeskySurrogateGpu, Deterministic) {
  const Shape s = GetParam();
  if (s.batch < 3 || s.generations < 5) GTEST_SKIP() << "covered by the larger shapes";
  for (const RewardForm form : {RewardForm::diagonal, RewardForm::full}) {
    const Config c{form, Transform::standardize, true, false, false, 0, true};
    const Inputs in(s.batch, s.n, c.shared, c.form, seed_of(s, c));
    const Outputs first = run_gpu(s, c, in, 0.0f), second = run_gpu(s, c, in, 0.0f);
    EXPECT_EQ(first.loss, second.loss);
    EXPECT_EQ(first.reward, second.reward);
    EXPECT_EQ(first.grad_mean, second.grad_mean);
    EXPECT_EQ(first.grad_tril, second.grad_tril);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CholeskySurrogateGpu, ::testing::ValuesIn(shapes()), shape_name);

/// A shard (first_row = r0, normaliser_rows = B) gives the rows and the per-row gradients of the
/// whole batch: the draws continue the whole batch's stream.
TEST(CholeskySurrogateGpuShards, ShardMatchesWholeBatch) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda, .seed = 34});
  const std::int64_t B = 9, n = 6, G = 12, P = packed_size(n), r0 = 3, r1 = 7;
  const Inputs in(B, n, false, RewardForm::full, 5);
  GuardedMatrix<float> mean_g(gpu, B, n), targets_g(gpu, B, n), tril_g(gpu, B, P), params_g(gpu, 1, P);
  mean_g.fill(in.mean);
  targets_g.fill(in.targets);
  tril_g.fill(in.tril);
  params_g.fill(in.params);
  const CholeskyGaussian<float> head{mean_g.cview(), tril_g.cview(), 1e-4f};
  const MahalanobisReward<float> reward{RewardForm::full, {params_g.cview().data, P}};
  const PgOptions<float> opt{.entropy_weight = 0.5f, .transform = {.kind = Transform::leave_one_out},
                             .normaliser_rows = B};
  GuardedMatrix<float> loss(gpu, 1, B), gm(gpu, B, n), gt(gpu, B, P);
  pg_surrogate(gpu, head, targets_g.cview(), reward, G, opt, {.step = 4}, {loss.vector(), {}}, {gm.view(), gt.view()});
  const std::int64_t m = r1 - r0;
  const CholeskyGaussian<float> shard{head.mean.row_range(r0, m), head.tril.row_range(r0, m), head.jitter};
  GuardedMatrix<float> loss_s(gpu, 1, m), gm_s(gpu, m, n), gt_s(gpu, m, P);
  pg_surrogate(gpu, shard, targets_g.cview().row_range(r0, m), reward, G, opt, {.step = 4, .first_row = r0},
               {loss_s.vector(), {}}, {gm_s.view(), gt_s.view()});
  const std::vector<float> l = loss.values_checked(), a = gm.values_checked(), t = gt.values_checked();
  EXPECT_EQ(loss_s.values_checked(), std::vector<float>(l.begin() + r0, l.begin() + r1));
  EXPECT_EQ(gm_s.values_checked(), std::vector<float>(a.begin() + r0 * n, a.begin() + r1 * n));
  EXPECT_EQ(gt_s.values_checked(), std::vector<float>(t.begin() + r0 * P, t.begin() + r1 * P));
}

/// Above the fused kernel's cap on G (1024) pg_surrogate composes the primitives: same results.
TEST(CholeskySurrogateGpuFallback, ManyGenerationsMatchReference) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda, .seed = 8}), cpu({.backend = Backend::cpu, .seed = 8});
  const std::int64_t B = 2, n = 3, G = 1100, P = packed_size(n);
  const Inputs in(B, n, true, RewardForm::diagonal, 6);
  GuardedMatrix<float> mean_g(gpu, B, n), targets_g(gpu, B, n), tril_g(gpu, 1, P), params_g(gpu, 1, n);
  mean_g.fill(in.mean);
  targets_g.fill(in.targets);
  tril_g.fill(in.tril);
  params_g.fill(in.params);
  const PgOptions<float> opt{.entropy_weight = 0.2f, .transform = {.kind = Transform::standardize}};
  GuardedMatrix<float> loss(gpu, 1, B), rew(gpu, 1, B), gm(gpu, B, n), gt(gpu, 1, P);
  pg_surrogate(gpu, CholeskyGaussian<float>{mean_g.cview(), tril_g.cview(), 1e-4f}, targets_g.cview(),
               MahalanobisReward<float>{RewardForm::diagonal, {params_g.cview().data, n}}, G, opt, kKey,
               {loss.vector(), rew.vector()}, {gm.view(), gt.view()});
  const std::vector<double> mean_d = to_double(in.mean), targets_d = to_double(in.targets),
                            tril_d = to_double(in.tril), params_d = to_double(in.params);
  std::vector<double> loss_d(B), rew_d(B), gm_d(B * n), gt_d(P);
  pg_surrogate(cpu,
               CholeskyGaussian<double>{matrix_view(mean_d.data(), B, n), matrix_view(tril_d.data(), 1, P),
                                        static_cast<double>(1e-4f)},
               matrix_view<const double>(targets_d.data(), B, n),
               MahalanobisReward<double>{RewardForm::diagonal, {params_d.data(), n}}, G,
               PgOptions<double>{.entropy_weight = static_cast<double>(0.2f),
                                 .transform = {.kind = Transform::standardize,
                                               .standardize_epsilon = static_cast<double>(1e-6f)}},
               kKey, {vector_view(loss_d.data(), B), vector_view(rew_d.data(), B)},
               CholeskyGaussianGrad<double>{matrix_view(gm_d.data(), B, n), matrix_view(gt_d.data(), 1, P)});
  D2R_EXPECT_CLOSE(loss.values_checked(), loss_d, 1e-4, 2e-5 * max_abs(loss_d));
  D2R_EXPECT_CLOSE(rew.values_checked(), rew_d, 1e-4, 1e-5 * max_abs(rew_d));
  D2R_EXPECT_CLOSE(gm.values_checked(), gm_d, 2e-3, 2e-4 * max_abs(gm_d));
  D2R_EXPECT_CLOSE(gt.values_checked(), gt_d, 2e-3, 2e-4 * max_abs(gt_d));
}

}  // namespace
}  // namespace d2r
