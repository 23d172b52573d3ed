"""One outer step of the bilevel reward learning (d2r::BilevelTrainer<float>::step, timed by
bench/outer_step_bench.cpp), written as a PyTorch user would with torch.func, at the paper's
MBRL size (MLP 23 -> [64, 64] -> 2·17, B = 70,000, G = 5) with BilevelTrainer's defaults:

    θ ← fresh nn.Linear initialisation (seeded by the step)
    K_in = 50 Adam steps (lr 0.01) on the sampled REINFORCE surrogate, gradient clamp c_in = 1
    g = ∇θ NLL(θ)                                       (outer data = the training data)
    w: CG on the normal equations (H w = g), 1 iteration, x0 = 0, no damping, with HVPs of the
       exact-expectation objective (CurvatureKind::exact), torch.func.jvp of torch.func.grad
    h = −∇_u (∇θ L_exact(θ, u) · w)   (torch.func.grad of a torch.func.grad), clamped to c_out = 10
    u ← one step of a fresh Adam (lr 0.01) on h (re-created every step, as the paper), u >= 1e-6
    record: NLL per dimension, RMSE, mean std of θ on the data, mean raw reward of the last
            inner step (one synchronisation at the end, as d2r)

The HVPs: the textbook CGNR loop with x0 = 0 makes 3 per iteration-1 solve (z = Hr, w = Hp, the
next z); d2r's solver makes 4 (it also applies H to x0). The FLOPs stated are the peer's own
(GEMM FLOPs in forward passes F: K_in gradients 3F each, the NLL gradient 3F, 3 HVPs 5F each,
the mixed product ~ a gradient of a gradient 5F, the metrics' forward F).

torch.compile: the inner step (gradient, clamp, Adam) and the hypergradient (NLL gradient,
CGNR, mixed product) are compiled as two functions; the Python loop over K_in stays eager. A
failure to compile is recorded in the JSON (error_message) and the eager row still runs.

    python3 bench/peer/outer_step_peer.py --out peer-outer-step.json
    python3 bench/peer/outer_step_peer.py --device cpu --quick --out /tmp/peer-outer.json
"""

import argparse

import torch

import policy
from common import dynamo_stats, failure_reason, time_work, write_results

# (inputs, hidden, n, B, G, K_in)
MBRL = (23, [64, 64], 17, 70000, 5, 50)
QUICK = (23, [16, 16], 17, 256, 5, 5)


class Settings:
    """BilevelOptions<float> defaults (d2r/bilevel.hpp)."""
    inner_lr = 0.01
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    inner_clamp = 1.0
    lam = 1.0
    cg_iterations = 1
    damping = 0.0
    outer_lr = 0.01
    outer_clamp = 10.0
    reward_floor = 1e-6


def make_inner_step(shapes, G, s=Settings):
    """One inner step: ∇θ of the sampled surrogate, element-wise clamp, Adam (PyTorch semantics,
    the step count kept as a tensor so that a compiled step is not specialised on it)."""
    grad = torch.func.grad(policy.surrogate_sampled, has_aux=True)

    def inner_step(theta, m, v, t, x, y, u):
        g, mean_reward = grad(theta, x, y, u, G, s.lam, shapes)
        g = g.clamp(-s.inner_clamp, s.inner_clamp)
        return adam_update(theta, g, m, v, t, s) + (mean_reward,)
    return inner_step


def adam_update(theta, g, m, v, t, s=Settings):
    """torch.optim.Adam's update, functional; t (a tensor) counts the steps taken before."""
    t = t + 1
    m = s.beta1 * m + (1 - s.beta1) * g
    v = s.beta2 * v + (1 - s.beta2) * g * g
    step_size = s.inner_lr / (1 - s.beta1 ** t)
    denom = (v / (1 - s.beta2 ** t)).sqrt() + s.eps
    return theta - step_size * m / denom, m, v, t


def cgnr(hvp, b, iterations, damping):
    """CG on the normal equations (H + δI)ᵀ(H + δI) w = (H + δI)ᵀ b from w = 0 (H symmetric)."""
    A = (lambda p: hvp(p) + damping * p) if damping else hvp
    w = torch.zeros_like(b)
    r = b.clone()
    z = A(r)
    p = z
    zz = z.dot(z)
    for _ in range(iterations):
        Ap = A(p)
        alpha = zz / Ap.dot(Ap)
        w = w + alpha * p
        r = r - alpha * Ap
        z = A(r)
        zz_next = z.dot(z)
        p = z + (zz_next / zz) * p
        zz = zz_next
    return w


def make_hypergradient(shapes, s=Settings):
    """h = −∇_u (∇θ L_exact · w) with (H_exact) w = ∇θ NLL solved by CGNR, clamped."""
    grad_nll = torch.func.grad(policy.nll)
    grad_exact = torch.func.grad(policy.exact_objective)

    def hypergradient(theta, x, y, u):
        g = grad_nll(theta, x, y, shapes)

        def hvp(vec):
            return torch.func.jvp(lambda t: grad_exact(t, x, y, u, s.lam, shapes), (theta,), (vec,))[1]
        w = cgnr(hvp, g, s.cg_iterations, s.damping)
        mixed = torch.func.grad(lambda uu: grad_exact(theta, x, y, uu, s.lam, shapes).dot(w))(u)
        return (-mixed).clamp(-s.outer_clamp, s.outer_clamp), w
    return hypergradient


class OuterStep:
    """The whole outer step; `compiled` compiles its two functions with torch.compile."""

    def __init__(self, inputs, hidden, n, x, y, G, K_in, u0, seed=0, compiled=False, s=Settings):
        self.shapes = policy.layer_shapes(inputs, hidden, 2 * n)
        self.x, self.y, self.G, self.K_in, self.s = x, y, G, K_in, s
        self.u = torch.tensor(u0, device=x.device, dtype=x.dtype)
        self.seed, self.k = seed, 0
        self.inner_step = make_inner_step(self.shapes, G, s)
        self.hypergradient = make_hypergradient(self.shapes, s)
        if compiled:
            self.inner_step = torch.compile(self.inner_step)
            self.hypergradient = torch.compile(self.hypergradient)
        self.record = None

    def __call__(self):
        self.k += 1
        dev, dt = self.x.device, self.x.dtype
        gen = torch.Generator(device=dev).manual_seed(self.seed * 1000003 + self.k)
        theta = policy.init_params(self.shapes, gen, dev, dt)  # fresh inner policy (the paper)
        m, v = torch.zeros_like(theta), torch.zeros_like(theta)
        t = torch.zeros((), device=dev, dtype=dt)
        mean_reward = None
        for _ in range(self.K_in):
            theta, m, v, t, mean_reward = self.inner_step(theta, m, v, t, self.x, self.y, self.u)
        h, _ = self.hypergradient(theta, self.x, self.y, self.u)
        # Outer Adam re-created every step: one step from zero moments, then the floor.
        u = self.u.clone().requires_grad_()
        opt = torch.optim.Adam([u], lr=self.s.outer_lr)
        u.grad = h.detach().reshape(u.shape)
        opt.step()
        new_u = u.detach().clamp_min(self.s.reward_floor)
        with torch.no_grad():
            record = torch.cat([policy.metrics(theta, self.x, self.y, self.shapes), mean_reward.reshape(1),
                                h.reshape(1)]).tolist()  # the step's one synchronisation
        if record[4] == record[4]:  # a NaN hypergradient leaves u unchanged (as d2r)
            self.u = new_u
        self.record = {"nll_per_dim": record[0], "rmse": record[1], "mean_std": record[2],
                       "mean_inner_reward": record[3], "hypergradient": record[4], "u": self.u.item()}
        self.theta = theta


def step_flops(shapes, B, K_in, cg_iterations=1):
    F = policy.forward_flops(shapes, B)
    hvps = 1 + 2 * cg_iterations
    return (3 * K_in + 3 + 5 * hvps + 5 + 1) * F


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="peer-outer-step.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="a tiny size, a few iterations (a smoke test)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads with --device cpu (0: torch's default)")
    args = parser.parse_args()
    if torch.device(args.device).type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)  # a shared CPU: OpenMP spinning on busy cores costs 100x
    inputs, hidden, n, B, G, K_in = QUICK if args.quick else MBRL
    iterations = 2 if args.quick else args.iterations
    gen = torch.Generator(device=args.device).manual_seed(3)
    x = torch.rand(B, inputs, generator=gen, device=args.device) * 2 - 1
    y = torch.rand(B, n, generator=gen, device=args.device) * 2 - 1
    shapes = policy.layer_shapes(inputs, hidden, 2 * n)
    flops = step_flops(shapes, B, K_in)
    rows = []
    for mode in ("eager",) + (() if args.no_compile else ("compile",)):
        name = f"peer_outer_step_{mode}/{B}"
        try:
            step = OuterStep(inputs, hidden, n, x, y, G, K_in, u0=0.3, compiled=mode == "compile")
            mean_ms, min_ms = time_work(step, args.device, iterations=iterations, warmup=2)
        except Exception as error:  # torch.compile of torch.func code may fail: record why
            rows.append({"name": name, "error_occurred": True, "error_message": failure_reason(error)})
            print(name, "FAILED:", rows[-1]["error_message"][:300], flush=True)
            continue
        rows.append({"name": name, "real_time": mean_ms * 1e3, "min_time": min_ms * 1e3, "iterations": iterations,
                     "flops": flops, "GFLOP/s": flops / (mean_ms * 1e-3) * 1e-9, "items_per_second": 1e3 / mean_ms,
                     "inner_steps": K_in, "generations": G, "rows": B, "hvps": 1 + 2 * Settings.cg_iterations,
                     "last_record": step.record})
        if mode == "compile" and dynamo_stats() is not None:
            rows[-1]["dynamo_cumulative"] = dynamo_stats()
        print(name, f"{mean_ms:.3f} ms/step", f"{rows[-1]['GFLOP/s']:.1f} GFLOP/s", step.record, flush=True)
    write_results(args.out, rows, device=args.device)


if __name__ == "__main__":
    main()
