"""Memory budget: estimate what a run allocates and refuse one that cannot fit, before allocating.

Why: a size that is merely *valid* (``--hidden-sizes 65536 65536``, ``--num-envs 16777216``, a
huge ``--buffer-size``) used to be allocated first and fail later -- a ``RuntimeError`` deep in
set-up, or, with Linux overcommit, the process OOM-killed with no message at all. The estimate
below adds up the parts that scale with the config (networks with their optimizer state, replay,
env state, the update's activations) and compares the sum, with headroom, to the device's
*free* memory, so a run that cannot fit stops at start with one line naming the largest part
and the flag that lowers it.

The numbers are estimates, meant to be within a small factor of the truth (they count the
tensors this package allocates, not allocator fragmentation or the CUDA context); the headroom
(:data:`HEADROOM`) absorbs the rest. The checks are machine-dependent by nature, so they are
NOT part of the checks a saved config must pass to be loaded (a run trained on a large GPU must
still evaluate on a laptop); they run where memory is about to be used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gumbel_ac.config import Config, ConfigError
from gumbel_ac.encoders import conv_activation_elems, make_encoder

#: Use at most this fraction of the free memory: the estimate leaves out the allocator's
#: rounding, fragmentation, the CUDA context and the Python objects around the tensors.
HEADROOM = 0.8
#: Bytes per env an env keeps beyond its observations: pre-drawn reset states (a torch env
#: draws ``reset_block=64`` steps of start states of up to 8 float64 words: 64*8*8 = 4 KiB), the
#: episode statistics, the done masks; a Gymnasium numpy env's per-env state is of this order.
ENV_BYTES_PER_ENV = 4096
#: Observation-sized float32 tensors alive per env during a vector step (obs, next obs, final
#: obs, the encoded copies, the host copy of a numpy env's batch).
ENV_OBS_COPIES = 8
#: Float32 copies training keeps of each actor parameter: weights, grad, 2 Adam moments.
ACTOR_COPIES = 4
#: ... and of each parameter of ONE critic of the ensemble (``n_critics``, two by default): its
#: weights, grad, 2 Adam moments and the Polyak target.
CRITIC_COPIES = 5
#: Float32 activations kept per batch row and hidden unit for the backward pass (actor, twin
#: critics on the batch and on the next batch, their gradients).
ACTIVATION_COPIES = 12


@dataclass(frozen=True)
class Estimate:
    """Estimated bytes of each part of a run (see the module docstring)."""

    networks: int
    replay: int
    envs: int
    update: int

    @property
    def total(self) -> int:
        """All parts together."""
        return self.networks + self.replay + self.envs + self.update

    def largest(self) -> tuple[str, int]:
        """The part that needs the most (its name and bytes), for the error message."""
        parts = {"networks": self.networks, "replay": self.replay, "envs": self.envs, "update": self.update}
        name = max(parts, key=lambda k: parts[k])
        return name, parts[name]


#: The flag that lowers each part, named in the error message.
_FIX = {
    "networks": "lower --hidden-sizes",
    "replay": "lower --buffer-size",
    "envs": "lower --num-envs (or the env's size in --env-kwargs)",
    "update": "lower --batch-size (or --rao-samples for gumbel-rao)",
}


def replay_row_bytes(obs_dim: int, num_heads: int, obs_itemsize: int = 4, obs_copies: int = 2) -> int:
    """Bytes of one replay transition: obs and next obs (``obs_itemsize`` bytes a value: 4 for
    float32 features, 1 for uint8 pixels; ``obs_copies=1`` when the next observation is the
    next row's, :class:`~gumbel_ac.buffer.SharedObsReplayBuffer`), int64 actions, reward, done."""
    return obs_copies * obs_dim * obs_itemsize + num_heads * 8 + 4 + 1


def _mlp_params(n_in: int, hidden_sizes: Sequence[int], n_out: int) -> int:
    widths = [n_in, *hidden_sizes, n_out]
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


def network_bytes(obs_dim: int, action_nvec: Sequence[int], hidden_sizes: Sequence[int], n_critics: int = 2) -> int:
    """Bytes of the networks and their training state (float32; see :data:`ACTOR_COPIES`),
    with ``n_critics`` critics.

    The actor maps ``obs_dim`` to ``sum(action_nvec)`` logits; a critic maps the observation and
    the one-hot action (``obs_dim + sum(action_nvec)``) to one value (gumbel_ac/networks.py).
    """
    k = int(sum(action_nvec))
    actor = _mlp_params(obs_dim, hidden_sizes, k)
    critic = _mlp_params(obs_dim + k, hidden_sizes, 1)
    return 4 * (ACTOR_COPIES * actor + n_critics * CRITIC_COPIES * critic)


def env_bytes(num_envs: int, obs_dim: int) -> int:
    """Estimated bytes of ``num_envs`` envs with ``obs_dim``-wide observations."""
    return num_envs * (ENV_BYTES_PER_ENV + ENV_OBS_COPIES * obs_dim * 4)


def _encoder_sizes(kind: str, obs_dim: int, image_shape: Sequence[int] | None) -> tuple[int, int, int]:
    """``(parameters, output features, conv activations per sample)`` of one encoder."""
    if kind == "mlp" or image_shape is None:
        return 0, obs_dim, 0
    encoder = make_encoder(kind, obs_dim, image_shape, 1.0)  # type: ignore[arg-type]
    params = sum(p.numel() for p in encoder.parameters())
    return params, int(encoder.out_dim), conv_activation_elems(encoder)


def estimate(
    config: Config,
    obs_dim: int,
    action_nvec: Sequence[int],
    *,
    obs_itemsize: int = 4,
    encoder: tuple[str, Sequence[int] | None] = ("mlp", None),
) -> Estimate:
    """Estimated bytes of training ``config`` (sizes resolved: :meth:`Config.validate`'s copy)
    on an env with ``obs_dim``-wide observations (``obs_itemsize`` bytes a value) and action
    heads of ``action_nvec`` choices; ``encoder`` is the encoder kind and the image shape."""
    k = int(sum(action_nvec))
    enc_params, features, conv_acts = _encoder_sizes(encoder[0], obs_dim, encoder[1])
    widest = max([features + k, *config.hidden_sizes])
    update = config.batch_size * widest * 4 * ACTIVATION_COPIES * len(config.hidden_sizes)
    # Convolutions: the actor's (obs and next obs), the critic's and the target's, with grads.
    update += config.batch_size * conv_acts * 4 * ACTIVATION_COPIES * 4
    if config.estimator == "gumbel-rao":  # rao_samples Gumbel draws per action per row (x2: noise + soft sample)
        update += config.batch_size * k * config.rao_samples * 4 * 2
    return Estimate(
        networks=network_bytes(features, action_nvec, config.hidden_sizes, config.n_critics)
        + 4 * (ACTOR_COPIES + CRITIC_COPIES) * enc_params,
        # Image rows are stored once (the trainer's SharedObsReplayBuffer).
        replay=config.buffer_size
        * replay_row_bytes(obs_dim, len(action_nvec), obs_itemsize, obs_copies=1 if encoder[1] is not None else 2),
        envs=env_bytes(config.num_envs, obs_dim) + env_bytes(config.eval_episodes, obs_dim),
        update=update,
    )


def free_bytes(device: torch.device | str) -> int | None:
    """Memory free for new tensors on ``device`` (None when it cannot be read).

    CUDA: the driver's free count (``torch.cuda.mem_get_info``). CPU: ``MemAvailable`` from
    ``/proc/meminfo`` (what the kernel could give without swapping), else the physical size.
    """
    device = torch.device(device)
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_bytes_fit(need: int, device: torch.device | str, what: str, fix: str) -> None:
    """Raise one :class:`ConfigError` if ``need`` bytes exceed :data:`HEADROOM` of the free memory."""
    have = free_bytes(device)
    if have is not None and need > HEADROOM * have:
        raise ConfigError(
            f"{what} needs about {_gib(need)} but the {torch.device(device).type} device has {_gib(have)} free "
            f"(a run may use {HEADROOM:.0%} of it); {fix}"
        )


def check_fits(
    config: Config,
    obs_dim: int,
    action_nvec: Sequence[int],
    device: torch.device | str,
    *,
    obs_itemsize: int = 4,
    encoder: tuple[str, Sequence[int] | None] = ("mlp", None),
) -> Estimate:
    """Refuse, with one :class:`ConfigError` naming the largest part and its flag, a run whose
    estimated memory (:func:`estimate`) exceeds :data:`HEADROOM` of ``device``'s free memory.

    Call it after the env's spaces are known and before the envs, networks and replay are
    allocated. Returns the estimate.
    """
    est = estimate(config, obs_dim, action_nvec, obs_itemsize=obs_itemsize, encoder=encoder)
    have = free_bytes(device)
    if have is not None and est.total > HEADROOM * have:
        name, part = est.largest()
        setting = {
            "networks": f"hidden_sizes={list(config.hidden_sizes)}",
            "replay": f"buffer_size={config.buffer_size}",
            "envs": f"num_envs={config.num_envs}",
            "update": f"batch_size={config.batch_size}",
        }[name]
        raise ConfigError(
            f"this run needs about {_gib(est.total)}, most of it for the {name} ({setting}: {_gib(part)}; "
            f"networks {_gib(est.networks)}, "
            f"replay {_gib(est.replay)}, envs {_gib(est.envs)}, update {_gib(est.update)}) but the "
            f"{torch.device(device).type} device has {_gib(have)} free (a run may use {HEADROOM:.0%} of it); "
            f"{_FIX[name]}"
        )
    return est


def check_config_fits_host(config: Config) -> None:
    """The start-up check :meth:`Config.validate` runs before the env exists: :func:`check_fits`
    with the smallest possible env (one observation number, one head of two actions), for runs on
    the CPU. What it refuses cannot fit whatever the env; the trainer repeats the check with the
    env's real sizes. CUDA runs are left to that check: reading a GPU's free memory here would
    create a CUDA context before torchrun picks each rank's device.
    """
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return
    check_fits(config, obs_dim=1, action_nvec=(2,), device="cpu")


__all__ = [
    "HEADROOM",
    "Estimate",
    "check_bytes_fit",
    "check_config_fits_host",
    "check_fits",
    "env_bytes",
    "estimate",
    "free_bytes",
    "network_bytes",
]
