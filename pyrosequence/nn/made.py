"""A causally masked MLP with one network per element (MADE without parameter sharing).

Dai et al. ("Re-examination of the Role of Latent Variables in Sequence Modeling", NeurIPS 2019,
section 5.1) use, for Perm-TIMIT, a causally masked MLP *without parameter sharing*::

    g_{t,i} = MLP_i(x_{t,<i}, h_t),        i = 1 .. L

Germain et al. (MADE, ICML 2015) obtain the autoregressive property by masking the weights of one
shared MLP with degree masks. Here every element owns its own hidden units: the first layer's
weight has shape ``(L, hidden, L)`` and is multiplied by a fixed mask whose row ``i`` keeps only the
inputs that precede element ``i`` in the ordering; deeper layers act element by element (a batched
matrix product, no mixing across elements), so output ``i`` depends on ``x_{t,j}`` only for
elements ``j`` ranked before ``i``. The ordering is the natural one or a random permutation
(``order="random"`` with a ``seed``); it is stored as a buffer so checkpoints keep it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def make_order(dim: int, order: str | list[int] | torch.Tensor = "natural", seed: int = 0) -> torch.Tensor:
    """The autoregressive order as a permutation of ``range(dim)``: ``order[k]`` is the element
    generated k-th. ``"natural"`` is ``0..dim-1``; ``"random"`` is a seeded random permutation; a
    list or tensor is checked to be a permutation."""
    if isinstance(order, str):
        if order == "natural":
            return torch.arange(dim)
        if order == "random":
            return torch.randperm(dim, generator=torch.Generator().manual_seed(int(seed)))
        raise ValueError(f"unknown order {order!r}; choose 'natural', 'random' or give a permutation")
    perm = torch.as_tensor(order, dtype=torch.long)
    if perm.shape != (dim,) or not torch.equal(perm.sort().values, torch.arange(dim)):
        raise ValueError(f"order must be a permutation of 0..{dim - 1}, got {perm.tolist()}")
    return perm


class MaskedMLP(nn.Module):
    r"""``(x, h) -> g`` with ``g[..., i, :] = MLP_i(x[..., order-predecessors of i], h)``.

    Args:
        dim: ``L``, the number of elements of one step.
        cond_dim: size of the conditioning features ``h_t`` (0 for none).
        hidden: hidden units of each element's MLP.
        out_dim: outputs per element (e.g. the element distribution's parameter count).
        layers: hidden layers of each element's MLP (at least 1).
        order: ``"natural"``, ``"random"`` or a permutation (see :func:`make_order`).
        seed: seed of the random order.

    Shapes: ``x`` is ``(..., L)`` and ``h`` is ``(..., cond_dim)`` (leading dims broadcast);
    the output is ``(..., L, out_dim)``. Parameters grow as ``L * hidden * (L + cond_dim)``: this
    is the price of no sharing, which the paper accepts for Perm-TIMIT.
    """

    def __init__(
        self, dim: int, cond_dim: int, hidden: int, out_dim: int, layers: int = 1,
        order: str | list[int] | torch.Tensor = "natural", seed: int = 0,
    ) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or out_dim < 1 or layers < 1 or cond_dim < 0:
            raise ValueError(
                f"MaskedMLP needs positive dim, hidden, out_dim, layers and cond_dim >= 0; got dim={dim}, "
                f"cond_dim={cond_dim}, hidden={hidden}, out_dim={out_dim}, layers={layers}"
            )
        self.dim, self.cond_dim, self.hidden, self.out_dim = dim, cond_dim, hidden, out_dim
        perm = make_order(dim, order, seed)
        rank = torch.empty_like(perm)
        rank[perm] = torch.arange(dim)
        self.register_buffer("order", perm)
        # mask[i, j] = 1 when element j is generated before element i
        self.register_buffer("mask", (rank[None, :] < rank[:, None]).to(torch.get_default_dtype()))
        self.w_in = nn.Parameter(torch.empty(dim, hidden, dim))
        self.w_cond = nn.Parameter(torch.empty(dim, hidden, cond_dim)) if cond_dim else None
        self.b_in = nn.Parameter(torch.zeros(dim, hidden))
        self.w_hidden = nn.ParameterList(nn.Parameter(torch.empty(dim, hidden, hidden)) for _ in range(layers - 1))
        self.b_hidden = nn.ParameterList(nn.Parameter(torch.zeros(dim, hidden)) for _ in range(layers - 1))
        self.w_out = nn.Parameter(torch.empty(dim, out_dim, hidden))
        self.b_out = nn.Parameter(torch.zeros(dim, out_dim))
        fan_in = max(1, dim - 1) + cond_dim
        for w, fan in [(self.w_in, fan_in), (self.w_cond, fan_in), (self.w_out, hidden)] + [
            (w, hidden) for w in self.w_hidden
        ]:
            if w is not None:
                nn.init.uniform_(w, -1 / math.sqrt(fan), 1 / math.sqrt(fan))

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"MaskedMLP expects x with last dimension {self.dim}, got shape {tuple(x.shape)}")
        a = torch.einsum("...j,ikj->...ik", x, self.w_in * self.mask[:, None, :]) + self.b_in
        if self.w_cond is not None:
            if h is None:
                raise ValueError("MaskedMLP was built with conditioning features; pass h")
            a = a + torch.einsum("...c,ikc->...ik", h, self.w_cond)
        a = torch.relu(a)
        for w, b in zip(self.w_hidden, self.b_hidden):
            a = torch.relu(torch.einsum("...ij,ikj->...ik", a, w) + b)
        return torch.einsum("...ij,ikj->...ik", a, self.w_out) + self.b_out
