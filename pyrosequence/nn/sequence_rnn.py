"""Whole-sequence LSTM passes and their per-step twins, for models that run an RNN over ``x`` both
ways: once over a batch in one (cuDNN-able) ``nn.LSTM`` call, and step by step in a particle filter.

:func:`lstm_step` applies an ``nn.LSTM``'s own weights to one step, broadcasting over any leading
dimensions, so the two paths compute the same numbers with the same parameters.
:func:`reverse_padded` flips each sequence within its own length, so a backward RNN starts at
each sequence's last real step rather than reading the zero padding first.
"""

from __future__ import annotations

import torch
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor]


def make_lstm(in_dim: int, hidden_dim: int) -> nn.LSTM:
    """A one-layer, batch-first ``nn.LSTM`` (the form :func:`lstm_step` and :func:`lstm_pass` use)."""
    if in_dim < 1 or hidden_dim < 1:
        raise ValueError(f"an LSTM needs positive sizes, got in_dim={in_dim}, hidden_dim={hidden_dim}")
    return nn.LSTM(in_dim, hidden_dim, num_layers=1, batch_first=True)


def lstm_step(lstm: nn.LSTM, inputs: torch.Tensor, state: LSTMState) -> LSTMState:
    """One step of the one-layer ``lstm`` on ``inputs (..., in_dim)`` from ``state = (h, c)``,
    each ``(..., hidden)``; leading dimensions broadcast. Same gate layout as ``nn.LSTM``."""
    h, c = state
    gates = (
        torch.nn.functional.linear(inputs, lstm.weight_ih_l0, lstm.bias_ih_l0)
        + torch.nn.functional.linear(h, lstm.weight_hh_l0, lstm.bias_hh_l0)
    )
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_pass(lstm: nn.LSTM, inputs: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
    """Run ``lstm`` over ``inputs (..., T, in_dim)`` in one call; returns the outputs
    ``(..., T, hidden)`` and the final ``(h, c)`` of shape ``(..., hidden)``.

    ``state`` (each ``(..., hidden)``, broadcasting against the inputs' leading dimensions) is the
    state before the first step (zeros if ``None``). Leading dimensions are flattened into one batch.
    """
    lead, steps = inputs.shape[:-2], inputs.shape[-2]
    hidden = lstm.hidden_size
    if state is not None:
        lead = torch.broadcast_shapes(lead, state[0].shape[:-1])
        inputs = inputs.expand(lead + inputs.shape[-2:])
    flat = inputs.reshape((-1, steps, inputs.shape[-1]))
    if state is None:
        out, (h, c) = lstm(flat)
    else:
        h0, c0 = (s.expand(lead + (hidden,)).reshape(1, -1, hidden) for s in state)
        out, (h, c) = lstm(flat, (h0.contiguous(), c0.contiguous()))
    return out.reshape(lead + (steps, hidden)), (h[0].reshape(lead + (hidden,)), c[0].reshape(lead + (hidden,)))


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence of a padded batch within its own length; padding stays in place.

    Shapes: ``x`` is ``(batch, T, ...)`` (any trailing dimensions), ``lengths`` is ``(batch,)``
    integer with values in ``[1, T]``, or ``None`` when every sequence has the full length ``T``;
    the result has ``x``'s shape: ``out[b, t] = x[b, lengths[b] - 1 - t]`` for ``t < lengths[b]``
    and ``out[b, t] = x[b, t]`` beyond. The map is its own inverse, so
    ``reverse_padded(f(reverse_padded(x, lengths)), lengths)`` runs a causal ``f`` from each
    sequence's end back to its start (:func:`backward_pass`).
    """
    if x.dim() < 2:
        raise ValueError(f"reverse_padded needs x shaped (batch, T, ...), got shape {tuple(x.shape)}")
    steps = x.shape[1]
    if lengths is None:
        return x.flip(1)
    if lengths.shape != x.shape[:1]:
        raise ValueError(f"lengths must have shape ({x.shape[0]},) for x of shape {tuple(x.shape)}, got {tuple(lengths.shape)}")
    t = torch.arange(steps, device=x.device)
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (batch, T)
    index = index.reshape(index.shape + (1,) * (x.dim() - 2)).expand_as(x)
    return x.gather(1, index)


def backward_pass(rnn: nn.RNNBase, inputs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Run a batch-first recurrent network from each sequence's end back to its start.

    ``rnn`` is a one-direction, batch-first ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` (e.g.
    :func:`make_lstm`); ``inputs`` is ``(batch, T, in_dim)``; ``lengths`` is ``(batch,)`` or ``None``
    (all of length ``T``). Returns ``(batch, T, hidden)`` whose step ``t`` summarises
    ``inputs[b, t:lengths[b]]`` (the suffix from ``t`` to the sequence's own end: each sequence
    starts at its last real step, never at the zero padding). Steps ``t >= lengths[b]`` hold values
    of no meaning. This is the usual guide context of a smoothing posterior ``q(z_t | z_{t-1},
    x_{t:T})`` (e.g. a :meth:`~pyrosequence.models.SequenceModel.proposal_context`).
    """
    if not isinstance(rnn, nn.RNNBase):
        raise TypeError(f"backward_pass needs an nn.LSTM, nn.GRU or nn.RNN, got {type(rnn).__name__}")
    if not rnn.batch_first or rnn.bidirectional:
        raise ValueError("backward_pass needs a batch_first, one-direction recurrent network")
    if inputs.dim() != 3:
        raise ValueError(f"backward_pass needs inputs shaped (batch, T, in_dim), got shape {tuple(inputs.shape)}")
    out, _ = rnn(reverse_padded(inputs, lengths))
    return reverse_padded(out, lengths)


def shift_right(x: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """``y[..., t, :] = x[..., t-1, :]`` with ``y[..., 0, :] = first`` (zeros if ``None``)."""
    if first is None:
        first = x.new_zeros(x.shape[:-2] + x.shape[-1:])
    first = first.expand(x.shape[:-2] + x.shape[-1:])
    return torch.cat([first.unsqueeze(-2), x[..., :-1, :]], dim=-2)
