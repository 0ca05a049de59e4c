"""What users read: the console lines off a terminal, the progress bar, and TensorBoard events."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gumbel_ac import Config, train
from gumbel_ac.logger import TENSORBOARD_DIR, MetricsLogger, format_value, read_metrics


def make_logger(
    run_dir: Path, *, progress: bool = True, start_step: int = 0, total_steps: int = 10_000
) -> MetricsLogger:
    return MetricsLogger(
        run_dir,
        total_steps=total_steps,
        estimator="gumbel-st",
        progress=progress,
        track=False,
        wandb_project="p",
        wandb_entity=None,
        run_name=run_dir.name,
        config={},
        start_step=start_step,
    )


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag's (step, value) pairs, as TensorBoard's reader loads them."""
    acc = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.99, "0.99"), (1.0, "1"), (475.3, "475"), (21.34, "21.3"), (-0.5, "-0.5"), (12345.6, "12346"), (0.0, "0")],
)
def test_format_value_three_significant_digits(value: float, text: str) -> None:
    assert format_value(value) == text


def test_format_value_extremes_and_missing() -> None:
    assert format_value(2.5e-5) == "2.5e-05"
    assert format_value(3.2e7) == "3.2e+07"
    assert format_value(None) == "-"
    assert format_value(float("nan")) == "-"


def test_plain_lines_off_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not a TTY (pytest's capture): one line per row, sps averaged over the run so far."""
    logger = make_logger(tmp_path)
    logger.log(2000, {"charts/sps": 1000.0, "charts/episodic_return": 0.99, "losses/critic": 1.0})
    logger.log(4000, {"charts/sps": 4000.0})  # no episode ended in this window
    logger.log(4000, {"eval/mean_return": 0.987654, "eval/std_return": 0.01})
    logger.message("a message")
    logger.log(6000, {"charts/sps": 2000.0, "charts/episodic_return": 475.3})
    logger.log(6000, {"eval/final_mean_return": 500.0, "eval/final_std_return": 0.0})  # the trainer's own line
    logger.close()
    assert capsys.readouterr().out.splitlines() == [
        "step  2000/10000  sps 1000  return 0.99",
        "step  4000/10000  sps 1600  return -",  # 4000 steps in 2 + 0.5 s, not the window's 4000
        "step  4000/10000  eval 0.988 ± 0.01",
        "a message",
        "step  6000/10000  sps 1714  return 475",  # 6000 steps in 3.5 s
    ]


def test_no_progress_prints_only_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logger = make_logger(tmp_path, progress=False)
    logger.log(2000, {"charts/sps": 1000.0, "charts/episodic_return": 1.0})
    logger.message("only this")
    logger.close()
    assert capsys.readouterr().out == "only this\n"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal_shows_average_sps_and_unwrapped_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    term = FakeTerminal()
    monkeypatch.setattr("sys.stdout", term)
    monkeypatch.setenv("COLUMNS", "60")
    logger = make_logger(tmp_path)
    assert logger._progress is not None
    logger.log(2000, {"charts/sps": 1000.0, "charts/episodic_return": 0.99})
    logger.log(4000, {"charts/sps": 4000.0})
    fields = logger._progress.tasks[0].fields
    assert (fields["sps"], fields["ret"]) == ("1600", "0.99")
    path = "/a/very/long/run/folder/" + "x" * 80 + "/[not-markup]"
    logger.message(f"final eval: 500 ± 0  (run folder: {path})")
    logger.close()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term.getvalue())
    assert f"(run folder: {path})" in plain  # not wrapped at 60 columns, brackets not eaten as markup


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A tiny training with stdout going to a buffer (not a terminal); its run folder and lines."""
    root = tmp_path_factory.mktemp("runs")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = train(
            Config(
                total_steps=600,
                num_envs=4,
                learning_starts=100,
                batch_size=32,
                log_every=200,
                eval_every=400,
                eval_episodes=2,
                final_eval_episodes=2,
                checkpoint_every=10_000,
                runs_dir=str(root),
                run_name="run_with_a_long_name_" + "y" * 60,
            )
        )
    return result.run_dir, out.getvalue().splitlines()


def test_training_off_a_terminal_prints_plain_lines_in_order(tiny_run: tuple[Path, list[str]]) -> None:
    run_dir, lines = tiny_run
    num = r"(-|-?\d+(\.\d+)?)"
    # CartPole's preset is announced first (gumbel_ac/presets.py), then the training lines.
    assert lines.pop(0).startswith(
        "preset CartPole-v1: alpha_max=0.1, n_critics=10, target_critics=2 (gumbel_ac/presets.py;"
    )
    assert lines[0].startswith("step 200/600  sps ")
    assert lines[1].startswith("step 400/600  sps ")
    assert lines[2].startswith("step 400/600  eval ")
    assert lines[3].startswith("step 600/600  sps ")
    for line in (lines[0], lines[1], lines[3]):
        assert re.fullmatch(rf"step \d+/600  sps \d+  return {num}", line), line
    assert re.fullmatch(rf"step 400/600  eval {num} ± {num}", lines[2]), lines[2]
    assert len(lines) == 5
    assert lines[4].startswith("final deterministic eval over 2 episodes on CartPole-v1: ")
    assert lines[4].endswith(f"(run folder: {run_dir})")  # one line, the path whole
    assert not any("\r" in line or "\x1b" in line for line in lines)
    # Returns: at most 3 significant digits.
    for line in lines[:4]:
        value = line.rsplit(" ", 1)[-1]
        assert value == "-" or len(value.replace("-", "").replace(".", "").lstrip("0")) <= 3, line


def test_tensorboard_events_equal_metrics_jsonl(tiny_run: tuple[Path, list[str]]) -> None:
    run_dir, _ = tiny_run
    rows = read_metrics(run_dir / "metrics.jsonl")
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "global_step" and value is not None:
                expected.setdefault(key, []).append((row["global_step"], float(np.float32(value))))
    got = scalars(run_dir)
    assert {"charts/episodic_return", "charts/sps", "losses/critic", "eval/mean_return"} <= set(got)
    assert got == expected  # the same tags, steps and (float32) values


def test_tensorboard_resume_drops_events_after_the_checkpoint(tmp_path: Path) -> None:
    """A killed run logged steps 1-5 after a checkpoint at 3; the resumed run's 4-5 replace them."""
    first = make_logger(tmp_path, progress=False)
    for step in range(1, 6):
        first.log(step, {"charts/episodic_return": float(step)})
    first.close()
    time.sleep(1.05 - time.time() % 1)  # event file names sort by whole second: the resume's comes after
    resumed = make_logger(tmp_path, progress=False, start_step=3)
    for step in (4, 5):
        resumed.log(step, {"charts/episodic_return": 10.0 * step})
    resumed.close()
    assert scalars(tmp_path)["charts/episodic_return"] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0)]


def test_nonfinite_values_are_null_in_jsonl_and_absent_in_tensorboard(tmp_path: Path) -> None:
    logger = make_logger(tmp_path, progress=False)
    logger.log(10, {"losses/critic": float("nan"), "charts/sps": 5.0})
    logger.close()
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"global_step": 10, "charts/sps": 5.0, "losses/critic": None}]
    got: dict[str, Any] = scalars(tmp_path)
    assert got == {"charts/sps": [(10, 5.0)]}


def test_eval_gif_on_a_headless_machine_prints_no_sdl_error(tiny_run: tuple[Path, list[str]], tmp_path: Path) -> None:
    """No display: SDL used to print "error: XDG_RUNTIME_DIR is invalid or not set" while
    eval.py rendered; it must render with the dummy video driver, silently."""
    run_dir, _ = tiny_run
    root = Path(__file__).resolve().parents[1]
    hidden = {"DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER", "XDG_RUNTIME_DIR", "PYGAME_HIDE_SUPPORT_PROMPT"}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    gif = tmp_path / "ep.gif"
    proc = subprocess.run(
        [sys.executable, str(root / "eval.py"), str(run_dir), "--episodes", "1", "--device", "cpu", "--gif", str(gif)],
        env={**env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()  # the two result lines, no pygame banner
    assert len(lines) == 2 and lines[0].startswith("CartPole-v1: "), lines
    assert lines[1].startswith(f"wrote {gif} (episode return "), lines
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


def test_resume_help_names_every_flag_a_resume_may_change() -> None:
    """--resume's help lists the changeable flags in words; it must follow RESUME_OVERRIDABLE."""
    import inspect

    from gumbel_ac.config import RESUME_OVERRIDABLE

    source = inspect.getsource(Config)
    doc = re.search(r'\n    resume: [^\n]*\n    """(.*?)"""', source, re.S)
    assert doc is not None
    named = set(re.findall(r"--([a-z][a-z-]*)", doc.group(1)))
    assert named == {name.replace("_", "-") for name in RESUME_OVERRIDABLE - {"resume"}}
