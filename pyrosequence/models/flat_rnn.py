"""RNN-flat: one RNN over the elements of every step in turn (Dai et al. 2019, section 5.2)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from pyrosequence.models.core.base import SequenceModel
from pyrosequence.nn.autoregressive import AutoregressiveStep, ElementFamily, chunked_rows
from pyrosequence.nn.mlp import broadcast_shape

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class FlatOutput(nn.Module):
    """The per-element output of the flat model: ``params_i = V g + b_i`` for one element family;
    it declares the element family's ``support``, which the model's data check and its
    initialisation from the data mean find."""

    def __init__(self, hidden: int, dim: int, likelihood: str, components: int) -> None:
        super().__init__()
        self.dim = dim
        self.element = ElementFamily(likelihood, components)
        self.out = nn.Linear(hidden, self.element.num_params)
        self.bias = nn.Parameter(torch.zeros(dim, self.element.num_params))

    @property
    def support(self):
        return self.element.support

    def check_data(self, x: torch.Tensor, name: str = "x") -> None:
        self.element.check_data(x, name)

    def init_bias_from_mean(self, mean: torch.Tensor) -> None:
        with torch.no_grad():
            self.bias.copy_(self.element.bias_from_mean(mean.to(self.bias)))


class RNNFlat(SequenceModel):
    r"""RNN-flat (Dai, Dai, Zhang & Jiang, NeurIPS 2019, section 5.2): the ``T x L`` elements are
    read as one univariate sequence ``x_{1,1}, ..., x_{1,L}, x_{2,1}, ...`` by a single RNN::

        d_{t,0} = d_{t-1,L},   d_{0,L} = 0
        x_{t,i} | x_{<t}, x_{t,<i}  ~  p(x_{t,i} | V d_{t,i-1} + b_i)          eq. 13
        d_{t,i} = RNN(x_{t,i}, d_{t,i-1})

    As a :class:`SequenceModel` the state ``s_t = d_{t,L}`` is the element-level RNN after the
    last element of step ``t``; :meth:`emission` is an
    :class:`~pyrosequence.nn.autoregressive.AutoregressiveStep` that continues that very RNN over
    ``x_t``'s elements (teacher forcing: one ``nn.LSTM`` call over ``L - 1`` elements), and
    :meth:`update` runs it over the ``L`` elements in one call. The Python loop is over the ``T``
    steps, not the ``T L`` elements. No latents: every bound is the exact log-likelihood.

    Differences from the paper: one recurrent layer; the output layer has a per-element bias
    ``b_i`` (the paper's flat RNN has one bias for all elements), which tells the output which
    element of the step it emits and lets it start at the data's per-element rates.

    Args:
        x_dim: ``L``.
        hidden_dim: recurrent units (default 64).
        likelihood: element family, ``"bernoulli"``, ``"gaussian"`` or ``"mixture"``.
        components: mixture components per element.
        cell: ``"lstm"`` or ``"gru"``.
    """

    #: Constructor options that are sizes (positive integers; see pyrosequence.models.core.options).
    size_options = ("hidden_dim", "components")

    def __init__(self, x_dim: int, hidden_dim: int = 64, likelihood: str = "bernoulli", components: int = 5,
                 cell: str = "lstm", name: str | None = None) -> None:
        super().__init__(x_dim, 0, name=name)
        rnns = {"lstm": nn.LSTM, "gru": nn.GRU}
        if cell not in rnns:
            raise ValueError(f"unknown cell {cell!r}; choose one of: {', '.join(sorted(rnns))}")
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be positive, got {hidden_dim}")
        self.hidden_dim, self.kind, self.likelihood = hidden_dim, cell, likelihood
        self.rnn = rnns[cell](1, hidden_dim, batch_first=True)
        self.decoder_head = FlatOutput(hidden_dim, x_dim, likelihood, components)

    # ------------------------------------------------------------------ the element-level RNN
    def _flat_state(self, state: State, batch: torch.Size):
        parts = state if isinstance(state, tuple) else (state,)
        flat = tuple(p.expand(batch + p.shape[-1:]).reshape(1, -1, self.hidden_dim).contiguous() for p in parts)
        return flat if self.kind == "lstm" else flat[0]

    def _unflat_state(self, flat, batch: torch.Size) -> State:
        if self.kind == "lstm":
            return tuple(p[0].reshape(batch + (self.hidden_dim,)) for p in flat)
        return flat[0].reshape(batch + (self.hidden_dim,))

    @staticmethod
    def _output(state: State) -> torch.Tensor:
        return state[0] if isinstance(state, tuple) else state

    def _run(self, state: State, inputs: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Run the RNN over ``inputs (..., n)`` (already centred) from ``state``: outputs
        ``(..., n, hidden)`` and the final state, leading dims broadcast and flattened for one call."""
        batch = broadcast_shape(inputs.shape[:-1], *(p.shape[:-1] for p in (state if isinstance(state, tuple) else (state,))))
        flat_in = inputs.expand(batch + inputs.shape[-1:]).reshape(-1, inputs.shape[-1], 1)
        out, final = self.rnn(flat_in, self._flat_state(state, batch))
        return out.reshape(batch + out.shape[-2:]), self._unflat_state(final, batch)

    # ------------------------------------------------------------------ conditioner protocol
    def teacher(self, state: State, x: torch.Tensor) -> torch.Tensor:
        """Parameters of every element of ``x`` (raw data, ``(..., L)``) from ``state``, one pass."""
        parts = state if isinstance(state, tuple) else (state,)
        batch = broadcast_shape(x.shape[:-1], *(p.shape[:-1] for p in parts))
        flat_x = self.centered(x).expand(batch + x.shape[-1:]).reshape(-1, self.x_dim)
        flat_parts = [p.expand(batch + p.shape[-1:]).reshape(-1, self.hidden_dim) for p in parts]

        def rows(x_rows: torch.Tensor, *state_rows: torch.Tensor) -> torch.Tensor:
            first = state_rows[0][:, None, :]
            if self.x_dim == 1:
                return self.decoder_head.out(first)
            start = tuple(p[None].contiguous() for p in state_rows)
            out, _ = self.rnn(x_rows[:, :-1, None], start if self.kind == "lstm" else start[0])
            return self.decoder_head.out(torch.cat([first, out], dim=1))

        params = chunked_rows(rows, flat_x, *flat_parts, cost_per_row=self.x_dim * self.hidden_dim)
        return params.reshape(batch + params.shape[-2:])

    def sample(self, state: State, draw: Callable) -> torch.Tensor:
        """Draw the ``L`` elements in turn, continuing the RNN after each one."""
        values = []
        for i in range(self.x_dim):
            v = draw(i, self.decoder_head.out(self._output(state)))
            values.append(v)
            if i + 1 < self.x_dim:
                _, state = self._run(state, (v - self.input_offset[i])[..., None])
        return torch.stack(values, -1)

    # ------------------------------------------------------------------ SequenceModel pieces
    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor) -> State:
        h = x.new_zeros(tuple(batch_shape) + (self.hidden_dim,))
        return (h, h) if self.kind == "lstm" else h

    def emission(self, state: State, z_features: torch.Tensor) -> AutoregressiveStep:
        head = self.decoder_head
        return AutoregressiveStep(self, head.element, state, self.x_dim, head.bias)

    def update(self, state: State, z_features: torch.Tensor, x_t: torch.Tensor, t: int) -> State:
        return self._run(state, x_t)[1]
