"""Start-up input checks: caps on every size flag, env_kwargs, values read from checkpoints.

Each bad value must stop at start with ONE ConfigError/CheckpointError line naming the field
and the fix -- before anything large is allocated -- and a value read from a checkpoint's
config meets the same check as the flag. Runs are never trained here: checkpoints are written
directly from a fresh agent (fast), and the scripts run in-process (``script_main``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import gumbel_ac.envs  # noqa: F401  (registers the gumbel_ac/ ids)
from gumbel_ac import budget
from gumbel_ac.agent import make_agent
from gumbel_ac.checkpoint import CheckpointError, load_run, save_checkpoint, saved_config
from gumbel_ac.config import Config, ConfigError, ConfigWarning
from gumbel_ac.vector import describe_spaces, eval_env_kwargs, make_env

Main = Callable[[list[str]], int]

#: A small valid config: validates without a warning.
SMALL: dict[str, Any] = dict(total_steps=400, num_envs=4, learning_starts=16, batch_size=16, buffer_size=1000)


def error_line(main: Main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``main(argv)`` exits 2 with exactly one ``error:`` line on stderr; return that line."""
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), (status, err)
    return lines[0]


def write_run(root: Path, **fields: Any) -> Path:
    """A run folder with one checkpoint of a fresh agent for ``Config(**fields)``; no training."""
    config = Config(**{**SMALL, "hidden_sizes": (8,), **fields}).validate()  # the env's preset applied
    probe = make_env(config.env, num_envs=1, **config.env_kwargs_dict())
    spaces = describe_spaces(probe.single_observation_space, probe.single_action_space)
    agent = make_agent(
        obs_dim=probe.obs_dim,
        spec=probe.action_spec,
        hidden_sizes=config.hidden_sizes,
        alpha=0.05,
        target_entropy_ratio=0.1,
        num_critics=config.n_critics,
    )
    probe.close()
    run = root / "run"
    save_checkpoint(run, step=0, agent=agent, config=config, spaces=spaces)
    return run


def edit_saved_config(run: Path, **changes: Any) -> None:
    """Change the config in the run's manifest, as a hand edit (or a hostile file) would."""
    (meta_path,) = run.glob("checkpoints/step_*/meta.json")
    meta = json.loads(meta_path.read_text())
    meta["config"].update(changes)
    meta_path.write_text(json.dumps(meta))


# ----------------------------------------------------------------------------- caps on flags


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"num_envs": 2**31}, "num_envs must be at most 2**24"),
        ({"hidden_sizes": (100_000,)}, "hidden_sizes must be at most 16 layers of at most 65536"),
        ({"hidden_sizes": (8,) * 17}, "hidden_sizes must be at most 16 layers"),
        ({"rao_samples": 10**6}, "rao_samples must be at most 10_000"),
        ({"eval_episodes": 10**7}, "eval_episodes must be at most 100_000"),
        ({"final_eval_episodes": 10**7}, "final_eval_episodes must be at most 100_000"),
        ({"actor_lr": 1e308}, "actor_lr must be at most 10"),
        ({"critic_lr": 11.0}, "critic_lr must be at most 10"),
        ({"alpha_lr": 1e300}, "alpha_lr must be at most 10"),
        ({"num_threads": 1_000_000}, "num_threads must be at most 1024"),
        ({"seed": 2**31 - 1, "num_seeds": 2}, "seed + num_seeds - 1 = 2147483648"),
        ({"total_steps": 2**63}, "total_steps must be at most 2**62"),
        ({"dist_timeout_s": 1e300}, "dist_timeout_s must be at most 1e9"),
    ],
)
def test_size_flags_are_capped_at_start(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config(**{**SMALL, **fields}).validate()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_caps_keep_ordinary_values() -> None:
    Config(**SMALL, hidden_sizes=(256, 256), rao_samples=1000, eval_episodes=1000, actor_lr=10.0).validate()
    Config(**SMALL, seed=2**31 - 2, num_seeds=2).validate()


@pytest.mark.parametrize(
    ("env", "env_kwargs", "message"),
    [
        ("CartPole-v1", {"device": "cpu"}, "env_kwargs may not set device"),
        ("gumbel_ac/CartPole-v1", {"num_envs": 2**31}, "env_kwargs may not set num_envs"),
        ("gumbel_ac/DeepSea-v0", {"render_mode": "human"}, "env_kwargs may not set render_mode"),
        ("CartPole-v1", {"seed": 3, "vector_kwargs": {}}, "may not set seed, vector_kwargs"),
        ("gumbel_ac/DeepSea-v0", {"size": "10"}, "'size' of gumbel_ac/DeepSea-v0 must be of type int"),
        ("gumbel_ac/DeepSea-v0", {"sizee": 10}, "does not take env_kwargs 'sizee'; it takes"),
        ("gumbel_ac/CartPole-v1", {"dtype": "float32"}, "must be of type torch.dtype"),
    ],
)
def test_env_kwargs_are_checked_without_building_the_env(env: str, env_kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config(**SMALL, env=env, env_kwargs=json.dumps(env_kwargs)).validate()
    assert message in str(info.value)


def test_env_kwargs_too_long_or_too_deep_is_one_config_error() -> None:
    with pytest.raises(ConfigError, match="characters, more than"):
        Config(**SMALL, env_kwargs="[" * 100_000).validate()
    with pytest.raises(ConfigError, match="env_kwargs"):
        Config(**SMALL, env_kwargs='{"a": ' * 30_000 + "1" + "}" * 30_000).validate()


def test_env_size_caps_refuse_before_allocating() -> None:
    """A DeepSea of size 40000 is 6.4 GB of observation for ONE env: refused in the constructor."""
    with pytest.raises(ConfigError, match=r"size must be in \[1, 1024\]"):
        make_env("gumbel_ac/DeepSea-v0", num_envs=1, size=40_000)
    with pytest.raises(ConfigError, match="rows <= 1024"):
        make_env("gumbel_ac/Catch-v0", num_envs=1, rows=10**6)
    with pytest.raises(ConfigError, match="reset_block must be an int"):
        make_env("gumbel_ac/CartPole-v1", num_envs=1, reset_block=10**9)


def test_reserved_kwargs_are_refused_by_make_env_too() -> None:
    """From Python, keys that are not make_env's own parameters land in env_kwargs: refused there."""
    with pytest.raises(ConfigError, match="may not set validate_actions"):
        make_env("gumbel_ac/CartPole-v1", num_envs=1, validate_actions=True)


def test_eval_env_kwargs_drop_compile() -> None:
    assert eval_env_kwargs({"size": 5, "compile": True, "compile_mode": "max-autotune"}) == {"size": 5}


# ----------------------------------------------------------------------------- memory budget


def test_networks_that_cannot_fit_are_refused_by_validate() -> None:
    with pytest.raises(ConfigError) as info:
        Config(**SMALL, hidden_sizes=(65536, 65536, 65536), device="cpu").validate()
    assert "hidden_sizes=[65536, 65536, 65536]" in str(info.value) and "lower --hidden-sizes" in str(info.value)


def test_budget_names_the_largest_part(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(**{**SMALL, "num_envs": 1 << 20, "buffer_size": 1 << 20}).check()
    monkeypatch.setattr(budget, "free_bytes", lambda device: 2**30)
    with pytest.raises(ConfigError, match=r"most of it for the envs \(num_envs=1048576.*lower --num-envs"):
        budget.check_fits(config, obs_dim=4, action_nvec=(2,), device="cpu")
    monkeypatch.setattr(budget, "free_bytes", lambda device: 2**40)
    est = budget.check_fits(config, obs_dim=4, action_nvec=(2,), device="cpu")
    assert est.replay == (1 << 20) * budget.replay_row_bytes(4, 1)


@pytest.mark.parametrize("n_critics", [2, 5])
def test_budget_counts_the_networks_exactly(n_critics: int) -> None:
    """The network part is the real parameter count times the copies training keeps."""
    agent = make_agent(
        obs_dim=5,
        spec=make_env("CartPole-v1", num_envs=1).action_spec,
        hidden_sizes=(7, 3),
        alpha=0.1,
        target_entropy_ratio=0.1,
        num_critics=n_critics,
    )
    actor = sum(p.numel() for p in agent.actor.parameters())
    critics = sum(p.numel() for p in agent.critic.parameters())  # every critic of the ensemble
    got = budget.network_bytes(5, (2,), (7, 3), n_critics)
    assert got == 4 * (budget.ACTOR_COPIES * actor + budget.CRITIC_COPIES * critics)


# ----------------------------------------------------------------------------- no updates


def test_a_run_without_updates_warns() -> None:
    with pytest.warns(ConfigWarning, match="learning_starts \\(1000\\) >= the run's 104 env steps"):
        Config(total_steps=100, num_envs=8).validate()
    with pytest.warns(ConfigWarning, match="batch_size \\(256\\) > the run's 200"):
        Config(total_steps=200, num_envs=8, learning_starts=0, batch_size=256).validate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Config(**SMALL).validate()


# ----------------------------------------------------------------------------- saved configs


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_envs": 2**31}, "num_envs must be at most 2**24"),
        ({"env_kwargs": '{"device": "cpu"}'}, "env_kwargs may not set device"),
        ({"env_kwargs": '{"render_mode": "human"}'}, "env_kwargs may not set render_mode"),
        ({"hidden_sizes": [8] * 20}, "hidden_sizes must be at most 16 layers"),
        ({"rao_samples": 10**9}, "rao_samples must be at most 10_000"),
    ],
)
def test_saved_config_meets_the_flags_checks(
    tmp_path: Path,
    script_main: Callable[[str], Main],
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, Any],
    message: str,
) -> None:
    run = write_run(tmp_path)
    edit_saved_config(run, **changes)
    for load in (load_run, saved_config):
        with pytest.raises(CheckpointError) as info:
            load(run)
        assert "invalid config" in str(info.value) and message in str(info.value)
    assert message in error_line(script_main("eval"), [str(run)], capsys)
    assert message in error_line(script_main("train"), ["--resume", str(run), "--no-progress"], capsys)


def test_eval_refuses_an_edited_env_size(
    tmp_path: Path, script_main: Callable[[str], Main], capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path, env="gumbel_ac/DeepSea-v0", env_kwargs='{"size": 4}')
    edit_saved_config(run, env_kwargs='{"size": 40000}')
    line = error_line(script_main("eval"), [str(run)], capsys)
    assert "size must be in [1, 1024]" in line


def test_eval_does_not_compile_a_saved_compile_env(
    tmp_path: Path,
    script_main: Callable[[str], Main],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = write_run(tmp_path, env="gumbel_ac/DeepSea-v0", env_kwargs='{"size": 4}')
    edit_saved_config(run, env_kwargs='{"size": 4, "compile": true}')
    calls: list[Any] = []
    monkeypatch.setattr(torch, "compile", lambda *a, **k: calls.append(a) or a[0])
    assert script_main("eval")([str(run), "--episodes", "2"]) == 0
    assert "gumbel_ac/DeepSea-v0" in capsys.readouterr().out
    assert calls == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--episodes", "10000000"], "--episodes must be at most 100000"),
        (["--seed", "-1"], "--seed must be in [0, 2**31 - 1]"),
        (["--seed", str(2**40)], "--seed must be in [0, 2**31 - 1]"),
    ],
)
def test_eval_flags_have_the_training_limits(
    tmp_path: Path,
    script_main: Callable[[str], Main],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    assert message in error_line(script_main("eval"), [str(tmp_path / "any"), *argv], capsys)


def test_eval_refuses_episodes_that_cannot_fit(
    tmp_path: Path,
    script_main: Callable[[str], Main],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = write_run(tmp_path)
    monkeypatch.setattr(budget, "free_bytes", lambda device: 10**6)
    line = error_line(script_main("eval"), [str(run), "--episodes", "100000"], capsys)
    assert "evaluating 100000 episodes" in line and "lower --episodes" in line


# ----------------------------------------------------------------------------- symlinks


def test_loader_does_not_follow_symlinks_out_of_the_run(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    (ckpt,) = run.glob("checkpoints/step_*")
    outside = tmp_path / "outside.safetensors"
    os.replace(ckpt / "model.safetensors", outside)
    (ckpt / "model.safetensors").symlink_to(outside)
    with pytest.raises(CheckpointError, match="model.safetensors: is a symlink .* pointing outside the run folder"):
        load_run(run)
    # A link that stays inside the run is fine.
    inside = run / "model-copy.safetensors"
    os.replace(outside, inside)
    (ckpt / "model.safetensors").unlink()
    (ckpt / "model.safetensors").symlink_to(inside)
    assert load_run(run).step == 0


def test_loader_does_not_follow_a_linked_checkpoint_folder(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    (ckpt,) = run.glob("checkpoints/step_*")
    elsewhere = tmp_path / "elsewhere"
    os.replace(ckpt, elsewhere)
    ckpt.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(CheckpointError, match="meta.json: is a symlink"):
        load_run(run)
    with pytest.raises(CheckpointError, match="meta.json: is a symlink"):
        saved_config(run)
