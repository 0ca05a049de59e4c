"""Dials: a contextual task with a combinatorial ``MultiDiscrete`` action space, batched in torch.

Why: the package's agent acts with factorised categorical heads (one head per
``MultiDiscrete`` dimension). Dials makes the joint action space as large as wanted
(``choices ** heads`` joint actions) while keeping the optimal policy trivial to read off the
observation, so what is measured is how an estimator copes with the *size* and the
*coupling* of the action space, not exploration or credit assignment over time.

Task. Each step shows a target code ``c in {0..choices-1}^heads``; the action is one value per
head (``MultiDiscrete([choices] * heads)``); the code of the next step is drawn afresh,
independently of the actions. Rewards per step:

* ``reward="count"``: the fraction of heads with ``a_h == c_h`` (in [0, 1]). Every head gets
  its own signal: per-head credit assignment suffices.
* ``reward="pairs"``: the fraction of the ``heads - 1`` adjacent pairs ``(h, h+1)`` with both
  ``a_h == c_h`` and ``a_{h+1} == c_{h+1}``. One right head alone earns nothing, so a learner
  must coordinate heads (the signal of a head depends on its neighbours being right).

Observation: the code one-hot per head, concatenated: float32 ``[heads * choices]``, entry
``h * choices + c_h`` is 1. The step index is *not* shown.

Horizon: no termination; the time limit truncates each episode after ``T =
max_episode_steps`` steps (default and registered value 8). Truncation, not termination,
because rounds are i.i.d. and the observation does not show the step index: the task is an
endless stream of rounds cut into episodes only so that episode statistics exist, and a
learner should bootstrap through the cut (terminating at ``T`` would make the value depend on
an unobserved step count).

Returns (per episode of ``T`` steps; codes uniform and independent of the actions):

* optimal (``a = c`` every step): every step pays exactly 1, return ``T`` (8);
* uniform random actions: each head matches with probability ``p = 1/choices``,
  independently of the other heads, so ``E[count] = p`` and, each adjacent pair being right
  with probability ``p**2``, ``E[pairs] = p**2``: return ``T / choices`` (count; 1 for
  8 choices) and ``T / choices**2`` (pairs; 0.125 for 8 choices).

Randomness: a code stream per episode. At reset a row draws a 32-bit key from two of the
env's uniforms (its ``torch.Generator``, or the hash generator, see ``base.py``); the code of
step ``t`` is ``hash(key, t, h) mod choices`` (Wellons' lowbias32, applied twice). The
base class only hands noise to the reset hook, and a pure counter-based stream keeps the step
a straight-line tensor graph: the same seed and actions give the same trajectories, eager or
compiled. ``mod choices`` is exactly uniform when ``choices`` is a power of two; otherwise
its bias is below ``choices / 2**32``.

State (all in :meth:`state_dict`, so a checkpoint restores the code shown and the stream):
``(key [N] int64, t [N] int64, code [N, heads] int64)``.

Shape legend: ``N`` = num_envs, ``H`` = heads, ``C`` = choices.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from .base import _M32, State, TorchVectorEnv, _hash32

REWARDS = ("count", "pairs")


def key_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """A 32-bit stream key (int64) from the last axis of ``u`` (2 float32 uniforms in [0, 1)).

    Both of the base class's noise sources give float32 multiples of ``2**-24`` (torch.rand
    fills the 24-bit mantissa; ``hash_uniform`` returns ``(h >> 8) / 2**24``), so
    ``u * 2**24`` is an exact 24-bit integer; the two are mixed into one 32-bit key.
    """
    lo = (u[..., 0] * float(1 << 24)).to(torch.int64)
    hi = (u[..., 1] * float(1 << 24)).to(torch.int64)
    return _hash32(lo ^ _hash32(hi))


def stream_bits(key: torch.Tensor, t: torch.Tensor, width: int) -> torch.Tensor:
    """``[..., width]`` 32-bit hashes (int64 in [0, 2**32)) of ``(key, t, j)`` for ``j < width``.

    ``key`` and ``t`` are int64 of the same shape ``[...]``; the counter ``t * width + j`` is
    hashed with the key mixed in, and the result hashed again with the counter's high word, so
    different keys give unrelated streams and the counter never wraps in practice.
    """
    j = torch.arange(width, device=key.device, dtype=torch.int64)
    idx = t.unsqueeze(-1) * width + j
    h = _hash32((idx & _M32) ^ key.unsqueeze(-1))
    return _hash32(h ^ ((idx >> 32) & _M32))


class DialsEnv(TorchVectorEnv):
    """Batched Dials: match a shown code with ``heads`` dials of ``choices`` positions each.

    See the module docstring for the task, the horizon and the optimal/random returns.

    Args:
        num_envs, device, max_episode_steps, render_mode, validate_actions, seed, compile,
            compile_mode, reset_block, noise: see :class:`~gumbel_ac.envs.base.TorchVectorEnv`.
            ``max_episode_steps`` is the horizon ``T`` (default 8); ``None`` gives endless
            episodes (and no episode statistics).
        heads: number of dials ``H`` (action heads), >= 1 (>= 2 for ``reward="pairs"``).
        choices: positions per dial ``C``, >= 2.
        reward: ``"count"`` or ``"pairs"``.

    Actions: int ``[N, H]`` (one value per head), as the ``MultiDiscrete`` batched space says.
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": [],
        "render_fps": 4,
    }
    # MultiDiscrete([choices] * heads): the base class takes [N, H] actions for it.
    single_action_space: spaces.MultiDiscrete  # type: ignore[assignment]
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
        heads: int = 4,
        choices: int = 8,
        reward: str = "count",
    ) -> None:
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}.")
        # Exact ints (not floats or bools): a silently truncated 2.5 would be another task.
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (heads, choices)):
            raise ValueError(f"heads and choices must be ints, got {heads!r} and {choices!r}.")
        if heads < 1 or choices < 2:
            raise ValueError(f"Dials needs heads >= 1 and choices >= 2, got heads={heads}, choices={choices}.")
        if reward == "pairs" and int(heads) < 2:
            raise ValueError("reward='pairs' needs heads >= 2 (it scores adjacent pairs of heads).")
        self.heads, self.choices, self.reward = int(heads), int(choices), reward
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
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(self.heads * self.choices,), dtype=np.float32)
        self.single_action_space = spaces.MultiDiscrete([self.choices] * self.heads)
        self._setup()

    # ------------------------------------------------------------------ hooks
    def _codes(self, key: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The code of step ``t`` of the streams ``key``: int64 ``[..., H]``."""
        return stream_bits(key, t, self.heads) % self.choices

    def _reset_from_uniform(self, u: torch.Tensor) -> State:
        key = key_from_uniform(u)
        t = torch.zeros_like(key)
        return (key, t, self._codes(key, t))

    def _dynamics(self, state: State, actions_N: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        key, t, code_NH = state
        match_NH = actions_N == code_NH
        if self.reward == "count":
            reward = match_NH.to(torch.float32).mean(-1)
        else:
            reward = (match_NH[:, :-1] & match_NH[:, 1:]).to(torch.float32).mean(-1)
        t = t + 1
        return (key, t, self._codes(key, t)), reward, torch.zeros_like(match_NH[:, 0])

    def _observe(self, state: State) -> torch.Tensor:
        code_NH = state[2]
        onehot = code_NH.unsqueeze(-1) == torch.arange(self.choices, device=code_NH.device)
        return onehot.to(torch.float32).flatten(-2)

    # ------------------------------------------------------------------ validation
