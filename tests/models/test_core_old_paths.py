"""The model infrastructure moved to pyrosequence.models.core; each old module path still imports,
with a DeprecationWarning, as the very same module object (so monkeypatching and isinstance see one
module), for one release."""

import importlib
import sys

import pytest

import pyrosequence.models

MOVED = ["base", "contract", "program", "registry", "rebuild", "missing", "time_slicing"]


@pytest.mark.parametrize("name", MOVED)
def test_an_old_path_warns_and_is_the_moved_module(name, monkeypatch):
    new = importlib.import_module(f"pyrosequence.models.core.{name}")
    monkeypatch.delitem(sys.modules, f"pyrosequence.models.{name}", raising=False)
    monkeypatch.delattr(pyrosequence.models, name, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"pyrosequence\.models\.{name} moved to pyrosequence\.models\.core\.{name}"):
        old = importlib.import_module(f"pyrosequence.models.{name}")
    assert old is new and sys.modules[f"pyrosequence.models.{name}"] is new
    if name == "base":
        assert old.SequenceModel is pyrosequence.models.SequenceModel  # one class for isinstance

