"""Predictive distributions of a sequence model: one-step-ahead, forecasts from a prefix, samples.

All three drive the model's per-step pieces (:class:`pyrosequence.models.core.base.SequenceModel`)
and read the filtered particles of :func:`pyrosequence.inference.particle_filter.particle_filter`
through its ``on_step`` hook; nothing here is trained and everything runs under ``torch.no_grad``.

With ``{(s^k_{t-1}, w^k_{t-1})}`` the filter's weighted particles given ``x_<t`` (normalised
weights ``w``), the one-step predictive is the mixture

.. math::

    p(x_t | x_{<t}) \\approx \\sum_k w^k \\int p(z_t | s^k_{t-1})\\, p(x_t | s^k_{t-1}, z_t)\\, dz_t ,

and a forecast draws particles by their final weights after the prefix and runs the generative
story forward (``z_t ~ transition``, ``x_t ~ emission``, ``s_t = update``), feeding each drawn
``x_t`` back through :meth:`SequenceModel.context`, which is causal and pointwise in time. This is
the usual particle approximation of the predictive (Doucet & Johansen, "A tutorial on particle
filtering and smoothing: fifteen years later", 2009); the papers of the package use the filter
for bounds only, so nothing here reproduces a paper's figure. The model is used in its current
mode: call ``model.eval()`` first if it has dropout (``load_run`` returns it in eval mode).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

import pyro.distributions as dist

from pyrosequence.data.checks import Sequences, check_covariates, check_sequences
from pyrosequence.inference.particle_filter import check_filter_options, particle_filter
from pyrosequence.inference.resamplers import get_resampler
from pyrosequence.models.core.base import SequenceModel, context_steps
from pyrosequence.models.core.missing import mask_elements
from pyrosequence.models.core.capabilities import require_pieces
from pyrosequence.nn.cells import map_state

#: Emission samples per particle used for the moments of an emission without ``mean``/``variance``.
MC_MOMENT_SAMPLES = 16


@dataclass(frozen=True)
class Predictive:
    """One-step-ahead predictive ``p(x_t | x_<t)`` of every step, from the particle filter.

    Attributes (``S`` draws, ``B`` sequences, ``T`` steps, ``D = x_dim``, ``Z = z_dim``):
        samples: ``(S, B, T, D)`` draws of ``x_t`` given ``x_<t`` (zero beyond a sequence's length).
        mean: ``(B, T, D)`` predictive mean: the mixture over the weighted particles, with the
            emission's exact moments given ``z_t`` where it has them, else Monte Carlo moments.
        variance: ``(B, T, D)`` predictive variance (law of total variance over particles and z_t).
        latents: ``(S, B, T, Z)`` the ``z_t`` drawn with ``samples`` (``None`` when ``z_dim = 0``);
            for a wrapper filtered as ``r`` inner steps per step, ``Z = r * z_dim``.
        log_increments: ``(B, T)`` ``log p_hat(x_t | x_<t)`` of the filter (zero beyond a length).
        ess: ``(B, T)`` effective sample size of the filter's weights after step ``t``.
        resampled: ``(B, T)`` bool, whether the filter resampled after step ``t``.
        lengths: ``(B,)`` sequence lengths.
    """

    samples: torch.Tensor
    mean: torch.Tensor
    variance: torch.Tensor
    latents: torch.Tensor | None
    log_increments: torch.Tensor
    ess: torch.Tensor
    resampled: torch.Tensor
    lengths: torch.Tensor


@dataclass(frozen=True)
class Forecast:
    """Draws of the ``horizon`` steps that follow each sequence's prefix.

    Attributes:
        samples: ``(S, B, H, D)`` draws of ``x_{P_b} .. x_{P_b + H - 1}`` (0-based steps) given
            the prefix ``x_0 .. x_{P_b - 1}`` of sequence ``b`` (``P_b = prefix_lengths[b]``).
        mean: ``(B, H, D)`` Monte Carlo mean of the draws.
        latents: ``(S, B, H, Z)`` the latents drawn with them (``None`` when ``z_dim = 0``;
            ``Z = r * z_dim`` for a wrapper filtered as ``r`` inner steps per step).
        prefix_lengths: ``(B,)`` the ``P_b``.
        filled_prefix: ``(S, B, T, D)`` the prefix with every missing value (NaN) replaced by a
            posterior predictive draw, draw ``s`` going with forecast ``s``'s particle population
            (observed values and padding as given); ``None`` when the prefix has no gaps. Each gap
            of step ``t`` is drawn from the filter's particles given ``x_<t`` and the observed
            elements of ``x_t`` (the filtering posterior predictive: later steps do not inform it).
    """

    samples: torch.Tensor
    mean: torch.Tensor
    latents: torch.Tensor | None
    prefix_lengths: torch.Tensor
    filled_prefix: torch.Tensor | None = None


# ---------------------------------------------------------------------------- checks
def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer of at least 1, got {value!r}")
    return int(value)


def _check_model(model) -> None:
    require_pieces(model, "forecasting, predictive draws and sampling through the particle filter")
    if not isinstance(model, SequenceModel):
        raise TypeError(f"model must be a pyrosequence SequenceModel, got {type(model).__name__}")


# ---------------------------------------------------------------------------- generative pieces
def _full(d: dist.Distribution, shape: torch.Size) -> dist.Distribution:
    return d if d.batch_shape == shape else d.expand(shape)


def _draw_latent(model: SequenceModel, state, t: int, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """``z_t ~ p(z_t | s_{t-1})`` for a state of batch shape ``shape`` (empty for ``z_dim = 0``)."""
    if not model.z_dim:
        return like.new_zeros(shape + (0,))
    return _full(model.transition(state, t), shape).sample()


def _event_ranks(model: SequenceModel, like: torch.Tensor):
    """The number of non-batch dims of each tensor of the model's state (same structure). With
    covariates it is read from the initial state of ``like``'s first sequence (the covariates it
    carries have that sequence's batch shape), else from an initial state of empty batch shape."""
    if getattr(model, "covariate_dim", 0):
        return map_state(lambda s: s.dim() - 1, model.initial_state(torch.Size([1]), like[:1]))
    return map_state(lambda s: s.dim(), model.initial_state(torch.Size([]), like))


def _gather(state, ancestors: torch.Tensor, ranks, particles: torch.Size):
    """Pick particles ``ancestors`` ``(S, B)`` along dim 0 of every tensor of a state of batch
    shape ``particles = (K, B)``; tensors that broadcast over it (e.g. lack the particle dim) are
    expanded first."""

    def pick(tensor: torch.Tensor, rank: int) -> torch.Tensor:
        event = tensor.shape[tensor.dim() - rank :]
        tensor = tensor.expand(particles + event)
        index = ancestors.reshape(ancestors.shape + (1,) * rank)
        return tensor.gather(0, index.expand(ancestors.shape + event))

    return map_state(pick, state, ranks)


def _draw_ancestors(log_w: torch.Tensor, num: int) -> torch.Tensor:
    """``(S, B)`` particle indices drawn independently by the normalised weights ``log_w`` ``(K, B)``."""
    return torch.multinomial(torch.softmax(log_w.transpose(0, 1), -1), num, replacement=True).transpose(0, 1)


def emission_moments(d: dist.Distribution, num_mc: int = MC_MOMENT_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of an emission distribution: exact where it defines them, else Monte Carlo.

    Distributions without analytic moments (e.g. autoregressive output heads raising
    ``NotImplementedError``) get the sample mean and (unbiased) sample variance of ``num_mc`` draws.
    """
    try:
        return d.mean, d.variance
    except NotImplementedError:
        draws = d.sample((num_mc,))
        return draws.mean(0), draws.var(0, unbiased=True)


def _step_context(model: SequenceModel, x_t: torch.Tensor, u_t: torch.Tensor | None = None):
    """The model's per-step context of one drawn step ``x_t`` of batch shape ``(S, B)`` (with the
    step's covariates ``u_t``, broadcasting to it, for a model that reads them)."""
    lead = x_t.shape[:-1]
    flat = x_t.reshape(-1, 1, x_t.shape[-1])
    covariates = None if u_t is None else u_t.expand(lead + u_t.shape[-1:]).reshape(-1, 1, u_t.shape[-1])
    ctx = context_steps(model.context(model.network_input(Sequences(flat, None, None, None, covariates))), 1)[0]
    return map_state(lambda c: c.reshape(lead + c.shape[1:]), ctx) if ctx is not None else None


def _roll_forward(model: SequenceModel, state, start: int, steps: int, shape: torch.Size, like: torch.Tensor,
                  covariates: torch.Tensor | None = None):
    """Sample ``steps`` steps of the generative story from ``state``, steps indexed ``start + h``;
    ``covariates`` ``(..., steps, U)`` (broadcasting to ``shape``) are the known inputs of those
    steps, for a model that reads them: the state is handed step ``h``'s before it is drawn.

    Returns ``x`` ``shape + (steps, x_dim)`` and ``z`` ``shape + (steps, z_dim)``.
    """
    xs, zs = [], []
    for h in range(steps):
        u_h = None if covariates is None else covariates[..., h, :]
        if u_h is not None:
            state = model.replace_covariates(state, u_h)
        z = _draw_latent(model, state, start + h, shape, like)
        features = model.latent_features(z)
        x = _full(model.emission(state, features), shape).sample()
        state = model.update(state, features, _step_context(model, x, u_h), start + h)
        xs.append(x)
        zs.append(z)
    return torch.stack(xs, -2), torch.stack(zs, -2)


@dataclass(frozen=True)
class _View:
    """The model and batch the particle filter runs on (:meth:`SequenceModel.filter_view`): the
    model itself, or the inner model of a wrapper that cuts each step into ``ratio`` inner steps
    (:class:`~pyrosequence.models.flattened.Flattened`)."""

    model: SequenceModel
    seqs: Sequences
    ratio: int

    def outer_steps(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(..., T * ratio, U) -> (..., T, ratio * U)``: inner steps back to the model's steps."""
        return tensor.reshape(tensor.shape[:-2] + (tensor.shape[-2] // self.ratio, self.ratio * tensor.shape[-1]))


def _view(model: SequenceModel, seqs: Sequences) -> _View:
    inner, inner_seqs, _ = model.filter_view(seqs, 0)
    ratio = inner_seqs.num_steps // seqs.num_steps
    if inner_seqs.num_steps != ratio * seqs.num_steps or inner.x_dim * ratio != model.x_dim:
        raise NotImplementedError(
            f"{type(model).__name__}.filter_view does not cut each step into whole inner steps; "
            "forecasting cannot map its inner steps back"
        )
    return _View(inner, inner_seqs, ratio)


def _setup(model, x, lengths, num_samples, num_particles, resampler, ess_threshold):
    """What the filter-driven functions share: checked options, the validated batch, the view the
    filter runs on, and the state ranks for gathering particles."""
    _check_model(model)
    num_samples = _check_count(num_samples, "num_samples")
    check_filter_options(num_particles, ess_threshold)
    resampler = get_resampler(resampler)
    seqs = model.prepare(x, lengths)
    view = _view(model, seqs)
    return num_samples, resampler, seqs, view, _event_ranks(view.model, view.model.network_input(view.seqs))


# ---------------------------------------------------------------------------- public API
@torch.no_grad()
def one_step_predictive(
    model: SequenceModel,
    x: torch.Tensor,
    lengths: torch.Tensor | None = None,
    num_samples: int = 100,
    num_particles: int = 100,
    resampler="multinomial",
    ess_threshold: float = 0.5,
) -> Predictive:
    """The filter's one-step-ahead predictive ``p(x_t | x_<t)`` for every step of ``x``.

    At each step ``t`` the particles ``s^k_{t-1}`` and weights given ``x_<t`` are read before the
    step's proposal; every particle draws one ``z_t`` from the transition, the emission's moments
    given ``(s^k, z^k_t)`` are mixed by the weights (law of total variance), and ``num_samples``
    draws pick a particle by weight, then draw ``z_t`` and ``x_t``. The mean and variance are
    consistent as ``num_particles`` grows (their Monte Carlo error is that of the filter plus one
    ``z_t`` draw per particle).

    For a wrapper that the filter runs as ``r`` inner steps per step (``Flattened``), each
    particle draws the ``r`` inner steps of ``x_t`` jointly, the moments are the weighted moments
    of those draws (Monte Carlo), the latents of the ``r`` inner steps are concatenated
    (``Z = r * inner z_dim``), the increments of a step are summed, and the ESS is the one after
    the step's last inner step (``resampled``: after any of them).
    """
    num_samples, resampler, seqs, view, ranks = _setup(model, x, lengths, num_samples, num_particles, resampler, ess_threshold)
    inner, r = view.model, view.ratio
    means, variances, draws, latents = [], [], [], []

    def on_step(t, state, log_w):
        if t == view.seqs.num_steps or t % r:  # after the last step, or inside a step of a wrapper
            return
        particles = log_w.shape
        w = torch.softmax(log_w, 0).unsqueeze(-1)
        if r == 1:
            z = _draw_latent(inner, state, t, particles, log_w)
            m, v = emission_moments(_full(inner.emission(state, inner.latent_features(z)), particles))
        else:  # one joint draw of the r inner steps per particle
            m = view.outer_steps(_roll_forward(inner, state, t, r, particles, log_w)[0])[..., 0, :]
            v = torch.zeros_like(m)
        mean = (w * m).sum(0)
        means.append(mean)
        variances.append((w * (v + (m - mean) ** 2)).sum(0))
        picked = _gather(state, _draw_ancestors(log_w, num_samples), ranks, particles)
        u = None if view.seqs.covariates is None else view.seqs.covariates[:, t : t + r]
        x_s, z_s = _roll_forward(inner, picked, t, r, torch.Size([num_samples, particles[1]]), log_w, u)
        draws.append(view.outer_steps(x_s)[..., 0, :])
        latents.append(z_s.flatten(-2))

    result = particle_filter(inner, view.seqs, num_particles, resampler, ess_threshold, on_step=on_step)
    mask = (torch.arange(seqs.num_steps, device=seqs.x.device) < seqs.lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
    blocks = (seqs.batch_size, seqs.num_steps, r)
    return Predictive(
        samples=torch.stack(draws, 2) * mask,
        mean=torch.stack(means, 1) * mask,
        variance=torch.stack(variances, 1) * mask,
        latents=torch.stack(latents, 2) * mask if model.z_dim else None,
        log_increments=result.log_increments.transpose(0, 1).reshape(blocks).sum(-1),
        ess=result.ess.transpose(0, 1).reshape(blocks)[..., -1],
        resampled=result.resampled.transpose(0, 1).reshape(blocks).any(-1),
        lengths=seqs.lengths,
    )


@torch.no_grad()
def forecast(
    model: SequenceModel,
    prefix: torch.Tensor,
    lengths: torch.Tensor | None = None,
    horizon: int | None = None,
    num_samples: int = 100,
    num_particles: int = 100,
    resampler="multinomial",
    ess_threshold: float = 0.5,
    future_covariates: torch.Tensor | None = None,
) -> Forecast:
    """Forecast ``horizon`` steps after each sequence's prefix.

    ``prefix`` is ``(B, T, D)`` with prefix lengths ``lengths`` (default: all ``T``); for a model
    with covariates ``D = x_dim + covariate_dim`` (the prefix's covariates last), and
    ``future_covariates`` ``(B, H, covariate_dim)`` gives the known inputs of the forecast steps
    (``future_covariates[b, h]`` is ``u`` at step ``P_b + h``): a forecast cannot condition on
    inputs it is not given, so a model with covariates refuses to forecast without them, or
    further than they reach (naming how many steps are missing). The particle
    filter conditions on each prefix; ``num_samples`` particles are drawn by the weights after the
    prefix's last step and the generative story is run forward from them, each drawn ``x_t`` fed
    back through the model's context. Sequences with different prefix lengths start at their own
    step index (models whose transition depends on ``t`` see the right one). A wrapper filtered as
    ``r`` inner steps per step forecasts ``r * horizon`` inner steps (latents concatenated per step).
    """
    if horizon is None:
        raise ValueError("forecast needs horizon (the number of steps to draw), an integer of at least 1")
    horizon = _check_count(horizon, "horizon")
    num_samples, resampler, seqs, view, ranks = _setup(model, prefix, lengths, num_samples, num_particles, resampler, ess_threshold)
    future_covariates = check_future_covariates(model, future_covariates, seqs.batch_size, horizon)
    inner, r = view.model, view.ratio
    ends = set(view.seqs.lengths.tolist())
    picked: dict[int, object] = {}  # inner prefix length -> particles drawn for the sequences with it

    fill = _gap_filler(inner, view.seqs, num_samples)

    def on_step(t, state, log_w):
        if t in ends:  # the filtered particles of x_0 .. x_{t-1}
            picked[t] = _gather(state, _draw_ancestors(log_w, num_samples), ranks, log_w.shape)
        if fill is not None:
            fill(t, state, log_w)

    particle_filter(inner, view.seqs, num_particles, resampler, ess_threshold, on_step=on_step)
    batch = seqs.batch_size
    samples = seqs.x.new_zeros(num_samples, batch, horizon, model.x_dim)
    latents = seqs.x.new_zeros(num_samples, batch, horizon, r * inner.z_dim)
    for p, state in picked.items():
        rows = (view.seqs.lengths == p).nonzero().squeeze(-1)
        state = map_state(lambda s, rows=rows: s.index_select(1, rows), state)
        shape = torch.Size([num_samples, len(rows)])
        u = None if future_covariates is None else future_covariates[rows]
        xs, zs = _roll_forward(inner, state, p, r * horizon, shape, seqs.x, u)
        samples[:, rows] = view.outer_steps(xs)
        latents[:, rows] = zs.reshape(shape + (horizon, -1))
    return Forecast(
        samples=samples,
        mean=samples.mean(0),
        latents=latents if model.z_dim else None,
        prefix_lengths=seqs.lengths,
        filled_prefix=None if fill is None else view.outer_steps(fill.result()),
    )


class _GapFiller:
    """Draws the missing elements of a prefix while the filter runs (``on_step``): at step ``t``
    every particle proposes ``z_t`` as the filter does, is weighted by its filtering weight and
    ``p(observed part of x_t | s, z_t) p(z_t | s) / q(z_t | s, x)``, and ``num_samples`` particles
    drawn by those weights each draw ``x_t`` from the emission; the draw's elements fill the gaps
    (given ``(s, z_t)`` a factorised emission's elements are independent, so these are draws of the
    missing elements given ``x_<t`` and the observed part of ``x_t``)."""

    def __init__(self, model: SequenceModel, seqs: Sequences, num_samples: int) -> None:
        self.model, self.seqs, self.num = model, seqs, num_samples
        inputs = model.network_input(seqs)
        ctx = model.context(inputs)
        self.q_steps = context_steps(model.proposal_context(inputs, ctx, seqs.lengths), seqs.num_steps)
        self.filled = seqs.x.expand((num_samples,) + seqs.x.shape).clone()
        self.gaps = (~seqs.observed).any(-1).any(0).tolist()  # steps with a gap in some sequence

    def __call__(self, t: int, state, log_w: torch.Tensor) -> None:
        if t >= self.seqs.num_steps or not self.gaps[t]:
            return
        model, particles = self.model, log_w.shape
        observed = self.seqs.observed[:, t]
        if model.z_dim:
            q = _full(model.proposal(state, t, self.q_steps[t]), particles)
            z = q.sample()
            weight = log_w + model.transition(state, t).log_prob(z) - q.log_prob(z)
        else:
            z, weight = log_w.new_zeros(particles + (0,)), log_w
        emission = _full(model.emission(state, model.latent_features(z)), particles)
        weight = weight + mask_elements(emission, observed).log_prob(self.seqs.x[:, t])
        draws = emission.sample()  # (K, B, D)
        chosen = _draw_ancestors(weight, self.num)  # (S, B)
        picked = draws.gather(0, chosen[..., None].expand(chosen.shape + draws.shape[-1:]))
        self.filled[:, :, t] = torch.where(observed, self.filled[:, :, t], picked)

    def result(self) -> torch.Tensor:
        return self.filled


def _gap_filler(model: SequenceModel, seqs: Sequences, num_samples: int) -> _GapFiller | None:
    return None if seqs.observed is None else _GapFiller(model, seqs, num_samples)


def check_future_covariates(model: SequenceModel, covariates, batch: int, horizon: int) -> torch.Tensor | None:
    """The known inputs of ``horizon`` steps to draw for ``batch`` sequences, checked: ``None``
    for a model without covariates (and refused when given); else a ``(batch, horizon, U)``
    tensor, refused in one line when absent, too short (naming how many steps are missing),
    misshapen or not finite."""
    dim = getattr(model, "covariate_dim", 0)
    if not dim:
        if covariates is not None:
            raise ValueError(f"{type(model).__name__} reads no covariates, but future covariates were given")
        return None
    if covariates is None:
        raise ValueError(f"{type(model).__name__} reads {dim} covariate(s): the {horizon} step(s) to draw need their "
                         f"future values, (batch, horizon, {dim}), and none were given")
    if not torch.is_tensor(covariates) or covariates.dim() != 3 or covariates.shape[0] != batch or covariates.shape[2] != dim:
        shape = tuple(covariates.shape) if torch.is_tensor(covariates) else type(covariates).__name__
        raise ValueError(f"future covariates must be a ({batch}, {horizon}, {dim}) tensor, got {shape}")
    if covariates.shape[1] < horizon:
        missing = horizon - covariates.shape[1]
        raise ValueError(f"the covariates are known for {covariates.shape[1]} step(s) ahead but {horizon} are to be drawn: "
                         f"{missing} step(s) of covariates are missing (shorten the horizon or give them)")
    covariates = covariates[:, :horizon].to(model.input_offset)
    check_covariates(covariates, None, "future covariates")
    return covariates


@torch.no_grad()
def sample_sequences(model: SequenceModel, num: int, num_steps: int, covariates: torch.Tensor | None = None) -> torch.Tensor:
    """``(num, num_steps, x_dim)`` unconditional draws from the model's generative story; a model
    with covariates draws them given ``covariates`` ``(num, num_steps, covariate_dim)``, the known
    inputs of every step (refused when missing: see :func:`check_future_covariates`)."""
    _check_model(model)
    num = _check_count(num, "num")
    num_steps = _check_count(num_steps, "num_steps")
    covariates = check_future_covariates(model, covariates, num, num_steps)
    blank = model.input_offset.new_zeros(num, num_steps, model.x_dim)
    blank = check_sequences(blank) if covariates is None else model.prepare(torch.cat([blank, covariates], -1))
    view = _view(model, blank)
    state = view.model.initial_state(torch.Size([num]), view.model.network_input(view.seqs))
    xs, _ = _roll_forward(view.model, state, 0, view.ratio * num_steps, torch.Size([num]), view.seqs.x, covariates)
    return view.outer_steps(xs)
