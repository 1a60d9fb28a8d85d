"""Sequence models: each a :class:`SequenceModel` with ``model(x, lengths)`` and ``guide(x, lengths)``."""

from pyrosequence.models.base import SequenceModel, context_steps, stack_states
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
}


def model_class(name: str) -> type[SequenceModel]:
    """Look up a model class by name, with an error that lists the valid names."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}") from None


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
    "MODELS",
    "model_class",
]
