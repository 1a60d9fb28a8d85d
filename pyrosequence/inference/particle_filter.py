"""A differentiable particle filter over the per-step pieces of a :class:`SequenceModel`.

One filter per sequence of the batch runs K particles through the model's proposal, prior,
emission and state update, reweights them, and resamples the filters whose effective sample size
falls below ``ess_threshold * K``. Its estimate of ``log p(x)`` is the FIVO bound (Maddison et
al., "Filtering Variational Objectives", NeurIPS 2017, eq. 3 and Algorithm 1); with
``ess_threshold = 0`` it never resamples and is the IWAE bound, and with ``K = 1`` it is the ELBO.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from pyrosequence.data.checks import Sequences
from pyrosequence.inference.engine import (
    PARTICLE_DIM, CompileOptions, HeldFixed, StepRunner, compile_options, gather_particles,
)
from pyrosequence.inference.resamplers import Resampler
from pyrosequence.models.core.base import SequenceModel, context_steps
from pyrosequence.models.core.missing import mask_elements
from pyrosequence.models.core.time_slicing import stack_states
from pyrosequence.models.core.capabilities import require_pieces
from pyrosequence.nn.cells import map_state

@dataclass(frozen=True)
class FilterResult:
    """What one run of the particle filter measured (``T`` = steps, ``B`` = sequences).

    Attributes:
        log_z: ``(B,)`` the estimate of ``log p(x_b)``: the FIVO bound of each sequence.
        log_increments: ``(T, B)`` ``log p_hat(x_t | x_<t)``; they sum to ``log_z``; zero beyond
            a sequence's length.
        ess: ``(T, B)`` effective sample size of the weights after step ``t``'s reweighting.
        resampled: ``(T, B)`` whether the filter resampled after step ``t``.
        lengths: ``(B,)`` sequence lengths.
        final_state: the state after the last step, for a caller that continues the sequences
            (truncated backpropagation through time): per sequence, one particle drawn by the
            final weights (batch shape ``(B,)``), or with ``keep_particles`` every particle.
    """

    log_z: torch.Tensor
    log_increments: torch.Tensor
    ess: torch.Tensor
    resampled: torch.Tensor
    lengths: torch.Tensor
    final_state: object = None


def check_filter_options(num_particles, ess_threshold) -> None:
    """Reject a particle count below 1 and an ESS threshold outside [0, 1]."""
    if isinstance(num_particles, bool) or not isinstance(num_particles, numbers.Integral) or num_particles < 1:
        raise ValueError(f"the number of particles must be an integer of at least 1, got {num_particles!r}")
    if not (isinstance(ess_threshold, numbers.Real) and 0.0 <= ess_threshold <= 1.0):
        raise ValueError(f"ess_threshold must lie in [0, 1] (0 = never resample, 1 = always), got {ess_threshold!r}")


def _report_bad_weights(lse: torch.Tensor) -> None:
    """Raise naming the first step and sequence whose log-weights are not finite (``lse`` is
    ``(T, B)``, the log-sum of each filter's weights after every step); nothing if all are."""
    if bool(torch.isfinite(lse).all()):
        return
    t, b = (int(i) for i in (~torch.isfinite(lse)).nonzero()[0])
    value = lse[t, b]
    what = "NaN" if torch.isnan(value) else ("-inf: every particle has zero weight" if value < 0 else "+inf")
    raise ValueError(f"particle filter: the log-weights of sequence {b} are {what} at step {t}")


def particle_filter(
    model: SequenceModel,
    seqs: Sequences,
    num_particles: int,
    resampler: Resampler,
    ess_threshold: float,
    latent_scale: float | torch.Tensor = 1.0,
    initial=None,
    start: int = 0,
    on_step=None,
    compile: bool | str | CompileOptions = False,
) -> FilterResult:
    """Run one particle filter per sequence of ``seqs`` (already validated by ``model.prepare``).

    Each step draws ``z_t`` from the proposal (reparameterised), adds
    ``log p(x_t | s, z_t) + latent_scale * (log p(z_t | s) - log q(z_t | s, x))`` to the
    log-weights (the emission scored on the observed elements of ``x_t`` only, when values are
    missing: :attr:`Sequences.observed`), updates the states, and resamples the filters whose ESS is below
    ``ess_threshold * K`` (not after a sequence's last step). Sequences that have ended add no
    weight and do not resample. Gradients flow through the weights and the resampled states but
    not through the choice of ancestors (the FIVO paper's estimator, section 4: the
    score-function term of resampling is dropped). Log-sum-exp is used throughout.

    The time loop never reads a value back to the host: with ``ess_threshold > 0`` ancestors are
    drawn for every filter at every step and kept only where the filter resamples (so the random
    stream differs from a filter that draws only when resampling, not the estimator's
    distribution), and the weights are checked for NaN/inf once, after the loop. Each step is
    :func:`pyrosequence.inference.engine.filter_step`; ``compile`` (``True``, a
    ``torch.compile`` mode or :class:`~pyrosequence.inference.engine.CompileOptions`) runs it
    compiled (see :mod:`pyrosequence.inference.engine`).

    ``initial`` (a state of batch shape ``(B,)``) and ``start`` continue sequences from an earlier
    window (truncated backpropagation through time): every particle starts from ``initial`` and the
    pieces see step indices ``start + t``. The result's ``final_state`` holds, for each sequence,
    the state of one particle drawn by the final weights; so does ``model.final_state``, which is
    how a filter run inside an objective (``svi.step`` returns only the loss) hands it to the
    training loop, as the model's own ``model()`` does for Pyro's ELBOs.

    ``on_step(t, state, log_w)``, if given, is called before step ``t``'s proposal with the
    filtered particles of ``x_<t``: the states ``s_{t-1}`` (particle dim first) and their
    unnormalised log-weights ``(K, B)``; and once more after the loop with ``t = T`` (the
    particles of the whole batch). It must not modify them (forecasting and predictive checks
    read the filter through it; see :mod:`pyrosequence.diagnostics.forecast`).

    Raises ``ValueError`` naming the first step and sequence whose weights all became zero (or
    NaN/inf).
    """
    return run_filter(model, seqs, num_particles, resampler, ess_threshold, latent_scale, initial, start, on_step,
                      compile)[0]


def run_filter(
    model: SequenceModel,
    seqs: Sequences,
    num_particles: int,
    resampler: Resampler,
    ess_threshold: float,
    latent_scale: float | torch.Tensor = 1.0,
    initial=None,
    start: int = 0,
    on_step=None,
    compile: bool | str | CompileOptions = False,
    analytic_kl: bool = False,
    keep_particles: bool = False,
    held_fixed: str = "none",
) -> tuple[FilterResult, torch.Tensor] | tuple[FilterResult, torch.Tensor, HeldFixed]:
    """:func:`particle_filter`, also returning the final log-weights ``(K, B)`` (since each
    filter's last resampling; with ``ess_threshold = 0`` they are the log importance weights
    ``log p(x, z_k) - log q(z_k | x)`` of ``K`` independent particles).

    ``analytic_kl``: the latent term of every increment is ``-KL(q || p)`` in closed form (see
    :func:`~pyrosequence.inference.engine.latent_log_ratio`): the per-particle weights are then
    mean-field ELBOs, not importance weights. ``keep_particles``: leave :attr:`final_state` with
    its particle dimension first, as the model's own ``model`` does, instead of drawing one
    particle per sequence by the final weights (no random draw after the loop).

    A filter that never resamples (``ess_threshold = 0``), run with gradients on, without
    ``on_step``, ``analytic_kl`` or ``held_fixed``, scores its steps after the loop: the loop
    (compiled or not) runs only the proposal, the draw and the state update
    (:func:`~pyrosequence.inference.engine.deferred_step`), and every step's emission (and a
    :attr:`~pyrosequence.models.core.base.SequenceModel.homogeneous_transition` prior) is scored in
    one call over the states stacked in time, as the model's own ``model`` scores it. The draws,
    the weights and the result are those of the step-by-step filter (to rounding); only the
    work is batched. Without gradients the steps are scored one by one, which keeps memory flat
    in the number of steps (evaluation with many particles).

    ``held_fixed`` (``"guide"`` or ``"both"``, only with ``ess_threshold = 0``): also run the
    held-fixed pass of the lower-variance gradient estimators beside the particles
    (:class:`~pyrosequence.inference.engine.HeldFixed`: the states recomputed from the detached
    draws, and per particle ``log q`` and, for ``"both"``, ``log p`` at those draws), and return
    its final value as a third element."""
    if held_fixed not in ("none", "guide", "both"):
        raise ValueError(f"held_fixed must be 'none', 'guide' or 'both', got {held_fixed!r}")
    if held_fixed != "none" and ess_threshold != 0:
        raise ValueError("the held-fixed pass needs a filter that never resamples (ess_threshold = 0)")
    require_pieces(model, "the particle filter")
    model, seqs, start = model.filter_view(seqs, start)  # a wrapper may hand over its inner model
    k, batch, steps = num_particles, seqs.batch_size, seqs.num_steps
    inputs = model.network_input(seqs)
    ctx = model.context(inputs)
    ctx_steps = context_steps(ctx, steps)
    q_steps = context_steps(model.proposal_context(inputs, ctx, seqs.lengths), steps)
    x_steps = seqs.x.unbind(1)
    observed_steps = (None,) * steps if seqs.observed is None else seqs.observed.unbind(1)
    particles = torch.Size([k, batch])
    if initial is None:
        state = model.initial_state(particles, inputs)
    else:  # every particle starts from the state the sequence reached (with this window's covariates)
        state = model.continue_state(map_state(lambda s: s.expand(particles + s.shape[1:]), initial), inputs)
    log_k = math.log(k)
    log_w = seqs.x.new_zeros(particles)
    log_z = seqs.x.new_zeros(batch)
    reference = seqs.x.new_full((batch,), log_k)  # log-sum of the weights at the last reset
    time = torch.arange(steps, device=seqs.x.device)[:, None]
    lengths = seqs.lengths.to(seqs.x.device)[None]
    active_steps = (time < lengths).unbind(0)  # (B,) per step: t < length
    may_resample_steps = (time < lengths - 1).unbind(0)  # never after a sequence's last step
    scale = None if isinstance(latent_scale, numbers.Real) and latent_scale == 1.0 else latent_scale
    # Without resampling the weights are not needed inside the loop: score every step's emission
    # (and a homogeneous prior) in one batched call afterwards, as the model's own model() does.
    # Only while recording gradients, whose graph keeps every step's states anyway: without
    # gradients the per-step scoring keeps memory flat in the number of steps.
    deferred = (ess_threshold == 0 and on_step is None and not analytic_kl and held_fixed == "none"
                and torch.is_grad_enabled())
    initial_state = state
    held = None
    if held_fixed != "none":
        held = HeldFixed(state, log_w if held_fixed == "both" else None, log_w)
    increments, ess_steps, resampled_steps, lse_steps = [], [], [], []
    with StepRunner(model, resampler, ess_threshold, compile_options(compile), single_steps=on_step is not None,
                    analytic_kl=analytic_kl, deferred=deferred) as run:
        t = 0
        while t < steps:
            if on_step is not None:
                on_step(t, state, log_w)
            block = slice(t, t + run.block_length(t, steps))
            state, log_w, log_z, reference, held, outputs = run(
                state, log_w, log_z, reference, x_steps[block], ctx_steps[block], q_steps[block], active_steps[block],
                may_resample_steps[block], scale, start + t, first=t == 0, held_fixed=held,
                observed_steps=observed_steps[block],
            )
            if deferred:
                increments.extend(outputs)  # (state, z, features, log_q, log_prior) per step
            else:
                for increment, ess, resampled, lse in outputs:
                    increments.append(increment)
                    ess_steps.append(ess)
                    resampled_steps.append(resampled)
                    lse_steps.append(lse)
            t += len(outputs)
    if deferred:
        log_w, increments, ess_steps, resampled_steps, lse_steps = _score_deferred(
            model, seqs, initial_state, increments, scale, particles
        )
    _report_bad_weights(torch.stack(lse_steps))  # the loop's only host synchronisation
    if on_step is not None:
        on_step(steps, state, log_w)
    log_z = log_z + log_w.logsumexp(PARTICLE_DIM) - log_k
    if keep_particles:
        model.final_state = state
        result = _result(log_z, increments, ess_steps, resampled_steps, seqs, state)
        return (result, log_w) if held is None else (result, log_w, held)
    # one particle per filter, drawn from the final weights (one categorical draw: the low-variance
    # resamplers' first ancestor is not distributed as the weights)
    chosen = torch.multinomial(torch.softmax(log_w.detach().transpose(0, 1), -1), 1).transpose(0, 1)
    model.final_state = map_state(lambda s: s[0], gather_particles(state, chosen.expand(particles)))
    result = _result(log_z, increments, ess_steps, resampled_steps, seqs, model.final_state)
    return (result, log_w) if held is None else (result, log_w, held)


def _score_deferred(model: SequenceModel, seqs: Sequences, initial_state, steps: list, scale, particles: torch.Size):
    """The weights of a filter that never resamples from its :func:`deferred_step` outputs: the
    emission of every step (and a homogeneous prior) scored in one call over states stacked in
    time, the increments masked beyond each length and accumulated in step order. Returns the
    final ``(K, B)`` log-weights and per-step lists (increments, ESS, resampled, log-sums) as
    the step-by-step filter produces them."""
    new_states, zs, features, log_qs, log_priors = zip(*steps)
    previous = stack_states([initial_state, *new_states[:-1]])  # s_{t-1}, time at dim -2
    emission = mask_elements(model.emission(previous, stack_states(list(features))), seqs.observed)
    log_p = emission.log_prob(seqs.x)  # (K, B, T): the observed elements only
    if model.z_dim:
        if log_priors[0] is None:
            log_prior = model.transition(previous, None).log_prob(torch.stack(zs, -2))
        else:
            log_prior = torch.stack(log_priors, -1)
        latent = log_prior - torch.stack(log_qs, -1)
        if scale is not None:
            latent = (scale.unsqueeze(-1) if torch.is_tensor(scale) and scale.dim() else scale) * latent
        log_p = log_p + latent
    time = torch.arange(seqs.num_steps, device=seqs.x.device)
    active = time < seqs.lengths.to(seqs.x.device)[:, None]  # (B, T)
    log_w_steps = log_p.masked_fill(~active, 0.0).cumsum(-1)  # (K, B, T)
    lse = log_w_steps.logsumexp(PARTICLE_DIM)  # (B, T)
    ess = (2 * lse - (2 * log_w_steps).logsumexp(PARTICLE_DIM)).exp().detach()
    reference = torch.cat([lse.new_full((lse.shape[0], 1), math.log(particles[0])), lse[:, :-1]], dim=1)
    unbound = lambda v: list(v.transpose(0, 1).unbind(0))  # noqa: E731 - (B, T) -> T of (B,)
    resampled = torch.zeros_like(active)
    return log_w_steps[..., -1], unbound(lse - reference), unbound(ess), unbound(resampled), unbound(lse)


def _result(log_z, increments, ess_steps, resampled_steps, seqs: Sequences, final_state) -> FilterResult:
    return FilterResult(
        log_z=log_z,
        log_increments=torch.stack(increments),
        ess=torch.stack(ess_steps),
        resampled=torch.stack(resampled_steps),
        lengths=seqs.lengths,
        final_state=final_state,
    )
