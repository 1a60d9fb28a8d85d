"""An exclusive lock on a run directory, so that two commands never write one run at once.

``train`` holds it for the whole run; ``evaluate`` takes it for the moment it appends its record;
a second ``train`` on the same directory is refused in one line naming the holder. The lock is an
OS file lock (``fcntl.flock``) on the hidden file :data:`LOCK_FILE` inside the run directory:

* the operating system releases it whenever its process ends, ``kill -9`` included, so a lock can
  never outlive its holder; the file records the holder (PID, host, command, start time) for the
  message a refused command prints, and is removed when the lock is released normally. A file
  left by a process that died is a *stale* lock: the next command takes it over and says so;
* it is **advisory** (only pyrosequence commands honour it; ``rm`` or another program does not)
  and **local**: ``flock`` coordinates the processes of one machine (and of the clients of a
  network file system that supports it); do not share a run directory between machines whose
  file system does not. Where the file system refuses file locks altogether, the recorded PID is
  checked instead (a live process on this host holds it), with a one-line note;
* it is re-entrant within a process (``train`` holds it; its own writes need not take it again),
  and under ``torchrun`` only process 0, the one that writes, takes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

#: The lock file inside a run directory (hidden: it is not one of the run's results).
LOCK_FILE = ".pyrosequence.lock"
#: Commands that hold the lock for a long time: a waiting command gives up at once on them.
LONG_HOLDERS = ("train",)

_held: dict[str, "_Held"] = {}


class RunDirectoryLocked(OSError):
    """Another process holds the lock of a run directory (a ``train`` of it, usually)."""

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}

    def __str__(self) -> str:
        return self.args[0]


class _Held:
    def __init__(self, fd: int | None, path: Path, record: dict) -> None:
        self.fd, self.path, self.record, self.count = fd, path, record, 1


def _host() -> str:
    return socket.gethostname()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_holder(run_dir: str | os.PathLike) -> dict:
    """What the lock file of ``run_dir`` says about its holder (``{}`` when absent or unreadable)."""
    try:
        text = (Path(run_dir) / LOCK_FILE).read_text()
        record = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe(holder: dict) -> str:
    """``"process 123 on host (train since ...)"``, or a vaguer phrase when the record is incomplete."""
    if not holder.get("pid"):
        return "another process (which has not yet recorded itself)"
    what = f"process {holder['pid']} on {holder.get('host', '?')}"
    if holder.get("command"):
        what += f" ({holder['command']}" + (f" since {holder['since']}" if holder.get("since") else "") + ")"
    return what


def _busy(run_dir: Path, holder: dict) -> RunDirectoryLocked:
    command = holder.get("command")
    hint = ("wait for it to finish, or stop it; a killed holder frees the lock at once"
            if command in LONG_HOLDERS else "try again in a moment")
    return RunDirectoryLocked(f"run directory {run_dir} is in use by {describe(holder)}; {hint}", holder)


def _open_locked(path: Path) -> tuple[int, bool]:
    """Open (creating) the lock file and try ``flock(LOCK_EX | LOCK_NB)`` on it: ``(fd, locked)``.
    ``locked`` is None where the file system does not support file locks."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return fd, False
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return fd, None
        os.close(fd)
        raise
    return fd, True


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a releasing holder unlinks it)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _acquire(run_dir: Path, command: str, wait: float, log: Callable[[str], None]) -> _Held:
    path = run_dir / LOCK_FILE
    deadline = time.monotonic() + wait
    while True:
        try:
            fd, locked = _open_locked(path)
        except OSError as error:
            raise PermissionError(f"cannot lock run directory {run_dir}: cannot create {path} "
                                  f"({error.strerror or error})") from None
        if locked is not False and not _same_file(fd, path):  # locked a file its holder just removed
            os.close(fd)
            continue
        previous = read_holder(run_dir)
        if locked is None:  # no file locks here: a live PID on this host holds it
            if previous.get("pid") and previous.get("host") == _host() and previous.get("pid") != os.getpid() \
                    and _alive(int(previous["pid"])):
                os.close(fd)
                locked = False
            else:
                log(f"note: the file system of {run_dir} does not support file locks; "
                    "the run directory is guarded by the PID in its lock file only")
        if locked is False:
            os.close(fd)
            if previous.get("command") in LONG_HOLDERS or time.monotonic() >= deadline:
                raise _busy(run_dir, previous)
            time.sleep(0.05)
            continue
        break
    if previous.get("pid"):  # a holder that did not release: it died (the OS freed its lock)
        pid, host = previous["pid"], previous.get("host")
        state = ("no longer running" if not _alive(int(pid)) else "not holding it") if host == _host() \
            else "on another machine: locks are local, make sure it no longer uses this directory"
        log(f"note: took over the stale lock of {run_dir} left by {describe(previous)}, {state}")
    record = {"pid": os.getpid(), "host": _host(), "command": command, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    return _Held(fd, path, record)


def _release(held: _Held) -> None:
    try:
        if _same_file(held.fd, held.path):
            held.path.unlink(missing_ok=True)  # before the unlock: a waiter re-checks the inode it locked
    except OSError:  # a read-only directory now, or removed: the lock still goes with the descriptor
        pass
    finally:
        os.close(held.fd)


def holds_lock(run_dir: str | os.PathLike) -> bool:
    """Whether this process holds the lock of ``run_dir``."""
    return str(Path(run_dir).resolve()) in _held


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, command: str, wait: float = 0.0,
             log: Callable[[str], None] = print) -> Iterator[dict]:
    """Hold the exclusive lock of the existing folder ``run_dir`` for the block (see the module
    docstring); yields the holder record. ``wait``: seconds to wait for a brief holder (another
    ``evaluate`` appending); a ``train`` holding it is never waited for. Raises
    :class:`RunDirectoryLocked` naming the holder when the lock is not obtained."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    held = _held.get(key)
    if held is not None:
        held.count += 1
    else:
        held = _held[key] = _acquire(run_dir, command, wait, log)
    try:
        yield held.record
    finally:
        held.count -= 1
        if held.count == 0:
            del _held[key]
            _release(held)
