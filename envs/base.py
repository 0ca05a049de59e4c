"""The base class of every batched torch environment: autoreset, time limits, statistics.

Why a base class of our own: Gymnasium's vector machinery (``SyncVectorEnv``, the
``RecordEpisodeStatistics``/``TimeLimit`` wrappers) works on numpy arrays one sub-env at a
time and fails on torch tensors. Here a whole population of ``N`` episodes lives in tensors
``[N, ...]`` on one device and advances in one call; the parts every env needs --
SAME_STEP autoreset, time-limit truncation, episode returns/lengths, seeding and action
validation -- are written once, below, and each env only supplies three pure functions:

* ``_reset_from_uniform(u)``: start states of every row from ``reset_noise_dim`` uniforms
  per row (``u``: ``[..., N, R]`` in [0, 1); see "Reset noise" below);
* ``_dynamics(state, actions) -> (next_state, reward, terminated)``: one step of every row;
* ``_observe(state) -> obs``: the float32 observation ``[N, ...]`` of a state.

Because those hooks are pure tensor functions (no Python branching on tensor values, no
host reads), :meth:`TorchVectorEnv._transition` -- dynamics + time limit + autoreset +
statistics -- is one straight-line graph. It runs eagerly by default and, with
``compile=True``, through ``torch.compile`` as one fused kernel (CPU: one C++/OpenMP loop;
CUDA: one Triton kernel), which is what makes the torch env beat Gymnasium's numpy vector
env on a CPU (see ``benchmarks/env_throughput.py``).

Semantics (Gymnasium 1.x ``AutoresetMode.SAME_STEP``, the same as SB3's ``VecEnv``):

* ``step`` advances every row; rows that end (terminated or truncated) are reset *in the same
  call*: ``obs`` holds the reset observation, ``info["final_obs"]`` the true next observation
  of every row (the terminal one where done, equal to ``obs`` elsewhere) and
  ``info["_final_obs"]`` the done mask.
* Time limit as Gymnasium's ``TimeLimit`` wrapper (gymnasium/wrappers/common.py):
  ``truncated = elapsed_steps >= max_episode_steps``, set even when the env terminates in the
  same step (then both flags are true; bootstrapping code must test ``terminated`` first).
* ``info["episode"] = {"r": float32 [N], "l": int64 [N]}`` and ``info["_episode"]`` (the
  done mask) report the return and length of episodes finishing in this step, like
  Gymnasium's ``RecordEpisodeStatistics``; values are meaningful only where the mask is true.

Reset noise: the start states of the rows that reset in a step must be random, yet which
rows reset is only known on the device. Instead of a host sync (count the done rows, draw that
many), every step offers a fresh candidate start state to *every* row and ``torch.where``
keeps it where the row is done. The uniforms come from one of two sources (``noise=``):

* ``"generator"`` (default when eager): ``torch.rand`` on the env's ``torch.Generator``,
  drawn in blocks of ``reset_block`` steps, so the per-call overhead is paid once per block.
* ``"hash"`` (default with ``compile=True``): a counter-based generator inside the step
  graph -- a 32-bit integer hash (Wellons' "lowbias32") of (key, step counter, row,
  component), with the key drawn from the ``torch.Generator`` at ``reset``. Compiled, it
  fuses into the step kernel and costs almost nothing, where the Mersenne Twister behind
  ``torch.rand`` on CPU costs ~2.6 ns per number (measured here: ~45 us a step at
  N=4096, a third of the whole step). It gives the same numbers eager or compiled and on any
  device.

Either way the draws are consumed in a fixed order independent of the actions, so the same
seed and the same actions give the same trajectories (for a given ``noise`` source).

Shape legend: ``N`` = num_envs, ``K`` = reset_block.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

State = tuple[torch.Tensor, ...]
"""An env's state: a tuple of tensors, each ``[N, ...]`` (e.g. CartPole: x, x_dot, theta, theta_dot)."""

ActionsLike = torch.Tensor | np.ndarray | Sequence[int]


def expand_mask(mask_N: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a ``[N]`` mask as ``[N, 1, ...]`` so it broadcasts against ``like`` (``[N, ...]``)."""
    return mask_N.view(mask_N.shape + (1,) * (like.dim() - 1))


_M32 = 0xFFFFFFFF

#: Largest ``reset_block``: steps of start states pre-drawn for every env (64 by default; beyond
#: a few hundred the per-call overhead it amortizes is already gone).
MAX_RESET_BLOCK = 4096


def _mul_mod32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for int64 ``x`` in ``[0, 2**32)`` without int64 overflow.

    Splitting ``c`` into 16-bit halves keeps every product below 2**49: signed overflow is
    undefined behaviour in C++ (inductor's CPU code) and we want the same bits everywhere.
    """
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _M32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """Chris Wellons' "lowbias32" integer hash (a bijection of 32-bit values), on int64 tensors.

    Source: https://nullprogram.com/blog/2018/07/31/ (constants 0x7feb352d, 0x846ca68b).
    """
    x = x ^ (x >> 16)
    x = _mul_mod32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul_mod32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hash_uniform(key_2: torch.Tensor, counter: torch.Tensor, n: int, r: int) -> torch.Tensor:
    """``[n, r]`` float32 uniforms in [0, 1) from a counter-based hash generator.

    Args:
        key_2: int64 ``[2]`` key words in ``[0, 2**32)`` (drawn from the env's generator).
        counter: int64 0-d tensor, the step index; each step uses ``n * r`` fresh counters.
        n, r: output shape (rows, uniforms per row).
    """
    idx = counter * (n * r) + torch.arange(n * r, device=key_2.device, dtype=torch.int64)
    h = _hash32((idx & _M32) ^ key_2[0])
    h = _hash32(h ^ (((idx >> 32) + key_2[1]) & _M32))
    return ((h >> 8).to(torch.float32) * (1.0 / (1 << 24))).view(n, r)


class TorchVectorEnv(gym.vector.VectorEnv):
    """A population of ``num_envs`` episodes in tensors on one device (Gymnasium ``VectorEnv``).

    Subclasses set ``single_observation_space``/``single_action_space`` (a ``Discrete``) in
    ``__init__`` *before* calling :meth:`_setup`, declare a fresh ``metadata`` dict, and
    implement ``_reset_from_uniform``, ``_dynamics`` and ``_observe`` as pure functions of
    their tensor arguments (see the module docstring).

    Args:
        num_envs: number of sub-envs ``N`` stepped together.
        device: where state, observations, rewards and infos live.
        max_episode_steps: time limit (truncation) in steps; ``None`` for no limit. Each env
            declares its Gymnasium default in its own signature; ``gymnasium.make_vec`` passes
            the registered value.
        render_mode: ``None`` or one of ``metadata["render_modes"]``.
        validate_actions: check the *values* of actions (``0 <= a < n``). That check reads a
            result back to the host (a sync per step, costly on a GPU), so the trainer turns
            it off for speed. Shape, dtype and device are checked always (metadata only, free).
            Out-of-range actions with the check off give undefined (but memory-safe) results.
        seed: seed of the env's ``torch.Generator`` (on ``device``); ``None`` draws one from
            the OS. ``reset(seed=...)`` reseeds.
        compile: run the fused step through ``torch.compile`` (falls back to eager with a
            warning when compilation is unavailable or fails).
        compile_mode: the ``mode`` passed to ``torch.compile`` (e.g. ``"reduce-overhead"`` for
            CUDA graphs on a GPU); ``None`` for the default.
        reset_block: steps of start-state noise drawn per generator call (``noise="generator"``).
        noise: source of start-state noise: ``"generator"``, ``"hash"`` or ``"auto"`` (hash
            when compiled, generator otherwise); see the module docstring.
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": [],
        "render_fps": 30,
    }
    single_action_space: spaces.Discrete
    #: Floating dtype of the state (``None``: as sampled). Classic control: float64 by default.
    dtype: torch.dtype | None = None
    #: Uniforms per row needed by ``_reset_from_uniform`` (0: deterministic start, e.g. DeepSea).
    reset_noise_dim: ClassVar[int] = 0

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
    ) -> None:
        if noise not in ("auto", "generator", "hash"):
            raise ValueError(f"noise must be 'auto', 'generator' or 'hash', got {noise!r}.")
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}.")
        # reset_block start states are kept per env ([K, N, ...]): a huge block is memory, not speed.
        if not isinstance(reset_block, int) or not 1 <= reset_block <= MAX_RESET_BLOCK:
            raise ValueError(f"reset_block must be an int in [1, {MAX_RESET_BLOCK}], got {reset_block!r}.")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be a positive int or None, got {max_episode_steps!r}.")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not supported by {type(self).__name__}; "
                f"choose one of {self.metadata['render_modes']} or None."
            )
        self.num_envs = num_envs
        # Normalised with an index ("cuda" -> "cuda:0"): tensors always report one, and
        # torch.device("cuda") != torch.device("cuda:0") (found on the first GPU run).
        self.device = torch.empty(0, device=device).device
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.render_env_index = 0
        self.validate_actions = validate_actions
        self.reset_block = int(reset_block) if self.reset_noise_dim > 0 else 1
        self.noise = ("hash" if compile else "generator") if noise == "auto" else noise
        if self.reset_noise_dim == 0:
            self.noise = "generator"  # nothing random to draw: a block of one, reused
        self._compile_requested = compile
        self._compile_mode = compile_mode
        self._generator = torch.Generator(device=self.device)
        self._seed(seed)
        # Set by `_setup` / `reset`.
        self._state: State | None = None
        self._reset_states_K: State = ()
        self._reset_index = 0
        self._hash_key_2 = torch.zeros(2, dtype=torch.int64, device=self.device)
        self._hash_counter = torch.zeros((), dtype=torch.int64, device=self.device)
        self._ep_return_N = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self._ep_length_N = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._transition_fn: Callable[..., Any] = self._transition
        self._masks_as_uint8 = False  # True while the compiled step is in use (see _transition)
        self._compiled_checked = True

    # ------------------------------------------------------------------ subclass hooks
    def _reset_from_uniform(self, u: torch.Tensor) -> State:
        """Start states from uniforms ``u`` (``[..., N, reset_noise_dim]``, float32 in [0, 1)).

        Returns a tuple of tensors ``[..., N, ...]`` (the leading dims of ``u`` kept). Pure.
        """
        raise NotImplementedError

    def _dynamics(self, state: State, actions_N: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        """One step of every row: ``(next_state, reward [N], terminated [N] bool)``. Pure."""
        raise NotImplementedError

    def _observe(self, state: State) -> torch.Tensor:
        """The float32 observation ``[N, ...]`` of ``state``. Pure."""
        raise NotImplementedError

    def _on_seed(self, generator: torch.Generator) -> None:
        """Draw per-env parameters fixed for the env's life (e.g. DeepSea's action mapping).

        Called at construction and whenever ``reset(seed=...)`` reseeds. Default: nothing.
        """

    def _parse_reset_options(self, options: dict[str, Any]) -> None:
        """Apply ``reset(options=...)``; the default accepts none."""
        if options:
            raise ValueError(f"{type(self).__name__}.reset accepts no options, got {options!r}.")

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        """Build the batched spaces and the step function; call at the end of ``__init__``."""
        space = self.single_action_space
        if isinstance(space, spaces.Discrete):
            self._num_actions: int | torch.Tensor = int(space.n)
        elif isinstance(space, spaces.MultiDiscrete) and np.asarray(space.nvec).ndim == 1:
            # One action per head: actions are [N, H], each head bounded by its own nvec entry.
            self._num_actions = torch.as_tensor(np.asarray(space.nvec), dtype=torch.int64, device=self.device)
        else:
            raise TypeError("TorchVectorEnv supports Discrete and 1-D MultiDiscrete action spaces only.")
        #: The shape ``step`` takes: ``[N]``, or ``[N, H]`` for ``H`` heads.
        self._action_shape = (self.num_envs, *(space.shape or ()))
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(space, self.num_envs)
        self._on_seed(self._generator)
        if self._compile_requested:
            self._enable_compile()

    def _enable_compile(self) -> None:
        compile_fn = getattr(torch, "compile", None)
        if compile_fn is None:
            warnings.warn("torch.compile is unavailable; running the env step eagerly.", stacklevel=3)
            return
        try:
            self._transition_fn = compile_fn(self._transition, fullgraph=True, dynamic=False, mode=self._compile_mode)
            # Compilation happens at the first call; `_call_transition` falls back on failure.
            self._compiled_checked = False
            self._masks_as_uint8 = True
        except Exception as e:  # noqa: BLE001 - any backend failure means "run eagerly"
            warnings.warn(f"torch.compile failed ({e!r}); running the env step eagerly.", stacklevel=3)
            self._transition_fn = self._transition

    def _seed(self, seed: int | None) -> None:
        if seed is None:
            self._generator.seed()  # nondeterministic, from the OS
        else:
            self._generator.manual_seed(int(seed))

    # ------------------------------------------------------------------ state access
    @property
    def state(self) -> State:
        """The current state of every row (tuple of tensors ``[N, ...]``); for tests and tools."""
        if self._state is None:
            raise RuntimeError("Call reset() before reading the state.")
        return self._state

    @state.setter
    def state(self, value: Sequence[torch.Tensor]) -> None:
        new = tuple(value)
        if self._state is None:
            raise RuntimeError("Call reset() before setting the state.")
        if len(new) != len(self._state) or any(
            a.shape != b.shape or a.dtype != b.dtype for a, b in zip(new, self._state, strict=True)
        ):
            raise ValueError(
                "state must match the current state's tensors in number, shape and dtype: "
                f"{[(tuple(t.shape), t.dtype) for t in self._state]}."
            )
        self._state = tuple(t.to(self.device) for t in new)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything that decides future steps, as tensors (for checkpoints; no pickle).

        Keys: ``state.i`` (the dynamics state), ``reset_states.i`` (pre-drawn reset states
        not yet used), ``reset_index`` (0-dim, how many of them are used), ``ep_return`` and
        ``ep_length`` (episodes in flight), ``generator`` (the env generator's state).
        Per-env parameters drawn at seeding (e.g. DeepSea's mapping) are not included: build
        the env with the same seed and ``reset(seed=...)`` to recreate them.
        """
        if self._state is None:
            raise RuntimeError("Call reset() before state_dict().")
        out: dict[str, torch.Tensor] = {f"state.{i}": t for i, t in enumerate(self._state)}
        out.update({f"reset_states.{i}": t for i, t in enumerate(self._reset_states_K)})
        out["reset_index"] = torch.tensor(int(self._reset_index), dtype=torch.int64)
        out["ep_return"] = self._ep_return_N
        out["ep_length"] = self._ep_length_N
        out["generator"] = self._generator.get_state()
        return out

    def check_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Raise ``ValueError`` unless ``state`` fits this env (keys, shapes, dtypes, a valid
        generator state, ``reset_index`` in range); changes nothing."""
        current = self.state_dict()
        if set(state) != set(current):
            raise ValueError(f"env state keys {sorted(state)} do not match this env's {sorted(current)}")
        for key, like in current.items():
            got = state[key]
            if not isinstance(got, torch.Tensor) or got.shape != like.shape or got.dtype != like.dtype:
                raise ValueError(
                    f"env state {key!r} has shape {tuple(getattr(got, 'shape', ()))} {getattr(got, 'dtype', None)}, "
                    f"expected {tuple(like.shape)} {like.dtype}"
                )
        index = int(state["reset_index"])
        if not 0 <= index <= max(1, int(getattr(self, "reset_block", 1))):
            raise ValueError(f"env state reset_index {index} is out of range")
        try:  # a scratch generator: a bad state is refused without touching the live one
            torch.Generator(device=self._generator.device).set_state(state["generator"])
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ValueError(f"env state 'generator' is not a valid generator state ({exc})") from None

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` output; checked first (:meth:`check_state_dict`)."""
        self.check_state_dict(state)
        index = int(state["reset_index"])
        n_state, n_reset = len(self._state or ()), len(self._reset_states_K)
        self._state = tuple(state[f"state.{i}"].to(self.device) for i in range(n_state))
        self._reset_states_K = tuple(state[f"reset_states.{i}"].to(self.device) for i in range(n_reset))
        self._reset_index = index
        self._ep_return_N = state["ep_return"].to(self.device)
        self._ep_length_N = state["ep_length"].to(self.device)
        self._generator.set_state(state["generator"])

    # ------------------------------------------------------------------ reset / step
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reset every row. ``seed`` reseeds the env's generator (and per-env parameters)."""
        if seed is not None:
            self._seed(seed)
            self._on_seed(self._generator)
        if options is not None:
            self._parse_reset_options(options)
        if self.noise == "hash":
            self._hash_key_2 = torch.randint(
                0, 1 << 32, (2,), generator=self._generator, device=self.device, dtype=torch.int64
            )
            self._hash_counter = torch.zeros((), dtype=torch.int64, device=self.device)
            u = hash_uniform(self._hash_key_2, self._hash_counter, self.num_envs, self.reset_noise_dim)
            self._state = tuple(self._cast(t) for t in self._reset_from_uniform(u))
            self._hash_counter = self._hash_counter + 1
        else:
            self._refill_reset_states()
            self._state = tuple(self._cast(t[0]) for t in self._reset_states_K)
            self._reset_index = 1
        self._ep_return_N.zero_()
        self._ep_length_N.zero_()
        return self._observe(self._state), {}

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        """Floating state tensors in the env's ``dtype`` (reset noise is drawn in float32)."""
        return t.to(self.dtype) if (self.dtype is not None and t.is_floating_point()) else t.clone()

    def _refill_reset_states(self) -> None:
        u = torch.rand(
            (self.reset_block, self.num_envs, self.reset_noise_dim),
            generator=self._generator,
            device=self.device,
            dtype=torch.float32,
        )
        self._reset_states_K = tuple(t.contiguous() for t in self._reset_from_uniform(u))
        self._reset_index = 0

    def step(
        self, actions: ActionsLike
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Advance every row once; reset rows that end (SAME_STEP). See the module docstring."""
        if self._state is None:
            raise RuntimeError(f"Call reset() before step() on {type(self).__name__}.")
        actions_N = self._check_actions(actions)
        if self.noise == "hash":
            noise_src: tuple[torch.Tensor, ...] = (self._hash_key_2, self._hash_counter)
        elif self.reset_noise_dim > 0:
            if self._reset_index >= self.reset_block:
                self._refill_reset_states()
            noise_src = tuple(t[self._reset_index] for t in self._reset_states_K)
            self._reset_index += 1
        else:
            noise_src = tuple(t[0] for t in self._reset_states_K)
        (
            self._state,
            obs,
            reward,
            terminated,
            truncated,
            done,
            final_obs,
            ep_return,
            ep_length,
            self._ep_return_N,
            self._ep_length_N,
            counter,
        ) = self._call_transition(self._state, actions_N, noise_src, self._ep_return_N, self._ep_length_N)
        if counter is not None:
            self._hash_counter = counter
        if self._masks_as_uint8:
            terminated, truncated, done = (m.view(torch.bool) for m in (terminated, truncated, done))
        info = {
            "final_obs": final_obs,
            "_final_obs": done,
            "episode": {"r": ep_return, "l": ep_length},
            "_episode": done,
        }
        return obs, reward, terminated, truncated, info

    def _call_transition(self, *args: Any) -> Any:
        if self._compiled_checked:
            return self._transition_fn(*args)
        # First call of a compiled step: compilation happens now; fall back if it fails.
        self._compiled_checked = True
        try:
            return self._transition_fn(*args)
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); running eagerly.", stacklevel=3)
            self._transition_fn = self._transition
            self._masks_as_uint8 = False
            return self._transition(*args)

    def _transition(
        self,
        state: State,
        actions_N: torch.Tensor,
        noise_src: tuple[torch.Tensor, ...],
        ep_return_N: torch.Tensor,
        ep_length_N: torch.Tensor,
    ) -> tuple[Any, ...]:
        """Dynamics + time limit + SAME_STEP autoreset + statistics: one pure graph.

        ``noise_src`` is the candidate reset state (``noise="generator"``) or ``(key,
        counter)`` of the hash generator. Returns ``(new_state, obs, reward, terminated,
        truncated, done, final_obs, finished_return, finished_length, running_return,
        running_length, next_counter or None)``.
        """
        if self.noise == "hash":
            key_2, counter = noise_src
            u = hash_uniform(key_2, counter, self.num_envs, self.reset_noise_dim)
            reset_state = self._reset_from_uniform(u)
            next_counter: torch.Tensor | None = counter + 1
        else:
            reset_state = noise_src
            next_counter = None
        next_state, reward_N, terminated_N = self._dynamics(state, actions_N)
        reward_N = reward_N.to(torch.float32)
        final_obs = self._observe(next_state)
        length_N = ep_length_N + 1
        return_N = ep_return_N + reward_N
        if self.max_episode_steps is None:
            truncated_N = torch.zeros_like(terminated_N)
        else:
            # gymnasium/wrappers/common.py TimeLimit: truncated even if also terminated.
            truncated_N = length_N >= self.max_episode_steps
        done_N = terminated_N | truncated_N
        new_state = tuple(
            torch.where(expand_mask(done_N, nxt), rst.to(nxt.dtype), nxt)
            for nxt, rst in zip(next_state, reset_state, strict=True)
        )
        obs = self._observe(new_state)
        running_return_N = torch.where(done_N, 0.0, return_N)
        running_length_N = torch.where(done_N, 0, length_N)
        if self._masks_as_uint8:
            # Inductor's CPU code stores bool outputs element by element (~4 ns each, measured
            # with torch 2.13), but uint8 from a `where` vectorized: the compiled step returns
            # uint8 masks and `step` views them as bool (free, same itemsize).
            terminated_N, truncated_N, done_N = (
                torch.where(m, 1, 0).to(torch.uint8) for m in (terminated_N, truncated_N, done_N)
            )
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

    # ------------------------------------------------------------------ validation
    def _check_actions(self, actions: ActionsLike) -> torch.Tensor:
        """Return ``actions`` as an int64 tensor ``[N]`` (``[N, H]`` for a MultiDiscrete space)
        on ``device``, or raise a clear error."""
        shape = self._action_shape
        if not isinstance(actions, torch.Tensor):
            arr = np.asarray(actions)
            if not (np.issubdtype(arr.dtype, np.integer)):
                raise TypeError(
                    f"actions must be integer action indices, got a {type(actions).__name__} of "
                    f"dtype {arr.dtype}; pass e.g. a torch.int64 tensor of shape {shape}."
                )
            actions = torch.as_tensor(arr, dtype=torch.int64, device=self.device)
        if tuple(actions.shape) != shape:
            per = "one action index per sub-env" if len(shape) == 1 else "one action per head per sub-env"
            raise ValueError(
                f"actions must have shape {shape} -- {per} -- got {tuple(actions.shape)}; if you hold "
                "one-hot actions use actions.argmax(-1)."
            )
        if actions.dtype != torch.int64:
            if actions.dtype == torch.bool or actions.is_floating_point() or actions.is_complex():
                raise TypeError(
                    f"actions must be an integer tensor (torch.int64), got dtype {actions.dtype}; "
                    "convert with actions.long() (after argmax if they are one-hot/probabilities)."
                )
            actions = actions.to(torch.int64)
        if actions.device != self.device:
            raise ValueError(
                f"actions are on device {actions.device} but the env is on {self.device}; "
                f"move them with actions.to(env.device)."
            )
        if self.validate_actions:
            # One host read per step: off on the trainer's fast path (validate_actions=False).
            bad = (actions < 0) | (actions >= self._num_actions)
            if bool(bad.any()):
                if isinstance(self._num_actions, int):
                    valid = f"0..{self._num_actions - 1}"
                else:
                    nvec = self._num_actions.tolist()
                    valid = f"0..{nvec[0] - 1} for every head" if len(set(nvec)) == 1 else f"0..n-1, n = {nvec}"
                raise ValueError(
                    f"actions out of range: {actions[bad][:8].tolist()} (sub-envs "
                    f"{bad.nonzero()[:, 0][:8].tolist()}); valid actions are {valid}. "
                    "Pass validate_actions=False to skip this check (it costs a host sync)."
                )
        return actions

    # ------------------------------------------------------------------ misc
    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """An ``HxWx3`` uint8 image of sub-env ``render_env_index`` (``render_mode="rgb_array"``)."""
        if self.render_mode is None:
            gym.logger.warn(
                f"render() called without a render_mode; construct {type(self).__name__} with render_mode='rgb_array'."
            )
            return None
        if self._state is None:
            raise RuntimeError("Call reset() before render().")
        i = int(self.render_env_index)
        if not 0 <= i < self.num_envs:
            raise ValueError(f"render_env_index={i} is outside 0..{self.num_envs - 1}.")
        return self._render_rgb(tuple(t[i].detach().cpu() for t in self._state))

    def _render_rgb(self, state_i: State) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no renderer.")

    def __repr__(self) -> str:
        name = self.spec.id if self.spec is not None else type(self).__name__
        return f"{type(self).__name__}({name}, num_envs={self.num_envs}, device={self.device})"
