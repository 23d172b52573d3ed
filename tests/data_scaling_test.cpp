// d2r::standardize_targets / apply_target_scaling (d2r/data.hpp): one scale for every target
// dimension, the RMS of their sample standard deviations; refusals leave the data unchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/data_test_support.hpp"

namespace {

using d2r::test::data::expect_error;

/// Two targets over three rows: (1, 10), (2, 30), (3, 20), one feature.
d2r::Dataset two_targets() {
  d2r::Dataset d;
  d.rows = 3;
  d.feature_names = {"x"};
  d.features = {0, 1, 2};
  d.target_names = {"a", "b"};
  d.targets = {1, 10, 2, 30, 3, 20};
  return d;
}

TEST(TargetScaling, OneScaleForEveryDimension) {
  d2r::Dataset d = two_targets();
  const d2r::TargetScaling s = d2r::standardize_targets(d);
  ASSERT_EQ(s.mean.size(), 2u);
  EXPECT_NEAR(s.mean[0], 2, 1e-12);
  EXPECT_NEAR(s.mean[1], 20, 1e-12);
  // Sample variances 1 and 100: the scale is sqrt((1 + 100) / 2).
  EXPECT_NEAR(s.scale, std::sqrt(50.5), 1e-12);
  const std::vector<double> expected{-1 / s.scale, -10 / s.scale, 0, 10 / s.scale, 1 / s.scale, 0};
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(d.targets[i], expected[i], 1e-12) << i;
  EXPECT_EQ(d.features, (std::vector<double>{0, 1, 2}));  // features untouched
  d2r::Dataset other = two_targets();
  d2r::apply_target_scaling(other, s);
  EXPECT_EQ(other.targets, d.targets);
}

TEST(TargetScaling, RefusalsLeaveTheDataUnchanged) {
  d2r::Dataset constant = two_targets();
  constant.targets = {5, 5, 5, 5, 5, 5};
  expect_error([&] { (void)d2r::standardize_targets(constant); }, d2r::ErrorKind::invalid_argument,
               {"d2r::standardize_targets", "constant"}, "data");
  EXPECT_EQ(constant.targets, (std::vector<double>(6, 5.0)));
  // Constant targets whose mean rounds (ten rows of 0.1: the computed variance is 2e-34, not 0).
  d2r::Dataset tenths = two_targets();
  tenths.rows = 10;
  tenths.features.assign(10, 0.0);
  tenths.targets.clear();
  for (int r = 0; r < 10; ++r) tenths.targets.insert(tenths.targets.end(), {0.1, 3.3});
  const std::vector<double> before = tenths.targets;
  expect_error([&] { (void)d2r::standardize_targets(tenths); }, d2r::ErrorKind::invalid_argument,
               {"d2r::standardize_targets", "constant"}, "data");
  EXPECT_EQ(tenths.targets, before);
  d2r::Dataset one_row = two_targets();
  one_row.rows = 1;
  one_row.features = {0};
  one_row.targets = {1, 2};
  expect_error([&] { (void)d2r::standardize_targets(one_row); }, d2r::ErrorKind::invalid_argument, {"at least 2 rows"},
               "data");
  d2r::Dataset d = two_targets();
  expect_error([&] { d2r::apply_target_scaling(d, {.mean = {0}, .scale = 1}); }, d2r::ErrorKind::invalid_argument,
               {"expected 2 target means"}, "scaling");
  expect_error([&] { d2r::apply_target_scaling(d, {.mean = {0, 0}, .scale = 0}); }, d2r::ErrorKind::invalid_argument,
               {"finite scale > 0"}, "scaling");
  EXPECT_EQ(d.targets, two_targets().targets);
}

}  // namespace
