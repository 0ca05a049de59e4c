"""Classic control envs against Gymnasium's own implementations, stepped side by side.

From the same start states (wide random ones, several seeds) and the same random actions,
our batched env and N independent ``gymnasium.make`` envs must give the same observations,
rewards, terminated and truncated flags to 1e-5, over whole episodes including autoresets
(our ``final_obs`` against Gymnasium's terminal observation; after a reset, our new start
state is copied into the Gymnasium env). This is how gymnax tests its envs.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch

from gumbel_ac.envs.acrobot import AcrobotEnv
from gumbel_ac.envs.base import TorchVectorEnv
from gumbel_ac.envs.cartpole import CartPoleEnv
from gumbel_ac.envs.mountain_car import MountainCarEnv

PI = np.pi


def _cartpole_states(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform([-2.0, -1.0, -0.18, -1.0], [2.0, 1.0, 0.18, 1.0], size=(n, 4))


def _acrobot_states(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform([-PI, -PI, -2 * PI, -4 * PI], [PI, PI, 2 * PI, 4 * PI], size=(n, 4))


def _mountain_car_states(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform([-1.2, -0.07], [0.6, 0.07], size=(n, 2))


CASES = [
    # (gymnasium id, our class, start-state sampler, time limit for the test, steps)
    ("CartPole-v1", CartPoleEnv, _cartpole_states, 25, 120),
    ("Acrobot-v1", AcrobotEnv, _acrobot_states, 40, 100),
    ("MountainCar-v0", MountainCarEnv, _mountain_car_states, 30, 120),
]


def _gym_obs(ref: gym.Env) -> np.ndarray:
    u = ref.unwrapped
    if hasattr(u, "_get_ob"):  # Acrobot: observation is a function of the state
        return u._get_ob()
    return np.asarray(u.state, dtype=np.float32)


def _row_state(env: TorchVectorEnv, i: int) -> np.ndarray:
    return np.array([float(t[i]) for t in env.state], dtype=np.float64)


@pytest.mark.parametrize("noise", ["generator", "hash"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gym_id,cls,sampler,limit,steps", CASES, ids=[c[0] for c in CASES])
def test_matches_gymnasium(
    gym_id: str,
    cls: type[TorchVectorEnv],
    sampler: Callable[[np.random.Generator, int], np.ndarray],
    limit: int,
    steps: int,
    seed: int,
    noise: str,
) -> None:
    n = 24
    rng = np.random.default_rng(seed)
    ours = cls(num_envs=n, max_episode_steps=limit, seed=seed, noise=noise)
    ours.reset(seed=seed)
    refs = [gym.make(gym_id, max_episode_steps=limit) for _ in range(n)]
    start = sampler(rng, n)
    for i, ref in enumerate(refs):
        ref.reset(seed=seed * 1000 + i)
        ref.unwrapped.state = start[i].copy()
    ours.state = tuple(torch.as_tensor(start[:, j]) for j in range(start.shape[1]))
    n_actions = int(ours.single_action_space.n)
    counts = {"terminated": 0, "truncated": 0}
    for _ in range(steps):
        actions = rng.integers(0, n_actions, size=n)
        obs, reward, terminated, truncated, info = ours.step(torch.as_tensor(actions))
        final_obs = info["final_obs"].numpy()
        for i, ref in enumerate(refs):
            r_obs, r_rew, r_term, r_trunc, _ = ref.step(int(actions[i]))
            np.testing.assert_allclose(final_obs[i], r_obs, atol=1e-5, rtol=0)
            assert float(reward[i]) == pytest.approx(float(r_rew), abs=1e-6)
            assert bool(terminated[i]) == r_term
            assert bool(truncated[i]) == r_trunc
            if r_term or r_trunc:
                counts["terminated"] += int(r_term)
                counts["truncated"] += int(r_trunc)
                ref.reset()
                ref.unwrapped.state = _row_state(ours, i)  # our autoreset start state
                np.testing.assert_allclose(obs[i].numpy(), _gym_obs(ref), atol=1e-5, rtol=0)
            else:
                np.testing.assert_array_equal(final_obs[i], obs[i].numpy())
    # The test must have exercised both ways an episode ends.
    assert counts["terminated"] > 0 and counts["truncated"] > 0, counts


@pytest.mark.parametrize("gym_id,cls", [(c[0], c[1]) for c in CASES], ids=[c[0] for c in CASES])
def test_spaces_and_limits_match_gymnasium(gym_id: str, cls: type[TorchVectorEnv]) -> None:
    ref = gym.make(gym_id)
    ours = gym.make_vec(f"gumbel_ac/{gym_id}", num_envs=3)
    assert ours.single_observation_space == ref.observation_space
    assert ours.single_action_space == ref.action_space
    assert ours.max_episode_steps == ref.spec.max_episode_steps
    assert isinstance(ours, cls)


@pytest.mark.parametrize(
    "cls,low,high",
    [
        (CartPoleEnv, [-0.05] * 4, [0.05] * 4),
        (AcrobotEnv, [-0.1] * 4, [0.1] * 4),
        (MountainCarEnv, [-0.6, 0.0], [-0.4, 0.0]),
    ],
)
@pytest.mark.parametrize("noise", ["generator", "hash"])
def test_start_state_distribution(cls: type[TorchVectorEnv], low: list[float], high: list[float], noise: str) -> None:
    env = cls(num_envs=20000, seed=3, noise=noise)
    env.reset()
    s = torch.stack(env.state, dim=1).numpy()
    assert (s >= np.array(low)).all() and (s <= np.array(high)).all()
    lo, hi = np.array(low), np.array(high)
    width = hi - lo
    random_cols = width > 0
    u = (s[:, random_cols] - lo[random_cols]) / width[random_cols]  # should be U(0, 1)
    assert np.abs(u.mean(0) - 0.5).max() < 0.01  # sd of the mean: 0.002
    assert np.abs(u.var(0) - 1 / 12).max() < 0.005


def test_reset_options_bounds_like_gymnasium() -> None:
    env = CartPoleEnv(num_envs=1000, seed=0)
    env.reset(options={"low": -0.1, "high": 0.1})
    s = torch.stack(env.state, dim=1)
    assert s.abs().max() <= 0.1 and s.abs().max() > 0.09
    with pytest.raises(ValueError, match="must be lower"):
        env.reset(options={"low": 0.2, "high": 0.1})
