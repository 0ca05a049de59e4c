"""The factorial study (gumbel_ac/study.py): its design, its statistics on hand-made inputs, and
an end-to-end ``--quick`` run into a temporary folder (outputs, resumption)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gumbel_ac import study
from gumbel_ac.estimators import ESTIMATORS
from gumbel_ac.study import (
    TASKS,
    Cell,
    Settings,
    cells_for,
    comparisons_for,
    holm,
    iqm,
    iqm_ci,
    paired_iqm_difference,
    probability_of_improvement,
    tuning_grid,
    wilcoxon_p,
)

# ----------------------------------------------------------------------------- design


def test_cells_are_the_full_factorial_plus_references() -> None:
    rl = cells_for(TASKS["pennies2"])
    assert len(rl) == 3 * 4 + 4 and len(set(rl)) == len(rl)
    assert {c.act for c in rl} == {"sample", "mode", "epsilon"}
    # the 2x2 estimators are registered and span both levels of both factors
    assert set(study.FACTORIAL) | set(study.REFERENCES) <= set(ESTIMATORS)
    assert {v[0] for v in study.FACTORIAL.values()} == {"sampled", "mode"}
    assert {v[1] for v in study.FACTORIAL.values()} == {"noisy", "noise-free"}
    assert {(c.act, c.estimator) for c in rl if c.estimator in study.REFERENCES} == {
        ("sample", r) for r in study.REFERENCES
    }
    distill = cells_for(TASKS["distill16"])
    assert len(distill) == 4 + 4 and {c.act for c in distill} == {study.NO_ACT}


def test_tuning_grid_is_the_same_budget_for_every_cell() -> None:
    task = TASKS["bandit16"]
    assert len(tuning_grid(task, Cell("mode", "gumbel-st"), quick=False)) == 4 * 2
    assert {t for t, _ in tuning_grid(task, Cell("sample", "softmax-st"), quick=False)} == {0.2, 0.5, 1.0, 2.0}
    assert tuning_grid(task, Cell("sample", "exact"), quick=False) == [(1.0, 1e-3), (1.0, 3e-3)]  # no temperature
    assert len(tuning_grid(task, Cell("sample", "gumbel-st"), quick=True)) == 1


def test_comparisons_pair_cells_that_differ_in_one_factor() -> None:
    comps = comparisons_for(TASKS["pennies2"])
    factors = [c.factor for c in comps]
    assert factors.count("acting") == 3 and factors.count("Q evaluation point") == 1
    assert factors.count("backward softmax") == 1 and factors.count("reference") == 4
    for comp in comps:
        assert len(comp.cells_a) == len(comp.cells_b)
        for ca, cb in zip(comp.cells_a, comp.cells_b, strict=True):
            differing = [
                name
                for name, x, y in (
                    ("act", ca.act, cb.act),
                    ("q", ca.q_point, cb.q_point),
                    ("bw", ca.backward, cb.backward),
                )
                if x != y
            ]
            if comp.factor == "reference":
                assert cb.estimator == "gumbel-st" and ca.act == cb.act == "sample"
            else:
                assert len(differing) == 1, (comp.factor, ca, cb)
    backward = next(c for c in comps if c.factor == "backward softmax")
    assert len(backward.cells_a) == 3 * 2  # strata: acting x Q point
    assert [c.factor for c in comparisons_for(TASKS["distill16"])].count("acting") == 0


# ----------------------------------------------------------------------------- statistics


def test_iqm_of_known_arrays() -> None:
    assert iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # drops 1, 2 and 7, 8
    assert iqm(np.array([0.0, 0.0, 1.0, 100.0, -100.0, 1.0, 1.0, 0.0])) == pytest.approx(0.5)  # outliers cut
    assert iqm(np.array([[1.0, 2.0], [3.0, 1000.0]])) == pytest.approx(2.5)  # all values pooled
    assert iqm(np.array([3.0, 5.0, 7.0])) == pytest.approx(5.0)  # floor(3/4) = 0 cut: the mean
    from rliable import metrics

    x = np.random.default_rng(0).normal(size=(13, 3))
    assert iqm(x) == pytest.approx(float(metrics.aggregate_iqm(x)))


def test_holm_on_known_p_values() -> None:
    # sorted 0.01, 0.02, 0.03, 0.04 (m = 4): 0.04, 0.06, 0.06 (monotone), 0.06
    assert holm([0.04, 0.01, 0.03, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.001]) == pytest.approx([0.001])
    out = holm([0.01, math.nan, 0.04])  # NaN left out of m
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([]) == []


def test_iqm_interval_covers_and_is_reproducible() -> None:
    scores = np.random.default_rng(1).normal(5.0, 1.0, size=(20, 1))
    value, low, high = iqm_ci(scores, reps=300, seed=3)
    assert low < value < high and value == pytest.approx(iqm(scores))
    assert (low, high) == iqm_ci(scores, reps=300, seed=3)[1:]
    assert 4.0 < low and high < 6.0
    assert iqm_ci(np.array([[2.0]]), reps=10) == (2.0, 2.0, 2.0)  # one run: nothing to resample
    assert iqm_ci(np.full((6, 2), 3.0), reps=50) == (3.0, 3.0, 3.0)  # no spread: a zero-width interval


def test_stratified_resample_keeps_strata() -> None:
    """Every resampled value of a stratum comes from that stratum (runs drawn within it)."""
    scores = np.array([[0.0, 10.0, 20.0], [1.0, 11.0, 21.0], [2.0, 12.0, 22.0]])
    resampled = study.stratified_resample(scores, 500, np.random.default_rng(0))
    assert resampled.shape == (500, 3, 3)
    for m in range(3):
        assert set(np.unique(resampled[:, :, m])) == set(scores[:, m])


def test_intervals_agree_with_rliable() -> None:
    """Point estimates equal rliable's functions; the vectorised bootstrap's percentile intervals
    agree with rliable's own (arch-based) bootstrap within Monte-Carlo error."""
    from rliable import library as rly
    from rliable import metrics

    rng = np.random.default_rng(4)
    a = rng.normal(1.0, 1.0, size=(10, 3))
    b = rng.normal(0.5, 1.0, size=(10, 3))
    np.random.seed(0)  # rliable's bootstrap draws from numpy's global generator
    _, ref_iqm = rly.get_interval_estimates({"a": a}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=4000)
    value, low, high = iqm_ci(a, reps=4000)
    assert value == pytest.approx(float(metrics.aggregate_iqm(a)))
    width = high - low
    assert abs(low - ref_iqm["a"][0, 0]) < 0.1 * width and abs(high - ref_iqm["a"][1, 0]) < 0.1 * width
    np.random.seed(0)
    _, ref_pi = rly.get_interval_estimates(
        {"ab": [a, b]}, lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=1000
    )
    value, low, high = probability_of_improvement(a, b, reps=4000)
    assert value == pytest.approx(float(metrics.probability_of_improvement(a, b)))
    assert abs(low - ref_pi["ab"][0, 0]) < 0.15 * (high - low) and abs(high - ref_pi["ab"][1, 0]) < 0.15 * (high - low)


def test_paired_difference_interval_uses_the_pairing() -> None:
    """b = a + 1 exactly: the paired difference is -1 in every resample (a zero-width interval),
    though each array alone is very spread out."""
    a = np.random.default_rng(2).normal(0.0, 10.0, size=(12, 3))
    diff, low, high = paired_iqm_difference(a, a + 1.0, reps=300)
    assert diff == pytest.approx(-1.0) and low == pytest.approx(-1.0) and high == pytest.approx(-1.0)
    # unpaired, the same arrays' IQMs would vary by several units per resample
    shuffled = a[::-1] + 1.0
    _, low, high = paired_iqm_difference(a, shuffled, reps=300)
    assert high - low > 1.0
    with pytest.raises(ValueError, match="shape"):
        paired_iqm_difference(a, a[:5], reps=10)


def test_probability_of_improvement_by_hand() -> None:
    a = np.array([[3.0], [4.0], [5.0]])
    b = np.array([[1.0], [2.0], [6.0]])
    # pairs a > b: 3>1, 3>2, 4>1, 4>2, 5>1, 5>2 = 6 of 9
    value, low, high = probability_of_improvement(a, b, reps=200)
    assert value == pytest.approx(6 / 9) and low <= value <= high
    assert probability_of_improvement(a, a, reps=10)[0] == pytest.approx(0.5)  # ties count one half
    # two strata: averaged (stratum 2: b always wins)
    two_a = np.hstack([a, np.zeros((3, 1))])
    two_b = np.hstack([b, np.ones((3, 1))])
    assert probability_of_improvement(two_a, two_b, reps=10)[0] == pytest.approx((6 / 9 + 0.0) / 2)


def test_performance_profile_is_the_score_distribution() -> None:
    results = [
        study.RunResult(
            study.RunSpec("pennies2", "sample", "gumbel-st", 0.5, 1e-3, seed, 10, 5, "report"),
            [5, 10],
            [v, v],
            v,
            v,
            0.0,
        )
        for seed, v in enumerate([1.0, 2.0, 3.0, 4.0])
    ]
    grid, profiles = study.performance_profiles(results, [Cell("sample", "gumbel-st")], "auc", reps=100, points=4)
    assert grid.tolist() == [1.0, 2.0, 3.0, 4.0]
    center, low, high = profiles["sample/gumbel-st"]
    assert center.tolist() == [0.75, 0.5, 0.25, 0.0]  # P(score > x)
    assert (low <= center).all() and (center <= high).all()


def test_wilcoxon_p() -> None:
    a = np.arange(10.0).reshape(10, 1)
    assert wilcoxon_p(a, a) == 1.0  # no difference at all
    up = a + np.arange(1.0, 11.0).reshape(10, 1)  # ten distinct positive differences
    assert wilcoxon_p(up, a) == pytest.approx(2 * 2.0**-10)  # exact: only the all-positive signs are as extreme
    assert wilcoxon_p(a, up) == pytest.approx(2 * 2.0**-10)  # two-sided


# ----------------------------------------------------------------------------- CLI


def test_parse_args_quick_and_full() -> None:
    quick = study.parse_args(["--quick", "--out", "x"])
    assert quick.quick and quick.tasks == study.QUICK_TASKS and quick.seeds == 2 and quick.binary_seeds == 2
    full = study.parse_args([])
    assert full.tasks == tuple(TASKS) and full.seeds == 10 and full.binary_seeds == 20 and full.tune_seeds == 1
    with pytest.raises(SystemExit):
        study.parse_args(["--seeds", "0"])


def test_full_plan_keeps_tuning_and_reported_seeds_apart() -> None:
    settings = Settings(tasks=("pennies2", "deepsea10", "distill16"), tune_seeds=3)
    tuning = study.plan_tuning(settings)
    assert {s.seed for s in tuning} == {1000, 1001, 1002}
    # pennies2: 12 factorial cells x 8 + gumbel-rao x 8 + 3 tau-free x 2, three tuning seeds
    assert sum(s.task == "pennies2" for s in tuning) == 3 * (12 * 8 + 8 + 3 * 2)
    chosen = {t: {c: tuning_grid(TASKS[t], c, quick=False)[0] for c in cells_for(TASKS[t])} for t in settings.tasks}
    report = study.plan_report(settings, chosen)
    assert {s.seed for s in report if s.task == "pennies2"} == set(range(10))
    assert {s.seed for s in report if s.task == "deepsea10"} == set(range(20))  # binary outcome
    assert all(s.phase == "report" for s in report) and len({s.name for s in report}) == len(report)


def test_first_seed_moves_only_the_reported_seeds() -> None:
    base = Settings(tasks=("pennies2", "deepsea10"))
    moved = dataclasses.replace(base, first_seed=20)
    assert study.plan_tuning(moved) == study.plan_tuning(base)  # same tuning, so the same chosen points
    chosen = {t: {c: tuning_grid(TASKS[t], c, quick=False)[0] for c in cells_for(TASKS[t])} for t in base.tasks}
    report = study.plan_report(moved, chosen)
    assert {s.seed for s in report if s.task == "pennies2"} == set(range(20, 30))
    assert {s.seed for s in report if s.task == "deepsea10"} == set(range(20, 40))
    assert study.parse_args(["--first-seed", "20"]).first_seed == 20
    with pytest.raises(SystemExit):
        study.parse_args(["--first-seed", "1000"])  # the tuning seeds start there


@pytest.mark.parametrize(
    ("original", "replication", "verdict"),
    [
        ((0.5, 0.2, 0.8), (0.6, 0.1, 1.1), "holds"),
        ((0.5, 0.2, 0.8), (1.5, 1.1, 1.9), "same sign, outside the CI"),
        ((0.5, 0.2, 0.8), (-0.1, -0.4, 0.2), "sign flipped"),
        ((-0.5, -0.8, -0.2), (0.3, -0.1, 0.7), "sign flipped"),
        ((0.5, 0.2, 0.8), (0.0, 0.0, 0.0), "gone"),
        ((0.1, -0.2, 0.4), (-0.1, -0.3, 0.05), "no effect, again"),
        ((0.1, -0.2, 0.4), (0.9, 0.5, 1.3), "an effect appeared"),
    ],
)
def test_replication_verdicts_by_hand(original: tuple, replication: tuple, verdict: str) -> None:
    def effect(diff: float, low: float, high: float) -> study.EffectRow:
        return study.EffectRow("t", "auc", "acting", "sample", "mode", 4, 10, 0.0, 0.0, diff, low, high, 0.5, 0, 1, 1)

    rows = study.replication_rows([], [effect(*original)], [], [effect(*replication)])
    assert [r.verdict for r in rows] == [verdict]
    assert rows[0].fragile == (verdict in ("sign flipped", "gone", "an effect appeared"))
    assert rows[0].name == "acting: sample vs mode"


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, study.StudyResult]]:
    """One ``--quick`` study on two tasks (the smallest RL one and the distillation)."""
    out = tmp_path_factory.mktemp("study")
    settings = Settings(out=out, tasks=("pennies2", "distill16"), seeds=2, binary_seeds=2, quick=True, reps=100)
    # half of --quick's budgets: the test checks the pipeline, not what is learned
    saved = dict(study.TASKS)
    study.TASKS["pennies2"] = dataclasses.replace(
        saved["pennies2"], quick_steps=800, quick_eval_every=400, quick_learning_starts=200
    )
    study.TASKS["distill16"] = dataclasses.replace(saved["distill16"], quick_steps=40)
    try:
        yield out, study.run_study(settings, log=lambda _: None)
    finally:
        study.TASKS.clear()
        study.TASKS.update(saved)


def test_quick_study_writes_every_output(quick_run: tuple[Path, study.StudyResult]) -> None:
    out, result = quick_run
    names = {f.name for f in result.files}
    expected = {"runs.csv", "runs.json", "tuning.csv", "cells.csv", "effects.csv", "tables.md", "effects.md"}
    assert expected | {"iqm_auc.png", "iqm_final.png", "effects.png", "profiles_pennies2.png"} <= names
    for f in result.files:
        assert f.stat().st_size > 0
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == 2 * (16 + 8)  # two seeds of every cell, no tuning runs with a one-point grid
    for run in runs:
        assert len(run["eval_steps"]) == len(run["sampled_curve"]) >= 2
        assert run["auc"] == pytest.approx(float(np.mean(run["sampled_curve"])))
    pennies = [r for r in runs if r["spec"]["task"] == "pennies2"]
    for r in pennies:  # the gradient-cosine diagnostic, one value per evaluation point
        assert len(r["cosine_curve"]) == len(r["eval_steps"])
        assert all(-1.0 - 1e-9 <= c <= 1.0 + 1e-9 for c in r["cosine_curve"])
        if r["spec"]["estimator"] == "exact":
            assert all(c == pytest.approx(1.0) for c in r["cosine_curve"])
    assert all(0.0 <= r["auc"] <= 32.0 and 0.0 <= r["final"] <= 32.0 for r in pennies)
    assert all(r["eval_steps"][-1] >= 800 for r in pennies)
    distill = [r for r in runs if r["spec"]["task"] == "distill16"]
    assert all(r["auc"] <= 0.0 and r["final"] <= -0.79 for r in distill)  # -KL: at best -log 0.45 for the mode
    with open(out / "runs.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(runs)


def test_quick_study_statistics_structure(quick_run: tuple[Path, study.StudyResult]) -> None:
    out, result = quick_run
    with open(out / "cells.csv") as fh:
        cells = list(csv.DictReader(fh))
    assert len(cells) == 2 * (16 + 8)  # every cell x both metrics
    for row in cells:
        assert float(row["low"]) <= float(row["iqm"]) + 1e-9 <= float(row["high"]) + 2e-9
        assert int(row["seeds"]) == 2
    with open(out / "effects.csv") as fh:
        effects = list(csv.DictReader(fh))
    # pennies2: 3 acting + 1 + 1 + 4 references; distill16: 1 + 1 + 4; both metrics
    assert len(effects) == 2 * (9 + 6)
    p_values = [float(e["p_value"]) for e in effects]
    assert [float(e["p_holm"]) for e in effects] == pytest.approx(holm(p_values))
    for e in effects:
        assert float(e["p_holm"]) >= float(e["p_value"]) - 1e-12
        assert 0.0 <= float(e["p_improve"]) <= 1.0
        assert float(e["diff"]) == pytest.approx(float(e["iqm_a"]) - float(e["iqm_b"]))
    tables = (out / "tables.md").read_text()
    assert "### pennies2" in tables and "### distill16" in tables and "p (Holm)" in tables


def test_quick_study_resumes_without_training(quick_run: tuple[Path, study.StudyResult], monkeypatch) -> None:
    out, first = quick_run

    def no_training(*_a, **_k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(study, "_run_rl", no_training)
    monkeypatch.setattr(study, "_run_distill", no_training)
    monkeypatch.setitem(
        study.TASKS,
        "pennies2",
        dataclasses.replace(study.TASKS["pennies2"], quick_steps=800, quick_eval_every=400, quick_learning_starts=200),
    )
    monkeypatch.setitem(study.TASKS, "distill16", dataclasses.replace(study.TASKS["distill16"], quick_steps=40))
    settings = Settings(out=out, tasks=("pennies2", "distill16"), seeds=2, binary_seeds=2, quick=True, reps=100)
    again = study.run_study(settings, log=lambda _: None)
    assert [r.auc for r in again.results] == [r.auc for r in first.results]
    # another folder reads them through --reuse, trains nothing either, and writes its own outputs
    elsewhere = out.parent / f"{out.name}_reuse"
    reused = study.run_study(dataclasses.replace(settings, out=elsewhere, reuse=out), log=lambda _: None)
    assert [r.auc for r in reused.results] == [r.auc for r in first.results]
    assert (elsewhere / "effects.csv").is_file()
    # a stored result is trusted for its own spec only
    mine = next(r for r in first.results if r.spec.task == "distill16")
    stored = out / "runs" / f"{mine.spec.name}.json"
    assert study.load_finished(stored, mine.spec) == mine
    other = dataclasses.replace(mine.spec, lr=mine.spec.lr * 2)
    assert study.load_finished(stored, other) is None


def test_compare_reads_the_outputs_back_and_a_study_replicates_itself(
    quick_run: tuple[Path, study.StudyResult], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, result = quick_run
    for kind, name, written in (
        (study.EffectRow, "effects.csv", result.effects),
        (study.CellRow, "cells.csv", result.cells),
    ):
        back = study._read_rows(out / name, kind)
        assert len(back) == len(written)
        for got, want in zip(back, written, strict=True):
            for x, y in zip(dataclasses.astuple(got), dataclasses.astuple(want), strict=True):
                assert x == pytest.approx(y, nan_ok=True) if isinstance(y, float) else x == y
    # the same folder as its own replication: every estimate lands on itself
    assert study.main(["--compare", str(out), str(out)]) == 0
    rows = list(csv.DictReader(open(out / "replication.csv")))
    assert len(rows) == len(result.effects) + len(result.cells)
    assert {r["verdict"] for r in rows} <= {"holds", "no effect, again"} and all(r["fragile"] == "False" for r in rows)
    assert "| estimates | metric |" in capsys.readouterr().out
    assert study.main(["--compare", str(out), str(tmp_path)]) == 2  # not a study folder: one clear error


def test_gradient_cosine_is_one_for_exact_and_below_for_samplers() -> None:
    import torch

    from gumbel_ac.agent import make_agent
    from gumbel_ac.distributions import ActionSpec

    torch.manual_seed(0)
    agent = make_agent(obs_dim=3, spec=ActionSpec((16,)), hidden_sizes=(16,), alpha=0.05, target_entropy_ratio=0.1)
    task = TASKS["bandit16"]
    assert study.gradient_cosine(agent, task, "exact", 1.0, seed=0) == pytest.approx(1.0)
    sampled = study.gradient_cosine(agent, task, "score-sampled", 1.0, seed=0)
    assert -1.0 <= sampled < 0.99
    assert sampled == study.gradient_cosine(agent, task, "score-sampled", 1.0, seed=0)  # seeded
