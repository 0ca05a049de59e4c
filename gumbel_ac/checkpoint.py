"""Checkpoints: a folder of safetensors files and one JSON manifest. No pickle, ever.

Layout of a run folder::

    runs/<name>/
        config.json            the training config
        metrics.jsonl          one JSON object per log line
        checkpoints/
            step_000020000/
                model.safetensors      actor, critics, targets, log_alpha
                training.safetensors   optimizer moments, RNG states, replay (optional)
                meta.json              manifest: format, step, spaces, config, sha256 of files

Why this shape:
* A checkpoint from a stranger must never run code when loaded. safetensors holds only
  tensors; JSON only data. (SB3's ``.zip`` cloudpickles parts of the model, and
  ``torch.load(weights_only=False)`` unpickles: both can execute code.)
* Atomic: files are written into ``step_X.tmp-PID``, fsynced, and the folder is renamed to
  ``step_X`` (rename is atomic on POSIX). ``meta.json`` is written last; a folder without it,
  or with a checksum mismatch, is not a checkpoint. A crash mid-write leaves the previous
  checkpoint intact.
* Hostile files: every failure (truncation, flipped bytes, wrong JSON types, absurd shapes,
  a pickle renamed ``.safetensors``, missing or extra tensors) becomes one
  :class:`CheckpointError` naming the file and the problem. The manifest's sha256 of each
  file is checked *before* parsing it, and files are size-capped, so nothing is allocated
  from a declared size that the bytes on disk do not back.
* Symlinks: a file or folder of a run that resolves outside the run folder is refused, not
  followed (a shared run folder must not make the loader read ``/etc/...`` or another user's
  files, nor a device behind a link).
* The saved config meets the same checks and size caps as the flags
  (:meth:`gumbel_ac.config.Config.check`), before anything is built from it: an edited
  ``num_envs`` or ``env_kwargs`` is refused, not allocated.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.budget import check_bytes_fit
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.distributions import ActionSpec, UnsupportedSpaceError
from gumbel_ac.encoders import rescale_coefficients
from gumbel_ac.fsutil import fsync_dir
from gumbel_ac.fsutil import fsync_write as _fsync_write
from gumbel_ac.fsutil import write_json_atomic as write_json_atomic

# ``_fsync_write`` is looked up in this module at call time, so tests can patch it to simulate a
# full disk. ``write_json_atomic`` is re-exported (the ``as`` form marks it so, PEP 484) for the
# trainer and the SB3 export, which import it from here.

FORMAT = "gumbel_ac.checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
TRAINING_FILE = "training.safetensors"
META_FILE = "meta.json"
#: Manifests larger than this are refused unread (a real one is a few KB).
MAX_META_BYTES = 1 << 20
#: Tensor files larger than this are refused unread (override for huge replay buffers).
MAX_TENSOR_FILE_BYTES = int(os.environ.get("GUMBEL_AC_MAX_CHECKPOINT_BYTES", str(8 << 30)))
_STEP_DIR = re.compile(r"^step_(\d{9,})$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


@dataclass
class LoadedRun:
    """What :func:`load_run` returns."""

    agent: Agent
    config: Config
    meta: dict[str, Any]
    path: Path

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _versions() -> dict[str, str]:
    import gymnasium

    import gumbel_ac

    return {"torch": torch.__version__, "gymnasium": gymnasium.__version__, "gumbel_ac": gumbel_ac.__version__}


def save_checkpoint(
    run_dir: str | Path,
    *,
    step: int,
    agent: Agent,
    config: Config,
    spaces: dict[str, Any],
    training_state: dict[str, torch.Tensor] | None = None,
    training_meta: dict[str, Any] | None = None,
    keep: int = 3,
    name: str | None = None,
) -> Path:
    """Write ``run_dir/checkpoints/step_<step>`` atomically and prune to the newest ``keep``;
    with ``name`` (e.g. :data:`BEST_DIR`), write ``run_dir/<name>`` instead, replacing the
    previous one atomically, and prune nothing.

    Returns the checkpoint folder. Raises ``OSError`` if the disk refuses; the previous
    checkpoints are untouched in that case (the temp folder is removed).
    """
    root = Path(run_dir) if name else Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    stem = name or f"step_{step:09d}"
    final = root / stem
    tmp = root / f".{stem}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        files: dict[str, str] = {}
        model_bytes = st_save({k: v.detach().cpu().contiguous() for k, v in agent.state_dict().items()})
        _fsync_write(tmp / MODEL_FILE, model_bytes)
        files[MODEL_FILE] = _sha256(model_bytes)
        if training_state:
            # Copies: env/replay tensors may be views sharing storage, which safetensors refuses.
            train_bytes = st_save({k: v.detach().to("cpu", copy=True).contiguous() for k, v in training_state.items()})
            _fsync_write(tmp / TRAINING_FILE, train_bytes)
            files[TRAINING_FILE] = _sha256(train_bytes)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "step": int(step),
            "time": time.time(),
            "obs_dim": int(agent.obs_dim),
            "encoder": {
                "kind": agent.encoder_kind,
                "image_shape": list(agent.image_shape) if agent.image_shape is not None else None,
                "pixel_scale": agent.pixel_scale,
                "shared": agent.share_encoder,
                "obs_bounds": _bounds_to_json(agent.obs_bounds),
            },
            "action_nvec": [int(n) for n in agent.spec.nvec],
            "spaces": spaces,
            "config": config.to_dict(),
            "versions": _versions(),
            "files": files,
            "training": training_meta or {},
        }
        _fsync_write(tmp / META_FILE, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        old = None
        if final.exists():  # written again: move the old one aside, never delete first
            old = root / f".{stem}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if name is None:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


#: The run folder's copy of the policy that scored best in a periodic evaluation
#: (SB3's ``EvalCallback(best_model_save_path=...)`` habit); weights only, never resumed from.
BEST_DIR = "best"


def select_checkpoint(run: str | Path, which: str) -> Path:
    """The checkpoint folder ``which`` names in a run folder: ``last`` (the newest, what resume
    continues), ``best`` (:data:`BEST_DIR`) or ``step_N``; a clear :class:`CheckpointError`
    otherwise."""
    run_dir = Path(run)
    if which == "last":
        return resolve_checkpoint(run_dir)
    if (run_dir / META_FILE).is_file():
        raise CheckpointError(f"{run_dir} is one checkpoint folder; --checkpoint {which} needs the run folder")
    if which == BEST_DIR:
        best = run_dir / BEST_DIR
        if not (best / META_FILE).is_file():
            raise CheckpointError(
                f"{run_dir} has no best/ checkpoint: it is written at periodic evaluations (--eval-every > 0); "
                "use --checkpoint last"
            )
        return best
    match = re.fullmatch(r"step_(\d+)", which)
    if match is None:
        raise CheckpointError(f"--checkpoint must be last, best or step_N (e.g. step_20000), got {which!r}")
    found = [c for c in list_checkpoints(run_dir) if int(c.name.split("_")[1]) == int(match.group(1))]
    if not found:
        kept = ", ".join(c.name for c in list_checkpoints(run_dir)) or "none"
        raise CheckpointError(f"{run_dir} has no checkpoint at step {int(match.group(1))} (kept: {kept})")
    return found[0]


def clean_stale_temp(run_dir: str | Path) -> list[Path]:
    """Remove ``.step_*.tmp-PID`` / ``.old-PID`` folders that a killed writer left behind.

    Called when a run is resumed (only one process may write a run folder at a time).
    Returns what was removed.
    """
    root = Path(run_dir) / "checkpoints"
    removed = []
    if root.is_dir():
        for child in root.iterdir():
            if re.match(r"^\.step_\d+\.(tmp|old)-\d+$", child.name):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def run_dir_of(path: str | Path) -> Path:
    """The run folder of a run folder or of one of its checkpoint folders."""
    p = Path(path)
    if (p / META_FILE).is_file() and p.parent.name == "checkpoints":
        return p.parent.parent
    return p


def read_training_state(ckpt: Path, meta: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The resume state of a checkpoint: ``training.safetensors`` tensors and the manifest's
    ``training`` object. Shapes and meanings are checked by the trainer, which owns them."""
    if TRAINING_FILE not in meta["files"]:
        raise CheckpointError(
            f"{ckpt / META_FILE}: no {TRAINING_FILE}: the checkpoint holds weights only, it cannot be resumed"
        )
    training = meta.get("training")
    if not isinstance(training, dict) or not training:
        raise CheckpointError(f"{ckpt / META_FILE}: field 'training' is missing; the checkpoint cannot be resumed")
    return read_tensors(ckpt, TRAINING_FILE, meta), training


def resume_candidates(path: str | Path) -> tuple[Path, list[Path]]:
    """``(run folder, checkpoints to try newest first)`` for ``--resume PATH``.

    A run folder offers all its complete checkpoints, newest first (the resumer falls back to
    an older one when the newest is corrupt); a checkpoint folder offers only itself.
    """
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such run folder (expected runs/<name> of an earlier run)")
    run_dir = run_dir_of(p)
    ckpts = [p] if (p / META_FILE).is_file() else list(reversed(list_checkpoints(run_dir)))
    if not ckpts:
        raise CheckpointError(f"{p}: holds no complete checkpoint to resume from (no checkpoints/step_*/meta.json)")
    return run_dir, ckpts


def saved_config(path: str | Path) -> Config:
    """The config stored in the newest readable manifest of a run (the resumed run's base).

    It must pass :meth:`Config.check` -- the flags' own checks and caps -- or that checkpoint
    is skipped with the reason, as a corrupt one is.
    """
    _, ckpts = resume_candidates(path)
    problems = []
    for ckpt in ckpts:
        try:
            meta = read_meta(ckpt)
            config = Config.from_dict(meta["config"])
            config.check()
            return config
        except CheckpointError as exc:
            problems.append(str(exc))
        except (ConfigError, TypeError) as exc:
            problems.append(f"{ckpt / META_FILE}: invalid config: {exc}")
    raise CheckpointError("no readable checkpoint to resume from: " + "; ".join(problems))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run (with a manifest), oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / META_FILE).is_file():
            found.append((int(match.group(1)), child))
    return [p for _, p in sorted(found)]


def _run_root(ckpt_dir: Path) -> Path:
    """The folder a checkpoint's files must stay inside: its run folder (``<run>/checkpoints/
    step_X``), or the checkpoint folder itself when it stands alone."""
    return ckpt_dir.parent.parent if ckpt_dir.parent.name == "checkpoints" else ckpt_dir


def _check_inside(path: Path, root: Path) -> None:
    """Refuse ``path`` if it, or a folder on the way, is a symlink resolving outside ``root``.

    The root itself may be a link (the user named it); what is inside must stay inside.
    """
    try:
        real, top = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot resolve the path ({exc})") from None
    if real != top and top not in real.parents:
        raise CheckpointError(
            f"{path}: is a symlink (or inside one) pointing outside the run folder {root}, to {real}; the loader does "
            "not follow links out of a run: copy the file into the folder instead"
        )


def _read_capped(path: Path, cap: int, root: Path | None = None) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes, else a :class:`CheckpointError`.

    Refuses anything but a regular file (a FIFO would block forever, ``/dev/zero`` behind a
    symlink would never end) and never reads more than ``cap + 1`` bytes, even if the file
    grows between ``stat`` and ``read``. With ``root``, a path resolving outside it is refused
    (:func:`_check_inside`).
    """
    if root is not None:
        _check_inside(path, root)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file is missing") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file")
    if st.st_size > cap:
        raise CheckpointError(f"{path}: file is {st.st_size} bytes, more than the {cap}-byte limit")
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap + 1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > cap:
        raise CheckpointError(f"{path}: file is more than the {cap}-byte limit")
    return data


def read_meta(ckpt_dir: Path) -> dict[str, Any]:
    """Parse and type-check a manifest; every problem is a :class:`CheckpointError`."""
    path = ckpt_dir / META_FILE
    raw = _read_capped(path, MAX_META_BYTES, _run_root(ckpt_dir))
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and ints over 4300 digits
        raise CheckpointError(f"{path}: not valid JSON ({exc}); the checkpoint is corrupt") from None
    except RecursionError:  # e.g. 100k nested brackets: json's C parser recurses
        raise CheckpointError(f"{path}: JSON nested too deeply; the checkpoint is corrupt") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gumbel_ac checkpoint (format={meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {meta.get('format_version')!r} is not supported "
            f"(this gumbel_ac reads version {FORMAT_VERSION})"
        )
    checks: list[tuple[str, type | tuple[type, ...]]] = [
        ("step", int),
        ("obs_dim", int),
        ("action_nvec", list),
        ("config", dict),
        ("files", dict),
        ("spaces", dict),
    ]
    for key, typ in checks:
        value = meta.get(key)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise CheckpointError(f"{path}: field {key!r} is missing or has the wrong type")
    if meta["step"] < 0 or not (0 < meta["obs_dim"] <= 1 << 24):
        raise CheckpointError(f"{path}: step or obs_dim out of range")
    nvec = meta["action_nvec"]
    if (
        not nvec
        or len(nvec) > 64
        or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1 << 16 for n in nvec)
    ):
        raise CheckpointError(f"{path}: action_nvec must be a list of positive integers")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta["files"].items()):
        raise CheckpointError(f"{path}: field 'files' must map file names to sha256 strings")
    if MODEL_FILE not in meta["files"]:
        raise CheckpointError(f"{path}: the manifest lists no {MODEL_FILE}")
    if not isinstance(meta.get("training", {}), dict):
        raise CheckpointError(f"{path}: field 'training' must be a JSON object")
    meta["encoder"] = _check_encoder_meta(path, meta)
    return meta


def _bounds_to_json(bounds: tuple[list[float], list[float]] | None) -> dict[str, list[float | None]] | None:
    """An agent's rescaling bounds for the manifest: ``null`` for an infinite bound (JSON has none)."""
    if bounds is None:
        return None
    low, high = bounds
    return {
        "low": [v if math.isfinite(v) else None for v in low],
        "high": [v if math.isfinite(v) else None for v in high],
    }


def _bounds_from_json(path: Path, value: Any, obs_dim: int) -> tuple[list[float], list[float]] | None:
    """The manifest's ``obs_bounds`` (absent in checkpoints from before rescaling existed: none)
    back as ``(low, high)`` floats, checked as the encoder checks them (:func:`rescale_coefficients`)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"low", "high"}:
        raise CheckpointError(f"{path}: encoder obs_bounds must be null or {{'low': [...], 'high': [...]}}")
    out: list[list[float]] = []
    for name, infinity in (("low", -math.inf), ("high", math.inf)):
        values = value[name]
        if not isinstance(values, list) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
        ):
            raise CheckpointError(f"{path}: encoder obs_bounds.{name} must be a list of numbers or nulls")
        out.append([infinity if v is None else float(v) for v in values])
    try:
        rescale_coefficients((out[0], out[1]), obs_dim)
    except ValueError as exc:
        raise CheckpointError(f"{path}: encoder obs_bounds: {exc}") from None
    return out[0], out[1]


def _check_encoder_meta(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``encoder`` entry, checked. Checkpoints from before encoders existed have
    none: their agents are MLPs on float rows; image observations were rows of scaled floats
    then, which today's uint8 rows do not reproduce, so those are refused."""
    enc = meta.get("encoder")
    if enc is None:
        obs = meta["spaces"].get("observation_space", {})
        if obs.get("type") == "Box" and len(obs.get("shape", [])) == 3 and obs.get("dtype") in ("uint8", "bool"):
            raise CheckpointError(
                f"{path}: this checkpoint was trained on image observations before image encoders "
                "existed (its rows were float pixels); retrain it with this version"
            )
        return {"kind": "mlp", "image_shape": None, "pixel_scale": 1.0, "shared": False, "obs_bounds": None}
    if not isinstance(enc, dict) or enc.get("kind") not in ("mlp", "nature", "minatar"):
        raise CheckpointError(f"{path}: field 'encoder' must name an encoder (mlp, nature or minatar)")
    shape, scale = enc.get("image_shape"), enc.get("pixel_scale")
    if shape is not None and (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1 << 12 for n in shape)
        or math.prod(shape) != meta["obs_dim"]
    ):
        raise CheckpointError(f"{path}: encoder image_shape must be [C, H, W] with C*H*W == obs_dim")
    if enc["kind"] != "mlp" and shape is None:
        raise CheckpointError(f"{path}: encoder {enc['kind']!r} needs an image_shape")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (0.0 < scale <= 1.0):
        raise CheckpointError(f"{path}: encoder pixel_scale must be a number in (0, 1]")
    shared = enc.get("shared", False)
    if not isinstance(shared, bool):
        raise CheckpointError(f"{path}: encoder shared must be true or false")
    bounds = _bounds_from_json(path, enc.get("obs_bounds"), meta["obs_dim"])
    if bounds is not None and enc["kind"] != "mlp":
        raise CheckpointError(f"{path}: encoder obs_bounds belong to the mlp encoder, not {enc['kind']!r}")
    return {
        "kind": enc["kind"],
        "image_shape": shape,
        "pixel_scale": float(scale),
        "shared": shared,
        "obs_bounds": bounds,
    }


def read_tensors(ckpt_dir: Path, name: str, meta: dict[str, Any], cap: int | None = None) -> dict[str, torch.Tensor]:
    """Read one safetensors file listed in the manifest, after checking its sha256.

    ``cap`` bounds the file size (default :data:`MAX_TENSOR_FILE_BYTES`); the tensors built
    are never larger than the file, since safetensors refuses headers whose declared shapes
    the data section does not back.
    """
    if name not in meta["files"]:
        raise CheckpointError(f"{ckpt_dir / META_FILE}: the manifest lists no {name}")
    path = ckpt_dir / name
    data = _read_capped(
        path, MAX_TENSOR_FILE_BYTES if cap is None else min(cap, MAX_TENSOR_FILE_BYTES), _run_root(ckpt_dir)
    )
    if _sha256(data) != meta["files"][name]:
        raise CheckpointError(f"{path}: checksum mismatch: the file is corrupt or was modified")
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError, OverflowError, TypeError, KeyError, MemoryError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({type(exc).__name__}: {exc})") from None


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder -> its newest complete checkpoint; a checkpoint folder -> itself."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file or directory (expected a run folder like runs/<name>)")
    if p.is_file():
        raise CheckpointError(f"{p}: is a file; pass the run folder (runs/<name>) or a checkpoint folder")
    if (p / META_FILE).is_file():
        return p
    ckpts = list_checkpoints(p)
    if not ckpts:
        raise CheckpointError(f"{p}: holds no complete checkpoint (no checkpoints/step_*/meta.json)")
    return ckpts[-1]


def _build_agent(meta: dict[str, Any], config: Config, spec: ActionSpec) -> Agent:
    alpha = config.alpha if math.isfinite(config.alpha) else 0.05  # log_alpha is overwritten on load
    return make_agent(
        obs_dim=meta["obs_dim"],
        spec=spec,
        hidden_sizes=config.hidden_sizes,
        alpha=max(alpha, 1e-8),
        target_entropy_ratio=config.target_entropy_ratio if math.isfinite(config.target_entropy_ratio) else 0.0,
        encoder=meta["encoder"]["kind"],
        image_shape=meta["encoder"]["image_shape"],
        pixel_scale=meta["encoder"]["pixel_scale"],
        share_encoder=meta["encoder"]["shared"],
        critic_layer_norm=config.critic_layer_norm,
        num_critics=config.n_critics,
        obs_bounds=meta["encoder"]["obs_bounds"],
        actor_average=config.actor_average_rate is not None,
    )


def load_run(path: str | Path, device: torch.device | str = "cpu") -> LoadedRun:
    """Load the agent of a run or checkpoint folder, validating everything on the way.

    The saved config passes :meth:`Config.check` (the flags' checks and caps, env_kwargs
    included) and the agent must fit the memory free on ``device``, both before anything is
    allocated from them.
    """
    ckpt = resolve_checkpoint(path)
    meta = read_meta(ckpt)
    try:
        config = Config.from_dict(meta["config"])
        config.check()
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{ckpt / META_FILE}: invalid config: {exc}") from None
    try:
        spec = ActionSpec(tuple(meta["action_nvec"]))
    except UnsupportedSpaceError as exc:
        raise CheckpointError(f"{ckpt / META_FILE}: {exc}") from None
    if not (1 <= len(config.hidden_sizes) <= 16 and all(1 <= h <= 1 << 16 for h in config.hidden_sizes)):
        raise CheckpointError(f"{ckpt / META_FILE}: hidden_sizes {config.hidden_sizes} out of range")
    # Build the architecture on the meta device first (no memory): the manifest's sizes could
    # describe a terabyte network. Its exact byte count then caps how much of model.safetensors
    # we read, and only after the file's tensors match it is the real agent allocated.
    with torch.device("meta"):
        skeleton = _build_agent(meta, config, spec)
    expected = {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}
    tensor_bytes = sum(v.numel() * v.element_size() for v in skeleton.state_dict().values())
    # The file's bytes and the agent built from them are both in memory for a moment.
    try:
        check_bytes_fit(2 * tensor_bytes, device, f"the agent of {ckpt}", "evaluate on a device with more free memory")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    tensors = read_tensors(ckpt, MODEL_FILE, meta, cap=tensor_bytes + MAX_META_BYTES)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{ckpt / MODEL_FILE}: tensors do not match the architecture in meta.json "
            f"(missing: {missing[:5]}, unexpected: {extra[:5]})"
        )
    for key, (shape, dtype) in expected.items():
        got = tensors[key]
        if tuple(got.shape) != shape or got.dtype != dtype:
            raise CheckpointError(
                f"{ckpt / MODEL_FILE}: tensor {key!r} has shape {tuple(got.shape)} {got.dtype}, "
                f"expected {shape} {dtype}"
            )
        if not torch.isfinite(got).all() and key != "log_alpha":
            raise CheckpointError(f"{ckpt / MODEL_FILE}: tensor {key!r} holds NaN or inf")
    if not (tensors["log_alpha"] < math.inf).all() or torch.isnan(tensors["log_alpha"]).any():
        raise CheckpointError(f"{ckpt / MODEL_FILE}: tensor 'log_alpha' is NaN or +inf")
    agent = _build_agent(meta, config, spec)
    agent.load_state_dict(tensors)
    agent.to(device)
    agent.eval()
    return LoadedRun(agent=agent, config=config, meta=meta, path=ckpt)


def check_spaces_match(meta: dict[str, Any], spaces: dict[str, Any], env_id: str) -> None:
    """Refuse to run a checkpoint on an env whose spaces differ from the training env's."""
    saved = meta.get("spaces", {})
    for key in ("observation_space", "action_space"):
        if saved.get(key) != spaces.get(key):
            raise CheckpointError(
                f"checkpoint {key.replace('_', ' ')} {saved.get(key)} does not match {env_id}'s "
                f"{spaces.get(key)}; evaluate on the env it was trained on (--env)"
            )
