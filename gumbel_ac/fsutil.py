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
