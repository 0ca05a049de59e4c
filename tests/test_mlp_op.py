"""The hand-written-backward network ops (gumbel_ac.mlp_op) against autograd.

- ``torch.autograd.gradcheck`` (float64) of both ops over depths 1-3 and every combination of
  which inputs require a gradient (parameters trained or detached, observation and action
  with or without gradient, and only one layer's parameters -- the backward stops at the
  lowest layer anything is needed from);
- the update's losses and gradient with the op on vs off (plain autograd), float32, for the
  gumbel-st, score and exact estimators;
- ReLU at exactly zero gives gradient 0, as autograd's ReLU does;
- ``torch.no_grad()`` and inputs without gradient run the forward only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch

from gumbel_ac import losses, mlp_op
from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.estimators import get_estimator
from gumbel_ac.losses import Batch
from gumbel_ac.networks import Actor, TwinCritic

DEPTHS = [(8,), (8, 8), (8, 8, 8)]


def _nets(hidden: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[Actor, TwinCritic]:
    torch.manual_seed(seed)
    actor, critic = Actor(3, 4, hidden).to(dtype), TwinCritic(3, 2, hidden).to(dtype)
    with torch.no_grad():
        critic.w_act.normal_()  # starts at zero: make the action path non-trivial
    return actor, critic


def _param_masks(n: int) -> list[tuple[bool, ...]]:
    """All trained, all detached, only the first / only the last parameter tensor trained."""
    first, last = [False] * n, [False] * n
    first[0], last[-1] = True, True
    return [tuple([True] * n), tuple([False] * n), tuple(first), tuple(last)]


def _prepare(tensors: list[torch.Tensor], mask: tuple[bool, ...]) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_(m) for t, m in zip(tensors, mask)]


@pytest.mark.parametrize("hidden", DEPTHS)
def test_mlp_gradcheck(hidden: tuple[int, ...]) -> None:
    actor, _ = _nets(hidden)
    params = actor._linear_params()
    x0 = torch.randn(5, 3, dtype=torch.float64)
    for x_grad, mask in itertools.product([False, True], _param_masks(len(params))):
        if not x_grad and not any(mask):
            continue
        x = x0.clone().requires_grad_(x_grad)
        ps = _prepare(params, mask)
        assert torch.autograd.gradcheck(lambda x, *p: mlp_op.MLPFunction.apply(x, *p), (x, *ps))


@pytest.mark.parametrize("hidden", DEPTHS)
def test_twin_gradcheck(hidden: tuple[int, ...]) -> None:
    _, critic = _nets(hidden)
    params = critic._params(detach=True)
    obs0, act0 = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    # Masks over (W_obs, W_act, b_in, hidden..., W_out, b_out), plus "one hidden weight only".
    masks = _param_masks(len(params))
    if len(hidden) > 1:
        masks.append(tuple(i == 3 for i in range(len(params))))
    for obs_grad, act_grad, mask in itertools.product([False, True], [False, True], masks):
        if not (obs_grad or act_grad or any(mask)):
            continue
        obs, act = obs0.clone().requires_grad_(obs_grad), act0.clone().requires_grad_(act_grad)
        ps = _prepare(params, mask)
        assert torch.autograd.gradcheck(lambda o, a, *p: mlp_op.TwinMLPFunction.apply(o, a, *p), (obs, act, *ps))


def _grads_of(fn: Callable[[], torch.Tensor], inputs: list[torch.Tensor]) -> list[torch.Tensor | None]:
    for t in inputs:
        t.grad = None
    fn().square().sum().backward()
    return [None if t.grad is None else t.grad.clone() for t in inputs]


@pytest.mark.parametrize("detach_params", [False, True])
def test_networks_match_autograd_float32(detach_params: bool) -> None:
    """The modules' outputs and every gradient equal the plain-autograd path (float32)."""
    actor, critic = _nets((16, 16), torch.float32, seed=3)
    obs = torch.randn(7, 3, requires_grad=True)
    act = torch.randn(7, 2, requires_grad=True)
    inputs = [obs, act, *actor.parameters(), *critic.parameters()]

    def run() -> torch.Tensor:
        return torch.cat([actor(obs).reshape(-1), critic(obs, act, detach_params=detach_params).reshape(-1)])

    with_op = _grads_of(run, inputs)
    with mlp_op.disabled():
        assert not mlp_op.is_enabled()
        plain = _grads_of(run, inputs)
    assert mlp_op.is_enabled()
    for a, b in zip(with_op, plain):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    if detach_params:
        assert all(p.grad is None for p in critic.parameters())


def test_relu_at_zero_matches_autograd() -> None:
    """A unit that is exactly 0 (dead, or a tie at zero) passes no gradient, as in autograd."""
    actor, critic = _nets((8, 8), torch.float64, seed=1)
    with torch.no_grad():
        actor.net[0].weight[2].zero_()
        actor.net[0].bias[2] = 0.0  # hidden unit 2 of layer 1: pre-activation exactly 0
        critic.w_obs[:, :, 5] = 0.0
        critic.w_act[:, :, 5] = 0.0
        critic.b_in[:, :, 5] = 0.0
    obs = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    act = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    inputs = [obs, act, *actor.parameters(), *critic.parameters()]

    def run() -> torch.Tensor:
        return torch.cat([actor(obs).reshape(-1), critic(obs, act).reshape(-1)])

    with_op = _grads_of(run, inputs)
    with mlp_op.disabled():
        plain = _grads_of(run, inputs)
    for a, b in zip(with_op, plain):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    grads = dict(zip(["obs", "act"] + [f"a.{n}" for n, _ in actor.named_parameters()]
                     + [f"c.{n}" for n, _ in critic.named_parameters()], with_op))
    assert torch.all(grads["a.net.0.weight"][2] == 0) and grads["a.net.0.bias"][2] == 0  # type: ignore[index]
    assert torch.all(grads["c.w_obs"][:, :, 5] == 0) and torch.all(grads["c.b_in"][:, :, 5] == 0)  # type: ignore[index]


def test_no_grad_runs_forward_only() -> None:
    actor, critic = _nets((8, 8), torch.float32)
    obs, act = torch.randn(4, 3), torch.randn(4, 2)
    with torch.no_grad():
        q, logits = critic(obs, act), actor(obs)
    assert q.grad_fn is None and logits.grad_fn is None and q.shape == (2, 4)
    q2 = critic(obs, act, detach_params=True)  # grad mode on, but nothing requires a gradient
    assert q2.grad_fn is None
    torch.testing.assert_close(q, q2)
    with mlp_op.disabled():
        torch.testing.assert_close(critic(obs, act), q, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(actor(obs), logits, rtol=1e-6, atol=1e-6)
    assert type(critic(obs, act).grad_fn).__name__.startswith("TwinMLPFunction")


def test_disabled_restores_on_error() -> None:
    with pytest.raises(RuntimeError), mlp_op.disabled():
        raise RuntimeError
    assert mlp_op.is_enabled()


def test_state_dict_keys_unchanged() -> None:
    actor, critic = _nets((8, 8, 8), torch.float32)
    assert list(actor.state_dict()) == [f"net.{i}.{k}" for i in (0, 2, 4, 6) for k in ("weight", "bias")]
    assert list(critic.state_dict()) == ["w_obs", "w_act", "b_in", "w_out", "b_out", "hidden_w.0", "hidden_w.1",
                                         "hidden_b.0", "hidden_b.1"]


# ----------------------------------------------------------------------------- the update


def _agent(seed: int, hidden: tuple[int, ...]) -> Agent:
    torch.manual_seed(seed)
    agent = make_agent(obs_dim=5, spec=ActionSpec([3]), hidden_sizes=hidden, alpha=0.3, target_entropy_ratio=0.2)
    with torch.no_grad():
        agent.critic.w_act.normal_()
        agent.critic_target.w_act.normal_(std=0.5)
    agent.log_alpha.requires_grad_(True)
    return agent


def _batch(seed: int, size: int = 64) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    return Batch(
        obs_BD=torch.randn(size, 5, generator=gen),
        action_BH=torch.randint(0, 3, (size, 1), generator=gen),
        reward_B=torch.randn(size, generator=gen),
        next_obs_BD=torch.randn(size, 5, generator=gen),
        terminated_B=torch.rand(size, generator=gen) < 0.2,
    )


def _total_loss(agent: Agent, batch: Batch, estimator_name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, critic loss, actor loss) from the losses module (``compute_losses`` where it exists)."""
    estimator = get_estimator(estimator_name)
    gen = torch.Generator().manual_seed(7)
    options = dict(gamma=0.97, tau=0.6, autotune_alpha=True, generator=gen)
    if hasattr(losses, "compute_losses"):
        total, stats = losses.compute_losses(agent, batch, estimator, **options)
        return total, stats.critic_loss, stats.actor_loss
    alpha = agent.alpha.detach()
    n = batch.obs_BD.shape[0]
    both = agent.actor(torch.cat([batch.obs_BD, batch.next_obs_BD], dim=0))
    target = losses.critic_target(agent, both[n:].detach(), batch, 0.97, alpha)
    c_loss, _ = losses.critic_loss(agent, batch, target)
    a_loss, entropy = losses.actor_loss(agent, batch.obs_BD, both[:n], estimator, tau=0.6, alpha=alpha, generator=gen)
    return c_loss + a_loss + losses.alpha_loss(agent, entropy), c_loss.detach(), a_loss.detach()


def _flat_grad(agent: Agent, batch: Batch, estimator_name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    params = [*agent.actor.parameters(), *agent.critic.parameters(), agent.log_alpha]
    for p in params:
        p.grad = None
    total, c_loss, a_loss = _total_loss(agent, batch, estimator_name)
    total.backward()
    grad = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params])
    return grad, c_loss, a_loss


@pytest.mark.parametrize("estimator_name", ["gumbel-st", "score", "exact"])
@pytest.mark.parametrize("hidden", [(32,), (32, 32)])
def test_update_gradient_op_on_equals_off(estimator_name: str, hidden: tuple[int, ...]) -> None:
    agent, batch = _agent(0, hidden), _batch(1)
    grad_on, c_on, a_on = _flat_grad(agent, batch, estimator_name)
    with mlp_op.disabled():
        grad_off, c_off, a_off = _flat_grad(agent, batch, estimator_name)
    assert grad_on.abs().max() > 0 and torch.isfinite(grad_on).all()
    torch.testing.assert_close(c_on, c_off, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a_on, a_off, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_on, grad_off, rtol=1e-4, atol=1e-6)
