// The cuda backend's plumbing: Context resources, Buffer, and the memory-space check.
#include <gtest/gtest.h>

#include "d2r/d2r.hpp"
#include "host/src/backend.hpp"
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

// The backend boundary: a double call on cuda is an error, never a silent no-op; float runs the
// cuda function with the context's stream and device.
TEST(GpuRunOn, DoubleOnCudaThrowsAndFloatRunsTheCudaFunction) {
  D2R_REQUIRE_GPU();
  d2r::Context ctx({.backend = d2r::Backend::cuda});
  int cpu_calls = 0, cuda_calls = 0;
  try {
    d2r::detail::run_on<double>(
        ctx, [&] { ++cpu_calls; }, [&](const auto&) { ++cuda_calls; });
    FAIL() << "expected d2r::Error";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.kind(), d2r::ErrorKind::unsupported);
    EXPECT_NE(std::string(e.what()).find("float only"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cpu_calls + cuda_calls, 0);
  EXPECT_THROW(d2r::detail::check_backend_type<double>(ctx, "f", "x"), d2r::Error);
  const cudaStream_t stream = d2r::detail::run_on<float>(
      ctx, [&] { return cudaStream_t{}; },
      [&](const auto& ex) {
        ++cuda_calls;
        return ex.stream;
      });
  EXPECT_EQ(stream, ctx.stream());
  EXPECT_EQ(cuda_calls, 1);
  EXPECT_GT(ctx.device_properties().multiprocessors, 0);
  // A public entry point called with double views on cuda names its argument.
  std::vector<double> p(4, 0.0);
  try {
    d2r::clamp_values<double>(ctx, 1.0, d2r::VectorView<double>{p.data(), 4});
    FAIL() << "expected d2r::Error";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.kind(), d2r::ErrorKind::unsupported);
  }
}

TEST(GpuCapture, ReplaysAndGoesStaleWhenTheWorkspaceMoves) {
  D2R_REQUIRE_GPU();
  d2r::Context ctx({.backend = d2r::Backend::cuda});
  d2r::Buffer<std::int64_t> counter(ctx, std::span<const std::int64_t>(std::vector<std::int64_t>{0}));
  (void)ctx.workspace(1024);
  d2r::CapturedGraph graph = ctx.capture([&] { d2r::advance_counter(ctx, counter.vector(), 2); });
  EXPECT_EQ(counter.to_host()[0], 0) << "capturing runs nothing";
  EXPECT_FALSE(graph.stale());
  graph.launch();
  graph.launch();
  EXPECT_EQ(counter.to_host()[0], 4);
  (void)ctx.workspace(ctx.workspace_capacity() * 4);  // grows: the block moves
  EXPECT_TRUE(graph.stale());
}

}  // namespace
