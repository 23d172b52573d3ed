// d2r::split_classification (d2r/data.hpp): the paper's tabular splits — stratified test, then
// stratified validation of the rest, seeds drawn from one splitmix64 stream, the features of all
// three standardised with the training rows' statistics — and its refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/data_test_support.hpp"

namespace {

using d2r::test::data::expect_error;
using d2r::test::data::names;
using d2r::test::data::parse;

/// `per_class[c]` rows of class c; the feature of row i is i (so rows can be followed).
d2r::Dataset classes(const std::vector<int>& per_class) {
  std::string text = "x,label\n";
  int id = 0;
  for (std::size_t c = 0; c < per_class.size(); ++c) {
    for (int k = 0; k < per_class[c]; ++k) text += std::to_string(id++) + ",class" + std::to_string(c) + "\n";
  }
  return d2r::make_classification_dataset(parse(text), "label");
}

TEST(ClassificationSplits, TestThenValidationOfTheRestWithTheRunSeedsStream) {
  const d2r::Dataset d = classes({40, 25, 15});
  const std::uint64_t seed = 11;
  const d2r::ClassificationSplits s = d2r::split_classification(d, 0.2, 0.25, seed);
  // The same two stratified splits by hand: the seeds are the first two draws of splitmix64(seed).
  std::uint64_t state = seed;
  const std::uint64_t test_seed = d2r::splitmix64(state), val_seed = d2r::splitmix64(state);
  const d2r::Split first = d2r::stratified_split(d, 0.2, test_seed);
  const d2r::Split second = d2r::stratified_split(first.train, 0.25, val_seed);
  ASSERT_EQ(s.test.rows, first.test.rows);
  ASSERT_EQ(s.validation.rows, second.test.rows);
  ASSERT_EQ(s.train.rows, second.train.rows);
  EXPECT_EQ(s.test.rows, 16);       // 8 + 5 + 3
  EXPECT_EQ(s.validation.rows, 16);  // of 32, 20, 12: 8 + 5 + 3
  EXPECT_EQ(s.train.labels, second.train.labels);
  EXPECT_EQ(s.test.labels, first.test.labels);
  // Standardised with the training rows' mean and sample deviation, the same map for all three.
  double mean = 0, ss = 0;
  for (double x : second.train.features) mean += x / static_cast<double>(second.train.rows);
  for (double x : second.train.features) ss += (x - mean) * (x - mean);
  const double sd = std::sqrt(ss / static_cast<double>(second.train.rows - 1));
  ASSERT_EQ(s.map.mean.size(), 1u);
  EXPECT_NEAR(s.map.mean[0], mean, 1e-12);
  EXPECT_NEAR(s.map.scale[0], sd, 1e-12);
  for (std::size_t i = 0; i < s.test.features.size(); ++i) {
    EXPECT_NEAR(s.test.features[i], (first.test.features[i] - mean) / sd, 1e-12);
  }
  for (std::size_t i = 0; i < s.validation.features.size(); ++i) {
    EXPECT_NEAR(s.validation.features[i], (second.test.features[i] - mean) / sd, 1e-12);
  }
  // Deterministic in the seed.
  EXPECT_EQ(d2r::split_classification(d, 0.2, 0.25, seed).train.features, s.train.features);
}

TEST(ClassificationSplits, NoValidationRowsAtValFractionZero) {
  const d2r::Dataset d = classes({10, 10});
  const d2r::ClassificationSplits s = d2r::split_classification(d, 0.2, 0.0, 3);
  EXPECT_EQ(s.validation.rows, 0);
  EXPECT_EQ(s.test.rows, 4);
  EXPECT_EQ(s.train.rows, 16);
}

TEST(ClassificationSplits, RefusalsNameTheFractionOrTheData) {
  const d2r::Dataset d = classes({3, 3});
  expect_error([&] { (void)d2r::split_classification(d, 0.1, 0.0, 1); }, d2r::ErrorKind::invalid_argument,
               {"split_classification", "t.csv (6 rows, 2 classes): cannot hold out a test share of 0.1 of every class",
                "the training or test rows would be none"},
               "test_fraction");
  expect_error([&] { (void)d2r::split_classification(classes({5, 5}), 0.2, 0.1, 1); },
               d2r::ErrorKind::invalid_argument, {"cannot hold out a validation share of 0.1 of every class"},
               "val_fraction");
  expect_error([&] { (void)d2r::split_classification(classes({2, 1}), 0.5, 0.0, 1); },
               d2r::ErrorKind::invalid_argument, {"t.csv: expected at least 2 training rows, got 1"}, "data");
  for (const double f : {-0.1, 1.0, std::nan("")}) {
    expect_error([&] { (void)d2r::split_classification(d, 0.5, f, 1); }, d2r::ErrorKind::invalid_argument,
                 {"val_fraction"}, "val_fraction");
  }
  expect_error([&] { (void)d2r::split_classification(d, 0.0, 0.0, 1); }, d2r::ErrorKind::invalid_argument, {"(0, 1)"},
               "test_fraction");
  const d2r::Dataset r = d2r::make_regression_dataset(parse("a,y\n1,2\n3,4\n5,6\n"), names({"y"}));
  expect_error([&] { (void)d2r::split_classification(r, 0.5, 0.0, 1); }, d2r::ErrorKind::invalid_argument,
               {"classification dataset"}, "data");
}

}  // namespace
