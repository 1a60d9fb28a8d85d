"""pyrosequence: probabilistic sequence models on Pyro, trainable with every variational objective."""

from pyrosequence.models import (
    FRNN,
    SRNN,
    STORN,
    VHRNN,
    VRNN,
    DeltaRNN,
    DeltaRNNRandom,
    Flattened,
    HyperLSTM,
    LinearGaussianSSM,
    LinearVAE,
    RNNFlat,
    RNNHier,
    SequenceModel,
    SimplifiedSRNN,
    SRNNFlat,
    SRNNHier,
    ZForcing,
)
from pyrosequence.models.multi_rate import multi_rate, set_beta

__version__ = "0.1.0"
__all__ = [
    "SequenceModel",
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
    "multi_rate",
    "set_beta",
    "__version__",
]
