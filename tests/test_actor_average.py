"""The averaged actor (``Config.actor_average_rate``): its Polyak update by hand, that it changes
what is evaluated and deployed but not what is learned, and that it travels through checkpoints,
resume, eval.py and SB3 export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from critic_cases import three_row_batch
from run_cases import assert_resumed_run_equals_whole, tiny_config
from safetensors.torch import load_file

from gumbel_ac.agent import make_agent
from gumbel_ac.checkpoint import list_checkpoints, load_run
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.encoders import DetachedEncoder
from gumbel_ac.evaluation import evaluate
from gumbel_ac.learner import Learner, make_estimator
from gumbel_ac.logger import read_metrics, without_wall_clock
from gumbel_ac.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def _learner(rate: float | None) -> Learner:
    torch.manual_seed(0)
    agent = make_agent(
        obs_dim=2, spec=ActionSpec((3,)), hidden_sizes=(8,), alpha=0.3, target_entropy_ratio=0.5,
        actor_average=rate is not None,
    )  # fmt: skip
    return Learner(
        agent,
        estimator=make_estimator("gumbel-st"),
        actor_lr=1e-2,
        critic_lr=1e-2,
        alpha_lr=1e-2,
        autotune_alpha=True,
        gamma=0.9,
        target_update_rate=0.5,
        actor_average_rate=rate,
    )


def _actor_vector(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def test_the_average_moves_by_the_rate_toward_the_actor_after_every_step() -> None:
    rate = 0.25
    learner = _learner(rate)
    agent = learner.agent
    assert agent.actor_average is not None
    assert torch.equal(_actor_vector(agent.actor_average), _actor_vector(agent.actor))  # starts equal
    assert not any(p.requires_grad for p in agent.actor_average.parameters())
    batch = three_row_batch()
    for _ in range(3):
        before = _actor_vector(agent.actor_average)
        learner.step(batch, temperature=0.6)
        actor = _actor_vector(agent.actor)
        by_hand = before + rate * (actor - before)
        torch.testing.assert_close(_actor_vector(agent.actor_average), by_hand, rtol=0, atol=1e-7)
        assert not torch.equal(actor, before)  # the actor moved, so this checks something
    # Not among the trained parameters: the optimizer's buffer holds actor, critic and alpha only.
    trained = sum(p.numel() for p in agent.actor.parameters()) + sum(p.numel() for p in agent.critic.parameters())
    assert learner.flat_param.numel() == trained + 1


def test_rate_one_keeps_the_average_equal_to_the_actor() -> None:
    learner = _learner(1.0)
    assert learner.agent.actor_average is not None
    for _ in range(2):
        learner.step(three_row_batch(), temperature=0.6)
        assert torch.equal(_actor_vector(learner.agent.actor_average), _actor_vector(learner.agent.actor))


def test_the_average_does_not_change_the_learning_step() -> None:
    plain, averaged = _learner(None), _learner(0.1)
    for i in range(3):  # the same Gumbel noise for both
        a = plain.step(three_row_batch(), temperature=0.6, generator=torch.Generator().manual_seed(i))
        b = averaged.step(three_row_batch(), temperature=0.6, generator=torch.Generator().manual_seed(i))
        assert torch.equal(a.as_tensor(), b.as_tensor())
    assert torch.equal(plain.flat_param, averaged.flat_param)


def test_averaged_acting_uses_the_averaged_actor() -> None:
    agent = _learner(0.1).agent
    assert agent.actor_average is not None
    obs = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        agent.actor_average.net[-1].bias.copy_(torch.tensor([0.0, 50.0, 0.0]))  # always action 1
        agent.actor.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 50.0]))  # always action 2
    assert torch.equal(agent.act(obs, deterministic=True, averaged=True), torch.ones(64, 1, dtype=torch.long))
    assert torch.equal(agent.act(obs, deterministic=True), torch.full((64, 1), 2))
    # Without an averaged actor, averaged=True is the actor itself.
    plain = _learner(None).agent
    assert torch.equal(plain.act(obs, deterministic=True, averaged=True), plain.act(obs, deterministic=True))


def test_a_shared_encoder_is_read_not_copied() -> None:
    agent = make_agent(
        obs_dim=4 * 10 * 10, spec=ActionSpec((3,)), hidden_sizes=(16,), alpha=0.3, target_entropy_ratio=0.5,
        encoder="minatar", image_shape=(4, 10, 10), share_encoder=True, actor_average=True,
    )  # fmt: skip
    assert agent.actor_average is not None
    encoder = agent.actor_average.encoder
    assert isinstance(encoder, DetachedEncoder) and encoder.source is agent.critic.encoder
    assert sum(p.numel() for p in agent.actor_average.parameters()) == sum(p.numel() for p in agent.actor.parameters())


def test_rate_and_averaged_actor_must_go_together() -> None:
    agent = make_agent(obs_dim=2, spec=ActionSpec((3,)), hidden_sizes=(8,), alpha=0.3, target_entropy_ratio=0.5)
    with pytest.raises(ValueError, match="actor_average_rate and the agent's averaged actor go together"):
        Learner.from_config(agent, Config(actor_average_rate=0.01).validate())


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_bad_rates_are_config_errors(bad: float) -> None:
    with pytest.raises(ConfigError, match="actor_average_rate must be (in|a finite number)"):
        Config(actor_average_rate=bad).validate()


def test_a_run_learns_the_same_and_evaluates_the_average(tmp_path: Path) -> None:
    """Same seed with and without the average: identical online weights and training logs (the
    average changes no update and draws no random number); the saved averaged actor differs
    from the actor, and eval.py and SB3 export act with it."""
    train(tiny_config(tmp_path, total_steps=1600, run_name="plain"))
    train(tiny_config(tmp_path, total_steps=1600, run_name="avg", actor_average_rate=0.01))
    plain = load_file(list_checkpoints(tmp_path / "plain")[-1] / "model.safetensors")
    avg = load_file(list_checkpoints(tmp_path / "avg")[-1] / "model.safetensors")
    assert set(avg) == set(plain) | {k.replace("actor.", "actor_average.", 1) for k in plain if k.startswith("actor.")}
    assert all(torch.equal(plain[k], avg[k]) for k in plain)
    assert not torch.equal(avg["actor_average.net.0.weight"], avg["actor.net.0.weight"])

    def train_rows(run: str) -> list[dict[str, object]]:
        """The logged training rows (losses, alpha, entropy, ...), wall clock and evaluations aside."""
        rows = without_wall_clock(read_metrics(tmp_path / run / "metrics.jsonl"))
        return [{k: v for k, v in r.items() if not k.startswith("eval/")} for r in rows]

    rows = train_rows("plain")
    assert sum("losses/actor" in r for r in rows) >= 3 and rows == train_rows("avg")

    loaded = load_run(tmp_path / "avg")
    assert loaded.config.actor_average_rate == 0.01 and loaded.agent.actor_average is not None
    assert torch.equal(loaded.agent.actor_average.net[0].weight, avg["actor_average.net.0.weight"])

    # Evaluation (the trainer's and eval.py's) runs the averaged actor, never the actor itself.
    calls = {"actor": 0, "actor_average": 0}
    for name in calls:
        module = getattr(loaded.agent, name)
        module.register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
    evaluate(loaded.agent, loaded.config.env, episodes=2, seed=0)
    assert calls["actor"] == 0 and calls["actor_average"] > 0

    out = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), str(tmp_path / "avg"), "--episodes", "2", "--device", "cpu"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert out.returncode == 0, out.stderr
    assert "the averaged actor, rate 0.01" in out.stdout  # it says which policy it evaluated

    from gumbel_ac.sb3.interop import from_checkpoint

    model = from_checkpoint(tmp_path / "avg", device="cpu")
    sb3_actor = model.policy.agent.actor.state_dict()
    for key, value in loaded.agent.actor_average.state_dict().items():
        assert torch.equal(sb3_actor[key], value)
    assert model.policy.agent.actor_average is None


def test_resume_with_the_average_is_bit_identical(tmp_path: Path) -> None:
    assert_resumed_run_equals_whole(tmp_path, actor_average_rate=0.05)
