r"""Beta-gated layers for Multi-Rate VAEs (Bae, Zhang, Ba, Grosse, Grosse, ICLR 2023, eq. 6-8).

An MR-VAE layer scales its pre-activation ``s = W a + b`` by a gate computed from the KL weight::

    s(beta) = sigma(w * u + c) * (W a + b),      u = (log beta - m) / sd

with one ``(w, c)`` pair per output unit (section 3.1) and ``u`` the log KL weight standardised by
the sampling range ``[a, b]`` of training (section 3.4): ``m = (log a + log b) / 2`` and
``sd = (log b - log a) / sqrt(12)``, the mean and standard deviation of ``log beta`` when it is
drawn uniformly in ``[log a, log b]``. The activation depends on the network (eq. 7)::

    encoder (guide):   sigma(x) = 1 / (1 + exp(-x))
    decoder (model):   sigma(x) = sqrt(relu(1 - exp(x)))

Gated versions of :class:`torch.nn.Linear`, :class:`torch.nn.LSTMCell`, :class:`torch.nn.GRUCell`,
one-layer :class:`torch.nn.LSTM`, :class:`~pyrosequence.nn.hyper.HyperCell` and :class:`~pyrosequence.nn.hyper.HyperLinear` are here;
each is built from an existing module and *shares* its parameters (``from_module``), so a trained
base model keeps its weights. A recurrent cell's gate multiplies the pre-activations of all its
gates (``4 * hidden`` for an LSTM, ``3 * hidden`` for a GRU, where the candidate's pre-activation
``W_in x + b_in + r * (W_hn h + b_hn)`` is scaled as a whole): that is eq. 6 applied to the rows of
the stacked input and recurrent weights, which are scaled once per forward pass and run by
``torch``'s fused cell. Gates and scaled weights are cached per forward pass (see ``_Gated``).

Every gate reads the current KL weight from one shared :class:`BetaConditioner` (not from global
state); :func:`pyrosequence.models.multi_rate.multi_rate` builds all of this for a whole model.
The beta is one scalar per call (per batch), so a gate is a vector ``(features,)`` that broadcasts
over any leading dimensions (particles, sequences, time), and cells that flatten their batch are
untouched by it.

Differences from the paper: the gate's parameters start at ``w = 0`` and ``c = +2`` (encoder,
gate 0.88) or ``c = -2`` (decoder, gate 0.93) rather than PyTorch's random ``Linear(1, F)`` init,
so no decoder unit starts switched off for part of the range (the decoder gate has zero gradient
where it is 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pyrosequence.nn.cells import own_tensor
from pyrosequence.nn.hyper import HyperCell, HyperLinear

ENCODER, DECODER = "encoder", "decoder"
ROLES = (ENCODER, DECODER)
#: Initial gate offsets ``c`` (with ``w = 0``): gates 0.88 (encoder) and 0.93 (decoder).
INIT_BIAS = {ENCODER: 2.0, DECODER: -2.0}
#: Offsets that make a gate exactly 1 in float32 and float64 (with ``w = 0``): ``sigmoid(40)``
#: and ``sqrt(1 - exp(-200))`` both round to 1.
IDENTITY_BIAS = {ENCODER: 40.0, DECODER: -200.0}
#: The default sampling range of the KL weight (the paper's a = 0.01, b = 10).
DEFAULT_BETA_RANGE = (0.01, 10.0)


def check_beta(beta) -> float:
    """``beta`` as a float; ``ValueError`` unless it is a positive finite number."""
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"the KL weight beta must be a positive finite number, got {beta!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"the KL weight beta must be a positive finite number, got {beta!r}")
    return value


def check_beta_range(beta_range) -> tuple[float, float]:
    """``(a, b)`` as floats; ``ValueError`` unless ``0 < a < b < inf``."""
    try:
        a, b = beta_range
    except (TypeError, ValueError):
        raise ValueError(f"the beta range must be two numbers (a, b), got {beta_range!r}") from None
    for value in (a, b):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"the beta range (a, b) needs positive finite numbers, got {beta_range!r}")
    if a > b:
        raise ValueError(f"the beta range (a, b) needs a < b, got a={a} > b={b}")
    if a == b:
        raise ValueError(f"the beta range (a, b) has zero width (a = b = {a}); use a fixed --beta instead")
    return float(a), float(b)


class BetaConditioner(nn.Module):
    """The current KL weight of a multi-rate model, as the gates' standardised input ``u``.

    ``set_beta(beta)`` sets it (default 1, the plain ELBO); the sampling range ``[a, b]`` is a
    buffer, so it travels with the state dict. ``u`` is a Python float: one beta for the whole
    batch (see the module docstring for why).
    """

    def __init__(self, beta_range=DEFAULT_BETA_RANGE, beta: float = 1.0) -> None:
        super().__init__()
        a, b = check_beta_range(beta_range)
        self.register_buffer("beta_range", torch.tensor([a, b], dtype=torch.float64))
        self._range = (a, b)
        self.set_beta(beta)

    @property
    def beta(self) -> float:
        return self._beta

    def set_beta(self, beta) -> None:
        self._beta = check_beta(beta)
        self.u = self.standardize(self._beta)

    def standardize(self, beta: float) -> float:
        """``(log beta - m) / sd`` for the range ``[a, b]`` (section 3.4)."""
        log_a, log_b = math.log(self._range[0]), math.log(self._range[1])
        return (math.log(beta) - 0.5 * (log_a + log_b)) / ((log_b - log_a) / math.sqrt(12.0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._range = check_beta_range(tuple(float(v) for v in self.beta_range.tolist()))
        self.set_beta(self._beta)

    def extra_repr(self) -> str:
        return f"beta_range={self._range}, beta={self._beta:g}"


class BetaGate(nn.Module):
    """``gate(u) = sigma_role(weight * u + bias)``, a vector of ``features`` gates (eq. 6-7).

    It holds a reference (not a submodule) to the model's :class:`BetaConditioner`.
    """

    def __init__(self, features: int, role: str, conditioner: BetaConditioner, bias: float | None = None) -> None:
        super().__init__()
        if role not in ROLES:
            raise ValueError(f"unknown gate role {role!r}; choose one of: {', '.join(ROLES)}")
        self.features, self.role = int(features), role
        self.weight = nn.Parameter(torch.zeros(self.features))
        self.bias = nn.Parameter(torch.full((self.features,), INIT_BIAS[role] if bias is None else float(bias)))
        object.__setattr__(self, "conditioner", conditioner)  # shared, so not a submodule

    def forward(self) -> torch.Tensor:
        s = self.weight * self.conditioner.u + self.bias
        if self.role == ENCODER:
            return torch.sigmoid(s)
        y = 1.0 - torch.exp(s)
        positive = y > 0
        # sqrt(relu(y)) with a zero (not NaN) gradient where the gate is closed
        return torch.where(positive, torch.sqrt(torch.where(positive, y, torch.ones_like(y))), torch.zeros_like(y))

    def extra_repr(self) -> str:
        return f"features={self.features}, role={self.role}"


class _Gated:
    """Mixin: a gated module made from a plain one, sharing its parameters.

    The gate (and the weights it scales) depend only on the parameters and on beta, not on the
    data, so they are computed once and reused by every call of the same forward pass (a
    recurrent cell is called once per step): :meth:`_effective` caches them under a key of beta,
    the grad mode and the parameters' versions (in-place updates, ``load_state_dict``), drops
    them on ``.to()``/casts, and forgets them when backward reaches them (that backward frees
    their graph). This keeps the gates' cost per update, not
    per step, as in the paper (section 3.4: two element-wise operations per layer).
    """

    gate: BetaGate

    @classmethod
    def from_module(cls, module: nn.Module, role: str, conditioner: BetaConditioner, features: int) -> nn.Module:
        gated = cls.__new__(cls)
        nn.Module.__init__(gated)
        for name, value in vars(module).items():  # what the module's own constructor set
            if name not in vars(gated):
                object.__setattr__(gated, name, value)
        gated._parameters.update(module._parameters)  # the same Parameter objects
        gated._buffers.update(module._buffers)
        gated._non_persistent_buffers_set.update(module._non_persistent_buffers_set)
        gated._modules.update(module._modules)
        gated.train(module.training)
        gated.gate = BetaGate(features, role, conditioner)
        gated._cache = None
        gated._watch()
        return gated

    def _watch(self) -> None:
        """The parameters whose versions key the cache (a plain attribute, not a registration)."""
        gate = self._modules["gate"]
        own = tuple(p for p in self._parameters.values() if p is not None)
        object.__setattr__(self, "_watched", own + (gate.weight, gate.bias))

    def _scaled(self, gate: torch.Tensor) -> tuple:
        """The tensors this module computes from its gate once per forward pass."""
        return (gate,)

    def _effective(self) -> tuple:
        gate = self._modules["gate"]
        key = (gate.conditioner.u, torch.is_grad_enabled(), *[p._version for p in self._watched])
        cache = self._cache
        if cache is not None and cache[0] == key:
            return cache[1]
        values = self._scaled(gate())
        self._cache = (key, values)
        if torch.is_grad_enabled():
            for value in values:
                if value is not None and value.requires_grad:
                    value.register_hook(self._forget)
        return values

    def _forget(self, grad):
        self._cache = None
        return grad

    def _apply(self, fn, *args, **kwargs):
        self._cache = None  # moving or casting replaces the parameters' data without a new version
        out = super()._apply(fn, *args, **kwargs)
        self._watch()
        return out

    def __getstate__(self) -> dict:
        # cached tensors belong to one graph: never copy or pickle them
        return {**self.__dict__, "_cache": None}


def _rows(param: torch.Tensor | None, gate: torch.Tensor) -> torch.Tensor | None:
    """``param`` with its rows (first dimension) scaled by ``gate`` (eq. 6)."""
    if param is None:
        return None
    return param * (gate[:, None] if param.dim() == 2 else gate)


class GatedLinear(_Gated, nn.Linear):
    """``gate(u) * (W a + b)`` (eq. 8), computed as ``(gate * W) a + gate * b`` (eq. 6) with the
    scaled weights made once per forward pass; ``nn.Linear`` otherwise (same parameter names)."""

    @classmethod
    def wrap(cls, module: nn.Linear, role: str, conditioner: BetaConditioner) -> "GatedLinear":
        return cls.from_module(module, role, conditioner, module.out_features)

    def _scaled(self, gate):
        return _rows(self.weight, gate), _rows(self.bias, gate)

    def effective(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The gated ``(weight, bias)`` this layer computes with at the current beta (for code that
        applies a linear layer's weights itself, e.g. :class:`~pyrosequence.nn.hyper.HyperOutput`)."""
        return self._effective()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._effective()
        return F.linear(x, weight, bias)


class _GatedRNNCell(_Gated):
    """Rows of the stacked input and recurrent weights and biases scaled by the gate (eq. 6),
    run by torch's fused cell. For an LSTM that is ``gate * (W_ih x + b_ih + W_hh h + b_hh)``; for
    a GRU the reset and update pre-activations are scaled and so is the candidate's
    ``W_in x + b_in + r * (W_hn h + b_hn)`` as a whole."""

    def _scaled(self, gate):
        return tuple(_rows(getattr(self, n), gate) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _run(self, step, x, hx):
        batched = x.dim() == 2
        if not batched:
            x = x.unsqueeze(0)
            hx = None if hx is None else (tuple(h.unsqueeze(0) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(0))
        out = step(x, hx, *self._effective())
        if not batched:
            out = tuple(o.squeeze(0) for o in out) if isinstance(out, tuple) else out.squeeze(0)
        return out


class GatedLSTMCell(_GatedRNNCell, nn.LSTMCell):
    """An LSTM cell whose ``4 * hidden`` gate pre-activations are scaled by a beta gate."""

    @classmethod
    def wrap(cls, module: nn.LSTMCell, role: str, conditioner: BetaConditioner) -> "GatedLSTMCell":
        return cls.from_module(module, role, conditioner, 4 * module.hidden_size)

    def forward(self, x: torch.Tensor, hx=None):
        def step(x, hx, *weights):
            if hx is None:
                zeros = x.new_zeros(x.shape[0], self.hidden_size)
                hx = (zeros, zeros)
            return torch.lstm_cell(x, hx, *weights)

        return self._run(step, x, hx)


class GatedGRUCell(_GatedRNNCell, nn.GRUCell):
    """A GRU cell whose reset, update and candidate pre-activations are scaled by a beta gate."""

    @classmethod
    def wrap(cls, module: nn.GRUCell, role: str, conditioner: BetaConditioner) -> "GatedGRUCell":
        return cls.from_module(module, role, conditioner, 3 * module.hidden_size)

    def forward(self, x: torch.Tensor, hx=None):
        def step(x, hx, *weights):
            return torch.gru_cell(x, x.new_zeros(x.shape[0], self.hidden_size) if hx is None else hx, *weights)

        return self._run(step, x, hx)


class GatedLSTM(_Gated, nn.LSTM):
    """A one-layer, one-directional ``nn.LSTM`` with its ``4 * hidden`` gate pre-activations scaled
    by a beta gate: the rows of its weights are scaled once per forward pass and ``nn.LSTM``'s own
    kernel runs with them. Code that applies the weights itself (e.g.
    :func:`pyrosequence.nn.sequence_rnn.lstm_step`) reads ``weight_ih_l0`` etc. and gets the
    scaled ones too; the parameters (``named_parameters``, the state dict) stay the base ones.
    """

    _NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")

    @classmethod
    def wrap(cls, module: nn.LSTM, role: str, conditioner: BetaConditioner) -> "GatedLSTM":
        if module.num_layers != 1 or module.bidirectional or module.proj_size or not module.bias:
            raise ValueError(
                "multi_rate gates only one-layer, one-directional nn.LSTM modules with biases and no projection; "
                f"got {module}"
            )
        return cls.from_module(module, role, conditioner, 4 * module.hidden_size)

    def _scaled(self, gate):
        return tuple(_rows(own_tensor(self, name), gate) for name in self._NAMES)

    weight_ih_l0 = property(lambda self: self._effective()[0])
    weight_hh_l0 = property(lambda self: self._effective()[1])
    bias_ih_l0 = property(lambda self: self._effective()[2])
    bias_hh_l0 = property(lambda self: self._effective()[3])

    def _init_flat_weights(self) -> None:
        self._flat_weights = [own_tensor(self, name) for name in self._flat_weights_names]

    def _update_flat_weights(self) -> None:
        """``forward`` puts the scaled weights in place itself (``nn.LSTM`` would otherwise
        reset them to the base parameters when it sees its weight attributes "change")."""

    def forward(self, inputs, hx=None):
        base = self._flat_weights
        object.__setattr__(self, "_flat_weights", list(self._effective()))
        try:
            return super().forward(inputs, hx)
        finally:
            object.__setattr__(self, "_flat_weights", base)


def _gru(wx: torch.Tensor, uh: torch.Tensor, h: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """One GRU step from input and recurrent pre-activations, with gated pre-activations."""
    wx_r, wx_z, wx_n = wx.chunk(3, dim=-1)
    uh_r, uh_z, uh_n = uh.chunk(3, dim=-1)
    g_r, g_z, g_n = gate.chunk(3, dim=-1)
    r = torch.sigmoid(g_r * (wx_r + uh_r))
    z = torch.sigmoid(g_z * (wx_z + uh_z))
    n = torch.tanh(g_n * (wx_n + r * uh_n))
    return (1 - z) * n + z * h


class GatedHyperCell(_Gated, HyperCell):
    """A :class:`HyperCell` whose gate pre-activations ``d_in * W y + d_h * U h + bias + b`` are
    scaled by a beta gate (the generated ``d_in, d_h, b`` come from their own, gated, networks)."""

    @classmethod
    def wrap(cls, module: HyperCell, role: str, conditioner: BetaConditioner) -> "GatedHyperCell":
        return cls.from_module(module, role, conditioner, module.modulation_dim)

    def forward(self, y, state, d_in, d_h, b):
        (gate,) = self._effective()
        h_prev = state[0] if self.kind == "lstm" else state
        wy = F.linear(y, self.weight_ih) * d_in
        uh = F.linear(h_prev, self.weight_hh) * d_h
        if self.kind == "lstm":
            i, f, g, o = ((wy + uh + self.bias_ih + self.bias_hh + b) * gate).chunk(4, dim=-1)
            c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        return _gru(wy + self.bias_ih + b, uh + self.bias_hh, h_prev, gate)


class GatedHyperLinear(_Gated, HyperLinear):
    """A :class:`HyperLinear` whose output ``scale(c) * W x + bias(c)`` is scaled by a beta gate.

    Its inner ``weight`` layer is covered by this gate; the generator MLP's own layers are gated
    separately like any other. The returned (recorded) ``scale`` and ``bias`` are the generated
    ones, before the beta gate.
    """

    @classmethod
    def wrap(cls, module: HyperLinear, role: str, conditioner: BetaConditioner) -> "GatedHyperLinear":
        return cls.from_module(module, role, conditioner, module.out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor):
        (gate,) = self._effective()
        y, scale, bias = super().forward(x, c)
        return y * gate, scale, bias


#: Plain module type -> (gated type, names of child modules the gate covers, so left plain).
GATED_TYPES: dict[type, tuple[type, tuple[str, ...]]] = {
    nn.Linear: (GatedLinear, ()),
    nn.LSTMCell: (GatedLSTMCell, ()),
    nn.GRUCell: (GatedGRUCell, ()),
    nn.LSTM: (GatedLSTM, ()),
    HyperCell: (GatedHyperCell, ()),
    HyperLinear: (GatedHyperLinear, ("weight",)),
}
