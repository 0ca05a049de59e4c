"""Pieces the SB3 comparisons share: RL-Zoo's tuned DQN for CartPole-v1 and a timed-eval callback.

Imported by ``benchmarks/solve_time.py`` and ``benchmarks/sb3_cartpole.py`` (run as scripts,
so this folder is on ``sys.path``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

#: RL-Zoo's CartPole-v1 DQN entry (DLR-RM/rl-baselines3-zoo, hyperparams/dqn.yml): one env,
#: n_timesteps 5e4.
DQN_ZOO_CARTPOLE: dict[str, Any] = dict(
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1_000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
    policy_kwargs=dict(net_arch=[256, 256]),
)


def make_dqn_zoo(seed: int) -> DQN:
    """SB3's DQN with RL-Zoo's CartPole-v1 settings, on CPU."""
    env = make_vec_env("CartPole-v1", n_envs=1, seed=seed)
    return DQN("MlpPolicy", env, seed=seed, device="cpu", **DQN_ZOO_CARTPOLE)


class TimedEval(BaseCallback):
    """Evaluate every ``every`` env steps; keep a training clock that excludes evaluation.

    ``evals`` collects ``(env steps, mean, std, training seconds so far)`` of deterministic
    evaluations over ``episodes`` episodes of ``eval_env``; with ``eval_at_end`` the last
    step is evaluated too.
    """

    def __init__(self, eval_env: VecEnv, every: int, episodes: int, *, eval_at_end: bool = False) -> None:
        super().__init__()
        self.eval_env, self.every, self.episodes, self.eval_at_end = eval_env, every, episodes, eval_at_end
        self.next_eval = every
        self.start = 0.0
        self.eval_seconds = 0.0
        self.evals: list[tuple[int, float, float, float]] = []

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.eval_seconds

    def _evaluate(self) -> None:
        train_s = self.train_seconds()
        tic = time.perf_counter()
        rewards, _ = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=self.episodes, deterministic=True, return_episode_rewards=True
        )
        self.eval_seconds += time.perf_counter() - tic
        self.evals.append((self.num_timesteps, float(np.mean(rewards)), float(np.std(rewards)), train_s))

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.next_eval += self.every
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if self.eval_at_end and (not self.evals or self.evals[-1][0] != self.num_timesteps):
            self._evaluate()


class SyncedTimedEval(TimedEval):
    """:class:`TimedEval` for a training env wrapped in ``VecNormalize`` (RL-Zoo's
    ``normalize: true``): before each evaluation the eval env takes the training env's
    observation statistics, as SB3's own ``EvalCallback`` does (``sync_envs_normalization``).
    Without a ``VecNormalize`` it is :class:`TimedEval`."""

    def _evaluate(self) -> None:
        from stable_baselines3.common.vec_env import sync_envs_normalization

        sync_envs_normalization(self.training_env, self.eval_env)
        super()._evaluate()
