// Fused REINFORCE surrogate of the categorical head on the cuda backend (float), against
//  (1) a double composition of the CPU primitives (log_prob, one-hot reward, transform_rewards,
//      entropy, reference::pg_row_terms, backward) run on the GPU sampler's own draws: every row;
//  (2) the CPU reference pg_surrogate in double (its own draws): the rows whose GPU sample() draws
//      equal the reference draws (in float they may differ at a CDF boundary);
//  (3) the GPU composition pg_surrogate_unfused (same draws as sample()).
// Shapes B ∈ {1, 7, 300} x C ∈ {2, 10, 1000, 32000} x G ∈ {1, 5, 50, 300}, and B = 3 x C = 2^18
// x G = 50; every reward form (full for C <= 256), every transform, clip on and off, λ > 0,
// normaliser_rows 0 and > B, row_reward present and empty; masked (-inf) classes including a
// one-class row, a masked label (with the scalar form and standardize: a group of equal rewards),
// a whole masked tile and a peaked row; the G cap (1024) and the composition above it; shards;
// determinism; a row without a distribution with value checks off. Outputs go through sentinel-
// guarded buffers; inputs are strided views. Each test skips when no CUDA device is usable.
//
// Reward parameters are dyadic (multiples of 1/8), so rewards and their group sums are exact in
// float: a group of equal rewards standardises to exactly 0 on both sides, and the tolerances
// below only have to absorb the rounding of log-probabilities, entropies and group statistics.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "d2r/objectives.hpp"
#include "host/reference/objectives.hpp"
#include "common/math/numerics.hpp"
#include "tests/test_utils.hpp"

namespace d2r {
namespace {

using test::GuardedMatrix;
using test::TestRng;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr std::uint64_t kSeed = 0xCA7;

const char* form_name(RewardForm f) {
  switch (f) {
    case RewardForm::scalar: return "scalar";
    case RewardForm::diagonal: return "diagonal";
    case RewardForm::full: return "full";
  }
  return "?";
}

struct Shape {
  std::int64_t batch, classes, generations;
};

void PrintTo(const Shape& s, std::ostream* os) {
  *os << fmt::format("B={} C={} G={}", s.batch, s.classes, s.generations);
}

std::string shape_name(const ::testing::TestParamInfo<Shape>& info) {
  return fmt::format("B{}_C{}_G{}", info.param.batch, info.param.classes, info.param.generations);
}

struct Config {
  RewardForm form = RewardForm::scalar;
  Transform transform = Transform::none;
  bool clip = false;
  double lambda = 0.3;
  std::int64_t normaliser_rows = 0;
  bool with_reward = true;

  [[nodiscard]] std::string describe() const {
    return fmt::format("form={} transform={} clip={} lambda={} normaliser_rows={} row_reward={}", form_name(form),
                       to_string(transform), clip, lambda, normaliser_rows, with_reward ? "yes" : "empty");
  }
};

/// Float-representable logits in [-4, 4], about 10% masked, never a whole row; with B >= 5 the
/// special rows: 1 a single unmasked class, 2 a masked label, 3 a whole masked 2048-tile (C >
/// 4096) and masked first and last classes, 4 a peaked row.
struct Problem {
  std::int64_t B, C;
  std::vector<float> logits;
  std::vector<std::int32_t> labels;

  Problem(std::int64_t batch, std::int64_t classes, std::uint64_t seed) : B(batch), C(classes) {
    TestRng rng(seed);
    logits.resize(static_cast<std::size_t>(B * C));
    labels.resize(static_cast<std::size_t>(B));
    const float ninf = -std::numeric_limits<float>::infinity();
    for (std::int64_t b = 0; b < B; ++b) {
      labels[b] = static_cast<std::int32_t>(std::min<double>(rng.uniform(0, static_cast<double>(C)), C - 1));
      bool any = false;
      for (std::int64_t j = 0; j < C; ++j) {
        const bool masked = rng.uniform(0, 1) < 0.1;
        logits[b * C + j] = masked ? ninf : static_cast<float>(rng.uniform(-4, 4));
        any = any || !masked;
      }
      if (!any) logits[b * C + C / 2] = 0.5f;
    }
    if (B < 5) return;
    float* r1 = &logits[1 * C];
    const std::int64_t only = C / 3;
    for (std::int64_t j = 0; j < C; ++j) r1[j] = j == only ? 1.25f : ninf;
    float* r2 = &logits[2 * C];
    r2[labels[2]] = ninf;
    if (std::none_of(r2, r2 + C, [](float x) { return std::isfinite(x); })) r2[(labels[2] + 1) % C] = 0.0f;
    float* r3 = &logits[3 * C];
    if (C > 4096)
      for (std::int64_t j = 2048; j < 4096; ++j) r3[j] = ninf;
    r3[0] = ninf;
    r3[C - 1] = ninf;
    if (std::none_of(r3, r3 + C, [](float x) { return std::isfinite(x); })) r3[C / 2] = 0.0f;
    logits[4 * C + (C * 2) / 3] = 15.0f;
  }
};

/// Dyadic reward parameters (multiples of 1/8): U = u·I, diag(U), or R with R_ii in [0.5, 1.25].
std::vector<float> reward_params(RewardForm form, std::int64_t C, TestRng& rng) {
  std::vector<float> p(static_cast<std::size_t>(reward_param_count(form, C)));
  const auto dyadic = [&](double lo, double hi) { return static_cast<float>(std::round(rng.uniform(lo, hi) * 8) / 8); };
  if (form == RewardForm::full) {
    for (std::int64_t i = 0; i < C; ++i)
      for (std::int64_t j = 0; j <= i; ++j)
        p[i * (i + 1) / 2 + j] = i == j ? dyadic(0.5, 1.25) : (rng.uniform(0, 1) < 0.3 ? dyadic(-0.25, 0.25) : 0.0f);
  } else {
    for (auto& v : p) v = dyadic(0.25, 2.0);
  }
  return p;
}

/// The double composition on given draws, and the per-element tolerances derived from it.
struct Composition {
  std::vector<double> log_prob, rewards, advantages, entropy, d_log_prob, d_entropy, row_loss, row_reward, grad;
  std::vector<double> tol_loss, tol_reward, tol_grad;
};

Composition compose(Context& cpu, const Problem& p, const std::vector<std::int32_t>& draws, std::int64_t G,
                    const MahalanobisReward<double>& reward, const PgOptions<double>& opt) {
  const std::int64_t B = p.B, C = p.C;
  const std::vector<double> logits(p.logits.begin(), p.logits.end());
  const Categorical<double> head{matrix_view<const double>(logits.data(), B, C)};
  const MatrixView<const std::int32_t> samples = matrix_view<const std::int32_t>(draws.data(), B, G);
  const auto n = static_cast<std::size_t>(B * G);
  Composition o;
  o.log_prob.resize(n), o.rewards.resize(n), o.advantages.resize(n), o.d_log_prob.resize(n);
  o.entropy.resize(static_cast<std::size_t>(B)), o.d_entropy.resize(static_cast<std::size_t>(B));
  o.row_loss.resize(static_cast<std::size_t>(B)), o.row_reward.resize(static_cast<std::size_t>(B));
  o.grad.resize(static_cast<std::size_t>(B * C));
  log_prob(cpu, head, samples, matrix_view(o.log_prob.data(), B, G));
  d2r::reward(cpu, reward, samples, vector_view<const std::int32_t>(p.labels.data(), B), C,
              matrix_view(o.rewards.data(), B, G));
  transform_rewards(cpu, opt.transform, matrix_view<const double>(o.rewards.data(), B, G),
                    matrix_view(o.advantages.data(), B, G));
  entropy(cpu, head, vector_view(o.entropy.data(), B));
  const double N = static_cast<double>(opt.normaliser_rows > 0 ? opt.normaliser_rows : B);
  reference::pg_row_terms<double>(opt, {1.0, N, G}, matrix_view<const double>(o.log_prob.data(), B, G),
                                  matrix_view<const double>(o.rewards.data(), B, G),
                                  matrix_view<const double>(o.advantages.data(), B, G),
                                  vector_view<const double>(o.entropy.data(), B), matrix_view(o.d_log_prob.data(), B, G),
                                  vector_view(o.d_entropy.data(), B),
                                  {vector_view(o.row_loss.data(), B), vector_view(o.row_reward.data(), B)});
  backward(cpu, head, samples, matrix_view<const double>(o.d_log_prob.data(), B, G),
           vector_view<const double>(o.d_entropy.data(), B), CategoricalGrad<double>{matrix_view(o.grad.data(), B, C)});

  // Tolerances: relative 1e-4 of the magnitude of the terms that make up each output (so that
  // cancellation and the tiny entries of large vocabularies are judged on their own scale).
  o.tol_loss.resize(static_cast<std::size_t>(B)), o.tol_reward.resize(static_cast<std::size_t>(B));
  o.tol_grad.resize(static_cast<std::size_t>(B * C));
  std::vector<std::int32_t> count(static_cast<std::size_t>(C));
  for (std::int64_t b = 0; b < B; ++b) {
    double loss_scale = 0, r_max = 0, c_max = 0;
    for (std::int64_t g = 0; g < G; ++g) {
      const std::size_t i = static_cast<std::size_t>(b * G + g);
      loss_scale += (std::abs(o.log_prob[i]) + 1) * std::abs(o.advantages[i]) / static_cast<double>(G);
      r_max = std::max(r_max, std::abs(o.rewards[i]));
      c_max = std::max(c_max, std::abs(o.d_log_prob[i]));
    }
    const double H = o.entropy[b], e = std::abs(o.d_entropy[b]);
    loss_scale = (loss_scale + opt.entropy_weight * (std::abs(H) + 1)) / N;
    o.tol_loss[b] = 1e-4 * loss_scale + 1e-30;
    o.tol_reward[b] = 1e-6 * (r_max + 1);
    std::fill(count.begin(), count.end(), 0);
    for (std::int64_t g = 0; g < G; ++g) ++count[draws[b * G + g]];
    double m = -kInf;
    for (std::int64_t j = 0; j < C; ++j) m = std::max(m, logits[b * C + j]);
    double z = 0;
    for (std::int64_t j = 0; j < C; ++j) z += std::exp(logits[b * C + j] - m);
    const double lse = m + std::log(z);
    for (std::int64_t j = 0; j < C; ++j) {
      const double lp = logits[b * C + j] - lse, pj = std::exp(lp);
      const double scale =
          pj > 0 ? pj * (static_cast<double>(G) * c_max + e * (std::abs(lp) + std::abs(H) + 1)) + count[j] * c_max : 0.0;
      o.tol_grad[b * C + j] = 2e-4 * scale + 1e-30;
    }
  }
  return o;
}

/// |got − want| <= tol elementwise over the rows selected (all when `rows` is empty); both NaN
/// counts as equal unless either is GuardedMatrix's sentinel (an element never written, which is
/// a NaN too). Reports the count and the worst element.
template <class T>
void expect_within(const std::vector<T>& got, const std::vector<double>& want, const std::vector<double>& tol,
                   std::int64_t cols, const std::vector<bool>& rows, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  std::int64_t bad = 0, worst = -1;
  double worst_ratio = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (!rows.empty() && !rows[i / static_cast<std::size_t>(cols)]) continue;
    const double a = static_cast<double>(got[i]), w = want[i];
    const bool unwritten = test::is_sentinel(got[i]) || test::is_sentinel(w);
    if (!unwritten && std::isnan(a) && std::isnan(w)) continue;
    const double ratio = unwritten || std::isnan(a) || std::isnan(w) ? kInf : std::abs(a - w) / tol[i];
    if (ratio > 1) ++bad;
    if (ratio > worst_ratio) worst_ratio = ratio, worst = static_cast<std::int64_t>(i);
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " elements out of tolerance; worst " << worst << " (row "
                    << (worst >= 0 ? worst / cols : -1) << ", col " << (worst >= 0 ? worst % cols : -1) << "): got "
                    << (worst >= 0 ? static_cast<double>(got[worst]) : 0.0) << " want "
                    << (worst >= 0 ? want[worst] : 0.0) << " tol " << (worst >= 0 ? tol[worst] : 0.0) << " ("
                    << worst_ratio << "x)";
}

/// A clip level near log C that no class's −log p comes within 1e-3 of, so that float and
/// double agree on which draws are clipped.
double clip_level(const Problem& p) {
  std::vector<double> x;
  x.reserve(p.logits.size());
  for (std::int64_t b = 0; b < p.B; ++b) {
    double m = -kInf, z = 0;
    for (std::int64_t j = 0; j < p.C; ++j) m = std::max(m, static_cast<double>(p.logits[b * p.C + j]));
    for (std::int64_t j = 0; j < p.C; ++j) z += std::exp(p.logits[b * p.C + j] - m);
    for (std::int64_t j = 0; j < p.C; ++j)
      if (std::isfinite(p.logits[b * p.C + j])) x.push_back(m + std::log(z) - p.logits[b * p.C + j]);
  }
  std::sort(x.begin(), x.end());
  for (double c = std::log(static_cast<double>(p.C));; c += 7.3e-4) {
    const auto it = std::lower_bound(x.begin(), x.end(), c - 1e-3);
    if (it == x.end() || *it > c + 1e-3) return static_cast<double>(static_cast<float>(c));
  }
}

PgOptions<double> double_options(const Config& c, double clip) {
  return {.entropy_weight = c.lambda,
          .transform = {.kind = c.transform, .rbf_gamma = 0.5, .standardize_epsilon = static_cast<double>(1e-6f)},
          .log_prob_clip = c.clip ? clip : 0.0,
          .normaliser_rows = c.normaliser_rows};
}
PgOptions<float> float_options(const PgOptions<double>& o) {
  return {.entropy_weight = static_cast<float>(o.entropy_weight),
          .transform = {.kind = o.transform.kind, .rbf_gamma = static_cast<float>(o.transform.rbf_gamma),
                        .standardize_epsilon = static_cast<float>(o.transform.standardize_epsilon)},
          .log_prob_clip = static_cast<float>(o.log_prob_clip),
          .normaliser_rows = o.normaliser_rows};
}

/// A problem on the device: strided logits, labels, reward parameters.
struct DeviceProblem {
  GuardedMatrix<float> logits;
  GuardedMatrix<std::int32_t> labels;
  GuardedMatrix<float> params;
  std::int64_t B, C, P;
  RewardForm form;

  DeviceProblem(Context& gpu, const Problem& p, RewardForm f, const std::vector<float>& u)
      : logits(gpu, p.B, p.C), labels(gpu, 1, p.B), params(gpu, 1, static_cast<std::int64_t>(u.size())), B(p.B),
        C(p.C), P(static_cast<std::int64_t>(u.size())), form(f) {
    logits.fill(p.logits);
    labels.fill(p.labels);
    params.fill(u);
  }
  [[nodiscard]] Categorical<float> head() const { return {logits.cview()}; }
  [[nodiscard]] VectorView<const std::int32_t> label_view() const { return {labels.cview().data, B}; }
  [[nodiscard]] MahalanobisReward<float> reward() const { return {form, {params.cview().data, P}}; }
};

/// Outputs of one objective call on the device, in guarded buffers.
struct DeviceOutputs {
  GuardedMatrix<float> loss, reward, grad;
  bool with_reward;
  DeviceOutputs(Context& gpu, std::int64_t B, std::int64_t C, bool r)
      : loss(gpu, 1, B), reward(gpu, 1, B), grad(gpu, B, C), with_reward(r) {}
  [[nodiscard]] ObjectiveRows<float> rows() { return {loss.vector(), with_reward ? reward.vector() : VectorView<float>{}}; }
  [[nodiscard]] CategoricalGrad<float> g() { return {grad.view()}; }
};

struct Values {
  std::vector<float> loss, reward, grad;
};

Values read(const DeviceOutputs& out) {
  Values v{out.loss.values_checked(), {}, out.grad.values_checked()};
  if (out.with_reward) {
    v.reward = out.reward.values_checked();
  } else {
    EXPECT_TRUE(out.reward.untouched()) << "row_reward was empty but its buffer was written";
  }
  return v;
}

/// `got` against the expected loss, reward and gradient, with the tolerances of `tol`.
void expect_matches(const Values& got, const std::vector<double>& loss, const std::vector<double>& reward,
                    const std::vector<double>& grad, const Composition& tol, std::int64_t C,
                    const std::vector<bool>& rows, const std::string& what) {
  expect_within(got.loss, loss, tol.tol_loss, 1, rows, what + " row_loss");
  if (!got.reward.empty()) expect_within(got.reward, reward, tol.tol_reward, 1, rows, what + " row_reward");
  expect_within(got.grad, grad, tol.tol_grad, C, rows, what + " gradient");
}
void expect_matches(const Values& got, const Composition& want, std::int64_t C, const std::vector<bool>& rows,
                    const std::string& what) {
  expect_matches(got, want.row_loss, want.row_reward, want.grad, want, C, rows, what);
}
std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

/// How far the float sampler may place a draw from the double reference's target t = u·Z: a
/// host emulation of the sampler's float arithmetic (tile sums, tile prefix, in-tile scan) on
/// these tests' inputs puts every mismatch within 2.2e-7·Z of a CDF boundary (3.5e-7·Z with expf
/// off by up to ±2 ulp; 6.9e-7·Z even with sequential instead of tree block sums), so 1e-6·Z
/// leaves a margin; the former 1e-5·Z spanned several classes at large C.
constexpr double kDrawWindow = 1e-6;
/// Classes narrower than this (times Z) may lie between the GPU's class and the reference's: they
/// are below the float sampler's resolution. The same emulation steps over classes up to 1e-7·Z
/// wide (the tail of the peaked row; narrow classes at C = 2^18), so "the nearest unmasked
/// neighbour" alone would fail a correct kernel.
constexpr double kUnresolvedWidth = 2.5e-7;

/// The GPU class k is the reference class `ref`, or a neighbour of it on either side with
/// nothing between them but masked classes and classes narrower than kUnresolvedWidth·Z
/// (inclusive cdf; z = its last entry).
bool is_reference_or_neighbour(std::int64_t k, std::int64_t ref, const std::vector<double>& cdf) {
  const double z = cdf.back();
  for (std::int64_t j = std::min(k, ref) + 1; j < std::max(k, ref); ++j) {
    const double width = cdf[static_cast<std::size_t>(j)] - cdf[static_cast<std::size_t>(j - 1)];
    if (width > kUnresolvedWidth * z) return false;
  }
  return true;
}

/// Draw checks: in range, never a masked class; a draw that differs from the reference lies at a
/// CDF boundary: a neighbour of the reference class (is_reference_or_neighbour) whose interval
/// lies within kDrawWindow·Z of the reference target. Returns the rows whose G draws all equal
/// the reference's.
std::vector<bool> check_draws(const Problem& p, std::int64_t G, const std::vector<std::int32_t>& gpu,
                              const std::vector<std::int32_t>& ref, DrawKey key) {
  std::vector<bool> same(static_cast<std::size_t>(p.B), true);
  for (std::int64_t b = 0; b < p.B; ++b) {
    const float* row = &p.logits[b * p.C];
    double m = -kInf;
    for (std::int64_t j = 0; j < p.C; ++j) m = std::max(m, static_cast<double>(row[j]));
    std::vector<double> cdf(static_cast<std::size_t>(p.C));
    double run = 0;
    for (std::int64_t j = 0; j < p.C; ++j) cdf[j] = run += std::exp(row[j] - m);
    for (std::int64_t g = 0; g < G; ++g) {
      const std::int32_t k = gpu[b * G + g];
      const bool drawable = k >= 0 && k < p.C && std::isfinite(row[k]);
      EXPECT_TRUE(drawable) << "row " << b << " draw " << g << ": class " << k;
      if (!drawable) {
        same[b] = false;
        continue;
      }
      if (k == ref[b * G + g]) continue;
      same[b] = false;
      const double u = math::categorical_uniform<double>(kSeed, static_cast<std::uint32_t>(key.step),
                                                         static_cast<std::uint32_t>(key.first_row + b),
                                                         static_cast<std::uint32_t>(g));
      const double t = u * run, window = kDrawWindow * run, lower = k == 0 ? 0.0 : cdf[k - 1];
      EXPECT_TRUE(is_reference_or_neighbour(k, ref[b * G + g], cdf))
          << "row " << b << " draw " << g << ": gpu class " << k << " is not the reference class " << ref[b * G + g]
          << " nor its neighbour (a class wider than " << kUnresolvedWidth << "·Z lies between them)";
      EXPECT_TRUE(lower <= t + window && cdf[k] >= t - window)
          << "row " << b << " draw " << g << ": gpu class " << k << " [" << lower / run << ", " << cdf[k] / run
          << ") vs reference " << ref[b * G + g] << " at t/Z = " << u;
    }
  }
  return same;
}

class CategoricalSurrogateGpu : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    D2R_REQUIRE_GPU();
    gpu_ = std::make_unique<Context>(ContextOptions{.backend = Backend::cuda, .seed = kSeed});
    cpu_ = std::make_unique<Context>(ContextOptions{.backend = Backend::cpu, .seed = kSeed});
  }

  /// Every comparison of the file header for one configuration.
  void run_and_compare(const Shape& s, const Config& c, std::uint64_t seed) {
    SCOPED_TRACE(c.describe());
    Context& gpu = *gpu_;
    Context& cpu = *cpu_;
    const std::int64_t B = s.batch, C = s.classes, G = s.generations;
    const Problem p(B, C, seed);
    TestRng rng(seed * 7 + 1);
    const std::vector<float> u = reward_params(c.form, C, rng);
    const std::vector<double> u_d(u.begin(), u.end());
    const MahalanobisReward<double> reward_d{c.form, vector_view<const double>(u_d.data(), static_cast<std::int64_t>(u_d.size()))};
    const PgOptions<double> opt_d = double_options(c, c.clip ? clip_level(p) : 0.0);
    const PgOptions<float> opt_f = float_options(opt_d);
    const DrawKey key{.step = 31 + seed % 5, .first_row = 11};
    const DeviceProblem dp(gpu, p, c.form, u);

    // ---- the sampler's draws (GPU, then the double reference's)
    GuardedMatrix<std::int32_t> draws_g(gpu, B, G);
    sample(gpu, dp.head(), G, key, draws_g.view());
    const std::vector<std::int32_t> draws = draws_g.values_checked();
    const std::vector<double> logits_d(p.logits.begin(), p.logits.end());
    const Categorical<double> head_d{matrix_view<const double>(logits_d.data(), B, C)};
    std::vector<std::int32_t> draws_ref(static_cast<std::size_t>(B * G));
    sample(cpu, head_d, G, key, matrix_view(draws_ref.data(), B, G));
    const std::vector<bool> same_rows = check_draws(p, G, draws, draws_ref, key);
    const auto same = static_cast<std::int64_t>(std::count(same_rows.begin(), same_rows.end(), true));
    // Float and double draws part only at CDF boundaries, rare up to a thousand classes.
    if (C <= 1000 && B > 1) {
      EXPECT_GE(2 * same, B) << "rows whose GPU draws all equal the reference's";
    }

    // ---- fused, against the double composition on the GPU's draws (every row)
    DeviceOutputs fused(gpu, B, C, c.with_reward);
    pg_surrogate(gpu, dp.head(), dp.label_view(), dp.reward(), G, opt_f, key, fused.rows(), fused.g());
    const Values f = read(fused);
    const Composition want = compose(cpu, p, draws, G, reward_d, opt_d);
    expect_matches(f, want, C, {}, "fused vs double composition on the GPU draws");

    // ---- fused, against the CPU reference pg_surrogate, on the rows whose draws agree
    if (same > 0) {
      std::vector<double> loss_r(static_cast<std::size_t>(B)), reward_r(static_cast<std::size_t>(B)),
          grad_r(static_cast<std::size_t>(B * C));
      pg_surrogate(cpu, head_d, vector_view<const std::int32_t>(p.labels.data(), B), reward_d, G, opt_d, key,
                   {vector_view(loss_r.data(), B), vector_view(reward_r.data(), B)},
                   CategoricalGrad<double>{matrix_view(grad_r.data(), B, C)});
      expect_matches(f, loss_r, reward_r, grad_r, want, C, same_rows, "fused vs reference pg_surrogate");
      // The test's composition is the reference's on those rows.
      std::vector<double> tight(want.grad.size(), 1e-12);
      expect_within(want.grad, grad_r, tight, C, same_rows, "double composition vs reference pg_surrogate");
    }

    // ---- the GPU composition: the same draws as sample(), the same result as fused
    GuardedMatrix<std::int32_t> im_samples(gpu, B, G);
    GuardedMatrix<float> im_lp(gpu, B, G), im_r(gpu, B, G), im_a(gpu, B, G);
    DeviceOutputs unfused(gpu, B, C, c.with_reward);
    pg_surrogate_unfused(gpu, dp.head(), dp.label_view(), dp.reward(), G, opt_f, key,
                         PgIntermediates<float, std::int32_t>{im_samples.view(), im_lp.view(), im_r.view(), im_a.view()},
                         unfused.rows(), unfused.g());
    EXPECT_EQ(im_samples.values_checked(), draws) << "pg_surrogate_unfused draws as sample() does";
    const Values uf = read(unfused);
    expect_matches(uf, want, C, {}, "unfused vs double composition");
    expect_matches(f, widen(uf.loss), widen(uf.reward), widen(uf.grad), want, C, {}, "fused vs unfused (GPU)");

    // ---- deterministic: the same bits again
    DeviceOutputs again(gpu, B, C, c.with_reward);
    pg_surrogate(gpu, dp.head(), dp.label_view(), dp.reward(), G, opt_f, key, again.rows(), again.g());
    const Values f2 = read(again);
    EXPECT_EQ(f2.loss, f.loss);
    EXPECT_EQ(f2.reward, f.reward);
    EXPECT_TRUE(f2.grad == f.grad) << "gradient differs between two identical calls";
  }

  std::unique_ptr<Context> gpu_, cpu_;
};

constexpr RewardForm kForms[] = {RewardForm::scalar, RewardForm::diagonal, RewardForm::full};
constexpr Transform kTransforms[] = {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out,
                                     Transform::standardize};

std::vector<Shape> shapes() {
  std::vector<Shape> out;
  for (const std::int64_t B : {1, 7, 300})
    for (const std::int64_t C : {2, 10, 1000, 32000})
      for (const std::int64_t G : {1, 5, 50, 300}) out.push_back({B, C, G});
  // The largest vocabulary (kMaxCategoricalClasses = 2^18): multi-word tile masks and the second
  // pass's reordering across 128 tiles, which the shapes above reach only through sample().
  out.push_back({3, 262144, 50});
  return out;
}

/// Every transform (none only at G = 1); the reward form, clip, normaliser and row_reward
/// rotate over the transforms and shapes.
TEST_P(CategoricalSurrogateGpu, MatchesReferenceAndComposition) {
  const Shape s = GetParam();
  const auto id = static_cast<int>(s.batch + s.classes / 10 + s.generations);
  for (int t = 0; t < 5; ++t) {
    if (s.generations == 1 && t > 0) break;
    Config c;
    c.transform = kTransforms[t];
    c.form = kForms[(t + id) % 3];
    if (c.form == RewardForm::full && s.classes > kMaxOneHotFullClasses) c.form = RewardForm::diagonal;
    c.clip = (t + id) % 2 == 0;
    c.lambda = 0.3 + 0.2 * (t % 2);
    c.normaliser_rows = t % 2 == 0 ? 0 : s.batch + 3;
    c.with_reward = (t + id) % 3 != 2;
    run_and_compare(s, c, static_cast<std::uint64_t>(1000 * id + t));
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CategoricalSurrogateGpu, ::testing::ValuesIn(shapes()), shape_name);

/// Every reward form x transform x clip on one small and one full-width (C = 200) problem.
class CategoricalSurrogateGpuConfigs : public CategoricalSurrogateGpu {};

TEST_P(CategoricalSurrogateGpuConfigs, EveryFormTransformAndClip) {
  const Shape s = GetParam();
  std::uint64_t seed = 50;
  for (const RewardForm form : kForms)
    for (const Transform transform : kTransforms)
      for (const bool clip : {false, true}) {
        const Config c{form, transform, clip, 0.25, clip ? s.batch + 1 : 0, !clip};
        run_and_compare(s, c, seed++);
        if (HasFatalFailure()) return;
      }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CategoricalSurrogateGpuConfigs,
                         ::testing::Values(Shape{7, 10, 50}, Shape{7, 200, 16}, Shape{3, 2, 5}), shape_name);

/// G at the fused kernel's cap, and above it (the composition runs).
class CategoricalSurrogateGpuCap : public CategoricalSurrogateGpu {};

TEST_P(CategoricalSurrogateGpuCap, AtAndAboveTheGenerationCap) {
  const Shape s = GetParam();
  run_and_compare(s, Config{RewardForm::diagonal, Transform::standardize, true, 0.4, 0, true}, 9);
  run_and_compare(s, Config{RewardForm::scalar, Transform::leave_one_out, false, 0.1, s.batch * 2, false}, 10);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CategoricalSurrogateGpuCap,
                         ::testing::Values(Shape{5, 1000, 1024}, Shape{5, 3000, 1025}, Shape{2, 10, 1100}),
                         shape_name);

/// A shard (first_row = r0, normaliser_rows = B) gives the whole batch's rows and gradient rows,
/// bit for bit: the draws continue the whole batch's stream.
TEST(CategoricalSurrogateGpuShards, ShardMatchesWholeBatch) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda, .seed = 8});
  const std::int64_t B = 9, C = 3000, G = 50, r0 = 3, m = 4;
  const Problem p(B, C, 4);
  TestRng rng(2);
  const DeviceProblem dp(gpu, p, RewardForm::diagonal, reward_params(RewardForm::diagonal, C, rng));
  const PgOptions<float> opt{.entropy_weight = 0.5f, .transform = {.kind = Transform::leave_one_out}, .normaliser_rows = B};
  DeviceOutputs whole(gpu, B, C, true), shard(gpu, m, C, true);
  pg_surrogate(gpu, dp.head(), dp.label_view(), dp.reward(), G, opt, {.step = 4}, whole.rows(), whole.g());
  const VectorView<const std::int32_t> labels = dp.label_view();
  pg_surrogate(gpu, Categorical<float>{dp.head().logits.row_range(r0, m)},
               VectorView<const std::int32_t>{labels.data + r0, m}, dp.reward(), G, opt, {.step = 4, .first_row = r0},
               shard.rows(), shard.g());
  const Values w = read(whole), sh = read(shard);
  EXPECT_EQ(sh.loss, std::vector<float>(w.loss.begin() + r0, w.loss.begin() + r0 + m));
  EXPECT_EQ(sh.reward, std::vector<float>(w.reward.begin() + r0, w.reward.begin() + r0 + m));
  EXPECT_TRUE(sh.grad == std::vector<float>(w.grad.begin() + r0 * C, w.grad.begin() + (r0 + m) * C));
}

/// With value checks off a row without a distribution (all -inf) gets NaN loss, reward and
/// gradient; the other rows are exactly those of a batch where that row is valid.
TEST(CategoricalSurrogateGpuChecksOff, RowWithoutDistributionIsNaN) {
  D2R_REQUIRE_GPU();
  Context gpu({.backend = Backend::cuda, .seed = 3, .value_checks = ValueChecks::none});
  const std::int64_t B = 4, C = 5000, G = 20, bad = 2;
  Problem p(B, C, 6);
  TestRng rng(1);
  const std::vector<float> u = reward_params(RewardForm::scalar, C, rng);
  const PgOptions<float> opt{.entropy_weight = 0.2f, .transform = {.kind = Transform::rbf}};
  const DeviceProblem valid(gpu, p, RewardForm::scalar, u);
  DeviceOutputs ok(gpu, B, C, true);
  pg_surrogate(gpu, valid.head(), valid.label_view(), valid.reward(), G, opt, {.step = 2}, ok.rows(), ok.g());
  for (std::int64_t j = 0; j < C; ++j) p.logits[bad * C + j] = -std::numeric_limits<float>::infinity();
  const DeviceProblem masked(gpu, p, RewardForm::scalar, u);
  DeviceOutputs out(gpu, B, C, true);
  pg_surrogate(gpu, masked.head(), masked.label_view(), masked.reward(), G, opt, {.step = 2}, out.rows(), out.g());
  const Values a = read(ok), b = read(out);
  for (std::int64_t r = 0; r < B; ++r) {
    if (r == bad) {  // NaN written by the kernel (the never-written sentinel is a NaN too, and fails)
      EXPECT_TRUE(test::is_written_nan(b.loss[r]));
      EXPECT_TRUE(test::is_written_nan(b.reward[r]));
      EXPECT_TRUE(std::all_of(b.grad.begin() + r * C, b.grad.begin() + (r + 1) * C,
                              [](float x) { return test::is_written_nan(x); }));
      continue;
    }
    EXPECT_EQ(b.loss[r], a.loss[r]) << "row " << r;
    EXPECT_EQ(b.reward[r], a.reward[r]) << "row " << r;
    EXPECT_TRUE(std::equal(b.grad.begin() + r * C, b.grad.begin() + (r + 1) * C, a.grad.begin() + r * C)) << "row " << r;
  }
}

}  // namespace
}  // namespace d2r
