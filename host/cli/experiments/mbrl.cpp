// `d2r reproduce mbrl`: PAPER.md Table 3, one-step dynamics models of HalfCheetah (23 → 17) from
// data/halfcheetah, six methods.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "d2r/d2r.hpp"
#include "host/cli/experiments/experiments.hpp"
#include "host/cli/fit_inputs.hpp"
#include "host/cli/output.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli::experiments {


/// Paper's Table 3 (medium dataset): test RMSE / per-dimension NLL.
struct PaperRow {
  const char* label;
  double rmse, nll;
};

int reproduce_mbrl(Context& ctx, const ReproduceOptions& o, const fs::path& out) {
  const fs::path data_dir = find_data_dir(
      o, [](const fs::path& p) { return fs::exists(p / "halfcheetah" / "random.csv"); }, "halfcheetah/random.csv");
  const std::vector<std::string> files = o.quick ? std::vector<std::string>{"scripted"}
                                                 : std::vector<std::string>{"scripted", "random"};
  std::vector<std::string> features, targets;
  for (int i = 0; i < 17; ++i) features.push_back(fmt::format("s_{}", i));
  for (int i = 0; i < 6; ++i) features.push_back(fmt::format("a_{}", i));
  for (int i = 0; i < 17; ++i) targets.push_back(fmt::format("ds_{}", i));
  // Episodes of 1000 rows: the first 8 train, the last 2 test (quick: 4 train episodes).
  const std::int64_t episode = 1000, train_episodes = o.quick ? 4 : 8, test_episodes = 2;
  // Bilevel: the paper's K_out = 100, K_in = 50 with a fresh inner policy every outer step, outer Adam
  // 0.01 re-created every step (so u moves by at most 0.01 per step); quick: 30 outer steps with outer
  // Adam 0.05 so that u can travel as far. The learned u is the mean over the last 10 outer steps
  // (u oscillates by ± the outer step size around its fixed point).
  const std::int64_t steps = 400, outer_steps = o.quick ? 30 : 100, inner_steps = 50;
  const double outer_lr = o.quick ? 0.05 : 0.01, u0 = 1.0;

  struct FileData {
    std::string name;
    HostData train, test;
  };
  std::vector<FileData> fds;
  for (const std::string& f : files) {
    const fs::path path = data_dir / "halfcheetah" / (f + ".csv");
    const Table table = read_data_file(kCmd, "--data-dir", path);
    Dataset all = make_regression_dataset(table, targets, features);
    const std::int64_t episodes = all.rows / episode;
    if (episodes < train_episodes + test_episodes) {
      bad_input(kCmd, "--data-dir", fmt::format("'{}' has {} episodes of {} rows; expected at least {}", path.string(),
                                                episodes, episode, train_episodes + test_episodes));
    }
    const auto slice = [&](std::int64_t first_row, std::int64_t rows) {
      Dataset d = all;
      const std::int64_t p = all.feature_count(), n = all.target_count();
      d.rows = rows;
      d.features.assign(all.features.begin() + first_row * p, all.features.begin() + (first_row + rows) * p);
      d.targets.assign(all.targets.begin() + first_row * n, all.targets.begin() + (first_row + rows) * n);
      return d;
    };
    Dataset train = slice(0, train_episodes * episode);
    Dataset test = slice((episodes - test_episodes) * episode, test_episodes * episode);
    const Standardization map = standardize(train);  // inputs only, with the training rows' statistics
    apply_standardization(test, map);
    FileData fd{f, {train.rows, 23, 17, train.features, train.targets}, {test.rows, 23, 17, test.features, test.targets}};
    fds.push_back(std::move(fd));
  }

  RegressionConfig plain = base_config(o);
  plain.plain.steps = steps;
  plain.plain.adam.learning_rate = 1e-3;
  plain.plain.evaluate_every = 10;
  RegressionConfig bl = base_config(o);
  apply_bilevel_preset(bl, "paper");  // the paper's outer loop (BilevelOptions::paper())
  bl.method = Method::bilevel;
  bl.reward_form = RewardForm::scalar;
  bl.outer_steps = outer_steps;
  bl.bilevel.inner.steps = inner_steps;
  bl.bilevel.inner.adam.learning_rate = 1e-3;
  bl.bilevel.outer_adam.learning_rate = outer_lr;
  bl.bilevel.inner_start = InnerStart::fresh;

  struct Spec {
    std::string key, label;
    Method method;
    RewardForm form;
  };
  const std::vector<Spec> specs{{"mse", "MSE", Method::mse, RewardForm::scalar},
                                {"nll", "NLL", Method::nll, RewardForm::scalar},
                                {"pg_identity", "PG(U = I)", Method::pg, RewardForm::scalar},
                                {"pg_implicit", "PG(U implicit)", Method::pg, RewardForm::scalar},
                                {"pg_heuristic_scalar", "PG(λn/(2 tr Σ) I)", Method::heuristic, RewardForm::scalar},
                                {"pg_heuristic_full", "PG((λ/2) Σ⁻¹)", Method::heuristic, RewardForm::full}};
  const std::map<std::string, PaperRow> paper{{"mse", {"MSE", 1.88, kNaN}},
                                              {"nll", {"NLL", 4.59, 0.73}},
                                              {"pg_identity", {"PG(U = I)", 2.41, 7.97}},
                                              {"pg_implicit", {"PG(U implicit, u = 0.08)", 2.32, 2.32}},
                                              {"pg_heuristic_scalar", {"PG(λn/(2trΣ)I)", 2.75, 2.87}},
                                              {"pg_heuristic_full", {"PG((λ/2)Σ⁻¹)", 6.01, 2.54}}};

  lock_output_dir(kCmd, "--out", out);  // every argument and file checked: claim --out
  Runner runner(ctx, "reproduce mbrl", o.quiet);
  for (const FileData& fd : fds) {
    runner.plan(bl, fd.train.rows);
    for (const Spec& s : specs) {
      RegressionConfig c = plain;
      c.method = s.method;
      runner.plan(c, fd.train.rows);
    }
  }

  fmt::print("d2r reproduce mbrl{} (PAPER.md Table 3): one-step HalfCheetah dynamics p(s_t+1 - s_t | s_t, a_t), "
             "23 inputs (standardised) → 17 targets;\nMLP 23→[64,64] relu → diagonal Gaussian, full-batch Adam 1e-3 × {} "
             "steps, λ = 1, G = 5; train: the first {} episodes ({} rows), test: the last {} ({} rows);\n"
             "implicit u: bilevel trainer from u0 = {}, K_out = {}, K_in = {} (fresh inner policy each outer step), Adam "
             "1e-3 / {},\nthen PG with the learned u (mean over the last 10 outer steps);\ndevice {} ({}), {}, seed {}\n",
             o.quick ? " --quick" : "", steps, train_episodes, train_episodes * episode, test_episodes,
             test_episodes * episode, u0, outer_steps, inner_steps, outer_lr, to_string(ctx.backend()), ctx.device_name(),
             o.precision, o.seed);
  fmt::print("NOTE: our data (data/halfcheetah/{{random,scripted}}.csv, generated with gymnasium HalfCheetah-v5) stand "
             "in for D4RL's\nmedium/expert sets the paper used; the numbers are for the same task, not the same data.\n");
  std::fflush(stdout);

  nlohmann::json tables = nlohmann::json::object();
  std::vector<std::vector<std::string>> summary;
  for (const FileData& fd : fds) {
    std::map<std::string, RunResult> res;
    // The bilevel run first: PG(U implicit) uses its u.
    RegressionConfig b = bl;
    b.reward_params = {u0};
    const std::string bname = fmt::format("{}/bilevel", fd.name);
    const RunResult br = runner.run(bname, b, fd.train, fd.test, {{"file", fd.name}});
    double learned_u = 0;
    const std::size_t tail = std::min<std::size_t>(10, br.records.size());
    for (std::size_t i = br.records.size() - tail; i < br.records.size(); ++i) learned_u += br.records[i].reward_params.at(0);
    learned_u /= static_cast<double>(tail);
    for (const Spec& s : specs) {
      RegressionConfig c = plain;
      c.method = s.method;
      c.reward_form = s.form;
      if (s.key == "pg_identity") c.reward_params = {1.0};
      if (s.key == "pg_implicit") c.reward_params = {learned_u};
      const std::string name = fmt::format("{}/{}", fd.name, s.key);
      res[s.key] = runner.run(name, c, fd.train, fd.test, {{"file", fd.name}, {"method", s.label}});
    }
    fmt::print("\n{}.csv ({} train / {} test rows): bilevel u: {:.4f} → {:.4f} (mean of the last 10; final {:.4f}) in {} "
               "outer steps\n  (paper, D4RL medium: u = 0.08)\n",
               fd.name, fd.train.rows, fd.test.rows, u0, learned_u, br.reward_params.at(0), outer_steps);
    fmt::print("  {:<25} {:>10} {:>10} {:>10}    {:<26} {:>6} {:>6}\n", "method", "test RMSE", "NLL/dim", "mean std",
               "paper (D4RL medium)", "RMSE", "NLL");
    nlohmann::json table = nlohmann::json::array();
    for (const Spec& s : specs) {
      const RunResult& r = res[s.key];
      const PaperRow& p = paper.at(s.key);
      const std::string label = s.key == "pg_implicit" ? fmt::format("PG(U implicit, u={:.3f})", learned_u) : s.label;
      // MSE trains only the mean: its variance outputs are left at their initialisation (paper: "–").
      const double nll = s.method == Method::mse ? kNaN : r.held_out.nll_per_dim;
      fmt::print("  {:<25} {:>10.3f} {:>10} {:>10.3f}    {:<26} {:>6} {:>6}\n", label, r.held_out.rmse, fmt_or_dash(nll),
                 r.held_out.mean_std, p.label, fmt_or_dash(p.rmse, 2), fmt_or_dash(p.nll, 2));
      table.push_back({{"method", s.key}, {"label", label}, {"test_rmse", r.held_out.rmse},
                       {"test_nll_per_dim", r.held_out.nll_per_dim}, {"test_mean_std", r.held_out.mean_std},
                       {"reward_params", r.reward_params}, {"paper_rmse", p.rmse}, {"paper_nll_per_dim", p.nll}});
      summary.push_back({fd.name, s.key, format_number(r.held_out.rmse), format_number(r.held_out.nll_per_dim),
                         format_number(r.held_out.mean_std), format_number(r.train.rmse), format_number(r.train.nll_per_dim),
                         format_number(r.reward_params.size() == 1 ? r.reward_params[0] : kNaN), format_number(p.rmse),
                         format_number(p.nll)});
    }
    // The paper's message: the learned reward gives the best PG model (test RMSE and NLL).
    std::string best_rmse, best_nll;
    for (const Spec& s : specs) {
      if (s.method != Method::pg && s.method != Method::heuristic) continue;
      const PolicyMetrics& m = res[s.key].held_out;
      if (best_rmse.empty() || m.rmse < res[best_rmse].held_out.rmse) best_rmse = s.key;
      if (best_nll.empty() || m.nll_per_dim < res[best_nll].held_out.nll_per_dim) best_nll = s.key;
    }
    fmt::print("  best PG model by test RMSE: {}, by test NLL: {} (paper: pg_implicit for both)\n", best_rmse, best_nll);
    tables[fd.name] = {{"rows", table}, {"bilevel_u0", u0}, {"learned_u", learned_u},
                       {"best_pg_by_rmse", best_rmse}, {"best_pg_by_nll", best_nll}};
  }
  runner.finish();
  fmt::print("\n({:.1f} s)\n", runner.elapsed());

  nlohmann::json j = experiment_header(ctx, o);
  j["setting"] = {{"files", files},           {"data_dir", data_dir.string()}, {"train_episodes", train_episodes},
                  {"test_episodes", test_episodes}, {"steps", steps},          {"outer_steps", outer_steps},
                  {"inner_steps", inner_steps}, {"outer_learning_rate", outer_lr}, {"u0", u0},
                  {"note", "data/halfcheetah stands in for D4RL HalfCheetah medium/expert (Table 3)"}};
  j["tables"] = tables;
  j["runs"] = runner.runs();
  j["wall_seconds"] = runner.elapsed();
  write_outputs(out, j,
                {"file", "method", "test_rmse", "test_nll_per_dim", "test_mean_std", "train_rmse", "train_nll_per_dim",
                 "u", "paper_rmse", "paper_nll_per_dim"},
                summary, runner.curves());
  return 0;
}

}  // namespace d2r::cli::experiments
