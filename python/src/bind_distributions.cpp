// Bindings of distributions.hpp: sample, log_prob, entropy, backward for the three heads, and
// the head / option helpers of heads.hpp.
#include <deque>
#include <mutex>

#include "heads.hpp"

namespace d2rpy {

HeadKind parse_head(std::string_view fn, const std::string& s) {
  if (s == "diag") return HeadKind::diag;
  if (s == "cholesky") return HeadKind::cholesky;
  if (s == "categorical") return HeadKind::categorical;
  bad_argument(fn, "head", "expected 'diag', 'cholesky' or 'categorical', got '" + s + "'");
}

std::string_view intern(const std::string& s) {
  static std::mutex mu;
  static std::deque<std::string> table;
  std::lock_guard<std::mutex> lock(mu);
  for (const std::string& t : table) {
    if (t == s) return t;
  }
  return table.emplace_back(s);
}

HeadIn import_head(Call& c, HeadKind kind, const HeadArrays& h, const std::string& prefix, bool output,
                   double jitter, bool optional) {
  HeadIn in{.kind = kind, .jitter = jitter};
  const auto get = [&](const char* name, const nb::object& obj, bool opt) {
    const std::string_view n = intern(prefix + name);
    return output ? c.output(n, obj, opt) : c.input(n, obj, opt);
  };
  const auto forbid = [&](const char* name, const nb::object& obj) {
    if (!obj.is_none()) {
      bad_argument(c.fn(), intern(prefix + name), "not used by this head; pass None");
    }
  };
  switch (kind) {
    case HeadKind::diag:
      in.a = get("mean", h.mean, optional);
      in.b = get("log_std", h.log_std, optional);
      forbid("tril", h.tril), forbid("logits", h.logits);
      break;
    case HeadKind::cholesky:
      in.a = get("mean", h.mean, optional);
      in.b = get("tril", h.tril, optional);
      forbid("log_std", h.log_std), forbid("logits", h.logits);
      break;
    case HeadKind::categorical:
      in.a = get("logits", h.logits, optional);
      forbid("mean", h.mean), forbid("log_std", h.log_std), forbid("tril", h.tril);
      break;
  }
  if (in.a.present) c.scalar(in.a);
  c.expect_scalar(in.b);
  return in;
}

d2r::DrawKey draw_key(std::string_view fn, std::int64_t step, std::int64_t first_row) {
  if (step < 0) bad_argument(fn, "step", "expected a step >= 0, got " + std::to_string(step));
  if (first_row < 0) bad_argument(fn, "first_row", "expected first_row >= 0, got " + std::to_string(first_row));
  return {.step = static_cast<std::uint64_t>(step), .first_row = first_row};
}

void bind_distributions(nb::module_& m) {
  m.def(
      "sample",
      [](d2r::Context& ctx, const std::string& head, nb::object out, std::int64_t generations, std::int64_t step,
         std::int64_t first_row, D2R_HEAD_PARAMS) {
        Call c("sample", ctx);
        const HeadIn h = import_head(c, parse_head(c.fn(), head), D2R_HEAD_VALUES, "", false, jitter);
        const Arg o = c.output("out", out);
        const d2r::DrawKey key = draw_key(c.fn(), step, first_row);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            using H = std::decay_t<decltype(hd)>;
            if constexpr (is_categorical<H>) {
              const auto ov = c.matrix<std::int32_t>(o);
              nb::gil_scoped_release rel;
              d2r::sample(ctx, hd, generations, key, ov);
            } else {
              c.expect_scalar(o);
              const auto ov = c.matrix<T>(o);
              nb::gil_scoped_release rel;
              d2r::sample(ctx, hd, generations, key, ov);
            }
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("out"), nb::arg("generations"), nb::kw_only(), nb::arg("step") = 0,
      nb::arg("first_row") = 0, D2R_HEAD_KW,
      "Draws `generations` samples per row into `out` ((B*G) x n float, or B x G int32 for categorical).");

  m.def(
      "log_prob",
      [](d2r::Context& ctx, const std::string& head, nb::object samples, nb::object out, D2R_HEAD_PARAMS) {
        Call c("log_prob", ctx);
        const HeadIn h = import_head(c, parse_head(c.fn(), head), D2R_HEAD_VALUES, "", false, jitter);
        const Arg s = c.input("samples", samples), o = c.output("out", out);
        c.expect_scalar(o);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            using H = std::decay_t<decltype(hd)>;
            const auto ov = c.matrix<T>(o);
            if constexpr (is_categorical<H>) {
              const auto sv = c.matrix<const std::int32_t>(s);
              nb::gil_scoped_release rel;
              d2r::log_prob(ctx, hd, sv, ov);
            } else {
              c.expect_scalar(s);
              const auto sv = c.matrix<const T>(s);
              nb::gil_scoped_release rel;
              d2r::log_prob(ctx, hd, sv, ov);
            }
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("samples"), nb::arg("out"), nb::kw_only(), D2R_HEAD_KW,
      "log p(sample_bg | head_b) into `out` (B x G).");

  m.def(
      "entropy",
      [](d2r::Context& ctx, const std::string& head, nb::object out, D2R_HEAD_PARAMS) {
        Call c("entropy", ctx);
        const HeadIn h = import_head(c, parse_head(c.fn(), head), D2R_HEAD_VALUES, "", false, jitter);
        const Arg o = c.output("out", out);
        c.expect_scalar(o);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            const auto ov = c.vector<T>(o);
            nb::gil_scoped_release rel;
            d2r::entropy(ctx, hd, ov);
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("out"), nb::kw_only(), D2R_HEAD_KW, "Entropy of each row into `out` (B).");

  m.def(
      "backward",
      [](d2r::Context& ctx, const std::string& head, nb::object samples, nb::object d_log_prob, nb::object d_entropy,
         D2R_HEAD_PARAMS, D2R_GRAD_PARAMS) {
        Call c("backward", ctx);
        const HeadKind kind = parse_head(c.fn(), head);
        const HeadIn h = import_head(c, kind, D2R_HEAD_VALUES, "", false, jitter);
        const Arg s = c.input("samples", samples, true), dl = c.input("d_log_prob", d_log_prob, true),
                  de = c.input("d_entropy", d_entropy, true);
        c.expect_scalar(dl), c.expect_scalar(de);
        const HeadIn g = import_head(c, kind, D2R_GRAD_VALUES, "grad_", true);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            using H = std::decay_t<decltype(hd)>;
            const auto gv = grad_of<T>(c, hd, g);
            const auto dlv = c.matrix<const T>(dl);
            const auto dev = c.vector<const T>(de);
            if constexpr (is_categorical<H>) {
              const auto sv = c.matrix<const std::int32_t>(s);
              nb::gil_scoped_release rel;
              d2r::backward(ctx, hd, sv, dlv, dev, gv);
            } else {
              c.expect_scalar(s);
              const auto sv = c.matrix<const T>(s);
              nb::gil_scoped_release rel;
              d2r::backward(ctx, hd, sv, dlv, dev, gv);
            }
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("samples").none(), nb::arg("d_log_prob").none(),
      nb::arg("d_entropy").none(), nb::kw_only(), D2R_HEAD_KW, D2R_GRAD_KW,
      "Vector-Jacobian product of log_prob and entropy into the grad_* arrays (overwritten).");
}

}  // namespace d2rpy
