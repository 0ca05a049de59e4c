"""Pennies: matching pennies (and its K-action generalisation) against an adaptive opponent.

Why: a task whose optimal policy is *stochastic*. Every other env here has a deterministic
optimal policy, so a method that collapses to its mode loses nothing at the optimum; here any
deterministic policy is exploited, and the question "does noise in acting or in the actor's
gradient help?" has a task where the answer must show.

Task (a repeated zero-sum game, batched). The agent picks one of ``K`` actions each step. The
opponent guesses it *before* seeing it, from the agent's recent actions only: it keeps an
exponential moving average ``f`` of the agent's one-hot actions (rate ``memory``, started at
the uniform ``1/K``) and draws its guess from the smoothed best response
``g ~ softmax(sharpness * f)`` (fictitious play with a logit response, Fudenberg and Levine
1998, "The Theory of Learning in Games", ch. 4). The agent earns 1 when its action differs
from the guess, 0 when it is guessed:

    r_t = 1[a_t != g_t],    f_{t+1} = (1 - memory) f_t + memory onehot(a_t).

``K = 2`` is matching pennies (the agent is the "mismatcher"; payoffs 1/0 instead of +-1, an
affine change). The observation is a constant (``[1.0]``): the agent cannot see the
opponent's state or the step index, so its policies are the stationary mixed strategies
``pi`` and ``a_t`` is drawn independently of the opponent's guess ``g_t`` (a function of the
past only): ``E r_t = 1 - E[pi(g_t)]``.

Returns (per episode of ``T = max_episode_steps`` steps, default 32):

* optimal: ``T (1 - 1/K)`` (16 for pennies), the uniform policy. It earns exactly
  ``1 - 1/K`` per step against *any* guess distribution (``sum_g q(g) / K = 1/K``), and this
  is the game's value: against an opponent that knows ``pi`` and best responds,
  ``max_pi min_g (1 - pi(g)) = 1 - 1/K``, attained only by the uniform ``pi``. This
  opponent only estimates ``pi`` from recent actions, yet non-uniform policies still lose to
  it: for ``K = 2`` with ``pi(0) = p > 1/2``, ``f_t(0) - f_t(1)`` is a sum of independent terms
  each more likely positive than negative, so it is stochastically larger than its negative
  and ``E[q_t(0)] >= 1/2``, giving ``E r_t = 1/2 - (2p - 1)(E q_t(0) - 1/2) <= 1/2``
  (``tests/test_envs_pennies.py`` checks ``p = 0.7`` and a 4-action skewed policy by Monte Carlo).
* any deterministic policy (always action ``a``): ``f_t(a) - f_t(b) = 1 - (1 - memory)**t``
  for every ``b != a``, so the guess hits ``a`` with probability
  ``1 / (1 + (K - 1) exp(-sharpness (1 - (1 - memory)**t)))`` and the return is
  :func:`deterministic_return` (0.66 for pennies with the defaults: exploited after ~3 steps).

Randomness: as Bandit (``bandit.py``): a 32-bit stream key per episode from the env's
generator; the guess of step ``t`` is the inverse CDF of ``q_t`` at the uniform
``hash(key, t) / 2**32`` (24 bits kept), so trajectories depend only on the seed and the actions.

State (all in :meth:`state_dict`): ``(key [N] int64, t [N] int64, f [N, K] float32)``.
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


def optimal_return(actions: int, horizon: int) -> float:
    """``T (1 - 1/K)``: the uniform policy's expected return, the game's value (module docstring)."""
    return horizon * (1.0 - 1.0 / actions)


def deterministic_return(actions: int, horizon: int, memory: float, sharpness: float) -> float:
    """Expected return of a policy that always plays the same action (module docstring).

    ``sum_{t < T} (1 - 1 / (1 + (K - 1) exp(-sharpness * (1 - (1 - memory)**t))))``.
    """
    total = 0.0
    for t in range(horizon):
        gap = 1.0 - (1.0 - memory) ** t
        total += 1.0 - 1.0 / (1.0 + (actions - 1) * math.exp(-sharpness * gap))
    return total


class PenniesEnv(TorchVectorEnv):
    """Batched K-action matching pennies against a fictitious-play opponent.

    See the module docstring for the game, the observation and the optimal/deterministic returns.

    Args:
        num_envs, device, max_episode_steps, render_mode, validate_actions, seed, compile,
            compile_mode, reset_block, noise: see :class:`~gumbel_ac.envs.base.TorchVectorEnv`.
            ``max_episode_steps`` is the horizon ``T`` (default 32).
        actions: number of actions ``K`` >= 2 (2: matching pennies).
        memory: the opponent's moving-average rate in (0, 1] (1: it remembers one action).
        sharpness: inverse temperature of the opponent's logit best response, >= 0 (0: it
            guesses uniformly and every policy earns ``1 - 1/K``).
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
        max_episode_steps: int | None = 32,
        render_mode: str | None = None,
        validate_actions: bool = True,
        seed: int | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        reset_block: int = 64,
        noise: str = "auto",
        actions: int = 2,
        memory: float = 0.2,
        sharpness: float = 10.0,
    ) -> None:
        if not isinstance(actions, int) or isinstance(actions, bool) or actions < 2:
            raise ValueError(f"Pennies needs an int actions >= 2, got {actions!r}.")
        if isinstance(memory, bool) or not isinstance(memory, (int, float)) or not 0.0 < memory <= 1.0:
            raise ValueError(f"memory must be a number in (0, 1], got {memory!r}.")
        if (
            isinstance(sharpness, bool)
            or not isinstance(sharpness, (int, float))
            or not (math.isfinite(sharpness) and sharpness >= 0)
        ):
            raise ValueError(f"sharpness must be a finite number >= 0, got {sharpness!r}.")
        self.actions, self.memory, self.sharpness = int(actions), float(memory), float(sharpness)
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
        self.single_observation_space = spaces.Box(1.0, 1.0, shape=(1,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(self.actions)
        self._setup()

    def _reset_from_uniform(self, u: torch.Tensor) -> State:
        key = key_from_uniform(u)
        freq = torch.full((*key.shape, self.actions), 1.0 / self.actions, dtype=torch.float32, device=u.device)
        return (key, torch.zeros_like(key), freq)

    def guess_probs(self, freq: torch.Tensor) -> torch.Tensor:
        """The opponent's guess distribution ``softmax(sharpness * f)`` ``[..., K]``."""
        return torch.softmax(self.sharpness * freq, dim=-1)

    def _dynamics(self, state: State, actions_N: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        key, t, freq = state
        q = self.guess_probs(freq)
        # A 24-bit uniform in [0, 1) from the stream, then the inverse CDF of q (clamped: the
        # float32 cumsum may end a hair below 1).
        u = (stream_bits(key, t, 1).squeeze(-1) >> 8).to(torch.float32) * (1.0 / (1 << 24))
        guess = (q.cumsum(-1) <= u.unsqueeze(-1)).sum(-1).clamp(max=self.actions - 1)
        reward = (actions_N != guess).to(torch.float32)
        onehot = torch.nn.functional.one_hot(actions_N, self.actions).to(torch.float32)
        freq = (1.0 - self.memory) * freq + self.memory * onehot
        return (key, t + 1, freq), reward, torch.zeros_like(actions_N, dtype=torch.bool)

    def _observe(self, state: State) -> torch.Tensor:
        return torch.ones((state[0].shape[0], 1), dtype=torch.float32, device=state[0].device)
