#pragma once
// BilevelTrainer's state (BilevelTrainer<T>::Impl) and what its source files share
// (internal; bilevel.cpp: the outer loop; bilevel_options.cpp: the checks; bilevel_checkpoint.cpp:
// save and load).
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "d2r/bilevel.hpp"
#include "host/src/bilevel_problems.hpp"
#include "host/src/trainer_common.hpp"

namespace d2r {

namespace bilevel_detail {

/// Every field of the options on its own (check(BilevelOptions) and the constructors).
template <class T>
void check_bilevel_options(std::string_view fn, const BilevelOptions<T>& options);

/// Everything about the options and the reward that does not depend on the data kind; returns
/// the entries of φ that must stay positive.
template <class T>
std::vector<std::size_t> check_bilevel_setup(std::string_view fn, const BilevelOptions<T>& options, RewardForm form,
                                             std::span<const double> reward_init, std::int64_t reward_dim,
                                             std::int64_t train_rows, bool has_validation);

/// The first line of every checkpoint's fingerprint: the format version. v3 added the minibatch
/// position (InnerOptions::batch_size); v4 made the fingerprint one "name = value" line per
/// setting (every field of BilevelOptions by for_each_field, the data's hash, the initial reward,
/// the caller's identity lines) and added the accuracies to the records. Older files cannot be
/// resumed. v5 added the outer optimiser's Rprop state (step sizes, signs, last moves) and the
/// per-step diagnostics of the records (inner steps, stationarity, solver, step size). The sections
/// of the best-judged step ("best", "best_phi", "best_theta") were added to v5 later: optional, a
/// v5 file without them still resumes (BilevelTrainer::load restarts the choice at its last step).
inline constexpr int kCheckpointVersion = 5;
inline constexpr std::string_view kCheckpointPrefix = "d2r bilevel v";
inline constexpr std::string_view kCheckpointFormat = "d2r bilevel v5\n";  // kCheckpointPrefix, kCheckpointVersion

}  // namespace bilevel_detail

template <class T>
struct BilevelTrainer<T>::Impl {
  Impl(Context& c, std::unique_ptr<bilevel_detail::Problem<T>> p, std::int64_t phi_size)
      : ctx(c), host_ctx(ContextOptions{.backend = Backend::cpu}), problem(std::move(p)) {
    const auto P = static_cast<std::size_t>(problem->parameter_count());
    for (Buffer<T>* b :
         {&theta, &theta0, &best_theta, &visit_theta, &grad, &first_moment, &second_moment, &g_out, &grad_in, &w}) {
      *b = Buffer<T>(c, P);
    }
    adam_count = Buffer<std::int64_t>(c, 1);
    draw_counter = Buffer<std::int64_t>(c, 1);
    reward = Buffer<T>(c, static_cast<std::size_t>(phi_size));
    mixed = Buffer<T>(c, static_cast<std::size_t>(phi_size));
    row_reward = Buffer<T>(c, static_cast<std::size_t>(problem->train_rows()));
    const auto S = static_cast<std::size_t>(phi_size);
    outer_m.assign(S, 0.0);
    outer_v.assign(S, 0.0);
    sgd_velocity.assign(S, 0.0);
    rprop_step.assign(S, 0.0);
    rprop_sign.assign(S, 0.0);
    rprop_last.assign(S, 0.0);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  Context& ctx;
  Context host_ctx;  // the outer optimiser runs on the host, in double
  std::unique_ptr<bilevel_detail::Problem<T>> problem;
  // theta0: the first outer step's initial policy, the reference of the stationarity check.
  Buffer<T> theta, theta0, grad, first_moment, second_moment, g_out, grad_in, w, reward, mixed, row_reward;
  // The best-judged outer step (BilevelTrainer::best_step; 0: none yet): its inner policy, the φ
  // it was trained at and its outer loss; best_from: the first step the choice considered.
  // initial_phi: φ before step 1 (what step 1's policy was trained at).
  Buffer<T> best_theta;
  std::vector<double> best_phi, initial_phi;
  double best_loss = std::numeric_limits<double>::quiet_NaN();
  std::int64_t best_step = 0, best_from = 1;
  /// Makes step k (its policy `theta`, trained at `phi`, outer loss `loss`) the best one.
  void set_best(std::int64_t k, const std::vector<double>& phi, double loss) {
    best_theta.copy_from_host(std::span<const T>(theta.to_host()));
    best_phi = phi;
    best_loss = loss;
    best_step = k;
  }
  // A fixed inner start with a deterministic inner loop (BilevelTrainer::step): theta_phi is the φ
  // `theta` was trained at, visit_theta / visit_phi the policy and φ of the visit before it, and
  // theta_reward / visit_reward their records' mean inner rewards (empty φ: none kept).
  Buffer<T> visit_theta;
  std::vector<double> theta_phi, visit_phi;
  double theta_reward = 0, visit_reward = 0;
  /// Whether the inner loop gives the same θ every time from the same start: the exact gradient
  /// on every row (no draws, no minibatch windows).
  [[nodiscard]] bool deterministic_inner(const InnerOptions<T>& in) const {
    return in.objective == InnerObjective::exact && batch == 0;
  }
  /// Keeps the current policy as the previous visit (before `theta` is trained at a new φ).
  void keep_visit() {
    visit_theta.copy_from_host(std::span<const T>(theta.to_host()));
    visit_phi = theta_phi;
    visit_reward = theta_reward;
  }
  /// Makes the previous visit the current policy and the current one the previous visit (copies:
  /// a captured CUDA graph holds theta's address).
  void exchange_visit() {
    const std::vector<T> now = theta.to_host();
    theta.copy_from_host(std::span<const T>(visit_theta.to_host()));
    visit_theta.copy_from_host(std::span<const T>(now));
    std::swap(theta_phi, visit_phi);
    std::swap(theta_reward, visit_reward);
  }
  // Regula falsi on a scalar reward (refine_scalar): x = log φ, g = dL_out/dx. active: g(lo) < 0 <
  // g(hi) at two stationary visits; replaced: the end replaced last (-1 lo, +1 hi, 0 none, for the
  // Illinois rule); last_x, last_g: the last stationary visit (last_valid).
  struct Bracket {
    bool active = false, last_valid = false;
    double lo = 0, hi = 0, g_lo = 0, g_hi = 0, last_x = 0, last_g = 0;
    int replaced = 0;
  } bracket;
  /// Rprop's outer step on a scalar reward whose outer loss is a function of it (a fixed start with
  /// a deterministic inner loop), once the hypergradient changed sign between two stationary
  /// visits: the minimum lies between them, and Rprop would walk back to it in halving steps
  /// (after the first sign change it made 6–16 more visits on 11 of the 15 tabular runs). Instead
  /// the bracket shrinks by regula falsi on g with the Illinois rule (an end kept twice has its g
  /// halved), each new point inside the middle 80 % of the bracket, until the bracket is narrower
  /// than stopping.reward_tolerance or g is flat there (|g|·Δ₀ below flat_tolerance × the loss
  /// tolerance, as Rprop's flat rule): φ then stays. Returns false (and Rprop steps) before a
  /// bracket forms; a visit that is not stationary ends the bracket, and Rprop goes on from there
  /// with a step of a quarter of its width. `move`: the step in x.
  bool refine_scalar(bool stationary, double x, double g, const RpropOptions& o, const StoppingOptions& stop,
                     double& move) {
    Bracket& b = bracket;
    if (!stationary) {
      if (b.active) rprop_step[0] = std::max((b.hi - b.lo) / 4, o.min_step);
      b.active = b.last_valid = false;
      return false;
    }
    const double flat = o.flat_tolerance * stop.loss_tolerance / o.initial_step;
    const bool steep = std::abs(g) > flat;
    if (!b.active && b.last_valid && steep && std::abs(b.last_g) > flat && g * b.last_g < 0) {
      b.lo = g < 0 ? x : b.last_x;
      b.hi = g < 0 ? b.last_x : x;
      b.g_lo = g < 0 ? g : b.last_g;
      b.g_hi = g < 0 ? b.last_g : g;
      b.replaced = 0;
      b.active = b.lo < b.hi;
    } else if (b.active && steep && x > b.lo && x < b.hi) {
      const int end = g < 0 ? -1 : 1;
      (end < 0 ? b.lo : b.hi) = x;
      (end < 0 ? b.g_lo : b.g_hi) = g;
      if (b.replaced == end) (end < 0 ? b.g_hi : b.g_lo) *= 0.5;  // the other end was kept twice
      b.replaced = end;
    }
    b.last_valid = true;
    b.last_x = x;
    b.last_g = g;
    if (!b.active) return false;
    const double w = b.hi - b.lo;
    move = 0;
    if (steep && w > stop.reward_tolerance) {
      const double root = b.hi - b.g_hi * w / (b.g_hi - b.g_lo);
      move = std::clamp(root, b.lo + 0.1 * w, b.hi - 0.1 * w) - x;
    }
    return true;
  }
  Buffer<std::int64_t> adam_count;
  // The Philox position of the inner draws, in the backend's memory (DrawKey::step_offset), so
  // that one captured inner step replays with fresh samples; philox_step mirrors it on the host.
  Buffer<std::int64_t> draw_counter;
  // One inner step, captured on the first outer step (cuda). It is stale when the context's
  // workspace blocks (the HVPs of the implicit step, or a larger validation set, can grow them
  // after the capture, which frees the blocks the graph points to) or the seed of its draws have
  // changed since the capture; the inner step is then captured again.
  CapturedGraph inner_graph;
  std::vector<double> outer_m, outer_v, sgd_velocity;
  // Rprop: the step Δ_i of every parameter (0 before the first step) and the sign of the last
  // hypergradient that was followed (0: none, or a sign change was just seen).
  // rprop_last: the last move of each coordinate ψ (undone when the outer loss rose after it).
  std::vector<double> rprop_step, rprop_sign, rprop_last;
  std::int64_t outer_count = 0;
  std::uint64_t philox_step = 0;
  RewardForm form = RewardForm::scalar;
  std::vector<std::size_t> positive;
  std::string fingerprint;  // its data.hash line is filled in by checkpoint_fingerprint()
  bool data_hashed = false;
  /// The fingerprint with the data's hash, computed on the first save() or load() (one copy of
  /// the data to the host: a trainer that never checkpoints does not pay for it).
  const std::string& checkpoint_fingerprint() {
    if (!data_hashed) {
      constexpr std::string_view placeholder = "data.hash = ?\n";
      const std::size_t at = fingerprint.find(placeholder);
      fingerprint.replace(at, placeholder.size(), fmt::format("data.hash = {:016x}\n", problem->data_hash()));
      data_hashed = true;
    }
    return fingerprint;
  }
  std::string identity;  // set_checkpoint_identity's lines
  // Minibatches (InnerOptions::batch_size): `batch` rows per window (0: full batch),
  // windows_per_pass = floor(N / batch) (the N mod batch rows left over are dropped that pass).
  // pass = passes drawn so far (1-based index of the current one, 0 before the first), window =
  // windows of the current pass already used; `order` = the current pass's permutation.
  std::int64_t batch = 0, windows_per_pass = 0, pass = 0, window = 0;
  std::vector<std::int64_t> order;
  // Data parallel (set_data_parallel): builds an inner problem on some rows of the data, and
  // whether `problem` is the sharded one (its reductions synchronise: no CUDA graph then).
  typename bilevel_detail::ShardedProblem<T>::Factory factory;
  typename bilevel_detail::ShardedProblem<T>::WindowFactory window_factory;
  std::int64_t validation_rows = 0;
  bool sharded = false;

  /// Draws pass `pass`'s permutation and uploads the rows in that order.
  void draw_pass(std::uint64_t seed) {
    order = random_permutation(problem->train_rows(), trainer_common::pass_seed(seed, static_cast<std::uint64_t>(pass)));
    problem->shuffle(order);
  }
  /// The window of the next inner step; a used-up pass (or none yet) draws the next one first.
  bilevel_detail::Window next_window(std::uint64_t seed) {
    if (pass == 0 || window == windows_per_pass) {
      ++pass;
      window = 0;
      draw_pass(seed);
    }
    return {.first = window++ * batch, .rows = batch};
  }
};

}  // namespace d2r
