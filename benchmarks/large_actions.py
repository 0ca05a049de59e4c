"""Large action spaces: gumbel_ac's estimators (enumerated vs sampled critic target) vs SB3 PPO.

    python benchmarks/large_actions.py        # full design: 5 seeds, 20k/10k steps (> 1 h on 2 cores)
    python benchmarks/large_actions.py --quick    # CI smoke (< 60 s): 2 small tasks, 1 seed
    python benchmarks/large_actions.py --seeds 0 1 2 --steps-scale 0.5 --costly-seeds 1   # docs/large_actions.md
    python benchmarks/large_actions.py --tasks dials-8x8 --methods gumbel-st ppo --seeds 0 1 2

Tasks (episodes of 8 steps, optimal return 8 on all of them; envs/dials.py, envs/bandit.py):

* ``dials-HxC`` -- ``gumbel_ac/Dials-v0`` with ``heads=H, choices=C, reward="count"``:
  ``MultiDiscrete([C] * H)``, ``C ** H`` joint actions (16, 4096, 1.7e7, 6.9e10). Uniform
  random actions return ``8 / C``.
* ``bandit-K`` -- ``gumbel_ac/Bandit-v0`` with ``arms=K`` (width 0.02): ``Discrete(K)``, K in
  {16, 128, 1024}. Uniform random arms return about ``8 / K`` (16, 128 arms) to 0.4 (1024).

Methods, all at the same env-step budget per task:

* ``gumbel-st``, ``gumbel-rao``, ``score`` -- the native trainer (``gumbel_ac.trainer.train``)
  with the library defaults: up to ``max_enumerated_actions`` = 256 joint actions the critic
  target (and score's baseline) enumerate every action, above it the target averages
  ``target_action_samples`` = 4 sampled next actions and score uses a leave-one-out baseline
  of ``score_samples`` = 4 draws.
* ``gumbel-st-enum`` / ``gumbel-st-sampled`` -- gumbel-st with ``max_enumerated_actions`` 4096
  (enumerated target) vs 1 (sampled target, 4 samples), only on tasks with at most 4096 joint
  actions, where both fit: enumeration vs sampling of the same estimator. Where the default
  ``gumbel-st`` run coincides with one of them (16, 128 joint actions: enumerated; 1024, 4096:
  sampled) it is not run a second time: ``gumbel-st`` rows appear on the larger tasks only.
* ``ppo`` -- SB3 PPO on the same batched torch env through ``gumbel_ac.sb3`` (compatibility
  path, host copies every step): RL-Zoo's CartPole-v1 shape adapted -- 8 envs, n_steps 32,
  batch 256, 10 epochs, gae_lambda 0.8, clip 0.2, ent_coef 0.0, constant lr 1e-3 -- the same
  for every task, MlpPolicy with the hidden widths ours uses (its preset, else 64, 64).
  gamma: the library's per-env preset
  (``gumbel_ac/presets.py``, which gives ours gamma 0 on Dials and the Bandit: rounds are
  independent of the action) when it has one, so both learners get the same discount; else
  RL-Zoo's 0.98.

Evaluation: every ``eval_every`` env steps (and at the end), 32 deterministic episodes of the
task; evaluation time is excluded from the training clock (ours: ``EvalRecord.train_seconds``;
PPO: ``sb3_common.TimedEval``). Each run executes in a fresh ``spawn``-ed worker process
(``maxtasksperchild=1``), one torch thread each, ``--workers`` (2) at a time; the worker's
``ru_maxrss`` at the end of the run is its peak memory (it includes the interpreter, torch
and the imports: the idle floor of a worker is printed for reference).

Reported per (task, method): final return as a fraction of optimal (mean ± standard error over
seeds; the IQM with a 95% bootstrap CI -- from ``rliable`` if importable, else a percentile
bootstrap over seeds in numpy), env steps to the first eval >= 90% of optimal (median over
seeds, "never" when the median run never got there; how many seeds did), training seconds
(median) and peak RSS (max over seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np

HERE = Path(__file__).resolve().parent
OPTIMAL_RETURN = 8.0
SOLVED_FRACTION = 0.9
EVAL_EPISODES = 32
PPO_LR = 1e-3


@dataclass(frozen=True)
class Task:
    """One environment of the measurement and its budget."""

    name: str
    env: str
    kwargs: dict[str, Any]
    joint_actions: int
    steps: int
    eval_every: int
    quick_steps: int = 1_600
    quick_eval_every: int = 800


def _dials(heads: int, choices: int, steps: int, eval_every: int) -> Task:
    kwargs = {"heads": heads, "choices": choices, "reward": "count"}
    return Task(f"dials-{heads}x{choices}", "gumbel_ac/Dials-v0", kwargs, choices**heads, steps, eval_every)


def _bandit(arms: int, steps: int, eval_every: int) -> Task:
    return Task(f"bandit-{arms}", "gumbel_ac/Bandit-v0", {"arms": arms}, arms, steps, eval_every)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        _dials(2, 4, 20_000, 2_000),
        _dials(4, 8, 20_000, 2_000),
        _dials(8, 8, 20_000, 2_000),
        _dials(12, 8, 20_000, 2_000),
        _bandit(16, 10_000, 1_000),
        _bandit(128, 10_000, 1_000),
        _bandit(1024, 10_000, 1_000),
    )
}

#: Where the enumerated-vs-sampled pair of gumbel-st runs (both fit up to here).
PAIR_LIMIT = 4096
#: Above this many joint actions an enumerated run is expensive on a CPU (dials-4x8 enumerating
#: 4096 actions took > 10 min for 30k steps, 20x its sampled twin): --costly-seeds of them only.
COSTLY_ENUMERATION = 1024
DEFAULT_MAX_ENUMERATED = 256  # Config.max_enumerated_actions's default (checked in main())


@dataclass(frozen=True)
class Method:
    name: str
    estimator: str | None  # None: SB3 PPO
    max_enumerated_actions: int | None = None  # None: the Config default


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("gumbel-st", "gumbel-st"),
        Method("gumbel-st-enum", "gumbel-st", PAIR_LIMIT),
        Method("gumbel-st-sampled", "gumbel-st", 1),
        Method("gumbel-rao", "gumbel-rao"),
        Method("score", "score"),
        Method("ppo", None),
    )
}


def applies(method: Method, task: Task) -> bool:
    """Whether ``method`` runs on ``task`` (see the module docstring)."""
    if method.name in ("gumbel-st-enum", "gumbel-st-sampled"):
        return task.joint_actions <= PAIR_LIMIT
    if method.name == "gumbel-st":
        return task.joint_actions > PAIR_LIMIT
    return True


def target_label(method: Method, task: Task) -> str:
    """How the critic target (and score's baseline) treat the next action in this run."""
    if method.estimator is None:
        return "on-policy (GAE)"
    limit = method.max_enumerated_actions or DEFAULT_MAX_ENUMERATED
    return "enumerated" if task.joint_actions <= limit else "sampled x4"


@dataclass(frozen=True)
class RunSpec:
    task: Task
    method: Method
    seed: int
    steps: int
    eval_every: int


@dataclass
class RunResult:
    task: str
    method: str
    seed: int
    evals: list[tuple[int, float, float, float]] = field(default_factory=list)  # step, mean, std, train s
    train_seconds: float = 0.0
    max_rss_mb: float = 0.0
    wall_seconds: float = 0.0


# --------------------------------------------------------------------------------------
# One run (in a fresh worker process)
# --------------------------------------------------------------------------------------


def _max_rss_mb() -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _run_ours(spec: RunSpec) -> RunResult:
    from gumbel_ac.config import Config
    from gumbel_ac.trainer import train

    extra: dict[str, Any] = {}
    if spec.method.max_enumerated_actions is not None:
        extra["max_enumerated_actions"] = spec.method.max_enumerated_actions
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(
            env=spec.task.env,
            env_kwargs=json.dumps(spec.task.kwargs),
            estimator=spec.method.estimator or "",
            seed=spec.seed,
            total_steps=spec.steps,
            num_envs=16,
            device="cpu",
            num_threads=1,
            eval_every=spec.eval_every,
            eval_episodes=EVAL_EPISODES,
            final_eval_episodes=EVAL_EPISODES,
            log_every=spec.steps,
            checkpoint_every=0,
            keep_checkpoints=1,
            save_replay=False,
            progress=False,
            runs_dir=tmp,
            run_name=f"{spec.task.name}__{spec.method.name}__s{spec.seed}",
            **extra,
        )
        result = train(cfg)
    out = RunResult(spec.task.name, spec.method.name, spec.seed, train_seconds=result.train_seconds)
    # The final evaluation may land on the step of the last periodic one: keep the last per step.
    by_step = {e.step: (e.step, e.mean, e.std, e.train_seconds) for e in result.evals}
    out.evals = sorted(by_step.values())
    return out


def _multidiscrete_adapter(env_id: str, n_envs: int, seed: int, kwargs: dict[str, Any]) -> Any:
    """``gumbel_ac.sb3.make_torch_vec_env``: PPO's ``[n_envs, heads]`` MultiDiscrete actions go
    to the batched env one per head (the adapter reshapes to the action space's shape)."""
    from gumbel_ac.sb3 import make_torch_vec_env

    return make_torch_vec_env(env_id, n_envs, seed=seed, **kwargs)


def ours_hidden_sizes(env_id: str) -> tuple[int, ...]:
    """The hidden widths ours trains ``env_id`` with (its preset, else the default): PPO's
    actor and critic get the same, so neither side has the bigger network."""
    from gumbel_ac.config import Config

    return tuple(Config(env=env_id).resolve_auto().hidden_sizes)


def ppo_gamma(env_id: str) -> float:
    """The discount ours trains ``env_id`` with by preset (the same for PPO), else RL-Zoo's 0.98."""
    try:
        from gumbel_ac.presets import preset_for
    except ImportError:
        return 0.98
    return float(preset_for(env_id).get("gamma", 0.98))


def _run_ppo(spec: RunSpec) -> RunResult:
    import torch
    from stable_baselines3 import PPO

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from sb3_common import TimedEval

    torch.set_num_threads(1)
    env = _multidiscrete_adapter(spec.task.env, 8, spec.seed, spec.task.kwargs)
    eval_env = _multidiscrete_adapter(spec.task.env, EVAL_EPISODES, spec.seed + 1000, spec.task.kwargs)
    model = PPO(
        "MlpPolicy",
        env,
        policy_kwargs={"net_arch": list(ours_hidden_sizes(spec.task.env))},
        n_steps=32,
        batch_size=256,
        n_epochs=10,
        gae_lambda=0.8,
        gamma=ppo_gamma(spec.task.env),
        clip_range=0.2,
        ent_coef=0.0,
        learning_rate=PPO_LR,
        seed=spec.seed,
        device="cpu",
    )
    callback = TimedEval(eval_env, spec.eval_every, EVAL_EPISODES, eval_at_end=True)
    model.learn(spec.steps, callback=callback)
    out = RunResult(spec.task.name, spec.method.name, spec.seed, evals=callback.evals)
    out.train_seconds = callback.evals[-1][3] if callback.evals else 0.0
    return out


def run_one(spec: RunSpec) -> RunResult:
    """One run in this (fresh) process; its peak RSS is read at the end."""
    tic = time.perf_counter()
    res = _run_ppo(spec) if spec.method.estimator is None else _run_ours(spec)
    res.wall_seconds = time.perf_counter() - tic
    res.max_rss_mb = _max_rss_mb()
    return res


def import_floor(kind: str) -> float:
    """Peak RSS (MiB) of a fresh worker that only imports what a run of ``kind`` imports."""
    if kind == "ppo":
        import stable_baselines3  # noqa: F401

        import gumbel_ac.sb3  # noqa: F401
    else:
        import gumbel_ac.envs  # noqa: F401
        import gumbel_ac.trainer  # noqa: F401
    return _max_rss_mb()


# --------------------------------------------------------------------------------------
# Statistics and the table
# --------------------------------------------------------------------------------------


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle half (scipy.stats.trim_mean(x, 0.25), rliable's IQM)."""
    s = np.sort(np.asarray(x, dtype=np.float64))
    k = int(0.25 * len(s))
    return float(s[k : len(s) - k].mean())


def iqm_ci(x: np.ndarray, reps: int = 2_000, seed: int = 0) -> tuple[float, float, float, str]:
    """(IQM, low, high, source): 95% bootstrap CI over seeds, rliable's when importable."""
    x = np.asarray(x, dtype=np.float64)
    try:
        from rliable import library as rly  # type: ignore[import-not-found]
        from rliable import metrics

        point, ci = rly.get_interval_estimates(
            {"m": x[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps
        )
        return float(point["m"][0]), float(ci["m"][0, 0]), float(ci["m"][1, 0]), "rliable"
    except ImportError:
        rng = np.random.default_rng(seed)
        boots = np.array([iqm(x[rng.integers(0, len(x), len(x))]) for _ in range(reps)])
        lo, hi = np.percentile(boots, [2.5, 97.5])
        return iqm(x), float(lo), float(hi), "numpy percentile bootstrap"


def steps_to(res: RunResult, threshold: float) -> float:
    for step, mean, _, _ in res.evals:
        if mean >= threshold:
            return float(step)
    return math.inf


@dataclass
class Row:
    task: str
    joint: int
    method: str
    target: str
    n: int
    frac_mean: float
    frac_se: float
    iqm: float
    iqm_lo: float
    iqm_hi: float
    steps90: float
    reached: int
    train_s: float
    rss_mb: float


def summarise(results: list[RunResult], tasks: list[Task], methods: list[Method]) -> tuple[list[Row], str]:
    rows: list[Row] = []
    source = ""
    for task in tasks:
        for method in methods:
            runs = [r for r in results if r.task == task.name and r.method == method.name and r.evals]
            if not runs:
                continue
            frac = np.array([r.evals[-1][1] / OPTIMAL_RETURN for r in runs])
            se = float(frac.std(ddof=1) / math.sqrt(len(frac))) if len(frac) > 1 else float("nan")
            point, lo, hi, source = iqm_ci(frac)
            hits = [steps_to(r, SOLVED_FRACTION * OPTIMAL_RETURN) for r in runs]
            rows.append(
                Row(
                    task.name,
                    task.joint_actions,
                    method.name,
                    target_label(method, task),
                    len(runs),
                    float(frac.mean()),
                    se,
                    point,
                    lo,
                    hi,
                    float(np.median(hits)),
                    sum(1 for h in hits if math.isfinite(h)),
                    float(np.median([r.train_seconds for r in runs])),
                    max(r.max_rss_mb for r in runs),
                )
            )
    return rows, source


def _joint(n: int) -> str:
    return f"{n:,}" if n < 1_000_000 else f"{n:.2g}"


def table(rows: list[Row]) -> str:
    lines = [
        "| task | joint actions | method | critic target | seeds | final / optimal (mean ± SE) "
        "| IQM [95% CI] | steps to 90% (median; seeds) | train s (median) | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = "never" if not math.isfinite(r.steps90) else f"{r.steps90:,.0f}"
        lines.append(
            f"| {r.task} | {_joint(r.joint)} | {r.method} | {r.target} | {r.n} | {r.frac_mean:.3f} ± {r.frac_se:.3f} "
            f"| {r.iqm:.3f} [{r.iqm_lo:.3f}, {r.iqm_hi:.3f}] | {steps} ({r.reached}/{r.n}) | {r.train_s:.1f} "
            f"| {r.rss_mb:.0f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke: dials-2x4 and bandit-16, seed 0, 1.6k steps")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=None)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0-4 (quick: 0)")
    parser.add_argument(
        "--costly-seeds",
        type=int,
        default=2,
        help=f"gumbel-st-enum on tasks with more than {COSTLY_ENUMERATION} joint actions runs the first N seeds only",
    )
    parser.add_argument(
        "--steps-scale", type=float, default=1.0, help="multiply every task's step budget and eval interval"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one run each, fresh)")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's evals here")
    args = parser.parse_args()

    import stable_baselines3
    import torch

    from gumbel_ac.config import Config

    if Config().max_enumerated_actions != DEFAULT_MAX_ENUMERATED:
        raise SystemExit("Config.max_enumerated_actions changed: update DEFAULT_MAX_ENUMERATED")
    tasks = [TASKS[t] for t in (args.tasks or (["dials-2x4", "bandit-16"] if args.quick else list(TASKS)))]
    methods = [METHODS[m] for m in (args.methods or list(METHODS))]
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2, 3, 4])

    print(
        f"torch {torch.__version__} (cpu capability {torch.backends.cpu.get_cpu_capability()}), "
        f"stable-baselines3 {stable_baselines3.__version__}, numpy {np.__version__}, "
        f"python {sys.version.split()[0]}; {os.cpu_count()} cores, {args.workers} worker process(es), "
        "1 torch thread each"
    )
    specs: list[RunSpec] = []
    for seed in seeds:  # seeds outermost: machine load drifts over the whole run, not over one method
        for task in tasks:
            steps, every = (task.quick_steps, task.quick_eval_every) if args.quick else (task.steps, task.eval_every)
            steps, every = int(steps * args.steps_scale), max(1, int(every * args.steps_scale))
            for method in methods:
                costly = method.name == "gumbel-st-enum" and task.joint_actions > COSTLY_ENUMERATION
                if applies(method, task) and not (costly and seed not in seeds[: args.costly_seeds]):
                    specs.append(RunSpec(task, method, seed, steps, every))
    # The costly enumerated runs first: the other worker works through the rest meanwhile.
    specs.sort(key=lambda s: not (s.method.name == "gumbel-st-enum" and s.task.joint_actions > COSTLY_ENUMERATION))
    for task in tasks:
        steps = int((task.quick_steps if args.quick else task.steps) * args.steps_scale)
        print(
            f"  {task.name}: {task.env} {json.dumps(task.kwargs)}, {_joint(task.joint_actions)} joint, "
            f"{steps:,} steps, PPO gamma {ppo_gamma(task.env):g}"
        )
    print(f"{len(specs)} runs", flush=True)

    ctx = mp.get_context("spawn")  # fresh interpreters: each RSS is that run's alone
    with ctx.Pool(args.workers, maxtasksperchild=1) as pool:
        floors = {kind: pool.apply_async(import_floor, (kind,)) for kind in ("ours", "ppo")}
        print(
            "idle worker floor (imports only, peak RSS): "
            + ", ".join(f"{k} {f.get():.0f} MiB" for k, f in floors.items()),
            flush=True,
        )
        tic = time.perf_counter()
        results: list[RunResult] = []
        for res in pool.imap_unordered(run_one, specs):
            results.append(res)
            final = res.evals[-1][1] if res.evals else float("nan")
            print(
                f"  [{len(results)}/{len(specs)} {time.perf_counter() - tic:6.0f} s] {res.task:>11} {res.method:>17} "
                f"seed {res.seed}: final {final:.2f}, train {res.train_seconds:.1f} s, RSS {res.max_rss_mb:.0f} MiB",
                flush=True,
            )
    print(f"all runs: {time.perf_counter() - tic:.0f} s")
    rows, source = summarise(results, tasks, methods)
    print(f"\nIQM CI: {source}; steps to 90% = first eval >= {SOLVED_FRACTION * OPTIMAL_RETURN:g}\n")
    print(table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": [asdict(r) for r in results], "rows": [asdict(r) for r in rows]}))


if __name__ == "__main__":
    main()
