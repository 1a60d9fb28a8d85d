"""Sequence models: each a :class:`SequenceModel` with ``model(x, lengths)`` and ``guide(x, lengths)``."""

from pyrosequence.models.base import SequenceModel, context_steps, stack_states
from pyrosequence.models.filtering_rnn import FilteringRNN
from pyrosequence.models.hyper_lstm import HyperLSTM
from pyrosequence.models.linear_gaussian import LinearGaussianSSM
from pyrosequence.models.vhrnn import VHRNN
from pyrosequence.models.vrnn import VRNN

#: Model classes by the name the CLI and configs use.
MODELS: dict[str, type[SequenceModel]] = {
    "vrnn": VRNN,
    "vhrnn": VHRNN,
    "hyperlstm": HyperLSTM,
    "lgssm": LinearGaussianSSM,
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
    "MODELS",
    "model_class",
]
