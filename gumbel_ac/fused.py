"""The gumbel-st update with a hand-written backward pass (``--fused-update``).

Why: on a CPU the update of :func:`gumbel_ac.losses.update` is per-op overhead bound: ~11M
multiply-adds (~0.25 ms of arithmetic on one core) cost ~1.1 ms, because autograd records and
replays ~200 small ops. This module computes the same losses and the same gradient with no
autograd: the backward of each MLP layer is written out (``dW = h^T g``, ``db = sum g``,
``dh = g W^T`` masked by ``h > 0``) and written straight into the flat gradient buffer, and
the critic's observation half of the first layer is computed once and shared by the critic
loss and the actor's critic pass.

This is a second copy of the gradient maths, so it is held to the first:
tests/test_fused.py checks that the flat gradient, the losses and the parameters after a step
equal :func:`gumbel_ac.losses.update`'s (autograd) on random agents, batches and temperatures.
The forward maths is not copied where it can be shared: the critic target, Gumbel noise, the
relaxed softmax and the optimizer tail are the functions :func:`update` uses.

Scope (:func:`fused_unsupported` says why not otherwise): the ``gumbel-st`` estimator, one
categorical action head, finite logits (no action masks -- the batched and Gymnasium envs
here have none). Shape legend as in :mod:`gumbel_ac.losses`; ``L`` layers, ``2`` the twin axis.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from gumbel_ac.agent import Agent
from gumbel_ac.distributions import relaxed_softmax, sample_gumbel
from gumbel_ac.losses import Batch, UpdateStats, apply_gradient, critic_target
from gumbel_ac.optim import FlatAdam

__all__ = ["FusedUpdate", "fused_unsupported"]

_relu_backward = torch.ops.aten.threshold_backward  # grad * (h > 0), one op


def fused_unsupported(agent: Agent, estimator_name: str) -> str | None:
    """Why the fused update cannot run this agent/estimator (None: it can)."""
    if estimator_name != "gumbel-st":
        return f"it implements gumbel-st only (got {estimator_name})"
    if agent.spec.num_heads != 1:
        return "it supports one action head (MultiDiscrete uses the autograd update)"
    return None


class FusedUpdate:
    """One gumbel-st gradient step on critic, actor and alpha, then Adam and Polyak.

    Same contract as :func:`gumbel_ac.losses.update` (it returns the same
    :class:`UpdateStats`, masks non-finite steps the same way and calls ``grad_hook``).
    """

    def __init__(self, agent: Agent, optimizer: FlatAdam, flat_grad: torch.Tensor) -> None:
        self.agent, self.optimizer, self.flat_grad = agent, optimizer, flat_grad
        self.linears: list[nn.Linear] = [m for m in agent.actor.net if isinstance(m, nn.Linear)]
        critic = agent.critic
        self.hidden = list(zip(critic.hidden_w, critic.hidden_b))

    def _critic_pass(self, obs_part: torch.Tensor, action_B: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Post-ReLU activations per layer and ``Q`` ``[2, B]`` at integer actions (no autograd)."""
        critic = self.agent.critic
        # onehot(a) @ W_act is a row gather: the first layer is obs @ W_obs + W_act[a] + b.
        h = torch.relu_(obs_part + critic.w_act[:, action_B])
        acts = [h]
        for weight, bias in self.hidden:
            h = torch.relu_(torch.baddbmm(bias, h, weight))
            acts.append(h)
        q = torch.baddbmm(critic.b_out, h, critic.w_out).squeeze(-1)
        return acts, q

    def _critic_backward(self, acts: list[torch.Tensor], g_q: torch.Tensor, *, param_grads: bool) -> torch.Tensor:
        """From ``dL/dQ`` ``[2, B]`` back to the first layer's pre-activation ``[2, B, W]``.

        ``param_grads``: also write ``dL/dW``, ``dL/db`` of the layers after the first into the
        critic's ``.grad`` views (the critic loss); without it only the input gradient flows
        (the actor's pass through the detached critic).
        """
        critic = self.agent.critic
        g_out = g_q.unsqueeze(-1)
        if param_grads:
            torch.bmm(acts[-1].transpose(1, 2), g_out, out=critic.w_out.grad)
            torch.sum(g_out, dim=1, keepdim=True, out=critic.b_out.grad)
        g = _relu_backward(g_out * critic.w_out.transpose(1, 2), acts[-1], 0)
        for (weight, bias), h in zip(reversed(self.hidden), reversed(acts[:-1])):
            if param_grads:
                torch.bmm(h.transpose(1, 2), g, out=weight.grad)
                torch.sum(g, dim=1, keepdim=True, out=bias.grad)
            g = _relu_backward(torch.bmm(g, weight.transpose(1, 2)), h, 0)
        return g

    @torch.no_grad()
    def __call__(
        self,
        batch: Batch,
        *,
        gamma: float,
        tau: float | torch.Tensor,
        target_update_rate: float,
        autotune_alpha: bool,
        generator: torch.Generator | None,
        grad_hook: Callable[[torch.Tensor], None] | None = None,
    ) -> UpdateStats:
        agent, flat_grad = self.agent, self.flat_grad
        critic = agent.critic
        alpha = agent.alpha.detach()
        obs, batch_size = batch.obs_BD, batch.obs_BD.shape[0]
        flat_grad.zero_()

        # Actor forward over [obs; next_obs], keeping the post-ReLU activations.
        x = torch.cat([obs, batch.next_obs_BD], dim=0)
        actor_acts = [x]
        for linear in self.linears[:-1]:
            x = torch.relu_(torch.addmm(linear.bias, x, linear.weight.t()))
            actor_acts.append(x)
        last = self.linears[-1]
        both_logits = torch.addmm(last.bias, x, last.weight.t())
        logits, next_logits = both_logits[:batch_size], both_logits[batch_size:]

        target_B = critic_target(agent, next_logits, batch, gamma, alpha)

        # Critic loss at the replay actions; its backward into the critic's parameters.
        obs_part = torch.baddbmm(critic.b_in, obs.expand(2, -1, -1), critic.w_obs)  # shared below
        action_B = batch.action_BH[:, 0]
        acts, q = self._critic_pass(obs_part, action_B)
        diff = q - target_B
        c_loss = 0.5 * diff.square().mean(dim=1).sum()
        g = self._critic_backward(acts, diff / batch_size, param_grads=True)
        torch.bmm(obs.t().expand(2, -1, -1), g, out=critic.w_obs.grad)
        torch.sum(g, dim=1, keepdim=True, out=critic.b_in.grad)
        # onehot(a)^T g: a matmul rather than index_add_ (deterministic on CUDA too).
        onehot_KB = agent.spec.onehot(action_B, dtype=g.dtype).t()
        torch.bmm(onehot_KB.expand(2, -1, -1), g, out=critic.w_act.grad)

        # Actor loss: straight-through Gumbel-Softmax through min_i Q_i(s, onehot(argmax(l + G))).
        z = logits + sample_gumbel(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        index = z.argmax(-1)
        y_soft = relaxed_softmax(z, tau)
        acts_a, q_a = self._critic_pass(obs_part, index)
        q_min = q_a.amin(dim=0)
        logp = torch.log_softmax(logits, dim=-1)
        p = logp.exp()
        entropy_B = -(p * logp).sum(-1)
        a_loss = -(q_min + alpha * entropy_B).mean()
        # d(-mean q_min)/dQ_i: amin's gradient is shared evenly between tied twins (as autograd's).
        is_min = (q_a == q_min).to(q_a.dtype)
        g_qa = is_min / (is_min.sum(dim=0) * -batch_size)
        g_pre = self._critic_backward(acts_a, g_qa, param_grads=False)
        g_y = torch.bmm(g_pre, critic.w_act.transpose(1, 2)).sum(dim=0)  # dL/d(one-hot) [B, K]
        # Back through y = softmax((z - max z) / tau) to the logits (z = logits + G) ...
        g_logits = torch._softmax_backward_data(g_y, y_soft, -1, y_soft.dtype).div_(tau)
        # ... plus the entropy bonus: d(-alpha mean H)/dl = alpha/B * p (log p + H).
        g_logits.add_((p * (logp + entropy_B.unsqueeze(-1))).mul_(alpha / batch_size))

        # Actor backward over the obs rows only.
        g = g_logits
        for i in range(len(self.linears) - 1, -1, -1):
            linear, h = self.linears[i], actor_acts[i][:batch_size]
            torch.mm(g.t(), h, out=linear.weight.grad)
            torch.sum(g, dim=0, out=linear.bias.grad)
            if i > 0:
                g = _relu_backward(torch.mm(g, linear.weight), h, 0)

        entropy = entropy_B.mean()
        total = c_loss + a_loss
        if autotune_alpha:
            agent.log_alpha.grad.copy_(entropy - agent.target_entropy)
            total = total + agent.log_alpha.detach() * (entropy - agent.target_entropy)
        finite = apply_gradient(agent, self.optimizer, flat_grad, total, target_update_rate, grad_hook)
        return UpdateStats(
            critic_loss=c_loss,
            actor_loss=a_loss,
            alpha=alpha,
            entropy=entropy,
            q_mean=q.mean(),
            nonfinite=(~finite).to(alpha.dtype),
        )
