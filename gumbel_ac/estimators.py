"""Gradient estimators for ``E_{a ~ pi(l)} f(a)``: one signature, selectable by name.

Every estimator is a function

    estimator(logits_BK, objective, spec, *, tau, generator) -> EstimatorOutput

whose ``surrogate_B`` has the estimate of ``f`` as its *value* and the estimator of
``d E[f] / d logits`` as its *gradient* (the "magic box" construction of DiCE, Foerster et
al. 2018, for the score function). The actor loss is then ``-surrogate.mean()`` whichever
estimator is chosen, so switching estimators changes exactly one thing.

``objective`` is what the gradient flows into: in the agent, the critic ``min_i Q_i(s, .)``;
in the lab, a synthetic function. It offers ``at(action_BK)`` (the value at a, possibly
relaxed, concatenated one-hot, differentiable in the action) and ``all()`` (values of every
joint action ``[B, J]``, used by the score baseline and the exact gradient).

Maths and sources: ../shared/DESIGN.md §3.
- gumbel-st: Jang, Gu, Poole 2017 (arXiv:1611.01144); Maddison, Mnih, Teh 2017.
- gumbel-soft: the relaxed sample itself (as MADDPG feeds its critic).
- score: Williams 1992 with the control variate ``V(s) = sum_a pi(a|s) f(a)``.
- exact: ``sum_a pi(a|s) f(a)`` (Christodoulou 2019, discrete SAC) -- zero variance.

Shape legend: ``B`` batch, ``K`` concatenated logits over heads, ``J`` joint actions,
``H`` heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from gumbel_ac.distributions import ActionSpec, relaxed_softmax, sample_gumbel


class Objective(Protocol):
    """The downstream function of the action whose expectation is differentiated."""

    def at(self, action_BK: torch.Tensor) -> torch.Tensor:
        """``f(a)`` ``[B]`` for a (possibly relaxed) concatenated one-hot action ``[B, K]``."""
        ...

    def all(self) -> torch.Tensor:
        """``f`` of every joint action, ``[B, J]`` in ``ActionSpec.joint_*`` order."""
        ...


@dataclass(frozen=True)
class EstimatorOutput:
    """What an estimator returns.

    Attributes:
        surrogate_B: value = the estimate of ``f``; gradient w.r.t. logits = the estimator.
        index_BH: the sampled (or chosen) action per head, int64.
    """

    surrogate_B: torch.Tensor
    index_BH: torch.Tensor


EstimatorFn = Callable[..., EstimatorOutput]


def _gumbel_perturb(
    logits_BK: torch.Tensor, spec: ActionSpec, generator: torch.Generator | None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-head ``l + G`` and the Gumbel-max sample ``argmax(l + G)`` per head ``[B, H]``.

    All estimators that sample draw the same noise from the same generator state, so under
    one seed they act identically and only the gradient differs.
    """
    gumbel = sample_gumbel(logits_BK.shape, generator=generator, device=logits_BK.device, dtype=logits_BK.dtype)
    perturbed = spec.split(logits_BK + gumbel)
    index = torch.stack([z.argmax(-1) for z in perturbed], dim=-1)
    return perturbed, index


def _concat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def gumbel_st(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """Straight-through Gumbel-Softmax: forward ``onehot(argmax(l+G))``, backward ``d softmax((l+G)/tau)``."""
    perturbed, index = _gumbel_perturb(logits_BK, spec, generator)
    parts = []
    for h, z in enumerate(perturbed):
        y = relaxed_softmax(z, tau)
        hard = F.one_hot(index[:, h], spec.nvec[h]).to(y.dtype)
        parts.append(hard + (y - y.detach()))  # exactly one-hot forward: y - y == 0
    return EstimatorOutput(objective.at(_concat(parts)), index)


def gumbel_soft(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """The relaxed sample ``softmax((l+G)/tau)`` itself goes into ``f`` (biased; MADDPG-style)."""
    perturbed, index = _gumbel_perturb(logits_BK, spec, generator)
    relaxed = _concat([relaxed_softmax(z, tau) for z in perturbed])
    return EstimatorOutput(objective.at(relaxed), index)


def score(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """Score function (REINFORCE) with the baseline ``V = sum_a pi(a) f(a)``.

    ``surrogate = f(a) + (log pi(a) - sg(log pi(a))) * sg(f(a) - V)``: its value is ``f(a)``,
    its gradient ``grad log pi(a) * (f(a) - V)`` plus any direct dependence of ``f`` on the
    logits. ``tau`` is unused (the estimator has no temperature); accepted for the shared
    signature.
    """
    del tau
    _, index = _gumbel_perturb(logits_BK, spec, generator)  # Gumbel-max == Categorical(pi)
    hard = spec.onehot(index, dtype=logits_BK.dtype)
    value = objective.at(hard)
    with torch.no_grad():
        baseline = (spec.joint_log_probs(logits_BK).exp() * objective.all()).sum(-1)
        advantage = value - baseline
    logp = spec.log_prob(logits_BK, index)
    return EstimatorOutput(value + (logp - logp.detach()) * advantage, index)


def exact(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """The exact expectation ``sum_a pi(a) f(a)``: zero-variance gradient (K small)."""
    del tau
    _, index = _gumbel_perturb(logits_BK, spec, generator)  # for acting/logging only
    probs_BJ = spec.joint_log_probs(logits_BK).exp()
    return EstimatorOutput((probs_BJ * objective.all()).sum(-1), index)


#: name -> estimator. Later estimators register here and are found by ``get_estimator``.
ESTIMATORS: dict[str, EstimatorFn] = {
    "gumbel-st": gumbel_st,
    "gumbel-soft": gumbel_soft,
    "score": score,
    "exact": exact,
}


def get_estimator(name: str) -> EstimatorFn:
    """Look an estimator up by name, with an error that lists the valid names."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown estimator {name!r}; choose one of: {', '.join(sorted(ESTIMATORS))}"
        ) from None
