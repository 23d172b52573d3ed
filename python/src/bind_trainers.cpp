// Bindings of bilevel.hpp: BilevelTrainer (regression and classification), fit_policy and
// fit_classifier, and `d2r fit`'s target scaling (standardize_targets, reward_in_scale). Options
// arrive as a dict whose keys are checked (an unknown key is an error naming it); data arrays stay
// referenced by the trainer (it keeps views of them).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <variant>

#include <fmt/format.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/vector.h>

#include "common.hpp"
#include "d2r/fit_run.hpp"
#include "trainer_options.hpp"

namespace d2rpy {

namespace {

nb::dict metrics_dict(const d2r::PolicyMetrics& m) {
  nb::dict d;
  d["nll_per_dim"] = m.nll_per_dim, d["rmse"] = m.rmse, d["mean_std"] = m.mean_std, d["accuracy"] = m.accuracy;
  return d;
}

nb::dict record_dict(const d2r::BilevelRecord& r) {
  nb::dict d;
  d["step"] = r.step;
  d["reward_params"] = r.reward_params;
  d["hypergradient"] = r.hypergradient;
  d["outer_loss"] = r.outer_loss;
  d["train"] = metrics_dict(r.train);
  d["validation"] = metrics_dict(r.validation);
  d["mean_inner_reward"] = r.mean_inner_reward;
  d["solver_status"] = std::string(d2r::to_string(r.solver_status));
  d["solver_iterations"] = r.solver_iterations;
  d["solver_initial_residual"] = r.solver_initial_residual;
  d["solver_residual"] = r.solver_residual;
  d["solver_relative_residual"] = r.solver_relative_residual();
  d["wall_seconds"] = r.wall_seconds;
  d["inner_steps"] = r.inner_steps;
  d["inner_gradient_norm"] = r.inner_gradient_norm;
  d["inner_gradient_norm0"] = r.inner_gradient_norm0;
  d["inner_stationary"] = r.inner_stationary;
  d["hypergradient_clamped"] = r.hypergradient_clamped;
  d["max_step"] = r.max_step;
  d["at_max_step"] = r.at_max_step;
  d["backtracked"] = r.backtracked;
  return d;
}

nb::dict fit_record_dict(const d2r::PolicyFitRecord& r) {
  nb::dict d;
  d["step"] = r.step;
  d["train"] = metrics_dict(r.train);
  d["validation"] = metrics_dict(r.validation);
  return d;
}

/// Host copy of a vector in the context's memory space (a NumPy array owned by Python).
template <class T>
nb::object to_numpy(d2r::Context& ctx, d2r::VectorView<const T> v) {
  T* data = new T[static_cast<std::size_t>(v.size)];
  nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
  ctx.to_host(data, v.data, static_cast<std::size_t>(v.size) * sizeof(T));
  return nb::cast(nb::ndarray<nb::numpy, T, nb::ndim<1>>(data, {static_cast<std::size_t>(v.size)}, owner));
}


/// A d2r::Communicator whose collectives call a Python object (d2r.TorchCommunicator over a
/// torch.distributed group): allreduce_sum(array), broadcast(array, root), barrier(). The buffers
/// are handed over zero-copy: host memory as a NumPy view, device memory as a PyTorch tensor
/// (DLPack); the view is only valid during the call. The trainers call these with the GIL
/// released, so every callback takes it.
class PyCommunicator final : public d2r::Communicator {
 public:
  PyCommunicator(nb::object impl, int rank, int size, bool device, int device_id)
      : impl_(std::move(impl)), rank_(rank), size_(size), device_(device), device_id_(device_id) {}
  [[nodiscard]] int rank() const noexcept override { return rank_; }
  [[nodiscard]] int size() const noexcept override { return size_; }
  [[nodiscard]] d2r::CommMemory memory() const noexcept override {
    return device_ ? d2r::CommMemory::device : d2r::CommMemory::host;
  }
  void allreduce_sum(std::span<float> data) override { reduce(data); }
  void allreduce_sum(std::span<double> data) override { reduce(data); }
  void broadcast(std::span<std::byte> data, int root) override {
    ++stats_.broadcast_calls;
    stats_.broadcast_bytes += data.size_bytes();
    call("broadcast", reinterpret_cast<std::uint8_t*>(data.data()), data.size(), nb::int_(root));
  }
  void barrier() override {
    ++stats_.barriers;
    nb::gil_scoped_acquire gil;
    guarded("barrier", [&] { impl_.attr("barrier")(); });
  }
  void sync() override {}  // torch.distributed's collectives are called synchronously
  [[noreturn]] void abort(std::string_view message, int exit_code) noexcept override {
    std::fprintf(stderr, "%s\n", std::string(message).c_str());
    std::fflush(stderr);
    std::_Exit(exit_code);
  }

 private:
  template <class T>
  void reduce(std::span<T> data) {
    ++stats_.allreduce_calls;
    stats_.allreduce_bytes += data.size_bytes();
    call("allreduce_sum", data.data(), data.size(), nb::none());
  }
  template <class T>
  void call(const char* method, T* p, std::size_t n, nb::object extra) {
    nb::gil_scoped_acquire gil;
    guarded(method, [&] {
      nb::object view;
      if (device_) {
        view = nb::cast(nb::ndarray<nb::pytorch, T, nb::ndim<1>>(p, {n}, nb::handle(), {}, nb::dtype<T>(),
                                                                 nb::device::cuda::value, device_id_),
                        nb::rv_policy::reference);
      } else {
        view = nb::cast(nb::ndarray<nb::numpy, T, nb::ndim<1>>(p, {n}, nb::handle()), nb::rv_policy::reference);
      }
      if (extra.is_none()) {
        impl_.attr(method)(view);
      } else {
        impl_.attr(method)(view, extra);
      }
    });
  }
  /// A Python exception in a collective becomes d2r::Error (communication): the trainers' error
  /// path, with the Python message.
  template <class F>
  void guarded(const char* method, F&& f) {
    try {
      f();
    } catch (nb::python_error& e) {
      // "Type: message" without the traceback; e is released at the end of this block, GIL held.
      const std::string what = nb::cast<std::string>(nb::str(e.type().attr("__name__"))) + ": " +
                               nb::cast<std::string>(nb::str(e.value()));
      throw d2r::Error(d2r::ErrorKind::communication, "group",
                       std::string("torch.distributed ") + method + " failed on rank " + std::to_string(rank_) +
                           ": " + what);
    }
  }

  nb::object impl_;
  int rank_, size_;
  bool device_;
  int device_id_;
};

d2r::DataParallel data_parallel(std::string_view fn, nb::handle comm, bool deterministic, std::int64_t block_rows) {
  d2r::DataParallel p;
  if (comm.is_none()) return p;
  if (!nb::isinstance<PyCommunicator>(comm)) bad_argument(fn, "communicator", "expected a d2r._core.Communicator");
  if (block_rows < 1) bad_argument(fn, "reduction_block_rows", "expected >= 1, got " + std::to_string(block_rows));
  p.communicator = nb::cast<PyCommunicator*>(comm);
  p.deterministic = deterministic;
  p.block_rows = block_rows;
  return p;
}

struct TrainerPy {
  d2r::Context* ctx;
  Scalar scalar;
  std::variant<std::unique_ptr<d2r::BilevelTrainer<float>>, std::unique_ptr<d2r::BilevelTrainer<double>>> impl;
  std::vector<nb::object> kept;  // the data arrays (the trainer keeps views of them)
};

template <class F>
void with_trainer(TrainerPy& t, F&& f) {
  std::visit([&](auto& p) { f(*p); }, t.impl);
}

}  // namespace

/// The options fit_policy and fit_classifier share (PolicyFitOptions, ClassifierFitOptions): the
/// optimiser, the policy-gradient settings, the fixed reward, the gradient and the seed.
template <class FitOptions>
void read_shared_options(Options& o, FitOptions& fo) {
  using T = std::remove_reference_t<decltype(fo.adam.learning_rate)>;
  fo.adam.learning_rate = static_cast<T>(o.get<double>("lr", fo.adam.learning_rate));
  fo.gradient_clamp = static_cast<T>(o.get<double>("gradient_clamp", fo.gradient_clamp));
  fo.generations = o.get<std::int64_t>("generations", fo.generations);
  fo.pg.entropy_weight = static_cast<T>(o.get<double>("entropy_weight", fo.pg.entropy_weight));
  fo.pg.transform.kind =
      parse_transform("options", o.choice("transform", "none", {"none", "normalize", "rbf", "leave_one_out", "standardize"}));
  fo.reward_form = parse_reward_form("options", o.get<std::string>("reward_form", "scalar"));
  fo.reward_params = o.get<std::vector<double>>("reward_params", fo.reward_params);
  fo.objective = o.choice("objective", d2r::InnerObjective::reinforce,
                          {{"reinforce", d2r::InnerObjective::reinforce}, {"exact", d2r::InnerObjective::exact}});
  fo.seed = o.get<std::uint64_t>("seed", 0);
}

void bind_trainers(nb::module_& m) {
  nb::class_<PyCommunicator>(m, "Communicator",
                             "A d2r::Communicator whose collectives call impl.allreduce_sum(array), "
                             "impl.broadcast(array, root) and impl.barrier() (d2r.TorchCommunicator). memory: "
                             "'host' (NumPy views) or 'device' (CUDA PyTorch tensors on device_id).")
      .def(
          "__init__",
          [](PyCommunicator* self, nb::object impl, int rank, int size, const std::string& memory, int device_id) {
            if (size < 1) bad_argument("Communicator", "size", "expected >= 1, got " + std::to_string(size));
            if (rank < 0 || rank >= size) {
              bad_argument("Communicator", "rank",
                           "expected in [0, " + std::to_string(size) + "), got " + std::to_string(rank));
            }
            if (memory != "host" && memory != "device") {
              bad_argument("Communicator", "memory", "expected 'host' or 'device', got '" + memory + "'");
            }
            new (self) PyCommunicator(std::move(impl), rank, size, memory == "device", device_id);
          },
          nb::arg("impl"), nb::arg("rank"), nb::arg("size"), nb::kw_only(), nb::arg("memory") = "host",
          nb::arg("device_id") = 0)
      .def_prop_ro("rank", &PyCommunicator::rank)
      .def_prop_ro("size", &PyCommunicator::size)
      .def_prop_ro("stats", [](const PyCommunicator& c) {
        nb::dict d;
        const d2r::CommStats& s = c.stats();
        d["allreduce_calls"] = s.allreduce_calls, d["allreduce_bytes"] = s.allreduce_bytes;
        d["broadcast_calls"] = s.broadcast_calls, d["broadcast_bytes"] = s.broadcast_bytes;
        d["barriers"] = s.barriers;
        return d;
      }, "Payload counters of this rank (d2r::CommStats).");

  nb::class_<TrainerPy>(m, "BilevelTrainer",
                        "d2r::BilevelTrainer: learns the reward parameters φ by bilevel optimisation. Regression: "
                        "x (N x p) and y (N x n); classification: x and int32 labels with classes > 0. Options: a "
                        "dict (see d2r.BilevelRewardLearner).")
      .def(
          "__init__",
          [](TrainerPy* self, d2r::Context& ctx, nb::object x, nb::object y, nb::object labels, std::int64_t classes,
             nb::object val_x, nb::object val_y, nb::object val_labels, const std::string& reward_form,
             const std::vector<double>& reward_init, nb::dict options) {
            Call c("BilevelTrainer", ctx);
            Options o("BilevelTrainer", options);
            const d2r::RewardForm form = parse_reward_form(c.fn(), reward_form);
            const Arg xa = c.input("x", x), vxa = c.input("val_x", val_x, true);
            const Scalar s = c.scalar(xa);
            c.expect_scalar(vxa);
            const bool classify = classes > 0;
            new (self) TrainerPy{&ctx, s, {}, {x, y, labels, val_x, val_y, val_labels}};
            // The library's checks of the options name their fields (options.inner.max_steps): say
            // which key of the dict that is.
            const auto as_key = [&](const d2r::Error& e) {
              const std::string& field = e.argument();
              if (!field.starts_with("options.")) throw;
              std::string what = e.what();
              if (const std::size_t at = what.find("': "); at != std::string::npos) what = what.substr(at + 3);
              bad_argument("BilevelTrainer", option_for_field(field), what);
            };
            dispatch(s, [&]<class T>() {
              const d2r::MlpSpec spec = trunk_spec(o, xa.ndim() == 2 ? xa.shape(1) : 0);
              d2r::BilevelOptions<T> bo = bilevel_options<T>(o);
              o.finish();
              std::unique_ptr<d2r::BilevelTrainer<T>> t;
              if (classify) {
                if (!y.is_none()) bad_argument(c.fn(), "y", "classification takes labels=, not y=");
                const d2r::ClassificationData<T> train{c.matrix<const T>(xa),
                                                       c.vector<const std::int32_t>(c.input("labels", labels))};
                d2r::ClassificationData<T> val{};
                if (vxa.present) {
                  val = {c.matrix<const T>(vxa), c.vector<const std::int32_t>(c.input("val_labels", val_labels))};
                }
                try {
                  nb::gil_scoped_release rel;
                  t = std::make_unique<d2r::BilevelTrainer<T>>(ctx, spec, train, val, classes, form,
                                                               std::span<const double>(reward_init), bo);
                } catch (const d2r::Error& e) {
                  as_key(e);
                }
              } else {
                if (!labels.is_none()) bad_argument(c.fn(), "labels", "regression takes y=, not labels= (or give classes)");
                const Arg ya = c.input("y", y);
                c.expect_scalar(ya);
                const d2r::RegressionData<T> train{c.matrix<const T>(xa), c.matrix<const T>(ya)};
                d2r::RegressionData<T> val{};
                if (vxa.present) {
                  const Arg vya = c.input("val_y", val_y);
                  c.expect_scalar(vya);
                  val = {c.matrix<const T>(vxa), c.matrix<const T>(vya)};
                }
                try {
                  nb::gil_scoped_release rel;
                  t = std::make_unique<d2r::BilevelTrainer<T>>(ctx, spec, train, val, form,
                                                               std::span<const double>(reward_init), bo);
                } catch (const d2r::Error& e) {
                  as_key(e);
                }
              }
              self->impl = std::move(t);
            });
          },
          nb::arg("ctx"), nb::arg("x"), nb::arg("y").none() = nb::none(), nb::kw_only(),
          nb::arg("labels").none() = nb::none(), nb::arg("classes") = 0, nb::arg("val_x").none() = nb::none(),
          nb::arg("val_y").none() = nb::none(), nb::arg("val_labels").none() = nb::none(),
          nb::arg("reward_form") = "scalar", nb::arg("reward_init") = std::vector<double>{1.0},
          nb::arg("options") = nb::dict(), nb::keep_alive<1, 2>())
      .def("step",
           [](TrainerPy& t) {
             nb::dict d;
             with_trainer(t, [&](auto& tr) {
               const d2r::BilevelRecord* r;
               {
                 nb::gil_scoped_release rel;
                 r = &tr.step();
               }
               d = record_dict(*r);
             });
             return d;
           }, "One outer step; returns its record.")
      .def_prop_ro("history",
                   [](TrainerPy& t) {
                     nb::list l;
                     with_trainer(t, [&](auto& tr) {
                       for (const auto& r : tr.history()) l.append(record_dict(r));
                     });
                     return l;
                   })
      .def_prop_ro("reward_params",
                   [](TrainerPy& t) {
                     std::vector<double> v;
                     with_trainer(t, [&](auto& tr) { v = tr.reward_params(); });
                     return v;
                   })
      .def_prop_ro("inner_objective",
                   [](TrainerPy& t) {
                     std::string name;
                     with_trainer(t, [&](auto& tr) { name = d2r::to_string(tr.options().inner.objective); });
                     return name;
                   }, "The inner steps' objective, 'exact' or 'reinforce' (what `d2r fit --final-model pg` trains its epochs on).")
      .def_prop_ro("inner_settings",
                   [](TrainerPy& t) {
                     nb::dict d;
                     with_trainer(t, [&](auto& tr) {
                       const auto& in = tr.options().inner;
                       d["inner_start"] = d2r::to_string(tr.options().inner_start);
                       d["inner_steps"] = in.steps;
                       d["inner_tolerance"] = static_cast<double>(in.stationarity_tolerance);
                       d["inner_max_steps"] = in.max_steps;
                       d["inner_lr"] = static_cast<double>(in.adam.learning_rate);
                     });
                     return d;
                   }, "The inner loop's start ('warm', 'fresh', 'fixed'), K_in, stationarity tolerance and step cap "
                      "(what d2r.sweep's learner='bilevel' trains to judge this run's reward).")
      .def_prop_ro("steps_done",
                   [](TrainerPy& t) {
                     std::int64_t n = 0;
                     with_trainer(t, [&](auto& tr) { n = tr.steps_done(); });
                     return n;
                   })
      .def("policy_params",
           [](TrainerPy& t) {
             nb::object o;
             with_trainer(t, [&](auto& tr) { o = to_numpy(*t.ctx, tr.policy_params()); });
             return o;
           }, "A host (NumPy) copy of the inner policy's parameters θ after the last step.")
      .def_prop_ro("best_step",
                   [](TrainerPy& t) {
                     std::int64_t n = 0;
                     with_trainer(t, [&](auto& tr) { n = tr.best_step(); });
                     return n;
                   }, "The best-judged outer step (lowest outer loss among steps with a stationary inner policy; 0: none).")
      .def_prop_ro("best_tracked_from",
                   [](TrainerPy& t) {
                     std::int64_t n = 0;
                     with_trainer(t, [&](auto& tr) { n = tr.best_tracked_from(); });
                     return n;
                   })
      .def_prop_ro("best_outer_loss",
                   [](TrainerPy& t) {
                     double v = 0;
                     with_trainer(t, [&](auto& tr) { v = tr.best_outer_loss(); });
                     return v;
                   })
      .def_prop_ro("best_reward_params",
                   [](TrainerPy& t) {
                     std::vector<double> v;
                     with_trainer(t, [&](auto& tr) { v = tr.best_reward_params(); });
                     return v;
                   }, "The reward parameters the best step's inner policy was trained at (empty: no best step).")
      .def("verdict",
           [](TrainerPy& t, bool budget_spent) {
             d2r::BilevelVerdict v;
             with_trainer(t, [&](auto& tr) { v = tr.verdict(budget_spent); });
             return nb::make_tuple(std::string(d2r::to_string(v.status)), v.reason);
           },
           nb::arg("budget_spent") = false,
           "(status, reason) of d2r::BilevelTrainer::verdict: status 'running', 'converged', 'step_limited' or "
           "'diverged' (DESIGN.md §7); budget_spent: the outer-step budget ran out (a run not converged then is "
           "step_limited).")
      .def("warnings",
           [](TrainerPy& t, const std::string& final_model, const std::vector<double>& reward_init) {
             std::vector<std::string> w;
             const d2r::runs::FinalModel asked = final_model == "best"   ? d2r::runs::FinalModel::best
                                                 : final_model == "last" ? d2r::runs::FinalModel::last
                                                 : final_model == "pg"   ? d2r::runs::FinalModel::pg
                                                                         : (bad_argument("BilevelTrainer.warnings",
                                                                                         "final_model",
                                                                                         "expected 'best', 'last' or 'pg', got '" +
                                                                                             final_model + "'"),
                                                                            d2r::runs::FinalModel::last);
             with_trainer(t, [&](auto& tr) {
               w = d2r::runs::bilevel_warnings(tr.history(),
                                               d2r::options_cast<d2r::BilevelOptions<double>>(tr.options()));
               for (std::string& m : d2r::runs::model_warnings(d2r::runs::returned_model(tr, asked, reward_init),
                                                               asked, tr.history().size())) {
                 w.push_back(std::move(m));
               }
             });
             return w;
           },
           nb::arg("final_model") = "best", nb::arg("reward_init") = std::vector<double>{},
           "The diagnostics `d2r fit` prints for this run (d2r::runs::bilevel_warnings and model_warnings), one "
           "sentence each: the hypergradient at its clamp, solves that missed their tolerance, inner policies "
           "short of stationarity, the reward moved by the maximum step at every step, training and validation "
           "losses parting ways, a best-judged step that is the first.")
      .def("best_policy_params",
           [](TrainerPy& t) {
             nb::object o;
             with_trainer(t, [&](auto& tr) { o = to_numpy(*t.ctx, tr.best_policy_params()); });
             return o;
           }, "A host (NumPy) copy of the best step's inner policy θ (unspecified while best_step is 0).")
      .def("window_rows",
           [](TrainerPy& t) {
             std::vector<std::int64_t> v;
             with_trainer(t, [&](auto& tr) { v = tr.window_rows(); });
             return v;
           })
      .def("set_data_parallel",
           [](TrainerPy& t, nb::object comm, bool deterministic, std::int64_t block_rows) {
             const d2r::DataParallel p = data_parallel("BilevelTrainer.set_data_parallel", comm, deterministic, block_rows);
             with_trainer(t, [&](auto& tr) {
               nb::gil_scoped_release rel;
               tr.set_data_parallel(p);
             });
             t.kept.push_back(comm);
           },
           nb::arg("communicator"), nb::kw_only(), nb::arg("deterministic_reduction") = false,
           nb::arg("reduction_block_rows") = 256,
           "Data parallel over communicator's ranks (d2r::BilevelTrainer::set_data_parallel): once, before "
           "the first step and before load().")
      .def("save", [](TrainerPy& t, const std::filesystem::path& p) { with_trainer(t, [&](auto& tr) { tr.save(p); }); },
           nb::arg("path"), "Writes the whole state to path atomically.")
      .def("load", [](TrainerPy& t, const std::filesystem::path& p) { with_trainer(t, [&](auto& tr) { tr.load(p); }); },
           nb::arg("path"), "Restores a state written by save() (same data shapes, options, network, seed).");

  m.def(
      "fit_policy",
      [](d2r::Context& ctx, nb::object x, nb::object y, nb::object params, nb::object val_x, nb::object val_y,
         nb::dict options, nb::object on_record, nb::object communicator, bool deterministic_reduction,
         std::int64_t reduction_block_rows) {
        Call c("fit_policy", ctx);
        Options o("fit_policy", options);
        const Arg xa = c.input("x", x), ya = c.input("y", y), pa = c.output("params", params),
                  vxa = c.input("val_x", val_x, true), vya = c.input("val_y", val_y, vxa.present ? false : true);
        const Scalar s = c.scalar(xa);
        c.expect_scalar(ya), c.expect_scalar(pa), c.expect_scalar(vxa), c.expect_scalar(vya);
        nb::list records;
        dispatch(s, [&]<class T>() {
          const d2r::MlpSpec spec = trunk_spec(o, xa.ndim() == 2 ? xa.shape(1) : 0);
          const d2r::GaussianHead head = o.choice("head", "diagonal", {"diagonal", "cholesky"}) == "cholesky"
                                             ? d2r::GaussianHead::cholesky : d2r::GaussianHead::diagonal;
          d2r::PolicyFitOptions<T> fo;
          const std::string loss = o.choice("loss", "nll", {"nll", "mse", "pg"});
          fo.loss = loss == "mse" ? d2r::PolicyLoss::mse : loss == "pg" ? d2r::PolicyLoss::pg : d2r::PolicyLoss::nll;
          fo.steps = o.get<std::int64_t>("steps", fo.steps);
          read_shared_options(o, fo);
          fo.evaluate_every = o.get<std::int64_t>("evaluate_every", 0);
          o.finish();
          fo.parallel = data_parallel(c.fn(), communicator, deterministic_reduction, reduction_block_rows);
          if (!on_record.is_none()) {
            fo.on_record = [on_record](const d2r::PolicyFitRecord& r) {
              nb::gil_scoped_acquire gil;
              on_record(fit_record_dict(r));
            };
          }
          const d2r::RegressionData<T> train{c.matrix<const T>(xa), c.matrix<const T>(ya)};
          const d2r::RegressionData<T> val = vxa.present ? d2r::RegressionData<T>{c.matrix<const T>(vxa),
                                                                                   c.matrix<const T>(vya)}
                                                         : d2r::RegressionData<T>{};
          const auto pv = c.vector<T>(pa);
          std::vector<d2r::PolicyFitRecord> recs;
          {
            nb::gil_scoped_release rel;
            const std::int64_t capacity = std::max(train.x.rows, val.x.rows);
            d2r::GaussianPolicy<T> policy(ctx, spec, train.y.cols, head, capacity);
            if (pv.size != policy.parameter_count()) {
              nb::gil_scoped_acquire gil;
              bad_argument(c.fn(), "params", "expected " + std::to_string(policy.parameter_count()) +
                                                 " entries (the network's parameter count), got " +
                                                 std::to_string(pv.size));
            }
            recs = d2r::fit_policy(ctx, policy, pv, train, val, fo);
          }
          for (const auto& r : recs) records.append(fit_record_dict(r));
        });
        return records;
      },
      nb::arg("ctx"), nb::arg("x"), nb::arg("y"), nb::arg("params"), nb::kw_only(),
      nb::arg("val_x").none() = nb::none(), nb::arg("val_y").none() = nb::none(), nb::arg("options") = nb::dict(),
      nb::arg("on_record").none() = nb::none(),
      nb::arg("communicator").none() = nb::none(), nb::arg("deterministic_reduction") = false,
      nb::arg("reduction_block_rows") = 256,
      "Trains a Gaussian regression policy into params (mse, nll or pg with a fixed reward); returns the records.");

  m.def(
      "fit_classifier",
      [](d2r::Context& ctx, nb::object x, nb::object labels, std::int64_t classes, nb::object params,
         nb::object val_x, nb::object val_labels, nb::dict options, nb::object on_record, nb::object communicator, bool deterministic_reduction,
         std::int64_t reduction_block_rows) {
        Call c("fit_classifier", ctx);
        Options o("fit_classifier", options);
        const Arg xa = c.input("x", x), la = c.input("labels", labels), pa = c.output("params", params),
                  vxa = c.input("val_x", val_x, true), vla = c.input("val_labels", val_labels, !vxa.present);
        const Scalar s = c.scalar(xa);
        c.expect_scalar(pa), c.expect_scalar(vxa);
        nb::list records;
        dispatch(s, [&]<class T>() {
          const d2r::MlpSpec spec{.inputs = xa.ndim() == 2 ? xa.shape(1) : 0,
                                  .hidden = o.get<std::vector<std::int64_t>>("hidden", {}), .outputs = 0,
                                  .activation = parse_activation("options", o.choice("activation", "relu", {"relu", "tanh"})),
                                  .layer_norm = o.get<bool>("layer_norm", false)};
          d2r::ClassifierFitOptions<T> fo;
          fo.loss = o.choice("loss", "nll", {"nll", "pg"}) == "pg" ? d2r::PolicyLoss::pg : d2r::PolicyLoss::nll;
          fo.epochs = o.get<std::int64_t>("epochs", fo.epochs);
          fo.batch_size = o.get<std::int64_t>("batch_size", fo.batch_size);
          read_shared_options(o, fo);
          o.finish();
          fo.parallel = data_parallel(c.fn(), communicator, deterministic_reduction, reduction_block_rows);
          if (!on_record.is_none()) {
            fo.on_record = [on_record](const d2r::PolicyFitRecord& r) {
              nb::gil_scoped_acquire gil;
              on_record(fit_record_dict(r));
            };
          }
          const d2r::ClassificationData<T> train{c.matrix<const T>(xa), c.vector<const std::int32_t>(la)};
          const d2r::ClassificationData<T> val =
              vxa.present ? d2r::ClassificationData<T>{c.matrix<const T>(vxa), c.vector<const std::int32_t>(vla)}
                          : d2r::ClassificationData<T>{};
          const auto pv = c.vector<T>(pa);
          std::vector<d2r::PolicyFitRecord> recs;
          {
            nb::gil_scoped_release rel;
            const std::int64_t capacity = std::max(train.x.rows, val.x.rows);
            d2r::CategoricalPolicy<T> policy(ctx, spec, classes, capacity);
            if (pv.size != policy.parameter_count()) {
              nb::gil_scoped_acquire gil;
              bad_argument(c.fn(), "params", "expected " + std::to_string(policy.parameter_count()) +
                                                 " entries (the network's parameter count), got " +
                                                 std::to_string(pv.size));
            }
            recs = d2r::fit_classifier(ctx, policy, pv, train, val, fo);
          }
          for (const auto& r : recs) records.append(fit_record_dict(r));
        });
        return records;
      },
      nb::arg("ctx"), nb::arg("x"), nb::arg("labels"), nb::arg("classes"), nb::arg("params"), nb::kw_only(),
      nb::arg("val_x").none() = nb::none(), nb::arg("val_labels").none() = nb::none(),
      nb::arg("options") = nb::dict(), nb::arg("on_record").none() = nb::none(),
      nb::arg("communicator").none() = nb::none(), nb::arg("deterministic_reduction") = false,
      nb::arg("reduction_block_rows") = 256,
      "Trains a categorical policy (logistic regression by default) into params; one record per epoch.");

  m.def(
      "standardize_targets",
      [](d2r::Context& ctx, nb::object y, nb::object out, nb::object mean, double scale, const std::string& fn,
         const std::string& name) {
        // `d2r fit`'s target scaling (d2r::standardize_targets, or apply_target_scaling with a given
        // mean and scale) in double on a host copy of y, the result cast to y's dtype into out: the
        // same bits as the CLI's targets when y holds the CLI's values.
        Call c(fn, ctx);
        const Arg ya = c.input(name, y), oa = c.output("out", out);
        const Scalar s = c.scalar(ya);
        c.expect_scalar(oa);
        nb::tuple result;
        dispatch(s, [&]<class T>() {
          const d2r::MatrixView<const T> yv = c.matrix<const T>(ya);
          const d2r::MatrixView<T> ov = c.matrix<T>(oa);
          if (ov.rows != yv.rows || ov.cols != yv.cols || (ov.rows > 1 && ov.row_stride != ov.cols)) {
            bad_argument(fn, "out", fmt::format("expected a contiguous {} x {} array, got {} x {} (row stride {})",
                                                yv.rows, yv.cols, ov.rows, ov.cols, ov.row_stride));
          }
          const std::vector<T> host = ctx.to_host(yv);
          d2r::Dataset d;
          d.task = d2r::Task::regression;
          d.rows = yv.rows;
          d.target_names.assign(static_cast<std::size_t>(yv.cols), std::string());
          d.targets.assign(host.begin(), host.end());
          for (std::size_t i = 0; i < d.targets.size(); ++i) {
            if (!std::isfinite(d.targets[i])) {
              const auto cols = static_cast<std::size_t>(yv.cols);
              bad_argument(fn, name, fmt::format("{}[{}, {}] is {}: the targets must be finite", name, i / cols,
                                                 i % cols, d.targets[i]));
            }
          }
          d2r::TargetScaling ts;
          if (!mean.is_none()) {
            ts.mean = nb::cast<std::vector<double>>(mean);
            if (static_cast<std::int64_t>(ts.mean.size()) != yv.cols) {
              bad_argument(fn, name, fmt::format("expected {} columns (one per target mean), got {}", ts.mean.size(),
                                                 yv.cols));
            }
            ts.scale = scale;
            d2r::apply_target_scaling(d, ts);
          } else {
            if (d.rows < 2) {
              bad_argument(fn, name, fmt::format("standardising the targets needs at least 2 rows (their std uses "
                                                 "N - 1), got {}; pass standardize_targets=False", d.rows));
            }
            try {
              ts = d2r::standardize_targets(d);  // refuses constant targets (tested exactly)
            } catch (const d2r::Error& e) {
              if (e.kind() != d2r::ErrorKind::invalid_argument) throw;
              bad_argument(fn, name,
                           "the targets are constant (zero variance), so they cannot be standardised; pass "
                           "standardize_targets=False");
            }
          }
          const std::vector<T> scaled(d.targets.begin(), d.targets.end());  // as d2r fit uploads them
          if (!scaled.empty()) ctx.from_host(ov.data, scaled.data(), scaled.size() * sizeof(T));
          result = nb::make_tuple(ts.mean, ts.scale);
        });
        return result;
      },
      nb::arg("ctx"), nb::arg("y"), nb::arg("out"), nb::kw_only(), nb::arg("mean").none() = nb::none(),
      nb::arg("scale") = 1.0, nb::arg("fn") = "standardize_targets", nb::arg("name") = "y",
      "`d2r fit`'s target scaling: y' = (y - mean) / scale with column means and one scale for every column (the "
      "RMS of the columns' standard deviations, divisor N - 1: d2r::standardize_targets), computed in double and "
      "written into out (y's shape and dtype, contiguous, in the context's memory); returns (mean, scale). With "
      "mean= (and scale=) applies that scaling instead (d2r::apply_target_scaling: the validation rows). y is "
      "read, never written. fn and name name the caller and the argument in errors: non-finite targets, fewer "
      "than 2 rows, constant targets.");

  m.def(
      "reward_in_scale",
      [](const std::string& form, const std::vector<double>& params, double factor) {
        return d2r::runs::reward_in_scale(parse_reward_form("reward_in_scale", form), params, 0, factor);
      },
      nb::arg("form"), nb::arg("params"), nb::arg("factor"),
      "The parameters of the same reward on targets multiplied by factor (d2r::runs::reward_in_scale: U / "
      "factor^2 for the scalar and diagonal forms, R / factor for the packed R of a full one): with factor the "
      "target scale, a reward on the standardised targets in the original units.");

  m.def("parameter_count", [](std::int64_t inputs, const std::vector<std::int64_t>& hidden, std::int64_t outputs,
                              bool layer_norm) {
    return d2r::Mlp({.inputs = inputs, .hidden = hidden, .outputs = outputs, .layer_norm = layer_norm}).parameter_count();
  }, nb::arg("inputs"), nb::arg("hidden"), nb::arg("outputs"), nb::arg("layer_norm") = false);
}

}  // namespace d2rpy
