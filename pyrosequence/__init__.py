"""pyrosequence: probabilistic sequence models on Pyro, trainable with every variational objective."""

from pyrosequence.models import VRNN, LinearGaussianSSM, SequenceModel

__version__ = "0.1.0"
__all__ = ["SequenceModel", "VRNN", "LinearGaussianSSM", "__version__"]
