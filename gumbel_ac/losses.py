"""The losses: the one copy of the algorithm's maths.

Every update -- native trainer, SB3 algorithm, torchrun ranks, CUDA graphs, every estimator --
computes its loss here (:func:`compute_losses`); :class:`gumbel_ac.learner.Learner` runs the
backward pass and the optimizer around it.

Critic target (expected SARSA over the next state's policy, discrete SAC;
Christodoulou 2019, arXiv:1910.07207):

    y = r + gamma * (1 - terminated) * sum_a' pi(a'|s') [min_i Q'_i(s', a') - alpha log pi(a'|s')]

Truncated transitions bootstrap (``terminated`` is False there); terminated ones do not.
With ``n_critics`` critics (an ensemble; two by default) the minimum runs over all of them, or,
``target_critics=M``, over ``M`` drawn at random per update, the actor then maximising the
ensemble's mean (REDQ, Chen et al. 2021, arXiv:2101.05982).
``target_reduce="mean"`` averages the target critics instead of taking their minimum, and
``q_clip=c`` bounds each critic's step away from its target network: the loss per sample is
``max((Q - y)^2, (Q' + clip(Q - Q', -c, c) - y)^2)`` with ``Q'`` the target critic at the same
``(s, a)`` -- the "double average Q-learning with Q-clip" of Zhou et al. 2022
(arXiv:2209.10081), which adapts PPO's value clipping (Schulman et al. 2017) to the critic.
``huber_delta=d`` replaces the squared error ``0.5 e^2`` by the Huber loss of ``e`` (equal to it
for ``|e| <= d``, ``d * (|e| - d / 2)`` beyond): a sample's gradient is at most ``d`` in size, as
in DQN (Mnih et al. 2015, "error clipping"; SB3's DQN uses ``smooth_l1_loss``, ``d = 1``).

Actor loss: ``-(estimator surrogate of min_i Q_i(s, a)) - alpha * H(pi(.|s))``; only the
estimator changes between variants (:mod:`gumbel_ac.estimators`).

Alpha loss (SAC v2, Haarnoja et al. 2018, arXiv:1812.05905):
``log_alpha * (H(pi) - target_entropy)``: alpha falls while the policy is more random than
the target, rises when it is less.

:func:`compute_losses` sums all three so that ONE backward pass and ONE optimizer step train them: the actor loss
sees the critic through detached weights (``CriticObjective``), so its gradient reaches only
the actor, and the critic loss reaches only the critic. The actor therefore follows the
critic of the start of the step (simultaneous, not sequential, updates -- as in most fused
actor-critic implementations); measured here, this halves the op count of a step.

Shape legend: ``B`` batch, ``D`` observation features, ``K`` logits, ``H`` heads, ``J``
joint actions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from gumbel_ac.agent import Agent, reduce_critics
from gumbel_ac.distributions import sample_gumbel
from gumbel_ac.estimators import EstimatorFn


@dataclass(frozen=True)
class Batch:
    """A replay minibatch (all on one device)."""

    obs_BD: torch.Tensor
    action_BH: torch.Tensor
    reward_B: torch.Tensor
    next_obs_BD: torch.Tensor
    terminated_B: torch.Tensor
    #: The bootstrap's discount per row, ``gamma ** k`` for a ``k``-step return (an n-step
    #: replay, :class:`gumbel_ac.buffer.ReplayBuffer` with ``n_step > 1``, or SB3's
    #: ``NStepReplayBuffer``); ``None``: one-step rows, the discount is ``gamma``.
    discount_B: torch.Tensor | None = None


@dataclass(frozen=True)
class UpdateStats:
    """Scalars of one gradient step, as 0-dim device tensors (read in bulk by the logger)."""

    critic_loss: torch.Tensor
    actor_loss: torch.Tensor
    alpha: torch.Tensor
    entropy: torch.Tensor
    q_mean: torch.Tensor
    nonfinite: torch.Tensor

    def with_nonfinite(self, nonfinite: torch.Tensor) -> UpdateStats:
        """These stats with the step's non-finite flag set (the learner knows it last)."""
        return dataclasses.replace(self, nonfinite=nonfinite)

    def as_tensor(self) -> torch.Tensor:
        return torch.stack([self.critic_loss, self.actor_loss, self.alpha, self.entropy, self.q_mean, self.nonfinite])

    NAMES = (
        "losses/critic",
        "losses/actor",
        "charts/alpha",
        "charts/entropy",
        "losses/q_mean",
        "charts/nonfinite_updates",
    )


def soft_state_value(agent: Agent, logits_BK: torch.Tensor, q_BJ: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``V(s) = sum_a pi(a|s) [Q(s, a) - alpha log pi(a|s)]`` ``[B]``, finite with masked actions."""
    logp_BJ = agent.spec.joint_log_probs(logits_BK)
    probs_BJ = logp_BJ.exp()
    inner = torch.where(probs_BJ > 0, q_BJ - alpha * logp_BJ, torch.zeros_like(q_BJ))
    return (probs_BJ * inner).sum(-1)


def draw_target_critics(
    num_critics: int, subset: int, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """``subset`` distinct member indices of a ``num_critics`` ensemble, uniformly at random:
    the in-target minimisation set of REDQ (Chen et al. 2021, arXiv:2101.05982, Alg. 1), drawn
    anew for every update (``argsort`` of uniforms, not ``randperm``: capturable in a CUDA graph)."""
    return torch.rand(num_critics, device=device, generator=generator).argsort()[:subset]


def sampled_state_value(
    agent: Agent,
    logits_BK: torch.Tensor,
    obs_BD: torch.Tensor,
    alpha: torch.Tensor,
    samples: int,
    generator: torch.Generator | None,
    reduce: str = "min",
    members: torch.Tensor | None = None,
) -> torch.Tensor:
    """``V(s)`` estimated from ``samples`` draws ``a_j ~ pi(.|s)``: ``[B]``, no enumeration.

    ``(1/N) sum_j [min_i Q'_i(s, a_j) - alpha log pi(a_j|s)]`` is an unbiased estimate of
    :func:`soft_state_value` whose variance falls as ``1/N``; it costs ``N`` target-critic
    passes over the batch and ``O(N * K)`` memory, whatever the number of joint actions
    (a ``MultiDiscrete([8] * 8)`` space is 8 heads of 8 logits here, not 16.7M actions). The
    draws are per-head Gumbel-max samples (exactly ``pi``'s factorised distribution).
    """
    spec = agent.spec
    logits_NBK = logits_BK.expand(samples, -1, -1).reshape(-1, logits_BK.shape[-1])
    noise = sample_gumbel(logits_NBK.shape, generator=generator, device=logits_BK.device, dtype=logits_BK.dtype)
    index_NBH = spec.mode(logits_NBK + noise)
    feat_BF = agent.critic_target.encode(obs_BD)  # once, not once per sample
    feat_NBF = feat_BF.expand(samples, -1, -1).reshape(-1, feat_BF.shape[-1])
    q_NB = reduce_critics(agent.critic_target.q(feat_NBF, spec.onehot(index_NBH, dtype=feat_BF.dtype)), reduce, members)
    logp_NB = spec.log_prob(logits_NBK, index_NBH)
    return (q_NB - alpha * logp_NB).reshape(samples, -1).mean(dim=0)


def critic_target(
    agent: Agent,
    next_logits_BK: torch.Tensor,
    batch: Batch,
    gamma: float,
    alpha: torch.Tensor,
    *,
    samples: int | None = None,
    generator: torch.Generator | None = None,
    reduce: str = "min",
    target_critics: int | None = None,
) -> torch.Tensor:
    """The expected-SARSA soft target ``y`` ``[B]`` (no gradient).

    ``reduce``: how the target critics combine (:func:`gumbel_ac.agent.reduce_critics`); ``target_critics=M``:
    over ``M`` members drawn at random from the ensemble for this update (REDQ), else over all.

    ``samples=None`` enumerates every joint action (exact; for small action sets);
    ``samples=N`` averages ``N`` sampled next actions (:func:`sampled_state_value`).
    An n-step row (``batch.discount_B`` set) holds the discounted sum of its ``k`` rewards and
    the state ``k`` steps on; its bootstrap is discounted by ``gamma ** k`` (``discount_B``).
    ``gamma == 0`` (independent rounds, e.g. a contextual bandit): the next state's value is
    multiplied by zero, so it is not computed -- no target-critic pass, no next-action draws
    from ``generator`` -- and ``y`` is the reward (a copy), as ``r + 0 * V`` is for finite ``V``.
    """
    if gamma == 0.0:
        return batch.reward_B.detach().clone()
    with torch.no_grad():
        members = None
        if target_critics is not None:
            num = agent.critic_target.num_critics
            members = draw_target_critics(num, target_critics, batch.next_obs_BD.device, generator)
        if samples is None:
            onehot_JK = agent.spec.joint_onehot_on(batch.next_obs_BD.device)
            q_next_EBJ = agent.critic_target.all_actions(batch.next_obs_BD, onehot_JK)
            v_next_B = soft_state_value(agent, next_logits_BK, reduce_critics(q_next_EBJ, reduce, members), alpha)
        else:
            v_next_B = sampled_state_value(
                agent, next_logits_BK, batch.next_obs_BD, alpha, samples, generator, reduce, members
            )
        not_done = 1.0 - batch.terminated_B.to(v_next_B.dtype)
        discount: float | torch.Tensor = gamma if batch.discount_B is None else batch.discount_B
        return batch.reward_B + discount * not_done * v_next_B


def critic_loss(
    agent: Agent,
    batch: Batch,
    target_B: torch.Tensor,
    feat_BF: torch.Tensor | None = None,
    q_clip: float | None = None,
    huber_delta: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_i 0.5 * mean_B (Q_i(s, a) - y)^2`` and the mean Q (for logging). ``feat_BF``: the
    critic encoder's features of ``batch.obs`` (with their graph), when the caller has them.

    ``q_clip=c``: each sample's squared error is the larger of the plain one and that of
    ``Q'_i + clip(Q_i - Q'_i, -c, c)``, ``Q'_i`` the target critic's value of the same
    ``(s, a)`` (Zhou et al. 2022, arXiv:2209.10081): where ``Q_i`` has moved more than ``c``
    from ``Q'_i`` and the clipped value is the worse fit, the sample's gradient is zero, so a
    step cannot push the critic further from its target network than ``c``.

    ``huber_delta=d``: each sample's ``0.5 e^2`` becomes ``huber_d(e)`` (quadratic within ``d``,
    linear beyond it; torch's ``huber_loss``), so one large TD error moves the critic by a
    bounded step. With both, each sample takes the larger of its two Huber losses, as ``q_clip``
    takes the larger squared error.
    """
    if feat_BF is None:
        feat_BF = agent.critic.encode(batch.obs_BD)
    action_BK = agent.spec.onehot(batch.action_BH, dtype=feat_BF.dtype)
    q_2B = agent.critic.q(feat_BF, action_BK)

    def per_sample(pred_2B: torch.Tensor) -> torch.Tensor:
        if huber_delta is None:
            return 0.5 * (pred_2B - target_B).pow(2)
        return torch.nn.functional.huber_loss(pred_2B, target_B.expand_as(pred_2B), reduction="none", delta=huber_delta)

    loss_2B = per_sample(q_2B)
    if q_clip is not None:
        with torch.no_grad():
            q_old_2B = agent.critic_target.q(agent.critic_target.encode(batch.obs_BD), action_BK)
        clipped_2B = q_old_2B + (q_2B - q_old_2B).clamp(-q_clip, q_clip)
        loss_2B = torch.maximum(loss_2B, per_sample(clipped_2B))
    return loss_2B.mean(dim=1).sum(), q_2B.detach().mean()


def actor_loss(
    agent: Agent,
    obs_BD: torch.Tensor,
    logits_BK: torch.Tensor,
    estimator: EstimatorFn,
    *,
    tau: float | torch.Tensor,
    alpha: torch.Tensor,
    generator: torch.Generator | None,
    enumerable: bool = True,
    features: torch.Tensor | None = None,
    critic_reduce: str = "min",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``-mean(surrogate + alpha * H)`` and the mean entropy (detached). The entropy is the
    sum of the heads' entropies (analytic for a factorised policy: no enumeration).
    ``features``: the critic encoder's detached features of ``obs`` when the caller has them.
    ``critic_reduce``: the objective is the critics' minimum, or (``"mean"``, REDQ's actor)
    their average."""
    objective = agent.q_objective(obs_BD, enumerable=enumerable, features=features, reduce=critic_reduce)
    out = estimator(logits_BK, objective, agent.spec, tau=tau, generator=generator)
    entropy_B = agent.spec.entropy(logits_BK)
    loss = -(out.surrogate_B + alpha * entropy_B).mean()
    return loss, entropy_B.detach().mean()


def alpha_loss(agent: Agent, entropy: torch.Tensor) -> torch.Tensor:
    """``log_alpha * (H - target)`` (entropy detached): gradient only into ``log_alpha``."""
    return agent.log_alpha * (entropy.detach() - agent.target_entropy)


def compute_losses(
    agent: Agent,
    batch: Batch,
    estimator: EstimatorFn,
    *,
    gamma: float,
    tau: float | torch.Tensor,
    autotune_alpha: bool,
    generator: torch.Generator | None,
    target_samples: int | None = None,
    target_reduce: str = "min",
    q_clip: float | None = None,
    target_critics: int | None = None,
    huber_delta: float | None = None,
) -> tuple[torch.Tensor, UpdateStats]:
    """The step's total loss (critic + actor [+ alpha]) and its statistics.

    ``target_reduce`` and ``q_clip``: the critic target's combination of the target critics
    and the Q-clip of the critic loss (module docstring; defaults: clipped double Q, no clip).
    ``target_critics=M`` (REDQ): the target combines ``M`` critics drawn from the ensemble per
    update and the actor's objective is the mean of all (Chen et al. 2021, Alg. 1).
    ``huber_delta``: the critic loss's Huber threshold (``None``: squared error).

    ``target_samples=None``: the joint action set is small, and the critic target and the
    estimators enumerate it (exact). ``target_samples=N``: nothing enumerates -- the target
    averages ``N`` sampled next actions and the estimators that need every action's value
    sample instead (``score``) or refuse (``exact``).

    One backward pass of ``total`` gives every trained parameter its gradient: the actor
    loss sees the critic through detached weights (``CriticObjective``), so its gradient
    reaches only the actor, and the critic loss reaches only the critic.
    :class:`gumbel_ac.learner.Learner` runs that backward and the optimizer; the returned
    stats' ``nonfinite`` is filled in there.
    """
    alpha = agent.alpha.detach()
    # One actor pass over [obs; next_obs] (fewer ops than two).
    batch_size = batch.obs_BD.shape[0]
    both_logits = agent.actor(torch.cat([batch.obs_BD, batch.next_obs_BD], dim=0))
    logits_BK, next_logits_BK = both_logits[:batch_size], both_logits[batch_size:].detach()

    target_B = critic_target(
        agent,
        next_logits_BK,
        batch,
        gamma,
        alpha,
        samples=target_samples,
        generator=generator,
        reduce=target_reduce,
        target_critics=target_critics,
    )
    # The critic encodes the states once: with its graph for the critic loss, detached for the
    # actor's objective (a convolutional encoder is most of an update's cost on images).
    feat_BF = agent.critic.encode(batch.obs_BD)
    c_loss, q_mean = critic_loss(agent, batch, target_B, feat_BF, q_clip=q_clip, huber_delta=huber_delta)
    a_loss, entropy = actor_loss(
        agent,
        batch.obs_BD,
        logits_BK,
        estimator,
        tau=tau,
        alpha=alpha,
        generator=generator,
        enumerable=target_samples is None,
        features=feat_BF.detach(),
        critic_reduce="min" if target_critics is None else "mean",
    )
    total = c_loss + a_loss
    if autotune_alpha:
        total = total + alpha_loss(agent, entropy)
    stats = UpdateStats(
        critic_loss=c_loss.detach(),
        actor_loss=a_loss.detach(),
        alpha=alpha,
        entropy=entropy,
        q_mean=q_mean,
        nonfinite=torch.zeros_like(alpha),
    )
    return total, stats
