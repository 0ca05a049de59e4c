"""``GumbelAC``: the gumbel_ac actor-critic as a Stable-Baselines3 off-policy algorithm.

SB3 does the collecting (``OffPolicyAlgorithm.collect_rollouts``: VecEnvs, callbacks, the
numpy ``ReplayBuffer`` with timeout handling, logging); :meth:`GumbelAC.train` turns each
replay minibatch into a :class:`gumbel_ac.losses.Batch` and calls
:meth:`Learner.step <gumbel_ac.learner.Learner.step>` -- the same update, estimators,
optimizer and non-finite guard the native trainer uses. Nothing about the losses is written
here.

Hyperparameters carry our :class:`~gumbel_ac.config.Config` names and defaults
(``gumbel_temperature``, ``target_update_rate``, ``target_entropy_ratio``, ...); they are
validated by ``Config.validate`` so a bad value raises the same one-line
:class:`~gumbel_ac.config.ConfigError` as ``train.py``. The Gumbel temperature is
``gumbel_temperature``; SB3's base class keeps a ``tau`` attribute for its Polyak rate, and
here it only mirrors ``target_update_rate`` (read-only: set ``target_update_rate``).

Differences from the native trainer, by construction of SB3:
* replay lives in numpy (host) and every step copies observations to torch; the native
  trainer keeps everything on the device and never syncs -- it is the fast path;
* learning rates may be SB3 schedules (``float`` or ``Callable[[progress_remaining], float]``);
* training stats are read back once per ``train()`` call for SB3's logger.

Saving: ``model.save("x.zip")`` is SB3's format, which cloudpickles parts of the model --
loading an untrusted ``.zip`` can run code. For sharing, export the policy to our
safetensors + JSON checkpoint with :func:`gumbel_ac.sb3.export_checkpoint` (never unpickles).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule

from gumbel_ac.config import Config
from gumbel_ac.learner import Learner
from gumbel_ac.losses import Batch, UpdateStats
from gumbel_ac.sb3.policies import CnnPolicy, GumbelACPolicy, MlpPolicy

SelfGumbelAC = TypeVar("SelfGumbelAC", bound="GumbelAC")

#: SB3-style logger keys for :attr:`UpdateStats.NAMES` (same order).
_SB3_STAT_KEYS = (
    "train/critic_loss",
    "train/actor_loss",
    "train/alpha",
    "train/entropy",
    "train/q_mean",
    "train/nonfinite_updates",
)
assert len(_SB3_STAT_KEYS) == len(UpdateStats.NAMES)


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _optional_int(value: int | None) -> int | None:
    return None if value is None else int(value)


def _initial(value: float | Schedule) -> float:
    """The starting value of a float or an SB3 schedule (progress_remaining = 1)."""
    return float(value(1.0)) if callable(value) else float(value)


class GumbelAC(OffPolicyAlgorithm):
    """Off-policy actor-critic with straight-through Gumbel-Softmax actions (discrete SAC family).

    Args:
        policy: ``"MlpPolicy"``, ``"CnnPolicy"`` or a :class:`GumbelACPolicy` subclass.
        env: a Gymnasium env, a VecEnv (e.g. ``make_vec_env(..., n_envs=16)`` or
            :class:`~gumbel_ac.sb3.TorchVecEnvAdapter`), or a registered env id.
        estimator: actor gradient estimator by name (``gumbel-st``, ``gumbel-soft``,
            ``softmax-st``, ``score``, ``exact``, ``gumbel-rao``, ``reinmax``, ``gst``; see
            :mod:`gumbel_ac.estimators`). Changes only the actor's gradient.
        actor_lr, critic_lr, alpha_lr: Adam learning rates (floats or SB3 schedules of
            ``progress_remaining``). ``critic_lr`` is also SB3's ``learning_rate``.
        buffer_size: replay capacity in transitions (SB3 divides it by ``n_envs``).
        learning_starts: env steps of uniformly random actions before updates start.
        batch_size: replay minibatch per gradient step.
        target_update_rate: Polyak rate of the target critics per gradient step (the start
            value when annealed).
        target_update_rate_final, target_update_anneal_start, target_update_anneal_steps: the
            native default's late anneal of the Polyak rate over env steps (0.2 until 10k, then
            linearly to 0.005 at 40k; ``Config.target_update_rate_at``); ``None`` keeps it constant.
        gamma: discount factor.
        train_freq: collect this many vector steps (or ``(n, "episode")``) between trainings.
        gradient_steps: gradient steps per training (-1: as many as env steps collected).
        n_steps: n-step returns through SB3's ``NStepReplayBuffer`` (our ``n_step``; 1: one-step
            targets); its per-row ``discounts`` become the target's bootstrap discount.
        alpha: entropy coefficient (initial value if ``autotune_alpha``); 0 disables it.
        autotune_alpha: tune alpha toward ``target_entropy_ratio * sum_h log(A_h)``.
        alpha_max, alpha_min: bounds on the tuned alpha (``None``: none), as
            ``Config.alpha_max``/``Config.alpha_min`` (defaults: the same).
        target_q_reduce, q_clip: the critic target's combination of the two target critics
            ("min" or "mean") and the critic loss's Q-clip (``None``: off), as
            ``Config.target_q_reduce``/``Config.q_clip`` (Zhou et al. 2022; defaults: the same).
        huber_delta: the critic loss's Huber threshold (``None``: squared error), as
            ``Config.huber_delta``.
        target_critics: REDQ's in-target subset of the critic ensemble (``Config.target_critics``;
            the ensemble's size is the policy keyword ``n_critics``, as in SB3's SAC).
        target_entropy_ratio: see :class:`~gumbel_ac.config.Config`.
        gumbel_temperature: Gumbel-Softmax temperature (start value if annealed).
        gumbel_temperature_final, temperature_schedule, temperature_anneal_steps: optional
            anneal of the temperature over env steps (``Config.temperature_at``).
        rao_samples: Gumbel draws per action for ``gumbel-rao``.
        max_enumerated_actions, target_action_samples, score_samples: above this many joint
            actions nothing enumerates them (sampled critic target and score baseline; exact
            refused); see :class:`~gumbel_ac.config.Config`.
        max_nonfinite_updates: stop with :class:`~gumbel_ac.learner.TrainingError` after
            this many consecutive updates with a non-finite loss or gradient.
        replay_buffer_class, replay_buffer_kwargs, optimize_memory_usage, policy_kwargs,
            stats_window_size, tensorboard_log, verbose, seed, device: as in SB3.
            ``policy_kwargs=dict(net_arch=[64, 64])`` sets the hidden widths (our
            ``hidden_sizes``); ``share_features_extractor`` applies to CnnPolicy.
        _init_setup_model: build networks now (SB3's ``load`` passes False).
    """

    policy_aliases = {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy}
    policy: GumbelACPolicy

    def __init__(
        self,
        policy: str | type[GumbelACPolicy],
        env: GymEnv | str | None,
        *,
        estimator: str = "gumbel-st",
        actor_lr: float | Schedule = 3e-3,
        critic_lr: float | Schedule = 3e-3,
        alpha_lr: float | Schedule = 3e-3,
        buffer_size: int = 100_000,
        learning_starts: int = 1_000,
        batch_size: int = 128,
        target_update_rate: float = 0.2,
        target_update_rate_final: float | None = 0.005,
        target_update_anneal_start: int = 10_000,
        target_update_anneal_steps: int = 30_000,
        gamma: float = 0.995,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        n_steps: int = 1,
        alpha: float = 0.05,
        autotune_alpha: bool = True,
        alpha_max: float | None = Config.alpha_max,
        alpha_min: float | None = Config.alpha_min,
        target_q_reduce: str = Config.target_q_reduce,
        q_clip: float | None = Config.q_clip,
        huber_delta: float | None = Config.huber_delta,
        target_critics: int | None = Config.target_critics,
        target_entropy_ratio: float = 0.1,
        gumbel_temperature: float = 0.6,
        gumbel_temperature_final: float | None = None,
        temperature_schedule: str = "exponential",
        temperature_anneal_steps: int = 50_000,
        rao_samples: int = 10,
        max_enumerated_actions: int = 256,
        target_action_samples: int = 4,
        score_samples: int = 4,
        max_nonfinite_updates: int = 100,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=critic_lr,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=target_update_rate,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            n_steps=n_steps,
            action_noise=None,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Discrete, spaces.MultiDiscrete),
            support_multi_env=True,
        )
        self.estimator = estimator
        self.actor_lr = actor_lr
        self.critic_lr = critic_lr
        self.alpha_lr = alpha_lr
        self.target_update_rate = target_update_rate
        self.target_update_rate_final = target_update_rate_final
        self.target_update_anneal_start = target_update_anneal_start
        self.target_update_anneal_steps = target_update_anneal_steps
        self.alpha = alpha
        self.autotune_alpha = autotune_alpha
        self.alpha_max = alpha_max
        self.alpha_min = alpha_min
        self.target_q_reduce = target_q_reduce
        self.q_clip = q_clip
        self.huber_delta = huber_delta
        self.target_critics = target_critics
        self.target_entropy_ratio = target_entropy_ratio
        self.gumbel_temperature = gumbel_temperature
        self.gumbel_temperature_final = gumbel_temperature_final
        self.temperature_schedule = temperature_schedule
        self.temperature_anneal_steps = temperature_anneal_steps
        self.rao_samples = rao_samples
        self.max_enumerated_actions = max_enumerated_actions
        self.target_action_samples = target_action_samples
        self.score_samples = score_samples
        self.max_nonfinite_updates = max_nonfinite_updates
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ config bridge
    def to_config(self, *, env_id: str | None = None, **overrides: Any) -> Config:
        """These hyperparameters as a validated :class:`~gumbel_ac.config.Config`.

        Used to validate (one ConfigError naming the field), for the temperature schedule,
        and by :func:`gumbel_ac.sb3.export_checkpoint` (the checkpoint's ``config.json``).
        Schedules contribute their starting value. ``preset="none"``: the model's arguments are
        its hyperparameters, so no per-env preset may change them (CartPole's would give the
        exported config 10 critics where the model has its own number).
        """
        net_arch = (self.policy_kwargs or {}).get("net_arch") or [64, 64]
        fields: dict[str, Any] = dict(
            env=env_id or "CartPole-v1",
            preset="none",
            estimator=self.estimator,
            seed=int(self.seed) if self.seed is not None else 0,
            num_envs=int(getattr(self, "n_envs", 1) or 1),
            gamma=float(self.gamma),
            actor_lr=_initial(self.actor_lr),
            critic_lr=_initial(self.critic_lr),
            alpha_lr=_initial(self.alpha_lr),
            batch_size=int(self.batch_size),
            buffer_size=int(self.buffer_size),
            learning_starts=int(self.learning_starts),
            updates_per_step=max(int(self.gradient_steps), 1),
            target_update_rate=float(self.target_update_rate),
            # getattr: models saved before the schedule existed keep their constant rate.
            target_update_rate_final=_optional_float(getattr(self, "target_update_rate_final", None)),
            target_update_anneal_start=int(getattr(self, "target_update_anneal_start", 10_000)),
            target_update_anneal_steps=int(getattr(self, "target_update_anneal_steps", 30_000)),
            hidden_sizes=tuple(int(w) for w in net_arch),
            encoder=(self.policy_kwargs or {}).get("encoder") or "mlp",
            critic_layer_norm=bool((self.policy_kwargs or {}).get("critic_layer_norm", False)),
            n_critics=int((self.policy_kwargs or {}).get("n_critics", 2)),
            obs_rescale=bool((self.policy_kwargs or {}).get("obs_rescale", False)),
            alpha=float(self.alpha),
            autotune_alpha=bool(self.autotune_alpha),
            # getattr: models saved before the bounds existed had none.
            alpha_max=_optional_float(getattr(self, "alpha_max", None)),
            alpha_min=_optional_float(getattr(self, "alpha_min", None)),
            # getattr: models saved before these options existed trained with min and no clip.
            target_q_reduce=str(getattr(self, "target_q_reduce", "min")),
            q_clip=_optional_float(getattr(self, "q_clip", None)),
            huber_delta=_optional_float(getattr(self, "huber_delta", None)),
            target_critics=_optional_int(getattr(self, "target_critics", None)),
            target_entropy_ratio=float(self.target_entropy_ratio),
            # getattr: models saved before SB3 had n-step returns used one-step ones.
            n_step=int(getattr(self, "n_steps", 1)),
            gumbel_temperature=float(self.gumbel_temperature),
            gumbel_temperature_final=(
                None if self.gumbel_temperature_final is None else float(self.gumbel_temperature_final)
            ),
            temperature_schedule=self.temperature_schedule,
            temperature_anneal_steps=int(self.temperature_anneal_steps),
            rao_samples=int(self.rao_samples),
            # getattr: models saved before these options existed load with the defaults.
            max_enumerated_actions=int(getattr(self, "max_enumerated_actions", 256)),
            target_action_samples=int(getattr(self, "target_action_samples", 4)),
            score_samples=int(getattr(self, "score_samples", 4)),
            max_nonfinite_updates=int(self.max_nonfinite_updates),
            progress=False,
        )
        fields.update(overrides)
        return Config(**fields).validate()

    # ------------------------------------------------------------------ setup
    def _setup_model(self) -> None:
        self._config = self.to_config()
        self._lr_schedules: dict[str, Callable[[float], float]] = {
            "actor": FloatSchedule(self.actor_lr),
            "critic": FloatSchedule(self.critic_lr),
            "alpha": FloatSchedule(self.alpha_lr),
        }
        # The algorithm's hyperparameters are the source of truth for the agent's; they go to
        # the policy for this construction only (not stored in policy_kwargs, which SB3's
        # `load` compares with a user's `policy_kwargs`).
        user_kwargs = self.policy_kwargs
        self.policy_kwargs = {
            **user_kwargs,
            "alpha": float(self.alpha),
            "target_entropy_ratio": float(self.target_entropy_ratio),
        }
        try:
            super()._setup_model()
        finally:
            self.policy_kwargs = user_kwargs
        # After SB3 moved the policy to its device: the learner's flat views are built there.
        # Schedules enter with their starting value; train() sets each step's learning rates.
        self.learner = Learner.from_config(self.policy.agent, self._config)
        # SB3 saves and restores "policy.optimizer" (``_get_torch_save_params``).
        self.policy.optimizer = self.learner.optimizer  # type: ignore[assignment]

    @property
    def tau(self) -> float:
        """SB3's name for the Polyak rate: ``target_update_rate`` (never the Gumbel temperature)."""
        return float(self.target_update_rate)

    @tau.setter
    def tau(self, value: float) -> None:
        # SB3's OffPolicyAlgorithm.__init__ assigns tau; it must equal target_update_rate.
        if "target_update_rate" in self.__dict__ and float(value) != self.target_update_rate:
            raise AttributeError("GumbelAC.tau mirrors target_update_rate; set target_update_rate instead")

    def _excluded_save_params(self) -> list[str]:
        # Rebuilt by _setup_model on load; the optimizer is saved as a state_dict below.
        return [*super()._excluded_save_params(), "_config", "_lr_schedules", "learner"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []

    def set_parameters(
        self,
        load_path_or_dict: str | dict[str, Any],
        exact_match: bool = True,
        device: torch.device | str = "auto",
    ) -> None:
        """Load the policy's and the optimizer's state (SB3's ``load`` calls this).

        Overridden because SB3's version passes ``strict=`` to anything that is not a
        ``torch.optim.Optimizer``, and the learner's optimizer is a
        :class:`~gumbel_ac.optim.FlatAdam` (one flat buffer; its ``load_state_dict`` checks
        shapes and groups itself). Both load in place, so the learner's flat views survive.
        """
        if isinstance(load_path_or_dict, dict):
            params = load_path_or_dict
        else:
            from stable_baselines3.common.save_util import load_from_zip_file

            _, params, _ = load_from_zip_file(load_path_or_dict, device=device)
            assert params is not None, f"{load_path_or_dict} holds no parameters"
        expected = set(self._get_torch_save_params()[0])
        unknown = set(params) - expected
        if unknown or (exact_match and set(params) != expected):
            raise ValueError(
                f"Names of parameters do not match agents' parameters: expected {expected}, got {set(params)}"
            )
        if "policy" in params:
            self.policy.load_state_dict(params["policy"], strict=exact_match)
        if "policy.optimizer" in params:
            self.policy.optimizer.load_state_dict(params["policy.optimizer"])

    # ------------------------------------------------------------------ training
    def train(self, gradient_steps: int, batch_size: int = 128) -> None:
        """``gradient_steps`` calls of :meth:`Learner.step <gumbel_ac.learner.Learner.step>`
        on replay minibatches; one device->host read for SB3's logger."""
        assert self.replay_buffer is not None
        self.policy.set_training_mode(True)
        policy, learner = self.policy, self.learner
        lrs = {name: fn(self._current_progress_remaining) for name, fn in self._lr_schedules.items()}
        for group in learner.optimizer.param_groups:
            group["lr"] = lrs[group["name"]]
        learner.target_update_rate = self._config.target_update_rate_at(self.num_timesteps)
        temperature = self._config.temperature_at(self.num_timesteps)

        stats_sum = torch.zeros(len(UpdateStats.NAMES), device=self.device)
        learner.reset_window()
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            n = data.rewards.shape[0]
            batch = Batch(
                obs_BD=policy.preprocess(data.observations),
                action_BH=data.actions.long().reshape(n, -1),
                reward_B=data.rewards.reshape(n).float(),
                next_obs_BD=policy.preprocess(data.next_observations),
                # SB3's buffer already folds "TimeLimit.truncated" out of `dones`: truncated
                # transitions bootstrap, terminated ones do not (as the native trainer).
                terminated_B=data.dones.reshape(n) > 0.5,
                # SB3's NStepReplayBuffer (``n_steps > 1``): gamma ** k of each k-step row.
                discount_B=None if data.discounts is None else data.discounts.reshape(n).float(),
            )
            # generator=None: torch's global RNG, seeded by SB3's set_random_seed.
            stats_sum += learner.step(batch, temperature=temperature, generator=None).as_tensor()
        self._n_updates += gradient_steps

        # One device->host read per train() call.
        host = torch.cat([stats_sum / max(gradient_steps, 1), learner.max_nonfinite_streak.reshape(1)]).cpu().tolist()
        for key, value in zip(_SB3_STAT_KEYS, host[:-1], strict=True):
            self.logger.record(key, value)
        self.logger.record("train/gumbel_temperature", temperature)
        self.logger.record("train/target_update_rate", learner.target_update_rate)
        for name, lr in lrs.items():
            self.logger.record(f"train/{name}_lr", lr)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        learner.check_nonfinite(host[-1])

    def learn(
        self: SelfGumbelAC,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "GumbelAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfGumbelAC:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    # ------------------------------------------------------------------ misc
    @property
    def current_alpha(self) -> float:
        """The entropy coefficient now (a host read)."""
        value = float(self.policy.agent.alpha.detach().cpu())
        return 0.0 if math.isnan(value) else value


__all__ = ["GumbelAC", "GumbelACPolicy", "MlpPolicy", "CnnPolicy"]
