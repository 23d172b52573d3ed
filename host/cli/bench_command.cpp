// `d2r bench`: times the main primitives on one backend and states their work, with the
// conventions of bench/bench_common.hpp (the Google Benchmark suite, which the program does not
// link): a warm-up call first (the workspace reaches its high-water mark), then timed
// repetitions — CUDA events on the context's stream with the L2 cache flushed before each on
// cuda, steady_clock on cpu — and the median reported; the work in bytes (each input read once,
// each output written once) and FLOPs (GEMMs, 2·m·n·k), as GB/s and GFLOP/s; and the fraction of
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
#include "host/cli/commands.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kCmd = "bench";
constexpr std::int64_t kInputs = 23, kDims = 17;  // the paper's HalfCheetah model (PAPER.md)

/// Deterministic filler (values matter: never benchmark on zeros), as bench_common.hpp's.
std::vector<float> filled(std::int64_t n, float lo, float hi, std::uint64_t seed) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x = lo + (hi - lo) * static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
  }
  return v;
}
Buffer<float> device_filled(Context& ctx, std::int64_t n, float lo, float hi, std::uint64_t seed) {
  const std::vector<float> v = filled(n, lo, hi, seed);
  return Buffer<float>(ctx, std::span<const float>(v));
}

/// FLOPs of one forward pass of an MLP: 2·B·Σ in·out (the GEMMs).
double forward_flops(const Mlp& net, std::int64_t B) {
  double f = 0;
  for (std::int64_t l = 0; l < net.layer_count(); ++l)
    f += 2.0 * static_cast<double>(B) * static_cast<double>(net.layer(l).inputs * net.layer(l).outputs);
  return f;
}

struct Row {
  std::string name, size;
  std::vector<double> seconds = {};  // sorted
  double bytes = 0, flops = 0;
  std::string note = {};
  [[nodiscard]] double median() const {
    const std::size_t k = seconds.size();
    return k == 0 ? 0.0 : k % 2 ? seconds[k / 2] : 0.5 * (seconds[k / 2 - 1] + seconds[k / 2]);
  }
};

/// Times work on a context: CUDA events around the work on ctx.stream() with L2 flushed first
/// (cuda), steady_clock around the work (cpu, which is synchronous).
class Timer {
 public:
  Timer(Context& ctx, bool quick) : ctx_(ctx), quick_(quick), cuda_(ctx.backend() == Backend::cuda) {
    if (!cuda_) return;
    int l2 = 0;
    D2R_CUDA_TRY(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, ctx.device()));
    flush_ = Buffer<char>(ctx, static_cast<std::size_t>(std::max(l2, 1)) * 3);
    D2R_CUDA_TRY(cudaEventCreate(&start_));
    D2R_CUDA_TRY(cudaEventCreate(&stop_));
  }
  ~Timer() {
    if (start_ != nullptr) D2R_CUDA_TRY_NO_THROW(cudaEventDestroy(start_));
    if (stop_ != nullptr) D2R_CUDA_TRY_NO_THROW(cudaEventDestroy(stop_));
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  /// One warm-up call, then up to 5 (--quick) or 20 timed repetitions, stopping after 2 s (--quick)
  /// or 10 s once at least 2 / 3 are done. Returns the sorted times in seconds.
  std::vector<double> run(const std::function<void()>& work, int max_reps = 0) {
    const int reps = max_reps > 0 ? max_reps : quick_ ? 5 : 20;
    const int min_reps = std::min(reps, quick_ ? 2 : 3);
    const double budget = quick_ ? 2.0 : 10.0;
    work();
    ctx_.synchronize();
    std::vector<double> t;
    const auto begun = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) {
      if (cuda_) {
        D2R_CUDA_TRY(cudaMemsetAsync(flush_.data(), 0, flush_.size(), ctx_.stream()));
        D2R_CUDA_TRY(cudaEventRecord(start_, ctx_.stream()));
        work();
        D2R_CUDA_TRY(cudaEventRecord(stop_, ctx_.stream()));
        D2R_CUDA_TRY(cudaEventSynchronize(stop_));
        float ms = 0;
        D2R_CUDA_TRY(cudaEventElapsedTime(&ms, start_, stop_));
        t.push_back(static_cast<double>(ms) * 1e-3);
      } else {
        const auto t0 = std::chrono::steady_clock::now();
        work();
        ctx_.synchronize();
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - begun).count();
      if (i + 1 >= min_reps && spent > budget) break;
    }
    std::sort(t.begin(), t.end());
    return t;
  }

 private:
  Context& ctx_;
  bool quick_, cuda_;
  Buffer<char> flush_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

/// The machine's copy bandwidth (bytes read + written per second, best of ten copies after one
/// warm-up): cudaMemcpy device to device on cuda, memcpy on the host.
double copy_bandwidth(Context& ctx, bool quick, std::size_t& bytes) {
  bytes = std::size_t{quick ? 256u : 1024u} << 20;
#if D2R_WITH_CUDA  // a build without CUDA has no cuda context
  if (ctx.backend() == Backend::cuda) {
    std::size_t free_bytes = 0, total_bytes = 0;
    D2R_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes));
    while (bytes > (std::size_t{16} << 20) && 3 * bytes > free_bytes) bytes /= 2;
    Buffer<char> a(ctx, bytes), b(ctx, bytes);
    D2R_CUDA_TRY(cudaMemsetAsync(a.data(), 1, bytes, ctx.stream()));
    cudaEvent_t start = nullptr, stop = nullptr;
    D2R_CUDA_TRY(cudaEventCreate(&start));
    D2R_CUDA_TRY(cudaEventCreate(&stop));
    float best_ms = 1e30f;
    for (int i = 0; i < 11; ++i) {
      D2R_CUDA_TRY(cudaEventRecord(start, ctx.stream()));
      D2R_CUDA_TRY(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, ctx.stream()));
      D2R_CUDA_TRY(cudaEventRecord(stop, ctx.stream()));
      D2R_CUDA_TRY(cudaEventSynchronize(stop));
      float ms = 0;
      D2R_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
      if (i > 0) best_ms = std::min(best_ms, ms);
    }
    D2R_CUDA_TRY(cudaEventDestroy(start));
    D2R_CUDA_TRY(cudaEventDestroy(stop));
    return 2.0 * static_cast<double>(bytes) / (static_cast<double>(best_ms) * 1e-3);
  }
#else
  (void)ctx;
#endif
  bytes = std::size_t{quick ? 64u : 256u} << 20;
  std::vector<char> a(bytes, 1), b(bytes, 0);
  double best = 1e30;
  for (int i = 0; i < 11; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i > 0) best = std::min(best, s);
  }
  // Keep the copy observable.
  if (b[bytes / 2] != 1) throw Error(ErrorKind::io, "", "d2r bench: memcpy check failed");
  return 2.0 * static_cast<double>(bytes) / best;
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
  // μ, log σ and y read once; both gradients and the per-row loss written once.
  row.bytes = 4.0 * (5.0 * static_cast<double>(B * n) + static_cast<double>(B));
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
  row.bytes = 4.0 * static_cast<double>(B * C + B * G);  // logits read once, indices written
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
  row.flops = 3.0 * forward_flops(net, B);  // forward F, backward 2F (weight gradients and δ's)
  // x and d_out read, the output written, the cache written and read, parameters read and written.
  row.bytes = 4.0 * (static_cast<double>(B * (kInputs + 2 * out)) + 2.0 * static_cast<double>(Cc) + 3.0 * static_cast<double>(P));
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
  const double F = forward_flops(net, B), bytes = 4.0 * static_cast<double>(B * (kInputs + n));
  Row gradient{"policy gradient (curvature prepare)", size};
  gradient.seconds = timer.run(prepare);
  gradient.flops = 3 * F;
  gradient.bytes = bytes;
  gradient.note = "REINFORCE surrogate, G draws per row";
  prepare();
  Row hvp{"policy HVP (curvature apply)", size};
  hvp.seconds = timer.run([&] { curvature.apply(v.vector(), hv.vector()); });
  hvp.flops = 5 * F;  // forward tangent F, backward 2F, backward tangent 2F
  hvp.bytes = bytes;
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
  // As bench/outer_step_bench.cpp: (3·K_in + 8 + 5·HVPs)·F, HVPs = 2 + 2·CG iterations.
  const Mlp net({.inputs = kInputs, .hidden = spec.hidden, .outputs = 2 * kDims});
  const double hvps = 2.0 + 2.0 * static_cast<double>(options.cg.max_iterations);
  const double K = static_cast<double>(options.inner.steps);
  row.flops = (3.0 * K + 8.0 + 5.0 * hvps) * forward_flops(net, B);
  row.bytes = (K + 4.0 + hvps) * 4.0 * static_cast<double>(B * (kInputs + kDims));
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
