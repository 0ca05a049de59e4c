"""Categorical policies over one or several action heads, and the Gumbel sampler.

Everything that touches logits numerically lives here, once: the Gumbel draw (our own,
taking a ``torch.Generator``), log-probabilities and entropy that stay finite with masked
``-inf`` logits, and :class:`ActionSpec`, which turns a ``Discrete`` or ``MultiDiscrete``
action space into the tables the critic and the estimators share.

Shape legend: ``B`` batch, ``K`` total logits (sum of head sizes), ``H`` heads, ``J`` joint
actions (product of head sizes), ``A`` the size of one head.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

#: The most joint actions :meth:`ActionSpec.joint_index_on` will ever enumerate (its tables are
#: ``J x (H + K)`` numbers). Training never gets near it: above ``--max-enumerated-actions``
#: (a few hundred) the losses and estimators sample actions instead of enumerating them.
MAX_ENUMERABLE_ACTIONS = 65_536


class UnsupportedSpaceError(ValueError):
    """An observation or action space gumbel_ac cannot handle."""


@dataclass(frozen=True)
class ActionSpec:
    """The factorised categorical action space: ``H`` heads of sizes ``nvec``.

    ``Discrete(n)`` is one head of size ``n``. ``MultiDiscrete(nvec)`` is one independent
    categorical per entry; the critic takes the concatenated one-hots (length ``K``).

    Everything per head (sampling, log-probabilities, entropy, the mode) costs ``O(K)``: a
    ``MultiDiscrete([8] * 8)`` space (16.7M joint actions) is 8 heads of 8 logits. Tables over
    the ``J = prod(nvec)`` joint actions (for enumerating every action: the exact expected-SARSA
    target and the ``exact``/``score`` estimators on small spaces) are built lazily, on first
    use, once per device, and refused above :data:`MAX_ENUMERABLE_ACTIONS`.

    Attributes:
        nvec: size of each head.
        offsets: start of each head's slice in the concatenated logits.
    """

    nvec: tuple[int, ...]
    offsets: tuple[int, ...] = field(init=False)
    _tables: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.nvec or any(int(n) < 1 for n in self.nvec):
            raise UnsupportedSpaceError(f"every action head needs at least 1 action, got {self.nvec}")
        offsets = tuple(int(o) for o in np.cumsum((0,) + tuple(self.nvec[:-1])))
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "_tables", {})

    def _joint_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(joint_index_JH, joint_onehot_JK)`` on ``device``: built once per device."""
        key = str(device)
        if key not in self._tables:
            joint = self.num_joint
            if joint > MAX_ENUMERABLE_ACTIONS:
                raise UnsupportedSpaceError(
                    f"enumerating the {joint} joint actions of {list(self.nvec)} is refused (at most "
                    f"{MAX_ENUMERABLE_ACTIONS}); the sampled training path needs no enumeration"
                )
            index = torch.tensor(list(itertools.product(*[range(n) for n in self.nvec])), dtype=torch.long)
            index = index.reshape(joint, len(self.nvec))
            onehot = torch.zeros(joint, self.num_logits)
            for h, off in enumerate(self.offsets):
                onehot[torch.arange(joint), off + index[:, h]] = 1.0
            self._tables[key] = (index.to(device), onehot.to(device))
        return self._tables[key]

    def joint_index_on(self, device: torch.device | str) -> torch.Tensor:
        """Every joint action as one index per head ``[J, H]`` (itertools.product order)."""
        return self._joint_tables(torch.device(device))[0]

    def joint_onehot_on(self, device: torch.device | str) -> torch.Tensor:
        """The concatenated one-hot of every joint action ``[J, K]``."""
        return self._joint_tables(torch.device(device))[1]

    @property
    def joint_index_JH(self) -> torch.Tensor:
        """:meth:`joint_index_on` the CPU."""
        return self.joint_index_on("cpu")

    @property
    def joint_onehot_JK(self) -> torch.Tensor:
        """:meth:`joint_onehot_on` the CPU."""
        return self.joint_onehot_on("cpu")

    @property
    def num_heads(self) -> int:
        return len(self.nvec)

    @property
    def num_logits(self) -> int:
        return int(sum(self.nvec))

    @property
    def num_joint(self) -> int:
        return int(math.prod(self.nvec))

    @classmethod
    def from_space(cls, space: gym.Space[Any]) -> ActionSpec:
        """Build from a Gymnasium action space; refuse anything but Discrete/MultiDiscrete.

        A MultiDiscrete space must have a 1-D ``nvec``: a 2-D one would need every action
        reshaped to ``nvec.shape`` on its way to the env, which the env adapters do not do.
        """
        if isinstance(space, gym.spaces.Discrete):
            if int(space.start) != 0:
                raise UnsupportedSpaceError(
                    f"Discrete action space with start={space.start} is not supported; "
                    "wrap the env so actions start at 0."
                )
            return cls((int(space.n),))
        if isinstance(space, gym.spaces.MultiDiscrete):
            if np.asarray(space.start).any():
                raise UnsupportedSpaceError("MultiDiscrete with a non-zero start is not supported.")
            nvec = np.asarray(space.nvec)
            if nvec.ndim != 1:
                # The heads are the flattened nvec, so the policy emits actions of shape (H,);
                # the env adapters and SB3 hand those to the env as they are, and an env that
                # expects nvec.shape would get (or fail on) the wrong shape. Refuse up front.
                raise UnsupportedSpaceError(
                    f"MultiDiscrete action space with a {nvec.ndim}-D nvec of shape {nvec.shape} is not "
                    "supported: gumbel_ac needs a 1-D nvec. Flatten the action space with a Gymnasium "
                    "ActionWrapper that maps MultiDiscrete(nvec.reshape(-1)) actions to nvec.shape."
                )
            return cls(tuple(int(n) for n in nvec))
        raise UnsupportedSpaceError(
            f"action space {space} is not supported: gumbel_ac trains categorical policies on "
            "Discrete or MultiDiscrete action spaces only (for Box actions use SAC/TD3)."
        )

    def split(self, x_BK: torch.Tensor) -> list[torch.Tensor]:
        """Split concatenated per-head tensors ``[..., K]`` into ``[..., A_h]`` views."""
        if self.num_heads == 1:
            return [x_BK]
        return list(torch.split(x_BK, list(self.nvec), dim=-1))

    def onehot(self, index_BH: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Concatenated one-hot ``[B, K]`` of integer actions ``[B, H]`` (or ``[B]`` for one head)."""
        if index_BH.dim() == 1:
            index_BH = index_BH.unsqueeze(-1)
        parts = [F.one_hot(index_BH[:, h], n).to(dtype) for h, n in enumerate(self.nvec)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def joint_log_probs(self, logits_BK: torch.Tensor) -> torch.Tensor:
        """``log pi(a | s)`` for every joint action: ``[B, J]`` (sum over independent heads)."""
        heads = self.split(logits_BK)
        if len(heads) == 1:
            return F.log_softmax(heads[0], dim=-1)
        logp = torch.zeros(logits_BK.shape[0], self.num_joint, device=logits_BK.device, dtype=logits_BK.dtype)
        joint_index_JH = self.joint_index_on(logits_BK.device)
        for h, lg in enumerate(heads):
            logp = logp + F.log_softmax(lg, dim=-1)[:, joint_index_JH[:, h]]
        return logp

    def log_prob(self, logits_BK: torch.Tensor, index_BH: torch.Tensor) -> torch.Tensor:
        """``log pi(a | s)`` of given integer actions ``[B, H]``: ``[B]``."""
        if index_BH.dim() == 1:
            index_BH = index_BH.unsqueeze(-1)
        total = None
        for h, lg in enumerate(self.split(logits_BK)):
            lp = F.log_softmax(lg, dim=-1).gather(-1, index_BH[:, h : h + 1]).squeeze(-1)
            total = lp if total is None else total + lp
        assert total is not None
        return total

    def entropy(self, logits_BK: torch.Tensor) -> torch.Tensor:
        """Policy entropy ``[B]`` (sum over heads), finite with masked ``-inf`` logits."""
        total = None
        for lg in self.split(logits_BK):
            ent = categorical_entropy(lg)
            total = ent if total is None else total + ent
        assert total is not None
        return total

    def mode(self, logits_BK: torch.Tensor) -> torch.Tensor:
        """Most likely action per head ``[B, H]`` (deterministic evaluation)."""
        return torch.stack([lg.argmax(-1) for lg in self.split(logits_BK)], dim=-1)


def categorical_entropy(logits_BA: torch.Tensor) -> torch.Tensor:
    """``-sum_a p log p`` over the last dim, with ``0 * log 0 = 0``.

    Written with ``torch.where`` rather than ``-(p * log_softmax).sum()``: with a masked
    ``-inf`` logit the latter is ``0 * -inf = NaN`` (docs/DESIGN.md §3, numerical facts).
    """
    logp = F.log_softmax(logits_BA, dim=-1)
    p = logp.exp()
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))
    return -plogp.sum(-1)


def sample_gumbel(
    shape: torch.Size | tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise ``-log(-log(u))`` drawn from ``generator``.

    ``torch.nn.functional.gumbel_softmax`` cannot take a generator and its Exponential draw is
    ~4x slower on CPU (docs/DESIGN.md §3). ``u`` is clamped to ``[tiny, 1 - eps]`` so neither log
    sees 0: the noise is always finite. Half precision is drawn in float32 (bf16 has 8
    mantissa bits; ``1 - eps`` would round to 1).
    """
    draw_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    u = torch.rand(shape, generator=generator, device=device, dtype=draw_dtype)
    info = torch.finfo(draw_dtype)
    u = u.clamp_(min=info.tiny, max=1.0 - info.eps)
    return u.log_().neg_().log_().neg_()  # -log(-log u), in place: no temporaries


def relaxed_softmax(perturbed_BA: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    """``softmax(z / tau)`` computed as ``softmax((z - max z) / tau)``.

    Subtracting the row max first keeps ``(z - max) / tau <= 0``: a tiny tau or a 1e30 logit
    gives ``-inf`` entries (probability 0), never ``inf - inf = NaN``.
    """
    z = perturbed_BA - perturbed_BA.amax(dim=-1, keepdim=True).detach()
    return torch.softmax(z / tau, dim=-1)
