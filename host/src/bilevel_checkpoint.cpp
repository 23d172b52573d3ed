// BilevelTrainer's checkpoints (d2r/bilevel.hpp: save, load, set_checkpoint_identity): the
// fingerprint compared on resume, the records, and the checks of a file's values before any state
// changes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "d2r/bilevel.hpp"
#include "d2r/error.hpp"
#include "host/src/bilevel_impl.hpp"
#include "host/src/checkpoint.hpp"
#include "host/src/trainer_common.hpp"

namespace d2r {

using bilevel_detail::kCheckpointFormat;
using bilevel_detail::kCheckpointPrefix;
using bilevel_detail::kCheckpointVersion;

namespace {

// The fingerprint walks the options with for_each_field (bilevel.hpp), which lists the fields by
// hand: a field added to a struct but not to its visitor would let a checkpoint resume under
// another value of it. These sizes catch the addition (x86-64 / aarch64, as the hosts d2r
// builds on): add the field to for_each_field, then update the size here.
static_assert(sizeof(InnerOptions<float>) == 104 && sizeof(InnerOptions<double>) == 152,
              "InnerOptions changed: add the new field to its for_each_field (bilevel.hpp), then update this size");
static_assert(sizeof(BilevelOptions<float>) == 376 && sizeof(BilevelOptions<double>) == 440,
              "BilevelOptions changed: add the new field to its for_each_field (bilevel.hpp), then update this size");

/// "name = value" lines of a fingerprint (after its first line) as ordered pairs.
std::vector<std::pair<std::string, std::string>> fingerprint_lines(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t at = text.find('\n');
  at = at == std::string_view::npos ? text.size() : at + 1;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(at, end - at);
    const std::size_t eq = line.find(" = ");
    if (eq == std::string_view::npos) {
      out.emplace_back(std::string(line), "");
    } else {
      out.emplace_back(std::string(line.substr(0, eq)), std::string(line.substr(eq + 3)));
    }
    at = end + 1;
  }
  return out;
}

/// A fingerprint written before options.stopping.patience existed (it stops a run, it does not
/// change its steps) read as one with it off, the behaviour of that d2r: the line is inserted after
/// the loss tolerance's, for the library's options and for the program's identity lines alike
/// (both list the stopping fields in an order where patience follows loss_tolerance).
std::string with_patience(std::string saved) {
  for (const std::string_view prefix : {"options.stopping.", "identity.stopping."}) {
    const std::string after = fmt::format("\n{}loss_tolerance = ", prefix);
    if (saved.find(fmt::format("\n{}patience = ", prefix)) != std::string::npos) continue;
    const std::size_t at = saved.find(after);
    if (at == std::string::npos) continue;
    const std::size_t end = saved.find('\n', at + 1);
    if (end == std::string::npos) continue;
    saved.insert(end + 1, fmt::format("{}patience = 0\n", prefix));
  }
  return saved;
}

/// What differs between two fingerprints, one "name: saved X, now Y" per setting.
std::vector<std::string> fingerprint_diff(std::string_view saved, std::string_view current) {
  return field_differences(fingerprint_lines(saved), fingerprint_lines(current));
}

constexpr int kRecordFixed = 24;  // doubles per record before its two vectors

void append_record(std::vector<double>& out, const BilevelRecord& r) {
  out.insert(out.end(), {static_cast<double>(r.step), r.outer_loss, r.train.nll_per_dim, r.train.rmse,
                         r.train.mean_std, r.validation.nll_per_dim, r.validation.rmse, r.validation.mean_std,
                         r.mean_inner_reward, static_cast<double>(static_cast<int>(r.solver_status)),
                         static_cast<double>(r.solver_iterations), r.solver_initial_residual, r.solver_residual,
                         r.wall_seconds, r.train.accuracy, r.validation.accuracy, static_cast<double>(r.inner_steps),
                         r.inner_gradient_norm, r.inner_gradient_norm0, r.hypergradient_clamped ? 1.0 : 0.0,
                         r.max_step, r.at_max_step ? 1.0 : 0.0, r.inner_stationary ? 1.0 : 0.0,
                         r.backtracked ? 1.0 : 0.0});
  out.push_back(static_cast<double>(r.reward_params.size()));
  out.insert(out.end(), r.reward_params.begin(), r.reward_params.end());
  out.push_back(static_cast<double>(r.hypergradient.size()));
  out.insert(out.end(), r.hypergradient.begin(), r.hypergradient.end());
}

std::vector<BilevelRecord> parse_records(const std::vector<double>& in, std::int64_t count,
                                         const std::filesystem::path& path) {
  std::vector<BilevelRecord> out;
  std::size_t at = 0;
  const auto need = [&](std::size_t k) {
    if (in.size() - at < k) {
      throw Error(ErrorKind::io, "path", fmt::format("checkpoint '{}': the records are truncated", path.string()));
    }
  };
  const auto vec = [&](std::vector<double>& v) {
    need(1);
    const auto len = static_cast<std::size_t>(in[at++]);
    need(len);
    v.assign(in.begin() + static_cast<std::ptrdiff_t>(at), in.begin() + static_cast<std::ptrdiff_t>(at + len));
    at += len;
  };
  for (std::int64_t i = 0; i < count; ++i) {
    need(kRecordFixed);
    const double* f = in.data() + at;
    BilevelRecord r;
    r.step = static_cast<std::int64_t>(f[0]);
    r.outer_loss = f[1];
    r.train = {f[2], f[3], f[4]};
    r.validation = {f[5], f[6], f[7]};
    r.mean_inner_reward = f[8];
    r.solver_status = static_cast<SolveStatus>(static_cast<int>(f[9]));
    r.solver_iterations = static_cast<std::int64_t>(f[10]);
    r.solver_initial_residual = f[11];
    r.solver_residual = f[12];
    r.wall_seconds = f[13];
    r.train.accuracy = f[14];
    r.validation.accuracy = f[15];
    r.inner_steps = static_cast<std::int64_t>(f[16]);
    r.inner_gradient_norm = f[17];
    r.inner_gradient_norm0 = f[18];
    r.hypergradient_clamped = f[19] != 0;
    r.max_step = f[20];
    r.at_max_step = f[21] != 0;
    r.inner_stationary = f[22] != 0;
    r.backtracked = f[23] != 0;
    at += kRecordFixed;
    vec(r.reward_params);
    vec(r.hypergradient);
    out.push_back(std::move(r));
  }
  if (at != in.size()) {
    throw Error(ErrorKind::io, "path", fmt::format("checkpoint '{}': trailing record data", path.string()));
  }
  return out;
}

template <class T>
void add_values(detail::CheckpointWriter& w, const std::string& name, const std::vector<T>& v) {
  w.add(name, std::span<const T>(v));
}

template <class T>
std::vector<T> read_values(const detail::CheckpointReader& r, const std::string& name) {
  if constexpr (std::is_same_v<T, float>) {
    return r.floats(name);
  } else {
    return r.doubles(name);
  }
}


}  // namespace

template <class T>
void BilevelTrainer<T>::set_checkpoint_identity(std::span<const std::pair<std::string, std::string>> lines) {
  std::string text;
  for (const auto& [name, value] : lines) {
    D2R_EXPECTS(!name.empty() && name.find('\n') == std::string::npos && name.find(" = ") == std::string::npos &&
                    value.find('\n') == std::string::npos,
                "BilevelTrainer::set_checkpoint_identity", "lines",
                "expected names without line breaks or ' = ' and values without line breaks, got '{}'", name);
    text += fmt::format("identity.{} = {}\n", name, value);
  }
  impl_->identity = std::move(text);
}

template <class T>
void BilevelTrainer<T>::save(const std::filesystem::path& path) const {
  const Impl& s = *impl_;
  detail::CheckpointWriter w;
  w.add_text("fingerprint", impl_->checkpoint_fingerprint() + s.identity);
  add_values(w, "theta", s.theta.to_host());
  add_values(w, "inner_first_moment", s.first_moment.to_host());
  add_values(w, "inner_second_moment", s.second_moment.to_host());
  w.add("inner_count", std::span<const std::int64_t>(s.adam_count.to_host()));
  w.add("phi", std::span<const double>(phi_));
  w.add("outer_first_moment", std::span<const double>(s.outer_m));
  w.add("outer_second_moment", std::span<const double>(s.outer_v));
  w.add("sgd_velocity", std::span<const double>(s.sgd_velocity));
  w.add("rprop_step", std::span<const double>(s.rprop_step));
  w.add("rprop_sign", std::span<const double>(s.rprop_sign));
  w.add("rprop_last", std::span<const double>(s.rprop_last));
  const std::vector<std::int64_t> counters{s.outer_count, static_cast<std::int64_t>(s.philox_step), steps_done()};
  w.add("counters", std::span<const std::int64_t>(counters));
  const std::vector<std::int64_t> minibatch{s.pass, s.window};
  w.add("minibatch", std::span<const std::int64_t>(minibatch));
  // The best-judged step (best_step); a file without these sections predates them (load()).
  const std::vector<double> best{static_cast<double>(s.best_step), s.best_loss, static_cast<double>(s.best_from)};
  w.add("best", std::span<const double>(best));
  w.add("best_phi", std::span<const double>(s.best_phi));
  add_values(w, "best_theta", s.best_step > 0 ? s.best_theta.to_host() : std::vector<T>{});
  // The previous visit of a fixed inner start (Impl::visit_theta); a file without these sections
  // predates them: the run then trains a return to that φ again (the same policy, more inner steps).
  const std::vector<double> visit{s.theta_reward, s.visit_reward};
  w.add("visit", std::span<const double>(visit));
  w.add("theta_phi", std::span<const double>(s.theta_phi));
  w.add("visit_phi", std::span<const double>(s.visit_phi));
  add_values(w, "visit_theta", s.visit_phi.empty() ? std::vector<T>{} : s.visit_theta.to_host());
  // Regula falsi on a scalar reward (Impl::refine_scalar); optional on load as the sections above.
  const auto& b = s.bracket;
  const std::vector<double> bracket{b.active ? 1.0 : 0.0, b.last_valid ? 1.0 : 0.0, b.lo, b.hi, b.g_lo, b.g_hi,
                                    b.last_x, b.last_g, static_cast<double>(b.replaced)};
  w.add("bracket", std::span<const double>(bracket));
  std::vector<double> records;
  for (const BilevelRecord& r : history_) append_record(records, r);
  w.add("records", std::span<const double>(records));
  w.write(path);
}

template <class T>
void BilevelTrainer<T>::load(const std::filesystem::path& path) {
  constexpr std::string_view fn = "BilevelTrainer::load";
  Impl& s = *impl_;
  const detail::CheckpointReader r(path);
  const std::string saved = with_patience(r.text("fingerprint"));
  D2R_EXPECTS(saved.starts_with(kCheckpointPrefix), fn, "path", "checkpoint '{}' is not a BilevelTrainer checkpoint",
              path.string());
  if (!saved.starts_with(kCheckpointFormat)) {
    const std::string_view rest = std::string_view(saved).substr(kCheckpointPrefix.size());
    const std::string version(rest.substr(0, rest.find_first_not_of("0123456789")));
    D2R_EXPECTS(false, fn, "path",
                "checkpoint '{}' has format version {}; this d2r reads version {} only (version 5 added the "
                "outer optimiser's Rprop state), so it cannot be resumed: start the run again",
                path.string(), version, kCheckpointVersion);
  }
  const std::string current = s.checkpoint_fingerprint() + s.identity;
  if (saved != current) {
    const std::vector<std::string> diff = fingerprint_diff(saved, current);
    D2R_EXPECTS(false, fn, "path", "checkpoint '{}' was written by a run with another configuration or other data ({}):\n  {}",
                path.string(), diff.size() == 1 ? "1 difference" : fmt::format("{} differences", diff.size()),
                fmt::join(diff, "\n  "));
  }
  // Read and check everything before changing any state.
  const std::vector<T> theta = read_values<T>(r, "theta"), m = read_values<T>(r, "inner_first_moment"),
                       v = read_values<T>(r, "inner_second_moment");
  const std::vector<std::int64_t> inner_count = r.integers("inner_count"), counters = r.integers("counters"),
                                  minibatch = r.integers("minibatch");
  const std::vector<double> phi = r.doubles("phi"), om = r.doubles("outer_first_moment"),
                            ov = r.doubles("outer_second_moment"), vel = r.doubles("sgd_velocity"),
                            rstep = r.doubles("rprop_step"), rsign = r.doubles("rprop_sign"),
                            rlast = r.doubles("rprop_last");
  const std::size_t P = s.theta.size(), S = phi_.size();
  D2R_EXPECTS(theta.size() == P && m.size() == P && v.size() == P && inner_count.size() == 1 && phi.size() == S &&
                  om.size() == S && ov.size() == S && vel.size() == S && rstep.size() == S && rsign.size() == S && rlast.size() == S &&
                  counters.size() == 3 && counters[0] >= 0 &&
                  counters[1] >= 0 && counters[2] >= 0,
              fn, "path", "checkpoint '{}' has sections of the wrong size", path.string());
  D2R_EXPECTS(minibatch.size() == 2 && minibatch[0] >= 0 &&
                  (s.batch == 0 ? minibatch[0] == 0 && minibatch[1] == 0
                                : minibatch[1] >= (minibatch[0] > 0 ? 1 : 0) &&
                                      minibatch[1] <= (minibatch[0] > 0 ? s.windows_per_pass : 0)),
              fn, "path", "checkpoint '{}' has an invalid minibatch position", path.string());
  std::vector<BilevelRecord> records = parse_records(r.doubles("records"), counters[2], path);
  // The values themselves: a file can be well-formed (and its checksum recomputed) yet hold a
  // state no run produces; resuming from it would train on garbage.
  const auto all_finite = [](const auto& v) {
    return std::all_of(v.begin(), v.end(), [](auto x) { return std::isfinite(static_cast<double>(x)); });
  };
  D2R_EXPECTS(all_finite(theta) && all_finite(m) && all_finite(v) && all_finite(om) && all_finite(ov) && all_finite(vel),
              fn, "path", "checkpoint '{}' holds non-finite policy or optimiser values", path.string());
  D2R_EXPECTS(std::all_of(v.begin(), v.end(), [](T x) { return x >= T(0); }) &&
                  std::all_of(ov.begin(), ov.end(), [](double x) { return x >= 0; }) && inner_count[0] >= 0,
              fn, "path", "checkpoint '{}' holds a negative second moment or step count", path.string());
  D2R_EXPECTS(all_finite(phi), fn, "path", "checkpoint '{}' holds non-finite reward parameters", path.string());
  for (std::size_t i : s.positive) {
    D2R_EXPECTS(phi[i] >= options_.reward_floor, fn, "path",
                "checkpoint '{}' holds reward parameter {} = {}, below the floor {} that every run keeps it above",
                path.string(), i, phi[i], options_.reward_floor);
  }
  for (std::size_t k = 0; k < records.size(); ++k) {
    D2R_EXPECTS(records[k].step == static_cast<std::int64_t>(k) + 1 && records[k].reward_params.size() == S, fn, "path",
                "checkpoint '{}' has malformed records (record {} is of step {})", path.string(), k + 1,
                records[k].step);
  }
  D2R_EXPECTS(records.empty() || records.back().reward_params == phi, fn, "path",
              "checkpoint '{}': the last record's reward differs from the saved reward", path.string());
  // The best-judged step (best_step). A file written before it was saved (no "best" section)
  // holds only the last step's policy: the choice restarts there (best_tracked_from), among that
  // step (when its policy was stationary) and the steps run after the resume.
  const auto K = static_cast<std::int64_t>(records.size());
  const auto phi_before = [&](std::int64_t k) { return k >= 2 ? records[static_cast<std::size_t>(k - 2)].reward_params : s.initial_phi; };
  std::int64_t best_step = 0, best_from = 1;
  double best_loss = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> best_phi;
  std::vector<T> best_theta;
  if (r.has("best")) {
    const std::vector<double> b = r.doubles("best");
    best_phi = r.doubles("best_phi");
    best_theta = read_values<T>(r, "best_theta");
    D2R_EXPECTS(b.size() == 3 && b[0] >= 0 && b[0] <= static_cast<double>(K) && b[2] >= 1 &&
                    b[2] <= static_cast<double>(std::max<std::int64_t>(K, 1)) && (b[0] == 0 || b[0] >= b[2]),
                fn, "path", "checkpoint '{}' has an invalid best outer step", path.string());
    best_step = static_cast<std::int64_t>(b[0]);
    best_loss = b[1];
    best_from = static_cast<std::int64_t>(b[2]);
    const bool matches =
        best_step == 0 ? best_phi.empty() && best_theta.empty()
                       : best_theta.size() == P && all_finite(best_theta) && best_phi == phi_before(best_step) &&
                             records[static_cast<std::size_t>(best_step - 1)].inner_stationary &&
                             records[static_cast<std::size_t>(best_step - 1)].outer_loss == best_loss;
    D2R_EXPECTS(matches, fn, "path", "checkpoint '{}': its best outer step {} does not match its records", path.string(),
                best_step);
  } else if (K > 0) {
    best_from = K;
    if (records.back().inner_stationary && std::isfinite(records.back().outer_loss)) {
      best_step = K;
      best_loss = records.back().outer_loss;
      best_phi = phi_before(K);
      best_theta = theta;
    }
  }

  std::vector<double> visit{0, 0}, theta_phi, visit_phi;
  std::vector<T> visit_theta;
  if (r.has("visit")) {
    visit = r.doubles("visit");
    theta_phi = r.doubles("theta_phi");
    visit_phi = r.doubles("visit_phi");
    visit_theta = read_values<T>(r, "visit_theta");
    const bool valid = visit.size() == 2 && (theta_phi.empty() || (theta_phi.size() == S && all_finite(theta_phi))) &&
                       (visit_phi.empty() ? visit_theta.empty()
                                          : visit_phi.size() == S && all_finite(visit_phi) &&
                                                visit_theta.size() == P && all_finite(visit_theta));
    D2R_EXPECTS(valid, fn, "path", "checkpoint '{}' has an invalid previous visit of the fixed inner start",
                path.string());
  }

  std::vector<double> bracket;
  if (r.has("bracket")) {
    bracket = r.doubles("bracket");
    const auto flag = [](double v) { return v == 0 || v == 1; };
    const bool valid = bracket.size() == 9 && all_finite(bracket) && flag(bracket[0]) && flag(bracket[1]) &&
                       (bracket[8] == -1 || bracket[8] == 0 || bracket[8] == 1) &&
                       (bracket[0] == 0 || (S == 1 && bracket[2] < bracket[3] && bracket[4] < 0 && bracket[5] > 0));
    D2R_EXPECTS(valid, fn, "path", "checkpoint '{}' has an invalid bracket of the scalar reward", path.string());
  }

  s.theta.copy_from_host(theta);
  s.first_moment.copy_from_host(m);
  s.second_moment.copy_from_host(v);
  s.adam_count.copy_from_host(inner_count);
  phi_ = phi;
  s.outer_m = om;
  s.outer_v = ov;
  s.sgd_velocity = vel;
  s.rprop_step = rstep;
  s.rprop_sign = rsign;
  s.rprop_last = rlast;
  s.outer_count = counters[0];
  s.philox_step = static_cast<std::uint64_t>(counters[1]);
  s.best_step = best_step;
  s.best_from = best_from;
  s.best_loss = best_loss;
  s.best_phi = std::move(best_phi);
  if (best_step > 0) s.best_theta.copy_from_host(std::span<const T>(best_theta));
  s.bracket = {};
  if (!bracket.empty()) {
    s.bracket.active = bracket[0] == 1;
    s.bracket.last_valid = bracket[1] == 1;
    s.bracket.lo = bracket[2];
    s.bracket.hi = bracket[3];
    s.bracket.g_lo = bracket[4];
    s.bracket.g_hi = bracket[5];
    s.bracket.last_x = bracket[6];
    s.bracket.last_g = bracket[7];
    s.bracket.replaced = static_cast<int>(bracket[8]);
  }
  s.theta_reward = visit[0];
  s.visit_reward = visit[1];
  s.theta_phi = std::move(theta_phi);
  s.visit_phi = std::move(visit_phi);
  if (!s.visit_phi.empty()) s.visit_theta.copy_from_host(std::span<const T>(visit_theta));
  s.pass = minibatch[0];
  s.window = minibatch[1];
  if (s.pass > 0) {
    s.draw_pass(options_.seed);  // the current pass's rows, as the saving run had them
  } else {
    s.order.clear();
  }
  history_ = std::move(records);
}

#define D2R_BILEVEL_CHECKPOINT(T)                                                                            \
  template void BilevelTrainer<T>::set_checkpoint_identity(std::span<const std::pair<std::string, std::string>>); \
  template void BilevelTrainer<T>::save(const std::filesystem::path&) const;                                 \
  template void BilevelTrainer<T>::load(const std::filesystem::path&);
D2R_BILEVEL_CHECKPOINT(float)
D2R_BILEVEL_CHECKPOINT(double)
#undef D2R_BILEVEL_CHECKPOINT

// The data identity a checkpoint carries (bilevel_data_hash).
namespace {
/// FNV-1a over the four arrays in order, continuing one hash (checkpoint.hpp's fnv1a).
template <class X, class Y>
std::uint64_t data_hash(std::span<const X> tx, std::span<const Y> ty, std::span<const X> vx, std::span<const Y> vy) {
  std::uint64_t h = detail::fnv1a(reinterpret_cast<const char*>(tx.data()), tx.size_bytes());
  h = detail::fnv1a(reinterpret_cast<const char*>(ty.data()), ty.size_bytes(), h);
  h = detail::fnv1a(reinterpret_cast<const char*>(vx.data()), vx.size_bytes(), h);
  return detail::fnv1a(reinterpret_cast<const char*>(vy.data()), vy.size_bytes(), h);
}
}  // namespace

template <class T>
std::uint64_t bilevel_data_hash(std::span<const T> train_x, std::span<const T> train_y, std::span<const T> validation_x,
                                std::span<const T> validation_y) {
  return data_hash(train_x, train_y, validation_x, validation_y);
}
template <class T>
std::uint64_t bilevel_data_hash(std::span<const T> train_x, std::span<const std::int32_t> train_labels,
                                std::span<const T> validation_x, std::span<const std::int32_t> validation_labels) {
  return data_hash(train_x, train_labels, validation_x, validation_labels);
}

template std::uint64_t bilevel_data_hash(std::span<const float>, std::span<const float>, std::span<const float>,
                                         std::span<const float>);
template std::uint64_t bilevel_data_hash(std::span<const double>, std::span<const double>, std::span<const double>,
                                         std::span<const double>);
template std::uint64_t bilevel_data_hash(std::span<const float>, std::span<const std::int32_t>, std::span<const float>,
                                         std::span<const std::int32_t>);
template std::uint64_t bilevel_data_hash(std::span<const double>, std::span<const std::int32_t>,
                                         std::span<const double>, std::span<const std::int32_t>);
}  // namespace d2r
