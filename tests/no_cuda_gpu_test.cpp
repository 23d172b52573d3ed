// gpu_kernels_test of a build without CUDA (-DD2R_ENABLE_CUDA=OFF): the GPU test sources call the
// CUDA runtime and are not built; this one case stands for them, so `ctest -L gpu` reports them as
// skipped with the reason (and fails under D2R_EXPECT_GPU=1) instead of finding no tests.
#include <gtest/gtest.h>

#include "tests/test_utils.hpp"

namespace {

TEST(GpuKernels, NotBuiltWithoutCuda) {
  D2R_REQUIRE_GPU();
  FAIL() << "a build without CUDA cannot have a usable CUDA device";
}

}  // namespace
