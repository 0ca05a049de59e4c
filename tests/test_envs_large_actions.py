"""Dials (MultiDiscrete, combinatorial) and Bandit (many arms): definitions, returns, base semantics."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from gumbel_ac.envs import ENV_IDS, MULTI_DISCRETE_ENV_IDS, TorchVectorEnv, make
from gumbel_ac.envs.bandit import BanditEnv, random_reward_per_step
from gumbel_ac.envs.dials import DialsEnv

T = 8  # the registered horizon of both envs


def _random_actions(env: TorchVectorEnv, g: torch.Generator) -> torch.Tensor:
    """Uniform actions ``[N]`` (Discrete) or ``[N, H]`` (MultiDiscrete), from ``g``."""
    space = env.single_action_space
    if isinstance(space, spaces.MultiDiscrete):
        return torch.randint(0, int(space.nvec[0]), (env.num_envs, len(space.nvec)), generator=g)
    return torch.randint(0, int(space.n), (env.num_envs,), generator=g)


def _optimal_actions(env: TorchVectorEnv) -> torch.Tensor:
    """Dials: the shown code; Bandit: the context arm (both are the last state tensor)."""
    return env.state[2].clone()


def _rollout(env: TorchVectorEnv, steps: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(_random_actions(env, g))
        out += [obs, r, term, trunc, info["final_obs"], info["episode"]["r"]]
    return out


# ----------------------------------------------------------------------------- Dials
def test_dials_observation_and_rewards_hand_checked() -> None:
    env = DialsEnv(num_envs=3, heads=4, choices=3, seed=0)
    env.reset()
    key, t, _ = env.state
    code = torch.tensor([[0, 1, 2, 0], [2, 2, 2, 2], [1, 0, 1, 0]])
    env.state = (key, t, code)
    obs = env._observe(env.state)
    assert obs.shape == (3, 12) and env.single_observation_space.shape == (12,)
    assert obs[0].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0]  # head h at h * choices + c_h
    assert obs.sum(1).tolist() == [4, 4, 4]
    # Row 0 all right; row 1 heads 0, 1, 3 right; row 2 heads 1, 2 right.
    actions = torch.tensor([[0, 1, 2, 0], [2, 2, 0, 2], [0, 0, 1, 1]])
    _, r, term, trunc, _ = env.step(actions)
    assert r.tolist() == [1.0, 0.75, 0.5] and not term.any() and not trunc.any()
    pairs = DialsEnv(num_envs=3, heads=4, choices=3, reward="pairs", seed=0)
    pairs.reset()
    pairs.state = (key, t, code)
    _, r, _, _, _ = pairs.step(actions)
    # Pairs (0,1), (1,2), (2,3): row 0 all three; row 1 only (0,1); row 2 only (1,2).
    assert torch.equal(r, torch.tensor([1.0, 1 / 3, 1 / 3]))


@pytest.mark.parametrize("reward", ["count", "pairs"])
def test_dials_optimal_return_is_exactly_horizon(reward: str) -> None:
    env = gym.make_vec("gumbel_ac/Dials-v0", num_envs=64, heads=12, choices=8, reward=reward, seed=1)
    assert isinstance(env, DialsEnv)
    env.reset()
    finished = []
    for step in range(3 * T):
        obs = env._observe(env.state)
        actions = obs.view(64, 12, 8).argmax(-1)  # read the code off the observation
        assert torch.equal(actions, _optimal_actions(env))
        _, r, term, trunc, info = env.step(actions)
        assert r.eq(1.0).all() and not term.any()
        assert trunc.all() == ((step + 1) % T == 0) and trunc.any() == trunc.all()
        if trunc.any():
            finished.append(info["episode"]["r"])
            assert info["episode"]["l"].eq(T).all()
    assert len(finished) == 3 and torch.cat(finished).eq(float(T)).all()


def _pairs_step_variance(heads: int, p: float) -> float:
    """Variance of the pairs reward of one step under uniform actions.

    With ``X_h`` i.i.d. Bernoulli(p) (head h right) and ``Y_i = X_i X_{i+1}``: Var Y = p^2 (1 - p^2),
    Cov(Y_i, Y_{i+1}) = E[X_i X_{i+1} X_{i+2}] - p^4 = p^3 - p^4, others independent.
    """
    m = heads - 1
    return (m * p**2 * (1 - p**2) + 2 * (m - 1) * (p**3 - p**4)) / m**2


@pytest.mark.parametrize(("reward", "heads", "choices"), [("count", 12, 8), ("pairs", 12, 8), ("pairs", 3, 4)])
def test_dials_random_return(reward: str, heads: int, choices: int) -> None:
    n, episodes = 1024, 4
    env = DialsEnv(num_envs=n, heads=heads, choices=choices, reward=reward, seed=2)
    env.reset()
    g = torch.Generator().manual_seed(3)
    returns = []
    for _ in range(episodes * T):
        _, _, _, trunc, info = env.step(_random_actions(env, g))
        if trunc.any():
            returns.append(info["episode"]["r"][trunc])
    ret = torch.cat(returns).double()
    assert ret.numel() == n * episodes
    p = 1.0 / choices
    if reward == "count":
        mean, var_step = T * p, p * (1 - p) / heads  # T / choices; binomial fraction
    else:
        mean, var_step = T * p**2, _pairs_step_variance(heads, p)  # T / choices**2
    sd = math.sqrt(T * var_step / ret.numel())  # steps are independent
    assert abs(float(ret.mean()) - mean) < 5 * sd, (float(ret.mean()), mean, sd)
    assert abs(float(ret.var()) - T * var_step) < 0.1 * T * var_step  # the spread matches too


def test_dials_codes_uniform_and_fresh_each_step() -> None:
    n, heads, choices = 512, 6, 5  # 5: not a power of two (mod bias < 5 / 2**32)
    env = DialsEnv(num_envs=n, heads=heads, choices=choices, seed=4)
    env.reset()
    codes = [env.state[2].clone()]
    for _ in range(2 * T - 1):
        env.step(torch.zeros(n, heads, dtype=torch.int64))
        codes.append(env.state[2].clone())
    c = torch.stack(codes)  # [2T, N, H]
    counts = torch.bincount(c.flatten(), minlength=choices).double()
    expected = c.numel() / choices
    assert ((counts - expected) ** 2 / expected).sum() < 25  # 4 dof: P(chi2 > 25) < 1e-4
    # Consecutive steps, neighbouring heads and neighbouring rows agree at chance rate 1/5.
    for a, b in ((c[1:], c[:-1]), (c[..., 1:], c[..., :-1]), (c[:, 1:], c[:, :-1])):
        agree = (a == b).double().mean().item()
        assert abs(agree - 1 / choices) < 5 * math.sqrt(0.16 / a.numel()), agree


def test_dials_autoreset_final_obs_and_statistics() -> None:
    n = 8
    env = DialsEnv(num_envs=n, heads=3, choices=4, seed=5)
    obs, _ = env.reset()
    g = torch.Generator().manual_seed(0)
    ret = torch.zeros(n)
    for step in range(1, 2 * T + 1):
        actions = _random_actions(env, g)
        code_before = env.state[2].clone()
        obs, r, term, trunc, info = env.step(actions)
        assert torch.equal(r, (actions == code_before).float().mean(-1))
        ret += r
        done = term | trunc
        assert torch.equal(info["_final_obs"], done) and torch.equal(info["_episode"], done)
        assert not term.any() and bool(done.all()) == (step % T == 0) and bool(done.any()) == bool(done.all())
        assert torch.equal(obs, env._observe(env.state))  # obs shows the current code
        if done.any():
            assert torch.equal(info["episode"]["r"], ret) and info["episode"]["l"].eq(T).all()
            assert not torch.equal(info["final_obs"], obs)  # step T's code vs the new episode's
            assert env.state[1].eq(0).all()  # the stream restarts
            ret.zero_()
        else:
            assert torch.equal(info["final_obs"], obs)
    # Truncation only at T: max_episode_steps=None never ends an episode.
    endless = DialsEnv(num_envs=2, heads=2, choices=2, max_episode_steps=None, seed=0)
    endless.reset()
    for _ in range(3 * T):
        _, _, term, trunc, _ = endless.step(torch.zeros(2, 2, dtype=torch.int64))
        assert not (term | trunc).any()


@pytest.mark.parametrize("env_id", ["gumbel_ac/Dials-v0", "gumbel_ac/Bandit-v0"])
@pytest.mark.parametrize("noise", ["generator", "hash"])
def test_same_seed_same_trajectories(env_id: str, noise: str) -> None:
    kwargs = {"heads": 5, "choices": 6} if "Dials" in env_id else {"arms": 100}
    a = _rollout(make(env_id, 16, noise=noise, reset_block=5, **kwargs), 3 * T, seed=5)
    b = _rollout(make(env_id, 16, noise=noise, reset_block=5, **kwargs), 3 * T, seed=5)
    c = _rollout(make(env_id, 16, noise=noise, reset_block=5, **kwargs), 3 * T, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[-6], c[-6])


@pytest.mark.parametrize("env_id", ["gumbel_ac/Dials-v0", "gumbel_ac/Bandit-v0"])
def test_state_dict_round_trip(env_id: str) -> None:
    env = make(env_id, 6, seed=7, reset_block=4)
    g = torch.Generator().manual_seed(1)
    env.reset()
    for _ in range(5):
        env.step(_random_actions(env, g))
    saved = {k: v.clone() for k, v in env.state_dict().items()}
    # The shown context (Dials' code, Bandit's arm) and the episode's stream are checkpointed.
    assert torch.equal(saved["state.2"], env.state[2]) and torch.equal(saved["state.0"], env.state[0])
    g_state = g.get_state()
    first = [env.step(_random_actions(env, g)) for _ in range(2 * T)]
    env.load_state_dict(saved)
    g.set_state(g_state)
    again = [env.step(_random_actions(env, g)) for _ in range(2 * T)]
    for x, y in zip(first, again, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(x[:4], y[:4], strict=True))
        assert torch.equal(x[4]["final_obs"], y[4]["final_obs"])
        assert torch.equal(x[4]["episode"]["r"], y[4]["episode"]["r"])
    # A fresh env with another seed restores to the same future.
    other = make(env_id, 6, seed=99, reset_block=4)
    other.reset()
    other.load_state_dict(saved)
    g.set_state(g_state)
    assert torch.equal(other.step(_random_actions(other, g))[0], first[0][0])


def test_make_vec_registration_and_spaces() -> None:
    env = gym.make_vec("gumbel_ac/Dials-v0", num_envs=4, heads=12, choices=8)
    assert isinstance(env, DialsEnv) and env.max_episode_steps == T
    assert env.single_action_space == spaces.MultiDiscrete([8] * 12)
    assert env.action_space.shape == (4, 12) and env.observation_space.shape == (4, 96)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 96) and obs.dtype == torch.float32
    out = env.step(env.action_space.sample())  # numpy int64 [4, 12]
    assert out[1].shape == (4,) and out[2].dtype == torch.bool
    bandit = gym.make_vec("gumbel_ac/Bandit-v0", num_envs=3)
    assert isinstance(bandit, BanditEnv) and bandit.arms == 1024 and bandit.max_episode_steps == T
    assert bandit.single_action_space == spaces.Discrete(1024) and bandit.observation_space.shape == (3, 3)
    assert "gumbel_ac/Bandit-v0" in ENV_IDS and MULTI_DISCRETE_ENV_IDS == ["gumbel_ac/Dials-v0"]
    assert make("Dials-v0", 2, reward="pairs").reward == "pairs"
    assert make("Bandit-v0", 2, arms=16, width=0.1).width == 0.1


def test_dials_bad_arguments_and_actions() -> None:
    with pytest.raises(ValueError, match="reward must be one of"):
        DialsEnv(reward="sum")
    with pytest.raises(ValueError, match="pairs' needs heads >= 2"):
        DialsEnv(heads=1, reward="pairs")
    with pytest.raises(ValueError, match="choices >= 2"):
        DialsEnv(choices=1)
    with pytest.raises(ValueError, match="must be ints"):
        DialsEnv(heads=2.5)  # type: ignore[arg-type]
    env = DialsEnv(num_envs=2, heads=3, choices=4, seed=0)
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*got \(2,\)"):
        env.step(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer tensor"):
        env.step(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="integer action indices"):
        env.step(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"out of range: \[4, -1\].*0..3"):
        env.step(torch.tensor([[0, 4, 1], [-1, 0, 0]]))
    with pytest.raises(ValueError, match="on device meta"):
        env.step(torch.zeros(2, 3, dtype=torch.int64, device="meta"))
    env.step([[0, 1, 2], [3, 2, 1]])
    env.step(torch.zeros(2, 3, dtype=torch.int32))
    fast = DialsEnv(num_envs=2, heads=3, choices=4, seed=0, validate_actions=False)
    fast.reset()
    fast.step(torch.tensor([[0, 4, 1], [-1, 0, 0]]))  # no check, no host sync


# ----------------------------------------------------------------------------- Bandit
def test_bandit_observation_and_rewards_hand_checked() -> None:
    arms, width = 11, 0.1
    env = BanditEnv(num_envs=4, arms=arms, width=width, seed=0)
    env.reset()
    key, t, _ = env.state
    env.state = (key, t, torch.tensor([0, 5, 10, 3]))  # x = 0, 0.5, 1, 0.3
    obs = env._observe(env.state)
    x = torch.tensor([0.0, 0.5, 1.0, 0.3])
    expected = torch.stack([x, torch.sin(2 * math.pi * x), torch.cos(2 * math.pi * x)], -1)
    assert torch.allclose(obs, expected, atol=1e-6)
    _, r, term, trunc, _ = env.step(torch.tensor([0, 6, 8, 3]))
    # Distances in x: 0, 0.1 (one width), 0.2 (two widths), 0.
    assert r[0] == 1.0 and r[3] == 1.0 and not term.any() and not trunc.any()
    assert torch.allclose(r[1:3], torch.tensor([math.exp(-0.5), math.exp(-2.0)]))


def test_bandit_optimal_return_is_exactly_horizon() -> None:
    env = BanditEnv(num_envs=256, arms=1000, seed=1)  # 1000: not a power of two
    env.reset()
    for step in range(2 * T):
        x = env._observe(env.state)[:, 0]
        actions = torch.round(x * 999).long()  # the best arm, read off the observation
        assert torch.equal(actions, _optimal_actions(env))
        _, r, _, trunc, info = env.step(actions)
        assert r.eq(1.0).all()
        if trunc.any():
            assert trunc.all() and step + 1 in (T, 2 * T)
            assert info["episode"]["r"].eq(float(T)).all() and info["episode"]["l"].eq(T).all()


def test_bandit_random_reward_formula() -> None:
    # The closed form against a brute-force mean over the (context, arm) grid.
    for arms, width in ((16, 0.02), (64, 0.05), (300, 0.02)):
        k = torch.arange(arms, dtype=torch.float64)
        grid = torch.exp(-(((k[None] - k[:, None]) / (arms - 1)) ** 2) / (2 * width**2))
        assert random_reward_per_step(arms, width) == pytest.approx(float(grid.mean()), rel=1e-12)
    # Many arms per bump: ~ w sqrt(2 pi) - 2 w^2 (module docstring); less than an arm: ~ 1 / arms.
    w = 0.02
    assert random_reward_per_step(1024, w) == pytest.approx(w * math.sqrt(2 * math.pi) - 2 * w**2, rel=2e-3)
    assert random_reward_per_step(16, 0.005) == pytest.approx(1 / 16, rel=1e-6)


@pytest.mark.parametrize("arms", [16, 1024])
def test_bandit_random_return(arms: int) -> None:
    n, episodes, width = 1024, 4, 0.02
    env = BanditEnv(num_envs=n, arms=arms, width=width, seed=2)
    env.reset()
    g = torch.Generator().manual_seed(3)
    returns = []
    for _ in range(episodes * T):
        _, _, _, trunc, info = env.step(_random_actions(env, g))
        if trunc.any():
            returns.append(info["episode"]["r"][trunc])
    ret = torch.cat(returns).double()
    mean = random_reward_per_step(arms, width)
    # r^2 is the same bump with width / sqrt(2): E[r^2] gives the per-step variance exactly.
    var_step = random_reward_per_step(arms, width / math.sqrt(2)) - mean**2
    sd = math.sqrt(T * var_step / ret.numel())
    assert abs(float(ret.mean()) - T * mean) < 5 * sd, (float(ret.mean()), T * mean, sd)


def test_bandit_contexts_uniform() -> None:
    arms, n = 16, 4096
    env = BanditEnv(num_envs=n, arms=arms, seed=4)
    env.reset()
    ks = [env.state[2].clone()]
    for _ in range(3):
        env.step(torch.zeros(n, dtype=torch.int64))
        ks.append(env.state[2].clone())
    counts = torch.bincount(torch.cat(ks), minlength=arms).double()
    expected = 4 * n / arms
    assert ((counts - expected) ** 2 / expected).sum() < 45  # 15 dof: P(chi2 > 45) < 1e-4
    with pytest.raises(ValueError, match="arms >= 2"):
        BanditEnv(arms=1)
    with pytest.raises(ValueError, match="int arms"):
        BanditEnv(arms=16.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="width"):
        BanditEnv(width=0.0)


# ----------------------------------------------------------------------------- trainer
@pytest.mark.parametrize(
    ("env_id", "env_kwargs"),
    [("gumbel_ac/Dials-v0", '{"heads": 2, "choices": 4, "reward": "pairs"}'), ("gumbel_ac/Bandit-v0", '{"arms": 64}')],
)
def test_trainer_starts(env_id: str, env_kwargs: str, tmp_path: object) -> None:
    from gumbel_ac.config import Config
    from gumbel_ac.trainer import train

    train(
        Config(
            env=env_id,
            env_kwargs=env_kwargs,
            total_steps=800,
            num_envs=8,
            learning_starts=200,
            eval_every=0,
            final_eval_episodes=2,
            checkpoint_every=0,
            progress=False,
            runs_dir=str(tmp_path),
        )
    )
