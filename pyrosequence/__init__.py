"""pyrosequence: probabilistic sequence models on Pyro, trainable with every variational objective."""

from pyrosequence.models import VHRNN, VRNN, HyperLSTM, LinearGaussianSSM, SequenceModel

__version__ = "0.1.0"
__all__ = ["SequenceModel", "VRNN", "VHRNN", "HyperLSTM", "LinearGaussianSSM", "__version__"]
