"""``gumbel_ac.fsutil``: an atomic write leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gumbel_ac import fsutil


def test_write_bytes_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    fsutil.write_bytes_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    real = fsutil.fsync_write

    def half_then_full_disk(path: str | Path, data: bytes) -> None:
        real(path, data[: len(data) // 2])  # the temp file is torn ...
        raise OSError(28, "No space left on device")  # ... and the disk refuses the rest

    monkeypatch.setattr(fsutil, "fsync_write", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        fsutil.write_bytes_atomic(target, b"new contents")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_write_json_atomic_is_sorted_and_reproducible(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    fsutil.write_json_atomic(a, {"b": 1, "a": [1, 2]})
    fsutil.write_json_atomic(b, {"a": [1, 2], "b": 1})
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text()) == {"a": [1, 2], "b": 1}
    assert a.read_text().endswith("}\n")


def test_checkpoint_reexports_the_one_helper() -> None:
    """The trainer imports ``write_json_atomic`` from checkpoint; it must be this one, not a copy."""
    from gumbel_ac import checkpoint

    assert checkpoint.write_json_atomic is fsutil.write_json_atomic
    assert checkpoint._fsync_write is fsutil.fsync_write
