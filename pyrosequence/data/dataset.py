"""A padded set of sequences and its minibatches ``(x, lengths)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from pyrosequence.data.checks import check_covariate_dim, check_covariates, check_sequences


@dataclass(frozen=True)
class SequenceDataset:
    """Sequences padded to a common length.

    Attributes:
        x: ``(num_sequences, max_time, x_dim + covariate_dim)`` float tensor, zero beyond each
            length; NaN marks a missing value (every sequence must have at least one observed
            value); the last ``covariate_dim`` columns are covariates.
        lengths: ``(num_sequences,)`` int64 tensor.
        name: a label for messages and run directories.
        scale: ``(x_dim,)`` positive factors the sequences were divided by when they were
            standardised (``x = (data - mean) / scale``), or ``None`` when ``x`` is in the data's
            own units. A density of ``x`` is one of the data divided by ``prod(scale)`` per
            time step, so a bound moves by ``-sum(log scale)`` per step in the data's units
            (:func:`pyrosequence.inference.evaluate.in_data_units`). Observation columns only.
        covariate_dim: how many of the last columns of ``x`` are covariates: known inputs ``u_t``
            a model conditions on but does not emit (:mod:`pyrosequence.models.core.covariates`;
            never missing). A model trained on the data set is built with this ``covariate_dim``
            and takes the batches of :meth:`batches` whole.
    """

    x: torch.Tensor
    lengths: torch.Tensor
    name: str = ""
    scale: torch.Tensor | None = None
    covariate_dim: int = 0

    def __post_init__(self) -> None:
        label = f"dataset {self.name!r}" if self.name else "dataset"
        check_covariate_dim(self.covariate_dim)
        if self.covariate_dim:
            if self.x.dim() != 3 or self.x.shape[-1] <= self.covariate_dim:
                raise ValueError(f"{label}: covariate_dim {self.covariate_dim} leaves no observation column in x of "
                                 f"shape {tuple(self.x.shape)}")
            seqs = check_sequences(self.observations, self.lengths, name=label)
            check_covariates(self.covariates[:, : seqs.num_steps], seqs.mask, label, self.x_dim)
        else:
            check_sequences(self.x, self.lengths, name=label)
        if self.scale is not None:
            scale = torch.as_tensor(self.scale, dtype=self.x.dtype, device=self.x.device)
            if scale.shape != (self.x_dim,):
                raise ValueError(f"{label}: scale must have one factor per observation column, shape ({self.x_dim},); "
                                 f"got {tuple(scale.shape)}")
            if not bool(torch.isfinite(scale).all() and (scale > 0).all()):
                raise ValueError(f"{label}: scale factors must be finite and positive, got {scale.tolist()}")
            object.__setattr__(self, "scale", scale)

    @classmethod
    def from_sequences(cls, sequences: Sequence, name: str = "", dtype=torch.float32,
                       scale=None, covariate_dim: int = 0) -> "SequenceDataset":
        """Pad a list of ``(T_i, x_dim + covariate_dim)`` arrays or tensors into one dataset
        (``scale``, ``covariate_dim``: see the class docstring)."""
        if len(sequences) == 0:
            raise ValueError(f"dataset {name!r} has no sequences")
        tensors = [torch.as_tensor(np.asarray(s), dtype=dtype) for s in sequences]
        dims = {tuple(t.shape[1:]) for t in tensors}
        if any(t.dim() != 2 for t in tensors) or len(dims) != 1:
            raise ValueError(f"dataset {name!r}: every sequence must be (time, x_dim) with one x_dim; got {sorted(dims)}")
        lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
        x = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
        return cls(x, lengths, name, None if scale is None else torch.as_tensor(np.asarray(scale), dtype=dtype),
                   covariate_dim)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def x_dim(self) -> int:
        """The number of observation columns (what a model emits), covariates not counted."""
        return self.x.shape[-1] - self.covariate_dim

    @property
    def observations(self) -> torch.Tensor:
        """``x`` without the covariate columns: ``(num_sequences, max_time, x_dim)``."""
        return self.x[..., : self.x_dim]

    @property
    def covariates(self) -> torch.Tensor:
        """The covariate columns of ``x``: ``(num_sequences, max_time, covariate_dim)``."""
        return self.x[..., self.x_dim :]

    @property
    def total_steps(self) -> int:
        return int(self.lengths.sum())

    def subset(self, index) -> "SequenceDataset":
        """The sequences at ``index`` (integer positions or a boolean mask over sequences)."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            if index.shape != (len(self),):
                raise ValueError(f"a boolean subset mask must have shape ({len(self)},), got {tuple(index.shape)}")
            index = index.nonzero().squeeze(-1)
        index = index.long().reshape(-1)
        if index.numel() == 0:
            raise ValueError("cannot take an empty subset of a dataset")
        lengths = self.lengths[index]
        return SequenceDataset(self.x[index, : int(lengths.max())], lengths, self.name, self.scale, self.covariate_dim)

    def to(self, device) -> "SequenceDataset":
        scale = None if self.scale is None else self.scale.to(device)
        return SequenceDataset(self.x.to(device), self.lengths.to(device), self.name, scale, self.covariate_dim)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        bucket_pool: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, lengths)`` minibatches, each trimmed to its longest sequence.

        With ``shuffle=True`` the order is a permutation drawn from ``generator`` (pass one to
        make the order reproducible and checkpointable). ``bucket_pool=P`` (with ``shuffle``)
        makes batches of similar lengths, sorting pools of P batches
        (:mod:`pyrosequence.data.buckets`: less padding, same per-sequence estimator).
        """
        for index in self.index_batches(batch_size, shuffle, generator, bucket_pool):
            index = index.to(self.x.device)
            lengths = self.lengths[index]
            yield self.x[index, : int(lengths.max())], lengths

    def index_batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        bucket_pool: int | None = None,
    ) -> list[torch.Tensor]:
        """The (CPU) index tensors of the batches :meth:`batches` yields, in order: the same
        draws from ``generator``, so every process of a data-parallel run, seeded alike, agrees
        on them (:mod:`pyrosequence.training.distributed` shards each one)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        n = len(self)
        if bucket_pool is not None and shuffle:
            from pyrosequence.data.buckets import bucketed_order

            return bucketed_order(self.lengths, batch_size, bucket_pool, generator)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        return list(order.split(batch_size))

    def mean(self) -> torch.Tensor:
        """Per-dimension mean over all valid steps (of the observed values), ``(x_dim,)``
        (observation columns)."""
        mask = torch.arange(self.x.shape[1], device=self.x.device) < self.lengths[:, None].to(self.x.device)
        return self.observations[mask].nanmean(0)

    @property
    def has_missing(self) -> bool:
        """Whether some observation within the lengths is missing (NaN; covariates never are)."""
        mask = torch.arange(self.x.shape[1], device=self.x.device) < self.lengths[:, None].to(self.x.device)
        return bool(torch.isnan(self.observations[mask]).any())
