#pragma once
// The one timer of d2r (d2r::checks): used by `d2r bench` (host/cli/bench_command.cpp) and by the
// Google Benchmark suite (bench/bench_common.hpp). On cuda: CUDA events around the work on the
// context's stream, the L2 cache flushed (a memset over 3× its size) before each; on cpu:
// steady_clock around the work (synchronous). Plus the copy bandwidth that "% of peak" divides by.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "d2r/buffer.hpp"
#include "d2r/context.hpp"
#include "d2r/types/cuda.hpp"

namespace d2r::checks {

class Timer {
 public:
  explicit Timer(Context& ctx);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  /// Seconds of one call of `work` (no warm-up: call warm_up first).
  double once(const std::function<void()>& work);
  /// One untimed call (the workspace reaches its high-water mark), then a synchronisation.
  void warm_up(const std::function<void()>& work);
  /// warm_up, then up to `reps` timed calls, stopping after `budget_s` once `min_reps` are done.
  /// Returns the sorted times in seconds.
  std::vector<double> run(const std::function<void()>& work, int reps, int min_reps, double budget_s);

 private:
  Context& ctx_;
  bool cuda_;
  Buffer<char> flush_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

/// The machine's copy bandwidth in bytes/s (bytes read + written per second, best of ten copies
/// after one warm-up): cudaMemcpy device to device of `bytes` on cuda (halved while 3·bytes exceed
/// the free memory; the size used is written back), memcpy on the host.
double copy_bandwidth(Context& ctx, std::size_t& bytes);

/// Deterministic filler for benchmark inputs (values matter: never benchmark on zeros), shared by
/// `d2r bench` and bench/.
inline std::vector<float> filled(std::size_t n, float lo, float hi, std::uint64_t seed) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x = lo + (hi - lo) * static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
  }
  return v;
}

/// The median of sorted times.
double median(const std::vector<double>& sorted);

}  // namespace d2r::checks
