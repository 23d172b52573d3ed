// d2r/fit_records.hpp: a run's records as table columns (curves.csv, outer_curves.csv): every row
// as long as the header, each value in its named column, missing reward parameters as NaN.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "d2r/fit_records.hpp"

namespace {

using d2r::runs::RecordTable;

/// The value of column `name` in row `row`.
double at(const RecordTable& t, std::size_t row, const std::string& name) {
  const auto it = std::find(t.header.begin(), t.header.end(), name);
  EXPECT_NE(it, t.header.end()) << name;
  return t.rows.at(row).at(static_cast<std::size_t>(it - t.header.begin()));
}

TEST(FitRecords, RegressionCurvesNameEveryColumn) {
  d2r::runs::RunResult r;
  d2r::runs::StepRecord a;
  a.step = 10;
  a.train.nll_per_dim = 1.5;
  a.held_out.rmse = 0.25;
  a.outer_loss = 2.5;
  a.reward_params = {3, 4};
  a.hypergradient = {-1, 1};
  a.solver_iterations = 7;
  a.max_step = 0.5;
  d2r::runs::StepRecord b = a;
  b.step = 20;
  b.reward_params = {5};  // fewer than the first record's: NaN in the second column
  r.records = {a, b};
  const RecordTable plain = d2r::runs::curves_table(r, false, "test");
  EXPECT_EQ(plain.header.size(), 7u);
  EXPECT_EQ(plain.header[4], "test_nll_per_dim");
  ASSERT_EQ(plain.rows.size(), 2u);
  EXPECT_EQ(at(plain, 1, "step"), 20);
  EXPECT_EQ(at(plain, 0, "test_rmse"), 0.25);
  const RecordTable bilevel = d2r::runs::curves_table(r, true);
  EXPECT_EQ(bilevel.header.size(), 7u + 1 + 2 + 2 + 8);
  for (const auto& row : bilevel.rows) EXPECT_EQ(row.size(), bilevel.header.size());
  EXPECT_EQ(at(bilevel, 0, "train_nll_per_dim"), 1.5);
  EXPECT_EQ(at(bilevel, 0, "outer_loss"), 2.5);
  EXPECT_EQ(at(bilevel, 0, "reward_1"), 4);
  EXPECT_EQ(at(bilevel, 1, "reward_0"), 5);
  EXPECT_TRUE(std::isnan(at(bilevel, 1, "reward_1")));
  EXPECT_EQ(at(bilevel, 0, "hypergradient_0"), -1);
  EXPECT_EQ(at(bilevel, 0, "solver_iterations"), 7);
  EXPECT_EQ(at(bilevel, 1, "max_step"), 0.5);
  EXPECT_TRUE(d2r::runs::curves_table({}, true).rows.empty());
}

TEST(FitRecords, ClassificationEpochsAndOuterSteps) {
  d2r::runs::ClassificationResult r;
  d2r::runs::EpochRecord e;
  e.epoch = 3;
  e.train.accuracy = 0.75;
  e.test.nll_per_dim = 0.5;
  r.epochs = {e};
  d2r::runs::OuterRecord o;
  o.step = 2;
  o.beta = 1.5;
  o.hypergradient = -0.25;
  o.validation.accuracy = 0.875;
  o.inner_steps = 40;
  r.outer = {o, o};
  const RecordTable epochs = d2r::runs::epoch_table(r);
  EXPECT_EQ(epochs.header, (std::vector<std::string>{"epoch", "train_nll", "train_accuracy", "test_nll", "test_accuracy"}));
  ASSERT_EQ(epochs.rows.size(), 1u);
  EXPECT_EQ(at(epochs, 0, "epoch"), 3);
  EXPECT_EQ(at(epochs, 0, "train_accuracy"), 0.75);
  EXPECT_EQ(at(epochs, 0, "test_nll"), 0.5);
  const RecordTable outer = d2r::runs::outer_table(r);
  ASSERT_EQ(outer.rows.size(), 2u);
  for (const auto& row : outer.rows) EXPECT_EQ(row.size(), outer.header.size());
  EXPECT_EQ(at(outer, 1, "step"), 2);
  EXPECT_EQ(at(outer, 0, "beta"), 1.5);
  EXPECT_EQ(at(outer, 0, "hypergradient"), -0.25);
  EXPECT_EQ(at(outer, 0, "val_accuracy"), 0.875);
  EXPECT_EQ(at(outer, 0, "inner_steps"), 40);
}

}  // namespace
