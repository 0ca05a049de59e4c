"""Pennies (K-action matching pennies vs a fictitious-play opponent): hand-checked steps, and
the returns the module docstring states (uniform = T (1 - 1/K), deterministic exploited)."""

from __future__ import annotations

import math

import pytest
import torch

from gumbel_ac.envs import make
from gumbel_ac.envs.pennies import PenniesEnv, deterministic_return, optimal_return

torch.set_num_threads(1)


def _episode_returns(env: PenniesEnv, policy: torch.Tensor, seed: int) -> torch.Tensor:
    """One episode per sub-env, actions drawn i.i.d. from ``policy`` ``[K]`` (a stationary mix)."""
    gen = torch.Generator().manual_seed(seed)
    env.reset(seed=seed)
    assert env.max_episode_steps is not None
    for _ in range(env.max_episode_steps):
        a = torch.multinomial(policy, env.num_envs, replacement=True, generator=gen)
        _, _, term, trunc, info = env.step(a)
    assert trunc.all() and not term.any()
    return info["episode"]["r"].double()


def test_hand_checked_steps() -> None:
    env = PenniesEnv(num_envs=2, actions=3, memory=0.5, sharpness=4.0, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (2, 1) and obs.eq(1).all()
    key, t, freq = env.state
    torch.testing.assert_close(freq, torch.full((2, 3), 1 / 3))
    # Force the opponent's state: env 0 believes action 2 (guesses it almost surely), env 1 is uniform.
    env.state = (key, t, torch.tensor([[0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3]]))
    q = env.guess_probs(env.state[2])
    torch.testing.assert_close(q[0], torch.softmax(torch.tensor([0.0, 0.0, 4.0]), -1))
    _, r, term, trunc, _ = env.step(torch.tensor([2, 0]))
    assert not term.any() and not trunc.any()
    assert r.tolist()[0] in (0.0, 1.0)
    # the moving average: (1 - 0.5) f + 0.5 onehot(a)
    torch.testing.assert_close(env.state[2], torch.tensor([[0.0, 0.0, 1.0], [2 / 3, 1 / 6, 1 / 6]]))
    assert env.state[1].tolist() == [1, 1]


def test_guess_is_drawn_from_the_logit_best_response() -> None:
    """With the opponent's state frozen at f, guesses are softmax(sharpness f) (chi-square)."""
    n = 20_000
    env = PenniesEnv(num_envs=n, actions=4, memory=1.0, sharpness=2.0, seed=3)
    env.reset()
    f = torch.tensor([0.1, 0.6, 0.3, 0.0])
    key, t, _ = env.state
    env.state = (key, t, f.expand(n, -1).clone())
    # Action 0 everywhere: the reward is 0 exactly where the guess was 0.
    _, r0, _, _, _ = env.step(torch.zeros(n, dtype=torch.int64))
    p0 = float(torch.softmax(2.0 * f, -1)[0])
    sd = math.sqrt(n * p0 * (1 - p0))
    assert abs(float((r0 == 0).sum()) - n * p0) < 5 * sd


@pytest.mark.parametrize("actions", [2, 5])
def test_uniform_policy_earns_the_game_value(actions: int) -> None:
    n = 4096
    env = PenniesEnv(num_envs=n, actions=actions, seed=1)
    returns = _episode_returns(env, torch.full((actions,), 1.0 / actions), seed=1)
    expected = optimal_return(actions, 32)
    assert expected == 32 * (1 - 1 / actions)
    se = float(returns.std()) / math.sqrt(n)
    assert abs(float(returns.mean()) - expected) < 5 * se, (float(returns.mean()), expected, se)


@pytest.mark.parametrize(("actions", "memory", "sharpness"), [(2, 0.2, 10.0), (4, 0.5, 3.0)])
def test_deterministic_policy_return_matches_the_formula(actions: int, memory: float, sharpness: float) -> None:
    n = 4096
    env = PenniesEnv(num_envs=n, actions=actions, memory=memory, sharpness=sharpness, seed=2)
    policy = torch.zeros(actions)
    policy[actions - 1] = 1.0
    returns = _episode_returns(env, policy, seed=2)
    expected = deterministic_return(actions, 32, memory, sharpness)
    se = float(returns.std()) / math.sqrt(n)
    assert abs(float(returns.mean()) - expected) < 5 * se + 1e-6, (float(returns.mean()), expected, se)
    assert expected < 0.25 * optimal_return(actions, 32)  # exploited


def test_defaults_exploit_a_deterministic_pennies_player() -> None:
    # first step a coin flip (1/2), then hit ~ 1 / (1 + e^{-10 (1 - 0.8^t)}): 0.66 of 16.
    assert deterministic_return(2, 32, 0.2, 10.0) == pytest.approx(0.66, abs=0.01)


@pytest.mark.parametrize(("policy", "actions"), [([0.7, 0.3], 2), ([0.4, 0.3, 0.2, 0.1], 4)])
def test_skewed_stationary_policies_earn_less_than_uniform(policy: list[float], actions: int) -> None:
    n = 4096
    env = PenniesEnv(num_envs=n, actions=actions, seed=5)
    returns = _episode_returns(env, torch.tensor(policy), seed=5)
    se = float(returns.std()) / math.sqrt(n)
    assert float(returns.mean()) < optimal_return(actions, 32) - 5 * se


def test_zero_sharpness_makes_every_policy_equal() -> None:
    n = 4096
    env = PenniesEnv(num_envs=n, actions=3, sharpness=0.0, seed=6)
    returns = _episode_returns(env, torch.tensor([1.0, 0.0, 0.0]), seed=6)
    se = float(returns.std()) / math.sqrt(n)
    assert abs(float(returns.mean()) - optimal_return(3, 32)) < 5 * se


def test_registered_with_kwargs_and_validated() -> None:
    env = make("Pennies-v0", 4, actions=8, seed=0)
    assert env.single_action_space.n == 8 and env.max_episode_steps == 32
    for bad in ({"actions": 1}, {"memory": 0.0}, {"memory": 1.5}, {"sharpness": -1.0}, {"sharpness": math.inf}):
        with pytest.raises(ValueError):
            PenniesEnv(num_envs=1, **bad)  # type: ignore[arg-type]
