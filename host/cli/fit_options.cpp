// The options of `d2r fit` (also those `d2r sweep` shares: register_fit_options), with their
// validators and help texts.
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "host/cli/commands.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {
namespace {

/// split_list of every value given to `option` (a list option may be given as "a,b" or "a b").
std::vector<std::string> split_all(const std::string& option, const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& v : values) {
    for (std::string& item : split_list(option, v)) out.push_back(std::move(item));
  }
  return out;
}

}  // namespace

CLI::App* add_fit_command(CLI::App& app, FitOptions& o) {
  CLI::App* cmd = app.add_subcommand("fit", "Train a Gaussian regression policy (--targets) or a classifier (--task "
                                            "classification --label) on a CSV file (MSE, NLL, PG, heuristic or "
                                            "bilevel-learned reward) and write results into --out. Exit codes: 0 "
                                            "success (bilevel: converged), 1 internal error, 2 bad input (nothing "
                                            "written), 3 diverged or non-finite results, 4 bilevel step_limited");
  register_fit_options(cmd, o);
  return cmd;
}

void add_device_options(CLI::App* cmd, std::string& device, std::string& precision, int& threads) {
  add_shown_option(cmd, "--device", device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  add_shown_option(cmd, "--precision", precision, "float or double (double: cpu only)")
      ->check(CLI::IsMember({"float", "double"}));
  add_shown_option(cmd, "--threads", threads,
                   "cpu backend: BLAS threads (results are reproducible for a given count)")
      ->check(CLI::Range(1, 256));
}

void register_fit_options(CLI::App* cmd, FitOptions& o) {
  cmd->add_option("data", o.data, "CSV file with a header row")->required()->check(CLI::ExistingFile);
  add_shown_option(cmd, "--task", o.task, "regression or classification")
      ->check(CLI::IsMember({"regression", "classification"}));
  cmd->add_option_function<std::vector<std::string>>(
      "--targets", [&o](const std::vector<std::string>& v) { o.targets = split_all("--targets", v); },
      "regression: target columns, comma-separated (required); quote a name holding a comma: '\"a,b\",c'");
  cmd->add_option("--label", o.label, "classification: the label column (required)");
  add_shown_option(cmd, "--beta", o.beta,
                   "classification: β of the one-hot reward U = β·I: pg's fixed value, bilevel's start")
      ->check(positive_number());
  cmd->add_option("--outer-data", o.outer_data,
                  "bilevel: the rows of the outer loss, validation or train (default: the preset's: recommended "
                  "validation, paper train)")
      ->check(CLI::IsMember({"train", "validation"}));
  add_shown_option(cmd, "--preset", o.preset,
                   "bilevel: recommended (validation rows, log-space Rprop, stationary warm inner policy, damped CG to "
                   "a relative residual of 0.25, stops when converged) or paper (training rows, outer Adam re-created every step, one CG "
                   "iteration, fresh inner policy) or stationary (recommended, but every outer step retrains the inner "
                   "policy from one fixed start to a gradient norm of 1e-3 of its start, solves to 1e-3 and resolves the "
                   "outer loss to 1e-3: the outer loss is a function of the reward alone, at many more inner steps); "
                   "options given explicitly override it")
      ->check(CLI::IsMember({"recommended", "stationary", "paper"}));
  cmd->add_option("--final-model", o.final_model,
                  "bilevel: the model fit returns and reports, with the reward it was trained at: best (the inner policy "
                  "of the outer step with the lowest outer loss among those whose inner policy was stationary), last "
                  "(the last outer step's inner policy and the last reward; 'inner' is an alias) or pg (classification "
                  "only: PG retrained for --epochs at the learned β, the paper's tabular protocol) (default: the "
                  "preset's: recommended best, paper last for regression and pg for classification)")
      ->check(CLI::IsMember({"best", "last", "inner", "pg"}));
  add_shown_option(cmd, "--outer-step", o.outer_step,
                   "bilevel, recommended preset (Rprop): initial step of log φ (0.3: a factor 1.35)");
  add_shown_option(cmd, "--flat-tolerance", o.flat_tolerance,
                   "bilevel, Rprop: no step where the hypergradient predicts a change of the outer loss below this "
                   "fraction of --loss-tolerance for a move of --outer-step (0: off; shown: the recommended preset's, "
                   "stationary 0.5)")
      ->check(finite_range(0.0, 1e6));
  add_shown_option(cmd, "--inner-tolerance", o.inner_tolerance,
                   "bilevel: inner steps continue (K_in at a time) until ‖∇θ L_in‖ is below this fraction of its "
                   "value at the start (0: exactly K_in steps; shown: the recommended preset's, stationary 1e-3)");
  add_shown_option(cmd, "--inner-max-steps", o.inner_max_steps,
                   "bilevel: cap on the inner steps of one outer step (shown: the recommended preset's, stationary 4000)");
  add_shown_option(cmd, "--solver-tolerance", o.solver_tolerance,
                   "bilevel: relative residual of the linear solve (shown: the recommended preset's, stationary 1e-3)");
  add_shown_option(cmd, "--damping", o.damping, "bilevel: damping δ of the linear solve (H + δI) w = g");
  add_shown_option(cmd, "--window", o.window, "bilevel: converged when over this many outer steps ...");
  add_shown_option(cmd, "--reward-tolerance", o.reward_tolerance,
                   "... the reward moved by at most this (relative) ...");
  add_shown_option(cmd, "--loss-tolerance", o.loss_tolerance,
                   "... and the outer loss by at most this (nats; shown: the recommended preset's, stationary 1e-3)");
  add_shown_option(cmd, "--patience", o.patience,
                   "bilevel: also converged (early stop) when this many outer steps passed since the best-judged one "
                   "without a lower outer loss (0: off; shown: the recommended preset's, stationary and paper 0)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1000000}));
  cmd->add_flag("--standardize-targets,!--no-standardize-targets", o.standardize_targets,
                "regression: centre the targets and divide them by one scale (the RMS of their standard deviations) "
                "for training; metrics are reported in the original units, the reward in both (default: on)");
  add_shown_option(cmd, "--epochs", o.epochs, "classification: passes over the training rows")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 24));
  add_shown_option(cmd, "--batch-size", o.batch_size, "classification: rows per Adam step (0: full batch)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 31));
  cmd->add_option_function<std::vector<std::string>>(
      "--features", [&o](const std::vector<std::string>& v) { o.features = split_all("--features", v); },
      "feature columns, comma-separated, quoted as --targets (default: every other column)");
  add_shown_option(cmd, "--method", o.method,
                   "mse, nll, pg, heuristic or bilevel (classification: nll, pg, heuristic, bilevel)")
      ->check(CLI::IsMember({"mse", "nll", "pg", "heuristic", "bilevel"}));
  add_shown_option(cmd, "--reward", o.reward, "reward form U: scalar (u·I), diagonal or full (U = R Rᵀ)")
      ->check(CLI::IsMember({"scalar", "diagonal", "full"}));
  cmd->add_option_function<std::vector<std::string>>(
      "--u",
      [&o](const std::vector<std::string>& v) {
        o.u.clear();
        for (const std::string& s : v) {
          for (double x : split_numbers("--u", s)) o.u.push_back(x);
        }
      },
      "reward parameters, comma-separated: pg's fixed reward, bilevel's start (default U = I); "
      "scalar: u; diagonal: U_11..U_nn; full: the rows of lower-triangular R, packed");
  add_shown_option(cmd, "--lambda", o.lambda, "entropy weight λ >= 0")->check(non_negative_number());
  add_shown_option(cmd, "-G,--generations", o.generations,
                   "samples per row G of the policy gradient (classification default: 50; bilevel: only where something "
                   "is sampled: --preset paper, --inner-objective reinforce or --curvature surrogate)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20));
  add_shown_option(cmd, "--steps", o.steps, "full-batch Adam steps (mse, nll, pg, heuristic)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 31));
  add_shown_option(cmd, "--lr", o.lr,
                   "Adam learning rate (bilevel: of the inner policy; classification default: 0.05)")
      ->check(positive_number());
  add_shown_option(cmd, "--outer-lr", o.outer_lr,
                   "bilevel: Adam learning rate of the reward parameters (classification default: 0.1)")
      ->check(positive_number());
  cmd->add_option_function<std::vector<std::string>>(
         "--hidden",
         [&o](const std::vector<std::string>& v) {
           o.hidden.clear();
           for (const std::string& s : v) {
             for (std::int64_t w : split_integers("--hidden", s)) {
               if (w < 1 || w > (std::int64_t{1} << 16)) {
                 throw CLI::ValidationError("--hidden", fmt::format("a layer width must be in [1, 65536], got {}", w));
               }
               o.hidden.push_back(w);
             }
           }
         },
         "hidden layer widths, comma-separated (default 64,64; classification default: none, logistic regression)");
  add_shown_option(cmd, "--activation", o.activation, "relu or tanh")->check(CLI::IsMember({"relu", "tanh"}));
  add_shown_option(cmd, "--head", o.head, "Gaussian head: diagonal or cholesky (bilevel: diagonal only)")
      ->check(CLI::IsMember({"diagonal", "cholesky"}));
  add_shown_option(cmd, "--outer-steps", o.outer_steps, "bilevel: outer steps K_out (classification default: 50)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 24));
  add_shown_option(cmd, "--inner-steps", o.inner_steps,
                   "bilevel: inner Adam steps K_in per outer step (default: the preset's, recommended 20, paper 50)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 24));
  add_shown_option(cmd, "--inner-batch-size", o.inner_batch_size,
                   "bilevel: training rows per inner Adam step, shuffled windows (0 or >= the training rows: full "
                   "batch); the implicit step always uses every training row");
  add_shown_option(cmd, "--inner-start", o.inner_start,
                   "bilevel: inner policy of each outer step: fresh (a new initialisation each step), warm (continues "
                   "the last one) or fixed (the same initialisation every step: with the exact full-batch inner "
                   "loop the outer loss is a function of the reward alone) (default: the preset's: recommended warm, stationary fixed, paper fresh)")
      ->check(CLI::IsMember({"fresh", "warm", "fixed"}));
  add_shown_option(cmd, "--inner-objective", o.inner_objective,
                   "bilevel: gradient of the inner steps: exact (the closed-form expectation of the PG objective, "
                   "deterministic) or reinforce (G samples per row) (default: the preset's: recommended exact, paper "
                   "reinforce)")
      ->check(CLI::IsMember({"exact", "reinforce"}));
  add_shown_option(cmd, "--curvature", o.curvature, "bilevel: curvature of the implicit step: exact or surrogate")
      ->check(CLI::IsMember({"exact", "surrogate"}));
  add_shown_option(cmd, "--solver", o.solver,
                   "bilevel: implicit solver: normal_cg, cg, neumann or cg_or_normal_cg (CG, then normal CG where CG "
                   "does not converge) (default: the preset's: recommended and paper normal_cg, stationary cg_or_normal_cg)")
      ->check(CLI::IsMember({"normal_cg", "cg", "neumann", "cg_or_normal_cg"}));
  add_shown_option(cmd, "--solver-iterations", o.solver_iterations,
                   "bilevel: CG iteration cap (normal_cg, cg; default: the preset's, recommended 50, stationary 1000, paper 1)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20));
  add_shown_option(cmd, "--val-fraction", o.val_fraction,
                   "share of rows held out for validation (0: none; classification: of every class, after a "
                   "stratified 0.2 test split)")
      ->check(finite_range(0.0, 0.95));
  cmd->add_flag("--standardize", o.standardize,
                "standardise the features with the training rows' statistics (classification: always)");
  add_shown_option(cmd, "--eval-every", o.eval_every, "record metrics every this many steps (mse, nll, pg, heuristic)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 31));
  add_shown_option(cmd, "--seed", o.seed, "seed of the split, the initialisation and the Philox draws")
      ->check(unsigned_64());
  add_device_options(cmd, o.device, o.precision, o.threads);
  cmd->add_option("--out", o.out, "output directory (created when missing)")->required();
  cmd->add_flag("--resume", o.resume,
                "bilevel: continue the run checkpointed in --out (refused unless every setting and the data are "
                "those of the checkpoint; --outer-steps may grow)");
  cmd->add_flag("--overwrite", o.overwrite,
                "replace the files of an earlier run in --out (without it a folder holding results is refused)")
      ->excludes("--resume");
  add_shown_option(cmd, "--checkpoint-every", o.checkpoint_every, "bilevel: save a checkpoint every K outer steps")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 24));
  cmd->add_flag("-q,--quiet", o.quiet, "no progress report on stderr");
  // Which options were given: some defaults depend on the task, and the options of one task are
  // refused with the other.
  cmd->parse_complete_callback([cmd, &o] {
    o.given.clear();
    for (const CLI::Option* opt : cmd->get_options()) {
      if (opt->count() > 0 && !opt->get_lnames().empty()) o.given.push_back("--" + opt->get_lnames().front());
    }
  });
}

}  // namespace d2r::cli
