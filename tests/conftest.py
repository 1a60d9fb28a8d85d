"""Every test starts from a fixed seed, an empty param store, and Pyro's validation on."""

from pathlib import Path

import pytest
import torch

import pyro

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    torch.set_default_dtype(torch.float32)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()


@pytest.fixture
def shared_data() -> Path:
    """The shared real data sets; tests that need them skip (saying why) when they are absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent (tests reading real data need ../shared/data)")
    return path
