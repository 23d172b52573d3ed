// The NCCL communicator with one rank (d2r/comm/nccl.hpp), on the context's stream: an allreduce
// and a broadcast eagerly and inside a captured CUDA graph (replayed twice), the byte counters,
// and sync(). Skips without a GPU (fails under D2R_EXPECT_GPU=1); compiled only with NCCL.
#include <gtest/gtest.h>

#include <vector>

#include "d2r/comm/nccl.hpp"
#include "d2r/d2r.hpp"
#include "tests/test_utils.hpp"

namespace {

TEST(NcclCommunicatorGpu, OneRankEagerAndInACapturedGraph) {
  D2R_REQUIRE_GPU();
  d2r::Context ctx({.backend = d2r::Backend::cuda});
  d2r::NcclHandle handle = d2r::nccl_single_rank();
  d2r::NcclCommunicator comm(handle.get(), ctx.stream(), 60);
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  EXPECT_EQ(comm.memory(), d2r::CommMemory::device);

  const std::vector<float> host{1.0f, -2.5f, 3.25f, 1e-3f};
  d2r::Buffer<float> v(ctx, host);
  comm.allreduce_sum(std::span<float>(v.data(), host.size()));
  comm.sync();
  EXPECT_EQ(v.to_host(), host) << "the sum over one rank is the value";
  d2r::Buffer<double> d(ctx, std::vector<double>{0.5, 4.0});
  comm.allreduce_sum(std::span<double>(d.data(), 2));
  comm.broadcast(std::as_writable_bytes(std::span<double>(d.data(), 2)), 0);
  comm.barrier();
  EXPECT_EQ(d.to_host(), (std::vector<double>{0.5, 4.0}));
  EXPECT_EQ(comm.stats().allreduce_calls, 2u);
  EXPECT_EQ(comm.stats().allreduce_bytes, host.size() * sizeof(float) + 2 * sizeof(double));
  EXPECT_EQ(comm.stats().broadcast_bytes, 2 * sizeof(double));
  EXPECT_EQ(comm.stats().barriers, 1u);

  // Inside a graph: scale by 2 (cuBLAS on the same stream), allreduce, replayed twice → ×4.
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const float two = 2.0f;
  ASSERT_EQ(cublasSscal(ctx.cublas(), static_cast<int>(host.size()), &two, v.data(), 1), CUBLAS_STATUS_SUCCESS);
  comm.allreduce_sum(std::span<float>(v.data(), host.size()));
  ASSERT_EQ(cudaStreamEndCapture(ctx.stream(), &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, ctx.stream()), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, ctx.stream()), cudaSuccess);
  comm.sync();
  const std::vector<float> out = v.to_host();
  for (std::size_t i = 0; i < host.size(); ++i) EXPECT_EQ(out[i], 4.0f * host[i]) << i;
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
}

}  // namespace
