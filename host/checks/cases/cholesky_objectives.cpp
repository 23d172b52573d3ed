// Cases of the registry (host/checks/checks.hpp): the former tests/cholesky_objectives_gpu_test.cpp
// (exact_objective and pg_pathwise of the Cholesky-Gaussian head, every configuration per shape,
// determinism) and tests/cholesky_surrogate_gpu_test.cpp (the fused REINFORCE surrogate against the
// double reference and against the unfused composition, every form x transform x tril x
// per_dimension_mean x clip, normaliser_rows 0 and > B, row_reward present and empty; determinism;
// G above the fused kernel's cap). Their shapes, inputs, keys, clips and tolerances; every output
// strided and sentinel-guarded, an empty row_reward's buffer left untouched.
#include "host/checks/cases/common.hpp"

namespace d2r::checks {

namespace {
/// One configuration of an objective call.
struct CholConfig {
  RewardForm form;
  Transform transform;
  bool shared, per_dim, clip;
  std::int64_t normaliser_rows;
  bool with_reward;
  [[nodiscard]] std::string describe() const {
    return fmt::format("form={} transform={} tril={} per_dimension_mean={} clip={} normaliser_rows={} row_reward={}", form_name(form),
                       to_string(transform), shared ? "shared" : "per-row", per_dim, clip ? "on" : "off", normaliser_rows,
                       with_reward ? "yes" : "empty");
  }
};

/// The tests' inputs: mean and targets in [−1, 1], a well-conditioned tril (Chol::tril_values),
/// reward parameters in [0.2, 2] (full: diagonal in [0.5, 1.5], off-diagonal |·| <= 0.5/√n).
struct CholObjectiveIn {
  Vec mean, targets, tril, params;
  CholObjectiveIn(Rng& r, std::int64_t B, std::int64_t n, bool shared, RewardForm form)
      : mean(r.vec(B * n, -1, 1)), targets(r.vec(B * n, -1, 1)), tril(Chol<double>::tril_values(r, shared ? 1 : B, n)) {
    const double off = 0.5 / std::sqrt(static_cast<double>(n));
    params.resize(static_cast<std::size_t>(reward_param_count(form, n)));
    if (form == RewardForm::full) {
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j <= i; ++j) params[packed(i) + j] = i == j ? r.uniform(0.5, 1.5) : r.uniform(-off, off);
    } else {
      for (double& u : params) u = r.uniform(0.2, 2.0);
    }
  }
};

enum class CholObjective { exact, pathwise, surrogate, unfused };

/// One call in T on ctx through strided guarded views: row_loss, row_reward (when requested; else
/// its buffer must stay untouched), grad_mean, grad_tril.
template <class T>
Outputs chol_objective_side(Context& ctx, Shape s, const CholConfig& c, const CholObjectiveIn& in, CholObjective what, double clip,
                            double entropy, DrawKey key) {
  const std::int64_t B = s.B, n = s.n, G = s.G, P = packed(n), rows = c.shared ? 1 : B;
  const std::int64_t R = static_cast<std::int64_t>(in.params.size());
  const Out<T> mean(ctx, B, n, in.mean, "mean"), targets(ctx, B, n, in.targets, "targets"), tril(ctx, rows, P, in.tril, "tril"),
      params(ctx, 1, R, in.params, "reward.params");
  const CholeskyGaussian<T> head{mean.matrix(B, n), tril.matrix(rows, P), f32<T>(1e-4)};
  const MahalanobisReward<T> reward{c.form, {params.data(), R}};
  const PgOptions<T> opt{.entropy_weight = f32<T>(entropy),
                         .transform = {.kind = c.transform,
                                       .rbf_gamma = f32<T>(0.3 / static_cast<double>(n)),
                                       .standardize_epsilon = f32<T>(1e-6)},
                         .log_prob_clip = static_cast<T>(clip),
                         .per_dimension_mean = c.per_dim,
                         .normaliser_rows = c.normaliser_rows};
  Out<T> loss(ctx, 1, B, {}, "row_loss"), rew(ctx, 1, B, {}, "row_reward"), gm(ctx, B, n, {}, "grad_mean"),
      gt(ctx, rows, P, {}, "grad_tril");
  const ObjectiveRows<T> out_rows{{loss.data(), B}, c.with_reward ? VectorView<T>{rew.data(), B} : VectorView<T>{}};
  const CholeskyGaussianGrad<T> grad{gm.matrix(B, n), gt.matrix(rows, P)};
  const MatrixView<const T> y = targets.matrix(B, n);
  switch (what) {
    case CholObjective::exact: exact_objective(ctx, head, y, reward, opt, out_rows, grad); break;
    case CholObjective::pathwise: pg_pathwise(ctx, head, y, reward, G, opt, key, out_rows, grad); break;
    case CholObjective::surrogate: pg_surrogate(ctx, head, y, reward, G, opt, key, out_rows, grad); break;
    case CholObjective::unfused: {
      Out<T> samples(ctx, B * G, n, {}, "samples"), lp(ctx, B, G, {}, "log_prob"), rw(ctx, B, G, {}, "rewards"),
          adv(ctx, B, G, {}, "advantages");
      pg_surrogate_unfused(ctx, head, y, reward, G, opt, key,
                           {samples.matrix(B * G, n), lp.matrix(B, G), rw.matrix(B, G), adv.matrix(B, G)}, out_rows, grad);
      break;
    }
  }
  Outputs out{{"row_loss", get(loss)}};
  if (c.with_reward) {
    out.push_back({"row_reward", get(rew)});
  } else {
    require(rew.untouched(), "row_reward was empty but its buffer was written");
  }
  out.push_back({"grad_mean", get(gm)});
  out.push_back({"grad_tril", get(gt)});
  return out;
}

Tol with_min(Tol t, double least) {
  t.min_reference = least;
  return t;
}

/// The tests' tolerances: relative 1e-4 (loss, reward) or 1e-3 / 2e-3 (gradients), absolute a
/// fraction of the output's largest magnitude (sums whose terms cancel) as Tol::floor; a zero
/// reference gradient (or loss) fails.
std::vector<Tol> chol_objective_tols(const CholConfig& c, bool surrogate, bool self_check = false) {
  std::vector<Tol> t;
  if (surrogate) {
    // The cpu self-check sums in sequence in float: a row loss that cancels to ~1e-5 (B = 1) keeps
    // an absolute error of a few 1e-9 from its O(1e-3) terms; its scale floor is 1e-3 there.
    t.push_back(Tol{1e-4, 0.2, 0.0, self_check ? 1e-3 : 0.0});
    if (c.with_reward) t.push_back(Tol{1e-4, 0.1});
    t.push_back(c.clip ? Tol{2e-3, 0.1} : with_min(Tol{2e-3, 0.1}, 0.0));  // B = G = 1 with a clip clips the only draw
    t.push_back(with_min(Tol{2e-3, 0.1}, 0.0));
  } else {
    t.push_back(with_min(Tol{1e-4, 0.1}, 0.0));
    if (c.with_reward) t.push_back(Tol{1e-4, 0.1});
    t.push_back(with_min(Tol{1e-3, 0.1}, 0.0));
    t.push_back(with_min(Tol{1e-3, 0.1}, 0.0));
  }
  return t;
}

/// Runs every configuration and keeps the worst outcome, its note naming the configuration.
template <class F>
Outcome worst_over(const std::vector<CholConfig>& configs, F one) {
  Outcome all;
  bool first = true;
  for (const CholConfig& c : configs) {
    Outcome o = one(c);
    if (!o.note.empty() || o.status == Status::fail) o.note = c.describe() + ": " + o.note;
    if (first) {
      all = o;
      first = false;
    } else {
      all = worse(all, o);
    }
  }
  return all;
}

/// The log_prob_clip of a configuration: in a gap of |pd·log p| over the double reference's own
/// draws (key `key`), so that float rounding cannot move a draw across ±c; as float on both sides.
double chol_clip(Context& ref, Shape s, const CholConfig& c, const CholObjectiveIn& in, DrawKey key) {
  if (!c.clip) return 0.0;
  const std::int64_t B = s.B, n = s.n, G = s.G, P = packed(n);
  const Buffer<double> mean = put<double>(ref, in.mean), tril = put<double>(ref, in.tril);
  const CholeskyGaussian<double> head{mean.matrix(B, n), tril.matrix(c.shared ? 1 : B, P), f32<double>(1e-4)};
  Buffer<double> samples(ref, static_cast<std::size_t>(B * G * n)), lp(ref, static_cast<std::size_t>(B * G));
  sample(ref, head, G, key, samples.matrix(B * G, n));
  log_prob(ref, head, std::as_const(samples).matrix(B * G, n), lp.matrix(B, G));
  const std::vector<double> v = lp.to_host();
  const double clip = static_cast<float>(pick_clip(Vec(v.begin(), v.end()), c.per_dim ? 1.0 / static_cast<double>(n) : 1.0));
  require(clip > 0, "no gap for the clip (" + c.describe() + ")");
  return clip;
}

constexpr DrawKey kPathwiseKey{.step = 17, .first_row = 9};
constexpr DrawKey kSurrogateKey{.step = 23, .first_row = 11};

/// The surrogate test's configurations: the whole product (form × transform × tril × pdm × clip);
/// with `thin`, for the large shapes every form × transform once, tril, pdm and clip rotating.
std::vector<CholConfig> surrogate_configs(Shape s, bool thin) {
  const bool large = thin && s.B * s.G * s.n * s.n > 1'000'000;
  std::vector<CholConfig> out;
  int variant = 0;
  for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full})
    for (const Transform transform : {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out, Transform::standardize}) {
      if (s.G == 1 && transform != Transform::none) continue;  // G >= 2 for the others
      for (int bits = 0; bits < 8; ++bits, ++variant) {
        if (large && bits != (variant / 8 + static_cast<int>(form)) % 8) continue;
        out.push_back({form, transform, (bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0, variant % 2 == 0 ? 0 : s.B + 5,
                       variant % 3 != 2});
      }
    }
  return out;
}

/// The cpu self-check (float against double on the host, where the double reference of the large
/// shapes takes seconds): one configuration in eight, rotating with the shape, above B·G·n² = 2e4.
/// On a GPU every configuration runs.
std::vector<CholConfig> for_env(std::vector<CholConfig> configs, Shape s, const Env& env, std::int64_t above = 20'000,
                                std::size_t every = 8) {
  if (!env.self_check || s.B * s.G * s.n * s.n <= above) return configs;
  std::vector<CholConfig> kept;
  for (std::size_t i = 0; i < configs.size(); ++i)
    if (i % every == static_cast<std::size_t>(s.n + s.G) % every) kept.push_back(configs[i]);
  return kept;
}

/// The same bits twice (0 on both sides).
Outputs twice_difference(const Outputs& a, const Outputs& b) {
  Outputs d;
  for (std::size_t k = 0; k < a.size(); ++k) d.push_back({a[k].name + " rerun minus first", difference(b[k].values, a[k].values)});
  return d;
}
}  // namespace

void add_cholesky_objective_checks(Table& t, Level level) {
  if (level < Level::medium) return;  // the GPU tests' cases: at the GPU test's size class and above
  // ---- exact_objective and pg_pathwise (the former CholeskyExactGpu / CholeskyPathwiseGpu)
  for (const std::int64_t B : {1, 3, 257})
    for (const std::int64_t n : {1, 2, 3, 17, 64}) {
      const Shape s{B, n, 1};
      t.add_custom("exact_objective", "cholesky strided, every form x tril x pdm, normaliser_rows 0 and > B, row_reward or none",
                   gauss_size(s), Tol{1e-3, 0.1}, [s](Env& env, std::uint64_t salt) {
                     Rng r(env.seed, salt);
                     std::vector<CholConfig> configs;
                     int variant = 0;
                     for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full})
                       for (const bool shared : {false, true})
                         for (const bool pdm : {false, true}) {
                           // normaliser_rows and the presence of row_reward alternate over the configurations.
                           configs.push_back({form, Transform::none, shared, pdm, false, variant % 2 == 0 ? 0 : s.B + 5, variant % 3 != 2});
                           ++variant;
                         }
                     return worst_over(for_env(configs, s, env), [&](const CholConfig& c) {
                       const CholObjectiveIn in(r, s.B, s.n, c.shared, c.form);
                       return compare_each(chol_objective_side<float>(env.test, s, c, in, CholObjective::exact, 0, 0.7, {}),
                                           chol_objective_side<double>(env.ref, s, c, in, CholObjective::exact, 0, 0.7, {}),
                                           chol_objective_tols(c, false));
                     });
                   });
    }
  for (const std::int64_t B : {1, 3, 257})
    for (const std::int64_t n : {1, 2, 3, 17, 64})
      for (const std::int64_t G : {1, 5, 40}) {
        const Shape s{B, n, G};
        t.add_custom("pg_pathwise", "cholesky strided, every form x tril x transform x pdm, normaliser_rows 0 and > B, row_reward or none",
                     gauss_size(s), Tol{1e-3, 0.1}, [s](Env& env, std::uint64_t salt) {
                       Rng r(env.seed, salt);
                       std::vector<CholConfig> configs;
                       int variant = 0;
                       for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal, RewardForm::full})
                         for (const bool shared : {false, true})
                           for (const Transform transform : {Transform::none, Transform::rbf})
                             for (const bool pdm : {false, true}) {
                               configs.push_back({form, transform, shared, pdm, false, variant % 2 == 0 ? s.B + 5 : 0, variant % 3 != 1});
                               ++variant;
                             }
                       return worst_over(for_env(configs, s, env), [&](const CholConfig& c) {
                         const CholObjectiveIn in(r, s.B, s.n, c.shared, c.form);
                         return compare_each(chol_objective_side<float>(env.test, s, c, in, CholObjective::pathwise, 0, 0.7, kPathwiseKey),
                                             chol_objective_side<double>(env.ref, s, c, in, CholObjective::pathwise, 0, 0.7, kPathwiseKey),
                                             chol_objective_tols(c, false));
                       });
                     });
        // Two runs of the same call give the same bits (no atomics, fixed summation order), and
        // match the reference: pathwise and exact, shared tril, rbf.
        t.add_custom("pg_pathwise", "cholesky strided, pathwise and exact twice, same bits", gauss_size(s), Tol{1e-3, 0.1},
                     [s](Env& env, std::uint64_t salt) {
                       Rng r(env.seed, salt);
                       std::vector<CholConfig> configs;
                       for (const RewardForm form : {RewardForm::diagonal, RewardForm::full})
                         configs.push_back({form, Transform::rbf, true, false, false, 0, true});
                       return worst_over(configs, [&](const CholConfig& c) {
                         const CholObjectiveIn in(r, s.B, s.n, c.shared, c.form);
                         Outcome o;
                         bool first = true;
                         for (const CholObjective what : {CholObjective::pathwise, CholObjective::exact}) {
                           const Outputs a = chol_objective_side<float>(env.test, s, c, in, what, 0, 0.7, kPathwiseKey),
                                         b = chol_objective_side<float>(env.test, s, c, in, what, 0, 0.7, kPathwiseKey);
                           const Outputs want = chol_objective_side<double>(env.ref, s, c, in, what, 0, 0.7, kPathwiseKey);
                           const Outcome v = worse(compare_each(a, want, chol_objective_tols(c, false)),
                                                   compare(twice_difference(a, b), twice_difference(want, want), Tol{1e-3}));
                           o = first ? v : worse(o, v);
                           first = false;
                         }
                         return o;
                       });
                     });
      }
  // ---- the fused surrogate (the former CholeskySurrogateGpu)
  for (const std::int64_t B : {1, 3, 257})
    for (const std::int64_t n : {1, 2, 17, 64})
      for (const std::int64_t G : {1, 5, 40, 100}) {
        const Shape s{B, n, G};
        t.add_custom("pg_surrogate", "cholesky fused strided, every form x transform x tril x pdm x clip (thin when large)", gauss_size(s),
                     Tol{2e-3, 0.1}, [s](Env& env, std::uint64_t salt) {
                       Rng r(env.seed, salt);
                       return worst_over(for_env(surrogate_configs(s, true), s, env), [&](const CholConfig& c) {
                         const CholObjectiveIn in(r, s.B, s.n, c.shared, c.form);
                         const double clip = chol_clip(env.ref, s, c, in, kSurrogateKey);
                         return compare_each(chol_objective_side<float>(env.test, s, c, in, CholObjective::surrogate, clip, 0.7, kSurrogateKey),
                                             chol_objective_side<double>(env.ref, s, c, in, CholObjective::surrogate, clip, 0.7, kSurrogateKey),
                                             chol_objective_tols(c, true, env.self_check));
                       });
                     });
        // The fused kernel against the composition of primitives, both on the tested backend (in
        // the cpu self-check both are compositions: one configuration in forty).
        t.add_custom("pg_surrogate", "cholesky fused vs unfused, every form x transform x tril x pdm x clip", gauss_size(s),
                     Tol{2e-3, 0.1}, [s](Env& env, std::uint64_t salt) {
                       Rng r(env.seed, salt);
                       return worst_over(for_env(surrogate_configs(s, false), s, env, 0, 40), [&](const CholConfig& c) {
                         const CholObjectiveIn in(r, s.B, s.n, c.shared, c.form);
                         const double clip = chol_clip(env.ref, s, c, in, kSurrogateKey);
                         return compare_each(chol_objective_side<float>(env.test, s, c, in, CholObjective::surrogate, clip, 0.7, kSurrogateKey),
                                             chol_objective_side<float>(env.test, s, c, in, CholObjective::unfused, clip, 0.7, kSurrogateKey),
                                             chol_objective_tols(c, true));
                       });
                     });
        t.add_custom("pg_surrogate", "cholesky fused, standardize (none at G = 1), shared tril, twice, same bits", gauss_size(s), Tol{2e-3, 0.1},
                     [s](Env& env, std::uint64_t salt) {
                       Rng r(env.seed, salt);
                       std::vector<CholConfig> configs;
                       for (const RewardForm form : {RewardForm::diagonal, RewardForm::full})
                         // standardize needs G >= 2: none at G = 1 (the former test skipped B < 3 or G < 5).
                         configs.push_back({form, s.G < 2 ? Transform::none : Transform::standardize, true, false, false, 0, true});
                       return worst_over(configs, [&](const CholConfig& c) {
                         const CholObjectiveIn in(r, s.B, s.n, c.shared, c.form);
                         const Outputs a = chol_objective_side<float>(env.test, s, c, in, CholObjective::surrogate, 0, 0.7, kSurrogateKey),
                                       b = chol_objective_side<float>(env.test, s, c, in, CholObjective::surrogate, 0, 0.7, kSurrogateKey);
                         return compare(twice_difference(a, b), twice_difference(a, a), Tol{2e-3});
                       });
                     });
      }
  // Above the fused kernel's cap on G (1024) pg_surrogate composes the primitives: same results
  // (the former CholeskySurrogateGpuFallback).
  const Shape s{2, 3, 1100};
  t.add_custom("pg_surrogate", "cholesky, G above the fused cap, diagonal, standardize, shared tril", gauss_size(s), Tol{2e-3, 0.1},
               [s](Env& env, std::uint64_t salt) {
                 Rng r(env.seed, salt);
                 const CholConfig c{RewardForm::diagonal, Transform::standardize, true, false, false, 0, true};
                 const CholObjectiveIn in(r, s.B, s.n, c.shared, c.form);
                 return compare_each(chol_objective_side<float>(env.test, s, c, in, CholObjective::surrogate, 0, 0.2, kSurrogateKey),
                                     chol_objective_side<double>(env.ref, s, c, in, CholObjective::surrogate, 0, 0.2, kSurrogateKey),
                                     chol_objective_tols(c, true));
               });
}

}  // namespace d2r::checks
