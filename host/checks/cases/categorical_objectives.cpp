// Cases of the registry (host/checks/checks.hpp): the former tests/categorical_objectives_gpu_test.cpp.
// The fused REINFORCE surrogate of the categorical head on the tested backend (float) against
//  (1) a double composition of the cpu primitives (log_prob, one-hot reward, transform_rewards,
//      entropy, reference::objectives::pg_row_terms, backward) run on the tested sampler's own draws: every row;
//  (2) the cpu reference pg_surrogate in double (its own draws): the rows whose draws equal the
//      reference draws (in float they may differ at a CDF boundary), where the composition must
//      also equal the reference (1e-12);
//  (3) pg_surrogate_unfused on the tested backend (the same draws as sample(), the same result);
// and the same bits again. Draws under the 1e-6·Z window and neighbour rule. Per-element
// tolerances of 1e-4 (loss), 1e-6 (reward) and 2e-4 (gradient) of the magnitude of the terms that
// make up each output. The test's shapes (B in {1, 7, 300} x C in {2, 10, 1000, 32000} x G in
// {1, 5, 50, 300}, and 3 x 2^18 x 50), configurations, special rows (a one-class row, a masked
// label, a masked tile, a peaked row), clips, the G cap and value conventions. Reward parameters
// are dyadic, so rewards and their group sums are exact in float.
#include "host/checks/cases/common.hpp"
#include "host/reference/objectives.hpp"

namespace d2r::checks {

namespace {
struct CatConfig {
  RewardForm form = RewardForm::scalar;
  Transform transform = Transform::none;
  bool clip = false;
  double lambda = 0.3;
  std::int64_t normaliser_rows = 0;
  bool with_reward = true;
  [[nodiscard]] std::string describe() const {
    return fmt::format("form={} transform={} clip={} lambda={} normaliser_rows={} row_reward={}", form_name(form),
                       to_string(transform), clip, lambda, normaliser_rows, with_reward ? "yes" : "empty");
  }
};

/// Float-representable logits in [-4, 4], about 10 % masked, never a whole row; with B >= 5 the
/// special rows: 1 a single unmasked class, 2 a masked label, 3 a whole masked 2048-tile (C >
/// 4096) and masked first and last classes, 4 a peaked row.
struct CatProblem {
  std::int64_t B, C;
  Vec logits;
  Idx labels;
  CatProblem(Rng& r, std::int64_t batch, std::int64_t classes) : B(batch), C(classes) {
    logits.resize(static_cast<std::size_t>(B * C));
    labels.resize(static_cast<std::size_t>(B));
    for (std::int64_t b = 0; b < B; ++b) {
      labels[b] = r.index(C);
      bool any = false;
      for (std::int64_t j = 0; j < C; ++j) {
        const bool masked = r.uniform(0, 1) < 0.1;
        logits[b * C + j] = masked ? -kInf : r.uniform(-4, 4);
        any = any || !masked;
      }
      if (!any) logits[b * C + C / 2] = 0.5;
    }
    if (B < 5) return;
    double* r1 = &logits[1 * C];
    for (std::int64_t j = 0; j < C; ++j) r1[j] = j == C / 3 ? 1.25 : -kInf;
    double* r2 = &logits[2 * C];
    r2[labels[2]] = -kInf;
    if (std::none_of(r2, r2 + C, [](double x) { return std::isfinite(x); })) r2[(labels[2] + 1) % C] = 0.0;
    double* r3 = &logits[3 * C];
    if (C > 4096)
      for (std::int64_t j = 2048; j < 4096; ++j) r3[j] = -kInf;
    r3[0] = -kInf;
    r3[C - 1] = -kInf;
    if (std::none_of(r3, r3 + C, [](double x) { return std::isfinite(x); })) r3[C / 2] = 0.0;
    logits[4 * C + (C * 2) / 3] = 15.0;
  }
};

/// Dyadic reward parameters (multiples of 1/8): U = u·I, diag(U), or R with R_ii in [0.5, 1.25].
Vec cat_reward_params(Rng& r, RewardForm form, std::int64_t C) {
  Vec p(static_cast<std::size_t>(reward_param_count(form, C)));
  if (form == RewardForm::full) {
    for (std::int64_t i = 0; i < C; ++i)
      for (std::int64_t j = 0; j <= i; ++j)
        p[packed(i) + j] = i == j ? r.dyadic(0.5, 1.25) : (r.uniform(0, 1) < 0.3 ? r.dyadic(-0.25, 0.25) : 0.0);
  } else {
    for (double& v : p) v = r.dyadic(0.25, 2.0);
  }
  return p;
}

/// The double composition on given draws, and the per-element tolerances derived from it.
struct Composition {
  Vec log_prob, rewards, advantages, entropy, d_log_prob, d_entropy, row_loss, row_reward, grad;
  Vec tol_loss, tol_reward, tol_grad;
};

Composition compose(Context& cpu, const CatProblem& p, const Idx& draws, std::int64_t G, const MahalanobisReward<double>& reward,
                    const PgOptions<double>& opt) {
  const std::int64_t B = p.B, C = p.C;
  const Categorical<double> head{matrix_view<const double>(p.logits.data(), B, C)};
  const MatrixView<const std::int32_t> samples = matrix_view<const std::int32_t>(draws.data(), B, G);
  const auto n = static_cast<std::size_t>(B * G);
  Composition o;
  o.log_prob.resize(n), o.rewards.resize(n), o.advantages.resize(n), o.d_log_prob.resize(n);
  o.entropy.resize(static_cast<std::size_t>(B)), o.d_entropy.resize(static_cast<std::size_t>(B));
  o.row_loss.resize(static_cast<std::size_t>(B)), o.row_reward.resize(static_cast<std::size_t>(B));
  o.grad.resize(static_cast<std::size_t>(B * C));
  log_prob(cpu, head, samples, matrix_view(o.log_prob.data(), B, G));
  d2r::reward(cpu, reward, samples, vector_view<const std::int32_t>(p.labels.data(), B), C, matrix_view(o.rewards.data(), B, G));
  transform_rewards(cpu, opt.transform, matrix_view<const double>(o.rewards.data(), B, G), matrix_view(o.advantages.data(), B, G));
  entropy(cpu, head, vector_view(o.entropy.data(), B));
  const double N = static_cast<double>(opt.normaliser_rows > 0 ? opt.normaliser_rows : B);
  reference::objectives::pg_row_terms<double>(
      opt, {1.0, N, G}, matrix_view<const double>(o.log_prob.data(), B, G),
      matrix_view<const double>(o.rewards.data(), B, G), matrix_view<const double>(o.advantages.data(), B, G),
      vector_view<const double>(o.entropy.data(), B), matrix_view(o.d_log_prob.data(), B, G),
      vector_view(o.d_entropy.data(), B), {vector_view(o.row_loss.data(), B), vector_view(o.row_reward.data(), B)});
  backward(cpu, head, samples, matrix_view<const double>(o.d_log_prob.data(), B, G), vector_view<const double>(o.d_entropy.data(), B),
           CategoricalGrad<double>{matrix_view(o.grad.data(), B, C)});
  // Tolerances: relative 1e-4 of the magnitude of the terms that make up each output (so that
  // cancellation and the tiny entries of large vocabularies are judged on their own scale).
  o.tol_loss.resize(static_cast<std::size_t>(B)), o.tol_reward.resize(static_cast<std::size_t>(B));
  o.tol_grad.resize(static_cast<std::size_t>(B * C));
  std::vector<std::int32_t> count(static_cast<std::size_t>(C));
  for (std::int64_t b = 0; b < B; ++b) {
    double loss_scale = 0, r_max = 0, c_max = 0;
    for (std::int64_t g = 0; g < G; ++g) {
      const std::size_t i = static_cast<std::size_t>(b * G + g);
      loss_scale += (std::abs(o.log_prob[i]) + 1) * std::abs(o.advantages[i]) / static_cast<double>(G);
      r_max = std::max(r_max, std::abs(o.rewards[i]));
      c_max = std::max(c_max, std::abs(o.d_log_prob[i]));
    }
    const double H = o.entropy[b], e = std::abs(o.d_entropy[b]);
    loss_scale = (loss_scale + opt.entropy_weight * (std::abs(H) + 1)) / N;
    o.tol_loss[b] = 1e-4 * loss_scale + 1e-30;
    o.tol_reward[b] = 1e-6 * (r_max + 1);
    std::fill(count.begin(), count.end(), 0);
    for (std::int64_t g = 0; g < G; ++g) ++count[draws[b * G + g]];
    double m = -kInf;
    for (std::int64_t j = 0; j < C; ++j) m = std::max(m, p.logits[b * C + j]);
    double z = 0;
    for (std::int64_t j = 0; j < C; ++j) z += std::exp(p.logits[b * C + j] - m);
    const double lse = m + std::log(z);
    for (std::int64_t j = 0; j < C; ++j) {
      const double lp = p.logits[b * C + j] - lse, pj = std::exp(lp);
      const double scale =
          pj > 0 ? pj * (static_cast<double>(G) * c_max + e * (std::abs(lp) + std::abs(H) + 1)) + count[j] * c_max : 0.0;
      o.tol_grad[b * C + j] = 2e-4 * scale + 1e-30;
    }
  }
  return o;
}

/// |got − want| <= tol elementwise over the rows selected (all when `rows` is empty); both NaN
/// counts as equal. As an Outcome: the worst error over its tolerance (pass when <= 1).
Outcome within(const Vec& got, const Vec& want, const Vec& tol, std::int64_t cols, const std::vector<bool>& rows, const std::string& what) {
  Outcome o;
  o.tolerance = 1.0;
  o.tol_text = "per element";
  if (got.size() != want.size()) {
    o.status = Status::fail;
    o.note = what + ": sizes differ";
    return o;
  }
  std::int64_t bad = 0, worst = -1;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (!rows.empty() && !rows[i / static_cast<std::size_t>(cols)]) continue;
    const double a = got[i], w = want[i];
    if (std::isnan(a) && std::isnan(w)) continue;
    const double ratio = std::isnan(a) || std::isnan(w) ? kInf : std::abs(a - w) / tol[i];
    if (std::isfinite(a) && std::isfinite(w)) o.abs_err = std::max(o.abs_err, std::abs(a - w));
    if (ratio > 1) ++bad;
    if (ratio > o.rel_err) o.rel_err = ratio, worst = static_cast<std::int64_t>(i);
  }
  o.status = bad == 0 ? Status::pass : Status::fail;
  if (bad > 0)
    o.note = fmt::format("{}: {} elements out of tolerance; worst {} (row {}, col {}): got {:.7g} want {:.7g} tol {:.3g}", what, bad,
                         worst, worst / cols, worst % cols, got[worst], want[worst], tol[worst]);
  return o;
}

/// A clip level near log C that no class's −log p comes within 1e-3 of, so that float and
/// double agree on which draws are clipped.
double clip_level(const CatProblem& p) {
  Vec x;
  x.reserve(p.logits.size());
  for (std::int64_t b = 0; b < p.B; ++b) {
    double m = -kInf, z = 0;
    for (std::int64_t j = 0; j < p.C; ++j) m = std::max(m, p.logits[b * p.C + j]);
    for (std::int64_t j = 0; j < p.C; ++j) z += std::exp(p.logits[b * p.C + j] - m);
    for (std::int64_t j = 0; j < p.C; ++j)
      if (std::isfinite(p.logits[b * p.C + j])) x.push_back(m + std::log(z) - p.logits[b * p.C + j]);
  }
  std::sort(x.begin(), x.end());
  for (double c = std::log(static_cast<double>(p.C));; c += 7.3e-4) {
    const auto it = std::lower_bound(x.begin(), x.end(), c - 1e-3);
    if (it == x.end() || *it > c + 1e-3) return static_cast<double>(static_cast<float>(c));
  }
}

template <class T>
PgOptions<T> cat_options(const CatConfig& c, double clip) {
  return {.entropy_weight = f32<T>(c.lambda),
          .transform = {.kind = c.transform, .rbf_gamma = f32<T>(0.5), .standardize_epsilon = f32<T>(1e-6)},
          .log_prob_clip = c.clip ? static_cast<T>(clip) : T(0),
          .normaliser_rows = c.normaliser_rows};
}

/// Loss, reward (when requested; else its buffer untouched) and gradient of one call on the tested
/// backend through strided guarded buffers; `unfused`: pg_surrogate_unfused, whose sampled
/// intermediates are returned in `im_draws`.
struct CatValues {
  Vec loss, reward, grad;
};
CatValues cat_run(Context& ctx, const CatProblem& p, const Vec& u, const CatConfig& c, std::int64_t G, const PgOptions<float>& opt,
                  DrawKey key, bool unfused, Idx* im_draws) {
  const std::int64_t B = p.B, C = p.C, P = static_cast<std::int64_t>(u.size());
  const Out<float> logits(ctx, B, C, p.logits, "logits"), params(ctx, 1, P, u, "reward.params");
  const Out<std::int32_t> labels(ctx, 1, B, Vec(p.labels.begin(), p.labels.end()), "labels");
  Out<float> loss(ctx, 1, B, {}, "row_loss"), rew(ctx, 1, B, {}, "row_reward"), grad(ctx, B, C, {}, "grad_logits");
  const Categorical<float> head{logits.matrix(B, C)};
  const MahalanobisReward<float> reward{c.form, {params.data(), P}};
  const ObjectiveRows<float> rows{{loss.data(), B}, c.with_reward ? VectorView<float>{rew.data(), B} : VectorView<float>{}};
  const CategoricalGrad<float> g{grad.matrix(B, C)};
  const VectorView<const std::int32_t> lv{labels.data(), B};
  if (unfused) {
    Out<std::int32_t> s(ctx, B, G, {}, "samples");
    Out<float> lp(ctx, B, G, {}, "log_prob"), rw(ctx, B, G, {}, "rewards"), adv(ctx, B, G, {}, "advantages");
    pg_surrogate_unfused(ctx, head, lv, reward, G, opt, key,
                         PgIntermediates<float, std::int32_t>{s.matrix(B, G), lp.matrix(B, G), rw.matrix(B, G), adv.matrix(B, G)}, rows, g);
    *im_draws = s.to_host();
  } else {
    pg_surrogate(ctx, head, lv, reward, G, opt, key, rows, g);
  }
  CatValues v{get(loss), {}, get(grad)};
  if (c.with_reward) {
    v.reward = get(rew);
  } else {
    require(rew.untouched(), "row_reward was empty but its buffer was written");
  }
  return v;
}

Outcome cat_matches(const CatValues& got, const Vec& loss, const Vec& reward, const Vec& grad, const Composition& tol, std::int64_t C,
                    const std::vector<bool>& rows, const std::string& what) {
  Outcome o = within(got.loss, loss, tol.tol_loss, 1, rows, what + " row_loss");
  if (!got.reward.empty()) o = worse(o, within(got.reward, reward, tol.tol_reward, 1, rows, what + " row_reward"));
  return worse(o, within(got.grad, grad, tol.tol_grad, C, rows, what + " gradient"));
}

/// Every comparison of the file header for one configuration.
Outcome cat_surrogate_config(Env& env, Rng& r, Shape s, const CatConfig& c, std::uint64_t k) {
  const std::int64_t B = s.B, C = s.n, G = s.G;
  const CatProblem p(r, B, C);
  const Vec u = cat_reward_params(r, c.form, C);
  const MahalanobisReward<double> reward_d{c.form, vector_view<const double>(u.data(), static_cast<std::int64_t>(u.size()))};
  const double clip = c.clip ? clip_level(p) : 0.0;
  const PgOptions<double> opt_d = cat_options<double>(c, clip);
  const PgOptions<float> opt_f = cat_options<float>(c, clip);
  const DrawKey key{.step = 31 + k % 5, .first_row = 11};
  // ---- the sampler's draws (tested side, then the double reference's)
  Idx draws, draws_ref;
  {
    const Out<float> logits(env.test, B, C, p.logits, "logits");
    Out<std::int32_t> d(env.test, B, G, {}, "samples");
    sample(env.test, Categorical<float>{logits.matrix(B, C)}, G, key, d.matrix(B, G));
    draws = d.to_host();
    draws_ref.resize(static_cast<std::size_t>(B * G));
    sample(env.ref, Categorical<double>{matrix_view<const double>(p.logits.data(), B, C)}, G, key, matrix_view(draws_ref.data(), B, G));
  }
  Outcome o = compare_draws_windowed(draws, draws_ref, p.logits, B, C, G, env.seed, key.step, key.first_row, 0.0);
  std::vector<bool> same_rows(static_cast<std::size_t>(B), true);
  for (std::int64_t i = 0; i < B * G; ++i)
    if (draws[i] != draws_ref[i]) same_rows[i / G] = false;
  const auto same = static_cast<std::int64_t>(std::count(same_rows.begin(), same_rows.end(), true));
  // Float and double draws part only at CDF boundaries, rare up to a thousand classes.
  if (C <= 1000 && B > 1 && 2 * same < B) {
    o.status = Status::fail;
    o.note = fmt::format("only {} of {} rows' draws all equal the reference's", same, B);
  }
  if (o.status == Status::fail) return o;
  // ---- fused, against the double composition on the tested draws (every row)
  const CatValues f = cat_run(env.test, p, u, c, G, opt_f, key, false, nullptr);
  const Composition want = compose(env.ref, p, draws, G, reward_d, opt_d);
  o = worse(o, cat_matches(f, want.row_loss, want.row_reward, want.grad, want, C, {}, "fused vs double composition on the tested draws"));
  // ---- fused, against the reference pg_surrogate, on the rows whose draws agree
  if (same > 0) {
    Vec loss_r(static_cast<std::size_t>(B)), reward_r(static_cast<std::size_t>(B)), grad_r(static_cast<std::size_t>(B * C));
    pg_surrogate(env.ref, Categorical<double>{matrix_view<const double>(p.logits.data(), B, C)},
                 vector_view<const std::int32_t>(p.labels.data(), B), reward_d, G, opt_d, key,
                 {vector_view(loss_r.data(), B), vector_view(reward_r.data(), B)}, CategoricalGrad<double>{matrix_view(grad_r.data(), B, C)});
    o = worse(o, cat_matches(f, loss_r, reward_r, grad_r, want, C, same_rows, "fused vs reference pg_surrogate"));
    // The test's composition is the reference's on those rows.
    o = worse(o, within(want.grad, grad_r, Vec(want.grad.size(), 1e-12), C, same_rows, "double composition vs reference pg_surrogate"));
  }
  // ---- the tested backend's composition: the same draws as sample(), the same result as fused
  Idx im;
  const CatValues uf = cat_run(env.test, p, u, c, G, opt_f, key, true, &im);
  if (im != draws) {
    o.status = Status::fail;
    o.note = "pg_surrogate_unfused does not draw as sample() does";
  }
  o = worse(o, cat_matches(uf, want.row_loss, want.row_reward, want.grad, want, C, {}, "unfused vs double composition"));
  o = worse(o, cat_matches(f, uf.loss, uf.reward, uf.grad, want, C, {}, "fused vs unfused"));
  // ---- deterministic: the same bits again
  const CatValues f2 = cat_run(env.test, p, u, c, G, opt_f, key, false, nullptr);
  if (f2.loss != f.loss || f2.reward != f.reward || f2.grad != f.grad) {
    o.status = Status::fail;
    o.note = "a second identical call differs";
  }
  return o;
}

Outcome cat_surrogate_configs(Env& env, std::uint64_t salt, Shape s, const std::vector<CatConfig>& configs) {
  Rng r(env.seed, salt);
  Outcome all;
  for (std::size_t i = 0; i < configs.size(); ++i) {
    Outcome o = cat_surrogate_config(env, r, s, configs[i], salt + i);
    if (!o.note.empty()) o.note = configs[i].describe() + ": " + o.note;
    all = i == 0 ? o : worse(all, o);
  }
  return all;
}

constexpr RewardForm kForms[] = {RewardForm::scalar, RewardForm::diagonal, RewardForm::full};
constexpr Transform kTransforms[] = {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out, Transform::standardize};
}  // namespace

/// The cpu self-check leaves out shapes above B·C·G = 2e6 (seconds each for the double composition,
/// the reference and the float cpu path, whose sequential CDF sums also move draws beyond the
/// GPU's 1e-6·Z window at C = 3000, G = 1025); a GPU runs them all.
static bool too_large_for_self_check(const Table& t, Shape s) { return t.self_check && s.B * s.n * s.G > 2'000'000; }

void add_categorical_objective_checks(Table& t, Level level) {
  if (level < Level::medium) return;  // the GPU test's cases: at the GPU test's size class and above
  std::vector<Shape> shapes;
  for (const std::int64_t B : {1, 7, 300})
    for (const std::int64_t C : {2, 10, 1000, 32000})
      for (const std::int64_t G : {1, 5, 50, 300}) shapes.push_back({B, C, G});
  // The largest vocabulary (2^18): multi-word tile masks and the second pass's reordering across
  // 128 tiles, which the shapes above reach only through sample().
  shapes.push_back({3, 262144, 50});
  const Tol shown{1.0};  // per-element tolerances of the terms' magnitude (tolerance column: error over tolerance)
  for (const Shape s : without_large_vocabularies(shapes, t.self_check)) {
    if (too_large_for_self_check(t, s)) continue;
    // Every transform (none only at G = 1); the reward form, clip, normaliser and row_reward
    // rotate over the transforms and shapes.
    std::vector<CatConfig> configs;
    const auto id = static_cast<int>(s.B + s.n / 10 + s.G);
    for (int k = 0; k < 5; ++k) {
      if (s.G == 1 && k > 0) break;
      CatConfig c;
      c.transform = kTransforms[k];
      c.form = kForms[(k + id) % 3];
      if (c.form == RewardForm::full && s.n > kMaxOneHotFullClasses) c.form = RewardForm::diagonal;
      c.clip = (k + id) % 2 == 0;
      c.lambda = 0.3 + 0.2 * (k % 2);
      c.normaliser_rows = k % 2 == 0 ? 0 : s.B + 3;
      c.with_reward = (k + id) % 3 != 2;
      configs.push_back(c);
    }
    t.add_custom("pg_surrogate", "categorical fused vs composition, reference and unfused, every transform, twice", cat_size(s), shown,
                 [s, configs](Env& env, std::uint64_t salt) { return cat_surrogate_configs(env, salt, s, configs); });
  }
  // Every reward form x transform x clip on one small and one full-width (C = 200) problem.
  for (const Shape s : {Shape{7, 10, 50}, Shape{7, 200, 16}, Shape{3, 2, 5}}) {
    if (too_large_for_self_check(t, s)) continue;
    std::vector<CatConfig> configs;
    for (const RewardForm form : kForms)
      for (const Transform transform : kTransforms)
        for (const bool clip : {false, true}) configs.push_back({form, transform, clip, 0.25, clip ? s.B + 1 : 0, !clip});
    t.add_custom("pg_surrogate", "categorical fused, every form x transform x clip", cat_size(s), shown,
                 [s, configs](Env& env, std::uint64_t salt) { return cat_surrogate_configs(env, salt, s, configs); });
  }
  // G at the fused kernel's cap, and above it (the composition runs).
  for (const Shape s : {Shape{5, 1000, 1024}, Shape{5, 3000, 1025}, Shape{2, 10, 1100}}) {
    if (too_large_for_self_check(t, s)) continue;
    const std::vector<CatConfig> configs{{RewardForm::diagonal, Transform::standardize, true, 0.4, 0, true},
                                         {RewardForm::scalar, Transform::leave_one_out, false, 0.1, s.B * 2, false}};
    t.add_custom("pg_surrogate", "categorical, G at and above the fused cap", cat_size(s), shown,
                 [s, configs](Env& env, std::uint64_t salt) { return cat_surrogate_configs(env, salt, s, configs); });
  }
}

}  // namespace d2r::checks
