"""Building blocks: MLPs, distribution heads and recurrent cells that broadcast over batch shapes."""

from pyrosequence.nn.cells import RecurrentCell, State
from pyrosequence.nn.heads import LIKELIHOODS, BernoulliHead, DiagNormalHead, GaussianMixtureHead, make_likelihood
from pyrosequence.nn.hyper import HyperCell, HyperGenerator, HyperLinear
from pyrosequence.nn.mlp import MLP, cat_features

__all__ = [
    "MLP",
    "cat_features",
    "RecurrentCell",
    "State",
    "DiagNormalHead",
    "BernoulliHead",
    "GaussianMixtureHead",
    "HyperCell",
    "HyperGenerator",
    "HyperLinear",
    "LIKELIHOODS",
    "make_likelihood",
]
