// The options structs' common API (REDESIGN.md move 5): check(options) names the field it refuses
// and accepts both presets; flatten_fields walks every field; field_differences says what
// changed between two settings lists (the refused resume of BilevelTrainer::load and `d2r fit`).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "d2r/bilevel.hpp"
#include "d2r/fields.hpp"
#include "d2r/trainers.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::test::expect_error;

template <class T>
class BilevelOptionsCheck : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(BilevelOptionsCheck, Scalars);

TYPED_TEST(BilevelOptionsCheck, AcceptsBothPresets) {
  using O = d2r::BilevelOptions<TypeParam>;
  EXPECT_NO_THROW(d2r::check(O::paper()));
  EXPECT_NO_THROW(d2r::check(O::recommended()));
}

TYPED_TEST(BilevelOptionsCheck, NamesTheFieldItRefuses) {
  using T = TypeParam;
  using O = d2r::BilevelOptions<T>;
  const auto refused = [](auto change, const std::string& field, const std::string& words) {
    O o = O::recommended();
    change(o);
    expect_error([&] { d2r::check(o); }, field, words, d2r::ErrorKind::invalid_argument);
  };
  refused([](O& o) { o.inner.steps = 0; }, "options.inner.steps", "K_in >= 1");
  refused([](O& o) { o.inner.generations = 0; }, "options.inner.generations", "G >= 1");
  refused([](O& o) { o.inner.max_steps = 5; }, "options.inner.max_steps", "cap");
  refused([](O& o) { o.cg.tolerance = T(0); }, "options.cg.tolerance", "tolerance > 0");
  refused([](O& o) { o.cg.damping = std::numeric_limits<T>::quiet_NaN(); }, "options.cg.damping", "damping");
  refused([](O& o) { o.rprop.decrease = 1.5; }, "options.rprop.decrease", "(0, 1)");
  refused([](O& o) { o.stopping.window = 1; }, "options.stopping.window", "window");
  refused([](O& o) { o.reward_ceiling = o.reward_floor; }, "options.reward_ceiling", "ceiling");
  refused([](O& o) { o.hypergradient_clamp = -1; }, "options.hypergradient_clamp", "c_out > 0");
  refused(
      [](O& o) {
        o.optimizer = d2r::OuterOptimizer::sgd;
        o.sgd_momentum = 1;
      },
      "options.sgd_momentum", "[0, 1)");
  refused(
      [](O& o) {
        o.solver = d2r::ImplicitSolver::neumann;
        o.neumann.alpha = T(0);
      },
      "options.neumann.alpha", "α > 0");
  // A field of the solver that is not used is not checked (only the chosen solver's settings).
  O o = O::recommended();
  o.neumann.alpha = T(-1);
  EXPECT_NO_THROW(d2r::check(o));
}

TYPED_TEST(BilevelOptionsCheck, EachOptionsStructHasItsCheck) {
  using T = TypeParam;
  // The defaults pass; one bad field is named (InnerOptions as BilevelOptions names it).
  EXPECT_NO_THROW(d2r::check(d2r::InnerOptions<T>{}));
  EXPECT_NO_THROW(d2r::check(d2r::PolicyFitOptions<T>{}));
  EXPECT_NO_THROW(d2r::check(d2r::ClassifierFitOptions<T>{}));
  d2r::InnerOptions<T> inner;
  inner.stationarity_tolerance = T(-1);
  expect_error([&] { d2r::check(inner); }, "options.inner.stationarity_tolerance", "tolerance >= 0",
               d2r::ErrorKind::invalid_argument);
  inner = {};
  inner.adam.beta1 = T(1);
  expect_error([&] { d2r::check(inner); }, "options.inner.adam", "beta1", d2r::ErrorKind::invalid_argument);
  d2r::PolicyFitOptions<T> fit;
  fit.steps = 0;
  expect_error([&] { d2r::check(fit); }, "options.steps", ">= 1 steps", d2r::ErrorKind::invalid_argument);
  fit = {};
  fit.gradient_clamp = T(0);
  expect_error([&] { d2r::check(fit); }, "options.gradient_clamp", "c > 0", d2r::ErrorKind::invalid_argument);
  d2r::ClassifierFitOptions<T> cls;
  cls.loss = d2r::PolicyLoss::mse;
  expect_error([&] { d2r::check(cls); }, "options.loss", "nll", d2r::ErrorKind::invalid_argument);
  cls = {};
  cls.batch_size = -1;
  expect_error([&] { d2r::check(cls); }, "options.batch_size", ">= 0", d2r::ErrorKind::invalid_argument);
}

TEST(Fields, FlattenNamesEveryNestedField) {
  const d2r::BilevelOptions<double> o = d2r::BilevelOptions<double>::recommended();
  const auto fields = d2r::flatten_fields(o);
  const auto value = [&](const std::string& name) -> std::string {
    for (const auto& [n, v] : fields) {
      if (n == name) return v;
    }
    ADD_FAILURE() << "no field " << name;
    return {};
  };
  EXPECT_EQ(value("inner.steps"), "20");
  EXPECT_EQ(value("inner.adam.learning_rate"), "0.01");
  EXPECT_EQ(value("cg.tolerance"), "0.25");
  EXPECT_EQ(value("optimizer"), "rprop");
  EXPECT_EQ(value("outer_data"), "validation");
  EXPECT_EQ(value("reset_outer_optimizer"), "false");
  // Declaration order: inner.* first, seed last.
  EXPECT_EQ(fields.front().first, "inner.objective");
  EXPECT_EQ(fields.back().first, "seed");
  const auto plain = d2r::flatten_fields(d2r::PolicyFitOptions<float>{});
  EXPECT_EQ(plain.front(), (std::pair<std::string, std::string>{"loss", "nll"}));
  bool clamp = false;
  for (const auto& [n, v] : plain) clamp = clamp || (n == "gradient_clamp" && v == "inf");
  EXPECT_TRUE(clamp);
}

TEST(Fields, DifferencesNameEachChangedSetting) {
  using List = std::vector<std::pair<std::string, std::string>>;
  const List saved{{"a", "1"}, {"b", "2"}, {"gone", "x"}};
  const List now{{"a", "1"}, {"b", "3"}, {"new", "y"}};
  const std::vector<std::string> diff = d2r::field_differences(saved, now);
  ASSERT_EQ(diff.size(), 3u);
  EXPECT_EQ(diff[0], "b: saved 2, now 3");
  EXPECT_EQ(diff[1], "new: not in the checkpoint, now y");
  EXPECT_EQ(diff[2], "gone: saved x, not set now");
  EXPECT_TRUE(d2r::field_differences(saved, saved).empty());
  // The same walk on two real option sets: the one changed field, in dotted form.
  d2r::BilevelOptions<double> a, b;
  b.inner.adam.learning_rate = 0.02;
  EXPECT_EQ(d2r::field_differences(d2r::flatten_fields(a), d2r::flatten_fields(b)),
            std::vector<std::string>{"inner.adam.learning_rate: saved 0.01, now 0.02"});
}

TEST(Fields, OptionsCastCarriesEveryFieldToTheOtherScalarType) {
  // recommended() in double, cast to float, lists the same settings as recommended() in float
  // (every value here is written the same in both types' shortest form).
  d2r::BilevelOptions<double> o = d2r::BilevelOptions<double>::recommended();
  const auto f = d2r::options_cast<d2r::BilevelOptions<float>>(o);
  EXPECT_EQ(d2r::flatten_fields(f), d2r::flatten_fields(d2r::BilevelOptions<float>::recommended()));
  // Every field moves, nested ones included, and non-default values survive.
  o.inner.adam.learning_rate = 0.25;
  o.inner.pg.transform.kind = d2r::Transform::leave_one_out;
  o.cg.max_iterations = 7;
  o.stopping.window = 9;
  o.seed = 42;
  const auto g = d2r::options_cast<d2r::BilevelOptions<float>>(o);
  EXPECT_EQ(g.inner.adam.learning_rate, 0.25f);
  EXPECT_EQ(g.inner.pg.transform.kind, d2r::Transform::leave_one_out);
  EXPECT_EQ(g.cg.max_iterations, 7);
  EXPECT_EQ(g.stopping.window, 9);
  EXPECT_EQ(g.seed, 42u);
  // float -> double -> float is exact.
  const auto back = d2r::options_cast<d2r::BilevelOptions<double>>(g);
  EXPECT_EQ(d2r::flatten_fields(d2r::options_cast<d2r::BilevelOptions<float>>(back)), d2r::flatten_fields(g));
  // The plain trainers' options, vectors included; the hook is not a setting and is not copied.
  d2r::PolicyFitOptions<double> p;
  p.reward_params = {0.5, 2.0};
  p.steps = 3;
  p.on_record = [](const d2r::PolicyFitRecord&) {};
  const auto q = d2r::options_cast<d2r::PolicyFitOptions<float>>(p);
  EXPECT_EQ(q.reward_params, p.reward_params);
  EXPECT_EQ(q.steps, 3);
  EXPECT_FALSE(q.on_record);
}

}  // namespace
