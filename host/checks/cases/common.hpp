#pragma once
// Shared by the case files of host/checks/cases/ (moved from host/cli/validate_command.cpp):
// deterministic float-representable inputs, the three heads' problems, sentinel-guarded outputs
// (Out<T>), the table the cases are added to, and the size classes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

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
#include "host/checks/checks.hpp"
#include "host/checks/work.hpp"

namespace d2r::checks {

inline constexpr double kInf = std::numeric_limits<double>::infinity();
inline constexpr DrawKey kKey{.step = 17, .first_row = 5};

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
inline Buffer<std::int32_t> put_idx(Context& ctx, const Idx& v) { return Buffer<std::int32_t>(ctx, std::span<const std::int32_t>(v)); }
/// A hyperparameter with the same (float) value on both sides.
template <class T>
T f32(double v) {
  return static_cast<T>(static_cast<float>(v));
}

inline std::int64_t packed(std::int64_t n) { return n * (n + 1) / 2; }

/// Reward parameters of `form` in `dim` dimensions, dyadic; a full R has a positive diagonal.
inline Vec reward_params(Rng& r, RewardForm form, std::int64_t dim) {
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
inline Vec logits_values(Rng& r, std::int64_t B, std::int64_t C) {
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
inline Idx unmasked_draws(Rng& r, const Vec& logits, std::int64_t B, std::int64_t C, std::int64_t G) {
  Idx k(static_cast<std::size_t>(B * G));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t g = 0; g < G; ++g) {
      std::int32_t c = r.index(C);
      while (logits[b * C + c] == -kInf) c = static_cast<std::int32_t>((c + 1) % C);
      k[b * G + g] = c;
    }
  return k;
}

inline Idx indices(Rng& r, std::int64_t count, std::int64_t C) {
  Idx k(static_cast<std::size_t>(count));
  for (auto& v : k) v = r.index(C);
  return k;
}

inline const char* form_name(RewardForm f) {
  return f == RewardForm::scalar ? "scalar" : f == RewardForm::diagonal ? "diagonal" : "full";
}


// ================================================================== guarded outputs

/// The bits an Out<T> is filled with: a quiet NaN with a recognisable payload (float 0x7fc0dead;
/// double 0x7ff80000deadbeef; a 4- or 8-byte integer holds the same bits), as tests/test_utils.hpp.
template <class T>
inline constexpr std::uint64_t kSentinelBits = sizeof(T) == 8 ? 0x7ff80000deadbeefULL : 0x7fc0deadULL;

template <class T>
T sentinel() {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  T v;
  if constexpr (sizeof(T) == 8) {
    const std::uint64_t bits = kSentinelBits<T>;
    std::memcpy(&v, &bits, sizeof(T));
  } else {
    const auto bits = static_cast<std::uint32_t>(kSentinelBits<T>);
    std::memcpy(&v, &bits, sizeof(T));
  }
  return v;
}
/// Compared bit for bit, in the element's own type (a float sentinel widened to double is none).
template <class T>
bool is_sentinel(T v) {
  const T s = sentinel<T>();
  return std::memcmp(&v, &s, sizeof(T)) == 0;
}

/// An array in a backend's memory with kPad sentinel elements before and after it (ggml's and
/// tests/test_utils.hpp's GuardedMatrix guard). Made with a size, its elements hold the sentinel too
/// and must all be written; made with values (an input, an output updated in place, a gradient
/// accumulated into), only the padding is checked. Made with rows and cols, it is a matrix whose
/// rows are kGap sentinels apart (row_stride = cols + kGap): strided views, the gaps guarded too.
/// to_host() throws d2r::Error naming the array when the padding changed (an out-of-bounds
/// write) or an element was never written; run_case reports the case as failed.
template <class T>
class Out {
 public:
  static constexpr std::int64_t kPad = 64;
  static constexpr std::int64_t kGap = 3;
  Out(Context& ctx, std::int64_t n, std::string name = "output") : Out(ctx, 1, n, n, {}, std::move(name)) {}
  Out(Context& ctx, const Vec& values, std::string name = "output")
      : Out(ctx, 1, static_cast<std::int64_t>(values.size()), static_cast<std::int64_t>(values.size()), converted(values),
            std::move(name)) {}
  /// A strided rows x cols matrix, to be written (no values) or holding `values` (packed rows).
  Out(Context& ctx, std::int64_t rows, std::int64_t cols, const Vec& values, std::string name)
      : Out(ctx, rows, cols, cols + kGap, converted(values), std::move(name)) {}
  [[nodiscard]] MatrixView<T> matrix(std::int64_t rows, std::int64_t cols) { return {data(), rows, cols, stride(rows, cols)}; }
  [[nodiscard]] MatrixView<const T> matrix(std::int64_t rows, std::int64_t cols) const {
    return {data(), rows, cols, stride(rows, cols)};
  }
  [[nodiscard]] VectorView<T> vector() { return {data(), packed_size()}; }
  [[nodiscard]] VectorView<const T> vector() const { return {data(), packed_size()}; }
  [[nodiscard]] T* data() { return storage_.data() + kPad; }
  [[nodiscard]] const T* data() const { return storage_.data() + kPad; }
  [[nodiscard]] std::int64_t size() const { return rows_ * cols_; }
  /// Every element, padding and logical, still holds the sentinel (an output that must not be
  /// written, e.g. an empty row_reward's would-be buffer).
  [[nodiscard]] bool untouched() const {
    const std::vector<T> all = storage_.to_host();
    return std::all_of(all.begin(), all.end(), [](T v) { return is_sentinel(v); });
  }
  /// The logical elements (packed rows), after checking the padding and gaps (and, when made
  /// without values, that every element was written).
  [[nodiscard]] std::vector<T> to_host() const {
    const std::vector<T> all = storage_.to_host();
    std::vector<T> out(static_cast<std::size_t>(rows_ * cols_));
    std::int64_t outside = 0, unwritten = 0, first = -1;
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(all.size()); ++i) {
      const std::int64_t j = i - kPad;
      const bool logical = j >= 0 && j < rows_ * stride_ && (j % stride_) < cols_;
      if (!logical) {
        outside += is_sentinel(all[i]) ? 0 : 1;
        continue;
      }
      const std::int64_t k = (j / stride_) * cols_ + j % stride_;
      if (must_write_ && is_sentinel(all[i]) && unwritten++ == 0) first = k;
      out[static_cast<std::size_t>(k)] = all[i];
    }
    if (outside > 0)
      throw Error(ErrorKind::invalid_argument, name_,
                  fmt::format("{} elements outside the {} logical ones were written (out of bounds)", outside, rows_ * cols_));
    if (unwritten > 0)
      throw Error(ErrorKind::invalid_argument, name_,
                  fmt::format("{} of {} elements never written (the first: [{}])", unwritten, rows_ * cols_, first));
    return out;
  }

 private:
  Out(Context& ctx, std::int64_t rows, std::int64_t cols, std::int64_t stride, std::vector<T> values, std::string name)
      : rows_(rows), cols_(cols), stride_(stride), must_write_(values.empty() && rows * cols > 0), name_(std::move(name)),
        storage_(ctx, static_cast<std::size_t>(rows * stride + 2 * kPad)) {
    std::vector<T> init(static_cast<std::size_t>(rows * stride + 2 * kPad), sentinel<T>());
    for (std::int64_t r = 0; r < rows && !values.empty(); ++r)
      std::copy_n(values.begin() + r * cols, cols, init.begin() + kPad + r * stride);
    storage_.copy_from_host(std::span<const T>(init));
  }
  static std::vector<T> converted(const Vec& v) {
    std::vector<T> t(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) t[i] = static_cast<T>(v[i]);
    return t;
  }
  /// Packed (1-D) arrays reshape freely; a strided matrix only as itself.
  [[nodiscard]] std::int64_t stride(std::int64_t rows, std::int64_t cols) const {
    if (stride_ == cols_ && rows * cols == rows_ * cols_) return cols;
    if (rows != rows_ || cols != cols_)
      throw Error(ErrorKind::invalid_argument, name_, fmt::format("a {}x{} strided matrix viewed as {}x{}", rows_, cols_, rows, cols));
    return stride_;
  }
  [[nodiscard]] std::int64_t packed_size() const {
    if (stride_ != cols_ && rows_ > 1) throw Error(ErrorKind::invalid_argument, name_, "a strided matrix viewed as a vector");
    return rows_ * cols_;
  }
  std::int64_t rows_, cols_, stride_;
  bool must_write_;
  std::string name_;
  Buffer<T> storage_;
};

template <class T>
Vec get(const Out<T>& b) {
  const std::vector<T> h = b.to_host();
  return Vec(h.begin(), h.end());
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
  /// A gradient (output, accumulated into: zeros, sentinel-padded).
  struct OutPair {
    Out<T> a, b;
  };
  OutPair zeros(Context& ctx) const { return {Out<T>(ctx, Vec(B * n, 0.0), "grad_mean"), Out<T>(ctx, Vec(S * n, 0.0), "grad_log_std")}; }
  DiagGaussian<T> as_head(const Pair& p) const { return {p.a.matrix(B, n), p.b.matrix(S, n)}; }
  DiagGaussianGrad<T> as_grad(OutPair& p) const { return {p.a.matrix(B, n), p.b.matrix(S, n)}; }
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
  struct OutPair {
    Out<T> a, b;
  };
  OutPair zeros(Context& ctx) const { return {Out<T>(ctx, Vec(B * n, 0.0), "grad_mean"), Out<T>(ctx, Vec(S * P, 0.0), "grad_tril")}; }
  CholeskyGaussian<T> as_head(const Pair& p) const { return {p.a.matrix(B, n), p.b.matrix(S, P), T(0)}; }
  CholeskyGaussianGrad<T> as_grad(OutPair& p) const { return {p.a.matrix(B, n), p.b.matrix(S, P)}; }
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
  CategoricalGrad<T> as_grad(Out<T>& p) const { return {p.matrix(B, C)}; }
};


// ================================================================== the table

/// The cases of one registry build: each check is a table entry (primitive, variant, size,
/// tolerance, and one generic lambda that builds its inputs from a seeded generator and runs the
/// primitive in scalar type T on a context); the driver runs the lambda in float on the tested
/// backend and in double on the cpu backend and compares.
class Table {
 public:
  Table(Level level, bool self_check) : level(level), self_check(self_check) {}
  /// A check whose generic lambda f(Context&, T{}, Rng&) -> Outputs runs in float on the tested
  /// backend and in double on the reference; both get the same inputs.
  /// Returns the case, whose work_model the caller sets when its lambda marks a call with timed().
  template <class F>
  Case& add(std::string primitive, std::string variant, std::string size, Tol tol, F f) {
    cases.push_back({family, std::move(primitive), std::move(variant), std::move(size), tol,
                     [tol, f](Env& env, std::uint64_t salt) {
                       Rng rg(env.seed, salt);
                       const Outputs got = f(env.test, float{}, rg);
                       Rng rr(env.seed, salt);
                       const Outputs want = f(env.ref, double{}, rr);
                       return compare(got, want, tol);
                     },
                     [f](Context& ctx, std::uint64_t seed, std::uint64_t salt) {
                       Rng r(seed, salt);
                       (void)f(ctx, float{}, r);
                     }});
    return cases.back();
  }
  /// A case with its own comparison; returns it (a caller that can time it sets build and work_model).
  Case& add_custom(std::string primitive, std::string variant, std::string size, Tol tol,
                   std::function<Outcome(Env&, std::uint64_t)> f) {
    cases.push_back({family, std::move(primitive), std::move(variant), std::move(size), tol, std::move(f), {}, {}});
    return cases.back();
  }
  Level level;
  bool self_check;
  std::string family;  ///< stamped on the cases added next
  std::vector<Case> cases;
};

template <class S>
std::vector<S> upto(Level level, std::vector<S> small, std::vector<S> medium, std::vector<S> large) {
  std::vector<S> out = std::move(small);
  if (level >= Level::medium) out.insert(out.end(), medium.begin(), medium.end());
  if (level >= Level::large) out.insert(out.end(), large.begin(), large.end());
  return out;
}

inline std::string gauss_size(Shape s) { return fmt::format("B={} n={} G={}", s.B, s.n, s.G); }
inline std::string cat_size(Shape s) { return fmt::format("B={} C={} G={}", s.B, s.n, s.G); }

inline std::vector<Shape> diag_shapes(Level l) {
  return upto<Shape>(l, {{1, 1, 1}, {7, 3, 5}}, {{256, 17, 5}, {33, 64, 16}}, {{4096, 64, 16}, {16384, 17, 5}});
}
inline std::vector<Shape> chol_shapes(Level l) {
  return upto<Shape>(l, {{1, 1, 1}, {5, 4, 3}}, {{128, 17, 5}, {7, 64, 50}}, {{1024, 64, 5}});
}
/// Categorical heads up to this many classes in the cpu self-check: above, the cpu float path's
/// sequential sums over 2^15..2^18 probabilities round by about √C·ε of their total, beyond the
/// tolerances the GPU kernels (tree reductions) are held to; the double reference is unaffected.
inline std::vector<Shape> without_large_vocabularies(std::vector<Shape> shapes, bool self_check) {
  if (self_check) std::erase_if(shapes, [](const Shape& s) { return s.n > kSelfCheckMaxClasses; });
  return shapes;
}
inline std::vector<Shape> cat_shapes(Level l, bool self_check) {
  return without_large_vocabularies(upto<Shape>(l, {{1, 2, 1}, {7, 10, 50}}, {{64, 1000, 50}, {16, 4096, 300}},
                                                {{8, 32000, 50}, {2, 131072, 300}, {1, 262144, 5}}),
                                    self_check);
}
/// Objectives that draw categorical samples inside: few draws per row at large vocabularies, where
/// float rounding moves about one draw in a hundred across a CDF boundary (such rows are left out).
inline std::vector<Shape> cat_objective_shapes(Level l, bool self_check) {
  return without_large_vocabularies(
      upto<Shape>(l, {{1, 2, 1}, {7, 10, 50}}, {{64, 1000, 50}, {4, 4096, 20}}, {{16, 32000, 5}, {8, 131072, 2}}), self_check);
}
/// One-hot rewards (the full form has C(C+1)/2 parameters: C <= 256).
inline std::vector<Shape> onehot_shapes(Level l) {
  return upto<Shape>(l, {{7, 10, 5}}, {{256, 100, 5}}, {{4096, 256, 16}});
}
inline std::vector<RewardForm> forms_for(std::int64_t dims) {
  if (dims <= kMaxOneHotFullClasses) return {RewardForm::scalar, RewardForm::diagonal, RewardForm::full};
  return {RewardForm::scalar, RewardForm::diagonal};
}

template <class T>
PgOptions<T> pg_options(Transform kind, bool per_dim = false, double eps = 1e-3) {
  return {.entropy_weight = f32<T>(0.3),
          .transform = {.kind = kind, .rbf_gamma = f32<T>(0.5), .standardize_epsilon = f32<T>(eps)},
          .per_dimension_mean = per_dim};
}

/// Draws of the categorical sampler with the objectives' key: the rows whose draws agree in float
/// and double are the comparable ones.
template <class T>
Output cat_draws(Context& ctx, const Cat<T>& h) {
  Out<std::int32_t> k(ctx, h.B * h.G, "k");
  sample(ctx, h.head(), h.G, kKey, k.matrix(h.B, h.G));
  const Idx v = k.to_host();
  return {"draws", Vec(v.begin(), v.end()), h.B, true};
}
/// One case per named output of f, each with its own tolerance (a former test's per-output
/// D2R_EXPECT_CLOSE): the variant gets " [output]".
template <class F>
void add_per_output(Table& t, const std::string& primitive, const std::string& variant, const std::string& size,
                    const std::vector<std::pair<std::string, Tol>>& outputs, F f, const WorkModel& work = {}) {
  for (const auto& [name, tol] : outputs) {
    t.add(primitive, variant + " [" + name + "]", size, tol, [f, name = name](Context& ctx, auto one, Rng& r) -> Outputs {
      Outputs kept;
      for (Output& o : f(ctx, one, r))
        if (o.name == name) kept.push_back(std::move(o));
      if (kept.empty()) throw Error(ErrorKind::invalid_argument, name, "the case has no such output");
      return kept;
    }).work_model = work;
  }
}

/// A log_prob_clip for a surrogate (moved from tests/test_utils.hpp): in a gap of |pd·log p| over the
/// double reference's own draws, wider than float rounding, searched from the 70 % quantile
/// upwards, else downwards (down to the gap between 0 and the smallest value), so that some draws
/// clip and no draw lies within rounding of ±clip. 0 when there is no such gap. pd: 1/n with
/// per_dimension_mean, else 1.
inline double pick_clip(const Vec& log_prob, double pd) {
  Vec x{0.0};
  x.reserve(log_prob.size() + 1);
  for (double v : log_prob) x.push_back(std::abs(pd * v));
  if (x.size() < 2) return 0;
  std::sort(x.begin(), x.end());
  const std::size_t start = std::max<std::size_t>(1, x.size() * 7 / 10);
  const double margin = 1e-4 + 2e-5 * x[start];
  for (std::size_t i = start; i < x.size(); ++i)
    if (x[i] - x[i - 1] > 2 * margin) return 0.5 * (x[i - 1] + x[i]);
  for (std::size_t i = start - 1; i >= 1; --i)
    if (x[i] - x[i - 1] > 2 * margin) return 0.5 * (x[i - 1] + x[i]);
  return 0;
}

/// Sets a context's value checks for a scope (cases that feed inputs full checks reject, such as a
/// reward of all zeros under standardize), restoring them after.
class ValueChecksScope {
 public:
  ValueChecksScope(Context& ctx, ValueChecks checks) : ctx_(ctx), saved_(ctx.value_checks()) { ctx.set_value_checks(checks); }
  ~ValueChecksScope() { ctx_.set_value_checks(saved_); }
  ValueChecksScope(const ValueChecksScope&) = delete;
  ValueChecksScope& operator=(const ValueChecksScope&) = delete;

 private:
  Context& ctx_;
  ValueChecks saved_;
};

/// A work formula's result as a case's stated work model.
inline WorkModel stated(Work w) { return {w.bytes, w.flops, {}}; }

/// D2R_EXPECT_CLOSE(got, want, rtol, atol), |got − want| <= atol + rtol·|want|, as a Tol.
inline Tol close(double rtol, double atol) { return {rtol, 0.0, atol / rtol}; }

/// A property every run must have (masked classes' gradients exactly 0, ...): a failed case when not.
inline void require(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorKind::invalid_argument, "check", what);
}

/// got − first, element by element: 0 on both sides when a rerun gives the same bits.
inline Vec difference(const Vec& got, const Vec& first) {
  Vec d(got.size());
  for (std::size_t i = 0; i < got.size(); ++i) d[i] = got[i] - first[i];
  return d;
}

inline std::string net_name(const MlpSpec& spec) { return Mlp(spec).describe(); }

// One function per family (cases/<family>.cpp), called by all_cases in this order.
void add_distribution_checks(Table& t, Level level);
void add_reward_checks(Table& t, Level level);
void add_objective_checks(Table& t, Level level);
void add_second_order_checks(Table& t, Level level);
void add_mixed_product_checks(Table& t, Level level);  // family second_order
void add_cholesky_objective_checks(Table& t, Level level);  // family objectives (cases/cholesky_objectives.cpp)
void add_categorical_objective_checks(Table& t, Level level);  // family objectives (cases/categorical_objectives.cpp)
void add_network_checks(Table& t, Level level);
void add_curvature_checks(Table& t, Level level);
void add_optim_checks(Table& t, Level level);
void add_solver_checks(Table& t, Level level);

}  // namespace d2r::checks
