// d2r._core.sweep: the library's sweep of fixed rewards (d2r::runs::sweep, d2r/sweep.hpp), the
// brute-force answer a bilevel fit must match, on host arrays (python/d2r/_learn.py's d2r.sweep
// checks the arguments, scales the targets and groups the judged learners by their budget).
//
// The configuration is built as `d2r sweep` builds it from fit's options (shared_config, then
// runs::sweep_learner): the same learner at every reward, so the same data, options and seed give
// `d2r sweep`'s numbers.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nanobind/ndarray.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "common.hpp"
#include "d2r/data.hpp"
#include "d2r/sweep.hpp"
#include "trainer_options.hpp"

namespace d2rpy {

namespace {

using HostMatrix = nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using HostLabels = nb::ndarray<const std::int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

std::vector<double> values_of(const HostMatrix& a) { return {a.data(), a.data() + a.size()}; }

d2r::runs::HostData host_data(const HostMatrix& x, const HostMatrix& y) {
  return {.rows = static_cast<std::int64_t>(x.shape(0)), .inputs = static_cast<std::int64_t>(x.shape(1)),
          .dims = static_cast<std::int64_t>(y.shape(1)), .x = values_of(x), .y = values_of(y)};
}

d2r::runs::ClassHostData class_data(const HostMatrix& x, const HostLabels& labels) {
  return {.rows = static_cast<std::int64_t>(x.shape(0)), .inputs = static_cast<std::int64_t>(x.shape(1)),
          .x = values_of(x), .labels = {labels.data(), labels.data() + labels.size()}};
}

nb::dict point_dict(const d2r::runs::SweepPoint& p) {
  nb::dict d;
  d["value"] = p.value;
  d["validation_loss"] = p.validation_loss;
  d["train_loss"] = p.train_loss;
  d["validation_accuracy"] = p.validation_accuracy;
  d["steps"] = p.steps;
  d["mean"] = p.mean;
  d["sd"] = p.sd;
  return d;
}

/// The settings `d2r sweep` takes from fit's options, shared by both tasks (shared_config).
template <class Config>
void shared_options(Options& o, Config& c, bool double_precision) {
  c.double_precision = double_precision;
  c.hidden = o.get<std::vector<std::int64_t>>("hidden", c.hidden);
  c.activation = parse_activation("options", o.choice("activation", "relu", {"relu", "tanh"}));
  c.lambda = o.get<double>("entropy_weight", c.lambda);
  c.generations = o.get<std::int64_t>("generations", c.generations);
  c.inner_objective = o.choice("objective", d2r::InnerObjective::reinforce,
                               {{"reinforce", d2r::InnerObjective::reinforce}, {"exact", d2r::InnerObjective::exact}});
}

/// The stationary learner of a `preset='stationary'` fit (d2r::runs::SweepSettings::stationary):
/// the preset with the fit's tolerance, cap and K_in.
template <class Config>
void stationary_options(Options& o, Config& c) {
  d2r::runs::apply_bilevel_preset(c, "stationary");
  c.bilevel.inner.stationarity_tolerance = o.get<double>("inner_tolerance", c.bilevel.inner.stationarity_tolerance);
  c.bilevel.inner.max_steps = o.get<std::int64_t>("inner_max_steps", c.bilevel.inner.max_steps);
  c.bilevel.inner.steps = o.get<std::int64_t>("inner_steps", c.bilevel.inner.steps);
}

nb::dict result_dict(const d2r::runs::SweepResult& r, const std::vector<double>& judged_losses) {
  nb::list grid, judged;
  for (const auto& p : r.grid) grid.append(point_dict(p));
  for (std::size_t k = 0; k < r.judged.size(); ++k) {
    nb::dict d = point_dict(r.judged[k]);
    d["within_noise_of_best"] = r.within_noise_of_best(r.judged[k]);  // the one comparison (SweepResult)
    if (k < judged_losses.size()) d["returned_model_within_noise_of_best"] = r.within_noise_of_best(judged_losses[k]);
    judged.append(d);
  }
  nb::dict d;
  d["grid"] = grid;
  d["judged"] = judged;
  d["best"] = r.best;
  d["noise"] = r.noise;
  d["tolerance"] = r.tolerance;
  d["seeds"] = r.seeds;
  d["steps_per_run"] = r.steps_per_run;
  d["rows_per_step"] = r.rows_per_step;
  d["inner_steps"] = r.inner_steps();
  return d;
}

}  // namespace

void bind_sweep(nb::module_& m) {
  m.def(
      "log_grid", [](double min, double max, std::int64_t points) { return d2r::runs::log_grid(min, max, points); },
      nb::arg("min"), nb::arg("max"), nb::arg("points"),
      "`points` log-spaced rewards from min to max, min · (max / min)^(i / (points − 1)) (d2r::runs::log_grid: "
      "`d2r sweep --grid-min --grid-max --points`).");
  m.def(
      "random_permutation", [](std::int64_t n, std::uint64_t seed) { return d2r::random_permutation(n, seed); },
      nb::arg("n"), nb::arg("seed"),
      "The permutation of 0..n−1 drawn from the splitmix64 stream started at seed (d2r::random_permutation): "
      "`d2r fit`'s validation rows are the first round(f·n) of random_permutation(n, --seed) (half away from "
      "zero), in their original order.");
  m.def(
      "sweep",
      [](const HostMatrix& x, nb::object y, nb::object labels, std::int64_t classes, const HostMatrix& val_x,
         nb::object val_y, nb::object val_labels, const std::vector<double>& values, const std::vector<double>& judged,
         std::int64_t seeds, std::uint64_t seed, std::int64_t budget, bool stationary, bool double_precision,
         const std::string& device, double target_scale, nb::dict options, nb::object on_run,
         const std::vector<double>& judged_losses) {
        constexpr std::string_view fn = "sweep";
        Options o(fn, options);
        d2r::runs::SweepSettings s{.values = values, .judged = judged, .seeds = seeds, .seed = seed,
                                   .budget = budget, .stationary = stationary,
                                   .context = {.backend = d2r::parse_backend(device)}};
        d2r::runs::SweepProgressFn progress;
        if (!on_run.is_none()) {
          progress = [on_run](double value, std::int64_t k, double loss) {
            nb::gil_scoped_acquire gil;
            on_run(value, k, loss);
          };
        }
        d2r::runs::SweepResult r;
        if (classes > 0) {
          HostLabels la, vla;
          if (!nb::try_cast(labels, la) || !nb::try_cast(val_labels, vla)) {
            bad_argument(fn, "labels", "expected 1-d contiguous int32 host arrays of labels and val_labels");
          }
          d2r::runs::ClassificationConfig c;
          shared_options(o, c, double_precision);
          c.plain.epochs = o.get<std::int64_t>("epochs", c.plain.epochs);
          c.plain.batch_size = o.get<std::int64_t>("batch_size", c.plain.batch_size);
          c.learning_rate = o.get<double>("lr", c.learning_rate);
          if (stationary) stationary_options(o, c);
          o.finish();
          const d2r::runs::ClassHostData train = class_data(x, la), val = class_data(val_x, vla);
          nb::gil_scoped_release rel;
          // The per-epoch held-out rows of the PG protocol are the validation rows (the program's
          // test split has no counterpart here; it does not enter the validation loss).
          r = d2r::runs::sweep(c, train, val, val, classes, s, {}, "d2r.sweep", progress);
        } else {
          HostMatrix ya, vya;
          if (!nb::try_cast(y, ya) || !nb::try_cast(val_y, vya)) {
            bad_argument(fn, "Y", "expected 2-d contiguous float64 host arrays of Y and val_Y");
          }
          d2r::runs::RegressionConfig c;
          shared_options(o, c, double_precision);
          c.plain.steps = o.get<std::int64_t>("steps", c.plain.steps);
          c.plain.adam.learning_rate = o.get<double>("lr", 0.01);  // `d2r fit --lr`'s default
          c.plain.gradient_clamp = 1;  // as the bilevel inner loop (InnerOptions::gradient_clamp), as `d2r sweep`
          c.target_scale = target_scale;
          if (stationary) stationary_options(o, c);
          o.finish();
          const d2r::runs::HostData train = host_data(x, ya), val = host_data(val_x, vya);
          nb::gil_scoped_release rel;
          r = d2r::runs::sweep(c, train, val, s, {}, "d2r.sweep", progress);
        }
        return result_dict(r, judged_losses);
      },
      nb::arg("x"), nb::arg("y").none(), nb::arg("labels").none(), nb::arg("classes"), nb::arg("val_x"),
      nb::arg("val_y").none(), nb::arg("val_labels").none(), nb::kw_only(), nb::arg("values"), nb::arg("judged"),
      nb::arg("seeds"), nb::arg("seed"), nb::arg("budget"), nb::arg("stationary"), nb::arg("double_precision"),
      nb::arg("device"), nb::arg("target_scale"), nb::arg("options"), nb::arg("on_run").none() = nb::none(),
      nb::arg("judged_losses") = std::vector<double>{},
      "d2r::runs::sweep on host float64 arrays (d2r.sweep is the front end): a dict of the grid's and the judged "
      "rewards' points, the best grid index, the seed noise and the tolerance; with `judged_losses` (the judged "
      "runs' own validation losses) whether each is within that tolerance of the best too.");
}

}  // namespace d2rpy
