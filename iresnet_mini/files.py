"""Writing files so that nothing is ever half-written, and a lock that works on every platform.

* :func:`atomic_open` / :func:`write_atomically` - write to a temporary file in the target's
  folder and rename it into place only when everything was written: a crash, an error or a
  failed check inside the ``with`` block leaves the old file (or none) untouched.
* :func:`locked` - an exclusive lock on a lock file (``fcntl`` on POSIX, ``msvcrt`` on
  Windows, both imported only when a lock is taken), so that two processes updating one file
  do not lose each other's changes.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["atomic_open", "write_atomically", "locked"]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None):
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``, on an error it is deleted."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        kwargs = {} if mode == "wb" else {"encoding": encoding or "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
        os.chmod(tmp, 0o644)  # mkstemp makes files readable by their owner only
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomically(path: str | os.PathLike, payload: bytes | str) -> Path:
    """Write bytes or text (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb" if isinstance(payload, bytes) else "w") as handle:
        handle.write(payload)
    return Path(path)


def _lock_functions():
    """(try_lock, unlock) for an open file on this platform; the OS module is imported only here."""
    if sys.platform == "win32":
        import msvcrt

        def try_lock(handle) -> bool:
            handle.seek(0)
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                return False

        def unlock(handle) -> None:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        def try_lock(handle) -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        def unlock(handle) -> None:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return try_lock, unlock


@contextlib.contextmanager
def locked(lock_path: str | os.PathLike, timeout_s: float = 60.0):
    """Hold an exclusive lock on ``lock_path`` (created if missing) for the ``with`` block.

    Waits up to ``timeout_s`` seconds for another holder, then raises TimeoutError.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try_lock, unlock = _lock_functions()
    deadline = time.monotonic() + timeout_s
    with open(lock_path, "a+b") as handle:
        while not try_lock(handle):
            if time.monotonic() > deadline:
                raise TimeoutError(f"another process holds {lock_path}; gave up after {timeout_s:g} s")
            time.sleep(0.05)
        try:
            yield
        finally:
            unlock(handle)
