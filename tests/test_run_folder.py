"""A run folder belongs to one run and one writer; resume keeps the run's own settings; a run
never ends without a checkpoint it can be resumed from.

- a fresh run refuses a folder holding another run's files (``--overwrite`` replaces them);
- a second process cannot write a folder in use (the error names the holder's PID);
- ``train(Config(resume=...))`` from Python continues with the run's own total_steps and
  cadence, exactly like ``train.py --resume``; a named override equal to a default still applies;
- a failed final checkpoint, or a streak of failed periodic ones, stops with an error naming
  what is on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import gumbel_ac.envs  # noqa: F401  (registers the gumbel_ac/ env ids)
from gumbel_ac import checkpoint as ckpt_mod
from gumbel_ac.checkpoint import list_checkpoints
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.fsutil import FolderLock
from gumbel_ac.learner import TrainingError
from gumbel_ac.logger import read_metrics
from gumbel_ac.resume import resume_config
from gumbel_ac.trainer import train

BASE: dict[str, Any] = dict(
    env="gumbel_ac/CartPole-v1",
    num_envs=8,
    learning_starts=200,
    batch_size=32,
    log_every=200,
    checkpoint_every=400,
    eval_every=0,
    final_eval_episodes=0,
    progress=False,
)


def _saved(run: Path) -> dict[str, Any]:
    return json.loads((run / "config.json").read_text())


def test_a_new_run_never_writes_into_another_runs_folder(tmp_path: Path) -> None:
    train(Config(**BASE, total_steps=400, seed=0, runs_dir=str(tmp_path), run_name="same"))
    before = (tmp_path / "same" / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match=r"already holds a run .*--resume .*--run-name.*--overwrite"):
        train(Config(**BASE, total_steps=400, seed=5, runs_dir=str(tmp_path), run_name="same"))
    assert (tmp_path / "same" / "metrics.jsonl").read_text() == before  # nothing touched
    assert _saved(tmp_path / "same")["seed"] == 0
    # --overwrite: the old run's files are replaced, not mixed with the new run's.
    train(Config(**BASE, total_steps=800, seed=5, runs_dir=str(tmp_path), run_name="same", overwrite=True))
    assert _saved(tmp_path / "same")["seed"] == 5
    steps = [r["global_step"] for r in read_metrics(tmp_path / "same" / "metrics.jsonl")]
    assert steps == sorted(steps) and steps.count(400) == 1 and steps[-1] == 800
    with pytest.raises(ConfigError, match="only one"):
        train(Config(**BASE, resume=str(tmp_path / "same"), overwrite=True))


def test_one_writer_per_run_folder(tmp_path: Path) -> None:
    train(Config(**BASE, total_steps=400, runs_dir=str(tmp_path), run_name="r"))
    holder = FolderLock(tmp_path / "r").acquire()  # as a live training process would hold it
    try:
        with pytest.raises(ConfigError, match=rf"in use by another gumbel_ac process \(PID {os.getpid()}\)"):
            train(resume_config(tmp_path / "r", total_steps=800))
    finally:
        holder.release()
    result = train(resume_config(tmp_path / "r", total_steps=800))  # free again: resumes
    assert list_checkpoints(result.run_dir)[-1].name.endswith("800")


def test_python_resume_keeps_the_runs_own_settings_like_the_cli(tmp_path: Path, script_main: Any) -> None:
    train(Config(**BASE, total_steps=400, runs_dir=str(tmp_path), run_name="r"))
    # Everything left at its default means "the run's value": total_steps stays 400, so a
    # finished run has nothing to do, and config.json keeps the run's cadence.
    result = train(Config(env=BASE["env"], resume=str(tmp_path / "r")))
    assert result.evals == [] or all(e.step <= 400 for e in result.evals)
    saved = _saved(tmp_path / "r")
    assert (saved["total_steps"], saved["log_every"], saved["checkpoint_every"]) == (400, 200, 400)
    # A named override applies even when it equals a dataclass default (log_every=2000).
    train(resume_config(tmp_path / "r", total_steps=800, log_every=2000))
    assert (_saved(tmp_path / "r")["total_steps"], _saved(tmp_path / "r")["log_every"]) == (800, 2000)
    # The CLI: the same rule.
    assert script_main("train")(["--resume", str(tmp_path / "r"), "--total-steps", "1200", "--log-every", "200"]) == 0
    assert (_saved(tmp_path / "r")["total_steps"], _saved(tmp_path / "r")["log_every"]) == (1200, 200)


def _fail_training_writes(monkeypatch: pytest.MonkeyPatch, from_step: int) -> None:
    real = ckpt_mod._fsync_write

    def failing(path: Path, data: bytes) -> None:
        step = int(path.parent.name.split("_")[1].split(".")[0]) if "step_" in path.parent.name else -1
        if path.name == "training.safetensors" and step >= from_step:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ckpt_mod, "_fsync_write", failing)


def test_a_failed_final_checkpoint_is_an_error_naming_what_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script_main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_training_writes(monkeypatch, from_step=1200)
    with pytest.raises(TrainingError, match=r"final checkpoint at step 1200 could not be written.*step_000000800"):
        train(Config(**BASE, total_steps=1200, runs_dir=str(tmp_path), run_name="f"))
    # From the CLI: exit 2 and one line.
    argv = [
        "--env",
        BASE["env"],
        "--total-steps",
        "1200",
        "--num-envs",
        "8",
        "--learning-starts",
        "200",
        "--checkpoint-every",
        "0",
        "--eval-every",
        "0",
        "--final-eval-episodes",
        "0",
        "--no-progress",
        "--runs-dir",
        str(tmp_path),
        "--run-name",
        "g",
    ]
    capsys.readouterr()
    assert script_main("train")(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the final checkpoint") and "no checkpoint is on disk" in err[-1]


def test_a_streak_of_failed_periodic_checkpoints_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_training_writes(monkeypatch, from_step=400)
    cfg = Config(**{**BASE, "checkpoint_every": 200}, total_steps=4000, runs_dir=str(tmp_path), run_name="s")
    with pytest.raises(TrainingError, match=r"last 3 checkpoints at step 800 could not be written.*step_000000200"):
        train(cfg)
    assert [c.name for c in list_checkpoints(tmp_path / "s")] == ["step_000000200"]


def test_the_best_policy_is_kept_and_eval_py_says_which_it_evaluates(
    tmp_path: Path, script_main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = {**BASE, "eval_every": 400, "eval_episodes": 3}
    result = train(Config(**cfg, total_steps=2000, runs_dir=str(tmp_path), run_name="b"))
    periodic = result.evals  # final_eval_episodes=0 (BASE): every record is a periodic evaluation
    assert [e.step for e in periodic] == [400, 800, 1200, 1600]
    best = max(periodic, key=lambda e: e.mean)
    meta = json.loads((tmp_path / "b" / "best" / "meta.json").read_text())
    assert meta["step"] == min(e.step for e in periodic if e.mean == best.mean)  # the first time it was reached
    assert meta["training"]["best_eval"]["mean"] == best.mean
    capsys.readouterr()
    assert script_main("eval")([str(tmp_path / "b"), "--checkpoint", "best", "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert f"step {meta['step']}" in out and "the best periodic evaluation" in out
    assert script_main("eval")([str(tmp_path / "b"), "--checkpoint", "step_1200", "--episodes", "1"]) == 0
    assert "step 1200" in capsys.readouterr().out
    assert script_main("eval")([str(tmp_path / "b"), "--checkpoint", "step_400", "--episodes", "1"]) == 2
    assert "no checkpoint at step 400" in capsys.readouterr().err  # pruned: the newest 3 are kept
    assert script_main("eval")([str(tmp_path / "b"), "--checkpoint", "newest", "--episodes", "1"]) == 2
    assert "must be last, best or step_N" in capsys.readouterr().err
    # Resume continues from the last checkpoint, never from best/.
    resumed = train(resume_config(tmp_path / "b", total_steps=2400))
    assert resumed.evals[0].step == 400 and list_checkpoints(tmp_path / "b")[-1].name.endswith("2400")
