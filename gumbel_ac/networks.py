"""Actor and twin critic networks.

The twin critic keeps both Q-networks' weights stacked on a leading axis of size 2 and runs
them with batched matmuls: one op per layer for both critics instead of two. The update is
per-op overhead bound at these sizes (a gradient step is a few hundred small ops; see
benchmarks/update_cost.py), so fewer, larger ops is the lever.

The critic's first layer is split into an observation part and an action part,
``h1 = obs @ W_s + a @ W_a + b``. Because it is linear in the action, ``Q(s, a)`` for *every*
joint action needs the observation part once and a ``[J, H]`` table ``onehot_JK @ W_a``: the
expected-SARSA target and the exact/score estimators get all action values from one pass.
``W_a`` starts at zero (measured here: faster, more stable early learning on CartPole; the
critic first learns V(s), then action differences).

Both networks start with an observation encoder (:mod:`gumbel_ac.encoders`): the identity
for vector observations, a convolution stack for images. The twin critics share one encoder and
run their stacked MLPs on its features ``F``; :meth:`TwinCritic.encode` and :meth:`TwinCritic.q`
are the two halves, so a caller that needs ``Q`` at several actions of the same states (the
estimators, the sampled target) encodes once.

Shape legend: ``B`` batch, ``D`` observation row (flat), ``F`` encoder features, ``K``
concatenated action logits, ``J`` joint actions, ``W`` hidden width, ``2`` the twin axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from gumbel_ac.encoders import FlatEncoder, out_dim


def _init_linear_(weight: torch.Tensor, bias: torch.Tensor, fan_in: int) -> None:
    """PyTorch's ``nn.Linear`` default init (Kaiming-uniform with a=sqrt(5)), for stacked weights."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        bias.uniform_(-bound, bound)


class Actor(nn.Module):
    """Observation ``[B, D]`` -> logits ``[B, K]``: the encoder, then an MLP with ReLU.

    ``encoder`` defaults to the identity on ``obs_dim`` float features (:class:`FlatEncoder`).
    """

    def __init__(
        self, obs_dim: int, num_logits: int, hidden_sizes: Sequence[int], encoder: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder if encoder is not None else FlatEncoder(obs_dim)
        layers: list[nn.Module] = []
        last = out_dim(self.encoder)
        for width in hidden_sizes:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        layers.append(nn.Linear(last, num_logits))
        self.net = nn.Sequential(*layers)

    def forward(self, obs_BD: torch.Tensor) -> torch.Tensor:
        return self.net(self.encoder(obs_BD))


class TwinCritic(nn.Module):
    """``num_critics`` Q-networks ``Q_i(s, a)`` with stacked weights (two, the twin of clipped
    double Q, by default; more for an ensemble, SB3's ``n_critics``, REDQ's ``N``); ``a`` a
    (relaxed) concatenated one-hot.

    Parameters are ``[E, in, out]`` weights and ``[E, 1, out]`` biases (``E = num_critics``), applied with
    ``torch.baddbmm``. ``detach_params=True`` evaluates with detached weights: the actor loss
    then sends gradient into the action (and the actor) but never into the critic, so actor
    and critic losses can share one backward pass. ``encoder`` (shared by the twins) maps the
    observation row to the ``F`` features the MLPs read; the identity by default.
    ``layer_norm`` normalises every hidden pre-activation (learned gain and shift per twin).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int],
        encoder: nn.Module | None = None,
        layer_norm: bool = False,
        num_critics: int = 2,
    ) -> None:
        super().__init__()
        if not hidden_sizes:
            raise ValueError("the critic needs at least one hidden layer")
        if num_critics < 1:
            raise ValueError(f"the critic ensemble needs at least one member, got {num_critics}")
        e = self.num_critics = int(num_critics)
        widths = list(hidden_sizes)
        self.encoder = encoder if encoder is not None else FlatEncoder(obs_dim)
        obs_dim = out_dim(self.encoder)  # the MLPs see the encoder's features
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.w_obs = nn.Parameter(torch.empty(e, obs_dim, widths[0]))
        self.w_act = nn.Parameter(torch.zeros(e, action_dim, widths[0]))
        self.b_in = nn.Parameter(torch.empty(e, 1, widths[0]))
        _init_linear_(self.w_obs, self.b_in, obs_dim + action_dim)
        self.hidden_w = nn.ParameterList()
        self.hidden_b = nn.ParameterList()
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            weight, bias = nn.Parameter(torch.empty(e, w_in, w_out)), nn.Parameter(torch.empty(e, 1, w_out))
            _init_linear_(weight, bias, w_in)
            self.hidden_w.append(weight)
            self.hidden_b.append(bias)
        self.w_out = nn.Parameter(torch.empty(e, widths[-1], 1))
        self.b_out = nn.Parameter(torch.empty(e, 1, 1))
        _init_linear_(self.w_out, self.b_out, widths[-1])
        # Layer norm before every hidden ReLU (gain 1, shift 0 at the start), per twin: the
        # critic regulariser of Ball et al. 2023 (RLPD, arXiv:2302.02948) and Nauman et al.
        # 2024 (ICML, PMLR 235), which bound Q's growth off the data.
        self.layer_norm = bool(layer_norm)
        self.ln_gain = nn.ParameterList()
        self.ln_shift = nn.ParameterList()
        if self.layer_norm:
            for width in widths:
                self.ln_gain.append(nn.Parameter(torch.ones(e, 1, width)))
                self.ln_shift.append(nn.Parameter(torch.zeros(e, 1, width)))

    def _params(self, detach: bool) -> list[torch.Tensor]:
        """``[w_obs, w_act, b_in, *hidden_w, *hidden_b, w_out, b_out, *ln_gain, *ln_shift]``."""
        params = [
            self.w_obs,
            self.w_act,
            self.b_in,
            *self.hidden_w,
            *self.hidden_b,
            self.w_out,
            self.b_out,
            *self.ln_gain,
            *self.ln_shift,
        ]
        return [p.detach() for p in params] if detach else params

    def _activate(self, pre: torch.Tensor, layer: int, params: list[torch.Tensor]) -> torch.Tensor:
        """ReLU of hidden layer ``layer``'s pre-activation ``[E, M, W]``, layer-normed first if on."""
        if self.layer_norm:
            n_layers = len(self.ln_gain)
            start = len(params) - 2 * n_layers
            gain, shift = params[start + layer], params[start + n_layers + layer]
            pre = F.layer_norm(pre, pre.shape[-1:]) * gain + shift
        return F.relu(pre)

    def _trunk(self, h: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        """Hidden layers after the first and the output layer; ``h`` is ``[E, M, W]`` post-ReLU."""
        n_hidden = len(self.hidden_w)
        hidden_w, hidden_b = params[3 : 3 + n_hidden], params[3 + n_hidden : 3 + 2 * n_hidden]
        w_out, b_out = params[3 + 2 * n_hidden], params[4 + 2 * n_hidden]
        for layer, (weight, bias) in enumerate(zip(hidden_w, hidden_b, strict=True), start=1):
            h = self._activate(torch.baddbmm(bias, h, weight), layer, params)
        return torch.baddbmm(b_out, h, w_out).squeeze(-1)

    def encode(self, obs_BD: torch.Tensor, detach: bool = False) -> torch.Tensor:
        """The shared encoder's features ``[B, F]`` (without a graph when ``detach``)."""
        if detach:
            with torch.no_grad():
                return self.encoder(obs_BD)
        return self.encoder(obs_BD)

    def q(self, feat_BF: torch.Tensor, action_BK: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """``Q_i`` of encoded states (:meth:`encode`) at ``action``: ``[E, B]``."""
        params = self._params(detach_params)
        w_obs, w_act, b_in = params[0], params[1], params[2]
        x = torch.cat([feat_BF, action_BK.to(feat_BF.dtype)], dim=-1).expand(self.num_critics, -1, -1)
        h = self._activate(torch.baddbmm(b_in, x, torch.cat([w_obs, w_act], dim=1)), 0, params)
        return self._trunk(h, params)

    def q_all(self, feat_BF: torch.Tensor, joint_onehot_JK: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """``Q_i`` of encoded states at every joint action: ``[E, B, J]``, one trunk pass over ``B*J`` rows."""
        params = self._params(detach_params)
        w_obs, w_act, b_in = params[0], params[1], params[2]
        batch, joint, e = feat_BF.shape[0], joint_onehot_JK.shape[0], self.num_critics
        obs_part = torch.baddbmm(b_in, feat_BF.expand(e, -1, -1), w_obs)  # [E, B, W]
        act_part = torch.matmul(joint_onehot_JK.to(feat_BF.dtype), w_act)  # [E, J, W]
        pre = (obs_part.unsqueeze(2) + act_part.unsqueeze(1)).reshape(e, batch * joint, -1)  # [E, B*J, W]
        q = self._trunk(self._activate(pre, 0, params), params)
        return q.reshape(e, batch, joint)

    def forward(self, obs_BD: torch.Tensor, action_BK: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """``Q_i(s, a)`` for every critic: ``[E, B]``."""
        return self.q(self.encode(obs_BD, detach_params), action_BK, detach_params)

    def all_actions(
        self, obs_BD: torch.Tensor, joint_onehot_JK: torch.Tensor, detach_params: bool = False
    ) -> torch.Tensor:
        """``Q_i(s, a)`` for every joint action: ``[E, B, J]``."""
        return self.q_all(self.encode(obs_BD, detach_params), joint_onehot_JK, detach_params)
