// Self-tests of the SIMT emulator (simt_emulator.hpp): CUDA semantics of the builtins the kernels
// use, the static shared memory and CUB stand-ins, and the faults it must report rather than hide.
// Plus a source guard: the kernel sources declare static shared memory only through D2R_SHARED.
#include "tests/emulation/kernel_emulation.hpp"

#include <cub/cub.cuh>  // the emulator's stand-in (tests/emulation/include)

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

SIMT_DYNAMIC_SHARED_MEMORY(simt_selftest, float, smem)

namespace simt_selftest {

// Each thread: its lane's values of the four shuffles (full width and width 8).
void shuffle_kernel(int* out) {
  const int t = static_cast<int>(threadIdx.x);
  const int lane = t % 32;
  const int v = 100 * (t / 32) + lane;  // lane id plus a per-warp offset
  int* o = out + 8 * t;
  o[0] = __shfl_xor_sync(0xffffffffu, v, 5);
  o[1] = __shfl_down_sync(0xffffffffu, v, 3u);
  o[2] = __shfl_up_sync(0xffffffffu, v, 3u);
  o[3] = __shfl_sync(0xffffffffu, v, 7);
  o[4] = __shfl_xor_sync(0xffffffffu, v, 9, 8);
  o[5] = __shfl_down_sync(0xffffffffu, v, 3u, 8);
  o[6] = __shfl_up_sync(0xffffffffu, v, 3u, 8);
  o[7] = __shfl_sync(0xffffffffu, v, 13, 8);
}

// D2R_SHARED (static shared memory): thread 0 reads the cell before writing it (the poison in
// every block, never the previous block's value), thread 1 reads it after the barrier.
void static_shared_kernel(float* out) {
  D2R_SHARED(float[2], cell);
  if (threadIdx.x == 0) {
    out[2 * blockIdx.x] = cell[1];
    cell[1] = static_cast<float>(blockIdx.x + 1);
  }
  __syncthreads();
  if (threadIdx.x == 1) out[2 * blockIdx.x + 1] = cell[1];
}

// The CUB stand-ins: a block sum (thread 0 only; the others get NaN), an inclusive scan of two
// items per thread, and warp sums.
template <int kBlock>
void cub_kernel(float* out) {
  using Reduce = cub::BlockReduce<float, kBlock>;
  using Scan = cub::BlockScan<float, kBlock>;
  using WarpReduce = cub::WarpReduce<float>;
  D2R_SHARED(typename Reduce::TempStorage, reduce_temp);
  D2R_SHARED(typename Scan::TempStorage, scan_temp);
  D2R_SHARED(typename WarpReduce::TempStorage[kBlock / 32], warp_temp);
  const int t = static_cast<int>(threadIdx.x);
  out[t] = Reduce(reduce_temp).Sum(static_cast<float>(t));
  float items[2] = {1.0f, static_cast<float>(t)};
  Scan(scan_temp).InclusiveSum(items, items);
  out[kBlock + 2 * t] = items[0];
  out[kBlock + 2 * t + 1] = items[1];
  out[3 * kBlock + t] = WarpReduce(warp_temp[t / 32]).Sum(static_cast<float>(t % 32 + 1));
}

// Neighbour exchange through dynamic shared memory: needs the barrier.
void rotate_kernel(float* out) {
  extern __shared__ float smem[];
  const unsigned t = threadIdx.x, n = blockDim.x;
  smem[t] = static_cast<float>(blockIdx.x * n + t);
  __syncthreads();
  out[blockIdx.x * n + t] = smem[(t + 1) % n];
}

// Reads shared memory before writing it: sees the poison in every block.
void read_first_kernel(std::uint32_t* out) {
  extern __shared__ float smem[];
  const unsigned t = threadIdx.x;
  std::memcpy(&out[blockIdx.x * blockDim.x + t], &smem[t], 4);
  __syncthreads();
  smem[t] = 1.0f;  // must not leak into the next block
}

void overrun_kernel(int floats) {
  extern __shared__ float smem[];
  if (threadIdx.x == 0) smem[floats] = 0.0f;
}

void divergent_barrier_kernel() {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

void exited_lane_kernel(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 16);
}

void throwing_kernel() {
  if (threadIdx.x == 3) throw std::runtime_error("boom");
}

// Records (blockIdx, threadIdx, blockDim, gridDim) of every thread of a 2-D grid of 3-D blocks.
void coordinates_kernel(int* out) {
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned block = blockIdx.x + gridDim.x * blockIdx.y;
  int* o = out + 5 * (block * threads + t);
  o[0] = static_cast<int>(blockIdx.x);
  o[1] = static_cast<int>(blockIdx.y);
  o[2] = static_cast<int>(t);
  o[3] = static_cast<int>(gridDim.x * 10 + gridDim.y);
  o[4] = static_cast<int>(blockDim.x * 100 + blockDim.y * 10 + blockDim.z);
}

void atomic_min_kernel(unsigned long long* first) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicMin(first, 1000ULL - t % 700);
}

}  // namespace simt_selftest

namespace d2r::emulation {
namespace {

int cuda_shuffle(int lane_values_base, int lane, int kind, int width) {
  // Reference semantics of CUDA's shuffles for a full mask (lane values = base + lane).
  const int seg = lane / width * width;
  int src = lane;
  switch (kind) {
    case 0: src = (lane ^ (width == 32 ? 5 : 9)) < seg + width ? lane ^ (width == 32 ? 5 : 9) : lane; break;
    case 1: src = lane - seg + 3 < width ? lane + 3 : lane; break;
    case 2: src = lane - seg >= 3 ? lane - 3 : lane; break;
    case 3: src = seg + (width == 32 ? 7 : 13) % width; break;
  }
  return lane_values_base + src;
}

TEST(SimtEmulator, ShufflesFollowCudaSemantics) {
  std::vector<int> out(64 * 8, -1);
  simt::launch(simt::LaunchConfig{1, 64, 0}, simt_selftest::shuffle_kernel, out.data());
  for (int t = 0; t < 64; ++t)
    for (int k = 0; k < 8; ++k)
      EXPECT_EQ(out[static_cast<std::size_t>(8 * t + k)], cuda_shuffle(100 * (t / 32), t % 32, k % 4, k < 4 ? 32 : 8))
          << "thread " << t << " shuffle " << k;
}

TEST(SimtEmulator, SyncthreadsOrdersDynamicSharedMemory) {
  const unsigned n = 96;
  std::vector<float> out(3 * n, -1.0f);
  simt::launch(simt::LaunchConfig{3, n, n * sizeof(float)}, simt_selftest::rotate_kernel, out.data());
  for (unsigned b = 0; b < 3; ++b)
    for (unsigned t = 0; t < n; ++t) EXPECT_EQ(out[b * n + t], static_cast<float>(b * n + (t + 1) % n));
}

TEST(SimtEmulator, DynamicSharedMemoryIsPoisonedForEveryBlock) {
  std::vector<std::uint32_t> out(2 * 32, 0);
  simt::launch(simt::LaunchConfig{2, 32, 32 * sizeof(float)}, simt_selftest::read_first_kernel, out.data());
  for (std::uint32_t bits : out) EXPECT_EQ(bits, simt::kSharedPoisonBits);
}

TEST(SimtEmulator, WritePastDynamicSharedMemoryIsReported) {
  simt::launch(simt::LaunchConfig{1, 32, 64 * sizeof(float)}, simt_selftest::overrun_kernel, 63);
  try {
    simt::launch(simt::LaunchConfig{1, 32, 64 * sizeof(float)}, simt_selftest::overrun_kernel, 64);
    ADD_FAILURE() << "no fault reported";
  } catch (const simt::LaunchError& e) {
    EXPECT_NE(std::string(e.what()).find("past the 256 bytes"), std::string::npos) << e.what();
  }
}

TEST(SimtEmulator, DivergentSyncthreadsIsReported) {
  try {
    simt::launch(simt::LaunchConfig{1, 32, 0}, simt_selftest::divergent_barrier_kernel);
    ADD_FAILURE() << "no fault reported";
  } catch (const simt::LaunchError& e) {
    EXPECT_NE(std::string(e.what()).find("divergent __syncthreads"), std::string::npos) << e.what();
  }
}

TEST(SimtEmulator, ShuffleFromAReturnedLaneIsReported) {
  std::vector<float> out(16);
  try {
    simt::launch(simt::LaunchConfig{1, 32, 0}, simt_selftest::exited_lane_kernel, out.data());
    ADD_FAILURE() << "no fault reported";
  } catch (const simt::LaunchError& e) {
    EXPECT_NE(std::string(e.what()).find("which is not running"), std::string::npos) << e.what();
  }
}

TEST(SimtEmulator, ExceptionInAThreadIsReported) {
  EXPECT_THROW(simt::launch(simt::LaunchConfig{1, 32, 0}, simt_selftest::throwing_kernel), simt::LaunchError);
}

TEST(SimtEmulator, InvalidLaunchesAreRefused) {
  EXPECT_THROW(simt::launch(simt::LaunchConfig{1, 1025, 0}, simt_selftest::throwing_kernel), simt::LaunchError);
  EXPECT_THROW(simt::launch(simt::LaunchConfig{1, 32, simt::kMaxDynamicSharedBytes + 4}, simt_selftest::throwing_kernel),
               simt::LaunchError);
  EXPECT_THROW(simt::launch(simt::LaunchConfig{0, 32, 0}, simt_selftest::throwing_kernel), simt::LaunchError);
}

TEST(SimtEmulator, TwoDimensionalGridOfThreeDimensionalBlocks) {
  const simt::Dim3 grid(3, 2), block(4, 2, 3);
  const int threads = 24, blocks = 6;
  std::vector<int> out(static_cast<std::size_t>(5 * threads * blocks), -1);
  simt::launch(simt::LaunchConfig{grid, block, 0}, simt_selftest::coordinates_kernel, out.data());
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) {
      const int* o = &out[static_cast<std::size_t>(5 * (b * threads + t))];
      EXPECT_EQ(o[0], b % 3);
      EXPECT_EQ(o[1], b / 3);
      EXPECT_EQ(o[2], t);
      EXPECT_EQ(o[3], 32);
      EXPECT_EQ(o[4], 423);
    }
}

TEST(SimtEmulator, AtomicMinOverABlock) {
  unsigned long long first = ~0ULL;
  simt::launch(simt::LaunchConfig{2, 256, 0}, simt_selftest::atomic_min_kernel, &first);
  EXPECT_EQ(first, 489ULL);  // 1000 − 511
}

TEST(SimtEmulator, StaticSharedMemoryIsPerBlockAndPoisoned) {
  std::vector<float> out(6, 0.0f);
  simt::launch(simt::LaunchConfig{3, 64, 0}, simt_selftest::static_shared_kernel, out.data());
  for (unsigned b = 0; b < 3; ++b) {
    EXPECT_EQ(std::bit_cast<std::uint32_t>(out[2 * b]), simt::kSharedPoisonBits) << "block " << b;
    EXPECT_EQ(out[2 * b + 1], static_cast<float>(b + 1)) << "block " << b;
  }
}

TEST(SimtEmulator, CubStandInsFollowCubResults) {
  constexpr int kBlock = 64;
  std::vector<float> out(4 * kBlock, 0.0f);
  simt::launch(simt::LaunchConfig{1, kBlock, 0}, simt_selftest::cub_kernel<kBlock>, out.data());
  EXPECT_EQ(out[0], 64.0f * 63.0f / 2);
  for (int t = 1; t < kBlock; ++t) EXPECT_TRUE(std::isnan(out[t])) << "BlockReduce result outside thread 0, thread " << t;
  float run = 0;  // items 1, 0, 1, 1, 1, 2, 1, 3, ...
  for (int t = 0; t < kBlock; ++t) {
    run += 1.0f;
    EXPECT_EQ(out[kBlock + 2 * t], run) << "thread " << t;
    run += static_cast<float>(t);
    EXPECT_EQ(out[kBlock + 2 * t + 1], run) << "thread " << t;
  }
  for (int t = 0; t < kBlock; ++t) {
    if (t % 32 == 0) {
      EXPECT_EQ(out[3 * kBlock + t], 32.0f * 33.0f / 2);
    } else {
      EXPECT_TRUE(std::isnan(out[3 * kBlock + t])) << "WarpReduce result outside lane 0, thread " << t;
    }
  }
}

TEST(SimtEmulator, GuardedMatrixReportsWritesOutsideTheView) {
  FloatMatrix m(3, 4, std::vector<float>(12, 1.0f));
  EXPECT_EQ(m.padding_written(), 0);
  m.view()(1, 4) = 2.0f;  // the gap after row 1
  m.before(1) = 0.0f;     // just before the first element
  EXPECT_EQ(m.padding_written(), 2);
  EXPECT_EQ(m.values(), std::vector<float>(12, 1.0f));
}

// The covered kernel headers must declare static shared memory with D2R_SHARED and dynamic shared
// memory only as `extern __shared__` arrays of names registered with SIMT_DYNAMIC_SHARED_MEMORY in
// their namespace (kernel_emulation.hpp): a bare static `__shared__ T x;` would silently become a
// per-thread local under the emulator (see simt_emulator.hpp), and an unregistered name fails to link.
TEST(SourceGuard, KernelSourcesDeclareOnlyEmulatedSharedMemory) {
  const std::string root = D2R_SOURCE_DIR;
  // Dynamic: `extern __shared__ [__align__(n)] T name[];` of a registered name. Static shared
  // memory must be declared with D2R_SHARED (a bare `__shared__ T x;` is a per-thread local here).
  const std::regex dynamic(R"(extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?(?:unsigned\s+)?\w+\s+(\w+)\s*\[\s*\]\s*;)");
  const auto registered = [](const std::string& name) {
    const auto& arenas = simt::detail::shared_arenas();
    return std::any_of(arenas.begin(), arenas.end(), [&](const auto& a) { return name == a.name; });
  };
  // Every kernel source: kernels/**/*.cu and *.cuh (common.cuh defines D2R_SHARED itself).
  const std::regex family(R"(namespace\s+(d2r::kernels::\w+)\s*\{)");
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root + "/kernels")) {
    const std::string file = std::filesystem::relative(entry.path(), root).string();
    const std::string ext = entry.path().extension().string();
    if ((ext != ".cu" && ext != ".cuh") || file == "kernels/common.cuh") continue;
    ++files;
    std::ifstream in(entry.path());
    ASSERT_TRUE(in) << "cannot read " << entry.path();
    std::string line, ns;
    for (int number = 1; std::getline(in, line); ++number) {
      const auto code = line.substr(0, line.find("//"));
      std::smatch m;
      if (std::regex_search(code, m, family)) ns = m[1].str();
      if (code.find("__shared__") == std::string::npos) continue;
      EXPECT_TRUE(std::regex_search(code, m, dynamic) && registered(ns + "::" + m[1].str()))
          << file << ":" << number << " declares shared memory the emulator does not provide: " << line;
    }
  }
  EXPECT_GE(files, 20) << "kernel sources found under " << root << "/kernels";
}

}  // namespace
}  // namespace d2r::emulation
