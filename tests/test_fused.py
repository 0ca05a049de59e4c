"""The fused gumbel-st update (hand-written backward) against the autograd update.

The reference is :func:`gumbel_ac.losses.update` (autograd through the gumbel-st estimator).
Both draw the Gumbel noise from the same generator state, so the gradients must agree to
float rounding: on random agents (non-zero action weights), several depths, K = 2 and 3,
float and tensor temperatures, tuned and fixed alpha, terminal transitions, and tied twins.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.estimators import get_estimator
from gumbel_ac.fused import FusedUpdate, fused_unsupported
from gumbel_ac.losses import Batch, UpdateStats, make_optimizer, update
from gumbel_ac.optim import FlatAdam
from gumbel_ac.trainer import train

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


class _RecordingOptimizer:
    """Stands in for FlatAdam: keeps the gradient the step would have used, changes nothing."""

    def __init__(self, flat_grad: torch.Tensor) -> None:
        self.flat_grad = flat_grad
        self.grad: torch.Tensor | None = None

    def step(self) -> None:
        self.grad = self.flat_grad.clone()


def _agent(seed: int, num_actions: int, hidden: tuple[int, ...], device: str, alpha: float = 0.3) -> Agent:
    torch.manual_seed(seed)
    agent = make_agent(obs_dim=5, spec=ActionSpec([num_actions]), hidden_sizes=hidden, alpha=alpha,
                       target_entropy_ratio=0.2).to(device)
    with torch.no_grad():  # the action weights start at zero; make the action gradient non-trivial
        agent.critic.w_act.normal_()
        agent.critic_target.w_act.normal_(std=0.5)
    return agent


def _batch(seed: int, num_actions: int, device: str, size: int = 96) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    return Batch(
        obs_BD=torch.randn(size, 5, generator=gen).to(device),
        action_BH=torch.randint(0, num_actions, (size, 1), generator=gen).to(device),
        reward_B=torch.randn(size, generator=gen).to(device),
        next_obs_BD=torch.randn(size, 5, generator=gen).to(device),
        terminated_B=(torch.rand(size, generator=gen) < 0.2).to(device),
    )


def _step(agent: Agent, batch: Batch, fused: bool, tau: float | torch.Tensor, autotune: bool,
          optimizer: str = "record") -> tuple[UpdateStats, torch.Tensor | None, torch.Tensor]:
    opt, flat_grad = make_optimizer(agent, actor_lr=3e-3, critic_lr=3e-3, alpha_lr=3e-3, autotune_alpha=autotune)
    stepper: FlatAdam | _RecordingOptimizer = opt if optimizer == "adam" else _RecordingOptimizer(flat_grad)
    device = batch.obs_BD.device
    gen = torch.Generator(device=device).manual_seed(7)
    kwargs = dict(gamma=0.97, tau=tau, target_update_rate=0.25, autotune_alpha=autotune, generator=gen)
    if fused:
        stats = FusedUpdate(agent, stepper, flat_grad)(batch, **kwargs)  # type: ignore[arg-type]
    else:
        stats = update(agent, stepper, flat_grad, batch, get_estimator("gumbel-st"), **kwargs)  # type: ignore[arg-type]
    grad = stepper.grad if isinstance(stepper, _RecordingOptimizer) else None
    params = torch.cat([p.detach().reshape(-1) for p in agent.parameters()])
    return stats, grad, params


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "seed,num_actions,hidden,tau,autotune",
    [
        (0, 2, (64, 64), 0.6, True),
        (1, 3, (32, 32), 1.5, False),
        (2, 2, (16,), 0.3, True),
        (3, 4, (24, 16, 8), 1.0, True),
        (4, 3, (64, 64), "tensor", True),
    ],
)
def test_fused_gradient_equals_autograd(device: str, seed: int, num_actions: int, hidden: tuple[int, ...],
                                        tau: float | str, autotune: bool) -> None:
    tau_value = torch.tensor(0.8, device=device) if tau == "tensor" else tau
    batch = _batch(seed, num_actions, device)
    ref_stats, ref_grad, _ = _step(_agent(seed, num_actions, hidden, device), batch, False, tau_value, autotune)
    stats, grad, _ = _step(_agent(seed, num_actions, hidden, device), batch, True, tau_value, autotune)
    assert ref_grad is not None and grad is not None
    assert ref_grad.abs().max() > 1e-3  # a gradient worth comparing
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    for name in ("critic_loss", "actor_loss", "alpha", "entropy", "q_mean", "nonfinite"):
        torch.testing.assert_close(getattr(stats, name), getattr(ref_stats, name), rtol=1e-5, atol=1e-6)


def test_fused_adam_step_equals_autograd_step() -> None:
    batch = _batch(5, 2, "cpu")
    _, _, ref = _step(_agent(5, 2, (64, 64), "cpu"), batch, False, 0.6, True, optimizer="adam")
    _, _, got = _step(_agent(5, 2, (64, 64), "cpu"), batch, True, 0.6, True, optimizer="adam")
    # Adam's first step is ~lr * sign(g): where |g| is near rounding noise a 1e-7 gradient
    # difference moves a parameter by a visible fraction of lr. Allow 1% of one step.
    torch.testing.assert_close(got, ref, rtol=0, atol=0.01 * 3e-3)


def test_tied_twins_share_the_actor_gradient_like_autograd() -> None:
    """With identical twins every ``min`` is a tie; autograd splits the gradient evenly."""
    batch = _batch(6, 3, "cpu")
    agents = []
    for _ in range(2):
        agent = _agent(6, 3, (32, 32), "cpu")
        with torch.no_grad():
            for p in agent.critic.parameters():
                p[1].copy_(p[0])
        agents.append(agent)
    _, ref_grad, _ = _step(agents[0], batch, False, 0.7, True)
    _, grad, _ = _step(agents[1], batch, True, 0.7, True)
    assert ref_grad is not None and grad is not None
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_fused_masks_a_non_finite_step_like_autograd() -> None:
    batch = _batch(7, 2, "cpu")
    poisoned = Batch(batch.obs_BD, batch.action_BH, batch.reward_B.clone(), batch.next_obs_BD, batch.terminated_B)
    poisoned.reward_B[3] = float("nan")
    for fused in (False, True):
        agent = _agent(7, 2, (32, 32), "cpu")
        before = torch.cat([p.detach().reshape(-1).clone() for p in agent.actor.parameters()])
        stats, grad, _ = _step(agent, poisoned, fused, 0.6, True)
        assert float(stats.nonfinite) == 1.0
        assert grad is not None and torch.count_nonzero(grad) == 0  # masked to zero on the device
        after = torch.cat([p.detach().reshape(-1) for p in agent.actor.parameters()])
        assert torch.equal(before, after)


def test_fused_scope() -> None:
    two_heads = make_agent(obs_dim=3, spec=ActionSpec([2, 3]), hidden_sizes=(8,), alpha=0.1, target_entropy_ratio=0.1)
    one_head = make_agent(obs_dim=3, spec=ActionSpec([2]), hidden_sizes=(8,), alpha=0.1, target_entropy_ratio=0.1)
    assert fused_unsupported(one_head, "gumbel-st") is None
    assert "gumbel-st only" in str(fused_unsupported(one_head, "score"))
    assert "one action head" in str(fused_unsupported(two_heads, "gumbel-st"))


def _config(tmp: Path, **kw: object) -> Config:
    base = dict(env="gumbel_ac/CartPole-v1", total_steps=640, num_envs=16, learning_starts=128, eval_every=0,
                final_eval_episodes=0, checkpoint_every=0, progress=False, runs_dir=str(tmp), run_name="f")
    base.update(kw)
    return Config(**base)  # type: ignore[arg-type]


def test_update_impl_fused_refuses_other_estimators(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--update-impl fused cannot be used: it implements gumbel-st only"):
        train(_config(tmp_path, estimator="score", update_impl="fused"))


def test_auto_and_autograd_train_the_same_agent_to_rounding(tmp_path: Path) -> None:
    """Same seed, fused vs autograd: the runs start identical and stay close over 40 updates."""
    from gumbel_ac.checkpoint import load_run

    finals = []
    for impl in ("autograd", "auto"):
        result = train(_config(tmp_path, update_impl=impl, run_name=impl, checkpoint_every=0))
        run = load_run(result.run_dir)
        finals.append(torch.cat([p.detach().reshape(-1) for p in run.agent.actor.parameters()]))
    torch.testing.assert_close(finals[1], finals[0], rtol=1e-3, atol=1e-4)
