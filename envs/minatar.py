"""MinAtar (Young & Tian 2019), batched in torch and exact to the reference package.

Reference: the ``minatar`` package 1.0.15 (``minatar/environment.py``, ``minatar/gym.py`` and
``minatar/environments/<game>.py``). Every game here reproduces the reference's transitions
cell for cell: given the same start state, the same actions and the same random draws, the
observations, rewards and terminations agree exactly (``tests/test_envs_minatar.py`` steps both
side by side, with the reference's ``RandomState`` replaced by one that replays the draws the
torch env used).

Ids: ``gumbel_ac/MinAtar-<Game>-v0`` (all 6 actions ``n l u r d f``, as ``MinAtar/<Game>-v0``)
and ``-v1`` (the game's minimal action set, as ``MinAtar/<Game>-v1``), for Breakout, Freeway,
Asterix and SpaceInvaders here and Seaquest in ``minatar_seaquest.py``. Like the reference's
Gymnasium registration there is no time limit (``max_episode_steps=None``); Freeway ends by
itself after 2501 steps.

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

Speed (``benchmarks/env_throughput.py --minatar``, 1 CPU thread, see docs/envs.md): eager steps
40-230k rows/s at N=4096 on the project's loaded 2-core CPU, 2-21x the reference through
``SyncVectorEnv``. What bounds it: ~5-10 us of per-op overhead times tens (Breakout) to hundreds
(Seaquest) of ops a step, and ``C * 100`` observation bytes per row written for ``final_obs``
and ``obs``. ``compile=True`` is *slower* than eager here for Breakout (~3.5x), SpaceInvaders
(~5x) and Seaquest (~10x, and minutes to compile): keep them eager on a CPU. Compiled and eager
steps give identical results.

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

from .base import _M32, State, TorchVectorEnv, _hash32, _mul_mod32, hash_uniform

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


#: Below this many elements ``torch.where`` (one op) beats the three vectorized ops replacing it.
_SMALL = 8192


def _where(m: torch.Tensor, a: torch.Tensor | int, b: torch.Tensor | int) -> torch.Tensor:
    """``torch.where(m, a, b)``, with a per-row mask over large bool grids done as bit ops on
    int32 words (4 cells a word): ``torch.where``'s CPU kernel is not vectorized for them here
    (SpaceInvaders' alien moves), while for small or integer operands it stays the faster one."""
    shapes = [t.shape for t in (m, a, b) if isinstance(t, torch.Tensor)]
    if math.prod(torch.broadcast_shapes(*shapes)) <= _SMALL:
        return torch.where(m, a, b)  # per-op overhead dominates: one op beats three
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == torch.bool:
        wa, wb = _words(a), _words(b)
        if wa is not None and wb is not None and a.shape == b.shape and m.numel() == a.shape[0]:
            # Per-row mask over bool grids: 4 cells per int32 word, the mask one word per row.
            mw = -m.reshape(-1, 1).to(torch.int32)
            return (wb ^ ((wa ^ wb) & mw)).view(torch.bool).view(a.shape)
    return torch.where(m, a, b)


def _words(t: torch.Tensor) -> torch.Tensor | None:
    """A contiguous 1-byte ``[N, ...]`` tensor as int32 words ``[N, W]`` (``None`` if it is not one)."""
    if t.element_size() != 1 or t.dim() < 2 or not t.is_contiguous() or (t.numel() // max(1, t.shape[0])) % 4:
        return None
    return t.reshape(t.shape[0], -1).view(torch.int32)


def _any_rows(m: torch.Tensor) -> torch.Tensor:
    """``m.flatten(1).any(1)`` for bool ``[N, ...]``: the bytes read as int64/int32 words and
    reduced with ``amax`` (``any`` over a short inner dim costs ~20x more here)."""
    flat = m.reshape(m.shape[0], -1)
    if flat.shape[1] % 8 == 0:
        return flat.view(torch.int64).amax(1) != 0
    if flat.shape[1] % 4 == 0:
        return flat.view(torch.int32).amax(1) != 0
    return flat.any(1)


def _count_rows(m: torch.Tensor) -> torch.Tensor:
    """``m.flatten(1).sum(1)`` (int64) for bool ``[N, ...]`` with ``numel / N`` a multiple of 4
    and below 1024: int32 words of four 0/1 bytes summed lane-wise, then the lanes added."""
    flat = m.reshape(m.shape[0], -1)
    s = flat.view(torch.int32).sum(1, dtype=torch.int32)  # each byte lane sums to <= 255
    s = (s & 0x00FF00FF) + ((s >> 8) & 0x00FF00FF)
    return ((s & 0xFFFF) + (s >> 16)).to(torch.int64)


def _blend(nxt: torch.Tensor, rst: torch.Tensor, done_N: torch.Tensor) -> torch.Tensor:
    """``torch.where(done, rst, nxt)`` for integer or bool tensors ``[N, ...]`` (``rst`` may be
    ``[1, ...]``), by bit ops: ``nxt ^ ((nxt ^ rst) & mask)``, each op one vectorized pass.

    A field stored batch-last (``stride(0) == 1``, see ``minatar_seaquest.py``) is blended in
    that order, so the kernels run along ``N`` rather than along a short inner dim.
    """
    rst = rst.to(nxt.dtype)
    if nxt.numel() <= _SMALL:
        return torch.where(done_N.view(-1, *([1] * (nxt.dim() - 1))), rst, nxt)
    mask = done_N if nxt.dtype == torch.bool else -done_N.to(nxt.dtype)
    if nxt.dim() > 1 and nxt.shape[0] > 1 and nxt.stride(0) == 1:
        perm = (*range(1, nxt.dim()), 0)
        last, rst_last = nxt.permute(perm), rst.permute(perm)
        out = last ^ ((last ^ rst_last) & mask)
        return out.permute(nxt.dim() - 1, *range(nxt.dim() - 1))
    wn, wr = _words(nxt), _words(rst.contiguous())
    if wn is not None and wr is not None:
        # 1-byte grids and observations: 4 cells per int32 word (rst [1 or N, W] broadcasts).
        mw = -done_N.to(torch.int32).unsqueeze(1)
        return (wn ^ ((wn ^ wr) & mw)).view(nxt.dtype).view(nxt.shape)
    return torch.where(done_N.view(-1, *([1] * (nxt.dim() - 1))), rst, nxt)


def _hash_draws(key: torch.Tensor, counter: torch.Tensor, salt_r: torch.Tensor) -> torch.Tensor:
    """24-bit draws ``[..., R]`` from keys and counters ``[...]`` and per-slot salts ``[R]``."""
    x = _hash32(key ^ _mul_mod32(counter & _M32, 0x9E3779B9))
    return _hash32(x.unsqueeze(-1) ^ salt_r) >> (32 - _BITS)


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
        """The base class's step graph (same outputs and semantics), specialised for speed.

        Two changes: rows are reset with bit ops instead of ``torch.where`` (whose CPU kernel
        costs ~8 ns per element here, 20-30x an ``^``/``&``), and the returned observation is
        blended from ``final_obs`` and the observation of the reset state instead of being
        rendered again (for games whose start state is constant that observation is one row).
        """
        if self.noise == "hash":
            key_2, hash_counter = noise_src
            u = hash_uniform(key_2, hash_counter, self.num_envs, self.reset_noise_dim)
            reset_state = self._reset_from_uniform(u)
            next_counter: torch.Tensor | None = hash_counter + 1
        else:
            reset_state = noise_src
            next_counter = None
        key, counter, last = state[0], state[1], state[2]
        draws = self._step_draws(key, counter)
        # Reference order (minatar/gym.py, environment.py): map the index through the action
        # set, then `if random.rand() < sticky_action_prob: a = last_action`.
        a = self._action_table[actions_N.clamp(0, len(self.action_set) - 1)]
        a = _where(draws[:, 0] < self._sticky_t, last, a)
        fields, reward_N, terminated_N = self._game_step(state[3:], a, draws[:, 1:])
        reward_N = reward_N.to(torch.float32)
        final_obs = self._observe_fields(fields)
        length_N = ep_length_N + 1
        return_N = ep_return_N + reward_N
        if self.max_episode_steps is None:
            truncated_N = torch.zeros_like(terminated_N)
        else:
            # gymnasium/wrappers/common.py TimeLimit: truncated even if also terminated.
            truncated_N = length_N >= self.max_episode_steps
        done_N = terminated_N | truncated_N
        # last_action survives resets (Environment.reset leaves it alone).
        head = (_blend(key, reset_state[0], done_N), _blend(counter + 1, reset_state[1], done_N), a)
        new_state = head + tuple(_blend(f, r, done_N) for f, r in zip(fields, reset_state[3:], strict=True))
        if all(t.shape[0] == 1 for t in reset_state[3:]):
            obs = _blend(final_obs, self._observe_fields(reset_state[3:]), done_N)  # one start row
        else:
            obs = self._observe_fields(new_state[3:])  # per-row starts: render the reset rows too
        running_return_N = torch.where(done_N, 0.0, return_N)
        running_length_N = length_N * (~done_N)
        if self._masks_as_uint8:
            # As the base class: the compiled step returns uint8 masks, `step` views them as bool.
            terminated_N, truncated_N, done_N = (m.to(torch.uint8) for m in (terminated_N, truncated_N, done_N))
        return (
            new_state,
            obs,
            reward_N,
            terminated_N,
            truncated_N,
            done_N,
            final_obs,
            return_N,
            length_N,
            running_return_N,
            running_length_N,
            next_counter,
        )

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
        obs = self._observe_fields(state[3:])
        return obs if obs.shape[0] == n else obs.expand(n, *obs.shape[1:]).clone()

    def _observe_fields(self, fields: State) -> torch.Tensor:
        """``uint8 [N, C, 10, 10]`` of the game fields; ``[1, C, 10, 10]`` when all are ``[1, ...]``."""
        n = max(t.shape[0] for t in fields)
        if any(t.shape[0] != n for t in fields):  # a start state with [1, ...] constant fields
            fields = tuple(t.expand(n, *t.shape[1:]) for t in fields)
        return self._channels(fields).view(-1, self.CHANNELS, 10, 10).to(torch.uint8)

    def _channels(self, fields: State) -> torch.Tensor:
        """``[N, C * 100]`` uint8 board of the game fields (``[N, C, 100]`` bool also accepted)."""
        raise NotImplementedError

    def _points(self, idx: torch.Tensor, on: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, C * 100]`` uint8 board with ones at flat indices ``idx`` ``[N, K]`` (where ``on``).

        A scatter of ``N * K`` values instead of ``K`` one-hot comparisons over all cells; with a
        mask, off points write 0 through ``amax`` (so they never clear a lit cell they share).
        """
        obs = torch.zeros(idx.shape[0], self.CHANNELS * 100, dtype=torch.uint8, device=idx.device)
        if on is None:
            return obs.scatter_(1, idx, 1)
        return obs.scatter_reduce_(1, _where(on, idx, 0), on.to(torch.uint8), "amax")

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
    last_x, last_y (the trail), pos (paddle column), strike (bool), bricks (int64 bitmask: bit
    ``(row - 1) * 10 + column``; bricks only ever exist in rows 1-3).
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
    WALL = (1 << 30) - 1  # rows 1-3 full

    def _start_state(self, draws: torch.Tensor | None, lead: tuple[int, ...], device: torch.device) -> State:
        assert draws is not None
        right = randint_from(draws[..., 0], 2) == 1
        ball_x = _where(right, 9, 0)
        ball_dir = _where(right, 3, 2)
        c = torch.zeros((*lead, 1), dtype=torch.int64, device=device)
        return (ball_x, c + 3, ball_dir, ball_x, c + 3, c + 4, c.to(torch.bool), c + self.WALL)

    def _game_step(
        self, fields: State, a: torch.Tensor, draws: torch.Tensor
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        ball_x, ball_y, ball_dir, _, _, pos, strike, bricks = fields
        pos = _where(a == LEFT, (pos - 1).clamp(min=0), _where(a == RIGHT, (pos + 1).clamp(max=9), pos))
        last_x, last_y = ball_x, ball_y
        dx = _where((ball_dir == 1) | (ball_dir == 2), 1, -1)
        dy = _where(ball_dir >= 2, 1, -1)
        new_x, new_y = ball_x + dx, ball_y + dy
        # Side walls: clip and mirror horizontally ([1, 0, 3, 2][dir]).
        wall = (new_x < 0) | (new_x > 9)
        new_x = new_x.clamp(0, 9)
        d = _where(wall, ball_dir ^ 1, ball_dir)
        top = new_y < 0
        bit = ((new_y - 1) * 10 + new_x).clamp(0, 29)
        brick_hit = (new_y >= 1) & (new_y <= 3) & (((bricks >> bit) & 1) == 1)
        breaks = brick_hit & ~strike
        bottom = ~top & ~brick_hit & (new_y == 9)
        # Bottom row: refill an empty wall, then bounce off the paddle (flat under the old x,
        # corner under the new x) or lose.
        bricks = _where(bottom & (bricks == 0), self.WALL, bricks)
        bricks = _where(breaks, bricks & ~(1 << bit), bricks)
        flat_bounce = bottom & (ball_x == pos)
        corner_bounce = bottom & ~flat_bounce & (new_x == pos)
        terminated = bottom & ~flat_bounce & ~corner_bounce
        d = _where(top | breaks | flat_bounce, 3 - d, _where(corner_bounce, d ^ 2, d))
        new_y = _where(top, 0, _where(breaks | flat_bounce | corner_bounce, last_y, new_y))
        reward = breaks.to(torch.float32)
        fields = (new_x, new_y, d, last_x, last_y, pos, brick_hit, bricks)
        return fields, reward, terminated

    def _channels(self, fields: State) -> torch.Tensor:
        ball_x, ball_y, _, last_x, last_y, pos, _, bricks = fields
        points = torch.stack([90 + pos, 100 + ball_y * 10 + ball_x, 200 + last_y * 10 + last_x], dim=1)
        wall = self._cells[:30]
        idx = torch.cat([points, (310 + wall).expand(pos.shape[0], 30)], dim=1)
        on = torch.cat([torch.ones_like(points, dtype=torch.bool), ((bricks.unsqueeze(1) >> wall) & 1) == 1], dim=1)
        return self._points(idx, on)


# ============================================================================ Freeway
class FreewayEnv(MinAtarEnv):
    """MinAtar Freeway (``minatar/environments/freeway.py``); minimal actions ``n u d``.

    Fields: pos (chicken row; column 4), move_timer, terminate_timer, car_x, car_timer,
    car_speed (``[N, 8]`` int8, car ``i`` in row ``i + 1``; speed signed: direction x period).
    Channels: chicken, car, speed1..speed5 (the trail behind each car, by period).
    Draws: 8 ``randint(1, 6)`` periods then 8 ``sign(rand() - 0.5)`` directions, at reset and
    on each crossing (which keeps the cars' positions). Episodes end after 2501 steps (the
    reference's timer of 2500 ends the game once it is below 0).

    Not reproduced: ``sign(rand() - 0.5) == 0`` (the draw exactly 0.5, probability 2**-53 with
    the reference's ``RandomState``), which gives a car of speed 0 that moves left every frame
    and makes the reference's ``state()`` use the previous car's trail channel (or fail for car
    0). Here the 24-bit draw ``2**23`` (exactly 0.5) counts as +1.
    """

    GAME = "freeway"
    CHANNELS = 7
    MINIMAL_ACTIONS = (NOOP, UP, DOWN)
    STEP_SLOTS = tuple(f"_randomize_cars.speed{i}" for i in range(8)) + tuple(
        f"_randomize_cars.dir{i}" for i in range(8)
    )
    RESET_SLOTS = STEP_SLOTS
    TIME_LIMIT = 2500
    PLAYER_SPEED = 3

    @staticmethod
    def _speeds(draws: torch.Tensor) -> torch.Tensor:
        period = 1 + randint_from(draws[..., 0:8], 5)
        return _where(draws[..., 8:16] >= (_ONE >> 1), period, -period).to(torch.int8)

    def _start_state(self, draws: torch.Tensor | None, lead: tuple[int, ...], device: torch.device) -> State:
        assert draws is not None
        speed = self._speeds(draws)
        c = torch.zeros((*lead, 1), dtype=torch.int64, device=device)
        car_x = torch.zeros((*lead, 1, 8), dtype=torch.int8, device=device)
        return (c + 9, c + self.PLAYER_SPEED, c + self.TIME_LIMIT, car_x, speed.abs(), speed)

    def _game_step(self, fields: State, a: torch.Tensor, draws: torch.Tensor) -> GameStep:
        pos, move_timer, terminate_timer, car_x, car_timer, car_speed = fields
        ready = move_timer == 0
        up, down = (a == UP) & ready, (a == DOWN) & ready
        move_timer = _where(up | down, self.PLAYER_SPEED, move_timer)
        pos = _where(up, (pos - 1).clamp(min=0), _where(down, (pos + 1).clamp(max=9), pos))
        # Crossing: +1, new car speeds (positions kept), back to the bottom.
        win = pos == 0
        new_speed = self._speeds(draws)
        car_speed = _where(win.unsqueeze(1), new_speed, car_speed)
        car_timer = _where(win.unsqueeze(1), new_speed.abs(), car_timer)
        pos = _where(win, 9, pos)
        # Cars, in list order; only the car in the chicken's row (index pos - 1) can hit it, and a
        # hit sends the chicken to row 9 (no car), so the sequential loop reduces to that car:
        # hit if it is at x = 4 before its move, or after a move.
        in_row = self._cols[1:9] == pos.unsqueeze(1)  # car i sits in row i + 1
        hit = _any_rows(in_row & (car_x == 4))
        moves = car_timer == 0
        car_timer = _where(moves, car_speed.abs(), car_timer - 1)
        x = car_x + _where(car_speed > 0, 1, -1).to(torch.int8)
        x = _where(x < 0, 9, _where(x > 9, 0, x)).to(torch.int8)
        car_x = _where(moves, x, car_x)
        hit = hit | _any_rows(in_row & moves & (car_x == 4))
        pos = _where(hit, 9, pos)
        move_timer = move_timer - (move_timer > 0).to(move_timer.dtype)
        terminate_timer = terminate_timer - 1
        fields = (pos, move_timer, terminate_timer, car_x, car_timer, car_speed)
        return fields, win.to(torch.float32), terminate_timer < 0

    def _channels(self, fields: State) -> torch.Tensor:
        pos, _, _, car_x, _, car_speed = fields
        x = car_x.to(torch.int64)
        row = self._cols[1:9] * 10  # car i in row i + 1
        back = x + _where(car_speed > 0, -1, 1)
        back = _where(back < 0, 9, _where(back > 9, 0, back))
        # Trail channel 2 + period - 1 (speeds are never 0 here, see the class docstring).
        trail_ch = car_speed.abs().to(torch.int64) + 1
        idx = torch.cat([(pos * 10 + 4).unsqueeze(1), 100 + row + x, trail_ch * 100 + row + back], dim=1)
        return self._points(idx)


# ============================================================================ Asterix
class AsterixEnv(MinAtarEnv):
    """MinAtar Asterix (``minatar/environments/asterix.py``); minimal actions ``n l u r d``.

    Fields: player_x, player_y, alive, ent_x, ent_right, ent_gold (``[N, 8]``, entity slot ``i``
    in row ``i + 1``), spawn_speed, spawn_timer, move_speed, move_timer, ramp_timer,
    ramp_index. Channels: player, enemy, trail, gold.
    Draws per step (used when the spawn timer is 0): ``rand() < 1/2`` (from the left, moving
    right), ``rand() < 1/3`` (gold), ``randint(#free slots)`` (the spawn's slot among the free
    ones, in slot order; not drawn by the reference when no slot is free). Difficulty ramping
    every 101 steps (the reference's ``ramp_timer`` counts 100 down to -1).

    Quirk kept: an enemy that catches the player ends the episode but stays on the board (and
    still moves in that step); gold is removed with +1, also several in one step.
    """

    GAME = "asterix"
    CHANNELS = 4
    MINIMAL_ACTIONS = (NOOP, LEFT, UP, RIGHT, DOWN)
    STEP_SLOTS = ("_spawn_entity.lr", "_spawn_entity.gold", "_spawn_entity.slot")
    RAMP_INTERVAL = 100
    INIT_SPAWN_SPEED = 10
    INIT_MOVE_INTERVAL = 5

    def _start_state(self, draws: torch.Tensor | None, lead: tuple[int, ...], device: torch.device) -> State:
        c = torch.zeros((*lead, 1), dtype=torch.int64, device=device)
        none = torch.zeros((*lead, 1, 8), dtype=torch.bool, device=device)
        x = torch.zeros((*lead, 1, 8), dtype=torch.int64, device=device)
        spawn, move = c + self.INIT_SPAWN_SPEED, c + self.INIT_MOVE_INTERVAL
        return (c + 5, c + 5, none, x, none, none, spawn, spawn, move, move, c + self.RAMP_INTERVAL, c)

    def _game_step(self, fields: State, a: torch.Tensor, draws: torch.Tensor) -> GameStep:
        px, py, alive, ex, right, gold, spawn_speed, spawn_timer, move_speed, move_timer, ramp_timer, ramp = fields
        slot_row = self._cols[1:9]
        # Spawn: side and kind drawn always, the slot among the free ones if there is one.
        spawn = spawn_timer == 0
        lr = draws[:, 0] < (_ONE >> 1)
        is_gold = draws[:, 1] < prob_threshold(1 / 3)
        free = ~alive
        k = _count_rows(free)
        pick = randint_from(draws[:, 2], k)
        chosen = free & ((free.cumsum(dim=1) - 1) == pick.unsqueeze(1)) & spawn.unsqueeze(1)
        alive = alive | chosen
        ex = _where(chosen, _where(lr, 0, 9).unsqueeze(1), ex)
        right = _where(chosen, lr.unsqueeze(1), right)
        gold = _where(chosen, is_gold.unsqueeze(1), gold)
        spawn_timer = _where(spawn, spawn_speed, spawn_timer)
        # Player.
        px = _where(a == LEFT, (px - 1).clamp(min=0), _where(a == RIGHT, (px + 1).clamp(max=9), px))
        py = _where(a == UP, (py - 1).clamp(min=1), _where(a == DOWN, (py + 1).clamp(max=8), py))
        in_row = (slot_row == py.unsqueeze(1)) & alive
        hit = in_row & (ex == px.unsqueeze(1))
        reward = _count_rows(hit & gold)
        terminated = _any_rows(hit & ~gold)
        alive = alive & ~(hit & gold)
        # Entities move every move_speed steps; leaving the board removes them.
        moves = move_timer == 0
        move_timer = _where(moves, move_speed, move_timer)
        stepped = moves.unsqueeze(1) & alive
        ex = _where(stepped, ex + _where(right, 1, -1), ex)
        alive = alive & ~(stepped & ((ex < 0) | (ex > 9)))
        hit = stepped & alive & (slot_row == py.unsqueeze(1)) & (ex == px.unsqueeze(1))
        reward = reward + _count_rows(hit & gold)
        terminated = terminated | _any_rows(hit & ~gold)
        alive = alive & ~(hit & gold)
        spawn_timer = spawn_timer - 1
        move_timer = move_timer - 1
        if self.difficulty_ramping:
            active = (spawn_speed > 1) | (move_speed > 1)
            count = active & (ramp_timer >= 0)
            level = active & (ramp_timer < 0)
            move_speed = move_speed - (level & (move_speed > 1) & (ramp % 2 == 1)).to(torch.int64)
            spawn_speed = spawn_speed - (level & (spawn_speed > 1)).to(torch.int64)
            ramp = ramp + level.to(torch.int64)
            ramp_timer = _where(level, self.RAMP_INTERVAL, ramp_timer - count.to(torch.int64))
        fields = (px, py, alive, ex, right, gold, spawn_speed, spawn_timer, move_speed, move_timer, ramp_timer, ramp)
        return fields, reward.to(torch.float32), terminated

    def _channels(self, fields: State) -> torch.Tensor:
        px, py, alive, ex, right, gold = fields[:6]
        row = self._cols[1:9] * 10  # slot i in row i + 1
        x = ex.clamp(0, 9)  # entities that left the board are not alive
        back = ex + _where(right, -1, 1)
        idx = torch.cat(
            [(py * 10 + px).unsqueeze(1), _where(gold, 300, 100) + row + x, 200 + row + back.clamp(0, 9)], dim=1
        )
        on = torch.cat([torch.ones_like(alive[:, :1]), alive, alive & (back >= 0) & (back <= 9)], dim=1)
        return self._points(idx, on)


# ============================================================================ SpaceInvaders
class SpaceInvadersEnv(MinAtarEnv):
    """MinAtar SpaceInvaders (``minatar/environments/space_invaders.py``); actions ``n l r f``.

    Fields: pos (cannon column), f_bullets, e_bullets, aliens (bool ``[N, 10, 10]``), alien_dir
    (-1/+1), enemy_move_interval, alien_move_timer, alien_shot_timer, ramp_index, shot_timer.
    Channels: cannon, alien, alien_left, alien_right, friendly_bullet, enemy_bullet. No draws
    besides the sticky one. The alien that shoots is the lowest one in the nearest non-empty
    column (ties: the left column, as the reference's stable sort by distance).

    Quirk kept: aliens that step down from row 9 (ending the game) wrap to row 0 in the final
    observation (the reference uses ``np.roll``).
    """

    GAME = "space_invaders"
    CHANNELS = 6
    MINIMAL_ACTIONS = (NOOP, LEFT, RIGHT, FIRE)
    SHOT_COOL_DOWN = 5
    ENEMY_MOVE_INTERVAL = 12
    ENEMY_SHOT_INTERVAL = 10

    def _wave(self, lead: tuple[int, ...], device: torch.device) -> torch.Tensor:
        aliens = torch.zeros((*lead, 1, 10, 10), dtype=torch.bool, device=device)
        aliens[..., 0:4, 2:8] = True
        return aliens

    def _start_state(self, draws: torch.Tensor | None, lead: tuple[int, ...], device: torch.device) -> State:
        c = torch.zeros((*lead, 1), dtype=torch.int64, device=device)
        empty = torch.zeros((*lead, 1, 10, 10), dtype=torch.bool, device=device)
        move = c + self.ENEMY_MOVE_INTERVAL
        return (c + 5, empty, empty, self._wave(lead, device), c - 1, move, move, c + self.ENEMY_SHOT_INTERVAL, c, c)

    def _game_step(self, fields: State, a: torch.Tensor, draws: torch.Tensor) -> GameStep:
        pos, fb, eb, aliens, alien_dir, interval, move_timer, shot_timer_e, ramp, shot_timer = fields
        n = pos.shape[0]
        cols = self._cols
        fire = (a == FIRE) & (shot_timer == 0)
        cannon = (cols == pos.unsqueeze(1)).unsqueeze(1) & (cols == 9).view(1, 10, 1)  # [N, 10, 10] row 9
        fb = fb | (cannon & fire.view(n, 1, 1))
        shot_timer = _where(fire, self.SHOT_COOL_DOWN, shot_timer)
        pos = _where(a == LEFT, (pos - 1).clamp(min=0), _where(a == RIGHT, (pos + 1).clamp(max=9), pos))
        cannon = (cols == pos.unsqueeze(1)).unsqueeze(1) & (cols == 9).view(1, 10, 1)
        # Bullets: friendly up (leaving at the top), enemy down (leaving at the bottom).
        fb = torch.cat([fb[:, 1:], torch.zeros_like(fb[:, :1])], dim=1)
        eb = torch.cat([torch.zeros_like(eb[:, :1]), eb[:, :-1]], dim=1)
        terminated = _any_rows(eb & cannon) | _any_rows(aliens & cannon)
        # Aliens move every move_timer steps: down and turn at an edge, else sideways.
        moves = move_timer == 0
        count = _count_rows(aliens)
        move_timer = _where(moves, torch.minimum(count, interval), move_timer)
        col_any = aliens.any(dim=1)  # [N, 10]
        edge = (col_any[:, 0] & (alien_dir < 0)) | (col_any[:, 9] & (alien_dir > 0))
        down, side = moves & edge, moves & ~edge
        terminated = terminated | (down & aliens[:, 9].any(dim=1))
        shifted = _where((alien_dir > 0).view(n, 1, 1), torch.roll(aliens, 1, dims=2), torch.roll(aliens, -1, dims=2))
        aliens = _where(down.view(n, 1, 1), torch.roll(aliens, 1, dims=1), _where(side.view(n, 1, 1), shifted, aliens))
        alien_dir = _where(down, -alien_dir, alien_dir)
        terminated = terminated | (moves & _any_rows(aliens & cannon))
        # The lowest alien of the nearest non-empty column shoots every 10 steps.
        shoots = shot_timer_e == 0
        shot_timer_e = _where(shoots, self.ENEMY_SHOT_INTERVAL, shot_timer_e)
        col_any = aliens.any(dim=1)
        order = (cols - pos.unsqueeze(1)).abs() * 16 + cols
        col = _where(col_any, order, 1 << 10).argmin(dim=1)
        column = aliens.gather(2, col.view(n, 1, 1).expand(n, 10, 1)).squeeze(2)  # [N, 10]
        row = _where(column, cols, -1).amax(dim=1)
        shot = (cols == row.unsqueeze(1)).unsqueeze(2) & (cols == col.unsqueeze(1)).unsqueeze(1)
        eb = eb | (shot & shoots.view(n, 1, 1))
        kill = aliens & fb
        reward = _count_rows(kill).to(torch.float32)
        aliens, fb = aliens & ~kill, fb & ~kill
        shot_timer = shot_timer - (shot_timer > 0).to(shot_timer.dtype)
        move_timer = move_timer - 1
        shot_timer_e = shot_timer_e - 1
        cleared = ~_any_rows(aliens)
        if self.difficulty_ramping:
            harder = cleared & (interval > 6)
            interval = interval - harder.to(torch.int64)
            ramp = ramp + harder.to(torch.int64)
        aliens = aliens | (cleared.view(n, 1, 1) & self._wave((), aliens.device))
        fields = (pos, fb, eb, aliens, alien_dir, interval, move_timer, shot_timer_e, ramp, shot_timer)
        return fields, reward, terminated

    def _channels(self, fields: State) -> torch.Tensor:
        pos, fb, eb, aliens, alien_dir = fields[:5]
        n = pos.shape[0]
        cannon = (self._cells == (90 + pos).unsqueeze(1)).view(n, 1, 100)
        al = aliens.view(n, 1, 100)
        left = al & (alien_dir < 0).view(n, 1, 1)
        right = al & (alien_dir >= 0).view(n, 1, 1)
        return torch.cat([cannon, al, left, right, fb.view(n, 1, 100), eb.view(n, 1, 100)], dim=1)
