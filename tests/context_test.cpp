// Context, Buffer and error plumbing on the cpu backend (and the cuda request without a GPU; the
// cuda backend itself is tested in gpu_kernels_test: tests/gpu_test.cpp, tests/errors_gpu_test.cpp).
#include <gtest/gtest.h>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

TEST(Context, CpuBackendResolvesAndOwnsAWorkspace) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 5});
  EXPECT_EQ(ctx.backend(), d2r::Backend::cpu);
  EXPECT_EQ(ctx.seed(), 5u);
  EXPECT_EQ(ctx.stream(), nullptr);
  EXPECT_EQ(ctx.device_name(), "cpu");
  void* a = ctx.workspace(100);
  ASSERT_NE(a, nullptr);
  EXPECT_GE(ctx.workspace_capacity(), 100u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % 256, 0u);
  EXPECT_EQ(ctx.workspace(50), a) << "a smaller request must not reallocate";
  ctx.workspace(1 << 20);
  EXPECT_GE(ctx.workspace_capacity(), std::size_t{1} << 20);
  EXPECT_THROW(ctx.cublas(), d2r::Error);
  ctx.synchronize();
}

// With a GPU, Backend::automatic picks cuda: GpuContext.AutomaticPicksCudaWhenADeviceIsUsable in
// gpu_kernels_test (tests/errors_gpu_test.cpp).
TEST(Context, AutomaticPicksCpuWithoutADevice) {
  if (d2r::test::gpu_available()) GTEST_SKIP() << "a CUDA device is present: the no-device path cannot be exercised";
  d2r::Context ctx({.backend = d2r::Backend::automatic});
  EXPECT_EQ(ctx.backend(), d2r::Backend::cpu);
}

TEST(Context, CudaWithoutDeviceIsAClearError) {
  if (d2r::test::gpu_available()) GTEST_SKIP() << "a CUDA device is present: the no-device path cannot be exercised";
  try {
    d2r::Context ctx({.backend = d2r::Backend::cuda});
    FAIL() << "expected d2r::Error";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.kind(), d2r::ErrorKind::unsupported);
    EXPECT_EQ(e.argument(), "backend");
    // A build without CUDA says so instead (tests/backend_test.cpp).
    EXPECT_NE(std::string(e.what()).find(D2R_WITH_CUDA ? "no CUDA device" : "built without CUDA"), std::string::npos)
        << e.what();
  }
}

TEST(Context, ParseBackend) {
  EXPECT_EQ(d2r::parse_backend("cpu"), d2r::Backend::cpu);
  EXPECT_EQ(d2r::parse_backend("cuda"), d2r::Backend::cuda);
  EXPECT_EQ(d2r::parse_backend("auto"), d2r::Backend::automatic);
  try {
    d2r::parse_backend("gpu");
    FAIL() << "expected d2r::Error";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "backend");
    EXPECT_NE(std::string(e.what()).find("'gpu'"), std::string::npos);
  }
}

TEST(Buffer, RoundTripsAndMoves) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::vector<double> values{1.5, -2.0, 3.25};
  d2r::Buffer<double> a(ctx, std::span<const double>(values));
  EXPECT_EQ(a.to_host(), values);
  d2r::Buffer<double> b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(b.size(), 3u);
  EXPECT_EQ(b.to_host(), values);
  auto m = b.matrix(1, 3);
  EXPECT_EQ(m(0, 2), 3.25);
}

#if D2R_WITH_CUDA
TEST(Error, CudaErrorsCarryCallAndLocation) {
  try {
    D2R_CUDA_TRY(cudaErrorInvalidValue);
    FAIL() << "expected d2r::Error";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.kind(), d2r::ErrorKind::cuda);
    const std::string what = e.what();
    EXPECT_NE(what.find("cudaErrorInvalidValue"), std::string::npos) << what;
    EXPECT_NE(what.find("context_test.cpp"), std::string::npos) << what;
  }
  try {
    D2R_CUBLAS_TRY(CUBLAS_STATUS_INVALID_VALUE);
    FAIL() << "expected d2r::Error";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.kind(), d2r::ErrorKind::cublas);
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos) << e.what();
  }
}
#else
TEST(Error, CudaMacrosThrowBuiltWithoutCuda) {
  try {
    D2R_CUDA_TRY(cudaErrorInvalidValue);
    FAIL() << "expected d2r::Error";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.kind(), d2r::ErrorKind::unsupported);
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
}
#endif

}  // namespace
