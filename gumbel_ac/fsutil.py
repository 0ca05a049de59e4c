"""Crash-safe file writes: the one place that knows the fsync / rename sequence.

A reader (``eval.py``, a resumed run, a kill -9 test) must see either the old file or the new
one, never a torn mix. POSIX gives that through ``rename`` of a fully written, fsynced temp file
in the same folder, followed by an fsync of the folder so the rename itself survives a power
loss (rename(2) is atomic; durability of the directory entry needs the directory fsync --
see the fsync(2) man page, "Calling fsync() does not necessarily ensure that the entry in the
directory containing the file has also reached disk").

Used by the checkpoint writer (gumbel_ac/checkpoint.py), the run's ``config.json`` and the
metrics rewrite on resume (gumbel_ac/logger.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def fsync_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it (not atomic on its own).

    For files inside a temp folder that is renamed into place as a whole (checkpoints); for a
    single file use :func:`write_bytes_atomic`.
    """
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: str | Path) -> None:
    """fsync a folder, so renames and new entries in it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash at any point leaves the old or the new file.

    The temp file lives in the same folder (``os.replace`` is only atomic within one file
    system) and is named ``.<name>.tmp-<pid>`` so two processes never share one; it is removed
    if the write fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fsync_write(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """:func:`write_bytes_atomic` of ``obj`` as indented, key-sorted JSON plus a newline.

    Sorted keys make two writes of the same object byte-identical (diffable run folders).
    """
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


class FolderInUseError(RuntimeError):
    """Another live process holds the folder's lock; the message names its PID."""


class FolderLock:
    """An exclusive lock on ``folder/.lock`` for the life of a run: one writer per run folder.

    ``fcntl.flock`` (advisory, released by the kernel when the holder exits -- even after
    kill -9 -- so a crashed run never leaves a stale lock). The holder writes its PID into the
    file, so a second writer's error can name it. The file itself is left in place: removing
    it on release would let a third process lock a fresh inode while a second still waits on
    the old one. Where ``fcntl`` does not exist (Windows) no lock is taken.
    """

    FILE = ".lock"

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / self.FILE
        self._fh: Any = None

    def acquire(self) -> FolderLock:
        """Take the lock or raise :class:`FolderInUseError` at once (never waits)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the run
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise FolderInUseError(
                f"{self.path.parent} is in use by another gumbel_ac process (PID {holder}); wait for it to "
                "finish or stop it, or use another --run-name"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
