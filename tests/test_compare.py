"""Smoke test of benchmarks/compare_estimators.py: its core function on a tiny budget.

Checks that the whole pipeline (train -> metrics.jsonl -> aggregate -> PNG/CSV/markdown) runs
and that its pieces compute what they claim, not that any estimator learns (a few hundred
updates cannot show that; the benchmark itself is for that).
"""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    """Import the script by path (``benchmarks/`` is not a package)."""
    name = "compare_estimators"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "compare_estimators.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ce = _load()


def test_compare_tiny_budget(tmp_path: Path) -> None:
    settings = ce.Settings(
        out=tmp_path,
        tasks=("catch", "deepsea"),
        estimators=("gumbel-st", "softmax-st", "reinmax"),
        seeds=(0, 1),
        sweep_task="catch",
        sweep_taus=(0.6, 2.0),
        steps={"cartpole": 1200, "catch": 1200, "deepsea": 1200},
        workers=1,
    )
    result = ce.compare(settings, log=lambda *_: None)

    # 2 tasks x 3 estimators x 2 seeds, plus the sweep's one new tau x 2 estimators x 2 seeds.
    assert len(result.results) == 2 * 3 * 2 + 1 * 2 * 2
    for r in result.results:
        assert (Path(r.run_dir) / "metrics.jsonl").exists()
        assert r.eval_steps and r.eval_steps[-1] == 1200  # the final eval closes the eval curve
        assert math.isfinite(r.final_eval)
    # ReinMax is lifted to its minimum temperature, and says so.
    assert {r.spec.tau for r in result.results if r.spec.estimator == "reinmax"} == {1.0}
    for name in ("curves_catch.png", "curves_deepsea.png", "sweep_catch.png", "summary.csv", "summary.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(result.rows) == 2 * 3 + 2
    assert "| catch | gumbel-st | 0.6 | 2 |" in result.table
    assert "Temperature sweep on catch" in result.table


def test_deepsea_task_is_one_shared_mapping() -> None:
    """The deepsea task goes through Config.env_kwargs; every sub-env, every seed's env and the
    evaluation env see one left/right mapping (bsuite's single MDP), and it is solvable."""
    import gymnasium

    import gumbel_ac.envs  # noqa: F401  (registers the gumbel_ac/ ids)

    spec = ce.RunSpec("deepsea", "gumbel-st", 0.6, 3, 1000)
    config = ce.make_config(spec, Path("unused")).validate()
    assert config.env == "gumbel_ac/DeepSea-v0"
    assert config.env_kwargs_dict() == {"size": ce.DEEPSEA_SIZE}
    assert config.eval_env_kwargs() == {"size": ce.DEEPSEA_SIZE}  # evaluation sees the same task
    a = gymnasium.make_vec(config.env, num_envs=4, device="cpu", **config.env_kwargs_dict())
    b = gymnasium.make_vec(config.env, num_envs=2, device="cpu", **config.eval_env_kwargs())
    a.reset(seed=1)
    b.reset(seed=1234)
    assert a.size == ce.DEEPSEA_SIZE
    assert (a.action_mapping == a.action_mapping[:1]).all()
    assert (a.action_mapping[:2] == b.action_mapping).all()
    # Following the shared mapping's "right" action in every cell collects the +1: solvable.
    obs, _ = a.reset(seed=0)
    total = torch.zeros(4)
    for _ in range(ce.DEEPSEA_SIZE):
        cell = obs.reshape(4, -1).argmax(-1)
        obs, reward, *_ = a.step(a.action_mapping.gather(1, cell[:, None]).squeeze(1))
        total += reward
    assert torch.allclose(total, torch.full((4,), 0.99))
    a.close()
    b.close()


def test_reuse_config_matching() -> None:
    """--reuse: same config matches; a field missing from the saved file matches only at its default."""
    spec = ce.RunSpec("catch", "softmax-st", 0.6, 0, 1000)
    config = ce.make_config(spec, Path("unused"))
    saved = ce.make_config(spec, Path("unused")).validate().to_dict()  # what the trainer writes
    assert ce.config_matches(saved, config)
    older = {k: v for k, v in saved.items() if k not in ("lr_schedule", "env_kwargs")}
    assert ce.config_matches(older, config)  # fields added since, at their defaults: same run
    config_linear = ce.make_config(spec, Path("unused"))
    config_linear.lr_schedule = "linear"
    assert not ce.config_matches(older, config_linear)  # a new field set away from its default
    assert not ce.config_matches({**saved, "seed": 1}, config)
    assert not ce.config_matches({**saved, "gamma": 0.9}, config)  # library defaults count too
    assert not ce.config_matches({**saved, "removed_field": 1}, config)
    assert not ce.config_matches(older, ce.make_config(ce.RunSpec("deepsea", "softmax-st", 0.6, 0, 1000), Path("u")))


def test_reuse_reads_finished_run(tmp_path: Path) -> None:
    """A finished run is read back, not retrained, even after a field was added to Config."""
    import json

    spec = ce.RunSpec("catch", "gumbel-st", 0.6, 0, 600)
    first = ce.run_one(spec, str(tmp_path))
    cfg_path = Path(first.run_dir) / "config.json"
    saved = json.loads(cfg_path.read_text())
    del saved["lr_schedule"]  # as if trained before lr_schedule existed
    cfg_path.write_text(json.dumps(saved))
    again = ce.run_one(spec, str(tmp_path), reuse=True)
    assert math.isnan(again.wall_seconds)  # reused
    assert again.final_eval == first.final_eval and again.eval_returns == first.eval_returns


def test_aggregation_helpers() -> None:
    assert ce.normalized_auc([10, 20], [1.0, 1.0], 20) == pytest.approx(1.0)
    assert ce.normalized_auc([10], [2.0], 40) == pytest.approx(2.0)
    assert ce.steps_to_threshold([1, 2, 3], [0.0, 0.9, 1.0], 0.9) == 2
    assert ce.steps_to_threshold([1, 2], [0.0, 0.1], 0.9) == math.inf
    settings = ce.parse_args(["--quick", "--steps", "catch=777", "--sweep-task", "none"])
    assert settings.steps["catch"] == 777 and settings.sweep_task is None
    assert settings.estimators == ce.REQUIRED_ESTIMATORS and settings.seeds == (0, 1)


def test_read_curves_takes_nulls_and_a_torn_line(tmp_path: Path) -> None:
    """The logger writes non-finite values as null and a killed run may leave a torn last line."""
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"global_step": 100, "charts/episodic_return": 12.5}\n'
        '{"global_step": 200, "charts/episodic_return": null, "eval/mean_return": 30.0}\n'
        '{"global_step": 300, "eval/final_mean_return": 40.0}\n'
        '{"global_step": 400, "charts/episodic_ret'
    )
    ts, tr, es, er, final = ce.read_curves(path)
    assert ts == [100, 200] and tr[0] == 12.5 and math.isnan(tr[1])
    assert es == [200, 300] and er == [30.0, 40.0] and final == 40.0


def test_min_tau_is_the_estimator_modules() -> None:
    """One table of minimum temperatures: the benchmark uses the one the config checks with."""
    from gumbel_ac import estimators

    assert ce.MIN_TAU is estimators.MIN_TAU
