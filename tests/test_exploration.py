"""The count-based exploration bonus (gumbel_ac/exploration.py) and its use by the trainer.

Cells and bonuses are checked against hand-computed grids; the trainer test checks that the
minibatch the learner gets carries ``reward + scale / sqrt(n(s'))`` with the counts of that
moment, that a run with the bonus resumes bit for bit (its counts are in the checkpoint), and
that observations it cannot count are one clear error.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from run_cases import assert_resumed_run_equals_whole, tiny_config

import gumbel_ac.envs  # noqa: F401  (registers the gumbel_ac/ env ids)
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.exploration import CountBonus
from gumbel_ac.learner import Learner
from gumbel_ac.logger import read_metrics
from gumbel_ac.trainer import train
from gumbel_ac.vector import ObsEncoder

ROOT = Path(__file__).resolve().parents[1]


def test_cells_are_the_grid_cells_and_clamp_outside() -> None:
    bonus = CountBonus([0.0, -1.0], [1.0, 1.0], bins=4, scale=2.0)
    obs = torch.tensor([[0.1, -0.9], [0.3, 0.1], [0.99, 0.99], [-5.0, 7.0], [1.0, -1.0]])
    # dim 0 cells are 0.25 wide on [0, 1], dim 1 cells 0.5 wide on [-1, 1]; index = c0 + 4 * c1
    assert bonus.exact
    assert bonus.cells(obs).tolist() == [0 + 4 * 0, 1 + 4 * 2, 3 + 4 * 3, 0 + 4 * 3, 3 + 4 * 0]


def test_bonus_is_scale_over_root_count_read_now() -> None:
    bonus = CountBonus([0.0], [1.0], bins=2, scale=3.0)
    low, high = torch.tensor([[0.2]]), torch.tensor([[0.7]])
    assert bonus.bonus(torch.cat([low, high])).tolist() == [3.0, 3.0]  # never seen: n read as 1
    for _ in range(4):
        bonus.observe(low)
    bonus.observe(torch.cat([high, high]), mask_B=torch.tensor([True, False]))  # masked row skipped
    assert bonus.counts[:2].tolist() == [4, 1]
    assert torch.allclose(bonus.bonus(torch.cat([low, high])), torch.tensor([1.5, 3.0]))
    assert bonus.cells_visited == 2


def test_large_grids_are_hashed_into_the_table_deterministically() -> None:
    low, high = np.zeros(40), np.ones(40)
    a = CountBonus(low, high, bins=16, scale=1.0, table_size=1 << 12)
    b = CountBonus(low, high, bins=16, scale=1.0, table_size=1 << 12)
    assert not a.exact  # 16**40 cells
    obs = torch.rand(512, 40, generator=torch.Generator().manual_seed(0))
    ia, ib = a.cells(obs), b.cells(obs)
    assert torch.equal(ia, ib) and int(ia.min()) >= 0 and int(ia.max()) < 1 << 12
    # 512 random cells of 16**40 land in at least 400 distinct slots of 4096 (a uniform hash
    # expects ~483; a broken one that ignores most dimensions gives far fewer).
    assert ia.unique().numel() >= 400


def test_constant_dimension_is_one_cell() -> None:
    bonus = CountBonus([0.0, 2.0], [1.0, 2.0], bins=4, scale=1.0)
    assert bonus.cells(torch.tensor([[0.6, 2.0], [0.6, 9.0]])).tolist() == [2, 2]


def test_refusals_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"finite observation bounds.*dimensions \[1, 3\]"):
        CountBonus([0, -np.inf, 0, 0], [1, 1, 1, np.inf], bins=4, scale=1.0)
    with pytest.raises(ValueError, match="bins must be"):
        CountBonus([0], [1], bins=1, scale=1.0)
    with pytest.raises(ValueError, match="scale must be"):
        CountBonus([0], [1], bins=4, scale=float("nan"))
    frames = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    with pytest.raises(ValueError, match="image observations"):
        CountBonus.for_encoder(ObsEncoder(frames), bins=4, scale=1.0)


def test_for_encoder_uses_the_rows_bounds() -> None:
    taxi = gym.spaces.Discrete(6)
    onehot = CountBonus.for_encoder(ObsEncoder(taxi), bins=2, scale=1.0)
    rows = ObsEncoder(taxi)(torch.arange(6))
    assert onehot.cells(rows).unique().numel() == 6  # every state its own cell
    car = gym.make("MountainCar-v0").observation_space
    bonus = CountBonus.for_encoder(ObsEncoder(car), bins=10, scale=1.0)
    assert torch.allclose(bonus.low, torch.tensor([-1.2, -0.07]))
    assert bonus.cells(torch.tensor([[0.59, 0.069], [-1.2, -0.07]])).tolist() == [99, 0]


def test_state_dict_round_trip_and_refusals() -> None:
    a = CountBonus([0.0], [1.0], bins=8, scale=1.0, table_size=16)
    a.observe(torch.tensor([[0.1], [0.1], [0.9]]))
    b = CountBonus([0.0], [1.0], bins=8, scale=1.0, table_size=16)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.counts, b.counts)
    with pytest.raises(ValueError, match="int64 tensor of shape"):
        b.load_state_dict({"counts": torch.zeros(15, dtype=torch.int64)})
    with pytest.raises(ValueError, match=">= 0"):
        b.load_state_dict({"counts": torch.full((16,), -1, dtype=torch.int64)})


def _small(tmp_path: Path, **kw: Any) -> Config:
    return tiny_config(tmp_path, **{"count_bonus": 2.0, "count_bins": 8, **kw})


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_learner_gets_the_reward_plus_the_bonus_of_the_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schedule: str
) -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    real_step = Learner.step

    def spy(self: Learner, batch: Any, **kw: Any) -> Any:
        trainer_bonus = spy.bonus  # type: ignore[attr-defined]
        counts = trainer_bonus.counts[trainer_bonus.cells(batch.next_obs_BD)].clamp_min(1).float()
        seen.append((batch.reward_B.clone(), counts, float(trainer_bonus.scale)))
        return real_step(self, batch, **kw)

    real_make = CountBonus.for_encoder.__func__  # type: ignore[attr-defined]

    def make(cls: type[CountBonus], *a: Any, **kw: Any) -> CountBonus:
        spy.bonus = real_make(cls, *a, **kw)  # type: ignore[attr-defined]
        return spy.bonus  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(Learner, "step", spy)
    monkeypatch.setattr(CountBonus, "for_encoder", classmethod(make))
    train(_small(tmp_path, total_steps=400, run_name="spy", count_bonus_schedule=schedule))
    assert len(seen) == (400 - 200) // 8
    for reward, counts, scale in seen:
        # MountainCar's own reward is -1 on every step before the flag (never reached here).
        assert torch.allclose(reward, -1.0 + scale / counts.sqrt())
    assert any(bool((r > -1.0 + 2.0 / math.sqrt(4000)).all()) for r, _, _ in seen)
    # Updates run after the steps 208, 216, ..., 400: beta there is 2 (1 - step / 400) when linear.
    steps = range(208, 401, 8)
    expected = [2.0 * (1.0 - s / 400) if schedule == "linear" else 2.0 for s in steps]
    assert [scale for _, _, scale in seen] == pytest.approx(expected)
    metrics = [r for r in read_metrics(tmp_path / "spy" / "metrics.jsonl") if "charts/count_cells_visited" in r]
    assert metrics and 1 <= metrics[-1]["charts/count_cells_visited"] <= 64


def test_run_with_bonus_resumes_bit_for_bit(tmp_path: Path) -> None:
    assert_resumed_run_equals_whole(tmp_path, count_bonus=2.0, count_bins=8)


def test_unbounded_observations_are_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="count_bonus on gumbel_ac/CartPole-v1: .*unbounded"):
        train(_small(tmp_path, env="gumbel_ac/CartPole-v1", total_steps=400))
    proc = subprocess.run(
        [sys.executable, "train.py", "--env", "CartPole-v1", "--count-bonus", "1", "--total-steps", "5000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unbounded" in proc.stderr and "--count-bonus 0" in proc.stderr


def test_count_bonus_schedule() -> None:
    linear = Config(count_bonus=2.0, count_bonus_schedule="linear", total_steps=1000)
    assert [linear.count_bonus_at(s) for s in (0, 250, 1000, 2000)] == [2.0, 1.5, 0.0, 0.0]
    assert Config(count_bonus=2.0, total_steps=1000).count_bonus_at(900) == 2.0
    bonus = CountBonus([0.0], [1.0], bins=2, scale=2.0)
    bonus.set_scale(0.5)
    assert bonus.bonus(torch.tensor([[0.1]])).tolist() == [0.5]
    with pytest.raises(ValueError, match="scale must be"):
        bonus.set_scale(-1.0)


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="count_bonus must be >= 0"):
        Config(count_bonus=-1.0).check()
    with pytest.raises(ConfigError, match="count_bins must be in"):
        Config(count_bins=1).check()


@pytest.mark.slow
def test_count_bonus_reaches_the_flag_where_the_plain_agent_does_not(tmp_path: Path) -> None:
    """MountainCar-v0, tuning seeds 100-102, 60k env steps: with its preset (the count bonus)
    the agent reaches the flag (an evaluation above -200) on at least 2 of 3 seeds; with the
    plain defaults it never does (docs/results.md, "Presets": 30k-40k steps to the first
    success in the search; the plain agent stays at -200 for 120k on these seeds)."""

    def best(seed: int, preset: str) -> float:
        result = train(
            Config(
                env="MountainCar-v0",
                seed=seed,
                preset=preset,
                total_steps=60_000,
                eval_every=10_000,
                eval_episodes=10,
                final_eval_episodes=10,
                checkpoint_every=0,
                save_replay=False,
                progress=False,
                runs_dir=str(tmp_path),
                run_name=f"{preset}_{seed}",
            )
        )
        return max([e.mean for e in result.evals] + [result.final_mean])

    with_bonus = [best(seed, "auto") for seed in (100, 101, 102)]
    plain = [best(seed, "none") for seed in (100, 101, 102)]
    assert sum(b > -200 for b in with_bonus) >= 2, with_bonus
    assert plain == [-200.0, -200.0, -200.0], plain
