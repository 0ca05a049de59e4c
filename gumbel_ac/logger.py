"""Metrics out: a JSONL file and TensorBoard events in the run folder, the console, and wandb.

Metric names are namespaced as CleanRL's (``charts/episodic_return``, ``losses/critic``, ...).
The trainer hands this module plain Python floats it read from the device in one transfer
every ``log_every`` steps; nothing here touches tensors.

TensorBoard events are always written, beside ``metrics.jsonl`` (``<run>/tensorboard/``, the
same tags and values, float32; CleanRL writes them by default too): one Summary event per row
costs ~0.08 ms (14 scalars, measured on the 2-core CPU; ``add_scalar`` per value cost ~0.5 ms)
against ~180 ms between two rows at the default settings (2,000 steps at ~11k steps/s), and
the writer's import ~0.05 s once, after torch. ``tensorboard --logdir runs`` shows every run.

The console shows a rich progress bar when stdout is a terminal, and one plain line per log
row otherwise (a file, a pipe, CI): a bar redrawn in place and messages wrapped at the bar's
width made unreadable log files. Both show the run's average steps per second (not the last
window's) and values with 3 significant digits (DeepSea's 0.99 is not "1.0").

wandb is imported only when tracking is on. ``wandb.init`` is never given ``mode``: the
user's ``WANDB_MODE`` decides (``offline`` works with no network; an explicit
``mode="online"`` would override it and block ~90 s without network, docs/DESIGN.md §6).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from gumbel_ac.fsutil import write_bytes_atomic

#: Metrics that measure wall-clock time: the only ones that differ between two runs of the
#: same config and seed on CPU (compare metrics files without them; docs/resume.md).
WALL_CLOCK_KEYS: frozenset[str] = frozenset({"charts/sps"})

#: Rows with these keys are written after the final checkpoint; a resumed run drops them
#: (it writes them again when it ends) so they are never duplicated.
FINAL_ROW_PREFIX = "eval/final_"

#: Subfolder of the run folder that holds the TensorBoard event files.
TENSORBOARD_DIR = "tensorboard"


def format_value(value: float | None) -> str:
    """A metric for people: 3 significant digits, no exponent in [1e-3, 1e6), ``-`` if missing.

    ``0.99`` stays ``0.99`` (``:.1f`` showed DeepSea's optimal return as ``1.0``), ``475.3``
    is ``475``, ``21.34`` is ``21.3``; values from 1000 keep their integer part (``12345``).
    """
    if value is None or not math.isfinite(value):
        return "-"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3g}"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.3g}"


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
        self.total_steps = total_steps
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
        # Steps and training seconds of this process's rows so far, summed window by window:
        # their ratio is the run's average sps (the trainer's windows exclude evaluations).
        self._sps_step, self._train_steps, self._train_seconds = start_step, 0, 0.0
        notes: list[str] = []
        self._tb: Any = None
        self._tb_file: Any = None
        self._open_tensorboard(run_dir / TENSORBOARD_DIR, start_step, notes)
        self._progress: Any = None
        self._task: Any = None
        # A bar only on a terminal: in a file its redraws and wrapping garble the log.
        self._plain = progress and not _is_terminal(sys.stdout)
        if progress and not self._plain:
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
        for note in notes:
            self.message(note)

    def _open_tensorboard(self, log_dir: Path, start_step: int, notes: list[str]) -> None:
        """Start the TensorBoard writer (a note, not an error, if the package is missing).

        ``purge_step`` makes every writer start with a ``SessionLog.START`` event. A resumed
        run's (at ``start_step + 1``) tells TensorBoard to drop the events a killed process
        wrote after its checkpoint, as :func:`truncate_metrics` drops those rows; a fresh
        run's (at 0) hides events left in the folder by an earlier run, and makes a later
        resume's START the second one, which TensorBoard's plugin reader needs before it
        purges anything (it ignores a run's first START).
        """
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # an environment installed before tensorboard was a dependency
            notes.append(f"note: no TensorBoard events written ({exc}); pip install tensorboard")
            return
        self._tb = SummaryWriter(log_dir=str(log_dir), purge_step=start_step + 1 if start_step > 0 else 0)
        # One Summary holding the whole row, through the writer's own file writer (what
        # add_scalar calls): ~0.08 ms a row where add_scalar per value took ~0.5 ms.
        self._tb_file = self._tb._get_file_writer()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write one row (``global_step`` plus metrics) to every sink."""
        row: dict[str, float | int | None] = {"global_step": int(step)}
        row.update({k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in metrics.items()})
        self._file.write(json.dumps(row, sort_keys=True) + "\n")
        self._file.flush()
        if self._tb_file is not None:
            from tensorboard.compat.proto.summary_pb2 import Summary  # type: ignore[import-untyped]  # no stubs

            values = [
                Summary.Value(tag=k, simple_value=v)
                for k, v in row.items()
                if k != "global_step" and v is not None  # null (non-finite) in the JSONL: no point
            ]
            if values:
                self._tb_file.add_summary(Summary(value=values), int(step))
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if v is not None}, step=int(step))
        sps = row.get("charts/sps")
        if sps is not None and sps > 0 and step > self._sps_step:
            self._train_steps += step - self._sps_step
            self._train_seconds += (step - self._sps_step) / sps
            self._sps_step = int(step)
        if self._plain:
            line = self.progress_line(int(step), row)
            if line is not None:
                print(line, flush=True)
        if self._progress is not None:
            fields: dict[str, str] = {}
            if row.get("charts/episodic_return") is not None:
                fields["ret"] = format_value(row["charts/episodic_return"])
            if self.average_sps is not None:
                fields["sps"] = f"{self.average_sps:.0f}"
            if row.get("eval/mean_return") is not None:
                fields["eval"] = format_value(row["eval/mean_return"])
            self._progress.update(self._task, completed=step, **fields)

    @property
    def average_sps(self) -> float | None:
        """Env steps per second of training over the run so far (this process's part of it)."""
        if self._train_seconds <= 0:
            return None
        return self._train_steps / self._train_seconds

    def progress_line(self, step: int, row: dict[str, Any]) -> str | None:
        """The plain console line of one logged row, or None for a row that gets none.

        A training row gives ``step S/T  sps A  return R`` (A: :attr:`average_sps`), an
        evaluation row ``step S/T  eval M ± D``; the final evaluation's row gets none (the
        trainer prints its own line for it).
        """
        head = f"step {step:>{len(str(self.total_steps))}}/{self.total_steps}"
        if row.get("eval/mean_return") is not None:
            std = row.get("eval/std_return")
            spread = "" if std is None else f" ± {format_value(std)}"
            return f"{head}  eval {format_value(row['eval/mean_return'])}{spread}"
        if "charts/sps" in row:
            sps = "-" if self.average_sps is None else f"{self.average_sps:.0f}"
            return f"{head}  sps {sps}  return {format_value(row.get('charts/episodic_return'))}"
        return None

    def message(self, text: str) -> None:
        """A line for the user (printed above the progress bar).

        Printed as it is: no rich markup or highlighting (a path holding ``[...]`` is text),
        and no wrapping at the bar's width (soft wrap), which broke paths mid-text.
        """
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, flush=True)

    def close(self) -> None:
        """Stop the bar, flush and close every sink."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._file.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = self._tb_file = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes, pytest's capture)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False


def wandb_mode_note() -> str:
    """Where wandb will write, for the start-up line."""
    return f"wandb mode: {os.environ.get('WANDB_MODE', 'default (online if logged in)')}"
