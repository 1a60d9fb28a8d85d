"""A linear-Gaussian model whose learned proposal is the exact posterior, shared by the tests of
the lower-variance gradient estimators (eager and through the engine)."""

import torch

from pyrosequence import LinearGaussianSSM

#: The proposal's parameters of LinearGaussianSSM (its guide-only group).
GUIDE_PARAMS = ("q_state", "q_obs", "q_bias", "q_log_scale")


def exact_posterior_lgssm(perturb=0.0):
    """z_dim = 1, transition matrix 0: the posterior factorises over steps, and the learned
    proposal q(z_t | x_t) is set to it exactly (optionally perturbed). Returns ``(model, x)``."""
    torch.manual_seed(1)
    m = LinearGaussianSSM(2, 1)
    with torch.no_grad():
        m.transition_matrix.zero_()
        m.q_state.zero_()
        c = m.observation_matrix[:, 0]  # (x_dim,)
        noise_precision = (-2 * m.log_observation_scale).exp()
        for i, log_prior_scale in enumerate([m.log_initial_scale, m.log_transition_scale]):
            precision = (-2 * log_prior_scale).exp() + (c**2 * noise_precision).sum()
            m.q_obs[i, 0] = c * noise_precision / precision
            m.q_bias[i] = 0.0
            m.q_log_scale[i] = -0.5 * precision.log()
        x = m.sample(3, 4)
        for name in GUIDE_PARAMS:
            p = getattr(m, name)
            p.add_(perturb * torch.randn_like(p))
    return m, x
