// Bindings of objectives.hpp: rewards, transforms, the fused and unfused PG surrogate, the
// pathwise objective and the exact-expectation objective; and the PgOptions class.
#include "heads.hpp"

namespace d2rpy {

namespace {

/// The reward: its form, and its parameters (which fix nothing: the head fixes the scalar type).
struct RewardIn {
  d2r::RewardForm form;
  Arg params;
};
RewardIn import_reward(Call& c, const std::string& form, const nb::object& params) {
  RewardIn r{parse_reward_form(c.fn(), form), c.input("reward_params", params)};
  return r;
}
template <class T>
d2r::MahalanobisReward<T> reward_of(Call& c, const RewardIn& r) {
  c.expect_scalar(r.params);
  return {r.form, c.vector<const T>(r.params)};
}

template <class T>
d2r::ObjectiveRows<T> rows_of(Call& c, const nb::object& row_loss, const nb::object& row_reward) {
  const Arg l = c.output("row_loss", row_loss), r = c.output("row_reward", row_reward, true);
  c.expect_scalar(l), c.expect_scalar(r);
  return {c.vector<T>(l), c.vector<T>(r)};
}

}  // namespace

void bind_objectives(nb::module_& m) {
  nb::class_<PgOptionsPy>(m, "PgOptions",
                          "Options of the PG objectives (d2r::PgOptions): entropy_weight λ, the advantage transform "
                          "('none', 'normalize', 'rbf', 'leave_one_out', 'standardize') with rbf_gamma and "
                          "standardize_epsilon, log_prob_clip (0: off), per_dimension_mean, normaliser_rows (0: B).")
      .def(
          "__init__",
          [](PgOptionsPy* self, double entropy_weight, const std::string& transform, double rbf_gamma,
             double standardize_epsilon, double log_prob_clip, bool per_dimension_mean, std::int64_t normaliser_rows) {
            parse_transform("PgOptions", transform);
            new (self) PgOptionsPy{entropy_weight, transform, rbf_gamma, standardize_epsilon, log_prob_clip,
                                   per_dimension_mean, normaliser_rows};
          },
          nb::kw_only(), nb::arg("entropy_weight") = 0.0, nb::arg("transform") = "none", nb::arg("rbf_gamma") = 1.0,
          nb::arg("standardize_epsilon") = 1e-6, nb::arg("log_prob_clip") = 0.0, nb::arg("per_dimension_mean") = false,
          nb::arg("normaliser_rows") = 0)
      .def_rw("entropy_weight", &PgOptionsPy::entropy_weight)
      .def_rw("transform", &PgOptionsPy::transform)
      .def_rw("rbf_gamma", &PgOptionsPy::rbf_gamma)
      .def_rw("standardize_epsilon", &PgOptionsPy::standardize_epsilon)
      .def_rw("log_prob_clip", &PgOptionsPy::log_prob_clip)
      .def_rw("per_dimension_mean", &PgOptionsPy::per_dimension_mean)
      .def_rw("normaliser_rows", &PgOptionsPy::normaliser_rows)
      .def("__repr__", [](const PgOptionsPy& o) {
        return "PgOptions(entropy_weight=" + std::to_string(o.entropy_weight) + ", transform='" + o.transform +
               "', log_prob_clip=" + std::to_string(o.log_prob_clip) + ")";
      });

  m.def(
      "reward",
      [](d2r::Context& ctx, const std::string& reward_form, nb::object reward_params, nb::object samples,
         nb::object out, nb::object targets, nb::object labels, std::int64_t classes) {
        Call c("reward", ctx);
        const RewardIn r = import_reward(c, reward_form, reward_params);
        const Arg s = c.input("samples", samples), o = c.output("out", out);
        dispatch(c.scalar(o), [&]<class T>() {
          const auto rw = reward_of<T>(c, r);
          const auto ov = c.matrix<T>(o);
          if (s.dtype() == nb::dtype<std::int32_t>()) {
            const auto sv = c.matrix<const std::int32_t>(s);
            const auto lv = c.vector<const std::int32_t>(c.input("labels", labels));
            nb::gil_scoped_release rel;
            d2r::reward(ctx, rw, sv, lv, classes, ov);
          } else {
            c.expect_scalar(s);
            const Arg t = c.input("targets", targets);
            c.expect_scalar(t);
            const auto sv = c.matrix<const T>(s);
            const auto tv = c.matrix<const T>(t);
            nb::gil_scoped_release rel;
            d2r::reward(ctx, rw, sv, tv, ov);
          }
        });
      },
      nb::arg("ctx"), nb::arg("reward_form"), nb::arg("reward_params"), nb::arg("samples"), nb::arg("out"),
      nb::kw_only(), nb::arg("targets") = nb::none(), nb::arg("labels") = nb::none(), nb::arg("classes") = 0,
      "Mahalanobis rewards of the samples into `out` (B x G): float samples with targets=, or int32 class "
      "samples with labels= and classes=.");

  m.def(
      "reward_backward",
      [](d2r::Context& ctx, const std::string& reward_form, nb::object reward_params, nb::object samples,
         nb::object d_reward, nb::object grad_params, nb::object targets, nb::object labels, std::int64_t classes) {
        Call c("reward_backward", ctx);
        const RewardIn r = import_reward(c, reward_form, reward_params);
        const Arg s = c.input("samples", samples), d = c.input("d_reward", d_reward),
                  g = c.output("grad_params", grad_params);
        dispatch(c.scalar(d), [&]<class T>() {
          const auto rw = reward_of<T>(c, r);
          c.expect_scalar(g);
          const auto dv = c.matrix<const T>(d);
          const auto gv = c.vector<T>(g);
          if (s.dtype() == nb::dtype<std::int32_t>()) {
            const auto sv = c.matrix<const std::int32_t>(s);
            const auto lv = c.vector<const std::int32_t>(c.input("labels", labels));
            nb::gil_scoped_release rel;
            d2r::reward_backward(ctx, rw, sv, lv, classes, dv, gv);
          } else {
            c.expect_scalar(s);
            const Arg t = c.input("targets", targets);
            c.expect_scalar(t);
            const auto sv = c.matrix<const T>(s);
            const auto tv = c.matrix<const T>(t);
            nb::gil_scoped_release rel;
            d2r::reward_backward(ctx, rw, sv, tv, dv, gv);
          }
        });
      },
      nb::arg("ctx"), nb::arg("reward_form"), nb::arg("reward_params"), nb::arg("samples"), nb::arg("d_reward"),
      nb::arg("grad_params"), nb::kw_only(), nb::arg("targets") = nb::none(), nb::arg("labels") = nb::none(),
      nb::arg("classes") = 0, "Gradient of Σ d_reward·r with respect to the reward parameters into grad_params.");

  m.def(
      "transform_rewards",
      [](d2r::Context& ctx, nb::object rewards, nb::object advantages, const PgOptionsPy& options) {
        Call c("transform_rewards", ctx);
        const Arg r = c.input("rewards", rewards), a = c.output("advantages", advantages);
        dispatch(c.scalar(r), [&]<class T>() {
          c.expect_scalar(a);
          const auto t = to_transform<T>(c.fn(), options);
          const auto rv = c.matrix<const T>(r);
          const auto av = c.matrix<T>(a);
          nb::gil_scoped_release rel;
          d2r::transform_rewards(ctx, t, rv, av);
        });
      },
      nb::arg("ctx"), nb::arg("rewards"), nb::arg("advantages"), nb::arg("options"),
      "advantages = T(rewards) row by row (options.transform).");

  m.def(
      "pg_surrogate",
      [](d2r::Context& ctx, const std::string& head, const std::string& reward_form, nb::object reward_params,
         std::int64_t generations, const PgOptionsPy& options, nb::object row_loss, nb::object row_reward,
         nb::object targets, nb::object labels, std::int64_t step, std::int64_t first_row, D2R_HEAD_PARAMS,
         D2R_GRAD_PARAMS) {
        Call c("pg_surrogate", ctx);
        const HeadKind kind = parse_head(c.fn(), head);
        const HeadIn h = import_head(c, kind, D2R_HEAD_VALUES, "", false, jitter);
        const RewardIn r = import_reward(c, reward_form, reward_params);
        const HeadIn g = import_head(c, kind, D2R_GRAD_VALUES, "grad_", true);
        const d2r::DrawKey key = draw_key(c.fn(), step, first_row);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            const auto data = data_of<T>(c, hd, targets, labels);
            const auto rw = reward_of<T>(c, r);
            const auto rows = rows_of<T>(c, row_loss, row_reward);
            const auto gv = grad_of<T>(c, hd, g);
            const auto opt = to_pg<T>(c.fn(), options);
            nb::gil_scoped_release rel;
            d2r::pg_surrogate(ctx, hd, data, rw, generations, opt, key, rows, gv);
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("reward_form"), nb::arg("reward_params"), nb::arg("generations"),
      nb::arg("options"), nb::arg("row_loss"), nb::arg("row_reward").none() = nb::none(), nb::kw_only(),
      nb::arg("targets") = nb::none(), nb::arg("labels") = nb::none(), nb::arg("step") = 0, nb::arg("first_row") = 0,
      D2R_HEAD_KW, D2R_GRAD_KW,
      "Fused REINFORCE surrogate: per-row loss (already divided by N) and the gradient with respect to the head.");

  m.def(
      "pg_surrogate_unfused",
      [](d2r::Context& ctx, const std::string& head, const std::string& reward_form, nb::object reward_params,
         std::int64_t generations, const PgOptionsPy& options, nb::object row_loss, nb::object row_reward,
         nb::object samples, nb::object log_prob, nb::object rewards, nb::object advantages, nb::object targets,
         nb::object labels, std::int64_t step, std::int64_t first_row, D2R_HEAD_PARAMS, D2R_GRAD_PARAMS) {
        Call c("pg_surrogate_unfused", ctx);
        const HeadKind kind = parse_head(c.fn(), head);
        const HeadIn h = import_head(c, kind, D2R_HEAD_VALUES, "", false, jitter);
        const RewardIn r = import_reward(c, reward_form, reward_params);
        const HeadIn g = import_head(c, kind, D2R_GRAD_VALUES, "grad_", true);
        const Arg s = c.output("samples", samples), lp = c.output("log_prob", log_prob),
                  rr = c.output("rewards", rewards), ad = c.output("advantages", advantages);
        const d2r::DrawKey key = draw_key(c.fn(), step, first_row);
        dispatch(c.scalar(h.a), [&]<class T>() {
          c.expect_scalar(lp), c.expect_scalar(rr), c.expect_scalar(ad);
          with_head<T>(c, h, [&](const auto& hd) {
            using H = std::decay_t<decltype(hd)>;
            const auto data = data_of<T>(c, hd, targets, labels);
            const auto rw = reward_of<T>(c, r);
            const auto rows = rows_of<T>(c, row_loss, row_reward);
            const auto gv = grad_of<T>(c, hd, g);
            const auto opt = to_pg<T>(c.fn(), options);
            if constexpr (is_categorical<H>) {
              const d2r::PgIntermediates<T, std::int32_t> im{c.matrix<std::int32_t>(s), c.matrix<T>(lp),
                                                             c.matrix<T>(rr), c.matrix<T>(ad)};
              nb::gil_scoped_release rel;
              d2r::pg_surrogate_unfused(ctx, hd, data, rw, generations, opt, key, im, rows, gv);
            } else {
              c.expect_scalar(s);
              const d2r::PgIntermediates<T> im{c.matrix<T>(s), c.matrix<T>(lp), c.matrix<T>(rr), c.matrix<T>(ad)};
              nb::gil_scoped_release rel;
              d2r::pg_surrogate_unfused(ctx, hd, data, rw, generations, opt, key, im, rows, gv);
            }
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("reward_form"), nb::arg("reward_params"), nb::arg("generations"),
      nb::arg("options"), nb::arg("row_loss"), nb::arg("row_reward").none(), nb::arg("samples"), nb::arg("log_prob"),
      nb::arg("rewards"), nb::arg("advantages"), nb::kw_only(), nb::arg("targets") = nb::none(),
      nb::arg("labels") = nb::none(), nb::arg("step") = 0, nb::arg("first_row") = 0, D2R_HEAD_KW, D2R_GRAD_KW,
      "pg_surrogate composed of the primitives, also writing its intermediates.");

  m.def(
      "pg_pathwise",
      [](d2r::Context& ctx, const std::string& head, const std::string& reward_form, nb::object reward_params,
         std::int64_t generations, const PgOptionsPy& options, nb::object row_loss, nb::object row_reward,
         nb::object targets, std::int64_t step, std::int64_t first_row, D2R_HEAD_PARAMS, D2R_GRAD_PARAMS) {
        Call c("pg_pathwise", ctx);
        const HeadKind kind = parse_head(c.fn(), head);
        if (kind == HeadKind::categorical) bad_argument(c.fn(), "head", "the pathwise objective needs a Gaussian head");
        const HeadIn h = import_head(c, kind, D2R_HEAD_VALUES, "", false, jitter);
        const RewardIn r = import_reward(c, reward_form, reward_params);
        const HeadIn g = import_head(c, kind, D2R_GRAD_VALUES, "grad_", true);
        const d2r::DrawKey key = draw_key(c.fn(), step, first_row);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            using H = std::decay_t<decltype(hd)>;
            if constexpr (!is_categorical<H>) {
              const auto data = data_of<T>(c, hd, targets, nb::none());
              const auto rw = reward_of<T>(c, r);
              const auto rows = rows_of<T>(c, row_loss, row_reward);
              const auto gv = grad_of<T>(c, hd, g);
              const auto opt = to_pg<T>(c.fn(), options);
              nb::gil_scoped_release rel;
              d2r::pg_pathwise(ctx, hd, data, rw, generations, opt, key, rows, gv);
            }
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("reward_form"), nb::arg("reward_params"), nb::arg("generations"),
      nb::arg("options"), nb::arg("row_loss"), nb::arg("row_reward").none() = nb::none(), nb::kw_only(),
      nb::arg("targets") = nb::none(), nb::arg("step") = 0, nb::arg("first_row") = 0, D2R_HEAD_KW, D2R_GRAD_KW,
      "Pathwise (reparameterised) objective of a Gaussian head.");

  m.def(
      "exact_objective",
      [](d2r::Context& ctx, const std::string& head, const std::string& reward_form, nb::object reward_params,
         const PgOptionsPy& options, nb::object row_loss, nb::object row_reward, nb::object targets,
         nb::object labels, D2R_HEAD_PARAMS, D2R_GRAD_PARAMS) {
        Call c("exact_objective", ctx);
        const HeadKind kind = parse_head(c.fn(), head);
        const HeadIn h = import_head(c, kind, D2R_HEAD_VALUES, "", false, jitter);
        const RewardIn r = import_reward(c, reward_form, reward_params);
        const HeadIn g = import_head(c, kind, D2R_GRAD_VALUES, "grad_", true);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            const auto data = data_of<T>(c, hd, targets, labels);
            const auto rw = reward_of<T>(c, r);
            const auto rows = rows_of<T>(c, row_loss, row_reward);
            const auto gv = grad_of<T>(c, hd, g);
            const auto opt = to_pg<T>(c.fn(), options);
            nb::gil_scoped_release rel;
            d2r::exact_objective(ctx, hd, data, rw, opt, rows, gv);
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("reward_form"), nb::arg("reward_params"), nb::arg("options"),
      nb::arg("row_loss"), nb::arg("row_reward").none() = nb::none(), nb::kw_only(), nb::arg("targets") = nb::none(),
      nb::arg("labels") = nb::none(), D2R_HEAD_KW, D2R_GRAD_KW,
      "Exact-expectation objective L = -(1/N) Σ (E[r] + λH): per-row loss and the head gradient.");
}

}  // namespace d2rpy
