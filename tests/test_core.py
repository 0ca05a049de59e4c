"""The agent's maths and the command line, checked against hand-computed values.

- critic target: expected SARSA with entropy, terminated vs truncated, computed by hand;
- one update moves actor and critic, and the targets by exactly the Polyak rate;
- replay buffer wrap-around;
- MultiDiscrete joint enumeration;
- train.py -> eval.py round trip, and every bad input's one-line error.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.buffer import ReplayBuffer
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.distributions import ActionSpec, UnsupportedSpaceError
from gumbel_ac.estimators import get_estimator
from gumbel_ac.losses import Batch, critic_target, make_optimizer, soft_state_value, update
from gumbel_ac.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def _tiny_agent(seed: int = 0, nvec: tuple[int, ...] = (3,)) -> Agent:
    torch.manual_seed(seed)
    agent = make_agent(obs_dim=2, spec=ActionSpec(nvec), hidden_sizes=(8,), alpha=0.3, target_entropy_ratio=0.5)
    # Give the action weights non-zero values so Q depends on the action.
    with torch.no_grad():
        agent.critic.w_act.normal_()
        agent.critic_target.load_state_dict(agent.critic.state_dict())
        agent.critic_target.w_obs.add_(0.1)  # target differs from online
    return agent


def test_critic_target_by_hand() -> None:
    agent = _tiny_agent()
    obs = torch.tensor([[0.1, -0.2], [0.5, 0.3], [1.0, 1.0]])
    next_obs = torch.tensor([[0.0, 0.4], [-0.3, 0.2], [0.7, -0.1]])
    reward = torch.tensor([1.0, -0.5, 2.0])
    terminated = torch.tensor([False, True, False])  # row 2 is "truncated": it bootstraps
    batch = Batch(obs, torch.tensor([[0], [1], [2]]), reward, next_obs, terminated)
    gamma, alpha = 0.9, torch.tensor(0.3)
    next_logits = agent.logits(next_obs).detach()
    y = critic_target(agent, next_logits, batch, gamma, alpha)

    expected = []
    for i in range(3):
        pi = torch.softmax(next_logits[i], -1)
        q = torch.stack(
            [
                torch.stack(
                    [agent.critic_target(next_obs[i : i + 1], torch.eye(3)[a : a + 1])[c, 0] for a in range(3)]
                )
                for c in range(2)
            ]
        ).min(0).values
        v = sum(float(pi[a]) * (float(q[a]) - 0.3 * math.log(float(pi[a]))) for a in range(3))
        expected.append(float(reward[i]) + (0.0 if bool(terminated[i]) else gamma * v))
    assert torch.allclose(y, torch.tensor(expected), atol=1e-5)
    assert y[1].item() == pytest.approx(-0.5)  # terminated: no bootstrap at all


def test_soft_value_is_finite_with_masked_actions() -> None:
    agent = _tiny_agent()
    logits = torch.tensor([[0.0, -math.inf, 1.0]])
    q = torch.tensor([[1.0, 5.0, 2.0]])
    v = soft_state_value(agent, logits, q, torch.tensor(0.5))
    p = torch.softmax(torch.tensor([0.0, 1.0]), -1)
    expected = float(p[0] * (1.0 - 0.5 * math.log(p[0])) + p[1] * (2.0 - 0.5 * math.log(p[1])))
    assert torch.isfinite(v).all()
    assert v.item() == pytest.approx(expected, rel=1e-5)


def test_all_actions_matches_single_action_critic() -> None:
    agent = _tiny_agent(nvec=(2, 3))
    obs = torch.randn(4, 2)
    q_all = agent.critic.all_actions(obs, agent.spec.joint_onehot_JK)
    for j in range(agent.spec.num_joint):
        a = agent.spec.joint_onehot_JK[j].expand(4, -1)
        assert torch.allclose(q_all[:, :, j], agent.critic(obs, a), atol=1e-6)


@pytest.mark.parametrize("estimator", ["gumbel-st", "score", "exact", "gumbel-soft"])
def test_update_moves_parameters_and_polyak(estimator: str) -> None:
    agent = _tiny_agent()
    optimizer, flat = make_optimizer(agent, actor_lr=1e-2, critic_lr=1e-2, alpha_lr=1e-2, autotune_alpha=True)
    actor0 = [p.detach().clone() for p in agent.actor.parameters()]
    critic0 = [p.detach().clone() for p in agent.critic.parameters()]
    target0 = [p.detach().clone() for p in agent.critic_target.parameters()]
    alpha0 = agent.log_alpha.detach().clone()
    gen = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(16, 2), torch.randint(0, 3, (16, 1)), torch.randn(16), torch.randn(16, 2), torch.zeros(16, dtype=torch.bool))
    rate = 0.25
    stats = update(
        agent, optimizer, flat, batch, get_estimator(estimator),
        gamma=0.99, tau=0.5, target_update_rate=rate, autotune_alpha=True, generator=gen,
    )
    assert stats.nonfinite.item() == 0
    assert any(not torch.equal(a, p) for a, p in zip(actor0, agent.actor.parameters()))
    assert any(not torch.equal(c, p) for c, p in zip(critic0, agent.critic.parameters()))
    assert not torch.equal(alpha0, agent.log_alpha.detach())
    # Polyak: target' = target + rate * (critic' - target), with critic' the updated critic.
    for t0, t1, c1 in zip(target0, agent.critic_target.parameters(), agent.critic.parameters()):
        assert torch.allclose(t1, t0 + rate * (c1.detach() - t0), atol=1e-6)


def test_update_skips_nonfinite_gradient() -> None:
    agent = _tiny_agent()
    optimizer, flat = make_optimizer(agent, actor_lr=1e-2, critic_lr=1e-2, alpha_lr=1e-2, autotune_alpha=True)
    batch = Batch(torch.randn(8, 2), torch.randint(0, 3, (8, 1)), torch.full((8,), math.nan), torch.randn(8, 2), torch.zeros(8, dtype=torch.bool))
    stats = update(agent, optimizer, flat, batch, get_estimator("gumbel-st"), gamma=0.99, tau=0.5,
                   target_update_rate=0.1, autotune_alpha=True, generator=None)
    assert stats.nonfinite.item() == 1
    assert all(torch.isfinite(p).all() for p in agent.parameters())


def test_replay_buffer_wraps_and_samples() -> None:
    buf = ReplayBuffer(5, obs_dim=1, num_heads=1, device="cpu")
    for start in (0, 3, 6):
        obs = torch.arange(start, start + 3, dtype=torch.float32).unsqueeze(-1)
        buf.add(obs, torch.zeros(3, 1, dtype=torch.long), obs.squeeze(-1), obs + 1, torch.zeros(3, dtype=torch.bool))
    assert len(buf) == 5
    assert sorted(buf.obs_CD.squeeze(-1).tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]
    state = buf.state_dict()
    assert state["obs"].squeeze(-1).tolist() == [4.0, 5.0, 6.0, 7.0, 8.0]  # oldest first
    batch = buf.sample(64, torch.Generator().manual_seed(0))
    assert torch.equal(batch.next_obs_BD, batch.obs_BD + 1)
    assert torch.equal(batch.reward_B, batch.obs_BD.squeeze(-1))
    # A NEXT_STEP mask drops the rows that are not transitions.
    buf2 = ReplayBuffer(10, obs_dim=1, num_heads=1, device="cpu")
    obs = torch.arange(4, dtype=torch.float32).unsqueeze(-1)
    buf2.add(obs, torch.zeros(4, 1, dtype=torch.long), obs.squeeze(-1), obs, torch.zeros(4, dtype=torch.bool),
             valid_N=torch.tensor([True, False, True, False]))
    assert len(buf2) == 2 and buf2.obs_CD[:2].squeeze(-1).tolist() == [0.0, 2.0]


def test_action_spec_refuses_unsupported_spaces() -> None:
    with pytest.raises(UnsupportedSpaceError, match="Box"):
        ActionSpec.from_space(gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(UnsupportedSpaceError, match="joint actions"):
        ActionSpec((100, 100))
    spec = ActionSpec.from_space(gym.spaces.MultiDiscrete([2, 3]))
    assert spec.num_joint == 6 and spec.num_logits == 5
    assert spec.joint_onehot_JK.sum(-1).tolist() == [2.0] * 6


def test_config_validation_messages() -> None:
    cases = {
        "gumbel_temperature": (0.0, "gumbel_temperature must be > 0"),
        "critic_lr": (-1e-3, "critic_lr must be > 0"),
        "gamma": (1.5, "gamma must be in"),
        "num_envs": (0, "num_envs must be >= 1"),
        "estimator": ("nope", "unknown estimator 'nope'"),
    }
    for field, (value, message) in cases.items():
        cfg = Config(**{field: value})
        with pytest.raises(ConfigError, match=message):
            cfg.validate()


def test_train_in_process_writes_run(tmp_path: Path) -> None:
    cfg = Config(total_steps=800, learning_starts=200, eval_every=400, log_every=200, checkpoint_every=400,
                 final_eval_episodes=2, eval_episodes=2, progress=False, runs_dir=str(tmp_path), run_name="r")
    result = train(cfg)
    run = tmp_path / "r"
    assert (run / "config.json").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["global_step"] for r in rows if "charts/sps" in r]
    assert steps == sorted(steps) and steps[-1] == 800
    assert any("losses/critic" in r for r in rows)
    assert len(list((run / "checkpoints").iterdir())) == 2
    assert np.isfinite(result.final_mean)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WANDB_MODE="offline", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_train_then_eval_and_errors(tmp_path: Path) -> None:
    proc = _run([str(ROOT / "train.py"), "--total-steps", "600", "--learning-starts", "200", "--eval-every", "0",
                 "--final-eval-episodes", "2", "--no-progress", "--runs-dir", str(tmp_path), "--run-name", "cli",
                 "--track"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli" / "wandb").is_dir()  # offline wandb run written, no network needed
    run_dir = tmp_path / "cli"

    ok = _run([str(ROOT / "eval.py"), str(run_dir), "--episodes", "3", "--seed", "1", "--stochastic"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "over 3 stochastic episodes" in ok.stdout and "±" in ok.stdout

    def error_of(args: list[str]) -> str:
        p = _run(args, tmp_path)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        lines = [ln for ln in p.stderr.strip().splitlines() if ln]
        assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
        return lines[0]

    assert "no such file" in error_of([str(ROOT / "eval.py"), str(tmp_path / "missing")])
    assert "does not match" in error_of([str(ROOT / "eval.py"), str(run_dir), "--env", "Acrobot-v1"])
    assert "unknown env id" in error_of([str(ROOT / "train.py"), "--env", "CartPol-v1", "--runs-dir", str(tmp_path)])
    assert "is not supported" in error_of([str(ROOT / "train.py"), "--env", "Pendulum-v1", "--runs-dir", str(tmp_path)])
    assert "gumbel_temperature must be > 0" in error_of([str(ROOT / "train.py"), "--gumbel-temperature", "0"])
    assert "actor_lr must be > 0" in error_of([str(ROOT / "train.py"), "--actor-lr", "-0.1"])
    # A corrupted checkpoint: flip a byte of the weights.
    ckpt = sorted((run_dir / "checkpoints").iterdir())[-1]
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    assert "checksum mismatch" in error_of([str(ROOT / "eval.py"), str(run_dir)])
    # Not ours at all.
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "meta.json").write_text('{"hello": 1}')
    assert "not a gumbel_ac checkpoint" in error_of([str(ROOT / "eval.py"), str(tmp_path / "junk")])


def test_eval_writes_gif(tmp_path: Path) -> None:
    cfg = Config(total_steps=300, learning_starts=100, eval_every=0, final_eval_episodes=0, progress=False,
                 runs_dir=str(tmp_path), run_name="g")
    train(cfg)
    proc = _run([str(ROOT / "eval.py"), str(tmp_path / "g"), "--episodes", "1", "--gif", str(tmp_path / "ep.gif")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = (tmp_path / "ep.gif").read_bytes()
    assert data[:6] in (b"GIF87a", b"GIF89a") and len(data) > 1000


def test_discrete_observations_are_one_hot(tmp_path: Path) -> None:
    cfg = Config(env="FrozenLake-v1", total_steps=400, learning_starts=100, eval_every=0, final_eval_episodes=2,
                 eval_episodes=2, progress=False, runs_dir=str(tmp_path), run_name="fl")
    result = train(cfg)
    meta = json.loads(next((tmp_path / "fl" / "checkpoints").iterdir()).joinpath("meta.json").read_text())
    assert meta["obs_dim"] == 16 and meta["spaces"]["observation_space"]["type"] == "Discrete"
    assert 0.0 <= result.final_mean <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_solved_with_defaults(tmp_path: Path, seed: int) -> None:
    """The issue's bar: default config reaches a 20-episode deterministic eval >= 475."""
    cfg = Config(seed=seed, progress=False, runs_dir=str(tmp_path), run_name=f"s{seed}")
    result = train(cfg)
    assert max(e.mean for e in result.evals) >= 475.0
    assert result.final_mean >= 475.0


def test_track_without_wandb_login_is_one_clear_error(tmp_path: Path) -> None:
    """No WANDB_MODE and no API key: a one-line error naming the fixes, not a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), WANDB_CONFIG_DIR=str(tmp_path / "cfg"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--track", "--total-steps", "100", "--no-progress",
         "--runs-dir", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "WANDB_MODE=offline" in lines[0], proc.stderr


class _NaNRewardEnv(gym.Env):
    """A one-state env whose reward is NaN: every update's loss is non-finite."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: int):  # type: ignore[override]
        return np.zeros(2, np.float32), float("nan"), False, False, {}


def test_repeated_nonfinite_updates_stop_training_clearly(tmp_path: Path) -> None:
    from gumbel_ac.trainer import TrainingError

    if "test/NaNReward-v0" not in gym.registry:
        gym.register("test/NaNReward-v0", entry_point=_NaNRewardEnv, max_episode_steps=20)
    cfg = Config(env="test/NaNReward-v0", num_envs=2, total_steps=400, learning_starts=20, batch_size=8,
                 log_every=40, eval_every=0, final_eval_episodes=0, max_nonfinite_updates=5, progress=False,
                 runs_dir=str(tmp_path), run_name="nan")
    with pytest.raises(TrainingError, match="consecutive updates had a non-finite loss"):
        train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("charts/nonfinite_updates") == 1.0 for r in rows)  # counted, every update skipped


def test_help_lists_every_field_with_reflowed_text(tmp_path: Path) -> None:
    import dataclasses

    env = dict(os.environ, COLUMNS="250", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for field in dataclasses.fields(Config):
        assert f"--{field.name.replace('_', '-')}" in proc.stdout, field.name
    # Docstrings wrapped in config.py read as one sentence in --help.
    assert "or one of our batched torch envs" in proc.stdout


class _TwoHeadEnv(gym.Env):
    """MultiDiscrete([2, 3]): reward 1 when head 0 picks 1 and head 1 picks 2, else 0."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):  # type: ignore[override]
        a = np.asarray(action)
        assert a.shape == (2,) and 0 <= a[0] < 2 and 0 <= a[1] < 3
        return np.zeros(3, np.float32), float(a[0] == 1 and a[1] == 2), False, False, {}


def test_multidiscrete_heads_learn_the_joint_action(tmp_path: Path) -> None:
    if "test/TwoHead-v0" not in gym.registry:
        gym.register("test/TwoHead-v0", entry_point=_TwoHeadEnv, max_episode_steps=10)
    cfg = Config(env="test/TwoHead-v0", num_envs=4, total_steps=3000, learning_starts=200, batch_size=64,
                 log_every=500, eval_every=0, final_eval_episodes=4, eval_episodes=4, progress=False,
                 runs_dir=str(tmp_path), run_name="md", gamma=0.9)
    result = train(cfg)
    assert result.final_mean == pytest.approx(10.0)  # the (1, 2) action every step
    from gumbel_ac.checkpoint import load_run

    run = load_run(tmp_path / "md")
    assert run.agent.spec.nvec == (2, 3)
    assert run.agent.act(torch.zeros(5, 3), deterministic=True).tolist() == [[1, 2]] * 5
