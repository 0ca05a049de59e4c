"""The learner: one gradient step of the agent, and all the state that step owns.

``Learner`` owns the agent, the flat parameter / gradient / target-critic buffers, the Adam
optimizer over them, the estimator and the non-finite guard. :meth:`Learner.step` is the
ONE update path: the native trainer (:mod:`gumbel_ac.trainer`), the SB3 algorithm
(:mod:`gumbel_ac.sb3.algorithm`), the torchrun ranks and the CUDA-graph capture all call it.
The maths of the step lives in :mod:`gumbel_ac.losses` (one copy); this module is the
mechanics around it: one backward pass, the gradient hook, the non-finite mask, Adam and the
Polyak average of the target critic.

Why flat buffers: at our network sizes a step is per-op overhead bound. Every trained
parameter is a view into ONE flat tensor and every ``.grad`` a view into ONE flat gradient,
so zeroing, the finiteness check, the torchrun all-reduce, Adam and the Polyak update are one
op each (:mod:`gumbel_ac.optim`). The views are the learner's business: the agent stays a
plain ``nn.Module`` with nothing attached from outside, and :meth:`Learner.to` is the one way
to move a trained agent to another device (it rebuilds the views; ``agent.to()`` alone would
silently detach the parameters from the optimizer, which :meth:`Learner.check_views` reports).

Shape legend as in :mod:`gumbel_ac.losses`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch

from gumbel_ac.agent import Agent
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.estimators import EstimatorFn, get_estimator
from gumbel_ac.losses import Batch, UpdateStats, compute_losses
from gumbel_ac.optim import FlatAdam, attach_flat_grad_, flatten_parameters_

__all__ = ["Learner", "TrainingError", "make_estimator"]


#: A log window in which more than this fraction of the updates were skipped as non-finite
#: stops the run (:meth:`Learner.check_nonfinite`) ...
MAX_SKIPPED_FRACTION = 0.5
#: ... once the window holds at least this many updates (fewer say too little).
MIN_WINDOW_UPDATES = 20


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. repeated non-finite losses); the message says why."""


def make_estimator(name: str, *, rao_samples: int = 10, score_samples: int = 4) -> EstimatorFn:
    """The estimator ``name`` with its options (``rao_samples`` is used by ``gumbel-rao``,
    ``score_samples`` by ``score`` only; :func:`gumbel_ac.estimators.get_estimator` binds the
    ones the named estimator takes)."""
    return get_estimator(name, rao_samples=rao_samples, score_samples=score_samples)


class Learner:
    """The agent's update: losses, one backward, non-finite mask, Adam, Polyak.

    Args:
        agent: the agent to train; its trained parameters are re-pointed into the learner's
            flat buffer (values kept).
        estimator: the actor-gradient estimator (:func:`make_estimator`).
        actor_lr, critic_lr, alpha_lr: Adam learning rates of the three parameter groups
            (``optimizer.param_groups[i]["lr"]`` may be changed later, as SB3 schedules do).
        autotune_alpha: train ``log_alpha`` toward the agent's target entropy.
        gamma: discount factor.
        target_update_rate: Polyak rate of the target critic per step (may be changed later
            by assigning :attr:`target_update_rate`, as the trainer's schedule does).
        alpha_max, alpha_min: upper and lower bounds on the tuned alpha (``None``: none);
            ``log_alpha`` is clamped after each optimizer step.
        max_nonfinite_updates: :meth:`check_nonfinite` raises :class:`TrainingError` once this
            many consecutive steps had a non-finite loss or gradient.
        max_enumerated_actions: enumerate the joint actions up to this many (exact target,
            score baseline, exact estimator); above it sample instead (:func:`losses.compute_losses`).
        target_action_samples: sampled next actions per transition above that limit.
        capturable: keep Adam's step count and lr scale on the device, so that a CUDA graph
            capturing :meth:`step` stays right on every replay (``--cuda-graphs``).
        grad_hook: called with the flat gradient after backward, before the non-finite mask
            (the torchrun ranks all-reduce it there: :mod:`gumbel_ac.distributed`).
    """

    def __init__(
        self,
        agent: Agent,
        *,
        estimator: EstimatorFn,
        actor_lr: float,
        critic_lr: float,
        alpha_lr: float,
        autotune_alpha: bool,
        gamma: float,
        target_update_rate: float,
        max_nonfinite_updates: int = 100,
        max_enumerated_actions: int = 256,
        target_action_samples: int = 4,
        capturable: bool = False,
        grad_hook: Callable[[torch.Tensor], None] | None = None,
        alpha_max: float | None = None,
        alpha_min: float | None = None,
        target_q_reduce: str = "min",
        q_clip: float | None = None,
        target_critics: int | None = None,
        huber_delta: float | None = None,
        actor_average_rate: float | None = None,
    ) -> None:
        self.agent = agent
        #: REDQ's in-target subset of the critic ensemble (``Config.target_critics``; None: all).
        self.target_critics: int | None = None if target_critics is None else int(target_critics)
        if self.target_critics is not None and not 1 <= self.target_critics <= agent.critic.num_critics:
            raise ValueError(
                f"target_critics={self.target_critics} must be in [1, {agent.critic.num_critics}] (the critics)"
            )
        #: How the critic target combines the two target critics, and the critic loss's
        #: Q-clip (:mod:`gumbel_ac.losses`; ``Config.target_q_reduce``, ``Config.q_clip``).
        self.target_q_reduce = str(target_q_reduce)
        self.q_clip: float | None = None if q_clip is None else float(q_clip)
        #: The critic loss's Huber threshold (``Config.huber_delta``; None: squared error).
        self.huber_delta: float | None = None if huber_delta is None else float(huber_delta)
        #: Polyak rate of the agent's averaged actor (``Config.actor_average_rate``); the agent
        #: keeps one exactly when this is set.
        self.actor_average_rate: float | None = None if actor_average_rate is None else float(actor_average_rate)
        if (self.actor_average_rate is None) != (agent.actor_average is None):
            raise ValueError(
                "actor_average_rate and the agent's averaged actor go together: build the agent with "
                "actor_average=True exactly when the rate is set"
            )
        #: ``None``: the joint action set is enumerated (exact target); else the number of
        #: sampled next actions per transition (no tensor grows with the joint action count).
        self.target_samples: int | None = (
            None if agent.spec.num_joint <= max_enumerated_actions else int(target_action_samples)
        )
        self.estimator = estimator
        self.autotune_alpha = bool(autotune_alpha)
        self.gamma = float(gamma)
        #: ``log(alpha_max)``, or None: no cap.
        self.log_alpha_max: float | None = None if alpha_max is None else math.log(alpha_max)
        #: ``log(alpha_min)``, or None: no floor.
        self.log_alpha_min: float | None = None if alpha_min is None else math.log(alpha_min)
        self.max_nonfinite_updates = int(max_nonfinite_updates)
        self.grad_hook = grad_hook
        self._lrs = (float(actor_lr), float(critic_lr), float(alpha_lr))
        self._capturable = bool(capturable)
        self._build()
        device = self.flat_param.device
        # On the device when capturable, so a CUDA graph replays the current rate.
        self._target_rate_t = torch.tensor(float(target_update_rate), device=device)
        self._target_rate = float(target_update_rate)
        #: Consecutive non-finite steps up to now, and the longest run since :meth:`reset_window`
        #: (0-dim device tensors: the guard never syncs; callers read them in bulk).
        self.nonfinite_streak = torch.zeros((), device=device)
        self.max_nonfinite_streak = torch.zeros((), device=device)

    @classmethod
    def from_config(
        cls,
        agent: Agent,
        config: Config,
        *,
        capturable: bool = False,
        grad_hook: Callable[[torch.Tensor], None] | None = None,
    ) -> Learner:
        """The learner a :class:`~gumbel_ac.config.Config` describes (the native trainer's and
        the SB3 algorithm's, whose hyperparameters are validated as a Config).

        Raises ``ConfigError`` for the ``exact`` estimator on a joint action set above
        ``max_enumerated_actions`` (it sums over every action), naming the alternatives.
        """
        joint = agent.spec.num_joint
        if config.estimator == "exact" and joint > config.max_enumerated_actions:
            raise ConfigError(
                f"the exact estimator sums over all {joint} joint actions of {list(agent.spec.nvec)}, more than "
                f"--max-enumerated-actions={config.max_enumerated_actions}; use gumbel-st, gumbel-rao or score "
                "(sampled baseline), or raise --max-enumerated-actions"
            )
        return cls(
            agent,
            estimator=make_estimator(
                config.estimator, rao_samples=config.rao_samples, score_samples=config.score_samples
            ),
            actor_lr=config.actor_lr,
            critic_lr=config.critic_lr,
            alpha_lr=config.alpha_lr,
            autotune_alpha=config.autotune_alpha,
            gamma=config.gamma,
            target_update_rate=config.target_update_rate,
            alpha_max=config.alpha_max,
            alpha_min=config.alpha_min,
            target_q_reduce=config.target_q_reduce,
            q_clip=config.q_clip,
            target_critics=config.target_critics,
            huber_delta=config.huber_delta,
            actor_average_rate=config.actor_average_rate,
            max_nonfinite_updates=config.max_nonfinite_updates,
            max_enumerated_actions=config.max_enumerated_actions,
            target_action_samples=config.target_action_samples,
            capturable=capturable,
            grad_hook=grad_hook,
        )

    # ------------------------------------------------------------------ buffers
    def _build(self, optimizer_state: dict[str, Any] | None = None) -> None:
        """Flatten the trained parameters into one buffer and build Adam over it.

        Buffer order is actor, critic, log_alpha (when tuned): the critic's slice is
        contiguous, so the Polyak update of the (also flattened, same order) target critic
        is ONE ``lerp_``.
        """
        agent = self.agent
        actor = list(agent.actor.parameters())
        critic = list(agent.critic.parameters())
        alpha = [agent.log_alpha] if self.autotune_alpha else []
        agent.log_alpha.requires_grad_(self.autotune_alpha)
        params = actor + critic + alpha
        self.flat_param = flatten_parameters_(params)
        self.flat_grad = attach_flat_grad_(params, self.flat_param)
        self._trained = params
        n_actor, n_critic = sum(p.numel() for p in actor), sum(p.numel() for p in critic)
        #: The online critic's slice of :attr:`flat_param` and the flat target critic.
        self.flat_critic = self.flat_param[n_actor : n_actor + n_critic]
        self.flat_critic_target = flatten_parameters_(list(agent.critic_target.parameters()))
        if self.flat_critic_target.numel() != n_critic:
            raise ValueError("the target critic's parameters do not match the critic's")
        #: The online actor's slice of :attr:`flat_param` and the flat averaged actor (or None).
        self.flat_actor = self.flat_param[:n_actor]
        self.flat_actor_average: torch.Tensor | None = None
        if agent.actor_average is not None:
            self.flat_actor_average = flatten_parameters_(list(agent.actor_average.parameters()))
            if self.flat_actor_average.numel() != n_actor:
                raise ValueError("the averaged actor's parameters do not match the actor's")
        actor_lr, critic_lr, alpha_lr = self._lrs
        groups = [("actor", n_actor, actor_lr), ("critic", n_critic, critic_lr)]
        if self.autotune_alpha:
            groups.append(("alpha", 1, alpha_lr))
        self.optimizer = FlatAdam(self.flat_param, self.flat_grad, groups, capturable=self._capturable)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)

    @property
    def target_update_rate(self) -> float:
        """Polyak rate of the target critic per step."""
        return self._target_rate

    @target_update_rate.setter
    def target_update_rate(self, value: float) -> None:
        if self._capturable and value != self._target_rate:
            self._target_rate_t.fill_(value)  # a kernel with a host scalar: no sync
        self._target_rate = float(value)

    @property
    def device(self) -> torch.device:
        return self.flat_param.device

    def check_views(self) -> None:
        """Raise if a parameter or its ``.grad`` no longer lives in the flat buffers.

        That happens when the agent was moved with ``agent.to()`` (or its parameters replaced)
        after the learner was built: the optimizer would then step tensors the agent no longer
        uses. Move with :meth:`Learner.to` instead.
        """
        for flat, tensors in (
            (self.flat_param, [p.data for p in self._trained]),
            (self.flat_grad, [p.grad for p in self._trained]),
        ):
            lo = flat.data_ptr()
            hi = lo + flat.numel() * flat.element_size()
            for t in tensors:
                if t is None or t.device != flat.device or not lo <= t.data_ptr() < hi:
                    raise RuntimeError(
                        "the agent's parameters no longer live in the learner's flat buffers (was the "
                        "agent moved with agent.to()?); move it with learner.to(device)"
                    )

    def to(self, device: torch.device | str) -> Learner:
        """Move the agent, the optimizer state and the guard to ``device``; rebuild the views."""
        state = self.optimizer.state_dict()
        self.agent.to(device)
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
        self._build(moved)
        self.nonfinite_streak = self.nonfinite_streak.to(device)
        self.max_nonfinite_streak = self.max_nonfinite_streak.to(device)
        self._target_rate_t = self._target_rate_t.to(device)
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Learner:
        """An independent learner with the same weights, Adam state and guard, whose views
        point into its OWN flat buffers (a plain deep copy would copy the parameters out of
        the flat buffer and leave the copy's optimizer stepping orphaned tensors)."""
        other = copy.copy(self)
        other.agent = copy.deepcopy(self.agent, memo)
        state = {
            k: (v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v))
            for k, v in self.optimizer.state_dict().items()
        }
        other._build(state)
        other.nonfinite_streak = self.nonfinite_streak.clone()
        other.max_nonfinite_streak = self.max_nonfinite_streak.clone()
        other._target_rate_t = self._target_rate_t.clone()
        return other

    # ------------------------------------------------------------------ the step
    def step(
        self,
        batch: Batch,
        *,
        temperature: float | torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> UpdateStats:
        """One gradient step on critic, actor and alpha; then Adam and the Polyak update.

        No host synchronization: every branch is on Python values. A non-finite loss or
        gradient zeroes the step's gradient on the device (no branch) and is counted in
        ``UpdateStats.nonfinite`` and the streak; :meth:`check_nonfinite` stops training
        after too many in a row. With a zero gradient Adam still applies its decayed momentum
        for that step -- the gradient is dropped, not the whole optimizer step (skipping that
        too would need a host sync).

        Args:
            batch: a replay minibatch on the learner's device.
            temperature: the Gumbel temperature; a 0-dim tensor when the step is captured in a
                CUDA graph (:mod:`gumbel_ac.graphs`).
            generator: the estimator's noise source (``None``: torch's global RNG).
        """
        flat_grad = self.flat_grad
        flat_grad.zero_()
        total, stats = compute_losses(
            self.agent,
            batch,
            self.estimator,
            target_samples=self.target_samples,
            gamma=self.gamma,
            tau=temperature,
            autotune_alpha=self.autotune_alpha,
            generator=generator,
            target_reduce=self.target_q_reduce,
            q_clip=self.q_clip,
            target_critics=self.target_critics,
            huber_delta=self.huber_delta,
        )
        total.backward()
        # A non-finite loss poisons the gradient (inf * 0 = nan), so one check of the gradient
        # covers both -- and, under torchrun, happens after the all-reduce on every rank alike.
        flat_grad[:1].add_(total.detach() * 0.0)
        if self.grad_hook is not None:
            self.grad_hook(flat_grad)
        finite = torch.isfinite(flat_grad.sum())
        flat_grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0).mul_(finite)
        self.optimizer.step()
        with torch.no_grad():
            if self.autotune_alpha and (self.log_alpha_max is not None or self.log_alpha_min is not None):
                self.agent.log_alpha.clamp_(min=self.log_alpha_min, max=self.log_alpha_max)
            rate = self._target_rate_t if self._capturable else self._target_rate
            self.flat_critic_target.lerp_(self.flat_critic, rate)
            if self.flat_actor_average is not None and self.actor_average_rate is not None:
                self.flat_actor_average.lerp_(self.flat_actor, self.actor_average_rate)
        nonfinite = (~finite).to(self.nonfinite_streak.dtype)
        # In place: a captured CUDA graph and the checkpoint keep these tensors.
        self.nonfinite_streak.add_(nonfinite).mul_(nonfinite)
        torch.maximum(self.max_nonfinite_streak, self.nonfinite_streak, out=self.max_nonfinite_streak)
        return stats.with_nonfinite(nonfinite)

    # ------------------------------------------------------------------ the guard
    def check_nonfinite(self, max_streak: float, skipped: float = 0.0, updates: float = 0.0) -> None:
        """Raise :class:`TrainingError` when training has stopped learning from its data.

        Two rules, on host values the caller read in its one bulk transfer per window:
        ``max_streak`` (of :attr:`max_nonfinite_streak`) reached ``max_nonfinite_updates``, or
        more than :data:`MAX_SKIPPED_FRACTION` of a window's ``updates`` (at least
        :data:`MIN_WINDOW_UPDATES` of them) were ``skipped`` -- occasional bad data never makes
        a long streak, but skipping most updates is training on nothing just the same.
        """
        advice = "lower the learning rates or check the environment's rewards/observations"
        if max_streak >= self.max_nonfinite_updates:
            raise TrainingError(
                f"{int(max_streak)} consecutive updates had a non-finite loss or gradient (limit "
                f"max_nonfinite_updates={self.max_nonfinite_updates}); {advice}"
            )
        if updates >= MIN_WINDOW_UPDATES and skipped > MAX_SKIPPED_FRACTION * updates:
            raise TrainingError(
                f"{int(skipped)} of the last {int(updates)} updates had a non-finite loss or gradient and were "
                f"skipped (limit {MAX_SKIPPED_FRACTION:.0%} per log window); {advice}"
            )

    def reset_window(self) -> None:
        """Start a new window for :attr:`max_nonfinite_streak` (the running streak goes on)."""
        self.max_nonfinite_streak.zero_()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The agent's weights, Adam's state and the guard's counters (tensors and plain values)."""
        return {
            "agent": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "nonfinite_streak": self.nonfinite_streak.detach().clone(),
            "max_nonfinite_streak": self.max_nonfinite_streak.detach().clone(),
        }

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless ``state`` is a :meth:`state_dict` of a learner of this
        shape (weights, optimizer groups, guard); changes nothing."""
        for key in ("nonfinite_streak", "max_nonfinite_streak"):
            value = state.get(key)
            if not isinstance(value, torch.Tensor) or value.shape != () or not value.is_floating_point():
                raise ValueError(f"learner state {key!r} must be a 0-dim float tensor")
        agent_state = state.get("agent")
        if not isinstance(agent_state, dict):
            raise ValueError("learner state has no agent weights")
        own = self.agent.state_dict()
        if set(agent_state) != set(own):
            raise ValueError(f"agent weights have keys {sorted(agent_state)[:5]}..., expected {sorted(own)[:5]}...")
        for key, like in own.items():
            got = agent_state[key]
            if not isinstance(got, torch.Tensor) or got.shape != like.shape or got.dtype != like.dtype:
                raise ValueError(f"agent weight {key!r} does not match this agent's shape/dtype")
        self.optimizer.check_state_dict(state.get("optimizer"))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output in place (the flat views survive); checked first,
        so a mismatched state raises ``ValueError`` and leaves the learner as it was."""
        self.check_state_dict(state)
        self.agent.load_state_dict(state["agent"])  # copies in place
        self.optimizer.load_state_dict(state["optimizer"])
        self.nonfinite_streak.copy_(state["nonfinite_streak"])
        self.max_nonfinite_streak.copy_(state["max_nonfinite_streak"])
