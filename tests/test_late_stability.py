"""The knobs against late collapses (benchmarks/collapse.py measures them; docs/results.md).

- ``alpha_max``: after a step that would push alpha past the cap, alpha is exactly the cap;
  a step that lowers alpha is the uncapped step, bit for bit; ``alpha_min`` likewise from below;
- ``target_update_rate_final``: the Polyak rate's linear schedule (exact values), applied by
  the learner when the trainer assigns it (target' = target + rate * (critic' - target));
- their validation: one ConfigError naming the field.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.learner import Learner, make_estimator
from gumbel_ac.losses import Batch


def _agent(target_entropy_ratio: float) -> Agent:
    torch.manual_seed(0)
    return make_agent(
        obs_dim=2, spec=ActionSpec((3,)), hidden_sizes=(8,), alpha=0.3, target_entropy_ratio=target_entropy_ratio
    )


def _learner(agent: Agent, **kwargs: object) -> Learner:
    options: dict[str, object] = dict(
        actor_lr=1e-2, critic_lr=1e-2, alpha_lr=1e-1, autotune_alpha=True, gamma=0.99, target_update_rate=0.25
    )
    options.update(kwargs)
    return Learner(agent, estimator=make_estimator("gumbel-st"), **options)  # type: ignore[arg-type]


def _batch(n: int = 16) -> Batch:
    g = torch.Generator().manual_seed(1)
    return Batch(
        torch.randn(n, 2, generator=g),
        torch.randint(0, 3, (n, 1), generator=g),
        torch.randn(n, generator=g),
        torch.randn(n, 2, generator=g),
        torch.rand(n, generator=g) < 0.2,
    )


def _steps(learner: Learner, n: int) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(n):
        learner.step(_batch(), temperature=0.5, generator=gen)


def test_alpha_never_exceeds_the_cap() -> None:
    # Target = the maximum entropy log(3): every policy is below it, so alpha rises each step.
    free = _learner(_agent(target_entropy_ratio=1.0))
    _steps(free, 3)
    assert free.agent.alpha.item() > 0.3 * 1.1  # uncapped, the same steps go well past 0.3
    capped = _learner(_agent(target_entropy_ratio=1.0), alpha_max=0.3)
    for _ in range(3):
        _steps(capped, 1)
        assert capped.agent.log_alpha.item() == pytest.approx(math.log(0.3), abs=1e-7)
        assert capped.agent.alpha.item() <= 0.3 * (1 + 1e-6)


def test_a_cap_above_alpha_changes_nothing() -> None:
    # Target 0: every policy is above it, so alpha falls; a cap at 0.3 is never reached and
    # the capped learner's weights equal the free one's bit for bit.
    free = _learner(_agent(target_entropy_ratio=0.0))
    capped = _learner(_agent(target_entropy_ratio=0.0), alpha_max=0.3)
    _steps(free, 3)
    _steps(capped, 3)
    assert free.agent.alpha.item() < 0.3
    assert torch.equal(free.flat_param, capped.flat_param)


def test_alpha_never_falls_below_the_floor() -> None:
    # Target 0: every policy is above it, so alpha falls each step.
    free = _learner(_agent(target_entropy_ratio=0.0))
    _steps(free, 3)
    assert free.agent.alpha.item() < 0.25 * 0.95  # unfloored, the same steps go below 0.25
    floored = _learner(_agent(target_entropy_ratio=0.0), alpha_min=0.25)
    for _ in range(3):
        _steps(floored, 1)
    assert floored.agent.log_alpha.item() == pytest.approx(math.log(0.25), abs=1e-7)


def test_a_floor_below_alpha_changes_nothing() -> None:
    # Target = the maximum: alpha rises, so a floor at 0.1 is never reached: bit for bit.
    free = _learner(_agent(target_entropy_ratio=1.0))
    floored = _learner(_agent(target_entropy_ratio=1.0), alpha_min=0.1)
    _steps(free, 3)
    _steps(floored, 3)
    assert torch.equal(free.flat_param, floored.flat_param)


def test_target_update_rate_schedule_exact_values() -> None:
    config = Config(
        target_update_rate=0.2,
        target_update_rate_final=0.02,
        target_update_anneal_start=0,
        target_update_anneal_steps=50_000,
    )
    assert config.target_update_rate_at(0) == 0.2
    assert config.target_update_rate_at(25_000) == pytest.approx(0.11, abs=1e-15)
    assert config.target_update_rate_at(50_000) == pytest.approx(0.02, abs=1e-15)
    assert config.target_update_rate_at(100_000) == pytest.approx(0.02, abs=1e-15)
    # No schedule: constant.
    assert Config(target_update_rate=0.2, target_update_rate_final=None).target_update_rate_at(10**6) == 0.2
    # The defaults: 0.2 until 10k, linear to 0.005 at 40k.
    default = Config()
    assert default.target_update_rate_at(10_000) == 0.2 and default.target_update_rate_at(40_000) == 0.005
    assert default.target_update_rate_at(25_000) == pytest.approx(0.1025, abs=1e-15)


def test_learner_uses_the_assigned_polyak_rate() -> None:
    learner = _learner(_agent(target_entropy_ratio=0.5))
    learner.target_update_rate = 0.05
    target0 = [p.detach().clone() for p in learner.agent.critic_target.parameters()]
    _steps(learner, 1)
    agent = learner.agent
    for t0, t1, c1 in zip(target0, agent.critic_target.parameters(), agent.critic.parameters(), strict=True):
        torch.testing.assert_close(t1, t0 + 0.05 * (c1.detach() - t0), atol=1e-7, rtol=0)
    # A deep copy keeps its own rate.
    other = copy.deepcopy(learner)
    other.target_update_rate = 0.5
    assert learner.target_update_rate == 0.05 and other.target_update_rate == 0.5


def test_target_update_rate_schedule_with_a_delayed_start() -> None:
    config = Config(
        target_update_rate=0.2,
        target_update_rate_final=0.02,
        target_update_anneal_start=20_000,
        target_update_anneal_steps=30_000,
    )
    assert config.target_update_rate_at(0) == config.target_update_rate_at(20_000) == 0.2
    assert config.target_update_rate_at(35_000) == pytest.approx(0.11, abs=1e-15)
    assert config.target_update_rate_at(50_000) == config.target_update_rate_at(10**9) == 0.02


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"target_update_rate_final": 0.0}, "target_update_rate_final must be in (0, 1]"),
        ({"target_update_rate_final": 1.5}, "target_update_rate_final must be in (0, 1]"),
        ({"target_update_anneal_steps": 0}, "target_update_anneal_steps must be >= 1"),
        ({"target_update_anneal_start": -1}, "target_update_anneal_start must be >= 0"),
        ({"alpha_max": 0.0}, "alpha_max must be > 0"),
        ({"alpha_max": float("nan")}, "alpha_max must be a finite number"),
        ({"alpha_max": 0.01, "alpha": 0.05}, "must not exceed alpha_max"),
        ({"alpha_min": 0.0}, "alpha_min must be > 0"),
        ({"alpha_min": float("inf")}, "alpha_min must be a finite number"),
        ({"alpha_min": 0.1, "alpha": 0.05}, "must not exceed alpha"),
    ],
)
def test_late_stability_fields_are_validated(fields: dict[str, float], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        Config(**fields).check()  # type: ignore[arg-type]
