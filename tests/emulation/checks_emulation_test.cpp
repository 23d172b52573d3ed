// Emulated value-check kernels (kernels/checks/value_checks.cuh) and the deterministic column sum
// (kernels/checks/column_sum.cuh), launched as value_checks.cu and column_sum.cu launch them, against
// plain loops over the same data (what the cpu backend does): the first offending linear index
// (several offenders, found by integer atomicMin from different blocks), the first row without a
// finite value (a warp vote per row), and column sums over more than one 256-row chunk (two
// passes) with a grid.y smaller than the chunks.
#include "tests/emulation/kernel_emulation.hpp"

#include "kernels/checks/column_sum.cuh"
#include "kernels/checks/value_checks.cuh"

namespace d2r::emulation {
namespace {

namespace vc = kernels::value_checks;
namespace cs = kernels::column_sums;

std::int64_t run_check(const auto& launch) {
  unsigned long long first = vc::kNone;
  launch(&first);
  return first == vc::kNone ? -1 : static_cast<std::int64_t>(first);
}

TEST(ValueChecksEmulation, FirstOffenders) {
  const std::int64_t rows = 37, cols = 29, total = rows * cols;
  TestRng rng(41);
  const simt::LaunchConfig config{3, static_cast<unsigned>(vc::kThreads), 0};  // grid-stride: 3 x 256 < 1073
  std::vector<float> v = uniform(rng, total, -1, 1);
  FloatMatrix m(rows, cols, v);
  const auto finite = [&] { return run_check([&](unsigned long long* f) { simt::launch(config, vc::first_bad_kernel<vc::Rule::finite>, m.cview(), f); }); };
  const auto logit = [&] { return run_check([&](unsigned long long* f) { simt::launch(config, vc::first_bad_kernel<vc::Rule::logit>, m.cview(), f); }); };
  EXPECT_EQ(finite(), -1);
  EXPECT_EQ(logit(), -1);
  // -inf is a valid logit (a masked class) but not finite; NaN and +inf are neither.
  m.at(30, 2) = std::numeric_limits<float>::quiet_NaN();
  m.at(20, 5) = -INFINITY;
  m.at(25, 1) = INFINITY;
  m.at(33, 0) = INFINITY;
  EXPECT_EQ(finite(), 20 * cols + 5);
  EXPECT_EQ(logit(), 25 * cols + 1);

  // Rows without a finite value: rows 9 and 21 (all -inf / NaN), row 4 has one finite entry.
  FloatMatrix w(rows, cols, v);
  for (std::int64_t c = 0; c < cols; ++c) {
    w.at(4, c) = -INFINITY;
    w.at(9, c) = c % 2 ? -INFINITY : std::numeric_limits<float>::quiet_NaN();
    w.at(21, c) = INFINITY;
  }
  w.at(4, 28) = 0.5f;
  const std::int64_t row = run_check([&](unsigned long long* f) {
    simt::launch({2, static_cast<unsigned>(vc::kThreads), 0}, vc::row_without_finite_kernel, w.cview(), f);
  });
  EXPECT_EQ(row, 9);

  std::vector<std::int32_t> k(static_cast<std::size_t>(total));
  for (std::int64_t i = 0; i < total; ++i) k[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i % 11);
  IndexMatrix idx(rows, cols, k);
  const auto index = [&](std::int32_t upper) {
    return run_check([&](unsigned long long* f) { simt::launch(config, vc::index_range_kernel, idx.cview(), upper, f); });
  };
  EXPECT_EQ(index(11), -1);
  EXPECT_EQ(index(10), 10);  // the first 10
  idx.at(2, 3) = -1;
  EXPECT_EQ(index(11), 2 * cols + 3);
}

/// kernels::checks::column_sum's passes (column_sum.cu), with grid.y capped at `max_grid_y`.
std::vector<float> emulated_column_sum(MatrixView<const float> in, unsigned max_grid_y) {
  std::vector<float> out(static_cast<std::size_t>(in.cols), std::numeric_limits<float>::quiet_NaN());
  const auto chunks = [](std::int64_t r) { return (r + cs::kRowsPerBlock - 1) / cs::kRowsPerBlock; };
  std::vector<float> ping(static_cast<std::size_t>(chunks(in.rows) * in.cols)), pong(ping.size());
  MatrixView<const float> current = in;
  while (true) {
    const std::int64_t n_chunks = chunks(current.rows);
    float* target = n_chunks == 1 ? out.data() : ping.data();
    const simt::Dim3 grid(static_cast<unsigned>((current.cols + cs::kColsPerBlock - 1) / cs::kColsPerBlock),
                          static_cast<unsigned>(std::min<std::int64_t>(n_chunks, max_grid_y)));
    simt::launch({grid, simt::Dim3(cs::kColsPerBlock, cs::kRowLanes), 0}, cs::column_partial_sums, current, target,
                 current.cols, n_chunks);
    if (n_chunks == 1) return out;
    current = MatrixView<const float>{ping.data(), n_chunks, current.cols, current.cols};
    std::swap(ping, pong);
  }
}

TEST(ColumnSumEmulation, MatchesSums) {
  TestRng rng(42);
  for (const auto& [rows, cols, grid_y] : {std::tuple<std::int64_t, std::int64_t, unsigned>{1, 5, 1},
                                           {300, 40, 2}, {1100, 3, 2}, {77, 33, 1}}) {
    SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(cols));
    const auto v = uniform(rng, rows * cols, -1, 1);
    const FloatMatrix m(rows, cols, v);
    const std::vector<float> got = emulated_column_sum(m.cview(), grid_y);
    D2R_EXPECT_CLOSE(to_double(got), column_sums(to_double(v), rows, cols), 1e-5, 1e-5);
  }
}

}  // namespace
}  // namespace d2r::emulation
