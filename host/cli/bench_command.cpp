// `d2r bench`: times the main primitives on one backend and states their work, with the
// conventions of bench/bench_common.hpp (the Google Benchmark suite, which the program does not
// link): a warm-up call first (the workspace reaches its high-water mark), then timed
// repetitions — CUDA events on the context's stream with the L2 cache flushed before each on
// cuda, steady_clock on cpu — and the median reported; the work in bytes (each input read once,
// each output written once) and FLOPs (GEMMs, 2·m·n·k), as GB/s and GFLOP/s (the work models of
// host/checks/work.hpp, shared with bench/); and the fraction of
// the measured copy bandwidth of the machine (cudaMemcpy device to device on cuda, memcpy on the
// host): bytes read + written per second by the best of ten copies.
//
// Rows: the fused policy-gradient head (diagonal Gaussian, B·G·n draws never stored), categorical
// sampling at C = 2^17 classes, MLP forward + backward at the paper's model-based-RL size
// (23 → [64, 64] → 2·17), the policy-curvature Hessian-vector product against the inner gradient
// it is built on (their time ratio; DESIGN.md §6 targets ≤ 3 gradients), and one outer step of the
// BilevelTrainer with its defaults. Value checks are off, as in an inner loop.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>
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
#include "host/checks/timer.hpp"
#include "host/checks/work.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kCmd = "bench";
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
  [[nodiscard]] double median() const { return checks::median(seconds); }
};

/// The one timer (host/checks/timer.hpp) with this command's repetitions: one warm-up call, then
/// up to 5 (--quick) or 20 timed repetitions, stopping after 2 s (--quick) or 10 s once at least
/// 2 / 3 are done. run() returns the sorted times in seconds.
class Timer {
 public:
  Timer(Context& ctx, bool quick) : timer_(ctx), quick_(quick) {}
  std::vector<double> run(const std::function<void()>& work, int max_reps = 0) {
    const int reps = max_reps > 0 ? max_reps : quick_ ? 5 : 20;
    return timer_.run(work, reps, std::min(reps, quick_ ? 2 : 3), quick_ ? 2.0 : 10.0);
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

Row pg_head_row(Context& ctx, Timer& timer, bool quick) {
  const bool gpu = ctx.backend() == Backend::cuda;
  const std::int64_t B = gpu ? (quick ? 1 << 14 : 1 << 16) : (quick ? 1024 : 16384), n = kDims, G = 5;
  Buffer<float> mean = device_filled(ctx, B * n, -1, 1, 1), log_std = device_filled(ctx, B * n, -1, 0, 2),
                y = device_filled(ctx, B * n, -1, 1, 3), u = device_filled(ctx, 1, 0.1f, 0.3f, 4), loss(ctx, B),
                gm(ctx, B * n), gs(ctx, B * n);
  const DiagGaussian<float> head{mean.matrix(B, n), log_std.matrix(B, n)};
  const MahalanobisReward<float> reward{RewardForm::scalar, u.vector()};
  const PgOptions<float> options{.entropy_weight = 1.0f};
  std::uint64_t step = 0;
  Row row{"pg_surrogate, diag (fused)", fmt::format("B={} n={} G={}", B, n, G)};
  row.seconds = timer.run([&] {
    pg_surrogate(ctx, head, y.matrix(B, n), reward, G, options, {.step = step++}, {loss.vector(), {}},
                 {gm.matrix(B, n), gs.matrix(B, n)});
  });
  row.bytes = checks::pg_surrogate_diag_work(B, n).bytes;
  row.note = fmt::format("B·G·n = {} draws, none stored", B * G * n);
  return row;
}

Row categorical_sample_row(Context& ctx, Timer& timer, bool quick) {
  const bool gpu = ctx.backend() == Backend::cuda;
  const std::int64_t C = std::int64_t{1} << 17, B = gpu ? (quick ? 128 : 512) : (quick ? 4 : 64), G = 5;
  Buffer<float> logits = device_filled(ctx, B * C, -4, 4, 5);
  Buffer<std::int32_t> samples(ctx, B * G);
  const Categorical<float> head{logits.matrix(B, C)};
  std::uint64_t step = 0;
  Row row{"categorical sample", fmt::format("B={} C={} G={}", B, C, G)};
  row.seconds = timer.run([&] { sample(ctx, head, G, {.step = step++}, samples.matrix(B, G)); });
  row.bytes = checks::categorical_sample_work(B, C, G).bytes;
  row.note = "inverse CDF, one Philox uniform per draw";
  return row;
}

Row mlp_row(Context& ctx, Timer& timer, bool quick) {
  const bool gpu = ctx.backend() == Backend::cuda;
  const std::int64_t B = gpu ? (quick ? 16384 : 70000) : (quick ? 2048 : 70000), out = 2 * kDims;
  const Mlp net({.inputs = kInputs, .hidden = {64, 64}, .outputs = out, .activation = Activation::relu});
  const std::int64_t P = net.parameter_count(), Cc = net.cache_elements(B);
  Buffer<float> params(ctx, P), x = device_filled(ctx, B * kInputs, -1, 1, 1), d_out = device_filled(ctx, B * out, -1, 1, 2),
                cache(ctx, Cc), y(ctx, B * out), grad(ctx, P);
  net.init<float>(ctx, params.vector(), 7);
  Row row{"mlp forward+backward", fmt::format("{} B={}", net.describe(), B)};
  row.seconds = timer.run([&] {
    net.forward<float>(ctx, params.vector(), x.matrix(B, kInputs), cache.vector(), y.matrix(B, out));
    net.backward<float>(ctx, params.vector(), x.matrix(B, kInputs), cache.vector(), d_out.matrix(B, out), grad.vector(), {});
  });
  const checks::Work work = checks::mlp_work(net, B, checks::MlpPass::forward_backward);
  row.flops = work.flops;
  row.bytes = work.bytes;
  row.note = "the paper's MBRL trunk";
  return row;
}

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

}  // namespace

CLI::App* add_bench_command(CLI::App& app, BenchOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "bench", "Time the main primitives on this machine (GB/s, GFLOP/s, % of the measured copy bandwidth)");
  cmd->add_option("--device", o.device, "auto (cuda when a GPU is usable, else cpu), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--quick", o.quick, "smaller sizes and fewer repetitions (under about 30 s on a CPU)");
  cmd->add_option("--out", o.out, "directory to write bench.json into");
  return cmd;
}

int run_bench(const BenchOptions& o) {
  if (!o.out.empty()) check_output_dir(kCmd, "--out", o.out);
  const bool gpu = cuda_device_available();
  if (o.device == "cuda" && !gpu) {
    bad_input(kCmd, "--device", "no CUDA device is usable on this machine (--device cpu times the cpu backend)");
  }
  const bool cuda = o.device == "cuda" || (o.device == "auto" && gpu);
  if (!o.out.empty()) lock_output_dir(kCmd, "--out", o.out);  // after every check of the arguments
  Context ctx({.backend = cuda ? Backend::cuda : Backend::cpu, .seed = 1, .value_checks = ValueChecks::none});
  if (o.device == "auto" && !gpu) fmt::print("d2r bench: no CUDA device is usable; timing the cpu backend.\n");

  std::size_t copy_bytes = 0;
  const double bandwidth = copy_bandwidth(ctx, o.quick, copy_bytes);
  fmt::print("d2r bench: {} ({}), float{}\n", to_string(ctx.backend()), ctx.device_name(), o.quick ? ", --quick" : "");
  fmt::print("copy bandwidth ({} of {} MiB, read + write): {:.1f} GB/s\n\n",
             cuda ? "cudaMemcpy device to device" : "memcpy", copy_bytes >> 20, bandwidth * 1e-9);
  fmt::print("{:<36} {:<30} {:>10} {:>10} {:>5} {:>9} {:>9} {:>9}  {}\n", "row", "size", "median", "min", "reps",
             "GB/s", "GFLOP/s", "% copy", "note");

  Timer timer(ctx, o.quick);
  std::vector<Row> rows;
  nlohmann::json json_rows = nlohmann::json::array();
  const auto report = [&](Row row) {
    const double t = row.median();
    const double gbps = row.bytes > 0 ? row.bytes / t * 1e-9 : 0.0;
    const double gflops = row.flops > 0 ? row.flops / t * 1e-9 : 0.0;
    const double pct = row.bytes > 0 ? 100.0 * row.bytes / t / bandwidth : 0.0;
    fmt::print("{:<36} {:<30} {:>10} {:>10} {:>5} {:>9} {:>9} {:>9}  {}\n", row.name, row.size, time_text(t),
               time_text(row.seconds.front()), row.seconds.size(), row.bytes > 0 ? fmt::format("{:.2f}", gbps) : "-",
               row.flops > 0 ? fmt::format("{:.2f}", gflops) : "-", row.bytes > 0 ? fmt::format("{:.1f}%", pct) : "-",
               row.note);
    std::fflush(stdout);
    json_rows.push_back({{"name", row.name},
                         {"size", row.size},
                         {"repetitions", row.seconds.size()},
                         {"median_seconds", t},
                         {"min_seconds", row.seconds.front()},
                         {"bytes", row.bytes},
                         {"flops", row.flops},
                         {"gb_per_s", gbps},
                         {"gflop_per_s", gflops},
                         {"percent_of_copy_bandwidth", pct},
                         {"note", row.note}});
  };
  const auto started = std::chrono::steady_clock::now();
  report(pg_head_row(ctx, timer, o.quick));
  report(categorical_sample_row(ctx, timer, o.quick));
  report(mlp_row(ctx, timer, o.quick));
  for (Row& r : curvature_rows(ctx, timer, o.quick)) report(std::move(r));
  report(outer_step_row(ctx, timer, o.quick));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print("\n{} rows in {:.1f} s; median of the repetitions after one warm-up{}.\n", json_rows.size(), seconds,
             cuda ? " (CUDA events, L2 flushed before each)" : " (steady_clock)");

  if (!o.out.empty()) {
    nlohmann::json j = run_header("bench", ctx, "float");
    j["quick"] = o.quick;
    j["copy_bandwidth"] = {{"method", cuda ? "cudaMemcpy device to device" : "memcpy"},
                           {"bytes", copy_bytes},
                           {"gb_per_s", bandwidth * 1e-9}};
    j["rows"] = std::move(json_rows);
    ensure_directory(o.out);
    write_json_atomic(fs::path(o.out) / "bench.json", j);
    fmt::print("wrote {}\n", (fs::path(o.out) / "bench.json").string());
  }
  return 0;
}

}  // namespace d2r::cli
