"""Batched torch environments (import name ``gumbel_ac.envs``).

Importing this package registers the ids below with Gymnasium, so
``gymnasium.make_vec("gumbel_ac/CartPole-v1", num_envs=4096, device="cuda")`` builds a
population of 4096 CartPoles on the GPU. See ``base.py`` for the step/reset semantics.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import torch

from .base import State, TorchVectorEnv

NAMESPACE = "gumbel_ac"

# id -> (vector entry point, max_episode_steps of the Gymnasium/bsuite original).
_SPECS: dict[str, tuple[str, int | None]] = {
    f"{NAMESPACE}/CartPole-v1": ("gumbel_ac.envs.cartpole:CartPoleEnv", 500),
    f"{NAMESPACE}/Acrobot-v1": ("gumbel_ac.envs.acrobot:AcrobotEnv", 500),
    f"{NAMESPACE}/MountainCar-v0": ("gumbel_ac.envs.mountain_car:MountainCarEnv", 200),
    # bsuite's tasks end by themselves (after `size` and `rows - 1` steps): no time limit.
    f"{NAMESPACE}/DeepSea-v0": ("gumbel_ac.envs.deep_sea:DeepSeaEnv", None),
    f"{NAMESPACE}/Catch-v0": ("gumbel_ac.envs.catch:CatchEnv", None),
    # Many arms: rounds of i.i.d. contexts, truncated after 8 steps (see bandit.py).
    f"{NAMESPACE}/Bandit-v0": ("gumbel_ac.envs.bandit:BanditEnv", 8),
    # A stochastic optimum: K-action matching pennies against an adaptive opponent, rounds of
    # 32 steps (see pennies.py).
    f"{NAMESPACE}/Pennies-v0": ("gumbel_ac.envs.pennies:PenniesEnv", 32),
}

# MultiDiscrete-action envs, registered and built by `make` like the others but kept out of
# ENV_IDS: the shared checks over ENV_IDS in tests/test_envs_base.py sample Discrete actions
# (`single_action_space.n`); tests/test_envs_large_actions.py runs those checks on these.
_MULTI_DISCRETE_SPECS: dict[str, tuple[str, int | None]] = {
    # Combinatorial actions: rounds of i.i.d. codes, truncated after 8 steps (see dials.py).
    f"{NAMESPACE}/Dials-v0": ("gumbel_ac.envs.dials:DialsEnv", 8),
}

# MinAtar (minatar 1.0.15): uint8 observations, so kept out of ENV_IDS (whose shared checks in
# tests/test_envs_base.py expect float32); tests/test_envs_minatar.py checks them. No time limit,
# as the reference's Gymnasium registration (v0: all 6 actions, v1: minimal action set).
_MINATAR_SPECS: dict[str, tuple[str, int | None]] = {
    f"{NAMESPACE}/MinAtar-{game}-v{v}": (f"gumbel_ac.envs.minatar:{game}Env", None)
    for game in ("Breakout", "Freeway", "Asterix", "SpaceInvaders")
    for v in (0, 1)
}
_MINATAR_SPECS.update(
    {f"{NAMESPACE}/MinAtar-Seaquest-v{v}": ("gumbel_ac.envs.minatar_seaquest:SeaquestEnv", None) for v in (0, 1)}
)

ENV_IDS: list[str] = list(_SPECS)
"""Every id this package registers with a ``Discrete`` action space."""

MULTI_DISCRETE_ENV_IDS: list[str] = list(_MULTI_DISCRETE_SPECS)
"""Every id this package registers with a ``MultiDiscrete`` action space."""

MINATAR_ENV_IDS: list[str] = list(_MINATAR_SPECS)
"""The MinAtar games (``uint8 [C, 10, 10]`` observations)."""


def _register() -> None:
    for env_id, (entry_point, max_steps) in {**_SPECS, **_MULTI_DISCRETE_SPECS, **_MINATAR_SPECS}.items():
        if env_id in gymnasium.registry:  # re-import (e.g. importlib.reload): keep the first
            continue
        kwargs = {"minimal_action_set": env_id.endswith("-v1")} if env_id in _MINATAR_SPECS else {}
        gymnasium.register(id=env_id, vector_entry_point=entry_point, max_episode_steps=max_steps, kwargs=kwargs)


_register()


def make(env_id: str, num_envs: int = 1, device: str | torch.device = "cpu", **kwargs: Any) -> TorchVectorEnv:
    """Build ``num_envs`` copies of ``env_id`` on ``device`` through ``gymnasium.make_vec``.

    ``env_id`` may omit the namespace (``"CartPole-v1"`` means ``"gumbel_ac/CartPole-v1"``);
    ``kwargs`` go to the env's constructor (``seed``, ``compile``, ``size``, ...).
    """
    if "/" not in env_id:
        env_id = f"{NAMESPACE}/{env_id}"
    if env_id not in _SPECS and env_id not in _MULTI_DISCRETE_SPECS and env_id not in _MINATAR_SPECS:
        ids = ENV_IDS + MULTI_DISCRETE_ENV_IDS + MINATAR_ENV_IDS
        raise ValueError(f"Unknown env id {env_id!r}; choose one of {ids}.")
    env = gymnasium.make_vec(env_id, num_envs=num_envs, device=device, **kwargs)
    assert isinstance(env, TorchVectorEnv)
    return env


__all__ = ["ENV_IDS", "MINATAR_ENV_IDS", "MULTI_DISCRETE_ENV_IDS", "NAMESPACE", "State", "TorchVectorEnv", "make"]
