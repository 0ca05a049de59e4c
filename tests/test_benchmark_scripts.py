"""Smoke tests of the speed benchmarks: they run on a tiny budget and print their tables.

The numbers themselves are not asserted (timings belong in benchmarks/, never in tests); what
is checked is that the scripts still run against the current API and report both sides.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    env = dict(os.environ, WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_update_cost_reports_the_learner_step() -> None:
    # Without --compile (its cold compile alone takes 10-30 s here): the default step's row.
    out = _run("benchmarks/update_cost.py", "--batch-sizes", "8", "--blocks", "1", "--steps", "2")
    assert "cpu capability" in out
    row = re.search(r"^\| 8 \| (\d+) \|$", out, re.MULTILINE)
    assert row is not None and int(row.group(1)) > 0, out


def test_solve_time_throughput_mode_runs_ours() -> None:
    out = _run(
        "benchmarks/solve_time.py",
        "--throughput",
        "--only",
        "ours",
        "--throughput-envs",
        "4",
        "--throughput-iters",
        "3",
    )
    assert re.search(r"^\| gumbel_ac gumbel_ac/CartPole-v1 N=4 \(CPU\) \| [\d,]+ \|$", out, re.MULTILINE), out


def test_large_actions_quick_mode_prints_the_table() -> None:
    # Quick mode: dials-2x4 and bandit-16, one seed, every method (ours, PPO through the
    # MultiDiscrete-packing adapter), each run in a fresh spawned worker.
    out = _run("benchmarks/large_actions.py", "--quick")
    assert "cpu capability" in out
    assert "| task | joint actions | method | critic target | seeds |" in out, out
    assert re.search(r"^\| dials-2x4 \| 16 \| gumbel-st-enum \| enumerated \| 1 \|", out, re.MULTILINE), out
    assert re.search(r"^\| dials-2x4 \| 16 \| ppo \|", out, re.MULTILINE), out


def test_collapse_quick_mode_prints_the_reliability_table(tmp_path: Path) -> None:
    # Quick mode: 2 seeds x 3k steps of CartPole-v1; the summary, the JSON it saves, and the
    # report of that JSON without training (the before/after comparison path).
    out_json = tmp_path / "quick.json"
    out = _run("benchmarks/collapse.py", "--quick", "--set", "target_update_rate=0.1", "--out", str(out_json))
    assert "| budget | seeds >= threshold | IQM eval return [95% CI] | failing seeds |" in out, out
    assert re.search(r"^\| 3,000 \| \d/2 \| [\d.]+ \[[\d.]+, [\d.]+\] \|", out, re.MULTILINE), out
    assert "median to first eval >= 475" in out, out
    saved = json.loads(out_json.read_text())
    assert saved["overrides"] == {"target_update_rate": 0.1, "learning_starts": 500}
    assert [r["seed"] for r in saved["runs"]] == [0, 1]
    assert all(r["logs"] and {"alpha", "entropy", "critic_loss", "q_mean"} <= set(r["logs"][-1]) for r in saved["runs"])
    again = _run("benchmarks/collapse.py", "--report", str(out_json))
    assert "| 3,000 | " in again, again


def test_encoder_cost_reports_both_variants() -> None:
    out = _run("benchmarks/encoder_cost.py", "--only", "minatar", "--batch-size", "4", "--blocks", "1", "--steps", "1")
    assert "cpu capability" in out
    row = re.search(r"^\| minatar \| 4 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \|$", out, re.MULTILINE)
    assert row is not None and float(row.group(1)) > 0 and float(row.group(2)) > 0, out


def test_suite_quick_mode_writes_runs_tables_and_figures(tmp_path: Path) -> None:
    # Quick mode: CartPole-v1 and MinAtar Breakout, 2 seeds, ours / SB3 PPO / SB3 DQN, tiny
    # budgets. Checked: every run saved, every eval point in the CSV, the README table with a
    # row per task and method, one figure per task plus the rliable aggregate; a second call
    # resumes (skips every finished run) and rebuilds the same table.
    out = tmp_path / "suite"
    text = _run("benchmarks/suite.py", "--quick", "--out", str(out))
    assert "cpu capability" in text
    runs = sorted(p.name for p in (out / "runs").glob("*.json"))
    expected = {
        f"{t}__{m}__s{s}.json"
        for t in ("CartPole-v1", "MinAtar-Breakout")
        for m in ("ours", "ppo", "dqn")
        for s in (0, 1)
    }
    assert set(runs) == expected, runs
    saved = json.loads((out / "runs.json").read_text())
    assert len(saved) == 12 and all(r["evals"] and r["evals"][-1][0] >= r["budget"] for r in saved)
    rows = (out / "evals.csv").read_text().splitlines()
    assert rows[0] == "task,method,seed,env_steps,eval_mean,eval_std,train_seconds"
    assert len(rows) - 1 == sum(len(r["evals"]) for r in saved)
    table = (out / "summary.md").read_text()
    for task in ("CartPole-v1", "MinAtar-Breakout"):
        for label in ("gumbel_ac (ours)", "SB3 PPO (RL-Zoo)", "SB3 DQN"):
            assert re.search(rf"^\| {task} \| {re.escape(label)}.* \| 2 \| ", table, re.MULTILINE), table
    assert "Published, not re-run" in table and "| CartPole-v1 | 475 |" in table
    for name in ("curves_CartPole-v1.png", "curves_MinAtar-Breakout.png", "aggregate.png"):
        assert (out / name).stat().st_size > 1000, name
    again = _run("benchmarks/suite.py", "--quick", "--out", str(out))
    assert again.count("(finished)") == 12, again
    # collapse.py reports the suite's SB3 runs with its own tables: one block per method, the
    # fraction of the 2 seeds at or above the threshold at half the budget and at its end.
    table = _run("benchmarks/collapse.py", "--suite", str(out), "--threshold", "20")
    for method in ("PPO", "DQN"):
        block = table.split(f"## SB3 {method}")[1]
        budget = next(r["budget"] for r in saved if r["task"] == "CartPole-v1")
        mine = [r for r in saved if r["task"] == "CartPole-v1" and r["method"] == method.lower()]
        finals = [r["evals"][-1][1] for r in mine]
        assert re.search(rf"^\| {budget // 2:,} \| [0-2]/2 \| ", block, re.MULTILINE), block
        assert re.search(rf"^\| {budget:,} \| {sum(f >= 20 for f in finals)}/2 \| ", block, re.MULTILINE), block


def test_collapse_dip_level_for_positive_and_negative_thresholds() -> None:
    # A dip is 10% of |threshold| below it either way: CartPole's 475 -> 427.5, Acrobot's -100 -> -110.
    import importlib.util

    spec = importlib.util.spec_from_file_location("collapse", ROOT / "benchmarks" / "collapse.py")
    assert spec is not None and spec.loader is not None
    collapse = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(collapse)
    assert collapse.dip_level(475.0, 0.9) == 427.5 and collapse.dip_level(-100.0, 0.9) == -110.0
    run = {"evals": [[s, v, 0.0, 0.0] for s, v in enumerate([-300, -95, -90, -99, -105, -120])]}
    assert collapse.first_dip(run, -100.0, 0.9, 3) == 5  # held -95 -90 -99, then -120 < -110


def test_rliable_intervals_are_reproducible_and_leave_the_global_generator_alone() -> None:
    # rliable draws its bootstrap indices from NumPy's global generator, ignoring random_state;
    # the wrapper seeds it per call: the same scores give the same interval whatever came before.
    import importlib.util

    import numpy as np
    from rliable import metrics

    spec = importlib.util.spec_from_file_location("rliable_seeded", ROOT / "benchmarks" / "rliable_seeded.py")
    assert spec is not None and spec.loader is not None
    seeded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seeded)
    scores = {"m": np.array([[500.0], [109.0], [500.0], [480.0], [60.0], [230.0]])}

    def iqm(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x)])

    intervals = []
    for global_seed in (1, 2, 3):
        np.random.seed(global_seed)
        before = np.random.get_state()[1].copy()
        point, ci = seeded.interval_estimates(scores, iqm, reps=500, seed=7)
        assert np.array_equal(np.random.get_state()[1], before)  # the caller's stream is untouched
        intervals.append(ci["m"].ravel().tolist())
    assert intervals[0] == intervals[1] == intervals[2]
    assert point["m"][0] == metrics.aggregate_iqm(scores["m"])
    other = seeded.interval_estimates(scores, iqm, reps=500, seed=8)[1]["m"].ravel().tolist()
    assert other != intervals[0]  # the seed is what fixes it


def test_minatar_envs_quick_mode_trains_both_envs_and_resumes(tmp_path: Path) -> None:
    # Both envs, two seeds, interleaved; the second call trains nothing (every run's JSON is
    # there) and prints the same tables from the saved runs.
    out = tmp_path / "menvs"
    text = _run("benchmarks/minatar_envs.py", "--quick", "--out", str(out))
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == [
        "reference__s0.json",
        "reference__s1.json",
        "torch__s0.json",
        "torch__s1.json",
    ]
    run = json.loads((out / "runs" / "reference__s0.json").read_text(encoding="utf-8"))
    assert run["env"] == "MinAtar/Breakout-v1" and run["evals"][-1][0] == 1_008  # 63 vector steps of 16
    assert re.search(r"^\| `gumbel_ac/MinAtar-Breakout-v1` \| 2 \|", text, re.MULTILINE), text
    assert re.search(r"^\| `MinAtar/Breakout-v1` \| 2 \|", text, re.MULTILINE), text
    assert "Paired by seed (2 seeds), torch - reference" in text
    again = _run("benchmarks/minatar_envs.py", "--quick", "--out", str(out))
    assert "final deterministic eval" not in again  # no run trained again
    table = text[text.index("Breakout, 1,000") : text.rindex("\n[")]
    assert again[again.index("Breakout, 1,000") : again.rindex("\n[")] == table


def test_minatar_envs_paired_ci_and_curve_mean() -> None:
    import importlib.util

    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("minatar_envs", ROOT / "benchmarks" / "minatar_envs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # Trapezoid mean of 0 -> 2 over [0, 10] then flat 2 over [10, 20]: (10 * 1 + 10 * 2) / 20.
    assert mod.curve_mean([[0, 0.0, 0, 0], [10, 2.0, 0, 0], [20, 2.0, 0, 0]]) == 1.5
    # A constant difference has a zero-width CI at that value.
    import numpy as np

    assert mod.paired_ci(np.arange(5.0) + 0.25, np.arange(5.0)) == (0.25, 0.25, 0.25)


def test_suite_seaquest_time_limit_truncates_a_sub_that_stays_at_the_surface() -> None:
    # MinAtar Seaquest has no time limit and a sub at the surface never runs out of oxygen, so
    # "do nothing" plays forever; the suite's limit must truncate it, for SB3's env (MinAtar's
    # own) and for ours (the torch id with env_kwargs, as run_ours builds it) alike.
    pytest.importorskip("minatar")
    import importlib.util

    import gymnasium as gym
    import torch

    import envs  # noqa: F401  (registers the gumbel_ac/ ids)

    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("suite_mod", ROOT / "benchmarks" / "suite.py")
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    sys.modules["suite_mod"] = suite  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(suite)
    task = suite.TASKS["MinAtar-Seaquest"]
    assert suite.time_limit_kwargs(task) == {"max_episode_steps": 1000}
    assert suite.time_limit_kwargs(suite.TASKS["MinAtar-Breakout"]) == {}

    sb3_env = suite._sb3_env(task, 1, seed=0)
    sb3_env.reset()
    steps, dones = 0, [False]
    while not dones[0] and steps < 2000:
        _, _, dones, infos = sb3_env.step([0])  # no-op: the sub starts at the surface
        steps += 1
    assert steps == 1000 and infos[0]["TimeLimit.truncated"]
    sb3_env.close()

    ours = gym.make_vec(task.ours_id, num_envs=2, **suite.time_limit_kwargs(task))
    ours.reset(seed=0)
    noop = torch.zeros(2, dtype=torch.int64)
    steps, ended = 0, False
    while not ended and steps < 2000:
        _, _, terminated, truncated, _ = ours.step(noop)
        steps += 1
        ended = bool(truncated.any() or terminated.any())
    assert steps == 1000 and bool(truncated.all()) and not bool(terminated.any())
    ours.close()
