#pragma once
// Policy heads, rewards and options as the Python functions receive them: one function per
// primitive, the head chosen by name ("diag", "cholesky", "categorical") and its arrays given by
// keyword (mean/log_std, mean/tril, logits), its gradient or tangent arrays likewise.
#include <string>

#include "common.hpp"

namespace d2rpy {

enum class HeadKind { diag, cholesky, categorical };
HeadKind parse_head(std::string_view fn, const std::string& s);

/// The arrays of a head (or of its gradient / tangent).
struct HeadArrays {
  nb::object mean = nb::none(), log_std = nb::none(), tril = nb::none(), logits = nb::none();
};

/// An imported head: `a` is mean or logits, `b` log_std or tril (absent for categorical).
struct HeadIn {
  HeadKind kind;
  Arg a, b;
  double jitter = 1e-5;
};

/// Imports the head's arrays (inputs, or outputs for gradients), names prefixed by `prefix`
/// ("", "grad_", "tangent_"); fixes the call's scalar type from the first array.
HeadIn import_head(Call& c, HeadKind kind, const HeadArrays& h, const std::string& prefix, bool output,
                   double jitter = 1e-5, bool optional = false);

/// Names with a prefix must outlive the call: they are kept in a static table.
std::string_view intern(const std::string& s);

template <class T>
struct HeadOf;

template <class T, class F>
void with_head(Call& c, const HeadIn& h, F&& f) {
  switch (h.kind) {
    case HeadKind::diag: f(d2r::DiagGaussian<T>{c.matrix<const T>(h.a), c.matrix<const T>(h.b)}); return;
    case HeadKind::cholesky:
      f(d2r::CholeskyGaussian<T>{c.matrix<const T>(h.a), c.matrix<const T>(h.b), static_cast<T>(h.jitter)});
      return;
    case HeadKind::categorical: f(d2r::Categorical<T>{c.matrix<const T>(h.a)}); return;
  }
}

template <class T>
d2r::DiagGaussianGrad<T> grad_of(Call& c, const d2r::DiagGaussian<T>&, const HeadIn& g) {
  return {c.matrix<T>(g.a), c.matrix<T>(g.b)};
}
template <class T>
d2r::CholeskyGaussianGrad<T> grad_of(Call& c, const d2r::CholeskyGaussian<T>&, const HeadIn& g) {
  return {c.matrix<T>(g.a), c.matrix<T>(g.b)};
}
template <class T>
d2r::CategoricalGrad<T> grad_of(Call& c, const d2r::Categorical<T>&, const HeadIn& g) {
  return {c.matrix<T>(g.a)};
}
template <class T>
d2r::DiagGaussian<T> tangent_of(Call& c, const d2r::DiagGaussian<T>&, const HeadIn& t) {
  return {c.matrix<const T>(t.a), c.matrix<const T>(t.b)};
}
template <class T>
d2r::CholeskyGaussian<T> tangent_of(Call& c, const d2r::CholeskyGaussian<T>&, const HeadIn& t) {
  return {c.matrix<const T>(t.a), c.matrix<const T>(t.b), T(0)};
}
template <class T>
d2r::Categorical<T> tangent_of(Call& c, const d2r::Categorical<T>&, const HeadIn& t) {
  return {c.matrix<const T>(t.a)};
}

template <class H>
inline constexpr bool is_categorical = false;
template <class T>
inline constexpr bool is_categorical<d2r::Categorical<T>> = true;

/// The data a head scores: continuous targets for the Gaussian heads, class labels for the
/// categorical head (the other of targets= / labels= must be None).
template <class T, class H>
auto data_of(Call& c, const H&, const nb::object& targets, const nb::object& labels) {
  if constexpr (is_categorical<H>) {
    if (!targets.is_none()) bad_argument(c.fn(), "targets", "the categorical head takes labels=, not targets=");
    return c.vector<const std::int32_t>(c.input("labels", labels));
  } else {
    if (!labels.is_none()) bad_argument(c.fn(), "labels", "a Gaussian head takes targets=, not labels=");
    const Arg t = c.input("targets", targets);
    c.expect_scalar(t);
    return c.matrix<const T>(t);
  }
}

/// Options of the objectives, as one Python object (d2r.PgOptions).
struct PgOptionsPy {
  double entropy_weight = 0;
  std::string transform = "none";
  double rbf_gamma = 1;
  double standardize_epsilon = 1e-6;
  double log_prob_clip = 0;
  bool per_dimension_mean = false;
  std::int64_t normaliser_rows = 0;
};

template <class T>
d2r::TransformOptions<T> to_transform(std::string_view fn, const PgOptionsPy& o) {
  return {.kind = parse_transform(fn, o.transform), .rbf_gamma = static_cast<T>(o.rbf_gamma),
          .standardize_epsilon = static_cast<T>(o.standardize_epsilon)};
}
template <class T>
d2r::PgOptions<T> to_pg(std::string_view fn, const PgOptionsPy& o) {
  return {.entropy_weight = static_cast<T>(o.entropy_weight), .transform = to_transform<T>(fn, o),
          .log_prob_clip = static_cast<T>(o.log_prob_clip), .per_dimension_mean = o.per_dimension_mean,
          .normaliser_rows = o.normaliser_rows};
}

/// Draw key from Python ints (step >= 0; the library checks step < 2^32).
d2r::DrawKey draw_key(std::string_view fn, std::int64_t step, std::int64_t first_row);

}  // namespace d2rpy

// Keyword parameters of a head, of its gradient and of its tangent, shared by every binding.
#define D2R_HEAD_PARAMS nb::object mean, nb::object log_std, nb::object tril, nb::object logits, double jitter
#define D2R_HEAD_KW                                                                                          \
  nb::arg("mean") = nb::none(), nb::arg("log_std") = nb::none(), nb::arg("tril") = nb::none(),             \
  nb::arg("logits") = nb::none(), nb::arg("jitter") = 1e-5
#define D2R_HEAD_VALUES (::d2rpy::HeadArrays{mean, log_std, tril, logits})
#define D2R_GRAD_PARAMS nb::object grad_mean, nb::object grad_log_std, nb::object grad_tril, nb::object grad_logits
#define D2R_GRAD_KW                                                                                          \
  nb::arg("grad_mean") = nb::none(), nb::arg("grad_log_std") = nb::none(), nb::arg("grad_tril") = nb::none(), \
  nb::arg("grad_logits") = nb::none()
#define D2R_GRAD_VALUES (::d2rpy::HeadArrays{grad_mean, grad_log_std, grad_tril, grad_logits})
#define D2R_TANGENT_PARAMS \
  nb::object tangent_mean, nb::object tangent_log_std, nb::object tangent_tril, nb::object tangent_logits
#define D2R_TANGENT_KW                                                                                 \
  nb::arg("tangent_mean") = nb::none(), nb::arg("tangent_log_std") = nb::none(),                      \
  nb::arg("tangent_tril") = nb::none(), nb::arg("tangent_logits") = nb::none()
#define D2R_TANGENT_VALUES (::d2rpy::HeadArrays{tangent_mean, tangent_log_std, tangent_tril, tangent_logits})
