"""The critic's variants against hand computation: Zhou et al. 2022's (arXiv:2209.10081)
double-average target (mean of the two target critics instead of their minimum) and Q-clip of
the critic loss, and DQN's Huber critic loss (Mnih et al. 2015), value and gradient."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from critic_cases import three_row_batch

from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.losses import Batch, critic_loss, critic_target


def _agent() -> Agent:
    torch.manual_seed(0)
    agent = make_agent(obs_dim=2, spec=ActionSpec((3,)), hidden_sizes=(8,), alpha=0.3, target_entropy_ratio=0.5)
    with torch.no_grad():
        agent.critic.w_act.normal_()
        agent.critic_target.load_state_dict(agent.critic.state_dict())
        agent.critic_target.w_obs.add_(0.3)  # the target network differs from the online one
    return agent


def _q_grad_of_critic_loss(agent: Agent, batch: Batch, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """The gradient of ``critic_loss(agent, batch, y, **kwargs)`` w.r.t. the online critic's Q
    output ``[2, B]``, captured inside the call: what the code back-propagates, not only what
    the formula says."""
    captured: list[torch.Tensor] = []
    online_q = agent.critic.q

    def q_keeping_grad(*args: object, **kw: object) -> torch.Tensor:
        out = online_q(*args, **kw)  # type: ignore[arg-type]
        out.retain_grad()
        captured.append(out)
        return out

    agent.critic.q = q_keeping_grad  # type: ignore[method-assign]
    try:
        loss, _ = critic_loss(agent, batch, y, **kwargs)
        loss.backward()
    finally:
        del agent.critic.q  # the bound method again
    assert len(captured) == 1 and captured[0].grad is not None
    return captured[0].grad


def test_average_target_uses_the_mean_of_the_two_target_critics() -> None:
    agent, batch = _agent(), three_row_batch()
    gamma, alpha = 0.9, torch.tensor(0.3)
    next_logits = agent.logits(batch.next_obs_BD).detach()
    y_min = critic_target(agent, next_logits, batch, gamma, alpha)
    y_mean = critic_target(agent, next_logits, batch, gamma, alpha, reduce="mean")
    for i in range(3):
        pi = torch.softmax(next_logits[i], -1)
        q_2A = torch.stack(
            [agent.critic_target(batch.next_obs_BD[i : i + 1], torch.eye(3)[a : a + 1])[:, 0] for a in range(3)], -1
        )
        for y, q_A in ((y_min, q_2A.min(0).values), (y_mean, q_2A.mean(0))):
            v = sum(float(pi[a]) * (float(q_A[a]) - 0.3 * math.log(float(pi[a]))) for a in range(3))
            assert y[i].item() == pytest.approx(float(batch.reward_B[i]) + gamma * v, abs=1e-5)
    assert (y_mean >= y_min - 1e-6).all() and not torch.allclose(y_mean, y_min)  # the mean is never below the min


def test_q_clip_loss_and_gradient_by_hand() -> None:
    agent, batch = _agent(), three_row_batch()
    action = torch.eye(3)[batch.action_BH[:, 0]]
    with torch.no_grad():
        q = agent.critic(batch.obs_BD, action)  # [2, B]
        q_old = agent.critic_target(batch.obs_BD, action)
    gap = (q - q_old).abs()
    # The clip sits between the gaps: some samples' step is clipped, others' is not.
    c = float(gap.flatten().sort().values[gap.numel() // 2])
    # Targets on both sides: y far beyond q (the clipped value fits worse -> max picks it).
    y = q.mean(0) + torch.tensor([5.0, -5.0, 0.0])
    loss, _ = critic_loss(agent, batch, y, q_clip=c)
    clipped = q_old + (q - q_old).clamp(-c, c)
    per = torch.maximum((q - y) ** 2, (clipped - y) ** 2)
    assert loss.item() == pytest.approx(0.5 * per.mean(1).sum().item(), rel=1e-6)
    plain, _ = critic_loss(agent, batch, y)
    assert plain.item() == pytest.approx(0.5 * ((q - y) ** 2).mean(1).sum().item(), rel=1e-6)
    assert loss.item() >= plain.item() - 1e-6

    # The gradient w.r.t. Q: 0 where the clipped branch wins with the clip active, the plain
    # error's (Q - y) / B where the plain branch wins.
    q_var = q.clone().requires_grad_(True)
    clipped_v = q_old + (q_var - q_old).clamp(-c, c)
    torch.maximum((q_var - y) ** 2, (clipped_v - y) ** 2).mul(0.5).mean(1).sum().backward()
    grad = q_var.grad
    assert grad is not None
    clip_wins = ((clipped - y) ** 2 > (q - y) ** 2) & (gap > c)
    assert clip_wins.any() and (~clip_wins).any()
    assert torch.equal(grad[clip_wins], torch.zeros_like(grad[clip_wins]))
    assert torch.allclose(grad[~clip_wins], ((q - y) / 3)[~clip_wins], atol=1e-6)

    # The same gradient through critic_loss itself (the online critic's Q output, captured):
    # what the code back-propagates, not only what the formula says.
    code_grad = _q_grad_of_critic_loss(agent, batch, y, q_clip=c)
    assert torch.allclose(code_grad, grad, atol=1e-6)
    assert torch.equal(code_grad[clip_wins], torch.zeros_like(grad[clip_wins]))


def test_q_clip_large_enough_is_the_plain_loss() -> None:
    agent, batch = _agent(), three_row_batch()
    y = torch.tensor([0.3, -0.1, 1.2])
    plain, _ = critic_loss(agent, batch, y)
    wide, _ = critic_loss(agent, batch, y, q_clip=1e6)
    assert wide.item() == pytest.approx(plain.item(), rel=1e-6)


def test_huber_loss_value_and_gradient_by_hand() -> None:
    agent, batch = _agent(), three_row_batch()
    action = torch.eye(3)[batch.action_BH[:, 0]]
    with torch.no_grad():
        q = agent.critic(batch.obs_BD, action)  # [2, B]
    d = 0.75
    # Errors on both sides of the threshold and of zero: -2, +0.5 and +3 from the critics' mean.
    y = q.mean(0) + torch.tensor([2.0, -0.5, -3.0])
    e = q - y
    assert ((e.abs() > d).any() and (e.abs() <= d).any()).item()
    by_hand = torch.where(e.abs() <= d, 0.5 * e**2, d * (e.abs() - 0.5 * d))
    loss, _ = critic_loss(agent, batch, y, huber_delta=d)
    assert loss.item() == pytest.approx(by_hand.mean(1).sum().item(), rel=1e-6)
    # torch's own Huber loss (mean over the batch, summed over the critics) agrees.
    reference = sum(torch.nn.functional.huber_loss(q[i], y, delta=d) for i in range(2))
    assert loss.item() == pytest.approx(float(reference), rel=1e-6)
    # A threshold above every error is the plain squared error.
    plain, _ = critic_loss(agent, batch, y)
    wide, _ = critic_loss(agent, batch, y, huber_delta=1e6)
    assert wide.item() == pytest.approx(plain.item(), rel=1e-6)

    # The gradient w.r.t. Q, through critic_loss itself: e / B within d, d * sign(e) / B beyond.
    code_grad = _q_grad_of_critic_loss(agent, batch, y, huber_delta=d)
    expected = torch.where(e.abs() <= d, e, d * e.sign()) / 3
    assert torch.allclose(code_grad, expected, atol=1e-6)
    assert code_grad.abs().max().item() <= d / 3 + 1e-7  # no sample's step exceeds d / B


def test_huber_with_q_clip_takes_the_larger_error() -> None:
    agent, batch = _agent(), three_row_batch()
    action = torch.eye(3)[batch.action_BH[:, 0]]
    with torch.no_grad():
        q = agent.critic(batch.obs_BD, action)
        q_old = agent.critic_target(batch.obs_BD, action)
    c = float((q - q_old).abs().flatten().median())
    d = 0.5
    y = q.mean(0) + torch.tensor([5.0, -5.0, 0.0])
    clipped = q_old + (q - q_old).clamp(-c, c)
    err = torch.maximum((q - y).abs(), (clipped - y).abs())
    by_hand = torch.where(err <= d, 0.5 * err**2, d * (err - 0.5 * d))
    loss, _ = critic_loss(agent, batch, y, q_clip=c, huber_delta=d)
    assert loss.item() == pytest.approx(by_hand.mean(1).sum().item(), rel=1e-6)


def test_huber_delta_reaches_the_learner_and_is_checked() -> None:
    from gumbel_ac.learner import Learner

    with pytest.raises(ConfigError, match="huber_delta must be > 0"):
        Config(huber_delta=0.0).validate()
    with pytest.raises(ConfigError, match="huber_delta"):
        Config(huber_delta=float("nan")).validate()
    agent = _agent()
    learner = Learner.from_config(agent, Config(huber_delta=2.0).validate())
    assert learner.huber_delta == 2.0
    assert Learner.from_config(agent, Config().validate()).huber_delta is None


def test_q_clip_and_reduce_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="q_clip must be > 0"):
        Config(q_clip=0.0).validate()
    with pytest.raises(ConfigError, match="target_q_reduce must be one of 'min', 'mean', got 'max'"):
        Config(target_q_reduce="max").validate()  # type: ignore[arg-type]
