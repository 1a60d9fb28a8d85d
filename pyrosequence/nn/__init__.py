"""Building blocks: MLPs, distribution heads and recurrent cells that broadcast over batch shapes."""

from pyrosequence.nn.cells import RecurrentCell, State, map_state
from pyrosequence.nn.heads import LIKELIHOODS, BernoulliHead, DiagNormalHead, GaussianMixtureHead, make_likelihood
from pyrosequence.nn.hyper import HyperCell, HyperGenerator, HyperLinear
from pyrosequence.nn.mlp import MLP, cat_features
from pyrosequence.nn.autoregressive import AutoregressiveHead, AutoregressiveStep, monte_carlo_moments
from pyrosequence.nn.heads import OUTPUTS, DimMixtureHead
from pyrosequence.nn.made import MaskedMLP
from pyrosequence.nn.sequence_rnn import backward_pass, make_lstm, reverse_padded
from pyrosequence.nn.support import check_support

__all__ = [
    "MLP",
    "cat_features",
    "RecurrentCell",
    "map_state",
    "State",
    "DiagNormalHead",
    "BernoulliHead",
    "GaussianMixtureHead",
    "HyperCell",
    "HyperGenerator",
    "HyperLinear",
    "LIKELIHOODS",
    "make_likelihood",
    "OUTPUTS",
    "DimMixtureHead",
    "AutoregressiveHead",
    "AutoregressiveStep",
    "monte_carlo_moments",
    "MaskedMLP",
    "reverse_padded",
    "backward_pass",
    "make_lstm",
    "check_support",
]
