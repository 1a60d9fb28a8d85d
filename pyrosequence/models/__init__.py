"""Sequence models: each a :class:`SequenceModel` with ``model(x, lengths)`` and ``guide(x, lengths)``."""

from pyrosequence.models.core.base import SequenceModel, context_steps, stack_states
from pyrosequence.models.filtering_rnn import FilteringRNN
from pyrosequence.models.hyper_lstm import HyperLSTM
from pyrosequence.models.linear_gaussian import LinearGaussianSSM
from pyrosequence.models.linear_vae import LinearVAE
from pyrosequence.models.vhrnn import VHRNN
from pyrosequence.models.vrnn import VRNN
from pyrosequence.models.storn import STORN
from pyrosequence.models.srnn import SRNN
from pyrosequence.models.zforcing import ZForcing
from pyrosequence.models.simplified_srnn import SimplifiedSRNN
from pyrosequence.models.autoregressive_rnn import FRNN, RNNHier
from pyrosequence.models.delta_rnn import DeltaRNN, DeltaRNNRandom
from pyrosequence.models.flat_rnn import RNNFlat
from pyrosequence.models.flattened import Flattened
from pyrosequence.models.srnn_variants import SRNNFlat, SRNNHier
from pyrosequence.models.dmm import DMM
from pyrosequence.models.core.program import PiecesRequiredError, PyroProgram
from pyrosequence.models.core.registry import ModelRegistry

#: Model classes by the name the CLI and configs use.
MODELS: dict[str, type[SequenceModel]] = {
    "vrnn": VRNN,
    "vhrnn": VHRNN,
    "hyperlstm": HyperLSTM,
    "lgssm": LinearGaussianSSM,
    # the two-layer linear VAE of the Multi-Rate VAE paper (i.i.d. steps, analytic optimum)
    "linear-vae": LinearVAE,
    # the SRNN family (Dai et al. 2019, supplement appendix B; Goyal et al. 2017)
    "storn": STORN,
    "srnn": SRNN,
    "zforcing": ZForcing,
    "srnn-simple": SimplifiedSRNN,
    # Dai et al. 2019: deterministic baselines with an exact likelihood
    "frnn": FRNN,
    "rnn-hier": RNNHier,
    "rnn-flat": RNNFlat,
    "delta-rnn": DeltaRNN,
    "delta-rnn-random": DeltaRNNRandom,
    "srnn-hier": SRNNHier,
    "srnn-flat": SRNNFlat,
    # Krishnan et al. 2017: the Deep Markov Model with its structured (backward-RNN) guide
    "dmm": DMM,
}


#: Built-in names, run-time registrations, plugins and import paths (pyrosequence.models.core.registry).
REGISTRY = ModelRegistry(MODELS)


def model_class(name: str) -> type[SequenceModel]:
    """The model class called ``name``: a built-in (:data:`MODELS`), one registered with
    :func:`register_model`, an installed plugin's entry point, or ``package.module:Class``;
    an unknown name raises ``ValueError`` listing the valid ones."""
    return REGISTRY.lookup(name)


def register_model(name: str, cls: type[SequenceModel], replace: bool = False) -> type[SequenceModel]:
    """Make ``cls`` (a :class:`SequenceModel` subclass) available as ``name`` to ``TrainConfig``,
    ``train()`` and the CLI; returns ``cls``. A run directory records its import path, so other
    processes find it again (see :mod:`pyrosequence.models.core.registry`)."""
    return REGISTRY.register(name, cls, replace)


__all__ = [
    "SequenceModel",
    "context_steps",
    "stack_states",
    "FilteringRNN",
    "VRNN",
    "VHRNN",
    "HyperLSTM",
    "LinearGaussianSSM",
    "LinearVAE",
    "STORN",
    "SRNN",
    "ZForcing",
    "SimplifiedSRNN",
    "FRNN",
    "RNNHier",
    "RNNFlat",
    "DeltaRNN",
    "DeltaRNNRandom",
    "Flattened",
    "SRNNHier",
    "SRNNFlat",
    "DMM",
    "MODELS",
    "model_class",
    "register_model",
    "PyroProgram",
    "PiecesRequiredError",
]
