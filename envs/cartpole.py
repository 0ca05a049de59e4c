"""CartPole-v1, batched in torch, with the dynamics of Gymnasium's own implementation.

Reference: gymnasium/envs/classic_control/cartpole.py (``CartPoleEnv`` and its numpy
``CartPoleVectorEnv``), which follows Barto, Sutton & Anderson (1983) with Euler integration.
Same constants, spaces, reward (+1 every step, the terminating one included), termination
(|x| > 2.4 or |theta| > 12 deg), time limit (500 for v1) and start states (each state
variable uniform in (-0.05, 0.05); ``reset(options={"low": ..., "high": ...})`` as Gymnasium).

Precision: Gymnasium computes in float64 numpy and casts the observation to float32. The
state here is float64 by default too, so observations agree to float32 rounding and whole
episodes agree with Gymnasium's from the same start state (``tests/test_envs_classic.py``).
``dtype=torch.float32`` halves memory traffic (useful on GPUs with slow float64) at the cost
of that exact agreement; the start-state noise is drawn in float32 either way (a uniform on a
2^-24 grid, indistinguishable for learning, half the RNG cost).
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
from .render import fill_circle, fill_convex_polygon


class CartPoleEnv(TorchVectorEnv):
    """Batched CartPole-v1 (actions: 0 push left, 1 push right).

    Args:
        num_envs, device, max_episode_steps, render_mode, validate_actions, seed, compile,
            compile_mode, reset_block, noise: see :class:`~gumbel_ac.envs.base.TorchVectorEnv`.
        sutton_barto_reward: Gymnasium's option: reward 0 per step and -1 on termination.
        dtype: floating dtype of the state (float64 matches Gymnasium; see module docstring).
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": ["rgb_array"],
        "render_fps": 50,
    }
    reset_noise_dim: ClassVar[int] = 4

    # Physical constants: gymnasium/envs/classic_control/cartpole.py CartPoleEnv.__init__.
    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    total_mass = masspole + masscart
    length = 0.5  # half the pole's length
    polemass_length = masspole * length
    force_mag = 10.0
    tau = 0.02  # seconds between state updates (Euler)
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4

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
        sutton_barto_reward: bool = False,
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
        self.sutton_barto_reward = sutton_barto_reward
        self.dtype = dtype
        self.low, self.high = -0.05, 0.05
        high = np.array([self.x_threshold * 2, np.inf, self.theta_threshold_radians * 2, np.inf], dtype=np.float32)
        self.single_observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(2)
        self._setup()

    def _parse_reset_options(self, options: dict[str, Any]) -> None:
        # Same option names and checks as Gymnasium's CartPole reset.
        self.low, self.high = cc_utils.maybe_parse_reset_bounds(options, -0.05, 0.05)

    def _reset_from_uniform(self, u: torch.Tensor) -> State:
        # Gymnasium: every state variable uniform in (low, high), default (-0.05, 0.05).
        v = u * (self.high - self.low) + self.low
        return (v[..., 0], v[..., 1], v[..., 2], v[..., 3])

    def _dynamics(self, state: State, actions_N: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        x, x_dot, theta, theta_dot = state
        # Same expression order as Gymnasium's step, so float64 results agree to the last bits.
        force = torch.where(actions_N == 1, self.force_mag, -self.force_mag)
        costheta = torch.cos(theta)
        sintheta = torch.sin(theta)
        temp = (force + self.polemass_length * (theta_dot * theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * (costheta * costheta) / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        # |x| > t  <=>  x < -t or x > t, exactly (Gymnasium writes the four comparisons).
        terminated = (x.abs() > self.x_threshold) | (theta.abs() > self.theta_threshold_radians)
        if self.sutton_barto_reward:
            reward = -terminated.to(torch.float32)
        else:
            reward = torch.ones_like(x, dtype=torch.float32)
        return (x, x_dot, theta, theta_dot), reward, terminated

    def _observe(self, state: State) -> torch.Tensor:
        return torch.stack([s.to(torch.float32) for s in state], dim=1)

    # ------------------------------------------------------------------ rendering
    screen_width = 600
    screen_height = 400

    def _render_rgb(self, state_i: State) -> np.ndarray:
        """Draw Gymnasium's CartPole picture (same geometry and colours) with numpy only."""
        x = float(state_i[0])
        theta = float(state_i[2])
        w, h = self.screen_width, self.screen_height
        img = np.full((h, w, 3), 255, dtype=np.uint8)
        scale = w / (self.x_threshold * 2)
        polewidth, polelen = 10.0, scale * (2 * self.length)
        cartwidth, cartheight = 50.0, 30.0
        cartx, carty = x * scale + w / 2.0, 100.0  # world y (up); flipped to rows below
        axle_y = carty + cartheight / 4.0

        def to_px(pts: list[tuple[float, float]]) -> np.ndarray:
            arr = np.asarray(pts, dtype=np.float64)
            return np.stack([arr[:, 0], h - arr[:, 1]], axis=1)  # Gymnasium flips vertically

        # Track line.
        img[int(h - carty), :, :] = 0
        cart = [
            (cartx - cartwidth / 2, carty - cartheight / 2),
            (cartx - cartwidth / 2, carty + cartheight / 2),
            (cartx + cartwidth / 2, carty + cartheight / 2),
            (cartx + cartwidth / 2, carty - cartheight / 2),
        ]
        fill_convex_polygon(img, to_px(cart), (0, 0, 0))
        # Pole: rectangle rotated by -theta about the axle (pygame's rotate_rad(-theta)).
        c, s = math.cos(-theta), math.sin(-theta)
        pole = []
        for px, py in [
            (-polewidth / 2, -polewidth / 2),
            (-polewidth / 2, polelen - polewidth / 2),
            (polewidth / 2, polelen - polewidth / 2),
            (polewidth / 2, -polewidth / 2),
        ]:
            pole.append((px * c - py * s + cartx, px * s + py * c + axle_y))
        fill_convex_polygon(img, to_px(pole), (202, 152, 101))
        fill_circle(img, cartx, h - axle_y, polewidth / 2, (129, 132, 203))
        return img
