"""Reproducibility on CPU: the same config and seed give the same metrics file, bit for bit.

The metrics file holds one wall-clock value, ``charts/sps`` (listed in
``gumbel_ac.logger.WALL_CLOCK_KEYS``); everything else -- losses, alpha, entropy, returns,
evaluation results -- must be identical, and so must the final weights. Cross-process
reproducibility (a fresh interpreter) is covered by tests/test_resume.py, which compares
killed-and-resumed subprocess runs with an in-process reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gumbel_ac.checkpoint import list_checkpoints
from gumbel_ac.config import Config
from gumbel_ac.logger import WALL_CLOCK_KEYS, read_metrics, without_wall_clock
from gumbel_ac.trainer import train


def _run(tmp: Path, name: str, **kw: object) -> tuple[list[dict[str, object]], dict[str, torch.Tensor]]:
    cfg = Config(
        total_steps=1600,
        num_envs=8,
        learning_starts=200,
        batch_size=64,
        log_every=200,
        eval_every=800,
        eval_episodes=2,
        final_eval_episodes=2,
        checkpoint_every=800,
        progress=False,
        runs_dir=str(tmp),
        run_name=name,
        **kw,
    )  # type: ignore[arg-type]
    train(cfg)
    rows = read_metrics(tmp / name / "metrics.jsonl")
    return rows, load_file(list_checkpoints(tmp / name)[-1] / "model.safetensors")


@pytest.mark.parametrize("env", ["gumbel_ac/CartPole-v1", "CartPole-v1"])
@pytest.mark.parametrize("estimator", ["gumbel-st", "score"])
def test_same_seed_same_metrics_bit_for_bit(tmp_path: Path, env: str, estimator: str) -> None:
    rows_a, w_a = _run(tmp_path, "a", env=env, estimator=estimator)
    rows_b, w_b = _run(tmp_path, "b", env=env, estimator=estimator)
    assert len(rows_a) > 8 and any("losses/critic" in r for r in rows_a)
    assert without_wall_clock(rows_a) == without_wall_clock(rows_b)
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)
    # The only keys allowed to differ are the wall-clock ones.
    differing = {k for ra, rb in zip(rows_a, rows_b, strict=True) for k in ra if ra[k] != rb.get(k)}
    assert differing <= WALL_CLOCK_KEYS


def test_different_seed_differs(tmp_path: Path) -> None:
    rows_a, _ = _run(tmp_path, "a", env="gumbel_ac/CartPole-v1")
    rows_b, _ = _run(tmp_path, "b", env="gumbel_ac/CartPole-v1", seed=1)
    assert without_wall_clock(rows_a) != without_wall_clock(rows_b)


def test_deterministic_flag_runs_on_cpu_and_is_scoped(tmp_path: Path) -> None:
    """``--deterministic-cuda`` turns on deterministic algorithms for the run only; on CPU it
    changes no number (CPU kernels here are deterministic already)."""
    before = torch.are_deterministic_algorithms_enabled()
    rows_a, w_a = _run(tmp_path, "a", env="gumbel_ac/CartPole-v1", deterministic_cuda=True)
    assert torch.are_deterministic_algorithms_enabled() == before
    rows_b, w_b = _run(tmp_path, "b", env="gumbel_ac/CartPole-v1")
    assert without_wall_clock(rows_a) == without_wall_clock(rows_b)
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)
