"""Training runs: the loop, its configuration, the papers' presets, run directories and
checkpoints, and data-parallel processes.

============================ ==========================================================
:mod:`~.loop`                ``train(config_or_model, ...)``: any objective, validation,
                             atomic checkpoints, exact resume, truncated BPTT
:mod:`~.config`              :class:`TrainConfig`, every setting of a run, checked early
:mod:`~.presets`             the papers' experiments by name (``--preset``)
:mod:`~.rundir`              what a run directory holds and :func:`load_run` to reopen it
:mod:`~.checkpoint`          checkpoint files written atomically, read with checks
:mod:`~.runlock`             one writer per run directory
:mod:`~.output_dir`          output folders that never overwrite a user's files
:mod:`~.distributed`         torchrun processes: sharded batches and evaluations
============================ ==========================================================

The modules' old top-level paths (``pyrosequence.training.loop``, ``pyrosequence.training.config``, ...) still
import, with a :class:`DeprecationWarning`, until the next release.
"""

from pyrosequence.training.config import TrainConfig
from pyrosequence.training.loop import RunResult, train, train_epoch
from pyrosequence.training.presets import PRESETS, Preset, get_preset, preset_config
from pyrosequence.training.rundir import load_run

__all__ = ["TrainConfig", "RunResult", "train", "train_epoch", "PRESETS", "Preset", "get_preset", "preset_config",
           "load_run"]
