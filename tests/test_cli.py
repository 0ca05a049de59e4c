"""train.py and eval.py error paths, in-process through ``main(argv)``.

Every bad input must end with exit status 2 and exactly one ``error: ...`` line on stderr (no
traceback). These run ``main`` in this interpreter (the ``script_main`` fixture, conftest.py):
a subprocess per case would spend ~1 s importing torch each time. The subprocess smoke test of
each script is the train -> eval round trip at the end of this file.

Checkpoints here are written by ``save_checkpoint`` from an untrained agent: the eval paths
only need a valid run folder, not a trained policy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gumbel_ac.agent import make_agent
from gumbel_ac.checkpoint import save_checkpoint
from gumbel_ac.config import Config
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.vector import describe_spaces, make_env

ROOT = Path(__file__).resolve().parents[1]
Main = Callable[[list[str]], int]


def _save_untrained_run(run_dir: Path, config: Config) -> Path:
    """A run folder with one checkpoint of a freshly initialised agent for ``config``'s env."""
    env = make_env(config.env, num_envs=1, **config.env_kwargs_dict())
    spaces = describe_spaces(env.single_observation_space, env.single_action_space)
    torch.manual_seed(0)
    agent = make_agent(
        obs_dim=env.obs_dim,
        spec=ActionSpec.from_space(env.single_action_space),
        hidden_sizes=config.hidden_sizes,
        alpha=config.alpha,
        target_entropy_ratio=config.target_entropy_ratio,
    )
    env.close()
    return save_checkpoint(run_dir, step=100, agent=agent, config=config, spaces=spaces)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A CartPole-v1 run folder (untrained)."""
    _save_untrained_run(tmp_path / "run", Config(hidden_sizes=(8,)))
    return tmp_path / "run"


def error_of(main: Main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``main(argv)``; assert exit status 2 and one ``error:`` line on stderr; return it."""
    capsys.readouterr()  # drop anything printed before
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, (argv, err)
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- eval.py


def test_eval_ok_returns_0_and_prints_the_summary(
    script_main: Callable[[str], Main], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script_main("eval")([str(run_dir), "--episodes", "2", "--stochastic"]) == 0
    out = capsys.readouterr().out
    assert "CartPole-v1:" in out and "over 2 stochastic episodes" in out and "step 100" in out


def test_eval_bad_inputs_are_one_line(
    script_main: Callable[[str], Main], run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = script_main("eval")
    assert "no such file" in error_of(main, [str(tmp_path / "missing")], capsys)
    assert "does not match" in error_of(main, [str(run_dir), "--env", "Acrobot-v1"], capsys)
    assert "--episodes must be >= 1" in error_of(main, [str(run_dir), "--episodes", "0"], capsys)
    # Not ours at all.
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "meta.json").write_text('{"hello": 1}')
    assert "not a gumbel_ac checkpoint" in error_of(main, [str(tmp_path / "junk")], capsys)
    # A corrupted checkpoint: flip a byte of the weights.
    ckpt = sorted((run_dir / "checkpoints").iterdir())[-1]
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    assert "checksum mismatch" in error_of(main, [str(run_dir)], capsys)


def test_eval_flag_errors_return_2_instead_of_raising(
    script_main: Callable[[str], Main], capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse exits through SystemExit; main turns it into a returned status."""
    main = script_main("eval")
    assert main(["some_run", "--episodes", "many"]) == 2
    assert "invalid int value" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "--episodes" in capsys.readouterr().out


def test_eval_applies_the_runs_env_kwargs_only_to_its_own_env(
    script_main: Callable[[str], Main], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DeepSea run of size 6 has 36 inputs: evaluating it needs the run's env kwargs, whether
    the env is implied (the run's) or named with --env; another env gets none (and mismatches)."""
    config = Config(env="gumbel_ac/DeepSea-v0", env_kwargs='{"size": 6}', hidden_sizes=(8,))
    _save_untrained_run(tmp_path / "ds", config)
    main = script_main("eval")
    assert main([str(tmp_path / "ds"), "--episodes", "1"]) == 0
    assert main([str(tmp_path / "ds"), "--episodes", "1", "--env", "gumbel_ac/DeepSea-v0"]) == 0
    out = capsys.readouterr().out
    assert out.count("gumbel_ac/DeepSea-v0:") == 2
    # DeepSea's default size (10, 100 inputs) would not match: the kwargs must not leak to --env.
    assert "does not match" in error_of(main, [str(tmp_path / "ds"), "--env", "gumbel_ac/Catch-v0"], capsys)


def test_eval_uses_the_configs_eval_env_kwargs_rule() -> None:
    """The rule eval.py now delegates to: the run's kwargs on its own env, none on another."""
    config = Config(env="gumbel_ac/DeepSea-v0", env_kwargs='{"size": 6}')
    assert config.eval_env_kwargs() == {"size": 6}
    assert Config(
        **{**config.to_dict(), "hidden_sizes": (64, 64), "eval_env": "gumbel_ac/DeepSea-v0"}
    ).eval_env_kwargs() == {"size": 6}
    assert Config(**{**config.to_dict(), "hidden_sizes": (64, 64), "eval_env": "CartPole-v1"}).eval_env_kwargs() == {}


# ----------------------------------------------------------------------------- train.py


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "CartPol-v1"], "unknown env id"),
        (["--env", "Pendulum-v1"], "is not supported"),
        (["--gumbel-temperature", "0"], "gumbel_temperature must be > 0"),
        (["--actor-lr", "-0.1"], "actor_lr must be > 0"),
        (["--estimator", "reinmax", "--gumbel-temperature", "0.5"], "tau >= 1"),
        (["--resume", "no/such/run"], "no/such/run"),
    ],
)
def test_train_bad_inputs_are_one_line(
    script_main: Callable[[str], Main],
    tmp_path: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    main = script_main("train")
    line = error_of(main, [*argv, "--runs-dir", str(tmp_path), "--no-progress", "--total-steps", "100"], capsys)
    assert message in line


def test_train_flag_errors_and_help_return_instead_of_raising(
    script_main: Callable[[str], Main], capsys: pytest.CaptureFixture[str]
) -> None:
    main = script_main("train")
    assert main(["--no-such-flag"]) == 2
    assert "--no-such-flag" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "--gumbel-temperature" in capsys.readouterr().out


def test_error_line_names_only_the_problem(
    script_main: Callable[[str], Main], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user error is not a crash: no traceback, nothing written to a run folder's metrics."""
    main = script_main("train")
    line = error_of(main, ["--actor-lr", "-0.1", "--runs-dir", str(tmp_path), "--run-name", "x"], capsys)
    assert "Traceback" not in line
    assert not (tmp_path / "x" / "metrics.jsonl").exists()


# ----------------------------------------------------------------------------- smoke, as scripts


def test_scripts_round_trip_in_subprocesses(tmp_path: Path) -> None:
    """The one subprocess test of each script: ``python train.py`` (with offline wandb) writes a
    run, ``python eval.py`` evaluates it and renders a GIF. Catches what in-process calls cannot:
    the ``__main__`` guard, the exit status reaching the shell, imports from a bare interpreter."""
    env = dict(os.environ, WANDB_MODE="offline", PYTHONPATH=str(ROOT))

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    proc = script(
        str(ROOT / "train.py"),
        "--total-steps",
        "600",
        "--learning-starts",
        "200",
        "--eval-every",
        "0",
        "--final-eval-episodes",
        "2",
        "--no-progress",
        "--runs-dir",
        str(tmp_path),
        "--run-name",
        "cli",
        "--track",
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli" / "wandb").is_dir()  # offline wandb run written, no network needed
    gif = tmp_path / "ep.gif"
    ok = script(
        str(ROOT / "eval.py"),
        str(tmp_path / "cli"),
        "--episodes",
        "3",
        "--seed",
        "1",
        "--stochastic",
        "--gif",
        str(gif),
    )
    assert ok.returncode == 0, ok.stderr
    assert "over 3 stochastic episodes" in ok.stdout and "±" in ok.stdout
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    bad = script(str(ROOT / "eval.py"), str(tmp_path / "missing"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
