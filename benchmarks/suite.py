"""The benchmark suite: gumbel_ac vs SB3 PPO and SB3 DQN (RL-Zoo hyperparameters), same env steps.

    python benchmarks/suite.py --out bench/suite                        # everything, 5 seeds
    python benchmarks/suite.py --out bench/suite --tasks CartPole-v1 Acrobot-v1 --seeds 0 1 2 3 4
    python benchmarks/suite.py --out bench/suite --tasks MinAtar-Breakout --steps-scale 0.25
    python benchmarks/suite.py --out bench/suite --report               # tables and figures only
    python benchmarks/suite.py --quick --out /tmp/suite-quick           # ~1 minute smoke run

Why: every learning result of this package used to be on CartPole, Catch and DeepSea. This
script says how ours compares where users will bring it, with the baselines in their tuned
(RL-Zoo) settings, and with the statistics of Agarwal et al. 2021 ("Deep RL at the edge of
the statistical precipice", NeurIPS; the ``rliable`` package): IQM over seeds with 95%
stratified-bootstrap confidence intervals.

Protocol (identical for every method):

* **Same env-step budget** per task (:data:`TASKS`, times ``--steps-scale``). SB3's PPO
  collects whole rollouts (``n_envs * n_steps`` steps), so it may run up to one rollout past
  the budget; the env steps it actually took are recorded and plotted.
* **Evaluation**: every ``budget / 20`` env steps and at the end, the deterministic policy
  plays ``--eval-episodes`` (10) episodes of the task's *reference* Gymnasium env
  (``CartPole-v1``, ..., ``MinAtar/Breakout-v1``); ours trains on our batched torch ids
  (``gumbel_ac/CartPole-v1``, ``gumbel_ac/MinAtar-Breakout-v1``, ...) and is evaluated on the
  same reference env as SB3, except on MinAtar: there the trainer cannot evaluate on the
  reference id (channel-last bool frames vs our channel-first uint8 ones), so ours is evaluated
  on its torch id, the same game and dynamics (envs/minatar.py). Evaluation time is excluded
  from the training clock.
* **Interleaved**: seed by seed, and within a seed task by task and method by method (ours,
  PPO, DQN), so that drift in machine speed (other jobs on a shared machine) hits all methods
  alike. One process, ``torch.set_num_threads(1)``, CPU.
* **Resumable**: each finished run is one JSON file under ``OUT/runs/``; a rerun skips it.
* **Reported per task and method**: final return (the last evaluation; IQM over seeds, 95%
  stratified-bootstrap CI via ``rliable``), the normalised AUC of the evaluation curve (the
  mean normalised score over the run, trapezoid rule over env steps; IQM and CI likewise),
  env steps and training seconds to the first evaluation >= the task's threshold (median over
  the seeds that reach it, and how many did), and the training seconds of the whole budget.
* **Normalised scores**: 0 = a uniformly random policy (measured here with the same
  evaluation, ``--random-episodes`` episodes, cached in ``OUT/random_scores.json``), 1 = the
  task's threshold (:data:`TASKS`, ``threshold``): the classic tasks' "solved" levels, and for
  MinAtar a level chosen here (no source defines one; see :data:`TASKS`).

Hyperparameters:

* **ours**: ``Config()`` defaults plus the env's preset (``preset="auto"``,
  gumbel_ac/presets.py) on the torch id, exactly what ``python train.py --env ID`` runs; the
  config applied is saved in each run's JSON.
* **PPO and DQN**: RL-Zoo (DLR-RM/rl-baselines3-zoo, ``hyperparams/ppo.yml`` and
  ``hyperparams/dqn.yml``), transcribed in :data:`ZOO_PPO` and :data:`ZOO_DQN` with RL-Zoo's
  own budget ``n_timesteps`` beside them. LunarLander-v3 takes RL-Zoo's ``LunarLander-v2``
  entries (v3 fixes bugs, same task). RL-Zoo's linear schedules (``lin_X``) decay over our
  budget, as they would over theirs; DQN's ``exploration_fraction`` is rescaled so that epsilon
  reaches its final value after the same number of env steps as in RL-Zoo's run
  (``fraction * zoo_n_timesteps / budget``, capped at 1). ``normalize: true`` is SB3's
  ``VecNormalize`` (observations and rewards) during training; evaluation uses the training
  statistics, unnormalised rewards (RL-Zoo's ``enjoy.py`` does the same).
* **MinAtar has no RL-Zoo entry.** DQN takes the MinAtar paper's settings (Young & Tian 2019,
  arXiv:1903.03176, and its ``examples/dqn.py``): batch 32, replay 100k, one update per env
  step, target network every 1000 steps, replay start 5000, epsilon 1.0 -> 0.1 over the first
  100k steps, gamma 0.99, centred RMSProp (lr 2.5e-4, squared-gradient momentum 0.95, min
  squared gradient 0.01), Huber loss, and the paper's network (:class:`MinAtarCNN`: conv 16
  3x3 stride 1, ReLU, flatten, linear 128, ReLU, then SB3's linear Q head); SB3's default
  gradient-norm clip of 10 stays. PPO takes RL-Zoo's ``atari`` entry (8 envs, n_steps 128,
  4 epochs, batch 256, lr lin 2.5e-4, clip lin 0.1, vf 0.5, ent 0.01) without the Atari
  wrappers (MinAtar frames need no resizing, frame stacking or frame skipping) and with the
  same :class:`MinAtarCNN` as a shared feature extractor.

Budgets (:data:`TASKS`): the smaller of RL-Zoo's two ``n_timesteps`` (DQN's) for the classic
tasks; 50k env steps for MinAtar (the MinAtar paper trains 5M frames and anneals DQN's epsilon
over the first 100k: our MinAtar numbers are early-learning numbers, and say nothing about
asymptotic play). Time per task (``est_minutes``: all three methods, 5 seeds, one process),
measured on the project's 2-core CPU while it was shared (load average 5-7; ours' 50k-step
CartPole run took 40-125 s there against ~7 s on the quiet machine, README): CartPole-v1
~60 min (per seed: ours 1-3, PPO 1.5-4.5, DQN 7-9 min); MinAtar ~100 min per game,
(measured later with two processes on the quiet machine: Freeway and Seaquest ~35 min each),
extrapolated from 20k-step Breakout runs (per seed: ours 2, PPO 0.5, DQN 4-5 min at 20k; DQN's
updates scale 15k -> 45k). SB3's DQN dominates: its cost is its gradient steps (CartPole 25k
in 6.5-7.7 min here, ~17 ms each), and Acrobot-v1 and LunarLander-v3 make 100k, MountainCar-v0
60k, so those three were not measured but should take ~2.5 h, ~2.5 h and ~1.5 h at that speed;
the full suite is about 12-15 h on the loaded machine, a few hours on a quiet one. Run tasks
in separate processes (``--tasks``, one ``--out``) to use both cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

os.environ.setdefault("WANDB_MODE", "disabled")
# rliable passes arch a RandomState, which arch deprecates; the bootstrap itself is unchanged.
warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the top-level ``envs`` package registers our torch ids
    sys.path.insert(0, str(ROOT))

METHODS = ("ours", "ppo", "dqn")
METHOD_LABELS = {"ours": "gumbel_ac (ours)", "ppo": "SB3 PPO (RL-Zoo)", "dqn": "SB3 DQN (RL-Zoo / MinAtar paper)"}


@dataclass(frozen=True)
class Task:
    """One benchmark task: where each method trains and evaluates, its budget and threshold."""

    #: Short name used on the command line and in file names.
    name: str
    #: The reference Gymnasium id: SB3 trains on it, every method is evaluated on it.
    ref_id: str
    #: Our batched torch id (ours trains on it), or None when there is none (ours uses ref_id).
    ours_id: str | None
    #: Env steps per run, the same for every method.
    budget: int
    #: The "solved"/reference level: steps and seconds to the first eval >= it; normalised 1.
    threshold: float
    #: Where the threshold comes from.
    threshold_source: str
    #: Minutes for all three methods x 5 seeds at this budget on the shared 2-core CPU (load
    #: average 5-7 while measured), from measured runs; 0 = not measured (module docstring).
    est_minutes: float = 0.0
    #: A time limit every method trains and is evaluated under (None: the env's own). Only
    #: where an episode can otherwise last forever (MinAtar Seaquest; see :data:`TASKS`).
    max_episode_steps: int | None = None

    @property
    def minatar(self) -> bool:
        return self.ref_id.startswith("MinAtar/")


_MINATAR_LEVEL = (
    "our choice (no source defines a solved level for MinAtar): a score a learning agent reaches "
    "well above random play within this budget"
)


def _minatar(game: str, level: float, max_episode_steps: int | None = None) -> Task:
    """A MinAtar game: ours on our torch id, SB3 on MinAtar's own, 50k env steps."""
    return Task(
        f"MinAtar-{game}",
        f"MinAtar/{game}-v1",
        f"gumbel_ac/MinAtar-{game}-v1",
        50_000,
        level,
        _MINATAR_LEVEL,
        100.0,
        max_episode_steps,
    )


#: MinAtar Seaquest has no time limit (neither minatar 1.0.15 nor its Gymnasium registration
#: sets one), and a sub that stays at the surface never loses oxygen: a greedy policy that
#: learned to stay there plays one episode forever, and no evaluation returns. The suite caps
#: its episodes at 1000 steps, gymnax's ``max_steps_in_episode`` default for its MinAtar
#: Seaquest (RobertTLange/gymnax, gymnax/environments/minatar/seaquest.py), for every method,
#: in training, evaluation and the random score alike. At 50k env steps no run here scores
#: above 1, so the limit ends idle episodes, not good ones.
SEAQUEST_TIME_LIMIT = 1000


#: The tasks, their budgets and thresholds. Classic thresholds: Gymnasium's reward_threshold
#: (CartPole-v1 475, MountainCar-v0 -110 is Gymnasium's; -120, the issue's target, is used),
#: Acrobot-v1 -100 (Gymnasium's reward_threshold), LunarLander 200 (Gymnasium's).
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("CartPole-v1", "CartPole-v1", "gumbel_ac/CartPole-v1", 50_000, 475.0, "Gymnasium reward_threshold", 60.0),
        Task("Acrobot-v1", "Acrobot-v1", "gumbel_ac/Acrobot-v1", 100_000, -100.0, "Gymnasium reward_threshold"),
        Task("MountainCar-v0", "MountainCar-v0", "gumbel_ac/MountainCar-v0", 120_000, -120.0, "the issue's target"),
        Task("LunarLander-v3", "LunarLander-v3", None, 100_000, 200.0, "Gymnasium reward_threshold"),
        *(_minatar(game, level) for game, level in (("Breakout", 10.0), ("Asterix", 5.0), ("Freeway", 20.0),
                                                      ("SpaceInvaders", 20.0))),
        _minatar("Seaquest", 5.0, SEAQUEST_TIME_LIMIT),
    )
}  # fmt: skip

#: ``--quick``: two tasks, two seeds, tiny budgets (a smoke test of the whole pipeline).
QUICK_TASKS = ("CartPole-v1", "MinAtar-Breakout")
QUICK_BUDGETS = {"CartPole-v1": 1_500, "MinAtar-Breakout": 1_500}


# --------------------------------------------------------------------------------------
# RL-Zoo hyperparameters, transcribed. Source: DLR-RM/rl-baselines3-zoo, hyperparams/ppo.yml
# (commit 208b6fd) and hyperparams/dqn.yml (commit ce95481). "lin_X" is RL-Zoo's linear
# schedule from X to 0; "n_timesteps" is RL-Zoo's own budget (ours is Task.budget).
# --------------------------------------------------------------------------------------

#: PPO per task. RL-Zoo's ``LunarLander-v2`` entry for LunarLander-v3. MinAtar: no RL-Zoo
#: entry; RL-Zoo's ``atari`` entry without its Atari wrappers, with :class:`MinAtarCNN`.
ZOO_PPO: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(n_timesteps=1e5, n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                        n_epochs=20, ent_coef=0.0, learning_rate="lin_1e-3", clip_range="lin_0.2"),
    "Acrobot-v1": dict(n_timesteps=1e6, normalize=True, n_envs=16, n_steps=256, gae_lambda=0.94, gamma=0.99,
                       n_epochs=4, ent_coef=0.0),
    "MountainCar-v0": dict(n_timesteps=1e6, normalize=True, n_envs=16, n_steps=16, gae_lambda=0.98, gamma=0.99,
                           n_epochs=4, ent_coef=0.0),
    "LunarLander-v3": dict(n_timesteps=1e6, n_envs=16, n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999,
                           n_epochs=4, ent_coef=0.01),
    "minatar": dict(n_timesteps=1e7, n_envs=8, n_steps=128, n_epochs=4, batch_size=256, learning_rate="lin_2.5e-4",
                    clip_range="lin_0.1", vf_coef=0.5, ent_coef=0.01),
}  # fmt: skip


def _zoo_dqn_cartpole() -> dict[str, Any]:
    from sb3_common import DQN_ZOO_CARTPOLE  # RL-Zoo's CartPole-v1 DQN, transcribed there once

    zoo = {k: v for k, v in DQN_ZOO_CARTPOLE.items() if k != "policy_kwargs"}
    return dict(n_timesteps=5e4, **zoo, net_arch=DQN_ZOO_CARTPOLE["policy_kwargs"]["net_arch"])


#: DQN per task (``net_arch`` is RL-Zoo's ``policy_kwargs=dict(net_arch=...)``). MinAtar: no
#: RL-Zoo entry; the MinAtar paper's settings (module docstring) with :class:`MinAtarCNN`.
ZOO_DQN: dict[str, dict[str, Any]] = {
    "CartPole-v1": _zoo_dqn_cartpole(),
    "Acrobot-v1": dict(n_timesteps=1e5, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0,
                       gamma=0.99, target_update_interval=250, train_freq=4, gradient_steps=-1,
                       exploration_fraction=0.12, exploration_final_eps=0.1, net_arch=[256, 256]),
    "MountainCar-v0": dict(n_timesteps=1.2e5, learning_rate=4e-3, batch_size=128, buffer_size=10_000,
                           learning_starts=1_000, gamma=0.98, target_update_interval=600, train_freq=16,
                           gradient_steps=8, exploration_fraction=0.2, exploration_final_eps=0.07,
                           net_arch=[256, 256]),
    "LunarLander-v3": dict(n_timesteps=1e5, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000,
                           learning_starts=0, gamma=0.99, target_update_interval=250, train_freq=4,
                           gradient_steps=-1, exploration_fraction=0.12, exploration_final_eps=0.1,
                           net_arch=[256, 256]),
    # Young & Tian 2019 (arXiv:1903.03176), examples/dqn.py: NUM_FRAMES 5e6, FIRST_N_FRAMES 1e5
    # (epsilon annealing), REPLAY_START_SIZE 5000, TRAINING_FREQ 1, TARGET_NETWORK_UPDATE_FREQ 1000.
    "minatar": dict(n_timesteps=5e6, learning_rate=2.5e-4, batch_size=32, buffer_size=100_000,
                    learning_starts=5_000, gamma=0.99, target_update_interval=1_000, train_freq=1,
                    gradient_steps=1, exploration_fraction=100_000 / 5e6, exploration_initial_eps=1.0,
                    exploration_final_eps=0.1, net_arch=[], rmsprop=dict(alpha=0.95, eps=0.01, centered=True)),
}  # fmt: skip

#: Published numbers, not re-run: RL-Zoo's benchmark table (DLR-RM/rl-baselines3-zoo,
#: benchmark.md, commit 02a1a90): one trained agent per entry, deterministic policy,
#: mean ± std over ~150k evaluation steps, at RL-Zoo's own budget (LunarLander: v2).
#: MinAtar: the MinAtar paper reports DQN as learning curves; no number was read from a
#: source for this table, so none is given.
PUBLISHED: dict[str, list[tuple[str, str]]] = {
    "CartPole-v1": [("PPO, RL-Zoo benchmark (100k steps, 1 run)", "500.0 ± 0.0"),
                    ("DQN, RL-Zoo benchmark (50k steps, 1 run)", "500.0 ± 0.0")],
    "Acrobot-v1": [("PPO, RL-Zoo benchmark (1M steps, 1 run)", "-73.5 ± 18.2"),
                   ("DQN, RL-Zoo benchmark (100k steps, 1 run)", "-76.6 ± 11.8")],
    "MountainCar-v0": [("PPO, RL-Zoo benchmark (1M steps, 1 run)", "-110.4 ± 19.5"),
                       ("DQN, RL-Zoo benchmark (120k steps, 1 run)", "-100.8 ± 9.9")],
    "LunarLander-v3": [("PPO, RL-Zoo benchmark (LunarLander-v2, 1M steps, 1 run)", "242.1 ± 31.8"),
                       ("DQN, RL-Zoo benchmark (LunarLander-v2, 100k steps, 1 run)", "154.4 ± 79.2")],
}  # fmt: skip


def zoo_key(task: Task) -> str:
    return "minatar" if task.minatar else task.name


def schedule(value: Any) -> Any:
    """RL-Zoo's ``lin_X`` -> SB3's schedule (progress_remaining 1 -> 0, value X -> 0); else as is."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


# --------------------------------------------------------------------------------------
# The MinAtar network for SB3.
# --------------------------------------------------------------------------------------


def _minatar_cnn_class() -> type:
    """:class:`MinAtarCNN`, built lazily so importing this module does not import SB3."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class MinAtarCNN(BaseFeaturesExtractor):  # type: ignore[misc]
        """The MinAtar paper's network body (Young & Tian 2019, arXiv:1903.03176): conv 16
        3x3 stride 1, ReLU, flatten, linear ``features_dim`` (128), ReLU.

        Input: SB3's float observations of a ``10 x 10 x C`` grid (channel last, as MinAtar's
        Gymnasium envs emit them; SB3 does not transpose bool boxes, which it does not treat as
        images), permuted to channel first here."""

        def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
            super().__init__(observation_space, features_dim)
            h, w, c = observation_space.shape
            self.conv = nn.Sequential(nn.Conv2d(c, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
            self.linear = nn.Sequential(nn.Linear(16 * (h - 2) * (w - 2), features_dim), nn.ReLU())

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.linear(self.conv(observations.permute(0, 3, 1, 2).float()))

    return MinAtarCNN


# --------------------------------------------------------------------------------------
# Runs.
# --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One training run: its evaluation curve and clocks (saved as ``runs/<task>__<method>__s<seed>.json``)."""

    task: str
    method: str
    seed: int
    budget: int
    #: (env steps, eval mean, eval std, training seconds so far), evaluation time excluded.
    evals: list[tuple[int, float, float, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    train_env: str = ""
    eval_env: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def final(self) -> float:
        return self.evals[-1][1]

    def first_hit(self, threshold: float) -> tuple[int, float] | None:
        return next(((s, t) for s, m, _, t in self.evals if m >= threshold), None)


def run_path(out: Path, task: str, method: str, seed: int) -> Path:
    return out / "runs" / f"{task}__{method}__s{seed}.json"


def ours_train_id(task: Task) -> tuple[str, str]:
    """Ours' training id, and a note when it falls back to the reference id."""
    import envs  # noqa: F401  (registers the gumbel_ac/ torch ids)

    if task.ours_id is None:
        return task.ref_id, f"no torch id for {task.name}: ours trains on {task.ref_id}"
    if task.ours_id not in gym.registry:
        return task.ref_id, f"{task.ours_id} is not registered: ours trains on the reference id {task.ref_id}"
    return task.ours_id, ""


def run_ours(task: Task, seed: int, budget: int, args: argparse.Namespace) -> Run:
    from gumbel_ac.config import Config
    from gumbel_ac.trainer import train

    train_id, note = ours_train_id(task)
    # The trainer evaluates only on an env with the training env's spaces. Our MinAtar ids emit
    # channel-first uint8 frames, MinAtar's Gymnasium ids channel-last bool ones: ours is then
    # evaluated on its torch id, the same game (same dynamics, sticky actions 0.1 and minimal
    # action set as MinAtar/<Game>-v1: envs/minatar.py), with its own eval episodes.
    eval_id = train_id if task.minatar else task.ref_id
    run = Run(task.name, "ours", seed, budget, train_env=train_id, eval_env=eval_id, note=note)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(
            env=train_id,
            eval_env=eval_id,
            # The torch envs honour max_episode_steps (truncation, as Gymnasium's TimeLimit),
            # and the eval env is the training id here, so it gets the same limit.
            env_kwargs=json.dumps(time_limit_kwargs(task)) if task.max_episode_steps else "",
            seed=seed,
            total_steps=budget,
            eval_every=max(1, budget // args.eval_points),
            eval_episodes=args.eval_episodes,
            final_eval_episodes=args.eval_episodes,
            checkpoint_every=0,
            log_every=budget,
            progress=False,
            runs_dir=tmp,
            run_name="suite",
            device="cpu",
            num_threads=1,
        )
        result = train(cfg)
        if result.interrupted:  # a signal stopped the trainer early: not a finished run, save nothing
            raise KeyboardInterrupt(f"{task.name} ours seed {seed} interrupted")
        saved = json.loads((result.run_dir / "config.json").read_text())
    run.settings = {k: v for k, v in saved.items() if k not in ("runs_dir", "run_name")}
    run.evals = [(e.step, e.mean, e.std, e.train_seconds) for e in result.evals]
    run.train_seconds = result.train_seconds
    return run


def time_limit_kwargs(task: Task) -> dict[str, int]:
    """``gymnasium.make`` kwargs for the task's time limit (empty when it keeps the env's own)."""
    return {} if task.max_episode_steps is None else {"max_episode_steps": task.max_episode_steps}


def _sb3_env(task: Task, n_envs: int, seed: int) -> Any:
    from stable_baselines3.common.env_util import make_vec_env

    from gumbel_ac.envpkgs import prepare_env_id

    return make_vec_env(prepare_env_id(task.ref_id), n_envs=n_envs, seed=seed, env_kwargs=time_limit_kwargs(task))


def make_ppo(task: Task, seed: int, budget: int) -> tuple[Any, dict[str, Any]]:
    """SB3 PPO with the task's RL-Zoo entry (:data:`ZOO_PPO`); also returns the settings used."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    zoo = dict(ZOO_PPO[zoo_key(task)])
    zoo.pop("n_timesteps")
    normalize = zoo.pop("normalize", False)
    n_envs = zoo.pop("n_envs")
    env = _sb3_env(task, n_envs, seed)
    if normalize:
        env = VecNormalize(env, gamma=zoo.get("gamma", 0.99))
    kwargs = {k: schedule(v) for k, v in zoo.items()}
    if task.minatar:
        kwargs["policy_kwargs"] = dict(features_extractor_class=_minatar_cnn_class(), net_arch=[])
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", **kwargs)
    return model, dict(ZOO_PPO[zoo_key(task)])


def make_dqn(task: Task, seed: int, budget: int) -> tuple[Any, dict[str, Any]]:
    """SB3 DQN with the task's RL-Zoo (or MinAtar paper) entry (:data:`ZOO_DQN`), one env."""
    from stable_baselines3 import DQN

    zoo = dict(ZOO_DQN[zoo_key(task)])
    zoo_steps = zoo.pop("n_timesteps")
    # Keep RL-Zoo's epsilon schedule in env steps: SB3's fraction is of *our* budget.
    zoo["exploration_fraction"] = min(1.0, zoo["exploration_fraction"] * zoo_steps / budget)
    policy_kwargs: dict[str, Any] = dict(net_arch=zoo.pop("net_arch"))
    rmsprop = zoo.pop("rmsprop", None)
    if rmsprop is not None:
        policy_kwargs.update(optimizer_class=torch.optim.RMSprop, optimizer_kwargs=rmsprop)
    if task.minatar:
        policy_kwargs.update(features_extractor_class=_minatar_cnn_class(), features_extractor_kwargs={})
    env = _sb3_env(task, 1, seed)
    model = DQN("MlpPolicy", env, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **zoo)
    used = dict(ZOO_DQN[zoo_key(task)])
    used["exploration_fraction (rescaled to our budget)"] = zoo["exploration_fraction"]
    return model, used


def run_sb3(task: Task, method: str, seed: int, budget: int, args: argparse.Namespace) -> Run:
    from sb3_common import SyncedTimedEval

    model, used = (make_ppo if method == "ppo" else make_dqn)(task, seed, budget)
    # One env per eval episode, stepped together (as ours evaluates): evaluate_policy plays
    # each env's one episode; a single env would play them in turn at several times the cost.
    eval_env = _sb3_env(task, args.eval_episodes, 10_000 + seed)
    train_env = model.get_env()
    from stable_baselines3.common.vec_env import VecNormalize

    if isinstance(train_env, VecNormalize):
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    every = max(1, budget // args.eval_points)
    callback = SyncedTimedEval(eval_env, every, args.eval_episodes, eval_at_end=True)
    model.learn(budget, callback=callback)
    run = Run(task.name, method, seed, budget, train_env=task.ref_id, eval_env=task.ref_id)
    run.evals = list(callback.evals)
    run.train_seconds = callback.train_seconds()
    run.settings = {k: (v if isinstance(v, (int, float, str, bool, list, dict)) else repr(v)) for k, v in used.items()}
    for env in (train_env, eval_env):
        env.close()
    return run


def run_one(task: Task, method: str, seed: int, budget: int, args: argparse.Namespace) -> Run:
    tic = time.perf_counter()
    run = run_ours(task, seed, budget, args) if method == "ours" else run_sb3(task, method, seed, budget, args)
    run.wall_seconds = time.perf_counter() - tic
    return run


def random_score(task: Task, episodes: int, seed: int = 123) -> float:
    """Mean return of a uniformly random policy on the reference env (the normalised 0)."""
    from gumbel_ac.envpkgs import prepare_env_id

    env = gym.make(prepare_env_id(task.ref_id), **time_limit_kwargs(task))
    env.action_space.seed(seed)
    total = 0.0
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        done, ret = False, 0.0
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            ret += float(reward)
            done = terminated or truncated
        total += ret
    env.close()
    return total / episodes


def random_scores(out: Path, tasks: Sequence[Task], episodes: int) -> dict[str, float]:
    path = out / "random_scores.json"
    cached: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}
    for task in tasks:
        if task.name not in cached:
            cached[task.name] = random_score(task, episodes)
    path.write_text(json.dumps(cached, indent=1))
    return cached


# --------------------------------------------------------------------------------------
# Statistics, tables and figures.
# --------------------------------------------------------------------------------------


def normalise(value: Any, task: Task, random: float) -> Any:
    return (np.asarray(value, dtype=float) - random) / (task.threshold - random)


def curve_mean(steps: Sequence[float], values: Sequence[float]) -> float:
    """Mean of an evaluation curve per env step: trapezoid over env steps from the first to the
    last evaluation, divided by that span (the last value when there is no span)."""
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if x.size < 2 or x[-1] <= x[0]:
        return float(y[-1])
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def auc(run: Run, task: Task, random: float) -> float:
    """Mean normalised score over the run (:func:`curve_mean`; a run at the threshold throughout scores 1)."""
    return curve_mean([e[0] for e in run.evals], normalise([e[1] for e in run.evals], task, random))


def iqm_ci(values: Sequence[float], reps: int) -> tuple[float, float, float]:
    """IQM over runs with its 95% stratified-bootstrap CI (rliable; one task = one stratum)."""
    from rliable import metrics
    from rliable_seeded import interval_estimates

    scores = np.asarray(values, dtype=float).reshape(-1, 1)
    if scores.shape[0] < 2:
        return float(scores[0, 0]), float(scores[0, 0]), float(scores[0, 0])
    point, interval = interval_estimates({"m": scores}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    return float(point["m"][0]), float(interval["m"][0, 0]), float(interval["m"][1, 0])


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def summary_rows(runs: list[Run], tasks: Sequence[Task], randoms: dict[str, float], reps: int) -> list[dict[str, Any]]:
    rows = []
    for task in tasks:
        for method in METHODS:
            rs = sorted((r for r in runs if r.task == task.name and r.method == method), key=lambda r: r.seed)
            if not rs:
                continue
            final = iqm_ci([r.final for r in rs], reps)
            aucs = iqm_ci([auc(r, task, randoms[task.name]) for r in rs], reps)
            hits = [h for h in (r.first_hit(task.threshold) for r in rs) if h is not None]
            rows.append(
                dict(
                    task=task.name,
                    method=method,
                    seeds=len(rs),
                    budget=task_budget_of(rs),
                    final_iqm=final[0],
                    final_lo=final[1],
                    final_hi=final[2],
                    auc_iqm=aucs[0],
                    auc_lo=aucs[1],
                    auc_hi=aucs[2],
                    reached=len(hits),
                    steps_to_threshold=float(np.median([h[0] for h in hits])) if hits else None,
                    seconds_to_threshold=float(np.median([h[1] for h in hits])) if hits else None,
                    train_seconds=float(np.median([r.train_seconds for r in rs])),
                    note="; ".join(sorted({r.note for r in rs if r.note})),
                )
            )
    return rows


def task_budget_of(runs: list[Run]) -> int:
    return max(r.budget for r in runs)


def markdown(
    rows: list[dict[str, Any]], tasks: Sequence[Task], randoms: dict[str, float], command: str, eval_episodes: int
) -> str:
    """The README-ready table, the thresholds and normalisation, and the published anchors."""
    lines = [
        f"Command: `{command}`",
        "",
        "| task | method | seeds | env steps | final return, IQM [95% CI] | normalised AUC, IQM [95% CI] "
        "| runs reaching threshold | median env steps to threshold | median train s to threshold "
        "| median train s (budget) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        task = TASKS[row["task"]]
        steps = "—" if row["steps_to_threshold"] is None else f"{row['steps_to_threshold']:,.0f}"
        secs = "—" if row["seconds_to_threshold"] is None else f"{row['seconds_to_threshold']:.1f}"
        label = METHOD_LABELS[row["method"]] + (" ¹" if row["note"] else "")
        lines.append(
            f"| {row['task']} | {label} | {row['seeds']} | {row['budget']:,} | "
            f"{_fmt(row['final_iqm'])} [{_fmt(row['final_lo'])}, {_fmt(row['final_hi'])}] | "
            f"{row['auc_iqm']:.2f} [{row['auc_lo']:.2f}, {row['auc_hi']:.2f}] | "
            f"{row['reached']}/{row['seeds']} ≥ {task.threshold:g} | {steps} | {secs} | {row['train_seconds']:.1f} |"
        )
    notes = sorted({row["note"] for row in rows if row["note"]})
    for note in notes:
        lines.append(f"\n¹ {note}.")
    lines += [
        "",
        f"Final return: the last deterministic evaluation ({eval_episodes} episodes) of each run. "
        "AUC: mean normalised evaluation score over the run. Train seconds exclude evaluation.",
        "",
        "| task | threshold (normalised 1) | random policy (normalised 0, measured) | threshold source |",
        "|---|---|---|---|",
    ]
    for task in tasks:
        if task.name in randoms:
            lines.append(f"| {task.name} | {task.threshold:g} | {randoms[task.name]:.1f} | {task.threshold_source} |")
    anchors = [(t.name, label, value) for t in tasks for label, value in PUBLISHED.get(t.name, [])]
    if anchors:
        lines += [
            "",
            "Published, not re-run (RL-Zoo's benchmark.md: one agent, its own budget, deterministic eval):",
            "",
            "| task | source | mean ± std return |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {label} | {value} |" for name, label, value in anchors]
    if any(t.minatar for t in tasks):
        lines.append(
            "\nMinAtar: no published number is given here (the MinAtar paper's DQN results are learning "
            "curves; none was read from a source), and the MinAtar paper trains 5M frames, far past this budget."
        )
    return "\n".join(lines) + "\n"


def _curve(rs: list[Run], grid: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(grid, [e[0] for e in r.evals], [e[1] for e in r.evals]) for r in rs])


def plot_task(runs: list[Run], task: Task, path: Path) -> None:
    """Learning curves of one task: IQM over seeds of the eval return, 95% bootstrap CI shaded
    (gumbel_ac.plot's statistics: IQM, and the plain mean below 4 runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gumbel_ac.plot import aggregate, bootstrap_ci

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for method in METHODS:
        rs = [r for r in runs if r.task == task.name and r.method == method]
        if not rs:
            continue
        end = min(r.evals[-1][0] for r in rs)
        grid = np.unique(np.concatenate([[e[0] for e in r.evals if e[0] <= end] for r in rs]))
        values = _curve(rs, grid)
        center = aggregate(values, "iqm")
        (line,) = ax.plot(grid, center, label=f"{METHOD_LABELS[method]}, n={len(rs)}", linewidth=1.6)
        if len(rs) > 1:
            low, high = bootstrap_ci(values, "iqm")
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(task.threshold, color="grey", linestyle=":", linewidth=1, label=f"threshold {task.threshold:g}")
    ax.set_title(task.name)
    ax.set_xlabel("env steps")
    ax.set_ylabel("deterministic eval return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("IQM over seeds (mean where n < 4), 95% bootstrap CI shaded", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_aggregate(runs: list[Run], tasks: Sequence[Task], randoms: dict[str, float], path: Path, reps: int) -> bool:
    """rliable's interval-estimate figure: IQM of normalised final scores across tasks per
    method, 95% stratified-bootstrap CI. Uses the tasks every method ran and, per task, the
    seeds every method finished (rliable needs a runs x tasks matrix). False if nothing fits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import metrics, plot_utils
    from rliable_seeded import interval_estimates

    methods = [m for m in METHODS if any(r.method == m for r in runs)]
    done = {(r.task, r.method, r.seed): r for r in runs}
    columns, used = [], []
    for task in tasks:
        seeds = sorted(
            {r.seed for r in runs if r.task == task.name}
            & set.intersection(*({r.seed for r in runs if r.task == task.name and r.method == m} for m in methods))
        )
        if seeds:
            columns.append((task, seeds))
    if not columns:
        return False
    n = min(len(seeds) for _, seeds in columns)
    score_dict = {}
    for method in methods:
        # Row i: each task's i-th common seed (runs x tasks, as rliable wants).
        matrix = np.array(
            [[normalise(done[(t.name, method, seeds[i])].final, t, randoms[t.name]) for t, seeds in columns]
             for i in range(n)]
        )  # fmt: skip
        score_dict[METHOD_LABELS[method]] = matrix
        used.append(method)
    point, interval = interval_estimates(score_dict, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    for name in score_dict:  # the figure's numbers, for tables and notes
        low, high = np.asarray(interval[name]).reshape(2)
        print(f"aggregate IQM of normalised final scores, {name}: {float(point[name][0]):.3f} [{low:.3f}, {high:.3f}]")
    fig, _ = plot_utils.plot_interval_estimates(
        point,
        interval,
        metric_names=["IQM"],
        algorithms=list(score_dict),
        xlabel="normalised final score",
        xlabel_y_coordinate=-0.3,
    )
    more = [t.name for t, seeds in columns if len(seeds) > n]
    note = (
        f"{len(columns)} task(s): {', '.join(t.name for t, _ in columns)}; {n} seeds each"
        + (f" (the first {n} of {', '.join(more)})" if more else "")
        + "; final score normalised: 0 = random policy, 1 = task threshold; 95% stratified-bootstrap CI"
    )
    # Started under the method labels' left edge (they stand left of the axes, at x < 0 in
    # figure coordinates) and wrapped: one long line would stretch the saved figure past the plot.
    fig.canvas.draw()
    left_px = min(label.get_window_extent().x0 for ax in fig.axes for label in ax.get_yticklabels())
    left = float(fig.transFigure.inverted().transform((left_px, 0.0))[0])
    fig.text(left, -0.45, textwrap.fill(note, 150), fontsize=8, va="top", transform=fig.transFigure)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def load_runs(out: Path) -> list[Run]:
    runs = []
    for path in sorted((out / "runs").glob("*.json")):
        data = json.loads(path.read_text())
        data["evals"] = [tuple(e) for e in data["evals"]]
        runs.append(Run(**data))
    return runs


def report(out: Path, tasks: Sequence[Task], args: argparse.Namespace, command: str) -> str:
    """Write runs.json, evals.csv, summary.md and the figures from the runs under ``out``."""
    runs = [r for r in load_runs(out) if r.task in {t.name for t in tasks}]
    tasks = [t for t in tasks if any(r.task == t.name for r in runs)]
    if not runs:
        return "no finished runs\n"
    randoms = random_scores(out, tasks, args.random_episodes)
    (out / "runs.json").write_text(json.dumps([r.__dict__ for r in runs], indent=1))
    with open(out / "evals.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["task", "method", "seed", "env_steps", "eval_mean", "eval_std", "train_seconds"])
        for r in runs:
            for step, mean, std, secs in r.evals:
                writer.writerow([r.task, r.method, r.seed, step, mean, std, round(secs, 3)])
    rows = summary_rows(runs, tasks, randoms, args.bootstrap_reps)
    with open(out / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(rows, tasks, randoms, command, args.eval_episodes)
    figures = []
    for task in tasks:
        path = out / f"curves_{task.name}.png"
        plot_task(runs, task, path)
        figures.append(path.name)
    if plot_aggregate(runs, tasks, randoms, out / "aggregate.png", args.bootstrap_reps):
        figures.append("aggregate.png")
    text += "\nFigures: " + ", ".join(figures) + "\n"
    (out / "summary.md").write_text(text)
    return text


# --------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------


def machine_line() -> str:
    import stable_baselines3

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"(cpu capability {torch.backends.cpu.get_cpu_capability()}), 1 torch thread, "
        f"SB3 {stable_baselines3.__version__}, Python {platform.python_version()}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (runs are resumed from it)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every task's budget")
    parser.add_argument(
        "--budget", action="append", default=[], metavar="TASK=STEPS", help="one task's budget (repeatable)"
    )
    parser.add_argument("--eval-points", type=int, default=20, help="evaluations per run (every budget / N steps)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--random-episodes", type=int, default=50, help="episodes of the random-policy score")
    parser.add_argument("--bootstrap-reps", type=int, default=2000, help="bootstrap resamples (rliable)")
    parser.add_argument("--report", action="store_true", help="no training: tables and figures from --out")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2 tasks, tiny budgets (~1 minute)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds = list(QUICK_TASKS), [0, 1]
        args.eval_points, args.eval_episodes, args.random_episodes, args.bootstrap_reps = 3, 3, 5, 200
    return args


def budgets(args: argparse.Namespace) -> dict[str, int]:
    out = {name: max(1, round(task.budget * args.steps_scale)) for name, task in TASKS.items()}
    if args.quick:
        out.update(QUICK_BUDGETS)
    for item in args.budget:
        name, _, steps = item.partition("=")
        if name not in TASKS or not steps.isdigit():
            raise SystemExit(f"error: --budget wants TASK=STEPS with TASK one of {', '.join(TASKS)}, got {item!r}")
        out[name] = int(steps)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    tasks = [TASKS[name] for name in args.tasks]
    command = "python benchmarks/suite.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# {machine_line()}", flush=True)
    steps = budgets(args)
    for task in tasks:
        train_id, note = ours_train_id(task)
        print(f"# {task.name}: {steps[task.name]:,} env steps; ours on {train_id}, SB3 on {task.ref_id}", flush=True)
        if note:
            print(f"#   note: {note}", flush=True)
    if not args.report:
        for seed in args.seeds:
            for task in tasks:
                for method in args.methods:
                    path = run_path(out, task.name, method, seed)
                    if path.exists():
                        print(f"skip {path.name} (finished)", flush=True)
                        continue
                    run = run_one(task, method, seed, steps[task.name], args)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(run.__dict__, indent=1))
                    tmp.replace(path)  # a run killed mid-write is not taken for finished
                    hit = run.first_hit(task.threshold)
                    print(
                        f"{task.name} {method} seed {seed}: final {run.final:.1f}, first >= {task.threshold:g} "
                        f"{'never' if hit is None else f'at {hit[0]:,} steps / {hit[1]:.1f} s'}; "
                        f"train {run.train_seconds:.1f} s, wall {run.wall_seconds:.1f} s",
                        flush=True,
                    )
    print()
    print(report(out, tasks, args, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
