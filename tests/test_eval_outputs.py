"""What the scripts leave behind: GIFs that play at the right speed, and one-line errors.

- ``record_gif`` writes one frame per step lasting 1000/fps ms (GIF delays are centiseconds,
  so 30/40 ms alternate at 30 fps and the total stays right). It used to pass
  ``imageio.mimsave(duration=1/fps)``, which current imageio reads as milliseconds: 0 ms
  delays, played at full speed.
- ``eval.py --gif`` into a missing folder is refused before the evaluation, not after it.
- A flag tyro cannot parse ends with one ``error: ...`` line (tyro draws a multi-line box).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from gumbel_ac.evaluation import record_gif

Main = Callable[[list[str]], int]
FRAMES_ENV = "test/Frames-v0"
EPISODE_STEPS = 12


class FramesEnv(gym.Env):
    """A 12-step episode whose rgb_array frame changes every ``repeat`` steps."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None, repeat: int = 1) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = render_mode
        self.repeat = repeat
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        return np.zeros(2, np.float32), 1.0, self._t >= EPISODE_STEPS, False, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((8, 8, 3), np.uint8)
        frame[..., 0] = 20 * (self._t // self.repeat)
        return frame


class ZeroAgent:
    """Always action 0: the GIF's timing is under test, not the policy."""

    def act(self, obs_BD: torch.Tensor, **_: Any) -> torch.Tensor:
        return torch.zeros(obs_BD.shape[0], 1, dtype=torch.long)


@pytest.fixture(scope="module")
def frames_env() -> str:
    if FRAMES_ENV not in gym.registry:
        gym.register(FRAMES_ENV, entry_point=FramesEnv)
    return FRAMES_ENV


def gif_durations(path: Path) -> list[int]:
    """Each stored frame's delay (ms), read back with Pillow."""
    with Image.open(path) as im:
        return [int(frame.info["duration"]) for frame in ImageSequence.Iterator(im)]


def test_gif_frames_last_1000_over_fps_ms(tmp_path: Path, frames_env: str) -> None:
    path = tmp_path / "ep.gif"
    total = record_gif(ZeroAgent(), frames_env, path, fps=30)  # type: ignore[arg-type]
    assert total == EPISODE_STEPS
    durations = gif_durations(path)
    assert len(durations) == EPISODE_STEPS  # one frame per step, none merged (all differ)
    assert set(durations) <= {30, 40}  # 33.3 ms in whole centiseconds
    assert sum(durations) == 400  # 12 frames / 30 fps = 0.4 s


def test_identical_frames_merged_by_pillow_keep_the_total_duration(tmp_path: Path, frames_env: str) -> None:
    path = tmp_path / "ep.gif"
    record_gif(ZeroAgent(), frames_env, path, fps=10, env_kwargs={"repeat": 4})  # type: ignore[arg-type]
    durations = gif_durations(path)
    assert durations == [400, 400, 400]  # 3 distinct frames, each shown for 4 steps of 100 ms


def test_gif_schedule_and_fps_limits(tmp_path: Path, frames_env: str) -> None:
    from gumbel_ac.evaluation import gif_durations_ms

    assert gif_durations_ms(3, 50) == [20, 20, 20]
    assert sum(gif_durations_ms(500, 30)) == 16_670  # a 500-step CartPole episode: 16.7 s
    with pytest.raises(ValueError, match="fps"):
        record_gif(ZeroAgent(), frames_env, tmp_path / "x.gif", fps=0)  # type: ignore[arg-type]
    assert not (tmp_path / "x.gif").exists()


def test_eval_gif_into_a_missing_folder_fails_before_evaluating(
    script_main: Callable[[str], Main], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gumbel_ac.agent import make_agent
    from gumbel_ac.checkpoint import save_checkpoint
    from gumbel_ac.config import Config
    from gumbel_ac.vector import describe_spaces, make_env

    config = Config(hidden_sizes=(8,))
    env = make_env(config.env, num_envs=1)
    spaces = describe_spaces(env.single_observation_space, env.single_action_space)
    agent = make_agent(
        obs_dim=env.obs_dim,
        spec=env.action_spec,
        hidden_sizes=config.hidden_sizes,
        alpha=config.alpha,
        target_entropy_ratio=config.target_entropy_ratio,
    )
    env.close()
    save_checkpoint(tmp_path / "run", step=1, agent=agent, config=config, spaces=spaces)

    capsys.readouterr()
    missing = tmp_path / "no" / "such" / "ep.gif"
    assert script_main("eval")([str(tmp_path / "run"), "--episodes", "1", "--gif", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing evaluated
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --gif") and str(missing.parent) in lines[0], err


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--num-envs", "abc"], ["--num-envs", "abc"]),
        (["--num-envs"], ["--num-envs"]),
        (["--num-env", "3"], ["--num-env", "--num-envs"]),  # the typo and the suggestion
    ],
)
def test_train_flag_parse_errors_are_one_line(
    script_main: Callable[[str], Main], argv: list[str], names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert script_main("train")(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(name in lines[0] for name in names), err


def test_train_help_is_untouched(script_main: Callable[[str], Main], capsys: pytest.CaptureFixture[str]) -> None:
    assert script_main("train")(["--help"]) == 0
    out, err = capsys.readouterr()
    assert "--num-envs" in out and "error" not in err


UTF8_BOX = """\
╭─ Unrecognized options ──────────────────╮
│ Unrecognized options: --num-env, 3,     │
│ --device-foo                            │
│ ─────────────────────────────────────── │
│ Arguments similar to --num-env:         │
│     --num-envs INT                      │
│         Parallel environments. (16)     │
│ ─────────────────────────────────────── │
│ For full helptext, run train.py --help  │
╰─────────────────────────────────────────╯
"""

ASCII_BOX = """\
 Value error                                    \n\
 ---------------------------------------------- \n\
  Error parsing --gamma: could not convert      \n\
  string to float: '1e'                         \n\
  ----------------------------------------------\n\
  Argument helptext:                            \n\
      --gamma FLOAT                             \n\
"""


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            UTF8_BOX,
            "Unrecognized options: --num-env, 3, --device-foo (did you mean --num-envs?); --help lists the options",
        ),
        (
            "\x1b[31m" + ASCII_BOX + "\x1b[0m",
            "--gamma: could not convert string to float: '1e'; --help lists the options",
        ),
        ("usage: x\nx: error: bad value.\n", "bad value; --help lists the options"),
        ("", "could not parse the command line; --help lists the options"),
    ],
)
def test_parse_error_line_reads_both_tyro_box_styles(text: str, line: str) -> None:
    """tyro draws UTF-8 boxes on a UTF-8 stdout and ASCII ones otherwise (pytest's capture)."""
    from gumbel_ac.cli import parse_error_line

    assert parse_error_line(text) == line


def test_an_episode_that_never_ends_names_the_time_limit_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """A greedy policy that stays at the surface never ends MinAtar Seaquest (no time limit in
    the game): evaluation stops with the fix; with ``max_episode_steps`` it returns."""
    from gumbel_ac import evaluation

    class Stay(torch.nn.Module):
        def act(self, obs: torch.Tensor, **_: Any) -> torch.Tensor:
            return torch.zeros(obs.shape[0], 1, dtype=torch.long)  # no-op: the sub stays at the surface

    monkeypatch.setattr(evaluation, "MAX_EVAL_STEPS", 300)
    with pytest.raises(RuntimeError, match=r"did not finish within 300 steps.*max_episode_steps"):
        evaluation.evaluate(Stay(), "gumbel_ac/MinAtar-Seaquest-v1", episodes=2)  # type: ignore[arg-type]
    returns = evaluation.evaluate(
        Stay(),  # type: ignore[arg-type]
        "gumbel_ac/MinAtar-Seaquest-v1",
        episodes=2,
        env_kwargs={"max_episode_steps": 100},
    )
    assert returns.tolist() == [0.0, 0.0]
