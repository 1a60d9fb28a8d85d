"""FIVO: the filtering variational objective as a ``pyro.infer.ELBO``."""

from __future__ import annotations

import math
from typing import Callable

import torch

import pyro
from pyro.infer import ELBO

from pyrosequence.inference.engine import CompileOptions, compile_options
from pyrosequence.inference.particle_filter import FilterResult, check_filter_options, particle_filter
from pyrosequence.inference.resamplers import Resampler, get_resampler
from pyrosequence.inference.scaling import unwrap_scaled
from pyrosequence.models.core.base import SequenceModel
from pyrosequence.models.core.capabilities import has_pieces, is_whole_program, pieces_error


def sequence_model_of(model: Callable, guide: Callable) -> tuple[SequenceModel, float | torch.Tensor]:
    """The :class:`SequenceModel` whose ``model``/``guide`` methods these are, and their latent scale.

    FIVO runs the model's per-step pieces itself, so it accepts exactly ``m.model`` and
    ``m.guide`` of one model (optionally wrapped by ``scale_latents`` with the same scale).
    """
    inner_model, model_scale = unwrap_scaled(model)
    inner_guide, guide_scale = unwrap_scaled(guide)
    owner = getattr(inner_model, "__self__", None)
    if is_whole_program(owner):
        raise pieces_error(owner, "FIVO")
    if (
        not isinstance(owner, SequenceModel)
        or getattr(inner_model, "__name__", None) != "model"
        or getattr(inner_guide, "__self__", None) is not owner
        or getattr(inner_guide, "__name__", None) != "guide"
    ):
        raise TypeError(
            "FIVO drives the per-step pieces of a pyrosequence SequenceModel and needs its bound "
            f"methods: FIVO(...).loss(m.model, m.guide, x, lengths); got model={model!r}, guide={guide!r}"
        )
    if not has_pieces(owner):
        raise pieces_error(owner, "FIVO")
    if not (model_scale is guide_scale or bool(torch.all(torch.as_tensor(model_scale == guide_scale)))):
        raise ValueError("FIVO needs the same latent scale on model and guide")
    return owner, model_scale


class FIVO(ELBO):
    """The filtering variational objective (Maddison et al., NeurIPS 2017), usable wherever Pyro
    takes an ELBO: ``SVI(m.model, m.guide, optim, FIVO(...))`` or ``FIVO(...)(m.model, m.guide)``.

    For every sequence, a particle filter with ``num_particles`` particles runs the model's
    proposal, prior, emission and update (see :func:`particle_filter`) and resamples with
    ``resampler`` whenever the effective sample size drops below ``ess_threshold * K``. The bound
    of a sequence is the filter's ``log p_hat(x)``: a lower bound on ``log p(x)`` in expectation,
    equal to IWAE(K) when ``ess_threshold = 0`` and to the ELBO when ``K = 1``.

    Gradients: ancestor indices are treated as constants, as in the paper (section 4): the
    score-function term of resampling, which has high variance, is dropped, so the gradient is
    biased but low-variance. Only reparameterisable proposals are supported.

    The loss follows the reference implementation: each sequence's bound divided by its length,
    averaged over the batch, negated (``normalized_loss = True`` tells a training loop not to
    rescale it again). ``scale_latents(fn, beta)`` on both model and guide multiplies the latent
    terms ``log p(z_t|.) - log q(z_t|.)`` of every weight increment by ``beta``; for beta != 1
    that is a heuristic "beta-FIVO", not a bound.

    Args:
        num_particles: K >= 1 particles per sequence.
        resampler: ``"multinomial"``, ``"systematic"``, ``"stratified"``, ``"residual"`` or a
            function ``log_weights (..., K) -> ancestors (..., K)``.
        ess_threshold: resample when ESS < ``ess_threshold * K``; 0 = never, 1 = always (the
            paper and reference code use 0.5).
        compile: run the filter's step compiled with ``torch.compile`` (``True``, a mode such as
            ``"reduce-overhead"`` for CUDA graphs, or
            :class:`~pyrosequence.inference.engine.CompileOptions`); the eager step (default) is
            the reference. See :mod:`pyrosequence.inference.engine` for what changes (warm-up,
            random draws, fallback).
    """

    normalized_loss = True

    def __init__(
        self,
        num_particles: int = 4,
        resampler: str | Resampler = "multinomial",
        ess_threshold: float = 0.5,
        compile: bool | str | CompileOptions = False,
    ):
        check_filter_options(num_particles, ess_threshold)
        self.compile = compile_options(compile)
        self.resampler = get_resampler(resampler)
        self.resampler_name = resampler if isinstance(resampler, str) else getattr(resampler, "__name__", "custom")
        self.ess_threshold = float(ess_threshold)
        super().__init__(num_particles=num_particles, max_plate_nesting=1, vectorize_particles=True)

    def filter(
        self, model: Callable, guide: Callable, x: torch.Tensor, lengths: torch.Tensor | None = None, initial=None, start: int = 0
    ) -> FilterResult:
        """Run the particle filter and return its full :class:`FilterResult` (``initial`` and
        ``start`` continue sequences, as for the model's own ``model``/``guide``)."""
        seq_model, scale = sequence_model_of(model, guide)
        pyro.module(seq_model.pyro_name, seq_model)  # lets SVI find the parameters
        seqs = seq_model.prepare(x, lengths)
        return particle_filter(
            seq_model, seqs, self.num_particles, self.resampler, self.ess_threshold, scale, initial, start,
            compile=self.compile,
        )

    def differentiable_loss(self, model, guide, x, lengths=None, initial=None, start: int = 0) -> torch.Tensor:
        result = self.filter(model, guide, x, lengths, initial, start)
        return -(result.log_z / result.lengths.to(result.log_z.dtype)).mean()

    def loss(self, model, guide, x, lengths=None, initial=None, start: int = 0) -> float:
        with torch.no_grad():
            value = float(self.differentiable_loss(model, guide, x, lengths, initial, start))
        if not math.isfinite(value):
            raise ValueError(f"FIVO loss is {value}")
        return value

    def loss_and_grads(self, model, guide, x, lengths=None, initial=None, start: int = 0) -> float:
        loss = self.differentiable_loss(model, guide, x, lengths, initial, start)
        loss.backward()
        return float(loss.detach())

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("FIVO runs a particle filter over the model's steps, not Pyro traces")

    def __repr__(self) -> str:
        compiled = "" if self.compile is None else f", compile={self.compile!r}"
        return (f"FIVO(num_particles={self.num_particles}, resampler={self.resampler_name!r}, "
                f"ess_threshold={self.ess_threshold}{compiled})")
