// The backend boundary (host/src/backend.hpp) and Context's copies and graphs on the cpu backend,
// and what a build without CUDA does with a cuda request. The cuda side: tests/gpu_test.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "d2r/d2r.hpp"
#include "host/src/backend.hpp"

namespace {

TEST(RunOn, CpuContextRunsTheCpuFunctionAndReturnsItsValue) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  int cpu_calls = 0, cuda_calls = 0;
  const int got = d2r::detail::run_on<double>(
      ctx, [&] { return ++cpu_calls * 7; }, [&](const auto&) { return ++cuda_calls; });
  EXPECT_EQ(got, 7);
  EXPECT_EQ(cpu_calls, 1);
  EXPECT_EQ(cuda_calls, 0);
  // void results and const contexts too.
  const d2r::Context& cref = ctx;
  d2r::detail::run_on<float>(
      cref, [&] { ++cpu_calls; }, [&](const auto&) { ++cuda_calls; });
  EXPECT_EQ(cpu_calls, 2);
  EXPECT_EQ(cuda_calls, 0);
}

TEST(RunOn, CheckBackendTypeAcceptsEverythingOnCpu) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  EXPECT_NO_THROW(d2r::detail::check_backend_type<double>(ctx, "f", "x"));
  EXPECT_NO_THROW(d2r::detail::check_backend_type<float>(ctx, "f", "x"));
}

TEST(ContextCopies, ToHostAndFromHostOnCpu) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const std::vector<float> src{1, 2, 3, 4, 5, 6};
  std::vector<float> dst(6, -1);
  ctx.from_host(dst.data(), src.data(), src.size() * sizeof(float));
  EXPECT_EQ(dst, src);
  std::vector<float> back(6, 0);
  ctx.to_host(back.data(), dst.data(), dst.size() * sizeof(float));
  EXPECT_EQ(back, src);
  // A strided 2 x 2 view of a 2 x 3 matrix comes back packed.
  const std::vector<float> packed = ctx.to_host(d2r::MatrixView<const float>{src.data(), 2, 2, 3});
  EXPECT_EQ(packed, (std::vector<float>{1, 2, 4, 5}));
  const std::vector<std::int32_t> labels{3, 1, 2};
  EXPECT_EQ(ctx.to_host(d2r::VectorView<const std::int32_t>{labels.data(), 3}), labels);
}

TEST(ContextGraphs, CaptureNeedsTheCudaBackend) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  bool ran = false;
  try {
    (void)ctx.capture([&] { ran = true; });
    FAIL() << "expected d2r::Error";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.kind(), d2r::ErrorKind::unsupported);
    EXPECT_NE(std::string(e.what()).find("cuda backend"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(ran);
  const d2r::CapturedGraph empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_TRUE(empty.stale());
  EXPECT_THROW(empty.launch(), d2r::Error);
}

TEST(ContextDevice, CpuPropertiesAreNamedCpu) {
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  EXPECT_EQ(ctx.device_properties().name, "cpu");
  EXPECT_EQ(ctx.device_properties().multiprocessors, 0);
  EXPECT_EQ(ctx.device_name(), "cpu");
}

#if !D2R_WITH_CUDA
TEST(NoCuda, CudaContextsThrowBuiltWithoutCuda) {
  EXPECT_FALSE(d2r::cuda_device_available());
  try {
    d2r::Context ctx({.backend = d2r::Backend::cuda});
    FAIL() << "expected d2r::Error";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.kind(), d2r::ErrorKind::unsupported);
    EXPECT_EQ(e.argument(), "backend");
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
  // automatic resolves to cpu.
  d2r::Context ctx({.backend = d2r::Backend::automatic});
  EXPECT_EQ(ctx.backend(), d2r::Backend::cpu);
}
#endif

}  // namespace
