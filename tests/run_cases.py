"""Shared settings for the tests that train tiny runs: 8 envs, updates from step 200, a log row
every 400 env steps, a checkpoint every 800 and an evaluation every 1600, so a 3200-step run
has every kind of event twice, in a few seconds on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from gumbel_ac.checkpoint import list_checkpoints
from gumbel_ac.config import Config
from gumbel_ac.logger import read_metrics, without_wall_clock
from gumbel_ac.trainer import resume_config, train


def tiny_config(tmp_path: Path, **kw: Any) -> Config:
    """A tiny run on our torch MountainCar without a preset; ``kw`` overrides any field."""
    base: dict[str, Any] = dict(
        env="gumbel_ac/MountainCar-v0",
        num_envs=8,
        learning_starts=200,
        batch_size=64,
        log_every=400,
        checkpoint_every=800,
        eval_every=1600,
        eval_episodes=1,
        final_eval_episodes=1,
        progress=False,
        runs_dir=str(tmp_path),
        preset="none",
    )
    base.update(kw)
    return Config(**base)


def assert_resumed_run_equals_whole(tmp_path: Path, **kw: Any) -> None:
    """A 3200-step run (``ref``), and the same run stopped at 1600 and resumed to 3200 (``cut``),
    log the same rows (wall-clock fields aside) and end with the same weights, bit for bit:
    everything the run depends on is in the checkpoint."""
    train(tiny_config(tmp_path, total_steps=3200, run_name="ref", **kw))
    train(tiny_config(tmp_path, total_steps=1600, run_name="cut", **kw))
    assert not train(resume_config(tmp_path / "cut", total_steps=3200)).interrupted
    whole = without_wall_clock(read_metrics(tmp_path / "ref" / "metrics.jsonl"))
    resumed = without_wall_clock(read_metrics(tmp_path / "cut" / "metrics.jsonl"))
    assert whole == resumed
    wa = load_file(list_checkpoints(tmp_path / "ref")[-1] / "model.safetensors")
    wb = load_file(list_checkpoints(tmp_path / "cut")[-1] / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
