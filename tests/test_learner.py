"""The Learner: the one update path (native trainer, SB3, torchrun, CUDA graphs).

- one step moves actor, critic and log-alpha, and the target critic by exactly the Polyak rate;
- a non-finite step changes no weight, is counted, and the guard stops at the limit;
- the agent gets no attribute from outside its class; ``learner.to(device)`` keeps training
  right (bit-identical steps on the CPU, equal to rounding on a GPU), ``agent.to()`` alone is
  caught by ``check_views``;
- ``state_dict`` round trip continues bit for bit; a mismatched state changes nothing.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.learner import Learner, TrainingError, make_estimator
from gumbel_ac.losses import Batch


def _agent(seed: int = 0, nvec: tuple[int, ...] = (3,)) -> Agent:
    torch.manual_seed(seed)
    agent = make_agent(obs_dim=2, spec=ActionSpec(nvec), hidden_sizes=(8,), alpha=0.3, target_entropy_ratio=0.5)
    with torch.no_grad():  # non-zero action weights: Q depends on the action
        agent.critic.w_act.normal_()
        agent.critic_target.load_state_dict(agent.critic.state_dict())
        agent.critic_target.w_obs.add_(0.1)  # target differs from online
    return agent


def _learner(agent: Agent, estimator: str = "gumbel-st", rate: float = 0.25, **kwargs: object) -> Learner:
    options: dict[str, object] = dict(
        actor_lr=1e-2, critic_lr=1e-2, alpha_lr=1e-2, autotune_alpha=True, gamma=0.99, target_update_rate=rate
    )
    options.update(kwargs)
    return Learner(agent, estimator=make_estimator(estimator), **options)  # type: ignore[arg-type]


def _batch(n: int = 16, seed: int = 1, reward: float | None = None, device: str = "cpu") -> Batch:
    g = torch.Generator().manual_seed(seed)
    rew = torch.randn(n, generator=g) if reward is None else torch.full((n,), reward)
    batch = Batch(
        torch.randn(n, 2, generator=g),
        torch.randint(0, 3, (n, 1), generator=g),
        rew,
        torch.randn(n, 2, generator=g),
        torch.rand(n, generator=g) < 0.2,
    )
    return Batch(
        *(t.to(device) for t in (batch.obs_BD, batch.action_BH, batch.reward_B, batch.next_obs_BD, batch.terminated_B))
    )


@pytest.mark.parametrize("estimator", ["gumbel-st", "score", "exact", "gumbel-soft", "gumbel-rao", "reinmax"])
def test_step_moves_parameters_and_polyak(estimator: str) -> None:
    agent = _agent()
    learner = _learner(agent, estimator, rate=0.25)
    actor0 = [p.detach().clone() for p in agent.actor.parameters()]
    target0 = [p.detach().clone() for p in agent.critic_target.parameters()]
    alpha0 = agent.log_alpha.detach().clone()
    stats = learner.step(
        _batch(), temperature=1.0 if estimator == "reinmax" else 0.5, generator=torch.Generator().manual_seed(0)
    )
    assert stats.nonfinite.item() == 0 and learner.optimizer.steps == 1
    assert any(not torch.equal(a, p) for a, p in zip(actor0, agent.actor.parameters(), strict=True))
    assert not torch.equal(alpha0, agent.log_alpha.detach())
    # Polyak: target' = target + rate * (critic' - target), with critic' the updated critic.
    for t0, t1, c1 in zip(target0, agent.critic_target.parameters(), agent.critic.parameters(), strict=True):
        torch.testing.assert_close(t1, t0 + 0.25 * (c1.detach() - t0), atol=1e-6, rtol=0)


def test_nonfinite_steps_change_nothing_are_counted_and_stop_at_the_limit() -> None:
    agent = _agent()
    learner = _learner(agent, max_nonfinite_updates=3)
    before = learner.flat_param.clone()
    for k in range(3):
        stats = learner.step(_batch(reward=math.nan), temperature=0.5)
        assert stats.nonfinite.item() == 1 and learner.nonfinite_streak.item() == k + 1
    # Adam's decayed momentum is still applied, but it is zero here: nothing has moved.
    assert torch.equal(learner.flat_param, before) and all(torch.isfinite(p).all() for p in agent.parameters())
    learner.check_nonfinite(2.0)  # below the limit: fine
    with pytest.raises(TrainingError, match="3 consecutive updates had a non-finite loss"):
        learner.check_nonfinite(float(learner.max_nonfinite_streak))
    learner.step(_batch(), temperature=0.5)  # a finite step ends the streak, the window keeps its max
    assert learner.nonfinite_streak.item() == 0 and learner.max_nonfinite_streak.item() == 3
    learner.reset_window()
    assert learner.max_nonfinite_streak.item() == 0


def test_the_agent_gets_no_attribute_from_outside() -> None:
    agent = _agent()
    names = set(vars(agent))
    _learner(agent).step(_batch(), temperature=0.5)
    assert set(vars(agent)) == names
    assert not hasattr(agent, "flat_critic") and not hasattr(agent, "flat_critic_target")


def test_learner_to_rebuilds_views_and_trains_identically() -> None:
    moved, kept = _learner(_agent()), _learner(_agent())
    moved.step(_batch(), temperature=0.5, generator=torch.Generator().manual_seed(7))
    kept.step(_batch(), temperature=0.5, generator=torch.Generator().manual_seed(7))
    old_flat = moved.flat_param
    moved.to("cpu")  # rebuilds the buffers even on the same device
    assert moved.flat_param.data_ptr() != old_flat.data_ptr()
    moved.check_views()
    for k in range(3):
        moved.step(_batch(seed=10 + k), temperature=0.5, generator=torch.Generator().manual_seed(k))
        kept.step(_batch(seed=10 + k), temperature=0.5, generator=torch.Generator().manual_seed(k))
    assert torch.equal(moved.flat_param, kept.flat_param)
    assert torch.equal(moved.flat_critic_target, kept.flat_critic_target)
    assert torch.equal(moved.optimizer.exp_avg_sq, kept.optimizer.exp_avg_sq)


def test_agent_to_alone_is_caught() -> None:
    learner = _learner(_agent())
    learner.agent.to(torch.float64)  # replaces every parameter's storage
    with pytest.raises(RuntimeError, match="move it with learner.to"):
        learner.check_views()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_learner_to_cuda_trains_like_the_cpu() -> None:
    gpu, cpu = _learner(_agent()), _learner(_agent())
    gpu.to("cuda")
    gpu.check_views()
    for k in range(3):
        gpu.step(_batch(seed=k, device="cuda"), temperature=1.0, generator=None)
        cpu.step(_batch(seed=k), temperature=1.0, generator=None)
    # Different Gumbel draws on the two devices: compare the critic (no noise in its loss).
    n_actor = sum(p.numel() for p in cpu.agent.actor.parameters())
    n_critic = cpu.flat_critic.numel()
    torch.testing.assert_close(
        gpu.flat_param[n_actor : n_actor + n_critic].cpu(), cpu.flat_critic, rtol=1e-4, atol=1e-5
    )


def test_state_dict_round_trip_continues_bit_for_bit() -> None:
    a = _learner(_agent(seed=0))
    for k in range(3):
        a.step(_batch(seed=k), temperature=0.5, generator=torch.Generator().manual_seed(k))
    b = _learner(_agent(seed=5))  # other weights, fresh Adam
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    b.check_views()
    for learner in (a, b):
        learner.step(_batch(seed=9), temperature=0.5, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.flat_param, b.flat_param) and a.optimizer.steps == b.optimizer.steps == 4


def test_mismatched_state_is_refused_and_changes_nothing() -> None:
    a, b = _learner(_agent(nvec=(3,))), _learner(_agent(seed=1, nvec=(3,)), autotune_alpha=False)
    before = b.flat_param.clone()
    with pytest.raises(ValueError, match="optimizer"):
        b.load_state_dict(a.state_dict())  # alpha group present in a, absent in b
    assert torch.equal(b.flat_param, before)
    state = a.state_dict()
    state["nonfinite_streak"] = torch.zeros(2)
    with pytest.raises(ValueError, match="nonfinite_streak"):
        a.load_state_dict(state)


def test_deepcopy_is_an_independent_working_learner() -> None:
    a = _learner(_agent())
    b = copy.deepcopy(a)
    b.check_views()
    b.step(_batch(), temperature=0.5)
    assert not torch.equal(a.flat_param, b.flat_param)  # a did not move
