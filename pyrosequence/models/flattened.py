"""A wrapper that reads each step's elements as several shorter steps of an inner model."""

from __future__ import annotations

import torch

from pyrosequence.data.checks import Sequences
from pyrosequence.models.core.base import SequenceModel


class Flattened(SequenceModel):
    r"""``Flattened(inner, x_dim)``: the flat construction of Dai et al. ("Re-examination of the
    Role of Latent Variables in Sequence Modeling", NeurIPS 2019, section 5.2) around any model.

    Each step ``x_t in R^L`` is cut into ``L / U`` groups of ``U = inner.x_dim`` consecutive
    elements, and the sequence ``x_{1,1:U}, x_{1,U+1:2U}, ..., x_{T,L-U+1:L}`` of ``T L / U`` steps
    is modelled by ``inner``::

        p(x_{1:T}) = p_inner(x'_{1:T L/U}),      x'_{(t-1) L/U + j} = x_{t, (j-1)U+1 : jU}

    With ``U = 1`` and an SRNN inside this is SRNN-flat (one latent per element). ``model`` and
    ``guide`` delegate to the inner model (sites ``z_0 ... z_{T L/U - 1}`` and one observation site
    ``x`` with event ``(T L / U, U)``), so every bound of :func:`pyrosequence.inference.evaluate`
    is still one number per *original* sequence and is reported per original step. The particle
    filter runs on the inner model through :meth:`filter_view`.

    Differences from the paper: none in the construction; the per-step pieces of the wrapper are
    not defined (diagnostics that drive pieces step by step, e.g. forecasting, see the inner
    model's steps), and a FIVO training loss is normalised per inner step (a constant factor
    ``U / L``, harmless for Adam). TBPTT windows continue the inner model's state (``start`` is
    scaled by ``L / U``).
    """

    overrides_match_pieces = True  # model/guide are the inner model's, and FIVO filters the inner model

    def __init__(self, inner: SequenceModel, x_dim: int, name: str | None = None) -> None:
        if not isinstance(inner, SequenceModel):
            raise TypeError(f"Flattened wraps a SequenceModel, got {type(inner).__name__}")
        group = inner.x_dim
        if x_dim < 1 or x_dim % group:
            raise ValueError(
                f"Flattened: the step size x_dim = {x_dim} must be a positive multiple of the inner model's "
                f"x_dim = {group} (the group size U)"
            )
        super().__init__(x_dim, inner.z_dim, name=name)
        self.inner = inner
        self.group = group
        self.ratio = x_dim // group

    # the inner model keeps the state a caller continues from (truncated backpropagation)
    @property
    def final_state(self):
        return self.inner.final_state

    @final_state.setter
    def final_state(self, value) -> None:
        if "inner" in self._modules:
            self.inner.final_state = value

    def flatten(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, T, L), (B,) -> (B, T L / U, U), (B,)``: the inner model's view of a batch."""
        flat = x.reshape(x.shape[0], x.shape[1] * self.ratio, self.group)
        return flat, None if lengths is None else lengths * self.ratio

    def initial_state(self, batch_shape: torch.Size, x: torch.Tensor):
        """The inner model's initial state (the state a continued window starts from)."""
        return self.inner.initial_state(batch_shape, x.reshape(x.shape[0], -1, self.group))

    @property
    def mask_inputs(self) -> bool:
        """The inner model's: it owns the networks."""
        return self.inner.mask_inputs if "inner" in self._modules else False

    @mask_inputs.setter
    def mask_inputs(self, value) -> None:
        pass  # set by SequenceModel.__init__ before the inner model exists; the inner model decides

    def network_input(self, seqs: Sequences) -> torch.Tensor:
        x = seqs.x.reshape(seqs.x.shape[0], -1, self.group)
        observed = None if seqs.observed is None else seqs.observed.reshape(x.shape)
        inner = self.inner.network_input(Sequences(x, seqs.lengths * self.ratio, None, observed))
        return inner.reshape(seqs.x.shape[0], seqs.x.shape[1], -1)

    def check_data(self, x: torch.Tensor) -> None:
        self.inner.check_data(x.reshape(x.shape[0], -1, self.group))

    def init_from_data(self, x: torch.Tensor, lengths: torch.Tensor | None = None, center: bool = False) -> None:
        seqs = self.prepare(x, lengths)
        self.inner.init_from_data(*self.flatten(seqs.x_with_nan, seqs.lengths), center=center)

    def filter_view(self, seqs: Sequences, start: int = 0) -> tuple[SequenceModel, Sequences, int]:
        inner_model, inner_seqs, inner_start = self.inner.filter_view(
            self.inner.prepare(*self.flatten(seqs.x_with_nan, seqs.lengths)), start * self.ratio
        )
        return inner_model, inner_seqs, inner_start

    def _inner_batch(self, x, lengths):
        """The flattened batch, the very same tensors for the guide and the model of one ELBO
        evaluation (the inner model reuses the guide's recurrence only for identical inputs)."""
        memo = self.__dict__.get("_memo")
        if memo is not None and memo[0] is x and memo[1] is lengths:
            return memo[2]
        seqs = self.prepare(x, lengths)
        batch = self.flatten(seqs.x_with_nan, seqs.lengths)  # gaps stay NaN for the inner model
        self.__dict__["_memo"] = (x, lengths, batch)
        return batch

    def __getstate__(self) -> dict:
        return {k: v for k, v in super().__getstate__().items() if k != "_memo"}

    def guide(self, x, lengths=None, initial=None, start: int = 0) -> None:
        self.inner.guide(*self._inner_batch(x, lengths), initial=initial, start=start * self.ratio)

    def model(self, x, lengths=None, initial=None, start: int = 0) -> None:
        self.inner.model(*self._inner_batch(x, lengths), initial=initial, start=start * self.ratio)
