"""A hand-written plain-PyTorch VRNN training loss: the baseline for ``bench_vrnn_step.py``.

It drives exactly the networks of a :class:`pyrosequence.models.VRNN` (same modules, same
weights) in a plain loop, with log-densities written out by formula and no Pyro at all, and
computes the same single-sample ELBO estimator as ``Trace_ELBO``:
``sum_t log p(x_t | z_t, h_{t-1}) + log p(z_t | h_{t-1}) - log q(z_t | x_t, h_{t-1})``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pyrosequence.models import VRNN

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _diag_normal(head, features):
    loc, raw = head.params(features).split(head.dim, dim=-1)
    return loc, F.softplus(raw) + head.min_scale


def _normal_log_prob(value, loc, scale):
    return (-0.5 * ((value - loc) / scale) ** 2 - scale.log() - _HALF_LOG_2PI).sum(-1)


def plain_vrnn_loss(m: VRNN, x: torch.Tensor) -> torch.Tensor:
    """Negative single-sample ELBO summed over the batch, for binary ``x`` of shape (B, T, D)."""
    batch, steps, _ = x.shape
    x_features = m.phi_x(x)
    h = x.new_zeros(batch, m.hidden_dim)
    c = x.new_zeros(batch, m.hidden_dim)
    cell = m.rnn.cell
    total = x.new_zeros(())
    for t in range(steps):
        xf = x_features[:, t]
        p_loc, p_scale = _diag_normal(m.prior_head, m.prior_net(h))
        q_loc, q_scale = _diag_normal(m.encoder_head, m.encoder_net(torch.cat([xf, h], -1)))
        z = q_loc + q_scale * torch.randn_like(q_loc)
        zf = m.phi_z(z)
        logits = m.decoder_head.logits(m.decoder_net(torch.cat([zf, h], -1)))
        log_px = -F.binary_cross_entropy_with_logits(logits, x[:, t], reduction="none").sum(-1)
        total = total + (log_px + _normal_log_prob(z, p_loc, p_scale) - _normal_log_prob(z, q_loc, q_scale)).sum()
        h, c = cell(torch.cat([xf, zf], -1), (h, c))
    return -total
