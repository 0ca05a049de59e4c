"""Observation encoders: what the actor and the critics put in front of their MLPs.

Observations reach the agent as flat rows ``[B, D]`` (the env adapters' ``ObsEncoder``,
:mod:`gumbel_ac.vector`): float features for vector observations, and for images the frame
in channel-first order ``C x H x W`` flattened, kept in its storage dtype (``uint8``) so that the
replay buffer holds one byte per pixel (a 100k-transition replay of 4x84x84 Atari frames is
2 x 2.8 GB in uint8, 4x that in float32). The encoder turns a row into float features:

* ``mlp`` -- :class:`FlatEncoder`: the row itself as float (uint8 pixels times their scale,
  1/255 for 0..255 images as SB3's ``preprocess_obs`` does), optionally rescaled from the
  observation box to ``[-1, 1]`` (``Config.obs_rescale``); no parameters.
* ``nature`` -- :class:`NatureEncoder`: the DQN convolution stack of Mnih et al. 2015 (Nature
  518:529; 32 8x8/4, 64 4x4/2, 64 3x3/1, then a 512-unit linear layer), SB3's ``NatureCNN`` and
  CleanRL's ``sac_atari`` encoder. For Atari-sized frames (both sides >= 36 pixels).
* ``minatar`` -- :class:`MinAtarEncoder`: the MinAtar paper's network (Young & Tian 2019,
  arXiv:1903.03176: one 16-channel 3x3 convolution, stride 1, over the 10x10xC grid), for small
  grids. Its 1,024 features go straight to the MLP, whose first hidden layer plays the paper's
  128-unit linear layer.

``auto`` (the default) picks ``nature`` or ``minatar`` for image observations by their size and
``mlp`` for everything else (:func:`resolve_kind`). By default the actor and the critics have
separate encoders (SB3's default for its off-policy algorithms, ``share_features_extractor=False``;
CleanRL's ``sac_atari`` too), each trained by its own loss; ``share_encoder`` gives the actor a
detached view of the critic's (:class:`DetachedEncoder`, SAC-AE/DrQ). The two twin critics share
one encoder, and the target critics have their own Polyak-averaged copy.

Shape legend: ``B`` batch, ``D`` flat observation size, ``F`` encoder features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn

EncoderKind = Literal["mlp", "nature", "minatar"]

#: Frames with both sides at least this large use the Nature stack (its three convolutions
#: shrink a side by 8x-ish: 36 is the smallest side that leaves a 1x1 map).
NATURE_MIN_SIDE = 36


def out_dim(encoder: nn.Module) -> int:
    """The number of features an encoder emits (its ``out_dim``)."""
    value = getattr(encoder, "out_dim", None)
    if not isinstance(value, int):
        raise TypeError(f"{type(encoder).__name__} has no integer out_dim")
    return value


def resolve_kind(requested: str, image_shape: Sequence[int] | None) -> EncoderKind:
    """The encoder for ``requested`` ("auto", "mlp", "nature" or "minatar") on observations of
    ``image_shape`` (``(C, H, W)``, or None for vector observations); ``ValueError`` when a
    convolutional encoder is asked for without images or on frames too small for it."""
    if requested == "auto":
        if image_shape is None:
            return "mlp"
        return "nature" if min(image_shape[1:]) >= NATURE_MIN_SIDE else "minatar"
    if requested == "mlp":
        return "mlp"
    if requested not in ("nature", "minatar"):
        raise ValueError(f"encoder must be 'auto', 'mlp', 'nature' or 'minatar', got {requested!r}")
    if image_shape is None:
        raise ValueError(
            f"encoder {requested!r} needs image observations (a 3-D uint8 or bool Box); "
            "this env's observations are vectors: use --encoder auto or mlp"
        )
    if requested == "nature" and min(image_shape[1:]) < NATURE_MIN_SIDE:
        raise ValueError(
            f"encoder 'nature' needs frames of at least {NATURE_MIN_SIDE}x{NATURE_MIN_SIDE}, "
            f"got {tuple(image_shape[1:])}: use --encoder minatar (or auto)"
        )
    if requested == "minatar" and min(image_shape[1:]) < 3:
        raise ValueError(f"encoder 'minatar' needs frames of at least 3x3, got {tuple(image_shape[1:])}")
    return requested  # type: ignore[return-value]


ObsBounds = tuple[Sequence[float], Sequence[float]]
"""``(low, high)`` of each value of a flat observation row (``math.inf`` where unbounded)."""


def rescale_coefficients(bounds: ObsBounds, obs_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mid, inv_half_width)`` of the affine map taking ``[low, high]`` to ``[-1, 1]`` per
    dimension: ``(x - mid) * inv_half_width`` (Gymnasium's ``RescaleObservation`` with
    ``min_obs=-1, max_obs=1``). An unbounded dimension (an infinite bound) keeps its value
    (``mid = 0``, factor 1); a constant one (``low == high``) maps to 0. ``ValueError`` for
    bounds of the wrong size, NaN bounds, ``low > high`` or no finite dimension at all."""
    # On the CPU explicitly: the memory budget builds networks under a "meta" default device.
    low = torch.as_tensor(list(bounds[0]), dtype=torch.float64, device="cpu").reshape(-1)
    high = torch.as_tensor(list(bounds[1]), dtype=torch.float64, device="cpu").reshape(-1)
    if low.numel() != obs_dim or high.numel() != obs_dim:
        raise ValueError(
            f"observation bounds must have obs_dim={obs_dim} values each, got {low.numel()} and {high.numel()}"
        )
    if bool(torch.isnan(low).any() or torch.isnan(high).any()) or bool((low > high).any()):
        raise ValueError("observation bounds must be numbers with low <= high in every dimension")
    finite = torch.isfinite(low) & torch.isfinite(high)
    if not bool(finite.any()):
        raise ValueError(
            "obs_rescale has nothing to rescale: every observation dimension is unbounded; "
            "turn it off (--no-obs-rescale) or wrap the env to bound them (gymnasium.wrappers.ClipObservation)"
        )
    width = torch.where(finite, high - low, torch.full_like(low, 2.0))  # 2 / 2: factor 1
    mid = torch.where(finite, (high + low) / 2, torch.zeros_like(low))
    inv_half = torch.where(width > 0, 2.0 / width, torch.zeros_like(width))
    return mid.to(torch.float32), inv_half.to(torch.float32)


class FlatEncoder(nn.Module):
    """``[B, D]`` -> float ``[B, D]`` (times ``scale`` for integer pixels); no parameters.

    With ``bounds`` the rows are also rescaled to ``[-1, 1]`` per dimension
    (:func:`rescale_coefficients`): MountainCar's velocity spans +-0.07 against a position
    span of 1.8, and an MLP's first layer, initialised for unit-scale inputs, then barely reads
    it. The coefficients are buffers derived from the observation space, not learnt and not in
    the ``state_dict`` (a checkpoint stores the bounds in its manifest).
    """

    mid_D: torch.Tensor
    inv_half_D: torch.Tensor

    def __init__(self, obs_dim: int, scale: float = 1.0, bounds: ObsBounds | None = None) -> None:
        super().__init__()
        self.out_dim = int(obs_dim)
        self.scale = float(scale)
        self.rescale = bounds is not None
        if bounds is not None:
            mid, inv_half = rescale_coefficients(bounds, self.out_dim)
            self.register_buffer("mid_D", mid, persistent=False)
            self.register_buffer("inv_half_D", inv_half, persistent=False)

    def forward(self, obs_BD: torch.Tensor) -> torch.Tensor:
        if obs_BD.is_floating_point():
            x = obs_BD
        else:
            x = obs_BD.float()
            x = x * self.scale if self.scale != 1.0 else x
        return (x - self.mid_D) * self.inv_half_D if self.rescale else x


def conv_output_elems(convs: nn.Sequential, image_shape: Sequence[int]) -> list[int]:
    """Elements per sample after each convolution of ``convs`` on ``(C, H, W)`` frames
    (unpadded: a side shrinks to ``(side - kernel) // stride + 1``)."""
    _, height, width = (int(s) for s in image_shape)
    sizes = []
    for layer in convs:
        if isinstance(layer, nn.Conv2d):
            (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
            height, width = (height - kh) // sh + 1, (width - kw) // sw + 1
            sizes.append(layer.out_channels * height * width)
    return sizes


class _ConvEncoder(nn.Module):
    """A convolution stack over ``[B, C*H*W]`` rows reshaped to ``[B, C, H, W]``."""

    def __init__(self, image_shape: Sequence[int], scale: float, convs: nn.Sequential, head: nn.Module) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.scale = float(scale)
        self.convs = convs
        self.head = head
        self.flat_dim = conv_output_elems(convs, self.image_shape)[-1]
        self.out_dim = self.flat_dim

    def frames(self, obs_BD: torch.Tensor) -> torch.Tensor:
        x = obs_BD.reshape(obs_BD.shape[0], *self.image_shape)
        x = x.float() if not x.is_floating_point() else x
        return x * self.scale if self.scale != 1.0 else x

    def forward(self, obs_BD: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(self.frames(obs_BD)).flatten(1))


class MinAtarEncoder(_ConvEncoder):
    """Young & Tian 2019's MinAtar network body: ``conv(C -> 16, 3x3, stride 1) -> ReLU -> flatten``
    (``16 * (H-2) * (W-2)`` features: 1,024 on the 10x10 grids)."""

    def __init__(self, image_shape: Sequence[int], scale: float = 1.0) -> None:
        convs = nn.Sequential(nn.Conv2d(int(image_shape[0]), 16, kernel_size=3, stride=1), nn.ReLU())
        super().__init__(image_shape, scale, convs, nn.Identity())


class NatureEncoder(_ConvEncoder):
    """Mnih et al. 2015's DQN body: three convolutions (32 8x8/4, 64 4x4/2, 64 3x3/1, ReLU),
    flatten, a ``features``-unit linear layer and ReLU (SB3's ``NatureCNN``)."""

    def __init__(self, image_shape: Sequence[int], scale: float = 1.0 / 255.0, features: int = 512) -> None:
        channels = int(image_shape[0])
        convs = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
        )
        flat = conv_output_elems(convs, image_shape)[-1]
        super().__init__(image_shape, scale, convs, nn.Sequential(nn.Linear(flat, features), nn.ReLU()))
        self.out_dim = int(features)


class DetachedEncoder(nn.Module):
    """Another network's encoder, read without gradient: the actor's view of the critic's
    encoder when they share one (SAC-AE, Yarats et al. 2019, arXiv:1910.01741, and DrQ,
    Kostrikov et al. 2020, arXiv:2004.13649: the encoder learns from the critic's TD loss only).

    The source is held as a plain attribute, not a submodule: its parameters stay the critic's
    alone (one copy in the flat buffers and the checkpoint; ``agent.to()`` moves it with the
    critic).
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "source", source)
        self.out_dim = out_dim(source)

    def forward(self, obs_BD: torch.Tensor) -> torch.Tensor:
        source = self.source
        assert isinstance(source, nn.Module)
        with torch.no_grad():
            return source(obs_BD)


def make_encoder(
    kind: EncoderKind,
    obs_dim: int,
    image_shape: Sequence[int] | None,
    scale: float,
    bounds: ObsBounds | None = None,
) -> FlatEncoder | MinAtarEncoder | NatureEncoder:
    """A fresh encoder of ``kind`` for rows of ``obs_dim`` values (``image_shape`` = ``(C, H, W)``
    with ``C*H*W == obs_dim`` for the convolutional kinds; ``bounds`` rescales the rows of the
    ``mlp`` kind to ``[-1, 1]``, :class:`FlatEncoder`)."""
    if kind == "mlp":
        return FlatEncoder(obs_dim, scale, bounds)
    if bounds is not None:
        raise ValueError(f"observation rescaling is for vector observations, not the {kind!r} image encoder")
    if image_shape is None or math.prod(image_shape) != obs_dim:
        raise ValueError(f"encoder {kind!r} needs an image shape whose size is obs_dim={obs_dim}, got {image_shape}")
    if kind == "minatar":
        return MinAtarEncoder(image_shape, scale)
    if kind == "nature":
        return NatureEncoder(image_shape, scale)
    raise ValueError(f"unknown encoder {kind!r}")


def conv_activation_elems(encoder: nn.Module) -> int:
    """Activations per sample of an encoder's convolutions (for the memory budget); 0 for mlp."""
    if not isinstance(encoder, _ConvEncoder):
        return 0
    return sum(conv_output_elems(encoder.convs, encoder.image_shape))


__all__ = [
    "DetachedEncoder",
    "NATURE_MIN_SIDE",
    "EncoderKind",
    "FlatEncoder",
    "MinAtarEncoder",
    "NatureEncoder",
    "ObsBounds",
    "conv_activation_elems",
    "conv_output_elems",
    "make_encoder",
    "out_dim",
    "rescale_coefficients",
    "resolve_kind",
]
