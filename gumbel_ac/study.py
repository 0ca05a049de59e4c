"""When does Gumbel noise help? A factorial study over tasks: ``python -m gumbel_ac.study``.

Straight-through Gumbel-Softmax (``gumbel-st``) puts noise in two places at once: the critic is
read at a *sampled* action ``argmax(l + G)`` and the gradient flows through the *noisy*
softmax ``softmax((l + G) / tau)``. The agent also *acts* with a sample. This study separates
the three, and holds the rest of the agent fixed.

Design (a full factorial, plus references):

* acting (``Config.act``): ``sample`` (``a ~ pi``), ``mode`` (``argmax pi``), ``epsilon``
  (the mode, a uniform action with probability ``Config.act_epsilon`` = 0.1);
* where the critic is read in the actor's gradient: at the sampled action or at the mode;
* backward softmax: noisy ``softmax((l+G)/tau)`` or noise-free ``softmax(l/tau)``.

The last two factors are the 2x2 of estimators ``gumbel-st`` (sampled, noisy),
``st-sampled-nonoise`` (sampled, noise-free), ``st-mode-noisy`` (mode, noisy) and
``softmax-st`` (mode, noise-free) (gumbel_ac/estimators.py). References, acting by sampling:
``exact`` (the zero-variance gradient), ``gumbel-rao`` (Paulus et al. 2020, arXiv:2010.04838),
``score`` (REINFORCE with the exact baseline) and ``score-sampled`` (REINFORCE with the sampled
leave-one-out baseline, Kool et al. 2019, as where actions cannot be enumerated).

Tasks (:data:`TASKS`): the many-armed ``Bandit-v0`` at K = 16, 64, 256 arms; ``Pennies-v0``
at K = 2 and 8 (the optimal policy is the uniform mix, any deterministic policy is
exploited); ``DeepSea-v0`` of size 10 and 20 (deep exploration, a binary outcome: 20
reported seeds); bsuite's ``Catch-v0``; ``CartPole-v1`` (the batched torch copy);
``Dials-v0`` with 3 heads of 4 choices and the "pairs" reward (combinatorial ``MultiDiscrete``
actions, 64 joint); and ``distill16``, the lab's mode-seeking task (fit 16 logits to a bimodal
target by minimising ``KL(pi || p*)``, gumbel_ac/lab_problems.py ``distill``), where acting
does not exist and only the estimator factors apply.

Tuning: every cell gets the same small budget, tau in {0.2, 0.5, 1, 2} x two actor learning
rates (tau-free estimators: the two rates only), each point trained on the tuning seed 1000
(``--tune-seeds N``: seeds 1000..1000+N-1, the mean AUC over them), which is never reported;
the best point is then trained on the reported seeds 0..9 (0..19 for binary-outcome tasks).
One tuning seed is what lets the whole study run in about 2 h 15 min on 2 free CPU cores
(docs/study.md, "Cost"); it is the same for every cell. Seeds are paired: seed ``s`` of every
cell starts from the same networks and env stream.

Pre-registered metrics (fixed before any result was seen; higher is better):

1. ``auc`` -- the sampled-action AUC of the evaluation curve: the policy is evaluated with
   *sampled* actions (``evaluate(..., deterministic=False)``) at every ``eval_every`` steps
   (from the run's checkpoints, the final one included) and the AUC is the mean of those
   evaluations (a rectangle rule over equally spaced points). It is the primary metric and the
   one tuning selects on. For ``distill16`` the "evaluation" is ``-KL(pi || p*)``.
2. ``final`` -- the deterministic final evaluation: the trainer's final evaluation of the mode
   policy (``eval/final_mean_return``). For ``distill16``: ``-KL(onehot(argmax pi) || p*)``.

Statistics, as rliable does them (Agarwal et al. 2021, arXiv:2108.13264), per task and metric:
the interquartile mean (IQM) over reported seeds with a 95% stratified-bootstrap percentile
interval; per factor, the paired difference of IQMs between its levels (the other factors'
levels as strata, seeds resampled jointly so pairs stay pairs) with a 95% bootstrap interval,
and the probability of improvement ``P(X > Y)`` with its interval; performance profiles (score
distributions) of every cell. The bootstrap is rliable's stratified percentile bootstrap written
out in vectorised numpy (rliable's own loop costs milliseconds per replicate, hours for the full
study); tests/test_study.py checks its point estimates against rliable's functions and its
intervals against rliable's bootstrap. Each comparison also gets a two-sided Wilcoxon
signed-rank p-value on the per-seed paired differences, and all the study's p-values (every
task, both metrics) are adjusted together by Holm's step-down method (Holm 1979), which
controls the family-wise error rate.

Diagnostic, not pre-registered and not tested for: at every evaluation point of an RL run, the
mean cosine between the actor's batch gradient (one estimator draw per state) and the exact
gradient w.r.t. the logits, on 32 states the policy visits, with the run's own critic
(:func:`gradient_cosine`; the ``grad cos vs exact`` column).

Outputs in ``--out`` (default ``runs/study``): ``runs/<run>.json`` (one per run: its spec, its
curves and metrics; a run whose file exists is not trained again, so an interrupted study
resumes), the RL runs' folders under ``runs/`` (metrics.jsonl and the final checkpoint),
``runs.csv`` and ``runs.json`` (every run, tuning runs included), ``tuning.csv``,
``cells.csv``, ``effects.csv``, ``tables.md``, ``effects.md``, ``iqm_<metric>.png``,
``effects.png`` and ``profiles_<task>.png``.

    python -m gumbel_ac.study --quick                  # 2 seeds, 3 tasks, tiny budgets, no tuning
    python -m gumbel_ac.study --workers 2              # the full study (about 2 h 15 min on 2 cores)
    python -m gumbel_ac.study --tasks pennies2 --seeds 5 --tune-seeds 2
    python -m gumbel_ac.study --first-seed 20 --reuse runs/study --out runs/study_rep   # new seeds
    python -m gumbel_ac.study --compare runs/study runs/study_rep             # estimate by estimate
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

#: Gumbel temperatures of every cell's tuning grid.
TAUS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)
#: Acting modes (``Config.act``).
ACTS: tuple[str, ...] = ("sample", "mode", "epsilon")
#: The 2x2 estimators: name -> (where the critic is read, which softmax the gradient flows through).
FACTORIAL: dict[str, tuple[str, str]] = {
    "gumbel-st": ("sampled", "noisy"),
    "st-sampled-nonoise": ("sampled", "noise-free"),
    "st-mode-noisy": ("mode", "noisy"),
    "softmax-st": ("mode", "noise-free"),
}
#: Reference estimators, trained acting by sampling.
REFERENCES: tuple[str, ...] = ("exact", "gumbel-rao", "score", "score-sampled")
#: Estimators without a temperature: their grid has the learning rates only.
TAU_FREE: frozenset[str] = frozenset({"exact", "score", "score-sampled"})
#: The pre-registered metrics (module docstring), primary first.
METRICS: tuple[str, ...] = ("auc", "final")
#: Tuning seeds, kept apart from the reported seeds 0, 1, ...
TUNING_SEED_BASE = 1000
#: Seed offset of the sampled evaluations (the same for every cell: paired).
EVAL_SEED_BASE = 100_000
#: Runs a study worker process trains before it is replaced by a fresh one (run_all).
WORKER_RUNS = 8
#: The stand-in acting mode of tasks without acting (distillation).
NO_ACT = "-"

Phase = Literal["tune", "report"]


@dataclass(frozen=True)
class Task:
    """One task of the study and its budgets.

    Attributes:
        name: short label.
        kind: ``"rl"`` (a training run of the agent) or ``"distill"`` (lab_problems.distill).
        env, env_kwargs: the env id and its ``Config.env_kwargs`` (RL tasks).
        steps, quick_steps: env steps (RL) or optimisation steps (distill), full and ``--quick``.
        eval_every, quick_eval_every: steps between two points of the evaluation curve.
        eval_episodes: sampled-action episodes per evaluation point (RL).
        final_eval_episodes: episodes of the trainer's deterministic final evaluation (RL).
        binary: whether a run's outcome is essentially success/failure (more reported seeds).
        lrs: the two actor learning rates of the tuning grid (the first is ``--quick``'s).
        num_actions, batch: the distillation's K and its estimator draws per step.
        optimum: the best value the sampled policy can reach, where known (the tables and
            figures mark it): the optimal return, ``T (1 - 1/K)`` for Pennies (envs/pennies.py),
            a KL of 0 for the distillation.
    """

    name: str
    kind: Literal["rl", "distill"]
    steps: int
    quick_steps: int
    eval_every: int
    quick_eval_every: int
    lrs: tuple[float, float]
    env: str = ""
    env_kwargs: str = ""
    eval_episodes: int = 32
    final_eval_episodes: int = 32
    binary: bool = False
    num_actions: int = 16
    batch: int = 32
    optimum: float = math.nan
    quick_learning_starts: int = 400
    """``Config.learning_starts`` under ``--quick`` (the full study keeps the default 1000)."""


def _rl(name: str, env: str, kwargs: str, optimum: float, **more: Any) -> Task:
    """An RL task with the study's common budgets: 20k env steps, a curve point every 2k
    (``--quick``: 1600 steps, a point every 800, updates from step 400)."""
    budget: dict[str, Any] = {"steps": 20_000, "quick_steps": 1_600, "eval_every": 2_000, "quick_eval_every": 800}
    budget.update(more)
    return Task(name, "rl", lrs=(1e-3, 3e-3), env=env, env_kwargs=kwargs, optimum=optimum, **budget)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        _rl("bandit16", "gumbel_ac/Bandit-v0", '{"arms": 16}', 8.0),
        _rl("bandit64", "gumbel_ac/Bandit-v0", '{"arms": 64}', 8.0),
        _rl("bandit256", "gumbel_ac/Bandit-v0", '{"arms": 256}', 8.0),
        _rl("pennies2", "gumbel_ac/Pennies-v0", '{"actions": 2}', 16.0),
        _rl("pennies8", "gumbel_ac/Pennies-v0", '{"actions": 8}', 28.0),
        *(
            _rl(
                f"deepsea{size}",
                "gumbel_ac/DeepSea-v0",
                f'{{"size": {size}}}',
                0.99,
                steps=30_000,
                eval_every=3_000,
                eval_episodes=16,
                final_eval_episodes=2,  # deterministic env and policy: every episode is the same
                binary=True,
            )
            # Depth 30 was left out: at depth 20 none of the 110 tuning runs (every cell) reached
            # the reward within 30k steps, and a depth-30 run (a random policy's odds 2^-30 per
            # episode) took about 20 s against 11 s at depth 20 with two runs sharing the 2 cores.
            for size in (10, 20)
        ),
        _rl("catch", "gumbel_ac/Catch-v0", "", 1.0),
        _rl("cartpole", "gumbel_ac/CartPole-v1", "", 500.0, eval_episodes=16, final_eval_episodes=16),
        _rl("dials3x4", "gumbel_ac/Dials-v0", '{"heads": 3, "choices": 4, "reward": "pairs"}', 8.0),
        Task("distill16", "distill", 500, 100, 25, 10, (0.02, 0.1), num_actions=16, batch=32, optimum=0.0),
    )
}
QUICK_TASKS: tuple[str, ...] = ("bandit16", "pennies2", "distill16")
#: The temperature of ``--quick``'s one-point grid.
QUICK_TAU = 0.5


# ----------------------------------------------------------------------------- cells and runs


@dataclass(frozen=True)
class Cell:
    """One cell of the design: an acting mode and an estimator."""

    act: str
    estimator: str

    @property
    def label(self) -> str:
        return self.estimator if self.act == NO_ACT else f"{self.act}/{self.estimator}"

    @property
    def q_point(self) -> str | None:
        """Where the critic is read ("sampled" / "mode"), for the 2x2 estimators."""
        return FACTORIAL[self.estimator][0] if self.estimator in FACTORIAL else None

    @property
    def backward(self) -> str | None:
        """Which softmax the gradient flows through ("noisy" / "noise-free"), for the 2x2."""
        return FACTORIAL[self.estimator][1] if self.estimator in FACTORIAL else None


def cells_for(task: Task) -> list[Cell]:
    """The factorial cells (acting x the 2x2; the 2x2 alone without acting) and the references."""
    acts = ACTS if task.kind == "rl" else (NO_ACT,)
    cells = [Cell(act, est) for act in acts for est in FACTORIAL]
    return cells + [Cell(acts[0], est) for est in REFERENCES]


def tuning_grid(task: Task, cell: Cell, *, quick: bool) -> list[tuple[float, float]]:
    """The (tau, lr) points a cell is tuned over; one point with ``quick``."""
    if quick:
        return [(1.0 if cell.estimator in TAU_FREE else QUICK_TAU, task.lrs[0])]
    taus = (1.0,) if cell.estimator in TAU_FREE else TAUS
    return [(tau, lr) for tau in taus for lr in task.lrs]


@dataclass(frozen=True)
class RunSpec:
    """One training run."""

    task: str
    act: str
    estimator: str
    tau: float
    lr: float
    seed: int
    steps: int
    eval_every: int
    phase: Phase
    learning_starts: int = 1_000

    @property
    def cell(self) -> Cell:
        return Cell(self.act, self.estimator)

    @property
    def name(self) -> str:
        act = "none" if self.act == NO_ACT else self.act
        return f"{self.task}__{act}__{self.estimator}__tau{self.tau:g}__lr{self.lr:g}__n{self.steps}__s{self.seed}"


@dataclass
class RunResult:
    """A finished run: its spec, its evaluation curves and the pre-registered metrics."""

    spec: RunSpec
    eval_steps: list[int]
    sampled_curve: list[float]
    auc: float
    final: float
    wall_seconds: float
    extra: dict[str, float] = field(default_factory=dict)
    cosine_curve: list[float] = field(default_factory=list)
    """Diagnostic, not pre-registered (RL runs): at each evaluation point, the mean cosine
    between the actor's batch gradient (one estimator draw per state) and the exact gradient,
    w.r.t. the logits, at states the policy visits (:func:`gradient_cosine`)."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["name"] = self.spec.name
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> RunResult:
        return RunResult(
            spec=RunSpec(**data["spec"]),
            eval_steps=[int(s) for s in data["eval_steps"]],
            sampled_curve=[float(v) for v in data["sampled_curve"]],
            auc=float(data["auc"]),
            final=float(data["final"]),
            wall_seconds=float(data["wall_seconds"]),
            extra={k: float(v) for k, v in data.get("extra", {}).items()},
            cosine_curve=[_finite_or_nan(v) for v in data.get("cosine_curve", [])],
        )

    def metric(self, name: str) -> float:
        return float(getattr(self, name))


def _finite_or_nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (a temporary file renamed): a killed worker leaves no
    half-written result that a resumed study would trust."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=True))
    os.replace(tmp, path)


def load_finished(path: Path, spec: RunSpec) -> RunResult | None:
    """The result stored at ``path`` if it is a finished run of exactly ``spec``."""
    try:
        result = RunResult.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return result if result.spec == spec else None


def _run_distill(spec: RunSpec, task: Task) -> RunResult:
    from gumbel_ac.lab_problems import distill, multimodal_target  # noqa: PLC0415

    tic = time.perf_counter()
    curve = distill(
        multimodal_target(task.num_actions),
        spec.estimator,
        tau=spec.tau,
        lr=spec.lr,
        steps=spec.steps,
        batch=task.batch,
        seed=spec.seed,
        eval_every=spec.eval_every,
    )
    scores = [-kl for kl in curve.kl[1:]]  # the points after step 0, as the RL curves
    return RunResult(
        spec,
        curve.steps[1:],
        scores,
        auc=float(np.mean(scores)),
        final=-curve.mode_kl,
        wall_seconds=time.perf_counter() - tic,
        extra={"final_sampled": scores[-1]},
    )


#: States and estimator draws of the gradient-cosine diagnostic at each evaluation point.
COSINE_STATES = 32
COSINE_DRAWS = 16


def gradient_cosine(agent: Any, task: Task, estimator: str, tau: float, *, seed: int) -> float:
    """Mean cosine between the estimator's batch gradient and the exact one, w.r.t. the logits.

    ``COSINE_STATES`` states are drawn from the policy's own rollouts (the lab's
    ``collect_states``; replay is not kept, so visited states stand in for a replay batch), the
    objective is the agent's critic ``min_i Q_i(s, .)`` (the lab's ``agent_problem``), and each of
    ``COSINE_DRAWS`` draws gives one batch gradient ``[S, K]`` -- one estimator sample per state,
    as in an actor update -- whose cosine with the exact ``[S, K]`` (``exact``, the sum over
    actions) is averaged. 1 for ``exact``; near 0 for a gradient that is mostly noise.
    """
    import torch  # noqa: PLC0415

    from gumbel_ac.lab import Variant, draw_gradients, exact_gradient  # noqa: PLC0415
    from gumbel_ac.lab_problems import agent_problem, collect_states  # noqa: PLC0415
    from gumbel_ac.vector import make_env  # noqa: PLC0415

    env = make_env(task.env, num_envs=8, device="cpu", seed=seed, **json.loads(task.env_kwargs or "{}"))
    try:
        states = collect_states(agent, env, num_states=COSINE_STATES, rollout_steps=16, seed=seed)
    finally:
        env.close()
    problem = agent_problem(agent, states)
    exact_SK = exact_gradient(problem)
    grads_SMK = draw_gradients(problem, Variant(estimator), tau, draws=COSINE_DRAWS, seed=seed)
    batch_MX = grads_SMK.transpose(0, 1).reshape(COSINE_DRAWS, -1).double()
    cos_M = torch.nn.functional.cosine_similarity(batch_MX, exact_SK.reshape(1, -1).double(), dim=-1, eps=1e-30)
    return float(cos_M.mean())


#: Env ids whose preset (gumbel_ac/presets.py) came after the reported study ran: the study
#: trains them without it, so that its reported numbers stay reproducible.
_PRESETS_AFTER_STUDY = frozenset({"gumbel_ac/CartPole-v1"})


def _run_rl(spec: RunSpec, task: Task, runs_dir: Path) -> RunResult:
    from gumbel_ac.checkpoint import list_checkpoints, load_run, read_meta  # noqa: PLC0415
    from gumbel_ac.config import Config  # noqa: PLC0415
    from gumbel_ac.evaluation import evaluate  # noqa: PLC0415
    from gumbel_ac.trainer import train  # noqa: PLC0415
    from gumbel_ac.vector import eval_env_kwargs  # noqa: PLC0415

    run_dir = runs_dir / spec.name
    if run_dir.exists():  # an interrupted run of this spec: start clean
        shutil.rmtree(run_dir)
    config = Config(
        env=task.env,
        env_kwargs=task.env_kwargs,
        estimator=spec.estimator,
        seed=spec.seed,
        act="sample" if spec.act == NO_ACT else spec.act,  # type: ignore[arg-type]
        gumbel_temperature=spec.tau,
        actor_lr=spec.lr,
        # A constant Polyak rate, as when the reported study ran (the late schedule became the
        # default after it): pinned so that the study's reported numbers stay reproducible.
        target_update_rate_final=None,
        preset="none" if task.env in _PRESETS_AFTER_STUDY else "auto",
        total_steps=spec.steps,
        learning_starts=spec.learning_starts,
        device="cpu",
        num_threads=1,
        eval_every=0,  # the curve comes from the checkpoints below, evaluated with sampled actions
        final_eval_episodes=task.final_eval_episodes,
        log_every=spec.eval_every,
        checkpoint_every=spec.eval_every,
        keep_checkpoints=spec.steps // spec.eval_every + 2,
        save_replay=False,
        runs_dir=str(runs_dir),
        run_name=spec.name,
        progress=False,
    )
    tic = time.perf_counter()
    with open(runs_dir / f"{spec.name}.log", "w") as fh, contextlib.redirect_stdout(fh):
        result = train(config)
    saved = result.run_dir
    env_kwargs = eval_env_kwargs(config.eval_env_kwargs())
    steps: list[int] = []
    curve: list[float] = []
    cosines: list[float] = []
    checkpoints = list_checkpoints(saved)
    for ckpt in checkpoints:
        step = int(read_meta(ckpt)["step"])
        if steps and step == steps[-1]:
            continue
        agent = load_run(ckpt).agent
        returns = evaluate(
            agent,
            task.env,
            episodes=task.eval_episodes,
            seed=EVAL_SEED_BASE + spec.seed,
            deterministic=False,
            env_kwargs=env_kwargs,
        )
        steps.append(step)
        curve.append(float(np.mean(returns)))
        cosines.append(gradient_cosine(agent, task, spec.estimator, spec.tau, seed=EVAL_SEED_BASE + spec.seed))
    for ckpt in checkpoints[:-1]:  # keep the final checkpoint only (eval.py works on the folder)
        shutil.rmtree(ckpt, ignore_errors=True)
    if not curve:
        raise RuntimeError(f"run {spec.name} left no checkpoint to evaluate in {saved}")
    return RunResult(
        spec,
        steps,
        curve,
        auc=float(np.mean(curve)),
        final=_finite_or_nan(result.final_mean),
        wall_seconds=time.perf_counter() - tic,
        cosine_curve=cosines,
    )


def run_one(spec: RunSpec, out: str) -> RunResult:
    """Train one run (in a worker process, one torch thread), store and return its result.

    A result already stored for exactly this spec is read back instead (resuming a study).
    """
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    runs_dir = Path(out) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / f"{spec.name}.json"
    done = load_finished(path, spec)
    if done is not None:
        return done
    task = TASKS[spec.task]
    result = _run_distill(spec, task) if task.kind == "distill" else _run_rl(spec, task, runs_dir)
    _write_json(path, result.to_dict())
    return result


def run_all(
    specs: Sequence[RunSpec],
    out: Path,
    workers: int,
    log: Callable[[str], None] = print,
    reuse: Path | None = None,
) -> list[RunResult]:
    """Run ``specs`` on ``workers`` processes (1: in this process); results in ``specs`` order.

    Finished runs found in ``out/runs`` (or in ``reuse/runs``, another study's folder) are
    read, not retrained.
    """
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    results: dict[RunSpec, RunResult] = {}
    todo = []
    for spec in specs:
        done = load_finished(runs_dir / f"{spec.name}.json", spec)
        if done is None and reuse is not None:
            done = load_finished(reuse / "runs" / f"{spec.name}.json", spec)
        if done is not None:
            results[spec] = done
        else:
            todo.append(spec)
    if len(results):
        where = f"{runs_dir}" + (f" and {reuse / 'runs'}" if reuse is not None else "")
        log(f"{len(results)} finished run(s) found in {where}, {len(todo)} to train")
    tic = time.perf_counter()

    def finished(r: RunResult) -> None:
        results[r.spec] = r
        log(
            f"[{len(results):4d}/{len(specs)}] {r.spec.name:70s} auc {r.auc:9.3f} final {r.final:9.3f} "
            f"({r.wall_seconds:5.1f} s, {time.perf_counter() - tic:7.1f} s total)"
        )

    if workers <= 1:
        for spec in todo:
            finished(run_one(spec, str(out)))
    elif todo:
        # Fresh workers every WORKER_RUNS runs: a long-lived worker's memory grew by about a
        # replay buffer per run (~250 MB on DeepSea size 20) and filled the 24 GB machine in half
        # an hour. Spawned, so a fresh worker starts clean; every worker sets one torch thread.
        with mp.get_context("spawn").Pool(workers, maxtasksperchild=WORKER_RUNS) as pool:
            for result in pool.imap_unordered(functools.partial(run_one, out=str(out)), todo):
                finished(result)
    return [results[s] for s in specs]


# ----------------------------------------------------------------------------- statistics


def iqm(scores: np.ndarray) -> float:
    """The interquartile mean of all values: sorted, ``floor(n / 4)`` dropped from each end, the
    rest averaged -- scipy's ``trim_mean(x, 0.25)``, which is rliable's ``aggregate_iqm``
    (Agarwal et al. 2021)."""
    values = np.sort(np.asarray(scores, dtype=float).ravel())
    cut = int(0.25 * values.size)
    return float(values[cut : values.size - cut].mean())


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order.

    Sort ascending ``p_(1) <= ... <= p_(m)``; the adjusted ``p_(i)`` is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``. Rejecting where the adjusted value is below
    alpha controls the family-wise error rate at alpha. NaN p-values are left NaN and not
    counted in ``m``.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def _trimmed_mean_last(values: np.ndarray) -> np.ndarray:
    """IQM over the last axis (``floor(n / 4)`` cut from each end after sorting), vectorised."""
    n = values.shape[-1]
    cut = int(0.25 * n)
    return np.sort(values, axis=-1)[..., cut : n - cut].mean(axis=-1)


def stratified_resample(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` stratified bootstrap resamples of ``scores`` ``[runs, strata]``: ``[reps, runs, strata]``.

    rliable's ``StratifiedBootstrap`` (Agarwal et al. 2021, arXiv:2108.13264): within each
    stratum (a task, here a level of the other factors) the runs are drawn with replacement,
    the strata are kept. Vectorised: rliable's arch-based loop costs 1.5 ms (IQM) to 10 ms
    (probability of improvement) per replicate here, hours for the full study.
    """
    runs, strata = scores.shape
    idx = rng.integers(0, runs, size=(reps, runs, strata))
    return scores[idx, np.arange(strata)]


def _percentile_interval(samples: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap replicates (rliable's default ``method``)."""
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def iqm_ci(scores: np.ndarray, *, reps: int, seed: int = 0) -> tuple[float, float, float]:
    """IQM of ``scores`` ``[runs, strata]`` and its 95% stratified-bootstrap percentile interval
    (what rliable's ``get_interval_estimates`` with ``aggregate_iqm`` computes)."""
    scores = np.asarray(scores, dtype=float)
    value = iqm(scores)
    if scores.shape[0] < 2:
        return value, value, value
    samples = _trimmed_mean_last(stratified_resample(scores, reps, np.random.default_rng(seed)).reshape(reps, -1))
    return (value, *_percentile_interval(samples))


def paired_iqm_difference(a: np.ndarray, b: np.ndarray, *, reps: int, seed: int = 0) -> tuple[float, float, float]:
    """``IQM(a) - IQM(b)`` for paired ``[seeds, strata]`` arrays and its 95% interval.

    Each replicate draws one set of seed indices per stratum and applies it to both arrays, so
    a resampled seed brings its pair along: the interval is for the paired difference.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays must have one shape, got {a.shape} and {b.shape}")
    diff = iqm(a) - iqm(b)
    if a.shape[0] < 2:
        return diff, diff, diff
    runs, strata = a.shape
    idx = np.random.default_rng(seed).integers(0, runs, size=(reps, runs, strata))
    cols = np.arange(strata)
    samples = _trimmed_mean_last(a[idx, cols].reshape(reps, -1)) - _trimmed_mean_last(b[idx, cols].reshape(reps, -1))
    return (diff, *_percentile_interval(samples))


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``P(X > Y) + P(X = Y) / 2`` per stratum, averaged over strata: ``[..., runs, strata]`` ->
    ``[...]`` (the Mann-Whitney ``U / (n m)`` rliable's ``probability_of_improvement`` uses)."""
    greater = (x[..., :, None, :] > y[..., None, :, :]).mean(axis=(-3, -2))
    ties = (x[..., :, None, :] == y[..., None, :, :]).mean(axis=(-3, -2))
    return (greater + 0.5 * ties).mean(axis=-1)


def probability_of_improvement(a: np.ndarray, b: np.ndarray, *, reps: int, seed: int = 0) -> tuple[float, float, float]:
    """``P(X > Y)`` (ties count one half) averaged over strata, with a 95% interval from
    independent stratified resamples of ``a`` and ``b`` (rliable's ``StratifiedIndependentBootstrap``)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    value = float(_improvement(a, b))
    if a.shape[0] < 2:
        return value, value, value
    rng = np.random.default_rng(seed)
    samples = _improvement(stratified_resample(a, reps, rng), stratified_resample(b, reps, rng))
    return (value, *_percentile_interval(samples))


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the per-seed paired differences (mean over
    strata); 1.0 when every difference is zero (nothing to rank)."""
    from scipy.stats import wilcoxon  # noqa: PLC0415

    d = (np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean(axis=1)
    d = d[np.isfinite(d)]
    if d.size == 0 or np.all(d == 0):
        return 1.0
    with _quiet():
        return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings arch/scipy print for degenerate resamples (all-equal scores)."""
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@dataclass(frozen=True)
class Comparison:
    """One pre-planned comparison: cells of level ``a`` against cells of level ``b``, paired
    column by column (each column a stratum: the other factors' levels)."""

    task: str
    factor: str
    a: str
    b: str
    cells_a: tuple[Cell, ...]
    cells_b: tuple[Cell, ...]


def comparisons_for(task: Task) -> list[Comparison]:
    """Every factor's level contrasts (strata = the other factors' levels) and each reference
    against ``gumbel-st`` (both acting by sampling)."""
    cells = [c for c in cells_for(task) if c.estimator in FACTORIAL]
    out: list[Comparison] = []

    def contrast(factor: str, axis: int, levels: Sequence[str]) -> None:
        """Levels ``a`` vs ``b`` of the factor at position ``axis`` of (act, Q point, backward);
        the cells of each side sorted by the other two positions, so column i of ``a`` and of
        ``b`` differ in this factor alone."""

        def levels_of(c: Cell) -> tuple[str, str, str]:
            return (c.act, c.q_point or "", c.backward or "")

        def others(c: Cell) -> tuple[str, ...]:
            values = levels_of(c)
            return values[:axis] + values[axis + 1 :]

        for i, a in enumerate(levels):
            for b in levels[i + 1 :]:
                cells_a = sorted((c for c in cells if levels_of(c)[axis] == a), key=others)
                cells_b = sorted((c for c in cells if levels_of(c)[axis] == b), key=others)
                out.append(Comparison(task.name, factor, a, b, tuple(cells_a), tuple(cells_b)))

    if task.kind == "rl":
        contrast("acting", 0, ACTS)
    contrast("Q evaluation point", 1, ("sampled", "mode"))
    contrast("backward softmax", 2, ("noisy", "noise-free"))
    act = ACTS[0] if task.kind == "rl" else NO_ACT
    for ref in REFERENCES:
        out.append(Comparison(task.name, "reference", ref, "gumbel-st", (Cell(act, ref),), (Cell(act, "gumbel-st"),)))
    return out


def score_matrix(results: Sequence[RunResult], cells: Sequence[Cell], metric: str) -> np.ndarray:
    """``[seeds, len(cells)]`` scores of the reported runs, rows in seed order (paired)."""
    by_cell: dict[Cell, dict[int, float]] = {}
    for r in results:
        by_cell.setdefault(r.spec.cell, {})[r.spec.seed] = r.metric(metric)
    seeds = sorted(set.intersection(*(set(by_cell.get(c, {})) for c in cells)))
    return np.array([[by_cell[c][s] for c in cells] for s in seeds], dtype=float).reshape(len(seeds), len(cells))


@dataclass
class CellRow:
    """IQM and interval of one cell on one metric (reported seeds)."""

    task: str
    cell: str
    act: str
    estimator: str
    tau: float
    lr: float
    metric: str
    seeds: int
    iqm: float
    low: float
    high: float
    mean: float
    grad_cosine: float = math.nan
    """Mean over seeds and evaluation points of the gradient-cosine diagnostic (RL tasks)."""


@dataclass
class EffectRow:
    """One comparison on one metric."""

    task: str
    metric: str
    factor: str
    a: str
    b: str
    strata: int
    seeds: int
    iqm_a: float
    iqm_b: float
    diff: float
    diff_low: float
    diff_high: float
    p_improve: float
    p_improve_low: float
    p_improve_high: float
    p_value: float
    p_holm: float = math.nan


def _mean_cosine(results: Sequence[RunResult]) -> float:
    curves = [v for r in results for v in r.cosine_curve if math.isfinite(v)]
    return float(np.mean(curves)) if curves else math.nan


def cell_rows(
    task: Task, results: Sequence[RunResult], chosen: dict[Cell, tuple[float, float]], *, reps: int
) -> list[CellRow]:
    rows = []
    for cell in cells_for(task):
        mine = [r for r in results if r.spec.cell == cell]
        if not mine:
            continue
        for metric in METRICS:
            scores = score_matrix(mine, [cell], metric)
            value, low, high = iqm_ci(scores, reps=reps)
            tau, lr = chosen[cell]
            rows.append(
                CellRow(
                    task.name,
                    cell.label,
                    cell.act,
                    cell.estimator,
                    tau,
                    lr,
                    metric,
                    scores.shape[0],
                    value,
                    low,
                    high,
                    float(scores.mean()),
                    _mean_cosine(mine),
                )
            )
    return rows


def effect_rows(task: Task, results: Sequence[RunResult], *, reps: int) -> list[EffectRow]:
    rows = []
    present = {r.spec.cell for r in results}
    for comp in comparisons_for(task):
        if not set(comp.cells_a + comp.cells_b) <= present:
            continue
        for metric in METRICS:
            both = score_matrix(results, list(comp.cells_a + comp.cells_b), metric)
            k = len(comp.cells_a)
            a, b = both[:, :k], both[:, k:]
            diff, low, high = paired_iqm_difference(a, b, reps=reps)
            p_imp, p_low, p_high = probability_of_improvement(a, b, reps=reps)
            rows.append(
                EffectRow(
                    task.name,
                    metric,
                    comp.factor,
                    comp.a,
                    comp.b,
                    k,
                    a.shape[0],
                    iqm(a),
                    iqm(b),
                    diff,
                    low,
                    high,
                    p_imp,
                    p_low,
                    p_high,
                    wilcoxon_p(a, b),
                )
            )
    return rows


def performance_profiles(
    results: Sequence[RunResult], cells: Sequence[Cell], metric: str, *, reps: int, points: int = 41
) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Score distributions ``P(score > x)`` over runs on a grid of ``x``, with 95% bootstrap
    bands, per cell (rliable's ``create_performance_profile`` with ``use_score_distribution``)."""
    score_dict = {c.label: score_matrix(results, [c], metric) for c in cells}
    score_dict = {k: v for k, v in score_dict.items() if v.size}
    values = np.concatenate([v.ravel() for v in score_dict.values()])
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    grid = np.linspace(lo, hi if hi > lo else lo + 1.0, points)
    out = {}
    for k, (label, scores) in enumerate(score_dict.items()):
        center = (scores.ravel()[:, None] > grid).mean(axis=0)
        if scores.shape[0] < 2:
            out[label] = (center, center, center)
            continue
        resampled = stratified_resample(scores, reps, np.random.default_rng(k)).reshape(reps, -1)
        profiles = (resampled[..., None] > grid).mean(axis=1)  # [reps, points]
        low, high = np.percentile(profiles, [2.5, 97.5], axis=0)
        out[label] = (center, low, high)
    return grid, out


# ----------------------------------------------------------------------------- the study


@dataclass
class Settings:
    """Everything one study needs; :func:`run_study` is a function of it alone."""

    out: Path = Path("runs/study")
    tasks: tuple[str, ...] = tuple(TASKS)
    seeds: int = 10
    binary_seeds: int = 20
    tune_seeds: int = 1
    first_seed: int = 0
    """The reported seeds are ``first_seed, first_seed + 1, ...``: a replication of the study
    (same tuning, so the same chosen grid points) on seeds no earlier run reported."""
    reuse: Path | None = None
    """Another study folder whose finished runs are read instead of trained (a replication
    reads the original's tuning runs, so it reports the same chosen grid points)."""
    quick: bool = False
    workers: int = 2
    reps: int = 2000
    """Bootstrap replications of every interval."""


@dataclass
class StudyResult:
    """What :func:`run_study` returns."""

    results: list[RunResult]
    chosen: dict[str, dict[Cell, tuple[float, float]]]
    cells: list[CellRow]
    effects: list[EffectRow]
    files: list[Path]
    wall_seconds: float


def _budget(task: Task, quick: bool) -> dict[str, int]:
    """The RunSpec fields a task's budget sets: steps, eval_every, learning_starts."""
    if quick:
        return {
            "steps": task.quick_steps,
            "eval_every": task.quick_eval_every,
            "learning_starts": task.quick_learning_starts,
        }
    return {"steps": task.steps, "eval_every": task.eval_every, "learning_starts": 1_000}


def plan_tuning(settings: Settings) -> list[RunSpec]:
    """Every tuning run (none when every grid has one point: nothing to choose)."""
    specs: list[RunSpec] = []
    for seed in range(TUNING_SEED_BASE, TUNING_SEED_BASE + settings.tune_seeds):
        for name in settings.tasks:
            task = TASKS[name]
            budget = _budget(task, settings.quick)
            for cell in cells_for(task):
                grid = tuning_grid(task, cell, quick=settings.quick)
                if len(grid) < 2:
                    continue
                specs.extend(
                    RunSpec(name, cell.act, cell.estimator, tau, lr, seed, phase="tune", **budget) for tau, lr in grid
                )
    return specs


def choose(
    settings: Settings, tuning: Sequence[RunResult]
) -> tuple[dict[str, dict[Cell, tuple[float, float]]], list[dict[str, Any]]]:
    """Per task and cell, the grid point with the best mean tuning AUC (ties: the first point)."""
    chosen: dict[str, dict[Cell, tuple[float, float]]] = {}
    rows: list[dict[str, Any]] = []
    for name in settings.tasks:
        task = TASKS[name]
        chosen[name] = {}
        for cell in cells_for(task):
            grid = tuning_grid(task, cell, quick=settings.quick)
            best, best_score = grid[0], -math.inf
            for tau, lr in grid:
                aucs = [
                    r.auc
                    for r in tuning
                    if r.spec.task == name and r.spec.cell == cell and (r.spec.tau, r.spec.lr) == (tau, lr)
                ]
                score = float(np.mean(aucs)) if aucs else math.nan
                rows.append(
                    {
                        "task": name,
                        "cell": cell.label,
                        "tau": tau,
                        "lr": lr,
                        "tuning_runs": len(aucs),
                        "mean_auc": score,
                    }
                )
                if len(grid) > 1 and score > best_score:
                    best, best_score = (tau, lr), score
            chosen[name][cell] = best
            for row in rows[-len(grid) :]:
                row["chosen"] = (row["tau"], row["lr"]) == best
    return chosen, rows


def plan_report(settings: Settings, chosen: dict[str, dict[Cell, tuple[float, float]]]) -> list[RunSpec]:
    """The reported runs: every cell at its chosen point on seeds ``first_seed`` .. + N-1
    (seed-major: paired runs finish together, and an interrupted study has whole seeds)."""
    specs: list[RunSpec] = []
    longest = max(settings.binary_seeds if TASKS[t].binary else settings.seeds for t in settings.tasks)
    for index in range(longest):
        seed = settings.first_seed + index
        for name in settings.tasks:
            task = TASKS[name]
            if index >= (settings.binary_seeds if task.binary else settings.seeds):
                continue
            budget = _budget(task, settings.quick)
            for cell in cells_for(task):
                tau, lr = chosen[name][cell]
                specs.append(RunSpec(name, cell.act, cell.estimator, tau, lr, seed, phase="report", **budget))
    return specs


def run_study(settings: Settings, log: Callable[[str], None] = print) -> StudyResult:
    """Tune, train the reported seeds, compute the statistics, write every output."""
    tic = time.perf_counter()
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    tuning_specs = plan_tuning(settings)
    log(f"tuning: {len(tuning_specs)} runs on {settings.workers} worker(s) -> {out}")
    tuning = run_all(tuning_specs, out, settings.workers, log, reuse=settings.reuse)
    chosen, tuning_rows = choose(settings, tuning)
    report_specs = plan_report(settings, chosen)
    log(f"reported: {len(report_specs)} runs")
    report = run_all(report_specs, out, settings.workers, log, reuse=settings.reuse)
    cells: list[CellRow] = []
    effects: list[EffectRow] = []
    for name in settings.tasks:
        task = TASKS[name]
        mine = [r for r in report if r.spec.task == name]
        cells += cell_rows(task, mine, chosen[name], reps=settings.reps)
        effects += effect_rows(task, mine, reps=settings.reps)
    for row, adjusted in zip(effects, holm([e.p_value for e in effects]), strict=True):
        row.p_holm = adjusted
    files = write_outputs(out, settings, tuning + report, tuning_rows, cells, effects)
    return StudyResult(tuning + report, chosen, cells, effects, files, time.perf_counter() - tic)


# ----------------------------------------------------------------------------- outputs


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows as CSV; the columns are every key of any row (rows may lack some: left empty)."""
    with open(path, "w", newline="") as fh:
        if not rows:
            return
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)


def _run_row(r: RunResult) -> dict[str, Any]:
    row: dict[str, Any] = dataclasses.asdict(r.spec)
    row.update(name=r.spec.name, auc=r.auc, final=r.final, wall_seconds=round(r.wall_seconds, 3))
    row.update(r.extra)
    if r.cosine_curve:
        row["grad_cosine_mean"] = float(np.mean(r.cosine_curve))
    return row


def _f(x: float, digits: int = 3) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}g}"


def markdown_tables(cells: Sequence[CellRow], effects: Sequence[EffectRow]) -> str:
    """The cells' IQMs and the comparisons as markdown, per task."""
    lines: list[str] = []
    for task in dict.fromkeys(c.task for c in cells):
        optimum = TASKS[task].optimum
        lines.append(f"### {task}" + (f" (best sampled-policy score {optimum:g})" if math.isfinite(optimum) else ""))
        lines.append("")
        lines.append("| cell | tau | actor lr | seeds | AUC IQM [95% CI] | final IQM [95% CI] | grad cos vs exact |")
        lines.append("|---|---|---|---|---|---|---|")
        by_cell: dict[str, dict[str, CellRow]] = {}
        for c in cells:
            if c.task == task:
                by_cell.setdefault(c.cell, {})[c.metric] = c
        for label, rows in by_cell.items():
            a, f = rows["auc"], rows["final"]
            tau = "-" if a.estimator in TAU_FREE else f"{a.tau:g}"
            lines.append(
                f"| {label} | {tau} | {a.lr:g} | {a.seeds} | {_f(a.iqm)} [{_f(a.low)}, {_f(a.high)}] | "
                f"{_f(f.iqm)} [{_f(f.low)}, {_f(f.high)}] | {_f(a.grad_cosine, 2)} |"
            )
        lines.append("")
        lines.append(
            "| metric | factor | A vs B | strata x seeds | IQM(A) - IQM(B) [95% CI] | P(A > B) [95% CI] "
            "| p | p (Holm) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for e in effects:
            if e.task != task:
                continue
            lines.append(
                f"| {e.metric} | {e.factor} | {e.a} vs {e.b} | {e.strata} x {e.seeds} | "
                f"{_f(e.diff)} [{_f(e.diff_low)}, {_f(e.diff_high)}] | "
                f"{_f(e.p_improve, 2)} [{_f(e.p_improve_low, 2)}, {_f(e.p_improve_high, 2)}] | "
                f"{_f(e.p_value, 2)} | {_f(e.p_holm, 2)} |"
            )
        lines.append("")
    return "\n".join(lines)


def effects_markdown(effects: Sequence[EffectRow]) -> str:
    """Every comparison, one table per metric with a task column (docs/study.md's "Per-task
    effects"; bold: Holm-adjusted p < 0.05)."""
    lines: list[str] = []
    for metric in METRICS:
        lines += [
            f"#### Metric `{metric}`",
            "",
            "| task | comparison (A vs B) | IQM(A) | IQM(B) | IQM(A) - IQM(B) [95% CI] | P(A > B) [95% CI] "
            "| p (Holm) |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in effects:
            if e.metric != metric:
                continue
            what = f"`{e.a}` vs `{e.b}`" if e.factor == "reference" else f"{e.factor}: {e.a} vs {e.b}"
            holm_p = _f(e.p_holm, 2)
            lines.append(
                f"| {e.task} | {what} | {_f(e.iqm_a)} | {_f(e.iqm_b)} "
                f"| {_f(e.diff)} [{_f(e.diff_low)}, {_f(e.diff_high)}] "
                f"| {_f(e.p_improve, 2)} [{_f(e.p_improve_low, 2)}, {_f(e.p_improve_high, 2)}] "
                f"| {f'**{holm_p}**' if e.p_holm < 0.05 else holm_p} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_outputs(
    out: Path,
    settings: Settings,
    results: Sequence[RunResult],
    tuning_rows: Sequence[dict[str, Any]],
    cells: Sequence[CellRow],
    effects: Sequence[EffectRow],
) -> list[Path]:
    """runs.csv/json, tuning.csv, cells.csv, effects.csv, tables.md and the figures."""
    files = [out / "runs.csv", out / "runs.json", out / "tuning.csv", out / "cells.csv", out / "effects.csv"]
    _write_csv(files[0], [_run_row(r) for r in results])
    _write_json(files[1], [r.to_dict() for r in results])
    _write_csv(files[2], list(tuning_rows))
    _write_csv(files[3], [dataclasses.asdict(c) for c in cells])
    _write_csv(files[4], [dataclasses.asdict(e) for e in effects])
    tables = markdown_tables(cells, effects)
    (out / "tables.md").write_text(tables + "\n")
    (out / "effects.md").write_text(effects_markdown(effects))
    files += [out / "tables.md", out / "effects.md"]
    files += plot_iqm(cells, out)
    files += plot_effects(effects, out)
    report = [r for r in results if r.spec.phase == "report"]
    for name in settings.tasks:
        mine = [r for r in report if r.spec.task == name]
        if mine:
            files.append(plot_profiles(TASKS[name], mine, out, reps=settings.reps))
    return [f for f in files if f.exists()]


def _read_rows(path: Path, kind: type[Any]) -> list[Any]:
    """``cells.csv`` / ``effects.csv`` rows back as :class:`CellRow` / :class:`EffectRow`."""
    types = {f.name: f.type for f in dataclasses.fields(kind)}
    rows = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            values: dict[str, Any] = {}
            for key, text in raw.items():
                if key not in types:
                    continue
                kind_name = str(types[key])
                if kind_name == "float":
                    values[key] = float(text) if text not in ("", None) else math.nan
                elif kind_name == "int":
                    values[key] = int(text)
                else:
                    values[key] = text
            rows.append(kind(**values))
    return rows


@dataclass
class ReplicationRow:
    """One estimate of the original study next to the same estimate on new seeds."""

    what: str
    """``"effect"`` (a comparison: the IQM difference) or ``"cell"`` (a cell's IQM)."""
    task: str
    metric: str
    name: str
    value: float
    low: float
    high: float
    rep_value: float
    rep_low: float
    rep_high: float
    verdict: str
    """For effects: ``holds`` (an interval that excludes 0 in the original; the new estimate has
    the same sign and lies in the original interval), ``same sign, outside the CI``,
    ``no effect, again`` (both intervals hold 0), and the fragile ones: ``sign flipped``
    (opposite signs and the original interval excludes 0), ``gone`` (the original interval
    excludes 0, the new estimate is exactly 0) and ``an effect appeared`` (the
    original interval holds 0, the new one does not). For cells: ``holds`` (the new IQM lies in
    the original interval) or ``outside the CI``."""

    @property
    def fragile(self) -> bool:
        return self.verdict in ("sign flipped", "gone", "an effect appeared", "outside the CI")


def _effect_verdict(value: float, low: float, high: float, rep: float, rep_low: float, rep_high: float) -> str:
    if low <= 0.0 <= high:
        return "no effect, again" if rep_low <= 0.0 <= rep_high else "an effect appeared"
    if rep == 0.0:
        return "gone"
    if math.copysign(1.0, rep) != math.copysign(1.0, value):
        return "sign flipped"
    return "holds" if low <= rep <= high else "same sign, outside the CI"


def replication_rows(
    cells: Sequence[CellRow],
    effects: Sequence[EffectRow],
    rep_cells: Sequence[CellRow],
    rep_effects: Sequence[EffectRow],
) -> list[ReplicationRow]:
    """Every effect and cell of a study next to its replication on other seeds (the rows
    both have), with a verdict on whether the direction, and the value, reproduced."""
    rows: list[ReplicationRow] = []
    rep_e = {(e.task, e.metric, e.factor, e.a, e.b): e for e in rep_effects}
    for e in effects:
        r = rep_e.get((e.task, e.metric, e.factor, e.a, e.b))
        if r is None:
            continue
        name = f"{e.a} vs {e.b}" if e.factor == "reference" else f"{e.factor}: {e.a} vs {e.b}"
        verdict = _effect_verdict(e.diff, e.diff_low, e.diff_high, r.diff, r.diff_low, r.diff_high)
        rows.append(
            ReplicationRow("effect", e.task, e.metric, name, e.diff, e.diff_low, e.diff_high, r.diff, r.diff_low,
                           r.diff_high, verdict)
        )  # fmt: skip
    rep_c = {(c.task, c.metric, c.cell): c for c in rep_cells}
    for c in cells:
        q = rep_c.get((c.task, c.metric, c.cell))
        if q is None:
            continue
        verdict = "holds" if c.low <= q.iqm <= c.high else "outside the CI"
        rows.append(
            ReplicationRow("cell", c.task, c.metric, c.cell, c.iqm, c.low, c.high, q.iqm, q.low, q.high, verdict)
        )
    return rows


def compare_replication(original: Path, replication: Path) -> list[ReplicationRow]:
    """:func:`replication_rows` of two study folders; writes ``replication.csv`` and
    ``replication.md`` into ``replication``."""
    rows = replication_rows(
        _read_rows(original / "cells.csv", CellRow),
        _read_rows(original / "effects.csv", EffectRow),
        _read_rows(replication / "cells.csv", CellRow),
        _read_rows(replication / "effects.csv", EffectRow),
    )
    _write_csv(replication / "replication.csv", [{**dataclasses.asdict(r), "fragile": r.fragile} for r in rows])
    (replication / "replication.md").write_text(replication_markdown(rows) + "\n")
    return rows


def replication_markdown(rows: Sequence[ReplicationRow]) -> str:
    """A count of verdicts per kind and metric, then every fragile row."""
    lines = ["| estimates | metric | " + " | ".join(VERDICTS) + " |", "|---|---|" + "---|" * len(VERDICTS)]
    for what in ("effect", "cell"):
        for metric in METRICS:
            mine = [r for r in rows if r.what == what and r.metric == metric]
            if mine:
                counts = [str(sum(r.verdict == v for r in mine)) for v in VERDICTS]
                lines.append(f"| {what}s | {metric} | " + " | ".join(counts) + " |")
    fragile = [r for r in rows if r.fragile]
    lines += ["", "| fragile | task | metric | estimate | original [95% CI] | replication [95% CI] | verdict |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in fragile:
        lines.append(
            f"| {r.what} | {r.task} | {r.metric} | {r.name} | {_f(r.value)} [{_f(r.low)}, {_f(r.high)}] | "
            f"{_f(r.rep_value)} [{_f(r.rep_low)}, {_f(r.rep_high)}] | {r.verdict} |"
        )
    return "\n".join(lines)


#: Every verdict of :class:`ReplicationRow`, in table order.
VERDICTS: tuple[str, ...] = (
    "holds",
    "same sign, outside the CI",
    "no effect, again",
    "sign flipped",
    "gone",
    "an effect appeared",
    "outside the CI",
)


def _pyplot() -> Any:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # files only: headless machines, CI
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


#: Panels per row of the study's multi-task figures.
PANEL_COLUMNS = 4


def _panel_grid(plt: Any, panels: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A figure of ``panels`` axes, :data:`PANEL_COLUMNS` to a row; the unused ones hidden."""
    cols = min(panels, PANEL_COLUMNS)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def plot_iqm(cells: Sequence[CellRow], out: Path) -> list[Path]:
    """One figure per metric: a panel per task, the cells' IQMs with 95% intervals."""
    plt = _pyplot()
    paths = []
    tasks = list(dict.fromkeys(c.task for c in cells))
    for metric in METRICS:
        fig, axes = _panel_grid(plt, len(tasks), 4.2, 5.0)
        for ax, task in zip(axes, tasks, strict=True):
            rows = [c for c in cells if c.task == task and c.metric == metric]
            y = np.arange(len(rows))
            colors = [
                f"C{ACTS.index(c.act) if c.act in ACTS else 0}" if c.estimator in FACTORIAL else "k" for c in rows
            ]
            for i, (c, color) in enumerate(zip(rows, colors, strict=True)):
                ax.errorbar(
                    [c.iqm], [i], xerr=[[c.iqm - c.low], [c.high - c.iqm]], fmt="o", color=color, ms=3, capsize=2
                )
            ax.set_yticks(y, [c.cell for c in rows], fontsize=7)
            ax.invert_yaxis()
            if math.isfinite(TASKS[task].optimum):
                ax.axvline(TASKS[task].optimum, color="gray", ls=":", lw=1)
            ax.set_title(task, fontsize=9)
            ax.grid(alpha=0.3, axis="x")
            ax.set_xlabel(f"{metric} (IQM, 95% CI)")
        fig.tight_layout()
        path = out / f"iqm_{metric}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_effects(effects: Sequence[EffectRow], out: Path) -> list[Path]:
    """A panel per task and metric: each comparison's paired IQM difference with its interval;
    filled where the Holm-adjusted p-value is below 0.05."""
    if not effects:
        return []
    plt = _pyplot()
    tasks = list(dict.fromkeys(e.task for e in effects))
    panels = [(task, metric) for task in tasks for metric in METRICS]
    fig, axes = _panel_grid(plt, len(panels), 4.2, 3.2)
    for ax, (task, metric) in zip(axes, panels, strict=True):
        rows = [e for e in effects if e.task == task and e.metric == metric]
        y = np.arange(len(rows))
        for i, e in enumerate(rows):
            significant = math.isfinite(e.p_holm) and e.p_holm < 0.05
            ax.errorbar(
                [e.diff],
                [i],
                xerr=[[e.diff - e.diff_low], [e.diff_high - e.diff]],
                fmt="o",
                color="C3" if significant else "C0",
                mfc="C3" if significant else "white",
                capsize=2,
                ms=4,
            )
        ax.axvline(0.0, color="gray", lw=1)
        ax.set_yticks(y, [f"{e.a} - {e.b}" for e in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{task}: {metric}", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle("paired IQM differences, 95% CI (red: Holm-adjusted p < 0.05)", fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.985))  # leave the title its own strip
    path = out / "effects.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [path]


def plot_profiles(task: Task, results: Sequence[RunResult], out: Path, *, reps: int) -> Path:
    """Performance profiles (rliable's score distributions) of every cell, both metrics, one task."""
    plt = _pyplot()
    cells = [c for c in cells_for(task) if any(r.spec.cell == c for r in results)]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(11, 4.2), squeeze=False)
    for ax, metric in zip(axes[0], METRICS, strict=True):
        grid, profiles = performance_profiles(results, cells, metric, reps=reps)
        for i, (label, (center, low, high)) in enumerate(profiles.items()):
            style = "-" if i < 4 else "--" if i < 8 else ":" if i < 12 else "-."
            ax.plot(grid, center, style, color=f"C{i % 4}" if i < 12 else f"C{4 + i % 4}", label=label, lw=1.2)
            ax.fill_between(grid, low, high, color=f"C{i % 4}" if i < 12 else f"C{4 + i % 4}", alpha=0.04, lw=0)
        ax.set_xlabel(metric)
        ax.set_ylabel("fraction of runs with score > x")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.suptitle(f"{task.name}: performance profiles (score distributions, 95% CI)", fontsize=9)
    fig.tight_layout()
    path = out / f"profiles_{task.name}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    """The command line's flags (one parser: the study's and ``--compare``'s)."""
    p = argparse.ArgumentParser(
        prog="python -m gumbel_ac.study",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("runs/study"), help="output folder (default: %(default)s)")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=None, help="default: all (--quick: 3)")
    p.add_argument("--seeds", type=int, default=None, help="reported seeds 0..N-1 (default 10; --quick: 2)")
    p.add_argument(
        "--binary-seeds", type=int, default=None, help="reported seeds of binary-outcome tasks (default 20; --quick: 2)"
    )
    p.add_argument(
        "--tune-seeds", type=int, default=1, help="tuning seeds 1000.. per grid point (default: %(default)s)"
    )
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="first reported seed (default: %(default)s); e.g. 20 replicates the study on new seeds",
    )
    p.add_argument(
        "--reuse", type=Path, default=None, help="read finished runs from this study folder too (e.g. its tuning)"
    )
    p.add_argument("--workers", type=int, default=2, help="parallel runs, one torch thread each (default: %(default)s)")
    p.add_argument("--reps", type=int, default=None, help="bootstrap replications (default 2000; --quick: 200)")
    p.add_argument(
        "--quick", action="store_true", help="2 seeds, 3 tasks, tiny budgets, a one-point grid (no tuning runs)"
    )
    p.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("ORIGINAL", "REPLICATION"),
        help="train nothing: compare two finished study folders (e.g. --first-seed 20's) estimate by estimate",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    """Command-line flags -> :class:`Settings`."""
    p = _parser()
    return _settings(p, p.parse_args(argv))


def _settings(p: argparse.ArgumentParser, a: argparse.Namespace) -> Settings:
    """Parsed flags -> :class:`Settings`, a bad value being ``p.error`` (one line, exit 2)."""
    for flag in ("seeds", "binary_seeds", "workers", "reps"):
        value = getattr(a, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if a.tune_seeds < 1:
        p.error(f"--tune-seeds must be >= 1, got {a.tune_seeds}")
    if not 0 <= a.first_seed < TUNING_SEED_BASE:
        p.error(f"--first-seed must be in [0, {TUNING_SEED_BASE}) (the tuning seeds start there), got {a.first_seed}")
    quick_seeds = 2 if a.quick else None
    return Settings(
        out=a.out,
        tasks=tuple(a.tasks or (QUICK_TASKS if a.quick else TASKS)),
        seeds=a.seeds or quick_seeds or 10,
        binary_seeds=a.binary_seeds or quick_seeds or 20,
        tune_seeds=a.tune_seeds,
        first_seed=a.first_seed,
        reuse=a.reuse,
        quick=a.quick,
        workers=a.workers,
        reps=a.reps or (200 if a.quick else 2000),
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    if a.compare is not None:
        original, replication = a.compare
        for folder in a.compare:
            if not (folder / "effects.csv").is_file() or not (folder / "cells.csv").is_file():
                print(f"error: {folder} holds no finished study (no effects.csv/cells.csv)", file=sys.stderr)
                return 2
        rows = compare_replication(original, replication)
        print(replication_markdown(rows))
        print(f"\nwritten: {replication / 'replication.md'}, {replication / 'replication.csv'}")
        return 0
    settings = _settings(p, a)
    try:
        import scipy.stats  # noqa: F401, PLC0415 (Wilcoxon p-values)
    except ImportError:
        print('error: the study needs scipy: pip install -e ".[bench]"', file=sys.stderr)
        return 2
    result = run_study(settings)
    print()
    print(markdown_tables(result.cells, result.effects))
    print(f"wall time {result.wall_seconds:.0f} s; files: " + ", ".join(str(f) for f in result.files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "ACTS",
    "FACTORIAL",
    "METRICS",
    "REFERENCES",
    "TASKS",
    "Cell",
    "RunResult",
    "RunSpec",
    "Settings",
    "Task",
    "cells_for",
    "comparisons_for",
    "holm",
    "iqm",
    "iqm_ci",
    "paired_iqm_difference",
    "probability_of_improvement",
    "run_study",
    "wilcoxon_p",
]
