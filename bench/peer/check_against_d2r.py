"""Numerical cross-check of the PyTorch peers (hvp_peer.py, outer_step_peer.py) against d2r, in
float64 on the CPU, on the small problem written by the peer_check_export program
(bench/peer/export_d2r_check.cpp: d2r's cpu backend in double):

  surrogate  the advantages of d2r's samples, ∇θ L_in and H·v with d2r's samples held fixed
  exact      ∇θ L_exact, H_exact·v and the mixed product ∇_u(∇θ L_exact · w)
  nll        ∇θ NLL
  bilevel    at d2r's θ* after one BilevelTrainer step: the hypergradient of the peer's
             hypergradient() (NLL gradient, CGNR with 1 iteration, mixed product), the outer
             Adam step on u and the metrics
and, on the peer alone, that its HVPs are symmetric (aᵀHb = bᵀHa), match central differences of
its gradient, and that its functional Adam equals torch.optim.Adam.

    build/bench/peer_check_export /tmp/d2r-check.json
    python3 bench/peer/check_against_d2r.py /tmp/d2r-check.json [--compile]
Exit status 0 when every check passes; one line per check either way."""

import argparse
import json
import math
import sys

import torch

import hvp_peer
import outer_step_peer
import policy

failures = []


def check(name, got, want, tol):
    got, want = torch.as_tensor(got, dtype=torch.float64).flatten(), torch.as_tensor(want, dtype=torch.float64).flatten()
    scale = max(want.norm().item(), 1e-300)
    err = (got - want).norm().item() / scale
    ok = got.shape == want.shape and err <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: relative error {err:.3e} (tolerance {tol:.0e}, |want| {scale:.4g})")
    if not ok:
        failures.append(name)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("export", help="JSON written by peer_check_export")
    parser.add_argument("--tolerance", type=float, default=1e-10)
    parser.add_argument("--compile", action="store_true",
                        help="also check the torch.compile'd HVP and hypergradient (what the peers time)")
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 4))
    with open(args.export) as f:
        d = json.load(f)
    torch.manual_seed(0)
    dt = torch.float64
    T = lambda key: torch.tensor(d[key], dtype=dt)  # noqa: E731
    inputs, n, B, G = int(d["inputs"]), int(d["dims"]), int(d["rows"]), int(d["generations"])
    hidden = [int(h) for h in d["hidden"]]
    shapes = policy.layer_shapes(inputs, hidden, 2 * n)
    theta, x, y, v, w = T("theta"), T("x").view(B, inputs), T("y").view(B, n), T("v"), T("w")
    u, lam = torch.tensor(d["u"], dtype=dt), d["lambda"]
    assert theta.numel() == policy.parameter_count(shapes)
    tol = args.tolerance

    # --- the surrogate with d2r's samples (row b·G + g) held fixed: G x B x n for the peer
    samples = T("samples").view(B, G, n).permute(1, 0, 2).contiguous()
    advantages = T("advantages").view(B, G).t().contiguous()
    check("advantages = r(d2r samples)", policy.reward(samples, y, u), advantages, tol)
    grad_fixed = torch.func.grad(policy.surrogate_fixed)
    check("surrogate gradient", grad_fixed(theta, x, samples, advantages, lam, shapes), T("grad_surrogate"), tol)
    hvp = hvp_peer.hvp_fn(shapes, lam)
    hv = hvp(theta, v, x, samples, advantages)
    check("surrogate HVP (torch.func jvp of grad) vs DiagGaussianPolicyCurvature::apply", hv, T("hvp_surrogate"), tol)

    # --- the exact-expectation objective
    grad_exact = torch.func.grad(policy.exact_objective)
    check("exact gradient", grad_exact(theta, x, y, u, lam, shapes), T("grad_exact"), tol)
    hv_exact = torch.func.jvp(lambda t: grad_exact(t, x, y, u, lam, shapes), (theta,), (v,))[1]
    check("exact HVP vs apply after prepare_exact", hv_exact, T("hvp_exact"), tol)
    mixed = torch.func.grad(lambda uu: grad_exact(theta, x, y, uu, lam, shapes).dot(w))(u)
    check("exact mixed product d/du (grad . w)", mixed, T("mixed_exact"), tol)
    check("NLL gradient", torch.func.grad(policy.nll)(theta, x, y, shapes), T("grad_nll"), tol)

    # --- one bilevel outer step's hypergradient at d2r's θ*
    class NoClamp(outer_step_peer.Settings):
        lam = d["lambda"]
        outer_clamp = math.inf
        cg_iterations = int(d["bilevel_cg_iterations"])
        outer_lr = d["bilevel_outer_lr"]
    theta_star = T("bilevel_theta_star")
    h, _ = outer_step_peer.make_hypergradient(shapes, NoClamp)(theta_star, x, y, u)
    check("bilevel hypergradient (NLL grad, CGNR 1 it., mixed product) vs BilevelTrainer::step", h,
          T("bilevel_hypergradient"), 1e-8)
    uu = u.clone().requires_grad_()
    opt = torch.optim.Adam([uu], lr=NoClamp.outer_lr)
    uu.grad = h.detach().reshape(uu.shape)
    opt.step()
    check("outer Adam step on u", uu.detach(), T("bilevel_u_after"), 1e-12)
    check("metrics (NLL/dim, RMSE, mean std) at θ*", policy.metrics(theta_star, x, y, shapes),
          [d["bilevel_nll_per_dim"], d["bilevel_rmse"], d["bilevel_mean_std"]], 1e-12)

    if args.compile:
        hvp_c = torch.compile(hvp_peer.hvp_fn(shapes, lam))
        check("torch.compile'd surrogate HVP vs apply", hvp_c(theta, v, x, samples, advantages), T("hvp_surrogate"), tol)
        h_c, _ = torch.compile(outer_step_peer.make_hypergradient(shapes, NoClamp))(theta_star, x, y, u)
        check("torch.compile'd bilevel hypergradient vs BilevelTrainer::step", h_c, T("bilevel_hypergradient"), 1e-8)

    # --- the peer alone: symmetry, finite differences, Adam
    a, b = torch.randn_like(theta), torch.randn_like(theta)
    for label, H in (("surrogate", lambda z: hvp(theta, z, x, samples, advantages)),
                     ("exact", lambda z: torch.func.jvp(lambda t: grad_exact(t, x, y, u, lam, shapes), (theta,),
                                                        (z,))[1])):
        check(f"{label} HVP symmetry a.(Hb) = b.(Ha)", a.dot(H(b)), b.dot(H(a)), 1e-12)
    eps = 1e-6
    fd = (grad_fixed(theta + eps * v, x, samples, advantages, lam, shapes)
          - grad_fixed(theta - eps * v, x, samples, advantages, lam, shapes)) / (2 * eps)
    check("surrogate HVP vs central differences of the peer's gradient", hv, fd, 1e-7)
    fd = (grad_exact(theta + eps * v, x, y, u, lam, shapes) - grad_exact(theta - eps * v, x, y, u, lam, shapes)) / (2 * eps)
    check("exact HVP vs central differences of the peer's gradient", hv_exact, fd, 1e-7)
    p_ref = theta.clone().requires_grad_()
    opt = torch.optim.Adam([p_ref], lr=outer_step_peer.Settings.inner_lr)
    p, m, s, t = theta.clone(), torch.zeros_like(theta), torch.zeros_like(theta), torch.zeros((), dtype=dt)
    for _ in range(3):
        g = torch.randn_like(theta)
        p_ref.grad = g.clone()
        opt.step()
        p, m, s, t = outer_step_peer.adam_update(p, g, m, s, t)
    check("functional Adam (inner loop) vs torch.optim.Adam, 3 steps", p, p_ref.detach(), 1e-12)

    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
