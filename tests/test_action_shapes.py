"""Action spaces whose actions are not a flat vector are refused at start, not mid-run.

A ``MultiDiscrete`` with a 2-D ``nvec`` used to be accepted as its flattened heads: the env
then received actions of shape ``(4,)`` instead of ``(2, 2)``, and SB3 failed later with a
reshape error. Both entry points now stop before training with one line saying to flatten
the space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from gumbel_ac.config import Config
from gumbel_ac.distributions import ActionSpec, UnsupportedSpaceError

ENV_ID = "test/GridActions-v0"


class GridActionEnv(gym.Env):
    """Actions from ``MultiDiscrete([[2, 2], [3, 3]])``; asserts it gets them in that shape."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete(np.array([[2, 2], [3, 3]]))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert np.asarray(action).shape == (2, 2), np.asarray(action).shape
        return np.zeros(3, np.float32), 0.0, False, False, {}


@pytest.fixture(scope="module")
def grid_env_id() -> str:
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=GridActionEnv, max_episode_steps=5)
    return ENV_ID


def test_action_spec_refuses_a_2d_nvec_and_says_to_flatten() -> None:
    with pytest.raises(UnsupportedSpaceError, match=r"1-D nvec.*[Ff]latten"):
        ActionSpec.from_space(gym.spaces.MultiDiscrete(np.array([[2, 2], [3, 3]])))
    # A 1-D nvec is still fine.
    assert ActionSpec.from_space(gym.spaces.MultiDiscrete([2, 3])).nvec == (2, 3)


def test_native_train_refuses_a_2d_nvec_at_start(tmp_path: Path, grid_env_id: str) -> None:
    from gumbel_ac.trainer import train

    cfg = Config(
        env=grid_env_id,
        num_envs=2,
        total_steps=64,
        learning_starts=32,
        eval_every=0,
        final_eval_episodes=0,
        checkpoint_every=0,
        progress=False,
        runs_dir=str(tmp_path),
        run_name="grid",
    )
    with pytest.raises(UnsupportedSpaceError, match=r"1-D nvec.*[Ff]latten") as info:
        train(cfg)
    assert "\n" not in str(info.value)


def test_sb3_refuses_a_2d_nvec_at_construction(grid_env_id: str) -> None:
    from gumbel_ac.sb3 import GumbelAC

    with pytest.raises(UnsupportedSpaceError, match=r"1-D nvec.*[Ff]latten"):
        GumbelAC("MlpPolicy", gym.make(grid_env_id), learning_starts=16, batch_size=8, buffer_size=100, seed=0)
