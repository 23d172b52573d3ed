// Cases of the registry (host/checks/checks.hpp): sample, log_prob, entropy and backward of the three heads.
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

// ------------------------------------------------------------------ distributions

namespace {
/// sample, log_prob, entropy and backward of one Gaussian head family (Head = Diag or Chol) on its
/// shapes, per-row and shared second parameter.
/// `work`: the head's work formula (diag_work, cholesky_work of host/checks/work.hpp).
template <template <class> class Head>
void add_gaussian_head_checks(Table& t, const std::vector<Shape>& shapes, const std::string& name,
                              const std::string& shared_name, const std::string& second_grad,
                              Work (*work)(HeadOp, std::int64_t, std::int64_t, std::int64_t, std::int64_t, Cotangents, double)) {
  const Tol values{1e-4}, grads{1e-3};
  for (const Shape s : shapes) {
    const std::string size = gauss_size(s);
    for (const bool shared : {false, true}) {
      if (shared && s.B == 1) continue;
      const std::string var = shared ? shared_name : name;
      const std::int64_t S = shared ? 1 : s.B;
      t.add("sample", var, size, values, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        Out<T> y(ctx, s.B * s.G * s.n, "y");
        timed(ctx, [&] { sample(ctx, h.head(), s.G, kKey, y.matrix(s.B * s.G, s.n)); });
        return {{"samples", get(y)}};
      }).work_model = stated(work(HeadOp::sample, s.B, s.n, s.G, S, {}, 4));
      t.add("log_prob", var, size, values, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3));
        Out<T> lp(ctx, s.B * s.G, "lp");
        timed(ctx, [&] { log_prob(ctx, h.head(), y.matrix(s.B * s.G, s.n), lp.matrix(s.B, s.G)); });
        return {{"log_prob", get(lp)}};
      }).work_model = stated(work(HeadOp::log_prob, s.B, s.n, s.G, S, {}, 4));
      t.add("entropy", var, size, values, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        Out<T> e(ctx, s.B, "e");
        timed(ctx, [&] { entropy(ctx, h.head(), e.vector()); });
        return {{"entropy", get(e)}};
      }).work_model = stated(work(HeadOp::entropy, s.B, s.n, s.G, S, {}, 4));
      t.add("backward", var, size, grads, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)),
                        e = put<T>(ctx, r.vec(s.B, -1, 1));
        auto g = h.zeros(ctx);
        timed(ctx, [&] { backward(ctx, h.head(), y.matrix(s.B * s.G, s.n), c.matrix(s.B, s.G), e.vector(), h.as_grad(g)); });
        return {{"grad_mean", get(g.a)}, {second_grad, get(g.b)}};
      }).work_model = stated(work(HeadOp::backward, s.B, s.n, s.G, S, {}, 4));
    }
  }
}
}  // namespace

namespace {
// ------------------------------------------------------------------ diagonal Gaussian, strided

/// The former tests/diag_gaussian_gpu_test.cpp comparisons: strided, guarded head and outputs; the
/// draws of key {17, 5} against the reference's; log_prob, entropy and backward on the TESTED
/// side's own draws (fed to the double reference); backward with one cotangent only (d_entropy
/// alone without samples, d_log_prob alone); that test's shapes and D2R_EXPECT_CLOSE tolerances
/// (|got − want| <= atol + rtol·|want| is Tol{rtol, 0, atol / rtol}); a zero reference gradient fails.
enum class DiagOp { sample, log_prob, entropy, backward, backward_entropy_only, backward_log_prob_only };

/// The head side of the strided comparisons: Diag builds a diagonal-Gaussian head (log-std, keys
/// {17, 5} and {3}), Chol a Cholesky one (packed tril, jitter 1e-4, keys {123, 40} and {5}).
struct DiagSide {
  static constexpr const char* second = "log_std";
  static constexpr const char* second_grad = "grad_log_std";
  static std::int64_t width(std::int64_t n) { return n; }
  static DrawKey key(bool one_cotangent) { return one_cotangent ? DrawKey{.step = 3} : DrawKey{.step = 17, .first_row = 5}; }
  template <class T>
  static DiagGaussian<T> head(MatrixView<const T> mean, MatrixView<const T> second) { return {mean, second}; }
  template <class T>
  using Grad = DiagGaussianGrad<T>;
  static constexpr bool twice = false;  // the diag test ran backward once
};
struct CholSide {
  static constexpr const char* second = "tril";
  static constexpr const char* second_grad = "grad_tril";
  static std::int64_t width(std::int64_t n) { return packed(n); }
  static DrawKey key(bool one_cotangent) { return one_cotangent ? DrawKey{.step = 5} : DrawKey{.step = 123, .first_row = 40}; }
  template <class T>
  static CholeskyGaussian<T> head(MatrixView<const T> mean, MatrixView<const T> second) { return {mean, second, f32<T>(1e-4)}; }
  template <class T>
  using Grad = CholeskyGaussianGrad<T>;
  static constexpr bool twice = true;  // deterministic: a second backward gives the same bits
};

/// The inputs of one strided comparison: mean, the second parameter (log-std or packed tril), and
/// the cotangents.
struct StridedIn {
  Vec mean, second, c, e;
};
struct StridedShape {
  std::int64_t B, n, G;
  bool shared;
};

/// Runs `op` in T on ctx; returns its outputs after "samples" (the draws, first). `y`: the draws to
/// evaluate at (the tested side's), or null for this side's own. With Side::twice, backward runs a
/// second time and "rerun_minus_first" (0 on both sides) is appended.
template <class Side, class T>
Outputs strided_side(Context& ctx, const StridedIn& in, StridedShape s, DiagOp op, const Vec* y) {
  const std::int64_t B = s.B, n = s.n, G = s.G, S = s.shared ? 1 : B, P = Side::width(n);
  const Out<T> mean(ctx, B, n, in.mean, "mean"), second(ctx, S, P, in.second, Side::second), c(ctx, B, G, in.c, "d_log_prob"),
      e(ctx, in.e, "d_entropy");
  const auto head = Side::template head<T>(mean.matrix(B, n), second.matrix(S, P));
  const bool one_cotangent = op == DiagOp::backward_entropy_only || op == DiagOp::backward_log_prob_only;
  Out<T> draws(ctx, B * G, n, {}, "samples");
  sample(ctx, head, G, Side::key(one_cotangent), draws.matrix(B * G, n));
  Outputs out{{"samples", get(draws)}};
  if (op == DiagOp::sample) return out;
  const Out<T> at(ctx, B * G, n, y != nullptr ? *y : out[0].values, "y");
  const MatrixView<const T> yv = at.matrix(B * G, n);
  if (op == DiagOp::log_prob) {
    Out<T> lp(ctx, B, G, {}, "log_prob");
    log_prob(ctx, head, yv, lp.matrix(B, G));
    out.push_back({"log_prob", get(lp)});
  } else if (op == DiagOp::entropy) {
    Out<T> h(ctx, B, "entropy");
    entropy(ctx, head, h.vector());
    out.push_back({"entropy", get(h)});
  } else {
    const auto run = [&](Out<T>& gm, Out<T>& gs) {
      const typename Side::template Grad<T> grad{gm.matrix(B, n), gs.matrix(S, P)};
      if (op == DiagOp::backward) backward(ctx, head, yv, c.matrix(B, G), e.vector(), grad);
      if (op == DiagOp::backward_entropy_only) backward(ctx, head, MatrixView<const T>{}, MatrixView<const T>{}, e.vector(), grad);
      if (op == DiagOp::backward_log_prob_only) backward(ctx, head, yv, c.matrix(B, G), VectorView<const T>{}, grad);
    };
    Out<T> gm(ctx, B, n, {}, "grad_mean"), gs(ctx, S, P, {}, Side::second_grad);
    run(gm, gs);
    out.push_back({"grad_mean", get(gm)});
    out.push_back({Side::second_grad, get(gs)});
    if (Side::twice && op == DiagOp::backward) {
      Out<T> gm2(ctx, B, n, {}, "grad_mean"), gs2(ctx, S, P, {}, Side::second_grad);
      run(gm2, gs2);
      const Vec a = get(gm2), b = get(gs2);
      Vec d(a.size() + b.size());
      for (std::size_t i = 0; i < a.size(); ++i) d[i] = a[i] - out[1].values[i];
      for (std::size_t i = 0; i < b.size(); ++i) d[a.size() + i] = b[i] - out[2].values[i];
      out.push_back({"rerun_minus_first", std::move(d)});
    }
  }
  return out;
}

void add_strided_diag_checks(Table& t, Level level) {
  const std::vector<StridedShape> shapes = upto<StridedShape>(
      level, {{1, 1, 1, false}, {1, 1, 1, true}, {3, 5, 7, false}, {7, 2, 5, true}, {33, 17, 5, false}},
      {{257, 17, 5, true}, {129, 64, 16, false}, {1000, 33, 50, true}, {2, 1000, 3, false}, {4099, 6, 2, true}}, {});
  struct Named {
    DiagOp op;
    const char* primitive;
    const char* variant;
  };
  for (const StridedShape s : shapes) {
    const double n = static_cast<double>(s.n), G = static_cast<double>(s.G), scale_g = G * (s.shared ? static_cast<double>(s.B) : 1.0);
    for (const Named k : {Named{DiagOp::sample, "sample", "strided, key {17, 5}"},
                          Named{DiagOp::log_prob, "log_prob", "strided, at the tested draws"},
                          Named{DiagOp::entropy, "entropy", "strided"},
                          Named{DiagOp::backward, "backward", "strided, at the tested draws"},
                          Named{DiagOp::backward_entropy_only, "backward", "strided, d_entropy only, no samples"},
                          Named{DiagOp::backward_log_prob_only, "backward", "strided, d_log_prob only"}}) {
      const Tol tol = k.op == DiagOp::sample     ? Tol{2e-5, 0.0, 1.0}
                      : k.op == DiagOp::log_prob ? Tol{1e-5, 0.0, 0.2 * n}
                      : k.op == DiagOp::entropy  ? Tol{1e-6, 0.0, n}
                                                 : Tol{1e-4, 0.0, 0.1 * G};
      const Tol log_std_tol{1e-4, 0.0, 0.1 * scale_g};
      t.add_custom(k.primitive, fmt::format("diag{}, {}", s.shared ? " shared" : "", k.variant), gauss_size(Shape{s.B, s.n, s.G}),
                   tol, [=](Env& env, std::uint64_t salt) {
                     Rng r(env.seed, salt);
                     const std::int64_t S = s.shared ? 1 : s.B;
                     StridedIn in;
                     in.mean = r.vec(s.B * s.n, -2, 2);
                     in.second = r.vec(S * s.n, -1, 1);
                     in.c = r.vec(s.B * s.G, -1, 1);
                     in.e = r.vec(s.B, -1, 1);
                     Outputs got = strided_side<DiagSide, float>(env.test, in, s, k.op, nullptr);
                     Outputs want = strided_side<DiagSide, double>(env.ref, in, s, k.op, k.op == DiagOp::sample ? nullptr : &got[0].values);
                     if (k.op == DiagOp::sample) return compare(got, want, tol);
                     got.erase(got.begin());
                     want.erase(want.begin());
                     if (k.op == DiagOp::log_prob || k.op == DiagOp::entropy) return compare(got, want, tol);
                     Outcome o = worse(compare({got[0]}, {want[0]}, tol), compare({got[1]}, {want[1]}, log_std_tol));
                     double norm = 0;
                     for (double v : want[1].values) norm += std::abs(v);
                     if (!(norm > 0)) {
                       o.status = Status::fail;
                       o.note = "the reference grad_log_std is zero: nothing was compared";
                     }
                     return o;
                   });
    }
  }
}
// ------------------------------------------------------------------ Cholesky Gaussian, strided

/// The former tests/cholesky_gaussian_gpu_test.cpp comparisons (CholeskyGpu): strided guarded
/// head and outputs, jitter 1e-4; draws of key {123, 40}; log_prob and backward at the tested
/// side's draws; a second backward gives the same bits; backward with one cotangent only (key {5});
/// that test's shapes and tolerances (atol / rtol as the floor; "× max|want|" as Tol::floor), and
/// its non-vacuity thresholds (max|want| of draws and log_prob > 0.1, of the gradients > 1e-3).
void add_strided_cholesky_checks(Table& t, Level level) {
  const std::vector<StridedShape> shapes = upto<StridedShape>(
      level,
      {{1, 1, 1, false}, {1, 2, 5, false}, {1, 64, 1, true}, {7, 1, 100, true}, {7, 2, 5, true}, {7, 3, 50, false},
       {7, 17, 50, false}, {7, 17, 50, true}, {5, 64, 100, false}, {3, 64, 33, true}, {2, 4, 64, false}},
      {{257, 3, 100, false}, {257, 3, 100, true}, {257, 17, 5, true}, {257, 64, 5, false}, {300, 5, 7, true},
       {33, 17, 1, true}},
      {});
  struct Named {
    DiagOp op;
    const char* primitive;
    const char* variant;
  };
  for (const StridedShape s : shapes) {
    const double n = static_cast<double>(s.n);
    for (const Named k : {Named{DiagOp::sample, "sample", "strided, key {123, 40}"},
                          Named{DiagOp::log_prob, "log_prob", "strided, at the tested draws"},
                          Named{DiagOp::entropy, "entropy", "strided"},
                          Named{DiagOp::backward, "backward", "strided, at the tested draws, twice"},
                          Named{DiagOp::backward_entropy_only, "backward", "strided, d_entropy only, no samples"},
                          Named{DiagOp::backward_log_prob_only, "backward", "strided, d_log_prob only"}}) {
      const Tol tol = k.op == DiagOp::sample     ? Tol{1e-4, 0.0, 0.1 * (1.0 + std::sqrt(n))}
                      : k.op == DiagOp::log_prob ? Tol{1e-4, 0.0, 0.1 * n}
                      : k.op == DiagOp::entropy  ? Tol{1e-5, 0.0, n}
                                                 : Tol{1e-3, 0.1, 0.0};
      t.add_custom(k.primitive, fmt::format("cholesky{}, {}", s.shared ? " shared" : "", k.variant),
                   gauss_size(Shape{s.B, s.n, s.G}), tol, [=](Env& env, std::uint64_t salt) {
                     Rng r(env.seed, salt);
                     const std::int64_t S = s.shared ? 1 : s.B;
                     StridedIn in;
                     in.mean = r.vec(s.B * s.n, -2, 2);
                     in.second = Chol<double>::tril_values(r, S, s.n);
                     in.c = r.vec(s.B * s.G, -1, 1);
                     in.e = r.vec(s.B, -1, 1);
                     Outputs got = strided_side<CholSide, float>(env.test, in, s, k.op, nullptr);
                     Outputs want = strided_side<CholSide, double>(env.ref, in, s, k.op, k.op == DiagOp::sample ? nullptr : &got[0].values);
                     if (k.op == DiagOp::sample) return require_scale(compare(got, want, tol), want[0], 0.1);
                     got.erase(got.begin());
                     want.erase(want.begin());
                     if (k.op == DiagOp::log_prob) return require_scale(compare(got, want, tol), want[0], 0.1);
                     if (k.op == DiagOp::entropy) return compare(got, want, tol);
                     if (k.op == DiagOp::backward) {
                       const Outcome o = compare(got, want, tol);  // the rerun difference: 0 against 0
                       return require_scale(require_scale(o, want[0], 1e-3), want[1], 1e-3);
                     }
                     // One cotangent: grad_mean's floor is 1e-4·max(max|want|, 1), grad_tril's 1e-4·max|want|.
                     const Outcome o = worse(compare({got[0]}, {want[0]}, Tol{1e-3, 0.0, 0.1 * std::max(max_abs(want[0].values), 1.0)}),
                                             compare({got[1]}, {want[1]}, Tol{1e-3, 0.1, 0.0}));
                     return require_scale(o, want[1], 1e-3);
                   });
    }
  }
}
}  // namespace

// ------------------------------------------------------------------ categorical, strided

namespace {

/// The former tests/categorical_gpu_test.cpp comparisons (CategoricalGpu.MatchesReference): strided
/// guarded head and outputs, key {12345, 7}; the draws under the GPU sampler's rule (in range,
/// unmasked, equal or a neighbour within 1e-6·Z of the target: compare_draws_windowed) and again
/// the same bits; log_prob (finite reference, never positive) and backward at the TESTED side's
/// draws; entropy; backward with both cotangents and with d_entropy alone, each element within
/// 1e-4 of the scale of the terms that make it up (tiny entries of large vocabularies against
/// their own size), masked classes exactly 0, a second run the same bits; its 18 shapes.
struct CatStridedShape {
  std::int64_t B, C, G;
};
enum class CatOp { sample, log_prob, entropy, backward, backward_entropy_only };
constexpr DrawKey kCatKey{.step = 12345, .first_row = 7};

struct CatIn {
  Vec logits, c, e;
};
struct CatSideOut {
  Idx draws, again;
  Vec values, rerun;
};

template <class T>
CatSideOut cat_strided_side(Context& ctx, const CatIn& in, CatStridedShape s, CatOp op, const Idx* at) {
  const std::int64_t B = s.B, C = s.C, G = s.G;
  const Out<T> logits(ctx, B, C, in.logits, "logits"), c(ctx, B, G, in.c, "d_log_prob"), e(ctx, 1, B, in.e, "d_entropy");
  const Categorical<T> head{logits.matrix(B, C)};
  CatSideOut out;
  if (op == CatOp::sample) {
    Out<std::int32_t> k(ctx, B, G, {}, "samples"), k2(ctx, B, G, {}, "samples again");
    sample(ctx, head, G, kCatKey, k.matrix(B, G));
    sample(ctx, head, G, kCatKey, k2.matrix(B, G));
    out.draws = k.to_host();
    out.again = k2.to_host();
    return out;
  }
  if (op == CatOp::entropy) {
    Out<T> h(ctx, 1, B, {}, "entropy");
    entropy(ctx, head, h.vector());
    out.values = get(h);
    return out;
  }
  const Out<std::int32_t> idx(ctx, B, G, Vec(at->begin(), at->end()), "samples");
  if (op == CatOp::log_prob) {
    Out<T> lp(ctx, B, G, {}, "log_prob");
    log_prob(ctx, head, idx.matrix(B, G), lp.matrix(B, G));
    out.values = get(lp);
    return out;
  }
  const bool both = op == CatOp::backward;
  const VectorView<const T> ev{e.data(), B};
  const auto run = [&](Out<T>& g) {
    backward(ctx, head, both ? idx.matrix(B, G) : MatrixView<const std::int32_t>{}, both ? c.matrix(B, G) : MatrixView<const T>{},
             ev, CategoricalGrad<T>{g.matrix(B, C)});
  };
  Out<T> g(ctx, B, C, {}, "grad_logits"), g2(ctx, B, C, {}, "grad_logits again");
  run(g);
  run(g2);
  out.values = get(g);
  out.rerun = get(g2);
  return out;
}

/// Backward against the reference, per element relative to p·(Σ|c| + |e|(1 + |log p| + H)) +
/// Σ_{draws of the class} |c| (the terms that make up the gradient); masked classes exactly 0.
Outcome cat_backward_outcome(const CatIn& in, CatStridedShape s, bool both, const Idx& draws, const Vec& got, const Vec& want,
                             const Vec& h) {
  const std::int64_t B = s.B, C = s.C, G = s.G;
  Outcome o;
  o.tolerance = 1.0;
  o.tol_text = "1e-4·scale";
  std::int64_t worst = -1;
  double largest = 0;
  std::string masked_note;
  for (std::int64_t b = 0; b < B; ++b) {
    double c_abs = 0;
    std::vector<double> at_class(static_cast<std::size_t>(C), 0.0);
    if (both) {
      for (std::int64_t g = 0; g < G; ++g) {
        c_abs += std::abs(in.c[b * G + g]);
        at_class[static_cast<std::size_t>(draws[b * G + g])] += std::abs(in.c[b * G + g]);
      }
    }
    double m = -kInf, sum = 0;
    for (std::int64_t j = 0; j < C; ++j) m = std::max(m, in.logits[b * C + j]);
    for (std::int64_t j = 0; j < C; ++j) sum += std::exp(in.logits[b * C + j] - m);
    const double lse = m + std::log(sum);
    for (std::int64_t j = 0; j < C; ++j) {
      const std::int64_t i = b * C + j;
      const double x = in.logits[i];
      if (x == -kInf) {
        if (got[i] != 0.0 && masked_note.empty()) masked_note = fmt::format("masked class {} of row {}: {} (not 0)", j, b, got[i]);
        continue;
      }
      const double lp = x - lse, p = std::exp(lp);
      const double scale = p * (c_abs + std::abs(in.e[b]) * (1 + std::abs(lp) + h[b])) + at_class[static_cast<std::size_t>(j)];
      const double err = std::abs(got[i] - want[i]), ratio = err / (1e-4 * scale + 1e-30);
      largest = std::max(largest, std::abs(want[i]));
      o.abs_err = std::max(o.abs_err, err);
      if (!(ratio <= o.rel_err)) {
        o.rel_err = ratio;
        worst = i;
      }
    }
  }
  o.status = o.rel_err <= 1.0 && masked_note.empty() && largest > 0 ? Status::pass : Status::fail;
  if (!masked_note.empty()) o.note = masked_note;
  else if (!(largest > 0)) o.note = "the reference gradient is zero: nothing was compared";
  else if (worst >= 0) o.note = fmt::format("worst grad_logits[{}] (error over 1e-4·scale): got {:.7g}, expected {:.7g}", worst, got[worst], want[worst]);
  return o;
}

void add_strided_categorical_checks(Table& t, Level level) {
  const std::vector<CatStridedShape> shapes = upto<CatStridedShape>(
      level, {{1, 2, 1}, {3, 2, 300}, {7, 3, 5}, {5, 64, 50}, {1, 512, 300}, {3, 513, 5}},
      {{1, 1000, 50}, {5, 1000, 300}, {1, 2048, 3}, {3, 2049, 50}, {2, 2049, 300}, {3, 4096, 7}, {1, 32000, 5}, {4, 32000, 50},
       {2, 131072, 300}, {1, 262144, 1}, {3, 262144, 50}, {2, 262144, 300}},
      {});
  struct Named {
    CatOp op;
    const char* primitive;
    const char* variant;
  };
  for (const CatStridedShape s : shapes) {
    if (t.self_check && s.C > kSelfCheckMaxClasses) continue;
    for (const Named k : {Named{CatOp::sample, "sample", "categorical strided, key {12345, 7}, draw window 1e-6 Z, twice"},
                          Named{CatOp::log_prob, "log_prob", "categorical strided, at the tested draws"},
                          Named{CatOp::entropy, "entropy", "categorical strided"},
                          Named{CatOp::backward, "backward", "categorical strided, at the tested draws, twice"},
                          Named{CatOp::backward_entropy_only, "backward", "categorical strided, d_entropy only, twice"}}) {
      t.add_custom(k.primitive, k.variant, cat_size(Shape{s.B, s.C, s.G}), k.op == CatOp::sample ? Tol{1e-3} : close(1e-5, 1e-5),
                   [=](Env& env, std::uint64_t salt) -> Outcome {
                     Rng r(env.seed, salt);
                     CatIn in;
                     in.logits = logits_values(r, s.B, s.C);
                     in.c = r.vec(s.B * s.G, -1, 1);
                     in.e = r.vec(s.B, -1, 1);
                     const CatSideOut drawn = cat_strided_side<float>(env.test, in, s, CatOp::sample, nullptr);
                     if (k.op == CatOp::sample) {
                       const CatSideOut ref = cat_strided_side<double>(env.ref, in, s, CatOp::sample, nullptr);
                       Outcome o = compare_draws_windowed(drawn.draws, ref.draws, in.logits, s.B, s.C, s.G, env.seed, kCatKey.step,
                                                          kCatKey.first_row);
                       if (drawn.again != drawn.draws) {
                         o.status = Status::fail;
                         o.note = "sampling must be deterministic: a second draw differs";
                       }
                       return o;
                     }
                     // The tested side's draws are the indices of log_prob and backward on both sides.
                     const CatSideOut got = cat_strided_side<float>(env.test, in, s, k.op, &drawn.draws);
                     const CatSideOut want = cat_strided_side<double>(env.ref, in, s, k.op, &drawn.draws);
                     if (k.op == CatOp::log_prob) {
                       Outcome o = compare({{"log_prob", got.values}}, {{"log_prob", want.values}}, close(1e-5, 1e-5));
                       for (std::size_t i = 0; i < want.values.size(); ++i) {
                         if (!std::isfinite(want.values[i]) || got.values[i] > 0.0) {
                           o.status = Status::fail;
                           o.note = fmt::format("log_prob[{}]: got {}, reference {} (must be finite and <= 0)", i, got.values[i],
                                                want.values[i]);
                           break;
                         }
                       }
                       return o;
                     }
                     if (k.op == CatOp::entropy) return compare({{"entropy", got.values}}, {{"entropy", want.values}}, close(1e-5, 1e-5));
                     const Vec h = cat_strided_side<double>(env.ref, in, s, CatOp::entropy, nullptr).values;
                     Outcome o = cat_backward_outcome(in, s, k.op == CatOp::backward, drawn.draws, got.values, want.values, h);
                     if (std::memcmp(got.values.data(), got.rerun.data(), got.values.size() * sizeof(double)) != 0) {
                       o.status = Status::fail;
                       o.note = "backward must be deterministic: a second run differs";
                     }
                     return o;
                   });
    }
  }
}
}  // namespace

void add_distribution_checks(Table& t, Level level) {
  add_gaussian_head_checks<Diag>(t, diag_shapes(level), "diag", "diag, shared log-std", "grad_log_std", diag_work);
  add_gaussian_head_checks<Chol>(t, chol_shapes(level), "cholesky", "cholesky, shared L", "grad_tril", cholesky_work);
  add_strided_diag_checks(t, level);
  add_strided_cholesky_checks(t, level);
  add_strided_categorical_checks(t, level);
  for (const Shape s : cat_shapes(level, t.self_check)) {
    const std::string size = cat_size(s);
    // Draw for draw: the tolerance is compare_draws's agreement fraction.
    t.add_custom("sample", "categorical", size, {1e-3}, [=](Env& env, std::uint64_t salt) {
      const auto draw = [&](Context& ctx, auto one) {
        using T = decltype(one);
        Rng r(env.seed, salt);
        const Cat<T> h(ctx, r, s);
        Out<std::int32_t> k(ctx, s.B * s.G, "k");
        sample(ctx, h.head(), s.G, kKey, k.matrix(s.B, s.G));
        return std::make_pair(k.to_host(), h.host_logits);
      };
      const auto got = draw(env.test, float{});
      const auto want = draw(env.ref, double{});
      return compare_draws(got.first, want.first, want.second, s.B, s.n, s.G, env.self_check);
    });
    // Timed on the tested side alone: the draws of the same inputs.
    Case& sampled = t.cases.back();
    sampled.build = [s](Context& ctx, std::uint64_t seed, std::uint64_t salt) {
      Rng r(seed, salt);
      const Cat<float> h(ctx, r, s);
      Out<std::int32_t> k(ctx, s.B * s.G, "k");
      timed(ctx, [&] { sample(ctx, h.head(), s.G, kKey, k.matrix(s.B, s.G)); });
      (void)k.to_host();
    };
    sampled.work_model = stated(categorical_work(HeadOp::sample, s.B, s.n, s.G));
    t.add("log_prob", "categorical", size, {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      Out<T> lp(ctx, s.B * s.G, "lp");
      timed(ctx, [&] { log_prob(ctx, h.head(), k.matrix(s.B, s.G), lp.matrix(s.B, s.G)); });
      return {{"log_prob", get(lp)}};
    }).work_model = stated(categorical_work(HeadOp::log_prob, s.B, s.n, s.G));
    t.add("entropy", "categorical", size, {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      Out<T> e(ctx, s.B, "e");
      timed(ctx, [&] { entropy(ctx, h.head(), e.vector()); });
      return {{"entropy", get(e)}};
    }).work_model = stated(categorical_work(HeadOp::entropy, s.B, s.n, s.G));
    // Per element: the gradient of a large vocabulary has entries far below its largest one.
    t.add("backward", "categorical", size, {1e-3, 1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      const Buffer<T> c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)), e = put<T>(ctx, r.vec(s.B, -1, 1));
      Out<T> g(ctx, s.B * s.n, "g");
      timed(ctx, [&] { backward(ctx, h.head(), k.matrix(s.B, s.G), c.matrix(s.B, s.G), e.vector(), h.as_grad(g)); });
      return {{"grad_logits", get(g)}};
    }).work_model = stated(categorical_work(HeadOp::backward, s.B, s.n, s.G));
  }
}


}  // namespace d2r::checks
