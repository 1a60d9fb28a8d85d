"""Hyperparameter sweeps on Optuna: ``pyrosequence sweep`` (install with ``pip install -e ".[sweep]"``).

- :mod:`pyrosequence.sweep.space`: the search-space language (``lr=log:1e-5:1e-3``, a YAML/JSON
  file), checked against the base :class:`~pyrosequence.training.config.TrainConfig`, and the trial's
  configuration from the sampled values. Needs no Optuna until a trial samples from it.
- :mod:`pyrosequence.sweep.study`: the study (storage, pruner, sampler) and its workers; every
  trial is an ordinary run directory ``SWEEP_DIR/trial-NNNN``.
- :mod:`pyrosequence.sweep.report`: the results table, the best configuration as a ready
  ``pyrosequence train`` command, ``results.md``/``results.csv`` and ``study.png``.

Importing :mod:`pyrosequence` imports none of this; only the ``study`` and ``report`` functions
import Optuna, when called.
"""

from pyrosequence.sweep.space import Param, SearchSpace, load_space_file, parse_space

__all__ = ["Param", "SearchSpace", "load_space_file", "parse_space"]
