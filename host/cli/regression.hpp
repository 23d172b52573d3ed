#pragma once
// The regression trainer behind `d2r fit` and `d2r reproduce`: one configuration (method, reward,
// network, optimiser, bilevel settings) run on host data through the library's trainers
// (fit_policy, heuristic_reward, BilevelTrainer), with records, final metrics and the reward
// parameters as plain host values that the commands print and write.
//
// Use: RegressionRun run(ctx, config, train, held_out); (validates everything and allocates, no
// training) ... run.run(progress) (trains). For the bilevel method a checkpoint path makes run()
// save every `checkpoint_every` outer steps, and resume() continues from such a file.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "d2r/bilevel.hpp"
#include "d2r/context.hpp"
#include "d2r/network.hpp"
#include "d2r/objectives.hpp"
#include "d2r/policy_model.hpp"

namespace d2r::cli {

/// What a regression run trains.
enum class Method {
  mse,        ///< maximum likelihood of the mean only (the variance outputs are not trained)
  nll,        ///< maximum likelihood
  pg,         ///< policy gradient with a fixed reward (RegressionConfig::reward_params, default U = I)
  heuristic,  ///< policy gradient with the heuristic reward of the training targets (heuristic.hpp)
  bilevel,    ///< the reward learned by BilevelTrainer; the policy is the last outer step's inner policy
};
const char* to_string(Method method) noexcept;
Method parse_method(const std::string& name);
const char* reward_form_name(RewardForm form) noexcept;

/// Rows of inputs x (rows x inputs) and targets y (rows x dims), row-major, in host memory.
struct HostData {
  std::int64_t rows = 0, inputs = 0, dims = 0;
  std::vector<double> x, y;
  [[nodiscard]] bool empty() const noexcept { return rows == 0; }
};

/// Every setting of a run (the defaults are those of the paper's Fig. 1/3 and MBRL settings where
/// they have one).
struct RegressionConfig {
  Method method = Method::nll;
  bool double_precision = false;  ///< cpu backend only
  // Policy.
  std::vector<std::int64_t> hidden{64, 64};
  Activation activation = Activation::relu;
  GaussianHead head = GaussianHead::diagonal;
  // Reward (pg, heuristic, bilevel).
  RewardForm reward_form = RewardForm::scalar;
  std::vector<double> reward_params;  ///< pg: the fixed reward; bilevel: φ₀; empty: U = I
  double lambda = 1;                  ///< entropy weight λ
  std::int64_t generations = 5;       ///< G
  // Plain training (mse, nll, pg, heuristic).
  std::int64_t steps = 400;
  double learning_rate = 1e-3;
  double gradient_clamp = std::numeric_limits<double>::infinity();
  std::int64_t eval_every = 1;  ///< record metrics every this many steps (and at the last)
  // Bilevel.
  std::int64_t outer_steps = 100;
  std::int64_t inner_steps = 50;
  std::int64_t inner_batch_size = 0;  ///< rows per inner step (0 or >= the training rows: full batch)
  double inner_learning_rate = 0.01;
  double outer_learning_rate = 0.01;
  double inner_gradient_clamp = 1;
  double hypergradient_clamp = 10;
  InnerStart inner_start = InnerStart::warm;
  CurvatureKind curvature = CurvatureKind::exact;
  ImplicitSolver solver = ImplicitSolver::normal_cg;
  std::int64_t cg_iterations = 1;
  std::uint64_t seed = 0;  ///< initialisation of θ (the context's seed keys the draws)

  [[nodiscard]] nlohmann::json to_json() const;
};

/// One evaluation: a plain-training step or an outer step of the bilevel loop.
struct StepRecord {
  std::int64_t step = 0;
  PolicyMetrics train, held_out;  ///< held_out: NaN fields when there is none
  // Bilevel only.
  std::vector<double> reward_params, hypergradient;
  double outer_loss = 0, mean_inner_reward = 0, solver_residual = 0, wall_seconds = 0;
  std::int64_t solver_iterations = 0;
  SolveStatus solver_status = SolveStatus::converged;
};

struct RunResult {
  std::vector<StepRecord> records;
  PolicyMetrics train, held_out;     ///< of the final policy
  std::vector<double> reward_params; ///< the reward the policy was trained with (empty for mse/nll)
  double wall_seconds = 0;           ///< of this process's part of the run
};

/// Called after every step (plain: every eval_every steps) with (done, total, status text).
using ProgressFn = std::function<void(std::int64_t, std::int64_t, const std::string&)>;

class RegressionRun {
 public:
  /// Validates the configuration and the data, uploads the data and builds the trainer; throws
  /// d2r::Error (invalid_argument) naming the problem, before any training. `held_out` may be
  /// empty. `command` prefixes the messages ("fit", "reproduce").
  RegressionRun(Context& ctx, const RegressionConfig& config, const HostData& train, const HostData& held_out,
                std::string command = "fit");
  ~RegressionRun();
  RegressionRun(const RegressionRun&) = delete;
  RegressionRun& operator=(const RegressionRun&) = delete;

  /// Bilevel: saves the trainer to `path` every `every` outer steps (and after the last).
  void set_checkpoint(std::filesystem::path path, std::int64_t every);
  /// Bilevel: what identifies the run beyond the trainer's own settings (the program's settings,
  /// column names): saved in and checked against the checkpoint (BilevelTrainer::set_checkpoint_identity).
  void set_identity(const std::vector<std::pair<std::string, std::string>>& lines);
  /// Every field of the library options the run trains with (for_each_field): BilevelOptions for
  /// the bilevel method, else the plain trainer's options.
  [[nodiscard]] nlohmann::json options_json() const;
  /// Bilevel: restores the state saved in `path` (throws d2r::Error when it does not fit); returns
  /// the number of outer steps already done.
  std::int64_t resume(const std::filesystem::path& path);

  /// Trains and returns the result.
  RunResult run(const ProgressFn& progress = {});

  /// The number of units of progress run() reports (steps or outer steps).
  [[nodiscard]] std::int64_t total_units() const noexcept;

  struct Impl;  ///< opaque (one implementation per scalar type)

 private:
  std::unique_ptr<Impl> impl_;
};

/// "u = 0.32" / "U_ii = 0.5, 0.7" / "U = R Rᵀ with R = ..., diag(U) = ..." for printing.
std::string describe_reward(RewardForm form, const std::vector<double>& params, std::int64_t dims);

/// The identity U = I in `form`'s layout for `dims` target dimensions.
std::vector<double> identity_reward(RewardForm form, std::int64_t dims);

/// Reward parameter count of `form` in `dims` dimensions.
std::int64_t reward_size(RewardForm form, std::int64_t dims);

/// Curves of a run as CSV columns: header and numeric rows (step, train/held-out metrics, and for
/// the bilevel method reward parameters, hypergradient, outer loss and solver figures).
void curves_table(const RunResult& result, bool bilevel, std::vector<std::string>& header,
                  std::vector<std::vector<double>>& rows, const std::string& held_out_name = "val");

/// Records of a run as JSON.
nlohmann::json records_json(const RunResult& result, bool bilevel, const std::string& held_out_name = "validation");

}  // namespace d2r::cli
