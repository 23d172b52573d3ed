// The cuda backend's argument checks (float only, device memory only) and its choice by
// Backend::automatic. These cases used to live in core_test and distribution_errors_test under the
// cpu label; they need a GPU, so they belong to gpu_kernels_test (label gpu), where
// D2R_EXPECT_GPU=1 turns a missing GPU into a failure.
#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::expect_error;
using d2r::test::GuardedMatrix;

TEST(GpuContext, AutomaticPicksCudaWhenADeviceIsUsable) {
  D2R_REQUIRE_GPU();
  d2r::Context ctx({.backend = d2r::Backend::automatic});
  EXPECT_EQ(ctx.backend(), d2r::Backend::cuda);
  EXPECT_NE(ctx.stream(), nullptr);
}

TEST(DiagGaussianErrorsGpu, DoubleOnTheCudaBackendIsUnsupported) {
  D2R_REQUIRE_GPU();
  constexpr std::int64_t B = 3, n = 2;
  d2r::Context gpu({.backend = d2r::Backend::cuda});
  d2r::Buffer<double> m(gpu, B * n), s(gpu, B * n);
  GuardedMatrix<double> out(gpu, 1, B);
  expect_error([&] { d2r::entropy(gpu, d2r::DiagGaussian<double>{m.matrix(B, n), s.matrix(B, n)}, out.vector()); },
               "head", "float only", d2r::ErrorKind::unsupported);
  EXPECT_TRUE(out.untouched());
}

TEST(CholeskyErrorsGpu, CudaBackendRejectsDoubleAndHostPointers) {
  D2R_REQUIRE_GPU();
  constexpr std::int64_t kB = 3, kN = 3, kG = 2, kPacked = kN * (kN + 1) / 2;
  const std::vector<double> mean(kB * kN, 0.5), tril(kB * kPacked, 0.25);
  const d2r::CholeskyGaussian<double> head{d2r::matrix_view(mean.data(), kB, kN),
                                           d2r::matrix_view(tril.data(), kB, kPacked), 1e-5};
  d2r::Context cuda({.backend = d2r::Backend::cuda});
  GuardedMatrix<double> out_d(cuda, 1, kB);
  expect_error([&] { d2r::entropy(cuda, head, out_d.vector()); }, "head", "float only", d2r::ErrorKind::unsupported);
  EXPECT_TRUE(out_d.untouched());

  // Float views in host memory on the cuda backend.
  const std::vector<float> mean_f(mean.begin(), mean.end()), tril_f(tril.begin(), tril.end());
  const d2r::CholeskyGaussian<float> host_head{d2r::matrix_view(mean_f.data(), kB, kN),
                                               d2r::matrix_view(tril_f.data(), kB, kPacked), 1e-5f};
  GuardedMatrix<float> out_f(cuda, kB * kG, kN);
  expect_error([&] { d2r::sample(cuda, host_head, kG, {}, out_f.view()); }, "head.mean", "device or managed memory");
  EXPECT_TRUE(out_f.untouched());
}

TEST(CategoricalErrorsGpu, CudaBackendRejectsDoubleAndHostPointers) {
  D2R_REQUIRE_GPU();
  constexpr std::int64_t B = 3, C = 5, G = 4;
  const std::vector<float> logits{0.1f, -0.4f, 1.0f, 0.2f, 0.3f,  //
                                  2.0f, 0.0f,  0.5f, 0.5f, -1.0f,  //
                                  0.4f, 0.2f,  -0.3f, 0.7f, 0.0f};
  const d2r::Categorical<float> host_head{d2r::matrix_view(logits.data(), B, C)};
  d2r::Context host({.backend = d2r::Backend::cpu});
  GuardedMatrix<std::int32_t> host_samples(host, B, G);

  d2r::Context gpu({.backend = d2r::Backend::cuda});
  d2r::Buffer<double> logits_d(gpu, B * C), out_d(gpu, B);
  expect_error([&] { d2r::entropy(gpu, d2r::Categorical<double>{logits_d.matrix(B, C)}, out_d.vector()); }, "head",
               "float only", d2r::ErrorKind::unsupported);
  GuardedMatrix<std::int32_t> gpu_samples(gpu, B, G);
  GuardedMatrix<float> gpu_h(gpu, 1, B);
  d2r::Buffer<float> gpu_logits(gpu, std::span<const float>(logits));
  // Host logits on the cuda backend.
  expect_error([&] { d2r::sample(gpu, host_head, G, {}, gpu_samples.view()); }, "head.logits",
               "needs device or managed memory");
  expect_error([&] { d2r::entropy(gpu, host_head, gpu_h.vector()); }, "head.logits", "needs device or managed memory");
  // Host output on the cuda backend.
  expect_error([&] {
    d2r::sample(gpu, d2r::Categorical<float>{gpu_logits.matrix(B, C)}, G, {}, host_samples.view());
  }, "samples", "needs device or managed memory");
  EXPECT_TRUE(gpu_samples.untouched());
  EXPECT_TRUE(gpu_h.untouched());
  EXPECT_TRUE(host_samples.untouched());
}

}  // namespace
