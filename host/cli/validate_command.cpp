// `d2r validate`: the user's check that the GPU kernels compute the right numbers on THEIR
// hardware. Every GPU primitive of the public API runs on the cuda backend (float) and on the cpu
// backend in double (the oracle, DESIGN.md §1) on the same float-representable inputs at several
// sizes, and a table gives, per primitive, head/variant and size, the largest absolute and
// relative differences against the tolerance. Exit 0 when every check passes, 1 when one fails,
// 2 on bad input (and for --device cuda without a CUDA device).
//
// Without a GPU, `--device cpu` runs the same table with the cpu backend in float in place of the
// cuda backend: a self-check of the float reference paths (and of this program) that runs
// anywhere; on a GPU machine the default (`--device auto`) is the real check.
//
// Comparison. For every output array, with s = max|expected|, the relative error of an element is
// |got − expected| / (|expected| + floor·s): relative to the element, and to the array's scale for
// elements near zero (sums of terms of both signs cancel in float). A check passes when its worst
// relative error is within the tolerance — the tolerances of tests/*_gpu_test.cpp, float against
// double. Categorical draws are compared draw for draw: at least 99.9 % must agree up to 4096
// classes (95 % beyond, where float rounding of u·Z moves about one draw in a hundred across a
// boundary), and every disagreement must lie at a CDF boundary (the two classes' intervals within
// 1e-5·Z). Objectives that sample categorical draws internally compare the rows whose draws agree.
//
// Structure: each check is a table entry (primitive, variant, size, tolerance, and one generic
// lambda that builds its inputs from a seeded generator and runs the primitive in scalar type T on
// a context); the driver runs the lambda in float on the tested backend and in double on the cpu
// backend and compares.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <regex>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "d2r/buffer.hpp"
#include "d2r/context.hpp"
#include "d2r/distributions.hpp"
#include "d2r/error.hpp"
#include "d2r/network.hpp"
#include "d2r/objectives.hpp"
#include "d2r/optim.hpp"
#include "d2r/policy_curvature.hpp"
#include "d2r/second_order.hpp"
#include "d2r/solvers.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kCmd = "validate";
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr DrawKey kKey{.step = 17, .first_row = 5};

using Vec = std::vector<double>;
using Idx = std::vector<std::int32_t>;

// ================================================================== inputs

/// Deterministic inputs (an LCG keyed by the --seed and the check): every value is representable
/// in float, so the float and double runs see identical inputs.
class Rng {
 public:
  Rng(std::uint64_t seed, std::uint64_t salt) : state_((seed ^ (salt * 0x9E3779B97F4A7C15ULL)) | 1) {
    for (int i = 0; i < 4; ++i) (void)unit();
  }
  double uniform(double lo, double hi) { return static_cast<float>(lo + (hi - lo) * unit()); }
  Vec vec(std::int64_t n, double lo, double hi) {
    Vec v(static_cast<std::size_t>(n));
    for (double& x : v) x = uniform(lo, hi);
    return v;
  }
  /// A multiple of 1/8 (exact rewards and group sums in float).
  double dyadic(double lo, double hi) { return std::round(uniform(lo, hi) * 8) / 8; }
  std::int32_t index(std::int64_t n) {
    return static_cast<std::int32_t>(std::min<std::int64_t>(n - 1, static_cast<std::int64_t>(unit() * static_cast<double>(n))));
  }

 private:
  double unit() {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state_ >> 11) * (1.0 / 9007199254740992.0);
  }
  std::uint64_t state_;
};

template <class T>
Buffer<T> put(Context& ctx, const Vec& v) {
  std::vector<T> t(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) t[i] = static_cast<T>(v[i]);
  return Buffer<T>(ctx, std::span<const T>(t));
}
Buffer<std::int32_t> put_idx(Context& ctx, const Idx& v) { return Buffer<std::int32_t>(ctx, std::span<const std::int32_t>(v)); }
template <class T>
Vec get(const Buffer<T>& b) {
  const std::vector<T> h = b.to_host();
  return Vec(h.begin(), h.end());
}
/// A hyperparameter with the same (float) value on both sides.
template <class T>
T f32(double v) {
  return static_cast<T>(static_cast<float>(v));
}

std::int64_t packed(std::int64_t n) { return n * (n + 1) / 2; }

/// Reward parameters of `form` in `dim` dimensions, dyadic; a full R has a positive diagonal.
Vec reward_params(Rng& r, RewardForm form, std::int64_t dim) {
  Vec p(static_cast<std::size_t>(reward_param_count(form, dim)));
  if (form == RewardForm::full) {
    const double off = std::max(0.125, std::floor(0.375 / std::sqrt(static_cast<double>(dim)) * 8) / 8);
    for (std::int64_t i = 0; i < dim; ++i)
      for (std::int64_t j = 0; j <= i; ++j) p[packed(i) + j] = i == j ? r.dyadic(0.5, 1.25) : r.dyadic(-off, off);
  } else {
    for (double& v : p) v = r.dyadic(0.5, 1.5);
  }
  return p;
}

/// Logits in [-4, 4], about 10 % masked with -inf, never a whole row.
Vec logits_values(Rng& r, std::int64_t B, std::int64_t C) {
  Vec v(static_cast<std::size_t>(B * C));
  for (std::int64_t b = 0; b < B; ++b) {
    bool any = false;
    for (std::int64_t j = 0; j < C; ++j) {
      const bool masked = r.uniform(0, 1) < 0.1;
      v[b * C + j] = masked ? -kInf : r.uniform(-4, 4);
      any = any || !masked;
    }
    if (!any) v[b * C + C / 2] = 1.0;
  }
  return v;
}

/// G class indices per row among the row's unmasked classes.
Idx unmasked_draws(Rng& r, const Vec& logits, std::int64_t B, std::int64_t C, std::int64_t G) {
  Idx k(static_cast<std::size_t>(B * G));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t g = 0; g < G; ++g) {
      std::int32_t c = r.index(C);
      while (logits[b * C + c] == -kInf) c = static_cast<std::int32_t>((c + 1) % C);
      k[b * G + g] = c;
    }
  return k;
}

Idx indices(Rng& r, std::int64_t count, std::int64_t C) {
  Idx k(static_cast<std::size_t>(count));
  for (auto& v : k) v = r.index(C);
  return k;
}

const char* form_name(RewardForm f) {
  return f == RewardForm::scalar ? "scalar" : f == RewardForm::diagonal ? "diagonal" : "full";
}

// ================================================================== problems

struct Shape {
  std::int64_t B, n, G;  // n: dimensions (Gaussian heads) or classes (categorical)
};

/// A diagonal-Gaussian head (per-row or shared log-std), targets.
template <class T>
struct Diag {
  std::int64_t B, n, G, S;
  Buffer<T> mean, log_std, targets;
  Diag(Context& ctx, Rng& r, Shape s, bool shared, double ls_lo = -1, double ls_hi = 1)
      : B(s.B), n(s.n), G(s.G), S(shared ? 1 : s.B), mean(put<T>(ctx, r.vec(B * n, -2, 2))),
        log_std(put<T>(ctx, r.vec(S * n, ls_lo, ls_hi))), targets(put<T>(ctx, r.vec(B * n, -2, 2))) {}
  [[nodiscard]] DiagGaussian<T> head() const { return {mean.matrix(B, n), log_std.matrix(S, n)}; }
  [[nodiscard]] MatrixView<const T> y() const { return targets.matrix(B, n); }
  /// A tangent (or cotangent) shaped like the head.
  struct Pair {
    Buffer<T> a, b;
  };
  Pair like(Context& ctx, Rng& r) const { return {put<T>(ctx, r.vec(B * n, -1, 1)), put<T>(ctx, r.vec(S * n, -1, 1))}; }
  Pair zeros(Context& ctx) const { return {put<T>(ctx, Vec(B * n, 0.0)), put<T>(ctx, Vec(S * n, 0.0))}; }
  DiagGaussian<T> as_head(const Pair& p) const { return {p.a.matrix(B, n), p.b.matrix(S, n)}; }
  DiagGaussianGrad<T> as_grad(Pair& p) const { return {p.a.matrix(B, n), p.b.matrix(S, n)}; }
};

/// A Cholesky-Gaussian head: L_ii = softplus(raw) in [0.47, 1.3], |L_ij| <= 0.5/√n (well
/// conditioned for every n, as in the tests).
template <class T>
struct Chol {
  std::int64_t B, n, G, S, P;
  T jitter = f32<T>(1e-4);
  Buffer<T> mean, tril, targets;
  static Vec tril_values(Rng& r, std::int64_t rows, std::int64_t n) {
    const double off = 0.5 / std::sqrt(static_cast<double>(n));
    Vec v(static_cast<std::size_t>(rows * packed(n)));
    for (std::int64_t k = 0; k < rows; ++k)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j <= i; ++j) v[k * packed(n) + packed(i) + j] = i == j ? r.uniform(-0.5, 1.0) : r.uniform(-off, off);
    return v;
  }
  Chol(Context& ctx, Rng& r, Shape s, bool shared)
      : B(s.B), n(s.n), G(s.G), S(shared ? 1 : s.B), P(packed(s.n)), mean(put<T>(ctx, r.vec(B * n, -2, 2))),
        tril(put<T>(ctx, tril_values(r, S, n))), targets(put<T>(ctx, r.vec(B * n, -2, 2))) {}
  [[nodiscard]] CholeskyGaussian<T> head() const { return {mean.matrix(B, n), tril.matrix(S, P), jitter}; }
  [[nodiscard]] MatrixView<const T> y() const { return targets.matrix(B, n); }
  struct Pair {
    Buffer<T> a, b;
  };
  Pair like(Context& ctx, Rng& r) const {
    return {put<T>(ctx, r.vec(B * n, -1, 1)), put<T>(ctx, r.vec(S * P, -0.5, 0.5))};
  }
  Pair zeros(Context& ctx) const { return {put<T>(ctx, Vec(B * n, 0.0)), put<T>(ctx, Vec(S * P, 0.0))}; }
  CholeskyGaussian<T> as_head(const Pair& p) const { return {p.a.matrix(B, n), p.b.matrix(S, P), T(0)}; }
  CholeskyGaussianGrad<T> as_grad(Pair& p) const { return {p.a.matrix(B, n), p.b.matrix(S, P)}; }
};

/// A categorical head (masked classes included) and labels (unmasked classes).
template <class T>
struct Cat {
  std::int64_t B, C, G;
  Vec host_logits;
  Idx host_labels;
  Buffer<T> logits;
  Buffer<std::int32_t> labels;
  Cat(Context& ctx, Rng& r, Shape s)
      : B(s.B), C(s.n), G(s.G), host_logits(logits_values(r, B, C)), host_labels(unmasked_draws(r, host_logits, B, C, 1)),
        logits(put<T>(ctx, host_logits)), labels(put_idx(ctx, host_labels)) {}
  [[nodiscard]] Categorical<T> head() const { return {logits.matrix(B, C)}; }
  [[nodiscard]] VectorView<const std::int32_t> y() const { return labels.vector(); }
  Buffer<T> like(Context& ctx, Rng& r) const { return put<T>(ctx, r.vec(B * C, -1, 1)); }
  Categorical<T> as_head(const Buffer<T>& p) const { return {p.matrix(B, C)}; }
  CategoricalGrad<T> as_grad(Buffer<T>& p) const { return {p.matrix(B, C)}; }
};

// ================================================================== comparison

struct Tol {
  double rtol;
  double floor = 0.1;      ///< fraction of max|expected| added to |expected| in the denominator
  double abs_floor = 0.0;  ///< and this absolute amount (outputs that are sums cancelling to ~0)
};

/// One output array of a check. `rows` > 0: the array is `rows` equal blocks, one per batch row
/// (rows of a draws mismatch can be left out); `draws`: categorical draws that decide which rows
/// are comparable (not compared numerically).
struct Output {
  std::string name;
  Vec values;
  std::int64_t rows = 0;
  bool draws = false;
  /// When draws differ: compared with the row sums of the (rows-structured) output of this name
  /// on the same side instead of with the reference.
  std::string total_of = {};
};
using Outputs = std::vector<Output>;

enum class Status { pass, fail, skip };
const char* status_text(Status s) { return s == Status::pass ? "PASS" : s == Status::fail ? "FAIL" : "SKIP"; }

struct Outcome {
  Status status = Status::pass;
  double abs_err = 0, rel_err = 0, tolerance = 0;
  std::string abs_text, rel_text, tol_text;  // when set, printed instead of the numbers
  std::string note;
};

Outcome compare(const Outputs& got, const Outputs& want, Tol tol) {
  Outcome o;
  o.tolerance = tol.rtol;
  if (got.size() != want.size()) {
    o.status = Status::fail;
    o.note = "internal: output counts differ";
    return o;
  }
  // Rows whose categorical draws differ (float and double part at CDF boundaries).
  std::int64_t rows = 0, differing = 0;
  std::vector<char> differs;
  for (std::size_t k = 0; k < want.size(); ++k) {
    if (!want[k].draws) continue;
    rows = want[k].rows;
    differs.assign(static_cast<std::size_t>(rows), 0);
    const std::size_t per = want[k].values.size() / static_cast<std::size_t>(rows);
    for (std::size_t e = 0; e < want[k].values.size(); ++e)
      if (got[k].values[e] != want[k].values[e]) differs[e / per] = 1;
    differing = std::count(differs.begin(), differs.end(), 1);
  }
  bool unmaskable = false;
  std::string where;
  double where_got = 0, where_want = 0;
  for (std::size_t k = 0; k < want.size(); ++k) {
    const Output& w = want[k];
    const Output& g = got[k];
    if (w.draws) continue;
    if (g.values.size() != w.values.size()) {
      o.status = Status::fail;
      o.note = fmt::format("internal: {} has {} values, expected {}", w.name, g.values.size(), w.values.size());
      return o;
    }
    if (differing > 0 && w.rows != rows && !w.total_of.empty()) {
      // The whole batch against the sum of its rows, on the tested side.
      const auto parts = std::find_if(got.begin(), got.end(), [&](const Output& x) { return x.name == w.total_of; });
      if (parts == got.end() || parts->values.size() != g.values.size() * static_cast<std::size_t>(rows)) {
        o.status = Status::fail;
        o.note = fmt::format("internal: no row-structured '{}' for '{}'", w.total_of, w.name);
        return o;
      }
      Vec sum(g.values.size(), 0.0);
      for (std::size_t e = 0; e < parts->values.size(); ++e) sum[e % sum.size()] += parts->values[e];
      double scale = 0;
      for (double v : sum) scale = std::max(scale, std::abs(v));
      for (std::size_t e = 0; e < sum.size(); ++e) {
        const double err = std::abs(g.values[e] - sum[e]), rel = err / (std::abs(sum[e]) + tol.floor * scale + 1e-30);
        o.abs_err = std::max(o.abs_err, err);
        if (!(rel <= o.rel_err)) {
          o.rel_err = rel;
          where = fmt::format("{}[{}] (against the sum of its rows)", w.name, e);
          where_got = g.values[e];
          where_want = sum[e];
        }
      }
      continue;
    }
    if (differing > 0 && w.rows != rows) {
      unmaskable = true;
      continue;
    }
    double scale = 0;
    for (double v : w.values)
      if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
    const double floor = tol.floor * scale + tol.abs_floor + 1e-30;
    const std::size_t per = w.rows > 0 ? w.values.size() / static_cast<std::size_t>(w.rows) : 1;
    for (std::size_t e = 0; e < w.values.size(); ++e) {
      if (differing > 0 && differs[e / per]) continue;
      const double a = g.values[e], b = w.values[e];
      double err = 0, rel = 0;
      if (std::isnan(a) || std::isnan(b) || std::isinf(a) || std::isinf(b)) {
        const bool same = (std::isnan(a) && std::isnan(b)) || a == b;
        err = rel = same ? 0.0 : kInf;
      } else {
        err = std::abs(a - b);
        rel = err / (std::abs(b) + floor);
      }
      o.abs_err = std::max(o.abs_err, err);
      if (rel > o.rel_err) {
        o.rel_err = rel;
        where = fmt::format("{}[{}]", w.name, e);
        where_got = a;
        where_want = b;
      }
    }
  }
  o.status = o.rel_err <= tol.rtol ? Status::pass : Status::fail;
  if (o.status == Status::fail) {
    o.note = fmt::format("worst {}: got {:.7g}, expected {:.7g}", where, where_got, where_want);
  } else if (differing * 2 > rows && rows > 1) {
    o.status = Status::fail;
    o.note = fmt::format("categorical draws differ in {} of {} rows", differing, rows);
  } else if (unmaskable) {
    o.status = Status::skip;
    o.note = fmt::format("a categorical draw lies at a CDF boundary ({} of {} rows differ): rerun with another --seed",
                         differing, rows);
  } else if (differing > 0) {
    o.note = fmt::format("{} of {} rows left out: draws at a CDF boundary", differing, rows);
  }
  return o;
}

/// Categorical draws against the reference's: in range, never masked, agreement >= 99.9 % (C <=
/// 4096; 95 % beyond), and every disagreement at a CDF boundary: the intervals [cdf_{k-1}, cdf_k)
/// of the two classes lie within 1e-5·Z of each other.
Outcome compare_draws(const Idx& got, const Idx& want, const Vec& logits, std::int64_t B, std::int64_t C,
                      std::int64_t G, bool self_check) {
  std::int64_t mismatches = 0, far = 0, invalid = 0;
  std::string first;
  std::vector<double> cdf(static_cast<std::size_t>(C));
  for (std::int64_t b = 0; b < B; ++b) {
    double m = -kInf;
    for (std::int64_t j = 0; j < C; ++j) m = std::max(m, logits[b * C + j]);
    double run = 0;
    for (std::int64_t j = 0; j < C; ++j) {
      if (logits[b * C + j] != -kInf) run += std::exp(logits[b * C + j] - m);
      cdf[static_cast<std::size_t>(j)] = run;
    }
    const auto lower = [&](std::int32_t k) { return k == 0 ? 0.0 : cdf[static_cast<std::size_t>(k - 1)]; };
    for (std::int64_t g = 0; g < G; ++g) {
      const std::int32_t k = got[b * G + g], r = want[b * G + g];
      if (k < 0 || k >= C || logits[b * C + k] == -kInf) {
        if (first.empty()) first = fmt::format("row {} draw {}: class {} is invalid or masked", b, g, k);
        ++invalid;
        continue;
      }
      if (k == r) continue;
      ++mismatches;
      const double gap = k < r ? lower(r) - cdf[static_cast<std::size_t>(k)] : lower(k) - cdf[static_cast<std::size_t>(r)];
      if (gap > 1e-5 * run) {
        if (first.empty()) first = fmt::format("row {} draw {}: class {} vs reference {}, not at a boundary", b, g, k, r);
        ++far;
      }
    }
  }
  const double total = static_cast<double>(B * G);
  // The cpu float path (self-check) sums the CDF in sequence: about one draw in a few hundred
  // crosses a boundary at 4096 classes, where the GPU's tree sums move fewer than one in a thousand.
  const double allowed = self_check ? 1e-2 : C <= 4096 ? 1e-3 : 5e-2;
  Outcome o;
  o.abs_err = static_cast<double>(mismatches);
  o.rel_err = static_cast<double>(mismatches) / total;
  o.tolerance = allowed;
  o.abs_text = fmt::format("{}/{}", mismatches, B * G);
  const bool ok = invalid == 0 && far == 0 && (o.rel_err <= allowed || mismatches <= 1);
  o.status = ok ? Status::pass : Status::fail;
  o.note = first.empty() ? fmt::format("draws: {:.2f} % agree (>= {} % required){}", 100.0 * (1.0 - o.rel_err),
                                       100.0 * (1.0 - allowed), mismatches > 0 ? ", the others at CDF boundaries" : "")
                         : first;
  return o;
}

/// rel = ‖got − want‖ / ‖want‖ (normwise: iterates of a solver drift apart element by element).
Outcome compare_normwise(const Vec& got, const Vec& want, double tol) {
  Outcome o;
  o.tolerance = tol;
  double d2 = 0, w2 = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double d = got[i] - want[i];
    o.abs_err = std::max(o.abs_err, std::abs(d));
    if (!std::isfinite(got[i])) o.abs_err = kInf;
    d2 += d * d;
    w2 += want[i] * want[i];
  }
  o.rel_err = std::isfinite(o.abs_err) ? std::sqrt(d2) / std::max(std::sqrt(w2), 1e-300) : kInf;
  o.status = o.rel_err <= tol ? Status::pass : Status::fail;
  return o;
}

// ================================================================== the table

struct Env {
  Context& test;  ///< cuda (float), or cpu (float) for the self-check
  Context& ref;   ///< cpu (double)
  std::uint64_t seed;
  bool self_check;
};

struct Check {
  std::string primitive, variant, size;
  std::function<Outcome(Env&, std::uint64_t salt)> run;
  [[nodiscard]] std::string key() const { return primitive + "/" + variant + "/" + size; }
};

std::uint64_t fnv(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

class Table {
 public:
  /// A check whose generic lambda f(Context&, T{}, Rng&) -> Outputs runs in float on the tested
  /// backend and in double on the reference; both get the same inputs.
  template <class F>
  void add(std::string primitive, std::string variant, std::string size, Tol tol, F f) {
    checks.push_back({std::move(primitive), std::move(variant), std::move(size), [tol, f](Env& env, std::uint64_t salt) {
                        Rng rg(env.seed, salt);
                        const Outputs got = f(env.test, float{}, rg);
                        Rng rr(env.seed, salt);
                        const Outputs want = f(env.ref, double{}, rr);
                        return compare(got, want, tol);
                      }});
  }
  void add_custom(std::string primitive, std::string variant, std::string size,
                  std::function<Outcome(Env&, std::uint64_t)> f) {
    checks.push_back({std::move(primitive), std::move(variant), std::move(size), std::move(f)});
  }
  std::vector<Check> checks;
};

enum class Level { small = 0, medium = 1, large = 2 };

/// The shapes of the requested level and of every smaller one.
template <class S>
std::vector<S> upto(Level level, std::vector<S> small, std::vector<S> medium, std::vector<S> large) {
  std::vector<S> out = std::move(small);
  if (level >= Level::medium) out.insert(out.end(), medium.begin(), medium.end());
  if (level >= Level::large) out.insert(out.end(), large.begin(), large.end());
  return out;
}

std::string gauss_size(Shape s) { return fmt::format("B={} n={} G={}", s.B, s.n, s.G); }
std::string cat_size(Shape s) { return fmt::format("B={} C={} G={}", s.B, s.n, s.G); }

std::vector<Shape> diag_shapes(Level l) {
  return upto<Shape>(l, {{1, 1, 1}, {7, 3, 5}}, {{256, 17, 5}, {33, 64, 16}}, {{4096, 64, 16}, {16384, 17, 5}});
}
std::vector<Shape> chol_shapes(Level l) {
  return upto<Shape>(l, {{1, 1, 1}, {5, 4, 3}}, {{128, 17, 5}, {7, 64, 50}}, {{1024, 64, 5}});
}
/// Categorical heads up to this many classes in the cpu self-check: above, the cpu float path's
/// sequential sums over 2^15..2^18 probabilities round by about √C·ε of their total, beyond the
/// tolerances the GPU kernels (tree reductions) are held to; the double reference is unaffected.
constexpr std::int64_t kSelfCheckMaxClasses = 4096;
bool g_self_check = false;

std::vector<Shape> without_large_vocabularies(std::vector<Shape> shapes) {
  if (g_self_check) std::erase_if(shapes, [](const Shape& s) { return s.n > kSelfCheckMaxClasses; });
  return shapes;
}
std::vector<Shape> cat_shapes(Level l) {
  return without_large_vocabularies(upto<Shape>(l, {{1, 2, 1}, {7, 10, 50}}, {{64, 1000, 50}, {16, 4096, 300}},
                                                {{8, 32000, 50}, {2, 131072, 300}, {1, 262144, 5}}));
}
/// Objectives that draw categorical samples inside: few draws per row at large vocabularies, where
/// float rounding moves about one draw in a hundred across a CDF boundary (such rows are left out).
std::vector<Shape> cat_objective_shapes(Level l) {
  return without_large_vocabularies(
      upto<Shape>(l, {{1, 2, 1}, {7, 10, 50}}, {{64, 1000, 50}, {4, 4096, 20}}, {{16, 32000, 5}, {8, 131072, 2}}));
}
/// One-hot rewards (the full form has C(C+1)/2 parameters: C <= 256).
std::vector<Shape> onehot_shapes(Level l) {
  return upto<Shape>(l, {{7, 10, 5}}, {{256, 100, 5}}, {{4096, 256, 16}});
}
std::vector<RewardForm> forms_for(std::int64_t dims) {
  if (dims <= kMaxOneHotFullClasses) return {RewardForm::scalar, RewardForm::diagonal, RewardForm::full};
  return {RewardForm::scalar, RewardForm::diagonal};
}

template <class T>
PgOptions<T> pg_options(Transform kind, bool per_dim = false, double eps = 1e-3) {
  return {.entropy_weight = f32<T>(0.3),
          .transform = {.kind = kind, .rbf_gamma = f32<T>(0.5), .standardize_epsilon = f32<T>(eps)},
          .per_dimension_mean = per_dim};
}

// ------------------------------------------------------------------ distributions

/// sample, log_prob, entropy and backward of one Gaussian head family (Head = Diag or Chol) on its
/// shapes, per-row and shared second parameter.
template <template <class> class Head>
void add_gaussian_head_checks(Table& t, const std::vector<Shape>& shapes, const std::string& name,
                              const std::string& shared_name, const std::string& second_grad) {
  const Tol values{1e-4}, grads{1e-3};
  for (const Shape s : shapes) {
    const std::string size = gauss_size(s);
    for (const bool shared : {false, true}) {
      if (shared && s.B == 1) continue;
      const std::string var = shared ? shared_name : name;
      t.add("sample", var, size, values, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        Buffer<T> y(ctx, s.B * s.G * s.n);
        sample(ctx, h.head(), s.G, kKey, y.matrix(s.B * s.G, s.n));
        return {{"samples", get(y)}};
      });
      t.add("log_prob", var, size, values, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3));
        Buffer<T> lp(ctx, s.B * s.G);
        log_prob(ctx, h.head(), y.matrix(s.B * s.G, s.n), lp.matrix(s.B, s.G));
        return {{"log_prob", get(lp)}};
      });
      t.add("entropy", var, size, values, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        Buffer<T> e(ctx, s.B);
        entropy(ctx, h.head(), e.vector());
        return {{"entropy", get(e)}};
      });
      t.add("backward", var, size, grads, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Head<T> h(ctx, r, s, shared);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)),
                        e = put<T>(ctx, r.vec(s.B, -1, 1));
        auto g = h.zeros(ctx);
        backward(ctx, h.head(), y.matrix(s.B * s.G, s.n), c.matrix(s.B, s.G), e.vector(), h.as_grad(g));
        return {{"grad_mean", get(g.a)}, {second_grad, get(g.b)}};
      });
    }
  }
}

void add_distribution_checks(Table& t, Level level) {
  add_gaussian_head_checks<Diag>(t, diag_shapes(level), "diag", "diag, shared log-std", "grad_log_std");
  add_gaussian_head_checks<Chol>(t, chol_shapes(level), "cholesky", "cholesky, shared L", "grad_tril");
  for (const Shape s : cat_shapes(level)) {
    const std::string size = cat_size(s);
    t.add_custom("sample", "categorical", size, [=](Env& env, std::uint64_t salt) {
      const auto draw = [&](Context& ctx, auto one) {
        using T = decltype(one);
        Rng r(env.seed, salt);
        const Cat<T> h(ctx, r, s);
        Buffer<std::int32_t> k(ctx, s.B * s.G);
        sample(ctx, h.head(), s.G, kKey, k.matrix(s.B, s.G));
        return std::make_pair(k.to_host(), h.host_logits);
      };
      const auto got = draw(env.test, float{});
      const auto want = draw(env.ref, double{});
      return compare_draws(got.first, want.first, want.second, s.B, s.n, s.G, env.self_check);
    });
    t.add("log_prob", "categorical", size, {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      Buffer<T> lp(ctx, s.B * s.G);
      log_prob(ctx, h.head(), k.matrix(s.B, s.G), lp.matrix(s.B, s.G));
      return {{"log_prob", get(lp)}};
    });
    t.add("entropy", "categorical", size, {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      Buffer<T> e(ctx, s.B);
      entropy(ctx, h.head(), e.vector());
      return {{"entropy", get(e)}};
    });
    // Per element: the gradient of a large vocabulary has entries far below its largest one.
    t.add("backward", "categorical", size, {1e-3, 1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      const Buffer<T> c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)), e = put<T>(ctx, r.vec(s.B, -1, 1));
      Buffer<T> g(ctx, s.B * s.n);
      backward(ctx, h.head(), k.matrix(s.B, s.G), c.matrix(s.B, s.G), e.vector(), h.as_grad(g));
      return {{"grad_logits", get(g)}};
    });
  }
}

// ------------------------------------------------------------------ rewards and transforms

void add_reward_checks(Table& t, Level level) {
  for (const Shape s : diag_shapes(level)) {
    for (const RewardForm form : forms_for(s.n)) {
      const std::string var = fmt::format("gaussian, {}", form_name(form));
      t.add("reward", var, gauss_size(s), {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), tg = put<T>(ctx, r.vec(s.B * s.n, -2, 2)),
                        u = put<T>(ctx, reward_params(r, form, s.n));
        Buffer<T> out(ctx, s.B * s.G);
        reward(ctx, MahalanobisReward<T>{form, u.vector()}, y.matrix(s.B * s.G, s.n), tg.matrix(s.B, s.n),
               out.matrix(s.B, s.G));
        return {{"rewards", get(out)}};
      });
      t.add("reward_backward", var, gauss_size(s), {1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Vec u_host = reward_params(r, form, s.n);
        const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), tg = put<T>(ctx, r.vec(s.B * s.n, -2, 2)),
                        u = put<T>(ctx, u_host), d = put<T>(ctx, r.vec(s.B * s.G, -1, 1));
        Buffer<T> g(ctx, u_host.size());
        reward_backward(ctx, MahalanobisReward<T>{form, u.vector()}, y.matrix(s.B * s.G, s.n), tg.matrix(s.B, s.n),
                        d.matrix(s.B, s.G), g.vector());
        return {{"grad_params", get(g)}};
      });
    }
  }
  for (const Shape s : onehot_shapes(level)) {
    for (const RewardForm form : forms_for(s.n)) {
      const std::string var = fmt::format("one-hot, {}", form_name(form));
      t.add("reward", var, cat_size(s), {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Buffer<std::int32_t> k = put_idx(ctx, indices(r, s.B * s.G, s.n)), y = put_idx(ctx, indices(r, s.B, s.n));
        const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
        Buffer<T> out(ctx, s.B * s.G);
        reward(ctx, MahalanobisReward<T>{form, u.vector()}, k.matrix(s.B, s.G), y.vector(), s.n, out.matrix(s.B, s.G));
        return {{"rewards", get(out)}};
      });
      t.add("reward_backward", var, cat_size(s), {1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Vec u_host = reward_params(r, form, s.n);
        const Buffer<std::int32_t> k = put_idx(ctx, indices(r, s.B * s.G, s.n)), y = put_idx(ctx, indices(r, s.B, s.n));
        const Buffer<T> u = put<T>(ctx, u_host), d = put<T>(ctx, r.vec(s.B * s.G, -1, 1));
        Buffer<T> g(ctx, u_host.size());
        reward_backward(ctx, MahalanobisReward<T>{form, u.vector()}, k.matrix(s.B, s.G), y.vector(), s.n,
                        d.matrix(s.B, s.G), g.vector());
        return {{"grad_params", get(g)}};
      });
    }
  }
  struct Group {
    std::int64_t B, G;
  };
  for (const Group s : upto<Group>(level, {{1, 2}, {7, 5}}, {{1024, 16}}, {{65536, 32}})) {
    const std::string size = fmt::format("B={} G={}", s.B, s.G);
    for (const Transform kind :
         {Transform::none, Transform::normalize, Transform::rbf, Transform::leave_one_out, Transform::standardize}) {
      // G = 2 standardises to ±1/√2 whatever the rewards: its derivative is O(ε/std²), all
      // cancellation in float; ε = 0.1 keeps it measurable.
      const double eps = s.G == 2 ? 0.1 : 1e-3;
      t.add("transform_rewards", to_string(kind), size, {1e-4}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Buffer<T> rw = put<T>(ctx, r.vec(s.B * s.G, -3, 0));
        Buffer<T> a(ctx, s.B * s.G);
        transform_rewards(ctx, pg_options<T>(kind, false, eps).transform, rw.matrix(s.B, s.G), a.matrix(s.B, s.G));
        return {{"advantages", get(a)}};
      });
      t.add("transform_rewards_backward", to_string(kind), size, {1e-3}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Buffer<T> rw = put<T>(ctx, r.vec(s.B * s.G, -3, 0)), da = put<T>(ctx, r.vec(s.B * s.G, -1, 1));
        Buffer<T> dr(ctx, s.B * s.G);
        transform_rewards_backward(ctx, pg_options<T>(kind, false, eps).transform, rw.matrix(s.B, s.G), da.matrix(s.B, s.G),
                                   dr.matrix(s.B, s.G));
        return {{"d_rewards", get(dr)}};
      });
    }
  }
}

// ------------------------------------------------------------------ objectives

/// Draws of the categorical sampler with the objectives' key: the rows whose draws agree in float
/// and double are the comparable ones.
template <class T>
Output cat_draws(Context& ctx, const Cat<T>& h) {
  Buffer<std::int32_t> k(ctx, h.B * h.G);
  sample(ctx, h.head(), h.G, kKey, k.matrix(h.B, h.G));
  const Idx v = k.to_host();
  return {"draws", Vec(v.begin(), v.end()), h.B, true};
}

void add_objective_checks(Table& t, Level level) {
  const Tol tol{2e-3};
  struct Variant {
    Transform kind;
    RewardForm form;
    bool shared, per_dim;
  };
  for (const Shape s : diag_shapes(level)) {
    for (const Variant v : {Variant{Transform::none, RewardForm::scalar, false, false},
                            Variant{Transform::leave_one_out, RewardForm::diagonal, false, true},
                            Variant{Transform::standardize, RewardForm::full, true, false}}) {
      if (s.G < 2 && v.kind != Transform::none) continue;
      if (v.shared && s.B == 1) continue;
      const std::string var = fmt::format("diag{}, {}, {}{}", v.shared ? " shared" : "", to_string(v.kind),
                                          form_name(v.form), v.per_dim ? ", per-dim" : "");
      t.add("pg_surrogate", var, gauss_size(s), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Diag<T> h(ctx, r, s, v.shared);
        const Buffer<T> u = put<T>(ctx, reward_params(r, v.form, s.n));
        Buffer<T> loss(ctx, s.B), rew(ctx, s.B);
        auto g = h.zeros(ctx);
        pg_surrogate(ctx, h.head(), h.y(), MahalanobisReward<T>{v.form, u.vector()}, s.G, pg_options<T>(v.kind, v.per_dim),
                     kKey, ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
        return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_log_std", get(g.b)}};
      });
    }
    for (const Transform kind : {Transform::none, Transform::rbf}) {
      t.add("pg_pathwise", fmt::format("diag, {}", to_string(kind)), gauss_size(s), tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, RewardForm::diagonal, s.n));
              Buffer<T> loss(ctx, s.B), rew(ctx, s.B);
              auto g = h.zeros(ctx);
              pg_pathwise(ctx, h.head(), h.y(), MahalanobisReward<T>{RewardForm::diagonal, u.vector()}, s.G,
                          pg_options<T>(kind), kKey, ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_log_std", get(g.b)}};
            });
    }
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_objective", fmt::format("diag, {}", form_name(form)), gauss_size(s), tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Buffer<T> loss(ctx, s.B), rew(ctx, s.B);
              auto g = h.zeros(ctx);
              exact_objective(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                              ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_log_std", get(g.b)}};
            });
    }
  }
  for (const Shape s : chol_shapes(level)) {
    for (const Variant v : {Variant{Transform::none, RewardForm::scalar, false, false},
                            Variant{Transform::leave_one_out, RewardForm::full, true, true}}) {
      if (s.G < 2 && v.kind != Transform::none) continue;
      if (v.shared && s.B == 1) continue;
      const std::string var = fmt::format("cholesky{}, {}, {}{}", v.shared ? " shared" : "", to_string(v.kind),
                                          form_name(v.form), v.per_dim ? ", per-dim" : "");
      t.add("pg_surrogate", var, gauss_size(s), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        const Chol<T> h(ctx, r, s, v.shared);
        const Buffer<T> u = put<T>(ctx, reward_params(r, v.form, s.n));
        Buffer<T> loss(ctx, s.B), rew(ctx, s.B);
        auto g = h.zeros(ctx);
        pg_surrogate(ctx, h.head(), h.y(), MahalanobisReward<T>{v.form, u.vector()}, s.G, pg_options<T>(v.kind, v.per_dim),
                     kKey, ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
        return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_tril", get(g.b)}};
      });
    }
    t.add("pg_pathwise", "cholesky, none", gauss_size(s), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Chol<T> h(ctx, r, s, false);
      const Buffer<T> u = put<T>(ctx, reward_params(r, RewardForm::scalar, s.n));
      Buffer<T> loss(ctx, s.B), rew(ctx, s.B);
      auto g = h.zeros(ctx);
      pg_pathwise(ctx, h.head(), h.y(), MahalanobisReward<T>{RewardForm::scalar, u.vector()}, s.G,
                  pg_options<T>(Transform::none), kKey, ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
      return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_tril", get(g.b)}};
    });
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_objective", fmt::format("cholesky, {}", form_name(form)), gauss_size(s), tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Chol<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Buffer<T> loss(ctx, s.B), rew(ctx, s.B);
              auto g = h.zeros(ctx);
              exact_objective(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                              ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_mean", get(g.a)}, {"grad_tril", get(g.b)}};
            });
    }
  }
  for (const Shape s : cat_objective_shapes(level)) {
    for (const Transform kind : {Transform::none, Transform::standardize}) {
      if (s.G < 2 && kind != Transform::none) continue;
      const RewardForm form = kind == Transform::none ? RewardForm::scalar : RewardForm::diagonal;
      // standardize with ε = 0.1: a group of equal one-hot rewards (std 0) amplifies float
      // rounding by 1/ε, a conditioning property of the transform (categorical tests, likewise).
      t.add("pg_surrogate", fmt::format("categorical, {}, {}", to_string(kind), form_name(form)), cat_size(s), {2e-3, 1e-3},
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Buffer<T> loss(ctx, s.B), rew(ctx, s.B), g(ctx, s.B * s.n);
              pg_surrogate(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, s.G,
                           pg_options<T>(kind, false, 0.1), kKey, ObjectiveRows<T>{loss.vector(), rew.vector()},
                           h.as_grad(g));
              return {cat_draws(ctx, h),
                      {"row_loss", get(loss), s.B},
                      {"row_reward", get(rew), s.B},
                      {"grad_logits", get(g), s.B}};
            });
    }
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_objective", fmt::format("categorical, {}", form_name(form)), cat_size(s), {2e-3},
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              Buffer<T> loss(ctx, s.B), rew(ctx, s.B), g(ctx, s.B * s.n);
              exact_objective(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                              ObjectiveRows<T>{loss.vector(), rew.vector()}, h.as_grad(g));
              return {{"row_loss", get(loss)}, {"row_reward", get(rew)}, {"grad_logits", get(g)}};
            });
    }
  }
}

// ------------------------------------------------------------------ second order (head level)

void add_second_order_checks(Table& t, Level level) {
  const Tol tol{2e-3};
  for (const Shape s : diag_shapes(level)) {
    const std::string size = gauss_size(s);
    t.add("log_prob_jvp", "diag", size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Diag<T> h(ctx, r, s, false);
      const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3));
      const auto tan = h.like(ctx, r);
      Buffer<T> out(ctx, s.B * s.G);
      log_prob_jvp(ctx, h.head(), y.matrix(s.B * s.G, s.n), h.as_head(tan), out.matrix(s.B, s.G));
      return {{"jvp", get(out)}};
    });
    for (const bool shared : {false, true}) {
      if (shared && s.B == 1) continue;
      t.add("backward_tangent", shared ? "diag, shared log-std" : "diag", size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, shared);
              const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)),
                              e = put<T>(ctx, r.vec(s.B, -1, 1));
              const auto tan = h.like(ctx, r);
              auto g = h.zeros(ctx);
              backward_tangent(ctx, h.head(), y.matrix(s.B * s.G, s.n), c.matrix(s.B, s.G), e.vector(), h.as_head(tan),
                               h.as_grad(g));
              return {{"grad_mean_tangent", get(g.a)}, {"grad_log_std_tangent", get(g.b)}};
            });
    }
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_backward_tangent", fmt::format("diag, {}", form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              const auto tan = h.like(ctx, r);
              auto g = h.zeros(ctx);
              exact_backward_tangent(ctx, h.head(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                                     h.as_head(tan), h.as_grad(g));
              return {{"grad_mean_tangent", get(g.a)}, {"grad_log_std_tangent", get(g.b)}};
            });
      t.add("exact_mixed_product", fmt::format("diag, {}", form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, false);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host);
              const auto tan = h.like(ctx, r);
              Buffer<T> g(ctx, u_host.size());
              exact_mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                  pg_options<T>(Transform::none), h.as_head(tan), g.vector());
              return {{"grad_params", get(g)}};
            });
    }
    for (const Transform kind : {Transform::none, Transform::leave_one_out}) {
      if (s.G < 2 && kind != Transform::none) continue;
      const RewardForm form = kind == Transform::none ? RewardForm::scalar : RewardForm::diagonal;
      t.add("mixed_product", fmt::format("diag, {}, {}", to_string(kind), form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Diag<T> h(ctx, r, s, false);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host);
              const auto tan = h.like(ctx, r);
              Buffer<T> g(ctx, u_host.size());
              mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()}, s.G, pg_options<T>(kind), kKey,
                            h.as_head(tan), g.vector());
              return {{"grad_params", get(g)}};
            });
    }
  }
  for (const Shape s : chol_shapes(level)) {
    const std::string size = gauss_size(s);
    t.add("log_prob_jvp", "cholesky", size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Chol<T> h(ctx, r, s, false);
      const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3));
      const auto tan = h.like(ctx, r);
      Buffer<T> out(ctx, s.B * s.G);
      log_prob_jvp(ctx, h.head(), y.matrix(s.B * s.G, s.n), h.as_head(tan), out.matrix(s.B, s.G));
      return {{"jvp", get(out)}};
    });
    t.add("backward_tangent", "cholesky", size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Chol<T> h(ctx, r, s, false);
      const Buffer<T> y = put<T>(ctx, r.vec(s.B * s.G * s.n, -3, 3)), c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)),
                      e = put<T>(ctx, r.vec(s.B, -1, 1));
      const auto tan = h.like(ctx, r);
      auto g = h.zeros(ctx);
      backward_tangent(ctx, h.head(), y.matrix(s.B * s.G, s.n), c.matrix(s.B, s.G), e.vector(), h.as_head(tan),
                       h.as_grad(g));
      return {{"grad_mean_tangent", get(g.a)}, {"grad_tril_tangent", get(g.b)}};
    });
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_backward_tangent", fmt::format("cholesky, {}", form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Chol<T> h(ctx, r, s, false);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n));
              const auto tan = h.like(ctx, r);
              auto g = h.zeros(ctx);
              exact_backward_tangent(ctx, h.head(), MahalanobisReward<T>{form, u.vector()}, pg_options<T>(Transform::none),
                                     h.as_head(tan), h.as_grad(g));
              return {{"grad_mean_tangent", get(g.a)}, {"grad_tril_tangent", get(g.b)}};
            });
      t.add("exact_mixed_product", fmt::format("cholesky, {}", form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Chol<T> h(ctx, r, s, false);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host);
              const auto tan = h.like(ctx, r);
              Buffer<T> g(ctx, u_host.size());
              exact_mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                  pg_options<T>(Transform::none), h.as_head(tan), g.vector());
              return {{"grad_params", get(g)}};
            });
    }
    t.add("mixed_product", "cholesky, none, full", size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Chol<T> h(ctx, r, s, false);
      const Vec u_host = reward_params(r, RewardForm::full, s.n);
      const Buffer<T> u = put<T>(ctx, u_host);
      const auto tan = h.like(ctx, r);
      Buffer<T> g(ctx, u_host.size());
      mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{RewardForm::full, u.vector()}, s.G,
                    pg_options<T>(Transform::none), kKey, h.as_head(tan), g.vector());
      return {{"grad_params", get(g)}};
    });
  }
  for (const Shape s : cat_shapes(level)) {
    const std::string size = cat_size(s);
    const Tol per_element{2e-3};
    // Σ_j p_j u_j r_j-type sums cancel to ~p_y at large C: an absolute floor, as the tests'.
    const Tol mixed{2e-3, 0.1, 0.05};
    t.add("log_prob_jvp", "categorical", size, tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      const Buffer<T> tan = h.like(ctx, r);
      Buffer<T> out(ctx, s.B * s.G);
      log_prob_jvp(ctx, h.head(), k.matrix(s.B, s.G), h.as_head(tan), out.matrix(s.B, s.G));
      return {{"jvp", get(out)}};
    });
    t.add("backward_tangent", "categorical", size, per_element, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      const Cat<T> h(ctx, r, s);
      const Buffer<std::int32_t> k = put_idx(ctx, unmasked_draws(r, h.host_logits, s.B, s.n, s.G));
      const Buffer<T> c = put<T>(ctx, r.vec(s.B * s.G, -1, 1)), e = put<T>(ctx, r.vec(s.B, -1, 1)), tan = h.like(ctx, r);
      Buffer<T> g(ctx, s.B * s.n);
      backward_tangent(ctx, h.head(), k.matrix(s.B, s.G), c.matrix(s.B, s.G), e.vector(), h.as_head(tan), h.as_grad(g));
      return {{"grad_logits_tangent", get(g)}};
    });
    for (const RewardForm form : forms_for(s.n)) {
      t.add("exact_backward_tangent", fmt::format("categorical, {}", form_name(form)), size, per_element,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Buffer<T> u = put<T>(ctx, reward_params(r, form, s.n)), tan = h.like(ctx, r);
              Buffer<T> g(ctx, s.B * s.n);
              exact_backward_tangent(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                     pg_options<T>(Transform::none), h.as_head(tan), h.as_grad(g));
              return {{"grad_logits_tangent", get(g)}};
            });
      t.add("exact_mixed_product", fmt::format("categorical, {}", form_name(form)), size, mixed,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Vec u_host = reward_params(r, form, s.n);
              const Buffer<T> u = put<T>(ctx, u_host), tan = h.like(ctx, r);
              Buffer<T> g(ctx, u_host.size());
              exact_mixed_product(ctx, h.head(), h.y(), MahalanobisReward<T>{form, u.vector()},
                                  pg_options<T>(Transform::none), h.as_head(tan), g.vector());
              return {{"grad_params", get(g)}};
            });
    }
  }
  for (const Shape s : cat_objective_shapes(level)) {
    const std::string size = cat_size(s);
    const Tol tol{2e-3, 0.1, 0.05};
    // The mixed product sums over rows, so a draw at a CDF boundary (float and double part there)
    // would leave nothing to compare: it is also computed row by row (a one-row shard with the
    // whole batch's normaliser and the row's draw key), the rows whose draws agree are compared
    // with the reference, and the whole-batch call is checked against the sum of its rows.
    for (const RewardForm form : {RewardForm::scalar, RewardForm::diagonal}) {
      t.add("mixed_product", fmt::format("categorical, none, {}", form_name(form)), size, tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Cat<T> h(ctx, r, s);
              const Vec u_host = reward_params(r, form, s.n);
              const auto P = static_cast<std::int64_t>(u_host.size());
              const Buffer<T> u = put<T>(ctx, u_host), tan = h.like(ctx, r);
              const MahalanobisReward<T> rew{form, u.vector()};
              PgOptions<T> options = pg_options<T>(Transform::none);
              Buffer<T> g(ctx, P), g1(ctx, P);
              mixed_product(ctx, h.head(), h.y(), rew, s.G, options, kKey, h.as_head(tan), g.vector());
              options.normaliser_rows = s.B;
              Vec rows;
              for (std::int64_t b = 0; b < s.B; ++b) {
                const DrawKey key{.step = kKey.step, .first_row = kKey.first_row + b};
                mixed_product(ctx, Categorical<T>{h.head().logits.row_range(b, 1)}, VectorView<const std::int32_t>{h.y().data + b, 1},
                              rew, s.G, options, key, Categorical<T>{h.as_head(tan).logits.row_range(b, 1)}, g1.vector());
                const Vec part = get(g1);
                rows.insert(rows.end(), part.begin(), part.end());
              }
              Output total{"grad_params", get(g)};
              total.total_of = "grad_params_by_row";
              return {cat_draws(ctx, h), {"grad_params_by_row", std::move(rows), s.B}, std::move(total)};
            });
    }
  }
}

// ------------------------------------------------------------------ network

struct NetCase {
  std::int64_t B;
  MlpSpec spec;
};

std::string net_name(const MlpSpec& spec) { return Mlp(spec).describe(); }

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
        Buffer<T> cache(ctx, C), tcache(ctx, C), y(ctx, B * out), yt(ctx, B * out), dp(ctx, P), dx(ctx, B * in), dpt(ctx, P);
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

// ------------------------------------------------------------------ policy curvature

enum class CurvOut { gradient, hvp, mixed };
const char* curv_name(CurvOut o) {
  return o == CurvOut::gradient ? "curvature.gradient" : o == CurvOut::hvp ? "curvature.hvp" : "curvature.mixed_product";
}

/// Parameters of a trunk: PyTorch's initialisation scaled by 1.5 (heads away from uniform).
Vec trunk_params(const Mlp& net, std::uint64_t seed) {
  std::vector<float> init(static_cast<std::size_t>(net.parameter_count()));
  Context host({.backend = Backend::cpu});
  net.init<float>(host, vector_view(init.data(), net.parameter_count()), seed);
  Vec p(init.size());
  for (std::size_t i = 0; i < init.size(); ++i) p[i] = static_cast<float>(1.5 * init[i]);
  return p;
}

/// prepare (or prepare_exact), then the requested output: the inner gradient, two HVPs (apply and
/// the LinearOperator), or the mixed product along a direction.
template <class T, class Curvature, class Prepare>
Outputs curvature_outputs(Context& ctx, Rng& r, Curvature& curvature, const Mlp& net, CurvOut what,
                          std::int64_t reward_params_count, Prepare prepare) {
  const std::int64_t P = net.parameter_count();
  Buffer<T> grad(ctx, P), hv(ctx, P), hv2(ctx, P), mixed(ctx, reward_params_count);
  prepare(grad.vector());
  const Buffer<T> v = put<T>(ctx, r.vec(P, -1, 1)), w = put<T>(ctx, r.vec(P, -1, 1));
  switch (what) {
    case CurvOut::gradient: return {{"grad", get(grad)}};
    case CurvOut::hvp:
      curvature.apply(v.vector(), hv.vector());
      curvature.as_operator()(w.vector(), hv2.vector());
      return {{"hv", get(hv)}, {"hv_operator", get(hv2)}};
    case CurvOut::mixed: curvature.mixed_product(v.vector(), mixed.vector()); return {{"grad_params", get(mixed)}};
  }
  return {};
}

void add_curvature_checks(Table& t, Level level) {
  const Tol tol{2e-3, 0.25};
  struct DiagCase {
    std::int64_t B, n;
    MlpSpec spec;
  };
  const std::vector<DiagCase> diag = upto<DiagCase>(
      level, {{9, 3, {.inputs = 6, .hidden = {16, 8}, .outputs = 6, .activation = Activation::tanh}}},
      {{1024, 17, {.inputs = 23, .hidden = {64, 64}, .outputs = 34, .activation = Activation::relu}}},
      {{8192, 17, {.inputs = 23, .hidden = {256, 256}, .outputs = 34, .activation = Activation::tanh}}});
  for (const DiagCase& c : diag) {
    for (const bool exact : {true, false}) {
      for (const CurvOut what : {CurvOut::gradient, CurvOut::hvp, CurvOut::mixed}) {
        t.add(curv_name(what), fmt::format("diag {}, {}", exact ? "exact" : "surrogate", net_name(c.spec)),
              fmt::format("B={} G=5", c.B), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
                using T = decltype(one);
                const Mlp net(c.spec);
                const std::int64_t B = c.B, n = c.n, in = c.spec.inputs;
                const Buffer<T> params = put<T>(ctx, trunk_params(net, 11)), x = put<T>(ctx, r.vec(B * in, -1.5, 1.5)),
                                y = put<T>(ctx, r.vec(B * n, -1, 1)), u = put<T>(ctx, reward_params(r, RewardForm::diagonal, n));
                const MahalanobisReward<T> rew{RewardForm::diagonal, u.vector()};
                DiagGaussianPolicyCurvature<T> curvature(ctx, net, B);
                return curvature_outputs<T>(ctx, r, curvature, net, what, n, [&](VectorView<T> grad) {
                  if (exact) {
                    curvature.prepare_exact(params.vector(), x.matrix(B, in), y.matrix(B, n), rew,
                                            pg_options<T>(Transform::none), grad);
                  } else {
                    curvature.prepare(params.vector(), x.matrix(B, in), y.matrix(B, n), rew, 5,
                                      pg_options<T>(Transform::none), kKey, grad);
                  }
                });
              });
      }
    }
  }
  const std::vector<DiagCase> chol = upto<DiagCase>(
      level, {{9, 3, {.inputs = 4, .hidden = {16}, .outputs = 3 + 6, .activation = Activation::tanh}}},
      {{512, 17, {.inputs = 23, .hidden = {64, 64}, .outputs = 17 + 153, .activation = Activation::relu}}}, {});
  for (const DiagCase& c : chol) {
    for (const bool exact : {true, false}) {
      for (const CurvOut what : {CurvOut::gradient, CurvOut::hvp, CurvOut::mixed}) {
        t.add(curv_name(what), fmt::format("cholesky {}, {}", exact ? "exact" : "surrogate", net_name(c.spec)),
              fmt::format("B={} G=5", c.B), tol, [=](Context& ctx, auto one, Rng& r) -> Outputs {
                using T = decltype(one);
                const Mlp net(c.spec);
                const std::int64_t B = c.B, n = c.n, in = c.spec.inputs;
                const Vec u_host = reward_params(r, RewardForm::full, n);
                const Buffer<T> params = put<T>(ctx, trunk_params(net, 12)), x = put<T>(ctx, r.vec(B * in, -1.5, 1.5)),
                                y = put<T>(ctx, r.vec(B * n, -1, 1)), u = put<T>(ctx, u_host);
                const MahalanobisReward<T> rew{RewardForm::full, u.vector()};
                CholeskyPolicyCurvature<T> curvature(ctx, net, B, f32<T>(1e-4));
                return curvature_outputs<T>(ctx, r, curvature, net, what, static_cast<std::int64_t>(u_host.size()),
                                            [&](VectorView<T> grad) {
                                              if (exact) {
                                                curvature.prepare_exact(params.vector(), x.matrix(B, in), y.matrix(B, n),
                                                                        rew, pg_options<T>(Transform::none), grad);
                                              } else {
                                                curvature.prepare(params.vector(), x.matrix(B, in), y.matrix(B, n), rew, 5,
                                                                  pg_options<T>(Transform::none), kKey, grad);
                                              }
                                            });
              });
      }
    }
  }
  struct CatCase {
    std::int64_t B;
    MlpSpec spec;
  };
  const std::vector<CatCase> cats = upto<CatCase>(
      level, {{33, {.inputs = 6, .hidden = {16}, .outputs = 7, .activation = Activation::tanh}}},
      {{1024, {.inputs = 23, .hidden = {}, .outputs = 10}}},
      {{4096, {.inputs = 64, .hidden = {128}, .outputs = 1000, .activation = Activation::relu}}});
  for (const CatCase& c : cats) {
    for (const CurvOut what : {CurvOut::gradient, CurvOut::hvp, CurvOut::mixed}) {
      t.add(curv_name(what), fmt::format("categorical exact, {}", net_name(c.spec)), fmt::format("B={}", c.B), tol,
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              const Mlp net(c.spec);
              const std::int64_t B = c.B, C = c.spec.outputs, in = c.spec.inputs;
              const Buffer<T> params = put<T>(ctx, trunk_params(net, 13)), x = put<T>(ctx, r.vec(B * in, -1.5, 1.5)),
                              u = put<T>(ctx, reward_params(r, RewardForm::diagonal, C));
              const Buffer<std::int32_t> labels = put_idx(ctx, indices(r, B, C));
              const MahalanobisReward<T> rew{RewardForm::diagonal, u.vector()};
              CategoricalPolicyCurvature<T> curvature(ctx, net, B);
              return curvature_outputs<T>(ctx, r, curvature, net, what, C, [&](VectorView<T> grad) {
                curvature.prepare_exact(params.vector(), x.matrix(B, in), labels.vector(), rew,
                                        pg_options<T>(Transform::none), grad);
              });
            });
    }
  }
}

// ------------------------------------------------------------------ optimisers

void add_optim_checks(Table& t, Level level) {
  for (const std::int64_t n : upto<std::int64_t>(level, {1, 1000}, {std::int64_t{1} << 20}, {std::int64_t{1} << 24})) {
    const std::string size = fmt::format("n={}", n);
    for (const double wd : {0.0, 0.05}) {
      t.add("adam_step", wd > 0 ? "adamw, 3 steps" : "adam, 3 steps", size, {1e-5}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
        using T = decltype(one);
        Buffer<T> p = put<T>(ctx, r.vec(n, -1, 1)), m(ctx, n), v(ctx, n);
        Buffer<std::int64_t> step(ctx, 1);
        const AdamState<T> state{m.vector(), v.vector(), step.vector()};
        adam_reset(ctx, state);
        const AdamOptions<T> o{.learning_rate = f32<T>(1e-2), .beta1 = f32<T>(0.8), .beta2 = f32<T>(0.999),
                               .epsilon = f32<T>(1e-6), .weight_decay = f32<T>(wd)};
        for (int k = 0; k < 3; ++k) {
          const Buffer<T> g = put<T>(ctx, r.vec(n, -2, 2));
          adam_step(ctx, o, state, p.vector(), g.vector());
        }
        return {{"params", get(p)}, {"first_moment", get(m)}, {"second_moment", get(v)}};
      });
    }
    t.add("sgd_step", "momentum 0.9, 3 steps", size, {1e-5}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      Buffer<T> p = put<T>(ctx, r.vec(n, -1, 1)), vel = put<T>(ctx, Vec(n, 0.0));
      for (int k = 0; k < 3; ++k) {
        const Buffer<T> g = put<T>(ctx, r.vec(n, -2, 2));
        sgd_step<T>(ctx, f32<T>(0.05), f32<T>(0.9), vel.vector(), p.vector(), g.vector());
      }
      return {{"params", get(p)}, {"velocity", get(vel)}};
    });
    t.add("clamp_values", "limit 0.5", size, {1e-6}, [=](Context& ctx, auto one, Rng& r) -> Outputs {
      using T = decltype(one);
      Buffer<T> p = put<T>(ctx, r.vec(n, -2, 2));
      clamp_values<T>(ctx, f32<T>(0.5), p.vector());
      return {{"values", get(p)}};
    });
    for (const bool active : {true, false}) {
      t.add("clip_global_norm", active ? "clipping" : "below the limit", size, {1e-5},
            [=](Context& ctx, auto one, Rng& r) -> Outputs {
              using T = decltype(one);
              Buffer<T> p = put<T>(ctx, r.vec(n, -1, 1)), norm(ctx, 1);
              // ‖p‖ ≈ √(n/3): clip to a tenth of it, or leave it with a limit ten times above it.
              const double limit = (active ? 0.1 : 10.0) * std::sqrt(static_cast<double>(n) / 3.0);
              clip_global_norm<T>(ctx, f32<T>(limit), p.vector(), norm.vector());
              return {{"values", get(p)}, {"norm", get(norm)}};
            });
    }
  }
}

// ------------------------------------------------------------------ solvers

enum class Method { cg, cg_normal, neumann };

/// The solvers on an SPD operator built from the public primitives: the exact-curvature head
/// Hessian of a diagonal Gaussian (exact_backward_tangent, diagonal reward U), on vectors
/// [μ̇ (B·n) | ṡ (B·n)]. Eigenvalues 2U_dd/B and 4U_dd σ²/B (condition number about 5).
void add_solver_checks(Table& t, Level level) {
  struct Size {
    std::int64_t B, n;
  };
  for (const Size s : upto<Size>(level, {{7, 3}}, {{1024, 17}}, {{65536, 17}})) {
    for (const Method m : {Method::cg, Method::cg_normal, Method::neumann}) {
      const char* name = m == Method::cg ? "conjugate_gradient" : m == Method::cg_normal ? "conjugate_gradient_normal"
                                                                                         : "neumann_series";
      const char* var = m == Method::neumann ? "exact head Hessian, 60 terms" : "exact head Hessian, tol 1e-5";
      t.add_custom(name, var, fmt::format("N={}", 2 * s.B * s.n), [=](Env& env, std::uint64_t salt) {
        std::string status[2];
        std::int64_t iterations[2] = {0, 0};
        const auto solve = [&](Context& ctx, auto one) {
          using T = decltype(one);
          Rng r(env.seed, salt);
          const Shape shape{s.B, s.n, 1};
          const Diag<T> h(ctx, r, shape, false, -0.25, 0.25);
          const Buffer<T> u = put<T>(ctx, reward_params(r, RewardForm::diagonal, s.n));
          const std::int64_t N = 2 * s.B * s.n, Bn = s.B * s.n;
          const Buffer<T> b = put<T>(ctx, r.vec(N, -1, 1));
          Buffer<T> x = put<T>(ctx, Vec(N, 0.0));
          const MahalanobisReward<T> rew{RewardForm::diagonal, u.vector()};
          const PgOptions<T> options = pg_options<T>(Transform::none);
          const LinearOperator<T> A = [&](ConstVector<T> in, VectorView<T> out) {
            exact_backward_tangent(ctx, h.head(), rew, options,
                                   DiagGaussian<T>{matrix_view(in.data, s.B, s.n), matrix_view(in.data + Bn, s.B, s.n)},
                                   DiagGaussianGrad<T>{matrix_view(out.data, s.B, s.n), matrix_view(out.data + Bn, s.B, s.n)});
          };
          SolveReport<T> rep;
          const CgOptions<T> cg{.tolerance = f32<T>(1e-5), .max_iterations = 100};
          if (m == Method::cg) rep = conjugate_gradient<T>(ctx, A, b.vector(), x.vector(), cg);
          if (m == Method::cg_normal) rep = conjugate_gradient_normal<T>(ctx, A, b.vector(), x.vector(), cg);
          if (m == Method::neumann) {
            // α = B/9 against eigenvalues in [1.5/B, 8.2/B]: contraction about 0.83 per term.
            const NeumannOptions<T> no{.alpha = f32<T>(static_cast<double>(s.B) / 9.0), .iterations = 60};
            rep = neumann_series<T>(ctx, A, b.vector(), x.vector(), no);
          }
          status[std::is_same_v<T, double>] = to_string(rep.status);
          iterations[std::is_same_v<T, double>] = rep.iterations;
          return get(x);
        };
        const Vec got = solve(env.test, float{});
        const Vec want = solve(env.ref, double{});
        Outcome o = compare_normwise(got, want, 1e-3);
        o.note = fmt::format("rel: ‖x − x_ref‖/‖x_ref‖; {} {} iterations (reference {})", status[0], iterations[0],
                             iterations[1]);
        if (status[0] != status[1] || status[1] != std::string("converged")) {
          o.status = Status::fail;
          o.note = fmt::format("status {} (reference: {})", status[0], status[1]);
        }
        return o;
      });
    }
  }
}

// ================================================================== driver

std::vector<Check> all_checks(Level level, bool self_check) {
  g_self_check = self_check;
  Table t;
  add_distribution_checks(t, level);
  add_reward_checks(t, level);
  add_objective_checks(t, level);
  add_second_order_checks(t, level);
  add_network_checks(t, level);
  add_curvature_checks(t, level);
  add_optim_checks(t, level);
  add_solver_checks(t, level);
  return std::move(t.checks);
}

std::string format_err(double v) {
  if (std::isinf(v)) return "inf";
  if (std::isnan(v)) return "nan";
  return fmt::format("{:.2e}", v);
}

}  // namespace

CLI::App* add_validate_command(CLI::App& app, ValidateOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "validate", "Check every GPU primitive on this machine's GPU against the CPU reference in double (pass/fail table)");
  cmd->add_option("--sizes", o.sizes,
                  "small (tiny shapes and edge cases), medium (+ the paper's sizes) or large (+ C = 2^17, wide MLPs)")
      ->check(CLI::IsMember({"small", "medium", "large"}))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "seed of the inputs and of the Philox draws")->capture_default_str();
  cmd->add_option("--filter", o.filter, "run the checks whose 'primitive/variant/size' matches this regular expression");
  cmd->add_option("--out", o.out, "directory to write validate.json into");
  cmd->add_option("--device", o.device,
                  "auto (the GPU when present, else nothing to check), cuda, or cpu (self-check: the cpu backend in "
                  "float against double)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  return cmd;
}

int run_validate(const ValidateOptions& o) {
  const Level level = o.sizes == "small" ? Level::small : o.sizes == "large" ? Level::large : Level::medium;
  std::regex filter;
  try {
    filter = std::regex(o.filter.empty() ? std::string(".") : o.filter, std::regex::ECMAScript | std::regex::icase);
  } catch (const std::regex_error& e) {
    bad_input(kCmd, "--filter", fmt::format("'{}' is not a valid regular expression ({})", o.filter, e.what()));
  }
  if (!o.out.empty()) check_output_dir(kCmd, "--out", o.out);

  const bool self_check = o.device == "cpu";
  std::vector<Check> checks = all_checks(level, self_check);
  const std::size_t total = checks.size();
  std::erase_if(checks, [&](const Check& c) { return !std::regex_search(c.key(), filter); });
  if (checks.empty()) {
    bad_input(kCmd, "--filter", fmt::format("'{}' matches none of the {} checks of --sizes {}", o.filter, total, o.sizes));
  }

  const bool gpu = cuda_device_available();
  if (o.device == "cuda" && !gpu) {
    bad_input(kCmd, "--device", "no CUDA device is usable on this machine (--device cpu runs the self-check of the cpu backend)");
  }
  if (o.device == "auto" && !gpu) {
    fmt::print(
        "d2r validate: no CUDA device is present on this machine, so there are no GPU kernels to validate; nothing was "
        "run.\n"
        "Run `d2r validate --device cpu` for the self-check of the cpu backend (float against double).\n");
    return 0;
  }
  if (!o.out.empty()) lock_output_dir(kCmd, "--out", o.out);  // after every check of the arguments
  Context test({.backend = self_check ? Backend::cpu : Backend::cuda, .seed = o.seed});
  Context ref({.backend = Backend::cpu, .seed = o.seed});
  Env env{test, ref, o.seed, self_check};

  fmt::print("d2r validate: {} float against cpu double, {} checks (--sizes {}, --seed {}){}\n",
             self_check ? "cpu" : fmt::format("cuda ({})", test.device_name()), checks.size(), o.sizes, o.seed,
             self_check ? fmt::format("\n  self-check of the cpu backend (on a GPU machine run it with --device cuda); "
                                      "categorical heads up to {} classes",
                                      kSelfCheckMaxClasses)
                        : "");
  fmt::print("{:<26} {:<46} {:<18} {:>11} {:>11} {:>9}  {}\n", "primitive", "variant", "size", "max abs err",
             "max rel err", "tolerance", "result");
  const auto started = std::chrono::steady_clock::now();
  std::int64_t passed = 0, failed = 0, skipped = 0;
  nlohmann::json rows = nlohmann::json::array();
  for (const Check& c : checks) {
    Outcome out;
    try {
      out = c.run(env, fnv(c.key()));
    } catch (const std::exception& e) {
      out.status = Status::fail;
      out.abs_err = out.rel_err = kInf;
      out.note = fmt::format("error: {}", e.what());
    }
    (out.status == Status::pass ? passed : out.status == Status::fail ? failed : skipped) += 1;
    const std::string abs = out.abs_text.empty() ? format_err(out.abs_err) : out.abs_text;
    const std::string rel = out.rel_text.empty() ? format_err(out.rel_err) : out.rel_text;
    const std::string tol = out.tol_text.empty() ? fmt::format("{:.0e}", out.tolerance) : out.tol_text;
    fmt::print("{:<26} {:<46} {:<18} {:>11} {:>11} {:>9}  {}{}{}\n", c.primitive, c.variant, c.size, abs, rel, tol,
               status_text(out.status), out.note.empty() ? "" : "  ", out.note);
    std::fflush(stdout);
    rows.push_back({{"primitive", c.primitive},
                    {"variant", c.variant},
                    {"size", c.size},
                    {"max_abs_error", out.abs_err},
                    {"max_rel_error", out.rel_err},
                    {"tolerance", out.tolerance},
                    {"result", status_text(out.status)},
                    {"note", out.note}});
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print("\n{} checks: {} passed, {} failed, {} skipped ({:.2f} s){}\n", checks.size(), passed, failed, skipped,
             seconds, failed > 0 ? " — FAIL" : " — all pass");
  if (!o.out.empty()) {
    nlohmann::json j = run_header("validate", test, "float");
    j["reference"] = "cpu double";
    j["self_check"] = self_check;
    j["sizes"] = o.sizes;
    j["seed"] = o.seed;
    j["filter"] = o.filter;
    j["summary"] = {{"checks", checks.size()}, {"passed", passed}, {"failed", failed}, {"skipped", skipped},
                    {"seconds", seconds}};
    j["rows"] = std::move(rows);
    ensure_directory(o.out);
    write_json_atomic(fs::path(o.out) / "validate.json", j);
    fmt::print("wrote {}\n", (fs::path(o.out) / "validate.json").string());
  }
  return failed > 0 ? 1 : 0;
}

}  // namespace d2r::cli
