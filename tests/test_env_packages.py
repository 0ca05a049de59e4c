"""Env ids from other packages (gumbel_ac/envpkgs.py, docs/gymnasium.md "Env packages").

* ``module:EnvId`` imports the module first (a tiny module written to a tmp folder registers
  an env on import); a module that cannot be imported is one error line naming it;
* ``ALE/`` and ``MinAtar/`` ids register their package on demand; ``ALE/`` ids get Atari
  preprocessing (frame skip once, grayscale 84x84, 4 stacked frames);
* a missing package (Box2D, ale-py, minatar, OpenCV) is one ``error:`` line with the install
  command and exit status 2. Missing packages are simulated (``sys.modules[name] = None``
  makes ``import name`` raise ImportError): nothing is uninstalled;
* with the package installed, each family trains a few hundred steps (skipped, through
  ``pytest.importorskip`` on the third-party package, only where it is not installed).
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from gumbel_ac.config import Config, ConfigError
from gumbel_ac.envpkgs import MissingEnvPackageError, split_module
from gumbel_ac.trainer import train
from gumbel_ac.vector import ObsEncoder, UnknownEnvError, check_env_id, make_env

Main = Callable[[list[str]], int]

TMP_MODULE = "gumbel_ac_tmp_envpkg"
TMP_ENV = "GumbelAcTmpEnv-v0"


def error_of(main: Main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``main(argv)``; assert exit status 2 and one ``error:`` line on stderr; return it."""
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, (argv, err)
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def tiny_train_config(env: str, tmp_path: Path, **overrides: object) -> Config:
    """A run of a few hundred env steps with a tiny batch, buffer and network."""
    fields: dict[str, object] = dict(
        env=env,
        num_envs=1,
        total_steps=300,
        learning_starts=100,
        batch_size=16,
        buffer_size=1_000,
        hidden_sizes=(16,),
        eval_every=0,
        eval_episodes=1,
        final_eval_episodes=1,
        checkpoint_every=0,
        log_every=0,
        progress=False,
        runs_dir=str(tmp_path / "runs"),
        run_name="run",
        device="cpu",
    )
    fields.update(overrides)
    return Config(**fields)  # type: ignore[arg-type]


@pytest.fixture
def tmp_env_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module on sys.path that registers ``TMP_ENV`` (CartPole's class) when imported."""
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / f"{TMP_MODULE}.py").write_text(
        textwrap.dedent(
            f"""
            import gymnasium as gym

            gym.register(
                id="{TMP_ENV}",
                entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
                max_episode_steps=50,
            )
            """
        )
    )
    (folder / "gumbel_ac_tmp_broken.py").write_text("import gumbel_ac_no_such_dependency\n")
    (folder / "gumbel_ac_tmp_registers_nothing.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(folder))
    yield f"{TMP_MODULE}:{TMP_ENV}"
    gym.registry.pop(TMP_ENV, None)
    for name in (TMP_MODULE, "gumbel_ac_tmp_broken", "gumbel_ac_tmp_registers_nothing"):
        sys.modules.pop(name, None)


# ------------------------------------------------------------------------ module:EnvId


def test_split_module() -> None:
    assert split_module("CartPole-v1") == (None, "CartPole-v1")
    assert split_module("my_pkg:MyEnv-v0") == ("my_pkg", "MyEnv-v0")
    assert split_module("a.b:ALE/Pong-v5") == ("a.b", "ALE/Pong-v5")


def test_module_form_imports_the_module_then_makes_the_env(tmp_env_module: str) -> None:
    assert TMP_ENV not in gym.registry
    assert check_env_id(tmp_env_module) == TMP_ENV
    env = make_env(tmp_env_module, num_envs=2)
    try:
        assert env.obs_dim == 4 and env.action_spec.nvec == (2,)
        obs = env.reset(seed=0)
        assert obs.shape == (2, 4)
        step = env.step(torch.zeros(2, 1, dtype=torch.long))
        assert step.obs.shape == (2, 4)
    finally:
        env.close()


def test_module_form_trains_and_evaluates(tmp_env_module: str, tmp_path: Path) -> None:
    result = train(tiny_train_config(tmp_env_module, tmp_path, num_envs=2, final_eval_episodes=2))
    assert np.isfinite(result.final_mean)


@pytest.mark.parametrize(
    ("env_id", "expected"),
    [
        ("gumbel_ac_no_such_module:Foo-v0", "cannot import module 'gumbel_ac_no_such_module'"),
        ("gumbel_ac_tmp_broken:Foo-v0", "cannot import module 'gumbel_ac_tmp_broken'"),
        ("gumbel_ac_tmp_registers_nothing:Foo-v0", "unknown env id 'gumbel_ac_tmp_registers_nothing:Foo-v0'"),
        ("not a module:Foo-v0", "'not a module' is not a Python module name"),
    ],
)
def test_module_form_errors_are_one_line(
    tmp_env_module: str,
    env_id: str,
    expected: str,
    script_main: Callable[[str], Main],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(UnknownEnvError, match="env id"):
        make_env(env_id, num_envs=1)
    line = error_of(script_main("train"), ["--env", env_id, "--no-progress"], capsys)
    assert expected in line, line
    if "gumbel_ac_tmp_broken" in env_id:
        assert "gumbel_ac_no_such_dependency" in line, line  # the import error itself


# ------------------------------------------------------------------------ missing packages


def _hide_modules(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``import name`` fail for each name and for modules already imported under it."""
    for loaded in list(sys.modules):
        if any(loaded == n or loaded.startswith(n + ".") for n in names):
            monkeypatch.delitem(sys.modules, loaded)
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_box2d_is_one_line_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, script_main: Callable[[str], Main], capsys: pytest.CaptureFixture[str]
) -> None:
    _hide_modules(monkeypatch, "Box2D", "gymnasium.envs.box2d")
    with pytest.raises(MissingEnvPackageError):
        make_env("LunarLander-v3", num_envs=1)
    for env_id in ("LunarLander-v3", "BipedalWalker-v3"):
        line = error_of(script_main("train"), ["--env", env_id, "--no-progress"], capsys)
        assert line == (
            f'error: env {env_id} needs Box2D, which is not installed: pip install "gymnasium[box2d]" '
            '(or pip install -e ".[box2d]" in a gumbel_ac checkout)'
        ), line


def test_missing_ale_py_is_one_line_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, script_main: Callable[[str], Main], capsys: pytest.CaptureFixture[str]
) -> None:
    _hide_modules(monkeypatch, "ale_py")
    line = error_of(script_main("train"), ["--env", "ALE/Pong-v5", "--no-progress"], capsys)
    assert line == (
        'error: env ALE/Pong-v5 needs ale-py, which is not installed: pip install "ale-py>=0.9" '
        'opencv-python-headless (or pip install -e ".[atari]" in a gumbel_ac checkout)'
    ), line
    # eval.py builds the env through the same make_env
    with pytest.raises(MissingEnvPackageError, match=r"\.\[atari\]"):
        make_env("ALE/Breakout-v5", num_envs=1)


def test_missing_minatar_is_one_line_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, script_main: Callable[[str], Main], capsys: pytest.CaptureFixture[str]
) -> None:
    _hide_modules(monkeypatch, "minatar")
    for key in [k for k in gym.registry if k.startswith("MinAtar/")]:  # as in a fresh process
        monkeypatch.delitem(gym.registry, key)
    line = error_of(script_main("train"), ["--env", "MinAtar/Breakout-v1", "--no-progress"], capsys)
    assert line == (
        "error: env MinAtar/Breakout-v1 needs minatar, which is not installed: pip install minatar==1.0.15 "
        '(or pip install -e ".[minatar]" in a gumbel_ac checkout)'
    ), line


def test_missing_opencv_for_atari_names_it(
    monkeypatch: pytest.MonkeyPatch, script_main: Callable[[str], Main], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ale_py")
    _hide_modules(monkeypatch, "cv2")
    line = error_of(script_main("train"), ["--env", "ALE/Pong-v5", "--no-progress"], capsys)
    assert "opencv" in line and 'pip install -e ".[atari]"' in line, line


def test_other_missing_dependency_keeps_gymnasiums_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    def needs_mujoco(**kwargs: object) -> gym.Env[np.ndarray, int]:
        raise gym.error.DependencyNotInstalled('MuJoCo is not installed,\n run `pip install "gymnasium[mujoco]"`')

    monkeypatch.setitem(
        gym.registry,
        "GumbelAcNeedsMujoco-v0",
        gym.envs.registration.EnvSpec("GumbelAcNeedsMujoco-v0", entry_point=needs_mujoco),
    )
    with pytest.raises(MissingEnvPackageError) as info:
        make_env("GumbelAcNeedsMujoco-v0", num_envs=1)
    assert str(info.value) == (
        "env GumbelAcNeedsMujoco-v0 needs a package that is not installed: MuJoCo is not installed, run "
        '`pip install "gymnasium[mujoco]"`'
    )


def test_unknown_ids_in_a_package_namespace_suggest_close_matches() -> None:
    pytest.importorskip("minatar")
    with pytest.raises(UnknownEnvError, match="Did you mean: MinAtar/Breakout"):
        check_env_id("MinAtar/Breakot-v1")


# ------------------------------------------------------------------------ observations


def test_uint8_images_are_scaled_other_boxes_are_not() -> None:
    image = gym.spaces.Box(0, 255, (2, 3), np.uint8)
    enc = ObsEncoder(image)
    out = enc(torch.full((1, 2, 3), 255, dtype=torch.uint8))
    assert out.shape == (1, 6) and torch.all(out == 1.0)
    counts = gym.spaces.Box(0, 10, (2,), np.uint8)  # small counts, not an image
    assert torch.equal(ObsEncoder(counts)(torch.tensor([[3, 4]], dtype=torch.uint8)), torch.tensor([[3.0, 4.0]]))
    floats = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert ObsEncoder(floats).scale == 1.0


# ------------------------------------------------------------------------ installed packages


def test_lunar_lander_trains(tmp_path: Path) -> None:
    pytest.importorskip("Box2D")
    config = tiny_train_config("LunarLander-v3", tmp_path, num_envs=2, env_kwargs='{"gravity": -9.0}')
    result = train(config)
    assert np.isfinite(result.final_mean)
    assert (tmp_path / "runs" / "run" / "config.json").exists()


def test_atari_env_is_preprocessed() -> None:
    ale_py = pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    env = make_env("ALE/Pong-v5", num_envs=1)
    try:
        space = env.single_observation_space
        assert isinstance(space, gym.spaces.Box)
        assert space.shape == (4, 84, 84) and space.dtype == np.uint8
        inner = env.env.envs[0]  # type: ignore[union-attr]
        pre = inner.env  # FrameStackObservation(AtariPreprocessing(...))
        assert isinstance(inner, gym.wrappers.FrameStackObservation)
        assert isinstance(pre, gym.wrappers.AtariPreprocessing)
        assert pre.frame_skip == 4 and inner.unwrapped._frameskip == 1  # skipped once, max-pooled
        assert pre.noop_max == 30 and not pre.terminal_on_life_loss
        assert env.obs_dim == 4 * 84 * 84 and env.action_spec.nvec == (6,)
        obs = env.reset(seed=0)
        # uint8 rows, channel-first; the agent's Nature CNN scales them by 1/255.
        assert obs.shape == (1, 4 * 84 * 84) and obs.dtype == torch.uint8 and int(obs.max()) > 0
        assert env.encode.image_shape == (4, 84, 84) and env.encode.pixel_scale == 1 / 255
    finally:
        env.close()
    assert isinstance(ale_py.__version__, str)
    env = make_env("ALE/Pong-v5", num_envs=1, frameskip=2)
    try:
        assert env.env.envs[0].env.frame_skip == 2  # type: ignore[union-attr]
    finally:
        env.close()
    with pytest.raises(ConfigError, match="frameskip"):
        make_env("ALE/Pong-v5", num_envs=1, frameskip=[2, 5])


def test_atari_trains(tmp_path: Path) -> None:
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    # 400 emulator frames = 100 agent steps per episode, so the final evaluation is quick.
    config = tiny_train_config("ALE/Pong-v5", tmp_path, env_kwargs='{"max_num_frames_per_episode": 400}')
    result = train(config)
    assert np.isfinite(result.final_mean)


def test_minatar_trains(tmp_path: Path) -> None:
    pytest.importorskip("minatar")
    result = train(tiny_train_config("MinAtar/Breakout-v1", tmp_path))
    assert np.isfinite(result.final_mean)
