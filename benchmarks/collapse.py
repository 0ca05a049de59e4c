"""Does a solved policy stay solved? Seeds of one config, their eval curves and diagnostics.

    python benchmarks/collapse.py                                   # defaults, seeds 0-19, 100k
    python benchmarks/collapse.py --set alpha_max=0.02 --out runs/collapse_amax.json
    python benchmarks/collapse.py --report runs/collapse_base.json runs/collapse_amax.json
    python benchmarks/collapse.py --env Acrobot-v1 --seeds 0 1 2 --steps 50000
    python benchmarks/collapse.py --quick                           # a few seconds (the test)
    python benchmarks/collapse.py --suite bench/cartpole_sb3 --methods ppo dqn   # SB3's runs, same tables

``--suite`` reads the runs that ``benchmarks/suite.py`` saved in its ``--out`` folder (SB3 PPO
and DQN with RL-Zoo's hyperparameters, evaluated deterministically on the same env) and prints
the same fraction/IQM tables for them, so the baselines are reported the same way (they log no
diagnostics: those tables are left out). For CartPole-v1 at 100k with 20 episodes every 5k:

    python benchmarks/suite.py --out bench/cartpole_sb3 --tasks CartPole-v1 --methods ppo dqn \
        --seeds 0 1 ... 19 --steps-scale 2 --eval-points 20 --eval-episodes 20

Each seed trains with ``gumbel_ac.train`` (sequentially, one process, one torch thread) and
is evaluated with the trainer's own deterministic evaluation every ``--eval-every`` env steps
(``--eval-episodes`` episodes, 20 like the final evaluation) on the training env. From the
run's ``metrics.jsonl`` it keeps the logged diagnostics (alpha, entropy, critic and actor
loss, mean Q, training return). Printed, per config:

- the fraction of seeds whose evaluation at each ``--budgets`` step (default: half the run
  and its end; the end is the final 20-episode evaluation) is >= the threshold, and the IQM
  of those evaluations with a 95% percentile-bootstrap CI over seeds (rliable's
  ``get_interval_estimates`` when it imports, else the same bootstrap in numpy; Agarwal et
  al. 2021, arXiv:2108.13264);
- the median env steps and training seconds (evaluation excluded) to the first evaluation
  >= the threshold (an unsolved seed counts as never: the median then says so);
- which seeds dip after solving (an evaluation below ``--dip-below`` times the threshold
  after the first hit) and the diagnostics over the ``--window`` env steps before each
  seed's first dip, next to the stable seeds' over the same steps: the evidence for what
  precedes a collapse.

``--out`` saves every seed's curves as JSON; ``--report`` prints the tables of saved files
without training (several files: one block each, e.g. before and after a change).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np

#: Logged diagnostics kept per log row (metrics.jsonl names), with the short names printed.
DIAGNOSTICS = {
    "charts/alpha": "alpha",
    "charts/entropy": "entropy",
    "losses/critic": "critic_loss",
    "losses/actor": "actor_loss",
    "losses/q_mean": "q_mean",
    "charts/episodic_return": "train_return",
}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` as Config keyword arguments (values parsed as JSON when they
    parse, else kept as strings; JSON lists become tuples for tuple fields)."""
    from gumbel_ac.config import Config

    names = {f.name for f in dataclasses.fields(Config)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise SystemExit(f"--set takes Config fields as key=value, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def default_threshold(env: str) -> float | None:
    """Gymnasium's ``reward_threshold`` of ``env`` (CartPole-v1: 475), None when unknown."""
    try:
        import gymnasium as gym

        return gym.spec(env).reward_threshold
    except Exception:  # not a Gymnasium id (gumbel_ac/ envs): the caller must give one
        return None


def run_seed(seed: int, args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train one seed; its evaluations ``[step, mean, std, train_seconds]`` and log rows."""
    from gumbel_ac.config import Config
    from gumbel_ac.logger import read_metrics
    from gumbel_ac.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        settings: dict[str, Any] = {
            "env": args.env,
            "seed": seed,
            "total_steps": args.steps,
            "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes,
            "final_eval_episodes": args.eval_episodes,
            "checkpoint_every": 0,
            "log_every": args.log_every,
            "progress": False,
            "runs_dir": tmp,
            "run_name": f"s{seed}",
            "num_threads": args.threads,
        }
        settings.update(overrides)
        tic = time.perf_counter()
        # The --set fields are named: the env's preset fills in only the others, even where a
        # --set value repeats the default (Config.with_overrides).
        result = train(Config(**settings).naming(overrides))
        wall = time.perf_counter() - tic
        rows = read_metrics(Path(result.run_dir) / "metrics.jsonl")
    logs = [
        {"step": r["global_step"], **{short: r[k] for k, short in DIAGNOSTICS.items() if k in r}}
        for r in rows
        if "charts/alpha" in r
    ]
    return {
        "seed": seed,
        "evals": [[e.step, e.mean, e.std, e.train_seconds] for e in result.evals],
        "logs": logs,
        "train_seconds": result.train_seconds,
        "wall_seconds": wall,
        "interrupted": result.interrupted,
    }


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle half (rliable's ``aggregate_iqm``)."""
    s = np.sort(np.asarray(x, dtype=np.float64))
    k = int(0.25 * len(s))
    return float(s[k : len(s) - k].mean())


def iqm_ci(x: np.ndarray, reps: int = 2_000, seed: int = 0) -> tuple[float, float, float, str]:
    """(IQM, low, high, source): the 95% percentile-bootstrap CI over seeds.

    rliable's ``get_interval_estimates`` when it imports; its import can fail for reasons of
    its dependencies (arch 7.2 with pandas 3 raises a TypeError at import), so any error
    falls back to the same percentile bootstrap in numpy, and the source is printed."""
    x = np.asarray(x, dtype=np.float64)
    try:
        from rliable import metrics  # type: ignore[import-not-found]
        from rliable_seeded import interval_estimates

        point, ci = interval_estimates(
            {"m": x[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps, seed=seed
        )
        return float(point["m"][0]), float(ci["m"][0, 0]), float(ci["m"][1, 0]), "rliable"
    except Exception:
        rng = np.random.default_rng(seed)
        boots = np.array([iqm(x[rng.integers(0, len(x), len(x))]) for _ in range(reps)])
        lo, hi = np.percentile(boots, [2.5, 97.5])
        return iqm(x), float(lo), float(hi), "numpy percentile bootstrap"


def value_at(run: dict[str, Any], budget: int, num_envs: int, steps: int | None = None) -> float:
    """The evaluation at ``budget`` env steps: the last one at or before it, ``budget``
    rounded up to a whole vector step (the trainer's steps are multiples of ``num_envs``);
    at the run's own budget ``steps``, its final evaluation (SB3's PPO may end a rollout past
    the budget, and evaluates again there)."""
    if steps is not None and budget >= steps and run["evals"]:
        return float(run["evals"][-1][1])
    budget = -(-budget // num_envs) * num_envs
    before = [e for e in run["evals"] if e[0] <= budget]
    return float(before[-1][1]) if before else math.nan


def first_hit(run: dict[str, Any], threshold: float) -> tuple[float, float]:
    """(env steps, training seconds) of the first evaluation >= threshold, inf if none."""
    for step, mean, _std, secs in run["evals"]:
        if mean >= threshold:
            return float(step), float(secs)
    return math.inf, math.inf


def dip_level(threshold: float, dip_below: float) -> float:
    """The return below which an evaluation is a dip: ``dip_below * threshold`` for a positive
    threshold, and the same distance below it for a negative one (``threshold - (1 -
    dip_below) * |threshold|``: Acrobot's -100 with 0.9 gives -110)."""
    return threshold - (1.0 - dip_below) * abs(threshold)


def first_dip(run: dict[str, Any], threshold: float, dip_below: float, held: int) -> int | None:
    """Env step of the first evaluation below :func:`dip_level` after the policy held the
    threshold for ``held`` evaluations in a row (a collapse of a solved policy, not the noise
    of one still learning); None if it never dips after that."""
    evals, solved = run["evals"], False
    level = dip_level(threshold, dip_below)
    for i, (step, mean, _std, _secs) in enumerate(evals):
        if solved and mean < level:
            return int(step)
        solved = solved or all(e[1] >= threshold for e in evals[max(0, i - held + 1) : i + 1]) and i + 1 >= held
    return None


def window_stats(run: dict[str, Any], lo: float, hi: float) -> dict[str, float]:
    """Mean of each diagnostic, and the max of critic loss and mean Q, over the log rows
    with ``lo <= step < hi``."""
    rows = [r for r in run["logs"] if lo <= r["step"] < hi]
    out = {}
    for name in DIAGNOSTICS.values():
        vals = [r[name] for r in rows if name in r]
        out[name] = float(np.mean(vals)) if vals else math.nan
        if name in ("critic_loss", "q_mean"):
            out[name + "_max"] = float(np.max(vals)) if vals else math.nan
    return out


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "never" if x == math.inf else "-"
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:,.0f}"


def suite_data(folder: Path, method: str, env: str, threshold: float | None) -> dict[str, Any]:
    """One method's runs saved by ``benchmarks/suite.py`` (``folder/runs/<task>__<method>__s<seed>.json``)
    as this script's data: their evaluation curves, no diagnostics."""
    paths = sorted((folder / "runs").glob(f"{env}__{method}__s*.json"), key=lambda p: int(p.stem.rsplit("__s", 1)[1]))
    if not paths:
        raise SystemExit(f"no {method} runs of {env} in {folder / 'runs'}: run benchmarks/suite.py --out {folder}")
    saved = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    budget = int(saved[0]["budget"])
    return {
        "label": f"SB3 {method.upper()} (RL-Zoo hyperparameters, benchmarks/suite.py)",
        "env": env,
        "steps": budget,
        "budgets": None,
        "threshold": threshold if threshold is not None else default_threshold(env),
        "overrides": None,
        "num_envs": int(saved[0].get("settings", {}).get("n_envs", 1)),
        "runs": [
            {"seed": r["seed"], "evals": r["evals"], "logs": [], "train_seconds": r["train_seconds"]} for r in saved
        ],
    }


def report(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Print one config's tables; return its summary numbers."""
    runs, threshold = data["runs"], data["threshold"]
    steps = data["steps"]
    budgets = data.get("budgets") or [steps // 2, steps]
    target = data.get("target_entropy")
    print(f"\n## {data['label']}: {data['env']}, {len(runs)} seeds, {steps} steps, threshold {threshold:g}")
    if data["overrides"] is not None:  # None: not our Config (SB3's runs)
        print(f"overrides: {json.dumps(data['overrides']) if data['overrides'] else 'none (defaults)'}")
    summary: dict[str, Any] = {"label": data["label"]}
    print("\n| budget | seeds >= threshold | IQM eval return [95% CI] | failing seeds |")
    print("|---|---|---|---|")
    for b in budgets:
        vals = np.array([value_at(r, b, data.get("num_envs", 1), steps) for r in runs])
        ok = vals >= threshold
        m, lo, hi, src = iqm_ci(vals)
        failing = ", ".join(f"{r['seed']} ({v:.0f})" for r, v in zip(runs, vals, strict=True) if not v >= threshold)
        print(f"| {b:,} | {ok.sum()}/{len(runs)} | {m:.1f} [{lo:.1f}, {hi:.1f}] | {failing or '-'} |")
        summary[f"solved_{b}"] = int(ok.sum())
        summary[f"iqm_{b}"] = (m, lo, hi)
    print(f"(CI: {src})")
    hits = [first_hit(r, threshold) for r in runs]
    med_steps = statistics.median(h[0] for h in hits)
    med_secs = statistics.median(h[1] for h in hits)
    wall = statistics.median(r["train_seconds"] for r in runs)
    print(
        f"median to first eval >= {threshold:g}: {_fmt(med_steps)} (env steps), {_fmt(med_secs)} (s of training) "
        f"(median run: {wall:.1f} s training for {steps:,} steps)"
    )
    summary.update(median_steps=med_steps, median_seconds=med_secs)

    dips = {r["seed"]: first_dip(r, threshold, args.dip_below, args.held) for r in runs}
    dipping = [r for r in runs if dips[r["seed"]] is not None]
    held = [r for r in runs if first_dip(r, threshold, 2.0, args.held) is not None]  # held the threshold
    stable = [r for r in held if dips[r["seed"]] is None]
    print(
        f"\ncollapse = an eval < {dip_level(threshold, args.dip_below):g} after {args.held} evals in a row "
        f">= {threshold:g}: "
        f"{len(dipping)} of the {len(held)} seeds that held the threshold collapse "
        f"({', '.join(str(r['seed']) for r in dipping) or '-'}), {len(stable)} stay"
    )
    if not any(r["logs"] for r in runs):  # SB3's runs (--suite): no diagnostics to show
        return summary
    cols = ["alpha", "entropy", "critic_loss", "critic_loss_max", "q_mean", "q_mean_max", "train_return"]
    head = "| group | seed | window (env steps) | " + " | ".join(cols) + (" | entropy / target |" if target else " |")
    print(
        f"\ndiagnostics over the {args.window:,} env steps before each collapse (mean; _max: the largest "
        "log row), and the stable seeds' over the window ending at the median collapse step:"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))

    def row(group: str, run: dict[str, Any], lo: float, hi: float) -> dict[str, float]:
        w = window_stats(run, lo, hi)
        ratio = f" | {w['entropy'] / target:.2f}" if target else ""
        print(
            f"| {group} | {run['seed']} | {lo:,.0f}-{hi:,.0f} | " + " | ".join(_fmt(w[c]) for c in cols) + f"{ratio} |"
        )
        return w

    groups: dict[str, list[dict[str, float]]] = {"collapsing": [], "stable": []}
    for r in dipping:
        d = dips[r["seed"]]
        assert d is not None
        groups["collapsing"].append(row("collapsing", r, max(0, d - args.window), d))
    if dipping:
        at = statistics.median(d for d in dips.values() if d is not None)
        groups["stable"] = [row("stable", r, max(0, at - args.window), at) for r in stable]
    for group, rows in groups.items():
        if rows:
            med = {c: statistics.median(w[c] for w in rows) for c in cols[:-1]}
            print(f"median over {group} seeds: " + ", ".join(f"{k} {_fmt(v)}" for k, v in med.items()))
            summary[f"diag_{group}"] = med
    # The end state: the last quarter of the run, seeds that end below the threshold vs the rest.
    lo = steps - steps // 4
    print(f"\nthe last quarter of the run ({lo:,}-{steps:,} env steps), by the final evaluation:")
    print(head.replace("| window (env steps) ", "| final eval "))
    print("|" + "---|" * (head.count("|") - 1))
    ends: dict[str, list[dict[str, float]]] = {"ends below": [], "ends >=": []}
    for r in sorted(runs, key=lambda r: r["evals"][-1][1]):
        group = "ends below" if r["evals"][-1][1] < threshold else "ends >="
        w = window_stats(r, lo, steps + 1)
        ends[group].append(w)
        ratio = f" | {w['entropy'] / target:.2f}" if target else ""
        cells = " | ".join(_fmt(w[c]) for c in cols)
        print(f"| {group} | {r['seed']} | {r['evals'][-1][1]:.0f} | {cells}{ratio} |")
    for group, rows in ends.items():
        if rows:
            med = {c: statistics.median(w[c] for w in rows) for c in cols[:-1]}
            print(
                f"median over seeds that {group} {threshold:g}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in med.items())
            )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(20)))
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per seed")
    parser.add_argument("--budgets", type=int, nargs="+", help="steps at which 'ends >= threshold' is read")
    parser.add_argument("--eval-every", type=int, default=2_500)
    parser.add_argument("--eval-episodes", type=int, default=20, help="per evaluation (periodic and final)")
    parser.add_argument("--log-every", type=int, default=1_000, help="env steps per diagnostics row")
    parser.add_argument("--threshold", type=float, help="default: the env's Gymnasium reward_threshold")
    parser.add_argument("--dip-below", type=float, default=0.9, help="a dip: eval < this x threshold")
    parser.add_argument("--window", type=int, default=10_000, help="env steps of diagnostics before a dip")
    parser.add_argument("--held", type=int, default=3, help="evals in a row >= threshold before a dip counts")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="Config overrides")
    parser.add_argument("--label", help="name of this config in the tables (default: the overrides)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--workers", type=int, default=1, help="seeds trained at once, one process each (results are per seed)"
    )
    parser.add_argument("--out", help="save every seed's curves and diagnostics here (JSON)")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="print saved results; train nothing")
    parser.add_argument("--quick", action="store_true", help="2 seeds x 3k steps: a smoke test of the script")
    parser.add_argument("--suite", type=Path, metavar="DIR", help="print the tables of benchmarks/suite.py's runs")
    parser.add_argument("--methods", nargs="+", default=["ppo", "dqn"], help="with --suite: which methods")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.report or args.suite:
        for path in args.report or []:
            report(json.loads(Path(path).read_text(encoding="utf-8")), args)
        for method in args.methods if args.suite else []:
            report(suite_data(args.suite, method, args.env, args.threshold), args)
        return
    import torch

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    if args.quick:
        args.seeds, args.steps, args.eval_every, args.eval_episodes, args.log_every = [0, 1], 3_000, 1_000, 2, 500
        overrides.setdefault("learning_starts", 500)
        args.window = 1_000
    threshold = args.threshold if args.threshold is not None else default_threshold(args.env)
    if threshold is None:
        raise SystemExit(f"{args.env} has no reward_threshold: give --threshold")
    from gumbel_ac.config import Config

    label = args.label or (" ".join(args.set) if args.set else "defaults")
    print(f"torch {torch.__version__}, {args.threads} thread(s); {label}; seeds {args.seeds}", flush=True)
    resolved = Config(**{"env": args.env, **overrides}).naming(overrides).resolve_auto()
    runs: list[dict[str, Any]] = []
    data: dict[str, Any] = {
        "label": label,
        "env": args.env,
        "steps": args.steps,
        "budgets": args.budgets,
        "threshold": threshold,
        "overrides": overrides,
        "target_entropy_ratio": resolved.target_entropy_ratio,
        "num_envs": resolved.num_envs,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "runs": runs,
    }
    nvec = _action_counts(args.env)
    if nvec:  # the trainer's rule (gumbel_ac.agent.default_target_entropy)
        data["target_entropy"] = resolved.target_entropy_ratio * sum(math.log(n) for n in nvec) or None
    with contextlib.ExitStack() as stack:  # the pool, if any, is terminated however the loop ends
        if args.workers > 1:  # each seed is its own process; imap keeps the seed order of the output
            import multiprocessing

            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(min(args.workers, len(args.seeds))))
            done = pool.imap(functools.partial(run_seed, args=args, overrides=overrides), args.seeds)
        else:
            done = (run_seed(seed, args, overrides) for seed in args.seeds)
        for seed, run in zip(args.seeds, done, strict=True):
            if run["interrupted"]:  # Ctrl-C / SIGTERM: the trainer stopped early; keep the finished seeds
                print(f"  seed {seed} interrupted: not recorded; stopping the sweep", flush=True)
                break
            runs.append(run)
            if args.out:  # after every seed: a long sweep can be read (--report) while it runs
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(data), encoding="utf-8")
            hit = first_hit(run, threshold)
            print(
                f"  seed {seed}: first eval >= {threshold:g} at step {_fmt(hit[0])}; last evals "
                + " ".join(f"{e[1]:.0f}" for e in run["evals"][-6:])
                + f" ({run['wall_seconds']:.1f} s wall)",
                flush=True,
            )
    report(data, args)


def _action_counts(env: str) -> tuple[int, ...] | None:
    """Actions per head of a Gymnasium Discrete env (for the entropy target), else None."""
    try:
        import gymnasium as gym

        space = gym.make(env).action_space
        return (int(space.n),) if hasattr(space, "n") else None
    except Exception:
        return None


if __name__ == "__main__":
    main()
