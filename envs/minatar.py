"""MinAtar (Young & Tian 2019), batched in torch and exact to the reference package.

Reference: the ``minatar`` package 1.0.15 (``minatar/environment.py``, ``minatar/gym.py`` and
``minatar/environments/<game>.py``). Every game here reproduces the reference's transitions
cell for cell: given the same start state, the same actions and the same random draws, the
observations, rewards and terminations agree exactly (``tests/test_envs_minatar.py`` steps both
side by side, with the reference's ``RandomState`` replaced by one that replays the draws the
torch env used).

Ids: ``gumbel_ac/MinAtar-<Game>-v0`` (all 6 actions ``n l u r d f``, as ``MinAtar/<Game>-v0``)
and ``-v1`` (the game's minimal action set, as ``MinAtar/<Game>-v1``), for Breakout, Freeway,
Asterix and SpaceInvaders. Like the reference's Gymnasium registration there is no time limit
(``max_episode_steps=None``); Freeway ends by itself after 2501 steps.

Observation: ``uint8 [N, C, 10, 10]`` with values 0/1: the reference's ``bool [10, 10, C]``
state, channel first (what ``torch.nn.Conv2d`` takes, no transpose in the agent) and as uint8
rather than bool (inductor's CPU code stores uint8 vectorized but bool element by element, and
the observation is most of what a step writes; ``.float()`` or ``.bool()`` is one op either way).

Randomness. The reference draws everything from one ``numpy.random.RandomState`` shared by the
sticky-action wrapper and the game: ``rand() < sticky_action_prob`` before every ``act``, then
the game's own draws (Breakout: the ball's side at reset; Freeway: car speeds and directions at
reset and after every crossing; Asterix: side, kind and row of each spawn). Here every random
event has a fixed *slot* and every row gets a fresh 24-bit integer ``m`` per slot per step
(whether the event happens or not), so the step has no data-dependent control flow:

* ``rand() < p`` is ``m < ceil(p * 2**24)``, i.e. exactly ``m / 2**24 < p``;
* ``randint(k)`` is ``(m * k) >> 24`` (integer arithmetic, no rounding);
* ``sign(rand() - 0.5)`` is ``+1`` for ``m >= 2**23`` and ``-1`` below (see Freeway).

The integers come from a counter-based hash (Wellons' lowbias32, as the base class's reset
noise) of a per-row 32-bit key and a per-row step counter, both kept in the state: the step is
a pure function of the state, compiles with ``compile=True``, and ``state_dict`` covers it. A
row's key is redrawn from the base class's reset noise whenever the row resets.

Tests inject the draws: set ``env.draw_hook = fn`` with ``fn(kind, shape) -> int64 tensor`` of
values in ``[0, 2**24)``; ``kind`` is ``"step"`` (``shape = (N, step_draws)``, slot 0 the sticky
draw, the game's slots after it, see each game's ``STEP_SLOTS``) or ``"reset"`` (``shape =
(..., N, reset_draws)``, see ``RESET_SLOTS``). ``None`` (the default) uses the hash.

Reference behaviour reproduced on purpose (quirks):

* The sticky action is the *full-set* action last applied, and it survives resets: the
  reference's ``Environment.reset`` does not clear ``last_action``. Autoresets keep it here too;
  ``reset()`` sets it to 0 (a freshly constructed reference env).
* The sticky draw happens every step, also with ``sticky_action_prob=0``.

State layout (``env.state``): ``(key, counter, last_action, <game fields>)``; the game fields
are listed in each class. Constant parts of start states are kept as ``[1, ...]`` tensors in the
pre-drawn reset states (they broadcast), so ``reset_block`` costs memory only for the random parts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from .base import _M32, State, TorchVectorEnv, _hash32, _mul_mod32

DrawHook = Callable[[str, tuple[int, ...]], torch.Tensor]
GameStep = tuple[State, torch.Tensor, torch.Tensor]  # (fields, reward [N], terminated [N])

#: Full action set of every MinAtar game (``Env.action_map``).
ACTIONS = ("n", "l", "u", "r", "d", "f")
NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)
_BITS = 24
_ONE = 1 << _BITS


def prob_threshold(p: float) -> int:
    """``t`` with ``m < t  <=>  m / 2**24 < p`` for integers ``m`` in ``[0, 2**24)``."""
    return max(0, min(_ONE, math.ceil(p * _ONE)))  # p * 2**24 is exact in double precision


def randint_from(m: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """``randint(k)`` from a 24-bit draw: ``(m * k) >> 24``, in ``[0, k)`` for ``k >= 1``."""
    return (m * k) >> _BITS


def _hash_draws(key: torch.Tensor, counter: torch.Tensor, salt_r: torch.Tensor) -> torch.Tensor:
    """24-bit draws ``[..., R]`` from keys and counters ``[...]`` and per-slot salts ``[R]``."""
    x = _hash32(key ^ _mul_mod32(counter & _M32, 0x9E3779B9))
    return _hash32(x.unsqueeze(-1) ^ salt_r) >> (32 - _BITS)


def _one_hot_cells(y: torch.Tensor, x: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """``[..., 100]`` bool: the cell ``(y, x)`` of a 10x10 board (``cells = arange(100)``)."""
    return cells == (y * 10 + x).unsqueeze(-1)


_PALETTE = np.array(
    [
        (0, 0, 0),
        (230, 159, 0),
        (86, 180, 233),
        (0, 158, 115),
        (240, 228, 66),
        (0, 114, 178),
        (213, 94, 0),
        (204, 121, 167),
        (150, 150, 150),
        (255, 255, 255),
        (120, 60, 200),
    ],
    dtype=np.uint8,
)


class MinAtarEnv(TorchVectorEnv):
    """Shared machinery of the MinAtar games: actions, sticky actions, draws, observations.

    Args:
        num_envs, device, max_episode_steps, render_mode, validate_actions, seed, compile,
            compile_mode, reset_block, noise: see :class:`~gumbel_ac.envs.base.TorchVectorEnv`.
        sticky_action_prob: probability of repeating the last applied action (reference: 0.1).
        difficulty_ramping: the reference's ``difficulty_ramping`` (Asterix, SpaceInvaders).
        minimal_action_set: ``True`` for the ``-v1`` ids (the game's ``minimal_action_set()``).
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": ["rgb_array"],
        "render_fps": 15,
    }
    reset_noise_dim: ClassVar[int] = 2  # the row's new 32-bit key (two 24-bit uniforms)
    GAME: ClassVar[str] = ""
    CHANNELS: ClassVar[int] = 0
    MINIMAL_ACTIONS: ClassVar[tuple[int, ...]] = ()
    #: Random slots as "<reference function>.<what>": the game's draws per step (after the
    #: sticky draw, slot 0) and at reset.
    STEP_SLOTS: ClassVar[tuple[str, ...]] = ()
    RESET_SLOTS: ClassVar[tuple[str, ...]] = ()

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
        sticky_action_prob: float = 0.1,
        difficulty_ramping: bool = True,
        minimal_action_set: bool = True,
    ) -> None:
        if not 0.0 <= float(sticky_action_prob) <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob!r}.")
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
        self.sticky_action_prob = float(sticky_action_prob)
        self.difficulty_ramping = bool(difficulty_ramping)
        self.minimal_action_set = bool(minimal_action_set)
        self.action_set: tuple[int, ...] = self.MINIMAL_ACTIONS if minimal_action_set else tuple(range(6))
        self.draw_hook: DrawHook | None = None
        dev = self.device
        self._action_table = torch.tensor(self.action_set, dtype=torch.int64, device=dev)
        self._sticky_t = prob_threshold(self.sticky_action_prob)
        n_step, n_reset = 1 + len(self.STEP_SLOTS), len(self.RESET_SLOTS)
        salts = [(j * 0x85EBCA6B + 0x165667B1) & _M32 for j in range(n_step + n_reset)]
        self._step_salt = torch.tensor(salts[:n_step], dtype=torch.int64, device=dev)
        self._reset_salt = torch.tensor(salts[n_step:], dtype=torch.int64, device=dev)
        self._cells = torch.arange(100, device=dev)
        self._cols = torch.arange(10, device=dev)
        self.single_observation_space = spaces.Box(0, 1, shape=(self.CHANNELS, 10, 10), dtype=np.uint8)
        self.single_action_space = spaces.Discrete(len(self.action_set))
        self._setup()

    # ------------------------------------------------------------------ draws
    def _step_draws(self, key: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
        if self.draw_hook is not None:
            shape = (key.shape[0], 1 + len(self.STEP_SLOTS))
            return self.draw_hook("step", shape).to(device=key.device, dtype=torch.int64)
        return _hash_draws(key, counter, self._step_salt)

    def _reset_draws(self, key: torch.Tensor) -> torch.Tensor:
        if self.draw_hook is not None:
            shape = (*key.shape, len(self.RESET_SLOTS))
            return self.draw_hook("reset", shape).to(device=key.device, dtype=torch.int64)
        return _hash_draws(key, torch.zeros_like(key), self._reset_salt)

    # ------------------------------------------------------------------ hooks
    def _reset_from_uniform(self, u: torch.Tensor) -> State:
        m = (u * _ONE).to(torch.int64).clamp(0, _ONE - 1)
        key = ((m[..., 0] << 8) ^ m[..., 1]) & _M32
        lead = key.shape[:-1]
        one = torch.zeros((*lead, 1), dtype=torch.int64, device=key.device)
        draws = self._reset_draws(key) if self.RESET_SLOTS else None
        # key, counter, last_action (the latter replaced by the last action in `_transition`).
        return (key, one, one, *self._start_state(draws, lead, key.device))

    def _start_state(self, draws: torch.Tensor | None, lead: tuple[int, ...], device: torch.device) -> State:
        """The game's start fields, ``[*lead, N or 1, ...]`` (``draws``: ``[*lead, N, R]``)."""
        raise NotImplementedError

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        _, info = super().reset(seed=seed, options=options)
        assert self._state is not None
        n = self.num_envs
        # Constant start fields come as [1, ...]: give every row its own copy.
        self._state = tuple(t.expand(n, *t.shape[1:]).clone() for t in self._state)
        return self._observe(self._state), info

    def _transition(
        self,
        state: State,
        actions_N: torch.Tensor,
        noise_src: tuple[torch.Tensor, ...],
        ep_return_N: torch.Tensor,
        ep_length_N: torch.Tensor,
    ) -> tuple[Any, ...]:
        key, counter, last = state[0], state[1], state[2]
        draws = self._step_draws(key, counter)
        # Reference order (minatar/gym.py, environment.py): map the index through the action
        # set, then `if random.rand() < sticky_action_prob: a = last_action`.
        a = self._action_table[actions_N.clamp(0, len(self.action_set) - 1)]
        a = torch.where(draws[:, 0] < self._sticky_t, last, a)
        packed = torch.cat([a.unsqueeze(1), draws[:, 1:]], dim=1)
        out = super()._transition(state, packed, noise_src, ep_return_N, ep_length_N)
        # last_action survives resets (Environment.reset leaves it alone).
        new_state = (out[0][0], out[0][1], a, *out[0][3:])
        return (new_state, *out[1:])

    def _dynamics(self, state: State, actions_N: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        # `actions_N` is packed by `_transition`: [effective full-set action, game draws...].
        key, counter = state[0], state[1]
        a = actions_N[:, 0]
        fields, reward, terminated = self._game_step(state[3:], a, actions_N[:, 1:])
        return (key, counter + 1, a, *fields), reward, terminated

    def _game_step(
        self, fields: State, a: torch.Tensor, draws: torch.Tensor
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _observe(self, state: State) -> torch.Tensor:
        n = max(t.shape[0] for t in state)
        if any(t.shape[0] != n for t in state):  # a start state with [1, ...] constant fields
            state = tuple(t.expand(n, *t.shape[1:]) for t in state)
        return self._channels(state[3:]).view(-1, self.CHANNELS, 10, 10).to(torch.uint8)

    def _channels(self, fields: State) -> torch.Tensor:
        """``[N, C, 100]`` bool board of the game fields."""
        raise NotImplementedError

    def _render_rgb(self, state_i: State) -> np.ndarray:
        obs = self._observe(tuple(t.unsqueeze(0) for t in state_i))[0].numpy()
        # Reference colouring: each cell shows its highest active channel.
        layer = np.amax(obs * np.arange(1, self.CHANNELS + 1).reshape(-1, 1, 1), axis=0)
        img = _PALETTE[layer % len(_PALETTE)]
        return np.kron(img, np.ones((32, 32, 1), dtype=np.uint8))


# ============================================================================ Breakout
class BreakoutEnv(MinAtarEnv):
    """MinAtar Breakout (``minatar/environments/breakout.py``); minimal actions ``n l r``.

    Fields: ball_x, ball_y, ball_dir (0 up-left, 1 up-right, 2 down-right, 3 down-left),
    last_x, last_y (the trail), pos (paddle column), strike (bool), bricks (bool ``[N, 10, 10]``).
    Channels: paddle, ball, trail, brick. Reset draw: ``randint(2)`` picks the ball's start
    ``(x=0, dir 2)`` or ``(x=9, dir 3)``.

    Quirks kept: while ``strike`` is set (a brick was hit on the previous step), a ball moving
    into another brick passes into its cell without breaking it or bouncing; a ball in the
    corner (new_x clipped) that also meets the top reflects twice in one step.
    """

    GAME = "breakout"
    CHANNELS = 4
    MINIMAL_ACTIONS = (NOOP, LEFT, RIGHT)
    RESET_SLOTS = ("reset.ball_start",)

    def _start_state(self, draws: torch.Tensor | None, lead: tuple[int, ...], device: torch.device) -> State:
        assert draws is not None
        right = randint_from(draws[..., 0], 2) == 1
        ball_x = torch.where(right, 9, 0)
        ball_dir = torch.where(right, 3, 2)
        c = torch.zeros((*lead, 1), dtype=torch.int64, device=device)
        bricks = torch.zeros((*lead, 1, 10, 10), dtype=torch.bool, device=device)
        bricks[..., 1:4, :] = True
        return (ball_x, c + 3, ball_dir, ball_x, c + 3, c + 4, c.to(torch.bool), bricks)

    def _game_step(
        self, fields: State, a: torch.Tensor, draws: torch.Tensor
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        ball_x, ball_y, ball_dir, _, _, pos, strike, bricks = fields
        pos = torch.where(a == LEFT, (pos - 1).clamp(min=0), torch.where(a == RIGHT, (pos + 1).clamp(max=9), pos))
        last_x, last_y = ball_x, ball_y
        dx = torch.where((ball_dir == 1) | (ball_dir == 2), 1, -1)
        dy = torch.where(ball_dir >= 2, 1, -1)
        new_x, new_y = ball_x + dx, ball_y + dy
        # Side walls: clip and mirror horizontally ([1, 0, 3, 2][dir]).
        wall = (new_x < 0) | (new_x > 9)
        new_x = new_x.clamp(0, 9)
        d = torch.where(wall, ball_dir ^ 1, ball_dir)
        top = new_y < 0
        cell = new_y.clamp(min=0) * 10 + new_x
        flat = bricks.view(-1, 100)
        brick_hit = ~top & flat.gather(1, cell.unsqueeze(1)).squeeze(1)
        breaks = brick_hit & ~strike
        bottom = ~top & ~brick_hit & (new_y == 9)
        # Bottom row: refill an empty wall, then bounce off the paddle (flat under the old x,
        # corner under the new x) or lose.
        refill = bottom & ~flat.any(dim=1)
        flat = flat | (refill.unsqueeze(1) & ((self._cells >= 10) & (self._cells < 40)))
        flat = flat & ~(breaks.unsqueeze(1) & (self._cells == cell.unsqueeze(1)))
        flat_bounce = bottom & (ball_x == pos)
        corner_bounce = bottom & ~flat_bounce & (new_x == pos)
        terminated = bottom & ~flat_bounce & ~corner_bounce
        d = torch.where(top | breaks | flat_bounce, 3 - d, torch.where(corner_bounce, d ^ 2, d))
        new_y = torch.where(top, 0, torch.where(breaks | flat_bounce | corner_bounce, last_y, new_y))
        reward = breaks.to(torch.float32)
        fields = (new_x, new_y, d, last_x, last_y, pos, brick_hit, flat.view(-1, 10, 10))
        return fields, reward, terminated

    def _channels(self, fields: State) -> torch.Tensor:
        ball_x, ball_y, _, last_x, last_y, pos, _, bricks = fields
        cells = self._cells
        paddle = _one_hot_cells(torch.full_like(pos, 9), pos, cells)
        ball = _one_hot_cells(ball_y, ball_x, cells)
        trail = _one_hot_cells(last_y, last_x, cells)
        return torch.stack([paddle, ball, trail, bricks.reshape(-1, 100).expand_as(ball)], dim=1)
