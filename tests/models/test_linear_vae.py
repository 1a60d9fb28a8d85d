"""The linear VAE (Multi-Rate VAE paper, section 3.2, appendix A): its analytic optimum, checked
against numerical optimisation and pPCA, and the multi-rate version trained against it."""

import math

import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

import pyro

from pyrosequence.inference.multi_rate import LogUniformBeta
from pyrosequence.inference.rate_distortion import rate_distortion_sums
from pyrosequence.inference.scaling import scale_latents
from pyrosequence.models import MODELS
from pyrosequence.models.linear_vae import LinearVAE, linear_vae_optimum
from pyrosequence.models.multi_rate import multi_rate


def gaussian_points(n, eigenvalues, seed=0, dtype=torch.float64):
    """``n`` i.i.d. points (as n sequences of one step) with covariance Q diag(eigenvalues) Q^T."""
    g = torch.Generator().manual_seed(seed)
    d = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=dtype))
    lam = torch.tensor(eigenvalues, dtype=dtype)
    x = (torch.randn(n, d, generator=g, dtype=dtype) * lam.sqrt()) @ q.T + torch.linspace(-1, 1, d, dtype=dtype)
    return x[:, None, :], torch.cov(x.T, correction=0)


def test_registered():
    assert MODELS["linear-vae"] is LinearVAE


@pytest.mark.parametrize("beta", [0.3, 2.0])
def test_optimum_matches_numerical_optimisation(beta):
    torch.set_default_dtype(torch.float64)
    x, cov = gaussian_points(300, [5.0, 1.5, 0.7, 0.2])
    model = LinearVAE(4, 2, obs_scale=0.8)
    model.init_from_data(x)
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=400, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        r, d = model.exact_rate_distortion(x)
        loss = d + beta * r
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    with torch.no_grad():
        r, d = model.exact_rate_distortion(x)
    best = linear_vae_optimum(cov, 2, beta, obs_scale=0.8)
    assert float(d + beta * r) == pytest.approx(best["loss"], rel=1e-6)
    assert float(r) == pytest.approx(best["rate"], abs=1e-4)
    assert float(d) == pytest.approx(best["distortion"], abs=1e-4)


def test_optimum_at_beta_one_is_ppca_likelihood():
    x, cov = gaussian_points(200, [4.0, 2.0, 0.5], seed=1)
    eig, vec = torch.linalg.eigh(cov)
    eig, vec = eig.flip(0), vec.flip(1)
    k = 2
    marginal = vec @ torch.diag(torch.cat([eig[:k].clamp_min(1.0), torch.ones(1, dtype=eig.dtype)])) @ vec.T
    nll = 0.5 * (3 * math.log(2 * math.pi) + torch.logdet(marginal) + torch.trace(torch.linalg.solve(marginal, cov)))
    assert linear_vae_optimum(cov, k, 1.0)["loss"] == pytest.approx(float(nll), rel=1e-10)


def test_optimum_limits_and_bad_input():
    cov = torch.diag(torch.tensor([3.0, 1.0]))
    big = linear_vae_optimum(cov, 2, 5.0)  # beta above every eigenvalue: posterior collapse
    assert big["rate"] == 0.0
    assert big["distortion"] == pytest.approx(math.log(2 * math.pi) + 2.0)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="positive finite"):
            linear_vae_optimum(cov, 1, bad)
    with pytest.raises(ValueError, match="z_dim"):
        linear_vae_optimum(cov, 3, 1.0)
    with pytest.raises(ValueError, match="symmetric"):
        linear_vae_optimum(torch.ones(2, 3), 1, 1.0)
    with pytest.raises(ValueError, match="obs_scale"):
        LinearVAE(2, 1, obs_scale=0.0)


def test_exact_rate_distortion_matches_the_pyro_program():
    """The closed-form rate/distortion of the current parameters against the model's own Pyro
    program: rate exactly (both analytic KL), distortion within 4 standard errors of 60 draws."""
    torch.set_default_dtype(torch.float64)
    x, _ = gaussian_points(100, [3.0, 1.0, 0.5])
    model = multi_rate(LinearVAE(3, 2), (0.1, 10.0))
    model.init_from_data(x)
    model.beta_conditioner.set_beta(0.7)
    with torch.no_grad():
        r_exact, d_exact = model.exact_rate_distortion(x)
        draws = torch.stack([torch.stack(rate_distortion_sums(model, x)[:2]) / 100 for _ in range(60)])
    assert torch.allclose(draws[:, 0], r_exact, rtol=1e-10)
    se = draws[:, 1].std() / math.sqrt(60)
    assert abs(float(draws[:, 1].mean() - d_exact)) < 4 * float(se) + 1e-12


def test_multi_rate_linear_vae_learns_the_optimal_curve():
    """One MR training run (beta ~ logU[0.1, 10] per update, TraceMeanField_ELBO with the latent
    sites scaled by beta) reaches the analytic optimum within 3 % at betas it never saw exactly."""
    torch.set_num_threads(1)
    x, cov = gaussian_points(500, [6.0, 2.5, 0.8, 0.3], dtype=torch.float32)
    model = multi_rate(LinearVAE(4, 2), (0.1, 10.0))
    model.init_from_data(x)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 if i < 400 else 0.2)
    elbo, schedule = TraceMeanField_ELBO(max_plate_nesting=1), LogUniformBeta(0.1, 10.0)
    with pyro.validation_enabled(False):
        for step in range(800):
            beta = schedule(step)
            model.beta_conditioner.set_beta(beta)
            opt.zero_grad()
            loss = elbo.differentiable_loss(scale_latents(model.model, beta), scale_latents(model.guide, beta), x) / len(x)
            loss.backward()
            opt.step()
            decay.step()
    rates = []
    for beta in (0.15, 0.5, 1.7, 4.0, 8.0):
        model.beta_conditioner.set_beta(beta)
        with torch.no_grad():
            r, d = model.exact_rate_distortion(x)
        best = linear_vae_optimum(cov, 2, beta)
        assert float(d + beta * r) == pytest.approx(best["loss"], rel=0.03), beta
        rates.append(float(r))
    assert rates == sorted(rates, reverse=True)  # less information as beta grows
    assert rates[-1] < 0.05  # beta = 8 is above both latent eigenvalues: the optimum's rate is 0
