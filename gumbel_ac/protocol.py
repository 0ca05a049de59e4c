"""The batched-environment protocol the trainer talks to: tensors in, tensors out.

Why a protocol of our own: the trainer must drive both Gymnasium vector envs (numpy, any
env id) and the batched torch envs of ``gumbel_ac.envs`` (state on a device) without
knowing which it has. Both are adapted to :class:`BatchedEnv`, whose ``step`` returns a
:class:`BatchStep` of tensors already on the trainer's device.

Semantics (the same as Gymnasium 1.x ``AutoresetMode.SAME_STEP`` and SB3's ``VecEnv``):

* ``step(actions)`` advances every sub-env once. Where an episode ends (terminated or
  truncated) the sub-env is reset *in the same call*: ``obs`` holds the reset observation
  and ``next_obs`` the true last observation of the finished episode. Elsewhere
  ``next_obs == obs``. So ``(obs_t, a_t, r_t, next_obs_t, terminated_t)`` is always a real
  transition, and ``obs`` is what the policy acts on next.
* ``valid`` marks rows that are real transitions. It is ``None`` when every row is (our
  torch envs, Gymnasium SAME_STEP envs); a bool tensor only for Gymnasium envs with
  NEXT_STEP autoreset, whose step after a done only resets (reward 0, action ignored).
* ``episode_done``/``episode_return``/``episode_length``: statistics of episodes that
  finished in this step (``episode_done`` true), tracked on the device so reading them needs
  no host sync until the logger asks.

Shape legend used across the package: ``N`` = num_envs, ``B`` = batch, ``K`` = number of
action logits (sum over heads for MultiDiscrete), ``H`` = number of action heads,
``D`` = flat observation size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import torch


@dataclass(frozen=True)
class BatchStep:
    """One vector step, every field a tensor on the env's device.

    Attributes:
        obs: ``[N, ...]`` observation the policy acts on next (reset obs where done).
        reward: ``[N]`` float32 reward of this transition.
        terminated: ``[N]`` bool, the MDP ended (no bootstrap).
        truncated: ``[N]`` bool, cut by a time limit (bootstrap from ``next_obs``).
        next_obs: ``[N, ...]`` the transition's true next observation (final obs where done).
        valid: ``[N]`` bool or ``None`` (all rows are transitions).
        episode_done: ``[N]`` bool, an episode finished in this step.
        episode_return: ``[N]`` float32 undiscounted return of the finished episode
            (meaningful where ``episode_done``).
        episode_length: ``[N]`` int64 length of the finished episode.
    """

    obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    next_obs: torch.Tensor
    valid: torch.Tensor | None
    episode_done: torch.Tensor
    episode_return: torch.Tensor
    episode_length: torch.Tensor


@runtime_checkable
class BatchedEnv(Protocol):
    """What the trainer needs from a population of environments."""

    num_envs: int
    device: torch.device
    single_observation_space: gym.Space[Any]
    single_action_space: gym.Space[Any]

    def reset(self, *, seed: int | None = None) -> torch.Tensor:
        """Reset every sub-env; return ``[N, ...]`` observations on ``device``."""
        ...

    def step(self, actions: torch.Tensor) -> BatchStep:
        """Advance every sub-env with ``actions`` (``[N]`` or ``[N, H]`` int64 on ``device``)."""
        ...

    def close(self) -> None:
        """Release resources (subprocesses, windows)."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """Everything that decides future steps, as tensors; ``None`` when the env's state
        cannot be captured (a Gymnasium numpy env: resume re-seeds it instead)."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` output (checked first; ``ValueError`` if it does not fit)."""
        ...
