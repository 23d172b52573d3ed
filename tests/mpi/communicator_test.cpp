// The communicator interface and the trainers' data-parallel plumbing in one process
// (d2r/communicator.hpp; the multi-rank runs are tests/mpi/mpi_fit_test.sh under mpirun):
// the single-process communicator counts what it is given; fit_policy with a DataParallel of one
// block equals the plain run bit for bit, and with many blocks (deterministic mode) within
// rounding of it; bad DataParallel settings are refused naming the argument.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <vector>

#include "d2r/d2r.hpp"

namespace {

TEST(SingleProcessCommunicator, IsOneRankAndCountsPayload) {
  d2r::SingleProcessCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  EXPECT_EQ(comm.memory(), d2r::CommMemory::host);
  std::vector<float> f{1.5f, -2.0f, 3.0f};
  std::vector<double> d{0.25, 7.0};
  comm.allreduce_sum(std::span<float>(f));
  comm.allreduce_sum(std::span<double>(d));
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f, 3.0f}));  // the sum over one rank is the value
  EXPECT_EQ(d, (std::vector<double>{0.25, 7.0}));
  std::vector<std::byte> bytes(5, std::byte{7});
  comm.broadcast(std::span<std::byte>(bytes), 0);
  comm.barrier();
  EXPECT_EQ(comm.stats().allreduce_calls, 2u);
  EXPECT_EQ(comm.stats().allreduce_bytes, 3 * sizeof(float) + 2 * sizeof(double));
  EXPECT_EQ(comm.stats().broadcast_bytes, 5u);
  EXPECT_EQ(comm.stats().barriers, 1u);
  comm.reset_stats();
  EXPECT_EQ(comm.stats().allreduce_calls, 0u);
}

TEST(DataParallel, BuildReportsItsEngines) {
  // This build's CMake found MPI and NCCL or not; both answers are valid, but they must agree
  // with the compile definitions the library exports.
#if defined(D2R_WITH_MPI)
  EXPECT_TRUE(d2r::has_mpi());
#else
  EXPECT_FALSE(d2r::has_mpi());
#endif
#if defined(D2R_WITH_NCCL)
  EXPECT_TRUE(d2r::has_nccl());
#else
  EXPECT_FALSE(d2r::has_nccl());
#endif
}

struct Fit {
  static constexpr std::int64_t N = 37, P = 3, n = 2;
  std::vector<double> x, y;
  Fit() : x(N * P), y(N * n) {
    for (std::int64_t i = 0; i < N * P; ++i) x[static_cast<std::size_t>(i)] = std::sin(0.37 * static_cast<double>(i));
    for (std::int64_t i = 0; i < N * n; ++i) y[static_cast<std::size_t>(i)] = std::cos(0.11 * static_cast<double>(i));
  }
  // Runs fit_policy (double, cpu) with `loss` and `parallel`; returns θ and the records.
  std::pair<std::vector<double>, std::vector<d2r::PolicyFitRecord>> run(d2r::PolicyLoss loss,
                                                                        d2r::DataParallel parallel,
                                                                        std::int64_t drop = 0) const {
    d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 3});
    d2r::GaussianPolicy<double> policy(ctx, {.inputs = P, .hidden = {8}, .outputs = 0}, n, d2r::GaussianHead::diagonal, N);
    d2r::Buffer<double> theta(ctx, static_cast<std::size_t>(policy.parameter_count()));
    d2r::PolicyFitOptions<double> o;
    o.loss = loss;
    o.steps = 15;
    o.evaluate_every = 5;
    o.parallel = parallel;
    // parallel.train_rows > 0: views of this rank's rows only (d2r::local_rows; `drop` rows fewer).
    const d2r::RowRange t = parallel.train_rows > 0 ? d2r::local_rows(parallel, 30) : d2r::RowRange{0, 30};
    const d2r::RowRange v = parallel.train_rows > 0 ? d2r::local_rows(parallel, 7) : d2r::RowRange{0, 7};
    const d2r::RegressionData<double> train{{x.data() + t.first * P, t.rows - drop, P, P},
                                            {y.data() + t.first * n, t.rows - drop, n, n}};
    const d2r::RegressionData<double> val{{x.data() + (30 + v.first) * P, v.rows, P, P},
                                          {y.data() + (30 + v.first) * n, v.rows, n, n}};
    auto recs = d2r::fit_policy(ctx, policy, theta.vector(), train, val, o);
    return {theta.to_host(), recs};
  }
};

TEST(DataParallel, OneBlockEqualsThePlainRunAndBlocksAgreeToRounding) {
  const Fit f;
  d2r::SingleProcessCommunicator comm;
  for (d2r::PolicyLoss loss : {d2r::PolicyLoss::nll, d2r::PolicyLoss::pg, d2r::PolicyLoss::mse}) {
    const auto plain = f.run(loss, {});
    const auto one = f.run(loss, {.communicator = &comm, .deterministic = true, .block_rows = 1000});
    const auto blocks = f.run(loss, {.communicator = &comm, .deterministic = true, .block_rows = 4});
    ASSERT_EQ(plain.first.size(), one.first.size());
    EXPECT_EQ(plain.first, one.first) << d2r::to_string(loss) << ": one block is the plain computation";
    ASSERT_EQ(plain.second.size(), 3u);
    double worst = 0;
    for (std::size_t i = 0; i < plain.first.size(); ++i) {
      worst = std::max(worst, std::abs(plain.first[i] - blocks.first[i]) / std::max(1.0, std::abs(plain.first[i])));
    }
    EXPECT_LT(worst, 1e-9) << d2r::to_string(loss) << ": 8 blocks of 4 rows reorder the sums only";
    EXPECT_GT(std::abs(plain.first[0]), 0.0);
    for (std::size_t r = 0; r < plain.second.size(); ++r) {
      EXPECT_NEAR(plain.second[r].train.nll_per_dim, blocks.second[r].train.nll_per_dim, 1e-9);
      EXPECT_NEAR(plain.second[r].validation.rmse, blocks.second[r].validation.rmse, 1e-9);
      EXPECT_NEAR(plain.second[r].validation.mean_std, blocks.second[r].validation.mean_std, 1e-9);
    }
  }
}

TEST(DataParallel, LocalViewsOfTheRankRowsGiveTheSameBits) {
  // One process in deterministic mode: local_rows is every row, so views of "this rank's rows"
  // with train_rows/validation_rows set run the same computation bit for bit (the 2- and 3-rank
  // shards are checked end to end by tests/mpi/mpi_fit_test.sh).
  const Fit f;
  d2r::SingleProcessCommunicator comm;
  const d2r::DataParallel det{.communicator = &comm, .deterministic = true, .block_rows = 4};
  const d2r::RowRange all = d2r::local_rows(det, 30);
  EXPECT_EQ(all.first, 0);
  EXPECT_EQ(all.rows, 30);
  EXPECT_EQ(d2r::local_rows({}, 30).rows, 30);
  for (d2r::PolicyLoss loss : {d2r::PolicyLoss::nll, d2r::PolicyLoss::pg}) {
    d2r::DataParallel local = det;
    local.train_rows = 30;
    local.validation_rows = 7;
    const auto whole = f.run(loss, det), views = f.run(loss, local);
    EXPECT_EQ(whole.first, views.first) << d2r::to_string(loss);
    EXPECT_EQ(whole.second.back().validation.rmse, views.second.back().validation.rmse);
  }
}

TEST(DataParallel, RefusesBadSettingsNamingThem) {
  const Fit f;
  d2r::SingleProcessCommunicator comm;
  try {
    (void)f.run(d2r::PolicyLoss::nll, {.communicator = &comm, .deterministic = true, .block_rows = 0});
    FAIL() << "block_rows = 0 accepted";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "options.parallel");
    EXPECT_NE(std::string(e.what()).find("block_rows"), std::string::npos) << e.what();
  }
  try {
    (void)f.run(d2r::PolicyLoss::nll, {.communicator = nullptr, .deterministic = true});
    FAIL() << "deterministic mode without a communicator accepted";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "options.parallel");
  }
  // Local views: a view that is not this rank's rows, or local views without a communicator.
  d2r::DataParallel local{.communicator = &comm, .deterministic = true, .block_rows = 4};
  local.train_rows = 30;
  local.validation_rows = 7;
  try {
    (void)f.run(d2r::PolicyLoss::nll, local, 1);
    FAIL() << "a view of 29 rows accepted as this rank's 30";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "train.x");
    EXPECT_NE(std::string(e.what()).find("this rank's 30 rows of the 30 training rows"), std::string::npos) << e.what();
  }
  d2r::DataParallel alone;
  alone.train_rows = 30;
  try {
    (void)f.run(d2r::PolicyLoss::nll, alone);
    FAIL() << "local views without a communicator accepted";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "options.parallel.train_rows");
  }
}

}  // namespace
