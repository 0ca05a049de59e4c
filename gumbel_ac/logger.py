"""Metrics out: a JSONL file in the run folder, a console progress bar, and wandb.

Metric names are namespaced as CleanRL's (``charts/episodic_return``, ``losses/critic``, ...).
The trainer hands this module plain Python floats it read from the device in one transfer
every ``log_every`` steps; nothing here touches tensors.

wandb is imported only when tracking is on. ``wandb.init`` is never given ``mode``: the
user's ``WANDB_MODE`` decides (``offline`` works with no network; an explicit
``mode="online"`` would override it and block ~90 s without network, docs/DESIGN.md §6).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from gumbel_ac.fsutil import write_bytes_atomic

#: Metrics that measure wall-clock time: the only ones that differ between two runs of the
#: same config and seed on CPU (compare metrics files without them; docs/resume.md).
WALL_CLOCK_KEYS: frozenset[str] = frozenset({"charts/sps"})

#: Rows with these keys are written after the final checkpoint; a resumed run drops them
#: (it writes them again when it ends) so they are never duplicated.
FINAL_ROW_PREFIX = "eval/final_"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics file; a torn last line (the process was killed mid-write) is skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("global_step"), int):
            rows.append(row)
    return rows


def without_wall_clock(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows minus :data:`WALL_CLOCK_KEYS` (for bit-for-bit reproducibility checks)."""
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK_KEYS} for row in rows]


def truncate_metrics(path: str | Path, step: int) -> int:
    """Keep only the rows a run had written when its checkpoint at ``step`` was taken.

    A resumed run continues from ``step``; rows after it (logged by the killed process after
    its last checkpoint), a torn last line, and final-evaluation rows at ``step`` (written
    after the final checkpoint) are removed, so the continued file has no duplicate and no
    missing row. The file is rewritten atomically. Returns how many lines were dropped.
    """
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("global_step"), int):
            continue
        if row["global_step"] > step:
            continue
        if row["global_step"] == step and any(k.startswith(FINAL_ROW_PREFIX) for k in row):
            continue
        kept.append(line)
    write_bytes_atomic(path, "".join(line + "\n" for line in kept).encode("utf-8"))
    return len(lines) - len(kept)


class MetricsLogger:
    """Append-only metrics sink for one run."""

    def __init__(
        self,
        run_dir: Path,
        *,
        total_steps: int,
        estimator: str,
        progress: bool,
        track: bool,
        wandb_project: str,
        wandb_entity: str | None,
        run_name: str,
        config: dict[str, Any],
        start_step: int = 0,
    ) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._file = open(self.path, "a", encoding="utf-8")
        self.estimator = estimator
        self._wandb: Any = None
        if track:
            import wandb

            try:
                self._wandb = wandb.init(
                    project=wandb_project,
                    entity=wandb_entity,
                    name=run_name,
                    config=config,
                    dir=str(run_dir),
                    sync_tensorboard=False,
                    resume="allow",
                    id=run_name.replace("/", "-")[:128],
                )
            except wandb.errors.Error as exc:  # no API key, bad entity, ...: a user error
                self._file.close()
                from gumbel_ac.config import ConfigError

                raise ConfigError(
                    f"--track: wandb could not start ({exc}). Run `wandb login`, or set "
                    "WANDB_MODE=offline to log locally (sync later with `wandb sync`)."
                ) from None
        self._progress: Any = None
        self._task: Any = None
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.fields[estimator]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("return {task.fields[ret]}"),
                TextColumn("eval {task.fields[eval]}"),
                TextColumn("{task.fields[sps]} sps"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=total_steps, completed=start_step, estimator=estimator, ret="-", eval="-", sps="-"
            )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write one row (``global_step`` plus metrics) to every sink."""
        row: dict[str, float | int | None] = {"global_step": int(step)}
        row.update({k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in metrics.items()})
        self._file.write(json.dumps(row, sort_keys=True) + "\n")
        self._file.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if v is not None}, step=int(step))
        if self._progress is not None:
            fields: dict[str, str] = {}
            if metrics.get("charts/episodic_return") is not None:
                fields["ret"] = f"{metrics['charts/episodic_return']:.1f}"
            if metrics.get("charts/sps") is not None:
                fields["sps"] = f"{metrics['charts/sps']:.0f}"
            if metrics.get("eval/mean_return") is not None:
                fields["eval"] = f"{metrics['eval/mean_return']:.1f}"
            self._progress.update(self._task, completed=step, **fields)

    def message(self, text: str) -> None:
        """A line for the user (printed above the progress bar)."""
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def wandb_mode_note() -> str:
    """Where wandb will write, for the start-up line."""
    return f"wandb mode: {os.environ.get('WANDB_MODE', 'default (online if logged in)')}"
