"""Image observations: layout detection, uint8 rows, the convolutional encoders, gradient
routing through them, checkpoints and the memory budget."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from gumbel_ac import budget
from gumbel_ac.agent import Agent
from gumbel_ac.buffer import ReplayBuffer, SharedObsReplayBuffer
from gumbel_ac.checkpoint import CheckpointError, load_run
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.encoders import FlatEncoder, MinAtarEncoder, NatureEncoder, make_encoder, resolve_kind
from gumbel_ac.losses import Batch, actor_loss, critic_loss
from gumbel_ac.trainer import train
from gumbel_ac.vector import ObsEncoder, image_layout


def _box(shape: tuple[int, ...], dtype: type = np.uint8, high: int = 255) -> gym.spaces.Box:
    return gym.spaces.Box(0, high, shape=shape, dtype=dtype)


def test_image_layout_detection() -> None:
    assert image_layout(_box((4, 84, 84))) == ((4, 84, 84), False)  # Atari frame stack
    assert image_layout(gym.spaces.Box(0, 1, (10, 10, 4), bool)) == ((4, 10, 10), True)  # minatar
    assert image_layout(gym.spaces.Box(0, 1, (10, 10, 10), bool)) == ((10, 10, 10), True)  # tie: HWC
    assert image_layout(_box((10, 10, 10), high=1), layout="CHW") == ((10, 10, 10), False)
    assert image_layout(_box((84, 84, 3))) == ((3, 84, 84), True)
    assert image_layout(gym.spaces.Box(0.0, 1.0, (4, 84, 84), np.float32)) is None  # float: not pixels
    assert image_layout(_box((128,))) is None  # Atari RAM
    with pytest.raises(ValueError, match="layout"):
        image_layout(_box((4, 84, 84)), layout="NHWC")


def test_obs_encoder_rows_are_channel_first_uint8() -> None:
    space = gym.spaces.Box(0, 1, (3, 5, 2), bool)  # H=3, W=5, C=2 (channels last)
    enc = ObsEncoder(space)
    assert enc.kind == "image" and enc.image_shape == (2, 3, 5) and enc.pixel_scale == 1.0
    obs = torch.rand(4, 3, 5, 2) > 0.5
    rows = enc(obs)
    assert rows.dtype == torch.uint8 and rows.shape == (4, 30)
    n, h, w, c = 1, 2, 4, 1  # element [n, h, w, c] sits at c*H*W + h*W + w of row n
    assert rows[n, c * 15 + h * 5 + w] == int(obs[n, h, w, c])
    assert torch.equal(rows.reshape(4, 2, 3, 5), obs.permute(0, 3, 1, 2).to(torch.uint8))
    atari = ObsEncoder(_box((4, 84, 84)))
    assert atari.pixel_scale == 1 / 255 and atari.dtype == torch.uint8
    ram = ObsEncoder(_box((128,)))  # uint8 vectors stay scaled floats (SB3's habit)
    assert ram.kind == "box" and ram(torch.full((1, 128), 255, dtype=torch.uint8)).max().item() == 1.0


def test_resolve_kind() -> None:
    assert resolve_kind("auto", None) == "mlp"
    assert resolve_kind("auto", (4, 84, 84)) == "nature"
    assert resolve_kind("auto", (4, 10, 10)) == "minatar"
    assert resolve_kind("mlp", (4, 10, 10)) == "mlp"
    with pytest.raises(ValueError, match="needs image observations"):
        resolve_kind("minatar", None)
    with pytest.raises(ValueError, match="at least 36x36"):
        resolve_kind("nature", (4, 10, 10))


def test_encoder_shapes_and_scaling() -> None:
    nature = NatureEncoder((4, 84, 84))
    assert nature.flat_dim == 64 * 7 * 7 and nature.out_dim == 512
    assert nature(torch.zeros(2, 4 * 84 * 84, dtype=torch.uint8)).shape == (2, 512)
    minatar = MinAtarEncoder((4, 10, 10))
    assert minatar.out_dim == 16 * 8 * 8
    x = torch.randint(0, 2, (3, 400), dtype=torch.uint8)
    assert torch.equal(minatar(x), minatar(x.float()))  # uint8 rows convert exactly
    flat = FlatEncoder(6, scale=1 / 255)
    assert torch.equal(flat(torch.full((1, 6), 255, dtype=torch.uint8)), torch.ones(1, 6))
    floats = torch.randn(2, 6)
    assert flat(floats) is floats  # float rows pass through untouched
    with pytest.raises(ValueError, match="image shape"):
        make_encoder("minatar", 401, (4, 10, 10), 1.0)


def _image_agent() -> Agent:
    torch.manual_seed(0)
    return Agent(
        4 * 10 * 10, ActionSpec.from_space(gym.spaces.Discrete(3)), (32,), encoder="minatar", image_shape=(4, 10, 10)
    )


def _image_batch(batch: int = 8) -> Batch:
    g = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 2, (batch, 400), generator=g, dtype=torch.uint8)
    return Batch(
        obs_BD=obs,
        action_BH=torch.randint(0, 3, (batch, 1), generator=g),
        reward_B=torch.rand(batch, generator=g),
        next_obs_BD=obs.roll(1, 0),
        terminated_B=torch.zeros(batch, dtype=torch.bool),
    )


def test_each_loss_reaches_only_its_own_encoder() -> None:
    """The critic loss trains the critic's encoder, the actor loss the actor's (never the
    critic's: the objective reads detached features), as SB3's separate extractors do."""
    agent, batch = _image_agent(), _image_batch()
    assert agent.actor.encoder is not agent.critic.encoder
    loss, _ = critic_loss(agent, batch, torch.zeros(8))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.critic.encoder.parameters())
    assert all(p.grad is None for p in agent.actor.parameters())
    agent.zero_grad(set_to_none=True)
    with torch.no_grad():  # give Q a dependence on the action (w_act starts at zero)
        agent.critic.w_act.normal_()
    from gumbel_ac.estimators import get_estimator

    logits = agent.actor(batch.obs_BD)
    a_loss, _ = actor_loss(
        agent, batch.obs_BD, logits, get_estimator("gumbel-st"), tau=1.0, alpha=torch.tensor(0.1), generator=None
    )
    a_loss.backward()
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.encoder.parameters())


def test_objective_encodes_once_and_matches_the_critic() -> None:
    agent, batch = _image_agent(), _image_batch()
    with torch.no_grad():
        agent.critic.w_act.normal_()
    objective = agent.q_objective(batch.obs_BD)
    onehot = agent.spec.onehot(batch.action_BH)
    expected = agent.critic(batch.obs_BD, onehot).amin(0)
    assert torch.allclose(objective.at(onehot), expected)
    feats = objective.features
    assert objective.features is feats  # cached: one encoder pass however many actions
    all_q = objective.all()
    assert torch.allclose(all_q.gather(1, batch.action_BH), expected.unsqueeze(1))


def test_replay_keeps_uint8_rows() -> None:
    buf = ReplayBuffer(16, 400, 1, "cpu", obs_dtype=torch.uint8)
    batch = _image_batch(4)
    dropped = buf.add(batch.obs_BD, batch.action_BH, batch.reward_B, batch.next_obs_BD, batch.terminated_B)
    assert int(dropped) == 0
    sample = buf.sample(8, torch.Generator().manual_seed(0))
    assert sample.obs_BD.dtype == torch.uint8 and sample.next_obs_BD.dtype == torch.uint8


def test_budget_counts_pixels_as_bytes() -> None:
    config = Config(buffer_size=100_000).validate()
    floats = budget.estimate(config, 4 * 84 * 84, (6,))
    pixels = budget.estimate(config, 4 * 84 * 84, (6,), obs_itemsize=1, encoder=("nature", (4, 84, 84)))
    assert pixels.replay < floats.replay / 3.9
    # Nature CNN weights: 1.68M per encoder, 4 copies for the actor's, 5 for the critics'.
    assert pixels.networks > 9 * 4 * 1_600_000


def test_minatar_run_saves_and_loads_its_encoder(tmp_path: Path) -> None:
    config = Config(
        env="gumbel_ac/MinAtar-Breakout-v1",
        total_steps=400,
        learning_starts=200,
        batch_size=16,
        eval_every=400,
        final_eval_episodes=1,
        eval_episodes=1,
        hidden_sizes=(32,),
        progress=False,
        runs_dir=str(tmp_path),
        run_name="mb",
    )
    train(config)
    loaded = load_run(tmp_path / "mb")
    agent = loaded.agent
    assert agent.encoder_kind == "minatar" and isinstance(agent.actor.encoder, MinAtarEncoder)
    ckpt = sorted((tmp_path / "mb" / "checkpoints").iterdir())[-1]
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["encoder"] == {
        "kind": "minatar",
        "image_shape": [4, 10, 10],
        "pixel_scale": 1.0,
        "shared": False,
        "obs_bounds": None,
    }
    meta["encoder"]["image_shape"] = [4, 10, 11]
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="image_shape"):
        load_run(ckpt)


def test_conv_encoder_on_vector_observations_is_one_clear_error(tmp_path: Path) -> None:
    config = Config(encoder="minatar", total_steps=200, progress=False, runs_dir=str(tmp_path), run_name="x")
    with pytest.raises(ConfigError, match="needs image observations"):
        train(config)


def _run_steps(bufs: list[ReplayBuffer], steps: int, n: int = 3) -> list[tuple[int, int, bool, bool]]:
    """Step ``n`` fake envs whose observation is a counter (episode id * 100 + t), env 0
    terminating every 4th step and env 1 truncating every 5th; add each step to every buffer.
    Returns, per row in add order, (obs, true next obs, terminated, truncated)."""
    rows: list[tuple[int, int, bool, bool]] = []
    episode, t = [0] * n, [0] * n
    obs = torch.zeros(n, 2, dtype=torch.uint8)
    for step in range(steps):
        term = torch.tensor([i == 0 and (step + 1) % 4 == 0 for i in range(n)])
        trunc = torch.tensor([i == 1 and (step + 1) % 5 == 0 for i in range(n)])
        final = torch.tensor([[episode[i], t[i] + 1] for i in range(n)], dtype=torch.uint8)
        for i in range(n):
            t[i] += 1
            if term[i] or trunc[i]:
                episode[i], t[i] = episode[i] + 1, 0
        after = torch.tensor([[episode[i], t[i]] for i in range(n)], dtype=torch.uint8)  # SAME_STEP reset obs
        for i in range(n):
            rows.append(
                (
                    int(obs[i, 0]) * 100 + int(obs[i, 1]),
                    int(final[i, 0]) * 100 + int(final[i, 1]),
                    bool(term[i]),
                    bool(trunc[i]),
                )
            )
        action = torch.full((n, 1), step)
        reward = torch.full((n,), float(step))
        for buf in bufs:
            buf.add(obs, action, reward, final, term, None, trunc)
        obs = after
    return rows


def _decode(obs: torch.Tensor) -> list[int]:
    return [int(a) * 100 + int(b) for a, b in obs.tolist()]


def test_shared_obs_replay_matches_the_plain_ring() -> None:
    plain, shared = ReplayBuffer(10, 2, 1, "cpu", torch.uint8), SharedObsReplayBuffer(10, 2, 1, "cpu")
    rows = _run_steps([plain, shared], steps=7)  # 21 rows into 10 slots: wrapped, 10 % 3 != 0
    idx = torch.arange(10)
    a, b = plain._gather(idx), shared._gather(idx)
    assert torch.equal(a.obs_BD, b.obs_BD) and torch.equal(a.action_BH, b.action_BH)
    assert torch.equal(a.reward_B, b.reward_B)
    live = rows[-10:]  # the ring holds the newest 10 rows; slot = add index mod 10
    slot_of = {(11 + k) % 10: live[k] for k in range(10)}
    for slot in range(10):
        obs, nxt, term, trunc = slot_of[slot]
        assert _decode(b.obs_BD)[slot] == obs
        assert bool(b.terminated_B[slot]) == (term or trunc)  # truncation stored as termination
        if not (term or trunc):  # the successor row (or the tail) is the true next observation
            assert _decode(b.next_obs_BD)[slot] == nxt == _decode(a.next_obs_BD)[slot]
        assert bool(a.terminated_B[slot]) == term  # the plain ring keeps truncation apart


def test_shared_obs_replay_state_round_trips() -> None:
    shared = SharedObsReplayBuffer(12, 2, 1, "cpu")
    _run_steps([shared], steps=5)
    idx = torch.arange(12)
    for cap in (None, 7):  # exact ring; newest whole steps (7 -> 6 rows)
        shared.save_cap = cap
        state = shared.state_dict()
        other = SharedObsReplayBuffer(12, 2, 1, "cpu")
        other.load_state_dict(state)
        if cap is None:
            assert state["mode"] == "exact"
            got, want = other._gather(idx), shared._gather(idx)
            assert all(torch.equal(getattr(got, f), getattr(want, f)) for f in ("obs_BD", "next_obs_BD", "reward_B"))
        else:
            assert state["mode"] == "newest" and other.size == 6
            got = other._gather(torch.arange(6))
            want = shared._gather((torch.arange(6) + shared.pos - 6) % 12)
            assert torch.equal(got.obs_BD, want.obs_BD) and torch.equal(got.next_obs_BD, want.next_obs_BD)
    bad = dict(state, tail=torch.zeros(2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="tail"):
        SharedObsReplayBuffer(12, 2, 1, "cpu").check_state_dict(bad)
    with pytest.raises(ValueError, match="one step of 3 envs"):
        shared.add(
            *(torch.zeros(2, 2, dtype=torch.uint8), torch.zeros(2, 1, dtype=torch.long)),
            torch.zeros(2),
            torch.zeros(2, 2, dtype=torch.uint8),
            torch.zeros(2, dtype=torch.bool),
        )


def test_atari_sized_replay_fits_in_3_gb() -> None:
    """100k transitions of 4x84x84 uint8 frames: one copy of each frame, ~2.82 GB (the
    float32 obs + next obs of the plain ring would be ~22.6 GB)."""
    buf = SharedObsReplayBuffer(100_000, 4 * 84 * 84, 1, "meta")
    assert buf.obs_CD.dtype == torch.uint8
    assert 2.8e9 < buf.nbytes() < 3.0e9
    config = Config(buffer_size=100_000).validate()
    est = budget.estimate(config, 4 * 84 * 84, (4,), obs_itemsize=1, encoder=("nature", (4, 84, 84)))
    assert abs(est.replay - buf.nbytes()) < 1e6 * 1.1


def test_sb3_mlp_policy_with_the_native_encoder_exports_and_reloads(tmp_path: Path) -> None:
    """SB3 trains the native convolutional agent (``policy_kwargs=dict(encoder=...)``) on the
    reference MinAtar env (channel-last bool grids), exports it, and the checkpoint gives the
    same actions in eval and back in SB3."""
    pytest.importorskip("minatar")
    from stable_baselines3.common.env_util import make_vec_env

    from gumbel_ac.envpkgs import prepare_env_id
    from gumbel_ac.sb3 import GumbelAC, export_checkpoint, from_checkpoint

    prepare_env_id("MinAtar/Breakout-v1")
    env = make_vec_env("MinAtar/Breakout-v1", n_envs=2, seed=0)
    model = GumbelAC(
        "MlpPolicy",
        env,
        learning_starts=32,
        batch_size=16,
        policy_kwargs=dict(net_arch=[32], encoder="auto"),
        seed=0,
        device="cpu",
    )
    model.learn(96)
    agent = model.policy.agent
    assert agent.encoder_kind == "minatar" and agent.image_shape == (4, 10, 10)
    ckpt = export_checkpoint(model, tmp_path / "run", env_id="MinAtar/Breakout-v1")
    loaded = load_run(ckpt)
    obs = env.reset()
    rows = model.policy.preprocess(torch.as_tensor(obs))
    assert rows.dtype == torch.uint8
    assert torch.equal(loaded.agent.actor(rows), agent.actor(rows))
    back = from_checkpoint(ckpt, env)
    assert torch.equal(back.policy.agent.actor(rows), agent.actor(rows))


def test_shared_encoder_is_the_critics_read_detached(tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = ActionSpec.from_space(gym.spaces.Discrete(3))
    agent = Agent(400, spec, (32,), encoder="minatar", image_shape=(4, 10, 10), share_encoder=True)
    conv_params = {id(p) for p in agent.critic.encoder.parameters()}
    assert not conv_params & {id(p) for p in agent.actor.parameters()}  # one copy of the conv weights
    batch = _image_batch()
    logits = agent.actor(batch.obs_BD)
    expected = agent.actor.net(agent.critic.encoder(batch.obs_BD))
    assert torch.equal(logits, expected)
    logits.sum().backward()  # the actor's loss never reaches the shared encoder
    assert all(p.grad is None for p in agent.critic.encoder.parameters())
    import copy

    twin = copy.deepcopy(agent)
    assert twin.actor.encoder.source is twin.critic.encoder  # the copy shares its own encoder
    config = Config(
        env="gumbel_ac/MinAtar-Breakout-v1",
        share_encoder=True,
        total_steps=300,
        learning_starts=100,
        batch_size=16,
        eval_every=300,
        final_eval_episodes=1,
        eval_episodes=1,
        hidden_sizes=(32,),
        progress=False,
        runs_dir=str(tmp_path),
        run_name="shared",
    )
    train(config)
    loaded = load_run(tmp_path / "shared").agent
    assert loaded.share_encoder and loaded.actor.encoder.source is loaded.critic.encoder


def test_minatar_resume_is_bit_identical(tmp_path: Path) -> None:
    """A run stopped at 320 steps and resumed to 640 ends with the same weights as one that ran
    640 steps at once: the one-copy frame replay (ring, tail and step geometry) and the torch
    MinAtar env's state come back exactly from the checkpoint."""
    from safetensors.torch import load_file

    from gumbel_ac.checkpoint import list_checkpoints
    from gumbel_ac.resume import resume_config

    base = dict(
        env="gumbel_ac/MinAtar-Breakout-v1",
        learning_starts=96,
        batch_size=16,
        eval_every=320,
        checkpoint_every=320,
        final_eval_episodes=1,
        eval_episodes=1,
        hidden_sizes=(16,),
        progress=False,
        runs_dir=str(tmp_path),
    )
    train(Config(**base, total_steps=640, run_name="ref"))  # type: ignore[arg-type]
    train(Config(**base, total_steps=320, run_name="cut"))  # type: ignore[arg-type]
    train(resume_config(tmp_path / "cut", total_steps=640))
    a = load_file(list_checkpoints(tmp_path / "ref")[-1] / "model.safetensors")
    b = load_file(list_checkpoints(tmp_path / "cut")[-1] / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
