"""MountainCar-v0, batched in torch, with the dynamics of Gymnasium's own implementation.

Reference: gymnasium/envs/classic_control/mountain_car.py (``MountainCarEnv``, Moore 1990):
``v += (a - 1) * 0.001 - 0.0025 cos(3 x)``, clip ``v`` to +-0.07, ``x += v``, clip ``x`` to
[-1.2, 0.6], zero a negative velocity at the left wall; terminated when ``x >= 0.5`` (and
``v >= goal_velocity``); reward -1 every step; time limit 200. Start: ``x`` uniform in
(-0.6, -0.4), ``v = 0``. State float64 as in Gymnasium.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control import utils as cc_utils
from gymnasium.vector import AutoresetMode

from .base import State, TorchVectorEnv


class MountainCarEnv(TorchVectorEnv):
    """Batched MountainCar-v0 (actions: 0 push left, 1 no push, 2 push right).

    Args:
        num_envs, device, max_episode_steps, render_mode, validate_actions, seed, compile,
            compile_mode, reset_block, noise: see :class:`~gumbel_ac.envs.base.TorchVectorEnv`.
        goal_velocity: Gymnasium's option: minimum velocity at the goal.
        dtype: floating dtype of the state (float64 matches Gymnasium).
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": [],
        "render_fps": 30,
    }
    reset_noise_dim: ClassVar[int] = 1

    min_position = -1.2
    max_position = 0.6
    max_speed = 0.07
    goal_position = 0.5
    force = 0.001
    gravity = 0.0025

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        max_episode_steps: int | None = 200,
        render_mode: str | None = None,
        validate_actions: bool = True,
        seed: int | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        reset_block: int = 64,
        noise: str = "auto",
        goal_velocity: float = 0.0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(
            num_envs=num_envs,
            device=device,
            max_episode_steps=max_episode_steps,
            render_mode=render_mode,
            validate_actions=validate_actions,
            seed=seed,
            compile=compile,
            compile_mode=compile_mode,
            reset_block=reset_block,
            noise=noise,
        )
        self.goal_velocity = goal_velocity
        self.dtype = dtype
        self.low, self.high = -0.6, -0.4
        low = np.array([self.min_position, -self.max_speed], dtype=np.float32)
        high = np.array([self.max_position, self.max_speed], dtype=np.float32)
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(3)
        self._setup()

    def _parse_reset_options(self, options: dict[str, Any]) -> None:
        self.low, self.high = cc_utils.maybe_parse_reset_bounds(options, -0.6, -0.4)

    def _reset_from_uniform(self, u: torch.Tensor) -> State:
        position = u[..., 0] * (self.high - self.low) + self.low
        return (position, torch.zeros_like(position))

    def _dynamics(self, state: State, actions_N: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        position, velocity = state
        # Same association as Gymnasium: v += ((a - 1) * force + cos(3 x) * (-gravity)).
        velocity = velocity + (
            (actions_N - 1).to(velocity.dtype) * self.force + torch.cos(3 * position) * (-self.gravity)
        )
        velocity = velocity.clamp(-self.max_speed, self.max_speed)
        position = (position + velocity).clamp(self.min_position, self.max_position)
        velocity = torch.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= self.goal_velocity)
        reward = torch.full_like(position, -1.0, dtype=torch.float32)
        return (position, velocity), reward, terminated

    def _observe(self, state: State) -> torch.Tensor:
        return torch.stack(state, dim=1).to(torch.float32)
