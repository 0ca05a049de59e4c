"""Same agent, critic and seeds; only the actor's gradient estimator changes. Who learns faster?

    python benchmarks/compare_estimators.py            # 3 tasks x 7 estimators x 3 seeds + tau sweep (~5.5 min)
    python benchmarks/compare_estimators.py --quick    # ~20 s-2 min: 5 estimators, 2 seeds, small budgets
    python benchmarks/compare_estimators.py --tasks catch --estimators gumbel-st softmax-st --seeds 0 1 2 3 4

This is the RL half of the package's question (docs/DESIGN.md §1): *when does Gumbel noise beat a
plain softmax with temperature?* The lab (``python -m gumbel_ac.lab``) measures estimator bias
and variance on synthetic problems; this script trains the full agent. Every run uses the
library's default :class:`~gumbel_ac.config.Config` except for the task budget and the fields
under comparison (``estimator``, ``gumbel_temperature``), so a difference between two rows is
the estimator's doing -- or seed noise, which the stderr columns let you judge.

Tasks (chosen to make estimator differences visible, if there are any):

* ``cartpole`` -- ``gumbel_ac/CartPole-v1``, K = 2 actions. docs/DESIGN.md §4 measured no
  difference here; it is the control.
* ``deepsea`` -- bsuite's DeepSea (size 10, deep exploration: a uniformly random policy finds
  the +1 with probability 2**-10): ``gumbel_ac/DeepSea-v0`` with ``Config.env_kwargs =
  '{"size": 10}'``. As in bsuite it is ONE MDP: the env's default ``mapping_seed=0`` gives every
  sub-env, every seed's training env and the evaluation env the same left/right action mapping
  (so the agent's seed changes the agent, not the task). Each run folder is evaluable as is
  (``python eval.py runs/compare/runs/deepsea__...``: eval.py applies the saved env_kwargs).
* ``catch`` -- bsuite's Catch (``gumbel_ac/Catch-v0``), K = 3 actions.

Plus a temperature sweep: gumbel-st vs softmax-st over ``--sweep-taus`` on ``--sweep-task``.
ReinMax is only defined for tau >= 1 (Liu et al. 2023), so it runs at tau = 1.0 and its rows
say so.

Acting is the same for every estimator: ``Agent.act`` draws a Gumbel-max sample from
pi(.|s) (the estimator changes only the actor's *gradient*), and alpha is auto-tuned toward
the same target entropy -- so "exploration" differences can only come through how each
gradient shapes the policy, not through how actions are drawn.

Outputs in ``--out`` (default ``runs/compare``): ``runs/<task>__<estimator>__tau<tau>__s<seed>``
(each run's folder, with ``metrics.jsonl``), ``curves_<task>.png`` (mean +- stderr over seeds of
training episodic return -- ``charts/episodic_return`` -- and deterministic evaluation return,
vs env steps), ``sweep_<task>.png``, ``summary.csv`` and ``summary.md`` (the table printed to
the console).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import csv
import dataclasses
import json
import math
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np
import torch

from gumbel_ac.estimators import MIN_TAU
from gumbel_ac.logger import read_metrics

#: The estimators every comparison includes (docs/DESIGN.md §3), then the optional ones.
REQUIRED_ESTIMATORS: tuple[str, ...] = ("gumbel-st", "softmax-st", "gumbel-soft", "score", "exact")
OPTIONAL_ESTIMATORS: tuple[str, ...] = ("gumbel-rao", "reinmax")
# MIN_TAU (gumbel_ac.estimators): ReinMax is derived for tau >= 1 (Liu et al. 2023), so its
# runs use max(tau, 1) and the config rejects smaller values.

DEEPSEA_SIZE = 10


@dataclass(frozen=True)
class Task:
    """One environment of the comparison and its budget."""

    name: str
    env: str
    total_steps: int
    quick_steps: int
    eval_every: int
    log_every: int
    threshold: float
    """Deterministic-eval return counted as "solved" for the steps-to-threshold column."""
    eval_episodes: int = 10
    env_kwargs: str = ""
    """``Config.env_kwargs`` of the task (a JSON object string; applies to evaluation too)."""

    @property
    def label(self) -> str:
        """The env id plus its kwargs, for plot titles."""
        return f"{self.env} {self.env_kwargs}" if self.env_kwargs else self.env


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("cartpole", "gumbel_ac/CartPole-v1", 25_000, 6_000, 2_500, 1_000, 475.0),
        # Deterministic env + deterministic policy: every eval episode is the same one.
        Task(
            "deepsea",
            "gumbel_ac/DeepSea-v0",
            30_000,
            12_000,
            2_000,
            1_000,
            0.9,
            eval_episodes=2,
            env_kwargs=json.dumps({"size": DEEPSEA_SIZE}),
        ),
        Task("catch", "gumbel_ac/Catch-v0", 15_000, 5_000, 1_000, 500, 0.8, eval_episodes=20),
    )
}


# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One training run: a task, an estimator, a temperature, a seed."""

    task: str
    estimator: str
    tau: float
    seed: int
    total_steps: int

    @property
    def name(self) -> str:
        return f"{self.task}__{self.estimator}__tau{self.tau:g}__s{self.seed}"


@dataclass
class RunResult:
    """What one run left behind, read back from its ``metrics.jsonl``."""

    spec: RunSpec
    run_dir: str
    wall_seconds: float
    train_steps: list[int]
    train_returns: list[float]
    eval_steps: list[int]
    eval_returns: list[float]
    final_eval: float


def make_config(spec: RunSpec, runs_dir: Path) -> Any:
    """The run's Config: library defaults, except the task budget and the compared fields."""
    from gumbel_ac.config import Config

    task = TASKS[spec.task]
    return Config(
        env=task.env,
        env_kwargs=task.env_kwargs,
        estimator=spec.estimator,
        seed=spec.seed,
        gumbel_temperature=spec.tau,
        total_steps=spec.total_steps,
        device="cpu",
        num_threads=1,
        eval_every=task.eval_every,
        eval_episodes=task.eval_episodes,
        final_eval_episodes=max(task.eval_episodes, 10),
        log_every=task.log_every,
        checkpoint_every=0,  # only the final checkpoint: saving is not what we measure
        keep_checkpoints=1,
        save_replay=False,
        runs_dir=str(runs_dir),
        run_name=spec.name,
        progress=False,
    )


def _value(v: Any) -> float:
    """A logged metric as a float: the logger writes non-finite values as JSON ``null``."""
    return float("nan") if v is None else float(v)


def read_curves(path: Path) -> tuple[list[int], list[float], list[int], list[float], float]:
    """(train steps, train returns, eval steps, eval returns, final eval) from a metrics.jsonl.

    Training return is ``charts/episodic_return`` (mean over the episodes that ended in each
    log window, stochastic policy); eval rows are ``eval/mean_return`` (deterministic policy)
    and the final ``eval/final_mean_return``, which is appended to the eval curve. Rows come
    from :func:`gumbel_ac.logger.read_metrics` (which skips a torn last line).
    """
    ts: list[int] = []
    tr: list[float] = []
    es: list[int] = []
    er: list[float] = []
    final = float("nan")
    for row in read_metrics(path):
        step = int(row["global_step"])
        if "charts/episodic_return" in row:
            ts.append(step)
            tr.append(_value(row["charts/episodic_return"]))
        if "eval/mean_return" in row:
            es.append(step)
            er.append(_value(row["eval/mean_return"]))
        if "eval/final_mean_return" in row:
            final = _value(row["eval/final_mean_return"])
            es.append(step)
            er.append(final)
    return ts, tr, es, er, final


def config_matches(saved: dict[str, Any], config: Any) -> bool:
    """Whether a saved ``config.json`` describes the same run as ``config`` (a Config).

    ``config`` is compared as the trainer saves it, i.e. after ``resolve_auto`` (auto batch and
    buffer sizes filled in). Every field of the current Config must equal the saved value,
    with one relaxation: a field *absent* from the saved file (added to Config after that run
    was trained) matches if its current value is the field's default -- the run was trained
    before the field existed, i.e. with the behaviour the default keeps. A saved key that
    Config no longer has makes it a mismatch (the code changed under it). We compare all fields,
    not only those this script sets, so that a change of a library default (which would change
    the run) is not mistaken for the same run.
    """
    current = config.resolve_auto().to_dict()
    if set(saved) - set(current):
        return False
    defaults = {f.name: f for f in dataclasses.fields(config)}
    for key, value in current.items():
        if key in saved:
            if saved[key] != value:
                return False
            continue
        f = defaults[key]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            return False
        if isinstance(default, tuple):
            default = list(default)
        if value != default:
            return False
    return True


def _finished_with(run_dir: Path, config: Any) -> bool:
    """Whether ``run_dir`` holds a finished run (a final eval row) of ``config`` (see config_matches)."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
        return config_matches(saved, config) and "eval/final_mean_return" in (run_dir / "metrics.jsonl").read_text()
    except (OSError, ValueError):
        return False


def run_one(spec: RunSpec, runs_dir: str, reuse: bool = False) -> RunResult:
    """Train one run (in a worker process) and read its curves back from metrics.jsonl.

    With ``reuse``, a finished run of the same config already in ``runs_dir`` is read instead
    of retrained (CPU training is deterministic per seed, so the numbers are the same): adding
    seeds to an earlier comparison then costs only the new seeds.
    """
    torch.set_num_threads(1)
    from gumbel_ac.trainer import train

    run_dir = Path(runs_dir) / spec.name
    config = make_config(spec, Path(runs_dir))
    if reuse and _finished_with(run_dir, config):
        ts, tr, es, er, final = read_curves(run_dir / "metrics.jsonl")
        return RunResult(spec, str(run_dir), float("nan"), ts, tr, es, er, final)
    if run_dir.exists():  # a stale or different run under this name: start clean
        shutil.rmtree(run_dir)
    tic = time.perf_counter()
    # The trainer's console messages go to a per-run log, so the console shows one line per run.
    with open(Path(runs_dir) / f"{spec.name}.log", "w") as fh, contextlib.redirect_stdout(fh):
        result = train(config)
    wall = time.perf_counter() - tic
    ts, tr, es, er, final = read_curves(Path(result.run_dir) / "metrics.jsonl")
    return RunResult(spec, str(result.run_dir), wall, ts, tr, es, er, final)


def plan_runs(
    tasks: Sequence[str],
    estimators: Sequence[str],
    seeds: Sequence[int],
    *,
    tau: float,
    sweep_task: str | None,
    sweep_taus: Sequence[float],
    steps: dict[str, int],
) -> list[RunSpec]:
    """Every run, interleaved (seed-major, then task, then estimator) so load hits all alike."""
    specs: list[RunSpec] = []
    for seed in seeds:
        for task in tasks:
            for est in estimators:
                specs.append(RunSpec(task, est, max(tau, MIN_TAU.get(est, 0.0)), seed, steps[task]))
        if sweep_task is not None:
            for t in sweep_taus:
                for est in ("gumbel-st", "softmax-st"):
                    spec = RunSpec(sweep_task, est, float(t), seed, steps[sweep_task])
                    if spec not in specs:
                        specs.append(spec)
    return specs


def run_all(
    specs: Sequence[RunSpec], runs_dir: Path, workers: int, log: Any = print, reuse: bool = False
) -> list[RunResult]:
    """Run ``specs`` on ``workers`` processes (1 = in this process); results in ``specs`` order."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    results: dict[RunSpec, RunResult] = {}
    tic = time.perf_counter()

    def done(r: RunResult) -> None:
        results[r.spec] = r
        log(
            f"[{len(results):3d}/{len(specs)}] {r.spec.name:42s} final eval {r.final_eval:8.2f}  "
            + (f"({r.wall_seconds:5.1f} s run, " if math.isfinite(r.wall_seconds) else "(reused, ")
            + f"{time.perf_counter() - tic:6.1f} s total)"
        )

    if workers <= 1:
        for spec in specs:
            done(run_one(spec, str(runs_dir), reuse))
    else:
        # fork: cheap start; every worker sets 1 torch thread.
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(run_one, spec, str(runs_dir), reuse) for spec in specs]
            for fut in cf.as_completed(futures):
                done(fut.result())
    return [results[s] for s in specs]


# --------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------


def _grid_mean_stderr(
    xs: Sequence[Sequence[int]], ys: Sequence[Sequence[float]], grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over seeds of curves interpolated on ``grid`` (NaN where none)."""
    rows = []
    for x, y in zip(xs, ys, strict=True):
        if len(x) == 0:
            continue
        row = np.interp(grid, np.asarray(x, float), np.asarray(y, float), left=np.nan, right=np.nan)
        rows.append(row)
    if not rows:
        return np.full_like(grid, np.nan, dtype=float), np.full_like(grid, np.nan, dtype=float)
    arr = np.vstack(rows)
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        mean = np.nanmean(arr, axis=0)
        n = np.sum(~np.isnan(arr), axis=0)
        std = np.nanstd(arr, axis=0, ddof=1) if arr.shape[0] > 1 else np.zeros_like(mean)
        se = np.where(n > 1, std / np.sqrt(np.maximum(n, 1)), 0.0)
    return mean, se


class _quiet_nan_warnings:
    """Silence numpy's "mean of empty slice" where a grid point has no data yet."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if math.isfinite(x)], float)
    if v.size == 0:
        return float("nan"), float("nan")
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    return float(v.mean()), se


def normalized_auc(steps: Sequence[int], values: Sequence[float], total_steps: int) -> float:
    """Area under the training-return curve divided by its step span: the run's average return.

    The curve is held at its first value back to step 0 (the warm-up is random either way)
    and integrated with the trapezoid rule up to ``total_steps``.
    """
    if len(steps) == 0:
        return float("nan")
    x = np.concatenate([[0.0], np.asarray(steps, float), [float(total_steps)]])
    y = np.concatenate([[values[0]], np.asarray(values, float), [values[-1]]])
    return float(np.trapezoid(y, x) / total_steps) if hasattr(np, "trapezoid") else float(np.trapz(y, x) / total_steps)


def steps_to_threshold(steps: Sequence[int], values: Sequence[float], threshold: float) -> float:
    """First eval step whose deterministic return is >= ``threshold`` (inf if never)."""
    for s, v in zip(steps, values, strict=True):
        if v >= threshold:
            return float(s)
    return math.inf


@dataclass
class Row:
    """One (task, estimator, tau) group of the summary, aggregated over seeds."""

    task: str
    estimator: str
    tau: float
    seeds: int
    final_mean: float
    final_se: float
    auc_mean: float
    auc_se: float
    solved: int
    steps_to_threshold: float
    """Median over seeds of the first eval step >= threshold (inf if fewer than half solved)."""
    threshold: float
    wall_seconds: float
    """Mean wall-clock seconds per run (under whatever else the machine was doing)."""
    per_seed_final: list[float] = field(default_factory=list)


def summarize(results: Sequence[RunResult]) -> list[Row]:
    """Group runs by (task, estimator, tau) and aggregate over seeds."""
    groups: dict[tuple[str, str, float], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.spec.task, r.spec.estimator, r.spec.tau), []).append(r)
    rows = []
    for (task, est, tau), rs in groups.items():
        thr = TASKS[task].threshold
        finals = [r.final_eval for r in rs]
        aucs = [normalized_auc(r.train_steps, r.train_returns, r.spec.total_steps) for r in rs]
        hits = [steps_to_threshold(r.eval_steps, r.eval_returns, thr) for r in rs]
        fm, fs = _mean_se(finals)
        am, ase = _mean_se(aucs)
        rows.append(
            Row(
                task,
                est,
                tau,
                len(rs),
                fm,
                fs,
                am,
                ase,
                solved=sum(math.isfinite(h) for h in hits),
                steps_to_threshold=float(np.median(hits)),
                threshold=thr,
                wall_seconds=float(np.nanmean([r.wall_seconds for r in rs]))
                if any(math.isfinite(r.wall_seconds) for r in rs)
                else float("nan"),
                per_seed_final=finals,
            )
        )
    return rows


def _fmt(x: float, digits: int = 2) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def _fmt_steps(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{x / 1000:.1f}k"


def markdown_table(rows: Sequence[Row]) -> str:
    """The summary as a GitHub markdown table (mean ± stderr over seeds)."""
    head = (
        "| task | estimator | tau | seeds | final eval | AUC (mean train return) | solved | "
        "steps to threshold (median) | s/run |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        digits = 0 if r.task == "cartpole" else 2
        lines.append(
            f"| {r.task} | {r.estimator} | {r.tau:g} | {r.seeds} | "
            f"{_fmt(r.final_mean, digits)} ± {_fmt(r.final_se, digits)} | "
            f"{_fmt(r.auc_mean, digits)} ± {_fmt(r.auc_se, digits)} | "
            f"{r.solved}/{r.seeds} (≥{r.threshold:g}) | {_fmt_steps(r.steps_to_threshold)} | "
            f"{_fmt(r.wall_seconds, 0)} |"
        )
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """One CSV line per (task, estimator, tau) group; per-seed finals as a ;-joined column."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "task",
                "estimator",
                "tau",
                "seeds",
                "final_eval_mean",
                "final_eval_stderr",
                "auc_mean",
                "auc_stderr",
                "threshold",
                "seeds_solved",
                "steps_to_threshold_median",
                "wall_seconds_per_run",
                "final_eval_per_seed",
            ]
        )
        for r in rows:
            w.writerow(
                [
                    r.task,
                    r.estimator,
                    r.tau,
                    r.seeds,
                    r.final_mean,
                    r.final_se,
                    r.auc_mean,
                    r.auc_se,
                    r.threshold,
                    r.solved,
                    r.steps_to_threshold,
                    round(r.wall_seconds, 2),
                    ";".join(f"{v:g}" for v in r.per_seed_final),
                ]
            )


# --------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------

_COLORS = {
    "gumbel-st": "tab:blue",
    "softmax-st": "tab:orange",
    "gumbel-soft": "tab:green",
    "score": "tab:red",
    "exact": "black",
    "gumbel-rao": "tab:purple",
    "reinmax": "tab:brown",
    "gst": "tab:pink",
}


def plot_curves(results: Sequence[RunResult], task: str, tau: float, path: Path) -> None:
    """Training and deterministic-eval return vs env steps, mean ± stderr over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in results if r.spec.task == task and r.spec.tau == max(tau, MIN_TAU.get(r.spec.estimator, 0))]
    if not mine:
        return
    total = max(r.spec.total_steps for r in mine)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4), sharey=True)
    estimators = list(dict.fromkeys(r.spec.estimator for r in mine))
    for est in estimators:
        rs = [r for r in mine if r.spec.estimator == est]
        label = f"{est} (tau {rs[0].spec.tau:g})" if rs[0].spec.tau != tau else est
        for ax, xs, ys, step in (
            (axes[0], [r.train_steps for r in rs], [r.train_returns for r in rs], TASKS[task].log_every),
            (axes[1], [r.eval_steps for r in rs], [r.eval_returns for r in rs], TASKS[task].eval_every),
        ):
            grid = np.arange(step, total + 1, step, dtype=float)
            mean, se = _grid_mean_stderr(xs, ys, grid)
            color = _COLORS.get(est)
            ax.plot(grid, mean, color=color, label=label, lw=1.4)
            ax.fill_between(grid, mean - se, mean + se, color=color, alpha=0.15, lw=0)
    seeds = len({r.spec.seed for r in mine})
    axes[0].set_title("training episodic return (sampled actions)", fontsize=9)
    axes[1].set_title("deterministic evaluation return", fontsize=9)
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("return")
    axes[1].axhline(TASKS[task].threshold, color="gray", ls=":", lw=1)
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{TASKS[task].label}: mean ± stderr over {seeds} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_sweep(rows: Sequence[Row], task: str, path: Path) -> None:
    """AUC and final eval vs Gumbel temperature, gumbel-st vs softmax-st (mean ± stderr)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    any_points = False
    for est in ("gumbel-st", "softmax-st"):
        rs = sorted((r for r in rows if r.task == task and r.estimator == est), key=lambda r: r.tau)
        if len(rs) < 2:
            continue
        any_points = True
        taus = [r.tau for r in rs]
        for ax, m, s in (
            (axes[0], [r.auc_mean for r in rs], [r.auc_se for r in rs]),
            (axes[1], [r.final_mean for r in rs], [r.final_se for r in rs]),
        ):
            ax.errorbar(taus, m, yerr=s, marker="o", capsize=3, color=_COLORS[est], label=est)
    if not any_points:
        plt.close(fig)
        return
    axes[0].set_ylabel("AUC (mean training return)")
    axes[1].set_ylabel("final deterministic eval")
    taus = sorted({r.tau for r in rows if r.task == task and r.estimator in ("gumbel-st", "softmax-st")})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(taus, [f"{t:g}" for t in taus])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("Gumbel temperature tau")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{TASKS[task].label}: temperature sweep (mean ± stderr over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# The core function and the command line
# --------------------------------------------------------------------------------------


@dataclass
class Settings:
    """Everything one comparison needs; ``compare`` is a function of it alone."""

    out: Path = Path("runs/compare")
    tasks: tuple[str, ...] = ("cartpole", "deepsea", "catch")
    estimators: tuple[str, ...] = REQUIRED_ESTIMATORS + OPTIONAL_ESTIMATORS
    seeds: tuple[int, ...] = (0, 1, 2)
    tau: float = 0.6
    """The Gumbel temperature of the main comparison (the Config default)."""
    sweep_task: str | None = "catch"
    sweep_taus: tuple[float, ...] = (0.2, 0.6, 1.5, 4.0)
    steps: dict[str, int] = field(default_factory=lambda: {k: t.total_steps for k, t in TASKS.items()})
    workers: int = 2
    reuse: bool = False
    """Read finished runs of the same config from ``out/runs`` instead of retraining them."""


@dataclass
class Comparison:
    """What ``compare`` returns: the runs, the aggregated rows, the table and the files written."""

    results: list[RunResult]
    rows: list[Row]
    table: str
    files: list[Path]
    wall_seconds: float


def compare(settings: Settings, log: Any = print) -> Comparison:
    """Train every planned run, then write the curves, sweep plot, CSV and markdown table."""
    tic = time.perf_counter()
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    specs = plan_runs(
        settings.tasks,
        settings.estimators,
        settings.seeds,
        tau=settings.tau,
        sweep_task=settings.sweep_task,
        sweep_taus=settings.sweep_taus,
        steps=settings.steps,
    )
    log(f"{len(specs)} runs on {settings.workers} worker(s) -> {out}")
    results = run_all(specs, out / "runs", settings.workers, log=log, reuse=settings.reuse)
    rows = summarize(results)
    files: list[Path] = []
    for task in settings.tasks:
        path = out / f"curves_{task}.png"
        plot_curves(results, task, settings.tau, path)
        files.append(path)
    if settings.sweep_task is not None:
        path = out / f"sweep_{settings.sweep_task}.png"
        plot_sweep(rows, settings.sweep_task, path)
        files.append(path)
    main_rows = [
        r for r in rows if r.task in settings.tasks and r.tau == max(settings.tau, MIN_TAU.get(r.estimator, 0))
    ]
    sweep_rows = sorted(
        (r for r in rows if r.task == settings.sweep_task and r.estimator in ("gumbel-st", "softmax-st")),
        key=lambda r: (r.estimator, r.tau),
    )
    table = f"### Estimators (tau = {settings.tau:g})\n\n{markdown_table(main_rows)}"
    if sweep_rows:
        table += f"\n\n### Temperature sweep on {settings.sweep_task}\n\n{markdown_table(sweep_rows)}"
    write_csv(rows, out / "summary.csv")
    (out / "summary.md").write_text(table + "\n")
    files += [out / "summary.csv", out / "summary.md"]
    return Comparison(results, rows, table, [f for f in files if f.exists()], time.perf_counter() - tic)


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    """Command-line flags -> :class:`Settings` (``--quick`` shrinks every budget)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=None)
    p.add_argument("--estimators", nargs="+", default=None, help="default: all 7 (5 with --quick)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 2 (0 1 with --quick)")
    p.add_argument("--tau", type=float, default=0.6, help="Gumbel temperature of the main comparison")
    p.add_argument("--sweep-task", default="catch", help="task of the tau sweep ('none' to skip)")
    p.add_argument("--sweep-taus", nargs="+", type=float, default=None)
    p.add_argument("--steps", nargs="+", default=[], metavar="TASK=N", help="override a task's env steps")
    p.add_argument("--workers", type=int, default=2, help="parallel training processes (1 torch thread each)")
    p.add_argument(
        "--reuse", action="store_true", help="reuse finished runs of the same config in OUT/runs (e.g. to add seeds)"
    )
    p.add_argument("--quick", action="store_true", help="~2 minutes: 5 estimators, 2 seeds, small budgets")
    a = p.parse_args(argv)
    steps = {k: (t.quick_steps if a.quick else t.total_steps) for k, t in TASKS.items()}
    for item in a.steps:
        k, _, v = item.partition("=")
        if k not in TASKS or not v.isdigit():
            p.error(f"--steps wants TASK=N with TASK in {list(TASKS)}, got {item!r}")
        steps[k] = int(v)
    sweep_task = None if a.sweep_task.lower() == "none" else a.sweep_task
    if sweep_task is not None and sweep_task not in TASKS:
        p.error(f"--sweep-task must be one of {list(TASKS)} or none")
    default = Settings()
    return Settings(
        out=a.out,
        tasks=tuple(a.tasks or default.tasks),
        estimators=tuple(a.estimators or (REQUIRED_ESTIMATORS if a.quick else default.estimators)),
        seeds=tuple(a.seeds if a.seeds is not None else ((0, 1) if a.quick else default.seeds)),
        tau=a.tau,
        sweep_task=sweep_task,
        sweep_taus=tuple(a.sweep_taus or ((0.2, 0.6, 2.0) if a.quick else default.sweep_taus)),
        steps=steps,
        workers=a.workers,
        reuse=a.reuse,
    )


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_args(argv)
    from gumbel_ac.estimators import get_estimator

    for est in settings.estimators:  # fail before hours of training, not after
        get_estimator(est)
    result = compare(settings)
    print()
    print(result.table)
    print(f"\nwall time {result.wall_seconds:.0f} s; files: " + ", ".join(str(f) for f in result.files))


if __name__ == "__main__":
    main()
