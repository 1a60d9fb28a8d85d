"""The piece contract of :class:`~pyrosequence.models.SequenceModel`, checked once per model.

Every objective, bound and diagnostic drives the same per-step pieces, so a piece that returns the
wrong shape would otherwise surface deep inside Pyro ("Shape mismatch inside plate") or a torch
kernel. :func:`check_pieces` runs the pieces for two steps of the first sequences of a real
batch, with and without an extra particle dimension on the left (as the particle filter and
vectorised particles add), and raises ``ValueError`` naming the piece, what was expected and what
it returned:

* ``context(x)`` and ``proposal_context(x, context, lengths)``: one entry per time step (a tensor,
  or a tuple of tensors, shaped ``(batch, time, ...)``);
* ``initial_state(batch_shape, x)``: tensors whose leading dimensions are ``batch_shape``;
* ``transition(state, t)`` and ``proposal(state, t, q_t)``: distributions with event shape
  ``(z_dim,)`` (a missing ``.to_event(1)`` is named as such) whose batch shape broadcasts to the
  state's batch shape;
* ``emission(state, z_features)``: event shape ``(x_dim,)``; it is called with one step's state and
  with states stacked over time (batch shape ``(..., batch, time)``), as the model does;
* ``update(state, z_features, context_t, t)``: a state of the same structure and batch shape
  (with covariates, the state carries ``u_t`` beside the model's own: see
  :mod:`pyrosequence.models.core.covariates`).

The element support the emission's distribution declares (``Bernoulli``: ``boolean``) is kept as
part of the model's :attr:`~pyrosequence.models.SequenceModel.emission_support`, so data outside
it is rejected even when no head declares it.

Whether the emission's distributions can be scored on part of a step's elements
(:func:`~pyrosequence.models.core.missing.can_mask_elements`) is recorded too, so that a batch with
partly observed steps is refused, naming the step, by a model whose emission cannot
(``_emission_masks_elements``).

The check runs without gradients, outside any Pyro handler, and on a forked random-number
state, so it changes no result and no seed's draws.
"""

from __future__ import annotations

import contextlib

import torch

import pyro.poutine as poutine

from pyrosequence.data.checks import Sequences
from pyrosequence.models.core.missing import can_mask_elements
from pyrosequence.models.core.time_slicing import context_steps, stack_states
from pyrosequence.nn.support import element_support, is_static



def _tensors(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [t for part in state for t in _tensors(part)]
    return []


def _broadcasts(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def _check_distribution(piece: str, d, event: int, batch: torch.Size, what: str) -> None:
    if not hasattr(d, "event_shape") or not hasattr(d, "batch_shape"):
        raise ValueError(f"{piece} must return a pyro distribution, got {type(d).__name__}")
    if tuple(d.event_shape) != (event,):
        hint = ""
        if tuple(d.event_shape) == () and d.batch_shape and d.batch_shape[-1] == event:
            hint = " (a .to_event(1) is missing)"
        raise ValueError(
            f"{piece} must return a distribution with event shape ({event},) ({what}); got event shape "
            f"{tuple(d.event_shape)} and batch shape {tuple(d.batch_shape)}{hint}"
        )
    if not _broadcasts(d.batch_shape, batch):
        raise ValueError(
            f"{piece} returned batch shape {tuple(d.batch_shape)}, which does not broadcast to the state's "
            f"batch shape {tuple(batch)}"
        )


def _check_state(piece: str, state, batch: torch.Size, reference=None) -> None:
    tensors = _tensors(state)
    if not tensors and reference is None:
        return
    for tensor in tensors:
        if tuple(tensor.shape[: len(batch)]) != tuple(batch):
            raise ValueError(
                f"{piece} must return a state whose tensors start with the batch shape {tuple(batch)}; got a tensor "
                f"of shape {tuple(tensor.shape)}"
            )
    if reference is not None:
        ref = _tensors(reference)
        if len(ref) != len(tensors) or any(a.shape[len(batch):] != b.shape[len(batch):] for a, b in zip(ref, tensors)):
            raise ValueError(
                f"{piece} must return a state shaped like the one it was given "
                f"({[tuple(t.shape) for t in ref]}); got {[tuple(t.shape) for t in tensors]}"
            )


def _steps(piece: str, context, batch: int, steps: int) -> None:
    if context is None:
        return
    parts = context if isinstance(context, tuple) else (context,)
    for part in parts:
        if not isinstance(part, torch.Tensor) or part.dim() < 2:
            raise ValueError(f"{piece} must return (batch, time, ...) tensors, got {type(part).__name__}")
        if part.shape[0] != batch or part.shape[1] != steps:
            raise ValueError(
                f"{piece} must return (batch, time, ...) = ({batch}, {steps}, ...) for this batch; got shape "
                f"{tuple(part.shape)}" + (" (one step short)" if part.shape[1] == steps - 1 else "")
            )


def check_pieces(model, seqs, particles: int = 2) -> None:
    """Check ``model``'s pieces on the batch ``seqs`` (see the module docstring)."""
    rows = min(seqs.batch_size, 2)
    steps = min(seqs.num_steps, 2)
    x = seqs.x[:rows, :steps]
    lengths = seqs.lengths[:rows].clamp(max=steps)
    part = Sequences(x, lengths, None if seqs.mask is None else seqs.mask[:rows, :steps],
                     None if seqs.observed is None else seqs.observed[:rows, :steps],
                     None if seqs.covariates is None else seqs.covariates[:rows, :steps])
    devices = [x.device] if x.device.type == "cuda" else []
    inputs = model.network_input(part)
    masks_elements = True
    with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=devices), _eval(model):
        ctx = model.context(inputs)
        _steps("context(x)", ctx, rows, steps)
        q_ctx = model.proposal_context(inputs, ctx, part.lengths)
        _steps("proposal_context(x, context, lengths)", q_ctx, rows, steps)
        ctx_steps, q_steps = context_steps(ctx, steps), context_steps(q_ctx, steps)
        for batch in (torch.Size([rows]), torch.Size([particles, rows])):
            state = model.initial_state(batch, inputs)
            _check_state(f"initial_state({tuple(batch)}, x)", state, batch)
            states, features_seq = [], []
            for t in range(steps):
                if model.z_dim:
                    prior = model.transition(state, t)
                    _check_distribution("transition(state, t)", prior, model.z_dim, batch, "z_dim")
                    proposal = model.proposal(state, t, q_steps[t])
                    _check_distribution("proposal(state, t, proposal_context_t)", proposal, model.z_dim, batch, "z_dim")
                    if proposal.batch_shape != batch:  # as the particle filter does
                        proposal = proposal.expand(batch)
                    z = proposal.sample()
                else:
                    z = part.x.new_zeros(batch + (0,))
                features = model.latent_features(z)
                emission = model.emission(state, features)
                _check_distribution("emission(state, z_features)", emission, model.x_dim, batch, "x_dim")
                if t == 0 and len(batch) == 1:
                    _record_support(model, emission)
                masks_elements = masks_elements and can_mask_elements(emission)
                states.append(state)
                features_seq.append(features)
                new_state = model.update(state, features, ctx_steps[t], t)
                _check_state("update(state, z_features, context_t, t)", new_state, batch, state)
                state = new_state
            stacked = model.emission(stack_states(states), stack_states(features_seq))
            _check_distribution(
                "emission(states stacked over time, z_features stacked over time)", stacked, model.x_dim,
                batch + (steps,), "x_dim",
            )
            masks_elements = masks_elements and can_mask_elements(stacked)
    model._emission_masks_elements = masks_elements


def _record_support(model, emission) -> None:
    """Keep the element support the emission's distribution declares (when it declares a
    parameter-free one) as part of the model's :attr:`emission_support`."""
    try:
        support = element_support(emission.support)
    except (NotImplementedError, AttributeError):
        return
    if is_static(support):
        model._emission_distribution_support = support


@contextlib.contextmanager
def _eval(model):
    """Run the check in evaluation mode (training-only extras stay out), restoring the mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)

