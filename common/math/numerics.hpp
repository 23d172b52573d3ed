#pragma once
// Small __host__ __device__ numerical helpers shared by the kernels and the CPU reference.
// Overloaded on float/double so that templated code calls the right-precision libm function
// on both sides (logf on the GPU for float, log in the double reference).

#include <cmath>
#include <cstdint>

#include "common/math/philox.hpp"

namespace d2r::math {

inline constexpr double kPi = 3.14159265358979323846;
inline constexpr double kLog2Pi = 1.83787706640934548356;     // log(2π)
inline constexpr double kLog2PiE = 2.83787706640934548356;    // log(2πe)

D2R_HD float log_(float x) { return logf(x); }
D2R_HD double log_(double x) { return log(x); }
D2R_HD float exp_(float x) { return expf(x); }
D2R_HD double exp_(double x) { return exp(x); }
D2R_HD float log1p_(float x) { return log1pf(x); }
D2R_HD double log1p_(double x) { return log1p(x); }
D2R_HD float sqrt_(float x) { return sqrtf(x); }
D2R_HD double sqrt_(double x) { return sqrt(x); }
D2R_HD float abs_(float x) { return fabsf(x); }
D2R_HD double abs_(double x) { return fabs(x); }

/// sin(2πu) and cos(2πu).
D2R_HD void sincos_2pi(float u, float& s, float& c) {
#if defined(__CUDA_ARCH__)
  sincospif(2.0f * u, &s, &c);
#else
  const double t = 2.0 * kPi * static_cast<double>(u);
  s = static_cast<float>(std::sin(t));
  c = static_cast<float>(std::cos(t));
#endif
}
D2R_HD void sincos_2pi(double u, double& s, double& c) {
#if defined(__CUDA_ARCH__)
  sincospi(2.0 * u, &s, &c);
#else
  s = std::sin(2.0 * kPi * u);
  c = std::cos(2.0 * kPi * u);
#endif
}

/// softplus(x) = log(1 + e^x), without overflow for large x nor loss for very negative x.
template <class T>
D2R_HD T softplus(T x) {
  return (x > T(0) ? x : T(0)) + log1p_(exp_(-abs_(x)));
}
/// d softplus / dx = sigmoid(x).
template <class T>
D2R_HD T sigmoid(T x) {
  return x >= T(0) ? T(1) / (T(1) + exp_(-x)) : exp_(x) / (T(1) + exp_(x));
}

/// Four standard normals for dims 4*quad .. 4*quad+3 (Box–Muller on the 4 Philox outputs:
/// (u0,u1) -> (z0,z1), (u2,u3) -> (z2,z3)).
template <class T>
struct Normal4 {
  T z[4];
};
template <class T>
D2R_HD Normal4<T> normal4(std::uint64_t seed, std::uint32_t step, std::uint32_t row, std::uint32_t generation,
                          std::uint32_t quad) {
  const Philox4 bits = draw_bits(seed, step, row, generation, quad);
  Normal4<T> out;
  for (int pair = 0; pair < 2; ++pair) {
    const T u1 = uniform_open<T>(bits.v[2 * pair]);
    const T u2 = uniform_open<T>(bits.v[2 * pair + 1]);
    const T radius = sqrt_(T(-2) * log_(u1));
    T s, c;
    sincos_2pi(u2, s, c);
    out.z[2 * pair] = radius * c;
    out.z[2 * pair + 1] = radius * s;
  }
  return out;
}

/// Standard normal for one dim (computes its quad; use normal4 when walking dims in order).
template <class T>
D2R_HD T normal(std::uint64_t seed, std::uint32_t step, std::uint32_t row, std::uint32_t generation,
                std::uint32_t dim) {
  return normal4<T>(seed, step, row, generation, dim / 4u).z[dim % 4u];
}

/// The uniform that drives categorical draw `generation` of `row` (dim 0 of the stream).
template <class T>
D2R_HD T categorical_uniform(std::uint64_t seed, std::uint32_t step, std::uint32_t row, std::uint32_t generation) {
  return uniform_open<T>(draw_bits(seed, step, row, generation, 0u).v[0]);
}

}  // namespace d2r::math
