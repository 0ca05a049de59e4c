"""Catch (bsuite), batched in torch: move a paddle to catch a falling ball.

Reference: bsuite/environments/catch.py. A ``rows x columns`` board; the ball starts in row 0
at a uniformly random column and falls one row per step; the paddle sits on the bottom row,
starting at column ``columns // 2``, and moves left/stay/right (actions 0/1/2, clipped at the
walls). When the ball reaches the bottom row the episode terminates with reward +1 if the
paddle is under it, else -1; every other step gives 0. Episodes last ``rows - 1`` steps.
Observation: bsuite's ``[rows, columns]`` float32 board with 1 at the ball and at the paddle
(``flatten=True`` gives ``[rows*columns]``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from .base import State, TorchVectorEnv
from .render import grid_image


class CatchEnv(TorchVectorEnv):
    """Batched Catch (actions: 0 left, 1 stay, 2 right).

    Args:
        num_envs, device, max_episode_steps, render_mode, validate_actions, seed, compile,
            compile_mode, reset_block, noise: see :class:`~gumbel_ac.envs.base.TorchVectorEnv`.
        rows, columns: board size (bsuite defaults 10 x 5).
        flatten: observations ``[rows*columns]`` instead of ``[rows, columns]``.
    """

    #: Largest ``rows`` and ``columns``: a 1024 x 1024 float32 observation is 4 MiB per env.
    MAX_SIDE: ClassVar[int] = 1024

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": ["rgb_array"],
        "render_fps": 4,
    }
    reset_noise_dim: ClassVar[int] = 1  # the ball's column

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        validate_actions: bool = True,
        seed: int | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        reset_block: int = 64,
        noise: str = "auto",
        rows: int = 10,
        columns: int = 5,
        flatten: bool = False,
    ) -> None:
        # Checked before anything is built: the observation is rows*columns floats per env.
        if not (2 <= rows <= self.MAX_SIDE and 1 <= columns <= self.MAX_SIDE):
            raise ValueError(
                f"Catch needs 2 <= rows <= {self.MAX_SIDE} and 1 <= columns <= {self.MAX_SIDE}, got {rows} x {columns}."
            )
        self.rows, self.columns, self.flatten = int(rows), int(columns), flatten
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
        shape = (rows * columns,) if flatten else (rows, columns)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=shape, dtype=np.float32)
        self.single_action_space = spaces.Discrete(3)
        self._setup()

    def _reset_from_uniform(self, u: torch.Tensor) -> State:
        # bsuite: ball_x = rng.randint(columns), ball_y = 0, paddle_x = columns // 2.
        ball_x = (u[..., 0] * self.columns).to(torch.int64).clamp(max=self.columns - 1)
        ball_y = torch.zeros_like(ball_x)
        paddle_x = torch.full_like(ball_x, self.columns // 2)
        return (ball_x, ball_y, paddle_x)

    def _dynamics(self, state: State, actions_N: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        ball_x, ball_y, paddle_x = state
        paddle_x = (paddle_x + actions_N - 1).clamp(0, self.columns - 1)  # _ACTIONS = (-1, 0, 1)
        ball_y = ball_y + 1
        terminated = ball_y == self.rows - 1
        caught = torch.where(paddle_x == ball_x, 1.0, -1.0)
        reward = torch.where(terminated, caught, 0.0).to(torch.float32)
        return (ball_x, ball_y, paddle_x), reward, terminated

    def _observe(self, state: State) -> torch.Tensor:
        ball_x, ball_y, paddle_x = state
        cells = torch.arange(self.rows * self.columns, device=ball_x.device)
        ball = cells == (ball_y * self.columns + ball_x).unsqueeze(1)
        paddle = cells == ((self.rows - 1) * self.columns + paddle_x).unsqueeze(1)
        obs = (ball | paddle).to(torch.float32)
        return obs if self.flatten else obs.view(-1, self.rows, self.columns)

    def _render_rgb(self, state_i: State) -> np.ndarray:
        ball_x, ball_y, paddle_x = (int(t) for t in state_i)
        grid = np.zeros((self.rows, self.columns), dtype=np.float32)
        grid[ball_y, ball_x] = 1.0
        grid[self.rows - 1, paddle_x] = 1.0
        return grid_image(grid)
