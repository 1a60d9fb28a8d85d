"""Validation of sequence batches: every public entry point calls :func:`check_sequences` first."""

from __future__ import annotations

import functools
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
        observed: ``(batch, time, x_dim)`` bool tensor, ``True`` where the element was observed
            (NaN in the data means "not observed"; missing elements of ``x`` are zero-filled);
            ``None`` when every element within the lengths was observed (the path of data
            without gaps is then exactly the one without this field). Padding counts as observed
            (the step mask already removes it).
        covariates: ``(batch, time, U)`` the known inputs ``u_t`` a model conditions on but does
            not emit (:mod:`pyrosequence.models.core.covariates`; zero in padding, never
            missing), or ``None`` for a model without covariates.
    """

    x: torch.Tensor
    lengths: torch.Tensor
    mask: torch.Tensor | None
    observed: torch.Tensor | None = None
    covariates: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    @property
    def num_steps(self) -> int:
        return self.x.shape[1]

    def step_mask(self, t: int) -> torch.Tensor | None:
        return None if self.mask is None else self.mask[:, t]

    @functools.cached_property
    def x_with_nan(self) -> torch.Tensor:
        """``x`` with NaN at every missing element: what to hand back to an entry point that
        validates its input again (``model.guide(seqs.x_with_nan, seqs.lengths)``), so the gaps
        survive the round trip. ``x`` itself when nothing is missing; computed once."""
        return self.x if self.observed is None else self.x.masked_fill(~self.observed, float("nan"))

    @property
    def as_input(self) -> torch.Tensor:
        """What a model's entry points take for this batch: :attr:`x_with_nan` with the
        covariates (if any) as its last columns, so that handing it back
        (``model.guide(seqs.as_input, seqs.lengths)``) validates to this very batch."""
        return self.x_with_nan if self.covariates is None else torch.cat([self.x_with_nan, self.covariates], -1)

    def rows(self, index) -> "Sequences":
        """The batch restricted to the sequences ``index`` (a slice, index tensor or bool mask)."""
        return Sequences(
            self.x[index], self.lengths[index], None if self.mask is None else self.mask[index],
            None if self.observed is None else self.observed[index],
            None if self.covariates is None else self.covariates[index],
        )

    def num_observed(self) -> torch.Tensor:
        """``(batch,)`` the number of observed elements of each sequence within its length."""
        dim = self.x.shape[-1]
        if self.observed is None:
            return self.lengths * dim
        valid = self.observed if self.mask is None else self.observed & self.mask[..., None]
        return valid.sum((1, 2))


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


def check_sequences(x, lengths=None, x_dim: int | None = None, name: str = "x", missing: bool = True) -> Sequences:
    """Check a padded batch and return it as :class:`Sequences`.

    Raises ``TypeError``/``ValueError`` naming the problem: not a tensor, wrong rank, wrong
    ``x_dim``, non-floating dtype, empty batch, bad ``lengths``, inf inside the lengths, or a
    sequence with no observed element at all (NaN in padding is allowed: padding is zeroed and
    ignored).

    NaN inside the lengths means "not observed" (``missing=True``, the default): the element is
    zero-filled in ``x`` and recorded in :attr:`Sequences.observed`. ``missing=False`` refuses
    NaN as before (for a consumer that cannot take gaps).
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
    observed = None
    if not bool(torch.isfinite(x.sum())):
        infinite = torch.isinf(x)
        if bool(infinite.any()):
            b, t, d = (int(i) for i in infinite.nonzero()[0])
            raise ValueError(f"{name} contains inf at sequence {b}, step {t}, dimension {d}")
        missing_at = torch.isnan(x)
        if bool(missing_at.any()):
            if not missing:
                b, t, d = (int(i) for i in missing_at.nonzero()[0])
                raise ValueError(f"{name} contains NaN at sequence {b}, step {t}, dimension {d} "
                                 "(missing values are not accepted here)")
            observed = ~missing_at
            within = observed if mask is None else observed & mask[..., None]
            empty = ~within.flatten(1).any(1)
            if bool(empty.any()):
                b = int(empty.nonzero()[0, 0])
                raise ValueError(f"{name}: sequence {b} has no observed value (every element within its "
                                 "length is NaN); remove it from the batch")
            x = x.masked_fill(missing_at, 0.0)
    if lengths is None:
        lengths = torch.full((batch_size,), num_steps, dtype=torch.long, device=x.device)
    return Sequences(x=x, lengths=lengths, mask=mask, observed=observed)


def check_covariate_dim(covariate_dim) -> int:
    """``covariate_dim`` as an int, refusing anything but a non-negative integer."""
    if isinstance(covariate_dim, bool) or not isinstance(covariate_dim, int) or covariate_dim < 0:
        raise ValueError(f"covariate_dim must be a non-negative integer, got {covariate_dim!r}")
    return covariate_dim


def check_covariates(u: torch.Tensor, mask: torch.Tensor | None, name: str = "x", first_column: int = 0) -> None:
    """Refuse NaN or inf in the covariates ``u`` ``(batch, time, U)`` within the sequences
    (``mask`` ``(batch, time)``, ``None``: everywhere), naming the sequence, step and column
    (counted in ``x``: the covariates start at ``first_column``)."""
    bad = ~torch.isfinite(u)
    if mask is not None:
        bad = bad & mask[..., None]
    if bool(bad.any()):
        b, t, d = (int(i) for i in bad.nonzero()[0])
        what = "NaN" if bool(torch.isnan(u[b, t, d])) else "inf"
        raise ValueError(
            f"{name}: covariate column {first_column + d} is {what} at sequence {b}, step {t}; covariates are "
            "known inputs and may not be missing (fill the value, or shorten the sequence)"
        )
