#pragma once
// Google Benchmark support with nvbench's semantics: CUDA-event timing (manual time), L2 flushed
// before every timed iteration (the one timer of host/checks/timer.hpp, shared with `d2r bench`), work stated in bytes (and FLOPs), reported as rates and as a
// fraction of the device's *measured* copy bandwidth. GPU benchmarks skip with a reason when no
// CUDA device is usable; CPU-reference benchmarks run everywhere.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "d2r/d2r.hpp"
#include "host/checks/timer.hpp"
#include "host/checks/work.hpp"

namespace d2r::bench {

/// Measured device-to-device copy bandwidth in bytes/s (bytes read + bytes written), once per
/// process, by the one copy-bandwidth probe (host/checks/timer.hpp) over 1 GiB: the denominator of
/// every "% of peak" figure.
inline double measured_copy_bandwidth() {
  static const double bandwidth = [] {
    d2r::Context ctx({.backend = d2r::Backend::cuda});
    std::size_t bytes = std::size_t{1} << 30;
    return d2r::checks::copy_bandwidth(ctx, bytes);
  }();
  return bandwidth;
}

/// Times `work` on ctx with the one timer (host/checks/timer.hpp: on cuda CUDA events on the
/// context's stream, L2 flushed before each iteration; on cpu steady_clock), as manual time.
/// `bytes` is the least traffic the work must move (each input read once, each output written
/// once). On cuda also the % of the measured copy bandwidth (the GPU's peak is only measured there).
inline void run_timed(benchmark::State& state, d2r::Context& ctx, double bytes, double flops,
                      const std::function<void()>& work) {
  d2r::checks::Timer timer(ctx);
  timer.warm_up(work);  // the workspace reaches its high-water mark
  double total_seconds = 0;
  for (auto _ : state) {
    const double s = timer.once(work);
    state.SetIterationTime(s);
    total_seconds += s;
  }
  state.counters["bytes"] = benchmark::Counter(bytes);
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (flops > 0) state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (ctx.backend() != d2r::Backend::cuda) return;
  // Achieved bandwidth as a percentage of the measured copy bandwidth of this device.
  const double achieved = bytes * static_cast<double>(state.iterations()) / total_seconds;
  state.counters["%peak_bw"] = benchmark::Counter(100.0 * achieved / measured_copy_bandwidth());
  state.counters["peak_bw_GB/s"] = benchmark::Counter(measured_copy_bandwidth() * 1e-9);
}
/// run_timed on a cuda context (the GPU benchmarks' name for it).
inline void run_gpu(benchmark::State& state, d2r::Context& ctx, double bytes, double flops, const std::function<void()>& work) {
  run_timed(state, ctx, bytes, flops, work);
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

using d2r::checks::filled;  // the one deterministic filler (host/checks/timer.hpp)

}  // namespace d2r::bench
