// The case registry (host/checks/) without a GPU: every case at --sizes medium (the GPU test's)
// runs in float on the cpu backend against double, one test per primitive (the inputs, the
// guarded outputs, the run, the comparison and the tolerance of each case: `d2r validate --device
// cpu`), and the registry's shape
// (unique keys, size classes that nest, the families validate's table promises). The GPU test is
// tests/checks_gpu_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "host/checks/cases/common.hpp"
#include "host/checks/checks.hpp"
#include "host/checks/timer.hpp"

namespace {

using d2r::checks::Case;
using d2r::checks::Level;

/// Every case of --sizes medium (the GPU test's), the cpu backend in float as the tested side.
const std::vector<Case>& cpu_cases() {
  static const std::vector<Case> cases = d2r::checks::all_cases(Level::medium, true);
  return cases;
}

/// The primitives, in registry order: one test each (a ctest process per case would cost more
/// than the cases; the failure names the case).
std::vector<std::string> primitives() {
  std::vector<std::string> out;
  for (const Case& c : cpu_cases())
    if (std::find(out.begin(), out.end(), c.primitive) == out.end()) out.push_back(c.primitive);
  return out;
}

std::string test_name(const std::string& primitive) {
  std::string s;
  for (const char ch : primitive) s += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return s;
}

class CheckCpu : public ::testing::TestWithParam<std::string> {};

TEST_P(CheckCpu, FloatCpuMatchesDoubleCpu) {
  d2r::Context test({.backend = d2r::Backend::cpu, .seed = 2024}), ref({.backend = d2r::Backend::cpu, .seed = 2024});
  d2r::checks::Env env{test, ref, 2024, true};
  int ran = 0;
  for (const Case& c : cpu_cases()) {
    if (c.primitive != GetParam()) continue;
    const d2r::checks::Outcome out = d2r::checks::run_case(c, env);
    EXPECT_EQ(out.status, d2r::checks::Status::pass)
        << c.key() << ": max rel err " << d2r::checks::format_err(out.rel_err) << " (tolerance " << out.tolerance
        << ", max abs err " << d2r::checks::format_err(out.abs_err) << ") " << out.note;
    EXPECT_TRUE(std::isfinite(out.rel_err)) << c.key();
    ++ran;
  }
  EXPECT_GT(ran, 0);
}

INSTANTIATE_TEST_SUITE_P(Registry, CheckCpu, ::testing::ValuesIn(primitives()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return test_name(info.param); });

TEST(CheckRegistry, KeysAreUniqueAndSizeClassesNest) {
  for (const bool self_check : {false, true}) {
    std::vector<std::set<std::string>> keys;
    for (const Level level : {Level::small, Level::medium, Level::large}) {
      std::set<std::string> k;
      for (const Case& c : d2r::checks::all_cases(level, self_check)) {
        EXPECT_TRUE(k.insert(c.key()).second) << "duplicate key " << c.key();
        EXPECT_GE(c.tolerance.rtol, 0.0) << c.key();
        EXPECT_TRUE(c.run) << c.key();
      }
      keys.push_back(std::move(k));
    }
    EXPECT_GT(keys[0].size(), 200u);
    EXPECT_LT(keys[0].size(), keys[1].size());
    EXPECT_LT(keys[1].size(), keys[2].size());
    for (std::size_t l = 1; l < keys.size(); ++l)
      EXPECT_TRUE(std::includes(keys[l].begin(), keys[l].end(), keys[l - 1].begin(), keys[l - 1].end()));
  }
}

// tests/checks_gpu_test.cpp instantiates one suite per family: a case of another family would be
// in none.
TEST(CheckRegistry, EveryCaseBelongsToAGpuSuite) {
  const std::set<std::string> families{"distributions", "rewards",   "objectives", "second_order",
                                       "network",       "curvature", "optim",      "solvers"};
  std::set<std::string> seen;
  for (const Case& c : d2r::checks::all_cases(Level::large, false)) {
    EXPECT_EQ(families.count(c.family), 1u) << c.key() << " of family '" << c.family << "'";
    seen.insert(c.family);
  }
  EXPECT_EQ(seen, families);
}

// Left out of the cpu self-check: categorical heads above 4096 classes, categorical surrogate shapes
// above B·C·G = 2e6 (cases/categorical_objectives.cpp), and the REINFORCE mixed
// product of a categorical head with a scalar one-hot reward under standardize (cases/mixed_products.cpp).
TEST(CheckRegistry, SelfCheckLeavesOutOnlyDocumentedCases) {
  const auto gpu = d2r::checks::all_cases(Level::large, false), cpu = d2r::checks::all_cases(Level::large, true);
  std::set<std::string> cpu_keys;
  for (const Case& c : cpu) cpu_keys.insert(c.key());
  std::size_t left_out = 0;
  for (const Case& c : gpu) {
    if (cpu_keys.count(c.key()) != 0) continue;
    ++left_out;
    const bool large = c.size.find("C=") != std::string::npos && c.size.find("C=7 ") == std::string::npos;
    const bool standardized = c.key().rfind("mixed_product/categorical, scalar, standardize", 0) == 0;
    EXPECT_TRUE(large || standardized) << c.key() << " left out of the self-check";
  }
  EXPECT_GT(left_out, 0u);
  EXPECT_EQ(gpu.size(), cpu.size() + left_out);
}

// The guard of every case's outputs: an element written outside the array, or one never written,
// fails the case (with the array's name), where a NaN-tolerant comparison would pass it.
TEST(CheckGuardedOutput, OutOfBoundsAndUnwrittenElementsThrow) {
  d2r::Context cpu({.backend = d2r::Backend::cpu});
  d2r::checks::Out<float> full(cpu, 5, "full");
  for (int i = 0; i < 5; ++i) full.data()[i] = static_cast<float>(i);
  EXPECT_EQ(d2r::checks::get(full), (d2r::checks::Vec{0, 1, 2, 3, 4}));
  full.data()[5] = 1.0f;  // one past the end
  EXPECT_THROW((void)full.to_host(), d2r::Error);

  d2r::checks::Out<double> before(cpu, 3, "before");
  for (int i = 0; i < 3; ++i) before.data()[i] = 1.0;
  before.data()[-1] = 0.0;
  EXPECT_THROW((void)before.to_host(), d2r::Error);

  d2r::checks::Out<float> partial(cpu, 4, "partial");
  partial.data()[0] = partial.data()[1] = partial.data()[3] = 2.0f;
  try {
    (void)partial.to_host();
    ADD_FAILURE() << "expected an error for the unwritten element";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "partial");
    EXPECT_NE(std::string(e.what()).find("1 of 4 elements never written (the first: [2])"), std::string::npos) << e.what();
  }

  // Made with values (updated in place): only the padding is guarded.
  d2r::checks::Out<std::int32_t> inplace(cpu, d2r::checks::Vec{7, 8}, "inplace");
  EXPECT_EQ(d2r::checks::get(inplace), (d2r::checks::Vec{7, 8}));
  inplace.data()[2] = 0;
  EXPECT_THROW((void)inplace.to_host(), d2r::Error);
}

// A case whose run throws (here: an output written out of bounds) is a failed case, not a crash.
TEST(CheckGuardedOutput, RunCaseReportsAnErrorAsAFailure) {
  d2r::Context a({.backend = d2r::Backend::cpu}), b({.backend = d2r::Backend::cpu});
  d2r::checks::Env env{a, b, 1, true};
  const Case bad{"f", "p", "v", "s", {1e-5}, [](d2r::checks::Env& e, std::uint64_t) -> d2r::checks::Outcome {
                   d2r::checks::Out<float> o(e.test, 2, "o");
                   o.data()[0] = o.data()[1] = o.data()[2] = 0.0f;
                   (void)o.to_host();
                   return {};
                 }};
  const d2r::checks::Outcome out = d2r::checks::run_case(bad, env);
  EXPECT_EQ(out.status, d2r::checks::Status::fail);
  EXPECT_NE(out.note.find("out of bounds"), std::string::npos) << out.note;
  EXPECT_TRUE(std::isinf(out.rel_err));
}

// ------------------------------------------------------------------ work models and timing

/// The integers after "B=", "n=", "C=", "G=" in a case's size ("B=7 n=3 G=5").
std::map<std::string, double> size_values(const std::string& size) {
  std::map<std::string, double> v;
  std::istringstream in(size);
  std::string word;
  while (in >> word) {
    const auto eq = word.find('=');
    if (eq != std::string::npos) v[word.substr(0, eq)] = std::stod(word.substr(eq + 1));
  }
  return v;
}

/// The case's work against a closed form of its sizes, written out here (float: 4 bytes, int32
/// indices 4 bytes) independently of host/checks/work.hpp; the number of cases compared.
int expect_work(Level level, const std::string& primitive, const std::string& variant,
                const std::function<std::pair<double, double>(double B, double n, double G)>& closed) {
  int compared = 0;
  for (const Case& c : d2r::checks::all_cases(level, false)) {
    if (c.primitive != primitive || c.variant != variant) continue;
    auto v = size_values(c.size);
    const double n = v.count("n") != 0 ? v["n"] : v["C"];
    const auto [bytes, flops] = closed(v["B"], n, v["G"]);
    EXPECT_TRUE(c.work().stated()) << c.key() << ": " << c.work().unstated;
    EXPECT_EQ(c.work().bytes, bytes) << c.key();
    EXPECT_EQ(c.work().flops, flops) << c.key();
    ++compared;
  }
  return compared;
}

TEST(CaseWork, EqualsClosedFormsOfTheCaseSizes) {
  for (const Level level : {Level::small, Level::medium}) {
    // sample of a diagonal Gaussian: μ (B·n) and log σ (B·n, or n shared) read, B·G·n draws written.
    EXPECT_GT(expect_work(level, "sample", "diag", [](double B, double n, double G) { return std::pair{4 * (2 * B * n + B * G * n), 0.0}; }), 0);
    EXPECT_GT(expect_work(level, "sample", "diag, shared log-std",
                          [](double B, double n, double G) { return std::pair{4 * (B * n + n + B * G * n), 0.0}; }),
              0);
    // backward of a Cholesky head, shared L (P = n(n+1)/2): μ, L, draws, d_log_prob and d_entropy
    // read, both gradients written; 6P FLOPs a draw.
    EXPECT_GT(expect_work(level, "backward", "cholesky, shared L",
                          [](double B, double n, double G) {
                            const double P = n * (n + 1) / 2;
                            return std::pair{4 * (2 * (B * n + P) + B * G * n + B * G + B), 6 * P * B * G};
                          }),
              0);
    // log_prob of a categorical head: logits, indices read; B·G log-probabilities written.
    EXPECT_GT(expect_work(level, "log_prob", "categorical", [](double B, double C, double G) { return std::pair{4 * (B * C + 2 * B * G), 0.0}; }), 0);
    // the optimisers (n parameters): Adam reads p, m, v, g and writes p, m, v, plus the int64 counter
    // read and written; SGD with momentum reads p, velocity, g and writes p, velocity; clamp reads
    // and writes once.
    EXPECT_GT(expect_work(level, "adam_step", "adam, 3 steps", [](double, double n, double) { return std::pair{4 * 7 * n + 16, 0.0}; }), 0);
    EXPECT_GT(expect_work(level, "sgd_step", "momentum 0.9, 3 steps", [](double, double n, double) { return std::pair{4 * 5 * n, 0.0}; }), 0);
    EXPECT_GT(expect_work(level, "sgd_step", "plain, 3 steps", [](double, double n, double) { return std::pair{4 * 3 * n, 0.0}; }), 0);
    EXPECT_GT(expect_work(level, "clamp_values", "limit 0.5", [](double, double n, double) { return std::pair{4 * 2 * n, 0.0}; }), 0);
    // rewards (P parameters, P = n(n+1)/2 for the full form): a full-form continuous reward reads the
    // B·G draws, the targets and the parameters and writes B·G rewards, 2P FLOPs a draw (Rᵀδ); a
    // one-hot reward_backward reads class indices, labels, parameters and cotangents and writes P.
    EXPECT_GT(expect_work(level, "reward", "gaussian, full",
                          [](double B, double n, double G) {
                            const double P = n * (n + 1) / 2;
                            return std::pair{4 * (B * G * n + B * n + P + B * G), 2 * P * B * G};
                          }),
              0);
    EXPECT_GT(expect_work(level, "reward_backward", "gaussian, full",
                          [](double B, double n, double G) {
                            const double P = n * (n + 1) / 2;
                            return std::pair{4 * (B * G * n + B * n + P + B * G + P), 4 * P * B * G};
                          }),
              0);
    EXPECT_GT(expect_work(level, "reward_backward", "one-hot, diagonal",
                          [](double B, double C, double G) { return std::pair{4 * (B * G + B) + 4 * (C + B * G + C), 0.0}; }),
              0);
    EXPECT_GT(expect_work(level, "reward", "one-hot, scalar, strided rows",
                          [](double B, double, double G) { return std::pair{4 * (B * G + B) + 4 * (1 + B * G), 0.0}; }),
              0);
    // the transforms: B·G read and written (backward: the cotangents read too).
    EXPECT_GT(expect_work(level, "transform_rewards", "rbf", [](double B, double, double G) { return std::pair{4 * 2 * B * G, 0.0}; }), 0);
    EXPECT_GT(expect_work(level, "transform_rewards_backward", "leave_one_out",
                          [](double B, double, double G) { return std::pair{4 * 3 * B * G, 0.0}; }),
              0);
    // log_prob_jvp: the head and its tangent (each μ and log σ, B·n) and the draws read, B·G written;
    // Cholesky (P = n(n+1)/2 a row): the head and its tangent read, draws read, 6P FLOPs a draw.
    EXPECT_GT(expect_work(level, "log_prob_jvp", "diag",
                          [](double B, double n, double G) { return std::pair{4 * (2 * 2 * B * n + B * G * n + B * G), 0.0}; }),
              0);
    EXPECT_GT(expect_work(level, "log_prob_jvp", "cholesky",
                          [](double B, double n, double G) {
                            const double P = n * (n + 1) / 2;
                            return std::pair{4 * (2 * (B * n + B * P) + B * G * (n + 1)), 6 * P * B * G};
                          }),
              0);
    EXPECT_GT(expect_work(level, "log_prob_jvp", "categorical",
                          [](double B, double C, double G) { return std::pair{4 * (2 * B * C + 2 * B * G), 0.0}; }),
              0);
    // backward_tangent: the head, its tangent, the draws and both cotangents read, the gradient's
    // tangent written (diag: μ and log σ; categorical: B×C logits, int32 draws).
    EXPECT_GT(expect_work(level, "backward_tangent", "diag",
                          [](double B, double n, double G) { return std::pair{4 * (3 * 2 * B * n + B * G * n + B * G + B), 0.0}; }),
              0);
    EXPECT_GT(expect_work(level, "backward_tangent", "categorical",
                          [](double B, double C, double G) { return std::pair{4 * (3 * B * C + 2 * B * G + B), 0.0}; }),
              0);
    // without cotangents: a categorical tangent with neither reads only the head, its tangent and
    // the draws; a diag tangent without d_log_prob reads d_entropy (B) but not the B·G cotangents.
    EXPECT_GT(expect_work(level, "backward_tangent", "categorical, strided, no d_log_prob, no d_entropy",
                          [](double B, double C, double G) { return std::pair{4 * (3 * B * C + B * G), 0.0}; }),
              0);
    EXPECT_GT(expect_work(level, "backward_tangent", "diag, strided, no d_log_prob [grad_mean_tangent]",
                          [](double B, double n, double G) { return std::pair{4 * (3 * 2 * B * n + B * G * n + B), 0.0}; }),
              0);
    // the Cholesky tangents (P = n(n+1)/2): backward_tangent reads the head and its tangent, the draws
    // and both cotangents and writes the gradient's tangent, 16P FLOPs a draw; with d_entropy only it
    // reads no draws and does O(n) a row; log_prob_jvp run twice is timed once, shared L read once.
    EXPECT_GT(expect_work(level, "backward_tangent", "cholesky",
                          [](double B, double n, double G) {
                            const double P = n * (n + 1) / 2;
                            return std::pair{4 * (3 * (B * n + B * P) + B * G * (n + 1) + B), 16 * P * B * G};
                          }),
              0);
    EXPECT_GT(expect_work(level, "backward_tangent", "cholesky, strided, d_entropy only [grad_tril_tangent]",
                          [](double B, double n, double) {
                            const double P = n * (n + 1) / 2;
                            return std::pair{4 * (3 * (B * n + B * P) + B), 0.0};
                          }),
              0);
    EXPECT_GT(expect_work(level, "log_prob_jvp", "cholesky shared, strided, twice",
                          [](double B, double n, double G) {
                            const double P = n * (n + 1) / 2;
                            return std::pair{4 * (2 * (B * n + P) + B * G * (n + 1)), 6 * P * B * G};
                          }),
              0);
    // exact_objective: a diagonal Gaussian reads μ, log σ (B·n each), the targets and the parameters,
    // writes row loss and reward and both gradients; the full form 4P a row plus 2P (P = n(n+1)/2).
    // Categorical: logits, int32 labels and parameters read; loss, reward and the B×C gradient
    // written; elementwise for the scalar form.
    EXPECT_GT(expect_work(level, "exact_objective", "diag, full",
                          [](double B, double n, double) {
                            const double P = n * (n + 1) / 2;
                            return std::pair{4 * (2 * B * n + B * n + P + 2 * B + 2 * B * n), 4 * P * B + 2 * P};
                          }),
              0);
    EXPECT_GT(expect_work(level, "exact_objective", "categorical, scalar",
                          [](double B, double C, double) { return std::pair{4 * (2 * B * C + 1 + 2 * B) + 4 * B, 0.0}; }),
              0);
    // clip_global_norm below its limit: the values read, the norm written when asked.
    EXPECT_GT(expect_work(level, "clip_global_norm", "below the limit", [](double, double n, double) { return std::pair{4 * (n + 1), 0.0}; }), 0);
    EXPECT_GT(expect_work(level, "clip_global_norm", "below the limit, no norm output, exact",
                          [](double, double n, double) { return std::pair{4 * n, 0.0}; }),
              0);
    // the categorical surrogate: logits read, gradient written, labels read, loss and reward written.
    EXPECT_GT(expect_work(level, "pg_surrogate", "categorical, none, scalar",
                          [](double B, double C, double) { return std::pair{4 * (2 * B * C + 3 * B), 0.0}; }),
              0);
  }
}

/// The layer widths at the start of an MLP case's variant ("23-64-64-34 relu, strided").
std::vector<double> mlp_widths(const std::string& variant) {
  std::vector<double> widths;
  std::istringstream in(variant.substr(0, variant.find_first_of(" ,")));
  for (std::string w; std::getline(in, w, '-');) widths.push_back(std::stod(w));
  return widths;
}

/// The cache elements of the MLP of those widths on B rows (Mlp::cache_elements).
double mlp_cache(const std::vector<double>& widths, double B) {
  d2r::MlpSpec spec{.inputs = static_cast<std::int64_t>(widths.front()), .outputs = static_cast<std::int64_t>(widths.back())};
  for (std::size_t l = 1; l + 1 < widths.size(); ++l) spec.hidden.push_back(static_cast<std::int64_t>(widths[l]));
  return static_cast<double>(d2r::Mlp(spec).cache_elements(static_cast<std::int64_t>(B)));
}

// mlp.forward: x and the parameters read, the cache and the outputs written; 2·B·in·out FLOPs a
// layer, the widths read from the case's variant ("23-64-64-34 relu").
TEST(CaseWork, MlpForwardEqualsTheGemmClosedForm) {
  int compared = 0;
  for (const Case& c : d2r::checks::all_cases(Level::medium, false)) {
    if (c.primitive != "mlp.forward" || c.variant.find("layernorm") != std::string::npos) continue;
    const std::vector<double> widths = mlp_widths(c.variant);
    ASSERT_GE(widths.size(), 2u) << c.key();
    const double B = size_values(c.size)["B"];
    double gemm = 0, params = 0;
    for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
      gemm += widths[l] * widths[l + 1];
      params += widths[l] * widths[l + 1] + widths[l + 1];
    }
    const double cache = mlp_cache(widths, B);
    ASSERT_TRUE(c.work().stated()) << c.key();
    EXPECT_EQ(c.work().bytes, 4 * (B * widths.front() + params + cache + B * widths.back())) << c.key();
    EXPECT_EQ(c.work().flops, 2 * B * gemm) << c.key();
    ++compared;
  }
  EXPECT_GE(compared, 2);
}

// mlp.all_passes: forward, backward with d_x, forward_tangent and backward_tangent, counted from the
// widths in the case's name: GEMMs 2·B·(5·S + 5·S1) (S over all layers, S1 over those after the
// first), bytes 4·(5·B·in + 8·P + 6·cache + 5·B·out).
TEST(CaseWork, MlpAllPassesEqualsTheFourPassesClosedForm) {
  int compared = 0;
  for (const Case& c : d2r::checks::all_cases(Level::medium, false)) {
    if (c.primitive != "mlp.all_passes" || c.variant.find("layernorm") != std::string::npos) continue;
    const std::vector<double> widths = mlp_widths(c.variant);
    ASSERT_GE(widths.size(), 2u) << c.key();
    const double B = size_values(c.size)["B"];
    double S = 0, S1 = 0, params = 0;
    for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
      S += widths[l] * widths[l + 1];
      if (l > 0) S1 += widths[l] * widths[l + 1];
      params += widths[l] * widths[l + 1] + widths[l + 1];
    }
    const double cache = mlp_cache(widths, B);
    ASSERT_TRUE(c.work().stated()) << c.key();
    EXPECT_EQ(c.work().bytes, 4 * (5 * B * widths.front() + 8 * params + 6 * cache + 5 * B * widths.back())) << c.key();
    EXPECT_EQ(c.work().flops, 2 * B * (5 * S + 5 * S1)) << c.key();
    ++compared;
  }
  EXPECT_GE(compared, 2);
}

// curvature.hvp: 5 forward passes' GEMMs (2·B·in·out a layer); curvature.mixed_product: the trunk's
// forward tangent (2·B·(S + S1)); x and the targets read once (n a row for the Gaussian heads, one
// label for the categorical head).
TEST(CaseWork, CurvatureHvpEqualsFiveForwardPassesAndTheMixedProductOneForwardTangent) {
  int compared = 0, mixed = 0;
  for (const Case& c : d2r::checks::all_cases(Level::medium, false)) {
    const bool is_mixed = c.primitive == "curvature.mixed_product";
    if (c.primitive != "curvature.hvp" && !is_mixed) continue;
    const std::string net = c.variant.substr(c.variant.find(", ") + 2);
    const std::vector<double> widths = mlp_widths(net);
    ASSERT_GE(widths.size(), 2u) << c.key();
    const double B = size_values(c.size)["B"];
    double gemm = 0, later = 0;  // S over all layers, S1 over those after the first
    for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
      gemm += widths[l] * widths[l + 1];
      if (l > 0) later += widths[l] * widths[l + 1];
    }
    const bool categorical = c.variant.rfind("categorical", 0) == 0;
    // The Gaussian heads' outputs: 2n (diag: mean, log σ) or n + n(n+1)/2 (Cholesky).
    const double out = widths.back();
    const double n = categorical ? 1 : c.variant.rfind("diag", 0) == 0 ? out / 2 : (std::sqrt(9 + 8 * out) - 3) / 2;
    EXPECT_TRUE(c.work().stated()) << c.key();
    EXPECT_EQ(c.work().bytes, 4 * B * (widths.front() + n)) << c.key();
    EXPECT_EQ(c.work().flops, is_mixed ? 2 * B * (gemm + later) : 5 * 2 * B * gemm) << c.key();
    ++compared;
    mixed += is_mixed ? 1 : 0;
  }
  EXPECT_GE(compared, 6);
  EXPECT_GE(mixed, 3);
}

// The Cholesky head's exact_objective, its FLOPs counted with the kernel's loops (Uδ and δᵀUδ, (UL)_ij
// for every lower-triangle entry over m >= j, the trace), its bytes from the sizes.
TEST(CaseWork, CholeskyExactObjectiveCountedByLoops) {
  int compared = 0;
  for (const Case& c : d2r::checks::all_cases(Level::medium, false)) {
    if (c.primitive != "exact_objective" || c.variant.rfind("cholesky,", 0) != 0 || !c.build) continue;
    std::map<std::string, double> v = size_values(c.size);
    const double B = v["B"];
    const auto n = static_cast<std::int64_t>(v["n"]);
    const double P = static_cast<double>(n * (n + 1) / 2);
    const bool full = c.variant.find("full") != std::string::npos, diagonal = c.variant.find("diagonal") != std::string::npos;
    const double params = full ? P : diagonal ? static_cast<double>(n) : 1;
    double row_flops = 2.0 * static_cast<double>(n * n) + 2.0 * static_cast<double>(n);  // Uδ, δᵀUδ
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j) row_flops += 2.0 * static_cast<double>(n - j) + 2.0;  // (UL)_ij, trace
    const double head = B * static_cast<double>(n) + B * P;
    ASSERT_TRUE(c.work().stated()) << c.key();
    EXPECT_EQ(c.work().flops, B * row_flops) << c.key();
    EXPECT_EQ(c.work().bytes, 4 * (2 * head + B * static_cast<double>(n) + params + 2 * B)) << c.key();
    ++compared;
  }
  EXPECT_GE(compared, 6);
}

// pg_pathwise, its FLOPs counted with the kernels' loops per draw (the products with L and R), its
// bytes from the sizes (the draws regenerated, never stored).
TEST(CaseWork, PathwiseCountedByLoops) {
  int compared = 0;
  for (const Case& c : d2r::checks::all_cases(Level::medium, false)) {
    if (c.primitive != "pg_pathwise" || !c.build) continue;
    std::map<std::string, double> v = size_values(c.size);
    const double B = v["B"], G = v["G"];
    const auto n = static_cast<std::int64_t>(v["n"]);
    const double P = static_cast<double>(n * (n + 1) / 2), dn = static_cast<double>(n);
    const bool cholesky = c.variant.rfind("cholesky", 0) == 0, shared = c.variant.find("shared") != std::string::npos;
    const bool full = c.variant.find("full") != std::string::npos, diagonal = c.variant.find("diagonal") != std::string::npos;
    ASSERT_TRUE(full || diagonal || c.variant.find("scalar") != std::string::npos) << c.key() << ": no reward form named";
    const double params = full ? P : diagonal ? dn : 1;
    double draw = 0;
    if (cholesky) {
      for (std::int64_t i = 0; i < n; ++i) draw += 2.0 * static_cast<double>(i + 1);  // ŷ = μ + Lε, row i
      draw += 2.0 * P;                                                                // a εᵀ on the lower triangle
    }
    if (full) {
      for (std::int64_t j = 0; j < n; ++j) draw += 2.0 * static_cast<double>(n - j);  // v = Rᵀδ
      for (std::int64_t i = 0; i < n; ++i) draw += 2.0 * static_cast<double>(i + 1);  // R v
    }
    const double S = shared ? 1 : B, head = B * dn + S * (cholesky ? P : dn);
    ASSERT_TRUE(c.work().stated()) << c.key();
    EXPECT_EQ(c.work().flops, B * G * draw) << c.key();
    EXPECT_EQ(c.work().bytes, 4 * (2 * head + B * dn + params + 2 * B)) << c.key();
    ++compared;
  }
  EXPECT_GE(compared, 20);
}

// The exact curvature's head primitives and the REINFORCE mixed product, counted by hand from
// their size (bytes: every input read once, every output written once; FLOPs: the full form's
// products with R only), against the registry's formulas.
TEST(CaseWork, SecondOrderHeadPrimitivesCountedByHand) {
  int compared = 0;
  for (const Case& c : d2r::checks::all_cases(Level::medium, false)) {
    const bool exact_tangent = c.primitive == "exact_backward_tangent", exact_mixed = c.primitive == "exact_mixed_product";
    if (!(exact_tangent || exact_mixed || c.primitive == "mixed_product") || c.variant.find("strided") != std::string::npos) continue;
    std::map<std::string, double> v = size_values(c.size);
    const double B = v["B"], G = v["G"];
    const bool categorical = c.variant.rfind("categorical", 0) == 0, cholesky = c.variant.rfind("cholesky", 0) == 0;
    const double n = categorical ? v["C"] : v["n"], P = n * (n + 1) / 2;
    const bool full = c.variant.find("full") != std::string::npos, diagonal = c.variant.find("diagonal") != std::string::npos;
    const double params = full ? P : diagonal ? n : 1;
    ASSERT_TRUE(c.work().stated()) << c.key() << ": " << c.work().unstated;
    double bytes = 0, flops = 0;
    if (categorical) {
      const double logits = 4 * B * n, labels = 4 * B;
      bytes = exact_tangent ? 3 * logits + 4 * params + labels : 2 * logits + 8 * params + labels;
      flops = c.primitive == "mixed_product" || !full ? 0 : (exact_tangent ? 2 : 4) * P * B + 2 * P;
    } else {
      const double head = B * n + B * (cholesky ? P : n);  // mean and log σ (or the packed factor), per row
      bytes = exact_tangent ? 4 * (3 * head + params) : 4 * (2 * head + B * n + 2 * params);
      // mixed_product: per draw the full form's reward and R-gradient (4P), a Cholesky head's draw,
      // log-probability and its tangent (2P + 2P + 6P).
      flops = c.primitive == "mixed_product" ? B * G * ((full ? 4 * P : 0) + (cholesky ? 10 * P : 0))
              : !full ? 0 : exact_tangent ? 4 * P * B + 2 * P : 10 * P * B;
      if (cholesky && c.primitive != "mixed_product") {
        // Dense U: U μ̇ (2n²), (U L̇)_ij for i >= j as the kernel loops (m from j to n − 1: a
        // multiply and an add each), (UL)_ii (n(n+1)); the mixed product's L L̇ᵀ and S R on the
        // lower triangle (full form) or the diagonal of L L̇ᵀ (2P).
        double tri = 0;
        for (int j = 0; j < static_cast<int>(n); ++j)
          for (int i = j; i < static_cast<int>(n); ++i)
            for (int m = j; m < static_cast<int>(n); ++m) tri += 2;
        flops = exact_tangent ? B * (2 * n * n + tri + n * (n + 1)) : B * (full ? 2 * n * n + 2 * tri : 2 * P);
      }
    }
    EXPECT_EQ(c.work().bytes, bytes) << c.key();
    EXPECT_EQ(c.work().flops, flops) << c.key();
    ++compared;
  }
  EXPECT_GE(compared, 30);
}

// Every case states its work, or says why not; the primitives with a formula are timed.
TEST(CaseWork, StatedOrExplainedAndTheFormulaPrimitivesAreTimeable) {
  std::set<std::string> timeable;
  std::size_t unstated = 0;
  for (const Case& c : d2r::checks::all_cases(Level::large, false)) {
    if (c.work().stated()) {
      EXPECT_TRUE(std::isfinite(c.work().bytes) && c.work().bytes > 0) << c.key();
      EXPECT_TRUE(std::isfinite(c.work().flops) && c.work().flops >= 0) << c.key();
    } else {
      EXPECT_FALSE(c.work().unstated.empty()) << c.key();
      ++unstated;
    }
    if (d2r::checks::untimed_reason(c).empty()) timeable.insert(c.primitive);
  }
  EXPECT_GT(unstated, 0u);  // pg_pathwise, solvers, ...: said so, not reported as 0
  for (const char* p : {"sample", "log_prob", "entropy", "backward", "pg_surrogate", "mlp.forward", "mlp.backward",
                        "mlp.forward_tangent", "mlp.backward_tangent", "curvature.gradient", "curvature.hvp", "adam_step", "sgd_step", "clamp_values", "reward",
                        "reward_backward", "transform_rewards", "transform_rewards_backward", "log_prob_jvp", "backward_tangent",
                        "clip_global_norm", "exact_objective", "exact_backward_tangent", "exact_mixed_product",
                        "mixed_product"})
    EXPECT_EQ(timeable.count(p), 1u) << p << " has no timeable case";
}

// time_case hands exactly the marked call to the timer (run here three times, as a benchmark
// would), on the cpu backend; a case that cannot be timed throws with its reason; timed() outside
// time_case runs the call once.
TEST(CaseWork, TimeCaseHandsTheMarkedCallToTheTimer) {
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 1, .value_checks = d2r::ValueChecks::none});
  int cases = 0;
  for (const Case& c : d2r::checks::all_cases(Level::small, true)) {
    if (!d2r::checks::untimed_reason(c).empty()) {
      EXPECT_THROW(d2r::checks::time_case(c, ctx, 2024, [](const std::function<void()>&) {}), d2r::Error) << c.key();
      continue;
    }
    int handed = 0;
    d2r::checks::Timer timer(ctx);
    std::vector<double> seconds;
    d2r::checks::time_case(c, ctx, 2024, [&](const std::function<void()>& call) {
      ++handed;
      seconds = timer.run(call, 3, 3, 10.0);
    });
    EXPECT_EQ(handed, 1) << c.key();
    ASSERT_EQ(seconds.size(), 3u) << c.key();
    EXPECT_TRUE(std::isfinite(seconds.front()) && seconds.front() >= 0) << c.key();
    ++cases;
  }
  EXPECT_GE(cases, 40);  // the heads' primitives, the surrogates and the MLP passes at --sizes small
  int ran = 0;
  d2r::checks::timed(ctx, [&] { ++ran; });
  EXPECT_EQ(ran, 1);
}

}  // namespace
