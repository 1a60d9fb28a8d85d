"""Recurrent cells that accept any leading batch shape (particles x sequences x ...)."""

from __future__ import annotations

import torch
from torch import nn

from pyrosequence.nn.mlp import broadcast_shape

State = torch.Tensor | tuple[torch.Tensor, ...]


def map_state(fn, *states):
    """Apply ``fn`` tensor by tensor to one or more states (tensors or nested tuples of tensors)
    of the same structure: ``map_state(f, (h, c))`` is ``(f(h), f(c))``."""
    if isinstance(states[0], tuple):
        return tuple(map_state(fn, *parts) for parts in zip(*states))
    return fn(*states)


class RecurrentCell(nn.Module):
    """An LSTM or GRU cell over inputs ``(..., in_dim)`` and states ``(..., hidden_dim)``.

    ``torch.nn.LSTMCell`` only takes a 2-D batch; particle filters and vectorized particles give
    inputs with extra leading dimensions, and some inputs carry them while the state does not yet
    (the first step). This wrapper broadcasts the two, flattens, steps, and restores the shape.
    The state is ``(h, c)`` for an LSTM and ``h`` for a GRU; :meth:`output` returns ``h`` for both.
    """

    def __init__(self, in_dim: int, hidden_dim: int, cell: str = "lstm") -> None:
        super().__init__()
        cells = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}
        if cell not in cells:
            raise ValueError(f"unknown cell {cell!r}; choose one of: {', '.join(sorted(cells))}")
        self.kind = cell
        self.hidden_dim = hidden_dim
        self.cell = cells[cell](in_dim, hidden_dim)

    def initial_state(self, batch_shape: torch.Size, like: torch.Tensor) -> State:
        h = like.new_zeros(tuple(batch_shape) + (self.hidden_dim,))
        return (h, h) if self.kind == "lstm" else h

    @staticmethod
    def output(state: State) -> torch.Tensor:
        return state[0] if isinstance(state, tuple) else state

    def forward(self, inputs: torch.Tensor, state: State) -> State:
        parts = state if isinstance(state, tuple) else (state,)
        if inputs.dim() == 2 and all(p.shape[:-1] == inputs.shape[:-1] for p in parts):
            return self.cell(inputs, state)  # the common case: one flat batch, nothing to reshape
        batch = broadcast_shape(inputs.shape[:-1], *(p.shape[:-1] for p in parts))
        flat_in = inputs.expand(batch + inputs.shape[-1:]).reshape(-1, inputs.shape[-1])
        flat = [p.expand(batch + p.shape[-1:]).reshape(-1, self.hidden_dim) for p in parts]
        if self.kind == "lstm":
            h, c = self.cell(flat_in, (flat[0], flat[1]))
            return h.reshape(batch + (self.hidden_dim,)), c.reshape(batch + (self.hidden_dim,))
        return self.cell(flat_in, flat[0]).reshape(batch + (self.hidden_dim,))


def own_tensor(module: nn.Module, name: str) -> torch.Tensor:
    """``module``'s own parameter ``name``, or its buffer of that name (a second bias turned into a
    zero buffer by :func:`use_single_bias`), bypassing any property of that name on the class."""
    return module._parameters[name] if name in module._parameters else module._buffers[name]


def use_single_bias(module: nn.Module) -> nn.Module:
    """Give every PyTorch recurrent cell or layer inside ``module`` one bias vector per gate, as
    TensorFlow's ``LSTMCell`` (which the FIVO reference code uses) has: PyTorch's second bias
    (``bias_hh*``) becomes a zero buffer under the same name, so it neither trains nor counts as
    a parameter, and state dicts keep their keys. Returns ``module``."""
    for owner in list(module.modules()):
        names = [name for name, _ in owner.named_parameters(recurse=False) if name.startswith("bias_hh")]
        for name in names:
            zeros = torch.zeros_like(getattr(owner, name).detach())
            delattr(owner, name)
            owner.register_buffer(name, zeros)
        if names and isinstance(owner, nn.RNNBase):
            owner._init_flat_weights()  # nn.LSTM reads its weights from this list
    return module
