"""What a model offers, asked in one place: whether a particle filter may drive its per-step
pieces, whether it draws latents, whether it is a plain Pyro program or a multi-rate model.

Inference, diagnostics and training ask these questions here rather than by type, so a new kind of
model answers them once (its class's attributes) and every consumer follows:

======================== ==================================================================
:func:`has_pieces`       a particle filter may drive it (FIVO, forecasting, step curves, TBPTT)
:func:`require_pieces`   the same, or :class:`PiecesRequiredError` naming what needed them
:func:`draws_latents`    it samples latent variables for a batch
:func:`is_whole_program` it is a plain Pyro model/guide pair (:class:`~.program.PyroProgram`)
:func:`is_multi_rate`    its layers are gated by a KL weight (Multi-Rate VAE, Bae et al. 2022)
======================== ==================================================================
"""

from __future__ import annotations

from pyrosequence.nn.beta_gate import BetaConditioner


class PiecesRequiredError(TypeError):
    """Raised by everything that drives a model's per-step pieces (the FIVO bound and objective,
    the particle filter, forecasting, filter health, step curves, truncated backpropagation) when
    it is given a whole-sequence program: a :class:`PyroProgram`, or a
    :class:`~pyrosequence.models.SequenceModel` that overrides ``model()``/``guide()`` without
    declaring ``overrides_match_pieces = True``."""


def pieces_error(model, purpose: str, name: str | None = None) -> PiecesRequiredError:
    """The one error for ``purpose`` (e.g. ``"the fivo bound"``) applied to a whole-sequence ``model``
    (``None`` with the ``name`` of a plain program known only by name, e.g. from an InferenceData)."""
    name = name or type(model).__name__
    if model is None or is_whole_program(model):
        what = f"{name} is a plain Pyro program (a whole-sequence model/guide pair), which has no per-step pieces"
    else:
        what = (
            f"{name} overrides model() or guide(), so its per-step pieces need not describe the program it runs "
            "(set overrides_match_pieces = True on the class if they do)"
        )
    return PiecesRequiredError(
        f"{purpose} needs a model's per-step pieces (initial_state, transition, proposal, emission, update); {what}. "
        "Write the model as a pyrosequence SequenceModel with per-step pieces to use it (docs/writing-a-model.md). "
        "A whole program gets the elbo and iwae bounds, psis_khat, to_inference_data with bound='elbo' or 'iwae', "
        "and training with the elbo, mean-field and iwae objectives."
    )


def is_whole_program(model) -> bool:
    """Whether ``model`` is a plain Pyro program (:class:`~.program.PyroProgram`): whole-sequence
    traces only, no per-step pieces."""
    from pyrosequence.models.core.program import PyroProgram

    return isinstance(model, PyroProgram)


def is_multi_rate(model) -> bool:
    """Whether ``model``'s layers are gated by a KL weight (see :func:`pyrosequence.multi_rate`)."""
    return isinstance(getattr(model, "beta_conditioner", None), BetaConditioner)


def has_pieces(model) -> bool:
    """Whether a particle filter may drive ``model``'s per-step pieces."""
    from pyrosequence.models.core.base import SequenceModel

    if not isinstance(model, SequenceModel):
        return False
    cls = type(model)
    overridden = cls.model is not SequenceModel.model or cls.guide is not SequenceModel.guide
    return not overridden or bool(cls.overrides_match_pieces)


def require_pieces(model, purpose: str) -> None:
    """Raise :func:`pieces_error` unless a particle filter may drive ``model``'s per-step pieces."""
    from pyrosequence.models.core.base import SequenceModel

    if is_whole_program(model) or (isinstance(model, SequenceModel) and not has_pieces(model)):
        raise pieces_error(model, purpose)


def draws_latents(model, seqs) -> bool:
    """Whether ``model`` draws latent variables for the batch ``seqs`` (from ``model.prepare``): a
    SequenceModel says so by its ``z_dim``, a :class:`PyroProgram` by the sites its guide samples."""
    if is_whole_program(model):
        return model.has_latents(seqs)
    return bool(model.z_dim)
