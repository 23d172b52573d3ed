"""The policy and objectives of d2r's bilevel problem written functionally for torch.func, as a
PyTorch user would: one flat parameter vector θ (the layout of d2r::Mlp: per layer W (out x in,
row-major, as nn.Linear.weight) then b), an MLP trunk whose 2n outputs are [mean | log_std] of a
diagonal Gaussian (torch.distributions.Normal), and

  surrogate_fixed    the REINFORCE surrogate with samples and advantages held fixed (the
                     objective whose Hessian DiagGaussianPolicyCurvature::apply multiplies by):
                       L = (1/B) Σ_b [ (1/G) Σ_g −log p(ŷ_bg | x_b) · A_bg − λ H_b ]
  surrogate_sampled  the same surrogate drawing its G samples per row (pg_gradient / prepare)
  exact_objective    the exact-expectation objective (CurvatureKind::exact):
                       L = −(1/B) Σ_b ( E[r_b] + λ H_b ),  E[r] = −u(‖μ − y‖² + Σ_d σ_d²)
  nll                the outer loss −(1/B) Σ_b log p(y_b | x_b)

with the scalar Mahalanobis reward r(ŷ, y) = −u ‖ŷ − y‖² and transform none (A = r).
Shared by hvp_peer.py, outer_step_peer.py and check_against_d2r.py."""

import math

import torch
import torch.nn.functional as F
from torch.distributions import Normal

LOG_2PI = math.log(2.0 * math.pi)


def layer_shapes(inputs, hidden, outputs):
    """(in, out) of each affine layer."""
    widths = [inputs] + list(hidden) + [outputs]
    return [(widths[i], widths[i + 1]) for i in range(len(widths) - 1)]


def parameter_count(shapes):
    return sum(o * (i + 1) for i, o in shapes)


def forward_flops(shapes, rows):
    """GEMM FLOPs of one forward pass (2·B·Σ in·out): the unit of every cost statement."""
    return 2.0 * rows * sum(i * o for i, o in shapes)


def init_params(shapes, generator, device, dtype=torch.float32):
    """nn.Linear's default initialisation (W, b ~ U(−1/√in, 1/√in)), as d2r::Mlp::init."""
    chunks = []
    for i, o in shapes:
        bound = 1.0 / math.sqrt(i)
        for count in (o * i, o):
            chunks.append((torch.rand(count, generator=generator, device=device, dtype=dtype) * 2 - 1) * bound)
    return torch.cat(chunks)


def mlp(theta, x, shapes):
    """ReLU MLP on the flat parameter vector θ."""
    h, offset = x, 0
    for layer, (i, o) in enumerate(shapes):
        W = theta[offset:offset + o * i].view(o, i)
        offset += o * i
        b = theta[offset:offset + o]
        offset += o
        h = F.linear(h, W, b)
        if layer + 1 < len(shapes):
            h = torch.relu(h)
    return h


def policy(theta, x, shapes):
    """The diagonal-Gaussian policy N(μ, diag(exp(log_std)²)) on x, state-dependent log_std."""
    out = mlp(theta, x, shapes)
    n = out.shape[-1] // 2
    return Normal(out[:, :n], out[:, n:].exp(), validate_args=False)


def reward(samples, y, u):
    """Scalar Mahalanobis reward r = −u‖ŷ − y‖²; samples G x B x n, y B x n -> G x B."""
    return -u * (samples - y).pow(2).sum(-1)


def surrogate_fixed(theta, x, samples, advantages, lam, shapes):
    """REINFORCE surrogate with samples (G x B x n) and advantages (G x B) held fixed."""
    dist = policy(theta, x, shapes)
    log_p = dist.log_prob(samples).sum(-1)
    return -(log_p * advantages).mean() - lam * dist.entropy().sum(-1).mean()


def surrogate_sampled(theta, x, y, u, G, lam, shapes):
    """The surrogate drawing G samples per row (no gradient through them), transform none.
    Returns (loss, mean raw reward) for torch.func.grad(..., has_aux=True)."""
    dist = policy(theta, x, shapes)
    samples = dist.sample((G,))
    log_p = dist.log_prob(samples).sum(-1)
    r = reward(samples, y, u)
    advantages = r.detach()
    loss = -(log_p * advantages).mean() - lam * dist.entropy().sum(-1).mean()
    return loss, r.mean().detach()


def exact_objective(theta, x, y, u, lam, shapes):
    """−(1/B) Σ (E[r_b] + λ H_b) with E[r] = −u(‖μ − y‖² + Σ σ²) (no sampling)."""
    dist = policy(theta, x, shapes)
    expected_reward = -u * ((dist.mean - y).pow(2) + dist.variance).sum(-1)
    return -(expected_reward + lam * dist.entropy().sum(-1)).mean()


def nll(theta, x, y, shapes):
    """−(1/B) Σ log p(y | x)."""
    return -policy(theta, x, shapes).log_prob(y).sum(-1).mean()


def metrics(theta, x, y, shapes):
    """NLL per dimension, RMSE of the mean, mean predicted std (PolicyMetrics), one tensor."""
    dist = policy(theta, x, shapes)
    n = y.shape[-1]
    return torch.stack([-dist.log_prob(y).sum(-1).mean() / n, (dist.mean - y).pow(2).mean().sqrt(),
                        dist.stddev.mean()])
