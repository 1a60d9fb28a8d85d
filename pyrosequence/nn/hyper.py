"""Hyper-network building blocks: cells and layers whose weights are modulated per step.

A *hyper cell* is an LSTM or GRU cell in which every row of the input weights ``W`` and of the
recurrent weights ``U`` is scaled by generated vectors ``d_in`` and ``d_h``, and the gate biases
are shifted by a generated vector ``b`` (Ha, Dai & Le, "HyperNetworks", 2016, section 3.2; Deng
et al., VHRNN, eq. 6)::

    gates = d_in * (W y_t) + d_h * (U h_{t-1}) + bias + b

With ``d_in = d_h = 1`` and ``b = 0`` it is exactly ``torch.nn.LSTMCell`` / ``GRUCell``.
A *hyper generator* produces ``(d_in, d_h, b)`` from its input, either with its own LSTM (the
VHRNN default) or with a 3-layer MLP (VHRNN appendix H). A *hyper linear* layer scales the rows of
its weight and sets its bias from a small two-layer MLP (the VHRNN decoder, eq. 2 and appendix B).
"""

from __future__ import annotations

import torch
from torch import nn

from pyrosequence.nn.mlp import MLP, broadcast_shape

GATES = {"lstm": 4, "gru": 3}


def _flatten(tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Size]:
    batch = broadcast_shape(*(t.shape[:-1] for t in tensors))
    return [t.expand(batch + t.shape[-1:]).reshape(-1, t.shape[-1]) for t in tensors], batch


class HyperCell(nn.Module):
    """An LSTM/GRU cell with generated row scales and bias shifts (see the module docstring).

    ``forward(y, state, d_in, d_h, b)``: ``y`` is ``(..., in_dim)``, ``state`` is ``(h, c)`` for
    an LSTM and ``h`` for a GRU, and ``d_in, d_h, b`` are ``(..., gates * hidden_dim)``. For the
    GRU the candidate's recurrent term is scaled before the reset gate multiplies it, as in
    ``torch.nn.GRUCell``. Parameters are named as in ``torch.nn.LSTMCell`` so weights can be copied.
    """

    def __init__(self, in_dim: int, hidden_dim: int, cell: str = "lstm") -> None:
        super().__init__()
        if cell not in GATES:
            raise ValueError(f"unknown cell {cell!r}; choose one of: {', '.join(sorted(GATES))}")
        self.kind, self.hidden_dim = cell, hidden_dim
        self.num_gates = GATES[cell]
        reference = (nn.LSTMCell if cell == "lstm" else nn.GRUCell)(in_dim, hidden_dim)
        self.weight_ih = reference.weight_ih
        self.weight_hh = reference.weight_hh
        self.bias_ih = reference.bias_ih
        self.bias_hh = reference.bias_hh

    @property
    def modulation_dim(self) -> int:
        return self.num_gates * self.hidden_dim

    def initial_state(self, batch_shape: torch.Size, like: torch.Tensor):
        h = like.new_zeros(tuple(batch_shape) + (self.hidden_dim,))
        return (h, h) if self.kind == "lstm" else h

    # Models keep this cell's state first in a flat tuple, followed by other parts (a hyper
    # network's state): ``(h, c, ...)`` for an LSTM, ``(h, ...)`` for a GRU.
    def split(self, state: tuple) -> tuple:
        """``flat state -> (this cell's state, the rest)``."""
        return (state[:2], state[2:]) if self.kind == "lstm" else (state[0], state[1:])

    @staticmethod
    def join(cell_state, rest: tuple) -> tuple:
        """``(this cell's state, the rest) -> flat state``."""
        return (cell_state if isinstance(cell_state, tuple) else (cell_state,)) + tuple(rest)

    def forward(self, y, state, d_in, d_h, b):
        h_prev = state[0] if self.kind == "lstm" else state
        wy = nn.functional.linear(y, self.weight_ih) * d_in
        uh = nn.functional.linear(h_prev, self.weight_hh) * d_h
        if self.kind == "lstm":
            i, f, g, o = (wy + uh + self.bias_ih + self.bias_hh + b).chunk(4, dim=-1)
            c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        wy_r, wy_z, wy_n = (wy + self.bias_ih + b).chunk(3, dim=-1)
        uh_r, uh_z, uh_n = (uh + self.bias_hh).chunk(3, dim=-1)
        r = torch.sigmoid(wy_r + uh_r)
        z = torch.sigmoid(wy_z + uh_z)
        n = torch.tanh(wy_n + r * uh_n)
        return (1 - z) * n + z * h_prev


class HyperGenerator(nn.Module):
    """Generates ``(d_in, d_h, b)`` for a :class:`HyperCell` from an input ``c_t``.

    ``kind="rnn"``: an LSTM of ``hidden_dim`` units reads ``c_t`` and its new hidden state is
    mapped linearly to the three vectors (VHRNN section 3, "theta is also implemented using an
    RNN"); its state is part of the model's state. ``kind="mlp"``: a 3-layer MLP maps ``c_t``
    directly (VHRNN appendix H, "VHRNN-MLP"); it has no state. The scales are ``1 + output`` and the
    output layer starts small, so training starts near the plain cell.

    ``shift_bias=False`` (``kind="rnn"`` only) maps the hyper state to the bias shift ``b``
    without a bias of its own (it would duplicate the cell's bias), as Ha et al.'s HyperLSTM
    does; the scales keep theirs.
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, modulation_dim: int, kind: str = "rnn", shift_bias: bool = True
    ) -> None:
        super().__init__()
        if kind not in ("rnn", "mlp"):
            raise ValueError(f"unknown hyper network {kind!r}; choose one of: mlp, rnn")
        if not shift_bias and kind != "rnn":
            raise ValueError("shift_bias=False is only defined for the RNN hyper network")
        self.kind, self.hidden_dim, self.modulation_dim = kind, hidden_dim, modulation_dim
        self.shift = None
        if kind == "rnn":
            self.rnn = nn.LSTMCell(in_dim, hidden_dim)
            self.project = nn.Linear(hidden_dim, (3 if shift_bias else 2) * modulation_dim)
            if not shift_bias:
                self.shift = nn.Linear(hidden_dim, modulation_dim, bias=False)
        else:
            self.project = MLP(in_dim, [hidden_dim, hidden_dim], 3 * modulation_dim)
        last = self.project if kind == "rnn" else self.project[-1]
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.zero_()
            last.initial_gain = 0.1  # kept by the initialisation schemes (pyrosequence.optim.init)
            if self.shift is not None:
                self.shift.weight.mul_(0.1)
                self.shift.initial_gain = 0.1

    def initial_state(self, batch_shape: torch.Size, like: torch.Tensor) -> tuple:
        if self.kind == "mlp":
            return ()
        h = like.new_zeros(tuple(batch_shape) + (self.hidden_dim,))
        return (h, h)

    def forward(self, c: torch.Tensor, state: tuple) -> tuple[tuple[torch.Tensor, ...], tuple]:
        """Returns ``((d_in, d_h, b), new_state)``."""
        if self.kind == "mlp":
            out, new_state = self.project(c), ()
        else:
            (flat_c, flat_h, flat_s), batch = _flatten([c, *state])
            h, s = self.rnn(flat_c, (flat_h, flat_s))
            new_state = (h.reshape(batch + h.shape[-1:]), s.reshape(batch + s.shape[-1:]))
            out = self.project(new_state[0])
            if self.shift is not None:
                out = torch.cat([out, self.shift(new_state[0])], dim=-1)
        d_in, d_h, b = out.chunk(3, dim=-1)
        return (1 + d_in, 1 + d_h, b), new_state


def scale_shift_generator(cond_dim: int, hyper_hidden: int, out_dim: int) -> MLP:
    """The two-layer MLP ``c -> (raw scale, shift)`` of a hyper layer, its output layer started
    small so that the layer starts as a plain linear one (see :func:`scale_and_shift`)."""
    generator = MLP(cond_dim, [hyper_hidden], 2 * out_dim)
    with torch.no_grad():
        generator[-1].weight.mul_(0.1)
        generator[-1].bias.zero_()
    generator[-1].initial_gain = 0.1  # kept by the initialisation schemes (pyrosequence.optim.init)
    return generator


def scale_and_shift(generator: MLP, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 + raw scale, shift)`` generated from ``c``."""
    raw_scale, shift = generator(c).chunk(2, dim=-1)
    return 1 + raw_scale, shift


class HyperLinear(nn.Module):
    """``y = scale(c) * (W x) + bias(c)``: a linear layer whose rows are scaled and whose bias is
    set by a two-layer MLP of a conditioning input ``c`` (the VHRNN decoder's layers, appendix B).
    """

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int, hyper_hidden: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.weight = nn.Linear(in_dim, out_dim, bias=False)
        self.generator = scale_shift_generator(cond_dim, hyper_hidden, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(y, scale, bias)``."""
        scale, bias = scale_and_shift(self.generator, c)
        return scale * self.weight(x) + bias, scale, bias


class HyperOutput(nn.Module):
    """A factorised emission head whose output layer is a hyper layer: the raw parameters are
    ``scale(c) * (W a) + bias + shift(c)``, with ``W, bias`` the head's own linear layer (its
    effective weights when a wrapper such as a multi-rate gate provides ``effective()``) and
    ``(scale, shift)`` from a two-layer MLP of ``c`` with ``hyper_hidden`` units (the VHRNN
    decoder's last layer read as a hyper layer too, which the paper's Table 4 counts imply).
    The head's static bias is kept, so a Bernoulli head can still start at the data's rates.
    """

    def __init__(self, head: nn.Module, cond_dim: int, hyper_hidden: int) -> None:
        super().__init__()
        if not hasattr(head, "distribution") or not hasattr(head, "linear"):
            raise ValueError(f"a hyper output layer needs a factorised head, got {type(head).__name__}")
        self.head = head
        self.generator = scale_shift_generator(cond_dim, hyper_hidden, head.linear.out_features)

    def forward(self, a: torch.Tensor, c: torch.Tensor):
        """Returns ``(distribution, scale, shift)``."""
        scale, shift = scale_and_shift(self.generator, c)
        linear = self.head.linear
        weight, bias = linear.effective() if hasattr(linear, "effective") else (linear.weight, linear.bias)
        raw = scale * nn.functional.linear(a, weight) + bias + shift
        return self.head.distribution(raw), scale, shift

    @property
    def support(self):
        """The wrapped head's declared element support."""
        return self.head.support

    @property
    def dim(self) -> int:
        return self.head.dim

    def init_bias_from_mean(self, mean: torch.Tensor) -> None:
        """Start the head at the data's rates where the head knows how (Bernoulli); else nothing."""
        if hasattr(self.head, "init_bias_from_mean"):
            self.head.init_bias_from_mean(mean)

    def check_data(self, x: torch.Tensor, name: str = "x") -> None:
        self.head.check_data(x, name)
