// Every case of the registry (host/checks/, d2r::checks) on the GPU: float on the cuda backend
// against double on the cpu backend, sentinel-guarded outputs, the tolerance and comparison of the
// case: the same cases, seed and verdict as `d2r validate --device cuda --sizes medium`, so
// `ctest -L gpu` and `d2r validate` cannot disagree.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "host/checks/checks.hpp"
#include "tests/test_utils.hpp"

namespace {

using d2r::checks::Case;

/// Built once, at listing time too: closures only, no CUDA call.
const std::vector<Case>& gpu_cases() {
  static const std::vector<Case> cases = d2r::checks::all_cases(d2r::checks::Level::medium, false);
  return cases;
}

std::string test_name(const Case& c) {
  std::string s;
  for (const char ch : c.key()) s += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return s;
}

class CheckGpu : public ::testing::TestWithParam<std::size_t> {
 protected:
  void SetUp() override { D2R_REQUIRE_GPU(); }
};

TEST_P(CheckGpu, FloatCudaMatchesDoubleCpu) {
  const Case& c = gpu_cases()[GetParam()];
  static d2r::Context gpu({.backend = d2r::Backend::cuda, .seed = 2024});
  static d2r::Context cpu({.backend = d2r::Backend::cpu, .seed = 2024});
  d2r::checks::Env env{gpu, cpu, 2024, false};  // validate's default --seed
  const d2r::checks::Outcome out = d2r::checks::run_case(c, env);
  if (out.status == d2r::checks::Status::skip) GTEST_SKIP() << c.key() << ": " << out.note;
  EXPECT_EQ(out.status, d2r::checks::Status::pass)
      << c.key() << ": max rel err " << d2r::checks::format_err(out.rel_err) << " (tolerance " << out.tolerance
      << ", max abs err " << d2r::checks::format_err(out.abs_err) << ") " << out.note;
}

/// The indices of one family's cases: one suite per family (tools/gpu-run.sh runs suites side by side).
std::vector<std::size_t> family(const std::string& name) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < gpu_cases().size(); ++i)
    if (gpu_cases()[i].family == name) out.push_back(i);
  return out;
}
std::string name_of(const ::testing::TestParamInfo<std::size_t>& info) { return test_name(gpu_cases()[info.param]); }

INSTANTIATE_TEST_SUITE_P(Distributions, CheckGpu, ::testing::ValuesIn(family("distributions")), name_of);
INSTANTIATE_TEST_SUITE_P(Rewards, CheckGpu, ::testing::ValuesIn(family("rewards")), name_of);
INSTANTIATE_TEST_SUITE_P(Objectives, CheckGpu, ::testing::ValuesIn(family("objectives")), name_of);
INSTANTIATE_TEST_SUITE_P(SecondOrder, CheckGpu, ::testing::ValuesIn(family("second_order")), name_of);
INSTANTIATE_TEST_SUITE_P(Network, CheckGpu, ::testing::ValuesIn(family("network")), name_of);
INSTANTIATE_TEST_SUITE_P(Curvature, CheckGpu, ::testing::ValuesIn(family("curvature")), name_of);
INSTANTIATE_TEST_SUITE_P(Optim, CheckGpu, ::testing::ValuesIn(family("optim")), name_of);
INSTANTIATE_TEST_SUITE_P(Solvers, CheckGpu, ::testing::ValuesIn(family("solvers")), name_of);

}  // namespace
