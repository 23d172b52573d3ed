#pragma once
// The trainers' options from a Python dict (bind_trainers.cpp): the checked reader, the MLP trunk
// and BilevelTrainer's options with their presets, and the dict key behind a library field for
// the library's messages.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.hpp"
#include "d2r/bilevel.hpp"
#include "d2r/fields.hpp"

namespace d2rpy {

/// Reads typed options out of a dict; every key must be known.
class Options {
 public:
  /// `d["_given"]` (optional): the keys the caller's user gave, the others being the front end's
  /// defaults (given() answers for those alone).
  Options(std::string_view fn, nb::dict d) : fn_(fn), d_(std::move(d)) {
    if (d_.contains("_given")) {
      seen_.insert("_given");
      std::vector<std::string> keys;
      if (!nb::try_cast(d_["_given"], keys)) bad_argument(fn_, "_given", "expected a list of option names");
      given_ = std::set<std::string>(keys.begin(), keys.end());
      has_given_ = true;
    }
  }
  template <class V>
  V get(const char* key, V fallback) {
    seen_.insert(key);
    if (!d_.contains(key)) return fallback;
    if constexpr (std::is_arithmetic_v<V> && !std::is_same_v<V, bool>) {
      // Python's bool is an int: steps=True would run one step.
      if (nb::isinstance<nb::bool_>(d_[key])) bad_argument(fn_, key, "expected a number, got a bool");
    }
    V v;
    if (!nb::try_cast(d_[key], v)) {
      bad_argument(fn_, key, std::string("wrong type: ") + nb::inst_name(d_[key]).c_str());
    }
    return v;
  }
  std::string choice(const char* key, const std::string& fallback, std::initializer_list<const char*> allowed) {
    const std::string v = get<std::string>(key, fallback);
    for (const char* a : allowed) {
      if (v == a) return v;
    }
    refuse(key, std::vector<const char*>(allowed), v);
  }
  /// The enumerator whose name is the value of `key` (absent: `fallback`), among `names`.
  template <class E>
  E choice(const char* key, E fallback, std::initializer_list<std::pair<const char*, E>> names) {
    std::string dflt;
    std::vector<const char*> allowed;
    for (const auto& [n, e] : names) {
      allowed.push_back(n);
      if (e == fallback) dflt = n;
    }
    const std::string v = get<std::string>(key, dflt);
    for (const auto& [n, e] : names) {
      if (v == n) return e;
    }
    refuse(key, allowed, v);
  }
  /// Whether the user gave `key` (the dict has it, and `_given` lists it when there is one).
  [[nodiscard]] bool given(const char* key) const {
    return d_.contains(key) && (!has_given_ || given_.count(key) > 0);
  }
  void finish() {
    for (auto [k, v] : d_) {
      const std::string key = nb::cast<std::string>(k);
      if (!seen_.count(key)) bad_argument(fn_, key, "unknown option");
    }
  }

 private:
  [[noreturn]] void refuse(const char* key, const std::vector<const char*>& allowed, const std::string& value) const {
    std::string list;
    for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + "'" + a + "'";
    bad_argument(fn_, key, "expected one of " + list + ", got '" + value + "'");
  }
  std::string_view fn_;
  nb::dict d_;
  std::set<std::string> seen_;
  std::set<std::string> given_;
  bool has_given_ = false;
};

inline d2r::MlpSpec trunk_spec(Options& o, std::int64_t inputs) {
  return {.inputs = inputs, .hidden = o.get<std::vector<std::int64_t>>("hidden", {64, 64}), .outputs = 0,
          .activation = parse_activation("options", o.choice("activation", "relu", {"relu", "tanh"})),
          .layer_norm = o.get<bool>("layer_norm", false)};
}

/// The option (dict key) that sets a field of BilevelOptions, for the library's messages, which
/// name the field ("options.inner.stationarity_tolerance"); the field itself when no key sets it.
inline std::string option_for_field(const std::string& field) {
  static const std::pair<std::string_view, std::string_view> kKeys[] = {
      {"options.inner.objective", "inner_objective"},
      {"options.inner.steps", "inner_steps"},
      {"options.inner.stationarity_tolerance", "inner_tolerance"},
      {"options.inner.max_steps", "inner_max_steps"},
      {"options.inner.adam", "inner_lr"},
      {"options.inner.gradient_clamp", "inner_gradient_clamp"},
      {"options.inner.generations", "generations"},
      {"options.inner.pg.entropy_weight", "entropy_weight"},
      {"options.inner.pg.transform", "transform"},
      {"options.inner.batch_size", "inner_batch_size"},
      {"options.inner_start", "inner_start"},
      {"options.curvature", "curvature"},
      {"options.solver", "solver"},
      {"options.cg.max_iterations", "solver_iterations"},
      {"options.cg.damping", "damping"},
      {"options.cg.tolerance", "solver_tolerance"},
      {"options.neumann.alpha", "neumann_alpha"},
      {"options.neumann.iterations", "neumann_iterations"},
      {"options.outer_adam", "outer_lr"},
      {"options.sgd_learning_rate", "outer_lr"},
      {"options.sgd_momentum", "sgd_momentum"},
      {"options.rprop", "outer_step"},
      {"options.rprop.flat_tolerance", "flat_tolerance"},
      {"options.stopping.window", "window"},
      {"options.stopping.reward_tolerance", "reward_tolerance"},
      {"options.stopping.loss_tolerance", "loss_tolerance"},
      {"options.stopping.patience", "patience"},
      {"options.hypergradient_clamp", "hypergradient_clamp"},
      {"options.reward_floor", "reward_floor"},
      {"options.reward_ceiling", "reward_ceiling"},
      {"options.outer_data", "outer_data"},
      {"options.optimizer", "outer_optimizer"},
      {"options.head", "head"}};
  // The longest entry that is the field or a prefix of it ("options.inner.adam.learning_rate": inner_lr).
  std::string_view best;
  std::string key = field;
  for (const auto& [name, k] : kKeys) {
    const bool match = field == name || (field.starts_with(name) && field.size() > name.size() && field[name.size()] == '.');
    if (match && name.size() > best.size()) {
      best = name;
      key = std::string(k);
    }
  }
  return key;
}

/// The options of a BilevelTrainer from the dict: `preset` ('paper', the default here as in the
/// library; 'recommended', d2r fit's default; 'stationary') gives every default, as `d2r fit
/// --preset` does (d2r::runs::apply_bilevel_preset's fields), and each key overrides one field.
template <class T>
d2r::BilevelOptions<T> bilevel_options(Options& o) {
  const std::string preset = o.choice("preset", "paper", {"paper", "recommended", "stationary"});
  const d2r::BilevelOptions<double> base = preset == "stationary"    ? d2r::BilevelOptions<double>::stationary()
                                           : preset == "recommended" ? d2r::BilevelOptions<double>::recommended()
                                                                     : d2r::BilevelOptions<double>::paper();
  d2r::BilevelOptions<double> b = base;
  using d2r::InnerObjective, d2r::InnerStart, d2r::CurvatureKind, d2r::ImplicitSolver, d2r::OuterOptimizer;
  b.inner.objective = o.choice("inner_objective", base.inner.objective,
                           {{"reinforce", InnerObjective::reinforce}, {"exact", InnerObjective::exact}});
  b.inner.steps = o.get<std::int64_t>("inner_steps", b.inner.steps);
  b.inner.stationarity_tolerance = o.get<double>("inner_tolerance", b.inner.stationarity_tolerance);
  b.inner.max_steps = o.get<std::int64_t>("inner_max_steps", b.inner.max_steps);
  if (b.inner.max_steps < 0) {  // before the rule below turns it into K_in
    bad_argument("BilevelTrainer", "inner_max_steps",
                 "expected a cap >= 0 on the inner steps of an outer step (0: inner_steps), got " +
                     std::to_string(b.inner.max_steps));
  }
  b.inner.adam.learning_rate = o.get<double>("inner_lr", b.inner.adam.learning_rate);
  b.inner.gradient_clamp = o.get<double>("inner_gradient_clamp", b.inner.gradient_clamp);
  b.inner.generations = o.get<std::int64_t>("generations", b.inner.generations);
  b.inner.pg.entropy_weight = o.get<double>("entropy_weight", b.inner.pg.entropy_weight);
  b.inner.pg.transform.kind = parse_transform(
      "options", o.choice("transform", "none", {"none", "normalize", "rbf", "leave_one_out", "standardize"}));
  b.inner.batch_size = o.get<std::int64_t>("inner_batch_size", 0);
  b.head = o.choice("head", base.head, {{"diagonal", d2r::GaussianHead::diagonal}, {"cholesky", d2r::GaussianHead::cholesky}});
  b.inner_start = o.choice("inner_start", base.inner_start,
                       {{"fresh", InnerStart::fresh}, {"warm", InnerStart::warm}, {"fixed", InnerStart::fixed}});
  b.curvature = o.choice("curvature", base.curvature,
                     {{"exact", CurvatureKind::exact}, {"surrogate", CurvatureKind::surrogate}});
  b.solver = o.choice("solver", base.solver,
                  {{"normal_cg", ImplicitSolver::normal_cg},
                   {"cg", ImplicitSolver::conjugate_gradient},
                   {"neumann", ImplicitSolver::neumann},
                   {"cg_or_normal_cg", ImplicitSolver::cg_or_normal_cg}});
  b.cg.max_iterations = o.get<std::int64_t>("solver_iterations", b.cg.max_iterations);
  b.cg.damping = o.get<double>("damping", b.cg.damping);
  b.cg.tolerance = o.get<double>("solver_tolerance", b.cg.tolerance);
  b.neumann.alpha = o.get<double>("neumann_alpha", b.neumann.alpha);
  b.neumann.iterations = o.get<std::int64_t>("neumann_iterations", b.neumann.iterations);
  b.neumann.damping = b.cg.damping;
  b.optimizer = o.choice("outer_optimizer", base.optimizer,
                     {{"adam", OuterOptimizer::adam}, {"sgd", OuterOptimizer::sgd}, {"rprop", OuterOptimizer::rprop}});
  b.outer_adam.learning_rate = o.get<double>("outer_lr", b.outer_adam.learning_rate);
  b.sgd_learning_rate = b.outer_adam.learning_rate;
  b.sgd_momentum = o.get<double>("sgd_momentum", b.sgd_momentum);
  b.reset_outer_optimizer = o.get<bool>("reset_outer_optimizer", b.reset_outer_optimizer);
  b.log_space = o.get<bool>("log_space", b.log_space);
  b.rprop.initial_step = o.get<double>("outer_step", b.rprop.initial_step);
  b.rprop.flat_tolerance = o.get<double>("flat_tolerance", b.rprop.flat_tolerance);
  b.stopping.window = o.get<std::int64_t>("window", b.stopping.window);
  b.stopping.reward_tolerance = o.get<double>("reward_tolerance", b.stopping.reward_tolerance);
  b.stopping.loss_tolerance = o.get<double>("loss_tolerance", b.stopping.loss_tolerance);
  b.stopping.patience = o.get<std::int64_t>("patience", b.stopping.patience);
  b.hypergradient_clamp = o.get<double>("hypergradient_clamp", b.hypergradient_clamp);
  b.reward_floor = o.get<double>("reward_floor", b.reward_floor);
  b.reward_ceiling = o.get<double>("reward_ceiling", b.reward_ceiling);
  b.outer_data = o.choice("outer_data", base.outer_data,
                      {{"train", d2r::OuterData::train}, {"validation", d2r::OuterData::validation}});
  b.seed = o.get<std::uint64_t>("seed", 0);
  b.cuda_graph = o.get<bool>("cuda_graph", true);
  // The two rules of `d2r fit` (d2r::runs::bilevel_options): Rprop's step bounds take in the
  // initial step, and a nonzero inner step cap is at least K_in.
  b.rprop.max_step = std::max(b.rprop.max_step, b.rprop.initial_step);
  b.rprop.min_step = std::min(b.rprop.min_step, b.rprop.initial_step);
  if (b.inner.max_steps != 0) b.inner.max_steps = std::max(b.inner.max_steps, b.inner.steps);
  // A key that sets only fields these settings never read would silently do nothing (d2r::inert_fields).
  const std::vector<std::string> inert = d2r::inert_fields(b);
  // The fields each key sets (one or two; "" none).
  struct Sets {
    const char* key;
    std::string_view field, other;
  };
  static constexpr Sets kSets[] = {{"outer_lr", "outer_adam.learning_rate", "sgd_learning_rate"},
                                   {"sgd_momentum", "sgd_momentum", ""},
                                   {"log_space", "log_space", ""},
                                   {"outer_step", "rprop.initial_step", ""},
                                   {"flat_tolerance", "rprop.flat_tolerance", ""},
                                   {"neumann_alpha", "neumann.alpha", ""},
                                   {"neumann_iterations", "neumann.iterations", ""},
                                   {"solver_iterations", "cg.max_iterations", ""},
                                   {"solver_tolerance", "cg.tolerance", ""},
                                   {"generations", "inner.generations", ""},
                                   {"transform", "inner.pg.transform", ""}};
  for (const Sets& k : kSets) {
    if (!o.given(k.key) || !d2r::is_inert(inert, k.field) || (!k.other.empty() && !d2r::is_inert(inert, k.other))) {
      continue;
    }
    const bool solver = k.field.starts_with("cg.") || k.field.starts_with("neumann.");
    const std::string with = k.field.starts_with("inner.") ? "inner_objective='exact' and curvature='exact', which sample "
                                                             "nothing"
                             : solver ? std::string("solver='") + d2r::to_string(b.solver) + "'"
                                      : std::string("outer_optimizer='") + d2r::to_string(b.optimizer) + "'";
    bad_argument("BilevelTrainer", k.key, "not used with " + with + " (preset '" + preset + "'); drop it");
  }
  return d2r::options_cast<d2r::BilevelOptions<T>>(b);
}

}  // namespace d2rpy
