// The checks of a fit's settings and data (d2r/fit_run.hpp): every field before anything is
// allocated, then the library options through d2r::check; the memory a run needs; the data's
// identity for a resume (data_hash); and the non-finite final figures of a finished run.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "d2r/error.hpp"
#include "d2r/fit_run.hpp"
#include "host/src/backend.hpp"
#include "host/src/checkpoint.hpp"

namespace d2r::runs {

namespace {

[[noreturn]] void fail(std::string_view argument, const std::string& what) {
  throw Error(ErrorKind::invalid_argument, std::string(argument),
              fmt::format("d2r::runs::check: argument '{}': {}", argument, what));
}

using detail::on_device;

bool positive_finite(double v) { return std::isfinite(v) && v > 0; }

/// Reward parameters: finite, and > 0 where U needs it (every entry of a scalar or diagonal form,
/// the diagonal of a full form's R).
void check_reward_values(RewardForm form, const std::vector<double>& params, std::int64_t dims) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const double v = params[i];
    bool diagonal = form != RewardForm::full;
    if (!diagonal) {
      for (std::int64_t r = 0; r < dims; ++r) diagonal = diagonal || static_cast<std::int64_t>(i) == r * (r + 1) / 2 + r;
    }
    if (!std::isfinite(v) || (diagonal && !(v > 0))) {
      fail("config.reward_params", fmt::format("entry {} is {}; expected finite{}", i, v, diagonal ? " and > 0" : ""));
    }
  }
}

/// The precision and the policy's fields of either task.
template <class Config>
void check_model_settings(const Config& c, const Context& ctx) {
  if (c.double_precision && on_device(ctx)) {
    fail("config.double_precision", "double precision runs on the cpu backend only (use --device cpu or float)");
  }
  for (std::int64_t h : c.hidden) {
    if (h < 1) fail("config.hidden", fmt::format("layer widths must be >= 1, got {}", h));
  }
  if (!(std::isfinite(c.lambda) && c.lambda >= 0)) {
    fail("config.lambda", fmt::format("expected a finite entropy weight λ >= 0, got {}", c.lambda));
  }
}

/// The step counts of the bilevel method of either task.
template <class Config>
void check_bilevel_steps(const Config& c) {
  if (c.outer_steps < 1) fail("config.outer_steps", fmt::format("expected >= 1, got {}", c.outer_steps));
  if (c.bilevel.inner.steps < 1) fail("config.bilevel.inner.steps", fmt::format("expected >= 1, got {}", c.bilevel.inner.steps));
  if (c.bilevel.inner.batch_size < 0) {
    fail("config.bilevel.inner.batch_size",
         fmt::format("expected rows per inner step >= 0 (0: full batch), got {}", c.bilevel.inner.batch_size));
  }
}

/// The outer-loop fields of either task.
template <class Config>
void check_outer_settings(const Config& c) {
  if (c.preset != "paper" && c.preset != "recommended" && c.preset != "stationary") {
    fail("config.preset", fmt::format("expected \"recommended\", \"stationary\" or \"paper\", got \"{}\"", c.preset));
  }
  // Classification may retrain PG (FinalModel::pg); a regression run returns an inner policy.
  constexpr bool classification = requires { c.beta; };
  if (c.final_model != FinalModel::best && c.final_model != FinalModel::last &&
      (!classification || c.final_model != FinalModel::pg)) {
    fail("config.final_model", fmt::format("expected best or last{}, got value {}", classification ? " or pg" : "",
                                           static_cast<int>(c.final_model)));
  }
  if (!positive_finite(c.bilevel.rprop.initial_step) || c.bilevel.rprop.initial_step > 10) {
    fail("config.bilevel.rprop.initial_step", fmt::format("expected a log-space step in (0, 10], got {}", c.bilevel.rprop.initial_step));
  }
  if (!(std::isfinite(c.bilevel.inner.stationarity_tolerance) && c.bilevel.inner.stationarity_tolerance >= 0)) {
    fail("config.bilevel.inner.stationarity_tolerance",
              fmt::format("expected a finite tolerance >= 0 (0: no check), got {}", c.bilevel.inner.stationarity_tolerance));
  }
  const std::int64_t cap = c.bilevel.inner.max_steps;
  if (cap < 0 || cap > (std::int64_t{1} << 24)) {
    fail("config.bilevel.inner.max_steps", fmt::format("expected 0 (K_in) to 2^24, got {}", c.bilevel.inner.max_steps));
  }
  if (!positive_finite(c.bilevel.cg.tolerance)) {
    fail("config.bilevel.cg.tolerance", fmt::format("expected a finite tolerance > 0, got {}", c.bilevel.cg.tolerance));
  }
  if (!(std::isfinite(c.bilevel.cg.damping) && c.bilevel.cg.damping >= 0)) {
    fail("config.bilevel.cg.damping", fmt::format("expected a finite damping >= 0, got {}", c.bilevel.cg.damping));
  }
  if (c.bilevel.stopping.window < 2) fail("config.bilevel.stopping.window", fmt::format("expected >= 2 outer steps, got {}", c.bilevel.stopping.window));
  if (!positive_finite(c.bilevel.stopping.reward_tolerance)) {
    fail("config.bilevel.stopping.reward_tolerance", fmt::format("expected a tolerance > 0, got {}", c.bilevel.stopping.reward_tolerance));
  }
  if (!positive_finite(c.bilevel.stopping.loss_tolerance)) {
    fail("config.bilevel.stopping.loss_tolerance", fmt::format("expected a tolerance > 0, got {}", c.bilevel.stopping.loss_tolerance));
  }
}

/// The least memory a run needs (the parameters and their gradient and Adam moments, the
/// activations of one pass over the largest data set): refused with the figure when it is more
/// than the machine has, instead of failing with std::bad_alloc (or the device's out-of-memory)
/// in the middle.
void check_memory_of(bool double_precision, bool bilevel, const std::vector<std::int64_t>& hidden, std::int64_t inputs,
                     std::int64_t outputs, std::int64_t rows, const Context& ctx) {
  long double params = 0, width = static_cast<long double>(inputs), activations = 0;
  for (std::int64_t h : hidden) {
    params += (width + 1) * static_cast<long double>(h);
    activations += static_cast<long double>(h);
    width = static_cast<long double>(h);
  }
  params += (width + 1) * static_cast<long double>(outputs);
  const long double scalar = double_precision ? 8 : 4;
  // Vectors of the parameters' size a run holds: θ, its gradient and Adam's moments; a bilevel run
  // also the inner and outer optimisers' state, the solver's vectors and the HVP's scratch. Peak
  // RSS on the cpu backend (--hidden 4000,4000, float, 64 MB a vector): 3 such vectors for nll,
  // 17.7 (regression) and 19.7 (classification) for bilevel.
  const long double copies = bilevel ? 20 : 4;
  const long double need = scalar * (copies * params + static_cast<long double>(rows) * (activations + outputs));
  std::uint64_t have = 0;
  std::string where;
  if (on_device(ctx)) {
    have = ctx.device_properties().total_memory_bytes;
    where = "device memory";
  } else {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) have = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
    where = "memory";
    // A container's limit (cgroup v2) is what the run may use, when it is lower.
    if (std::ifstream limit("/sys/fs/cgroup/memory.max"); limit) {
      std::uint64_t bytes = 0;
      if (limit >> bytes && bytes > 0 && (have == 0 || bytes < have)) {
        have = bytes;
        where = "memory (the container's limit)";
      }
    }
  }
  if (have > 0 && need > static_cast<long double>(have)) {
    constexpr long double GiB = 1024.0L * 1024 * 1024;
    throw Error(ErrorKind::invalid_argument, "config.hidden",
                fmt::format("d2r::runs::check_memory: argument 'config.hidden': this network ({:.3g} parameters, "
                            "layers {}) needs at least {:.1f} GiB, more than the {:.1f} GiB of {} this machine has; "
                            "use narrower layers",
                            static_cast<double>(params), fmt::join(hidden, ","), static_cast<double>(need / GiB),
                            static_cast<double>(static_cast<long double>(have) / GiB), where));
  }
}

}  // namespace

void check(const RegressionConfig& c, const HostData& train, const HostData& held, const Context& ctx) {
  const auto check_data = [&](const HostData& d, const char* name) {
    if (d.inputs < 1 || d.dims < 1 || static_cast<std::int64_t>(d.x.size()) != d.rows * d.inputs ||
        static_cast<std::int64_t>(d.y.size()) != d.rows * d.dims) {
      fail(name, fmt::format("inconsistent data: {} rows, {} inputs, {} targets, {} and {} values", d.rows,
                                       d.inputs, d.dims, d.x.size(), d.y.size()));
    }
  };
  check_data(train, "train");
  if (train.rows < 2) fail("train", fmt::format("expected at least 2 rows, got {}", train.rows));
  if (!held.empty()) {
    check_data(held, "held_out");
    if (held.inputs != train.inputs || held.dims != train.dims) {
      fail("held_out", "its columns differ from the training data's");
    }
  }
  if (!positive_finite(c.target_scale)) {
    fail("config.target_scale", fmt::format("expected a finite scale > 0 (1: targets not scaled), got {}", c.target_scale));
  }
  if (!c.target_mean.empty() && static_cast<std::int64_t>(c.target_mean.size()) != train.dims) {
    fail("config.target_mean", fmt::format("expected {} entries (one per target) or none, got {}", train.dims,
                                           c.target_mean.size()));
  }
  for (std::size_t i = 0; i < c.target_mean.size(); ++i) {
    if (!std::isfinite(c.target_mean[i])) fail("config.target_mean", fmt::format("entry {} is not finite", i));
  }
  check_model_settings(c, ctx);
  if (c.generations < 1) fail("config.generations", fmt::format("expected G >= 1, got {}", c.generations));
  const bool uses_reward = c.method == Method::pg || c.method == Method::bilevel;
  if (!uses_reward && !c.reward_params.empty()) {
    fail("config.reward_params", fmt::format("reward parameters are used by --method pg and bilevel only, not {}",
                                      to_string(c.method)));
  }
  if (uses_reward) {
    const std::int64_t S = reward_param_count(c.reward_form, train.dims);
    if (static_cast<std::int64_t>(c.reward_params.size()) != S) {
      fail("config.reward_params",
                fmt::format("a {} reward on {} targets has {} parameter{}{}, got {}", d2r::to_string(c.reward_form),
                            train.dims, S, S == 1 ? "" : "s",
                            c.reward_form == RewardForm::full ? " (the packed rows of R, U = R Rᵀ)" : "",
                            c.reward_params.size()));
    }
    check_reward_values(c.reward_form, c.reward_params, train.dims);
  }
  if (c.method == Method::heuristic && !(c.lambda > 0)) {
    fail("config.lambda", "the heuristic reward needs λ > 0");
  }
  if (c.method == Method::bilevel) {
    if (c.head != GaussianHead::diagonal) {
      fail("config.head", "the bilevel method trains a diagonal Gaussian head only");
    }
    check_bilevel_steps(c);
    if (!positive_finite(c.bilevel.inner.adam.learning_rate)) {
      fail("config.bilevel.inner.adam.learning_rate", fmt::format("expected a finite learning rate > 0, got {}", c.bilevel.inner.adam.learning_rate));
    }
    if (!positive_finite(c.bilevel.outer_adam.learning_rate)) {
      fail("config.bilevel.outer_adam.learning_rate", fmt::format("expected a finite learning rate > 0, got {}", c.bilevel.outer_adam.learning_rate));
    }
    if (c.bilevel.outer_data == OuterData::validation && held.empty()) {
      fail("config.bilevel.outer_data",
                "the outer loss is on the validation rows by default, and there are none: give --val-fraction > 0 "
                "or --outer-data train");
    }
    check_outer_settings(c);
    d2r::check(bilevel_options<double>(c));
  } else {
    if (c.plain.steps < 1) fail("config.plain.steps", fmt::format("expected >= 1 training steps, got {}", c.plain.steps));
    if (!positive_finite(c.plain.adam.learning_rate)) {
      fail("config.plain.adam.learning_rate", fmt::format("expected a finite learning rate > 0, got {}", c.plain.adam.learning_rate));
    }
    if (c.plain.evaluate_every < 1) fail("config.plain.evaluate_every", fmt::format("expected >= 1, got {}", c.plain.evaluate_every));
    d2r::check(fit_options(c));
  }
}

void check(const ClassificationConfig& c, const ClassHostData& train, const ClassHostData& val, const ClassHostData& test,
           std::int64_t classes, const Context& ctx) {
  if (classes < 2) fail("classes", fmt::format("expected at least 2 classes, got {}", classes));
  const auto check_data = [&](const ClassHostData& d, const char* name) {
    if (d.inputs < 1 || static_cast<std::int64_t>(d.x.size()) != d.rows * d.inputs ||
        static_cast<std::int64_t>(d.labels.size()) != d.rows) {
      fail(name, fmt::format("inconsistent data: {} rows, {} inputs, {} values and {} labels", d.rows,
                                       d.inputs, d.x.size(), d.labels.size()));
    }
    if (d.inputs != train.inputs) fail(name, "its columns differ from the training data's");
    for (std::int32_t l : d.labels) {
      if (l < 0 || l >= classes) fail(name, fmt::format("label {} is not in [0, {})", l, classes));
    }
  };
  check_data(train, "train");
  if (train.rows < 2) fail("train", fmt::format("expected at least 2 rows, got {}", train.rows));
  if (!val.empty()) check_data(val, "validation");
  if (test.empty()) fail("test", "expected at least 1 row");
  check_data(test, "test");
  check_model_settings(c, ctx);
  if (c.method == ClassMethod::heuristic && !(c.lambda > 0)) fail("config.lambda", "the heuristic β* needs λ > 0");
  if (c.generations < 1) fail("config.generations", fmt::format("expected G >= 1, got {}", c.generations));
  if (c.plain.epochs < 1) fail("config.plain.epochs", fmt::format("expected >= 1 epochs, got {}", c.plain.epochs));
  if (c.plain.batch_size < 0) fail("config.plain.batch_size", fmt::format("expected >= 0 (0: full batch), got {}", c.plain.batch_size));
  if (!positive_finite(c.learning_rate)) {
    fail("config.learning_rate", fmt::format("expected a finite learning rate > 0, got {}", c.learning_rate));
  }
  if ((c.method == ClassMethod::pg || c.method == ClassMethod::bilevel) && !positive_finite(c.beta)) {
    fail("config.beta", fmt::format("expected a finite β > 0, got {}", c.beta));
  }
  if (c.method == ClassMethod::bilevel) {
    check_bilevel_steps(c);
    if (!positive_finite(c.bilevel.outer_adam.learning_rate)) {
      fail("config.bilevel.outer_adam.learning_rate", fmt::format("expected a finite learning rate > 0, got {}", c.bilevel.outer_adam.learning_rate));
    }
    if (c.bilevel.outer_data == OuterData::validation && val.empty()) {
      fail("config.bilevel.outer_data", "validation needs validation rows (--val-fraction > 0)");
    }
    if (c.beta_tail < 1) fail("config.beta_tail", fmt::format("expected >= 1, got {}", c.beta_tail));
    check_outer_settings(c);
    d2r::check(bilevel_options<double>(c));
  }
  d2r::check(fit_options(c, c.beta));
}

void check_memory(const RegressionConfig& c, const HostData& train, const HostData& held_out, const Context& ctx) {
  const std::int64_t dims = train.dims;
  check_memory_of(c.double_precision, c.method == Method::bilevel, c.hidden, train.inputs,
                  c.head == GaussianHead::cholesky ? dims + dims * (dims + 1) / 2 : 2 * dims,
                  std::max(train.rows, held_out.rows), ctx);
}

void check_memory(const ClassificationConfig& c, const ClassHostData& train, const ClassHostData& validation,
                  const ClassHostData& test, std::int64_t classes, const Context& ctx) {
  check_memory_of(c.double_precision, c.method == ClassMethod::bilevel, c.hidden, train.inputs, classes,
                  std::max({train.rows, validation.rows, test.rows}), ctx);
}

namespace {

/// data_hash of any number of value arrays (each a vector of numbers or labels).
template <class... V>
std::string hash_of(const V&... parts) {
  std::uint64_t h = 1469598103934665603ull;
  ((h = detail::fnv1a(reinterpret_cast<const char*>(parts.data()), parts.size() * sizeof(parts[0]), h)), ...);
  return fmt::format("{:016x}", h);
}

/// The first non-finite value among `values` (named), or "".
std::string first_non_finite(std::initializer_list<std::pair<const char*, double>> values) {
  for (const auto& [name, v] : values) {
    if (!std::isfinite(v)) return fmt::format("{} is {}", name, v);
  }
  return "";
}

}  // namespace

std::string data_hash(const HostData& train, const HostData& held_out) {
  return hash_of(train.x, train.y, held_out.x, held_out.y);
}

std::string data_hash(const ClassHostData& train, const ClassHostData& validation, const ClassHostData& test) {
  return hash_of(train.x, train.labels, validation.x, validation.labels, test.x, test.labels);
}

std::string non_finite(const RunResult& r, bool held_out) {
  std::string d = first_non_finite({{"the final training NLL", r.train.nll_per_dim},
                                    {"the final training RMSE", r.train.rmse},
                                    {"the final validation NLL", held_out ? r.held_out.nll_per_dim : 0.0},
                                    {"the final validation RMSE", held_out ? r.held_out.rmse : 0.0}});
  for (std::size_t i = 0; d.empty() && i < r.reward_params.size(); ++i) {
    if (!std::isfinite(r.reward_params[i])) d = fmt::format("reward parameter {} is {}", i, r.reward_params[i]);
  }
  return d;
}

std::string non_finite(const ClassificationResult& r, bool validation, ClassMethod method) {
  return first_non_finite({{"the final training cross-entropy", r.train.nll_per_dim},
                           {"the final test cross-entropy", r.test.nll_per_dim},
                           {"the final validation cross-entropy", validation ? r.validation.nll_per_dim : 0.0},
                           {"the learned β", method == ClassMethod::nll ? 0.0 : r.beta}});
}

}  // namespace d2r::runs
