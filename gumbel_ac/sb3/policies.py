"""SB3 policies that hold a gumbel_ac :class:`~gumbel_ac.agent.Agent`.

``GumbelACPolicy`` is an SB3 ``BasePolicy`` whose networks *are* our agent's: the actor, the
twin critic with its target copy and ``log_alpha`` live in ``policy.agent``. The algorithm
builds a :class:`gumbel_ac.learner.Learner` over ``policy.agent`` and sets
``policy.optimizer`` to the learner's optimizer (so SB3 saves and loads it); its ``train()``
calls ``Learner.step``: there is no second copy of the maths here, only the plumbing between
SB3's observations and the agent's inputs.

Two input paths:

* **MlpPolicy** (``FlattenExtractor``): SB3's ``preprocess_obs`` (float cast, one-hot for
  ``Discrete`` observations, /255 for images) then a flatten, done in :meth:`preprocess`; the
  agent is exactly the native one, so its ``state_dict`` is a native checkpoint's
  (:mod:`gumbel_ac.sb3.interop` exports it for ``eval.py``).
* **CnnPolicy** (any extractor with parameters, ``NatureCNN`` by default): the agent's actor
  and critics are wrapped so that they run the extractor on the preprocessed observation
  first. The core's losses are unchanged: they see modules with the same call signatures.

Sharing the features extractor (``share_features_extractor``, default ``True``): one CNN,
trained by the **critic** loss only; the actor reads its features detached, and the target
critic has its own Polyak-averaged copy of the CNN. This is the choice of SAC-AE (Yarats et
al. 2019, arXiv:1910.01741, "we do not update the encoder with the actor's gradient") and
DrQ (Kostrikov et al. 2020, arXiv:2004.13649): the critic's TD loss is the denser learning
signal, and an actor gradient pushed into a shared encoder degrades the critic's features.
(SB3's own SAC defaults to ``share_features_extractor=False``; when it shares, it trains the
extractor with the actor loss and detaches it in the critic -- the opposite of SAC-AE.)
With ``share_features_extractor=False`` actor and critic each own a CNN trained by their own
loss (twice the CNN compute and memory).

Shape legend: ``B`` batch, ``D`` features, ``K`` concatenated logits, ``H`` action heads,
``J`` joint actions.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn as nn
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule

from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.encoders import resolve_kind
from gumbel_ac.networks import Actor, TwinCritic
from gumbel_ac.vector import ObsEncoder


class FeatureActor(nn.Module):
    """The agent's :class:`~gumbel_ac.networks.Actor` behind a features extractor.

    With ``trainable_extractor=False`` the extractor belongs to the critic (shared mode): it
    is held outside this module's parameters (so the actor's optimizer group does not hold
    it twice) and its features are detached, so the actor loss never reaches it.
    """

    def __init__(self, extractor: BaseFeaturesExtractor, head: Actor, *, trainable_extractor: bool) -> None:
        super().__init__()
        self.head = head
        self.trainable_extractor = trainable_extractor
        if trainable_extractor:
            self.extractor = extractor
        else:
            # A plain attribute, not a submodule: no duplicate parameters in actor.parameters()
            # or the state_dict; .to()/.cuda() of the agent move it through the critic.
            object.__setattr__(self, "_shared_extractor", extractor)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.trainable_extractor:
            return self.head(self.extractor(obs))
        extractor = self._shared_extractor  # a plain attribute, see __init__
        assert isinstance(extractor, nn.Module)
        with torch.no_grad():
            features_BD = extractor(obs)
        return self.head(features_BD)


class FeatureCritic(nn.Module):
    """A :class:`~gumbel_ac.networks.TwinCritic` behind a features extractor (same interface).

    ``detach_params=True`` (the actor loss evaluating ``Q(s, estimator(l))``) runs the
    extractor without gradient as well, so the actor's gradient flows only through the action.
    """

    def __init__(self, extractor: BaseFeaturesExtractor, twin: TwinCritic) -> None:
        super().__init__()
        self.extractor = extractor
        self.twin = twin

    def _features(self, obs: torch.Tensor, detach_params: bool) -> torch.Tensor:
        if detach_params:
            with torch.no_grad():
                return self.extractor(obs)
        return self.extractor(obs)

    def encode(self, obs: torch.Tensor, detach: bool = False) -> torch.Tensor:
        """The extractor's features ``[B, D]`` (the losses' :meth:`TwinCritic.encode`)."""
        return self.twin.encode(self._features(obs, detach), detach)

    def q(self, feat_BD: torch.Tensor, action_BK: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """``Q_i`` of encoded states at ``action``: ``[2, B]``."""
        return self.twin.q(feat_BD, action_BK, detach_params)

    def q_all(self, feat_BD: torch.Tensor, joint_onehot_JK: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """``Q_i`` of encoded states at every joint action: ``[2, B, J]``."""
        return self.twin.q_all(feat_BD, joint_onehot_JK, detach_params)

    def forward(self, obs: torch.Tensor, action_BK: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """``Q_i(s, a)`` for both critics: ``[2, B]``."""
        return self.twin(self._features(obs, detach_params), action_BK, detach_params=detach_params)

    def all_actions(
        self, obs: torch.Tensor, joint_onehot_JK: torch.Tensor, detach_params: bool = False
    ) -> torch.Tensor:
        """``Q_i(s, a)`` for every joint action: ``[2, B, J]``."""
        return self.twin.all_actions(self._features(obs, detach_params), joint_onehot_JK, detach_params=detach_params)


class GumbelACPolicy(BasePolicy):
    """Actor, twin critics (+ targets) and entropy coefficient of gumbel_ac, as an SB3 policy.

    Args:
        observation_space: the env's observation space (Box or Discrete; images with CnnPolicy).
        action_space: ``Discrete`` or ``MultiDiscrete`` (factorised heads, as the core).
        lr_schedule: SB3's learning-rate schedule (unused: the algorithm's learner owns the
            learning rates; SB3's policy constructor requires it).
        net_arch: hidden widths of the actor and of each critic (our ``Config.hidden_sizes``;
            default ``[64, 64]``).
        features_extractor_class: SB3 features extractor; ``FlattenExtractor`` (MlpPolicy)
            keeps the agent identical to the native one, others (``NatureCNN``) wrap it.
        features_extractor_kwargs: keyword arguments of the extractor.
        normalize_images: divide image observations by 255 (SB3's ``preprocess_obs``).
        share_features_extractor: one extractor for actor and critic, trained by the critic
            loss only (see the module docstring); ignored by MlpPolicy.
        encoder: with MlpPolicy, the native agent's own encoder ("auto", "mlp", "nature",
            "minatar"; :mod:`gumbel_ac.encoders`) on the native trainer's observation rows, so
            the agent is exactly a native one and exports to a checkpoint; None = SB3's
            preprocessing and a flat MLP.
        alpha: initial entropy coefficient (0 disables the entropy bonus; needs the
            algorithm's ``autotune_alpha=False``).
        target_entropy_ratio: target entropy as a fraction of ``sum_h log(A_h)``.
        critic_layer_norm: layer norm before every hidden ReLU of the critics (our
            ``Config.critic_layer_norm``).
        n_critics: critics in the ensemble (SB3's SAC policy keyword; our ``Config.n_critics``).
        obs_rescale: rescale each bounded observation value from the space's bounds to
            ``[-1, 1]`` inside the networks (our ``Config.obs_rescale``); MlpPolicy, vector
            observations only.

    The learning rates and ``autotune_alpha`` belong to the algorithm's learner.
    """

    agent: Agent
    optimizer: torch.optim.Optimizer

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        share_features_extractor: bool = True,
        alpha: float = 0.05,
        target_entropy_ratio: float = 0.1,
        encoder: str | None = None,
        critic_layer_norm: bool = False,
        n_critics: int = 2,
        obs_rescale: bool = False,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            normalize_images=normalize_images,
            squash_output=False,
        )
        if net_arch is None:
            net_arch = [64, 64]
        if isinstance(net_arch, dict):  # SAC-style dict(pi=[...], qf=[...]) is not supported
            raise ValueError(
                "GumbelACPolicy takes net_arch as one list of hidden widths used by the actor and "
                f"each critic (our Config.hidden_sizes), got {net_arch!r}"
            )
        self.net_arch = [int(w) for w in net_arch]
        self.share_features_extractor = share_features_extractor
        self.alpha_init = float(alpha)
        self.target_entropy_ratio = float(target_entropy_ratio)
        self.spec = ActionSpec.from_space(action_space)
        self.encoder = encoder
        self.critic_layer_norm = bool(critic_layer_norm)
        self.n_critics = int(n_critics)
        self.obs_rescale = bool(obs_rescale)
        #: The native trainer's observation rows (image frames as channel-first uint8), used
        #: instead of SB3's preprocessing when ``encoder`` is set.
        self.native_obs: ObsEncoder | None = None
        if encoder is not None:
            if features_extractor_class is not FlattenExtractor:
                raise ValueError(
                    f"encoder={encoder!r} is the native agent's own encoder: use it with MlpPolicy "
                    f"(FlattenExtractor), not {features_extractor_class.__name__}"
                )
            self.native_obs = ObsEncoder(observation_space)
        self._build()

    # ------------------------------------------------------------------ construction
    @property
    def is_plain(self) -> bool:
        """True for the flatten path (MlpPolicy): ``agent`` is exactly a native Agent."""
        return self.features_extractor_class is FlattenExtractor

    def _obs_bounds(self) -> tuple[list[float], list[float]] | None:
        """The flat rows' ``(low, high)`` when ``obs_rescale`` is on (the native trainer's:
        :meth:`~gumbel_ac.vector.ObsEncoder.row_bounds`), else None."""
        if not self.obs_rescale:
            return None
        if not self.is_plain:
            raise ValueError(
                f"obs_rescale rescales the flat observation rows of MlpPolicy, not the features of "
                f"{self.features_extractor_class.__name__}; drop obs_rescale or use MlpPolicy"
            )
        rows = self.native_obs if self.native_obs is not None else ObsEncoder(self.observation_space)
        try:
            low, high = rows.row_bounds()
        except ValueError as exc:
            raise ValueError(f"obs_rescale: {exc}; drop obs_rescale for image observations") from None
        if self.native_obs is None and rows.scale != 1.0:
            # SB3's preprocess_obs divides only 3-D image boxes by 255: uint8 vectors stay 0..255.
            low, high = low / rows.scale, high / rows.scale
        return low.tolist(), high.tolist()

    def _build(self) -> None:
        extractor = self.make_features_extractor()
        native = self.native_obs
        agent = make_agent(
            obs_dim=int(extractor.features_dim) if native is None else native.dim,
            spec=self.spec,
            hidden_sizes=self.net_arch,
            alpha=self.alpha_init if self.alpha_init > 0 else 1e-8,
            target_entropy_ratio=self.target_entropy_ratio,
            encoder="mlp" if native is None or self.encoder is None else resolve_kind(self.encoder, native.image_shape),
            image_shape=None if native is None else native.image_shape,
            pixel_scale=1.0 if native is None else native.pixel_scale,
            critic_layer_norm=self.critic_layer_norm,
            num_critics=self.n_critics,
            obs_bounds=self._obs_bounds(),
        )
        if self.alpha_init == 0:
            # As the native trainer: alpha = 0 means no entropy term at all.
            agent.log_alpha.data.fill_(-math.inf)
        if self.is_plain:
            # Parameterless: flattening happens in `preprocess`, the agent stays native.
            self.flatten = extractor
        else:
            if self.share_features_extractor:
                actor = FeatureActor(extractor, agent.actor, trainable_extractor=False)
            else:
                actor = FeatureActor(self.make_features_extractor(), agent.actor, trainable_extractor=True)
            agent.actor = actor  # type: ignore[assignment]  # same call signature as Actor
            agent.critic = FeatureCritic(extractor, agent.critic)  # type: ignore[assignment]
            agent.critic_target = copy.deepcopy(agent.critic)
            agent.critic_target.requires_grad_(False)
        self.agent = agent

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                lr_schedule=self._dummy_schedule,
                net_arch=self.net_arch,
                features_extractor_class=self.features_extractor_class,
                features_extractor_kwargs=self.features_extractor_kwargs,
                share_features_extractor=self.share_features_extractor,
                alpha=self.alpha_init,
                target_entropy_ratio=self.target_entropy_ratio,
                encoder=self.encoder,
                critic_layer_norm=self.critic_layer_norm,
                n_critics=self.n_critics,
                obs_rescale=self.obs_rescale,
            )
        )
        return data

    def set_training_mode(self, mode: bool) -> None:
        """Train/eval mode of actor and critic; the target critic always stays in eval mode
        (as SB3's SAC keeps ``critic_target``), which matters for extractors with BatchNorm."""
        super().set_training_mode(mode)
        self.agent.critic_target.train(False)

    # ------------------------------------------------------------------ acting
    def preprocess(self, obs: PyTorchObs) -> torch.Tensor:
        """SB3 observations (as stored in its buffers) -> the agent's input tensor.

        ``preprocess_obs`` casts to float, one-hot encodes Discrete observations and divides
        images by 255; the MLP path then flattens to ``[B, D]`` (the native ``ObsEncoder``
        does the same for Box and Discrete observations).
        """
        if self.native_obs is not None:
            assert isinstance(obs, torch.Tensor), "dict observations are not supported"
            return self.native_obs(obs)
        x = preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images)
        assert isinstance(x, torch.Tensor), "dict observations are not supported"
        return self.flatten(x) if self.is_plain else x

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        """Integer actions: ``[B]`` for Discrete, ``[B, H]`` for MultiDiscrete -- never one-hot.

        SB3's ``predict`` reshapes whatever this returns to ``(-1, *action_space.shape)``, so a
        one-hot ``[B, K]`` would silently become ``B*K`` actions (docs/DESIGN.md §6).
        Stochastic actions are Gumbel-max samples from ``pi(.|s)`` drawn from torch's global
        RNG (seeded by SB3's ``set_random_seed``).
        """
        actions_BH = self.agent.act(self.preprocess(observation), deterministic=deterministic)
        if isinstance(self.action_space, spaces.Discrete):
            return actions_BH[:, 0]
        return actions_BH


class CnnPolicy(GumbelACPolicy):
    """:class:`GumbelACPolicy` with SB3's ``NatureCNN`` in front (image observations)."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        share_features_extractor: bool = True,
        alpha: float = 0.05,
        target_entropy_ratio: float = 0.1,
        critic_layer_norm: bool = False,
        n_critics: int = 2,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            normalize_images=normalize_images,
            share_features_extractor=share_features_extractor,
            alpha=alpha,
            target_entropy_ratio=target_entropy_ratio,
            critic_layer_norm=critic_layer_norm,
            n_critics=n_critics,
        )


MlpPolicy = GumbelACPolicy
