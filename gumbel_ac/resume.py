"""Resume state: what a checkpoint holds beyond the weights, and how it is put back.

Every piece of loop state -- Adam moments and step count, the act/update/replay
``torch.Generator`` states and the global CPU RNG, the torch env's state tensors and
generator, the current observation, the half-filled metrics window and the replay buffer's
physical rows -- goes into ``training.safetensors`` plus the manifest's ``training`` object
(:func:`collect_state`), and :func:`restore` puts it back before the loop starts, so on CPU
a resumed run writes the same metrics and weights as one never stopped (docs/resume.md).

Why a module of its own: this is the largest and least-read part of the trainer; the loop in
:mod:`gumbel_ac.trainer` calls two functions from here and stays readable top to bottom.
Nothing here runs in the rollout/update phases (it reads the device freely).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gumbel_ac.agent import Agent
from gumbel_ac.buffer import ReplayBuffer
from gumbel_ac.checkpoint import (
    TRAINING_FILE,
    CheckpointError,
    check_spaces_match,
    clean_stale_temp,
    list_checkpoints,
    load_run,
    read_training_state,
    saved_config,
)
from gumbel_ac.config import Config
from gumbel_ac.optim import FlatAdam
from gumbel_ac.vector import TorchVectorAdapter

#: Version of the ``training`` manifest object and ``training.safetensors`` layout.
TRAINING_STATE_VERSION = 1


def resume_config(path: str | Path, **overrides: Any) -> Config:
    """The config to pass to :func:`train` to continue the run at ``path``.

    The run's saved config with ``resume=path`` and ``overrides`` applied (e.g.
    ``total_steps=200_000``); ``train.py --resume`` builds the same thing from its flags.
    Overriding a field outside :data:`gumbel_ac.config.RESUME_OVERRIDABLE` to a new value is
    refused by :func:`train`.
    """
    return dataclasses.replace(saved_config(path), resume=str(path), **overrides)


def resume_env_seed(seed: int, step: int) -> int:
    """Seed for re-seeding a Gymnasium (numpy) env on resume: a function of (seed, step) only."""
    return int(np.random.SeedSequence([seed % 2**63, step]).generate_state(1)[0])


def torch_env_of(env: Any) -> Any | None:
    """The ``gumbel_ac.envs`` env behind an adapter, if it exposes its state tensors, else None.

    Uses TorchVectorEnv's attributes directly (``_state``, ``_reset_states_K``, ...): the base
    class keeps ALL its mutable state there (envs/base.py), so saving them is exact.
    """
    inner = getattr(env, "env", None)
    needed = ("_state", "_reset_states_K", "_reset_index", "_ep_return_N", "_ep_length_N", "_generator")
    if isinstance(env, TorchVectorAdapter) and all(hasattr(inner, a) for a in needed):
        return inner
    return None


def replay_state(buffer: ReplayBuffer, config: Config) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Replay rows for a checkpoint, and how they were taken.

    ``exact``: the physical rows ``[0, size)`` and the write position, so the restored buffer
    is the same ring and ``sample`` draws the same transitions. ``newest``: the buffer is
    larger than ``replay_save_cap``; only the newest rows, oldest first (resumed sampling then
    differs). ``none``: replay not saved (``--no-save-replay`` or cap 0).
    """
    size = len(buffer)
    if not config.save_replay or config.replay_save_cap == 0 or size == 0:
        return {}, {"mode": "none", "size": 0, "pos": 0}
    if size <= config.replay_save_cap:
        rows = slice(0, size)
        tensors = {
            "replay.obs": buffer.obs_CD[rows],
            "replay.next_obs": buffer.next_obs_CD[rows],
            "replay.action": buffer.action_CH[rows],
            "replay.reward": buffer.reward_C[rows],
            "replay.terminated": buffer.terminated_C[rows],
        }
        return tensors, {"mode": "exact", "size": size, "pos": buffer.pos}
    state = buffer.state_dict()
    cap = config.replay_save_cap
    return {f"replay.{k}": v[-cap:] for k, v in state.items()}, {"mode": "newest", "size": cap, "pos": 0}


class _Restore:
    """Checks a checkpoint's training state against the live objects, then applies it.

    ``check`` raises :class:`CheckpointError` naming ``training.safetensors`` (or the
    manifest) and the problem, and changes nothing; ``apply`` only runs after every check
    passed, so a bad checkpoint never leaves the trainer half-restored and the resumer can
    fall back to an older one.
    """

    def __init__(self, ckpt: Path, tensors: dict[str, torch.Tensor], tmeta: dict[str, Any]) -> None:
        self.ckpt, self.tensors, self.tmeta = ckpt, tensors, tmeta
        self.file = ckpt / TRAINING_FILE
        self.manifest = ckpt / "meta.json"
        self.used: set[str] = set()

    def fail(self, msg: str, manifest: bool = False) -> CheckpointError:
        return CheckpointError(f"{self.manifest if manifest else self.file}: {msg}")

    def field(self, key: str, typ: type | tuple[type, ...]) -> Any:
        value = self.tmeta.get(key)
        if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
            raise self.fail(f"training field {key!r} is missing or has the wrong type", manifest=True)
        return value

    def tensor(self, key: str, like: torch.Tensor | None = None, *, shape: tuple[int, ...] | None = None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        """The stored tensor ``key``, checked to have ``like``'s (or the given) shape and dtype."""
        if key not in self.tensors:
            raise self.fail(f"tensor {key!r} is missing")
        t = self.tensors[key]
        want_shape = tuple(like.shape) if like is not None else shape
        want_dtype = like.dtype if like is not None else dtype
        if (want_shape is not None and tuple(t.shape) != want_shape) or (want_dtype is not None and t.dtype != want_dtype):
            raise self.fail(f"tensor {key!r} is {tuple(t.shape)} {t.dtype}, expected {want_shape} {want_dtype}")
        self.used.add(key)
        return t

    def generator_state(self, key: str, device: torch.device) -> torch.Tensor:
        state = self.tensor(key, dtype=torch.uint8)
        try:  # a scratch generator: a bad state is refused without touching the live one
            torch.Generator(device=device).set_state(state)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise self.fail(f"tensor {key!r} is not a valid {device.type} generator state ({exc})") from None
        return state


def check_grad_views(agent: Agent, flat_grad: torch.Tensor) -> None:
    """Every trained parameter's ``.grad`` must still live inside ``flat_grad``.

    ``losses.make_optimizer`` makes each ``.grad`` a view into one flat buffer; restoring a
    checkpoint copies values in place and must never replace those tensors.
    """
    lo = flat_grad.data_ptr()
    hi = lo + flat_grad.numel() * flat_grad.element_size()
    for p in list(agent.actor.parameters()) + list(agent.critic.parameters()):
        g = p.grad
        if g is None or not (lo <= g.data_ptr() < hi):
            raise RuntimeError("internal error: a parameter's .grad no longer views the flat gradient buffer")


def collect_state(
    config: Config,
    optimizer: FlatAdam,
    buffer: ReplayBuffer,
    torch_env: Any | None,
    obs: torch.Tensor,
    generators: dict[str, torch.Generator],
    accumulators: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors for ``training.safetensors`` and the manifest's ``training`` object (without
    the loop counters, which the caller adds). Reads the device: bookkeeping phase only."""
    optim_state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {
        "optim.exp_avg": optim_state["exp_avg"],
        "optim.exp_avg_sq": optim_state["exp_avg_sq"],
    }
    for name, gen in generators.items():
        tensors[f"rng.{name}"] = gen.get_state()
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    for name, t in accumulators.items():
        tensors[f"loop.{name}"] = t
    tensors["loop.obs"] = obs
    env_meta: dict[str, Any] = {"kind": "gymnasium"}
    if torch_env is not None:
        env_state = torch_env.state_dict()
        reset_index = int(env_state.pop("reset_index"))
        tensors.update({f"env.{key}": t for key, t in env_state.items()})
        env_meta = {
            "kind": "torch",
            "num_state": sum(k.startswith("state.") for k in env_state),
            "num_reset_states": sum(k.startswith("reset_states.") for k in env_state),
            "reset_index": reset_index,
        }
    replay_tensors, replay_meta = replay_state(buffer, config)
    tensors.update(replay_tensors)
    tmeta = {
        "version": TRAINING_STATE_VERSION,
        "optimizer_steps": int(optim_state["steps"]),
        "env": env_meta,
        "replay": replay_meta,
    }
    return tensors, tmeta


def load_state(
    ckpt: Path,
    config: Config,
    device: torch.device,
    spaces: dict[str, Any],
    agent: Agent,
    optimizer: FlatAdam,
    buffer: ReplayBuffer,
    torch_env: Any | None,
    obs: torch.Tensor,
    generators: dict[str, torch.Generator],
    accumulators: dict[str, torch.Tensor],
) -> dict[str, Any]:
    """Check a checkpoint's whole state against the live objects, then load it into them.

    Raises :class:`CheckpointError` (changing nothing) if anything is missing, mistyped or
    mis-shaped. Returns the loop counters and the saved observation.
    """
    loaded = load_run(ckpt, device="cpu")
    meta = loaded.meta
    check_spaces_match(meta, spaces, config.env)
    if meta["obs_dim"] != agent.obs_dim or tuple(meta["action_nvec"]) != tuple(agent.spec.nvec):
        raise CheckpointError(f"{ckpt / 'meta.json'}: the agent's shapes do not match env {config.env}")
    tensors, tmeta = read_training_state(ckpt, meta)
    r = _Restore(ckpt, tensors, tmeta)
    if r.field("version", int) != TRAINING_STATE_VERSION:
        raise r.fail(f"training state version {tmeta.get('version')!r} is not supported", manifest=True)
    if r.field("device", str) != device.type:
        raise r.fail(
            f"the run was trained on {tmeta['device']} and its RNG states are {tmeta['device']}-specific; "
            f"resume it with --device {tmeta['device']}", manifest=True)
    global_step = r.field("global_step", int)
    if global_step != meta["step"] or global_step % config.num_envs or global_step < 0:
        raise r.fail(f"global_step {global_step} does not match the checkpoint step {meta['step']}", manifest=True)
    updates_in_window = r.field("updates_in_window", int)
    train_seconds = r.field("train_seconds", (int, float))
    evals = r.field("evals", list)
    if not all(isinstance(e, list) and len(e) == 4 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                           for x in e) for e in evals):
        raise r.fail("training field 'evals' must be a list of [step, mean, std, seconds]", manifest=True)
    finished = r.field("finished", bool)

    # Optimizer: FlatAdam's two moment vectors (the flat parameter's shape) and step count.
    steps = r.field("optimizer_steps", int)
    if steps < 0:
        raise r.fail("training field 'optimizer_steps' is negative", manifest=True)
    optim_state = optimizer.state_dict()  # learning rates, betas, eps: from this run's config
    optim_state["steps"] = steps
    for key in ("exp_avg", "exp_avg_sq"):
        optim_state[key] = r.tensor(f"optim.{key}", optim_state[key])
    gen_states = {name: r.generator_state(f"rng.{name}", device) for name in generators}
    cpu_rng = r.generator_state("rng.torch_cpu", torch.device("cpu"))
    acc = {name: r.tensor(f"loop.{name}", t) for name, t in accumulators.items()}
    saved_obs = r.tensor("loop.obs", obs)

    # Env.
    env_meta = r.field("env", dict)
    env_tensors: dict[str, Any] = {}
    if torch_env is not None:
        if env_meta.get("kind") != "torch":
            raise r.fail("the checkpoint holds no torch env state for this torch env", manifest=True)
        like = torch_env.state_dict()
        if env_meta.get("num_state") != sum(k.startswith("state.") for k in like) or \
                env_meta.get("num_reset_states") != sum(k.startswith("reset_states.") for k in like):
            raise r.fail("the env state's tensor count does not match the env", manifest=True)
        reset_index = env_meta.get("reset_index")
        if not isinstance(reset_index, int) or isinstance(reset_index, bool) or \
                not 0 <= reset_index <= max(1, int(getattr(torch_env, "reset_block", 1))):
            raise r.fail("the env's reset_index is out of range", manifest=True)
        env_tensors = {
            key: (r.generator_state("env.generator", torch.device(torch_env.device)) if key == "generator"
                  else r.tensor(f"env.{key}", t))
            for key, t in like.items() if key != "reset_index"
        }
        env_tensors["reset_index"] = torch.tensor(reset_index, dtype=torch.int64)

    # Replay.
    replay_meta = r.field("replay", dict)
    mode, size, pos = replay_meta.get("mode"), replay_meta.get("size"), replay_meta.get("pos")
    if mode not in ("exact", "newest", "none") or not isinstance(size, int) or not isinstance(pos, int) \
            or isinstance(size, bool) or isinstance(pos, bool) or not 0 <= size <= buffer.capacity \
            or not 0 <= pos < buffer.capacity or (mode == "exact" and size < buffer.capacity and pos != size):
        raise r.fail(f"training field 'replay' is invalid ({replay_meta!r})", manifest=True)
    replay: dict[str, torch.Tensor] = {}
    if mode != "none":
        like = {"obs": buffer.obs_CD, "next_obs": buffer.next_obs_CD, "action": buffer.action_CH,
                "reward": buffer.reward_C, "terminated": buffer.terminated_C}
        replay = {k: r.tensor(f"replay.{k}", shape=(size,) + tuple(t.shape[1:]), dtype=t.dtype) for k, t in like.items()}
    extra = sorted(set(tensors) - r.used)
    if extra:
        raise r.fail(f"unexpected tensors {extra[:5]}")

    # --- everything checked: apply ---------------------------------------------------------
    agent.load_state_dict(loaded.agent.state_dict())
    optimizer.load_state_dict(optim_state)  # copies in place: the flat views survive
    for name, gen in generators.items():
        gen.set_state(gen_states[name])
    torch.set_rng_state(cpu_rng)
    for name, t in accumulators.items():
        t.copy_(acc[name])
    if torch_env is not None:
        torch_env.load_state_dict(env_tensors)
    if mode == "exact":
        rows = slice(0, size)
        buffer.obs_CD[rows] = replay["obs"].to(buffer.device)
        buffer.next_obs_CD[rows] = replay["next_obs"].to(buffer.device)
        buffer.action_CH[rows] = replay["action"].to(buffer.device)
        buffer.reward_C[rows] = replay["reward"].to(buffer.device)
        buffer.terminated_C[rows] = replay["terminated"].to(buffer.device)
        buffer.pos, buffer.size = pos, size
    elif mode == "newest":
        buffer.load_state_dict(replay)
    return {
        "global_step": global_step,
        "updates_in_window": updates_in_window,
        "train_seconds": float(train_seconds),
        "evals": [(int(e[0]), float(e[1]), float(e[2]), float(e[3])) for e in evals],
        "obs": saved_obs.to(device),
        "finished": finished,
    }



@dataclass
class ResumePoint:
    """Where a restored run continues: the loop counters :func:`restore` read back."""

    checkpoint: Path
    global_step: int
    updates_in_window: int
    train_seconds: float
    evals: list[tuple[int, float, float, float]]
    finished: bool
    obs: torch.Tensor


def restore(
    resume_dir: Path,
    candidates: list[Path],
    *,
    config: Config,
    device: torch.device,
    spaces: dict[str, Any],
    agent: Agent,
    optimizer: FlatAdam,
    flat_grad: torch.Tensor,
    buffer: ReplayBuffer,
    env: Any,
    obs: torch.Tensor,
    generators: dict[str, torch.Generator],
    accumulators: dict[str, torch.Tensor],
    notes: list[str],
) -> ResumePoint:
    """Load the newest good checkpoint of ``candidates`` (newest first) into the live objects.

    A checkpoint that fails its checks is skipped with a warning in ``notes`` and the next
    older one is tried; checkpoints newer than the one used are set aside as ``bad_step_*``
    and a killed writer's temp folders removed. A Gymnasium numpy env is re-seeded from
    (seed, step) instead of restored (docs/resume.md). Raises :class:`CheckpointError` when
    no candidate can be resumed.
    """
    problems: list[str] = []
    torch_env = torch_env_of(env)
    for ckpt in candidates:
        try:
            state = load_state(
                ckpt, config, device, spaces, agent, optimizer, buffer, torch_env, obs, generators, accumulators
            )
        except CheckpointError as exc:
            problems.append(str(exc))
            notes.append(f"warning: cannot resume from {ckpt.name}: {exc}; trying an older checkpoint")
            continue
        break
    else:
        raise CheckpointError(f"{resume_dir}: no checkpoint can be resumed: " + " | ".join(problems))
    check_grad_views(agent, flat_grad)
    global_step = state["global_step"]
    if torch_env is not None:
        obs = state["obs"]
    else:
        # A Gymnasium numpy env's state cannot be captured in general: re-seed it from
        # (seed, step). Episodes in flight at the checkpoint are cut (docs/resume.md).
        obs = env.reset(seed=resume_env_seed(config.seed, global_step))
        notes.append(
            f"note: {config.env} is a Gymnasium numpy env: its state is not restorable; it was re-seeded "
            f"from (seed, step) and the run continues from fresh episodes"
        )
    for newer in list_checkpoints(resume_dir):  # newer than the resume point: corrupt, set aside
        if int(newer.name.split("_")[1]) > global_step:
            newer.rename(newer.with_name(f"bad_{newer.name}"))
            notes.append(f"warning: set aside unreadable newer checkpoint as {newer.with_name('bad_' + newer.name)}")
    clean_stale_temp(resume_dir)
    return ResumePoint(
        checkpoint=ckpt,
        global_step=global_step,
        updates_in_window=state["updates_in_window"],
        train_seconds=state["train_seconds"],
        evals=state["evals"],
        finished=state["finished"],
        obs=obs,
    )
