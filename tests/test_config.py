"""Config validation, property-based: every config either trains or fails at start with a
ConfigError -- never another exception, never a failure hours into training.

Hypothesis draws each field from valid values, boundary values and nonsense (NaN, infinity,
negative sizes, unknown names, wrong Python types, a replay buffer larger than the machine's
memory); the run is tiny (a few hundred env steps, no progress bar, a temp runs folder).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import gumbel_ac.envs  # noqa: F401  (part of the package: registers the gumbel_ac/ env ids)
from gumbel_ac.config import Config, ConfigError, merge_resume_config
from gumbel_ac.trainer import train

nan, inf = math.nan, math.inf

FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "env": st.sampled_from(
        ["gumbel_ac/CartPole-v1", "CartPole-v1", "FrozenLake-v1", "NoSuchEnv-v0", "Pendulum-v1", ""]
    ),
    "estimator": st.sampled_from(
        ["gumbel-st", "score", "exact", "gumbel-soft", "softmax-st", "reinmax", "gumbel-rao", "nope"]
    ),
    "seed": st.sampled_from([0, 1, -3, 2**40]),
    "total_steps": st.sampled_from([-1, 0, 1, 16, 100, 300]),
    "num_envs": st.sampled_from([-1, 0, 1, 3, 8]),
    "gamma": st.sampled_from([-0.1, 0.0, 0.5, 0.995, 1.0, 1.5, nan]),
    "actor_lr": st.sampled_from([1e-3, 0.0, -1e-3, inf, nan, 10.0]),
    "critic_lr": st.sampled_from([3e-3, 0.0, nan, 1e3]),
    "batch_size": st.sampled_from([0, 1, 16, 64, 10**6]),
    "buffer_size": st.sampled_from([0, 1, 64, 1000, 10**13]),
    "learning_starts": st.sampled_from([-5, 0, 16, 200]),
    "updates_per_step": st.sampled_from([0, 1, 2]),
    "target_update_rate": st.sampled_from([0.0, 0.2, 1.0, 1.5, nan]),
    "hidden_sizes": st.sampled_from([(), (0,), (4,), (16, 16), (-2, 4)]),
    "alpha": st.sampled_from([0.0, 0.05, -1.0, 1e30, nan]),
    "autotune_alpha": st.booleans(),
    "target_entropy_ratio": st.sampled_from([0.0, 0.1, 1.0, 1.5, -0.1]),
    "gumbel_temperature": st.sampled_from([0.0, -1.0, 1e-6, 0.6, 1.5, inf, nan]),
    "gumbel_temperature_final": st.sampled_from([None, 0.0, 0.1, 2.0, nan]),
    "temperature_schedule": st.sampled_from(["linear", "exponential", "cubic"]),
    "temperature_anneal_steps": st.sampled_from([0, 1, 100]),
    "rao_samples": st.sampled_from([0, 1, 4]),
    "max_nonfinite_updates": st.sampled_from([0, 1, 100]),
    "eval_every": st.sampled_from([-1, 0, 64]),
    "eval_episodes": st.sampled_from([0, 1, 2]),
    "final_eval_episodes": st.sampled_from([-1, 0, 2]),
    "eval_env": st.sampled_from([None, None, "CartPole-v1", "Acrobot-v1", "Nope-v9"]),
    "checkpoint_every": st.sampled_from([-1, 0, 64]),
    "keep_checkpoints": st.sampled_from([0, 1, 3]),
    "log_every": st.sampled_from([-1, 0, 50]),
    "num_threads": st.sampled_from([-1, 0, 1]),
    "replay_save_cap": st.sampled_from([-1, 0, 10, 10**6]),
    "save_replay": st.booleans(),
    # Wrong Python types, as the Python API (unlike the CLI) lets through.
    "device": st.sampled_from(["cpu", "auto", "tpu"]),
}
WRONG_TYPES: dict[str, Any] = {
    "total_steps": "300",
    "gamma": "0.9",
    "hidden_sizes": [16],
    "seed": 1.5,
    "progress": 1,
    "num_envs": 2.0,
    "autotune_alpha": "yes",
    "alpha": None,
}


#: A small valid config (a few hundred env steps) that each drawn config starts from.
BASE_FIELDS: dict[str, Any] = dict(
    total_steps=100,
    num_envs=4,
    learning_starts=16,
    batch_size=16,
    buffer_size=1000,
    hidden_sizes=(16,),
    eval_every=0,
    final_eval_episodes=1,
    eval_episodes=1,
    log_every=50,
    checkpoint_every=0,
)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """A config dict: each field kept at a small valid value or, with some probability, drawn wild."""
    out: dict[str, Any] = dict(BASE_FIELDS)
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=6, unique=True)):
        out[name] = draw(FIELDS[name])
    if draw(st.integers(0, 9)) == 0:
        key = draw(st.sampled_from(sorted(WRONG_TYPES)))
        out[key] = WRONG_TYPES[key]
    return out


@pytest.fixture
def outcomes() -> dict[str, int]:
    """This test's own tally of how each example ended (no state shared between tests)."""
    return {"trained": 0, "config_error": 0}


def test_every_config_trains_or_fails_at_start(tmp_path: Path, outcomes: dict[str, int]) -> None:
    """Each drawn config trains or raises ConfigError; both outcomes are exercised.

    The two explicit examples (always run first by Hypothesis) guarantee one config that
    trains and one that is refused, so the closing assertion holds whatever is drawn -- it
    fails only if a valid config stops training or an invalid one stops being refused.
    """
    run_ids = itertools.count()

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @example(fields=dict(BASE_FIELDS))  # must train
    @example(fields={**BASE_FIELDS, "gamma": nan})  # must be refused
    @given(fields=configs())
    def check(fields: dict[str, Any]) -> None:
        run_name = f"p{next(run_ids)}"  # a fresh run folder per example
        cfg = Config(**{"progress": False, **fields}, runs_dir=str(tmp_path), run_name=run_name)
        try:
            train(cfg)
        except ConfigError as exc:
            assert str(exc), fields
            outcomes["config_error"] += 1
            return
        outcomes["trained"] += 1
        # It trained: the run folder is complete.
        assert (tmp_path / run_name / "metrics.jsonl").is_file(), fields

    check()
    assert outcomes["trained"] > 0 and outcomes["config_error"] > 0, outcomes


def test_wrong_types_name_the_field() -> None:
    for key, value in WRONG_TYPES.items():
        with pytest.raises(ConfigError, match=key):
            Config(**{key: value}).validate()


def test_huge_replay_buffer_is_refused_before_allocation(tmp_path: Path) -> None:
    cfg = Config(buffer_size=10**13, total_steps=100, progress=False, runs_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="buffer_size"):
        train(cfg)


def test_unknown_env_is_config_error_and_unknown_env_error(tmp_path: Path) -> None:
    from gumbel_ac.vector import UnknownEnvError

    with pytest.raises(ConfigError) as info:
        train(Config(env="CartPol-v1", runs_dir=str(tmp_path), progress=False))
    assert isinstance(info.value, UnknownEnvError) and "unknown env id" in str(info.value)


def test_merge_resume_config_rules() -> None:
    saved = Config(gamma=0.9, total_steps=1000, log_every=100)
    # Overridable: taken from the given config. Left at default: the run's value.
    merged = merge_resume_config(saved, Config(total_steps=5000, resume="x"))
    assert merged.total_steps == 5000 and merged.gamma == 0.9
    with pytest.raises(ConfigError, match="gamma"):
        merge_resume_config(saved, Config(gamma=0.5, resume="x"))


def test_validate_returns_a_resolved_copy_and_leaves_the_caller_unchanged() -> None:
    given = Config(num_envs=256, batch_size=0, buffer_size=0)
    before = dataclasses.asdict(given)
    resolved = given.validate()
    assert dataclasses.asdict(given) == before  # nothing filled in on the caller's object
    assert resolved is not given
    assert resolved.batch_size == 256 and resolved.buffer_size == 100_000  # "auto" resolved
    assert dataclasses.asdict(resolved) == {
        **before,
        "batch_size": 256,
        "buffer_size": 100_000,
        "preset": "CartPole-v1",
        # CartPole's preset: the alpha cap and the REDQ ensemble.
        "alpha_max": 0.1,
        "n_critics": 10,
        "target_critics": 2,
    }
    # Editing the caller's config afterwards and validating again resolves for the new value.
    given.num_envs = 4096
    assert given.validate().buffer_size == 64 * 4096


def test_validate_keeps_explicit_sizes_and_resolve_auto_copies() -> None:
    given = Config(batch_size=32, buffer_size=5000)
    assert (given.validate().batch_size, given.validate().buffer_size) == (32, 5000)
    auto = Config(num_envs=8)
    resolved = auto.resolve_auto()
    assert (auto.batch_size, auto.buffer_size) == (0, 0)
    assert (resolved.batch_size, resolved.buffer_size) == (128, 100_000)


def test_failed_validate_leaves_the_caller_unchanged() -> None:
    given = Config(batch_size=0, buffer_size=0, gamma=2.0)
    with pytest.raises(ConfigError, match="gamma"):
        given.validate()
    assert (given.batch_size, given.buffer_size) == (0, 0)


def test_presets_apply_by_env_id_and_flags_win() -> None:
    from gumbel_ac.presets import PRESETS

    dials = Config(env="gumbel_ac/Dials-v0").validate()
    assert (dials.preset, dials.gamma) == ("gumbel_ac/Dials-v0", PRESETS["gumbel_ac/Dials-v0"]["gamma"])
    assert Config(env="gumbel_ac/Dials-v0", gamma=0.9).validate().gamma == 0.9  # a flag the user set wins
    plain = Config(env="gumbel_ac/Dials-v0", preset="none").validate()
    assert (plain.preset, plain.gamma) == ("none", Config().gamma)
    assert Config(env="gumbel_ac/Catch-v0").validate().preset == "none"  # Catch has no preset
    # A saved config is not changed again when it is re-checked (resume, eval.py).
    again = Config.from_dict(Config(env="gumbel_ac/Dials-v0", gamma=0.9).validate().to_dict()).validate()
    assert (again.preset, again.gamma) == ("gumbel_ac/Dials-v0", 0.9)
    with pytest.raises(ConfigError, match="preset must be"):
        Config(preset="tuned").validate()


def test_a_named_field_beats_the_preset_even_at_its_default(tmp_path: Path) -> None:
    # gamma=0.995 is the default: plain Config(...) cannot tell it was asked for and takes the
    # preset's 0.99; with_overrides and the command line know the fields the caller named.
    default_gamma = Config().gamma
    assert Config(env="LunarLander-v3", gamma=default_gamma).validate().gamma == 0.99
    named = Config.with_overrides(env="LunarLander-v3", gamma=default_gamma).validate()
    assert (named.gamma, named.actor_lr, named.preset) == (default_gamma, 1e-3, "LunarLander-v3")
    with pytest.raises(ConfigError, match="unknown Config field"):
        Config().naming(["gama"])
    from gumbel_ac.cli import named_fields

    assert named_fields(["--env", "X", "--actor-lr=3", "--no-autotune-alpha", "--alpha_max", "None", "-h"]) == {
        "env",
        "actor_lr",
        "autotune_alpha",
        "alpha_max",
    }
    # train.py: --alpha-max None on CartPole (whose preset caps alpha at 0.1) keeps no cap.
    import train

    assert train.main(["--env", "CartPole-v1", "--alpha-max", "None", "--total-steps", "64", "--learning-starts",
                       "32", "--batch-size", "16", "--eval-episodes", "1", "--final-eval-episodes", "1",
                       "--runs-dir", str(tmp_path), "--run-name", "r"]) == 0  # fmt: skip
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (saved["alpha_max"], saved["preset"]) == (None, "CartPole-v1")


def test_lunarlander_preset_sets_the_tuned_values_and_keeps_the_rest() -> None:
    lunar = Config(env="LunarLander-v3").validate()
    assert lunar.preset == "LunarLander-v3"
    assert (lunar.hidden_sizes, lunar.gamma, lunar.updates_per_step) == ((256, 256), 0.99, 4)
    assert (lunar.actor_lr, lunar.critic_lr, lunar.alpha_lr) == (1e-3, 1e-3, 1e-3)
    assert lunar.target_entropy_ratio == Config().target_entropy_ratio  # not in the preset
    assert Config(env="LunarLander-v3", updates_per_step=2).validate().updates_per_step == 2


def test_acrobot_preset_applies_to_gymnasiums_id_and_ours() -> None:
    for env_id in ("Acrobot-v1", "gumbel_ac/Acrobot-v1"):
        acrobot = Config(env=env_id).validate()
        assert (acrobot.preset, acrobot.hidden_sizes, acrobot.gamma) == (env_id, (256, 256), 0.99)
        assert acrobot.updates_per_step == Config().updates_per_step  # c1: no extra updates


def test_mountaincar_preset_turns_on_the_count_bonus_greedy_acting_and_rescaling() -> None:
    for env_id in ("MountainCar-v0", "gumbel_ac/MountainCar-v0"):
        car = Config(env=env_id).validate()
        assert (car.preset, car.count_bonus, car.count_bins, car.act, car.updates_per_step) == (
            env_id,
            3.0,
            16,
            "mode",
            2,
        )
        assert (car.obs_rescale, car.count_bonus_timing, car.n_step) == (True, "collect", 1)
        assert (car.gamma, car.hidden_sizes) == (Config().gamma, Config().hidden_sizes)
    assert Config.with_overrides(env="MountainCar-v0", obs_rescale=False).validate().obs_rescale is False
    assert Config(env="MountainCar-v0", preset="none").validate().count_bonus == 0.0
    assert Config(env="MountainCar-v0", count_bonus=1.0).validate().count_bonus == 1.0


def test_cartpole_preset_caps_alpha_and_sets_the_ensemble_only() -> None:
    for env_id in ("CartPole-v1", "gumbel_ac/CartPole-v1"):
        cart = Config(env=env_id).validate()
        assert (cart.preset, cart.alpha_max, cart.n_critics, cart.target_critics) == (env_id, 0.1, 10, 2)
        plain = dataclasses.replace(
            Config(env=env_id, preset="none").validate(), preset=env_id, alpha_max=0.1, n_critics=10, target_critics=2
        )
        assert cart == plain  # nothing else differs from the defaults
        # A flag that names the default wins over the preset (the twin critics, all in the target).
        twin = Config.with_overrides(env=env_id, n_critics=2, target_critics=None).validate()
        assert (twin.n_critics, twin.target_critics, twin.alpha_max) == (2, None, 0.1)
    with pytest.raises(ConfigError, match=r"alpha \(0.2\) must not exceed alpha_max \(0.1\).*CartPole-v1 preset"):
        Config(alpha=0.2).validate()
    assert Config(alpha=0.2, preset="none").validate().alpha_max is None
    assert Config(alpha=0.2, alpha_max=0.5).validate().alpha_max == 0.5
