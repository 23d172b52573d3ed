// Emulated kernels of the reward family and the group transforms (kernels/rewards/rewards.cuh) against the
// CPU reference in double: continuous and one-hot Mahalanobis rewards and their per-row / per-chunk
// parameter gradients (column-summed as by the launchers), the five transforms and their VJP.
// Also the two fixes of the standardize transform on a constant group and of one-hot rows without
// a distribution (sample index −1).
#include "tests/emulation/kernel_emulation.hpp"

#include "host/reference/mixed_product.hpp"
#include "host/reference/rewards.hpp"
#include "kernels/rewards/rewards.cuh"

namespace d2r::emulation {
namespace {

namespace rw = kernels::rewards;

// ------------------------------------------------------------------ rewards and their gradients

struct RewardCase {
  const char* name;
  std::int64_t B, n, G;  // n: dimension (continuous) and number of classes (one-hot)
  unsigned grid, block;   // block 256 as rewards.cu; smaller to loop more
};
void PrintTo(const RewardCase& c, std::ostream* os) { *os << c.name; }

class RewardEmulation : public ::testing::TestWithParam<std::tuple<RewardForm, RewardCase>> {};

TEST_P(RewardEmulation, ContinuousAndOneHotMatchReference) {
  const auto [form, c] = GetParam();
  const std::int64_t B = c.B, n = c.n, G = c.G, P = param_count(form, n);
  TestRng rng(static_cast<std::uint64_t>(B * 31 + n * 7 + G + 100 * static_cast<int>(form)));
  const auto params = reward_params(form, n, rng), y = uniform(rng, B * n, -1, 1);
  const auto samples = uniform(rng, B * G * n, -2, 2), cot = uniform(rng, B * G, -1, 1);
  std::vector<std::int32_t> labels(static_cast<std::size_t>(B)), draws(static_cast<std::size_t>(B * G));
  for (auto& v : labels) v = static_cast<std::int32_t>(rng.uniform(0, static_cast<double>(n)));
  for (std::int64_t i = 0; i < B * G; ++i)  // about a third of the draws hit the label (reward 0)
    draws[static_cast<std::size_t>(i)] = rng.uniform(0, 1) < 0.35 ? labels[static_cast<std::size_t>(i / G)]
                                                                   : static_cast<std::int32_t>(rng.uniform(0, static_cast<double>(n)));

  const FloatMatrix d_params(1, P, params), d_y(B, n, y), d_samples(B * G, n, samples), d_cot(B, G, cot);
  const IndexMatrix d_labels(1, B, labels), d_draws(B, G, draws);
  const MahalanobisReward<float> reward{form, d_params.cvector()};
  const simt::LaunchConfig config{c.grid, c.block, 0};

  FloatMatrix out(B, G), partial(B, P), out1(B, G);
  simt::launch(config, rw::continuous_kernel, reward, d_samples.cview(), d_y.cview(), out.view());
  simt::launch(config, rw::continuous_grad_rows_kernel, reward, d_samples.cview(), d_y.cview(), d_cot.cview(),
               partial.view());
  simt::launch(config, rw::one_hot_kernel, reward, d_draws.cview(), d_labels.cvector(), out1.view());
  // One-hot gradient: one thread per chunk of rows (rewards.cu: 64 threads, 256 rows a chunk);
  // also 2 rows a chunk, so that several chunks are reduced.
  std::vector<FloatMatrix> chunk_partials;
  for (std::int64_t rows_per_chunk : {std::int64_t{256}, std::int64_t{2}}) {
    const std::int64_t chunks = (B + rows_per_chunk - 1) / rows_per_chunk;
    chunk_partials.emplace_back(chunks, P);
    simt::launch(simt::LaunchConfig{static_cast<unsigned>((chunks + 63) / 64), 64, 0}, rw::one_hot_grad_chunks_kernel,
                 reward, d_draws.cview(), d_labels.cvector(), d_cot.cview(), chunk_partials.back().view(), rows_per_chunk);
  }

  const auto pd = to_double(params), yd = to_double(y), sd = to_double(samples), cd = to_double(cot);
  const MahalanobisReward<double> rr{form, vector_view<const double>(pd.data(), P)};
  const auto sv = matrix_view<const double>(sd.data(), B * G, n), yv = matrix_view<const double>(yd.data(), B, n);
  const auto cv = matrix_view<const double>(cd.data(), B, G);
  const VectorView<const std::int32_t> lv{labels.data(), B};
  const MatrixView<const std::int32_t> kv{draws.data(), B, G, G};
  std::vector<double> r(static_cast<std::size_t>(B * G)), g(static_cast<std::size_t>(P)), r1(r.size()), g1(g.size());
  reference::rewards::reward_continuous(rr, sv, yv, matrix_view(r.data(), B, G));
  reference::rewards::reward_backward_continuous(rr, sv, yv, cv, vector_view(g.data(), P));
  reference::rewards::reward_one_hot(rr, kv, lv, n, matrix_view(r1.data(), B, G));
  reference::rewards::reward_backward_one_hot(rr, kv, lv, n, cv, vector_view(g1.data(), P));

  D2R_EMU_EXPECT_CLOSE(checked(out, "continuous"), r, 1e-5, 1e-6);
  D2R_EMU_EXPECT_CLOSE(column_sums(checked(partial, "continuous grad rows"), B, P), g, 1e-4, 1e-5);
  D2R_EMU_EXPECT_CLOSE(checked(out1, "one_hot"), r1, 1e-5, 1e-6);
  for (const FloatMatrix& p : chunk_partials)
    D2R_EMU_EXPECT_CLOSE(column_sums(checked(p, "one_hot grad chunks"), p.rows(), P), g1, 1e-4, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RewardEmulation,
    ::testing::Combine(::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                       ::testing::Values(RewardCase{"B1_n2_G1", 1, 2, 1, 1, 256}, RewardCase{"B7_n17_G5", 7, 17, 5, 1, 64},
                                         RewardCase{"B3_n40_G3_grid2", 3, 40, 3, 2, 32},
                                         RewardCase{"B13_n5_G4", 13, 5, 4, 1, 32})),
    [](const ::testing::TestParamInfo<std::tuple<RewardForm, RewardCase>>& info) {
      return std::string(form_name(std::get<0>(info.param))) + "_" + std::get<1>(info.param).name;
    });

// Rows without a distribution (a categorical row whose logits are all −inf, ValueChecks::none)
// have samples −1. Their one-hot rewards are NaN and their gradient terms are skipped; params[−1]
// (a finite marker here) must never be read, nothing outside the partial rows written.
class OneHotWithoutDistribution : public ::testing::TestWithParam<RewardForm> {};

TEST_P(OneHotWithoutDistribution, RowsOfMinusOneGiveNaNAndNoGradient) {
  const RewardForm form = GetParam();
  const std::int64_t B = 6, C = 5, G = 4, P = param_count(form, C), rows_per_chunk = 2;
  const std::int64_t chunks = (B + rows_per_chunk - 1) / rows_per_chunk;
  TestRng rng(11 + static_cast<std::uint64_t>(form));
  const auto params = reward_params(form, C, rng), cot = uniform(rng, B * G, -1, 1);
  const std::vector<std::int32_t> labels{1, 2, 0, 4, 3, 2};
  std::vector<std::int32_t> draws{0, 1, 3, 4, -1, -1, -1, -1, 2, 0, 0, 1, 4, 4, 3, 0, -1, -1, -1, -1, 2, 1, 3, 2};
  const auto no_distribution = [](std::int64_t b) { return b == 1 || b == 4; };  // chunks 0 and 2

  FloatMatrix d_params(1, P, params);
  d_params.before(1) = 0.25f;  // what an out-of-bounds params[−1] would read
  const FloatMatrix d_cot(B, G, cot);
  const IndexMatrix d_labels(1, B, labels), d_draws(B, G, draws);
  const MahalanobisReward<float> reward{form, d_params.cvector()};
  FloatMatrix out(B, G), partial(chunks, P);
  simt::launch(simt::LaunchConfig{1, 32, 0}, rw::one_hot_kernel, reward, d_draws.cview(), d_labels.cvector(), out.view());
  simt::launch(simt::LaunchConfig{1, 64, 0}, rw::one_hot_grad_chunks_kernel, reward, d_draws.cview(), d_labels.cvector(),
               d_cot.cview(), partial.view(), rows_per_chunk);

  // Expected: the reference on the rows that have a distribution (the others' draws replaced by
  // the label: reward 0, no gradient term), NaN rewards for the others.
  std::vector<std::int32_t> valid_draws = draws;
  for (std::int64_t i = 0; i < B * G; ++i)
    if (no_distribution(i / G)) valid_draws[static_cast<std::size_t>(i)] = labels[static_cast<std::size_t>(i / G)];
  const auto pd = to_double(params), cd = to_double(cot);
  const MahalanobisReward<double> rr{form, vector_view<const double>(pd.data(), P)};
  const MatrixView<const std::int32_t> kv{valid_draws.data(), B, G, G};
  const VectorView<const std::int32_t> lv{labels.data(), B};
  std::vector<double> r(static_cast<std::size_t>(B * G)), g(static_cast<std::size_t>(P));
  reference::rewards::reward_one_hot(rr, kv, lv, C, matrix_view(r.data(), B, G));
  reference::rewards::reward_backward_one_hot(rr, kv, lv, C, matrix_view<const double>(cd.data(), B, G),
                                              vector_view(g.data(), P));
  for (std::int64_t i = 0; i < B * G; ++i)
    if (no_distribution(i / G)) r[static_cast<std::size_t>(i)] = std::nan("");

  D2R_EMU_EXPECT_CLOSE(checked(out, "one_hot"), r, 1e-5, 1e-6);
  D2R_EMU_EXPECT_CLOSE(column_sums(checked(partial, "one_hot grad chunks"), chunks, P), g, 1e-4, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Forms, OneHotWithoutDistribution,
                         ::testing::Values(RewardForm::scalar, RewardForm::diagonal, RewardForm::full),
                         [](const ::testing::TestParamInfo<RewardForm>& info) { return std::string(form_name(info.param)); });

// ------------------------------------------------------------------------------------ transforms

struct TransformCase {
  const char* name;
  std::int64_t B, G;
  unsigned grid, block;
};
void PrintTo(const TransformCase& c, std::ostream* os) { *os << c.name; }

class TransformEmulation : public ::testing::TestWithParam<std::tuple<Transform, TransformCase>> {};

TEST_P(TransformEmulation, ForwardAndBackwardMatchReference) {
  const auto [kind, c] = GetParam();
  const std::int64_t B = c.B, G = c.G;
  TestRng rng(static_cast<std::uint64_t>(5 + B * G + 7 * static_cast<int>(kind)));
  const auto r = uniform(rng, B * G, -3, 0), da = uniform(rng, B * G, -1, 1);
  const FloatMatrix d_r(B, G, r), d_da(B, G, da);
  const TransformOptions<float> of{kind, 0.7f, 1e-4f};
  const TransformOptions<double> od{kind, static_cast<double>(0.7f), static_cast<double>(1e-4f)};
  FloatMatrix a(B, G), dr(B, G);
  const simt::LaunchConfig config{c.grid, c.block, 0};
  simt::launch(config, rw::transform_kernel, of, d_r.cview(), a.view());
  simt::launch(config, rw::transform_backward_kernel, of, d_r.cview(), d_da.cview(), dr.view());
  const auto rd = to_double(r), dad = to_double(da);
  std::vector<double> a_ref(static_cast<std::size_t>(B * G)), dr_ref(a_ref.size());
  reference::rewards::transform_rewards(od, matrix_view<const double>(rd.data(), B, G),
                                        matrix_view(a_ref.data(), B, G));
  reference::rewards::transform_rewards_backward(od, matrix_view<const double>(rd.data(), B, G),
                                                 matrix_view<const double>(dad.data(), B, G),
                                                 matrix_view(dr_ref.data(), B, G));
  D2R_EMU_EXPECT_CLOSE(checked(a, "advantages"), a_ref, 1e-5, 1e-6);
  // The standardize VJP is a difference of terms of size |da|/(std + ε) that nearly cancel (exactly
  // so for G = 2, whose advantages are ±1/√2 whatever r): its absolute tolerance scales with them.
  double terms = max_abs(dr_ref);
  if (kind == Transform::standardize)
    for (std::int64_t b = 0; b < B; ++b) {
      double mean = 0, sq = 0;
      for (std::int64_t g = 0; g < G; ++g) mean += rd[static_cast<std::size_t>(b * G + g)] / static_cast<double>(G);
      for (std::int64_t g = 0; g < G; ++g) sq += std::pow(rd[static_cast<std::size_t>(b * G + g)] - mean, 2);
      terms = std::max(terms, max_abs(dad) / (std::sqrt(sq / static_cast<double>(G - 1)) + od.standardize_epsilon));
    }
  D2R_EXPECT_CLOSE(checked(dr, "d_rewards"), dr_ref, 1e-4, 1e-5 * terms);
}

// Every transform on G = 2 (the least standardize and leave-one-out take), G = 1 for the others;
// 41 and 70 rows for one and two 32-thread blocks (the per-row grid-stride loop runs twice).
std::vector<std::tuple<Transform, TransformCase>> transform_cases() {
  std::vector<std::tuple<Transform, TransformCase>> out;
  for (Transform kind : {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out, Transform::standardize})
    for (const TransformCase& c : {TransformCase{"B1_G1", 1, 1, 1, 256}, TransformCase{"B3_G2", 3, 2, 1, 256},
                                   TransformCase{"B41_G17", 41, 17, 1, 32}, TransformCase{"B70_G5_grid2", 70, 5, 2, 32}})
      if (c.G >= 2 || !needs_two(kind)) out.emplace_back(kind, c);
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TransformEmulation, ::testing::ValuesIn(transform_cases()),
    [](const ::testing::TestParamInfo<std::tuple<Transform, TransformCase>>& info) {
      return std::string(transform_name(std::get<0>(info.param))) + "_" + std::get<1>(info.param).name;
    });

// A group whose G rewards are all equal (e.g. one-hot reward −2β when every draw misses the
// label) has no spread: standardize must give advantages exactly 0, not rounding noise amplified
// by 1/ε, and its VJP must match the reference's (ε-scaled centring, no spread term).
std::vector<float> constant_group_rewards(std::int64_t G, const std::vector<float>& values) {
  std::vector<float> r;
  for (float v : values) r.insert(r.end(), static_cast<std::size_t>(G), v);
  return r;
}
const std::vector<float> kConstantRewards{-2.0f * 0.1f, -2.0f * 0.3f, -2.0f * 0.7f, -2.0f * 1.3f, -0.7f, 0.3f, 1234.5f, -3.3e-5f};

TEST(TransformStandardizeConstantGroup, AdvantagesAreExactlyZero) {
  for (std::int64_t G : {2, 3, 5, 6, 7, 10, 16, 50}) {
    const auto r = constant_group_rewards(G, kConstantRewards);
    const auto B = static_cast<std::int64_t>(kConstantRewards.size());
    const FloatMatrix d_r(B, G, r);
    FloatMatrix a(B, G);
    simt::launch(simt::LaunchConfig{1, 32, 0}, rw::transform_kernel,
                 TransformOptions<float>{Transform::standardize, 1.0f, 1e-6f}, d_r.cview(), a.view());
    const auto av = checked(a, "advantages");
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t g = 0; g < G; ++g)
        EXPECT_EQ(av[static_cast<std::size_t>(b * G + g)], 0.0)
            << "G = " << G << ", all rewards " << kConstantRewards[static_cast<std::size_t>(b)] << ": advantage " << g;
  }
}

TEST(TransformStandardizeConstantGroup, BackwardMatchesReference) {
  for (std::int64_t G : {3, 10, 16}) {
    const auto r = constant_group_rewards(G, kConstantRewards);
    const auto B = static_cast<std::int64_t>(kConstantRewards.size());
    TestRng rng(static_cast<std::uint64_t>(G));
    const auto da = uniform(rng, B * G, -1, 1);
    const FloatMatrix d_r(B, G, r), d_da(B, G, da);
    FloatMatrix dr(B, G);
    simt::launch(simt::LaunchConfig{1, 32, 0}, rw::transform_backward_kernel,
                 TransformOptions<float>{Transform::standardize, 1.0f, 1e-6f}, d_r.cview(), d_da.cview(), dr.view());
    const auto rd = to_double(r), dad = to_double(da);
    std::vector<double> dr_ref(static_cast<std::size_t>(B * G));
    reference::rewards::transform_rewards_backward(
        TransformOptions<double>{Transform::standardize, 1.0, static_cast<double>(1e-6f)},
        matrix_view<const double>(rd.data(), B, G), matrix_view<const double>(dad.data(), B, G),
        matrix_view(dr_ref.data(), B, G));
    SCOPED_TRACE("G = " + std::to_string(G));
    D2R_EMU_EXPECT_CLOSE(checked(dr, "d_rewards"), dr_ref, 1e-4, 1e-5);
  }
}

}  // namespace
}  // namespace d2r::emulation
