#pragma once
// The program's side of a classification fit (`d2r fit --task classification`, `d2r reproduce
// tabular`, PAPER.md Tables 1–2; the run itself is the library's ClassificationRun, d2r/fit_run.hpp):
// the paper's stratified splits, the checks of the settings naming the options, and the
// configuration and records as results.json and CSV columns.
//
// Use: ClassificationRun run(ctx, config, train, validation, test, classes); (validates and
// allocates, no training) ... run.run(progress).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "d2r/context.hpp"
#include "d2r/data.hpp"
#include "d2r/fit_run.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli {

/// "nll", "pg", "heuristic" or "bilevel"; throws d2r::Error (invalid_argument) otherwise.
ClassMethod parse_class_method(const std::string& name);

/// Copies a classification Dataset's features and labels.
ClassHostData to_class_host_data(const Dataset& d);

/// d2r::split_classification (the paper's stratified splits, standardised) with a refusal as bad
/// input of `command` naming the data or --val-fraction.
ClassificationSplits split_classification(const Dataset& data, double test_fraction, double val_fraction,
                                          std::uint64_t seed, std::string_view command);

/// The configuration as results.json's "config" (python/ and the tests read its names).
nlohmann::json config_json(const ClassificationConfig& c);

/// The library's classification run (d2r/fit_run.hpp) after the program's checks of the settings
/// and the data (d2r::Error, invalid_argument, naming the option; `command` prefixes the
/// messages), on this process's ranks (parallel.hpp).
class ClassificationRun : public runs::ClassificationRun {
 public:
  ClassificationRun(Context& ctx, const ClassificationConfig& config, const ClassHostData& train,
                    const ClassHostData& validation, const ClassHostData& test, std::int64_t classes,
                    const std::string& command = "fit");
  /// Every field of the library options the run trains with (for_each_field): {"classifier": the
  /// epochs' options, "bilevel": BilevelTrainer's (bilevel method)}.
  [[nodiscard]] nlohmann::json options_json() const;
};

/// {"nll": cross-entropy per row, "accuracy"}.
nlohmann::json class_metrics_json(const PolicyMetrics& m);

/// Records as JSON.
nlohmann::json epochs_json(const ClassificationResult& r);
nlohmann::json outer_json(const ClassificationResult& r);

}  // namespace d2r::cli
