// The cuda backend's plumbing: Context resources, Buffer, and the memory-space check.
#include <gtest/gtest.h>

#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

TEST(GpuContext, OwnsStreamCublasAndDeviceWorkspace) {
  D2R_REQUIRE_GPU();
  d2r::Context ctx({.backend = d2r::Backend::cuda, .seed = 3});
  EXPECT_EQ(ctx.backend(), d2r::Backend::cuda);
  EXPECT_NE(ctx.stream(), nullptr);
  EXPECT_FALSE(ctx.device_name().empty());
  EXPECT_NE(ctx.cublas(), nullptr);
  void* w = ctx.workspace(1000);
  cudaPointerAttributes attributes{};
  ASSERT_EQ(cudaPointerGetAttributes(&attributes, w), cudaSuccess);
  EXPECT_EQ(attributes.type, cudaMemoryTypeDevice);
  ctx.synchronize();
}

TEST(GpuContext, BorrowedStreamIsUsedAndNotDestroyed) {
  D2R_REQUIRE_GPU();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    d2r::Context ctx({.backend = d2r::Backend::cuda, .stream = stream});
    EXPECT_EQ(ctx.stream(), stream);
  }
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess) << "the borrowed stream must outlive the context";
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(GpuBuffer, RoundTripsThroughDeviceMemory) {
  D2R_REQUIRE_GPU();
  d2r::Context ctx({.backend = d2r::Backend::cuda});
  const std::vector<float> values{1, 2, 3, -4.5f};
  d2r::Buffer<float> buffer(ctx, std::span<const float>(values));
  EXPECT_EQ(buffer.backend(), d2r::Backend::cuda);
  EXPECT_EQ(buffer.to_host(), values);
}

TEST(GpuContext, HostPointersAreRejectedByTheCudaBackend) {
  D2R_REQUIRE_GPU();
  d2r::Context ctx({.backend = d2r::Backend::cuda});
  std::vector<float> mean(4, 0), log_std(4, 0);
  d2r::Buffer<float> out(ctx, 8);
  d2r::DiagGaussian<float> head{d2r::matrix_view<const float>(mean.data(), 2, 2),
                                d2r::matrix_view<const float>(log_std.data(), 2, 2)};
  try {
    d2r::sample(ctx, head, 2, {}, out.matrix(4, 2));
    FAIL() << "expected d2r::Error";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "head.mean");
    EXPECT_NE(std::string(e.what()).find("device"), std::string::npos) << e.what();
  }
}

}  // namespace
