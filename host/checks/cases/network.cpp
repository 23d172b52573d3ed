// Cases of the registry (host/checks/checks.hpp): the MLP's forward, backward and tangent passes.
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ network

namespace {
struct NetCase {
  std::int64_t B;
  MlpSpec spec;
};
}  // namespace

void add_network_checks(Table& t, Level level) {
  const Tol tol{2e-4};
  const std::vector<NetCase> nets = upto<NetCase>(
      level,
      {{7, {.inputs = 3, .hidden = {8}, .outputs = 4, .activation = Activation::tanh}},
       {5, {.inputs = 3, .hidden = {16, 16}, .outputs = 6, .activation = Activation::relu, .layer_norm = true}}},
      {{1024, {.inputs = 23, .hidden = {64, 64}, .outputs = 34, .activation = Activation::relu}},
       {1024, {.inputs = 23, .hidden = {64, 64}, .outputs = 34, .activation = Activation::tanh, .layer_norm = true}}},
      {{8192, {.inputs = 23, .hidden = {256, 256}, .outputs = 34, .activation = Activation::tanh}},
       {300, {.inputs = 32, .hidden = {600, 600}, .outputs = 34, .activation = Activation::tanh, .layer_norm = true}}});
  enum class Op { forward, backward, forward_tangent, backward_tangent };
  for (const NetCase& c : nets) {
    for (const Op op : {Op::forward, Op::backward, Op::forward_tangent, Op::backward_tangent}) {
      const char* name = op == Op::forward           ? "mlp.forward"
                         : op == Op::backward        ? "mlp.backward"
                         : op == Op::forward_tangent ? "mlp.forward_tangent"
                                                     : "mlp.backward_tangent";
      t.add(name, net_name(c.spec), fmt::format("B={}", c.B), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Mlp net(c.spec);
        const std::int64_t B = c.B, P = net.parameter_count(), C = net.cache_elements(B), in = net.inputs(),
                           out = net.outputs();
        // PyTorch's initialisation (cpu float, the same values on both sides), perturbed so that
        // LayerNorm's γ and β are not exactly 1 and 0.
        std::vector<float> init(static_cast<std::size_t>(P));
        Context host({.backend = Backend::cpu});
        net.init<float>(host, vector_view(init.data(), P), 77);
        Vec p = r.vec(P, -0.05, 0.05);
        for (std::int64_t i = 0; i < P; ++i) p[i] = static_cast<float>(p[i] + init[i]);
        const Buffer<T> params = put<T>(ctx, p), x = put<T>(ctx, r.vec(B * in, -1.5, 1.5)),
                        v = put<T>(ctx, r.vec(P, -1, 1)), dout = put<T>(ctx, r.vec(B * out, -1, 1)),
                        doutt = put<T>(ctx, r.vec(B * out, -1, 1));
        Out<T> cache(ctx, C, "cache"), tcache(ctx, C, "tcache"), y(ctx, B * out, "y"), yt(ctx, B * out, "yt"), dp(ctx, P, "dp"), dx(ctx, B * in, "dx"), dpt(ctx, P, "dpt");
        net.forward<T>(ctx, params.vector(), x.matrix(B, in), cache.vector(), y.matrix(B, out));
        if (op == Op::forward) return {{"out", get(y)}, {"cache", get(cache)}};
        if (op == Op::backward) {
          net.backward<T>(ctx, params.vector(), x.matrix(B, in), cache.vector(), dout.matrix(B, out), dp.vector(),
                          dx.matrix(B, in));
          return {{"d_params", get(dp)}, {"d_x", get(dx)}};
        }
        net.forward_tangent<T>(ctx, params.vector(), v.vector(), x.matrix(B, in), cache.vector(), tcache.vector(),
                               yt.matrix(B, out));
        if (op == Op::forward_tangent) return {{"out_tangent", get(yt)}, {"tangent_cache", get(tcache)}};
        net.backward_tangent<T>(ctx, params.vector(), v.vector(), x.matrix(B, in), cache.vector(), tcache.vector(),
                                dout.matrix(B, out), doutt.matrix(B, out), dpt.vector());
        return {{"d_params_tangent", get(dpt)}};
      });
    }
  }
}


}  // namespace d2r::checks
