"""The run wing moved into ``pyrosequence.training``; the old top-level paths still import for one
release, warning, and are the same module objects (so patches and isinstance checks agree)."""

import importlib
import sys

import pytest

import pyrosequence.training as training

MOVED = {"train": "loop", "config": "config", "presets": "presets", "rundir": "rundir", "checkpoint": "checkpoint",
         "output_dir": "output_dir", "runlock": "runlock", "distributed": "distributed"}


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_an_old_path_warns_and_is_the_new_module(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, f"pyrosequence.{old}", raising=False)
    with pytest.warns(DeprecationWarning, match=rf"pyrosequence\.{old} moved to pyrosequence\.training\.{new}"):
        module = importlib.import_module(f"pyrosequence.{old}")
    assert module is importlib.import_module(f"pyrosequence.training.{new}")


def test_the_package_exports_the_entry_points():
    from pyrosequence.training.config import TrainConfig
    from pyrosequence.training.loop import train

    assert training.train is train and training.TrainConfig is TrainConfig
    assert training.get_preset("vrnn-jsb-z32").model == "vrnn"


def test_nothing_inside_the_package_imports_an_old_path():
    """Importing the library, its CLI and the training package warns about nothing."""
    import subprocess

    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning); "
            "import pyrosequence, pyrosequence.cli, pyrosequence.training, pyrosequence.diagnostics, pyrosequence.sweep")
    subprocess.run([sys.executable, "-c", code], check=True)
