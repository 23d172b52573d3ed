// The implicit step's linear algebra at the paper's model-based-RL size (MLP 23→[64,64]→2·17,
// diagonal-Gaussian policy, G = 5): the inner gradient (prepare), one Hessian-vector product
// (apply; the DESIGN target is ≤ 3 gradients) and a CG solve on the operator (normal equations). The ratio of the
// apply and prepare times is the HVP/gradient cost. Gradient and HVP also on a wide MLP
// 23→[1024,1024]→2·17 at B = 64k (GEMM-bound). Arguments: B and the hidden width (cg_solve: B and
// the iterations, width 64). The PyTorch peer is bench/peer/hvp_peer.py. GPU variants skip
// without a device; the CPU reference runs everywhere at a smaller batch.
// Not registry cases (bench/cases_bench.cpp): the peer's sizes (to B = 64k) are beyond the
// registry's size classes, and the HVP/gradient ratio compares two timings of one problem.
#include <benchmark/benchmark.h>

#include "bench/bench_common.hpp"
#include "d2r/d2r.hpp"

namespace {

using d2r::bench::filled;

struct Curvature {
  d2r::Context ctx;
  std::int64_t B, n = 17, G = 5;
  d2r::Mlp net;
  d2r::Buffer<float> params, x, y, u, grad, v, hv;
  d2r::DiagGaussianPolicyCurvature<float> curvature;
  Curvature(bool gpu, std::int64_t rows, std::int64_t width = 64)
      : ctx({.backend = gpu ? d2r::Backend::cuda : d2r::Backend::cpu, .seed = 1, .value_checks = d2r::ValueChecks::none}),
        B(rows),
        net({.inputs = 23, .hidden = {width, width}, .outputs = 34, .activation = d2r::Activation::relu}),
        params(ctx, net.parameter_count()), x(ctx, filled(B * 23, -1, 1, 1)), y(ctx, filled(B * n, -1, 1, 2)),
        u(ctx, std::vector<float>{0.08f}), grad(ctx, net.parameter_count()),
        v(ctx, filled(net.parameter_count(), -1, 1, 3)), hv(ctx, net.parameter_count()), curvature(ctx, net, B) {
    net.init(ctx, params.vector(), 7);
    prepare();
  }
  void prepare() {
    curvature.prepare(params.vector(), x.matrix(B, 23), y.matrix(B, n),
                      {d2r::RewardForm::scalar, u.vector()}, G, {.entropy_weight = 1.0f}, {.step = 1}, grad.vector());
  }
};

void run(benchmark::State& state, Curvature& c, bool gpu, d2r::checks::Work w, const std::function<void()>& work) {
  if (gpu) {
    d2r::bench::run_gpu(state, c.ctx, w.bytes, w.flops, work);
  } else {
    d2r::bench::run_cpu(state, w.bytes, w.flops, work);
  }
}

void gradient(benchmark::State& state, bool gpu) {
  if (gpu && d2r::bench::skip_without_gpu(state)) return;
  Curvature c(gpu, state.range(0), state.range(1));
  run(state, c, gpu, d2r::checks::curvature_gradient_work(c.net, c.B, c.n), [&] { c.prepare(); });
}

void hvp(benchmark::State& state, bool gpu) {
  if (gpu && d2r::bench::skip_without_gpu(state)) return;
  Curvature c(gpu, state.range(0), state.range(1));
  run(state, c, gpu, d2r::checks::curvature_hvp_work(c.net, c.B, c.n), [&] { c.curvature.apply(c.v.vector(), c.hv.vector()); });
}

void cg_solve(benchmark::State& state, bool gpu) {
  if (gpu && d2r::bench::skip_without_gpu(state)) return;
  Curvature c(gpu, state.range(0));
  d2r::Buffer<float> w(c.ctx, c.net.parameter_count());
  // The surrogate's Hessian need not be positive definite: CG on the normal equations (the
  // paper's choice), two HVPs per iteration, a fixed iteration count (tolerance unreachable).
  const d2r::CgOptions<float> options{.damping = 1e-2f, .tolerance = 1e-30f, .max_iterations = state.range(1)};
  d2r::SolveReport<float> report{};
  // x and y read per pass; FLOPs not stated (the iteration count is an argument).
  run(state, c, gpu, {d2r::checks::curvature_hvp_work(c.net, c.B, c.n).bytes, 0}, [&] {
    report = d2r::conjugate_gradient_normal<float>(c.ctx, c.curvature.as_operator(), c.grad.vector(), w.vector(), options);
  });
  state.counters["solver_iterations"] = static_cast<double>(report.iterations);
}

}  // namespace

// B = 70k rows: the paper's HalfCheetah transitions, full batch.
// 23→[1024,1024]→34 at B = 64k: the wide MLP.
BENCHMARK_CAPTURE(gradient, gpu, true)->Args({70000, 64})->Args({65536, 1024})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(hvp, gpu, true)->Args({70000, 64})->Args({65536, 1024})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(cg_solve, gpu, true)->Args({70000, 10})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(gradient, cpu, false)->Args({1024, 64})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(hvp, cpu, false)->Args({1024, 64})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(cg_solve, cpu, false)->Args({1024, 5})->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
