// Writes a small problem and d2r's answers on it (cpu backend, double) as JSON, for
// bench/peer/check_against_d2r.py to compare the PyTorch peers with:
//   surrogate  θ, x, y, u, λ, the samples and advantages prepare() kept, ∇θ L_in, H v (apply)
//   exact      ∇θ L_exact, H_exact v, the mixed product ∇_u(∇θ L_exact · w)
//   nll        ∇θ NLL (GaussianPolicy::nll_gradient)
//   bilevel    one BilevelTrainer<double>::step() (K_in = 3, no hypergradient clamp): θ* after
//              the inner loop, u before and after, and the hypergradient h
//
//   peer_check_export out.json
#include <cstdint>
#include <cstdio>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "d2r/d2r.hpp"

namespace {

std::vector<double> filled(std::size_t n, double lo, double hi, std::uint64_t seed) {
  std::vector<double> v(n);
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x = lo + (hi - lo) * static_cast<double>(s >> 11) * 0x1.0p-53;
  }
  return v;
}

/// Packed rows of a (possibly strided) host matrix.
std::vector<double> rows_of(d2r::MatrixView<const double> m) {
  std::vector<double> out;
  for (std::int64_t r = 0; r < m.rows; ++r)
    for (std::int64_t c = 0; c < m.cols; ++c) out.push_back(m.data[r * m.row_stride + c]);
  return out;
}

class JsonWriter {
 public:
  explicit JsonWriter(const std::string& path) : f_(std::fopen(path.c_str(), "w")) {
    if (f_ == nullptr) throw std::runtime_error("cannot write " + path);
    std::fputs("{", f_);
  }
  ~JsonWriter() {
    if (f_ != nullptr) std::fclose(f_);
  }
  JsonWriter(const JsonWriter&) = delete;
  JsonWriter& operator=(const JsonWriter&) = delete;
  void number(const char* name, double v) {
    key(name);
    std::fprintf(f_, "%.17g", v);
  }
  void array(const char* name, std::span<const double> v) {
    key(name);
    std::fputs("[", f_);
    for (std::size_t i = 0; i < v.size(); ++i) std::fprintf(f_, "%s%.17g", i ? "," : "", v[i]);
    std::fputs("]", f_);
  }
  void close() {
    std::fputs("}\n", f_);
    std::fclose(f_);
    f_ = nullptr;
  }

 private:
  void key(const char* name) {
    std::fprintf(f_, "%s\n\"%s\": ", first_ ? "" : ",", name);
    first_ = false;
  }
  std::FILE* f_;
  bool first_ = true;
};

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "d2r-check.json";
  const std::int64_t inputs = 5, n = 3, B = 16, G = 4;
  const std::vector<std::int64_t> hidden{8, 8};
  const double u = 0.3, lam = 0.7;
  d2r::Context ctx({.backend = d2r::Backend::cpu, .seed = 11});
  const d2r::Mlp net({.inputs = inputs, .hidden = hidden, .outputs = 2 * n, .activation = d2r::Activation::relu});
  const auto P = static_cast<std::size_t>(net.parameter_count());

  d2r::Buffer<double> theta(ctx, P), grad(ctx, P), hv(ctx, P), grad_exact(ctx, P), hv_exact(ctx, P), g_nll(ctx, P),
      mixed(ctx, 1);
  net.init(ctx, theta.vector(), 7);
  const std::vector<double> x_h = filled(static_cast<std::size_t>(B * inputs), -1, 1, 1),
                            y_h = filled(static_cast<std::size_t>(B * n), -1, 1, 2),
                            v_h = filled(P, -1, 1, 3), w_h = filled(P, -1, 1, 4);
  const d2r::Buffer<double> x(ctx, std::span<const double>(x_h)), y(ctx, std::span<const double>(y_h)),
      v(ctx, std::span<const double>(v_h)), w(ctx, std::span<const double>(w_h)), u_buf(ctx, std::vector<double>{u});
  const d2r::MahalanobisReward<double> reward{d2r::RewardForm::scalar, u_buf.vector()};
  const d2r::PgOptions<double> pg{.entropy_weight = lam};

  d2r::DiagGaussianPolicyCurvature<double> curvature(ctx, net, B);
  curvature.prepare(std::as_const(theta).vector(), x.matrix(B, inputs), y.matrix(B, n), reward, G, pg, {.step = 3},
                    grad.vector());
  const std::vector<double> samples = rows_of(curvature.samples()), advantages = rows_of(curvature.advantages());
  curvature.apply(v.vector(), hv.vector());

  curvature.prepare_exact(std::as_const(theta).vector(), x.matrix(B, inputs), y.matrix(B, n), reward, pg,
                          grad_exact.vector());
  curvature.apply(v.vector(), hv_exact.vector());
  curvature.mixed_product(w.vector(), mixed.vector());

  d2r::GaussianPolicy<double> gaussian(ctx, {.inputs = inputs, .hidden = hidden}, n, d2r::GaussianHead::diagonal, B);
  gaussian.nll_gradient(std::as_const(theta).vector(), x.matrix(B, inputs), y.matrix(B, n), g_nll.vector());

  d2r::BilevelOptions<double> options{};
  options.inner.steps = 3;
  options.inner.pg.entropy_weight = lam;
  options.hypergradient_clamp = std::numeric_limits<double>::infinity();
  const std::vector<double> u_init{u};
  d2r::BilevelTrainer<double> trainer(ctx, {.inputs = inputs, .hidden = hidden},
                                      {x.matrix(B, inputs), y.matrix(B, n)}, {}, d2r::RewardForm::scalar, u_init,
                                      options);
  const d2r::BilevelRecord record = trainer.step();
  const d2r::VectorView<const double> theta_star = trainer.policy_params();

  JsonWriter out(path);
  out.number("inputs", static_cast<double>(inputs));
  out.array("hidden", std::vector<double>(hidden.begin(), hidden.end()));
  out.number("dims", static_cast<double>(n));
  out.number("rows", static_cast<double>(B));
  out.number("generations", static_cast<double>(G));
  out.number("u", u);
  out.number("lambda", lam);
  out.array("theta", theta.to_host());
  out.array("x", x_h);
  out.array("y", y_h);
  out.array("v", v_h);
  out.array("w", w_h);
  out.array("samples", samples);  // (B·G) x n, row b·G + g
  out.array("advantages", advantages);  // B x G
  out.array("grad_surrogate", grad.to_host());
  out.array("hvp_surrogate", hv.to_host());
  out.array("grad_exact", grad_exact.to_host());
  out.array("hvp_exact", hv_exact.to_host());
  out.array("mixed_exact", mixed.to_host());
  out.array("grad_nll", g_nll.to_host());
  out.number("bilevel_inner_steps", static_cast<double>(options.inner.steps));
  out.number("bilevel_cg_iterations", static_cast<double>(options.cg.max_iterations));
  out.number("bilevel_outer_lr", options.outer_adam.learning_rate);
  out.array("bilevel_theta_star", std::vector<double>(theta_star.data, theta_star.data + theta_star.size));
  out.array("bilevel_hypergradient", record.hypergradient);
  out.array("bilevel_u_after", record.reward_params);
  out.number("bilevel_nll_per_dim", record.train.nll_per_dim);
  out.number("bilevel_rmse", record.train.rmse);
  out.number("bilevel_mean_std", record.train.mean_std);
  out.close();
  std::printf("wrote %s (%zu parameters)\n", path.c_str(), P);
  return 0;
}
