"""Validation of sequence batches: every public entry point calls :func:`check_sequences` first."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sequences:
    """A validated, padded batch.

    Attributes:
        x: ``(batch, time, x_dim)`` floating tensor, truncated to the longest sequence, with every
            padded entry (``t >= lengths[b]``) set to zero so padding can never reach a loss.
        lengths: ``(batch,)`` int64 tensor on ``x``'s device.
        mask: ``(batch, time)`` bool tensor, ``True`` where ``t < lengths[b]``; ``None`` when every
            sequence has the full length (no masking work is needed then).
    """

    x: torch.Tensor
    lengths: torch.Tensor
    mask: torch.Tensor | None

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    @property
    def num_steps(self) -> int:
        return self.x.shape[1]

    def step_mask(self, t: int) -> torch.Tensor | None:
        return None if self.mask is None else self.mask[:, t]


def check_lengths(lengths, batch_size: int, num_steps: int) -> torch.Tensor:
    """Return ``lengths`` as an int64 tensor after checking its shape, type and range."""
    if not torch.is_tensor(lengths):
        raise TypeError(f"lengths must be a torch tensor of shape ({batch_size},), got {type(lengths).__name__}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if lengths.shape != (batch_size,):
        raise ValueError(
            f"lengths must have shape ({batch_size},) to match x's batch size, got {tuple(lengths.shape)}"
        )
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > num_steps:
        bad = int(((lengths < 1) | (lengths > num_steps)).nonzero()[0, 0])
        raise ValueError(
            f"lengths must lie in [1, {num_steps}] (x has {num_steps} time steps); "
            f"sequence {bad} has length {int(lengths[bad])}"
        )
    return lengths.long()


def check_sequences(x, lengths=None, x_dim: int | None = None, name: str = "x") -> Sequences:
    """Check a padded batch and return it as :class:`Sequences`.

    Raises ``TypeError``/``ValueError`` naming the problem: not a tensor, wrong rank, wrong
    ``x_dim``, non-floating dtype, empty batch, bad ``lengths``, or NaN/inf inside the lengths
    (NaN in padding is allowed: padding is zeroed and ignored).
    """
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch tensor of shape (batch, time, x_dim), got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (batch, time, x_dim), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    batch_size, num_steps, dim = x.shape
    if batch_size == 0 or num_steps == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if x_dim is not None and dim != x_dim:
        raise ValueError(f"{name} has x_dim {dim} but the model expects x_dim {x_dim} (shape {tuple(x.shape)})")
    if lengths is None:
        mask = None
    else:
        lengths = check_lengths(lengths.to(x.device) if torch.is_tensor(lengths) else lengths, batch_size, num_steps)
        longest = int(lengths.max())
        x = x[:, :longest]
        num_steps = longest
        mask = torch.arange(num_steps, device=x.device) < lengths[:, None]
        if bool(mask.all()):
            mask = None
        else:
            x = x.masked_fill(~mask[..., None], 0.0)
    # A NaN or inf entry makes the sum NaN or inf, so a finite sum proves every entry finite (one
    # cheap reduction instead of a full boolean copy on large data sets); a non-finite sum, which
    # an overflow can also cause, gets the entry-wise check.
    if not bool(torch.isfinite(x.sum())):
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            b, t, d = (int(i) for i in (~finite).nonzero()[0])
            raise ValueError(f"{name} contains NaN or inf at sequence {b}, step {t}, dimension {d}")
    if lengths is None:
        lengths = torch.full((batch_size,), num_steps, dtype=torch.long, device=x.device)
    return Sequences(x=x, lengths=lengths, mask=mask)
