"""Adapters from Gymnasium vector envs and our batched torch envs to :class:`BatchedEnv`.

``make_env(env_id, ...)`` is the one entry point:

* ids in the ``gumbel_ac/`` namespace build our batched torch envs (state on ``device``;
  the adapter is a thin pass-through, no host copies);
* any other Gymnasium id builds ``gymnasium.make_vec``: the env's own vectorized
  implementation where it has one (CartPole's numpy ``CartPoleVectorEnv``, NEXT_STEP
  autoreset), otherwise ``SyncVectorEnv`` with SAME_STEP autoreset. Both are presented with
  SAME_STEP semantics plus a ``valid`` mask (docs/DESIGN.md §6).

Observations are flattened to ``[N, D]`` rows (:class:`ObsEncoder`): float32 features, one-hot
``Discrete`` observations, and image frames (3-D ``uint8``/``bool`` boxes: Atari, MinAtar) as
channel-first ``uint8`` pixels that the agent's convolutional encoder reads
(:mod:`gumbel_ac.encoders`). Other observation spaces are refused with a clear error.

Ids from other packages (:mod:`gumbel_ac.envpkgs`): ``module:EnvId`` imports ``module`` first
as ``gymnasium.make`` does; ``ALE/`` and ``MinAtar/`` ids register their package on demand;
``ALE/`` ids get Atari preprocessing (:func:`atari_wrappers`); a missing package (Box2D,
ale-py, minatar) is one :class:`~gumbel_ac.envpkgs.MissingEnvPackageError` (an
:class:`UnknownEnvError`) naming the install command.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from gumbel_ac.config import ConfigError
from gumbel_ac.distributions import ActionSpec, UnsupportedSpaceError
from gumbel_ac.envpkgs import ALE_PREFIX, UnknownEnvError, missing_dependency, prepare_env_id
from gumbel_ac.protocol import BatchStep

TORCH_NAMESPACE = "gumbel_ac/"

#: Env constructor arguments that :func:`make_env` (or ``gymnasium.make_vec`` under it) sets
#: itself, refused in ``env_kwargs`` -- from ``--env-kwargs`` and from a checkpoint's config
#: alike (:meth:`gumbel_ac.config.Config.check`). Each has its own flag or is the factory's job:
#: ``num_envs`` (--num-envs, capped; a second value in env_kwargs bypassed the cap),
#: ``device`` (--device), ``seed`` (--seed; the env is seeded at reset), ``render_mode``
#: (evaluation renders only for --gif; "human" opened a window), ``validate_actions`` (the
#: trainer turns the per-step check off for speed), and ``make_vec``'s own ``id``,
#: ``vectorization_mode``, ``vector_kwargs`` and ``wrappers``.
RESERVED_ENV_KWARGS: frozenset[str] = frozenset(
    {
        "id",
        "env_id",
        "num_envs",
        "device",
        "seed",
        "render_mode",
        "validate_actions",
        "vectorization_mode",
        "vector_kwargs",
        "wrappers",
    }
)

#: Env arguments evaluation drops (:func:`eval_env_kwargs`): ``compile`` pays off for a large,
#: long-lived training population; an evaluation builds a fresh env of a few episodes, where a
#: compile (tens of seconds) costs more than it saves, and eval.py must not start one because a
#: saved config asked for it.
EVAL_DROPPED_ENV_KWARGS: frozenset[str] = frozenset({"compile", "compile_mode"})


#: Atari preprocessing for ``ALE/`` ids (:func:`atari_wrappers`): frames per agent step, the
#: side of the square grayscale frame, and how many of the latest frames one observation stacks.
ATARI_FRAME_SKIP = 4
ATARI_SCREEN_SIZE = 84
ATARI_FRAME_STACK = 4


def image_layout(space: gym.Space[Any], layout: str | None = None) -> tuple[tuple[int, int, int], bool] | None:
    """``((C, H, W), channels_last)`` for image observations, else None.

    An image is a 3-D ``Box`` of ``uint8`` (Atari frames, 0..255; MinAtar grids as 0/1 bytes)
    or ``bool`` (the ``minatar`` package's grids). ``layout`` ("CHW" or "HWC") is what the env
    says it emits; without it the channel axis is the smallest one (SB3's
    ``is_image_space_channels_first`` rule), with ties going to the last axis -- Gymnasium's
    ``H x W x C`` convention, so MinAtar Seaquest's 10x10x10 grid is read as 10 channels last.
    """
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3:
        return None
    if space.dtype not in (np.uint8, np.bool_):
        return None
    a, b, c = (int(n) for n in space.shape)
    if layout is None:
        layout = "HWC" if c <= a and c <= b else ("CHW" if a <= b and a <= c else "HWC")
    if layout == "CHW":
        return (a, b, c), False
    if layout == "HWC":
        return (c, a, b), True
    raise ValueError(f"image layout must be 'CHW' or 'HWC', got {layout!r}")


class ObsEncoder:
    """Observations as the agent's flat rows ``[N, D]``, on tensors.

    * ``Discrete``: one-hot float rows.
    * Images (:func:`image_layout`): the frame in ``C x H x W`` order, flattened, kept as
      ``uint8`` (bool grids become 0/1 bytes): the replay stores one byte per pixel and the
      agent's encoder converts (``pixel_scale``: 1/255 for 0..255 frames, else 1).
    * Other ``Box``/``MultiBinary``: flattened float32 (``uint8`` 0..255 vectors scaled to [0, 1]
      as SB3 does).
    """

    def __init__(self, space: gym.Space[Any], layout: str | None = None) -> None:
        self.scale = 1.0
        self.dtype = torch.float32
        #: ``(C, H, W)`` of image observations (None for vectors), and whether the env's frames
        #: are channel-last (then permuted to channel-first here).
        self.image_shape: tuple[int, int, int] | None = None
        self.channels_last = False
        #: The factor the agent applies to integer pixels (1/255 for 0..255 frames).
        self.pixel_scale = 1.0
        if isinstance(space, gym.spaces.Discrete):
            self.kind, self.n, self.start = "discrete", int(space.n), int(space.start)
            self.dim = self.n
        elif isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary)):
            self.kind = "box"
            self.dim = int(np.prod(space.shape)) if space.shape else 1
            image = image_layout(space, layout)
            full_range = (
                isinstance(space, gym.spaces.Box)
                and space.dtype == np.uint8
                and np.all(space.low == 0)
                and np.all(space.high == 255)
            )
            if image is not None:
                self.kind, self.dtype = "image", torch.uint8
                self.image_shape, self.channels_last = image
                self.pixel_scale = 1.0 / 255.0 if full_range else 1.0
            elif full_range:  # uint8 vectors (SB3's is_image_space test without the 3-D shape)
                self.scale = 1.0 / 255.0
            if image is None:
                low = getattr(space, "low", 0.0)  # MultiBinary rows lie in [0, 1]
                high = getattr(space, "high", 1.0)
                self._low = np.broadcast_to(np.asarray(low, dtype=np.float64), space.shape).reshape(-1) * self.scale
                self._high = np.broadcast_to(np.asarray(high, dtype=np.float64), space.shape).reshape(-1) * self.scale
        else:
            raise UnsupportedSpaceError(
                f"observation space {space} is not supported: gumbel_ac takes Box or Discrete "
                "observations (flatten Dict/Tuple observations with gymnasium.wrappers.FlattenObservation)."
            )

    def row_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of each value of a row (float64; infinite where the space is
        unbounded): one-hot rows lie in [0, 1], ``Box`` rows within the box times ``scale``.
        ``ValueError`` for image observations, whose rows are frames, not features."""
        if self.kind == "image":
            raise ValueError("image observations have no per-feature bounds (their rows are frames)")
        if self.kind == "discrete":
            return np.zeros(self.dim), np.ones(self.dim)
        return self._low.copy(), self._high.copy()

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        if self.kind == "discrete":
            return torch.nn.functional.one_hot(obs.reshape(-1).long() - self.start, self.n).float()
        if self.kind == "image":
            frames = obs.permute(0, 3, 1, 2) if self.channels_last else obs
            return frames.reshape(obs.shape[0], -1).to(torch.uint8)
        flat = obs.reshape(obs.shape[0], -1).float()
        return flat * self.scale if self.scale != 1.0 else flat


def describe_spaces(obs_space: gym.Space[Any], action_space: gym.Space[Any]) -> dict[str, Any]:
    """A JSON description of the spaces, stored in checkpoints and compared on load."""

    def one(space: gym.Space[Any]) -> dict[str, Any]:
        if isinstance(space, gym.spaces.Discrete):
            return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
        if isinstance(space, gym.spaces.MultiDiscrete):
            return {"type": "MultiDiscrete", "nvec": [int(n) for n in np.asarray(space.nvec).reshape(-1)]}
        if isinstance(space, gym.spaces.Box):
            return {"type": "Box", "shape": [int(s) for s in space.shape], "dtype": str(space.dtype)}
        if isinstance(space, gym.spaces.MultiBinary):
            return {"type": "MultiBinary", "shape": [int(s) for s in np.atleast_1d(space.n)]}
        return {"type": type(space).__name__}

    return {"observation_space": one(obs_space), "action_space": one(action_space)}


class _EpisodeStats:
    """Per-env running return/length on the device (works for numpy-backed envs too)."""

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.ret = torch.zeros(num_envs, device=device)
        self.length = torch.zeros(num_envs, dtype=torch.long, device=device)

    def step(
        self, reward: torch.Tensor, done: torch.Tensor, valid: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inc = torch.ones_like(self.length) if valid is None else valid.long()
        self.ret += reward if valid is None else reward * valid
        self.length += inc
        finished_ret, finished_len = self.ret.clone(), self.length.clone()
        self.ret.masked_fill_(done, 0.0)
        self.length.masked_fill_(done, 0)
        return finished_ret, finished_len


class GymVectorAdapter:
    """A Gymnasium ``VectorEnv`` (numpy) as a :class:`BatchedEnv` on ``device``."""

    def __init__(self, env: gym.vector.VectorEnv, device: torch.device) -> None:
        self.env = env
        self.device = device
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.action_spec = ActionSpec.from_space(env.single_action_space)
        self.encode = ObsEncoder(env.single_observation_space)
        self.obs_dim = self.encode.dim
        self.mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if self.mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise UnsupportedSpaceError(f"autoreset mode {self.mode} is not supported")
        self._stats = _EpisodeStats(self.num_envs, device)
        self._prev_done = np.zeros(self.num_envs, dtype=bool)

    def _to_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return self.encode(torch.as_tensor(np.asarray(obs)).to(self.device))

    def reset(self, *, seed: int | None = None) -> torch.Tensor:
        obs, _ = self.env.reset(seed=seed)
        self._prev_done[:] = False
        self._stats = _EpisodeStats(self.num_envs, self.device)
        return self._to_tensor(obs)

    def step(self, actions: torch.Tensor) -> BatchStep:
        act = actions.detach().cpu().numpy()
        if self.action_spec.num_heads == 1:
            act = act.reshape(self.num_envs)
        obs, reward, terminated, truncated, info = self.env.step(act)
        done = np.logical_or(terminated, truncated)
        obs_t = self._to_tensor(obs)
        if self.mode == AutoresetMode.NEXT_STEP:
            # The step after a done only resets: not a transition (docs/DESIGN.md §6).
            valid_np = ~self._prev_done
            valid: torch.Tensor | None = torch.as_tensor(valid_np, device=self.device)
            next_obs = obs_t
            self._prev_done = done.copy()
        else:
            valid = None
            next_obs = obs_t
            if "_final_obs" in info and np.any(info["_final_obs"]):
                final = np.array(obs, copy=True)
                for i in np.flatnonzero(info["_final_obs"]):
                    final[i] = info["final_obs"][i]
                next_obs = self._to_tensor(final)
        reward_t = torch.as_tensor(np.asarray(reward, dtype=np.float32), device=self.device)
        done_t = torch.as_tensor(done, device=self.device)
        ep_ret, ep_len = self._stats.step(reward_t, done_t, valid)
        return BatchStep(
            obs=obs_t,
            reward=reward_t,
            terminated=torch.as_tensor(np.asarray(terminated, dtype=bool), device=self.device),
            truncated=torch.as_tensor(np.asarray(truncated, dtype=bool), device=self.device),
            next_obs=next_obs,
            valid=valid,
            episode_done=done_t if valid is None else done_t & valid,
            episode_return=ep_ret,
            episode_length=ep_len,
        )

    def state_dict(self) -> None:
        """``None``: a Gymnasium env's state (numpy arrays, Box2D worlds, ...) cannot be captured
        in general; resume re-seeds the env from (seed, step) instead (docs/resume.md)."""
        return None

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        raise ValueError("a Gymnasium numpy env's state cannot be restored; re-seed it with reset(seed=...)")

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


class TorchVectorAdapter:
    """One of our batched torch envs (``gumbel_ac.envs``) as a :class:`BatchedEnv`.

    A pass-through: the env already keeps state, autoreset and episode statistics on the
    device; only observations are flattened/encoded and the action validation that would
    cost a host sync is switched off by the caller (``validate_actions=False``).
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self.device = torch.device(env.device)
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.action_spec = ActionSpec.from_space(env.single_action_space)
        # Our envs' image observations are channel-first (envs/minatar.py).
        self.encode = ObsEncoder(env.single_observation_space, layout="CHW")
        self.obs_dim = self.encode.dim

    def reset(self, *, seed: int | None = None) -> torch.Tensor:
        obs, _ = self.env.reset(seed=seed)
        return self.encode(obs)

    def step(self, actions: torch.Tensor) -> BatchStep:
        if self.action_spec.num_heads == 1:
            actions = actions.reshape(self.num_envs)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        obs_t = self.encode(obs)
        return BatchStep(
            obs=obs_t,
            reward=reward.float(),
            terminated=terminated,
            truncated=truncated,
            next_obs=self.encode(info["final_obs"]),
            valid=None,
            episode_done=info["_episode"],
            episode_return=info["episode"]["r"],
            episode_length=info["episode"]["l"],
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The torch env's own :meth:`~gumbel_ac.envs.base.TorchVectorEnv.state_dict`."""
        return self.env.state_dict()

    def check_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.env.check_state_dict(state)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.env.load_state_dict(state)

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA GPU; use --device cpu or auto.")
    return torch.device(device)


def check_env_id(env_id: str) -> str:
    """Raise :class:`UnknownEnvError` with close matches when ``env_id`` is not registered.

    Imports what the id needs first (:func:`gumbel_ac.envpkgs.prepare_env_id`: a ``module:``
    prefix, the ALE or MinAtar registry) and returns the registry id (without the prefix).
    """
    if env_id.startswith(TORCH_NAMESPACE):
        import gumbel_ac.envs  # noqa: F401  (registers the namespace)
    name = prepare_env_id(env_id)
    if name not in gym.registry:
        close = difflib.get_close_matches(name, list(gym.registry), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownEnvError(f"unknown env id {env_id!r}: it is not registered with Gymnasium.{hint}")
    return name


def atari_wrappers(frame_skip: int) -> list[Any]:
    """The preprocessing of SB3's ``make_atari_env`` for an ``ALE/`` env made with ``frameskip=1``.

    Gymnasium's ``AtariPreprocessing`` (30 random no-ops at reset, ``frame_skip`` frames per
    action with the max of the last two, grayscale ``84x84``) and a stack of the latest 4
    frames: ``uint8`` observations of shape ``(4, 84, 84)``. The v5 ids skip 4 frames in the
    emulator itself (no max-pooling); the env is made with ``frameskip=1`` so the skip happens
    once, here. Episodes end at game over (not at each lost life) and rewards are not clipped,
    so training and evaluation returns are the game's scores.
    """
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    def preprocess(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
        return AtariPreprocessing(
            env, noop_max=30, frame_skip=frame_skip, screen_size=ATARI_SCREEN_SIZE, grayscale_obs=True
        )

    def stack(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
        return FrameStackObservation(env, stack_size=ATARI_FRAME_STACK)

    return [preprocess, stack]


def _atari_frame_skip(env_id: str, spec: gym.envs.registration.EnvSpec, kwargs: dict[str, Any]) -> int:
    """The frames per action for an ``ALE/`` id: ``frameskip`` from env_kwargs, else the id's (4 for v5)."""
    skip = kwargs.pop("frameskip", spec.kwargs.get("frameskip", ATARI_FRAME_SKIP))
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 1:
        raise ConfigError(
            f"env_kwargs 'frameskip' of {env_id} must be a positive integer (frames per action; the "
            f"preprocessing applies it with max-pooling), got {skip!r}"
        )
    return skip


def eval_env_kwargs(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` for an evaluation env: without :data:`EVAL_DROPPED_ENV_KWARGS`."""
    return {k: v for k, v in env_kwargs.items() if k not in EVAL_DROPPED_ENV_KWARGS}


def _json_matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a constructor's type hint; unknown hints fit nothing but instances."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_json_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is not None:  # list[str], dict[...]: the container type is enough here
        return isinstance(value, origin)
    return isinstance(hint, type) and isinstance(value, hint)


def check_env_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Refuse, with one :class:`ConfigError`, env_kwargs that :func:`make_env` must not pass on.

    Reserved keys (:data:`RESERVED_ENV_KWARGS`) for any env. For our ``gumbel_ac/`` envs also
    keys the constructor does not take and values whose JSON type does not fit its annotation
    (``{"size": "10"}``, or ``{"dtype": "float32"}`` where a torch dtype is needed), read from
    the signature without building anything. Ranges (e.g. DeepSea's ``size``) are checked by the
    constructor itself before it allocates. An unknown env id passes: the trainer reports it.
    """
    reserved = sorted(set(env_kwargs) & RESERVED_ENV_KWARGS)
    if reserved:
        raise ConfigError(
            f"env_kwargs may not set {', '.join(reserved)}: gumbel_ac sets "
            f"{'it' if len(reserved) == 1 else 'them'} itself (use the matching flag, e.g. --num-envs, "
            "--device, --seed; eval.py --gif for rendering); remove the key(s) from env_kwargs"
        )
    if not env_id.startswith(TORCH_NAMESPACE):
        return
    try:
        check_env_id(env_id)
    except UnknownEnvError:
        return
    entry = gym.spec(env_id).vector_entry_point
    if not isinstance(entry, str):
        return
    from gymnasium.envs.registration import load_env_creator

    cls = load_env_creator(entry)
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    hints = typing.get_type_hints(getattr(cls, "__init__", cls))  # the class's constructor
    unknown = sorted(set(env_kwargs) - set(params))
    if unknown:
        takes = sorted(set(params) - RESERVED_ENV_KWARGS)
        raise ConfigError(
            f"env {env_id} does not take env_kwargs {', '.join(map(repr, unknown))}; it takes {', '.join(takes)}"
        )
    for key, value in env_kwargs.items():
        hint = hints.get(key, Any)
        if not _json_matches(value, hint):
            if not isinstance(hint, type):
                shown = str(hint).replace("typing.", "")
            elif hint.__module__ == "builtins":
                shown = hint.__name__
            else:
                shown = f"{hint.__module__}.{hint.__qualname__}"
            raise ConfigError(
                f"env_kwargs {key!r} of {env_id} must be of type {shown}, got {value!r} ({type(value).__name__})"
            )


def make_env(
    env_id: str,
    *,
    num_envs: int,
    device: torch.device | str = "cpu",
    seed: int | None = None,
    render_mode: str | None = None,
    **env_kwargs: Any,
) -> GymVectorAdapter | TorchVectorAdapter:
    """Build ``num_envs`` copies of ``env_id`` as a :class:`BatchedEnv` on ``device``.

    The returned adapter exposes ``action_spec`` (:class:`ActionSpec`) and ``obs_dim`` as well.
    ``seed`` is only stored for the caller's first ``reset(seed=...)``.

    ``env_kwargs`` are checked first (:func:`check_env_kwargs`); a constructor that refuses one
    of them (TypeError, or ValueError such as DeepSea's size cap) is a :class:`ConfigError`
    naming the env and the kwargs, the same for training and eval.py.
    """
    device = torch.device(device)
    name = check_env_id(env_id)
    check_env_kwargs(env_id, env_kwargs)
    try:
        if name.startswith(TORCH_NAMESPACE):
            env = gym.make_vec(
                name,
                num_envs=num_envs,
                vectorization_mode="vector_entry_point",
                device=device,
                validate_actions=False,
                render_mode=render_mode,
                **env_kwargs,
            )
        else:
            spec = gym.spec(name)
            kwargs = dict(env_kwargs)
            if render_mode is not None:
                kwargs["render_mode"] = render_mode
            wrappers = None
            if name.startswith(ALE_PREFIX):
                # ale-py's own vector env (its vector_entry_point) clips rewards by default;
                # Gymnasium's wrappers in a SyncVectorEnv keep the game's score (atari_wrappers).
                wrappers = atari_wrappers(_atari_frame_skip(env_id, spec, kwargs))
                kwargs["frameskip"] = 1
            if spec.vector_entry_point is not None and render_mode is None and wrappers is None:
                env = gym.make_vec(name, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
            else:
                env = gym.make_vec(
                    name,
                    num_envs=num_envs,
                    vectorization_mode="sync",
                    vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                    wrappers=wrappers,
                    **kwargs,
                )
    except (gym.error.DependencyNotInstalled, ModuleNotFoundError) as exc:
        raise missing_dependency(env_id, exc) from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, (UnsupportedSpaceError, ConfigError)) or not env_kwargs:
            raise  # not about env_kwargs, or already said: the caller's own handling applies
        raise ConfigError(f"env {env_id} rejected env_kwargs {env_kwargs}: {exc}") from None
    adapter: GymVectorAdapter | TorchVectorAdapter
    adapter = TorchVectorAdapter(env) if name.startswith(TORCH_NAMESPACE) else GymVectorAdapter(env, device)
    return adapter
