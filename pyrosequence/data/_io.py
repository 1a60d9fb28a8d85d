"""Small file helpers shared by the disk-backed loaders: atomic writes and root folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from pyrosequence.atomic import atomic_path

#: Environment variable naming the default folder of the disk-backed data sets (``root=None``).
DATA_ENV = "PYROSEQUENCE_DATA"


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file beside it, then it is renamed.

    A reader never sees a half-written file, and an interrupted write leaves no partial file
    (the temporary file is removed on any error).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # the library's one atomic writer (pyrosequence.atomic)
        write(tmp)
    return path


def data_root(root: str | os.PathLike | None, dataset: str) -> Path:
    """The folder to read ``dataset`` from: ``root``, else ``$PYROSEQUENCE_DATA``.

    Raises ``FileNotFoundError`` naming the data set when neither is given or the folder does not
    exist (the library ships no data: the user points it at their own copy).
    """
    if root is None:
        root = os.environ.get(DATA_ENV)
        if not root:
            raise FileNotFoundError(
                f"dataset {dataset!r} is read from files on disk: pass the folder holding them "
                f"(root=..., or --data-root on the command line), or set ${DATA_ENV}"
            )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"dataset {dataset!r}: the data folder {str(path)!r} does not exist or is not a folder")
    return path


def file_signature(paths) -> tuple:
    """``(path, size, mtime_ns)`` for each path: a cache key that changes when a file changes."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)
