"""pyrosequence: probabilistic sequence models on Pyro, trainable with every variational objective."""

from pyrosequence import models
from pyrosequence.models import *  # noqa: F401,F403 - the model classes, MODELS and model_class
from pyrosequence.models.multi_rate import multi_rate, set_beta
from pyrosequence.data.from_path import load_data
from pyrosequence.data.registry import register_dataset, unregister_dataset

__version__ = "0.1.0"
__all__ = [*models.__all__, "multi_rate", "set_beta", "load_data", "register_dataset", "unregister_dataset", "__version__"]
