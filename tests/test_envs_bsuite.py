"""DeepSea and Catch (bsuite semantics): hand-checked transitions, optimal and random policies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gumbel_ac.envs.catch import CatchEnv
from gumbel_ac.envs.deep_sea import DeepSeaEnv


# ----------------------------------------------------------------------------- DeepSea
def test_deep_sea_hand_checked_transitions() -> None:
    # randomize_actions=False: action 1 is "right" everywhere (bsuite's debug mapping).
    env = DeepSeaEnv(num_envs=2, size=3, randomize_actions=False, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (2, 3, 3) and obs[:, 0, 0].eq(1).all() and obs.sum() == 2
    cost = 0.01 / 3
    # Row 0: env 0 goes right, env 1 goes left (clipped at the wall, free).
    obs, r, term, trunc, _ = env.step(torch.tensor([1, 0]))
    assert torch.allclose(r, torch.tensor([-cost, 0.0]))
    assert obs[0, 1, 1] == 1 and obs[1, 1, 0] == 1 and not term.any()
    obs, r, term, _, _ = env.step(torch.tensor([1, 1]))
    assert obs[0, 2, 2] == 1 and obs[1, 2, 1] == 1
    # Last row: env 0 is in the last column and moves right -> +1 (minus the move cost).
    obs, r, term, trunc, info = env.step(torch.tensor([1, 1]))
    assert torch.allclose(r, torch.tensor([1.0 - cost, -cost]))
    assert term.all() and not trunc.any()
    assert info["final_obs"].sum() == 0  # bsuite's null observation after the last row
    assert obs[:, 0, 0].eq(1).all()  # autoreset to the top-left cell
    assert torch.allclose(info["episode"]["r"], torch.tensor([1.0 - 0.01, -2 * cost]))
    assert info["episode"]["l"].tolist() == [3, 3]


def _optimal_actions(env: DeepSeaEnv) -> torch.Tensor:
    row, column = env.state
    cell = (row * env.size + column).unsqueeze(1)
    return env.action_mapping.gather(1, cell).squeeze(1)  # the index meaning "right"


@pytest.mark.parametrize("size", [1, 5, 10])
def test_deep_sea_optimal_return(size: int) -> None:
    env = DeepSeaEnv(num_envs=64, size=size, seed=1)
    env.reset()
    for _ in range(size):
        _, _, term, _, info = env.step(_optimal_actions(env))
    assert term.all()
    assert torch.allclose(info["episode"]["r"], torch.full((64,), 0.99))


def test_deep_sea_shared_mapping_is_one_task() -> None:
    """Default: one mapping (bsuite's mapping_seed) shared by all sub-envs and across seeds."""
    a = DeepSeaEnv(num_envs=8, size=6, seed=2)
    a.reset()
    b = DeepSeaEnv(num_envs=3, size=6, seed=9)
    b.reset(seed=5)
    assert torch.equal(a.action_mapping, a.action_mapping[:1].expand(8, -1))
    assert torch.equal(a.action_mapping[:3], b.action_mapping)
    assert 0.2 < a.action_mapping.float().mean() < 0.8
    c = DeepSeaEnv(num_envs=1, size=6, mapping_seed=1)
    c.reset()
    assert not torch.equal(c.action_mapping[0], a.action_mapping[0])


def test_deep_sea_mapping_random_per_env_and_fixed_for_life() -> None:
    env = DeepSeaEnv(num_envs=256, size=6, seed=2, mapping_seed=None)
    env.reset()
    m = env.action_mapping.clone()
    assert 0.4 < m.float().mean() < 0.6
    assert len({tuple(row.tolist()) for row in m}) > 250  # per-env mappings
    for _ in range(13):
        env.step(torch.zeros(256, dtype=torch.int64))
    env.reset()
    assert torch.equal(env.action_mapping, m)  # unseeded reset keeps the mapping (as bsuite)
    env.reset(seed=2)
    assert torch.equal(env.action_mapping, m)  # same seed, same mapping
    env.reset(seed=3)
    assert not torch.equal(env.action_mapping, m)


def test_deep_sea_random_policy_success_probability() -> None:
    # A uniform policy gets the +1 only with `size` rights in a row: p = 2**-size.
    size, n, episodes = 4, 4096, 3
    env = DeepSeaEnv(num_envs=n, size=size, seed=4)
    env.reset()
    g = torch.Generator().manual_seed(0)
    successes = 0
    for _ in range(size * episodes):
        _, r, _, _, _ = env.step(torch.randint(0, 2, (n,), generator=g))
        successes += int((r > 0.5).sum())
    trials, p = n * episodes, 2.0**-size
    sd = math.sqrt(trials * p * (1 - p))
    assert abs(successes - trials * p) < 5 * sd, (successes, trials * p, sd)


def test_deep_sea_flatten() -> None:
    env = DeepSeaEnv(num_envs=3, size=4, flatten=True, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (3, 16) and env.single_observation_space.shape == (16,)
    assert env.observation_space.shape == (3, 16)


# ----------------------------------------------------------------------------- Catch
def test_catch_hand_checked_episode() -> None:
    env = CatchEnv(num_envs=3, seed=0)  # rows 10, columns 5, paddle starts at column 2
    env.reset()
    ball_x, ball_y, paddle_x = env.state
    env.state = (torch.tensor([2, 0, 4]), ball_y, paddle_x)
    obs = env._observe(env.state)
    assert obs.shape == (3, 10, 5)
    assert obs[0, 0, 2] == 1 and obs[0, 9, 2] == 1 and obs[0].sum() == 2
    # Env 0 stays (catches), env 1 moves left all the way (catches), env 2 stays (misses).
    actions = torch.tensor([1, 0, 1])
    for t in range(8):
        obs, r, term, trunc, _ = env.step(actions)
        assert not term.any() and r.eq(0).all()
        assert obs[:, t + 1].sum() == 3  # the balls are in row t + 1
    obs, r, term, trunc, info = env.step(actions)
    assert term.all() and not trunc.any()
    assert r.tolist() == [1.0, 1.0, -1.0]
    fo = info["final_obs"]
    assert fo[0, 9, 2] == 1 and fo[0].sum() == 1  # ball on the paddle: one lit cell
    assert fo[2, 9, 4] == 1 and fo[2, 9, 2] == 1
    assert info["episode"]["l"].tolist() == [9, 9, 9]
    assert obs[:, 0].sum() == 3 and obs[:, 9, 2].eq(1).all()  # reset boards


def test_catch_optimal_policy_and_ball_distribution() -> None:
    n = 5000
    env = CatchEnv(num_envs=n, rows=6, columns=7, seed=1)
    env.reset()
    counts = np.bincount(env.state[0].numpy(), minlength=7)
    expected = n / 7
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 30, counts  # 6 dof: P(chi2 > 30) < 1e-4
    returns = []
    for _ in range(2 * 5):
        ball_x, _, paddle_x = env.state
        actions = (torch.sign(ball_x - paddle_x) + 1).to(torch.int64)
        _, _, term, _, info = env.step(actions)
        if term.any():
            returns.append(info["episode"]["r"][term])
    assert torch.cat(returns).eq(1.0).all() and len(returns) == 2
