// The fused policy-gradient head against the composition of primitives (unfused), per head, on
// the GPU (value checks off, as in an inner loop) and on the CPU reference. The work stated is
// the least traffic of the objective: head outputs and targets read once, the gradient and the
// per-row loss written once (the unfused path moves far more: B·G·n samples and B·G
// intermediates, written and read back). Not registry cases (cases_bench times those): the sweeps
// here (to 2^20 rows) are the sizes the PyTorch peers (bench/peer, tools/bench_report.py) run at,
// beyond the registry's size classes, and unfused-vs-fused is one comparison of two timings.
#include <benchmark/benchmark.h>

#include "bench/bench_common.hpp"
#include "d2r/objectives.hpp"

namespace {

using d2r::bench::filled;

template <bool fused>
void diag_surrogate(benchmark::State& state, bool gpu, d2r::RewardForm form) {
  if (gpu && d2r::bench::skip_without_gpu(state)) return;
  d2r::Context ctx({.backend = gpu ? d2r::Backend::cuda : d2r::Backend::cpu, .seed = 1,
                    .value_checks = d2r::ValueChecks::none});
  const std::int64_t B = state.range(0), n = state.range(1), G = state.range(2);
  const std::int64_t P = d2r::reward_param_count(form, n);
  std::vector<float> u = filled(P, 0.1f, 0.3f, 4);
  if (form == d2r::RewardForm::full)
    for (std::int64_t i = 0; i < n; ++i) u[i * (i + 1) / 2 + i] = 1.0f;
  d2r::Buffer<float> mean(ctx, filled(B * n, -1, 1, 1)), log_std(ctx, filled(B * n, -1, 0, 2)), y(ctx, filled(B * n, -1, 1, 3)),
      up(ctx, u), loss(ctx, B), gm(ctx, B * n), gs(ctx, B * n);
  std::unique_ptr<d2r::Buffer<float>> samples, lp, rw, adv;
  if (!fused) {
    samples = std::make_unique<d2r::Buffer<float>>(ctx, B * G * n);
    lp = std::make_unique<d2r::Buffer<float>>(ctx, B * G);
    rw = std::make_unique<d2r::Buffer<float>>(ctx, B * G);
    adv = std::make_unique<d2r::Buffer<float>>(ctx, B * G);
  }
  const d2r::DiagGaussian<float> head{mean.matrix(B, n), log_std.matrix(B, n)};
  const d2r::MahalanobisReward<float> reward{form, up.vector()};
  const d2r::PgOptions<float> options{.entropy_weight = 1.0f};
  std::uint64_t step = 0;
  const auto work = [&] {
    if constexpr (fused) {
      d2r::pg_surrogate(ctx, head, y.matrix(B, n), reward, G, options, {.step = step++}, {loss.vector(), {}},
                        {gm.matrix(B, n), gs.matrix(B, n)});
    } else {
      d2r::pg_surrogate_unfused(ctx, head, y.matrix(B, n), reward, G, options, {.step = step++},
                                {samples->matrix(B * G, n), lp->matrix(B, G), rw->matrix(B, G), adv->matrix(B, G)},
                                {loss.vector(), {}}, {gm.matrix(B, n), gs.matrix(B, n)});
    }
  };
  const double bytes = d2r::checks::pg_surrogate_diag_work(B, n, B).bytes;
  if (gpu) {
    d2r::bench::run_gpu(state, ctx, bytes, 0, work);
  } else {
    d2r::bench::run_cpu(state, bytes, 0, work);
  }
  state.SetItemsProcessed(state.iterations() * B * G);
}

/// Fused surrogate of the categorical head (one-hot reward βI): the logits are read about twice
/// (statistics and draws, then the gradient) and the B x C gradient written once.
void categorical_surrogate(benchmark::State& state, bool gpu) {
  if (gpu && d2r::bench::skip_without_gpu(state)) return;
  d2r::Context ctx({.backend = gpu ? d2r::Backend::cuda : d2r::Backend::cpu, .seed = 1,
                    .value_checks = d2r::ValueChecks::none});
  const std::int64_t B = state.range(0), C = state.range(1), G = state.range(2);
  std::vector<std::int32_t> labels(B);
  for (std::int64_t b = 0; b < B; ++b) labels[b] = static_cast<std::int32_t>((b * 7919) % C);
  d2r::Buffer<float> logits(ctx, filled(B * C, -4, 4, 5)), beta(ctx, std::vector<float>{1.0f}), loss(ctx, B), grad(ctx, B * C);
  d2r::Buffer<std::int32_t> y(ctx, std::span<const std::int32_t>(labels));
  const d2r::Categorical<float> head{std::as_const(logits).matrix(B, C)};
  std::uint64_t step = 0;
  const auto work = [&] {
    d2r::pg_surrogate(ctx, head, std::as_const(y).vector(), d2r::MahalanobisReward<float>{d2r::RewardForm::scalar, beta.vector()}, G,
                      d2r::PgOptions<float>{.entropy_weight = 0.1f}, {.step = step++}, {loss.vector(), {}},
                      d2r::CategoricalGrad<float>{grad.matrix(B, C)});
  };
  const double bytes = d2r::checks::pg_surrogate_categorical_work(B, C).bytes;
  if (gpu) {
    d2r::bench::run_gpu(state, ctx, bytes, 0, work);
  } else {
    d2r::bench::run_cpu(state, bytes, 0, work);
  }
  state.SetItemsProcessed(state.iterations() * B * G);
}

/// Fused surrogate of the Cholesky head (scalar reward): head outputs and targets read once,
/// gradient written once; O(n²) work per draw.
void cholesky_surrogate(benchmark::State& state, bool gpu) {
  if (gpu && d2r::bench::skip_without_gpu(state)) return;
  d2r::Context ctx({.backend = gpu ? d2r::Backend::cuda : d2r::Backend::cpu, .seed = 1,
                    .value_checks = d2r::ValueChecks::none});
  const std::int64_t B = state.range(0), n = state.range(1), G = state.range(2), P = n * (n + 1) / 2;
  d2r::Buffer<float> mean(ctx, filled(B * n, -1, 1, 1)), tril(ctx, filled(B * P, -0.3f, 0.3f, 2)), y(ctx, filled(B * n, -1, 1, 3)),
      u(ctx, std::vector<float>{0.2f}), loss(ctx, B), gm(ctx, B * n), gt(ctx, B * P);
  const d2r::CholeskyGaussian<float> head{std::as_const(mean).matrix(B, n), std::as_const(tril).matrix(B, P)};
  std::uint64_t step = 0;
  const auto work = [&] {
    d2r::pg_surrogate(ctx, head, y.matrix(B, n), d2r::MahalanobisReward<float>{d2r::RewardForm::scalar, u.vector()}, G,
                      d2r::PgOptions<float>{.entropy_weight = 1.0f}, {.step = step++}, {loss.vector(), {}},
                      d2r::CholeskyGaussianGrad<float>{gm.matrix(B, n), gt.matrix(B, P)});
  };
  const d2r::checks::Work w = d2r::checks::pg_surrogate_cholesky_work(B, n, G, B);
  const double bytes = w.bytes, flops = w.flops;
  if (gpu) {
    d2r::bench::run_gpu(state, ctx, bytes, flops, work);
  } else {
    d2r::bench::run_cpu(state, bytes, flops, work);
  }
  state.SetItemsProcessed(state.iterations() * B * G);
}

void fused_scalar(benchmark::State& s, bool gpu) { diag_surrogate<true>(s, gpu, d2r::RewardForm::scalar); }
void fused_diagonal(benchmark::State& s, bool gpu) { diag_surrogate<true>(s, gpu, d2r::RewardForm::diagonal); }
void fused_full(benchmark::State& s, bool gpu) { diag_surrogate<true>(s, gpu, d2r::RewardForm::full); }
void unfused_scalar(benchmark::State& s, bool gpu) { diag_surrogate<false>(s, gpu, d2r::RewardForm::scalar); }
void unfused_diagonal(benchmark::State& s, bool gpu) { diag_surrogate<false>(s, gpu, d2r::RewardForm::diagonal); }

// {B, n, G}: B ∈ {1k, 64k, 1M}, n ∈ {2, 17, 64}, G ∈ {5, 16, 50} (the sweep); the
// unfused path at 1M x 64 x 50 would need 12.8 GB of samples, so its sweep stops at 64k rows.
void sweep(benchmark::internal::Benchmark* b, std::int64_t max_rows) {
  for (std::int64_t B : {1 << 10, 1 << 16, 1 << 20})
    for (std::int64_t n : {2, 17, 64})
      for (std::int64_t G : {5, 16, 50})
        if (B <= max_rows) b->Args({B, n, G});
}
void fused_args(benchmark::internal::Benchmark* b) { sweep(b, 1 << 20); }
void unfused_args(benchmark::internal::Benchmark* b) { sweep(b, 1 << 16); }

}  // namespace

BENCHMARK_CAPTURE(fused_scalar, gpu, true)->Apply(fused_args)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(fused_diagonal, gpu, true)->Apply(fused_args)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(fused_full, gpu, true)->Args({1 << 16, 17, 5})->Args({1 << 16, 64, 5})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(unfused_scalar, gpu, true)->Apply(unfused_args)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(unfused_diagonal, gpu, true)->Apply(unfused_args)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(categorical_surrogate, gpu, true)->Args({1 << 16, 10, 50})->Args({4096, 32000, 5})->Args({512, 1 << 17, 5})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(cholesky_surrogate, gpu, true)->Args({1 << 16, 17, 5})->Args({1 << 14, 64, 5})->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(categorical_surrogate, cpu, false)->Args({1024, 10, 50})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(cholesky_surrogate, cpu, false)->Args({1024, 17, 5})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(fused_scalar, cpu, false)->Args({4096, 17, 5})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(unfused_scalar, cpu, false)->Args({4096, 17, 5})->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
