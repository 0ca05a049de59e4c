"""Acrobot-v1, batched in torch, with the dynamics of Gymnasium's own implementation.

Reference: gymnasium/envs/classic_control/acrobot.py (``AcrobotEnv``; Sutton & Barto's
"book" dynamics, Gymnasium's default ``book_or_nips="book"``), integrated with one classic
RK4 step of ``dt = 0.2`` s as Gymnasium's ``rk4`` does, angles wrapped to [-pi, pi] and
velocities clipped to [-4 pi, 4 pi] and [-9 pi, 9 pi]. Reward -1 per step, 0 on the step
that terminates (tip above the bar: ``-cos(t1) - cos(t1 + t2) > 1``); time limit 500.
Start state: each of (t1, t2, dt1, dt2) uniform in (-0.1, 0.1), rounded to float32 as
Gymnasium does (``.astype(np.float32)``); the state is float64 afterwards, as in Gymnasium.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control import utils as cc_utils
from gymnasium.vector import AutoresetMode

from .base import State, TorchVectorEnv

_PI = math.pi


def _wrap(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Gymnasium's ``wrap`` (a while loop adding/subtracting the period), unrolled twice.

    One RK4 step changes an angle by less than 2 periods (|velocity| <= 9 pi, dt = 0.2 gives
    < 1.8 pi plus RK4 overshoot), so two passes reproduce the loop's result bit for bit.
    """
    diff = hi - lo
    for _ in range(2):
        x = torch.where(x > hi, x - diff, x)
    for _ in range(2):
        x = torch.where(x < lo, x + diff, x)
    return x


class AcrobotEnv(TorchVectorEnv):
    """Batched Acrobot-v1 (actions: torque -1, 0, +1 on the joint between the links).

    Args:
        num_envs, device, max_episode_steps, render_mode, validate_actions, seed, compile,
            compile_mode, reset_block, noise: see :class:`~gumbel_ac.envs.base.TorchVectorEnv`.
        dtype: floating dtype of the state (float64 matches Gymnasium).
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": [],
        "render_fps": 15,
    }
    reset_noise_dim: ClassVar[int] = 4

    # Constants: gymnasium/envs/classic_control/acrobot.py AcrobotEnv class attributes.
    dt = 0.2
    LINK_LENGTH_1 = 1.0
    LINK_MASS_1 = 1.0
    LINK_MASS_2 = 1.0
    LINK_COM_POS_1 = 0.5
    LINK_COM_POS_2 = 0.5
    LINK_MOI = 1.0
    MAX_VEL_1 = 4 * _PI
    MAX_VEL_2 = 9 * _PI

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        max_episode_steps: int | None = 500,
        render_mode: str | None = None,
        validate_actions: bool = True,
        seed: int | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        reset_block: int = 64,
        noise: str = "auto",
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
        self.dtype = dtype
        self.low, self.high = -0.1, 0.1
        high = np.array([1.0, 1.0, 1.0, 1.0, self.MAX_VEL_1, self.MAX_VEL_2], dtype=np.float32)
        self.single_observation_space = spaces.Box(low=-high, high=high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(3)
        self._setup()

    def _parse_reset_options(self, options: dict[str, Any]) -> None:
        self.low, self.high = cc_utils.maybe_parse_reset_bounds(options, -0.1, 0.1)

    def _reset_from_uniform(self, u: torch.Tensor) -> State:
        v = u * (self.high - self.low) + self.low  # float32, as Gymnasium's start state
        return (v[..., 0], v[..., 1], v[..., 2], v[..., 3])

    def _dsdt(self, s: State, torque: torch.Tensor) -> State:
        """Time derivative of (t1, t2, dt1, dt2): Gymnasium's ``_dsdt``, "book" branch."""
        m1, m2 = self.LINK_MASS_1, self.LINK_MASS_2
        l1, lc1, lc2 = self.LINK_LENGTH_1, self.LINK_COM_POS_1, self.LINK_COM_POS_2
        i1 = i2 = self.LINK_MOI
        g = 9.8
        theta1, theta2, dtheta1, dtheta2 = s
        cos_t2 = torch.cos(theta2)
        sin_t2 = torch.sin(theta2)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos_t2) + i1 + i2
        d2 = m2 * (lc2**2 + l1 * lc2 * cos_t2) + i2
        phi2 = m2 * lc2 * g * torch.cos(theta1 + theta2 - _PI / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * dtheta2**2 * sin_t2
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin_t2
            + (m1 * lc1 + m2 * l1) * g * torch.cos(theta1 - _PI / 2)
            + phi2
        )
        ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * sin_t2 - phi2) / (
            m2 * lc2**2 + i2 - d2**2 / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return dtheta1, dtheta2, ddtheta1, ddtheta2

    def _dynamics(self, state: State, actions_N: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        torque = (actions_N - 1).to(state[0].dtype)  # AVAIL_TORQUE = [-1, 0, +1]
        # One RK4 step over [0, dt] (gymnasium acrobot.py `rk4` with t = [0, dt]).
        dt, dt2 = self.dt, self.dt / 2.0
        k1 = self._dsdt(state, torque)
        k2 = self._dsdt(tuple(y + dt2 * k for y, k in zip(state, k1, strict=True)), torque)
        k3 = self._dsdt(tuple(y + dt2 * k for y, k in zip(state, k2, strict=True)), torque)
        k4 = self._dsdt(tuple(y + dt * k for y, k in zip(state, k3, strict=True)), torque)
        ns = [y + dt / 6.0 * (a + 2 * b + 2 * c + d) for y, a, b, c, d in zip(state, k1, k2, k3, k4, strict=True)]
        t1 = _wrap(ns[0], -_PI, _PI)
        t2 = _wrap(ns[1], -_PI, _PI)
        v1 = ns[2].clamp(-self.MAX_VEL_1, self.MAX_VEL_1)
        v2 = ns[3].clamp(-self.MAX_VEL_2, self.MAX_VEL_2)
        terminated = -torch.cos(t1) - torch.cos(t2 + t1) > 1.0
        reward = torch.where(terminated, 0.0, -1.0).to(torch.float32)
        return (t1, t2, v1, v2), reward, terminated

    def _observe(self, state: State) -> torch.Tensor:
        t1, t2, v1, v2 = state
        return torch.stack([torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2), v1, v2], dim=1).to(
            torch.float32
        )
