"""Every registered estimator trains the agent end to end (smoke), and learns CartPole (slow).

The same agent, critic and seed for each: only the actor's gradient estimator changes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gumbel_ac.config import Config
from gumbel_ac.estimators import ESTIMATORS, MIN_TAU
from gumbel_ac.logger import read_metrics
from gumbel_ac.trainer import train


def _temperature(name: str) -> float:
    """The default 0.6, or the estimator's minimum where it has one (reinmax: tau >= 1)."""
    return max(0.6, MIN_TAU.get(name, 0.0))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_trains_a_few_steps(tmp_path: Path, name: str) -> None:
    cfg = Config(
        estimator=name,
        gumbel_temperature=_temperature(name),
        total_steps=480,
        learning_starts=160,
        eval_every=0,
        final_eval_episodes=2,
        log_every=160,
        progress=False,
        runs_dir=str(tmp_path),
        run_name=name,
        rao_samples=4,
    )
    result = train(cfg)
    assert np.isfinite(result.final_mean)
    rows = read_metrics(tmp_path / name / "metrics.jsonl")
    assert any("losses/actor" in row for row in rows)
    # The logger writes a non-finite value as JSON null, so parse and check every value.
    bad = [
        (row["global_step"], k, v)
        for row in rows
        for k, v in row.items()
        if not (isinstance(v, (int, float)) and math.isfinite(v))
    ]
    assert not bad, bad
    assert all(row.get("charts/nonfinite_updates", 0.0) == 0.0 for row in rows)  # no update was skipped


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(ESTIMATORS) - {"gumbel-st"}))
def test_estimator_learns_cartpole(tmp_path: Path, name: str) -> None:
    """Each estimator reaches a deterministic eval >= 475 within 100k steps at some evaluation.

    gumbel-st is covered with 3 seeds in test_core.py (test_cartpole_solved_with_defaults).
    Estimators whose gradient is badly
    biased on CartPole's critic (the lab measures it) are allowed to fail here only if the
    failure is recorded in the README; none is at the time of writing.
    """
    cfg = Config(
        estimator=name,
        gumbel_temperature=_temperature(name),
        total_steps=100_000,
        eval_every=5_000,
        progress=False,
        runs_dir=str(tmp_path),
        run_name=name,
    )
    result = train(cfg)
    assert max(e.mean for e in result.evals) >= 475.0, [(e.step, e.mean) for e in result.evals]
