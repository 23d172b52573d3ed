// The MLP trunk on the cpu backend (OpenBLAS GEMMs, host/src/cpu_blas.cpp) against the plain
// reference loops it replaced (host/reference/network.hpp, timed directly), in float and
// double, at the paper's two trunk sizes:
//   2→[64,64]→4 at B = 1000 (the synthetic regression tasks) and
//   23→[64,64]→34 at B = 8192 (model-based RL, a HalfCheetah minibatch).
// Operations: forward + backward (the gradient; d_x not requested), and the HVP pieces
// forward_tangent and backward_tangent. Work: 2·B·in·out FLOPs per GEMM (elementwise work not
// counted), bytes = each input read once and each output written once. ReLU trunks, as in
// curvature_bench. Threads: OpenBLAS' default (OPENBLAS_NUM_THREADS to pin it); wall-clock time
// (UseRealTime), since OpenBLAS' worker threads are not in the calling thread's CPU time.
// Not registry cases (bench/cases_bench.cpp times those): the plain reference loops, timed
// against the cpu backend, are not a backend a case runs on.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_common.hpp"
#include "d2r/d2r.hpp"
#include "host/reference/network.hpp"

namespace {

struct Model {
  const char* name;
  std::int64_t inputs, outputs, batch;
};
constexpr Model kModels[] = {{"2-64-64-4/B1000", 2, 4, 1000}, {"23-64-64-34/B8192", 23, 34, 8192}};

enum class Op { fwd_bwd, fwd_tangent, bwd_tangent };
enum class Impl { blas, reference };

template <class T>
std::vector<T> filled_as(std::size_t n, float lo, float hi, std::uint64_t seed) {
  const std::vector<float> f = d2r::bench::filled(n, lo, hi, seed);
  return std::vector<T>(f.begin(), f.end());
}

template <class T>
struct Trunk {
  d2r::Context ctx{{.backend = d2r::Backend::cpu, .seed = 1, .value_checks = d2r::ValueChecks::none}};
  d2r::Mlp net;
  std::int64_t B, P, C;
  std::vector<T> params, v, x, d_out, d_out_t, cache, tcache, out, out_t, grad, grad_t, scratch;

  explicit Trunk(const Model& m)
      : net({.inputs = m.inputs, .hidden = {64, 64}, .outputs = m.outputs, .activation = d2r::Activation::relu}),
        B(m.batch),
        P(net.parameter_count()),
        C(net.cache_elements(B)),
        params(static_cast<std::size_t>(P)),
        v(filled_as<T>(static_cast<std::size_t>(P), -0.1f, 0.1f, 3)),
        x(filled_as<T>(static_cast<std::size_t>(B * m.inputs), -1, 1, 1)),
        d_out(filled_as<T>(static_cast<std::size_t>(B * m.outputs), -1, 1, 2)),
        d_out_t(filled_as<T>(static_cast<std::size_t>(B * m.outputs), -1, 1, 4)),
        cache(static_cast<std::size_t>(C)),
        tcache(static_cast<std::size_t>(C)),
        out(static_cast<std::size_t>(B * m.outputs)),
        out_t(static_cast<std::size_t>(B * m.outputs)),
        grad(static_cast<std::size_t>(P)),
        grad_t(static_cast<std::size_t>(P)),
        scratch(static_cast<std::size_t>(d2r::reference::network::mlp_scratch_elements(net, B, true))) {
    net.init(ctx, d2r::vector_view(params.data(), P), 7);
    forward(Impl::blas);  // the caches the later operations read
    net.forward_tangent<T>(ctx, pv(), vv(), xm(), cv(), d2r::vector_view(tcache.data(), C), ot());
  }

  d2r::VectorView<const T> pv() const { return d2r::vector_view(params.data(), P); }
  d2r::VectorView<const T> vv() const { return d2r::vector_view(v.data(), P); }
  d2r::VectorView<const T> cv() const { return d2r::vector_view(cache.data(), C); }
  d2r::VectorView<const T> tcv() const { return d2r::vector_view(tcache.data(), C); }
  d2r::MatrixView<const T> xm() const { return d2r::matrix_view(x.data(), B, net.inputs()); }
  d2r::MatrixView<const T> dm() const { return d2r::matrix_view(d_out.data(), B, net.outputs()); }
  d2r::MatrixView<const T> dtm() const { return d2r::matrix_view(d_out_t.data(), B, net.outputs()); }
  d2r::MatrixView<T> om() { return d2r::matrix_view(out.data(), B, net.outputs()); }
  d2r::MatrixView<T> ot() { return d2r::matrix_view(out_t.data(), B, net.outputs()); }

  void forward(Impl impl) {
    if (impl == Impl::blas) {
      net.forward<T>(ctx, pv(), xm(), d2r::vector_view(cache.data(), C), om());
    } else {
      d2r::reference::network::mlp_forward<T>(net, pv(), xm(), cache.data(), om());
    }
  }
  void fwd_bwd(Impl impl) {
    forward(impl);
    if (impl == Impl::blas) {
      net.backward<T>(ctx, pv(), xm(), cv(), dm(), d2r::vector_view(grad.data(), P), {});
    } else {
      d2r::reference::network::mlp_backward<T>(net, pv(), xm(), cache.data(), dm(), grad.data(), {}, scratch.data());
    }
  }
  void fwd_tangent(Impl impl) {
    if (impl == Impl::blas) {
      net.forward_tangent<T>(ctx, pv(), vv(), xm(), cv(), d2r::vector_view(tcache.data(), C), ot());
    } else {
      d2r::reference::network::mlp_forward_tangent<T>(net, pv(), vv(), xm(), cache.data(), tcache.data(), ot());
    }
  }
  void bwd_tangent(Impl impl) {
    if (impl == Impl::blas) {
      net.backward_tangent<T>(ctx, pv(), vv(), xm(), cv(), tcv(), dm(), dtm(), d2r::vector_view(grad_t.data(), P));
    } else {
      d2r::reference::network::mlp_backward_tangent<T>(net, pv(), vv(), xm(), cache.data(), tcache.data(), dm(), dtm(),
                                                       grad_t.data(), scratch.data());
    }
  }

  /// The work model of host/checks/work.hpp.
  [[nodiscard]] d2r::checks::Work work(Op op) const {
    const d2r::checks::MlpPass pass = op == Op::fwd_bwd       ? d2r::checks::MlpPass::forward_backward
                                      : op == Op::fwd_tangent ? d2r::checks::MlpPass::forward_tangent
                                                              : d2r::checks::MlpPass::backward_tangent;
    return d2r::checks::mlp_work(net, B, pass, sizeof(T));
  }
};

template <class T>
void run(benchmark::State& state, const Model& model, Op op, Impl impl) {
  Trunk<T> t(model);
  std::function<void()> work;
  switch (op) {
    case Op::fwd_bwd: work = [&] { t.fwd_bwd(impl); }; break;
    case Op::fwd_tangent: work = [&] { t.fwd_tangent(impl); }; break;
    case Op::bwd_tangent: work = [&] { t.bwd_tangent(impl); }; break;
  }
  work();  // warm-up: the context's workspace reaches its high-water mark
  d2r::bench::run_cpu(state, t.work(op).bytes, t.work(op).flops, work);
}

const bool registered = [] {
  const std::pair<Op, const char*> ops[] = {
      {Op::fwd_bwd, "fwd_bwd"}, {Op::fwd_tangent, "fwd_tangent"}, {Op::bwd_tangent, "bwd_tangent"}};
  const std::pair<Impl, const char*> impls[] = {{Impl::blas, "blas"}, {Impl::reference, "reference"}};
  for (const auto& [op, op_name] : ops)
    for (const Model& model : kModels)
      for (const auto& [impl, impl_name] : impls) {
        const std::string base = std::string(op_name) + "/" + impl_name + "/";
        benchmark::RegisterBenchmark((base + "float/" + model.name).c_str(),
                                     [=](benchmark::State& s) { run<float>(s, model, op, impl); })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark((base + "double/" + model.name).c_str(),
                                     [=](benchmark::State& s) { run<double>(s, model, op, impl); })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
