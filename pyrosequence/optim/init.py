"""Initialisation schemes applied to a built model, whatever its architecture.

==========  ====================================================================================
``default`` the weights the modules were constructed with (PyTorch's defaults)
``xavier``  Xavier/Glorot-uniform weight matrices (Glorot & Bengio 2010) and zero biases
``fivo``    the FIVO reference code's (tensorflow/models, research/fivo): ``xavier``, plus a
            forget-gate bias of 1 on every LSTM (TensorFlow's ``LSTMCell`` adds
            ``forget_bias=1`` to a zero-initialised bias; starting the trainable bias at 1 is
            the same function at the start of training)
==========  ====================================================================================

What counts as a weight matrix: the ``weight`` of every ``nn.Linear`` (gated and hyper layers
included; the per-dimension networks of :class:`~pyrosequence.nn.made.MaskedMLP` are not
``nn.Linear`` and keep their construction) and the input and recurrent matrices of every recurrent cell or layer (``weight_ih*``
with ``weight_hh*``: PyTorch's LSTM/GRU/RNN and the library's hyper cells). A recurrent layer's
two matrices are drawn as the one ``[input + hidden, gates * hidden]`` kernel TensorFlow keeps,
so the Xavier bound is ``sqrt(6 / (input + hidden + gates * hidden))`` for both. Every parameter
named ``bias*`` of those layers is zeroed. Other parameters (learned initial states, scale
parameters, the multi-rate gates' own ``weight`` and ``bias``, output biases of heads that are not
``nn.Linear``) keep their constructed values. Buffers are never touched.

Layers a model starts deliberately say so, and a scheme respects it: a layer with
``keeps_initialisation = True`` is left as built (the DMM's transition mean, started at the
identity as in the paper and Pyro's example), and a layer with ``initial_gain = g`` gets its
Xavier draw times ``g`` (the hyper networks' output layers, started small, 0.1, so that a hyper
layer starts close to a plain one).

Order in training: the scheme is applied right after the model is built and *before*
``init_from_data``, so a Bernoulli output bias started at the logit of the data's rate (as the
FIVO code also does) wins over the zero bias.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INITS = ("default", "xavier", "fivo")


def check_init(name: str) -> str:
    if name not in INITS:
        raise ValueError(f"unknown initialisation {name!r}; choose one of: {', '.join(INITS)}")
    return name


@torch.no_grad()
def initialize(model: nn.Module, scheme: str, generator: torch.Generator | None = None) -> nn.Module:
    """Apply initialisation ``scheme`` (see the module docstring) to ``model`` in place; returns it."""
    check_init(scheme)
    if scheme == "default":
        return model
    for module in model.modules():
        if getattr(module, "keeps_initialisation", False):
            continue
        own = dict(module.named_parameters(recurse=False))
        recurrent = sorted(name for name in own if name.startswith("weight_ih"))
        for name_ih in recurrent:
            name_hh = "weight_hh" + name_ih[len("weight_ih"):]
            if name_hh in own:
                _xavier_kernel(own[name_ih], own[name_hh], generator)
        layer = isinstance(module, nn.Linear) or bool(recurrent)
        for name, param in own.items():
            if name.startswith("bias") and layer:
                param.zero_()
            elif name == "weight" and isinstance(module, nn.Linear):
                gain = getattr(module, "initial_gain", 1.0)
                _uniform(param, gain * math.sqrt(6.0 / (param.shape[0] + param.shape[1])), generator)
        if scheme == "fivo":
            for name_ih in recurrent:
                _forget_bias(module, name_ih, own)
    return model


def _uniform(param: torch.Tensor, bound: float, generator) -> None:
    param.copy_(torch.empty_like(param).uniform_(-bound, bound, generator=generator))


def _xavier_kernel(w_ih: torch.Tensor, w_hh: torch.Tensor, generator) -> None:
    """Both matrices as one Xavier-uniform kernel ``[in + hidden, gates * hidden]``."""
    fan_in = w_ih.shape[1] + w_hh.shape[1]
    fan_out = w_ih.shape[0]
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    _uniform(w_ih, bound, generator)
    _uniform(w_hh, bound, generator)


def _forget_bias(module: nn.Module, name_ih: str, own: dict) -> None:
    """Forget-gate bias 1 on an LSTM (4 gates: input, forget, cell, output in PyTorch's order):
    on its first bias vector; a second one (PyTorch's ``bias_hh``) stays zero."""
    w_hh = own["weight_hh" + name_ih[len("weight_ih"):]]
    hidden = w_hh.shape[1]
    if w_hh.shape[0] != 4 * hidden:
        return  # a GRU or plain RNN: no forget gate
    suffix = name_ih[len("weight_ih"):]
    bias = own.get("bias_ih" + suffix)
    if bias is None:
        bias = own.get("bias_hh" + suffix)
    if bias is not None:
        bias[hidden : 2 * hidden] = 1.0
