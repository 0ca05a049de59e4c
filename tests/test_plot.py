"""gumbel_ac.plot: learning curves from generated run folders whose curves are known exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from gumbel_ac.config import Config
from gumbel_ac.plot import aggregate, bootstrap_ci, compute_curves, find_runs, main, read_run


def make_run(
    root: Path,
    name: str,
    returns: dict[int, float],
    *,
    sps: float = 1000.0,
    evals: dict[int, float] | None = None,
    **cfg,
) -> Path:
    """A native run folder: config.json as train.py writes it, and one metrics row per step."""
    run = root / name
    run.mkdir(parents=True)
    config = Config(runs_dir=str(root), run_name=name, **cfg)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    lines = []
    for step, ret in returns.items():
        lines.append({"global_step": step, "charts/sps": sps, "charts/episodic_return": ret})
        if evals and step in evals:
            lines.append({"global_step": step, "eval/mean_return": evals[step], "eval/std_return": 0.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


STEPS = (2000, 4000, 6000)


def four_seeds(root: Path, estimator: str = "gumbel-st", offset: float = 0.0) -> list[Path]:
    """Seeds 0-3: return = (seed + 1) * step / 1000 + offset, so seed 3 is the outlier on top."""
    return [
        make_run(
            root,
            f"{estimator}__s{seed}",
            {s: (seed + 1) * s / 1000 + offset for s in STEPS},
            seed=seed,
            estimator=estimator,
        )
        for seed in range(4)
    ]


def test_seeds_of_one_config_make_one_iqm_line(tmp_path: Path) -> None:
    runs = [read_run(p) for p in four_seeds(tmp_path)]
    (curve,) = compute_curves(runs)
    np.testing.assert_array_equal(curve.x, STEPS)
    # IQM of 4 runs = mean of the middle two (seeds 1 and 2: multipliers 2 and 3).
    np.testing.assert_allclose(curve.center, [2.5 * s / 1000 for s in STEPS])
    assert curve.label == "gumbel-st, n=4"
    assert len(curve.runs) == 4
    (mean_curve,) = compute_curves(runs, stat="mean")
    np.testing.assert_allclose(mean_curve.center, [2.5 * s / 1000 for s in STEPS])  # 1+2+3+4 / 4 too
    # A skewed group tells them apart: multipliers 1, 2, 3, 40 -> IQM 2.5, mean 11.5.
    skew = [*runs[:3], read_run(make_run(tmp_path, "s9", {s: 40 * s / 1000 for s in STEPS}, seed=9))]
    (iqm,) = compute_curves(skew)
    (mean,) = compute_curves(skew, stat="mean")
    np.testing.assert_allclose(iqm.center, [2.5 * s / 1000 for s in STEPS])
    np.testing.assert_allclose(mean.center, [11.5 * s / 1000 for s in STEPS])


def test_bootstrap_band_is_seeded_and_brackets_the_runs(tmp_path: Path) -> None:
    runs = [read_run(p) for p in four_seeds(tmp_path)]
    (a,) = compute_curves(runs, seed=3)
    (b,) = compute_curves(runs, seed=3)
    np.testing.assert_array_equal(a.low, b.low)
    np.testing.assert_array_equal(a.high, b.high)
    lowest = np.array([1 * s / 1000 for s in STEPS])
    highest = np.array([4 * s / 1000 for s in STEPS])
    assert np.all(lowest <= a.low) and np.all(a.low < a.center) and np.all(a.center < a.high)
    assert np.all(a.high <= highest)
    # Identical runs: no spread to resample, the band is the line.
    same = np.tile(np.array([[1.0, 2.0, 3.0]]), (5, 1))
    low, high = bootstrap_ci(same, "iqm")
    np.testing.assert_array_equal(low, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(high, [1.0, 2.0, 3.0])


def test_iqm_trims_a_quarter_from_each_end() -> None:
    values = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [6.0], [100.0]])  # 8 runs: drop 2 + 2
    assert aggregate(values, "iqm")[0] == pytest.approx(3.5)
    assert aggregate(values[:3], "iqm")[0] == pytest.approx(1.0)  # 3 runs: nothing trimmed, the mean


def test_group_by_estimator_config_and_none(tmp_path: Path) -> None:
    paths = four_seeds(tmp_path, "gumbel-st") + four_seeds(tmp_path, "score", offset=100.0)
    paths.append(make_run(tmp_path, "lr", {s: 7.0 for s in STEPS}, seed=0, actor_lr=1e-3))
    runs = [read_run(p) for p in paths]
    by_config = compute_curves(runs)
    assert [c.label for c in by_config] == [
        "gumbel-st (actor_lr=0.003), n=4",
        "score (actor_lr=0.003), n=4",
        "gumbel-st (actor_lr=0.001), n=1",
    ]
    np.testing.assert_allclose(by_config[1].center, [2.5 * s / 1000 + 100 for s in STEPS])
    np.testing.assert_allclose(by_config[2].center, [7.0, 7.0, 7.0])
    by_estimator = compute_curves(runs, group_by="estimator", stat="mean")
    assert [c.label for c in by_estimator] == ["gumbel-st, n=5", "score, n=4"]
    np.testing.assert_allclose(by_estimator[0].center, [(10 * s / 1000 + 7) / 5 for s in STEPS])
    assert len(compute_curves(runs, group_by="none")) == 9
    (by_env,) = compute_curves(runs, group_by="env")
    assert by_env.label == "CartPole-v1, n=9"


def test_curves_are_compared_where_every_run_has_data(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", {1000: 0.0, 3000: 20.0, 5000: 40.0}, seed=0)
    b = make_run(tmp_path, "b", {2000: 10.0, 4000: 10.0, 6000: 10.0}, seed=1)
    (curve,) = compute_curves([read_run(a), read_run(b)], stat="mean")
    np.testing.assert_array_equal(curve.x, [2000, 3000, 4000, 5000])  # inside both runs' ranges
    np.testing.assert_allclose(curve.center, [(10 + 10) / 2, (20 + 10) / 2, (30 + 10) / 2, (40 + 10) / 2])


def test_x_in_training_seconds_from_sps(tmp_path: Path) -> None:
    run = make_run(tmp_path, "a", {2000: 1.0, 4000: 2.0, 6000: 3.0}, sps=500.0, evals={4000: 9.0})
    (curve,) = compute_curves([read_run(run)], x="seconds")
    np.testing.assert_allclose(curve.x, [4.0, 8.0, 12.0])  # 2000 steps per row at 500 steps/s
    (ev,) = compute_curves([read_run(run)], "eval/mean_return", x="seconds")
    np.testing.assert_allclose(ev.x, [8.0])
    np.testing.assert_allclose(ev.center, [9.0])


def test_sb3_run_folder_with_progress_csv(tmp_path: Path) -> None:
    run = tmp_path / "sb3_cartpole"
    (run / "sb3_log").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(Config(estimator="score").to_dict()))  # as export_checkpoint
    with open(run / "sb3_log" / "progress.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rollout/ep_rew_mean", "time/total_timesteps", "time/time_elapsed", "train/critic_loss"])
        writer.writerows([[10, 1000, 2, ""], [30, 2000, 4, 0.5], ["", 3000, 6, 0.25]])
    (curve,) = compute_curves([read_run(run)])
    np.testing.assert_array_equal(curve.x, [1000, 2000])
    np.testing.assert_array_equal(curve.center, [10.0, 30.0])
    assert curve.label == "score, n=1"
    (loss,) = compute_curves([read_run(run)], "losses/critic", x="seconds")  # native name of train/critic_loss
    np.testing.assert_array_equal(loss.x, [4.0, 6.0])
    np.testing.assert_array_equal(loss.center, [0.5, 0.25])


def test_cli_writes_png_from_a_folder_of_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "bench"  # a benchmark's output: a folder of run folders
    four_seeds(root)
    assert find_runs([root]) == sorted(root.iterdir())
    out = tmp_path / "fig.png"
    assert main([str(root), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("CartPole-v1: gumbel-st, n=4: iqm 15 [95% CI ")
    assert lines[-1] == f"wrote {out}"


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exported = tmp_path / "export"  # an SB3 export without a CSV log: a config and no curves
    exported.mkdir()
    (exported / "config.json").write_text(json.dumps(Config().to_dict()))
    assert main([str(exported), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no metrics.jsonl" in err
    run = make_run(tmp_path, "r", {2000: 1.0}, seed=0)
    assert main([str(run), "--metric", "charts/nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "no run has values of 'charts/nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_runs_with_no_common_x_range_get_their_own_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # One log row each, at the same env step but different speeds: they overlap in steps only.
    make_run(tmp_path, "a", {2000: 1.0}, sps=1000.0, seed=0)
    make_run(tmp_path, "b", {2000: 3.0}, sps=500.0, seed=1)
    assert main([str(tmp_path), "--x", "seconds", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "share no seconds range" in err and "--x steps" in err
    assert "no run has values" not in err
    assert main([str(tmp_path), "--x", "steps", "--out", str(tmp_path / "x.png")]) == 0
