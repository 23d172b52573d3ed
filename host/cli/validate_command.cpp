// `d2r validate`: the user's check that the GPU kernels compute the right numbers on THEIR
// hardware. Every GPU primitive of the public API runs on the cuda backend (float) and on the cpu
// backend in double (the oracle, DESIGN.md §1) on the same float-representable inputs at several
// sizes, and a table gives, per primitive, head/variant and size, the largest absolute and
// relative differences against the tolerance. Exit 0 when every check passes, 1 when one fails,
// 2 on bad input (and for --device cuda without a CUDA device).
//
// Without a GPU, `--device cpu` runs the same table with the cpu backend in float in place of the
// cuda backend: a self-check of the float reference paths (and of this program) that runs
// anywhere; on a GPU machine the default (`--device auto`) is the real check.
//
// The checks are the cases of the registry in host/checks/ (d2r::checks: inputs, tolerances and
// the comparison live there, shared with the GPU test tests/checks_gpu_test.cpp); this file is a
// filter, a table and validate.json over them.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "d2r/context.hpp"
#include "d2r/error.hpp"
#include "host/checks/checks.hpp"
#include "host/cli/commands.hpp"
#include "host/cli/output.hpp"

namespace d2r::cli {
namespace {

namespace fs = std::filesystem;
using checks::Case;
using checks::Env;
using checks::Level;
using checks::Outcome;
using checks::Status;
constexpr const char* kCmd = "validate";

}  // namespace

CLI::App* add_validate_command(CLI::App& app, ValidateOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "validate", "Check every GPU primitive on this machine's GPU against the CPU reference in double (pass/fail table)");
  add_shown_option(cmd, "--sizes", o.sizes,
                   "small (tiny shapes and edge cases), medium (+ the paper's sizes) or large (+ C = 2^17, wide MLPs)")
      ->check(CLI::IsMember({"small", "medium", "large"}));
  add_shown_option(cmd, "--seed", o.seed, "seed of the inputs and of the Philox draws");
  cmd->add_option("--filter", o.filter, "run the checks whose 'primitive/variant/size' matches this regular expression");
  cmd->add_option("--out", o.out, "directory to write validate.json into");
  add_shown_option(cmd, "--device", o.device,
                   "auto (the GPU when present, else nothing to check), cuda, or cpu (self-check: the cpu backend in "
                   "float against double)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  return cmd;
}

int run_validate(const ValidateOptions& o) {
  const Level level = o.sizes == "small" ? Level::small : o.sizes == "large" ? Level::large : Level::medium;
  std::regex filter;
  try {
    filter = std::regex(o.filter.empty() ? std::string(".") : o.filter, std::regex::ECMAScript | std::regex::icase);
  } catch (const std::regex_error& e) {
    bad_input(kCmd, "--filter", fmt::format("'{}' is not a valid regular expression ({})", o.filter, e.what()));
  }
  if (!o.out.empty()) check_output_dir(kCmd, "--out", o.out);

  const bool self_check = o.device == "cpu";
  std::vector<Case> cases = checks::all_cases(level, self_check);
  const std::size_t total = cases.size();
  std::erase_if(cases, [&](const Case& c) { return !std::regex_search(c.key(), filter); });
  if (cases.empty()) {
    bad_input(kCmd, "--filter", fmt::format("'{}' matches none of the {} checks of --sizes {}", o.filter, total, o.sizes));
  }

  const bool gpu = cuda_device_available();
  if (o.device == "cuda" && !gpu) {
    bad_input(kCmd, "--device", "no CUDA device is usable on this machine (--device cpu runs the self-check of the cpu backend)");
  }
  if (o.device == "auto" && !gpu) {
    fmt::print(
        "d2r validate: no CUDA device is present on this machine, so there are no GPU kernels to validate; nothing was "
        "run.\n"
        "Run `d2r validate --device cpu` for the self-check of the cpu backend (float against double).\n");
    return 0;
  }
  if (!o.out.empty()) lock_output_dir(kCmd, "--out", o.out);  // after every check of the arguments
  Context test({.backend = self_check ? Backend::cpu : Backend::cuda, .seed = o.seed});
  Context ref({.backend = Backend::cpu, .seed = o.seed});
  Env env{test, ref, o.seed, self_check};

  fmt::print("d2r validate: {} float against cpu double, {} checks (--sizes {}, --seed {}){}\n",
             self_check ? "cpu" : fmt::format("cuda ({})", test.device_name()), cases.size(), o.sizes, o.seed,
             self_check ? fmt::format("\n  self-check of the cpu backend (on a GPU machine run it with --device cuda); "
                                      "categorical heads up to {} classes",
                                      checks::kSelfCheckMaxClasses)
                        : "");
  fmt::print("{:<26} {:<46} {:<18} {:>11} {:>11} {:>9}  {}\n", "primitive", "variant", "size", "max abs err",
             "max rel err", "tolerance", "result");
  const auto started = std::chrono::steady_clock::now();
  std::int64_t passed = 0, failed = 0, skipped = 0;
  nlohmann::json rows = nlohmann::json::array();
  for (const Case& c : cases) {
    const Outcome out = checks::run_case(c, env);
    (out.status == Status::pass ? passed : out.status == Status::fail ? failed : skipped) += 1;
    const std::string abs = out.abs_text.empty() ? checks::format_err(out.abs_err) : out.abs_text;
    const std::string rel = out.rel_text.empty() ? checks::format_err(out.rel_err) : out.rel_text;
    const std::string tol = out.tol_text.empty() ? fmt::format("{:.0e}", out.tolerance) : out.tol_text;
    fmt::print("{:<26} {:<46} {:<18} {:>11} {:>11} {:>9}  {}{}{}\n", c.primitive, c.variant, c.size, abs, rel, tol,
               checks::status_text(out.status), out.note.empty() ? "" : "  ", out.note);
    std::fflush(stdout);
    rows.push_back({{"primitive", c.primitive},
                    {"variant", c.variant},
                    {"size", c.size},
                    {"max_abs_error", out.abs_err},
                    {"max_rel_error", out.rel_err},
                    {"tolerance", out.tolerance},
                    {"result", checks::status_text(out.status)},
                    {"note", out.note}});
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print("\n{} checks: {} passed, {} failed, {} skipped ({:.2f} s){}\n", cases.size(), passed, failed, skipped,
             seconds, failed > 0 ? " — FAIL" : " — all pass");
  if (!o.out.empty()) {
    nlohmann::json j = run_header("validate", test, "float");
    j["reference"] = "cpu double";
    j["self_check"] = self_check;
    j["sizes"] = o.sizes;
    j["seed"] = o.seed;
    j["filter"] = o.filter;
    j["summary"] = {{"checks", cases.size()}, {"passed", passed}, {"failed", failed}, {"skipped", skipped},
                    {"seconds", seconds}};
    j["rows"] = std::move(rows);
    ensure_directory(o.out);
    write_json_atomic(fs::path(o.out) / "validate.json", j);
    fmt::print("wrote {}\n", (fs::path(o.out) / "validate.json").string());
  }
  return failed > 0 ? 1 : 0;
}

}  // namespace d2r::cli
