// Policy-head primitives: sampling, log-probability and backward for the three heads, on the GPU
// (cuda backend, float, value checks off as in an inner loop) and on the CPU reference.
// Work is stated as the least bytes each call must move: inputs read once, outputs written once.
#include <benchmark/benchmark.h>

#include "bench/bench_common.hpp"

namespace {

using d2r::bench::filled;

struct DiagSetup {
  std::int64_t B, n, G;
  d2r::Buffer<float> mean, log_std, samples, logp, dlogp, gmean, glog_std;
  DiagSetup(d2r::Context& ctx, std::int64_t B_, std::int64_t n_, std::int64_t G_)
      : B(B_), n(n_), G(G_), mean(ctx, filled(B * n, -1, 1, 1)), log_std(ctx, filled(B * n, -1, 0.5f, 2)),
        samples(ctx, B * G * n), logp(ctx, B * G), dlogp(ctx, filled(B * G, -1, 1, 3)), gmean(ctx, B * n),
        glog_std(ctx, B * n) {}
  d2r::DiagGaussian<float> head() const { return {mean.matrix(B, n), log_std.matrix(B, n)}; }
};

enum class Op { sample, log_prob, backward };

template <Op op>
void diag_gaussian(benchmark::State& state, bool gpu) {
  if (gpu && d2r::bench::skip_without_gpu(state)) return;
  d2r::Context ctx({.backend = gpu ? d2r::Backend::cuda : d2r::Backend::cpu, .seed = 1,
                    .value_checks = d2r::ValueChecks::none});
  const std::int64_t B = state.range(0), n = state.range(1), G = state.range(2);
  DiagSetup s(ctx, B, n, G);
  d2r::sample(ctx, s.head(), G, {}, s.samples.matrix(B * G, n));
  double bytes = 0;
  std::function<void()> work;
  if constexpr (op == Op::sample) {
    bytes = d2r::checks::diag_sample_work(B, n, G).bytes;
    work = [&] { d2r::sample(ctx, s.head(), G, {.step = 1}, s.samples.matrix(B * G, n)); };
  } else if constexpr (op == Op::log_prob) {
    bytes = d2r::checks::diag_log_prob_work(B, n, G).bytes;
    work = [&] { d2r::log_prob(ctx, s.head(), std::as_const(s.samples).matrix(B * G, n), s.logp.matrix(B, G)); };
  } else {
    bytes = d2r::checks::diag_backward_work(B, n, G).bytes;
    work = [&] {
      d2r::backward(ctx, s.head(), std::as_const(s.samples).matrix(B * G, n), std::as_const(s.dlogp).matrix(B, G), {},
                    d2r::DiagGaussianGrad<float>{s.gmean.matrix(B, n), s.glog_std.matrix(B, n)});
    };
  }
  if (gpu) {
    d2r::bench::run_gpu(state, ctx, bytes, 0, work);
  } else {
    d2r::bench::run_cpu(state, bytes, 0, work);
  }
  state.SetItemsProcessed(state.iterations() * B * G);
}

template <Op op>
void categorical(benchmark::State& state, bool gpu) {
  if (gpu && d2r::bench::skip_without_gpu(state)) return;
  d2r::Context ctx({.backend = gpu ? d2r::Backend::cuda : d2r::Backend::cpu, .seed = 1,
                    .value_checks = d2r::ValueChecks::none});
  const std::int64_t B = state.range(0), C = state.range(1), G = state.range(2);
  d2r::Buffer<float> logits(ctx, filled(B * C, -4, 4, 5)), logp(ctx, B * G), dlogp(ctx, filled(B * G, -1, 1, 6)),
      grad(ctx, B * C);
  d2r::Buffer<std::int32_t> samples(ctx, B * G);
  const d2r::Categorical<float> head{std::as_const(logits).matrix(B, C)};
  d2r::sample(ctx, head, G, {}, samples.matrix(B, G));
  double bytes = 0;
  std::function<void()> work;
  if constexpr (op == Op::sample) {
    bytes = d2r::checks::categorical_sample_work(B, C, G).bytes;
    work = [&] { d2r::sample(ctx, head, G, {.step = 1}, samples.matrix(B, G)); };
  } else if constexpr (op == Op::log_prob) {
    bytes = d2r::checks::categorical_log_prob_work(B, C, G).bytes;
    work = [&] { d2r::log_prob(ctx, head, std::as_const(samples).matrix(B, G), logp.matrix(B, G)); };
  } else {
    bytes = d2r::checks::categorical_backward_work(B, C, G).bytes;
    work = [&] {
      d2r::backward(ctx, head, std::as_const(samples).matrix(B, G), std::as_const(dlogp).matrix(B, G), {},
                    d2r::CategoricalGrad<float>{grad.matrix(B, C)});
    };
  }
  if (gpu) {
    d2r::bench::run_gpu(state, ctx, bytes, 0, work);
  } else {
    d2r::bench::run_cpu(state, bytes, 0, work);
  }
  state.SetItemsProcessed(state.iterations() * B * G);
}

template <Op op>
void cholesky_gaussian(benchmark::State& state, bool gpu) {
  if (gpu && d2r::bench::skip_without_gpu(state)) return;
  d2r::Context ctx({.backend = gpu ? d2r::Backend::cuda : d2r::Backend::cpu, .seed = 1,
                    .value_checks = d2r::ValueChecks::none});
  const std::int64_t B = state.range(0), n = state.range(1), G = state.range(2), P = n * (n + 1) / 2;
  d2r::Buffer<float> mean(ctx, filled(B * n, -1, 1, 7)), tril(ctx, filled(B * P, -0.3f, 0.3f, 8)),
      samples(ctx, B * G * n), logp(ctx, B * G), dlogp(ctx, filled(B * G, -1, 1, 9)), gmean(ctx, B * n),
      gtril(ctx, B * P);
  const d2r::CholeskyGaussian<float> head{std::as_const(mean).matrix(B, n), std::as_const(tril).matrix(B, P)};
  d2r::sample(ctx, head, G, {}, samples.matrix(B * G, n));
  const d2r::checks::Work w = op == Op::sample     ? d2r::checks::cholesky_sample_work(B, n, G)
                              : op == Op::log_prob ? d2r::checks::cholesky_log_prob_work(B, n, G)
                                                   : d2r::checks::cholesky_backward_work(B, n, G);
  const double bytes = w.bytes, flops = w.flops;
  std::function<void()> work;
  if constexpr (op == Op::sample) {
    work = [&] { d2r::sample(ctx, head, G, {.step = 1}, samples.matrix(B * G, n)); };
  } else if constexpr (op == Op::log_prob) {
    work = [&] { d2r::log_prob(ctx, head, std::as_const(samples).matrix(B * G, n), logp.matrix(B, G)); };
  } else {
    work = [&] {
      d2r::backward(ctx, head, std::as_const(samples).matrix(B * G, n), std::as_const(dlogp).matrix(B, G), {},
                    d2r::CholeskyGaussianGrad<float>{gmean.matrix(B, n), gtril.matrix(B, P)});
    };
  }
  if (gpu) {
    d2r::bench::run_gpu(state, ctx, bytes, flops, work);
  } else {
    d2r::bench::run_cpu(state, bytes, flops, work);
  }
  state.SetItemsProcessed(state.iterations() * B * G);
}

// {B, n, G}: the paper's sizes (n = 2 synthetic, 17 HalfCheetah) and a wide head.
void diag_gpu_args(benchmark::internal::Benchmark* b) {
  for (std::int64_t B : {1 << 10, 1 << 16, 1 << 20})
    for (std::int64_t n : {2, 17, 64})
      for (std::int64_t G : {5, 16}) b->Args({B, n, G});
}
void cat_gpu_args(benchmark::internal::Benchmark* b) {
  for (std::int64_t C : {2, 10, 1 << 10, 32000, 1 << 17, 1 << 18}) {
    const std::int64_t B = std::max<std::int64_t>(64, (std::int64_t{1} << 28) / (4 * C) / 4);
    for (std::int64_t G : {1, 5, 50}) b->Args({std::min<std::int64_t>(B, 1 << 20), C, G});
  }
}

// Named entry points (BENCHMARK_CAPTURE pastes the function name into identifiers).
void diag_sample(benchmark::State& s, bool gpu) { diag_gaussian<Op::sample>(s, gpu); }
void diag_log_prob(benchmark::State& s, bool gpu) { diag_gaussian<Op::log_prob>(s, gpu); }
void diag_backward(benchmark::State& s, bool gpu) { diag_gaussian<Op::backward>(s, gpu); }
void categorical_sample(benchmark::State& s, bool gpu) { categorical<Op::sample>(s, gpu); }
void categorical_log_prob(benchmark::State& s, bool gpu) { categorical<Op::log_prob>(s, gpu); }
void categorical_backward(benchmark::State& s, bool gpu) { categorical<Op::backward>(s, gpu); }
void cholesky_sample(benchmark::State& s, bool gpu) { cholesky_gaussian<Op::sample>(s, gpu); }
void cholesky_log_prob(benchmark::State& s, bool gpu) { cholesky_gaussian<Op::log_prob>(s, gpu); }
void cholesky_backward(benchmark::State& s, bool gpu) { cholesky_gaussian<Op::backward>(s, gpu); }

}  // namespace

BENCHMARK_CAPTURE(diag_sample, gpu, true)->Apply(diag_gpu_args)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(diag_log_prob, gpu, true)->Apply(diag_gpu_args)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(diag_backward, gpu, true)->Apply(diag_gpu_args)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(categorical_sample, gpu, true)->Apply(cat_gpu_args)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(categorical_log_prob, gpu, true)->Apply(cat_gpu_args)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(categorical_backward, gpu, true)->Apply(cat_gpu_args)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(cholesky_sample, gpu, true)->Args({1 << 16, 17, 5})->Args({1 << 16, 64, 5})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(cholesky_log_prob, gpu, true)->Args({1 << 16, 17, 5})->Args({1 << 16, 64, 5})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(cholesky_backward, gpu, true)->Args({1 << 16, 17, 5})->Args({1 << 16, 64, 5})->UseManualTime()->Unit(benchmark::kMicrosecond);

// CPU reference (the cpu backend that runs the main job without a GPU), smaller sizes.
BENCHMARK_CAPTURE(diag_sample, cpu, false)->Args({4096, 17, 5})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(diag_log_prob, cpu, false)->Args({4096, 17, 5})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(diag_backward, cpu, false)->Args({4096, 17, 5})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(categorical_sample, cpu, false)->Args({256, 32000, 5})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(categorical_backward, cpu, false)->Args({256, 32000, 5})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(cholesky_sample, cpu, false)->Args({1024, 17, 5})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(cholesky_backward, cpu, false)->Args({1024, 17, 5})->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
