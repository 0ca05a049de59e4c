"""The losses and the gradient step: the reference copy of the algorithm's maths.

(:mod:`gumbel_ac.fused` computes the gumbel-st step's gradient by hand for speed and is tested
against :func:`update` here; every other estimator, and the SB3 algorithm, run this module.)

Critic target (expected SARSA over the next state's policy, discrete SAC;
Christodoulou 2019, arXiv:1910.07207):

    y = r + gamma * (1 - terminated) * sum_a' pi(a'|s') [min_i Q'_i(s', a') - alpha log pi(a'|s')]

Truncated transitions bootstrap (``terminated`` is False there); terminated ones do not.

Actor loss: ``-(estimator surrogate of min_i Q_i(s, a)) - alpha * H(pi(.|s))``; only the
estimator changes between variants (:mod:`gumbel_ac.estimators`).

Alpha loss (SAC v2, Haarnoja et al. 2018, arXiv:1812.05905):
``log_alpha * (H(pi) - target_entropy)``: alpha falls while the policy is more random than
the target, rises when it is less.

:func:`update` runs all three with ONE backward pass and ONE optimizer step: the actor loss
sees the critic through detached weights (``CriticObjective``), so its gradient reaches only
the actor, and the critic loss reaches only the critic. The actor therefore follows the
critic of the start of the step (simultaneous, not sequential, updates -- as in most fused
actor-critic implementations); measured here, this halves the op count of a step.

Shape legend: ``B`` batch, ``D`` observation features, ``K`` logits, ``H`` heads, ``J``
joint actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from gumbel_ac.agent import Agent
from gumbel_ac.estimators import EstimatorFn
from gumbel_ac.optim import FlatAdam, attach_flat_grad_, flatten_parameters_


@dataclass(frozen=True)
class Batch:
    """A replay minibatch (all on one device)."""

    obs_BD: torch.Tensor
    action_BH: torch.Tensor
    reward_B: torch.Tensor
    next_obs_BD: torch.Tensor
    terminated_B: torch.Tensor


@dataclass(frozen=True)
class UpdateStats:
    """Scalars of one gradient step, as 0-dim device tensors (read in bulk by the logger)."""

    critic_loss: torch.Tensor
    actor_loss: torch.Tensor
    alpha: torch.Tensor
    entropy: torch.Tensor
    q_mean: torch.Tensor
    nonfinite: torch.Tensor

    def as_tensor(self) -> torch.Tensor:
        return torch.stack(
            [self.critic_loss, self.actor_loss, self.alpha, self.entropy, self.q_mean, self.nonfinite]
        )

    NAMES = ("losses/critic", "losses/actor", "charts/alpha", "charts/entropy", "losses/q_mean", "charts/nonfinite_updates")


def soft_state_value(agent: Agent, logits_BK: torch.Tensor, q_BJ: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``V(s) = sum_a pi(a|s) [Q(s, a) - alpha log pi(a|s)]`` ``[B]``, finite with masked actions."""
    logp_BJ = agent.spec.joint_log_probs(logits_BK)
    probs_BJ = logp_BJ.exp()
    inner = torch.where(probs_BJ > 0, q_BJ - alpha * logp_BJ, torch.zeros_like(q_BJ))
    return (probs_BJ * inner).sum(-1)


def critic_target(
    agent: Agent,
    next_logits_BK: torch.Tensor,
    batch: Batch,
    gamma: float,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """The expected-SARSA soft target ``y`` ``[B]`` (no gradient)."""
    with torch.no_grad():
        q_next_BJ = agent.critic_target.all_actions(batch.next_obs_BD, agent.spec.joint_onehot_JK).amin(dim=0)
        v_next_B = soft_state_value(agent, next_logits_BK, q_next_BJ, alpha)
        not_done = 1.0 - batch.terminated_B.to(v_next_B.dtype)
        return batch.reward_B + gamma * not_done * v_next_B


def critic_loss(agent: Agent, batch: Batch, target_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_i 0.5 * mean_B (Q_i(s, a) - y)^2`` and the mean Q (for logging)."""
    action_BK = agent.spec.onehot(batch.action_BH, dtype=batch.obs_BD.dtype)
    q_2B = agent.critic(batch.obs_BD, action_BK)
    loss = 0.5 * (q_2B - target_B).pow(2).mean(dim=1).sum()
    return loss, q_2B.detach().mean()


def actor_loss(
    agent: Agent,
    obs_BD: torch.Tensor,
    logits_BK: torch.Tensor,
    estimator: EstimatorFn,
    *,
    tau: float | torch.Tensor,
    alpha: torch.Tensor,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``-mean(surrogate + alpha * H)`` and the mean entropy (detached)."""
    out = estimator(logits_BK, agent.q_objective(obs_BD), agent.spec, tau=tau, generator=generator)
    entropy_B = agent.spec.entropy(logits_BK)
    loss = -(out.surrogate_B + alpha * entropy_B).mean()
    return loss, entropy_B.detach().mean()


def alpha_loss(agent: Agent, entropy: torch.Tensor) -> torch.Tensor:
    """``log_alpha * (H - target)`` (entropy detached): gradient only into ``log_alpha``."""
    return agent.log_alpha * (entropy.detach() - agent.target_entropy)


def make_optimizer(
    agent: Agent,
    *,
    actor_lr: float,
    critic_lr: float,
    alpha_lr: float,
    autotune_alpha: bool,
    capturable: bool = False,
) -> tuple[FlatAdam, torch.Tensor]:
    """Flatten the agent's trained parameters and return ``(FlatAdam, flat_grad)``.

    Buffer order is actor, critic, log_alpha (when tuned): the critic's slice is contiguous,
    so the Polyak update of the (also flattened) target critic is ONE ``lerp_``. Every
    ``.grad`` is a view into ``flat_grad``: zeroing, the finiteness check, masking and (for
    DDP) the all-reduce are one op each. Call after ``agent.to(device)``.
    """
    actor = list(agent.actor.parameters())
    critic = list(agent.critic.parameters())
    alpha = [agent.log_alpha] if autotune_alpha else []
    agent.log_alpha.requires_grad_(autotune_alpha)
    params = actor + critic + alpha
    flat_param = flatten_parameters_(params)
    flat_grad = attach_flat_grad_(params, flat_param)
    n_actor, n_critic = sum(p.numel() for p in actor), sum(p.numel() for p in critic)
    groups = [("actor", n_actor, actor_lr), ("critic", n_critic, critic_lr)]
    if autotune_alpha:
        groups.append(("alpha", 1, alpha_lr))
    # Target critic: same parameter order as the critic, one flat buffer.
    agent.flat_critic = flat_param[n_actor : n_actor + n_critic]
    agent.flat_critic_target = flatten_parameters_(list(agent.critic_target.parameters()))
    return FlatAdam(flat_param, flat_grad, groups, capturable=capturable), flat_grad


def polyak_update(agent: Agent, rate: float) -> None:
    """``target <- target + rate * (online - target)``: one op on the flat buffers."""
    with torch.no_grad():
        flat_target = getattr(agent, "flat_critic_target", None)
        if flat_target is not None:
            flat_target.lerp_(agent.flat_critic, rate)
        else:
            torch._foreach_lerp_(list(agent.critic_target.parameters()), list(agent.critic.parameters()), rate)


def apply_gradient(
    agent: Agent,
    optimizer: FlatAdam,
    flat_grad: torch.Tensor,
    total: torch.Tensor,
    target_update_rate: float,
    grad_hook: Callable[[torch.Tensor], None] | None,
) -> torch.Tensor:
    """The step's tail once ``flat_grad`` holds the gradient of ``total``: hook, non-finite
    mask, Adam, Polyak. Returns the 0-dim "gradient was finite" flag (no host sync)."""
    # A non-finite loss poisons the gradient (inf * 0 = nan), so one check of the gradient
    # covers both -- and, under DDP, happens after the all-reduce on every rank alike.
    flat_grad[:1].add_(total.detach() * 0.0)
    if grad_hook is not None:
        grad_hook(flat_grad)
    finite = torch.isfinite(flat_grad.sum())
    flat_grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0).mul_(finite)
    optimizer.step()
    polyak_update(agent, target_update_rate)
    return finite


def update(
    agent: Agent,
    optimizer: FlatAdam,
    flat_grad: torch.Tensor,
    batch: Batch,
    estimator: EstimatorFn,
    *,
    gamma: float,
    tau: float | torch.Tensor,
    target_update_rate: float,
    autotune_alpha: bool,
    generator: torch.Generator | None,
    grad_hook: Callable[[torch.Tensor], None] | None = None,
) -> UpdateStats:
    """One gradient step on critic, actor and alpha; then the Polyak target update.

    No host synchronization: every branch is on Python values. A non-finite loss or gradient
    zeroes the step's gradient on the device (no branch) and is counted in
    ``UpdateStats.nonfinite``; the trainer stops after too many in a row. With a zero
    gradient Adam still applies its decayed momentum for that step -- the gradient is
    dropped, not the whole optimizer step (skipping that too would need a host sync).

    Args:
        flat_grad: the flat buffer the parameters' ``.grad`` views live in
            (:func:`make_optimizer`).
        tau: the Gumbel temperature; a 0-dim tensor when the step is captured in a CUDA graph
            (:mod:`gumbel_ac.graphs`).
        grad_hook: called with ``flat_grad`` after backward, before masking (the distributed
            trainer all-reduces it there).
    """
    alpha = agent.alpha.detach()
    # One actor pass over [obs; next_obs] (fewer ops than two).
    batch_size = batch.obs_BD.shape[0]
    both_logits = agent.actor(torch.cat([batch.obs_BD, batch.next_obs_BD], dim=0))
    logits_BK, next_logits_BK = both_logits[:batch_size], both_logits[batch_size:].detach()

    target_B = critic_target(agent, next_logits_BK, batch, gamma, alpha)
    c_loss, q_mean = critic_loss(agent, batch, target_B)
    a_loss, entropy = actor_loss(agent, batch.obs_BD, logits_BK, estimator, tau=tau, alpha=alpha, generator=generator)
    total = c_loss + a_loss
    if autotune_alpha:
        total = total + alpha_loss(agent, entropy)

    flat_grad.zero_()
    total.backward()
    finite = apply_gradient(agent, optimizer, flat_grad, total, target_update_rate, grad_hook)
    return UpdateStats(
        critic_loss=c_loss.detach(),
        actor_loss=a_loss.detach(),
        alpha=alpha,
        entropy=entropy,
        q_mean=q_mean,
        nonfinite=(~finite).to(alpha.dtype),
    )
