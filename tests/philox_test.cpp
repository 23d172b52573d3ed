// Philox4x32-10 against the published known-answer vectors (Random123 tests/kat_vectors), and
// the properties of the uniform/normal mappings that the samplers rely on.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "common/math/numerics.hpp"
#include "common/math/philox.hpp"

namespace {

using d2r::math::Philox4;

struct Kat {
  Philox4 counter;
  std::uint32_t k0, k1;
  Philox4 expected;
};

TEST(Philox, KnownAnswerVectors) {
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff,
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& kat : kats) {
    const Philox4 out = d2r::math::philox4x32_10(kat.counter, kat.k0, kat.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out.v[i], kat.expected.v[i]) << "word " << i;
  }
}

TEST(Philox, KeyLayoutIsSeedStepRowGenerationQuad) {
  // counter = {quad, generation, row, step}, key = seed split into (lo, hi).
  const std::uint64_t seed = 0x299f31d0a4093822ULL;
  const Philox4 a = d2r::math::draw_bits(seed, 0x03707344, 0x13198a2e, 0x85a308d3, 0x243f6a88);
  EXPECT_EQ(a.v[0], 0xd16cfe09u);
  EXPECT_EQ(a.v[3], 0x24126ea1u);
}

TEST(Philox, UniformIsInOpenIntervalAndExactInFloat) {
  for (std::uint32_t bits : {0u, 1u, 511u, 512u, 0x7fffffffu, 0xfffffe00u, 0xffffffffu}) {
    const double u = d2r::math::uniform_open<double>(bits);
    const float uf = d2r::math::uniform_open<float>(bits);
    EXPECT_GT(u, 0.0);
    EXPECT_LT(u, 1.0);
    EXPECT_EQ(static_cast<double>(uf), u) << "float and double must see the same uniform";
  }
}

TEST(Philox, NormalsHaveStandardMoments) {
  // 4·10^5 normals: mean within 4/sqrt(N), variance within 4·sqrt(2/N), 4th moment near 3.
  const int rows = 100000;
  double s1 = 0, s2 = 0, s4 = 0;
  for (int r = 0; r < rows; ++r) {
    const auto z = d2r::math::normal4<double>(7, 3, static_cast<std::uint32_t>(r), 0, 0);
    for (double v : z.z) {
      s1 += v;
      s2 += v * v;
      s4 += v * v * v * v;
    }
  }
  const double n = 4.0 * rows;
  EXPECT_NEAR(s1 / n, 0.0, 4.0 / std::sqrt(n));
  EXPECT_NEAR(s2 / n, 1.0, 4.0 * std::sqrt(2.0 / n));
  EXPECT_NEAR(s4 / n, 3.0, 4.0 * std::sqrt(96.0 / n));
}

TEST(Philox, DistinctKeysGiveDistinctStreams) {
  std::set<std::uint32_t> seen;
  for (std::uint32_t step = 0; step < 4; ++step)
    for (std::uint32_t row = 0; row < 4; ++row)
      for (std::uint32_t gen = 0; gen < 4; ++gen)
        for (std::uint32_t quad = 0; quad < 4; ++quad) seen.insert(d2r::math::draw_bits(1, step, row, gen, quad).v[0]);
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_NE(d2r::math::draw_bits(1, 0, 0, 0, 0).v[0], d2r::math::draw_bits(2, 0, 0, 0, 0).v[0]);
}

TEST(Philox, NormalOfOneDimMatchesItsQuad) {
  const auto quad = d2r::math::normal4<double>(11, 2, 5, 3, 1);
  for (std::uint32_t k = 0; k < 4; ++k) EXPECT_EQ(d2r::math::normal<double>(11, 2, 5, 3, 4 + k), quad.z[k]);
}

}  // namespace
