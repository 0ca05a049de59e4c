"""Large and combinatorial action spaces: no enumeration on the training path.

- the sampled critic target equals the enumerated one in expectation (a small space, many
  draws, a bound from the draws' own standard error);
- the score estimator's leave-one-out baseline is unbiased: its mean gradient matches the
  exact gradient on a small space;
- nothing on the sampled path builds a joint-sized tensor: joint enumeration is replaced by a
  function that raises, and a MultiDiscrete([8] * 8) agent trains through it (native and SB3);
- ``exact`` above the limit is refused with one line naming the alternatives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from gumbel_ac.agent import make_agent
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.estimators import get_estimator
from gumbel_ac.learner import Learner
from gumbel_ac.losses import Batch, critic_target
from gumbel_ac.trainer import train


def _agent(nvec: tuple[int, ...], seed: int = 0) -> Any:
    torch.manual_seed(seed)
    agent = make_agent(obs_dim=3, spec=ActionSpec(nvec), hidden_sizes=(16,), alpha=0.3, target_entropy_ratio=0.5)
    with torch.no_grad():
        for p in (agent.critic_target.w_act, agent.critic.w_act):
            p.normal_()  # Q depends on the action
    return agent


def _batch(n: int, nvec: tuple[int, ...], seed: int = 1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    actions = torch.stack([torch.randint(0, k, (n,), generator=g) for k in nvec], dim=-1)
    return Batch(
        torch.randn(n, 3, generator=g),
        actions,
        torch.randn(n, generator=g),
        torch.randn(n, 3, generator=g),
        torch.rand(n, generator=g) < 0.2,
    )


def test_sampled_target_matches_the_enumerated_one_in_expectation() -> None:
    nvec = (3, 4)
    agent, batch = _agent(nvec), _batch(8, nvec)
    alpha = torch.tensor(0.3)
    logits = agent.actor(batch.next_obs_BD).detach()
    exact = critic_target(agent, logits, batch, 0.99, alpha)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack(
        [critic_target(agent, logits, batch, 0.99, alpha, samples=8, generator=gen) for _ in range(400)]
    )  # 3200 next actions per transition
    se = draws.std(0) / 400**0.5
    assert ((draws.mean(0) - exact).abs() <= 4 * se + 1e-5).all(), (draws.mean(0) - exact, se)
    assert (draws.std(0) > 0).any()  # it is a sampled estimate, not a copy of the exact one


def test_score_leave_one_out_gradient_is_unbiased() -> None:
    nvec = (3, 3)
    agent, batch = _agent(nvec), _batch(4, nvec)
    logits = agent.actor(batch.obs_BD).detach().requires_grad_(True)
    exact_fn, score_fn = get_estimator("exact"), get_estimator("score", score_samples=4)
    g_exact = torch.autograd.grad(
        exact_fn(logits, agent.q_objective(batch.obs_BD), agent.spec, tau=1.0).surrogate_B.sum(), logits
    )[0]
    gen = torch.Generator().manual_seed(3)
    grads = []
    for _ in range(3000):
        out = score_fn(logits, agent.q_objective(batch.obs_BD, enumerable=False), agent.spec, tau=1.0, generator=gen)
        grads.append(torch.autograd.grad(out.surrogate_B.sum(), logits)[0])
    stack = torch.stack(grads)
    se = stack.std(0) / len(grads) ** 0.5
    assert ((stack.mean(0) - g_exact).abs() <= 4 * se + 1e-4).all()


class _EightByEight(gym.Env):
    """A contextual task with MultiDiscrete([8] * 8) actions: reward = matching heads / 8."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (64,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([8] * 8)
        self.code = np.zeros(8, dtype=np.int64)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(64, np.float32)
        obs[np.arange(8) * 8 + self.code] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.code = self.np_random.integers(0, 8, size=8)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float((np.asarray(action) == self.code).mean())
        self.code = self.np_random.integers(0, 8, size=8)
        return self._obs(), reward, False, False, {}


def _no_enumeration(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ActionSpec, device: torch.device) -> Any:
        raise AssertionError(f"joint actions of {self.nvec} enumerated on the sampled path")

    monkeypatch.setattr(ActionSpec, "_joint_tables", refuse)


@pytest.mark.parametrize("estimator", ["gumbel-st", "gumbel-rao", "score"])
def test_an_8x8_multidiscrete_task_trains_without_enumerating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, estimator: str
) -> None:
    _no_enumeration(monkeypatch)
    if "test/EightByEight-v0" not in gym.registry:
        gym.register("test/EightByEight-v0", entry_point=_EightByEight, max_episode_steps=8)
    result = train(
        Config(
            env="test/EightByEight-v0",
            estimator=estimator,
            num_envs=4,
            total_steps=600,
            learning_starts=200,
            batch_size=32,
            eval_every=0,
            final_eval_episodes=2,
            checkpoint_every=0,
            progress=False,
            runs_dir=str(tmp_path),
            run_name=estimator,
        )
    )
    assert np.isfinite(result.final_mean)


def test_sb3_gumbel_ac_trains_an_8x8_task_without_enumerating(monkeypatch: pytest.MonkeyPatch) -> None:
    from stable_baselines3.common.env_util import make_vec_env

    from gumbel_ac.sb3 import GumbelAC

    _no_enumeration(monkeypatch)
    model = GumbelAC(
        "MlpPolicy",
        make_vec_env(_EightByEight, n_envs=2, seed=0),
        learning_starts=32,
        batch_size=16,
        buffer_size=500,
        seed=0,
        policy_kwargs=dict(net_arch=[32]),
    )
    model.learn(120)
    assert model._n_updates > 0 and model.learner.target_samples == 4
    actions, _ = model.predict(np.stack([model.observation_space.sample() for _ in range(3)]))
    assert actions.shape == (3, 8)


def test_exact_above_the_limit_is_refused_with_the_alternatives() -> None:
    agent = _agent((8,) * 4)
    config = Config(estimator="exact").validate()
    with pytest.raises(ConfigError, match=r"exact estimator sums over all 4096 joint actions.*gumbel-st, gumbel-rao"):
        Learner.from_config(agent, config)
    Learner.from_config(agent, Config(estimator="exact", max_enumerated_actions=4096).validate())  # raised: fine


def test_sb3_adapter_steps_multidiscrete_torch_envs() -> None:
    """SB3 algorithms (here PPO and GumbelAC) drive a MultiDiscrete torch env through the adapter:
    one action per head reaches the env, not one per row."""
    from stable_baselines3 import PPO

    from gumbel_ac.sb3 import GumbelAC, make_torch_vec_env

    env = make_torch_vec_env("gumbel_ac/Dials-v0", n_envs=3, seed=0, heads=3, choices=4)
    env.reset()
    code = env.reset()[:, :12].reshape(3, 3, 4).argmax(-1)  # the shown code, one-hot per head
    _, reward, _, _ = env.step(code.astype(np.int64))
    np.testing.assert_allclose(reward, 1.0)  # every head right
    PPO("MlpPolicy", env, n_steps=8, batch_size=12, n_epochs=1, seed=0).learn(48)
    GumbelAC("MlpPolicy", env, learning_starts=8, batch_size=8, buffer_size=100, seed=0).learn(48)
