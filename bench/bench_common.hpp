#pragma once
// Google Benchmark support with nvbench's semantics: CUDA-event timing (manual time), L2 flushed
// before every timed iteration, work stated in bytes (and FLOPs), reported as rates and as a
// fraction of the device's *measured* copy bandwidth. GPU benchmarks skip with a reason when no
// CUDA device is usable; CPU-reference benchmarks run everywhere.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "d2r/d2r.hpp"

namespace d2r::bench {

/// Measured device-to-device copy bandwidth in bytes/s (bytes read + bytes written), once per
/// process: the denominator of every "% of peak" figure.
inline double measured_copy_bandwidth() {
  static const double bandwidth = [] {
    const std::size_t bytes = std::size_t{1} << 30;
    void *a = nullptr, *b = nullptr;
    D2R_CUDA_TRY(cudaMalloc(&a, bytes));
    D2R_CUDA_TRY(cudaMalloc(&b, bytes));
    D2R_CUDA_TRY(cudaMemset(a, 1, bytes));
    cudaEvent_t start, stop;
    D2R_CUDA_TRY(cudaEventCreate(&start));
    D2R_CUDA_TRY(cudaEventCreate(&stop));
    float best_ms = 1e30f;
    for (int i = 0; i < 10; ++i) {
      D2R_CUDA_TRY(cudaEventRecord(start));
      D2R_CUDA_TRY(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
      D2R_CUDA_TRY(cudaEventRecord(stop));
      D2R_CUDA_TRY(cudaEventSynchronize(stop));
      float ms = 0;
      D2R_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
      if (i > 0 && ms < best_ms) best_ms = ms;
    }
    D2R_CUDA_TRY(cudaEventDestroy(start));
    D2R_CUDA_TRY(cudaEventDestroy(stop));
    D2R_CUDA_TRY(cudaFree(a));
    D2R_CUDA_TRY(cudaFree(b));
    return 2.0 * static_cast<double>(bytes) / (best_ms * 1e-3);
  }();
  return bandwidth;
}

/// Times `work` on ctx's stream with CUDA events, flushing L2 before each iteration.
/// `bytes` is the least traffic the work must move (each input read once, each output written once).
inline void run_gpu(benchmark::State& state, d2r::Context& ctx, double bytes, double flops,
                    const std::function<void()>& work) {
  int l2_bytes = 0;
  D2R_CUDA_TRY(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, ctx.device()));
  d2r::Buffer<char> flush(ctx, static_cast<std::size_t>(3) * static_cast<std::size_t>(l2_bytes));
  cudaEvent_t start, stop;
  D2R_CUDA_TRY(cudaEventCreate(&start));
  D2R_CUDA_TRY(cudaEventCreate(&stop));
  work();  // warm-up (and the workspace reaches its high-water mark)
  D2R_CUDA_TRY(cudaStreamSynchronize(ctx.stream()));
  double total_seconds = 0;
  for (auto _ : state) {
    D2R_CUDA_TRY(cudaMemsetAsync(flush.data(), 0, flush.size(), ctx.stream()));
    D2R_CUDA_TRY(cudaEventRecord(start, ctx.stream()));
    work();
    D2R_CUDA_TRY(cudaEventRecord(stop, ctx.stream()));
    D2R_CUDA_TRY(cudaEventSynchronize(stop));
    float ms = 0;
    D2R_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
    total_seconds += static_cast<double>(ms) * 1e-3;
  }
  D2R_CUDA_TRY(cudaEventDestroy(start));
  D2R_CUDA_TRY(cudaEventDestroy(stop));
  state.counters["bytes"] = benchmark::Counter(bytes);
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (flops > 0) state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  // Achieved bandwidth as a percentage of the measured copy bandwidth of this device.
  const double achieved = bytes * static_cast<double>(state.iterations()) / total_seconds;
  state.counters["%peak_bw"] = benchmark::Counter(100.0 * achieved / measured_copy_bandwidth());
  state.counters["peak_bw_GB/s"] = benchmark::Counter(measured_copy_bandwidth() * 1e-9);
}

/// Times `work` on the host (cpu backend).
inline void run_cpu(benchmark::State& state, double bytes, double flops, const std::function<void()>& work) {
  for (auto _ : state) work();
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (flops > 0) state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// True (and the benchmark marked skipped with the reason) when no CUDA device is usable.
inline bool skip_without_gpu(benchmark::State& state) {
  if (d2r::cuda_device_available()) return false;
  state.SkipWithError("no CUDA device: GPU benchmark not run");
  return true;
}

/// Deterministic filler for benchmark inputs (values matter: never benchmark on zeros).
inline std::vector<float> filled(std::size_t n, float lo, float hi, std::uint64_t seed) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x = lo + (hi - lo) * static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
  }
  return v;
}

}  // namespace d2r::bench
