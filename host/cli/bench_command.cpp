// `d2r bench`: times the cases of the registry (host/checks/: the cases `d2r validate` and the GPU
// test check; filtered the same way, --sizes and --filter) on one backend and states their work.
// Each case builds its inputs in float on the timed backend and hands its one marked call to the
// one timer (host/checks/timer.hpp): a warm-up call first (the workspace reaches its high-water
// mark), then timed repetitions — CUDA events on the context's stream with the L2 cache flushed
// before each on cuda, steady_clock on cpu — and the median reported; the work is the case's work
// model (Case::work(), from host/checks/work.hpp: bytes with each input read once and each output
// written once, GEMM FLOPs), as GB/s and GFLOP/s, and the fraction of the measured copy bandwidth
// of the machine (cudaMemcpy device to device on cuda, memcpy on the host). A case without a
// stated work model or without one call to time (a bespoke comparison) is listed as untimed with
// the reason in bench.json.
//
// Two rows are not registry cases, because a case is one call on one problem: the policy-curvature
// Hessian-vector product against the inner gradient it is built on (their time ratio on the same
// problem; DESIGN.md §6 targets ≤ 3 gradients), and one outer step of the BilevelTrainer with its
// defaults (a whole training step, not a primitive). Value checks are off, as in an inner loop.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "d2r/bilevel.hpp"
#include "d2r/buffer.hpp"
#include "d2r/context.hpp"
#include "d2r/distributions.hpp"
#include "d2r/error.hpp"
#include "d2r/network.hpp"
#include "d2r/objectives.hpp"
#include "d2r/policy_curvature.hpp"
#include "host/checks/checks.hpp"
#include "host/checks/timer.hpp"
#include "host/checks/work.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kCmd = "bench";
constexpr std::uint64_t kSeed = 2024;  // the inputs of the registry cases (validate's default --seed)
constexpr std::int64_t kInputs = 23, kDims = 17;  // the paper's HalfCheetah model (PAPER.md)

Buffer<float> device_filled(Context& ctx, std::int64_t n, float lo, float hi, std::uint64_t seed) {
  const std::vector<float> v = checks::filled(static_cast<std::size_t>(n), lo, hi, seed);
  return Buffer<float>(ctx, std::span<const float>(v));
}

struct Row {
  std::string name, size;
  std::vector<double> seconds = {};  // sorted
  double bytes = 0, flops = 0;
  std::string note = {};
  const checks::Case* from = nullptr;  ///< the registry case timed (null: a composite row)
  [[nodiscard]] double median() const { return checks::median(seconds); }
};

/// The one timer (host/checks/timer.hpp) with this command's repetitions: one warm-up call, then
/// up to 5 (--quick) or 20 timed repetitions, stopping after `budget_s` (default 2 s with --quick,
/// else 10 s) once at least 2 / 3 are done. run() returns the sorted times in seconds.
class Timer {
 public:
  Timer(Context& ctx, bool quick) : timer_(ctx), quick_(quick) {}
  std::vector<double> run(const std::function<void()>& work, int max_reps = 0, double budget_s = 0) {
    const int reps = max_reps > 0 ? max_reps : quick_ ? 5 : 20;
    return timer_.run(work, reps, std::min(reps, quick_ ? 2 : 3), budget_s > 0 ? budget_s : quick_ ? 2.0 : 10.0);
  }

 private:
  checks::Timer timer_;
  bool quick_;
};

/// The machine's copy bandwidth (host/checks/timer.hpp) over 1 GiB on cuda / 256 MiB on the host
/// (a quarter with --quick).
double copy_bandwidth(Context& ctx, bool quick, std::size_t& bytes) {
  bytes = ctx.backend() == Backend::cuda ? std::size_t{quick ? 256u : 1024u} << 20 : std::size_t{quick ? 64u : 256u} << 20;
  return checks::copy_bandwidth(ctx, bytes);
}

// ------------------------------------------------------------------ the rows

std::vector<Row> curvature_rows(Context& ctx, Timer& timer, bool quick) {
  const bool gpu = ctx.backend() == Backend::cuda;
  const std::int64_t B = gpu ? (quick ? 16384 : 70000) : (quick ? 512 : 8192), n = kDims, G = 5;
  const Mlp net({.inputs = kInputs, .hidden = {64, 64}, .outputs = 2 * n, .activation = Activation::relu});
  const std::int64_t P = net.parameter_count();
  Buffer<float> params(ctx, P), x = device_filled(ctx, B * kInputs, -1, 1, 1), y = device_filled(ctx, B * n, -1, 1, 2),
                u = device_filled(ctx, 1, 0.08f, 0.08f, 3), grad(ctx, P), v = device_filled(ctx, P, -1, 1, 4), hv(ctx, P);
  net.init<float>(ctx, params.vector(), 7);
  DiagGaussianPolicyCurvature<float> curvature(ctx, net, B);
  const auto prepare = [&] {
    curvature.prepare(params.vector(), x.matrix(B, kInputs), y.matrix(B, n), {RewardForm::scalar, u.vector()}, G,
                      {.entropy_weight = 1.0f}, {.step = 1}, grad.vector());
  };
  const std::string size = fmt::format("{} B={} G={}", net.describe(), B, G);
  const checks::Work gradient_work = checks::curvature_gradient_work(net, B, n), hvp_work = checks::curvature_hvp_work(net, B, n);
  Row gradient{"policy gradient (curvature prepare)", size};
  gradient.seconds = timer.run(prepare);
  gradient.flops = gradient_work.flops;
  gradient.bytes = gradient_work.bytes;
  gradient.note = "REINFORCE surrogate, G draws per row";
  prepare();
  Row hvp{"policy HVP (curvature apply)", size};
  hvp.seconds = timer.run([&] { curvature.apply(v.vector(), hv.vector()); });
  hvp.flops = hvp_work.flops;
  hvp.bytes = hvp_work.bytes;
  hvp.note = fmt::format("HVP / gradient time = {:.2f} (DESIGN.md target <= 3)", hvp.median() / gradient.median());
  return {std::move(gradient), std::move(hvp)};
}

Row outer_step_row(Context& ctx, Timer& timer, bool quick) {
  const bool gpu = ctx.backend() == Backend::cuda;
  const std::int64_t B = gpu ? (quick ? 16384 : 70000) : (quick ? 256 : 1024);
  const MlpSpec spec{.inputs = kInputs, .hidden = {64, 64}, .outputs = 0, .activation = Activation::relu};
  const BilevelOptions<float> options{};
  Buffer<float> x = device_filled(ctx, B * kInputs, -1, 1, 1), y = device_filled(ctx, B * kDims, -1, 1, 2);
  BilevelTrainer<float> trainer(ctx, spec, {x.matrix(B, kInputs), y.matrix(B, kDims)}, {}, RewardForm::scalar,
                                std::vector<double>{0.3}, options);
  Row row{"bilevel outer step", fmt::format("23-64-64-34 B={} K_in={}", B, options.inner.steps)};
  row.seconds = timer.run([&] { (void)trainer.step(); }, quick ? 3 : 5);
  const Mlp net({.inputs = kInputs, .hidden = spec.hidden, .outputs = 2 * kDims});
  const checks::Work work = checks::outer_step_work(net, B, kDims, options.inner.steps, options.cg.max_iterations);
  row.flops = work.flops;
  row.bytes = work.bytes;
  row.note = fmt::format("fresh inner policy, exact curvature, CGNR x{}; u = {:.3f} after {} steps",
                         options.cg.max_iterations, trainer.history().back().reward_params[0], trainer.steps_done());
  return row;
}

std::string time_text(double s) {
  if (s >= 1) return fmt::format("{:.2f} s", s);
  if (s >= 1e-3) return fmt::format("{:.2f} ms", s * 1e3);
  return fmt::format("{:.1f} us", s * 1e6);
}

/// A registry case timed: its work model, its marked call handed to the timer (a per-case budget
/// of 0.2 s with --quick, else 1 s, once the least repetitions are done).
Row case_row(const checks::Case& c, Context& ctx, Timer& timer, bool quick) {
  Row row{c.primitive + " " + c.variant, c.size};
  row.from = &c;
  row.bytes = c.work().bytes;
  row.flops = c.work().flops;
  checks::time_case(c, ctx, kSeed, [&](const std::function<void()>& call) { row.seconds = timer.run(call, 0, quick ? 0.2 : 1.0); });
  return row;
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app, BenchOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Time the cases of the validate registry on this machine (GB/s, GFLOP/s, % of the measured copy bandwidth)");
  add_shown_option(cmd, "--device", o.device, "auto (cuda when a GPU is usable, else cpu), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  add_shown_option(cmd, "--sizes", o.sizes,
                   "the registry's size class, as `d2r validate`: small, medium (+ the paper's sizes) or large (+ C = 2^17, "
                   "wide MLPs)")
      ->check(CLI::IsMember({"small", "medium", "large"}));
  cmd->add_option("--filter", o.filter,
                  "time the cases whose 'primitive/variant/size' matches this regular expression (and the composite rows "
                  "'policy HVP' and 'bilevel outer step' when their names match)");
  cmd->add_flag("--quick", o.quick, "fewer repetitions and smaller composite rows (under about 30 s on a CPU)");
  cmd->add_option("--out", o.out, "directory to write bench.json into");
  return cmd;
}

int run_bench(const BenchOptions& o) {
  const checks::Level level = o.sizes == "small" ? checks::Level::small : o.sizes == "large" ? checks::Level::large : checks::Level::medium;
  std::regex filter;
  try {
    filter = std::regex(o.filter.empty() ? std::string(".") : o.filter, std::regex::ECMAScript | std::regex::icase);
  } catch (const std::regex_error& e) {
    bad_input(kCmd, "--filter", fmt::format("'{}' is not a valid regular expression ({})", o.filter, e.what()));
  }
  if (!o.out.empty()) check_output_dir(kCmd, "--out", o.out);
  const bool gpu = cuda_device_available();
  if (o.device == "cuda" && !gpu) {
    bad_input(kCmd, "--device", "no CUDA device is usable on this machine (--device cpu times the cpu backend)");
  }
  const bool cuda = o.device == "cuda" || (o.device == "auto" && gpu);
  // The cases: the registry at --sizes (on cpu without the categorical heads the cpu self-check
  // leaves out), those matching --filter; the timed ones have a work model and one marked call.
  std::vector<checks::Case> cases = checks::all_cases(level, !cuda);
  const std::size_t total = cases.size();
  std::erase_if(cases, [&](const checks::Case& c) { return !std::regex_search(c.key(), filter); });
  const bool composite_hvp = std::regex_search(std::string("policy HVP (curvature apply)"), filter);
  const bool composite_outer = std::regex_search(std::string("bilevel outer step"), filter);
  std::vector<const checks::Case*> timed, untimed;
  for (const checks::Case& c : cases) (checks::untimed_reason(c).empty() ? timed : untimed).push_back(&c);
  if (timed.empty() && !composite_hvp && !composite_outer) {
    bad_input(kCmd, "--filter",
              fmt::format("'{}' matches {} of the {} cases of --sizes {}, none of which can be timed (a stated work model "
                          "and one call to time)",
                          o.filter, cases.size(), total, o.sizes));
  }
  if (!o.out.empty()) lock_output_dir(kCmd, "--out", o.out);  // after every check of the arguments
  Context ctx({.backend = cuda ? Backend::cuda : Backend::cpu, .seed = 1, .value_checks = ValueChecks::none});
  if (o.device == "auto" && !gpu) fmt::print("d2r bench: no CUDA device is usable; timing the cpu backend.\n");

  std::size_t copy_bytes = 0;
  const double bandwidth = copy_bandwidth(ctx, o.quick, copy_bytes);
  fmt::print("d2r bench: {} ({}), float, --sizes {}{}: {} registry cases timed, {} untimed (reasons in bench.json)\n",
             to_string(ctx.backend()), ctx.device_name(), o.sizes, o.quick ? ", --quick" : "", timed.size(), untimed.size());
  fmt::print("copy bandwidth ({} of {} MiB, read + write): {:.1f} GB/s\n\n",
             cuda ? "cudaMemcpy device to device" : "memcpy", copy_bytes >> 20, bandwidth * 1e-9);
  fmt::print("{:<56} {:<24} {:>10} {:>10} {:>5} {:>9} {:>9} {:>8}  {}\n", "case", "size", "median", "min", "reps", "GB/s",
             "GFLOP/s", "% copy", "note");

  Timer timer(ctx, o.quick);
  nlohmann::json json_rows = nlohmann::json::array();
  std::int64_t failed = 0;
  const auto report = [&](const Row& row) {
    const double t = row.median();
    const double gbps = row.bytes / t * 1e-9, gflops = row.flops / t * 1e-9, pct = 100.0 * row.bytes / t / bandwidth;
    if (!(std::isfinite(t) && t > 0 && std::isfinite(gbps) && gbps > 0 && std::isfinite(pct))) {
      throw std::runtime_error(fmt::format("{}: a non-finite or non-positive timing ({} s, {} GB/s)", row.name, t, gbps));
    }
    fmt::print("{:<56} {:<24} {:>10} {:>10} {:>5} {:>9.2f} {:>9} {:>7.1f}%  {}\n", row.name, row.size, time_text(t),
               time_text(row.seconds.front()), row.seconds.size(), gbps,
               row.flops > 0 ? fmt::format("{:.2f}", gflops) : "-", pct, row.note);
    std::fflush(stdout);
    nlohmann::json j{{"name", row.name},
                     {"size", row.size},
                     {"repetitions", row.seconds.size()},
                     {"median_seconds", t},
                     {"min_seconds", row.seconds.front()},
                     {"work", {{"bytes", row.bytes}, {"flops", row.flops}}},
                     {"gb_per_s", gbps},
                     {"gflop_per_s", row.flops > 0 ? nlohmann::json(gflops) : nlohmann::json(nullptr)},
                     {"percent_of_copy_bandwidth", pct},
                     {"note", row.note}};
    if (row.from != nullptr) {
      j["case"] = {{"key", row.from->key()},
                   {"family", row.from->family},
                   {"primitive", row.from->primitive},
                   {"variant", row.from->variant},
                   {"size", row.from->size}};
    }
    json_rows.push_back(std::move(j));
  };
  const auto started = std::chrono::steady_clock::now();
  for (const checks::Case* c : timed) {
    try {
      report(case_row(*c, ctx, timer, o.quick));
    } catch (const std::exception& e) {  // a case that throws is a failed row; the others still run
      ++failed;
      fmt::print("{:<56} {:<24} FAILED: {}\n", c->primitive + " " + c->variant, c->size, e.what());
      json_rows.push_back({{"name", c->primitive + " " + c->variant}, {"size", c->size}, {"case", {{"key", c->key()}}},
                           {"error", e.what()}});
    }
  }
  // The composite rows fail like a case row: counted, recorded, and the others still run.
  const auto composite = [&](const char* name, const auto& rows_of) {
    try {
      for (Row& r : rows_of()) report(r);
    } catch (const std::exception& e) {
      ++failed;
      fmt::print("{:<56} FAILED: {}\n", name, e.what());
      json_rows.push_back({{"name", name}, {"error", e.what()}});
    }
  };
  if (composite_hvp) composite("curvature hvp/gradient", [&] { return curvature_rows(ctx, timer, o.quick); });
  if (composite_outer) composite("bilevel outer step", [&] { return std::vector<Row>{outer_step_row(ctx, timer, o.quick)}; });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print("\n{} rows in {:.1f} s; median of the repetitions after one warm-up{}.{}\n", json_rows.size(), seconds,
             cuda ? " (CUDA events, L2 flushed before each)" : " (steady_clock)",
             failed > 0 ? fmt::format(" {} case(s) FAILED.", failed) : "");

  if (!o.out.empty()) {
    nlohmann::json j = run_header("bench", ctx, "float");
    j["quick"] = o.quick;
    j["sizes"] = o.sizes;
    j["filter"] = o.filter;
    j["seed"] = kSeed;
    j["copy_bandwidth"] = {{"method", cuda ? "cudaMemcpy device to device" : "memcpy"},
                           {"bytes", copy_bytes},
                           {"gb_per_s", bandwidth * 1e-9}};
    j["rows"] = std::move(json_rows);
    nlohmann::json left = nlohmann::json::array();
    for (const checks::Case* c : untimed) left.push_back({{"key", c->key()}, {"reason", checks::untimed_reason(*c)}});
    j["untimed"] = std::move(left);
    ensure_directory(o.out);
    write_json_atomic(fs::path(o.out) / "bench.json", j);
    fmt::print("wrote {}\n", (fs::path(o.out) / "bench.json").string());
  }
  return failed > 0 ? 1 : 0;
}

}  // namespace d2r::cli
