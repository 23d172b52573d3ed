// One outer step of the bilevel reward learning, BilevelTrainer<T>::step() with the defaults of
// BilevelOptions (the paper's MBRL setting: fresh inner policy, K_in = 50 Adam steps on the
// REINFORCE surrogate with G = 5, the exact-expectation curvature, CG on the normal equations
// with one iteration, outer Adam re-created every step), at the paper's MBRL size: MLP
// 23 → [64, 64] → 2·17, B = 70,000 rows. The PyTorch peer is bench/peer/outer_step_peer.py.
//
// Work (GEMM FLOPs, in forward passes F = 2·B·Σ in·out of the trunk): K_in gradients of the
// surrogate (3F each: forward + backward), the NLL gradient (3F), prepare_exact (3F), the
// solver's HVPs (5F each; CG on the normal equations applies the operator 2 + 2·iterations
// times, the first on x0 = 0), the mixed product's forward tangent (F) and the metrics' forward
// pass (F): (3·K_in + 8 + 5·HVPs)·F. Bytes: x and y read once by each of those passes.
// Items: outer steps (items_per_second = steps/s).
// Not a registry case (bench/cases_bench.cpp): a whole training step, not one primitive call.
//
// The cuda variant (float) skips without a device; the cpu variant (double, B = 256) runs
// everywhere.
#include <benchmark/benchmark.h>

#include <utility>
#include <vector>

#include "bench/bench_common.hpp"
#include "d2r/d2r.hpp"

namespace {

constexpr std::int64_t kInputs = 23, kDims = 17;

template <class T>
std::vector<T> filled_as(std::size_t n, float lo, float hi, std::uint64_t seed) {
  const std::vector<float> f = d2r::bench::filled(n, lo, hi, seed);
  return std::vector<T>(f.begin(), f.end());
}

template <class T>
struct OuterStep {
  d2r::Context ctx;
  std::int64_t B;
  d2r::MlpSpec spec{.inputs = kInputs, .hidden = {64, 64}, .outputs = 0, .activation = d2r::Activation::relu};
  d2r::BilevelOptions<T> options{};
  d2r::Buffer<T> x, y;
  d2r::BilevelTrainer<T> trainer;
  OuterStep(bool gpu, std::int64_t rows)
      : ctx({.backend = gpu ? d2r::Backend::cuda : d2r::Backend::cpu, .seed = 1,
             .value_checks = d2r::ValueChecks::none}),
        B(rows),
        x(ctx, filled_as<T>(static_cast<std::size_t>(B * kInputs), -1, 1, 1)),
        y(ctx, filled_as<T>(static_cast<std::size_t>(B * kDims), -1, 1, 2)),
        trainer(ctx, spec, {std::as_const(x).matrix(B, kInputs), std::as_const(y).matrix(B, kDims)}, {},
                d2r::RewardForm::scalar, std::vector<double>{0.3}, options) {}

  /// The work model of host/checks/work.hpp: CG on the normal equations applies H to x0, to r, then
  /// twice per iteration; (3·K_in + 8 + 5·HVPs)·F FLOPs.
  [[nodiscard]] d2r::checks::Work work() const {
    const d2r::Mlp net({.inputs = kInputs, .hidden = spec.hidden, .outputs = 2 * kDims});
    return d2r::checks::outer_step_work(net, B, kDims, options.inner.steps, options.cg.max_iterations, sizeof(T));
  }
  [[nodiscard]] double flops() const { return work().flops; }
  [[nodiscard]] double bytes() const { return work().bytes; }
};

template <class T>
void run(benchmark::State& state, bool gpu) {
  OuterStep<T> s(gpu, state.range(0));
  const auto work = [&] { (void)s.trainer.step(); };
  if (gpu) {
    d2r::bench::run_gpu(state, s.ctx, s.bytes(), s.flops(), work);
  } else {
    d2r::bench::run_cpu(state, s.bytes(), s.flops(), work);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["flops"] = benchmark::Counter(s.flops());
  state.counters["inner_steps"] = benchmark::Counter(static_cast<double>(s.options.inner.steps));
  state.counters["hvps"] = benchmark::Counter(2.0 + 2.0 * static_cast<double>(s.options.cg.max_iterations));
  const d2r::BilevelRecord& last = s.trainer.history().back();
  state.counters["step_wall_ms"] = benchmark::Counter(1e3 * last.wall_seconds);  // host clock, last step
  state.counters["u"] = benchmark::Counter(last.reward_params[0]);
}

void outer_step(benchmark::State& state, bool gpu) {
  if (gpu) {
    if (d2r::bench::skip_without_gpu(state)) return;
    run<float>(state, true);
  } else {
    run<double>(state, false);
  }
}

}  // namespace

// B = 70k rows: the paper's HalfCheetah transitions, full batch.
BENCHMARK_CAPTURE(outer_step, gpu, true)->Arg(70000)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(outer_step, cpu, false)->Arg(256)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
