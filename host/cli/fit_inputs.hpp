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

/// The least memory a fit needs (the parameters and their gradient and Adam moments, the
/// activations of one pass over `rows`): bad input of `d2r fit` naming --hidden, with the figure,
/// when it is more than the machine (or the container, or the device) has.
void check_fit_memory(const FitOptions& o, const std::vector<std::int64_t>& hidden, std::int64_t inputs,
                      std::int64_t outputs, std::int64_t rows, const Context& ctx);

}  // namespace d2r::cli
