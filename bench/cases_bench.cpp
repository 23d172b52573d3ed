// Google Benchmark over the cases of the registry (host/checks/: the cases `d2r validate` and the
// GPU test check): one benchmark per case that states its work (Case::work(), host/checks/work.hpp)
// and marks one call to time, named "<primitive>/<variant>/<size>/<gpu|cpu>". GPU: the cuda backend
// in float at --sizes large (skipped with a reason without a CUDA device). CPU: the cpu backend at
// --sizes medium, without the categorical heads the cpu self-check leaves out. Both with the one
// timer (bench_common.hpp run_timed: CUDA events and an L2 flush on cuda, steady_clock on cpu) as
// manual time; value checks off, as in an inner loop. This replaces the hand-written list of
// distributions_bench (sample, log_prob and backward of the three heads). Kept by hand, because
// the registry's size classes stop where a double reference is affordable: categorical sampling
// at the sizes of its PyTorch peer (bench/peer/categorical_peer.py, up to 2^20 rows; joined by
// tools/bench_report.py as categorical_sample/gpu/B/C/G), and the sweeps of objectives_bench,
// curvature_bench and outer_step_bench.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "bench/bench_common.hpp"
#include "host/checks/checks.hpp"

namespace {

constexpr std::uint64_t kSeed = 2024;  // `d2r validate`'s and `d2r bench`'s inputs

/// One context per backend for the whole run (made on first use: the cuda one only with a device).
d2r::Context& context(bool gpu) {
  if (gpu) {
    static d2r::Context cuda({.backend = d2r::Backend::cuda, .seed = 1, .value_checks = d2r::ValueChecks::none});
    return cuda;
  }
  static d2r::Context cpu({.backend = d2r::Backend::cpu, .seed = 1, .value_checks = d2r::ValueChecks::none});
  return cpu;
}

void time_case(benchmark::State& state, const d2r::checks::Case& c, bool gpu) {
  if (gpu && d2r::bench::skip_without_gpu(state)) return;
  try {
    d2r::Context& ctx = context(gpu);
    d2r::checks::time_case(c, ctx, kSeed, [&](const std::function<void()>& call) {
      d2r::bench::run_timed(state, ctx, c.work().bytes, c.work().flops, call);
    });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

/// Categorical sampling at the peer's sizes: logits read, B·G indices written.
void categorical_sample(benchmark::State& state) {
  if (d2r::bench::skip_without_gpu(state)) return;
  d2r::Context& ctx = context(true);
  const std::int64_t B = state.range(0), C = state.range(1), G = state.range(2);
  const d2r::Buffer<float> logits(ctx, d2r::bench::filled(static_cast<std::size_t>(B * C), -4, 4, 5));
  d2r::Buffer<std::int32_t> samples(ctx, static_cast<std::size_t>(B * G));
  const d2r::Categorical<float> head{logits.matrix(B, C)};
  const d2r::checks::Work w = d2r::checks::categorical_work(d2r::checks::HeadOp::sample, B, C, G);
  d2r::bench::run_timed(state, ctx, w.bytes, w.flops, [&] { d2r::sample(ctx, head, G, {.step = 1}, samples.matrix(B, G)); });
  state.SetItemsProcessed(state.iterations() * B * G);
}
/// {B, C, G}: B = 2^28 / (16 C) rows (at least 64, at most 2^20), as categorical_peer.py.
void categorical_peer_sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t C : {2, 10, 1 << 10, 32000, 1 << 17, 1 << 18}) {
    const std::int64_t B = std::max<std::int64_t>(64, (std::int64_t{1} << 28) / (4 * C) / 4);
    for (std::int64_t G : {1, 5, 50}) b->Args({std::min<std::int64_t>(B, 1 << 20), C, G});
  }
}

}  // namespace

BENCHMARK(categorical_sample)->Name("categorical_sample/gpu")->Apply(categorical_peer_sizes)->UseManualTime()->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  // The cases outlive the run: the benchmarks hold references to them.
  static const std::vector<d2r::checks::Case> gpu_cases = d2r::checks::all_cases(d2r::checks::Level::large, false);
  static const std::vector<d2r::checks::Case> cpu_cases = d2r::checks::all_cases(d2r::checks::Level::medium, true);
  for (const auto& [cases, gpu] : {std::pair{&gpu_cases, true}, std::pair{&cpu_cases, false}}) {
    for (const d2r::checks::Case& c : *cases) {
      if (!d2r::checks::untimed_reason(c).empty()) continue;
      const bool on_gpu = gpu;
      benchmark::RegisterBenchmark((c.key() + (gpu ? "/gpu" : "/cpu")).c_str(),
                                   [&c, on_gpu](benchmark::State& state) { time_case(state, c, on_gpu); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
