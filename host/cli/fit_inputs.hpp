#pragma once
// The data of `d2r fit` and `d2r sweep`, read and prepared from their shared options (FitOptions):
// the CSV file, the columns, the split, the feature standardisation and (regression) the target
// scaling. Bad input throws d2r::Error (invalid_argument) naming the option, before anything is
// written.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "d2r/data.hpp"
#include "d2r/error.hpp"
#include "host/cli/classification.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/regression.hpp"

namespace d2r::cli {

/// read_csv of a file the user named: one that cannot be read or parsed is bad input (exit 2)
/// naming `option` ("data" for the positional argument), in the user's words.
Table read_data_file(std::string_view command, std::string_view option, const std::filesystem::path& path);

struct RegressionInputs {
  Dataset data;              ///< every row, as read
  HostData train, val;       ///< the split, features standardised when asked, targets scaled when asked
  Standardization map;       ///< of the features (empty when --standardize is off)
  std::vector<double> target_mean;  ///< target scaling: y ← (y − mean) / scale (empty mean, scale 1: none)
  double target_scale = 1;
  bool has_val = false;
};
RegressionInputs load_regression_inputs(const FitOptions& o, std::string_view command);

struct ClassificationInputs {
  Dataset data;
  ClassificationSplits splits;
  ClassHostData train, val, test;
  std::int64_t classes = 0;
  double test_fraction = 0.2;
};
ClassificationInputs load_classification_inputs(const FitOptions& o, std::string_view command);

/// The settings that `d2r fit` and `d2r sweep` take alike from their options: the policy, λ, G,
/// the precision and the plain training (a regression's steps and learning rate, with the target
/// scaling of `in`; a classification's epochs and batches, and the paper's tabular defaults where
/// an option was not given).
RegressionConfig shared_config(const FitOptions& o, const RegressionInputs& in);
ClassificationConfig shared_config(const FitOptions& o, const ClassificationInputs& in);

}  // namespace d2r::cli
