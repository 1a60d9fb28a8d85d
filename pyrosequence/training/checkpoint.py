"""Atomic checkpoints: written to a temporary file beside the target, then renamed over it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from pyrosequence.atomic import atomic_path, first_line

FORMAT = "pyrosequence-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model", "optimizer", "epoch", "step", "rng")
#: What a weights-only checkpoint (a run's ``best.pt``) must hold.
WEIGHTS_REQUIRED = ("format", "version", "model", "epoch")


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically: a crash leaves the previous checkpoint intact."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)  # through a Python file: a full disk is an OSError (ENOSPC), not torch's bare RuntimeError


def load_checkpoint(path: str | Path, map_location="cpu", required: tuple = REQUIRED) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, with clear errors when it is not one
    (``required``: the keys it must hold; :data:`WEIGHTS_REQUIRED` for weights alone)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise ValueError(f"checkpoint {path} is corrupt or unreadable: {first_line(error)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyrosequence checkpoint")
    missing = [key for key in required if key not in payload]
    if missing:
        raise ValueError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    if not isinstance(payload["version"], int) or payload["version"] > VERSION:
        raise ValueError(f"checkpoint {path} has format version {payload['version']}; this pyrosequence reads up to {VERSION}")
    _check_contents(path, payload, required)
    return payload


def _check_contents(path: Path, payload: dict, required: tuple) -> None:
    """Reject a checkpoint whose entries are not what a run writes (tampered or damaged files)."""
    weights = payload["model"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ValueError(f"checkpoint {path} holds no model weights (its 'model' entry is not a state dict)")
    bad = [name for name, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(f"checkpoint {path} holds non-finite weights ({', '.join(bad[:3])}{more})")
    for key in ("epoch", "step"):
        if key in payload and (isinstance(payload[key], bool) or not isinstance(payload[key], int) or payload[key] < 0):
            raise ValueError(f"checkpoint {path} has an invalid {key} ({payload[key]!r})")
    if "rng" in required:
        rng = payload["rng"]
        state = rng.get("torch") if isinstance(rng, dict) else None
        if not (isinstance(state, torch.Tensor) and state.dtype == torch.uint8 and state.dim() == 1):
            raise ValueError(f"checkpoint {path} has a damaged random-number state; the run cannot be resumed exactly")
