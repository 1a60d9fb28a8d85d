"""The linear-Gaussian oracle: its exact likelihood against a brute-force Gaussian computation."""

import pytest
import torch

import pyro.distributions as dist

from pyrosequence import LinearGaussianSSM


def brute_force_log_prob(m: LinearGaussianSSM, x: torch.Tensor) -> torch.Tensor:
    """log N(vec(x); 0, Sigma) with Sigma built from the model's matrices, state by state."""
    steps, x_dim = x.shape[-2], m.x_dim
    A, C = m.transition_matrix.detach().double(), m.observation_matrix.detach().double()
    Q = torch.diag(m.log_transition_scale.detach().double().exp() ** 2)
    P = [torch.diag(m.log_initial_scale.detach().double().exp() ** 2)]
    for _ in range(1, steps):
        P.append(A @ P[-1] @ A.T + Q)
    # Cov(z_s, z_t) = A^(t-s) P_s for t >= s
    cov = torch.zeros(steps * x_dim, steps * x_dim, dtype=torch.float64)
    for s in range(steps):
        for t in range(s, steps):
            czz = torch.linalg.matrix_power(A, t - s) @ P[s]
            block = C @ czz @ C.T
            cov[t * x_dim : (t + 1) * x_dim, s * x_dim : (s + 1) * x_dim] = block
            cov[s * x_dim : (s + 1) * x_dim, t * x_dim : (t + 1) * x_dim] = block.T
    R = torch.diag(m.log_observation_scale.detach().double().exp() ** 2)
    cov = cov + torch.block_diag(*([R] * steps))
    mvn = dist.MultivariateNormal(torch.zeros(steps * x_dim, dtype=torch.float64), covariance_matrix=cov)
    return mvn.log_prob(x.double().reshape(x.shape[0], -1))


def test_exact_log_prob_matches_brute_force_gaussian():
    m = LinearGaussianSSM(x_dim=2, z_dim=3)
    x = m.sample(4, 6)
    exact = m.exact_log_prob(x).detach().double()
    assert torch.allclose(exact, brute_force_log_prob(m, x), rtol=1e-5, atol=1e-5)


def test_ragged_lengths_equal_truncated_sequences():
    m = LinearGaussianSSM(x_dim=2, z_dim=2)
    x = m.sample(3, 8)
    lengths = torch.tensor([8, 3, 5])
    ragged = m.exact_log_prob(x, lengths)
    for b, length in enumerate(lengths.tolist()):
        alone = m.exact_log_prob(x[b : b + 1, :length])
        assert torch.allclose(ragged[b], alone[0], rtol=1e-6)
    # padding is ignored
    x2 = x.clone()
    x2[1, 3:] = 1e3
    assert torch.allclose(m.exact_log_prob(x2, lengths), ragged)


def test_exact_log_prob_is_differentiable():
    m = LinearGaussianSSM(x_dim=2, z_dim=2)
    x = m.sample(2, 5)
    m.exact_log_prob(x).sum().backward()
    assert m.transition_matrix.grad is not None and torch.isfinite(m.transition_matrix.grad).all()


def test_bad_inputs_rejected():
    m = LinearGaussianSSM(x_dim=2, z_dim=2)
    with pytest.raises(ValueError, match="x_dim 3"):
        m.exact_log_prob(torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="unknown proposal"):
        LinearGaussianSSM(2, 2, proposal="smoothing")
    with pytest.raises(ValueError, match="positive"):
        LinearGaussianSSM(0, 2)
