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

namespace {

/// The former tests/network_gpu_test.cpp comparison (NetworkGpu.MatchesReference): non-square
/// layers (inputs, alternating hidden widths and outputs all differ), init bit for bit equal to
/// cpu float (γ = 1, β = 0 with LayerNorm), then every parameter moved off it, forward, backward,
/// forward_tangent and backward_tangent on strided guarded views, and a second backward and
/// backward_tangent giving the same bits. Its tolerance D2R_EXPECT_CLOSE(2e-4, 2e-5·(1 + max|want|))
/// is Tol{2e-4, 0.1, 0.1}.
struct TrunkCase {
  std::int64_t B, width, depth;
  Activation act;
  bool layer_norm = false;
};

std::vector<TrunkCase> trunk_cases(Level level) {
  std::vector<TrunkCase> out;
  const auto add = [&](std::int64_t B, std::int64_t w) {
    out.push_back({B, w, 0, Activation::relu});
    out.push_back({B, w, 1, Activation::tanh});
    out.push_back({B, w, 3, Activation::relu});
    out.push_back({B, w, 3, Activation::tanh});
    if (w > 2) {  // LayerNorm over two features is ill-conditioned in float (x̂ = ±d/√(d² + ε))
      out.push_back({B, w, 1, Activation::tanh, true});
      out.push_back({B, w, 3, Activation::relu, true});
      out.push_back({B, w, 3, Activation::tanh, true});
    }
  };
  for (std::int64_t B : {1, 7, 1000})
    for (std::int64_t w : {2, 17, 64, 256})
      if ((B < 1000 && w < 64) == (level == Level::small) || level != Level::small) add(B, w);
  if (level != Level::small) {
    // Rows wider than 512 features: one block per LayerNorm row.
    for (std::int64_t B : {1, 7, 300}) {
      out.push_back({B, 600, 2, Activation::tanh, true});
      out.push_back({B, 1100, 1, Activation::relu, true});
    }
  }
  return out;
}

void add_trunk_checks(Table& t, Level level) {
  for (const TrunkCase c : trunk_cases(level)) {
    std::vector<std::int64_t> hidden;
    for (std::int64_t d = 0; d < c.depth; ++d) hidden.push_back(c.width + 5 * (d % 2));
    const MlpSpec spec{.inputs = c.width + 3, .hidden = hidden, .outputs = c.width / 2 + 1, .activation = c.act,
                       .layer_norm = c.layer_norm};
    t.add("mlp.all_passes", net_name(spec) + ", strided", fmt::format("B={}", c.B), {2e-4, 0.1, 0.1},
          [=](Context& ctx, auto one, Rng& r) -> Outputs {
            using T = decltype(one);
            const Mlp net(spec);
            const std::int64_t B = c.B, P = net.parameter_count(), C = net.cache_elements(B), in = net.inputs(),
                               out = net.outputs();
            // Init: this backend in float equals the cpu backend in float bit for bit (0 on both sides).
            std::vector<float> init(static_cast<std::size_t>(P));
            Context host({.backend = Backend::cpu});
            net.init<float>(host, vector_view(init.data(), P), 77);
            Vec init_difference(static_cast<std::size_t>(P), 0.0);
            if constexpr (std::is_same_v<T, float>) {
              Out<float> mine(ctx, P, "init");
              net.init<float>(ctx, mine.vector(), 77);
              const std::vector<float> got = mine.to_host();
              for (std::int64_t i = 0; i < P; ++i) init_difference[i] = static_cast<double>(got[i]) - init[i];
            }
            for (std::int64_t l = 0; l < net.layer_count(); ++l) {
              const MlpLayer L = net.layer(l);
              if (!L.normalized) continue;
              for (std::int64_t i = 0; i < L.outputs; ++i)
                if (init[static_cast<std::size_t>(L.gamma_offset + i)] != 1.0f || init[static_cast<std::size_t>(L.beta_offset + i)] != 0.0f)
                  throw Error(ErrorKind::invalid_argument, "init", "LayerNorm's γ is not 1 or β not 0 after init");
            }
            // Every parameter moved off its initial value (γ != 1, β != 0), at its init's magnitude.
            const Vec scale = r.vec(P, 0.5, 1.5), shift = r.vec(P, -0.1, 0.1);
            Vec p(static_cast<std::size_t>(P));
            for (std::int64_t i = 0; i < P; ++i)
              p[i] = init[i] * static_cast<float>(scale[i]) + static_cast<float>(shift[i]);
            const Out<T> params(ctx, p, "params"), x(ctx, B, in, r.vec(B * in, -1.5, 1.5), "x"), v(ctx, r.vec(P, -1, 1), "v"),
                dout(ctx, B, out, r.vec(B * out, -1, 1), "d_out"), doutt(ctx, B, out, r.vec(B * out, -1, 1), "d_out_tangent");
            Out<T> cache(ctx, C, "cache"), tcache(ctx, C, "tangent_cache"), y(ctx, B, out, {}, "out"),
                yt(ctx, B, out, {}, "out_tangent"), dp(ctx, P, "d_params"), dx(ctx, B, in, {}, "d_x"), dpt(ctx, P, "d_params_tangent");
            const auto pv = params.vector(), vv = v.vector();
            timed(ctx, [&] {  // the four passes in turn, one call for d2r bench (MlpPass::all_passes)
              net.forward<T>(ctx, pv, x.matrix(B, in), cache.vector(), y.matrix(B, out));
              net.backward<T>(ctx, pv, x.matrix(B, in), cache.vector(), dout.matrix(B, out), dp.vector(), dx.matrix(B, in));
              net.forward_tangent<T>(ctx, pv, vv, x.matrix(B, in), cache.vector(), tcache.vector(), yt.matrix(B, out));
              net.backward_tangent<T>(ctx, pv, vv, x.matrix(B, in), cache.vector(), tcache.vector(), dout.matrix(B, out),
                                      doutt.matrix(B, out), dpt.vector());
            });
            Outputs o{{"init_minus_cpu_float", init_difference}, {"out", get(y)},         {"cache", get(cache)},
                      {"d_params", get(dp)},                      {"d_x", get(dx)},        {"out_tangent", get(yt)},
                      {"tangent_cache", get(tcache)},             {"d_params_tangent", get(dpt)}};
            // Deterministic: a second backward and backward_tangent give the same bits (0 on both sides).
            net.backward<T>(ctx, pv, x.matrix(B, in), cache.vector(), dout.matrix(B, out), dp.vector(), MatrixView<T>{});
            net.backward_tangent<T>(ctx, pv, vv, x.matrix(B, in), cache.vector(), tcache.vector(), dout.matrix(B, out),
                                    doutt.matrix(B, out), dpt.vector());
            const Vec dp2 = get(dp), dpt2 = get(dpt);
            Vec rerun(dp2.size() + dpt2.size());
            for (std::size_t i = 0; i < dp2.size(); ++i) rerun[i] = dp2[i] - o[3].values[i];
            for (std::size_t i = 0; i < dpt2.size(); ++i) rerun[dp2.size() + i] = dpt2[i] - o[7].values[i];
            o.push_back({"rerun_minus_first", std::move(rerun)});
            return o;
          }).work_model = stated(mlp_work(Mlp(spec), c.B, MlpPass::all_passes));
  }
}

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
        // The case's own pass is the timed call (timed() runs it once outside d2r bench).
        const auto pass = [&](Op which, const std::function<void()>& call) { which == op ? timed(ctx, call) : call(); };
        pass(Op::forward, [&] { net.forward<T>(ctx, params.vector(), x.matrix(B, in), cache.vector(), y.matrix(B, out)); });
        if (op == Op::forward) return {{"out", get(y)}, {"cache", get(cache)}};
        if (op == Op::backward) {
          pass(Op::backward, [&] {
            net.backward<T>(ctx, params.vector(), x.matrix(B, in), cache.vector(), dout.matrix(B, out), dp.vector(),
                            dx.matrix(B, in));
          });
          return {{"d_params", get(dp)}, {"d_x", get(dx)}};
        }
        pass(Op::forward_tangent, [&] {
          net.forward_tangent<T>(ctx, params.vector(), v.vector(), x.matrix(B, in), cache.vector(), tcache.vector(),
                                 yt.matrix(B, out));
        });
        if (op == Op::forward_tangent) return {{"out_tangent", get(yt)}, {"tangent_cache", get(tcache)}};
        pass(Op::backward_tangent, [&] {
          net.backward_tangent<T>(ctx, params.vector(), v.vector(), x.matrix(B, in), cache.vector(), tcache.vector(),
                                  dout.matrix(B, out), doutt.matrix(B, out), dpt.vector());
        });
        return {{"d_params_tangent", get(dpt)}};
      }).work_model = stated(mlp_work(Mlp(c.spec), c.B,
                                      op == Op::forward           ? MlpPass::forward
                                      : op == Op::backward        ? MlpPass::backward_with_input
                                      : op == Op::forward_tangent ? MlpPass::forward_tangent
                                                                  : MlpPass::backward_tangent));
    }
  }
  add_trunk_checks(t, level);
}

}  // namespace d2r::checks
