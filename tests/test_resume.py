"""Resume after a stop or a crash, and the faults around it.

- kill -9 of a ``train.py`` subprocess at seeded random moments, then ``--resume``: the run
  completes, its metrics file is contiguous, ``eval.py`` loads the final checkpoint -- and,
  on our torch envs on CPU, metrics and weights equal those of a run never interrupted;
- SIGTERM: checkpoint written, exit 0, a line saying where; resuming it is exact too;
- resuming a finished run with a larger ``--total-steps`` equals the longer run;
- a corrupt newest checkpoint: resume falls back to the previous one (and sets the bad one
  aside); a torn metrics line and stale temp folders from a killed writer are cleaned up;
- a failing checkpoint write is reported and the previous checkpoint kept;
- an unwritable run folder is a clear error before any training;
- flags that would change the experiment are refused on resume.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import gumbel_ac.envs  # noqa: F401  (part of the package: registers the gumbel_ac/ env ids)
from gumbel_ac import checkpoint as ckpt_mod
from gumbel_ac.buffer import ReplayBuffer
from gumbel_ac.checkpoint import CheckpointError, list_checkpoints, load_run
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.logger import read_metrics, without_wall_clock
from gumbel_ac.trainer import resume_config, train

ROOT = Path(__file__).resolve().parents[1]

#: A small run on our batched torch CartPole: every piece of its state is restorable.
BASE: dict[str, Any] = dict(
    env="gumbel_ac/CartPole-v1",
    num_envs=8,
    learning_starts=200,
    batch_size=64,
    log_every=200,
    checkpoint_every=400,
    keep_checkpoints=2,
    eval_every=1200,
    eval_episodes=2,
    final_eval_episodes=2,
    progress=False,
)


def _flags(overrides: dict[str, Any]) -> list[str]:
    out = []
    for key, value in overrides.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            out += [flag, str(value)]
    return out


def _env() -> dict[str, str]:
    return dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT))


def _popen(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _train_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if "charts/updates" in r]


def _assert_contiguous(rows: list[dict[str, Any]], total: int, log_every: int) -> None:
    steps = [r["global_step"] for r in _train_rows(rows)]
    assert steps == sorted(set(steps)), f"duplicate or out-of-order training rows: {steps}"
    gaps = [b - a for a, b in zip([0] + steps, steps, strict=False)]
    assert max(gaps) <= log_every + BASE["num_envs"], f"missing rows: {steps}"
    assert steps[-1] == total
    all_steps = [r["global_step"] for r in rows]
    assert all_steps == sorted(all_steps)


def _assert_same_run(a: Path, b: Path) -> None:
    """Metrics (minus wall-clock keys) and final weights equal, bit for bit."""
    ra, rb = (
        without_wall_clock(read_metrics(a / "metrics.jsonl")),
        without_wall_clock(read_metrics(b / "metrics.jsonl")),
    )
    assert ra == rb, (
        next((x, y) for x, y in zip(ra, rb, strict=True) if x != y) if len(ra) == len(rb) else (len(ra), len(rb))
    )
    wa = load_file(list_checkpoints(a)[-1] / "model.safetensors")
    wb = load_file(list_checkpoints(b)[-1] / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _newest_step(run: Path) -> int:
    ckpts = list_checkpoints(run)
    return int(ckpts[-1].name.split("_")[1]) if ckpts else -1


def _wait_for_checkpoint(run: Path, proc: subprocess.Popen[str], after: int = -1, timeout: float = 120) -> bool:
    """Wait until the run has a checkpoint newer than step ``after`` (False: the process ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _newest_step(run) > after:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every resumed one is compared with (in-process, CPU)."""
    root = tmp_path_factory.mktemp("ref")
    train(Config(**BASE, total_steps=9600, runs_dir=str(root), run_name="ref"))
    return root / "ref"


def _kill_and_resume(tmp_path: Path, reference: Path, seed: int, kills: int) -> list[int]:
    """Kill -9 ``train.py`` ``kills`` times at seeded random moments after its first
    checkpoint, resuming each time; then let it finish. Returns the steps resumed from.

    Every kill must hit a live process that had not finished: the process must die of SIGKILL
    (exit status -9, not 0 from a run that ended first) with its newest checkpoint short of the
    total, and each kill must come after a new checkpoint (so every resume starts later).
    Otherwise the test would pass without testing a crash at all.
    """
    rng = random.Random(seed)
    run = tmp_path / "run"
    total = 9600
    first = _flags({**BASE, "total_steps": total, "runs_dir": tmp_path, "run_name": "run"})
    resumed_at: list[int] = []
    proc = _popen(first)
    for k in range(kills):
        alive = _wait_for_checkpoint(run, proc, after=resumed_at[-1] if resumed_at else -1)
        assert alive, f"kill {k + 1}/{kills}: train.py ended before a new checkpoint: {proc.communicate()[1]}"
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, (
            f"kill {k + 1}/{kills} did not hit a running train.py (exit status {proc.returncode}): {err}"
        )
        step = _newest_step(run)
        assert step < total, f"kill {k + 1}/{kills} came after the final checkpoint (step {step})"
        assert not resumed_at or step > resumed_at[-1], (resumed_at, step)
        resumed_at.append(step)
        proc = _popen(["--resume", str(run)])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "resuming" in out
    rows = read_metrics(run / "metrics.jsonl")
    _assert_contiguous(rows, 9600, BASE["log_every"])
    _assert_same_run(reference, run)
    ev = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), str(run), "--episodes", "2"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ev.returncode == 0, ev.stderr
    return resumed_at


def test_kill9_at_random_points_then_resume(tmp_path: Path, reference: Path) -> None:
    resumed_at = _kill_and_resume(tmp_path, reference, seed=6, kills=3)
    print("kill -9 points (resumed from steps):", resumed_at)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill9_many_points(tmp_path: Path, reference: Path, seed: int) -> None:
    resumed_at = _kill_and_resume(tmp_path, reference, seed=seed, kills=6)
    print("kill -9 points (resumed from steps):", resumed_at)


def test_sigterm_checkpoints_exits_0_and_resumes_exactly(tmp_path: Path, reference: Path) -> None:
    run = tmp_path / "run"
    proc = _popen(_flags({**BASE, "total_steps": 9600, "runs_dir": tmp_path, "run_name": "run"}))
    _wait_for_checkpoint(run, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    line = next((ln for ln in out.splitlines() if ln.startswith("interrupted at step")), None)
    if line is None:  # the run finished before the signal arrived (very slow machine)
        pytest.skip("training finished before SIGTERM")
    step = int(line.split()[3].rstrip(":"))
    assert (run / "checkpoints" / f"step_{step:09d}" / "meta.json").is_file()
    assert f"--resume {run}" in line
    proc = _popen(["--resume", str(run)])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _assert_same_run(reference, run)


def test_resume_finished_run_longer_equals_longer_run(tmp_path: Path, reference: Path) -> None:
    train(Config(**BASE, total_steps=4800, runs_dir=str(tmp_path), run_name="r"))
    rows = read_metrics(tmp_path / "r" / "metrics.jsonl")
    assert any("eval/final_mean_return" in r for r in rows)
    result = train(resume_config(tmp_path / "r", total_steps=9600))
    assert not result.interrupted
    _assert_same_run(reference, tmp_path / "r")
    # Evaluations of the first session are kept in the result.
    assert [e.step for e in result.evals] == [1200, 2400, 3600, 4800, 6000, 7200, 8400, 9600]


def test_corrupt_newest_checkpoint_falls_back(
    tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crash leaves: a torn metrics line, a half-written temp checkpoint, and (disk error)
    a newest checkpoint with a flipped byte. Resume uses the one before and still matches."""
    train(Config(**BASE, total_steps=4800, runs_dir=str(tmp_path), run_name="r"))
    run = tmp_path / "r"
    newest = list_checkpoints(run)[-1]
    data = bytearray((newest / "training.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x55
    (newest / "training.safetensors").write_bytes(bytes(data))
    stale = run / "checkpoints" / ".step_000005200.tmp-999999"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"global_step": 99999, "losses/cri')
    capsys.readouterr()
    train(resume_config(run, total_steps=9600))
    out = capsys.readouterr().out
    assert "cannot resume from step_000004800" in out and "checksum mismatch" in out
    assert not stale.exists()
    assert (run / "checkpoints" / "bad_step_000004800").is_dir() or not (
        run / "checkpoints" / "bad_step_000004800"
    ).exists()
    _assert_same_run(reference, run)


def test_resume_refuses_experiment_changes_and_bad_paths(
    tmp_path: Path, script_main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    train(Config(**{**BASE, "total_steps": 400}, runs_dir=str(tmp_path), run_name="r"))
    with pytest.raises(ConfigError, match="critic_lr"):
        train(resume_config(tmp_path / "r", critic_lr=1e-2))
    with pytest.raises(ConfigError, match="num_envs"):
        train(resume_config(tmp_path / "r", num_envs=4))
    with pytest.raises(CheckpointError, match="no such run folder"):
        train(Config(resume=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        train(Config(resume=str(tmp_path / "empty")))
    # The CLI: one error line, exit 2.
    capsys.readouterr()
    assert script_main("train")(["--resume", str(tmp_path / "r"), "--gamma", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("error: a resumed run keeps its config") and "gamma" in err


def test_gymnasium_env_resume_reseeds_and_completes(tmp_path: Path) -> None:
    """Numpy envs cannot be restored: the run is re-seeded from (seed, step) and completes."""
    cfg = dict(BASE, env="CartPole-v1", total_steps=800, eval_every=0)
    train(Config(**cfg, runs_dir=str(tmp_path), run_name="g"))
    result = train(resume_config(tmp_path / "g", total_steps=1600))
    rows = read_metrics(tmp_path / "g" / "metrics.jsonl")
    _assert_contiguous(rows, 1600, BASE["log_every"])
    assert result.final_mean == result.final_mean  # finite eval happened


def test_resume_without_saved_replay(tmp_path: Path) -> None:
    train(Config(**{**BASE, "total_steps": 800}, save_replay=False, runs_dir=str(tmp_path), run_name="n"))
    meta = json.loads((list_checkpoints(tmp_path / "n")[-1] / "meta.json").read_text())
    assert meta["training"]["state"]["replay"] == {"mode": "none", "size": 0, "pos": 0}
    train(resume_config(tmp_path / "n", total_steps=1600))
    _assert_contiguous(read_metrics(tmp_path / "n" / "metrics.jsonl"), 1600, BASE["log_every"])


def test_failed_checkpoint_write_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = ckpt_mod._fsync_write
    calls = {"n": 0}

    def failing(path: Path, data: bytes) -> None:
        if "step_000000800" in str(path) and path.name == "training.safetensors":
            calls["n"] += 1
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ckpt_mod, "_fsync_write", failing)
    result = train(Config(**{**BASE, "total_steps": 1200, "keep_checkpoints": 5}, runs_dir=str(tmp_path), run_name="f"))
    out = capsys.readouterr().out
    assert calls["n"] == 1 and "checkpoint at step 800 failed" in out and "No space left" in out
    names = [p.name for p in list_checkpoints(tmp_path / "f")]
    assert names == ["step_000000400", "step_000001200"]
    assert not [p for p in (tmp_path / "f" / "checkpoints").iterdir() if p.name.startswith(".")]
    assert load_run(tmp_path / "f" / "checkpoints" / "step_000000400").step == 400
    assert result.final_mean == result.final_mean


def test_unwritable_run_dir_is_a_clear_error_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="not writable"):
        train(Config(**{**BASE, "total_steps": 400}, runs_dir=str(blocker), run_name="x"))
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="not writable"):
            train(Config(**{**BASE, "total_steps": 400}, runs_dir=str(ro), run_name="x"))


def test_training_state_of_an_older_format_is_refused_clearly(tmp_path: Path) -> None:
    train(Config(**{**BASE, "total_steps": 400}, runs_dir=str(tmp_path), run_name="old"))
    ckpt = list_checkpoints(tmp_path / "old")[-1]
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["training"]["version"] = 1  # what gumbel_ac wrote before the one-state-tree format
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"training state version 1 cannot be resumed.*eval\.py"):
        train(resume_config(tmp_path / "old", total_steps=800))
    assert load_run(ckpt).step == 400  # the weights still load for evaluation


def test_replay_state_exact_ring_newest_rows_and_refusals() -> None:
    def filled(capacity: int, adds: int) -> ReplayBuffer:
        buf = ReplayBuffer(capacity, obs_dim=1, num_heads=1, device="cpu")
        for start in range(0, adds, 3):
            obs = torch.arange(start, start + 3, dtype=torch.float32).unsqueeze(-1)
            buf.add(
                obs, torch.zeros(3, 1, dtype=torch.long), obs.squeeze(-1), obs + 1, torch.zeros(3, dtype=torch.bool)
            )
        return buf

    buf = filled(5, 9)  # 9 rows into 5 slots: the ring has wrapped (pos 4)
    state = buf.state_dict()
    assert state["mode"] == "exact" and state["pos"] == buf.pos and state["size"] == 5
    other = ReplayBuffer(5, obs_dim=1, num_heads=1, device="cpu")
    other.load_state_dict(state)
    assert torch.equal(other.obs_CD, buf.obs_CD) and other.pos == buf.pos and len(other) == 5
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(other.sample(32, g1).obs_BD, buf.sample(32, g2).obs_BD)  # same ring: same samples
    buf.save_cap = 2
    newest = buf.state_dict()
    assert newest["mode"] == "newest" and newest["obs"].squeeze(-1).tolist() == [7.0, 8.0]  # oldest first
    buf.save_cap = 0
    assert buf.state_dict() == {"mode": "none", "size": 0, "pos": 0}
    for bad in (
        {**state, "pos": 7},
        {**state, "size": 6},
        {**state, "obs": state["obs"][:3]},
        {**state, "mode": "all"},
        {**state, "extra": torch.zeros(1)},
    ):
        with pytest.raises(ValueError, match="replay"):
            other.load_state_dict(bad)
    assert torch.equal(other.obs_CD, buf.obs_CD) and len(other) == 5  # refused states changed nothing
