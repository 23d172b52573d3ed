// The communicator interface and the trainers' data-parallel plumbing in one process
// (d2r/communicator.hpp; the multi-rank runs are tests/mpi/mpi_fit_test.sh under mpirun):
// the single-process communicator counts what it is given; fit_policy with a DataParallel of one
// block equals the plain run bit for bit, and with many blocks (deterministic mode) within
// rounding of it; bad DataParallel settings are refused naming the argument. BilevelTrainer's
// data-parallel constructors (views of the rank's rows, the whole set's hash) equal a trainer
// given every row followed by set_data_parallel, checkpoints included; evaluate_sharded and
// fit_classifier's local validation views give the plain metrics.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
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

// ------------------------------------------------------------------ bilevel on the rank's rows
struct BilevelFit {
  static constexpr std::int64_t N = 30, M = 7, P = 3, n = 2, C = 3;
  std::vector<double> x, y;
  std::vector<std::int32_t> labels;
  BilevelFit() : x((N + M) * P), y((N + M) * n), labels(N + M) {
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * static_cast<double>(i));
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = std::cos(0.11 * static_cast<double>(i));
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int32_t>((i * 7 + i / 3) % C);
  }
  d2r::RegressionData<double> reg(std::int64_t first, std::int64_t rows) const {
    return {{x.data() + first * P, rows, P, P}, {y.data() + first * n, rows, n, n}};
  }
  d2r::ClassificationData<double> cls(std::int64_t first, std::int64_t rows) const {
    return {{x.data() + first * P, rows, P, P}, {labels.data() + first, rows}};
  }
  static d2r::BilevelOptions<double> options() {
    d2r::BilevelOptions<double> o;
    o.inner.steps = 3;
    o.inner.max_steps = 6;
    o.cg.max_iterations = 5;
    return o;
  }
  // The whole set's hash, from host copies of every row (as a program computes it before it drops
  // the other rows).
  std::uint64_t reg_hash() const {
    const std::span<const double> all_x(x), all_y(y);
    return d2r::bilevel_data_hash<double>(all_x.first(N * P), all_y.first(N * n), all_x.subspan(N * P),
                                          all_y.subspan(N * n));
  }
  std::uint64_t cls_hash() const {
    const std::span<const double> all_x(x);
    const std::span<const std::int32_t> all_l(labels);
    return d2r::bilevel_data_hash<double>(all_x.first(N * P), all_l.first(N), all_x.subspan(N * P), all_l.subspan(N));
  }
};

TEST(DataParallel, BilevelOnTheRankRowsEqualsSetDataParallelAndSharesItsCheckpoints) {
  // One process in deterministic mode (local_rows = every row; the 2- and 3-rank shards and a
  // 2 -> 3 rank resume are run by tests/mpi/mpi_fit_test.sh): the data-parallel constructor equals
  // the trainer given every row followed by set_data_parallel, bit for bit, and a checkpoint of
  // either loads into the other (the fingerprint is the whole set's).
  const BilevelFit f;
  d2r::SingleProcessCommunicator comm;
  const d2r::DataParallel det{.communicator = &comm, .deterministic = true, .block_rows = 4};
  d2r::DataParallel local = det;
  local.train_rows = BilevelFit::N;
  local.validation_rows = BilevelFit::M;
  const std::vector<double> u{1.0};
  const auto dir = std::filesystem::temp_directory_path() / "d2r_communicator_test_bilevel";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 5});
  const d2r::MlpSpec net{.inputs = BilevelFit::P, .hidden = {6}};
  {
    d2r::BilevelTrainer<double> whole(ctx, net, f.reg(0, 30), f.reg(30, 7), d2r::RewardForm::scalar, u, f.options());
    whole.set_data_parallel(det);
    d2r::BilevelTrainer<double> views(ctx, net, f.reg(0, 30), f.reg(30, 7), d2r::RewardForm::scalar, u, f.options(),
                                      local, f.reg_hash());
    for (int k = 0; k < 2; ++k) {
      const d2r::BilevelRecord& a = whole.step();
      const d2r::BilevelRecord& b = views.step();
      EXPECT_EQ(a.outer_loss, b.outer_loss);
      EXPECT_EQ(a.validation.nll_per_dim, b.validation.nll_per_dim);
      EXPECT_EQ(a.reward_params, b.reward_params);
    }
    EXPECT_TRUE(std::isfinite(whole.history().back().outer_loss));
    EXPECT_NE(whole.history().front().reward_params, whole.history().back().reward_params) << "the reward moved";
    whole.save(dir / "whole.ckpt");
    d2r::BilevelTrainer<double> resumed(ctx, net, f.reg(0, 30), f.reg(30, 7), d2r::RewardForm::scalar, u, f.options(),
                                        local, f.reg_hash());
    resumed.load(dir / "whole.ckpt");
    EXPECT_EQ(resumed.steps_done(), 2);
    EXPECT_EQ(resumed.step().outer_loss, whole.step().outer_loss);
    // Another data set's hash: the checkpoint is refused.
    d2r::BilevelTrainer<double> other(ctx, net, f.reg(0, 30), f.reg(30, 7), d2r::RewardForm::scalar, u, f.options(),
                                      local, f.reg_hash() + 1);
    try {
      other.load(dir / "whole.ckpt");
      FAIL() << "a checkpoint of other data accepted";
    } catch (const d2r::Error& e) {
      EXPECT_EQ(e.argument(), "path");
      EXPECT_NE(std::string(e.what()).find("data.hash"), std::string::npos) << e.what();
    }
  }
  {
    d2r::BilevelTrainer<double> whole(ctx, net, f.cls(0, 30), f.cls(30, 7), BilevelFit::C, d2r::RewardForm::scalar, u,
                                      f.options());
    whole.set_data_parallel(det);
    d2r::BilevelTrainer<double> views(ctx, net, f.cls(0, 30), f.cls(30, 7), BilevelFit::C, d2r::RewardForm::scalar, u,
                                      f.options(), local, f.cls_hash());
    EXPECT_EQ(whole.step().outer_loss, views.step().outer_loss);
    EXPECT_EQ(whole.history().back().validation.accuracy, views.history().back().validation.accuracy);
    whole.save(dir / "cls.ckpt");
    d2r::BilevelTrainer<double> resumed(ctx, net, f.cls(0, 30), f.cls(30, 7), BilevelFit::C, d2r::RewardForm::scalar,
                                        u, f.options(), local, f.cls_hash());
    resumed.load(dir / "cls.ckpt");
    EXPECT_EQ(resumed.step().reward_params, whole.step().reward_params);
  }
  std::filesystem::remove_all(dir);
}

TEST(DataParallel, BilevelOnTheRankRowsRefusesBadSettingsNamingThem) {
  const BilevelFit f;
  d2r::SingleProcessCommunicator comm;
  d2r::DataParallel local{.communicator = &comm, .deterministic = true, .block_rows = 4};
  local.train_rows = BilevelFit::N;
  local.validation_rows = BilevelFit::M;
  d2r::Context ctx({.backend = d2r::Backend::cpu});
  const d2r::MlpSpec net{.inputs = BilevelFit::P, .hidden = {6}};
  const std::vector<double> u{1.0};
  const auto expect = [&](auto make, const std::string& argument, const std::string& words) {
    try {
      make();
      FAIL() << "accepted; expected a refusal naming " << argument;
    } catch (const d2r::Error& e) {
      EXPECT_EQ(e.argument(), argument) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  const auto reg = [&](d2r::RegressionData<double> t, d2r::DataParallel p, d2r::BilevelOptions<double> o) {
    d2r::BilevelTrainer<double> tr(ctx, net, t, f.reg(30, 7), d2r::RewardForm::scalar, u, o, p, f.reg_hash());
  };
  expect([&] { reg(f.reg(0, 29), local, f.options()); }, "train.x", "this rank's 30 rows of the 30 training rows");
  d2r::DataParallel alone;
  alone.train_rows = BilevelFit::N;
  expect([&] { reg(f.reg(0, 30), alone, f.options()); }, "parallel", "data-parallel communicator");
  d2r::BilevelOptions<double> mb = f.options();
  mb.inner.batch_size = 10;
  expect([&] { reg(f.reg(0, 30), local, mb); }, "options.inner.batch_size", "minibatch windows draw from every");
  d2r::DataParallel wrong_val = local;
  wrong_val.validation_rows = 8;
  expect([&] { reg(f.reg(0, 30), wrong_val, f.options()); }, "validation.x", "this rank's 8 rows");
  expect(
      [&] {
        d2r::BilevelTrainer<double> tr(ctx, net, f.cls(0, 30), f.cls(30, 7), BilevelFit::C, d2r::RewardForm::scalar, u,
                                       f.options(), local, f.cls_hash());
        tr.set_data_parallel(local);
      },
      "this", "set data parallel once");
}

TEST(DataParallel, ClassifierMetricsOverTheRankRowsEqualThePlainOnes) {
  // evaluate_sharded over blocks of 4 rows (one process: this rank's rows are every row) within
  // rounding of policy.evaluate; fit_classifier with validation_rows (the validation view is this
  // rank's rows) gives the same bits as the view of every row in the same mode.
  const BilevelFit f;
  d2r::SingleProcessCommunicator comm;
  const d2r::DataParallel det{.communicator = &comm, .deterministic = true, .block_rows = 4};
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 2});
  d2r::CategoricalPolicy<double> policy(ctx, {.inputs = BilevelFit::P, .hidden = {6}}, BilevelFit::C, BilevelFit::N);
  d2r::Buffer<double> theta(ctx, static_cast<std::size_t>(policy.parameter_count()));
  policy.init(theta.vector(), 4);
  const auto val = f.cls(30, 7);
  const d2r::PolicyMetrics plain = policy.evaluate(std::as_const(theta).vector(), val.x, val.labels);
  const d2r::PolicyMetrics sharded = d2r::evaluate_sharded(ctx, policy, std::as_const(theta).vector(), val, 7, det);
  EXPECT_NEAR(plain.nll_per_dim, sharded.nll_per_dim, 1e-12);
  EXPECT_NEAR(plain.accuracy, sharded.accuracy, 1e-12);
  EXPECT_GT(plain.nll_per_dim, 0.0);
  try {
    (void)d2r::evaluate_sharded(ctx, policy, std::as_const(theta).vector(), f.cls(30, 6), 7, det);
    FAIL() << "a view of 6 rows accepted as this rank's 7";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "data.x");
  }
  d2r::ClassifierFitOptions<double> o;
  o.epochs = 2;
  o.batch_size = 8;
  o.parallel = det;
  const auto whole = d2r::fit_classifier(ctx, policy, theta.vector(), f.cls(0, 30), val, o);
  const std::vector<double> theta_whole = theta.to_host();
  o.parallel.validation_rows = 7;
  const auto views = d2r::fit_classifier(ctx, policy, theta.vector(), f.cls(0, 30), val, o);
  EXPECT_EQ(theta_whole, theta.to_host());
  ASSERT_EQ(whole.size(), views.size());
  EXPECT_EQ(whole.back().validation.nll_per_dim, views.back().validation.nll_per_dim);
  EXPECT_EQ(whole.back().validation.accuracy, views.back().validation.accuracy);
  o.parallel.train_rows = 30;
  try {
    (void)d2r::fit_classifier(ctx, policy, theta.vector(), f.cls(0, 30), val, o);
    FAIL() << "train_rows accepted by fit_classifier";
  } catch (const d2r::Error& e) {
    EXPECT_EQ(e.argument(), "options.parallel.train_rows");
  }
}

}  // namespace
