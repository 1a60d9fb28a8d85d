"""The one way this library writes files: atomically, into a temporary file beside the target
that is flushed, synced and renamed over it. A crash (even ``kill -9``) at any moment leaves either
the previous complete file or the new complete file, never a partial one.

* :func:`atomic_path` yields a temporary path to write to (for writers that want a path:
  ``torch.save``, matplotlib, music21, NumPy) and renames it over the target on success;
* :func:`atomic_write` writes bytes or text; :func:`atomic_append` adds to a file (by rewriting it
  whole, so an interrupted append leaves the old contents);
* :func:`strict_json` is ``json.dumps`` that refuses NaN and infinity (strict JSON) and says where;
* :func:`remove_orphans` deletes temporary files an interrupted write left behind.

A write that fails because the file system is full (``ENOSPC``, or a quota: ``EDQUOT``) raises
:class:`DiskFullError` naming the file, whatever layer noticed it (``torch.save`` reports it as a
bare ``RuntimeError``); the previous file is kept.

Temporary files are named ``.NAME.XXXXXXXX.tmp`` in the target's folder.

Fault injection (for the crash tests): with the environment variable
``PYROSEQUENCE_KILL_IN_WRITE=NAME:N``, the N-th atomic write of a file called NAME in this process
kills the process with SIGKILL after the temporary file is complete and before the rename, the
worst moment for a non-atomic writer.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import tempfile
from pathlib import Path
from typing import Iterator

KILL_ENV = "PYROSEQUENCE_KILL_IN_WRITE"
_writes: dict[str, int] = {}


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file (0o666 less the umask); temporary files
    are created 0o600, so the final file gets this (or the replaced file's mode) before the rename."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _maybe_kill(name: str) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    target, _, count = spec.rpartition(":")
    if target != name:
        return
    _writes[name] = _writes.get(name, 0) + 1
    if _writes[name] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)


#: The errors of a full file system (no space; a quota reached).
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """Writing ``filename`` failed because its file system is full (or a quota is reached)."""

    def __init__(self, path: str | os.PathLike, code: int = errno.ENOSPC) -> None:
        super().__init__(code, os.strerror(code), str(path))

    def __str__(self) -> str:
        return (f"no space left on the device (disk full) while writing {self.filename}; any previous version "
                "of it is kept: free some space and run the command again")


def _disk_full(error: BaseException, folder: Path) -> int | None:
    """The errno of a full file system behind ``error`` (itself, a cause or context), or of
    ``folder``'s file system when an opaque error (torch.save's RuntimeError) meets no free space."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FULL_ERRNOS:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, RuntimeError):
        try:
            stat = os.statvfs(folder)
        except OSError:
            return None
        if stat.f_bavail * stat.f_frsize < 1 << 20:  # less than a MiB left for us
            return errno.ENOSPC
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, the file written
    there is synced and renamed over ``path``. On any error it is removed and ``path`` is untouched
    (a full disk is raised as :class:`DiskFullError` naming ``path``)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        if error.errno in FULL_ERRNOS:
            raise DiskFullError(path, error.errno) from None
        raise
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else _new_file_mode())
        _maybe_kill(path.name)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        code = _disk_full(error, path.parent) if isinstance(error, Exception) and not isinstance(error, DiskFullError) else None
        if code is not None:
            raise DiskFullError(path, code) from None
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Replace ``path`` by ``data`` (text is written as UTF-8) atomically."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def atomic_append(path: str | os.PathLike, data: str) -> Path:
    """Append ``data`` to the text file ``path`` atomically (the file is rewritten whole)."""
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    return atomic_write(path, old + data)


def check_writable(folder: str | os.PathLike) -> None:
    """Raise ``PermissionError`` naming ``folder`` unless a file can be created in it (tried, not
    guessed from permission bits: what matters is whether the write would succeed)."""
    folder = Path(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise PermissionError(f"cannot write into {folder}: {error.strerror or error}") from None
    os.close(fd)
    os.unlink(tmp)


def _non_finite_path(value, where: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the value"
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite_path(item, f"{where}.{key}" if where else str(key))
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _non_finite_path(item, f"{where}[{i}]")
            if found:
                return found
    return None


def strict_json(value, **kwargs) -> str:
    """``json.dumps(value, allow_nan=False)``, raising ``ValueError`` that names the non-finite entry."""
    where = _non_finite_path(value)
    if where is not None:
        raise ValueError(f"refusing to write non-finite number at {where} to JSON")
    return json.dumps(value, allow_nan=False, **kwargs)


def remove_orphans(folder: str | os.PathLike, names) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes of ``names`` in ``folder``."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type when the message is empty."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def raised_at(error: BaseException) -> str:
    """``"at FILE:LINE in FUNCTION"``: where ``error`` arose, the innermost frame of its traceback
    outside the Python, torch and Pyro installations when there is one (the user's code)."""
    import sysconfig

    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    if not frames:
        return ""
    installed = tuple(str(Path(sysconfig.get_paths()[key]).resolve()) for key in ("stdlib", "purelib", "platlib"))
    own = [f for f in frames if not str(Path(f.tb_frame.f_code.co_filename).resolve()).startswith(installed)]
    tb = (own or frames)[-1]
    return f"at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno} in {tb.tb_frame.f_code.co_name}"
