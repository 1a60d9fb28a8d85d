"""Building blocks: MLPs, distribution heads and recurrent cells that broadcast over batch shapes."""

from pyrosequence.nn.cells import RecurrentCell, State
from pyrosequence.nn.heads import LIKELIHOODS, BernoulliHead, DiagNormalHead, make_likelihood
from pyrosequence.nn.mlp import MLP, cat_features

__all__ = [
    "MLP",
    "cat_features",
    "RecurrentCell",
    "State",
    "DiagNormalHead",
    "BernoulliHead",
    "LIKELIHOODS",
    "make_likelihood",
]
