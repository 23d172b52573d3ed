// Smallest use of d2r from an outside project: draw from a diagonal Gaussian on whatever backend
// is available and check the sample mean.
#include <cmath>
#include <cstdio>
#include <vector>

#include <d2r/d2r.hpp>

int main() {
  d2r::Context ctx({.backend = d2r::Backend::automatic, .seed = 1});
  const std::int64_t B = 2, n = 3, G = 2000;
  std::vector<float> mean{0, 1, 2, 3, 4, 5}, log_std(B * n, 0.0f);
  d2r::Buffer<float> d_mean(ctx, std::span<const float>(mean)), d_log_std(ctx, std::span<const float>(log_std));
  d2r::Buffer<float> samples(ctx, B * G * n);
  d2r::DiagGaussian<float> head{d_mean.matrix(B, n), d_log_std.matrix(B, n)};
  d2r::sample(ctx, head, G, {.step = 0}, samples.matrix(B * G, n));
  const std::vector<float> host = samples.to_host();
  double sum = 0;
  for (std::int64_t g = 0; g < G; ++g) sum += host[(1 * G + g) * n + 2];
  const double m = sum / G;
  std::printf("d2r %s on %s: mean of (row 1, dim 2) = %.3f (expected 5)\n", D2R_VERSION_STRING,
              d2r::to_string(ctx.backend()), m);
  if (std::abs(m - 5.0) > 0.1) return 1;
  std::printf("consumer: ok\n");
  return 0;
}
