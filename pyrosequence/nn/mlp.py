"""Multi-layer perceptrons that broadcast over any number of leading batch dimensions."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class MLP(nn.Sequential):
    """A stack of ``Linear -> activation`` layers.

    ``MLP(in_dim, [h1, h2], out_dim)`` maps ``(..., in_dim) -> (..., out_dim)`` through two hidden
    layers; with ``out_dim=None`` the last hidden layer (after its activation) is the output, which
    is how the papers' feature extractors are built. Leading dimensions (time, particles, batch)
    pass through untouched. ``dropout`` > 0 puts an ``nn.Dropout`` after every hidden activation
    (active in training mode only), as Dai et al. (2019) regularise their feature extractors; it
    sits inside the activation's slot, so the parameter names (and checkpoints) are those of the
    same MLP without dropout.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int | None = None,
        activation: type[nn.Module] = nn.ReLU,
        dropout: float = 0.0,
    ) -> None:
        if in_dim < 1:
            raise ValueError(f"MLP: in_dim must be positive, got {in_dim}")
        if out_dim is None and not hidden_dims:
            raise ValueError("MLP: needs at least one hidden layer or an output dimension")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a rate in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = []
        prev = in_dim
        for width in hidden_dims:
            if width < 1:
                raise ValueError(f"MLP: hidden widths must be positive, got {list(hidden_dims)}")
            layers += [nn.Linear(prev, width), activation() if not dropout else DroppedActivation(activation(), dropout)]
            prev = width
        if out_dim is not None:
            layers.append(nn.Linear(prev, out_dim))
            prev = out_dim
        super().__init__(*layers)
        self.in_dim = in_dim
        self.out_dim = prev


class DroppedActivation(nn.Module):
    """An activation followed by dropout, in one parameter-free slot of an :class:`MLP`."""

    def __init__(self, activation: nn.Module, rate: float) -> None:
        super().__init__()
        self.activation, self.dropout = activation, nn.Dropout(float(rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(x))


def cat_features(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate on the last dimension after broadcasting the leading (batch) dimensions.

    Particle filters and vectorized particles add leading dimensions to some inputs (the latent
    draws) but not to others (the data features); this joins them without copying the data once
    per particle by hand.
    """
    leading = [t.shape[:-1] for t in tensors]
    if all(shape == leading[0] for shape in leading):
        return torch.cat(tensors, dim=-1)
    batch = broadcast_shape(*leading)
    return torch.cat([t.expand(batch + t.shape[-1:]) for t in tensors], dim=-1)


def broadcast_shape(*shapes: torch.Size) -> torch.Size:
    """``torch.broadcast_shapes`` for the few short shapes of a time step, without its overhead.

    (``torch.broadcast_shapes`` goes through the Python reference implementation, which costs
    more than the small matrix products of a step.) While ``torch.compile`` traces, sizes can be
    symbolic (a particle count that changed between calls), and the plain comparisons below
    would wrongly refuse them; ``torch.broadcast_shapes`` reasons about those, and its cost is
    paid once, at tracing.
    """
    if torch.compiler.is_compiling():
        return torch.broadcast_shapes(*shapes)
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for shape in shapes:
        for i, size in enumerate(shape, start=ndim - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    raise ValueError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                out[i] = size
    return torch.Size(out)
