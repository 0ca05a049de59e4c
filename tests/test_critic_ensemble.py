"""Critic ensembles: ``n_critics`` (SB3's keyword; the target's minimum over all of them) and
REDQ's random in-target subset with the actor on the ensemble mean (Chen et al. 2021,
arXiv:2101.05982, Alg. 1), against hand computation; the native run, checkpoint and SB3 paths."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from critic_cases import three_row_batch

import gumbel_ac.envs  # noqa: F401  (registers the gumbel_ac/ env ids)
from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.checkpoint import load_run
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.learner import make_estimator
from gumbel_ac.losses import Batch, actor_loss, critic_target, draw_target_critics
from gumbel_ac.trainer import train


def _agent(n: int) -> Agent:
    torch.manual_seed(0)
    agent = make_agent(
        obs_dim=2, spec=ActionSpec((3,)), hidden_sizes=(8,), alpha=0.3, target_entropy_ratio=0.5, num_critics=n
    )
    with torch.no_grad():
        agent.critic.w_act.normal_()
        agent.critic_target.load_state_dict(agent.critic.state_dict())
        agent.critic_target.w_act.normal_()  # every target member differs at every action
    return agent


def _target_by_hand(agent: Agent, batch: Batch, members: list[int], gamma: float) -> torch.Tensor:
    next_logits = agent.logits(batch.next_obs_BD).detach()
    out = []
    for i in range(3):
        pi = torch.softmax(next_logits[i], -1)
        q_EA = torch.stack(
            [agent.critic_target(batch.next_obs_BD[i : i + 1], torch.eye(3)[a : a + 1])[:, 0] for a in range(3)], -1
        )
        q_A = q_EA[members].min(0).values
        v = sum(float(pi[a]) * (float(q_A[a]) - 0.3 * math.log(float(pi[a]))) for a in range(3))
        out.append(float(batch.reward_B[i]) + gamma * v)
    return torch.tensor(out)


def test_the_target_takes_the_minimum_over_every_critic_of_the_ensemble() -> None:
    agent, batch = _agent(5), three_row_batch()
    assert agent.critic.w_obs.shape[0] == 5 and agent.critic(batch.obs_BD, torch.eye(3)).shape == (5, 3)
    y = critic_target(agent, agent.logits(batch.next_obs_BD).detach(), batch, 0.9, torch.tensor(0.3))
    torch.testing.assert_close(y, _target_by_hand(agent, batch, [0, 1, 2, 3, 4], 0.9), atol=1e-5, rtol=0)
    # ... which is below the minimum of the first two members (the twin's target) somewhere.
    assert (y < _target_by_hand(agent, batch, [0, 1], 0.9) - 1e-4).any()


def test_redq_target_uses_the_drawn_pair_and_the_draws_cover_the_ensemble() -> None:
    agent, batch = _agent(5), three_row_batch()
    gen = torch.Generator().manual_seed(3)
    y = critic_target(
        agent, agent.logits(batch.next_obs_BD).detach(), batch, 0.9, torch.tensor(0.3), generator=gen, target_critics=2
    )
    members = draw_target_critics(5, 2, torch.device("cpu"), torch.Generator().manual_seed(3)).tolist()
    assert len(set(members)) == 2
    torch.testing.assert_close(y, _target_by_hand(agent, batch, members, 0.9), atol=1e-5, rtol=0)
    # Pairs are distinct members, uniform over the 10 pairs: 2,000 draws hit each ~200 times.
    gen = torch.Generator().manual_seed(0)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(2000):
        pair = tuple(sorted(draw_target_critics(5, 2, torch.device("cpu"), gen).tolist()))
        counts[pair] = counts.get(pair, 0) + 1
    assert len(counts) == 10 and all(len(set(p)) == 2 for p in counts)
    assert all(140 <= c <= 260 for c in counts.values()), counts  # binomial(2000, 0.1): sd 13.4


def test_redq_actor_maximises_the_ensemble_mean() -> None:
    agent, batch = _agent(4), three_row_batch()
    logits = agent.logits(batch.obs_BD)
    est = make_estimator("exact")
    alpha = torch.tensor(0.3)
    loss_mean, _ = actor_loss(
        agent, batch.obs_BD, logits, est, tau=1.0, alpha=alpha, generator=None, critic_reduce="mean"
    )
    loss_min, _ = actor_loss(agent, batch.obs_BD, logits, est, tau=1.0, alpha=alpha, generator=None)
    with torch.no_grad():
        q_EBA = torch.stack([agent.critic(batch.obs_BD, torch.eye(3)[a].expand(3, 3)) for a in range(3)], -1)
        pi = torch.softmax(logits, -1)
        entropy = -(pi * pi.log()).sum(-1)
        for q_BA, loss in ((q_EBA.mean(0), loss_mean), (q_EBA.min(0).values, loss_min)):
            assert float(loss) == pytest.approx(float(-((pi * q_BA).sum(-1) + alpha * entropy).mean()), abs=1e-5)


def test_ensemble_config_checks() -> None:
    with pytest.raises(ConfigError, match="n_critics must be in"):
        Config(n_critics=0).validate()
    with pytest.raises(ConfigError, match="target_critics must be in"):
        Config(n_critics=3, target_critics=4).validate()
    assert Config(n_critics=10, target_critics=2).validate().target_critics == 2


def test_redq_run_checkpoints_and_loads(tmp_path: Path) -> None:
    cfg = Config(
        env="gumbel_ac/CartPole-v1",
        num_envs=8,
        total_steps=1600,
        learning_starts=200,
        batch_size=32,
        eval_every=800,
        eval_episodes=2,
        final_eval_episodes=2,
        progress=False,
        n_critics=5,
        target_critics=2,
        runs_dir=str(tmp_path),
        run_name="redq",
    )
    result = train(cfg)
    assert not result.interrupted
    loaded = load_run(tmp_path / "redq")
    assert loaded.agent.critic.num_critics == 5 and loaded.config.target_critics == 2
    assert loaded.agent.critic_target.w_out.shape[0] == 5


def test_sb3_gumbel_ac_with_an_ensemble(tmp_path: Path) -> None:
    import gymnasium as gym

    from gumbel_ac.sb3 import GumbelAC

    model = GumbelAC(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        policy_kwargs=dict(n_critics=4),
        target_critics=2,
        learning_starts=64,
        batch_size=32,
        seed=0,
    )
    assert model.policy.agent.critic.num_critics == 4 and model.learner.target_critics == 2
    model.learn(200)
    cfg = model.to_config()
    assert (cfg.n_critics, cfg.target_critics) == (4, 2)
    model.save(tmp_path / "m")
    again = GumbelAC.load(tmp_path / "m")
    assert again.policy.agent.critic.num_critics == 4 and again.learner.target_critics == 2
