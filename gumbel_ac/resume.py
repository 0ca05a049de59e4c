"""Resume state: the checkpoint's state tree, and how it is put back.

Each component of a run owns its state (``state_dict`` / ``check_state_dict`` /
``load_state_dict``): the :class:`~gumbel_ac.learner.Learner` (Adam, the non-finite guard;
its weights are the checkpoint's model file), the :class:`~gumbel_ac.loop_state.LoopState`
(counters, observation, the open log window, generators, evaluations), the replay buffer and
the torch env. :func:`collect_state` flattens their states into ``training.safetensors``
(tensors under ``/``-joined paths) and the manifest's ``training`` object (a JSON mirror of
the tree); :func:`restore` finds the newest checkpoint whose every part passes its check and
only then loads every part, so a bad checkpoint never leaves a run half-restored and, on CPU,
a resumed run writes the same metrics and weights as one never stopped (docs/resume.md).
Nothing here runs in the rollout/update phases (it reads the device freely).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

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

#: Version of the ``training`` manifest object and ``training.safetensors`` layout. Version 2:
#: one state tree of components (learner, loop, replay, env); version 1 checkpoints are
#: refused with a message (their weights still load for evaluation).
TRAINING_STATE_VERSION = 2


#: The attribute (not a dataclass field: not a flag, not saved) by which :func:`resume_config`
#: tells :func:`gumbel_ac.trainer.train` which fields the caller named.
OVERRIDES_ATTR = "_resume_overrides"


def resume_config(path: str | Path, **overrides: Any) -> Config:
    """The config to pass to :func:`train` to continue the run at ``path``.

    The run's saved config with ``resume=path`` and ``overrides`` applied (e.g.
    ``total_steps=200_000``); ``train.py --resume`` builds it the same way from the flags the
    user gave. Exactly the named ``overrides`` are applied -- even one equal to a dataclass
    default. Overriding a field outside :data:`gumbel_ac.config.RESUME_OVERRIDABLE` to a new
    value is refused by :func:`train`.
    """
    config = dataclasses.replace(saved_config(path), resume=str(path), **overrides)
    object.__setattr__(config, OVERRIDES_ATTR, frozenset(overrides))
    return config


def resume_overrides(config: Config) -> frozenset[str] | None:
    """The fields :func:`resume_config` was told to override (None: a config built otherwise)."""
    value = getattr(config, OVERRIDES_ATTR, None)
    return value if isinstance(value, frozenset) else None


#: Marks a tensor leaf in the manifest's mirror of the state tree (the tensor itself is in
#: ``training.safetensors`` under the leaf's ``/``-joined path).
_TENSOR = "@tensor"


def flatten_state(tree: dict[str, Any], path: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a nested state dict into tensors (keyed by ``/``-joined path) and a JSON mirror of
    the tree in which every tensor leaf is replaced by ``"@tensor"``."""
    tensors: dict[str, torch.Tensor] = {}
    mirror: dict[str, Any] = {}
    for key, value in tree.items():
        if not isinstance(key, str) or "/" in key:
            raise ValueError(f"state key {key!r} must be a string without '/'")
        if isinstance(value, torch.Tensor):
            tensors["/".join((*path, key))] = value
            mirror[key] = _TENSOR
        elif isinstance(value, dict):
            sub_tensors, mirror[key] = flatten_state(value, (*path, key))
            tensors.update(sub_tensors)
        else:
            mirror[key] = value
    return tensors, mirror


def unflatten_state(tensors: dict[str, torch.Tensor], mirror: Any) -> dict[str, Any]:
    """Inverse of :func:`flatten_state`; ``ValueError`` on a missing or unreferenced tensor."""
    used: set[str] = set()

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            if value == _TENSOR:
                name = "/".join((*path, key))
                if name not in tensors:
                    raise ValueError(f"tensor {name!r} is missing")
                used.add(name)
                out[key] = tensors[name]
            elif isinstance(value, dict):
                out[key] = walk(value, (*path, key))
            else:
                out[key] = value
        return out

    if not isinstance(mirror, dict):
        raise ValueError("the training state must be a JSON object")
    tree = walk(mirror, ())
    extra = sorted(set(tensors) - used)
    if extra:
        raise ValueError(f"unexpected tensors {extra[:5]}")
    return tree


def collect_state(components: dict[str, Any], device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors for ``training.safetensors`` and the manifest's ``training`` object, from each
    component's ``state_dict()`` (the learner's agent weights are the checkpoint's model file
    and are left out). Reads the device: bookkeeping phase only."""
    tree = {name: comp.state_dict() for name, comp in components.items()}
    tree["learner"] = {k: v for k, v in tree["learner"].items() if k != "agent"}
    tensors, mirror = flatten_state(tree)
    return tensors, {"version": TRAINING_STATE_VERSION, "device": device.type, "state": mirror}


def _checkpoint_state(
    ckpt: Path, config: Config, device: torch.device, spaces: dict[str, Any], components: dict[str, Any]
) -> dict[str, Any]:
    """A checkpoint's state tree, checked against every component; raises
    :class:`CheckpointError` (naming the file) and changes nothing."""
    loaded = load_run(ckpt, device="cpu")
    meta = loaded.meta
    check_spaces_match(meta, spaces, config.env)
    tensors, tmeta = read_training_state(ckpt, meta)
    manifest, file = ckpt / "meta.json", ckpt / TRAINING_FILE
    version = tmeta.get("version")
    if version != TRAINING_STATE_VERSION:
        raise CheckpointError(
            f"{manifest}: training state version {version!r} cannot be resumed by this gumbel_ac (it writes and "
            f"resumes version {TRAINING_STATE_VERSION}); the weights still load: evaluate with eval.py, or start "
            "a new run"
        )
    if tmeta.get("device") != device.type:
        raise CheckpointError(
            f"{manifest}: the run was trained on {tmeta.get('device')} and its RNG states are device-specific; "
            f"resume it with --device {tmeta.get('device')}"
        )
    try:
        tree = unflatten_state(tensors, tmeta.get("state"))  # checked to be a dict there
        if set(tree) != set(components):
            raise ValueError(f"it holds the components {sorted(tree)}, expected {sorted(components)}")
        tree["learner"] = {**tree["learner"], "agent": loaded.agent.state_dict()}
        step = tree["loop"].get("global_step")
        if step != meta["step"] or not isinstance(step, int) or step % config.num_envs:
            raise ValueError(
                f"global_step {step!r} does not match the checkpoint step {meta['step']} "
                f"(a multiple of num_envs={config.num_envs})"
            )
        for name, comp in components.items():
            comp.check_state_dict(tree[name])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{file}: {exc}") from None
    return tree


def restore(
    resume_dir: Path,
    candidates: list[Path],
    *,
    components: dict[str, Any],
    config: Config,
    device: torch.device,
    spaces: dict[str, Any],
    notes: list[str],
) -> Path:
    """Load the newest good checkpoint of ``candidates`` (newest first) into ``components``
    (``learner``, ``loop``, ``replay`` and, for a torch env, ``env``); return it.

    Every component checks the whole checkpoint before any is changed; a checkpoint that
    fails is skipped with a warning in ``notes`` and the next older one is tried.
    Checkpoints newer than the one used are set aside as ``bad_step_*`` and a killed
    writer's temp folders removed. Raises :class:`CheckpointError` when none can be resumed.
    """
    problems: list[str] = []
    for ckpt in candidates:
        try:
            tree = _checkpoint_state(ckpt, config, device, spaces, components)
        except CheckpointError as exc:
            problems.append(str(exc))
            notes.append(f"warning: cannot resume from {ckpt.name}: {exc}; trying an older checkpoint")
            continue
        break
    else:
        raise CheckpointError(f"{resume_dir}: no checkpoint can be resumed: " + " | ".join(problems))
    for name, comp in components.items():
        comp.load_state_dict(tree[name])
    global_step = components["loop"].global_step
    for newer in list_checkpoints(resume_dir):  # newer than the resume point: corrupt, set aside
        if int(newer.name.split("_")[1]) > global_step:
            newer.rename(newer.with_name(f"bad_{newer.name}"))
            notes.append(f"warning: set aside unreadable newer checkpoint as {newer.with_name('bad_' + newer.name)}")
    clean_stale_temp(resume_dir)
    return ckpt
