"""Non-finite data from an environment is caught where it enters, not discovered later.

- a transition with a NaN/inf observation, next observation or reward is not stored (with a
  mask it is dropped; without one its slot holds a copy of a finite transition of the same
  step, so the loop never syncs), and the count is returned as a device tensor;
- training on an env that emits NaN every 50 steps stores none of them, skips no update, and
  says so in the metrics and on the console;
- skipping most updates of a window stops the run even when no long streak forms.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from gumbel_ac.agent import make_agent
from gumbel_ac.buffer import ReplayBuffer
from gumbel_ac.config import Config
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.learner import Learner, TrainingError, make_estimator
from gumbel_ac.logger import read_metrics
from gumbel_ac.trainer import train


def _rows(values: list[float]) -> tuple[torch.Tensor, ...]:
    obs = torch.tensor(values).unsqueeze(-1)
    n = obs.shape[0]
    return obs, torch.zeros(n, 1, dtype=torch.long), obs.squeeze(-1).clone(), obs + 1, torch.zeros(n, dtype=torch.bool)


def test_buffer_stores_no_nonfinite_transition_with_or_without_a_mask() -> None:
    buf = ReplayBuffer(16, obs_dim=1, num_heads=1, device="cpu")
    obs, act, rew, nxt, term = _rows([0.0, math.nan, 2.0, 3.0])
    rew[3] = math.inf
    dropped = buf.add(obs, act, rew, nxt, term)  # no mask: the sync-free path
    assert isinstance(dropped, torch.Tensor) and int(dropped) == 2
    assert len(buf) == 4 and torch.isfinite(buf.obs_CD[:4]).all() and torch.isfinite(buf.reward_C[:4]).all()
    assert sorted(buf.obs_CD[:4].squeeze(-1).tolist()) == [0.0, 0.0, 0.0, 2.0]  # copies of the first finite row
    obs, act, rew, nxt, term = _rows([math.nan, math.nan])  # every row bad (envs failing in lockstep)
    assert int(buf.add(obs, act, rew, nxt, term)) == 2
    assert len(buf) == 6 and buf.obs_CD[4:6].squeeze(-1).tolist() == [buf.obs_CD[3, 0].item()] * 2  # the newest row
    masked = ReplayBuffer(16, obs_dim=1, num_heads=1, device="cpu")
    obs, act, rew, nxt, term = _rows([0.0, 1.0, 2.0, 3.0])
    nxt[1] = math.nan
    dropped = masked.add(obs, act, rew, nxt, term, valid_N=torch.tensor([True, True, False, True]))
    assert int(dropped) == 1 and masked.obs_CD[: len(masked)].squeeze(-1).tolist() == [0.0, 3.0]


class _NaNEvery50(gym.Env):
    """CartPole whose observation (and reward) is NaN every 50th step."""

    def __init__(self) -> None:
        self.inner = gym.make("CartPole-v1")
        self.observation_space = self.inner.observation_space
        self.action_space = self.inner.action_space
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        return self.inner.reset(seed=seed)

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, term, trunc, info = self.inner.step(action)
        self.t += 1
        if self.t % 50 == 0:
            obs, reward = np.full_like(obs, np.nan), float("nan")
        return obs, float(reward), term, trunc, info


def test_training_on_occasional_nan_data_stores_none_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "test/NaNEvery50-v0" not in gym.registry:
        gym.register("test/NaNEvery50-v0", entry_point=_NaNEvery50, max_episode_steps=200)
    cfg = Config(
        env="test/NaNEvery50-v0",
        num_envs=2,
        total_steps=2000,
        learning_starts=200,
        batch_size=32,
        log_every=500,
        eval_every=0,
        final_eval_episodes=0,
        checkpoint_every=0,
        progress=False,
        runs_dir=str(tmp_path),
        run_name="nan",
    )
    train(cfg)
    rows = read_metrics(tmp_path / "nan" / "metrics.jsonl")
    assert sum(r.get("charts/nonfinite_transitions", 0) for r in rows) >= 2000 // 50 - 2  # ~every 50th step
    assert all(r.get("charts/nonfinite_updates", 0.0) == 0.0 for r in rows)  # nothing poisoned replay
    assert "were not stored; check the environment" in capsys.readouterr().out


def test_a_high_skip_rate_stops_the_run_without_a_long_streak() -> None:
    agent = make_agent(obs_dim=2, spec=ActionSpec((2,)), hidden_sizes=(8,), alpha=0.1, target_entropy_ratio=0.5)
    learner = Learner(
        agent,
        estimator=make_estimator("gumbel-st"),
        actor_lr=1e-3,
        critic_lr=1e-3,
        alpha_lr=1e-3,
        autotune_alpha=True,
        gamma=0.99,
        target_update_rate=0.1,
        max_nonfinite_updates=100,
    )
    learner.check_nonfinite(max_streak=2, skipped=10, updates=40)  # a quarter: tolerated
    learner.check_nonfinite(max_streak=2, skipped=9, updates=10)  # too few updates to judge
    with pytest.raises(TrainingError, match=r"30 of the last 40 updates .* skipped \(limit 50% per log window\)"):
        learner.check_nonfinite(max_streak=2, skipped=30, updates=40)
