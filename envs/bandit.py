"""Bandit: a contextual bandit with many arms and a smooth reward over them, batched in torch.

Why: one ``Discrete(arms)`` head whose size can be swept (16 to 1024 and beyond) while the
underlying problem stays the same, so that sampled gradient estimators and exact
enumeration over the arms can be compared as the action count grows. Neighbouring arms pay
almost as much as the best one, so value estimates generalise across arms.

Task. Each step draws a context arm ``k`` uniformly from ``{0..arms-1}`` and shows the point
``x = k / (arms - 1)`` in [0, 1]. Pulling arm ``a`` pays

    r(a, x) = exp(-(a / (arms - 1) - x)**2 / (2 * width**2)),

a Gaussian bump of width ``width`` (in units of ``x``, default 0.02) centred on the best arm
``k = round(x * (arms - 1))``. The context lies exactly on the arm grid, so the best arm pays
exactly 1. ``width`` is in ``x`` units, not arms, so the same task is only cut finer as
``arms`` grows: a bump spans about ``width * (arms - 1)`` arms each side (20 at 1024 arms;
at 16 arms and width 0.02 the neighbours pay ``exp(-5.6) = 0.004``, almost a needle).
The next context is drawn afresh, independently of the action.

Observation: float32 ``[x, sin(2 pi x), cos(2 pi x)]``. ``x`` alone suffices for the optimal
softmax policy to be linear in it: ``log r(a, x) = (a' x - a'**2 / 2) / width**2 + const(x)``
with ``a' = a / (arms - 1)``; the Fourier pair gives a critic smooth features to work with.

Horizon: no termination; the time limit truncates after ``T = max_episode_steps`` steps
(default and registered value 8), so the trainer's episode statistics exist. Truncation
rather than termination for the same reason as Dials (``dials.py``): rounds are i.i.d. and
the step index is not observed.

Returns (per episode of ``T`` steps):

* optimal (pull ``k``): exactly 1 per step, return ``T`` (8);
* uniform random arms: the mean over contexts and arms of the bump,
  ``rbar = (1 / arms**2) * sum_{d = -(arms-1)}^{arms-1} (arms - |d|) exp(-(d / (arms-1))**2 / (2 width**2))``
  (:func:`random_reward_per_step`), return ``T * rbar``. When the bump covers many arms
  (``width * (arms - 1) >> 1``) the sum is a Riemann sum of
  ``int_0^1 int_0^1 exp(-(y - x)**2 / (2 width**2)) dy dx
  = int_{-1}^{1} (1 - |d|) exp(-d**2 / (2 width**2)) dd ~= width sqrt(2 pi) - 2 width**2``
  (small ``width``; the ``-2 width**2`` is the bump cut off at the edges), so ``rbar ~= 0.0493``
  and the return ``~= 0.395`` at width 0.02, 1024 arms. When it covers less than an arm,
  ``rbar ~= 1 / arms``.

Randomness: as Dials (``dials.py``): a 32-bit stream key per episode from the env's
generator, the context of step ``t`` is ``hash(key, t) mod arms`` (bias below
``arms / 2**32`` when ``arms`` is not a power of two).

State (all in :meth:`state_dict`): ``(key [N] int64, t [N] int64, k [N] int64)``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from .base import State, TorchVectorEnv
from .dials import key_from_uniform, stream_bits


def random_reward_per_step(arms: int, width: float) -> float:
    """Expected reward of a uniformly random arm (the context uniform on the arm grid).

    ``(1 / arms**2) * sum_k sum_a r(a, k / (arms - 1))``, grouped by ``d = a - k``, which
    occurs ``arms - |d|`` times; computed in float64.
    """
    d = np.arange(-(arms - 1), arms, dtype=np.float64)
    bump = np.exp(-((d / (arms - 1)) ** 2) / (2.0 * width**2))
    return float(((arms - np.abs(d)) * bump).sum() / arms**2)


class BanditEnv(TorchVectorEnv):
    """Batched contextual bandit over ``arms`` arms with a Gaussian reward bump.

    See the module docstring for the task, the horizon and the optimal/random returns.

    Args:
        num_envs, device, max_episode_steps, render_mode, validate_actions, seed, compile,
            compile_mode, reset_block, noise: see :class:`~gumbel_ac.envs.base.TorchVectorEnv`.
            ``max_episode_steps`` is the horizon ``T`` (default 8).
        arms: number of arms, >= 2.
        width: width of the reward bump in context units (``x`` in [0, 1]), > 0.
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": [],
        "render_fps": 4,
    }
    reset_noise_dim: ClassVar[int] = 2  # the episode's 32-bit stream key

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        max_episode_steps: int | None = 8,
        render_mode: str | None = None,
        validate_actions: bool = True,
        seed: int | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        reset_block: int = 64,
        noise: str = "auto",
        arms: int = 1024,
        width: float = 0.02,
    ) -> None:
        if not isinstance(arms, int) or isinstance(arms, bool) or arms < 2:
            raise ValueError(f"Bandit needs an int arms >= 2, got {arms!r}.")
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not (math.isfinite(width) and width > 0):
            raise ValueError(f"width must be a positive number, got {width!r}.")
        self.arms, self.width = int(arms), float(width)
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
        self.single_observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(self.arms)
        self._setup()

    def _context(self, key: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The context arm of step ``t`` of the streams ``key``: int64 ``[...]``."""
        return stream_bits(key, t, 1).squeeze(-1) % self.arms

    def _reset_from_uniform(self, u: torch.Tensor) -> State:
        key = key_from_uniform(u)
        t = torch.zeros_like(key)
        return (key, t, self._context(key, t))

    def _dynamics(self, state: State, actions_N: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        key, t, k = state
        # Integer difference first: the best arm's exponent is exactly 0, its reward exactly 1.
        dist = (actions_N - k).to(torch.float32) / (self.arms - 1)
        reward = torch.exp(-dist.square() / (2.0 * self.width**2))
        t = t + 1
        return (key, t, self._context(key, t)), reward, torch.zeros_like(actions_N, dtype=torch.bool)

    def _observe(self, state: State) -> torch.Tensor:
        x = state[2].to(torch.float32) / (self.arms - 1)
        angle = (2.0 * math.pi) * x
        return torch.stack([x, torch.sin(angle), torch.cos(angle)], dim=-1)
