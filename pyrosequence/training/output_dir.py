"""The one rule every command that writes a folder follows: never write into a user's non-empty
folder (or over a file of the same name) unless told to."""

from __future__ import annotations

from pathlib import Path


def check_output_dir(path: str | Path, force: bool, hint: str = "pass --force to write into it") -> Path:
    """Return ``path`` as a :class:`Path` if a command may write into it: it does not exist, is an
    empty folder, or ``force`` is set. Raise ``FileExistsError`` (ending with ``hint``) otherwise,
    and always when ``path`` is a file. Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FileExistsError(f"{path} exists and is not empty; {hint}")
    return path
