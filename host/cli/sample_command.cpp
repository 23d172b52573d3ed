// `d2r sample`: draws G samples from one diagonal-Gaussian, Cholesky-Gaussian or categorical head
// and compares the sample statistics with the distribution's own moments.
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <span>

#include <fmt/format.h>

#include "d2r/d2r.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {
namespace {

[[noreturn]] void bad(const std::string& argument, const std::string& message) {
  throw Error(ErrorKind::invalid_argument, argument, fmt::format("d2r sample: {}: {}", argument, message));
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

/// The draws are in float: a value beyond its range would become an infinity there (-inf logits
/// are allowed: they mask a class).
void check_float_range(const char* option, const std::vector<double>& values, bool allow_minus_inf = false) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (allow_minus_inf && v == -HUGE_VAL) continue;
    if (!std::isfinite(v) || std::abs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
      bad(option, fmt::format("entry {} is {}; the draws are in float, which needs finite values with |x| <= {}{}", i,
                              v, std::numeric_limits<float>::max(), allow_minus_inf ? " (or -inf to mask a class)" : ""));
    }
  }
}

void print_header(Context& ctx, const SampleOptions& o) {
  fmt::print("d2r sample: head {}, G = {}, seed {}, step {}, device {} ({})\n", o.head, o.generations, o.seed, o.step,
             to_string(ctx.backend()), ctx.device_name());
}

/// --generations draws of a Gaussian head of `n` dimensions (on the host, G rows of n), the
/// head's entropy and the draws' mean −log p; prints the header.
struct Draws {
  std::vector<float> y;
  double entropy, mean_nll;
};
template <class Head>
Draws draw_gaussian(Context& ctx, const SampleOptions& o, const Head& head, std::int64_t n) {
  const std::int64_t G = o.generations;
  Buffer<float> samples(ctx, G * n), logp(ctx, G), ent(ctx, 1);
  sample(ctx, head, G, {.step = o.step}, samples.matrix(G, n));
  log_prob(ctx, head, MatrixView<const float>(samples.matrix(G, n)), logp.matrix(1, G));
  entropy(ctx, head, ent.vector());
  const std::vector<float> lp = logp.to_host();
  Draws d{samples.to_host(), ent.to_host()[0], -std::accumulate(lp.begin(), lp.end(), 0.0) / static_cast<double>(G)};
  print_header(ctx, o);
  return d;
}

int sample_diag(Context& ctx, const SampleOptions& o) {
  const auto n = static_cast<std::int64_t>(o.mean.size());
  if (n == 0) bad("--mean", "give the mean vector, e.g. --mean 0,1");
  if (static_cast<std::int64_t>(o.std.size()) != n)
    bad("--std", fmt::format("expected {} standard deviations (one per mean), got {}", n, o.std.size()));
  std::vector<float> log_std(n);
  for (std::int64_t d = 0; d < n; ++d) {
    if (!(o.std[d] > 0) || !std::isfinite(o.std[d])) bad("--std", fmt::format("entry {} is {}; expected > 0", d, o.std[d]));
    // The draws are in float: a deviation below its smallest normal number (or above its range)
    // turns into 0 or an infinity there, and the statistics into NaN.
    if (o.std[d] < static_cast<double>(std::numeric_limits<float>::min()) ||
        o.std[d] > static_cast<double>(std::numeric_limits<float>::max())) {
      bad("--std", fmt::format("entry {} is {}; the draws are in float, which needs {} <= std <= {}", d, o.std[d],
                               std::numeric_limits<float>::min(), std::numeric_limits<float>::max()));
    }
    log_std[d] = static_cast<float>(std::log(o.std[d]));
  }
  const std::int64_t G = o.generations;
  Buffer<float> mean(ctx, std::span<const float>(to_float(o.mean))), ls(ctx, std::span<const float>(log_std));
  const Draws draws = draw_gaussian(ctx, o, DiagGaussian<float>{mean.matrix(1, n), ls.matrix(1, n)}, n);
  const std::vector<float>& y = draws.y;
  fmt::print("{:>5} {:>12} {:>12} {:>12} {:>12}\n", "dim", "mean", "sample mean", "std", "sample std");
  for (std::int64_t d = 0; d < n; ++d) {
    double s = 0, s2 = 0;
    for (std::int64_t g = 0; g < G; ++g) s += y[g * n + d];
    const double m = s / G;
    for (std::int64_t g = 0; g < G; ++g) s2 += (y[g * n + d] - m) * (y[g * n + d] - m);
    fmt::print("{:>5} {:>12.4f} {:>12.4f} {:>12.4f} {:>12.4f}\n", d, o.mean[d], m, o.std[d], std::sqrt(s2 / (G - 1)));
  }
  fmt::print("entropy {:.4f}; mean of -log p over the samples {:.4f}\n", draws.entropy, draws.mean_nll);
  return 0;
}

int sample_cholesky(Context& ctx, const SampleOptions& o) {
  const auto n = static_cast<std::int64_t>(o.mean.size());
  if (n == 0) bad("--mean", "give the mean vector, e.g. --mean 0,1");
  const std::int64_t p = n * (n + 1) / 2;
  if (static_cast<std::int64_t>(o.tril.size()) != p)
    bad("--tril", fmt::format("expected the {} entries of the lower-triangular factor L (row-major), got {}", p, o.tril.size()));
  const float jitter = 1e-5f;
  std::vector<float> raw(p);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j <= i; ++j) {
      const double v = o.tril[i * (i + 1) / 2 + j];
      if (i == j) {
        if (!(v > jitter)) bad("--tril", fmt::format("diagonal entry L({},{}) is {}; expected > {}", i, i, v, jitter));
        raw[i * (i + 1) / 2 + j] = static_cast<float>(std::log(std::expm1(v - jitter)));  // inverse softplus
      } else {
        raw[i * (i + 1) / 2 + j] = static_cast<float>(v);
      }
    }
  }
  const std::int64_t G = o.generations;
  Buffer<float> mean(ctx, std::span<const float>(to_float(o.mean))), tril(ctx, std::span<const float>(raw));
  const Draws draws = draw_gaussian(ctx, o, CholeskyGaussian<float>{mean.matrix(1, n), tril.matrix(1, p), jitter}, n);
  const std::vector<float>& y = draws.y;
  std::vector<double> m(n, 0.0);
  for (std::int64_t g = 0; g < G; ++g)
    for (std::int64_t d = 0; d < n; ++d) m[d] += y[g * n + d] / static_cast<double>(G);
  fmt::print("{:>5} {:>5} {:>14} {:>14}\n", "i", "j", "(L Lᵀ)_ij", "sample cov_ij");
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j <= i; ++j) {
      double cov = 0, llt = 0;
      for (std::int64_t g = 0; g < G; ++g) cov += (y[g * n + i] - m[i]) * (y[g * n + j] - m[j]);
      for (std::int64_t k = 0; k <= j; ++k) llt += o.tril[i * (i + 1) / 2 + k] * o.tril[j * (j + 1) / 2 + k];
      fmt::print("{:>5} {:>5} {:>14.4f} {:>14.4f}\n", i, j, llt, cov / static_cast<double>(G - 1));
    }
  }
  fmt::print("sample mean:");
  for (double v : m) fmt::print(" {:.4f}", v);
  fmt::print("\nentropy {:.4f}; mean of -log p over the samples {:.4f}\n", draws.entropy, draws.mean_nll);
  return 0;
}

/// --logits-file: numbers separated by commas and/or white space.
std::vector<double> read_logits(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) bad("--logits-file", fmt::format("'{}' is not a regular file", path));
  std::ifstream in(path);
  if (!in) bad("--logits-file", fmt::format("cannot open '{}'", path));
  std::vector<double> out;
  std::string line;
  for (std::int64_t line_no = 1; std::getline(in, line); ++line_no) {
    std::size_t at = 0;
    while (at < line.size()) {
      const std::size_t start = line.find_first_not_of(" \t\r,", at);
      if (start == std::string::npos) break;
      std::size_t end = line.find_first_of(" \t\r,", start);
      if (end == std::string::npos) end = line.size();
      const std::string item = line.substr(start, end - start);
      double v = 0;
      const auto r = std::from_chars(item.data(), item.data() + item.size(), v);
      if (r.ec != std::errc() || r.ptr != item.data() + item.size() || std::isnan(v) || v == HUGE_VAL) {
        bad("--logits-file", fmt::format("{} line {}, column {}: expected a finite logit or -inf, got '{}'", path,
                                          line_no, start + 1, item));
      }
      out.push_back(v);
      at = end;
    }
  }
  return out;
}

int sample_categorical(Context& ctx, const SampleOptions& o_in) {
  SampleOptions o = o_in;
  if (!o.logits_file.empty()) {
    o.logits = read_logits(o.logits_file);
    check_float_range("--logits-file", o.logits, true);
  }
  const auto C = static_cast<std::int64_t>(o.logits.size());
  if (C < 2) bad("--logits", fmt::format("expected at least 2 logits, got {}", C));
  const std::int64_t G = o.generations;
  Buffer<float> logits(ctx, std::span<const float>(to_float(o.logits)));
  Buffer<std::int32_t> samples(ctx, G);
  Buffer<float> ent(ctx, 1);
  Categorical<float> head{logits.matrix(1, C)};
  sample(ctx, head, G, {.step = o.step}, samples.matrix(1, G));
  entropy(ctx, head, ent.vector());
  const std::vector<std::int32_t> k = samples.to_host();
  std::vector<std::int64_t> counts(C, 0);
  for (std::int32_t v : k) ++counts[v];
  double mx = -std::numeric_limits<double>::infinity(), z = 0;
  for (double l : o.logits) mx = std::max(mx, l);
  for (double l : o.logits) z += std::exp(l - mx);
  print_header(ctx, o);
  fmt::print("{:>7} {:>10} {:>12} {:>12}\n", "class", "logit", "probability", "frequency");
  for (std::int64_t c = 0; c < C; ++c)
    fmt::print("{:>7} {:>10.4f} {:>12.5f} {:>12.5f}\n", c, o.logits[c], std::exp(o.logits[c] - mx) / z,
               static_cast<double>(counts[c]) / static_cast<double>(G));
  fmt::print("entropy {:.4f}\n", ent.to_host()[0]);
  return 0;
}

}  // namespace

CLI::App* add_sample_command(CLI::App& app, SampleOptions& o) {
  CLI::App* cmd = app.add_subcommand("sample", "Draw from a distribution given on the command line and print statistics");
  cmd->add_option("--head", o.head, "diag, cholesky or categorical")->check(CLI::IsMember({"diag", "cholesky", "categorical"}));
  cmd->add_option("--mean", o.mean, "mean vector (diag, cholesky), comma-separated")->delimiter(',');
  cmd->add_option("--std", o.std, "standard deviations (diag), comma-separated")->delimiter(',');
  cmd->add_option("--tril", o.tril, "lower-triangular factor L, row-major packed (cholesky)")->delimiter(',');
  cmd->add_option("--logits", o.logits, "logits (categorical), comma-separated; -inf masks a class")->delimiter(',');
  cmd->add_option("-G,--generations", o.generations, "number of draws")->check(CLI::Range(std::int64_t{2}, std::int64_t{1} << 30));
  cmd->add_option("--logits-file", o.logits_file,
                  "categorical: a file of logits separated by commas or white space (for many classes)")
      ->excludes("--logits");
  cmd->add_option("--seed", o.seed, "Philox seed")->check(unsigned_64());
  cmd->add_option("--step", o.step, "Philox step")->check(unsigned_64());
  cmd->add_option("--device", o.device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  return cmd;
}

int run_sample(const SampleOptions& o) {
  check_float_range("--mean", o.mean);
  check_float_range("--tril", o.tril);
  check_float_range("--logits", o.logits, true);
  Context ctx({.backend = parse_backend(o.device), .seed = o.seed});
  if (o.head == "diag") return sample_diag(ctx, o);
  if (o.head == "cholesky") return sample_cholesky(ctx, o);
  return sample_categorical(ctx, o);
}

}  // namespace d2r::cli
