// `d2r reproduce implicit`: PAPER.md Fig. 3, the bilevel trainer moves u from 1 to u* ≈ 0.32
// (loc 6, σ = 1.25, λ = 1).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "d2r/d2r.hpp"
#include "host/cli/experiments/experiments.hpp"
#include "host/cli/output.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli::experiments {

int reproduce_implicit(Context& ctx, const ReproduceOptions& o, const fs::path& out) {
  constexpr double loc = 6, sigma = 1.25, lambda = 1, paper_u = 0.32;
  Rng rng(derive_seed(o.seed, 0));
  const HostData data = make_fig1_data(rng, 100, 10, loc, sigma);
  // This sample's isotropic optimum λn / (2 Σ‖y − μ(x)‖² / N): around the true mean x + loc, and
  // around each x's own sample mean of its 10 targets (what a network that fits every x reaches).
  double ss = 0, ss_within = 0;
  for (std::int64_t g = 0; g < 100; ++g) {
    for (std::int64_t d = 0; d < 2; ++d) {
      double m = 0;
      for (std::int64_t j = 0; j < 10; ++j) m += data.y[static_cast<std::size_t>((g * 10 + j) * 2 + d)] / 10;
      for (std::int64_t j = 0; j < 10; ++j) {
        const auto i = static_cast<std::size_t>((g * 10 + j) * 2 + d);
        ss += (data.y[i] - data.x[i] - loc) * (data.y[i] - data.x[i] - loc);
        ss_within += (data.y[i] - m) * (data.y[i] - m);
      }
    }
  }
  const double sample_u = lambda * 2 / (2 * ss / static_cast<double>(data.rows));
  const double within_u = lambda * 2 / (2 * ss_within / static_cast<double>(data.rows));

  RegressionConfig c = base_config(o);
  // The paper's outer loop (BilevelOptions::paper(): training rows, outer Adam re-created every
  // step, one CG iteration), with the warm inner start that reaches its u* (the paper's fresh
  // start under-fits the mean in K_in = 50 steps, which biases u* low).
  apply_bilevel_preset(c, "paper");
  c.method = Method::bilevel;
  c.reward_form = RewardForm::scalar;
  c.lambda = lambda;
  c.outer_steps = 100;
  c.bilevel.inner.steps = 50;
  c.bilevel.inner.adam.learning_rate = 0.01;
  c.bilevel.outer_adam.learning_rate = 0.01;
  c.bilevel.inner_start = InnerStart::warm;
  c.bilevel.curvature = CurvatureKind::exact;
  c.bilevel.solver = ImplicitSolver::normal_cg;
  c.bilevel.cg.max_iterations = 1;
  std::vector<double> starts{1.0};
  if (!o.quick) starts.push_back(0.05);
  const std::vector<double> grid{0.08, 0.16, 0.32, 0.64, 1.0};
  RegressionConfig g = base_config(o);
  g.method = Method::pg;
  g.plain.steps = 600;
  g.plain.adam.learning_rate = 0.01;
  g.plain.gradient_clamp = 1;
  g.plain.evaluate_every = 600;

  lock_output_dir(kCmd, "--out", out);  // every argument and file checked: claim --out
  Runner runner(ctx, "reproduce implicit", o.quiet);
  for (std::size_t i = 0; i < starts.size(); ++i) runner.plan(c, data.rows);
  if (!o.quick)
    for (std::size_t i = 0; i < grid.size(); ++i) runner.plan(g, data.rows);

  fmt::print("d2r reproduce implicit{} (PAPER.md Fig. 3): x ~ U[-5,5]², y = x + 6 + 1.25ε, 100 x × 10 samples;\n"
             "bilevel trainer, scalar reward r = -u‖ŷ - y‖², λ = 1, G = 5, K_out = 100, K_in = 50, Adam 0.01 / 0.01 "
             "(outer re-created each step),\nwarm inner start, exact curvature, CG on the normal equations (1 "
             "iteration); MLP 2→[64,64] relu;\ndevice {} ({}), {}, seed {}\n",
             o.quick ? " --quick" : "", to_string(ctx.backend()), ctx.device_name(), o.precision, o.seed);
  std::fflush(stdout);

  nlohmann::json trajectories = nlohmann::json::array();
  std::vector<std::vector<std::string>> summary;
  bool holds = true;
  double final_u_first = kNaN, u_10 = kNaN;
  for (double u0 : starts) {
    c.reward_params = {u0};
    const std::string name = fmt::format("bilevel/u0={}", u0);
    const RunResult r = runner.run(name, c, data, {}, {{"u0", u0}});
    fmt::print("\nu from {}:\n  {:>10} {:>10} {:>14} {:>10}\n", u0, "outer step", "u", "NLL/dim (L_out)", "mean std");
    std::vector<double> us;
    for (const StepRecord& s : r.records) {
      us.push_back(s.reward_params[0]);
      if (s.step % 10 == 0 || s.step == 1) {
        fmt::print("  {:>10} {:>10.4f} {:>14.4f} {:>10.4f}\n", s.step, s.reward_params[0], s.outer_loss, s.train.mean_std);
      }
    }
    const std::size_t last = std::min<std::size_t>(10, us.size());
    const double tail = std::accumulate(us.end() - static_cast<std::ptrdiff_t>(last), us.end(), 0.0) / static_cast<double>(last);
    const auto first = std::find_if(us.begin(), us.end(), [&](double u) { return u0 > paper_u ? u < 0.35 : u > 0.29; });
    const std::int64_t reached = first == us.end() ? -1 : (first - us.begin()) + 1;
    const bool ok = std::abs(us.back() - paper_u) <= 0.05;
    holds = holds && ok;
    if (std::isnan(final_u_first)) {
      final_u_first = us.back();
      u_10 = us[std::min<std::size_t>(9, us.size() - 1)];
    }
    fmt::print("  final u = {:.4f} (mean of the last {} steps {:.4f}); paper: u ≈ {}\n", us.back(), last, tail, paper_u);
    fmt::print("  u* = λ/(2σ²) = {:.4f} for σ = 1.25; for this sample λn/(2·mean‖y − μ‖²) = {:.4f} around the true mean,\n"
               "  {:.4f} around each x's own sample mean (a network that fits every x sees the smaller spread)\n",
               lambda / (2 * sigma * sigma), sample_u, within_u);
    if (reached > 0) {
      fmt::print("  u within 0.03 of 0.32 after {} outer steps (paper: ≈ 70 from u0 = 1)\n", reached);
    }
    trajectories.push_back({{"u0", u0}, {"u", us}, {"final_u", us.back()}, {"mean_last_10", tail},
                            {"steps_to_reach", reached}, {"within_0.05_of_0.32", ok}});
    summary.push_back({name, format_number(u0), format_number(us.back()), format_number(tail),
                       format_number(static_cast<double>(reached)), format_number(r.train.nll_per_dim),
                       format_number(r.train.mean_std)});
  }
  nlohmann::json grid_json = nlohmann::json::array();
  if (!o.quick) {
    fmt::print("\nouter loss over u (PG policies trained 600 steps at fixed u, NLL/dim of the data):\n");
    double best_u = kNaN, best = std::numeric_limits<double>::infinity();
    for (double u : grid) {
      g.reward_params = {u};
      const std::string name = fmt::format("grid/u={}", u);
      const RunResult r = runner.run(name, g, data, {}, {{"u", u}});
      fmt::print("  u = {:<5} NLL/dim {:.4f}  mean std {:.4f}\n", u, r.train.nll_per_dim, r.train.mean_std);
      if (r.train.nll_per_dim < best) {
        best = r.train.nll_per_dim;
        best_u = u;
      }
      grid_json.push_back({{"u", u}, {"nll_per_dim", r.train.nll_per_dim}, {"mean_std", r.train.mean_std}});
      summary.push_back({name, format_number(u), format_number(u), format_number(u), format_number(kNaN),
                         format_number(r.train.nll_per_dim), format_number(r.train.mean_std)});
    }
    fmt::print("  lowest at u = {} (paper: lowest near u* = 0.32)\n", best_u);
  }
  runner.finish();
  fmt::print("\nfinal u = {:.4f}  (paper: ≈ {})  => {} ({:.1f} s)\n", final_u_first, paper_u,
             holds ? "reproduced (within 0.05)" : "NOT reproduced", runner.elapsed());

  nlohmann::json j = experiment_header(ctx, o);
  j["setting"] = {{"points", data.rows}, {"loc", loc}, {"sigma", sigma}, {"lambda", lambda}, {"paper_u", paper_u},
                  {"population_u_star", lambda / (2 * sigma * sigma)}, {"sample_u_star", sample_u},
                  {"sample_within_x_u_star", within_u}};
  j["trajectories"] = trajectories;
  j["final_u"] = final_u_first;
  j["u_10"] = u_10;
  j["reproduced"] = holds;
  if (!o.quick) j["outer_loss_grid"] = grid_json;
  j["runs"] = runner.runs();
  j["wall_seconds"] = runner.elapsed();
  write_outputs(out, j, {"run", "u0", "final_u", "mean_last_10", "steps_to_reach", "train_nll_per_dim", "train_mean_std"},
                summary, runner.curves());
  return 0;
}

}  // namespace d2r::cli::experiments
