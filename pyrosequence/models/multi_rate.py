r"""Turn any :class:`SequenceModel` into its Multi-Rate VAE in place (Bae et al., ICLR 2023).

``multi_rate(model, beta_range=(0.01, 10))`` replaces, module by module, every layer type listed
in :data:`pyrosequence.nn.beta_gate.GATED_TYPES` (``nn.Linear``, ``nn.LSTMCell``, ``nn.GRUCell``,
one-layer one-directional ``nn.LSTM``, ``HyperCell``, ``HyperLinear``) by its beta-gated version,
keeping the weights, and attaches a :class:`~pyrosequence.nn.beta_gate.BetaConditioner` as
``model.beta_conditioner``. The model's class, its per-step pieces and everything built on them
(the Pyro model and guide, the particle filter, the bounds) are unchanged; only the layers now
read the KL weight set with :func:`set_beta` (``model.beta_conditioner.set_beta``). The response
hypernetwork is eq. 6-8 of the paper applied to every layer, as section 3.1 prescribes for deep
VAEs.

Encoder or decoder? A layer belongs to the encoder (the paper's phi; sigmoid gate) when the model
uses it only inside :meth:`~SequenceModel.proposal` and :meth:`~SequenceModel.proposal_context`
(or directly in an overridden ``guide``); every other layer (prior, emission, recurrence, feature
extractors shared with the model) belongs to the generative model (theta; ``sqrt(relu(1 - exp))``
gate). This is found by running the pieces step by step, the guide and the model once on a small
batch and recording which piece calls each module. The roles are in ``model.gate_roles`` (module
name -> role).

A module with parameters of a type not in ``GATED_TYPES`` (e.g. a model holding raw
``nn.Parameter`` matrices such as the LGSSM, the autoregressive output heads with their free bias
and position parameters, a multi-layer ``nn.LSTM``, a convolution) raises ``ValueError``;
with ``allow_ungated=True`` it is left as it is and listed in ``model.ungated`` with the reason,
as are gateable layers that the pieces never called on the trial batch. An ``nn.LSTM`` counts as
called when its weights are read, since models also apply it step by step through its weights
(:func:`pyrosequence.nn.sequence_rnn.lstm_step`).

The KL weight is one scalar per call, i.e. one beta per batch (per update in training). One beta
per sequence would let a batch cover the range, but the recurrent cells flatten their leading
dimensions and the emission is evaluated for all steps and particles at once, so a per-sequence
gate would have to follow every reshape; per batch is what the paper does (Alg. 1: one beta per
iteration).
"""

from __future__ import annotations

import torch
from torch import nn

import pyro.poutine as poutine

from pyrosequence.models.core.base import SequenceModel, context_steps
from pyrosequence.models.core.capabilities import is_multi_rate  # noqa: F401 - part of this module's interface too
from pyrosequence.nn.cells import own_tensor
from pyrosequence.nn.beta_gate import (
    DECODER,
    DEFAULT_BETA_RANGE,
    ENCODER,
    GATED_TYPES,
    IDENTITY_BIAS,
    BetaConditioner,
    BetaGate,
)

#: The per-step pieces of a SequenceModel whose calls are recorded to assign roles.
PIECES = ("context", "proposal_context", "initial_state", "transition", "latent_features", "emission", "update", "proposal")
#: Pieces that belong to the guide (encoder) alone.
ENCODER_PIECES = frozenset({"proposal", "proposal_context", "guide"})


def _conditioner(model) -> BetaConditioner:
    if not is_multi_rate(model):
        raise ValueError(f"{type(model).__name__} is not a multi-rate model; build one with multi_rate(model)")
    return model.beta_conditioner


def set_beta(model: SequenceModel, beta: float) -> None:
    """Set the KL weight the gates of a multi-rate ``model`` condition on."""
    _conditioner(model).set_beta(beta)


def get_beta(model: SequenceModel) -> float:
    """The KL weight the gates of a multi-rate ``model`` condition on now."""
    return _conditioner(model).beta


def beta_range(model: SequenceModel) -> tuple[float, float]:
    """The range ``(a, b)`` a multi-rate ``model`` was trained over (its gates' support)."""
    a, b = _conditioner(model).beta_range.tolist()
    return float(a), float(b)


def _drive_pieces(model: SequenceModel, example: torch.Tensor) -> None:
    """Run the per-step pieces over ``example`` the way the particle filter does (independent of
    any overridden ``model``/``guide``)."""
    seqs = model.prepare(example, None)
    inputs = model.network_input(seqs)
    ctx = model.context(inputs)
    ctx_steps = context_steps(ctx, seqs.num_steps)
    q_steps = context_steps(model.proposal_context(inputs, ctx, seqs.lengths), seqs.num_steps)
    state = model.initial_state(torch.Size([seqs.batch_size]), inputs)
    for t in range(seqs.num_steps):
        model.transition(state, t)
        z = model.proposal(state, t, q_steps[t]).sample()
        features = model.latent_features(z)
        model.emission(state, features)
        state = model.update(state, features, ctx_steps[t], t)


def _recording_lstm(on_read):
    """An ``nn.LSTM`` subclass whose weight attributes call ``on_read()`` and return the parameter."""

    def weight(name):
        def read(self):
            on_read()
            return own_tensor(self, name)

        return property(read)

    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    return type("_RecordingLSTM", (nn.LSTM,), {name: weight(name) for name in names})


def _trace_pieces(model: SequenceModel, example: torch.Tensor) -> dict[nn.Module, set[str]]:
    """Module -> the pieces that called it, while the per-step pieces, the guide and the model
    run on ``example`` (a module called by ``model``/``guide`` outside any piece is attributed
    to ``"model"``/``"guide"``)."""
    stack: list[str] = []
    used: dict[nn.Module, set[str]] = {}

    def wrap(name, method):
        def traced(*args, **kwargs):
            stack.append(name)
            try:
                return method(*args, **kwargs)
            finally:
                stack.pop()

        return traced

    def record(module, inputs):
        if stack:
            used.setdefault(module, set()).add(stack[-1])

    for name in PIECES + ("model", "guide"):
        object.__setattr__(model, name, wrap(name, getattr(model, name)))
    handles = [m.register_forward_pre_hook(record) for m in model.modules()]
    # an nn.LSTM may also be applied step by step through its weights (sequence_rnn.lstm_step):
    # record reads of its weights too, through a subclass with recording properties
    lstms = {m: type(m) for m in model.modules() if type(m) is nn.LSTM}
    for module in lstms:
        module.__class__ = _recording_lstm(lambda m=module: record(m, ()))
    try:
        with torch.no_grad(), poutine.block():
            try:
                _drive_pieces(model, example)
            except NotImplementedError:  # a model written as whole-sequence model/guide only
                pass
            model.guide(example)
            model.model(example)
    finally:
        for module, cls in lstms.items():
            module.__class__ = cls
        for handle in handles:
            handle.remove()
        for name in PIECES + ("model", "guide"):
            model.__dict__.pop(name, None)
        model._recurrence = None
        model.final_state = None
    return used


def multi_rate(
    model: SequenceModel,
    beta_range=DEFAULT_BETA_RANGE,
    example: torch.Tensor | None = None,
    allow_ungated: bool = False,
) -> SequenceModel:
    """Make ``model`` a multi-rate VAE in place (see the module docstring) and return it.

    Args:
        model: a :class:`SequenceModel` with latent variables.
        beta_range: ``(a, b)``, the range beta is drawn from in training; it standardises the
            gates' input ``log beta`` (section 3.4).
        example: a ``(batch, time, x_dim)`` batch valid for the model (covariates last, when it
            has them), used once to find which piece uses which layer (default: zeros of shape
            ``(2, 3, x_dim + covariate_dim)``).
        allow_ungated: leave parameterised modules of unknown types ungated (listed in
            ``model.ungated``) instead of raising.
    """
    if not isinstance(model, SequenceModel):
        raise TypeError(f"multi_rate needs a pyrosequence SequenceModel, got {type(model).__name__}")
    if not model.z_dim:
        raise ValueError(
            f"{type(model).__name__} has no latent variables: its rate is 0 at every beta, so a multi-rate "
            "version is meaningless"
        )
    if is_multi_rate(model):
        raise ValueError(f"{type(model).__name__} is already a multi-rate model")
    conditioner = BetaConditioner(beta_range)
    if example is None:
        example = model.input_offset.new_zeros(2, 3, model.x_dim + getattr(model, "covariate_dim", 0))
    used = _trace_pieces(model, example)

    plan, ungated, unknown, covered = [], [], [], set()
    for name, module in model.named_modules():
        if module in covered:
            continue
        entry = GATED_TYPES.get(type(module))
        if entry is not None:
            gated_type, covers = entry
            covered.update(getattr(module, child) for child in covers)
            pieces = used.get(module, set())
            if not pieces:
                ungated.append((name, type(module).__name__, "never called by the model's pieces on a trial batch"))
                continue
            role = ENCODER if pieces <= ENCODER_PIECES else DECODER
            plan.append((name, module, gated_type, role))
        elif isinstance(module, (BetaGate,) + tuple(gated for gated, _ in GATED_TYPES.values())):
            raise ValueError(f"{name} is already gated")
        elif any(True for _ in module.parameters(recurse=False)):
            params = ", ".join(n for n, _ in module.named_parameters(recurse=False))
            unknown.append((name or "<model>", type(module).__name__, f"parameters {params} of an ungateable type"))
    if unknown and not allow_ungated:
        listing = "; ".join(f"{n} ({t}: {why})" for n, t, why in unknown)
        raise ValueError(
            f"multi_rate cannot gate {listing}. Gateable types: "
            f"{', '.join(t.__name__ for t in GATED_TYPES)}; pass allow_ungated=True to leave them ungated"
        )
    if not plan:
        raise ValueError(f"{type(model).__name__} has no layer multi_rate can gate")
    for name, module, gated_type, role in plan:
        _replace(model, name, gated_type.wrap(module, role, conditioner))
    model.add_module("beta_conditioner", conditioner)
    model.gate_roles = {name: role for name, _, _, role in plan}
    model.ungated = ungated + unknown
    return model


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def gates(model: nn.Module) -> list[tuple[str, BetaGate]]:
    """The beta gates of a multi-rate model, by name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BetaGate)]


def open_gates(model: nn.Module) -> None:
    """Set every gate to exactly 1 at every beta (``w = 0`` and a saturating offset): the
    multi-rate model then computes what the base model computes (up to float rounding in the
    hand-written recurrent cells)."""
    with torch.no_grad():
        for _, gate in gates(model):
            gate.weight.zero_()
            gate.bias.fill_(IDENTITY_BIAS[gate.role])


def gate_parameter_count(model: nn.Module) -> int:
    """Parameters that belong to the gates (the multi-rate overhead)."""
    return sum(p.numel() for _, g in gates(model) for p in g.parameters())
