"""Learning curves from run folders: ``python -m gumbel_ac.plot runs/a runs/b ... --out fig.png``.

Each argument is a run folder or a folder of run folders (``runs/``, a benchmark's output
folder). A run folder holds ``config.json`` and its metrics:

* native runs (``train.py``): ``metrics.jsonl``, one row per log interval;
* Stable-Baselines3 runs: ``gumbel_ac.sb3.export_checkpoint`` writes the same ``config.json``
  (and a checkpoint, no metrics); the metrics are SB3's CSV log, ``progress.csv`` in the run
  folder or one folder below it (``configure_logger("runs/x/sb3_log", ["csv"])``, docs/sb3.md).
  Its columns keep their SB3 names and the common ones are also readable under ours
  (:data:`SB3_KEYS`: ``rollout/ep_rew_mean`` is ``charts/episodic_return``, ...).

Runs are grouped into lines (``--group-by``): by default the seeds of one config -- runs whose
``config.json`` are equal apart from :data:`IGNORED_FIELDS` (seed, run name and folder, and
settings that change only logging, checkpoints or the device) -- or all runs of one estimator,
of one env, or every run alone. A line is the interquartile mean (IQM, the mean of the middle
50% of runs: Agarwal et al. 2021's robust statistic; the plain mean for fewer than 4 runs, where
nothing is trimmed) or, with ``--stat mean``, the mean; the band is its 95% percentile-bootstrap
confidence interval over runs (numpy, seeded: the same figure every time). Runs are compared
where they all have data: each run's curve is linearly interpolated onto the union of the
group's x values inside the range every run covers (identical log steps interpolate to
themselves). One panel per env (their returns have different scales).

The x axis is env steps, or with ``--x seconds`` training seconds: for native runs the time
the trainer measured, summed from ``charts/sps`` (evaluations and checkpoints excluded, as in
``charts/sps``); for SB3 runs ``time/time_elapsed`` (wall time since ``learn`` started).

:func:`compute_curves` returns the plotted data (tests check it); :func:`main` is the CLI.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gumbel_ac.config import RESUME_OVERRIDABLE

#: Config fields that do not make two runs different experiments: the seed, where the run is
#: written, and the fields a resumed run may change except total_steps (logging, checkpoint
#: and evaluation cadence, device, threads: gumbel_ac.config.RESUME_OVERRIDABLE).
IGNORED_FIELDS: frozenset[str] = (RESUME_OVERRIDABLE - {"total_steps"}) | {"seed", "num_seeds", "overwrite"}

#: SB3 logger keys (GumbelAC's, gumbel_ac/sb3/algorithm.py, and SB3's own) and the native
#: names they are also readable under.
SB3_KEYS: dict[str, str] = {
    "time/total_timesteps": "global_step",
    "rollout/ep_rew_mean": "charts/episodic_return",
    "rollout/ep_len_mean": "charts/episodic_length",
    "time/fps": "charts/sps",
    "eval/mean_reward": "eval/mean_return",
    "train/critic_loss": "losses/critic",
    "train/actor_loss": "losses/actor",
    "train/alpha": "charts/alpha",
    "train/entropy": "charts/entropy",
    "train/q_mean": "losses/q_mean",
    "train/gumbel_temperature": "charts/gumbel_temperature",
}

GroupBy = Literal["config", "estimator", "env", "none"]
XAxis = Literal["steps", "seconds"]
Stat = Literal["iqm", "mean"]

#: Bootstrap resamples of the confidence band.
BOOTSTRAP_SAMPLES = 2000


class PlotError(ValueError):
    """A run folder or option that cannot be plotted; the message says why."""


@dataclass
class Run:
    """One run's config and metric rows (``global_step`` plus metrics, and ``seconds``)."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def env(self) -> str:
        return str(self.config.get("env", "?"))

    def series(self, metric: str, x: XAxis) -> tuple[np.ndarray, np.ndarray]:
        """(x, value) of the rows that hold a finite ``metric``, in step order."""
        pairs = sorted(
            (float(row["global_step" if x == "steps" else "seconds"]), float(row[metric]))
            for row in self.rows
            if isinstance(row.get(metric), (int, float))
            and math.isfinite(row[metric])
            and (x == "steps" or row.get("seconds") is not None)
        )
        xs = np.array([p[0] for p in pairs], dtype=float)
        ys = np.array([p[1] for p in pairs], dtype=float)
        return xs, ys


@dataclass
class Curve:
    """One plotted line: ``center`` (IQM or mean over runs) and its 95% CI at each ``x``."""

    label: str
    env: str
    x: np.ndarray
    center: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: list[Path] = field(default_factory=list)


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """The run folders named by ``paths``: each one itself, or its subfolders that are runs."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise PlotError(f"{path} is not a folder")
        if (path / "config.json").is_file():
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir() and (p / "config.json").is_file())
        if not children:
            raise PlotError(f"{path} holds no config.json and no run folders (subfolders with a config.json)")
        found.extend(children)
    return found


def _seconds_from_sps(rows: list[dict[str, Any]]) -> None:
    """Give each native row ``seconds``: the training time up to its step, from charts/sps.

    Each training row's window lasted (its step - the previous training row's) / sps seconds;
    an evaluation row at a step gets the time of the training row at or before it.
    """
    elapsed, last_step = 0.0, 0
    for row in sorted(rows, key=lambda r: r["global_step"]):
        sps = row.get("charts/sps")
        if isinstance(sps, (int, float)) and math.isfinite(sps) and sps > 0:
            elapsed += max(row["global_step"] - last_step, 0) / sps
            last_step = row["global_step"]
        row["seconds"] = elapsed if last_step > 0 else None


def _sb3_csv(path: Path) -> list[dict[str, Any]]:
    """The rows of an SB3 ``progress.csv``, with the native names of :data:`SB3_KEYS` added."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for key, text in raw.items():
                if key is None or text in (None, ""):
                    continue
                try:
                    row[key] = float(text)
                except ValueError:
                    continue
            if "time/total_timesteps" not in row:
                continue
            for sb3_key, ours in SB3_KEYS.items():
                if sb3_key in row:
                    row.setdefault(ours, row[sb3_key])
            row["global_step"] = int(row["global_step"])
            row["seconds"] = row.get("time/time_elapsed")
            rows.append(row)
    return rows


def read_run(path: str | Path) -> Run:
    """A run folder's config and rows: native ``metrics.jsonl``, else SB3's ``progress.csv``."""
    from gumbel_ac.logger import read_metrics

    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlotError(f"{path}: cannot read config.json ({exc})") from None
    if not isinstance(config, dict):
        raise PlotError(f"{path}/config.json is not a JSON object")
    if (path / "metrics.jsonl").is_file():
        rows = read_metrics(path / "metrics.jsonl")
        _seconds_from_sps(rows)
        return Run(path, config, rows)
    csvs = sorted([*path.glob("progress.csv"), *path.glob("*/progress.csv")])
    if csvs:
        return Run(path, config, _sb3_csv(csvs[0]))
    raise PlotError(
        f"{path} has a config.json but no metrics.jsonl (a native run) or progress.csv (an SB3 run logged "
        'with configure_logger(..., ["csv"]) in it or a folder below); an export_checkpoint alone has no curves'
    )


def group_key(config: dict[str, Any], group_by: GroupBy, path: Path) -> str:
    """What the runs of one line share: a JSON text of the config's relevant part."""
    if group_by == "none":
        return str(path)
    if group_by in ("estimator", "env"):
        return json.dumps({"env": config.get("env"), group_by: config.get(group_by)}, sort_keys=True)
    return json.dumps({k: v for k, v in config.items() if k not in IGNORED_FIELDS}, sort_keys=True)


def _labels(groups: dict[str, list[Run]], group_by: GroupBy) -> dict[str, str]:
    """A legend label per group: the estimator, plus the config fields that differ between groups."""
    labels = {}
    configs = {key: runs[0].config for key, runs in groups.items()}
    varying = sorted(
        {
            k
            for c in configs.values()
            for k in c
            if k not in IGNORED_FIELDS | {"env", "estimator"}
            and len({json.dumps(o.get(k), sort_keys=True) for o in configs.values()}) > 1
        }
    )
    for key, runs in groups.items():
        cfg = runs[0].config
        if group_by == "none":
            base = f"{cfg.get('estimator', '?')} {runs[0].path.name}"
        elif group_by == "env":
            base = str(cfg.get("env", "?"))
        else:
            base = str(cfg.get("estimator", "?"))
        if group_by == "config" and varying:
            base += " (" + ", ".join(f"{k}={cfg.get(k)}" for k in varying) + ")"
        if group_by != "none":
            base += f", n={len(runs)}"
        labels[key] = base
    return labels


def aggregate(values: np.ndarray, stat: Stat) -> np.ndarray:
    """IQM or mean over axis -2 of ``values`` (``[..., runs, points]``).

    IQM: sort the runs' values at each point and average the middle ones, dropping
    ``floor(runs / 4)`` from each end (scipy's ``trim_mean(x, 0.25)``, rliable's IQM).
    """
    if stat == "mean":
        return values.mean(axis=-2)
    n = values.shape[-2]
    cut = n // 4
    ordered = np.sort(values, axis=-2)
    return ordered[..., cut : n - cut, :].mean(axis=-2)


def bootstrap_ci(values: np.ndarray, stat: Stat, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The 95% percentile-bootstrap interval of :func:`aggregate` over runs, per point.

    ``values`` is ``[runs, points]``; runs are resampled with replacement
    :data:`BOOTSTRAP_SAMPLES` times by a numpy generator seeded with ``seed``. One run gives
    a zero-width interval (nothing to resample).
    """
    n = values.shape[0]
    if n < 2:
        return values[0].copy(), values[0].copy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))
    stats = aggregate(values[idx], stat)  # [samples, points]
    low, high = np.percentile(stats, [2.5, 97.5], axis=0)
    return low, high


def _common_grid(series: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The union of the runs' x values inside the range every run covers."""
    start = max(xs[0] for xs, _ in series)
    end = min(xs[-1] for xs, _ in series)
    grid = np.unique(np.concatenate([xs for xs, _ in series]))
    return grid[(grid >= start) & (grid <= end)]


def compute_curves(
    runs: Sequence[Run],
    metric: str = "charts/episodic_return",
    *,
    group_by: GroupBy = "config",
    x: XAxis = "steps",
    stat: Stat = "iqm",
    seed: int = 0,
) -> list[Curve]:
    """The lines the figure plots, one per group of runs (in the order groups first appear).

    Runs without a value of ``metric`` are left out of their group; a group none of whose runs
    has one, or whose runs share no x range, gives no line. Raises PlotError if no line is left.
    """
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_key(run.config, group_by, run.path), []).append(run)
    labels = _labels(groups, group_by)
    curves = []
    disjoint: list[str] = []
    for key, members in groups.items():
        series = [(run, *run.series(metric, x)) for run in members]
        series = [(run, xs, ys) for run, xs, ys in series if xs.size > 0]
        if not series:
            continue
        grid = _common_grid([(xs, ys) for _, xs, ys in series])
        if grid.size == 0:
            spans = ", ".join(f"{xs[0]:g}-{xs[-1]:g}" for _, xs, _ in series)
            disjoint.append(f"{labels[key]} (its runs span {spans})")
            continue
        values = np.stack([np.interp(grid, xs, ys) for _, xs, ys in series])
        low, high = bootstrap_ci(values, stat, seed=seed)
        curves.append(
            Curve(
                label=labels[key],
                env=members[0].env,
                x=grid,
                center=aggregate(values, stat),
                low=low,
                high=high,
                runs=[run.path for run, _, _ in series],
            )
        )
    if not curves and disjoint:
        raise PlotError(
            f"the runs of {'; '.join(disjoint)} share no {x} range to average over; "
            f"plot them with --x steps (runs logged at the same env steps overlap there)"
        )
    if not curves:
        known = sorted({k for run in runs for row in run.rows for k in row if k not in ("global_step", "seconds")})
        raise PlotError(f"no run has values of {metric!r}; metrics in these runs: {', '.join(known) or 'none'}")
    return curves


def plot_curves(curves: Sequence[Curve], out: str | Path, *, metric: str, x: XAxis, stat: Stat) -> Path:
    """Draw ``curves`` (one panel per env) to the PNG ``out``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (headless machines, CI)
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(c.env for c in curves))
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4.0), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for curve in (c for c in curves if c.env == env):
            (line,) = ax.plot(curve.x, curve.center, label=curve.label, linewidth=1.6)
            if len(curve.runs) > 1:
                ax.fill_between(curve.x, curve.low, curve.high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(env)
        ax.set_xlabel("env steps" if x == "steps" else "training seconds")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    what = "mean"
    if stat == "iqm":  # with fewer than 4 runs nothing is trimmed: say so rather than claim an IQM
        what = "IQM" if all(len(c.runs) >= 4 for c in curves) else "IQM (the mean where n < 4)"
    fig.suptitle(f"{what} over runs, 95% bootstrap CI shaded", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gumbel_ac.plot",
        description="Learning curves from run folders: the seeds of one config as one line (IQM or mean) with "
        "a shaded 95% bootstrap confidence interval.",
    )
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders (runs/, a benchmark's output)")
    p.add_argument(
        "--metric",
        default="charts/episodic_return",
        help="metric to plot: a metrics.jsonl key such as eval/mean_return or losses/critic, or an SB3 "
        "progress.csv column (default: charts/episodic_return)",
    )
    p.add_argument(
        "--group-by",
        default="config",
        choices=["config", "estimator", "env", "none"],
        help="one line per: config (the seeds of one config; default), estimator, env, or none (every run)",
    )
    p.add_argument(
        "--x",
        default="steps",
        choices=["steps", "seconds"],
        help="x axis: env steps (default) or training seconds (from charts/sps; SB3: time/time_elapsed)",
    )
    p.add_argument(
        "--stat",
        default="iqm",
        choices=["iqm", "mean"],
        help="line: interquartile mean over runs (default; the mean below 4 runs) or the mean",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default: 0)")
    p.add_argument("--out", default="curves.png", help="PNG file to write (default: curves.png)")
    return p


def run(args: argparse.Namespace) -> int:
    """Read the runs, compute and draw the curves, print one line per curve."""
    out = Path(args.out)
    if not out.parent.is_dir():  # now, not after reading every run
        raise PlotError(f"--out {args.out}: folder {out.parent} does not exist")
    runs = [read_run(p) for p in find_runs(args.runs)]
    curves = compute_curves(runs, args.metric, group_by=args.group_by, x=args.x, stat=args.stat, seed=args.seed)
    plot_curves(curves, out, metric=args.metric, x=args.x, stat=args.stat)
    for c in curves:
        print(
            f"{c.env}: {c.label}: {args.stat} {c.center[-1]:.4g} [95% CI {c.low[-1]:.4g}, {c.high[-1]:.4g}] "
            f"at {'step' if args.x == 'steps' else 'second'} {c.x[-1]:.6g}"
        )
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with one ``error:`` line for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
