"""Observation rescaling (``Config.obs_rescale``) and the count bonus stored at collection
(``Config.count_bonus_timing="collect"``).

Rescaling is checked by hand on MountainCar's box (its bounds map to -1 and 1 exactly), through
a saved and reloaded run (the bounds travel in the manifest, not in the weights) and through
SB3's policy and the checkpoint round trip. The collection-time bonus is checked by spying on
what the trainer hands the replay: ``reward + beta / sqrt(n(s'))`` with the counts after the
visit, and nothing added again when the learner samples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from run_cases import assert_resumed_run_equals_whole, tiny_config

import gumbel_ac.envs  # noqa: F401  (registers the gumbel_ac/ env ids)
from gumbel_ac.buffer import ReplayBuffer
from gumbel_ac.checkpoint import CheckpointError, load_run
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.encoders import FlatEncoder, make_encoder, rescale_coefficients
from gumbel_ac.exploration import CountBonus
from gumbel_ac.learner import Learner
from gumbel_ac.trainer import train
from gumbel_ac.vector import ObsEncoder

CAR_LOW, CAR_HIGH = [-1.2, -0.07], [0.6, 0.07]


def test_rescale_maps_the_box_to_minus_one_one() -> None:
    enc = FlatEncoder(2, bounds=(CAR_LOW, CAR_HIGH))
    rows = torch.tensor([CAR_LOW, CAR_HIGH, [-0.3, 0.0], [-0.75, 0.035]])
    expected = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-0.5, 0.5]])
    assert torch.allclose(enc(rows), expected, atol=1e-6)
    assert enc.state_dict() == {}  # derived from the space, not saved with the weights


def test_unbounded_dimensions_pass_and_constant_ones_are_zero() -> None:
    mid, inv_half = rescale_coefficients(([0.0, -math.inf, 2.0], [4.0, math.inf, 2.0]), 3)
    assert mid.tolist() == [2.0, 0.0, 2.0] and inv_half.tolist() == [0.5, 1.0, 0.0]
    enc = FlatEncoder(3, bounds=([0.0, -math.inf, 2.0], [4.0, math.inf, 2.0]))
    assert enc(torch.tensor([[3.0, 123.0, 2.0]])).tolist() == [[0.5, 123.0, 0.0]]


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        (([-math.inf, -math.inf], [math.inf, math.inf]), "nothing to rescale"),
        (([0.0], [1.0]), "obs_dim=2"),
        (([1.0, 0.0], [0.0, 1.0]), "low <= high"),
        (([math.nan, 0.0], [1.0, 1.0]), "low <= high"),
    ],
)
def test_bad_bounds_are_refused(bounds: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rescale_coefficients(bounds, 2)


def test_image_encoders_refuse_bounds() -> None:
    with pytest.raises(ValueError, match="vector observations"):
        make_encoder("minatar", 400, (4, 10, 10), 1.0, bounds=([0.0] * 400, [1.0] * 400))


def test_row_bounds_follow_the_rows() -> None:
    car = gym.make("MountainCar-v0").observation_space
    low, high = ObsEncoder(car).row_bounds()
    assert np.allclose(low, CAR_LOW) and np.allclose(high, CAR_HIGH)
    low, high = ObsEncoder(gym.spaces.Discrete(3)).row_bounds()
    assert low.tolist() == [0.0] * 3 and high.tolist() == [1.0] * 3
    with pytest.raises(ValueError, match="image"):
        ObsEncoder(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)).row_bounds()


def test_run_saves_and_reloads_its_bounds(tmp_path: Path) -> None:
    train(tiny_config(tmp_path, total_steps=800, run_name="r", obs_rescale=True))
    loaded = load_run(tmp_path / "r")
    assert loaded.agent.obs_bounds is not None
    assert np.allclose(loaded.agent.obs_bounds[0], CAR_LOW) and np.allclose(loaded.agent.obs_bounds[1], CAR_HIGH)
    assert isinstance(loaded.agent.actor.encoder, FlatEncoder) and loaded.agent.actor.encoder.rescale
    # The loaded policy reads the rescaled rows: at the box's corners its input is -1 and 1.
    feats = loaded.agent.actor.encoder(torch.tensor([CAR_LOW, CAR_HIGH]))
    assert torch.allclose(feats, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), atol=1e-6)
    ckpt = sorted((tmp_path / "r" / "checkpoints").iterdir())[-1]
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["encoder"]["obs_bounds"]["low"] == pytest.approx(CAR_LOW)
    meta["encoder"]["obs_bounds"]["low"] = [1.0, 0.0]  # low > high in the first dimension
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="obs_bounds: .*low <= high"):
        load_run(ckpt)
    del meta["encoder"]["obs_bounds"]  # a manifest from before rescaling existed: no rescaling
    (ckpt / "meta.json").write_text(json.dumps(meta))
    assert load_run(ckpt).agent.obs_bounds is None


def test_rescaling_changes_what_the_networks_see(tmp_path: Path) -> None:
    train(tiny_config(tmp_path, total_steps=800, run_name="plain"))
    train(tiny_config(tmp_path, total_steps=800, run_name="scaled", obs_rescale=True))
    plain, scaled = load_run(tmp_path / "plain").agent, load_run(tmp_path / "scaled").agent
    assert plain.obs_bounds is None
    # Same seed, same initial weights: the first layer sees the rows, or the rows rescaled.
    rows = torch.tensor([[-0.5, 0.01]])
    assert torch.equal(plain.actor.encoder(rows), rows)
    assert not torch.equal(scaled.actor.encoder(rows), rows)


def test_images_and_unbounded_rows_are_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="obs_rescale on gumbel_ac/MinAtar-Breakout-v1: .*not images"):
        train(tiny_config(tmp_path, env="gumbel_ac/MinAtar-Breakout-v1", total_steps=400, obs_rescale=True))
    # CartPole's velocities are unbounded: they pass, its position and angle are rescaled.
    train(tiny_config(tmp_path, env="gumbel_ac/CartPole-v1", total_steps=400, run_name="cp", obs_rescale=True))
    bounds = load_run(tmp_path / "cp").agent.obs_bounds
    assert bounds is not None and [math.isfinite(v) for v in bounds[0]] == [True, False, True, False]


def test_sb3_policy_rescales_and_round_trips(tmp_path: Path) -> None:
    from gumbel_ac.sb3 import GumbelAC
    from gumbel_ac.sb3.interop import export_checkpoint, from_checkpoint

    model = GumbelAC("MlpPolicy", "MountainCar-v0", policy_kwargs=dict(obs_rescale=True), seed=0, learning_starts=0)
    agent = model.policy.agent
    assert agent.obs_bounds is not None and np.allclose(agent.obs_bounds[1], CAR_HIGH)
    obs = np.array([[-0.5, 0.01]], dtype=np.float32)
    action, _ = model.predict(obs, deterministic=True)
    export_checkpoint(model, tmp_path / "exported", env_id="MountainCar-v0")
    native = load_run(tmp_path / "exported").agent
    assert native.obs_bounds == agent.obs_bounds
    assert torch.equal(native.logits(torch.as_tensor(obs)), agent.logits(torch.as_tensor(obs)))
    back = from_checkpoint(tmp_path / "exported", "MountainCar-v0")
    assert back.policy.agent.obs_bounds == agent.obs_bounds
    assert (back.predict(obs, deterministic=True)[0] == action).all()
    from stable_baselines3.common.torch_layers import FlattenExtractor

    class OwnExtractor(FlattenExtractor):  # any extractor but SB3's own flatten: features, not rows
        pass

    kwargs = dict(obs_rescale=True, features_extractor_class=OwnExtractor)
    with pytest.raises(ValueError, match="obs_rescale rescales the flat observation rows of MlpPolicy"):
        GumbelAC("MlpPolicy", "MountainCar-v0", policy_kwargs=kwargs)


@pytest.mark.parametrize("n_step", [1, 3])
def test_bonus_at_collection_is_stored_with_the_reward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_step: int
) -> None:
    beta, gamma = 2.0, 0.99
    added: list[torch.Tensor] = []
    sampled: list[torch.Tensor] = []
    real_add, real_step, real_make = ReplayBuffer.add, Learner.step, CountBonus.for_encoder.__func__  # type: ignore[attr-defined]

    def make(cls: type[CountBonus], *a: Any, **kw: Any) -> CountBonus:
        make.bonus = real_make(cls, *a, **kw)  # type: ignore[attr-defined]
        return make.bonus  # type: ignore[attr-defined,no-any-return]

    def add(self: ReplayBuffer, obs: Any, action: Any, reward: torch.Tensor, next_obs: torch.Tensor, *a: Any) -> Any:
        bonus: CountBonus = make.bonus  # type: ignore[attr-defined]
        counts = bonus.counts[bonus.cells(next_obs)].clamp_min(1).double()  # this visit already counted
        # MountainCar's own reward is -1 on every step before the flag (never reached here).
        assert torch.allclose(reward.double(), -1.0 + beta / counts.sqrt(), atol=1e-6)
        added.append(reward.clone())
        return real_add(self, obs, action, reward, next_obs, *a)

    def step(self: Learner, batch: Any, **kw: Any) -> Any:
        sampled.append(batch.reward_B.clone())
        return real_step(self, batch, **kw)

    monkeypatch.setattr(CountBonus, "for_encoder", classmethod(make))
    monkeypatch.setattr(ReplayBuffer, "add", add)
    monkeypatch.setattr(Learner, "step", step)
    cfg = tiny_config(
        tmp_path, total_steps=400, count_bonus=beta, count_bins=8, count_bonus_timing="collect", n_step=n_step
    )
    train(cfg)
    assert len(added) == 400 // 8 and sampled
    stored = torch.cat(added)
    rewards = torch.cat(sampled)
    if n_step == 1:  # nothing added again at sampling: every minibatch reward is a stored one
        assert torch.isin(rewards, stored).all()
    else:  # sums of up to three stored rewards, discounted; full rows dominate early episodes
        full = sum(gamma**j for j in range(3))
        assert (rewards >= -full - 1e-5).all() and (rewards <= -1.0 + beta).all()
        assert (rewards < -1.0 - 1e-3).any()  # more than one step's reward in some rows


def test_collect_timing_with_n_step_resumes_bit_for_bit(tmp_path: Path) -> None:
    assert_resumed_run_equals_whole(
        tmp_path, count_bonus=2.0, count_bins=8, count_bonus_timing="collect", n_step=3, obs_rescale=True
    )


def test_sampling_timing_still_refuses_n_step() -> None:
    with pytest.raises(ConfigError, match="--count-bonus-timing collect"):
        Config(env="MountainCar-v0", count_bonus=1.0, n_step=3, preset="none").check()
    Config(env="MountainCar-v0", count_bonus=1.0, n_step=3, count_bonus_timing="collect", preset="none").check()
