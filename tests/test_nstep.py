"""n-step returns: the writer's rows against a brute-force reference, the target's per-row
discount, checkpoints of the pending steps, SB3's NStepReplayBuffer through GumbelAC."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from run_cases import assert_resumed_run_equals_whole

import gumbel_ac.envs  # noqa: F401  (registers the gumbel_ac/ env ids)
from gumbel_ac.agent import make_agent
from gumbel_ac.buffer import ReplayBuffer, SharedObsReplayBuffer
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.losses import Batch, critic_target


def _script(num_envs: int, steps: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Vector steps of ``num_envs`` envs in NEXT_STEP form: episodes of random length that end
    by termination or truncation, each followed by one reset step (``valid`` False). Every
    observation is unique (``[env, counter]``), so rows can be matched exactly."""
    rng = random.Random(seed)
    left = [rng.randint(1, 6) for _ in range(num_envs)]
    resetting = [False] * num_envs
    counter = [0] * num_envs
    out = []
    for _ in range(steps):
        row: dict[str, list] = {k: [] for k in ("obs", "action", "reward", "next", "term", "trunc", "valid")}
        for e in range(num_envs):
            obs = [float(e), float(counter[e])]
            counter[e] += 1
            nxt = [float(e), float(counter[e])]
            if resetting[e]:
                row["valid"].append(False)
                row["term"].append(False)
                row["trunc"].append(False)
                resetting[e] = False
                left[e] = rng.randint(1, 6)
            else:
                left[e] -= 1
                end = left[e] == 0
                kind = rng.random() < 0.5
                row["valid"].append(True)
                row["term"].append(end and kind)
                row["trunc"].append(end and not kind)
                resetting[e] = end
            row["obs"].append(obs)
            row["next"].append(nxt)
            row["action"].append([rng.randint(0, 3)])
            row["reward"].append(rng.uniform(-1.0, 1.0))
        out.append(
            {
                "obs": torch.tensor(row["obs"]),
                "action": torch.tensor(row["action"]),
                "reward": torch.tensor(row["reward"]),
                "next": torch.tensor(row["next"]),
                "term": torch.tensor(row["term"]),
                "trunc": torch.tensor(row["trunc"]),
                "valid": torch.tensor(row["valid"]),
            }
        )
    return out


def _reference(script: list[dict[str, torch.Tensor]], n: int, gamma: float) -> list[tuple]:
    """Every complete n-step row, computed per env from its list of transitions."""
    rows = []
    num_envs = script[0]["obs"].shape[0]
    for e in range(num_envs):
        episode: list[tuple] = []
        trans = [
            (
                s["obs"][e],
                int(s["action"][e, 0]),
                float(s["reward"][e]),
                s["next"][e],
                bool(s["term"][e]),
                bool(s["trunc"][e]),
            )
            for s in script
            if s["valid"][e]
        ]
        for t in trans:
            episode.append(t)
            ends = t[4] or t[5]
            # Rows whose window is complete: n steps on, or the episode ended.
            for i in range(len(episode)):
                k = len(episode) - i
                if k == n or (ends and k < n):
                    ret = sum(gamma**j * episode[i + j][2] for j in range(k))
                    rows.append(
                        (tuple(episode[i][0].tolist()), episode[i][1], ret, tuple(t[3].tolist()), t[4], gamma**k)
                    )
            if ends:
                episode = []
    return rows


@pytest.mark.parametrize("n", [2, 3, 5])
def test_nstep_rows_match_a_per_episode_reference(n: int) -> None:
    gamma, script = 0.9, _script(num_envs=3, steps=40, seed=n)
    buf = ReplayBuffer(1000, obs_dim=2, num_heads=1, device="cpu", n_step=n, gamma=gamma)
    for s in script:
        buf.add(s["obs"], s["action"], s["reward"], s["next"], s["term"], s["valid"], s["trunc"])
    # Each observation is unique, so rows pair up by it; returns are float32 sums.
    got = {
        tuple(buf.obs_CD[i].tolist()): (
            int(buf.action_CH[i, 0]),
            float(buf.reward_C[i]),
            tuple(buf.next_obs_CD[i].tolist()),
            bool(buf.terminated_C[i]),
            float(buf.discount_C[i]),
        )
        for i in range(buf.size)
    }
    want = {o: (a, r, nx, d, g) for o, a, r, nx, d, g in _reference(script, n, gamma)}
    assert len(want) > 30 and buf.size == len(want) and got.keys() == want.keys()
    for key, (a, r, nx, d, g) in want.items():
        ga, gr, gnx, gd, gg = got[key]
        assert (ga, gnx, gd) == (a, nx, d), key
        assert gr == pytest.approx(r, abs=1e-5) and gg == pytest.approx(g, rel=1e-6), key
    # Every row of a finished window has a discount gamma^k with 1 <= k <= n.
    ks = {round(math.log(float(x)) / math.log(gamma)) for x in buf.discount_C[: buf.size]}
    assert ks <= set(range(1, n + 1)) and n in ks


def test_nstep_drops_a_nonfinite_row_with_its_envs_pending_steps() -> None:
    buf = ReplayBuffer(100, obs_dim=1, num_heads=1, device="cpu", n_step=3, gamma=1.0)
    one = torch.ones(2, 1)
    f = torch.zeros(2, dtype=torch.bool)
    act = torch.zeros(2, 1, dtype=torch.long)
    buf.add(one, act, torch.tensor([1.0, 1.0]), one, f)
    dropped = buf.add(one, act, torch.tensor([float("nan"), 1.0]), one, f)
    assert int(dropped) == 1
    buf.add(one, act, torch.tensor([1.0, 1.0]), one, f)
    # Env 1 completed its first 3-step row (return 3); env 0's chain was cut by the NaN.
    assert buf.size == 1 and float(buf.reward_C[0]) == 3.0 and torch.isfinite(buf.reward_C[:1]).all()


def test_nstep_pending_steps_survive_a_checkpoint_and_resume_identically() -> None:
    gamma, script = 0.95, _script(num_envs=2, steps=30, seed=7)
    whole = ReplayBuffer(200, obs_dim=2, num_heads=1, device="cpu", n_step=4, gamma=gamma)
    first = ReplayBuffer(200, obs_dim=2, num_heads=1, device="cpu", n_step=4, gamma=gamma)
    for i, s in enumerate(script):
        args = (s["obs"], s["action"], s["reward"], s["next"], s["term"], s["valid"], s["trunc"])
        whole.add(*args)
        if i < 13:
            first.add(*args)
    state = first.state_dict()
    assert {"pending_obs", "pending_slot", "discount"} <= set(state)
    resumed = ReplayBuffer(200, obs_dim=2, num_heads=1, device="cpu", n_step=4, gamma=gamma)
    resumed.load_state_dict(state)
    for s in script[13:]:
        resumed.add(s["obs"], s["action"], s["reward"], s["next"], s["term"], s["valid"], s["trunc"])
    assert resumed.size == whole.size and resumed.pos == whole.pos
    for key, col in whole.state_dict().items():
        if isinstance(col, torch.Tensor):
            assert torch.equal(col, resumed.state_dict()[key]), key
    # A one-step buffer refuses an n-step state (and the other way round), naming the cause.
    with pytest.raises(ValueError, match="unexpected entries"):
        ReplayBuffer(200, obs_dim=2, num_heads=1, device="cpu").load_state_dict(state)
    one_step = ReplayBuffer(200, obs_dim=2, num_heads=1, device="cpu")
    s = script[0]
    one_step.add(s["obs"], s["action"], s["reward"], s["next"], s["term"], s["valid"], s["trunc"])
    with pytest.raises(ValueError, match="n_step"):
        ReplayBuffer(200, obs_dim=2, num_heads=1, device="cpu", n_step=4, gamma=gamma).load_state_dict(
            one_step.state_dict()
        )


def test_critic_target_uses_each_rows_discount() -> None:
    torch.manual_seed(0)
    agent = make_agent(obs_dim=3, spec=ActionSpec((2,)), hidden_sizes=(8,), alpha=0.1, target_entropy_ratio=0.5)
    with torch.no_grad():
        agent.critic_target.w_act.normal_()  # Q depends on the action
    obs, nxt = torch.randn(4, 3), torch.randn(4, 3)
    action = torch.zeros(4, 1, dtype=torch.long)
    reward, term = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([False, False, True, False])
    alpha = torch.tensor(0.1)
    logits = agent.logits(nxt).detach()
    one = critic_target(agent, logits, Batch(obs, action, reward, nxt, term), 0.9, alpha)
    disc = torch.tensor([0.9, 0.81, 0.729, 0.6561])
    many = critic_target(agent, logits, Batch(obs, action, reward, nxt, term, disc), 0.9, alpha)
    v_next = (one - reward) / 0.9  # the one-step target's bootstrap, 0 where terminated
    torch.testing.assert_close(many, reward + disc * v_next)
    assert float(many[2]) == 3.0  # terminated: no bootstrap whatever the discount


def test_nstep_is_refused_where_it_cannot_apply() -> None:
    with pytest.raises(ValueError, match="n_step=1"):
        SharedObsReplayBuffer(64, 4, 1, "cpu", n_step=3, gamma=0.99)
    with pytest.raises(ConfigError, match="n_step must be in"):
        Config(n_step=0).validate()
    with pytest.raises(ConfigError, match="count bonus"):
        Config(n_step=3, count_bonus=1.0).validate()


def test_sb3_gumbel_ac_trains_with_nstep_discounts() -> None:
    import gymnasium as gym
    from stable_baselines3.common.buffers import NStepReplayBuffer

    from gumbel_ac.sb3 import GumbelAC

    model = GumbelAC("MlpPolicy", gym.make("CartPole-v1"), n_steps=3, learning_starts=64, batch_size=32, seed=0)
    assert isinstance(model.replay_buffer, NStepReplayBuffer)
    seen: list[torch.Tensor | None] = []
    step = model.learner.step

    def spy(batch: Batch, **kwargs: object) -> object:
        seen.append(batch.discount_B)
        return step(batch, **kwargs)  # type: ignore[arg-type]

    model.learner.step = spy  # type: ignore[method-assign]
    model.learn(200)
    assert seen and all(d is not None for d in seen)
    values = torch.cat([d for d in seen if d is not None])
    gamma = model.gamma
    # SB3 cuts a window at an episode's end: discounts are gamma, gamma^2 or gamma^3.
    assert set(torch.round(values.double().log() / math.log(gamma)).long().tolist()) <= {1, 2, 3}
    assert model.to_config().n_step == 3


def test_nstep_run_resumed_from_a_checkpoint_equals_the_whole_run(tmp_path: Path) -> None:
    """On our torch CartPole every piece of state is restorable: a 3-step run stopped at its
    end and resumed for longer must equal the longer run bit for bit (pending steps included)."""
    assert_resumed_run_equals_whole(
        tmp_path, env="gumbel_ac/CartPole-v1", preset="auto", eval_episodes=2, final_eval_episodes=2, n_step=3
    )
    assert json.loads((tmp_path / "ref" / "config.json").read_text())["n_step"] == 3
