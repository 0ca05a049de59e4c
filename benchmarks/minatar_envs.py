"""Train on our batched torch MinAtar or on the reference package: same returns? less wall time?

    python benchmarks/minatar_envs.py --out runs/minatar_envs                 # Breakout, seeds 0-9, 100k
    python benchmarks/minatar_envs.py --out runs/minatar_envs --report        # tables only
    python benchmarks/minatar_envs.py --quick --out /tmp/minatar-envs-quick   # seconds (the test)

The same agent and config (``Config()`` defaults plus the MinAtar preset, exactly what
``python train.py --env ID`` runs) trains once on ``gumbel_ac/MinAtar-<Game>-v1`` (envs/minatar.py:
batched torch, eager) and once on ``MinAtar/<Game>-v1`` (the ``minatar`` package 1.0.15 through
Gymnasium's ``SyncVectorEnv``), per seed. The two are the same game: tests/test_envs_minatar.py
drives both with the same random draws and asserts identical trajectories. What differs is only
where the random stream comes from (a counter-based hash vs numpy's ``RandomState``) and how fast
a step is. Each run is evaluated with the trainer's deterministic evaluation every
``--eval-every`` env steps on its own env (the trainer cannot evaluate the torch env's
channel-first uint8 frames on the reference's channel-last bool ones, and needs not: same game).

Protocol: runs are interleaved seed by seed, the order of the two envs alternating between seeds,
so drift in machine speed hits both alike; one process, one torch thread; each finished run is
a JSON file under ``OUT/runs/`` and a rerun skips it. Reported: per env the IQM over seeds of the
final evaluation and of the curve's mean (AUC per env step) with 95% percentile-bootstrap CIs
(rliable), the median training seconds (evaluation excluded); paired by seed, the difference
torch - reference of the final return (difference of IQMs, 95% paired-bootstrap CI) and the per-seed ratio of training
seconds. "Same returns" is read as: the paired difference's CI contains 0 (this cannot prove
equality; the CI's width says how large a difference the seeds could have missed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the top-level ``envs`` package registers our torch ids
    sys.path.insert(0, str(ROOT))

from collapse import iqm_ci, parse_overrides, run_seed  # noqa: E402  (same folder)
from suite import curve_mean as suite_curve_mean  # noqa: E402

#: The two envs compared: name -> the id for a game.
VARIANTS = {"torch": "gumbel_ac/MinAtar-{game}-v1", "reference": "MinAtar/{game}-v1"}
GAMES = ("Breakout", "Asterix", "Freeway", "SpaceInvaders", "Seaquest")


def run_path(out: Path, variant: str, seed: int) -> Path:
    return out / "runs" / f"{variant}__s{seed}.json"


def curve_mean(evals: list[list[float]]) -> float:
    """The evaluation curve's mean per env step (``suite.curve_mean`` over ``[step, mean, ...]`` rows)."""
    return suite_curve_mean([e[0] for e in evals], [e[1] for e in evals])


def load_run(out: Path, variant: str, seed: int) -> dict[str, Any] | None:
    """A finished run's saved JSON, None when it has not run."""
    path = run_path(out, variant, seed)
    return dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else None


def train_one(variant: str, seed: int, args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train (or load, when its JSON exists) one seed on one env."""
    saved = load_run(args.out, variant, seed)
    if saved is not None:
        return saved
    ns = argparse.Namespace(
        env=VARIANTS[variant].format(game=args.game),
        steps=args.steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        log_every=args.eval_every,
        threads=args.threads,
    )
    run = run_seed(seed, ns, overrides)
    run.update(variant=variant, env=ns.env, game=args.game, steps=args.steps, overrides=overrides)
    path = run_path(args.out, variant, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(run), encoding="utf-8")
    os.replace(tmp, path)  # a killed run leaves no half-written result
    final = run["evals"][-1][1]
    print(f"{args.game} {variant} seed {seed}: final {final:.2f}, train {run['train_seconds']:.1f} s", flush=True)
    return run


def paired_ci(a: np.ndarray, b: np.ndarray, reps: int = 2_000, seed: int = 0) -> tuple[float, float, float]:
    """``IQM(a) - IQM(b)`` over paired seeds and its 95% paired-bootstrap interval (the study's
    statistic, :func:`gumbel_ac.study.paired_iqm_difference`: a resampled seed brings its pair)."""
    from gumbel_ac.study import paired_iqm_difference

    return paired_iqm_difference(np.asarray(a)[:, None], np.asarray(b)[:, None], reps=reps, seed=seed)


def report(runs: dict[str, dict[int, dict[str, Any]]], args: argparse.Namespace) -> str:
    """The markdown tables: per env, then paired by seed."""
    import torch

    lines = [
        f"{args.game}, {args.steps:,} env steps, seeds {sorted(set().union(*runs.values()))}; "
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
        f"{args.threads} torch thread(s), {platform.machine()}",
        "",
        "| env | seeds | IQM final [95% CI] | IQM curve mean [95% CI] | median training s |",
        "|---|---:|---|---|---:|",
    ]
    for variant, by_seed in runs.items():
        if not by_seed:
            continue
        finals = np.array([r["evals"][-1][1] for r in by_seed.values()])
        aucs = np.array([curve_mean(r["evals"]) for r in by_seed.values()])
        secs = [r["train_seconds"] for r in by_seed.values()]
        f, flo, fhi, _ = iqm_ci(finals)
        a, alo, ahi, _ = iqm_ci(aucs)
        lines.append(
            f"| `{VARIANTS[variant].format(game=args.game)}` | {len(by_seed)} | {f:.2f} [{flo:.2f}, {fhi:.2f}] "
            f"| {a:.2f} [{alo:.2f}, {ahi:.2f}] | {np.median(secs):.1f} |"
        )
    both = sorted(set(runs["torch"]) & set(runs["reference"]))
    if both:
        t, r = runs["torch"], runs["reference"]
        ratio = np.array([r[s]["train_seconds"] / t[s]["train_seconds"] for s in both])
        m, lo, hi = paired_ci(*(np.array([v[s]["evals"][-1][1] for s in both]) for v in (t, r)))
        ma, loa, hia = paired_ci(*(np.array([curve_mean(v[s]["evals"]) for s in both]) for v in (t, r)))
        lines += [
            "",
            f"Paired by seed ({len(both)} seeds), torch - reference: final return {m:+.2f} [{lo:+.2f}, {hi:+.2f}], "
            f"curve mean {ma:+.2f} [{loa:+.2f}, {hia:+.2f}] (difference of IQMs, 95% paired-bootstrap CI); "
            f"training seconds reference / torch: median {np.median(ratio):.3f}x "
            f"(range {ratio.min():.3f}-{ratio.max():.3f}; "
            f"torch faster on {int((ratio > 1).sum())} of {len(both)} seeds).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (runs are resumed from it)")
    p.add_argument("--game", default="Breakout", choices=GAMES)
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--steps", type=int, default=100_000, help="env steps per run")
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="Config overrides (both envs)")
    p.add_argument("--report", action="store_true", help="no training: the tables of --out")
    p.add_argument("--quick", action="store_true", help="2 seeds x 1,000 steps: a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.eval_every, args.eval_episodes = [0, 1], 1_000, 500, 2
    overrides = parse_overrides(args.set)
    if args.quick:
        overrides.setdefault("learning_starts", 200)
    runs: dict[str, dict[int, dict[str, Any]]] = {v: {} for v in VARIANTS}
    tic = time.perf_counter()
    for i, seed in enumerate(args.seeds):
        order = list(VARIANTS) if i % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            if args.report:
                saved = load_run(args.out, variant, seed)
                if saved is not None:
                    runs[variant][seed] = saved
            else:
                runs[variant][seed] = train_one(variant, seed, args, overrides)
    if not any(runs.values()):
        print(f"error: no runs in {args.out / 'runs'}; run without --report first", file=sys.stderr)
        return 2
    text = report(runs, args)
    print(text)
    if not args.report:
        print(f"[{time.perf_counter() - tic:.0f} s]")
    (args.out / "report.md").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
