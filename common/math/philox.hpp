#pragma once
// Philox4x32-10 counter-based generator (Salmon et al., SC'11), shared verbatim by the CUDA
// kernels and the CPU reference so that both draw identical numbers for the same key.
//
// d2r keys every draw by (seed, step, row, generation, dim):
//   key     = seed (64 bits)
//   counter = {dim / 4, generation, row, step}
// One Philox call yields the 4 draws of dims 4q..4q+3, so a kernel can give any thread any
// element and still produce the stream the CPU reference produces, for every launch shape.

#include <cstdint>

#if defined(__CUDACC__)
#define D2R_HD __host__ __device__ __forceinline__
#else
#define D2R_HD inline
#endif

namespace d2r::math {

struct Philox4 {
  std::uint32_t v[4];
};

D2R_HD std::uint32_t mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t& hi) {
#if defined(__CUDA_ARCH__)
  hi = __umulhi(a, b);
  return a * b;
#else
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  return static_cast<std::uint32_t>(p);
#endif
}

/// Philox4x32 with 10 rounds: the bijection counter -> 128 random bits under `key`.
D2R_HD Philox4 philox4x32_10(Philox4 ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, hi1;
    const std::uint32_t lo0 = mulhilo32(kM0, ctr.v[0], hi0);
    const std::uint32_t lo1 = mulhilo32(kM1, ctr.v[2], hi1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

/// The 128 bits for dims 4*quad .. 4*quad+3 of one (seed, step, row, generation).
D2R_HD Philox4 draw_bits(std::uint64_t seed, std::uint32_t step, std::uint32_t row,
                         std::uint32_t generation, std::uint32_t quad) {
  return philox4x32_10(Philox4{{quad, generation, row, step}}, static_cast<std::uint32_t>(seed),
                       static_cast<std::uint32_t>(seed >> 32));
}

/// Where one call's draws sit in the stream: the context's seed, the DrawKey's step, and the
/// global index of the call's first row (rows of a shard continue the whole batch's stream).
struct DrawPosition {
  std::uint64_t seed;
  std::uint32_t step;
  std::uint32_t first_row;
  const std::int64_t* step_offset;  ///< nullptr, or a counter read at execution (DrawKey::step_offset)
  /// The step the draws use: step + *step_offset (modulo 2^32).
  D2R_HD std::uint32_t step_at() const {
    return step_offset == nullptr ? step : step + static_cast<std::uint32_t>(*step_offset);
  }
};

/// Uniform in the open interval (0, 1) from 32 random bits: (2k+1) / 2^24 with k the top 23
/// bits. Exactly representable in float, so float (GPU) and double (reference) see the same u.
template <class T>
D2R_HD T uniform_open(std::uint32_t bits) {
  return static_cast<T>((bits >> 9) * 2u + 1u) * static_cast<T>(1.0 / 16777216.0);
}

}  // namespace d2r::math
