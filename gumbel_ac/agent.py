"""The agent: actor, twin critics, their targets and the entropy coefficient.

The agent holds state and acts; the losses that train it live in :mod:`gumbel_ac.losses`
(one copy, used by the native trainer and the SB3 algorithm alike).

Shape legend: ``B`` batch, ``D`` observation features, ``K`` concatenated action logits,
``H`` action heads, ``J`` joint actions.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from gumbel_ac.distributions import ActionSpec, sample_gumbel
from gumbel_ac.encoders import DetachedEncoder, EncoderKind, ObsBounds, make_encoder
from gumbel_ac.networks import Actor, TwinCritic


def reduce_critics(q_EX: torch.Tensor, how: str, members: torch.Tensor | None = None) -> torch.Tensor:
    """Critics' values ``[E, ...]`` combined: their minimum (clipped double Q, Fujimoto et al.
    2018) or, ``how="mean"``, their average (Zhou et al. 2022; REDQ's actor); over the ensemble
    members ``members`` only when given (REDQ's random subset,
    :func:`gumbel_ac.losses.draw_target_critics`)."""
    if members is not None:
        q_EX = q_EX.index_select(0, members)
    return q_EX.mean(dim=0) if how == "mean" else q_EX.amin(dim=0)


class CriticObjective:
    """``f(a) = min_i Q_i(s, a)`` at fixed states, with the critic's weights detached.

    This is the estimators' :class:`~gumbel_ac.estimators.Objective`: the actor's gradient
    flows through the action into the policy, never into the critic. ``enumerable`` says
    whether :meth:`all` may be used (the joint action set is small enough to enumerate); the
    estimators that need every action's value sample instead, or refuse, when it is False.
    The states are encoded once (``features``, when the caller already has them detached, or at
    the first call), however many actions an estimator evaluates.
    """

    def __init__(
        self,
        critic: TwinCritic,
        obs_BD: torch.Tensor,
        spec: ActionSpec,
        *,
        enumerable: bool = True,
        features: torch.Tensor | None = None,
        reduce: str = "min",
    ) -> None:
        self.critic, self.obs_BD, self.spec = critic, obs_BD, spec
        self.enumerable = enumerable
        #: How the critics combine: their minimum, or (``"mean"``, REDQ's actor) their average.
        self.reduce = reduce
        self._feat_BF = features

    @property
    def features(self) -> torch.Tensor:
        """The critic encoder's features of the states ``[B, F]`` (no graph)."""
        if self._feat_BF is None:
            self._feat_BF = self.critic.encode(self.obs_BD, detach=True)
        return self._feat_BF

    def at(self, action_BK: torch.Tensor) -> torch.Tensor:
        return reduce_critics(self.critic.q(self.features, action_BK, detach_params=True), self.reduce)

    def all(self) -> torch.Tensor:
        if not self.enumerable:
            raise ValueError(f"the {self.spec.num_joint} joint actions are not enumerated (above the limit)")
        onehot_JK = self.spec.joint_onehot_on(self.obs_BD.device)
        return reduce_critics(self.critic.q_all(self.features, onehot_JK, detach_params=True), self.reduce)


class Agent(nn.Module):
    """Actor-critic for factorised categorical actions.

    Args:
        obs_dim: flat observation size ``D``.
        spec: the action heads (:class:`ActionSpec`).
        hidden_sizes: widths of the hidden layers of the actor and each critic.
        alpha: initial entropy coefficient (> 0 when it is tuned in log space).
        target_entropy: entropy the tuned alpha aims for (nats, summed over heads).
        encoder: the observation encoder of the actor and of the critics, each its own
            (:mod:`gumbel_ac.encoders`: "mlp", "nature" or "minatar").
        image_shape: ``(C, H, W)`` of image observations (rows are these frames flattened);
            required by the convolutional encoders.
        pixel_scale: factor turning integer pixels into floats (1/255 for 0..255 frames).
        share_encoder: the actor reads the critic's encoder, detached, instead of its own
            (:class:`~gumbel_ac.encoders.DetachedEncoder`); no effect with the "mlp" encoder.
        critic_layer_norm: layer norm before every hidden ReLU of the critics
            (:class:`~gumbel_ac.networks.TwinCritic`).
        num_critics: critics in the ensemble (2: clipped double Q; more: SB3's ``n_critics``,
            REDQ's ``N``).
        obs_bounds: ``(low, high)`` of the observation rows: every network's encoder rescales
            them to ``[-1, 1]`` (``Config.obs_rescale``; the "mlp" encoder only). None: as they are.
        actor_average: keep :attr:`actor_average`, an averaged copy of the actor that
            evaluation and deployment act with (``Config.actor_average_rate``; the learner
            updates it). It starts equal to the actor.
    """

    def __init__(
        self,
        obs_dim: int,
        spec: ActionSpec,
        hidden_sizes: Sequence[int] = (64, 64),
        *,
        alpha: float = 0.05,
        target_entropy: float = 0.0,
        encoder: EncoderKind = "mlp",
        image_shape: Sequence[int] | None = None,
        pixel_scale: float = 1.0,
        share_encoder: bool = False,
        critic_layer_norm: bool = False,
        num_critics: int = 2,
        obs_bounds: ObsBounds | None = None,
        actor_average: bool = False,
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.spec = spec
        self.encoder_kind: EncoderKind = encoder
        self.image_shape = tuple(int(s) for s in image_shape) if image_shape is not None else None
        self.pixel_scale = float(pixel_scale)
        self.share_encoder = bool(share_encoder) and encoder != "mlp"
        self.critic_layer_norm = bool(critic_layer_norm)
        #: The rows' ``(low, high)`` every encoder rescales from (plain floats: the checkpoint
        #: manifest stores them), or None.
        self.obs_bounds: tuple[list[float], list[float]] | None = (
            None if obs_bounds is None else ([float(v) for v in obs_bounds[0]], [float(v) for v in obs_bounds[1]])
        )

        def build_critic() -> TwinCritic:
            return TwinCritic(
                obs_dim,
                spec.num_logits,
                hidden_sizes,
                make_encoder(encoder, obs_dim, self.image_shape, pixel_scale, self.obs_bounds),
                layer_norm=self.critic_layer_norm,
                num_critics=num_critics,
            )

        # Initialisation order is part of a seed's result: the actor's weights are drawn first,
        # then the critics' (as before encoders existed), except when the actor needs the
        # critic's encoder to exist.
        if self.share_encoder:
            critic = build_critic()
            actor = Actor(obs_dim, spec.num_logits, hidden_sizes, DetachedEncoder(critic.encoder))
        else:
            encoder_a = make_encoder(encoder, obs_dim, self.image_shape, pixel_scale, self.obs_bounds)
            actor = Actor(obs_dim, spec.num_logits, hidden_sizes, encoder_a)
            critic = build_critic()
        self.actor = actor
        self.critic = critic
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_target.requires_grad_(False)
        #: The averaged actor (no gradient), or None. With a shared encoder its encoder reads the
        #: critic's, as the actor's does (the memo keeps that reference instead of copying it).
        self.actor_average: Actor | None = None
        if actor_average:
            memo = {id(critic.encoder): critic.encoder}
            self.actor_average = copy.deepcopy(self.actor, memo).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha) if alpha > 0 else -math.inf))
        self.target_entropy = float(target_entropy)

    @property
    def alpha(self) -> torch.Tensor:
        """Entropy coefficient (a 0-dim tensor; no host sync)."""
        return self.log_alpha.exp()

    def logits(self, obs_BD: torch.Tensor) -> torch.Tensor:
        """Policy logits ``[B, K]``."""
        return self.actor(obs_BD)

    def q_objective(
        self,
        obs_BD: torch.Tensor,
        *,
        enumerable: bool = True,
        features: torch.Tensor | None = None,
        reduce: str = "min",
    ) -> CriticObjective:
        """The estimators' objective ``min_i Q_i(s, .)`` (``reduce="mean"``: ``mean_i``) at
        ``obs`` (``features``: the critic encoder's detached features of ``obs`` when the caller
        has them)."""
        return CriticObjective(self.critic, obs_BD, self.spec, enumerable=enumerable, features=features, reduce=reduce)

    @torch.no_grad()
    def act(
        self,
        obs_BD: torch.Tensor,
        *,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        averaged: bool = False,
    ) -> torch.Tensor:
        """Integer actions ``[B, H]``: the mode, or a Gumbel-max sample from ``pi(.|s)``.

        ``averaged=True`` (evaluation, deployment): with the averaged actor when the agent keeps
        one (:attr:`actor_average`), else with the actor itself."""
        actor = self.actor_average if averaged and self.actor_average is not None else self.actor
        logits = actor(obs_BD)
        if deterministic:
            return self.spec.mode(logits)
        perturbed = logits + sample_gumbel(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        return self.spec.mode(perturbed)

    @torch.no_grad()
    def explore(
        self,
        obs_BD: torch.Tensor,
        how: str,
        *,
        epsilon: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Behaviour actions ``[B, H]`` by acting mode: ``"sample"`` (``a ~ pi``), ``"mode"``
        (``argmax pi``) or ``"epsilon"`` (the mode, but with probability ``epsilon`` per row a
        uniformly random joint action; decided on the device, no host sync)."""
        if how == "sample":
            return self.act(obs_BD, generator=generator)
        mode_BH = self.act(obs_BD, deterministic=True)
        if how == "mode":
            return mode_BH
        if how != "epsilon":
            raise ValueError(f"acting mode must be 'sample', 'mode' or 'epsilon', got {how!r}")
        batch = obs_BD.shape[0]
        random_BH = self.random_actions(batch, generator, obs_BD.device)
        coin_B = torch.rand(batch, generator=generator, device=obs_BD.device) < epsilon
        return torch.where(coin_B.unsqueeze(-1), random_BH, mode_BH)

    def random_actions(self, batch: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """Uniformly random integer actions ``[B, H]`` (the warm-up phase)."""
        cols = [torch.randint(0, n, (batch,), generator=generator, device=device) for n in self.spec.nvec]
        return torch.stack(cols, dim=-1)


def default_target_entropy(spec: ActionSpec, ratio: float) -> float:
    """``ratio * sum_h log(A_h)``: a fraction of the maximum entropy of the factorised policy."""
    return float(ratio * sum(math.log(n) for n in spec.nvec))


def make_agent(
    *,
    obs_dim: int,
    spec: ActionSpec,
    hidden_sizes: Sequence[int],
    alpha: float,
    target_entropy_ratio: float,
    encoder: EncoderKind = "mlp",
    image_shape: Sequence[int] | None = None,
    pixel_scale: float = 1.0,
    share_encoder: bool = False,
    critic_layer_norm: bool = False,
    num_critics: int = 2,
    obs_bounds: ObsBounds | None = None,
    actor_average: bool = False,
) -> Agent:
    """Build an :class:`Agent` from config values (the trainer and the loader share this)."""
    return Agent(
        obs_dim,
        spec,
        tuple(hidden_sizes),
        alpha=alpha,
        target_entropy=default_target_entropy(spec, target_entropy_ratio),
        encoder=encoder,
        image_shape=image_shape,
        pixel_scale=pixel_scale,
        share_encoder=share_encoder,
        critic_layer_norm=critic_layer_norm,
        num_critics=num_critics,
        obs_bounds=obs_bounds,
        actor_average=actor_average,
    )
