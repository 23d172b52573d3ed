// Bindings of second_order.hpp: the head-level pieces of Hessian-vector and mixed products.
#include "heads.hpp"

namespace d2rpy {

namespace {
template <class T>
d2r::MahalanobisReward<T> reward_in(Call& c, const std::string& form, const nb::object& params) {
  const d2r::RewardForm f = parse_reward_form(c.fn(), form);
  const Arg p = c.input("reward_params", params);
  c.expect_scalar(p);
  return {f, c.vector<const T>(p)};
}
}  // namespace

void bind_second_order(nb::module_& m) {
  m.def(
      "log_prob_jvp",
      [](d2r::Context& ctx, const std::string& head, nb::object samples, nb::object out, D2R_HEAD_PARAMS,
         D2R_TANGENT_PARAMS) {
        Call c("log_prob_jvp", ctx);
        const HeadKind kind = parse_head(c.fn(), head);
        const HeadIn h = import_head(c, kind, D2R_HEAD_VALUES, "", false, jitter);
        const HeadIn t = import_head(c, kind, D2R_TANGENT_VALUES, "tangent_", false);
        const Arg s = c.input("samples", samples), o = c.output("out", out);
        c.expect_scalar(o);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            using H = std::decay_t<decltype(hd)>;
            const auto tv = tangent_of<T>(c, hd, t);
            const auto ov = c.matrix<T>(o);
            if constexpr (is_categorical<H>) {
              const auto sv = c.matrix<const std::int32_t>(s);
              nb::gil_scoped_release rel;
              d2r::log_prob_jvp(ctx, hd, sv, tv, ov);
            } else {
              c.expect_scalar(s);
              const auto sv = c.matrix<const T>(s);
              nb::gil_scoped_release rel;
              d2r::log_prob_jvp(ctx, hd, sv, tv, ov);
            }
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("samples"), nb::arg("out"), nb::kw_only(), D2R_HEAD_KW, D2R_TANGENT_KW,
      "out(b, g) = ∇_head log p(sample_bg) · tangent_b.");

  m.def(
      "backward_tangent",
      [](d2r::Context& ctx, const std::string& head, nb::object samples, nb::object d_log_prob, nb::object d_entropy,
         D2R_HEAD_PARAMS, D2R_TANGENT_PARAMS, D2R_GRAD_PARAMS) {
        Call c("backward_tangent", ctx);
        const HeadKind kind = parse_head(c.fn(), head);
        const HeadIn h = import_head(c, kind, D2R_HEAD_VALUES, "", false, jitter);
        const HeadIn t = import_head(c, kind, D2R_TANGENT_VALUES, "tangent_", false);
        const Arg s = c.input("samples", samples, true), dl = c.input("d_log_prob", d_log_prob, true),
                  de = c.input("d_entropy", d_entropy, true);
        c.expect_scalar(dl), c.expect_scalar(de);
        const HeadIn g = import_head(c, kind, D2R_GRAD_VALUES, "grad_", true);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            using H = std::decay_t<decltype(hd)>;
            const auto tv = tangent_of<T>(c, hd, t);
            const auto gv = grad_of<T>(c, hd, g);
            const auto dlv = c.matrix<const T>(dl);
            const auto dev = c.vector<const T>(de);
            if constexpr (is_categorical<H>) {
              const auto sv = c.matrix<const std::int32_t>(s);
              nb::gil_scoped_release rel;
              d2r::backward_tangent(ctx, hd, sv, dlv, dev, tv, gv);
            } else {
              c.expect_scalar(s);
              const auto sv = c.matrix<const T>(s);
              nb::gil_scoped_release rel;
              d2r::backward_tangent(ctx, hd, sv, dlv, dev, tv, gv);
            }
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("samples").none(), nb::arg("d_log_prob").none(),
      nb::arg("d_entropy").none(), nb::kw_only(), D2R_HEAD_KW, D2R_TANGENT_KW, D2R_GRAD_KW,
      "Tangent of backward() along the head tangent into the grad_* arrays (the head Hessian applied).");

  m.def(
      "transform_rewards_backward",
      [](d2r::Context& ctx, nb::object rewards, nb::object d_advantages, nb::object d_rewards,
         const PgOptionsPy& options) {
        Call c("transform_rewards_backward", ctx);
        const Arg r = c.input("rewards", rewards), da = c.input("d_advantages", d_advantages),
                  dr = c.output("d_rewards", d_rewards);
        dispatch(c.scalar(r), [&]<class T>() {
          c.expect_scalar(da), c.expect_scalar(dr);
          const auto t = to_transform<T>(c.fn(), options);
          const auto rv = c.matrix<const T>(r);
          const auto dav = c.matrix<const T>(da);
          const auto drv = c.matrix<T>(dr);
          nb::gil_scoped_release rel;
          d2r::transform_rewards_backward(ctx, t, rv, dav, drv);
        });
      },
      nb::arg("ctx"), nb::arg("rewards"), nb::arg("d_advantages"), nb::arg("d_rewards"), nb::arg("options"),
      "Vector-Jacobian product of transform_rewards.");

  m.def(
      "mixed_product",
      [](d2r::Context& ctx, const std::string& head, const std::string& reward_form, nb::object reward_params,
         std::int64_t generations, const PgOptionsPy& options, nb::object grad_params, nb::object targets,
         nb::object labels, std::int64_t step, std::int64_t first_row, D2R_HEAD_PARAMS, D2R_TANGENT_PARAMS) {
        Call c("mixed_product", ctx);
        const HeadKind kind = parse_head(c.fn(), head);
        const HeadIn h = import_head(c, kind, D2R_HEAD_VALUES, "", false, jitter);
        const HeadIn t = import_head(c, kind, D2R_TANGENT_VALUES, "tangent_", false);
        const Arg g = c.output("grad_params", grad_params);
        c.expect_scalar(g);
        const d2r::DrawKey key = draw_key(c.fn(), step, first_row);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            const auto data = data_of<T>(c, hd, targets, labels);
            const auto rw = reward_in<T>(c, reward_form, reward_params);
            const auto tv = tangent_of<T>(c, hd, t);
            const auto gv = c.vector<T>(g);
            const auto opt = to_pg<T>(c.fn(), options);
            nb::gil_scoped_release rel;
            d2r::mixed_product(ctx, hd, data, rw, generations, opt, key, tv, gv);
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("reward_form"), nb::arg("reward_params"), nb::arg("generations"),
      nb::arg("options"), nb::arg("grad_params"), nb::kw_only(), nb::arg("targets") = nb::none(),
      nb::arg("labels") = nb::none(), nb::arg("step") = 0, nb::arg("first_row") = 0, D2R_HEAD_KW, D2R_TANGENT_KW,
      "Mixed second derivative of pg_surrogate (same key): grad_params = ∇_φ(∇_head L · tangent).");

  m.def(
      "exact_backward_tangent",
      [](d2r::Context& ctx, const std::string& head, const std::string& reward_form, nb::object reward_params,
         const PgOptionsPy& options, nb::object labels, D2R_HEAD_PARAMS, D2R_TANGENT_PARAMS, D2R_GRAD_PARAMS) {
        Call c("exact_backward_tangent", ctx);
        const HeadKind kind = parse_head(c.fn(), head);
        const HeadIn h = import_head(c, kind, D2R_HEAD_VALUES, "", false, jitter);
        const HeadIn t = import_head(c, kind, D2R_TANGENT_VALUES, "tangent_", false);
        const HeadIn g = import_head(c, kind, D2R_GRAD_VALUES, "grad_", true);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            using H = std::decay_t<decltype(hd)>;
            const auto rw = reward_in<T>(c, reward_form, reward_params);
            const auto tv = tangent_of<T>(c, hd, t);
            const auto gv = grad_of<T>(c, hd, g);
            const auto opt = to_pg<T>(c.fn(), options);
            if constexpr (is_categorical<H>) {
              const auto lv = c.vector<const std::int32_t>(c.input("labels", labels));
              nb::gil_scoped_release rel;
              d2r::exact_backward_tangent(ctx, hd, lv, rw, opt, tv, gv);
            } else {
              if (!labels.is_none()) bad_argument(c.fn(), "labels", "a Gaussian head takes no labels");
              nb::gil_scoped_release rel;
              d2r::exact_backward_tangent(ctx, hd, rw, opt, tv, gv);
            }
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("reward_form"), nb::arg("reward_params"), nb::arg("options"),
      nb::kw_only(), nb::arg("labels") = nb::none(), D2R_HEAD_KW, D2R_TANGENT_KW, D2R_GRAD_KW,
      "∇²_head L_exact · tangent into the grad_* arrays.");

  m.def(
      "exact_mixed_product",
      [](d2r::Context& ctx, const std::string& head, const std::string& reward_form, nb::object reward_params,
         const PgOptionsPy& options, nb::object grad_params, nb::object targets, nb::object labels, D2R_HEAD_PARAMS,
         D2R_TANGENT_PARAMS) {
        Call c("exact_mixed_product", ctx);
        const HeadKind kind = parse_head(c.fn(), head);
        const HeadIn h = import_head(c, kind, D2R_HEAD_VALUES, "", false, jitter);
        const HeadIn t = import_head(c, kind, D2R_TANGENT_VALUES, "tangent_", false);
        const Arg g = c.output("grad_params", grad_params);
        c.expect_scalar(g);
        dispatch(c.scalar(h.a), [&]<class T>() {
          with_head<T>(c, h, [&](const auto& hd) {
            const auto data = data_of<T>(c, hd, targets, labels);
            const auto rw = reward_in<T>(c, reward_form, reward_params);
            const auto tv = tangent_of<T>(c, hd, t);
            const auto gv = c.vector<T>(g);
            const auto opt = to_pg<T>(c.fn(), options);
            nb::gil_scoped_release rel;
            d2r::exact_mixed_product(ctx, hd, data, rw, opt, tv, gv);
          });
        });
      },
      nb::arg("ctx"), nb::arg("head"), nb::arg("reward_form"), nb::arg("reward_params"), nb::arg("options"),
      nb::arg("grad_params"), nb::kw_only(), nb::arg("targets") = nb::none(), nb::arg("labels") = nb::none(),
      D2R_HEAD_KW, D2R_TANGENT_KW, "∇_φ(∇_head L_exact · tangent) into grad_params.");
}

}  // namespace d2rpy
