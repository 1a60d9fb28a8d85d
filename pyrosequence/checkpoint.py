"""Atomic checkpoints: written to a temporary file beside the target, then renamed over it."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

FORMAT = "pyrosequence-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model", "optimizer", "epoch", "step", "rng")
#: What a weights-only checkpoint (a run's ``best.pt``) must hold.
WEIGHTS_REQUIRED = ("format", "version", "model", "epoch")


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically: a crash leaves the previous checkpoint intact."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path, map_location="cpu", required: tuple = REQUIRED) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, with clear errors when it is not one
    (``required``: the keys it must hold; :data:`WEIGHTS_REQUIRED` for weights alone)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise ValueError(f"checkpoint {path} is corrupt or unreadable: {str(error).splitlines()[0]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyrosequence checkpoint")
    missing = [key for key in required if key not in payload]
    if missing:
        raise ValueError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    if payload["version"] > VERSION:
        raise ValueError(f"checkpoint {path} has format version {payload['version']}; this pyrosequence reads up to {VERSION}")
    return payload
